// max_pool2d op implementations (registered in registration.cpp). Inputs are 4-D; the Python
// layer handles unbatched input and the stride=None default.
#pragma once
#include <tuple>

#include "op_utils.h"

namespace cnnkernels {

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode);
std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                                           at::IntArrayRef dilation, bool ceil_mode);
// The window geometry lets a kernel find the windows covering an input element (gather form).
at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices, at::IntArrayRef input_size,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation);

// Training without returned indices: the winners as uint8 tap numbers, i * kernel_w + j
// within the window (pool_params.h), for kernels of at most 256 taps. One byte per output where
// indices take eight: the forward writes and the backward reads 7/8 less.
std::tuple<at::Tensor, at::Tensor> max_pool2d_with_taps(const at::Tensor& input, at::IntArrayRef kernel_size,
                                                        at::IntArrayRef stride, at::IntArrayRef padding,
                                                        at::IntArrayRef dilation, bool ceil_mode);
at::Tensor max_pool2d_backward_taps(const at::Tensor& grad_output, const at::Tensor& taps, at::IntArrayRef input_size,
                                    at::IntArrayRef kernel_size, at::IntArrayRef stride, at::IntArrayRef padding,
                                    at::IntArrayRef dilation);

}  // namespace cnnkernels
