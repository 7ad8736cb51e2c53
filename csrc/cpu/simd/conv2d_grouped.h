// Grouped convolutions of few channels per group (ResNeXt's 32 groups of 4 channels, a channel
// multiplier's 1 -> 2): forward, input gradient (stride 1) and weight gradient, for float32 and
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
// N=1 0.09x PyTorch forward, 0.04x weight gradient.)
#pragma once
#include <algorithm>
#include <cstdint>
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
  switch (Cg) {
    case 1: return body.template operator()<1>();
    case 2: return body.template operator()<2>();
    case 3: return body.template operator()<3>();
    case 4: return body.template operator()<4>();
    case 5: return body.template operator()<5>();
    case 6: return body.template operator()<6>();
    case 7: return body.template operator()<7>();
    case 8: return body.template operator()<8>();
  }
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
    for (int64_t item = b; item < e; ++item) {
      const int64_t kb = item % nkb, i0 = item / nkb * MR, olen = std::min<int64_t>(L, K - kb * L);
      const int m = int(std::min<int64_t>(MR, pixels - i0));
      if (i0 != offsets_of) {
        pixel_offsets(d, x, ys, i0, m, x_off, y_off);
        for (int mi = m; mi < MR; ++mi) x_off[mi] = x_off[0];  // computed, not stored
        row_run = m >= 2;
        for (int mi = 1; mi < m; ++mi) row_run = row_run && y_off[mi] == y_off[mi - 1] + 1;
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
      TOut* yb = y + kb * L * ys[1];
      if (ys[1] == 1 && olen == L) {
#pragma GCC unroll 24
        for (int mi = 0; mi < MR; ++mi)
          if (mi < m) V::store(yb + y_off[mi], acc[mi]);
        continue;
      }
#pragma GCC unroll 24
      for (int mi = 0; mi < MR; ++mi) V::store(tile + mi * L, acc[mi]);
      store_tile<MR, L>(tile, m, olen, yb, y_off, ys, row_run);
    }
  });
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

// Runs y (N x Kout x P x Q, strides ys) = conv(x (N x Cin x H x W, strides xs), weight) with
// groups, stride, padding and dilation as given: x packed channels-last and padded, then the tiles.
template <typename T, int CG, typename Weight>
void grouped_lanes_run(const T* x, const int64_t xs[4], int64_t N, int64_t Cin, int64_t H, int64_t W, int64_t Kout,
                       int64_t groups, int64_t R, int64_t S, int64_t P, int64_t Q, int64_t stride_h, int64_t stride_w,
                       int64_t pad_h, int64_t pad_w, int64_t dil_h, int64_t dil_w, const Weight& weight,
                       const float* bias, T* y, const int64_t ys[4]) {
  constexpr int64_t L = VecF32::kLanes;
  const int64_t Kg = Kout / groups;
  const int64_t Hp = std::max(H + 2 * pad_h, (P - 1) * stride_h + (R - 1) * dil_h + 1);
  const int64_t Wp = std::max(W + 2 * pad_w, (Q - 1) * stride_w + (S - 1) * dil_w + 1);
  const int64_t ps = grouped_pixel_slots(Cin, Kout, CG, Kg);
  ScratchOf<float> packed{0};
  NhwcViewOf<float> xv;
  bool in_place = false;
  if constexpr (std::is_same_v<T, float>) in_place = ps == Cin && xs[1] == 1 && pad_h == 0 && pad_w == 0;
  if (in_place) {
    xv = {reinterpret_cast<const float*>(x), xs[0], xs[2], xs[3]};
  } else {
    packed = pack_activations(x, xs, N, Cin, H, W, pad_h, pad_w, Hp, Wp, 1, 0, ps);
    xv = {packed.data(), Hp * Wp * ps, Wp * ps, ps};
  }
  DirectConvPlan d{N, groups, CG, Kg, P, Q, stride_h * xv.sh, stride_w * xv.sw, {}};
  for (int64_t r = 0; r < R; ++r)
    for (int64_t s = 0; s < S; ++s) d.tap_offset.push_back(r * dil_h * xv.sh + s * dil_w * xv.sw);
  const std::vector<float> wp = grouped_lanes_weights<CG>(Kout, R * S, weight);
  std::vector<float> bias_blocks;
  if (bias) {
    bias_blocks.assign((Kout + L - 1) / L * L, 0.0f);
    std::copy(bias, bias + Kout, bias_blocks.begin());
  }
  grouped_lanes_conv<CG>(d, xv, wp.data(), bias ? bias_blocks.data() : nullptr, y, ys);
}

template <typename T>
inline bool conv2d_fprop_grouped_lanes(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.dtype != dtype_of<T>() || !grouped_lanes_apply(p.groups, Cg, Kg)) return false;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  const FloatBias<T> bias(a.bias, p.K);
  with_group_channels(Cg, [&]<int CG>() {
    const auto weight = [&](int64_t k, int j, int64_t t) {
      return load_acc(w + k * ws[0] + j * ws[1] + t / p.S * ws[2] + t % p.S * ws[3]);
    };
    grouped_lanes_run<T, CG>(static_cast<const T*>(a.x.data), a.x.stride, p.N, p.C, p.H, p.W, p.K, p.groups, p.R,
                             p.S, p.P, p.Q, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, weight,
                             bias.data(), static_cast<T*>(a.y.data), a.y.stride);
  });
  return true;
}

// The input gradient at stride 1 is a forward convolution of dy, padded by dil (R - 1) - pad, with
// the filter flipped and each group's roles swapped (Kg inputs, Cg outputs): here where Kg <= Cg.
template <typename T>
inline bool conv2d_dgrad_grouped_lanes(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  const int64_t pad_h = p.dil_h * (p.R - 1) - p.pad_h, pad_w = p.dil_w * (p.S - 1) - p.pad_w;
  if (p.dtype != dtype_of<T>() || !grouped_lanes_apply(p.groups, Kg, Cg) || p.stride_h != 1 || p.stride_w != 1 ||
      pad_h < 0 || pad_w < 0)
    return false;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  with_group_channels(Kg, [&]<int KG>() {
    // Output channel c (group c / Cg, its channel c % Cg) from input channel o of its group.
    const auto weight = [&](int64_t c, int o, int64_t t) {
      const int64_t k = c / Cg * Kg + o, r = p.R - 1 - t / p.S, s = p.S - 1 - t % p.S;
      return load_acc(w + k * ws[0] + c % Cg * ws[1] + r * ws[2] + s * ws[3]);
    };
    grouped_lanes_run<T, KG>(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K, p.P, p.Q, p.C, p.groups, p.R,
                             p.S, p.H, p.W, 1, 1, pad_h, pad_w, p.dil_h, p.dil_w, weight, nullptr,
                             static_cast<T*>(a.dx.data), a.dx.stride);
  });
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

// dw[k][j][r][s] = sum over (n, p, q) of dy[n][k][p][q] x[n][k / Kg Cg + j][p sh + r dh - pad_h][q sw + s dw - pad_w]:
// output channels as lanes (the forward's blocks), x's vector of the block's inputs permuted per
// j as in the forward. An item is a block and TS consecutive taps; its TS CG vector sums stay in
// registers over a chunk of output rows and are added to their split's totals; the fixed splits'
// totals are added in split order at the end (results independent of the thread count).
template <typename T, int CG>
void grouped_lanes_wgrad(const Conv2dWgradArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes, TS = grouped_wgrad_taps<CG>();
  constexpr int64_t kSums = int64_t(TS) * CG * L;
  const Conv2dProblem& p = a.p;
  const int64_t Kg = p.K / p.groups, nkb = (p.K + L - 1) / L, block_inputs = L / Kg * CG;
  const int64_t RS = p.R * p.S, tap_chunks = (RS + TS - 1) / TS, items = nkb * tap_chunks;
  const int64_t Hp = std::max(p.H + 2 * p.pad_h, (p.P - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1);
  const int64_t Wp = std::max(p.W + 2 * p.pad_w, (p.Q - 1) * p.stride_w + (p.S - 1) * p.dil_w + 1);
  const int64_t ps = grouped_pixel_slots(p.C, p.K, CG, Kg), ks = nkb * L;
  const ScratchOf<float> xp = pack_activations(static_cast<const T*>(a.x.data), a.x.stride, p.N, p.C, p.H, p.W,
                                               p.pad_h, p.pad_w, Hp, Wp, 1, 0, ps);
  // dy channels-last, K rounded up to whole blocks (zeros).
  const ScratchOf<float> dyp = pack_activations(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K, p.P, p.Q,
                                                0, 0, p.P, p.Q, 1, 0, ks);
  std::vector<int64_t> tap_offset(RS);
  for (int64_t t = 0; t < RS; ++t) tap_offset[t] = (t / p.S * p.dil_h * Wp + t % p.S * p.dil_w) * ps;
  const GroupLaneIndex<CG> index(Kg);
  const int64_t rows = p.N * p.P;
  const int64_t splits = std::clamp<int64_t>(rows / kGroupedChunkRows, 1, 32);
  Scratch totals(splits * items * kSums);  // rows > 0: the op fills an empty batch's dW itself
  parallel_for(0, splits, 1, [&](int64_t b, int64_t e) {
    for (int64_t split = b; split < e; ++split) {
      const int64_t row0 = rows * split / splits, row1 = rows * (split + 1) / splits;
      for (int64_t chunk = row0; chunk < row1; chunk += kGroupedChunkRows) {
        const int64_t chunk_end = std::min(row1, chunk + kGroupedChunkRows);
        for (int64_t item = 0; item < items; ++item) {
          const int64_t kb = item / tap_chunks, t0 = item % tap_chunks * TS;
          const int64_t tn = std::min<int64_t>(TS, RS - t0);
          const float* xt[TS];
#pragma GCC unroll 9
          for (int t = 0; t < TS; ++t) xt[t] = xp.data() + kb * block_inputs + tap_offset[t < tn ? t0 + t : t0];
          typename V::type acc[TS][CG];
#pragma GCC unroll 9
          for (int t = 0; t < TS; ++t)
#pragma GCC unroll 8
            for (int j = 0; j < CG; ++j) acc[t][j] = V::zero();
          for (int64_t np = chunk; np < chunk_end; ++np) {
            const int64_t n = np / p.P, pp = np % p.P;
            const int64_t x_row = (n * Hp + pp * p.stride_h) * Wp * ps, x_step = p.stride_w * ps;
            const float* dq = dyp.data() + np * p.Q * ks + kb * L;
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
          float* sums = totals.data() + (split * items + item) * kSums;
          const bool first = chunk == row0;
#pragma GCC unroll 9
          for (int t = 0; t < TS; ++t)
#pragma GCC unroll 8
            for (int j = 0; j < CG; ++j) {
              float* at = sums + (t * CG + j) * L;
              V::store(at, first ? acc[t][j] : V::add(V::load(at), acc[t][j]));
            }
        }
      }
    }
  });
  // The splits' totals in split order, into dw.
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t* ws = a.dw.stride;
  parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
    alignas(64) float lanes[L];
    for (int64_t item = b; item < e; ++item) {
      const int64_t kb = item / tap_chunks, t0 = item % tap_chunks * TS;
      const int64_t tn = std::min<int64_t>(TS, RS - t0), olen = std::min<int64_t>(L, p.K - kb * L);
      for (int64_t t = 0; t < tn; ++t)
        for (int j = 0; j < CG; ++j) {
          const int64_t at = item * kSums + (t * CG + j) * L;
          typename V::type sum = V::load(totals.data() + at);
          for (int64_t split = 1; split < splits; ++split)
            sum = V::add(sum, V::load(totals.data() + split * items * kSums + at));
          V::store(lanes, sum);
          const int64_t r = (t0 + t) / p.S, s = (t0 + t) % p.S;
          for (int64_t l = 0; l < olen; ++l)
            store_from(dw + (kb * L + l) * ws[0] + j * ws[1] + r * ws[2] + s * ws[3], lanes[l]);
        }
    }
  });
}

template <typename T>
inline bool conv2d_wgrad_grouped_lanes(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.dtype != dtype_of<T>() || !grouped_lanes_apply(p.groups, Cg, Kg)) return false;
  with_group_channels(Cg, [&]<int CG>() { grouped_lanes_wgrad<T, CG>(a); });
  return true;
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
