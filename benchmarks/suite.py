"""Race cnnkernels' conv2d and max_pool2d against PyTorch's (oneDNN on the CPU, cuDNN on the GPU),
side by side in one process, layer by layer (shapes.py).

    python -m benchmarks                       # CPU: fwd and fwd+bwd, NCHW and NHWC, batch 1, every layer
    python -m benchmarks --batch 8 --filter r50_res2
    python -m benchmarks --device cuda --dtype bfloat16 --memory-format nhwc
    python -m benchmarks --suite layers --versus-isa avx2   # also race our AVX2 kernels against the default ISA

Every case is checked first (ours against PyTorch on the same seeded inputs; a mismatch is
reported as MISMATCH, not fatal), then timed: torch.utils.benchmark on the CPU (median of
blocked_autorange, ours and torch's alternating in three rounds so that a neighbour's burst of load
on a shared machine hits both; one call per round where a call takes longer than the slow threshold;
other processes' share of the CPUs is recorded per case, 'others %cpu'); on the GPU
the kernels' device time from CUDA events with the L2 flushed before each call, and the wall time
a Python caller pays from torch.utils.benchmark. Each case reports speedup = torch_ms / ours_ms and
the share of the machine's ceiling reached (shared/PERFORMANCE.md): the floor time is the larger
of FLOPs / FMA peak and bytes / copy rate, and % of ceiling = floor / measured time. The rate
shown is GFLOP/s where the floor is compute, GB/s where it is memory (max-pool, depthwise).
The copy rate is DRAM's: at batch 1 on the CPU many tensors fit in the caches, so more than 100%
of it is possible there.

FLOPs are direct-convolution FLOPs, 2*N*K*P*Q*(C/groups)*R*S forward, three times that forward and
backward (input and weight gradients). Bytes count every tensor the op reads or writes once:
forward x, w, b read and y written (+ int64 indices when returned); forward and backward adds
dy read and dx, dw, db written. How a kernel finds the argmax again in the max-pool backward
(indices or re-reading x) is its own cost, not counted.
"""
import argparse
import copy
import datetime
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

import cnnkernels
import cnnkernels.functional as ours_F

from .shapes import SUITES

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}
# Pass if max|ours - torch| <= TOL * max|torch| (per output): loose, because it only guards the
# timing against a wrong kernel; the tests in tests/ hold the calibrated tolerances.
TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}
TOL_TF32 = 5e-3
# Whole models: rounding differences pass through tens of layers and batch norms. A training step
# at batch 1 is ill-conditioned (batch norm over a 7x7 plane, ReLU masks that flip on rounding):
# torch's own NCHW and channels_last resnet50 steps differ by 2.6% on conv1's weight gradient and
# 30% on a layer4 one (measured), so that check only catches gross errors; tests/ hold the real ones.
TOL_MODEL = {torch.float64: 1e-8, torch.float32: 2e-3, torch.bfloat16: 0.2, torch.float16: 0.05}
TOL_MODEL_TRAIN = {torch.float64: 1e-6, torch.float32: 0.1, torch.bfloat16: 0.5, torch.float16: 0.5}
# Past those, a model case is checked against a float64 copy of the same model (same weights, same
# input), as tests/ check every kernel: ours passes if its error is at most CALIBRATED_FACTOR times
# torch's own, plus the op's TOL (or TOL_TF32). A bfloat16 resnet50 training step at batch 1 is
# that ill-conditioned: conv1's weight gradient is 118% (NCHW) and 137% (channels_last) off float64
# in torch itself, 111% / 137% in ours (measured), past TOL_MODEL_TRAIN without anything wrong.
CALIBRATED_FACTOR = 2.0

# Ceilings measured in shared/PERFORMANCE.md. CPU: the 2-core Zen 4 dev machine, 117 GFLOP/s fp32
# FMA per core, 25 GB/s copy (2 threads). float64 (half) and bfloat16 (twice, AVX512-BF16 dot
# products) are derived from the fp32 figure, not measured; float16 has no native FMA on Zen 4.
CPU_FP32_GFLOPS_PER_CORE = 117.0
CPU_FLOP_SCALE = {torch.float32: 1.0, torch.float64: 0.5, torch.bfloat16: 2.0, torch.float16: 1.0}
CPU_COPY_GBPS = 25.0
# Hopper (H100 / H200: the same SMs and clocks) GEMM TFLOP/s from shared/PERFORMANCE.md; no
# measured figure for float64. The copy rate is measured at the start of each GPU run (the H200's
# HBM3e is ~1.4x the H100's), see _device_copy_rate.
HOPPER_TFLOPS = {torch.float32: 52.0, "tf32": 382.0, torch.bfloat16: 680.0, torch.float16: 651.0}


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if cuda else "cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--memory-format", choices=["nchw", "nhwc", "both"], default="both")
    p.add_argument("--batch", type=int, help="N (default 1 on the CPU, 32 on CUDA)")
    p.add_argument("--suite", choices=list(SUITES), default="all",
                   help="layers: the convolutions; pool: the max-pools; models: torchvision resnet18, resnet50, "
                        "mobilenet_v2 and resnext50_32x4d converted vs original (inference and training step); all (default)")
    p.add_argument("--direction", choices=["fwd", "fwdbwd", "both"], default="both",
                   help="forward only, forward+backward, or both (default)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    p.add_argument("--filter", default="", metavar="SUBSTRING",
                   help="run only cases whose id (name/layout/direction) contains it")
    p.add_argument("--out", metavar="PATH",
                   help="JSON results (default results/<device>-<date>.json; --quick saves only with --out)")
    p.add_argument("--quick", action="store_true", help="short timing runs, for smoke tests")
    p.add_argument("--no-tf32", action="store_true",
                   help="CUDA float32: disable TF32 in PyTorch (cuDNN and matmul)")
    p.add_argument("--cuda-gemm-tiles", choices=["auto", "small", "large"], default="auto",
                   help="CUDA: our tensor-core pipeline's block tiles, per layer (auto) or forced to 64 x 64 "
                        "(small) or 128 x 128 (large), for tuning runs")
    p.add_argument("--plot", metavar="PATH",
                   help="PNG chart of the speedups (needs matplotlib; default: next to the JSON results)")
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument("--no-progress", action="store_true", help="one line per case instead of a progress bar")
    p.add_argument("--from-json", metavar="PATH",
                   help="run nothing: print the table (and plot with --plot) of saved results")
    p.add_argument("--markdown", action="store_true", help="also print the geomean summary as a Markdown table")
    p.add_argument("--versus-isa", choices=["scalar", "avx2", "avx512"], metavar="ISA",
                   help="CPU: also time our kernels forced to ISA (scalar, avx2, avx512) in the same rounds; "
                        "reports isa_ratio = that time / the default ISA's time per case")
    args = p.parse_args(argv)
    if args.from_json:
        return args
    if args.device == "cuda" and not cuda:
        p.error("--device cuda: no CUDA device available")
    if args.cuda_gemm_tiles != "auto" and args.device != "cuda":
        p.error("--cuda-gemm-tiles: CUDA only")
    if args.versus_isa and (args.device != "cpu" or args.versus_isa not in cnnkernels._C.host_isas()):
        p.error(f"--versus-isa {args.versus_isa}: this host runs {', '.join(cnnkernels._C.host_isas())} (CPU only)")
    if args.batch is None:
        args.batch = 32 if args.device == "cuda" else 1
    if args.quick:
        args.min_run_time, args.slow_s = 0.05, 0.05
    else:
        args.min_run_time, args.slow_s = 0.3, 0.5
    return args


# ---- cases ---------------------------------------------------------------------------------------

def _out_size(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _build(shape, args, layout, direction, seed=0):
    """Seeded inputs, and a function running one op (ours or torch's) in the case's direction that
    returns every output to check, as a dict name -> tensor. The function takes the module whose
    ops it runs: torch.nn.functional or cnnkernels.functional."""
    dtype, device, n, p = DTYPES[args.dtype], args.device, args.batch, shape.params
    mf = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*size, scale=1.0, memory_format=torch.contiguous_format):
        t = torch.randn(size, generator=gen, device=device) * scale
        return t.to(dtype=dtype, memory_format=memory_format)

    x = randn(n, p["C"], p["H"], p["W"], memory_format=mf)
    if shape.op == "model":
        return _build_model(shape, args, mf, direction, x, gen, seed)
    if shape.op == "conv2d":
        fan_in = p["C"] // p["groups"] * p["R"] * p["S"]
        w = randn(p["K"], p["C"] // p["groups"], p["R"], p["S"], scale=fan_in ** -0.5, memory_format=mf)
        b = randn(p["K"], scale=0.1) if p["bias"] else None
        kw = {k: p[k] for k in ("stride", "padding", "dilation", "groups")}
        inputs = {"input": x, "weight": w, "bias": b}
        out_shape = (n, p["K"], _out_size(p["H"], p["R"], p["stride"], p["padding"], p["dilation"]),
                     _out_size(p["W"], p["S"], p["stride"], p["padding"], p["dilation"]))

        def forward(mod):
            return {"out": mod.conv2d(x, w, b, **kw)}
    else:
        kw = {k: p[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")}
        inputs = {"input": x}
        out_shape = (n, p["C"], _out_size(p["H"], p["kernel_size"], p["stride"], p["padding"], p["dilation"]),
                     _out_size(p["W"], p["kernel_size"], p["stride"], p["padding"], p["dilation"]))

        def forward(mod):
            res = mod.max_pool2d(x, **kw)
            return dict(zip(("out", "indices"), res)) if p["return_indices"] else {"out": res}

    inputs = {k: v for k, v in inputs.items() if v is not None}
    if direction == "fwd":
        return forward, inputs
    for t in inputs.values():
        t.requires_grad_(True)
    grad_out = randn(*out_shape, memory_format=mf)

    def forward_backward(mod):
        res = forward(mod)
        grads = torch.autograd.grad(res["out"], list(inputs.values()), grad_out)
        res.update({"grad_" + k: g for k, g in zip(inputs, grads)})
        return res
    return forward_backward, inputs


def _build_model(shape, args, memory_format, direction, x, gen, seed):
    """A torchvision model and cnnkernels.convert() of a copy of it, from the same weights. fwd:
    inference (eval mode, no_grad); fwdbwd: a training step without the optimizer (train mode,
    forward, cross-entropy loss, backward). Checked: the logits and the first conv's weight gradient."""
    import torchvision  # only this suite needs it

    torch.manual_seed(seed)
    ref = getattr(torchvision.models, shape.params["arch"])(num_classes=shape.params["classes"])
    ref = ref.to(device=args.device, dtype=DTYPES[args.dtype], memory_format=memory_format)
    models = {F: ref, ours_F: cnnkernels.convert(ref, copy=True)}
    inputs = {"input": x}

    def model_and_input(mod):
        """mod: F, ours_F, or torch.float64: torch's model in float64, made at first use (only the
        calibrated check asks for it), from ref's weights as rounded to the case's dtype, in
        ref's mode (train or eval)."""
        if mod is torch.float64:
            if mod not in models:
                models[mod] = copy.deepcopy(ref).to(torch.float64)
            return models[mod], x.to(torch.float64)
        return models[mod], x

    if direction == "fwd":
        ref.eval()
        models[ours_F].eval()

        def infer(mod):
            m, xm = model_and_input(mod)
            with torch.no_grad():
                return {"out": m(xm)}
        return infer, inputs
    labels = torch.randint(shape.params["classes"], (x.shape[0],), generator=gen, device=args.device)

    def train_step(mod):
        m, xm = model_and_input(mod)
        m.train().zero_grad(set_to_none=True)
        torch.manual_seed(seed)  # the same dropout masks (mobilenet_v2) on both sides
        out = m(xm)
        F.cross_entropy(out, labels).backward()
        first_conv = next(c for c in m.modules() if isinstance(c, torch.nn.Conv2d))
        return {"out": out.detach(), "grad_first_conv": first_conv.weight.grad}
    return train_step, inputs


@functools.lru_cache(maxsize=None)  # a model's four cases (layouts x directions) count once
def _model_flops(arch, classes, batch, h, w):
    """Forward FLOPs of a torchvision model (its convolutions and matrix products, as
    torch.utils.flop_counter counts them), from one forward pass on the meta device."""
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        m = getattr(torchvision.models, arch)(num_classes=classes).eval()
        x = torch.empty(batch, 3, h, w)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(x)
    return counter.get_total_flops()


def _work(shape, args, direction):
    """(FLOPs, bytes that must move) for one call."""
    p, n = shape.params, args.batch
    if shape.op == "model":  # compute only: the bytes a whole network moves are not modelled
        flops = _model_flops(p["arch"], p["classes"], n, p["H"], p["W"])
        return (3 if direction == "fwdbwd" else 1) * flops, 0
    esize = DTYPES[args.dtype].itemsize
    x = n * p["C"] * p["H"] * p["W"]
    if shape.op == "conv2d":
        pq = (_out_size(p["H"], p["R"], p["stride"], p["padding"], p["dilation"])
              * _out_size(p["W"], p["S"], p["stride"], p["padding"], p["dilation"]))
        y = n * p["K"] * pq
        w = p["K"] * p["C"] // p["groups"] * p["R"] * p["S"]
        b = p["K"] if p["bias"] else 0
        flops = 2 * y * (p["C"] // p["groups"]) * p["R"] * p["S"]
        elements = x + w + b + y
        if direction == "fwdbwd":
            return 3 * flops, 2 * elements * esize  # + dy read, dx, dw, db written
        return flops, elements * esize
    y = n * p["C"] * (_out_size(p["H"], p["kernel_size"], p["stride"], p["padding"], p["dilation"])
                      * _out_size(p["W"], p["kernel_size"], p["stride"], p["padding"], p["dilation"]))
    indices = 8 * y if p["return_indices"] else 0
    return 0, (2 if direction == "fwdbwd" else 1) * (x + y) * esize + indices


def _ceilings(args):
    """(FLOP/s, bytes/s) of the machine for this dtype; None where unknown."""
    dtype = DTYPES[args.dtype]
    if args.device == "cpu":
        cores = min(args.threads, os.cpu_count() or args.threads)
        return CPU_FP32_GFLOPS_PER_CORE * cores * CPU_FLOP_SCALE[dtype] * 1e9, CPU_COPY_GBPS * 1e9
    key = "tf32" if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else dtype
    hopper = any(name in torch.cuda.get_device_name() for name in ("H100", "H200"))
    tflops = HOPPER_TFLOPS.get(key) if hopper else None
    return (tflops * 1e12 if tflops else None), _device_copy_rate()


@functools.lru_cache(maxsize=None)
def _device_copy_rate():
    """Bytes read + written per second by a 1 GiB device-to-device copy, best of 10."""
    src = torch.empty(2 ** 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    best = math.inf
    for _ in range(12):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * src.numel() / best


# ---- checking and timing ---------------------------------------------------------------------------

def _check(ours, ref, inputs, tol):
    """Per output, max|ours - ref| / max|ref|; indices are checked by pointing at the maximum."""
    errors = {}
    for name, r in ref.items():
        o = ours[name]
        if o.shape != r.shape or o.dtype != r.dtype:
            errors[name] = math.inf
        elif name == "indices":  # ties may pick another index: check that it points at the max
            x = inputs["input"].detach().flatten(2)
            errors[name] = float(not torch.equal(x.gather(2, o.flatten(2)), ref["out"].detach().flatten(2)))
        else:
            o, r = o.detach().double(), r.detach().double()
            errors[name] = ((o - r).abs().max() / r.abs().max().clamp_min(1e-30)).item() if r.numel() else 0.0
    ok = all(e <= (0 if n == "indices" else tol) for n, e in errors.items())
    return ok, errors


def _check_calibrated(ours, ref, exact, tol):
    """Per output, ours' and torch's errors against the float64 result (as _check measures them):
    ok where ours' is at most CALIBRATED_FACTOR times torch's, plus tol."""
    errors = {}
    for name, e in exact.items():
        o, r, x = ours[name].detach().double(), ref[name].detach().double(), e.detach().double()
        scale = x.abs().max().clamp_min(1e-30)
        errors[name] = {"ours": ((o - x).abs().max() / scale).item(), "torch": ((r - x).abs().max() / scale).item()}
    ok = all(e["ours"] <= CALIBRATED_FACTOR * e["torch"] + tol for e in errors.values())
    return ok, errors


def _spread(times):
    """Interquartile range / median of the timed blocks (None with fewer than 4)."""
    if len(times) < 4:
        return None
    q1, q2, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / q2


class _ForcedIsa:
    """Within the block, our CPU kernels run the given ISA (None: unchanged)."""

    def __init__(self, isa):
        self.isa, self.before = isa, None

    def __enter__(self):
        if self.isa:
            self.before = cnnkernels._C.cpu_isa()
            cnnkernels._C.set_cpu_isa(self.isa)

    def __exit__(self, *exc):
        if self.isa:
            cnnkernels._C.set_cpu_isa(self.before)


def _time_cpu(sides, args, rounds=3, isas=None):
    """sides: who -> (fn, seconds its first call took); isas: who -> the CPU ISA that side runs
    (default: the active one). Median seconds per call of the blocks torch.utils.benchmark times;
    the sides alternate in rounds so that a neighbour's burst of load on a shared machine falls on
    all of them. A side whose one call outlasts args.slow_s runs once per round (whole models at
    N=8: one call alone swung the ratio by 25% between runs)."""
    isas = isas or {}
    times = {who: [] for who in sides}
    runs = dict.fromkeys(sides, 0)
    for _ in range(rounds):
        for who, (fn, first_s) in sides.items():
            timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=args.threads)
            with _ForcedIsa(isas.get(who)):
                if first_s > args.slow_s:  # one call per round: the median of three
                    m = timer.timeit(number=1)
                else:
                    m = timer.blocked_autorange(min_run_time=args.min_run_time / rounds)
            times[who] += m.times
            runs[who] += m.number_per_run * len(m.times)
    return {who: dict(ms=statistics.median(t) * 1e3, runs=runs[who], spread=_spread(t))
            for who, t in times.items()}


def _time_cuda(sides, args):
    """sides: who -> (fn, first-call seconds). Per side: the kernels' device time from CUDA events
    around each call with the L2 flushed before it (median), and the wall time a Python caller
    pays (torch.utils.benchmark, no flush)."""
    flush = torch.empty(64 * 2 ** 20, dtype=torch.int32, device="cuda")  # 256 MB > any L2
    out = {}
    for who, (fn, _) in sides.items():
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        reps = max(5, min(200, int(args.min_run_time / max(time.perf_counter() - t0, 1e-6))))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
        for start, end in events:
            flush.zero_()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        device_ms = [s.elapsed_time(e) for s, e in events]
        wall = Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=args.min_run_time)
        out[who] = dict(ms=statistics.median(device_ms), runs=reps, spread=_spread(device_ms),
                        wall_ms=wall.median * 1e3)
    return out


def _cpu_seconds():
    """(CPU seconds every process on the machine has used, including time the hypervisor stole,
    CPU seconds this process has used): their difference is what neighbours took. Linux only."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    t = os.times()
    return busy, t.user + t.system


def _others_pct(before, after, wall_s):
    """Share of the machine's CPUs that other processes used between two _cpu_seconds()."""
    if before is None or after is None or wall_s <= 0:
        return None
    foreign = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, 100 * foreign / (wall_s * (os.cpu_count() or 1)))


def _describe(e):
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def _run_case(shape, args, layout, direction, ceilings):
    dtype = DTYPES[args.dtype]
    tol = TOL_TF32 if (args.device == "cuda" and dtype == torch.float32
                       and torch.backends.cudnn.allow_tf32) else TOL[dtype]
    op_tol = tol  # the calibrated check's floor
    if shape.op == "model":
        tol = max(tol, (TOL_MODEL_TRAIN if direction == "fwdbwd" else TOL_MODEL)[dtype])
    rec = dict(id=f"{shape.name}/{layout}/{direction}", name=shape.name, family=shape.family,
               op=shape.op, layout=layout, direction=direction, dtype=args.dtype, batch=args.batch,
               params=shape.params)
    try:
        flops, nbytes = _work(shape, args, direction)
    except ImportError as e:  # the models suite without torchvision
        rec.update(unit="-", status="ERROR", error=_describe(e), speedup=None, others_cpu_pct=None)
        return rec
    peak_flops, peak_bw = ceilings
    floors = [flops / peak_flops if peak_flops and flops else 0.0, nbytes / peak_bw if peak_bw else 0.0]
    compute_bound = floors[0] >= floors[1] and flops > 0
    rec.update(flops=flops, bytes=nbytes, bound="compute" if compute_bound else "memory",
               unit="GFLOP/s" if compute_bound else "GB/s", floor_ms=max(floors) * 1e3 if any(floors) else None)

    run, inputs = _build(shape, args, layout, direction)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    def first_call(mod):  # also the warm-up, and the time that picks how to time
        sync()
        t0 = time.perf_counter()
        res = run(mod)
        sync()
        return res, time.perf_counter() - t0

    # An unsupported dtype or device, or out of memory: report it and go on to the next case.
    try:
        ref, torch_first = first_call(F)
    except Exception as e:
        rec.update(status="ERROR", error=f"torch: {_describe(e)}", speedup=None)
        return rec
    try:
        ours, ours_first = first_call(ours_F)
        ok, errors = _check(ours, ref, inputs, tol)
        if not ok and shape.op == "model":  # ill-conditioned, or wrong: ask float64
            ok, calibrated = _check_calibrated(ours, ref, run(torch.float64), op_tol)
            rec.update(float64_rel_err=calibrated)
        rec.update(status="ok" if ok else "MISMATCH", max_rel_err=errors, tol=tol)
    except Exception as e:
        rec.update(status="ERROR", error=f"ours: {_describe(e)}")
    ref = ours = None  # free them before timing

    sides = {"torch": (lambda: run(F), torch_first)}
    isas = {}
    if rec["status"] != "ERROR":
        sides["ours"] = (lambda: run(ours_F), ours_first)
    versus = f"ours_{args.versus_isa}" if args.versus_isa else None
    if versus and rec["status"] == "ok":  # the same check under the other ISA, then a third side
        with _ForcedIsa(args.versus_isa):
            other, other_first = first_call(ours_F)
            ref = run(F)
        ok, errors = _check(other, ref, inputs, tol)
        other = ref = None
        rec.update(versus_isa=args.versus_isa, versus_isa_max_rel_err=errors)
        if not ok:
            rec["status"] = "MISMATCH"
        else:
            sides[versus] = (lambda: run(ours_F), other_first)
            isas[versus] = args.versus_isa
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    timings = _time_cuda(sides, args) if args.device == "cuda" else _time_cpu(sides, args, isas=isas)
    rec["others_cpu_pct"] = _others_pct(cpu0, _cpu_seconds(), time.perf_counter() - t0)
    for who, t in timings.items():
        rec.update({f"{who}_{k}": v for k, v in t.items()})
        seconds = t["ms"] / 1e3
        rec[f"{who}_rate"] = (flops if compute_bound else nbytes) / seconds / 1e9
        rec[f"{who}_pct_ceiling"] = 100 * max(floors) / seconds if any(floors) else None
    rec["speedup"] = rec["torch_ms"] / rec["ours_ms"] if "ours_ms" in rec else None
    if versus in timings:
        rec["isa_ratio"] = rec[f"{versus}_ms"] / rec["ours_ms"]
    return rec


# ---- reporting -----------------------------------------------------------------------------------

def _meta(args):
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), device=args.device,
                threads=args.threads, torch=torch.__version__, cnnkernels=cnnkernels.__version__,
                cnnkernels_cpu_isa=cnnkernels._C.cpu_isa(),
                cnnkernels_cpu_isa_env=os.environ.get("CNNKERNELS_CPU_ISA"),
                torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                python=platform.python_version())
    if args.device == "cuda":
        meta.update(device_name=torch.cuda.get_device_name(), cudnn=torch.backends.cudnn.version(),
                    cuda=torch.version.cuda, tf32=torch.backends.cudnn.allow_tf32,
                    cuda_gemm_tiles=args.cuda_gemm_tiles,
                    cudnn_benchmark=torch.backends.cudnn.benchmark)
    else:
        meta.update(device_name=_cpu_model(), cpu_count=os.cpu_count(),
                    cnnkernels_bf16_dot=cnnkernels._C.bf16_dot() if cnnkernels._C.host_has_avx512_bf16() else None,
                    bf16_dot_rate_ratio=cnnkernels._C.bf16_dot_rate_ratio(),
                    zmm_fma_rate_ratio=cnnkernels._C.zmm_fma_rate_ratio(),
                    amx_bf16=cnnkernels._C.host_can_run_amx_bf16())
    try:
        repo = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        meta["git"] = rev + ("+dirty" if dirty else "") if rev else None
    except (OSError, subprocess.SubprocessError):
        meta["git"] = None
    flop_s, bw = _ceilings(args)
    meta["ceilings"] = dict(flops_per_s=flop_s, bytes_per_s=bw, source="shared/PERFORMANCE.md" +
                            ("; copy rate measured in this run" if args.device == "cuda" else ""))
    return meta


def _cpu_model():
    """'AMD EPYC (family 25, model 17)': the model name alone is often generic in a VM."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break
                info[key.strip()] = value.strip()
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def _geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _summary(records, key="speedup"):
    """Geomean of key (speedup, isa_ratio) per family and op, per layout/direction and over all of
    them (ok cases only)."""
    out = {}
    for r in records:
        if r["status"] == "ok" and r.get(key):
            groups = out.setdefault(f"{r['family']} {r['op']}", {})
            groups.setdefault(f"{r['layout']} {r['direction']}", []).append(r[key])
            groups.setdefault("all", []).append(r[key])
    return {fam: {k: _geomean(v) for k, v in g.items()} for fam, g in out.items()}


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _table(rows, header):
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _print_report(result, file=None):
    file = file or sys.stdout
    cuda = result["meta"]["device"] == "cuda"
    header = ["case", "layout", "dir", "ours ms", "torch ms", "speedup", "ours rate", "torch rate",
              "unit", "ours %ceil", "torch %ceil", "check", "others %cpu"]
    if cuda:
        header[5:5] = ["ours wall", "torch wall"]
    versus = next((r["versus_isa"] for r in result["cases"] if r.get("versus_isa")), None)
    if versus:
        header.insert(6, f"{versus}/ours")
    rows = []
    for r in result["cases"]:
        row = [r["name"], r["layout"], r["direction"], _fmt(r.get("ours_ms"), ".4g"),
               _fmt(r.get("torch_ms"), ".4g"), _fmt(r.get("speedup"), ".3f"),
               _fmt(r.get("ours_rate"), ".3g"), _fmt(r.get("torch_rate"), ".3g"), r["unit"],
               _fmt(r.get("ours_pct_ceiling"), ".1f"), _fmt(r.get("torch_pct_ceiling"), ".1f"), r["status"],
               _fmt(r.get("others_cpu_pct"), ".0f")]
        if cuda:
            row[5:5] = [_fmt(r.get("ours_wall_ms"), ".4g"), _fmt(r.get("torch_wall_ms"), ".4g")]
        if versus:
            row.insert(6, _fmt(r.get("isa_ratio"), ".3f"))
        rows.append(row)
    m = result["meta"]
    print(f"\ncnnkernels {m['cnnkernels']} (CPU ISA {m['cnnkernels_cpu_isa']}) vs torch {m['torch']} "
          f"on {m['device_name']}, {m['threads']} threads, {result['options']['dtype']}, "
          f"N={result['options']['batch']}; speedup = torch ms / ours ms", file=file)
    print(_table(rows, header), file=file)
    for key, title in (("summary", "geomean speedup (ok cases)"),
                       ("isa_summary", f"geomean {versus} time / {m['cnnkernels_cpu_isa']} time (ok cases; "
                                       f"> 1: {versus} slower)")):
        summary = result.get(key)
        if summary:
            cols = sorted({k for g in summary.values() for k in g if k != "all"}) + ["all"]
            rows = [[fam] + [_fmt(g.get(c), ".3f") for c in cols] for fam, g in summary.items()]
            print(f"\n{title}", file=file)
            print(_table(rows, ["family"] + cols), file=file)


def _plot(result, path):
    """PNG: speedup over PyTorch per case, one group of bars per layer / pool / model (a bar per
    layout and direction), log scale, 1.0 marked. Cases that failed their check are hatched."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print(f"note: matplotlib is not installed (pip install matplotlib), no plot written to {path}",
              file=sys.stderr)
        return None
    cases = [r for r in result["cases"] if r.get("speedup")]
    if not cases:
        return None
    names = list(dict.fromkeys(r["name"] for r in cases))
    series = list(dict.fromkeys((r["layout"], r["direction"]) for r in cases))
    colors = {("nchw", "fwd"): "#9ecae1", ("nchw", "fwdbwd"): "#3182bd",
              ("nhwc", "fwd"): "#fdae6b", ("nhwc", "fwdbwd"): "#e6550d"}
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(8.0, 1.3 + 0.22 * len(names) * max(1, len(series) / 2)))
    for j, key in enumerate(series):
        rows = [(names.index(r["name"]), r) for r in cases if (r["layout"], r["direction"]) == key]
        ys = [i + (j - (len(series) - 1) / 2) * height for i, _ in rows]
        ax.barh(ys, [r["speedup"] for _, r in rows], height=height, color=colors.get(key, "gray"),
                hatch=["" if r["status"] == "ok" else "xx" for _, r in rows], label=f"{key[0]} {key[1]}")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    lo, hi = min(r["speedup"] for r in cases), max(r["speedup"] for r in cases)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if lo / 2 <= t <= hi * 2]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)  # first case on top, no empty margins
    ops = [next(r["op"] for r in cases if r["name"] == n) for n in names]
    for i in range(1, len(names)):  # separate layers, pools and whole models
        if ops[i] != ops[i - 1]:
            ax.axhline(i - 0.5, color="gray", linewidth=0.6, linestyle="--")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_xlabel("speedup over PyTorch (torch ms / ours ms; > 1: cnnkernels faster)")
    m, o = result["meta"], result["options"]
    ax.set_title(f"cnnkernels {m['cnnkernels']} ({m.get('cnnkernels_cpu_isa', '')}) vs torch {m['torch']}\n"
                 f"{m['device_name']}, {o['dtype']}, N={o['batch']}, {m['threads']} threads, {m['date'][:10]}",
                 fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    tmp = f"{path}.tmp"
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    print(f"plot: {path}", file=sys.stderr)
    return path


def _markdown(result, file=None):
    """The geomean summary as a Markdown table (the README's results table)."""
    file = file or sys.stdout
    summary = result["summary"]
    cols = ["nchw fwd", "nchw fwdbwd", "nhwc fwd", "nhwc fwdbwd"]
    print("| family, op | " + " | ".join(cols) + " |", file=file)
    print("|---" * (len(cols) + 1) + "|", file=file)
    for fam, g in summary.items():
        print(f"| {fam} | " + " | ".join(_fmt(g.get(c), ".2f") for c in cols) + " |", file=file)


# ---- entry point ---------------------------------------------------------------------------------

class _Progress:
    """A progress bar on stderr (tqdm when installed, else a text bar), with a line per case."""

    def __init__(self, total, enabled=True):
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True, leave=False)
            except ImportError:
                pass

    def update(self, rec):
        self.done += 1
        line = (f"{rec['id']}: ours {_fmt(rec.get('ours_ms'), '.4g')} ms, torch {_fmt(rec.get('torch_ms'), '.4g')} ms, "
                f"{_fmt(rec.get('speedup'), '.3f')}x  {rec['status']}"
                f"  (others used {_fmt(rec.get('others_cpu_pct'), '.0f')}% CPU)"
                + (f" ({rec['error']})" if "error" in rec else ""))
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
            self.bar.set_postfix_str(rec["id"], refresh=False)
            self.bar.update(1)
        else:
            filled = 20 * self.done // max(self.total, 1)
            print(f"[{'#' * filled}{'.' * (20 - filled)}] {self.done}/{self.total} "
                  f"{time.perf_counter() - self.t0:6.1f}s  {line}", file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _report(result, args, json_path):
    _print_report(result)
    if args.markdown:
        print()
        _markdown(result)
    plot = args.plot
    if plot is None and json_path is not None and not args.no_plot:
        plot = Path(json_path).with_suffix(".png")
    if plot and not args.no_plot:
        _plot(result, plot)


def run(argv=None):
    """Run the suite with command-line arguments argv; print the table; return the results dict
    (what the JSON holds: meta, options, cases, summary)."""
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
        result["summary"] = _summary(result["cases"])
        result["isa_summary"] = _summary(result["cases"], "isa_ratio")
        _report(result, args, None)
        return result
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True  # race PyTorch at its best
        cnnkernels._C.set_cuda_gemm_tiles(args.cuda_gemm_tiles)
        if args.no_tf32:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
    layouts = ["nchw", "nhwc"] if args.memory_format == "both" else [args.memory_format]
    directions = ["fwd", "fwdbwd"] if args.direction == "both" else [args.direction]
    cases = [(s, lay, d) for s in SUITES[args.suite] for lay in layouts for d in directions
             if args.filter in f"{s.name}/{lay}/{d}"]
    if not cases:
        print(f"no case of suite {args.suite!r} matches --filter {args.filter!r}", file=sys.stderr)
    ceilings = _ceilings(args)
    result = dict(meta=_meta(args), options=vars(args), cases=[], summary={})
    cpu_start, t_start = _cpu_seconds(), time.perf_counter()
    progress = _Progress(len(cases), enabled=not args.no_progress)
    try:
        for shape, layout, direction in cases:
            rec = _run_case(shape, args, layout, direction, ceilings)
            result["cases"].append(rec)
            progress.update(rec)
            if args.device == "cuda":
                torch.cuda.empty_cache()
    finally:
        progress.close()
    wall = time.perf_counter() - t_start
    others = _others_pct(cpu_start, _cpu_seconds(), wall)
    result["meta"].update(wall_s=wall, others_cpu_pct=others)
    result["summary"] = _summary(result["cases"])
    result["isa_summary"] = _summary(result["cases"], "isa_ratio")
    if args.device == "cpu" and others is not None and others > 5:
        print(f"note: other processes used {others:.0f}% of the CPUs during the run; "
              "timings are skewed, rerun on a quiet machine", file=sys.stderr)

    out = args.out
    if out is None and not args.quick:
        out = RESULTS_DIR / f"{args.device}-{datetime.date.today().isoformat()}.json"
    if out and cases:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1, default=str)
            f.write("\n")
        print(f"results: {out}", file=sys.stderr)
    _report(result, args, out if cases else None)
    return result


def main(argv=None):
    """Exit status 1 when one of our kernels gave a wrong result or failed (a result table is
    printed either way); torch's own failures and a missing torchvision are only reported."""
    result = run(argv)
    bad = [c["id"] for c in result["cases"]
           if c["status"] == "MISMATCH" or (c["status"] == "ERROR" and c.get("error", "").startswith("ours"))]
    if bad:
        print(f"FAILED: {len(bad)} case(s) where cnnkernels is wrong or failed: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0
