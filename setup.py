"""Builds cnnkernels' extension by driving CMakeLists.txt (the one build description).

    pip install --no-build-isolation .        # or -e . for development
    pip wheel --no-build-isolation -w dist .

Environment: TORCH_CUDA_ARCH_LIST (default "8.0;9.0"), CNNKERNELS_CUDA=AUTO|ON|OFF (OFF forces a
CPU-only build), CNNKERNELS_CPU_SIMD=OFF (no AVX2/AVX-512 kernel tables: a quick build for GPU
checks), CUDA_HOME (the toolkit; found by itself in the usual places), MAX_JOBS.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "cnnkernels" / "_version.py").read_text()).group(1)


def torch_requirement():
    """The wheel links against one torch ABI: require the minor release it was built with."""
    try:
        import torch
    except ImportError:
        return "torch"
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return f"torch=={major}.{minor}.*"


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if shutil.which("cmake") is None:
            raise RuntimeError("cnnkernels needs cmake to build (pip install cmake)")
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # A persistent build tree per interpreter makes rebuilds (pip install -e .) incremental.
        tag = f"{sys.implementation.cache_tag}-{hashlib.sha1(sys.executable.encode()).hexdigest()[:8]}"
        build_dir = ROOT / "build" / f"cmake-{tag}"
        build_dir.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DCNNKERNELS_VERSION={VERSION}",
            f"-DCNNKERNELS_CUDA={os.environ.get('CNNKERNELS_CUDA', 'AUTO')}",
            f"-DCNNKERNELS_CPU_SIMD={os.environ.get('CNNKERNELS_CPU_SIMD', 'ON')}",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        if shutil.which("ninja") or _ninja_from_pip():
            args.append("-GNinja")
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args])
        subprocess.check_call(["cmake", "--build", str(build_dir), "--parallel", jobs])


def _ninja_from_pip():
    try:
        import ninja  # noqa: F401  (the pip package puts ninja on PATH for subprocesses)
    except ImportError:
        return False
    os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ["PATH"]
    return True


setup(
    name="cnnkernels",
    version=VERSION,
    description="Hand-written CPU (AVX2/AVX-512) and CUDA kernels for conv2d and max_pool2d as PyTorch ops",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["cnnkernels", "cnnkernels.*"]),
    ext_modules=[CMakeExtension("cnnkernels._C")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.10",
    install_requires=[torch_requirement()],
    zip_safe=False,
)
