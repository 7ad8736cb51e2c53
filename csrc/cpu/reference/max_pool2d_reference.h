// Plain-loop max_pool2d kernels, templated on the storage type; see conv2d_reference.h for why
// they live in a header included once per ISA namespace.
//
// Forward rule (PyTorch's): in row-major tap order, `v > best || isnan(v)` replaces the best, so
// the first maximum wins a tie, the last NaN wins over everything, and an all -inf window keeps
// -inf with the index of its first in-bounds tap.
#pragma once
#ifndef CNNKERNELS_KERNEL_NS
#error "define CNNKERNELS_KERNEL_NS before including a reference kernel header"
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../../common/parallel.h"
#include "../../common/pool_params.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

template <typename T>
void max_pool2d_fwd(const MaxPool2dFwdArgs& a) {
  using A = typename Acc<T>::type;
  const Pool2dProblem& pb = a.p;
  const T* x = static_cast<const T*>(a.x.data);
  T* y = static_cast<T*>(a.y.data);
  const int64_t* xs = a.x.stride;
  const int64_t* ys = a.y.stride;
  const int64_t* is = a.index_stride;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, pb.Q * pb.kernel_h * pb.kernel_w));
  // One work item is an output row (n, c, p).
  parallel_for(0, pb.N * pb.C * pb.P, grain, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t p = row % pb.P, c = (row / pb.P) % pb.C, n = row / (pb.P * pb.C);
      const T* plane = x + n * xs[0] + c * xs[1];
      const int64_t h0 = p * pb.stride_h - pb.pad_h;
      // In-bounds window rows: h0 + i dh in [0, H).
      int64_t i_lo = 0, i_hi = pb.kernel_h;
      while (i_lo < i_hi && h0 + i_lo * pb.dil_h < 0) ++i_lo;
      while (i_hi > i_lo && h0 + (i_hi - 1) * pb.dil_h >= pb.H) --i_hi;
      for (int64_t q = 0; q < pb.Q; ++q) {
        const int64_t w0 = q * pb.stride_w - pb.pad_w;
        int64_t j_lo = 0, j_hi = pb.kernel_w;
        while (j_lo < j_hi && w0 + j_lo * pb.dil_w < 0) ++j_lo;
        while (j_hi > j_lo && w0 + (j_hi - 1) * pb.dil_w >= pb.W) --j_hi;
        A best = -std::numeric_limits<A>::infinity();
        // A window that misses the input (dilation) reports its first in-bounds tap's position.
        int64_t best_i = i_lo, best_j = j_lo;
        for (int64_t i = i_lo; i < i_hi; ++i) {
          const int64_t h = h0 + i * pb.dil_h;
          for (int64_t j = j_lo; j < j_hi; ++j) {
            const int64_t w = w0 + j * pb.dil_w;
            const A v = load_acc(plane + h * xs[2] + w * xs[3]);
            if (v > best || std::isnan(v)) {
              best = v;
              best_i = i, best_j = j;
            }
          }
        }
        store_from(y + n * ys[0] + c * ys[1] + p * ys[2] + q * ys[3], best);
        store_winner(a, n * is[0] + c * is[1] + p * is[2] + q * is[3], h0, w0, best_i, best_j);
      }
    }
  });
}

// One work item is an (n, c) plane: it owns that plane of dx, so scattering dy to the winners
// needs no atomics and sums overlapping windows in a fixed (row-major output) order. Taps become
// the indices the forward would have written. An index outside the plane routes its gradient
// nowhere: PyTorch gives such an index to a window that
// holds no input element (possible with dilation), whose -inf output depends on no input.
template <typename T>
void max_pool2d_bwd(const MaxPool2dBwdArgs& a) {
  using A = typename Acc<T>::type;
  const Pool2dProblem& pb = a.p;
  const T* dy = static_cast<const T*>(a.dy.data);
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t* dys = a.dy.stride;
  const int64_t* dxs = a.dx.stride;
  const int64_t* is = a.index_stride;
  const int64_t plane_size = pb.H * pb.W;
  parallel_for(0, pb.N * pb.C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, plane_size)),
               [&](int64_t b, int64_t e) {
    std::vector<A> acc(plane_size);
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t c = nc % pb.C, n = nc / pb.C;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t p = 0; p < pb.P; ++p) {
        for (int64_t q = 0; q < pb.Q; ++q) {
          const int64_t idx = winner_index(a, n * is[0] + c * is[1] + p * is[2] + q * is[3], p, q);
          if (idx >= 0 && idx < plane_size)
            acc[idx] += load_acc(dy + n * dys[0] + c * dys[1] + p * dys[2] + q * dys[3]);
        }
      }
      T* plane = dx + n * dxs[0] + c * dxs[1];
      for (int64_t h = 0; h < pb.H; ++h)
        for (int64_t w = 0; w < pb.W; ++w) store_from(plane + h * dxs[2] + w * dxs[3], acc[h * pb.W + w]);
    }
  });
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
