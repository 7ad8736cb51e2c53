"""Thread balance of the CPU kernels' parallel_for splits, per layer of the benchmark suite.

Each case (a suite conv layer, a layout, one of fwd / dgrad / wgrad) runs for a second in a child
process with CNNKERNELS_PARALLEL_PROFILE=1 (csrc/common/parallel.h): at exit every parallel_for
call site reports the time of its first chunk (the calling thread's) and of its other chunks.
Printed per case: the sites holding 5%+ of the time, with first / others time per call. A ratio
far from 1 on 2 threads means one thread idles at the join for that share of the site's time.

    python scripts/thread_balance.py [--filter dw] [--batch 1] [--threads 2]
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"cnnkernels parallel_for: first (\d+) calls ([\d.]+) us ([\d.]+) items \| "
                  r"others (\d+) calls ([\d.]+) us ([\d.]+) items \| (.*)")


def child(case):
    import time
    import torch
    import cnnkernels  # noqa: F401  (registers the ops)
    ops = torch.ops.cnnkernels
    torch.set_num_threads(case["threads"])
    C, K, H, R, st, g, N = (case[k] for k in ("C", "K", "H", "R", "stride", "groups", "batch"))
    pd = R // 2
    x = torch.randn(N, C, H, H)
    w = torch.randn(K, C // g, R, R)
    if case["channels_last"]:
        x = x.to(memory_format=torch.channels_last)
    dy = torch.randn_like(torch.nn.functional.conv2d(x, w, None, st, pd, 1, g))
    run = {"fwd": lambda: ops.conv2d(x, w, None, [st, st], [pd, pd], [1, 1], g),
           "dgrad": lambda: ops.conv2d_input_grad(dy, w, list(x.shape), [st, st], [pd, pd], [1, 1], g,
                                                  case["channels_last"]),
           "wgrad": lambda: ops.conv2d_weight_grad(dy, x, list(w.shape), [st, st], [pd, pd], [1, 1], g)}
    f = run[case["direction"]]
    start = time.time()
    while time.time() - start < 1.0:
        f()


def short(name):
    name = re.sub(r"cnnkernels::(\w+::)?(\(anonymous namespace\)::|\{anonymous\}::)?", "", name)
    return re.sub(r"::<lambda\(.*", "", name)[:100]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filter", default="", help="substring of the layer names to run")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    from benchmarks.shapes import SUITES
    shapes = {s.name: s for suite in SUITES.values() for s in suite if s.op == "conv2d" and args.filter in s.name}
    for s in shapes.values():
        for channels_last in (False, True):
            for direction in ("fwd", "dgrad", "wgrad"):
                case = dict(s.params, channels_last=channels_last, direction=direction, batch=args.batch,
                            threads=args.threads)
                r = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)],
                                   env=dict(os.environ, CNNKERNELS_PARALLEL_PROFILE="1"), capture_output=True,
                                   text=True)
                sites = []
                for m in map(LINE.match, r.stderr.splitlines()):
                    if m:
                        c0, t0, c1, t1 = int(m[1]), float(m[2]), int(m[4]), float(m[5])
                        sites.append((c0 * t0 + c1 * t1, t0 / t1 if t1 else float("inf"), t0, t1, m[3], m[6],
                                      short(m[7])))
                print(f"{s.name} {'nhwc' if channels_last else 'nchw'} {direction}"
                      + ("" if sites else f": no profile lines ({r.stderr.strip()[-200:]})"), flush=True)
                total = sum(x[0] for x in sites) or 1.0
                for share, ratio, t0, t1, i0, i1, name in sorted(sites, reverse=True):
                    if share / total >= 0.05:
                        print(f"  {100 * share / total:3.0f}%  first/others {ratio:5.2f}  ({t0:.1f} / {t1:.1f} us, "
                              f"items {i0} / {i1})  {name}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        main()
