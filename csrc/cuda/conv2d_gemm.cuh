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
// The tensor-core pipeline reads its operands as dense channels_last; others are copied into a
// workspace of gemm_*_workspace_bytes(args, allow_tf32) bytes first (0: none needed). With less
// workspace than that, fprop and dgrad run the simple tiles.
size_t gemm_fprop_workspace_bytes(const Conv2dFpropArgs& args, bool allow_tf32);
Launched gemm_fprop(const Conv2dFpropArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream);
size_t gemm_dgrad_workspace_bytes(const Conv2dDgradArgs& args, bool allow_tf32);
Launched gemm_dgrad(const Conv2dDgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream);
// The weight gradient also splits long reductions (N P Q pixels) into slices summed through the
// workspace; with less workspace than asked for, it runs one slice (and the simple tiles if the
// copies do not fit either).
size_t gemm_wgrad_workspace_bytes(const Conv2dWgradArgs& args, bool allow_tf32);
Launched gemm_wgrad(const Conv2dWgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnkernels
