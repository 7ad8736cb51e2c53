// AVX-512 float32 max_pool2d: the kernels of csrc/cpu/simd/max_pool2d_simd.h over 16-lane zmm vectors.
//
//   max_pool2d_fwd_nchw+nhwc_f32__avx512_16  channels_last: 16 channels per vector (64 unrolled);
//                                            NCHW: 16 output columns per vector (stride 2 by
//                                            vpermt2ps de-interleave, stride >= 3 by gather);
//                                            anything else: the reference loops.
//   max_pool2d_bwd_nchw+nhwc_f32__avx512_16  channels_last: per-output scatter over 16 channels;
//                                            NCHW: per-plane scatter (vscatterdps for the taps of
//                                            disjoint windows) or the row kernels; else the
//                                            reference.
//
// Tails use k-masked loads and stores (fault-suppressing, so a tail never touches memory past the
// tensor). Index vectors are int32 and widened to int64 only when stored.
#include "../kernels.h"
#if defined(__x86_64__)
// GCC 12 flags the _mm512_undefined_* pass-through operands inside the widening and extract
// intrinsics as maybe-uninitialized (GCC bug 105593): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#define CNNKERNELS_KERNEL_NS avx512
#include "../reference/max_pool2d_reference.h"
#include "../simd/vec.h"  // bfloat16 <-> float

namespace cnnkernels {
namespace avx512 {
namespace {

struct Vec16 {
  static constexpr int kW = 16;
  using F = __m512;   // 16 floats
  using I = __m512i;  // 16 int32 (plane indices or tap offsets)
  using M = __mmask16;

  static M first(int n) { return static_cast<M>((1u << n) - 1u); }  // lanes [0, n), n <= 16
  static __mmask8 first8(int n) { return static_cast<__mmask8>(n >= 8 ? 0xffu : (1u << std::max(n, 0)) - 1u); }

  // The even (odd) lanes of the pair (a, b), in order (vpermt2ps): nothing for unraw to undo.
  static F even_raw(F a, F b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
  }
  static F odd_raw(F a, F b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
  }
  static F unraw(F v) { return v; }
  static I unraw(I v) { return v; }
  static F zero() { return _mm512_setzero_ps(); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  // p[0], p[2], ..., p[30]: two loads, then vpermt2ps picks the even lanes of the pair. The second
  // load leaves out p[31], which may lie past the end of the tensor.
  static F load_even(const float* p) {
    const I even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_maskz_loadu_ps(first(15), p + 16));
  }
  // p[0], p[2], ..., p[2 (n - 1)]: reads only the 2n - 1 floats needed.
  static F load_even_n(const float* p, int n) {
    const I even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const int need = 2 * n - 1;
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(first(std::min(need, 16)), p), even,
                                  _mm512_maskz_loadu_ps(first(std::max(need - 16, 0)), p + 16));
  }
  // p[l s] for lanes l < n.
  static F gather_n(const float* p, int32_t s, int n) {
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), first(n), iota_times(s, 0), p, 4);
  }

  // The same for bfloat16, widened to float in registers (exact). A 16-bit masked load reads only
  // the elements it needs; p[2 l] is the low half of 32-bit word l, so one shift de-interleaves.
  static F widen(__m512i words_low_halves) { return _mm512_castsi512_ps(_mm512_slli_epi32(words_low_halves, 16)); }
  static F load(const bf16* p) { return load16(p); }
  static F load_n(const bf16* p, int n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(first(n), p)), 16));
  }
  static F load_even(const bf16* p) { return widen(_mm512_maskz_loadu_epi16(0x7fffffffu, p)); }  // not p[31]
  static F load_even_n(const bf16* p, int n) {
    return widen(_mm512_maskz_loadu_epi16(static_cast<__mmask32>((1u << (2 * n - 1)) - 1u), p));
  }
  // No 16-bit gather (a 32-bit one could read past the tensor): element by element.
  static F gather_n(const bf16* p, int32_t s, int n) {
    alignas(64) float v[16] = {};
    for (int l = 0; l < n; ++l) v[l] = to_float(p[int64_t(l) * s]);
    return _mm512_load_ps(v);
  }
  static void store(bf16* p, F v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), bf16_bits16(v)); }
  static void store_n(bf16* p, F v, int n) { _mm256_mask_storeu_epi16(p, first(n), bf16_bits16(v)); }

  // The reference's replace rule per lane: v > best (ordered, false for NaN) || v is NaN.
  static M take(F v, F best) {
    return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  // The same rule when only the value is wanted, one operation shorter: vmaxps(v, best) is
  // v > best ? v : best (a tie or a NaN best keeps best), then a NaN v replaces it.
  static F max_or_nan(F v, F best) {
    return _mm512_mask_mov_ps(_mm512_max_ps(v, best), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
  }
  // The rule on operands known to hold no NaN (fwd_nchw_rows checks each row): v > best alone.
  static M greater(F v, F best) { return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ); }
  static F max(F v, F best) { return _mm512_max_ps(v, best); }
  static F select(M m, F keep, F take) { return _mm512_mask_mov_ps(keep, m, take); }
  static I select(M m, I keep, I take) { return _mm512_mask_mov_epi32(keep, m, take); }

  static I set1i(int32_t v) { return _mm512_set1_epi32(v); }
  static I add(I a, I b) { return _mm512_add_epi32(a, b); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static I iota_times(int32_t s, int32_t base) {  // base + l s
    const I iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_add_epi32(_mm512_set1_epi32(base), _mm512_mullo_epi32(iota, _mm512_set1_epi32(s)));
  }

  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, F v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static void store_index(int64_t* p, I v) {
    _mm512_storeu_si512(p, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
    _mm512_storeu_si512(p + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
  }
  static void store_index_n(int64_t* p, I v, int n) {
    _mm512_mask_storeu_epi64(p, first8(n), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
    _mm512_mask_storeu_epi64(p + 8, first8(n - 8), _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
  }

  // 16 stored int64 indices as int32, saturating: a value outside int32 cannot equal a plane index.
  static I load_index32(const int64_t* p) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtsepi64_epi32(_mm512_loadu_si512(p))),
                              _mm512_cvtsepi64_epi32(_mm512_loadu_si512(p + 8)), 1);
  }
  // Lanes n and up (not read) are -1, which equals no plane index.
  static I load_index32_n(const int64_t* p, int n) {
    const __m512i none = _mm512_set1_epi64(-1);
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm512_cvtsepi64_epi32(_mm512_mask_loadu_epi64(none, first8(n), p))),
        _mm512_cvtsepi64_epi32(_mm512_mask_loadu_epi64(none, first8(n - 8), p + 8)), 1);
  }
  // Tap numbers (0 .. 255) as bytes: vpmovdb truncates, exact for them.
  static void store_index(uint8_t* p, I v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(v)); }
  static void store_index_n(uint8_t* p, I v, int n) { _mm512_mask_cvtepi32_storeu_epi8(p, first(n), v); }
  static I load_index32(const uint8_t* p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // Lanes n and up (not read) are -1, which equals no tap number.
  static I load_index32_n(const uint8_t* p, int n) {
    return _mm512_mask_cvtepu8_epi32(_mm512_set1_epi32(-1), first(n), _mm_maskz_loadu_epi8(first(n), p));
  }
  static M equal(I a, I b) { return _mm512_cmpeq_epi32_mask(a, b); }
  // e, o = p[0], p[2], ..., p[30] and p[1], p[3], ..., p[31]
  static void uninterleave(const float* p, F& e, F& o) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const F lo = _mm512_loadu_ps(p), hi = _mm512_loadu_ps(p + 16);
    e = _mm512_permutex2var_ps(lo, even, hi);
    o = _mm512_permutex2var_ps(lo, odd, hi);
  }
  // p[0 .. 31] = e0 o0 e1 o1 ... e15 o15
  static void store_interleaved(float* p, F e, F o) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(e, lo, o));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(e, hi, o));
  }
  // p[0 .. 2n) of the same, n <= 16.
  static void store_interleaved_n(float* p, F e, F o, int n) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_mask_storeu_ps(p, first(std::min(2 * n, 16)), _mm512_permutex2var_ps(e, lo, o));
    if (n > 8) _mm512_mask_storeu_ps(p + 16, first(2 * n - 16), _mm512_permutex2var_ps(e, hi, o));
  }
  static F add_where(M m, F acc, F v) { return _mm512_mask_add_ps(acc, m, acc, v); }

  // bwd_nchw's vector scatter (AVX-512 only: kScatter). lookup16: table[t] per lane, t < 16.
  static constexpr bool kScatter = true;
  static I lookup16(const int32_t* table, I t) { return _mm512_permutexvar_epi32(t, _mm512_loadu_si512(table)); }
  // Lanes of m whose k lies in [0, size), unsigned.
  static M below(M m, I k, int32_t size) { return _mm512_mask_cmplt_epu32_mask(m, k, _mm512_set1_epi32(size)); }
  static void scatter(float* base, M m, I k, F v) { _mm512_mask_i32scatter_ps(base, m, k, v, 4); }
};

}  // namespace
}  // namespace avx512
}  // namespace cnnkernels

#include "../simd/max_pool2d_simd.h"

namespace cnnkernels {
namespace avx512 {

void max_pool2d_fwd_f32(const MaxPool2dFwdArgs& a) {
  if (!max_pool2d_fwd_simd<Vec16, float>(a)) max_pool2d_fwd<float>(a);
}

void max_pool2d_bwd_f32(const MaxPool2dBwdArgs& a) {
  if (!max_pool2d_bwd_simd<Vec16, float>(a)) max_pool2d_bwd<float>(a);
}

void max_pool2d_fwd_bf16(const MaxPool2dFwdArgs& a) {
  if (!max_pool2d_fwd_simd<Vec16, bf16>(a)) max_pool2d_fwd<bf16>(a);
}

void max_pool2d_bwd_bf16(const MaxPool2dBwdArgs& a) {
  if (!max_pool2d_bwd_simd<Vec16, bf16>(a)) max_pool2d_bwd<bf16>(a);
}

}  // namespace avx512
}  // namespace cnnkernels
#endif
