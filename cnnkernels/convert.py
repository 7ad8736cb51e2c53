"""cnnkernels.convert(model): swap PyTorch's Conv2d / MaxPool2d modules for ours."""
import copy as _copy

import torch

from .nn import Conv2d, MaxPool2d

_REPLACEMENTS = {torch.nn.Conv2d: Conv2d, torch.nn.MaxPool2d: MaxPool2d}


def _replacement(module):
    """A cnnkernels module sharing every parameter, buffer, hook and flag of `module`."""
    new = _REPLACEMENTS[type(module)].__new__(_REPLACEMENTS[type(module)])
    # nn.Module keeps all of its state in __dict__; copying the dicts (not their values) makes the
    # new module independent in structure while sharing the same Parameter objects. Device, dtype,
    # memory format and the training flag therefore stay what they were.
    new.__dict__ = {k: (v.copy() if isinstance(v, dict) else v) for k, v in module.__dict__.items()}
    return new


def _convert(module, memo):
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        if id(child) in memo:  # one module used in several places stays one module
            new = memo[id(child)]
        elif type(child) in _REPLACEMENTS:
            new = memo[id(child)] = _replacement(child)
        else:
            memo[id(child)] = new = child
            _convert(child, memo)
        if new is not child:
            module._modules[name] = new


def convert(model, *, copy=False):
    """Replace every torch.nn.Conv2d and torch.nn.MaxPool2d in `model` (nested too, any
    padding_mode) by the cnnkernels module of the same configuration.

    By default the model is changed in place and the new modules share the old ones' parameters,
    buffers and hooks (so an optimizer built before convert keeps working); device, dtype, memory
    format and train/eval mode are unchanged. With copy=True the model is deep-copied first and
    the original is left untouched (parameters are then copies).

    Only modules whose type is exactly torch.nn.Conv2d / MaxPool2d are replaced: a subclass may
    override forward, and cnnkernels' own modules are already converted (convert is idempotent).
    A module that appears in several places is replaced by one module. Returns the model (a new
    module when `model` itself is a Conv2d or MaxPool2d).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"convert(): model must be a torch.nn.Module, got {type(model).__name__}")
    if copy:
        model = _copy.deepcopy(model)
    if type(model) in _REPLACEMENTS:
        return _replacement(model)
    _convert(model, {id(model): model})
    return model
