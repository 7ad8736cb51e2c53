// The float vector of the ISA this translation unit is compiled for: __m512 (16 lanes) under
// -mavx512f, __m256 (8 lanes) under -mavx2 -mfma. Included inside an ISA namespace
// (CNNKERNELS_KERNEL_NS), like every header of csrc/cpu/simd, so each ISA gets its own copy.
//
// bfloat16 storage is the top half of a float: widening is a 16-bit zero-extend and a shift, and
// narrowing rounds to nearest even exactly as bf16_from_float (../../common/dtype.h) does, NaN
// kept quiet, so the SIMD and scalar paths store the same bits.
#pragma once
#include <algorithm>
#include <immintrin.h>

#include "../../common/dtype.h"

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

// 8 floats <-> 8 values of a storage type (AVX2, which both ISA builds have).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const bf16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
// 8 values at p[kOdd], p[kOdd + 2], ..., p[kOdd + 14] (a stride-2 row) as floats; reads p[0 .. 15].
template <bool kOdd>
inline __m256 load8_step2(const float* p) {
  constexpr int kPick = kOdd ? _MM_SHUFFLE(3, 1, 3, 1) : _MM_SHUFFLE(2, 0, 2, 0);
  const __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), kPick);  // a0 a2 b0 b2 | a4 a6 b4 b6
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
}
template <bool kOdd>
inline __m256 load8_step2(const bf16* p) {  // elements 2 i and 2 i + 1: the halves of 32-bit word i
  const __m256i words = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm256_castsi256_ps(kOdd ? _mm256_and_si256(words, _mm256_set1_epi32(int(0xffff0000u)))
                                  : _mm256_slli_epi32(words, 16));
}
// bf16 bits, one per 32-bit lane: (u + 0x7fff + lsb) >> 16, or (u >> 16) | 0x40 for NaN.
inline __m256i bf16_bits8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i high = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(high, _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nan = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(nan),
                                              _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}
inline __m128i bf16_pack8(__m256 v) {  // 8 packed bf16
  const __m256i b = bf16_bits8(v);  // every lane in [0, 0xffff]: the unsigned pack is exact
  return _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
}
inline void store8(bf16* p, __m256 v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bf16_pack8(v)); }
// store8 of the first n (< 8) lanes only, as 4-, 2- and 1-lane stores: the memory past them is
// not touched. (vmaskmovps stores are slow on Zen 4: the float stem's NCHW forward, which leaves
// 6-pixel runs this way, ran 12% slower with them.)
inline void store_first(float* p, __m256 v, int n) {
  __m128 b = _mm256_castps256_ps128(v);
  if (n & 4) {
    _mm_storeu_ps(p, b);
    b = _mm256_extractf128_ps(v, 1), p += 4;
  }
  if (n & 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), b);
    b = _mm_movehl_ps(b, b), p += 2;
  }
  if (n & 1) _mm_store_ss(p, b);
}
inline void store_first(bf16* p, __m256 v, int n) {
  __m128i b = bf16_pack8(v);
  if (n & 4) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
    b = _mm_srli_si128(b, 8), p += 4;
  }
  if (n & 2) {
    _mm_storeu_si32(p, b);
    b = _mm_srli_si128(b, 4), p += 2;
  }
  if (n & 1) p->bits = uint16_t(_mm_extract_epi16(b, 0));
}

// A half vector of `Lanes` float lanes for tiles whose last vector is half full: only the AVX-512
// build defines one (HalfVector<8>, below); the AVX2 build's tiles are whole vectors.
template <int Lanes>
struct HalfVector;

#if defined(__AVX512F__)
// 16 floats <-> 16 bfloat16 (the same rounding as store8).
inline __m512 load16(const bf16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
[[gnu::always_inline]] inline __m256i bf16_bits16(__m512 v) {  // 16 packed bf16
#if defined(__AVX512BF16__)
  // vcvtneps2bf16 rounds the same way, NaN included, but flushes denormals to zero: it takes
  // every vector without one (bit for bit against the code below over 3.2e8 random floats with
  // ties and NaNs, Zen 5). One instruction for eight, in the stores of the dot engine's tiles:
  // A/B, arms in random order, Zen 5, 2 threads, channels_last 1x1: 64 -> 64 @56 N=8 0.54 ->
  // 0.48 ms, 64 -> 256 N=8 2.08 -> 1.83, 128 -> 512 @28 N=8 1.43 -> 1.29; 3x3 and the stem
  // 1.01-1.04x. (vdpbf16ps and AMX flush denormal results too, so their sums reach here without.)
  if (_mm512_fpclass_ps_mask(v, 0x20) == 0) return (__m256i)_mm512_cvtneps_pbh(v);
#endif
  const __m512i u = _mm512_castps_si512(v);
  const __m512i high = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  __m512i b = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  b = _mm512_mask_or_epi32(b, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), high, _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(b);
}

struct VecF32 {
  using type = __m512;
  static constexpr int kLanes = 16;
  static type zero() { return _mm512_setzero_ps(); }
  static type broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static type load(const float* p) { return _mm512_loadu_ps(p); }
  static type load(const bf16* p) { return load16(p); }
  static void store(float* p, type v) { _mm512_storeu_ps(p, v); }
  static void stream(float* p, type v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
  [[gnu::always_inline]] static void stream(bf16* p, type v) {  // p 32-byte aligned: half a line
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), bf16_bits16(v));
  }
  // The bfloat16 stores always inline: an out-of-line copy (GCC chose one for a large caller)
  // draws GCC 12's -Wuninitialized on the intrinsics' undefined pass-through operands.
  [[gnu::always_inline]] static void store(bf16* p, type v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), bf16_bits16(v));
  }
  // The first n (< 16) lanes only; the memory past them is not touched.
  static void store_first(float* p, type v, int n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), v); }
  [[gnu::always_inline]] static void store_first(bf16* p, type v, int n) {
    _mm256_mask_storeu_epi16(p, __mmask16((1u << n) - 1), bf16_bits16(v));
  }
  static type fmadd(type a, type b, type c) { return _mm512_fmadd_ps(a, b, c); }
  // Lanes [lo, hi) of a vector (lo and hi clamped to [0, 16]), and a b + c in a mask's lanes with c
  // kept in the others (nothing is added there: 0 x inf cannot make a NaN).
  using mask = __mmask16;
  static mask lanes_between(int64_t lo, int64_t hi) {
    lo = std::clamp<int64_t>(lo, 0, 16), hi = std::clamp<int64_t>(hi, lo, 16);
    return mask(((1u << hi) - 1) & ~((1u << lo) - 1));
  }
  static type fmadd_masked(type a, type b, type c, mask k) { return _mm512_mask3_fmadd_ps(a, b, c, k); }
  // The lanes i whose bit i is set in `bits`.
  static mask from_bits(uint32_t bits) { return mask(bits); }
  // The lanes of k from p, zero elsewhere; the others are not read (no fault past an allocation).
  static type load_masked(const float* p, mask k) { return _mm512_maskz_loadu_ps(k, p); }
  static type add(type a, type b) { return _mm512_add_ps(a, b); }
  static type sub(type a, type b) { return _mm512_sub_ps(a, b); }
  static type mul(type a, type b) { return _mm512_mul_ps(a, b); }
  // Lane l of the result is lane index[l] of v (any lane to any lane).
  using index = __m512i;
  static index load_index(const int32_t* p) { return _mm512_loadu_si512(p); }
  static type permute(type v, index i) { return _mm512_permutexvar_ps(i, v); }
  // Within each 128-bit lane, lane l of the result is lane (Imm >> 2 l) & 3 of v's (no index
  // register; a load folds into it).
  template <int Imm>
  static type permute_in_lanes(type v) { return _mm512_permute_ps(v, Imm); }
};

// The last, half vector of a tile of 8 + 16 n output channels (conv2d_direct.h's conv_tile): the
// low 8 lanes of a __m512, the upper ones ignored (undefined after a load). 256-bit FMAs issue
// two per cycle on Zen 4, 512-bit ones one, so the half vector costs half an FMA slot.
template <>
struct HalfVector<8> {
  using type = __m512;
  [[gnu::always_inline]] static __m256 low(type v) { return _mm512_castps512_ps256(v); }
  static type from_low(__m256 v) { return _mm512_castps256_ps512(v); }
  static type load(const float* p) { return from_low(_mm256_loadu_ps(p)); }
  static type load(const bf16* p) { return from_low(load8(p)); }
  static void store(float* p, type v) { _mm256_storeu_ps(p, low(v)); }
  [[gnu::always_inline]] static void store(bf16* p, type v) { store8(p, low(v)); }
  static type fmadd(type a, type b, type c) { return from_low(_mm256_fmadd_ps(low(a), low(b), low(c))); }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct VecF32 {
  using type = __m256;
  static constexpr int kLanes = 8;
  static type zero() { return _mm256_setzero_ps(); }
  static type broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static type load(const float* p) { return _mm256_loadu_ps(p); }
  static type load(const bf16* p) { return load8(p); }
  static void store(float* p, type v) { _mm256_storeu_ps(p, v); }
  static void stream(float* p, type v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
  static void stream(bf16* p, type v) {  // p 16-byte aligned: a quarter line
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), bf16_pack8(v));
  }
  static void store(bf16* p, type v) { store8(p, v); }
  static void store_first(float* p, type v, int n) { CNNKERNELS_KERNEL_NS::store_first(p, v, n); }
  static void store_first(bf16* p, type v, int n) { CNNKERNELS_KERNEL_NS::store_first(p, v, n); }
  static type fmadd(type a, type b, type c) { return _mm256_fmadd_ps(a, b, c); }
  // As in the AVX-512 VecF32, with the mask as a vector of all-ones lanes: a and b are zeroed
  // outside it, so c gains +0 there (0 x inf cannot make a NaN).
  using mask = __m256;
  static mask lanes_between(int64_t lo, int64_t hi) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    lo = std::clamp<int64_t>(lo, 0, 8), hi = std::clamp<int64_t>(hi, 0, 8);
    const __m256i ge_lo = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(int(lo) - 1));
    const __m256i lt_hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(hi)), lane);
    return _mm256_castsi256_ps(_mm256_and_si256(ge_lo, lt_hi));
  }
  static type fmadd_masked(type a, type b, type c, mask k) {
    return _mm256_fmadd_ps(_mm256_and_ps(a, k), _mm256_and_ps(b, k), c);
  }
  static mask from_bits(uint32_t bits) {
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(bits)), bit), bit));
  }
  static type load_masked(const float* p, mask k) { return _mm256_maskload_ps(p, _mm256_castps_si256(k)); }
  static type add(type a, type b) { return _mm256_add_ps(a, b); }
  static type sub(type a, type b) { return _mm256_sub_ps(a, b); }
  static type mul(type a, type b) { return _mm256_mul_ps(a, b); }
  using index = __m256i;
  static index load_index(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static type permute(type v, index i) { return _mm256_permutevar8x32_ps(v, i); }
  template <int Imm>
  static type permute_in_lanes(type v) { return _mm256_permute_ps(v, Imm); }
};
#else
#error "csrc/cpu/simd needs AVX2+FMA or AVX-512 compile flags"
#endif

// lo, hi = a0 b0 a1 b1 ... : the lanes of a and b alternating, the first and second halves.
#if defined(__AVX512F__)
inline void interleave_lanes(__m512 a, __m512 b, __m512& lo, __m512& hi) {
  lo = _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
  hi = _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b);
}
#else
inline void interleave_lanes(__m256 a, __m256 b, __m256& lo, __m256& hi) {
  const __m256 l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);  // per 128-bit half
  lo = _mm256_permute2f128_ps(l, h, 0x20), hi = _mm256_permute2f128_ps(l, h, 0x31);
}
#endif

// The inverse: even = a0 a2 ... b0 b2 ..., odd = a1 a3 ... b1 b3 ... (a row's even and odd columns).
// lanes_up_one(v, before) = before's last lane, then v's lanes but the last (a vector one column
// to the left of v, its first column from the vector before). sum_lanes: the sum of a vector's lanes.
inline float sum_lanes(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#if defined(__AVX512F__)
inline void deinterleave_lanes(__m512 a, __m512 b, __m512& even, __m512& odd) {
  even = _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
  odd = _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
}
inline __m512 lanes_up_one(__m512 v, __m512 before) {
  return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(v), _mm512_castps_si512(before), 15));
}
inline float sum_lanes(__m512 v) {
  // Halves by GCC's vector extensions: _mm512_reduce_add_ps, _mm512_castps512_ps256 and
  // _mm512_shuffle_f32x4 pass undefined operands that draw GCC 12's -Wuninitialized here.
  const __m256 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  return sum_lanes(_mm256_add_ps(lo, hi));
}
#else
inline void deinterleave_lanes(__m256 a, __m256 b, __m256& even, __m256& odd) {
  // Per 128-bit half a0 a2 b0 b2 | a4 a6 b4 b6, then the middle quarters swapped.
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}
inline __m256 lanes_up_one(__m256 v, __m256 before) {
  // (before's upper half, v's lower half), then per 128-bit half the last lane of that and v's
  // first three.
  const __m256 t = _mm256_permute2f128_ps(before, v, 0x21);
  return _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(v), _mm256_castps_si256(t), 12));
}
#endif

// dst[j * dst_stride + i] = src[i * src_stride + kFirst + kStep j] for an 8 x 8 block (AVX, so
// both ISA builds have it), converting between storage types on the way: unpack pairs, shuffle
// quads, swap 128-bit halves. kStep 2 reads a row's even (kFirst 0) or odd (kFirst 1) elements,
// and 16 elements of each row. With rows < 8, only source rows i < rows are read and only those
// columns of dst written.
template <int kStep = 1, int kFirst = 0, typename S, typename D>
[[gnu::always_inline]] inline void transpose8x8(const S* src, int64_t src_stride, D* dst, int64_t dst_stride,
                                                int rows = 8) {
  static_assert((kStep == 1 && kFirst == 0) || (kStep == 2 && (kFirst == 0 || kFirst == 1)), "rows of step 1 or 2");
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i)
    r[i] = i >= rows  ? _mm256_setzero_ps()
           : kStep == 1 ? load8(src + i * src_stride)
                        : load8_step2<kFirst == 1>(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  const auto store = [&](D* p, __m256 v) {
    if (rows == 8)
      store8(p, v);
    else
      store_first(p, v, rows);
  };
  for (int i = 0; i < 4; ++i) {
    store(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    store(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

#if defined(__AVX512F__)
// dst[j * dst_stride + i] = src[i * src_stride + j] for i < 16, j < 8, into floats: transpose8x8's
// steps on zmm registers whose halves hold rows i and i + 8 (the 256-bit halves transpose side by
// side; a two-source permute then does the 128-bit swaps), so each column comes out as one
// 16-lane vector. Half the shuffles per element of two transpose8x8 calls: packing ConvNeXt's
// 768 x 7 x 7 depthwise weights took 5.0 us against 7.9 (one thread, a standalone loop).
template <typename S>
[[gnu::always_inline]] inline void transpose16x8(const S* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m512 r[8], t[8];
  for (int i = 0; i < 8; ++i)
    r[i] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(load8(src + i * src_stride))),
                                               _mm256_castps_pd(load8(src + (i + 8) * src_stride)), 1));
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  // Column i < 4 is 128-bit lane 0 of r[i] and r[i + 4] (rows 0-7), then their lane 2 (rows 8-15);
  // column i + 4 likewise from lanes 1 and 3.
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
  const __m512i second = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int i = 0; i < 4; ++i) {
    _mm512_storeu_ps(dst + i * dst_stride, _mm512_permutex2var_ps(r[i], first, r[i + 4]));
    _mm512_storeu_ps(dst + (i + 4) * dst_stride, _mm512_permutex2var_ps(r[i], second, r[i + 4]));
  }
}

// The sums of the eight 8-lane runs of a, b, c, d (a's lanes 0-7, a's 8-15, b's 0-7, ...), in
// that order: 8 shuffles and 4 adds. 128-bit quarters of two vectors first (each quarter then
// holds 4 partial sums of one run), then in-lane pairs, then one permute into order. GCC's vector
// shuffles: the intrinsics pass undefined operands that draw GCC 12's -Wuninitialized.
inline __m256 sum_lane_octets(__m512 a, __m512 b, __m512 c, __m512 d) {
  const auto quarters = [](__m512 u, __m512 v) {  // quarter i: 4 partial sums of run i of (u, v)
    return _mm512_add_ps(__builtin_shufflevector(u, v, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27),
                         __builtin_shufflevector(u, v, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31));
  };
  const __m512 ab = quarters(a, b), cd = quarters(c, d);
  // Quarter i: run i's partials 0 + 2, run 4 + i's 0 + 2, then 1 + 3 of each.
  __m512 s = _mm512_add_ps(
      __builtin_shufflevector(ab, cd, 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29),
      __builtin_shufflevector(ab, cd, 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31));
  s = _mm512_add_ps(s, __builtin_shufflevector(s, s, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
  return __builtin_shufflevector(s, s, 0, 4, 8, 12, 1, 5, 9, 13);  // quarter i held runs i and 4 + i
}
#endif

// dst[j * dst_stride + i] = rows[i][col + j] for i, j < 8: transpose8x8 with each source row at
// its own address.
template <typename S, typename D>
inline void transpose8x8_rows(const S* const* rows, int64_t col, D* dst, int64_t dst_stride) {
  alignas(32) float block[64];
  for (int i = 0; i < 8; ++i) store8(block + 8 * i, load8(rows[i] + col));
  transpose8x8(block, 8, dst, dst_stride);
}

// dst[i] = src[i] for i < n with non-temporal stores (no read-for-ownership, the lines bypass the
// caches): dst 16-byte aligned, n * sizeof(E) a multiple of 16. The writing thread calls
// stream_fence() before others may read dst.
template <typename E>
inline void stream_copy(E* dst, const E* src, int64_t n) {
  const char* s = reinterpret_cast<const char*>(src);
  char* d = reinterpret_cast<char*>(dst);
  for (int64_t i = 0; i < n * int64_t(sizeof(E)); i += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
}
inline void stream_fence() { _mm_sfence(); }

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
