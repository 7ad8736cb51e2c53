#include "parallel.h"

#include <atomic>

namespace cnnkernels {

static std::atomic<ParallelBackend> g_backend{nullptr};

void set_parallel_backend(ParallelBackend backend) { g_backend.store(backend); }
ParallelBackend parallel_backend() { return g_backend.load(); }

}  // namespace cnnkernels
