// Library-wide settings of the CUDA kernels: compiled_architectures() (the compute capabilities
// this library was built for, as the build passes them in the string macro CNNKERNELS_CUDA_ARCHS,
// e.g. "80;90"), the reference-kernels switch and the GEMM tile override.
#include "cuda_kernels.h"

#include <atomic>

#ifndef CNNKERNELS_CUDA_ARCHS
#define CNNKERNELS_CUDA_ARCHS "unknown"
#endif

namespace cnnkernels {
namespace cuda {

const char* compiled_architectures() { return CNNKERNELS_CUDA_ARCHS; }

namespace {
std::atomic<bool> g_reference_only{false};
}
void set_reference_kernels_only(bool on) { g_reference_only.store(on, std::memory_order_relaxed); }
bool reference_kernels_only() { return g_reference_only.load(std::memory_order_relaxed); }

namespace {
std::atomic<GemmTiles> g_gemm_tiles{GemmTiles::automatic};
}
void set_gemm_tiles(GemmTiles tiles) { g_gemm_tiles.store(tiles, std::memory_order_relaxed); }
GemmTiles gemm_tiles() { return g_gemm_tiles.load(std::memory_order_relaxed); }

}  // namespace cuda
}  // namespace cnnkernels
