"""MATE's losses as small functions named like the paper (see ``docs/method.md``).

Each function takes features (what :meth:`mate.model.mate_model.MATEModel.forward` returns) and
gives one scalar; :func:`mate_loss` picks the enabled terms of a :class:`MATEConfig` and weighs
them (Eq. 8)::

    L_rec   = |m_i - Decoder(f^m_i)|_1                                   reconstruction_loss
    L_sent  = InfoNCE(f^t, f^m)                                          sentence_loss
    L_self  = CE(cos(f^{m_i}_{w_i}, P_k) / tau over k, target w_i)       self_disentanglement_loss (Eq. 5)
    L_cross = mean_{j in N(i)} |cos(f^{m_i}_{w_i}, f^{m_i}_{w_j})|
                             + |cos(f^{m_i}_{w_i}, f^{m_j}_{w_i})|       cross_disentanglement_loss
    L_align = InfoNCE(f^e_w, f^m_w)                                      alignment_loss (Eq. 6)
    L_all   = L_rec + lambda1 (L_self + L_cross + L_align) + lambda2 L_sent    total_loss (Eq. 8)

InfoNCE is symmetric with temperature tau (0.05 in the paper) on cosines. The hot terms run
through :mod:`mate.ops` (``impl`` picks the eager reference or a fused path). Every loss is
computed in float32 with autocast off, whatever precision the features were computed in.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import ops
from .motion import length_mask

__all__ = [
    "LOSS_NAMES",
    "Losses",
    "reconstruction_loss",
    "sentence_loss",
    "self_disentanglement_loss",
    "cross_negatives",
    "lemma_exclusion",
    "cross_disentanglement_loss",
    "alignment_loss",
    "total_loss",
    "mate_loss",
]

#: The loss terms, in the order the command line and the logs name them.
LOSS_NAMES = ("rec", "sent", "self", "cross", "align")


@dataclass
class Losses:
    """One step's loss: ``total`` (scalar float32 tensor, what backward runs on) and each enabled
    term by name (:data:`LOSS_NAMES`), unweighted."""

    total: torch.Tensor
    terms: dict = field(default_factory=dict)


def reconstruction_loss(motion: torch.Tensor, reconstruction: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """L_rec: L1, averaged over each sample's valid frames and channels, then over the samples.

    motion, reconstruction [B, T, F] (any float dtype); lengths [B] int64. A per-sample mean (every
    sample weighs the same whatever its length) makes the mean over a batch split across ranks --
    DDP's gradient average of the ranks' local means -- exactly the mean over the global batch.
    Computed in float32 (a bfloat16 reconstruction under autocast is upcast first)."""
    mask = length_mask(lengths, motion.shape[1])[..., None]
    error = (reconstruction.float() - motion.float()).abs().masked_fill(~mask, 0.0)
    per_sample = error.sum(dim=(1, 2)) / (lengths.clamp_min(1).to(torch.float32) * motion.shape[-1])
    return per_sample.mean()


def sentence_loss(f_t: torch.Tensor, f_m: torch.Tensor, tau: float = 0.05, impl: str = "reference") -> torch.Tensor:
    """L_sent: symmetric InfoNCE between sentence features f^t [B, D] and motion features f^m
    [B, D] (row i of each is pair i), float32."""
    return ops.info_nce(f_t.float(), f_m.float(), tau=tau, impl=impl)


def self_disentanglement_loss(f_mw: torch.Tensor, prototypes: torch.Tensor, target: torch.Tensor,
                              tau: float = 0.05, impl: str = "reference") -> torch.Tensor:
    """L_self (Eq. 5): mean over i of CE(cos(f^{m_i}_{w_i}, P_k) / tau over the K prototypes,
    target w_i). f_mw [N, D], prototypes [K, D], target [N] int64 (prototype index)."""
    return ops.prototype_cross_entropy(f_mw.float(), prototypes.float(), target, tau=tau, impl=impl)


@torch.no_grad()
def cross_negatives(f_e: torch.Tensor, f_t: torch.Tensor, num_negatives: int,
                    excluded: torch.Tensor | None = None) -> torch.Tensor:
    """N(i) of L_cross: for each word i, the ``num_negatives`` samples j != i whose sentence is
    least similar to it, by cos(f^e_{w_i}, f^t_j). f_e, f_t [B, D]; returns int64 [B, n], n =
    min(num_negatives, B - 1). A selection: no gradient.

    ``excluded`` [B, B] bool (optional): pairs (i, j) ranked after every allowed one, e.g. caption
    j containing w_i's own lemma (:func:`lemma_exclusion`); they are chosen only when a row has
    fewer than n allowed samples (then in the literal rule's order)."""
    n = min(num_negatives, f_e.shape[0] - 1)
    with torch.autocast(f_e.device.type, enabled=False):
        sim = F.normalize(f_e.float(), dim=-1) @ F.normalize(f_t.float(), dim=-1).T
        if excluded is not None:
            if excluded.shape != sim.shape:
                raise ValueError(f"excluded must be [B, B] = {tuple(sim.shape)}, got {tuple(excluded.shape)}")
            sim = torch.where(excluded, sim + 3.0, sim)   # cosines lie in [-1, 1]: after every allowed one
        sim.fill_diagonal_(float("inf"))
        return sim.topk(n, dim=1, largest=False).indices


@torch.no_grad()
def lemma_exclusion(word_target: torch.Tensor, caption_lemmas: torch.Tensor) -> torch.Tensor:
    """[B, B] bool: whether caption j contains sample i's word (its lemma, the prototype index).
    word_target [B] int64; caption_lemmas [B, L] int64, the prototype indices of each caption's
    words padded with -1. Such a j is no negative for w_i: L_cross would push the same word apart
    on two motions that both show it, against L_self (beyond the paper; see ``docs/method.md``)."""
    if caption_lemmas.dim() != 2 or caption_lemmas.shape[0] != word_target.shape[0]:
        raise ValueError(f"caption_lemmas must be [B, L] with B = {word_target.shape[0]}, "
                         f"got {tuple(caption_lemmas.shape)}")
    return (caption_lemmas[None, :, :] == word_target[:, None, None]).any(-1)


def cross_disentanglement_loss(f_mw: torch.Tensor, other_word: torch.Tensor, other_motion: torch.Tensor) -> torch.Tensor:
    """L_cross: mean over (i, j in N(i)) of |cos(f^{m_i}_{w_i}, f^{m_i}_{w_j})| plus the mean of
    |cos(f^{m_i}_{w_i}, f^{m_j}_{w_i})|. f_mw [B, D]; other_word [B, n, D] (word j on motion i),
    other_motion [B, n, D] (word i on motion j)."""
    anchor = f_mw.float()[:, None, :]
    return (F.cosine_similarity(anchor, other_word.float(), dim=-1).abs().mean()
            + F.cosine_similarity(anchor, other_motion.float(), dim=-1).abs().mean())


def alignment_loss(f_e: torch.Tensor, f_mw: torch.Tensor, tau: float = 0.05, impl: str = "reference") -> torch.Tensor:
    """L_align (Eq. 6): symmetric InfoNCE between word features f^e_w = Proj(WE(w)) [B, D] and
    their localised motion features f^{m}_{w} [B, D]."""
    return ops.info_nce(f_e.float(), f_mw.float(), tau=tau, impl=impl)


def total_loss(terms: dict, lambda_word: float = 0.1, lambda_sent: float = 0.1) -> torch.Tensor:
    """L_all (Eq. 8) = L_rec + lambda1 (L_self + L_cross + L_align) + lambda2 L_sent over the terms
    present in ``terms`` (a missing term counts as 0). A float32 scalar."""
    any_term = next(iter(terms.values()), None)
    total = torch.zeros((), dtype=torch.float32, device=any_term.device if any_term is not None else None)
    if "rec" in terms:
        total = total + terms["rec"]
    if "sent" in terms:
        total = total + lambda_sent * terms["sent"]
    word_terms = [terms[k] for k in ("self", "align", "cross") if k in terms]
    if word_terms:
        total = total + lambda_word * sum(word_terms)
    return total


def mate_loss(features, config, impl: str = "reference") -> Losses:
    """Every loss term that ``config`` enables (:class:`mate.model.mate_model.MATEConfig`
    ``use_*``), from ``features`` (:class:`mate.model.mate_model.MATEFeatures`), and their total
    (Eq. 8). Per-sample terms (L_rec, L_self) are means over this process's samples; in-batch
    terms (L_sent, L_align, L_cross) use the global batch the features hold (see
    :mod:`mate.distributed`). Autocast is off: every term is float32."""
    terms: dict[str, torch.Tensor] = {}
    with torch.autocast(features.motion.device.type, enabled=False):
        if config.use_rec:
            terms["rec"] = reconstruction_loss(features.motion, features.reconstruction, features.lengths)
        if config.use_sent:
            terms["sent"] = sentence_loss(features.f_t, features.f_m, config.tau, impl)
        words = features.words
        if words is not None:
            if config.use_self:
                terms["self"] = self_disentanglement_loss(words.f_mw_local, words.prototypes, words.target,
                                                          config.tau, impl)
            if config.use_align:
                terms["align"] = alignment_loss(words.f_e, words.f_mw, config.tau, impl)
            if words.other_word is not None:
                terms["cross"] = cross_disentanglement_loss(words.f_mw, words.other_word, words.other_motion)
        total = total_loss(terms, config.lambda_word, config.lambda_sent)
    return Losses(total, terms)
