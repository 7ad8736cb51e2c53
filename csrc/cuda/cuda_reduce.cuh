// Fixed-order block reductions: bit-reproducible sums without atomics.
#pragma once
#include "cuda_launch.cuh"

namespace cnnkernels {
namespace cuda {

// Sum of v over the block in a fixed tree order. Every thread of the block must call it; launched
// with exactly kReduceThreads threads.
template <typename A>
__device__ A block_sum(A v) {
  __shared__ A smem[kReduceThreads];
  smem[threadIdx.x] = v;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) smem[threadIdx.x] += smem[threadIdx.x + half];
    __syncthreads();
  }
  const A total = smem[0];
  __syncthreads();  // the next call overwrites smem
  return total;
}

}  // namespace cuda
}  // namespace cnnkernels
