// compiled_architectures(): the compute capabilities this library was built for, as the build
// passes them in the string macro CNNKERNELS_CUDA_ARCHS (e.g. "80;90").
#include "cuda_kernels.h"

#ifndef CNNKERNELS_CUDA_ARCHS
#define CNNKERNELS_CUDA_ARCHS "unknown"
#endif

namespace cnnkernels {
namespace cuda {

const char* compiled_architectures() { return CNNKERNELS_CUDA_ARCHS; }

}  // namespace cuda
}  // namespace cnnkernels
