// AVX2 float32 max_pool2d: the kernels of csrc/cpu/simd/max_pool2d_simd.h over 8-lane ymm vectors.
//
//   max_pool2d_fwd_nchw+nhwc_f32__avx2_8  channels_last: 8 channels per vector (32 unrolled);
//                                         NCHW: 8 output columns per vector (stride 2 by
//                                         vshufps + vpermpd de-interleave, stride >= 3 by gather);
//                                         anything else: the reference loops.
//   max_pool2d_bwd_nchw+nhwc_f32__avx2_8  channels_last: per-output scatter over 8 channels;
//                                         NCHW: per-plane scalar scatter; else the reference.
//
// AVX2 has no k-masks: a mask is a vector whose selected lanes are all ones, and tails use
// vmaskmov loads and stores (which, like AVX-512's masked moves, never fault on masked-off lanes).
#include "../kernels.h"
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define CNNKERNELS_KERNEL_NS avx2
#include "../reference/max_pool2d_reference.h"
#include "../simd/vec.h"  // bfloat16 <-> float

namespace cnnkernels {
namespace avx2 {
namespace {

struct Vec8 {
  static constexpr int kW = 8;
  using F = __m256;   // 8 floats
  using I = __m256i;  // 8 int32 (plane indices or tap offsets)
  using M = __m256;   // all-ones lanes where true

  static __m256i first(int n) {  // 32-bit lanes [0, n)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static __m256i first64(int n) {  // 64-bit lanes [0, n)
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  // The even (odd) lanes of the pair (a, b), permuted: vshufps works within 128-bit halves and gives
  // a0 a2 b0 b2 | a4 a6 b4 b6, which is output order 0 1 4 5 2 3 6 7; unraw (vpermpd) puts the
  // 64-bit pairs back in order.
  static F even_raw(F a, F b) { return _mm256_shuffle_ps(a, b, 0x88); }
  static F odd_raw(F a, F b) { return _mm256_shuffle_ps(a, b, 0xdd); }
  static F unraw(F v) { return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xd8)); }
  static I unraw(I v) { return _mm256_permute4x64_epi64(v, 0xd8); }
  // Even (odd) 32-bit lanes of the pair (a, b), in order: a0 a2 a4 a6 b0 b2 b4 b6 (a1 a3 ... b7).
  static F even(F a, F b) { return unraw(even_raw(a, b)); }
  static F odd(F a, F b) { return unraw(odd_raw(a, b)); }
  static F zero() { return _mm256_setzero_ps(); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_n(const float* p, int n) { return _mm256_maskload_ps(p, first(n)); }
  // p[0], p[2], ..., p[14]; the second load leaves out p[15], which may lie past the tensor's end.
  static F load_even(const float* p) { return even(_mm256_loadu_ps(p), _mm256_maskload_ps(p + 8, first(7))); }
  // p[0], p[2], ..., p[2 (n - 1)]: reads only the 2n - 1 floats needed.
  static F load_even_n(const float* p, int n) {
    const int need = 2 * n - 1;
    return even(_mm256_maskload_ps(p, first(std::min(need, 8))), _mm256_maskload_ps(p + 8, first(std::max(need - 8, 0))));
  }
  static F gather_n(const float* p, int32_t s, int n) {
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, iota_times(s, 0), _mm256_castsi256_ps(first(n)), 4);
  }

  // The same for bfloat16, widened to float in registers (exact). AVX2 masks 32-bit lanes only:
  // p[2 l] is the low half of 32-bit word l, so even elements are whole-word masked loads and one
  // shift, with the last one (whose word's high half may lie past the tensor) inserted alone;
  // tails of consecutive elements go element by element.
  static F widen(__m256i words_low_halves) { return _mm256_castsi256_ps(_mm256_slli_epi32(words_low_halves, 16)); }
  static F load(const bf16* p) { return load8(p); }
  static F load_n(const bf16* p, int n) {
    alignas(16) bf16 v[8] = {};
    for (int l = 0; l < n; ++l) v[l] = p[l];
    return load8(v);
  }
  // words 0 .. n-2 by a masked load, then p[2 (n - 1)] into lane n - 1
  static F load_even_n(const bf16* p, int n) {
    const __m256i words = _mm256_maskload_epi32(reinterpret_cast<const int*>(p), first(n - 1));
    const __m256i last = _mm256_set1_epi32(p[2 * (n - 1)].bits);
    const __m256i at_last = _mm256_cmpeq_epi32(_mm256_set1_epi32(n - 1), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return widen(_mm256_blendv_epi8(words, last, at_last));
  }
  static F load_even(const bf16* p) { return load_even_n(p, 8); }
  static F gather_n(const bf16* p, int32_t s, int n) {
    alignas(32) float v[8] = {};
    for (int l = 0; l < n; ++l) v[l] = to_float(p[int64_t(l) * s]);
    return _mm256_load_ps(v);
  }
  static void store(bf16* p, F v) { store8(p, v); }
  static void store_n(bf16* p, F v, int n) {
    alignas(16) bf16 b[8];
    store8(b, v);
    for (int l = 0; l < n; ++l) p[l] = b[l];
  }

  // The reference's replace rule per lane: v > best (ordered, false for NaN) || v is NaN.
  static M take(F v, F best) {
    return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  // The same rule when only the value is wanted, one operation shorter: vmaxps(v, best) is
  // v > best ? v : best (a tie or a NaN best keeps best), then a NaN v replaces it.
  static F max_or_nan(F v, F best) {
    return _mm256_blendv_ps(_mm256_max_ps(v, best), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  // The rule on operands known to hold no NaN (fwd_nchw_rows checks each row): v > best alone.
  static M greater(F v, F best) { return _mm256_cmp_ps(v, best, _CMP_GT_OQ); }
  static F max(F v, F best) { return _mm256_max_ps(v, best); }
  static F select(M m, F keep, F take) { return _mm256_blendv_ps(keep, take, m); }
  static I select(M m, I keep, I take) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(keep), _mm256_castsi256_ps(take), m));
  }

  static I set1i(int32_t v) { return _mm256_set1_epi32(v); }
  static I add(I a, I b) { return _mm256_add_epi32(a, b); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static I iota_times(int32_t s, int32_t base) {  // base + l s
    return _mm256_add_epi32(_mm256_set1_epi32(base),
                            _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(s)));
  }

  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, F v, int n) { _mm256_maskstore_ps(p, first(n), v); }
  static void store_index(int64_t* p, I v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 4), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
  }
  static void store_index_n(int64_t* p, I v, int n) {
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(p), first64(n), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
    _mm256_maskstore_epi64(reinterpret_cast<long long*>(p + 4), first64(n - 4),
                           _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
  }

  // 8 stored int64 indices as int32; a value outside int32 becomes -1, which equals no plane index.
  // AVX2 has no narrowing move: split the 64-bit lanes into low and high halves and keep the low
  // half where the high one is its sign extension.
  static I narrow(__m256i lo, __m256i hi) {
    const __m256 a = _mm256_castsi256_ps(lo), b = _mm256_castsi256_ps(hi);
    const __m256i low = _mm256_castps_si256(even(a, b));
    const __m256i high = _mm256_castps_si256(odd(a, b));
    const __m256i fits = _mm256_cmpeq_epi32(high, _mm256_srai_epi32(low, 31));
    return _mm256_or_si256(_mm256_and_si256(fits, low), _mm256_andnot_si256(fits, _mm256_set1_epi32(-1)));
  }
  static I load_index32(const int64_t* p) {
    return narrow(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 4)));
  }
  // Lanes n and up (not read) are -1, which equals no plane index.
  static I load_index32_n(const int64_t* p, int n) {
    const auto* q = reinterpret_cast<const long long*>(p);
    const I v = narrow(_mm256_maskload_epi64(q, first64(n)), _mm256_maskload_epi64(q + 4, first64(n - 4)));
    return _mm256_or_si256(v, _mm256_andnot_si256(first(n), _mm256_set1_epi32(-1)));
  }
  // Tap numbers (0 .. 255) as bytes: two unsigned-saturating packs keep them exact.
  static __m128i tap_bytes(I v) {
    const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_packus_epi16(words, words);  // bytes 0..7
  }
  static void store_index(uint8_t* p, I v) { _mm_storel_epi64(reinterpret_cast<__m128i*>(p), tap_bytes(v)); }
  static void store_index_n(uint8_t* p, I v, int n) {
    alignas(16) uint8_t b[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(b), tap_bytes(v));
    std::memcpy(p, b, n);
  }
  static I load_index32(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }
  // Lanes n and up (not read) are -1, which equals no tap number.
  static I load_index32_n(const uint8_t* p, int n) {
    alignas(16) uint8_t b[16] = {};
    std::memcpy(b, p, n);
    return _mm256_or_si256(_mm256_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(b))),
                           _mm256_andnot_si256(first(n), _mm256_set1_epi32(-1)));
  }
  static M equal(I a, I b) { return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)); }
  // e, o = p[0], p[2], ..., p[14] and p[1], p[3], ..., p[15]
  static void uninterleave(const float* p, F& e, F& o) {
    const F lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
    e = even(lo, hi);
    o = odd(lo, hi);
  }
  // p[0 .. 15] = e0 o0 e1 o1 ... e7 o7: vunpck{l,h}ps pair within 128-bit halves, vperm2f128 joins.
  static void store_interleaved(float* p, F e, F o) {
    const __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);  // e0 o0 e1 o1 | e4 o4 e5 o5; e2..
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  // p[0 .. 2n) of the same, n <= 8.
  static void store_interleaved_n(float* p, F e, F o, int n) {
    const __m256 lo = _mm256_unpacklo_ps(e, o), hi = _mm256_unpackhi_ps(e, o);
    _mm256_maskstore_ps(p, first(std::min(2 * n, 8)), _mm256_permute2f128_ps(lo, hi, 0x20));
    if (n > 4) _mm256_maskstore_ps(p + 8, first(2 * n - 8), _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  static F add_where(M m, F acc, F v) { return _mm256_blendv_ps(acc, _mm256_add_ps(acc, v), m); }
  static constexpr bool kScatter = false;  // AVX2 has no scatter: bwd_nchw stays scalar
};

}  // namespace
}  // namespace avx2
}  // namespace cnnkernels

#include "../simd/max_pool2d_simd.h"

namespace cnnkernels {
namespace avx2 {

void max_pool2d_fwd_f32(const MaxPool2dFwdArgs& a) {
  if (!max_pool2d_fwd_simd<Vec8, float>(a)) max_pool2d_fwd<float>(a);
}

void max_pool2d_bwd_f32(const MaxPool2dBwdArgs& a) {
  if (!max_pool2d_bwd_simd<Vec8, float>(a)) max_pool2d_bwd<float>(a);
}

void max_pool2d_fwd_bf16(const MaxPool2dFwdArgs& a) {
  if (!max_pool2d_fwd_simd<Vec8, bf16>(a)) max_pool2d_fwd<bf16>(a);
}

void max_pool2d_bwd_bf16(const MaxPool2dBwdArgs& a) {
  if (!max_pool2d_bwd_simd<Vec8, bf16>(a)) max_pool2d_bwd<bf16>(a);
}

}  // namespace avx2
}  // namespace cnnkernels
#endif
