// The AVX2 kernel table (this folder is built with -mavx2 -mfma):
// hand-written kernels where this folder has them, else the float32 reference loops compiled with
// these flags (the compiler vectorises their row loops: "avx2_autovec").
#include "../kernels.h"
#if defined(__x86_64__)
#define CNNKERNELS_KERNEL_NS avx2
#include "../reference/conv2d_reference.h"
#include "../reference/max_pool2d_reference.h"

namespace cnnkernels {
namespace avx2 {
// Hand-written kernels of this folder (max_pool2d_avx2.cpp).
void max_pool2d_fwd_f32(const MaxPool2dFwdArgs& a);
void max_pool2d_bwd_f32(const MaxPool2dBwdArgs& a);
}  // namespace avx2

const CpuKernelTable* avx2_kernel_table(DType dtype) {
  static const CpuKernelTable f32 = [] {
    CpuKernelTable t = CNNKERNELS_REFERENCE_TABLE(avx2, float, "f32", "avx2_autovec");
    // channels_last and NCHW kernels, 8 lanes; other strides fall back to the reference inside.
    t.max_pool2d_fwd = {avx2::max_pool2d_fwd_f32, "max_pool2d_fwd_nchw+nhwc_f32__avx2_8"};
    t.max_pool2d_bwd = {avx2::max_pool2d_bwd_f32, "max_pool2d_bwd_nchw+nhwc_f32__avx2_8"};
    return t;
  }();
  return dtype == DType::f32 ? &f32 : nullptr;
}

}  // namespace cnnkernels
#else
namespace cnnkernels {
const CpuKernelTable* avx2_kernel_table(DType) { return nullptr; }
}  // namespace cnnkernels
#endif
