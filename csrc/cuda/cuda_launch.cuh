// Launch geometry shared by the CUDA kernels: grid-stride loops over int64 work counts with a
// bounded grid, so tensors of more than 2^31 elements need no special path.
#pragma once
#include <algorithm>
#include <cstdint>

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

}  // namespace cuda
}  // namespace cnnkernels
