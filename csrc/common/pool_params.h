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
struct MaxPool2dFwdArgs {
  Pool2dProblem p;
  ConstView4 x;       // N x C x H x W
  View4 y;            // N x C x P x Q
  int64_t* indices;   // N x C x P x Q with strides index_stride, or nullptr when not wanted
  int64_t index_stride[4];
};

// dx[n, c] plane gathers dy at the positions indices name; dx fully written (zeros elsewhere).
// Overlapping windows sum in a fixed order: deterministic. An index outside [0, H W) (a window
// with no input element under dilation) contributes nothing.
struct MaxPool2dBwdArgs {
  Pool2dProblem p;
  ConstView4 dy;            // N x C x P x Q
  const int64_t* indices;   // N x C x P x Q
  int64_t index_stride[4];
  View4 dx;                 // N x C x H x W
};

}  // namespace cnnkernels
