// The op schemas (namespace cnnkernels) and their CPU, CUDA and autocast kernels. Autograd is in
// autograd.cpp, fake kernels in Python (cnnkernels/_ops.py). Each backward is its own op, so
// torch.compile and torch.export see every kernel.
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "../common/parallel.h"
#include "conv2d.h"
#include "max_pool2d.h"

namespace cnnkernels {
namespace {

// The kernels' parallel_for runs on torch's intra-op pool, so torch.set_num_threads applies.
void torch_parallel_for(int64_t begin, int64_t end, int64_t grain, ParallelBody body, void* ctx) {
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { body(ctx, b, e); });
}

int64_t torch_parallel_threads() { return at::in_parallel_region() ? 1 : at::get_num_threads(); }

const bool kParallelInstalled = [] {
  set_parallel_backend(&torch_parallel_for, &torch_parallel_threads);
  return true;
}();

// Autocast: conv2d is on autocast's lower-precision list, like aten::conv2d: floating inputs are
// cast to the current autocast dtype of the device, then autocast is off for the call.
template <c10::DeviceType device, c10::DispatchKey key>
at::Tensor conv2d_autocast(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(key);
  static const auto op = find_op<decltype(conv2d)>("cnnkernels::conv2d");
  const at::ScalarType to = at::autocast::get_lower_precision_fp_from_device_type(device);
  return op.call(at::autocast::cached_cast(to, input, device), at::autocast::cached_cast(to, weight, device),
                 at::autocast::cached_cast(to, bias, device), stride, padding, dilation, groups);
}

}  // namespace

TORCH_LIBRARY(cnnkernels, m) {
  m.def("conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, int[2] dilation, "
        "int groups) -> Tensor");
  m.def("conv2d_input_grad(Tensor grad_output, Tensor weight, SymInt[4] input_size, int[2] stride, "
        "int[2] padding, int[2] dilation, int groups, bool channels_last) -> Tensor");
  m.def("conv2d_weight_grad(Tensor grad_output, Tensor input, SymInt[4] weight_size, int[2] stride, "
        "int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def("conv2d_bias_grad(Tensor grad_output) -> Tensor");
  m.def("max_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, "
        "bool ceil_mode) -> Tensor");
  m.def("max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
        "int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  m.def("max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[4] input_size, int[2] kernel_size, "
        "int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
  m.def("max_pool2d_with_taps(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
        "int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  m.def("max_pool2d_backward_taps(Tensor grad_output, Tensor taps, SymInt[4] input_size, int[2] kernel_size, "
        "int[2] stride, int[2] padding, int[2] dilation) -> Tensor");
}

// The same functions serve both devices: they branch on the tensors' device after the shared
// checks (a CPU-only build answers CUDA tensors with a clear error).
#define CNNKERNELS_REGISTER_KERNELS(m)                           \
  m.impl("conv2d", &conv2d);                                     \
  m.impl("conv2d_input_grad", &conv2d_input_grad);               \
  m.impl("conv2d_weight_grad", &conv2d_weight_grad);             \
  m.impl("conv2d_bias_grad", &conv2d_bias_grad);                 \
  m.impl("max_pool2d", &max_pool2d);                             \
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices);   \
  m.impl("max_pool2d_backward", &max_pool2d_backward);           \
  m.impl("max_pool2d_with_taps", &max_pool2d_with_taps);         \
  m.impl("max_pool2d_backward_taps", &max_pool2d_backward_taps)

TORCH_LIBRARY_IMPL(cnnkernels, CPU, m) { CNNKERNELS_REGISTER_KERNELS(m); }
TORCH_LIBRARY_IMPL(cnnkernels, CUDA, m) { CNNKERNELS_REGISTER_KERNELS(m); }

TORCH_LIBRARY_IMPL(cnnkernels, AutocastCPU, m) {
  m.impl("conv2d", &conv2d_autocast<c10::DeviceType::CPU, c10::DispatchKey::AutocastCPU>);
}
TORCH_LIBRARY_IMPL(cnnkernels, AutocastCUDA, m) {
  m.impl("conv2d", &conv2d_autocast<c10::DeviceType::CUDA, c10::DispatchKey::AutocastCUDA>);
}

}  // namespace cnnkernels
