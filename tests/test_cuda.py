"""CUDA kernels against PyTorch (cuDNN) on the GPU: every op, dtype and layout, gradcheck, opcheck,
NaN/tie rules, streams, and a max-pool over more than 2^31 elements. Skipped without a GPU."""
import copy

import pytest
import torch
import torch.nn.functional as F

import cnnkernels
import cnnkernels.functional as CF
from conftest import assert_calibrated, make_tensor, round_to_tf32

pytestmark = pytest.mark.cuda

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "channels_last", "strided"]
CONV_CASES = [  # (n, c, k, h, w, r, s, stride, padding, dilation, groups)
    (2, 8, 16, 14, 13, 3, 3, 1, 1, 1, 1),
    (3, 6, 9, 11, 12, 3, 2, (2, 1), (1, 0), (1, 2), 3),
    (2, 16, 16, 10, 10, 3, 3, 2, 1, 1, 16),  # depthwise
    (2, 24, 24, 12, 11, 3, 3, 1, 2, 2, 24),  # depthwise, dilated
    (1, 6, 6, 9, 9, 5, 5, 1, 2, 1, 6),  # depthwise 5x5, channels in no whole 16-byte vector
    (2, 32, 32, 40, 40, 3, 3, 1, 1, 1, 32),  # depthwise: its weight gradient sums 3 pixel slices
    (1, 3, 8, 23, 21, 7, 7, 2, 3, 1, 1),  # stem-like
    (2, 32, 8, 7, 7, 1, 1, 1, 0, 1, 1),  # pointwise
]


@pytest.fixture(autouse=True)
def exact_float32():
    """float32 compared exactly on both sides: TF32 (torch's default for cuDNN) off, as our GEMM
    follows the same flag; test_conv2d_tf32_cuda covers TF32."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def conv_all(fn, x, w, b, args, g):
    # Leaf views of the caller's tensors: a strided (sliced) x stays strided (a clone made it dense)
    x, w, b = x.detach().requires_grad_(), w.detach().requires_grad_(), b.detach().requires_grad_()
    y = fn(x, w, b, *args)
    y.backward(g)
    return y.detach(), x.grad, w.grad, b.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_cuda_matches_torch(dtype, layout, case):
    check_conv2d_cuda(dtype, layout, case)


# Whole 16-byte chunks of C/G and K/G: bf16 / f16 channels_last runs these on the cp.async pipeline.
PIPELINE_CASES = [
    (2, 64, 80, 12, 12, 3, 3, 1, 1, 1, 1),
    (2, 16, 24, 9, 10, 3, 3, 2, 1, 1, 1),  # stride 2: dgrad zeroes the taps no output reaches
    (2, 32, 64, 7, 6, 3, 1, 1, (1, 0), (2, 1), 2),  # grouped, dilated
    (1, 16, 16, 7, 7, 1, 1, 2, 0, 1, 1),  # 1x1 stride 2
    (8, 256, 128, 14, 14, 1, 1, 1, 0, 1, 1),  # 1x1, several 128 x 128 tiles
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("tiles", ["small", "large"])
@pytest.mark.parametrize("case", PIPELINE_CASES)
def test_conv2d_pipeline_tiles_cuda(dtype, tiles, case):
    """Both block tiles of the tensor-core pipeline (64 x 64 x 32 and 128 x 128 x 16), forced."""
    cnnkernels._C.set_cuda_gemm_tiles(tiles)
    try:
        check_conv2d_cuda(dtype, "channels_last", case)
    finally:
        cnnkernels._C.set_cuda_gemm_tiles("auto")


def check_conv2d_cuda(dtype, layout, case):
    n, c, k, h, w, r, s, stride, padding, dilation, groups = case
    gen = torch.Generator().manual_seed(0)  # make_tensor draws on the CPU
    x = make_tensor((n, c, h, w), dtype, layout, gen, "cuda")
    wt = make_tensor((k, c // groups, r, s), dtype, layout, gen, "cuda")
    b = make_tensor((k,), dtype, "contiguous", gen, "cuda")
    args = (stride, padding, dilation, groups)
    y_shape = F.conv2d(x.float(), wt.float(), None, *args).shape
    g = make_tensor(tuple(y_shape), dtype, layout, gen, "cuda")
    ours = conv_all(CF.conv2d, x, wt, b, args, g)
    theirs = conv_all(F.conv2d, x, wt, b, args, g)
    ref = conv_all(F.conv2d, x.double(), wt.double(), b.double(), args, g.double())
    n_pixels = y_shape[0] * y_shape[2] * y_shape[3]
    terms = (c // groups * r * s, k // groups * r * s, n_pixels, n_pixels)
    for name, o, t, r64, n_terms in zip(("output", "grad_input", "grad_weight", "grad_bias"), ours, theirs, ref, terms):
        assert_calibrated(o, t, r64, f"{name} {case} {dtype} {layout}", n_terms)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("args", [(3, 2, 1, 1, False), ((2, 3), (1, 2), (1, 1), (2, 1), True), (2, 2, 0, 1, False)])
@pytest.mark.parametrize("channels", [5, 16])  # 16: whole 16-byte vectors of channels_last channels
def test_max_pool2d_cuda_matches_torch(dtype, layout, args, channels):
    gen = torch.Generator().manual_seed(1)
    x = make_tensor((2, channels, 17, 16), dtype, layout, gen, "cuda")
    with torch.no_grad():
        x[..., ::5, ::3] = float("nan")
        x[..., 1::4, ::2] = float("-inf")
        x[:, :2] = x[:, :2].round()  # ties
    y, i = CF.max_pool2d(x, *args, return_indices=True)
    y_ref, i_ref = F.max_pool2d(x, *args, return_indices=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(i, i_ref)
    torch.testing.assert_close(CF.max_pool2d(x, *args), y_ref, rtol=0, atol=0, equal_nan=True)
    xa = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    g = make_tensor(tuple(y.shape), dtype, layout, gen, "cuda")
    (gx,) = torch.autograd.grad(CF.max_pool2d(xa, *args), xa, g)
    (gx_ref,) = torch.autograd.grad(F.max_pool2d(xa, *args), xa, g)
    tol = 0 if dtype in (torch.float32, torch.float64) else 1e-2
    torch.testing.assert_close(gx, gx_ref, rtol=tol, atol=tol)
    # The training path's one-byte taps name the very indices, and route gradients identically.
    a = (list(F._pair(args[0])), list(F._pair(args[1])), list(F._pair(args[2])), list(F._pair(args[3])), args[4])
    y_t, taps = torch.ops.cnnkernels.max_pool2d_with_taps(x, *a)
    assert taps.dtype == torch.uint8 and taps.stride() == i.stride()
    torch.testing.assert_close(y_t, y, rtol=0, atol=0, equal_nan=True)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a[:4]
    p = torch.arange(taps.shape[2], device="cuda").view(1, 1, -1, 1)
    q = torch.arange(taps.shape[3], device="cuda").view(1, 1, 1, -1)
    t = taps.long()
    assert torch.equal((p * sh - ph + t // kw * dh) * x.shape[3] + (q * sw - pw + t % kw * dw), i)
    dx_t = torch.ops.cnnkernels.max_pool2d_backward_taps(g, taps, list(x.shape), *a[:4])
    assert torch.equal(dx_t, torch.ops.cnnkernels.max_pool2d_backward(g, i, list(x.shape), *a[:4]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_fast_kernels_against_the_reference_kernels(dtype, layout):
    """The dense max-pool kernels give the reference kernels' bits; the depthwise and implicit-GEMM
    convolutions are as close to float64 as the reference kernels are (2x)."""
    gen = torch.Generator().manual_seed(5)
    x = make_tensor((2, 16, 17, 16), dtype, layout, gen, "cuda")
    wt = make_tensor((24, 16, 3, 3), dtype, layout, gen, "cuda")
    wd = make_tensor((16, 1, 3, 3), dtype, layout, gen, "cuda")
    b = make_tensor((24,), dtype, "contiguous", gen, "cuda")
    runs = {}
    for reference in (False, True):
        cnnkernels._C.set_cuda_reference_kernels(reference)
        try:
            pool = CF.max_pool2d(x, 3, 2, 1, return_indices=True)
            xa = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
            (pool_dx,) = torch.autograd.grad(CF.max_pool2d(xa, 3, 2, 1), xa, torch.ones_like(pool[0]))
            g = torch.ones(2, 24, 17, 16, device="cuda", dtype=dtype)
            gd = torch.ones(2, 16, 17, 16, device="cuda", dtype=dtype)
            runs[reference] = (pool, pool_dx, conv_all(CF.conv2d, x, wt, b, (1, 1, 1, 1), g),
                               conv_all(lambda *a: CF.conv2d(*a[:2], None, *a[3:]), x, wd, b[:16], (1, 1, 1, 16), gd))
        finally:
            cnnkernels._C.set_cuda_reference_kernels(False)
    (fast_pool, fast_dx, fast_dense, fast_dw), (ref_pool, ref_dx, ref_dense, ref_dw) = runs[False], runs[True]
    torch.testing.assert_close(fast_pool[0], ref_pool[0], rtol=0, atol=0)
    assert torch.equal(fast_pool[1], ref_pool[1])
    torch.testing.assert_close(fast_dx, ref_dx, rtol=0, atol=0)
    g64 = torch.ones(2, 24, 17, 16, device="cuda", dtype=torch.float64)
    dense64 = conv_all(F.conv2d, x.double(), wt.double(), b.double(), (1, 1, 1, 1), g64)
    for name, o, t, r64 in zip(("output", "grad_input", "grad_weight", "grad_bias"), fast_dense, ref_dense, dense64):
        assert_calibrated(o, t, r64, f"dense {name} {dtype} {layout}", 16 * 9 * 2 * 17 * 16)
    gd64 = torch.ones(2, 16, 17, 16, device="cuda", dtype=torch.float64)
    dw64 = conv_all(lambda *a: F.conv2d(*a[:2], None, *a[3:]), x.double(), wd.double(), b[:16].double(),
                    (1, 1, 1, 16), gd64)
    for name, o, t, r64 in zip(("output", "grad_input", "grad_weight"), fast_dw[:3], ref_dw[:3], dw64[:3]):
        assert_calibrated(o, t, r64, f"depthwise {name} {dtype} {layout}", 9 * 2 * 17 * 16)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tiles", ["auto", "large"])  # channels_last: the pipeline's TF32 tiles
def test_conv2d_tf32_cuda(layout, tiles):
    """With allow_tf32 our GEMM rounds its operands to TF32 and sums in float: it matches an exact
    float32 convolution of the rounded operands."""
    cnnkernels._C.set_cuda_gemm_tiles(tiles)
    try:
        check_conv2d_tf32_cuda(layout)
    finally:
        cnnkernels._C.set_cuda_gemm_tiles("auto")


def check_conv2d_tf32_cuda(layout):
    gen = torch.Generator().manual_seed(7)
    x = make_tensor((2, 24, 13, 12), torch.float32, layout, gen, "cuda")
    wt = make_tensor((40, 24, 3, 3), torch.float32, layout, gen, "cuda")
    b = make_tensor((40,), torch.float32, "contiguous", gen, "cuda")
    g = make_tensor((2, 40, 13, 12), torch.float32, layout, gen, "cuda")
    args = (1, 1, 1, 1)
    torch.backends.cudnn.allow_tf32 = True
    ours = conv_all(CF.conv2d, x, wt, b, args, g)
    torch.backends.cudnn.allow_tf32 = False
    xr, wr, gr = round_to_tf32(x), round_to_tf32(wt), round_to_tf32(g)
    theirs = conv_all(F.conv2d, xr, wr, b, args, gr)
    ref = conv_all(F.conv2d, xr.double(), wr.double(), b.double(), args, gr.double())
    for name, o, t, r64, n in zip(("output", "grad_input", "grad_weight"), ours, theirs, ref, (216, 360, 312)):
        assert_calibrated(o, t, r64, f"tf32 {name} {layout}", n)
    assert not torch.equal(ours[0], conv_all(CF.conv2d, x, wt, b, args, g)[0])  # exact now: differs


def test_gradcheck_float64_cuda():
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    w = torch.randn(4, 2, 3, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: CF.conv2d(x, w, b, (2, 1), 1, (1, 2), 2), (x, w, b))
    assert torch.autograd.gradcheck(lambda x: CF.max_pool2d(x, 3, 2, 1, ceil_mode=True), (x,))


def test_opcheck_cuda():
    ops = torch.ops.cnnkernels
    x = torch.randn(2, 4, 7, 6, device="cuda").contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(6, 2, 3, 2, device="cuda", requires_grad=True)
    torch.library.opcheck(ops.conv2d.default, (x, w, None, [2, 1], [1, 0], [1, 2], 2))
    torch.library.opcheck(ops.max_pool2d_with_indices.default, (x, [3, 3], [2, 2], [1, 1], [1, 1], False))
    torch.library.opcheck(ops.max_pool2d.default, (x, [3, 3], [2, 2], [1, 1], [1, 1], False))  # saves taps


def test_runs_on_the_current_stream_and_device_of_the_input():
    x = torch.randn(4, 8, 32, 32, device="cuda")
    w = torch.randn(8, 8, 3, 3, device="cuda")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = CF.conv2d(x, w, padding=1)
        p = CF.max_pool2d(y, 2)
    side.synchronize()
    torch.testing.assert_close(p, F.max_pool2d(F.conv2d(x, w, padding=1), 2), rtol=1e-2, atol=1e-2)


def test_empty_batch_cuda():
    x = torch.randn(0, 4, 8, 8, device="cuda", requires_grad=True)
    w = torch.randn(6, 4, 3, 3, device="cuda", requires_grad=True)
    y = CF.conv2d(x, w, padding=1)
    y.sum().backward()
    assert y.shape == (0, 6, 8, 8) and torch.equal(w.grad, torch.zeros_like(w))


def test_max_pool2d_over_2_pow_31_elements():
    """int64 offsets: a 2^31 + 2^20 element fp16 input (4 GiB)."""
    free, _ = torch.cuda.mem_get_info()
    if free < 12 * 2**30:
        pytest.skip("needs 12 GiB of free GPU memory")
    x = torch.randn(2**31 // (1024 * 1024) + 1, 1, 1024, 1024, device="cuda", dtype=torch.float16)
    y, i = CF.max_pool2d(x, 2, return_indices=True)
    y_ref, i_ref = F.max_pool2d(x[-2:], 2, return_indices=True)
    assert torch.equal(y[-2:], y_ref) and torch.equal(i[-2:], i_ref)


def test_convert_a_cuda_model_keeps_device_and_matches():
    """A training step of a converted resnet18 on the GPU. Its conv1 weight gradient is ill-
    conditioned (batch norm's backward cancels most of it: cuDNN's own float32 result is percent-
    level off float64), so each gradient is held to 2x cuDNN's error against a float64 copy."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=10).cuda().to(memory_format=torch.channels_last)
    ref64 = copy.deepcopy(ref).double()
    model = cnnkernels.convert(ref, copy=True)
    assert all(p.is_cuda for p in model.parameters())
    x = torch.randn(2, 3, 64, 64, device="cuda").contiguous(memory_format=torch.channels_last)
    torch.backends.cudnn.allow_tf32 = False
    try:
        outs = [m(x.to(dtype)) for m, dtype in ((model, torch.float32), (ref, torch.float32), (ref64, torch.float64))]
        assert_calibrated(*outs, "output", terms=512 * 9)
        for y in outs:
            y.sum().backward()
        for (name, p), p_ref, p64 in zip(model.named_parameters(), ref.parameters(), ref64.parameters()):
            assert_calibrated(p.grad, p_ref.grad, p64.grad, name, terms=2 * 32 * 32)
    finally:
        torch.backends.cudnn.allow_tf32 = True
