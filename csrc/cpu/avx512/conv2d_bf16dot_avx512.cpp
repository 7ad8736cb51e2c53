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
}  // namespace cnnkernels
#endif
