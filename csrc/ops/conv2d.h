// conv2d op implementations (registered in registration.cpp). Inputs are 4-D; the Python layer
// handles unbatched input, 'same' padding and padding modes.
#pragma once
#include "op_utils.h"

namespace cnnkernels {

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
at::Tensor conv2d_input_grad(const at::Tensor& grad_output, const at::Tensor& weight, at::IntArrayRef input_size,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                             int64_t groups, bool channels_last);
at::Tensor conv2d_weight_grad(const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
                              at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                              int64_t groups);
at::Tensor conv2d_bias_grad(const at::Tensor& grad_output);

}  // namespace cnnkernels
