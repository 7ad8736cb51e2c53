// Launch geometry shared by the CUDA kernels: grid-stride loops over int64 work counts with a
// bounded grid, so tensors of more than 2^31 elements need no special path.
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

// CNNK_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...) launches kernel<<<...>>>(args...).
// Built for the CPU (tests/cuda_emu, CNNKERNELS_CUDA_HOST_EMULATION), the same line runs the
// kernel's blocks and threads there, so the CUDA kernels' logic is tested on machines without a GPU.
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
#define CNNK_LAUNCH(grid, block, shared_bytes, stream, ...) ::cnnk_emu::launch(grid, block, __VA_ARGS__)
#else
#define CNNK_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#endif

namespace cnnkernels {
namespace cuda {

constexpr int kThreads = 256;              // elementwise kernels
constexpr int kReduceThreads = 256;        // block reductions; a power of two
constexpr int64_t kMaxBlocks = 65535 * 16; // well under gridDim.x's 2^31 - 1

// Blocks for `items` units of work handled `per_block` at a time, capped at kMaxBlocks.
inline unsigned grid_for(int64_t items, int64_t per_block) {
  return unsigned(std::min((items + per_block - 1) / per_block, kMaxBlocks));
}

__device__ __forceinline__ int64_t global_thread() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

// What an entry point that may not take a problem reports: whether it launched, and the error.
struct Launched {
  bool ran;         // false: not a problem these kernels take; nothing was launched
  cudaError_t err;  // the launches' error where ran
};

// The error of the launches just made (emulated on the CPU: a misaligned access it caught).
inline cudaError_t last_launch_error() {
#ifdef CNNKERNELS_CUDA_HOST_EMULATION
  return ::cnnk_emu::take_fault();
#else
  return cudaGetLastError();
#endif
}

}  // namespace cuda
}  // namespace cnnkernels
