"""csrc/cuda's kernels run on the CPU (tests/cuda_emu/emulation.h: blocks in turn, each block's
threads as fibers meeting at __syncthreads), against PyTorch on the CPU: every dtype, NCHW,
channels_last and strided layouts, so the dense fast paths and the any-strides reference kernels
are both checked, with poisoned outputs. This tests the kernels' logic (index math, tap rules,
fixed-order sums) wherever the CUDA toolkit's headers are, GPU or not; what only the hardware
shows (the memory model, speed) is tests/test_cuda.py's, on a GPU. Misaligned accesses are
reported as the GPU would fault (emulation.h, -fsanitize=alignment)."""
import contextlib
import hashlib
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_calibrated, make_tensor, round_to_tf32

HERE = Path(__file__).resolve().parent / "cuda_emu"
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["contiguous", "channels_last", "strided"]


def _cuda_include():
    from torch.utils.cpp_extension import CUDA_HOME

    for root in (CUDA_HOME, os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_runtime_api.h").exists():
            return str(Path(root) / "include")
    return None


@pytest.fixture(scope="module")
def emu():
    include = _cuda_include()
    if include is None:
        pytest.skip("no CUDA toolkit headers (cuda_runtime_api.h) to build the emulated kernels with")
    from torch.utils.cpp_extension import load

    sources = [HERE / "bindings.cpp"] + sorted(HERE.glob("emu_*.cpp"))
    # A misaligned typed vector access (VecOf; a GPU would fault) ends this process with status 1
    # (-fsanitize=alignment below), its report on stderr, which pytest's capture hides: run with -s,
    # or start Python with UBSAN_OPTIONS=log_path=<file> (.ci/run does). Misaligned cp.async and
    # ldmatrix addresses fail the launch instead (emulation.h's require_aligned).
    # load() rebuilds when its sources or flags change, and the kernels come in through #include:
    # a digest of every file they are made of goes into the flags.
    digest = hashlib.sha1()
    for f in sorted([*HERE.glob("*"), *(HERE.parent.parent / "csrc").glob("**/*")]):
        if f.is_file():
            digest.update(f.read_bytes())
    return load(name="cnnkernels_cuda_emu", sources=[str(s) for s in sources], extra_include_paths=[include],
                # -fsanitize=alignment: a misaligned vector access (VecOf) stops the run, as it
                # would fault on the GPU
                extra_cflags=["-O2", "-std=c++20", "-U_FORTIFY_SOURCE", "-fsanitize=alignment",
                              "-fno-sanitize-recover=alignment", f"-DCNNKERNELS_EMU_SOURCES={digest.hexdigest()[:16]}"],
                extra_ldflags=["-fsanitize=alignment"],
                verbose=False)


GEMM_TILES = {"small": 1, "large": 2}  # cuda::GemmTiles


@contextlib.contextmanager
def kernel_choice(emu, kernels):
    """The entry points' own choice of kernels ("fast"), the any-strides reference kernels for
    everything ("reference"), or the fast kernels with the tensor-core pipeline's tiles forced
    ("small", "large")."""
    emu.set_reference_kernels_only(kernels == "reference")
    emu.set_gemm_tiles(GEMM_TILES.get(kernels, 0))
    try:
        yield
    finally:
        emu.set_reference_kernels_only(False)
        emu.set_gemm_tiles(0)


def empty_like_layout(shape, dtype, layout, poison):
    """An output of `shape` in `layout`, every element `poison`: an element a kernel leaves
    unwritten shows."""
    if layout == "strided":
        return torch.full((*shape[:-1], 2 * shape[-1]), poison, dtype=dtype)[..., ::2]
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return torch.full(shape, poison, dtype=dtype).contiguous(memory_format=fmt)


# ---- max_pool2d -------------------------------------------------------------------------------

POOL_ARGS = [  # kernel, stride, padding, dilation, ceil_mode
    ((3, 3), (2, 2), (1, 1), (1, 1), False),
    ((2, 3), (1, 2), (1, 1), (2, 1), True),
    ((2, 2), (2, 2), (0, 0), (1, 1), False),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("args", POOL_ARGS)
@pytest.mark.parametrize("channels", [5, 16])  # 16: whole 16-byte vectors of channels_last channels
@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_max_pool2d_emulated(emu, kernels, dtype, layout, args, channels):
    with kernel_choice(emu, kernels):
        check_max_pool2d(emu, dtype, layout, args, channels)


def check_max_pool2d(emu, dtype, layout, args, channels):
    kernel, stride, padding, dilation, ceil_mode = args
    gen = torch.Generator().manual_seed(3)
    x = make_tensor((2, channels, 17, 16), dtype, layout, gen)
    x[..., ::5, ::3] = float("nan")
    x[..., 1::4, ::2] = float("-inf")
    x[:, :2] = x[:, :2].round()  # ties
    y_ref, i_ref = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
    shape = tuple(y_ref.shape)
    a = (list(kernel), list(stride), list(padding), list(dilation))

    # Forward without winners, with int64 indices, with uint8 taps: the same values.
    y_plain = empty_like_layout(shape, dtype, layout, 1e4)
    emu.max_pool2d_fwd(x, y_plain, None, *a)
    y, idx = empty_like_layout(shape, dtype, layout, 1e4), empty_like_layout(shape, torch.int64, layout, -7)
    emu.max_pool2d_fwd(x, y, idx, *a)
    y_t, taps = empty_like_layout(shape, dtype, layout, 1e4), empty_like_layout(shape, torch.uint8, layout, 255)
    emu.max_pool2d_fwd(x, y_t, taps, *a)
    for got in (y_plain, y, y_t):
        torch.testing.assert_close(got, y_ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(idx, i_ref)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a
    p = torch.arange(shape[2]).view(1, 1, -1, 1)
    q = torch.arange(shape[3]).view(1, 1, 1, -1)
    t = taps.long()
    assert torch.equal((p * sh - ph + t // kw * dh) * x.shape[3] + (q * sw - pw + t % kw * dw), i_ref)

    # Backward from indices and from taps: the float64 scatter-sum (the kernels sum the up to
    # kernel-size windows' dy in the accumulator type, so a last-place difference).
    g = make_tensor(shape, dtype, layout, gen)
    expect = torch.zeros(x.shape[0], x.shape[1], x.shape[2] * x.shape[3], dtype=torch.float64)
    expect.scatter_add_(2, i_ref.flatten(2), g.double().flatten(2))
    expect = expect.view(x.shape).to(dtype)
    for winners in (idx, taps):
        dx = empty_like_layout(tuple(x.shape), dtype, layout, 1e4)
        emu.max_pool2d_bwd(g, winners, dx, *a)
        eps = torch.finfo(dtype).eps
        torch.testing.assert_close(dx, expect, rtol=2 * eps, atol=2 * eps * g.abs().max().item())


# ---- conv2d -----------------------------------------------------------------------------------

# GEMM tiles both ways (fprop 5 x 2 of 64 x 64), the weight gradient in 2 slices.
BIG_GEMM = (2, 64, 80, 12, 12, 3, 3, 1, 1, 1, 1)
CONV_CASES = [  # (n, c, k, h, w, r, s, stride, padding, dilation, groups)
    (2, 8, 16, 9, 8, 3, 3, 1, 1, 1, 1),  # dense: the implicit GEMM
    BIG_GEMM,
    (2, 12, 8, 13, 11, 1, 1, 2, 0, 1, 1),  # 1x1 stride 2
    (2, 6, 9, 11, 12, 3, 2, (2, 1), (1, 0), (1, 2), 3),  # grouped
    (2, 16, 16, 10, 10, 3, 3, 2, 1, 1, 16),  # depthwise
    (2, 24, 24, 12, 11, 3, 3, 1, 2, 2, 24),  # depthwise, dilated
    (1, 6, 6, 9, 9, 5, 5, 1, 2, 1, 6),  # depthwise 5x5, channels in no whole 16-byte vector
    (2, 32, 32, 40, 40, 3, 3, 1, 1, 1, 32),  # depthwise: its weight gradient sums 3 pixel slices
    # whole 16-byte chunks of C/G and K/G: the tensor-core pipeline's layers in bf16 / f16 channels_last
    (2, 16, 24, 9, 10, 3, 3, 2, 1, 1, 1),  # stride 2: dgrad zeroes the taps no output reaches
    (2, 32, 64, 7, 6, 3, 1, 1, (1, 0), (2, 1), 2),  # grouped, dilated, 3 x 1
    (1, 16, 16, 7, 7, 1, 1, 2, 0, 1, 1),  # 1x1 stride 2: dx pixels no tap reads
    (1, 3, 16, 15, 14, 7, 7, 2, 3, 1, 1),  # stem-like: the forward pads its 3 channels to one chunk
]


# The reference kernels on every case but the largest (its weight gradient is 46080 blocks of 256
# emulated threads: seconds per run).
CONV_RUNS = [("fast", case) for case in CONV_CASES] + [("reference", case) for case in CONV_CASES if case != BIG_GEMM]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernels,case", CONV_RUNS)
def test_conv2d_emulated(emu, kernels, dtype, layout, case):
    with kernel_choice(emu, kernels):
        check_conv2d(emu, kernels, dtype, layout, case)


def pipeline_takes(case):
    """Whether the bf16 / f16 channels_last GEMMs of `case` run on the cp.async pipeline."""
    n, c, k, h, w, r, s, stride, padding, dilation, groups = case
    return groups != c and (c // groups) % 8 == 0 and (k // groups) % 8 == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, "tf32"])
@pytest.mark.parametrize("tiles", ["small", "large"])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])  # contiguous: copied to channels_last
@pytest.mark.parametrize("case", [c for c in CONV_CASES if pipeline_takes(c)])
def test_conv2d_pipeline_tiles_emulated(emu, tiles, dtype, layout, case):
    """Both block tiles of the pipeline (16-bit 64 x 64 x 32 and 128 x 128 x 16, TF32 64 x 64 x 16
    and 128 x 128 x 16) on each of its layers: chunks along the reduction (ldmatrix) and along the
    rows (ldmatrix.trans; TF32: 32-bit loads), zero-filled taps and edges, the weight gradient's
    slices."""
    with kernel_choice(emu, tiles):
        if dtype == "tf32":
            check_conv2d_tf32(emu, layout, case)
        else:
            check_conv2d(emu, tiles, dtype, layout, case)


def run_conv(emu, x, wt, b, g, y_shape, layout, args, tf32):
    """The emulated forward, input gradient and weight gradient into poisoned outputs, and the
    workspace bytes each asked for."""
    y = empty_like_layout(y_shape, x.dtype, layout, float("nan"))
    ws_y = emu.conv2d_fprop(x, wt, b, y, *args, tf32)
    dx = empty_like_layout(tuple(x.shape), x.dtype, layout, float("nan"))
    ws_dx = emu.conv2d_dgrad(g, wt, dx, *args, tf32)
    dw = empty_like_layout(tuple(wt.shape), x.dtype, layout, float("nan"))
    ws_dw = emu.conv2d_wgrad(g, x, dw, *args, tf32)
    return y, dx, dw, (ws_y, ws_dx, ws_dw)


def check_conv2d(emu, kernels, dtype, layout, case):
    n, c, k, h, w, r, s, stride, padding, dilation, groups = case
    st, pd, dl = list(F._pair(stride)), list(F._pair(padding)), list(F._pair(dilation))
    gen = torch.Generator().manual_seed(4)
    x = make_tensor((n, c, h, w), dtype, layout, gen)
    wt = make_tensor((k, c // groups, r, s), dtype, layout, gen)
    b = make_tensor((k,), dtype, "contiguous", gen)
    args = (st, pd, dl, groups)
    y_shape = tuple(F.conv2d(x.double(), wt.double(), None, *args).shape)
    g = make_tensor(y_shape, dtype, layout, gen)

    def torch_all(x, wt, b, g):
        return (F.conv2d(x, wt, b, *args), torch.nn.grad.conv2d_input(x.shape, wt, g, *args),
                torch.nn.grad.conv2d_weight(x, wt.shape, g, *args), g.sum((0, 2, 3)))

    theirs = torch_all(x, wt, b, g)
    ref = torch_all(x.double(), wt.double(), b.double(), g.double())

    y, dx, dw, workspace = run_conv(emu, x, wt, b, g, y_shape, layout, args, tf32=False)
    db = torch.full((k,), float("nan"), dtype=dtype)
    emu.conv2d_bgrad(g, db)
    if kernels == "reference":
        assert workspace == (0, 0, 0)
    elif groups == c == k and r == s == 3 and layout != "strided":
        assert workspace[2] > 0, "the depthwise 3x3 weight gradient sums pixel slices in a workspace"
    elif dtype in (torch.float16, torch.bfloat16) and pipeline_takes(case):
        # the pipeline reads channels_last operands: other layouts are copied first
        copies = layout != "channels_last"
        assert (workspace[0] > 0, workspace[1] > 0) == (copies, copies), workspace
        assert workspace[2] > 0 or not copies, workspace
    elif dtype in (torch.float16, torch.bfloat16) and groups == 1 and c < 8:
        assert workspace[0] > 0, "the forward copies x and w with their channels padded to 8"

    n_pixels = y_shape[0] * y_shape[2] * y_shape[3]
    terms = (c // groups * r * s, k // groups * r * s, n_pixels, n_pixels)
    for name, o, t, r64, n_terms in zip(("output", "grad_input", "grad_weight", "grad_bias"), (y, dx, dw, db),
                                        theirs, ref, terms):
        assert_calibrated(o, t, r64, f"{name} {case} {dtype} {layout}", n_terms)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[-1] != c[1]])  # the GEMM's layers
def test_conv2d_tf32_emulated(emu, layout, case):
    check_conv2d_tf32(emu, layout, case)


def check_conv2d_tf32(emu, layout, case):
    """float32 with allow_tf32: the GEMM rounds its operands to TF32 and sums in float, so it
    matches a float32 convolution of the rounded operands, not of the originals."""
    n, c, k, h, w, r, s, stride, padding, dilation, groups = case
    args = (list(F._pair(stride)), list(F._pair(padding)), list(F._pair(dilation)), groups)
    gen = torch.Generator().manual_seed(6)
    x = make_tensor((n, c, h, w), torch.float32, layout, gen)
    wt = make_tensor((k, c // groups, r, s), torch.float32, layout, gen)
    b = make_tensor((k,), torch.float32, "contiguous", gen)
    y_shape = tuple(F.conv2d(x, wt, None, *args).shape)
    g = make_tensor(y_shape, torch.float32, layout, gen)
    y, dx, dw, _ = run_conv(emu, x, wt, b, g, y_shape, layout, args, tf32=True)
    xr, wr, gr = round_to_tf32(x), round_to_tf32(wt), round_to_tf32(g)

    def torch_all(x, wt, b, g):
        return (F.conv2d(x, wt, b, *args), torch.nn.grad.conv2d_input(x.shape, wt, g, *args),
                torch.nn.grad.conv2d_weight(x, wt.shape, g, *args))

    theirs = torch_all(xr, wr, b, gr)
    ref = torch_all(xr.double(), wr.double(), b.double(), gr.double())
    n_pixels = y_shape[0] * y_shape[2] * y_shape[3]
    terms = (c // groups * r * s, k // groups * r * s, n_pixels)
    for name, o, t, r64, n_terms in zip(("output", "grad_input", "grad_weight"), (y, dx, dw), theirs, ref, terms):
        assert_calibrated(o, t, r64, f"tf32 {name} {case} {layout}", n_terms)
    # and TF32 did change the result: the exact GEMM differs
    y_exact, *_ = run_conv(emu, x, wt, b, g, y_shape, layout, args, tf32=False)
    assert not torch.equal(y, y_exact)


# ---- alignment -------------------------------------------------------------------------------

def misaligned_channels_last(t):
    """t's values in a dense channels_last tensor whose data starts one element past a 16-byte
    boundary: the vector and cp.async paths must not take it (a GPU would fault; the emulation
    reports the access, see emulation.h's require_aligned and the build's -fsanitize=alignment)."""
    n, c, h, w = t.shape
    base = torch.empty(n * c * h * w + 1, dtype=t.dtype)
    out = base[1:].view(n, h, w, c).permute(0, 3, 1, 2)
    out.copy_(t)
    return out


@pytest.mark.parametrize("dtype,tf32", [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)])
def test_misaligned_tensors_emulated(emu, dtype, tf32):
    """Dense channels_last tensors off the 16-byte grid: every entry point still answers (through
    a copy or a kernel without vectors), and no emulated access was misaligned."""
    gen = torch.Generator().manual_seed(9)
    case = (2, 16, 24, 9, 10, 3, 3, 1, 1, 1, 1)
    n, c, k, h, w, r, s, stride, padding, dilation, groups = case
    args = ([stride] * 2, [padding] * 2, [dilation] * 2, groups)
    x = misaligned_channels_last(make_tensor((n, c, h, w), dtype, "contiguous", gen))
    wt = misaligned_channels_last(make_tensor((k, c, r, s), dtype, "contiguous", gen))
    y_shape = tuple(F.conv2d(x.double(), wt.double(), None, *args).shape)
    g = misaligned_channels_last(make_tensor(y_shape, dtype, "contiguous", gen))
    y, dx, dw, _ = run_conv(emu, x, wt, None, g, y_shape, "channels_last", args, tf32)
    if tf32:
        x, wt, g = round_to_tf32(x), round_to_tf32(wt), round_to_tf32(g)
    theirs = (F.conv2d(x, wt, None, *args), torch.nn.grad.conv2d_input(x.shape, wt, g, *args),
              torch.nn.grad.conv2d_weight(x, wt.shape, g, *args))
    ref = (F.conv2d(x.double(), wt.double(), None, *args),
           torch.nn.grad.conv2d_input(x.shape, wt.double(), g.double(), *args),
           torch.nn.grad.conv2d_weight(x.double(), wt.shape, g.double(), *args))
    n_pixels = y_shape[0] * y_shape[2] * y_shape[3]
    for name, o, t, r64, terms in zip(("output", "grad_input", "grad_weight"), (y, dx, dw), theirs, ref,
                                      (c * r * s, k * r * s, n_pixels)):
        assert_calibrated(o, t, r64, f"misaligned {name} {dtype} tf32={tf32}", terms)
    # max-pool: the channels_last vector kernels
    xp = misaligned_channels_last(make_tensor((2, 16, 9, 8), dtype, "contiguous", gen))
    yp = empty_like_layout((2, 16, 4, 4), dtype, "channels_last", float("nan"))
    emu.max_pool2d_fwd(xp, yp, None, [2, 2], [2, 2], [0, 0], [1, 1])
    torch.testing.assert_close(yp, F.max_pool2d(xp, 2, 2), rtol=0, atol=0)
