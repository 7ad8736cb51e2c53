// The AVX-512 kernel table (this folder is built with -mavx512f -mavx512bw -mavx512vl -mavx512dq):
// hand-written kernels where this folder has them, else the float32 reference loops compiled with
// these flags (the compiler vectorises their row loops: "avx512_autovec").
#include "../kernels.h"
#if defined(__x86_64__)
#define CNNKERNELS_KERNEL_NS avx512
#include "../reference/conv2d_reference.h"
#include "../reference/max_pool2d_reference.h"

namespace cnnkernels {

const CpuKernelTable* avx512_kernel_table(DType dtype) {
  static const CpuKernelTable f32 = [] {
    CpuKernelTable t = CNNKERNELS_REFERENCE_TABLE(avx512, float, "f32", "avx512_autovec");
    return t;
  }();
  return dtype == DType::f32 ? &f32 : nullptr;
}

}  // namespace cnnkernels
#else
namespace cnnkernels {
const CpuKernelTable* avx512_kernel_table(DType) { return nullptr; }
}  // namespace cnnkernels
#endif
