// Winograd F(2x2, 3x3) for dense, stride-1, undilated 3x3 float32 convolutions: the fprop; the
// dgrad, which is the same kind of convolution of dy with the flipped, transposed filter; and the
// wgrad, the algorithm's transpose (winograd_wgrad, below). bfloat16 layers run F(4x4, 3x3) in
// float32 through the same drivers (Wino<4>, below: 36 planes where F(2x2) has 16).
// Included once per ISA folder after conv2d_direct.h, whose register tile it reuses.
//
// A 2x2 block of outputs ("tile") is A^T [ (G g G^T) . (B^T d B) ] A, d the tile's 4x4 input
// patch, g a 3x3 filter, "." the element-wise product (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015). Summed over input channels, the 16 element-wise products
// are 16 independent GEMMs, (tiles x in) times (in x out): 16 multiply-adds per 4 outputs and
// input channel where direct convolution takes 36, 2.25x fewer. The transforms add O(in + out)
// work per tile against the GEMMs' O(in out).
//
// Memory stays per-thread: each work item is a block of TB tiles and one block of KB output
// channels; it transforms its tiles' inputs into V[16][TB][in] (once per tile block: a thread runs
// the blocks of one tile block in a row), runs the 16 GEMMs into M[16][TB][KB] with conv_tile, and
// transforms M into outputs. Each thread transforms the filter for the out blocks it runs into its
// own U[16][out blocks][in][KB] (16/9 of those filters' size).
//
// Rounding: B and A hold only 0 and +-1 (exact transforms up to the adds); G holds 1/2. The sums
// are reassociated, so results differ from direct convolution by a few ulps of the layer's scale
// (tests/test_conv2d.py checks them against float64 like every path). Infinities are where
// Winograd differs in kind: inf - inf in a transform gives NaN where direct summation may give
// +-inf. Any non-finite output therefore makes the call rerun on the direct engine, so inf and NaN
// propagate exactly as summation gives them.
#pragma once
#include <atomic>

#include "../kernels.h"
#include "conv2d_direct.h"
#include "conv2d_wgrad.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// How winograd_transform_filter reads a 3x3 filter: the cache lines one row's chunk of kChunk in
// channels reads (9 kChunk elements: 5-6 lines for KCRS weights, 9-18 for KRSC, 8-16 for dgrad's
// KCRS), to prefetch rows ahead: lines[a] holds the offset of one element per line when the row's
// first element sits a elements into its line. Built once per call, read by every thread.
template <typename T>
struct FilterReader {
  static constexpr int64_t kChunk = 8, kLine = 64 / sizeof(T);
  const WeightSource<T>& src;
  std::vector<std::vector<int64_t>> lines;
  int tap_dir = 0;  // +1 / -1: tap t at tap_offset[0] +- t; 0: neither

  explicit FilterReader(const WeightSource<T>& s) : src(s), lines(kLine) {
    for (int dir : {1, -1}) {
      bool all = true;
      for (int t = 0; t < 9; ++t) all = all && src.tap_offset[t] == src.tap_offset[0] + dir * t;
      if (all) tap_dir = dir;
    }
    for (int64_t a = 0; a < kLine; ++a) {
      std::vector<std::pair<int64_t, int64_t>> at;  // (line, offset)
      for (int t = 0; t < 9; ++t)
        for (int64_t i = 0; i < kChunk; ++i) {
          const int64_t x = src.tap_offset[t] + i * src.in_stride;
          at.push_back({(x + a) / kLine, x});  // offsets are >= 0: PyTorch strides are
        }
      std::sort(at.begin(), at.end());
      for (size_t j = 0; j < at.size(); ++j)
        if (j == 0 || at[j].first != at[j - 1].first) lines[a].push_back(at[j].second);
    }
  }
};

// The 1-D transforms of F(m x m, 3 x 3), applied along columns and then rows: B^T (input patch
// of a = m + 2 values), G (3 filter taps to a values) and A^T (a products to m outputs).
// F(2x2) takes float32 layers: B and A hold only 0 and +-1, G 1/2. F(4x4) (Lavin and Gray's
// points 0, +-1, +-2) takes 36 multiplies per 16 outputs and in channel, 4x fewer than direct,
// but its coefficients (up to 8 and 1/24) leave ~20x F(2x2)'s rounding error, ~1e-6 of the
// layer's scale in float32: too much for float32 results, nothing for bfloat16 ones (outputs
// rounded to 8 bits: float64 simulation, bfloat16 x and w, 64-256 channels: the same RMS error as
// direct summation, 0.02-0.04% of outputs 1 ulp apart), so bfloat16 layers take it.
template <int M>
struct Wino;
template <>
struct Wino<2> {
  static constexpr int kA = 4, kPlanes = kA * kA;
  using V = VecF32;
  using Vec = V::type;
  static void bt(const Vec d[4], Vec r[4]) {
    r[0] = V::sub(d[0], d[2]), r[1] = V::add(d[1], d[2]), r[2] = V::sub(d[2], d[1]), r[3] = V::sub(d[1], d[3]);
  }
  static void g(Vec g0, Vec g1, Vec g2, Vec u[4]) {
    const float half_value = 0.5f;
    const Vec half = V::broadcast(&half_value);
    u[0] = g0, u[1] = V::mul(half, V::add(V::add(g0, g1), g2)), u[2] = V::mul(half, V::add(V::sub(g0, g1), g2));
    u[3] = g2;
  }
  static void at(const Vec m[4], Vec y[2]) {
    y[0] = V::add(V::add(m[0], m[1]), m[2]), y[1] = V::sub(V::sub(m[1], m[2]), m[3]);
  }
  // The weight gradient's (winograd_wgrad): A = [1 0; 1 1; 1 -1; 0 -1] takes dY to Dy, and
  // G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1] takes M to the 3 taps.
  static void a(const Vec y[2], Vec r[4]) {
    r[0] = y[0], r[1] = V::add(y[0], y[1]), r[2] = V::sub(y[0], y[1]), r[3] = V::sub(V::zero(), y[1]);
  }
  static void gt(const Vec m[4], Vec w[3]) {
    const float half_value = 0.5f;
    const Vec half = V::broadcast(&half_value), h = V::mul(half, V::add(m[1], m[2]));
    w[0] = V::add(m[0], h), w[1] = V::mul(half, V::sub(m[1], m[2])), w[2] = V::add(h, m[3]);
  }
};
template <>
struct Wino<4> {
  static constexpr int kA = 6, kPlanes = kA * kA;
  using V = VecF32;
  using Vec = V::type;
  static Vec c(float v) { return V::broadcast(&v); }
  // B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
  static void bt(const Vec d[6], Vec r[6]) {
    const Vec d31 = V::sub(d[3], d[1]), d42 = V::sub(d[4], d[2]);
    r[0] = V::fmadd(c(4.0f), d[0], V::fmadd(c(-5.0f), d[2], d[4]));
    r[1] = V::fmadd(c(-4.0f), V::add(d[1], d[2]), V::add(d[3], d[4]));
    r[2] = V::fmadd(c(4.0f), V::sub(d[1], d[2]), V::sub(d[4], d[3]));
    r[3] = V::fmadd(c(2.0f), d31, d42);
    r[4] = V::fmadd(c(-2.0f), d31, d42);
    r[5] = V::fmadd(c(4.0f), d[1], V::fmadd(c(-5.0f), d[3], d[5]));
  }
  // G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
  static void g(Vec g0, Vec g1, Vec g2, Vec u[6]) {
    const Vec t = V::add(g0, g2), t4 = V::fmadd(c(4.0f), g2, g0);
    u[0] = V::mul(c(0.25f), g0);
    u[1] = V::mul(c(-1.0f / 6), V::add(t, g1)), u[2] = V::mul(c(-1.0f / 6), V::sub(t, g1));
    u[3] = V::mul(c(1.0f / 24), V::fmadd(c(2.0f), g1, t4)), u[4] = V::mul(c(1.0f / 24), V::fmadd(c(-2.0f), g1, t4));
    u[5] = g2;
  }
  // A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
  static void at(const Vec m[6], Vec y[4]) {
    const Vec a = V::add(m[1], m[2]), b = V::sub(m[1], m[2]), s = V::add(m[3], m[4]), d = V::sub(m[3], m[4]);
    y[0] = V::add(V::add(m[0], a), s);
    y[1] = V::fmadd(c(2.0f), d, b);
    y[2] = V::fmadd(c(4.0f), s, a);
    y[3] = V::add(V::fmadd(c(8.0f), d, b), m[5]);
  }
  // A = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1]
  static void a(const Vec y[4], Vec r[6]) {
    const Vec e = V::add(y[0], y[2]), o = V::add(y[1], y[3]);
    const Vec e4 = V::fmadd(c(4.0f), y[2], y[0]), o8 = V::fmadd(c(8.0f), y[3], V::add(y[1], y[1]));
    r[0] = y[0], r[1] = V::add(e, o), r[2] = V::sub(e, o), r[3] = V::add(e4, o8), r[4] = V::sub(e4, o8), r[5] = y[3];
  }
  // G^T = [1/4 -1/6 -1/6 1/24 1/24 0; 0 -1/6 1/6 1/12 -1/12 0; 0 -1/6 -1/6 1/6 1/6 1]
  static void gt(const Vec m[6], Vec w[3]) {
    const Vec s12 = V::add(m[1], m[2]), d12 = V::sub(m[1], m[2]), s34 = V::add(m[3], m[4]), d34 = V::sub(m[3], m[4]);
    w[0] = V::fmadd(c(0.25f), m[0], V::fmadd(c(-1.0f / 6), s12, V::mul(c(1.0f / 24), s34)));
    w[1] = V::fmadd(c(-1.0f / 6), d12, V::mul(c(1.0f / 12), d34));
    w[2] = V::fmadd(c(1.0f / 6), V::sub(s34, s12), m[5]);
  }
};

// u[xi][kb - kb0][i - i0][KB] for the blocks kb0 <= kb < kb1 of KB out channels and the in
// channels i0 <= i < i1 (i0 a multiple of 8): element xi of G g G^T for in channel i and out
// channel kb KB + lane, g the 3x3 filter that `rd` reads (one group, taps in row-major (r, s)
// order); lanes past `out` are zeros. G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. Runs on
// one thread: each transforms the blocks it multiplies (winograd_conv).
// Steps of kBlock out channels and kChunk in channels: the step's filters are first transposed
// into an L1 tile [i][tap][kBlock], so that the transform runs on whole vectors of out channels.
// kBlock (64; 16 for KRSC weights, below) does not shrink with AVX2's KB = 16, so the prefetches
// below run as far ahead of the rows read; each vector of L lanes lands in one block of KB (L
// divides KB and kBlock).
template <int WM, typename T>
void winograd_transform_filter(const FilterReader<T>& rd, int64_t out, int64_t KB, int64_t kb0, int64_t kb1,
                               int64_t i0, int64_t i1, float* u, int64_t xi_step) {
  using V = VecF32;
  using Vec = V::type;
  constexpr int L = V::kLanes;
  constexpr int64_t kChunk = FilterReader<T>::kChunk, kLine = FilterReader<T>::kLine;
  const int64_t kAhead = 8;
  const WeightSource<T>& src = rd.src;
  // KRSC weights (in channels contiguous, out channels far apart): 16 out channels a step. A
  // step reads a short run per tap and row, 64 rows x 9 taps spanned more pages than the data TLB
  // holds, and every step walked them again: A/B, 2 threads, Xeon with AMX, channels-last 256 @14
  // N=1 0.53 -> 0.49 ms (the KCRS weights' time), 512 @7 N=2 1.73 -> 1.56, 1024 @7 N=2 8.3 -> 7.0.
  const int64_t kBlock = src.in_stride == 1 && src.out_stride != 1 ? 16 : 64;
  using F = Wino<WM>;
  constexpr int A = F::kA;
  std::vector<float> tile(9 * kChunk * kBlock);
  for (int64_t o0 = kb0 * KB; o0 < kb1 * KB; o0 += kBlock)
    for (int64_t ic = i0; ic < i1; ic += kChunk) {
      const int64_t ilen = std::min(kChunk, i1 - ic);
      // Out channels [o0, o0 + olen) read, lanes up to o0 + wlen written (the last KB block's tail: zeros).
      const int64_t wlen = std::min(kBlock, kb1 * KB - o0), olen = std::max<int64_t>(0, std::min(wlen, out - o0));
      if (src.out_stride == 1) {  // out channels contiguous (dgrad of KRSC weights): row copies
        for (int64_t i = 0; i < ilen; ++i)
          for (int t = 0; t < 9; ++t)
            convert_n(src.base + o0 + src.tap_offset[t] + (ic + i) * src.in_stride, &tile[(i * 9 + t) * kBlock], olen);
      } else {
        for (int64_t l = 0; l < olen; l += 8) {
          // Rows are far apart (out_stride): no stream for the hardware prefetchers to follow, so
          // ask for the lines of rows kAhead on now. res5's 512 x 512 filter, 2 threads: 2.1 -> 1.0 ms.
          for (int64_t r = l + kAhead; r < std::min(olen, l + kAhead + 8); ++r) {
            const T* ahead = src.base + (o0 + r) * src.out_stride + ic * src.in_stride;
            const int64_t a = (reinterpret_cast<uintptr_t>(ahead) / sizeof(T)) % kLine;
            for (int64_t x : rd.lines[a]) __builtin_prefetch(ahead + x);
          }
          // 8 rows at a time through 8 x 8 register transposes where 8 of a row's elements are
          // neighbours: its taps (KCRS; dgrad's flipped KCRS) or its chunk of in channels (KRSC).
          const T* row = src.base + (o0 + l) * src.out_stride + ic * src.in_stride;
          float* col = tile.data() + l;
          if (l + 8 <= olen && rd.tap_dir != 0) {
            const int t_first = rd.tap_dir > 0 ? 0 : 8, t_last = 8 - t_first;  // t_first: the lowest address
            for (int64_t i = 0; i < ilen; ++i) {
              transpose8x8(row + i * src.in_stride + src.tap_offset[t_first], src.out_stride,
                           col + (i * 9 + t_first) * kBlock, rd.tap_dir * kBlock);
              for (int r = 0; r < 8; ++r)
                col[(i * 9 + t_last) * kBlock + r] =
                    load_acc(row + r * src.out_stride + i * src.in_stride + src.tap_offset[t_last]);
            }
          } else if (l + 8 <= olen && src.in_stride == 1 && ilen == kChunk) {
            for (int t = 0; t < 9; ++t)
              transpose8x8(row + src.tap_offset[t], src.out_stride, col + t * kBlock, 9 * kBlock);
          } else {
            for (int64_t r = 0; r < std::min<int64_t>(8, olen - l); ++r)
              for (int64_t i = 0; i < ilen; ++i)
                for (int t = 0; t < 9; ++t)
                  col[(i * 9 + t) * kBlock + r] =
                      load_acc(row + r * src.out_stride + src.tap_offset[t] + i * src.in_stride);
          }
        }
      }
      if (olen < wlen)
        for (int64_t ti = 0; ti < 9 * kChunk; ++ti)
          std::fill(&tile[ti * kBlock + olen], &tile[ti * kBlock + wlen], 0.0f);
      for (int64_t l = 0; l < wlen; l += L)  // i inner: U's rows for one block of KB are consecutive
        for (int64_t i = 0; i < ilen; ++i) {
          const float* gi = tile.data() + i * 9 * kBlock + l;
          Vec t[3][A];  // G g, one column s at a time
          for (int s = 0; s < 3; ++s)
            F::g(V::load(gi + s * kBlock), V::load(gi + (3 + s) * kBlock), V::load(gi + (6 + s) * kBlock), t[s]);
          const int64_t o = o0 + l;
          float* dst = u + ((o / KB - kb0) * (i1 - i0) + ic - i0 + i) * KB + o % KB;
          for (int r = 0; r < A; ++r) {  // (G g) G^T
            Vec row[A];
            F::g(t[0][r], t[1][r], t[2][r], row);
            for (int c = 0; c < A; ++c) V::store(dst + (A * r + c) * xi_step, row[c]);
          }
        }
    }
}

// A thread's running check that every result it stored is finite: y * 0 is 0 for finite y and
// NaN for inf and NaN, so the sum stays 0 until one is not. report() clears `finite` if not.
struct FiniteCheck {
  VecF32::type sum = VecF32::zero();
  void add(VecF32::type y) { sum = VecF32::fmadd(y, VecF32::zero(), sum); }
  void report(std::atomic<bool>& finite) const {
    alignas(64) float lane[VecF32::kLanes];
    VecF32::store(lane, sum);
    for (float x : lane)
      if (x != 0.0f) finite.store(false, std::memory_order_relaxed);
  }
};

// Where Winograd tiles read activations: a channels-last view (float or bfloat16) of H x W
// positions per image, read as if padded by pad_h rows and pad_w columns of zeros, and by zeros
// past H and W: either the layer's own tensor in place, or a padded copy (pads 0).
template <typename TE>
struct WinogradSource {
  NhwcViewOf<TE> x;
  int64_t H, W, pad_h, pad_w;
};

// V[xi][j][c] = (B^T d B)[xi] for tiles t0 + j, j < tn, of an N x TH x TW grid of WM x WM tiles,
// d the tile's (WM + 2) x (WM + 2) patch of src (tile (ti, tj)'s patch starts at padded position
// (WM ti, WM tj); channels c < in, a multiple of the vector width); tile j's row at v + j row
// (row >= in), xi's v_step floats apart. Patches wholly inside the image load as they are; the
// others load zeros at the positions outside.
template <int WM, typename TE>
inline void winograd_input_tiles(const WinogradSource<TE>& src, int64_t TH, int64_t TW, int64_t t0, int64_t tn,
                                 int64_t in, float* v, int64_t row, int64_t v_step) {
  using F = Wino<WM>;
  using V = VecF32;
  using Vec = V::type;
  constexpr int L = V::kLanes, A = F::kA;
  const NhwcViewOf<TE>& x = src.x;
  for (int64_t j = 0; j < tn; ++j) {
    const int64_t t = t0 + j, n = t / (TH * TW), ti = t / TW % TH, tj = t % TW;
    const int64_t h0 = WM * ti - src.pad_h, w0 = WM * tj - src.pad_w;
    const TE* img = x.data + n * x.sn;
    unsigned row_ok = 0, col_ok = 0;  // bit k: patch row (column) k lies inside the image
    for (int k = 0; k < A; ++k) {
      row_ok |= unsigned(h0 + k >= 0 && h0 + k < src.H) << k;
      col_ok |= unsigned(w0 + k >= 0 && w0 + k < src.W) << k;
    }
    const bool inside = (row_ok & col_ok) == (1u << A) - 1;
    for (int64_t c = 0; c < in; c += L) {
      Vec r[A][A];  // r[s] = B^T d's column s
      for (int s = 0; s < A; ++s) {
        Vec d[A];
        if (inside) {
          const TE* col = img + h0 * x.sh + (w0 + s) * x.sw + c;
          for (int k = 0; k < A; ++k) d[k] = V::load(col + k * x.sh);
        } else {
          for (int k = 0; k < A; ++k)
            d[k] = (row_ok >> k & col_ok >> s & 1u) ? V::load(img + (h0 + k) * x.sh + (w0 + s) * x.sw + c) : V::zero();
        }
        F::bt(d, r[s]);
      }
      float* dst = v + j * row + c;
      for (int i = 0; i < A; ++i) {  // (B^T d) B: the same combinations of columns
        Vec rows[A], out[A];
        for (int s2 = 0; s2 < A; ++s2) rows[s2] = r[s2][i];
        F::bt(rows, out);
        for (int k = 0; k < A; ++k) V::store(dst + (A * i + k) * v_step, out[k]);
      }
    }
  }
}

// winograd_conv's streamed filter: for runs whose tiles' V (16 x tiles x in floats) fit in
// kStreamedInputs bytes, or kStreamedInputsMost where the run's U is 4+ times bigger, the filter
// goes kStreamIn in channels at a time (U's chunk: 16 x kStreamIn x 64+ floats, 256 KB). Each
// chunk then sweeps every tile's V, the whole-U path sweeps U once per tile block: A/B,
// streamed / whole U, 2 threads, AVX-512 (AVX2): 512 @14 N=1 (V 1.6 MB, U 8.4 MB a thread)
// 0.85-0.88 (0.73-0.84), 512 @7 N=4 (2.2 MB, 8.4 MB) 0.87 (0.72); but 256 @14 N=2 (1.6 MB,
// 2.1 MB) 1.01 (1.04), 256 @28 N=1 (3.2 MB) 1.19 (1.15), 512 @28 N=1 (6.4 MB) 1.12 (1.00).
constexpr int64_t kStreamIn = 64, kStreamedInputs = int64_t(1) << 20, kStreamedInputsMost = int64_t(3) << 20;
// F(4x4)'s U is 4x the filter in floats (F(2x2)'s 16/9), so the streamed filter pays up to a
// thread's V of 12 MB. A/B, Zen 5, 2 threads, bfloat16 N=8 channels-last forward: 512 @14 (V 9.4
// MB a thread) streamed 1.03-1.13x faster than whole U; but whole U 1.90x faster at 512 @28 (38
// MB) and 2.49x at VGG's 256 @56 (29 MB), where streaming swept all of V from memory for every
// chunk of the filter.
constexpr int64_t kStreamedInputsF4 = int64_t(12) << 20;

// The 16 planes of U, V and M lie kPlanePad floats (a cache line) past whole multiples of their
// size: those sizes are often multiples of 4 KB, and the transforms touch all 16 planes at once
// (16 lines in one 8-way L1 set). A/B, 2 threads: res5 512 @7 N=1 forward 1.37 -> 1.16 ms (the
// streamed filter's transform, 16 KB planes), res4 256 @14 N=1 0.77 -> 0.72 ms.
constexpr int64_t kPlanePad = 16;

// Tiles per work item: V (16 TB in floats) at most 768 KB, so that it stays in the L2 (1 MB a
// Zen 4 core) while U's slices stream through; few enough for 16+ items where the problem allows;
// between MR and 8 MR; then evened out over the blocks, so that the items are alike (2 threads
// split them in halves: 49 tiles in blocks of 12, 12, 12, 12 and 1 left one thread with 40% more
// work). Each item re-reads its out block's U (16 in KB floats, from the L3): more tiles per item,
// less U traffic per multiply. With 512+ in channels that traffic decides, so blocks of in / 8
// tiles (up to 16 MR) where the 16 items allow: each U element fetched serves one multiply-add per
// tile of the block, and U's 2 MB (512 in) fetched for 24 tiles an item held the multiplies to
// half the FMA rate (V's planes are used one at a time: one plane and U's slice stay within the
// L2, whatever V's whole size). A/B, Xeon, 2 threads,
// forward / input gradient: 512 @28 N=1 1.16-1.22x, 512 @7 N=8 1.21-1.26x, N=4 1.07-1.10x, 512
// @14 N=2 1.20-1.23x, 1024 @7 N=4 1.62-1.88x, N=8 1.48-1.70x; N=2 0.97-1.00x. With 256 in (in / 8
// = 32, under the 48 of the L2 bound) nothing changes; there larger blocks gained 1-3.5% (256 @14
// N=8) and lost 1-11% with 64-128 in.
template <int MR>
int64_t winograd_tile_block(int64_t in, int64_t tiles, int64_t out_blocks, int64_t planes) {
  const int64_t fit = (int64_t(768) << 10) / (planes * in * int64_t(sizeof(float)));
  const int64_t cap = tiles * out_blocks / 16;
  int64_t most = std::clamp<int64_t>(std::min(fit, cap), MR, 8 * MR);
  most = std::max(most, std::min({in / 8, cap, 16 * int64_t(MR)}));
  const int64_t blocks = (tiles + most - 1) / most;
  return (tiles + blocks - 1) / blocks;
}

// y(n, WM ti + a, WM tj + b, o) = bias[o] + sum over (i, r, s) of x(n, WM ti + a + r, WM tj + b + s,
// i) f(o, i, r, s) for every output row < P and column < Q, by F(WM x WM, 3 x 3) tiles; f the 3x3
// filter `rd` reads (float or bfloat16) and bias (may be null) zero-padded to whole blocks of KB =
// NV lanes. x is float, channels-last with its origin at the top-left of the padded input, readable
// over N x (WM ceil(P/WM) + 2) x (WM ceil(Q/WM) + 2) positions; in is a multiple of the vector
// width. y (float or bfloat16, rounded once) has element strides ys in (n, o, h, w) order.
// Returns false if an output is not finite (the caller reruns on the direct engine).
//
// Work items are (tile block, out block); each thread takes one contiguous run of them and
// transforms the filter for the out blocks its run touches into its own U. A U shared by the
// threads (one transform, every thread reading all of it) ran res4's 256 @14 N=1 forward at 0.68 ms
// on this 2-vCPU VM, but for seconds at a time at 1.6-1.8 ms: whenever the two vCPUs sat in
// different cache domains, each store of the next call's transform waited on the other thread's
// copy of the line (the transform alone 5x slower; torch and single-thread runs unchanged).
// Items run out block by out block where there are fewer tiles than out channels (each thread then
// transforms its share of the filter and all the tiles' inputs), else tile block by tile block
// (each thread transforms the whole filter and its share of the inputs): whichever repeats less.
template <int WM, int MR, int NV, typename TF, typename TY, typename TE>
bool winograd_conv(const WinogradSource<TE>& x, int64_t N, int64_t in, int64_t out, int64_t P, int64_t Q,
                   const FilterReader<TF>& rd, const float* bias, TY* y, const int64_t ys[4]) {
  using V = VecF32;
  using Vec = V::type;
  using F = Wino<WM>;
  constexpr int L = V::kLanes, A = F::kA;
  constexpr int64_t KB = NV * L, kPlanes = F::kPlanes;
  const int64_t nkb = (out + KB - 1) / KB, TH = (P + WM - 1) / WM, TW = (Q + WM - 1) / WM, tiles = N * TH * TW;
  const int64_t TB = winograd_tile_block<MR>(in, tiles, nkb, kPlanes), nblocks = (tiles + TB - 1) / TB;
  const int64_t nitems = nblocks * nkb, units = std::min(parallel_threads(), nitems);
  // Whole-filter copies per thread, streamed once per tile block, must stay in the L3 together
  // (16 MiB, half of this Zen 4's): past that, out-block order. 512 @28 N=4 (two 16.8 MB
  // copies): 37.5 -> 41.1 ms on AVX2, 34.1 -> 35.1 on AVX-512 with whole copies.
  const bool out_major =
      tiles < nkb * KB || units * kPlanes * nkb * KB * in * int64_t(sizeof(float)) > (int64_t(16) << 20);
  const int64_t v_step = TB * in + kPlanePad, m_step = TB * KB + kPlanePad;
  std::atomic<bool> finite{true};
  parallel_for(0, units, 1, [&](int64_t ub, int64_t ue) {
    ScratchOf<float> vbuf(kPlanes * v_step), mbuf(kPlanes * m_step);
    float* v = vbuf.data();
    float* m = mbuf.data();
    std::vector<int64_t> v_off(TB), m_off(TB);
    for (int64_t j = 0; j < TB; ++j) v_off[j] = j * in, m_off[j] = j * KB;
    const int64_t no_offset[1] = {0};
    const Vec zero = V::zero();
    FiniteCheck check;
    // stage[a][col][L]: output rows WM ti + a, columns WM tj + c of the block's tiles, one channel
    // vector. Consecutive tiles along a tile row leave as runs of columns: on planes (columns
    // contiguous) 8 x 8 transposes store 8 columns of 8 channels at a time (VGG 64 @224 NCHW
    // spent ~25% of its time in the lane-by-lane scatter this replaces), bfloat16 too, rounded at
    // the store (in-process A/B against its lane-by-lane scatter, arms in random order, Zen 5, 2
    // threads, NCHW N=8: 64 @56 1.19x, 128 @28 1.09x; planes a power of two apart, whose lines
    // share cache sets, 64 @64 1.84x, 64 @128 1.71x).
    std::vector<float> stage(WM * WM * TB * L);
    auto store_stage = [&](const float* st, int64_t t0, int64_t tn, int64_t o, int64_t lanes) {
      for (int64_t j = 0; j < tn;) {
        const int64_t t = t0 + j, n = t / (TH * TW), ti = t / TW % TH, tj = t % TW;
        const int64_t run = std::min(tn - j, TW - tj), q0 = WM * tj, cols = std::min(WM * run, Q - q0);
        const int64_t c8 = ys[3] == 1 ? cols / 8 * 8 : 0, l8 = lanes / 8 * 8;
        for (int a = 0; a < WM && WM * ti + a < P; ++a) {
          const float* src = st + (a * WM * TB + WM * j) * L;
          TY* dst = y + n * ys[0] + o * ys[1] + (WM * ti + a) * ys[2] + q0 * ys[3];
          for (int64_t c = 0; c < c8; c += 8)
            for (int64_t l = 0; l < l8; l += 8) transpose8x8(src + c * L + l, L, dst + l * ys[1] + c, ys[1]);
          for (int64_t c = 0; c < cols; ++c)
            for (int64_t l = (c < c8 ? l8 : 0); l < lanes; ++l) store_from(dst + l * ys[1] + c * ys[3], src[c * L + l]);
        }
        j += run;
      }
    };
    // M[xi] (+)= V[xi] U[xi] for a block's tn tiles (as the tile's pixels) over cin in channels.
    auto multiply = [&](const float* vb, int64_t tn, const float* ub, int64_t u_xi_step, int64_t cin, float* mb,
                        bool accumulate) {
      for (int xi = 0; xi < kPlanes; ++xi)
        for (int64_t j = 0; j < tn; j += MR)
          conv_tile_upto<FmaF32, MR, NV>(int(std::min<int64_t>(MR, tn - j)), vb + xi * v_step, v_off.data() + j,
                                         no_offset, 1, ub + xi * u_xi_step, cin, KB, nullptr, nullptr,
                                         mb + xi * m_step, m_off.data() + j, accumulate);
    };
    // y of tile block tb and out block kb from the block's M.
    auto emit = [&](int64_t tb, int64_t kb, const float* m) {
      const int64_t t0 = tb * TB, tn = std::min(TB, tiles - t0);
      // Y = A^T M A plus the bias; stored where the tile is inside P x Q: whole vectors of
      // channels in place (channels-last), else through `stage` (planes).
      for (int nv = 0; nv < NV && kb * KB + nv * L < out; ++nv) {
        const int64_t o = kb * KB + nv * L, lanes = std::min<int64_t>(L, out - o);
        const bool in_place = ys[1] == 1 && lanes == L;
        for (int64_t j = 0; j < tn; ++j) {
          const int64_t t = t0 + j, n = t / (TH * TW), p = WM * (t / TW % TH), q = WM * (t % TW);
          const float* mt = m + j * KB + nv * L;
          Vec s[A][WM];  // s[c] = A^T applied to M's column c
          for (int c = 0; c < A; ++c) {
            Vec col[A];
            for (int r = 0; r < A; ++r) col[r] = V::load(mt + (A * r + c) * m_step);
            F::at(col, s[c]);
          }
          const Vec bv = bias ? V::load(bias + o) : zero;
          for (int a = 0; a < WM && p + a < P; ++a) {
            Vec row[A], yv[WM];
            for (int c = 0; c < A; ++c) row[c] = s[c][a];
            F::at(row, yv);
            for (int c = 0; c < WM && q + c < Q; ++c) {
              yv[c] = V::add(yv[c], bv);
              check.add(yv[c]);
              if (in_place)
                V::store(y + n * ys[0] + (p + a) * ys[2] + (q + c) * ys[3] + o, yv[c]);
              else
                V::store(stage.data() + (a * WM * TB + WM * j + c) * L, yv[c]);
            }
          }
        }
        if (!in_place) store_stage(stage.data(), t0, tn, o, lanes);
      }
    };
    for (int64_t unit = ub; unit < ue; ++unit) {
      const int64_t i0 = unit * nitems / units, i1 = (unit + 1) * nitems / units;
      if (i0 >= i1) continue;
      auto runs = [&](int64_t tb, int64_t kb) {
        const int64_t item = out_major ? kb * nblocks + tb : tb * nkb + kb;
        return item >= i0 && item < i1;
      };
      int64_t kb_lo = nkb, kb_hi = 0, tb_lo = nblocks, tb_hi = 0;
      for (int64_t item = i0; item < i1; ++item) {
        const int64_t tb = out_major ? item % nblocks : item / nkb, kb = out_major ? item / nblocks : item % nkb;
        kb_lo = std::min(kb_lo, kb), kb_hi = std::max(kb_hi, kb + 1);
        tb_lo = std::min(tb_lo, tb), tb_hi = std::max(tb_hi, tb + 1);
      }
      const int64_t ntb = tb_hi - tb_lo;
      const int64_t v_bytes = ntb * kPlanes * v_step * int64_t(sizeof(float));
      const int64_t u_bytes = kPlanes * (kb_hi - kb_lo) * in * KB * int64_t(sizeof(float));
      if (out_major && v_bytes <= (WM == 4 ? kStreamedInputsF4
                                           : std::min(kStreamedInputsMost, std::max(kStreamedInputs, u_bytes / 4)))) {
        // Few tiles: all their V first, then the filter kStreamIn in channels at a time, each
        // chunk's U multiplied into every tile block's M while it is in the L1 / L2: the filter is
        // read once and U never goes to memory (a whole U is 16/9 of the filter written and read
        // back: for res5's 9.4 MB filter at N=1, more than the multiplies saved).
        // Out blocks go kGroup at a time (64+ out channels: AVX2's blocks of 16 alone would make
        // the transform read 8 filter rows per 8 x 8 transpose for 2 vectors of U).
        const int64_t kGroup = std::max<int64_t>(1, 64 / KB), mg = ntb * kPlanes * m_step;
        ScratchOf<float> vall(ntb * kPlanes * v_step), mall(kGroup * mg);
        ScratchOf<float> uchunk(kPlanes * (kGroup * kStreamIn * KB + kPlanePad));
        for (int64_t tb = tb_lo; tb < tb_hi; ++tb)
          winograd_input_tiles<WM>(x, TH, TW, tb * TB, std::min(TB, tiles - tb * TB), in,
                                   vall.data() + (tb - tb_lo) * kPlanes * v_step, in, v_step);
        for (int64_t g0 = kb_lo; g0 < kb_hi; g0 += kGroup) {
          const int64_t g1 = std::min(kb_hi, g0 + kGroup);
          for (int64_t c0 = 0; c0 < in; c0 += kStreamIn) {
            const int64_t cin = std::min(kStreamIn, in - c0), u_step = (g1 - g0) * cin * KB + kPlanePad;
            winograd_transform_filter<WM>(rd, out, KB, g0, g1, c0, c0 + cin, uchunk.data(), u_step);
            for (int64_t kb = g0; kb < g1; ++kb)
              for (int64_t tb = tb_lo; tb < tb_hi; ++tb)
                if (runs(tb, kb))
                  multiply(vall.data() + (tb - tb_lo) * kPlanes * v_step + c0, std::min(TB, tiles - tb * TB),
                           uchunk.data() + (kb - g0) * cin * KB, u_step, cin,
                           mall.data() + (kb - g0) * mg + (tb - tb_lo) * kPlanes * m_step, c0 > 0);
          }
          for (int64_t kb = g0; kb < g1; ++kb)
            for (int64_t tb = tb_lo; tb < tb_hi; ++tb)
              if (runs(tb, kb)) emit(tb, kb, mall.data() + (kb - g0) * mg + (tb - tb_lo) * kPlanes * m_step);
        }
        continue;
      }
      const int64_t u_step = (kb_hi - kb_lo) * in * KB + kPlanePad;
      ScratchOf<float> ubuf(kPlanes * u_step);
      winograd_transform_filter<WM>(rd, out, KB, kb_lo, kb_hi, 0, in, ubuf.data(), u_step);
      for (int64_t tb = tb_lo; tb < tb_hi; ++tb) {
        const int64_t tn = std::min(TB, tiles - tb * TB);
        bool v_ready = false;
        for (int64_t kb = kb_lo; kb < kb_hi; ++kb) {
          if (!runs(tb, kb)) continue;
          if (!v_ready) {
            winograd_input_tiles<WM>(x, TH, TW, tb * TB, tn, in, v, in, v_step);
            v_ready = true;
          }
          multiply(v, tn, ubuf.data() + (kb - kb_lo) * in * KB, u_step, in, m, false);
          emit(tb, kb, m);
        }
      }
    }
    check.report(finite);
  });
  return finite.load();
}

// The weight gradient of the same convolutions. By the transposition principle, the gradient of
// a tile's y = A^T [(G g G^T) . V] A with respect to g is G^T [(A dY A^T) . V] G, dY the tile's 2x2
// of dy (zeros past P and Q). So per (k, c), dW = G^T M G with M[xi][k][c] = sum over tiles of
// Dy[xi][k] V[xi][c], Dy = A dY A^T and V = B^T d B as in the forward: 16 GEMMs whose reduction runs
// over the N TH TW tiles, 16 multiply-adds per tile and (k, c) where direct summation takes 36
// (F(4x4): 36 GEMMs, 36 multiply-adds per 4x4 tile where direct takes 144).
//
// Work: M is cut into super-blocks of kWgradRows out channels k x kWgradCols in channels c (M's
// share, 16 x 96 x 64 floats) and the tiles into S fixed splits (more splits
// where there are few super-blocks, so 2 threads have work); an item is (super-block, split). It
// walks its tiles in chunks of kWgradChunk (twice that with 512+ c), transforms the chunk's V for
// its c and Dy for its k (Dy transposed to [xi][k][tile] through 8x8 blocks: the register tile
// broadcasts Dy along the tiles and loads V as vectors), and accumulates its M share with
// conv_tile. The splits' partial sums are added in split order: the result does not depend on the
// thread count.
constexpr int64_t kWgradRows = 96, kWgradCols = 64, kWgradChunk = 32;

// kn out channels x cn in channels (a multiple of the vector width) of dw (element strides ws;
// float or bfloat16, rounded once), from their first at dw: G^T M G, M[xi][k][c] the sum of
// `splits` partial sums split_step floats apart, at m + xi m_plane + k m_row + c. Adds the
// results to `check`.
template <int WM, typename TO>
inline void winograd_wgrad_finish(const float* m, int64_t m_plane, int64_t m_row, int64_t splits, int64_t split_step,
                                  int64_t kn, int64_t cn, TO* dw, const int64_t ws[4], FiniteCheck& check) {
  using F = Wino<WM>;
  using V = VecF32;
  using Vec = V::type;
  constexpr int L = V::kLanes, A = F::kA;
  for (int64_t k = 0; k < kn; ++k)
    for (int64_t c = 0; c < cn; c += L) {
      Vec mx[F::kPlanes];
      for (int xi = 0; xi < F::kPlanes; ++xi) {
        const float* at = m + xi * m_plane + k * m_row + c;
        mx[xi] = V::load(at);
        for (int64_t sp = 1; sp < splits; ++sp) mx[xi] = V::add(mx[xi], V::load(at + sp * split_step));
      }
      Vec z[3][A];  // G^T M, then (G^T M) G
      for (int j = 0; j < A; ++j) {
        Vec col[A], w[3];
        for (int i = 0; i < A; ++i) col[i] = mx[A * i + j];
        F::gt(col, w);
        for (int r = 0; r < 3; ++r) z[r][j] = w[r];
      }
      for (int r = 0; r < 3; ++r) {
        Vec w3[3];
        F::gt(z[r], w3);
        for (int s = 0; s < 3; ++s) {
          check.add(w3[s]);
          TO* dst = dw + k * ws[0] + r * ws[2] + s * ws[3] + c * ws[1];
          if (ws[1] == 1) {
            V::store(dst, w3[s]);
          } else {
            alignas(64) float lane[L];
            V::store(lane, w3[s]);
            for (int l = 0; l < L; ++l) store_from(dst + l * ws[1], lane[l]);
          }
        }
      }
    }
}

// dw (K x C x 3 x 3, element strides ws; float or bfloat16) = G^T M G per (k, c) from x
// (channels-last, float or bfloat16, padded as for the forward: origin at the padded top-left,
// readable over N x (WM TH + 2) x (WM TW + 2)) and dy (channels-last, the same type, readable over
// N x WM TH x WM TW, zeros past P and Q). C and K are multiples of 16. Returns false if an element
// of dw is not finite.
template <int WM, int MR, int NV, typename TO, typename TE>
bool winograd_wgrad(const WinogradSource<TE>& x, const NhwcViewOf<TE>& dy, int64_t N, int64_t C, int64_t K, int64_t P,
                    int64_t Q, TO* dw, const int64_t ws[4]) {
  using F = Wino<WM>;
  using V = VecF32;
  using Vec = V::type;
  constexpr int L = V::kLanes, A = F::kA, kPlanes = F::kPlanes;
  constexpr int64_t KB = NV * L;
  // With 512+ in channels, chunks of 64 tiles: half the trips of M's share through the register
  // tiles (A/B, Xeon, 2 threads, against 32: 512 @28 N=1 1.13x, 512 @7 N=8 1.07x, 512 @14 N=2
  // 1.04x, 1024 @7 N=4 1.05x; chunks of 128: 1.02-1.17x, less even). With fewer in channels 64
  // measured level (0.99-1.00x at 64-256 @56-14), so they keep 32. F(4x4) on Zen 5 (bfloat16, N=8
  // 64 @56 to 512 @7): chunks of 8, 16 or 64 against 32, and super-blocks of 48 rows (V, Dy and M's
  // share then fit the 1 MB L2), measured 0.82-1.08x: it keeps these.
  const int64_t TC = C >= 512 ? 2 * kWgradChunk : kWgradChunk;
  static_assert(kWgradRows % MR == 0 && kWgradRows % L == 0 && kWgradCols % KB == 0, "super-blocks of whole tiles");
  const int64_t TH = (P + WM - 1) / WM, TW = (Q + WM - 1) / WM, tiles = N * TH * TW;
  const int64_t ncc = (C + kWgradCols - 1) / kWgradCols, Cp = ncc * kWgradCols;
  // The splits (and so the sums' order) follow from the shape alone, never the thread count.
  const int64_t nkr_fit = (K + kWgradRows - 1) / kWgradRows;
  const int64_t splits = std::clamp<int64_t>((8 + nkr_fit * ncc - 1) / (nkr_fit * ncc), 1, std::max<int64_t>(1, tiles / 16));
  // Row blocks: multiples of 16 of balanced sizes, but 256 in 3 is 80 + 80 + 96, and 2 threads
  // over the items (row block major) then held 120 and 136 rows' worth (first / others 0.87-0.88
  // on res4's 256 @14 N=8, VGG's 256 @56). Where the row blocks do not divide among the threads,
  // more of them, until they are equal or do: 256 -> 4 x 64. Each item keeps whole rows of M, so
  // the partition does not change a sum. In-process A/B (arms in random order, same bits asserted,
  // 2 threads): 256 @14 N=8 1.06-1.07x, N=1 0.95-1.09x, 256 @56 N=1 1.05-1.08x, others level. Equal
  // blocks everywhere made 512 (6 x 80-96 rows, even on 2 threads) 2% slower: the rule keeps its 6.
  int64_t nkr = nkr_fit;
  while (nkr % parallel_threads() != 0 && (K / 16) % nkr != 0 && nkr < K / 16) ++nkr;
  const int64_t supers = nkr * ncc;
  // One split: each item holds whole sums of its M share (in a buffer of its thread's) and
  // transforms them into dw itself, while they are in the L2. Else M[split][xi][k][Cp], summed
  // and transformed after all items. In-process A/B against M in memory, 2 threads, Zen 5, N=8
  // float32: 512 @7 (M 16 MB) 1.10x, 256 @14 (4 MB) 1.03x.
  const bool fused = splits == 1;
  const int64_t m_row = fused ? kWgradCols : Cp, m_plane = (fused ? kWgradRows * kWgradCols : K * Cp) + kPlanePad;
  const int64_t split_step = kPlanes * m_plane;
  ScratchOf<float> mbuf(fused ? 0 : splits * split_step);
  // Planes a cache line past multiples of 4 KB (kPlanePad, as the forward's). A/B, with both
  // changes against neither, float32 N=8: 64 @56 1.07-1.14x, 128 @28 1.05x, 256 @14 1.19x, 512 @7
  // 1.16x (NCHW 1.28x), 512 @14 N=2 1.32x.
  const int64_t v_plane = TC * kWgradCols + kPlanePad, d_plane = kWgradRows * TC + kPlanePad;
  const int64_t s_plane = TC * L + kPlanePad;
  std::atomic<bool> finite{true};
  parallel_for(0, supers * splits, 1, [&](int64_t b, int64_t e) {
    ScratchOf<float> vbuf(kPlanes * v_plane), dbuf(kPlanes * d_plane), stage(kPlanes * s_plane);
    ScratchOf<float> mloc(fused ? split_step : 0);
    std::vector<int64_t> dy_off(TC);
    float* v = vbuf.data();
    float* d = dbuf.data();
    FiniteCheck check;
    const int64_t no_offset[1] = {0};
    int64_t x_off[MR], out_off[MR];
    for (int mi = 0; mi < MR; ++mi) out_off[mi] = mi * m_row;
    for (int64_t item = b; item < e; ++item) {
      const int64_t sb = item / splits, split = item % splits;
      // Row blocks of balanced sizes, multiples of 16 (K is): 128 -> 64 + 64, not 96 + 32.
      const int64_t k0 = sb / ncc * K / nkr / 16 * 16, kn = (sb / ncc + 1) * K / nkr / 16 * 16 - k0;
      const int64_t c0 = sb % ncc * kWgradCols, cn = std::min(kWgradCols, C - c0), cp = (cn + KB - 1) / KB * KB;
      const int64_t ts0 = tiles * split / splits, ts1 = tiles * (split + 1) / splits;
      float* m = fused ? mloc.data() : mbuf.data() + split * split_step + k0 * Cp + c0;
      const WinogradSource<TE> xc{{x.x.data + c0, x.x.sn, x.x.sh, x.x.sw}, x.H, x.W, x.pad_h, x.pad_w};
      for (int64_t t0 = ts0; t0 < ts1; t0 += TC) {
        const int64_t tn = std::min(TC, ts1 - t0), tn8 = (tn + 7) / 8 * 8;
        winograd_input_tiles<WM>(xc, TH, TW, t0, tn, cn, v, cp, v_plane);
        if (cp > cn)  // lanes past C: zeros (their sums are never read, but stay finite)
          for (int xi = 0; xi < kPlanes; ++xi)
            for (int64_t j = 0; j < TC; ++j) std::fill(v + xi * v_plane + j * cp + cn, v + xi * v_plane + (j + 1) * cp, 0.0f);
        for (int64_t j = 0; j < tn; ++j) {
          const int64_t t = t0 + j, n = t / (TH * TW), ti = t / TW % TH, tj = t % TW;
          dy_off[j] = n * dy.sn + WM * ti * dy.sh + WM * tj * dy.sw + k0;
        }
        for (int64_t kv = 0; kv < kn; kv += L) {  // Dy = A dY A^T for channels k0 + kv + lane
          for (int64_t j = 0; j < tn8; ++j) {
            float* st = stage.data() + j * L;
            if (j < tn) {
              Vec r[A][WM];  // r[.][b] = A times column b of dY
              for (int bcol = 0; bcol < WM; ++bcol) {
                Vec col[WM];
                for (int arow = 0; arow < WM; ++arow)
                  col[arow] = V::load(dy.data + dy_off[j] + arow * dy.sh + bcol * dy.sw + kv);
                Vec out[A];
                F::a(col, out);
                for (int i = 0; i < A; ++i) r[i][bcol] = out[i];
              }
              for (int i = 0; i < A; ++i) {
                Vec out[A];
                F::a(r[i], out);
                for (int jj = 0; jj < A; ++jj) V::store(st + (A * i + jj) * s_plane, out[jj]);
              }
            } else {
              for (int xi = 0; xi < kPlanes; ++xi) V::store(st + xi * s_plane, V::zero());
            }
          }
          for (int xi = 0; xi < kPlanes; ++xi)
            for (int64_t j = 0; j < tn8; j += 8)
              for (int l = 0; l < L; l += 8)
                transpose8x8(stage.data() + xi * s_plane + j * L + l, L, d + xi * d_plane + (kv + l) * TC + j, TC);
        }
        for (int xi = 0; xi < kPlanes; ++xi)
          for (int64_t kr = 0; kr < kn; kr += MR) {
            for (int mi = 0; mi < MR; ++mi) x_off[mi] = (kr + mi) * TC;
            for (int64_t cb = 0; cb < cp; cb += KB)
              conv_tile_upto<FmaF32, MR, NV>(int(std::min<int64_t>(MR, kn - kr)), d + xi * d_plane, x_off,
                                             no_offset, 1, v + xi * v_plane + cb, tn, cp, nullptr, nullptr,
                                             m + xi * m_plane + kr * m_row + cb, out_off, t0 > ts0);
          }
      }
      if (fused)
        winograd_wgrad_finish<WM>(m, m_plane, m_row, 1, 0, kn, cn, dw + k0 * ws[0] + c0 * ws[1], ws, check);
    }
    check.report(finite);
  });
  if (!fused)
    parallel_for(0, K, 4, [&](int64_t b, int64_t e) {
      FiniteCheck check;
      winograd_wgrad_finish<WM>(mbuf.data() + b * m_row, m_plane, m_row, splits, split_step, e - b, C, dw + b * ws[0], ws,
                                check);
      check.report(finite);
    });
  return finite.load();
}

// 2x2 output tiles over N images of P x Q outputs (half tiles at odd edges).
inline int64_t winograd_tile_count(int64_t N, int64_t P, int64_t Q) { return N * ((P + 1) / 2) * ((Q + 1) / 2); }

// Whether Winograd takes a stride-1 3x3 convolution of `in` -> `out` channels (one group, no
// dilation) with N x P x Q outputs. in must fill whole vectors (16 floats on both ISAs, so they
// take the same cases). Below 24 tiles only wide layers gain (the streamed filter keeps U out of
// memory): in-process A/B, 2 threads, Zen 4, Winograd speedup over direct at N=1: 512 @7 (16
// tiles) 1.6, 512 @6 (9) 2.3, 256 @7 (16) 1.8, 128 @8 (16) 1.35, 128 @5 (9) 1.2, 512 <-> 128 @7
// 1.5; but 64 @8 (16) 1.0, 32 @8 (16) 0.72, 512 @4 (4 tiles) 0.87. From 24 tiles: 256 @10 (25)
// 1.28, 64 @10 (25) 1.07.
inline bool winograd_applies(const Conv2dProblem& p, int64_t in, int64_t out, int64_t P, int64_t Q) {
  const int64_t tiles = winograd_tile_count(p.N, P, Q);
  return (p.dtype == DType::f32 || p.dtype == DType::bf16) && p.groups == 1 && p.R == 3 && p.S == 3 && p.stride_h == 1 && p.stride_w == 1 &&
         p.dil_h == 1 && p.dil_w == 1 && in % 16 == 0 && in >= 32 && out >= 32 &&
         (tiles >= 24 || (tiles >= 9 && in >= 128 && out >= 128));
}

// Whether F(4x4) tiles over N x P x Q outputs of `in` channels beat the bfloat16 dot engine: the
// filter's transform (U, 4x the filter's size in floats) is a fixed cost per call that takes 32+
// tiles to repay with 512 in channels, 48+ with fewer. In-process A/B, 2 threads, Zen 5,
// channels-last forward / input gradient, dot ms / F(4x4) ms: 256 @14 N=1 (16 tiles) 0.92 / 0.88,
// N=2 (32) 0.98 / 0.96, N=4 (64) 1.16; 512 @14 N=2 (32) 1.14; 512 @7 N=8 (32) 1.17, N=2 0.97 /
// 0.79; 128 @28 N=1 (49) 1.21 / 1.15; 64 @16 N=1 0.57 / 0.51.
inline int64_t f4_tile_count(int64_t N, int64_t P, int64_t Q) { return N * ((P + 3) / 4) * ((Q + 3) / 4); }
inline bool f4_tiles_pay(int64_t N, int64_t P, int64_t Q, int64_t in) {
  const int64_t tiles = f4_tile_count(N, P, Q);
  return tiles >= 48 || (tiles >= 32 && in >= 512);
}

// The 3x3 filter w (K x C x 3 x 3, any strides) as winograd_transform_filter reads it: out channel k
// and in channel c, taps in row-major order; transposed (the input gradient's): out channel c and
// in channel k, the taps flipped in r and s. `in` counts the in channels.
template <typename T>
inline WeightSource<T> filter_3x3(const ConstView4& w, bool transposed, int64_t in) {
  const int64_t* ws = w.stride;
  WeightSource<T> f{static_cast<const T*>(w.data), 0, ws[transposed ? 1 : 0], ws[transposed ? 0 : 1], in, {}};
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t s = 0; s < 3; ++s)
      f.tap_offset.push_back(transposed ? (2 - r) * ws[2] + (2 - s) * ws[3] : r * ws[2] + s * ws[3]);
  return f;
}

// Rows (or columns) of padded input that WM x WM tiles over `out` outputs read: the padded
// input's, or more where the last tile reaches past it (out not a multiple of WM), zeros there.
inline int64_t tiled_extent(int64_t in, int64_t pad, int64_t out, int64_t WM = 2) {
  return std::max(in + 2 * pad, WM * ((out + WM - 1) / WM) + 2);
}

// Activations src (N x C x H x W, strides st, storage T) as the Winograd transforms read them,
// padded by pad_h and pad_w and by zeros to Hp x Wp positions: channels-last tensors in place
// (the tiles on the edges load zeros where they reach outside), others as a padded channels-last
// copy. With !edges (a reader of plain views: winograd_wgrad's dy), in place only where no
// padding is needed. In place against the copy, in-process A/B, Zen 5, N=8 channels-last fwd /
// dgrad / wgrad: float32 64 @56 to 512 @7 0.99-1.05x, bfloat16 64 @56 and 256 @14 0.95-1.04x,
// VGG's 64 @224 N=2 1.04-1.08x; and no padded copy of x to hold. bfloat16 stays bfloat16 (the
// transforms widen it as they load): half the bytes a float32 copy writes and they read. In-process A/B of the bfloat16 copy against a float32 one, Zen 5, 2
// threads, forward / input gradient: VGG's 64 @224 N=2 1.30x / 1.24x, N=8 64 @56 1.21x / 1.11x
// (NCHW 1.11x / 1.12x), 256 @14 1.11x / 1.09x, 128 @28 1.02x / 1.03x, 512 @7 1.05x / 1.04x.
template <typename T>
struct WinogradInput {
  ScratchOf<T> copy{0};
  WinogradSource<T> src;
};
template <typename T>
inline WinogradInput<T> winograd_input(const T* src, const int64_t st[4], int64_t N, int64_t C, int64_t H, int64_t W,
                                       int64_t pad_h, int64_t pad_w, int64_t Hp, int64_t Wp, bool edges = true) {
  WinogradInput<T> r;
  const bool unpadded = pad_h == 0 && pad_w == 0 && Hp == H && Wp == W;
  if (st[1] == 1 && (edges || unpadded)) {
    r.src = {{src, st[0], st[2], st[3]}, H, W, pad_h, pad_w};
  } else {
    r.copy = pack_activations<T, T>(src, st, N, C, H, W, pad_h, pad_w, Hp, Wp);
    r.src = {{r.copy.data(), Hp * Wp * C, Wp * C, C}, Hp, Wp, 0, 0};
  }
  return r;
}

// Runs winograd_conv for input activations src (N x in x H x W, strides st; padded by pad_h,
// pad_w) into y (N x out x P x Q): F(2x2) for float32, F(4x4) for bfloat16 (results rounded
// once to bfloat16). False if an output was not finite.
template <typename T>
inline bool winograd_conv_of(const T* src, const int64_t st[4], int64_t N, int64_t in, int64_t H, int64_t W,
                             int64_t pad_h, int64_t pad_w, const WeightSource<T>& f, int64_t out, int64_t P,
                             int64_t Q, const T* bias, T* y, const int64_t ys[4]) {
  constexpr int WM = std::is_same_v<T, float> ? 2 : 4;
  const int64_t Hp = tiled_extent(H, pad_h, P, WM), Wp = tiled_extent(W, pad_w, Q, WM);
  const WinogradInput<T> xp = winograd_input(src, st, N, in, H, W, pad_h, pad_w, Hp, Wp);
  bool finite = true;
  auto body = [&]<int MR, int NV>() {
    constexpr int64_t KB = NV * VecF32::kLanes;
    std::vector<float> bias_blocks;
    if (bias) {
      bias_blocks.assign((out + KB - 1) / KB * KB, 0.0f);
      for (int64_t o = 0; o < out; ++o) bias_blocks[o] = load_acc(bias + o);
    }
    finite = winograd_conv<WM, MR, NV>(xp.src, N, in, out, P, Q, FilterReader<T>(f),
                                       bias ? bias_blocks.data() : nullptr, y, ys);
  };
  // AVX2: 3 tiles x 4 vectors (KB = 32) where there are 17+ out channels; in-process A/B against
  // the direct engine's 6 x 2, 2 threads, N=1: 512 @28 and @7, 256 @56 and @14 3-5% faster
  // (6 x 2 and 4 x 3 measured alike; 2 x 5 10-25% slower).
  if (VecF32::kLanes == 8 && out > 16)
    body.template operator()<3, 4>();
  else
    with_tile(out, in, body);
  return finite;
}

// With 16-23 tiles, a forward of 512+ out channels whose weights are channels-last (KRSC: each out
// channel's in channels contiguous per tap) runs faster on the direct engine where 512-bit FMAs
// run at twice the 256-bit rate: direct reads those weights in place, while Winograd transforms
// all of them every call, and its KRSC reads (one short run per tap and row) cost it more than
// KCRS ones (winograd_transform_filter). In-process A/B, 2 threads, N=1, channels-last input and
// weights, Xeon with AMX, direct's speedup: 512 @7 (16 tiles) 1.15, 1024 @7 1.2, 256 -> 1024 @7
// 1.16; but 512 @6 (9 tiles) 0.92, and before the transform's KRSC fix 384 @7 0.64, 512 -> 256 @7
// 0.71, 1024 -> 256 @7 0.76, 256 @7 0.59. Zen 5 512 @7: 1.08. On Zen 4 (split 512-bit FMAs)
// Winograd won 512 @7.
inline bool direct_reads_weights_faster(const Conv2dProblem& p, const ConstView4& w) {
  const int64_t tiles = winograd_tile_count(p.N, p.P, p.Q);
  return VecF32::kLanes == 16 && tiles >= 16 && tiles < 24 && w.stride[1] == 1 && p.K >= 512 && p.C >= 256 &&
         zmm_fma_rate_ratio() >= 1.5;
}

template <typename T>
inline bool conv2d_fprop_winograd(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  if constexpr (!std::is_same_v<T, float> && !std::is_same_v<T, bf16>) {
    return false;
  } else {
    if (!winograd_applies(p, p.C, p.K, p.P, p.Q) || direct_reads_weights_faster(p, a.w)) return false;
    if (std::is_same_v<T, bf16> && (!f4_tiles_pay(p.N, p.P, p.Q, p.C))) return false;
    const WeightSource<T> f = filter_3x3<T>(a.w, /*transposed=*/false, p.C);
    if (!winograd_conv_of(static_cast<const T*>(a.x.data), a.x.stride, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, f, p.K,
                          p.P, p.Q, static_cast<const T*>(a.bias), static_cast<T*>(a.y.data), a.y.stride))
      conv2d_fprop_direct<T>(a);  // a non-finite output: rerun with direct summation
    return true;
  }
}

// dx = conv(dy padded by 2 - pad, w flipped in r and s with k and c swapped): padding up to 2.
template <typename T>
inline bool conv2d_dgrad_winograd(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if constexpr (!std::is_same_v<T, float> && !std::is_same_v<T, bf16>) {
    return false;
  } else {
    if (!winograd_applies(p, p.K, p.C, p.H, p.W) || p.pad_h > 2 || p.pad_w > 2) return false;
    if (std::is_same_v<T, bf16> && (!f4_tiles_pay(p.N, p.H, p.W, p.K))) return false;
    const WeightSource<T> f = filter_3x3<T>(a.w, /*transposed=*/true, p.K);
    if (!winograd_conv_of<T>(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K, p.P, p.Q, 2 - p.pad_h,
                             2 - p.pad_w, f, p.C, p.H, p.W, nullptr, static_cast<T*>(a.dx.data), a.dx.stride))
      conv2d_dgrad_direct<T>(a);
    return true;
  }
}

// dW of the forward's convolution: x padded as the forward reads it, dy padded to whole tiles.
// F(2x2) for float32, F(4x4) in float32 for bfloat16 (x and dy read into float32 copies).
template <typename T>
inline bool conv2d_wgrad_winograd(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if constexpr (!std::is_same_v<T, float> && !std::is_same_v<T, bf16>) {
    return false;
  } else {
    constexpr int WM = std::is_same_v<T, float> ? 2 : 4;
    // Small problems (under 2^20 tile x k x c products: 64 -> 64 @10) lose to their fixed costs
    // (two packs, M's final transform): A/B 0.7-0.9x; so do fewer than 24 tiles (512 @7 N=1, 16
    // tiles: 0.8x; the reduction runs over the tiles).
    const int64_t tiles2 = winograd_tile_count(p.N, p.P, p.Q);
    if (!winograd_applies(p, p.C, p.K, p.P, p.Q) || p.K % 16 != 0 || tiles2 < 24 ||
        tiles2 * p.K * p.C < (int64_t(1) << 20))
      return false;
    // bfloat16: F(4x4) from 48 tiles. A/B, Zen 5, 2 threads, channels-last:
    // - against the float engine's direct weight gradient (AVX2, or no fast vdpbf16ps), direct ms /
    //   F(4x4) ms: N=8 64 @56 4.68 / 1.94, 128 @28 4.41 / 1.76, 256 @14 4.28 / 2.27, 512 @7 4.40 /
    //   3.36; N=1 128 @28 (49 tiles) 0.55 / 0.30, 64 @56 0.54 / 0.25; but 256 @14 N=1 (16 tiles)
    //   0.55 / 0.56, 512 @14 N=1 2.27 / 2.50, 64 @16 N=2 (32) level. AVX2 (forced, bfloat16 read
    //   as bfloat16), N=8: 64 @56 3.33x, 128 @28 3.11x, 256 @14 2.13x, 512 @7 1.03x, N=1 128 @28 2.06x;
    // - against the vdpbf16ps engine, dot / F(4x4): N=8 64 @56 2.42 / 2.11, 128 @28 2.28 / 1.77,
    //   256 @28 9.9 / 8.8, 512 @28 40.2 / 33.3; N=1 128 @28 (49 tiles) 1.26x, 256 @28 1.14x, 512
    //   @28 1.17x; 14 and 7 wide (tiles covering 31% more outputs) 256 @14 N=8 (128 tiles) 1.11x,
    //   512 @14 1.19x, 512 @7 N=16 (64) 1.25x, 256 @14 N=4 (64) 1.00x; but 32 tiles lose: 512 @7
    //   N=8 0.72x, 256 @14 N=2 0.61x, 512 @14 N=2 0.61x.
    // Half of an F(4x4) run is multiply-adds, the rest transforms and moving V, Dy and M (perf).
    if (std::is_same_v<T, bf16> && f4_tile_count(p.N, p.P, p.Q) < 48) return false;
    const int64_t TH = (p.P + WM - 1) / WM, TW = (p.Q + WM - 1) / WM;
    const int64_t Hp = tiled_extent(p.H, p.pad_h, p.P, WM), Wp = tiled_extent(p.W, p.pad_w, p.Q, WM);
    const WinogradInput<T> xp =
        winograd_input(static_cast<const T*>(a.x.data), a.x.stride, p.N, p.C, p.H, p.W, p.pad_h, p.pad_w, Hp, Wp);
    const WinogradInput<T> dyp = winograd_input(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K, p.P, p.Q, 0,
                                                0, WM * TH, WM * TW, false);
    // The forward's wide tile (6 k rows x 4 or 2 vectors of c): with_tile's narrow ones are for big
    // weights, and M's super-blocks hold whole wide tiles.
    constexpr int kVectors = VecF32::kLanes == 16 ? 4 : 2;
    if (!winograd_wgrad<WM, 6, kVectors>(xp.src, dyp.src.x, p.N, p.C, p.K, p.P, p.Q, static_cast<T*>(a.dw.data),
                                         a.dw.stride))
      conv2d_wgrad_direct<T>(a);
    return true;
  }
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
