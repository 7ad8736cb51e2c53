#include "../cuda_backend.h"

#include <ATen/Context.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "../../cuda/cuda_kernels.h"

namespace cnnkernels {
namespace cuda_backend {
namespace {

bool allow_tf32() { return at::globalContext().allowTF32CuDNN(at::Float32Op::CONV); }

// Runs launch(stream) under a guard for the tensor's device and turns its error into an exception.
template <typename Launch>
void on_device(const at::Tensor& on, Launch launch) {
  const c10::cuda::CUDAGuard guard(on.device());
  C10_CUDA_CHECK(launch(c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

// Runs launch(workspace, bytes) with the workspace `bytes_for(allow_tf32)` asks for, from torch's
// caching allocator on the current stream: no synchronisation, reused across calls.
template <class Bytes, class Launch>
void with_workspace(const at::Tensor& on, const Bytes& bytes_for, const Launch& launch) {
  const c10::cuda::CUDAGuard guard(on.device());
  const bool tf32 = allow_tf32();
  const size_t bytes = bytes_for(tf32);
  const at::Tensor workspace = bytes ? at::empty({int64_t(bytes)}, on.options().dtype(at::kByte)) : at::Tensor();
  void* ws = bytes ? workspace.data_ptr() : nullptr;
  on_device(on, [&](cudaStream_t s) { return launch(tf32, ws, bytes, s); });
}

void conv2d_fprop(const Conv2dFpropArgs& a, const at::Tensor& on) {
  with_workspace(on, [&](bool tf32) { return cuda::conv2d_fprop_workspace_bytes(a, tf32); },
                 [&](bool tf32, void* ws, size_t bytes, cudaStream_t s) { return cuda::conv2d_fprop(a, tf32, ws, bytes, s); });
}
void conv2d_dgrad(const Conv2dDgradArgs& a, const at::Tensor& on) {
  with_workspace(on, [&](bool tf32) { return cuda::conv2d_dgrad_workspace_bytes(a, tf32); },
                 [&](bool tf32, void* ws, size_t bytes, cudaStream_t s) { return cuda::conv2d_dgrad(a, tf32, ws, bytes, s); });
}
void conv2d_wgrad(const Conv2dWgradArgs& a, const at::Tensor& on) {
  with_workspace(on, [&](bool tf32) { return cuda::conv2d_wgrad_workspace_bytes(a, tf32); },
                 [&](bool tf32, void* ws, size_t bytes, cudaStream_t s) { return cuda::conv2d_wgrad(a, tf32, ws, bytes, s); });
}
void conv2d_bgrad(const Conv2dBgradArgs& a, const at::Tensor& on) {
  on_device(on, [&](cudaStream_t s) { return cuda::conv2d_bgrad(a, s); });
}
void max_pool2d_fwd(const MaxPool2dFwdArgs& a, const at::Tensor& on) {
  on_device(on, [&](cudaStream_t s) { return cuda::max_pool2d_fwd(a, s); });
}
void max_pool2d_bwd(const MaxPool2dBwdArgs& a, const at::Tensor& on) {
  on_device(on, [&](cudaStream_t s) { return cuda::max_pool2d_bwd(a, s); });
}
std::string compiled_architectures() { return cuda::compiled_architectures(); }
void set_reference_kernels_only(bool on) { cuda::set_reference_kernels_only(on); }
bool reference_kernels_only() { return cuda::reference_kernels_only(); }
void set_gemm_tiles(int tiles) { cuda::set_gemm_tiles(cuda::GemmTiles(tiles)); }

}  // namespace cuda_backend
}  // namespace cnnkernels
