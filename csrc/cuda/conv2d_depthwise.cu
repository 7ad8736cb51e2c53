// Depthwise conv2d (groups == C == K: one filter per channel) on dense NCHW or channels_last
// tensors. Memory-bound layers (9 multiply-adds per element for 3x3), so the kernels move each
// byte once, coalesced, and vectorise channels_last over 16 bytes of channels. The products and
// sums run in the reference kernels' order; the weight gradient sums in a fixed order (no atomics).
//
//   conv2d_fprop_dw_nchw__sm80_dense   one thread per y element
//   conv2d_fprop_dw_nhwc__sm80_vec     one thread per 16 bytes of y channels at one pixel
//   conv2d_dgrad_dw_nchw__sm80_dense   one thread per dx element, gathers the dy taps reaching it
//   conv2d_dgrad_dw_nhwc__sm80_vec     the same over 16 bytes of channels
//   conv2d_wgrad_dw3x3_nchw__sm80_split  block (channel, pixel slice): 9 per-thread sums over the
//                                      slice, block-reduced into a float workspace
//   conv2d_wgrad_dw3x3_nhwc__sm80_split  block (8 channel vectors, pixel slice): the same with
//                                      threads over channel vectors x pixels
//   conv2d_wgrad_dw_finish__sm80       dw = the sum of the slices' partial sums, in slice order
#include "conv2d_depthwise.cuh"
#include "cuda_dtype.cuh"
#include "cuda_launch.cuh"
#include "cuda_layout.cuh"
#include "cuda_reduce.cuh"

#include <algorithm>
#include <initializer_list>

namespace cnnkernels {
namespace cuda {
namespace {

// Output pixel (p, q) reads input (p sh - ph + r dh, q sw - pw + s dw).
struct Taps {
  int sh, sw, ph, pw, dh, dw, R, S, H, W, P, Q;
};
Taps taps_of(const Conv2dProblem& p) {
  return {int(p.stride_h), int(p.stride_w), int(p.pad_h), int(p.pad_w), int(p.dil_h), int(p.dil_w),
          int(p.R),        int(p.S),        int(p.H),     int(p.W),     int(p.P),     int(p.Q)};
}

template <typename T, typename A, typename I>
__global__ void conv2d_fprop_dw_nchw__sm80_dense(Conv2dFpropArgs a, Taps t) {
  const T* __restrict__ x = static_cast<const T*>(a.x.data);
  const T* __restrict__ w = static_cast<const T*>(a.w.data);
  const T* __restrict__ bias = static_cast<const T*>(a.bias);
  T* __restrict__ y = static_cast<T*>(a.y.data);
  const int64_t* ws = a.w.stride;
  const I K = I(a.p.K), PQ = I(t.P) * I(t.Q), HW = I(t.H) * I(t.W), Q = I(t.Q);
  const I total = I(a.p.N) * K * PQ;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I plane = i / PQ, pq = i - plane * PQ;  // plane = n K + k, also x's plane n C + k
    const int p = int(pq / Q), q = int(pq % Q), k = int(plane % K);
    const T* xp = x + plane * HW;
    const T* wk = w + k * ws[0];
    A acc = bias ? load(bias + k) : A(0);
    for (int r = 0; r < t.R; ++r) {
      const int h = p * t.sh - t.ph + r * t.dh;
      if (h < 0 || h >= t.H) continue;
      for (int s = 0; s < t.S; ++s) {
        const int ww = q * t.sw - t.pw + s * t.dw;
        if (ww < 0 || ww >= t.W) continue;
        acc += load(xp + (I(h) * I(t.W) + I(ww))) * load(wk + r * ws[2] + s * ws[3]);
      }
    }
    store(y + i, acc);
  }
}

template <typename T, typename A, typename I, int VEC>
__global__ void conv2d_fprop_dw_nhwc__sm80_vec(Conv2dFpropArgs a, Taps t) {
  const T* __restrict__ x = static_cast<const T*>(a.x.data);
  const T* __restrict__ w = static_cast<const T*>(a.w.data);
  const T* __restrict__ bias = static_cast<const T*>(a.bias);
  T* __restrict__ y = static_cast<T*>(a.y.data);
  const int64_t* ws = a.w.stride;
  const I C = I(a.p.C), CV = C / VEC, P = I(t.P), Q = I(t.Q);
  const I total = I(a.p.N) * P * Q * CV;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I cv = i % CV, pix = i / CV;
    const int q = int(pix % Q);
    const I np = pix / Q;
    const int p = int(np % P);
    const I n = np / P;
    const int c0 = int(cv) * VEC;
    const T* xn = x + n * I(t.H) * I(t.W) * C + c0;
    A acc[VEC];
#pragma unroll
    for (int l = 0; l < VEC; ++l) acc[l] = bias ? load(bias + c0 + l) : A(0);
    for (int r = 0; r < t.R; ++r) {
      const int h = p * t.sh - t.ph + r * t.dh;
      if (h < 0 || h >= t.H) continue;
      for (int s = 0; s < t.S; ++s) {
        const int ww = q * t.sw - t.pw + s * t.dw;
        if (ww < 0 || ww >= t.W) continue;
        const VecOf<T, VEC> v = *reinterpret_cast<const VecOf<T, VEC>*>(xn + (I(h) * I(t.W) + I(ww)) * C);
        const T* wrs = w + c0 * ws[0] + r * ws[2] + s * ws[3];
#pragma unroll
        for (int l = 0; l < VEC; ++l) acc[l] += to_acc(v.v[l]) * load(wrs + l * ws[0]);
      }
    }
    VecOf<T, VEC> out;
#pragma unroll
    for (int l = 0; l < VEC; ++l) store(&out.v[l], acc[l]);
    *reinterpret_cast<VecOf<T, VEC>*>(y + pix * C + c0) = out;
  }
}

// y[p] reads x[h] through tap r when p sh - ph + r dh = h: dx[h] gathers p = (h + ph - r dh) / sh
// for every r where that is a non-negative multiple of sh below P (as the reference).
template <typename T, typename A, typename I>
__global__ void conv2d_dgrad_dw_nchw__sm80_dense(Conv2dDgradArgs a, Taps t) {
  const T* __restrict__ dy = static_cast<const T*>(a.dy.data);
  const T* __restrict__ w = static_cast<const T*>(a.w.data);
  T* __restrict__ dx = static_cast<T*>(a.dx.data);
  const int64_t* ws = a.w.stride;
  const I C = I(a.p.C), PQ = I(t.P) * I(t.Q), HW = I(t.H) * I(t.W), W = I(t.W);
  const I total = I(a.p.N) * C * HW;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I plane = i / HW, hw = i - plane * HW;
    const int h = int(hw / W), wx = int(hw % W), c = int(plane % C);
    const T* dyp = dy + plane * PQ;
    const T* wc = w + c * ws[0];
    A acc = A(0);
    for (int r = 0; r < t.R; ++r) {
      const int hp = h + t.ph - r * t.dh;
      if (hp < 0) break;
      if (hp % t.sh != 0 || hp / t.sh >= t.P) continue;
      const int p = hp / t.sh;
      for (int s = 0; s < t.S; ++s) {
        const int wp = wx + t.pw - s * t.dw;
        if (wp < 0) break;
        if (wp % t.sw != 0 || wp / t.sw >= t.Q) continue;
        acc += load(dyp + (I(p) * I(t.Q) + I(wp / t.sw))) * load(wc + r * ws[2] + s * ws[3]);
      }
    }
    store(dx + i, acc);
  }
}

template <typename T, typename A, typename I, int VEC>
__global__ void conv2d_dgrad_dw_nhwc__sm80_vec(Conv2dDgradArgs a, Taps t) {
  const T* __restrict__ dy = static_cast<const T*>(a.dy.data);
  const T* __restrict__ w = static_cast<const T*>(a.w.data);
  T* __restrict__ dx = static_cast<T*>(a.dx.data);
  const int64_t* ws = a.w.stride;
  const I C = I(a.p.C), CV = C / VEC, H = I(t.H), W = I(t.W);
  const I total = I(a.p.N) * H * W * CV;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I cv = i % CV, pix = i / CV;
    const int wx = int(pix % W);
    const I nh = pix / W;
    const int h = int(nh % H);
    const I n = nh / H;
    const int c0 = int(cv) * VEC;
    const T* dyn = dy + n * I(t.P) * I(t.Q) * C + c0;
    A acc[VEC];
#pragma unroll
    for (int l = 0; l < VEC; ++l) acc[l] = A(0);
    for (int r = 0; r < t.R; ++r) {
      const int hp = h + t.ph - r * t.dh;
      if (hp < 0) break;
      if (hp % t.sh != 0 || hp / t.sh >= t.P) continue;
      const int p = hp / t.sh;
      for (int s = 0; s < t.S; ++s) {
        const int wp = wx + t.pw - s * t.dw;
        if (wp < 0) break;
        if (wp % t.sw != 0 || wp / t.sw >= t.Q) continue;
        const VecOf<T, VEC> g =
            *reinterpret_cast<const VecOf<T, VEC>*>(dyn + (I(p) * I(t.Q) + I(wp / t.sw)) * C);
        const T* wrs = w + c0 * ws[0] + r * ws[2] + s * ws[3];
#pragma unroll
        for (int l = 0; l < VEC; ++l) acc[l] += to_acc(g.v[l]) * load(wrs + l * ws[0]);
      }
    }
    VecOf<T, VEC> out;
#pragma unroll
    for (int l = 0; l < VEC; ++l) store(&out.v[l], acc[l]);
    *reinterpret_cast<VecOf<T, VEC>*>(dx + pix * C + c0) = out;
  }
}

// ---- weight gradient, 3x3: pixel slices summed into a workspace, then finished in slice order ----
constexpr int kDwTaps = 9;

// The pixels (n, p, q) of slice `slice` out of `slices`: [lo, hi) of the N P Q flattened pixels.
__device__ __forceinline__ void slice_bounds(int64_t npq, int slice, int slices, int64_t* lo, int64_t* hi) {
  const int64_t per = (npq + slices - 1) / slices;
  *lo = min(npq, per * slice);
  *hi = min(npq, *lo + per);
}

// partial[slice][c][tap] = sum over the slice's pixels of dy[n, c, p, q] x[n, c, h, w].
template <typename T, typename A>
__global__ void __launch_bounds__(kReduceThreads) conv2d_wgrad_dw3x3_nchw__sm80_split(Conv2dWgradArgs a, Taps t,
                                                                                        A* partial) {
  const T* __restrict__ dy = static_cast<const T*>(a.dy.data);
  const T* __restrict__ x = static_cast<const T*>(a.x.data);
  const int c = blockIdx.x, slice = blockIdx.y, slices = gridDim.y;
  const int64_t C = a.p.C, PQ = int64_t(t.P) * t.Q, HW = int64_t(t.H) * t.W;
  int64_t lo, hi;
  slice_bounds(a.p.N * PQ, slice, slices, &lo, &hi);
  A acc[kDwTaps];
#pragma unroll
  for (int k = 0; k < kDwTaps; ++k) acc[k] = A(0);
  for (int64_t j = lo + threadIdx.x; j < hi; j += kReduceThreads) {
    const int64_t n = j / PQ, pq = j - n * PQ;
    const int p = int(pq / t.Q), q = int(pq % t.Q);
    const A g = load(dy + (n * C + c) * PQ + pq);
    const T* xp = x + (n * C + c) * HW;
#pragma unroll
    for (int r = 0; r < 3; ++r) {
      const int h = p * t.sh - t.ph + r * t.dh;
      if (h < 0 || h >= t.H) continue;
#pragma unroll
      for (int s = 0; s < 3; ++s) {
        const int ww = q * t.sw - t.pw + s * t.dw;
        if (ww < 0 || ww >= t.W) continue;
        acc[r * 3 + s] += g * load(xp + int64_t(h) * t.W + ww);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kDwTaps; ++k) {
    const A total = block_sum(acc[k]);
    if (threadIdx.x == 0) partial[(int64_t(slice) * C + c) * kDwTaps + k] = total;
  }
}

// Threads: kVecsPerBlock channel vectors (fastest: one pixel's channels are adjacent, coalesced)
// x kReduceThreads / kVecsPerBlock pixel lanes.
constexpr int kVecsPerBlock = 8;

template <typename T, typename A, int VEC>
__global__ void __launch_bounds__(kReduceThreads) conv2d_wgrad_dw3x3_nhwc__sm80_split(Conv2dWgradArgs a, Taps t,
                                                                                        A* partial) {
  constexpr int kLanes = kReduceThreads / kVecsPerBlock;
  const T* __restrict__ dy = static_cast<const T*>(a.dy.data);
  const T* __restrict__ x = static_cast<const T*>(a.x.data);
  const int64_t C = a.p.C, CV = C / VEC;
  const int vl = threadIdx.x % kVecsPerBlock, lane = threadIdx.x / kVecsPerBlock;
  const int64_t cv = int64_t(blockIdx.x) * kVecsPerBlock + vl;
  const bool active = cv < CV;
  const int slice = blockIdx.y, slices = gridDim.y;
  const int64_t PQ = int64_t(t.P) * t.Q;
  int64_t lo, hi;
  slice_bounds(a.p.N * PQ, slice, slices, &lo, &hi);
  A acc[kDwTaps][VEC];
#pragma unroll
  for (int k = 0; k < kDwTaps; ++k)
#pragma unroll
    for (int l = 0; l < VEC; ++l) acc[k][l] = A(0);
  if (active) {
    for (int64_t j = lo + lane; j < hi; j += kLanes) {
      const int64_t n = j / PQ, pq = j - n * PQ;
      const int p = int(pq / t.Q), q = int(pq % t.Q);
      const VecOf<T, VEC> g = *reinterpret_cast<const VecOf<T, VEC>*>(dy + j * C + cv * VEC);
      const T* xn = x + n * t.H * int64_t(t.W) * C + cv * VEC;
#pragma unroll
      for (int r = 0; r < 3; ++r) {
        const int h = p * t.sh - t.ph + r * t.dh;
        if (h < 0 || h >= t.H) continue;
#pragma unroll
        for (int s = 0; s < 3; ++s) {
          const int ww = q * t.sw - t.pw + s * t.dw;
          if (ww < 0 || ww >= t.W) continue;
          const VecOf<T, VEC> v = *reinterpret_cast<const VecOf<T, VEC>*>(xn + (int64_t(h) * t.W + ww) * C);
#pragma unroll
          for (int l = 0; l < VEC; ++l) acc[r * 3 + s][l] += to_acc(g.v[l]) * to_acc(v.v[l]);
        }
      }
    }
  }
  // Sum over the pixel lanes in a fixed tree order, one (tap, channel) value per thread at a time.
  __shared__ A smem[kReduceThreads];
#pragma unroll
  for (int k = 0; k < kDwTaps; ++k)
#pragma unroll
    for (int l = 0; l < VEC; ++l) {
      smem[threadIdx.x] = acc[k][l];
      __syncthreads();
      for (int half = kLanes / 2; half > 0; half >>= 1) {
        if (lane < half) smem[threadIdx.x] += smem[threadIdx.x + half * kVecsPerBlock];
        __syncthreads();
      }
      if (lane == 0 && active) partial[(int64_t(slice) * C + cv * VEC + l) * kDwTaps + k] = smem[threadIdx.x];
      __syncthreads();
    }
}

template <typename T, typename A>
__global__ void conv2d_wgrad_dw_finish__sm80(Conv2dWgradArgs a, const A* partial, int slices) {
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t* ds = a.dw.stride;
  const int64_t C = a.p.C;
  for (int64_t i = global_thread(); i < C * kDwTaps; i += grid_threads()) {
    A sum = A(0);
    for (int s = 0; s < slices; ++s) sum += partial[int64_t(s) * C * kDwTaps + i];
    const int64_t c = i / kDwTaps, k = i % kDwTaps;
    store(dw + c * ds[0] + (k / 3) * ds[2] + (k % 3) * ds[3], sum);
  }
}

bool is_depthwise(const Conv2dProblem& p) { return p.groups == p.C && p.K == p.C && p.C > 1; }

bool index_fits(const Conv2dProblem& p) {
  return fits_uint32_index(p.N * p.C * p.H * p.W) && fits_uint32_index(p.N * p.K * p.P * p.Q);
}

// The layout x-like (N C H W) and y-like (N K P Q) tensors share, or none.
Dense shared_layout(const Conv2dProblem& p, const int64_t* xs, const int64_t* ys) {
  for (Dense d : {Dense::nchw, Dense::nhwc})
    if (strides_are(d, xs, p.N, p.C, p.H, p.W) && strides_are(d, ys, p.N, p.K, p.P, p.Q)) return d;
  return Dense::none;
}

// How the 3x3 weight gradient runs: blocks of one channel (NCHW) or of kVecsPerBlock vectors of
// `vec` channels (NHWC), times `slices` slices of the N P Q pixels: enough blocks to fill the GPU
// (~4 per SM on 132 SMs), each slice at least 1024 pixels. The workspace holds slices x C x 9
// partial sums in the accumulator type.
struct WgradPlan {
  Dense layout;
  int vec;
  int64_t groups;  // blocks per slice
  int slices;
  size_t workspace_bytes;
};

bool plan_wgrad(const Conv2dWgradArgs& a, WgradPlan* plan) {
  const Conv2dProblem& p = a.p;
  if (!is_depthwise(p) || p.R != 3 || p.S != 3 || p.N * p.P * p.Q == 0) return false;
  plan->layout = shared_layout(p, a.x.stride, a.dy.stride);
  if (plan->layout == Dense::none) return false;
  const int vec16 = 16 / int(dtype_size(p.dtype));
  plan->vec = plan->layout == Dense::nhwc && vectors_fit(p.C, vec16, {a.x.data, a.dy.data}) ? vec16 : 1;
  plan->groups = plan->layout == Dense::nchw ? p.C : (p.C / plan->vec + kVecsPerBlock - 1) / kVecsPerBlock;
  const int64_t want = (528 + plan->groups - 1) / plan->groups;
  const int64_t most = std::max<int64_t>(1, p.N * p.P * p.Q / 1024);
  plan->slices = int(std::max<int64_t>(1, std::min(want, most)));
  plan->workspace_bytes = size_t(plan->slices) * size_t(p.C) * kDwTaps * (p.dtype == DType::f64 ? 8 : 4);
  return plan->groups < (int64_t(1) << 31);
}

}  // namespace

Launched depthwise_fprop(const Conv2dFpropArgs& a, cudaStream_t stream) {
  const Conv2dProblem& p = a.p;
  if (!is_depthwise(p)) return {false, cudaSuccess};
  const Dense layout = shared_layout(p, a.x.stride, a.y.stride);
  if (layout == Dense::none) return {false, cudaSuccess};
  const Taps t = taps_of(p);
  const int64_t total = p.N * p.K * p.P * p.Q;
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    const bool vectors = layout == Dense::nhwc && vectors_fit(p.C, kVec16<T>, {a.x.data, a.y.data});
    launch_dense<kVec16<T>>(layout, vectors, index_fits(p), total, stream, [](auto index, auto vec) {
      using I = decltype(index);
      constexpr int V = decltype(vec)::value;
      if constexpr (V == 0) return conv2d_fprop_dw_nchw__sm80_dense<T, A, I>;
      else return conv2d_fprop_dw_nhwc__sm80_vec<T, A, I, V>;
    }, a, t);
    return last_launch_error();
  });
  return {true, err};
}

Launched depthwise_dgrad(const Conv2dDgradArgs& a, cudaStream_t stream) {
  const Conv2dProblem& p = a.p;
  if (!is_depthwise(p)) return {false, cudaSuccess};
  const Dense layout = shared_layout(p, a.dx.stride, a.dy.stride);
  if (layout == Dense::none) return {false, cudaSuccess};
  const Taps t = taps_of(p);
  const int64_t total = p.N * p.C * p.H * p.W;
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    const bool vectors = layout == Dense::nhwc && vectors_fit(p.C, kVec16<T>, {a.dx.data, a.dy.data});
    launch_dense<kVec16<T>>(layout, vectors, index_fits(p), total, stream, [](auto index, auto vec) {
      using I = decltype(index);
      constexpr int V = decltype(vec)::value;
      if constexpr (V == 0) return conv2d_dgrad_dw_nchw__sm80_dense<T, A, I>;
      else return conv2d_dgrad_dw_nhwc__sm80_vec<T, A, I, V>;
    }, a, t);
    return last_launch_error();
  });
  return {true, err};
}

size_t depthwise_wgrad_workspace_bytes(const Conv2dWgradArgs& a) {
  WgradPlan plan;
  return plan_wgrad(a, &plan) ? plan.workspace_bytes : 0;
}

Launched depthwise_wgrad(const Conv2dWgradArgs& a, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream) {
  WgradPlan plan;
  if (!plan_wgrad(a, &plan) || workspace == nullptr || workspace_bytes < plan.workspace_bytes)
    return {false, cudaSuccess};
  const Conv2dProblem& p = a.p;
  const Taps t = taps_of(p);
  const dim3 grid(unsigned(plan.groups), unsigned(plan.slices));
  const cudaError_t err = dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    constexpr int VEC = kVec16<T>;
    A* partial = static_cast<A*>(workspace);
    if (plan.layout == Dense::nchw)
      CNNK_LAUNCH(grid, kReduceThreads, 0, stream, conv2d_wgrad_dw3x3_nchw__sm80_split<T, A>)(a, t, partial);
    else if (plan.vec == VEC)
      CNNK_LAUNCH(grid, kReduceThreads, 0, stream, conv2d_wgrad_dw3x3_nhwc__sm80_split<T, A, VEC>)(a, t, partial);
    else
      CNNK_LAUNCH(grid, kReduceThreads, 0, stream, conv2d_wgrad_dw3x3_nhwc__sm80_split<T, A, 1>)(a, t, partial);
    CNNK_LAUNCH(grid_for(p.C * kDwTaps, kThreads), kThreads, 0, stream, conv2d_wgrad_dw_finish__sm80<T, A>)(a, partial, plan.slices);
    return last_launch_error();
  });
  return {true, err};
}

}  // namespace cuda
}  // namespace cnnkernels
