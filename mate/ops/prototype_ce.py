"""Prototype cross-entropy (paper, Eq. 5, L_self) and symmetric InfoNCE (Eq. 6, L_align, L_sent).

Cosine logits over prototypes at temperature tau::

    h^ = f / max(||f||, eps),  P^ = P / max(||P||, eps)        (eps = 1e-12, like F.normalize)
    z  = h^ P^T / tau                                           [N, K]
    loss_i = logsumexp_k(z_i) - z_{i, y_i}

InfoNCE is the same loss with the prototypes := the other modality's batch and targets := arange.
The reference materialises the ``[N, K]`` logits; the Triton kernel (``mate.kernels.prototype_ce``)
blocks over K with an online logsumexp and keeps only the N log-sum-exps (docs/method.md,
"Fused forms").
"""
from __future__ import annotations

import math

import torch

from . import _common as C

__all__ = ["NORM_EPS", "REDUCTIONS", "info_nce", "prototype_cross_entropy"]

OP = "prototype_cross_entropy"
REDUCTIONS = ("mean", "sum", "none")  # the ``reduction`` values (the Triton kernel checks the same)
NORM_EPS = 1e-12  # x / max(||x||, eps), like F.normalize; the Triton kernel uses the same eps


def _l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """x / max(||x||_2, eps) along the last dim (a zero row stays zero, with zero gradient)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(NORM_EPS)


def _prototype_ce_reference(features, prototypes, target, tau, reduction, ignore_index):
    """Eager prototype CE. features [N,D], prototypes [K,D], target [N] int64 -> scalar or [N]."""
    out_dtype = features.dtype
    dtype = C.compute_dtype(features.dtype)
    f_hat = _l2_normalize(features.to(dtype))  # h^ [N,D]
    p_hat = _l2_normalize(prototypes.to(dtype))  # P^ [K,D]
    logits = f_hat @ p_hat.T / tau  # z = h^ P^T / tau  [N,K]

    valid = target != ignore_index  # ignored rows contribute 0
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    target_logit = logits.gather(1, safe_target[:, None]).squeeze(1)  # z_{i, y_i}
    loss = torch.logsumexp(logits, dim=-1) - target_logit  # lse(z_i) - z_{i, y_i}
    loss = torch.where(valid, loss, torch.zeros_like(loss))

    if reduction == "none":
        return loss.to(out_dtype)
    if reduction == "sum":
        return loss.sum().to(out_dtype)
    # mean over the non-ignored rows; all ignored -> 0 / 1 = 0 with zero gradient (not NaN)
    return (loss.sum() / valid.sum().clamp_min(1)).to(out_dtype)


def _check_ce_args(op, features, prototypes, target, tau, reduction, ignore_index, validate):
    C.check_tensor(op, "features", features, 2, "[N, D]")
    C.check_tensor(op, "prototypes", prototypes, 2, "[K, D]")
    C.check_floating(op, "features", features)
    C.check_floating(op, "prototypes", prototypes)
    num_rows, width = features.shape
    num_protos = prototypes.shape[0]
    if prototypes.shape[1] != width:
        raise ValueError(
            f"{op}: prototypes must be [K, D] with features' D = {width}, got shape {C.shape_str(prototypes)}"
        )
    if num_protos < 1:
        raise ValueError(f"{op}: prototypes must have K >= 1 rows, got shape {C.shape_str(prototypes)}")
    if prototypes.dtype != features.dtype:
        raise ValueError(
            f"{op}: features and prototypes must share a dtype, got {features.dtype} and {prototypes.dtype}"
        )
    C.check_tensor(op, "target", target, 1, f"[N] = [{num_rows}]")
    if target.shape[0] != num_rows:
        raise ValueError(f"{op}: target must be [N] = [{num_rows}], got shape {C.shape_str(target)}")
    C.check_int64(op, "target", target)
    C.check_same_device(op, features=features, prototypes=prototypes, target=target)
    tau = C.check_real(op, "tau", tau, positive=True)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    C.check_int64_scalar(op, "ignore_index", ignore_index)
    # The logits are cos / tau with |cos| <= 1: 1 / tau must be finite in the compute dtype.
    if not math.isfinite(1.0 / tau) or 1.0 / tau > torch.finfo(C.compute_dtype(features.dtype)).max:
        raise ValueError(f"{op}: tau = {tau} is too small: the logits 1/tau overflow "
                         f"{C.compute_dtype(features.dtype)}")
    if validate and not torch.compiler.is_compiling():
        in_range = (target >= 0) & (target < num_protos)
        bad = (~(in_range | (target == ignore_index))).any()
        C.raise_first_failure(
            op, [(bad, f"target must be in [0, K) = [0, {num_protos}) or == ignore_index ({ignore_index})")]
        )
    return tau


def prototype_cross_entropy(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    target: torch.Tensor,
    tau: float = 0.05,
    reduction: str = "mean",
    ignore_index: int = -100,
    impl: str = "auto",
    *,
    validate: bool = True,
) -> torch.Tensor:
    """Cross-entropy over cosine similarities to prototypes (paper, Eq. 5)::

        z = normalize(features) @ normalize(prototypes)^T / tau,  loss_i = lse(z_i) - z_{i, target_i}

    Args:
        features: ``[N, D]`` float16/bfloat16/float32/float64, not normalised (a zero row is safe:
            normalisation divides by ``max(||f||, 1e-12)`` like ``F.normalize``).
        prototypes: ``[K, D]`` same dtype, not normalised.
        target: ``[N]`` int64, each in ``[0, K)`` or ``== ignore_index``.
        tau: temperature, finite and > 0 (0.05 in the paper).
        reduction: ``"mean"`` (over non-ignored rows; 0 with zero gradient when every row is
            ignored, rather than NaN), ``"sum"`` or ``"none"`` (``[N]``, ignored rows are 0).
        ignore_index: target value whose rows contribute nothing.
        impl: ``"auto" | "reference" | "compiled" | "triton"`` (see :mod:`mate.ops`).
        validate: check the target range (one host sync); shape/dtype checks always run.
            Skipped automatically while ``torch.compile`` traces the caller.

    Returns:
        A scalar (``"mean"``/``"sum"``) or ``[N]`` (``"none"``) in ``features``' dtype (half
        inputs are computed in float32).
    """
    tau = _check_ce_args(OP, features, prototypes, target, tau, reduction, ignore_index, validate)
    return _dispatch_ce(features, prototypes, target, tau, reduction, int(ignore_index), impl)


def _dispatch_ce(features, prototypes, target, tau, reduction, ignore_index, impl):
    chosen = C.resolve_impl(OP, impl, features.device)
    args = (features, prototypes, target, tau, reduction, ignore_index)
    if chosen == "triton":
        return C.triton_impl(OP)(*args)  # kernel signature: validated args, floats resolved
    if chosen == "reference":
        return _prototype_ce_reference(*args)
    key = (features.device.type, features.dtype, reduction)
    return C.run_compiled(OP, _prototype_ce_reference, key, impl, *args)


def info_nce(
    a: torch.Tensor, b: torch.Tensor, tau: float = 0.05, impl: str = "auto", *, validate: bool = True
) -> torch.Tensor:
    """Symmetric InfoNCE between paired batches (paper, Eq. 6; L_align and L_sent)::

        0.5 * (CE(cos(a_i, b_j) / tau, target i) + CE(cos(b_i, a_j) / tau, target i))

    each direction being :func:`prototype_cross_entropy` with the other batch as prototypes and
    targets ``arange(N)`` (mean reduction).

    Args:
        a, b: ``[N, D]`` floating, same shape and dtype, row ``i`` of ``a`` paired with row ``i``
            of ``b``; not normalised. ``N >= 1``.
        tau: temperature, finite and > 0.
        impl, validate: as in :func:`prototype_cross_entropy`.

    Returns:
        A scalar in ``a``'s dtype.
    """
    op = "info_nce"
    C.check_tensor(op, "a", a, 2, "[N, D]")
    C.check_tensor(op, "b", b, 2, "[N, D]")
    if b.shape != a.shape:
        raise ValueError(f"{op}: b must have a's shape {C.shape_str(a)}, got shape {C.shape_str(b)}")
    if a.shape[0] < 1:
        raise ValueError(f"{op}: a and b must have N >= 1 rows, got shape {C.shape_str(a)}")
    C.check_floating(op, "a", a)
    C.check_floating(op, "b", b)
    if b.dtype != a.dtype:
        raise ValueError(f"{op}: a and b must share a dtype, got {a.dtype} and {b.dtype}")
    C.check_same_device(op, a=a, b=b)
    target = torch.arange(a.shape[0], device=a.device)  # row i of a matches row i of b
    tau = _check_ce_args(op, a, b, target, tau, "mean", -100, validate=False)  # targets are in range
    a_to_b = _dispatch_ce(a, b, target, tau, "mean", -100, impl)
    b_to_a = _dispatch_ce(b, a, target, tau, "mean", -100, impl)
    return 0.5 * (a_to_b + b_to_a)
