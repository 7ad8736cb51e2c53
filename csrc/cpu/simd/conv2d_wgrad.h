// Weight gradient on channels-last tiles, vectorised over output channels, for float32 and
// bfloat16 (AVX2 and AVX-512 builds; included inside the ISA namespace after conv2d_direct.h).
// bfloat16 x and dy are widened to float as they are packed; sums run in float and dw / db are
// rounded once at the end.
//
// For group g and tap (r, s), dW[c][k] = sum over pixels (n, p, q) of x[n, p sh + r dh, q sw + s dw, c]
// dy[n, p, q, k]: a GEMM whose reduction runs over the N P Q output pixels. A tile is MC input
// channels x KB output channels of one (g, tap): per pixel MC broadcasts of x and NV vector loads of
// dy feed MC * NV FMAs (the fprop tile's shape).
//
// With the multiply-add policy DotBf16 (conv2d_bf16dot_avx512.cpp) the reduction pairs output
// pixels: columns 2j and 2j + 1 of an output row make one 32-bit element of dy (lo, hi) per
// channel k, and x is packed as pairs (x at input column w, x at column w + stride_w) per channel,
// so one broadcast holds the tap's inputs of both pixels. With an odd output width the last column
// has no partner: each row ends with one more element for it, paired with zeros, from x packed for
// its taps only (the tile's tail).
//
// Determinism and cache use: each thread owns a fixed range of tiles and walks every pixel in the
// same order, a chunk of output rows at a time (the chunk's dy and x rows stay in L1/L2 while all
// of the thread's tiles consume them). A tile's running total lives in a float buffer and takes one
// partial sum per chunk, so the summation order never depends on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "conv2d_direct.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// Where a tile finds one extra element per row (x at x + row_offset[j], dy at dy + j dy_step), or
// x null for none.
template <class E>
struct WgradTail {
  const E* x = nullptr;
  const int64_t* row_offset = nullptr;
  const E* dy = nullptr;
};

// A row offset that marks a row of x lying in the padding (an x read in place): skipped.
constexpr int64_t kNoRow = INT64_MIN;

// total[m][v] += sum over the chunk's rows j and columns q of x(row j, q, c0 + m) * dy(j, q, vector v),
// over columns [q_lo, q_hi) of Q packed elements per row (pixels, or pixel pairs), then the tail's
// element of the row. Column q of x row j is at x + (row_offset[j] + q x_pixel_step), an integer
// offset first (read in place, x's columns before q_lo lie in the padding: no pointer to them is
// formed); rows at kNoRow are skipped. dy's chunk is contiguous, one element every dy_pixel_step.
// Always inlined (like conv_tile): out of line, the AVX-512 wgrad_tile<6, 4> kept its
// accumulators in memory.
template <class M, int MC, int NV>
[[gnu::always_inline]] inline void wgrad_tile(
    const typename M::Elem* x, const int64_t* row_offset, int64_t rows, int64_t Q, int64_t q_lo, int64_t q_hi,
    int64_t x_pixel_step, const typename M::Elem* dy, int64_t dy_pixel_step, const WgradTail<typename M::Elem>& tail,
    float* total, int64_t total_row_step, bool first) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  // Every loop over the tile unrolled: GCC left the 24 x 1 tile's accumulators in memory (a load
  // and a store around each FMA) without the pragmas.
  typename V::type acc[MC][NV];
#pragma GCC unroll 32
  for (int m = 0; m < MC; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = V::zero();
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t xr = row_offset[j];
    if (xr == kNoRow) continue;
    const typename M::Elem* dr = dy + j * Q * dy_pixel_step;
    for (int64_t q = q_lo; q < q_hi; ++q) {
      typename M::In dv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) dv[v] = M::load(dr + q * dy_pixel_step + v * L);
#pragma GCC unroll 32
      for (int m = 0; m < MC; ++m) {
        const typename M::In xb = M::broadcast(x + (xr + q * x_pixel_step + m));
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[m][v] = M::madd(xb, dv[v], acc[m][v]);
      }
    }
    if (tail.x) {
      typename M::In dv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) dv[v] = M::load(tail.dy + j * dy_pixel_step + v * L);
#pragma GCC unroll 32
      for (int m = 0; m < MC; ++m) {
        const typename M::In xb = M::broadcast(tail.x + tail.row_offset[j] + m);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[m][v] = M::madd(xb, dv[v], acc[m][v]);
      }
    }
  }
#pragma GCC unroll 32
  for (int m = 0; m < MC; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* t = total + m * total_row_step + v * L;
      V::store(t, first ? acc[m][v] : V::add(V::load(t), acc[m][v]));
    }
}

template <class M, int MC, int NV>
[[gnu::always_inline]] inline void wgrad_tile_upto(
    int m, const typename M::Elem* x, const int64_t* row_offset, int64_t rows, int64_t Q, int64_t q_lo, int64_t q_hi,
    int64_t x_pixel_step, const typename M::Elem* dy, int64_t dy_pixel_step, const WgradTail<typename M::Elem>& tail,
    float* total, int64_t total_row_step, bool first) {
  if constexpr (MC > 1) {
    if (m < MC)
      return wgrad_tile_upto<M, MC - 1, NV>(m, x, row_offset, rows, Q, q_lo, q_hi, x_pixel_step, dy, dy_pixel_step,
                                            tail, total, total_row_step, first);
  }
  wgrad_tile<M, MC, NV>(x, row_offset, rows, Q, q_lo, q_hi, x_pixel_step, dy, dy_pixel_step, tail, total,
                        total_row_step, first);
}

// The weight gradient of 3-wide filters at column stride 1 for one vector of output channels
// (16 or fewer per group on AVX-512, 8 on AVX2, and two vectors' groups a vector at a time):
// input column i of a row meets dy columns i, i - 1 and i - 2 through the taps s = 0, 1, 2, so
// one broadcast of x serves three FMAs. The 24 x 1 tiles
// (wgrad_tile) took one broadcast per FMA and, with 16 channels per group, filled 16 of their
// 24 rows (in-process A/B, arms in random order, Xeon, 2 threads, ResNeXt 512 @14 x 32 groups:
// N=1 1.13 / 1.17x NCHW / channels_last, N=8 1.19 / 1.22x). total[s tap_step + m total_row_step]
// (+)= the tile's MC channels x 3 taps, summed over the rows (x row j at x + row_offset[j], Q + 2
// columns xps apart; dy row j at dy + j Q dps). SW = 2 (column stride 2; rows of 2 Q + 1
// columns): even column 2q meets dy columns q and q - 1 through taps 0 and 2, odd column 2q + 1
// dy column q through tap 1, so two broadcasts serve three FMAs (the 24 x 1 tiles: one each;
// in-process A/B, arms in random order, Xeon, 2 threads, ResNeXt 512 @28 /2 x 32 groups: N=8
// channels_last 2.48 -> 2.00 ms, NCHW 3.05 -> 2.60; N=1 0.381 -> 0.302, 0.462 -> 0.365).
// Over an unpadded x read in place: rows whose offset is kNoRow lie in the padding (skipped), and
// with skip_first / skip_last so do the row's first / last columns (x + row_offset[j] + i xps,
// never formed for them, would lie outside).
// M = DotBf16 (pixel pairs, column stride 1, even Q): x's pair at column i holds columns (i,
// i + 1) and dy's pair q columns (2q, 2q + 1), so the SW = 2 walk applies over dy's pairs, Q of
// them: x's pair 2q meets dy pair q through tap 0 and pair q - 1 through tap 2, pair 2q + 1 dy
// pair q through tap 1. Two broadcasts serve three vdpbf16ps, where the 24 x 1 tiles took one
// each (Zen 5 issues about one broadcast load a cycle, two vdpbf16ps).
template <int MC, int SW = 1, class M = FmaF32>
[[gnu::always_inline]] inline void wgrad_row_tile(const typename M::Elem* x, const int64_t* row_offset, int64_t rows,
                                                  int64_t Q, int64_t xps, const typename M::Elem* dy, int64_t dps,
                                                  float* total, int64_t total_row_step, int64_t tap_step, bool first,
                                                  bool skip_first = false, bool skip_last = false) {
  using V = VecF32;
  using In = typename M::In;
  typename V::type acc[3][MC];
#pragma GCC unroll 32
  for (int m = 0; m < MC; ++m) acc[0][m] = acc[1][m] = acc[2][m] = V::zero();
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t xr = row_offset[j];  // x + xr + i xps: column i's first channel
    if (xr == kNoRow) continue;
    const typename M::Elem* dr = dy + j * Q * dps;
    // Column i with dy columns i (d0), i - 1 (d1), i - 2 (d2); the taps T0..T2 whose dy column
    // lies in the row.
    const auto column = [&]<bool T0, bool T1, bool T2>(int64_t i, In d0, In d1, In d2) {
#pragma GCC unroll 32
      for (int m = 0; m < MC; ++m) {
        const In b = M::broadcast(x + (xr + i * xps + m));
        if constexpr (T0) acc[0][m] = M::madd(b, d0, acc[0][m]);
        if constexpr (T1) acc[1][m] = M::madd(b, d1, acc[1][m]);
        if constexpr (T2) acc[2][m] = M::madd(b, d2, acc[2][m]);
      }
    };
    if constexpr (SW == 2) {
      In prev = M::load(dr);
      if (!skip_first) column.template operator()<true, false, false>(0, prev, prev, prev);
      column.template operator()<false, true, false>(1, prev, prev, prev);
      for (int64_t q = 1; q < Q; ++q) {
        const In d = M::load(dr + q * dps);
        column.template operator()<true, false, true>(2 * q, d, d, prev);
        column.template operator()<false, true, false>(2 * q + 1, d, d, d);
        prev = d;
      }
      if (!skip_last) column.template operator()<false, false, true>(2 * Q, prev, prev, prev);
      continue;
    }
    In d2 = M::load(dr), d1 = M::load(dr + dps);
    if (!skip_first) column.template operator()<true, false, false>(0, d2, d2, d2);
    column.template operator()<true, true, false>(1, d1, d2, d2);
    for (int64_t i = 2; i < Q; ++i) {
      const In d0 = M::load(dr + i * dps);
      column.template operator()<true, true, true>(i, d0, d1, d2);
      d2 = d1;
      d1 = d0;
    }
    column.template operator()<false, true, true>(Q, d1, d1, d2);
    if (!skip_last) column.template operator()<false, false, true>(Q + 1, d1, d1, d1);
  }
#pragma GCC unroll 3
  for (int s = 0; s < 3; ++s)
#pragma GCC unroll 32
    for (int m = 0; m < MC; ++m) {
      float* t = total + s * tap_step + m * total_row_step;
      V::store(t, first ? acc[s][m] : V::add(V::load(t), acc[s][m]));
    }
}

// dst[k dst_k_step + j] = src[j][k] for j < jn, k < kn, rounded to T: per block of 8 k, 8 x 8
// register transposes turn 8 source rows' 8 floats into 32 contiguous bytes of 8 dst rows.
template <typename T>
inline void store_transposed_rows(const float* const* src, int64_t jn, int64_t kn, T* dst, int64_t dst_k_step) {
  const int64_t j8 = jn - jn % 8, k8 = kn - kn % 8;
  for (int64_t k0 = 0; k0 < k8; k0 += 8) {
    for (int64_t j = 0; j < j8; j += 8) transpose8x8_rows(src + j, k0, dst + k0 * dst_k_step + j, dst_k_step);
    for (int64_t j = j8; j < jn; ++j)
      for (int64_t k = k0; k < k0 + 8; ++k) store_from(dst + k * dst_k_step + j, src[j][k]);
  }
  for (int64_t k = k8; k < kn; ++k)
    for (int64_t j = 0; j < jn; ++j) store_from(dst + k * dst_k_step + j, src[j][k]);
}

// dw[g Kg + k][c][r][s] (strides ws) = total[g][r S + s][c][k] (rows of Kpad), rounded once to T.
// With each dw row contiguous (KCRS or KRSC weights), element j of row k reads total row
// src_row[j] (= tap * Cg + c), column k: a transpose of a row-permuted matrix. Work items are
// (group, 16 consecutive j): 16 source streams advancing together. The serial loop with k
// innermost it replaced took 6-9 ms per res5 weight gradient at batch 1 on Zen 3, more than the
// products.
template <typename T>
void store_weight_grad(const Conv2dProblem& p, const float* total, int64_t Kpad, T* dw, const int64_t ws[4]) {
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups, taps = p.R * p.S, row = Cg * taps;
  const WeightRows rows = weight_rows(ws, Cg, p.R, p.S);
  if (rows == WeightRows::kStrided) {  // any other strides: element by element
    for (int64_t g = 0; g < p.groups; ++g)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t c = 0; c < Cg; ++c)
          for (int64_t k = 0; k < Kg; ++k)
            store_from(dw + (g * Kg + k) * ws[0] + c * ws[1] + (t / p.S) * ws[2] + (t % p.S) * ws[3],
                       total[((g * taps + t) * Cg + c) * Kpad + k]);
    return;
  }
  std::vector<int64_t> src_row(row);
  for (int64_t j = 0; j < row; ++j) src_row[j] = rows == WeightRows::kKCRS ? (j % taps) * Cg + j / taps : j;  // krsc: j = t Cg + c
  constexpr int64_t kRun = 16;
  const int64_t nruns = (row + kRun - 1) / kRun;
  parallel_for(0, p.groups * nruns, 1, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t g = item / nruns, j0 = item % nruns * kRun, jn = std::min(row, j0 + kRun) - j0;
      const float* tg = total + g * taps * Cg * Kpad;
      const float* src[kRun];
      for (int64_t j = 0; j < jn; ++j) src[j] = tg + src_row[j0 + j] * Kpad;
      store_transposed_rows(src, jn, Kg, dw + g * Kg * ws[0] + j0, ws[0]);
    }
  });
}

// The weight-gradient register tile, MC broadcast rows x NV vectors (the fprop tile's shape):
// 6 x 4 = 24 accumulators of AVX-512's 32 registers, 6 x 2 = 12 of AVX2's 16.
constexpr int kWgradTileRows = 6;
#if defined(__AVX512F__)
constexpr int kWgradTileVectors = 4;
#else
constexpr int kWgradTileVectors = 2;
#endif

// Channels per wgrad_row_tile: 3 x 8 sums of AVX-512's 32 registers, 3 x 4 of AVX2's 16 (with
// the three dy columns and a broadcast: all 16).
constexpr int64_t kWgradRowChannels = VecF32::kLanes == 16 ? 8 : 4;

// Whether wgrad_row_tile takes the layer's tiles (with one vector of outputs a tile): rows of
// three taps at column stride 1 or 2, whole tiles of input channels.
inline bool wgrad_row_tiles_apply(const Conv2dProblem& p) {
  return p.S == 3 && (p.stride_w == 1 || p.stride_w == 2) && p.dil_w == 1 && p.Q >= 2 &&
         (p.C / p.groups) % kWgradRowChannels == 0;
}

// The size of `total` from which conv2d_wgrad_direct_tiles sums by slabs.
constexpr int64_t kWgradSlabMinBytes = int64_t(1) << 20;

// Elements per pixel for n channels in the wgrad scratch layouts: a tile reads one line per pixel
// for 49-196 pixels in a row, and with a pixel stride of a multiple of 1 KB those lines share 4
// or fewer L1 sets (8 ways): each pixel missed L1. One extra line per pixel spreads them
// (measured on 1x1 layers @7, which now take conv2d_wgrad_1x1; x keeps it, dy of one group no
// longer does: see conv2d_wgrad_direct_tiles).
inline int64_t wgrad_pixel_slots(int64_t n) { return n % 256 == 0 ? n + 16 : n; }

// conv2d_wgrad_direct (below) on MC x NV tiles.
template <typename T, class M, int MC, int NV>
inline void conv2d_wgrad_direct_tiles(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups, G = p.groups;
  constexpr int64_t KB = NV * VecF32::kLanes;
  const int64_t nkb = (Kg + KB - 1) / KB, Kpad = nkb * KB, ncb = (Cg + MC - 1) / MC, taps = p.R * p.S;
  const int64_t Hp = std::max(p.H + 2 * p.pad_h, (p.P - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1);
  const int64_t Wp = std::max(p.W + 2 * p.pad_w, (p.Q - 1) * p.stride_w + (p.S - 1) * p.dil_w + 1);
  using E = typename M::Elem;
  const int64_t Qe = p.Q / M::kChannels;  // packed elements per output row
  // x as [n][hp][wp][c] and dy as [n][p][qe][g][Kpad] elements (each group's output channels
  // padded to whole blocks with zeros).
  ScratchOf<E> xpad(0), dyp(0);
  bool dy_in_place = false;  // float dy already in dyp's layout
  const auto dense_nhwc = [](const ConstView4& t, int64_t C, int64_t H, int64_t W) {
    return t.stride[1] == 1 && t.stride[3] == C && t.stride[2] == W * C && t.stride[0] == H * W * C;
  };
  // Dot policy, odd Q: the last output column's x (columns last_w0 + [0, last_W) of each padded
  // row, lo only) and dy (lo only).
  const bool odd = M::kChannels == 2 && p.Q % 2 != 0;
  const int64_t last_w0 = (p.Q - 1) * p.stride_w, last_W = (p.S - 1) * p.dil_w + 1;
  ScratchOf<E> xlast(0), dylast(0);
  // As in fprop: with pixels C elements apart (one group, x unpadded per pixel) and no column
  // dilation, a row's S taps are S C consecutive "channels" of one tap, in the totals' own order
  // ((r S + s) Cg + c). The stem (C = 3, 7 x 7) then fills 21 of 24 tile rows, not 3 of 6. The
  // dot policy's pairs of columns fold alike (a pixel's C pairs, then the next pixel's), where a
  // tap has fewer channels than the tile has rows (in-process A/B, arms in random order, Zen 5, 2
  // threads, bfloat16 channels_last N=8: VGG's 3 -> 64 @224 1.10x, @112 1.11x, the ResNet stem
  // 1.05x, NCHW level; with 64-256 channels, 0.95-0.99x: not there).
  const int64_t x_slots = M::kChannels == 1 ? wgrad_pixel_slots(p.C) : p.C;
  const bool fold = (M::kChannels == 1 || Cg < MC) && G == 1 && p.dil_w == 1 && x_slots == p.C && p.S > 1;
  // wgrad_row_tile's rows of 3 taps (one vector of outputs): tiles of one filter row and
  // kWgradRowChannels channels, laid out as the folded ones ((r S + s) Cg + c).
  constexpr int64_t kRowChannels = kWgradRowChannels;
  // The dot policy's at column stride 1 over an even Q (no odd column): SW = 2's walk over pairs.
  // In-process A/B against its 24 x 1 tiles, arms in random order, Zen 5, 2 threads, bfloat16:
  // ResNeXt 512 @14 x 32 groups N=8 channels_last / NCHW 1.27x / 1.19x, N=1 1.16x; 128 @28 x 8
  // 1.20x; 64 -> 16 @56 1.17x; 32 @56 x 2 N=4 NCHW 1.19x.
  constexpr bool kRowTileShape = NV == 1;
  const bool row_tiles = kRowTileShape && !fold && wgrad_row_tiles_apply(p) &&
                         (M::kChannels == 1 || (p.stride_w == 1 && p.Q % 2 == 0));
  // The tiles read a float x with contiguous channels in place, no padded copy: rows in the
  // padding skipped, and the columns there (wgrad_tile: each tap's range of columns; the row
  // tiles: a row's first and last of Q + 2, or 2 Q + 1 at column stride 2, where at most those
  // lie in the padding). Not folded taps, whose runs cross the padding columns. In-process A/B,
  // arms in random order, Zen 4, 2 threads, channels_last, against the copy: row tiles, ResNeXt 32
  // groups 512 @14 N=8 1.33 -> 1.01 ms, N=1 1.49x, AVX2 1.24x; 512 @28 /2 N=8 1.35x, N=1 1.69x,
  // AVX2 1.20x; AVX2 256 @28 1.27x, 256 @56 /2 1.60x; wgrad_tile, 3x3 /2 256 @28 N=8 9.44 -> 7.93
  // ms, N=1 1.21x, 512 @14 /2 1.05-1.17x, ResNeXt 1024 @7 1.25-1.34x, 1024 @14 /2 1.20-1.52x, AVX2
  // 1.08-1.13x.
  const int64_t tile_columns = p.stride_w == 2 ? 2 * p.Q + 1 : p.Q + 2;
  const bool skip_first = p.pad_w == 1, skip_last = tile_columns - p.pad_w - p.W == 1;
  const bool reads_in_place = M::kChannels == 1 && std::is_same_v<T, float> && !fold &&
                              (!row_tiles || (p.pad_w <= 1 && tile_columns - p.pad_w - p.W <= 1));
  const bool x_in_place = reads_in_place && a.x.stride[1] == 1;
  // Any other float x (NCHW) goes channels-last unpadded, then in place: the padded copy's tiles
  // had run the edge taps over its zero rows and columns, at 7 x 7 and 3 x 3 taps a fifth of
  // their FMAs. In-process A/B, arms in random order, Xeon, 2 threads, NCHW, AVX-512 / AVX2:
  // ResNeXt 32 groups N=8 1024 @7 1.21x / 1.12-1.13x, 512 @14 1.23x / 1.04-1.16x, 1024 @14 /2
  // 1.06-1.11x / 1.07-1.14x, 512 @28 /2 1.03-1.10x / 1.04-1.13x; N=1 1024 @7 1.20x / 1.11x, 512
  // @14 1.07x / 1.09x; one group 3x3 /2 N=8 128 @56 1.00x / 0.98x, 256 @28 1.00-1.01x /
  // 1.10-1.14x, 512 @14 1.04-1.06x / 1.17-1.22x (two runs). (The pixels keep their extra line:
  // with C elements a pixel 1024 @7 ran 1.15x, 512 @28 /2 0.89x.)
  if constexpr (M::kChannels == 1 && std::is_same_v<T, float>) {
    if (reads_in_place && !x_in_place) {
      const ScratchOf<float> xc = pack_activations(static_cast<const float*>(a.x.data), a.x.stride, p.N, p.C, p.H, p.W,
                                                   0, 0, p.H, p.W, 1, 0, x_slots);
      Conv2dWgradArgs b = a;
      b.x = ConstView4{xc.data(), {p.H * p.W * x_slots, 1, p.W * x_slots, x_slots}};
      conv2d_wgrad_direct_tiles<T, M, MC, NV>(b);
      return;
    }
  }
  // Elements per pixel of x and of dy in the scratch layouts.
  int64_t xpx = p.C, dpx = G * Kpad;
  if constexpr (M::kChannels == 1) {
    // dy's pixels unpadded with one group, and in place where dense channels-last float (below),
    // grouped ones too: in-process A/B, arms in random order, Zen 4, 2 threads, against pixels of
    // 256 + 16 and 512 + 16 floats: 3x3 /2 256 @28 N=8 channels_last 1.10-1.12x, NCHW 1.10x, N=1
    // 1.14x / 1.13x; 512 @14 /2 N=8 1.09x / 1.08x, N=1 1.15x / 1.13x; channels_last ResNeXt 32
    // groups 512 @14 N=8 1.08x, 1024 @7 1.05x, 512 @28 /2 1.06x. Grouped NCHW dy (packed) keeps
    // the extra line: there it lost 1-5%. x's pixels unpadded won and lost (0.83-1.25x).
    xpx = x_slots, dpx = G == 1 ? Kpad : wgrad_pixel_slots(G * Kpad);
    if (!x_in_place)
      xpad = pack_activations(static_cast<const T*>(a.x.data), a.x.stride, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, Hp,
                              Wp, 1, 0, xpx);
    // dy as [n][p][q][g][Kpad]: each group's output channels padded to whole blocks with zeros.
    // With one group or no padding that is channels-last with zero pixel slots past K, which
    // pack_activations writes fastest (8x8 transposes from NCHW).
    const T* dy = static_cast<const T*>(a.dy.data);
    const int64_t* ds = a.dy.stride;
    if constexpr (std::is_same_v<T, float>) {
      // Dense channels-last float dy with nothing to pad is its own packed layout: read in place
      // (MobileNetV2's stem at N=8 had spent ~20% of its weight gradient copying 12.8 MB of dy).
      dy_in_place = G * Kpad == p.K && dense_nhwc(a.dy, p.K, p.P, p.Q);
      if (dy_in_place) dpx = p.K;
    }
    if (dy_in_place) {
      // nothing to pack: dy_rows (below) is a.dy
    } else if (Kpad == Kg || G == 1) {
      dyp = pack_activations(dy, ds, p.N, p.K, p.P, p.Q, 0, 0, p.P, p.Q, 1, 0, dpx);
    } else {
      dyp = Scratch(p.N * p.P * p.Q * dpx);
      parallel_for(0, p.N * p.P, 4, [&](int64_t b, int64_t e) {
        for (int64_t np = b; np < e; ++np) {
          const int64_t n = np / p.P, pp = np % p.P;
          float* row = dyp.data() + np * p.Q * dpx;
          for (int64_t q = 0; q < p.Q; ++q) {
            for (int64_t g = 0; g < G; ++g) {
              const T* src = dy + n * ds[0] + g * Kg * ds[1] + pp * ds[2] + q * ds[3];
              float* dst = row + q * dpx + g * Kpad;
              for (int64_t k = 0; k < Kg; ++k) dst[k] = load_acc(src + k * ds[1]);
              std::fill(dst + Kg, dst + Kpad, 0.0f);
            }
            std::fill(row + q * dpx + G * Kpad, row + (q + 1) * dpx, 0.0f);
          }
        }
      });
    }
  } else {
    // Pairs of pixels: x (lo, hi) = (column w, column w + stride_w), dy (lo, hi) = (column 2j, 2j + 1).
    // Dense channels_last bfloat16 with nothing to pad (x of unpadded layers, dy with whole blocks
    // of channels) is read in place: no bfloat16 copy before the interleave (A/B, arms in random
    // order, 2 threads, channels_last, measured on 1x1 layers before they moved to
    // conv2d_wgrad_1x1: N=8 64 -> 64 @56 1.34 -> 1.04 ms, 64 -> 256 4.90 -> 3.90, 1024 -> 256 @14
    // 3.91 -> 3.68; N=1 256 -> 64 @56 0.76 -> 0.71). Grouped 1x1 layers still come here.
    constexpr bool kBf16 = std::is_same_v<T, bf16>;
    const bool x_in_place = kBf16 && dense_nhwc(a.x, p.C, p.H, p.W) && Hp == p.H && Wp == p.W;
    const ScratchOf<bf16> xb =
        x_in_place ? ScratchOf<bf16>(0)
                   : pack_activations<T, bf16>(static_cast<const T*>(a.x.data), a.x.stride, p.N, p.C, p.H, p.W, p.pad_h,
                                               p.pad_w, Hp, Wp);
    const bf16* xsrc = x_in_place ? static_cast<const bf16*>(a.x.data) : xb.data();
    xpad = ScratchOf<E>(p.N * Hp * Wp * p.C);
    parallel_for(0, p.N * Hp, 4, [&](int64_t b, int64_t e) {
      for (int64_t nh = b; nh < e; ++nh)
        for (int64_t w = 0; w < Wp; ++w) {
          const bf16* row = xsrc + nh * Wp * p.C;
          interleave_pairs(row + w * p.C, w + p.stride_w < Wp ? row + (w + p.stride_w) * p.C : nullptr,
                           xpad.data() + (nh * Wp + w) * p.C, p.C);
        }
    });
    const bool dy_bf16_in_place = kBf16 && dense_nhwc(a.dy, p.K, p.P, p.Q) && G * Kpad == p.K;
    const ScratchOf<bf16> db = dy_bf16_in_place ? ScratchOf<bf16>(0)
                                           : pack_activations<T, bf16>(static_cast<const T*>(a.dy.data), a.dy.stride,
                                                                       p.N, p.K, p.P, p.Q, 0, 0, p.P, p.Q, G, Kpad);
    const bf16* dysrc = dy_bf16_in_place ? static_cast<const bf16*>(a.dy.data) : db.data();
    dyp = ScratchOf<E>(p.N * p.P * Qe * G * Kpad);
    parallel_for(0, p.N * p.P * Qe, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const bf16* pair = dysrc + ((i / Qe) * p.Q + 2 * (i % Qe)) * G * Kpad;  // columns 2j, 2j + 1
        interleave_pairs(pair, pair + G * Kpad, dyp.data() + i * G * Kpad, G * Kpad);
      }
    });
    if (odd) {
      xlast = ScratchOf<E>(p.N * Hp * last_W * p.C);
      dylast = ScratchOf<E>(p.N * p.P * G * Kpad);
      for (int64_t nh = 0; nh < p.N * Hp; ++nh)
        interleave_pairs(xsrc + (nh * Wp + last_w0) * p.C, nullptr, xlast.data() + nh * last_W * p.C, last_W * p.C);
      for (int64_t np = 0; np < p.N * p.P; ++np)
        interleave_pairs(dysrc + (np * p.Q + p.Q - 1) * G * Kpad, nullptr, dylast.data() + np * G * Kpad, G * Kpad);
    }
  }
  const E* dy_rows = dy_in_place ? static_cast<const E*>(a.dy.data) : dyp.data();
  const int64_t rows = p.N * p.P;
  // >= ~128 packed elements per tile visit (pixels; pixel pairs for the dot policy: measured on
  // Zen 4 N=8 ResNet-50 3x3 layers, 128 pairs ran 1.5-2x faster than 64)
  const int64_t rows_per_chunk = std::max<int64_t>(1, 128 * M::kChannels / p.Q);
  const bool by_rows = fold || row_tiles;
  const int64_t tile_taps = by_rows ? p.R : taps, tile_S = by_rows ? 1 : p.S, tile_C = by_rows ? p.S * Cg : Cg;
  const int64_t tile_cb = row_tiles ? Cg / kRowChannels : fold ? (tile_C + MC - 1) / MC : ncb;
  // x's offset of each output row (n, p), and of its row in the odd tail's x.
  std::vector<int64_t> row_offset(rows), last_offset(odd ? rows : 0);
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t n = j / p.P, pp = j % p.P;
    row_offset[j] = (n * Hp + pp * p.stride_h) * Wp * xpx;
    if (odd) last_offset[j] = (n * Hp + pp * p.stride_h) * last_W * p.C;
  }
  // x read in place: the offset of each output row's input row through tap (r, s) (lists of
  // `rows`, tap by tap), from its column of output column 0 (s dil_w - pad_w), or kNoRow.
  const int64_t* xs = a.x.stride;
  std::vector<int64_t> rows_in_place(x_in_place ? taps * rows : 0);
  if (x_in_place)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t n = j / p.P, h = j % p.P * p.stride_h + t / p.S * p.dil_h - p.pad_h;
        rows_in_place[t * rows + j] =
            h < 0 || h >= p.H ? kNoRow : n * xs[0] + h * xs[2] + (t % p.S * p.dil_w - p.pad_w) * xs[3];
      }
  // One wgrad_tile: group g, output block kb, tap (r, s), channels c0 .. c0 + m (folded: s = 0 and
  // c0 counts S Cg channels) over output rows r0 .. r0 + nrows, into tot (channel rows
  // tot_row_step apart).
  const auto sum_tile = [&](int64_t g, int64_t kb, int64_t r, int64_t s, int64_t c0, int m, int64_t r0,
                            int64_t nrows, float* tot, int64_t tot_row_step, bool first) {
    const E* dy0 = dy_rows + r0 * Qe * dpx + g * Kpad + kb * KB;
    if (x_in_place) {  // float: E is T
      // Output columns [lo, hi) read x's columns q stride_w + s dil_w - pad_w in [0, W).
      const int64_t shift = s * p.dil_w - p.pad_w;
      const int64_t lo = shift >= 0 ? 0 : (-shift + p.stride_w - 1) / p.stride_w;
      const int64_t hi = std::max(lo, std::min(p.Q, p.W - shift <= 0 ? 0 : (p.W - 1 - shift) / p.stride_w + 1));
      wgrad_tile_upto<M, MC, NV>(m, reinterpret_cast<const E*>(a.x.data) + g * Cg + c0,
                                 rows_in_place.data() + (r * p.S + s) * rows + r0, nrows, Qe, lo, hi,
                                 p.stride_w * xs[3], dy0, dpx, WgradTail<E>{}, tot, tot_row_step, first);
      return;
    }
    const E* x0 = xpad.data() + (r * p.dil_h * Wp + s * p.dil_w) * xpx + g * Cg + c0;
    WgradTail<E> tail;
    if (odd)
      tail = {xlast.data() + (r * p.dil_h * last_W + s * p.dil_w) * p.C + g * Cg + c0, last_offset.data() + r0,
              dylast.data() + (r0 * G + g) * Kpad + kb * KB};
    wgrad_tile_upto<M, MC, NV>(m, x0, row_offset.data() + r0, nrows, Qe, 0, Qe, M::kChannels * p.stride_w * xpx, dy0,
                               dpx, tail, tot, tot_row_step, first);
  };

  // Slabs: each thread owns whole slabs (group, output block, kSlabChannels input channels, every
  // tap), sums a slab's tiles into a buffer of its own that stays in L1 / L2 across the chunks of
  // rows, and transposes it into dw as soon as it is complete. Through `total`, each chunk
  // re-reads and re-writes the totals and store_weight_grad reads them once more: from the L3
  // where they outgrow the L2 (res5's 9.4 MB at N=1: 36% of the time in that last read). Slabs
  // instead re-read x (a line or two per pixel) and dy for every slab. The fewer bytes moved wins,
  // past 1 MB of totals (A/B, Xeon, 2 threads, slabs against totals: 512 @7 N=1 1.21-1.25x, 512
  // @14 /2 N=1 1.21-1.27x, N=8 1.08-1.14x, 256 @28 /2 N=1 1.16x; bfloat16 without AMX 1.22-1.45x;
  // 256 @28 /2 N=8, bytes alike, 0.97-1.00x; 256 @14 N=1, in cache, 1.00x).
  constexpr int64_t kSlabChannels = 4 * MC;
  const int64_t nslab_c = (Cg + kSlabChannels - 1) / kSlabChannels, slabs = G * nkb * nslab_c;
  const int64_t total_bytes = G * taps * Cg * Kpad * int64_t(sizeof(float));
  const int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  const int64_t slab_bytes =
      slabs * (p.N * Hp * Wp * (kSlabChannels * int64_t(sizeof(E)) + 64) + rows * Qe * KB * int64_t(sizeof(E)));
  // (dw as the op makes it, KCRS: a slab's rows are runs of cn taps elements. Slabs do not fold
  // taps into channels: with 24+ channels the tiles are full without.)
  const bool by_slabs = !row_tiles && weight_rows(a.dw.stride, Cg, p.R, p.S) == WeightRows::kKCRS &&
                        total_bytes >= kWgradSlabMinBytes &&
                        slab_bytes < 2 * (chunks + 1) * total_bytes && slabs >= 4 * parallel_threads();
  if (by_slabs) {
    T* dw = static_cast<T*>(a.dw.data);
    const int64_t* ws = a.dw.stride;
    parallel_for(0, slabs, 1, [&](int64_t b, int64_t e) {
      ScratchOf<float> slab_total(taps * kSlabChannels * KB);  // [t][c][KB]
      // Its rows in dw's order within a row: (c, t) at c taps + t.
      std::vector<const float*> src(taps * kSlabChannels);
      for (int64_t j = 0; j < taps * kSlabChannels; ++j)
        src[j] = slab_total.data() + ((j % taps) * kSlabChannels + j / taps) * KB;
      for (int64_t slab = b; slab < e; ++slab) {
        const int64_t sc = slab % nslab_c, kb = slab / nslab_c % nkb, g = slab / (nslab_c * nkb);
        const int64_t c0 = sc * kSlabChannels, cn = std::min(kSlabChannels, Cg - c0), kn = std::min(KB, Kg - kb * KB);
        for (int64_t r0 = 0; r0 < rows; r0 += rows_per_chunk) {
          const int64_t nrows = std::min(rows, r0 + rows_per_chunk) - r0;
          for (int64_t t = 0; t < taps; ++t)
            for (int64_t c = 0; c < cn; c += MC)
              sum_tile(g, kb, t / p.S, t % p.S, c0 + c, int(std::min<int64_t>(MC, cn - c)), r0, nrows,
                       slab_total.data() + (t * kSlabChannels + c) * KB, KB, r0 == 0);
        }
        // dw rows g Kg + kb KB + [0, kn), columns from c0 taps.
        store_transposed_rows(src.data(), cn * taps, kn, dw + (g * Kg + kb * KB) * ws[0] + c0 * taps, ws[0]);
      }
    });
    return;
  }

  // Running totals per (g, tap, c, Kpad); the first chunk of rows stores them (the pad lanes too).
  // Fewer than kMinItems tiles (the 3 x 3 stems: one tile per filter row) also split the chunks of
  // rows, each split into totals of its own, added up in split order at the end (the same bits on
  // any number of threads): 3 tiles had kept one of two threads idle for a third of the products.
  constexpr int64_t kMinItems = 16;
  const int64_t tiles = G * nkb * tile_taps * tile_cb;
  const int64_t splits = tiles < kMinItems ? std::min(chunks, (kMinItems + tiles - 1) / tiles) : 1;
  const int64_t total_size = G * taps * Cg * Kpad;
  Scratch total(splits * total_size);
  parallel_for(0, splits * tiles, 1, [&](int64_t b, int64_t e) {
    // The thread's items split by split: within one, the chunks of rows outer, its tiles inner.
    for (int64_t i0 = b; i0 < e;) {
      const int64_t split = i0 / tiles, i1 = std::min(e, (split + 1) * tiles);
      const int64_t row_lo = std::min(rows, split * chunks / splits * rows_per_chunk);
      const int64_t row_hi = std::min(rows, (split + 1) * chunks / splits * rows_per_chunk);
      for (int64_t r0 = row_lo; r0 < row_hi; r0 += rows_per_chunk) {
        const int64_t nrows = std::min(row_hi, r0 + rows_per_chunk) - r0;
        const bool first = r0 == row_lo;
        for (int64_t tile = i0 % tiles; tile < i0 % tiles + (i1 - i0); ++tile) {
          const int64_t cb = tile % tile_cb, t = (tile / tile_cb) % tile_taps;
          const int64_t kb = (tile / (tile_cb * tile_taps)) % nkb, g = tile / (tile_cb * tile_taps * nkb);
          const int64_t c0 = cb * (row_tiles ? kRowChannels : MC);
          float* tot = total.data() + split * total_size + ((g * tile_taps + t) * tile_C + c0) * Kpad + kb * KB;
          if constexpr (kRowTileShape) {
            if (row_tiles) {
              const E* dy0 = dy_rows + r0 * Qe * dpx + g * Kpad + kb * KB;
              // (in place: filter row t's lists of tap (t, 0), from the padded row's column 0)
              const E* x0 = x_in_place ? static_cast<const E*>(a.x.data) + g * Cg + c0
                                       : xpad.data() + t * p.dil_h * Wp * xpx + g * Cg + c0;
              const int64_t* offsets = x_in_place ? rows_in_place.data() + t * p.S * rows + r0 : row_offset.data() + r0;
              const int64_t xps = x_in_place ? xs[3] : xpx;
              const bool skip_l = x_in_place && skip_first, skip_r = x_in_place && skip_last;
              if (M::kChannels == 2 || p.stride_w == 2) {  // (dot: Qe pairs of columns)
                wgrad_row_tile<kRowChannels, 2, M>(x0, offsets, nrows, Qe, xps, dy0, dpx, tot, Kpad, Cg * Kpad, first,
                                                   skip_l, skip_r);
              } else if constexpr (M::kChannels == 1) {
                wgrad_row_tile<kRowChannels, 1, M>(x0, offsets, nrows, Qe, xps, dy0, dpx, tot, Kpad, Cg * Kpad, first,
                                                   skip_l, skip_r);
              }
              continue;
            }
          }
          sum_tile(g, kb, t / tile_S, t % tile_S, c0, int(std::min<int64_t>(MC, tile_C - c0)), r0, nrows, tot, Kpad,
                   first);
        }
      }
      i0 = i1;
    }
  });
  for (int64_t split = 1; split < splits; ++split)  // few tiles: small totals
    for (int64_t j = 0; j < total_size; ++j) total.data()[j] += total.data()[split * total_size + j];
  store_weight_grad(p, total.data(), Kpad, static_cast<T*>(a.dw.data), a.dw.stride);
}

// Returns false (doing nothing) where the engine does not apply: few output channels per group.
// AVX-512 runs up to 16 output channels per group on 24 x 1 tiles and 17-32 on 12 x 2 ones, not
// on 6 x 4 tiles of 64 lanes, most of them padding. DotBf16 too, against 6 x 4 (in-process A/B,
// arms in random order, Zen 5, 2 threads, N=8 bfloat16, channels_last / NCHW): ResNeXt 32 groups
// 512 @14 2.54 -> 0.50 ms / 2.87 -> 0.60, 1024 @7 1.10 -> 0.44 / 1.20 -> 0.54, 8 groups 256 @28
// 4.33 -> 1.74 / 4.33 -> 1.81, 4 groups 64 @56 4.73 -> 0.94, 1x1 256 @56 x 16 24.6 -> 3.2. Float
// policy, in-process A/B, 2 threads,
// N=8 channels_last float32 (with copy_pixel's packing): 3 -> 32 3x3/2 @224 (MobileNetV2's stem)
// 2.3-2.6x, 3 -> 24 /2 2.0-2.7x, 3 -> 16 /2 4.4x, 32 -> 16 @112 3.5x, 16 -> 16 @56 3.4x. Against
// torch then: 32 -> 16 and 16 -> 16 level, 3 -> 32 0.9-1.1x, 3 -> 24 0.8x, 3 -> 16 0.35x (9 of
// a 24 x 1 tile's rows busy).
template <typename T, class M = FmaF32>
inline bool conv2d_wgrad_direct(const Conv2dWgradArgs& a) {
  const int64_t Kg = a.p.K / a.p.groups;
  if (a.p.dtype != dtype_of<T>() || Kg < 8) return false;
  if constexpr (kWgradTileVectors == 4) {
    if (Kg <= 16) {
      conv2d_wgrad_direct_tiles<T, M, 24, 1>(a);
      return true;
    }
    if (Kg <= 32) {
      conv2d_wgrad_direct_tiles<T, M, 12, 2>(a);
      return true;
    }
  }
  // AVX2: one vector of outputs where a group has no more (the 6 x 2 tiles' second vector had
  // been padding), or where two take the row tiles (each a tile of its own). In-process A/B
  // against 6 x 2, arms in random order, Zen 4, 2 threads, ResNeXt's 32 groups: 8 a group (row
  // tiles) 256 @28 N=1 2.3-2.5x, N=8 2.3x, 256 @56 /2 1.7x, N=8 1.5x; 16 a group, 512 @14
  // 1.03-1.10x.
  if constexpr (M::kChannels == 1 && kWgradTileVectors == 2) {
    if (Kg <= 8 || (Kg <= 16 && wgrad_row_tiles_apply(a.p))) {
      conv2d_wgrad_direct_tiles<T, M, 12, 1>(a);
      return true;
    }
  }
  conv2d_wgrad_direct_tiles<T, M, kWgradTileRows, kWgradTileVectors>(a);
  return true;
}

// db[k] = sum of dy over (n, p, q) for channels-last dy (channels contiguous), vectorised over k:
// a thread item is a block of channels summed over every pixel in a fixed order (one partial per
// row). Other layouts return false: the reference's rows are contiguous there.
template <typename T>
inline bool conv2d_bgrad_channels_last(const Conv2dBgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || a.dy.stride[1] != 1) return false;
  using V = VecF32;
  constexpr int L = V::kLanes;
  const T* dy = static_cast<const T*>(a.dy.data);
  const int64_t* ds = a.dy.stride;
  T* db = static_cast<T*>(a.db);
  const int64_t nv = (p.K + L - 1) / L;
  parallel_for(0, nv, 1, [&](int64_t b, int64_t e) {
    for (int64_t v = b; v < e; ++v) {
      const int64_t k0 = v * L, len = std::min<int64_t>(L, p.K - k0);
      typename V::type total = V::zero();
      float tail[L];
      for (int64_t n = 0; n < p.N; ++n)
        for (int64_t pp = 0; pp < p.P; ++pp) {
          const T* row = dy + n * ds[0] + pp * ds[2] + k0;
          typename V::type acc = V::zero();
          if (len == L) {
            for (int64_t q = 0; q < p.Q; ++q) acc = V::add(acc, V::load(row + q * ds[3]));
          } else {  // the last, partial block of channels
            for (int64_t q = 0; q < p.Q; ++q) {
              std::fill(tail, tail + L, 0.0f);
              for (int64_t i = 0; i < len; ++i) tail[i] = load_acc(row + q * ds[3] + i);
              acc = V::add(acc, V::load(tail));
            }
          }
          total = V::add(total, acc);
        }
      V::store(tail, total);
      for (int64_t i = 0; i < len; ++i) store_from(db + k0 + i, tail[i]);
    }
  });
  return true;
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
