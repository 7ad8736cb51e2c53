import contextlib
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import cnnkernels
from cnnkernels import _C

# CI replays the same examples every run (derandomize); locally every run draws fresh ones.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

ALL_ISAS = ("scalar", "avx2", "avx512")
HOST_ISAS = tuple(_C.host_isas())
HAS_CUDA = torch.cuda.is_available() and _C.cuda_built()


@pytest.fixture(autouse=True, scope="session")
def _poison_outputs():
    """Every op output starts as NaN (indices: INT64_MIN): an unwritten element fails a test."""
    _C.set_poison_outputs(True)
    yield
    _C.set_poison_outputs(False)


@contextlib.contextmanager
def _setting(get, set_, value):
    """Set a process-wide kernel setting for the block, then put back what it was."""
    before = get()
    set_(value)
    try:
        yield
    finally:
        set_(before)


@contextlib.contextmanager
def forced_isa(isa):
    """Run the CPU kernels of `isa` (None: leave the choice alone); skip the test where the host
    cannot run it."""
    if isa is None:
        yield
        return
    if isa not in HOST_ISAS:
        pytest.skip(f"this CPU cannot run {isa} kernels")
    with _setting(_C.cpu_isa, _C.set_cpu_isa, isa):
        yield


@contextlib.contextmanager
def forced_bf16_dot(mode):
    """Run the AVX-512 bfloat16 convolutions with the vdpbf16ps engine ("on"), the float engine
    ("off"), AMX tiles where they apply ("amx") or the measured choice ("auto"); skip "on" where
    the host has no AVX512-BF16 and "amx" where this process cannot run AMX-BF16."""
    if mode == "on" and not _C.host_has_avx512_bf16():
        pytest.skip("this CPU has no AVX512-BF16")
    if mode == "amx" and not _C.host_can_run_amx_bf16():
        pytest.skip("this CPU (or OS) cannot run AMX-BF16 tiles")
    with _setting(_C.bf16_dot, _C.set_bf16_dot, mode):
        yield


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    why = "no CUDA GPU" if _C.cuda_built() else "no CUDA GPU and no CUDA kernels in this build"
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# ---- tolerance: calibrated against PyTorch's own error in the same dtype ----------------------

EPS = {torch.float32: 2.0**-23, torch.float64: 2.0**-52, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}


def max_err(a, ref):
    return (a.double() - ref.double()).abs().max().item() if a.numel() else 0.0


def assert_calibrated(ours, theirs, ref64, what="", terms=1):
    """Our error against the float64 result is at most 2x PyTorch's error in the same dtype, with
    a floor for when PyTorch happens to be far more exact: sqrt(terms) ulps of the result's scale
    (at least 8), the expected rounding error of a sequential sum of `terms` products. PyTorch's
    blocked sums can beat a sequential one by that much on long reductions."""
    assert ours.shape == ref64.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != {theirs.dtype}"
    assert not torch.isnan(ours).any(), f"{what}: NaN in the result (an unwritten element?)"
    if ours.numel() == 0:
        return
    scale = max(1.0, ref64.abs().max().item())
    # float64's bar is PyTorch's float64 result itself (error 0): allow for summation order.
    ulps = max(64 if ours.dtype == torch.float64 else 8, math.sqrt(terms))
    floor = ulps * EPS[ours.dtype] * scale
    err, torch_err = max_err(ours, ref64), max_err(theirs, ref64)
    assert err <= 2 * torch_err + floor, f"{what}: error {err:.3g} vs PyTorch's {torch_err:.3g} (floor {floor:.3g})"


def round_to_tf32(t):
    """float32 -> TF32 (10 mantissa bits, nearest, ties away from zero), as cvt.rna.tf32.f32."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view(t.shape)


def make_tensor(shape, dtype, layout, gen, device="cpu"):
    """A random tensor in one of the layouts the ops must accept: 'contiguous', 'channels_last',
    'strided' (every other element of a wider tensor, so no dense stride pattern) or
    'channels_last_slice' (channels 4.. of a channels_last tensor of 8 more: pixels farther apart
    than their channels) or 'row_slice' (the first columns of a contiguous tensor 5 wider: rows
    contiguous, farther apart than their length) or 'outer_slice' (every other entry along the
    first dimension: each one dense, farther apart than its size)."""
    wide = list(shape)
    if layout == "strided":
        wide[-1] *= 2
    if layout == "row_slice":
        wide[-1] += 5
    if layout == "channels_last_slice":
        wide[1] += 8
    if layout == "outer_slice":
        wide[0] *= 2
    t = torch.randn(wide, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    if layout == "strided":
        t = t[..., ::2]
    elif layout == "row_slice":
        t = t[..., :shape[-1]]
    elif layout == "outer_slice":
        t = t[::2]
    elif layout == "channels_last_slice":
        t = t.contiguous(memory_format=torch.channels_last)[:, 4:4 + shape[1]]
    elif layout == "channels_last" and len(shape) == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t
