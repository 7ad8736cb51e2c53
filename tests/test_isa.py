"""The CPU ISA: chosen once from CPUID, forced by CNNKERNELS_CPU_ISA or set_cpu_isa, reported by
show_config, and each forced path really runs its own kernels."""
import io
import os
import subprocess
import sys

import pytest
import torch

import cnnkernels
from cnnkernels import _C
from conftest import ALL_ISAS, HOST_ISAS, forced_isa


def run_python(code, **env):
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("isa", ALL_ISAS)
def test_environment_variable_forces_the_isa(isa):
    if isa not in HOST_ISAS:
        pytest.skip(f"this CPU cannot run {isa}")
    out = run_python("import cnnkernels; print(cnnkernels._C.cpu_isa())", CNNKERNELS_CPU_ISA=isa)
    assert out.stdout.strip() == isa


def test_default_is_the_best_host_isa_and_bad_values_are_reported():
    out = run_python("import cnnkernels; print(cnnkernels._C.cpu_isa())", CNNKERNELS_CPU_ISA="")
    assert out.stdout.strip() == HOST_ISAS[-1]
    out = run_python("import cnnkernels; print(cnnkernels._C.cpu_isa())", CNNKERNELS_CPU_ISA="sse9")
    assert out.stdout.strip() == HOST_ISAS[-1] and "sse9" in out.stderr


@pytest.mark.parametrize("isa", ALL_ISAS)
def test_forced_isa_selects_its_kernels(isa):
    with forced_isa(isa):
        assert _C.cpu_isa() == isa
        for dt in ("f32", "bf16"):  # the SIMD kernels on avx2 / avx512, the reference on scalar
            for op in ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "conv2d_bgrad", "max_pool2d_fwd", "max_pool2d_bwd"):
                name = _C.cpu_kernel_name(op, dt)
                assert name.startswith(op + "_") and f"_{dt}__{isa}" in name, name
                assert (isa == "scalar") == name.endswith("__scalar_ref"), name
        # float64 always runs the plain reference
        assert _C.cpu_kernel_name("max_pool2d_bwd", "f64").endswith("__scalar_ref")


def test_set_cpu_isa_rejects_unknown_names():
    with pytest.raises(ValueError):
        _C.set_cpu_isa("neon")


def test_bf16_dot_mode_is_set_by_environment_and_checked():
    """CNNKERNELS_BF16_DOT sets the bfloat16 engine mode (bad values are reported and ignored);
    set_bf16_dot rejects unknown modes; on, off and auto name their kernels."""
    for mode in ("on", "off", "auto", "amx"):
        out = run_python("import cnnkernels; print(cnnkernels._C.bf16_dot())", CNNKERNELS_BF16_DOT=mode)
        assert out.stdout.strip() == mode
    out = run_python("import cnnkernels; print(cnnkernels._C.bf16_dot())", CNNKERNELS_BF16_DOT="fast")
    assert out.stdout.strip() == "auto" and "fast" in out.stderr
    with pytest.raises(ValueError, match="mode"):
        _C.set_bf16_dot("fast")
    ratio = _C.bf16_dot_rate_ratio()
    assert (ratio > 0) == _C.host_has_avx512_bf16()
    if "avx512" not in HOST_ISAS:
        return
    before = _C.bf16_dot()
    try:
        with forced_isa("avx512"):
            amx = _C.host_can_run_amx_bf16()
            for mode in ("on", "off", "auto", "amx"):
                _C.set_bf16_dot(mode)
                name = _C.cpu_kernel_name("conv2d_fprop", "bf16")
                dot = _C.host_has_avx512_bf16() and mode != "off"
                tiles = dot and amx and mode in ("auto", "amx")
                assert ("avx512bf16" in name) == dot, (mode, name)
                assert ("avx512amx" in name) == tiles, (mode, name)
                few = _C.cpu_kernel_name("conv2d_dgrad", "bf16").endswith("_few_pixels")
                assert few == (dot and mode == "auto" and ratio < 1.0), (mode, name)
    finally:
        _C.set_bf16_dot(before)


def test_show_config_reports_build_and_isa():
    buf = io.StringIO()
    cnnkernels.show_config(file=buf)
    text = buf.getvalue()
    assert cnnkernels.__version__ in text and _C.cpu_isa() in text and torch.__version__.split("+")[0] in text
    assert _C.cpu_kernel_name("conv2d_fprop", "f32") in text and "CUDA kernels" in text


@pytest.mark.skipif(os.environ.get("CNNKERNELS_CUDA") != "ON", reason="CUDA build not required here")
def test_cuda_kernels_were_built_when_required():
    """CI sets CNNKERNELS_CUDA=ON where nvcc exists: the CUDA kernels must be in the extension."""
    assert _C.cuda_built() and _C.cuda_architectures()
