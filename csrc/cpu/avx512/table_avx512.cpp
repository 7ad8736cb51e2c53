// The AVX-512 kernel table (this folder is built with -mavx512f -mavx512bw -mavx512vl -mavx512dq):
// hand-written kernels where this folder has them, else the float32 reference loops compiled with
// these flags (the compiler vectorises their row loops: "avx512_autovec").
#include "../kernels.h"
#if defined(__x86_64__)
#define CNNKERNELS_KERNEL_NS avx512
#include "../reference/conv2d_reference.h"
#include "../reference/max_pool2d_reference.h"

namespace cnnkernels {
namespace avx512 {
// Hand-written kernels of this folder (max_pool2d_avx512.cpp).
void max_pool2d_fwd_f32(const MaxPool2dFwdArgs& a);
void max_pool2d_bwd_f32(const MaxPool2dBwdArgs& a);
}  // namespace avx512

const CpuKernelTable* avx512_kernel_table(DType dtype) {
  static const CpuKernelTable f32 = [] {
    CpuKernelTable t = CNNKERNELS_REFERENCE_TABLE(avx512, float, "f32", "avx512_autovec");
    // channels_last and NCHW kernels, 16 lanes; other strides fall back to the reference inside.
    t.max_pool2d_fwd = {avx512::max_pool2d_fwd_f32, "max_pool2d_fwd_nchw+nhwc_f32__avx512_16"};
    t.max_pool2d_bwd = {avx512::max_pool2d_bwd_f32, "max_pool2d_bwd_nchw+nhwc_f32__avx512_16"};
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
