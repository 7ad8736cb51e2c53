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

}  // namespace
}  // namespace CNNKERNELS_KERNEL_NS
}  // namespace cnnkernels
