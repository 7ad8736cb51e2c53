"""Smoke test of an installed cnnkernels wheel, run from outside the source tree: the package
imports from site-packages, its ops match PyTorch forward and backward, convert() works, and the
CUDA kernels are inside when the wheel was built with them (argument: expect-cuda | cpu-only)."""
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

cnnkernels.show_config()
print(f"wheel smoke test passed: cnnkernels {cnnkernels.__version__} from {where.parent}")
