"""Gaussian-prior word-query attention (paper, Eqs. 2-4).

A word query ``q_i`` attends to the frames of its motion ``b = motion_idx[i]``. The literal
formula scales the motion's frame features by the prior before the key projection,

    K = (1 + lam * g_i(t)) * F^m,     g_i(t) = exp(-(t - c_i)^2 / (2 sigma_i^2)),

and runs multi-head attention. Because the prior is a per-frame scalar,
``((1 + lam g) * F) W_k = (1 + lam g) * (F W_k)``, and the key bias adds ``<q, b_k>`` to every
score of a query -- a constant over ``t`` that cancels in the softmax. So each motion's frames are
projected **once** (keys without bias) and, per head,

    score_i(t) = scale * (1 + lam * g_i(t)) * <q_i, k_{b,t}>,   p_i = softmax_t(score_i),
    out_i      = sum_t p_i(t) * v_{b,t},

with frames ``t >= lengths[b]`` masked out. :func:`gaussian_word_attention` is that projected-once
form (the op); :func:`gaussian_word_attention_literal` is the literal per-query formula, kept as a
test oracle (it costs a key projection per query).

Prior variants (paper, Table 6) are produced by :func:`prior_weights`. The op computes the default
``"gaussian"`` prior itself from ``center``/``sigma``; a model that ablates the prior passes
``prior=prior_weights(center, sigma, T, variant)`` (``[Q, T]``), which replaces the in-op
Gaussian (``"none"`` is equivalently ``lam=0``).
"""
from __future__ import annotations

import numbers

import torch

from . import _common as C

__all__ = ["PRIOR_VARIANTS", "gaussian_word_attention", "gaussian_word_attention_literal", "prior_weights"]

OP = "gaussian_word_attention"
# The attention-prior variants (paper, Table 6), in :func:`prior_weights`. The one definition in
# the package: import it as ``mate.ops.PRIOR_VARIANTS``.
PRIOR_VARIANTS = ("none", "binary", "gaussian_in_segment", "gaussian")


# ----------------------------------------------------------------------------- the prior


def _gaussian_prior(center: torch.Tensor, sigma: torch.Tensor, num_frames: int, dtype: torch.dtype) -> torch.Tensor:
    """g[i, t] = exp(-(t - c_i)^2 / (2 sigma_i^2)) where sigma_i > 0, else 0.  [Q, T] in ``dtype``."""
    frame = torch.arange(num_frames, device=center.device, dtype=dtype)[None, :]
    c = center.to(dtype)[:, None]
    s = sigma.to(dtype)[:, None]
    has_prior = s > 0
    # Written as ((t - c) / sigma)^2, not (t - c)^2 / sigma^2: for tiny sigma, sigma^2 underflows to
    # 0 and (t - c)^2 / 0 is NaN at t == c. Here the spike is exactly 1 at t == c and 0 elsewhere.
    z = (frame - c) / torch.where(has_prior, s, torch.ones_like(s))
    return torch.where(has_prior, torch.exp(-0.5 * z * z), torch.zeros_like(z))


def prior_weights(
    center: torch.Tensor, sigma: torch.Tensor, num_frames: int, variant: str = "gaussian"
) -> torch.Tensor:
    """The attention prior ``g[i, t]`` for each query and frame, for the paper's ablation variants.

    Args:
        center: ``[Q]`` floating, segment centres ``c = (s + e) / 2`` in frames.
        sigma: ``[Q]`` floating, half-widths ``sigma = (e - s) / 2`` in frames; ``sigma <= 0``
            means "no segment": the prior is 0 for every variant.
        num_frames: ``T``, the number of frames (``>= 1``).
        variant: ``"none"`` (all zeros, i.e. lam = 0), ``"binary"`` (1 on ``[s, e)``, 0 outside),
            ``"gaussian_in_segment"`` (the Gaussian on ``[s, e)``, 0 outside) or ``"gaussian"``
            (the Gaussian over the whole sequence, the paper's default), with ``s = c - sigma``,
            ``e = c + sigma``.

    Returns:
        ``[Q, T]`` in ``center``'s dtype (float32 if ``center`` is not floating). Pass it as
        ``gaussian_word_attention(..., prior=...)``.
    """
    op = "prior_weights"
    C.check_tensor(op, "center", center, 1, "[Q]")
    C.check_tensor(op, "sigma", sigma, 1, "[Q]")
    if sigma.shape != center.shape:
        raise ValueError(f"{op}: sigma must have center's shape {C.shape_str(center)}, got {C.shape_str(sigma)}")
    C.check_same_device(op, center=center, sigma=sigma)
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 1:
        raise ValueError(f"{op}: num_frames must be an int >= 1, got {num_frames!r}")
    if variant not in PRIOR_VARIANTS:
        raise ValueError(f"{op}: variant must be one of {PRIOR_VARIANTS}, got {variant!r}")
    dtype = center.dtype if center.is_floating_point() else torch.float32
    gaussian = _gaussian_prior(center, sigma, int(num_frames), dtype)
    if variant == "gaussian":
        return gaussian
    if variant == "none":
        return torch.zeros_like(gaussian)
    frame = torch.arange(int(num_frames), device=center.device, dtype=dtype)[None, :]
    start = (center - sigma).to(dtype)[:, None]
    end = (center + sigma).to(dtype)[:, None]
    inside = (frame >= start) & (frame < end)  # t in [s, e)
    if variant == "binary":
        return inside.to(dtype)
    return torch.where(inside, gaussian, torch.zeros_like(gaussian))  # gaussian_in_segment


# ----------------------------------------------------------------------------- the reference


def _length_mask(motion_idx: torch.Tensor, lengths: torch.Tensor, num_frames: int) -> torch.Tensor:
    """valid[i, t] = t < lengths[motion_idx[i]].  [Q, T] bool."""
    frame = torch.arange(num_frames, device=lengths.device)
    return frame[None, :] < lengths[motion_idx][:, None]


def _attention_reference(q, k, v, motion_idx, center, sigma, lengths, lam, scale, prior, keep, dropout_p):
    """Projected-once Gaussian-prior attention, eager. ``keep`` is the dropout keep-mask [Q,H,T]
    (or None). Shapes: q [Q,H,d]; k, v [B,T,H,d] -> out [Q,H,d] in q's dtype."""
    out_dtype = q.dtype
    dtype = C.compute_dtype(q.dtype)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    num_frames = k.shape[1]

    keys = k[motion_idx]  # [Q,T,H,d]: k_{b,t} with b = motion_idx[i]
    values = v[motion_idx]  # [Q,T,H,d]
    g = _gaussian_prior(center, sigma, num_frames, dtype) if prior is None else prior.to(dtype)  # [Q,T]

    # score_i(t) = scale * (1 + lam * g_i(t)) * <q_i, k_{b,t}>, per head
    # (a product and a sum rather than an einsum: compiled, inductor fuses the gather into it)
    dots = (q[:, None] * keys).sum(-1).transpose(1, 2)  # [Q,H,T]
    scores = (scale * (1.0 + lam * g))[:, None, :] * dots
    valid = _length_mask(motion_idx, lengths, num_frames)  # [Q,T]
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))

    attn = torch.softmax(scores, dim=-1)  # p_i(t), over the frames of motion b
    if keep is not None:
        attn = attn * keep / (1.0 - dropout_p)  # inverted dropout: E[attn] is unchanged
    out = (attn.transpose(1, 2)[..., None] * values).sum(1)  # sum_t p_i(t) v_{b,t}
    return out.to(out_dtype)


def _dropout_keep_mask(shape, dropout_p: float, seed: int | None, device: torch.device) -> torch.Tensor:
    """Bernoulli(1 - p) keep-mask from a ``torch.Generator`` seeded with ``seed`` (the global RNG
    when ``seed`` is None)."""
    generator = None
    if seed is not None:
        if torch.compiler.is_compiling():
            raise RuntimeError(
                f"{OP}: seed={seed} cannot be used while torch.compile traces the caller (a "
                "torch.Generator cannot be created inside a compiled region); pass seed=None, "
                "which draws the dropout mask from the global RNG (seed it with torch.manual_seed)"
            )
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    if generator is None:  # no generator= keyword: torch.compile cannot trace rand(generator=None) with dynamic sizes
        return torch.rand(shape, device=device) >= dropout_p
    return torch.rand(shape, generator=generator, device=device) >= dropout_p


# ----------------------------------------------------------------------------- the op


def _check_attention_args(q, k, v, motion_idx, center, sigma, lengths, lam, scale, dropout_p, seed, prior, validate):
    """Validate; return ``(lam, scale, dropout_p)`` as floats (scale resolved to d**-0.5)."""
    C.check_tensor(OP, "q", q, 3, "[Q, H, d]")
    C.check_tensor(OP, "k", k, 4, "[B, T, H, d]")
    C.check_tensor(OP, "v", v, 4, "[B, T, H, d]")
    for name, x in (("q", q), ("k", k), ("v", v)):
        C.check_floating(OP, name, x)
    num_queries, num_heads, head_dim = q.shape
    num_motions, num_frames = k.shape[:2]
    if num_heads < 1 or head_dim < 1:
        raise ValueError(f"{OP}: q must be [Q, H, d] with H >= 1 heads and d >= 1, got shape {C.shape_str(q)}")
    if k.shape[2:] != q.shape[1:]:
        raise ValueError(
            f"{OP}: k must be [B, T, H, d] with q's H, d = {tuple(q.shape[1:])}, got shape {C.shape_str(k)}"
        )
    if v.shape != k.shape:
        raise ValueError(f"{OP}: v must have k's shape {C.shape_str(k)}, got shape {C.shape_str(v)}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"{OP}: q, k, v must share a dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if num_frames < 1:
        raise ValueError(f"{OP}: k must have T >= 1 frames, got shape {C.shape_str(k)}")
    C.check_tensor(OP, "motion_idx", motion_idx, 1, f"[Q] = [{num_queries}]")
    C.check_tensor(OP, "center", center, 1, f"[Q] = [{num_queries}]")
    C.check_tensor(OP, "sigma", sigma, 1, f"[Q] = [{num_queries}]")
    C.check_tensor(OP, "lengths", lengths, 1, f"[B] = [{num_motions}]")
    for name, x, size in (("motion_idx", motion_idx, num_queries), ("center", center, num_queries),
                          ("sigma", sigma, num_queries), ("lengths", lengths, num_motions)):
        if x.shape[0] != size:
            expected = "Q" if name != "lengths" else "B"
            raise ValueError(f"{OP}: {name} must be [{expected}] = [{size}], got shape {C.shape_str(x)}")
    C.check_int64(OP, "motion_idx", motion_idx)
    C.check_int64(OP, "lengths", lengths)
    C.check_floating(OP, "center", center)
    C.check_floating(OP, "sigma", sigma)
    if prior is not None:
        C.check_tensor(OP, "prior", prior, 2, f"[Q, T] = [{num_queries}, {num_frames}]")
        if prior.shape != (num_queries, num_frames):
            raise ValueError(
                f"{OP}: prior must be [Q, T] = [{num_queries}, {num_frames}], got shape {C.shape_str(prior)}"
            )
        C.check_floating(OP, "prior", prior)
    C.check_same_device(OP, q=q, k=k, v=v, motion_idx=motion_idx, center=center, sigma=sigma,
                        lengths=lengths, prior=prior)
    lam = C.check_real(OP, "lam", lam)
    scale = head_dim**-0.5 if scale is None else C.check_real(OP, "scale", scale, positive=True)
    dropout_p = C.check_real(OP, "dropout_p", dropout_p)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{OP}: dropout_p must be in [0, 1), got {dropout_p}")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"{OP}: seed must be an int or None, got {type(seed).__name__}")
        C.check_int64_scalar(OP, "seed", seed)

    if validate and not torch.compiler.is_compiling():
        # Value ranges: one host sync for all of them (free on CPU).
        checks = [
            ((motion_idx < 0).any() | (motion_idx >= num_motions).any(),
             f"motion_idx must be in [0, B) = [0, {num_motions}) (q has shape {C.shape_str(q)}, "
             f"k has shape {C.shape_str(k)})"),
            ((lengths < 1).any() | (lengths > num_frames).any(),
             f"lengths must be in [1, T] = [1, {num_frames}] (k has shape {C.shape_str(k)})"),
            (~torch.isfinite(center).all(), f"center must be finite (shape {C.shape_str(center)})"),
            (~torch.isfinite(sigma).all(), f"sigma must be finite (shape {C.shape_str(sigma)})"),
        ]
        if prior is not None:
            checks.append((~torch.isfinite(prior).all(), f"prior must be finite (shape {C.shape_str(prior)})"))
        C.raise_first_failure(OP, checks)
    return lam, scale, dropout_p


def gaussian_word_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    motion_idx: torch.Tensor,
    center: torch.Tensor,
    sigma: torch.Tensor,
    lengths: torch.Tensor,
    lam: float,
    scale: float | None = None,
    dropout_p: float = 0.0,
    seed: int | None = None,
    impl: str = "auto",
    *,
    prior: torch.Tensor | None = None,
    validate: bool = True,
) -> torch.Tensor:
    """Word queries attending to their motion's frames with a Gaussian prior (paper, Eqs. 2-4).

    Per query ``i``, head ``h``, with ``b = motion_idx[i]``::

        g_i(t)   = exp(-(t - center_i)^2 / (2 sigma_i^2))   (0 for every t if sigma_i <= 0)
        score(t) = scale * (1 + lam * g_i(t)) * <q[i,h], k[b,t,h]>,  -inf for t >= lengths[b]
        p        = dropout(softmax_t(score))
        out[i,h] = sum_t p(t) * v[b,t,h]

    Args:
        q: ``[Q, H, d]`` float16/bfloat16/float32/float64, the projected word queries.
        k: ``[B, T, H, d]`` same dtype, frame features projected by W_k **without bias** (the bias
            cancels in the softmax).
        v: ``[B, T, H, d]`` same dtype, projected values (with their bias).
        motion_idx: ``[Q]`` int64 in ``[0, B)``, the motion each query reads.
        center, sigma: ``[Q]`` floating, the prior's centre and width in frames;
            ``sigma <= 0``: no prior for that query (cross-disentanglement queries).
        lengths: ``[B]`` int64 in ``[1, T]``; frames ``t >= lengths[b]`` are masked out.
        lam: the prior strength lambda (0.1 in the paper), finite.
        scale: score scale, default ``d ** -0.5``; finite and > 0.
        dropout_p: dropout on the attention weights, ``0 <= p < 1`` (inverted: kept weights are
            divided by ``1 - p``). Applied only when ``p > 0``.
        seed: makes dropout deterministic: the reference/compiled paths draw the mask from a
            ``torch.Generator`` seeded with ``seed`` (the global RNG when None). The Triton path
            uses its own in-kernel RNG, so masks differ across impls: compare dropout only
            within one impl. Inside a caller that ``torch.compile`` traces, only ``seed=None``
            works (no ``torch.Generator`` can be created there): seed the global RNG instead.
        impl: ``"auto" | "reference" | "compiled" | "triton"`` (see :mod:`mate.ops`).
        prior: optional ``[Q, T]`` floating prior replacing the in-op Gaussian (ablation variants,
            from :func:`prior_weights`); ``lam`` still multiplies it.
        validate: check value ranges (``motion_idx``, ``lengths``, finiteness of ``center``,
            ``sigma``, ``prior``) at the cost of one host sync; shape/dtype checks always run.
            Skipped automatically while ``torch.compile`` traces the caller.

    Returns:
        ``[Q, H, d]`` in ``q``'s dtype (half inputs are computed in float32).
    """
    lam, scale, dropout_p = _check_attention_args(
        q, k, v, motion_idx, center, sigma, lengths, lam, scale, dropout_p, seed, prior, validate
    )
    chosen = C.resolve_impl(OP, impl, q.device)
    if chosen == "triton":
        # Kernel signature: validated tensors, floats resolved; dropout from its in-kernel RNG.
        return C.triton_impl(OP)(q, k, v, motion_idx, center, sigma, lengths, lam, scale, prior, dropout_p, seed)

    keep = None
    if dropout_p > 0.0:
        keep = _dropout_keep_mask((q.shape[0], q.shape[1], k.shape[1]), dropout_p, seed, q.device)
    args = (q, k, v, motion_idx, center, sigma, lengths, lam, scale, prior, keep, dropout_p)
    if chosen == "reference":
        return _attention_reference(*args)
    key = (q.device.type, q.dtype, "prior" if prior is not None else "gaussian", "dropout" if keep is not None else "nodrop")
    return C.run_compiled(OP, _attention_reference, key, impl, *args)


# ----------------------------------------------------------------------------- the literal oracle


def gaussian_word_attention_literal(
    q: torch.Tensor,
    frames: torch.Tensor,
    w_k: torch.Tensor,
    b_k: torch.Tensor,
    w_v: torch.Tensor,
    b_v: torch.Tensor,
    motion_idx: torch.Tensor,
    center: torch.Tensor,
    sigma: torch.Tensor,
    lengths: torch.Tensor,
    lam: float,
    scale: float | None = None,
    *,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """The paper's formula taken literally (Eqs. 2-4), a test oracle: O(Q * T * D * H * d).

    For every query, its motion's frame features are scaled by ``1 + lam * prior(t)`` **before**
    the key projection (with bias), then multi-head attention runs on those per-query keys::

        K_i = ((1 + lam * g_i(t)) * F[b]) W_k^T + b_k      [T, H*d] -> [T, H, d]
        V_i = F[b] W_v^T + b_v
        out[i, h] = softmax_t(scale * <q[i,h], K_i[t,h]>, masked t >= lengths[b]) @ V_i[:, h]

    No dropout. Equals ``gaussian_word_attention(q, F W_k^T, F W_v^T + b_v, ...)``.

    Args:
        q: ``[Q, H, d]`` floating (already projected queries).
        frames: ``[B, T, D]`` frame features ``F^m``, q's dtype.
        w_k, w_v: ``[H*d, D]``; b_k, b_v: ``[H*d]``.
        motion_idx, center, sigma, lengths, lam, scale, prior: as in :func:`gaussian_word_attention`.

    Returns:
        ``[Q, H, d]`` in q's dtype.
    """
    op = "gaussian_word_attention_literal"
    C.check_tensor(op, "q", q, 3, "[Q, H, d]")
    C.check_tensor(op, "frames", frames, 3, "[B, T, D]")
    num_queries, num_heads, head_dim = q.shape
    num_frames, width = frames.shape[1], frames.shape[2]
    for name, w, b in (("w_k", w_k, b_k), ("w_v", w_v, b_v)):
        if tuple(w.shape) != (num_heads * head_dim, width):
            raise ValueError(f"{op}: {name} must be [H*d, D] = [{num_heads * head_dim}, {width}], got {C.shape_str(w)}")
        if tuple(b.shape) != (num_heads * head_dim,):
            raise ValueError(f"{op}: bias of {name} must be [H*d] = [{num_heads * head_dim}], got {C.shape_str(b)}")
    scale = head_dim**-0.5 if scale is None else float(scale)

    feats = frames[motion_idx]  # [Q,T,D]: F^m of each query's motion
    g = _gaussian_prior(center, sigma, num_frames, q.dtype) if prior is None else prior.to(q.dtype)
    scaled = (1.0 + lam * g)[:, :, None] * feats  # K = (1 + lam * prior(t)) (.) F^m, per query
    keys = (scaled @ w_k.T + b_k).view(num_queries, num_frames, num_heads, head_dim)  # projected per query
    values = (feats @ w_v.T + b_v).view(num_queries, num_frames, num_heads, head_dim)

    scores = scale * torch.einsum("qhd,qthd->qht", q, keys)  # MultiHead: scaled dot products
    valid = _length_mask(motion_idx, lengths, num_frames)
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    return torch.einsum("qht,qthd->qhd", torch.softmax(scores, dim=-1), values)
