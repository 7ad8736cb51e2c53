// The conv2d entry points, and the reference kernels for every dtype, stride layout, group count
// and geometry: exact (no TF32), deterministic, no atomics. Dense depthwise layers run the kernels
// of conv2d_depthwise.cu, the rest the implicit GEMM of conv2d_gemm.cu; these run everything only
// under set_reference_kernels_only (and the bias gradient always):
//
//   conv2d_fprop_any__sm80_direct  one thread per y element: bias + sum over (c, r, s) of x w
//   conv2d_dgrad_any__sm80_gather  one thread per dx element: gathers the dy taps that reach it
//   conv2d_wgrad_any__sm80_block   one block per dw element: fixed-order block sum over (n, p, q)
//   conv2d_bgrad_any__sm80_block   one block per db element: fixed-order block sum over (n, p, q)
//
// Elementwise kernels walk their output in (n, c, h, w) order with w fastest: coalesced for NCHW,
// correct (if slower) for any other strides.
#include "conv2d_depthwise.cuh"
#include "conv2d_gemm.cuh"
#include "cuda_dtype.cuh"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"
#include "cuda_layout.cuh"
#include "cuda_reduce.cuh"

namespace cnnkernels {
namespace cuda {
namespace {

template <typename T, typename A>
__global__ void conv2d_fprop_any__sm80_direct(Conv2dFpropArgs a) {
  const Conv2dProblem& pb = a.p;
  const int64_t Cg = pb.C / pb.groups, Kg = pb.K / pb.groups;
  const T* x = static_cast<const T*>(a.x.data);
  const T* w = static_cast<const T*>(a.w.data);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y.data);
  const int64_t total = pb.N * pb.K * pb.P * pb.Q;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t q = i % pb.Q, p = (i / pb.Q) % pb.P;
    const int64_t k = (i / (pb.Q * pb.P)) % pb.K, n = i / (pb.Q * pb.P * pb.K);
    const int64_t c0 = (k / Kg) * Cg;  // first input channel of k's group
    A acc = bias ? load(bias + k) : A(0);
    for (int64_t r = 0; r < pb.R; ++r) {
      const int64_t h = p * pb.stride_h - pb.pad_h + r * pb.dil_h;
      if (h < 0 || h >= pb.H) continue;
      for (int64_t s = 0; s < pb.S; ++s) {
        const int64_t ww = q * pb.stride_w - pb.pad_w + s * pb.dil_w;
        if (ww < 0 || ww >= pb.W) continue;
        for (int64_t c = 0; c < Cg; ++c)
          acc += load(x + offset4(a.x.stride, n, c0 + c, h, ww)) *
                 load(w + offset4(a.w.stride, k, c, r, s));
      }
    }
    store(y + offset4(a.y.stride, n, k, p, q), acc);
  }
}

// y[p] reads x[h] through tap r when p sh - ph + r dh = h, so dx[h] gathers from
// p = (h + ph - r dh) / sh for every r where that is a non-negative multiple of sh below P.
template <typename T, typename A>
__global__ void conv2d_dgrad_any__sm80_gather(Conv2dDgradArgs a) {
  const Conv2dProblem& pb = a.p;
  const int64_t Cg = pb.C / pb.groups, Kg = pb.K / pb.groups;
  const T* dy = static_cast<const T*>(a.dy.data);
  const T* w = static_cast<const T*>(a.w.data);
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t total = pb.N * pb.C * pb.H * pb.W;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t wx = i % pb.W, h = (i / pb.W) % pb.H;
    const int64_t c = (i / (pb.W * pb.H)) % pb.C, n = i / (pb.W * pb.H * pb.C);
    const int64_t g = c / Cg, cw = c - g * Cg;  // cw: c's channel inside the weight view
    A acc = A(0);
    for (int64_t r = 0; r < pb.R; ++r) {
      const int64_t hp = h + pb.pad_h - r * pb.dil_h;
      if (hp < 0) break;  // hp only falls as r grows
      if (hp % pb.stride_h != 0 || hp / pb.stride_h >= pb.P) continue;
      const int64_t p = hp / pb.stride_h;
      for (int64_t s = 0; s < pb.S; ++s) {
        const int64_t wp = wx + pb.pad_w - s * pb.dil_w;
        if (wp < 0) break;
        if (wp % pb.stride_w != 0 || wp / pb.stride_w >= pb.Q) continue;
        const int64_t q = wp / pb.stride_w;
        for (int64_t k = g * Kg; k < (g + 1) * Kg; ++k)
          acc += load(dy + offset4(a.dy.stride, n, k, p, q)) *
                 load(w + offset4(a.w.stride, k, cw, r, s));
      }
    }
    store(dx + offset4(a.dx.stride, n, c, h, wx), acc);
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kReduceThreads) conv2d_wgrad_any__sm80_block(Conv2dWgradArgs a) {
  const Conv2dProblem& pb = a.p;
  const int64_t Cg = pb.C / pb.groups, Kg = pb.K / pb.groups;
  const T* dy = static_cast<const T*>(a.dy.data);
  const T* x = static_cast<const T*>(a.x.data);
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t total = pb.K * Cg * pb.R * pb.S, npq = pb.N * pb.P * pb.Q;
  // The loop bound depends on blockIdx only, so all threads of a block reach block_sum together.
  for (int64_t e = blockIdx.x; e < total; e += gridDim.x) {
    const int64_t s = e % pb.S, r = (e / pb.S) % pb.R;
    const int64_t c = (e / (pb.S * pb.R)) % Cg, k = e / (pb.S * pb.R * Cg);
    const int64_t cx = (k / Kg) * Cg + c;  // the x channel this weight multiplies
    A acc = A(0);
    for (int64_t j = threadIdx.x; j < npq; j += kReduceThreads) {
      const int64_t q = j % pb.Q, p = (j / pb.Q) % pb.P, n = j / (pb.Q * pb.P);
      const int64_t h = p * pb.stride_h - pb.pad_h + r * pb.dil_h;
      const int64_t ww = q * pb.stride_w - pb.pad_w + s * pb.dil_w;
      if (h < 0 || h >= pb.H || ww < 0 || ww >= pb.W) continue;
      acc += load(dy + offset4(a.dy.stride, n, k, p, q)) * load(x + offset4(a.x.stride, n, cx, h, ww));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) store(dw + offset4(a.dw.stride, k, c, r, s), acc);
  }
}

template <typename T, typename A>
__global__ void __launch_bounds__(kReduceThreads) conv2d_bgrad_any__sm80_block(Conv2dBgradArgs a) {
  const Conv2dProblem& pb = a.p;
  const T* dy = static_cast<const T*>(a.dy.data);
  T* db = static_cast<T*>(a.db);
  const int64_t npq = pb.N * pb.P * pb.Q;
  for (int64_t k = blockIdx.x; k < pb.K; k += gridDim.x) {
    A acc = A(0);
    for (int64_t j = threadIdx.x; j < npq; j += kReduceThreads) {
      const int64_t q = j % pb.Q, p = (j / pb.Q) % pb.P, n = j / (pb.Q * pb.P);
      acc += load(dy + offset4(a.dy.stride, n, k, p, q));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) store(db + k, acc);
  }
}

// Guards the divisions and modulos the kernels do; the op layer reports the user-facing errors.
bool bad_geometry(const Conv2dProblem& p) {
  return p.groups <= 0 || p.C % p.groups != 0 || p.K % p.groups != 0 || p.stride_h <= 0 ||
         p.stride_w <= 0 || p.dil_h <= 0 || p.dil_w <= 0;
}

}  // namespace

// The workspace of the kernel conv2d_fprop will run: the implicit GEMM's copies (none for the
// depthwise layers: one channel a group is no 16-byte chunk).
size_t conv2d_fprop_workspace_bytes(const Conv2dFpropArgs& args, bool allow_tf32) {
  if (bad_geometry(args.p) || reference_kernels_only()) return 0;
  return gemm_fprop_workspace_bytes(args, allow_tf32);
}

cudaError_t conv2d_fprop(const Conv2dFpropArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  if (bad_geometry(p)) return cudaErrorInvalidValue;
  const int64_t total = p.N * p.K * p.P * p.Q;
  if (total == 0) return cudaSuccess;
  if (!reference_kernels_only()) {
    if (const Launched dw = depthwise_fprop(args, stream); dw.ran) return dw.err;
    if (const Launched gm = gemm_fprop(args, allow_tf32, workspace, workspace_bytes, stream); gm.ran) return gm.err;
  }
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    CNNK_LAUNCH(grid_for(total, kThreads), kThreads, 0, stream, conv2d_fprop_any__sm80_direct<T, typename AccOf<T>::type>)(args);
    return last_launch_error();
  });
}

size_t conv2d_dgrad_workspace_bytes(const Conv2dDgradArgs& args, bool allow_tf32) {
  if (bad_geometry(args.p) || reference_kernels_only()) return 0;
  return gemm_dgrad_workspace_bytes(args, allow_tf32);
}

cudaError_t conv2d_dgrad(const Conv2dDgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  if (bad_geometry(p)) return cudaErrorInvalidValue;
  const int64_t total = p.N * p.C * p.H * p.W;
  if (total == 0) return cudaSuccess;
  if (!reference_kernels_only()) {
    if (const Launched dw = depthwise_dgrad(args, stream); dw.ran) return dw.err;
    if (const Launched gm = gemm_dgrad(args, allow_tf32, workspace, workspace_bytes, stream); gm.ran) return gm.err;
  }
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    CNNK_LAUNCH(grid_for(total, kThreads), kThreads, 0, stream, conv2d_dgrad_any__sm80_gather<T, typename AccOf<T>::type>)(args);
    return last_launch_error();
  });
}

// The workspace of the kernel conv2d_wgrad will run: depthwise, else the implicit GEMM.
size_t conv2d_wgrad_workspace_bytes(const Conv2dWgradArgs& args, bool allow_tf32) {
  if (bad_geometry(args.p) || reference_kernels_only()) return 0;
  const size_t depthwise = depthwise_wgrad_workspace_bytes(args);
  return depthwise ? depthwise : gemm_wgrad_workspace_bytes(args, allow_tf32);
}

// N == 0 still launches: every dw element is written, as zero.
cudaError_t conv2d_wgrad(const Conv2dWgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  if (bad_geometry(p)) return cudaErrorInvalidValue;
  const int64_t total = p.K * (p.C / p.groups) * p.R * p.S;
  if (total == 0) return cudaSuccess;
  if (!reference_kernels_only()) {
    if (const Launched dw = depthwise_wgrad(args, workspace, workspace_bytes, stream); dw.ran) return dw.err;
    if (const Launched gm = gemm_wgrad(args, allow_tf32, workspace, workspace_bytes, stream); gm.ran) return gm.err;
  }
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    CNNK_LAUNCH(grid_for(total, 1), kReduceThreads, 0, stream, conv2d_wgrad_any__sm80_block<T, typename AccOf<T>::type>)(args);
    return last_launch_error();
  });
}

// N == 0 still launches: every db element is written, as zero.
cudaError_t conv2d_bgrad(const Conv2dBgradArgs& args, cudaStream_t stream) {
  const Conv2dProblem& p = args.p;
  if (p.K == 0) return cudaSuccess;
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    CNNK_LAUNCH(grid_for(p.K, 1), kReduceThreads, 0, stream, conv2d_bgrad_any__sm80_block<T, typename AccOf<T>::type>)(args);
    return last_launch_error();
  });
}

}  // namespace cuda
}  // namespace cnnkernels
