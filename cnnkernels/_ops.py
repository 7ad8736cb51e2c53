"""Python-side registrations of the C++ ops (torch.ops.cnnkernels.*): fake kernels, so that
torch.compile and torch.export can trace them. Autograd is registered in C++
(csrc/ops/autograd.cpp: a Python one cost ~45 us per call), as is autocast
(csrc/ops/registration.cpp, where it can follow the current autocast dtype).

Each backward is its own op (conv2d_input_grad, conv2d_weight_grad, conv2d_bias_grad,
max_pool2d_backward, max_pool2d_backward_taps), called only for the gradients autograd needs.
Training through max_pool2d saves one-byte window taps (max_pool2d_with_taps) where they fit.
"""
import torch
from torch._prims_common import suggest_memory_format

from . import _C  # noqa: F401  (registers the ops)

ops = torch.ops.cnnkernels


def _channels_last(t):
    return t.dim() == 4 and suggest_memory_format(t) == torch.channels_last


def _format(channels_last):
    return torch.channels_last if channels_last else torch.contiguous_format


def conv_out_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_out_size(size, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's rule: in ceil_mode the last window must start inside the input or left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


# ---- fake kernels: shapes, dtypes and memory formats exactly as the C++ ops produce them ------

@torch.library.register_fake("cnnkernels::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(input.dim() == 4 and weight.dim() == 4, lambda: "cnnkernels.conv2d: expected 4-D input and weight")
    n, _, h, w = input.shape
    k, _, r, s = weight.shape
    p = conv_out_size(h, r, stride[0], padding[0], dilation[0])
    q = conv_out_size(w, s, stride[1], padding[1], dilation[1])
    cl = _channels_last(input) or _channels_last(weight)
    return torch.empty((n, k, p, q), dtype=input.dtype, device=input.device, memory_format=_format(cl))


@torch.library.register_fake("cnnkernels::conv2d_input_grad")
def _conv2d_input_grad_fake(grad_output, weight, input_size, stride, padding, dilation, groups, channels_last):
    return torch.empty(input_size, dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=_format(channels_last))


@torch.library.register_fake("cnnkernels::conv2d_weight_grad")
def _conv2d_weight_grad_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    return torch.empty(weight_size, dtype=input.dtype, device=input.device)


@torch.library.register_fake("cnnkernels::conv2d_bias_grad")
def _conv2d_bias_grad_fake(grad_output):
    return grad_output.new_empty((grad_output.shape[1],))


def _pool_fake_output(input, kernel_size, stride, padding, dilation, ceil_mode, dtype):
    n, c, h, w = input.shape
    p = pool_out_size(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    q = pool_out_size(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    return torch.empty((n, c, p, q), dtype=dtype, device=input.device,
                       memory_format=_format(_channels_last(input)))


@torch.library.register_fake("cnnkernels::max_pool2d")
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    return _pool_fake_output(input, kernel_size, stride, padding, dilation, ceil_mode, input.dtype)


@torch.library.register_fake("cnnkernels::max_pool2d_with_indices")
def _max_pool2d_with_indices_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    args = (input, kernel_size, stride, padding, dilation, ceil_mode)
    return _pool_fake_output(*args, input.dtype), _pool_fake_output(*args, torch.int64)


@torch.library.register_fake("cnnkernels::max_pool2d_with_taps")
def _max_pool2d_with_taps_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    args = (input, kernel_size, stride, padding, dilation, ceil_mode)
    return _pool_fake_output(*args, input.dtype), _pool_fake_output(*args, torch.uint8)


@torch.library.register_fake("cnnkernels::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_size, kernel_size, stride, padding, dilation):
    return torch.empty(input_size, dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=_format(_channels_last(indices)))


@torch.library.register_fake("cnnkernels::max_pool2d_backward_taps")
def _max_pool2d_backward_taps_fake(grad_output, taps, input_size, kernel_size, stride, padding, dilation):
    return _max_pool2d_backward_fake(grad_output, taps, input_size, kernel_size, stride, padding, dilation)
