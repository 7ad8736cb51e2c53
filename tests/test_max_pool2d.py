"""max_pool2d forward and backward against PyTorch: values and indices exactly, NaN and tie rules,
ceil_mode, dilation, layouts, and every forced CPU ISA."""
import math
import zlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import cnnkernels.functional as CF
from conftest import assert_calibrated, forced_isa, make_tensor

LAYOUTS = ("contiguous", "channels_last", "strided")
PATHS = [(torch.float32, "scalar"), (torch.float32, "avx2"), (torch.float32, "avx512"),
         (torch.float64, None), (torch.bfloat16, "scalar"), (torch.bfloat16, "avx2"), (torch.bfloat16, "avx512")]
SIMD_DTYPES = (torch.float32, torch.bfloat16)
BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16}


@st.composite
def pool_configs(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, k[d] // 2)) for d in range(2))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    ceil_mode = draw(st.booleans())
    # At least one output: the padded input holds the dilated window.
    h = max(1, (k[0] - 1) * dilation[0] + 1 - 2 * padding[0]) + draw(st.integers(0, 7))
    w = max(1, (k[1] - 1) * dilation[1] + 1 - 2 * padding[1]) + draw(st.integers(0, 7))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 5)), h=h, w=w, kernel_size=k, stride=stride,
                padding=padding, dilation=dilation, ceil_mode=ceil_mode, layout=draw(st.sampled_from(LAYOUTS)),
                g_layout=draw(st.sampled_from(LAYOUTS)), values=draw(st.sampled_from(["randn", "ties", "special"])),
                seed=draw(st.integers(0, 2**31 - 1)))


def make_input(cfg, dtype):
    gen = torch.Generator().manual_seed(cfg["seed"])
    x = make_tensor((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dtype, cfg["layout"], gen)
    with torch.no_grad():
        if cfg["values"] == "ties":  # few distinct values: ties everywhere
            x.copy_(torch.randint(-2, 3, x.shape, generator=gen).to(dtype))
        elif cfg["values"] == "special":  # NaN, +-inf sprinkled in
            pick = torch.rand(x.shape, generator=gen)
            x[pick < 0.1] = float("nan")
            x[(pick >= 0.1) & (pick < 0.25)] = float("-inf")
            x[(pick >= 0.25) & (pick < 0.3)] = float("inf")
    return x


def pool_args(cfg):
    return (cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["ceil_mode"])


def check_against_torch(cfg, dtype):
    x = make_input(cfg, dtype)
    args = pool_args(cfg)
    y, idx = CF.max_pool2d(x, *args, return_indices=True)
    y_ref, idx_ref = F.max_pool2d(x, *args, return_indices=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(idx, idx_ref), cfg
    for fmt in (torch.contiguous_format, torch.channels_last):
        assert y.is_contiguous(memory_format=fmt) == y_ref.is_contiguous(memory_format=fmt)
        assert idx.is_contiguous(memory_format=fmt) == idx_ref.is_contiguous(memory_format=fmt)
    # values only (the path without indices) must agree too
    torch.testing.assert_close(CF.max_pool2d(x, *args), y_ref, rtol=0, atol=0, equal_nan=True)

    # backward: gradients routed to the winners, overlapping windows summed
    if (idx_ref >= cfg["h"] * cfg["w"]).any():
        return  # a window holding no input element: see test_window_without_input_element
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    g = make_tensor(tuple(y.shape), dtype, cfg["g_layout"], gen)
    xa, xb = x.detach().requires_grad_(), x.detach().requires_grad_()  # (a clone would make a slice dense)
    (gx,) = torch.autograd.grad(CF.max_pool2d(xa, *args), xa, g)
    (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, *args), xb, g)
    if dtype != torch.bfloat16:
        torch.testing.assert_close(gx, gx_ref, rtol=0, atol=0)
    else:
        # Overlapping windows sum several terms: we accumulate in float and round once, PyTorch
        # rounds to bfloat16 after every addition, so no fixed tolerance fits (PyTorch's own error
        # exceeded 1e-2 on a 12-term sum). Judge both against the float64 gradient of the same
        # routing (bfloat16 inputs are exact in float64, so the maxima are the same).
        xc = x.detach().double().requires_grad_()
        (gx64,) = torch.autograd.grad(F.max_pool2d(xc, *args), xc, g.double())
        assert_calibrated(gx, gx_ref, gx64, f"bfloat16 backward {cfg}")


@pytest.mark.parametrize("dtype,isa", PATHS, ids=[f"{str(d)[6:]}-{i or 'ref'}" for d, i in PATHS])
@given(cfg=pool_configs())
def test_max_pool2d_matches_torch(dtype, isa, cfg):
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


def assert_identical(a, b, what):
    """Equal values, NaN where NaN, and the same signs (of zeros too)."""
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")
    assert torch.equal(a.signbit(), b.signbit()), what


def taps_to_indices(taps, args, w):
    """The plane index tap number i * kw + j names in its window (csrc/common/pool_params.h)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), _ = args
    p = torch.arange(taps.shape[2]).view(1, 1, -1, 1)
    q = torch.arange(taps.shape[3]).view(1, 1, 1, -1)
    t = taps.long()
    return (p * sh - ph + (t // kw) * dh) * w + (q * sw - pw + (t % kw) * dw)


@pytest.mark.parametrize("dtype,isa", PATHS, ids=[f"{str(d)[6:]}-{i or 'ref'}" for d, i in PATHS])
@given(cfg=pool_configs())
def test_taps_name_the_winners_indices_do(dtype, isa, cfg):
    """The training path's one-byte taps: the same values, bit for bit, as with int64 indices, each tap
    naming the very index, and the two backward ops giving the same gradient bits and layout."""
    x = make_input(cfg, dtype)
    args = pool_args(cfg)
    (k, s, p, d), ceil = (list(a) for a in args[:4]), args[4]
    with forced_isa(isa):
        y_i, idx = torch.ops.cnnkernels.max_pool2d_with_indices(x, k, s, p, d, ceil)
        y_t, taps = torch.ops.cnnkernels.max_pool2d_with_taps(x, k, s, p, d, ceil)
        assert taps.dtype == torch.uint8 and taps.stride() == idx.stride()
        assert_identical(y_t, y_i, cfg)
        assert torch.equal(taps_to_indices(taps, args, cfg["w"]), idx), cfg
        g = make_tensor(tuple(y_i.shape), dtype, cfg["g_layout"], torch.Generator().manual_seed(cfg["seed"] + 1))
        size = list(x.shape)
        dx_i = torch.ops.cnnkernels.max_pool2d_backward(g, idx, size, k, s, p, d)
        dx_t = torch.ops.cnnkernels.max_pool2d_backward_taps(g, taps, size, k, s, p, d)
        assert_identical(dx_t, dx_i, cfg)
        assert dx_t.stride() == dx_i.stride(), cfg


def test_training_saves_taps_where_they_fit_else_indices():
    """Autograd through max_pool2d keeps uint8 taps for windows of up to 256 elements and int64
    indices beyond (17 x 16 = 272); both train like PyTorch. return_indices keeps its indices."""
    def saved_dtypes(fn):
        dtypes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: dtypes.append(t.dtype) or t, lambda t: t):
            out = fn()
        return out, dtypes

    for kernel, saved in (((3, 3), torch.uint8), ((16, 16), torch.uint8), ((17, 16), torch.int64)):
        x = torch.randn(2, 3, 40, 37)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        y, dtypes = saved_dtypes(lambda: CF.max_pool2d(xa, kernel, 2, 1))
        assert dtypes == [saved], (kernel, dtypes)
        y_ref = F.max_pool2d(xb, kernel, 2, 1)
        g = torch.randn_like(y_ref)
        assert torch.equal(y, y_ref)
        assert torch.equal(torch.autograd.grad(y, xa, g)[0], torch.autograd.grad(y_ref, xb, g)[0])
    xa = torch.randn(1, 2, 9, 9, requires_grad=True)
    (y, i), dtypes = saved_dtypes(lambda: CF.max_pool2d(xa, 3, return_indices=True))
    assert dtypes == [torch.int64] and i.dtype == torch.int64


def test_taps_ops_reject_bad_arguments():
    ops = torch.ops.cnnkernels
    x = torch.randn(1, 2, 40, 40)
    with pytest.raises(RuntimeError, match="taps name at most 256 window elements.*kernel_size"):
        ops.max_pool2d_with_taps(x, [17, 16], [1, 1], [0, 0], [1, 1], False)
    y, taps = ops.max_pool2d_with_taps(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
    _, idx = ops.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
    geometry = ([3, 3], [2, 2], [1, 1], [1, 1])
    with pytest.raises(RuntimeError, match="taps must be uint8"):
        ops.max_pool2d_backward_taps(y, idx, list(x.shape), *geometry)
    with pytest.raises(RuntimeError, match="indices must be int64"):
        ops.max_pool2d_backward(y, taps, list(x.shape), *geometry)
    with pytest.raises(RuntimeError, match="taps of size .* do not match grad_output"):
        ops.max_pool2d_backward_taps(y, taps[:, :1], list(x.shape), *geometry)
    with pytest.raises(RuntimeError, match="taps name at most 256"):
        ops.max_pool2d_backward_taps(y, taps, list(x.shape), [17, 16], [2, 2], [1, 1], [1, 1])


def test_taps_past_the_window_route_nothing():
    """A tap number >= kernel_h * kernel_w names no window element: its gradient goes nowhere, in
    both layouts (the kernels' bounds rule; our forward never writes one)."""
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(1, 17, 9, 9).contiguous(memory_format=fmt)
        y, taps = torch.ops.cnnkernels.max_pool2d_with_taps(x, [3, 3], [2, 2], [1, 1], [1, 1], False)
        bad = taps.clone()
        bad[..., 0, 0] = 9
        g = torch.ones_like(y)
        dx = torch.ops.cnnkernels.max_pool2d_backward_taps(g, bad, list(x.shape), [3, 3], [2, 2], [1, 1], [1, 1])
        ref = torch.ops.cnnkernels.max_pool2d_backward_taps(g, taps, list(x.shape), [3, 3], [2, 2], [1, 1], [1, 1])
        assert dx.sum() == ref.sum() - 17


def test_nan_tie_and_all_minus_inf_rules():
    inf, nan = math.inf, math.nan
    x = torch.tensor([[[[1.0, 3.0, 3.0, 0.0],        # tie: first 3 wins
                        [nan, 2.0, nan, 5.0],        # two NaNs in a window: the last wins
                        [-inf, -inf, 7.0, 7.0],
                        [-inf, -inf, 1.0, 2.0]]]])  # all -inf window
    for args in [(2, 2), (2, 1), (3, 1, 1)]:
        y, i = CF.max_pool2d(x, *args, return_indices=True)
        y_ref, i_ref = F.max_pool2d(x, *args, return_indices=True)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0, equal_nan=True)
        assert torch.equal(i, i_ref), (args, i, i_ref)
    y, i = CF.max_pool2d(x, 2, 2, return_indices=True)
    assert i[0, 0, 1, 0].item() == 8 and y[0, 0, 1, 0].item() == -inf  # first valid tap of an all -inf window


def test_padding_is_limited_by_the_undilated_kernel():
    """PyTorch allows padding <= kernel_size / 2 even when dilation enlarges the window."""
    x = torch.randn(2, 3, 9, 7)
    ok = ((2, 3), (1, 2), (1, 1), (3, 2))
    y, i = CF.max_pool2d(x, *ok, return_indices=True)
    y_ref, i_ref = F.max_pool2d(x, *ok, return_indices=True)
    assert torch.equal(y, y_ref) and torch.equal(i, i_ref)
    too_much = ((2, 3), (1, 2), (2, 2), (3, 2))
    with pytest.raises(RuntimeError):
        F.max_pool2d(x, *too_much)
    with pytest.raises(RuntimeError, match="padding"):
        CF.max_pool2d(x, *too_much)


def test_window_without_input_element():
    """With dilation a window can miss the input entirely (H = 1, taps at rows -1 and 1). PyTorch
    gives -inf and an index past the plane, and its backward then adds the gradient into the
    next plane's memory; ours gives the same forward and routes that gradient nowhere."""
    x = torch.randn(1, 2, 1, 1, requires_grad=True)
    args = ((2, 1), 1, (1, 0), (2, 1))
    y, i = CF.max_pool2d(x, *args, return_indices=True)
    y_ref, i_ref = F.max_pool2d(x, *args, return_indices=True)
    assert torch.equal(y, y_ref) and torch.equal(i, i_ref)
    assert torch.isinf(y).all() and (i >= 1).all()
    (g,) = torch.autograd.grad(CF.max_pool2d(x, *args).sum(), x)
    assert torch.equal(g, torch.zeros_like(x))


def test_indices_work_with_max_unpool2d():
    x = torch.randn(2, 3, 8, 10)
    y, idx = CF.max_pool2d(x, 2, return_indices=True)
    torch.testing.assert_close(F.max_unpool2d(y, idx, 2, output_size=x.shape[-2:]),
                               F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2, output_size=x.shape[-2:]))


def test_unbatched_and_stride_defaults():
    x = torch.randn(3, 9, 9, requires_grad=True)
    for stride in (None, (), 2, (1, 2)):
        y, i = CF.max_pool2d(x, 3, stride, 1, return_indices=True)
        y_ref, i_ref = F.max_pool2d(x, 3, stride, 1, return_indices=True)
        assert y.shape == y_ref.shape and torch.equal(y, y_ref) and torch.equal(i, i_ref)
    (g,) = torch.autograd.grad(CF.max_pool2d(x, 3, 2, 1).sum(), x)
    (g_ref,) = torch.autograd.grad(F.max_pool2d(x, 3, 2, 1).sum(), x)
    assert torch.equal(g, g_ref)


def test_empty_batch():
    x = torch.randn(0, 4, 8, 8, requires_grad=True)
    y, i = CF.max_pool2d(x, 2, return_indices=True)
    assert y.shape == i.shape == F.max_pool2d(x, 2).shape
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_no_indices_computed_without_grad():
    """Inference (no grad, no return_indices) takes the values-only op."""
    x = torch.randn(1, 2, 6, 6)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        y = CF.max_pool2d(x, 2)
    assert y.grad_fn is None and torch.equal(y, F.max_pool2d(x, 2))


def test_gradcheck_float64():
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: CF.max_pool2d(x, (3, 2), (2, 1), (1, 1), (1, 2), True), (x,))


# ---- the hand-written kernels (csrc/cpu/simd/max_pool2d_simd.h), float32 and bfloat16 ---------------
# Shapes big enough to reach the vector main loops and their tails on every ISA: channels_last
# vectorises over C (16 lanes AVX-512, 8 AVX2, 4 vectors unrolled), NCHW over output columns, so C
# and W_out take values around those widths. Values are dense in ties, NaN and -inf so that the
# tie / last-NaN / all -inf rules are exercised in every lane position, lane boundaries included.

FLOAT32_ISAS = ("scalar", "avx2", "avx512")
VECTOR_CS = (1, 15, 16, 17, 33, 85)  # 85 = 4 x 16 + 16 + 5: unrolled block, single vector, tail
VECTOR_QS = (1, 8, 15, 16, 17, 40)   # output columns (8 and 16: one whole AVX2 or AVX-512 vector)
# (kernel, stride, padding, dilation, ceil_mode)
VECTOR_GEOMETRIES = {
    "k3s1p1": ((3, 3), (1, 1), (1, 1), (1, 1), False),          # overlapping, stride 1
    "k3s2p1": ((3, 3), (2, 2), (1, 1), (1, 1), False),          # overlapping, stride 2 (ResNet stem)
    "k2s2": ((2, 2), (2, 2), (0, 0), (1, 1), False),            # non-overlapping (VGG)
    "k3s3ceil": ((3, 3), (3, 3), (0, 0), (1, 1), True),         # non-overlapping, stride 3 (gather)
    "k4s2p2ceil": ((4, 4), (2, 2), (2, 2), (1, 1), True),       # ceil_mode, partial last windows
    "k32s23d21": ((3, 2), (2, 3), (1, 1), (2, 1), True),        # dilation, mixed strides
    "k2s1p1d2": ((2, 2), (1, 1), (1, 1), (2, 2), False),        # dilation 2, stride 1
    # Rows padded but not columns: short rows go G at a time, border rows' windows start lower
    "k2s2p10": ((2, 2), (2, 2), (1, 0), (1, 1), False),
    "k3s1p10d2": ((3, 2), (1, 1), (1, 0), (2, 1), False),
}


def _input_width(q, k, s, p, d):
    """Smallest input extent giving q outputs without ceil_mode."""
    return max(1, (q - 1) * s + d * (k - 1) + 1 - 2 * p)


def _fill_values(x, kind, gen):
    with torch.no_grad():
        if kind == "ties":  # few distinct values: the first maximum must win
            x.copy_(torch.randint(-2, 3, x.shape, generator=gen).to(x.dtype))
        elif kind == "special":  # NaN (last one wins), +-inf, ties
            x.copy_(torch.randint(-2, 3, x.shape, generator=gen).to(x.dtype))
            pick = torch.rand(x.shape, generator=gen)
            x[pick < 0.08] = float("nan")
            x[(pick >= 0.08) & (pick < 0.2)] = float("-inf")
            x[(pick >= 0.2) & (pick < 0.24)] = float("inf")
        elif kind == "neginf":  # mostly -inf: many windows are all -inf (index of the first tap)
            x.copy_(torch.randint(-2, 3, x.shape, generator=gen).to(x.dtype))
            x[torch.rand(x.shape, generator=gen) < 0.8] = float("-inf")
    return x


def _compare_pool(x, geometry, g_format, what):
    k, s, p, d, ceil = geometry
    y, idx = CF.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    y_ref, idx_ref = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{what}: {m}")
    # Bit for bit where PyTorch's result is a number (signed zeros and infinities included). Where
    # it is NaN ours is NaN too (above) and is the input's NaN, the canonical quiet one here;
    # PyTorch's channels_last bfloat16 kernel returns 0xffff there instead (torch 2.14.1), so
    # NaN bits are checked against the input, not against PyTorch.
    bits, ref_bits, num = y.view(BITS[x.dtype]), y_ref.view(BITS[x.dtype]), ~torch.isnan(y_ref)
    assert torch.equal(bits[num], ref_bits[num]), f"{what}: bits differ"
    canonical_nan = torch.tensor(float("nan"), dtype=x.dtype).view(BITS[x.dtype])
    assert (bits[~num] == canonical_nan).all(), f"{what}: NaN bits"
    assert torch.equal(idx, idx_ref), f"{what}: indices differ at {(idx != idx_ref).nonzero()[:5].tolist()}"
    torch.testing.assert_close(CF.max_pool2d(x, k, s, p, d, ceil), y_ref, rtol=0, atol=0, equal_nan=True,
                               msg=lambda m: f"{what} (no indices): {m}")
    assert y.is_contiguous(memory_format=torch.channels_last) == y_ref.is_contiguous(memory_format=torch.channels_last)

    if (idx_ref >= x.shape[2] * x.shape[3]).any():
        return  # PyTorch's backward writes outside the plane there: see test_window_without_input_element
    g = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    g = g.contiguous(memory_format=g_format)
    with torch.no_grad():
        g[..., ::3] = -0.0  # PyTorch's dx = 0 + g turns these into +0
    xa, xb = x.detach().requires_grad_(), x.detach().requires_grad_()  # (a clone would make a slice dense)
    (gx,) = torch.autograd.grad(CF.max_pool2d(xa, k, s, p, d, ceil), xa, g)
    (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, k, s, p, d, ceil), xb, g)
    assert gx.stride() == gx_ref.stride(), what
    # Disjoint windows route each gradient alone: exact. Overlapping ones sum a few terms, where only
    # the order of the additions could differ (ours follows PyTorch's, so this is exact in practice).
    disjoint = all(s[i] >= (k[i] - 1) * d[i] + 1 for i in range(2))
    if x.dtype == torch.bfloat16 and not disjoint:
        # Sums of a few terms: we round once from float, PyTorch after every addition. Judge both
        # against the float64 gradient of the same routing, as check_against_torch does.
        xc = x.detach().double().requires_grad_()
        (gx64,) = torch.autograd.grad(F.max_pool2d(xc, k, s, p, d, ceil), xc, g.double())
        assert_calibrated(gx, gx_ref, gx64, f"{what} backward")
        return
    tol = 0 if disjoint else 1e-6
    torch.testing.assert_close(gx, gx_ref, rtol=tol, atol=tol, msg=lambda m: f"{what} backward: {m}")
    if tol == 0:
        assert torch.equal(gx.signbit(), gx_ref.signbit()), f"{what} backward: signs of zeros differ"


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", FLOAT32_ISAS)
@pytest.mark.parametrize("layout", ("nchw", "nhwc"))
@pytest.mark.parametrize("geometry", list(VECTOR_GEOMETRIES), ids=list(VECTOR_GEOMETRIES))
def test_vector_paths_and_tails(isa, layout, geometry, dtype):
    """Every C in VECTOR_CS x every W_out in VECTOR_QS, one layout, geometry and ISA; values, indices
    (with and without return_indices) and the backward against PyTorch."""
    k, s, p, d, ceil = VECTOR_GEOMETRIES[geometry]
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    gen = torch.Generator().manual_seed(zlib.crc32(f"{layout} {geometry}".encode()))
    with forced_isa(isa):
        for c in VECTOR_CS:
            for q in VECTOR_QS:
                h = _input_width(3, k[0], s[0], p[0], d[0]) + 1
                w = _input_width(q, k[1], s[1], p[1], d[1])
                kind = ("ties", "special", "neginf")[(c + q) % 3]
                x = _fill_values(torch.empty(2, c, h, w, dtype=dtype).contiguous(memory_format=fmt), kind, gen)
                _compare_pool(x, VECTOR_GEOMETRIES[geometry], fmt, f"{isa} {layout} {geometry} C={c} W_out={q} {kind}")


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", FLOAT32_ISAS)
@pytest.mark.parametrize("layout", ("nchw", "nhwc"))
def test_special_values_at_lane_boundaries(isa, layout, dtype):
    """A NaN, an -inf run and a tie placed at each lane boundary of both vector widths (8, 16), along
    the channels (channels_last) and along the output columns (NCHW, strides 1 and 2)."""
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    with forced_isa(isa):
        for stride in (1, 2):
            c, h, w = 40, 5, 2 * 40 + 3
            x = torch.zeros(1, c, h, w, dtype=dtype)  # all ties: the first tap must win
            for b in (7, 8, 9, 15, 16, 17, 31, 32, 33):
                col = stride * b  # the input column under output column b's first tap
                x[0, b, 1, col + 1] = float("nan")    # channel boundary b, and column boundary
                x[0, b, 2, col] = float("nan")        # a later NaN in the same window wins
                x[0, (b + 3) % c, :, col:col + 3] = float("-inf")  # all -inf windows
                x[0, (b + 5) % c, 1, col + 1] = 0.0  # explicit tie with the rest
                x[0, (b + 7) % c, 2, col + 2] = 1.0  # a unique maximum in the last tap
            x = x.contiguous(memory_format=fmt)
            _compare_pool(x, ((3, 3), (stride, stride), (1, 1), (1, 1), False), fmt, f"{isa} {layout} s{stride}")


NAN_BITS = {torch.float32: (0x7FC00000, 0x7FC00001), torch.bfloat16: (0x7FC0, 0x7FC1)}


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", FLOAT32_ISAS)
def test_shared_row_passes_keep_the_reference_order(isa, dtype):
    """NCHW windows overlapping along the rows (each input row's pass shared by output rows, the
    rows-first order): NaNs of distinct payloads (the last one in row-major window order wins) in
    some rows only, so that rows with and without NaN meet in one window; +inf and -inf in one row;
    single planes split into bands of rows between the threads; padded first columns whose real
    taps are all -inf. Values bit for bit against the scalar reference, winners against PyTorch."""
    gen = torch.Generator().manual_seed(13)
    nan_a, nan_b = NAN_BITS[dtype]
    geometries = (((3, 3), (2, 2), (1, 1), (1, 1), False), ((3, 3), (1, 1), (1, 1), (1, 1), False),
                  ((4, 3), (2, 2), (2, 1), (1, 1), True), ((2, 5), (1, 1), (0, 2), (1, 1), True))
    for n, c, h, w in ((1, 1, 40, 37), (2, 3, 17, 70), (1, 2, 9, 8), (1, 2, 9, 32)):
        x = torch.randn(n, c, h, w, generator=gen).to(dtype)
        bits = x.view(BITS[dtype])
        rows = torch.randperm(h, generator=gen)[: max(1, h // 4)]
        for r in rows.tolist():  # two NaNs of distinct payloads near each other in row r
            col = int(torch.randint(0, w - 1, (1,), generator=gen))
            bits[..., r, col] = nan_a
            bits[..., r, col + 1] = nan_b
        x[..., h // 2, 0] = float("inf")  # +inf and -inf in one row: its sum is NaN
        x[..., h // 2, -1] = float("-inf")
        x[..., :, :2] = float("-inf")  # padded first windows whose real taps are all -inf
        bits[..., 1, -1] = nan_b  # the last column, past the first loads of the last vector (w = 32)
        for geometry in geometries:
            with forced_isa("scalar"):
                y_ref = CF.max_pool2d(x, *geometry)
            _, idx_torch = F.max_pool2d(x, *geometry, return_indices=True)
            with forced_isa(isa):
                y, idx = CF.max_pool2d(x, *geometry, return_indices=True)
                y_values = CF.max_pool2d(x, *geometry)
            what = f"{isa} {tuple(x.shape)} {geometry}"
            assert torch.equal(y.view(BITS[dtype]), y_ref.view(BITS[dtype])), what
            assert torch.equal(y_values.view(BITS[dtype]), y_ref.view(BITS[dtype])), what
            assert torch.equal(idx, idx_torch), what
            # the training path's taps name the same winners: route a gradient through them
            xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
            g = torch.randn(y.shape, generator=gen).to(dtype)
            with forced_isa(isa):
                (gx,) = torch.autograd.grad(CF.max_pool2d(xa, *geometry), xa, g)
            (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, *geometry), xb, g)
            if dtype == torch.float32:
                torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6, msg=lambda m: f"{what}: {m}")
            else:
                assert torch.equal(gx != 0, gx_ref != 0), what


@pytest.mark.parametrize("isa", FLOAT32_ISAS)
def test_disjoint_two_column_windows_on_long_rows(isa):
    """float32 NCHW windows 2 columns wide and apart that do not overlap (VGG's 2x2/2), rows of 48+
    outputs: the backward writing each dx row once. Odd widths leave a column under no window;
    strides past the kernel leave rows under none; tails of every length on both vector widths."""
    gen = torch.Generator().manual_seed(11)
    with forced_isa(isa):
        for q in (48, 53, 64, 71):
            for extra_w in (0, 1):
                for kh, sh in ((2, 2), (1, 1), (3, 4)):
                    x = torch.empty(2, 3, 4 * sh + 1, 2 * q + extra_w)
                    x = _fill_values(x, ("ties", "special", "neginf")[(q + kh) % 3], gen)
                    geometry = ((kh, 2), (sh, 2), (0, 0), (1, 1), False)
                    what = f"{isa} W_out={q} +{extra_w} k{kh}s{sh}"
                    _compare_pool(x, geometry, torch.contiguous_format, what)  # backward from taps
                    g = torch.randn(F.max_pool2d(x, *geometry).shape, generator=gen)
                    g[..., ::3] = -0.0
                    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
                    (gx,) = torch.autograd.grad(CF.max_pool2d(xa, *geometry, return_indices=True)[0], xa, g)
                    (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, *geometry), xb, g)
                    assert torch.equal(gx, gx_ref) and torch.equal(gx.signbit(), gx_ref.signbit()), what


@pytest.mark.parametrize("isa", FLOAT32_ISAS)
def test_stem_windows_on_long_rows_sum_in_pytorchs_order(isa):
    """float32 NCHW 3x3/2 windows with padding 1 on rows of 48+ outputs (the ResNet stem): the
    backward that sums the overlaps in registers must give PyTorch's bits, from taps and from
    indices. Ties put several windows' winners on shared rows and columns; big and tiny gradients
    make the order of additions show."""
    gen = torch.Generator().manual_seed(12)
    with forced_isa(isa):
        for q, p in ((48, 3), (53, 4), (64, 1), (71, 5)):
            for kind in ("ties", "special", "neginf"):
                x = _fill_values(torch.empty(2, 3, 2 * p, 2 * q), kind, gen)
                _compare_pool(x, ((3, 3), (2, 2), (1, 1), (1, 1), False), torch.contiguous_format, f"{isa} {q} {kind}")
                y_ref = F.max_pool2d(x, 3, 2, 1)
                g = torch.randint(-1, 2, y_ref.shape, generator=gen) * 1e7 + torch.randn(y_ref.shape, generator=gen)
                g[..., ::3] = -0.0
                for return_indices in (False, True):
                    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
                    y = CF.max_pool2d(xa, 3, 2, 1, return_indices=return_indices)
                    (gx,) = torch.autograd.grad(y[0] if return_indices else y, xa, g)
                    (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, 3, 2, 1), xb, g)
                    assert torch.equal(gx, gx_ref) and torch.equal(gx.signbit(), gx_ref.signbit()), (isa, q, kind)


@pytest.mark.parametrize("isa", FLOAT32_ISAS)
def test_gradient_layout_differs_from_input(isa):
    """grad_output in another memory format than the input (the kernels take strided dy, or fall
    back to the reference), including a non-dense one."""
    with forced_isa(isa):
        for fmt in (torch.contiguous_format, torch.channels_last):
            for g_layout in ("contiguous", "channels_last", "strided"):
                x = _fill_values(torch.empty(2, 19, 23, 37).contiguous(memory_format=fmt), "special",
                                 torch.Generator().manual_seed(3))
                args = ((3, 3), (2, 2), (1, 1), (1, 1), False)
                y_ref = F.max_pool2d(x, *args)
                g = make_tensor(tuple(y_ref.shape), torch.float32, g_layout, torch.Generator().manual_seed(4))
                xa = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
                xb = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
                (gx,) = torch.autograd.grad(CF.max_pool2d(xa, *args), xa, g)
                (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, *args), xb, g)
                torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("isa", FLOAT32_ISAS)
def test_window_missing_every_input_column(isa):
    """W = 1 with dilation 2 and padding 1: the column taps are -1 and 1, both outside. The index
    (reference formula) then names an in-plane pixel outside the window, and PyTorch's backward
    routes that window's gradient there: so must ours, in both layouts."""
    args = ((2, 2), (1, 1), (0, 1), (1, 2), False)
    with forced_isa(isa):
        for fmt in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(2, 17, 4, 1).contiguous(memory_format=fmt)
            y, i = CF.max_pool2d(x, *args, return_indices=True)
            y_ref, i_ref = F.max_pool2d(x, *args, return_indices=True)
            assert torch.equal(y, y_ref) and torch.equal(i, i_ref)
            assert (i_ref < 4).all() and torch.isinf(y_ref).all()
            g = torch.randn(y_ref.shape).contiguous(memory_format=fmt)
            xa, xb = (x.detach().clone(memory_format=torch.preserve_format).requires_grad_() for _ in range(2))
            (gx,) = torch.autograd.grad(CF.max_pool2d(xa, *args), xa, g)
            (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, *args), xb, g)
            assert torch.equal(gx, gx_ref)


def test_hand_written_kernels_are_selected():
    from cnnkernels import _C
    for isa, lanes in (("avx2", 8), ("avx512", 16)):
        with forced_isa(isa):
            for dt in ("f32", "bf16"):
                assert _C.cpu_kernel_name("max_pool2d_fwd", dt) == f"max_pool2d_fwd_nchw+nhwc_{dt}__{isa}_{lanes}"
                assert _C.cpu_kernel_name("max_pool2d_bwd", dt) == f"max_pool2d_bwd_nchw+nhwc_{dt}__{isa}_{lanes}"
