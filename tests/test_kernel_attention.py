"""The fused Gaussian-prior attention kernel (mate.kernels.gaussian_attention) against the eager
reference of mate.ops, forward and every gradient.

Without a GPU the kernels run on CPU tensors under TRITON_INTERPRET=1 (set by conftest): numpy,
one program at a time, so shapes are small. Small frame blocks (block_t=16) make T = 37 span three
frame blocks, the last one partial, so the online softmax really runs across blocks. Inputs are
fresh random tensors (never zeros) from seeded generators; every output is poisoned with NaN before
the kernels write it (MATE_POISON_OUTPUTS=1), so an element a kernel skips shows up.

Tolerances: float64 kernels (exact broadcast-reduce products) must match the float64 reference to
~1e-12; float32 kernels are compared with the float64 reference by relative error at fp32 levels;
float16 at half levels. bfloat16 and torch.compile of the triton_op run only on a GPU (marked gpu).
"""
from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

import mate.ops as ops
from mate.ops.attention import _attention_reference


def _kernel_module():
    """mate.kernels.gaussian_attention, even while a sibling kernel module of mate.kernels is
    missing (the package import fails after this module has registered itself)."""
    try:
        from mate.kernels import gaussian_attention

        return gaussian_attention
    except ImportError:
        module = sys.modules.get("mate.kernels.gaussian_attention")
        if module is None:
            raise
        return module


try:
    ga = _kernel_module()
except ImportError as err:  # pragma: no cover - platforms without triton
    pytest.skip(f"triton unavailable: {err}", allow_module_level=True)

LAM = 0.37  # larger than the paper's 0.1 so the prior visibly moves the scores
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _poison_outputs(monkeypatch):
    monkeypatch.setenv("MATE_POISON_OUTPUTS", "1")


def make_inputs(seed, q_len=23, b_len=5, t_len=37, heads=2, head_dim=5, dtype=torch.float64, device="cpu",
                empty_motion=3, crowd=None):
    """q, k, v, motion_idx, center, sigma, lengths. Queries are spread unevenly (motion 0 gets a
    third of them, ``empty_motion`` none, the rest random); query 1 has sigma = 0, query 4 sigma < 0
    (no prior); motion 0 is full length, motion 1 has a single frame."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(q_len, heads, head_dim, generator=g, dtype=dtype)
    k = torch.randn(b_len, t_len, heads, head_dim, generator=g, dtype=dtype)
    v = torch.randn(b_len, t_len, heads, head_dim, generator=g, dtype=dtype)
    choices = torch.tensor([b for b in range(b_len) if b != empty_motion])
    motion_idx = choices[torch.randint(0, len(choices), (q_len,), generator=g)]
    motion_idx[: q_len // 3 if crowd is None else crowd] = 0
    motion_idx = motion_idx[torch.randperm(q_len, generator=g)]
    center = torch.rand(q_len, generator=g, dtype=dtype) * t_len
    sigma = 0.5 + 4.0 * torch.rand(q_len, generator=g, dtype=dtype)
    if q_len > 4:
        sigma[1], sigma[4] = 0.0, -1.5
    lengths = torch.randint(2, t_len + 1, (b_len,), generator=g)
    lengths[0] = t_len
    if b_len > 1:
        lengths[1] = 1
    return [x.to(device) for x in (q, k, v, motion_idx, center, sigma, lengths)]


def leaves(*tensors, dtype=None):
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_(True) for t in tensors]


def run_kernel(q, k, v, mi, c, s, lengths, lam=LAM, scale=None, prior=None, dropout_p=0.0, seed=None, dout=None,
               **blocks):
    """Kernel forward and (q, k, v) gradients for the incoming gradient ``dout``."""
    q, k, v = leaves(q, k, v)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    out = ga.gaussian_word_attention_triton(q, k, v, mi, c, s, lengths, lam, scale, prior, dropout_p, seed, **blocks)
    out.backward(dout.to(out.dtype) if dout is not None else torch.ones_like(out))
    return out.detach(), q.grad, k.grad, v.grad


def run_reference(q, k, v, mi, c, s, lengths, lam=LAM, scale=None, prior=None, keep=None, dropout_p=0.0, dout=None):
    """The float64 eager reference (mate.ops), forward and (q, k, v) gradients."""
    q, k, v = leaves(q, k, v, dtype=torch.float64)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    prior = None if prior is None else prior.double()
    out = _attention_reference(q, k, v, mi, c.double(), s.double(), lengths, lam, scale, prior, keep, dropout_p)
    out.backward(dout.double() if dout is not None else torch.ones_like(out))
    return out.detach(), q.grad, k.grad, v.grad


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


RTOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 4e-3}


def assert_matches(got, want, dtype, names=("out", "dq", "dk", "dv")):
    for name, a, b in zip(names, got, want):
        assert a.dtype == dtype, name
        assert torch.isfinite(a).all(), f"{name}: non-finite (a skipped element keeps its NaN poison)"
        assert rel_err(a, b) < RTOL[dtype], f"{name}: relative error {rel_err(a, b):.3g}"


def random_dout(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- forward and gradients

SHAPES = {
    # T = 37 over 16-frame blocks (partial last block); d = 5 padded to 16; a motion with no query
    "odd": dict(q_len=23, b_len=5, t_len=37, heads=2, head_dim=5, blocks=dict(block_t=16)),
    # 40 queries on motion 0: several query tiles on one motion (dk/dv loops over them)
    "crowded": dict(q_len=45, b_len=3, t_len=20, heads=1, head_dim=16, crowd=40, empty_motion=-1,
                    blocks=dict(block_q=16, block_t=16)),
    # default blocks, d = 24 (padded to 32), one frame block
    "default_blocks": dict(q_len=9, b_len=4, t_len=29, heads=3, head_dim=24, empty_motion=2, blocks={}),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_forward_and_grads_match_reference(shape, dtype):
    cfg = dict(SHAPES[shape])
    blocks = cfg.pop("blocks")
    q, k, v, mi, c, s, lengths = make_inputs(seed=1, **cfg)
    assert (torch.bincount(mi, minlength=k.shape[0]) == 0).any() or cfg.get("empty_motion") == -1
    dout = random_dout(q.shape, seed=2)
    got = run_kernel(q.to(dtype), k.to(dtype), v.to(dtype), mi, c, s, lengths, dout=dout, **blocks)
    # the reference sees the same rounded inputs
    want = run_reference(q.to(dtype), k.to(dtype), v.to(dtype), mi, c, s, lengths, dout=dout.to(dtype))
    assert_matches(got, want, dtype)
    masked = torch.arange(k.shape[1])[None, :] >= lengths[:, None]  # [B, T] frames past the length
    assert masked.any() and (got[2][masked] == 0).all() and (got[3][masked] == 0).all()


def test_block_sizes_do_not_change_the_result():
    q, k, v, mi, c, s, lengths = make_inputs(seed=3, dtype=torch.float64)
    a = run_kernel(q, k, v, mi, c, s, lengths, block_q=16, block_t=16)
    b = run_kernel(q, k, v, mi, c, s, lengths, block_q=32, block_t=64)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)


def test_sigma_to_zero_is_a_spike():
    q, k, v, mi, c, s, lengths = make_inputs(seed=4, q_len=11, b_len=3, t_len=21, dtype=torch.float64)
    c = torch.floor(c)  # spike exactly on a frame: (1 + lam) there, 1 elsewhere
    s = torch.full_like(s, 1e-30)
    got = run_kernel(q, k, v, mi, c, s, lengths, block_t=16)
    assert_matches(got, run_reference(q, k, v, mi, c, s, lengths), torch.float64)


def test_lam_zero_equals_sdpa_with_length_mask():
    q, k, v, mi, c, s, lengths = make_inputs(seed=5, dtype=torch.float64)
    out = run_kernel(q, k, v, mi, c, s, lengths, lam=0.0, block_t=16)[0]
    keys, values = k[mi].permute(0, 2, 1, 3), v[mi].permute(0, 2, 1, 3)  # [Q,H,T,d]
    mask = torch.arange(k.shape[1])[None, :] < lengths[mi][:, None]
    sdpa = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=mask[:, None, None, :])[:, :, 0]
    torch.testing.assert_close(out, sdpa, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["binary", "gaussian_in_segment"])
def test_explicit_prior(variant):
    q, k, v, mi, c, s, lengths = make_inputs(seed=6, dtype=torch.float64)
    prior = ops.prior_weights(c, s, k.shape[1], variant)
    got = run_kernel(q, k, v, mi, c, s, lengths, prior=prior, block_t=16)
    assert_matches(got, run_reference(q, k, v, mi, c, s, lengths, prior=prior), torch.float64)
    # the prior matters: without it the result differs
    assert rel_err(got[0], run_reference(q, k, v, mi, c, s, lengths)[0]) > 1e-6


def test_zero_and_huge_queries_and_large_logits():
    q, k, v, mi, c, s, lengths = make_inputs(seed=7, dtype=torch.float32)
    q = q.clone()
    q[0] = 0.0  # uniform attention over the valid frames
    q[2] *= 1e4  # logits ~ 1e4: one-hot attention, no overflow
    got = run_kernel(q, k, v, mi, c, s, lengths, block_t=16)
    want = run_reference(q, k, v, mi, c, s, lengths)
    assert_matches([got[0], got[1], got[3]], [want[0], want[1], want[3]], torch.float32, names=("out", "dq", "dv"))
    # dk = sum_t dr_t q carries the 1e4-sized query times softmax weights whose float32 error is
    # about unit roundoff x |logit| (the logits themselves are only that accurate): the tolerance
    # is that conditioning bound, not the per-dtype one.
    scale = q.shape[-1] ** -0.5
    logits = torch.einsum("qhd,qthd->qht", q.double(), k.double()[mi]) * scale * (1 + LAM)
    bound = 2 * 2.0**-24 * logits.abs().max().item()
    assert bound > 1e3 * RTOL[torch.float32], bound  # the case really is this ill-conditioned
    assert torch.isfinite(got[2]).all()
    assert rel_err(got[2], want[2]) < bound, f"dk: relative error {rel_err(got[2], want[2]):.3g} > {bound:.3g}"
    b = int(mi[0])
    torch.testing.assert_close(got[0][0], v[b, : int(lengths[b])].mean(0), rtol=1e-5, atol=1e-6)
    # a large scale makes every logit large
    got = run_kernel(q, k, v, mi, c, s, lengths, scale=300.0, block_t=16)
    want = run_reference(q, k, v, mi, c, s, lengths, scale=300.0)
    for a in got:
        assert torch.isfinite(a).all()
    torch.testing.assert_close(got[0], want[0].float(), rtol=1e-4, atol=1e-4)


def test_empty_query_set():
    q, k, v, mi, c, s, lengths = make_inputs(seed=8, dtype=torch.float32)
    out, dq, dk, dv = run_kernel(q[:0], k, v, mi[:0], c[:0], s[:0], lengths)
    assert out.shape == (0,) + q.shape[1:] and dq.shape == (0,) + q.shape[1:]
    assert torch.equal(dk, torch.zeros_like(k)) and torch.equal(dv, torch.zeros_like(v))


# ----------------------------------------------------------------------------- dropout


def test_dropout_deterministic_per_seed():
    q, k, v, mi, c, s, lengths = make_inputs(seed=9, dtype=torch.float32)
    a = run_kernel(q, k, v, mi, c, s, lengths, dropout_p=0.3, seed=11, block_t=16)
    b = run_kernel(q, k, v, mi, c, s, lengths, dropout_p=0.3, seed=11, block_t=16)
    d = run_kernel(q, k, v, mi, c, s, lengths, dropout_p=0.3, seed=12, block_t=16)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], d[0])
    # p = 0 is no dropout, whatever the seed
    plain = run_kernel(q, k, v, mi, c, s, lengths, block_t=16)
    zero_p = run_kernel(q, k, v, mi, c, s, lengths, dropout_p=0.0, seed=11, block_t=16)
    for x, y in zip(plain, zero_p):
        assert torch.equal(x, y)
    # the mask keeps about 1 - p, and does not depend on the seed's stream position
    keep = ga.dropout_keep_mask(200, 3, 50, 0.3, seed=11)
    assert abs(keep.float().mean().item() - 0.7) < 0.02
    assert torch.equal(keep, ga.dropout_keep_mask(200, 3, 50, 0.3, seed=11))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dropout_mask_is_the_same_in_forward_and_backward(dtype):
    q, k, v, mi, c, s, lengths = make_inputs(seed=10, dtype=dtype)
    p, seed = 0.3, 1234
    keep = ga.dropout_keep_mask(q.shape[0], q.shape[1], k.shape[1], p, seed)
    dout = random_dout(q.shape, seed=3)
    got = run_kernel(q, k, v, mi, c, s, lengths, dropout_p=p, seed=seed, dout=dout, block_t=16)
    want = run_reference(q, k, v, mi, c, s, lengths, keep=keep, dropout_p=p, dout=dout)
    assert_matches(got, want, dtype)


# ----------------------------------------------------------------------------- layouts, determinism, dispatch


def test_non_contiguous_inputs_and_expanded_grad():
    q, k, v, mi, c, s, lengths = make_inputs(seed=12, dtype=torch.float32)
    # the same values behind strided views: q [Q,H,d] via a transpose, k/v via a slice of a wider buffer
    q_nc = q.transpose(0, 1).contiguous().transpose(0, 1)
    k_nc = torch.cat([k, k], dim=-1)[..., : k.shape[-1]]
    v_nc = v.transpose(1, 2).contiguous().transpose(1, 2)
    c_nc = torch.stack([c, c], 1)[:, 0]
    assert not (q_nc.is_contiguous() or k_nc.is_contiguous() or v_nc.is_contiguous() or c_nc.is_contiguous())
    q_nc, k_nc, v_nc = leaves(q_nc, k_nc, v_nc)
    out = ga.gaussian_word_attention_triton(q_nc, k_nc, v_nc, mi, c_nc, s, lengths, LAM, q.shape[-1] ** -0.5,
                                            None, 0.0, None, block_t=16)
    out.sum().backward()  # an expanded, stride-0 incoming gradient
    want = run_reference(q, k, v, mi, c, s, lengths)
    assert_matches((out.detach(), q_nc.grad, k_nc.grad, v_nc.grad), want, torch.float32)


def test_backward_is_deterministic():
    q, k, v, mi, c, s, lengths = make_inputs(seed=13, dtype=torch.float32, crowd=12)
    dout = random_dout(q.shape, seed=4)
    a = run_kernel(q, k, v, mi, c, s, lengths, dropout_p=0.2, seed=5, dout=dout, block_t=16)
    b = run_kernel(q, k, v, mi, c, s, lengths, dropout_p=0.2, seed=5, dout=dout, block_t=16)
    for x, y in zip(a, b):
        assert torch.equal(x, y)  # bit-identical: no atomics


def test_registered_with_mate_ops():
    q, k, v, mi, c, s, lengths = make_inputs(seed=14, q_len=7, b_len=3, t_len=11, dtype=torch.float32)
    q, k, v = leaves(q, k, v)
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl="triton")
    out.backward(torch.ones_like(out))
    want = run_reference(q, k, v, mi, c, s, lengths)
    assert_matches((out.detach(), q.grad, k.grad, v.grad), want, torch.float32)
    assert torch.ops.mate.gaussian_word_attention_fwd.default is not None  # a torch.library op


def test_gradient_to_center_is_refused():
    q, k, v, mi, c, s, lengths = make_inputs(seed=15, q_len=7, b_len=3, t_len=11, dtype=torch.float32)
    with pytest.raises(NotImplementedError, match="no gradient flows to center"):
        ops.gaussian_word_attention(q, k, v, mi, c.requires_grad_(), s, lengths, LAM, impl="triton")


# ----------------------------------------------------------------------------- GPU only


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_paper_like_shapes(dtype):
    q, k, v, mi, c, s, lengths = make_inputs(seed=16, q_len=300, b_len=17, t_len=196, heads=8, head_dim=64,
                                             dtype=torch.float32, device="cuda")
    dout = random_dout(q.shape, seed=5).cuda()
    got = run_kernel(q.to(dtype), k.to(dtype), v.to(dtype), mi, c, s, lengths, dout=dout, dropout_p=0.1, seed=3)
    keep = ga.dropout_keep_mask(q.shape[0], q.shape[1], k.shape[1], 0.1, 3, device="cuda")
    want = run_reference(q.to(dtype), k.to(dtype), v.to(dtype), mi, c, s, lengths, keep=keep, dropout_p=0.1,
                         dout=dout.to(dtype))
    tol = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        assert a.dtype == dtype and torch.isfinite(a).all(), name
        assert rel_err(a, b) < tol, (name, rel_err(a, b))
    again = run_kernel(q.to(dtype), k.to(dtype), v.to(dtype), mi, c, s, lengths, dout=dout, dropout_p=0.1, seed=3)
    for x, y in zip(got, again):
        assert torch.equal(x, y)


@gpu
@needs_cuda
def test_gpu_torch_compile_fullgraph_no_graph_break():
    q, k, v, mi, c, s, lengths = make_inputs(seed=17, q_len=40, b_len=6, t_len=50, heads=4, head_dim=16,
                                             dtype=torch.float32, device="cuda")

    class Attend(torch.nn.Module):
        def forward(self, q, k, v):
            return ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl="triton").square().sum()

    module = Attend()
    explanation = torch._dynamo.explain(module)(q, k, v)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(module, fullgraph=True)
    qc, kc, vc = leaves(q, k, v)
    compiled(qc, kc, vc).backward()
    qe, ke, ve = leaves(q, k, v)
    module(qe, ke, ve).backward()
    for a, b in ((qc.grad, qe.grad), (kc.grad, ke.grad), (vc.grad, ve.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@gpu
@needs_cuda
def test_gpu_auto_resolves_to_triton():
    assert ops.resolve_impl("gaussian_word_attention", "auto", torch.device("cuda")) == "triton"
