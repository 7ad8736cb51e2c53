"""conv2d forward and backward against PyTorch: values (calibrated tolerance against a float64
result), memory formats, gradients, on random shapes, layouts and every forced CPU ISA."""
import contextlib
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.nn.modules.utils import _pair

import cnnkernels.functional as CF
from cnnkernels import _C
from conftest import assert_calibrated, forced_bf16_dot, forced_isa, make_tensor

LAYOUTS = ("contiguous", "channels_last", "strided")
# (dtype, isa): float32 and bfloat16 run on every ISA's kernels; float64 has one path.
PATHS = [(torch.float32, "scalar"), (torch.float32, "avx2"), (torch.float32, "avx512"),
         (torch.float64, None), (torch.bfloat16, "scalar"), (torch.bfloat16, "avx2"), (torch.bfloat16, "avx512")]
# The dtypes of the SIMD engines (bfloat16: widened to float when packed, float accumulation, one
# rounding per result). Their tolerance is the usual one: assert_calibrated against PyTorch's own
# bfloat16 error, which is at least the half ulp of that final rounding.
SIMD_DTYPES = (torch.float32, torch.bfloat16)


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    # The padded input must hold the dilated kernel.
    h = max(1, dilation[0] * (r - 1) + 1 - 2 * padding[0]) + draw(st.integers(0, 6))
    w = max(1, dilation[1] * (s - 1) + 1 - 2 * padding[1]) + draw(st.integers(0, 6))
    return dict(
        n=draw(st.integers(1, 3)), c=cg * groups, k=kg * groups, h=h, w=w, r=r, s=s, groups=groups,
        stride=stride, padding=padding, dilation=dilation, bias=draw(st.booleans()),
        x_layout=draw(st.sampled_from(LAYOUTS)), w_layout=draw(st.sampled_from(LAYOUTS)),
        g_layout=draw(st.sampled_from(LAYOUTS)), seed=draw(st.integers(0, 2**31 - 1)),
    )


@contextlib.contextmanager
def torch_without_onednn():
    """PyTorch's own (non-oneDNN) CPU convolution. Seen 2026-11-25 with torch 2.14.1: oneDNN's
    brgemm convolution segfaults, now and then, on some of these odd shapes (stride 3, padding
    3, dilation 3, channels_last weight), even with cnnkernels out of the process's calls."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def run_conv(fn, x, w, b, cfg, grad_out):
    """Forward and backward of fn on fresh leaves (views of the same storage, so that a sliced
    layout reaches the ops as a slice: a clone would make it dense); returns (y, dx, dw, db)."""
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = None if b is None else b.detach().clone().requires_grad_()
    y = fn(x, w, b, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    y.backward(grad_out)
    return y.detach(), x.grad, w.grad, (None if b is None else b.grad)


def check_against_torch(cfg, dtype):
    gen = torch.Generator().manual_seed(cfg["seed"])
    x = make_tensor((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dtype, cfg["x_layout"], gen)
    w = make_tensor((cfg["k"], cfg["c"] // cfg["groups"], cfg["r"], cfg["s"]), dtype, cfg["w_layout"], gen)
    b = make_tensor((cfg["k"],), dtype, "contiguous", gen) if cfg["bias"] else None
    with torch_without_onednn():
        y_shape = F.conv2d(x.float(), w.float(), None, cfg["stride"], cfg["padding"], cfg["dilation"],
                           cfg["groups"]).shape
    g = make_tensor(tuple(y_shape), dtype, cfg["g_layout"], gen)

    ours = run_conv(CF.conv2d, x, w, b, cfg, g)
    with torch_without_onednn():
        theirs = run_conv(F.conv2d, x, w, b, cfg, g)
        ref64 = run_conv(F.conv2d, x.double(), w.double(), None if b is None else b.double(), cfg, g.double())
    # Products summed per element of each result.
    n_pixels = y_shape[0] * y_shape[2] * y_shape[3]
    taps = cfg["r"] * cfg["s"]
    terms = (cfg["c"] // cfg["groups"] * taps, cfg["k"] // cfg["groups"] * taps, n_pixels, n_pixels)
    for name, o, t, r, n_terms in zip(("output", "grad_input", "grad_weight", "grad_bias"), ours, theirs, ref64, terms):
        if o is None:
            assert t is None
            continue
        assert_calibrated(o, t, r, f"{name} {cfg}", n_terms)
    y, y_torch = ours[0], theirs[0]
    for fmt in (torch.contiguous_format, torch.channels_last):
        assert y.is_contiguous(memory_format=fmt) == y_torch.is_contiguous(memory_format=fmt), f"memory format {cfg}"


@pytest.mark.parametrize("dtype,isa", PATHS, ids=[f"{str(d)[6:]}-{i or 'ref'}" for d, i in PATHS])
@given(cfg=conv_configs())
def test_conv2d_matches_torch(dtype, isa, cfg):
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@st.composite
def wide_conv_configs(draw):
    """Channel counts that reach the direct (SIMD) engine: >= 8 output channels per group, blocks
    of 16/32/48/64 lanes with tails (48: the 8 x 3 tile of 96 and 144), 6- to 14-pixel row tiles
    with tails, stride 1 for its dgrad."""
    cfg = draw(conv_configs())
    groups = draw(st.sampled_from([1, 1, 2]))
    kg = draw(st.one_of(st.integers(8, 80), st.sampled_from([48, 96, 144])))
    cfg.update(groups=groups, c=groups * draw(st.integers(1, 40)), k=groups * kg,
               n=draw(st.integers(1, 2)), w=cfg["w"] + draw(st.integers(0, 16)))
    if draw(st.booleans()):
        cfg.update(stride=(1, 1))
    return cfg


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@given(cfg=wide_conv_configs())
def test_direct_engine_matches_torch(isa, dtype, cfg):
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("mode", ["on", "off", "amx", "auto"])
@given(cfg=wide_conv_configs())
def test_bfloat16_engines_match_torch(mode, cfg):
    """On AVX-512, bfloat16 convolutions run the vdpbf16ps engine, the float engine or AMX tiles
    (set_bf16_dot; "auto" picks by what the host has, measured speed and layer size): each matches
    PyTorch. AMX takes one-group layers of 32k input channels: the channel counts are drawn so."""
    if mode == "amx":
        cfg.update(groups=1, c=32 * (1 + cfg["c"] % 3))
    with forced_isa("avx512"), forced_bf16_dot(mode):
        check_against_torch(cfg, torch.bfloat16)


def assert_bfloat16_engines_agree(result, baseline):
    """Two engines' bfloat16 results (float sums in another order, each rounded once): every element
    within one bfloat16 ulp of the baseline's, and fewer than 5% differing at all. A sum that
    cancels to near zero shows its float32 rounding errors: there 2^-20 of the largest magnitude."""
    ulp = torch.exp2(torch.floor(torch.log2(baseline.float().abs().clamp_min(2.0**-100))) - 7)
    ulp = ulp.clamp_min(baseline.float().abs().max().item() * 2.0**-20)
    diff = (result.float() - baseline.float()).abs()
    assert (diff <= ulp).all() and (diff > 0).float().mean() < 0.05


@pytest.mark.parametrize("x_layout,g_layout", [("channels_last", "channels_last"), ("contiguous", "contiguous"),
                                               ("channels_last", "contiguous"), ("strided", "channels_last")])
@pytest.mark.parametrize("n,c,k,h,w,r,stride,padding,dilation,groups", [
    (1, 64, 64, 9, 13, 3, 1, 1, 1, 1),      # rows of 13 read as rows of 15: A tiles in place
    (2, 32, 48, 8, 8, 1, 1, 0, 1, 1),       # unpadded 1x1: whole A tiles in place; 48 = 32 + a 16 tail
    (1, 96, 8, 5, 37, 3, 1, 1, 1, 1),       # 8 output channels (one partial half), 37-pixel rows
    (1, 32, 40, 11, 11, 3, 2, 1, 1, 1),     # stride 2
    (1, 64, 24, 12, 12, 3, 1, 2, 2, 1),     # dilation 2
    (3, 32, 33, 7, 7, 5, 1, 2, 1, 1),       # 33 = 32 + 1; 5x5
    (1, 512, 64, 7, 7, 3, 1, 1, 1, 1),      # res5-like: 49 pixels, 32 chunks of 16 pairs
    (3, 32, 16, 3, 5, 1, 1, 0, 1, 1),       # 15-pixel images: NCHW output runs break at lane 15
    (1, 32, 64, 11, 11, 3, 2, 1, 1, 1),     # 64 output channels: the input gradient on tiles too, by
    (2, 48, 96, 9, 10, 3, 1, 1, 2, 1),      # stride phases (dx rows and columns 2 apart) or dilated
    (1, 3, 64, 30, 29, 7, 2, 3, 1, 1),      # the stem: a row's 7 taps folded into one chunk of 14 pairs;
                                            # dgrad: 4 phases x 3 folded outputs; wgrad: 7 x 3 channels
    (2, 3, 32, 17, 15, 3, 2, 1, 1, 1),      # MobileNetV2's stem, odd sizes: the last phases cut off
    (1, 2, 64, 9, 11, 3, 2, 0, 1, 1),       # 2 channels, unpadded: 8 folded outputs, 6 folded channels
    (1, 5, 16, 13, 14, 5, 3, 2, 1, 1),      # stride 3 (9 phases: not folded), 25 folded wgrad channels
    (2, 8, 40, 6, 7, 1, 1, 0, 1, 1),        # 4 pairs: one short chunk
    (2, 64, 64, 8, 9, 1, 2, 0, 1, 1),       # 1x1 /2: x read subsampled; dgrad phases without taps (zeros)
    (1, 144, 48, 6, 7, 1, 1, 0, 1, 1),      # 72 pairs in steps of 12 (MobileNetV2); dgrad 24 pairs, steps of 12
    (1, 24, 40, 7, 9, 3, 1, 1, 1, 1),       # folded rows of 36 pairs in steps of 12; dgrad 20 pairs, steps of 10
    (1, 384, 160, 32, 32, 3, 1, 1, 1, 1),   # 1.1 MB of weights, 34 pixel tiles: blocks in groups of 4 and 1
                                            # (dgrad: 11 and 1)
    (1, 6, 32, 9, 9, 3, 1, 1, 2, 1),        # 3 pairs, dilated (no fold): 9 taps of one short chunk
    # Grouped (16+ outputs a group):
    (2, 64, 64, 9, 14, 3, 1, 1, 1, 4),      # 16 a group: half the tiles; rows of 14 as 16 (ResNeXt 512 @14)
    (3, 128, 128, 7, 7, 3, 1, 1, 1, 4),     # 32 a group, rows of 7 as 9; tiles across images
    (1, 128, 96, 6, 6, 3, 1, 1, 1, 2),      # 64 inputs a group: two chunks; 48 outputs: two blocks
    (2, 36, 48, 8, 9, 3, 1, 1, 1, 2),       # 18 a group: 9 pairs, one short chunk; 24 outputs
    (1, 64, 64, 11, 11, 3, 2, 1, 1, 4),     # stride 2: A tiles copied; the input gradient by phases
    (2, 64, 32, 1, 12, 3, 1, 1, 1, 2),      # one output row
    (1, 64, 64, 5, 5, 5, 1, 2, 1, 4),       # rows of 5 would be 9: copied instead (over a quarter wasted)
    # Few channels a group, bundled into groups of 16 with block-diagonal weights:
    (2, 64, 64, 9, 14, 3, 1, 1, 1, 8),      # 8 a group: bundles of 2
    (1, 64, 64, 10, 10, 3, 2, 1, 1, 16),    # 4 a group at stride 2: bundles of 4
    (1, 32, 32, 6, 7, 3, 1, 1, 1, 16),      # 2 a group: bundles of 8
    (1, 48, 48, 6, 6, 3, 1, 1, 1, 6),       # 8 a group, 6 groups: 3 bundles
    (1, 40, 40, 5, 5, 3, 1, 1, 1, 5),       # 8 a group, 5 groups: no bundles (the other engines)
    (1, 64, 64, 11, 10, 3, 2, 1, 1, 4),     # 16 a group at stride 2: the forward bundles pairs into 32
])
def test_amx_tiles_match_torch(x_layout, g_layout, n, c, k, h, w, r, stride, padding, dilation, groups):
    """The AMX tiles (32 pixels x 32 channels per item, A tiles in place or copied, NCHW or
    channels-last output, partial pixel tiles and channel halves; one group: the forward where C is
    a multiple of 32, the input gradient where K is; grouped: 16+ outputs a group, or 2-8 bundled
    into 16; the weight gradient of one group, or of 16 or 32 a group) against PyTorch, with bias,
    and the forward against the vdpbf16ps engine: within one bfloat16 ulp, and rarely that. Rows
    padded by up to a quarter run as longer rows whose A tiles load in place."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=r, groups=groups, stride=(stride, stride), padding=(padding, padding),
               dilation=(dilation, dilation), bias=True, x_layout=x_layout, w_layout="contiguous",
               g_layout=g_layout, seed=n + c + k + h + w)
    with forced_isa("avx512"), forced_bf16_dot("amx"):
        check_against_torch(cfg, torch.bfloat16)
        assert "avx512amx" in _C.cpu_kernel_name("conv2d_fprop", "bf16")
        gen = torch.Generator().manual_seed(3)
        x = make_tensor((n, c, h, w), torch.bfloat16, x_layout, gen)
        wt = make_tensor((k, c // groups, r, r), torch.bfloat16, "contiguous", gen)
        b = make_tensor((k,), torch.bfloat16, "contiguous", gen)
        args = ((stride, stride), (padding, padding), (dilation, dilation), groups)
        amx = CF.conv2d(x, wt, b, *args)
    with forced_isa("avx512"), forced_bf16_dot("on"):
        dot = CF.conv2d(x, wt, b, *args)
    assert_bfloat16_engines_agree(amx, dot)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,k,h,r,stride,groups", [
    (2, 16, 256, 64, 1, 1, 1),      # 1x1: 8 chunks of 512 pairs, a split each
    (1, 32, 320, 57, 3, 1, 1),      # odd rows (a last pair's zero half); chunks of 400, the last one of 64
    (8, 3, 64, 130, 7, 2, 1),       # the stem's folded 21 channels: 17 chunks of 1024 in 16 splits
    (2, 256, 256, 64, 3, 1, 8),     # 32 a group: a channel block meets its own k block
    (1, 144, 24, 72, 1, 1, 1),      # 0.3 MB, but 5 items for by_taps (MobileNetV2's 144 -> 24): 3 chunks
])
def test_amx_weight_grad_by_chunks(layout, n, c, k, h, r, stride, groups):
    """Weight gradients whose dy, transposed, exceeds 2 MB run by chunks of pairs (AmxWgrad::by_chunks)
    whose sums go through 16 fixed splits: the same bits on 1, 2 and 3 threads, and within a bfloat16
    ulp of the float64 result (the float32 sums' error is far below that; PyTorch's own bfloat16
    error over so many terms would allow a missing chunk)."""
    gen = torch.Generator().manual_seed(c + k + h)
    pad = r // 2
    x = make_tensor((n, c, h, h), torch.bfloat16, layout, gen)
    p = (h + 2 * pad - r) // stride + 1
    pairs, k_pad = n * p * ((p + 1) // 2), (k + 31) // 32 * 32
    # by_chunks: Kpad x Jpad 32-bit pairs over 2 MB, or 2048+ pairs and under 16 items for by_taps
    # (here a 1x1's channel blocks x k blocks); and 2+ splits whose sums fit in those pairs' bytes
    few_items = r == 1 and groups == 1 and (c + 31) // 32 * (k_pad // 32) < 16 and pairs >= 2048
    assert k_pad * pairs * 4 > 2 << 20 or few_items
    folded = groups == 1 and r > 1 and c * r <= 32  # (amx_wgrad_folds)
    taps, channels = (r, c * r) if folded else (r * r, c)
    j_pad = math.ceil(pairs / 16) * 16
    chunk = min(1024, max(128, (512 << 10) // (k_pad * 4) // 16 * 16))
    split_sums = taps * math.ceil(channels / 32) * (1 if groups > 1 else k_pad // 32) * 32 * 32 * 4
    assert min(16, math.ceil(j_pad / chunk), k_pad * j_pad * 4 // split_sums) >= 2
    g = make_tensor((n, k, p, p), torch.bfloat16, layout, gen)
    args = ([k, c // groups, r, r], [stride, stride], [pad, pad], [1, 1], groups)
    with forced_isa("avx512"), forced_bf16_dot("amx"):
        three = weight_grad_on_threads(3, g, x, args)
        check_weight_grad_on_one_and_two_threads(g, x, args, f"amx wgrad by chunks {c} -> {k} @{h}", n * p * p)
        assert torch.equal(torch.ops.cnnkernels.conv2d_weight_grad(g, x, *args), three)
    with torch_without_onednn():
        ref64 = torch.ops.aten.convolution_backward(g.double(), x.double(), torch.zeros(args[0], dtype=torch.double),
                                                    None, *args[1:4], False, [0, 0], groups, [False, True, False])[1]
    assert_bfloat16_engines_agree(three, ref64.bfloat16())


@pytest.mark.parametrize("x_layout,w_layout", [("contiguous", "contiguous"), ("channels_last", "channels_last"),
                                               ("strided", "contiguous")])
@pytest.mark.parametrize("n,c,k,h,w,r,s,stride,padding,dilation", [
    (1, 3, 64, 30, 29, 7, 7, 2, 3, 1),      # the stem: a row's 21 elements as 11 pairs, one past the run
    (2, 3, 24, 17, 16, 3, 3, 2, 1, 1),      # 9 elements: 5 pairs; even W, a 24-channel (half) tile
    (1, 5, 40, 13, 20, 4, 2, (2, 2), 0, 1),  # an even run (10 elements), unpadded
    (1, 1, 16, 9, 12, 2, 5, (1, 2), 2, (2, 1)),  # one channel, rows dilated
    (2, 3, 32, 12, 11, 3, 3, 1, 1, 1),      # stride 1: C odd, pairs padded per pixel (no dense packing)
])
def test_bfloat16_odd_channels_dense_pairs(x_layout, w_layout, n, c, k, h, w, r, s, stride, padding, dilation):
    """The vdpbf16ps engine packs activations of an odd channel count densely where every window
    row starts on a whole pair (stride_w C even; conv2d_fprop_dense_pairs): against PyTorch with
    bias and gradients, and the forward within one bfloat16 ulp of the float engine."""
    pair = lambda v: v if isinstance(v, tuple) else (v, v)
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=s, groups=1, stride=pair(stride), padding=pair(padding),
               dilation=pair(dilation), bias=True, x_layout=x_layout, w_layout=w_layout, g_layout=x_layout, seed=5)
    with forced_isa("avx512"), forced_bf16_dot("on"):
        check_against_torch(cfg, torch.bfloat16)
        gen = torch.Generator().manual_seed(7)
        x = make_tensor((n, c, h, w), torch.bfloat16, x_layout, gen)
        wt = make_tensor((k, c, r, s), torch.bfloat16, w_layout, gen)
        b = make_tensor((k,), torch.bfloat16, "contiguous", gen)
        args = (cfg["stride"], cfg["padding"], cfg["dilation"], 1)
        dot = CF.conv2d(x, wt, b, *args)
    with forced_isa("avx512"), forced_bf16_dot("off"):
        wide = CF.conv2d(x, wt, b, *args)
    assert_bfloat16_engines_agree(dot, wide)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("hw", [(6, 8), (16, 12)], ids=["48px", "192px"])
def test_bfloat16_auto_engine_choice(layout, hw):
    """set_bf16_dot("auto") runs AMX tiles where the host has them and the layer suits them, else
    the vdpbf16ps engine where it measured at least as fast as FMAs (bf16_dot_rate_ratio() >= 1),
    else the float engine, except below 128 output pixels (N P Q), where the dot engine's smaller
    weight packing wins: the results are bit for bit those of the engine the rule names, for the
    forward and both gradients."""
    if not _C.host_has_avx512_bf16():
        pytest.skip("this CPU has no AVX512-BF16")
    gen = torch.Generator().manual_seed(11)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    h, w = hw
    x = torch.randn(2, 96, h, w, generator=gen).bfloat16().contiguous(memory_format=fmt)
    wt = torch.randn(34, 96, 3, 3, generator=gen).bfloat16()
    g = torch.randn(2, 34, h, w, generator=gen).bfloat16().contiguous(memory_format=fmt)
    cfg = dict(stride=1, padding=1, dilation=1, groups=1)
    amx = _C.host_can_run_amx_bf16()
    with forced_isa("avx512"):
        runs = {}
        for mode in ("on", "off", "auto") + (("amx",) if amx else ()):
            with forced_bf16_dot(mode):
                runs[mode] = run_conv(CF.conv2d, x, wt, None, cfg, g)[:3]
    # The engines must differ somewhere for the comparison to say which one ran.
    assert any(not torch.equal(a, b) for a, b in zip(runs["on"], runs["off"]))
    dot = "on" if _C.bf16_dot_rate_ratio() >= 1.0 or 2 * h * w < 128 else "off"
    # With AMX: the forward (96 input channels) and the weight gradient on tiles; the input
    # gradient's 34 channels (17 pairs) do not split into steps of 8-16 pairs, so it follows the rule.
    expect = (runs["amx" if amx else dot][0], runs[dot][1], runs["amx" if amx else dot][2])
    if amx:  # (the weight gradients' few terms may round alike in both engines: not asserted apart)
        assert not torch.equal(runs["amx"][0], runs[dot][0])
    for name, got, want in zip(("y", "dx", "dw"), runs["auto"], expect):
        assert torch.equal(got, want), name


@st.composite
def depthwise_configs(draw):
    """groups == C_in == C_out (MobileNet's depthwise layers): channel counts around the vector
    widths (8 and 16 lanes) so both the in-place and the padded-channel paths run."""
    cfg = draw(conv_configs())
    c = draw(st.sampled_from([2, 3, 8, 15, 16, 17, 32, 40]))
    cfg.update(groups=c, c=c, k=c, w=cfg["w"] + draw(st.integers(0, 9)))
    return cfg


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@given(cfg=depthwise_configs())
def test_depthwise_matches_torch(isa, dtype, cfg):
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c,h,w,r,s,stride,padding,dilation", [
    (32, 13, 14, 3, 3, (2, 2), (1, 1), (1, 1)),   # MobileNet's 3 x 3 /2: phases of 2 x 2, 2 x 1, 1 x 1 taps
    (20, 12, 15, 5, 5, (2, 2), (2, 2), (1, 1)),   # EfficientNet's 5 x 5 /2; padded channels
    (16, 14, 13, 3, 3, (3, 3), (2, 2), (2, 2)),   # stride 3, dilation 2: taps 3 apart, bases 2 apart
    (17, 10, 11, 4, 4, (2, 2), (1, 1), (1, 1)),   # an even filter
    (16, 9, 10, 2, 2, (3, 3), (0, 0), (1, 1)),    # stride 3 past a 2-tap filter: phases no tap reaches
    (16, 8, 9, 3, 3, (2, 2), (3, 3), (1, 1)),     # padding past the reach: no interior run
    (24, 15, 9, 7, 1, (2, 1), (3, 0), (1, 1)),    # row stride only
    (16, 15, 14, 7, 7, (2, 2), (3, 3), (1, 1)),   # 7 x 7 /2: phases of 16 taps, one forward each
    (20, 11, 13, 7, 7, (2, 2), (2, 7), (1, 1)),   # 7 x 7 /2, columns padded past the reach: 16-tap phases per pixel
    (16, 6, 23, 3, 5, (1, 3), (1, 2), (1, 1)),    # column stride 3 only, 5 columns: phases of 2 and 1 taps
])
def test_depthwise_dgrad_strided(isa, dtype, layout, c, h, w, r, s, stride, padding, dilation):
    """Strided depthwise input gradients: per dx row, each column stride phase's interior as one
    depthwise_row and the edges per pixel (depthwise_dgrad's row loop; NCHW dx through scratch
    unless a planes kernel takes it), or, where a phase holds 10+ taps, one forward per stride
    phase into channels_last dx (depthwise_dgrad_phases): reversed sub-filters, dilated steps,
    tapless phases zeroed, runs cut where a tap leaves dy."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=stride, padding=padding, dilation=dilation,
               bias=False, x_layout=layout, w_layout="contiguous", g_layout=layout, seed=c + h * w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c,h,w,r,s,stride,padding,dilation", [
    (20, 9, 31, 7, 7, 1, 3, 1),     # ConvNeXt's 7 x 7: padded channels, a shifted last pixel block
    (16, 6, 5, 7, 7, 1, 3, 1),      # rows shorter than a block: its extra pixels not stored
    (33, 11, 17, 5, 5, 2, 2, 1),    # EfficientNet's 5 x 5 stride 2 (the input gradient per pixel)
    (8, 12, 23, 5, 5, 1, 4, 2),     # dilated, padding past the filter's reach
    (24, 5, 40, 1, 11, 1, 5, 1),    # one filter row of 11 taps
    (200, 20, 9, 7, 7, 1, 3, 1),    # 3 bands of output rows x blocks of 3 channel vectors (AVX-512)
    (40, 17, 61, 7, 7, 3, 3, 1),    # column stride 3: the run-time stride tile
    (12, 10, 30, 3, 7, 1, 1, 1),    # 3 rows of 7 taps: the sliding rows (5 and 7 taps) with R != S
    (12, 8, 13, 5, 5, 2, 1, 1),     # stride 2 sliding rows, 6 output columns (AVX-512's half-width tile)
    (8, 9, 5, 7, 7, 2, 3, 1),       # 3 output columns: AVX2's half-width tile
    (24, 7, 7, 7, 7, 1, 3, 1),      # ConvNeXt's rows of 7 (NCHW on AVX2: here, not the plane tiles)
    (20, 9, 6, 5, 5, 1, 2, 1),      # 5 x 5 on rows of 6, a part vector of channels
])
def test_depthwise_large_filters(isa, dtype, layout, c, h, w, r, s, stride, padding, dilation):
    """Depthwise filters of more than 9 taps (depthwise_fprop_vector_rows: bands of output rows
    times blocks of channel vectors, their input rows zero-padded into rows of channel vectors,
    tiles of consecutive output pixels), whose stride-1 input gradient is the same forward with
    the filter rotated; column strides 1, 2 and 3, every layout, tail and dtype."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=(stride, stride), padding=(padding, padding),
               dilation=(dilation, dilation), bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout,
               seed=c * w + r)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", ["channels_last", "strided"])
@pytest.mark.parametrize("n,c,h,w,padding", [
    (2, 16, 12, 20, 1),   # pairs of interior rows; 18 interior columns: a last tile shifted left
    (1, 48, 9, 10, 1),    # 8 interior columns, one tile; an odd number of rows
    (3, 32, 6, 30, 0),    # no padding: every row and column interior
    (2, 24, 11, 17, 2),   # padding 2: two border rows and columns each side; a part vector of channels
])
def test_depthwise_3x3_row_pairs(isa, dtype, layout, n, c, h, w, padding):
    """Channels-last 3 x 3 stride-1 rows, two output rows per pass over the channel vectors where a
    thread holds both and their taps are all inside (depthwise_row_pair, float and bfloat16 on AVX-512), the
    others one at a time; the stride-1 input gradient runs the same forward."""
    cfg = dict(n=n, c=c, k=c, h=h, w=w, r=3, s=3, groups=c, stride=(1, 1), padding=(padding, padding),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout,
               seed=c * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("w_layout", ["contiguous", "outer_slice", "row_slice", "strided"])
@pytest.mark.parametrize("c,h,w,r,s,stride,padding,layout", [
    (40, 9, 9, 7, 7, 1, 3, "channels_last"),   # 49 taps: 6 blocks of 8 and one; a part vector (AVX-512)
    (48, 8, 30, 5, 5, 1, 2, "channels_last"),  # rows read in place, a channel vector per item
    (24, 10, 12, 3, 3, 1, 1, "channels_last"),  # the per-row path: every vector, 8 taps and one
    (24, 9, 11, 3, 3, 2, 1, "channels_last"),  # stride 2: the input gradient's per-pixel path
    (3, 10, 11, 3, 1, 1, 1, "channels_last"),  # fewer channels than a vector, 3 taps: none transposed
    (200, 6, 7, 7, 7, 1, 3, "contiguous"),     # blocks of channel vectors on both threads; NCHW flat planes
    (20, 9, 14, 7, 5, 1, 2, "contiguous"),     # NCHW plane tiles: filter columns of 7 rows
    (24, 12, 20, 3, 3, 2, 1, "contiguous"),    # NCHW plane tiles at stride 2
])
def test_depthwise_weights_packed_per_thread(isa, dtype, w_layout, c, h, w, r, s, stride, padding, layout):
    """Each thread packs the depthwise weights it reads (ThreadDepthwiseWeights: channel vectors x
    8 taps as register transposes where the taps are contiguous, in order or rotated for the
    stride-1 input gradient; element by element otherwise), zero-padding a last part vector; on
    NCHW planes, ThreadFilterColumns: a channel's taps column by column."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=(stride, stride), padding=(padding, padding),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout=w_layout, g_layout=layout, seed=c + r * w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,h,r,stride", [
    (1, 40, 14, 3, 2),    # 196 pixels in, 49 out: NCHW copies in chunks split mid-image, planes back by 8 channels
    (3, 24, 7, 3, 2),     # chunks across images (49 pixels, not a multiple of 8)
    (1, 32, 28, 7, 1),    # 28 output rows: 4 bands of 7; weight-gradient chunks of 14 rows
    (2, 48, 56, 5, 2),    # 28 output rows per image, 2 images
    (1, 16, 14, 7, 1),    # 14 output rows: 2 bands of 7
])
def test_depthwise_work_split(threads, layout, n, c, h, r, stride):
    """The depthwise work splits (output-row bands of equal rows, weight-gradient row chunks of
    equal rows, NCHW <-> channels-last copies in equal pixel chunks and planes written back by
    channel blocks) cover every element on 1, 2 and 3 threads; the weight gradient's bits do not
    depend on the thread count."""
    cfg = dict(n=n, c=c, k=c, h=h, w=h, r=r, s=r, groups=c, stride=(stride, stride), padding=(r // 2, r // 2),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout, seed=c * h + r)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        check_against_torch(cfg, torch.float32)
    finally:
        torch.set_num_threads(before)
    gen = torch.Generator().manual_seed(n * c)
    x = make_tensor((n, c, h, h), torch.float32, layout, gen)
    g = make_tensor((n, c, (h + 2 * (r // 2) - r) // stride + 1, (h + 2 * (r // 2) - r) // stride + 1), torch.float32,
                    layout, gen)
    check_weight_grad_on_one_and_two_threads(g, x, ([c, 1, r, r], [stride] * 2, [r // 2] * 2, [1, 1], c),
                                             "depthwise weight gradient", n * g.shape[2] * g.shape[3])


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channels_last_slice"])
@pytest.mark.parametrize("c,h,w,r,s,stride,padding", [
    (32, 13, 40, 5, 5, 2, 2),   # EfficientNet's 5 x 5 /2: edge tiles both sides, interior tiles between
    (48, 9, 29, 5, 5, 1, 2),    # stride 1, a last tile overlapping its neighbour
    (16, 6, 5, 5, 5, 1, 2),     # a row shorter than a tile: its extra pixels not stored
    (64, 20, 31, 7, 7, 1, 3),   # ConvNeXt's 7 x 7 on rows of 14+ outputs, 3 bands of output rows
    (32, 11, 57, 7, 7, 2, 3),   # 7 x 7 /2 (29 output columns: 7 x 7 runs in place from 28)
    (16, 7, 30, 3, 5, 1, 1),    # 3 rows of 5 taps, padding short of the filter's reach
    (16, 8, 28, 5, 5, 1, 4),    # padding past the reach: columns and rows wholly outside
    (8, 6, 3, 5, 5, 1, 2),      # 3 output columns: AVX2's half-width tile
    (32, 9, 14, 7, 7, 1, 3),    # 7 x 7 on rows of 14: bfloat16 in place, float on the vector rows
    (16, 7, 7, 7, 7, 1, 3),     # 7 x 7 on rows of 7: every tile an edge tile both sides
])
def test_depthwise_rows_in_place(isa, dtype, layout, c, h, w, r, s, stride, padding):
    """Channels-last float and bfloat16 depthwise rows of 5 and 7 taps read x in place (a
    channel vector's tile slides along each filter row, bfloat16 widened as loaded; columns
    outside the row skipped), where channels are whole vectors, pixels dense or further apart
    (a channel slice); the stride-1 input gradient too. NCHW stays on the vector rows."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=(stride, stride), padding=(padding, padding),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout,
               seed=c * w + r + stride)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,h,w,r,s,stride,padding,dilation", [
    (5, 20, 56, 7, 7, 1, (3, 3), (1, 1)),   # ConvNeXt's 7 x 7: 2-vector tiles, the last vector overlapping
    (3, 9, 40, 5, 5, 1, (2, 2), (1, 1)),    # a 2-vector tile and a single vector; a shifted last row tile
    (4, 16, 14, 7, 7, 1, (3, 3), (1, 1)),   # rows of 14: the first lanes stored (AVX-512: 14-row tiles)
    (3, 21, 30, 7, 7, 1, (3, 3), (1, 1)),   # 21 rows: AVX2's 7-row tiles
    (2, 27, 40, 5, 5, 2, (2, 2), (1, 1)),   # stride 2, 14 rows: AVX2's 7-row tiles
    (2, 5, 12, 5, 3, 1, (2, 1), (1, 1)),    # fewer output rows than a tile; 3 taps per filter row
    (3, 11, 20, 7, 9, 1, (3, 4), (1, 2)),   # dilated columns, 9 taps per filter row
    (2, 8, 18, 5, 5, 1, (5, 5), (1, 1)),    # padding past the filter's reach (the gradient elsewhere)
    (6, 12, 28, 3, 3, 1, (1, 1), (1, 1)),   # MobileNet's 3 x 3
    (4, 7, 9, 3, 1, 1, (1, 0), (1, 1)),     # 3 x 1, rows of 9 (AVX-512: the first 9 lanes)
    (4, 13, 56, 3, 3, 2, (1, 1), (1, 1)),   # stride 2, odd padding: even columns into the odd half
    (3, 11, 67, 5, 5, 2, (2, 2), (1, 1)),   # stride 2, an odd row: 32-column blocks, a scalar last one
    (2, 9, 40, 7, 7, 2, (3, 3), (1, 2)),    # stride 2, dilated columns: every tap in one half
    (2, 6, 36, 3, 5, 2, (0, 1), (1, 1)),    # stride 2, 17 output columns: two vectors overlapping
    (3, 10, 27, 5, 5, 2, (2, 2), (1, 1)),   # stride 2, 14 dx column pairs (AVX-512: part of a vector)
])
def test_depthwise_nchw_plane_tiles(isa, dtype, c, h, w, r, s, stride, padding, dilation):
    """NCHW depthwise filters of 3, 5 or 7 rows, stride 1 or 2 (depthwise_fprop_plane_tiles): each
    plane in zero-padded float rows (at stride 2 split into even and odd columns), register tiles
    of output rows x vectors of columns, last vectors and row tiles overlapping their neighbours,
    rows shorter than a vector stored lane by lane; the stride-1 input gradient is the same forward
    with the filter rotated, the stride-2 one (undilated) tiles of one dx row parity with both
    column phases interleaved (depthwise_dgrad_planes_s2_tiles; an odd width's last pair half
    stored, rows of under a vector of pairs partly stored)."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=(stride, stride), padding=padding,
               dilation=dilation, bias=True, x_layout="contiguous", w_layout="contiguous", g_layout="contiguous",
               seed=c * w + r)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,h,w,r,s,stride,padding,dilation", [
    (4, 12, 56, 3, 3, (1, 1), (1, 1), (1, 1)),  # MobileNet's 3 x 3: one group of 3 filter rows, a partial last vector
    (3, 9, 30, 5, 5, (1, 1), (2, 2), (1, 1)),   # 5 filter rows in groups (2 + 3; AVX2 1 + 2 + 2)
    (2, 10, 40, 7, 7, (1, 1), (3, 3), (1, 1)),  # 7 x 7: groups 2 + 2 + 3 (AVX2: a filter row at a time)
    (3, 13, 56, 3, 3, (2, 2), (1, 1), (1, 1)),  # stride 2: filter rows {0, 2} share x rows, {1} alone
    (2, 11, 61, 5, 5, (2, 2), (2, 2), (1, 1)),  # stride 2, an odd width: {0, 2, 4} and {1, 3}
    (2, 14, 33, 3, 3, (1, 1), (2, 2), (2, 2)),  # dilated rows (no shared x rows): row tiles and their remainder
    (2, 13, 40, 5, 3, (3, 1), (2, 1), (1, 1)),  # row stride 3: {0, 3}, {1, 4}, {2}
    (2, 9, 36, 3, 1, (1, 2), (1, 0), (1, 1)),   # one filter column, column stride 2
    (2, 8, 45, 2, 4, (2, 1), (0, 3), (1, 1)),   # an even filter, the padding at the filter's reach
    (3, 6, 14, 7, 7, (1, 1), (3, 3), (1, 1)),   # rows of 14 (AVX-512: one vector, every lane masked by column)
    (2, 5, 70, 3, 6, (1, 1), (4, 0), (1, 1)),   # padding rows past the reach: output rows with no filter row
    (2, 2, 40, 5, 5, (1, 1), (2, 2), (1, 1)),   # fewer output rows than a group: every row at the edges
])
def test_depthwise_nchw_wgrad_plane_tiles(isa, dtype, c, h, w, r, s, stride, padding, dilation):
    """NCHW depthwise weight gradient with output columns as the vector lanes
    (depthwise_wgrad_plane_tiles): filter rows that read the same x rows in groups, each x vector
    loaded once for their dy rows; the output rows the groups leave at the plane's edges, and
    filter rows without a group, in tiles of output rows; lanes past the row or over the padding
    masked out of the sums; sums over two images."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=stride, padding=padding,
               dilation=dilation, bias=False, x_layout="contiguous", w_layout="contiguous", g_layout="contiguous",
               seed=c * w + r * s)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("h,w,r,stride,padding", [(20, 40, 3, 1, 1), (15, 45, 5, 2, 2), (12, 33, 7, 1, 3)])
def test_depthwise_nchw_wgrad_rows_apart(isa, h, w, r, stride, padding):
    """float planes whose rows lie apart (views into wider tensors) are read where they are: the
    weight gradient's plane tiles step by the row stride, border vectors under their masks."""
    gen = torch.Generator().manual_seed(h * w + r)
    x = torch.randn(2, 3, h + 3, w + 9, generator=gen)[:, :, 1:h + 1, 4:w + 4]
    q = (w + 2 * padding - r) // stride + 1
    p = (h + 2 * padding - r) // stride + 1
    g = torch.randn(2, 3, p + 2, q + 5, generator=gen)[:, :, 2:, 3:3 + q]
    args = ([stride, stride], [padding, padding], [1, 1], 3)
    with forced_isa(isa):
        ours = torch.ops.cnnkernels.conv2d_weight_grad(g, x, [3, 1, r, r], *args)
    wt = torch.zeros(3, 1, r, r, dtype=torch.float64)
    ref = torch.ops.aten.convolution_backward(g.double(), x.double(), wt, None, *args[:3], False, [0, 0], 3,
                                              [False, True, False])[1]
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("special", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("h,w,r,stride,padding", [(12, 40, 3, 1, 1), (11, 41, 5, 2, 2), (9, 30, 7, 1, 3)])
def test_depthwise_nchw_wgrad_non_finite_like_summation(isa, special, h, w, r, stride, padding):
    """The NCHW depthwise weight gradient adds only the products of taps inside the input: an inf
    in dy at a border column, where a tap reads the padding, is not multiplied by a zero (a NaN);
    nor is an x inf next to the end of a row by the lanes past it. The NaN and inf pattern is
    the scalar reference's (summation over in-bounds taps)."""
    gen = torch.Generator().manual_seed(h * w + r)
    x = torch.randn(2, 3, h, w, generator=gen)
    wt = torch.randn(3, 1, r, r, generator=gen)
    g = torch.randn(2, 3, (h + 2 * padding - r) // stride + 1, (w + 2 * padding - r) // stride + 1, generator=gen)
    g[0, 0, 2, 0] = g[0, 1, 3, -1] = g[1, 2, 0, 0] = special
    x[1, 0, 4, -1] = x[1, 1, 0, 0] = special
    args = ([stride, stride], [padding, padding], [1, 1], 3)
    with forced_isa("scalar"):
        ref = torch.ops.cnnkernels.conv2d_weight_grad(g, x, list(wt.shape), *args)
    with forced_isa(isa):
        ours = torch.ops.cnnkernels.conv2d_weight_grad(g, x, list(wt.shape), *args)
    assert not ref.isfinite().all()
    assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.isinf(), ref.isinf())
    assert torch.equal(ours.isinf() & (ours > 0), ref.isinf() & (ref > 0))
    torch.testing.assert_close(ours[ref.isfinite()], ref[ref.isfinite()], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("w", [33, 80])
@pytest.mark.parametrize("r,s,stride,padding,dilation,bias", [
    (3, 3, (1, 1), (1, 1), (1, 1), True),
    (3, 3, (2, 1), (1, 1), (1, 1), False),
    (5, 5, (1, 1), (2, 2), (1, 1), True),
    (3, 3, (1, 1), (0, 2), (2, 2), False),
    (1, 7, (1, 1), (0, 3), (1, 1), True),
    (3, 3, (2, 2), (1, 1), (1, 1), True),    # column stride 2: phase rows, offsets -1..1
    (5, 5, (1, 2), (2, 1), (1, 1), False),   # offsets -1..3: both phases, shifts 0..1
    (3, 3, (2, 2), (2, 2), (2, 2), False),   # dilation 2: every tap on the even phase
])
def test_depthwise_nchw_planes(isa, dtype, w, r, s, stride, padding, dilation, bias):
    """NCHW depthwise forward with output columns as vector lanes: widths around the vector widths
    (interior vectors, the overlapping last vector, scalar border columns), row strides, column
    strides 1 and 2 (rows split into even and odd columns; the stride-2 input gradient's phases
    interleaved), dilation; the weight gradient on plane tiles likewise.
    That kernel takes rows of 96 or more columns, or of 28 or more once input and output pass
    10 MiB (stride 2: 56 or more past 8 MiB; smaller ones stay in the caches through the
    channels-last path): the rows are sized to pass 10 MiB. Stride 1 reads zero-padded row
    copies, so there every column is a vector column. (Stride-1 forwards of 3 or 5 filter rows run
    on plane tiles, depthwise_fprop_plane_tiles, and so do their input gradients; the weight
    gradients on depthwise_wgrad_plane_tiles.)"""
    c = 32
    h = int(1.5 * (10 << 20) / (c * w * dtype.itemsize * (1 + 1 / (stride[0] * stride[1])))) + 1
    cfg = dict(n=1, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=stride, padding=padding,
               dilation=dilation, bias=bias, x_layout="contiguous", w_layout="contiguous",
               g_layout="contiguous", seed=w * 100 + r)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,h,w,r,s,padding,dilation", [
    (5, 7, 7, 3, 3, (1, 1), (1, 1)),   # MobileNet's last stage (AVX-512: 4 vectors, 2 planes a tile)
    (4, 8, 8, 3, 3, (1, 1), (1, 1)),   # 64 outputs: the last vector whole (AVX-512)
    (3, 5, 5, 3, 3, (1, 1), (1, 1)),   # 2 vectors, 4 planes a tile: a partial group of planes
    (4, 6, 6, 1, 3, (0, 1), (1, 1)),   # 3 vectors, 3 planes a tile; one filter row
    (3, 4, 4, 3, 3, (1, 1), (1, 1)),   # rows of 4: AVX2's flat planes (2 vectors), AVX-512's one
    (3, 7, 7, 3, 3, (2, 2), (2, 2)),   # dilated taps: column masks two columns wide
    (3, 5, 7, 3, 3, (2, 1), (1, 1)),   # more output rows than input rows (padding past the reach)
    (3, 9, 1, 3, 1, (1, 0), (1, 1)),   # one column
    (3, 6, 3, 2, 3, (1, 1), (1, 1)),   # an even filter row count: P = H + 1
])
def test_depthwise_nchw_flat_planes(isa, dtype, c, h, w, r, s, padding, dilation):
    """Small NCHW planes (rows of half a vector or less) at stride 1 with filters of up to 9 taps
    (depthwise_fprop_flat_planes): each plane's outputs as flat lanes over a zero-padded copy,
    column padding masked out per vector and filter column, several planes a tile and the rest one
    at a time; their stride-1 input gradients are the same forward with the filter rotated."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=(1, 1), padding=padding, dilation=dilation,
               bias=True, x_layout="contiguous", w_layout="contiguous", g_layout="contiguous", seed=c * h + w + r)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,h,w,stride", [(21, 14, 14, 2), (40, 13, 13, 2), (17, 9, 13, 1), (8, 20, 19, 2)])
def test_depthwise_small_nchw_planes_transposed(isa, dtype, c, h, w, stride):
    """Small dense NCHW planes reach the channels-last depthwise kernels through 8 x 8 transposes
    over each image's flattened pixels, in chunks of 64 pixels: channel counts with a tail past the
    last 8, images whose pixel count leaves a tail in a chunk (196 = 3 x 64 + 4, 169, 117, 380), on
    the input, the output and the gradients."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=3, s=3, groups=c, stride=(stride, stride), padding=(1, 1),
               dilation=(1, 1), bias=True, x_layout="contiguous", w_layout="contiguous",
               g_layout="contiguous", seed=c * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,h,w,r,stride,padding,dilation", [
    (48, 7, 7, 3, (1, 1), (1, 1), (1, 1)),     # three vectors on AVX-512: a block of 2, then 1
    (40, 14, 11, 3, (2, 2), (1, 1), (1, 1)),   # padded channels; stride 2, an odd width
    (16, 9, 30, 3, (1, 2), (0, 2), (2, 2)),    # dilation: the edge columns check their taps
    (32, 4, 3, 3, (1, 1), (2, 1), (1, 1)),     # rows and columns with no tap-complete interior
    (24, 12, 10, 5, (1, 1), (2, 2), (1, 1)),   # 5 x 5: registers on AVX-512, per-row sums on AVX2
    (64, 40, 40, 3, (1, 1), (1, 1), (1, 1)),   # chunks of 12 rows of 40 pixels, summed in order
    (16, 9, 1, 5, (2, 2), (4, 4), (2, 2)),     # the first taps' outputs all padding: no tap-complete column
    (40, 7, 7, 7, (1, 1), (3, 3), (1, 1)),     # ConvNeXt's 7 x 7: filter rows 2 + 2 + 3 (AVX2 2 + 2 + 2 + 1)
    (17, 9, 20, (4, 7), (2, 1), (1, 3), (1, 1)),  # 4 x 7, row stride 2: filter rows 2 + 2
    (16, 6, 3, 7, (1, 1), (6, 6), (2, 2)),     # 7 columns of dilation 2 over 3: as the 5 x 5 above
])
def test_depthwise_wgrad_register_sums(isa, dtype, c, h, w, r, stride, padding, dilation):
    """The channels-last depthwise weight gradient with its tap sums in registers (3 x 3, 5 x 5 and
    7-column filters, the last in groups of filter rows): blocks of one and two channel vectors,
    padded channels, strides, dilation, the columns whose taps leave the input, chunks of rows, on
    channels-last and NCHW inputs (NCHW planes too short for the planes kernel go through the
    channels-last copy)."""
    r, s = r if isinstance(r, tuple) else (r, r)
    for layout in ("channels_last", "contiguous"):
        cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=c, stride=stride, padding=padding,
                   dilation=dilation, bias=False, x_layout=layout, w_layout="contiguous", g_layout=layout,
                   seed=c * h + w)
        with forced_isa(isa):
            check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,h,w,stride", [(3, 32, 30, 37, 2), (3, 20, 17, 26, 1), (5, 40, 9, 50, 2), (4, 8, 11, 9, 1)])
def test_nchw_output_leaves_tiles_as_transposes(isa, dtype, c, k, h, w, stride):
    """The direct engine writes an NCHW output from its channels-last tiles: 8 x 8 transposes
    where a tile's 8+ pixels run along one row (the last block overlapping), scalar stores where a
    tile wraps to the next row or channels are left past the last 8 (20, 40), or the tile is short."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=3, s=3, groups=1, stride=(stride, stride), padding=(1, 1),
               dilation=(1, 1), bias=True, x_layout="contiguous", w_layout="contiguous",
               g_layout="contiguous", seed=k * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype,bf16_dot", [(torch.float32, "auto"), (torch.bfloat16, "on"), (torch.bfloat16, "off")],
                         ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("n,c,k,h,w,r,stride", [
    (3, 5, 72, 4, 5, 3, 1),    # runs of tiles across rows and images; two blocks, the last of 8 channels
    (2, 3, 32, 17, 26, 3, 2),  # MobileNetV2's stem in small: a run's rows of 13
    (1, 16, 24, 9, 70, 1, 2),  # rows longer than a run; a block short of a vector (24 of 32)
    (2, 8, 40, 3, 3, 5, 1),    # a run longer than the whole output
])
def test_nchw_output_runs_of_tiles(isa, dtype, bf16_dot, n, c, k, h, w, r, stride):
    """The direct engine's NCHW outputs leave runs of ~48 pixels (whole tiles) of one block of
    output channels at once, through a float buffer, in stretches along each output row: runs
    that cross rows and images, the last run short, blocks short of the tile's channels; both
    bfloat16 engines."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=r, groups=1, stride=(stride, stride), padding=(r // 2, r // 2),
               dilation=(1, 1), bias=True, x_layout="contiguous", w_layout="contiguous",
               g_layout="contiguous", seed=k * h + w)
    with forced_isa(isa), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype,bf16_dot", [(torch.float32, "auto"), (torch.bfloat16, "on"), (torch.bfloat16, "off")],
                         ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("n,c,k,groups,h,w,r,stride,padding,dilation", [
    (2, 13, 16, 1, 9, 11, (3, 3), (2, 2), (1, 1), (1, 1)),   # channels past the last 8: scalar tails of the transposes
    (1, 24, 32, 1, 16, 16, (1, 1), (2, 2), (0, 0), (1, 1)),  # 1x1 /2: dense planes a power of two apart
    (2, 12, 8, 2, 10, 7, (3, 3), (3, 2), (1, 0), (1, 2)),    # grouped, stride 3 x 2, dilated columns
    (1, 8, 8, 1, 5, 4, (3, 3), (2, 2), (1, 1), (1, 1)),      # a row of 4: fewer pixels than a transpose
])
def test_strided_nchw_input_gradient_through_channels_last(isa, dtype, bf16_dot, n, c, k, groups, h, w, r,
                                                           stride, padding, dilation):
    """The direct engine's strided input gradient into an NCHW dx: its stride phases write
    channels-last scratch, transposed into dx's planes at the end (8 x 8 blocks, scalar tails)."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r[0], s=r[1], groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=False, x_layout="contiguous", w_layout="contiguous",
               g_layout="contiguous", seed=c * h + w)
    with forced_isa(isa), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("bf16_dot", ["on", "off"])
@pytest.mark.parametrize("c,k,h,w,r,stride", [
    (1, 64, 6, 128, 3, (1, 1)), (3, 20, 5, 110, 3, (1, 1)), (7, 33, 4, 96, 5, (1, 1)),
    (3, 32, 9, 200, 3, (2, 2)),  # MobileNetV2's stem: rows split into their two column phases
    (2, 20, 5, 193, 3, (1, 2)),  # odd width: the phases' lengths differ; 97 output columns
])
def test_few_input_forward_either_bfloat16_engine(bf16_dot, c, k, h, w, r, stride):
    """bfloat16 forwards of 1-7 input channels into NCHW rows of 96+ take the output-column lanes
    (conv2d_fprop_few_inputs) with the vdpbf16ps engine on as with it off; 3 x 3 filters at
    column stride 2 too, over rows split into even and odd columns."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=r, s=r, groups=1, stride=stride, padding=(r // 2, r // 2),
               dilation=(1, 1), bias=True, x_layout="contiguous", w_layout="contiguous",
               g_layout="contiguous", seed=c * k + w)
    with forced_isa("avx512"), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, torch.bfloat16)


@pytest.mark.parametrize("bf16_dot", ["on", "off"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,k,h,w,r,stride,padding", [
    (2, 3, 64, 12, 15, 3, 1, 1),  # VGG's first layer in small: odd output width (the pairs' tail)
    (2, 3, 64, 20, 22, 7, 2, 3),  # the ResNet stem: 21 folded rows of 24
    (1, 5, 40, 9, 10, 5, 1, 2),   # 5 channels, two blocks of outputs
    (1, 1, 48, 11, 11, 3, 2, 0),  # one channel, unpadded
])
def test_weight_grad_folds_few_channel_taps(bf16_dot, layout, n, c, k, h, w, r, stride, padding):
    """The weight gradient of one group with fewer channels than a tile has rows takes a filter
    row's taps as consecutive channels of one tap (folded), on the float engine and on the
    vdpbf16ps engine's pairs of output columns (an odd width's last column from the tail)."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=r, groups=1, stride=(stride, stride), padding=(padding, padding),
               dilation=(1, 1), bias=False, x_layout=layout, w_layout="contiguous", g_layout=layout,
               seed=c * k + w)
    with forced_isa("avx512"), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, torch.bfloat16)


def check_case(isa, dtype, n, c, k, h, w, r, stride=1, layout="contiguous", seed=0):
    """check_against_torch of one square-kernel, one-group, same-padding convolution with bias, x
    and dy in `layout`, on the kernels of `isa`."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=r, groups=1, stride=(stride, stride), padding=(r // 2, r // 2),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout, seed=seed)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("k,h,w", [(40, 5, 3), (40, 1, 11), (24, 1, 19), (48, 2, 7), (24, 2, 9), (40, 1, 2)])
def test_nchw_output_short_runs(isa, dtype, k, h, w):
    """NCHW outputs of tiles with fewer than 8 consecutive pixels (6-pixel tiles, short last
    tiles of 1 to 7 pixels) leave as 8 x 8 transposes with partial stores of every length."""
    check_case(isa, dtype, 1, 6, k, h, w, 3, seed=k + h * w)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,h,w,r,stride,layout", [
    (24, 8, 9, 11, 1, 1, "channels_last"), (40, 24, 13, 10, 3, 2, "contiguous"),
    (56, 40, 7, 5, 3, 1, "channels_last"), (8, 56, 12, 9, 1, 2, "channels_last"),
    (24, 24, 10, 10, 3, 2, "channels_last")])
def test_half_vector_tiles(isa, dtype, c, k, h, w, r, stride, layout):
    """AVX-512 tiles of 8 + 16 n output channels (8, 24, 40, 56), their last vector a 256-bit half
    one, in the forward (k) and the input gradient (c): stored in place (channels-last) or through
    the scratch tile (NCHW), with bias, short last tiles."""
    check_case(isa, dtype, 2, c, k, h, w, r, stride, layout, seed=c * k + h)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,h,w,stride,layout", [
    (16, 24, 17, 19, 2, "contiguous"), (20, 16, 12, 34, 2, "contiguous"), (24, 16, 11, 18, 2, "contiguous"),
    (16, 16, 9, 32, 2, "contiguous"), (8, 8, 9, 16, 2, "contiguous"), (16, 16, 10, 23, 3, "contiguous"),
    (16, 24, 9, 21, 2, "strided"), (16, 8, 9, 22, 2, "channels_last")])
def test_strided_1x1_packs_only_its_pixels(isa, dtype, c, k, h, w, stride, layout):
    """A strided, unpadded 1x1 runs as a stride-1 1x1 over x[:, :, ::stride, ::stride]. NCHW rows
    of stride 2 leave as 8 x 8 transposes of their even elements, the last block shifted onto the
    odd ones (odd and even input widths; 9 to 17 output columns); 8 output columns, channels past
    the last 8, other strides and strided views go element by element; channels_last is read in
    place. With bias, all three gradients."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=1, s=1, groups=1, stride=(stride, stride), padding=(0, 0),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous", g_layout="contiguous",
               seed=c * w + h)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("n,c,k,h,w", [(3, 20, 16, 9, 9), (2, 8, 12, 10, 13), (8, 16, 24, 14, 14),
                                       (5, 12, 9, 11, 11), (1, 10, 8, 8, 9), (3, 320, 20, 6, 7)])
def test_pixel_lanes_plane_tails(isa, dtype, n, c, k, h, w):
    """1x1 NCHW planes run with output pixels as the vector lanes, whole blocks read in place
    (float) or packed (bfloat16 channel pairs); the pixels past each image's last whole block run
    together, every image's in one set of lanes (3 to 285 of them: the narrow block tiles, AVX-512
    half vectors, several blocks), with bias, forward and input gradient. The bfloat16 forward
    also takes planes of fewer than 64 pixels with 320+ channels: every pixel in the tails."""
    check_case(isa, dtype, n, c, k, h, w, 1, seed=n * c + h * w)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("n,c,k,h,w", [(1, 320, 256, 5, 5), (2, 160, 480, 5, 6), (1, 480, 160, 7, 7)])
def test_small_planes_1x1_few_pixels(isa, dtype, n, c, k, h, w):
    """A plain 1x1 on NCHW planes with up to 64 output pixels and 256 KiB to 2 MiB of weights
    runs the pixel-lanes engine (planes row-copied, W read in place), forward and input
    gradient (W transposed) alike."""
    check_case(isa, dtype, n, c, k, h, w, 1, seed=c + k + h)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("w_layout", ["contiguous", "channels_last_slice", "strided"])
@pytest.mark.parametrize("n,c,k,h,w,layout", [
    (1, 340, 201, 7, 7, "contiguous"), (2, 200, 340, 7, 7, "contiguous"), (1, 403, 170, 7, 7, "contiguous"),
    (8, 40, 36, 7, 7, "contiguous"),
    (9, 24, 20, 7, 7, "contiguous"), (1, 36, 20, 10, 10, "contiguous"), (3, 24, 24, 10, 10, "contiguous"),
    (1, 1100, 600, 7, 7, "channels_last"), (1, 600, 1100, 7, 7, "channels_last"),
    (1, 1100, 600, 2, 3, "channels_last"), (1, 1100, 600, 3, 5, "channels_last")])
def test_pixel_lanes_narrow_blocks_and_dots(isa, w_layout, n, c, k, h, w, layout):
    """Float 1x1 NCHW planes whose pixels fill more whole blocks of the narrow tile (7 x 7: 48 of
    49 lanes; 10 x 10: 96 of 100) run it, each image's pixels read in place; up to 8 pixels left
    over in all become dot products of W's rows with gathered input columns (rows of 340 and 200:
    vectors and a scalar rest), 9 and 12 go through the tails. The input gradient with few pixels
    reads W^T in place as strided rows, its dots along W's rows (340 and 1100 outputs: whole 64-
    or 16-wide blocks and a scalar rest), each tile's rows from one pointer (direct_conv_row_taps:
    AVX-512's one block in one pass, AVX2's two blocks in chunks of 64 taps; 403 rows end in a
    partial tile, 170 and 201 taps in a partial chunk). channels_last with few pixels and big weights: packed
    whole blocks and dots likewise (6 pixels: dots alone; 15: all packed). W in every layout (a
    strided W takes the tails), with bias."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=1, s=1, groups=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
               bias=True, x_layout=layout, w_layout=w_layout, g_layout=layout, seed=n * c + k + h)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k", [(16, 256), (256, 16)])
def test_outputs_past_the_last_level_cache(isa, c, k):
    """A channels_last 1x1 whose input and output outgrow 3/4 of the last-level cache (33.5 MB
    of float output or input gradient at N=2, 256 channels @128 x 128; this VM's L3 is 32 MB):
    direct_conv then stores its tiles with non-temporal stores (and prefetches from 3/8 of the
    cache up), forward and input gradient alike. On a host with a larger cache the same case
    runs the cached stores."""
    cfg = dict(n=2, c=c, k=k, h=128, w=128, r=1, s=1, groups=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
               bias=True, x_layout="channels_last", w_layout="contiguous", g_layout="channels_last", seed=c + k)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


@pytest.mark.parametrize("dtype,bf16_dot,n", [(torch.float32, "auto", 1), (torch.bfloat16, "on", 2),
                                               (torch.bfloat16, "off", 2)], ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,h,w,bias", [(3, 64, 224, 224, True), (2, 64, 256, 224, False), (3, 48, 256, 256, True)])
def test_short_reductions_stream_their_outputs(isa, dtype, bf16_dot, n, c, k, h, w, bias):
    """A channels_last layer of <= 32 products a result writing 12 to 32 MB (VGG's conv1_1 at N=1:
    3 -> 64 @224, 12.8 MB of float32; 18 products; 48 outputs, three vectors a tile; bfloat16 at
    N=2, half a line a vector, from either bfloat16 engine) stores its tiles with non-temporal
    stores on any host (conv2d_direct.h, store_bound): forward against PyTorch, its gradients too."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=3, s=3, groups=1, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
               bias=bias, x_layout="channels_last", w_layout="contiguous", g_layout="channels_last", seed=c + h)
    with forced_isa(isa), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, dtype)


def test_float64_path_equals_torch_float64():
    """The float64 plain-loop reference (the oracle of the fast kernels) agrees with PyTorch to
    float64 rounding."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64, generator=gen)
    w = torch.randn(4, 3, 3, 2, dtype=torch.float64, generator=gen)
    b = torch.randn(4, dtype=torch.float64, generator=gen)
    args = ((2, 1), (1, 1), (1, 2), 2)
    torch.testing.assert_close(CF.conv2d(x, w, b, *args), F.conv2d(x, w, b, *args), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((2, 4), 1), ((4, 3), (2, 3)), ((1, 1), 1)])
def test_same_and_valid_padding(kernel, dilation):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 9, 8, generator=gen, requires_grad=True)
    w = torch.randn(5, 3, *kernel, generator=gen, requires_grad=True)
    for padding in ("same", "valid"):
        y = CF.conv2d(x, w, None, 1, padding, dilation)
        ref = F.conv2d(x, w, None, 1, padding, dilation)
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
        gx, gw = torch.autograd.grad(y.sum(), (x, w))
        rx, rw = torch.autograd.grad(ref.sum(), (x, w))
        torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-4)


def test_unbatched_input():
    x = torch.randn(3, 7, 7, requires_grad=True)
    w = torch.randn(4, 3, 3, 3)
    y = CF.conv2d(x, w, padding=1)
    assert y.shape == (4, 7, 7)
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)
    (gx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gx, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), x)[0], rtol=1e-5, atol=1e-5)


def test_tuple_arguments_of_one_value():
    x, w = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3)
    torch.testing.assert_close(CF.conv2d(x, w, None, (2,), [1], (1,)), F.conv2d(x, w, None, (2,), [1], (1,)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("c,k,r,stride,groups", [
    (4, 6, 3, 1, 1),      # few output channels
    (32, 32, 3, 1, 32),   # depthwise 3x3, sums in registers
    (16, 16, 5, 1, 16),   # depthwise 5x5
    (16, 16, 3, 2, 16),   # depthwise, stride 2
    (3, 32, 3, 2, 1),     # narrow weight-gradient tiles (a stem)
    (8, 24, 3, 1, 1),     # 12 x 2 tiles
    (64, 64, 3, 1, 1),    # Winograd / the wide tile
    (64, 64, 1, 1, 1),    # 1x1
])
def test_empty_batch_gives_empty_output_and_zero_gradients(dtype, layout, c, k, r, stride, groups):
    """N = 0 on every engine: an empty output, an empty input gradient, zero weight and bias gradients."""
    x = torch.randn(0, c, 8, 8, dtype=dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(k, c // groups, r, r, dtype=dtype, requires_grad=True)
    b = torch.randn(k, dtype=dtype, requires_grad=True)
    y = CF.conv2d(x, w, b, stride, r // 2, 1, groups)
    assert y.shape == F.conv2d(x, w, b, stride, r // 2, 1, groups).shape
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


def test_zero_input_channels_are_an_error():
    """CONTRACT.md: C = 0 is an error. (PyTorch 2.14 returns a malformed (N, 0, P, Q) output.)"""
    with pytest.raises(RuntimeError, match="channel"):
        CF.conv2d(torch.randn(2, 0, 5, 5), torch.randn(3, 0, 3, 3))


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(4, 2, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: CF.conv2d(x, w, b, (2, 1), (1, 0), (1, 2), 2), (x, w, b))
    xl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: CF.conv2d(x, w, None, 1, "same", 1, 2), (xl, w))


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("c,groups,stride,layout", [
    (8, 1, 1, torch.contiguous_format),
    (128, 32, 2, torch.channels_last),  # grouped weight gradient rows: splits in item parts (N * P = 16 rows)
])
def test_backward_is_deterministic_across_thread_counts(dtype, c, groups, stride, layout):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, c, 16, 16, generator=gen).to(dtype).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(c, c // groups, 3, 3, generator=gen).to(dtype).requires_grad_()
    g = torch.randn(4, c, 16 // stride, 16 // stride, generator=gen).to(dtype).contiguous(memory_format=layout)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 2):
            torch.set_num_threads(n)
            y = CF.conv2d(x, w, stride=stride, padding=1, groups=groups)
            results.append((y, *torch.autograd.grad(y, (x, w), g)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,h,w", [(20, 70, 9, 9), (64, 8, 8, 8), (3, 33, 13, 7), (256, 64, 14, 14), (17, 100, 5, 31)])
@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_nchw_engine(isa, dtype, c, k, h, w, bias):
    """1x1 stride-1 convolutions on NCHW planes run the role-swapped engine (pixels as lanes)."""
    gen = torch.Generator().manual_seed(c * k + h)
    x = torch.randn(2, c, h, w, generator=gen).to(dtype)
    wt = torch.randn(k, c, 1, 1, generator=gen).to(dtype)
    b = torch.randn(k, generator=gen).to(dtype) if bias else None
    with forced_isa(isa):
        y = CF.conv2d(x, wt, b)
    with torch_without_onednn():
        ref64 = F.conv2d(x.double(), wt.double(), None if b is None else b.double())
        theirs = F.conv2d(x, wt, b)
    assert y.is_contiguous()
    assert_calibrated(y, theirs, ref64, f"pointwise {c}->{k} @{h}x{w}", c)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c,k,h,w,r,stride,padding,dilation", [
    (64, 1, 9, 150, 3, (1, 1), (1, 1), (1, 1)),   # rows past a block: the last block ends at Q
    (19, 3, 12, 40, 3, (2, 1), (1, 1), (1, 1)),   # row stride 2; channels past the last 8
    (8, 7, 7, 61, 5, (1, 1), (2, 0), (1, 2)),     # the widest tile count; dilated columns
    (3, 2, 30, 9, 3, (3, 1), (0, 2), (2, 1)),     # rows shorter than a vector; dilated rows
    (5, 5, 4, 200, 1, (1, 1), (0, 0), (1, 1)),    # 1x1
    (20, 4, 6, 130, 3, (1, 1), (0, 2), (1, 2)),   # input gradient (AVX-512) as a forward: 4 blocks of 5 dx channels, dilated
    (6, 2, 5, 100, 3, (1, 1), (3, 3), (1, 1)),    # padding past the filter: that input gradient stays on the direct engine
    (12, 3, 6, 110, 3, (1, 1), (0, 1), (1, 1)),   # unpadded rows: that input gradient's forward pads dy by 2 and 1
    # 1-7 inputs into 8+ outputs (the forward in blocks, AVX-512 NCHW rows of 96+; the input gradient as one block)
    (3, 20, 5, 110, 3, (1, 1), (1, 1), (1, 1)),   # blocks of 7 and 6 outputs (few_inputs_block), the last column block shifted
    (1, 8, 4, 96, 1, (1, 1), (0, 0), (1, 1)),     # 1 x 1, the fewest outputs it takes: two blocks of 4
    (7, 33, 6, 130, 5, (1, 1), (2, 3), (2, 1)),   # 7 inputs, dilated rows, uneven blocks
    (4, 96, 3, 96, 5, (1, 1), (2, 2), (1, 1)),    # rows of 96: blocks of 4 outputs (6 vectors: 96 columns)
    (2, 12, 3, 100, 3, (1, 1), (0, 0), (1, 1)),   # unpadded: 98 output columns
    (1, 10, 4, 100, 3, (1, 1), (1, 1), (1, 1)),   # one input, 3 x 3 (AVX2 too): blocks of 5
])
def test_few_output_channels(isa, dtype, layout, c, k, h, w, r, stride, padding, dilation):
    """Forwards of 1-7 output channels at column stride 1, their weight gradients for 1- and
    3-wide filters and (NCHW dx 96+ wide, stride 1; AVX-512, or AVX2 with one dy channel and
    a 3 x 3 filter) their input gradients
    (conv2d_few_outputs.h: output columns as vector lanes over zero-padded rows of every channel,
    channels_last rows transposed in): blocks of columns with a shifted last one, the last
    vector's columns past Q, strides, padding, dilation, every layout. Layers of 1-7 input
    channels on the same tiles: the forward into 8+ NCHW outputs at stride 1, rows of 96+
    (AVX-512, or AVX2 at up to 9 products an output: one input, 3 x 3; channels_last outputs
    run the direct engine), in blocks of 4-7 output
    channels with every block's weights and bias; the input gradient as one forward block of dy
    (every ISA and layout)."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=r, s=r, groups=1, stride=stride, padding=padding,
               dilation=dilation, bias=True, x_layout=layout, w_layout="contiguous", g_layout="contiguous",
               seed=c * k + w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,k,h,w,r,stride,padding,dilation", [
    (3, 64, 3, 45, 20, 3, (1, 1), (1, 1), (1, 1)),   # 4 bands an image (windows carry 2 rows); chunks cut at images' ends
    (3, 24, 2, 37, 12, 3, (2, 1), (1, 1), (2, 1)),   # row stride 2, dilated rows: windows of 5-row reach
    (2, 40, 1, 70, 9, 1, (1, 1), (0, 0), (1, 1)),    # 1 x 1: one-row reach
])
def test_few_output_channels_tall_images(isa, dtype, layout, n, c, k, h, w, r, stride, padding, dilation):
    """The few-outputs forward and weight gradient over images tall enough for several bands of
    rows per thread (conv2d_few_outputs.h's ChannelRowWindow: each band's padded rows packed into
    the thread's window, the rows shared with the band before carried over), 3 images so that the
    weight gradient's fixed splits cross images; its weight gradient the same bits on 1 thread
    and on 2."""
    cfg = dict(n=n, c=c, k=k, h=h, w=w, r=r, s=r, groups=1, stride=stride, padding=padding,
               dilation=dilation, bias=True, x_layout=layout, w_layout="contiguous", g_layout="contiguous",
               seed=c * k + h)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)
    gen = torch.Generator().manual_seed(c + k + h)
    x = make_tensor((n, c, h, w), dtype, layout, gen)
    p = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    q = (w + 2 * padding[1] - dilation[1] * (r - 1) - 1) // stride[1] + 1
    g = make_tensor((n, k, p, q), dtype, layout, gen)
    args = ([k, c, r, r], list(stride), list(padding), list(dilation), 1)
    with forced_isa(isa):
        check_weight_grad_on_one_and_two_threads(g, x, args, f"few-outputs wgrad {c}->{k} {r}x{r} @{h}x{w} {layout}",
                                                 n * p * q)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c,k,groups,h,w,r,stride,padding,dilation", [
    (128, 128, 32, 9, 11, 3, 1, 1, 1),   # ResNeXt's 32 groups of 4: 4 (AVX2 2) groups per vector
    (64, 64, 16, 6, 9, 3, 1, 0, 1),      # no padding: a float32 channels_last x read in place
    (16, 32, 8, 7, 9, 3, 2, 1, 1),       # 2 -> 4 per group, stride 2 (dgrad: another engine)
    (128, 128, 32, 9, 9, 3, 2, 1, 1),    # stride 2: the input gradient in 4 stride phases
    (16, 16, 4, 7, 10, 4, 3, 3, 1),      # stride 3, an even filter, padding past a phase's taps
    (32, 32, 8, 8, 9, 1, 2, 0, 1),       # 1 x 1 stride 2: phases without taps store zeros
    (6, 12, 6, 6, 7, 3, 1, 1, 2),        # a channel multiplier of 2, dilated; 12 of 16 lanes
    (18, 18, 9, 8, 8, 3, 1, 1, 1),       # 9 groups of 2: the last block's pixel slots padded
    (48, 48, 6, 7, 7, 3, 1, 1, 1),       # groups of 8 (AVX-512; AVX2 runs them on the direct engine's row tiles)
    (64, 64, 8, 5, 28, 3, 1, 1, 1),      # AVX-512 row tiles: two of 14 pixels a row
    (64, 64, 8, 6, 29, 3, 2, 1, 1),      # stride 2 row tiles (8 a group): 14 pixels, the last overlapping
    (64, 64, 8, 5, 17, 3, 2, 0, 1),      # stride 2 rows of 8 (7-pixel tiles), no padding: edges hold data
    (32, 32, 8, 4, 10, 3, 1, 0, 1),      # 4 per group, rows of 8: 7-pixel row tiles (AVX-512: channels_last, bf16)
    (20, 40, 5, 7, 7, 5, 2, 2, 1),       # 4 -> 8, 5 x 5, stride 2
    (24, 24, 3, 5, 13, 1, 1, 0, 1),      # 1 x 1 groups of 8
    # stride 1 input gradients as forwards of dy (dgrad_as_forward), but for float32 channels_last
    (32, 16, 8, 7, 9, 3, 1, 1, 1),       # 4 -> 2 per group: the forward of 2 -> 4
    (32, 32, 8, 7, 9, 4, 1, 1, 1),       # an even filter: dy padded 2 a side (dx is a row and a column wider)
    (64, 64, 16, 6, 9, 3, 1, 3, 1),      # padding past the filter's reach: the stride phases' path
    (16, 16, 4, 6, 12, 1, 1, 0, 1),      # 1 x 1, 4 a group
    (64, 64, 8, 9, 10, 3, 1, 1, 2),      # dilated: dy padded 3 a side
])
def test_grouped_lanes(isa, dtype, layout, c, k, groups, h, w, r, stride, padding, dilation):
    """Grouped convolutions of 2-8 output channels per group (conv2d_grouped.h: the lanes of a
    vector span several groups, each lane's inputs permuted in; 3-wide filters at column stride 1
    (AVX-512: or 2) on row tiles, grouped_lanes_row_conv): forward, input gradient (one forward
    per stride phase) and weight gradient (tap chunks, fixed row splits; 3-wide filters: kernel
    rows, grouped_lanes_wgrad_rows, on AVX2 for groups of 2 or 4 within 128-bit lanes, shuffled
    in-lane) against PyTorch, every layout and tail."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=r, s=r, groups=groups, stride=(stride, stride),
               padding=(padding, padding), dilation=(dilation, dilation), bias=True, x_layout=layout,
               w_layout="contiguous", g_layout=layout, seed=c * k + h)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("layout", ["channels_last", "channels_last_slice"])
@pytest.mark.parametrize("c,groups,h,w,r,s,stride,padding,dilation", [
    (128, 32, 9, 11, 3, 3, (1, 1), (1, 1), (1, 1)),  # both edge columns (14-pixel rows: 7-pixel tiles)
    (256, 32, 9, 28, 3, 3, (2, 2), (1, 1), (1, 1)),  # stride 2: the left edge only (W even)
    (256, 32, 6, 29, 3, 3, (2, 2), (1, 1), (1, 1)),  # stride 2: both edges, the last tile overlapping
    (64, 8, 11, 16, 3, 3, (1, 2), (1, 1), (1, 1)),   # columns stride 2 under rows stride 1
    (64, 8, 12, 14, 3, 3, (2, 1), (1, 1), (1, 1)),   # rows stride 2 under columns stride 1
    (128, 32, 12, 15, 3, 3, (1, 1), (2, 1), (2, 1)), # dilated rows, two rows of padding top and bottom
    (64, 8, 10, 15, 5, 3, (1, 1), (2, 1), (1, 1)),   # 5 kernel rows
    (128, 32, 8, 15, 3, 3, (1, 1), (1, 0), (1, 1)),  # rows of padding only
    (128, 32, 8, 15, 3, 3, (1, 1), (0, 1), (1, 1)),  # columns of padding only
    (128, 32, 8, 15, 3, 3, (1, 1), (1, 2), (1, 1)),  # two columns of padding: the padded copy
    # 16 a group: the weight gradient's row tiles (conv2d_wgrad.h, wgrad_row_tile)
    (64, 4, 9, 11, 3, 3, (1, 1), (1, 1), (1, 1)),    # stride 1: both edge columns skipped
    (64, 4, 9, 28, 3, 3, (2, 2), (1, 1), (1, 1)),    # stride 2, W even: the left edge only
    (64, 4, 6, 29, 3, 3, (2, 2), (1, 1), (1, 1)),    # stride 2, W odd: both edges
    (64, 4, 8, 15, 3, 3, (1, 1), (0, 0), (1, 1)),    # no padding: no edge skipped
    (64, 4, 12, 14, 3, 3, (2, 1), (1, 1), (1, 1)),   # rows stride 2 under columns stride 1
    (64, 4, 12, 15, 3, 3, (1, 1), (2, 1), (2, 1)),   # dilated rows, two rows of padding top and bottom
    (64, 4, 8, 15, 3, 3, (1, 1), (1, 0), (1, 1)),    # rows of padding only
    (64, 4, 8, 15, 3, 3, (1, 1), (1, 2), (1, 1)),    # two columns of padding: the padded copy
    (32, 2, 7, 9, 3, 3, (1, 1), (1, 1), (1, 1)),     # 2 groups
])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_grouped_rows_read_in_place(isa, layout, c, groups, h, w, r, s, stride, padding, dilation):
    """A float32 channels_last x of a padded grouped layer that the row tiles take is read in place
    (conv2d_grouped.h): by the forward (InPlacePadding: kernel rows outside the image read a row
    of zeros, a tile's edge columns zero vectors), by the weight gradient's rows
    (grouped_lanes_wgrad_rows: the peeled first and last columns; dy, dense channels_last, in place
    too) and, at stride 1, a channels_last dy by the input gradient (its kernel rows upwards).
    With 16 a group, the weight gradient's row tiles (conv2d_wgrad.h, wgrad_row_tile: 9-16 a group
    on AVX-512, 8-16 on AVX2) read x in place likewise: rows in the padding skipped, a row's first
    / last column skipped where it is padding, two columns of padding on the padded copy. Rows and columns of padding, stride 1 and 2 each way, dilated and 5 kernel rows, tiles
    at both edges, pixels farther apart than their channels; against PyTorch and the float64
    reference."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=True, x_layout=layout, w_layout="contiguous", g_layout="channels_last",
               seed=c * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


# Product lanes' (dtype, bfloat16 engine): float32, and bfloat16 on the vdpbf16ps lanes and the float ones.
PRODUCT_LANES_ENGINES = [(torch.float32, "auto"), (torch.bfloat16, "on"), (torch.bfloat16, "off")]


@pytest.mark.parametrize("dtype,bf16_dot", PRODUCT_LANES_ENGINES, ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["channels_last", "channels_last_slice"])
@pytest.mark.parametrize("c,groups,h,w,r,s,stride,padding,dilation,bias", [
    (256, 32, 9, 56, 3, 3, (2, 2), (1, 1), (1, 1), True),   # ResNeXt's 256 @56 /2: 4 tiles a row, the first at the edge
    (64, 8, 6, 29, 3, 3, (2, 2), (1, 1), (1, 1), False),    # 15 outputs: the last tile overlapping, both edges
    (64, 8, 5, 13, 3, 3, (2, 2), (1, 1), (1, 1), True),     # 7 outputs: one tile, both edges
    (64, 8, 6, 9, 3, 3, (2, 2), (1, 1), (1, 1), True),      # 5 outputs: a row shorter than a tile
    (64, 8, 7, 30, 3, 3, (1, 2), (0, 0), (1, 1), True),     # no padding: every tile inside, rows stride 1
    (64, 8, 11, 31, 5, 5, (3, 2), (2, 2), (1, 1), False),   # 5 x 5, rows stride 3
    (64, 8, 9, 33, 3, 3, (2, 2), (2, 2), (2, 2), True),     # dilated, two columns of padding
    (64, 8, 8, 20, 4, 3, (2, 2), (3, 3), (1, 1), True),     # padding past the reach: rows and columns without taps
    (64, 8, 6, 17, 1, 1, (2, 2), (0, 0), (1, 1), True),     # 1 x 1
    (16, 2, 5, 16, 3, 3, (2, 2), (1, 1), (1, 1), True),     # 2 groups
])
def test_grouped_product_lanes(dtype, bf16_dot, layout, c, groups, h, w, r, s, stride, padding, dilation, bias):
    """The AVX-512 grouped forward of 8 inputs and 8 outputs a group at column stride 2 on
    channels_last float32 and bfloat16 tensors (conv2d_grouped.h, grouped_product_lanes_fprop: a
    group's 64 products in the lanes of four vectors, each output's 8 lanes summed at the end;
    bfloat16 inputs widened by a byte shuffle of a 128-bit broadcast; on the vdpbf16ps engine
    ProductLanesDot: two vectors of channel pairs, a 128-bit broadcast unshuffled, each output's
    4 lanes summed, 14-pixel tiles): whole tiles
    inside the image unchecked, edge tiles skipping the taps outside, the last tile overlapping its
    neighbour, rows shorter than a tile, taps and rows outside the image, bias added after the sums,
    x and y slices read and written in place. The bfloat16 weight gradient of these layers runs on
    the same lanes (grouped_product_lanes_wgrad: columns outside the image skipped, rows stride 1
    to 3, dilation, S of 1 to 3). Against PyTorch and the float64 reference."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=s, groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=bias, x_layout=layout, w_layout="contiguous", g_layout="channels_last",
               seed=c * h + w + r)
    with forced_isa("avx512"), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("bf16_dot", ["on", "off"])
@pytest.mark.parametrize("x_layout,g_layout", [
    ("contiguous", "contiguous"), ("row_slice", "channels_last"), ("strided", "row_slice"),
    ("channels_last", "contiguous"),
])
@pytest.mark.parametrize("c,groups,h,w,r,stride,padding", [
    (256, 32, 9, 56, 3, (2, 2), (1, 1)),   # ResNeXt's 256 @56 /2: rows of 28 outputs, the last 8 shifted by 4
    (64, 8, 6, 29, 3, (2, 2), (1, 1)),     # 15 outputs a row
    (64, 8, 5, 13, 3, (2, 2), (1, 1)),     # 7 outputs: y stored element by element
    (16, 2, 5, 16, 1, (1, 2), (0, 0)),     # 1 x 1, 2 groups, rows stride 1
    (24, 3, 7, 9, 3, (2, 2), (1, 1)),      # 24 channels (not 16k): NCHW x through a whole copy
])
def test_grouped_product_lanes_any_bfloat16_layout(bf16_dot, x_layout, g_layout, c, groups, h, w, r, stride, padding):
    """bfloat16 layers of the product lanes (8 inputs and 8 outputs a group, column stride 2) in
    any layout. Forward: NCHW rows of x (16k channels) are transposed as each output row reads
    them, other x goes into a dense channels-last copy (ChannelsLastCopy), and an NCHW y's rows
    are transposed into place (store_channels_last_row). Weight gradient: NCHW and strided x and
    dy through copies. Against PyTorch and the float64 reference."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=r, groups=groups, stride=stride, padding=padding,
               dilation=(1, 1), bias=True, x_layout=x_layout, w_layout="contiguous", g_layout=g_layout,
               seed=c * h + w + r)
    with forced_isa("avx512"), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, torch.bfloat16)


@pytest.mark.parametrize("layout", ["channels_last", "channels_last_slice", "contiguous", "strided"])
@pytest.mark.parametrize("c,k,groups,h,w,r,s,stride,padding,dilation", [
    (64, 64, 2, 7, 9, 3, 3, (1, 1), (1, 1), (1, 1)),     # 32 a group: the general tiles, an edge column each side
    (64, 64, 2, 6, 11, 3, 3, (2, 2), (1, 1), (1, 1)),    # stride 2, odd width
    (64, 64, 2, 9, 10, 3, 3, (1, 1), (2, 2), (2, 2)),    # dilated, two columns and rows of padding
    (64, 64, 2, 11, 13, 5, 5, (3, 3), (2, 2), (1, 1)),   # 5 x 5 stride 3: taps' column ranges differ
    (64, 64, 2, 5, 4, 3, 3, (1, 1), (3, 3), (1, 1)),     # padding past the filter: taps with no columns
    (64, 64, 2, 6, 8, 1, 3, (1, 1), (0, 1), (1, 1)),     # 1 x 3
    (64, 64, 2, 6, 8, 3, 1, (1, 1), (1, 0), (1, 1)),     # 3 x 1
    (256, 32, 1, 5, 6, 3, 3, (2, 2), (1, 1), (1, 1)),    # one group of 256 channels (not folded): 3x3 /2
])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_weight_grad_tiles_read_x_in_place(isa, layout, c, k, groups, h, w, r, s, stride, padding, dilation):
    """The weight gradient's general tiles (conv2d_wgrad.h, wgrad_tile, taps not folded) read a
    float32 x with contiguous channels in place, any other float32 x (NCHW, strided) from an
    unpadded channels-last copy: each tap's output columns whose input lies in the padding skipped
    (a range per tap), rows in the padding skipped. Against PyTorch and the float64 reference."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=r, s=s, groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=False, x_layout=layout, w_layout="contiguous", g_layout="channels_last",
               seed=c * h + w + r)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


@pytest.mark.parametrize("layout", ["contiguous", "row_slice"])
@pytest.mark.parametrize("c,groups,h,w,r,stride,padding,dilation,bias", [
    (256, 32, 7, 56, 3, (2, 2), (1, 1), (1, 1), True),   # ResNeXt's 256 @56 /2: 28 outputs a row, 4 lanes past the end
    (64, 8, 6, 75, 3, (2, 2), (1, 1), (1, 1), False),    # odd width: 38 outputs, the 32-pixel tile and a second
    (64, 8, 5, 27, 3, (2, 2), (1, 1), (1, 1), True),     # odd width: the right padding column in the upper 16 of 32 loaded
    (128, 32, 6, 56, 3, (1, 1), (1, 1), (1, 1), True),   # stride 1, 4 a group: 64-pixel tiles over rows of 56
    (32, 16, 5, 70, 3, (1, 1), (1, 1), (1, 1), False),   # 2 a group, a row longer than a tile
    (24, 6, 9, 9, 3, (3, 2), (2, 1), (2, 1), True),      # rows stride 3 and dilated, rows shorter than a vector
    (48, 6, 7, 20, 5, (1, 2), (0, 1), (1, 1), True),     # 5 kernel rows, no row padding
    (16, 4, 4, 3, 3, (1, 1), (1, 1), (1, 1), True),      # 3 columns: both edges in one vector
    (96, 32, 6, 56, 3, (2, 2), (1, 1), (1, 1), False),   # 3 a group
    (160, 32, 5, 30, 3, (2, 2), (1, 1), (1, 1), True),   # 5 a group: AVX2's input gradient in passes of 4 and 1
    (56, 8, 4, 17, 3, (2, 2), (1, 1), (1, 1), False),    # 7 a group, odd width: passes of 4 and 3
    (48, 8, 3, 5, 3, (2, 2), (1, 1), (1, 1), True),      # 6 a group, 3 dy columns: one masked tile
    (128, 16, 4, 64, 3, (2, 2), (1, 1), (1, 1), False),  # 8 a group, 32 dy columns: whole tiles, the last masked
    (64, 16, 4, 63, 3, (2, 2), (1, 1), (1, 1), True),    # 4 a group, 32 dy columns, odd width
    (40, 8, 5, 21, 3, (1, 1), (1, 1), (1, 1), False),    # stride 1, 5 a group: the weight gradient's passes
    (24, 4, 3, 9, 3, (1, 1), (1, 1), (1, 1), True),      # stride 1, 6 a group, 9 columns
    (48, 16, 5, 37, 3, (1, 1), (1, 1), (1, 1), True),    # stride 1, 3 a group: whole tiles (AVX2), then a masked one
    (64, 16, 4, 64, 3, (1, 1), (1, 1), (1, 1), False),   # stride 1, 64 columns: the last tile ends at the row's end
    (64, 8, 56, 28, 3, (1, 1), (1, 1), (1, 1), True),    # stride 1, 8 a group over 112 output rows: the weight gradient's lanes
])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_grouped_pixel_lanes(isa, layout, c, groups, h, w, r, stride, padding, dilation, bias):
    """The float32 NCHW grouped forward with output pixels as lanes (conv2d_grouped.h,
    grouped_pixel_lanes_fprop: 2-8 channels a group on AVX-512, 2-7 on AVX2, 3-wide filters, one
    column of padding, column stride 2, or 1 with 4 or fewer a group): whole tiles unmasked, masked loads
    past the row's end in the last, the padding column before the first, the even / odd split
    and the shifted odd columns at stride 2, rows outside skipped; and
    at column stride 2 the input gradient likewise (grouped_pixel_lanes_dgrad2, both ISAs: even
    and odd dx columns interleaved, kernel rows between dy rows skipped, AVX2's groups of 5-8 in
    two passes, full tiles unmasked and the last masked); the weight gradient likewise on both
    ISAs (grouped_pixel_lanes_wgrad: column stride 2, or 1 with fewer than 8 a group or 112+
    output rows; x's
    columns a lane later for tap 0, the even / odd split at stride 2, passes of outputs); all
    three results against PyTorch."""
    cfg = dict(n=2, c=c, k=c, h=h, w=w, r=r, s=3, groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=bias, x_layout=layout, w_layout="contiguous", g_layout="contiguous",
               seed=c * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "channels_last_slice"])
@pytest.mark.parametrize("c,k,groups,h,w,r,stride,padding,dilation", [
    (256, 256, 32, 10, 28, 3, (2, 2), (1, 1), (1, 1)),  # ResNeXt's 256 @56 /2: two 14-pixel tiles a row
    (64, 64, 16, 9, 14, 3, (2, 2), (1, 1), (1, 1)),     # 4 a group, one tile a row, rows odd
    (32, 32, 16, 7, 30, 3, (1, 2), (1, 1), (1, 1)),     # 2 a group, the last tile overlapping, rows stride 1
    (64, 64, 8, 11, 20, 3, (3, 2), (2, 1), (2, 1)),     # rows stride 3, dilated: row phases without taps
    (48, 48, 12, 8, 16, 5, (2, 2), (2, 1), (1, 1)),     # 5 kernel rows
    (64, 32, 8, 9, 16, 3, (2, 2), (1, 1), (1, 1)),      # 8 in, 4 out a group
    (32, 32, 8, 6, 18, 1, (2, 2), (0, 1), (1, 1)),      # one kernel row
])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_grouped_dgrad_column_pairs(isa, dtype, layout, c, k, groups, h, w, r, stride, padding, dilation):
    """The grouped input gradient at column stride 2 (3 taps, a column of padding, even widths of
    14+) runs row tiles that compute both column phases of a dx row at once (conv2d_grouped.h,
    kDgradStride2): a float32 channels_last dy read in place (its last column past the image a
    zero vector), others packed; row phases with 1, 2 or no kernel rows, every layout, all three
    results against PyTorch (AVX2: 8-pixel tiles, 4 or fewer channels a group; 8 go to
    conv2d_direct.h's column pairs). A float32 NCHW dy with as many inputs as outputs a group
    goes to grouped_pixel_lanes_dgrad2 instead (test_grouped_pixel_lanes)."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=r, s=3, groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout,
               seed=c * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", ["channels_last", "channels_last_slice"])
@pytest.mark.parametrize("c,k,groups,h,w,r,s,stride,padding,dilation", [
    (32, 64, 1, 11, 13, 3, 3, (2, 2), (1, 1), (1, 1)),   # ResNet's 3x3/2: top and left edges
    (32, 48, 1, 9, 8, 3, 3, (1, 2), (1, 1), (1, 1)),     # 48 outputs (8 x 3 tiles), bottom and right too
    (16, 32, 1, 10, 12, 5, 3, (1, 1), (2, 1), (1, 1)),   # 5 kernel rows, two rows of padding
    (24, 16, 1, 12, 12, 3, 3, (1, 1), (2, 2), (2, 2)),   # dilated by 2: taps on both sides of the edge
    (64, 64, 4, 9, 9, 3, 3, (2, 2), (1, 1), (1, 1)),     # group bundles of 16, stride 2
    (128, 128, 4, 8, 7, 3, 3, (2, 2), (1, 1), (1, 1)),   # 32 per group, 4 x 4 outputs: every tile an edge
    (16, 24, 1, 7, 30, 3, 3, (1, 3), (0, 2), (1, 1)),    # columns of padding only, a column stride 3
    # the row tiles of one group:
    (3, 32, 1, 17, 33, 3, 3, (2, 2), (1, 1), (1, 1)),    # MobileNetV2's stem: AVX-512 column stride 2, top and left edges
    (3, 16, 1, 9, 20, 3, 3, (1, 1), (1, 1), (1, 1)),     # 14-pixel tiles, the last overlapping: both sides
    (3, 8, 1, 9, 16, 3, 3, (1, 1), (1, 1), (1, 1)),      # AVX2's row tiles (8 outputs)
    (8, 8, 1, 12, 15, 3, 3, (2, 2), (1, 1), (1, 1)),     # AVX2 at column stride 2, the right edge too
    (16, 16, 1, 7, 7, 3, 3, (1, 1), (1, 1), (1, 1)),     # 7 columns: every tile an edge tile
    (4, 16, 1, 10, 23, 5, 3, (1, 1), (2, 1), (1, 1)),    # 5 kernel rows, two rows of padding
    (3, 32, 1, 9, 19, 3, 3, (2, 1), (0, 1), (1, 1)),     # columns of padding only, row stride 2
    (5, 16, 1, 8, 14, 3, 3, (1, 1), (1, 0), (1, 1)),     # rows of padding only
    (3, 16, 1, 11, 18, 3, 3, (1, 1), (2, 1), (2, 1)),    # rows dilated by 2
])
def test_direct_reads_padding_in_place(isa, layout, c, k, groups, h, w, r, s, stride, padding, dilation):
    """A float32 channels_last x of 16+ channels a group that the direct engine's pixel tiles take
    is read in place although the layer pads it (conv2d_direct.h, PaddedEdges): tiles inside the
    image read x, tiles at an edge read through a table of tap addresses (zeros outside). Strides,
    rows and columns of padding alone, dilation, group bundles, tiles crossing rows and images,
    pixels farther apart than their channels. The row tiles of one group (3 taps a row, one or two
    vectors of outputs, any input channel count) read a dense x in place too (row_reuse_conv with
    PaddedEdges): a tile whose window reaches into the padding runs on a zero-padded copy of that
    window; a slice of channels keeps the padded copy. All three results against PyTorch."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=r, s=s, groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=True, x_layout=layout, w_layout="contiguous", g_layout="channels_last",
               seed=c * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,groups,h,w,stride", [
    (3, 32, 1, 9, 31, 2),       # MobileNetV2's stem: column stride 2, 16 output columns
    (16, 32, 1, 7, 16, 1),      # one group (16 inputs: not Winograd's), 16 columns
    (32, 16, 1, 7, 16, 1),      # its input gradient: 32 dx channels
    (64, 64, 2, 6, 24, 1),      # 32 a group read as group blocks (a constant pixel step), 3 tiles a row
    (128, 128, 4, 8, 16, 2),    # 32 a group at column stride 2, one tile a row
])
def test_nchw_row_tiles_of_eight_pixels(isa, c, k, groups, h, w, stride):
    """Row tiles of two vectors of outputs (32 a group, AVX-512) writing NCHW rows whose length
    8 divides take 8 pixels, not 7, so that each output channel's 8 pixels leave as one whole
    8 x 8 transpose (conv2d_direct.h, run_row_reuse): forward and input gradient (its dx rows
    alike) against PyTorch, with bias, at both column strides, one group or group blocks."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=3, s=3, groups=groups, stride=(stride, stride), padding=(1, 1),
               dilation=(1, 1), bias=True, x_layout="contiguous", w_layout="contiguous", g_layout="contiguous",
               seed=c * h + w)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c,k,groups,h,w,r,stride,padding,dilation", [
    (64, 64, 4, 9, 11, 3, 1, 1, 1),      # 16 per group: AVX2 bundles of 2 (AVX-512: row tiles)
    (128, 128, 8, 7, 7, 3, 1, 1, 1),     # AVX2 bundles of 2 groups of 16; 6-pixel tiles past row ends
    (128, 64, 4, 9, 9, 3, 2, 1, 1),      # 32 -> 16 per group, stride 2: dgrad bundles 2 groups
    (64, 128, 4, 6, 7, 3, 1, 1, 2),      # 16 -> 32 per group, dilated: dgrad bundles 4
    (96, 96, 3, 10, 10, 3, 1, 2, 1),     # 3 groups of 32: no whole bundle, the 12 x 2 tiles
    (256, 256, 8, 5, 13, 3, 1, 1, 1),    # ResNeXt's 32 per group (AVX2: one group a tile)
    (48, 48, 6, 7, 7, 3, 2, 1, 1),       # 8 per group, stride 2: AVX2 bundles of 2 (stride 1: row tiles)
    (16, 16, 2, 7, 10, 2, 2, 0, 1),      # AVX2 8 per group, an even filter at stride 2
    (32, 32, 4, 9, 9, 1, 1, 0, 1),       # 1 x 1, no padding: a float32 channels_last x read in place
    (64, 64, 4, 8, 8, 5, 3, 2, 1),       # 5 x 5 stride 3: dgrad phases of few taps
    (128, 128, 8, 3, 3, 3, 1, 1, 1),     # 9 pixels per image: short last tiles
])
def test_group_bundles(isa, dtype, layout, c, k, groups, h, w, r, stride, padding, dilation):
    """Groups of one vector of outputs (two on AVX-512) and one or two vectors of inputs, run as
    bundles of groups sharing a tile (conv2d_direct.h, with_group_bundle; only where the row tiles
    do not apply: AVX2's 16 a group, AVX-512's strided or dilated rows, rows of < 7 pixels): forward and input
    gradient against PyTorch (and the weight gradient), bundles of 2 and 4, both input widths,
    group counts that leave no whole bundle."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=r, s=r, groups=groups, stride=(stride, stride),
               padding=(padding, padding), dilation=(dilation, dilation), bias=True, x_layout=layout,
               w_layout="contiguous", g_layout=layout, seed=c * k + h)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,h,w", [
    (160, 64, 20, 20),   # 2 chunks of 80 inputs, 134 6-pixel tiles with a short last one
    (200, 64, 16, 25),   # chunks of 112 and 88
    (272, 32, 30, 28),   # 12 x 2 tiles: chunks of 144 and 128
    (64, 200, 20, 20),   # the forward has several blocks (not chunked); the input gradient's one is
])
def test_pointwise_input_chunks(isa, c, k, h, w):
    """1x1 layers of one block of outputs whose weights outgrow L1 (AVX-512; conv2d_direct.h,
    direct_conv: panels of tiles run the weights a chunk of inputs at a time, accumulating in the
    output; AVX2's 16-lane blocks stay whole): forward, input gradient and weight gradient of
    channels_last float32 against PyTorch, with bias, chunks that do not divide the inputs, short
    last tiles."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=1, s=1, groups=1, stride=(1, 1), padding=(0, 0),
               dilation=(1, 1), bias=True, x_layout="channels_last", w_layout="contiguous",
               g_layout="channels_last", seed=c * k + w)
    with forced_isa(isa):
        check_against_torch(cfg, torch.float32)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c,k,groups,h,w,stride,padding,dilation", [
    (64, 64, 4, 9, 11, (1, 1), (1, 1), (1, 1)),   # 16 per group, rows of 11: 7-pixel tiles, the last overlapping
    (64, 64, 4, 6, 16, (1, 1), (1, 1), (1, 1)),   # rows of 16: 14-pixel tiles overlapping by 12
    (128, 128, 4, 7, 7, (1, 1), (1, 1), (1, 1)),  # 32 per group: 7 x 2-vector tiles, rows of 7
    (32, 64, 4, 8, 15, (2, 1), (1, 1), (1, 1)),   # 8 -> 16 per group, row stride 2 (dgrad: 2 phases)
    (64, 64, 4, 8, 12, (1, 1), (1, 0), (1, 1)),   # no column padding: the edge columns hold data
    (64, 128, 2, 9, 10, (1, 1), (2, 0), (2, 1)),  # dilated rows, no column padding; dgrad: 32 per group (the forward's 64: other tiles)
    (36, 48, 3, 5, 9, (1, 1), (1, 1), (1, 1)),    # 3 groups of 12 -> 16: group blocks with channel tails
    (24, 16, 1, 7, 20, (1, 1), (1, 1), (1, 1)),   # one group of 16 outputs; dgrad: 24 outputs (not rows)
    (96, 32, 1, 5, 9, (1, 1), (0, 1), (1, 1)),    # one group of 32 outputs, no row padding
    (64, 64, 4, 9, 16, (2, 2), (1, 1), (1, 1)),   # column stride 2 (ResNeXt's 512 @28 /2): weight-gradient rows of 2 Q + 1
    (32, 32, 2, 8, 13, (1, 2), (1, 1), (1, 1)),   # column stride 2, odd width, rows stride 1
    (64, 64, 4, 7, 10, (2, 2), (0, 1), (1, 1)),   # column stride 2, no row padding; dgrad: 6-pixel column pairs
    (128, 128, 4, 6, 14, (2, 2), (1, 1), (1, 1)),  # 32 per group, column stride 2: dgrad 8-pixel column pairs overlapping
    (64, 64, 2, 9, 12, (3, 2), (2, 1), (2, 1)),   # 32 per group, rows stride 3 and dilated, column stride 2
    (64, 64, 8, 9, 11, (1, 1), (1, 1), (1, 1)),   # 8 per group (AVX2's row tiles), rows of 11: 7-pixel tiles overlapping
    (64, 64, 8, 6, 20, (2, 2), (1, 1), (1, 1)),   # 8 per group, column stride 2: AVX2 dgrad 8-pixel column pairs overlapping
    (32, 64, 4, 7, 9, (1, 2), (1, 1), (1, 1)),    # 8 -> 16 per group (AVX2: wgrad row tiles a vector at a time), odd width
    (96, 96, 8, 5, 7, (1, 1), (1, 0), (1, 1)),    # 12 per group (AVX2: wgrad 4-channel row tiles), no column padding
    (64, 64, 8, 5, 17, (1, 2), (1, 1), (1, 1)),   # 8 per group, column stride 2, odd width (AVX2 stride-2 row tiles overlapping)
    (64, 64, 8, 7, 16, (2, 2), (1, 0), (1, 1)),   # 8 per group, column stride 2, no column padding: rows of 7
])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_row_reuse_tiles(isa, dtype, layout, c, k, groups, h, w, stride, padding, dilation):
    """3-wide filters over groups of 16 or 32 output channels (AVX-512; 8 on AVX2; conv2d_direct.h,
    run_row_reuse: each input broadcast serves three pixels of a row tile; grouped forwards read
    x as group blocks, pack_group_blocks; conv2d_wgrad.h,
    wgrad_row_tile: three taps, column stride 1 or 2; the input gradient at column stride 2 on
    tiles of both column phases, kDgradStride2): forward, input gradient and (8+ input
    channels per group, 16 or fewer outputs) weight gradient against PyTorch, with the row-stride,
    row-dilation, padding and tile-overlap cases, and bfloat16 storage through the float engine (forced_bf16_dot("off"))."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=3, s=3, groups=groups, stride=stride, padding=padding,
               dilation=dilation, bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout,
               seed=c * k + w)
    with forced_isa(isa), forced_bf16_dot("off"):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,groups,w", [
    (8, 16, 1, 8),     # one whole 8 x 8 block a row
    (20, 16, 1, 9),    # the last block shifted left by 7 columns onto the first; 4 channels after the blocks
    (16, 24, 1, 14),   # rows of 14: shifted by 2
    (24, 16, 1, 28),   # rows of 28: 3 blocks, the fourth shifted by 4
    (32, 64, 2, 15),   # 16 inputs a group: group blocks (AVX-512 row tiles), shifted by 1
    (64, 64, 4, 14),   # ResNeXt's 16 x 16 groups on rows of 14
    (24, 32, 1, 7),    # rows of 7 (float: masked 8-column transposes); a channel tail of 0
    (20, 16, 1, 3),    # rows of 3, 4 channels after the block
])
def test_nchw_rows_transpose_with_a_shifted_last_block(isa, dtype, c, k, groups, w):
    """NCHW rows of 8+ pixels go into the channels-last copies (pack_activations,
    pack_group_blocks) as 8 x 8 transposes, the last one shifted left onto the previous one where
    8 does not divide the row; float rows of fewer pixels as masked 8-column transposes
    (transpose8_short_rows): forward, input gradient and weight gradient against PyTorch."""
    cfg = dict(n=2, c=c, k=k, h=5, w=w, r=3, s=3, groups=groups, stride=(1, 1), padding=(1, 1),
               dilation=(1, 1), bias=True, x_layout="contiguous", w_layout="contiguous", g_layout="contiguous",
               seed=c * k + w)
    with forced_isa(isa):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("engine", ["on", "off"])
@pytest.mark.parametrize("x_layout", ["contiguous", "row_slice"])
@pytest.mark.parametrize("c,k,groups,h,w", [
    (16, 16, 1, 3, 8),     # one whole 16 x 8 block a row
    (32, 16, 1, 4, 7),     # rows of 7: masked loads, 7 pixels stored
    (24, 32, 1, 3, 14),    # 8 channels after the 16: one 8 x 8 transpose; the last block shifted by 2
    (19, 16, 1, 5, 3),     # rows of 3; 3 channels after the 16, element by element
    (40, 24, 1, 3, 17),    # 8 channels after the 32 on rows of 17 (shifted by 7)
    (64, 64, 2, 3, 7),     # ResNeXt's 32 a group at 7 x 7, two groups
])
def test_bfloat16_nchw_rows_transpose_16_channels(engine, x_layout, c, k, groups, h, w):
    """AVX-512: NCHW bfloat16 rows go into the channels-last copies 16 channels at a time as 16-bit
    transposes (transpose16_channel_row_bf16), into bfloat16 for the vdpbf16ps engine and float
    for the float engine, any row length (under 8 pixels by masked loads), the channels past the
    last 16 as before: forward, input gradient and weight gradient against PyTorch."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=3, s=3, groups=groups, stride=(1, 1), padding=(1, 1),
               dilation=(1, 1), bias=True, x_layout=x_layout, w_layout="contiguous", g_layout=x_layout,
               seed=c * k + w)
    with forced_isa("avx512"), forced_bf16_dot(engine):
        check_against_torch(cfg, torch.bfloat16)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("c,k,w,r,stride", [
    (2, 16, 16, 3, 1),   # one block of 16 pixels a row
    (3, 32, 17, 3, 2),   # MobileNetV2's stem shape: the last block shifted left by 15
    (3, 64, 40, 7, 2),   # the ResNet stem's shape: 2 blocks and a shifted one
    (4, 16, 31, 3, 1),
    (5, 24, 16, 5, 2),
    (6, 16, 33, 3, 1),
    (7, 32, 20, 3, 2),
])
def test_few_channel_nchw_rows_pack_as_vectors(dtype, c, k, w, r, stride):
    """NCHW x of 2-7 channels goes into channels-last pixels 16 pixels at a time (AVX-512,
    FewChannelPixels: masked permutes from each channel's row; bfloat16 x through the float
    engine): forward, input gradient and weight gradient against PyTorch."""
    cfg = dict(n=2, c=c, k=k, h=6, w=w, r=r, s=r, groups=1, stride=(stride, stride), padding=(r // 2, r // 2),
               dilation=(1, 1), bias=True, x_layout="contiguous", w_layout="contiguous", g_layout="contiguous",
               seed=c * k + w)
    with forced_isa("avx512"), forced_bf16_dot("off"):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("dtype,isa,bf16_dot", [
    (torch.float32, "avx2", None), (torch.float32, "avx512", None), (torch.bfloat16, "avx2", None),
    (torch.bfloat16, "avx512", "off"), (torch.bfloat16, "avx512", "on")], ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("c,k,groups,h,r,stride", [
    (3, 32, 1, 30, 3, 2),     # a MobileNet-like stem: 9 folded rows of 12, no padded lanes (AVX-512)
    (3, 24, 1, 17, 3, 2),     # 24 of 32 lanes; dy copied pixel by pixel into slots of 32
    (32, 16, 1, 14, 3, 1),    # AVX-512: 24 x 1 tiles, 96 folded rows in 4 blocks
    (3, 8, 1, 23, 5, 1),      # 8 output channels (the engine's fewest), 15 folded rows
    (20, 40, 2, 9, 3, 1),     # two groups of 20: 12 x 2 tiles, no folding, dy padded per group
    (64, 64, 4, 10, 3, 1),    # four groups of 16 (ResNeXt-like): 24 x 1 tiles of 16 rows, odd width (13)
    (48, 48, 2, 11, 3, 2),    # two groups of 24 at stride 2: 12 x 2 tiles, dy padded to 32 a group
    (32, 32, 2, 8, 1, 1),     # a grouped 1 x 1 of 16 a group
    (64, 64, 4, 9, 3, 1),     # four groups of 16, even width (12): vdpbf16ps row tiles over dy's pairs
    (32, 16, 1, 13, 3, 1),    # one group, 16 outputs, even width (16): row tiles of 8 of 32 channels
])
def test_narrow_weight_grad_tiles(isa, dtype, bf16_dot, layout, c, k, groups, h, r, stride):
    """Weight gradients of 8-32 output channels per group, which AVX-512 runs on 24 x 1 and 12 x 2
    tiles (AVX2 on its 6 x 2), the float engine and the vdpbf16ps one (pixel pairs) alike, and
    3-wide filters of up to 16 outputs a group at stride 1 on row tiles (the vdpbf16ps engine's over
    dy's column pairs where the width is even): every tap, stride, group and channel tail against
    PyTorch."""
    cfg = dict(n=2, c=c, k=k, h=h, w=h + 3, r=r, s=r, groups=groups, stride=(stride, stride),
               padding=(r // 2, r // 2), dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous",
               g_layout=layout, seed=c * k + h)
    with forced_isa(isa), (forced_bf16_dot(bf16_dot) if bf16_dot else contextlib.nullcontext()):
        check_against_torch(cfg, dtype)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,h,groups,stride,dtype", [
    (1, 128, 56, 32, 1, torch.float32),   # ResNeXt 128 @56: 7 row splits, parts sized so that the units split evenly
    (1, 64, 28, 16, 1, torch.float32),    # 3 splits
    (3, 32, 13, 8, 1, torch.float32),     # 4 splits over 39 rows of 3 images
    (2, 64, 30, 8, 2, torch.float32),     # 8 a group at stride 2, 30 output rows
    # bfloat16 channels_last, 8 a group: grouped_product_lanes_wgrad
    (2, 64, 30, 8, 2, torch.bfloat16),
    (1, 64, 28, 8, 1, torch.bfloat16),
])
def test_grouped_weight_grad_same_on_1_2_3_threads(layout, n, c, h, groups, stride, dtype):
    """The grouped weight gradient's fixed row splits go to the threads in parts whose count
    follows the thread count (for_split_items): the same bits on 1, 2 and 3 threads, within
    PyTorch's error."""
    gen = torch.Generator().manual_seed(c + h)
    x = make_tensor((n, c, h, h), dtype, layout, gen)
    p = (h - 1) // stride + 1
    g = make_tensor((n, c, p, p), dtype, layout, gen)
    args = ([c, c // groups, 3, 3], [stride, stride], [1, 1], [1, 1], groups)
    three = weight_grad_on_threads(3, g, x, args)
    check_weight_grad_on_one_and_two_threads(g, x, args, f"grouped wgrad {c}/{groups} @{h} /{stride}", n * p * p)
    assert torch.equal(weight_grad_on_threads(1, g, x, args), three)


def weight_grad_on_threads(threads, g, x, args):
    """conv2d_weight_grad(g, x, *args) on `threads` threads (the setting restored after)."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return torch.ops.cnnkernels.conv2d_weight_grad(g, x, *args)
    finally:
        torch.set_num_threads(before)


def check_weight_grad_on_one_and_two_threads(g, x, args, what, terms):
    """conv2d_weight_grad(g, x, *args) gives the same bits on 1 thread and on 2, within
    assert_calibrated of PyTorch's (non-oneDNN) result."""
    one, two = weight_grad_on_threads(1, g, x, args), weight_grad_on_threads(2, g, x, args)
    wt = torch.zeros(*args[0], dtype=x.dtype)
    with torch_without_onednn():
        theirs = torch.ops.aten.convolution_backward(g, x, wt, None, *args[1:4], False, [0, 0], args[4],
                                                     [False, True, False])[1]
        ref64 = torch.ops.aten.convolution_backward(g.double(), x.double(), wt.double(), None, *args[1:4], False,
                                                    [0, 0], args[4], [False, True, False])[1]
    assert torch.equal(one, two)
    assert_calibrated(two, theirs, ref64, what, terms)


@pytest.mark.parametrize("dtype,isa,bf16_dot", [
    (torch.float32, "avx2", None), (torch.float32, "avx512", None), (torch.bfloat16, "avx2", None),
    (torch.bfloat16, "avx512", "off"), (torch.bfloat16, "avx512", "on")], ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,k,h,w,r,s,stride,padding,dilation,groups", [
    (1, 200, 150, 5, 6, 3, 3, 1, 1, 1, 1),    # res5-like, few pixels; 8 channels in the last slab
    (2, 152, 200, 9, 9, 3, 3, 2, 1, 1, 1),    # stride 2, 2 images: several chunks of rows per slab
    (1, 64, 200, 10, 10, 5, 5, 1, 4, 2, 1),   # 5x5 dilated by 2
    (1, 440, 200, 6, 7, 1, 3, 1, (0, 1), 1, 1),  # a 1 x 3 filter
    (1, 256, 256, 7, 7, 3, 3, 1, 1, 1, 2),    # two groups of 128
    (1, 184, 176, 7, 7, 3, 3, 1, 1, 1, 1),    # an odd output width (7): the dot engine's tail column
])
def test_weight_grad_slabs(dtype, isa, bf16_dot, layout, n, c, k, h, w, r, s, stride, padding, dilation, groups):
    """Weight gradients with 1+ MB of running totals and few pixels per slab run by slabs (each
    slab's totals in a buffer of its own, transposed into dw when complete): against PyTorch, and
    the same bits on 1 thread and on 2 (where the totals path may take over). AVX-512 bfloat16 runs
    the float engine (x and dy widened) and the vdpbf16ps one (pixel pairs)."""
    gen = torch.Generator().manual_seed(c * k + h)
    x = make_tensor((n, c, h, w), dtype, layout, gen)
    pad = _pair(padding)
    p = (h + 2 * pad[0] - dilation * (r - 1) - 1) // stride + 1
    q = (w + 2 * pad[1] - dilation * (s - 1) - 1) // stride + 1
    g = make_tensor((n, k, p, q), dtype, layout, gen)
    args = ([k, c // groups, r, s], [stride, stride], list(pad), [dilation, dilation], groups)
    with forced_isa(isa), (forced_bf16_dot(bf16_dot) if bf16_dot else contextlib.nullcontext()):
        check_weight_grad_on_one_and_two_threads(g, x, args, f"slab wgrad {c}->{k} {r}x{s} @{h}x{w} s{stride} {layout}",
                                                 n * p * q)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,k,h,w,r,stride", [
    (1, 3, 32, 40, 44, 3, 2),   # MobileNetV2's stem in small: 3 tiles (one per filter row), 4 chunks
    (2, 3, 16, 30, 30, 3, 1),   # 3 tiles, 15 chunks in 6 splits of 2-3
    (1, 3, 24, 9, 9, 3, 1),     # one chunk of rows: no split
    (1, 4, 64, 61, 23, 3, 2),   # 6 tiles (two channel blocks of a folded row), 4 chunks in 3 splits
    (1, 2, 32, 33, 35, 5, 1),   # 5 x 5: 5 tiles, 11 chunks in 4 splits
])  # (AVX2's tiles of 16 outputs make 16+ tiles of the last two: no split there)
def test_weight_grad_few_tiles_split_rows(dtype, isa, layout, n, c, k, h, w, r, stride):
    """Weight gradients of fewer than 16 tiles (stems: a tile per filter row) also split the rows,
    each split into totals of its own, added in split order: against PyTorch, and the same bits on
    1 thread and on 2."""
    gen = torch.Generator().manual_seed(c * k + h)
    x = make_tensor((n, c, h, w), dtype, layout, gen)
    p = (h + 2 * (r // 2) - r) // stride + 1
    q = (w + 2 * (r // 2) - r) // stride + 1
    g = make_tensor((n, k, p, q), dtype, layout, gen)
    args = ([k, c, r, r], [stride, stride], [r // 2, r // 2], [1, 1], 1)
    with forced_isa(isa):
        check_weight_grad_on_one_and_two_threads(g, x, args, f"few-tile wgrad {c}->{k} {r}x{r} @{h}x{w} s{stride} {layout}",
                                                 n * p * q)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("x_layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("g_layout", ["contiguous", "row_slice"])
@pytest.mark.parametrize("n,c,k,h,w,r,s,stride,padding,dilation", [
    (2, 3, 32, 40, 44, 3, 3, (2, 2), (1, 1), (1, 1)),   # MobileNetV2's stem in small: 22 columns, a partial vector
    (1, 3, 20, 30, 37, 7, 7, (2, 2), (3, 3), (1, 1)),   # ResNet-50's stem in small: a last group of 1 of 49 taps, a partial block of outputs
    (2, 1, 9, 17, 35, 5, 3, (1, 3), (2, 1), (2, 1)),    # column stride 3 (phases split one by one), dilated rows
    (1, 4, 16, 12, 50, 3, 3, (2, 2), (0, 2), (1, 2)),   # stride 2 dilated by 2: every tap in phase 0
    (1, 2, 8, 9, 16, 3, 3, (1, 1), (0, 0), (1, 1)),     # 14 columns: less than a vector
    (3, 3, 12, 21, 70, 3, 3, (1, 1), (1, 1), (1, 1)),   # 3 images: splits and chunks across them
    (1, 16, 24, 14, 30, 3, 3, (2, 2), (1, 1), (1, 1)),  # AVX2: 16 inputs (AVX-512: the direct engine)
    (1, 32, 8, 10, 20, 3, 3, (1, 1), (1, 1), (1, 1)),   # AVX2: 32 inputs
])
def test_few_input_weight_grad_column_lanes(isa, x_layout, g_layout, n, c, k, h, w, r, s, stride, padding, dilation):
    """The float weight gradient of few input channels (AVX-512 1-4, AVX2 1-32) with dy's rows
    contiguous (conv2d_few_outputs.h's conv2d_wgrad_few_inputs: output columns as lanes, dy read
    in place, x in phase-split padded rows): partial vectors of columns and blocks of outputs, taps
    grouped across filter rows, column strides 1-3, dilation, several images; the same bits on 1
    thread and on 2."""
    gen = torch.Generator().manual_seed(c * k + h + w)
    x = make_tensor((n, c, h, w), torch.float32, x_layout, gen)
    p = (h + 2 * padding[0] - dilation[0] * (r - 1) - 1) // stride[0] + 1
    q = (w + 2 * padding[1] - dilation[1] * (s - 1) - 1) // stride[1] + 1
    g = make_tensor((n, k, p, q), torch.float32, g_layout, gen)
    args = ([k, c, r, s], list(stride), list(padding), list(dilation), 1)
    with forced_isa(isa):
        check_weight_grad_on_one_and_two_threads(
            g, x, args, f"few-input wgrad {c}->{k} {r}x{s} @{h}x{w} s{stride} {x_layout} dy {g_layout}", n * p * q)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("special", [math.inf, math.nan])
def test_few_input_weight_grad_ignores_unread_columns(isa, special):
    """That weight gradient's last, partial vector of output columns reads x past the last column
    any output reads (stride 2 over an even width, no padding: column 39 of 40): an inf or NaN there
    must not reach dW (the lanes past Q add nothing, not 0 x inf), as in PyTorch; a non-finite x in
    a column that outputs read does, in the same places as the scalar reference's."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 12, 40, generator=gen)
    g = torch.randn(2, 16, 5, 19, generator=gen)
    args = ([16, 3, 3, 3], [2, 2], [0, 0], [1, 1], 1)
    x[:, :, :, 39] = special
    with forced_isa(isa):
        ours = torch.ops.cnnkernels.conv2d_weight_grad(g, x, *args)
    ref = torch.ops.aten.convolution_backward(g.double(), x.double(), torch.zeros(args[0], dtype=torch.float64), None,
                                              *args[1:4], False, [0, 0], 1, [False, True, False])[1]
    assert ref.isfinite().all()
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-4)
    x[1, 2, 5, 38] = special  # read by output column 18 through tap s = 2
    with forced_isa("scalar"):
        ref = torch.ops.cnnkernels.conv2d_weight_grad(g, x, *args)
    with forced_isa(isa):
        ours = torch.ops.cnnkernels.conv2d_weight_grad(g, x, *args)
    assert not ref.isfinite().all()
    assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.isinf(), ref.isinf())
    torch.testing.assert_close(ours[ref.isfinite()], ref[ref.isfinite()], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n,c,k,h,stride", [
    (2, 64, 16, 24, 1),    # x's channels as vectors, dy's rows broadcast; 2 chunks per image
    (1, 24, 64, 9, 1),     # dy's channels as vectors (24 pads more), x's rows broadcast
    (1, 144, 24, 7, 1),    # x as vectors (144 pads less than 24); AVX2: in place into float dW
    (2, 40, 72, 11, 2),    # stride 2: x gathered; both pad, partial 6-row tiles
    (1, 3, 5, 6, 1),       # fewer channels than a vector on both sides
    (2, 144, 24, 40, 1),   # AVX-512: 8 x 3 tiles of x; 9 tiles, so 4 pixel groups summed in order
    (2, 24, 96, 33, 1),    # AVX-512: 8 x 3 tiles of dy; pixel groups
    (3, 48, 8, 20, 2),     # stride 2, 8 x 3 tiles of x, one partial; pixel groups
    (1, 32, 80, 40, 2),    # stride 2, x broadcast from 20-pixel rows (AVX-512 BF16: 16 + 4 gathered)
    (2, 64, 160, 10, 1),   # AVX-512 float channels_last: x's panels in place, threads split dy's 27 rows
    (1, 24, 144, 56, 1),   # MobileNetV2: 2 pixel groups, chunks made a whole number per group (13 -> 14)
    (4, 64, 256, 24, 1),   # operands 45x the partial totals: 2 pixel groups though 44 tiles
    (2, 64, 64, 28, 1),    # 11 tiles: 3 pixel groups made 4
])
def test_pointwise_weight_grad(isa, dtype, layout, n, c, k, h, stride):
    """1x1 unpadded weight gradients run conv2d_wgrad_1x1 (per-chunk panels, broadcast rows in
    place or packed; with AVX-512 BF16, pairs of pixels, an odd image's last one paired with
    zero); the sums are the same bits on 1 and 2 threads."""
    gen = torch.Generator().manual_seed(c * k + h)
    x = make_tensor((n, c, h, h), dtype, layout, gen)
    p = (h - 1) // stride + 1
    g = make_tensor((n, k, p, p), dtype, layout, gen)
    args = ([k, c, 1, 1], [stride, stride], [0, 0], [1, 1], 1)
    with forced_isa(isa):
        check_weight_grad_on_one_and_two_threads(g, x, args, f"1x1 wgrad {c}->{k} @{h} s{stride} {layout}", n * p * p)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout,weight_layout", [("contiguous", "contiguous"), ("channels_last", "channels_last"),
                                                  ("contiguous", "channels_last"), ("channels_last", "contiguous")])
@pytest.mark.parametrize("n,c,k,h,w,r,s,cfg", [
    (1, 128, 512, 5, 5, 3, 3, dict(padding=1)),                      # res5-like, 25 pixels
    (2, 130, 520, 4, 3, 3, 3, dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1))),
    (1, 512, 512, 1, 1, 3, 3, dict(padding=1)),                      # 1 pixel: 8 of 9 taps in the padding
    (1, 1100, 600, 7, 7, 1, 1, dict(stride=2)),                      # 1x1 stride 2, 16 pixels
    (1, 1024, 600, 7, 7, 1, 1, dict()),                              # plain 1x1: NCHW planes row-copied
])
@pytest.mark.parametrize("bias", [False, True])
def test_few_pixels_run_the_pixel_lane_engine(dtype, isa, layout, weight_layout, n, c, k, h, w, r, s, cfg, bias):
    """Few output pixels and big weights (N P Q * 8 <= K, weights > 2 MiB) take the role-swapped
    engine: input patches packed per image, W read in place (either weight layout), outputs
    scattered per layout."""
    gen = torch.Generator().manual_seed(n * c + k)
    fmt = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    x = torch.randn(n, c, h, w, generator=gen).to(dtype).contiguous(memory_format=fmt[layout])
    wt = torch.randn(k, c, r, s, generator=gen).to(dtype).contiguous(memory_format=fmt[weight_layout])
    b = torch.randn(k, generator=gen).to(dtype) if bias else None
    with forced_isa(isa):
        y = CF.conv2d(x, wt, b, **cfg)
    with torch_without_onednn():
        ref64 = F.conv2d(x.double(), wt.double(), None if b is None else b.double(), **cfg)
        theirs = F.conv2d(x, wt, b, **cfg)
    assert y.shape == ref64.shape
    assert_calibrated(y, theirs, ref64, f"few pixels {c}->{k} @{h}x{w} {cfg}", c * r * s)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("n,c,k,h,w,r,s,stride,padding,layout", [
    (1, 3, 64, 40, 38, 7, 7, 2, 3, "contiguous"),     # the ResNet stem's geometry on a small image
    (1, 3, 13, 18, 17, 5, 5, 2, 2, "channels_last"),  # 13 dy channels: bfloat16 pairs end with a zero
    (2, 3, 24, 23, 29, 7, 7, 2, 3, "channels_last"),  # odd sizes: the last fold row / column half used
    (1, 2, 16, 15, 14, 3, 3, 2, 1, "strided"),
    (1, 1, 8, 17, 16, 5, 5, 3, 2, "contiguous"),      # stride 3: 9 phases, taps missing from some
    (2, 4, 12, 11, 13, 3, 3, 2, 0, "channels_last"),  # 16 folded channels: one whole vector
    (1, 3, 8, 12, 10, 1, 1, 2, 0, "contiguous"),      # 1x1 stride 2: three of four phases get nothing
    (1, 2, 8, 14, 15, 3, 4, (2, 1), (1, 2), "contiguous"),  # strides and pads differ by dimension
    (1, 5, 8, 12, 12, 3, 3, 2, 1, "contiguous"),      # 20 folded channels: the per-phase path
])
def test_dgrad_folded_phases(isa, dtype, n, c, k, h, w, r, s, stride, padding, layout):
    """The input gradient of strided convolutions with few input channels runs as one
    stride-1 convolution whose out channels are (row phase, column phase, channel), the weights
    of taps a phase lacks zero, scattered to dx after. Checked like every path, layouts and odd
    sizes included, against the per-phase path's cases on either side of 16 folded channels."""
    gen = torch.Generator().manual_seed(c * k + h * w + r)
    x = make_tensor((n, c, h, w), dtype, layout, gen)
    wt = make_tensor((k, c, r, s), dtype, "contiguous", gen)
    y_shape = F.conv2d(x.float(), wt.float(), None, stride, padding).shape
    g = make_tensor(tuple(y_shape), dtype, layout, gen)
    with forced_isa(isa):
        dx = torch.ops.cnnkernels.conv2d_input_grad(g, wt, list(x.shape), list(_pair(stride)), list(_pair(padding)),
                                                    [1, 1], 1, layout == "channels_last")
    cfg = dict(stride=stride, padding=padding, dilation=1, groups=1)
    with torch_without_onednn():
        theirs = run_conv(F.conv2d, x, wt, None, cfg, g)
        ref64 = run_conv(F.conv2d, x.double(), wt.double(), None, cfg, g.double())
    assert_calibrated(dx, theirs[1], ref64[1], f"folded dgrad {c}->{k} @{h}x{w} {r}x{s}/{stride} p{padding}", k * r * s)


@pytest.mark.parametrize("dtype", SIMD_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("c,k,h,r,stride,padding", [
    (64, 32, 9, 1, 1, 0),   # 1x1: dy read in place, no phase padding
    (48, 40, 10, 1, 2, 0),  # 1x1 stride 2: one phase reads dy, three write zeros
    (4, 24, 10, 1, 2, 0),   # the same with 4 channels: float32 takes the folded phases (16 lanes)
    (24, 20, 8, 3, 1, 0),   # 3x3 unpadded: dy needs the phases' padding, so it is packed
])
def test_dgrad_reads_channels_last_grad_in_place(dtype, isa, c, k, h, r, stride, padding):
    """The direct engine's input gradient reads a channels-last dy in place when no phase needs
    padding. dy here is a slice of a larger channels-last tensor (images, rows and pixels farther
    apart than dense), so only the tensor's own strides find its elements."""
    gen = torch.Generator().manual_seed(c + k + h)
    x = make_tensor((3, c, h, h), dtype, "channels_last", gen)
    wt = make_tensor((k, c, r, r), dtype, "contiguous", gen)
    y_shape = F.conv2d(x.float(), wt.float(), None, stride, padding).shape
    big = make_tensor((5, k, y_shape[2] * 2, y_shape[3] * 3), dtype, "channels_last", gen)
    g = big[1:4, :, ::2, 1::3]
    assert g.shape == y_shape and g.stride(1) == 1 and not g.is_contiguous(memory_format=torch.channels_last)
    with forced_isa(isa):
        dx = torch.ops.cnnkernels.conv2d_input_grad(g, wt, list(x.shape), [stride] * 2, [padding] * 2, [1, 1], 1, True)
    cfg = dict(stride=stride, padding=padding, dilation=1, groups=1)
    with torch_without_onednn():
        theirs = run_conv(F.conv2d, x, wt, None, cfg, g)
        ref64 = run_conv(F.conv2d, x.double(), wt.double(), None, cfg, g.double())
    assert_calibrated(dx, theirs[1], ref64[1], f"in-place dy {c}->{k} @{h} {r}x{r}/{stride}", k * r * r)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout,weight_layout,grad_layout", [
    ("contiguous", "contiguous", "contiguous"), ("channels_last", "channels_last", "channels_last"),
    ("strided", "channels_last", "contiguous"), ("contiguous", "strided", "strided")])
@pytest.mark.parametrize("n,c,k,h,w,padding", [
    (1, 64, 64, 12, 12, 1),     # even output: whole 2x2 tiles, one out-channel block
    (2, 32, 48, 9, 7, 1),       # odd rows and columns: half tiles at the edges; a partial block
    (1, 48, 80, 13, 12, 0),     # unpadded: the input gradient pads dy by 2
    (3, 96, 32, 6, 9, 2),       # padding 2: the input gradient's dy is unpadded
    (1, 128, 130, 14, 14, (1, 0)),  # 130 out: partial blocks (the input gradient runs direct)
    (2, 64, 32, 10, 12, 0),     # unpadded, even output: channels_last x read in place
    # the weight gradient takes 2^20+ tile x k x c products: row blocks 48 + 48, one column block
    (2, 128, 96, 16, 14, 1),
    (1, 96, 176, 20, 18, 0),    # row blocks 80 + 96, column blocks 64 + 32 (a partial vector block)
    (1, 64, 256, 16, 16, 1),    # 256 out: row blocks 4 x 64 on 2 threads (3 would be 80 + 80 + 96)
    (1, 144, 128, 6, 6, 1),     # 9 tiles, wide: the filter streamed in chunks of 64 + 64 + 16 in channels
    (1, 256, 288, 18, 18, 1),   # 81 tiles < 288 out, V over 1 MiB: each thread's out blocks' U whole
    (1, 512, 64, 14, 14, 1),    # 512 in: the weight gradient walks its tiles in chunks of 64 (49 here)
])
@pytest.mark.parametrize("bias", [False, True])
def test_winograd_3x3(isa, layout, weight_layout, grad_layout, n, c, k, h, w, padding, bias):
    """float32 3x3 stride-1 convolutions with 32+ channels (a multiple of 16 on the read side)
    and 24+ 2x2 output tiles (9+ with 128+ channels on both sides; the weight gradient 24+) run
    Winograd F(2x2, 3x3): the forward, the input gradient as a convolution of dy with the flipped
    filter, and the weight gradient (reduction over tiles). Each gives the same bits on 1 and 2
    threads (the work splits differently). Same tolerance as every path."""
    gen = torch.Generator().manual_seed(c * k + h * w)
    x = make_tensor((n, c, h, w), torch.float32, layout, gen)
    wt = make_tensor((k, c, 3, 3), torch.float32, weight_layout, gen)
    b = make_tensor((k,), torch.float32, "contiguous", gen) if bias else None
    y_shape = F.conv2d(x, wt, None, 1, padding).shape
    g = make_tensor(tuple(y_shape), torch.float32, grad_layout, gen)
    y, dx, dw = {}, {}, {}
    with forced_isa(isa):
        threads = torch.get_num_threads()
        try:
            for t in (1, 2):
                torch.set_num_threads(t)
                y[t] = CF.conv2d(x, wt, b, 1, padding)
                dx[t] = torch.ops.cnnkernels.conv2d_input_grad(g, wt, list(x.shape), [1, 1], list(_pair(padding)),
                                                               [1, 1], 1, layout == "channels_last")
                dw[t] = torch.ops.cnnkernels.conv2d_weight_grad(g, x, [k, c, 3, 3], [1, 1], list(_pair(padding)),
                                                                [1, 1], 1)
        finally:
            torch.set_num_threads(threads)
    with torch_without_onednn():
        theirs = run_conv(F.conv2d, x, wt, b, dict(stride=1, padding=padding, dilation=1, groups=1), g)
        ref64 = run_conv(F.conv2d, x.double(), wt.double(), None if b is None else b.double(),
                         dict(stride=1, padding=padding, dilation=1, groups=1), g.double())
    what = f"{c}->{k} @{h}x{w} p{padding}"
    for name, result in (("output", y), ("grad_input", dx), ("grad_weight", dw)):
        assert torch.equal(result[1], result[2]), f"winograd {name} {what}: 1 and 2 threads differ"
    assert_calibrated(y[2], theirs[0], ref64[0], f"winograd output {what}", 9 * c)
    assert_calibrated(dx[2], theirs[1], ref64[1], f"winograd grad_input {what}", 9 * k)
    assert_calibrated(dw[2], theirs[2], ref64[2], f"winograd grad_weight {what}", y[2].numel() // k)


@pytest.mark.parametrize("weight_layout", ["contiguous", "channels_last"])
def test_few_tile_forward_of_wide_channels_last_weights(weight_layout):
    """res5's 3x3 512 -> 512 @7 at N=1 (16 tiles): with channels-last weights, where 512-bit FMAs
    run at full rate (zmm_fma_rate_ratio() >= 1.5: measured once, 0 without AVX-512), the forward
    runs direct summation, which reads those weights in place; KCRS weights and split-FMA hosts
    keep Winograd. Either engine matches torch."""
    ratio = _C.zmm_fma_rate_ratio()
    assert (ratio > 0) == ("avx512" in _C.host_isas()), ratio
    assert ratio == 0 or 0.5 < ratio < 3, ratio
    gen = torch.Generator().manual_seed(512)
    x = make_tensor((1, 512, 7, 7), torch.float32, "channels_last", gen)
    wt = make_tensor((512, 512, 3, 3), torch.float32, weight_layout, gen)
    b = make_tensor((512,), torch.float32, "contiguous", gen)
    y = CF.conv2d(x, wt, b, 1, 1)
    with torch_without_onednn():
        theirs = F.conv2d(x, wt, b, 1, 1)
        ref64 = F.conv2d(x.double(), wt.double(), b.double(), 1, 1)
    assert_calibrated(y, theirs, ref64, f"512 @7 {weight_layout} weights", 9 * 512)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_winograd_wide_tile_blocks(isa, layout):
    """512 in channels: the forward's tile blocks grow to in / 8 tiles where there are items
    enough (144 tiles x 256 out here: blocks of 36 on AVX-512, 48 on AVX2, against 24), and the
    input gradient (256 in) keeps the L2-sized ones."""
    gen = torch.Generator().manual_seed(512)
    x = make_tensor((1, 512, 24, 24), torch.float32, layout, gen)
    w = make_tensor((256, 512, 3, 3), torch.float32, "contiguous", gen) * 0.05
    g = make_tensor((1, 256, 24, 24), torch.float32, layout, gen)
    args = ([1, 1], [1, 1], [1, 1], 1)
    with forced_isa(isa):
        y = torch.ops.cnnkernels.conv2d(x, w, None, *args)
        dx = torch.ops.cnnkernels.conv2d_input_grad(g, w, list(x.shape), *args, layout == "channels_last")
    with torch_without_onednn():
        theirs = F.conv2d(x, w, None, 1, 1)
        ref64 = F.conv2d(x.double(), w.double(), None, 1, 1)
        dx_theirs = torch.ops.aten.convolution_backward(g, x, w, None, *args[:3], False, [0, 0], 1,
                                                        [True, False, False])[0]
        dx64 = torch.ops.aten.convolution_backward(g.double(), x.double(), w.double(), None, *args[:3], False,
                                                   [0, 0], 1, [True, False, False])[0]
    assert_calibrated(y, theirs, ref64, "wide tile blocks fwd", 512 * 9)
    assert_calibrated(dx, dx_theirs, dx64, "wide tile blocks dgrad", 256 * 9)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("special", [math.inf, -math.inf, math.nan])
def test_winograd_non_finite_inputs_propagate_like_summation(isa, special):
    """inf - inf inside a Winograd transform gives NaN where summation gives +-inf: a non-finite
    result (output, input or weight gradient) sends the call back to direct summation, so the inf
    and NaN pattern is PyTorch's."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 96, 16, 16, generator=gen)   # 2^20+ products: the weight gradient too
    wt = torch.randn(96, 96, 3, 3, generator=gen)
    g = torch.randn(2, 96, 16, 16, generator=gen)
    x[0, 3, 4, 4] = x[0, 3, 4, 6] = x[1, 7, 0, 0] = special   # two in one tile's rows 0 and 2
    g[1, 5, 2, 2] = g[1, 5, 2, 4] = special
    with forced_isa(isa):
        y = CF.conv2d(x, wt, None, 1, 1)
        dx = torch.ops.cnnkernels.conv2d_input_grad(g, wt, list(x.shape), [1, 1], [1, 1], [1, 1], 1, False)
        dw = torch.ops.cnnkernels.conv2d_weight_grad(g, x, list(wt.shape), [1, 1], [1, 1], [1, 1], 1)
    with torch_without_onednn():
        theirs = run_conv(F.conv2d, x, wt, None, dict(stride=1, padding=1, dilation=1, groups=1), g)
    for ours, ref in ((y, theirs[0]), (dx, theirs[1]), (dw, theirs[2])):
        assert not ref.isfinite().all()
        assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.isinf(), ref.isinf())
        assert torch.equal(ours.isinf() & (ours > 0), ref.isinf() & (ref > 0))
        torch.testing.assert_close(ours[ref.isfinite()], ref[ref.isfinite()], rtol=1e-4, atol=1e-4)


def assert_within_bfloat16_ulp(result, r64, what):
    """F(4x4)'s float32 tiles leave ~1e-6 of the scale (up to 3e-5 at the worst result): every
    bfloat16 result within an ulp of float64's rounded to bfloat16 (or 2^-14 of the largest), and
    under 1% of them off it."""
    expect = r64.bfloat16().double()
    ulp = torch.exp2(torch.floor(torch.log2(expect.abs().clamp_min(2.0**-100))) - 7)
    diff = (result.double() - expect).abs()
    assert (diff <= torch.maximum(ulp, r64.abs().max() * 2.0**-14)).all(), f"{what}: over 1 ulp"
    assert (diff > 0).double().mean() < 0.01, f"{what}: {(diff > 0).double().mean():.4f} differ"


@pytest.mark.parametrize("isa,engine", [("avx2", None), ("avx512", "off"), ("avx512", "on")])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,k,h,w,padding", [
    (1, 64, 64, 28, 28, 1),     # whole 4x4 tiles (49) under 64 outputs: the filter streamed
    (2, 32, 48, 19, 23, 1),     # partial tiles at the bottom and right edges, a partial out block
    (2, 32, 32, 36, 34, 1),     # 162 tiles over 64 outputs: tile blocks, each thread's U whole
    (2, 48, 80, 30, 26, 0),     # unpadded: the input gradient pads dy by 2
    (1, 96, 32, 26, 29, 2),     # padding 2: the input gradient's dy is unpadded
    (1, 64, 256, 28, 28, 1),    # 49 tiles < 256 outputs: the filter streamed in chunks of in channels
    (2, 64, 80, 48, 40, 1),     # 240 tiles, 80 outputs in blocks of 64 + 16
    (3, 512, 64, 14, 14, 1),    # 48 tiles, 512 in: chunks of 64 + ... in channels
])
@pytest.mark.parametrize("bias", [False, True])
def test_bfloat16_winograd_4x4(isa, engine, layout, n, c, k, h, w, padding, bias):
    """bfloat16 3x3 stride-1 convolutions with 48+ 4x4 output tiles (32+ with 512 channels in)
    run Winograd F(4x4, 3x3) in float32 (conv2d_winograd.h), forward and input gradient, on the
    float engine and beside the vdpbf16ps engine (not where AMX tiles take the layer). The same
    bits on 1 and 2 threads; the error against float64 within the tolerance of every path."""
    gen = torch.Generator().manual_seed(c * k + h * w)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(n, c, h, w, generator=gen).bfloat16().contiguous(memory_format=fmt)
    wt = (torch.randn(k, c, 3, 3, generator=gen) / (3 * c**0.5)).bfloat16().contiguous(memory_format=fmt)
    b = torch.randn(k, generator=gen).bfloat16() if bias else None
    y_shape = F.conv2d(x.float(), wt.float(), None, 1, padding).shape
    g = torch.randn(y_shape, generator=gen).bfloat16().contiguous(memory_format=fmt)
    args = ([1, 1], [padding] * 2, [1, 1], 1)
    y, dx = {}, {}
    with forced_isa(isa), (forced_bf16_dot(engine) if engine else contextlib.nullcontext()):
        threads = torch.get_num_threads()
        try:
            for t in (1, 2):
                torch.set_num_threads(t)
                y[t] = torch.ops.cnnkernels.conv2d(x, wt, b, *args)
                dx[t] = torch.ops.cnnkernels.conv2d_input_grad(g, wt, list(x.shape), *args, layout == "channels_last")
        finally:
            torch.set_num_threads(threads)
        names = [_C.cpu_kernel_name(op, "bf16") for op in ("conv2d_fprop", "conv2d_dgrad")]
    assert all("winograd" in name for name in names), names
    cfg = dict(stride=1, padding=padding, dilation=1, groups=1)
    with torch_without_onednn():
        theirs = run_conv(F.conv2d, x, wt, b, cfg, g)
        ref64 = run_conv(F.conv2d, x.double(), wt.double(), None if b is None else b.double(), cfg, g.double())
    what = f"{c}->{k} @{h}x{w} p{padding}"
    for name, result, r64 in (("output", y, ref64[0]), ("grad_input", dx, ref64[1])):
        assert torch.equal(result[1], result[2]), f"F(4x4) {name} {what}: 1 and 2 threads differ"
        assert result[2].is_contiguous(memory_format=fmt), f"F(4x4) {name} {what}: layout"
        # (assert_calibrated's bfloat16 floor, sqrt(terms) ulps, let a 1% error in one of A^T's
        # coefficients pass)
        assert_within_bfloat16_ulp(result[2], r64, f"F(4x4) {name} {what}")
    assert_calibrated(y[2], theirs[0], ref64[0], f"F(4x4) output {what}", 9 * c)
    assert_calibrated(dx[2], theirs[1], ref64[1], f"F(4x4) grad_input {what}", 9 * k)


@pytest.mark.parametrize("isa,engine", [("avx2", None), ("avx512", "off"), ("avx512", "on")])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("n,c,k,h,w,padding", [
    (2, 64, 64, 32, 32, 1),     # one super-block, 8 splits of the tiles summed after
    (1, 512, 96, 32, 32, 1),    # 8 super-blocks, one split: each item finishes its own dw
    (2, 48, 64, 34, 26, 0),     # unpadded; 48 in channels: lanes past C in a 64-wide block
    (2, 32, 64, 34, 38, 1),     # partial tiles at the bottom and right edges (11% more outputs)
    (1, 64, 80, 28, 28, 2),     # padding 2; 80 out channels: row blocks of 48 + 32
    (8, 64, 64, 14, 14, 1),     # 14 wide: 128 tiles covering 31% more outputs than the layer has
])
def test_bfloat16_winograd_4x4_weight_gradient(isa, engine, layout, n, c, k, h, w, padding):
    """bfloat16 3x3 stride-1 weight gradients of 48+ 4x4 output tiles run Winograd F(4x4, 3x3)
    in float32 (winograd_wgrad), on the float engine and beside the vdpbf16ps engine (not where
    AMX tiles take the layer). The same bits on 1 and 2 threads; each result
    within an ulp of float64's rounded to bfloat16 (or 2^-14 of the largest), under 1% of them
    off it."""
    gen = torch.Generator().manual_seed(c * k + h * w)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(n, c, h, w, generator=gen).relu().bfloat16().contiguous(memory_format=fmt)
    y_shape = F.conv2d(x.float(), torch.zeros(k, c, 3, 3), None, 1, padding).shape
    g = torch.randn(y_shape, generator=gen).bfloat16().contiguous(memory_format=fmt)
    args = ([1, 1], [padding] * 2, [1, 1], 1)
    dw = {}
    with forced_isa(isa), (forced_bf16_dot(engine) if engine else contextlib.nullcontext()):
        threads = torch.get_num_threads()
        try:
            for t in (1, 2):
                torch.set_num_threads(t)
                dw[t] = torch.ops.cnnkernels.conv2d_weight_grad(g, x, [k, c, 3, 3], *args)
        finally:
            torch.set_num_threads(threads)
        name = _C.cpu_kernel_name("conv2d_wgrad", "bf16")
    assert "winograd" in name, name
    what = f"{c}->{k} @{h}x{w} p{padding}"
    assert torch.equal(dw[1], dw[2]), f"F(4x4) grad_weight {what}: 1 and 2 threads differ"
    wt = torch.zeros(k, c, 3, 3, dtype=torch.float64)
    with torch_without_onednn():
        r64 = run_conv(F.conv2d, x.double(), wt, None, dict(stride=1, padding=padding, dilation=1, groups=1),
                       g.double())[2]
    assert_within_bfloat16_ulp(dw[2], r64, f"F(4x4) grad_weight {what}")


@pytest.mark.parametrize("special", [math.inf, -math.inf, math.nan])
def test_bfloat16_winograd_non_finite_inputs_propagate_like_summation(special):
    """The bfloat16 F(4x4) tiles send a non-finite result back to direct summation too: output,
    input gradient and (64 whole tiles) weight gradient."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(1, 64, 32, 32, generator=gen)
    wt = torch.randn(64, 64, 3, 3, generator=gen) / 24
    g = torch.randn(1, 64, 32, 32, generator=gen)
    x[0, 3, 4, 4] = x[0, 3, 4, 6] = x[0, 7, 0, 0] = special   # two in one tile's rows
    g[0, 5, 2, 2] = g[0, 5, 2, 4] = special
    x, wt, g = x.bfloat16(), wt.bfloat16(), g.bfloat16()
    y = CF.conv2d(x, wt, None, 1, 1)
    dx = torch.ops.cnnkernels.conv2d_input_grad(g, wt, list(x.shape), [1, 1], [1, 1], [1, 1], 1, False)
    dw = torch.ops.cnnkernels.conv2d_weight_grad(g, x, list(wt.shape), [1, 1], [1, 1], [1, 1], 1)
    assert all("winograd" in _C.cpu_kernel_name(op, "bf16") for op in ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad"))
    with torch_without_onednn():
        theirs = run_conv(F.conv2d, x.float(), wt.float(), None, dict(stride=1, padding=1, dilation=1, groups=1),
                          g.float())
    for ours, ref in ((y, theirs[0]), (dx, theirs[1]), (dw, theirs[2])):
        assert not ref.isfinite().all()
        assert torch.equal(ours.isnan(), ref.isnan()) and torch.equal(ours.isinf(), ref.isinf())
        assert torch.equal(ours.isinf() & (ours > 0), ref.isinf() & (ref > 0))
        torch.testing.assert_close(ours[ref.isfinite()].float(), ref[ref.isfinite()], rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("bf16_dot", ["on", "off"])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("c,k,groups,h,w,stride", [
    (64, 64, 4, 9, 16, 1),      # 16 a group (ResNeXt's 512 @14): 14-pixel tiles, the last overlapping
    (128, 128, 4, 7, 7, 1),     # 32 a group (1024 @7): 7 x 2 tiles
    (64, 64, 4, 10, 32, 2),     # column stride 2: 2 MR + 1 columns a tile; the input gradient's column pairs
    (128, 128, 4, 6, 16, 2),    # 32 a group at stride 2 (the vdpbf16ps engine's channels_last input gradient: phases)
    (16, 16, 1, 8, 20, 1),      # one group of 16 outputs
    (32, 16, 1, 9, 33, 2),      # one group at stride 2, an odd width
])
def test_bfloat16_row_tiles(bf16_dot, layout, c, k, groups, h, w, stride):
    """Rows of 3 taps with 16 or 32 outputs a group run row tiles (conv2d_direct.h, conv_row_tile:
    each broadcast input meets the three taps of its row) on both AVX-512 bfloat16 engines, the
    vdpbf16ps one over channel pairs: forward and input gradient (both column phases at once at
    stride 2) against PyTorch, the weight gradient with them."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=3, s=3, groups=groups, stride=(stride, stride), padding=(1, 1),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout,
               seed=c * h + w)
    with forced_isa("avx512"), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, torch.bfloat16)


@pytest.mark.parametrize("bf16_dot", ["on", "off"])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("c,k,groups,h,w,stride", [
    (64, 64, 8, 6, 16, 1),     # 8 a group (ResNeXt's 256 @28): two groups a vector, 14-pixel tiles, the last overlapping
    (32, 32, 8, 7, 9, 1),      # 4 a group: four a vector, 7-pixel tiles
    (16, 32, 8, 5, 30, 1),     # 2 inputs, 4 outputs a group
    (24, 48, 6, 5, 14, 1),     # 4 inputs, 8 outputs a group: three blocks of 16 lanes
    (8, 8, 2, 6, 16, 1),       # 8 outputs in all: one block, half its lanes stored
    (48, 48, 8, 6, 15, 1),     # 6 a group: 6 does not divide the lanes, other engines
    (64, 64, 8, 9, 32, 2),     # stride 2 (ResNeXt's 256 @56 /2): the input gradient's column pairs
    (32, 16, 8, 6, 14, 2),     # 4 in, 2 out a group: dy pairs of 2 channels, rows of 14
])
def test_bfloat16_grouped_lanes_pairs(bf16_dot, layout, c, k, groups, h, w, stride):
    """Grouped layers of 2-8 even channels a group run the row tiles of conv2d_grouped.h on the
    vdpbf16ps engine too, each lane permuted its group's channel pair: at column stride 1 the
    forward, and the input gradient as a forward of dy (dgrad_as_forward); at stride 2 the input
    gradient's column pairs. All three results against PyTorch, on both AVX-512 bfloat16 engines."""
    cfg = dict(n=2, c=c, k=k, h=h, w=w, r=3, s=3, groups=groups, stride=(stride, stride), padding=(1, 1),
               dilation=(1, 1), bias=True, x_layout=layout, w_layout="contiguous", g_layout=layout, seed=c * h + w)
    with forced_isa("avx512"), forced_bf16_dot(bf16_dot):
        check_against_torch(cfg, torch.bfloat16)


@pytest.mark.parametrize("op,n,c,k,size,stride,groups", [
    ("dgrad", 2, 3, 64, 56, 1, 1),       # VGG's conv1_1: 3 input channels, stride 1
])  # (The weight gradients of 9-32 outputs a group over fewer than 8 inputs, MobileNetV2's 3 ->
    # 32 stem, take a rule too, but at sizes a test runs their bits came out the same on both
    # engines, so they could not tell.)
def test_bfloat16_dot_engine_leaves_layers_to_the_float_engine(op, n, c, k, size, stride, groups):
    """Where the float engine measured faster (kernel_table.inc: stride-1 input gradients of up to
    7 input channels), the vdpbf16ps engine's table runs it: the same bits as the float engine's
    table, which vdpbf16ps's pairwise sums do not give on these layers (each failed with the rule
    off)."""
    gen = torch.Generator().manual_seed(c + k)
    x = torch.randn(n, c, size, size, generator=gen).bfloat16().contiguous(memory_format=torch.channels_last)
    w = torch.randn(k, c // groups, 3, 3, generator=gen).bfloat16()
    y_shape = F.conv2d(x.float(), w.float(), None, stride, 1, 1, groups).shape
    g = torch.randn(y_shape, generator=gen).bfloat16().contiguous(memory_format=torch.channels_last)
    args = ([stride] * 2, [1, 1], [1, 1], groups)
    results = {}
    for engine in ("on", "off"):
        with forced_isa("avx512"), forced_bf16_dot(engine):
            if op == "wgrad":
                results[engine] = torch.ops.cnnkernels.conv2d_weight_grad(g, x, list(w.shape), *args)
            else:
                results[engine] = torch.ops.cnnkernels.conv2d_input_grad(g, w, list(x.shape), *args, True)
    assert torch.equal(results["on"], results["off"])


@pytest.mark.parametrize("isa,engine", [("avx2", None), ("avx512", "off"), ("avx512", "on"), ("avx512", "amx")])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_bfloat16_rounds_once_from_float_accumulation(isa, engine, layout):
    """The bfloat16 kernels accumulate in float32 and round once: on bfloat16 inputs (exact in
    float32, and so are their products) each result is the float32 kernels' result on the same
    values rounded to nearest even, bit for bit, for the forward and all three gradients. The
    AVX-512 BF16 kernels (fprop, dgrad, wgrad) add a pair's two products in one vdpbf16ps, a
    different float summation order: there a result next to a rounding boundary may round the
    other way, by one bfloat16 ulp, and rarely."""
    gen = torch.Generator().manual_seed(5)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(2, 24, 11, 14, generator=gen).bfloat16().contiguous(memory_format=fmt)
    w = torch.randn(40, 12, 3, 3, generator=gen).bfloat16()
    b = torch.randn(40, generator=gen).bfloat16()
    cfg = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    g = torch.randn(2, 40, 6, 12, generator=gen).bfloat16().contiguous(memory_format=fmt)
    with forced_isa(isa), (forced_bf16_dot(engine) if engine else contextlib.nullcontext()):
        ours = run_conv(CF.conv2d, x, w, b, cfg, g)
        f32 = run_conv(CF.conv2d, x.float(), w.float(), b.float(), cfg, g.float())
        dot = {op: "avx512bf16" in _C.cpu_kernel_name(op, "bf16") for op in ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad")}
    ops = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "conv2d_bgrad")
    for op, o, r in zip(ops, ours, f32):
        assert o.dtype == torch.bfloat16 and o.shape == r.shape, op
        expect = r.bfloat16()
        if not dot.get(op):
            assert torch.equal(o, expect), op
            continue
        ulp = torch.exp2(torch.floor(torch.log2(expect.float().abs().clamp_min(2.0**-100))) - 7)
        diff = (o.float() - expect.float()).abs()
        assert (diff <= ulp).all(), f"{op}: off by more than one ulp"
        assert (diff > 0).float().mean() < 0.05, f"{op}: {(diff > 0).float().mean():.3f} of the results differ"
