// The float vector of the ISA this translation unit is compiled for: __m512 (16 lanes) under
// -mavx512f, __m256 (8 lanes) under -mavx2 -mfma. Included inside an ISA namespace
// (CNNKERNELS_KERNEL_NS), like every header of csrc/cpu/simd, so each ISA gets its own copy.
#pragma once
#include <immintrin.h>

namespace cnnkernels {
namespace CNNKERNELS_KERNEL_NS {
namespace {

#if defined(__AVX512F__)
struct VecF32 {
  using type = __m512;
  static constexpr int kLanes = 16;
  static type zero() { return _mm512_setzero_ps(); }
  static type broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static type load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, type v) { _mm512_storeu_ps(p, v); }
  static type fmadd(type a, type b, type c) { return _mm512_fmadd_ps(a, b, c); }
  static type add(type a, type b) { return _mm512_add_ps(a, b); }
};
#elif defined(__AVX2__) && defined(__FMA__)
struct VecF32 {
  using type = __m256;
  static constexpr int kLanes = 8;
  static type zero() { return _mm256_setzero_ps(); }
  static type broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static type load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, type v) { _mm256_storeu_ps(p, v); }
  static type fmadd(type a, type b, type c) { return _mm256_fmadd_ps(a, b, c); }
  static type add(type a, type b) { return _mm256_add_ps(a, b); }
};
#else
#error "csrc/cpu/simd needs AVX2+FMA or AVX-512 compile flags"
#endif

// dst[j * dst_stride + i] = src[i * src_stride + j] for an 8 x 8 block of floats (AVX, so both
// ISA builds have it): unpack pairs, shuffle quads, swap 128-bit halves.
inline void transpose8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
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
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
