// conv2d ops: argument checks that name the argument, output allocation in PyTorch's memory
// format, then the kernel struct to the CPU dispatcher or the CUDA backend.
#include "conv2d.h"

#include "cuda_backend.h"
#include "../cpu/kernels.h"

namespace cnnkernels {
namespace {

constexpr const char* kOp = "cnnkernels.conv2d";

void check_geometry(at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                    int64_t groups) {
  check_pair(stride, kOp, "stride");
  check_pair(padding, kOp, "padding");
  check_pair(dilation, kOp, "dilation");
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, kOp, ": stride must be positive, got ", stride);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, kOp, ": padding must be non-negative, got ", padding);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, kOp, ": dilation must be positive, got ", dilation);
  TORCH_CHECK(groups > 0, kOp, ": groups must be positive, got ", groups);
}

// Checks the shapes of an (input, weight) pair and returns the problem they describe.
Conv2dProblem make_problem(at::IntArrayRef in, at::IntArrayRef wt, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_geometry(stride, padding, dilation, groups);
  TORCH_CHECK(in.size() == 4, kOp, ": expected input of 4 dimensions (N, C, H, W), got ", in.size(),
              "-D input of size ", in);
  TORCH_CHECK(wt.size() == 4, kOp, ": expected weight of 4 dimensions (C_out, C_in / groups, kH, kW), got ",
              wt.size(), "-D weight of size ", wt);
  // PyTorch returns a malformed (N, 0, P, Q) output for zero input channels; we reject it.
  TORCH_CHECK(in[1] > 0, kOp, ": input must have at least one channel, got input of size ", in);
  TORCH_CHECK(wt[0] > 0 && wt[2] > 0 && wt[3] > 0, kOp,
              ": weight must have positive out_channels, height and width, got weight of size ", wt);
  TORCH_CHECK(wt[0] % groups == 0, kOp, ": out_channels (weight.size(0) = ", wt[0],
              ") must be divisible by groups = ", groups);
  TORCH_CHECK(in[1] == wt[1] * groups, kOp, ": input has ", in[1], " channels, but weight of size ", wt,
              " with groups = ", groups, " expects ", wt[1] * groups, " (weight.size(1) * groups)");
  Conv2dProblem p{};
  p.N = in[0]; p.C = in[1]; p.H = in[2]; p.W = in[3];
  p.K = wt[0]; p.R = wt[2]; p.S = wt[3];
  p.groups = groups;
  p.stride_h = stride[0]; p.stride_w = stride[1];
  p.pad_h = padding[0]; p.pad_w = padding[1];
  p.dil_h = dilation[0]; p.dil_w = dilation[1];
  const int64_t eff_h = p.dil_h * (p.R - 1) + 1, eff_w = p.dil_w * (p.S - 1) + 1;
  TORCH_CHECK(p.H + 2 * p.pad_h >= eff_h && p.W + 2 * p.pad_w >= eff_w, kOp, ": padded input size (",
              p.H + 2 * p.pad_h, " x ", p.W + 2 * p.pad_w, ") is smaller than the dilated kernel size (",
              eff_h, " x ", eff_w, ")");
  p.P = conv_out_size(p.H, p.R, p.stride_h, p.pad_h, p.dil_h);
  p.Q = conv_out_size(p.W, p.S, p.stride_w, p.pad_w, p.dil_w);
  return p;
}

void check_same_device_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), kOp, ": ", a_name, " is on ", a.device(), " but ", b_name, " is on ",
              b.device(), "; they must be on the same device");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), kOp, ": ", a_name, " has dtype ", a.scalar_type(), " but ",
              b_name, " has dtype ", b.scalar_type(), "; they must be the same");
}

}  // namespace

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  check_same_device_dtype(input, "input", weight, "weight");
  Conv2dProblem p = make_problem(input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  p.dtype = kernel_dtype(input, kOp, "input");
  at::Tensor b;
  if (bias.has_value() && bias->defined()) {
    check_same_device_dtype(input, "input", *bias, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.K, kOp, ": expected bias of size [", p.K,
                "] (out_channels), got ", bias->sizes());
    b = bias->contiguous();
  }
  // PyTorch: channels_last output when the input or the weight is channels_last.
  const bool cl = is_channels_last(input) || is_channels_last(weight);
  at::Tensor y = new_output({p.N, p.K, p.P, p.Q}, input.options().memory_format(memory_format(cl)));
  if (y.numel() == 0) return y;
  Conv2dFpropArgs args{p, const_view(input), const_view(weight), b.defined() ? b.data_ptr() : nullptr,
                       mut_view(y)};
  if (input.is_cuda()) {
#ifdef CNNKERNELS_WITH_CUDA
    cuda_backend::conv2d_fprop(args, input);
#else
    fail_no_cuda(kOp);
#endif
  } else {
    cpu_conv2d_fprop(args);
  }
  return y;
}

at::Tensor conv2d_input_grad(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                             int64_t groups, bool channels_last) {
  check_same_device_dtype(grad_output, "grad_output", weight, "weight");
  Conv2dProblem p = make_problem(input_size, weight.sizes(), stride, padding, dilation, groups);
  p.dtype = kernel_dtype(grad_output, kOp, "grad_output");
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.sizes() == at::IntArrayRef({p.N, p.K, p.P, p.Q}), kOp,
              ": expected grad_output of size ", shape_str({p.N, p.K, p.P, p.Q}), ", got ", grad_output.sizes());
  at::Tensor dx = new_output(input_size, grad_output.options().memory_format(memory_format(channels_last)));
  if (dx.numel() == 0) return dx;
  Conv2dDgradArgs args{p, const_view(grad_output), const_view(weight), mut_view(dx)};
  if (grad_output.is_cuda()) {
#ifdef CNNKERNELS_WITH_CUDA
    cuda_backend::conv2d_dgrad(args, grad_output);
#else
    fail_no_cuda(kOp);
#endif
  } else {
    cpu_conv2d_dgrad(args);
  }
  return dx;
}

at::Tensor conv2d_weight_grad(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                              at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                              int64_t groups) {
  check_same_device_dtype(grad_output, "grad_output", input, "input");
  Conv2dProblem p = make_problem(input.sizes(), weight_size, stride, padding, dilation, groups);
  p.dtype = kernel_dtype(input, kOp, "input");
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.sizes() == at::IntArrayRef({p.N, p.K, p.P, p.Q}), kOp,
              ": expected grad_output of size ", shape_str({p.N, p.K, p.P, p.Q}), ", got ", grad_output.sizes());
  at::Tensor dw = new_output(weight_size, input.options());
  // An empty batch sums nothing: zeros, here rather than in each engine (the CPU engines' running
  // totals start from their first chunk of rows, and an empty batch has none). Otherwise every
  // element is written by the kernels.
  if (p.N == 0) return dw.zero_();
  Conv2dWgradArgs args{p, const_view(grad_output), const_view(input), mut_view(dw)};
  if (input.is_cuda()) {
#ifdef CNNKERNELS_WITH_CUDA
    cuda_backend::conv2d_wgrad(args, input);
#else
    fail_no_cuda(kOp);
#endif
  } else {
    cpu_conv2d_wgrad(args);
  }
  return dw;
}

at::Tensor conv2d_bias_grad(const at::Tensor& grad_output) {
  TORCH_CHECK(grad_output.dim() == 4, kOp, ": expected 4-D grad_output, got ", grad_output.dim(), "-D");
  Conv2dProblem p{};
  p.N = grad_output.size(0); p.K = grad_output.size(1); p.P = grad_output.size(2); p.Q = grad_output.size(3);
  p.dtype = kernel_dtype(grad_output, kOp, "grad_output");
  at::Tensor db = new_output({p.K}, grad_output.options());
  if (p.N == 0) return db.zero_();  // as conv2d_weight_grad
  Conv2dBgradArgs args{p, const_view(grad_output), db.data_ptr()};
  if (grad_output.is_cuda()) {
#ifdef CNNKERNELS_WITH_CUDA
    cuda_backend::conv2d_bgrad(args, grad_output);
#else
    fail_no_cuda(kOp);
#endif
  } else {
    cpu_conv2d_bgrad(args);
  }
  return db;
}

}  // namespace cnnkernels
