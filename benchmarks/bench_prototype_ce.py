"""Prototype cross-entropy (Eq. 5, L_self): eager reference vs torch.compile vs the Triton kernel.

    python benchmarks/bench_prototype_ce.py            # N in {64, 512, 4096}, K = 5,161, D = 512
    python benchmarks/bench_prototype_ce.py --quick    # N in {64, 512}, fewer repeats (smoke test)

Writes benchmarks/results/prototype_ce_<cpu|cuda>.json. Impls: ``reference`` (eager, materialises
the N x K logits and its softmax), ``compiled`` (torch.compile of the reference) and, on CUDA only,
``triton`` (mate.kernels.prototype_ce: online log-sum-exp, never stores N x K; on CPU it would run
in the numpy interpreter, which says nothing about speed).

Phases: ``fwd`` (forward with autograd recording, as in training), ``bwd`` (``backward`` of a
retained graph; donated buffers are turned off so the compiled graph allows it) and ``fwd_bwd``.
Inputs rotate over 3 fresh sets so caches do not flatter. GPU: ``triton.testing.do_bench`` medians
(it flushes L2 between calls). CPU: medians after warm-up, the impls alternating call by call so
that each round sees them under the same load (2 shared, noisy cores: read the ratios).

Memory, *extra* peak over the inputs during one fwd+bwd (gradients included, inputs excluded):
GPU ``torch.cuda.max_memory_allocated() - memory_allocated()`` before the step. CPU: the process's
peak resident set (VmHWM, reset through /proc/self/clear_refs) minus its resident set before the
step, measured in a child process started with MALLOC_MMAP_THRESHOLD_=131072 so every tensor over
128 KiB is its own mmap returned to the OS when freed (glibc would otherwise keep freed blocks).

Floor: FLOPs 2NKD forward and 4NKD backward (the reference's matmuls; the kernel recomputes z, see
"flops_kernel"), bytes: read f and P, write df and dP (the logits need never leave the chip).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from common import environment, proc_status_kib, write_results

import mate.ops as ops

K_PROTOS, WIDTH, TAU = 5161, 512, 0.05
# Approximate dense vendor peaks (TFLOP/s by input dtype, TB/s) for the floor in seconds.
GPU_PEAKS = {
    "H100": {"float32": 66.9, "float32_tf32": 494.7, "bfloat16": 989.4, "float16": 989.4, "tb_s": 3.35},
    "H200": {"float32": 66.9, "float32_tf32": 494.7, "bfloat16": 989.4, "float16": 989.4, "tb_s": 4.8},
}


def make_sets(n, k, d, dtype, device, count=3, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    sets = []
    for _ in range(count):
        f = (torch.randn(n, d, generator=g) * 3.0).to(device, dtype).requires_grad_()
        p = (torch.randn(k, d, generator=g) * 0.5).to(device, dtype).requires_grad_()
        t = torch.randint(0, k, (n,), generator=g).to(device)
        sets.append((f, p, t))
    return sets


def loss_fn(impl, f, p, t):
    return ops.prototype_cross_entropy(f, p, t, TAU, "mean", impl=impl, validate=False)


def floor(n, k, d, dtype, cfg=None):
    item = torch.empty((), dtype=dtype).element_size()
    out = {
        "flops_fwd": 2 * n * k * d,
        "flops_bwd": 4 * n * k * d,
        "bytes_fwd": (n + k) * d * item + n * 8,
        "bytes_bwd": 2 * (n + k) * d * item + n * 8,
        "eager_logits_bytes_fp32": n * k * 4,
    }
    if cfg is not None:  # each backward kernel recomputes z once per D slice, then its update
        bwd = sum(2 * n * k * d * (-(-d // cfg[name]["BLOCK_DO"]) + 1) for name in ("df", "dp"))
        out["flops_kernel"] = {"fwd": 2 * n * k * d, "bwd": bwd}
    return out


def floor_seconds(fl, dtype, device):
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    peaks = next((v for key, v in GPU_PEAKS.items() if key in name), None)
    if peaks is None:
        return None
    key = str(dtype).replace("torch.", "")
    if key == "float32" and torch.get_float32_matmul_precision() != "highest":
        key = "float32_tf32"
    tflops = peaks[key] * 1e12
    return {phase: max(fl[f"flops_{phase}"] / tflops, fl[f"bytes_{phase}"] / (peaks["tb_s"] * 1e12)) * 1e3
            for phase in ("fwd", "bwd")}


def phase_fns(impl, sets):
    """fwd / bwd / fwd_bwd closures for one impl, rotating over the input sets; warmed up."""
    counter = {"i": 0}

    def next_set():
        counter["i"] = (counter["i"] + 1) % len(sets)
        return sets[counter["i"]]

    def clear():
        for f, p, _ in sets:
            f.grad = p.grad = None

    def fwd():
        return loss_fn(impl, *next_set())

    def fwd_bwd():
        f, p, t = next_set()
        f.grad = p.grad = None
        loss_fn(impl, f, p, t).backward()

    fwd_bwd()  # warm-up: compiles
    losses = [loss_fn(impl, *s) for s in sets]

    def bwd():
        clear()
        losses[counter["i"]].backward(retain_graph=True)
        counter["i"] = (counter["i"] + 1) % len(sets)

    return {"fwd": fwd, "bwd": bwd, "fwd_bwd": fwd_bwd}


def bench_all(impls, sets, device, quick):
    """Median ms per impl and phase. GPU: do_bench per closure. CPU (shared, noisy cores): the
    impls alternate call by call, so each round sees them under the same load."""
    fns = {impl: phase_fns(impl, sets) for impl in impls}
    out = {impl: {} for impl in impls}
    for phase in ("fwd", "bwd", "fwd_bwd"):
        if device == "cuda":
            import triton.testing

            for impl in impls:
                out[impl][phase] = float(triton.testing.do_bench(
                    fns[impl][phase], warmup=10 if quick else 25, rep=50 if quick else 200, return_mode="median"))
            continue
        times = {impl: [] for impl in impls}
        rounds, total = 0, 0.0
        min_rounds, min_total = (3, 0.5) if quick else (7, 3.0)
        for impl in impls:
            fns[impl][phase]()  # warm-up of this phase
        while rounds < min_rounds or (total < min_total and rounds < 200):
            for impl in impls:
                t0 = time.perf_counter()
                fns[impl][phase]()
                dt = time.perf_counter() - t0
                times[impl].append(dt)
                total += dt
            rounds += 1
        for impl in impls:
            out[impl][phase] = statistics.median(times[impl]) * 1e3
            out[impl].setdefault("rounds", {})[phase] = rounds
    for f, p, _ in sets:
        f.grad = p.grad = None
    return out


def check(impl, sets):
    """Loss and both gradients against the eager reference (float64 on the same rounded inputs)."""
    f, p, t = sets[0]
    fr, pr = f.detach().double().requires_grad_(), p.detach().double().requires_grad_()
    ref = loss_fn("reference", fr, pr, t)
    ref.backward()
    fi, pi = f.detach().clone().requires_grad_(), p.detach().clone().requires_grad_()
    got = loss_fn(impl, fi, pi, t)
    got.backward()

    def rel(a, b):
        return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()

    return {"loss": rel(got.detach(), ref.detach()), "df": rel(fi.grad, fr.grad), "dp": rel(pi.grad, pr.grad)}


# ----------------------------------------------------------------------------- memory


def extra_peak_bytes(impl, sets, device):
    f, p, t = sets[0]
    for _ in range(2):  # warm-up (compiles; allocator settles)
        f.grad = p.grad = None
        loss_fn(impl, f, p, t).backward()
    f.grad = p.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss_fn(impl, f, p, t).backward()
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
    else:
        base = proc_status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak resident set (VmHWM) to the current one
        loss_fn(impl, f, p, t).backward()
        extra = (proc_status_kib("VmHWM") - base) * 1024
    f.grad = p.grad = None
    return int(extra)


def memory_child(args):
    """Runs in a child process (CPU): prints {impl: {N: extra bytes}} as JSON."""
    dtype = getattr(torch, args.dtype)
    out = {}
    for impl in args.impls:
        out[impl] = {}
        for n in args.sizes:
            sets = make_sets(n, args.k, args.d, dtype, "cpu", count=1)
            out[impl][str(n)] = extra_peak_bytes(impl, sets, "cpu")
    print("MEMORY_JSON " + json.dumps(out), flush=True)


def cpu_memory(impls, sizes, dtype_name, k, d):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", "--dtypes", dtype_name,
           "--sizes", *map(str, sizes), "--impls", *impls, "--k", str(k), "--d", str(d)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("MEMORY_JSON "))
    return json.loads(line[len("MEMORY_JSON "):])


# ----------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=None)
    parser.add_argument("--sizes", nargs="+", type=int, default=None)
    parser.add_argument("--impls", nargs="+", default=None)
    parser.add_argument("--k", type=int, default=K_PROTOS, help="prototypes (paper: 5,161)")
    parser.add_argument("--d", type=int, default=WIDTH, help="width (paper: 512)")
    parser.add_argument("--out", default=None, help="results name (default prototype_ce_<device>)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = args.device
    if args.sizes is None:
        args.sizes = [64, 512] if args.quick else [64, 512, 4096]
    if args.impls is None:
        args.impls = ["reference", "compiled"] + (["triton"] if device == "cuda" else [])
    if args.dtypes is None:
        args.dtypes = ["float32", "bfloat16"] if device == "cuda" else ["float32"]
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False  # let the compiled graph's backward be retained
    if args.memory_child:
        args.dtype = args.dtypes[0]
        memory_child(args)
        return

    cfg_of = None
    if "triton" in args.impls:
        from mate.kernels import prototype_ce as kernel_module

        cfg_of = kernel_module.block_config
    rows = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        mem_cpu = cpu_memory(args.impls, args.sizes, dtype_name, args.k, args.d) if device == "cpu" else None
        for n in args.sizes:
            sets = make_sets(n, args.k, args.d, dtype, device)
            cfg = cfg_of(torch.device(device), n, args.k, args.d, dtype) if cfg_of else None
            fl = floor(n, args.k, args.d, dtype, cfg)
            row = {"N": n, "K": args.k, "D": args.d, "tau": TAU, "dtype": dtype_name, "floor": fl,
                   "floor_ms": floor_seconds(fl, dtype, device), "ms": {}, "extra_peak_bytes": {}, "max_rel_err": {}}
            if cfg:
                row["triton_config"] = cfg
            for impl in args.impls:
                row["max_rel_err"][impl] = check(impl, sets)
            timings = bench_all(args.impls, sets, device, args.quick)
            for impl in args.impls:
                row["ms"][impl] = {ph: timings[impl][ph] for ph in ("fwd", "bwd", "fwd_bwd")}
                if "rounds" in timings[impl]:
                    row.setdefault("rounds", timings[impl]["rounds"])
                row["extra_peak_bytes"][impl] = (mem_cpu[impl][str(n)] if mem_cpu
                                                 else extra_peak_bytes(impl, sets, device))
                print(f"{dtype_name} N={n:5d} {impl:9s} " + " ".join(f"{k}={v:9.3f}ms" for k, v in row["ms"][impl].items())
                      + f" extra_peak={row['extra_peak_bytes'][impl] / 2**20:8.1f}MiB err={row['max_rel_err'][impl]}",
                      flush=True)
            eager = row["ms"]["reference"]
            row["speedup_vs_eager"] = {impl: {ph: eager[ph] / t for ph, t in row["ms"][impl].items()}
                                       for impl in args.impls if impl != "reference"}
            eager_mem = max(row["extra_peak_bytes"]["reference"], 1)
            row["extra_peak_vs_eager"] = {impl: row["extra_peak_bytes"][impl] / eager_mem
                                          for impl in args.impls if impl != "reference"}
            rows.append(row)
            del sets

    targets = {}
    big = [r for r in rows if r["N"] == max(args.sizes)]
    for r in big:
        if device == "cuda" and "triton" in r["speedup_vs_eager"]:
            targets[f"gpu_triton_fwd_bwd_speedup_N{r['N']}_{r['dtype']} (target >= 2)"] = r["speedup_vs_eager"]["triton"]["fwd_bwd"]
            targets[f"gpu_triton_extra_peak_vs_eager_N{r['N']}_{r['dtype']} (target <= 0.10)"] = r["extra_peak_vs_eager"]["triton"]
        if device == "cpu" and "compiled" in r["speedup_vs_eager"]:
            targets[f"cpu_compiled_fwd_bwd_speedup_N{r['N']}_{r['dtype']} (target >= 1.3)"] = r["speedup_vs_eager"]["compiled"]["fwd_bwd"]
    payload = {
        "benchmark": "prototype_cross_entropy",
        "quick": args.quick,
        "device": device,
        "environment": environment(),
        "torch_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "memory_method": ("torch.cuda.max_memory_allocated() - memory_allocated() before one fwd+bwd" if device == "cuda"
                          else "peak RSS (VmHWM after /proc/self/clear_refs) - RSS before one fwd+bwd, in a child "
                               "process with MALLOC_MMAP_THRESHOLD_=131072; includes the gradients, excludes inputs"),
        "notes": ([] if device == "cuda" else
                  ["triton not timed on CPU: TRITON_INTERPRET runs kernels in numpy, one program at a time"]),
        "targets": targets,
        "rows": rows,
    }
    path = write_results(args.out or f"prototype_ce_{device}", payload)
    print(json.dumps(targets, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
