"""cnnkernels' benchmark suite: `python -m benchmarks --help`; `benchmarks.run(argv)` for tests."""
from .suite import run

__all__ = ["run"]
