// Depthwise conv2d kernels (conv2d_depthwise.cu), tried by conv2d.cu's entry points before the
// reference kernels: they run dense NCHW / channels_last depthwise layers (groups == C == K).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "../common/conv_params.h"
#include "cuda_launch.cuh"  // Launched

namespace cnnkernels {
namespace cuda {

Launched depthwise_fprop(const Conv2dFpropArgs& args, cudaStream_t stream);
Launched depthwise_dgrad(const Conv2dDgradArgs& args, cudaStream_t stream);
// The weight gradient (3x3 filters) sums pixel slices into a workspace of
// depthwise_wgrad_workspace_bytes(args) bytes (0: the kernels do not take this layer).
size_t depthwise_wgrad_workspace_bytes(const Conv2dWgradArgs& args);
Launched depthwise_wgrad(const Conv2dWgradArgs& args, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream);

}  // namespace cuda
}  // namespace cnnkernels
