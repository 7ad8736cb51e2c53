// Built with -mavx2 -mfma (see CMakeLists.txt).
#define CNNKERNELS_KERNEL_NS avx2
#define CNNKERNELS_TABLE_FN avx2_kernel_table
#define CNNKERNELS_VARIANT "avx2_autovec"
#include "../reference/autovec_table.inc"
