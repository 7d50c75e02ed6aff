"""Gaussian-prior word-query attention (Eqs. 2-4): literal eager vs projected-once eager vs
torch.compile vs FlexAttention vs the fused Triton kernel.

    python benchmarks/bench_attention.py            # GPU: paper shapes + Q sweep; CPU: reduced size
    python benchmarks/bench_attention.py --quick    # smaller sweep, fewer repeats (smoke test)

Writes benchmarks/results/attention_<cpu|cuda>.json.

Two scopes, forward / backward / forward+backward each:

* ``layer``: queries q [Q, H, d] and frame features F [B, T, D] (D = H d) to the output, with the
  key/value projections inside; gradients to q, F, W_k, W_v, b_v. ``literal`` is the paper's formula
  taken literally (``mate.ops.gaussian_word_attention_literal``: the frames are scaled by the prior
  and projected once *per query*, O(Q T D^2)); every other impl projects each motion once
  (O(B T D^2)) and runs the op. This is the algebraic win of DESIGN.md section 2.
* ``op``: the op alone, k and v given (gradients to q, k, v): ``reference`` (eager), ``compiled``
  (torch.compile of the reference), ``flex`` (FlexAttention, GPU only) and ``triton``.

Impls: ``literal``; ``reference`` (impl="reference"); ``compiled`` (impl="compiled");
``flex`` (GPU only: ``torch.nn.attention.flex_attention`` compiled, queries sorted by motion, one
flattened sequence of B*T keys, a block mask for motion membership and length, a score_mod for the
prior; the block mask and the sort are built outside the timed region, as a model would reuse them
for a batch; flex's CPU backward is unsupported); ``triton`` (GPU only: under TRITON_INTERPRET the
kernel runs in numpy, one program at a time, which says nothing about speed).
No dropout (the literal form has none).

Timing: GPU ``triton.testing.do_bench`` medians (L2 flushed between calls); CPU ``median_seconds``
after warm-up, 2 noisy cores: read the ratios within one run. Inputs rotate over 3 sets.
Phases: ``fwd`` (with autograd recording), ``bwd`` (backward of a retained graph; donated buffers
off so compiled graphs allow it), ``fwd_bwd``.

Memory, extra peak over the inputs during one fwd+bwd (gradients included): GPU
``torch.cuda.max_memory_allocated() - memory_allocated()`` before the step; CPU the peak resident
set (VmHWM reset through /proc/self/clear_refs) minus the resident set before, in a child process
started with MALLOC_MMAP_THRESHOLD_=131072 (freed tensors go back to the OS).

Floors (DESIGN.md section 5), D = H d, item = bytes per element:
  op    fwd 4 Q T D FLOPs (QK^T, PV); bwd 8 Q T D (dV, dP, dQ, dK) + 2 Q T D to recompute QK^T;
        bytes fwd (2 Q D + 2 B T D) item, bwd (4 Q D + 4 B T D) item.
  layer + projections: fwd 4 B T D^2, bwd 8 B T D^2; bytes + 2 D^2 (weights) and B T D (frames).
  literal layer: fwd 4 Q T D^2 + 4 Q T D, bwd 8 Q T D^2 + 8 Q T D.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from common import environment, median_seconds, proc_status_kib, write_results

import mate.ops as ops

H, DH = 8, 64
D = H * DH
LAM = 0.1
GPU_PEAKS = {  # approximate dense vendor peaks: TFLOP/s by input dtype, TB/s
    "H100": {"float32": 66.9, "float32_tf32": 494.7, "bfloat16": 989.4, "float16": 989.4, "tb_s": 3.35},
    "H200": {"float32": 66.9, "float32_tf32": 494.7, "bfloat16": 989.4, "float16": 989.4, "tb_s": 4.8},
}
CPU_SIZE = dict(B=16, T=96)  # reduced on CPU: the literal form is O(Q T D^2) on 2 cores
GPU_SIZE = dict(B=64, T=196)  # the paper: batch 64, 196 frames, 8 heads x 64


# ----------------------------------------------------------------------------- inputs


def make_set(q_len, b, t, dtype, device, seed):
    """Queries spread over the motions like a MATE batch (own word + cross queries), lengths in
    [T/2, T], centres/widths of random segments, a few cross queries without prior."""
    g = torch.Generator().manual_seed(seed)
    w = lambda *shape, s=1.0: (torch.randn(*shape, generator=g) * s).to(device, dtype)  # noqa: E731
    motion_idx = torch.randint(0, b, (q_len,), generator=g)
    motion_idx[: min(b, q_len)] = torch.arange(min(b, q_len))
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    lengths[0] = t
    start = torch.rand(q_len, generator=g) * lengths[motion_idx] * 0.7
    end = start + 2 + torch.rand(q_len, generator=g) * (lengths[motion_idx] - start - 2).clamp_min(0)
    center, sigma = (start + end) / 2, (end - start) / 2
    sigma[torch.rand(q_len, generator=g) < 0.3] = -1.0  # cross queries: no prior
    s = {
        "q": w(q_len, H, DH), "frames": w(b, t, D), "w_k": w(D, D, s=D**-0.5), "b_k": w(D, s=0.1),
        "w_v": w(D, D, s=D**-0.5), "b_v": w(D, s=0.1),
        "motion_idx": motion_idx.to(device), "center": center.to(device), "sigma": sigma.to(device),
        "lengths": lengths.to(device),
    }
    s["k"] = (s["frames"] @ s["w_k"].T).view(b, t, H, DH)
    s["v"] = (s["frames"] @ s["w_v"].T + s["b_v"]).view(b, t, H, DH)
    for name in ("q", "frames", "w_k", "b_k", "w_v", "b_v", "k", "v"):
        s[name] = s[name].detach().requires_grad_()
    return s


def grads_of(scope, s):
    names = ("q", "frames", "w_k", "w_v", "b_v") if scope == "layer" else ("q", "k", "v")
    return [s[n] for n in names]


# ----------------------------------------------------------------------------- FlexAttention


def flex_plan(s):
    """Sorted queries and the block mask (built once per batch, outside the timed region)."""
    from torch.nn.attention.flex_attention import create_block_mask

    mi, lengths = s["motion_idx"], s["lengths"]
    b, t = s["k"].shape[:2]
    order = torch.argsort(mi, stable=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    mi_s = mi[order]

    def mask_mod(batch, head, qi, kj):  # key j = frame (j % T) of motion (j // T)
        m = mi_s[qi]
        return (kj // t == m) & (kj % t < lengths[m])

    block_mask = create_block_mask(mask_mod, 1, None, mi.numel(), b * t, device=str(mi.device))
    return {"order": order, "inverse": inverse, "center": s["center"][order].float(),
            "sigma": s["sigma"][order].float(), "block_mask": block_mask}


def _flex_attention_impl(q, k, v, order, inverse, center, sigma, block_mask, lam, scale):
    from torch.nn.attention.flex_attention import flex_attention

    num_motions, num_frames = k.shape[:2]
    qs = q[order].transpose(0, 1).unsqueeze(0).contiguous()  # [1, H, Q, d], queries sorted by motion
    ks = k.reshape(num_motions * num_frames, H, DH).transpose(0, 1).unsqueeze(0).contiguous()  # [1, H, B*T, d]
    vs = v.reshape(num_motions * num_frames, H, DH).transpose(0, 1).unsqueeze(0).contiguous()

    def score_mod(score, batch, head, qi, kj):  # scale <q, k> * (1 + lam g_q(t)), t = j % T
        sg = sigma[qi]
        has = sg > 0
        z = ((kj % num_frames).to(torch.float32) - center[qi]) / torch.where(has, sg, 1.0)
        return score * (1.0 + lam * torch.where(has, torch.exp(-0.5 * z * z), 0.0))

    out = flex_attention(qs, ks, vs, score_mod=score_mod, block_mask=block_mask, scale=scale)
    return out[0].transpose(0, 1)[inverse]


_flex_compiled = None


def flex_attention_op(q, k, v, plan, lam, scale):
    global _flex_compiled
    if _flex_compiled is None:
        _flex_compiled = torch.compile(_flex_attention_impl, fullgraph=True, dynamic=False)
    return _flex_compiled(q, k, v, plan["order"], plan["inverse"], plan["center"], plan["sigma"],
                          plan["block_mask"], lam, scale)


# ----------------------------------------------------------------------------- the timed functions


def forward(scope, impl, s, plan=None):
    scale = DH**-0.5
    common = (s["motion_idx"], s["center"], s["sigma"], s["lengths"], LAM)
    if impl == "literal":
        return ops.gaussian_word_attention_literal(s["q"], s["frames"], s["w_k"], s["b_k"], s["w_v"], s["b_v"], *common)
    if scope == "layer":  # project each motion once (the key bias cancels in the softmax)
        b, t = s["frames"].shape[:2]
        k = (s["frames"] @ s["w_k"].T).view(b, t, H, DH)
        v = (s["frames"] @ s["w_v"].T + s["b_v"]).view(b, t, H, DH)
    else:
        k, v = s["k"], s["v"]
    if impl == "flex":
        return flex_attention_op(s["q"], k, v, plan, LAM, scale)
    return ops.gaussian_word_attention(s["q"], k, v, *common, impl=impl, validate=False)


def time_ms(fn, device, quick):
    if device == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=10 if quick else 25, rep=50 if quick else 200,
                                             return_mode="median"))
    seconds, _ = median_seconds(fn, min_repeats=3, min_total_s=0.2 if quick else 0.6, warmup=1)
    return seconds * 1e3


def bench(scope, impl, sets, plans, device, quick):
    state = {"i": 0}
    dout = [torch.randn_like(sets[0]["q"]) for _ in sets]

    def rotate():
        state["i"] = (state["i"] + 1) % len(sets)
        return state["i"]

    def clear(i):
        for x in grads_of(scope, sets[i]):
            x.grad = None

    def fwd():
        i = rotate()
        return forward(scope, impl, sets[i], plans[i])

    def fwd_bwd():
        i = rotate()
        clear(i)
        forward(scope, impl, sets[i], plans[i]).backward(dout[i])

    fwd_bwd()  # warm-up (compiles)
    outs = [forward(scope, impl, s, p) for s, p in zip(sets, plans)]

    def bwd():
        i = rotate()
        clear(i)
        outs[i].backward(dout[i], retain_graph=True)

    result = {"fwd": time_ms(fwd, device, quick), "bwd": time_ms(bwd, device, quick),
              "fwd_bwd": time_ms(fwd_bwd, device, quick)}
    for i in range(len(sets)):
        clear(i)
    return result


def check(scope, impl, s, plan):
    """Output and gradients against the eager projected-once reference in float64."""
    ref_s = {n: (x.detach().double().requires_grad_() if x.is_floating_point() and n not in ("center", "sigma") else x)
             for n, x in s.items()}
    ref_s["center"], ref_s["sigma"] = s["center"].double(), s["sigma"].double()
    want = forward(scope, "reference", ref_s)
    dout = torch.randn_like(want)
    want.backward(dout)
    for x in grads_of(scope, s):
        x.grad = None
    got = forward(scope, impl, s, plan)
    got.backward(dout.to(got.dtype))

    def rel(a, b):
        return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()

    errs = {"out": rel(got.detach(), want.detach())}
    for name, a, b in zip(("q", "frames", "w_k", "w_v", "b_v") if scope == "layer" else ("q", "k", "v"),
                          grads_of(scope, s), grads_of(scope, ref_s)):
        errs["d" + name] = rel(a.grad, b.grad)
        a.grad = None
    return errs


# ----------------------------------------------------------------------------- floors and memory


def floor(scope, impl, q_len, b, t, dtype):
    item = torch.empty((), dtype=dtype).element_size()
    fl = {"flops_fwd": 4 * q_len * t * D, "flops_bwd": 10 * q_len * t * D,
          "bytes_fwd": (2 * q_len * D + 2 * b * t * D) * item, "bytes_bwd": (4 * q_len * D + 4 * b * t * D) * item}
    if scope == "layer":
        rows = q_len * t if impl == "literal" else b * t  # keys/values projected per query vs per motion
        fl["flops_fwd"] += 4 * rows * D * D
        fl["flops_bwd"] += 8 * rows * D * D
        fl["bytes_fwd"] += (2 * D * D + b * t * D) * item
        fl["bytes_bwd"] += (4 * D * D + 2 * b * t * D) * item
    return fl


def floor_ms(fl, dtype, device):
    if device != "cuda":
        return None
    peaks = next((v for key, v in GPU_PEAKS.items() if key in torch.cuda.get_device_name()), None)
    if peaks is None:
        return None
    key = str(dtype).replace("torch.", "")
    if key == "float32" and torch.get_float32_matmul_precision() != "highest":
        key = "float32_tf32"
    return {ph: max(fl[f"flops_{ph}"] / (peaks[key] * 1e12), fl[f"bytes_{ph}"] / (peaks["tb_s"] * 1e12)) * 1e3
            for ph in ("fwd", "bwd")}


def extra_peak_bytes(scope, impl, s, plan, device):
    for _ in range(2):  # warm-up: compiles, the allocator settles
        for x in grads_of(scope, s):
            x.grad = None
        forward(scope, impl, s, plan).backward(torch.ones_like(s["q"]))
    for x in grads_of(scope, s):
        x.grad = None
    dout = torch.ones_like(s["q"])
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward(scope, impl, s, plan).backward(dout)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
    else:
        base = proc_status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak resident set to the current one
        forward(scope, impl, s, plan).backward(dout)
        extra = (proc_status_kib("VmHWM") - base) * 1024
    for x in grads_of(scope, s):
        x.grad = None
    return int(extra)


def memory_child(args):
    """Child process (CPU): prints {scope/impl/Q: extra bytes} as JSON."""
    out = {}
    for q_len in args.sizes:
        s = make_set(q_len, args.B, args.T, getattr(torch, args.dtypes[0]), "cpu", seed=0)
        for scope, impl in impls_for(args, "cpu"):
            out[f"{scope}/{impl}/{q_len}"] = extra_peak_bytes(scope, impl, s, None, "cpu")
    print("MEMORY_JSON " + json.dumps(out), flush=True)


def cpu_memory(args):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", "--device", "cpu", "--dtypes", args.dtypes[0],
           "--sizes", *map(str, args.sizes), "-B", str(args.B), "-T", str(args.T)]
    if args.literal_max_q is not None:
        cmd += ["--literal-max-q", str(args.literal_max_q)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("MEMORY_JSON "))
    return json.loads(line[len("MEMORY_JSON "):])


# ----------------------------------------------------------------------------- main


def impls_for(args, device, q_len=None):
    gpu_only = ["flex", "triton"] if device == "cuda" else []
    out = []
    for scope in ("layer", "op"):
        names = (["literal"] if scope == "layer" else []) + ["reference", "compiled"] + gpu_only
        for impl in names:
            if impl == "literal" and q_len is not None and args.literal_max_q and q_len > args.literal_max_q:
                continue
            out.append((scope, impl))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=None)
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="query counts Q")
    parser.add_argument("-B", type=int, default=None, help="motions")
    parser.add_argument("-T", type=int, default=None, help="frames")
    parser.add_argument("--literal-max-q", type=int, default=None,
                        help="skip the literal form above this Q (it is O(Q T D^2) in time and O(Q T D) in memory)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = args.device
    size = GPU_SIZE if device == "cuda" else CPU_SIZE
    args.B = args.B or size["B"]
    args.T = args.T or size["T"]
    per_motion = 17  # the paper: Q = 64 + 2 * 8 * 64 = 1088 queries for 64 motions
    if args.sizes is None:
        if device == "cuda":
            args.sizes = [64, 1088] if args.quick else [64, 256, 1088, 4096]
        else:
            args.sizes = [args.B * per_motion] if args.quick else [64, args.B * per_motion, 1088]
    if args.dtypes is None:
        args.dtypes = ["float32", "bfloat16"] if device == "cuda" else ["float32"]
    if args.literal_max_q is None and device == "cpu":
        args.literal_max_q = args.B * per_motion  # ~20 s a phase beyond that on 2 cores
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False  # let compiled graphs' backward be retained (bwd phase)
    if args.memory_child:
        memory_child(args)
        return
    rows = []
    load_before = os.getloadavg()
    mem_cpu = cpu_memory(args) if device == "cpu" else None
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        for q_len in args.sizes:
            sets = [make_set(q_len, args.B, args.T, dtype, device, seed=i) for i in range(3)]
            needs_flex = any(impl == "flex" for _, impl in impls_for(args, device, q_len))
            plans = [flex_plan(s) if needs_flex else None for s in sets]
            for scope in ("layer", "op"):
                row = {"scope": scope, "Q": q_len, "B": args.B, "T": args.T, "H": H, "d": DH, "dtype": dtype_name,
                       "lam": LAM, "ms": {}, "extra_peak_bytes": {}, "max_rel_err": {}, "floor": {}, "floor_ms": {},
                       "errors": {}}
                for sc, impl in impls_for(args, device, q_len):
                    if sc != scope:
                        continue
                    fl = floor(scope, impl, q_len, args.B, args.T, dtype)
                    row["floor"][impl], row["floor_ms"][impl] = fl, floor_ms(fl, dtype, device)
                    try:
                        row["max_rel_err"][impl] = check(scope, impl, sets[0], plans[0])
                        row["ms"][impl] = bench(scope, impl, sets, plans, device, args.quick)
                        row["extra_peak_bytes"][impl] = (mem_cpu.get(f"{scope}/{impl}/{q_len}") if mem_cpu
                                                         else extra_peak_bytes(scope, impl, sets[0], plans[0], device))
                    except Exception as err:  # one impl failing (e.g. flex on an old torch) does not end the run
                        row["errors"][impl] = f"{type(err).__name__}: {err}"[:500]
                        row["ms"].pop(impl, None)
                        print(f"{scope} Q={q_len} {impl}: FAILED {row['errors'][impl]}", flush=True)
                        continue
                    mem = row["extra_peak_bytes"][impl]
                    print(f"{dtype_name} {scope:5s} Q={q_len:5d} {impl:9s} "
                          + " ".join(f"{k}={v:9.3f}ms" for k, v in row["ms"][impl].items())
                          + (f" extra_peak={mem / 2**20:8.1f}MiB" if mem is not None else "")
                          + f" err(out)={row['max_rel_err'][impl]['out']:.1e}", flush=True)
                ms = row["ms"]
                if "literal" in ms:
                    row["speedup_vs_literal"] = {i: {ph: ms["literal"][ph] / t for ph, t in ms[i].items()}
                                                 for i in ms if i != "literal"}
                baseline = {ph: min(ms[i][ph] for i in ms if i != "triton") for ph in ("fwd", "bwd", "fwd_bwd")} \
                    if any(i != "triton" for i in ms) else None
                if baseline:
                    row["best_non_triton_ms"] = baseline
                    row["speedup_vs_best_non_triton"] = {i: {ph: baseline[ph] / t for ph, t in ms[i].items()}
                                                         for i in ms}
                if "reference" in ms:
                    row["speedup_vs_reference"] = {i: {ph: ms["reference"][ph] / t for ph, t in ms[i].items()}
                                                   for i in ms if i != "reference"}
                rows.append(row)
            del sets, plans

    payload = {
        "benchmark": "gaussian_word_attention",
        "quick": args.quick,
        "device": device,
        "size_note": (f"B={args.B} motions, T={args.T} frames, H={H}, d={DH} (D={D}), Q sweep {args.sizes}"
                      + ("" if device == "cuda" else
                         "; reduced from the paper's B=64, T=196, Q=1088 so the literal O(Q T D^2) form fits a few "
                         "minutes on 2 CPU cores")),
        "environment": environment(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15_before_after": [list(load_before), list(os.getloadavg())],
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "memory_method": ("torch.cuda.max_memory_allocated() - memory_allocated() before one fwd+bwd"
                          if device == "cuda" else
                          "measured: peak RSS (VmHWM after /proc/self/clear_refs) - RSS before one fwd+bwd, in a "
                          "child process with MALLOC_MMAP_THRESHOLD_=131072; includes gradients, excludes inputs"),
        "floor_note": ("op: fwd 4QTD, bwd 10QTD FLOPs (8QTD + QK^T recompute); bytes read q,k,v write out (fwd), "
                       "read q,k,v,o,do write dq,dk,dv (bwd). layer adds projections 4BTD^2 fwd / 8BTD^2 bwd "
                       "(literal: 4QTD^2 / 8QTD^2). floor_ms = max(FLOPs/peak, bytes/bandwidth) on known GPUs"),
        "notes": ([] if device == "cuda" else [
            "triton not timed on CPU: TRITON_INTERPRET runs kernels in numpy, one program at a time",
            "flex not timed on CPU: FlexAttention's CPU backward is unsupported",
            f"literal skipped above Q={args.literal_max_q} on CPU (O(Q T D^2) time, O(Q T D) memory)",
        ]) + ["no dropout: the literal form has none"],
        "rows": rows,
    }
    path = write_results(f"attention_{device}", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
