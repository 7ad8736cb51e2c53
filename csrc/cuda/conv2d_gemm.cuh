// Implicit-GEMM conv2d kernels on the CUDA cores (conv2d_gemm.cu), for any dtype, strides and
// groups: conv2d.cu's entry points run them for every layer the depthwise kernels do not take.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "../common/conv_params.h"
#include "cuda_launch.cuh"  // Launched

namespace cnnkernels {
namespace cuda {

// allow_tf32: float32 on the tensor cores as TF32 (else exact on the CUDA cores).
Launched gemm_fprop(const Conv2dFpropArgs& args, bool allow_tf32, cudaStream_t stream);
Launched gemm_dgrad(const Conv2dDgradArgs& args, bool allow_tf32, cudaStream_t stream);
// The weight gradient splits long reductions (N P Q pixels) into slices summed through a workspace
// of gemm_wgrad_workspace_bytes(args) bytes (0: one slice, no workspace); with less workspace than
// that it runs one slice.
size_t gemm_wgrad_workspace_bytes(const Conv2dWgradArgs& args, bool allow_tf32);
Launched gemm_wgrad(const Conv2dWgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnkernels
