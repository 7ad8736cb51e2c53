// conv2d problem description shared by every backend: sizes, geometry, and strided views.
// Views carry element strides in (n, c, h, w) order for activations and (k, c, r, s) for weights,
// so one kernel reads NCHW, channels_last and non-contiguous tensors alike.
#pragma once
#include <cstdint>

#include "dtype.h"

namespace cnnkernels {

struct ConstView4 {
  const void* data;
  int64_t stride[4];
};

struct View4 {
  void* data;
  int64_t stride[4];
};

// N images of C x H x W; K filters of (C / G) x R x S; output K x P x Q.
struct Conv2dProblem {
  int64_t N, C, H, W;
  int64_t K, R, S;
  int64_t P, Q;
  int64_t groups;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;  // top and left; bottom/right padding is implied by P and Q
  int64_t dil_h, dil_w;
  DType dtype;
};

// Output extent of one dimension: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1.
inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

// y[n, k, p, q] = bias[k] + sum over (c, r, s) of x[n, g C/G + c, p sh - ph + r dh, q sw - pw + s dw] w[k, c, r, s]
struct Conv2dFpropArgs {
  Conv2dProblem p;
  ConstView4 x;      // N x C x H x W
  ConstView4 w;      // K x C/G x R x S
  const void* bias;  // K contiguous elements, or nullptr
  View4 y;           // N x K x P x Q, every element written
};

// dx = d(loss)/dx from dy; every element of dx written (zero where no tap lands).
struct Conv2dDgradArgs {
  Conv2dProblem p;
  ConstView4 dy;  // N x K x P x Q
  ConstView4 w;   // K x C/G x R x S
  View4 dx;       // N x C x H x W
};

// dw = sum over (n, p, q) of dy x; every element of dw written.
struct Conv2dWgradArgs {
  Conv2dProblem p;
  ConstView4 dy;  // N x K x P x Q
  ConstView4 x;   // N x C x H x W
  View4 dw;       // K x C/G x R x S
};

// db[k] = sum over (n, p, q) of dy[n, k, p, q]; db is K contiguous elements.
struct Conv2dBgradArgs {
  Conv2dProblem p;
  ConstView4 dy;
  void* db;
};

}  // namespace cnnkernels
