// Raw memory for the kernels' per-call scratch (packed activations and weights), recycled per
// thread. With plain new[], glibc often handed multi-megabyte blocks back to the OS on free, and
// the next call's first touch page-faulted 4 KB at a time: measured at N=1 in one process, the
// depthwise NCHW input gradient 32 @ 112 took 2.0 ms against 1.0 with this cache, the weight
// gradient 144 @ 56 1.45 against 0.66 (perf: a quarter of the time in the kernel's fault path).
// Each thread keeps up to kCachedBlocks freed blocks, kCachedBytes in all. An op's calling thread
// allocates its shared scratch; parallel_for bodies allocate what one thread alone uses (band
// buffers, per-thread packed weights) from their own thread's cache, so a worker gets back blocks
// already in its core's cache. Larger blocks go back to the system at once.
#pragma once
#include <cstddef>

namespace cnnkernels {

constexpr size_t kCachedBlocks = 8;
constexpr size_t kCachedBytes = size_t(128) << 20;

// At least `bytes` bytes, 64-byte aligned, contents unspecified; `capacity` receives the
// block's size, which scratch_free must be given with it.
void* scratch_alloc(size_t bytes, size_t* capacity);
void scratch_free(void* block, size_t capacity);

// Tests: fill every block scratch_alloc hands out with 0xFF bytes (float and bfloat16 NaN), so a
// kernel that reads scratch it did not write fails instead of reading a fresh page's zeros.
void set_poison_scratch(bool on);

}  // namespace cnnkernels
