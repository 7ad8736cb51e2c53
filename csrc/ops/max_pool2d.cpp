// max_pool2d ops: PyTorch's argument checks and output-size rule, then the kernels.
#include "max_pool2d.h"

#include "cuda_backend.h"
#include "../cpu/kernels.h"

namespace cnnkernels {
namespace {

constexpr const char* kOp = "cnnkernels.max_pool2d";

Pool2dProblem make_problem(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  check_pair(kernel, kOp, "kernel_size");
  check_pair(stride, kOp, "stride");
  check_pair(padding, kOp, "padding");
  check_pair(dilation, kOp, "dilation");
  TORCH_CHECK(kernel[0] > 0 && kernel[1] > 0, kOp, ": kernel_size must be positive, got ", kernel);
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, kOp, ": stride must be positive, got ", stride);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, kOp, ": dilation must be positive, got ", dilation);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, kOp, ": padding must be non-negative, got ", padding);
  // PyTorch checks padding against half the kernel size, not the dilated (effective) one.
  TORCH_CHECK(padding[0] <= kernel[0] / 2 && padding[1] <= kernel[1] / 2, kOp,
              ": padding should be at most half of kernel_size, got padding ", padding, " for kernel_size ", kernel);
  TORCH_CHECK(input.dim() == 4, kOp, ": expected 4-D input (N, C, H, W), got ", input.dim(), "-D input of size ",
              input.sizes());
  TORCH_CHECK(input.size(1) > 0 && input.size(2) > 0 && input.size(3) > 0, kOp,
              ": input channels, height and width must be non-zero, got input of size ", input.sizes());
  Pool2dProblem p{};
  p.N = input.size(0); p.C = input.size(1); p.H = input.size(2); p.W = input.size(3);
  p.kernel_h = kernel[0]; p.kernel_w = kernel[1];
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_h = padding[0]; p.pad_w = padding[1];
  p.dil_h = dilation[0]; p.dil_w = dilation[1];
  p.P = pool_out_size(p.H, p.kernel_h, p.stride_h, p.pad_h, p.dil_h, ceil_mode);
  p.Q = pool_out_size(p.W, p.kernel_w, p.stride_w, p.pad_w, p.dil_w, ceil_mode);
  TORCH_CHECK(p.P >= 1 && p.Q >= 1, kOp, ": given input of size ", input.sizes(), ", the calculated output size (",
              p.P, " x ", p.Q, ") is too small");
  p.dtype = kernel_dtype(input, kOp, "input");
  return p;
}

// winners: nullptr, int64 indices or uint8 taps (pool_params.h).
void run_forward(const Pool2dProblem& p, const at::Tensor& input, at::Tensor& y, at::Tensor* winners) {
  if (y.numel() == 0) return;
  MaxPool2dFwdArgs args{p, const_view(input), mut_view(y), nullptr, {0, 0, 0, 0}};
  if (winners) {
    if (winners->scalar_type() == at::kByte) args.taps = winners->data_ptr<uint8_t>();
    else args.indices = winners->data_ptr<int64_t>();
    for (int d = 0; d < 4; ++d) args.index_stride[d] = winners->stride(d);
  }
  if (input.is_cuda()) {
#ifdef CNNKERNELS_WITH_CUDA
    cuda_backend::max_pool2d_fwd(args, input);
#else
    fail_no_cuda(kOp);
#endif
  } else {
    cpu_max_pool2d_fwd(args);
  }
}

// The output and its winners (int64 indices, or uint8 taps) in the input's memory format.
std::tuple<at::Tensor, at::Tensor> forward_with(at::ScalarType winner_type, const at::Tensor& input,
                                                at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                                at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dProblem p = make_problem(input, kernel_size, stride, padding, dilation, ceil_mode);
  const auto fmt = memory_format(is_channels_last(input));
  at::Tensor y = new_output({p.N, p.C, p.P, p.Q}, input.options().memory_format(fmt));
  at::Tensor winners = new_output({p.N, p.C, p.P, p.Q}, input.options().dtype(winner_type).memory_format(fmt));
  run_forward(p, input, y, &winners);
  return {y, winners};
}

// The input gradient from int64 indices or uint8 taps (winners), after PyTorch's checks.
at::Tensor backward_from(const char* op, const char* winners_name, const at::Tensor& grad_output,
                         const at::Tensor& winners, at::IntArrayRef input_size, at::IntArrayRef kernel_size,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  const bool taps = winners.scalar_type() == at::kByte;
  TORCH_CHECK(input_size.size() == 4, op, ": input_size must have 4 values (N, C, H, W), got ", input_size);
  TORCH_CHECK(grad_output.dim() == 4, op, ": expected 4-D grad_output, got ", grad_output.dim(), "-D");
  TORCH_CHECK(winners.sizes() == grad_output.sizes(), op, ": ", winners_name, " of size ", winners.sizes(),
              " do not match grad_output of size ", grad_output.sizes());
  TORCH_CHECK(winners.device() == grad_output.device(), op, ": ", winners_name, " are on ", winners.device(),
              " but grad_output is on ", grad_output.device());
  TORCH_CHECK(grad_output.size(0) == input_size[0] && grad_output.size(1) == input_size[1], op,
              ": grad_output of size ", grad_output.sizes(), " does not match input_size ", input_size);
  for (int64_t s : input_size) TORCH_CHECK(s >= 0, op, ": input_size must be non-negative, got ", input_size);
  Pool2dProblem p{};
  p.N = input_size[0]; p.C = input_size[1]; p.H = input_size[2]; p.W = input_size[3];
  p.P = grad_output.size(2); p.Q = grad_output.size(3);
  check_pair(kernel_size, op, "kernel_size");
  check_pair(stride, op, "stride");
  check_pair(padding, op, "padding");
  check_pair(dilation, op, "dilation");
  TORCH_CHECK(kernel_size[0] > 0 && kernel_size[1] > 0 && stride[0] > 0 && stride[1] > 0 && dilation[0] > 0 &&
                  dilation[1] > 0 && padding[0] >= 0 && padding[1] >= 0,
              op, ": invalid window geometry kernel_size ", kernel_size, ", stride ", stride, ", padding ", padding,
              ", dilation ", dilation);
  p.kernel_h = kernel_size[0]; p.kernel_w = kernel_size[1];
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_h = padding[0]; p.pad_w = padding[1];
  p.dil_h = dilation[0]; p.dil_w = dilation[1];
  p.dtype = kernel_dtype(grad_output, op, "grad_output");
  TORCH_CHECK(!taps || p.kernel_h * p.kernel_w <= kMaxPoolMaxTaps, op, ": taps name at most ", kMaxPoolMaxTaps,
              " window elements, got kernel_size ", kernel_size);
  // The winners were produced in the input's memory format; the input gradient follows it.
  at::Tensor dx = new_output(input_size, grad_output.options().memory_format(memory_format(is_channels_last(winners))));
  if (dx.numel() == 0) return dx;
  MaxPool2dBwdArgs args{p, const_view(grad_output), nullptr, {0, 0, 0, 0}, mut_view(dx)};
  if (taps) args.taps = winners.data_ptr<uint8_t>();
  else args.indices = winners.data_ptr<int64_t>();
  for (int d = 0; d < 4; ++d) args.index_stride[d] = winners.stride(d);
  if (grad_output.is_cuda()) {
#ifdef CNNKERNELS_WITH_CUDA
    cuda_backend::max_pool2d_bwd(args, grad_output);
#else
    fail_no_cuda(op);
#endif
  } else {
    cpu_max_pool2d_bwd(args);
  }
  return dx;
}

}  // namespace

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dProblem p = make_problem(input, kernel_size, stride, padding, dilation, ceil_mode);
  at::Tensor y = new_output({p.N, p.C, p.P, p.Q},
                           input.options().memory_format(memory_format(is_channels_last(input))));
  run_forward(p, input, y, nullptr);
  return y;
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode) {
  return forward_with(at::kLong, input, kernel_size, stride, padding, dilation, ceil_mode);
}

at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices, at::IntArrayRef input_size,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkernels.max_pool2d_backward";
  TORCH_CHECK(indices.scalar_type() == at::kLong, op, ": indices must be int64, got ", indices.scalar_type());
  return backward_from(op, "indices", grad_output, indices, input_size, kernel_size, stride, padding, dilation);
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_taps(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                        at::IntArrayRef stride, at::IntArrayRef padding,
                                                        at::IntArrayRef dilation, bool ceil_mode) {
  constexpr const char* op = "cnnkernels.max_pool2d_with_taps";
  check_pair(kernel_size, op, "kernel_size");
  TORCH_CHECK(kernel_size[0] * kernel_size[1] <= kMaxPoolMaxTaps, op, ": taps name at most ", kMaxPoolMaxTaps,
              " window elements, got kernel_size ", kernel_size, "; use max_pool2d_with_indices");
  return forward_with(at::kByte, input, kernel_size, stride, padding, dilation, ceil_mode);
}

at::Tensor max_pool2d_backward_taps(const at::Tensor& grad_output, const at::Tensor& taps, at::IntArrayRef input_size,
                                    at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                    at::IntArrayRef dilation) {
  constexpr const char* op = "cnnkernels.max_pool2d_backward_taps";
  TORCH_CHECK(taps.scalar_type() == at::kByte, op, ": taps must be uint8, got ", taps.scalar_type());
  return backward_from(op, "taps", grad_output, taps, input_size, kernel_size, stride, padding, dilation);
}

}  // namespace cnnkernels
