// Built with -mavx512f -mavx512bw -mavx512vl -mavx512dq (see CMakeLists.txt).
#define CNNKERNELS_KERNEL_NS avx512
#define CNNKERNELS_TABLE_FN avx512_kernel_table
#define CNNKERNELS_VARIANT "avx512_autovec"
#include "../reference/autovec_table.inc"
