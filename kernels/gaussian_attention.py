"""Fused Triton kernel: Gaussian-prior word-query attention (paper, Eqs. 2-4), forward and backward.

The math (docs/method.md, "Word localisation" and "Fused forms"). Query ``i`` (motion
``b = motion_idx[i]``), head ``h``, frame ``t``::

    g_i(t) = exp(-((t - c_i) / sigma_i)^2 / 2)     (0 where sigma_i <= 0; or prior[i, t] if given)
    s_t    = scale * (1 + lam * g_i(t))             the per-frame score multiplier
    r_t    = <q[i,h], k[b,t,h]>                     the plain dot product
    z_t    = s_t * r_t,   -inf for t >= lengths[b]
    p      = softmax_t(z)                           (lse = log sum_t exp z_t is all we keep)
    w_t    = keep_t / (1 - dropout_p)               inverted dropout (w = 1 without dropout)
    o      = sum_t p_t w_t v[b,t,h]

Backward (with dropout folded in; ``do`` the incoming gradient)::

    dv_t += p_t w_t do
    dp_t  = <do, v_t>
    dz_t  = p_t (w_t dp_t - <do, o>)               (<do, o> = sum_t p_t w_t dp_t)
    dr_t  = s_t dz_t
    dq    = sum_t dr_t k_t
    dk_t += dr_t q

Kernels (all blocked with ``tl.dot`` on [BLOCK_Q, d] x [d, BLOCK_T] tiles, d padded to a power of
two >= 16):

* Queries are *sorted by motion* on the device (stable argsort, CSR offsets per motion) and cut
  into tiles of at most ``BLOCK_Q`` queries of one motion. The tile table has a static upper bound
  ``cdiv(Q, BLOCK_Q) + B`` entries, so no host sync is needed (unused tiles are empty).
* ``_fwd_kernel``: grid (tiles, H). Online softmax over the motion's frame blocks (only blocks
  below ``lengths[b]`` are visited); stores ``out`` and the log-sum-exp ``lse`` [Q, H].
* ``_bwd_dq_kernel``: grid (tiles, H). Computes ``delta = <do, o>`` for its queries (stored for
  the next kernel) and ``dq`` by recomputing p from ``lse``.
* ``_bwd_dkdv_kernel``: grid (B, H, cdiv(T, BLOCK_T)). Each program owns one frame block of one
  motion and head and loops over *that motion's* queries in CSR order, accumulating dk, dv in
  registers: every dk/dv element is written by exactly one program in a fixed order, so the
  backward is deterministic (bit-identical across runs) with no atomics.
* Dropout: ``keep = tl.rand(seed, (i * H + h) * T + t) >= p`` with ``i`` the *original* query
  index, so the mask depends only on (seed, i, h, t), never on the blocking; the backward kernels
  regenerate it from the same seed. :func:`dropout_keep_mask` returns it (debug / tests).

Registered as ``torch.library.triton_op`` ("mate::gaussian_word_attention_fwd" / "_bwd") with
``register_autograd``, so ``torch.compile(fullgraph=True)`` sees the kernels (no graph break);
and with :mod:`mate.ops` as ``impl="triton"``.

Precision: fp16/bf16 inputs use tensor-core dots with fp32 accumulation (the probabilities are
rounded to the input dtype before ``p @ v``, as in FlashAttention); fp32 inputs use
``input_precision="ieee"`` dots (no tf32); fp64 inputs (verification) use fp64 broadcast-reduce
products, no ``tl.dot``. ``lse`` is float32 (float64 for fp64 inputs). No gradient flows to
``center``, ``sigma`` or ``prior`` (constants from the segmentation); passing one that requires
grad raises.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from mate.ops import register_triton_impl

from ._helpers import acc_dtype, empty, pow2_at_least_16

__all__ = ["dropout_keep_mask", "gaussian_word_attention_triton", "DEFAULT_BLOCK_Q", "DEFAULT_BLOCK_T"]

DEFAULT_BLOCK_Q = 16  # queries per tile (tensor-core M); paper shapes average 17 queries a motion
DEFAULT_BLOCK_T = 32  # frames per block (tensor-core N); 196 frames -> 7 blocks


# ----------------------------------------------------------------------------- device helpers


@triton.jit
def _mm(a, b, USE_DOT: tl.constexpr):
    """a [M, K] @ b [K, N] -> [M, N] in the accumulator dtype. tl.dot (fp32 accumulate, no tf32 for
    fp32 inputs) or, for fp64, an exact broadcast-multiply-reduce."""
    if USE_DOT:
        return tl.dot(a, b, input_precision="ieee", out_dtype=tl.float32)
    else:
        return tl.sum(a[:, :, None] * b[None, :, :], axis=1)


@triton.jit
def _keep_weight(seed, qi, h, t, H, T, dropout_p, ACC: tl.constexpr):
    """w[i, t] = keep / (1 - p), keep = rand(seed, (i * H + h) * T + t) >= p  (int32 offsets)."""
    offs = ((qi[:, None] * H + h) * T + t[None, :]).to(tl.int32)
    keep = tl.rand(seed, offs) >= dropout_p
    return keep.to(ACC) / (1.0 - dropout_p)


@triton.jit
def _score_scale(t, c, sg, qi, prior_ptr, T, lam, scale, row_ok, t_ok, HAS_PRIOR: tl.constexpr):
    """s[i, t] = scale * (1 + lam * g_i(t)); g from (center, sigma) or the explicit prior [Q, T]."""
    if HAS_PRIOR:
        g = tl.load(prior_ptr + qi[:, None] * T + t[None, :], mask=row_ok[:, None] & t_ok[None, :], other=0.0)
    else:
        # ((t - c) / sigma)^2, not (t - c)^2 / sigma^2: tiny sigma gives a spike of 1 at t == c, never NaN
        has = sg > 0
        zg = (t[None, :].to(c.dtype) - c[:, None]) / tl.where(has, sg, 1.0)[:, None]
        g = tl.where(has[:, None], tl.exp(-0.5 * zg * zg), 0.0)
    return scale * (1.0 + lam * g)


@triton.jit
def _load_tile(tiles_ptr, n_tiles, pid, order_ptr, center_ptr, sigma_ptr, lengths_ptr,
               BLOCK_Q: tl.constexpr, ACC: tl.constexpr):
    """A tile = up to BLOCK_Q queries of one motion: rows of the sorted order [lo, hi)."""
    b = tl.load(tiles_ptr + pid)
    lo = tl.load(tiles_ptr + n_tiles + pid)
    hi = tl.load(tiles_ptr + 2 * n_tiles + pid)
    rows = lo + tl.arange(0, BLOCK_Q)
    row_ok = rows < hi  # empty for the unused tail of the tile table
    qi = tl.load(order_ptr + rows, mask=row_ok, other=0)  # original query indices
    c = tl.load(center_ptr + qi, mask=row_ok, other=0.0).to(ACC)
    sg = tl.load(sigma_ptr + qi, mask=row_ok, other=0.0).to(ACC)
    length = tl.load(lengths_ptr + b)
    length = tl.where(lo < hi, length, 0)  # empty tile: visit no frame block
    return b, qi, row_ok, c, sg, length


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _fwd_kernel(q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, tiles_ptr, order_ptr, center_ptr, sigma_ptr,
                lengths_ptr, prior_ptr, seed_ptr, n_tiles, T, H, D, lam, scale, dropout_p,
                HAS_PRIOR: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
                BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC: tl.constexpr = lse_ptr.dtype.element_ty  # accumulator dtype: float32 (float64 for fp64 inputs)
    pid = tl.program_id(0)
    h = tl.program_id(1)
    b, qi, row_ok, c, sg, length = _load_tile(tiles_ptr, n_tiles, pid, order_ptr, center_ptr, sigma_ptr,
                                              lengths_ptr, BLOCK_Q, ACC)
    dd = tl.arange(0, BLOCK_D)
    d_ok = dd < D
    qd_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(q_ptr + (qi[:, None] * H + h) * D + dd[None, :], mask=qd_mask, other=0.0)  # [BQ, BD]
    if not USE_DOT:
        q = q.to(ACC)
    seed = tl.load(seed_ptr)

    m_i = tl.full((BLOCK_Q,), float("-inf"), ACC)  # running max of z
    l_i = tl.zeros((BLOCK_Q,), ACC)  # running sum_t exp(z_t - m)   (dropout does not enter lse)
    acc = tl.zeros((BLOCK_Q, BLOCK_D), ACC)  # running sum_t exp(z_t - m) w_t v_t
    kv_base = (b * T * H + h) * D
    for t0 in range(0, length, BLOCK_T):  # frame 0 is always valid (lengths >= 1): m_i finite after block 0
        t = t0 + tl.arange(0, BLOCK_T)
        t_ok = t < length
        kv_off = kv_base + t[:, None] * (H * D) + dd[None, :]
        kv_mask = t_ok[:, None] & d_ok[None, :]
        k = tl.load(k_ptr + kv_off, mask=kv_mask, other=0.0)  # [BT, BD]
        v = tl.load(v_ptr + kv_off, mask=kv_mask, other=0.0)
        if not USE_DOT:
            k = k.to(ACC)
            v = v.to(ACC)
        r = _mm(q, tl.trans(k), USE_DOT)  # r_t = <q, k_t>   [BQ, BT]
        s = _score_scale(t, c, sg, qi, prior_ptr, T, lam, scale, row_ok, t_ok, HAS_PRIOR)
        z = tl.where(t_ok[None, :], s * r, float("-inf"))  # z_t = s_t r_t, masked beyond the length
        m_new = tl.maximum(m_i, tl.max(z, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(z - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if HAS_DROPOUT:
            p = p * _keep_weight(seed, qi, h, t, H, T, dropout_p, ACC)
        acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, USE_DOT)
        m_i = m_new
    l_safe = tl.where(row_ok, l_i, 1.0)
    out = acc / l_safe[:, None]  # o = sum_t p_t w_t v_t
    tl.store(out_ptr + (qi[:, None] * H + h) * D + dd[None, :], out.to(out_ptr.dtype.element_ty), mask=qd_mask)
    tl.store(lse_ptr + qi * H + h, m_i + tl.log(l_safe), mask=row_ok)  # lse = m + log l


@triton.jit
def _bwd_dq_kernel(q_ptr, k_ptr, v_ptr, out_ptr, dout_ptr, lse_ptr, delta_ptr, dq_ptr, tiles_ptr, order_ptr,
                   center_ptr, sigma_ptr, lengths_ptr, prior_ptr, seed_ptr, n_tiles, T, H, D, lam, scale,
                   dropout_p, HAS_PRIOR: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
                   BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC: tl.constexpr = lse_ptr.dtype.element_ty
    pid = tl.program_id(0)
    h = tl.program_id(1)
    b, qi, row_ok, c, sg, length = _load_tile(tiles_ptr, n_tiles, pid, order_ptr, center_ptr, sigma_ptr,
                                              lengths_ptr, BLOCK_Q, ACC)
    dd = tl.arange(0, BLOCK_D)
    d_ok = dd < D
    qd_mask = row_ok[:, None] & d_ok[None, :]
    qd_off = (qi[:, None] * H + h) * D + dd[None, :]
    q = tl.load(q_ptr + qd_off, mask=qd_mask, other=0.0)
    do = tl.load(dout_ptr + qd_off, mask=qd_mask, other=0.0)
    o = tl.load(out_ptr + qd_off, mask=qd_mask, other=0.0)
    if not USE_DOT:
        q = q.to(ACC)
        do = do.to(ACC)
    delta = tl.sum(do.to(ACC) * o.to(ACC), 1)  # <do, o>
    tl.store(delta_ptr + qi * H + h, delta, mask=row_ok)
    lse = tl.load(lse_ptr + qi * H + h, mask=row_ok, other=0.0)
    seed = tl.load(seed_ptr)

    dq = tl.zeros((BLOCK_Q, BLOCK_D), ACC)
    kv_base = (b * T * H + h) * D
    for t0 in range(0, length, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        t_ok = t < length
        kv_off = kv_base + t[:, None] * (H * D) + dd[None, :]
        kv_mask = t_ok[:, None] & d_ok[None, :]
        k = tl.load(k_ptr + kv_off, mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + kv_off, mask=kv_mask, other=0.0)
        if not USE_DOT:
            k = k.to(ACC)
            v = v.to(ACC)
        r = _mm(q, tl.trans(k), USE_DOT)
        s = _score_scale(t, c, sg, qi, prior_ptr, T, lam, scale, row_ok, t_ok, HAS_PRIOR)
        valid = row_ok[:, None] & t_ok[None, :]
        p = tl.exp(tl.where(valid, s * r - lse[:, None], float("-inf")))  # p_t, recomputed from lse
        dp = _mm(do, tl.trans(v), USE_DOT)  # dp_t = <do, v_t>
        if HAS_DROPOUT:
            dp = dp * _keep_weight(seed, qi, h, t, H, T, dropout_p, ACC)  # w_t dp_t
        dr = s * (p * (dp - delta[:, None]))  # dr_t = s_t p_t (w_t dp_t - <do, o>)
        dq += _mm(dr.to(k.dtype), k, USE_DOT)  # dq = sum_t dr_t k_t
    tl.store(dq_ptr + qd_off, dq.to(dq_ptr.dtype.element_ty), mask=qd_mask)


@triton.jit
def _bwd_dkdv_kernel(q_ptr, k_ptr, v_ptr, dout_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr, offsets_ptr, order_ptr,
                     center_ptr, sigma_ptr, lengths_ptr, prior_ptr, seed_ptr, T, H, D, lam, scale, dropout_p,
                     HAS_PRIOR: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
                     BLOCK_Q: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    ACC: tl.constexpr = lse_ptr.dtype.element_ty
    b = tl.program_id(0)
    h = tl.program_id(1)
    t0 = tl.program_id(2) * BLOCK_T
    length = tl.load(lengths_ptr + b)
    q_begin = tl.load(offsets_ptr + b)  # this motion's queries: sorted rows [q_begin, q_end)
    q_end = tl.load(offsets_ptr + b + 1)
    q_end = tl.where(t0 < length, q_end, q_begin)  # a block past the length only writes zeros
    dd = tl.arange(0, BLOCK_D)
    d_ok = dd < D
    t = t0 + tl.arange(0, BLOCK_T)
    t_ok = t < length
    kv_off = (b * T * H + h) * D + t[:, None] * (H * D) + dd[None, :]
    kv_mask = t_ok[:, None] & d_ok[None, :]
    k = tl.load(k_ptr + kv_off, mask=kv_mask, other=0.0)  # [BT, BD]
    v = tl.load(v_ptr + kv_off, mask=kv_mask, other=0.0)
    if not USE_DOT:
        k = k.to(ACC)
        v = v.to(ACC)
    seed = tl.load(seed_ptr)

    dk = tl.zeros((BLOCK_T, BLOCK_D), ACC)
    dv = tl.zeros((BLOCK_T, BLOCK_D), ACC)
    for lo in range(q_begin, q_end, BLOCK_Q):  # fixed order: deterministic accumulation
        rows = lo + tl.arange(0, BLOCK_Q)
        row_ok = rows < q_end
        qi = tl.load(order_ptr + rows, mask=row_ok, other=0)
        c = tl.load(center_ptr + qi, mask=row_ok, other=0.0).to(ACC)
        sg = tl.load(sigma_ptr + qi, mask=row_ok, other=0.0).to(ACC)
        qd_mask = row_ok[:, None] & d_ok[None, :]
        qd_off = (qi[:, None] * H + h) * D + dd[None, :]
        q = tl.load(q_ptr + qd_off, mask=qd_mask, other=0.0)
        do = tl.load(dout_ptr + qd_off, mask=qd_mask, other=0.0)
        if not USE_DOT:
            q = q.to(ACC)
            do = do.to(ACC)
        lse = tl.load(lse_ptr + qi * H + h, mask=row_ok, other=0.0)
        delta = tl.load(delta_ptr + qi * H + h, mask=row_ok, other=0.0)
        r = _mm(q, tl.trans(k), USE_DOT)
        s = _score_scale(t, c, sg, qi, prior_ptr, T, lam, scale, row_ok, t_ok, HAS_PRIOR)
        valid = row_ok[:, None] & t_ok[None, :]
        p = tl.exp(tl.where(valid, s * r - lse[:, None], float("-inf")))  # 0 off the valid frames
        dp = _mm(do, tl.trans(v), USE_DOT)  # <do, v_t>
        if HAS_DROPOUT:
            w = _keep_weight(seed, qi, h, t, H, T, dropout_p, ACC)
            dp = dp * w
            pw = p * w
        else:
            pw = p
        dv += _mm(tl.trans(pw.to(do.dtype)), do, USE_DOT)  # dv_t += p_t w_t do
        dr = s * (p * (dp - delta[:, None]))  # dr_t = s_t dz_t
        dk += _mm(tl.trans(dr.to(q.dtype)), q, USE_DOT)  # dk_t += dr_t q
    tl.store(dk_ptr + kv_off, dk.to(dk_ptr.dtype.element_ty), mask=(t[:, None] < T) & d_ok[None, :])
    tl.store(dv_ptr + kv_off, dv.to(dv_ptr.dtype.element_ty), mask=(t[:, None] < T) & d_ok[None, :])


@triton.jit
def _keep_mask_kernel(out_ptr, seed_ptr, n, dropout_p, BLOCK: tl.constexpr):
    """Debug: the keep-mask [Q, H, T] the attention kernels draw. Element (i, h, t) sits at the flat
    index (i * H + h) * T + t, which is exactly its RNG offset in _keep_weight."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    keep = tl.rand(tl.load(seed_ptr), offs.to(tl.int32)) >= dropout_p
    tl.store(out_ptr + offs, keep.to(tl.int8), mask=offs < n)


# ----------------------------------------------------------------------------- host side


def _plan(motion_idx: torch.Tensor, num_motions: int, block_q: int):
    """Sort queries by motion and cut them into tiles, on the device, without a host sync.

    Returns ``order`` [Q] (sorted row -> original query), ``offsets`` [B + 1] (CSR: motion b owns
    sorted rows [offsets[b], offsets[b+1])) and ``tiles`` [3, n_tiles] = (motion, row_lo, row_hi),
    n_tiles = cdiv(Q, BLOCK_Q) + B >= sum_b cdiv(count_b, BLOCK_Q); unused tiles are
    (0, 0, 0): empty."""
    num_queries = motion_idx.shape[0]
    dev = motion_idx.device
    order = torch.argsort(motion_idx, stable=True)
    counts = torch.zeros(num_motions, dtype=torch.int64, device=dev).scatter_add_(
        0, motion_idx, torch.ones_like(motion_idx))
    ends = torch.cumsum(counts, 0)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64, device=dev), ends])
    tiles_per = (counts + block_q - 1) // block_q
    tile_end = torch.cumsum(tiles_per, 0)
    n_tiles = triton.cdiv(num_queries, block_q) + num_motions
    ids = torch.arange(n_tiles, device=dev)
    motion = torch.searchsorted(tile_end, ids, right=True)  # tile_end[m-1] <= id < tile_end[m]
    used = motion < num_motions
    m = motion.clamp(max=num_motions - 1)
    lo = offsets[m] + (ids - (tile_end - tiles_per)[m]) * block_q
    hi = torch.minimum(lo + block_q, offsets[m + 1])
    zero = torch.zeros_like(ids)
    tiles = torch.stack([torch.where(used, m, zero), torch.where(used, lo, zero), torch.where(used, hi, zero)])
    return order, offsets, tiles.contiguous(), n_tiles


def _prep(q, k, v, motion_idx, center, sigma, lengths, prior):
    """Contiguous inputs (kernels read raw pointers); center/sigma/prior in the accumulator dtype."""
    acc_t = acc_dtype(q.dtype)
    prior_c = prior.to(acc_t).contiguous() if prior is not None else center.new_empty(1, dtype=acc_t)
    return (q.contiguous(), k.contiguous(), v.contiguous(), motion_idx.contiguous(),
            center.to(acc_t).contiguous(), sigma.to(acc_t).contiguous(), lengths.contiguous(), prior_c)


@triton_op("mate::gaussian_word_attention_fwd", mutates_args={})
def _attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, motion_idx: torch.Tensor,
                   center: torch.Tensor, sigma: torch.Tensor, lengths: torch.Tensor,
                   prior: torch.Tensor | None, seed: torch.Tensor, lam: float, scale: float,
                   dropout_p: float, block_q: int, block_t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """out [Q, H, d] (q's dtype) and lse [Q, H] (float32; float64 for fp64 inputs)."""
    num_queries, num_heads, head_dim = q.shape
    num_motions, num_frames = k.shape[:2]
    acc_t = acc_dtype(q.dtype)
    has_prior = prior is not None
    q, k, v, motion_idx, center, sigma, lengths, prior_c = _prep(q, k, v, motion_idx, center, sigma, lengths, prior)
    out = empty((num_queries, num_heads, head_dim), q.dtype, q.device)
    lse = empty((num_queries, num_heads), acc_t, q.device)
    if num_queries == 0:
        return out, lse
    order, _, tiles, n_tiles = _plan(motion_idx, num_motions, block_q)
    wrap_triton(_fwd_kernel)[(n_tiles, num_heads)](
        q, k, v, out, lse, tiles, order, center, sigma, lengths, prior_c, seed, n_tiles, num_frames,
        num_heads, head_dim, lam, scale, dropout_p, HAS_PRIOR=has_prior, HAS_DROPOUT=dropout_p > 0.0,
        USE_DOT=q.dtype != torch.float64, BLOCK_Q=block_q, BLOCK_T=block_t,
        BLOCK_D=pow2_at_least_16(head_dim))
    return out, lse


@triton_op("mate::gaussian_word_attention_bwd", mutates_args={})
def _attention_bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   lse: torch.Tensor, motion_idx: torch.Tensor, center: torch.Tensor, sigma: torch.Tensor,
                   lengths: torch.Tensor, prior: torch.Tensor | None, seed: torch.Tensor, lam: float,
                   scale: float, dropout_p: float, block_q: int,
                   block_t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq [Q, H, d], dk, dv [B, T, H, d] in the inputs' dtype."""
    num_queries, num_heads, head_dim = q.shape
    num_motions, num_frames = k.shape[:2]
    acc_t = acc_dtype(q.dtype)
    has_prior = prior is not None
    q, k, v, motion_idx, center, sigma, lengths, prior_c = _prep(q, k, v, motion_idx, center, sigma, lengths, prior)
    dout = dout.to(q.dtype).contiguous()  # sum().backward() hands an expanded, stride-0 gradient
    out = out.contiguous()
    lse = lse.contiguous()
    dq = empty(q.shape, q.dtype, q.device)
    dk = empty(k.shape, k.dtype, k.device)
    dv = empty(v.shape, v.dtype, v.device)
    if num_queries == 0:
        return dq, dk.zero_(), dv.zero_()
    delta = empty((num_queries, num_heads), acc_t, q.device)
    order, offsets, tiles, n_tiles = _plan(motion_idx, num_motions, block_q)
    common = dict(HAS_PRIOR=has_prior, HAS_DROPOUT=dropout_p > 0.0, USE_DOT=q.dtype != torch.float64,
                  BLOCK_Q=block_q, BLOCK_T=block_t, BLOCK_D=pow2_at_least_16(head_dim))
    # dq first: it also writes delta = <do, o>, which the dk/dv kernel reads.
    wrap_triton(_bwd_dq_kernel)[(n_tiles, num_heads)](
        q, k, v, out, dout, lse, delta, dq, tiles, order, center, sigma, lengths, prior_c, seed, n_tiles,
        num_frames, num_heads, head_dim, lam, scale, dropout_p, **common)
    wrap_triton(_bwd_dkdv_kernel)[(num_motions, num_heads, triton.cdiv(num_frames, block_t))](
        q, k, v, dout, lse, delta, dk, dv, offsets, order, center, sigma, lengths, prior_c, seed,
        num_frames, num_heads, head_dim, lam, scale, dropout_p, **common)
    return dq, dk, dv


def _setup_context(ctx, inputs, output):
    q, k, v, motion_idx, center, sigma, lengths, prior, seed, lam, scale, dropout_p, block_q, block_t = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, motion_idx, center, sigma, lengths, prior, seed)
    ctx.params = (lam, scale, dropout_p, block_q, block_t)


def _backward(ctx, dout, dlse):
    q, k, v, out, lse, motion_idx, center, sigma, lengths, prior, seed = ctx.saved_tensors
    lam, scale, dropout_p, block_q, block_t = ctx.params
    dq, dk, dv = _attention_bwd(dout, q, k, v, out, lse, motion_idx, center, sigma, lengths, prior, seed,
                                lam, scale, dropout_p, block_q, block_t)
    return dq, dk, dv, None, None, None, None, None, None, None, None, None, None, None


_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


def _seed_tensor(seed: int | None, device: torch.device) -> torch.Tensor:
    """[1] int64 seed on the device; None draws one from torch's global RNG (graph-friendly)."""
    if seed is None:
        return torch.randint(0, 2**62, (1,), dtype=torch.int64, device=device)
    return torch.full((1,), int(seed) % 2**63, dtype=torch.int64, device=device)


def gaussian_word_attention_triton(q, k, v, motion_idx, center, sigma, lengths, lam, scale, prior=None,
                                   dropout_p=0.0, seed=None, *, block_q=None, block_t=None):
    """The kernel entry point with mate.ops' kernel signature (arguments already validated).

    ``block_q`` / ``block_t`` override the tile sizes (tests use small frame blocks to exercise
    the online softmax across several blocks); both powers of two >= 16."""
    for name, x in (("center", center), ("sigma", sigma), ("prior", prior)):
        if x is not None and x.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(
                f"gaussian_word_attention(impl='triton'): no gradient flows to {name}; detach it "
                "(it comes from the segmentation) or use impl='reference'")
    block_q = DEFAULT_BLOCK_Q if block_q is None else int(block_q)
    block_t = DEFAULT_BLOCK_T if block_t is None else int(block_t)
    seed_t = _seed_tensor(seed if dropout_p > 0.0 else 0, q.device)
    out, _ = _attention_fwd(q, k, v, motion_idx, center, sigma, lengths, prior, seed_t, float(lam),
                            float(scale), float(dropout_p), block_q, block_t)
    return out


def dropout_keep_mask(num_queries: int, num_heads: int, num_frames: int, dropout_p: float, seed: int,
                      device="cpu") -> torch.Tensor:
    """Debug/tests: the bool keep-mask [Q, H, T] the kernels draw for ``(dropout_p, seed)``; pass it
    as the reference's ``keep`` to reproduce the Triton path's dropout exactly."""
    mask = torch.empty((num_queries, num_heads, num_frames), dtype=torch.int8, device=device)
    if mask.numel():
        block = 1024
        _keep_mask_kernel[(triton.cdiv(mask.numel(), block),)](
            mask, _seed_tensor(seed, torch.device(device)), mask.numel(), float(dropout_p), BLOCK=block)
    return mask.bool()


register_triton_impl("gaussian_word_attention", gaussian_word_attention_triton)
