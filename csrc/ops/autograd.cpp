// Autograd for conv2d, max_pool2d and max_pool2d_with_indices, registered in C++ at the Autograd key.
//
// Why C++: a Python autograd registration (torch.library.register_autograd) runs a Python
// function on every call that reaches the Autograd key, with or without grad. On the Zen 3 VM it
// cost ~45 us per forward and ~40 us per backward on top of the kernels (a tiny max_pool2d
// forward + backward took 235 us against PyTorch's 75 us); here it is a few microseconds.
//
// The forward and every backward still go through the dispatcher as their own ops
// (cnnkernels::conv2d_input_grad, ...), so torch.compile and torch.export trace them, and a
// backward runs only the gradients autograd asks for.
#include <torch/autograd.h>
#include <torch/library.h>

#include "conv2d.h"
#include "max_pool2d.h"

namespace cnnkernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// True when autograd has nothing to record for these inputs: no gradient is wanted (grad mode off
// or no input requires one) and none carries a forward-mode tangent (Function::apply raises for
// those: the C++ API has no jvp). Then the forward goes straight to the kernel op, without
// Function::apply's node and context (5-10 us a call with the caches cold, as a call right after a
// layer that streamed megabytes is: a small layer's kernel takes 10-30).
bool nothing_to_record(std::initializer_list<at::Tensor> inputs) {
  const bool grad_mode = at::GradMode::is_enabled();
  for (const at::Tensor& t : inputs)
    if (t.defined() && ((grad_mode && t.requires_grad()) || t._fw_grad(/*level=*/0).defined())) return false;
  return true;
}

// ---- conv2d -----------------------------------------------------------------------------------

class Conv2dFunction : public torch::autograd::Function<Conv2dFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation, int64_t groups) {
    static const auto op = find_op<decltype(conv2d)>("cnnkernels::conv2d");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor out = op.call(input, weight, bias, stride, padding, dilation, groups);
    ctx->save_for_backward({input, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["input_channels_last"] = is_channels_last(input);  // PyTorch's grad_input follows it
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    using InputGrad = at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef, at::IntArrayRef,
                                 at::IntArrayRef, at::IntArrayRef, int64_t, bool);
    using WeightGrad = at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef, at::IntArrayRef,
                                  at::IntArrayRef, at::IntArrayRef, int64_t);
    static const auto input_grad_op = find_op<InputGrad>("cnnkernels::conv2d_input_grad");
    static const auto weight_grad_op = find_op<WeightGrad>("cnnkernels::conv2d_weight_grad");
    static const auto bias_grad_op = find_op<decltype(conv2d_bias_grad)>("cnnkernels::conv2d_bias_grad");
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1], &grad_output = grad_outputs[0];
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
    const int64_t groups = ctx->saved_data["groups"].toInt();
    at::Tensor grad_input, grad_weight, grad_bias;
    // Edges are the defined tensor inputs: input, weight, then bias when there is one.
    if (ctx->needs_input_grad(0))
      grad_input = input_grad_op.call(grad_output, weight, input.sym_sizes(), stride, padding, dilation, groups,
                                      ctx->saved_data["input_channels_last"].toBool());
    if (ctx->needs_input_grad(1))
      grad_weight = weight_grad_op.call(grad_output, input, weight.sym_sizes(), stride, padding, dilation, groups);
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) grad_bias = bias_grad_op.call(grad_output);
    return {grad_input, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor conv2d_autograd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const bool has_bias = bias.has_value() && bias->defined();
  if (nothing_to_record({input, weight, has_bias ? *bias : at::Tensor()})) {
    static const auto op = find_op<decltype(conv2d)>("cnnkernels::conv2d");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(input, weight, bias, stride, padding, dilation, groups);
  }
  return Conv2dFunction::apply(input, weight, bias, stride, padding, dilation, groups);
}

// ---- max_pool2d, max_pool2d_with_indices --------------------------------------------------------

// Both save the winners (indices or taps) and the window geometry; the backward is the gradient op
// for that kind of winners.
void save_pool_geometry(AutogradContext* ctx, const at::Tensor& input, at::IntArrayRef kernel_size,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  ctx->saved_data["input_size"] = input.sym_sizes();
  ctx->saved_data["kernel_size"] = kernel_size;
  ctx->saved_data["stride"] = stride;
  ctx->saved_data["padding"] = padding;
  ctx->saved_data["dilation"] = dilation;
}

using PoolBackward = at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef, at::IntArrayRef,
                                at::IntArrayRef, at::IntArrayRef, at::IntArrayRef);

at::Tensor pool_backward(AutogradContext* ctx, const c10::TypedOperatorHandle<PoolBackward>& op,
                         const at::Tensor& grad_output) {
  const std::vector<c10::SymInt> input_size = ctx->saved_data["input_size"].toSymIntVector();
  return op.call(grad_output, ctx->get_saved_variables()[0], input_size, ctx->saved_data["kernel_size"].toIntVector(),
                 ctx->saved_data["stride"].toIntVector(), ctx->saved_data["padding"].toIntVector(),
                 ctx->saved_data["dilation"].toIntVector());
}

class MaxPool2dFunction : public torch::autograd::Function<MaxPool2dFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                               bool ceil_mode) {
    static const auto op = find_op<decltype(max_pool2d_with_indices)>("cnnkernels::max_pool2d_with_indices");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, indices] = op.call(input, kernel_size, stride, padding, dilation, ceil_mode);
    ctx->save_for_backward({indices});
    // Like aten's, the indices have no gradient. With materialising off, an unused output's
    // gradient arrives undefined instead of as a zero tensor the size of the output.
    ctx->mark_non_differentiable({indices});
    ctx->set_materialize_grads(false);
    save_pool_geometry(ctx, input, kernel_size, stride, padding, dilation);
    return {out, indices};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto op = find_op<PoolBackward>("cnnkernels::max_pool2d_backward");
    at::Tensor grad_input;
    if (grad_outputs[0].defined()) grad_input = pool_backward(ctx, op, grad_outputs[0]);
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices_autograd(const at::Tensor& input,
                                                                    at::IntArrayRef kernel_size,
                                                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                                                    at::IntArrayRef dilation, bool ceil_mode) {
  if (nothing_to_record({input})) {
    static const auto op = find_op<decltype(max_pool2d_with_indices)>("cnnkernels::max_pool2d_with_indices");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(input, kernel_size, stride, padding, dilation, ceil_mode);
  }
  variable_list out = MaxPool2dFunction::apply(input, kernel_size, stride, padding, dilation, ceil_mode);
  return {out[0], out[1]};
}

// Training through max_pool2d saves the winners the backward needs: uint8 tap numbers where they
// fit (a kernel of at most 256 taps), else int64 indices. Without grad it is the plain forward,
// which records no winners at all.
class MaxPool2dTapsFunction : public torch::autograd::Function<MaxPool2dTapsFunction> {
 public:
  static bool uses_taps(at::IntArrayRef kernel_size) {
    return kernel_size.size() == 2 && kernel_size[0] > 0 && kernel_size[1] > 0 &&
           kernel_size[0] * kernel_size[1] <= kMaxPoolMaxTaps;
  }

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, at::IntArrayRef kernel_size,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
    using WithWinners = decltype(max_pool2d_with_indices);
    static const auto with_taps = find_op<WithWinners>("cnnkernels::max_pool2d_with_taps");
    static const auto with_indices = find_op<WithWinners>("cnnkernels::max_pool2d_with_indices");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const bool taps = uses_taps(kernel_size);
    auto [out, winners] = (taps ? with_taps : with_indices).call(input, kernel_size, stride, padding, dilation, ceil_mode);
    ctx->save_for_backward({winners});
    ctx->saved_data["taps"] = taps;
    save_pool_geometry(ctx, input, kernel_size, stride, padding, dilation);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto from_taps = find_op<PoolBackward>("cnnkernels::max_pool2d_backward_taps");
    static const auto from_indices = find_op<PoolBackward>("cnnkernels::max_pool2d_backward");
    const at::Tensor grad_input =
        pool_backward(ctx, ctx->saved_data["taps"].toBool() ? from_taps : from_indices, grad_outputs[0]);
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor max_pool2d_autograd(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  if (nothing_to_record({input})) {  // no winners either
    static const auto op = find_op<decltype(max_pool2d)>("cnnkernels::max_pool2d");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return op.call(input, kernel_size, stride, padding, dilation, ceil_mode);
  }
  return MaxPool2dTapsFunction::apply(input, kernel_size, stride, padding, dilation, ceil_mode);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnkernels, Autograd, m) {
  m.impl("conv2d", &conv2d_autograd);
  m.impl("max_pool2d", &max_pool2d_autograd);
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices_autograd);
}

}  // namespace cnnkernels
