// max_pool2d kernels for every dtype and stride layout, following PyTorch's CUDA rules (first
// maximum wins, last NaN wins, implicit -inf padding). Deterministic, no atomics.
//
//   max_pool2d_fwd_any__sm80_direct  reference, any strides: one thread per y element scans its
//                                    window in row-major order; records the winner as an int64
//                                    index or a uint8 tap number
//   max_pool2d_bwd_any__sm80_gather  reference, any strides: one thread per dx element sums the dy
//                                    of every window whose index (or tap, turned into its index)
//                                    names it, in increasing (p, q) order
//   max_pool2d_{fwd,bwd}_nchw__sm80_dense  dense NCHW: the same per element, with 32-bit index
//                                    math where the tensors allow it and no stride arithmetic
//   max_pool2d_{fwd,bwd}_nhwc__sm80_vec    dense channels_last: one thread per 16 bytes of
//                                    channels (8 bf16 / 4 f32 / 2 f64), vector loads and stores
//
// The dense kernels run the reference's comparisons and sums in the same order: bit-identical.
#include "cuda_dtype.cuh"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_layout.cuh"

#include <cstdint>
#include <initializer_list>

namespace cnnkernels {
namespace cuda {
namespace {

// First tap of a window at or after 0: start + ceil(-start / dil) dil for a start in the padding.
__device__ __forceinline__ int64_t first_tap(int64_t start, int64_t dil) {
  return start >= 0 ? start : start + (-start + dil - 1) / dil * dil;
}

template <typename T, typename A>
__global__ void max_pool2d_fwd_any__sm80_direct(MaxPool2dFwdArgs a) {
  const Pool2dProblem& pb = a.p;
  const T* x = static_cast<const T*>(a.x.data);
  T* y = static_cast<T*>(a.y.data);
  const int64_t total = pb.N * pb.C * pb.P * pb.Q;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t q = i % pb.Q, p = (i / pb.Q) % pb.P;
    const int64_t c = (i / (pb.Q * pb.P)) % pb.C, n = i / (pb.Q * pb.P * pb.C);
    const int64_t h0 = p * pb.stride_h - pb.pad_h, w0 = q * pb.stride_w - pb.pad_w;
    // The first in-bounds tap in row-major order; like PyTorch, it stands even when a window has
    // no in-bounds tap at all (possible with dilation), where the output is -inf.
    int64_t best_kh = (first_tap(h0, pb.dil_h) - h0) / pb.dil_h, best_kw = (first_tap(w0, pb.dil_w) - w0) / pb.dil_w;
    A best = A(-INFINITY);
    for (int64_t kh = 0; kh < pb.kernel_h; ++kh) {
      const int64_t h = h0 + kh * pb.dil_h;
      if (h < 0 || h >= pb.H) continue;
      for (int64_t kw = 0; kw < pb.kernel_w; ++kw) {
        const int64_t w = w0 + kw * pb.dil_w;
        if (w < 0 || w >= pb.W) continue;
        const A v = load(x + offset4(a.x.stride, n, c, h, w));
        if (v > best || isnan(v)) {
          best = v;
          best_kh = kh, best_kw = kw;
        }
      }
    }
    store(y + offset4(a.y.stride, n, c, p, q), best);
    store_winner(a, offset4(a.index_stride, n, c, p, q), h0, w0, best_kh, best_kw);
  }
}

// Window p covers rows p sh - ph + i dh for i < kernel_h, so a row h can only be in windows
// ceil((h + ph - (kernel_h - 1) dh) / sh) <= p <= floor((h + ph) / sh); h + ph >= 0 keeps the
// upper bound a plain division. The range may hold windows that skip h between dilated taps;
// the exact index comparison rejects those.
template <typename T, typename A>
__global__ void max_pool2d_bwd_any__sm80_gather(MaxPool2dBwdArgs a) {
  const Pool2dProblem& pb = a.p;
  const T* dy = static_cast<const T*>(a.dy.data);
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t total = pb.N * pb.C * pb.H * pb.W;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t w = i % pb.W, h = (i / pb.W) % pb.H;
    const int64_t c = (i / (pb.W * pb.H)) % pb.C, n = i / (pb.W * pb.H * pb.C);
    const int64_t lo_h = h + pb.pad_h - (pb.kernel_h - 1) * pb.dil_h;
    const int64_t lo_w = w + pb.pad_w - (pb.kernel_w - 1) * pb.dil_w;
    const int64_t p_lo = lo_h <= 0 ? 0 : (lo_h + pb.stride_h - 1) / pb.stride_h;
    const int64_t q_lo = lo_w <= 0 ? 0 : (lo_w + pb.stride_w - 1) / pb.stride_w;
    const int64_t p_top = (h + pb.pad_h) / pb.stride_h, q_top = (w + pb.pad_w) / pb.stride_w;
    const int64_t p_hi = p_top < pb.P ? p_top : pb.P - 1;
    const int64_t q_hi = q_top < pb.Q ? q_top : pb.Q - 1;
    const int64_t self = h * pb.W + w;
    A acc = A(0);
    for (int64_t p = p_lo; p <= p_hi; ++p)
      for (int64_t q = q_lo; q <= q_hi; ++q)
        if (winner_index(a, offset4(a.index_stride, n, c, p, q), p, q) == self)
          acc += load(dy + offset4(a.dy.stride, n, c, p, q));
    store(dx + offset4(a.dx.stride, n, c, h, w), acc);
  }
}

// ---- dense NCHW / NHWC ---------------------------------------------------------------------------
// I: the index type, uint32_t where every tensor has at most 2^31 elements (then i plus the grid's
// threads cannot wrap), else int64_t. Window geometry fits int: it is bounded by H and W.

// Tap (i, j) of the first in-bounds element of a window at (h0, w0), as the reference records
// it when no element beats -inf.
__device__ __forceinline__ int first_tap_number(const Pool2dProblem& pb, int h0, int w0) {
  const int i = (int(first_tap(h0, pb.dil_h)) - h0) / int(pb.dil_h);
  const int j = (int(first_tap(w0, pb.dil_w)) - w0) / int(pb.dil_w);
  return i * int(pb.kernel_w) + j;
}

// The tap number of window (p, q) that lands on pixel (h, w), or -1 when none does (outside the
// window or between dilated taps). Taps map to distinct pixels, so comparing tap numbers is the
// reference's index comparison.
__device__ __forceinline__ int tap_landing_on(const Pool2dProblem& pb, int p, int q, int h, int w) {
  const int dh = h - (p * int(pb.stride_h) - int(pb.pad_h)), dw = w - (q * int(pb.stride_w) - int(pb.pad_w));
  if (dh < 0 || dw < 0 || dh % int(pb.dil_h) || dw % int(pb.dil_w)) return -1;
  const int i = dh / int(pb.dil_h), j = dw / int(pb.dil_w);
  if (i >= pb.kernel_h || j >= pb.kernel_w) return -1;
  return i * int(pb.kernel_w) + j;
}

// The windows that can hold pixel (h, w): rows p_lo..p_hi, columns q_lo..q_hi (see the reference).
struct WindowRange {
  int p_lo, p_hi, q_lo, q_hi;
};
__device__ __forceinline__ WindowRange windows_over(const Pool2dProblem& pb, int h, int w) {
  const int lo_h = h + int(pb.pad_h) - (int(pb.kernel_h) - 1) * int(pb.dil_h);
  const int lo_w = w + int(pb.pad_w) - (int(pb.kernel_w) - 1) * int(pb.dil_w);
  WindowRange r;
  r.p_lo = lo_h <= 0 ? 0 : (lo_h + int(pb.stride_h) - 1) / int(pb.stride_h);
  r.q_lo = lo_w <= 0 ? 0 : (lo_w + int(pb.stride_w) - 1) / int(pb.stride_w);
  r.p_hi = min((h + int(pb.pad_h)) / int(pb.stride_h), int(pb.P) - 1);
  r.q_hi = min((w + int(pb.pad_w)) / int(pb.stride_w), int(pb.Q) - 1);
  return r;
}

template <typename T, typename A, typename I>
__global__ void max_pool2d_fwd_nchw__sm80_dense(MaxPool2dFwdArgs a) {
  const Pool2dProblem& pb = a.p;
  const T* __restrict__ x = static_cast<const T*>(a.x.data);
  T* __restrict__ y = static_cast<T*>(a.y.data);
  const I P = I(pb.P), Q = I(pb.Q), HW = I(pb.H * pb.W);
  const int H = int(pb.H), W = int(pb.W), KH = int(pb.kernel_h), KW = int(pb.kernel_w);
  const I total = I(pb.N * pb.C) * P * Q;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I q = i % Q, pl = i / Q;
    const I p = pl % P, plane = pl / P;
    const T* xp = x + plane * HW;
    const int h0 = int(p) * int(pb.stride_h) - int(pb.pad_h), w0 = int(q) * int(pb.stride_w) - int(pb.pad_w);
    int best_tap = first_tap_number(pb, h0, w0);
    A best = A(-INFINITY);
    for (int kh = 0; kh < KH; ++kh) {
      const int h = h0 + kh * int(pb.dil_h);
      if (h < 0 || h >= H) continue;
      for (int kw = 0; kw < KW; ++kw) {
        const int w = w0 + kw * int(pb.dil_w);
        if (w < 0 || w >= W) continue;
        const A v = load(xp + (I(h) * I(W) + I(w)));
        if (v > best || isnan(v)) {
          best = v;
          best_tap = kh * KW + kw;
        }
      }
    }
    store(y + i, best);
    if (a.taps) a.taps[i] = uint8_t(best_tap);
    if (a.indices) a.indices[i] = int64_t(h0 + best_tap / KW * int(pb.dil_h)) * W + w0 + best_tap % KW * int(pb.dil_w);
  }
}

template <typename T, typename A, typename I>
__global__ void max_pool2d_bwd_nchw__sm80_dense(MaxPool2dBwdArgs a) {
  const Pool2dProblem& pb = a.p;
  const T* __restrict__ dy = static_cast<const T*>(a.dy.data);
  T* __restrict__ dx = static_cast<T*>(a.dx.data);
  const I H = I(pb.H), W = I(pb.W), PQ = I(pb.P * pb.Q);
  const int Q = int(pb.Q);
  const I total = I(pb.N * pb.C) * H * W;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I w = i % W, hp = i / W;
    const I h = hp % H, plane = hp / H;
    const WindowRange r = windows_over(pb, int(h), int(w));
    const I base = plane * PQ;
    const int64_t self = int64_t(h) * int64_t(W) + int64_t(w);
    A acc = A(0);
    for (int p = r.p_lo; p <= r.p_hi; ++p)
      for (int q = r.q_lo; q <= r.q_hi; ++q) {
        const I at = base + I(p * Q + q);
        const bool won = a.taps ? int(a.taps[at]) == tap_landing_on(pb, p, q, int(h), int(w)) : a.indices[at] == self;
        if (won) acc += load(dy + at);
      }
    store(dx + i, acc);
  }
}

// VEC channels per thread; C % VEC == 0 and 16-byte aligned tensors (VEC bytes for the taps).
template <int VEC> struct alignas(VEC) TapsOf { uint8_t b[VEC]; };

template <typename T, typename A, typename I, int VEC>
__global__ void max_pool2d_fwd_nhwc__sm80_vec(MaxPool2dFwdArgs a) {
  const Pool2dProblem& pb = a.p;
  const T* __restrict__ x = static_cast<const T*>(a.x.data);
  T* __restrict__ y = static_cast<T*>(a.y.data);
  const I CV = I(pb.C / VEC), C = I(pb.C), P = I(pb.P), Q = I(pb.Q);
  const int H = int(pb.H), W = int(pb.W), KH = int(pb.kernel_h), KW = int(pb.kernel_w);
  const I total = I(pb.N) * P * Q * CV;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I cv = i % CV, pix = i / CV;
    const I q = pix % Q, np = pix / Q;
    const I p = np % P, n = np / P;
    const T* xn = x + n * I(H) * I(W) * C + cv * VEC;
    const int h0 = int(p) * int(pb.stride_h) - int(pb.pad_h), w0 = int(q) * int(pb.stride_w) - int(pb.pad_w);
    const int first = first_tap_number(pb, h0, w0);
    A best[VEC];
    int best_tap[VEC];
#pragma unroll
    for (int l = 0; l < VEC; ++l) best[l] = A(-INFINITY), best_tap[l] = first;
    for (int kh = 0; kh < KH; ++kh) {
      const int h = h0 + kh * int(pb.dil_h);
      if (h < 0 || h >= H) continue;
      for (int kw = 0; kw < KW; ++kw) {
        const int w = w0 + kw * int(pb.dil_w);
        if (w < 0 || w >= W) continue;
        const VecOf<T, VEC> v = *reinterpret_cast<const VecOf<T, VEC>*>(xn + (I(h) * I(W) + I(w)) * C);
#pragma unroll
        for (int l = 0; l < VEC; ++l) {
          const A f = to_acc(v.v[l]);
          if (f > best[l] || isnan(f)) best[l] = f, best_tap[l] = kh * KW + kw;
        }
      }
    }
    const I at = pix * C + cv * VEC;
    VecOf<T, VEC> out;
#pragma unroll
    for (int l = 0; l < VEC; ++l) store(&out.v[l], best[l]);
    *reinterpret_cast<VecOf<T, VEC>*>(y + at) = out;
    if (a.taps) {
      TapsOf<VEC> t;
#pragma unroll
      for (int l = 0; l < VEC; ++l) t.b[l] = uint8_t(best_tap[l]);
      *reinterpret_cast<TapsOf<VEC>*>(a.taps + at) = t;
    }
    if (a.indices) {
#pragma unroll
      for (int l = 0; l < VEC; ++l)
        a.indices[at + l] = int64_t(h0 + best_tap[l] / KW * int(pb.dil_h)) * W + w0 + best_tap[l] % KW * int(pb.dil_w);
    }
  }
}

template <typename T, typename A, typename I, int VEC>
__global__ void max_pool2d_bwd_nhwc__sm80_vec(MaxPool2dBwdArgs a) {
  const Pool2dProblem& pb = a.p;
  const T* __restrict__ dy = static_cast<const T*>(a.dy.data);
  T* __restrict__ dx = static_cast<T*>(a.dx.data);
  const I CV = I(pb.C / VEC), C = I(pb.C), H = I(pb.H), W = I(pb.W);
  const int Q = int(pb.Q);
  const I total = I(pb.N) * H * W * CV;
  for (I i = I(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += I(gridDim.x) * blockDim.x) {
    const I cv = i % CV, pix = i / CV;
    const I w = pix % W, nh = pix / W;
    const I h = nh % H, n = nh / H;
    const WindowRange r = windows_over(pb, int(h), int(w));
    const I base = n * I(pb.P) * I(Q) * C + cv * VEC;  // dy / winners of window (0, 0)
    const int64_t self = int64_t(h) * int64_t(W) + int64_t(w);
    A acc[VEC];
#pragma unroll
    for (int l = 0; l < VEC; ++l) acc[l] = A(0);
    for (int p = r.p_lo; p <= r.p_hi; ++p)
      for (int q = r.q_lo; q <= r.q_hi; ++q) {
        const I at = base + I(p * Q + q) * C;
        bool won[VEC];
        if (a.taps) {
          const int tap = tap_landing_on(pb, p, q, int(h), int(w));
          if (tap < 0) continue;
          const TapsOf<VEC> t = *reinterpret_cast<const TapsOf<VEC>*>(a.taps + at);
#pragma unroll
          for (int l = 0; l < VEC; ++l) won[l] = int(t.b[l]) == tap;
        } else {
#pragma unroll
          for (int l = 0; l < VEC; ++l) won[l] = a.indices[at + l] == self;
        }
        const VecOf<T, VEC> g = *reinterpret_cast<const VecOf<T, VEC>*>(dy + at);
#pragma unroll
        for (int l = 0; l < VEC; ++l)
          if (won[l]) acc[l] += to_acc(g.v[l]);
      }
    VecOf<T, VEC> out;
#pragma unroll
    for (int l = 0; l < VEC; ++l) store(&out.v[l], acc[l]);
    *reinterpret_cast<VecOf<T, VEC>*>(dx + pix * C + cv * VEC) = out;
  }
}

// The dense layout every tensor of a pooling call shares (activations N x C x H x W, outputs and
// winners N x C x P x Q), or none.
Dense dense_layout(const Pool2dProblem& p, const int64_t* in_st, const int64_t* out_st, const int64_t* win_st) {
  for (Dense d : {Dense::nchw, Dense::nhwc})
    if (strides_are(d, in_st, p.N, p.C, p.H, p.W) && strides_are(d, out_st, p.N, p.C, p.P, p.Q) &&
        (!win_st || strides_are(d, win_st, p.N, p.C, p.P, p.Q)))
      return d;
  return Dense::none;
}

bool fits_uint32_index(const Pool2dProblem& p) {
  return cuda::fits_uint32_index(p.N * p.C * p.H * p.W) && cuda::fits_uint32_index(p.N * p.C * p.P * p.Q);
}

// Whether 16-byte vectors of channels apply (cuda_layout.cuh), with the taps' VEC-byte words aligned.
template <typename T>
bool vectors_and_taps_fit(const Pool2dProblem& p, std::initializer_list<const void*> tensors, const void* taps) {
  return vectors_fit(p.C, kVec16<T>, tensors) && (!taps || aligned(taps, kVec16<T>));
}

bool bad_geometry(const Pool2dProblem& p) {
  return p.kernel_h <= 0 || p.kernel_w <= 0 || p.stride_h <= 0 || p.stride_w <= 0 ||
         p.dil_h <= 0 || p.dil_w <= 0 || p.pad_h < 0 || p.pad_w < 0;
}

}  // namespace

cudaError_t max_pool2d_fwd(const MaxPool2dFwdArgs& args, cudaStream_t stream) {
  const Pool2dProblem& p = args.p;
  if (bad_geometry(p)) return cudaErrorInvalidValue;
  const int64_t total = p.N * p.C * p.P * p.Q;
  if (total == 0) return cudaSuccess;
  const bool winners = args.indices || args.taps;
  const Dense layout = dense_layout(p, args.x.stride, args.y.stride, winners ? args.index_stride : nullptr);
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    if (layout == Dense::none || reference_kernels_only()) {
      CNNK_LAUNCH(grid_for(total, kThreads), kThreads, 0, stream, max_pool2d_fwd_any__sm80_direct<T, A>)(args);
      return last_launch_error();
    }
    const bool vectors = layout == Dense::nhwc && vectors_and_taps_fit<T>(p, {args.x.data, args.y.data}, args.taps);
    launch_dense<kVec16<T>>(layout, vectors, fits_uint32_index(p), total, stream, [](auto index, auto vec) {
      using I = decltype(index);
      constexpr int V = decltype(vec)::value;
      if constexpr (V == 0) return max_pool2d_fwd_nchw__sm80_dense<T, A, I>;
      else return max_pool2d_fwd_nhwc__sm80_vec<T, A, I, V>;
    }, args);
    return last_launch_error();
  });
}

cudaError_t max_pool2d_bwd(const MaxPool2dBwdArgs& args, cudaStream_t stream) {
  const Pool2dProblem& p = args.p;
  if (bad_geometry(p)) return cudaErrorInvalidValue;
  const int64_t total = p.N * p.C * p.H * p.W;
  if (total == 0) return cudaSuccess;
  const Dense layout = dense_layout(p, args.dx.stride, args.dy.stride, args.index_stride);
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename AccOf<T>::type;
    if (layout == Dense::none || reference_kernels_only()) {
      CNNK_LAUNCH(grid_for(total, kThreads), kThreads, 0, stream, max_pool2d_bwd_any__sm80_gather<T, A>)(args);
      return last_launch_error();
    }
    const bool vectors = layout == Dense::nhwc && vectors_and_taps_fit<T>(p, {args.dy.data, args.dx.data}, args.taps);
    launch_dense<kVec16<T>>(layout, vectors, fits_uint32_index(p), total, stream, [](auto index, auto vec) {
      using I = decltype(index);
      constexpr int V = decltype(vec)::value;
      if constexpr (V == 0) return max_pool2d_bwd_nchw__sm80_dense<T, A, I>;
      else return max_pool2d_bwd_nhwc__sm80_vec<T, A, I, V>;
    }, args);
    return last_launch_error();
  });
}

}  // namespace cuda
}  // namespace cnnkernels
