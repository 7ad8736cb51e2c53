// The AVX-512 kernel table (this folder is built with -mavx512f -mavx512bw -mavx512vl -mavx512dq):
// hand-written kernels where this folder has them, else the float32 reference loops compiled with
// these flags (the compiler vectorises their row loops: "avx512_autovec").
#include "../kernels.h"
#if defined(__x86_64__)
#define CNNKERNELS_KERNEL_NS avx512
#include "../reference/conv2d_reference.h"
#include "../reference/max_pool2d_reference.h"
#include "../simd/conv2d_direct.h"
#include "../simd/conv2d_wgrad.h"
#include "../simd/depthwise.h"

namespace cnnkernels {
namespace {

// The SIMD engines where they apply (depthwise, dense with >= 8 channels per group), else the
// reference loops compiled for this ISA.
void conv2d_fprop_f32(const Conv2dFpropArgs& a) {
  if (!avx512::depthwise_fprop_f32(a) && !avx512::conv2d_fprop_pointwise_nchw_f32(a) &&
      !avx512::conv2d_fprop_direct_f32(a))
    avx512::conv2d_fprop<float>(a);
}
void conv2d_dgrad_f32(const Conv2dDgradArgs& a) {
  if (!avx512::depthwise_dgrad_f32(a) && !avx512::conv2d_dgrad_direct_f32(a)) avx512::conv2d_dgrad<float>(a);
}
void conv2d_wgrad_f32(const Conv2dWgradArgs& a) {
  if (!avx512::depthwise_wgrad_f32(a) && !avx512::conv2d_wgrad_direct_f32(a)) avx512::conv2d_wgrad<float>(a);
}
void conv2d_bgrad_f32(const Conv2dBgradArgs& a) {
  if (!avx512::conv2d_bgrad_channels_last_f32(a)) avx512::conv2d_bgrad<float>(a);
}

}  // namespace

namespace avx512 {
// Hand-written kernels of this folder (max_pool2d_avx512.cpp).
void max_pool2d_fwd_f32(const MaxPool2dFwdArgs& a);
void max_pool2d_bwd_f32(const MaxPool2dBwdArgs& a);
}  // namespace avx512

const CpuKernelTable* avx512_kernel_table(DType dtype) {
  static const CpuKernelTable f32 = [] {
    CpuKernelTable t = CNNKERNELS_REFERENCE_TABLE(avx512, float, "f32", "avx512_autovec");
    t.conv2d_fprop = {conv2d_fprop_f32, "conv2d_fprop_nhwc_f32__avx512_direct+dw"};
    t.conv2d_dgrad = {conv2d_dgrad_f32, "conv2d_dgrad_nhwc_f32__avx512_direct+dw"};
    t.conv2d_wgrad = {conv2d_wgrad_f32, "conv2d_wgrad_nhwc_f32__avx512_direct+dw"};
    t.conv2d_bgrad = {conv2d_bgrad_f32, "conv2d_bgrad_nhwc_f32__avx512_vec"};
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
