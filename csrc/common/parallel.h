// A torch-free parallel_for. The kernels call it; the op layer installs torch's intra-op pool
// (at::parallel_for) at load time, so torch.set_num_threads is honoured. Without an installed
// backend (a CMake-only build of the kernels) it runs serially.
#pragma once
#include <chrono>
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

// Thread-balance profile, on where CNNKERNELS_PARALLEL_PROFILE=1 was set when the library loaded:
// each parallel_for call site sums the time of its first chunk (the calling thread's) and of its
// other chunks, and at exit prints a line per site to stderr (scripts/thread_balance.py runs the
// suite's layers through it). A first chunk much slower or faster than the others is a split to
// fix: equal item counts of unequal work, or fewer items than threads.
bool parallel_profile_enabled();
int parallel_profile_site(const char* name);
void parallel_profile_add(int site, bool first_chunk, int64_t nanoseconds, int64_t items);

// Calls f(begin_chunk, end_chunk) over disjoint chunks of [begin, end) covering it exactly once.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (begin >= end) return;
  ParallelBackend backend = parallel_backend();
  if (backend != nullptr && parallel_profile_enabled()) {
    static const int site = parallel_profile_site(__PRETTY_FUNCTION__);
    struct Profiled {
      const F* f;
      int64_t begin;
    } ctx{&f, begin};
    ParallelBody timed = [](void* c, int64_t b, int64_t e) {
      const auto* k = static_cast<const Profiled*>(c);
      const auto t0 = std::chrono::steady_clock::now();
      (*k->f)(b, e);
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0);
      parallel_profile_add(site, b == k->begin, ns.count(), e - b);
    };
    backend(begin, end, grain, timed, &ctx);
    return;
  }
  ParallelBody body = [](void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); };
  if (backend == nullptr) {
    body(const_cast<F*>(&f), begin, end);
  } else {
    backend(begin, end, grain, body, const_cast<F*>(&f));
  }
}

}  // namespace cnnkernels
