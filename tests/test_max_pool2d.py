"""max_pool2d forward and backward against PyTorch: values and indices exactly, NaN and tie rules,
ceil_mode, dilation, layouts, and every forced CPU ISA."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import cnnkernels.functional as CF
from conftest import forced_isa, make_tensor

LAYOUTS = ("contiguous", "channels_last", "strided")
PATHS = [(torch.float32, "scalar"), (torch.float32, "avx2"), (torch.float32, "avx512"),
         (torch.float64, None), (torch.bfloat16, None)]


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
    xa = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    xb = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    (gx,) = torch.autograd.grad(CF.max_pool2d(xa, *args), xa, g)
    (gx_ref,) = torch.autograd.grad(F.max_pool2d(xb, *args), xb, g)
    # Sums of at most ceil(k/s)^2 terms: in bfloat16 we accumulate in float and round once, so the
    # result may differ from PyTorch's by a rounding.
    tol = 0 if dtype != torch.bfloat16 else 1e-2
    torch.testing.assert_close(gx, gx_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,isa", PATHS, ids=[f"{str(d)[6:]}-{i or 'ref'}" for d, i in PATHS])
@given(cfg=pool_configs())
def test_max_pool2d_matches_torch(dtype, isa, cfg):
    if isa is None:
        check_against_torch(cfg, dtype)
    else:
        with forced_isa(isa):
            check_against_torch(cfg, dtype)


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
