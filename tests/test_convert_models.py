"""convert() on real models (torchvision): every Conv2d / MaxPool2d replaced, parameters shared or
copied as asked, device / dtype / memory format / training mode kept, and outputs and gradients
matching the unconverted model."""
import copy

import pytest
import torch

import cnnkernels
from cnnkernels.nn import Conv2d, MaxPool2d

torchvision = pytest.importorskip("torchvision")

# name -> (constructor, input size). squeezenet has ceil_mode max-pools, mobilenet_v2 depthwise
# convolutions, resnet18 the 7x7/2 stem and a padded 3x3/2 max-pool.
MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 64),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), 64),
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(num_classes=10), 67),
}


def counts(model):
    kinds = [type(m) for m in model.modules()]
    return {k: kinds.count(k) for k in (torch.nn.Conv2d, torch.nn.MaxPool2d, Conv2d, MaxPool2d)}


def rel_err(a, b, floor=1e-30):
    """max|a - b| / max(max|b|, floor): gradients of deep nets span many magnitudes, elementwise
    rtol does not fit."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(floor)).item()


def forward_backward(model, x):
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    y = model(x)
    y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape))
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return y.detach(), x.grad, grads


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dtype,memory_format,train,tol", [
    (torch.float64, torch.contiguous_format, True, 1e-10),
    (torch.float32, torch.channels_last, True, 2e-3),
    (torch.float32, torch.contiguous_format, False, 2e-4),
])
def test_converted_model_matches_original(name, dtype, memory_format, train, tol):
    make, hw = MODELS[name]
    torch.manual_seed(0)
    ref = make().to(dtype=dtype, memory_format=memory_format).train(train)
    model = copy.deepcopy(ref)
    before = counts(model)
    assert cnnkernels.convert(model) is model
    after = counts(model)
    assert after[torch.nn.Conv2d] == after[torch.nn.MaxPool2d] == 0
    assert after[Conv2d] == before[torch.nn.Conv2d] > 0 and after[MaxPool2d] == before[torch.nn.MaxPool2d]
    assert model.training == train and all(m.training == train for m in model.modules())
    for p in model.parameters():
        assert p.dtype == dtype
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=memory_format)

    x = torch.randn(2, 3, hw, hw, dtype=dtype).contiguous(memory_format=memory_format)
    torch.manual_seed(1)  # dropout (squeezenet, mobilenet_v2) draws the same masks on both sides
    y_ref, dx_ref, grads_ref = forward_backward(ref, x)
    torch.manual_seed(1)
    y, dx, grads = forward_backward(model, x)
    assert rel_err(y, y_ref) <= tol
    assert rel_err(dx, dx_ref) <= tol
    assert grads.keys() == grads_ref.keys()
    # A gradient that is zero up to rounding (a batch-norm bias feeding another batch norm) is
    # measured against 1e-3 of the largest gradient of the model, not against its own noise.
    floor = 1e-3 * max(g.abs().max().item() for g in grads_ref.values())
    for n in grads:
        assert rel_err(grads[n], grads_ref[n], floor) <= tol, n
    if train:  # batch-norm running statistics moved the same way (a mean that is zero up to rounding: as above)
        buffers = [(n, b, b_ref) for (n, b), b_ref in zip(model.named_buffers(), ref.buffers()) if b.is_floating_point()]
        floor = 1e-3 * max((b_ref.abs().max().item() for _, _, b_ref in buffers), default=0.0)
        for n, b, b_ref in buffers:
            assert rel_err(b, b_ref, floor) <= tol, n


def test_convert_shares_parameters_unless_asked_to_copy():
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=10)
    params = dict(original.named_parameters())
    optimizer = torch.optim.SGD(original.parameters(), lr=0.1)

    copied = cnnkernels.convert(original, copy=True)
    assert copied is not original and counts(original)[Conv2d] == 0, "copy=True leaves the original alone"
    assert all(p is not params[n] and torch.equal(p, params[n]) for n, p in copied.named_parameters())

    converted = cnnkernels.convert(original)
    assert converted is original and counts(original)[torch.nn.Conv2d] == 0
    assert all(p is params[n] for n, p in converted.named_parameters())
    # an optimizer built before convert() still trains the converted model
    w0 = converted.conv1.weight.detach().clone()
    converted(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert not torch.equal(converted.conv1.weight, w0)


def test_convert_keeps_one_module_used_twice_as_one_module():
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    model = torch.nn.Sequential(conv, torch.nn.ReLU(), conv)
    cnnkernels.convert(model)
    assert type(model[0]) is Conv2d and model[0] is model[2]


def test_convert_rejects_a_non_module():
    with pytest.raises(TypeError, match="model"):
        cnnkernels.convert(torch.randn(3))
