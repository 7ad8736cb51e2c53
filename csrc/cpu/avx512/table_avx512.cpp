// The avx512 kernel table (this folder is built with -mavx512f -mavx512bw -mavx512vl -mavx512dq; see ../simd/kernel_table.inc).
#include "../kernels.h"
#if defined(__x86_64__) && !defined(CNNKERNELS_NO_SIMD_TABLES)  // (CMake CNNKERNELS_CPU_SIMD=OFF)
// GCC 12 flags the _mm512_undefined_* pass-through operands inside the widening and narrowing
// intrinsics (vec.h's bfloat16 conversions) as maybe-uninitialized (GCC bug 105593): a false
// positive, silenced here as in max_pool2d_avx512.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define CNNKERNELS_KERNEL_NS avx512
#define CNNKERNELS_TABLE_FN avx512_kernel_table
#define CNNKERNELS_ISA "avx512"
#define CNNKERNELS_LANES "16"
#define CNNKERNELS_BF16_DOT_NS avx512bf16  // conv2d_bf16dot_avx512.cpp
#include "../simd/kernel_table.inc"
#else
namespace cnnkernels {
const CpuKernelTable* avx512_kernel_table(DType) { return nullptr; }
}  // namespace cnnkernels
#endif
