"""cnnkernels.nn modules and convert(): PyTorch's constructor, attributes, state_dict and results."""
import copy

import pytest
import torch

import cnnkernels
from cnnkernels.nn import Conv2d, MaxPool2d


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, (2, 1), "same", "valid"])
def test_conv2d_module_matches_torch(padding_mode, padding):
    torch.manual_seed(0)
    kwargs = dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=1, padding=padding,
                  dilation=(1, 2), groups=2, bias=True, padding_mode=padding_mode)
    ref = torch.nn.Conv2d(**kwargs)
    ours = Conv2d(**kwargs)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 9, 8, requires_grad=True)
    y, y_ref = ours(x), ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, ours.weight, ours.bias), g)
    grads_ref = torch.autograd.grad(y_ref, (x, ref.weight, ref.bias), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_conv2d_module_state_dict_round_trip_and_attributes():
    ours = Conv2d(3, 8, 5, stride=2, padding=2, bias=False, dtype=torch.float64)
    ref = torch.nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=False, dtype=torch.float64)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    ref.load_state_dict(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                 "padding_mode", "bias"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    assert ours.weight.dtype == torch.float64 and repr(ours).endswith(repr(ref)[len("Conv2d"):])
    with pytest.raises(ValueError):
        Conv2d(3, 8, 3, groups=2)
    with pytest.raises(ValueError):
        Conv2d(3, 8, 3, padding_mode="mirror")
    with pytest.raises(ValueError):
        Conv2d(3, 8, 3, stride=2, padding="same")


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("return_indices", [False, True])
def test_max_pool2d_module_matches_torch(ceil_mode, return_indices):
    args = dict(kernel_size=3, stride=2, padding=1, dilation=1, return_indices=return_indices, ceil_mode=ceil_mode)
    ours, ref = MaxPool2d(**args), torch.nn.MaxPool2d(**args)
    assert repr(ours) == repr(ref)
    x = torch.randn(2, 3, 10, 11)
    a, b = ours(x), ref(x)
    if return_indices:
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    else:
        assert torch.equal(a, b)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular")
        self.bn = torch.nn.BatchNorm2d(8)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False),
        torch.nn.MaxPool2d(3, 2, 1),
        torch.nn.Sequential(Block(), Block()),
        torch.nn.ModuleDict({"inner": torch.nn.Sequential(torch.nn.Conv2d(8, 4, 1))})["inner"],
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )


def test_convert_nested_model():
    model = make_model()
    ref = copy.deepcopy(model)
    keys = list(model.state_dict())
    params = {n: p for n, p in model.named_parameters()}
    converted = cnnkernels.convert(model)
    kinds = [type(m) for m in converted.modules()]
    assert torch.nn.Conv2d not in kinds and torch.nn.MaxPool2d not in kinds
    assert kinds.count(Conv2d) == 4 and kinds.count(MaxPool2d) == 1
    assert list(converted.state_dict()) == keys
    assert all(p is params[n] for n, p in converted.named_parameters()), "parameters must be shared"
    assert cnnkernels.convert(converted) is converted and [type(m) for m in converted.modules()] == kinds
    x = torch.randn(2, 3, 32, 32)
    y, y_ref = converted(x), ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    y.sum().backward()
    y_ref.sum().backward()
    for (n, p), p_ref in zip(converted.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-4, msg=n)


def test_convert_a_bare_module_and_keep_training_flag():
    conv = torch.nn.Conv2d(2, 3, 3).eval()
    new = cnnkernels.convert(conv)
    assert type(new) is Conv2d and not new.training and new.weight is conv.weight
    pool = cnnkernels.convert(torch.nn.MaxPool2d(2, return_indices=True))
    assert type(pool) is MaxPool2d and pool.return_indices
