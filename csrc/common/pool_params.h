// max_pool2d problem description shared by every backend.
#pragma once
#include <cstdint>

#include "conv_params.h"  // ConstView4 / View4
#include "dtype.h"

namespace cnnkernels {

struct Pool2dProblem {
  int64_t N, C, H, W;
  int64_t P, Q;  // output rows and columns (ceil_mode already applied)
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dil_h, dil_w;
  DType dtype;
};

// Output extent of one dimension, PyTorch's rule: in ceil_mode the last window must start inside
// the input or the left padding.
inline int64_t pool_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                             bool ceil_mode) {
  int64_t span = in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  // floor division that is also right for a negative span (too-small input gives out < 1)
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  if (ceil_mode && out > 0 && (out - 1) * stride >= in + pad) --out;
  return out;
}

// y[n, c, p, q] = max over the window; indices (optional) get h * W + w of the winner:
// the first maximum in row-major window order, or the last NaN. An all -inf window gives -inf and
// the index of its first in-bounds tap.
//
// Instead of indices a kernel can write taps: the winner's tap number i * kernel_w + j within its
// window (tap (i, j) is input pixel (p sh - ph + i dh, q sw - pw + j dw)), one byte where an int64
// index takes eight; only when kernel_h * kernel_w <= 256. The backward turns a tap back into the
// very index the forward would have written, so both forms route gradients identically.
struct MaxPool2dFwdArgs {
  Pool2dProblem p;
  ConstView4 x;       // N x C x H x W
  View4 y;            // N x C x P x Q
  int64_t* indices;   // N x C x P x Q with strides index_stride, or nullptr when not wanted
  int64_t index_stride[4];
  uint8_t* taps = nullptr;  // N x C x P x Q with strides index_stride; never set with indices
};

inline constexpr int64_t kMaxPoolMaxTaps = 256;  // window taps a uint8 tap number can name

// dx[n, c] plane gathers dy at the positions indices (or taps) name; dx fully written (zeros
// elsewhere). Overlapping windows sum in a fixed order: deterministic. An index outside [0, H W)
// (a window with no input element under dilation), or a tap number >= kernel_h * kernel_w,
// contributes nothing.
struct MaxPool2dBwdArgs {
  Pool2dProblem p;
  ConstView4 dy;            // N x C x P x Q
  const int64_t* indices;   // N x C x P x Q, or nullptr when taps are given
  int64_t index_stride[4];
  View4 dx;                 // N x C x H x W
  const uint8_t* taps = nullptr;  // N x C x P x Q with strides index_stride, instead of indices
};

#ifdef __CUDACC__
#define CNNKERNELS_HOST_DEVICE __host__ __device__
#else
#define CNNKERNELS_HOST_DEVICE
#endif

// The plane index of tap (i, j) of the window that starts at input pixel (h0, w0) (for a window
// that misses the input, possibly outside the plane).
CNNKERNELS_HOST_DEVICE inline int64_t tap_plane_index(const Pool2dProblem& pb, int64_t h0, int64_t w0, int64_t i,
                                                      int64_t j) {
  return (h0 + i * pb.dil_h) * pb.W + (w0 + j * pb.dil_w);
}

// The plane index the forward gives the winner of window (p, q) at tap number t (see above).
CNNKERNELS_HOST_DEVICE inline int64_t tap_to_index(const Pool2dProblem& pb, int64_t p, int64_t q, int64_t t) {
  return tap_plane_index(pb, p * pb.stride_h - pb.pad_h, q * pb.stride_w - pb.pad_w, t / pb.kernel_w,
                         t % pb.kernel_w);
}

// Records tap (i, j) of the window at (h0, w0) as the winner at element `at` of the indices or taps.
CNNKERNELS_HOST_DEVICE inline void store_winner(const MaxPool2dFwdArgs& a, int64_t at, int64_t h0, int64_t w0,
                                                int64_t i, int64_t j) {
  if (a.indices) a.indices[at] = tap_plane_index(a.p, h0, w0, i, j);
  if (a.taps) a.taps[at] = static_cast<uint8_t>(i * a.p.kernel_w + j);
}

// The plane index the winner of window (p, q), element `at` of the indices or taps, names; -1 for a
// tap number past the window's last.
CNNKERNELS_HOST_DEVICE inline int64_t winner_index(const MaxPool2dBwdArgs& a, int64_t at, int64_t p, int64_t q) {
  if (!a.taps) return a.indices[at];
  return a.taps[at] < a.p.kernel_h * a.p.kernel_w ? tap_to_index(a.p, p, q, a.taps[at]) : -1;
}

}  // namespace cnnkernels
