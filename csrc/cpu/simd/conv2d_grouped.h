// Grouped convolutions of few channels per group (ResNeXt's 32 groups of 4 channels, a channel
// multiplier's 1 -> 2): forward, input gradient and weight gradient, for float32 and
// bfloat16 (computed in float32). Included inside the ISA namespace after conv2d_direct.h.
//
// The direct engine runs a group's output channels as the lanes of its vectors, and takes groups
// of 8+ (fewer would leave most lanes empty); the depthwise engine takes one channel per group.
// Here a vector's L lanes are the output channels of L / Kg consecutive groups (Kg divides L) and
// every lane reads its own group's inputs: with Cg <= Kg, those groups' Cg L / Kg input channels
// lie in one vector of the channels-last activations. Per tap and input channel j of a group, a
// lane permute (index l / Kg Cg + j) hands every lane its group's channel j, and one FMA with
// the weights' vector of channel j follows: per pixel and tap, one load and Cg permute + FMA
// pairs. (These layers had run the reference loops: channels_last ResNeXt 128 @56 x 32 groups at
// N=1 0.09x PyTorch forward, 0.04x weight gradient; here 2.3x and 2.4x, Zen 5, 2 threads.)
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "conv2d_direct.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// Whether a vector of output channels can span whole groups that read one vector of inputs.
inline bool grouped_lanes_apply(int64_t groups, int64_t Cg, int64_t Kg) {
  constexpr int64_t L = VecF32::kLanes;
  return groups > 1 && Kg < L && L % Kg == 0 && Cg <= Kg && Cg * Kg > 1;
}

// body.template operator()<CG>() for the run-time input channels per group (1 to 8).
template <typename Body>
void with_group_channels(int64_t Cg, const Body& body) {
  with_small_count<8>(Cg, body);
}

// pass.template operator()<C0, CN>() for the channels [0, N) in passes of kPass: [C0, C0 + CN).
template <int N, int kPass, typename Pass>
void for_channel_passes(const Pass& pass) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (pass.template operator()<I * kPass, std::min(kPass, N - I * kPass)>(), ...);
  }(std::make_integer_sequence<int, (N + kPass - 1) / kPass>{});
}

// Lane l of block kb reads input channel kb L / Kg CG + idx[j][l] for its group's channel j.
template <int CG>
struct GroupLaneIndex {
  explicit GroupLaneIndex(int64_t Kg) {
    alignas(64) int32_t idx[VecF32::kLanes];
    for (int j = 0; j < CG; ++j) {
      for (int l = 0; l < VecF32::kLanes; ++l) idx[l] = int32_t(l / Kg * CG + j);
      lanes[j] = VecF32::load_index(idx);
    }
  }
  typename VecF32::index lanes[CG];
};

// How the row tiles (grouped_lanes_row_conv) hand lane l of a block its group's packed input j
// (input channel j; for the vdpbf16ps engine, conv2d_bf16dot_avx512.cpp, channel pair j) from the
// block's inputs at p: a load and a lane permute.
template <int CG, class M>
struct GroupLaneGather;
template <int CG>
struct GroupLaneGather<CG, FmaF32> {
  explicit GroupLaneGather(int64_t Kg) : index(Kg) {}
  [[gnu::always_inline]] VecF32::type operator()(const float* p, int j) const {
    return VecF32::permute(VecF32::load(p), index.lanes[j]);
  }
  static VecF32::type zero() { return VecF32::zero(); }
  GroupLaneIndex<CG> index;
};

// Whether every group's Kg lanes lie in one 128-bit lane with its CG inputs (Kg == CG, 2 or 4):
// then group_channel_in_lanes hands lane l its group's channel j without an index register
// (AVX2's weight-gradient rows, grouped_lanes_wgrad_rows).
template <int CG>
inline bool group_lanes_in_128(int64_t Kg) {
  return (CG == 2 || CG == 4) && Kg == CG;
}

// v's lanes permuted so that lane l holds its group's input channel j (group_lanes_in_128).
template <int CG>
[[gnu::always_inline]] inline typename VecF32::type group_channel_in_lanes(typename VecF32::type v, int j) {
  using V = VecF32;
  if constexpr (CG == 4) {
    switch (j) {
      case 0: return V::template permute_in_lanes<0x00>(v);
      case 1: return V::template permute_in_lanes<0x55>(v);
      case 2: return V::template permute_in_lanes<0xaa>(v);
      default: return V::template permute_in_lanes<0xff>(v);
    }
  } else {
    static_assert(CG == 2, "groups of 2 or 4 in a 128-bit lane");
    return j == 0 ? V::template permute_in_lanes<0xa0>(v) : V::template permute_in_lanes<0xf5>(v);
  }
}

// Channel slots per packed pixel (C, K: all input and output channels): every block's vector load
// (L channels from its first group's first input) stays inside its pixel.
inline int64_t grouped_pixel_slots(int64_t C, int64_t K, int64_t Cg, int64_t Kg) {
  constexpr int64_t L = VecF32::kLanes;
  const int64_t last_block = (K + L - 1) / L - 1;
  return std::max(C, last_block * (L / Kg) * Cg + L);
}

// Output pixels per forward tile: MR accumulators next to CG weight vectors and CG lane indices.
template <int CG>
constexpr int grouped_tile_pixels() {
  if constexpr (VecF32::kLanes == 16) return CG <= 2 ? 24 : (CG <= 4 ? 20 : 14);
  return CG <= 2 ? 8 : 4;
}

// Stores a block's MR accumulators, m of them real (pixel mi at yb + y_off[mi], olen of the L
// lanes): from the registers for a whole block of channels-last outputs, else through `tile` and
// store_tile (row_run: the pixels are consecutive output elements).
template <int MR, typename TOut>
[[gnu::always_inline]] inline void store_lane_tile(const typename VecF32::type* acc, int m, int64_t olen, TOut* yb,
                                                   const int64_t* y_off, const int64_t ys[4], bool row_run,
                                                   float* tile) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  if (ys[1] == 1 && olen == L) {
#pragma GCC unroll 32
    for (int mi = 0; mi < MR; ++mi)
      if (mi < m) V::store(yb + y_off[mi], acc[mi]);
    return;
  }
#pragma GCC unroll 32
  for (int mi = 0; mi < MR; ++mi) V::store(tile + mi * L, acc[mi]);
  store_tile<MR, L>(tile, m, olen, yb, y_off, ys, row_run);
}

// y = conv(x) over the plan d (d.in_per_group = CG, d.out_per_group = Kg; one tap list for all
// groups), x a channels-last view whose pixels hold grouped_pixel_slots channels, wp[kb][t][j][L]
// (lane l = output channel kb L + l, zero past the last), bias_blocks (or null) [kb][L]. Work items
// are MR-pixel tiles times blocks, blocks innermost (a block's weights are a few KB).
template <int CG, typename TOut>
void grouped_lanes_conv(const DirectConvPlan& d, const NhwcViewOf<float>& x, const float* wp,
                        const float* bias_blocks, TOut* y, const int64_t ys[4]) {
  using V = VecF32;
  constexpr int L = V::kLanes, MR = grouped_tile_pixels<CG>();
  const int64_t Kg = d.out_per_group, K = d.groups * Kg, nkb = (K + L - 1) / L;
  const int64_t taps = int64_t(d.tap_offset.size()), block_inputs = L / Kg * CG;
  const int64_t pixels = d.N * d.P * d.Q, ntiles = (pixels + MR - 1) / MR;
  const GroupLaneIndex<CG> index(Kg);
  parallel_for(0, ntiles * nkb, 4, [&](int64_t b, int64_t e) {
    alignas(64) float tile[MR * L];
    int64_t x_off[MR], y_off[MR], offsets_of = -1;
    bool row_run = false;
    PixelCursor cursor;
    for (int64_t item = b; item < e; ++item) {
      const int64_t kb = item % nkb, i0 = item / nkb * MR, olen = std::min<int64_t>(L, K - kb * L);
      const int m = int(std::min<int64_t>(MR, pixels - i0));
      if (i0 != offsets_of) {
        pixel_offsets(d, x, ys, i0, m, x_off, y_off, &cursor);
        for (int mi = m; mi < MR; ++mi) x_off[mi] = x_off[0];  // computed, not stored
        row_run = is_row_run(y_off, m);
        offsets_of = i0;
      }
      const float* xb = x.data + kb * block_inputs;
      const float* wb = wp + kb * taps * CG * L;
      typename V::type acc[MR];
      const typename V::type bias = bias_blocks ? V::load(bias_blocks + kb * L) : V::zero();
#pragma GCC unroll 24
      for (int mi = 0; mi < MR; ++mi) acc[mi] = bias;
      for (int64_t t = 0; t < taps; ++t) {
        typename V::type wv[CG];
#pragma GCC unroll 8
        for (int j = 0; j < CG; ++j) wv[j] = V::load(wb + (t * CG + j) * L);
        const float* xt = xb + d.tap_offset[t];
#pragma GCC unroll 24
        for (int mi = 0; mi < MR; ++mi) {
          const typename V::type xv = V::load(xt + x_off[mi]);
#pragma GCC unroll 8
          for (int j = 0; j < CG; ++j) acc[mi] = V::fmadd(V::permute(xv, index.lanes[j]), wv[j], acc[mi]);
        }
      }
      store_lane_tile<MR>(acc, m, olen, y + kb * L * ys[1], y_off, ys, row_run, tile);
    }
  });
}

// A channels-last x that the row tiles read in place, as if zero-padded: the padded copy
// (grouped_lanes_fprop) had taken a quarter to a third of the layers' time (Xeon, 2 threads,
// ResNeXt 256 @56 /2 x 32 groups N=1: 0.36 ms with the copy, 0.23 ms on an input padded
// beforehand). Kernel row r of output row p reads image row p stride_h + r dil_h - top, or
// zero_row where that row lies outside; with left <= 1, only a tile's first input column can lie
// left of the image and only its last one right of it (taps 3 consecutive columns, stride 1 or
// 2), and those read as zero vectors. zero_row holds a tile's columns of zeros. dil_h < 0: the
// input gradient's kernel rows, which walk dy upwards.
struct InPlacePadding {
  int64_t H, W, top, left, stride_h, dil_h;
  const float* zero_row;
};

// grouped_lanes_conv on row tiles of MR consecutive pixels (three_tap_rows plans): as in
// the direct engine's row tiles (run_row_reuse), input column i of a row serves output pixels i,
// i - 1 and i - 2 through taps s = 0, 1, 2, so each permuted input vector feeds three FMAs.
// grouped_lanes_conv's tiles take a permute per FMA, and the two share a port: half the FMA rate
// at most. Per (kernel row, group input channel j): three weight vectors, then MR + 2 columns of a
// load and a permute each. A row's last tile overlaps its neighbour where MR does not divide Q.
// Block kb's inputs start kb block_step elements after block 0's (-1: its block_inputs channels
// in a channels-last x). Over blocks (pack_group_blocks, block_step >= 0) the work items run
// block by block, each thread over the blocks it packed, and PS > 0 compiles in the pixel step.
// SW = 2 (stride 2 along the row): column i serves pixel i / 2 through tap i % 2 and, even,
// pixel i / 2 - 1 through tap 2: 2 MR + 1 permutes for 3 MR FMAs.
// SW = kDgradStride2: the input gradient of a convolution of column stride 2, 3 taps and one
// column of padding, both column phases at once (the plan: dy as x, dx as y, Q = dx columns): dx
// columns 2m and 2m + 1 of a tile (q0 even) take dy column m through tap 1, and dy columns m + 1
// and m through taps 0 and 2, so dy column i serves dx pixels 2i, 2i - 1 and 2i + 1: MR / 2 + 1
// permutes for 3 MR / 2 FMAs, and the tile stores whole runs of dx (the phases one at a time
// had a permute per FMA and stored every other pixel).
// With `pad` (InPlacePadding), x is the unpadded image itself and each tile finds its rows and
// edge columns as described there.
// M: the multiply-add policy (FmaF32; DotBf16 over channel pairs, J = CG / 2 packed inputs a
// group, x and wp of 32-bit pairs, no InPlacePadding).
template <int CG, int MR, int PS = 0, int SW = 1, class M = FmaF32, typename TOut>
void grouped_lanes_row_conv(const DirectConvPlan& d, const NhwcViewOf<typename M::Elem>& x,
                            const typename M::Elem* wp, const float* bias_blocks, TOut* y, const int64_t ys[4],
                            int64_t block_step = -1, const InPlacePadding* pad = nullptr) {
  using V = VecF32;
  using E = typename M::Elem;
  constexpr int L = V::kLanes, J = CG / M::kChannels;
  const int64_t Kg = d.out_per_group, K = d.groups * Kg, nkb = (K + L - 1) / L;
  const int64_t taps = int64_t(d.tap_offset.size()), rows = taps / 3, block_inputs = L / Kg * J;
  const int64_t segments = (d.Q + MR - 1) / MR, ntiles = d.N * d.P * segments;
  constexpr bool kDgrad = SW == kDgradStride2;
  static_assert(!kDgrad || MR % 2 == 0, "a transposed tile holds whole pairs of dx columns");
  const int64_t ps = PS > 0 ? PS : (kDgrad ? d.pixel_step : d.pixel_step / SW);
  const int64_t kb_step = block_step >= 0 ? block_step : block_inputs;
  const bool blocks_outer = block_step >= 0;
  const GroupLaneGather<CG, M> gather(Kg);
  parallel_for(0, ntiles * nkb, 4, [&](int64_t b, int64_t e) {
    alignas(64) float tile[MR * L];
    int64_t y_off[MR];
    for (int m = 0; m < MR; ++m) y_off[m] = m * ys[3];
    for (int64_t item = b; item < e; ++item) {
      const int64_t kb = blocks_outer ? item / ntiles : item % nkb, t = blocks_outer ? item % ntiles : item / nkb;
      const int64_t np = t / segments;
      const int64_t q0 = std::min((t % segments) * MR, d.Q - MR), p = np % d.P, n = np / d.P;
      const int64_t olen = std::min<int64_t>(L, K - kb * L);
      // Input columns a tile reads per kernel row, from input column `first`.
      constexpr int kColumns = kDgrad ? MR / 2 + 1 : SW * (MR - 1) + 3;
      const int64_t first = kDgrad ? q0 / 2 : q0 * SW;
      // Padded: kernel row r at xb + tap_offset[3 r]. In place: at xb + r dil_h sh where that row
      // lies in the image, else the zero row; columns -1 and W read as zero vectors.
      const E* xb = x.data + n * x.sn + p * d.row_step + first * ps + kb * kb_step;
      int64_t row0 = 0;
      bool left_zero = false, right_zero = false;
      if (pad) {
        row0 = p * pad->stride_h - pad->top;
        const int64_t col0 = first - pad->left;
        left_zero = col0 < 0;
        right_zero = col0 + kColumns > pad->W;
        xb = x.data + n * x.sn + row0 * x.sh + col0 * x.sw + kb * kb_step;
      }
      const E* wb = wp + kb * taps * J * L;
      typename V::type acc[MR];
      const typename V::type bias = bias_blocks ? V::load(bias_blocks + kb * L) : V::zero();
#pragma GCC unroll 32
      for (int m = 0; m < MR; ++m) acc[m] = bias;
      for (int64_t r = 0; r < rows; ++r) {
        const E* xr = xb + d.tap_offset[3 * r];
        if (pad) {
          const int64_t h = row0 + r * pad->dil_h;
          xr = h >= 0 && h < pad->H ? xb + r * pad->dil_h * x.sh : reinterpret_cast<const E*>(pad->zero_row);
        }
        const E* wr = wb + 3 * r * J * L;
        for (int j = 0; j < J; ++j) {
          const typename M::In w0 = M::load(wr + j * L), w1 = M::load(wr + (J + j) * L),
                               w2 = M::load(wr + (2 * J + j) * L);
          // The same columns serve every j: left visible, GCC 12 loaded stride 2's 29 columns once
          // per row and kept them on the stack, a permute from memory each. Reloaded per j here
          // (AVX2 at stride 1 too: its 9 columns went to the stack).
          const E* xj = xr;
          if constexpr (SW > 1 || L == 8) asm("" : "+r"(xj));
#pragma GCC unroll 32
          for (int i = 0; i < kColumns; ++i) {
            typename M::In v;
            if ((i == 0 && left_zero) || (i == kColumns - 1 && right_zero)) v = gather.zero();
            else v = gather(xj + i * ps, j);
            if constexpr (kDgrad) {
              if (2 * i < MR) acc[2 * i] = M::madd(v, w1, acc[2 * i]);
              if (i >= 1) acc[2 * i - 1] = M::madd(v, w0, acc[2 * i - 1]);
              if (2 * i + 1 < MR) acc[2 * i + 1] = M::madd(v, w2, acc[2 * i + 1]);
            } else {
              if (i % SW == 0 && i / SW < MR) acc[i / SW] = M::madd(v, w0, acc[i / SW]);
              if ((i - 1) % SW == 0 && i >= 1 && (i - 1) / SW < MR) acc[(i - 1) / SW] = M::madd(v, w1, acc[(i - 1) / SW]);
              if (i % SW == 0 && i >= 2 && (i - 2) / SW < MR) acc[(i - 2) / SW] = M::madd(v, w2, acc[(i - 2) / SW]);
            }
          }
        }
      }
      store_lane_tile<MR>(acc, MR, olen, y + n * ys[0] + p * ys[2] + q0 * ys[3] + kb * L * ys[1], y_off, ys,
                          ys[3] == 1, tile);
    }
  });
}

// The row tiles' column stride (1 or 2) for a plan over a channels-last x, or 0 where they do not
// apply (TOut: y's storage type).
template <int CG, typename TOut = float>
inline int grouped_row_tiles_stride(const DirectConvPlan& d, int64_t x_sw, const int64_t ys[4]) {
  if ((CG > 4 || ys[1] == 1 || VecF32::kLanes == 8 || std::is_same_v<TOut, bf16>) && three_tap_rows(d, x_sw)) return 1;
  if (CG > 4 && three_tap_rows(d, x_sw, 2)) return 2;
  return 0;
}

// The widest row tile's input columns: InPlacePadding::zero_row holds this many pixels.
constexpr int64_t kGroupedRowColumns = 2 * 13 + 3;

// grouped_lanes_conv, or its row tiles where they apply (AVX-512: 14 pixels on rows of 14+, else
// 7; AVX2: 7, and for NCHW outputs as well: 128 @56 g32 N=1 fwd / dgrad NCHW 1.20 / 1.19x,
// channels_last 1.36 / 1.39x, Zen 4, in-process A/B). In-process
// A/B, arms in random order, Xeon, 2 threads, ResNeXt 32 groups: 8 channels a group (256 @28) fwd
// and dgrad N=1 1.10-1.30x, N=8 1.18-1.20x, both layouts; 4 a group (128 @56) channels_last
// 1.02-1.08x, but NCHW 0.91-1.00x (grouped_lanes_conv's 20-pixel tiles leave as longer runs of
// each plane): 4 or fewer a group keep those tiles for float32 outputs other than channels-last
// (bfloat16 NCHW outputs take the row tiles: Zen 5, 2 threads, 128 @56 g32 N=8 fwd / dgrad
// 1.06-1.07x, N=1 1.07-1.08x, 128 -> 256 @28 fwd 1.09x; float32 there 0.87-1.34x). Column
// stride 2 (8 a group: 256 @56 -> 28) 1.02-1.12x, both layouts, N=1 and 8; its kernel ran 10%
// faster, at ~30% of the FMA peak (a permute per 1.5 FMAs, both on port 5), with a quarter of the
// layer's time in the padding copy. (8 inputs and 8 outputs a group have since gone to
// grouped_product_lanes_fprop at column stride 2, float32 into a channels-last y and bfloat16 in
// any layout; groups of 5-7 inputs still come here.)
// block_step >= 0: x is group blocks (grouped_lanes_fprop) of a plan the stride-1 row tiles take.
// With pad (grouped_row_tiles_stride(d) > 0 then), x is read in place: see InPlacePadding.
template <int CG, typename TOut>
void grouped_lanes_run(const DirectConvPlan& d, const NhwcViewOf<float>& x, const float* wp,
                       const float* bias_blocks, TOut* y, const int64_t ys[4], int64_t block_step = -1,
                       const InPlacePadding* pad = nullptr) {
  const auto row_tiles = [&]<int PS, int SW>() {
    if (VecF32::kLanes == 16 && d.Q >= 14)
      grouped_lanes_row_conv<CG, 14, PS, SW>(d, x, wp, bias_blocks, y, ys, block_step, pad);
    else
      grouped_lanes_row_conv<CG, 7, PS, SW>(d, x, wp, bias_blocks, y, ys, block_step, pad);
  };
  if (block_step >= 0) return row_tiles.template operator()<VecF32::kLanes, 1>();
  const int row_stride = grouped_row_tiles_stride<CG, TOut>(d, x.sw, ys);
  if (row_stride == 1) return row_tiles.template operator()<0, 1>();
  if (row_stride == 2) return row_tiles.template operator()<0, 2>();
  grouped_lanes_conv<CG>(d, x, wp, bias_blocks, y, ys);
}

// The engine's packed weights wp[kb][t][j][L] from weight(k, j, t) (output channel k of K, its
// group's input channel j < CG, tap t < taps), zero past K; and the bias as blocks of L (or empty).
template <int CG, typename Weight>
std::vector<float> grouped_lanes_weights(int64_t K, int64_t taps, const Weight& weight) {
  constexpr int64_t L = VecF32::kLanes;
  const int64_t nkb = (K + L - 1) / L;
  std::vector<float> wp(nkb * taps * CG * L, 0.0f);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t t = 0; t < taps; ++t)
      for (int j = 0; j < CG; ++j) wp[((k / L * taps + t) * CG + j) * L + k % L] = weight(k, j, t);
  return wp;
}

// The bias (K elements of storage T, or null: empty) as floats in blocks of L, zero past K.
template <typename T>
std::vector<float> grouped_bias_blocks(const void* bias, int64_t K) {
  constexpr int64_t L = VecF32::kLanes;
  std::vector<float> blocks;
  if (bias == nullptr) return blocks;
  blocks.assign((K + L - 1) / L * L, 0.0f);
  for (int64_t k = 0; k < K; ++k) blocks[k] = load_acc(static_cast<const T*>(bias) + k);
  return blocks;
}

// The forward: x packed channels-last and padded, then the tiles. A float32 channels_last x whose
// pixels hold enough slots is read in place where it needs no padding, or where the row tiles run
// and take its padding as InPlacePadding describes (A/B on the Xeon, 2 threads, channels_last,
// ResNeXt's 32 groups, copy -> in place: 256 @56 /2 N=1 0.356 -> 0.252 ms, N=8 2.66 -> 2.06-2.13;
// 256 @28 0.161 -> 0.143, 128 @56 0.208 -> 0.165).
template <typename T, int CG>
void grouped_lanes_fprop(const Conv2dFpropArgs& a) {
  constexpr int64_t L = VecF32::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t Kg = p.K / p.groups;
  const int64_t Hp = std::max(p.H + 2 * p.pad_h, (p.P - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1);
  const int64_t Wp = std::max(p.W + 2 * p.pad_w, (p.Q - 1) * p.stride_w + (p.S - 1) * p.dil_w + 1);
  const int64_t ps = grouped_pixel_slots(p.C, p.K, CG, Kg);
  const T* x = static_cast<const T*>(a.x.data);
  const int64_t* xs = a.x.stride;
  ScratchOf<float> packed{0};
  NhwcViewOf<float> xv;
  const auto plan_for = [&](const NhwcViewOf<float>& xv) {
    DirectConvPlan d{p.N, p.groups, CG, Kg, p.P, p.Q, p.stride_h * xv.sh, p.stride_w * xv.sw, {}};
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s) d.tap_offset.push_back(r * p.dil_h * xv.sh + s * p.dil_w * xv.sw);
    return d;
  };
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  const std::vector<float> wp = grouped_lanes_weights<CG>(p.K, p.R * p.S, [&](int64_t k, int j, int64_t t) {
    return load_acc(w + k * ws[0] + j * ws[1] + t / p.S * ws[2] + t % p.S * ws[3]);
  });
  const std::vector<float> bias = grouped_bias_blocks<T>(a.bias, p.K);
  const float* bias_blocks = a.bias ? bias.data() : nullptr;
  // Where the row tiles apply to blocks of whole vectors (CG = Kg) of an NCHW x, they read it as
  // blocks of the L channels of L / Kg groups (pack_group_blocks), as the direct engine's row
  // tiles do (in-process A/B, arms in random order, Xeon: 256 @28 g32 NCHW N=1 and 8 1.28-1.44x,
  // 128 @56 1.00x). A channels_last x keeps its channels-last copy: one memcpy a row, where the
  // blocks' runs of 64 bytes cost more than the tiles gained at two threads (256 @28 0.97x, 128
  // @56 0.75x; one thread 1.08-1.19x).
  if constexpr (L == 16) {
    const int64_t nkb = p.C / L, block = group_block_floats(Hp, Wp, L);
    const NhwcViewOf<float> blocks{nullptr, nkb * block, Wp * L, L};
    if (xs[1] != 1 && CG == Kg && p.C % L == 0 && (CG > 4 || a.y.stride[1] == 1) &&
        three_tap_rows(plan_for(blocks), blocks.sw)) {
      packed = pack_group_blocks(x, xs, p.N, nkb, L, p.H, p.W, p.pad_h, p.pad_w, Hp, Wp);
      xv = {packed.data(), blocks.sn, blocks.sh, blocks.sw};
      grouped_lanes_run<CG>(plan_for(xv), xv, wp.data(), bias_blocks, static_cast<T*>(a.y.data), a.y.stride, block);
      return;
    }
  }
  bool in_place = false;
  if constexpr (std::is_same_v<T, float>) in_place = ps == p.C && xs[1] == 1;
  if (in_place) {
    xv = {reinterpret_cast<const float*>(x), xs[0], xs[2], xs[3]};
    const DirectConvPlan d = plan_for(xv);
    if (p.pad_h > 0 || p.pad_w > 0) {
      // Padding without a copy where the row tiles run and their reads stay within what
      // InPlacePadding covers: top rows any, columns one a side.
      const bool fits = p.pad_w <= 1 && Wp == p.W + 2 * p.pad_w && xs[3] <= (int64_t(1) << 20);
      if (fits && grouped_row_tiles_stride<CG>(d, xs[3], a.y.stride) > 0) {
        std::vector<float> zero_row(kGroupedRowColumns * xs[3] + L, 0.0f);
        const InPlacePadding pad{p.H, p.W, p.pad_h, p.pad_w, p.stride_h, p.dil_h, zero_row.data()};
        grouped_lanes_run<CG>(d, xv, wp.data(), bias_blocks, static_cast<T*>(a.y.data), a.y.stride, -1, &pad);
        return;
      }
      in_place = false;
    }
  }
  if (!in_place) {
    packed = pack_activations(x, xs, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, Hp, Wp, 1, 0, ps);
    xv = {packed.data(), Hp * Wp * ps, Wp * ps, ps};
  }
  grouped_lanes_run<CG>(plan_for(xv), xv, wp.data(), bias_blocks, static_cast<T*>(a.y.data), a.y.stride);
}

// The pixel-lane kernels' weights of a (G n, n, R, 3) filter w (strides ws):
// out[(((g n + o) R + r) 3 + s) n + i] = w[g n + i][o][r][s] (the forward: a vector of the group's
// outputs i per input o), or with transposed, w[g n + o][i][r][s] (the input gradient: the dx
// channels i per dy channel o).
inline std::vector<float> pixel_lane_weights(const float* w, const int64_t ws[4], int64_t G, int64_t n, int64_t R,
                                             bool transposed) {
  std::vector<float> out(G * n * R * 3 * n);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t o = 0; o < n; ++o)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t s = 0; s < 3; ++s)
          for (int64_t i = 0; i < n; ++i)
            out[(((g * n + o) * R + r) * 3 + s) * n + i] =
                transposed ? w[(g * n + o) * ws[0] + i * ws[1] + r * ws[2] + s * ws[3]]
                           : w[(g * n + i) * ws[0] + o * ws[1] + r * ws[2] + s * ws[3]];
  return out;
}

// The shape every pixel-lane kernel takes: float32, as many outputs as inputs a group (2 to 8),
// 3-wide filters over one column of padding, columns not dilated. Each kernel adds its layouts
// and column strides.
inline bool grouped_pixel_lanes_shape(const Conv2dProblem& p) {
  const int64_t Cg = p.C / p.groups;
  return p.dtype == DType::f32 && p.groups > 1 && Cg == p.K / p.groups && Cg >= 2 && Cg <= 8 && p.S == 3 &&
         p.pad_w == 1 && p.dil_w == 1;
}

// Whether grouped_pixel_lanes_fprop takes the layer: float32, NCHW rows (x and y columns
// contiguous, x not channels-last), as many outputs as inputs a group (2 to 8), 3-wide filters
// over one column of padding at column stride 2, or at stride 1 with 4 or fewer channels a group.
// In-process A/B against grouped_lanes_fprop (x as group blocks, row tiles, transposed stores),
// arms in random order, Xeon, 2 threads, NCHW, 32 groups: stride 2 256 @56 N=8 4.32 -> 1.99 ms,
// N=1 0.536 -> 0.259; 128 @56 /2 N=8 1.48 -> 1.20; 64 @56 /2 0.61 -> 0.41; stride 1 128 @56 N=8
// 3.19 -> 2.24, N=1 0.329 -> 0.259; 64 @56 1.23 -> 0.88; but 8 a group at stride 1 (256 @28)
// N=8 1.43 -> 1.83, N=1 0.200 -> 0.235: there the row tiles' three FMAs per permute win. AVX2
// leaves 8 a group to conv2d_direct.h (256 @56 /2 N=1 0.307 ms there, 0.348 here; N=8 4.33 and
// 3.86): its 8 sums a vector take a broadcast per FMA.
inline bool grouped_pixel_lanes_apply(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups;
  return grouped_pixel_lanes_shape(p) && a.x.stride[3] == 1 && a.x.stride[1] != 1 && a.y.stride[3] == 1 &&
         (VecF32::kLanes == 16 || Cg < 8) && (p.stride_w == 2 || (p.stride_w == 1 && Cg <= 4));
}

// The grouped forward on NCHW rows with output pixels as the lanes (float32): no channels-last
// copy of x and no transposed store of y. A work item is one output row of one group: per input
// channel and kernel row, the three taps' input vectors of each L output pixels (stride 1: the
// columns from q and from q + 1, and the first a lane later for tap 0; stride 2: the even and
// the odd columns of 2 L inputs, the odd ones a lane later for tap 0) meet the broadcast weights
// of the group's KG outputs: 3 KG FMAs per vector. MV vectors (L MV pixels) a tile; columns
// outside the image load as zeros (masked loads in a row's last tile only), rows outside are
// skipped. AVX2 and groups of 3, 5, 6 and 7 came later (A/B against what ran before, arms in
// random order, Zen 4, 2 threads, NCHW, 32 groups): AVX2 128 @56 /2 N=1 0.220 -> 0.160 ms, N=8
// 2.31 -> 0.89; 128 @56 N=1 0.363 -> 0.275, N=8 4.27 -> 2.18; 64 @56 (2 a group) N=1 0.119 ->
// 0.128, N=8 1.35 -> 1.00; 5 a group (160 @56 /2) N=1 1.42 -> 0.16; 3 a group
// on both ISAs (96 @56 /2, 96 @28) 5.7-10x; AVX-512 (this kernel with masked loads in every
// tile and three loads at stride 1 before) 256 @56 /2 0.267 -> 0.245, 64 @56 0.148 -> 0.081,
// others level.
template <int KG, int SW>
void grouped_pixel_lanes_fprop(const Conv2dFpropArgs& a) {
  using V = VecF32;
  using Vec = typename V::type;
  constexpr int L = V::kLanes;
  // AVX-512: KG MV sums and 3 MV x vectors in 32 registers; AVX2 in 16.
  constexpr int MV = L == 16 ? (KG <= 4 ? 4 : 2) : (KG <= 4 ? 2 : 1), kPixels = L * MV;
  const Conv2dProblem& p = a.p;
  const float* x = static_cast<const float*>(a.x.data);
  const float* w = static_cast<const float*>(a.w.data);
  float* y = static_cast<float*>(a.y.data);
  const int64_t *xs = a.x.stride, *ys = a.y.stride;
  const int64_t G = p.groups, R = p.R;
  // wq[((g KG + c) R + r) 3 + s][k]: the KG outputs' weights of input channel c at tap (r, s).
  const std::vector<float> wq = pixel_lane_weights(w, a.w.stride, G, KG, R, false);
  const float* bias = static_cast<const float*>(a.bias);
  // One tile: output row op of group g (x_g: its first input channel's plane), pixels q0 + [0, kPixels).
  const auto tile = [&]<bool kMasked>(const float* x_g, int64_t g, int64_t op, int64_t q0, float* yr) {
    // Loops over acc fully unrolled, the store's without a break: otherwise GCC keeps acc in a
    // stack array and stores it after every kernel row (A/B, same bits, Zen 4, 2 threads,
    // NCHW, 32 groups: 128 @56 N=1 0.343 -> 0.225 ms, N=8 1.41x; 256 @56 /2 1.12-1.19x).
    Vec acc[KG][MV];
#pragma GCC unroll 8
    for (int k = 0; k < KG; ++k)
#pragma GCC unroll 4
      for (int m = 0; m < MV; ++m) acc[k][m] = bias ? V::broadcast(bias + g * KG + k) : V::zero();
    for (int64_t c = 0; c < KG; ++c) {
      for (int64_t r = 0; r < R; ++r) {
        const int64_t h = op * p.stride_h - p.pad_h + r * p.dil_h;
        if (h < 0 || h >= p.H) continue;
        const float* row = x_g + c * xs[1] + h * xs[2];
        // Column SW q0 - 1, the one before the tile's first tap-1 column (padding at q0 = 0).
        Vec before = q0 > 0 ? V::broadcast(row + SW * q0 - 1) : V::zero();
        Vec v[3][MV];
#pragma GCC unroll 4
        for (int m = 0; m < MV; ++m) {
          const int64_t q = q0 + L * m;
          const auto load = [&](int64_t col) {
            return kMasked ? V::load_masked(row + col, V::lanes_between(0, p.W - col)) : V::load(row + col);
          };
          if constexpr (SW == 1) {
            v[1][m] = load(q), v[2][m] = load(q + 1);
            v[0][m] = lanes_up_one(v[1][m], before);
            before = v[1][m];
          } else {
            // Columns 2q + [0, 2 L): even ones for tap 1, odd ones (2q + 1 + 2l) for tap 2, and
            // for tap 0 the odd ones a lane later, after column 2q - 1.
            deinterleave_lanes(load(2 * q), load(2 * q + L), v[1][m], v[2][m]);
            v[0][m] = lanes_up_one(v[2][m], before);
            before = v[2][m];
          }
        }
        const float* wr = wq.data() + ((g * KG + c) * R + r) * 3 * KG;
#pragma GCC unroll 3
        for (int s = 0; s < 3; ++s)
#pragma GCC unroll 8
          for (int k = 0; k < KG; ++k) {
            const Vec wv = V::broadcast(wr + s * KG + k);
#pragma GCC unroll 4
            for (int m = 0; m < MV; ++m) acc[k][m] = V::fmadd(v[s][m], wv, acc[k][m]);
          }
      }
    }
#pragma GCC unroll 8
    for (int k = 0; k < KG; ++k)
#pragma GCC unroll 4
      for (int m = 0; m < MV; ++m) {
        const int64_t q = q0 + L * m;
        if (!kMasked || q + L <= p.Q) V::store(yr + k * ys[1] + q, acc[k][m]);
        else if (q < p.Q) V::store_first(yr + k * ys[1] + q, acc[k][m], int(p.Q - q));
      }
  };
  parallel_for(0, p.N * G * p.P, 2, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t op = item % p.P, g = item / p.P % G, n = item / (p.P * G);
      const float* x_g = x + n * xs[0] + g * KG * xs[1];
      float* yr = y + n * ys[0] + g * KG * ys[1] + op * ys[2];
      int64_t q0 = 0;
      // Whole tiles: kPixels outputs, and the x columns they read, inside the row.
      for (; q0 + kPixels <= p.Q && (SW == 1 ? q0 + kPixels < p.W : 2 * (q0 + kPixels) <= p.W); q0 += kPixels)
        tile.template operator()<false>(x_g, g, op, q0, yr);
      for (; q0 < p.Q; q0 += kPixels) tile.template operator()<true>(x_g, g, op, q0, yr);
    }
  });
}

#if defined(__AVX512F__)
// Whether grouped_product_lanes_fprop takes the layer: float32 or bfloat16, 8 inputs and 8
// outputs a group, column stride 2; float32 x and y with contiguous channels (channels-last),
// bfloat16 any (grouped_product_lanes_fprop_any_layout). At stride 1 the row tiles' permutes
// serve three FMAs each and those stay ahead (A/B, arms in random order, Xeon, 2 threads,
// channels_last, 32 groups: 256 @28 N=8 1.27 ms there, 1.64 here; N=1 0.169, 0.228).
template <typename T>
inline bool grouped_product_lanes_layer(const Conv2dProblem& p) {
  return p.dtype == dtype_of<T>() && p.groups > 1 && p.C == 8 * p.groups && p.K == 8 * p.groups && p.stride_w == 2;
}
template <typename T>
inline bool grouped_product_lanes_takes(const Conv2dFpropArgs& a) {
  return grouped_product_lanes_layer<T>(a.p) && (std::is_same_v<T, bf16> || (a.x.stride[1] == 1 && a.y.stride[1] == 1));
}

// A dense channels-last copy of an activation view of N x C x H x W (pack_activations; bfloat16's
// by 16-bit transposes): the input of a kernel that reads channels-last in place.
template <typename T>
struct ChannelsLastCopy {
  ChannelsLastCopy(const ConstView4& v, int64_t N, int64_t C, int64_t H, int64_t W)
      : copy(pack_activations<T, T>(static_cast<const T*>(v.data), v.stride, N, C, H, W, 0, 0, H, W)),
        view{copy.data(), {H * W * C, 1, W * C, C}} {}
  ScratchOf<T> copy;
  ConstView4 view;
};

// An output row d[k ks + q qs] (K channels, Q pixels) = s[q K + k], a dense channels-last row:
// 8 x 8 transposes where its pixels are contiguous and 8+ (the last block shifted left onto the
// previous one), else element by element.
template <typename T>
void store_channels_last_row(const T* s, int64_t K, int64_t Q, T* d, int64_t ks, int64_t qs) {
  int64_t k8 = 0;
  if (qs == 1 && Q >= 8) {
    k8 = K - K % 8;
    for (int64_t k = 0; k < k8; k += 8) {
      for (int64_t q = 0; q + 8 <= Q; q += 8) transpose8x8(s + q * K + k, K, d + k * ks + q, ks);
      if (Q % 8 != 0) transpose8x8(s + (Q - 8) * K + k, K, d + k * ks + Q - 8, ks);
    }
  }
  for (int64_t k = k8; k < K; ++k)
    for (int64_t q = 0; q < Q; ++q) d[k * ks + q * qs] = s[q * K + k];
}

// The output columns [q_lo, q_hi) whose taps all read columns inside the image (the product
// lanes' tiles and pixels there skip no tap).
inline std::pair<int64_t, int64_t> columns_inside(const Conv2dProblem& p) {
  const int64_t q_lo = std::min(p.Q, (p.pad_w + p.stride_w - 1) / p.stride_w);
  return {q_lo, std::max(q_lo, std::min(p.Q, (p.W + p.pad_w - (p.S - 1) * p.dil_w - 1) / p.stride_w + 1))};
}

// A pixel's 8 group inputs (float32 or bfloat16) as floats in both halves of a vector: a 256-bit
// broadcast load; bfloat16 a 128-bit one, then one byte shuffle that moves inputs 0-3 (even
// quarters) or 4-7 (odd quarters) into the upper halves of the 32-bit lanes, zeros below.
[[gnu::always_inline]] inline __m512 broadcast_octet(const float* p) {
  return _mm512_broadcast_f32x8(_mm256_loadu_ps(p));
}
[[gnu::always_inline]] inline __m512 broadcast_octet(const bf16* p) {
  // (maskz: the plain intrinsic passes an undefined operand that draws GCC 12's -Wuninitialized;
  // a vector-extension shuffle went through the stack.)
  const __m512i quarters =
      _mm512_maskz_broadcast_i32x4(__mmask16(0xffff), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i to_upper = _mm512_setr_epi32(0x01008080, 0x03028080, 0x05048080, 0x07068080, 0x09088080, 0x0b0a8080,
                                             0x0d0c8080, 0x0f0e8080, 0x01008080, 0x03028080, 0x05048080, 0x07068080,
                                             0x09088080, 0x0b0a8080, 0x0d0c8080, 0x0f0e8080);
  return _mm512_castsi512_ps(_mm512_shuffle_epi8(quarters, to_upper));
}

// grouped_product_lanes_fprop's float32 FMAs: lane l of vector kp multiplies input channel l % 8
// by the weight of output 2 kp + l / 8 (the vdpbf16ps engine has its own lanes,
// conv2d_bf16dot_avx512.cpp).
struct ProductLanesFma {
  static constexpr int kVectors = 4, kPixels = 7;  // 28 accumulators
  using W = float;                                  // a packed weight lane
  using In = __m512;
  // dst[t][l] = the weight lane l of tap t for group g's outputs (w: KCRS-like strides ws).
  template <typename T>
  static void pack(const T* w, const int64_t* ws, int64_t g, int64_t taps, int64_t S, W* dst) {
    for (int64_t t = 0; t < taps; ++t)
      for (int l = 0; l < 64; ++l)
        dst[t * 64 + l] = load_acc(w + (8 * g + l / 8) * ws[0] + l % 8 * ws[1] + t / S * ws[2] + t % S * ws[3]);
  }
  static In load(const W* p) { return _mm512_loadu_ps(p); }
  template <typename T>
  [[gnu::always_inline]] static In broadcast(const T* p) { return broadcast_octet(p); }
  static __m512 madd(In x, In w, __m512 acc) { return _mm512_fmadd_ps(x, w, acc); }
  [[gnu::always_inline]] static __m256 sums(const __m512* acc) { return sum_lane_octets(acc[0], acc[1], acc[2], acc[3]); }
};

// The grouped forward of 8 inputs and 8 outputs a group with a group's 64 products as the lanes
// of four vectors: lane l of vector kp multiplies input channel j = l % 8 by the weight of output
// k = 2 kp + l / 8. One 256-bit broadcast puts a pixel's 8 group inputs in both halves of a vector
// (a load, no shuffle), four FMAs take it, and after the last tap each output's 8 lanes are summed
// (sum_lane_octets: 12 operations per pixel and group against 4 FMAs per tap, 36 for 3 x 3).
// grouped_lanes_row_conv's stride-2 tiles take 2 permutes per 3 FMAs, on the port the FMAs share.
// A tile is MR consecutive output pixels of one row and one group; a work item is an output row,
// its segments of MR in turn, every group for each (groups innermost, so that the groups' reads
// walk each pixel's channels in order). Tiles whose columns all lie in the image run without
// checks; the others skip the taps outside (and, in a row shorter than MR, the pixels past its
// end). Channels-last x and y are read and written in place; an NCHW x's rows are transposed, as
// each item reads them, into a thread's buffer, and an NCHW y's row is transposed from one (a
// whole channels-last copy of x was written to memory and read back: 1.35x at N=8). In-process
// A/B against the row tiles, arms in random order, Xeon, 2 threads, channels_last, ResNeXt's
// 256 @56 /2 x 32 groups: N=8 2.27 -> 1.81 ms, N=1 0.313 -> 0.268 (one thread, a standalone
// loop: 0.57 -> 0.40). The broadcasts' loads stall (x's lines arrive once per two groups, 1 KB
// apart); software prefetches a few groups ahead lost 4-12% there.
// bfloat16 (broadcast_octet's shuffle, then float32 sums, rounded once) had packed x into a
// padded float32 copy for the row tiles: same layer, separate runs, N=8 2.99 -> 1.79 ms (PyTorch
// 1.78-1.85), N=1 0.365 -> 0.253 (PyTorch 0.23-0.30).
// PL: the lanes' policy (ProductLanesFma; kVectors vectors of products a pixel, kPixels pixels a
// tile, the packed weights, the broadcast of a pixel's 8 group inputs, the multiply-add, and the
// sums of each output's lanes).
template <typename T, class PL = ProductLanesFma>
void grouped_product_lanes_fprop(const Conv2dFpropArgs& a) {
  constexpr int MR = PL::kPixels, NV = PL::kVectors, kLanesPerTap = NV * 16;
  const Conv2dProblem& p = a.p;
  const T* x = static_cast<const T*>(a.x.data);
  T* y = static_cast<T*>(a.y.data);
  const int64_t *xs = a.x.stride, *ys = a.y.stride, *ws = a.w.stride;
  const T* w = static_cast<const T*>(a.w.data);
  const FloatBias<T> bias_floats(a.bias, p.K);
  const float* bias = bias_floats.data();  // null without a bias
  const int64_t G = p.groups, taps = p.R * p.S;
  // wk[g][t][lane]: the policy's weight lanes of group g's outputs.
  ScratchOf<typename PL::W> wk(G * taps * kLanesPerTap);
  for (int64_t g = 0; g < G; ++g) PL::pack(w, ws, g, taps, p.S, wk.data() + g * taps * kLanesPerTap);
  // x's rows are read in place where x is channels-last; NCHW rows are transposed, the R an
  // output row reads, into a thread's channels-last buffer (bfloat16 rows of contiguous pixels,
  // 16k channels: grouped_product_lanes_fprop_any_layout copies any other x first). y's row
  // likewise: in place, or a channels-last row transposed into place.
  const bool x_rows_copied = xs[1] != 1, y_row_copied = ys[1] != 1;
  const int64_t xps = x_rows_copied ? p.C : xs[3];  // pixel step of the rows read
  const int64_t yps = y_row_copied ? p.K : ys[3];
  const int64_t segments = (p.Q + MR - 1) / MR;
  const auto [q_lo, q_hi] = columns_inside(p);
  // rows[r]: kernel row r's x row (pixel 0, channel 0), null outside the image.
  const auto tile = [&]<bool kEdge>(const T* const* rows, T* yq, int64_t q0, int m, const typename PL::W* wg,
                                     int64_t g) {
    __m512 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int kp = 0; kp < NV; ++kp) acc[i][kp] = _mm512_setzero_ps();
    for (int64_t r = 0; r < p.R; ++r) {
      if (rows[r] == nullptr) continue;
      const T* xr = rows[r] + 8 * g + (q0 * p.stride_w - p.pad_w) * xps;
      for (int64_t s = 0; s < p.S; ++s) {
        const typename PL::W* wt = wg + (r * p.S + s) * kLanesPerTap;
        typename PL::In wv[NV];
#pragma GCC unroll 4
        for (int kp = 0; kp < NV; ++kp) wv[kp] = PL::load(wt + 16 * kp);
        const T* xt = xr + s * p.dil_w * xps;
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) {
          if constexpr (kEdge) {
            const int64_t col = (q0 + i) * p.stride_w - p.pad_w + s * p.dil_w;
            if (i >= m || col < 0 || col >= p.W) continue;
          }
          const typename PL::In v = PL::broadcast(xt + i * p.stride_w * xps);
#pragma GCC unroll 4
          for (int kp = 0; kp < NV; ++kp) acc[i][kp] = PL::madd(v, wv[kp], acc[i][kp]);
        }
      }
    }
    const __m256 b = bias ? _mm256_loadu_ps(bias + 8 * g) : _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
      if (!kEdge || i < m) store8(yq + i * yps, _mm256_add_ps(b, PL::sums(acc[i])));
  };
  // An item is an output row: its segments of MR pixels, every group for each.
  parallel_for(0, p.N * p.P, 1, [&](int64_t b, int64_t e) {
    ScratchOf<T> x_rows(x_rows_copied ? p.R * p.W * p.C : 0), y_row(y_row_copied ? p.Q * p.K : 0);
    std::vector<const T*> rows(p.R);
    for (int64_t item = b; item < e; ++item) {
      const int64_t op = item % p.P, n = item / p.P;
      for (int64_t r = 0; r < p.R; ++r) {
        const int64_t h = op * p.stride_h - p.pad_h + r * p.dil_h;
        rows[r] = nullptr;
        if (h < 0 || h >= p.H) continue;
        const T* src = x + n * xs[0] + h * xs[2];
        if (!x_rows_copied) {
          rows[r] = src;
          continue;
        }
        if constexpr (std::is_same_v<T, bf16>) {
          T* dst = x_rows.data() + r * p.W * p.C;
          for (int64_t c = 0; c < p.C; c += 16) transpose16_channel_row_bf16(src + c * xs[1], xs[1], p.W, dst + c, p.C);
          rows[r] = dst;
        }
      }
      T* yr = y_row_copied ? y_row.data() : y + n * ys[0] + op * ys[2];
      for (int64_t seg = 0; seg < segments; ++seg) {
        // The last segment overlaps its neighbour where MR does not divide Q (and Q >= MR).
        const int64_t q0 = p.Q >= MR ? std::min(seg * MR, p.Q - MR) : 0;
        const int m = int(std::min<int64_t>(MR, p.Q - q0));
        const bool edge = q0 < q_lo || q0 + MR > q_hi;
        for (int64_t g = 0; g < G; ++g) {
          const typename PL::W* wg = wk.data() + g * taps * kLanesPerTap;
          if (edge) tile.template operator()<true>(rows.data(), yr + q0 * yps + 8 * g, q0, m, wg, g);
          else tile.template operator()<false>(rows.data(), yr + q0 * yps + 8 * g, q0, m, wg, g);
        }
      }
      if (y_row_copied) store_channels_last_row(y_row.data(), p.K, p.Q, y + n * ys[0] + op * ys[2], ys[1], ys[3]);
    }
  });
}

// grouped_product_lanes_fprop on any x and y. NCHW bfloat16 rows are transposed as the items
// read them (above); other x (strided rows, channels not a multiple of 16) goes into a
// channels-last copy first. In-process A/B against the row tiles that had taken NCHW bfloat16
// (grouped_lanes_fprop, on a padded float32 copy of x), arms in random order, Zen 5, 2 threads,
// ResNeXt's 256 @56 /2 x 32 groups NCHW, with whole copies of x and y around the kernel: N=8
// 1.27-1.53x, N=4 1.30x, N=1-2 0.96-1.05x; the rows transposed per item against those copies:
// N=8 1.35x, N=4 1.16x, N=1 1.03x (channels_last, items of whole rows: 1.04x). float32 NCHW
// stays on grouped_pixel_lanes_fprop (copies there: 0.87-1.21x at N=8, 0.55x at N=2).
template <typename T, class PL = ProductLanesFma>
void grouped_product_lanes_fprop_any_layout(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  Conv2dFpropArgs f = a;
  std::optional<ChannelsLastCopy<T>> x_copy;
  if (a.x.stride[1] != 1 && !(std::is_same_v<T, bf16> && a.x.stride[3] == 1 && p.C % 16 == 0)) {
    x_copy.emplace(a.x, p.N, p.C, p.H, p.W);
    f.x = x_copy->view;
  }
  grouped_product_lanes_fprop<T, PL>(f);
}
#endif

template <typename T>
inline bool conv2d_fprop_grouped_lanes(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>()) return false;
#if defined(__AVX512F__)
  if (grouped_product_lanes_takes<T>(a)) {
    grouped_product_lanes_fprop_any_layout<T>(a);
    return true;
  }
#endif
  if (grouped_pixel_lanes_apply(a)) {
    with_group_channels(p.C / p.groups, [&]<int CG>() {
      if (p.stride_w == 1) grouped_pixel_lanes_fprop<CG, 1>(a);
      else grouped_pixel_lanes_fprop<CG, 2>(a);
    });
    return true;
  }
  if (!grouped_lanes_apply(p.groups, p.C / p.groups, p.K / p.groups)) return false;
  with_group_channels(p.C / p.groups, [&]<int CG>() { grouped_lanes_fprop<T, CG>(a); });
  return true;
}

// The taps of one stride phase of the input gradient along one dimension: input position
// h = a + stride i (phase a) receives dy at i + off from filter tap r where a + pad - r dil =
// stride off. Appends the (r, off) pairs.
inline void dgrad_phase_taps(int64_t a, int64_t stride, int64_t pad, int64_t taps, int64_t dil,
                             std::vector<std::pair<int64_t, int64_t>>& out) {
  out.clear();
  for (int64_t r = 0; r < taps; ++r) {
    const int64_t d = a + pad - r * dil;
    const int64_t off = d >= 0 ? d / stride : -((-d + stride - 1) / stride);
    if (off * stride == d) out.emplace_back(r, off);
  }
}

// dy's padding for the input gradient's stride phases (dgrad_phase_taps): the offsets every phase
// reaches past [0, P) and [0, Q), and the padded size.
struct DgradPadding {
  explicit DgradPadding(const Conv2dProblem& p) {
    std::vector<std::pair<int64_t, int64_t>> taps;
    for (int64_t ph = 0; ph < std::min(p.stride_h, p.H); ++ph) {
      dgrad_phase_taps(ph, p.stride_h, p.pad_h, p.R, p.dil_h, taps);
      const int64_t I = (p.H - ph + p.stride_h - 1) / p.stride_h;
      for (const auto& [r, off] : taps) top = std::max(top, -off), bottom = std::max(bottom, I - 1 + off - (p.P - 1));
    }
    for (int64_t ph = 0; ph < std::min(p.stride_w, p.W); ++ph) {
      dgrad_phase_taps(ph, p.stride_w, p.pad_w, p.S, p.dil_w, taps);
      const int64_t J = (p.W - ph + p.stride_w - 1) / p.stride_w;
      for (const auto& [s, off] : taps) left = std::max(left, -off), right = std::max(right, J - 1 + off - (p.Q - 1));
    }
    Hp = top + p.P + bottom, Wp = left + p.Q + right;
  }
  int64_t top = 0, bottom = 0, left = 0, right = 0, Hp = 0, Wp = 0;
};

// The input gradient as forward convolutions of dy, one per stride phase (sh sw of them): dx at
// rows a + sh i and columns b + sw j sums dy at (i + off_r, j + off_s) times w at the phase's taps,
// each group's roles swapped (Kg inputs, Cg outputs): here where Kg <= Cg. dy goes once into a
// channels-last buffer padded for every phase's offsets; a phase without taps stores zeros.
// Whether grouped_lanes_dgrad's column pairs (kDgradStride2) take the layer: column stride 2 over
// 3 taps and a column of padding, even widths of 14+.
inline bool grouped_dgrad_column_pairs_apply(const Conv2dProblem& p) {
  return p.stride_w == 2 && p.S == 3 && p.dil_w == 1 && p.pad_w == 1 && p.W % 2 == 0 && p.W >= 14;
}

template <typename T, int KG>
void grouped_lanes_dgrad(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, sh = p.stride_h, sw = p.stride_w;
  std::vector<std::pair<int64_t, int64_t>> rows, cols;
  const DgradPadding dp(p);
  const int64_t top = dp.top, left = dp.left, right = dp.right, Hp = dp.Hp, Wp = dp.Wp;
  const int64_t ps = grouped_pixel_slots(p.K, p.C, KG, Cg);
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t* xs = a.dx.stride;
  const int64_t phase_strides[4] = {xs[0], xs[1], xs[2] * sh, xs[3] * sw};
  // One phase over dv (dy's pixel (h, w) at dv + (h + top) sh + (w + left) sw), its rows and
  // cols (filter taps and dy offsets): the plan, its packed weights, the tiles.
  const auto run_phase = [&](int64_t pa, int64_t pb, const NhwcViewOf<float>& dv, int64_t top, int64_t left,
                             const InPlacePadding* pad) {
    DirectConvPlan d{p.N, p.groups, KG, Cg, (p.H - pa + sh - 1) / sh, (p.W - pb + sw - 1) / sw, dv.sh, dv.sw, {}};
    std::vector<std::pair<int64_t, int64_t>> taps;  // filter (r, s) of each of the phase's taps
    // A row's taps left to right in dy (the offsets fall as the taps rise): the row tiles read
    // them so.
    for (const auto& [r, ro] : rows)
      for (auto col = cols.rbegin(); col != cols.rend(); ++col) {
        d.tap_offset.push_back((top + ro) * dv.sh + (left + col->second) * dv.sw);
        taps.emplace_back(r, col->first);
      }
    if (pad && grouped_row_tiles_stride<KG>(d, dv.sw, phase_strides) != 1) return false;
    // Output channel c (group c / Cg, its channel c % Cg) from input channel o of its group.
    const std::vector<float> wp =
        grouped_lanes_weights<KG>(p.C, int64_t(taps.size()), [&](int64_t c, int o, int64_t t) {
          const int64_t k = c / Cg * KG + o;
          return load_acc(w + k * ws[0] + c % Cg * ws[1] + taps[t].first * ws[2] + taps[t].second * ws[3]);
        });
    grouped_lanes_run<KG>(d, dv, wp.data(), nullptr, dx + pa * xs[2] + pb * xs[3], phase_strides, -1, pad);
    return true;
  };
  // Stride 1 over a float32 channels_last dy whose padding is at most a column a side: dy read in
  // place by the row tiles (InPlacePadding, the kernel rows reading dy rows upwards), where they
  // take the plan (Xeon, 2 threads, channels_last, 32 groups, separate runs: 256 @28 N=8 1.42 ->
  // 1.18 ms, 128 @56 N=8 1.78 -> 1.41, N=1 0.204 -> 0.170).
  if constexpr (std::is_same_v<T, float>) {
    const int64_t* ds = a.dy.stride;
    if (sh == 1 && sw == 1 && ds[1] == 1 && ps == p.K && left <= 1 && right <= 1 && ds[3] <= (int64_t(1) << 20)) {
      dgrad_phase_taps(0, 1, p.pad_h, p.R, p.dil_h, rows);
      dgrad_phase_taps(0, 1, p.pad_w, p.S, p.dil_w, cols);
      if (!rows.empty() && !cols.empty()) {
        const int64_t row_step = rows.size() > 1 ? rows[1].second - rows[0].second : 1;
        std::vector<float> zero_row(kGroupedRowColumns * ds[3] + VecF32::kLanes, 0.0f);
        const InPlacePadding pad{p.P, p.Q, -rows[0].second, -cols.back().second, 1, row_step, zero_row.data()};
        const NhwcViewOf<float> dv{reinterpret_cast<const float*>(a.dy.data), ds[0], ds[2], ds[3]};
        if (run_phase(0, 0, dv, 0, 0, &pad)) return;
      }
    }
  }
  // Column stride 2 over 3 taps and a column of padding (ResNeXt's 256 @56 /2): per row phase, row
  // tiles that take both column phases at once (kDgradStride2), reading a float32 channels_last
  // dy in place, else a packed one. In-process A/B against the four phases, arms in random order,
  // Xeon, 2 threads, 256 @56 /2 g32: N=8 channels_last 2.76 -> 1.89 ms, NCHW 6.55 -> 3.71; N=1
  // 0.313 -> 0.220, 0.525 -> 0.410. AVX2 (8-pixel tiles, A/B against the phases, Zen 4, 2
  // threads, N=1, 32 groups): 128 @56 /2 NCHW 2.2x, channels_last 1.25x; 64 @56 /2 1.7x, 1.27x.
  // (A float32 NCHW dy with as many outputs as inputs a group has since gone to
  // grouped_pixel_lanes_dgrad2 instead on both ISAs; bfloat16 and other layouts still come here.)
  if (grouped_dgrad_column_pairs_apply(p)) {
    const int64_t* ds = a.dy.stride;
    bool in_place = false;
    if constexpr (std::is_same_v<T, float>) in_place = ds[1] == 1 && ps == p.K && ds[3] <= (int64_t(1) << 20);
    ScratchOf<float> dyp{0};
    NhwcViewOf<float> dv{reinterpret_cast<const float*>(a.dy.data), ds[0], ds[2], ds[3]};
    if (!in_place) {
      dyp = pack_activations(static_cast<const T*>(a.dy.data), ds, p.N, p.K, p.P, p.Q, top, left, Hp, Wp, 1, 0, ps);
      dv = {dyp.data(), Hp * Wp * ps, Wp * ps, ps};
    }
    std::vector<float> zero_row(in_place ? kGroupedRowColumns * ds[3] + VecF32::kLanes : 0, 0.0f);
    const int64_t dx_strides[4] = {xs[0], xs[1], xs[2] * sh, xs[3]};
    for (int64_t pa = 0; pa < std::min(sh, p.H); ++pa) {
      dgrad_phase_taps(pa, sh, p.pad_h, p.R, p.dil_h, rows);
      DirectConvPlan d{p.N, p.groups, KG, Cg, (p.H - pa + sh - 1) / sh, p.W, dv.sh, dv.sw, {}};
      for (const auto& [r, ro] : rows)
        for (int64_t s = 0; s < 3; ++s) d.tap_offset.push_back((top + ro) * dv.sh + left * dv.sw);
      const std::vector<float> wp =
          grouped_lanes_weights<KG>(p.C, int64_t(d.tap_offset.size()), [&](int64_t c, int o, int64_t t) {
            const int64_t k = c / Cg * KG + o;
            return load_acc(w + k * ws[0] + c % Cg * ws[1] + rows[t / 3].first * ws[2] + t % 3 * ws[3]);
          });
      // In place: tile row i reads dy rows i + off of its kernel rows (offsets falling by a
      // constant step), dy columns from q0 / 2 on.
      const int64_t row_top = rows.empty() ? 0 : -rows[0].second;
      const int64_t row_step = rows.size() > 1 ? rows[1].second - rows[0].second : 1;
      const InPlacePadding pad{p.P, p.Q, row_top, 0, 1, row_step, zero_row.data()};
      grouped_lanes_row_conv<KG, VecF32::kLanes == 16 ? 14 : 8, 0, kDgradStride2>(
          d, dv, wp.data(), nullptr, dx + pa * xs[2], dx_strides, -1, in_place ? &pad : nullptr);
    }
    return;
  }
  const ScratchOf<float> dyp = pack_activations(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K, p.P, p.Q, top,
                                                left, Hp, Wp, 1, 0, ps);
  const NhwcViewOf<float> dv{dyp.data(), Hp * Wp * ps, Wp * ps, ps};
  for (int64_t pa = 0; pa < std::min(sh, p.H); ++pa) {
    dgrad_phase_taps(pa, sh, p.pad_h, p.R, p.dil_h, rows);
    for (int64_t pb = 0; pb < std::min(sw, p.W); ++pb) {
      dgrad_phase_taps(pb, sw, p.pad_w, p.S, p.dil_w, cols);
      run_phase(pa, pb, dv, top, left, nullptr);
    }
  }
}

// Whether grouped_pixel_lanes_dgrad2 takes the layer: float32 NCHW rows (dy and dx columns
// contiguous, dy not channels-last), as many outputs as inputs a group (2 to 8), 3-wide filters
// over one column of padding at column stride 2.
inline bool grouped_pixel_lanes_dgrad2_apply(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  return grouped_pixel_lanes_shape(p) && a.dy.stride[3] == 1 && a.dy.stride[1] != 1 && a.dx.stride[3] == 1 &&
         p.stride_w == 2;
}

// The grouped input gradient at column stride 2 on NCHW rows, dx pixels as lanes (float32): dx
// column 2j takes dy column j through tap 1, column 2j + 1 dy columns j + 1 and j through taps 0
// and 2. Per dy channel and kernel row, the vectors of dy columns j0 + [0, L) and j0 + 1 + [0, L)
// meet the broadcast weights of CN of the group's dx channels: 3 CN FMAs for 2 L dx pixels, the
// even and the odd sums interleaved as they are stored. A work item is one dx row of one group;
// kernel rows whose dy row falls between rows or outside are skipped, dy columns past the row
// load as zeros (masked loads in a row's last tile only). AVX-512's 32 registers hold a whole
// group's 2 x 8 sums next to the two dy vectors and three weights; AVX2's 16 hold 2 x 4, so a
// group of more than 4 takes two passes over its dy rows (from the L1).
// In-process A/B against grouped_lanes_dgrad (dy packed channels-last, the kDgradStride2 row
// tiles, transposed stores), arms in random order, Xeon, 2 threads, NCHW, 32 groups: 256 @56 /2
// N=8 4.28 -> 2.72 ms, N=1 0.416 -> 0.309; 128 @56 /2 N=8 1.51 -> 1.03; 64 @56 /2 0.62 -> 0.31.
// AVX2, and groups of 3, 5, 6 and 7 on both ISAs, came later (A/B against what ran before, arms
// in random order, Zen 4, 2 threads, N=1, 32 groups, @56 /2 unless said): AVX2 256 (8 a group,
// conv2d_direct.h's transposed row tiles before) 0.358 -> 0.272 ms, N=8 2.29 ms; 128 (the row
// tiles before) 0.139 -> 0.086; 3, 5, 6 and 7 a group (both ISAs, the general direct path
// before) 2.5-5.5x, e.g. AVX-512 96 @56 /2 0.288 -> 0.052. The full tiles' plain loads took
// AVX-512's 256 from 0.221 to 0.197. Two passes of 2 (AVX2, 2 x 2 x 2 sums: half the broadcasts
// a FMA) ran 0.91-1.0x, three sums a channel (the odd ones' two FMAs in separate chains) 0.87x.
template <int CG>
void grouped_pixel_lanes_dgrad2(const Conv2dDgradArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes, kPass = L == 16 ? 8 : 4;  // dx channels a pass
  const Conv2dProblem& p = a.p;
  const float* dy = static_cast<const float*>(a.dy.data);
  const float* w = static_cast<const float*>(a.w.data);
  float* dx = static_cast<float*>(a.dx.data);
  const int64_t *ds = a.dy.stride, *xs = a.dx.stride;
  const int64_t G = p.groups, R = p.R;
  // wq[((g CG + k) R + r) 3 + s][c]: the CG dx channels' weights of dy channel k at tap (r, s).
  const std::vector<float> wq = pixel_lane_weights(w, a.w.stride, G, CG, R, true);
  const int64_t w_k_step = R * 3 * CG;
  // dx channels [C0, C0 + CN) of one item's row, MV vectors of dy columns a tile.
  // Every loop over the sums is unrolled (no break) and the per-kernel-row work hoisted: GCC had
  // kept even / odd in a stack array, storing all 2 CG vectors after every dy channel (16 zmm
  // stores per 24 FMAs at CG = 8), and divided for the dy row per channel; Zen 4 stores a zmm in
  // two cycles. In-process A/B, same bits, Zen 4, 2 threads, NCHW: ResNeXt 256 @56 /2 g32 N=1
  // 0.455 -> 0.218 ms (torch 0.33), N=8 4.01 -> 1.98; 128 @56 /2 1.67x; 64 @56 /2 g16 1.57x.
  const int64_t dy_c_step = ds[1];
  const auto pass = [&]<int C0, int CN>(const float* dy_g, const float* w_g, float* xr, const int64_t* taps,
                                        int64_t n_taps) {
    constexpr int MV = CN <= (L == 16 ? 4 : 2) ? 2 : 1, kPairs = L * MV;
    const auto tile = [&]<bool kMasked>(int64_t j0) {
      typename V::mask in0[MV], in1[MV];
#pragma GCC unroll 2
      for (int m = 0; m < MV; ++m) {
        if constexpr (kMasked) {
          in0[m] = V::lanes_between(0, p.Q - (j0 + L * m));
          in1[m] = V::lanes_between(0, p.Q - (j0 + L * m + 1));
        }
      }
      typename V::type even[CN][MV], odd[CN][MV];
#pragma GCC unroll 8
      for (int c = 0; c < CN; ++c)
#pragma GCC unroll 2
        for (int m = 0; m < MV; ++m) even[c][m] = odd[c][m] = V::zero();
      for (int64_t i = 0; i < n_taps; ++i) {
        const float* row = dy_g + taps[2 * i] + j0;
        const float* wr = w_g + taps[2 * i + 1] + C0;
        for (int64_t k = 0; k < CG; ++k, row += dy_c_step, wr += w_k_step) {
          typename V::type d0[MV], d1[MV];
#pragma GCC unroll 2
          for (int m = 0; m < MV; ++m) {
            d0[m] = kMasked ? V::load_masked(row + L * m, in0[m]) : V::load(row + L * m);
            d1[m] = kMasked ? V::load_masked(row + L * m + 1, in1[m]) : V::load(row + L * m + 1);
          }
#pragma GCC unroll 8
          for (int c = 0; c < CN; ++c) {
            const typename V::type w0 = V::broadcast(wr + c), w1 = V::broadcast(wr + CG + c),
                                   w2 = V::broadcast(wr + 2 * CG + c);
#pragma GCC unroll 2
            for (int m = 0; m < MV; ++m) {
              even[c][m] = V::fmadd(d0[m], w1, even[c][m]);
              odd[c][m] = V::fmadd(d1[m], w0, V::fmadd(d0[m], w2, odd[c][m]));
            }
          }
        }
      }
#pragma GCC unroll 8
      for (int c = 0; c < CN; ++c)
#pragma GCC unroll 2
        for (int m = 0; m < MV; ++m) {
          typename V::type lo, hi;
          interleave_lanes(even[c][m], odd[c][m], lo, hi);
          float* out = xr + (C0 + c) * xs[1] + 2 * (j0 + L * m);
          if constexpr (kMasked) {
            const int64_t left = p.W - 2 * (j0 + L * m);  // dx columns from `out` on
            if (left >= 2 * L) {
              V::store(out, lo), V::store(out + L, hi);
            } else if (left > L) {
              V::store(out, lo), V::store_first(out + L, hi, int(left - L));
            } else if (left == L) {
              V::store(out, lo);
            } else if (left > 0) {
              V::store_first(out, lo, int(left));
            }
          } else {
            V::store(out, lo), V::store(out + L, hi);
          }
        }
    };
    int64_t j0 = 0;
    for (; j0 + kPairs < p.Q; j0 += kPairs) tile.template operator()<false>(j0);  // dy columns j0 + kPairs in
    for (; 2 * j0 < p.W; j0 += kPairs) tile.template operator()<true>(j0);
  };
  parallel_for(0, p.N * G * p.H, 2, [&](int64_t b, int64_t e) {
    // taps[2 i], taps[2 i + 1]: the offsets of the dy row and the weights of a dx row's i-th
    // kernel row that meets a dy row. Found once an item, not per tile: AVX2's tiles are short,
    // and the divisions in each cost it 1.13x (A/B, 256 @56 /2 N=1 0.311 -> 0.272 ms).
    std::vector<int64_t> taps(2 * R);
    for (int64_t item = b; item < e; ++item) {
      const int64_t h = item % p.H, g = item / p.H % G, n = item / (p.H * G);
      const float* dy_g = dy + n * ds[0] + g * CG * ds[1];
      const float* w_g = wq.data() + g * CG * w_k_step;
      float* xr = dx + n * xs[0] + g * CG * xs[1] + h * xs[2];
      int64_t n_taps = 0;
      for (int64_t r = 0; r < R; ++r) {
        const int64_t t = h + p.pad_h - r * p.dil_h;  // = dy row * stride_h
        if (t < 0 || t % p.stride_h != 0 || t / p.stride_h >= p.P) continue;
        taps[2 * n_taps] = t / p.stride_h * ds[2], taps[2 * n_taps + 1] = r * 3 * CG, ++n_taps;
      }
      for_channel_passes<CG, kPass>(
          [&]<int C0, int CN>() { pass.template operator()<C0, CN>(dy_g, w_g, xr, taps.data(), n_taps); });
    }
  });
}



// Whether the input gradient is a forward convolution of dy: at stride 1 every dx pixel takes dy
// through every tap, the filter flipped and each group's roles swapped, over top and left padding
// dil (R - 1) - pad (>= 0), so that the forward's output is dx's H x W.
inline bool dgrad_as_forward_apply(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  return p.stride_h == 1 && p.stride_w == 1 && p.pad_h <= p.dil_h * (p.R - 1) && p.pad_w <= p.dil_w * (p.S - 1);
}

// The stride-1 input gradient as conv2d_fprop_grouped_lanes of dy with the filter of dy's Kg
// inputs a group per dx channel, w'[g Cg + i][o][r][s] = w[g Kg + o][i][R - 1 - r][S - 1 - s]
// (C Kg R S elements). An NCHW dy then takes the forward's NCHW paths, pixel lanes at 4 or fewer
// a group and the group blocks at 8, where grouped_lanes_dgrad had packed it channels-last,
// padded (in-process A/B, arms in random order, Xeon, 2 threads, NCHW, 32 groups, AVX-512 /
// AVX2: 8 a group 256 @28 N=8 2.83 -> 1.85 ms / 1.03x, N=1 1.27x / 0.99x; 4 a group 128 @56 N=8
// 3.86 -> 2.07 / 1.69x, N=1 1.64x / 1.37x; 2 a group 64 @56 N=8 1.66x / 1.61x, N=1 1.43x /
// 1.18x; bfloat16 N=8 NCHW 1.17-1.23x, channels_last 256 @28 1.02x, 128 @56 1.22x).
// forward(f): the forward that runs it (conv2d_fprop_grouped_lanes; the vdpbf16ps engine's
// grouped row tiles, conv2d_bf16dot_avx512.cpp).
template <typename T, class Forward>
bool dgrad_as_forward(const Conv2dDgradArgs& a, const Forward& forward) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups, R = p.R, S = p.S;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  std::vector<T> flipped(p.C * Kg * R * S);
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t i = 0; i < Cg; ++i)
      for (int64_t o = 0; o < Kg; ++o)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t s = 0; s < S; ++s)
            flipped[(((g * Cg + i) * Kg + o) * R + r) * S + s] =
                w[(g * Kg + o) * ws[0] + i * ws[1] + (R - 1 - r) * ws[2] + (S - 1 - s) * ws[3]];
  Conv2dFpropArgs f;
  f.p = p;
  f.p.C = p.K, f.p.H = p.P, f.p.W = p.Q, f.p.K = p.C, f.p.P = p.H, f.p.Q = p.W;
  f.p.pad_h = p.dil_h * (R - 1) - p.pad_h, f.p.pad_w = p.dil_w * (S - 1) - p.pad_w;
  f.x = a.dy;
  f.w = ConstView4{flipped.data(), {Kg * R * S, R * S, S, 1}};
  f.bias = nullptr;
  f.y = a.dx;
  return forward(f);  // false (nothing done) where the forward leaves the layer
}

template <typename T>
inline bool conv2d_dgrad_grouped_lanes(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.dtype != dtype_of<T>()) return false;
  if (grouped_pixel_lanes_dgrad2_apply(a)) {
    with_group_channels(Cg, [&]<int CG>() { grouped_pixel_lanes_dgrad2<CG>(a); });
    return true;
  }
  if (!grouped_lanes_apply(p.groups, Kg, Cg)) return false;
  // Stride 1: the forward's layouts and tiles (a float32 channels_last dy stays with
  // grouped_lanes_dgrad, whose row tiles read it in place: 0.94-1.15x through the forward).
  if (dgrad_as_forward_apply(a) && !(std::is_same_v<T, float> && a.dy.stride[1] == 1) &&
      dgrad_as_forward<T>(a, conv2d_fprop_grouped_lanes<T>))
    return true;
  with_group_channels(Kg, [&]<int KG>() { grouped_lanes_dgrad<T, KG>(a); });
  return true;
}

// Taps per weight-gradient item: its CG TS sums stay in registers next to the CG lane indices.
template <int CG>
constexpr int grouped_wgrad_taps() {
  return std::clamp((VecF32::kLanes == 16 ? 20 : 8) / CG, 1, 9);
}

// Output rows per weight-gradient chunk: the chunk's x rows and dy rows stay in the L2 while the
// items sweep them.
constexpr int64_t kGroupedChunkRows = 8;

// Chunks of kGroupedChunkRows over the weight gradient's fixed splits, each split's items taken in parts as
// well, so that layers of few output rows still give every thread work (N=1, 28 rows: 3 splits
// for 2 threads, a third of the time one idle): body(split, item_begin, item_end, chunk_begin,
// chunk_end, first) for each chunk of the split's rows in order, as before, so each item's sums
// are the same.
// The parts make splits x parts a whole number per thread where items allow (the sums do not
// depend on the parts): 7 splits x 3 parts gave one of 2 threads 11 units, the other 10 (ResNeXt
// 128 @56 at N=1: the first thread's chunks took 1.19x the other's).
template <typename Body>
void for_split_items(int64_t rows, int64_t splits, int64_t items, const Body& body) {
  int64_t parts = std::clamp<int64_t>((16 + splits - 1) / splits, 1, items);
  for (const int64_t threads = parallel_threads(); (splits * parts) % threads != 0 && parts < items;) ++parts;
  parallel_for(0, splits * parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; ++u) {
      const int64_t split = u / parts, part = u % parts;
      const int64_t item0 = items * part / parts, item1 = items * (part + 1) / parts;
      const int64_t row0 = rows * split / splits, row1 = rows * (split + 1) / splits;
      for (int64_t c = row0; c < row1; c += kGroupedChunkRows)
        body(split, item0, item1, c, std::min(row1, c + kGroupedChunkRows), c == row0);
    }
  });
}

// The weight gradients' running totals: for each fixed split of the output rows and each item,
// `slots` vectors of sums. run(body) is for_split_items over them; add() takes a chunk's sums
// (the split's first chunk stores them); store_grouped_wgrad adds the splits in split order.
struct GroupedWgradTotals {
  GroupedWgradTotals(int64_t rows_, int64_t items_, int64_t slots_)
      : rows(rows_), splits(std::clamp<int64_t>(rows_ / kGroupedChunkRows, 1, 32)), items(items_), slots(slots_),
        sums(splits * items * slots * VecF32::kLanes) {}  // rows > 0: the op fills an empty batch's dW itself
  template <typename Body>
  void run(const Body& body) const {
    for_split_items(rows, splits, items, body);
  }
  float* at(int64_t split, int64_t item, int64_t slot) const {
    return sums.data() + ((split * items + item) * slots + slot) * VecF32::kLanes;
  }
  [[gnu::always_inline]] void add(int64_t split, int64_t item, int64_t slot, typename VecF32::type v, bool first) const {
    float* p = at(split, item, slot);
    VecF32::store(p, first ? v : VecF32::add(VecF32::load(p), v));
  }
  const int64_t rows, splits, items, slots;
  const Scratch sums;
};

// The weight gradient's operands: x channels-last, zero-padded (Hp x Wp pixels of ps slots), and
// dy channels-last with K rounded up to whole blocks of zeros (ks slots), each pixel q of output
// row np at dy + (np Q + q) ks. A dense channels_last float32 dy of whole blocks is read in place.
// With x_rows_in_place_ok (grouped_lanes_wgrad_rows), so is a float32 channels_last x whose
// padding is at most a column a side: x_in_place, then x_row() finds the rows.
template <typename T, int CG>
struct GroupedWgradOperands {
  GroupedWgradOperands(const Conv2dWgradArgs& a, bool x_rows_in_place_ok)
      : p(a.p),
        Hp(std::max(p.H + 2 * p.pad_h, (p.P - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1)),
        Wp(std::max(p.W + 2 * p.pad_w, (p.Q - 1) * p.stride_w + (p.S - 1) * p.dil_w + 1)),
        ps(grouped_pixel_slots(p.C, p.K, CG, p.K / p.groups)),
        ks((p.K + VecF32::kLanes - 1) / VecF32::kLanes * VecF32::kLanes),
        x_in_place(std::is_same_v<T, float> && x_rows_in_place_ok && a.x.stride[1] == 1 && ps == p.C &&
                   p.pad_w <= 1 && Wp == p.W + 2 * p.pad_w && a.x.stride[3] <= (int64_t(1) << 16)),
        dy_in_place(std::is_same_v<T, float> && ks == p.K && a.dy.stride[1] == 1 && a.dy.stride[3] == p.K &&
                    a.dy.stride[2] == p.Q * p.K && (p.N == 1 || a.dy.stride[0] == p.P * p.Q * p.K)),
        x(static_cast<const T*>(a.x.data)),
        xs(a.x.stride),
        xp(x_in_place ? ScratchOf<float>(0) : pack_activations(x, xs, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, Hp, Wp, 1, 0, ps)),
        dyp(dy_in_place ? ScratchOf<float>(0)
                        : pack_activations(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K, p.P, p.Q, 0, 0, p.P,
                                           p.Q, 1, 0, ks)),
        zero_row(x_in_place ? Wp * xs[3] + VecF32::kLanes : 0, 0.0f),
        dy(dy_in_place ? reinterpret_cast<const float*>(a.dy.data) : dyp.data()) {}
  // Pixel 0 of x's row h (-pad_h <= h < H + pad_h, padded coordinates less the padding) of image n,
  // column c at + c x_col_step: the zero row where h lies outside the image (x_in_place).
  const float* x_row(int64_t n, int64_t h) const {
    if (!x_in_place) return xp.data() + (n * Hp + h + p.pad_h) * Wp * ps;
    if (h < 0 || h >= p.H) return zero_row.data();
    return reinterpret_cast<const float*>(x) + n * xs[0] + h * xs[2] - p.pad_w * xs[3];
  }
  int64_t x_col_step() const { return x_in_place ? xs[3] : ps; }

  const Conv2dProblem& p;
  const int64_t Hp, Wp, ps, ks;
  const bool x_in_place, dy_in_place;
  const T* x;
  const int64_t* xs;
  const ScratchOf<float> xp, dyp;
  const std::vector<float> zero_row;
  const float* const dy;
};

// Adds the fixed splits' totals in split order and stores each slot's lanes into dw: slot_tap(item, slot, &j, &r, &s) names the weight element of lane 0's
// output channel (block item_block(item)), or returns false for a slot past the taps.
template <typename T, typename ItemBlock, typename SlotTap>
void store_grouped_wgrad(const Conv2dWgradArgs& a, const GroupedWgradTotals& totals, const ItemBlock& item_block,
                         const SlotTap& slot_tap) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t* ws = a.dw.stride;
  parallel_for(0, totals.items, 1, [&](int64_t b, int64_t e) {
    alignas(64) float lanes[L];
    for (int64_t item = b; item < e; ++item) {
      const int64_t kb = item_block(item), olen = std::min<int64_t>(L, a.p.K - kb * L);
      for (int64_t slot = 0; slot < totals.slots; ++slot) {
        int64_t j, r, s;
        if (!slot_tap(item, slot, &j, &r, &s)) continue;
        typename V::type sum = V::load(totals.at(0, item, slot));
        for (int64_t split = 1; split < totals.splits; ++split) sum = V::add(sum, V::load(totals.at(split, item, slot)));
        V::store(lanes, sum);
        for (int64_t l = 0; l < olen; ++l) store_from(dw + (kb * L + l) * ws[0] + j * ws[1] + r * ws[2] + s * ws[3], lanes[l]);
      }
    }
  });
}

// dw[k][j][r][s] = sum over (n, p, q) of dy[n][k][p][q] x[n][k / Kg Cg + j][p sh + r dh - pad_h][q sw + s dw - pad_w]:
// output channels as lanes (the forward's blocks), x's vector of the block's inputs permuted per
// j as in the forward. An item is a block and TS consecutive taps; its TS CG vector sums stay in
// registers over a chunk of output rows and are added to their split's totals; the fixed splits'
// totals are added in split order at the end (results independent of the thread count).
template <typename T, int CG>
void grouped_lanes_wgrad(const Conv2dWgradArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes, TS = grouped_wgrad_taps<CG>();
  constexpr int64_t kSlots = int64_t(TS) * CG;
  const Conv2dProblem& p = a.p;
  const GroupedWgradOperands<T, CG> ops(a, false);
  const int64_t Kg = p.K / p.groups, nkb = (p.K + L - 1) / L, block_inputs = L / Kg * CG;
  const int64_t RS = p.R * p.S, tap_chunks = (RS + TS - 1) / TS, items = nkb * tap_chunks;
  const int64_t Wp = ops.Wp, ps = ops.ps, ks = ops.ks;
  std::vector<int64_t> tap_offset(RS);
  for (int64_t t = 0; t < RS; ++t) tap_offset[t] = (t / p.S * p.dil_h * Wp + t % p.S * p.dil_w) * ps;
  const GroupLaneIndex<CG> index(Kg);
  const GroupedWgradTotals totals(p.N * p.P, items, kSlots);
  totals.run([&](int64_t split, int64_t item0, int64_t item1, int64_t chunk, int64_t chunk_end, bool first) {
    for (int64_t item = item0; item < item1; ++item) {
      const int64_t kb = item / tap_chunks, t0 = item % tap_chunks * TS;
      const int64_t tn = std::min<int64_t>(TS, RS - t0);
      const float* xt[TS];
#pragma GCC unroll 9
      for (int t = 0; t < TS; ++t) xt[t] = ops.xp.data() + kb * block_inputs + tap_offset[t < tn ? t0 + t : t0];
      typename V::type acc[TS][CG];
#pragma GCC unroll 9
      for (int t = 0; t < TS; ++t)
#pragma GCC unroll 8
        for (int j = 0; j < CG; ++j) acc[t][j] = V::zero();
      for (int64_t np = chunk; np < chunk_end; ++np) {
        const int64_t n = np / p.P, pp = np % p.P;
        const int64_t x_row = (n * ops.Hp + pp * p.stride_h) * Wp * ps, x_step = p.stride_w * ps;
        const float* dq = ops.dy + np * p.Q * ks + kb * L;
        for (int64_t q = 0; q < p.Q; ++q) {
          const typename V::type g = V::load(dq + q * ks);
          const int64_t at = x_row + q * x_step;
#pragma GCC unroll 9
          for (int t = 0; t < TS; ++t) {
            if (t >= tn) break;
            const typename V::type xv = V::load(xt[t] + at);
#pragma GCC unroll 8
            for (int j = 0; j < CG; ++j) acc[t][j] = V::fmadd(V::permute(xv, index.lanes[j]), g, acc[t][j]);
          }
        }
      }
#pragma GCC unroll 9
      for (int t = 0; t < TS; ++t)
#pragma GCC unroll 8
        for (int j = 0; j < CG; ++j) totals.add(split, item, t * CG + j, acc[t][j], first);
    }
  });
  store_grouped_wgrad<T>(
      a, totals, [&](int64_t item) { return item / tap_chunks; },
      [&](int64_t item, int64_t slot, int64_t* j, int64_t* r, int64_t* s) {
        const int64_t tap = item % tap_chunks * TS + slot / CG;
        if (slot / CG >= std::min<int64_t>(TS, RS - item % tap_chunks * TS)) return false;
        *j = slot % CG, *r = tap / p.S, *s = tap % p.S;
        return true;
      });
}

// Input channels per item of the weight gradient's row tiles: their 3 JH sums and JH lane indices
// stay in registers (0: CG has no such split).
template <int CG>
constexpr int grouped_wgrad_row_inputs() {
  return CG <= 4 ? CG : (CG % 2 == 0 && CG / 2 <= 4 ? CG / 2 : 0);
}

// The weight gradient where each kernel row is 3 consecutive taps at column stride SW (1 or 2),
// AVX-512: as in the forward's row tiles, a permuted x vector serves every tap of its row that
// reads it (stride 1: column c feeds output pixels c, c - 1, c - 2 through taps s = 0, 1, 2; stride
// 2: even columns two taps, odd ones one), where grouped_lanes_wgrad took a permute per FMA and
// both share port 5. An item is a block, a kernel row and JH of its group's input channels: 3 JH
// sums in registers, dy read by the FMAs from memory. Splits and totals as there. x and dy are
// read in place where GroupedWgradOperands allows (the two copies had taken more time than the
// FMAs at N=8). Xeon, 2 threads, channels_last, ResNeXt's 32 groups, ms before -> rows -> rows in
// place (separate runs): 256 @28 N=8 2.32 -> 1.96 -> 1.32, N=1 0.322 -> 0.291 -> 0.226;
// 256 @56 /2 N=8 4.73 -> 2.20, N=1 0.630 -> 0.369; 128 @56 N=8 2.61 -> 1.43, N=1 0.398 -> 0.180.
// kInLanes (AVX2, group_lanes_in_128): whole groups an item, in-lane shuffles, no indices.
template <typename T, int CG, int SW, bool kInLanes = false>
void grouped_lanes_wgrad_rows(const Conv2dWgradArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes, JH = grouped_wgrad_row_inputs<CG>(), halves = CG / JH;
  constexpr int64_t kSlots = 3 * JH;
  const Conv2dProblem& p = a.p;
  const GroupedWgradOperands<T, CG> ops(a, true);
  const int64_t Kg = p.K / p.groups, nkb = (p.K + L - 1) / L, block_inputs = L / Kg * CG;
  const int64_t items = nkb * p.R * halves, Q = p.Q, ps = ops.x_col_step(), ks = ops.ks;
  const int64_t last_column = SW * (Q - 1) + 2;  // in padded coordinates
  const GroupLaneIndex<CG> index(Kg);
  const GroupedWgradTotals totals(p.N * p.P, items, kSlots);
  totals.run([&](int64_t split, int64_t item0, int64_t item1, int64_t chunk, int64_t chunk_end, bool first) {
    for (int64_t item = item0; item < item1; ++item) {
      const int64_t kb = item / (p.R * halves), r = item / halves % p.R, j0 = item % halves * JH;
      typename V::index lane[kInLanes ? 1 : JH];
      if constexpr (!kInLanes) {
#pragma GCC unroll 4
        for (int j = 0; j < JH; ++j) lane[j] = index.lanes[j0 + j];
      }
      // x's vector with lane l holding its group's channel j0 + j (kInLanes: JH = CG, j0 = 0).
      const auto permute = [&](typename V::type xv, int j) [[gnu::always_inline]] {
        if constexpr (kInLanes) return group_channel_in_lanes<CG>(xv, j);
        else return V::permute(xv, lane[j]);
      };
      typename V::type acc[3][JH];
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s)
#pragma GCC unroll 4
        for (int j = 0; j < JH; ++j) acc[s][j] = V::zero();
      for (int64_t np = chunk; np < chunk_end; ++np) {
        const int64_t n = np / p.P, pp = np % p.P;
        const float* xr = ops.x_row(n, pp * p.stride_h + r * p.dil_h - p.pad_h) + kb * block_inputs;
        const float* g = ops.dy + np * Q * ks + kb * L;
        // Column c: acc[s] += x(c) g(q) for each tap s with c = SW q + s, 0 <= q < Q. Read in place,
        // x's columns -1 and W are zero vectors: only the first and last columns can be those, and
        // only these peeled ones come here (the loops' columns lie inside with pad_w <= 1).
        const auto column = [&](int64_t c) [[gnu::always_inline]] {
          const bool outside = ops.x_in_place && ((c == 0 && p.pad_w > 0) || (c == last_column && c - p.pad_w >= p.W));
          const typename V::type xv = outside ? V::zero() : V::load(xr + c * ps);
#pragma GCC unroll 4
          for (int j = 0; j < JH; ++j) {
            const typename V::type v = permute(xv, j);
#pragma GCC unroll 3
            for (int s = 0; s < 3; ++s) {
              const int64_t d = c - s;
              if (d >= 0 && d % SW == 0 && d / SW < Q) acc[s][j] = V::fmadd(v, V::load(g + d / SW * ks), acc[s][j]);
            }
          }
        };
        if constexpr (SW == 1) {  // columns 2 .. Q - 1 feed all three taps
          column(0);
          if (Q >= 1) column(1);
          for (int64_t c = 2; c < Q; ++c) {
            const typename V::type xv = V::load(xr + c * ps);
            const float* gc = g + c * ks;
#pragma GCC unroll 4
            for (int j = 0; j < JH; ++j) {
              const typename V::type v = permute(xv, j);
              acc[0][j] = V::fmadd(v, V::load(gc), acc[0][j]);
              acc[1][j] = V::fmadd(v, V::load(gc - ks), acc[1][j]);
              acc[2][j] = V::fmadd(v, V::load(gc - 2 * ks), acc[2][j]);
            }
          }
          for (int64_t c = std::max<int64_t>(Q, 2); c < Q + 2; ++c) column(c);
        } else {  // columns 2 q and 2 q + 1 of q = 1 .. Q - 1: taps 0 and 2, tap 1
          column(0);
          column(1);
          for (int64_t q = 1; q < Q; ++q) {
            const typename V::type xe = V::load(xr + 2 * q * ps), xo = V::load(xr + (2 * q + 1) * ps);
            const float* gq = g + q * ks;
#pragma GCC unroll 4
            for (int j = 0; j < JH; ++j) {
              const typename V::type ve = permute(xe, j), vo = permute(xo, j);
              acc[0][j] = V::fmadd(ve, V::load(gq), acc[0][j]);
              acc[2][j] = V::fmadd(ve, V::load(gq - ks), acc[2][j]);
              acc[1][j] = V::fmadd(vo, V::load(gq), acc[1][j]);
            }
          }
          column(2 * Q);
        }
      }
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s)
#pragma GCC unroll 4
        for (int j = 0; j < JH; ++j) totals.add(split, item, s * JH + j, acc[s][j], first);
    }
  });
  store_grouped_wgrad<T>(
      a, totals, [&](int64_t item) { return item / (p.R * halves); },
      [&](int64_t item, int64_t slot, int64_t* j, int64_t* r, int64_t* s) {
        *j = item % halves * JH + slot % JH, *r = item / halves % p.R, *s = slot / JH;
        return true;
      });
}

// Whether grouped_pixel_lanes_wgrad takes the layer: float32 NCHW rows (x and dy columns
// contiguous, neither channels-last), as many outputs as inputs a group (2 to 8), 3-wide filters
// over one column of padding at column stride 2, or at stride 1 with fewer than 8 a group: there
// ResNeXt's 256 @28 (28-column rows: AVX-512 tiles of 16 and a masked 12, and the per-row work)
// ran 0.91x on both ISAs at N=1 against grouped_lanes_wgrad_rows on packed copies (N=8 1.06x,
// AVX2 1.23x; Zen 4). It takes them from kPixelLanesWgradMinRows output rows (N P): in-process
// A/B, arms in random order, Xeon, 2 threads, 256 @28 x 32 groups, AVX-512 / AVX2: N=8 1.04 /
// 1.03x, N=4 1.08 / 1.01x (N=2 1.04 / 1.22x, N=1 1.34 / 1.25x on the Xeon, where Zen 4 lost).
constexpr int64_t kPixelLanesWgradMinRows = 112;
inline bool grouped_pixel_lanes_wgrad_apply(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups;
  return grouped_pixel_lanes_shape(p) && a.x.stride[3] == 1 && a.x.stride[1] != 1 && a.dy.stride[3] == 1 &&
         a.dy.stride[1] != 1 &&
         (p.stride_w == 2 || (p.stride_w == 1 && (Cg < 8 || p.N * p.P >= kPixelLanesWgradMinRows)));
}

// The grouped weight gradient on NCHW rows with dy pixels as lanes (float32): no channels-last
// copies of x and dy. dw[k][c][r][s] sums dy[k][p][q] x[c][p sh - ph + r dh][q SW - 1 + s]; per
// L dy columns of a row, the three taps' x vectors (SW 1: loads; SW 2: a row's even and odd
// columns, the odd ones a lane later for tap 0) meet the dy vectors of kPass of the group's
// outputs: 3 kPass FMAs per x vector built, the sums' lanes added up once at the end. A work item
// is one input channel and kernel row of a group, summing over every image and dy row; x rows
// outside are skipped, columns outside load as zeros (masked loads and FMAs in a row's last
// tile). AVX-512 takes a group's 8 outputs (24 sums) at once, AVX2 4 (12 of its 16 registers).
// In-process A/B against what ran before (x and dy packed channels-last, then
// grouped_lanes_wgrad_rows, or for 3, 5, 6 and 7 a group the general direct path), arms in
// random order, Zen 4, 2 threads, NCHW, 32 groups, AVX-512 / AVX2: 256 @56 /2 N=1 0.397 -> 0.303
// ms / 0.425 -> 0.348, N=8 4.55 -> 3.11 / 5.75 -> 3.81; 128 @56 /2 N=8 1.93 -> 1.06 / 2.08 ->
// 1.23; 128 @56 N=1 0.261 -> 0.247 / 0.331 -> 0.192, N=8 3.58 -> 2.41 / 3.86 -> 2.03; 3 a group
// (96 @56 /2, 96 @28) 8-11x. Passes of 4 or 3 outputs on AVX-512: 1.14-1.3x slower; 3 on AVX2
// level to 1.3x slower. (Runs of this machine drift 10-25% between processes; the ratios held.)
template <int CG, int SW>
void grouped_pixel_lanes_wgrad(const Conv2dWgradArgs& a) {
  using V = VecF32;
  using Vec = typename V::type;
  constexpr int L = V::kLanes, kPass = L == 16 ? 8 : 4;  // outputs a pass
  const Conv2dProblem& p = a.p;
  const float* x = static_cast<const float*>(a.x.data);
  const float* dy = static_cast<const float*>(a.dy.data);
  float* dw = static_cast<float*>(a.dw.data);
  const int64_t *xs = a.x.stride, *ds = a.dy.stride, *ws = a.dw.stride;
  const int64_t G = p.groups, R = p.R;
  const int64_t dy_k_step = ds[1];
  // Outputs [K0, K0 + KN) of the group of input channel c (x_c: its first image's plane, dy_g:
  // the group's first output's), kernel row r.
  const auto pass = [&]<int K0, int KN>(const float* x_c, const float* dy_g, int64_t r, float* dw_c) {
    Vec acc[KN][3];
#pragma GCC unroll 8
    for (int k = 0; k < KN; ++k)
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s) acc[k][s] = V::zero();
    const auto tile = [&]<bool kMasked>(const float* xr, const float* dyr, int64_t q0, Vec& before) {
      typename V::mask in{};
      if constexpr (kMasked) in = V::lanes_between(0, p.Q - q0);
      Vec xv[3];
      if constexpr (SW == 1) {
        xv[1] = kMasked ? V::load_masked(xr + q0, V::lanes_between(0, p.W - q0)) : V::load(xr + q0);
        xv[2] = kMasked ? V::load_masked(xr + q0 + 1, V::lanes_between(0, p.W - q0 - 1)) : V::load(xr + q0 + 1);
        xv[0] = lanes_up_one(xv[1], before);
        before = xv[1];
      } else {
        const Vec lo = kMasked ? V::load_masked(xr + 2 * q0, V::lanes_between(0, p.W - 2 * q0)) : V::load(xr + 2 * q0);
        const Vec hi = kMasked ? V::load_masked(xr + 2 * q0 + L, V::lanes_between(0, p.W - 2 * q0 - L))
                               : V::load(xr + 2 * q0 + L);
        deinterleave_lanes(lo, hi, xv[1], xv[2]);
        xv[0] = lanes_up_one(xv[2], before);
        before = xv[2];
      }
#pragma GCC unroll 8
      for (int k = 0; k < KN; ++k) {
        const float* d = dyr + k * dy_k_step + q0;
        const Vec dv = kMasked ? V::load_masked(d, in) : V::load(d);
#pragma GCC unroll 3
        for (int s = 0; s < 3; ++s)
          acc[k][s] = kMasked ? V::fmadd_masked(dv, xv[s], acc[k][s], in) : V::fmadd(dv, xv[s], acc[k][s]);
      }
    };
    for (int64_t n = 0; n < p.N; ++n)
      for (int64_t op = 0; op < p.P; ++op) {
        const int64_t h = op * p.stride_h - p.pad_h + r * p.dil_h;
        if (h < 0 || h >= p.H) continue;
        const float* xr = x_c + n * xs[0] + h * xs[2];
        const float* dyr = dy_g + n * ds[0] + K0 * dy_k_step + op * ds[2];
        Vec before = V::zero();  // x column -1: padding
        int64_t q0 = 0;
        // Whole tiles: L dy columns, and the x columns they read, inside the row.
        for (; q0 + L <= p.Q && (SW == 1 ? q0 + L < p.W : 2 * q0 + 2 * L <= p.W); q0 += L)
          tile.template operator()<false>(xr, dyr, q0, before);
        for (; q0 < p.Q; q0 += L) tile.template operator()<true>(xr, dyr, q0, before);
      }
#pragma GCC unroll 8
    for (int k = 0; k < KN; ++k)
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s) dw_c[(K0 + k) * ws[0] + s * ws[3]] = sum_lanes(acc[k][s]);
  };
  parallel_for(0, G * CG * R, 1, [&](int64_t b, int64_t e) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t r = item % R, c = item / R % CG, g = item / (R * CG);
      const float* x_c = x + (g * CG + c) * xs[1];
      const float* dy_g = dy + g * CG * ds[1];
      float* dw_c = dw + g * CG * ws[0] + c * ws[1] + r * ws[2];
      for_channel_passes<CG, kPass>([&]<int K0, int KN>() { pass.template operator()<K0, KN>(x_c, dy_g, r, dw_c); });
    }
  });
}

#if defined(__AVX512F__)
// The weight gradient of 8 inputs and 8 outputs a group with the forward's product lanes
// (grouped_product_lanes_fprop): lane l of vector kp sums dy's output k = 2 kp + l / 8 times x's
// input j = l % 8, so the lanes are dw's elements themselves and need no reduction. Per output
// pixel, four permutes of dy's broadcast octet give each vector its two outputs; per tap, x's
// octet is a broadcast load (no permute) and four FMAs take it. An item is a group and a kernel
// row: 4 S sums (S <= 3) in registers over a chunk of output rows, added to their split's totals
// (GroupedWgradTotals: the fixed splits make the sums independent of the thread count). x and dy
// are read in place; columns outside the image are skipped.
// bfloat16 only: grouped_lanes_wgrad_rows converts bfloat16 x and dy into float32 copies first
// (a fifth of its samples). In-process A/B against those rows, arms in random order, Xeon, 2
// threads, channels_last, 32 groups, bfloat16: 256 @56 /2 N=8 4.01 -> 1.87 ms, N=1 0.580 ->
// 0.243; 256 @28 N=8 2.13 -> 1.53. float32 lost (256 @56 /2 N=8 2.68 -> 3.11, N=1 0.361 ->
// 0.376; 256 @28 1.68 -> 1.80): its rows read x in place too, and each of this kernel's items
// re-reads its chunk's x lines, twice the bytes of bfloat16's.
template <typename T>
inline bool grouped_product_lanes_wgrad_takes(const Conv2dProblem& p) {
  return std::is_same_v<T, bf16> && p.dtype == dtype_of<T>() && p.groups > 1 && p.C == 8 * p.groups &&
         p.K == 8 * p.groups && p.S <= 3 && p.stride_w <= 2;
}

template <typename T>
void grouped_product_lanes_wgrad(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const T* x = static_cast<const T*>(a.x.data);
  const T* dy = static_cast<const T*>(a.dy.data);
  const int64_t *xs = a.x.stride, *ds = a.dy.stride;
  const int64_t G = p.groups, S = p.S;
  const auto [q_lo, q_hi] = columns_inside(p);
  // Lanes 0-7 take output 2 kp of dy's octet, lanes 8-15 output 2 kp + 1.
  __m512i pick[4];
  for (int kp = 0; kp < 4; ++kp)
    pick[kp] = _mm512_setr_epi32(2 * kp, 2 * kp, 2 * kp, 2 * kp, 2 * kp, 2 * kp, 2 * kp, 2 * kp, 2 * kp + 1, 2 * kp + 1,
                                 2 * kp + 1, 2 * kp + 1, 2 * kp + 1, 2 * kp + 1, 2 * kp + 1, 2 * kp + 1);
  const GroupedWgradTotals totals(p.N * p.P, G * p.R, 12);
  totals.run([&](int64_t split, int64_t item0, int64_t item1, int64_t chunk, int64_t chunk_end, bool first) {
    for (int64_t item = item0; item < item1; ++item) {
      const int64_t g = item / p.R, r = item % p.R;
      __m512 acc[3][4];
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s)
#pragma GCC unroll 4
        for (int kp = 0; kp < 4; ++kp) acc[s][kp] = _mm512_setzero_ps();
      for (int64_t np = chunk; np < chunk_end; ++np) {
        const int64_t n = np / p.P, pp = np % p.P, h = pp * p.stride_h - p.pad_h + r * p.dil_h;
        if (h < 0 || h >= p.H) continue;
        const T* xr = x + n * xs[0] + h * xs[2] + 8 * g - p.pad_w * xs[3];
        const T* dr = dy + n * ds[0] + pp * ds[2] + 8 * g;
        const auto pixel = [&]<bool kEdge>(int64_t q) [[gnu::always_inline]] {
          const __m512 d = broadcast_octet(dr + q * ds[3]);
          __m512 dk[4];
#pragma GCC unroll 4
          for (int kp = 0; kp < 4; ++kp) dk[kp] = _mm512_permutexvar_ps(pick[kp], d);
#pragma GCC unroll 3
          for (int s = 0; s < 3; ++s) {
            if (s >= S) break;
            const int64_t c = q * p.stride_w + s * p.dil_w;  // padded coordinates
            if constexpr (kEdge) {
              if (c < p.pad_w || c - p.pad_w >= p.W) continue;
            }
            const __m512 v = broadcast_octet(xr + c * xs[3]);
#pragma GCC unroll 4
            for (int kp = 0; kp < 4; ++kp) acc[s][kp] = _mm512_fmadd_ps(v, dk[kp], acc[s][kp]);
          }
        };
        int64_t q = 0;
        for (; q < q_lo; ++q) pixel.template operator()<true>(q);
        for (; q < q_hi; ++q) pixel.template operator()<false>(q);
        for (; q < p.Q; ++q) pixel.template operator()<true>(q);
      }
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s)
#pragma GCC unroll 4
        for (int kp = 0; kp < 4; ++kp) totals.add(split, item, s * 4 + kp, acc[s][kp], first);
    }
  });
  // dw[8 g + 2 kp + l / 8][l % 8][r][s] from lane l of slot (s, kp), the splits added in order.
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t* ws = a.dw.stride;
  parallel_for(0, totals.items, 1, [&](int64_t b, int64_t e) {
    alignas(64) float lanes[16];
    for (int64_t item = b; item < e; ++item) {
      const int64_t g = item / p.R, r = item % p.R;
      for (int64_t slot = 0; slot < 4 * S; ++slot) {
        __m512 sum = _mm512_loadu_ps(totals.at(0, item, slot));
        for (int64_t split = 1; split < totals.splits; ++split) sum = _mm512_add_ps(sum, _mm512_loadu_ps(totals.at(split, item, slot)));
        _mm512_storeu_ps(lanes, sum);
        const int64_t s = slot / 4, kp = slot % 4;
        for (int l = 0; l < 16; ++l)
          store_from(dw + (8 * g + 2 * kp + l / 8) * ws[0] + l % 8 * ws[1] + r * ws[2] + s * ws[3], lanes[l]);
      }
    }
  });
}
#endif

#if defined(__AVX512F__)
// grouped_product_lanes_wgrad on any x and dy: NCHW ones through channels-last copies. In-process
// A/B against grouped_lanes_wgrad_rows (on float32 copies), arms in random order, Zen 5, 2
// threads, ResNeXt's 256 @56 /2 x 32 groups NCHW bfloat16: N=8 1.55-1.59x, N=2 1.21x.
template <typename T>
void grouped_product_lanes_wgrad_any_layout(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  Conv2dWgradArgs f = a;
  std::optional<ChannelsLastCopy<T>> x_copy, dy_copy;
  if (a.x.stride[1] != 1) {
    x_copy.emplace(a.x, p.N, p.C, p.H, p.W);
    f.x = x_copy->view;
  }
  if (a.dy.stride[1] != 1) {
    dy_copy.emplace(a.dy, p.N, p.K, p.P, p.Q);
    f.dy = dy_copy->view;
  }
  grouped_product_lanes_wgrad<T>(f);
}
#endif

template <typename T>
inline bool conv2d_wgrad_grouped_lanes(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.dtype != dtype_of<T>()) return false;
#if defined(__AVX512F__)
  if (grouped_product_lanes_wgrad_takes<T>(p)) {
    grouped_product_lanes_wgrad_any_layout<T>(a);
    return true;
  }
#endif
  if (grouped_pixel_lanes_wgrad_apply(a)) {
    with_group_channels(Cg, [&]<int CG>() {
      if (p.stride_w == 1) grouped_pixel_lanes_wgrad<CG, 1>(a);
      else grouped_pixel_lanes_wgrad<CG, 2>(a);
    });
    return true;
  }
  if (!grouped_lanes_apply(p.groups, Cg, Kg)) return false;
  const bool three_tap_rows = p.S == 3 && p.dil_w == 1 && (p.stride_w == 1 || p.stride_w == 2);
  with_group_channels(Cg, [&]<int CG>() {
    if constexpr (VecF32::kLanes == 16 && grouped_wgrad_row_inputs<CG>() > 0) {
      if (three_tap_rows && p.stride_w == 1) return grouped_lanes_wgrad_rows<T, CG, 1>(a);
      if (three_tap_rows) return grouped_lanes_wgrad_rows<T, CG, 2>(a);
    }
    // AVX2: 3 CG sums and CG lane indices outgrow 16 registers (with CG / 2 inputs an item, in
    // place of 2 taps, the row tiles ran 0.94-1.06x); groups within 128-bit lanes need no
    // indices: in-process A/B against grouped_lanes_wgrad, arms in random order, Zen 4, 2
    // threads, 128 @56 g32 N=1 NCHW 1.29x, channels_last 1.62x, N=8 1.83x. (The in-lane shuffle
    // in place of the index permute, alone: 1.09-1.11x in grouped_lanes_wgrad, 0.96-0.97x in the
    // forward's row tiles, both ISAs.)
    if constexpr (VecF32::kLanes == 8 && (CG == 2 || CG == 4)) {
      if (three_tap_rows && group_lanes_in_128<CG>(Kg)) {
        if (p.stride_w == 1) return grouped_lanes_wgrad_rows<T, CG, 1, true>(a);
        return grouped_lanes_wgrad_rows<T, CG, 2, true>(a);
      }
    }
    grouped_lanes_wgrad<T, CG>(a);
  });
  return true;
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
