// The avx2 kernel table (this folder is built with -mavx2 -mfma; see ../simd/kernel_table.inc).
#include "../kernels.h"
#if defined(__x86_64__) && !defined(CNNKERNELS_NO_SIMD_TABLES)  // (CMake CNNKERNELS_CPU_SIMD=OFF)
#define CNNKERNELS_KERNEL_NS avx2
#define CNNKERNELS_TABLE_FN avx2_kernel_table
#define CNNKERNELS_ISA "avx2"
#define CNNKERNELS_LANES "8"
#include "../simd/kernel_table.inc"
#else
namespace cnnkernels {
const CpuKernelTable* avx2_kernel_table(DType) { return nullptr; }
}  // namespace cnnkernels
#endif
