"""The fused prototype cross-entropy kernel (mate.kernels.prototype_ce) against the eager reference.

On CPU the kernels run under TRITON_INTERPRET=1 (conftest sets it): shapes stay small, and block
sizes are forced down to 16 so every test crosses several row / prototype / D blocks with ragged
tails (N, K, D not multiples of 16). Float64 inputs run the kernel in float64 (the interpreter and
GPUs both support it), so those comparisons are tight; float32/float16 kernels are compared with a
float64 reference by relative error. Outputs are poisoned (NaN) before the kernels write them.

Also here: ignore_index (some rows, a valid class id, all rows), zero / sub-eps / 1e30-norm rows,
tiny tau, info_nce, non-contiguous inputs and an expanded incoming gradient, bit-identical
reruns, a TorchDispatchMode check that no tensor as large as the N x K logits is ever created,
and a torch.compile(fullgraph=True) dry run of the op's tracing. The ``gpu`` tests (skipped
without CUDA) add bf16, the paper's shape (K = 5,161, D = 512), peak memory, torch.compile with
the real backend, and opcheck.
"""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import mate.ops as ops

kernel = pytest.importorskip("mate.kernels.prototype_ce")

CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
SMALL = dict(BLOCK_M=16, BLOCK_K=16, BLOCK_D=16, BLOCK_DO=16)  # several blocks on small shapes
N, K, D = 37, 53, 40  # none a multiple of the blocks; K > D so N x K is the largest size around


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    monkeypatch.setenv("MATE_POISON_OUTPUTS", "1")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_inputs(seed, n=N, k=K, d=D, ignored=(3, 7)):
    """Fresh random float64 inputs (never zeros), targets in [0, K) with a few ignored rows."""
    g = gen(seed)
    features = torch.randn(n, d, generator=g, dtype=torch.float64) * 3.0
    prototypes = torch.randn(k, d, generator=g, dtype=torch.float64) * 0.5
    target = torch.randint(0, k, (n,), generator=g)
    target[[i for i in ignored if i < n]] = -100
    return features, prototypes, target


def run(impl, features, prototypes, target, tau=0.05, reduction="mean", ignore_index=-100, upstream=None,
        dtype=None, device=DEV):
    """Loss and (df, dp) for one impl; inputs cast to ``dtype`` (default: as given)."""
    dtype = dtype or features.dtype
    f = features.to(device, dtype).requires_grad_()
    p = prototypes.to(device, dtype).requires_grad_()
    loss = ops.prototype_cross_entropy(f, p, target.to(device), tau, reduction, ignore_index, impl=impl)
    if upstream is None:
        loss.sum().backward()  # "none": the backward receives an expanded, stride-0 gradient
    else:
        loss.backward(upstream.to(device, loss.dtype))
    return loss.detach(), f.grad, p.grad


def reference64(features, prototypes, target, dtype=None, **kw):
    """The eager reference in float64, on inputs first rounded to ``dtype`` (what the kernel saw)."""
    dtype = dtype or features.dtype
    return run("reference", features.to(dtype).double(), prototypes.to(dtype).double(), target, device="cpu", **kw)


def rel_err(got, want):
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    scale = want.abs().max().clamp_min(1e-300)
    return ((got - want).abs().max() / scale).item()


def assert_rows_close(got, want, rtol):
    """Row-wise relative error (rows here span 30 orders of magnitude: huge, tiny, zero-norm)."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    err = (got - want).norm(dim=-1)
    bound = rtol * want.norm(dim=-1)
    assert torch.isfinite(got).all()
    assert (err <= bound).all(), f"row errors {err[err > bound]} > {bound[err > bound]}"


# ----------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("split", [1, 3])
def test_float64_matches_reference(reduction, split):
    """Loss, df and dp in float64; split > 1 exercises the K-split partials and their fixed-order merge."""
    features, prototypes, target = make_inputs(seed=10 + split)
    upstream = torch.randn(N, generator=gen(99), dtype=torch.float64) if reduction == "none" else None
    with kernel.override_config(**SMALL, SPLIT_F=split, SPLIT_B=split):
        got = run("triton", features, prototypes, target, reduction=reduction, upstream=upstream)
    want = reference64(features, prototypes, target, reduction=reduction, upstream=upstream)
    for g, w in zip(got, want):
        assert g.dtype == torch.float64 and g.shape == w.shape
        torch.testing.assert_close(g.cpu(), w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("d", [13, 24])
def test_odd_widths_and_default_blocks(d):
    """D below / not a multiple of tl.dot's 16 (masked tails pad it), with the default blocks."""
    features, prototypes, target = make_inputs(seed=20 + d, n=21, k=45, d=d)
    got = run("triton", features, prototypes, target, tau=0.07)  # 1 / tau not exact in fp32
    want = reference64(features, prototypes, target, tau=0.07)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float16, 5e-3)])
def test_low_precision_vs_float64_reference(dtype, tol):
    """fp32 / fp16 kernels (fp32 accumulation) against the float64 reference, by relative error."""
    features, prototypes, target = make_inputs(seed=30)
    with kernel.override_config(**SMALL):
        loss, df, dp = run("triton", features, prototypes, target, reduction="none", dtype=dtype,
                           upstream=torch.rand(N, generator=gen(31), dtype=torch.float64))
    want = reference64(features, prototypes, target, dtype=dtype, reduction="none",
                       upstream=torch.rand(N, generator=gen(31), dtype=torch.float64))
    assert loss.dtype == df.dtype == dp.dtype == dtype
    for g, w in zip((loss, df, dp), want):
        assert rel_err(g, w) < tol


def test_ignore_index_inside_the_class_range():
    """ignore_index may be a valid class id: those rows contribute nothing (mean over the rest)."""
    features, prototypes, target = make_inputs(seed=40, ignored=())
    target[[0, 5, 6]] = 4
    with kernel.override_config(**SMALL):
        got = run("triton", features, prototypes, target, ignore_index=4)
    want = reference64(features, prototypes, target, ignore_index=4)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-10, atol=1e-12)
    assert not got[1][[0, 5, 6]].any()  # ignored rows get exactly zero gradient


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_is_zero_with_zero_grad(reduction):
    features, prototypes, _ = make_inputs(seed=41, n=20, k=30, d=24)
    target = torch.full((20,), -100)
    loss, df, dp = run("triton", features, prototypes, target, reduction=reduction)
    assert torch.isfinite(loss).all() and not loss.any()
    assert not df.any() and not dp.any()


def test_zero_tiny_and_huge_rows():
    """Zero-norm rows (normalised to 0, gradient dh / eps like the reference's clamp), rows below
    eps (clamp: no projection term), and rows of norm ~1e30: row by row against the reference."""
    features, prototypes, target = make_inputs(seed=50)
    features[0] = 0.0
    features[1] *= 1e30
    features[2] *= 1e-20  # ||f|| ~ 1e-19 < eps
    prototypes[target[4]] *= 1e30  # a target prototype that is huge
    prototypes[5] = 0.0
    prototypes[6] *= 1e-20
    with kernel.override_config(**SMALL):
        got = run("triton", features, prototypes, target, reduction="none",
                  upstream=torch.randn(N, generator=gen(51), dtype=torch.float64))
    want = reference64(features, prototypes, target, reduction="none",
                       upstream=torch.randn(N, generator=gen(51), dtype=torch.float64))
    torch.testing.assert_close(got[0].cpu(), want[0], rtol=1e-10, atol=1e-12)
    assert_rows_close(got[1], want[1], 1e-9)
    assert_rows_close(got[2], want[2], 1e-9)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-2)])
def test_tiny_tau_large_logits_do_not_overflow(dtype, tol):
    """tau = 1e-4: |z| up to 1e4, exp overflows without the running max; loss in units of 1/tau."""
    features, prototypes, target = make_inputs(seed=60, n=20, k=35, d=24)
    tau = 1e-4
    with kernel.override_config(**SMALL):
        loss, df, dp = run("triton", features, prototypes, target, tau=tau, reduction="none", dtype=dtype)
    want = reference64(features, prototypes, target, tau=tau, reduction="none", dtype=dtype)
    for t in (loss, df, dp):
        assert torch.isfinite(t).all()
    assert ((loss.double().cpu() - want[0]).abs() * tau).max() < tol
    assert rel_err(df, want[1]) < tol and rel_err(dp, want[2]) < tol


def test_info_nce_matches_reference():
    g = gen(70)
    a = torch.randn(19, 24, generator=g, dtype=torch.float64)
    b = torch.randn(19, 24, generator=g, dtype=torch.float64)
    out = {}
    for impl in ("triton", "reference"):
        a_, b_ = a.clone().to(DEV).requires_grad_(), b.clone().to(DEV).requires_grad_()
        loss = ops.info_nce(a_, b_, 0.05, impl=impl)
        loss.backward()
        out[impl] = (loss.detach().cpu(), a_.grad.cpu(), b_.grad.cpu())
    for g_, w in zip(out["triton"], out["reference"]):
        torch.testing.assert_close(g_, w, rtol=1e-10, atol=1e-12)


def test_non_contiguous_inputs_and_expanded_grad():
    """Transposed / strided views in, and an explicitly expanded (stride-0) incoming gradient."""
    features, prototypes, target = make_inputs(seed=80)
    f_big = torch.randn(D, 2 * N, generator=gen(81), dtype=torch.float64)
    p_big = torch.randn(K, 3 * D, generator=gen(82), dtype=torch.float64)
    target_big = torch.stack([target, torch.zeros_like(target)], dim=1)
    results = {}
    for impl in ("triton", "reference"):
        fb, pb = f_big.clone().requires_grad_(), p_big.clone().requires_grad_()
        f, p, t = fb.t()[::2], pb[:, ::3], target_big[:, 0]  # non-contiguous views, target stride 2
        assert not f.is_contiguous() and not p.is_contiguous() and not t.is_contiguous()
        with kernel.override_config(**SMALL):
            loss = ops.prototype_cross_entropy(f, p, t, 0.05, "none", impl=impl)
            loss.backward(torch.full((), 0.7, dtype=torch.float64).expand(N))
        results[impl] = (loss.detach(), fb.grad, pb.grad)
    for g_, w in zip(results["triton"], results["reference"]):
        torch.testing.assert_close(g_, w, rtol=1e-10, atol=1e-12)


def test_deterministic_gradients():
    """Two runs give bit-identical loss and gradients (fixed-order reductions, no atomics)."""
    features, prototypes, target = make_inputs(seed=90)
    with kernel.override_config(**SMALL, SPLIT_F=2, SPLIT_B=2):
        first = run("triton", features, prototypes, target, dtype=torch.float32)
        second = run("triton", features, prototypes, target, dtype=torch.float32)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in bytes) any op creates. The custom ops are decomposed under
    this mode, so the allocations inside their implementations are seen too (and, on CPU, the
    interpreter's byte-wise host copies of the kernel arguments)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def _decompose_under(mode_cls):
    from torch._library.custom_ops import _maybe_get_opdef

    for name in ("mate::prototype_cross_entropy", "mate::prototype_cross_entropy_backward"):
        opdef = _maybe_get_opdef(name)

        def impl(mode, func, types, args, kwargs, _fn=opdef._init_fn):
            with mode:
                return _fn(*args, **kwargs)

        opdef.register_torch_dispatch(mode_cls, impl)


@pytest.mark.parametrize("split", [1, 2])
def test_never_allocates_n_by_k(split):
    """Forward + backward create no tensor as large as the N x K logits (the reference does)."""
    n, k, d = 40, 150, 24  # N x K = 6000 > K x D = 3600 > N x D
    features, prototypes, target = make_inputs(seed=100, n=n, k=k, d=d)
    logits_bytes = n * k * 8  # float64
    _decompose_under(_LargestTensor)
    sizes = {}
    for impl in ("triton", "reference"):
        with kernel.override_config(**SMALL, SPLIT_F=split, SPLIT_B=split), _LargestTensor() as mode:
            f = features.clone().requires_grad_()
            p = prototypes.clone().requires_grad_()
            loss = ops.prototype_cross_entropy(f, p, target, 0.05, "mean", impl=impl)
            loss.backward()
        sizes[impl] = mode.largest
    assert sizes["reference"] >= logits_bytes  # the detector does see the logits
    assert sizes["triton"] < logits_bytes
    assert sizes["triton"] <= max(k, split * n) * d * 8  # input-sized (or the split partials) at most


def test_registration_and_dispatch():
    assert ops.resolve_impl("prototype_cross_entropy", "triton", torch.device("cpu")) == "triton"
    from mate.ops import _common

    assert _common.triton_impl("prototype_cross_entropy") is kernel.prototype_cross_entropy_triton
    assert hasattr(torch.ops.mate, "prototype_cross_entropy")
    assert hasattr(torch.ops.mate, "prototype_cross_entropy_backward")


def test_block_config_tiles_and_splits():
    """Tiles never exceed the padded problem (and stay >= 16 for tl.dot); split partials stay
    smaller than the N x K logits."""
    cfg = kernel.block_config(torch.device("cpu"), 5, 7, 3)
    for name in ("fwd", "df", "dp"):
        assert all(cfg[name][key] == 16 for key in ("BLOCK_M", "BLOCK_K", "BLOCK_D"))
    for n in (64, 512, 4096):
        with kernel.override_config(SPLIT_B=64, SPLIT_F=1000):
            cfg = kernel.block_config(torch.device("cpu"), n, 5161, 512)
        assert cfg["SPLIT_F"] == 64 and cfg["SPLIT_B"] == 64  # clamped to the K blocks / 64
        assert kernel.block_config(torch.device("cpu"), n, 5161, 512)["SPLIT_B"] == 1


_COMPILE_DRY_RUN = r"""
import os, sys
import torch, triton
import triton.runtime.jit as jit
from triton.backends.compiler import GPUTarget

class FakeDriver:  # an sm_90 target for Triton's front end (TTIR), no device behind it
    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

triton.runtime.driver.set_active(FakeDriver())
launches = []
jit.JITFunction.run = lambda self, *a, grid=None, **kw: launches.append(self.fn.__name__)

import mate.ops as ops
import mate.kernels.prototype_ce  # noqa: F401
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.prototypes = torch.nn.Parameter(torch.randn(101, 24))

    def forward(self, x, y):
        return ops.prototype_cross_entropy(x * 2.0, self.prototypes, y, 0.05, impl="triton", validate=False)

cnt = CompileCounterWithBackend("aot_eager")
x = torch.randn(30, 24, requires_grad=True)
torch.compile(Head(), fullgraph=True, backend=cnt)(x, torch.randint(0, 101, (30,))).backward()
assert cnt.frame_count == 1 and not counters["graph_break"], (cnt.frame_count, dict(counters["graph_break"]))
graph = cnt.graphs[0].code
assert "torch.ops.mate.prototype_cross_entropy(" in graph, graph
assert launches.count("_fwd_kernel") == 1 and launches.count("_bwd_df_kernel") == 1, launches
assert launches.count("_bwd_dp_kernel") == 1, launches
print("OK", launches)
"""


def test_torch_compile_fullgraph_dry_run():
    """torch.compile(fullgraph=True) over the triton_op: one frame, no graph break, the forward and
    backward kernels reached through AOT autograd's functionalised kernel wrappers. Runs in a
    subprocess without the interpreter (a FakeTensor cannot be interpreted): Triton's front end
    gets an sm_90 target for the mutation analysis and kernel launches are no-ops, so this checks
    tracing, not numbers (the GPU test below checks numbers)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE_DRY_RUN], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


# ----------------------------------------------------------------------------- GPU only


gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (the CPU runs use the interpreter)")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 5e-3), (torch.bfloat16, 3e-2),
                                       (torch.float64, 1e-10)])
def test_gpu_paper_shape_vs_reference(dtype, tol):
    """Paper-size K (5,161, not a power of two), D = 512, default blocks and GPU splits."""
    features, prototypes, target = make_inputs(seed=200, n=300, k=5161, d=512)
    got = run("triton", features, prototypes, target, dtype=dtype)
    want = reference64(features, prototypes, target, dtype=dtype)
    for g, w in zip(got, want):
        assert rel_err(g, w) < tol


@pytest.mark.gpu
@gpu
def test_gpu_small_n_split_and_determinism():
    features, prototypes, target = make_inputs(seed=201, n=64, k=5161, d=512)
    first = run("triton", features, prototypes, target, dtype=torch.float32)
    second = run("triton", features, prototypes, target, dtype=torch.float32)
    want = reference64(features, prototypes, target, dtype=torch.float32)
    for a, b, w in zip(first, second, want):
        assert torch.equal(a, b)
        assert rel_err(a, w) < 1e-5


@pytest.mark.gpu
@gpu
def test_gpu_extra_memory_below_one_logits_tensor():
    n, k, d = 4096, 5161, 512
    features, prototypes, target = make_inputs(seed=202, n=n, k=k, d=d)
    f = features.to("cuda", torch.float32).requires_grad_()
    p = prototypes.to("cuda", torch.float32).requires_grad_()
    t = target.cuda()
    ops.prototype_cross_entropy(f, p, t, impl="triton").backward()  # warm-up (compiles)
    f.grad = p.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    ops.prototype_cross_entropy(f, p, t, impl="triton").backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    grads = f.numel() * 4 + p.numel() * 4
    assert extra - grads < n * k * 4 / 4  # well under one fp32 N x K logits tensor


@pytest.mark.gpu
@gpu
def test_gpu_torch_compile_fullgraph_no_graph_break():
    import torch._dynamo

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.prototypes = torch.nn.Parameter(torch.randn(1037, 96))

        def forward(self, x, y):
            return ops.prototype_cross_entropy(x * 2.0, self.prototypes, y, 0.05, impl="triton", validate=False)

    torch._dynamo.reset()
    head = Head().cuda()
    x = torch.randn(200, 96, device="cuda", requires_grad=True)
    y = torch.randint(0, 1037, (200,), device="cuda")
    explanation = torch._dynamo.explain(head)(x, y)
    assert explanation.graph_break_count == 0
    compiled = torch.compile(head, fullgraph=True)
    loss = compiled(x, y)
    loss.backward()
    got = (loss.detach(), x.grad.clone(), head.prototypes.grad.clone())
    x.grad = head.prototypes.grad = None
    loss_ref = ops.prototype_cross_entropy(x * 2.0, head.prototypes, y, 0.05, impl="reference")
    loss_ref.backward()
    for g, w in zip(got, (loss_ref.detach(), x.grad, head.prototypes.grad)):
        assert rel_err(g, w) < 1e-5


@pytest.mark.gpu
@gpu
def test_gpu_opcheck():
    features, prototypes, target = make_inputs(seed=203, n=50, k=300, d=64)
    f = features.to("cuda", torch.float32).requires_grad_()
    p = prototypes.to("cuda", torch.float32).requires_grad_()
    torch.library.opcheck(torch.ops.mate.prototype_cross_entropy.default,
                          (f, p, target.cuda(), 0.05, "mean", -100))
