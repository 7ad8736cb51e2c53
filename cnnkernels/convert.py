"""cnnkernels.convert(model): swap PyTorch's Conv2d / MaxPool2d modules for ours."""
import torch

from .nn import Conv2d, MaxPool2d

_REPLACEMENTS = {torch.nn.Conv2d: Conv2d, torch.nn.MaxPool2d: MaxPool2d}


def _replacement(module):
    """A cnnkernels module sharing every parameter, buffer, hook and flag of `module`."""
    new = _REPLACEMENTS[type(module)].__new__(_REPLACEMENTS[type(module)])
    # nn.Module keeps all of its state in __dict__; copying the dicts (not their values) makes the
    # new module independent in structure while sharing the same Parameter objects.
    new.__dict__ = {k: (v.copy() if isinstance(v, dict) else v) for k, v in module.__dict__.items()}
    return new


def convert(model):
    """Replace every torch.nn.Conv2d and torch.nn.MaxPool2d in `model` (nested too) by the
    cnnkernels module of the same configuration, in place, sharing parameters.

    Only modules whose type is exactly torch.nn.Conv2d / MaxPool2d are replaced: a subclass may
    override forward, and cnnkernels' own modules are already converted (convert is idempotent).
    Returns the model (a new module when `model` itself is a Conv2d or MaxPool2d).
    """
    if type(model) in _REPLACEMENTS:
        return _replacement(model)
    for name, child in list(model.named_children()):
        if type(child) in _REPLACEMENTS:
            setattr(model, name, _replacement(child))
        else:
            convert(child)
    return model
