// Entry points of the CUDA kernels. Torch-free: the op layer (csrc/ops) fills the argument structs
// from tensors, holds the device guard, passes the current stream, and turns a non-success
// cudaError_t into an exception. Each function launches asynchronously on `stream` and returns
// cudaGetLastError() after its launches; none synchronises.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "../common/conv_params.h"
#include "../common/pool_params.h"

namespace cnnkernels {
namespace cuda {

// All four dtypes (f32, f64, f16, bf16; f32 accumulation for the 16-bit types).
// allow_tf32: the caller's torch.backends.cudnn.allow_tf32. Where true, float32 layers of the
// implicit GEMM run on the tensor cores as TF32; the depthwise and reference kernels stay exact.
// Each may need a device workspace of conv2d_*_workspace_bytes(args, allow_tf32) bytes (bounded:
// channels_last copies of the operands, the weight gradient's partial sums; never an im2col); the
// caller allocates it on `stream`'s allocator. With less, a slower kernel runs.
size_t conv2d_fprop_workspace_bytes(const Conv2dFpropArgs& args, bool allow_tf32);
cudaError_t conv2d_fprop(const Conv2dFpropArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream);
size_t conv2d_dgrad_workspace_bytes(const Conv2dDgradArgs& args, bool allow_tf32);
cudaError_t conv2d_dgrad(const Conv2dDgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream);
size_t conv2d_wgrad_workspace_bytes(const Conv2dWgradArgs& args, bool allow_tf32);
cudaError_t conv2d_wgrad(const Conv2dWgradArgs& args, bool allow_tf32, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream);
cudaError_t conv2d_bgrad(const Conv2dBgradArgs& args, cudaStream_t stream);

cudaError_t max_pool2d_fwd(const MaxPool2dFwdArgs& args, cudaStream_t stream);
cudaError_t max_pool2d_bwd(const MaxPool2dBwdArgs& args, cudaStream_t stream);

// Every entry point runs the fastest kernels that take its problem (dense-layout, depthwise and
// implicit-GEMM kernels), unless this switch is on: then the any-strides reference kernels run
// everything, so that tests on a GPU can check the fast kernels against them. Process-wide.
void set_reference_kernels_only(bool on);
bool reference_kernels_only();

// The tensor-core GEMM pipeline's block tiles: chosen per layer (automatic), or forced to 64 x 64
// (small) or 128 x 128 (large) for tests and tuning runs. Process-wide.
enum class GemmTiles { automatic = 0, small = 1, large = 2 };
void set_gemm_tiles(GemmTiles tiles);
GemmTiles gemm_tiles();

// The compute capabilities this library was compiled for, e.g. "80,90" (from the build).
const char* compiled_architectures();

}  // namespace cuda
}  // namespace cnnkernels
