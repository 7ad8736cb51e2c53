#include "parallel.h"

#include <algorithm>
#include <atomic>

namespace cnnkernels {

static std::atomic<ParallelBackend> g_backend{nullptr};
static std::atomic<ParallelThreads> g_threads{nullptr};

void set_parallel_backend(ParallelBackend backend, ParallelThreads threads) {
  g_threads.store(threads);
  g_backend.store(backend);
}
ParallelBackend parallel_backend() { return g_backend.load(); }

int64_t parallel_threads() {
  const ParallelThreads threads = g_threads.load();
  return g_backend.load() != nullptr && threads != nullptr ? std::max<int64_t>(1, threads()) : 1;
}

}  // namespace cnnkernels
