// Strided addressing for the CUDA kernels, and the host-side checks the entry points use to pick a
// dense fast path over the any-strides reference kernels: which dense layout a set of strides
// describes, alignment, index width.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda_launch.cuh"  // launch_dense

namespace cnnkernels {
namespace cuda {

// Element (a, b, c, d) of a 4-D view with strides st (n, c, h, w or k, c, r, s order).
__host__ __device__ __forceinline__ int64_t offset4(const int64_t* st, int64_t a, int64_t b, int64_t c, int64_t d) {
  return a * st[0] + b * st[1] + c * st[2] + d * st[3];
}

enum class Dense { none, nchw, nhwc };

// Whether strides (n, c, h, w) of an N x C x H x W tensor address it densely in `layout`; a size-1
// dimension's stride is never used, so it may be anything.
inline bool strides_are(Dense layout, const int64_t* st, int64_t N, int64_t C, int64_t H, int64_t W) {
  if (layout == Dense::none) return false;
  const int64_t sizes[4] = {N, C, H, W};
  const int64_t want[2][4] = {{C * H * W, H * W, W, 1}, {H * W * C, 1, W * C, C}};
  const int64_t* w = want[layout == Dense::nhwc];
  for (int d = 0; d < 4; ++d)
    if (sizes[d] > 1 && st[d] != w[d]) return false;
  return true;
}

inline bool aligned(const void* ptr, int bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

// Whether channels_last threads can own 16-byte vectors of `vec` channels: C a multiple of vec and
// every tensor's base 16-byte aligned (each vector then starts at a multiple of vec elements).
inline bool vectors_fit(int64_t C, int vec, std::initializer_list<const void*> tensors) {
  if (C % vec) return false;
  for (const void* t : tensors)
    if (!aligned(t, 16)) return false;
  return true;
}

// uint32_t index math is safe when no tensor has more than 2^31 elements: a grid-stride index
// then stays below 2^31 + the grid's threads (< 2^29) < 2^32.
inline bool fits_uint32_index(int64_t elements) { return elements <= (int64_t(1) << 31); }

// Launches the variant of a dense-layout kernel family on `total` elements: kernel_for(I{},
// std::integral_constant<int, V>{}) names the kernel, with V = 0 for NCHW (a thread's work per
// element) and for channels_last V = vec (channels per 16-byte vector) where `vectors` (whole
// aligned vectors fit), else 1 (per V elements); I = uint32_t where `narrow`, else int64_t.
template <int vec, class KernelFor, class... Args>
void launch_dense(Dense layout, bool vectors, bool narrow, int64_t total, cudaStream_t stream,
                  const KernelFor& kernel_for, const Args&... args) {
  const auto launch = [&](auto index, auto v) {
    constexpr int V = decltype(v)::value;
    const auto kernel = kernel_for(index, v);
    CNNK_LAUNCH(grid_for(V ? total / V : total, kThreads), kThreads, 0, stream, kernel)(args...);
  };
  const auto with_index = [&](auto v) {
    if (narrow) launch(uint32_t{}, v);
    else launch(int64_t{}, v);
  };
  if (layout == Dense::nchw) with_index(std::integral_constant<int, 0>{});
  else if (vectors) with_index(std::integral_constant<int, vec>{});
  else with_index(std::integral_constant<int, 1>{});
}

}  // namespace cuda
}  // namespace cnnkernels
