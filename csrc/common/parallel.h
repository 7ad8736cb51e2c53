// A torch-free parallel_for. The kernels call it; the op layer installs torch's intra-op pool
// (at::parallel_for) at load time, so torch.set_num_threads is honoured. Without an installed
// backend (a CMake-only build of the kernels) it runs serially.
#pragma once
#include <cstdint>

namespace cnnkernels {

using ParallelBody = void (*)(void* ctx, int64_t begin, int64_t end);
using ParallelBackend = void (*)(int64_t begin, int64_t end, int64_t grain, ParallelBody body,
                                 void* ctx);
using ParallelThreads = int64_t (*)();

// `threads` says how many threads a parallel_for started now would use (1 where it would run
// serially, as inside another parallel region).
void set_parallel_backend(ParallelBackend backend, ParallelThreads threads);
ParallelBackend parallel_backend();

// The threads a parallel_for started now runs on: parallel_for(0, parallel_threads(), 1, f) hands
// each thread one index (the backend splits a range into one contiguous chunk per thread).
int64_t parallel_threads();

// Calls f(begin_chunk, end_chunk) over disjoint chunks of [begin, end) covering it exactly once.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (begin >= end) return;
  ParallelBackend backend = parallel_backend();
  ParallelBody body = [](void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); };
  if (backend == nullptr) {
    body(const_cast<F*>(&f), begin, end);
  } else {
    backend(begin, end, grain, body, const_cast<F*>(&f));
  }
}

}  // namespace cnnkernels
