// The op layer's door to the CUDA kernels (csrc/ops/cuda/, compiled only where a CUDA toolkit
// exists). Each call holds a device guard for `on`, launches on the current stream, and raises
// a c10::Error if the launch fails. Nothing synchronises.
#pragma once
#include <ATen/ATen.h>

#include "../common/conv_params.h"
#include "../common/pool_params.h"

namespace cnnkernels {
namespace cuda_backend {

void conv2d_fprop(const Conv2dFpropArgs& args, const at::Tensor& on);
void conv2d_dgrad(const Conv2dDgradArgs& args, const at::Tensor& on);
void conv2d_wgrad(const Conv2dWgradArgs& args, const at::Tensor& on);
void conv2d_bgrad(const Conv2dBgradArgs& args, const at::Tensor& on);
void max_pool2d_fwd(const MaxPool2dFwdArgs& args, const at::Tensor& on);
void max_pool2d_bwd(const MaxPool2dBwdArgs& args, const at::Tensor& on);
std::string compiled_architectures();
void set_reference_kernels_only(bool on);  // cuda_kernels.h
bool reference_kernels_only();
void set_gemm_tiles(int tiles);  // cuda::GemmTiles: 0 automatic, 1 small, 2 large

}  // namespace cuda_backend
}  // namespace cnnkernels
