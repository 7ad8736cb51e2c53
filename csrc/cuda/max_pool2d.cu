// Reference-grade max_pool2d kernels for every dtype and stride layout, following PyTorch's CUDA
// rules (first maximum wins, last NaN wins, implicit -inf padding). Deterministic, no atomics.
//
//   max_pool2d_fwd_any__sm80_direct  one thread per y element: scans its window in row-major order;
//                                    records the winner as an int64 index or a uint8 tap number
//   max_pool2d_bwd_any__sm80_gather  one thread per dx element: sums the dy of every window whose
//                                    index (or tap, turned into its index) names it, in increasing
//                                    (p, q) order
#include "cuda_dtype.cuh"
#include "cuda_kernels.h"
#include "cuda_launch.cuh"

namespace cnnkernels {
namespace cuda {
namespace {

__device__ __forceinline__ int64_t offset(const int64_t* st, int64_t a, int64_t b, int64_t c,
                                          int64_t d) {
  return a * st[0] + b * st[1] + c * st[2] + d * st[3];
}

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
        const A v = load(x + offset(a.x.stride, n, c, h, w));
        if (v > best || isnan(v)) {
          best = v;
          best_kh = kh, best_kw = kw;
        }
      }
    }
    store(y + offset(a.y.stride, n, c, p, q), best);
    store_winner(a, offset(a.index_stride, n, c, p, q), h0, w0, best_kh, best_kw);
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
        if (winner_index(a, offset(a.index_stride, n, c, p, q), p, q) == self)
          acc += load(dy + offset(a.dy.stride, n, c, p, q));
    store(dx + offset(a.dx.stride, n, c, h, w), acc);
  }
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
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_fwd_any__sm80_direct<T, typename AccOf<T>::type>
        <<<grid_for(total, kThreads), kThreads, 0, stream>>>(args);
    return cudaGetLastError();
  });
}

cudaError_t max_pool2d_bwd(const MaxPool2dBwdArgs& args, cudaStream_t stream) {
  const Pool2dProblem& p = args.p;
  if (bad_geometry(p)) return cudaErrorInvalidValue;
  const int64_t total = p.N * p.C * p.H * p.W;
  if (total == 0) return cudaSuccess;
  return dispatch(p.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_bwd_any__sm80_gather<T, typename AccOf<T>::type>
        <<<grid_for(total, kThreads), kThreads, 0, stream>>>(args);
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace cnnkernels
