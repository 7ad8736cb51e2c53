// AVX-512 BF16 bfloat16 conv2d fprop, dgrad and wgrad: the direct-convolution engines of
// ../simd/conv2d_direct.h and conv2d_wgrad.h (same plans, packing and tiles: one engine each) with
// the multiply-add policy DotBf16 below. This file alone is built with -mavx512bf16 and the AMX
// flags (CMakeLists.txt); the avx512 table calls it only where CPUID reports avx512_bf16
// (kernel_table.inc), else the float engine runs.
//
//   DotBf16  packed elements are 32-bit pairs of bfloat16 input channels (2i in the low half,
//            2i + 1 in the high half), within a group (an odd group gets a zero channel). Per pair
//            of a tap: NV weight vectors (16 output channels x 2 input channels each), MR
//            broadcast pairs, MR x NV vdpbf16ps: twice the multiply-adds of an FMA per
//            instruction, the same 6 x 64 register tile. A channels_last bfloat16 input with an
//            even channel count and no padding is already in that layout and is read in place.
//            wgrad pairs output pixels instead (see conv2d_wgrad.h; an odd output width's last
//            column pairs with zeros), and its 1x1 case runs conv2d_wgrad_1x1's chunked panels
//            with pixel pairs. A 1x1 on NCHW planes (fprop, and dgrad with W^T) runs with
//            the roles swapped, output pixels as lanes and W's pairs broadcast in place
//            (conv2d_fprop_pointwise_pairs), as the float engine does.
//   AMX      where the host has AMX-BF16 (and the mode allows: Bf16Dot in ../kernels.h), layers
//            run on tile registers instead (TDPBF16PS: 16 x 16 x 32 multiply-adds): the forward
//            (32k input channels, or 32 or fewer a group) and input gradient (likewise its output
//            channels) with the same packed operands (amx_conv; grouped layers of 16+ outputs a
//            group, and of 2-8 bundled into 16: amx_bundle), the one-group weight gradient with
//            pixel pairs (amx_wgrad).
//
// Numerics: vdpbf16ps forms both bfloat16 products exactly (8-bit significands) and adds them to
// the float32 accumulator with round-to-nearest-even, like the float engine's FMAs; it differs in
// summation order (the pair's two products go in together) and in treating denormal inputs and
// results as zero (DAZ/FTZ, whatever MXCSR says). Results are rounded once to bfloat16, as in the
// float engine: they agree with it to within one bfloat16 ulp where the float sums straddle a
// rounding boundary (tests/test_conv2d.py).
#include "../kernels.h"
#if defined(__x86_64__)
// GCC 12 flags the _mm512_undefined_* pass-through operands inside the widening and narrowing
// intrinsics (vec.h's bfloat16 conversions) as maybe-uninitialized (GCC bug 105593): a false
// positive, silenced here as in max_pool2d_avx512.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>

#define CNNKERNELS_KERNEL_NS avx512bf16
#include "../simd/conv2d_direct.h"
#include "../simd/conv2d_grouped.h"
#include "../simd/conv2d_wgrad_1x1.h"

namespace cnnkernels {
namespace avx512bf16 {
namespace {

struct DotBf16 {
  // The forward and the input gradient run on AMX tiles where they apply and are enabled
  // (Bf16Dot::kAuto or kAmx on a host with AMX-BF16; below), else on conv2d_direct.h's vector tile.
  static constexpr bool kTiles = true;
  static constexpr int64_t kTileChannels = 32;  // packed output channels per block for the AMX tiles
  static bool tiles_apply(const DirectConvPlan& d, const int64_t* ys);
  static void tile_conv(const DirectConvPlan& d, const NhwcViewOf<uint32_t>& x, const uint32_t* wp,
                        const float* bias, bf16* y, const int64_t ys[4]);
  using Elem = uint32_t;
  using In = __m512bh;
  static constexpr int kChannels = 2;
  static In load(const Elem* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static In broadcast(const Elem* p) {
    uint32_t v;  // the pair may sit in bfloat16 storage read in place
    std::memcpy(&v, p, sizeof v);
    return (__m512bh)_mm512_set1_epi32(static_cast<int>(v));
  }
  static __m512 madd(In x, In w, __m512 acc) { return _mm512_dpbf16_ps(acc, x, w); }
  // The low 8 lanes alone (the half vector of a tile, conv2d_direct.h's conv_tile).
  static In load_half(const Elem* p) {
    return (In)_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 madd_half(In x, In w, __m512 acc) {
    const auto low = [](In v) { return (__m256bh)_mm512_castsi512_si256((__m512i)v); };
    return _mm512_castps256_ps512(_mm256_dpbf16_ps(_mm512_castps512_ps256(acc), low(x), low(w)));
  }
};

// ---- AMX: the same packed operands on tile registers ---------------------------------------------
//
// TDPBF16PS multiplies a 16 x 32 bfloat16 tile A by a 16 x (16 pairs) tile B into 16 x 16 float
// sums: C[m][n] += sum over pairs i of A[m][2i] B[i][2n] + A[m][2i + 1] B[i][2n + 1]. A's rows are
// pixels holding 16 channel pairs (64 bytes): the packed activations (channels-last pairs) as they
// are. B's rows are channel pairs holding 16 output channels' pairs: the packed weights
// wp[g][kb][tap][i][KB] with KB = 32, two tiles side by side. A work item is 32 pixels x 32
// output channels of one group: four C tiles, two A, two B (the 8 tile registers), over every tap
// and 16-pair chunk (a group's 16 or fewer outputs: two C tiles, one B). Where an A tile's 16
// pixels lie one pixel step apart (a run along an output row, rows of a padded input read end to
// end (AmxPixels), or the whole image of an unpadded 1x1), A loads straight from the activations
// with that row stride; else the 16 rows are copied into a buffer first. The C tiles go out
// through a float buffer: + bias, rounded once to bfloat16 (as the vector engines round), stored
// as channels-last rows or, for NCHW, runs of a channel's pixels. Like vdpbf16ps, the tiles treat
// denormal inputs as zero; the sums' order differs from the vector engine's, so results may
// differ from it by one bfloat16 ulp, rarely (tests/test_conv2d.py).

// Whether this process may use AMX: CPUID's AMX-TILE and AMX-BF16, and Linux's permission for
// the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM), asked once.
bool amx_usable() {
  static const bool usable = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool amx_bf16 = edx & (1u << 22), amx_tile = edx & (1u << 24);
    if (!amx_bf16 || !amx_tile) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

// Lanes [0, n) of 16 (none for n <= 0, all for n >= 16).
inline __mmask16 mask_first(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : __mmask16((1u << n) - 1); }

// v[i] lane j <- v[j] lane i: a 16 x 16 transpose of 32-bit elements (4 rounds of 16 shuffles).
inline void transpose16x16_epi32(__m512i v[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Each 128-bit lane now holds a 4 x 4 block; gather the blocks.
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_i32x4(v[i], v[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_i32x4(v[i], v[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    v[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    v[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
    v[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
  }
}

// The LDTILECFG memory layout, palette 1, as both AMX kernels use the 8 tiles: 0-3 the float sums
// (16 rows x 16 floats), 4-5 A (16 rows of kc pairs), 6-7 B (kc rows of 16 pairs).
struct TileConfig {
  uint8_t palette_id = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  explicit TileConfig(int kc = 16) {
    for (int t = 0; t < 8; ++t) rows[t] = 16, colsb[t] = 64;
    colsb[4] = colsb[5] = uint16_t(kc * 4);
    rows[6] = rows[7] = uint8_t(kc);
  }
};

// The four sum tiles as one 32 x 32 float block, rows 128 bytes apart.
inline void zero_sums() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}
inline void load_sums(const float* s) {
  _tile_loadd(0, s, 128);
  _tile_loadd(1, s + 16, 128);
  _tile_loadd(2, s + 16 * 32, 128);
  _tile_loadd(3, s + 16 * 32 + 16, 128);
}
// half: only the left two (channels 0-15), the others unused.
inline void store_sums(float* s, bool half = false) {
  _tile_stored(0, s, 128);
  _tile_stored(2, s + 16 * 32, 128);
  if (half) return;
  _tile_stored(1, s + 16, 128);
  _tile_stored(3, s + 16 * 32 + 16, 128);
}

// The pairs of a TDPBF16PS step over a reduction of `pairs` a tap: all of them up to 16 (the stem's
// folded 7 x 2), else the largest divisor from 16 down to 8 (MobileNetV2's 144 channels: 72 pairs
// in steps of 12); 0 where none divides them (the tiles do not take the layer).
constexpr int64_t amx_chunk_pairs(int64_t pairs) {
  if (pairs <= 16) return pairs;
  for (int64_t kc = 16; kc >= 8; --kc)
    if (pairs % kc == 0) return kc;
  return 0;
}

// The pixels the AMX tile computes per item and the output channels per packed block.
constexpr int64_t kAmxPixels = 32, kAmxChannels = DotBf16::kTileChannels;

// The pixels of an AMX tile: output rows of wq >= Q columns, of which the first Q are real (an
// image's last row has those alone). Where the input's row step is wq pixel steps (stride 1 over
// padded rows: wq = Q + S - 1), consecutive pixels of an image read the input a pixel step apart
// across the rows too, so that A tiles load in place; the wq - Q columns past a row's end compute
// sums nobody stores. Their reads stay inside the image: each lies below the read of the next
// row's first pixel at the same tap.
struct AmxPixels {
  int64_t wq, per_image, total;
  AmxPixels(const DirectConvPlan& d, int64_t wq_)
      : wq(wq_), per_image(d.P > 0 ? (d.P - 1) * wq_ + d.Q : 0), total(d.N * per_image) {}
  // x_off and y_off of pixels [i0, i0 + m); returns the real ones' bits.
  uint32_t offsets(const DirectConvPlan& d, const NhwcViewOf<uint32_t>& x, const int64_t ys[4], int64_t i0, int m,
                   int64_t* x_off, int64_t* y_off) const {
    int64_t n = i0 / per_image, p = i0 % per_image / wq, q = i0 % per_image % wq;
    uint32_t real = 0;
    for (int mi = 0; mi < m; ++mi) {
      x_off[mi] = n * x.sn + p * d.row_step + q * d.pixel_step;
      y_off[mi] = n * ys[0] + p * ys[2] + q * ys[3];
      if (q < d.Q) real |= 1u << mi;
      if (++q == (p == d.P - 1 ? d.Q : wq)) {
        q = 0;
        if (++p == d.P) p = 0, ++n;
      }
    }
    return real;
  }
};

// The AMX tiles: y = conv(x, w) + bias over a plan whose in_per_group is a multiple of 16 pairs
// (or fewer: one chunk), y of element strides ys in (n, channel, h, w) order; wp packed by
// pack_weights with KB = kAmxChannels. A group's block of 16 or fewer outputs runs half the tiles
// (sums 0 and 2 over B tile 6): grouped layers of 16 outputs a group (ResNeXt's 512 @14).
void amx_conv(const DirectConvPlan& d, const NhwcViewOf<uint32_t>& x, const uint32_t* wp, const float* bias,
              bf16* y, const int64_t ys[4]) {
  constexpr int64_t KB = kAmxChannels;
  static_assert(KB == 32, "the sums are one 32 x 32 block (store_sums)");
  const int64_t nkb = (d.out_per_group + KB - 1) / KB, nblocks = d.groups * nkb, taps = int64_t(d.tap_offset.size());
  // The reduction runs in chunks of amx_chunk_pairs: A's rows and B's row count are set to it.
  const int64_t cin = d.in_per_group, kc = amx_chunk_pairs(cin), chunks = cin / kc;
  // Rows of wq columns where those read the input in one run (AmxPixels) and waste at most a
  // quarter of the sums: the 14-wide rows of 3 x 3 layers at 16, 7 at 9. Else rows of Q.
  int64_t wq = d.Q;
  if (d.pixel_step > 0 && d.row_step % d.pixel_step == 0) {
    const int64_t run = d.row_step / d.pixel_step;
    if (run >= d.Q && (run - d.Q) * 4 <= run) wq = run;
  }
  const AmxPixels tiles(d, wq);
  const int64_t pixels = tiles.total, ntiles = (pixels + kAmxPixels - 1) / kAmxPixels;
  std::vector<float> bias_blocks(nblocks * KB, 0.0f);
  if (bias)
    for (int64_t g = 0; g < d.groups; ++g)
      for (int64_t o = 0; o < d.out_per_group; ++o)
        bias_blocks[(g * nkb + o / KB) * KB + o % KB] = bias[g * d.out_per_group + o];
  // Items run the blocks of outputs in groups whose packed weights take at most 1 MB (all of them
  // where they fit), each group over every pixel tile, the group's blocks inner: consecutive items
  // share their pixel tile (A stays in L1) and the group's B tiles stay in L2. Where a layer has
  // under 32 pixel tiles, a group is one block (tiles inner: each B tile is read from L3 or DRAM
  // once per thread, not once per pixel tile; res5's 9.4 MB at N=1 were read twice). In-process
  // A/B against one-block groups there, arms in random order, Xeon, 2 threads, N=8 channels_last
  // forward (input gradient): 3x3 256 @56 (4 blocks a group) 15.7 -> 13.4 ms (16.0 -> 13.5), 512
  // @28 (3) 15.0 -> 13.4 (15.5 -> 14.0), 256 @14 (56 tiles) 1.06x (1.02x); N=1 256 @56 1.26x; NCHW
  // 256 @56 1.08x. With fewer tiles it lost (512 @7, 16 tiles: 0.96x; N=1 512 @28, 27 tiles:
  // 0.985x), and groups of 2 or 4 MB lost at 512 @28 (0.86x, 0.63x).
  const int64_t block_bytes = taps * cin * KB * int64_t(sizeof(uint32_t));
  const int64_t per_group = nblocks * block_bytes <= (int64_t(1) << 20) ? nblocks
                            : ntiles < 32 ? 1
                                          : std::clamp<int64_t>((int64_t(1) << 20) / block_bytes, 1, nblocks);
  const bool blocks_inner = per_group == nblocks;
  // A 1x1 layer's A tiles stream x (each pixel read once per block of outputs): while a pixel tile
  // runs, its steps prefetch the next tile's pixels into L2, spread evenly over the tile's steps.
  // In-process A/B, arms in random order, Xeon, 2 threads, N=8 channels_last forward (input
  // gradient): 1x1 256 -> 64 @56 0.83 -> 0.62 ms, 512 -> 128 @28 1.07x (1.04x), 128 -> 512 1.02x
  // (1.05x), 64 -> 256 @56 1.04x; NCHW 1.02-1.06x; 2048 -> 512 @7 level. Into L1 gained less (256
  // -> 64 1.23x); 3 x 3 layers (taps reading the same lines) moved 0.95-1.04x, so they go without.
  const bool prefetch_x = blocks_inner && d.groups == 1 && taps == 1;
  const int64_t prefetch_lines = kAmxPixels * d.pixel_step * int64_t(sizeof(uint32_t)) / 64;
  const int64_t prefetch_per_step = (prefetch_lines + nblocks * chunks - 1) / std::max<int64_t>(1, nblocks * chunks);
  parallel_for(0, nblocks * ntiles, 1, [&](int64_t b, int64_t e) {
    const TileConfig cfg{int(kc)};
    _tile_loadconfig(&cfg);
    alignas(64) uint32_t rows[2][16 * 16];
    alignas(64) float sums[kAmxPixels * KB];
    int64_t x_off[kAmxPixels], y_off[kAmxPixels], offsets_of = -1;
    uint32_t real = 0;
    bool run[2] = {};
    const char* prefetch_at = nullptr;  // the next tile's pixels, prefetch_left lines of them
    int64_t prefetch_left = 0;
    for (int64_t item = b; item < e; ++item) {
      const int64_t q = item / (ntiles * per_group), rem = item - q * ntiles * per_group;
      const int64_t size = std::min(per_group, nblocks - q * per_group);
      const int64_t tile = rem / size, gk = q * per_group + rem % size;
      const int64_t g = gk / nkb, i0 = tile * kAmxPixels, o0 = (gk % nkb) * KB, olen = std::min(KB, d.out_per_group - o0);
      const int m = int(std::min(kAmxPixels, pixels - i0));
      if (i0 != offsets_of) {  // the tile's pixel offsets
        real = tiles.offsets(d, x, ys, i0, m, x_off, y_off);
        for (int mi = m; mi < kAmxPixels; ++mi) x_off[mi] = x_off[0], y_off[mi] = y_off[0];  // computed, unused
        for (int h = 0; h < 2; ++h) {
          run[h] = true;
          for (int r = 1; r < 16; ++r) run[h] = run[h] && x_off[16 * h + r] == x_off[16 * h] + r * d.pixel_step;
        }
        offsets_of = i0;
        if (prefetch_x) {
          prefetch_at = reinterpret_cast<const char*>(x.data + x_off[m - 1] + d.pixel_step);
          prefetch_left = prefetch_lines;
        }
      }
      const uint32_t* xg = x.data + g * cin;
      const uint32_t* wblk = wp + gk * taps * cin * KB;
      const bool half = olen <= 16;
      zero_sums();
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t c = 0; c < chunks; ++c) {
          const int64_t at = d.tap_offset[t] + c * kc;
          for (int h = 0; h < 2; ++h)
            if (!run[h])
              for (int r = 0; r < 16; ++r)
                _mm512_store_si512(rows[h] + r * 16,
                                   _mm512_maskz_loadu_epi32(mask_first(kc), xg + x_off[16 * h + r] + at));
          if (run[0]) _tile_loadd(4, xg + x_off[0] + at, d.pixel_step * 4);
          else _tile_loadd(4, rows[0], 64);
          if (run[1]) _tile_loadd(5, xg + x_off[16] + at, d.pixel_step * 4);
          else _tile_loadd(5, rows[1], 64);
          const uint32_t* wt = wblk + (t * cin + c * kc) * KB;
          for (int64_t i = 0; i < prefetch_per_step && prefetch_left > 0; ++i, --prefetch_left, prefetch_at += 64)
            _mm_prefetch(prefetch_at, _MM_HINT_T1);
          _tile_loadd(6, wt, KB * 4);
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(2, 5, 6);
          if (!half) {
            _tile_loadd(7, wt + 16, KB * 4);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
      store_sums(sums, half);
      if (ys[1] == 1) {  // channels-last: a pixel's 32 channels are one row of the sums
        const __mmask16 lo = mask_first(olen), hi = mask_first(olen - 16);
        const __m512 b0 = _mm512_loadu_ps(bias_blocks.data() + gk * KB);
        const __m512 b1 = _mm512_loadu_ps(bias_blocks.data() + gk * KB + 16);
        for (int mi = 0; mi < m; ++mi) {
          if (!(real >> mi & 1)) continue;
          bf16* out = y + y_off[mi] + g * d.out_per_group + o0;
          _mm256_mask_storeu_epi16(out, lo, bf16_bits16(_mm512_add_ps(_mm512_load_ps(sums + mi * KB), b0)));
          if (!half)
            _mm256_mask_storeu_epi16(out + 16, hi,
                                     bf16_bits16(_mm512_add_ps(_mm512_load_ps(sums + mi * KB + 16), b1)));
        }
      } else {  // NCHW: 16 pixels x 8 channels at a time transposed (a channel's 16 pixels, one
                // vector), then each run of real pixels whose outputs lie 1 or 2 elements apart (a
                // plane's row, or rows end to end; a stride-2 input gradient's column phase)
                // compressed (and spread) and stored whole
        const int64_t step = ys[3];
        const __m512i spread = _mm512_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 7, 7, 6,
                                                6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
        alignas(64) float channels[KB * 16];
        for (int h = 0; h < 2 && 16 * h < m; ++h) {
          const int n16 = std::min(16, m - 16 * h);
          const uint32_t real16 = real >> (16 * h) & 0xffff;
          const int64_t* yo = y_off + 16 * h;
          struct Run {
            __mmask16 lanes;
            int64_t at;
            int len;
          } runs[16];
          int nruns = 0;
          const bool runs_ok = step == 1 || step == 2;
          for (int r = 0; r < n16; ++r) {
            if (!(real16 >> r & 1)) continue;
            Run* last = nruns > 0 ? &runs[nruns - 1] : nullptr;
            if (runs_ok && last && last->lanes >> (r - 1) & 1 && yo[r] == last->at + step * last->len) {
              last->lanes |= __mmask16(1u << r);
              ++last->len;
            } else {
              runs[nruns++] = {__mmask16(1u << r), yo[r], 1};
            }
          }
          for (int64_t c8 = 0; c8 < olen; c8 += 8) transpose16x8(sums + 16 * h * KB + c8, KB, channels + c8 * 16, 16);
          for (int64_t o = 0; o < olen; ++o) {
            const __m512 v = _mm512_add_ps(_mm512_load_ps(channels + o * 16), _mm512_set1_ps(bias_blocks[gk * KB + o]));
            bf16* out = y + (g * d.out_per_group + o0 + o) * ys[1];
            for (int i = 0; i < nruns; ++i) {
              const Run& run = runs[i];
              const __m256i bits = bf16_bits16(_mm512_maskz_compress_ps(run.lanes, v));
              if (step == 1) {
                _mm256_mask_storeu_epi16(out + run.at, mask_first(run.len), bits);
              } else if (step == 2) {  // element k to 2 k
                _mm512_mask_storeu_epi16(out + run.at, __mmask32(0x55555555u & ((uint64_t(1) << (2 * run.len)) - 1)),
                                         _mm512_permutexvar_epi16(spread, _mm512_castsi256_si512(bits)));
              } else {
                std::memcpy(out + run.at, &bits, sizeof(uint16_t));  // (a run of one)
              }
            }
          }
        }
      }
    }
    _tile_release();
  });
}

// The weight gradient on AMX tiles. Per tap (r, s), dW[k][c] = sum over output pixels of
// dy[k][pixel] x[c][the pixel's input at that tap]: a GEMM whose reduction runs over the pixels.
// Pixels pair up along output rows (2j, 2j + 1; an odd row's last pixel pairs with a zero), the
// pairs of all rows in a row: A tiles are 16 k x 16 pairs of dy (dy transposed: k rows of pairs),
// B tiles 16 pairs x 16 channels of x at the tap (the two pixels' channels interleaved: a panel,
// built from the padded channels-last x), C tiles 16 k x 16 c. Two drivers:
//   by_taps    dy transposed whole (dyt, Kpad x Jpad) once; an item is one tap, 32 channels and a
//              range of k blocks; per range of kPanelPairs pairs it builds the panel once and runs
//              every k block of the item over it, carrying the sums in memory from range to range.
//   by_chunks  for layers of many pixels, whose dyt overflows L2 and was read from memory once per
//              tap and channel block: the pairs in chunks (A of every k a few hundred KB), each
//              chunk transposed into a per-thread buffer once and run for every tap and channel
//              block while it is in L2; the sums carried through a fixed number of splits of the
//              chunks, then added split by split.
// Every sum runs over the pairs in one fixed order, whatever the thread count. Padding (k past K,
// c past C, pairs past the last, the odd row's missing pixel) is zero in both operands, so no real
// x meets a padded dy (inf x 0 would be NaN).
//
// Grouped (as many outputs as inputs a group, 16 or 32: amx_wgrad_groups_apply), a block of 32
// channels holds whole groups and meets only the block of their 32 outputs; of its sums, those of
// an output and an input of one group are stored (all for 32 a group, half for 16).
// Few channels (the stems: amx_wgrad_folds), a row's S taps read S C consecutive elements of the
// packed x, so they run as one tap of S C channels (s, c), within one block of 32: the ResNet stem's
// 7 taps of 3 channels fill 21 of 32 lanes where 3 of 32 would each.
// kGrouped: p.groups > 1. (A run-time flag had cost the one-group layers 1.5x, 2048 -> 512 @7
// N=1 NCHW 0.43 -> 0.65 ms: GCC compiled the item loop worse with the grouped stores in it.)
bool amx_wgrad_folds(const Conv2dProblem& p) {
  return p.groups == 1 && p.S > 1 && p.dil_w == 1 && p.C * p.S <= 32;
}

// The four sum tiles += A (16 k rows a_stride elements apart, two tiles) x the panel, over jn pairs.
inline void amx_wgrad_tiles(const uint32_t* a0, int64_t a_stride, const uint32_t* panel, int64_t jn) {
  for (int64_t c = 0; c < jn; c += 16) {
    _tile_loadd(4, a0 + c, a_stride * 4);
    _tile_loadd(5, a0 + 16 * a_stride + c, a_stride * 4);
    _tile_loadd(6, panel + c * 32, 64);
    _tile_loadd(7, panel + c * 32 + 16 * 16, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
}

template <bool kGrouped>
class AmxWgrad {
 public:
  explicit AmxWgrad(const Conv2dWgradArgs& a)
      : a_(a), p_(a.p), fold_(!kGrouped && amx_wgrad_folds(a.p)), Cg_(p_.C / p_.groups), Kg_(p_.K / p_.groups),
        CF_(fold_ ? p_.S * p_.C : p_.C), SF_(fold_ ? 1 : p_.S), Qe_((p_.Q + 1) / 2), J_(p_.N * p_.P * Qe_),
        Jpad_((J_ + 15) / 16 * 16), Kpad_((p_.K + 31) / 32 * 32), nkb_(Kpad_ / 32), ncb_((CF_ + 31) / 32),
        taps_(p_.R * SF_),
        Hp_(std::max(p_.H + 2 * p_.pad_h, (p_.P - 1) * p_.stride_h + (p_.R - 1) * p_.dil_h + 1)),
        Wp_(std::max(p_.W + 2 * p_.pad_w, (p_.Q - 1) * p_.stride_w + (p_.S - 1) * p_.dil_w + 1)),
        dy_(static_cast<const bf16*>(a.dy.data)), ds_(a.dy.stride) {}

  // Whether by_chunks runs the layer: where dy transposed takes over 2 MB. In-process A/B, arms in
  // random order, Xeon, 2 threads, N=8, channels_last (by_taps -> by_chunks): the ResNet stem (12.8
  // MB) 5.86 -> 2.98 ms, 1x1 64 -> 256 @56 (12.8 MB) 3.16 -> 1.53, 256 -> 64 @56 (3.2 MB) 3.05 ->
  // 1.93, 3x3 64 @56 (3.2 MB) 3.47 -> 2.05, 1x1 128 -> 512 @28 (6.4 MB) 1.73 -> 1.26; NCHW 1.02-1.92x.
  // At 1.6 MB level (3x3 128 @28, 1x1 512 -> 128 @28); below it lost (3x3 256 @14, 0.8 MB: 1.58 ->
  // 2.46 ms; 512 @7: 2.54 -> 6.98, one chunk: one thread), and N=2 won (stem 1.31 -> 0.85 ms).
  // Also where by_taps has few items (under 16: a fixed count, so that the choice, and the sums'
  // order, do not depend on the thread count) and there are 2048+ pairs:
  // A/B as above, MobileNetV2's 1x1 144 -> 24 @56 (1.6 MB, 5 items) 1.70 -> 1.04 ms, NCHW 2.16 ->
  // 1.53, N=2 0.50 -> 0.30; 144 -> 24 @28 (3136 pairs) 0.46 -> 0.28; 96 -> 24 @56 1.11 -> 0.73;
  // 192 -> 32 @28 0.56 -> 0.40. (576 -> 96 @14, 784 pairs and 54 items: 0.43 -> 0.55, by_taps.)
  // Not where fewer than two splits' sums fit the memory of by_taps' transpose (split_count):
  // VGG's 512 @28 (9.4 MB of sums a split against a 6.4 MB transpose; the drivers ran level
  // there, 30.4 against 30.7 ms).
  bool chunked() const {
    const bool few_items = sum_blocks() < 16;  // by_taps' items at most: (tap, channel block, k block)
    return (transpose_bytes() > (int64_t(2) << 20) || (few_items && Jpad_ >= 2048)) && split_count() >= 2;
  }
  void by_taps() const;
  void by_chunks() const;

  // by_chunks' geometry: chunks of CH pairs whose A (every k) takes at most 512 KB, in at most
  // kSplits splits (fixed by the shapes: the sums' order may not depend on the thread count), each
  // split's sums 32 x 32 floats for every tap, channel block and k block it meets; and no more
  // splits than take the memory of by_taps' transpose of dy (Kpad x Jpad pairs). A/B N=8 VGG 3x3
  // 256 @56 (sums 2.4 MB a split, transpose 12.8 MB): by_taps 30.8 ms, 5 splits 25.7, 16 splits
  // (38 MB) 23.7; NCHW 32.8, 29.8, 28.2.
  static constexpr int64_t kSplits = 16;
  int64_t transpose_bytes() const { return Kpad_ * Jpad_ * int64_t(sizeof(uint32_t)); }
  int64_t chunk_pairs() const { return std::clamp<int64_t>((int64_t(512) << 10) / (Kpad_ * 4) / 16 * 16, 128, 1024); }
  int64_t chunk_count() const { return (Jpad_ + chunk_pairs() - 1) / chunk_pairs(); }
  int64_t sum_blocks() const { return taps_ * ncb_ * (kGrouped ? 1 : nkb_); }
  int64_t split_count() const {
    return std::min({chunk_count(), kSplits, transpose_bytes() / (sum_blocks() * 32 * 32 * int64_t(sizeof(float)))});
  }
  int64_t chunk_sums_floats() const { return split_count() * sum_blocks() * 32 * 32; }

 private:
  // Pairs [16 jb, 16 jb + 16) of a channels-last dy, k rows [0, Kpad): dst[k dst_stride + i].
  // (16-lane scatters had taken half of a 1x1 64 -> 256 @56's time: separate runs, N=8, that
  // weight gradient 6.23 -> 3.05 ms; 3x3 64 @56 4.03 -> 3.27; ResNeXt 512 @14 g32 0.97 -> 0.95)
  void transpose_pairs(int64_t jb, uint32_t* dst, int64_t dst_stride) const {
    __m512i v[16];
    const bf16* lo[16];
    bool has_hi[16];
    for (int i = 0; i < 16; ++i) {  // pair j's pixels (none past J: zeros)
      const int64_t j = jb * 16 + i, np = j / Qe_, qe = j % Qe_;
      lo[i] = j < J_ ? dy_ + np / p_.P * ds_[0] + np % p_.P * ds_[2] + 2 * qe * ds_[3] : nullptr;
      has_hi[i] = j < J_ && 2 * qe + 1 < p_.Q;
    }
    for (int64_t k0 = 0; k0 < Kpad_; k0 += 16) {
      const __mmask16 in = mask_first(p_.K - k0);
      for (int i = 0; i < 16; ++i) {
        if (!lo[i]) {
          v[i] = _mm512_setzero_si512();
          continue;
        }
        const __m512i l = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in, lo[i] + k0));
        const __m512i h = has_hi[i] ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in, lo[i] + ds_[3] + k0))
                                    : _mm512_setzero_si512();
        v[i] = _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
      }
      transpose16x16_epi32(v);
      for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512(dst + (k0 + kk) * dst_stride, v[kk]);
    }
  }
  // Pairs [j0, j0 + jn) of row k of a dy of any strides (NCHW): dst[0, jn). Along a contiguous row
  // a pair of two pixels is one 32-bit word as it lies.
  void pair_row(int64_t k, int64_t j0, int64_t jn, uint32_t* dst) const {
    int64_t i = 0;
    if (k < p_.K)
      for (int64_t np = j0 / Qe_, qe = j0 % Qe_; i < jn && np < p_.N * p_.P; ++np, qe = 0) {
        const bf16* src = dy_ + np / p_.P * ds_[0] + k * ds_[1] + np % p_.P * ds_[2];
        const int64_t end = std::min(Qe_, qe + jn - i);
        if (ds_[3] == 1) {  // whole pairs (not an odd row's last)
          const int64_t words = std::max<int64_t>(0, std::min(end, p_.Q / 2) - qe);
          std::memcpy(dst + i, src + 2 * qe, size_t(words) * sizeof(uint32_t));
          qe += words, i += words;
        }
        for (; qe < end; ++qe, ++i) {
          const int64_t q = 2 * qe;
          dst[i] = uint32_t(src[q * ds_[3]].bits) | (q + 1 < p_.Q ? uint32_t(src[(q + 1) * ds_[3]].bits) << 16 : 0u);
        }
      }
    std::fill(dst + i, dst + jn, 0u);
  }
  // The panel of pairs [j0, j0 + jn) at tap t over channels [c0, c0 + 32) (padded: zeros), from xb
  // (pixel (h, w) of the padded x at xb + (h Wp + w) xstride, channel c0 first):
  // panel[chunk of 16 pairs][half][16 pairs][16 channels].
  void build_panel(const bf16* xb, int64_t xstride, int64_t c0, int64_t j0, int64_t jn, int64_t t,
                   uint32_t* panel) const {
    const int64_t r = t / SF_, s = t % SF_;
    const __mmask16 in0 = mask_first(CF_ - c0), in1 = mask_first(CF_ - c0 - 16);
    int64_t np = j0 / Qe_, q = 2 * (j0 % Qe_), n = np / p_.P, pp = np % p_.P;  // the next pair's first pixel
    for (int64_t jj = 0; jj < jn; ++jj) {
      __m512i lo0 = _mm512_setzero_si512(), lo1 = lo0, hi0 = lo0, hi1 = lo0;
      if (j0 + jj < J_) {
        const int64_t h = n * Hp_ + pp * p_.stride_h + r * p_.dil_h, w = q * p_.stride_w + s * p_.dil_w;
        const bf16* px = xb + (h * Wp_ + w) * xstride;
        lo0 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in0, px));
        lo1 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in1, px + 16));
        if (q + 1 < p_.Q) {
          const bf16* px1 = px + p_.stride_w * xstride;
          hi0 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in0, px1)), 16);
          hi1 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(in1, px1 + 16)), 16);
        }
        if ((q += 2) >= p_.Q) {
          q = 0;
          if (++pp == p_.P) pp = 0, ++n;
        }
      }
      uint32_t* row = panel + (jj / 16 * 2 * 16 + jj % 16) * 16;
      _mm512_storeu_si512(row, _mm512_or_si512(lo0, hi0));
      _mm512_storeu_si512(row + 16 * 16, _mm512_or_si512(lo1, hi1));
    }
  }
  // The sums of tap t, channel block cb and k block kb (32 x 32 floats) into dw.
  void store(const float* acc, int64_t t, int64_t cb, int64_t kb) const {
    bf16* dw = static_cast<bf16*>(a_.dw.data);
    const int64_t* ws = a_.dw.stride;
    const int64_t r = t / SF_, s = t % SF_, c0 = cb * 32, cn = std::min<int64_t>(32, CF_ - c0);
    const int64_t k0 = kb * 32, kn = std::min<int64_t>(32, p_.K - k0);
    if constexpr (kGrouped) {  // output k's own group's inputs, block column cc to dw's input cc - first
      for (int64_t kk = 0; kk < kn; ++kk) {
        const int64_t first = (k0 + kk) / Kg_ * Cg_ - c0;
        for (int64_t cc = first; cc < first + Cg_; ++cc)
          store_from(dw + (k0 + kk) * ws[0] + (cc - first) * ws[1] + r * ws[2] + s * ws[3], acc[kk * 32 + cc]);
      }
      return;
    }
    for (int64_t kk = 0; kk < kn; ++kk)
      for (int64_t cc = 0; cc < cn; ++cc) {
        const int64_t c = fold_ ? cc % p_.C : c0 + cc, tap_s = fold_ ? cc / p_.C : s;  // (fold: c0 = 0)
        store_from(dw + (k0 + kk) * ws[0] + c * ws[1] + r * ws[2] + tap_s * ws[3], acc[kk * 32 + cc]);
      }
  }
  ScratchOf<bf16> padded_x() const {
    return pack_activations<bf16, bf16>(static_cast<const bf16*>(a_.x.data), a_.x.stride, p_.N, p_.C, p_.H, p_.W,
                                        p_.pad_h, p_.pad_w, Hp_, Wp_);
  }

  const Conv2dWgradArgs& a_;
  const Conv2dProblem& p_;
  const bool fold_;
  const int64_t Cg_, Kg_, CF_, SF_, Qe_, J_, Jpad_, Kpad_, nkb_, ncb_, taps_, Hp_, Wp_;
  const bf16* dy_;
  const int64_t* ds_;
};

template <bool kGrouped>
void AmxWgrad<kGrouped>::by_taps() const {
  constexpr bool grouped = kGrouped;
  constexpr int64_t kPanelPairs = 1024;  // a 128 KB B panel (32 channels), in L2
  ScratchOf<uint32_t> dyt(Kpad_ * Jpad_);
  if (ds_[1] == 1) {
    parallel_for(0, Jpad_ / 16, 1, [&](int64_t b, int64_t e) {
      for (int64_t jb = b; jb < e; ++jb) transpose_pairs(jb, dyt.data() + jb * 16, Jpad_);
    });
  } else {
    parallel_for(0, Kpad_, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) pair_row(k, 0, Jpad_, dyt.data() + k * Jpad_);
    });
  }
  const ScratchOf<bf16> xp = padded_x();
  // Items: (group of k blocks, channel block, tap); the k blocks split only as far as it takes to
  // give each thread a few items (a B panel serves every k block of its item).
  const int64_t kgroups =
      grouped ? 1 : std::min(nkb_, std::max<int64_t>(1, (4 * parallel_threads() + taps_ * ncb_ - 1) / (taps_ * ncb_)));
  // Where x has several blocks of 32 channels and the filter several taps, each thread copies a
  // block's channels of every pixel into a dense buffer once, for all the taps' panels to read:
  // they had read 64 bytes a pixel from pixels C apart, missing L1 at every one (in-process A/B,
  // arms in random order, Xeon, 2 threads, N=8, channels_last: 512 @14 x 32 groups 1.28 -> 0.97
  // ms, NCHW 1.37 -> 1.12, 512 @28 /2 x 32 groups 1.97 -> 1.67; one group 128 @28 2.57 -> 2.02,
  // 64 @56 4.69 -> 4.03, 256 @14 1.70 -> 1.57, 512 @7 level). 1x1 filters lost 4-6%: one pass.
  const int64_t pixels = p_.N * Hp_ * Wp_;
  const bool use_blocks = ncb_ > 1 && taps_ > 1;
  parallel_for(0, taps_ * ncb_ * kgroups, 1, [&](int64_t b, int64_t e) {
    const TileConfig cfg;
    _tile_loadconfig(&cfg);
    std::vector<uint32_t> panel(std::min(kPanelPairs, Jpad_) * 32);
    std::vector<float> sums;
    ScratchOf<bf16> block(use_blocks ? pixels * 32 : 0);
    int64_t block_of = -1;
    for (int64_t item = b; item < e; ++item) {
      // Taps innermost: consecutive items write the same lines of dw (KCRS: a channel's taps are
      // adjacent), while they are in cache.
      const int64_t t = item % taps_, cb = item / taps_ % ncb_, kg = item / (taps_ * ncb_), c0 = cb * 32;
      const int64_t kb0 = grouped ? cb : kg * nkb_ / kgroups, kb1 = grouped ? cb + 1 : (kg + 1) * nkb_ / kgroups;
      sums.resize((kb1 - kb0) * 32 * 32);  // every block's tiles are stored on the first range
      if (use_blocks && cb != block_of) {  // the block's 32 channels of every pixel, dense
        const __mmask16 in0 = mask_first(p_.C - c0), in1 = mask_first(p_.C - c0 - 16);
        for (int64_t i = 0; i < pixels; ++i) {
          const bf16* src = xp.data() + i * p_.C + c0;
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(block.data() + i * 32), _mm256_maskz_loadu_epi16(in0, src));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(block.data() + i * 32 + 16),
                              _mm256_maskz_loadu_epi16(in1, src + 16));
        }
        block_of = cb;
      }
      const bf16* xb = use_blocks ? block.data() : xp.data() + c0;
      const int64_t xstride = use_blocks ? 32 : p_.C;
      for (int64_t j0 = 0; j0 < Jpad_; j0 += kPanelPairs) {
        const int64_t jn = std::min(kPanelPairs, Jpad_ - j0);
        build_panel(xb, xstride, c0, j0, jn, t, panel.data());
        for (int64_t kb = kb0; kb < kb1; ++kb) {
          float* acc = sums.data() + (kb - kb0) * 32 * 32;
          if (j0 == 0)
            zero_sums();
          else  // the sums of the earlier ranges
            load_sums(acc);
          amx_wgrad_tiles(dyt.data() + kb * 32 * Jpad_ + j0, Jpad_, panel.data(), jn);
          store_sums(acc);
        }
      }
      for (int64_t kb = kb0; kb < kb1; ++kb) store(sums.data() + (kb - kb0) * 32 * 32, t, cb, kb);
    }
    _tile_release();
  });
}

template <bool kGrouped>
void AmxWgrad<kGrouped>::by_chunks() const {
  const ScratchOf<bf16> xp = padded_x();
  const int64_t CH = chunk_pairs(), nchunks = chunk_count(), nsplits = split_count();
  const int64_t kbs = kGrouped ? 1 : nkb_;  // k blocks a channel block meets
  const int64_t blocks = sum_blocks();      // 32 x 32 sums each
  ScratchOf<float> part(chunk_sums_floats());
  parallel_for(0, nsplits, 1, [&](int64_t b, int64_t e) {
    const TileConfig cfg;
    _tile_loadconfig(&cfg);
    ScratchOf<uint32_t> at(Kpad_ * CH);
    std::vector<uint32_t> panel(CH * 32);
    for (int64_t split = b; split < e; ++split) {
      const int64_t first = split * nchunks / nsplits, last = (split + 1) * nchunks / nsplits;
      float* sums = part.data() + split * blocks * 32 * 32;
      for (int64_t chunk = first; chunk < last; ++chunk) {
        const int64_t j0 = chunk * CH, jn = std::min(CH, Jpad_ - j0);
        if (ds_[1] == 1) {
          for (int64_t jb = j0 / 16; jb < (j0 + jn) / 16; ++jb) transpose_pairs(jb, at.data() + jb * 16 - j0, CH);
        } else {
          for (int64_t k = 0; k < Kpad_; ++k) pair_row(k, j0, jn, at.data() + k * CH);
        }
        for (int64_t t = 0; t < taps_; ++t)
          for (int64_t cb = 0; cb < ncb_; ++cb) {
            build_panel(xp.data() + cb * 32, p_.C, cb * 32, j0, jn, t, panel.data());
            for (int64_t i = 0; i < kbs; ++i) {
              const int64_t kb = kGrouped ? cb : i;
              float* acc = sums + ((t * ncb_ + cb) * kbs + i) * 32 * 32;
              if (chunk == first)
                zero_sums();
              else
                load_sums(acc);
              amx_wgrad_tiles(at.data() + kb * 32 * CH, CH, panel.data(), jn);
              store_sums(acc);
            }
          }
      }
    }
    _tile_release();
  });
  // The splits' sums added in split order.
  parallel_for(0, blocks, 1, [&](int64_t b, int64_t e) {
    alignas(64) float total[32 * 32];
    for (int64_t blk = b; blk < e; ++blk) {
      for (int64_t i = 0; i < 32 * 32; i += 16) {
        __m512 v = _mm512_loadu_ps(part.data() + blk * 32 * 32 + i);
        for (int64_t split = 1; split < nsplits; ++split)
          v = _mm512_add_ps(v, _mm512_loadu_ps(part.data() + (split * blocks + blk) * 32 * 32 + i));
        _mm512_store_ps(total + i, v);
      }
      const int64_t i = blk % kbs, cb = blk / kbs % ncb_, t = blk / (kbs * ncb_);
      store(total, t, cb, kGrouped ? cb : i);
    }
  });
}

template <bool kGrouped>
void amx_wgrad(const Conv2dWgradArgs& a) {
  const AmxWgrad<kGrouped> w(a);
  w.chunked() ? w.by_chunks() : w.by_taps();
}

// Whether the mode lets the dot engine use AMX tiles on this host.
bool amx_enabled() {
  const Bf16Dot mode = bf16_dot_mode();
  return (mode == Bf16Dot::kAuto || mode == Bf16Dot::kAmx) && amx_usable();
}

// Whether AMX tiles suit a layer of `groups` groups of `pairs` input pairs and `outs` outputs each:
// one group, or 16+ outputs a group (fewer would leave most of a sum tile idle).
bool amx_groups_apply(int64_t groups, int64_t pairs, int64_t outs) {
  return amx_enabled() && (groups == 1 || outs >= 16) && pairs > 0 && amx_chunk_pairs(pairs) > 0;
}

// Grouped, not where an NCHW output's pixels lie 2+ elements apart (a stride-2 input gradient's
// column phases, see grouped_dgrad_tiles_apply).
bool DotBf16::tiles_apply(const DirectConvPlan& d, const int64_t* ys) {
  return amx_groups_apply(d.groups, d.in_per_group, d.out_per_group) && (d.groups == 1 || ys[1] == 1 || ys[3] == 1);
}
void DotBf16::tile_conv(const DirectConvPlan& d, const NhwcViewOf<uint32_t>& x, const uint32_t* wp, const float* bias,
                        bf16* y, const int64_t ys[4]) {
  amx_conv(d, x, wp, bias, y, ys);
}

// Grouped layers of few channels a group (as many outputs as inputs, 2 to 8: ResNeXt's 32 groups
// of 4 and 8) run on the AMX tiles as groups of 16 outputs: b = 16 / Kg consecutive groups make
// one, whose weights are block-diagonal (zeros where an output meets another group's inputs).
// That is b times the multiply-adds, on tiles that do 32 times a vdpbf16ps' per instruction.
// Returns b, or 0 where this does not apply.
int64_t amx_bundle(const Conv2dProblem& p) {
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.groups == 1 || Cg != Kg || Kg < 2 || Kg > 8 || 16 % Kg != 0 || !amx_enabled())
    return 0;
  const int64_t b = 16 / Kg;
  return p.groups % b == 0 ? b : 0;
}

// The bundled layer (amx_bundle): its problem and its weights, K x b Cg x R x S contiguous.
struct BundledLayer {
  BundledLayer(const Conv2dProblem& p0, const ConstView4& w0, int64_t b) : p(p0) {
    const int64_t Cg = p0.C / p0.groups, Kg = p0.K / p0.groups, Cb = b * Cg;
    p.groups = p0.groups / b;
    w.assign(p0.K * Cb * p0.R * p0.S, bf16{0});
    const bf16* src = static_cast<const bf16*>(w0.data);
    for (int64_t k = 0; k < p0.K; ++k) {
      const int64_t c0 = (k % (b * Kg)) / Kg * Cg;  // the group's first input within the bundle
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t r = 0; r < p0.R; ++r)
          for (int64_t s = 0; s < p0.S; ++s)
            w[((k * Cb + c0 + c) * p0.R + r) * p0.S + s] =
                src[k * w0.stride[0] + c * w0.stride[1] + r * w0.stride[2] + s * w0.stride[3]];
    }
    view = {w.data(), {Cb * p0.R * p0.S, p0.R * p0.S, p0.S, 1}};
  }
  Conv2dProblem p;
  std::vector<bf16> w;
  ConstView4 view;
};

// engine(a) on the bundled layer of b groups a bundle.
template <class Args, class Engine>
bool run_bundled(const Args& a, int64_t b, const Engine& engine) {
  const BundledLayer layer(a.p, a.w, b);
  Args bundled = a;
  bundled.p = layer.p;
  bundled.w = layer.view;
  return engine(bundled);
}

// Grouped weight gradients on the tiles (amx_wgrad): as many outputs as inputs a group, 16 or 32
// (a block of 32 channels holds whole groups). In-process A/B against the engines that ran them,
// arms in random order, Xeon, 2 threads, N=8, 32 groups, channels_last / NCHW: 1024 @7 1.50 ->
// 0.93 ms / 1.57 -> 0.90, 1024 @14 /2 1.92 -> 1.29 / 2.17 -> 1.52; 16 a group (half the sums
// wasted) 512 @14 1.49 -> 1.34 / 1.62 -> 1.46, 512 @28 /2 2.19 -> 2.04 / level. 8 a group lost
// (256 @28: 1.39 -> 4.03 ms, three quarters wasted), 4 worse.
bool amx_wgrad_groups_apply(const Conv2dProblem& p) {
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  return amx_enabled() && Cg == Kg && (Cg == 16 || Cg == 32);
}

// Grouped input gradients of an NCHW dx at column stride 2+ stay off the tiles: each column
// phase's masked stores fill every other element of a line, which the next phase reads back
// (in-process A/B, arms in random order, Xeon, 2 threads, N=8, 32 groups: 512 @28 /2 2.15 ms on
// the tiles against 1.88 on the float engine; 256 @56 /2 bundled 4.4 against 4.0).
bool grouped_dgrad_tiles_apply(const Conv2dDgradArgs& a) {
  return a.p.groups == 1 || a.dx.stride[1] == 1 || a.p.stride_w == 1;
}

// ---- Grouped lanes over channel pairs (conv2d_grouped.h's row tiles) ------------------------------

// Lane l of a block takes its group's channel pair j: the block's L / Kg CG / 2 pairs (masked: no
// read past them) permuted, index l / Kg CG / 2 + j.
template <int CG>
struct GroupLaneGather<CG, DotBf16> {
  static_assert(CG % 2 == 0, "whole channel pairs a group");
  explicit GroupLaneGather(int64_t Kg) : mask(__mmask16((1u << (16 / Kg * CG / 2)) - 1)) {
    alignas(64) int32_t idx[16];
    for (int j = 0; j < CG / 2; ++j) {
      for (int l = 0; l < 16; ++l) idx[l] = int32_t(l / Kg * (CG / 2) + j);
      lanes[j] = _mm512_load_si512(idx);
    }
  }
  [[gnu::always_inline]] DotBf16::In operator()(const uint32_t* p, int j) const {
    return (DotBf16::In)_mm512_permutexvar_epi32(lanes[j], _mm512_maskz_loadu_epi32(mask, p));
  }
  static DotBf16::In zero() { return (DotBf16::In)_mm512_setzero_si512(); }
  __mmask16 mask;
  __m512i lanes[CG / 2];
};

// grouped_lanes_row_conv's weights over channel pairs: wp[kb][t][j][L] = (weight(k, 2j, t),
// weight(k, 2j + 1, t)) for output k of K (lane k % L of block k / L), zero past K.
template <int J, typename Weight>
std::vector<uint32_t> grouped_lanes_pair_weights(int64_t K, int64_t taps, const Weight& weight) {
  constexpr int64_t L = 16;
  std::vector<uint32_t> wp((K + L - 1) / L * taps * J * L, 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t j = 0; j < J; ++j)
        wp[((k / L * taps + t) * J + j) * L + k % L] =
            uint32_t(weight(k, 2 * j, t).bits) | uint32_t(weight(k, 2 * j + 1, t).bits) << 16;
  return wp;
}

// The grouped forward of 2-8 even channels a group (as many or fewer than its outputs, which a
// vector's lanes hold whole) on grouped_lanes_row_conv's row tiles at column stride 1 (returns
// false, doing nothing, where its taps are not rows of three: three_tap_rows), with
// vdpbf16ps: x as a padded channels-last bfloat16 copy read as pairs, the weights as pairs
// wp[kb][t][j][L] (lo: channel 2j, hi: 2j + 1). Each permuted pair feeds three taps' multiply-adds
// of two channels each, where the float engine's permute fed three FMAs of one channel.
template <int CG>
bool grouped_lanes_fprop_pairs(const Conv2dFpropArgs& a) {
  constexpr int64_t J = CG / 2;
  const Conv2dProblem& p = a.p;
  const int64_t Kg = p.K / p.groups, taps = p.R * p.S;
  const int64_t Hp = std::max(p.H + 2 * p.pad_h, (p.P - 1) * p.stride_h + (p.R - 1) * p.dil_h + 1);
  const int64_t Wp = std::max(p.W + 2 * p.pad_w, (p.Q - 1) * p.stride_w + (p.S - 1) * p.dil_w + 1);
  const int64_t pixel = p.C / 2;
  NhwcViewOf<uint32_t> xv{nullptr, Hp * Wp * pixel, Wp * pixel, pixel};  // data once packed
  DirectConvPlan d{p.N, p.groups, J, Kg, p.P, p.Q, p.stride_h * xv.sh, p.stride_w * xv.sw, {}};
  for (int64_t r = 0; r < p.R; ++r)
    for (int64_t s = 0; s < p.S; ++s) d.tap_offset.push_back(r * p.dil_h * xv.sh + s * p.dil_w * xv.sw);
  if (!three_tap_rows(d, xv.sw)) return false;
  const ScratchOf<bf16> xp = pack_activations<bf16, bf16>(static_cast<const bf16*>(a.x.data), a.x.stride, p.N, p.C,
                                                          p.H, p.W, p.pad_h, p.pad_w, Hp, Wp);
  xv.data = reinterpret_cast<const uint32_t*>(xp.data());
  const bf16* w = static_cast<const bf16*>(a.w.data);
  const int64_t* ws = a.w.stride;
  const std::vector<uint32_t> wp = grouped_lanes_pair_weights<J>(p.K, taps, [&](int64_t k, int64_t c, int64_t t) {
    return w[k * ws[0] + c * ws[1] + t / p.S * ws[2] + t % p.S * ws[3]];
  });
  const std::vector<float> bias = grouped_bias_blocks<bf16>(a.bias, p.K);
  const float* bias_blocks = a.bias ? bias.data() : nullptr;
  bf16* y = static_cast<bf16*>(a.y.data);
  if (p.Q >= 14) grouped_lanes_row_conv<CG, 14, 0, 1, DotBf16>(d, xv, wp.data(), bias_blocks, y, a.y.stride);
  else grouped_lanes_row_conv<CG, 7, 0, 1, DotBf16>(d, xv, wp.data(), bias_blocks, y, a.y.stride);
  return true;
}

}  // namespace

// The forward at column stride 2+ bundles pairs of groups of 16 too (32 outputs: whole tiles,
// 16-pair steps; its A tiles are copied, half as many). In-process A/B, arms in random order,
// Xeon, 2 threads, N=8, ResNeXt 512 @28 /2 x 32 groups: channels_last 1.22 -> 0.98 ms, NCHW 1.83
// -> 1.58. At stride 1 it lost (512 @14: 0.89x, NCHW 0.95x), as did the input gradient (0.95-0.99x).
int64_t amx_forward_bundle(const Conv2dProblem& p) {
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.groups > 1 && p.stride_w > 1 && Cg == Kg && Kg == 16 && p.groups % 2 == 0 && amx_enabled()) return 2;
  return amx_bundle(p);
}

bool conv2d_fprop_bf16_bundled(const Conv2dFpropArgs& a) {
  const int64_t b = amx_forward_bundle(a.p);
  return b > 0 && run_bundled(a, b, conv2d_fprop_direct<bf16, DotBf16>);
}
bool conv2d_dgrad_bf16_bundled(const Conv2dDgradArgs& a) {
  const int64_t b = amx_bundle(a.p);
  return b > 0 && grouped_dgrad_tiles_apply(a) && run_bundled(a, b, conv2d_dgrad_direct<bf16, DotBf16>);
}

// Whether AMX tiles run this layer (forward: its input channels, dgrad: its output channels, in
// steps of amx_chunk_pairs). The forward's plan of one group folds a row's S taps into one where
// it can (conv2d_fprop_direct): S x pairs a tap then, the stem's 7 x 2. They take 1x1 NCHW layers
// too (the transposes into and out of channels-last pairs cost less than the tiles save), so the
// role-swapped pairs paths run without them.
bool conv2d_fprop_bf16_tiles(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t pairs = (p.C / p.groups + 1) / 2;
  const int64_t run_pairs = p.S > 1 && p.dil_w == 1 ? p.S * pairs : pairs;  // folded or not
  return p.groups == 1 ? amx_enabled() && amx_chunk_pairs(run_pairs) > 0
                       : amx_groups_apply(p.groups, pairs, p.K / p.groups) || amx_bundle(p) > 0;
}
bool conv2d_dgrad_bf16_tiles(const Conv2dDgradArgs& a) {
  // Where conv2d_dgrad_folded_phases takes the layer (the stems), one convolution of 16 or fewer
  // folded outputs over the pairs of dy.
  const Conv2dProblem& p = a.p;
  const int64_t pairs = (p.K / p.groups + 1) / 2;
  if (dgrad_folded_phases_apply(p)) return amx_groups_apply(1, pairs, p.stride_h * p.stride_w * p.C);
  return p.groups == 1 ? amx_enabled() && amx_chunk_pairs(pairs) > 0
                       : (amx_groups_apply(p.groups, pairs, p.C / p.groups) || amx_bundle(p) > 0) &&
                             grouped_dgrad_tiles_apply(a);
}

// The grouped input gradient at column stride 2 (grouped_dgrad_column_pairs_apply) with row tiles
// over both column phases (kDgradStride2), as grouped_lanes_dgrad runs them on the float engine:
// dy as a padded channels-last bfloat16 copy read as pairs of its KG channels a group. In-process
// A/B against the float engine's, arms in random order, Zen 5, 2 threads, bfloat16 N=8, ResNeXt's
// 32 groups, channels_last / NCHW: 256 @56 /2 1.35 -> 0.82 ms / 2.08 -> 1.45; 128 @56 /2 1.11x /
// 1.07x; 64 @56 /2 1.24x / 1.03x.
template <int KG>
void grouped_lanes_dgrad_pairs(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups;
  const DgradPadding pad(p);
  const ScratchOf<bf16> dyp = pack_activations<bf16, bf16>(static_cast<const bf16*>(a.dy.data), a.dy.stride, p.N,
                                                           p.K, p.P, p.Q, pad.top, pad.left, pad.Hp, pad.Wp);
  const int64_t pixel = p.K / 2;
  const NhwcViewOf<uint32_t> dv{reinterpret_cast<const uint32_t*>(dyp.data()), pad.Hp * pad.Wp * pixel,
                                pad.Wp * pixel, pixel};
  const bf16* w = static_cast<const bf16*>(a.w.data);
  const int64_t* ws = a.w.stride;
  bf16* dx = static_cast<bf16*>(a.dx.data);
  const int64_t* xs = a.dx.stride;
  const int64_t dx_strides[4] = {xs[0], xs[1], xs[2] * p.stride_h, xs[3]};
  std::vector<std::pair<int64_t, int64_t>> rows;
  for (int64_t pa = 0; pa < std::min(p.stride_h, p.H); ++pa) {
    dgrad_phase_taps(pa, p.stride_h, p.pad_h, p.R, p.dil_h, rows);
    DirectConvPlan d{p.N, p.groups, KG / 2, Cg, (p.H - pa + p.stride_h - 1) / p.stride_h, p.W, dv.sh, dv.sw, {}};
    for (const auto& [r, ro] : rows)
      for (int64_t s = 0; s < 3; ++s) d.tap_offset.push_back((pad.top + ro) * dv.sh + pad.left * dv.sw);
    // dx channel c (group c / Cg, its channel c % Cg) from dy channel o of its group.
    const std::vector<uint32_t> wp =
        grouped_lanes_pair_weights<KG / 2>(p.C, int64_t(d.tap_offset.size()), [&](int64_t c, int64_t o, int64_t t) {
          return w[(c / Cg * KG + o) * ws[0] + c % Cg * ws[1] + rows[t / 3].first * ws[2] + t % 3 * ws[3]];
        });
    grouped_lanes_row_conv<KG, 14, 0, kDgradStride2, DotBf16>(d, dv, wp.data(), nullptr, dx + pa * xs[2],
                                                                dx_strides);
  }
}

// grouped_product_lanes_fprop's lanes for vdpbf16ps: lane l of vector v multiplies input pair
// l % 4 (channels 2 (l % 4), 2 (l % 4) + 1) by the weights of output 4 v + l / 4, so each 128-bit
// quarter holds one output's 4 partial sums. A pixel's 8 group inputs (16 bytes) go to all four
// quarters with one broadcast load and feed 2 vdpbf16ps, where the float lanes take a load, a
// byte shuffle and 4 FMAs; each output's 4 lanes are summed after the last tap (5 operations a
// pixel and group, 12 for the float lanes' 8). Tiles of 14 pixels (28 accumulators): two to
// ResNeXt's rows of 28. In-process A/B against the float lanes, arms in random order, Zen 5, 2
// threads, 256 @56 /2 x 32 groups, channels_last / NCHW: N=8 1.33x / 1.24x, N=1 1.32x, N=2 1.34x,
// N=4 NCHW 1.24x; 512 @56 /2 x 64 N=2 1.20x. 12-pixel tiles (28 = 12 + 12 + an overlapping 4)
// gained 1.06-1.12x, 10-pixel ones 1.18-1.24x, 7-pixel ones 1.19-1.32x.
struct ProductLanesDot {
  static constexpr int kVectors = 2, kPixels = 14;
  using W = uint32_t;
  using In = __m512bh;
  template <typename T>
  static void pack(const T* w, const int64_t* ws, int64_t g, int64_t taps, int64_t S, W* dst) {
    static_assert(std::is_same_v<T, bf16>, "bfloat16 pairs");
    const auto at = [&](int64_t k, int64_t c, int64_t t) {
      return uint32_t(w[(8 * g + k) * ws[0] + c * ws[1] + t / S * ws[2] + t % S * ws[3]].bits);
    };
    for (int64_t t = 0; t < taps; ++t)
      for (int l = 0; l < 32; ++l) {
        const int64_t k = 4 * (l / 16) + l % 16 / 4, jp = l % 4;
        dst[t * 32 + l] = at(k, 2 * jp, t) | at(k, 2 * jp + 1, t) << 16;
      }
  }
  static In load(const W* p) { return (In)_mm512_loadu_si512(p); }
  [[gnu::always_inline]] static In broadcast(const bf16* p) {
    return (In)_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static __m512 madd(In x, In w, __m512 acc) { return _mm512_dpbf16_ps(acc, x, w); }
  // Quarter i of acc[0] holds output i's partial sums, of acc[1] output 4 + i's.
  [[gnu::always_inline]] static __m256 sums(const __m512* acc) {
    const __m512 a = acc[0], b = acc[1];
    // Quarter i: (a0 + a2, a1 + a3, b0 + b2, b1 + b3) of quarter i's lanes.
    __m512 s = _mm512_add_ps(__builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
                             __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31));
    s = _mm512_add_ps(s, __builtin_shufflevector(s, s, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
    return __builtin_shufflevector(s, s, 0, 4, 8, 12, 2, 6, 10, 14);  // outputs 0-3 (a), 4-7 (b)
  }
};

// At column stride 1 (in-process A/B against the float engine's row tiles, arms in random
// order, Zen 5, 2 threads, bfloat16, ResNeXt's 32 groups, channels_last / NCHW: 256 @28 N=8
// 1.25-1.49x / 1.29-1.30x, N=1 1.28x / 1.18x; 128 @56 1.74x / 1.45x; 64 @56 1.26x / 1.20x). At
// stride 2 they ran level or lost (128 @56 /2 0.96-1.00x; 8 inputs and 8 outputs a group
// 0.81-0.95x against the float product lanes), so 8-a-group layers at column stride 2 take the
// product lanes here (ProductLanesDot) and others the float engine.
bool conv2d_fprop_grouped_lanes_dot(const Conv2dFpropArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Cg = p.C / p.groups, Kg = p.K / p.groups;
  if (p.dtype != DType::bf16 || Cg % 2 != 0 || !grouped_lanes_apply(p.groups, Cg, Kg)) return false;
  if (grouped_product_lanes_takes<bf16>(a)) {
    grouped_product_lanes_fprop_any_layout<bf16, ProductLanesDot>(a);
    return true;
  }
  bool done = false;
  with_group_channels(Cg, [&]<int CG>() {
    if constexpr (CG % 2 == 0) done = grouped_lanes_fprop_pairs<CG>(a);
  });
  return done;
}

// The stride-1 input gradient of such layers as their forward (dgrad_as_forward). In-process A/B
// against the float engine's, arms in random order, Zen 5, 2 threads, bfloat16 N=8, ResNeXt's 32
// groups, channels_last / NCHW: 256 @28 1.45x / 1.29x; 128 @56 1.38x / 1.42x; 64 @56 1.41x /
// 1.13x.
bool conv2d_dgrad_grouped_lanes_dot(const Conv2dDgradArgs& a) {
  const Conv2dProblem& p = a.p;
  const int64_t Kg = p.K / p.groups;
  if (p.dtype != DType::bf16 || !grouped_lanes_apply(p.groups, Kg, p.C / p.groups)) return false;
  if (Kg % 2 == 0 && grouped_dgrad_column_pairs_apply(p)) {
    with_group_channels(Kg, [&]<int KG>() {
      if constexpr (KG % 2 == 0) grouped_lanes_dgrad_pairs<KG>(a);
    });
    return true;
  }
  return dgrad_as_forward_apply(a) && dgrad_as_forward<bf16>(a, conv2d_fprop_grouped_lanes_dot);
}

bool conv2d_fprop_bf16_dot(const Conv2dFpropArgs& a) {
  return (!conv2d_fprop_bf16_tiles(a) && conv2d_fprop_pointwise_pairs<DotBf16>(a)) ||
         conv2d_fprop_direct<bf16, DotBf16>(a);
}
bool conv2d_dgrad_bf16_dot(const Conv2dDgradArgs& a) {
  return (!conv2d_dgrad_bf16_tiles(a) && conv2d_dgrad_pointwise_pairs<DotBf16>(a)) ||
         conv2d_dgrad_folded_phases<bf16, DotBf16>(a) || conv2d_dgrad_direct<bf16, DotBf16>(a);
}
bool conv2d_wgrad_bf16_tiles(const Conv2dWgradArgs& a) {
  const Conv2dProblem& p = a.p;
  if (p.groups > 1) return amx_wgrad_groups_apply(p);
  return amx_enabled() && (p.C >= 16 || amx_wgrad_folds(p)) && p.K >= 16;
}
bool conv2d_wgrad_bf16_dot(const Conv2dWgradArgs& a) {
  if (conv2d_wgrad_bf16_tiles(a)) {
    a.p.groups > 1 ? amx_wgrad<true>(a) : amx_wgrad<false>(a);
    return true;
  }
  return conv2d_wgrad_1x1<bf16, DotBf16>(a) || conv2d_wgrad_direct<bf16, DotBf16>(a);
}

}  // namespace avx512bf16

bool host_can_run_amx_bf16() { return avx512bf16::amx_usable(); }

namespace {

// Seconds for `iters` rounds of 12 independent chains x = step(x) of one instruction (vdpbf16ps
// zmm, vfmadd231ps zmm or ymm): enough chains to cover each instruction's latency on every core
// seen, so the rate is the throughput. The empty asm keeps the accumulators in registers and the
// loop from being folded (and the chains, which start equal, from being merged).
template <typename Vec, typename Step>
[[gnu::noinline]] double time_chains(int64_t iters, Vec seed, Step step) {
  Vec a0 = seed, a1 = seed, a2 = seed, a3 = seed, a4 = seed, a5 = seed;
  Vec a6 = seed, a7 = seed, a8 = seed, a9 = seed, a10 = seed, a11 = seed;
#define CNNK_CHAINS_OPAQUE                                                                                      \
  asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), \
               "+v"(a9), "+v"(a10), "+v"(a11))
  CNNK_CHAINS_OPAQUE;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < iters; ++k) {
    a0 = step(a0), a1 = step(a1), a2 = step(a2), a3 = step(a3), a4 = step(a4), a5 = step(a5);
    a6 = step(a6), a7 = step(a7), a8 = step(a8), a9 = step(a9), a10 = step(a10), a11 = step(a11);
    CNNK_CHAINS_OPAQUE;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CNNK_CHAINS_OPAQUE;
#undef CNNK_CHAINS_OPAQUE
  return s;
}

double time_dot_chains(int64_t iters) {
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3f7f3f7f), c = (__m512bh)_mm512_set1_epi32(0x3a833a83);
  return time_chains(iters, _mm512_set1_ps(1), [=](__m512 x) { return _mm512_dpbf16_ps(x, b, c); });
}
double time_fma512_chains(int64_t iters) {
  const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
  return time_chains(iters, _mm512_set1_ps(1), [=](__m512 x) { return _mm512_fmadd_ps(x, b, c); });
}
double time_fma256_chains(int64_t iters) {
  const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
  return time_chains(iters, _mm256_set1_ps(1), [=](__m256 x) { return _mm256_fmadd_ps(x, b, c); });
}

// Multiply-adds per second of chains a (a_per_step per instruction) over chains b: best of 5
// alternating runs of ~10-50 us each (the first runs also bring the clock up).
double rate_ratio(double (*time_a)(int64_t), double a_per_step, double (*time_b)(int64_t), double b_per_step) {
  constexpr int64_t kIters = 4096;
  double a = 1e30, b = 1e30;
  for (int run = 0; run < 5; ++run) {
    a = std::min(a, time_a(kIters));
    b = std::min(b, time_b(kIters));
  }
  return (a_per_step / a) / (b_per_step / b);
}

}  // namespace

// A vdpbf16ps does 32 multiply-adds, a 512-bit FMA 16. An Intel Xeon with AMX measured 0.50 (one
// vdpbf16ps per two cycles against two FMAs per cycle); on Zen 4 the dot engine ran compute-bound
// layers 1.85x faster than the float engine (benchmarks/NOTES.md, 2026-11-25).
double measure_bf16_dot_rate_ratio() { return rate_ratio(time_dot_chains, 32, time_fma512_chains, 16); }

// 512-bit FMAs over 256-bit ones: 2 where the core has full-width 512-bit FMA pipes (an Intel Xeon
// with AMX, Zen 5), 1 where it splits them (Zen 4).
double measure_zmm_fma_rate_ratio() { return rate_ratio(time_fma512_chains, 16, time_fma256_chains, 8); }

}  // namespace cnnkernels
#else
namespace cnnkernels {
double measure_bf16_dot_rate_ratio() { return 0.0; }  // no AVX512-BF16 off x86
double measure_zmm_fma_rate_ratio() { return 0.0; }
bool host_can_run_amx_bf16() { return false; }
}  // namespace cnnkernels
#endif
