"""cnnkernels: hand-written CPU and CUDA kernels for conv2d and max_pool2d as PyTorch ops.

    import cnnkernels
    y = cnnkernels.functional.conv2d(x, w, b, stride=1, padding="same")
    model = cnnkernels.convert(torchvision.models.resnet18())
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C, _ops, functional, nn  # noqa: F401  (_ops registers fake kernels and autograd)
from ._version import __version__
from .convert import convert

__all__ = ["functional", "nn", "convert", "show_config", "__version__"]

_OPS = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "conv2d_bgrad", "max_pool2d_fwd", "max_pool2d_bwd")


def show_config(file=None):
    """Print the build and run-time configuration: versions, CPU ISAs, CUDA architectures, and
    the CPU kernel each op runs."""
    lines = [
        f"cnnkernels {__version__}",
        f"  built against torch {_C.torch_version}, running torch {torch.__version__}",
        f"  CPU ISAs on this host: {', '.join(_C.host_isas())}"
        f"{' (+avx512_bf16)' if _C.host_has_avx512_bf16() else ''}; in use: {_C.cpu_isa()}"
        " (CNNKERNELS_CPU_ISA=scalar|avx2|avx512 caps it)",
        *([f"  512-bit FMAs measured {_C.zmm_fma_rate_ratio():.2f}x the 256-bit multiply-add rate"]
          if "avx512" in _C.host_isas() else []),
        *([f"  bfloat16 convolutions on AVX-512: engine mode {_C.bf16_dot()} (vdpbf16ps measured "
           f"{_C.bf16_dot_rate_ratio():.2f}x the FMA multiply-add rate; AMX-BF16 tiles "
           f"{'usable' if _C.host_can_run_amx_bf16() else 'not usable'}; CNNKERNELS_BF16_DOT=auto|on|off|amx)"]
          if _C.host_has_avx512_bf16() else []),
        f"  CUDA kernels: {'compiled for sm_' + _C.cuda_architectures().replace(',', ', sm_') if _C.cuda_built() else 'not built'}"
        f"; GPU available: {torch.cuda.is_available()}",
        "  CPU kernels:",
    ]
    for op in _OPS:
        lines.append("    " + ", ".join(_C.cpu_kernel_name(op, dt) for dt in ("f32", "f64", "bf16")))
    print("\n".join(lines), file=file)
