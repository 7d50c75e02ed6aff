"""The MATE model (paper, Sec. 3): motion encoder/decoder and word localisation; its forward
computes the features the losses (:mod:`mate.model.losses`) read.

Per batch of triplets (t_i, m_i, w_i) -- caption, motion, one sampled word of the caption:

    F^m_i, f^m_i = MotionEncoder(m_i)                      frame features, sequence feature
    f^t_i        = SentProj(TextEncoder(t_i))              sentence feature
    f^e_{w_i}    = Proj(WE(w_i))                           word feature (mean over its tokens)
    f^{m_i}_{w_i} = MultiHead(Q = f^e_{w_i}, K = (1 + lam prior) . F^m_i, V = F^m_i)   (Eqs. 2-4)

The losses of these features are in :mod:`mate.model.losses` (the equations: ``docs/method.md``).

Only the text encoder's word-embedding table learns on the text side (the rest of the encoder is
frozen but differentiable); everything else that an enabled loss reaches learns. Parameters that
no enabled loss reaches (stage 0: Proj, the word attention and the prototypes) get
``requires_grad=False`` (:meth:`MATEModel.freeze_unreached`), so that DDP needs no
``find_unused_parameters``.

**Several processes** (``mate.distributed``): with ``model.batch_gather`` set to a
:class:`mate.distributed.BatchGather`, each rank holds B/N samples and the losses are those of the
global batch: L_sent and L_align run on gathered features; for L_cross the negatives N(i) are
chosen over the global batch, every rank computes the word queries that read *its* motions (the
word features are gathered first) and the outputs are gathered back into the single-process
order; L_rec and L_self are per-sample means of the local samples (DDP's average makes them global
means). With the gather's summing backward and DDP's averaging, each parameter gets exactly the
single-process gradient.

**Mixed precision**: under ``torch.autocast`` the encoders and the word attention run in the
autocast dtype; every loss is computed in float32 with autocast off.
"""
from __future__ import annotations

import math

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..ops import PRIOR_VARIANTS
from ..distributed import answer_on_owner_ranks
from .losses import cross_negatives, lemma_exclusion, mate_loss
from .motion import MotionDecoder, MotionEncoder

#: How L_cross picks N(i): ``literal`` (the paper: the lowest cos(Proj(WE(w_i)), f^t_j)) or
#: ``exclude_lemma`` (the same, among captions that do not contain w_i's lemma).
CROSS_NEGATIVE_RULES = ("literal", "exclude_lemma")

__all__ = ["CROSS_NEGATIVE_RULES", "MATEConfig", "MATEFeatures", "MATEModel", "WordFeatures", "WordQueryAttention"]



@dataclass
class MATEConfig:
    """Model and loss hyper-parameters. Defaults are the paper's."""

    d_model: int = 512                 # D: motion features, prototypes, Proj
    motion_layers: int = 6
    motion_heads: int = 4
    motion_ff: int = 1024
    motion_dropout: float = 0.1
    attention_heads: int = 8           # word-query attention
    attention_dropout: float = 0.1     # on the attention weights
    prior_lambda: float = 0.1          # lambda in K = (1 + lambda prior) . F^m
    prior_variant: str = "gaussian"    # none | binary | gaussian_in_segment | gaussian
    tau: float = 0.05                  # every contrastive term
    lambda_word: float = 0.1           # lambda1
    lambda_sent: float = 0.1           # lambda2
    num_negatives: int = 8             # |N(i)| for L_cross
    cross_negatives: str = "literal"   # literal: the paper's rule; exclude_lemma: no caption holding w_i
    use_rec: bool = True
    use_sent: bool = True
    use_self: bool = True
    use_cross: bool = True
    use_align: bool = True
    max_len: int = 200

    def __post_init__(self):
        if self.prior_variant not in PRIOR_VARIANTS:
            raise ValueError(f"prior_variant must be one of {PRIOR_VARIANTS}, got {self.prior_variant!r}")
        for name in ("d_model", "motion_layers", "motion_heads", "motion_ff", "attention_heads", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.num_negatives, bool) or not isinstance(self.num_negatives, int) or self.num_negatives < 0:
            raise ValueError(f"num_negatives must be an integer >= 0, got {self.num_negatives!r}")
        if self.cross_negatives not in CROSS_NEGATIVE_RULES:
            raise ValueError(f"cross_negatives must be one of {CROSS_NEGATIVE_RULES}, got {self.cross_negatives!r}")
        if self.d_model % self.attention_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by attention_heads={self.attention_heads}")
        if self.d_model % self.motion_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by motion_heads={self.motion_heads}")
        # `not (x > 0)` rather than `x <= 0`: NaN fails every comparison and must be rejected too.
        if not (self.tau > 0 and math.isfinite(self.tau)):
            raise ValueError(f"tau must be a finite number > 0, got {self.tau}")
        for name in ("prior_lambda", "lambda_word", "lambda_sent"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("motion_dropout", "attention_dropout"):
            value = getattr(self, name)
            if not (0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value}")

    @property
    def uses_word_losses(self) -> bool:
        return self.use_self or self.use_cross or self.use_align

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WordFeatures:
    """What the word losses read (global batch B, this rank's b samples; D = d_model, float32):
    ``f_e`` [B, D] word features Proj(WE(w)); ``f_mw`` [B, D] each word localised in its own
    motion, f^{m_i}_{w_i}, and ``f_mw_local`` [b, D] this rank's rows of it; ``target`` [b] int64
    prototype indices; ``prototypes`` [K, D]; for L_cross ``negatives`` [B, n] int64 (N(i), indices
    into the global batch), ``other_word`` [B, n, D] (word j in N(i) on motion i) and
    ``other_motion`` [B, n, D] (word i on motion j), else None."""

    f_e: torch.Tensor
    f_mw: torch.Tensor
    f_mw_local: torch.Tensor
    target: torch.Tensor
    prototypes: torch.Tensor
    negatives: torch.Tensor | None = None
    other_word: torch.Tensor | None = None
    other_motion: torch.Tensor | None = None


@dataclass
class MATEFeatures:
    """:meth:`MATEModel.forward`'s output: what :func:`mate.model.losses.mate_loss` needs.
    ``motion`` [b, T, F], ``lengths`` [b] (this rank's batch); ``reconstruction`` [b, T, F]
    (L_rec); ``f_t`` [B, D] sentence and ``f_m`` [B, D] motion features of the global batch
    (L_sent; ``f_t`` also for L_cross's negatives); ``words`` (the word losses). A field is None
    when no enabled loss needs it."""

    motion: torch.Tensor
    lengths: torch.Tensor
    reconstruction: torch.Tensor | None = None
    f_t: torch.Tensor | None = None
    f_m: torch.Tensor | None = None
    words: WordFeatures | None = None


class WordQueryAttention(nn.Module):
    """8-head attention of word queries over motion frames with the segment prior (Eqs. 2-4).

    Keys are projected once per motion without bias (the prior is a per-frame scalar, so scaling
    F^m before W_k equals scaling F^m W_k after it; the key bias adds a per-query constant that
    cancels in the softmax), which is what :func:`mate.ops.gaussian_word_attention` computes.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, d_model // num_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def project_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """F^m [B, T, D] -> k, v [B, T, H, d], once per motion."""
        B, T, _ = frames.shape
        k = self.k_proj(frames).view(B, T, self.num_heads, self.head_dim)
        v = self.v_proj(frames).view(B, T, self.num_heads, self.head_dim)
        return k, v

    def forward(self, queries: torch.Tensor, k: torch.Tensor, v: torch.Tensor, motion_idx: torch.Tensor,
                center: torch.Tensor, sigma: torch.Tensor, lengths: torch.Tensor, lam: float,
                prior: torch.Tensor | None = None, impl: str = "auto") -> torch.Tensor:
        """queries [Q, D] word features; k, v from :meth:`project_frames`; motion_idx [Q] int64;
        center, sigma [Q] frames (sigma <= 0: no prior); lengths [B]; prior: optional [Q, T]
        (ablation variants). Returns f^m_w [Q, D]."""
        Q = queries.shape[0]
        q = self.q_proj(queries).view(Q, self.num_heads, self.head_dim)
        dropout_p = self.dropout if self.training else 0.0
        # A per-call seed from the global RNG (reproducible under torch.manual_seed); inside a
        # torch.compile'd caller no torch.Generator can be made: the op draws from the global RNG.
        seed = None
        if dropout_p > 0 and not torch.compiler.is_compiling():
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        out = ops.gaussian_word_attention(q, k, v, motion_idx, center, sigma, lengths, lam,
                                          dropout_p=dropout_p, seed=seed, impl=impl, prior=prior)
        return self.out_proj(out.reshape(Q, -1))


class MATEModel(nn.Module):
    """Text encoder (only its word table learns) + motion encoder/decoder + word localisation +
    prototypes. ``impl`` selects the ops' implementation ("reference" = eager, "auto"/"triton" =
    fused), so ``--fused`` swaps kernels without touching the model."""

    def __init__(self, text_encoder, feature_dim: int, num_prototypes: int, config: MATEConfig | None = None,
                 impl: str = "reference"):
        super().__init__()
        self.config = config = config or MATEConfig()
        self.impl = impl
        D = config.d_model
        self.text_encoder = text_encoder
        self.sentence_proj = nn.Linear(text_encoder.output_dim, D)
        self.word_proj = nn.Linear(text_encoder.embedding_dim, D)  # Proj
        motion_kw = dict(d_model=D, num_layers=config.motion_layers, num_heads=config.motion_heads,
                         ff_dim=config.motion_ff, dropout=config.motion_dropout, max_len=config.max_len)
        self.motion_encoder = MotionEncoder(feature_dim, **motion_kw)
        self.motion_decoder = MotionDecoder(feature_dim, **motion_kw)
        self.word_attention = WordQueryAttention(D, config.attention_heads, config.attention_dropout)
        self.prototypes = nn.Parameter(torch.randn(max(1, num_prototypes), D) * 0.02)
        # None: one process. A mate.distributed.BatchGather: the losses see the global batch.
        self.batch_gather = None
        self.frozen_unreached = self.freeze_unreached()

    def freeze_unreached(self) -> list[str]:
        """``requires_grad=False`` on the parameters no enabled loss reaches (they would get no
        gradient: DDP then needs no ``find_unused_parameters``, and AdamW skipped them anyway).
        Returns the names of the frozen modules."""
        cfg = self.config
        word = cfg.uses_word_losses
        unreached = {
            "word_proj": not word,
            "word_attention": not word,
            "prototypes": not cfg.use_self,
            "sentence_proj": not cfg.use_sent,     # L_cross reads f^t only to pick negatives
            "motion_decoder": not cfg.use_rec,
            "motion_encoder": not (cfg.use_rec or cfg.use_sent or word),
            "text_encoder.word_embeddings": not (cfg.use_sent or word),
        }
        frozen = []
        for name, off in unreached.items():
            if not off:
                continue
            target = self.text_encoder.word_embeddings if name == "text_encoder.word_embeddings" else getattr(self, name)
            params = [target] if isinstance(target, nn.Parameter) else list(target.parameters())
            for p in params:
                p.requires_grad_(False)
            frozen.append(name)
        return frozen

    # ----------------------------------------------------------------------------------- set-up
    @torch.no_grad()
    def init_prototypes(self, vocab_token_ids: Sequence[Sequence[int]], batch: int = 4096) -> None:
        """P_k <- Proj(WE(word_k)) (the word's embedding itself when its width is already D)."""
        if len(vocab_token_ids) != self.prototypes.shape[0]:
            raise ValueError(f"{len(vocab_token_ids)} vocabulary words for {self.prototypes.shape[0]} prototypes")
        for start in range(0, len(vocab_token_ids), batch):
            emb = self.text_encoder.embed_words(vocab_token_ids[start:start + batch])
            if emb.shape[-1] != self.config.d_model:
                emb = self.word_proj(emb)
            self.prototypes[start:start + emb.shape[0]] = emb.to(self.prototypes.dtype)

    def parameter_groups(self, lr_word_embeddings: float, lr_rest: float, weight_decay: float = 0.01) -> list[dict]:
        """AdamW groups: the word-embedding table at its own lr with no weight decay (decay would
        move rows the batch never touched), everything else that learns at ``lr_rest``."""
        table = self.text_encoder.word_embeddings.weight
        rest = [p for n, p in self.named_parameters() if p.requires_grad and p is not table]
        return [
            {"params": [table], "lr": lr_word_embeddings, "weight_decay": 0.0, "name": "word_embeddings"},
            {"params": rest, "lr": lr_rest, "weight_decay": weight_decay, "name": "rest"},
        ]

    # -------------------------------------------------------------------------------- features
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence features f^t [B, D]."""
        return self.sentence_proj(self.text_encoder(input_ids, attention_mask))

    def encode_words(self, word_token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Word features f^e_w = Proj(WE(w)) [W, D] (multi-token words: mean of their tokens)."""
        return self.word_proj(self.text_encoder.embed_words(word_token_ids))

    def _batch_word_features(self, batch: dict) -> torch.Tensor:
        """f^e_w of a batch: from the collated ``word_flat_ids``/``word_offsets`` tensors when
        present (no Python lists: torch.compile traces it without specialising on the ids), else
        from ``word_token_ids``. Both are ``embedding_bag(mode="mean")`` of WE's rows."""
        if "word_flat_ids" in batch:
            table = self.text_encoder.word_embeddings.weight
            emb = F.embedding_bag(batch["word_flat_ids"].to(table.device), table,
                                  batch["word_offsets"].to(table.device), mode="mean")
            return self.word_proj(emb)
        return self.encode_words(batch["word_token_ids"])

    def encode_motion(self, motion: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(F^m [B, T, D], f^m [B, D])."""
        return self.motion_encoder(motion, lengths)

    def localise_words(self, word_features, frames, lengths, motion_idx, center, sigma) -> torch.Tensor:
        """f^{m}_{w} [Q, D]: word features [Q, D] attending to frames [B, T, D] of motion_idx [Q]."""
        k, v = self.word_attention.project_frames(frames)
        return self._attend(word_features, k, v, motion_idx, center, sigma, lengths)

    def _attend(self, queries, k, v, motion_idx, center, sigma, lengths):
        cfg = self.config
        prior, lam = None, cfg.prior_lambda
        if cfg.prior_variant == "none":
            lam = 0.0
        elif cfg.prior_variant != "gaussian":
            prior = ops.prior_weights(center, sigma, k.shape[1], cfg.prior_variant).to(k.dtype)
        return self.word_attention(queries, k, v, motion_idx, center, sigma, lengths, lam, prior=prior, impl=self.impl)

    # ------------------------------------------------------------------------------- the step
    def forward(self, batch: dict) -> "MATEFeatures":
        """The features one training step's losses need (:func:`mate.model.losses.mate_loss`
        turns them into the losses; ``model.loss(batch)`` does both).

        batch: ``motion`` [B, T, F] float32, ``lengths`` [B] int64, ``input_ids``/``attention_mask``
        [B, L] (the captions), and for the word losses ``word_token_ids`` (list of B token-id
        lists; or the tensors ``word_flat_ids`` [sum of lengths] and ``word_offsets`` [B]),
        ``word_target`` [B] int64 (prototype index), ``segment_start``/``segment_end`` [B]
        frames of the word's sub-text clip.

        With ``batch_gather`` set (several processes) B is this rank's share and the in-batch
        features are those of the global batch (module docstring)."""
        cfg = self.config
        gather = self.batch_gather if self.batch_gather is not None and self.batch_gather.enabled else None
        motion, lengths = batch["motion"], batch["lengths"]
        frames, f_m = self.encode_motion(motion, lengths)
        out = MATEFeatures(motion=motion, lengths=lengths)
        if cfg.use_rec:
            out.reconstruction = self.motion_decoder(f_m, lengths, motion.shape[1])
        if cfg.use_sent or cfg.use_cross:
            # L_cross only ranks sentences to pick negatives: no graph unless L_sent needs one.
            with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.use_sent):
                f_t = self.encode_text(batch["input_ids"], batch["attention_mask"]).float()
            out.f_t = f_t if gather is None else gather(f_t)
        if cfg.use_sent:
            out.f_m = f_m.float() if gather is None else gather(f_m.float())
        if cfg.uses_word_losses:
            out.words = self.word_features(batch, frames, lengths, out.f_t)
        return out

    def loss(self, batch: dict):
        """:func:`mate.model.losses.mate_loss` of this model's features of ``batch``."""
        return mate_loss(self(batch), self.config, self.impl)

    def word_features(self, batch: dict, frames: torch.Tensor, lengths: torch.Tensor,
                      f_t: torch.Tensor | None) -> "WordFeatures":
        """f^e_w, f^{m}_{w} and, for L_cross, the queries of the negatives. ``frames``/``lengths``
        are this rank's motions; ``f_t`` the (global) sentence features that pick the negatives."""
        cfg = self.config
        gather = self.batch_gather if self.batch_gather is not None and self.batch_gather.enabled else None
        b = frames.shape[0]
        device = frames.device
        f_e_local = self._batch_word_features(batch)                        # f^e_w [b, D]
        start = batch["segment_start"].to(device=device, dtype=torch.float32)
        end = batch["segment_end"].to(device=device, dtype=torch.float32)
        center, sigma = (start + end) / 2, (end - start) / 2
        if gather is not None:
            f_e = gather(f_e_local)                                           # [B, D], global
            center, sigma = gather.no_grad(center), gather.no_grad(sigma)
            offset = gather.rank * b
        else:
            f_e, offset = f_e_local, 0
        B = f_e.shape[0]
        arange = torch.arange(B, device=device)
        # The queries of the global batch, as (word, motion, prior): own, then the cross ones.
        word_idx, motion_idx, centers, sigmas = [arange], [arange], [center], [sigma]
        num_neg = min(cfg.num_negatives, B - 1) if cfg.use_cross else 0
        if num_neg > 0:
            excluded = None
            if cfg.cross_negatives == "exclude_lemma":
                if "caption_lemmas" not in batch:
                    raise ValueError("cross_negatives='exclude_lemma' needs the batch's caption_lemmas "
                                     "(mate.train.batches.Collator adds them)")
                target, lemmas = batch["word_target"].to(device), batch["caption_lemmas"].to(device)
                if gather is not None:
                    target, lemmas = gather.no_grad(target), gather.no_grad(lemmas)
                excluded = lemma_exclusion(target, lemmas)
            chosen = cross_negatives(f_e, f_t, num_neg, excluded)                # N(i) [B, n]
            negatives = chosen.reshape(-1)
            no_prior = torch.zeros(B * num_neg, device=device)
            # f^{m_i}_{w_j}: word j on motion i; f^{m_j}_{w_i}: word i on motion j; no prior
            # (a cross query has no segment in the queried motion).
            word_idx += [negatives, arange.repeat_interleave(num_neg)]
            motion_idx += [arange.repeat_interleave(num_neg), negatives]
            centers += [no_prior, no_prior]
            sigmas += [no_prior, no_prior]
        word_idx, motion_idx = torch.cat(word_idx), torch.cat(motion_idx)
        centers, sigmas = torch.cat(centers), torch.cat(sigmas)
        k, v = self.word_attention.project_frames(frames)
        if gather is None:
            out = self._attend(f_e[word_idx], k, v, motion_idx, centers, sigmas, lengths)
        else:  # each rank answers the queries that read its own motions
            out = answer_on_owner_ranks(
                gather, motion_idx, b,
                lambda mine: self._attend(f_e[word_idx[mine]], k, v, motion_idx[mine] - offset, centers[mine],
                                          sigmas[mine], lengths))
        with torch.autocast(device.type, enabled=False):
            out = out.float()
        f_mw = out[:B]                                                        # f^{m_i}_{w_i}, global
        words = WordFeatures(f_e=f_e, f_mw=f_mw, f_mw_local=f_mw[offset:offset + b],
                             target=batch["word_target"].to(device), prototypes=self.prototypes)
        if num_neg > 0:
            words.negatives = chosen
            words.other_word = out[B:B + B * num_neg].view(B, num_neg, -1)
            words.other_motion = out[B + B * num_neg:].view(B, num_neg, -1)
        return words
