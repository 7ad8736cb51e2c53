// Device-side element access for the CUDA kernels: each storage type T loads into and stores from
// its accumulator type A (float for f32/f16/bf16, double for f64), and dispatch() maps the runtime
// DType onto a template instantiation. __half and __nv_bfloat16 share their bit layout with
// c10::Half and c10::BFloat16, so tensor memory is read in place.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "../common/dtype.h"

namespace cnnkernels {
namespace cuda {

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ double load(const double* p) { return *p; }
__device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// Round to nearest even, like PyTorch's own float -> half / bfloat16 conversions.
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// The same on values already in registers (vector loads deliver T, not pointers).
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

// VEC elements of T as one aligned access (16 bytes for VEC = 16 / sizeof(T)).
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) VecOf {
  T v[VEC];
};
// Elements per 16-byte access.
template <typename T> constexpr int kVec16 = 16 / int(sizeof(T));

template <typename T> struct TypeTag { using type = T; };

// Calls f(TypeTag<T>{}) for the storage type named by t; f returns a cudaError_t.
template <typename F>
cudaError_t dispatch(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::f16: return f(TypeTag<__half>{});
    case DType::bf16: return f(TypeTag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace cnnkernels
