// Forward of one-group convolutions with 1-7 output channels at column stride 1 (a segmentation
// or depth head's 64 -> 1, an image decoder's 64 -> 3), for float32 and bfloat16. The direct
// engine's tiles run 8+ output channels as vector lanes; here the lanes are output columns.
// Included inside the ISA namespace after conv2d_direct.h (AVX2 and AVX-512 builds).
//
// x goes once into zero-padded float rows, [n][hp][c][Wp] (the padding around; rows long enough for
// a whole block of columns), the filter into [r][c][s][k]. A register tile is K outputs x NV
// vectors of one output row's columns: per tap (r, c, s), NV loads of x and K broadcasts of the
// weights feed K NV FMAs, summed in (r, c, s) order, so that a tile reads each input row's
// channels as one run. (Planes, [n][c][hp][Wp], had the tile hop a plane per channel: NCHW, N=8,
// 64 -> 7 @56 3.6 -> 1.8 ms, 64 -> 1 @112 5.2 -> 2.9 ms.)
//
// Measured against PyTorch, 2 threads, Zen 5, float32 (these layers had run the reference loops,
// 0.2-0.5x PyTorch): NCHW N=8 64 -> 1 @112 2.2-3.6x, 32 -> 2 @56 2.0x, 16 -> 4 @56 2.3x, 64 -> 7
// @56 1.2x; N=1 3 -> 3 @224 2.1x, 64 -> 3 @256 1.8-2.0x; channels_last 1.2-2.2x but 64 -> 7 0.65x.
// bfloat16 (PyTorch on vdpbf16ps): NCHW 1.1-1.5x, channels_last 0.7-1.0x.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "conv2d_direct.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

constexpr int64_t kFewOutputsMax = 7;  // the direct engine takes 8+ (conv2d_fprop_direct)

// Vectors of columns per tile for K outputs: K NV accumulators and NV loaded x vectors within the
// registers (32 on AVX-512, 16 on AVX2).
template <int K>
constexpr int few_outputs_vectors() {
  constexpr int regs = VecF32::kLanes == 16 ? 30 : 15;
  return std::clamp(regs / (K + 1), 1, 8);
}

// acc[k][v] = bias[k] + sum over r < R, c < C, s < S of x[r row_step + c Wp + s col_step + v L]
// wt[((r C + c) S + s) K + k]: the output columns of one row's block (x at its first column).
template <int K, int NV>
[[gnu::always_inline]] inline void few_outputs_tile(const float* x, int64_t Wp, int64_t row_step, int64_t col_step,
                                                    int64_t C, int64_t R, int64_t S, const float* wt,
                                                    const float* bias, typename VecF32::type acc[K][NV]) {
  using V = VecF32;
  constexpr int L = V::kLanes;
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[k][v] = bias ? V::broadcast(bias + k) : V::zero();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const float* xr = x + r * row_step + c * Wp;
      const float* wr = wt + (r * C + c) * S * K;
      for (int64_t s = 0; s < S; ++s) {
        typename V::type xv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) xv[v] = V::load(xr + s * col_step + v * L);
#pragma GCC unroll 8
        for (int k = 0; k < K; ++k) {
          const typename V::type wk = V::broadcast(wr + s * K + k);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[k][v] = V::fmadd(xv[v], wk, acc[k][v]);
        }
      }
    }
}

template <typename T, int K>
void few_outputs_conv(const Conv2dProblem& p, const float* xp, int64_t Hp, int64_t Wp, const float* wt,
                      const float* bias, T* y, const int64_t ys[4]) {
  using V = VecF32;
  constexpr int L = V::kLanes, NV = few_outputs_vectors<K>();
  constexpr int64_t kBlock = NV * L;
  const int64_t row = p.C * Wp;  // one padded input row, every channel
  parallel_for(0, p.N * p.P, 1, [&](int64_t b, int64_t e) {
    typename V::type acc[K][NV];
    alignas(64) float lanes[kBlock];
    for (int64_t np = b; np < e; ++np) {
      const int64_t n = np / p.P, pp = np % p.P;
      const float* xrow = xp + (n * Hp + pp * p.stride_h) * row;
      T* yrow = y + n * ys[0] + pp * ys[2];
      for (int64_t next = 0; next < p.Q; next += kBlock) {
        // The last block ends at Q where the row holds a whole block (columns computed twice, to
        // the same bits), so that no read passes the padded row.
        const int64_t q0 = p.Q >= kBlock ? std::min(next, p.Q - kBlock) : 0;
        few_outputs_tile<K, NV>(xrow + q0, Wp, p.dil_h * row, p.dil_w, p.C, p.R, p.S, wt, bias, acc);
        const int64_t cols = std::min(kBlock, p.Q - q0);
        for (int k = 0; k < K; ++k) {
          T* yk = yrow + k * ys[1] + q0 * ys[3];
          if (ys[3] == 1 && cols == kBlock) {  // whole vectors along a plane row
            for (int v = 0; v < NV; ++v) V::store(yk + v * L, acc[k][v]);
            continue;
          }
          for (int v = 0; v < NV; ++v) V::store(lanes + v * L, acc[k][v]);
          for (int64_t q = 0; q < cols; ++q) store_from(yk + q * ys[3], lanes[q]);
        }
      }
    }
  });
}

template <typename T>
inline bool conv2d_fprop_few_outputs(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || p.groups != 1 || p.K > kFewOutputsMax || p.stride_w != 1) return false;
  constexpr int64_t kMaxBlock = 8 * VecF32::kLanes;  // the widest tile's columns
  // Padded planes: the rows the windows reach; columns for one whole block of columns and its taps
  // (rows shorter than a block: few_outputs_conv's last block ends at Q on longer ones).
  const int64_t Hp = std::max(p.H + 2 * p.pad_h, (p.P - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1);
  const int64_t Wp = std::max(p.W + 2 * p.pad_w, std::max(p.Q, kMaxBlock) + (p.S - 1) * p.dil_w);
  const T* x = static_cast<const T*>(a.x.data);
  const int64_t* xs = a.x.stride;
  ScratchOf<float> xp(p.N * Hp * p.C * Wp);
  parallel_for(0, p.N * Hp, 1, [&](int64_t b, int64_t e) {
    for (int64_t nh = b; nh < e; ++nh) {
      const int64_t n = nh / Hp, h = nh % Hp - p.pad_h;
      float* rows = xp.data() + nh * p.C * Wp;  // channel c's row at rows + c Wp
      if (h < 0 || h >= p.H) {
        std::fill(rows, rows + p.C * Wp, 0.0f);
        continue;
      }
      for (int64_t c = 0; c < p.C; ++c) {
        std::fill(rows + c * Wp, rows + c * Wp + p.pad_w, 0.0f);
        std::fill(rows + c * Wp + p.pad_w + p.W, rows + (c + 1) * Wp, 0.0f);
      }
      const T* src = x + n * xs[0] + h * xs[2];
      float* dst = rows + p.pad_w;
      if (xs[3] == 1) {  // plane rows
        for (int64_t c = 0; c < p.C; ++c) convert_n(src + c * xs[1], dst + c * Wp, p.W);
        continue;
      }
      // Channels contiguous at each pixel (channels_last): 8 pixels x 8 channels per register transpose.
      const int64_t c8 = xs[1] == 1 ? p.C - p.C % 8 : 0, w8 = p.W - p.W % 8;
      for (int64_t c = 0; c < c8; c += 8)
        for (int64_t w = 0; w < w8; w += 8) transpose8x8(src + w * xs[3] + c, xs[3], dst + c * Wp + w, Wp);
      for (int64_t c = 0; c < p.C; ++c)
        for (int64_t w = (c < c8 ? w8 : 0); w < p.W; ++w) dst[c * Wp + w] = load_acc(src + c * xs[1] + w * xs[3]);
    }
  });
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  std::vector<float> wt(p.C * p.R * p.S * p.K);
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t r = 0; r < p.R; ++r)
        for (int64_t s = 0; s < p.S; ++s)
          wt[((r * p.C + c) * p.S + s) * p.K + k] = load_acc(w + k * ws[0] + c * ws[1] + r * ws[2] + s * ws[3]);
  const FloatBias<T> bias(a.bias, p.K);
  T* y = static_cast<T*>(a.y.data);
  switch (p.K) {
#define CNNKERNELS_FEW_OUTPUTS_CASE(K)                                                                  \
  case K:                                                                                               \
    few_outputs_conv<T, K>(p, xp.data(), Hp, Wp, wt.data(), bias.data(), y, a.y.stride);               \
    break;
    CNNKERNELS_FEW_OUTPUTS_CASE(1) CNNKERNELS_FEW_OUTPUTS_CASE(2) CNNKERNELS_FEW_OUTPUTS_CASE(3)
    CNNKERNELS_FEW_OUTPUTS_CASE(4) CNNKERNELS_FEW_OUTPUTS_CASE(5) CNNKERNELS_FEW_OUTPUTS_CASE(6)
    CNNKERNELS_FEW_OUTPUTS_CASE(7)
#undef CNNKERNELS_FEW_OUTPUTS_CASE
  }
  return true;
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
