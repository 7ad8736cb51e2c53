"""Drop-in replacements for torch.nn.Conv2d and torch.nn.MaxPool2d.

They subclass PyTorch's modules, so construction checks, attributes, parameter names,
initialisation and state_dict keys are PyTorch's own; only the computation is ours.
"""
import torch

from . import functional as CF

__all__ = ["Conv2d", "MaxPool2d"]


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d computed by cnnkernels.functional.conv2d (every padding_mode)."""

    def _conv_forward(self, input, weight, bias):
        if self.padding_mode != "zeros":
            # As PyTorch: pad explicitly in the requested mode, then convolve without padding.
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return CF.conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return CF.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d computed by cnnkernels.functional.max_pool2d."""

    def forward(self, input):
        return CF.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                             ceil_mode=self.ceil_mode, return_indices=self.return_indices)
