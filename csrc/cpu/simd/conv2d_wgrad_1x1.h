// Weight gradient of a 1x1 convolution (one group, no padding, any stride): dW[k][c] = sum over
// output pixels i of dy(i, k) x(i, c), a GEMM whose reduction runs over the N P Q output pixels.
// Float compute for float32 and bfloat16 storage (FmaF32), or, with the DotBf16 policy
// (conv2d_bf16dot_avx512.cpp), vdpbf16ps on packed elements that pair output pixels 2 j and
// 2 j + 1 of a chunk. Included inside the ISA namespace after conv2d_wgrad.h.
//
// The general engine (conv2d_wgrad.h) packs all of x and dy channels-last first and then reads
// MC channels of each pixel per tile: one cache line per pixel for 24 bytes, and at 1 KB pixel
// strides the lines of a chunk share 4 L1 sets. Here nothing is packed whole; per chunk of a few
// hundred pixels of one image:
// - one operand, "vec", is packed as panels [block][pixel][KB] (KB = NV vectors of channels):
//   the tile's vector loads stream through one contiguous panel; a float channels-last operand
//   with whole blocks is read in place instead (its pixels a fixed stride apart);
// - the other, "bcast", is read as channel rows [channel][pixel], MC rows per tile, each a
//   sequential stream of broadcasts: in place for NCHW tensors whose image pixels are
//   contiguous (float32, or bfloat16 pairs as 32-bit words), else packed once per chunk (8x8
//   transposes from channels-last).
// Which of x and dy is vec: the one whose channels pad less to whole KB blocks; on a tie the
// larger, so the bcast rows of a chunk (re-read once per vec block) are the smaller set. With x
// as vec the totals are [k][c], dW's own layout, and float32 dW accumulates in place.
//
// Determinism: a thread owns a fixed range of (pixel group, vec block, bcast block) tiles and
// walks the group's chunks in order; a tile's totals take one partial sum per chunk, and the
// groups' totals (the groups fixed by the problem alone) are added in group order, whatever the
// thread count.
#pragma once
#include <algorithm>
#include <cstdint>

#include "conv2d_wgrad.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// The cache lines of `runs` runs of `lines` lines each: consecutive runs are `step` bytes apart,
// plus `row_jump` after every `per_row` runs (row_left of them before the first jump).
struct LineRuns {
  const char* run = nullptr;
  int64_t runs = 0, lines = 0, step = 0, per_row = 0, row_left = 0, row_jump = 0, line = 0;
};
// One prefetch per next(), through `first` and then `then`: the tiles of one chunk ask for the
// next chunk's source lines while they compute. Without it, packing a chunk of a channels-last x
// from DRAM stalled on every line (30% of the 1x1 256 -> 64 @56 N=8 weight gradient).
struct LinePrefetcher {
  LineRuns first, then;
  void next() {
    LineRuns& r = first.runs > 0 ? first : then;
    if (r.runs == 0) return;
    __builtin_prefetch(r.run + r.line * 64);
    if (++r.line < r.lines) return;
    r.line = 0, r.run += r.step, --r.runs;
    if (--r.row_left == 0) r.run += r.row_jump, r.row_left = r.per_row;
  }
};
// A prefetch every kPrefetchEvery pixels of a tile: a chunk's tiles then have room for about
// twice the lines they ask for, spread over the chunk instead of issued in bursts.
constexpr int kPrefetchEvery = 2;

// total[m][v L + l] (+)= sum over i < n of bcast(row m, i) * vec[i][v L + l] for m < MC, with row
// m at rows + m * row_step, and vec's elements vec_step apart (KB = NV L in panels, a pixel
// stride in place): M's packed elements (floats, or DotBf16's pairs of pixels). Inlined like
// wgrad_tile.
template <class M, int MC, int NV>
[[gnu::always_inline]] inline void outer_product_tile(const typename M::Elem* rows, int64_t row_step,
                                                      const typename M::Elem* vec, int64_t vec_step, int64_t n,
                                                      float* total, int64_t total_row_step, bool first,
                                                      LinePrefetcher& ahead) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  constexpr int every = std::max(1, kPrefetchEvery / M::kChannels);  // elements of kChannels pixels
  typename V::type acc[MC][NV];
  for (int m = 0; m < MC; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = V::zero();
  const typename M::Elem* row[MC];
  for (int m = 0; m < MC; ++m) row[m] = rows + m * row_step;
  for (int64_t i = 0; i < n; ++i) {
    if (i % every == 0) ahead.next();
    typename M::In dv[NV];
    for (int v = 0; v < NV; ++v) dv[v] = M::load(vec + i * vec_step + v * L);
    for (int m = 0; m < MC; ++m) {
      const typename M::In b = M::broadcast(row[m] + i);
      for (int v = 0; v < NV; ++v) acc[m][v] = M::madd(b, dv[v], acc[m][v]);
    }
  }
  for (int m = 0; m < MC; ++m)
    for (int v = 0; v < NV; ++v) {
      float* t = total + m * total_row_step + v * L;
      V::store(t, first ? acc[m][v] : V::add(V::load(t), acc[m][v]));
    }
}

template <class M, int MC, int NV>
[[gnu::always_inline]] inline void outer_product_tile_upto(int m, const typename M::Elem* rows, int64_t row_step,
                                                           const typename M::Elem* vec, int64_t vec_step, int64_t n,
                                                           float* total, int64_t total_row_step, bool first,
                                                           LinePrefetcher& ahead) {
  if constexpr (MC > 1) {
    if (m < MC)
      return outer_product_tile_upto<M, MC - 1, NV>(m, rows, row_step, vec, vec_step, n, total, total_row_step, first,
                                                    ahead);
  }
  outer_product_tile<M, MC, NV>(rows, row_step, vec, vec_step, n, total, total_row_step, first, ahead);
}

// One operand of the 1x1 GEMM: `channels` channels of a strided (n, c, h, w) tensor of storage
// type T, output pixel (p, q) of image n at h = p * step_h, w = q * step_w (the conv stride for
// x, 1 for dy).
template <typename T>
struct GemmOperand {
  const T* data;
  const int64_t* st;
  int64_t channels, step_h, step_w;
  const T* pixel(int64_t n, int64_t p, int64_t q) const {
    return data + n * st[0] + p * step_h * st[2] + q * step_w * st[3];
  }
  int64_t pixel_step() const { return step_w * st[3]; }  // along an output row
};

// Calls f(i, p, q0, len) for each run of output pixels [i, i + len) of one output row p (columns
// q0...) within the flattened pixel range [i0, i1) of one image with Q columns.
template <class F>
inline void for_each_row_run(int64_t i0, int64_t i1, int64_t Q, const F& f) {
  for (int64_t i = i0; i < i1;) {
    const int64_t p = i / Q, q0 = i % Q, len = std::min(i1 - i, Q - q0);
    f(i, p, q0, len);
    i += len;
  }
}

// panels[b][j][l] = channel (b0 + b) KB + l of chunk pixel j (zero past the channels), for the
// blocks b0 + b < b1, j < i1 - i0, l < KB; panel b at panels + b * panel_step. The source is read
// in its own order: pixel by pixel from channels-last (one vb at a time walked 1 KB strides and
// spent a quarter of the run waiting on loads), 8 x 8 transposes of channel rows from NCHW.
template <typename T>
void pack_vec_panels(const GemmOperand<T>& o, int64_t n, int64_t i0, int64_t i1, int64_t Q, int64_t b0, int64_t b1,
                     int64_t KB, float* panels, int64_t panel_step) {
  constexpr int L = VecF32::kLanes;
  const int64_t c0 = b0 * KB, count = std::min(b1 * KB, o.channels) - c0, cs = o.st[1], ps = o.pixel_step();
  // Panel lane of relative channel c at chunk pixel j.
  const auto at = [&](int64_t j, int64_t c) { return panels + c / KB * panel_step + j * KB + c % KB; };
  for_each_row_run(i0, i1, Q, [&](int64_t i, int64_t p, int64_t q0, int64_t len) {
    const int64_t j0 = i - i0;
    const T* s = o.pixel(n, p, q0) + c0 * cs;
    if (count < (b1 - b0) * KB)  // the last block's lanes past the channels
      for (int64_t j = j0; j < j0 + len; ++j) std::fill(at(j, count), at(j, 0) + (b1 - b0 - 1) * panel_step + KB, 0.0f);
    if (cs == 1) {  // channels-last: each pixel's run of channels, in vectors
      const int64_t full = count - count % L;
      for (int64_t j = 0; j < len; ++j) {
        for (int64_t c = 0; c < full; c += L) VecF32::store(at(j0 + j, c), VecF32::load(s + j * ps + c));
        for (int64_t c = full; c < count; ++c) *at(j0 + j, c) = load_acc(s + j * ps + c);
      }
      return;
    }
    int64_t c8 = 0, j8 = 0;
    if (ps == 1) {  // channel rows, pixels contiguous: 8 x 8 transposes (KB is a multiple of 8)
      c8 = count - count % 8, j8 = len - len % 8;
      for (int64_t c = 0; c < c8; c += 8)
        for (int64_t j = 0; j < j8; j += 8) transpose8x8(s + c * cs + j, cs, at(j0 + j, c), KB);
    }
    for (int64_t c = 0; c < count; ++c)
      for (int64_t j = (c < c8 ? j8 : 0); j < len; ++j) *at(j0 + j, c) = load_acc(s + c * cs + j * ps);
  });
}

// The source lines of channels [c0, c0 + count) of the chunk's pixels [i0, i1) of image n: a run
// per pixel (channels-last), per channel where the image's pixels are contiguous (NCHW), else per
// channel and output row.
template <typename T>
LineRuns chunk_lines(const GemmOperand<T>& o, int64_t n, int64_t i0, int64_t i1, int64_t Q, int64_t c0, int64_t count) {
  constexpr int64_t E = sizeof(T);
  const int64_t ps = o.pixel_step(), cs = o.st[1], rs = o.step_h * o.st[2], p0 = i0 / Q, q0 = i0 % Q;
  const char* first = reinterpret_cast<const char*>(o.data + n * o.st[0] + p0 * rs + q0 * ps + c0 * cs);
  const auto lines = [](int64_t elems) { return (elems * E + 63) / 64 + 1; };  // + 1: runs start anywhere
  if (cs == 1) return {first, i1 - i0, lines(count), ps * E, Q, Q - q0, (rs - Q * ps) * E, 0};
  if (ps == 1 && rs == Q) return {first, count, lines(i1 - i0), cs * E, count + 1, count + 1, 0, 0};
  // channel rows apart (a strided NCHW x): a run per output row of each channel, whole rows
  // (A/B, arms in random order, 2 threads, N=8, 1x1/2 256 -> 512 @56: float32 12.5 -> 10.6 ms,
  // bfloat16 7.18 -> 5.93; 512 -> 1024 @28 float32 12.5 -> 11.2)
  const int64_t rows = (i1 - 1) / Q - p0 + 1;
  first -= q0 * ps * E;
  return {first, count * rows, lines((Q - 1) * ps + 1), rs * E, rows, rows, (cs - rows * rs) * E, 0};
}

// rows[c][j] = channel c of chunk pixel j for c < channels, j < i1 - i0 (row stride row_step).
template <typename T>
void pack_bcast_rows(const GemmOperand<T>& o, int64_t n, int64_t i0, int64_t i1, int64_t Q, int64_t c_lo,
                     int64_t c_hi, float* rows, int64_t row_step) {
  const int64_t cs = o.st[1], ps = o.pixel_step();
  for_each_row_run(i0, i1, Q, [&](int64_t i, int64_t p, int64_t q0, int64_t len) {
    float* d = rows + (i - i0);
    const T* s = o.pixel(n, p, q0);
    if (ps == 1) {  // channel rows already: convert row segments
      for (int64_t c = c_lo; c < c_hi; ++c) convert_n(s + c * cs, d + c * row_step, len);
      return;
    }
    int64_t c8 = c_lo, j8 = 0;
    if (cs == 1) {  // channels-last pixels: 8 x 8 transposes
      c8 = c_hi - (c_hi - c_lo) % 8, j8 = len - len % 8;
      for (int64_t j = 0; j < j8; j += 8)
        for (int64_t c = c_lo; c < c8; c += 8) transpose8x8(s + j * ps + c, ps, d + c * row_step + j, row_step);
    }
    for (int64_t c = c_lo; c < c_hi; ++c)
      for (int64_t j = (c < c8 ? j8 : 0); j < len; ++j) d[c * row_step + j] = load_acc(s + j * ps + c * cs);
  });
}

// The DotBf16 packers: its packed elements pair output pixels (lo: chunk pixel 2 j, hi: 2 j + 1,
// zero past the chunk's last pixel), as bfloat16 bits moved unchanged. Before, the bfloat16 1x1
// weight gradient ran the general dot engine, which interleaves all of x and dy into pairs
// first and broadcast 6 channels of x per pixel pair, one cache line each (A/B, arms in random
// order, 2 threads, N=8, channels_last: 256 -> 64 @56 5.42 -> 2.67 ms, 64 -> 256 4.13 -> 2.71,
// 1024 -> 256 @14 4.58 -> 2.68, 1x1/2 256 -> 512 @56 7.83 -> 5.54; NCHW: 256 -> 64 @56 9.26 ->
// 2.71, 1x1/2 256 -> 512 12.4 -> 6.29; torch 3.0-7.2 in the same runs).

// dst[j * ds + i] = src[i * ss + j] for an 8 x 8 block of bfloat16: unpack 16-, 32-, 64-bit.
inline void transpose8x8_bf16(const bf16* src, int64_t ss, bf16* dst, int64_t ds) {
  __m128i r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * ss));
  for (int i = 0; i < 8; i += 2) t[i] = _mm_unpacklo_epi16(r[i], r[i + 1]), t[i + 1] = _mm_unpackhi_epi16(r[i], r[i + 1]);
  // t[2 a + h]: columns 4 h .. 4 h + 3 of rows 2 a, 2 a + 1, interleaved
  for (int h = 0; h < 2; ++h)
    for (int a = 0; a < 4; a += 2) {
      r[4 * h + a] = _mm_unpacklo_epi32(t[2 * a + h], t[2 * a + 2 + h]);
      r[4 * h + a + 1] = _mm_unpackhi_epi32(t[2 * a + h], t[2 * a + 2 + h]);
    }
  // r[4 h + 2 b + u]: columns 4 h + 2 u, + 1 of rows 4 b .. 4 b + 3
  for (int h = 0; h < 2; ++h)
    for (int u = 0; u < 2; ++u) {
      const __m128i top = r[4 * h + u], bottom = r[4 * h + 2 + u];
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (4 * h + 2 * u) * ds), _mm_unpacklo_epi64(top, bottom));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (4 * h + 2 * u + 1) * ds), _mm_unpackhi_epi64(top, bottom));
    }
}

// The offsets from o.data of the chunk's pixels [i0, i1) of image n, in order.
template <typename T>
void chunk_pixel_offsets(const GemmOperand<T>& o, int64_t n, int64_t i0, int64_t i1, int64_t Q, int64_t* off) {
  for_each_row_run(i0, i1, Q, [&](int64_t i, int64_t p, int64_t q0, int64_t len) {
    const int64_t first = o.pixel(n, p, q0) - o.data, step = o.pixel_step();
    for (int64_t j = 0; j < len; ++j) off[i - i0 + j] = first + j * step;
  });
}
// The most pixels of a DotBf16 chunk (2 x the 256 elements of conv2d_wgrad_1x1_tile).
constexpr int64_t kMaxPairChunk = 512;

// pack_vec_panels for DotBf16: panels[b][j][l] = the pair (chunk pixels 2 j, 2 j + 1) of channel
// (b0 + b) KB + l (zero past the channels). Channels-last pixels are interleaved two at a time;
// an image whose pixels are contiguous (dense NCHW, stride 1) has its pairs as 32-bit words of
// each channel row already, moved by 8 x 8 transposes; other layouts element by element.
inline void pack_vec_pair_panels(const GemmOperand<bf16>& o, int64_t n, int64_t i0, int64_t i1, int64_t Q, int64_t b0,
                                 int64_t b1, int64_t KB, uint32_t* panels, int64_t panel_step) {
  const int64_t c0 = b0 * KB, count = std::min(b1 * KB, o.channels) - c0, cs = o.st[1], len = i1 - i0;
  const int64_t pairs = (len + 1) / 2, whole = len / 2;
  const auto at = [&](int64_t j, int64_t c) { return panels + c / KB * panel_step + j * KB + c % KB; };
  int64_t off[kMaxPairChunk];
  chunk_pixel_offsets(o, n, i0, i1, Q, off);
  const bf16* base = o.data + c0 * cs;
  if (count < (b1 - b0) * KB)  // the last block's lanes past the channels
    for (int64_t j = 0; j < pairs; ++j) std::fill(at(j, count), at(j, 0) + (b1 - b0 - 1) * panel_step + KB, 0u);
  if (cs == 1) {
    for (int64_t j = 0; j < pairs; ++j) {
      const bf16* lo = base + off[2 * j];
      const bf16* hi = 2 * j + 1 < len ? base + off[2 * j + 1] : nullptr;
      for (int64_t c = 0; c < count; c += KB)
        interleave_pairs(lo + c, hi ? hi + c : nullptr, at(j, c), std::min(KB, count - c));
    }
    return;
  }
  int64_t c8 = 0, j8 = 0;
  if (o.pixel_step() == 1 && o.step_h * o.st[2] == Q) {  // KB is a multiple of 8
    c8 = count - count % 8, j8 = whole - whole % 8;
    const float* words[8];  // a channel row's pairs, as 32-bit words
    for (int64_t c = 0; c < c8; c += 8) {
      for (int i = 0; i < 8; ++i) words[i] = reinterpret_cast<const float*>(base + off[0] + (c + i) * cs);
      for (int64_t j = 0; j < j8; j += 8) transpose8x8_rows(words, j, reinterpret_cast<float*>(at(j, c)), KB);
    }
  }
  for (int64_t c = 0; c < count; ++c)
    for (int64_t j = (c < c8 ? j8 : 0); j < pairs; ++j) {
      const bf16* lo = base + off[2 * j] + c * cs;
      *at(j, c) = 2 * j + 1 < len ? bf16_pair_bits(lo, off[2 * j + 1] - off[2 * j], true) : lo->bits;
    }
}

// pack_bcast_rows for DotBf16: rows[c][j] = channel c of chunk pixel j as bfloat16 (row_step
// elements per row; one zero after an odd last pixel), so that 32-bit element j of a row is
// pixel pair j.
inline void pack_bcast_pair_rows(const GemmOperand<bf16>& o, int64_t n, int64_t i0, int64_t i1, int64_t Q, bf16* rows,
                                 int64_t row_step) {
  const int64_t C = o.channels, cs = o.st[1], ps = o.pixel_step(), len = i1 - i0;
  for_each_row_run(i0, i1, Q, [&](int64_t i, int64_t p, int64_t q0, int64_t run) {
    bf16* d = rows + (i - i0);
    const bf16* s = o.pixel(n, p, q0);
    if (ps == 1) {  // channel rows already
      for (int64_t c = 0; c < C; ++c) std::copy(s + c * cs, s + c * cs + run, d + c * row_step);
      return;
    }
    int64_t c8 = 0, j8 = 0;
    if (cs == 1) {  // channels-last pixels: 8 x 8 transposes
      c8 = C - C % 8, j8 = run - run % 8;
      for (int64_t j = 0; j < j8; j += 8)
        for (int64_t c = 0; c < c8; c += 8) transpose8x8_bf16(s + j * ps + c, ps, d + c * row_step + j, row_step);
    }
#if defined(__AVX512BW__)
    if (ps == 2) {  // channel rows at stride 2 (a 1x1/2's NCHW x): the low halves of 16 words
      c8 = C, j8 = run;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < run; j += 16) {  // 2 m - 1 elements read for m pixels: none past the last
          const int64_t m = std::min<int64_t>(16, run - j);
          const __m512i words = _mm512_maskz_loadu_epi16(__mmask32((uint64_t(1) << (2 * m - 1)) - 1), s + c * cs + 2 * j);
          _mm256_mask_storeu_epi16(d + c * row_step + j, __mmask16((1u << m) - 1), _mm512_cvtepi32_epi16(words));
        }
    }
#endif
    for (int64_t c = 0; c < C; ++c)
      for (int64_t j = (c < c8 ? j8 : 0); j < run; ++j) d[c * row_step + j] = s[j * ps + c * cs];
  });
  if (len % 2 != 0)
    for (int64_t c = 0; c < C; ++c) rows[c * row_step + len] = bf16{0};
}

// Pixel groups of conv2d_wgrad_1x1_tile: enough for kMinWgradItems (group, tile) items, at most
// kMaxPartialFloats of partial totals (16 MB).
constexpr int64_t kMinWgradItems = 32, kMaxPartialFloats = int64_t(4) << 20;

// conv2d_wgrad_1x1 with an MC x NV tile, x or dy as the vec operand, multiply-add policy M (its
// packed elements hold kPix = M::kChannels output pixels: chunks are whole elements).
template <typename T, class M, int MC, int NV>
inline bool conv2d_wgrad_1x1_tile(const Conv2dWgradArgs& a, const GemmOperand<T>& xo, const GemmOperand<T>& dyo,
                                  bool x_is_vec) {
  const Conv2dProblem& p = a.p;
  using E = typename M::Elem;
  constexpr int64_t KB = NV * VecF32::kLanes, kPix = M::kChannels;
  static_assert(kPix == 1 || std::is_same_v<T, bf16>, "pairs of pixels come from bfloat16 storage");
  const GemmOperand<T>& vec = x_is_vec ? xo : dyo;
  const GemmOperand<T>& bc = x_is_vec ? dyo : xo;
  const int64_t nvb = (vec.channels + KB - 1) / KB, Vpad = nvb * KB, nbb = (bc.channels + MC - 1) / MC;
  const int64_t PQ = p.P * p.Q;
  // bcast rows in place: the image's output pixels at consecutive elements of each row, in T =
  // the compute type (float), or in pairs as 32-bit words (bfloat16: an even pixel count, and
  // rows an even number of elements apart).
  const bool image_rows = bc.step_h * bc.st[2] == p.Q * bc.st[3] && bc.pixel_step() == 1;
  const bool rows_in_place = kPix == 1 ? std::is_same_v<T, float> && image_rows
                                       : image_rows && PQ % 2 == 0 && bc.st[1] % 2 == 0;
  // A chunk's bcast rows (re-read by every vec block) within ~160 KB of L2, and its vec panel
  // (re-read by every bcast block) within 16 KB of L1: 32 to 256 elements (kPix pixels each).
  const auto ceil_div = [](int64_t x, int64_t y) { return (x + y - 1) / y; };
  const int64_t most = kPix * std::clamp<int64_t>(160 * 1024 / (4 * bc.channels), 32, 256);
  int64_t chunk = ceil_div(ceil_div(PQ, ceil_div(PQ, most)), kPix) * kPix;  // balanced, whole elements
  // Pixel groups: with few tiles (MobileNetV2's 24 x 144: 9), a split of the tiles alone left
  // each thread packing most of x and all of dy for its few tiles, and the threads unbalanced.
  // The chunks are split as well, into `groups` fixed ranges (chosen from the problem alone, so
  // the sums do not depend on the thread count), each summed into its own partial totals, which
  // are added up in group order at the end. A/B (arms in random order), 2 threads, channels_last
  // N=8: 144 -> 24 @56 2.83 -> 1.78 ms, 24 -> 144 2.11 -> 1.67, 64 -> 64 2.54 -> 1.88, 96 -> 24
  // 1.65 -> 1.17.
  // Two groups at least where the operands are 32+ times the partial totals: each thread then
  // reads whole pixels of the vec operand and packs the bcast rows of its own pixels only, where
  // split by vec blocks both threads packed every chunk's rows and each read its part of every
  // pixel (A/B, arms in random order, Zen 4, 2 threads, channels_last: N=8 64 -> 256 @56 3.93 ->
  // 3.14 ms, 256 -> 64 3.94 -> 3.14, 128 -> 512 @28 1.03x, AVX2 1.07-1.13x, NCHW 1.03-1.11x; N=1
  // 64 -> 256 @56 1.17x; bfloat16 level. Nearer the partials' size it lost: 1024 -> 256 @14 N=8
  // (8x) 0.96x, N=1 0.70x; 128 -> 512 @28 N=1 0.97x; 2048 -> 512 @7 N=8 0.88x.)
  const int64_t tiles = nvb * nbb, part = bc.channels * Vpad;
  const int64_t operand_elems = p.N * PQ * (p.C + p.K);
  const int64_t min_groups = operand_elems >= 32 * part ? 2 : 1;
  // An even number of groups where there are several: 3 put one group's chunks on both threads,
  // each packing their bcast rows (64 -> 64 @56, 11 tiles: N=8 1.19 -> 1.05 ms, N=1 1.09x; 32 ->
  // 16 @112 N=8 1.09x; others level).
  const int64_t most_groups = std::min(p.N * ceil_div(PQ, chunk), kMaxPartialFloats / part);
  const int64_t wanted_groups = std::max(min_groups, (kMinWgradItems + tiles - 1) / tiles);
  int64_t groups = std::max<int64_t>(1, std::min(wanted_groups, most_groups));
  if (groups > 1 && groups % 2 != 0 && groups < most_groups) ++groups;
  // Then chunks a whole number per group where smaller chunks allow: 56 x 56 pixels as 13 chunks
  // in 2 groups (6 | 7) left the second thread 1.2-1.3x the first's time (MobileNetV2's 1x1
  // weight gradients at N=1).
  for (int64_t want = ceil_div(PQ, chunk); groups > 1 && p.N * ceil_div(PQ, chunk) % groups != 0 && want < PQ / kPix;)
    ++want, chunk = ceil_div(ceil_div(PQ, want), kPix) * kPix;
  const int64_t chunks_per_image = ceil_div(PQ, chunk), chunk_elems = chunk / kPix;
  // vec panels in place: float channels-last pixels evenly spaced through the image, whole blocks
  // (the tile's loads then step a pixel stride, from L2). The copy had cost 12% of the 256 -> 64
  // @56 N=8 channels_last weight gradient (A/B, arms in random order, 2 threads, N=8: 256 -> 64
  // 6.96 -> 6.12 ms, 64 -> 256 5.56 -> 4.98, 144 -> 24 1.48 -> 1.07; N=1 256 -> 64 0.61 -> 0.53).
  // AVX-512 only: the AVX2 build (16-lane blocks) gained 5-8% on 64 <-> 256 @56 but lost 7-9% on
  // 1024 -> 256 @14 and 2048 -> 512 @7.
#if defined(__AVX512F__)
  constexpr bool kVecInPlaceIsa = true;
#else
  constexpr bool kVecInPlaceIsa = false;
#endif
  const bool vec_in_place = kVecInPlaceIsa && kPix == 1 && std::is_same_v<T, float> && vec.st[1] == 1 &&
                            vec.channels % KB == 0 && vec.step_h * vec.st[2] == p.Q * vec.pixel_step();
  const int64_t vec_step = vec_in_place ? vec.pixel_step() : KB;
  // With nothing packed but the bcast rows, threads split the bcast blocks (tile = cb nvb + vb)
  // where those rows are many, so that each packs only its own: 1024 -> 256 @14 5.11 -> 4.85 ms,
  // 960 -> 160 @7 0.81 -> 0.70, 1x1/2 256 -> 512 @56 10.5 -> 9.4; 128 rows alike; with 64 rows
  // (256 -> 64 @56) both threads reading all of x in place lost (6.12 -> 6.43).
  const bool bcast_major = vec_in_place && bc.channels >= 128;
  const int64_t chunks = p.N * chunks_per_image;
  // Totals [bcast channel][Vpad]; float dW with x as vec and no padded lanes is that array.
  T* dw = static_cast<T*>(a.dw.data);
  const int64_t* ws = a.dw.stride;
  const bool in_dw = std::is_same_v<T, float> && x_is_vec && Vpad == p.C && ws[1] == 1 && ws[0] == p.C;
  Scratch total_scratch(in_dw ? 0 : bc.channels * Vpad);
  float* total = in_dw ? reinterpret_cast<float*>(dw) : total_scratch.data();
  Scratch partials(groups > 1 ? groups * part : 0);
  float* const sums = groups > 1 ? partials.data() : total;
  parallel_for(0, groups * tiles, 1, [&](int64_t b, int64_t e) {
    for (int64_t g = b / tiles; g * tiles < e; ++g) {
      const int64_t tb = std::max(b, g * tiles) - g * tiles, te = std::min(e, (g + 1) * tiles) - g * tiles;
      const int64_t ch0 = g * chunks / groups, ch1 = (g + 1) * chunks / groups;
      float* const gsum = sums + g * part;
      // The vec blocks and bcast channels this range touches.
      const int64_t vb0 = bcast_major ? 0 : tb / nbb, vb1 = bcast_major ? nvb : (te - 1) / nbb + 1;
      const int64_t c_lo = bcast_major ? tb / nvb * MC : 0;
      const int64_t c_hi = bcast_major ? std::min(bc.channels, ((te - 1) / nvb + 1) * MC) : bc.channels;
      ScratchOf<E> panels(vec_in_place ? 0 : (vb1 - vb0) * chunk_elems * KB);
      ScratchOf<E> rows(rows_in_place ? 0 : bc.channels * chunk_elems);
      const int64_t vc0 = vb0 * KB, vcount = std::min(vb1 * KB, vec.channels) - vc0;
      const auto chunk_range = [&](int64_t ch, int64_t* n, int64_t* i0, int64_t* i1) {
        *n = ch / chunks_per_image, *i0 = ch % chunks_per_image * chunk, *i1 = std::min(PQ, *i0 + chunk);
      };
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        int64_t n, i0, i1;
        chunk_range(ch, &n, &i0, &i1);
        if (!vec_in_place) {
          if constexpr (kPix == 1)
            pack_vec_panels(vec, n, i0, i1, p.Q, vb0, vb1, KB, panels.data(), chunk * KB);
          else
            pack_vec_pair_panels(vec, n, i0, i1, p.Q, vb0, vb1, KB, panels.data(), chunk_elems * KB);
        }
        LinePrefetcher ahead;
        if (ch + 1 < ch1) {
          int64_t n1, j0, j1;
          chunk_range(ch + 1, &n1, &j0, &j1);
          ahead.first = chunk_lines(vec, n1, j0, j1, p.Q, vc0, vcount);
          if (!rows_in_place) ahead.then = chunk_lines(bc, n1, j0, j1, p.Q, c_lo, c_hi - c_lo);
        }
        const E* row0;
        int64_t row_step;  // in elements
        if (rows_in_place) {
          row0 = reinterpret_cast<const E*>(bc.data + n * bc.st[0] + i0), row_step = bc.st[1] / kPix;
        } else {
          if constexpr (kPix == 1)
            pack_bcast_rows(bc, n, i0, i1, p.Q, c_lo, c_hi, rows.data(), chunk);
          else
            pack_bcast_pair_rows(bc, n, i0, i1, p.Q, reinterpret_cast<bf16*>(rows.data()), chunk);
          row0 = rows.data(), row_step = chunk_elems;
        }
        const int64_t elems = (i1 - i0 + kPix - 1) / kPix;
        for (int64_t tile = tb; tile < te; ++tile) {
          const int64_t vb = bcast_major ? tile % nvb : tile / nbb, c0 = (bcast_major ? tile / nvb : tile % nbb) * MC;
          const int m = int(std::min<int64_t>(MC, bc.channels - c0));
          const E* panel = vec_in_place ? reinterpret_cast<const E*>(vec.pixel(n, 0, 0)) + i0 * vec_step + vb * KB
                                        : panels.data() + (vb - vb0) * chunk_elems * KB;
          outer_product_tile_upto<M, MC, NV>(m, row0 + c0 * row_step, row_step, panel, vec_step, elems,
                                             gsum + c0 * Vpad + vb * KB, Vpad, ch == ch0, ahead);
        }
      }
    }
  });
  if (groups > 1)
    parallel_for(0, part, 1024, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        float sum = partials.data()[i];
        for (int64_t g = 1; g < groups; ++g) sum += partials.data()[g * part + i];
        total[i] = sum;
      }
    });
  if (in_dw) return true;
  if (!x_is_vec) {  // totals [c][Kpad]: the general engine's store
    store_weight_grad(p, total, Vpad, dw, ws);
    return true;
  }
  parallel_for(0, p.K, 16, [&](int64_t b, int64_t e) {  // totals [k][Cpad]
    for (int64_t k = b; k < e; ++k)
      for (int64_t c = 0; c < p.C; ++c) store_from(dw + k * ws[0] + c * ws[1], total[k * Vpad + c]);
  });
  return true;
}

// Returns false (doing nothing) unless the convolution is 1x1, unpadded, one group, T's dtype.
template <typename T, class M = FmaF32>
inline bool conv2d_wgrad_1x1(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.dtype != dtype_of<T>() || p.R != 1 || p.S != 1 || p.pad_h != 0 || p.pad_w != 0 || p.groups != 1)
    return false;
  if (p.N * p.P * p.Q == 0) return false;  // nothing to sum: the reference writes the zeros
  const GemmOperand<T> xo{static_cast<const T*>(a.x.data), a.x.stride, p.C, p.stride_h, p.stride_w};
  const GemmOperand<T> dyo{static_cast<const T*>(a.dy.data), a.dy.stride, p.K, 1, 1};
  // vec = x unless dy's channels pad less (or as little, and are more).
  const auto x_is_vec_for = [&](int64_t KB) {
    const auto blocks = [&](int64_t c) { return (c + KB - 1) / KB; };
    const int64_t waste_c = blocks(p.C) * KB - p.C, waste_k = blocks(p.K) * KB - p.K;
    return waste_c * p.K < waste_k * p.C || (waste_c * p.K == waste_k * p.C && p.C >= p.K);
  };
  constexpr int L = VecF32::kLanes;
#if defined(__AVX512F__)
  // The vec channels whole blocks of 3 vectors but not of 4 (MobileNetV2's 96 and 144): the
  // forward's 8 x 3 tile (with_tile). 6 x 4 wasted a quarter of the FMAs on 144 (A/B, 2 threads,
  // channels_last, with the pixel groups: 144 -> 24 @56 N=1 0.239 -> 0.179 ms, N=8 2.45 -> 1.78;
  // 24 -> 144 N=8 2.19 -> 1.67).
  const bool x_is_vec3 = x_is_vec_for(3 * L);
  const int64_t vec_channels = x_is_vec3 ? p.C : p.K;
  if (vec_channels % (3 * L) == 0 && vec_channels % (4 * L) != 0)
    return conv2d_wgrad_1x1_tile<T, M, 8, 3>(a, xo, dyo, x_is_vec3);
#endif
  return conv2d_wgrad_1x1_tile<T, M, kWgradTileRows, kWgradTileVectors>(a, xo, dyo,
                                                                        x_is_vec_for(kWgradTileVectors * L));
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
