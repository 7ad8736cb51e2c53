// The scalar reference table: every op for float32, float64 and bfloat16.
#define CNNKERNELS_KERNEL_NS ref
#include "conv2d_reference.h"
#include "max_pool2d_reference.h"
#include "../kernels.h"

namespace cnnkernels {

const CpuKernelTable* reference_kernel_table(DType dtype) {
  static const CpuKernelTable f32 = CNNKERNELS_REFERENCE_TABLE(ref, float, "f32", "scalar_ref");
  static const CpuKernelTable f64 = CNNKERNELS_REFERENCE_TABLE(ref, double, "f64", "scalar_ref");
  static const CpuKernelTable b16 = CNNKERNELS_REFERENCE_TABLE(ref, bf16, "bf16", "scalar_ref");
  switch (dtype) {
    case DType::f32: return &f32;
    case DType::f64: return &f64;
    case DType::bf16: return &b16;
    case DType::f16: return nullptr;
  }
  return nullptr;
}

}  // namespace cnnkernels
