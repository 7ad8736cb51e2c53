// AVX-512 BF16 bfloat16 conv2d fprop, dgrad and wgrad: the direct-convolution engines of
// ../simd/conv2d_direct.h and conv2d_wgrad.h (same plans, packing and tiles: one engine each) with
// the multiply-add policy DotBf16 below. This file alone is built with -mavx512bf16 (CMakeLists.txt); the avx512 table
// calls it only where CPUID reports avx512_bf16 (kernel_table.inc), else the float engine runs.
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
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>

#define CNNKERNELS_KERNEL_NS avx512bf16
#include "../simd/conv2d_direct.h"
#include "../simd/conv2d_wgrad_1x1.h"

namespace cnnkernels {
namespace avx512bf16 {
namespace {

struct DotBf16 {
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

}  // namespace

bool conv2d_fprop_bf16_dot(const Conv2dFpropArgs& a) {
  return conv2d_fprop_pointwise_pairs<DotBf16>(a) || conv2d_fprop_direct<bf16, DotBf16>(a);
}
bool conv2d_dgrad_bf16_dot(const Conv2dDgradArgs& a) {
  return conv2d_dgrad_pointwise_pairs<DotBf16>(a) || conv2d_dgrad_folded_phases<bf16, DotBf16>(a) ||
         conv2d_dgrad_direct<bf16, DotBf16>(a);
}
bool conv2d_wgrad_bf16_dot(const Conv2dWgradArgs& a) {
  return conv2d_wgrad_1x1<bf16, DotBf16>(a) || conv2d_wgrad_direct<bf16, DotBf16>(a);
}

}  // namespace avx512bf16

namespace {

// Seconds for `iters` rounds of 12 independent vdpbf16ps (kDot) or vfmadd231ps chains: enough
// chains to cover either instruction's latency on every core seen, so the rate is the throughput.
// The empty asm keeps the accumulators in registers and the loop from being folded.
template <bool kDot>
[[gnu::noinline]] double time_chains(int64_t iters) {
  __m512 a0 = _mm512_set1_ps(1), a1 = _mm512_set1_ps(2), a2 = _mm512_set1_ps(3), a3 = _mm512_set1_ps(4);
  __m512 a4 = _mm512_set1_ps(5), a5 = _mm512_set1_ps(6), a6 = _mm512_set1_ps(7), a7 = _mm512_set1_ps(8);
  __m512 a8 = _mm512_set1_ps(9), a9 = _mm512_set1_ps(10), a10 = _mm512_set1_ps(11), a11 = _mm512_set1_ps(12);
  const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
  const __m512bh bb = (__m512bh)_mm512_set1_epi32(0x3f7f3f7f), cb = (__m512bh)_mm512_set1_epi32(0x3a833a83);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < iters; ++k) {
#define CNNK_STEP(x) x = kDot ? _mm512_dpbf16_ps(x, bb, cb) : _mm512_fmadd_ps(x, b, c);
    CNNK_STEP(a0) CNNK_STEP(a1) CNNK_STEP(a2) CNNK_STEP(a3) CNNK_STEP(a4) CNNK_STEP(a5)
    CNNK_STEP(a6) CNNK_STEP(a7) CNNK_STEP(a8) CNNK_STEP(a9) CNNK_STEP(a10) CNNK_STEP(a11)
#undef CNNK_STEP
    asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8),
                 "+v"(a9), "+v"(a10), "+v"(a11));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  asm volatile("" ::"v"(a0), "v"(a1), "v"(a2), "v"(a3), "v"(a4), "v"(a5), "v"(a6), "v"(a7), "v"(a8), "v"(a9),
               "v"(a10), "v"(a11));
  return s;
}

}  // namespace

// A vdpbf16ps does 32 multiply-adds, a 512-bit FMA 16. Best of 5 alternating runs of ~10-50 us
// each (the first runs also bring the clock up). An Intel Xeon with AMX measured 0.47 (one
// vdpbf16ps per two cycles against two FMAs per cycle); on Zen 4 the dot engine ran compute-bound
// layers 1.85x faster than the float engine (benchmarks/NOTES.md, 2026-11-25).
double measure_bf16_dot_rate_ratio() {
  constexpr int64_t kIters = 4096;
  double dot = 1e30, fma = 1e30;
  for (int run = 0; run < 5; ++run) {
    dot = std::min(dot, time_chains<true>(kIters));
    fma = std::min(fma, time_chains<false>(kIters));
  }
  return (32.0 / dot) / (16.0 / fma);
}

}  // namespace cnnkernels
#else
namespace cnnkernels {
double measure_bf16_dot_rate_ratio() { return 0.0; }  // no AVX512-BF16 off x86
}  // namespace cnnkernels
#endif
