"""Fused prototype cross-entropy (paper, Eq. 5, L_self; also each direction of InfoNCE, Eq. 6).

Math (docs/method.md, "Losses" and "Fused forms"). With a_i = 1 / max(||f_i||, eps),
b_k = 1 / max(||p_k||, eps), eps = 1e-12 (``mate.ops.NORM_EPS``)::

    h_i = a_i f_i,   P^_k = b_k p_k,   z_ik = <h_i, P^_k> / tau = a_i b_k <f_i, p_k> / tau
    lse_i = log sum_k exp(z_ik),        L_i = lse_i - z_{i, y_i}        (0 for ignored rows)

Backward, with w_i = dLoss/dL_i (upstream * valid_i, / N_valid for "mean") and
d_ik = softmax(z_i)_k - [k == y_i] (so dz_ik = w_i d_ik)::

    dh_i  = w_i / tau * sum_k d_ik P^_k          dP^_k = 1 / tau * sum_i d_ik (w_i h_i)
    <h_i, dh_i>   = sum_k dz_ik z_ik = c_i       <P^_k, dP^_k> = sum_i dz_ik z_ik = e_k
    df_i = a_i (dh_i - [||f_i|| >= eps] c_i h_i)  dp_k = b_k (dP^_k - [||p_k|| >= eps] e_k P^_k)

The projection terms need only the scalars c_i and e_k, which accumulate blockwise beside z, so no
program ever needs a whole D-row of dh before its own D-slice is final. Since sum_k d_ik = 0 for a
valid row, c_i = w_i sum_k d_ik (z_ik - lse_i): the shifted form keeps tiny-tau logits (|z| ~ 1/tau)
from swamping the sum. Below eps the reference's clamp cuts the norm's gradient, hence the flags.

Kernels (the N x K logits are never stored; z is recomputed tile by tile from the raw inputs):

* ``_norm_kernel`` -- ||x_i|| per row (forward, for f and P; saved for the backward).
* ``_fwd_kernel``  -- grid (cdiv(N, BLOCK_M), SPLIT_F). Each program owns BLOCK_M rows and the
  K blocks kb = s, s + SPLIT_F, ...; z tile = (f_blk @ p_blk^T) * a_i b_k / tau, the D reduction in
  BLOCK_D chunks (tl.dot, fp32 accumulation; fp64 for float64 inputs), an online log-sum-exp
  (running max m, running sum s) and z_{i,y_i} picked where k == y_i. Stores lse and z_{i,y_i}
  only: [SPLIT_F, N] partials, merged (SPLIT_F > 1: small N on a GPU) by a logsumexp / sum over
  the split axis, in a fixed order. The loss rows L_i = lse_i - z_{i,y_i} and the reduction are
  N-sized torch ops.
* ``_scale_rows_kernel`` -- backward, fp16 only: h and P^ in fp16 ([N, D], [K, D]: input-sized)
  as the update operands (other dtypes fold the norms into the left operand, see below).
* ``_bwd_df_kernel`` -- grid (cdiv(N, BLOCK_M), cdiv(D, BLOCK_DO), SPLIT_B). Owns rows x one D
  slice of dh, loops over its K blocks: recompute z, d = exp(z - lse) - onehot,
  acc += (d b) @ p[:, slice] (= d @ P^[:, slice]), c += sum d (z - lse); epilogue
  df = a (w / tau acc - c' h).
  SPLIT_B == 1 writes df directly; otherwise partials [SPLIT_B, N, D] are summed in split order by
  ``_df_finalize_kernel`` (SPLIT_B * D < K keeps them smaller than N x K).
* ``_bwd_dp_kernel`` -- grid (cdiv(K, BLOCK_K), cdiv(D, BLOCK_DO)). Owns prototypes x one D slice
  of dP^ and loops over *all* row blocks in order, acc += (d a w / max|w|)^T @ f[:, slice]: every dp
  element is written by exactly one program after a fixed-order reduction -- deterministic, no
  atomics, no partial buffers.

Cost: the forward does 2NKD FLOPs; each backward kernel recomputes z once per D slice, so the
backward does 2 * (D / BLOCK_DO + 1) * 2NKD (eager: 4NKD, but through N x K tensors in memory).
Half inputs feed tl.dot as they are (tensor cores, exact products), accumulating in fp32; the
backward's left operands (d b, d a w / max|w|) are cast to the input dtype, its right operands are
the raw inputs, so no normalised copy is made (fp16, whose range cannot hold b up to 1e12, uses
d in [-1, 1] against normalised fp16 copies instead). Extra memory: O(N + K) beyond the gradients.
fp32 inputs use tf32 only when torch's own fp32 matmul precision allows it (exact "ieee" otherwise,
and always under the interpreter). Tiles per kernel and dtype: ``block_config``.

Registered as ``torch.library.triton_op`` ("mate::prototype_cross_entropy" forward returning
(loss, lse, ||f||, ||p||), "mate::prototype_cross_entropy_backward") + ``register_autograd``, so
``torch.compile(fullgraph=True)`` traces into the kernels on CUDA with no graph break, and plugged
into ``mate.ops`` via ``register_triton_impl("prototype_cross_entropy", ...)`` at import.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from mate.ops import NORM_EPS, REDUCTIONS, register_triton_impl

from ._helpers import acc_dtype, empty, pow2_at_least_16

__all__ = ["block_config", "prototype_cross_entropy_triton"]


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _norm_kernel(X, NORM, M, D, stride_x, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """NORM[i] = ||X[i, :]||_2, accumulated in NORM's dtype (fp32; fp64 for float64 inputs)."""
    ACC: tl.constexpr = NORM.dtype.element_ty
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    base = X + rows.to(tl.int64)[:, None] * stride_x
    ssq = tl.zeros((BLOCK_M,), dtype=ACC)
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)
        x = tl.load(base + rd[None, :], mask=row_ok[:, None] & (rd < D)[None, :], other=0.0).to(ACC)
        ssq += tl.sum(x * x, axis=1)
    tl.store(NORM + rows, tl.sqrt(ssq), mask=row_ok)


@triton.jit
def _scale_rows_kernel(X, NORM, X_HAT, CONSTS, M, D, stride_x, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    """X_HAT[i] = X[i] / max(NORM[i], eps) in X's dtype (|entries| <= 1: safe in half precision)."""
    ACC: tl.constexpr = NORM.dtype.element_ty
    eps = tl.load(CONSTS + 1)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    r = 1.0 / tl.maximum(tl.load(NORM + rows, mask=row_ok, other=1.0), eps)
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)
        mask = row_ok[:, None] & (rd < D)[None, :]
        x = tl.load(X + rows.to(tl.int64)[:, None] * stride_x + rd[None, :], mask=mask, other=0.0).to(ACC)
        tl.store(X_HAT + rows.to(tl.int64)[:, None] * D + rd[None, :], (x * r[:, None]).to(X_HAT.dtype.element_ty),
                 mask=mask)


@triton.jit
def _dot(a, b, acc, ACC: tl.constexpr, IEEE: tl.constexpr):
    """acc + a @ b in ACC. IEEE: exact fp32 products; else Triton's default (tf32 for fp32 inputs).
    Half inputs use tensor cores either way; fp64 is always exact."""
    if IEEE:
        acc = tl.dot(a, b, acc, input_precision="ieee", out_dtype=ACC)
    else:
        acc = tl.dot(a, b, acc, out_dtype=ACC)
    return acc


@triton.jit
def _raw_dot_tile(A, B, ra, rb, a_ok, b_ok, D, stride_a, stride_b, BLOCK_A: tl.constexpr,
                  BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr, IEEE: tl.constexpr):
    """[BLOCK_A, BLOCK_B] tile of A[ra] @ B[rb]^T (un-normalised), reduced over D in BLOCK_D chunks.
    Masked rows and the D tail load 0, so they add nothing (D need not be a multiple of 16)."""
    acc = tl.zeros((BLOCK_A, BLOCK_B), dtype=ACC)
    a_base = A + ra.to(tl.int64)[:, None] * stride_a
    b_base = B + rb.to(tl.int64)[:, None] * stride_b
    for d0 in range(0, D, BLOCK_D):
        rd = d0 + tl.arange(0, BLOCK_D)
        d_ok = rd < D
        x = tl.load(a_base + rd[None, :], mask=a_ok[:, None] & d_ok[None, :], other=0.0)
        y = tl.load(b_base + rd[None, :], mask=b_ok[:, None] & d_ok[None, :], other=0.0)
        acc = _dot(x, tl.trans(y), acc, ACC, IEEE)
    return acc


@triton.jit
def _fwd_kernel(F, P, NORM_F, NORM_P, Y, LSE_PART, ZT_PART, N, K, D, stride_f, stride_p, CONSTS,
                SPLIT, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                IEEE: tl.constexpr):
    """Partial lse_i and z_{i,y_i} over the K blocks kb = s, s + SPLIT, ... (s = program_id(1))."""
    ACC: tl.constexpr = NORM_F.dtype.element_ty  # accumulation dtype: fp32 (fp64 for float64 inputs)
    inv_tau = tl.load(CONSTS)  # 1 / tau and eps in ACC (exact in fp64: float args would be fp32)
    eps = tl.load(CONSTS + 1)
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    a = 1.0 / tl.maximum(tl.load(NORM_F + rows, mask=row_ok, other=1.0), eps)  # 1 / max(||f||, eps)
    y = tl.load(Y + rows, mask=row_ok, other=-1)
    m_run = tl.full((BLOCK_M,), float("-inf"), dtype=ACC)  # running max of z_i.
    s_run = tl.zeros((BLOCK_M,), dtype=ACC)  # running sum of exp(z_i - m_run)
    zt = tl.zeros((BLOCK_M,), dtype=ACC)  # z_{i, y_i} (0 when y_i is in none of our blocks)
    for kb in range(pid_s, tl.cdiv(K, BLOCK_K), SPLIT):
        cols = kb * BLOCK_K + tl.arange(0, BLOCK_K)
        col_ok = cols < K
        b = 1.0 / tl.maximum(tl.load(NORM_P + cols, mask=col_ok, other=1.0), eps)
        # z = h P^T / tau = (f p^T) * a_i * b_k / tau
        z = _raw_dot_tile(F, P, rows, cols, row_ok, col_ok, D, stride_f, stride_p,
                          BLOCK_M, BLOCK_K, BLOCK_D, ACC, IEEE)
        z = z * (a * inv_tau)[:, None] * b[None, :]
        z = tl.where(col_ok[None, :], z, float("-inf"))
        # online log-sum-exp: m' = max(m, max_k z), s' = s e^{m - m'} + sum_k e^{z - m'}
        m_new = tl.maximum(m_run, tl.max(z, axis=1))
        s_run = s_run * tl.exp(m_run - m_new) + tl.sum(tl.exp(z - m_new[:, None]), axis=1)
        m_run = m_new
        zt += tl.sum(tl.where(cols[None, :] == y[:, None], z, 0.0), axis=1)
    out = pid_s * N + rows
    tl.store(LSE_PART + out, m_run + tl.log(s_run), mask=row_ok)
    tl.store(ZT_PART + out, zt, mask=row_ok)


@triton.jit
def _df_epilogue(F, DF, rows, row_ok, ro, o_ok, stride_f, acc, csum, nf, w, inv_tau, eps):
    """df = a (dh - [||f|| >= eps] c h), dh = w / tau * acc, c = w * csum, h = a f."""
    a = 1.0 / tl.maximum(nf, eps)
    c = tl.where(nf >= eps, w * csum, 0.0)
    mask = row_ok[:, None] & o_ok[None, :]
    off = rows.to(tl.int64)[:, None] * stride_f + ro[None, :]
    h = tl.load(F + off, mask=mask, other=0.0).to(acc.dtype) * a[:, None]
    dh = acc * (w * inv_tau)[:, None]
    df = a[:, None] * (dh - c[:, None] * h)
    tl.store(DF + off, df.to(DF.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_df_kernel(F, P, P_HAT, NORM_F, NORM_P, Y, LSE, W, DF, DH_PART, C_PART, N, K, D, stride_f, stride_p,
                   CONSTS, SPLIT, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_DO: tl.constexpr, IEEE: tl.constexpr, DIRECT: tl.constexpr, SCALED: tl.constexpr):
    """dh[rows, slice] = w / tau * sum_k d_ik P^_k[slice] and c_i, over K blocks s, s + SPLIT, ...
    z is recomputed from the raw inputs (exact products). The update's right operand comes
    straight from memory to the tensor cores: SCALED, raw p with b_k folded into d (d_ik b_k);
    else (fp16: b_k up to 1e12 would overflow it) P_HAT, P^ in the input dtype ([K, D] contiguous)."""
    ACC: tl.constexpr = NORM_F.dtype.element_ty  # accumulation dtype: fp32 (fp64 for float64 inputs)
    inv_tau = tl.load(CONSTS)  # 1 / tau and eps in ACC (exact in fp64: float args would be fp32)
    eps = tl.load(CONSTS + 1)
    pid_m = tl.program_id(0)
    pid_o = tl.program_id(1)
    pid_s = tl.program_id(2)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    ro = pid_o * BLOCK_DO + tl.arange(0, BLOCK_DO)
    o_ok = ro < D
    nf = tl.load(NORM_F + rows, mask=row_ok, other=1.0)
    a = 1.0 / tl.maximum(nf, eps)
    y = tl.load(Y + rows, mask=row_ok, other=-1)
    lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
    acc = tl.zeros((BLOCK_M, BLOCK_DO), dtype=ACC)  # sum_k d_ik P^_k[slice]
    csum = tl.zeros((BLOCK_M,), dtype=ACC)  # sum_k d_ik (z_ik - lse_i)
    for kb in range(pid_s, tl.cdiv(K, BLOCK_K), SPLIT):
        cols = kb * BLOCK_K + tl.arange(0, BLOCK_K)
        col_ok = cols < K
        b = 1.0 / tl.maximum(tl.load(NORM_P + cols, mask=col_ok, other=1.0), eps)
        z = _raw_dot_tile(F, P, rows, cols, row_ok, col_ok, D, stride_f, stride_p,
                          BLOCK_M, BLOCK_K, BLOCK_D, ACC, IEEE)
        zl = z * (a * inv_tau)[:, None] * b[None, :] - lse[:, None]  # log softmax, <= 0 up to rounding
        prob = tl.where(col_ok[None, :], tl.exp(tl.minimum(zl, 0.0)), 0.0)
        d = prob - (cols[None, :] == y[:, None]).to(ACC)  # softmax - onehot, in [-1, 1]
        csum += tl.sum(tl.where(col_ok[None, :], d * zl, 0.0), axis=1)
        pmask = col_ok[:, None] & o_ok[None, :]
        if SCALED:  # acc += (d b) p[:, slice] = d P^[:, slice]
            p_t = tl.load(P + cols.to(tl.int64)[:, None] * stride_p + ro[None, :], mask=pmask, other=0.0)
            acc = _dot((d * b[None, :]).to(p_t.dtype), p_t, acc, ACC, IEEE)
        else:  # acc += d P^[:, slice]
            p_t = tl.load(P_HAT + cols.to(tl.int64)[:, None] * D + ro[None, :], mask=pmask, other=0.0)
            acc = _dot(d.to(p_t.dtype), p_t, acc, ACC, IEEE)
    if DIRECT:
        w = tl.load(W + rows, mask=row_ok, other=0.0)
        _df_epilogue(F, DF, rows, row_ok, ro, o_ok, stride_f, acc, csum, nf, w, inv_tau, eps)
    else:
        part = pid_s * N + rows
        tl.store(DH_PART + part.to(tl.int64)[:, None] * D + ro[None, :], acc, mask=row_ok[:, None] & o_ok[None, :])
        if pid_o == 0:
            tl.store(C_PART + part, csum, mask=row_ok)


@triton.jit
def _df_finalize_kernel(F, NORM_F, W, DF, DH_PART, C_PART, N, D, stride_f, CONSTS, SPLIT,
                        BLOCK_M: tl.constexpr, BLOCK_DO: tl.constexpr):
    """Sum the SPLIT partials in split order (deterministic), then the df epilogue."""
    ACC: tl.constexpr = NORM_F.dtype.element_ty  # accumulation dtype: fp32 (fp64 for float64 inputs)
    inv_tau = tl.load(CONSTS)  # 1 / tau and eps in ACC (exact in fp64: float args would be fp32)
    eps = tl.load(CONSTS + 1)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    ro = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
    o_ok = ro < D
    acc = tl.zeros((BLOCK_M, BLOCK_DO), dtype=ACC)
    csum = tl.zeros((BLOCK_M,), dtype=ACC)
    for s in range(0, SPLIT):
        part = s * N + rows
        acc += tl.load(DH_PART + part.to(tl.int64)[:, None] * D + ro[None, :],
                       mask=row_ok[:, None] & o_ok[None, :], other=0.0)
        csum += tl.load(C_PART + part, mask=row_ok, other=0.0)
    nf = tl.load(NORM_F + rows, mask=row_ok, other=1.0)
    w = tl.load(W + rows, mask=row_ok, other=0.0)
    _df_epilogue(F, DF, rows, row_ok, ro, o_ok, stride_f, acc, csum, nf, w, inv_tau, eps)


@triton.jit
def _bwd_dp_kernel(F, P, F_HAT, NORM_F, NORM_P, Y, LSE, W, W_MAX, DP, N, K, D, stride_f, stride_p, CONSTS,
                   BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_DO: tl.constexpr, IEEE: tl.constexpr, SCALED: tl.constexpr):
    """dp[cols, slice]: loops over every row block in order (one owner per element, no atomics).
    The update's operands: SCALED, (d_ik a_i w_i / max|w|)^T and raw f; else (fp16)
    (d_ik w_i / max|w|)^T in [-1, 1] and F_HAT (h in the input dtype)."""
    ACC: tl.constexpr = NORM_F.dtype.element_ty  # accumulation dtype: fp32 (fp64 for float64 inputs)
    inv_tau = tl.load(CONSTS)  # 1 / tau and eps in ACC (exact in fp64: float args would be fp32)
    eps = tl.load(CONSTS + 1)
    pid_k = tl.program_id(0)
    pid_o = tl.program_id(1)
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    col_ok = cols < K
    ro = pid_o * BLOCK_DO + tl.arange(0, BLOCK_DO)
    o_ok = ro < D
    npn = tl.load(NORM_P + cols, mask=col_ok, other=1.0)
    b = 1.0 / tl.maximum(npn, eps)
    w_max = tl.load(W_MAX)  # max_i |w_i| (1 if all are 0): keeps w_i h_i / w_max in [-1, 1]
    acc = tl.zeros((BLOCK_K, BLOCK_DO), dtype=ACC)  # sum_i d_ik (w_i / w_max) h_i[slice]
    esum = tl.zeros((BLOCK_K,), dtype=ACC)  # e_k = sum_i w_i d_ik z_ik
    for n0 in range(0, N, BLOCK_M):
        rows = n0 + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        a = 1.0 / tl.maximum(tl.load(NORM_F + rows, mask=row_ok, other=1.0), eps)
        y = tl.load(Y + rows, mask=row_ok, other=-1)
        lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
        w = tl.load(W + rows, mask=row_ok, other=0.0)  # 0 on ignored and padded rows
        zt = _raw_dot_tile(P, F, cols, rows, col_ok, row_ok, D, stride_p, stride_f,
                           BLOCK_K, BLOCK_M, BLOCK_D, ACC, IEEE)  # z^T tile [BLOCK_K, BLOCK_M]
        zt = zt * (b * inv_tau)[:, None] * a[None, :]
        prob = tl.where(row_ok[None, :], tl.exp(tl.minimum(zt - lse[None, :], 0.0)), 0.0)
        d = prob - (cols[:, None] == y[None, :]).to(ACC)  # (softmax - onehot)^T
        esum += tl.sum(d * w[None, :] * zt, axis=1)
        fmask = row_ok[:, None] & o_ok[None, :]
        if SCALED:  # acc += (d a w / w_max)^T f[:, slice]
            f_t = tl.load(F + rows.to(tl.int64)[:, None] * stride_f + ro[None, :], mask=fmask, other=0.0)
            acc = _dot((d * (a * w / w_max)[None, :]).to(f_t.dtype), f_t, acc, ACC, IEEE)
        else:  # acc += (d w / w_max)^T h[:, slice]
            h_t = tl.load(F_HAT + rows.to(tl.int64)[:, None] * D + ro[None, :], mask=fmask, other=0.0)
            acc = _dot((d * (w / w_max)[None, :]).to(h_t.dtype), h_t, acc, ACC, IEEE)
    pmask = col_ok[:, None] & o_ok[None, :]
    off = cols.to(tl.int64)[:, None] * stride_p + ro[None, :]
    p_hat = tl.load(P + off, mask=pmask, other=0.0).to(ACC) * b[:, None]
    dp_hat = acc * (w_max * inv_tau)
    e = tl.where(npn >= eps, esum, 0.0)
    dp = b[:, None] * (dp_hat - e[:, None] * p_hat)
    tl.store(DP + off, dp.to(DP.dtype.element_ty), mask=pmask)


# ----------------------------------------------------------------------------- launch configuration

# Per-kernel tiles. The GPU values come from compiling every kernel for sm_90 with triton.compile
# (ptxas -v, no GPU needed): the largest tiles that keep wgmma and spill at most ~100 bytes
# (bf16/fp16/fp32; 0 for the bf16 forward). Not yet tuned by timing on a GPU. Backward D slices
# of 128 mean each backward kernel recomputes z D/128 times.
_GPU_CONFIG = {
    "fwd": dict(BLOCK_M=64, BLOCK_K=64, BLOCK_D=64, num_warps=8, num_stages=3),
    "df": dict(BLOCK_M=64, BLOCK_K=32, BLOCK_D=32, BLOCK_DO=128, num_warps=8, num_stages=2),
    "dp": dict(BLOCK_M=32, BLOCK_K=64, BLOCK_D=32, BLOCK_DO=128, num_warps=8, num_stages=2),
}
_GPU_CONFIG_FP64 = {  # fp64 (a checking path): CUDA-core dots, smaller tiles
    "fwd": dict(BLOCK_M=32, BLOCK_K=32, BLOCK_D=32, num_warps=4, num_stages=2),
    "df": dict(BLOCK_M=32, BLOCK_K=32, BLOCK_D=32, BLOCK_DO=64, num_warps=4, num_stages=2),
    "dp": dict(BLOCK_M=32, BLOCK_K=32, BLOCK_D=32, BLOCK_DO=64, num_warps=4, num_stages=2),
}
_INTERPRETER_CONFIG = {  # numpy, one program at a time: few, large programs
    "fwd": dict(BLOCK_M=32, BLOCK_K=32, BLOCK_D=32, num_warps=4, num_stages=1),
    "df": dict(BLOCK_M=32, BLOCK_K=32, BLOCK_D=32, BLOCK_DO=64, num_warps=4, num_stages=1),
    "dp": dict(BLOCK_M=32, BLOCK_K=32, BLOCK_D=32, BLOCK_DO=64, num_warps=4, num_stages=1),
}
_ROWS_BLOCK = dict(BLOCK_M=32, BLOCK_D=64)  # norm / scale / finalize kernels (memory bound)

# Test hook: overrides applied on top of the chosen configuration (see override_config()).
_CONFIG_OVERRIDE: dict = {}


def block_config(device: torch.device, n: int, k: int, d: int, dtype: torch.dtype = torch.float32) -> dict:
    """Launch configuration for one call: {"fwd"|"df"|"dp": tiles and warps, "SPLIT_F", "SPLIT_B"}.

    SPLIT_F / SPLIT_B split the K loop of the forward / df kernels over more programs when the
    row blocks alone would leave SMs idle (small N): partials [SPLIT, N] (forward) and
    [SPLIT_B, N, D] (df, kept to SPLIT_B * D < K so it stays smaller than the N x K logits),
    merged in split order. Tiles never exceed the (power-of-two padded, >= 16) problem size.
    ``override_config`` (tests) sets BLOCK_M/BLOCK_K/BLOCK_D/BLOCK_DO for every kernel, and SPLIT_*.
    """
    on_gpu = device.type == "cuda"
    base = (_GPU_CONFIG_FP64 if dtype == torch.float64 else _GPU_CONFIG) if on_gpu else _INTERPRETER_CONFIG
    limits = dict(BLOCK_M=pow2_at_least_16(n), BLOCK_K=pow2_at_least_16(k), BLOCK_D=pow2_at_least_16(d),
                  BLOCK_DO=pow2_at_least_16(d))
    cfg: dict = {}
    for name, tiles in base.items():
        tiles = dict(tiles)
        for key in ("BLOCK_M", "BLOCK_K", "BLOCK_D", "BLOCK_DO"):
            if key in tiles:
                tiles[key] = min(int(_CONFIG_OVERRIDE.get(key, tiles[key])), limits[key])
        cfg[name] = tiles
    sms = torch.cuda.get_device_properties(device).multi_processor_count if on_gpu else 1
    fwd, df = cfg["fwd"], cfg["df"]
    split_f, split_b = _CONFIG_OVERRIDE.get("SPLIT_F"), _CONFIG_OVERRIDE.get("SPLIT_B")
    if split_f is None:  # enough programs to fill the SMs (interpreter: 1)
        split_f = sms // max(1, triton.cdiv(n, fwd["BLOCK_M"])) if on_gpu else 1
    if split_b is None:
        programs = triton.cdiv(n, df["BLOCK_M"]) * triton.cdiv(d, df["BLOCK_DO"])
        split_b = min(sms // max(1, programs), (k - 1) // max(d, 1)) if on_gpu else 1
    cfg["SPLIT_F"] = max(1, min(int(split_f), triton.cdiv(k, fwd["BLOCK_K"]), 64))
    cfg["SPLIT_B"] = max(1, min(int(split_b), triton.cdiv(k, df["BLOCK_K"])))
    return cfg


@contextlib.contextmanager
def override_config(**kw):
    """Force tiles / splits, e.g. ``override_config(BLOCK_M=16, SPLIT_B=3)`` (tests: small tiles
    give several blocks, and ragged tails, on small shapes)."""
    old = dict(_CONFIG_OVERRIDE)
    _CONFIG_OVERRIDE.update(kw)
    try:
        yield
    finally:
        _CONFIG_OVERRIDE.clear()
        _CONFIG_OVERRIDE.update(old)


def _launch_opts(tiles: dict) -> dict:
    return {k: v for k, v in tiles.items() if k.startswith("BLOCK_") or k.startswith("num_")}


def _ieee(dtype: torch.dtype, device: torch.device) -> bool:
    """Exact fp32 dot products unless torch's own fp32 matmuls may use tf32 (then so do we).
    Only bools/ints cross into the launch as constexprs (inductor re-emits them as literals)."""
    return not (dtype == torch.float32 and device.type == "cuda" and torch.get_float32_matmul_precision() != "highest")


def _constants(tau: float, acc: torch.dtype, device) -> torch.Tensor:
    """[1 / tau, eps] in the accumulation dtype, read by the kernels from memory: Python float
    kernel arguments are passed as fp32, which would round them in the float64 path."""
    consts = torch.full((2,), 1.0 / tau, dtype=acc, device=device)
    consts[1] = NORM_EPS
    return consts


def _row_norms(x: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """||x_i|| [rows] in the accumulation dtype."""
    rows, width = x.shape
    out = empty((rows,), acc, x.device)
    if rows > 0:
        wrap_triton(_norm_kernel)[(triton.cdiv(rows, _ROWS_BLOCK["BLOCK_M"]),)](
            x, out, rows, width, x.stride(0), **_ROWS_BLOCK)
    return out


def _normalized(x: torch.Tensor, norm: torch.Tensor, consts: torch.Tensor) -> torch.Tensor:
    """x / max(||x||, eps) in x's dtype, [rows, D] contiguous: the backward's update operand."""
    rows, width = x.shape
    out = empty((rows, width), x.dtype, x.device)
    if rows > 0 and width > 0:
        wrap_triton(_scale_rows_kernel)[(triton.cdiv(rows, _ROWS_BLOCK["BLOCK_M"]),)](
            x, norm, out, consts, rows, width, x.stride(0), **_ROWS_BLOCK)
    return out


def _row_weights(grad: torch.Tensor, valid: torch.Tensor, reduction: str, acc: torch.dtype) -> torch.Tensor:
    """w_i = dLoss/dL_i: grad * valid_i (/ N_valid for "mean"); ignored rows get 0."""
    validf = valid.to(acc)
    grad = grad.to(acc).contiguous()  # "none": an expanded (stride-0) grad is materialised
    if reduction == "mean":
        return validf * (grad / validf.sum().clamp_min(1.0))
    return validf * grad


# ----------------------------------------------------------------------------- torch.library ops


@triton_op("mate::prototype_cross_entropy", mutates_args={})
def _prototype_ce_fwd(features: torch.Tensor, prototypes: torch.Tensor, target: torch.Tensor, tau: float,
                      reduction: str, ignore_index: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (loss, lse [N], ||f|| [N], ||p|| [K]); the last three are saved for the backward."""
    features, prototypes, target = features.contiguous(), prototypes.contiguous(), target.contiguous()
    n, d = features.shape
    k = prototypes.shape[0]
    device = features.device
    acc = acc_dtype(features.dtype)
    cfg = block_config(device, n, k, d, features.dtype)
    consts = _constants(tau, acc, device)
    norm_f = _row_norms(features, acc)
    norm_p = _row_norms(prototypes, acc)
    split = cfg["SPLIT_F"]
    if split == 1:
        lse, zt = empty((n,), acc, device), empty((n,), acc, device)
        lse_part, zt_part = lse, zt
    else:
        lse_part, zt_part = empty((split, n), acc, device), empty((split, n), acc, device)
    if n > 0:
        tiles = cfg["fwd"]
        wrap_triton(_fwd_kernel)[(triton.cdiv(n, tiles["BLOCK_M"]), split)](
            features, prototypes, norm_f, norm_p, target, lse_part, zt_part, n, k, d,
            features.stride(0), prototypes.stride(0), consts, split,
            IEEE=_ieee(features.dtype, device), **_launch_opts(tiles))
    if split > 1:  # merge the K-split partials in a fixed order
        lse, zt = torch.logsumexp(lse_part, dim=0), zt_part.sum(dim=0)
    valid = target != ignore_index
    rows = torch.where(valid, lse - zt, torch.zeros_like(lse))  # L_i = lse_i - z_{i, y_i}
    if reduction == "none":
        loss = rows
    elif reduction == "sum":
        loss = rows.sum()
    else:  # mean over non-ignored rows; all ignored -> 0 (with zero gradient)
        loss = rows.sum() / valid.sum().clamp_min(1).to(acc)
    return loss.to(features.dtype), lse, norm_f, norm_p


@triton_op("mate::prototype_cross_entropy_backward", mutates_args={})
def _prototype_ce_bwd(grad: torch.Tensor, features: torch.Tensor, prototypes: torch.Tensor, target: torch.Tensor,
                      lse: torch.Tensor, norm_f: torch.Tensor, norm_p: torch.Tensor, tau: float, reduction: str,
                      ignore_index: int, need_df: bool, need_dp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(df [N, D], dp [K, D]); a gradient not needed comes back as an empty [0, D] tensor."""
    features, prototypes, target = features.contiguous(), prototypes.contiguous(), target.contiguous()
    n, d = features.shape
    k = prototypes.shape[0]
    device, dtype = features.device, features.dtype
    acc = acc_dtype(dtype)
    cfg = block_config(device, n, k, d, dtype)
    consts = _constants(tau, acc, device)
    w = _row_weights(grad, target != ignore_index, reduction, acc)
    ieee = _ieee(dtype, device)
    # fp16 cannot hold d_ik / ||p_k|| (up to 1e12 for a zero row): it reads normalised copies
    # (input-sized) instead of folding the norms into the left operand.
    scaled = dtype != torch.float16

    df = empty((n if need_df else 0, d), dtype, device)
    if need_df and n > 0 and d > 0:
        tiles, split = cfg["df"], cfg["SPLIT_B"]
        p_hat = prototypes if scaled else _normalized(prototypes, norm_p, consts)  # read-only stand-in
        direct = split == 1
        # partial buffers (unused when direct: any internal tensor stands in, never an input)
        dh_part = df if direct else empty((split, n, d), acc, device)
        c_part = w if direct else empty((split, n), acc, device)
        d_slices = triton.cdiv(d, tiles["BLOCK_DO"])
        wrap_triton(_bwd_df_kernel)[(triton.cdiv(n, tiles["BLOCK_M"]), d_slices, split)](
            features, prototypes, p_hat, norm_f, norm_p, target, lse, w, df, dh_part, c_part, n, k, d,
            features.stride(0), prototypes.stride(0), consts, split, IEEE=ieee, DIRECT=direct, SCALED=scaled,
            **_launch_opts(tiles))
        del p_hat  # free before the dP kernel's copy (fp16)
        if not direct:
            fin = dict(BLOCK_M=_ROWS_BLOCK["BLOCK_M"], BLOCK_DO=tiles["BLOCK_DO"])
            wrap_triton(_df_finalize_kernel)[(triton.cdiv(n, fin["BLOCK_M"]), d_slices)](
                features, norm_f, w, df, dh_part, c_part, n, d, features.stride(0), consts, split, **fin)
        del dh_part, c_part

    dp = empty((k if need_dp else 0, d), dtype, device)
    if need_dp and d > 0:
        tiles = cfg["dp"]
        f_hat = features if scaled else _normalized(features, norm_f, consts)
        w_max = w.abs().amax() if n > 0 else torch.zeros((), dtype=acc, device=device)
        w_max = torch.where(w_max > 0, w_max, torch.ones_like(w_max)).reshape(1)
        grid = (triton.cdiv(k, tiles["BLOCK_K"]), triton.cdiv(d, tiles["BLOCK_DO"]))
        wrap_triton(_bwd_dp_kernel)[grid](
            features, prototypes, f_hat, norm_f, norm_p, target, lse, w, w_max, dp, n, k, d,
            features.stride(0), prototypes.stride(0), consts, IEEE=ieee, SCALED=scaled, **_launch_opts(tiles))
    return df, dp


def _setup_context(ctx, inputs, output):
    features, prototypes, target, tau, reduction, ignore_index = inputs
    _, lse, norm_f, norm_p = output
    ctx.save_for_backward(features, prototypes, target, lse, norm_f, norm_p)
    ctx.tau, ctx.reduction, ctx.ignore_index = tau, reduction, ignore_index
    ctx.mark_non_differentiable(lse, norm_f, norm_p)


def _backward(ctx, grad_loss, _grad_lse, _grad_norm_f, _grad_norm_p):
    features, prototypes, target, lse, norm_f, norm_p = ctx.saved_tensors
    need_df, need_dp = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    df, dp = _prototype_ce_bwd(grad_loss.contiguous(), features, prototypes, target, lse, norm_f, norm_p,
                               ctx.tau, ctx.reduction, ctx.ignore_index, need_df, need_dp)
    return (df if need_df else None), (dp if need_dp else None), None, None, None, None


_prototype_ce_fwd.register_autograd(_backward, setup_context=_setup_context)


def prototype_cross_entropy_triton(features: torch.Tensor, prototypes: torch.Tensor, target: torch.Tensor,
                                   tau: float, reduction: str = "mean", ignore_index: int = -100) -> torch.Tensor:
    """The ``impl="triton"`` entry of :func:`mate.ops.prototype_cross_entropy` (arguments already
    validated there): the loss only; lse and the norms stay saved for the backward."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"prototype_cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    loss, _, _, _ = torch.ops.mate.prototype_cross_entropy(
        features, prototypes, target, float(tau), reduction, int(ignore_index))
    return loss


register_triton_impl("prototype_cross_entropy", prototype_cross_entropy_triton)
