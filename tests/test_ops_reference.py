"""mate.ops references against the paper's equations written independently here.

Oracles in this file never call mate.ops: a loop-per-(query, head) attention, the closed-form
backward formulas of docs/method.md ("Fused forms"), torch's scaled_dot_product_attention and
F.cross_entropy on cosine logits. Inputs are fresh random tensors from seeded generators (never
zeros), with odd sizes.

impl="compiled": every static signature (dtype, prior/dropout present, reduction, grad or not)
costs one inductor compile, ~5-20 s each on 2 cores with a cold cache, so by default the compiled
path is checked by a few dedicated tests (marked slow) that compare it with the reference on
varying shapes and count recompiles. ``MATE_TEST_COMPILED=all`` parametrises every forward and
gradient test below over ["reference", "compiled"] as well (about 2 minutes cold, all slow-marked).
"""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

import mate.ops as ops
from mate.ops import _common

Q, B, T, H, DH = 7, 3, 11, 3, 5  # queries, motions, frames, heads, head dim
N, K, D = 9, 13, 6  # feature rows, prototypes, width
LAM = 0.37  # larger than the paper's 0.1 so that the prior visibly moves the scores

# inductor's own code emits this while compiling (impl="compiled"); not ours
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

F64 = dict(rtol=1e-10, atol=1e-12)  # float64 "same formula, different association order"
F32 = dict(rtol=1e-5, atol=1e-6)  # compiled vs reference in float32

needs_compile = pytest.mark.skipif(not ops.compile_available(), reason="torch.compile unavailable here")
IMPLS = ["reference"]
if os.environ.get("MATE_TEST_COMPILED") == "all":
    IMPLS.append(pytest.param("compiled", marks=[pytest.mark.slow, needs_compile]))


def make_gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def attention_inputs(seed, q_len=Q, b_len=B, t_len=T, dtype=torch.float64, heads=H, head_dim=DH):
    """Random q, k, v, motion_idx, center, sigma, lengths. Query 1 has sigma = 0 and query 4 has
    sigma < 0 (no prior); every motion index appears; lengths include T and a short motion."""
    g = make_gen(seed)
    q = torch.randn(q_len, heads, head_dim, generator=g, dtype=dtype)
    k = torch.randn(b_len, t_len, heads, head_dim, generator=g, dtype=dtype)
    v = torch.randn(b_len, t_len, heads, head_dim, generator=g, dtype=dtype)
    motion_idx = torch.cat([torch.arange(b_len), torch.randint(0, b_len, (q_len - b_len,), generator=g)])
    motion_idx = motion_idx[torch.randperm(q_len, generator=g)]
    center = torch.rand(q_len, generator=g, dtype=dtype) * t_len
    sigma = 0.5 + 3.0 * torch.rand(q_len, generator=g, dtype=dtype)
    if q_len > 4:
        sigma[1], sigma[4] = 0.0, -1.5
    lengths = torch.randint(2, t_len + 1, (b_len,), generator=g)
    lengths[0] = t_len
    return q, k, v, motion_idx, center, sigma, lengths


def no_donated_buffers():
    """The compiled backward refuses retain_graph=True unless this is off (torch reads it when
    compiling and again at backward time)."""
    return torch._functorch.config.patch(donated_buffer=False)


def with_grad(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


# ----------------------------------------------------------------------------- attention oracles


def naive_prior(c: float, s: float, t: int) -> float:
    """g(t) = exp(-(t - c)^2 / (2 sigma^2)) for sigma > 0, else 0 (paper, Eq. 4)."""
    return math.exp(-((t - c) ** 2) / (2.0 * s * s)) if s > 0 else 0.0


def naive_attention(q, k, v, motion_idx, center, sigma, lengths, lam, scale=None, prior=None):
    """Eqs. 2-4 one (query, head) at a time, scores and softmax written out in float64."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    out = torch.empty(q.shape, dtype=torch.float64)
    for i in range(q.shape[0]):
        b, length = int(motion_idx[i]), int(lengths[motion_idx[i]])
        if prior is None:
            g = [naive_prior(float(center[i]), float(sigma[i]), t) for t in range(length)]
        else:
            g = [float(prior[i, t]) for t in range(length)]
        for h in range(q.shape[1]):
            scores = [scale * (1.0 + lam * g[t]) * float(q[i, h].double() @ k[b, t, h].double()) for t in range(length)]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            out[i, h] = sum((w / total) * v[b, t, h].double() for t, w in enumerate(weights))
    return out


def closed_form_attention_grads(q, k, v, motion_idx, center, sigma, lengths, lam, dout):
    """docs/method.md, "Fused forms": per (query, head), s_t = scale(1 + lam g_t), r_t = <q, k_t>,
    z = s r, p = softmax(z), o = sum p_t v_t; dv_t += p_t do; dp_t = <do, v_t>;
    dz_t = p_t (dp_t - <do, o>); dr_t = s_t dz_t; dq = sum_t dr_t k_t; dk_t += dr_t q."""
    scale = q.shape[-1] ** -0.5
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for i in range(q.shape[0]):
        b, length = int(motion_idx[i]), int(lengths[motion_idx[i]])
        g = torch.tensor([naive_prior(float(center[i]), float(sigma[i]), t) for t in range(length)], dtype=q.dtype)
        s = scale * (1.0 + lam * g)
        for h in range(q.shape[1]):
            keys, values, do = k[b, :length, h], v[b, :length, h], dout[i, h]
            r = keys @ q[i, h]
            p = torch.softmax(s * r, dim=0)
            o = p @ values
            dv[b, :length, h] += p[:, None] * do
            dp = values @ do
            dz = p * (dp - do @ o)
            dr = s * dz
            dq[i, h] = dr @ keys
            dk[b, :length, h] += dr[:, None] * q[i, h]
    return dq, dk, dv


def sdpa_with_length_mask(q, k, v, motion_idx, lengths):
    """torch's scaled_dot_product_attention, one query per (query, head), length mask."""
    keys = k[motion_idx].permute(0, 2, 1, 3)  # [Q,H,T,d]
    values = v[motion_idx].permute(0, 2, 1, 3)
    mask = torch.arange(k.shape[1])[None, :] < lengths[motion_idx][:, None]  # [Q,T], True = attend
    out = F.scaled_dot_product_attention(q[:, :, None, :], keys, values, attn_mask=mask[:, None, None, :])
    return out[:, :, 0, :]


# ----------------------------------------------------------------------------- attention: forward


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_matches_naive_equations(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=1)
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)
    assert out.shape == (Q, H, DH) and out.dtype == torch.float64
    torch.testing.assert_close(out, naive_attention(q, k, v, mi, c, s, lengths, LAM), **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_explicit_scale(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=2)
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, scale=0.83, impl=impl)
    torch.testing.assert_close(out, naive_attention(q, k, v, mi, c, s, lengths, LAM, scale=0.83), **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_float32_matches_float64_reference(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=3)
    out32 = ops.gaussian_word_attention(q.float(), k.float(), v.float(), mi, c.float(), s.float(), lengths, LAM, impl=impl)
    assert out32.dtype == torch.float32
    ref64 = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl="reference")
    torch.testing.assert_close(out32, ref64.float(), **F32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attention_half_inputs_computed_in_float32(dtype):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=4, dtype=torch.float32)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl="reference")
    assert out.dtype == dtype
    # the same inputs upcast: float32 arithmetic throughout, rounded once at the end
    ref = ops.gaussian_word_attention(q.float(), k.float(), v.float(), mi, c, s, lengths, LAM, impl="reference")
    assert torch.equal(out, ref.to(dtype))


@pytest.mark.parametrize("impl", IMPLS)
def test_lam_zero_equals_sdpa(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=5)
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, 0.0, impl=impl)
    torch.testing.assert_close(out, sdpa_with_length_mask(q, k, v, mi, lengths), **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_nonpositive_sigma_equals_lam_zero(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=6)
    with_prior = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)
    no_prior = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, 0.0, impl=impl)
    off = s <= 0  # queries 1 and 4
    assert off.sum() == 2
    torch.testing.assert_close(with_prior[off], no_prior[off], **F64)
    # and the prior does change every other query
    assert ((with_prior[~off] - no_prior[~off]).abs().amax(dim=(1, 2)) > 1e-6).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_length_one_and_full_length_motions(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=7)
    lengths = torch.tensor([T, 1, 1])  # motion 0 full length, motions 1 and 2 a single frame
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)
    torch.testing.assert_close(out, naive_attention(q, k, v, mi, c, s, lengths, LAM), **F64)
    single = mi != 0
    assert single.any() and (~single).any()
    torch.testing.assert_close(out[single], v[mi[single], 0], **F64)  # all weight on frame 0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("tiny", [1e-30, 1e-300])
def test_tiny_sigma_is_a_finite_spike(impl, tiny):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=8)
    c = torch.randint(0, 2, (Q,), generator=make_gen(80)).double()  # integer centres inside every motion
    s = torch.full((Q,), tiny, dtype=torch.float64)  # sigma^2 underflows (1e-300) or nearly (1e-30)
    q, k, v = with_grad(q, k, v)
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)
    spike = (torch.arange(T)[None, :] == c[:, None]).double()  # prior 1 at the centre, 0 elsewhere
    expected = naive_attention(q.detach(), k.detach(), v.detach(), mi, c, s, lengths, LAM, prior=spike)
    torch.testing.assert_close(out.detach(), expected, **F64)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_tiny_sigma_no_nan(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=9, dtype=torch.float32)
    c = torch.ones(Q)
    s = torch.full((Q,), 1e-30)  # sigma^2 = 0 in float32
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)
    spike = (torch.arange(T)[None, :] == 1).float().expand(Q, T)
    explicit = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl="reference", prior=spike)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, explicit, **F32)


# ----------------------------------------------------------------------------- attention: gradients


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_gradcheck(impl):
    # smaller than elsewhere (full gradcheck: 2 evaluations per input element); the exact
    # gradients at the usual sizes are checked against the closed form below
    q, k, v, mi, c, s, lengths = attention_inputs(seed=10, q_len=5, b_len=2, t_len=6, heads=2, head_dim=3)
    q, k, v = with_grad(q, k, v)

    def attention(q, k, v):
        return ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)

    with no_donated_buffers():  # gradcheck backpropagates with retain_graph=True
        assert torch.autograd.gradcheck(attention, (q, k, v))


@pytest.mark.parametrize("impl", IMPLS)
def test_attention_backward_matches_closed_form(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=11)
    dout = torch.randn(Q, H, DH, generator=make_gen(111), dtype=torch.float64)
    q_, k_, v_ = with_grad(q, k, v)
    out = ops.gaussian_word_attention(q_, k_, v_, mi, c, s, lengths, LAM, impl=impl)
    out.backward(dout)
    dq, dk, dv = closed_form_attention_grads(q, k, v, mi, c, s, lengths, LAM, dout)
    torch.testing.assert_close(q_.grad, dq, **F64)
    torch.testing.assert_close(k_.grad, dk, **F64)
    torch.testing.assert_close(v_.grad, dv, **F64)
    # frames past each motion's length get no gradient
    for b in range(B):
        assert not k_.grad[b, lengths[b]:].any() and not v_.grad[b, lengths[b]:].any()


# ----------------------------------------------------------------------------- literal formula


def literal_inputs(seed, width=7):
    """Frame features F [B,T,D], W_k, b_k, W_v, b_v (biases nonzero) and queries q [Q,H,d]."""
    q, _, _, mi, c, s, lengths = attention_inputs(seed)
    g = make_gen(seed + 1000)
    frames = torch.randn(B, T, width, generator=g, dtype=torch.float64)
    w_k, w_v = (torch.randn(H * DH, width, generator=g, dtype=torch.float64) for _ in range(2))
    b_k, b_v = (torch.randn(H * DH, generator=g, dtype=torch.float64) for _ in range(2))
    return q, frames, w_k, b_k, w_v, b_v, mi, c, s, lengths


@pytest.mark.parametrize("impl", IMPLS)
def test_literal_equals_projected_once(impl):
    q, frames, w_k, b_k, w_v, b_v, mi, c, s, lengths = literal_inputs(seed=12)
    literal = ops.gaussian_word_attention_literal(q, frames, w_k, b_k, w_v, b_v, mi, c, s, lengths, LAM)
    k = (frames @ w_k.T).view(B, T, H, DH)  # projected once, no key bias
    v = (frames @ w_v.T + b_v).view(B, T, H, DH)
    fused = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)
    torch.testing.assert_close(fused, literal, **F64)


def test_literal_key_bias_cancels_in_softmax():
    q, frames, w_k, b_k, w_v, b_v, mi, c, s, lengths = literal_inputs(seed=13)
    with_bias = ops.gaussian_word_attention_literal(q, frames, w_k, b_k, w_v, b_v, mi, c, s, lengths, LAM)
    no_bias = ops.gaussian_word_attention_literal(q, frames, w_k, torch.zeros_like(b_k), w_v, b_v, mi, c, s, lengths, LAM)
    torch.testing.assert_close(with_bias, no_bias, **F64)
    # ... while the value bias does not cancel
    other_v_bias = ops.gaussian_word_attention_literal(q, frames, w_k, b_k, w_v, 2 * b_v, mi, c, s, lengths, LAM)
    assert (other_v_bias - with_bias).abs().max() > 1e-3


def test_literal_matches_naive_per_query_projection():
    """The oracle itself, against a loop that scales and projects per query."""
    q, frames, w_k, b_k, w_v, b_v, mi, c, s, lengths = literal_inputs(seed=14)
    literal = ops.gaussian_word_attention_literal(q, frames, w_k, b_k, w_v, b_v, mi, c, s, lengths, LAM)
    scale = DH**-0.5
    for i in range(Q):
        b, length = int(mi[i]), int(lengths[mi[i]])
        g = torch.tensor([naive_prior(float(c[i]), float(s[i]), t) for t in range(length)], dtype=torch.float64)
        keys = (((1 + LAM * g)[:, None] * frames[b, :length]) @ w_k.T + b_k).view(length, H, DH)
        values = (frames[b, :length] @ w_v.T + b_v).view(length, H, DH)
        for h in range(H):
            p = torch.softmax(scale * keys[:, h] @ q[i, h], dim=0)
            torch.testing.assert_close(literal[i, h], p @ values[:, h], **F64)


# ----------------------------------------------------------------------------- prior variants


def test_prior_weights_variants():
    g = make_gen(15)
    start = torch.randint(0, T - 3, (Q,), generator=g)
    end = start + torch.randint(1, 4, (Q,), generator=g)
    center, sigma = (start + end) / 2.0, (end - start) / 2.0
    sigma[2] = 0.0  # no segment
    frames = torch.arange(T)
    gaussian = ops.prior_weights(center, sigma, T)
    binary = ops.prior_weights(center, sigma, T, "binary")
    in_segment = ops.prior_weights(center, sigma, T, "gaussian_in_segment")
    none = ops.prior_weights(center, sigma, T, "none")
    assert gaussian.shape == binary.shape == (Q, T) and gaussian.dtype == torch.float32
    assert not none.any()
    for i in range(Q):
        inside = (frames >= start[i]) & (frames < end[i]) if sigma[i] > 0 else torch.zeros(T, dtype=torch.bool)
        expected = torch.tensor([naive_prior(float(center[i]), float(sigma[i]), t) for t in range(T)])
        torch.testing.assert_close(gaussian[i], expected)
        assert torch.equal(binary[i], inside.float())
        torch.testing.assert_close(in_segment[i], torch.where(inside, expected, torch.zeros(T)))
    assert not gaussian[2].any() and not binary[2].any() and not in_segment[2].any()


@pytest.mark.parametrize("impl", IMPLS)
def test_prior_argument_replaces_gaussian(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=16)
    gaussian = ops.prior_weights(c, s, T)
    torch.testing.assert_close(
        ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl, prior=gaussian),
        ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl="reference"),
        **F64,
    )
    binary = ops.prior_weights(c, s, T, "binary")
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl, prior=binary)
    torch.testing.assert_close(out, naive_attention(q, k, v, mi, c, s, lengths, LAM, prior=binary), **F64)
    none = ops.prior_weights(c, s, T, "none")
    out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl, prior=none)
    torch.testing.assert_close(out, sdpa_with_length_mask(q, k, v, mi, lengths), **F64)


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_zero_is_identity(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=17)
    plain = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl=impl)
    p0 = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, dropout_p=0.0, seed=3, impl=impl)
    assert torch.equal(plain, p0)


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_seeded(impl):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=18)

    def run(seed):
        return ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, dropout_p=0.3, seed=seed, impl=impl)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    # reference and compiled draw the same mask from the same torch.Generator
    torch.testing.assert_close(run(5), ops.gaussian_word_attention(
        q, k, v, mi, c, s, lengths, LAM, dropout_p=0.3, seed=5, impl="reference"), **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_dropout_preserves_expectation(impl):
    """Inverted dropout: E[out] = out without dropout. 4000 copies of 2 queries each draw their
    own mask; the sample mean must sit within 6 standard errors of the no-dropout output."""
    q, k, v, mi, c, s, lengths = attention_inputs(seed=19)
    copies = 4000
    pick = torch.tensor([0, 2]).repeat(copies)
    q_rep, mi_rep, c_rep, s_rep = q[pick], mi[pick], c[pick], s[pick]
    dropped = ops.gaussian_word_attention(q_rep, k, v, mi_rep, c_rep, s_rep, lengths, LAM, dropout_p=0.4, seed=7, impl=impl)
    expected = ops.gaussian_word_attention(q[[0, 2]], k, v, mi[[0, 2]], c[[0, 2]], s[[0, 2]], lengths, LAM, impl="reference")
    samples = dropped.view(copies, 2, H, DH)
    mean, stderr = samples.mean(0), samples.std(0) / math.sqrt(copies)
    assert (stderr > 0).all()
    assert ((mean - expected).abs() <= 6 * stderr).all()


# ----------------------------------------------------------------------------- prototype CE oracles


def ce_inputs(seed, n=N, k=K, dtype=torch.float64, ignored=(3, 7)):
    g = make_gen(seed)
    features = torch.randn(n, D, generator=g, dtype=dtype) * 3.0
    prototypes = torch.randn(k, D, generator=g, dtype=dtype) * 0.5
    target = torch.randint(0, k, (n,), generator=g)
    target[list(ignored)] = -100
    return features, prototypes, target


def cosine_logits(features, prototypes, tau):
    return F.normalize(features, dim=-1) @ F.normalize(prototypes, dim=-1).T / tau


def closed_form_ce_grads(features, prototypes, target, tau, row_weight, ignore_index=-100):
    """docs/method.md, "Fused forms", with dL/dloss_i = row_weight_i (1/N_valid for "mean"):
    dz = w (softmax(z) - onehot), dh = dz P^ / tau, dP^ = dz^T h / tau,
    df = (dh - h <h, dh>) / ||f|| (same for P)."""
    f_norm = features.norm(dim=1, keepdim=True)
    p_norm = prototypes.norm(dim=1, keepdim=True)
    h, p_hat = features / f_norm, prototypes / p_norm
    z = h @ p_hat.T / tau
    valid = target != ignore_index
    onehot = torch.zeros_like(z)
    onehot[valid, target[valid]] = 1.0
    dz = (row_weight * valid)[:, None] * (torch.softmax(z, dim=1) - onehot)
    dh, dp_hat = dz @ p_hat / tau, dz.T @ h / tau
    dfeatures = (dh - h * (h * dh).sum(1, keepdim=True)) / f_norm
    dprototypes = (dp_hat - p_hat * (p_hat * dp_hat).sum(1, keepdim=True)) / p_norm
    return dfeatures, dprototypes


# ----------------------------------------------------------------------------- prototype CE


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_prototype_ce_matches_cross_entropy(impl, reduction):
    features, prototypes, target = ce_inputs(seed=20)
    loss = ops.prototype_cross_entropy(features, prototypes, target, 0.05, reduction, impl=impl)
    expected = F.cross_entropy(cosine_logits(features, prototypes, 0.05), target, reduction=reduction, ignore_index=-100)
    assert loss.dtype == torch.float64 and loss.shape == expected.shape
    torch.testing.assert_close(loss, expected, **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_prototype_ce_custom_ignore_index(impl):
    features, prototypes, target = ce_inputs(seed=21, ignored=())
    target[[0, 5]] = 99
    loss = ops.prototype_cross_entropy(features, prototypes, target, 0.1, ignore_index=99, impl=impl)
    expected = F.cross_entropy(cosine_logits(features, prototypes, 0.1), target, ignore_index=99)
    torch.testing.assert_close(loss, expected, **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_prototype_ce_gradcheck(impl):
    features, prototypes, target = ce_inputs(seed=22)
    features, prototypes = with_grad(features, prototypes)

    def loss(f, p):
        return ops.prototype_cross_entropy(f, p, target, 0.05, "mean", impl=impl)

    with no_donated_buffers():
        assert torch.autograd.gradcheck(loss, (features, prototypes))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_prototype_ce_backward_matches_closed_form(impl, reduction):
    features, prototypes, target = ce_inputs(seed=23)
    f_, p_ = with_grad(features, prototypes)
    loss = ops.prototype_cross_entropy(f_, p_, target, 0.05, reduction, impl=impl)
    if reduction == "none":
        upstream = torch.randn(N, generator=make_gen(230), dtype=torch.float64)
        loss.backward(upstream)
        row_weight = upstream
    else:
        loss.backward()
        n_valid = int((target != -100).sum())
        row_weight = torch.full((N,), 1.0 / n_valid if reduction == "mean" else 1.0, dtype=torch.float64)
    df, dp = closed_form_ce_grads(features, prototypes, target, 0.05, row_weight)
    torch.testing.assert_close(f_.grad, df, **F64)
    torch.testing.assert_close(p_.grad, dp, **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_prototype_ce_all_ignored_is_zero_not_nan(impl):
    features, prototypes, _ = ce_inputs(seed=24)
    target = torch.full((N,), -100)
    f_, p_ = with_grad(features, prototypes)
    loss = ops.prototype_cross_entropy(f_, p_, target, impl=impl)
    loss.backward()
    assert loss.item() == 0.0
    assert not f_.grad.any() and not p_.grad.any()
    assert ops.prototype_cross_entropy(features, prototypes, target, reduction="sum", impl=impl).item() == 0.0
    assert not ops.prototype_cross_entropy(features, prototypes, target, reduction="none", impl=impl).any()


@pytest.mark.parametrize("impl", IMPLS)
def test_prototype_ce_tiny_tau_no_overflow(impl):
    features, prototypes, target = ce_inputs(seed=25)
    tau = 1e-6  # |z| up to 1e6: exp(z) overflows any dtype without the max-shift
    loss = ops.prototype_cross_entropy(features, prototypes, target, tau, "none", impl=impl)
    expected = F.cross_entropy(cosine_logits(features, prototypes, tau), target, reduction="none")
    assert torch.isfinite(loss).all()
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12 / tau)  # F64, in units of z
    # float32: finite, and off the float64 loss by no more than fp32 cosine error (~D eps) / tau
    loss32 = ops.prototype_cross_entropy(features.float(), prototypes.float(), target, 1e-3, "none", impl=impl)
    expected32 = F.cross_entropy(cosine_logits(features, prototypes, 1e-3), target, reduction="none")
    assert torch.isfinite(loss32).all()
    fp32_cosine_error = 4 * D * torch.finfo(torch.float32).eps
    torch.testing.assert_close(loss32.double(), expected32, rtol=0, atol=2 * fp32_cosine_error / 1e-3)


@pytest.mark.parametrize("impl", IMPLS)
def test_prototype_ce_zero_norm_rows_no_nan(impl):
    features, prototypes, target = ce_inputs(seed=26, ignored=())
    features[2] = 0.0
    prototypes[4] = 0.0
    f_, p_ = with_grad(features, prototypes)
    loss = ops.prototype_cross_entropy(f_, p_, target, 0.05, "none", impl=impl)
    # a zero row has all-zero cosines: its loss is lse of K zeros = log K (F.normalize semantics)
    expected = F.cross_entropy(cosine_logits(features, prototypes, 0.05), target, reduction="none")
    torch.testing.assert_close(loss, expected, **F64)
    torch.testing.assert_close(loss[2], torch.tensor(math.log(K), dtype=torch.float64), **F64)
    loss.sum().backward()
    assert torch.isfinite(f_.grad).all() and torch.isfinite(p_.grad).all()
    f_ref, p_ref = with_grad(features, prototypes)
    F.cross_entropy(cosine_logits(f_ref, p_ref, 0.05), target, reduction="sum").backward()
    torch.testing.assert_close(f_.grad, f_ref.grad, **F64)
    torch.testing.assert_close(p_.grad, p_ref.grad, **F64)


@pytest.mark.parametrize("impl", IMPLS)
def test_prototype_ce_float32_matches_float64(impl):
    features, prototypes, target = ce_inputs(seed=27)
    loss32 = ops.prototype_cross_entropy(features.float(), prototypes.float(), target, impl=impl)
    assert loss32.dtype == torch.float32
    loss64 = ops.prototype_cross_entropy(features, prototypes, target, impl="reference")
    torch.testing.assert_close(loss32, loss64.float(), **F32)


# ----------------------------------------------------------------------------- InfoNCE


@pytest.mark.parametrize("impl", IMPLS)
def test_info_nce_symmetric_and_matches_two_directions(impl):
    g = make_gen(28)
    a = torch.randn(N, D, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(N, D, generator=g, dtype=torch.float64).requires_grad_(True)
    loss = ops.info_nce(a, b, 0.05, impl=impl)
    torch.testing.assert_close(loss, ops.info_nce(b, a, 0.05, impl=impl), **F64)
    arange = torch.arange(N)
    a2, b2 = with_grad(a, b)
    manual = 0.5 * (F.cross_entropy(cosine_logits(a2, b2, 0.05), arange) + F.cross_entropy(cosine_logits(b2, a2, 0.05), arange))
    torch.testing.assert_close(loss, manual, **F64)
    loss.backward()
    manual.backward()
    torch.testing.assert_close(a.grad, a2.grad, **F64)
    torch.testing.assert_close(b.grad, b2.grad, **F64)


# ----------------------------------------------------------------------------- dispatch


def test_triton_impl_unavailable_without_kernels(monkeypatch):
    # As on a platform without triton: the registry is empty and mate.kernels failed to import.
    monkeypatch.setattr(_common, "_TRITON_IMPLS", {})
    monkeypatch.setattr(_common, "_kernels_import_error", ImportError("no triton here"))
    q, k, v, mi, c, s, lengths = attention_inputs(seed=29)
    with pytest.raises(NotImplementedError, match="triton.*not available.*no triton here"):
        ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM, impl="triton")
    features, prototypes, target = ce_inputs(seed=29)
    with pytest.raises(NotImplementedError, match="triton"):
        ops.prototype_cross_entropy(features, prototypes, target, impl="triton")


def test_auto_resolution(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    expected_cpu = "compiled" if ops.compile_available() else "reference"
    monkeypatch.setattr(_common, "_TRITON_IMPLS", {})
    monkeypatch.setattr(_common, "_kernels_import_error", ImportError("no triton here"))
    assert ops.resolve_impl("gaussian_word_attention", "auto", cpu) == expected_cpu
    assert ops.resolve_impl("gaussian_word_attention", "auto", cuda) == expected_cpu  # no kernel
    monkeypatch.setattr(_common, "_compile_supported", lambda: False)
    assert ops.resolve_impl("prototype_cross_entropy", "auto", cpu) == "reference"
    with pytest.raises(RuntimeError, match="compiled"):
        ops.resolve_impl("prototype_cross_entropy", "compiled", cpu)
    # once a kernel registers, auto picks it on CUDA only
    monkeypatch.setitem(_common._TRITON_IMPLS, "prototype_cross_entropy", lambda *a: None)
    assert ops.resolve_impl("prototype_cross_entropy", "auto", cuda) == "triton"
    assert ops.resolve_impl("prototype_cross_entropy", "auto", cpu) == "reference"


def test_auto_falls_back_to_reference_when_the_compiler_fails(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    def broken_compile(fn, key):
        def run(*args):
            raise BackendCompilerFailed(lambda: None, RuntimeError("no C++ compiler"), None)
        return run

    monkeypatch.setattr(_common, "_compile_failed", None)
    monkeypatch.setattr(_common, "compiled", broken_compile)
    monkeypatch.setattr(_common, "_compile_supported", lambda: True)
    features, prototypes, target = ce_inputs(seed=37)
    with pytest.raises(BackendCompilerFailed):  # asked for explicitly: the error propagates
        ops.prototype_cross_entropy(features, prototypes, target, impl="compiled")
    with pytest.warns(RuntimeWarning, match="falls back to the eager reference"):
        loss = ops.prototype_cross_entropy(features, prototypes, target, impl="auto")
    torch.testing.assert_close(loss, ops.prototype_cross_entropy(features, prototypes, target, impl="reference"), **F64)
    assert not ops.compile_available()
    assert ops.resolve_impl("prototype_cross_entropy", "auto", torch.device("cpu")) == "reference"


def test_registered_triton_impl_receives_validated_arguments(monkeypatch):
    seen = {}

    def fake_kernel(*args):
        seen["args"] = args
        return torch.zeros(())

    monkeypatch.setitem(_common._TRITON_IMPLS, "gaussian_word_attention", fake_kernel)
    q, k, v, mi, c, s, lengths = attention_inputs(seed=30)
    ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, 1, dropout_p=0.25, seed=4, impl="triton")
    *tensors, lam, scale, prior, dropout_p, seed = seen["args"]
    assert len(tensors) == 7 and tensors[0] is q
    assert (lam, scale, prior, dropout_p, seed) == (1.0, DH**-0.5, None, 0.25, 4)
    assert type(lam) is float


# ----------------------------------------------------------------------------- compiled path


@pytest.mark.slow
@needs_compile
def test_compiled_attention_matches_reference_without_recompiling():
    """float64, dropout (same seed -> same mask in both impls), forward and gradients, over shapes
    with B == H, length-1 motions, sigma <= 0 queries, and varying lam: one compile in all."""
    from torch._dynamo.utils import counters

    graphs = None
    cases = [(7, 3, 11, LAM, 1), (9, 4, 13, 0.1, 2), (12, 2, 8, 0.9, 3), (5, 5, 17, 0.0, 4)]
    for seed, (q_len, b_len, t_len, lam, drop_seed) in enumerate(cases):
        q, k, v, mi, c, s, lengths = attention_inputs(40 + seed, q_len, b_len, t_len)
        lengths[-1] = 1
        dout = torch.randn(q_len, H, DH, generator=make_gen(140 + seed), dtype=torch.float64)
        results = {}
        for impl in ("compiled", "reference"):
            q_, k_, v_ = with_grad(q, k, v)
            out = ops.gaussian_word_attention(q_, k_, v_, mi, c, s, lengths, lam, dropout_p=0.2, seed=drop_seed, impl=impl)
            out.backward(dout)
            results[impl] = (out.detach(), q_.grad, k_.grad, v_.grad)
        for got, expected in zip(results["compiled"], results["reference"]):
            torch.testing.assert_close(got, expected, **F64)
        if graphs is None:
            graphs = counters["stats"]["unique_graphs"]  # after the first (compiling) call
    assert counters["stats"]["unique_graphs"] == graphs, "varying Q, B, T or lam recompiled"


@pytest.mark.slow
@needs_compile
def test_compiled_prototype_ce_and_info_nce_match_reference_without_recompiling():
    from torch._dynamo.utils import counters

    graphs = None
    for seed, (n, k, tau) in enumerate([(N, K, 0.05), (12, 5, 0.07), (8, 20, 0.5)]):
        features, prototypes, target = ce_inputs(50 + seed, n=n, k=k)
        results = {}
        for impl in ("compiled", "reference"):
            f_, p_ = with_grad(features, prototypes)
            loss = ops.prototype_cross_entropy(f_, p_, target, tau, impl=impl)
            loss.backward()
            a_, b_ = with_grad(features, features.flip(0))
            nce = ops.info_nce(a_, b_, tau, impl=impl)  # the same compiled signature (mean)
            nce.backward()
            results[impl] = (loss.detach(), f_.grad, p_.grad, nce.detach(), a_.grad, b_.grad)
        for got, expected in zip(results["compiled"], results["reference"]):
            torch.testing.assert_close(got, expected, **F64)
        if graphs is None:
            graphs = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == graphs, "varying N, K or tau recompiled"


@pytest.mark.slow
@needs_compile
def test_compiled_ops_survive_a_training_loops_call_patterns():
    """``--fused`` on a CPU: one step calls the compiled prototype CE with a Parameter (L_self's
    prototypes) and plain tensors (L_sent, L_align: each side with or without autograd), and
    validation calls them again under no_grad, at every batch size. Each of these patterns is a
    new dynamo guard; on one code object they ran past the recompile limit, which fullgraph=True
    makes a hard error (a run crashed in its first stage-1 validation)."""
    from torch._dynamo.utils import counters

    g = make_gen(77)
    for step in range(10):
        n = 5 + step % 3
        features = torch.randn(n, 8, generator=g, requires_grad=True)
        prototypes = torch.nn.Parameter(torch.randn(11, 8, generator=g))
        target = torch.randint(0, 11, (n,), generator=g)
        other = torch.randn(8, n, generator=g).T if step % 2 else torch.randn(n, 8, generator=g)  # a view, or not
        for grad in (True, False):
            with torch.set_grad_enabled(grad):
                losses = [ops.prototype_cross_entropy(features, prototypes, target, impl="compiled"),
                          ops.info_nce(features, other.detach().requires_grad_(grad), impl="compiled"),
                          ops.info_nce(other.detach(), features, impl="compiled")]
            for loss, (args, kwargs) in zip(losses, [((features, prototypes, target), {}),
                                                     ((features, other), {}), ((other, features), {})]):
                fn = ops.prototype_cross_entropy if len(args) == 3 else ops.info_nce
                torch.testing.assert_close(loss, fn(*[a.detach() for a in args], impl="reference"))
            if grad:
                sum(losses).backward()
    assert not counters["graph_break"], dict(counters["graph_break"])


@pytest.mark.slow
@needs_compile
def test_ops_trace_inside_an_outer_fullgraph_compile():
    """A model compiled with fullgraph=True can call the ops with impl="auto" (validation syncs
    and the inner torch.compile are skipped while tracing; any graph break would raise). Backend
    "eager": dynamo's tracing is what is under test here, not inductor."""
    q, k, v, mi, c, s, lengths = attention_inputs(seed=33)
    features, prototypes, target = ce_inputs(seed=33)

    def model(q, k, v, features, prototypes):
        out = ops.gaussian_word_attention(q, k, v, mi, c, s, lengths, LAM)
        return out.square().sum() + ops.prototype_cross_entropy(features, prototypes, target)

    compiled = torch.compile(model, fullgraph=True, backend="eager")
    inputs = with_grad(q, k, v, features, prototypes)
    inputs_ref = with_grad(q, k, v, features, prototypes)
    loss, loss_ref = compiled(*inputs), model(*inputs_ref)
    torch.testing.assert_close(loss, loss_ref, **F64)
    loss.backward()
    loss_ref.backward()
    for x, x_ref in zip(inputs, inputs_ref):
        torch.testing.assert_close(x.grad, x_ref.grad, **F64)


# ----------------------------------------------------------------------------- bad input


def _attention_call(**changes):
    q, k, v, mi, c, s, lengths = attention_inputs(seed=34)
    args = dict(q=q, k=k, v=v, motion_idx=mi, center=c, sigma=s, lengths=lengths, lam=LAM)
    args.update(changes)
    impl = args.pop("impl", "reference")
    return lambda: ops.gaussian_word_attention(**args, impl=impl)


ATTENTION_BAD = [
    ("q 2-D", dict(q=torch.randn(Q, H * DH, dtype=torch.float64)), r"q must be \[Q, H, d\], got shape \(7, 15\)"),
    ("k heads", dict(k=torch.randn(B, T, H + 1, DH, dtype=torch.float64)), r"k must be \[B, T, H, d\].*got shape \(3, 11, 4, 5\)"),
    ("v shape", dict(v=torch.randn(B, T - 1, H, DH, dtype=torch.float64)), r"v must have k's shape .*got shape \(3, 10, 3, 5\)"),
    ("dtype mix", dict(k=torch.randn(B, T, H, DH)), r"q, k, v must share a dtype"),
    ("int q", dict(q=torch.ones(Q, H, DH, dtype=torch.int64)), r"q must be a floating-point tensor, got dtype torch.int64"),
    ("motion_idx int32", dict(motion_idx=torch.zeros(Q, dtype=torch.int32)), r"motion_idx must be int64, got dtype torch.int32"),
    ("motion_idx shape", dict(motion_idx=torch.zeros(Q + 1, dtype=torch.int64)), r"motion_idx must be \[Q\] = \[7\], got shape \(8,\)"),
    ("motion_idx == B", dict(motion_idx=torch.full((Q,), B)), r"motion_idx must be in \[0, B\) = \[0, 3\)"),
    ("motion_idx < 0", dict(motion_idx=torch.full((Q,), -1)), r"motion_idx must be in \[0, B\)"),
    ("lengths float", dict(lengths=torch.full((B,), float(T))), r"lengths must be int64, got dtype torch.float32"),
    ("lengths 0", dict(lengths=torch.tensor([T, 0, 2])), r"lengths must be in \[1, T\] = \[1, 11\]"),
    ("lengths > T", dict(lengths=torch.tensor([T, T + 1, 2])), r"lengths must be in \[1, T\] = \[1, 11\]"),
    ("lengths shape", dict(lengths=torch.tensor([T, 2])), r"lengths must be \[B\] = \[3\], got shape \(2,\)"),
    ("center shape", dict(center=torch.zeros(Q, 1, dtype=torch.float64)), r"center must be \[Q\] = \[7\], got shape \(7, 1\)"),
    ("center NaN", dict(center=torch.full((Q,), float("nan"), dtype=torch.float64)), r"center must be finite"),
    ("sigma int", dict(sigma=torch.ones(Q, dtype=torch.int64)), r"sigma must be a floating-point tensor"),
    ("lam NaN", dict(lam=float("nan")), r"lam must be finite, got nan"),
    ("lam str", dict(lam="0.1"), r"lam must be a real number, got str"),
    ("scale 0", dict(scale=0.0), r"scale must be > 0, got 0.0"),
    ("dropout 1", dict(dropout_p=1.0), r"dropout_p must be in \[0, 1\), got 1.0"),
    ("dropout < 0", dict(dropout_p=-0.1), r"dropout_p must be in \[0, 1\), got -0.1"),
    ("seed float", dict(seed=1.5), r"seed must be an int or None, got float"),
    ("prior shape", dict(prior=torch.zeros(Q, T + 1, dtype=torch.float64)), r"prior must be \[Q, T\] = \[7, 11\], got shape \(7, 12\)"),
    ("device", dict(motion_idx=torch.zeros(Q, dtype=torch.int64, device="meta")), r"same device.*motion_idx on meta"),
    ("impl", dict(impl="cuda"), r"impl must be one of"),
]


@pytest.mark.parametrize("changes, message", [pytest.param(c, m, id=i) for i, c, m in ATTENTION_BAD])
def test_attention_bad_input_raises_value_error(changes, message):
    with pytest.raises(ValueError, match=message):
        _attention_call(**changes)()


CE_BAD = [
    ("features 1-D", dict(features=torch.randn(N, dtype=torch.float64)), r"features must be \[N, D\], got shape \(9,\)"),
    ("width", dict(prototypes=torch.randn(K, D + 1, dtype=torch.float64)), r"prototypes must be \[K, D\] with features' D = 6, got shape \(13, 7\)"),
    ("K = 0", dict(prototypes=torch.randn(0, D, dtype=torch.float64)), r"prototypes must have K >= 1 rows"),
    ("dtype mix", dict(prototypes=torch.randn(K, D)), r"features and prototypes must share a dtype"),
    ("target int32", dict(target=torch.zeros(N, dtype=torch.int32)), r"target must be int64, got dtype torch.int32"),
    ("target length", dict(target=torch.zeros(N + 1, dtype=torch.int64)), r"target must be \[N\] = \[9\], got shape \(10,\)"),
    ("target == K", dict(target=torch.full((N,), K)), r"target must be in \[0, K\) = \[0, 13\) or == ignore_index \(-100\)"),
    ("target < 0", dict(target=torch.full((N,), -1)), r"target must be in \[0, K\)"),
    ("tau 0", dict(tau=0.0), r"tau must be > 0, got 0.0"),
    ("tau inf", dict(tau=float("inf")), r"tau must be finite, got inf"),
    ("reduction", dict(reduction="avg"), r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"),
    ("ignore_index", dict(ignore_index=1.0), r"ignore_index must be an int, got float"),
    ("impl", dict(impl="fast"), r"impl must be one of"),
]


@pytest.mark.parametrize("changes, message", [pytest.param(c, m, id=i) for i, c, m in CE_BAD])
def test_prototype_ce_bad_input_raises_value_error(changes, message):
    features, prototypes, target = ce_inputs(seed=35)
    args = dict(features=features, prototypes=prototypes, target=target, impl="reference")
    args.update(changes)
    with pytest.raises(ValueError, match=message):
        ops.prototype_cross_entropy(**args)


def test_info_nce_and_prior_weights_bad_input():
    a = torch.randn(N, D)
    with pytest.raises(ValueError, match=r"info_nce: b must have a's shape \(9, 6\), got shape \(8, 6\)"):
        ops.info_nce(a, torch.randn(N - 1, D))
    with pytest.raises(ValueError, match=r"info_nce: a and b must share a dtype"):
        ops.info_nce(a, a.double())
    with pytest.raises(ValueError, match=r"info_nce: tau must be > 0"):
        ops.info_nce(a, a, tau=-1.0)
    c = torch.rand(Q)
    with pytest.raises(ValueError, match=r"prior_weights: variant must be one of"):
        ops.prior_weights(c, c, T, "triangle")
    with pytest.raises(ValueError, match=r"prior_weights: num_frames must be an int >= 1, got 0"):
        ops.prior_weights(c, c, 0)
    with pytest.raises(ValueError, match=r"prior_weights: sigma must have center's shape"):
        ops.prior_weights(c, c[:3], T)


def test_validate_false_skips_range_checks_only():
    q, k, v, mi, c, s, lengths = attention_inputs(seed=36)
    bad_lengths = torch.tensor([T, 0, 2])
    with pytest.raises(ValueError, match="lengths must be in"):
        ops.gaussian_word_attention(q, k, v, mi, c, s, bad_lengths, LAM, impl="reference")
    ops.gaussian_word_attention(q, k, v, mi, c, s, bad_lengths, LAM, impl="reference", validate=False)  # trusted
    with pytest.raises(ValueError, match="motion_idx must be int64"):  # shape/dtype checks always run
        ops.gaussian_word_attention(q, k, v, mi.int(), c, s, lengths, LAM, impl="reference", validate=False)
