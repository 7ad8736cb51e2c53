// Plain-loop conv2d kernels, templated on the storage type T (accumulating in Acc<T>): the oracle
// the fast kernels are tested against, the float64/bfloat16 path, and the fallback for any shape.
//
// Included by reference.cpp (namespace ref) and again by each ISA's translation unit inside its own
// namespace (CNNKERNELS_KERNEL_NS) so that the copies compiled with -mavx2 / -mavx512f never merge
// with the scalar one at link time.
//
// Every kernel walks whole rows so that the innermost loop runs along an output or input row
// (unit stride for NCHW and stride 1): the compiler vectorises it in the ISA builds.
#pragma once
#ifndef CNNKERNELS_KERNEL_NS
#error "define CNNKERNELS_KERNEL_NS before including a reference kernel header"
#endif
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../../common/conv_params.h"
#include "../../common/parallel.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// floor(a / b) and ceil(a / b) for b > 0 and any sign of a.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Output columns q in [lo, hi) whose tap s lands inside the input row:
// 0 <= q * stride - pad + s * dil < in.
struct TapRange {
  int64_t lo, hi;
};
inline TapRange valid_outputs(int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t dil,
                              int64_t s) {
  int64_t off = s * dil - pad;
  int64_t lo = std::max<int64_t>(0, ceil_div(-off, stride));
  int64_t hi = std::min<int64_t>(out, floor_div(in - 1 - off, stride) + 1);
  return {lo, std::max(lo, hi)};
}

// Rows per parallel chunk so that a chunk holds roughly `work` multiply-adds.
inline int64_t grain_for(int64_t work_per_row) {
  return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, work_per_row));
}

template <typename T>
void conv2d_fprop(const Conv2dFpropArgs& a) {
  using A = typename Acc<T>::type;
  const Conv2dProblem& pb = a.p;
  const int64_t Cg = pb.C / pb.groups, Kg = pb.K / pb.groups;
  const T* x = static_cast<const T*>(a.x.data);
  const T* w = static_cast<const T*>(a.w.data);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y.data);
  const int64_t* xs = a.x.stride;
  const int64_t* ws = a.w.stride;
  const int64_t* ys = a.y.stride;
  // One work item is an output row (n, k, p).
  parallel_for(0, pb.N * pb.K * pb.P, grain_for(Cg * pb.R * pb.S * pb.Q), [&](int64_t b, int64_t e) {
    // acc sums one partial row per input channel (its R x S taps): short float chains.
    std::vector<A> acc(pb.Q), part(pb.Q);
    for (int64_t row = b; row < e; ++row) {
      const int64_t p = row % pb.P, k = (row / pb.P) % pb.K, n = row / (pb.P * pb.K);
      const int64_t g = k / Kg;
      std::fill(acc.begin(), acc.end(), bias ? load_acc(bias + k) : A(0));
      for (int64_t c = 0; c < Cg; ++c) {
        std::fill(part.begin(), part.end(), A(0));
        for (int64_t r = 0; r < pb.R; ++r) {
          const int64_t h = p * pb.stride_h - pb.pad_h + r * pb.dil_h;
          if (h < 0 || h >= pb.H) continue;
          const T* xrow = x + n * xs[0] + (g * Cg + c) * xs[1] + h * xs[2];
          for (int64_t s = 0; s < pb.S; ++s) {
            const A wv = load_acc(w + k * ws[0] + c * ws[1] + r * ws[2] + s * ws[3]);
            const TapRange qr = valid_outputs(pb.Q, pb.W, pb.stride_w, pb.pad_w, pb.dil_w, s);
            if (qr.lo == qr.hi) continue;
            const int64_t step = pb.stride_w * xs[3];
            const T* xp = xrow + (qr.lo * pb.stride_w - pb.pad_w + s * pb.dil_w) * xs[3];
            for (int64_t q = qr.lo; q < qr.hi; ++q) part[q] += wv * load_acc(xp + (q - qr.lo) * step);
          }
        }
        for (int64_t q = 0; q < pb.Q; ++q) acc[q] += part[q];
      }
      T* yrow = y + n * ys[0] + k * ys[1] + p * ys[2];
      for (int64_t q = 0; q < pb.Q; ++q) store_from(yrow + q * ys[3], acc[q]);
    }
  });
}

// dx[n, c, h, w] = sum over (k in c's group, r, s) of dy[n, k, p, q] w[k, c', r, s] where
// h = p sh - ph + r dh and w = q sw - pw + s dw. One work item is an input row (n, c, h); it
// gathers from the output rows that its taps reach, so no two threads write the same element.
template <typename T>
void conv2d_dgrad(const Conv2dDgradArgs& a) {
  using A = typename Acc<T>::type;
  const Conv2dProblem& pb = a.p;
  const int64_t Cg = pb.C / pb.groups, Kg = pb.K / pb.groups;
  const T* dy = static_cast<const T*>(a.dy.data);
  const T* w = static_cast<const T*>(a.w.data);
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t* dys = a.dy.stride;
  const int64_t* ws = a.w.stride;
  const int64_t* dxs = a.dx.stride;
  const int64_t rows = pb.N * pb.C * pb.H;
  parallel_for(0, rows, grain_for(Kg * pb.R * pb.S * pb.Q), [&](int64_t b, int64_t e) {
    // acc sums one partial row per output channel k (its R x S taps): short float chains.
    std::vector<A> acc(pb.W), part(pb.W);
    for (int64_t row = b; row < e; ++row) {
      const int64_t h = row % pb.H, c = (row / pb.H) % pb.C, n = row / (pb.H * pb.C);
      const int64_t g = c / Cg, cc = c - g * Cg;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t k = g * Kg; k < (g + 1) * Kg; ++k) {
        std::fill(part.begin(), part.end(), A(0));
        for (int64_t r = 0; r < pb.R; ++r) {
          const int64_t hp = h + pb.pad_h - r * pb.dil_h;
          if (hp < 0 || hp % pb.stride_h != 0) continue;
          const int64_t p = hp / pb.stride_h;
          if (p >= pb.P) continue;
          const T* dyrow = dy + n * dys[0] + k * dys[1] + p * dys[2];
          for (int64_t s = 0; s < pb.S; ++s) {
            const A wv = load_acc(w + k * ws[0] + cc * ws[1] + r * ws[2] + s * ws[3]);
            const TapRange qr = valid_outputs(pb.Q, pb.W, pb.stride_w, pb.pad_w, pb.dil_w, s);
            const int64_t off = s * pb.dil_w - pb.pad_w;
            for (int64_t q = qr.lo; q < qr.hi; ++q)
              part[q * pb.stride_w + off] += wv * load_acc(dyrow + q * dys[3]);
          }
        }
        for (int64_t iw = 0; iw < pb.W; ++iw) acc[iw] += part[iw];
      }
      T* dxrow = dx + n * dxs[0] + c * dxs[1] + h * dxs[2];
      for (int64_t iw = 0; iw < pb.W; ++iw) store_from(dxrow + iw * dxs[3], acc[iw]);
    }
  });
}

// dw[k, c, r, s] = sum over (n, p, q) of dy[n, k, p, q] x[n, g C/G + c, h, w]. One work item is a
// filter slice (k, c) with its R x S taps; each output row contributes a partial sum (shorter
// float chains than one running sum over N P Q).
template <typename T>
void conv2d_wgrad(const Conv2dWgradArgs& a) {
  using A = typename Acc<T>::type;
  const Conv2dProblem& pb = a.p;
  const int64_t Cg = pb.C / pb.groups, Kg = pb.K / pb.groups;
  const T* dy = static_cast<const T*>(a.dy.data);
  const T* x = static_cast<const T*>(a.x.data);
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t* dys = a.dy.stride;
  const int64_t* xs = a.x.stride;
  const int64_t* dws = a.dw.stride;
  parallel_for(0, pb.K * Cg, grain_for(pb.R * pb.S * pb.N * pb.P * pb.Q), [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t c = item % Cg, k = item / Cg, g = k / Kg;
      for (int64_t r = 0; r < pb.R; ++r) {
        for (int64_t s = 0; s < pb.S; ++s) {
          const TapRange qr = valid_outputs(pb.Q, pb.W, pb.stride_w, pb.pad_w, pb.dil_w, s);
          A total = 0;
          for (int64_t n = 0; n < pb.N && qr.lo < qr.hi; ++n) {
            for (int64_t p = 0; p < pb.P; ++p) {
              const int64_t h = p * pb.stride_h - pb.pad_h + r * pb.dil_h;
              if (h < 0 || h >= pb.H) continue;
              const T* dyrow = dy + n * dys[0] + k * dys[1] + p * dys[2];
              const T* xp = x + n * xs[0] + (g * Cg + c) * xs[1] + h * xs[2] +
                            (qr.lo * pb.stride_w - pb.pad_w + s * pb.dil_w) * xs[3];
              const int64_t step = pb.stride_w * xs[3];
              A part = 0;
              for (int64_t q = qr.lo; q < qr.hi; ++q)
                part += load_acc(dyrow + q * dys[3]) * load_acc(xp + (q - qr.lo) * step);
              total += part;
            }
          }
          store_from(dw + k * dws[0] + c * dws[1] + r * dws[2] + s * dws[3], total);
        }
      }
    }
  });
}

template <typename T>
void conv2d_bgrad(const Conv2dBgradArgs& a) {
  using A = typename Acc<T>::type;
  const Conv2dProblem& pb = a.p;
  const T* dy = static_cast<const T*>(a.dy.data);
  T* db = static_cast<T*>(a.db);
  const int64_t* dys = a.dy.stride;
  parallel_for(0, pb.K, grain_for(pb.N * pb.P * pb.Q), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      A total = 0;
      for (int64_t n = 0; n < pb.N; ++n) {
        for (int64_t p = 0; p < pb.P; ++p) {
          const T* dyrow = dy + n * dys[0] + k * dys[1] + p * dys[2];
          A part = 0;
          for (int64_t q = 0; q < pb.Q; ++q) part += load_acc(dyrow + q * dys[3]);
          total += part;
        }
      }
      store_from(db + k, total);
    }
  });
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
