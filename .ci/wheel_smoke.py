"""Smoke test of an installed cnnkernels wheel, run from outside the source tree: the package
imports from site-packages, its ops match PyTorch forward and backward, convert() works on a small
model and on torchvision's resnet18, which then trains, and the CUDA kernels are inside when the
wheel was built with them (argument: expect-cuda | cpu-only)."""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import cnnkernels
from cnnkernels import functional as CF

expect = sys.argv[1] if len(sys.argv) > 1 else "any"
where = Path(cnnkernels.__file__).resolve()
assert "site-packages" in where.parts, f"cnnkernels imported from {where}, not from the installed wheel"
if expect == "expect-cuda":
    assert cnnkernels._C.cuda_built(), "the wheel was built with CNNKERNELS_CUDA=ON but holds no CUDA kernels"
elif expect == "cpu-only":
    assert not cnnkernels._C.cuda_built()

torch.manual_seed(0)
x = torch.randn(2, 8, 17, 19, requires_grad=True)
w = torch.randn(16, 4, 3, 3, requires_grad=True)
b = torch.randn(16, requires_grad=True)
for layout in (torch.contiguous_format, torch.channels_last):
    xl = x.detach().contiguous(memory_format=layout).requires_grad_(True)
    ours = CF.max_pool2d(CF.conv2d(xl, w, b, stride=2, padding=1, groups=2), 3, 2, 1, ceil_mode=True)
    ref = F.max_pool2d(F.conv2d(xl, w, b, stride=2, padding=1, groups=2), 3, 2, 1, ceil_mode=True)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(ours, (xl, w, b), g), torch.autograd.grad(ref, (xl, w, b), g)):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)

model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(2))
converted = cnnkernels.convert(model, copy=True)
assert type(converted[0]) is cnnkernels.nn.Conv2d and type(converted[1]) is cnnkernels.nn.MaxPool2d
inp = torch.randn(1, 3, 10, 10)
torch.testing.assert_close(converted(inp), model(inp), rtol=1e-5, atol=1e-5)

# A new user's path: convert a torchvision model and train it (beside the original, same weights).
import torchvision  # noqa: E402

torch.manual_seed(0)
original = torchvision.models.resnet18(num_classes=10)
net = cnnkernels.convert(original, copy=True)
data, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
losses = {}
for name, m in (("ours", net), ("torch", original)):
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    losses[name] = []
    for _ in range(3):
        loss = F.cross_entropy(m(data), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses[name].append(loss.item())
assert abs(losses["ours"][0] - losses["torch"][0]) < 1e-4 * losses["torch"][0], losses
assert losses["ours"][-1] < losses["ours"][0], losses

cnnkernels.show_config()
print(f"wheel smoke test passed: cnnkernels {cnnkernels.__version__} from {where.parent}")
