// The scalar reference table: every op for float32, float64 and bfloat16.
#define CNNKERNELS_KERNEL_NS ref
#include "conv2d_reference.h"
#include "max_pool2d_reference.h"
#include "../kernels.h"

namespace cnnkernels {

template <typename T>
static CpuKernelTable reference_table() {
  return CpuKernelTable{"scalar_ref",         ref::conv2d_fprop<T>,   ref::conv2d_dgrad<T>,
                        ref::conv2d_wgrad<T>, ref::conv2d_bgrad<T>,   ref::max_pool2d_fwd<T>,
                        ref::max_pool2d_bwd<T>};
}

const CpuKernelTable* reference_kernel_table(DType dtype) {
  static const CpuKernelTable f32 = reference_table<float>();
  static const CpuKernelTable f64 = reference_table<double>();
  static const CpuKernelTable b16 = reference_table<bf16>();
  switch (dtype) {
    case DType::f32: return &f32;
    case DType::f64: return &f64;
    case DType::bf16: return &b16;
    case DType::f16: return nullptr;
  }
  return nullptr;
}

}  // namespace cnnkernels
