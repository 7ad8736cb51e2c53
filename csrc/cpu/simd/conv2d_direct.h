// Direct convolution on channels-last activations, vectorised over output channels, for float32
// and bfloat16: the engine behind the AVX2 and AVX-512 conv2d fprop and dgrad kernels. Included
// once per ISA folder inside that ISA's namespace (see vec.h).
//
// The engine accumulates in float32 whatever the storage type T, and the store rounds once to T
// (bfloat16: to nearest even, as the reference does). With the FmaF32 policy the packers widen T
// to float as they build the scratch layouts below, so bfloat16 runs at the float32 engine's
// speed; the DotBf16 policy (below) packs bfloat16 pairs instead.
//
// The engine runs a plan: output rows x columns, and a list of taps, each an offset into the
// (padded, channels-last) input and a slice of the packed weights. fprop's plan has the R x S taps
// of the filter. dgrad is a set of forward plans, one per stride phase (below).
//
// Layouts (built per call, see pack_*):
//   activations  x[n][h][w][c] floats, zero-padded by (pad_h, pad_w), channels contiguous. A float32
//                channels_last input with no padding is read in place; anything else (with
//                FmaF32, every bfloat16 input) is repacked once.
//   weights      wp[g][kb][tap][c][KB]: for group g and block kb of KB = NV * lanes output
//                channels (a half last vector: 8 fewer), KB consecutive floats per (tap, c); the
//                tail block is zero-filled.
//
// Microkernel: an MR-pixel x NV-vector tile of accumulators (MR output pixels along one output row
// times KB output channels). Per input channel c of a tap (r, s) it loads NV weight vectors and MR
// broadcasts and issues MR * NV FMAs: each weight load feeds MR FMAs, each broadcast NV. AVX-512
// (32 registers): 6 x 4 vectors = 24 accumulators; AVX2 (16): 6 x 2 = 12. AVX-512 tiles of
// 8 + 16 n channels make the last vector a 256-bit half one (with_tile).
//
// The multiply-add is a policy M: FmaF32 (one float input channel per packed element, FMA) here;
// csrc/cpu/avx512/conv2d_bf16dot_avx512.cpp adds DotBf16 (two bfloat16 input channels per 32-bit
// element, vdpbf16ps: twice the multiply-adds per instruction), for which the packers lay out
// bfloat16 channel pairs instead of floats. Same plans, tiles and loops either way.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "../../common/cpu_features.h"
#include "../../common/parallel.h"
#include "../../common/scratch.h"
#include "vec.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// The tile's multiply-add for float32 compute: packed elements are floats, one input channel each.
struct FmaF32 {
  static constexpr bool kTiles = false;  // no AMX tile path (conv2d_bf16dot_avx512.cpp's AmxBf16)
  using Elem = float;
  using In = VecF32::type;  // a register of packed elements
  static constexpr int kChannels = 1;  // input channels per packed element
  static In load(const Elem* p) { return VecF32::load(p); }
  static In broadcast(const Elem* p) { return VecF32::broadcast(p); }
  static VecF32::type madd(In x, In w, VecF32::type acc) { return VecF32::fmadd(x, w, acc); }
#if defined(__AVX512F__)
  static In load_half(const Elem* p) { return HalfVector<8>::load(p); }
  static VecF32::type madd_half(In x, In w, VecF32::type acc) { return HalfVector<8>::fmadd(x, w, acc); }
#endif
};

// A convolution as the engine sees it: "in" channels are read, "out" channels are written;
// in_per_group counts packed elements (M::kChannels input channels each).
struct DirectConvPlan {
  int64_t N, groups, in_per_group, out_per_group;
  int64_t P, Q;                     // output rows and columns
  int64_t row_step, pixel_step;     // input offset from one output row / column to the next
  std::vector<int64_t> tap_offset;  // input offset of each tap, in packed-weight order
};

// Channels-last activations: element (n, h, w, c) at data[n * sn + h * sh + w * sw + c].
template <typename E>
struct NhwcViewOf {
  const E* data;
  int64_t sn, sh, sw;
};
using NhwcView = NhwcViewOf<float>;

// Where pack_weights reads: unpacked channel c of out channel o of group g at tap t is
// base[g * group_stride + o * out_stride + c * in_stride + tap_offset[t]], c < in_channels.
template <typename T>
struct WeightSource {
  const T* base;
  int64_t group_stride, out_stride, in_stride, in_channels;
  std::vector<int64_t> tap_offset;  // in packed-weight (plan) order
};

// A (K, Cg, R, S) weight tensor (strides ws) whose every k row is one contiguous run of Cg R S
// elements: in (c, r, s) order (KCRS; 1x1 weights count as this), in (r, s, c) order (KRSC:
// channels_last), or neither.
enum class WeightRows { kStrided, kKCRS, kKRSC };
inline WeightRows weight_rows(const int64_t ws[4], int64_t Cg, int64_t R, int64_t S) {
  if (ws[3] == 1 && ws[2] == S && ws[1] == R * S) return WeightRows::kKCRS;
  if (ws[1] == 1 && ws[3] == Cg && ws[2] == S * Cg) return WeightRows::kKRSC;
  return WeightRows::kStrided;
}

// Scratch memory that is not zero-filled (the packers write every element they expose), from the
// calling thread's recycled blocks (common/scratch.h).
template <typename E>
struct ScratchOf {
  static_assert(std::is_trivially_copyable_v<E> && std::is_trivially_destructible_v<E>, "raw memory holds E");
  struct Release {
    size_t capacity;
    void operator()(E* p) const { scratch_free(p, capacity); }
  };
  explicit ScratchOf(int64_t n) : ptr(nullptr, Release{0}) {
    size_t capacity = 0;
    E* p = static_cast<E*>(scratch_alloc(size_t(std::max<int64_t>(n, 1)) * sizeof(E), &capacity));
    ptr = std::unique_ptr<E[], Release>(p, Release{capacity});
  }
  E* data() const { return ptr.get(); }
  std::unique_ptr<E[], Release> ptr;
};
using Scratch = ScratchOf<float>;

// d[i] = s[i] for i < n, converted: float -> float, bf16 -> float (exact), bf16 -> bf16.
inline void convert_n(const float* s, float* d, int64_t n) { std::copy(s, s + n, d); }
inline void convert_n(const bf16* s, bf16* d, int64_t n) { std::copy(s, s + n, d); }
inline void convert_n(const bf16* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8(d + i, load8(s + i));
  for (; i < n; ++i) d[i] = to_float(s[i]);
}

// A pixel's n floats copied to d and its slots [n, slots) zeroed, in vector moves: per pixel, a
// memcpy and a memset call cost more than the copy where pixels have few channels (the stem's 3;
// a 24-channel dy in slots of 32 for the weight gradient: 40% of that layer's time).
// Pixels of kSmallPixel or more channels keep memcpy (64-byte moves on AVX-512, 32 here; the
// 256-channel pixels of 1x1/2 256 -> 512 @56 N=8 measured alike both ways).
constexpr int64_t kSmallPixel = 32;
inline void copy_pixel(const float* s, float* d, int64_t n, int64_t slots) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store8(d + i, load8(s + i));
  if (i < n) {  // the last n - i < 8 (vmaskmovps loads read nothing past them)
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 v = _mm256_maskload_ps(s + i, _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n - i)), lanes));
    if (i + 8 > slots) return store_first(d + i, v, int(slots - i));
    store8(d + i, v);  // zeros past n
    i += 8;
  }
  for (; i + 8 <= slots; i += 8) store8(d + i, _mm256_setzero_ps());
  store_first(d + i, _mm256_setzero_ps(), int(slots - i));
}

// Channels-last storage and the transposes between it and NCHW planes: the depthwise kernels
// (depthwise.h) run on channels-last vectors whatever the tensors' layout, and the strided input
// gradient (conv2d_dgrad_direct) writes an NCHW dx through channels-last scratch.

// Channels-last storage of type E with Cp (a multiple of the vector width) channels per pixel.
template <typename E>
struct ChannelsLast {
  E* data;
  int64_t sn, sh, sw;
};

inline int64_t padded_channels(int64_t C) { return (C + VecF32::kLanes - 1) / VecF32::kLanes * VecF32::kLanes; }

// Transposes between an image's dense planes, one (C x HW) matrix (plane c at planes + c cs), and
// its channels-last pixels (pixel j at pixels + j Cp): 8 x 8 blocks over the flattened pixels,
// pixels [j0, j1), scalar tails. Per row, a 14-column image left 6 columns
// of every row to scalar copies, a 7-column one all of them: MobileNetV2's 384 @14 stride 2 at N=8
// spent 45% of its time transposing.
template <typename T>
inline void planes_to_pixels(const T* planes, int64_t cs, int64_t C, int64_t j0, int64_t j1, T* pixels, int64_t Cp) {
  const int64_t c8 = C - C % 8, j8 = j0 + (j1 - j0) / 8 * 8;
  for (int64_t j = j0; j < j8; j += 8)
    for (int64_t c = 0; c < c8; c += 8) transpose8x8(planes + c * cs + j, cs, pixels + j * Cp + c, Cp);
  for (int64_t j = j0; j < j1; ++j) {
    for (int64_t c = (j < j8 ? c8 : 0); c < C; ++c) pixels[j * Cp + c] = planes[c * cs + j];
    std::fill(pixels + j * Cp + C, pixels + (j + 1) * Cp, T{});
  }
}
template <typename T>
inline void pixels_to_planes(const T* pixels, int64_t Cp, int64_t C, int64_t j0, int64_t j1, T* planes, int64_t cs) {
  const int64_t c8 = C - C % 8, j8 = j0 + (j1 - j0) / 8 * 8;
  for (int64_t j = j0; j < j8; j += 8)
    for (int64_t c = 0; c < c8; c += 8) transpose8x8(pixels + j * Cp + c, Cp, planes + c * cs + j, cs);
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t c = (j < j8 ? c8 : 0); c < C; ++c) planes[c * cs + j] = pixels[j * Cp + c];
}
// Runs f(n, j0, j1) over the N HW pixels in parallel: chunks of about 64 pixels, as many as a
// whole number per thread, equal to within 8 pixels (boundaries on multiples of 8 of the flat
// pixel index), each cut at image boundaries. Chunks of 64 from each image's start gave a 7 x 7
// image one chunk, one thread (the other spun), and a 14 x 14 one 64 + 64 | 64 + 4.
template <class F>
inline void for_pixel_chunks(int64_t N, int64_t HW, const F& f) {
  constexpr int64_t kChunk = 64;
  const int64_t total = N * HW, threads = parallel_threads();
  const int64_t chunks = std::max<int64_t>(1, (total + kChunk * threads - 1) / (kChunk * threads)) * threads;
  const auto edge = [&](int64_t k) { return k >= chunks ? total : k * total / chunks / 8 * 8; };
  parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k)
      for (int64_t g = edge(k), g1 = edge(k + 1); g < g1;) {
        const int64_t n = g / HW, j0 = g - n * HW, j1 = std::min(HW, j0 + (g1 - g));
        f(n, j0, j1);
        g += j1 - j0;
      }
  });
}
// NCHW planes whose pixels are contiguous: st[3] == 1, rows W apart.
inline bool dense_planes(const int64_t st[4], int64_t W) { return st[3] == 1 && st[2] == W && st[1] != 1; }

// The tensor (strides st in (n, c, h, w) order) as channels-last with padded channels: in place
// when it already is, else copied into `scratch` (padding channels zeroed).
template <typename T>
inline ChannelsLast<T> channels_last_input(const T* src, const int64_t st[4], int64_t N, int64_t C, int64_t H,
                                           int64_t W, ScratchOf<T>& scratch) {
  const int64_t Cp = padded_channels(C);
  if (st[1] == 1 && Cp == C) return {const_cast<T*>(src), st[0], st[2], st[3]};
  scratch = ScratchOf<T>(N * H * W * Cp);
  T* dst = scratch.data();
  if (dense_planes(st, W)) {
    for_pixel_chunks(N, H * W, [&](int64_t n, int64_t j0, int64_t j1) {
      planes_to_pixels(src + n * st[0], st[1], C, j0, j1, dst + n * H * W * Cp, Cp);
    });
    return {dst, H * W * Cp, W * Cp, Cp};
  }
  parallel_for(0, N * H, 4, [&](int64_t b, int64_t e) {
    for (int64_t nh = b; nh < e; ++nh) {
      const int64_t n = nh / H, h = nh % H;
      const T* s = src + n * st[0] + h * st[2];
      T* row = dst + nh * W * Cp;
      int64_t c8 = 0, w8 = 0;
      if (st[3] == 1 && st[1] != 1) {
        c8 = C - C % 8, w8 = W - W % 8;
        for (int64_t c = 0; c < c8; c += 8)
          for (int64_t w = 0; w < w8; w += 8) transpose8x8(s + c * st[1] + w, st[1], row + w * Cp + c, Cp);
      }
      for (int64_t w = 0; w < W; ++w) {
        if (st[1] == 1) {
          convert_n(s + w * st[3], row + w * Cp, C);
        } else {
          for (int64_t c = (w < w8 ? c8 : 0); c < C; ++c) row[w * Cp + c] = s[c * st[1] + w * st[3]];
        }
        std::fill(row + w * Cp + C, row + (w + 1) * Cp, T{});
      }
    }
  });
  return {dst, H * W * Cp, W * Cp, Cp};
}

// Where a kernel writes an (N, C, H, W) result: in place when the destination is channels-last
// with whole vectors of channels, else into scratch that finish_output() copies out.
template <typename T>
struct OutputTarget {
  ChannelsLast<T> view;
  bool in_place;
};

template <typename T>
inline OutputTarget<T> channels_last_output(T* dst, const int64_t st[4], int64_t N, int64_t C, int64_t H, int64_t W,
                                            ScratchOf<T>& scratch) {
  const int64_t Cp = padded_channels(C);
  if (st[1] == 1 && Cp == C) return {{dst, st[0], st[2], st[3]}, true};
  scratch = ScratchOf<T>(N * H * W * Cp);
  return {{scratch.data(), H * W * Cp, W * Cp, Cp}, false};
}

template <typename T>
inline void finish_output(const OutputTarget<T>& t, T* dst, const int64_t st[4], int64_t N, int64_t C, int64_t H,
                          int64_t W) {
  if (t.in_place) return;
  const int64_t Cp = t.view.sw;
  if (dense_planes(st, W)) {
    // Items of 8 whole planes (all pixels of 8 channels): split by pixels, the threads wrote
    // parts of the same cache line of every plane at each boundary, and a 7 x 7 image (one chunk
    // of 64 pixels) went to one thread.
    const int64_t HW = H * W, blocks = (C + 7) / 8;
    parallel_for(0, N * blocks, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int64_t n = i / blocks, c0 = i % blocks * 8;
        pixels_to_planes(t.view.data + n * HW * Cp + c0, Cp, std::min<int64_t>(8, C - c0), 0, HW,
                         dst + n * st[0] + c0 * st[1], st[1]);
      }
    });
    return;
  }
  parallel_for(0, N * H, 4, [&](int64_t b, int64_t e) {
    for (int64_t nh = b; nh < e; ++nh) {
      const int64_t n = nh / H, h = nh % H;
      const T* row = t.view.data + nh * W * Cp;
      T* d = dst + n * st[0] + h * st[2];
      int64_t c8 = 0, w8 = 0;
      if (st[3] == 1 && st[1] != 1) {  // back to planes: transpose 8 x 8 blocks
        c8 = C - C % 8, w8 = W - W % 8;
        for (int64_t w = 0; w < w8; w += 8)
          for (int64_t c = 0; c < c8; c += 8) transpose8x8(row + w * Cp + c, Cp, d + c * st[1] + w, st[1]);
      }
      for (int64_t w = 0; w < W; ++w) {
        if (st[1] == 1) {  // channels contiguous
          convert_n(row + w * Cp, d + w * st[3], C);
          continue;
        }
        for (int64_t c = (w < w8 ? c8 : 0); c < C; ++c) d[c * st[1] + w * st[3]] = row[w * Cp + c];
      }
    }
  });
}


// d[i] = lo[i] | hi[i] << 16 (bfloat16 bits; hi null: zero) for i < n: the dot policy's pairs.
inline void interleave_pairs(const bf16* lo, const bf16* hi, uint32_t* d, int64_t n) {
  if (hi == nullptr) {
    for (int64_t i = 0; i < n; ++i) d[i] = lo[i].bits;
    return;
  }
  for (int64_t i = 0; i < n; ++i) d[i] = uint32_t(lo[i].bits) | (uint32_t(hi[i].bits) << 16);
}

// bfloat16 channel pairs (DotBf16's packed elements) of 8 out channels, 8 pairs each, transposed:
// dst[j * ds + o] = the pair j of row o, moved as 32-bit patterns (shuffles only, exact).
//   adjacent:  the pairs lie at rows[o][2 j], rows[o][2 j + 1] (channels contiguous: KRSC, 1x1);
//   taps:      pair j is tap j of two channels c_stride apart, rows[o][j] and rows[o][c_stride + j]
//              (KCRS: each channel's taps contiguous).
inline void transpose_adjacent_pairs8x8(const bf16* const* rows, uint32_t* dst, int64_t ds) {
  const float* r[8];
  for (int o = 0; o < 8; ++o) r[o] = reinterpret_cast<const float*>(rows[o]);
  transpose8x8_rows(r, 0, reinterpret_cast<float*>(dst), ds);
}
inline void transpose_tap_pairs8x8(const bf16* const* rows, int64_t c_stride, uint32_t* dst, int64_t ds) {
  alignas(32) uint32_t block[64];
  for (int o = 0; o < 8; ++o) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[o]));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[o] + c_stride));
    _mm_store_si128(reinterpret_cast<__m128i*>(block + 8 * o), _mm_unpacklo_epi16(lo, hi));
    _mm_store_si128(reinterpret_cast<__m128i*>(block + 8 * o + 4), _mm_unpackhi_epi16(lo, hi));
  }
  transpose8x8(reinterpret_cast<const float*>(block), 8, reinterpret_cast<float*>(dst), ds);
}
// The pair (c, c + 1) of bfloat16 channels c_stride apart, c + 1 zero past n: its bits as they are.
inline uint32_t bf16_pair_bits(const bf16* at, int64_t c_stride, bool has_high) {
  return uint32_t(at->bits) | (has_high ? uint32_t(at[c_stride].bits) << 16 : 0u);
}

// Packs the weights as wp[g][kb][tap][i][KB] of M::Elem (packed element i holds M::kChannels
// input channels); the tail block's missing out channels are zeros.
// Work items are (block, chunk of kChunk packed elements). Per out channel of the block, the chunk's
// inputs at a run of taps lie in a few cache lines of its source row (KCRS: one contiguous run;
// KRSC: a run per tap); they are transposed into an L1 tile [tap][i][KB], and each tap's rows then
// leave as one contiguous copy. Writing the destination directly instead put consecutive taps
// in_per_group * KB elements apart (64 KB for 512 channels: one L1 set), and walking the out
// channels innermost re-read each source line once per tap from L3: 6.7-10.5 ms for res5's 9.4 MB
// on one thread.
// Where a tap's input channels are contiguous (KCRS 1x1 weights, any KRSC weights), 8 out channels
// x 8 inputs go into the tile as one register transpose, not 64 scalar moves: the packing had
// taken a quarter of a channels_last 1x1 forward at N=1 (A/B, arms in random order, 2 threads:
// 1024 -> 256 @14 0.70 -> 0.64 ms, 256 -> 256 @14 0.273 -> 0.242, 1x1/2 256 -> 512 @28 0.43 ->
// 0.36).
// bundle > 1 (group bundles, with_group_bundle; one block per group): the blocks of `bundle`
// consecutive groups go side by side, wp[g / bundle][tap][i][g % bundle][KB].
template <class M, typename T>
ScratchOf<typename M::Elem> pack_weights(const DirectConvPlan& d, int64_t KB, const WeightSource<T>& src,
                                         int64_t bundle = 1) {
  using E = typename M::Elem;
  static_assert(M::kChannels == 1 || std::is_same_v<T, bf16>, "channel pairs are packed from bfloat16 storage");
  constexpr int64_t kChunk = 8, kTileElems = 4096, kAhead = 4;  // a 16 KB tile
  const int64_t nkb = (d.out_per_group + KB - 1) / KB, taps = int64_t(d.tap_offset.size()), cin = d.in_per_group;
  const int64_t block = taps * cin * KB, nchunks = (cin + kChunk - 1) / kChunk;
  const int64_t tap_run = std::max<int64_t>(1, kTileElems / (kChunk * KB));
  ScratchOf<E> wp(d.groups * nkb * block);
  // Where row (tap t, packed element i) of block gk goes.
  const auto dst_row = [&, bundle](int64_t gk, int64_t t, int64_t i) {
    return wp.data() + (gk - gk % bundle) * block + ((t * cin + i) * bundle + gk % bundle) * KB;
  };
  if (src.out_stride == 1) {  // out channels contiguous in the source (the 1x1 NCHW path's x; dgrad
                              // of channels-last weights): each (tap, i) row is one run to copy,
                              // or for bfloat16 pairs two runs to interleave (dgrad, KRSC, 3x3
                              // 512 @7 N=1: 2.30 -> 0.83 ms)
    parallel_for(0, d.groups * nkb * nchunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t item = b; item < e; ++item) {
        const int64_t gk = item / nchunks, i0 = (item % nchunks) * kChunk, ilen = std::min(kChunk, cin - i0);
        const int64_t g = gk / nkb, o0 = (gk % nkb) * KB, olen = std::min(KB, d.out_per_group - o0);
        const T* rows = src.base + g * src.group_stride + o0;
        for (int64_t t = 0; t < taps; ++t)
          for (int64_t i = i0; i < i0 + ilen; ++i) {
            E* dst = dst_row(gk, t, i);
            const T* run = rows + src.tap_offset[t] + M::kChannels * i * src.in_stride;
            if constexpr (M::kChannels == 1)
              convert_n(run, dst, olen);
            else
              interleave_pairs(run, 2 * i + 1 < src.in_channels ? run + src.in_stride : nullptr, dst, olen);
            std::fill(dst + olen, dst + KB, E(0));
          }
      }
    });
    return wp;
  }
  // Past the L2s the packed weights are read back from L3 or DRAM anyway: write them around the
  // caches (no read-for-ownership). res5's 9.4 MB on one thread, Zen 3: 5.0 -> 2.8 ms.
  const bool stream = d.groups * nkb * block * int64_t(sizeof(E)) > (int64_t(2) << 20);
  const bool transposes = src.in_stride == 1;  // see above
  // Each source row's taps contiguous (KCRS weights): 8 out channels x 8 taps of one input
  // channel go as one transpose instead (A/B, arms in random order, 2 threads, 3x3 stride 2, the
  // direct engine: 256 @28 N=1 1.61 -> 1.44 ms, channels_last 1.88 -> 1.67; 512 @14 N=2 5.6 -> 4.9).
  bool taps_contiguous = taps >= 8;
  for (int64_t t = 1; t < taps; ++t) taps_contiguous = taps_contiguous && src.tap_offset[t] == src.tap_offset[0] + t;
  parallel_for(0, d.groups * nkb * nchunks, 1, [&](int64_t b, int64_t e) {
    std::vector<E> tile(tap_run * kChunk * KB);
    for (int64_t item = b; item < e; ++item) {
      const int64_t gk = item / nchunks, i0 = (item % nchunks) * kChunk, ilen = std::min(kChunk, cin - i0);
      const int64_t g = gk / nkb, o0 = (gk % nkb) * KB, olen = std::min(KB, d.out_per_group - o0);
      const T* rows = src.base + g * src.group_stride + o0 * src.out_stride;
      for (int64_t t0 = 0; t0 < taps; t0 += tap_run) {
        const int64_t tlen = std::min(tap_run, taps - t0);
        int64_t l = 0;
        if constexpr (M::kChannels == 1) {
          if (transposes && ilen == kChunk)
            for (; l + 8 <= olen; l += 8) {
              if (l + 16 <= olen)
                for (int64_t j = 8; j < 16; ++j)
                  for (int64_t t = 0; t < tlen; ++t)
                    __builtin_prefetch(rows + (l + j) * src.out_stride + src.tap_offset[t0 + t] + i0);
              for (int64_t t = 0; t < tlen; ++t)
                transpose8x8(rows + l * src.out_stride + src.tap_offset[t0 + t] + i0, src.out_stride,
                             tile.data() + t * kChunk * KB + l, KB);
            }
          else if (taps_contiguous && tlen >= 8)
            for (; l + 8 <= olen; l += 8) {
              if (l + 16 <= olen) {  // the lines of rows l + 8 ... l + 15 that the chunk reads
                // The chunk's ilen runs of tlen taps, in_stride apart: one span where they are
                // close (KCRS forward: 9 apart), else run by run. The span alone, across dgrad's
                // in channels (KCRS: C 9 apart), had prefetched 2,000 lines per row, 8 of them read:
                // 65% of a res5 3x3 NCHW dgrad (512 @7 N=1, 2 threads, 13.5 ms).
                const int64_t line = 64 / int64_t(sizeof(T)), span = (ilen - 1) * src.in_stride + tlen;
                for (int64_t j = 8; j < 16; ++j) {
                  const T* first = rows + (l + j) * src.out_stride + src.tap_offset[t0] + i0 * src.in_stride;
                  if (src.in_stride <= line) {
                    for (int64_t x = 0; x < span; x += line) __builtin_prefetch(first + x);
                    __builtin_prefetch(first + span - 1);
                  } else {
                    for (int64_t i = 0; i < ilen; ++i) {
                      __builtin_prefetch(first + i * src.in_stride);
                      __builtin_prefetch(first + i * src.in_stride + tlen - 1);
                    }
                  }
                }
              }
              for (int64_t i = 0; i < ilen; ++i) {
                const T* at = rows + l * src.out_stride + (i0 + i) * src.in_stride + src.tap_offset[t0];
                E* col = tile.data() + i * KB + l;
                int64_t t = 0;
                for (; t + 8 <= tlen; t += 8) transpose8x8(at + t, src.out_stride, col + t * kChunk * KB, kChunk * KB);
                for (; t < tlen; ++t)
                  for (int64_t r = 0; r < 8; ++r) col[t * kChunk * KB + r] = load_acc(at + r * src.out_stride + t);
              }
            }
        } else {
          // bfloat16 channel pairs: the same transposes on 32-bit pairs, for chunks of whole pairs.
          // Pair by pair, through float and back, this packing had taken 55% of res5's 3x3 at N=1
          // (A/B, arms in random order, 2 threads, N=1: 3x3 512 @7 3.41 -> 1.39 ms, KRSC 1.89 ->
          // 0.86; 256 @14 1.20 -> 0.75; 1x1 2048 -> 512 @7 1.43 -> 0.57, KRSC 1024 -> 256 @14
          // 0.45 -> 0.30).
          const bool whole = ilen == kChunk && 2 * (i0 + kChunk) <= src.in_channels;
          if (transposes && whole)
            for (; l + 8 <= olen; l += 8)
              for (int64_t t = 0; t < tlen; ++t) {
                const T* r[8];
                for (int o = 0; o < 8; ++o) r[o] = rows + (l + o) * src.out_stride + src.tap_offset[t0 + t] + 2 * i0;
                transpose_adjacent_pairs8x8(r, tile.data() + t * kChunk * KB + l, KB);
              }
          else if (taps_contiguous && tlen >= 8 && whole)
            for (; l + 8 <= olen; l += 8)
              for (int64_t i = 0; i < ilen; ++i) {
                const T* at = rows + l * src.out_stride + 2 * (i0 + i) * src.in_stride + src.tap_offset[t0];
                E* col = tile.data() + i * KB + l;
                int64_t t = 0;
                for (; t + 8 <= tlen; t += 8) {
                  const T* r[8];
                  for (int o = 0; o < 8; ++o) r[o] = at + o * src.out_stride + t;
                  transpose_tap_pairs8x8(r, src.in_stride, col + t * kChunk * KB, kChunk * KB);
                }
                for (; t < tlen; ++t)
                  for (int64_t o = 0; o < 8; ++o)
                    col[t * kChunk * KB + o] = bf16_pair_bits(at + o * src.out_stride + t, src.in_stride, true);
              }
        }
        for (; l < olen; ++l) {
          // Source rows are far apart (out_stride) and each yields a few lines: the hardware
          // prefetchers see no stream, so ask for row l + kAhead's lines now.
          if (l + kAhead < olen) {
            const T* ahead = rows + (l + kAhead) * src.out_stride;
            for (int64_t t = 0; t < tlen; ++t) {
              __builtin_prefetch(ahead + src.tap_offset[t0 + t] + i0 * src.in_stride);
              __builtin_prefetch(ahead + src.tap_offset[t0 + t] + (i0 + ilen - 1) * src.in_stride);
            }
          }
          for (int64_t t = 0; t < tlen; ++t) {
            const T* at = rows + l * src.out_stride + src.tap_offset[t0 + t];
            E* col = tile.data() + t * kChunk * KB + l;
            if constexpr (M::kChannels == 2) {  // bfloat16 pairs: their bits as they are
              for (int64_t i = i0; i < i0 + ilen; ++i)
                col[(i - i0) * KB] = bf16_pair_bits(at + 2 * i * src.in_stride, src.in_stride, 2 * i + 1 < src.in_channels);
            } else if (ilen == kChunk) {  // a constant trip count: unrolled, no loop overhead per element
              for (int64_t i = 0; i < kChunk; ++i) col[i * KB] = load_acc(at + (i0 + i) * src.in_stride);
            } else {
              for (int64_t i = 0; i < ilen; ++i) col[i * KB] = load_acc(at + (i0 + i) * src.in_stride);
            }
          }
        }
        for (int64_t t = 0; t < tlen; ++t) {
          E* row = tile.data() + t * kChunk * KB;
          if (olen < KB)
            for (int64_t i = 0; i < ilen; ++i) std::fill(row + i * KB + olen, row + (i + 1) * KB, E(0));
          // ilen consecutive rows, or with bundles ilen rows bundle * KB apart
          const int64_t run = bundle == 1 ? ilen * KB : KB;
          for (int64_t i = 0; i < ilen; i += run / KB) {
            E* dst = dst_row(gk, t0 + t, i0 + i);
            if (stream)
              stream_copy(dst, row + i * KB, run);
            else
              std::copy(row + i * KB, row + i * KB + run, dst);
          }
        }
      }
    }
    if (stream) stream_fence();
  });
  return wp;
}

#if defined(__AVX512F__)
// NCHW rows of C = 2..7 channels into channels-last pixels, 16 pixels at a time: the C rows' 16
// floats make C vectors of 16, lane l of vector j taking channel (16 j + l) % C of pixel (16 j +
// l) / C, each vector C masked permutes by one index (the pixel), one from each channel's row.
// Element by element, the stems' NCHW x (3 channels) had taken 15% of MobileNetV2's stem forward
// at N=8 (in-process A/B, arms in random order, Xeon, 2 threads, NCHW: MobileNetV2's stem forward
// N=1 1.13x, N=8 1.05x, weight gradient 1.12x / 1.06x; the ResNet stem 1.02x forward, 1.03-1.06x
// weight gradient; VGG's first layer 1.00-1.01x).
template <int C>
struct FewChannelPixels {
  __m512i pixel[C];
  __mmask16 from[C][C];  // from[j][c]: the lanes of vector j that channel c fills
  FewChannelPixels() {
    for (int j = 0; j < C; ++j) {
      alignas(64) int32_t idx[16];
      for (int c = 0; c < C; ++c) from[j][c] = 0;
      for (int l = 0; l < 16; ++l) {
        idx[l] = (16 * j + l) / C;
        from[j][(16 * j + l) % C] |= __mmask16(1u << l);
      }
      pixel[j] = _mm512_load_si512(idx);
    }
  }
  // dst[w C + c] = src[c c_stride + w] for w < 16 (T: float or bf16).
  template <typename T>
  [[gnu::always_inline]] void run(const T* src, int64_t c_stride, float* dst) const {
    __m512 r[C];
    for (int c = 0; c < C; ++c) r[c] = VecF32::load(src + c * c_stride);
    for (int j = 0; j < C; ++j) {
      __m512 v = _mm512_setzero_ps();
      for (int c = 0; c < C; ++c) v = _mm512_mask_permutexvar_ps(v, from[j][c], pixel[j], r[c]);
      _mm512_storeu_ps(dst + 16 * j, v);
    }
  }
  // A row of W >= 16 pixels: blocks of 16, the last shifted left onto the previous one.
  template <typename T>
  void row(const T* src, int64_t c_stride, int64_t W, float* dst) const {
    for (int64_t w = 0; w + 16 <= W; w += 16) run(src + w, c_stride, dst + w * C);
    if (W % 16 != 0) run(src + W - 16, c_stride, dst + (W - 16) * C);
  }
};

// FewChannelPixels<C>::row for a run-time C of 2..7; false for other C.
template <typename T>
bool few_channel_row(int64_t C, const T* src, int64_t c_stride, int64_t W, float* dst) {
  switch (C) {
    case 2: { static const FewChannelPixels<2> k; k.row(src, c_stride, W, dst); return true; }
    case 3: { static const FewChannelPixels<3> k; k.row(src, c_stride, W, dst); return true; }
    case 4: { static const FewChannelPixels<4> k; k.row(src, c_stride, W, dst); return true; }
    case 5: { static const FewChannelPixels<5> k; k.row(src, c_stride, W, dst); return true; }
    case 6: { static const FewChannelPixels<6> k; k.row(src, c_stride, W, dst); return true; }
    case 7: { static const FewChannelPixels<7> k; k.row(src, c_stride, W, dst); return true; }
    default: return false;
  }
}
#endif

// dst[w ds + i] = src[i c_stride + w] for 8 channel rows i of W >= 8 contiguous pixels w: 8 x 8
// transposes, the last one shifted left onto the previous one where 8 does not divide W (its
// overlap written twice, alike).
template <typename S, typename D>
inline void transpose_8_channel_row(const S* src, int64_t c_stride, int64_t W, D* dst, int64_t ds) {
  for (int64_t w = 0; w + 8 <= W; w += 8) transpose8x8(src + w, c_stride, dst + w * ds, ds);
  if (W % 8 != 0) transpose8x8(src + W - 8, c_stride, dst + (W - 8) * ds, ds);
}

// dst[j ds + i] = src[i ss + j] for 8 rows i and the first `cols` (< 8) columns j of float rows:
// masked loads, so that nothing past a row's cols elements is read.
inline void transpose8_short_rows(const float* src, int64_t ss, int cols, float* dst, int64_t ds) {
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  alignas(32) float block[64], t[64];
  for (int i = 0; i < 8; ++i) _mm256_store_ps(block + 8 * i, _mm256_maskload_ps(src + i * ss, mask));
  transpose8x8(block, 8, t, 8);
  for (int j = 0; j < cols; ++j) store8(dst + j * ds, load8(t + 8 * j));
}

#if defined(__AVX512BW__)
// dst[w ds + i] = src[i ss + w] for 16 bfloat16 channel rows i and the first n (<= 8) pixels w of
// each, into bfloat16 or float (D): 16-bit transposes in the 128-bit lanes (channels i and i + 8
// side by side), no conversion to float and back; masked loads read nothing past a row's n elements.
template <typename D>
[[gnu::always_inline]] inline void transpose16x8_bf16(const bf16* src, int64_t ss, int n, D* dst, int64_t ds) {
  const __mmask8 m = __mmask8((1u << n) - 1);
  __m256i r[8], a[8], b[8];
  for (int i = 0; i < 8; ++i)
    r[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_maskz_loadu_epi16(m, src + i * ss)),
                                   _mm_maskz_loadu_epi16(m, src + (i + 8) * ss), 1);
  for (int i = 0; i < 8; i += 2) {  // rows i, i + 1 interleaved: pixels 0-3, 4-7
    a[i] = _mm256_unpacklo_epi16(r[i], r[i + 1]);
    a[i + 1] = _mm256_unpackhi_epi16(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {  // rows i .. i + 3: pixels {0, 1}, {2, 3}, {4, 5}, {6, 7}
    b[i] = _mm256_unpacklo_epi32(a[i], a[i + 2]);
    b[i + 1] = _mm256_unpackhi_epi32(a[i], a[i + 2]);
    b[i + 2] = _mm256_unpacklo_epi32(a[i + 1], a[i + 3]);
    b[i + 3] = _mm256_unpackhi_epi32(a[i + 1], a[i + 3]);
  }
  const auto store = [&](int w, __m256i v) {  // pixel w's 16 channels
    if (w >= n) return;
    if constexpr (std::is_same_v<D, bf16>) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + w * ds), v);
    } else {
      static_assert(std::is_same_v<D, float>, "bfloat16 or float");
      _mm512_storeu_ps(dst + w * ds, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)));
    }
  };
  for (int j = 0; j < 4; ++j) {  // pixels 2j and 2j + 1, all 8 rows (and the 8 rows above them)
    store(2 * j, _mm256_unpacklo_epi64(b[j], b[j + 4]));
    store(2 * j + 1, _mm256_unpackhi_epi64(b[j], b[j + 4]));
  }
}

// A bfloat16 row of W contiguous pixels of 16 channel rows into pixels ds apart: blocks of 8, the
// last one shifted left onto the previous one where 8 does not divide W >= 8.
template <typename D>
inline void transpose16_channel_row_bf16(const bf16* src, int64_t ss, int64_t W, D* dst, int64_t ds) {
  if (W < 8) return transpose16x8_bf16(src, ss, int(W), dst, ds);
  for (int64_t w = 0; w + 8 <= W; w += 8) transpose16x8_bf16(src + w, ss, 8, dst + w * ds, ds);
  if (W % 8 != 0) transpose16x8_bf16(src + W - 8, ss, 8, dst + (W - 8) * ds, ds);
}

// A channels-last bfloat16 row of W pixels (st3 elements apart) of C channels into slots of ps per
// pixel (C < ps, the extra slots zero; 32 / ps pixels a vector): one masked load and one permute per
// 32 / ps pixels where their elements span at most 32. The ResNet stem's 3 channels into 4 (its
// pairs): element by element had taken a quarter of its bfloat16 forward. Returns false where the
// pixels do not fit a vector so.
inline bool few_channel_pairs_row(const bf16* src, int64_t st3, int64_t C, int64_t ps, int64_t W, bf16* dst) {
  if (32 % ps != 0 || C > ps) return false;
  const int64_t V = 32 / ps;
  if ((V - 1) * st3 + C > 32) return false;
  alignas(64) uint16_t idx[32];
  uint32_t keep = 0;
  for (int64_t l = 0; l < 32; ++l) {
    const int64_t c = l % ps;
    idx[l] = uint16_t(c < C ? (l / ps) * st3 + c : 0);
    if (c < C) keep |= 1u << l;
  }
  const __m512i perm = _mm512_load_si512(idx);
  const auto lanes = [](int64_t n) { return n >= 32 ? ~__mmask32(0) : __mmask32((uint64_t(1) << n) - 1); };
  for (int64_t w = 0; w < W; w += V) {
    const int64_t m = std::min(V, W - w);  // pixels in this vector
    const __m512i v = _mm512_maskz_loadu_epi16(lanes((m - 1) * st3 + C), src + w * st3);
    _mm512_mask_storeu_epi16(dst + w * ps, lanes(m * ps), _mm512_maskz_permutexvar_epi16(keep, perm, v));
  }
  return true;
}
#endif

// Copies a strided (n, c, h, w) activation of storage type T into zero-padded channels-last storage
// of type D (float, or bf16 for the bfloat16 dot kernels) of (Hp, Wp) positions per image: the
// image at rows [pad_h, pad_h + H) and columns [pad_w, pad_w + W). Each of the `groups` groups of
// C / groups channels takes `group_slots` (>= C / groups, default equal) slots per pixel, the
// extra ones zero: the dot kernels pair channels within a group. A pixel takes `pixel_slots`
// (default: the groups' slots) elements, the extra ones zero (see wgrad_pixel_slots).
template <typename T, typename D = float>
inline ScratchOf<D> pack_activations(const T* src, const int64_t st[4], int64_t N, int64_t C, int64_t H, int64_t W,
                                     int64_t pad_h, int64_t pad_w, int64_t Hp, int64_t Wp, int64_t groups = 1,
                                     int64_t group_slots = 0, int64_t pixel_slots = 0) {
  const int64_t Cg = C / groups, gs = group_slots > 0 ? group_slots : Cg, Cs = groups * gs;
  const int64_t ps = std::max(pixel_slots, Cs);
  ScratchOf<D> dst(N * Hp * Wp * ps);
  parallel_for(0, N * Hp, 4, [&](int64_t b, int64_t e) {
    for (int64_t nh = b; nh < e; ++nh) {
      const int64_t n = nh / Hp, hp = nh % Hp, h = hp - pad_h;
      D* out = dst.data() + nh * Wp * ps;
      if (h < 0 || h >= H) {
        std::fill(out, out + Wp * ps, D{});
        continue;
      }
      std::fill(out, out + pad_w * ps, D{});
      std::fill(out + (pad_w + W) * ps, out + Wp * ps, D{});
      D* row = out + pad_w * ps;
      const T* s = src + n * st[0] + h * st[2];
#if defined(__AVX512BW__)
      if constexpr (std::is_same_v<T, bf16> && std::is_same_v<D, bf16>) {
        if (groups == 1 && gs != Cg && ps == gs && st[1] == 1 &&
            few_channel_pairs_row(s, st[3], C, ps, W, row))
          continue;
      }
#endif
      if (gs != Cg) {  // padded groups (odd channel counts for the dot kernels): element by element
        std::fill(row, row + W * ps, D{});
        for (int64_t c = 0; c < C; ++c)
          for (int64_t w = 0; w < W; ++w)
            store_from(row + w * ps + (c / Cg) * gs + c % Cg, load_acc(s + c * st[1] + w * st[3]));
        continue;
      }
      const bool dense_row = st[1] == 1 && st[3] == C && ps == C;
      if constexpr (std::is_same_v<T, float> && std::is_same_v<D, float>) {
        if (st[1] == 1 && !dense_row && C < kSmallPixel) {  // few channels per pixel, slots zeroed too
          for (int64_t w = 0; w < W; ++w) copy_pixel(s + w * st[3], row + w * ps, C, ps);
          continue;
        }
      }
      if (ps > C)
        for (int64_t w = 0; w < W; ++w) std::fill(row + w * ps + C, row + (w + 1) * ps, D{});
      if (st[1] == 1) {  // channels already innermost: copy pixel by pixel
        if (dense_row) {  // one run
          convert_n(s, row, W * C);
          continue;
        }
        for (int64_t w = 0; w < W; ++w) convert_n(s + w * st[3], row + w * ps, C);
        continue;
      }
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<D, float>) {  // 2-7 channels filling the pixels: FewChannelPixels
        if (st[3] == 1 && C < 8 && ps == C && W >= 16 && few_channel_row(C, s, st[1], W, row)) continue;
      }
#endif
      // A (C x W) -> (W x C) transpose: 8 x 8 register blocks where the row is contiguous, or has
      // stride 2 (a downsampling 1x1's pixels: 16-element reads, the last block's shifted one
      // element left onto the odd ones, so that no read passes the row's last pixel). A contiguous
      // row of 8+ pixels ends with a block shifted left onto the previous one's last columns: rows
      // of 14 and 28 had gone element by element past their last whole block (in-process A/B,
      // arms in random order, Xeon, 2 threads, NCHW N=8, ResNeXt 512 @14 x 32 groups: weight
      // gradient 1.08x, forward 1.04x, input gradient 1.02x; dense 3x3 layers @14 and @28 1.00-1.01x).
      int64_t c8 = 0, w8 = 0;  // columns [0, w8) of channels [0, c8) go as vectors
      if constexpr (std::is_same_v<T, float> && std::is_same_v<D, float>) {
        // Rows under 8 pixels (7 x 7 layers) by masked 8-column transposes (in-process A/B, arms
        // in random order, Xeon, 2 threads, NCHW: ResNeXt 1024 @7 x 32 groups weight gradient
        // 1.05-1.06x, forward 1.00-1.02x; ResNet-50's 512 @7 0.99-1.05x).
        if (st[3] == 1 && W < 8) {
          c8 = C - C % 8, w8 = W;
          for (int64_t c = 0; c < c8; c += 8) transpose8_short_rows(s + c * st[1], st[1], int(W), row + c, ps);
        }
      }
      int64_t c16 = 0;  // channels [0, c16) already transposed, 16 at a time
#if defined(__AVX512BW__)
      if constexpr (std::is_same_v<T, bf16>) {
        // bfloat16 rows by 16-bit transposes of 16 channels, any W. (They had gone through float,
        // 8 channels at a time, and element by element under 8 pixels: in-process A/B, arms in
        // random order, Zen 5, 2 threads, N=8 NCHW: ResNeXt 1024 @7 x 32 groups forward 1.46x,
        // input gradient 1.40x, weight gradient (float engine) 1.17x; 512 @14 x 32 1.17x, 1.16x,
        // 1.09x; dense 3x3 512 @7 1.05-1.06x, 128 @28 1.04-1.07x.)
        if (st[3] == 1) {
          c16 = C - C % 16;
          for (int64_t c = 0; c < c16; c += 16) transpose16_channel_row_bf16(s + c * st[1], st[1], W, row + c, ps);
          c8 = c16, w8 = W;
        }
      }
#endif
      if ((st[3] == 1 && W >= 8) || (st[3] == 2 && W > 8)) {
        c8 = C - C % 8;
        w8 = W;
        const int64_t even_blocks = (W - 1) - (W - 1) % 8;  // stride 2: columns read as even elements
        // The next row's lines of these channels, into L2: each row is a short run 2 plane-strides
        // from the next, which the hardware prefetchers do not follow (A/B, arms in random order,
        // bfloat16 NCHW, N=8: 1x1/2 256 -> 512 @56 7.41 -> 6.85 ms, 512 -> 1024 @28 6.13 -> 5.66;
        // contiguous rows of 3x3 layers alike with and without).
        const int64_t span = (st[3] * (W - 1) + 1) * int64_t(sizeof(T)), line = 64;
        for (int64_t c = c16; c < c8; c += 8) {
          for (int64_t i = 0; i < 8; ++i) {
            const char* next = reinterpret_cast<const char*>(s + st[2] + (c + i) * st[1]);
            for (int64_t o = 0; o < span; o += line) __builtin_prefetch(next + o, 0, 2);
            __builtin_prefetch(next + span - 1, 0, 2);
          }
          if (st[3] == 1) {
            transpose_8_channel_row(s + c * st[1], st[1], W, row + c, ps);
            continue;
          }
          for (int64_t w = 0; w < even_blocks; w += 8)
            transpose8x8<2>(s + c * st[1] + 2 * w, st[1], row + w * ps + c, ps);
          if (even_blocks < W) transpose8x8<2, 1>(s + c * st[1] + 2 * (W - 8) - 1, st[1], row + (W - 8) * ps + c, ps);
        }
      }
      for (int64_t c = 0; c < C; ++c)
        for (int64_t w = (c < c8 ? w8 : 0); w < W; ++w) store_from(row + w * ps + c, load_acc(s + c * st[1] + w * st[3]));
    }
  });
  return dst;
}

// x (storage type T, strides st in (n, c, h, w) order, groups x cin channels) as zero-padded
// float group blocks [n][g][Hp][Wp][cin], group_block_floats apart: each group's image alone, at
// rows [pad_h, pad_h + H) and columns [pad_w, pad_w + W). The row tiles (row_reuse_conv) then
// find a pixel cin floats from the next, a constant they are compiled for, where a channels-last
// copy put them C apart.
// Blocks one line more than their Hp Wp cin floats apart: 512 @14's 16 KB blocks put the same
// pixel of every group in one L1 set, which the copy (a pixel's runs to each group) thrashed: it
// ran 2x slower than the memcpy of a channels-last copy until the extra line.
inline int64_t group_block_floats(int64_t Hp, int64_t Wp, int64_t cin) { return Hp * Wp * cin + 16; }

template <typename T>
ScratchOf<float> pack_group_blocks(const T* src, const int64_t st[4], int64_t N, int64_t groups, int64_t cin,
                                   int64_t H, int64_t W, int64_t pad_h, int64_t pad_w, int64_t Hp, int64_t Wp) {
  const int64_t row_floats = Wp * cin, block_floats = group_block_floats(Hp, Wp, cin);
  ScratchOf<float> dst(N * groups * block_floats);
  // Each thread packs a range of groups, as row_reuse_conv then runs them, so that the blocks
  // are in its own L2; within it a channels-last pixel's runs of those groups are read in order.
  parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t hp = 0; hp < Hp; ++hp) {
        const int64_t h = hp - pad_h;
        float* out0 = dst.data() + n * groups * block_floats + hp * row_floats;  // group 0's row
        for (int64_t g = g0; g < g1; ++g) {
          float* out = out0 + g * block_floats;
          if (h < 0 || h >= H) {
            std::fill(out, out + row_floats, 0.0f);
            continue;
          }
          std::fill(out, out + pad_w * cin, 0.0f);
          std::fill(out + (pad_w + W) * cin, out + row_floats, 0.0f);
        }
        if (h < 0 || h >= H) continue;
        const T* s = src + n * st[0] + h * st[2];
        float* row0 = out0 + pad_w * cin;
        if (st[1] == 1) {  // channels-last: runs of cin per pixel and group
          const int64_t c8 = cin - cin % 8;
          for (int64_t w = 0; w < W; ++w)
            for (int64_t g = g0; g < g1; ++g) {
              const T* sp = s + w * st[3] + g * cin;
              float* dp = row0 + g * block_floats + w * cin;
              for (int64_t c = 0; c < c8; c += 8) store8(dp + c, load8(sp + c));
              for (int64_t c = c8; c < cin; ++c) dp[c] = load_acc(sp + c);
            }
          continue;
        }
        // (cin x W) -> (W x cin) per group: 8 x 8 register transposes where the row is contiguous
        // (8+ pixels: the last block shifted left onto the previous one, as in pack_activations)
        const bool blocks = st[3] == 1 && W >= 8;
        const int64_t c8 = blocks ? cin - cin % 8 : 0, w8 = blocks ? W : 0;
        for (int64_t g = g0; g < g1; ++g) {
          const T* sg = s + g * cin * st[1];
          float* row = row0 + g * block_floats;
          for (int64_t c = 0; c < c8; c += 8) transpose_8_channel_row(sg + c * st[1], st[1], W, row + c, cin);
          for (int64_t c = 0; c < cin; ++c)
            for (int64_t w = (c < c8 ? w8 : 0); w < W; ++w) row[w * cin + c] = load_acc(sg + c * st[1] + w * st[3]);
        }
      }
  });
  return dst;
}

// acc[m][v] = bias(vector v) + x(pixel m, channel c) * w(c, vector v) summed over every tap and
// input channel, plus pixel_bias[m]; the tile is stored at out + out_off[m] (rounded to TOut).
// With `accumulate`, acc starts from the tile already at out instead of the bias (Winograd's
// weight gradient sums its chunks of tiles there).
// Pixel m's taps read x + x_off[m] + tap_offset[t]: any MR output pixels, not only neighbours in
// a row, so small images fill whole tiles; with tap_ptrs, at tap_ptrs[m taps + t] instead (an edge
// tile of PaddedEdges). bias and pixel_bias may be null.
// LastL < lanes (AVX-512 only): the last vector holds LastL = 8 channels, as 256-bit operations
// (HalfVector<8>, M::*_half), so KB = (NV - 1) lanes + 8 (tile_channels).
// NG > 1 (group bundles, with_group_bundle): the NV vectors are NG groups of NV / NG vectors each,
// group j's inputs GI elements after group 0's, so each pixel takes NG broadcasts per input
// channel, at constant offsets from its one pointer.
// Walk (direct_conv_row_taps) kRowTaps: the MR pixels are consecutive elements from x + x_off[0]
// and each tap holds one element (cin 1), so all MR broadcasts of a tap come from one pointer
// at constant offsets; kRowTapsAhead also prefetches the line of the tap kTapsAhead on.
// Always inlined into direct_conv: out of line (GCC 12 stopped inlining it once it had more
// instantiations), the AVX2 build kept half of the accumulators on the stack: 2x slower.
enum TapWalk { kTapTable, kRowTaps, kRowTapsAhead };
template <class M, int MR, int NV, int LastL = VecF32::kLanes, int NG = 1, int GI = 0, int Walk = kTapTable,
          bool Stream = false, typename TOut>
[[gnu::always_inline]] inline void conv_tile(const typename M::Elem* x, const int64_t* x_off, const int64_t* tap_offset, int64_t taps,
                      const typename M::Elem* w, int64_t cin, int64_t w_step, const float* bias, const float* pixel_bias,
                      TOut* out, const int64_t* out_off, bool accumulate = false,
                      const typename M::Elem* const* tap_ptrs = nullptr) {
  using V = VecF32;
  using H = HalfVector<LastL>;  // complete only where a tile has a half vector
  constexpr int L = V::kLanes;
  constexpr int kHalf = LastL != L ? NV - 1 : -1;  // the index of the half vector, if any
  static_assert(LastL == L || 2 * LastL == L, "the last vector is whole or half");
  static_assert(NV % NG == 0 && (NG == 1 || (LastL == L && GI > 0)), "bundles of whole vectors");
  constexpr int GV = NV / NG;  // vectors per group
  const auto load = [](const auto* p, int v) {
    if constexpr (kHalf >= 0) {
      if (v == kHalf) return H::load(p);
    }
    return V::load(p);
  };
  const auto load_w = [](const typename M::Elem* p, int v) {
    if constexpr (kHalf >= 0) {
      if (v == kHalf) return M::load_half(p);
    }
    return M::load(p);
  };
  const auto madd = [](typename M::In xb, typename M::In wv, typename V::type acc, int v) {
    if constexpr (kHalf >= 0) {
      if (v == kHalf) return M::madd_half(xb, wv, acc);
    }
    return M::madd(xb, wv, acc);
  };
  typename V::type acc[MR][NV];
  for (int v = 0; v < NV; ++v) {
    const typename V::type b = bias ? load(bias + v * L, v) : V::zero();
    for (int m = 0; m < MR; ++m) acc[m][v] = accumulate ? load(out + out_off[m] + v * L, v) : b;
  }
  if constexpr (Walk != kTapTable) {
    static_assert(NG == 1, "one group a tile");
    // (A loop of its own, not a branch inside the general one: that branch, always inlined into every
    // tile, left GCC 12's AVX2 tiles spilling: 1x1 64 -> 64 @56 forward 0.15 -> 0.35 ms.)
    constexpr int64_t kTapsAhead = 16;
    const typename M::Elem* x0 = x + x_off[0];
    for (int64_t t = 0; t < taps; ++t) {
      const typename M::Elem* xt = x0 + tap_offset[t];
      if constexpr (Walk == kRowTapsAhead) __builtin_prefetch(x0 + tap_offset[std::min(t + kTapsAhead, taps - 1)]);
      typename M::In wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = load_w(w + t * w_step + v * L, v);
      for (int m = 0; m < MR; ++m) {
        const typename M::In xb = M::broadcast(xt + m);
        for (int v = 0; v < NV; ++v) acc[m][v] = madd(xb, wv[v], acc[m][v], v);
      }
    }
  } else {
    for (int64_t t = 0; t < taps; ++t) {
      const typename M::Elem* xt[MR];
      for (int m = 0; m < MR; ++m) xt[m] = tap_ptrs ? tap_ptrs[m * taps + t] : x + x_off[m] + tap_offset[t];
      const typename M::Elem* wt = w + t * cin * w_step;
      for (int64_t c = 0; c < cin; ++c) {
        typename M::In wv[NV];
        for (int v = 0; v < NV; ++v) wv[v] = load_w(wt + c * w_step + v * L, v);
        // (Two forms: written as the second alone, GCC 12 left the accumulators of Winograd's
        // weight-gradient tiles in memory, 2.7x slower.)
        if constexpr (NG == 1) {
          for (int m = 0; m < MR; ++m) {
            const typename M::In xb = M::broadcast(xt[m] + c);
            for (int v = 0; v < NV; ++v) acc[m][v] = madd(xb, wv[v], acc[m][v], v);
          }
        } else {
          for (int m = 0; m < MR; ++m)
            for (int j = 0; j < NG; ++j) {
              const typename M::In xb = M::broadcast(xt[m] + c + j * GI);
              for (int v = j * GV; v < (j + 1) * GV; ++v) acc[m][v] = madd(xb, wv[v], acc[m][v], v);
            }
        }
      }
    }
  }
  // pixel_bias is added at the store (the 1x1 NCHW path's per-k bias), once per result.
  // Unrolled, so the accumulators go from their registers to the stores: as a loop, GCC 12 kept
  // them in a stack array and the bfloat16 stores (a rounding branch per vector) ran from there
  // (in-process A/B, arms in random order, Zen 5: bfloat16 channels_last 1x1 64 -> 256 N=8 1.12x,
  // 128 -> 512 @ 28 N=8 1.08x, 64 -> 64 N=1 1.07x, the stem 1.06x; float32 and AVX2 unchanged).
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const typename V::type r = pixel_bias ? V::add(acc[m][v], V::broadcast(pixel_bias + m)) : acc[m][v];
      if constexpr (kHalf >= 0) {
        if (v == kHalf) {
          H::store(out + out_off[m] + v * L, r);
          continue;
        }
      }
      if constexpr (Stream && (std::is_same_v<TOut, float> || std::is_same_v<TOut, bf16>))
        V::stream(out + out_off[m] + v * L, r);
      else
        V::store(out + out_off[m] + v * L, r);
    }
}

// conv_tile for m <= MR pixels (the last tile), choosing the instantiation at run time. Inlined
// as well: out of line, GCC 12 kept the accumulators of conv_tile_upto<12, 1> in memory, one
// store after every FMA (AVX2; the stem's dgrad at N=1: 13.9 -> 8.6 ms once inlined; 1x1 64->256
// channels_last forward 1.6 -> 0.9 ms).
template <class M, int MR, int NV, int LastL = VecF32::kLanes, int NG = 1, int GI = 0, int Walk = kTapTable,
          bool Stream = false, typename TOut>
[[gnu::always_inline]] inline void conv_tile_upto(
    int m, const typename M::Elem* x, const int64_t* x_off, const int64_t* tap_offset, int64_t taps,
    const typename M::Elem* w, int64_t cin, int64_t w_step, const float* bias, const float* pixel_bias, TOut* out,
    const int64_t* out_off, bool accumulate = false, const typename M::Elem* const* tap_ptrs = nullptr) {
  if constexpr (MR > 1) {
    if (m < MR)
      return conv_tile_upto<M, MR - 1, NV, LastL, NG, GI, Walk, Stream>(m, x, x_off, tap_offset, taps, w, cin, w_step,
                                                                  bias, pixel_bias, out, out_off, accumulate, tap_ptrs);
  }
  conv_tile<M, MR, NV, LastL, NG, GI, Walk, Stream>(x, x_off, tap_offset, taps, w, cin, w_step, bias, pixel_bias, out,
                                              out_off, accumulate, tap_ptrs);
}

// The plan of d's groups taken NG at a time (direct_conv's group bundles).
inline DirectConvPlan bundled(DirectConvPlan d, int64_t NG) {
  d.groups /= NG;
  d.out_per_group *= NG;
  return d;
}

// Output channels of a tile of NV vectors, the last of LastL lanes.
template <int NV, int LastL>
constexpr int64_t tile_channels() { return (NV - 1) * VecF32::kLanes + LastL; }

// Output pixel i of the flattened (n, p, q): where the previous pixel_offsets call stopped.
struct PixelCursor {
  int64_t i = -1, n = 0, p = 0, q = 0;
};

// x_off[mi] and y_off[mi]: where output pixel i0 + mi (flattened (n, p, q)) reads x and writes y
// (strides ys), for mi < m. The first pixel's (n, p, q) by division, unless `cursor` (may be null)
// stopped there (a thread's consecutive tiles), the next ones stepped, the offsets by additions
// along a row (one output-channel block, bfloat16 channels_last 1x1 N=8, Zen 5: 64 -> 64 @56
// 1.07x, 256 -> 64 1.09x, A/B against a division per pixel; the cursor and the additions, in-process
// A/B, arms in random order, Xeon, 2 threads: MobileNetV2's stem (27 products a pixel) N=1
// channels_last 1.04x, NCHW 1.02x, N=8 1.01x / 1.05x; the ResNet stem 1.00-1.01x).
template <typename E>
inline void pixel_offsets(const DirectConvPlan& d, const NhwcViewOf<E>& x, const int64_t ys[4], int64_t i0, int m,
                          int64_t* x_off, int64_t* y_off, PixelCursor* cursor = nullptr) {
  int64_t q, p, n;
  if (cursor && cursor->i == i0) {
    q = cursor->q, p = cursor->p, n = cursor->n;
  } else {
    const int64_t pq = i0 / d.Q;
    q = i0 % d.Q, p = pq % d.P, n = pq / d.P;
  }
  int64_t xo = n * x.sn + p * d.row_step + q * d.pixel_step, yo = n * ys[0] + p * ys[2] + q * ys[3];
  for (int mi = 0; mi < m; ++mi) {
    x_off[mi] = xo;
    y_off[mi] = yo;
    if (++q < d.Q) {
      xo += d.pixel_step;
      yo += ys[3];
      continue;
    }
    q = 0;
    if (++p == d.P) p = 0, ++n;
    xo = n * x.sn + p * d.row_step;
    yo = n * ys[0] + p * ys[2];
  }
  if (cursor) *cursor = {i0 + m, n, p, q};
}

// body.template operator()<n>() for a run-time count 1 <= n <= Max (kernels templated on a small
// channel count: few outputs, channels per group).
template <int Max, typename Body>
void with_small_count(int64_t n, const Body& body) {
  if constexpr (Max > 1) {
    if (n < Max) return with_small_count<Max - 1>(n, body);
  }
  body.template operator()<Max>();
}

// Whether an m-pixel tile's outputs y_off[0 .. m) are 2+ consecutive elements (NCHW: one plane
// row), store_tile's row_run.
inline bool is_row_run(const int64_t* y_off, int m) {
  bool run = m >= 2;
  for (int mi = 1; mi < m; ++mi) run = run && y_off[mi] == y_off[mi - 1] + 1;
  return run;
}

// Stores an m-pixel tile (float, [mi][KB] with olen <= KB channels used) at yblk + y_off[mi] + o ys[1],
// rounded to TOut. row_run: the m >= 2 pixels are consecutive output elements (is_row_run).
template <int MR, int64_t KB, typename TOut>
[[gnu::always_inline]] inline void store_tile(const float* tile, int m, int64_t olen, TOut* yblk, const int64_t* y_off, const int64_t ys[4],
                                          bool row_run) {
  // Scattered by output channel, then pixel: a tile's pixels are usually neighbours in one
  // output row, so each channel's m stores fill one line. Pixel-major, every store went to
  // another channel's plane: the ResNet stem's NCHW forward at N=1 (64 planes, 6-pixel tiles)
  // spent 40% of its time there (in-process A/B, Zen 4: 2.15 -> 1.28 ms; N=8 1.15x).
  // A run of consecutive output elements leaves as 8 x 8 transposes (channels x pixels), from
  // the float tile, rounded at the store: 8+ pixels with the last block overlapping its
  // neighbour, fewer (6-pixel tiles) with partial stores. With scalar stores, the MobileNetV2
  // stem's NCHW forward (32 channels, 12-pixel tiles) spent as long scattering as computing;
  // for 6-pixel tiles (A/B, arms in random order, 2 threads): the ResNet stem N=1 1.50 -> 1.46
  // ms float, 1.34 -> 1.25 bfloat16, N=8 bfloat16 10.2 -> 9.5; 3x3 64 @56 bfloat16 N=8 5.96 ->
  // 5.76. (Partial stores through vmaskmovps lost 12% on Zen 4: see store_first.)
  if (ys[1] != 1 && row_run) {
    int64_t o = 0;
    for (; o + 8 <= olen; o += 8) {
      if (m < 8) {
        // (min: m <= MR always; GCC, not knowing it, warned of reads past the tile)
        transpose8x8(tile + o, KB, yblk + o * ys[1] + y_off[0], ys[1], std::min(m, MR));
        continue;
      }
      for (int mi = 0; mi < m; mi += 8) {
        const int b = std::min(mi, m - 8);
        transpose8x8(tile + b * KB + o, KB, yblk + o * ys[1] + y_off[b], ys[1]);
      }
    }
    for (; o < olen; ++o)
      for (int mi = 0; mi < m; ++mi) store_from(yblk + o * ys[1] + y_off[mi], tile[mi * KB + o]);
    return;
  }
  const auto scatter = [&](const auto* t) {
    if (ys[1] == 1) {  // channels-last, a block short of KB channels (24 of 32): a run per pixel
      for (int mi = 0; mi < m; ++mi) std::copy(t + mi * KB, t + mi * KB + olen, yblk + y_off[mi]);
      return;
    }
    for (int64_t o = 0; o < olen; ++o)
      for (int mi = 0; mi < m; ++mi) yblk[o * ys[1] + y_off[mi]] = t[mi * KB + o];
  };
  if constexpr (std::is_same_v<TOut, float>) {
    scatter(tile);
  } else {  // round the tile with vectors (KB is a multiple of 8), then scatter the bits
    TOut rounded[MR * KB];
    for (int64_t i = 0; i < m * KB; i += 8) store8(rounded + i, load8(tile + i));
    scatter(rounded);
  }
}

// An unpadded channels_last x that direct_conv reads in place although the layer pads it: a
// tile whose pixels' windows all lie inside the image reads x itself (the plan's tap offsets then
// include the padding: negative where it reaches up or left); any other tile reads through a
// table of each pixel's tap addresses, a row of zeros where a tap falls outside. The padded copy
// of x had taken a fifth to a quarter of these layers' time (Xeon, 2 threads, channels_last N=1:
// 3x3/2 128 @56 1.05 ms with it, 0.82 on an input padded beforehand; 512 @28 /2 x 32 groups
// 0.245 / 0.203). (A copy of an edge tile's windows instead, a few 64-byte runs per tap, had
// cost as much as the tile: half of 512 @28 /2's tiles touch the edge.)
struct PaddedEdges {
  int64_t H, W, pad_h, pad_w, stride_h, stride_w;
  std::vector<int64_t> tap_row, tap_col;  // each plan tap's pixel, unpadded offsets from (p sh, q sw)
  std::vector<char> row_inside, col_inside;  // per output row / column: every tap reads inside

  PaddedEdges(const Conv2dProblem& p, std::vector<int64_t> rows, std::vector<int64_t> cols)
      : H(p.H), W(p.W), pad_h(p.pad_h), pad_w(p.pad_w), stride_h(p.stride_h), stride_w(p.stride_w),
        tap_row(std::move(rows)), tap_col(std::move(cols)), row_inside(p.P), col_inside(p.Q) {
    const auto [rlo, rhi] = std::minmax_element(tap_row.begin(), tap_row.end());
    const auto [clo, chi] = std::minmax_element(tap_col.begin(), tap_col.end());
    for (int64_t i = 0; i < p.P; ++i) row_inside[i] = i * stride_h - pad_h + *rlo >= 0 && i * stride_h - pad_h + *rhi < H;
    for (int64_t j = 0; j < p.Q; ++j) col_inside[j] = j * stride_w - pad_w + *clo >= 0 && j * stride_w - pad_w + *chi < W;
  }
  // Whether output pixels i0 .. i0 + m - 1 (flattened (n, p, q)) all read inside the image.
  bool tile_inside(int64_t i0, int m, int64_t P, int64_t Q) const {
    int64_t q = i0 % Q, p = i0 / Q % P;
    for (int mi = 0; mi < m; ++mi) {
      if (!row_inside[p] || !col_inside[q]) return false;
      if (++q == Q) q = 0, p = (p + 1) % P;
    }
    return true;
  }
  // table[mi taps + t]: where tap t of output pixel i0 + mi reads (x's element ch0 of its pixel), or
  // `zeros` outside the image.
  template <typename E>
  void tap_pointers(const NhwcViewOf<E>& x, int64_t i0, int m, int64_t P, int64_t Q, int64_t ch0, const E* zeros,
                    const E** table) const {
    const int64_t taps = int64_t(tap_row.size());
    int64_t q = i0 % Q, pq = i0 / Q, p = pq % P, n = pq / P;
    for (int mi = 0; mi < m; ++mi) {
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t h = p * stride_h - pad_h + tap_row[t], w = q * stride_w - pad_w + tap_col[t];
        table[mi * taps + t] = h < 0 || h >= H || w < 0 || w >= W ? zeros : x.data + n * x.sn + h * x.sh + w * x.sw + ch0;
      }
      if (++q == Q) {
        q = 0;
        if (++p == P) p = 0, ++n;
      }
    }
  }
};

// Runs a plan: output pixel (p, q) of image n reads x at n sn + p row_step + q pixel_step + tap
// offsets; wp from pack_weights with KB = tile_channels<NV, LastL>(); bias (may be null) has out_per_group * groups
// floats; pixel_bias (may be null) one float per flattened output pixel (n, p, q), added to all
// of its channels; y (storage type TOut) has element strides ys in (n, channel, h, w) order. Every
// output element is written. Work items are MR-pixel tiles of the flattened (n, p, q) pixels
// times output-channel blocks. w_step > 0: the weights are not packed but read in place, one tap
// and one group, input element i of block kb at wp + kb KB + i w_step (all KB lanes readable).
// NG > 1: d's groups are bundles of NG groups of GI = in_per_group inputs and KB / NG outputs each
// (with_group_bundle; wp from pack_weights with bundle = NG). edges (may be null): x is the
// unpadded image of a padded layer, d's tap offsets include the padding (PaddedEdges).
template <class M, int MR, int NV, int LastL = VecF32::kLanes, int NG = 1, int GI = 0, typename TOut>
void direct_conv(const DirectConvPlan& d, const NhwcViewOf<typename M::Elem>& x, const typename M::Elem* wp,
                 const float* bias, const float* pixel_bias, TOut* y, const int64_t ys[4], int64_t w_step = 0,
                 const PaddedEdges* edges = nullptr) {
  constexpr int64_t KB = tile_channels<NV, LastL>();
  const int64_t nkb = (d.out_per_group + KB - 1) / KB;
  const int64_t taps = int64_t(d.tap_offset.size()), cin = d.in_per_group, step = w_step > 0 ? w_step : KB;
  // Bias per output block, zero-padded to KB.
  std::vector<float> bias_blocks;
  if (bias) {
    bias_blocks.assign(d.groups * nkb * KB, 0.0f);
    for (int64_t g = 0; g < d.groups; ++g)
      for (int64_t o = 0; o < d.out_per_group; ++o) bias_blocks[(g * nkb + o / KB) * KB + o % KB] = bias[g * d.out_per_group + o];
  }
  const bool direct_store = ys[1] == 1;  // output channels contiguous: store tiles in place
  constexpr int64_t kStoreAhead = 2 * MR, kLineElems = 64 / int64_t(sizeof(TOut));
  const int64_t pixels = d.N * d.P * d.Q, ntiles = (pixels + MR - 1) / MR, nblocks = d.groups * nkb;
  // A layer whose input and output together outgrow what the caches keep for us (3/8 of the
  // last-level cache: 12 MB of a Zen 4/5's 32 MB) streams them from DRAM: its tiles then ask for
  // the lines they will store (below), and a 1x1 layer over dense input pixels also for the input
  // lines of the pixels kLoadAhead on, which the hardware prefetchers left the tiles waiting on
  // (in-process A/B, arms in random order, Zen 5, 2 threads, channels_last N=8: float32 64 -> 256
  // @ 56 1.24x, 256 -> 64 1.29x, 512 -> 128 @ 28 1.10x; 12, 24 or 48 pixels ahead alike;
  // bfloat16, half the bytes, 0.9x to 1.27x between runs, 1.08x in the median). Below 12 MB there
  // (256 -> 64 at N=1 and 2, 1024 -> 256 @ 14 N=8) and on strided input (1x1/2) it lost 3-14%.
  // Where the data stays in cache both cost issue slots and fill buffers: a Xeon with a 480 MB L3
  // ran without them 1.04-1.09x faster on 1x1 64 -> 256 @56 at N=1 and N=8, 1.08x on 512 -> 128
  // @28 N=8, 1.12x on 24 -> 144 @56 N=8 (A/B as above).
  constexpr int64_t kLoadAhead = 4 * MR, kInLineElems = 64 / int64_t(sizeof(typename M::Elem));
  const int64_t footprint = d.N * x.sn * int64_t(sizeof(typename M::Elem)) +
                            pixels * d.groups * d.out_per_group * int64_t(sizeof(TOut));
  const bool streamed = footprint >= host_last_level_cache_bytes() * 3 / 8;
  const bool prefetch_input = streamed && taps == 1 && d.pixel_step == x.sw;
  // From 3/4 of the last-level cache up, float tiles stored in place go out as non-temporal
  // stores (no read-for-ownership; such an output would not stay cached for the next layer
  // anyway). A/B, arms in random order, Zen 4 (32 MB L3), 2 threads, channels_last N=8, against
  // the prefetched stores: 1x1 64 -> 256 @56 forward (32.1 MB) 4.15 -> 3.83 ms, 256 -> 64's input
  // gradient (32.1 MB) 4.23 -> 3.89, the stem (30.8 MB) 8.97 -> 8.77. Nearer 3/8 they lost or won
  // little: 3x3 64 @56 N=8 input gradient (12.8 MB) 4.70 -> 5.03, its forward level, 128 -> 512
  // @28 (16 MB) 3.90 -> 3.76, conv1_1 3 -> 64 @224 N=1 (13 MB) 0.94 -> 0.90.
  // Whatever the cache, a layer of short reductions (<= 32 products a result: RGB or grey input)
  // writing 12 to 32 MB is bound by its stores: those go non-temporal too (A/B as above, a Xeon
  // whose sysfs says 480 MB of L3: conv1_1 N=1 (12.8 MB) 1.22x, N=2 1.15x, AVX2 1.12x; longer
  // reductions lost: 1x1 128 -> 512 @28 N=8 0.97x, 3x3 64 @224 N=1 0.98x). From 32 MB glibc maps
  // each output afresh, and non-temporal stores onto the new pages lost: conv1_1 N=8 0.77x.
  // bfloat16 tiles stream too, half a line a vector (A/B, arms in random order, Zen 5, 2 threads,
  // channels_last N=8 forward: grey 1 -> 64 @128 1.07-1.12x, VGG's 3 -> 64 @224 1.10x (N=2
  // 1.04x), 1x1 64 -> 256 @56 1.04x; the ResNet stem and 1x1 /2 input gradients 0.98-1.00x).
  constexpr int64_t L = VecF32::kLanes;  // the stores' alignment: whole vectors from a 64-byte y
  const int64_t out_bytes = pixels * d.groups * d.out_per_group * int64_t(sizeof(TOut));
  const bool store_bound = taps * cin <= 32 && out_bytes >= (int64_t(12) << 20) && out_bytes < (int64_t(32) << 20);
  const bool stream_out = (footprint >= host_last_level_cache_bytes() * 3 / 4 || store_bound) &&
                          (std::is_same_v<TOut, float> || std::is_same_v<TOut, bf16>) &&
                          LastL == L && direct_store && ys[3] % L == 0 && ys[2] % L == 0 && ys[0] % L == 0 &&
                          d.out_per_group % L == 0 && reinterpret_cast<uintptr_t>(y) % 64 == 0;
  // Which operand to keep in cache across consecutive items: when all the packed weights fit in
  // L2, walk every block of a pixel tile before the next tile (the activations, often much larger,
  // are then read once); otherwise a block's weights serve all the tiles in turn.
  const bool blocks_inner = nblocks * taps * cin * KB * int64_t(sizeof(float)) <= (int64_t(512) << 10);
  // A 1x1 layer of one block of outputs whose weights outgrow L1 (cin KB floats > 32 KB: 256 ->
  // 64) ran each tile over all of them, re-reading them from L2 for every MR pixels. Here a panel
  // of kPanel tiles runs one chunk of <= 32 KB of the weights at a time, accumulating in the
  // float output (in-process A/B, arms in random order, Xeon, 2 threads, channels_last N=8: 256 ->
  // 64 @56 forward 1.11-1.15x, the 64 -> 256 input gradient 1.15x; N=1 0.96-1.05x). Where there
  // are several blocks (512 -> 128 @28, 1024 -> 256 @14) or few panels per thread it lost 5-34%:
  // the blocks then re-read the panel's inputs, or the threads idle.
  constexpr int64_t kPanel = 16, kChunkBytes = int64_t(32) << 10;
  const int64_t weight_bytes = cin * KB * int64_t(sizeof(typename M::Elem));
  if (NG == 1 && std::is_same_v<TOut, float> && taps == 1 && direct_store && w_step == 0 &&
      pixel_bias == nullptr && nblocks == 1 && d.out_per_group == KB && weight_bytes > kChunkBytes &&
      ntiles >= 8 * kPanel) {
    // Input from DRAM: while running its first chunk, each tile asks for the input lines of its
    // twin in the next panel (A/B, arms in random order, Zen 5, 2 threads, channels_last float32:
    // 256 -> 64 @56 N=8 (32 MB) forward 1.25x, the 64 -> 256 input gradient 1.18x, 384 -> 64 @28
    // N=32 1.17x). At N=4 (16 MB, held by the 32 MB L3) the requests cost 5%, hence 3/4 of it.
    const bool prefetch_next_panel = footprint >= host_last_level_cache_bytes() * 3 / 4 && d.pixel_step == x.sw;
    const int64_t nchunks = (weight_bytes + kChunkBytes - 1) / kChunkBytes;
    const int64_t chunk = ((cin + nchunks - 1) / nchunks + 15) / 16 * 16;
    const int64_t npanels = (ntiles + kPanel - 1) / kPanel;
    const float* bblk = bias ? bias_blocks.data() : nullptr;
    parallel_for(0, npanels, 1, [&](int64_t b, int64_t e) {
      int64_t x_off[kPanel][MR], y_off[kPanel][MR];
      int ms[kPanel];
      for (int64_t panel = b; panel < e; ++panel) {
        const int64_t t0 = panel * kPanel, nt = std::min(kPanel, ntiles - t0);
        for (int64_t t = 0; t < nt; ++t) {
          const int64_t i0 = (t0 + t) * MR;
          ms[t] = int(std::min<int64_t>(MR, pixels - i0));
          pixel_offsets(d, x, ys, i0, ms[t], x_off[t], y_off[t]);
        }
        for (int64_t c0 = 0; c0 < cin; c0 += chunk) {
          const int64_t len = std::min(chunk, cin - c0);
          for (int64_t t = 0; t < nt; ++t) {
            if (prefetch_next_panel && c0 == 0 && panel + 1 < e)
              for (int mi = 0; mi < ms[t]; ++mi)
                for (int64_t l = 0; l < cin; l += kInLineElems)
                  __builtin_prefetch(x.data + x_off[t][mi] + kPanel * MR * d.pixel_step + l);
            conv_tile_upto<M, MR, NV, LastL>(ms[t], x.data + c0, x_off[t], d.tap_offset.data(), 1, wp + c0 * KB, len, KB,
                                             bblk, nullptr, y, y_off[t], c0 > 0);
          }
        }
      }
    });
    return;
  }
  // edges: the zeros an edge tile's taps outside the image read (NG cin elements a tap).
  const std::vector<typename M::Elem> zeros(edges ? NG * cin : 0, typename M::Elem{});
  // Output channels apart (NCHW): an item is a run of about 48 consecutive pixels (whole tiles)
  // of one block, kept in a float buffer and stored at the end as runs along the output's rows
  // (store_tile), so that a line of a plane is written whole at once where the tiles wrote a
  // part-line into each of their KB planes and came back for the rest. In-process A/B against
  // tile-by-tile stores, arms in random order, Zen 5, 2 threads, NCHW N=8, bfloat16 / float32:
  // MobileNetV2's stem 3 -> 32 /2 1.11x / 1.02x, the ResNet stem 1.09x, 1x1 256 -> 512 /2 1.08x /
  // 1.04x, 5x5 64 @64's input gradient 1.06x / 1.01x; 3x3 /2 layers 0.98-1.03x.
  constexpr int64_t kRunTiles = std::max<int64_t>(1, 48 / MR);
  const int64_t run_tiles = direct_store ? 1 : kRunTiles, nruns = (ntiles + run_tiles - 1) / run_tiles;
  parallel_for(0, nblocks * nruns, direct_store ? 4 : 1, [&](int64_t b, int64_t e) {
    float tile[kRunTiles * MR * KB];
    int64_t x_off[kRunTiles * MR], y_off[kRunTiles * MR], tile_off[MR], offsets_of = -1;  // of run offsets_of
    bool inside[kRunTiles];
    PixelCursor cursor;
    for (int m = 0; m < MR; ++m) tile_off[m] = m * KB;
    int64_t table_of = -1, table_tile = -1;  // the group and pixel tile whose tap addresses `table` holds
    std::vector<const typename M::Elem*> table(edges ? MR * taps : 0);
    for (int64_t item = b; item < e; ++item) {
      const int64_t gk = blocks_inner ? item % nblocks : item / nruns;
      const int64_t run = blocks_inner ? item / nblocks : item % nruns;
      const int64_t g = gk / nkb, o0 = (gk % nkb) * KB, olen = std::min(KB, d.out_per_group - o0);
      const int64_t t0 = run * run_tiles, nt = std::min(run_tiles, ntiles - t0);
      const int64_t pixels_run = std::min(nt * MR, pixels - t0 * MR);
      if (run != offsets_of) {  // consecutive items often share the pixel tiles (blocks_inner): their
                                // divisions cost ~15% of a 1x1 layer with 64 input channels
        for (int64_t t = 0; t < nt; ++t) {
          const int64_t i0 = (t0 + t) * MR;
          const int m = int(std::min<int64_t>(MR, pixels - i0));
          pixel_offsets(d, x, ys, i0, m, x_off + t * MR, y_off + t * MR, &cursor);
          inside[t] = !edges || edges->tile_inside(i0, m, d.P, d.Q);
        }
        offsets_of = run;
        table_tile = -1;
      }
      const typename M::Elem* xg = x.data + g * NG * cin;
      const typename M::Elem* wblk = wp + gk * (w_step > 0 ? KB : taps * cin * KB);
      const float* bblk = bias ? bias_blocks.data() + gk * KB : nullptr;
      TOut* yblk = y + (g * d.out_per_group + o0) * ys[1];
      for (int64_t t = 0; t < nt; ++t) {
        const int64_t i0 = (t0 + t) * MR;
        const int m = int(std::min<int64_t>(MR, pixels - i0));
        const int64_t* xo = x_off + t * MR;
        const int64_t* yo = y_off + t * MR;
        const typename M::Elem* const* tap_ptrs = nullptr;
        if (!inside[t]) {
          if (table_tile != t0 + t || table_of != g) {
            edges->tap_pointers(x, i0, m, d.P, d.Q, g * NG * cin, zeros.data(), table.data());
            table_tile = t0 + t, table_of = g;
          }
          tap_ptrs = table.data();
        }
        const float* pblk = pixel_bias ? pixel_bias + i0 : nullptr;
        if (direct_store && olen == KB) {
          // Streamed: ask now for the lines this block's tile kStoreAhead pixels on will store: the
          // stores' read-for-ownership misses otherwise stall the tiles once the output outgrows the
          // caches (A/B, arms in random order, channels_last, N=8, Zen: 1x1 64 -> 256 @56 6.26 ->
          // 5.58 ms, 24 -> 144 @56 1.65 -> 1.36; 2, 4 or 8 tiles ahead alike). The lines are those
          // of the pixels kStoreAhead on along a dense row; elsewhere they are wasted.
          if (streamed && i0 + kStoreAhead + MR <= pixels) {
            if (!stream_out)  // (non-temporal stores take no line)
              for (int mi = 0; mi < m; ++mi)
                for (int64_t l = 0; l < KB; l += kLineElems)
                  __builtin_prefetch(yblk + yo[mi] + kStoreAhead * ys[3] + l, 1);
            if (prefetch_input && gk == 0)  // once per pixel tile: its first block
              for (int mi = 0; mi < m; ++mi)
                for (int64_t l = 0; l < cin; l += kInLineElems)
                  __builtin_prefetch(xg + xo[mi] + kLoadAhead * d.pixel_step + l);
          }
          if (stream_out)
            conv_tile_upto<M, MR, NV, LastL, NG, GI, kTapTable, true>(m, xg, xo, d.tap_offset.data(), taps, wblk, cin,
                                                                       step, bblk, pblk, yblk, yo, false, tap_ptrs);
          else
            conv_tile_upto<M, MR, NV, LastL, NG, GI>(m, xg, xo, d.tap_offset.data(), taps, wblk, cin, step, bblk, pblk,
                                                     yblk, yo, false, tap_ptrs);
          continue;
        }
        conv_tile_upto<M, MR, NV, LastL, NG, GI>(m, xg, xo, d.tap_offset.data(), taps, wblk, cin, step, bblk, pblk,
                                                 tile + t * MR * KB, tile_off, false, tap_ptrs);
      }
      if (direct_store) {  // a block short of KB channels (24 of 32), one tile
        if (olen < KB) store_tile<kRunTiles * MR, KB>(tile, int(pixels_run), olen, yblk, y_off, ys, false);
        continue;
      }
      // The run's pixels in stretches of consecutive output elements (a plane row's), each stored
      // as one (store_tile's row_run).
      for (int64_t s0 = 0, s1; s0 < pixels_run; s0 = s1) {
        for (s1 = s0 + 1; s1 < pixels_run && y_off[s1] == y_off[s1 - 1] + 1; ++s1) {
        }
        store_tile<kRunTiles * MR, KB>(tile + s0 * KB, int(s1 - s0), olen, yblk, y_off + s0, ys, s1 - s0 >= 2);
      }
    }
    if (stream_out) stream_fence();
  });
}

// direct_conv for conv2d_fprop_pixel_lanes' input gradient of a 1x1, W^T read in place: the
// plan's pixels are W^T's rows, one element apart, so a tile's broadcasts come from one pointer,
// one element a tap (conv_tile's kRowTaps). Each tap steps a whole row of W (8 KB at res5's 2048
// channels: a new line and a new page every tap), and with the tap table GCC rebuilt MR pointers
// per tap; the lines are where the rest of the time goes:
//  - one block of lanes (AVX-512: 48 of a 7 x 7 plane): the tile walks the taps once, asking for
//    the line kTapsAhead taps on;
//  - several (AVX2: 2 x 24): each chunk of kChunk taps runs every block before the next chunk,
//    which then finds the chunk's lines in L1 (a pass per block had fetched them again each
//    time); the sums wait in the tile buffer between chunks. An item is the tiles whose rows
//    share a line (AVX2's 4 rows a tile: 4 tiles), each chunk run by all of them: one tile at a
//    time had fetched each line from L2 once per tile (A/B, arms in random order, AVX2, N=1,
//    NCHW: 512 -> 2048 @7 1.02 -> 0.82 ms, 2048 -> 512 0.80 -> 0.75, N=2 1.45 -> 1.32; 960 ->
//    160 level).
// In-process A/B against direct_conv (and AVX2's 6 x 2 plane tile before with_plane_tile's 4 x
// 3), arms in random order, 2 threads, N=1, 1x1 input gradients @7: AVX2 NCHW 2048 -> 512 1.21 ->
// 0.78 ms, 512 -> 2048 1.34 -> 0.82, channels_last 2048 -> 512 1.43 -> 0.88, 960 -> 160 0.18 ->
// 0.12; AVX-512 0.66 -> 0.55, 0.59 -> 0.51, channels_last 0.60 -> 0.55, 960 -> 160 0.112 ->
// 0.099; N=8 and 14 x 14 planes level to 1.05x. (Chunks lost 3-13% on AVX-512's single block;
// the prefetch lost 10-24% in AVX2's chunks.)
// Needs the plan of conv2d_fprop_pixel_lanes (N = P = 1, one group, pixel_step 1, one element a
// tap); out_per_group may end in a partial block only where wp is packed (w_step 0, zero-padded).
template <class M, int MR, int NV>
void direct_conv_row_taps(const DirectConvPlan& d, const NhwcViewOf<typename M::Elem>& x, const typename M::Elem* wp,
                          const float* pixel_bias, float* y, const int64_t ys[4], int64_t w_step) {
  constexpr int64_t KB = NV * VecF32::kLanes, kChunk = 64;
  const int64_t taps = int64_t(d.tap_offset.size()), pixels = d.Q, nblocks = (d.out_per_group + KB - 1) / KB;
  const int64_t step = w_step > 0 ? w_step : KB, block_step = w_step > 0 ? KB : taps * KB;
  if (nblocks == 1) {
    parallel_for(0, (pixels + MR - 1) / MR, 1, [&](int64_t b, int64_t e) {
      float tile[MR * KB];
      int64_t x_off[MR], y_off[MR], tile_off[MR];
      for (int m = 0; m < MR; ++m) tile_off[m] = m * KB;
      for (int64_t i = b; i < e; ++i) {
        const int64_t i0 = i * MR;
        const int m = int(std::min<int64_t>(MR, pixels - i0));
        pixel_offsets(d, x, ys, i0, m, x_off, y_off);
        const float* pblk = pixel_bias ? pixel_bias + i0 : nullptr;
        conv_tile_upto<M, MR, NV, VecF32::kLanes, 1, 0, kRowTapsAhead>(m, x.data, x_off, d.tap_offset.data(), taps, wp, 1,
                                                                      step, nullptr, pblk, tile, tile_off);
        store_tile<MR, KB>(tile, m, std::min(KB, d.out_per_group), y, y_off, ys, is_row_run(y_off, m));
      }
    });
    return;
  }
  // Several blocks: an item is the kGroup tiles whose rows share W^T's lines.
  constexpr int64_t kGroup = std::max<int64_t>(1, 64 / (MR * int64_t(sizeof(float))));
  const int64_t ntiles = (pixels + MR - 1) / MR;
  parallel_for(0, (ntiles + kGroup - 1) / kGroup, 1, [&](int64_t b, int64_t e) {
    std::vector<float> tile(kGroup * nblocks * MR * KB);  // tile j's block gk: m x KB sums at (j nblocks + gk) MR KB
    int64_t x_off[kGroup][MR], y_off[kGroup][MR], tile_off[MR];
    int ms[kGroup] = {};
    for (int m = 0; m < MR; ++m) tile_off[m] = m * KB;
    for (int64_t g = b; g < e; ++g) {
      const int64_t t0 = g * kGroup, tn = std::min(kGroup, ntiles - t0);
      for (int64_t j = 0; j < tn; ++j) {
        ms[j] = int(std::min<int64_t>(MR, pixels - (t0 + j) * MR));
        pixel_offsets(d, x, ys, (t0 + j) * MR, ms[j], x_off[j], y_off[j]);
      }
      for (int64_t c0 = 0; c0 < taps; c0 += kChunk) {
        const int64_t len = std::min(kChunk, taps - c0);
        const bool last = c0 + len == taps;
        for (int64_t j = 0; j < tn; ++j) {
          const float* pblk = pixel_bias && last ? pixel_bias + (t0 + j) * MR : nullptr;
          for (int64_t gk = 0; gk < nblocks; ++gk)
            conv_tile_upto<M, MR, NV, VecF32::kLanes, 1, 0, kRowTaps>(
                ms[j], x.data, x_off[j], d.tap_offset.data() + c0, len, wp + gk * block_step + c0 * step, 1, step,
                nullptr, pblk, tile.data() + (j * nblocks + gk) * MR * KB, tile_off, c0 > 0);
        }
      }
      for (int64_t j = 0; j < tn; ++j) {
        const bool row_run = is_row_run(y_off[j], ms[j]);
        for (int64_t gk = 0; gk < nblocks; ++gk)
          store_tile<MR, KB>(tile.data() + (j * nblocks + gk) * MR * KB, ms[j], std::min(KB, d.out_per_group - gk * KB),
                             y + gk * KB * ys[1], y_off[j], ys, row_run);
      }
    }
  });
}

// The register tile for this ISA. Wide tiles (NV vectors of output channels) cover large
// out_per_group in few blocks; but a block's weights (taps x in_per_group x KB floats) are re-read
// from cache by every tile, so where they would outgrow the L2 (~1 MB per Zen 4 core) a narrower,
// taller tile halves them and doubles the FMAs per weight byte. Widths that are whole blocks of
// 3 vectors but not of 4 (MobileNetV2's 96 and 144) take 8 x 3: 144 in 64-lane blocks wasted a
// third of the FMAs on the last block's empty lanes (A/B, channels_last, N=1: 1x1 24 -> 144 @56
// 0.172 -> 0.131 ms, 32 -> 96 0.156 -> 0.114; 3x3 96 -> 144 @28 0.66 -> 0.53).
// With kHalfTiles (callers whose body takes a third parameter, LastL), AVX-512 widths of 8 + 16 n
// channels up to 56 (MobileNetV2's 24) take a tile whose last vector is a half one (conv_tile):
// 24 in 32-lane blocks wasted a quarter of the FMAs and left through a scratch tile (A/B, arms
// in random order, channels_last: 1x1 144 -> 24 @56 N=1 0.190 -> 0.160 ms, N=8 2.34 -> 2.11;
// 96 -> 24 N=8 1.41 -> 1.21; dgrad of 24 -> 144 N=1 0.197 -> 0.169, N=8 2.40 -> 2.19).
template <bool kHalfTiles = false, typename Body>
void with_tile(int64_t out_per_group, int64_t taps_x_in, const Body& body) {
  constexpr int L = VecF32::kLanes;
  const bool big_weights = taps_x_in * 4 * L * 4 > (int64_t(768) << 10);
#if defined(__AVX512F__)
  if constexpr (kHalfTiles) {
    if (out_per_group % L == L / 2 && out_per_group < 4 * L) {
      switch (out_per_group / L) {
        case 0: return body.template operator()<14, 1, L / 2>();
        case 1: return body.template operator()<12, 2, L / 2>();
        case 2: return body.template operator()<8, 3, L / 2>();
        default: return body.template operator()<6, 4, L / 2>();
      }
    }
  }
  if (out_per_group % (3 * L) == 0 && out_per_group % (4 * L) != 0 && !big_weights)
    return body.template operator()<8, 3>();
  if (out_per_group > 2 * L && !big_weights) return body.template operator()<6, 4>();
  if (out_per_group > L) return body.template operator()<12, 2>();
  return body.template operator()<14, 1>();
#else
  if (out_per_group > L && !big_weights) return body.template operator()<6, 2>();
  return body.template operator()<12, 1>();
#endif
}

// Groups of one vector of output channels (two on AVX-512) and one or two vectors of inputs
// (ResNeXt's 16 and 32 channels per group): NG consecutive groups share one MR x NV tile, group
// j's outputs in vectors [j NV / NG, (j + 1) NV / NG), and body.template operator()<MR, NV, NG,
// GI>() runs them (GI: inputs per group, the offset between the groups' broadcasts). Returns false
// where it does not apply. Alone, such groups ran 14 x 1 and 12 x 2 tiles, whose 12-14 pixel
// pointers GCC kept in xmm registers and on the stack: perf annotate showed vmovq / stack loads
// beside every few FMAs, ~1 FMA per cycle (3x3 512 @14, 32 groups of 16, N=8 channels_last).
// Bundled (A/B, arms in random order, 2 threads, channels_last, fwd / dgrad): 512 @14 x 32 groups
// N=8 1.18 / 1.18x, N=1 1.08 / 1.16x; 1024 @7 N=8 1.21 / 1.44x, N=1 0.94 / 1.05x.
template <class M, typename Body>
bool with_group_bundle(int64_t groups, int64_t in_per_group, int64_t out_per_group, const Body& body) {
  constexpr int L = VecF32::kLanes;
  if constexpr (M::kChannels != 1) {
    return false;
  } else {
#if defined(__AVX512F__)
    constexpr int kNV = 4;
#else
    constexpr int kNV = 2;
#endif
    const auto with_inputs = [&]<int NV, int NG>() {
      if (groups % NG != 0) return false;
      if (in_per_group == L) return body.template operator()<6, NV, NG, L>(), true;
      if (in_per_group == 2 * L) return body.template operator()<6, NV, NG, 2 * L>(), true;
      return false;
    };
    if (out_per_group == L) return with_inputs.template operator()<kNV, kNV>();
    if (out_per_group == 2 * L && kNV == 4) return with_inputs.template operator()<kNV, 2>();
    return false;
  }
}

// Row tiles that reuse each input broadcast across the kernel's width (groups of 16 or 32 output
// channels on AVX-512, 8 on AVX2). In a group of one vector of outputs every broadcast input feeds one FMA per
// tap, and the group-bundle tiles (with_group_bundle) load as often as they multiply: 28 loads per
// 24 FMAs, ~78% of the FMA peak even from L1 (a kernel-shaped loop, Xeon with AMX). Along a row,
// input column j serves output pixels j, j - 1 and j - 2 through the taps s = 0, 1, 2: a tile of
// MR consecutive output pixels of one row takes MR + 2 broadcasts per (kernel row, input channel)
// and 3 MR NV FMAs (MR = 14, NV = 1: 19 loads per 42 FMAs, ~97% of the peak in the same loop).
// The vdpbf16ps engine's tiles (DotBf16) had been one broadcast per multiply-add too: on Zen 5 a
// loop of them ran at 57% of its peak, a broadcast load a cycle, where 7 x 2 ran at 95% (a
// kernel-shaped loop, one thread). Its row tiles, in-process A/B against them, arms in random
// order, Zen 5, 2 threads, bfloat16 N=8 channels_last / NCHW: ResNeXt 512 @14 g32 forward 1.25x /
// 1.15x, input gradient 1.22x / 1.12x; 1024 @7 1.02x; 512 @28 /2 forward 1.12x / 1.07x; one
// group 16 -> 16 @112 1.30x / 1.08x, input gradient 1.47x / 1.30x.
// conv2d_grouped.h's grouped_lanes_row_conv runs the same rows for 2-8 outputs a group.

// Whether d's taps are rows of 3 columns one pixel apart (dilation 1 and stride col_stride along
// the row), read in packed-weight order (r, s), over output rows of 7+ pixels: the row tiles' plans.
inline bool three_tap_rows(const DirectConvPlan& d, int64_t x_sw, int64_t col_stride = 1) {
  const int64_t taps = int64_t(d.tap_offset.size());
  if (d.pixel_step != col_stride * x_sw || d.Q < 7 || taps == 0 || taps % 3 != 0) return false;
  for (int64_t t = 0; t < taps; t += 3)
    if (d.tap_offset[t + 1] != d.tap_offset[t] + x_sw || d.tap_offset[t + 2] != d.tap_offset[t] + 2 * x_sw)
      return false;
  return true;
}

// The row tiles' column stride for a plan (0: they do not apply): three_tap_rows plans of one
// vector of outputs a group (AVX-512: 16, AVX2: 8) or, on AVX-512, two, at column stride 1, and
// at column stride 2 (2 MR + 1 broadcasts for 3 MR FMAs, where the group bundles took one per
// FMA; in-process A/B, arms in random order, Zen 4, 2 threads, 32 groups: AVX2 256 @56 /2 N=1
// NCHW 1.17-1.28x, channels_last 1.15x, N=8 1.15x and 1.0-1.6x; AVX-512 NCHW 512 @28 /2 1.25x,
// 1024 @14 /2 1.23x, but channels_last 0.62-0.82x: there the tiles read x in place, see
// conv2d_fprop_direct). AVX2's 16 registers hold a 4 x 2 tile at most: 512 @14
// g32 (16 a group) on it ran as fast as the 6 x 2 direct tiles at N=1 and 1.2x slower at N=8
// (in-process A/B, arms in random order, Zen 4, 2 threads, channels_last).
inline int row_reuse_stride(const DirectConvPlan& d, int64_t x_sw) {
  constexpr int64_t L = VecF32::kLanes;
  if (d.out_per_group != L && !(L == 16 && d.out_per_group == 2 * L)) return 0;
  if (three_tap_rows(d, x_sw)) return 1;
  if (three_tap_rows(d, x_sw, 2)) return 2;
  return 0;
}

inline bool row_reuse_applies(const DirectConvPlan& d, int64_t x_sw) { return row_reuse_stride(d, x_sw) > 0; }

// acc[m][v] = bias + sum over kernel rows r, input channels c and taps s of x(row r, column m + s,
// c) w(r, s, c, vector v), for the MR pixels of one output row; x + row_offset[r] is kernel row
// r's first column, ps the pixel step (PS > 0: that constant, so that the MR + 2 broadcasts take
// one pointer; a run-time step took one each, spilled to xmm: 74% of the FMA peak against 85% on
// 512 @14 g32 at one thread); w packed [r][s][c][NV L]. Stored at out + m out_step.
// SW = 2: column stride 2, the row's 2 MR + 1 columns ps apart: column i serves pixel
// i / 2 through tap i % 2 and, even, pixel i / 2 - 1 through tap 2.
// SW = kDgradStride2: the input gradient of a convolution of column stride 2, 3 taps and one
// column of padding, both column phases at once (x is dy, out dx): dy column i of the row serves
// dx pixels 2i (tap 1), 2i - 1 (tap 0) and 2i + 1 (tap 2), MR / 2 + 1 broadcasts for 3 MR / 2
// FMAs, each tile a run of MR dx pixels (the phases one at a time: 1, 2 or 4 taps a tile, every
// other pixel stored).
constexpr int kDgradStride2 = -2;
template <class M, int MR, int NV, int PS = 0, int SW = 1, typename TOut>
[[gnu::always_inline]] inline void conv_row_tile(const typename M::Elem* x, const int64_t* row_offset, int64_t rows,
                                                 int64_t ps_rt, const typename M::Elem* w, int64_t cin,
                                                 const float* bias, TOut* out, int64_t out_step) {
  const int64_t ps = PS > 0 ? PS : ps_rt;
  using V = VecF32;
  using In = typename M::In;
  constexpr int L = V::kLanes, KB = NV * L;
  typename V::type acc[MR][NV];
  for (int v = 0; v < NV; ++v) {
    const typename V::type b = bias ? V::load(bias + v * L) : V::zero();
    for (int m = 0; m < MR; ++m) acc[m][v] = b;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const typename M::Elem* xr = x + row_offset[r];
    const typename M::Elem* wr = w + r * 3 * cin * KB;
    for (int64_t c = 0; c < cin; ++c) {
      In w0[NV], w1[NV], w2[NV];
      for (int v = 0; v < NV; ++v) {
        w0[v] = M::load(wr + c * KB + v * L);
        w1[v] = M::load(wr + (cin + c) * KB + v * L);
        w2[v] = M::load(wr + (2 * cin + c) * KB + v * L);
      }
      if constexpr (SW == kDgradStride2) {
        static_assert(MR % 2 == 0, "a transposed tile holds whole pairs of dx columns");
#pragma GCC unroll 32
        for (int j = 0; j <= MR / 2; ++j) {
          const In b = M::broadcast(xr + j * ps + c);
          for (int v = 0; v < NV; ++v) {
            if (2 * j < MR) acc[2 * j][v] = M::madd(b, w1[v], acc[2 * j][v]);
            if (j >= 1) acc[2 * j - 1][v] = M::madd(b, w0[v], acc[2 * j - 1][v]);
            if (2 * j + 1 < MR) acc[2 * j + 1][v] = M::madd(b, w2[v], acc[2 * j + 1][v]);
          }
        }
        continue;
      }
      if constexpr (SW == 2) {  // column i: pixel i / 2 through tap i % 2, and even, pixel i / 2 - 1 through tap 2
#pragma GCC unroll 32
        for (int i = 0; i < 2 * MR + 1; ++i) {
          const In b = M::broadcast(xr + i * ps + c);
          for (int v = 0; v < NV; ++v) {
            if (i % 2 == 0 && i / 2 < MR) acc[i / 2][v] = M::madd(b, w0[v], acc[i / 2][v]);
            if (i % 2 == 1) acc[i / 2][v] = M::madd(b, w1[v], acc[i / 2][v]);
            if (i % 2 == 0 && i >= 2) acc[i / 2 - 1][v] = M::madd(b, w2[v], acc[i / 2 - 1][v]);
          }
        }
        continue;
      }
#pragma GCC unroll 32
      for (int j = 0; j < MR + 2; ++j) {
        const In b = M::broadcast(xr + j * ps + c);
        for (int v = 0; v < NV; ++v) {
          if (j < MR) acc[j][v] = M::madd(b, w0[v], acc[j][v]);
          if (j >= 1 && j - 1 < MR) acc[j - 1][v] = M::madd(b, w1[v], acc[j - 1][v]);
          if (j >= 2) acc[j - 2][v] = M::madd(b, w2[v], acc[j - 2][v]);
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) V::store(out + m * out_step + v * L, acc[m][v]);
}

// Runs a plan that row_reuse_applies to with conv_row_tile<MR, NV, PS> (NV L = out_per_group):
// group g's inputs at x + g group_step, wp from pack_weights with KB = NV L, bias (may be null)
// out_per_group * groups floats, y (storage TOut, strides ys). A row's last tile overlaps its
// neighbour where MR does not divide Q (the shared pixels are computed twice, alike). Work items
// are (row tile, group). SW = kDgradStride2: see conv_row_tile (tile q0 reads x from column q0 / 2).
// edges (may be null; one group, x.sw == cin, not kDgradStride2): x is the unpadded image of a
// padded layer, d's tap offsets include the padding (PaddedEdges); a tile whose window reaches
// into the padding runs on a copy of that window, zeros outside the image.
template <class M, int MR, int NV, int PS, int SW = 1, typename TOut>
void row_reuse_conv(const DirectConvPlan& d, const NhwcViewOf<typename M::Elem>& x, int64_t group_step,
                    const typename M::Elem* wp, const float* bias, TOut* y, const int64_t ys[4],
                    const PaddedEdges* edges = nullptr) {
  using E = typename M::Elem;
  constexpr int64_t KB = NV * VecF32::kLanes;
  const int64_t cin = d.in_per_group, taps = int64_t(d.tap_offset.size()), rows = taps / 3, G = d.groups;
  std::vector<int64_t> row_offset(rows);
  for (int64_t r = 0; r < rows; ++r) row_offset[r] = d.tap_offset[3 * r];
  // An edge tile's window: rows x window_cols pixels of cin elements, its rows window_row apart.
  constexpr int64_t window_cols = SW == 2 ? 2 * MR + 1 : MR + 2;
  const int64_t window_row = window_cols * cin;
  std::vector<int64_t> window_offset(rows);
  for (int64_t r = 0; r < rows; ++r) window_offset[r] = r * window_row;
  const int64_t segments = (d.Q + MR - 1) / MR, ntiles = d.N * d.P * segments;
  const bool direct_store = ys[1] == 1;
  const int64_t column_step = SW == 2 ? d.pixel_step / 2 : d.pixel_step;  // between a row's input columns
  // As in direct_conv over a channels-last x: where all the packed weights fit in L2, every
  // group of a row tile runs before the next tile; otherwise a group's weights serve all its
  // tiles in turn. Over group blocks, always the latter: each thread then runs the range of
  // groups whose blocks (pack_group_blocks) and weights (pack_weights) it packed, from its own L2
  // (A/B, arms in random order, Xeon, 2 threads: 512 @14 g32 N=1 1.38-1.40x against groups
  // inner, N=8 1.05-1.14x; 1024 @7 1.00-1.04x).
  const bool groups_inner =
      group_step == cin && G * taps * cin * KB * int64_t(sizeof(float)) <= (int64_t(512) << 10);
  parallel_for(0, ntiles * G, 4, [&](int64_t b, int64_t e) {
    float tile[MR * KB];
    int64_t y_off[MR];
    for (int m = 0; m < MR; ++m) y_off[m] = m * ys[3];
    std::vector<E> window(edges ? rows * window_row : 0);
    for (int64_t item = b; item < e; ++item) {
      const int64_t g = groups_inner ? item % G : item / ntiles, t = groups_inner ? item / G : item % ntiles;
      const int64_t np = t / segments;
      const int64_t q0 = std::min((t % segments) * MR, d.Q - MR), p = np % d.P, n = np / d.P;
      const int64_t first = SW == kDgradStride2 ? q0 / 2 : q0;
      const E* xt = x.data + n * x.sn + p * d.row_step + first * d.pixel_step + g * group_step;
      const int64_t* xt_rows = row_offset.data();
      if (edges && !(edges->row_inside[p] && edges->col_inside[q0] && edges->col_inside[q0 + MR - 1])) {
        // One run per row: the window's pixels inside the image are consecutive in x (SW = 2 too,
        // its columns column_step = x.sw apart).
        const int64_t w0 = q0 * edges->stride_w - edges->pad_w;
        const int64_t j_lo = std::clamp<int64_t>(-w0, 0, window_cols);
        const int64_t j_hi = std::clamp<int64_t>(edges->W - w0, j_lo, window_cols);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t h = p * edges->stride_h - edges->pad_h + edges->tap_row[3 * r];
          E* out = window.data() + r * window_row;
          if (h < 0 || h >= edges->H) {
            std::fill(out, out + window_row, E{});
            continue;
          }
          const E* src = x.data + n * x.sn + h * x.sh + (w0 + j_lo) * cin;
          std::fill(out, out + j_lo * cin, E{});
          std::copy(src, src + (j_hi - j_lo) * cin, out + j_lo * cin);
          std::fill(out + j_hi * cin, out + window_row, E{});
        }
        xt = window.data();
        xt_rows = window_offset.data();
      }
      const E* wg = wp + g * taps * cin * KB;
      const float* bg = bias ? bias + g * KB : nullptr;
      TOut* yt = y + n * ys[0] + p * ys[2] + q0 * ys[3] + g * KB * ys[1];
      if (direct_store) {
        conv_row_tile<M, MR, NV, PS, SW>(xt, xt_rows, rows, column_step, wg, cin, bg, yt, ys[3]);
        continue;
      }
      conv_row_tile<M, MR, NV, PS, SW>(xt, xt_rows, rows, column_step, wg, cin, bg, tile, KB);
      store_tile<MR, KB>(tile, MR, d.out_per_group, yt, y_off, ys, ys[3] == 1);
    }
  });
}

// Runs d with row_reuse_conv where row_reuse_applies (returns false otherwise): 14-pixel tiles
// for one vector per group on rows of 14+ pixels, else 7 (two vectors: 8 on NCHW rows of a
// multiple of 8, else 7; AVX2: 7). edges: see row_reuse_conv. Group g's inputs start g
// group_step elements after group 0's (-1: d.in_per_group, a channels-last x). Pixels NV L
// channels apart (group blocks of as many inputs as outputs) take tiles compiled for that step.
// Either policy: the dot engine's tiles broadcast channel pairs of a channels-last copy (group
// blocks of pairs, their pixels' runs of 32 bytes, cost more to pack than their constant step
// gained: 512 @14 g32 channels_last 0.82x, NCHW level).
// dgrad_pairs: a kDgradStride2 plan (even d.Q of 8+; tiles of 14 or 6 pixels for one vector, 8
// for two; AVX2 8).
// AVX2 (8 outputs a group, ResNeXt's 256 @28 and 256 @56 /2; these had run direct_conv's group
// bundles, a broadcast per FMA): in-process A/B, arms in random order, Zen 4, 2 threads, 32
// groups: 256 @28 N=1 NCHW fwd / dgrad 1.28 / 1.25x, channels_last 1.04-1.20x, N=8 1.20 / 1.27x;
// the input gradient of 256 @56 /2 (column pairs) N=1 NCHW 2.6x, channels_last 1.05x, N=8 1.31x.
template <class M, typename T, typename TOut>
bool run_row_reuse(const DirectConvPlan& d, const NhwcViewOf<typename M::Elem>& x, const WeightSource<T>& weights,
                   const float* bias, TOut* y, const int64_t ys[4], int64_t group_step = -1,
                   bool dgrad_pairs = false, const PaddedEdges* edges = nullptr) {
  const int column_stride = row_reuse_stride(d, x.sw);
  if (column_stride == 0) return false;
  constexpr int64_t L = VecF32::kLanes;
  const int64_t gs = group_step >= 0 ? group_step : d.in_per_group;
  const auto run = [&]<int MR, int NV>() {
    const auto wp = pack_weights<M>(d, NV * L, weights);
    constexpr int kStep = NV * L / M::kChannels;  // a pixel of as many inputs as outputs
    if (column_stride == 2) {
      if (d.pixel_step == 2 * kStep) row_reuse_conv<M, MR, NV, kStep, 2>(d, x, gs, wp.data(), bias, y, ys, edges);
      else row_reuse_conv<M, MR, NV, 0, 2>(d, x, gs, wp.data(), bias, y, ys, edges);
      return;
    }
    if (d.pixel_step == kStep) row_reuse_conv<M, MR, NV, kStep>(d, x, gs, wp.data(), bias, y, ys, edges);
    else row_reuse_conv<M, MR, NV, 0>(d, x, gs, wp.data(), bias, y, ys, edges);
  };
  if (dgrad_pairs) {
    const auto run_pairs = [&]<int MR, int NV>() {
      const auto wp = pack_weights<M>(d, NV * L, weights);
      row_reuse_conv<M, MR, NV, 0, kDgradStride2>(d, x, gs, wp.data(), bias, y, ys);
    };
#if defined(__AVX512F__)
    if (d.out_per_group == 2 * L && d.Q >= 8) run_pairs.template operator()<8, 2>();
    else if (d.out_per_group == L && d.Q >= 14) run_pairs.template operator()<14, 1>();
    else if (d.out_per_group == L && d.Q >= 8) run_pairs.template operator()<6, 1>();
    else return false;
#else
    if (d.Q >= 8) run_pairs.template operator()<8, 1>();  // (MR + 3 weights + a broadcast: 12 of 16 registers)
    else return false;
#endif
    return true;
  }
#if defined(__AVX512F__)
  // NCHW rows of a length 8 divides take 8-pixel tiles: each output channel's pixels then leave
  // as one whole 8 x 8 transpose, where 7 took partial stores (store_tile), a quarter of the
  // stem's samples (in-process A/B, arms in random order, Xeon, 2 threads, NCHW: MobileNetV2's
  // stem N=8 1.20x, N=1 1.24x, 32 -> 32 @112 1.08x; 32 a group @28 and 1024 @14 g32 level).
  if (d.out_per_group == 2 * L && ys[1] != 1 && ys[3] == 1 && d.Q % 8 == 0) run.template operator()<8, 2>();
  else if (d.out_per_group == 2 * L) run.template operator()<7, 2>();
  else if (d.Q >= 14) run.template operator()<14, 1>();
  else run.template operator()<7, 1>();
#else
  run.template operator()<7, 1>();  // (7 divides the rows of 56, 28, 14, 7)
#endif
  return true;
}

// The narrowest tile whose one block holds `channels` output channels (at most a 4-vector
// block): a block of few channels runs few lanes.
template <typename Body>
void with_block_tile(int64_t channels, const Body& body) {
  constexpr int L = VecF32::kLanes;
#if defined(__AVX512F__)
  if (channels <= L / 2) return body.template operator()<14, 1, L / 2>();
  if (channels <= L) return body.template operator()<14, 1>();
  if (channels <= L + L / 2) return body.template operator()<12, 2, L / 2>();
  if (channels <= 2 * L) return body.template operator()<12, 2>();
  if (channels <= 3 * L) return body.template operator()<8, 3>();
  return body.template operator()<6, 4>();
#else
  if (channels <= L) return body.template operator()<12, 1>();
  return body.template operator()<6, 2>();
#endif
}

// Activations of storage type T (strides st in (n, c, h, w) order) laid out for the policy M:
// channels-last floats (FmaF32), or bfloat16 channel pairs within each group (M::kChannels == 2,
// T = bf16; an odd group gets a zero channel) read as 32-bit elements, zero-padded by (pad_h,
// pad_w) to (Hp, Wp) positions. A tensor already in that layout (channels_last, no padding) is
// read in place when `in_place_ok`.
template <class M>
struct PackedActivations {
  NhwcViewOf<typename M::Elem> view;
  int64_t per_group;  // packed elements per pixel and group
  ScratchOf<float> floats{0};
  ScratchOf<bf16> pairs{0};
};

template <class M, typename T>
PackedActivations<M> pack_activations_for(const T* src, const int64_t st[4], int64_t N, int64_t C, int64_t H,
                                          int64_t W, int64_t groups, int64_t pad_h, int64_t pad_w, int64_t Hp,
                                          int64_t Wp, bool in_place_ok) {
  const int64_t Cg = C / groups;
  const bool unpadded_channels_last = in_place_ok && st[1] == 1 && pad_h == 0 && pad_w == 0;
  PackedActivations<M> r;
  if constexpr (M::kChannels == 1) {
    r.per_group = Cg;
    if constexpr (std::is_same_v<T, float>) {
      if (unpadded_channels_last) {
        r.view = {src, st[0], st[2], st[3]};
        return r;
      }
    }
    r.floats = pack_activations(src, st, N, C, H, W, pad_h, pad_w, Hp, Wp);
    r.view = {r.floats.data(), Hp * Wp * C, Wp * C, C};
  } else {
    static_assert(M::kChannels == 2 && std::is_same_v<T, bf16>, "channel pairs are packed from bfloat16");
    const int64_t gs = (Cg + 1) / 2 * 2, Cs = groups * gs;  // channel slots per group, per pixel
    r.per_group = gs / 2;
    if (unpadded_channels_last && gs == Cg && st[0] % 2 == 0 && st[2] % 2 == 0 && st[3] % 2 == 0) {
      r.view = {reinterpret_cast<const typename M::Elem*>(src), st[0] / 2, st[2] / 2, st[3] / 2};
      return r;
    }
    r.pairs = pack_activations<T, bf16>(src, st, N, C, H, W, pad_h, pad_w, Hp, Wp, groups, gs);
    r.view = {reinterpret_cast<const typename M::Elem*>(r.pairs.data()), Hp * Wp * Cs / 2, Wp * Cs / 2, Cs / 2};
  }
  return r;
}

// The bias (K elements of storage type T, or null) as floats; null stays null.
template <typename T>
struct FloatBias {
  FloatBias(const void* bias, int64_t K) {
    if (bias == nullptr) return;
    const T* b = static_cast<const T*>(bias);
    values.resize(K);
    for (int64_t k = 0; k < K; ++k) values[k] = load_acc(b + k);
  }
  const float* data() const { return values.empty() ? nullptr : values.data(); }
  std::vector<float> values;
};

// bfloat16 channel pairs (the dot engine) for an odd channel count, packed densely. Packed per
// pixel, an odd group leaves one slot of every pixel empty, and the folded row of S taps
// (conv2d_fprop_direct) then carries S of them: the stem's 7 x 3 channels ran as 7 x 2 = 14 pairs
// per row, a third more dot products than its 21 elements need. Here the activations are packed
// C per pixel, so a row's S C elements are consecutive and go as ceil(S C / 2) pairs (the stem:
// 11), the weights laid out in the same (s, c) order with a zero after an odd run. Applies with
// one group, no column dilation, S > 1, C odd and stride_w C even (every window row then starts
// on an even element, a whole pair; Wp is made even for the rows and images). An odd run's last
// pair reads one element past the run, whose weight is zero: Wp keeps one more column for it.
inline bool fprop_dense_pairs_apply(const Conv2dProblem& p) {
  return p.groups == 1 && p.dil_w == 1 && p.S > 1 && p.C % 2 == 1 && (p.stride_w * p.C) % 2 == 0;
}

template <class M>
void conv2d_fprop_dense_pairs(const Conv2dFpropArgs& a) {
  static_assert(M::kChannels == 2, "bfloat16 channel pairs");
  const Conv2dProblem& p = a.p;
  const int64_t C = p.C, run = p.S * C, pairs = (run + 1) / 2;
  const int64_t Hp = std::max(p.H + 2 * p.pad_h, (p.P - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1);
  int64_t Wp = std::max(p.W + 2 * p.pad_w, (p.Q - 1) * p.stride_w + p.S + run % 2);
  Wp += Wp % 2;
  const ScratchOf<bf16> xp = pack_activations<bf16, bf16>(static_cast<const bf16*>(a.x.data), a.x.stride, p.N, C,
                                                          p.H, p.W, p.pad_h, p.pad_w, Hp, Wp);
  // In pairs (32-bit elements): pixel offsets C / 2 pairs apart, whole for even stride_w C.
  const int64_t row = Wp * C / 2;
  const NhwcViewOf<typename M::Elem> xv{reinterpret_cast<const typename M::Elem*>(xp.data()), Hp * row, row, 0};
  DirectConvPlan plan{p.N, 1, pairs, p.K, p.P, p.Q, p.stride_h * row, p.stride_w * C / 2, {}};
  for (int64_t r = 0; r < p.R; ++r) plan.tap_offset.push_back(r * p.dil_h * row);
  // The weights as rows (k, r) of 2 x `pairs` elements in (s, c) order, zero-filled past S C,
  // then packed as R taps of `pairs` pairs.
  const bf16* w = static_cast<const bf16*>(a.w.data);
  const int64_t* ws = a.w.stride;
  std::vector<bf16> rows(p.K * p.R * 2 * pairs, bf16{});
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s)
        for (int64_t c = 0; c < C; ++c)
          rows[(k * p.R + r) * 2 * pairs + s * C + c] = w[k * ws[0] + c * ws[1] + r * ws[2] + s * ws[3]];
  WeightSource<bf16> weights{rows.data(), 0, p.R * 2 * pairs, 1, 2 * pairs, {}};
  for (int64_t r = 0; r < p.R; ++r) weights.tap_offset.push_back(r * 2 * pairs);
  const FloatBias<bf16> bias(a.bias, p.K);
  with_tile<true>(p.K, p.R * pairs, [&]<int MR, int NV, int LastL = VecF32::kLanes>() {
    const auto wp = pack_weights<M>(plan, tile_channels<NV, LastL>(), weights);
    direct_conv<M, MR, NV, LastL>(plan, xv, wp.data(), bias.data(), nullptr, static_cast<bf16*>(a.y.data),
                                  a.y.stride);
  });
}

// fprop: y = conv(x, w) + bias for storage type T (float or bf16) with the multiply-add policy M.
// Returns false (doing nothing) where this engine does not apply: few output channels per group
// (depthwise), where the reference is the better fit.
template <typename T, class M = FmaF32>
inline bool conv2d_fprop_direct(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.dtype != dtype_of<T>() || Kg < 8) return false;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  const T* x = static_cast<const T*>(a.x.data);
  if constexpr (M::kChannels == 2) {
    if (fprop_dense_pairs_apply(p)) {
      // Where AMX tiles would take the padded plan (a folded row of S (C + 1) / 2 pairs, below),
      // they keep it: the dense pairs have not run on AMX.
      bool tiles = false;
      if constexpr (M::kTiles)
        tiles = M::tiles_apply(DirectConvPlan{p.N, 1, p.S * ((Cg + 1) / 2), Kg, p.P, p.Q, 0, 0, {}}, a.y.stride);
      if (!tiles) {
        conv2d_fprop_dense_pairs<M>(a);
        return true;
      }
    }
  }
  // A strided 1x1 without padding (ResNet's downsampling layers) reads one pixel in stride_h x
  // stride_w: it runs as a stride-1 1x1 over x[:, :, ::stride_h, ::stride_w], so that a packed x
  // holds only those pixels (an x read in place reads the same ones either way). Packing all of
  // an NCHW x had taken a third of the time (bfloat16 1x1/2 256 -> 512 @56 N=8: 26% of the samples
  // in pack_activations against 48% in the tiles).
  const bool subsample =
      p.R == 1 && p.S == 1 && p.pad_h == 0 && p.pad_w == 0 && (p.stride_h > 1 || p.stride_w > 1);
  const int64_t sub_h = subsample ? p.stride_h : 1, sub_w = subsample ? p.stride_w : 1;
  const int64_t xs[4] = {a.x.stride[0], a.x.stride[1], a.x.stride[2] * sub_h, a.x.stride[3] * sub_w};
  const int64_t H = subsample ? p.P : p.H, W = subsample ? p.Q : p.W;
  const int64_t stride_h = p.stride_h / sub_h, stride_w = p.stride_w / sub_w;
  // Rows and columns the windows reach, in padded coordinates.
  const int64_t Hp = std::max(H + 2 * p.pad_h, (p.P - 1) * stride_h + (p.R - 1) * p.dil_h + 1);
  const int64_t Wp = std::max(W + 2 * p.pad_w, (p.Q - 1) * stride_w + (p.S - 1) * p.dil_w + 1);
  // The plan over activations laid out as xv (cin packed elements per pixel and group).
  const auto plan_for = [&](const NhwcViewOf<typename M::Elem>& xv, int64_t cin) {
    DirectConvPlan d{p.N, p.groups, cin, Kg, p.P, p.Q, stride_h * xv.sh, stride_w * xv.sw, {}};
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s) d.tap_offset.push_back(r * p.dil_h * xv.sh + s * p.dil_w * xv.sw);
    return d;
  };
  WeightSource<T> weights{w, Kg * ws[0], ws[0], ws[1], Cg, {}};
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t s = 0; s < p.S; ++s) weights.tap_offset.push_back(r * ws[2] + s * ws[3]);
  const FloatBias<T> bias(a.bias, p.K);
  // Grouped, the row tiles read their activations as group blocks (pack_group_blocks) where the
  // other tiles read a channels-last copy (in-process A/B, arms in random order, Xeon, against the
  // row tiles over that copy: 512 @14 g32 N=1 1.12x at one thread and 1.40x at two, both
  // layouts; N=8 1.04-1.14x; 1024 @7 1.02-1.13x). One group keeps the channels-last copy, whose
  // rows go as single runs: blocks of 16 channels, a run per pixel, cost 16 -> 16 @112 7%.
  if constexpr (M::kChannels == 1) {
    const int64_t block = group_block_floats(Hp, Wp, Cg);
    const NhwcViewOf<float> blocks{nullptr, p.groups * block, Wp * Cg, Cg};  // (a plan needs the strides only)
    const DirectConvPlan d = plan_for(blocks, Cg);
    // (Column stride 2 over a channels_last x: AVX2 takes its channels-last copy, below; group
    // blocks ran 1.8x slower at N=8, 256 @56 /2 g32, their runs of 32 bytes a pixel read at half
    // the rate of the copy's rows. AVX-512 reads it in place, below.)
    const int column_stride = row_reuse_stride(d, blocks.sw);
    if (p.groups > 1 && (column_stride == 1 || (column_stride == 2 && xs[1] != 1))) {
      const ScratchOf<float> xb = pack_group_blocks(x, xs, p.N, p.groups, Cg, H, W, p.pad_h, p.pad_w, Hp, Wp);
      const NhwcViewOf<float> xv{xb.data(), blocks.sn, blocks.sh, blocks.sw};
      return run_row_reuse<M>(d, xv, weights, bias.data(), static_cast<T*>(a.y.data), a.y.stride, block);
    }
  }
  // A padded float32 channels_last x of 16+ channels a group is read in place (PaddedEdges) where
  // direct_conv's tiles take the layer: not the row tiles (run_row_reuse), whose plans read a
  // padded copy; its rows' taps then stay apart (a folded row would read across the edge).
  // AVX-512 at column stride 2 keeps the tiles in place over the row tiles on the copy (A/B,
  // ResNeXt 512 @28 /2 and 1024 @14 /2 g32 channels_last: the row tiles 0.62-0.82x).
  // The row tiles of one group read a dense x in place too (rows_in_place), an edge tile from a
  // zero-padded copy of its window (row_reuse_conv; in-process A/B, arms in random order, Xeon, 2
  // threads, against the padded copy: MobileNetV2's stem N=8 1.18x, N=1 1.11x, 3 -> 16 @224
  // 1.05-1.07x, 16 -> 16 @112 1.06-1.12x, AVX2 8 -> 8 @112 /2 1.15-1.53x; 32 -> 32 @56 level).
  bool in_place_padding = false, rows_in_place = false;
  if constexpr (M::kChannels == 1 && !M::kTiles && std::is_same_v<T, float>) {
    const NhwcViewOf<float> xi{x, xs[0], xs[2], xs[3]};
    const int column_stride = row_reuse_stride(plan_for(xi, Cg), xi.sw);
    in_place_padding = (p.pad_h > 0 || p.pad_w > 0) && xs[1] == 1 && !subsample && Cg >= 16 &&
                       (column_stride == 0 || (column_stride == 2 && VecF32::kLanes == 16));
    rows_in_place = !in_place_padding && column_stride > 0 && (p.pad_h > 0 || p.pad_w > 0) && xs[1] == 1 &&
                    !subsample && p.groups == 1 && xs[3] == Cg;
  }
  const bool x_in_place = in_place_padding || rows_in_place;
  PackedActivations<M> xp;
  if (x_in_place) {
    xp.view = {reinterpret_cast<const typename M::Elem*>(x), xs[0], xs[2], xs[3]};
    xp.per_group = Cg;
  } else {
    xp = pack_activations_for<M>(x, xs, p.N, p.C, H, W, p.groups, p.pad_h, p.pad_w, Hp, Wp, true);
  }
  const auto& xv = xp.view;
  const int64_t cin = xp.per_group;
  DirectConvPlan d = plan_for(xv, cin);
  // With pixels cin elements apart (one group) and no column dilation, a row's S taps read S cin
  // consecutive elements, in the packed weights' own order: the engine runs them as one tap of
  // S cin inputs. The stem (3 channels, 7 x 7) then loops over 7 taps of 21, not 49 taps of 3.
  DirectConvPlan run = d;
  const bool folded = !x_in_place && p.groups == 1 && p.dil_w == 1 && xv.sw == cin && p.S > 1;
  if (folded) {
    run.in_per_group = p.S * cin;
    run.tap_offset.clear();
    for (int64_t r = 0; r < p.R; ++r) run.tap_offset.push_back(r * p.dil_h * xv.sh);
  }
  std::optional<PaddedEdges> edges;  // in place: each tap's pixel; tap offsets less the padding
  if (x_in_place) {
    std::vector<int64_t> tap_row, tap_col;
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s) tap_row.push_back(r * p.dil_h), tap_col.push_back(s * p.dil_w);
    edges.emplace(p, std::move(tap_row), std::move(tap_col));
    for (auto* plan : {&d, &run})
      for (auto& o : plan->tap_offset) o -= p.pad_h * xv.sh + p.pad_w * xv.sw;
  }
  const PaddedEdges* edges_in_place = edges ? &*edges : nullptr;
  if constexpr (M::kTiles) {
    if (M::tiles_apply(run, a.y.stride)) {
      const auto wp = pack_weights<M>(d, M::kTileChannels, weights);
      M::tile_conv(run, xv, wp.data(), bias.data(), static_cast<T*>(a.y.data), a.y.stride);
      return true;
    }
  }
  if (!in_place_padding && run_row_reuse<M>(d, xv, weights, bias.data(), static_cast<T*>(a.y.data), a.y.stride, -1,
                                            false, edges_in_place))
    return true;
  if (with_group_bundle<M>(p.groups, cin, Kg, [&]<int MR, int NV, int NG, int GI>() {
        const auto wp = pack_weights<M>(d, NV / NG * VecF32::kLanes, weights, NG);
        direct_conv<M, MR, NV, VecF32::kLanes, NG, GI>(bundled(d, NG), xv, wp.data(), bias.data(), nullptr,
                                                       static_cast<T*>(a.y.data), a.y.stride, 0, edges_in_place);
      }))
    return true;
  with_tile<true>(Kg, p.R * p.S * cin, [&]<int MR, int NV, int LastL = VecF32::kLanes>() {
    const auto wp = pack_weights<M>(d, tile_channels<NV, LastL>(), weights);
    direct_conv<M, MR, NV, LastL>(run, xv, wp.data(), bias.data(), nullptr, static_cast<T*>(a.y.data), a.y.stride, 0,
                                  edges_in_place);
  });
  return true;
}

// The input patches of one image as the engine's packed weights (conv2d_fprop_pixel_lanes):
// xp[kb][j][KB], lane l = output pixel kb KB + l (zeros past P Q), j over (c, r, s) in the weight
// rows' order (channels_inner: (r, s) outer, c inner; else c outer). Taps in the padding are zeros.
// Work items are (pixel block, channel chunk).
template <typename T>
ScratchOf<float> pack_patches(const Conv2dProblem& p, const T* x, const int64_t xs[4], int64_t KB, bool channels_inner) {
  constexpr int64_t kChannelChunk = 16;
  const int64_t PQ = p.P * p.Q, nkb = (PQ + KB - 1) / KB, RS = p.R * p.S, CRS = p.C * RS;
  const int64_t nchunks = (p.C + kChannelChunk - 1) / kChannelChunk;
  ScratchOf<float> xp(nkb * CRS * KB);
  // Channels contiguous at each pixel (channels_last): 8 lanes x 8 channels go as one register
  // transpose of 8 pixel pointers (a zero row for lanes in the padding), not element by element
  // with a bounds test each. res5's 2048 -> 512 @7 at N=1 had spent a quarter of its time here
  // (A/B, arms in random order, 2 threads: 1.18 -> 0.80 ms; 512 -> 2048 0.86 -> 0.76; 1x1/2
  // 1024 -> 2048 @14 1.72 -> 1.52).
  const bool channels_contiguous = xs[1] == 1;
  const int64_t c_step = channels_inner ? 1 : RS;  // j from one channel to the next
  const T zeros[8] = {};
  const auto inside = [&](int64_t h, int64_t w) { return h >= 0 && h < p.H && w >= 0 && w < p.W; };
  parallel_for(0, nkb * nchunks, 1, [&](int64_t b, int64_t e) {
    std::vector<int64_t> h0(KB), w0(KB);
    for (int64_t item = b; item < e; ++item) {
      const int64_t kb = item / nchunks, c0 = (item % nchunks) * kChannelChunk;
      const int64_t c1 = std::min(p.C, c0 + kChannelChunk);
      for (int64_t l = 0; l < KB; ++l) {
        const int64_t pix = kb * KB + l;
        // A pixel past the end gets a window that misses the image: its lanes are zeros.
        h0[l] = pix < PQ ? (pix / p.Q) * p.stride_h - p.pad_h : -(p.R * p.dil_h + 1);
        w0[l] = pix < PQ ? (pix % p.Q) * p.stride_w - p.pad_w : 0;
      }
      float* dst = xp.data() + kb * CRS * KB;
      int64_t c8 = c0;
      if (channels_contiguous) {
        c8 = c1 - (c1 - c0) % 8;
        for (int64_t r = 0; r < p.R; ++r)
          for (int64_t s = 0; s < p.S; ++s) {
            const int64_t t = r * p.S + s, j0 = channels_inner ? t * p.C : t;
            for (int64_t l = 0; l < KB; l += 8) {
              const T* lane[8];
              for (int i = 0; i < 8; ++i) {
                const int64_t h = h0[l + i] + r * p.dil_h, w = w0[l + i] + s * p.dil_w;
                lane[i] = inside(h, w) ? x + h * xs[2] + w * xs[3] : nullptr;
              }
              for (int64_t c = c0; c < c8; c += 8) {
                const T* rows[8];
                for (int i = 0; i < 8; ++i) rows[i] = lane[i] ? lane[i] + c : zeros;
                transpose8x8_rows(rows, 0, dst + (j0 + c * c_step) * KB + l, c_step * KB);
              }
            }
          }
      }
      for (int64_t c = c8; c < c1; ++c)
        for (int64_t r = 0; r < p.R; ++r)
          for (int64_t s = 0; s < p.S; ++s) {
            const int64_t t = r * p.S + s, j = channels_inner ? t * p.C + c : c * RS + t;
            float* row = dst + j * KB;
            const T* xc = x + c * xs[1];
            for (int64_t l = 0; l < KB; ++l) {
              const int64_t h = h0[l] + r * p.dil_h, w = w0[l] + s * p.dil_w;
              row[l] = inside(h, w) ? load_acc(xc + h * xs[2] + w * xs[3]) : 0.0f;
            }
          }
    }
  });
  return xp;
}

// Which case of conv2d_fprop_pixel_lanes (below) a problem falls in, its weights aside: the 1x1
// NCHW planes, few output pixels with big weights, or neither.
// plain_1x1: 1x1, stride 1, unpadded, on NCHW planes: X_n is x's planes as they are, whichever
// case runs (few_pixels then packs them with row copies, not as patches).
struct PixelLanesCase {
  bool pointwise, few_pixels, plain_1x1;
};
inline PixelLanesCase pixel_lanes_case(const Conv2dProblem& p, const int64_t xs[4], const int64_t ys[4]) {
  if (p.groups != 1 || p.K < 8 || ys[2] != p.Q * ys[3]) return {false, false, false};
  const bool planes = xs[3] == 1 && xs[2] == p.W && ys[3] == 1;
  const bool plain_1x1 =
      p.R == 1 && p.S == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0 && planes;
  const int64_t weight_bytes = p.K * p.C * p.R * p.S * int64_t(sizeof(float));
  // Also the plain 1x1 on NCHW planes with up to 64 output pixels and 256+ KiB of weights
  // (MobileNetV2's last stage at N=1), planes row-copied: A/B (arms in random order), N=1,
  // 960 -> 160 @7 0.220 -> 0.172 ms, 160 -> 960 0.218 -> 0.143, 576 -> 160 0.202 -> 0.122. The
  // same on channels_last inputs (patches then gathered per element, before pack_patches'
  // transposes) measured slower or alike.
  const bool few_pixels = (p.N * p.P * p.Q * 8 <= p.K && weight_bytes > (int64_t(2) << 20)) ||
                          (plain_1x1 && p.N * p.P * p.Q <= 64 && weight_bytes > (int64_t(256) << 10));
  return {plain_1x1 && p.H * p.W >= 64, few_pixels, plain_1x1};
}

// The pixels [whole, P Q) of every image of a plain 1x1 on NCHW planes, past its last whole block
// of lanes, as one set of N (P Q - whole) lanes: packed (lane n rem + i = pixel whole + i of
// image n; for the dot policy two plane rows per channel pair), run in the narrowest tile that
// holds them, computed into [k][lane] scratch and copied out to the planes. For
// conv2d_fprop_pixel_lanes (float planes read in place: lanes past a plane are not readable so)
// and conv2d_fprop_pointwise_pairs (bfloat16 pairs). Per image, in the main tile's lanes, res4's
// 196 pixels (3 x 64 + 4) paid a fourth block of multiply-adds and a fourth pass over the weights
// for 4 pixels (float, N=8 1024 -> 256 @14: 5.4 ms against 4.2 for 192 pixels; bfloat16, A/B, arms
// in random order, 2 threads, N=8: 1024 -> 256 3.20 -> 2.54, 256 -> 1024 3.45 -> 2.75, their
// dgrads 3.55 -> 2.81 and 4.20 -> 3.27; N=1 1024 -> 256 0.47 -> 0.39; 28 x 28's 16 left over
// pixels: 512 -> 128 N=8 3.53 -> 3.41).
template <class M, typename T>
inline void pixel_lanes_tails(const Conv2dProblem& p, const DirectConvPlan& d, const NhwcViewOf<typename M::Elem>& wv,
                              const T* x, const int64_t xs[4], int64_t whole, const float* bias, T* y,
                              const int64_t ys[4]) {
  using E = typename M::Elem;
  const int64_t rem = p.P * p.Q - whole, lanes = p.N * rem, cin = p.C / M::kChannels;
  const auto run = [&]<int MR, int NV, int LastL = VecF32::kLanes>() {
    constexpr int64_t KB = tile_channels<NV, LastL>();
    const int64_t nkb = (lanes + KB - 1) / KB;
    ScratchOf<E> xp(nkb * cin * KB);
    ScratchOf<T> out(p.K * lanes);
    // Per packed element, each image's rem pixels are one run of lanes, split where it crosses a block.
    parallel_for(0, cin, 16, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        for (int64_t n = 0; n < p.N; ++n) {
          const T* row = x + n * xs[0] + M::kChannels * j * xs[1] + whole;
          for (int64_t i = 0; i < rem;) {
            const int64_t o = n * rem + i, l = o % KB, len = std::min(rem - i, KB - l);
            E* dst = xp.data() + (o / KB * cin + j) * KB + l;
            if constexpr (M::kChannels == 1)
              convert_n(row + i, dst, len);
            else
              interleave_pairs(row + i, row + xs[1] + i, dst, len);
            i += len;
          }
        }
        if (lanes % KB != 0) {
          E* last = xp.data() + ((nkb - 1) * cin + j) * KB;
          std::fill(last + lanes % KB, last + KB, E(0));
        }
      }
    });
    DirectConvPlan t = d;
    t.out_per_group = lanes;
    const int64_t os[4] = {0, 1, 0, lanes};  // "channel" = lane, "column" = k
    direct_conv<M, MR, NV, LastL>(t, wv, xp.data(), nullptr, bias, out.data(), os);
    parallel_for(0, p.N * p.K, 64, [&](int64_t b, int64_t e) {
      for (int64_t nk = b; nk < e; ++nk) {
        const int64_t n = nk / p.K, k = nk % p.K;
        const T* src = out.data() + k * lanes + n * rem;
        std::copy(src, src + rem, y + n * ys[0] + k * ys[1] + whole);
      }
    });
  };
  if (lanes <= 4 * VecF32::kLanes)
    with_block_tile(lanes, run);
  else
    with_tile(lanes, cin, run);
}

// conv2d_fprop_pixel_lanes' pixels of a float dense 1x1 (stride 1, unpadded; any layout) past
// their whole blocks of lanes where at most kMaxDotLanes such pixels are left in all: each is a
// column of X_n, gathered once, whose dot products with W's rows are its outputs.
// pixel_lanes_tails would broadcast a W element per FMA of one narrow vector: a second pass over
// W at a fraction of the FMA rate (A/B, arms in random order, 2 threads, NCHW: res5 2048 -> 512
// @7, 48 lanes in place and 1 left, N=1 tails 0.77 -> dots 0.50 ms, where all 49 lanes in the
// tails had taken 0.65; N=8 3.9 -> 3.7; 1024 -> 256 @14, 192 and 4, N=1 0.55 -> 0.47; AVX2
// 2048 -> 512 N=1 0.89 -> 0.70). Two forms, by W's layout ("pixel" k's channel c at wv.data +
// k wv.sw + c c_step):
//  - rows (c_step 1): a tile of kDotRows rows by kDotLanes columns, vectors along c, summed
//    across lanes at the end;
//  - columns (wv.sw 1: W^T of a 1x1 input gradient read in place): kDotRows vectors of k by
//    kDotLanes columns, W's row c times a broadcast column element.
// A tile takes exactly the columns left (1-4): padded to 4 with copies of the last, the one
// column of res5 at N=1 had paid 4 columns of FMAs and broadcasts on its pass over W (A/B, arms
// in random order, N=1, 2048 -> 512 @7 NCHW input gradient: AVX2 1 thread 1.72 -> 1.51 ms, 2
// threads 0.79 -> 0.74; AVX-512 1.21 -> 1.09, 0.537 -> 0.526; forwards 1.02-1.03x).
// Returns false where W is neither.
#if defined(__AVX512F__)
constexpr int64_t kDotRows = 4;
#else
constexpr int64_t kDotRows = 2;  // 8 sums, 4 columns and a W vector of 16 registers
#endif
constexpr int kDotLanes = 4;
constexpr int64_t kMaxDotLanes = 8;
inline bool pixel_lanes_dots(const Conv2dProblem& p, const NhwcView& wv, int64_t c_step, const float* x,
                             const int64_t xs[4], int64_t whole, const float* bias, float* y, const int64_t ys[4]) {
  using V = VecF32;
  constexpr int L = V::kLanes;
  if (c_step != 1 && wv.sw != 1) return false;
  const int64_t rem = p.P * p.Q - whole, lanes = p.N * rem, C = p.C;
  // Lane l = n rem + i is pixel whole + i of image n (a dense 1x1: the input pixel's too).
  const auto at = [&](const int64_t st[4], int64_t lane) {
    const int64_t pixel = whole + lane % rem;
    return lane / rem * st[0] + pixel / p.Q * st[2] + pixel % p.Q * st[3];
  };
  ScratchOf<float> cols(lanes * C);  // cols[l][c]
  for (int64_t l = 0; l < lanes; ++l) {
    const float* xl = x + at(xs, l);  // (its divisions once per lane, not per element)
    for (int64_t c = 0; c < C; ++c) cols.data()[l * C + c] = xl[c * xs[1]];
  }
  const auto out = [&](int64_t k, int64_t lane) -> float& { return y[at(ys, lane) + k * ys[1]]; };
  if (c_step == 1) {
    const int64_t C16 = C / L * L;
    parallel_for(0, (p.K + kDotRows - 1) / kDotRows, 16, [&](int64_t b, int64_t e) {
      for (int64_t kb = b; kb < e; ++kb) {
        const int64_t k0 = kb * kDotRows, rows = std::min(kDotRows, p.K - k0);
        const float* wr[kDotRows];
        for (int64_t r = 0; r < kDotRows; ++r) wr[r] = wv.data + (k0 + std::min(r, rows - 1)) * wv.sw;
        for (int64_t l0 = 0; l0 < lanes; l0 += kDotLanes) {
          with_small_count<kDotLanes>(std::min<int64_t>(kDotLanes, lanes - l0), [&]<int LN>() {
            const float* cl[LN];
            for (int l = 0; l < LN; ++l) cl[l] = cols.data() + (l0 + l) * C;
            V::type acc[kDotRows][LN];
            for (int64_t r = 0; r < kDotRows; ++r)
              for (int l = 0; l < LN; ++l) acc[r][l] = V::zero();
            for (int64_t c = 0; c < C16; c += L) {
              V::type col[LN];
              for (int l = 0; l < LN; ++l) col[l] = V::load(cl[l] + c);
              for (int64_t r = 0; r < kDotRows; ++r) {
                const V::type w = V::load(wr[r] + c);
                for (int l = 0; l < LN; ++l) acc[r][l] = V::fmadd(w, col[l], acc[r][l]);
              }
            }
            for (int64_t r = 0; r < rows; ++r)
              for (int l = 0; l < LN; ++l) {
                float part[L];
                V::store(part, acc[r][l]);
                float sum = bias ? bias[k0 + r] : 0.0f;
                for (int i = 0; i < L; ++i) sum += part[i];
                for (int64_t c = C16; c < C; ++c) sum += wr[r][c] * cl[l][c];
                out(k0 + r, l0 + l) = sum;
              }
          });
        }
      }
    });
    return true;
  }
  constexpr int64_t KB = kDotRows * L;  // k per item
  parallel_for(0, (p.K + KB - 1) / KB, 4, [&](int64_t b, int64_t e) {
    for (int64_t kb = b; kb < e; ++kb) {
      const int64_t k0 = kb * KB, kn = std::min(KB, p.K - k0);
      if (kn < KB) {  // the last, partial block: scalar
        for (int64_t k = k0; k < p.K; ++k)
          for (int64_t l = 0; l < lanes; ++l) {
            float sum = bias ? bias[k] : 0.0f;
            for (int64_t c = 0; c < C; ++c) sum += wv.data[k + c * c_step] * cols.data()[l * C + c];
            out(k, l) = sum;
          }
        continue;
      }
      for (int64_t l0 = 0; l0 < lanes; l0 += kDotLanes) {
        with_small_count<kDotLanes>(std::min<int64_t>(kDotLanes, lanes - l0), [&]<int LN>() {
          const float* cl[LN];
          for (int l = 0; l < LN; ++l) cl[l] = cols.data() + (l0 + l) * C;
          V::type acc[kDotRows][LN];
          for (int64_t r = 0; r < kDotRows; ++r) {
            const V::type bv = bias ? V::load(bias + k0 + r * L) : V::zero();
            for (int l = 0; l < LN; ++l) acc[r][l] = bv;
          }
          for (int64_t c = 0; c < C; ++c) {
            V::type col[LN];
            for (int l = 0; l < LN; ++l) col[l] = V::broadcast(cl[l] + c);
            for (int64_t r = 0; r < kDotRows; ++r) {
              const V::type w = V::load(wv.data + k0 + r * L + c * c_step);
              for (int l = 0; l < LN; ++l) acc[r][l] = V::fmadd(w, col[l], acc[r][l]);
            }
          }
          for (int64_t r = 0; r < kDotRows; ++r)
            for (int l = 0; l < LN; ++l) {
              float part[L];
              V::store(part, acc[r][l]);
              for (int i = 0; i < L; ++i) out(k0 + r * L + i, l0 + l) = part[i];
            }
        });
      }
    }
  });
  return true;
}

// with_tile for conv2d_fprop_pixel_lanes' float planes read in place (and its packed dense
// 1x1s), whose lanes past the last whole block of a plane go through pixel_lanes_dots or
// pixel_lanes_tails: where a narrower block (AVX-512 8 x 3, 48 lanes; AVX2 12 x 1, 8) leaves
// fewer of them over than with_tile's (res5's 7 x 7 = 49: none of 64, 48 of 48 and one left), it
// runs instead. With 64-lane blocks every lane of res5 2048 -> 512
// went through the tails: all 49 packed, then padded to 64 (a quarter of the FMAs on zeros).
// AVX2 takes 4 x 3 (24 lanes) wherever it leaves no more over than 6 x 2 (16) and 12 x 1: 4 + 3
// loads for 12 FMAs against 6 + 2, and fewer passes over each row of W (in-process A/B, arms in
// random order, 2 threads, NCHW N=1, forward: 2048 -> 512 @7 0.72 -> 0.64 ms, 512 -> 2048 0.68
// -> 0.62, N=8 5.29 -> 4.83; 1024 -> 256 @14 1.05x, 256 -> 1024 1.01x; 960 -> 160 @7 1.07x).
// max_rest >= 0: only if it leaves at most that many pixels of a plane.
template <typename Body>
void with_plane_tile(int64_t PQ, int64_t CRS, int64_t max_rest, const Body& body) {
  constexpr int L = VecF32::kLanes;
  const auto rest = [&](int64_t lanes) { return PQ - PQ / lanes * lanes; };
  int64_t kb = 0;
  with_tile(PQ, CRS, [&]<int MR, int NV>() { kb = NV * L; });
  const auto fits = [&](int64_t lanes) { return max_rest < 0 || rest(lanes) <= max_rest; };
#if defined(__AVX512F__)
  if (rest(3 * L) < rest(kb) && fits(3 * L)) return body.template operator()<8, 3>();
#else
  if (kb > L && rest(3 * L) <= std::min(rest(kb), rest(L)) && fits(3 * L)) return body.template operator()<4, 3>();
  if (rest(L) < rest(kb) && fits(L)) return body.template operator()<12, 1>();
#endif
  with_tile(PQ, CRS, body);
}

// fprop with the engine's roles swapped, output pixels as its vector lanes: per image,
// Y_n (K x PQ) = W (K x CRS) X_n (CRS x PQ), X_n's columns the input patches of image n. The
// engine's "pixels" are the output channels k, broadcast from W's rows read in place (one tap,
// CRS contiguous "channels"); its "weights" are X_n packed in blocks of KB pixels; the bias per k
// is a per-"pixel" bias. No weight packing. Two cases take it:
//  - 1x1, stride 1, unpadded, on NCHW planes: X_n is x itself, pixels contiguous; float32 planes
//    are read in place (all but the last, partial block of pixels), bfloat16 ones widened into
//    blocks without a transpose;
//  - few output pixels and big weights (N P Q * 8 <= K, K C R S floats > 2 MiB: ResNet-50's res5
//    at batch 1): all the patches together are much smaller than the weights, whose packing
//    (NT-streamed there, see pack_weights) they replace. Measured on Zen 3, 2 threads, N=1: res5
//    3x3 512 @7 4.9-5.2 -> 3.4-3.5 ms, 1x1 512->2048 2.6-2.8 -> 1.6-1.7 ms. With more pixels the
//    patch packing and the output scatter (channels_last: lanes K apart) lose: res4 1x1 256->1024
//    @14 channels_last 1.3 -> 1.9 ms, res5 1x1 512->2048 @7 N=8 channels_last 8.7 -> 10.4 ms.
//    A plain 1x1 on NCHW planes with up to 64 output pixels takes it from 256 KiB of weights
//    (pixel_lanes_case).
// Needs groups == 1 and each weight row contiguous (KCRS or KRSC); bfloat16 W is widened once.
template <typename T>
inline bool conv2d_fprop_pixel_lanes(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t* xs = a.x.stride;
  const int64_t* ws = a.w.stride;
  const int64_t* ys = a.y.stride;
  const int64_t PQ = p.P * p.Q, RS = p.R * p.S, CRS = p.C * RS;
  const WeightRows rows = weight_rows(ws, p.C, p.R, p.S);
  const PixelLanesCase use = pixel_lanes_case(p, xs, ys);
  // Float planes of 2 to 63 pixels (no whole block of lanes) too: all of them go through
  // pixel_lanes_tails as one set of N P Q lanes, where the channels-last engine had packed them
  // to pixels and transposed its tiles back to planes (A/B, arms in random order, Zen 5, 2 threads,
  // N=8: 7 x 7 2048 -> 512 3.79 -> 2.93 ms, 960 -> 160 0.88 -> 0.54, 576 -> 160 1.32x, 160 -> 960
  // 1.18x, 128 -> 512 1.04x; 3 x 3 1024 -> 1024 N=16 1.49x; 2 x 2 512 -> 512 1.03x). Planes of one
  // pixel are channels_last already: 256 -> 256 @1 N=32 lost 1.28x this way.
  const bool short_planes = std::is_same_v<T, float> && use.plain_1x1 && PQ >= 2;
  // A float 1x1 W whose rows are not contiguous (W^T of conv2d_dgrad_pixel_lanes, read in place):
  // the engine reads "pixel" k's channel c at k ws[0] + c ws[1] as tap c of one channel.
  const bool strided_1x1 = std::is_same_v<T, float> && rows == WeightRows::kStrided && RS == 1;
  if (p.dtype != dtype_of<T>() || (rows == WeightRows::kStrided && !strided_1x1) ||
      (!use.pointwise && !use.few_pixels && !short_planes))
    return false;
  // Planes of a plain 1x1 are X_n itself: packed with row copies (res5 2048 -> 512 @7, N=1: the
  // generic patch packer, a bounds check per element, took a quarter of the time).
  const bool pointwise = use.pointwise || use.plain_1x1;
  const T* x = static_cast<const T*>(a.x.data);
  T* y = static_cast<T*>(a.y.data);
  std::vector<float> w_rows;  // bfloat16 W as float rows of CRS
  NhwcView wv{nullptr, 0, 0, ws[0]};  // W row k = "pixel" k
  if constexpr (std::is_same_v<T, float>) {
    wv.data = static_cast<const float*>(a.w.data);
  } else {
    const T* w = static_cast<const T*>(a.w.data);
    w_rows.resize(p.K * CRS);
    for (int64_t k = 0; k < p.K; ++k) convert_n(w + k * ws[0], w_rows.data() + k * CRS, CRS);
    wv = NhwcView{w_rows.data(), 0, 0, CRS};
  }
  // d as the packers see it (CRS channels of one tap); dr as direct_conv runs it: the same, or
  // with W's rows strided CRS taps of one channel (either lays the engine's weights out as
  // [block][CRS][KB]).
  const DirectConvPlan d{1, 1, CRS, PQ, 1, p.K, 0, wv.sw, {0}};
  DirectConvPlan dr = d;
  const int64_t c_step = strided_1x1 ? ws[1] : 1;
  if (strided_1x1) {
    dr.in_per_group = 1;
    dr.tap_offset.resize(CRS);
    for (int64_t c = 0; c < CRS; ++c) dr.tap_offset[c] = c * c_step;
  }
  const int64_t yv[4] = {0, ys[3], 0, ys[1]};  // "channel" = output pixel, "column" = k
  const FloatBias<T> bias(a.bias, p.K);
  // A float dense 1x1 whose pixels are packed (channels_last x, few pixels): its whole blocks of
  // lanes run like the planes', the rest as dots where at most kMaxDotLanes are left (res5 2048
  // -> 512 @7 channels_last, A/B as above, N=1 forward 0.64 -> 0.55 ms, input gradient 0.73 ->
  // 0.59; N=2 1.20 -> 1.19, 1.49 -> 1.18: 49 pixels an image had padded a block of 64).
  const bool dense_1x1 = RS == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  const bool packed_dots = std::is_same_v<T, float> && !pointwise && dense_1x1 && (c_step == 1 || wv.sw == 1);
  // W^T's rows one element apart (W dense along its input channels): direct_conv_row_taps.
  const bool row_taps = strided_1x1 && wv.sw == 1;
  const auto run = [&]<int MR, int NV>() {
    constexpr int64_t KB = NV * VecF32::kLanes;
    const int64_t whole = PQ / KB * KB;
    const bool packed_rest = packed_dots && whole < PQ && p.N * (PQ - whole) <= kMaxDotLanes;
    const auto engine = [&](const DirectConvPlan& part, const float* xb, T* yn, int64_t w_step) {
      if constexpr (std::is_same_v<T, float>) {
        if (row_taps) return direct_conv_row_taps<FmaF32, MR, NV>(part, wv, xb, bias.data(), yn, yv, w_step);
      }
      direct_conv<FmaF32, MR, NV>(part, wv, xb, nullptr, bias.data(), yn, yv, w_step);
    };
    for (int64_t n = 0; n < p.N; ++n) {
      const T* xn = x + n * xs[0];
      T* yn = y + n * ys[0];
      if constexpr (std::is_same_v<T, float>) {
        if (pointwise) {  // float planes are the engine's weights as they are: whole blocks in place
          DirectConvPlan part = dr;
          part.out_per_group = PQ / KB * KB;
          if (part.out_per_group > 0) engine(part, xn, yn, xs[1]);
          continue;
        }
      }
      DirectConvPlan part = dr;
      if (packed_rest) part.out_per_group = whole;
      if (part.out_per_group == 0) continue;
      const auto xp = pointwise ? pack_weights<FmaF32>(d, KB, WeightSource<T>{xn, 0, 1, xs[1], p.C, {0}})
                                : pack_patches(p, xn, xs, KB, rows == WeightRows::kKRSC);
      engine(part, xp.data(), yn, 0);
    }
    if constexpr (std::is_same_v<T, float>) {
      if (packed_rest)
        pixel_lanes_dots(p, wv, c_step, x, xs, whole, bias.data(), y, ys);
      else if (pointwise && whole < PQ &&
               !(p.N * (PQ - whole) <= kMaxDotLanes && pixel_lanes_dots(p, wv, c_step, x, xs, whole, bias.data(), y, ys)))
        pixel_lanes_tails<FmaF32>(p, dr, wv, x, xs, whole, bias.data(), y, ys);
    }
  };
  if (std::is_same_v<T, float> && pointwise)
    with_plane_tile(PQ, CRS, -1, run);
  else if (packed_dots)
    with_plane_tile(PQ, CRS, kMaxDotLanes / p.N, run);
  else
    with_tile(PQ, CRS, run);
  return true;
}

// Whether conv2d_fprop_pointwise_pairs takes a problem: the plain 1x1 on NCHW planes. Planes of
// fewer than 64 pixels (no whole block: every lane goes through the tails) only with one block of
// lanes in all or 320+ input channels: the tails' copy-out costs per output element, the work it
// saves per multiply-add (A/B, 2 threads, 7 x 7, N=8: 2048 -> 512 3.25 -> 2.62 ms, 960 -> 160
// 0.77 -> 0.43, 320 -> 1280 1.20 -> 1.10, but 256 -> 1024 1.00 -> 1.05, 128 -> 512 0.32 -> 0.38;
// N=1: 2048 -> 512 0.53 -> 0.39, 160 -> 960 0.118 -> 0.078).
inline bool pointwise_pairs_case(const Conv2dProblem& p, const int64_t xs[4], const int64_t ys[4]) {
  const PixelLanesCase use = pixel_lanes_case(p, xs, ys);
  return use.pointwise || (use.plain_1x1 && (p.N * p.P * p.Q <= 4 * VecF32::kLanes || p.C >= 320));
}

// conv2d_fprop_pixel_lanes' 1x1 on NCHW planes (pointwise_pairs_case) with a bfloat16 dot policy M
// (two input channels per packed element): the engine's "weights" are X_n's planes interleaved
// into channel pairs per pixel lane (two plane rows per pair: pack_weights' out_stride == 1 case),
// its broadcast "pixels" the pairs of W's rows read in place; each image's whole blocks of lanes,
// then every image's left-over pixels together (pixel_lanes_tails). C even, so that no pair reads
// past a row.
// Before, these layers' inputs went through channels_last pairs and their outputs back out to
// planes (2 threads, bfloat16 NCHW, N=8: 64 -> 64 @56 2.38 -> 1.08 ms, 64 -> 256 6.13 -> 3.59,
// 256 -> 64 7.26 -> 4.77, 512 -> 128 @28 5.60 -> 3.71; torch 1.11, 4.17, 4.54, 3.45).
template <class M>
inline bool conv2d_fprop_pointwise_pairs(const Conv2dFpropArgs& a) {
  static_assert(M::kChannels == 2 && sizeof(typename M::Elem) == 2 * sizeof(bf16), "bfloat16 pairs");
  const Conv2dProblem& p = a.p;
  const int64_t* xs = a.x.stride;
  const int64_t* ws = a.w.stride;
  const int64_t* ys = a.y.stride;
  if (p.dtype != DType::bf16 || !pointwise_pairs_case(p, xs, ys) || p.C % 2 != 0 || ws[1] != 1 || ws[0] % 2 != 0)
    return false;
  using E = typename M::Elem;
  const bf16* x = static_cast<const bf16*>(a.x.data);
  bf16* y = static_cast<bf16*>(a.y.data);
  const int64_t PQ = p.P * p.Q;
  const NhwcViewOf<E> wv{reinterpret_cast<const E*>(a.w.data), 0, 0, ws[0] / 2};  // pair j of row k: k sw + j
  const DirectConvPlan d{1, 1, p.C / 2, PQ, 1, p.K, 0, wv.sw, {0}};
  const int64_t yv[4] = {0, ys[3], 0, ys[1]};  // "channel" = output pixel, "column" = k
  const FloatBias<bf16> bias(a.bias, p.K);
  with_tile(PQ, p.C / 2, [&]<int MR, int NV>() {
    constexpr int64_t KB = NV * VecF32::kLanes;
    DirectConvPlan part = d;
    part.out_per_group = PQ / KB * KB;
    if (part.out_per_group > 0)
      for (int64_t n = 0; n < p.N; ++n) {
        const auto xp = pack_weights<M>(part, KB, WeightSource<bf16>{x + n * xs[0], 0, 1, xs[1], p.C, {0}});
        direct_conv<M, MR, NV>(part, wv, xp.data(), nullptr, bias.data(), y + n * ys[0], yv);
      }
    if (part.out_per_group < PQ) pixel_lanes_tails<M>(p, d, wv, x, xs, part.out_per_group, bias.data(), y, ys);
  });
  return true;
}

// dgrad of a 1x1, stride-1, unpadded convolution with one group as a forward: f's x is dy, its y
// dx, its weights W^T (C x K, to be filled: transposed_weights). False for other convolutions.
inline bool pointwise_dgrad_as_fprop(const Conv2dDgradArgs& a, Conv2dFpropArgs* f) {
  const Conv2dProblem& p = a.p;
  if (p.groups != 1 || p.R != 1 || p.S != 1 || p.stride_h != 1 || p.stride_w != 1 || p.pad_h != 0 || p.pad_w != 0)
    return false;
  *f = Conv2dFpropArgs{p, a.dy, {nullptr, {p.K, 1, 1, 1}}, nullptr, a.dx};
  f->p.C = p.K, f->p.K = p.C;
  return true;
}
// wt[c][k] = w[k][c] (8x8 register transposes where w's channels are contiguous).
template <typename T>
ScratchOf<T> transposed_weights(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  ScratchOf<T> wt(p.C * p.K);
  const int64_t k8 = p.K - p.K % 8, c8 = p.C - p.C % 8;
  parallel_for(0, (p.C + 7) / 8, 4, [&](int64_t b, int64_t e) {
    for (int64_t cb = b; cb < e; ++cb) {
      const int64_t c0 = cb * 8;
      if (ws[1] == 1 && c0 < c8)
        for (int64_t k0 = 0; k0 < k8; k0 += 8) transpose8x8(w + k0 * ws[0] + c0, ws[0], wt.data() + c0 * p.K + k0, p.K);
      for (int64_t c = c0; c < std::min(p.C, c0 + 8); ++c)
        for (int64_t k = (ws[1] == 1 && c0 < c8 ? k8 : 0); k < p.K; ++k) wt.data()[c * p.K + k] = w[k * ws[0] + c * ws[1]];
    }
  });
  return wt;
}

// dgrad of a 1x1, stride-1, unpadded convolution (one group) as the pixel-lanes forward of dy with
// the transposed weights: dx_n (C x HW) = W^T (C x K) dy_n (K x HW). W^T is copied once (K C
// elements, 8x8 register transposes); on NCHW planes dy is read in place and dx written in place,
// where the channels-last engine transposed dy in and scattered dx back out to planes; with few
// pixels and big weights (res5 at batch 1) the patches of dy replace the weight packing, as in
// the forward. Where conv2d_fprop_pixel_lanes declines, so does this. A/B in one process, 2
// threads, NCHW: N=1 256->64 @56 1.9 -> 1.5 ms, 512->128 @28 1.5 -> 1.1, 2048->512 @7 3.1 -> 2.0
// (channels_last 3.5 -> 2.4); N=8 256->64 @56 18.6 -> 15.9, 1024->256 @14 11.1 -> 9.3.
// With few pixels a float W^T is not copied but read in place, W's columns as strided rows
// (strided_1x1 there): the copy was a sixth of res5 2048 -> 512's input gradient at N=1 (A/B, arms
// in random order, 2 threads: NCHW 0.71 -> 0.59 ms, channels_last 0.86 -> 0.82). With many pixels
// the copy is cheap against the multiplies, and reading channels as taps cost 8-10% (256 -> 64
// @56 N=1, 512 -> 128 @28 N=8).
template <typename T>
inline bool conv2d_dgrad_pixel_lanes(const Conv2dDgradArgs& a) {
  Conv2dFpropArgs f;
  if (a.p.dtype != dtype_of<T>() || !pointwise_dgrad_as_fprop(a, &f)) return false;
  const PixelLanesCase use = pixel_lanes_case(f.p, a.dy.stride, a.dx.stride);  // before paying for W^T
  if (!use.pointwise && !use.few_pixels) return false;
  if (std::is_same_v<T, float> && use.few_pixels) {  // W^T read in place (strided_1x1)
    const int64_t* ws = a.w.stride;
    f.w = {a.w.data, {ws[1], ws[0], ws[2], ws[3]}};
    return conv2d_fprop_pixel_lanes<T>(f);
  }
  const ScratchOf<T> wt = transposed_weights<T>(a);
  f.w.data = wt.data();
  return conv2d_fprop_pixel_lanes<T>(f);
}

// The same with a bfloat16 dot policy M, on NCHW planes (conv2d_fprop_pointwise_pairs), where the
// dot engine transposed dy into channels_last pairs and scattered dx back out (2 threads, bfloat16
// NCHW, N=8: 64 -> 256 @56 6.95 -> 4.37 ms, 256 -> 64 5.96 -> 4.39; N=1 256 -> 64 0.65 -> 0.51).
// Planes of 64+ pixels only: below, the forward's extra cases lost here to the copy of W^T (7 x 7
// 2048 -> 512 N=1 0.42 -> 0.66 ms, N=8 3.04 -> 3.55).
template <class M>
inline bool conv2d_dgrad_pointwise_pairs(const Conv2dDgradArgs& a) {
  Conv2dFpropArgs f;
  if (a.p.dtype != DType::bf16 || a.p.K % 2 != 0 || !pointwise_dgrad_as_fprop(a, &f) ||
      !pixel_lanes_case(f.p, a.dy.stride, a.dx.stride).pointwise)
    return false;
  const ScratchOf<bf16> wt = transposed_weights<bf16>(a);
  f.w.data = wt.data();
  return conv2d_fprop_pointwise_pairs<M>(f);
}

// dgrad as forward convolutions of dy, one per stride phase. Input row h receives dy row p through
// tap r when h + pad = p stride + r dil. The rows of one phase a = (h + pad) mod stride,
// h = h0 + stride j, are reached only by the taps r with r dil = a (mod stride), from dy row
// p = j + base(r), base(r) = (h0 + pad - r dil) / stride: a stride-1 convolution over j with those
// taps, the filter's k and c roles swapped. With stride 1 there is one phase and every tap.
struct DgradPhase1D {
  int64_t first, count;        // output positions first + stride j, j < count
  std::vector<int64_t> taps;   // filter taps r of this phase
  std::vector<int64_t> base;   // dy position of output j = 0 through each tap
};

inline std::vector<DgradPhase1D> dgrad_phases(int64_t in, int64_t taps, int64_t stride, int64_t pad, int64_t dil) {
  std::vector<DgradPhase1D> phases;
  for (int64_t a = 0; a < stride; ++a) {
    DgradPhase1D ph;
    ph.first = ((a - pad) % stride + stride) % stride;
    ph.count = ph.first < in ? (in - ph.first + stride - 1) / stride : 0;
    for (int64_t r = 0; r < taps; ++r) {
      if (((r * dil) % stride) != a) continue;
      ph.taps.push_back(r);
      ph.base.push_back((ph.first + pad - r * dil) / stride);  // exact: numerator = 0 mod stride
    }
    phases.push_back(ph);
  }
  return phases;
}

// dgrad of a strided convolution with few input channels (the ResNet stem: 3), its stride phases
// folded into the output channels: with h = S_h i + a, dx(c, h, w) sums dy(k, i + t, j + u) w(k, c,
// a + pad_h - S_h t, b + pad_w - S_w u) over k and the t, u that give taps inside the filter. So one
// stride-1 convolution of dy over i, j with taps t, u (the union over the phases) has S_h S_w Cg
// "out" channels (a, b, c), zero weights where a phase lacks a tap; its output is scattered to dx.
// conv2d_dgrad_direct instead runs each phase on its own, Cg of the vector's lanes busy: the stem
// (7x7, stride 2, 3 channels) fills 12 of 16 lanes here for 16 taps where a phase has 12.25 on
// average. One group, no dilation, S_h S_w Cg <= 16; float32, or bfloat16 with either policy (M:
// the folded filter is built in M's source type, float or bfloat16 bits). bfloat16 had run per
// phase (A/B, arms in random order, 2 threads, stem dgrad N=8 NCHW: AVX512-BF16 35.7 -> 14.2 ms,
// channels_last 35.2 -> 13.0; AVX2 56.7 -> 23.3; torch 30-34).
inline bool dgrad_folded_phases_apply(const Conv2dProblem& p) {  // the dtype aside
  const int64_t phases = p.stride_h * p.stride_w;
  return p.groups == 1 && p.dil_h == 1 && p.dil_w == 1 && phases > 1 && phases * p.C <= 16;
}
template <typename T, class M = FmaF32>
inline bool conv2d_dgrad_folded_phases(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t SH = p.stride_h, SW = p.stride_w, VO = SH * SW * p.C;
  if (p.dtype != dtype_of<T>() || !dgrad_folded_phases_apply(p)) return false;
  // The phases of dgrad_phases: output h = first + S_h i reads dy row i + base through tap r; here
  // first < S_h is the folded channel's a and base its tap t (dy rows i + t, t_lo <= t <= t_hi).
  const std::vector<DgradPhase1D> rows = dgrad_phases(p.H, p.R, SH, p.pad_h, 1);
  const std::vector<DgradPhase1D> cols = dgrad_phases(p.W, p.S, SW, p.pad_w, 1);
  auto base_range = [](const std::vector<DgradPhase1D>& phases, int64_t* lo, int64_t* hi) {
    *lo = INT64_MAX, *hi = INT64_MIN;
    for (const DgradPhase1D& ph : phases)
      for (int64_t b : ph.base) *lo = std::min(*lo, b), *hi = std::max(*hi, b);
  };
  int64_t t_lo, t_hi, u_lo, u_hi;
  base_range(rows, &t_lo, &t_hi);
  base_range(cols, &u_lo, &u_hi);
  const int64_t I = (p.H + SH - 1) / SH, J = (p.W + SW - 1) / SW, TT = t_hi - t_lo + 1, TU = u_hi - u_lo + 1;
  // dy rows i + t for i < I: from t_lo to I - 1 + t_hi (zeros outside 0 .. P - 1); the packing pads
  // both sides alike. Unpadded, a channels-last dy is read in place, as in conv2d_dgrad_direct.
  const int64_t pad_h = std::max({int64_t(0), -t_lo, I - 1 + t_hi - (p.P - 1)});
  const int64_t pad_w = std::max({int64_t(0), -u_lo, J - 1 + u_hi - (p.Q - 1)});
  const PackedActivations<M> dyp = pack_activations_for<M>(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K,
                                                            p.P, p.Q, 1, pad_h, pad_w, p.P + 2 * pad_h, p.Q + 2 * pad_w,
                                                            true);
  // The folded filter wf[vo][k][t][u], vo = (a S_W + b) Cg + c.
  using WT = std::conditional_t<M::kChannels == 2, bf16, float>;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  const int64_t taps = TT * TU;
  std::vector<WT> wf(VO * p.K * taps, WT{});  // zeros (bfloat16: zero bits)
  const auto weight = [](const T* at) {
    if constexpr (std::is_same_v<WT, float>) return load_acc(at);
    else return *at;
  };
  for (const DgradPhase1D& pr : rows)
    for (const DgradPhase1D& pc : cols)
      for (size_t i = 0; i < pr.taps.size(); ++i)
        for (size_t j = 0; j < pc.taps.size(); ++j)
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t k = 0; k < p.K; ++k)
              wf[(((pr.first * SW + pc.first) * p.C + c) * p.K + k) * taps + (pr.base[i] - t_lo) * TU +
                 (pc.base[j] - u_lo)] = weight(w + k * ws[0] + c * ws[1] + pr.taps[i] * ws[2] + pc.taps[j] * ws[3]);
  const auto& dyv = dyp.view;
  DirectConvPlan d{p.N, 1, dyp.per_group, VO, I, J, dyv.sh, dyv.sw, {}};
  WeightSource<WT> weights{wf.data(), 0, p.K * taps, taps, p.K, {}};
  for (int64_t t = t_lo; t <= t_hi; ++t)
    for (int64_t u = u_lo; u <= u_hi; ++u) {
      weights.tap_offset.push_back((t - t_lo) * TU + (u - u_lo));
      d.tap_offset.push_back((t + pad_h) * dyv.sh + (u + pad_w) * dyv.sw);
    }
  // Out channels (a, b, c) of pixel (n, i, j) at folded[((n I + i) J + j) VO + vo], then scattered.
  const int64_t fs[4] = {I * J * VO, 1, J * VO, VO};
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t* xs = a.dx.stride;
  // Folded pixel j's phase-b channels are dx pixel j S_W + b's: walked in that order, with no
  // division per element (a run-time x / S_W and x % S_W per element had taken a third of
  // MobileNetV2's stem input gradient).
  const auto scatter = [&]<typename S>(const S* folded) {
    parallel_for(0, p.N * p.H, 8, [&](int64_t b, int64_t e) {
      for (int64_t nh = b; nh < e; ++nh) {
        const int64_t n = nh / p.H, h = nh % p.H, i = h / SH, ph = h % SH;
        const S* src = folded + (n * I + i) * J * VO + ph * SW * p.C;
        T* row = dx + n * xs[0] + h * xs[2];
        for (int64_t j = 0, x = 0; j < J; ++j)
          for (int64_t pb = 0; pb < SW && x < p.W; ++pb, ++x) {
            const S* s = src + j * VO + pb * p.C;
            for (int64_t c = 0; c < p.C; ++c) {
              if constexpr (std::is_same_v<S, T>) row[c * xs[1] + x * xs[3]] = s[c];
              else store_from(row + c * xs[1] + x * xs[3], s[c]);
            }
          }
      }
    });
  };
  // On AMX tiles the folded outputs are rounded to bfloat16 as they are stored: each is one dx
  // element, rounded once either way. (Separate runs, Xeon, 2 threads, ResNet stem N=8, against
  // the vector tile: channels_last 17.6 -> 3.2 ms, NCHW 18.5 -> 4.0.)
  if constexpr (M::kTiles && std::is_same_v<T, bf16>) {
    if (M::tiles_apply(d, fs)) {
      ScratchOf<bf16> folded(p.N * I * J * VO);
      const auto wp = pack_weights<M>(d, M::kTileChannels, weights);
      M::tile_conv(d, dyv, wp.data(), nullptr, folded.data(), fs);
      scatter(static_cast<const bf16*>(folded.data()));
      return true;
    }
  }
  ScratchOf<float> folded(p.N * I * J * VO);
  with_tile(VO, taps * dyp.per_group, [&]<int MR, int NV>() {
    const auto wp = pack_weights<M>(d, NV * VecF32::kLanes, weights);
    direct_conv<M, MR, NV>(d, dyv, wp.data(), nullptr, nullptr, folded.data(), fs);
  });
  scatter(static_cast<const float*>(folded.data()));
  return true;
}

// Any channel count: even the stem's 3 input channels (3 of 16 lanes busy) beat the reference.
template <typename T, class M = FmaF32>
inline bool conv2d_dgrad_direct(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.dtype != dtype_of<T>()) return false;
  const std::vector<DgradPhase1D> rows = dgrad_phases(p.H, p.R, p.stride_h, p.pad_h, p.dil_h);
  const std::vector<DgradPhase1D> cols = dgrad_phases(p.W, p.S, p.stride_w, p.pad_w, p.dil_w);
  // Pad dy so that every phase's taps read inside it: [lo, hi] is the range of dy positions read.
  auto pad_for = [](const std::vector<DgradPhase1D>& phases, int64_t size, int64_t* before, int64_t* after) {
    int64_t lo = 0, hi = size - 1;
    for (const DgradPhase1D& ph : phases)
      for (int64_t b : ph.base)
        if (ph.count > 0) lo = std::min(lo, b), hi = std::max(hi, b + ph.count - 1);
    *before = -lo;
    *after = hi - (size - 1);
  };
  int64_t top, bottom, left, right;
  pad_for(rows, p.P, &top, &bottom);
  pad_for(cols, p.Q, &left, &right);
  // pack_activations pads symmetrically: pad by the larger side, offset reads by the difference.
  // Unpadded (1x1 convolutions), a channels-last dy is read in place: its copy cost the 1x1
  // 64 -> 256 @56 N=8 dgrad 6.2 -> 4.6 ms.
  const int64_t pad_h = std::max(top, bottom), pad_w = std::max(left, right), Hp = p.P + 2 * pad_h, Wp = p.Q + 2 * pad_w;
  const T* w = static_cast<const T*>(a.w.data);
  const int64_t* ws = a.w.stride;
  T* dx = static_cast<T*>(a.dx.data);
  const int64_t* xs = a.dx.stride;
  // The plan of phase (ph_r, ph_s) over dy laid out as dyv (kin packed elements per pixel and
  // group), and its weights: the filter with k and c swapped, "out" channel c reading w[g Kg +
  // k][c] over "in" channels k.
  const auto phase_plan = [&](const DgradPhase1D& ph_r, const DgradPhase1D& ph_s,
                              const NhwcViewOf<typename M::Elem>& dyv, int64_t kin, WeightSource<T>* weights) {
    DirectConvPlan d{p.N, p.groups, kin, Cg, ph_r.count, ph_s.count, dyv.sh, dyv.sw, {}};
    *weights = WeightSource<T>{w, Kg * ws[0], ws[1], ws[0], Kg, {}};
    for (size_t i = 0; i < ph_r.taps.size(); ++i)
      for (size_t jj = 0; jj < ph_s.taps.size(); ++jj) {
        // A row's taps left to right in dy (the bases fall as the taps rise): run_row_reuse
        // reads them so.
        const size_t j = ph_s.taps.size() - 1 - jj;
        weights->tap_offset.push_back(ph_r.taps[i] * ws[2] + ph_s.taps[j] * ws[3]);
        d.tap_offset.push_back((ph_r.base[i] + pad_h) * dyv.sh + (ph_s.base[j] + pad_w) * dyv.sw);
      }
    return d;
  };
  // Grouped and of one phase (stride 1), the row tiles read dy as group blocks, as the forward
  // reads x (conv2d_fprop_direct; in-process A/B, arms in random order, Xeon, 2 threads: 512 @14
  // g32 N=1 1.34x channels_last, 1.40x NCHW, N=8 1.04x and 1.14x; 1024 @7 1.06-1.14x; one
  // thread 1.01-1.10x).
  if constexpr (M::kChannels == 1) {
    const int64_t block = group_block_floats(Hp, Wp, Kg);
    const NhwcViewOf<float> blocks{nullptr, p.groups * block, Wp * Kg, Kg};  // (a plan needs the strides only)
    WeightSource<T> weights;
    if (p.groups > 1 && rows.size() == 1 && cols.size() == 1 && rows[0].count > 0 && cols[0].count > 0) {
      const DirectConvPlan d = phase_plan(rows[0], cols[0], blocks, Kg, &weights);
      if (row_reuse_applies(d, blocks.sw)) {
        const ScratchOf<float> dyb = pack_group_blocks(static_cast<const T*>(a.dy.data), a.dy.stride, p.N,
                                                       p.groups, Kg, p.P, p.Q, pad_h, pad_w, Hp, Wp);
        const NhwcViewOf<float> dyv{dyb.data(), blocks.sn, blocks.sh, blocks.sw};
        const int64_t ys[4] = {xs[0], xs[1], p.stride_h * xs[2], p.stride_w * xs[3]};
        return run_row_reuse<M>(d, dyv, weights, static_cast<const float*>(nullptr),
                                dx + rows[0].first * xs[2] + cols[0].first * xs[3], ys, block);
      }
    }
  }
  const PackedActivations<M> dyp = pack_activations_for<M>(static_cast<const T*>(a.dy.data), a.dy.stride, p.N, p.K,
                                                            p.P, p.Q, p.groups, pad_h, pad_w, Hp, Wp, true);
  const auto& dyv = dyp.view;
  const int64_t kin = dyp.per_group;
  // Column stride 2 over 3 taps and a column of padding, even widths, 16 or 32 outputs a group
  // (ResNeXt's 512 @28 /2, 1024 @14 /2): per row phase, row tiles over both column phases
  // (kDgradStride2). Every row phase needs taps (a phase without stores zeros, below). In-process
  // A/B against the phases, arms in random order, Xeon, 2 threads, 32 groups: 512 @28 /2 N=8
  // channels_last 1.58 -> 1.25 ms, NCHW 3.07 -> 1.87, N=1 0.239 -> 0.205, 0.385 -> 0.231; 1024 @14
  // /2 (8-pixel tiles over rows of 14: 2 of 16 pixels computed twice) N=8 NCHW 2.15 -> 1.53, N=1
  // channels_last 0.341 -> 0.297, NCHW 0.561 -> 0.333, but N=8 channels_last 1.23 -> 1.29.
  {
    bool pairs = p.stride_w == 2 && p.S == 3 && p.dil_w == 1 && p.pad_w == 1 && p.W % 2 == 0 &&
                 (VecF32::kLanes == 16 ? Cg == 16 || Cg == 32 : Cg == 8) && p.W >= 8;
    for (const DgradPhase1D& ph_r : rows) pairs = pairs && (ph_r.count == 0 || !ph_r.taps.empty());
    // The dot engine too (in-process A/B against the phases, arms in random order, Zen 5, 2
    // threads, bfloat16: 512 @28 /2 g32 N=8 NCHW 1.48 -> 0.74 ms, channels_last 0.55 -> 0.42,
    // N=1 1.7x / 1.3x; 32 -> 16 @112 /2 NCHW 2.1x, channels_last 1.2x; 1024 @14 /2 g32 NCHW
    // 1.4x), but not channels_last with 32 a group, whose 8-pixel tiles over rows of 14 compute
    // 16 (1024 @14 /2 N=8 0.35 -> 0.39 ms).
    if (M::kChannels == 2 && xs[1] == 1 && Cg == 32) pairs = false;
    if constexpr (M::kTiles) {
      // Where AMX tiles take the phases (below), they keep them: the pairs have not run there.
      if (pairs) {
        WeightSource<T> unused;
        const int64_t ys[4] = {xs[0], xs[1], p.stride_h * xs[2], p.stride_w * xs[3]};
        pairs = !M::tiles_apply(phase_plan(rows[0], cols[0], dyv, kin, &unused), ys);
      }
    }
    if (pairs) {
      const int64_t ys[4] = {xs[0], xs[1], p.stride_h * xs[2], xs[3]};
      for (const DgradPhase1D& ph_r : rows) {
        if (ph_r.count == 0) continue;
        DirectConvPlan d{p.N, p.groups, kin, Cg, ph_r.count, p.W, dyv.sh, dyv.sw, {}};
        WeightSource<T> weights{w, Kg * ws[0], ws[1], ws[0], Kg, {}};
        for (size_t i = 0; i < ph_r.taps.size(); ++i)
          for (int64_t s = 0; s < 3; ++s) {
            weights.tap_offset.push_back(ph_r.taps[i] * ws[2] + s * ws[3]);
            // Tile column j: dy column q0 / 2 + j (padded: + pad_w); the three entries as a
            // three-tap row (row_reuse_applies), the tiles reading the first.
            d.tap_offset.push_back((ph_r.base[i] + pad_h) * dyv.sh + (pad_w + s) * dyv.sw);
          }
        if (!run_row_reuse<M>(d, dyv, weights, static_cast<const float*>(nullptr), dx + ph_r.first * xs[2], ys, -1,
                              true))
          pairs = false;  // (not reached: the checks above match run_row_reuse's)
      }
      if (pairs) return true;
    }
  }
  // A strided NCHW dx goes through channels-last scratch, transposed into planes at the end
  // (finish_output): each phase's tiles would store every other element of a plane row (the
  // interleaved columns) element by element, and the phases came back to each line in turn;
  // where the planes lie a power of two apart, those lines share cache sets and were evicted
  // between the visits. In-process A/B, arms in random order, Zen 5, 2 threads, NCHW N=8,
  // bfloat16 / float32: 3x3 /2 96 @64 7.2x / 4.1x, 128 @56 1.59x / 1.31x, 256 @28 1.09x / 1.15x,
  // 512 @14 1.14x; 1x1 /2 256 -> 512 @56 1.63x / 1.32x, 512 -> 1024 @28 1.45x / 1.24x; the
  // stems (3 channels) 0.98-1.09x.
  ScratchOf<T> dx_scratch(0);
  const bool via_channels_last = xs[1] != 1 && (p.stride_h > 1 || p.stride_w > 1);
  const OutputTarget<T> target =
      via_channels_last ? channels_last_output(dx, xs, p.N, p.C, p.H, p.W, dx_scratch) : OutputTarget<T>{};
  T* const dxo = via_channels_last ? target.view.data : dx;
  const int64_t scratch_strides[4] = {target.view.sn, 1, target.view.sh, target.view.sw};
  const int64_t* const xso = via_channels_last ? scratch_strides : xs;
  for (const DgradPhase1D& ph_r : rows) {
    for (const DgradPhase1D& ph_s : cols) {
      if (ph_r.count == 0 || ph_s.count == 0) continue;
      WeightSource<T> weights;
      const DirectConvPlan d = phase_plan(ph_r, ph_s, dyv, kin, &weights);
      const int64_t ys[4] = {xso[0], xso[1], p.stride_h * xso[2], p.stride_w * xso[3]};
      T* y = dxo + ph_r.first * xso[2] + ph_s.first * xso[3];
      if constexpr (M::kTiles) {
        if (M::tiles_apply(d, ys)) {
          const auto wp = pack_weights<M>(d, M::kTileChannels, weights);
          M::tile_conv(d, dyv, wp.data(), nullptr, y, ys);
          continue;
        }
      }
      if (run_row_reuse<M>(d, dyv, weights, static_cast<const float*>(nullptr), y, ys)) continue;
      if (with_group_bundle<M>(p.groups, kin, Cg, [&]<int MR, int NV, int NG, int GI>() {
            const auto wp = pack_weights<M>(d, NV / NG * VecF32::kLanes, weights, NG);
            direct_conv<M, MR, NV, VecF32::kLanes, NG, GI>(bundled(d, NG), dyv, wp.data(), nullptr, nullptr, y, ys);
          }))
        continue;
      with_tile<true>(Cg, int64_t(weights.tap_offset.size()) * kin, [&]<int MR, int NV, int LastL = VecF32::kLanes>() {
        const auto wp = pack_weights<M>(d, tile_channels<NV, LastL>(), weights);
        direct_conv<M, MR, NV, LastL>(d, dyv, wp.data(), nullptr, nullptr, y, ys);  // no taps: writes zeros
      });
    }
  }
  if (via_channels_last) finish_output(target, dx, xs, p.N, p.C, p.H, p.W);
  return true;
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
