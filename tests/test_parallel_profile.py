"""CNNKERNELS_PARALLEL_PROFILE=1: each parallel_for call site reports its first chunk's and its other
chunks' calls, time and items at exit (scripts/thread_balance.py reads these lines)."""
import os
import re
import subprocess
import sys

LINE = re.compile(r"cnnkernels parallel_for: first (\d+) calls ([\d.]+) us ([\d.]+) items \| "
                  r"others (\d+) calls ([\d.]+) us ([\d.]+) items \| (.*)")
RUN = ("import torch, cnnkernels; torch.set_num_threads(2); x = torch.randn(1, 32, 28, 28); "
       "w = torch.randn(32, 1, 3, 3); [torch.ops.cnnkernels.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 32) "
       "for _ in range(3)]")


def run_profiled(value):
    env = dict(os.environ)
    env.pop("CNNKERNELS_PARALLEL_PROFILE", None)
    if value is not None:
        env["CNNKERNELS_PARALLEL_PROFILE"] = value
    r = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return [m for m in map(LINE.match, r.stderr.splitlines()) if m]


def test_parallel_profile_reports_each_site_by_chunk():
    sites = [m for m in run_profiled("1") if "depthwise" in m[7]]
    assert sites, "no depthwise parallel_for site reported"
    first_calls, first_items, other_calls, other_items = (float(sites[0][i]) for i in (1, 3, 4, 6))
    # Three calls, each split over 2 threads: one first chunk and one other chunk per call, the
    # two sharing the call's items.
    assert first_calls == 3 and other_calls == 3
    assert first_items >= 1 and other_items >= 1
    assert float(sites[0][2]) > 0 and float(sites[0][5]) > 0


def test_parallel_profile_off_by_default():
    assert run_profiled(None) == []
    assert run_profiled("0") == []
