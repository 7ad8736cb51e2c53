"""Drop-in replacements for torch.nn.functional.conv2d and max_pool2d, running cnnkernels' own
kernels. Same signatures, defaults, output shapes, memory formats, gradients and errors as
PyTorch; see ../shared/CONTRACT.md in the project for the rules they follow.
"""
import numbers

import torch
import torch.nn.functional as F

from . import _C
from ._ops import ops

__all__ = ["conv2d", "max_pool2d"]


_is_compiling = torch.compiler.is_compiling
_has_torch_function = torch._C._has_torch_function


def _eager(tensors):
    """Whether _C's eager entry points see all that torch.ops would: they call the same op through
    the dispatcher (autograd, modes, vmap, profiling) minus torch.ops' Python layer, half the cost
    of a call with the caches cold (csrc/ops/bindings.cpp), but Dynamo cannot trace them and they
    skip __torch_function__ overrides (tensor subclasses, modes)."""
    return not _is_compiling() and not _has_torch_function(tensors)


def _pair(value, name, op, allow_empty=False):
    """An int or a sequence of one or two ints -> (h, w); PyTorch's errors otherwise."""
    # The common cases first: the checks below (abstract-class isinstance) cost microseconds.
    if type(value) is int:
        return (value, value)
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, tuple, list, torch.Size)):
        raise TypeError(f"{op}(): argument '{name}' must be an int or a tuple of two ints, "
                        f"not {type(value).__name__}")
    if isinstance(value, numbers.Integral):
        return (int(value), int(value))
    values = tuple(value)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, torch.SymInt)):
            raise TypeError(f"{op}(): argument '{name}' must hold ints, got {type(v).__name__}")
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2 or (allow_empty and len(values) == 0):
        return values
    raise RuntimeError(f"{op}: expected {name} to be a single integer value or a list of 2 values, "
                       f"but got {name}={list(values)}")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution, exactly torch.nn.functional.conv2d.

    input: Tensor[N, C_in, H, W] or unbatched Tensor[C_in, H, W]
    weight: Tensor[C_out, C_in / groups, kH, kW]; bias: Tensor[C_out] or None
    stride, dilation: int or (int, int); padding: int, (int, int), 'valid' or 'same'
    returns Tensor[N, C_out, H_out, W_out] (or unbatched), channels_last if input or weight is.
    """
    if input.dim() not in (3, 4):
        raise RuntimeError(f"cnnkernels.conv2d: expected 3-D (unbatched) or 4-D (batched) input, "
                           f"but got input of size {list(input.shape)}")
    stride = _pair(stride, "stride", "conv2d")
    dilation = _pair(dilation, "dilation", "conv2d")
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise RuntimeError("cnnkernels.conv2d: padding='same' is not supported for strided convolutions")
            if weight.dim() != 4:
                raise RuntimeError(f"cnnkernels.conv2d: expected 4-D weight, got size {list(weight.shape)}")
            # total = dilation * (k - 1); the odd extra goes bottom/right, as PyTorch pads it.
            totals = [dilation[d] * (weight.shape[2 + d] - 1) for d in range(2)]
            padding = (totals[0] // 2, totals[1] // 2)
            extra_h, extra_w = totals[0] % 2, totals[1] % 2
            if extra_h or extra_w:
                input = F.pad(input, (0, extra_w, 0, extra_h))
        else:
            raise RuntimeError(f"cnnkernels.conv2d: invalid padding string {padding!r}; expected 'valid' or 'same'")
    else:
        padding = _pair(padding, "padding", "conv2d")
    conv = _C.conv2d if _eager((input, weight, bias)) else ops.conv2d
    out = conv(input, weight, bias, stride, padding, dilation, groups)
    return out.squeeze(0) if unbatched else out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling, exactly torch.nn.functional.max_pool2d.

    input: Tensor[N, C, H, W] or unbatched Tensor[C, H, W]
    stride None (or empty) means stride = kernel_size; padding is implicit -inf.
    returns Tensor[N, C, H_out, W_out], plus int64 indices (flat h * W + w within each plane,
    usable by max_unpool2d) when return_indices.
    """
    kernel_size = _pair(kernel_size, "kernel_size", "max_pool2d")
    stride = kernel_size if stride is None else _pair(stride, "stride", "max_pool2d", allow_empty=True)
    if len(stride) == 0:
        stride = kernel_size
    padding = _pair(padding, "padding", "max_pool2d")
    dilation = _pair(dilation, "dilation", "max_pool2d")
    if input.dim() not in (3, 4):
        raise RuntimeError(f"cnnkernels.max_pool2d: expected 3-D (C, H, W) or 4-D (N, C, H, W) input, "
                           f"but got input of size {list(input.shape)}")
    unbatched = input.dim() == 3
    if unbatched:
        if input.shape[0] == 0:
            raise RuntimeError(f"cnnkernels.max_pool2d: expected non-empty 3-D input, got size {list(input.shape)}")
        input = input.unsqueeze(0)
    args = (input, kernel_size, stride, padding, dilation, ceil_mode)
    # Indices cost a write of 8 bytes per output: only computed when returned. For training,
    # ops.max_pool2d's autograd saves one-byte window taps instead (csrc/ops/autograd.cpp).
    lib = _C if _eager((input,)) else ops
    if return_indices:
        out, indices = lib.max_pool2d_with_indices(*args)
        if unbatched:
            out, indices = out.squeeze(0), indices.squeeze(0)
        return out, indices
    out = lib.max_pool2d(*args)
    return out.squeeze(0) if unbatched else out
