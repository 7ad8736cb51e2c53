"""Every CUDA op once, on small inputs, for compute-sanitizer (memcheck / racecheck / initcheck):
conv2d fprop / dgrad / wgrad / bgrad and max_pool2d forward / backward, each dtype, NCHW and
channels_last, a strided / dilated / grouped case, a depthwise one and the tensor-core pipeline's
large tiles. Exits non-zero when a result disagrees with PyTorch, so a kernel that reads garbage is
caught twice."""
import sys

import torch
import torch.nn.functional as F

import cnnkernels
import cnnkernels.functional as CF

CONV = [  # (n, c, k, h, w, r, stride, padding, dilation, groups)
    (2, 8, 16, 9, 10, 3, 1, 1, 1, 1),
    (1, 6, 9, 11, 12, 3, 2, 1, 2, 3),
    (2, 16, 16, 8, 8, 3, 2, 1, 1, 16),
    (2, 32, 32, 40, 40, 3, 1, 1, 1, 32),  # depthwise weight gradient over 3 pixel slices
    (2, 64, 80, 12, 12, 3, 1, 1, 1, 1),  # implicit GEMM: 5 x 2 tiles, the weight gradient in 2 slices
]
POOL = [(2, 5, 9, 11, 3, 2, 1, True), (1, 4, 8, 8, 2, 2, 0, False), (2, 16, 9, 8, 3, 2, 1, False)]  # (n, c, h, w, k, stride, pad, ceil)
TOL = {torch.float32: 1e-3, torch.float64: 1e-9, torch.float16: 2e-2, torch.bfloat16: 8e-2}
TOL_TF32 = 1e-2  # two TF32 results (10-bit mantissa operands), relative to the largest element


def close(a, b, dtype, what, tol=None):
    err = ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-6)).item()
    if not err <= (TOL[dtype] if tol is None else tol):
        print(f"MISMATCH {what}: relative error {err:.3g}", file=sys.stderr)
        return False
    return True


def conv_case(dtype, mf, case, what=""):
    n, c, k, h, w, r, stride, padding, dilation, groups = case
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype).contiguous(memory_format=mf)
    wt = torch.randn(k, c // groups, r, r, device="cuda", dtype=dtype).contiguous(memory_format=mf)
    b = torch.randn(k, device="cuda", dtype=dtype)
    args = (stride, padding, dilation, groups)
    res = []
    for fn in (CF.conv2d, F.conv2d):
        xs, ws, bs = (t.detach().clone().requires_grad_() for t in (x, wt, b))
        y = fn(xs, ws, bs, *args)
        y.backward(torch.ones_like(y))
        res.append((y, xs.grad, ws.grad, bs.grad))
    ok = True
    for name, a, ref in zip(("y", "dx", "dw", "db"), *res):
        ok &= close(a, ref, dtype, f"conv2d {name} {dtype} {mf} {case} {what}")
    return ok


def main():
    torch.backends.cudnn.allow_tf32 = False
    ok = True
    for dtype in TOL:
        for mf in (torch.contiguous_format, torch.channels_last):
            for case in CONV:
                ok &= conv_case(dtype, mf, case)
            for n, c, h, w, kernel, stride, padding, ceil in POOL:
                x = torch.randn(n, c, h, w, device="cuda", dtype=dtype).contiguous(memory_format=mf)
                res = []
                for fn in (CF.max_pool2d, F.max_pool2d):
                    xs = x.detach().clone().requires_grad_()
                    y = fn(xs, kernel, stride, padding, ceil_mode=ceil)
                    y.backward(torch.ones_like(y))
                    res.append((y, xs.grad))
                for name, a, ref in zip(("y", "dx"), *res):
                    ok &= close(a, ref, dtype, f"max_pool2d {name} {dtype} {mf}")
    # The bf16 / f16 channels_last pipeline with its large tiles forced (the cases above take the small).
    cnnkernels._C.set_cuda_gemm_tiles("large")
    for case in (CONV[0], CONV[-1], (2, 16, 24, 9, 10, 3, 2, 1, 1, 1)):
        ok &= conv_case(torch.bfloat16, torch.channels_last, case, "large tiles")
    cnnkernels._C.set_cuda_gemm_tiles("auto")
    # float32 as TF32 on the tensor cores (the GEMM's other kernel), against cuDNN's TF32.
    # channels_last weights: the pipeline, small and large tiles; KCRS weights: the simple kernel.
    torch.backends.cudnn.allow_tf32 = True
    n, c, k, h, w, r, stride, padding, dilation, groups = CONV[-1]
    x = torch.randn(n, c, h, w, device="cuda").contiguous(memory_format=torch.channels_last)
    for tiles, wmf in (("auto", torch.channels_last), ("large", torch.channels_last), ("auto", torch.contiguous_format)):
        cnnkernels._C.set_cuda_gemm_tiles(tiles)
        wt = torch.randn(k, c // groups, r, r, device="cuda").contiguous(memory_format=wmf)
        res = []
        for fn in (CF.conv2d, F.conv2d):
            xs, ws = x.detach().clone().requires_grad_(), wt.detach().clone().requires_grad_()
            y = fn(xs, ws, None, stride, padding, dilation, groups)
            y.backward(torch.ones_like(y))
            res.append((y, xs.grad, ws.grad))
        for name, a, ref in zip(("y", "dx", "dw"), *res):
            ok &= close(a, ref, torch.float32, f"conv2d tf32 {name} tiles {tiles} weights {wmf}", TOL_TF32)
    cnnkernels._C.set_cuda_gemm_tiles("auto")
    torch.cuda.synchronize()
    print("sanitizer cases:", "all match PyTorch" if ok else "MISMATCHES (above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
