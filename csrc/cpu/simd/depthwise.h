// Depthwise convolution (groups == C_in == C_out) for float32 and bfloat16, vectorised over channels on
// channels-last data: a memory-bound op (R S multiply-adds per element moved), so the kernels
// read each input element once per tap from L1 or L2 and write each output once. Included inside
// the ISA namespace after conv2d_direct.h (AVX2 and AVX-512 builds).
//
//   fprop   one thread item per output row (n, p): per pixel the list of in-bounds taps, then
//           per channel vector acc = bias + sum over taps x * w; filters of 10+ taps on bands
//           of zero-padded channel-vector rows (depthwise_fprop_vector_rows); on NCHW planes at
//           stride 1 or 2, register tiles of output rows (depthwise_fprop_plane_tiles); planes of
//           rows half a vector or shorter at stride 1, as flat lanes (depthwise_fprop_flat_planes)
//   dgrad   stride 1: fprop of dy with the rotated filter; NCHW dx at stride 2: plane tiles per
//           dx row parity (depthwise_dgrad_planes_s2_tiles); else per input row (n, h): each
//           column stride phase's interior as one depthwise_row, the edges per pixel (filters
//           whose phases hold 10+ taps, 7 x 7 /2, one fprop per stride phase instead)
//   wgrad   per chunk of output rows and channel vector: dw[tap] partials, summed in chunk order;
//           on NCHW planes, per channel register tiles of filter rows that share x rows
//           (depthwise_wgrad_plane_tiles)
//
// NCHW tensors with wide enough rows skip the transposes: their kernels take a plane's columns
// as the vector lanes (depthwise_fprop_planes, depthwise_dgrad_planes_s2, the plane tiles;
// column stride 1 or 2, a stride-2 row split into even and odd columns).
//
// Tensors whose channels are contiguous and a multiple of the vector width are used in place;
// others go through channels-last scratch of the same storage type with the channels padded to
// whole vectors. bfloat16 stays bfloat16 in memory (the op is memory-bound): the kernels widen it
// in registers, accumulate in float and round each result once (to nearest even).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../reference/conv2d_reference.h"  // TapRange, valid_outputs
#include "conv2d_direct.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// The weights (C, 1, R, S) as float wp[tap][Cp] (zero-padded channels), packed by each thread for
// itself, one channel vector at a time as its items first ask for it. Made inside a parallel_for
// body: the buffer is that thread's recycled scratch, already in its cache. One copy packed by the
// calling thread and read by all had two costs: rewriting lines the other core had read is a
// snoop per line (a standalone loop on this VM: 960 x 3 x 3 took 4.4 us after another thread read
// the result, 1.0 us when none had), and the other thread waited (ConvNeXt's 768 @7 at N=1: the
// pack, element by element then, was 14% of the time, as much as the calling thread's share of
// the kernel). Contiguous taps (the usual (C, 1, R, S) tensor, or the input gradient's view of it
// rotated by 180 degrees) go as register transposes of a vector's channels x 8 taps (transpose16x8
// on AVX-512, transpose8x8), the rest element by element.
template <typename T>
class ThreadDepthwiseWeights {
 public:
  ThreadDepthwiseWeights(const T* w, const int64_t ws[4], int64_t C, int64_t R, int64_t S)
      : w_(w), ws_{ws[0], ws[1], ws[2], ws[3]}, C_(C), S_(S), Cp_(padded_channels(C)), taps_(R * S),
        wp_(taps_ * Cp_), packed_(Cp_ / VecF32::kLanes, false) {}
  // wp, with channel vectors [v0, v0 + vn) packed.
  const float* vectors(int64_t v0, int64_t vn) {
    for (int64_t v = v0; v < v0 + vn; ++v)
      if (!packed_[v]) pack(v), packed_[v] = true;
    return wp_.data();
  }
  const float* all() { return vectors(0, int64_t(packed_.size())); }

 private:
  void pack(int64_t v) {
    constexpr int64_t L = VecF32::kLanes;
    const int64_t c0 = v * L, cn = std::min(L, C_ - c0), t8 = taps_ - taps_ % 8;
    float* d = wp_.data() + c0;
    int64_t t_tail = 0;  // the taps from here on go element by element
    // Tap t at w + c ws[0] + t step: in order, or reversed (the input gradient's rotated filter).
    const int64_t step = ws_[3];
    if ((step == 1 || step == -1) && ws_[2] == S_ * step && cn == L) {
      for (int64_t t = 0; t < t8; t += 8) {
        // Reversed, taps t + 7 .. t lie in order from w + c ws[0] - (t + 7): written from row t + 7 down.
        const T* src = w_ + c0 * ws_[0] + (step == 1 ? t : -(t + 7));
        float* dst = d + (step == 1 ? t : t + 7) * Cp_;
#if defined(__AVX512F__)
        transpose16x8(src, ws_[0], dst, step * Cp_);
#else
        transpose8x8(src, ws_[0], dst, step * Cp_);
#endif
      }
      t_tail = t8;
    }
    // (r, s) stepped along, not divided out per tap: a division per element had made the stride-2
    // input gradients' phases (strided taps, all element by element) 10-20% slower.
    for (int64_t c = 0; c < cn; ++c) {
      const T* wc = w_ + (c0 + c) * ws_[0];
      for (int64_t t = t_tail, r = t_tail / S_, s = t_tail % S_; t < taps_; ++t) {
        d[t * Cp_ + c] = load_acc(wc + r * ws_[2] + s * ws_[3]);
        if (++s == S_) s = 0, ++r;
      }
    }
    for (int64_t t = 0; t < taps_; ++t) std::fill(d + t * Cp_ + cn, d + t * Cp_ + L, 0.0f);
  }
  const T* w_;
  int64_t ws_[4], C_, S_, Cp_, taps_;
  ScratchOf<float> wp_;
  std::vector<bool> packed_;
};

// The bias (C elements of storage type T, or null: zeros) as floats, zero-padded to whole vectors.
template <typename T>
inline std::vector<float> depthwise_bias(const void* bias, int64_t C) {
  std::vector<float> b(padded_channels(C), 0.0f);
  if (bias)
    for (int64_t c = 0; c < C; ++c) b[c] = load_acc(static_cast<const T*>(bias) + c);
  return b;
}

// out[q][c] = init[c] + sum over T taps of x[q step + tap_offset[t] + c] w[tap_w[t] + c], for q in
// [q0, q1) and every channel vector: one channel vector at a time, its T weight vectors held in
// registers across the row's pixels, so each multiply-add loads only its input. Pixel by pixel
// with all channels of a pixel in turn (sequential streams, but the weights re-read from L1:
// two loads per FMA) was 1.1-1.7x slower on Zen 4 (in-process A/B, 2 threads, channels_last,
// AVX-512 and AVX2: 144 @ 56 N=1 1.5x, N=8 1.0-1.3x; 960 @ 7 N=8 1.5-1.6x; 96 @ 112 1.5-1.7x).
template <int T, typename E>
inline void depthwise_row(const E* x, int64_t step, const int64_t* tap_offset, const float* w,
                          const int64_t* tap_w, const float* init, int64_t nv, int64_t q0, int64_t q1, E* out,
                          int64_t out_step) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  // Local copies: the stores to out could alias the offset arrays as far as the compiler knows.
  int64_t toff[T];
  const float* wt[T];
  for (int t = 0; t < T; ++t) toff[t] = tap_offset[t], wt[t] = w + tap_w[t];
  for (int64_t v = 0; v < nv; ++v) {
    typename V::type wv[T];
    for (int t = 0; t < T; ++t) wv[t] = V::load(wt[t] + v * L);
    const typename V::type init_v = V::load(init + v * L);
    const E* xv = x + v * L;
    E* ov = out + v * L;
    for (int64_t q = q0; q < q1; ++q) {
      typename V::type acc = init_v;
      for (int t = 0; t < T; ++t) acc = V::fmadd(V::load(xv + q * step + toff[t]), wv[t], acc);
      V::store(ov + q * out_step, acc);
    }
  }
}

// depthwise_row for a run-time tap count (up to 9, a 3 x 3 filter); false when there are more.
template <typename E>
inline bool depthwise_row_any(int64_t taps, const E* x, int64_t step, const int64_t* tap_offset, const float* w,
                              const int64_t* tap_w, const float* init, int64_t nv, int64_t q0, int64_t q1, E* out,
                              int64_t out_step) {
  switch (taps) {
#define CNNKERNELS_DW_CASE(T) \
  case T: depthwise_row<T>(x, step, tap_offset, w, tap_w, init, nv, q0, q1, out, out_step); return true;
    CNNKERNELS_DW_CASE(1) CNNKERNELS_DW_CASE(2) CNNKERNELS_DW_CASE(3) CNNKERNELS_DW_CASE(4) CNNKERNELS_DW_CASE(5)
    CNNKERNELS_DW_CASE(6) CNNKERNELS_DW_CASE(7) CNNKERNELS_DW_CASE(8) CNNKERNELS_DW_CASE(9)
#undef CNNKERNELS_DW_CASE
    default: return false;
  }
}

// out[c] = init[c] (zero when null) + sum over taps t of a[a_off[t] + c] w[w_off[t] + c], for all
// nv channel vectors of one pixel: the per-pixel path, where the in-bounds taps vary.
template <typename E>
inline void depthwise_pixel(const E* a, const int64_t* a_off, const float* w, const int64_t* w_off, int64_t taps,
                            const float* init, int64_t nv, E* out) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  for (int64_t v = 0; v < nv; ++v) {
    typename V::type acc = init ? V::load(init + v * L) : V::zero();
    for (int64_t t = 0; t < taps; ++t) acc = V::fmadd(V::load(a + a_off[t] + v * L), V::load(w + w_off[t] + v * L), acc);
    V::store(out + v * L, acc);
  }
}

// Rows per band when P output rows go in bands of at most `most`: the fewest bands, of equal
// rows where P allows. Bands of 8 split 28 rows 8 + 8 + 8 + 4, and the thread holding the short
// band had a quarter less work than the other (5 x 5 /2 144 @56 channels-last N=1: the first
// thread's bands took 1.35x the second's cycles).
inline int64_t even_bands(int64_t P, int64_t most) {
  const int64_t bands = (P + most - 1) / most;
  return (P + bands - 1) / bands;
}

inline bool is_depthwise(const Conv2dProblem& p) { return p.groups == p.C && p.K == p.C && p.groups > 1; }

// even[j] = x[2 j], odd[j] = x[2 j + 1] as floats, for the W elements of one input row (a
// stride-2 row split into its column phases once, so every tap then loads whole vectors). Blocks
// of 32 columns on AVX-512 (two-source permutes), else 16; the last block overlaps its neighbour
// from an even column (the same values stored twice), leaving at most the last column of an odd
// row to a scalar copy. (Scalar tails had taken a third of a 56-column stride-2 forward's time.)
template <typename T>
inline void deinterleave_row(const T* x, int64_t W, float* even, float* odd) {
  int64_t j = 0;
  const auto block16 = [&](int64_t j) {
    const __m256 a = load8(x + 2 * j), b = load8(x + 2 * j + 8);
    // shuffle_ps takes lanes (0, 2) or (1, 3) of a and b per 128-bit half: a0 a2 b0 b2 | a4 a6 b4 b6;
    // the 64-bit permute puts the halves' pairs in order.
    store8(even + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8)));
    store8(odd + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8)));
  };
#if defined(__AVX512F__)
  if (W >= 32) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    const auto block32 = [&](int64_t j) {
      const __m512 a = VecF32::load(x + 2 * j), b = VecF32::load(x + 2 * j + 16);
      _mm512_storeu_ps(even + j, _mm512_permutex2var_ps(a, ie, b));
      _mm512_storeu_ps(odd + j, _mm512_permutex2var_ps(a, io, b));
    };
    for (; 2 * j + 32 <= W; j += 16) block32(j);
    if (2 * j < W - 1) block32((W - 32) / 2), j = (W - 32) / 2 + 16;
  }
#endif
  if (W >= 16) {
    for (; 2 * j + 16 <= W; j += 8) block16(j);
    if (2 * j < W - 1) block16((W - 16) / 2), j = (W - 16) / 2 + 8;
  }
  for (int64_t w = 2 * j; w < W; ++w) (w % 2 ? odd : even)[w / 2] = load_acc(x + w);
}

// One NCHW plane's rows split into even and odd columns (deinterleave_row), for the stride-2
// planes kernels: row h's even columns at 2 h half, its odd ones half further. Empty unless `on`.
struct PhaseRows {
  int64_t H, W, half;
  ScratchOf<float> rows;
  PhaseRows(bool on, int64_t H, int64_t W) : H(H), W(W), half((W + 1) / 2), rows(on ? 2 * H * half : 0) {}
  template <typename T>
  void split(const T* plane, int64_t row_stride) {
    for (int64_t h = 0; h < H; ++h)
      deinterleave_row(plane + h * row_stride, W, rows.data() + 2 * h * half, rows.data() + (2 * h + 1) * half);
  }
  // Where input column 2 q + off of row h is, minus q: 2 q + off = 2 (q + floor(off / 2)) + (off mod 2).
  const float* tap(int64_t h, int64_t off) const { return rows.data() + (2 * h + (off & 1)) * half + (off >> 1); }
};

// One NCHW plane's rows as float with pad zero columns on each side (and a vector's slack on the
// right), for the stride-1 planes kernel: every output column then reads whole vectors, none is
// a border case. Row h starts at row(h); input column c is at row(h) + pad + c.
struct PaddedRows {
  int64_t width, pad;
  ScratchOf<float> rows;
  PaddedRows(bool on, int64_t H, int64_t W, int64_t pad)
      : width(W + 2 * pad + VecF32::kLanes), pad(pad), rows(on ? H * width : 0) {
    if (on) std::fill(rows.data(), rows.data() + H * width, 0.0f);
  }
  template <typename T>
  void fill(const T* plane, int64_t row_stride, int64_t H, int64_t W) {
    for (int64_t h = 0; h < H; ++h) convert_n(plane + h * row_stride, rows.data() + h * width + pad, W);
  }
  const float* row(int64_t h) const { return rows.data() + h * width; }
};

// Asks for slice i of `steps` of a plane of rows x cols elements (rows row_stride apart): rows
// [i rows / steps, (i + 1) rows / steps). The planes kernels below walk one (n, c) plane after
// another; past the caches (kPrefetchPlanesBytes of input and output), they call this for the
// next plane's inputs as they go down the current one: a plane's short rows are separate streams
// to the hardware prefetchers, which stalled on every new plane. In-process A/B (arms in random
// order), 2 threads, Zen 4, N=8: fwd 144 @ 56 3.34 -> 3.06 ms, stride 2 1.27 -> 1.25, 32 @ 112
// 1.74 -> 1.47; stride-1 dgrad (a forward) 144 @ 56 3.21 -> 2.75; wgrad 144 @ 56 2.11 -> 2.09,
// stride 2 1.29 -> 1.17. Prefetching the outputs for writing as well gained nothing; the
// stride-2 dgrad lost 7% with either; in cache (96 @ 112 /2, N=1) the wgrad lost 10%.
constexpr int64_t kPrefetchPlanesBytes = int64_t(12) << 20;
template <typename T>
inline void prefetch_plane_slice(const T* plane, int64_t rows, int64_t cols, int64_t row_stride, int64_t i,
                                 int64_t steps) {
  constexpr int64_t kLine = 64 / int64_t(sizeof(T));
  for (int64_t h = i * rows / steps; h < (i + 1) * rows / steps; ++h)
    for (int64_t l = 0; l < cols; l += kLine) __builtin_prefetch(plane + h * row_stride + l);
}

// fprop on NCHW planes (columns contiguous in x and y, channels not), column stride 1 or 2 (stride
// 1 with 3, 5 or 7 filter rows runs on tiles of output rows instead, depthwise_fprop_plane_tiles):
// output columns are the vector lanes, one plane row at a time, with the plane's R x S weights
// broadcast in registers. The channels-last path below would transpose the input in and the
// output back out (at N=8, MobileNetV2 144 @ 56: 3.4 ms against PyTorch's 2.0 ms). With stride 2
// each input row is first split into its even and odd columns (deinterleave_row), and tap s
// reads the phase of its column offset s dil - pad, shifted by half of it. Interior columns
// (every tap in bounds) run in vectors, the last one overlapping its neighbour rather than
// leaving a tail; border columns are scalar, summing in the same (r, s) order.
template <typename T>
inline bool depthwise_fprop_planes(const Conv2dFpropArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  constexpr int64_t kMaxTaps = 9;  // larger filters run on vector rows (depthwise_fprop_vector_rows)
  const Conv2dProblem& p = a.p;
  const int64_t *xs = a.x.stride, *ys = a.y.stride, *ws = a.w.stride;
  if (p.dtype != dtype_of<T>() || !is_depthwise(p) || (p.stride_w != 1 && p.stride_w != 2) || xs[3] != 1 ||
      ys[3] != 1 || xs[1] == 1 || ys[1] == 1 || p.R * p.S > kMaxTaps)
    return false;
  int64_t q_lo = 0, q_hi = p.Q;  // interior columns
  for (int64_t s = 0; s < p.S; ++s) {
    const TapRange qr = valid_outputs(p.Q, p.W, p.stride_w, p.pad_w, p.dil_w, s);
    q_lo = std::max(q_lo, qr.lo), q_hi = std::min(q_hi, qr.hi);
  }
  if (q_hi - q_lo < L) return false;
  // While input and output fit in the caches, the channels-last path's transposes are cheap and
  // its kernel (channels as lanes, no border columns) is faster, and so it is on narrow rows; wide
  // rows favour the planes. Measured (2 threads, fwd and the stride-1 dgrad alike):
  //  - Zen 4, 144 @ 56 (1 thread): N=1 (3.6 MB in + out) 0.39 ms channels-last vs 0.48 ms here,
  //    N=8 (29 MB) 7.2 vs 3.8 ms.
  //  - Zen 3: planes win at 32 @ 112 N=1 (3.2 MB) 0.31 vs 0.47 ms, 144 @ 56 N=2 (7.2 MB) 0.84 vs
  //    1.19, 192 @ 28 N=8 (9.6 MB) 1.9 vs 2.4; channels-last wins at 576 @ 14 N=8 (7.2 MB) 1.8 vs
  //    2.6, 192 @ 28 N=1 0.19 vs 0.30, 576 @ 14 N=1 0.19 vs 0.39, 144 @ 56 N=1 0.46 vs 0.49.
  //  - Zen 4 again, stride 1, once both paths had been reworked (padded rows here, weights in
  //    registers there), 2 threads: channels-last wins at 144 @ 56 N=2 (6.9 MiB) 0.36 vs 0.51 ms
  //    and 192 @ 28 N=8 (9.2 MiB) 0.78 vs 1.0, the planes at 144 @ 56 N=3 (10.3 MiB) 0.87 vs 0.97,
  //    N=8 2.3 vs 3.7, 192 @ 28 N=16 2.0 vs 2.6: past 10 MiB.
  // Stride 2 (output rows half as wide, plus the split), Zen 3: planes win at 144 @ 56 N=8 (18 MB)
  // 2.1 vs 5.1 ms and 96 @ 112 N=1 0.45 vs 0.48, lose at 144 @ 56 N=2 (4.5 MB) 0.37 vs 0.29 and
  // 192 @ 28 N=8 1.5 vs 0.79: they need rows of 56+ columns and 8+ MiB.
  const int64_t bytes = p.N * p.C * (p.H * p.W + p.P * p.Q) * int64_t(sizeof(T));
  const bool wide = p.stride_w == 1 ? p.W >= 28 && bytes > (int64_t(10) << 20) : p.W >= 56 && bytes > (int64_t(8) << 20);
  if (!(p.W >= 96 || wide)) return false;
  const bool prefetch = bytes > kPrefetchPlanesBytes;
  const T* x = static_cast<const T*>(a.x.data);
  const T* w = static_cast<const T*>(a.w.data);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y.data);
  const bool split = p.stride_w == 2;
  // Stride 1 reads zero-padded copies of the plane's rows (PaddedRows), so every column is a
  // vector column: the scalar border columns had cost more than the vectors on 56-column rows
  // (in-process A/B, Zen 4, 2 threads: 144 @ 56 N=2 1.3-1.4x, 192 @ 28 N=8 1.5x, 96 @ 112 1.2x).
  const bool padded = !split;
  const int64_t v_lo = padded ? 0 : q_lo, v_hi = padded ? p.Q : q_hi;  // columns done by vectors
  parallel_for(0, p.N * p.C, 1, [&](int64_t b, int64_t e) {
    float wk[kMaxTaps];
    typename V::type wv[kMaxTaps];
    // Per in-bounds tap of an output row: where output column q's input is (+ q), its weight.
    const T* tap_x[kMaxTaps];
    const float* tap_f[kMaxTaps];
    int64_t tap_w[kMaxTaps];
    PhaseRows phases(split, p.H, p.W);
    PaddedRows padded_rows(padded, p.H, p.W, p.pad_w);
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / p.C, c = nc % p.C;
      for (int64_t t = 0; t < p.R * p.S; ++t) {
        wk[t] = load_acc(w + c * ws[0] + (t / p.S) * ws[2] + (t % p.S) * ws[3]);
        wv[t] = V::broadcast(wk + t);
      }
      const float b0 = bias ? load_acc(bias + c) : 0.0f;
      const typename V::type bv = V::broadcast(&b0);
      const T* xp = x + n * xs[0] + c * xs[1];
      T* yp = y + n * ys[0] + c * ys[1];
      if (split) phases.split(xp, xs[2]);
      if (padded) padded_rows.fill(xp, xs[2], p.H, p.W);
      for (int64_t pp = 0; pp < p.P; ++pp) {
        if (prefetch && nc + 1 < e)
          prefetch_plane_slice(x + (nc + 1) / p.C * xs[0] + (nc + 1) % p.C * xs[1], p.H, p.W, xs[2], pp, p.P);
        int64_t nt = 0;
        for (int64_t r = 0; r < p.R; ++r) {
          const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
          if (h < 0 || h >= p.H) continue;
          for (int64_t s = 0; s < p.S; ++s, ++nt) {
            const int64_t off = s * p.dil_w - p.pad_w;  // input column of output column q: q stride + off
            tap_w[nt] = r * p.S + s;
            if (split)
              tap_f[nt] = phases.tap(h, off);
            else if (padded)
              tap_f[nt] = padded_rows.row(h) + padded_rows.pad + off;
            else
              tap_x[nt] = xp + h * xs[2] + off;
          }
        }
        T* yrow = yp + pp * ys[2];
        // Up to kBlock vectors of a row at a time: each tap's weight and row pointer then serve
        // kBlock loads and FMAs (one vector per tap visit measured ~2 cycles per output).
        constexpr int kBlock = 4;
        auto vectors_at = [&](const auto* const* src, int64_t q, int nvec) {
          typename V::type acc[kBlock];
          for (int j = 0; j < kBlock; ++j) acc[j] = bv;
          for (int64_t t = 0; t < nt; ++t) {
            const typename V::type wt = wv[tap_w[t]];
            for (int j = 0; j < kBlock; ++j)
              if (j < nvec) acc[j] = V::fmadd(wt, V::load(src[t] + q + j * L), acc[j]);
          }
          for (int j = 0; j < nvec; ++j) V::store(yrow + q + j * L, acc[j]);
        };
        auto row_vectors = [&](const auto* const* src) {
          int64_t q = v_lo;
          for (; q + kBlock * L <= v_hi; q += kBlock * L) vectors_at(src, q, kBlock);
          if (v_hi - q >= L) vectors_at(src, q, int((v_hi - q) / L));  // the rest in whole vectors,
          if ((v_hi - q) % L) vectors_at(src, v_hi - L, 1);            // then one overlapping the last
        };
        if (split || padded)
          row_vectors(tap_f);
        else
          row_vectors(tap_x);
        auto scalar_at = [&](int64_t q) {
          float acc = b0;
          for (int64_t r = 0; r < p.R; ++r) {
            const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
            if (h < 0 || h >= p.H) continue;
            for (int64_t s = 0; s < p.S; ++s) {
              const int64_t col = q * p.stride_w - p.pad_w + s * p.dil_w;
              if (col >= 0 && col < p.W) acc += wk[r * p.S + s] * load_acc(xp + h * xs[2] + col);
            }
          }
          store_from(yrow + q, acc);
        };
        for (int64_t q = 0; q < v_lo; ++q) scalar_at(q);
        for (int64_t q = v_hi; q < p.Q; ++q) scalar_at(q);
      }
    }
  });
  return true;
}

// Filters of more than 9 taps (ConvNeXt's 7 x 7, EfficientNet's 5 x 5), whose tap weights do not
// all fit in registers beside the accumulators (depthwise_row). An item is a band of output rows
// of one image and a block of channel vectors: their input rows go into a per-thread buffer of
// rows of channel vectors with padding columns, [row][v][wp][L] (the pixels of a channel vector L
// floats apart; the filter rows that fall outside the image are skipped, their rows never
// written), and a register tile of QB consecutive output pixels of one channel vector sums the
// taps in (r, s) order, each tap's weight vector loaded once
// for the QB pixels, every input load at a constant offset from one pointer (SW: the column
// stride, 0 for a run-time one); rows of KS = 5 or 7 taps slide instead (depthwise_sliding_row:
// one load per input vector, not per FMA). (The per-pixel path, two loads per FMA and the tap lists rebuilt
// per pixel, had run these: ConvNeXt 96 @56 7 x 7 channels_last N=1 0.36x PyTorch. Padding all of
// x first cost more than PyTorch's whole forward at N=8: 5 x 5 /2 144 @56 1.26 ms against 0.37;
// channels-last padded pixels instead of vector rows kept 14 pixel pointers, half of them in xmm
// registers.)
constexpr int64_t kDepthwiseRowTaps = 9;            // the most depthwise_row_any holds in registers
constexpr int64_t kBandBytes = int64_t(384) << 10;  // an item's padded input rows, kept in the L2
// Output pixels per sliding tile: AVX-512 14, AVX2 7 (7 sums, 7 weights and an input vector of 16
// registers). ConvNeXt's and EfficientNet's rows are multiples of 7; AVX2's 6 had computed 60
// pixels for 56 and 18 for 14 (A/B, arms in random order, 2 threads, channels_last, N=1 7 x 7 96
// @56 forward 1.15x, input gradient 1.16x, N=8 1.08x / 1.20x; 192 @28 1.10x; 5 x 5 240 @28 1.09x,
// 480 @14 1.20x, 1152 @7 1.28x, /2 144 @56 1.06x; on the vector rows 7 x 7 384 @14 N=1 1.2x,
// N=8 1.3x, 768 @7 1.3x / 1.5x).
constexpr int kSlidingPixels = VecF32::kLanes == 16 ? 14 : 7;

// acc[i] += the taps of filter row r for output pixel i < QB of a vector-rows tile, KS taps of
// column stride SW and no column dilation, as a sliding window: each of the row's (QB - 1) SW +
// KS input vectors in [i_lo, i_hi) (the others are padding columns, not read: their products
// would be zeros, as the padding rows' are skipped) is loaded once and feeds every pixel it
// reaches, with the row's KS weight vectors in registers. Per pixel the taps still add in s order
// (the general tile's order, the same bits). The general tile loads an input vector per FMA.
// Input vector i is at xr + i x_step (L in the vector rows; the pixel stride where x is read in
// place). (The edge tiles of x read in place had loaded every column through a mask built per
// load: skipping the outside columns instead, A/B with arms in random order, same bits, 2
// threads: 7 x 7 96 @56 N=1 1.07x, 192 @28 1.09-1.11x (N=8 1.15x), 5 x 5 480 @14 1.09-1.10x, 240
// @28 1.07-1.08x, 5 x 5 /2 144 @56 0.98-1.03x; AVX2 1.03-1.09x.)
// kPointerWalk: x_step and w_step are run-time values (x read in place, C floats per pixel); one
// pointer each then steps along the row. With offsets i x_step GCC kept most of the 13 column and
// 7 tap offsets on the stack, a load per input vector (A/B, arms in random order, 2 threads, same
// bits, channels_last forward: 7 x 7 96 @56 N=1 1.07x, N=8 1.06x, 192 @28 1.04x / 1.12x, 5 x 5 /2
// 144 @56 1.09x / 1.08x; AVX2 1.00-1.07x). The vector rows' constant x_step keeps the offsets:
// walking there ran 0.78-1.08x, mostly slower.
template <int QB, int KS, int SW, bool kPointerWalk = false, typename E>
  requires(SW > 0)
[[gnu::always_inline]] inline void depthwise_sliding_row(const E* xr, int64_t x_step, const float* wr,
                                                         int64_t w_step, int i_lo, int i_hi, VecF32::type* acc) {
  using V = VecF32;
  typename V::type wv[KS];
  if constexpr (kPointerWalk) {
    const float* wp = wr;
#pragma GCC unroll 16
    for (int s = 0; s < KS; ++s) {
      wv[s] = V::load(wp);
      wp += w_step;
      asm("" : "+r"(wp));
    }
  } else {
#pragma GCC unroll 16
    for (int s = 0; s < KS; ++s) wv[s] = V::load(wr + s * w_step);
  }
  const E* xp = xr;  // kPointerWalk: input vector i's address, stepped along the row
#pragma GCC unroll 64
  for (int i = 0; i < (QB - 1) * SW + KS; ++i) {
    const E* xi_at = kPointerWalk ? xp : xr + i * x_step;
    if constexpr (kPointerWalk) {
      xp += x_step;
      asm("" : "+r"(xp));  // (kept a pointer: GCC would rebuild the offsets from it)
    }
    if (i < i_lo || i >= i_hi) continue;
    const typename V::type xi = V::load(xi_at);
#pragma GCC unroll 16
    for (int s = 0; s < KS; ++s) {
      const int q = (i - s) / SW;
      if (i >= s && (i - s) % SW == 0 && q < QB) acc[q] = V::fmadd(xi, wv[s], acc[q]);
    }
  }
}

// Pixels [0, n) of a run along dense NCHW planes (channel c's at src + c cs), channels c < cn, as
// vectors of L channels: dst[j L + c], zeros for c >= cn. 8 x 8 transposes (channels x pixels),
// scalar tails.
template <typename T>
inline void pixel_run_to_vectors(const T* src, int64_t cs, int64_t cn, int64_t n, float* dst) {
  constexpr int L = VecF32::kLanes;
  const int64_t c8 = cn - cn % 8, j8 = n - n % 8;
  for (int64_t c = 0; c < c8; c += 8)
    for (int64_t j = 0; j < j8; j += 8) transpose8x8(src + c * cs + j, cs, dst + j * L + c, L);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = (j < j8 ? c8 : 0); c < L; ++c) dst[j * L + c] = c < cn ? load_acc(src + c * cs + j) : 0.0f;
}

template <typename T, int SW, int QB, int KS = 0>
void depthwise_fprop_vector_rows(const Conv2dFpropArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t C = p.C, Cp = padded_channels(C), nv = Cp / L, sw = SW > 0 ? SW : p.stride_w;
  // Columns for a whole tile past the last pixel too, so that a short row's tile reads zeros.
  const int64_t Wp = std::max(p.W + 2 * p.pad_w, (std::max<int64_t>(p.Q, QB) - 1) * sw + (p.S - 1) * p.dil_w + 1);
  // Items: bands of up to 8 output rows times blocks of channel vectors whose input rows, (band
  // - 1) stride_h + (R - 1) dil_h + 1 of them, fit kBandBytes; 4+ blocks per band where there are
  // 4+ vectors, so that small images still split into enough items.
  const int64_t reach = (p.R - 1) * p.dil_h + 1, band = even_bands(p.P, 8), nbands = (p.P + band - 1) / band;
  const int64_t band_rows = (band - 1) * p.stride_h + reach;
  const int64_t vector_bytes = band_rows * Wp * L * int64_t(sizeof(float));
  const int64_t nvb = std::clamp<int64_t>(kBandBytes / vector_bytes, 1, std::max<int64_t>(1, nv / 4));
  const int64_t vblocks = (nv + nvb - 1) / nvb;
  // Dense NCHW planes are transposed straight into the items' rows; other layouts go channels-last
  // first (in place where they already are).
  const T* x = static_cast<const T*>(a.x.data);
  const int64_t* xst = a.x.stride;
  const bool planes = dense_planes(xst, p.W);
  ScratchOf<T> xs(0);
  const ChannelsLast<T> xc = planes ? ChannelsLast<T>{} : channels_last_input(x, xst, p.N, C, p.H, p.W, xs);
  // Dense NCHW planes out: each tile goes to its planes through 8 x 8 transposes (pixels x
  // channels), not through a channels-last copy of y and a pass over it at the end (A/B, arms in
  // random order, 2 threads, N=8: 7 x 7 96 @56 1.18x, 192 @28 1.07x, 384 @14 and 768 @7 level;
  // and no y-sized scratch).
  ScratchOf<T> ys(0);
  T* y = static_cast<T*>(a.y.data);
  const int64_t* yst = a.y.stride;
  const bool planes_out = dense_planes(yst, p.Q);
  int64_t columns[QB];  // a tile's output offsets along a plane row
  for (int i = 0; i < QB; ++i) columns[i] = i;
  const OutputTarget<T> out =
      planes_out ? OutputTarget<T>{{y, 0, 0, 0}, true} : channels_last_output(y, yst, p.N, C, p.P, p.Q, ys);
  const std::vector<float> bias = depthwise_bias<T>(a.bias, C);
  const int64_t s_step = p.dil_w * L, q_step = sw * L;
  const int64_t nqb = (p.Q + QB - 1) / QB;
  parallel_for(0, p.N * nbands * vblocks, 1, [&](int64_t b, int64_t e) {
    ThreadDepthwiseWeights<T> weights(static_cast<const T*>(a.w.data), a.w.stride, C, p.R, p.S);
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / (nbands * vblocks), bi = item / vblocks % nbands, v0 = item % vblocks * nvb;
      const int64_t p0 = bi * band, p1 = std::min(p.P, p0 + band), vn = std::min(nvb, nv - v0);
      const float* wp = weights.vectors(v0, vn);
      // The band's input rows h0 .. h0 + rows - 1 (padded coordinates: h + pad_h), vn vectors each.
      const int64_t h0 = p0 * p.stride_h, rows = (p1 - 1 - p0) * p.stride_h + reach, row_floats = vn * Wp * L;
      ScratchOf<float> xb(rows * row_floats);
      // Dense NCHW rows under 16 columns and not a multiple of 8: the band's input rows [h_lo,
      // h_hi) are contiguous in each plane, so they are transposed as one run of pixels into
      // flat[v][pixel][L] (8 x 8 blocks, one scalar tail per band), then copied into the rows by
      // vectors. Per row, a 7-column row was all scalar tail (a third of the time of ConvNeXt's
      // 768 @7). A/B, arms in random order, 2 threads, N=8: 7 x 7 768 @7 1.2-1.35x, 5 x 5 1152 @7
      // 1.2-1.5x, stride 2 from 14 columns 672 @14 1.25x, 768 @14 1.2x; N=1 1.15-1.3x.
      const int64_t h_lo = std::clamp<int64_t>(h0 - p.pad_h, 0, p.H);
      const int64_t h_hi = std::clamp<int64_t>(h0 + rows - p.pad_h, h_lo, p.H), run = (h_hi - h_lo) * p.W;
      const bool flat_rows = planes && p.W % 8 != 0 && p.W < 16;
      ScratchOf<float> flat(flat_rows ? vn * run * L : 0);
      if (flat_rows)
        for (int64_t v = 0; v < vn; ++v) {
          const int64_t c0 = (v0 + v) * L;
          pixel_run_to_vectors(x + n * xst[0] + c0 * xst[1] + h_lo * xst[2], xst[1], std::min<int64_t>(L, C - c0), run,
                               flat.data() + v * run * L);
        }
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t h = h0 + i - p.pad_h;
        float* d = xb.data() + i * row_floats;
        if (h < 0 || h >= p.H) continue;  // never read: the tiles skip the filter rows outside
        for (int64_t v = 0; v < vn; ++v, d += Wp * L) {
          if constexpr (KS == 0) {  // (the sliding rows skip the zero columns)
            std::fill(d, d + p.pad_w * L, 0.0f);
            std::fill(d + (p.pad_w + p.W) * L, d + Wp * L, 0.0f);
          }
          float* dv = d + p.pad_w * L;
          if (!planes) {
            const T* src = xc.data + n * xc.sn + h * xc.sh + (v0 + v) * L;
            // One vector of each pixel, pixels C floats apart: ask for the same vectors two rows on
            // (A/B, arms in random order, 2 threads, N=8 channels_last forward: 5 x 5 /2 144 @56
            // 1.6-1.8x, 7 x 7 96 @56 1.25x, 192 @28 1.06x, 480 @14 1.03x; NCHW planes, whose rows
            // are contiguous, gained nothing from the like).
            const bool ahead = h + 2 < p.H;
            for (int64_t w = 0; w < p.W; ++w) {
              if (ahead) __builtin_prefetch(src + w * xc.sw + 2 * xc.sh);
              V::store(dv + w * L, V::load(src + w * xc.sw));
            }
            continue;
          }
          if (flat_rows) {
            const float* src = flat.data() + (v * run + (h - h_lo) * p.W) * L;
            for (int64_t w = 0; w < p.W; ++w) V::store(dv + w * L, V::load(src + w * L));
            continue;
          }
          // Channels c0 .. c0 + L - 1 of row h.
          const int64_t c0 = (v0 + v) * L;
          pixel_run_to_vectors(x + n * xst[0] + c0 * xst[1] + h * xst[2], xst[1], std::min<int64_t>(L, C - c0), p.W, dv);
        }
      }
      const int64_t r_step = p.dil_h * row_floats;
      for (int64_t v = v0; v < v0 + vn; ++v) {
        const typename V::type init = V::load(bias.data() + v * L);
        for (int64_t pp = p0; pp < p1; ++pp) {
          const float* xrow = xb.data() + (pp - p0) * p.stride_h * row_floats + (v - v0) * Wp * L;
          // Only the filter rows [r_lo, r_hi), whose input row is inside the image (the padding
          // rows are left unwritten in the band), and on sliding rows the tile's input vectors
          // inside the row: 25% of a 7 x 7 filter's products on 7 x 7 planes were zeros. A/B, arms
          // in random order, 2 threads, N=8 forward against multiplying the zeros (and writing
          // them): 7 x 7 768 @7 NCHW 1.29x, channels_last 1.25x, 5 x 5 1152 @7 1.1-1.17x, 480 @14
          // channels_last 1.1x; 96 @56 and 192 @28 level.
          int64_t r_lo = 0, r_hi = p.R;
          while (r_lo < p.R && pp * p.stride_h - p.pad_h + r_lo * p.dil_h < 0) ++r_lo;
          while (r_hi > r_lo && pp * p.stride_h - p.pad_h + (r_hi - 1) * p.dil_h >= p.H) --r_hi;
          T* yrow = out.view.data + n * out.view.sn + pp * out.view.sh + v * L;
          for (int64_t qb = 0; qb < nqb; ++qb) {
            // The last block ends at Q where the row holds a whole block (pixels computed twice, to
            // the same bits); on shorter rows its extra pixels read zero columns, not stored.
            const int64_t q0 = p.Q >= QB ? std::min(qb * QB, p.Q - QB) : 0, qn = std::min<int64_t>(QB, p.Q - q0);
            const float* x0 = xrow + q0 * q_step;
            typename V::type acc[QB];
#pragma GCC unroll 16
            for (int i = 0; i < QB; ++i) acc[i] = init;
            if constexpr (KS > 0) {
              // The tile's input vectors [i_lo, i_hi) inside the row: the others are zero columns.
              constexpr int ni = (QB - 1) * (SW > 0 ? SW : 1) + KS;
              const int i_lo = int(std::clamp<int64_t>(p.pad_w - q0 * sw, 0, ni));
              const int i_hi = int(std::clamp<int64_t>(p.pad_w + p.W - q0 * sw, i_lo, ni));
              for (int64_t r = r_lo; r < r_hi; ++r)
                depthwise_sliding_row<QB, KS, SW>(x0 + r * r_step, L, wp + r * KS * Cp + v * L, Cp, i_lo,
                                                  i_hi, acc);
            } else {
              for (int64_t r = r_lo; r < r_hi; ++r)
                for (int64_t s = 0; s < p.S; ++s) {
                  const typename V::type wv = V::load(wp + (r * p.S + s) * Cp + v * L);
                  const float* xt = x0 + r * r_step + s * s_step;
#pragma GCC unroll 16
                  for (int i = 0; i < QB; ++i)
                    acc[i] = V::fmadd(V::load(xt + i * (SW > 0 ? SW * L : q_step)), wv, acc[i]);
                }
            }
            if (planes_out) {  // the direct engine's store of a row run (conv2d_direct.h)
              float tile[QB * L];
#pragma GCC unroll 16
              for (int i = 0; i < QB; ++i) V::store(tile + i * L, acc[i]);
              store_tile<QB, L>(tile, int(qn), std::min<int64_t>(L, C - v * L),
                                y + n * yst[0] + v * L * yst[1] + pp * yst[2] + q0, columns, yst, true);
              continue;
            }
#pragma GCC unroll 16
            for (int i = 0; i < QB; ++i)
              if (i < qn) V::store(yrow + (q0 + i) * out.view.sw, acc[i]);
          }
        }
      }
    }
  });
  finish_output(out, y, a.y.stride, p.N, C, p.P, p.Q);
}

// Rows of KS (5 or 7) taps, column stride 1 or 2, no column dilation, on channels-last x (float or
// bfloat16, widened as loaded) read in place (channels a whole number of vectors): the vector rows' sliding tiles
// (depthwise_sliding_row: QB consecutive output pixels of one channel vector, each input vector
// loaded once for the KS pixels it reaches) without their padded copy of x. Columns outside the
// row are skipped in the edge tiles. An item is a band of up to 8 output rows of
// one channel vector, so that its input rows stay in L1 from one output row to the next. A/B,
// arms in random order, 2 threads, channels_last, against the vector rows (same bits): 5 x 5 /2
// 144 @56 N=1 1.67x, N=8 1.48x, 240 @28 1.35-1.43x, 480 @14 1.11x; 7 x 7 96 @56 1.21-1.28x
// (input gradient N=8 1.46x), 192 @28 1.14-1.21x; AVX2 (N=1) 1.05-1.48x on the same layers. For
// 3 x 3 filters it did not beat depthwise_row (0.94-1.0x in a one-thread driver): they stay there.
// bfloat16 (it had run the vector rows, which widen x into their copy), same A/B, Zen 5, N=8
// forward / input gradient: 5 x 5 /2 144 @56 2.27x, 240 @28 2.30x; 5 x 5 480 @14 1.48x / 1.47x,
// 672 @14 1.50x / 1.49x; 7 x 7 96 @56 1.31x / 1.36x, 192 @28 1.30x; AVX2 1.19-1.92x.
template <typename T, int KS, int SW, int QB>
void depthwise_fprop_sliding_in_place(const Conv2dFpropArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t nv = p.C / L;
  const T* x = static_cast<const T*>(a.x.data);
  T* y = static_cast<T*>(a.y.data);
  const int64_t *xst = a.x.stride, *yst = a.y.stride;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* wst = a.w.stride;
  const std::vector<float> bias = depthwise_bias<T>(a.bias, p.C);
  const int64_t band = even_bands(p.P, 8), nbands = (p.P + band - 1) / band;
  const int64_t nqb = (p.Q + QB - 1) / QB;
  constexpr int ni = (QB - 1) * SW + KS;  // input columns a tile reaches
  // Plain locals: read through a.x / a.y inside the tiles, every stride was reloaded per store.
  const int64_t C = p.C, P = p.P, Q = p.Q, R = p.R, H = p.H, W = p.W, pad_w = p.pad_w;
  const int64_t h_step = p.stride_h, h0 = -p.pad_h, r_step = p.dil_h;
  const int64_t xsn = xst[0], xsh = xst[2], xsw = xst[3], ysn = yst[0], ysh = yst[2], ysw = yst[3];
  parallel_for(0, p.N * nbands * nv, 1, [=, &bias](int64_t b, int64_t e) {
    ThreadDepthwiseWeights<T> weights(w, wst, C, R, KS);
    for (int64_t item = b; item < e; ++item) {
      const int64_t n = item / (nbands * nv), bi = item / nv % nbands, v = item % nv;
      const typename V::type init = V::load(bias.data() + v * L);
      const float* wv = weights.vectors(v, 1) + v * L;
      for (int64_t pp = bi * band; pp < std::min(P, (bi + 1) * band); ++pp) {
        int64_t r_lo = 0, r_hi = R;  // the filter rows whose input row is inside the image
        while (r_lo < R && pp * h_step + h0 + r_lo * r_step < 0) ++r_lo;
        while (r_hi > r_lo && pp * h_step + h0 + (r_hi - 1) * r_step >= H) --r_hi;
        const T* xrow = x + n * xsn + (pp * h_step + h0) * xsh + v * L;
        T* yrow = y + n * ysn + pp * ysh + v * L;
        for (int64_t qb = 0; qb < nqb; ++qb) {
          // The last tile ends at Q where the row holds a whole tile (pixels computed twice, to the
          // same bits); on shorter rows its extra pixels sum only taps inside the row, not stored.
          const int64_t q0 = Q >= QB ? std::min(qb * QB, Q - QB) : 0, qn = std::min<int64_t>(QB, Q - q0);
          // The tile's input columns [i_lo, i_hi) inside the row (i: column q0 SW - pad_w + i).
          const int i_lo = int(std::clamp<int64_t>(pad_w - q0 * SW, 0, ni));
          const int i_hi = int(std::clamp<int64_t>(pad_w + W - q0 * SW, i_lo, ni));
          const T* x0 = xrow + (q0 * SW - pad_w) * xsw;
          typename V::type acc[QB];
#pragma GCC unroll 16
          for (int i = 0; i < QB; ++i) acc[i] = init;
          // The tile's rows with its column bounds as constants, so that the checks fold away: the
          // interior (0, ni) and the edge tiles, whose first column is at most 3 in and last at
          // most 3 short of ni (a 7 x 7 filter's padding); others check each column at run time.
          // GCC had kept an edge tile's run-time checks as bytes on the stack, a compare and a
          // branch per column; constant edges, in-process A/B (arms in random order, same bits,
          // 2 threads): 5 x 5 /2 144 @56 N=1 1.17-1.19x (N=8 1.26x), 240 @28 1.16-1.17x, 480 @14
          // 1.0-1.21x, 7 x 7 192 @28 1.07-1.09x, 96 @56 0.98-1.08x; AVX2 1.06-1.16x.
          const auto rows_within = [&]<int LO, int MISS>() __attribute__((always_inline)) {
            for (int64_t r = r_lo; r < r_hi; ++r)
              depthwise_sliding_row<QB, KS, SW, true>(x0 + r * r_step * xsh, xsw, wv + r * KS * C, C, LO, ni - MISS,
                                                      acc);
          };
          const auto with_miss = [&]<int LO>() __attribute__((always_inline)) -> bool {
            switch (ni - i_hi) {
              case 0: rows_within.template operator()<LO, 0>(); return true;
              case 1: rows_within.template operator()<LO, 1>(); return true;
              case 2: rows_within.template operator()<LO, 2>(); return true;
              case 3: rows_within.template operator()<LO, 3>(); return true;
              default: return false;
            }
          };
          bool done = false;
          switch (i_lo) {
            case 0: done = with_miss.template operator()<0>(); break;
            case 1: done = with_miss.template operator()<1>(); break;
            case 2: done = with_miss.template operator()<2>(); break;
            case 3: done = with_miss.template operator()<3>(); break;
            default: break;
          }
          if (!done)
            for (int64_t r = r_lo; r < r_hi; ++r)
              depthwise_sliding_row<QB, KS, SW>(x0 + r * r_step * xsh, xsw, wv + r * KS * C, C, i_lo, i_hi, acc);
          T* yq = yrow + q0 * ysw;
#pragma GCC unroll 16
          for (int i = 0; i < QB; ++i, yq += ysw)
            if (i < qn) V::store(yq, acc[i]);
        }
      }
    }
  });
}

// depthwise_fprop_sliding_in_place where it applies: 5- or 7-wide filter rows of column stride 1
// or 2 without column dilation, x and y with contiguous channels, C a whole number of vectors.
template <typename T>
inline bool depthwise_fprop_sliding_in_place_any(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  constexpr int L = VecF32::kLanes;
  if (p.dil_w != 1 || p.C % L != 0 || a.x.stride[1] != 1 || a.y.stride[1] != 1) return false;
  if (p.stride_w != 1 && p.stride_w != 2) return false;
  constexpr int QB = kSlidingPixels;
  // float 7 x 7 on rows of fewer than 28 outputs stays on the vector rows, whose padded copy of x
  // spares the edge tiles' masked loads: in place ran 0.92-0.98x on rows of 14 and 7 (384 @14, 768
  // @7, N=1 and 8; AVX2 0.76-0.95x at 384 @14) and 1.14-1.21x on rows of 28 (192 @28). bfloat16
  // runs in place on any row: there the copy also widens x to floats, twice the bytes (A/B, arms in
  // random order, Zen 5, 2 threads, channels_last, forward / input gradient: 384 @14 N=8 1.35x /
  // 1.35x, N=1 1.22x / 1.28x; 768 @7 1.31x / 1.32x, N=1 1.27x / 1.20x).
  if (p.S != 5 && !(p.S == 7 && (p.Q >= 28 || std::is_same_v<T, bf16>))) return false;
  const auto run = [&]<int KS, int SW>() {
    if (p.Q <= QB / 2) return depthwise_fprop_sliding_in_place<T, KS, SW, QB / 2>(a);
    depthwise_fprop_sliding_in_place<T, KS, SW, QB>(a);
  };
  const auto with_stride = [&]<int KS>() {
    if (p.stride_w == 1) run.template operator()<KS, 1>();
    else run.template operator()<KS, 2>();
  };
  if (p.S == 5) with_stride.template operator()<5>();
  else with_stride.template operator()<7>();
  return true;
}

// The interior columns [q0, q1) (q1 - q0 >= 8) of two consecutive output rows of a 3 x 3 filter at
// stride 1, float or bfloat16 (E), AVX-512 (16 accumulators and the 9 weight vectors in registers): per channel
// vector, tiles of 8 pixels of both rows, each of the 4 input rows' 10 vectors loaded once and
// multiplied into every pixel of both rows it reaches. x: the first row's top-left tap (input row
// p - pad_h, column -pad_w); y: the first row. Per pixel the taps add in (r, s) order, as in
// depthwise_row (the same bits). One row at a time, each input line came from the L2 once per
// output row, three per output vector; here two.
template <typename V, typename E>
inline void depthwise_row_pair(const E* x, int64_t x_sh, int64_t x_sw, const float* wp, int64_t Cp,
                               const float* init, int64_t nv, int64_t q0, int64_t q1, E* y, int64_t y_sh,
                               int64_t y_sw) {
  constexpr int QB = 8, L = V::kLanes;
  for (int64_t v = 0; v < nv; ++v) {
    typename V::type w[3][3];
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) w[t / 3][t % 3] = V::load(wp + t * Cp + v * L);
    const typename V::type init_v = V::load(init + v * L);
    for (int64_t qt = q0; qt < q1; qt += QB) {
      const int64_t qs = std::min(qt, q1 - QB);
      typename V::type acc0[QB], acc1[QB];
#pragma GCC unroll 8
      for (int i = 0; i < QB; ++i) acc0[i] = acc1[i] = init_v;
      const E* xb = x + qs * x_sw + v * L;
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
#pragma GCC unroll 10
        for (int i = 0; i < QB + 2; ++i) {
          const typename V::type xi = V::load(xb + k * x_sh + i * x_sw);
#pragma GCC unroll 3
          for (int s = 0; s < 3; ++s) {
            const int q = i - s;
            if (q < 0 || q >= QB) continue;
            if (k < 3) acc0[q] = V::fmadd(xi, w[k][s], acc0[q]);
            if (k >= 1) acc1[q] = V::fmadd(xi, w[k - 1][s], acc1[q]);
          }
        }
      }
      E* yq = y + qs * y_sw + v * L;
#pragma GCC unroll 8
      for (int i = 0; i < QB; ++i) V::store(yq + i * y_sw, acc0[i]), V::store(yq + y_sh + i * y_sw, acc1[i]);
    }
  }
}

// dst[0, n) = src[0, n) as float, by vectors, the last one overlapping its neighbour (the same
// values written twice; 14-column planes had spent a third of their time in per-row copy calls).
template <typename T>
inline void row_to_floats(const T* src, int64_t n, float* dst) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  if (n < L) {
    // A masked load and store: 14-column planes had spent ~10% of a forward in memmove calls
    // (A/B N=8 7 x 7 384 @14 1.09x, 5 x 5 480 @14 1.06x, N=1 1.1-1.2x; 3 x 3 576 @14 level).
    if constexpr (std::is_same_v<T, float>)
      return V::store_first(dst, V::load_masked(src, V::lanes_between(0, n)), int(n));
    else
      return convert_n(src, dst, n);
  }
  for (int64_t j = 0; j < n; j += L) {
    const int64_t at = std::min(j, n - L);
    V::store(dst + at, V::load(src + at));
  }
}

// One NCHW plane as zero-padded float rows, for the plane-tile kernels (depthwise_fprop_plane_tiles,
// depthwise_wgrad_plane_tiles): input row h at row pad_h + h, at least min_rows rows and every
// input row. Column stride 1: padded column c' (input column c' - pad_w) at c'; a row holds `cols`
// output columns' reach, cols + (S - 1) dil_w. Column stride 2: a row is its even padded columns,
// then its odd ones, `half` floats each (deinterleave_row): output column q's tap s reads padded
// column 2 q + s dil_w, element q + (s dil_w) / 2 of half (s dil_w) mod 2. Either way output
// column q's tap s is element q + s_off[s] of the row.
struct PlaneTileRows {
  const Conv2dProblem& p;
  int st;
  int64_t rows, half, row_floats;
  std::vector<int64_t> s_off;
  PlaneTileRows(const Conv2dProblem& p, int st, int64_t min_rows, int64_t cols) : p(p), st(st), s_off(p.S) {
    constexpr int64_t L = VecF32::kLanes;
    const int64_t reach_w = (p.S - 1) * p.dil_w;
    rows = std::max(min_rows, p.pad_h + p.H);
    half = (std::max(cols + reach_w / 2 + 1, (p.pad_w + p.W) / 2 + 1) + L - 1) / L * L;
    row_floats = st == 1 ? (cols + reach_w + L - 1) / L * L : 2 * half;
    for (int64_t s = 0; s < p.S; ++s) s_off[s] = st == 1 ? s * p.dil_w : (s * p.dil_w) % 2 * half + s * p.dil_w / 2;
  }
  int64_t floats() const { return rows * row_floats; }
  // The plane's input rows (row_stride apart) into buf; the padding is left as it is.
  template <typename T>
  void fill(const T* plane, int64_t row_stride, float* buf) const {
    for (int64_t h = 0; h < p.H; ++h) {
      const T* src = plane + h * row_stride;
      float* row = buf + (p.pad_h + h) * row_floats;
      if (st == 2) {
        // Input column 2 j lands on padded column 2 j + pad_w: the even half for even padding.
        const int64_t odd_pad = p.pad_w % 2;
        deinterleave_row(src, p.W, row + odd_pad * half + p.pad_w / 2, row + (1 - odd_pad) * half + (p.pad_w + 1) / 2);
      } else {
        row_to_floats(src, p.W, row + p.pad_w);
      }
    }
  }
};

// Filters of KR = 3, 5 or 7 rows, stride ST = 1 or 2, on NCHW planes (MobileNet's and
// EfficientNet's, ConvNeXt's 7 x 7): output columns as the vector lanes, so x needs no transposes
// (into vector rows or channels-last pixels: ~half of the NCHW time at N=8). Each plane is copied
// into zero-padded float rows (every tap of every output in bounds; at stride 2 each row split
// into its even and odd columns), then register tiles of MR output rows x NV vectors of columns go
// over them filter column by filter column: the KR weights of column s broadcast once into
// registers, each input vector of the tile's (MR - 1) ST + KR rows loaded once and multiplied into
// every output row it reaches (at stride 1 per filter column KR broadcasts and (MR + KR - 1) NV
// loads for MR KR NV FMAs; the one-row planes kernel above loads an input vector per tap). A
// row's last vector overlaps its neighbour instead of leaving a tail, and the last row tile
// overlaps the one before: the overlapped outputs are computed twice to the same bits (per output
// the taps add in (s, r) order wherever its tile starts). Rows shorter than a vector store their
// first Q lanes; rows of half a vector or less stay on the other kernels.
template <int KR, int ST, int MR, int NV>
[[gnu::always_inline]] inline void depthwise_plane_tile(const float* xt, int64_t row_floats, const int64_t* col,
                                                        const float* wk, int64_t S, const int64_t* s_off,
                                                        VecF32::type (&acc)[MR][NV]) {
  using V = VecF32;
  for (int64_t s = 0; s < S; ++s) {
    typename V::type wv[KR];
#pragma GCC unroll 8
    for (int r = 0; r < KR; ++r) wv[r] = V::broadcast(wk + s * KR + r);
    // One pointer per vector column, bumped row by row: offsets k row_floats + col[v] precomputed
    // for all 13 rows took more registers than there are (spilled to the stack between FMAs).
    const float* xv_ptr[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) xv_ptr[v] = xt + s_off[s] + col[v];
#pragma GCC unroll 64
    for (int k = 0; k < (MR - 1) * ST + KR; ++k) {
      typename V::type xv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        xv[v] = V::load(xv_ptr[v]);
        xv_ptr[v] += row_floats;
      }
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m)
        if (k - m * ST >= 0 && k - m * ST < KR)
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[m][v] = V::fmadd(wv[k - m * ST], xv[v], acc[m][v]);
    }
  }
}

// The depthwise weights (C, 1, R, S) as float, filter column by filter column: channel c's at
// wk[(c S + s) R + r] (the plane tiles and flat planes broadcast a column's taps together). As
// ThreadDepthwiseWeights, made in a parallel_for body and packed by each thread for the channels
// its planes read: packed by the calling thread for all, it had taken 15% of MobileNetV2's 960 @7
// NCHW forward at N=1 (9% of ConvNeXt's 384 @14), the other thread waiting.
template <typename T>
class ThreadFilterColumns {
 public:
  ThreadFilterColumns(const T* w, const int64_t ws[4], const Conv2dProblem& p)
      : w_(w), ws_{ws[0], ws[1], ws[2], ws[3]}, R_(p.R), S_(p.S), wk_(p.C * p.S * p.R), packed_(p.C, false) {}
  const float* channel(int64_t c) {
    float* d = wk_.data() + c * S_ * R_;
    if (!packed_[c]) {
      for (int64_t s = 0; s < S_; ++s)
        for (int64_t r = 0; r < R_; ++r) d[s * R_ + r] = load_acc(w_ + c * ws_[0] + r * ws_[2] + s * ws_[3]);
      packed_[c] = true;
    }
    return d;
  }

 private:
  const T* w_;
  int64_t ws_[4], R_, S_;
  ScratchOf<float> wk_;
  std::vector<bool> packed_;
};

template <typename T, int KR, int ST, int MR, int NV>
void depthwise_fprop_plane_tiles(const Conv2dFpropArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t *xs = a.x.stride, *ys = a.y.stride, *ws = a.w.stride;
  const T* x = static_cast<const T*>(a.x.data);
  const T* w = static_cast<const T*>(a.w.data);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y.data);
  // Vector column starts along a row: 0, L, 2 L, ..., the last at Q - L; tiles of NV of them, then
  // single vectors. A row shorter than a vector is one vector, its first Q lanes stored.
  const int64_t nvec = (p.Q + L - 1) / L, nvec_tiles = nvec / NV;
  std::vector<int64_t> vec_col(nvec);
  for (int64_t v = 0; v < nvec; ++v) vec_col[v] = std::min(v * L, std::max<int64_t>(p.Q - L, 0));
  // Rows reach (P - 1) ST + KR ((MR - 1) ST + KR at least); columns Q (a vector at least, the
  // last vector overlapping its neighbour).
  const PlaneTileRows rows(p, ST, (std::max<int64_t>(p.P, MR) - 1) * ST + KR, std::max<int64_t>(p.Q, L));
  const int64_t row_floats = rows.row_floats;
  const int64_t* s_off = rows.s_off.data();
  const int64_t nrt = (p.P + MR - 1) / MR;  // row tiles
  const bool prefetch = p.N * p.C * (p.H * p.W + p.P * p.Q) * int64_t(sizeof(T)) > kPrefetchPlanesBytes;
  parallel_for(0, p.N * p.C, 1, [&](int64_t b, int64_t e) {
    ThreadFilterColumns<T> columns(w, ws, p);
    ScratchOf<float> buf(rows.floats());
    std::fill(buf.data(), buf.data() + rows.floats(), 0.0f);  // the borders stay zero
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / p.C, c = nc % p.C;
      const float b0 = bias ? load_acc(bias + c) : 0.0f;
      rows.fill(x + n * xs[0] + c * xs[1], xs[2], buf.data());
      T* yp = y + n * ys[0] + c * ys[1];
      const T* x_next = nc + 1 < e ? x + (nc + 1) / p.C * xs[0] + (nc + 1) % p.C * xs[1] : nullptr;
      for (int64_t rt = 0; rt < nrt; ++rt) {
        if (prefetch && x_next) prefetch_plane_slice(x_next, p.H, p.W, xs[2], rt, nrt);
        const int64_t p0 = p.P >= MR ? std::min(rt * MR, p.P - MR) : 0;
        const float* xt = buf.data() + p0 * ST * row_floats;
        const auto tile = [&]<int NVT>(const int64_t* col) {
          // Every loop over the tile unrolled: one left rolled kept the accumulators in memory too.
          typename V::type acc[MR][NVT];
#pragma GCC unroll 16
          for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
            for (int v = 0; v < NVT; ++v) acc[m][v] = V::broadcast(&b0);
          depthwise_plane_tile<KR, ST, MR, NVT>(xt, row_floats, col, columns.channel(c), p.S, s_off, acc);
#pragma GCC unroll 16
          for (int m = 0; m < MR; ++m)
            if (p0 + m < p.P)
#pragma GCC unroll 4
              for (int v = 0; v < NVT; ++v) {
                if (p.Q < L)
                  V::store_first(yp + (p0 + m) * ys[2], acc[m][v], int(p.Q));
                else
                  V::store(yp + (p0 + m) * ys[2] + col[v], acc[m][v]);
              }
        };
        int64_t v = 0;
        for (; v < nvec_tiles * NV; v += NV) tile.template operator()<NV>(vec_col.data() + v);
        for (; v < nvec; ++v) tile.template operator()<1>(vec_col.data() + v);
      }
    }
  });
}

// depthwise_fprop_plane_tiles where it applies: dense NCHW planes, stride 1 or 2, 3, 5 or 7 filter
// rows without row dilation, output rows more than half a vector long. The tile's shape keeps 8+
// accumulators independent (an accumulator takes R S dependent FMAs per tile, 4 cycles each, at 2
// FMAs per cycle): AVX-512 7 rows (ConvNeXt's and EfficientNet's planes are multiples of 7) x 2
// vectors, or 14 x 1 on rows of one vector; AVX2 (16 registers) 8 x 1, with KR weights and an
// input, or 7 x 1 on planes of 7 n rows but not 8 n (28, 14, 7: an 8-row tile had overlapped
// its neighbour or run a row past the plane; A/B, arms in random order, 2 threads, N=1 forward
// and input gradient: 7 x 7 192 @28 1.08x (N=8 1.08x), 384 @14 1.07x, 768 @7 1.04x; 5 x 5 240 @28
// 1.07x, 480 @14 1.07x, 1152 @7 1.04x; 3 x 3 1.0-1.03x).
template <typename T>
inline bool depthwise_fprop_on_plane_tiles(const Conv2dFpropArgs& a) {
  constexpr int L = VecF32::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t *xs = a.x.stride, *ys = a.y.stride;
  // Stride 2 needs rows of whole vectors: on shorter ones (14 columns on AVX-512, 7 on AVX2) the
  // channels-last transposes were level or faster (AVX2 576 @14 /2 N=8 0.16 against 0.35 ms).
  const bool stride1 = p.stride_h == 1 && p.stride_w == 1, stride2 = p.stride_h == 2 && p.stride_w == 2;
  if ((p.R != 3 && p.R != 5 && p.R != 7) || !(stride1 || (stride2 && p.Q >= L)) || p.dil_h != 1 || 2 * p.Q <= L ||
      xs[3] != 1 || ys[3] != 1 || xs[1] == 1 || ys[1] == 1)
    return false;
  // AVX2, 5 x 5 and 7 x 7 on rows shorter than a vector (7 columns: 7 of 8 lanes): the vector rows
  // (channels as lanes, every lane used, the row's taps sliding) run them faster. A/B, arms in
  // random order, Zen 4, 2 threads, forward / input gradient: 7 x 7 768 @7 N=1 1.17x / 1.17x,
  // N=8 1.14x / 1.15x; 5 x 5 1152 @7 N=1 1.15-1.5x, N=8 1.14-1.4x. (3 x 3 960 @7 level: kept;
  // AVX-512's 14-column rows, 14 of 16 lanes, ran 0.78-0.92x on the vector rows: kept.)
  if (L == 8 && p.Q < L && p.R * p.S > kDepthwiseRowTaps) return false;
  const auto run = [&]<int KR, int ST>() {
    if constexpr (L == 16) {
      if (p.Q <= L) return depthwise_fprop_plane_tiles<T, KR, ST, 14, 1>(a);
      depthwise_fprop_plane_tiles<T, KR, ST, 7, 2>(a);
    } else {
      if (p.P % 7 == 0 && p.P % 8 != 0) return depthwise_fprop_plane_tiles<T, KR, ST, 7, 1>(a);
      depthwise_fprop_plane_tiles<T, KR, ST, 8, 1>(a);
    }
  };
  const auto with_rows = [&]<int ST>() {
    if (p.R == 7) run.template operator()<7, ST>();
    else if (p.R == 3) run.template operator()<3, ST>();
    else run.template operator()<5, ST>();
  };
  if (stride2) with_rows.template operator()<2>();
  else with_rows.template operator()<1>();
  return true;
}

// Planes whose rows are half a vector or shorter (AVX-512: the 7 x 7 planes of MobileNetV2's and
// EfficientNet's last stages), where a vector per row would leave most lanes idle, at stride 1
// with W == Q: the plane's P Q outputs are flat lanes, output o = p Q + q. The plane goes
// into a zero-padded float buffer with the same row stride Q (input row h at row pad_h + h, pad_w
// floats ahead), so tap (r, s) of every output o reads element o + r dil_h Q + s dil_w: one
// constant offset per tap. The rows' padding is zeros in the buffer; the columns' padding, which
// the flat offset wraps into the neighbouring row, is a lane mask per vector and filter column
// (colmask[v S + s]) under which the FMA leaves the sum as it is. PL planes at once (PL NV sums,
// 8+ for the FMA latency), their R x S weights broadcast tap by tap; taps add in (s, r) order.
template <int NV, int PL>
[[gnu::always_inline]] inline void depthwise_flat_tile(const float* const (&xb)[PL], const float* const (&wk)[PL],
                                                       int64_t R, int64_t S, int64_t row_step, int64_t col_step,
                                                       const uint32_t* colmask, VecF32::type (&acc)[PL][NV]) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  for (int64_t s = 0; s < S; ++s) {
    typename V::mask k[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) k[v] = V::from_bits(colmask[v * S + s]);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t at = r * row_step + s * col_step;
      typename V::type wv[PL];
#pragma GCC unroll 4
      for (int i = 0; i < PL; ++i) wv[i] = V::broadcast(wk[i] + s * R + r);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
#pragma GCC unroll 4
        for (int i = 0; i < PL; ++i) acc[i][v] = V::fmadd_masked(wv[i], V::load(xb[i] + at + v * L), acc[i][v], k[v]);
    }
  }
}

template <typename T, int NV, int PL>
void depthwise_fprop_flat_planes(const Conv2dFpropArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t *xs = a.x.stride, *ys = a.y.stride, *ws = a.w.stride;
  const T* x = static_cast<const T*>(a.x.data);
  const T* w = static_cast<const T*>(a.w.data);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y.data);
  const int64_t row_step = p.dil_h * p.Q;
  const int last = int(p.P * p.Q - (NV - 1) * L);  // outputs in the last vector
  // The last vector's last tap reads element NV L - 1 + (R - 1) row_step + (S - 1) dil_w, and
  // (S - 1) dil_w = 2 pad_w where W == Q.
  const int64_t plane_floats = (NV * L + (p.R - 1) * row_step + 2 * p.pad_w + L - 1) / L * L;
  const int64_t first = p.pad_w + p.pad_h * p.Q;  // where input element 0 goes
  std::vector<uint32_t> colmask(NV * p.S);
  for (int v = 0; v < NV; ++v)
    for (int64_t s = 0; s < p.S; ++s) {
      uint32_t bits = 0;
      for (int i = 0; i < L; ++i) {
        const int64_t col = (v * L + i) % p.Q + s * p.dil_w - p.pad_w;
        if (col >= 0 && col < p.W) bits |= 1u << i;
      }
      colmask[v * p.S + s] = bits;
    }
  const int64_t planes = p.N * p.C, items = (planes + PL - 1) / PL;
  parallel_for(0, items, 1, [&](int64_t b, int64_t e) {
    ThreadFilterColumns<T> columns(w, ws, p);
    ScratchOf<float> buf(PL * plane_floats);
    std::fill(buf.data(), buf.data() + PL * plane_floats, 0.0f);  // the padding stays zero
    // Planes [nc0, nc0 + PLT) in one tile.
    const auto tile = [&]<int PLT>(int64_t nc0) {
      const float* xb[PLT];
      const float* wp[PLT];
      typename V::type acc[PLT][NV];
#pragma GCC unroll 4
      for (int i = 0; i < PLT; ++i) {
        const int64_t n = (nc0 + i) / p.C, c = (nc0 + i) % p.C;
        float* plane = buf.data() + i * plane_floats;
        row_to_floats(x + n * xs[0] + c * xs[1], p.H * p.W, plane + first);
        xb[i] = plane;
        wp[i] = columns.channel(c);
        const float b0 = bias ? load_acc(bias + c) : 0.0f;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = V::broadcast(&b0);
      }
      depthwise_flat_tile<NV, PLT>(xb, wp, p.R, p.S, row_step, p.dil_w, colmask.data(), acc);
#pragma GCC unroll 4
      for (int i = 0; i < PLT; ++i) {
        T* yp = y + (nc0 + i) / p.C * ys[0] + (nc0 + i) % p.C * ys[1];
#pragma GCC unroll 4
        for (int v = 0; v < NV - 1; ++v) V::store(yp + v * L, acc[i][v]);
        if (last == L)
          V::store(yp + (NV - 1) * L, acc[i][NV - 1]);
        else
          V::store_first(yp + (NV - 1) * L, acc[i][NV - 1], last);
      }
    };
    for (int64_t it = b; it < e; ++it) {
      const int64_t nc0 = it * PL;
      if (nc0 + PL <= planes) {
        tile.template operator()<PL>(nc0);
      } else {
        for (int64_t nc = nc0; nc < planes; ++nc) tile.template operator()<1>(nc);
      }
    }
  });
}

// depthwise_fprop_flat_planes where it applies: dense NCHW planes of rows half a vector or
// shorter (the plane tiles take longer ones) and 4 vectors or fewer, stride 1, W == Q, filters of
// up to 9 taps. A/B against the channels-last transposes, arms in random order, 2 threads, AVX-512:
// 3 x 3 960 @7 N=8 1.3x, 1152 @7 1.15x; N=1 1.4x. Larger filters stay on the vector rows, which
// load an input vector per row of taps, not per tap, from aligned rows: here every load is
// unaligned (two cache lines; a micro-benchmark ran such FMAs at ~1 per cycle, aligned 1.5): 7 x 7
// 768 @7 N=8 1.2x slower, 5 x 5 1152 @7 level.
template <typename T>
inline bool depthwise_fprop_on_flat_planes(const Conv2dFpropArgs& a) {
  constexpr int L = VecF32::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t nvec = (p.P * p.Q + L - 1) / L;
  if (p.R * p.S > kDepthwiseRowTaps || p.stride_h != 1 || p.stride_w != 1 || p.W != p.Q || 2 * p.Q > L || nvec > 4 ||
      !dense_planes(a.x.stride, p.W) || !dense_planes(a.y.stride, p.Q))
    return false;
  switch (nvec) {
    case 1: depthwise_fprop_flat_planes<T, 1, 4>(a); break;
    case 2: depthwise_fprop_flat_planes<T, 2, 4>(a); break;
    case 3: depthwise_fprop_flat_planes<T, 3, 3>(a); break;
    default: depthwise_fprop_flat_planes<T, 4, 2>(a); break;
  }
  return true;
}

template <typename T>
inline bool depthwise_fprop(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || !is_depthwise(p)) return false;
  // Strides 1 and 2 on NCHW planes with 3, 5 or 7 filter rows: tiles of output rows (A/B, arms in
  // random order, 2 threads, AVX-512; against the vector rows: N=8 7 x 7 96 @56 1.07x, 192 @28
  // 1.65x, 384 @14 1.56x, 5 x 5 480 @14 1.44x, N=1 1.2-1.9x; against the one-row planes or the
  // channels-last transposes, 3 x 3: N=8 144 @56 1.9x, 32 @112 1.5x, 192 @28 1.8x, 576 @14 1.08x,
  // N=1 1.1-1.6x; stride 2, N=8: 3 x 3 144 @56 2.7x, 96 @112 1.5x, 5 x 5 144 @56 1.4x, N=1 1.3-2.2x;
  // the stride-1 input gradients alike; AVX2 1.1-2x, level at 960 @7).
  if (depthwise_fprop_on_plane_tiles<T>(a)) return true;
  if (depthwise_fprop_on_flat_planes<T>(a)) return true;
  // Other filters of 10+ taps on the vector rows, NCHW too: on planes with one output row at a time
  // (weights broadcast in registers, up to 5 x 5) EfficientNet's 5 x 5 stride 2 ran 2.8x slower at
  // N=8 (144 @56 /2 1.93 -> 0.69 ms, 240 @28 2.13 -> 0.74; alike at N=1).
  if (p.R * p.S > kDepthwiseRowTaps) {
    if (depthwise_fprop_sliding_in_place_any<T>(a)) return true;
    // Tiles of kSlidingPixels, or half that for rows that short: a 7-column row in a
    // 14-pixel tile wasted half of the FMAs (ConvNeXt 768 @7 N=8 0.44-0.62x PyTorch).
    const auto run = [&]<int SW>() {
      // Rows of 5 and 7 taps slide (depthwise_sliding_row; A/B, arms in random order, 2 threads,
      // N=8 channels_last: 7 x 7 96 @56 1.38x, 384 @14 1.29x, 768 @7 1.26x, NCHW 96 @56 1.24x;
      // 5 x 5 480 @14 1.31x; stride 2 144 @56 1.02-1.08x, where copying x in takes half the time).
      const auto with_width = [&]<int Q>() {
        if constexpr (SW > 0) {
          if (p.dil_w == 1 && p.S == 7) return depthwise_fprop_vector_rows<T, SW, Q, 7>(a);
          if (p.dil_w == 1 && p.S == 5) return depthwise_fprop_vector_rows<T, SW, Q, 5>(a);
        }
        depthwise_fprop_vector_rows<T, SW, Q>(a);
      };
      if (p.Q <= kSlidingPixels / 2) return with_width.template operator()<kSlidingPixels / 2>();
      with_width.template operator()<kSlidingPixels>();
    };
    if (p.stride_w == 1) run.template operator()<1>();
    else if (p.stride_w == 2) run.template operator()<2>();
    else run.template operator()<0>();
    return true;
  }
  if (depthwise_fprop_planes<T>(a)) return true;
  using V = VecF32;
  constexpr int L = V::kLanes;
  const int64_t C = p.C, Cp = padded_channels(C), nv = Cp / L;
  ScratchOf<T> xs(0), ys(0);
  const ChannelsLast<T> x = channels_last_input(static_cast<const T*>(a.x.data), a.x.stride, p.N, C, p.H, p.W, xs);
  T* y = static_cast<T*>(a.y.data);
  const OutputTarget<T> out = channels_last_output(y, a.y.stride, p.N, C, p.P, p.Q, ys);
  const std::vector<float> bias = depthwise_bias<T>(a.bias, C);
  // Columns whose every tap s lands inside the input: there a row's taps are the same for all q.
  int64_t q_in_lo = 0, q_in_hi = p.Q;
  for (int64_t s = 0; s < p.S; ++s) {
    const TapRange qr = valid_outputs(p.Q, p.W, p.stride_w, p.pad_w, p.dil_w, s);
    q_in_lo = std::max(q_in_lo, qr.lo), q_in_hi = std::min(q_in_hi, qr.hi);
  }
  q_in_hi = std::max(q_in_lo, q_in_hi);
  // 3 x 3 stride 1, float, AVX-512: interior rows two at a time where a thread has both
  // (depthwise_row_pair; A/B, arms in random order, 2 threads, channels_last, N=1: 144 @56
  // 1.15-1.18x, 32 @112 1.06-1.15x, 192 @28 1.05-1.07x, 576 @14 and 960 @7 level; N=8 0.95-1.07x).
  // bfloat16 too, each input vector widened once for six multiply-adds, not once for each (Xeon,
  // N=8 / N=1: 144 @56 1.46x / 1.41x, 32 @112 1.32x / 1.39x, 192 @28 1.22x / 1.16x, 576 @14 1.22x /
  // 1.15x; 960 @7, rows under 8, level).
  const bool pair_rows = (std::is_same_v<T, float> || std::is_same_v<T, bf16>) && L == 16 && p.R == 3 && p.S == 3 &&
                         p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 && p.dil_w == 1 && q_in_hi - q_in_lo >= 8;
  const auto rows_inside = [&](int64_t pp) { return pp - p.pad_h >= 0 && pp - p.pad_h + 2 < p.H; };
  parallel_for(0, p.N * p.P, 1, [&](int64_t b, int64_t e) {
    ThreadDepthwiseWeights<T> weights(static_cast<const T*>(a.w.data), a.w.stride, C, p.R, p.S);
    const float* wp = weights.all();
    std::vector<int64_t> x_off(p.R * p.S), w_off(p.R * p.S), row_tap(p.R * p.S);
    bool interior_from_pair = false;  // this row's interior columns came with the row before
    for (int64_t np = b; np < e; ++np) {
      const int64_t n = np / p.P, pp = np % p.P;
      T* yrow = out.view.data + n * out.view.sn + pp * out.view.sh;
      bool interior_done = interior_from_pair;
      interior_from_pair = false;
      if constexpr ((std::is_same_v<T, float> || std::is_same_v<T, bf16>) && L == 16) {
        if (!interior_done && pair_rows && np + 1 < e && pp + 1 < p.P && rows_inside(pp) && rows_inside(pp + 1)) {
          depthwise_row_pair<V>(x.data + n * x.sn + (pp - p.pad_h) * x.sh - p.pad_w * x.sw, x.sh, x.sw, wp, Cp,
                                bias.data(), nv, q_in_lo, q_in_hi, yrow, out.view.sh, out.view.sw);
          interior_done = interior_from_pair = true;
        }
      }
      // Interior columns: the in-bounds rows' taps, weights in registers (depthwise_row).
      int64_t taps = 0;
      for (int64_t r = 0; r < p.R; ++r) {
        const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
        if (h < 0 || h >= p.H) continue;
        for (int64_t s = 0; s < p.S; ++s, ++taps) {
          row_tap[taps] = n * x.sn + h * x.sh + (s * p.dil_w - p.pad_w) * x.sw;
          w_off[taps] = (r * p.S + s) * Cp;
        }
      }
      if (!interior_done)
        interior_done =
            q_in_lo < q_in_hi && depthwise_row_any(taps, x.data, p.stride_w * x.sw, row_tap.data(), wp, w_off.data(),
                                                   bias.data(), nv, q_in_lo, q_in_hi, yrow, out.view.sw);
      // Edge columns (and every column where no interior run exists): per-pixel tap lists.
      for (int64_t q = 0; q < p.Q; ++q) {
        if (interior_done && q >= q_in_lo && q < q_in_hi) continue;
        int64_t nt = 0;
        for (int64_t r = 0; r < p.R; ++r) {
          const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
          if (h < 0 || h >= p.H) continue;
          for (int64_t s = 0; s < p.S; ++s) {
            const int64_t w = q * p.stride_w - p.pad_w + s * p.dil_w;
            if (w < 0 || w >= p.W) continue;
            x_off[nt] = n * x.sn + h * x.sh + w * x.sw;
            w_off[nt++] = (r * p.S + s) * Cp;
          }
        }
        depthwise_pixel(x.data, x_off.data(), wp, w_off.data(), nt, bias.data(), nv, yrow + q * out.view.sw);
      }
    }
  });
  finish_output(out, y, a.y.stride, p.N, C, p.P, p.Q);
  return true;
}

// dx[n, h, w, c] = sum over taps (r, s) whose output (p, q) exists, h + pad_h - r dil_h = p stride_h
// (likewise w), of dy[n, p, q, c] w[c, r, s].
// dgrad for stride 1: dx = the forward convolution of dy with the filter rotated by 180 degrees
// (negative weight strides from its last tap) and padding dil (R - 1) - pad, so depthwise_fprop
// does it (planes or channels-last, whole rows of taps in registers) and writes every element of
// dx. The per-pixel loop below took ~2x as long: 144 @ 56 channels_last, N=1, 0.29 ms vs fprop 0.18.
template <typename T>
inline bool depthwise_dgrad_as_fprop(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t pad_h = p.dil_h * (p.R - 1) - p.pad_h, pad_w = p.dil_w * (p.S - 1) - p.pad_w;
  if (p.stride_h != 1 || p.stride_w != 1 || pad_h < 0 || pad_w < 0) return false;
  Conv2dFpropArgs f{p, a.dy, a.w, nullptr, a.dx};
  f.p.H = p.P, f.p.W = p.Q, f.p.P = p.H, f.p.Q = p.W, f.p.pad_h = pad_h, f.p.pad_w = pad_w;
  const int64_t* ws = a.w.stride;
  f.w.data = static_cast<const T*>(a.w.data) + (p.R - 1) * ws[2] + (p.S - 1) * ws[3];
  f.w.stride[2] = -ws[2], f.w.stride[3] = -ws[3];
  return depthwise_fprop<T>(f);
}

// dgrad at stride > 1 into channels-last dx whose filter's stride phases hold more taps than
// depthwise_row keeps in registers (7 x 7 /2: up to 4 x 4; smaller filters take the row loop of
// depthwise_dgrad, below, which ran 1.1-1.6x faster than this): one forward per stride phase
// (dgrad_phases), whose vector rows hold any tap count. The dx rows h = first + stride j of a
// phase are reached by the taps r with r dil = a (mod stride), from dy row j + base(r), base
// falling by dil / gcd(stride, dil) per tap: a stride-1 forward over dy with those taps reversed
// (negative weight strides from the last one), dilated by that step, top padding -base(last),
// writing the phase's rows and columns of dx in place. Phases that no tap reaches are zeroed.
// Against the row loop (A/B, arms in random order, 2 threads, channels_last, 7 x 7 /2 96 @56):
// N=1 1.5x, N=8 level.
template <typename T>
inline bool depthwise_dgrad_phases(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if (a.dx.stride[1] != 1 || (p.stride_h == 1 && p.stride_w == 1)) return false;
  const std::vector<DgradPhase1D> rows = dgrad_phases(p.H, p.R, p.stride_h, p.pad_h, p.dil_h);
  const std::vector<DgradPhase1D> cols = dgrad_phases(p.W, p.S, p.stride_w, p.pad_w, p.dil_w);
  const auto most_taps = [](const std::vector<DgradPhase1D>& phases) {
    size_t most = 0;
    for (const DgradPhase1D& ph : phases) most = std::max(most, ph.taps.size());
    return int64_t(most);
  };
  if (most_taps(rows) * most_taps(cols) <= kDepthwiseRowTaps) return false;
  const auto reaches_dy = [](const DgradPhase1D& ph) { return ph.taps.empty() || ph.base.back() <= 0; };
  if (!std::all_of(rows.begin(), rows.end(), reaches_dy) || !std::all_of(cols.begin(), cols.end(), reaches_dy))
    return false;  // a phase would start inside dy (padding past the filter's reach): per pixel
  const int64_t *ws = a.w.stride, *xs = a.dx.stride;
  T* dx = static_cast<T*>(a.dx.data);
  for (const DgradPhase1D& pr : rows)
    for (const DgradPhase1D& pc : cols) {
      if (pr.count == 0 || pc.count == 0) continue;
      T* y = dx + pr.first * xs[2] + pc.first * xs[3];
      const int64_t ys[4] = {xs[0], xs[1], p.stride_h * xs[2], p.stride_w * xs[3]};
      if (pr.taps.empty() || pc.taps.empty()) {
        parallel_for(0, p.N * pr.count, 4, [&](int64_t b, int64_t e) {
          for (int64_t ni = b; ni < e; ++ni)
            for (int64_t j = 0; j < pc.count; ++j)
              std::fill_n(y + ni / pr.count * ys[0] + ni % pr.count * ys[2] + j * ys[3], p.C, T{});
        });
        continue;
      }
      // Consecutive taps of a phase: r steps (and bases step) evenly.
      const int64_t nr = int64_t(pr.taps.size()), ns = int64_t(pc.taps.size());
      const int64_t r_step = nr > 1 ? pr.taps[1] - pr.taps[0] : 1, s_step = ns > 1 ? pc.taps[1] - pc.taps[0] : 1;
      const int64_t base_step_r = nr > 1 ? pr.base[0] - pr.base[1] : 1;
      const int64_t base_step_s = ns > 1 ? pc.base[0] - pc.base[1] : 1;
      Conv2dFpropArgs f{p, a.dy, a.w, nullptr, {y, {ys[0], ys[1], ys[2], ys[3]}}};
      f.p.H = p.P, f.p.W = p.Q, f.p.P = pr.count, f.p.Q = pc.count, f.p.R = nr, f.p.S = ns;
      f.p.stride_h = f.p.stride_w = 1, f.p.dil_h = base_step_r, f.p.dil_w = base_step_s;
      f.p.pad_h = -pr.base.back(), f.p.pad_w = -pc.base.back();
      f.w.data = static_cast<const T*>(a.w.data) + pr.taps.back() * ws[2] + pc.taps.back() * ws[3];
      f.w.stride[2] = -r_step * ws[2], f.w.stride[3] = -s_step * ws[3];
      depthwise_fprop<T>(f);
    }
  return true;
}

// dgrad at stride 2 on NCHW planes, as plane tiles (depthwise_plane_tile) over dy: dx row
// h = 2 i + ph takes the filter rows r of its parity, (ph + pad_h - r) even, from dy rows i + (ph +
// pad_h - r) / 2, consecutive dy rows for every other r, so a stride-1 tile of KR = (the parity's
// tap count) rows with the sub-filter's rows reversed; likewise dx column 2 j + phase the taps s
// of its parity from dy column j + (phase + pad_w - s) / 2. A tile is MR dx rows of one parity x
// L column pairs: both column phases summed (two tiles of taps), then interleaved into 2 L
// consecutive dx columns. dy is copied once per plane into zero-padded float rows (every tap of
// every dx element in bounds). A/B against the one-row planes kernel below (a dy vector loaded
// per tap) or the channels-last path (dy transposed in, dx out), 2 threads: N=8 3 x 3 144 @56
// 2.3x, 5 x 5 7.4x, N=1 3 x 3 144 @56 2.1x, 96 @112 3.6x, 5 x 5 144 @56 2.5x; AVX2 1.8-6x. Rows
// of L / 2 to L pairs store part of their second vector (AVX-512, 28 columns: N=8 3 x 3 192 @28
// 1.8x, 5 x 5 240 @28 2.1x, N=1 1.1-1.4x); shorter ones are left to those paths.
template <int KR, int MR, typename T>
void depthwise_dgrad_s2_parity_rows(const float* buf, int64_t row_floats, int64_t row0, int64_t rows_out, int ph,
                                    const float* const wk[2], const int64_t* const s_off[2], const int64_t ns[2],
                                    const int64_t* pair_col, int64_t npairs, int64_t W, T* dxp, int64_t dx_row) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  const int64_t nrt = (rows_out + MR - 1) / MR;
  for (int64_t rt = 0; rt < nrt; ++rt) {
    const int64_t i0 = rows_out >= MR ? std::min(rt * MR, rows_out - MR) : 0;
    const float* xt = buf + (row0 + i0) * row_floats;
    for (int64_t b = 0; b < npairs; ++b) {
      const int64_t j = pair_col[b];
      typename V::type e[MR][1], o[MR][1];
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) e[m][0] = o[m][0] = V::zero();
      depthwise_plane_tile<KR, 1, MR, 1>(xt, row_floats, &j, wk[0], ns[0], s_off[0], e);
      depthwise_plane_tile<KR, 1, MR, 1>(xt, row_floats, &j, wk[1], ns[1], s_off[1], o);
      // The block's dx columns: 2 L, or fewer at an odd W's last pair (no odd column) and on rows
      // of under L pairs (more than L / 2: the first L columns are whole).
      const int64_t cols = std::min<int64_t>(2 * L, W - 2 * j);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        if (i0 + m >= rows_out) continue;
        T* d = dxp + (2 * (i0 + m) + ph) * dx_row + 2 * j;
        typename V::type lo, hi;
        interleave_lanes(e[m][0], o[m][0], lo, hi);
        V::store(d, lo);
        if (cols == 2 * L)
          V::store(d + L, hi);
        else
          V::store_first(d + L, hi, int(cols - L));
      }
    }
  }
}

template <typename T>
inline bool depthwise_dgrad_planes_s2_tiles(const Conv2dDgradArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  constexpr int MR = L == 16 ? 7 : 4;  // 2 MR accumulators (both column phases), KR weights, an input
  const Conv2dProblem& p = a.p;
  const int64_t *gs = a.dy.stride, *xs = a.dx.stride, *ws = a.w.stride;
  const int64_t Wh = (p.W + 1) / 2;  // dx column pairs
  if (p.stride_h != 2 || p.stride_w != 2 || p.dil_h != 1 || p.dil_w != 1 || (p.R != 3 && p.R != 5 && p.R != 7) ||
      2 * Wh <= L || gs[3] != 1 || xs[3] != 1 || gs[1] == 1 || xs[1] == 1)
    return false;
  // Per dx row parity ph: its taps r (descending, so dy row offsets ascend from base[ph]); per
  // column phase likewise, the dy column offset of each tap.
  int64_t kr[2] = {0, 0}, base[2] = {0, 0}, r_top[2] = {0, 0};
  for (int ph = 0; ph < 2; ++ph)
    for (int64_t r = p.R - 1; r >= 0; --r)
      if ((ph + p.pad_h - r) % 2 == 0) {
        if (kr[ph]++ == 0) base[ph] = (ph + p.pad_h - r) / 2, r_top[ph] = r;
      }
  std::vector<int64_t> taps_s[2], offs[2];
  for (int phase = 0; phase < 2; ++phase)
    for (int64_t s = 0; s < p.S; ++s)
      if ((phase + p.pad_w - s) % 2 == 0) taps_s[phase].push_back(s), offs[phase].push_back((phase + p.pad_w - s) / 2);
  // dy buffer: row (dy row + pad_top), column (dy column + pad_left); zeros around.
  int64_t off_lo = 0, off_hi = 0;
  for (int phase = 0; phase < 2; ++phase)
    for (int64_t o : offs[phase]) off_lo = std::min(off_lo, o), off_hi = std::max(off_hi, o);
  const int64_t pad_top = std::max<int64_t>(0, -std::min(base[0], base[1])), pad_left = -off_lo;
  int64_t rows = pad_top + p.P;
  for (int ph = 0; ph < 2; ++ph)
    rows = std::max(rows, pad_top + base[ph] + std::max<int64_t>((p.H - ph + 1) / 2, MR) + kr[ph] - 1);
  const int64_t row_floats = (std::max(pad_left + p.Q, pad_left + std::max<int64_t>(Wh, L) + off_hi) + L - 1) / L * L;
  for (int phase = 0; phase < 2; ++phase)
    for (int64_t& o : offs[phase]) o += pad_left;
  std::vector<int64_t> pair_col((Wh + L - 1) / L);
  for (size_t b = 0; b < pair_col.size(); ++b) pair_col[b] = std::min<int64_t>(b * L, std::max<int64_t>(Wh - L, 0));
  // Weights as float per (row parity, column phase), channel by channel: [c][tap s][row t], row
  // t = r_top - 2 t.
  const T* w = static_cast<const T*>(a.w.data);
  std::vector<float> wk[2][2];
  for (int ph = 0; ph < 2; ++ph)
    for (int phase = 0; phase < 2; ++phase) {
      const int64_t per_c = int64_t(taps_s[phase].size()) * kr[ph];
      wk[ph][phase].resize(p.C * per_c);
      for (int64_t c = 0; c < p.C; ++c)
        for (size_t i = 0; i < taps_s[phase].size(); ++i)
          for (int64_t t = 0; t < kr[ph]; ++t)
            wk[ph][phase][c * per_c + i * kr[ph] + t] =
                load_acc(w + c * ws[0] + (r_top[ph] - 2 * t) * ws[2] + taps_s[phase][i] * ws[3]);
    }
  const T* dy = static_cast<const T*>(a.dy.data);
  T* dx = static_cast<T*>(a.dx.data);
  parallel_for(0, p.N * p.C, 1, [&](int64_t b, int64_t e) {
    ScratchOf<float> buf(rows * row_floats);
    std::fill(buf.data(), buf.data() + rows * row_floats, 0.0f);  // the borders stay zero
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / p.C, c = nc % p.C;
      const T* gp = dy + n * gs[0] + c * gs[1];
      for (int64_t i = 0; i < p.P; ++i)
        row_to_floats(gp + i * gs[2], p.Q, buf.data() + (pad_top + i) * row_floats + pad_left);
      T* xp = dx + n * xs[0] + c * xs[1];
      for (int ph = 0; ph < 2; ++ph) {
        const float* const wk_ph[2] = {wk[ph][0].data() + c * int64_t(taps_s[0].size()) * kr[ph],
                                       wk[ph][1].data() + c * int64_t(taps_s[1].size()) * kr[ph]};
        const int64_t* const s_off[2] = {offs[0].data(), offs[1].data()};
        const int64_t ns[2] = {int64_t(taps_s[0].size()), int64_t(taps_s[1].size())};
        const int64_t rows_out = (p.H - ph + 1) / 2, row0 = pad_top + base[ph];
        const auto run = [&]<int KR>() {
          depthwise_dgrad_s2_parity_rows<KR, MR>(buf.data(), row_floats, row0, rows_out, ph, wk_ph, s_off, ns,
                                                pair_col.data(), int64_t(pair_col.size()), p.W, xp, xs[2]);
        };
        switch (kr[ph]) {
          case 1: run.template operator()<1>(); break;
          case 2: run.template operator()<2>(); break;
          case 3: run.template operator()<3>(); break;
          default: run.template operator()<4>(); break;
        }
      }
    }
  });
  return true;
}

// dgrad on NCHW planes at column stride 2 (any row stride): dx row h's even and odd columns
// (w = 2 j + phase) each gather the taps s of their parity, dx[2 j + phase] += w[r][s] dy[j + o],
// o = (phase + pad_w - s dil_w) / 2, as 8-lane vectors over j; the two phases' vectors are then
// interleaved into 16 consecutive dx columns. Border columns (some tap outside dy) are scalar.
// 8-lane __m256 in both ISA builds: the interleave is two unpacks and two lane permutes there.
// The channels-last path transposes dy in and dx out (N=8, MobileNetV2 144 @ 56 s2: ~0.5x
// PyTorch's fwd+bwd).
template <typename T>
inline bool depthwise_dgrad_planes_s2(const Conv2dDgradArgs& a) {
  constexpr int64_t kMaxTaps = 25;
  const Conv2dProblem& p = a.p;
  const int64_t *gs = a.dy.stride, *xs = a.dx.stride, *ws = a.w.stride;
  if (p.stride_w != 2 || gs[3] != 1 || xs[3] != 1 || gs[1] == 1 || xs[1] == 1 || p.R * p.S > kMaxTaps) return false;
  // Interior j: every tap's dy column j + o in [0, Q), both phases' dx columns in [0, W).
  int64_t j_lo = 0, j_hi = p.W / 2;
  for (int64_t s = 0; s < p.S; ++s)
    for (int64_t phase = 0; phase < 2; ++phase) {
      const int64_t num = phase + p.pad_w - s * p.dil_w;
      if (num % 2 != 0) continue;
      j_lo = std::max(j_lo, -num / 2), j_hi = std::min(j_hi, p.Q - num / 2);
    }
  if (j_hi - j_lo < 8) return false;
  // As the forward's stride-2 rule (depthwise_fprop_planes): rows of 96+ columns, or 56+ past 8 MiB.
  const int64_t bytes = p.N * p.C * (p.H * p.W + p.P * p.Q) * int64_t(sizeof(T));
  if (!(p.W >= 96 || (p.W >= 56 && bytes > (int64_t(8) << 20)))) return false;
  const T* dy = static_cast<const T*>(a.dy.data);
  const T* w = static_cast<const T*>(a.w.data);
  T* dx = static_cast<T*>(a.dx.data);
  parallel_for(0, p.N * p.C, 1, [&](int64_t b, int64_t e) {
    float wk[kMaxTaps];
    __m256 wv[kMaxTaps];
    const T* tap_src[2][kMaxTaps];  // per phase: dy row + o, and the tap's weight index
    int64_t tap_w[2][kMaxTaps];
    for (int64_t nc = b; nc < e; ++nc) {
      const int64_t n = nc / p.C, c = nc % p.C;
      for (int64_t t = 0; t < p.R * p.S; ++t) {
        wk[t] = load_acc(w + c * ws[0] + (t / p.S) * ws[2] + (t % p.S) * ws[3]);
        wv[t] = _mm256_set1_ps(wk[t]);
      }
      const T* gp = dy + n * gs[0] + c * gs[1];
      T* xp = dx + n * xs[0] + c * xs[1];
      for (int64_t h = 0; h < p.H; ++h) {
        int64_t nt[2] = {0, 0};
        for (int64_t r = 0; r < p.R; ++r) {
          const int64_t hp = h + p.pad_h - r * p.dil_h;
          if (hp < 0 || hp % p.stride_h != 0 || hp / p.stride_h >= p.P) continue;
          for (int64_t s = 0; s < p.S; ++s) {
            const int64_t num = p.pad_w - s * p.dil_w, phase = num & 1;  // even (num + phase)
            tap_src[phase][nt[phase]] = gp + (hp / p.stride_h) * gs[2] + (num + phase) / 2;
            tap_w[phase][nt[phase]++] = r * p.S + s;
          }
        }
        T* xrow = xp + h * xs[2];
        auto vectors_at = [&](int64_t j) {  // dx columns [2 j, 2 j + 16)
          __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
          for (int phase = 0; phase < 2; ++phase)
            for (int64_t t = 0; t < nt[phase]; ++t)
              acc[phase] = _mm256_fmadd_ps(wv[tap_w[phase][t]], load8(tap_src[phase][t] + j), acc[phase]);
          const __m256 lo = _mm256_unpacklo_ps(acc[0], acc[1]), hi = _mm256_unpackhi_ps(acc[0], acc[1]);
          store8(xrow + 2 * j, _mm256_permute2f128_ps(lo, hi, 0x20));
          store8(xrow + 2 * j + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        };
        int64_t j = j_lo;
        for (; j + 8 <= j_hi; j += 8) vectors_at(j);
        if (j < j_hi) vectors_at(j_hi - 8);  // overlapping the last whole vector
        auto scalar_at = [&](int64_t col) {
          float acc = 0.0f;
          for (int64_t r = 0; r < p.R; ++r) {
            const int64_t hp = h + p.pad_h - r * p.dil_h;
            if (hp < 0 || hp % p.stride_h != 0 || hp / p.stride_h >= p.P) continue;
            for (int64_t s = 0; s < p.S; ++s) {
              const int64_t wq = col + p.pad_w - s * p.dil_w;
              if (wq < 0 || wq % 2 != 0 || wq / 2 >= p.Q) continue;
              acc += wk[r * p.S + s] * load_acc(gp + (hp / p.stride_h) * gs[2] + wq / 2);
            }
          }
          store_from(xrow + col, acc);
        };
        for (int64_t col = 0; col < 2 * j_lo; ++col) scalar_at(col);
        for (int64_t col = 2 * j_hi; col < p.W; ++col) scalar_at(col);
      }
    }
  });
  return true;
}

template <typename T>
inline bool depthwise_dgrad(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || !is_depthwise(p)) return false;
  if (depthwise_dgrad_as_fprop<T>(a)) return true;
  if (depthwise_dgrad_phases<T>(a)) return true;
  if (depthwise_dgrad_planes_s2_tiles<T>(a)) return true;
  if (depthwise_dgrad_planes_s2<T>(a)) return true;
  using V = VecF32;
  constexpr int L = V::kLanes;
  const int64_t C = p.C, Cp = padded_channels(C), nv = Cp / L;
  ScratchOf<T> dys(0), dxs(0);
  const ChannelsLast<T> dy = channels_last_input(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, C, p.P, p.Q, dys);
  T* dx = static_cast<T*>(a.dx.data);
  const OutputTarget<T> out = channels_last_output(dx, a.dx.stride, p.N, C, p.H, p.W, dxs);
  // The column phases (dgrad_phases): dx column first + stride_w j reads dy column j + base[t]
  // through tap s = taps[t]. Where all of a phase's taps land inside dy ([j_lo, j_hi)), a row's
  // taps are the same for every j: depthwise_row runs them, weights in registers, writing every
  // stride_w-th pixel; the phases of a row go one after another while its lines are in cache, so
  // dx is written in one pass. Against one forward per stride phase over all of dx (now
  // depthwise_dgrad_phases' case only), in-process A/B, arms in random order, 2 threads,
  // channels_last, Xeon: 3 x 3 /2 N=8 144 @56 1.37x, 96 @112 1.26x, 192 @28 1.10x, 576 @14 1.46x,
  // 5 x 5 /2 144 @56 1.28x; N=1 1.01-1.61x; bfloat16 1.11-1.23x; AVX2 1.07-1.31x.
  const std::vector<DgradPhase1D> cols = dgrad_phases(p.W, p.S, p.stride_w, p.pad_w, p.dil_w);
  const int64_t nph = int64_t(cols.size());
  std::vector<int64_t> j_lo(nph), j_hi(nph);
  for (int64_t b = 0; b < nph; ++b) {
    int64_t lo = 0, hi = cols[b].count;
    for (int64_t base : cols[b].base) lo = std::max(lo, -base), hi = std::min(hi, p.Q - base);
    j_lo[b] = lo, j_hi[b] = std::max(lo, hi);
  }
  const std::vector<float> zeros(Cp, 0.0f);
  parallel_for(0, p.N * p.H, 1, [&](int64_t b, int64_t e) {
    ThreadDepthwiseWeights<T> weights(static_cast<const T*>(a.w.data), a.w.stride, C, p.R, p.S);
    const float* wp = weights.all();
    std::vector<int64_t> dy_off(p.R * p.S), w_off(p.R * p.S), row_r, row_off;
    std::vector<char> run_done(nph);
    for (int64_t nh = b; nh < e; ++nh) {
      const int64_t n = nh / p.H, h = nh % p.H;
      T* dxrow = out.view.data + n * out.view.sn + h * out.view.sh;
      row_r.clear(), row_off.clear();
      for (int64_t r = 0; r < p.R; ++r) {
        const int64_t hp = h + p.pad_h - r * p.dil_h;
        if (hp < 0 || hp % p.stride_h != 0 || hp / p.stride_h >= p.P) continue;
        row_r.push_back(r);
        row_off.push_back(n * dy.sn + (hp / p.stride_h) * dy.sh);
      }
      for (int64_t ph = 0; ph < nph; ++ph) {
        const DgradPhase1D& c = cols[ph];
        const int64_t taps = int64_t(row_r.size() * c.taps.size());
        run_done[ph] = false;
        if (taps == 0 || j_lo[ph] >= j_hi[ph]) continue;
        for (size_t i = 0, t = 0; i < row_r.size(); ++i)
          for (size_t k = 0; k < c.taps.size(); ++k, ++t) {
            dy_off[t] = row_off[i] + c.base[k] * dy.sw;
            w_off[t] = (row_r[i] * p.S + c.taps[k]) * Cp;
          }
        run_done[ph] = depthwise_row_any(taps, dy.data, dy.sw, dy_off.data(), wp, w_off.data(), zeros.data(), nv,
                                         j_lo[ph], j_hi[ph], dxrow + c.first * out.view.sw,
                                         p.stride_w * out.view.sw);
      }
      // The columns left (edges, phases of more than kDepthwiseRowTaps taps): per pixel, the
      // taps of its phase whose dy column lies inside dy.
      for (int64_t w = 0; w < p.W; ++w) {
        const int64_t ph = (w + p.pad_w) % p.stride_w, j = (w - cols[ph].first) / p.stride_w;
        if (run_done[ph] && j >= j_lo[ph] && j < j_hi[ph]) continue;
        const DgradPhase1D& c = cols[ph];
        int64_t taps = 0;
        for (size_t i = 0; i < row_r.size(); ++i)
          for (size_t k = 0; k < c.taps.size(); ++k) {
            const int64_t q = j + c.base[k];
            if (q < 0 || q >= p.Q) continue;
            dy_off[taps] = row_off[i] + q * dy.sw;
            w_off[taps++] = (row_r[i] * p.S + c.taps[k]) * Cp;
          }
        depthwise_pixel<T>(dy.data, dy_off.data(), wp, w_off.data(), taps, nullptr, nv, dxrow + w * out.view.sw);
      }
    }
  });
  finish_output(out, dx, a.dx.stride, p.N, C, p.H, p.W);
  return true;
}

// One step of wgrad_plane_rows: column vector j of MR dy rows (gm) against their x rows (xm),
// every tap s of filter row r; when kMasked, tap s only in the lanes of mk[j (S + 1) + s] and dy
// loaded in those of mk[j (S + 1) + S] (masked loads: a border vector of a plane read in place
// may reach past the tensor's ends).
template <bool kMasked, int MR, int S>
[[gnu::always_inline]] inline void wgrad_plane_step(VecF32::type (&acc)[MR][S], const float* const (&gm)[MR],
                                                    const float* const (&xm)[MR], const int64_t (&s_off)[S],
                                                    int64_t j, const VecF32::mask* mk) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  typename V::mask k[S + 1];
  if constexpr (kMasked)
#pragma GCC unroll 8
    for (int s = 0; s <= S; ++s) k[s] = mk[j * (S + 1) + s];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    const typename V::type gv = kMasked ? V::load_masked(gm[m] + j * L, k[S]) : V::load(gm[m] + j * L);
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      const float* xp = xm[m] + s_off[s] + j * L;
      const typename V::type xv = kMasked ? V::load_masked(xp, k[s]) : V::load(xp);
      if constexpr (kMasked)
        acc[m][s] = V::fmadd_masked(gv, xv, acc[m][s], k[s]);
      else
        acc[m][s] = V::fmadd(gv, xv, acc[m][s]);
    }
  }
}

// Filter row r's products over nrows output rows (a multiple of MR) of one plane: output row i's
// dy at g + i g_row, the x row that filter row r gives it at xr + i x_row, output column q's tap s
// at element q + s_off[s] of that; nvec vectors of L columns, those outside [j_lo, j_hi) only in
// the lanes of their masks (output columns past Q, x columns outside the input).
// The MR S sums stay in registers (MR rows in separate sums keep 8+ FMAs in flight) and are
// added to sum[s L, (s + 1) L) at the end.
template <int MR, int S>
inline void wgrad_plane_rows(const float* g, int64_t g_row, const float* xr, int64_t x_row, int64_t nrows,
                             const int64_t* s_off, int64_t nvec, int64_t j_lo, int64_t j_hi, const VecF32::mask* mk,
                             float* sum) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  typename V::type acc[MR][S];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) acc[m][s] = V::zero();
  int64_t so[S];
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s) so[s] = s_off[s];
  for (int64_t i = 0; i < nrows; i += MR) {
    const float* gm[MR];
    const float* xm[MR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) gm[m] = g + (i + m) * g_row, xm[m] = xr + (i + m) * x_row;
    int64_t j = 0;
    for (; j < j_lo; ++j) wgrad_plane_step<true>(acc, gm, xm, so, j, mk);
    for (; j < j_hi; ++j) wgrad_plane_step<false>(acc, gm, xm, so, j, mk);
    for (; j < nvec; ++j) wgrad_plane_step<true>(acc, gm, xm, so, j, mk);
  }
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s) {
    typename V::type t = acc[0][s];
#pragma GCC unroll 8
    for (int m = 1; m < MR; ++m) t = V::add(t, acc[m][s]);
    V::store(sum + s * L, V::add(V::load(sum + s * L), t));
  }
}

// Filter rows r0 + i dr (i < KR, dr dil_h = stride_h) read the same x rows: output row k - i's tap
// r0 + i dr reads x row (k - i) stride_h + (r0 + i dr) dil_h = k stride_h + r0 dil_h, output row
// k's tap r0 row. So per x row k (at x + k x_row) and column vector j, each tap column's x vector
// is loaded once for the KR dy rows k - i (at g + (k - i) g_row): KR S FMAs for S + KR loads (S
// (KR + 1) one filter row at a time, and the x vectors at a column offset straddle two cache
// lines; the asm keeps GCC from folding the load into each FMA). Rows k in [0, nk), where every
// i has its output row; the group's sums for tap (r0 + i dr, s) are added to
// sum[i sum_step + s L, ...). Masks as in wgrad_plane_step.
template <int KR, int S>
inline void wgrad_plane_xrows(const float* g, int64_t g_row, const float* x, int64_t x_row, int64_t nk,
                              const int64_t* s_off, int64_t nvec, int64_t j_lo, int64_t j_hi, const VecF32::mask* mk,
                              float* sum, int64_t sum_step) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  typename V::type acc[KR][S];
#pragma GCC unroll 8
  for (int i = 0; i < KR; ++i)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) acc[i][s] = V::zero();
  int64_t so[S];
#pragma GCC unroll 8
  for (int s = 0; s < S; ++s) so[s] = s_off[s];
  for (int64_t k = 0; k < nk; ++k) {
    const float* gi[KR];
#pragma GCC unroll 8
    for (int i = 0; i < KR; ++i) gi[i] = g + (k - i) * g_row;
    const float* xk = x + k * x_row;
    const auto step = [&]<bool kMasked>(int64_t j) __attribute__((always_inline)) {
      typename V::type gv[KR];
#pragma GCC unroll 8
      for (int i = 0; i < KR; ++i)
        gv[i] = kMasked ? V::load_masked(gi[i] + j * L, mk[j * (S + 1) + S]) : V::load(gi[i] + j * L);
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) {
        const typename V::mask m = kMasked ? mk[j * (S + 1) + s] : typename V::mask();
        typename V::type xv = kMasked ? V::load_masked(xk + so[s] + j * L, m) : V::load(xk + so[s] + j * L);
        asm("" : "+v"(xv));  // one load for the KR FMAs, not a memory operand in each
        if constexpr (kMasked) {
#pragma GCC unroll 8
          for (int i = 0; i < KR; ++i) acc[i][s] = V::fmadd_masked(gv[i], xv, acc[i][s], m);
        } else {
#pragma GCC unroll 8
          for (int i = 0; i < KR; ++i) acc[i][s] = V::fmadd(gv[i], xv, acc[i][s]);
        }
      }
    };
    int64_t j = 0;
    for (; j < j_lo; ++j) step.template operator()<true>(j);
    for (; j < j_hi; ++j) step.template operator()<false>(j);
    for (; j < nvec; ++j) step.template operator()<true>(j);
  }
#pragma GCC unroll 8
  for (int i = 0; i < KR; ++i)
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      float* d = sum + i * sum_step + s * L;
      V::store(d, V::add(V::load(d), acc[i][s]));
    }
}

// Output rows per register tile of wgrad_plane_rows for filters S columns wide: MR S sums, 8 or
// more for the FMA latency, within the vector registers (32 on AVX-512, 16 on AVX2, two taken by
// the dy and x vectors) and the general ones (two pointers per row, S offsets).
constexpr int wgrad_tile_rows(int S) {
  constexpr bool kWide = VecF32::kLanes == 16;
  return S == 1 ? 6 : S == 2 ? 5 : S == 3 ? 4 : S == 4 ? 3 : S <= 6 || kWide ? 2 : 1;
}

// The most filter rows per group of wgrad_plane_xrows: KR S sums, KR dy vectors and an x vector
// within the vector registers (32 on AVX-512, 16 on AVX2), at most 5.
constexpr int wgrad_group_rows(int S) { return std::min(5, (VecF32::kLanes == 16 ? 24 : 12) / S); }

// A group of filter rows r0, r0 + dr, ..., r0 + (rows - 1) dr for wgrad_plane_xrows.
struct WgradRowGroup {
  int64_t r0, dr, rows;
};

// The filter rows in groups of at most max_rows sharing x rows (dr dil_h = stride_h): per residue
// of r modulo dr, its rows in near-equal runs (5 rows -> 2 + 3: 10 sums for the FMA latency,
// not 4 + 1). Without such a dr (stride_h not a multiple of dil_h), one group per filter row.
inline std::vector<WgradRowGroup> wgrad_row_groups(const Conv2dProblem& p, int64_t max_rows) {
  std::vector<WgradRowGroup> groups;
  const int64_t dr = p.stride_h % p.dil_h == 0 ? p.stride_h / p.dil_h : 0;
  if (dr == 0 || max_rows <= 1) {
    for (int64_t r = 0; r < p.R; ++r) groups.push_back({r, 1, 1});
    return groups;
  }
  for (int64_t first = 0; first < std::min(dr, p.R); ++first) {
    const int64_t count = (p.R - first + dr - 1) / dr, ngroups = (count + max_rows - 1) / max_rows;
    for (int64_t g = 0, done = 0; g < ngroups; ++g) {
      const int64_t rows = (count - done) / (ngroups - g);
      groups.push_back({first + done * dr, dr, rows});
      done += rows;
    }
  }
  return groups;
}

// wgrad on NCHW planes, column stride ST = 1 or 2, filters S <= 7 columns wide (any rows, row
// stride and dilation): output columns are the vector lanes, as in depthwise_fprop_plane_tiles.
// A thread item is one channel, summed over every image in order, so the result does not depend
// on the thread count. float planes are read where they are (x at column stride 2 excepted);
// bfloat16 ones, and x at column stride 2 (split into its column phases), are copied per image
// into float rows (PlaneTileRows; dy into rows of whole vectors). In-process A/B, 2 threads,
// reading in place against copying: N=8 3 x 3 144 @56 1.5x, 7 x 7 96 @56 1.4x, 5 x 5 240 @28
// 1.1x; N=1 1.2-2x. Filter rows that share x rows go in groups
// (wgrad_row_groups) over the x rows where all of them have an output row (wgrad_plane_xrows);
// the output rows left at the plane's top and bottom, and filter rows in groups of one, go a
// filter row at a time in register tiles of output rows (wgrad_plane_rows). Lanes whose product
// has no place in the sum (output columns past Q, x columns in the padding) are masked out of the
// FMA, not multiplied by a zero: dy x 0 would turn an inf in dy into a NaN. The vector sums per
// tap are added across their lanes at the end.
template <typename T, int ST, int S>
void depthwise_wgrad_plane_tiles(const Conv2dWgradArgs& a) {
  using V = VecF32;
  constexpr int L = V::kLanes, MR = wgrad_tile_rows(S);
  const Conv2dProblem& p = a.p;
  const int64_t *xs = a.x.stride, *gs = a.dy.stride, *ws = a.dw.stride;
  const T* x = static_cast<const T*>(a.x.data);
  const T* dy = static_cast<const T*>(a.dy.data);
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t nvec = (p.Q + L - 1) / L, g_row = nvec * L;
  const PlaneTileRows rows(p, ST, 0, g_row);
  const int64_t* so = rows.s_off.data();
  // Lane masks per vector and filter column; vectors [j_lo, j_hi) need none. (Raw bytes: a
  // vector type as a template argument loses its alignment attribute.)
  ScratchOf<uint8_t> mask_bytes(nvec * (S + 1) * int64_t(sizeof(typename V::mask)));
  typename V::mask* mk = reinterpret_cast<typename V::mask*>(mask_bytes.data());  // 64-byte aligned
  int64_t q_lo = 0, q_hi = p.Q;
  for (int64_t s = 0; s < S; ++s) {
    const TapRange qr = valid_outputs(p.Q, p.W, ST, p.pad_w, p.dil_w, s);
    for (int64_t j = 0; j < nvec; ++j) mk[j * (S + 1) + s] = V::lanes_between(qr.lo - j * L, qr.hi - j * L);
    q_lo = std::max(q_lo, qr.lo), q_hi = std::min(q_hi, qr.hi);
  }
  for (int64_t j = 0; j < nvec; ++j) mk[j * (S + 1) + S] = V::lanes_between(0, p.Q - j * L);  // dy's lanes
  const int64_t j_lo = std::min(nvec, (q_lo + L - 1) / L), j_hi = std::max(j_lo, q_hi / L);
  std::vector<TapRange> out_rows(p.R);  // per filter row, the output rows whose x row exists
  for (int64_t r = 0; r < p.R; ++r) out_rows[r] = valid_outputs(p.P, p.H, p.stride_h, p.pad_h, p.dil_h, r);
  const std::vector<WgradRowGroup> groups = wgrad_row_groups(p, wgrad_group_rows(S));
  // Interior vectors lie inside the rows; border ones are loaded under their masks.
  const bool x_in_place = std::is_same_v<T, float> && ST == 1;
  const bool g_in_place = std::is_same_v<T, float>;
  const int64_t x_rowf = x_in_place ? xs[2] : rows.row_floats, gr = g_in_place ? gs[2] : g_row;
  const int64_t x_row = p.stride_h * x_rowf;
  const bool prefetch = p.N * p.C * (p.H * p.W + p.P * p.Q) * int64_t(sizeof(T)) > kPrefetchPlanesBytes;
  parallel_for(0, p.C, 1, [&](int64_t b, int64_t e) {
    ScratchOf<float> xb(x_in_place ? 0 : rows.floats()), gb(g_in_place ? 0 : p.P * g_row), sum(p.R * S * L);
    if (!x_in_place) std::fill(xb.data(), xb.data() + rows.floats(), 0.0f);
    if (!g_in_place) std::fill(gb.data(), gb.data() + p.P * g_row, 0.0f);
    const float* xrow0 = nullptr;  // the plane's padded row 0 (padded column 0)
    const float* grow0 = nullptr;  // its dy row 0
    // Filter row r's output rows [lo, hi), a filter row at a time.
    const auto one_row = [&](int64_t r, int64_t lo, int64_t hi) {
      if (lo >= hi) return;
      const int64_t tiled = (hi - lo) / MR * MR;
      const float* g0 = grow0 + lo * gr;
      const float* x0 = xrow0 + (lo * p.stride_h + r * p.dil_h) * x_rowf;  // padded row
      float* sr = sum.data() + r * S * L;
      wgrad_plane_rows<MR, S>(g0, gr, x0, x_row, tiled, so, nvec, j_lo, j_hi, mk, sr);
      wgrad_plane_rows<1, S>(g0 + tiled * gr, gr, x0 + tiled * x_row, x_row, hi - lo - tiled, so, nvec, j_lo, j_hi,
                             mk, sr);
    };
    for (int64_t c = b; c < e; ++c) {
      std::fill(sum.data(), sum.data() + p.R * S * L, 0.0f);
      for (int64_t n = 0; n < p.N; ++n) {
        const T* xp = x + n * xs[0] + c * xs[1];
        const T* gp = dy + n * gs[0] + c * gs[1];
        if constexpr (std::is_same_v<T, float>) {
          if (x_in_place) xrow0 = xp - p.pad_h * xs[2] - p.pad_w;
          if (g_in_place) grow0 = gp;
        }
        if (!x_in_place) rows.fill(xp, xs[2], xb.data()), xrow0 = xb.data();
        if (!g_in_place) {
          for (int64_t i = 0; i < p.P; ++i) row_to_floats(gp + i * gs[2], p.Q, gb.data() + i * g_row);
          grow0 = gb.data();
        }
        const int64_t c1 = n + 1 < p.N ? c : c + 1, n1 = n + 1 < p.N ? n + 1 : 0;  // the next plane
        for (size_t gi = 0; gi < groups.size(); ++gi) {
          if (prefetch && c1 < e) {
            prefetch_plane_slice(x + n1 * xs[0] + c1 * xs[1], p.H, p.W, xs[2], gi, groups.size());
            prefetch_plane_slice(dy + n1 * gs[0] + c1 * gs[1], p.P, p.Q, gs[2], gi, groups.size());
          }
          const WgradRowGroup& grp = groups[gi];
          if (grp.rows == 1) {
            one_row(grp.r0, out_rows[grp.r0].lo, out_rows[grp.r0].hi);
            continue;
          }
          // Rows k (output rows of tap r0) where tap r0 + i dr has output row k - i, for every i.
          int64_t k_lo = 0, k_hi = p.P;
          for (int64_t i = 0; i < grp.rows; ++i) {
            const TapRange o = out_rows[grp.r0 + i * grp.dr];
            k_lo = std::max(k_lo, o.lo + i), k_hi = std::min(k_hi, o.hi + i);
          }
          k_hi = std::max(k_hi, k_lo);
          const float* g0 = grow0 + k_lo * gr;
          const float* x0 = xrow0 + (k_lo * p.stride_h + grp.r0 * p.dil_h) * x_rowf;
          float* sr = sum.data() + grp.r0 * S * L;
          const int64_t nk = k_hi - k_lo, step = grp.dr * S * L;
          const auto xrows = [&]<int KR>() {
            if constexpr (KR <= wgrad_group_rows(S))
              wgrad_plane_xrows<KR, S>(g0, gr, x0, x_row, nk, so, nvec, j_lo, j_hi, mk, sr, step);
          };
          switch (grp.rows) {
            case 2: xrows.template operator()<2>(); break;
            case 3: xrows.template operator()<3>(); break;
            case 4: xrows.template operator()<4>(); break;
            default: xrows.template operator()<5>(); break;
          }
          for (int64_t i = 0; i < grp.rows; ++i) {  // the rows the groups' pass left
            const int64_t r = grp.r0 + i * grp.dr;
            one_row(r, out_rows[r].lo, std::min(out_rows[r].hi, k_lo - i));
            one_row(r, std::max(out_rows[r].lo, k_hi - i), out_rows[r].hi);
          }
        }
      }
      for (int64_t t = 0; t < p.R * S; ++t) {
        float total = 0.0f;
        for (int l = 0; l < L; ++l) total += sum.data()[t * L + l];
        store_from(dw + c * ws[0] + (t / S) * ws[2] + (t % S) * ws[3], total);
      }
    }
  });
}

// The filters whose tap sums fit in the registers (with a dy and an x vector each): 3 x 3 in 2
// channel vectors on AVX-512 (18 of 32), 1 on AVX2 (9 of 16); 5 x 5 in 1 (AVX-512: 25 sums; AVX2:
// a group of filter rows per pass); filters 7 columns wide (ConvNeXt's 7 x 7) in 1, a group of
// filter rows per pass. AVX2 5 x 5 had taken the per-row sums below: in-process A/B, Zen 4, 2
// threads, channels_last, EfficientNet-B0's layers: 480 @14 N=1 0.190 -> 0.063 ms (AVX-512 0.045),
// N=8 3.05x, 5 x 5 /2 144 @56 N=1 2.28x, N=8 1.64x, 240 @28 2.2-2.6x; NCHW (480 @14 now here, not
// on plane tiles) 1.06-1.14x, rows of 28+ (plane tiles) level.
inline int depthwise_wgrad_register_block(const Conv2dProblem& p) {
  constexpr bool kWide = VecF32::kLanes == 16;
  if (p.R == 3 && p.S == 3) return kWide ? 2 : 1;
  if (p.R == 5 && p.S == 5) return 1;  // (AVX2: in groups of filter rows)
  if (p.S == 7) return 1;  // in groups of filter rows (depthwise_wgrad_row_group)
  return 0;
}

// Filter rows per pass of depthwise_wgrad_registers: all of a 3 x 3 filter, and of a 5 x 5 one on
// AVX-512; 7 columns wide, 3 rows on AVX-512 (21 sums; 4 rows, 28, ran 6-10% slower), 2 on AVX2
// (14 of 16 registers, x read by the FMAs; 1 row a pass was 1.2-1.3x slower); 5 x 5 on AVX2 2 + 3
// rows (10 and 15 sums; 1 + 2 + 2 rows ran 1.08-1.28x slower, but for 240 @28 N=1, 1.07x faster).
// Each pass reads dy and x again.
inline int64_t depthwise_wgrad_row_group(const Conv2dProblem& p) {
  constexpr bool kWide = VecF32::kLanes == 16;
  if (p.S == 7) return kWide ? 3 : 2;
  if (p.S == 5 && !kWide) return 3;  // 5 x 5 on AVX2: rows 0-1 (10 sums), then 2-4 (15)
  return p.R;
}

// depthwise_wgrad_plane_tiles where it applies: dense NCHW planes, column stride 1 or 2, filters
// up to 7 columns wide, output rows more than half a vector long, and for the filters with a
// channels-last register kernel (depthwise_wgrad_register_block) rows of 28 columns or more (56
// for 7-column filters). In-process A/B against the channels-last path (transposes, then that
// kernel), 2 threads, N=8: 3 x 3 384 @14 (one AVX-512 vector of 14 lanes, two AVX2 vectors) 1.3x
// slower on AVX-512, 1.2x on AVX2; 5 x 5 480 @14 2.1x slower on AVX-512; 7 x 7 384 @14 1.55x
// slower, 192 @28 1.1-1.2x (AVX2 level), 96 @56 1.15x (N=1) to 2.1x (N=8) faster. Against the
// channels-last per-row sums, 7 x 7 384 @14 had been 1.4x faster, AVX2 5 x 5 480 @14 1.5x.
template <typename T>
inline bool depthwise_wgrad_on_plane_tiles(const Conv2dWgradArgs& a) {
  constexpr int L = VecF32::kLanes;
  const Conv2dProblem& p = a.p;
  const int64_t *xs = a.x.stride, *gs = a.dy.stride;
  if ((p.stride_w != 1 && p.stride_w != 2) || p.S > 7 || 2 * p.Q <= L || xs[3] != 1 || gs[3] != 1 || xs[1] == 1 ||
      gs[1] == 1 || (p.Q < (p.S == 7 ? 56 : 28) && depthwise_wgrad_register_block(p) > 0))
    return false;
  const auto run = [&]<int ST>() {
    switch (p.S) {
      case 1: return depthwise_wgrad_plane_tiles<T, ST, 1>(a);
      case 2: return depthwise_wgrad_plane_tiles<T, ST, 2>(a);
      case 3: return depthwise_wgrad_plane_tiles<T, ST, 3>(a);
      case 4: return depthwise_wgrad_plane_tiles<T, ST, 4>(a);
      case 5: return depthwise_wgrad_plane_tiles<T, ST, 5>(a);
      case 6: return depthwise_wgrad_plane_tiles<T, ST, 6>(a);
      default: return depthwise_wgrad_plane_tiles<T, ST, 7>(a);
    }
  };
  if (p.stride_w == 2)
    run.template operator()<2>();
  else
    run.template operator()<1>();
  return true;
}

// The channels-last weight gradient of an R x S filter with its R S NB tap sums in registers:
// NB channel vectors of the output rows [r0, r1), partial sums to part[t Cp] (from channel v0 L).
// Per output pixel: NB loads of dy, R S NB of x, R S NB FMAs. Columns [q_lo, q_hi) have every tap
// in bounds; the others check each tap (cols). Sums run over the chunk in pixel order.
template <int R, int S, int NB, typename T>
void depthwise_wgrad_registers(const Conv2dProblem& p, const ChannelsLast<T>& x, const ChannelsLast<T>& dy,
                               int64_t r0, int64_t r1, int64_t v0, int64_t f0, const TapRange* cols, int64_t q_lo,
                               int64_t q_hi, float* part, int64_t Cp) {
  using V = VecF32;
  using Vec = V::type;
  constexpr int L = V::kLanes;
  Vec acc[R * S][NB];
  for (auto& tap : acc)
    for (auto& b : tap) b = V::zero();
  int64_t soff[S];
  for (int s = 0; s < S; ++s) soff[s] = (s * p.dil_w - p.pad_w) * x.sw;
  const int64_t xstep = p.stride_w * x.sw;
  for (int64_t np = r0; np < r1; ++np) {
    const int64_t n = np / p.P, pp = np % p.P;
    const T* dyrow = dy.data + n * dy.sn + pp * dy.sh + v0 * L;
    const T* xrow[R];
    bool row_in[R];
    for (int r = 0; r < R; ++r) {
      const int64_t h = pp * p.stride_h - p.pad_h + (f0 + r) * p.dil_h;
      row_in[r] = h >= 0 && h < p.H;
      xrow[r] = x.data + n * x.sn + (row_in[r] ? h : 0) * x.sh + v0 * L;
    }
    auto pixel = [&]<bool kEdge>(int64_t q) {
      Vec g[NB];
      for (int b = 0; b < NB; ++b) g[b] = V::load(dyrow + q * dy.sw + b * L);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (!row_in[r]) continue;
#pragma GCC unroll 8
        for (int s = 0; s < S; ++s) {
          if (kEdge && (q < cols[s].lo || q >= cols[s].hi)) continue;
          const T* xp = xrow[r] + q * xstep + soff[s];
#pragma GCC unroll 4
          for (int b = 0; b < NB; ++b) acc[r * S + s][b] = V::fmadd(g[b], V::load(xp + b * L), acc[r * S + s][b]);
        }
      }
    };
    int64_t q = 0;
    for (; q < std::min(q_lo, p.Q); ++q) pixel.template operator()<true>(q);
    for (; q < q_hi; ++q) pixel.template operator()<false>(q);
    for (; q < p.Q; ++q) pixel.template operator()<true>(q);
  }
  for (int t = 0; t < R * S; ++t)
    for (int b = 0; b < NB; ++b) V::store(part + (f0 * S + t) * Cp + (v0 + b) * L, acc[t][b]);
}

// Pixels per chunk of output rows in depthwise_wgrad's register path: the chunks' partial sums
// are added up at the end, so short rows (7 x 7) go many to a chunk.
constexpr int64_t kWgradChunkPixels = 512;

// dw[c, r, s] = sum over (n, p, q) of dy[n, p, q, c] x[n, h, w, c]. 3 x 3, 5 x 5 and 7-column
// filters (depthwise_wgrad_register_block): an item is a chunk of output rows (about
// kWgradChunkPixels pixels), a block of channel vectors and a group of filter rows, its tap sums
// in registers (depthwise_wgrad_registers). In-process A/B against the per-row sums below, 2
// threads, N=8 channels_last, float32: 3 x 3 960 @7 5.2x, 576 @14 2.8x, 192 @28 2.9x, 144 @56
// 1.5x, 32 @112 1.5x, stride 2 144 @56 2.2x, 96 @112 1.5x; 5 x 5 240 @28 2.8x; bfloat16 2.0-2.5x;
// AVX2 1.3-2.0x; 7 x 7 768 @7 4.1x (N=1 2.6x), 384 @14 2.5x, 192 @28 2.6x, 96 @56 1.55x, AVX2
// 768 @7 2.5x, 384 @14 2.0x, 192 @28 1.6x (1 filter row a pass; 2 rows, now, 1.2-1.3x faster).
// (Those sums, per row and tap through memory, loaded dy once per tap, and short rows spent more
// on the chunks' partials than on the products.) Other filters: a thread item is a fixed chunk
// of output rows: for each row and channel vector it sums the row's products per tap, adds them
// to the chunk's partial totals, and the partials are added up in chunk order at the end, so the
// result does not depend on the thread count. Items of one channel vector over every pixel (the
// first version) used half of each cache line they fetched and streamed x and dy from L3 once per
// pair of vectors: 144 @ 56 channels_last, N=1, 0.31 ms against PyTorch's 0.18.
template <typename T>
inline bool depthwise_wgrad(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || !is_depthwise(p)) return false;
  if (depthwise_wgrad_on_plane_tiles<T>(a)) return true;
  using V = VecF32;
  constexpr int L = V::kLanes;
  const int64_t C = p.C, Cp = padded_channels(C), nv = Cp / L, taps = p.R * p.S;
  ScratchOf<T> xs(0), dys(0);
  const ChannelsLast<T> x = channels_last_input(static_cast<const T*>(a.x.data), a.x.stride, p.N, C, p.H, p.W, xs);
  const ChannelsLast<T> dy = channels_last_input(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, C, p.P, p.Q, dys);
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t* ws = a.dw.stride;
  if (const int NB = depthwise_wgrad_register_block(p); NB > 0) {
    std::vector<TapRange> cols(p.S);
    int64_t q_lo = 0, q_hi = p.Q;  // columns where every tap is in bounds
    for (int64_t s = 0; s < p.S; ++s) {
      cols[s] = valid_outputs(p.Q, p.W, p.stride_w, p.pad_w, p.dil_w, s);
      q_lo = std::max(q_lo, cols[s].lo), q_hi = std::min(q_hi, cols[s].hi);
    }
    // (A tap's range starts past Q where padding covers every output of it: 7 columns of
    // dilation 2 over one padded column read dy past its rows without the clamp.)
    q_lo = std::min(q_lo, p.Q), q_hi = std::max(q_hi, q_lo);
    // Equal chunks: 28 rows as 18 + 10 had left one thread 1.8x the cycles of the other (7 x 7 192
    // @28, 5 x 5 /2 144 @56; 56 rows as 6 x 9 + 2: 1.3-1.5x).
    const int64_t rows = p.N * p.P, chunk_rows = even_bands(rows, std::max<int64_t>(1, kWgradChunkPixels / p.Q));
    const int64_t nchunks = (rows + chunk_rows - 1) / chunk_rows, nblocks = (nv + NB - 1) / NB;
    // The filter rows in ngroups near-equal groups of at most depthwise_wgrad_row_group rows
    // (7 rows on AVX-512: 2 + 2 + 3), one group per item.
    const int64_t ngroups = (p.R + depthwise_wgrad_row_group(p) - 1) / depthwise_wgrad_row_group(p);
    Scratch partial(nchunks * taps * Cp);
    parallel_for(0, nchunks * nblocks * ngroups, 1, [&](int64_t b, int64_t e) {
      for (int64_t item = b; item < e; ++item) {
        const int64_t chunk = item / (nblocks * ngroups), v0 = item / ngroups % nblocks * NB, g = item % ngroups;
        const int64_t r0 = chunk * chunk_rows, r1 = std::min(rows, r0 + chunk_rows);
        const int64_t f0 = g * p.R / ngroups, fn = (g + 1) * p.R / ngroups - f0;  // filter rows [f0, f0 + fn)
        float* part = partial.data() + chunk * taps * Cp;
        const bool two = NB == 2 && v0 + 1 < nv;
        const TapRange* cs = cols.data();
        if (p.S == 7) {
          if (fn == 3) depthwise_wgrad_registers<3, 7, 1>(p, x, dy, r0, r1, v0, f0, cs, q_lo, q_hi, part, Cp);
          else if (fn == 2) depthwise_wgrad_registers<2, 7, 1>(p, x, dy, r0, r1, v0, f0, cs, q_lo, q_hi, part, Cp);
          else depthwise_wgrad_registers<1, 7, 1>(p, x, dy, r0, r1, v0, f0, cs, q_lo, q_hi, part, Cp);
        } else if (p.R == 3 && two) {
          depthwise_wgrad_registers<3, 3, 2>(p, x, dy, r0, r1, v0, 0, cs, q_lo, q_hi, part, Cp);
        } else if (p.R == 3) {
          depthwise_wgrad_registers<3, 3, 1>(p, x, dy, r0, r1, v0, 0, cs, q_lo, q_hi, part, Cp);
        } else if (fn == 5) {
          depthwise_wgrad_registers<5, 5, 1>(p, x, dy, r0, r1, v0, 0, cs, q_lo, q_hi, part, Cp);
        } else if (fn == 3) {
          depthwise_wgrad_registers<3, 5, 1>(p, x, dy, r0, r1, v0, f0, cs, q_lo, q_hi, part, Cp);
        } else {  // the AVX2 groups of a 5 x 5 filter: 2 rows, then 3
          depthwise_wgrad_registers<2, 5, 1>(p, x, dy, r0, r1, v0, f0, cs, q_lo, q_hi, part, Cp);
        }
      }
    });
    // The chunks' sums in chunk order, per channel vector (threads split the vectors), stored as dw.
    parallel_for(0, nv, 1, [&](int64_t b, int64_t e) {
      using V = VecF32;
      alignas(64) float lanes[L];
      for (int64_t v = b; v < e; ++v)
        for (int64_t t = 0; t < taps; ++t) {
          V::type sum = V::load(partial.data() + t * Cp + v * L);  // N > 0: the op fills an empty batch's dW
          for (int64_t chunk = 1; chunk < nchunks; ++chunk)
            sum = V::add(sum, V::load(partial.data() + (chunk * taps + t) * Cp + v * L));
          V::store(lanes, sum);
          for (int64_t c = v * L; c < std::min(C, (v + 1) * L); ++c)
            store_from(dw + c * ws[0] + (t / p.S) * ws[2] + (t % p.S) * ws[3], lanes[c - v * L]);
        }
    });
    return true;
  }
  constexpr int64_t kChunkRows = 4;
  const int64_t rows = p.N * p.P, nchunks = (rows + kChunkRows - 1) / kChunkRows;
  Scratch partial(nchunks * taps * Cp);
  std::vector<TapRange> cols(p.S);
  for (int64_t s = 0; s < p.S; ++s) cols[s] = valid_outputs(p.Q, p.W, p.stride_w, p.pad_w, p.dil_w, s);
  parallel_for(0, nchunks, 1, [&](int64_t b, int64_t e) {
    Scratch row_acc(taps * L), tot(taps * L);  // per tap a vector of sums
    for (int64_t chunk = b; chunk < e; ++chunk) {
      const int64_t r0 = chunk * kChunkRows, r1 = std::min(rows, r0 + kChunkRows);
      for (int64_t v = 0; v < nv; ++v) {
        std::fill(tot.data(), tot.data() + taps * L, 0.0f);
        for (int64_t np = r0; np < r1; ++np) {
          const int64_t n = np / p.P, pp = np % p.P;
          const T* dyv = dy.data + n * dy.sn + pp * dy.sh + v * L;
          std::fill(row_acc.data(), row_acc.data() + taps * L, 0.0f);
          for (int64_t r = 0; r < p.R; ++r) {
            const int64_t h = pp * p.stride_h - p.pad_h + r * p.dil_h;
            if (h < 0 || h >= p.H) continue;
            const T* xv = x.data + n * x.sn + h * x.sh + v * L;
            for (int64_t s = 0; s < p.S; ++s) {
              // Four independent sums: one chain waited out the FMA latency (4 cycles) per pixel.
              float* sum = row_acc.data() + (r * p.S + s) * L;
              typename V::type acc[4] = {V::load(sum), V::zero(), V::zero(), V::zero()};
              const T* xs0 = xv + (s * p.dil_w - p.pad_w) * x.sw;  // x at output column q: xs0 + q xstep
              const int64_t xstep = p.stride_w * x.sw;
              int64_t q = cols[s].lo;
              for (; q + 4 <= cols[s].hi; q += 4)
                for (int j = 0; j < 4; ++j)
                  acc[j] = V::fmadd(V::load(dyv + (q + j) * dy.sw), V::load(xs0 + (q + j) * xstep), acc[j]);
              for (; q < cols[s].hi; ++q) acc[0] = V::fmadd(V::load(dyv + q * dy.sw), V::load(xs0 + q * xstep), acc[0]);
              V::store(sum, V::add(V::add(acc[0], acc[1]), V::add(acc[2], acc[3])));
            }
          }
          for (int64_t t = 0; t < taps; ++t)
            V::store(tot.data() + t * L, V::add(V::load(tot.data() + t * L), V::load(row_acc.data() + t * L)));
        }
        for (int64_t t = 0; t < taps; ++t)
          V::store(partial.data() + (chunk * taps + t) * Cp + v * L, V::load(tot.data() + t * L));
      }
    }
  });
  std::vector<float> total(taps * Cp, 0.0f);
  for (int64_t chunk = 0; chunk < nchunks; ++chunk) {
    const float* part = partial.data() + chunk * taps * Cp;
    for (int64_t i = 0; i < taps * Cp; ++i) total[i] += part[i];
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < taps; ++t) store_from(dw + c * ws[0] + (t / p.S) * ws[2] + (t % p.S) * ws[3], total[t * Cp + c]);
  return true;
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
