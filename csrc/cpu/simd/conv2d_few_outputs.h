// Forward and weight gradient of one-group convolutions with 1-7 output channels at column stride 1
// (a segmentation or depth head's 64 -> 1, an image decoder's 64 -> 3), for float32 and bfloat16. The direct
// engine's tiles run 8+ output channels as vector lanes; here the lanes are output columns.
// Included inside the ISA namespace after conv2d_direct.h (AVX2 and AVX-512 builds).
//
// x goes into zero-padded float rows, [hp][c][Wp] (the padding around; rows long enough for a
// whole block of columns), a band of rows at a time into each thread's window (ChannelRowWindow);
// the filter into [r][c][s][k]. A register tile is K outputs x NV
// vectors of one output row's columns: per tap (r, c, s), NV loads of x and K broadcasts of the
// weights feed K NV FMAs, summed in (r, c, s) order, so that a tile reads each input row's
// channels as one run. (Planes, [n][c][hp][Wp], had the tile hop a plane per channel: NCHW, N=8,
// 64 -> 7 @56 3.6 -> 1.8 ms, 64 -> 1 @112 5.2 -> 2.9 ms.)
//
// Measured against PyTorch, 2 threads, Zen 5, float32 (these layers had run the reference loops,
// 0.2-0.5x PyTorch): NCHW N=8 64 -> 1 @112 2.2-3.6x, 32 -> 2 @56 2.0x, 16 -> 4 @56 2.3x, 64 -> 7
// @56 1.2x; N=1 3 -> 3 @224 2.1x, 64 -> 3 @256 1.8-2.0x; channels_last 1.2-2.2x but 64 -> 7 0.65x.
// bfloat16 (PyTorch on vdpbf16ps): NCHW 1.1-1.5x, channels_last 0.7-1.0x.
//
// The same lanes serve the float weight gradient of few input channels into many outputs with
// NCHW dy (an image's first layer; conv2d_wgrad_few_inputs, at the end), at any stride: x's
// padded rows split into phases, so that a strided tap reads a run. The bfloat16 forward of a
// 3 x 3 stem at column stride 2 reads its rows so too (few_inputs_apply).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "conv2d_direct.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

constexpr int64_t kFewOutputsMax = 7;  // the direct engine takes 8+ (conv2d_fprop_direct)

// Vectors of columns per tile for K outputs: K NV accumulators and NV loaded x vectors within the
// registers (32 on AVX-512, 16 on AVX2).
constexpr int few_outputs_vectors(int K) {
  constexpr int regs = VecF32::kLanes == 16 ? 30 : 15;
  return std::clamp(regs / (K + 1), 1, 8);
}

// body.template operator()<K>() for the run-time output channel count K (1 to kFewOutputsMax).
template <typename Body>
void with_few_outputs(int64_t K, const Body& body) {
  with_small_count<kFewOutputsMax>(K, body);
}

// Input row h of image n (x: N x C x H x W, strides xs) as one zero-padded float row per channel:
// channel c's at rows + c Wp, column w at w + pad_w, zeros elsewhere (all zeros where h is outside
// [0, H)). NCHW rows go as row copies, channels_last pixels through 8 x 8 register transposes.
template <typename T>
inline void pack_channel_row(const T* x, const int64_t xs[4], int64_t n, int64_t h, int64_t C, int64_t H, int64_t W,
                             int64_t pad_w, int64_t Wp, float* rows) {
  if (h < 0 || h >= H) {
    std::fill(rows, rows + C * Wp, 0.0f);
    return;
  }
  for (int64_t c = 0; c < C; ++c) {
    std::fill(rows + c * Wp, rows + c * Wp + pad_w, 0.0f);
    std::fill(rows + c * Wp + pad_w + W, rows + (c + 1) * Wp, 0.0f);
  }
  const T* src = x + n * xs[0] + h * xs[2];
  float* dst = rows + pad_w;
  if (xs[3] == 1) {  // plane rows
    for (int64_t c = 0; c < C; ++c) convert_n(src + c * xs[1], dst + c * Wp, W);
    return;
  }
  // Channels contiguous at each pixel (channels_last): 8 pixels x 8 channels per register transpose.
  const int64_t c8 = xs[1] == 1 ? C - C % 8 : 0, w8 = W - W % 8;
  for (int64_t c = 0; c < c8; c += 8)
    for (int64_t w = 0; w < w8; w += 8) transpose8x8(src + w * xs[3] + c, xs[3], dst + c * Wp + w, Wp);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t w = (c < c8 ? w8 : 0); w < W; ++w) dst[c * Wp + w] = load_acc(src + c * xs[1] + w * xs[3]);
}

// A padded row of `phases` Wph floats (phases > 1) as its phases one after the other: column w
// moves to (w % phases) Wph + w / phases, so that a walk along the row at stride `phases` reads
// a run. tmp holds phases Wph floats.
inline void split_row_phases(float* row, int64_t phases, int64_t Wph, float* tmp) {
  std::copy(row, row + phases * Wph, tmp);
  constexpr int L = VecF32::kLanes;
  int64_t j = 0;
  if (phases == 2)  // two vectors of columns into a vector of each phase
    for (; j + L <= Wph; j += L) {
      typename VecF32::type even, odd;
      deinterleave_lanes(VecF32::load(tmp + 2 * j), VecF32::load(tmp + 2 * j + L), even, odd);
      VecF32::store(row + j, even);
      VecF32::store(row + Wph + j, odd);
    }
  for (; j < Wph; ++j)
    for (int64_t ph = 0; ph < phases; ++ph) row[ph * Wph + j] = tmp[j * phases + ph];
}

// A thread's window onto x's padded channel rows (pack_channel_row), [hp][c][Wp] for a run of
// padded rows hp (input row hp - pad_h) of one image, in a buffer sized for the L2. These layers'
// inputs are the network's largest (64 x 224 x 224: 12.8 MB): a padded copy of all of x, made
// first, was written to and read back from memory, 0.7 of the 2.3 ms forward (AVX-512, N=1). A
// window that starts inside the previous one (the next band of rows of the same image) keeps the
// shared rows, moved to the front, and packs only the new ones. With phases > 1 (a multiple of it
// in Wp), each channel row is stored as its phases (split_row_phases).
template <typename T>
class ChannelRowWindow {
 public:
  ChannelRowWindow(const T* x, const int64_t xs[4], int64_t C, int64_t H, int64_t W, int64_t pad_h, int64_t pad_w,
                   int64_t Wp, int64_t max_rows, int64_t phases = 1)
      : x_(x), xs_(xs), C_(C), H_(H), W_(W), pad_h_(pad_h), pad_w_(pad_w), Wp_(Wp), phases_(phases),
        buf_(max_rows * C * Wp), tmp_(phases > 1 ? Wp : 0) {}
  // Padded rows hp0 .. hp0 + rows - 1 of image n (rows <= max_rows), one after the other.
  [[gnu::noinline]] const float* rows(int64_t n, int64_t hp0, int64_t rows) {
    const int64_t row = C_ * Wp_;
    int64_t kept = 0;
    if (n == n_ && hp0 >= hp0_ && hp0 < hp0_ + count_) {
      kept = std::min(hp0_ + count_ - hp0, rows);
      if (hp0 > hp0_) std::memmove(buf_.data(), buf_.data() + (hp0 - hp0_) * row, kept * row * sizeof(float));
    }
    for (int64_t i = kept; i < rows; ++i) {
      float* dst = buf_.data() + i * row;
      const int64_t h = hp0 + i - pad_h_;
      pack_channel_row(x_, xs_, n, h, C_, H_, W_, pad_w_, Wp_, dst);
      if (phases_ > 1 && h >= 0 && h < H_)  // (rows in the padding: zeros in any order)
        for (int64_t c = 0; c < C_; ++c) split_row_phases(dst + c * Wp_, phases_, Wp_ / phases_, tmp_.data());
    }
    n_ = n, hp0_ = hp0, count_ = rows;
    return buf_.data();
  }

 private:
  const T* x_;
  const int64_t* xs_;
  int64_t C_, H_, W_, pad_h_, pad_w_, Wp_, phases_;
  ScratchOf<float> buf_, tmp_;
  int64_t n_ = -1, hp0_ = 0, count_ = 0;  // what buf_ holds
};

// The padded rows a window of kFewOutputsWindowBytes holds (at least one band's worth: `reach`).
constexpr int64_t kFewOutputsWindowBytes = int64_t(512) << 10;
inline int64_t window_rows(int64_t C, int64_t Wp, int64_t reach) {
  return std::max(reach, kFewOutputsWindowBytes / (C * Wp * int64_t(sizeof(float))));
}

// acc[k][v] = bias[k] + sum over r < R, c < C, s < S of x[r row_step + c Wp + col(s) + v L]
// wt[((r C + c) S + s) K + k]: the output columns of one row's block (x at its first column).
// Column stride SW 1: col(s) = s col_step; 2, on rows split into phases phase_step apart
// (ChannelRowWindow): tap s in phase s col_step % 2, at s col_step / 2. (Offsets from a table
// instead: GCC kept the sums on the stack, a store per FMA.)
template <int K, int NV, int SW>
[[gnu::always_inline]] inline void few_outputs_tile(const float* x, int64_t Wp, int64_t row_step, int64_t col_step,
                                                    int64_t phase_step, int64_t C, int64_t R, int64_t S, const float* wt,
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
        const int64_t at = s * col_step, col = SW == 1 ? at : (at & 1) * phase_step + (at >> 1);
        typename V::type xv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) xv[v] = V::load(xr + col + v * L);
#pragma GCC unroll 8
        for (int k = 0; k < K; ++k) {
          const typename V::type wk = V::broadcast(wr + s * K + k);
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[k][v] = V::fmadd(xv[v], wk, acc[k][v]);
        }
      }
    }
}

// Output rows p0 .. p1 - 1 of image n, their padded input rows from xb (row: one padded row's
// floats). Out of line: inlined into the banded loop of few_outputs_conv, GCC kept the AVX-512
// tile's 21 sums on the stack (a store per FMA: 2.04 -> 2.73 ms at 64 -> 3 @224).
template <typename T, int K>
[[gnu::noinline]] void few_outputs_rows(const Conv2dProblem& p, const float* xb, int64_t row, int64_t Wp, int64_t n,
                                        int64_t p0, int64_t p1, const float* wt, const float* bias, T* y,
                                        const int64_t ys[4]) {
  using V = VecF32;
  constexpr int L = V::kLanes, NV = few_outputs_vectors(K);
  constexpr int64_t kBlock = NV * L;
  typename V::type acc[K][NV];
  alignas(64) float lanes[kBlock];
  for (int64_t pp = p0; pp < p1; ++pp) {
    const float* xrow = xb + (pp - p0) * p.stride_h * row;
    T* yrow = y + n * ys[0] + pp * ys[2];
    for (int64_t next = 0; next < p.Q; next += kBlock) {
      // The last block ends at Q where the row holds a whole block (columns computed twice, to
      // the same bits), so that no read passes the padded row.
      const int64_t q0 = p.Q >= kBlock ? std::min(next, p.Q - kBlock) : 0;
      if (p.stride_w == 2)
        few_outputs_tile<K, NV, 2>(xrow + q0, Wp, p.dil_h * row, p.dil_w, Wp / 2, p.C, p.R, p.S, wt, bias, acc);
      else
        few_outputs_tile<K, NV, 1>(xrow + q0, Wp, p.dil_h * row, p.dil_w, 0, p.C, p.R, p.S, wt, bias, acc);
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
}

// Output channels c0 .. c0 + n - 1 (n <= kFewOutputsMax) of a few_outputs_conv, their weights
// as [r][c][s][n] and their bias (or null).
struct FewOutputsBlock {
  int64_t c0, n;
  const float* wt;
  const float* bias;
};

// Items: bands of output rows of one image, whose padded input rows fit a window, as many per
// image as a multiple of the threads and of even size (9 bands of 13 rows of 112 had kept one
// of 2 threads busy 25% longer); a thread's bands are consecutive, so each window carries the
// rows it shares with the one before. Each band runs every block of output channels in turn.
// Column stride 1 or 2 (the window's rows then split into their two phases: a strided tap reads
// a run).
template <typename T>
void few_outputs_conv(const Conv2dProblem& p, const T* x, const int64_t xs[4], int64_t Wp,
                      const std::vector<FewOutputsBlock>& blocks, T* y, const int64_t ys[4]) {
  const int64_t row = p.C * Wp;  // one padded input row, every channel
  const int64_t reach = (p.R - 1) * p.dil_h + 1, max_rows = window_rows(p.C, Wp, reach);
  const int64_t threads = parallel_threads(), most = std::max<int64_t>(1, (max_rows - reach) / p.stride_h + 1);
  const int64_t nbands = std::min(p.P, ((p.P + most - 1) / most + threads - 1) / threads * threads);
  const int64_t band = (p.P + nbands - 1) / nbands;  // the longest band
  parallel_for(0, p.N * nbands, 1, [&](int64_t b, int64_t e) {
    ChannelRowWindow<T> window(x, xs, p.C, p.H, p.W, p.pad_h, p.pad_w, Wp, (band - 1) * p.stride_h + reach,
                               p.stride_w);
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / nbands, bi = item % nbands, p0 = p.P * bi / nbands, p1 = p.P * (bi + 1) / nbands;
      const float* xb = window.rows(n, p0 * p.stride_h, (p1 - 1 - p0) * p.stride_h + reach);
      for (const FewOutputsBlock& blk : blocks)
        with_few_outputs(blk.n, [&]<int K>() {
          few_outputs_rows<T, K>(p, xb, row, Wp, n, p0, p1, blk.wt, blk.bias, y + blk.c0 * ys[1], ys);
        });
    }
  });
}

// The padded rows' width: one whole block of columns of the widest tile and its taps (rows
// shorter than a block: few_outputs_rows' last block ends at Q on longer ones); at column stride
// 2, two phases that long.
inline int64_t few_outputs_row_floats(const Conv2dProblem& p) {
  constexpr int64_t kMaxBlock = 8 * VecF32::kLanes;  // the widest tile's columns
  if (p.stride_w == 2)
    return 2 * std::max((p.W + 2 * p.pad_w + 1) / 2, std::max(p.Q, kMaxBlock) + (p.S - 1) * p.dil_w / 2);
  return std::max(p.W + 2 * p.pad_w, std::max(p.Q, kMaxBlock) + (p.S - 1) * p.dil_w);
}

// Output channels o0 .. o0 + n - 1 of a filter view as a block's weights, dst[((r Cin + i) S + s) n + j]
// = w[(o0 + j) so + i si + r sr + s ss] (the forward's filter, or the input gradient's rotated and
// transposed one: negative steps from its last tap).
template <typename T>
inline void few_outputs_block_weights(const T* w, int64_t so, int64_t si, int64_t sr, int64_t ss, int64_t Cin,
                                      int64_t R, int64_t S, int64_t o0, int64_t n, float* dst) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < Cin; ++i)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t j = 0; j < n; ++j)
          dst[((r * Cin + i) * S + s) * n + j] = load_acc(w + (o0 + j) * so + i * si + r * sr + s * ss);
}

// A filter view's `out` output channels in blocks of at most kFewOutputsMax, as even as `most`
// allows (most <= kFewOutputsMax), each with its weights (few_outputs_block_weights: steps so, si,
// sr, ss from w) and its bias (bias + c0, or null).
struct FewOutputsBlocks {
  std::vector<float> weights;
  std::vector<FewOutputsBlock> blocks;
};
template <typename T>
inline FewOutputsBlocks few_outputs_blocks(const T* w, int64_t so, int64_t si, int64_t sr, int64_t ss, int64_t Cin,
                                           int64_t R, int64_t S, int64_t out, int64_t most, const float* bias) {
  const int64_t nblocks = (out + most - 1) / most;
  FewOutputsBlocks b{std::vector<float>(out * R * S * Cin), {}};
  for (int64_t i = 0, at = 0; i < nblocks; ++i) {
    const int64_t c0 = out * i / nblocks, n = out * (i + 1) / nblocks - c0;
    few_outputs_block_weights(w, so, si, sr, ss, Cin, R, S, c0, n, b.weights.data() + at);
    b.blocks.push_back({c0, n, b.weights.data() + at, bias ? bias + c0 : nullptr});
    at += R * Cin * S * n;
  }
  return b;
}

template <typename T>
inline bool conv2d_fprop_few_outputs(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || p.groups != 1 || p.K > kFewOutputsMax || p.stride_w != 1) return false;
  const int64_t* ws = a.w.stride;
  const FloatBias<T> bias(a.bias, p.K);
  const FewOutputsBlocks b = few_outputs_blocks(static_cast<const T*>(a.w.data), ws[0], ws[1], ws[2], ws[3], p.C, p.R,
                                                p.S, p.K, p.K, bias.data());  // one block
  few_outputs_conv(p, static_cast<const T*>(a.x.data), a.x.stride, few_outputs_row_floats(p), b.blocks,
                   static_cast<T*>(a.y.data), a.y.stride);
  return true;
}

// The few-outputs tiles run layers of few inputs and more outputs in blocks of output channels
// (few_inputs_block): the input gradient below (1-7 dy channels) and the forward of 1-7 input
// channels (an image's first layer: VGG's 3 -> 64 3 x 3 @224), both at stride 1 into NCHW rows
// of 96+ columns, AVX-512 (AVX2: see below). The direct engine's tiles (output channels as lanes, 6 pixels) had
// spent as long scattering each tile into the output's planes as computing it: 3 channels in
// give 27 products per output element (64 -> 3 @224's input gradient: ~40% of the samples in the
// stores). In-process A/B against the direct engine, 2 threads, N=1: that input gradient 2.06 ->
// 1.14 ms, 64 -> 1 @112's 0.212 -> 0.142; the forward 3 -> 64 @224 2.17 -> 1.23, 1 -> 64 @128
// 0.53 -> 0.17. Not taken: rows of 56 (16 -> 4, 32 -> 2: 0.8x, the 48-80-column tiles half
// empty); AVX2 past 9 products per output (below; its 4 x 3 vector tiles ran 64 -> 3 @224's
// input gradient 1.1-1.2x slower than the direct engine); channels_last outputs, whose pixels
// are the direct tiles' own.
//
// The block size: the most output channels a block takes (blocks as even as that allows), 4 to
// 7, whose blocks compute the fewest columns over the row, blocks of n channels running
// few_outputs_vectors(n) vectors of columns and each row's last block shifted back to end at Q
// (columns computed twice); the larger on a tie (fewer passes over x). In-process A/B of 4, 5, 6
// and 7, 2 threads, N=1, forwards: the columns so counted ranked them as they ran at 3 -> 64 3 x 3
// @224 (5: 1.27 ms, 7 1.32, 6 1.23-1.59, 4 1.48), @112 (6 0.31, 7 0.31, 5 0.37, 4 0.42), 3 -> 32
// @112 (7 0.157, 6 0.174, 5 0.198, 4 0.25) and 4 -> 96 5 x 5 @96 (4 0.86, 7 0.91, 6 1.17, 5 1.33;
// the direct engine 1.10). Blocks of 3 (7 vectors) ran slower than the count says (0.21 ms at 3
// -> 32 @112); so had blocks of 3 and 8 against 6 on the input gradient of 64 -> 3 @224.
// AVX2 takes these tiles only at 9 or fewer products per output element (one channel in, 3 x 3),
// where the direct engine's scatter costs most against its multiply-adds (A/B against it, arms in
// random order, 2 threads, N=1, forward: 1 -> 16 @256 0.41 -> 0.27 ms, 1 -> 64 @224 1.12 -> 0.95,
// 1 -> 64 @128 0.39 -> 0.34, 1 -> 32 @112 level; input gradient of one dy channel: 64 -> 1 @112
// 0.31 -> 0.24, 32 -> 1 @224 0.64 -> 0.46). With more its 1-3-vector tiles lose: 2 -> 64 3 x 3
// @160 0.68 -> 0.74, 1 -> 64 5 x 5 @96 0.28 -> 0.35, 1 -> 96 7 x 7 @128 1.08 -> 1.64.
// The columns the tiles of a block of n output channels compute over a row of Q.
inline int64_t few_outputs_columns(int64_t n, int64_t Q) {
  const int64_t block = few_outputs_vectors(int(n)) * VecF32::kLanes;
  return (Q + block - 1) / block * block;
}
inline int64_t few_inputs_block(int64_t out, int64_t Q) {
  int64_t best = kFewOutputsMax, best_columns = std::numeric_limits<int64_t>::max();
  for (int64_t most = kFewOutputsMax; most >= 4; --most) {
    const int64_t nblocks = (out + most - 1) / most;
    int64_t columns = 0;  // output channels times the columns their tiles compute
    for (int64_t i = 0; i < nblocks; ++i) {
      const int64_t n = out * (i + 1) / nblocks - out * i / nblocks;
      columns += n * few_outputs_columns(n, Q);
    }
    if (columns < best_columns) best = most, best_columns = columns;
  }
  return best;
}
inline bool few_inputs_apply(const Conv2dProblem& p, int64_t in, int64_t out_columns, const int64_t out_stride[4]) {
  // Column stride 2 (rows split into phases), bfloat16 3 x 3 only: the dot engine's tiles pad 3
  // channels to 4 and scatter 6-pixel tiles into the planes (in-process A/B, arms in random order,
  // Zen 5, 2 threads, NCHW: MobileNetV2's stem 3 -> 32 /2 N=8 1.10-1.40x, N=1 1.07x, 3 -> 24
  // 1.31x). float32 lost to the direct engine (0.89x), and 7 x 7 /2 both (0.57x, 0.81x).
  const bool strided = VecF32::kLanes == 16 && p.stride_w == 2 && p.dtype == dtype_of<bf16>() && p.R * p.S <= 9;
  return (VecF32::kLanes == 16 || in * p.R * p.S <= 9) && p.groups == 1 && in <= kFewOutputsMax &&
         ((p.stride_h == 1 && p.stride_w == 1) || strided) && out_stride[3] == 1 && out_columns >= 96;
}

template <typename T>
inline bool conv2d_fprop_few_inputs(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || p.K <= kFewOutputsMax || !few_inputs_apply(p, p.C, p.Q, a.y.stride)) return false;
  const int64_t* ws = a.w.stride;
  const FloatBias<T> bias(a.bias, p.K);
  const FewOutputsBlocks b = few_outputs_blocks(static_cast<const T*>(a.w.data), ws[0], ws[1], ws[2], ws[3], p.C, p.R,
                                                p.S, p.K, few_inputs_block(p.K, p.Q), bias.data());
  few_outputs_conv(p, static_cast<const T*>(a.x.data), a.x.stride, few_outputs_row_floats(p), b.blocks,
                   static_cast<T*>(a.y.data), a.y.stride);
  return true;
}

// The input gradient at stride 1 (one group) as the forward of dy (K channels in, padded by dil
// (R - 1) - pad) with the filter rotated by 180 degrees and transposed, C channels out: for 1-7
// dx channels (an input layer's) as one block, the heads' forward (any ISA and layout), where
// its tiles compute fewer lanes than the direct engine's (dx channels as lanes, 1-7 of a
// vector's: 1 -> 64 @128's input gradient 2.16 ms there, 0.22 here, PyTorch 0.48; a row of 7
// in a 112-column tile would not be); for 1-7 dy channels (a head's) in blocks of
// few_inputs_block (see above).
template <typename T>
inline bool conv2d_dgrad_few_outputs(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t pad_h = (p.R - 1) * p.dil_h - p.pad_h, pad_w = (p.S - 1) * p.dil_w - p.pad_w;
  if (p.dtype != dtype_of<T>() || p.groups != 1 || p.stride_h != 1 || p.stride_w != 1 || pad_h < 0 || pad_w < 0)
    return false;
  constexpr int64_t L = VecF32::kLanes;
  const bool one_block = p.C <= kFewOutputsMax && p.C * few_outputs_columns(p.C, p.W) < (p.C + L - 1) / L * L * p.W;
  if (!one_block && !few_inputs_apply(p, p.K, p.W, a.dx.stride)) return false;
  Conv2dProblem f = p;  // the forward that makes dx
  f.C = p.K, f.H = p.P, f.W = p.Q, f.K = p.C, f.P = p.H, f.Q = p.W, f.pad_h = pad_h, f.pad_w = pad_w;
  // Block weights [r][k][s][j] = w[k][c0 + j][R - 1 - r][S - 1 - s]: negative steps from the last tap.
  const int64_t* ws = a.w.stride;
  const T* w_last = static_cast<const T*>(a.w.data) + (p.R - 1) * ws[2] + (p.S - 1) * ws[3];
  const FewOutputsBlocks b = few_outputs_blocks(w_last, ws[1], ws[0], -ws[2], -ws[3], p.K, p.R, p.S, p.C,
                                                one_block ? p.C : few_inputs_block(p.C, p.W), nullptr);
  few_outputs_conv(f, static_cast<const T*>(a.dy.data), a.dy.stride, few_outputs_row_floats(f), b.blocks,
                   static_cast<T*>(a.dx.data), a.dx.stride);
  return true;
}

// The weight gradient of the same layers (1-7 output channels, one group, column stride 1) for
// 1 x 1 and 3-wide filters: dw[k][c][r][s] = sum over (n, p, q) of dy[n][k][p][q] x[n][c][p sh + r
// dh - pad_h][q + s dw - pad_w], output columns as vector lanes. x goes into the forward's padded
// rows; dy into rows [n][p][k][Qv] (Qv: Q rounded up to whole vectors, zeros past Q). An item is
// one filter row r and a block of CB input channels; its K CB S sums stay in registers over a
// chunk of output rows (per vector of columns: K loads of dy and CB S of x feed K CB S FMAs), are
// added to their split's totals, and the totals are added across splits and lanes at the end.
// These layers had run the reference loops. 2 threads, Zen 5, float32: N=1 64 -> 3 @224
// channels_last 64 -> 2.1 ms (PyTorch 3.9), NCHW 24 -> 2.2 (3.6); N=8 64 -> 1 @112 3.2 ms (PyTorch
// 9.0), 64 -> 3 @224 20 ms (PyTorch 23). (Items over every output pixel, before the chunks, read x
// from memory once per filter row: that N=8 64 -> 3 took 31 ms.)
template <int K, int S>
constexpr int few_outputs_wgrad_channels() {
  return std::clamp(24 / (K * S), 1, 8);
}

// Output rows per chunk: a chunk's x rows (kWgradChunkRows + R - 1 padded rows of every channel)
// stay in the L2 while every item sweeps them.
constexpr int64_t kWgradChunkRows = 8;

// Fixed splits of `rows` output rows (their totals added in split order at the end), so that 2
// threads have work and the sums do not depend on the thread count: a multiple of 4, up to 16,
// with 4+ chunks each where there are rows enough.
inline int64_t wgrad_row_splits(int64_t rows) {
  return std::min(rows, (std::clamp<int64_t>(rows / (4 * kWgradChunkRows), 1, 16) + 3) / 4 * 4);
}

template <typename T, int K, int S>
void few_outputs_wgrad(const Conv2dProblem& p, const T* x, const int64_t xs[4], int64_t Wp, const float* dyp,
                       int64_t Qv, T* dw, const int64_t ws[4]) {
  using V = VecF32;
  constexpr int L = V::kLanes, CB = few_outputs_wgrad_channels<K, S>();
  constexpr int64_t kSums = int64_t(K) * CB * S * L;  // an item's lanes
  const int64_t ncb = (p.C + CB - 1) / CB, items = p.R * ncb, xrow = p.C * Wp, rows = p.N * p.P;
  const int64_t reach = (p.R - 1) * p.dil_h + 1;
  // Each split's rows go in chunks of kWgradChunkRows, cut where an image ends: a chunk's padded
  // x rows come into the thread's window (ChannelRowWindow), which carries the rows the next
  // chunk shares.
  const int64_t splits = wgrad_row_splits(rows);
  Scratch totals(splits * items * kSums);  // rows > 0: the op fills an empty batch's dW itself
  parallel_for(0, splits, 1, [&](int64_t b, int64_t e) {
    ChannelRowWindow<T> window(x, xs, p.C, p.H, p.W, p.pad_h, p.pad_w, Wp,
                               (kWgradChunkRows - 1) * p.stride_h + reach);
    for (int64_t split = b; split < e; ++split) {
      const int64_t row0 = rows * split / splits, row1 = rows * (split + 1) / splits;
      for (int64_t chunk = row0; chunk < row1;) {
        const int64_t n = chunk / p.P, chunk_end = std::min({row1, chunk + kWgradChunkRows, (n + 1) * p.P});
        const bool first = chunk == row0;
        const float* xb = window.rows(n, chunk % p.P * p.stride_h, (chunk_end - 1 - chunk) * p.stride_h + reach);
        for (int64_t item = 0; item < items; ++item) {
          const int64_t r = item / ncb, c0 = item % ncb * CB, cn = std::min<int64_t>(CB, p.C - c0);
          typename V::type acc[K][CB][S];
#pragma GCC unroll 8
          for (int k = 0; k < K; ++k)
#pragma GCC unroll 8
            for (int cb = 0; cb < CB; ++cb)
#pragma GCC unroll 4
              for (int s = 0; s < S; ++s) acc[k][cb][s] = V::zero();
          for (int64_t np = chunk; np < chunk_end; ++np) {
            // Channels past C (the last block) read channel c0 again: their sums are not stored.
            const float* xr = xb + ((np - chunk) * p.stride_h + r * p.dil_h) * xrow;
            const float* xc[CB];
#pragma GCC unroll 8
            for (int cb = 0; cb < CB; ++cb) xc[cb] = xr + (c0 + (cb < cn ? cb : 0)) * Wp;
            const float* dr = dyp + np * K * Qv;
            for (int64_t q = 0; q < Qv; q += L) {
              typename V::type g[K];
#pragma GCC unroll 8
              for (int k = 0; k < K; ++k) g[k] = V::load(dr + k * Qv + q);
#pragma GCC unroll 8
              for (int cb = 0; cb < CB; ++cb)
#pragma GCC unroll 4
                for (int s = 0; s < S; ++s) {
                  const typename V::type xv = V::load(xc[cb] + q + s * p.dil_w);
#pragma GCC unroll 8
                  for (int k = 0; k < K; ++k) acc[k][cb][s] = V::fmadd(g[k], xv, acc[k][cb][s]);
                }
            }
          }
          float* t = totals.data() + (split * items + item) * kSums;
#pragma GCC unroll 8
          for (int k = 0; k < K; ++k)
#pragma GCC unroll 8
            for (int cb = 0; cb < CB; ++cb)
#pragma GCC unroll 4
              for (int s = 0; s < S; ++s) {
                float* at = t + ((k * CB + cb) * S + s) * L;
                V::store(at, first ? acc[k][cb][s] : V::add(V::load(at), acc[k][cb][s]));
              }
        }
        chunk = chunk_end;
      }
    }
  });
  // The splits' totals in split order, then each sum's lanes, into dw.
  parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
    alignas(64) float lanes[L];
    for (int64_t item = b; item < e; ++item) {
      const int64_t r = item / ncb, c0 = item % ncb * CB, cn = std::min<int64_t>(CB, p.C - c0);
      for (int k = 0; k < K; ++k)
        for (int64_t cb = 0; cb < cn; ++cb)
          for (int s = 0; s < S; ++s) {
            const int64_t at = item * kSums + ((k * CB + cb) * S + s) * L;
            typename V::type sum = V::load(totals.data() + at);
            for (int64_t split = 1; split < splits; ++split)
              sum = V::add(sum, V::load(totals.data() + split * items * kSums + at));
            V::store(lanes, sum);
            float total = 0.0f;
            for (int l = 0; l < L; ++l) total += lanes[l];
            store_from(dw + k * ws[0] + (c0 + cb) * ws[1] + r * ws[2] + s * ws[3], total);
          }
    }
  });
}

template <typename T>
inline bool conv2d_wgrad_few_outputs(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || p.groups != 1 || p.K > kFewOutputsMax || p.stride_w != 1 || (p.S != 1 && p.S != 3))
    return false;
  constexpr int L = VecF32::kLanes;
  const int64_t Qv = (p.Q + L - 1) / L * L;
  // x's padded rows (ChannelRowWindow): every column a vector of Qv columns' taps reads.
  const T* x = static_cast<const T*>(a.x.data);
  const int64_t Wp = std::max(p.W + 2 * p.pad_w, Qv + (p.S - 1) * p.dil_w);
  // dy as rows [n][p][k][Qv].
  const T* dy = static_cast<const T*>(a.dy.data);
  const int64_t* ds = a.dy.stride;
  ScratchOf<float> dyp(p.N * p.P * p.K * Qv);
  parallel_for(0, p.N * p.P, 4, [&](int64_t b, int64_t e) {
    for (int64_t np = b; np < e; ++np) {
      const int64_t n = np / p.P, pp = np % p.P;
      for (int64_t k = 0; k < p.K; ++k) {
        float* row = dyp.data() + (np * p.K + k) * Qv;
        const T* src = dy + n * ds[0] + k * ds[1] + pp * ds[2];
        for (int64_t q = 0; q < p.Q; ++q) row[q] = load_acc(src + q * ds[3]);
        std::fill(row + p.Q, row + Qv, 0.0f);
      }
    }
  });
  T* dw = static_cast<T*>(a.dw.data);
  with_few_outputs(p.K, [&]<int K>() {
    if (p.S == 1)
      few_outputs_wgrad<T, K, 1>(p, x, a.x.stride, Wp, dyp.data(), Qv, dw, a.dw.stride);
    else
      few_outputs_wgrad<T, K, 3>(p, x, a.x.stride, Wp, dyp.data(), Qv, dw, a.dw.stride);
  });
  return true;
}

// The weight gradient of few input channels (an image's first layer; AVX2 up to 32) into 8+
// outputs, one group, any stride, float32 with dy's rows contiguous (NCHW): dw[k][c][r][s] = sum
// over (n, p, q) of dy[n][k][p][q] x[n][c][p sh + r dh - pad_h][q sw + s dw - pad_w], output
// columns as vector lanes, so that dy is read in place. (The direct engine's channels-last tiles
// transposed all of dy first, 19% of MobileNetV2's stem, and filled 27 of their 24 x 1 / 12 x 2
// tile rows.) x goes into a window of padded rows (ChannelRowWindow) split into sw phases, so
// that each tap reads a run. An item is a block of kFewInputsWgradOutputs output channels, one
// input channel and 3 taps; per vector of columns, its taps' loads of x and the block's of dy feed
// 3 x 8 FMAs (AVX2: 3 x 4) into sums kept in registers over a chunk of kWgradChunkRows output rows
// (of 2, 4, 8, 12 and 16, 8 ran fastest), then added to the split's totals; splits and lanes are
// added up at the end as in few_outputs_wgrad.
// In-process A/B against the direct engine, arms in random order, Xeon, 2 threads, NCHW, AVX-512 /
// AVX2: MobileNetV2's stem (3 -> 32 3 x 3 /2 @224) N=8 1.70 / 2.02x, N=1 1.81 / 1.94x; ResNet-50's
// (3 -> 64 7 x 7 /2) N=8 1.43 / 1.75x, N=1 1.35 / 1.63x; VGG's 3 -> 64 @224 N=8 3.1 / 3.5x, N=1
// 2.0 / 3.2x; 3 -> 16 /2 N=8 1.47 / 1.90x, N=1 1.14 / 1.93x. AVX2 with more inputs: 8 -> 16 @112
// 1.32x, 16 -> 16 @112 2.10x, 16 -> 32 /2 1.60x, 32 -> 64 /2 1.48x, 32 -> 32 @112 level; AVX-512
// there ran 0.71-1.16x (16 -> 32 /2 lost), so it keeps the direct engine past 4 inputs.
constexpr int64_t kFewInputsWgradMaxChannels = VecF32::kLanes == 16 ? 4 : 32;
constexpr int kFewInputsWgradOutputs = VecF32::kLanes == 16 ? 8 : 4;
constexpr int kFewInputsWgradTaps = 3;

// acc[t][k] += over rows j < nrows and columns q < Q of x_rows[j][x_off[t] + q] dy_rows[j KT + k][q]
// (x read in whole vectors, dy up to Q only).
template <int X>
[[gnu::always_inline]] inline void few_inputs_wgrad_rows(
    const float* const* x_rows, const int64_t* x_off, const float* const* dy_rows, int64_t nrows, int64_t Q,
    typename VecF32::type (&acc)[kFewInputsWgradTaps][kFewInputsWgradOutputs]) {
  using V = VecF32;
  constexpr int L = V::kLanes, KT = kFewInputsWgradOutputs;
  const int64_t q_full = Q - Q % L;
  const typename V::mask tail = V::lanes_between(0, Q % L);
  for (int64_t j = 0; j < nrows; ++j) {
    const float* xt[X];
#pragma GCC unroll 3
    for (int t = 0; t < X; ++t) xt[t] = x_rows[j] + x_off[t];
    const float* const* dr = dy_rows + j * KT;
    // The last, partial vector adds its lanes below Q only: x past Q may be an input column no
    // output reads, which may hold an infinity (0 x inf would make a NaN).
    const auto columns = [&]<bool kTail>(int64_t q) {
      typename V::type xv[X];
#pragma GCC unroll 3
      for (int t = 0; t < X; ++t) xv[t] = V::load(xt[t] + q);
#pragma GCC unroll 8
      for (int k = 0; k < KT; ++k) {
        typename V::type d = kTail ? V::load_masked(dr[k] + q, tail) : V::load(dr[k] + q);
        asm("" : "+v"(d));  // one load for the X FMAs, not a memory operand in each (AVX-512 1.2-1.3x)
#pragma GCC unroll 3
        for (int t = 0; t < X; ++t)
          acc[t][k] = kTail ? V::fmadd_masked(xv[t], d, acc[t][k], tail) : V::fmadd(xv[t], d, acc[t][k]);
      }
    };
    for (int64_t q = 0; q < q_full; q += L) columns.template operator()<false>(q);
    if (q_full < Q) columns.template operator()<true>(q_full);
  }
}

template <typename T>
inline bool conv2d_wgrad_few_inputs(const Conv2dWgradArgs& a) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    const Conv2dProblem& p = a.p;
    if (p.dtype != dtype_of<T>() || p.groups != 1 || p.C > kFewInputsWgradMaxChannels || p.K <= kFewOutputsMax ||
        a.dy.stride[3] != 1)
      return false;
    using V = VecF32;
    constexpr int L = V::kLanes, KT = kFewInputsWgradOutputs, XT = kFewInputsWgradTaps;
    constexpr int64_t kSums = int64_t(XT) * KT * L;  // an item's lanes
    const int64_t sw = p.stride_w, Qv = (p.Q + L - 1) / L * L;
    // Phase rows that hold the padded row and a whole vector past Q at the furthest tap.
    const int64_t reach_w = (p.S - 1) * p.dil_w;
    const int64_t Wph = (std::max(Qv + reach_w / sw, (p.W + p.pad_w + sw - 1) / sw) + L - 1) / L * L;
    const int64_t Wp = sw * Wph, xrow = p.C * Wp, rows = p.N * p.P, reach = (p.R - 1) * p.dil_h + 1;
    // An item's taps: 3 (the last group 1-3) of the R S taps in a row, so that 7 x 7 filters do
    // not leave a group of 1 per filter row (in-process A/B, Xeon, against groups within a filter
    // row: ResNet-50's stem N=8 1.12x, AVX2 1.06x; 3 x 3 level). Tap (r, s) reads window row
    // (output row j's) + r dh, phase (s dw) % sw, column (s dw) / sw; an input row in the padding
    // is one of the window's rows of zeros.
    struct TapGroup {
      int n;
      int64_t off[XT];  // from the window's first row of a channel
      int64_t tap[XT];  // r S + s
    };
    std::vector<TapGroup> groups;
    for (int64_t t = 0; t < p.R * p.S; t += XT) {
      TapGroup g{int(std::min<int64_t>(XT, p.R * p.S - t)), {}, {}};
      for (int i = 0; i < XT; ++i) {
        const int64_t tap = t + std::min(i, g.n - 1), col = tap % p.S * p.dil_w;
        g.tap[i] = tap, g.off[i] = tap / p.S * p.dil_h * xrow + col % sw * Wph + col / sw;
      }
      groups.push_back(g);
    }
    const int64_t ntg = int64_t(groups.size()), per_block = p.C * ntg, items = (p.K + KT - 1) / KT * per_block;
    const int64_t splits = wgrad_row_splits(rows);
    const float* dy = static_cast<const float*>(a.dy.data);
    const int64_t* ds = a.dy.stride;
    Scratch totals(splits * items * kSums);  // rows > 0: the op fills an empty batch's dW itself
    parallel_for(0, splits, 1, [&](int64_t b, int64_t e) {
      ChannelRowWindow<T> window(static_cast<const T*>(a.x.data), a.x.stride, p.C, p.H, p.W, p.pad_h, p.pad_w, Wp,
                                 (kWgradChunkRows - 1) * p.stride_h + reach, sw);
      const float* x_rows[kWgradChunkRows];
      const float* dy_rows[kWgradChunkRows * KT];
      for (int64_t split = b; split < e; ++split) {
        const int64_t row0 = rows * split / splits, row1 = rows * (split + 1) / splits;
        for (int64_t chunk = row0; chunk < row1;) {
          const int64_t n = chunk / p.P, chunk_end = std::min({row1, chunk + kWgradChunkRows, (n + 1) * p.P});
          const int64_t nrows = chunk_end - chunk;
          const float* xb = window.rows(n, chunk % p.P * p.stride_h, (nrows - 1) * p.stride_h + reach);
          // Items block by block: a block's dy rows stay in the L1 across its filter rows, channels
          // and taps.
          for (int64_t item = 0; item < items; ++item) {
            const TapGroup& g = groups[item % ntg];
            const int64_t c = item / ntg % p.C, k0 = item / per_block * KT;
            if (item % per_block == 0)  // output channels past K read channel K - 1 (sums not stored)
              for (int64_t j = 0; j < nrows; ++j)
                for (int k = 0; k < KT; ++k)
                  dy_rows[j * KT + k] =
                      dy + n * ds[0] + std::min<int64_t>(k0 + k, p.K - 1) * ds[1] + (chunk + j) % p.P * ds[2];
            for (int64_t j = 0; j < nrows; ++j) x_rows[j] = xb + j * p.stride_h * xrow + c * Wp;
            typename V::type acc[XT][KT];
#pragma GCC unroll 3
            for (int t = 0; t < XT; ++t)
#pragma GCC unroll 8
              for (int k = 0; k < KT; ++k) acc[t][k] = V::zero();
            with_small_count<XT>(g.n, [&]<int X>() {
              few_inputs_wgrad_rows<X>(x_rows, g.off, dy_rows, nrows, p.Q, acc);
            });
            float* tot = totals.data() + (split * items + item) * kSums;
#pragma GCC unroll 3
            for (int t = 0; t < XT; ++t)
#pragma GCC unroll 8
              for (int k = 0; k < KT; ++k) {
                float* at = tot + (t * KT + k) * L;
                V::store(at, chunk == row0 ? acc[t][k] : V::add(V::load(at), acc[t][k]));
              }
          }
          chunk = chunk_end;
        }
      }
    });
    // The splits' totals in split order, then each sum's lanes, into dw.
    T* dw = static_cast<T*>(a.dw.data);
    const int64_t* ws = a.dw.stride;
    parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
      for (int64_t item = b; item < e; ++item) {
        const TapGroup& g = groups[item % ntg];
        const int64_t c = item / ntg % p.C, k0 = item / per_block * KT;
        for (int t = 0; t < g.n; ++t)
          for (int64_t k = 0; k < std::min<int64_t>(KT, p.K - k0); ++k) {
            const int64_t at = item * kSums + (t * KT + k) * L;
            typename V::type sum = V::load(totals.data() + at);
            for (int64_t split = 1; split < splits; ++split)
              sum = V::add(sum, V::load(totals.data() + split * items * kSums + at));
            store_from(dw + (k0 + k) * ws[0] + c * ws[1] + g.tap[t] / p.S * ws[2] + g.tap[t] % p.S * ws[3],
                       sum_lanes(sum));
          }
      }
    });
    return true;
  }
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
