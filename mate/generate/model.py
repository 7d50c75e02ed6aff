"""Owns the generator's denoiser: an MDM-style transformer over motion frames that predicts the
clean motion x0 from a noisy one, a timestep and a frozen text encoder's features, and its
classifier-free guidance.

Inputs (B motions of up to T frames, F features a frame, in the data's normalisation):

* ``x_t`` float32 [B, T, F], ``t`` int64 [B] in [0, diffusion steps), ``mask`` bool [B, T]
  (True on real frames);
* the text condition (:class:`TextCondition`): the encoder's pooled sentence feature
  ``pooled`` float32 [B, E] (what MDM and MoMask read) and, for the cross-attention variant
  (MMM-style, ``DenoiserConfig.cross_attention``), its token features ``tokens`` float32
  [B, L, W] with ``token_mask`` bool [B, L].

The sequence is [condition token, frame_1 .. frame_T]: the condition token is the timestep
embedding (sinusoid -> MLP) plus a linear projection of the pooled feature, as in MDM; the frames
are a linear projection of x_t. Sinusoidal positions are added, a transformer encoder (or, with
cross-attention, decoder layers whose memory is the projected token features) runs with the
padded frames masked out, and a linear layer maps each frame back to F features.

Classifier-free guidance: ``drop`` bool [B] replaces a sample's condition with learned null
embeddings (the pooled projection by ``null_pooled``, the token memory by the single learned
``null_token``); training drops 10 % of samples (``DenoiserConfig.cond_drop_prob``, MDM's
``cond_mask_prob``). :meth:`MotionDenoiser.guided` returns x0_uncond + s (x0_cond - x0_uncond).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from .config import dataclass_from_dict

__all__ = ["DenoiserConfig", "TextCondition", "MotionDenoiser", "timestep_embedding"]


@dataclass(frozen=True)
class DenoiserConfig:
    """The denoiser's sizes. ``feature_dim`` F (263 HumanML3D, 251 KIT-ML, any width),
    ``text_dim`` E (the pooled feature), ``token_dim`` W (token features; used only with
    ``cross_attention``), ``max_frames`` (the longest motion it accepts)."""

    feature_dim: int
    text_dim: int
    token_dim: int = 0
    max_frames: int = 196
    width: int = 512
    layers: int = 8
    heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    cross_attention: bool = False
    cond_drop_prob: float = 0.1

    def __post_init__(self):
        for name in ("feature_dim", "text_dim", "max_frames", "width", "layers", "heads", "ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DenoiserConfig.{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"DenoiserConfig.width ({self.width}) must be divisible by heads ({self.heads})")
        if self.cross_attention and (not isinstance(self.token_dim, int) or self.token_dim < 1):
            raise ValueError("DenoiserConfig.cross_attention needs token_dim >= 1 (the token feature width)")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"dropout and cond_drop_prob must lie in [0, 1), got {self.dropout}, {self.cond_drop_prob}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DenoiserConfig":
        return dataclass_from_dict(cls, data, "denoiser")


class TextCondition(NamedTuple):
    """One batch's text condition: ``pooled`` float32 [B, E]; ``tokens`` float32 [B, L, W] and
    ``token_mask`` bool [B, L] (None unless the denoiser cross-attends)."""

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None

    def to(self, device) -> "TextCondition":
        return TextCondition(*(None if x is None else x.to(device) for x in self))

    def repeat(self, times: int) -> "TextCondition":
        """The batch stacked ``times`` times along B."""
        return TextCondition(*(None if x is None else torch.cat([x] * times) for x in self))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (integer or real) timesteps ``t`` [B]: float32 [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim - 2 * half))


class MotionDenoiser(nn.Module):
    """The x0-predicting transformer of the module docstring."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        c = config
        self.input_proj = nn.Linear(c.feature_dim, c.width)
        self.time_mlp = nn.Sequential(nn.Linear(c.width, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.pooled_proj = nn.Linear(c.text_dim, c.width)
        self.null_pooled = nn.Parameter(torch.zeros(c.width))
        self.register_buffer("positions", timestep_embedding(torch.arange(c.max_frames + 1), c.width), persistent=False)
        if c.cross_attention:
            self.token_proj = nn.Linear(c.token_dim, c.width)
            self.null_token = nn.Parameter(torch.randn(c.width) * 0.02)
            layer = nn.TransformerDecoderLayer(c.width, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True)
            self.transformer = nn.TransformerDecoder(layer, c.layers)
        else:
            layer = nn.TransformerEncoderLayer(c.width, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True)
            self.transformer = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.output_proj = nn.Linear(c.width, c.feature_dim)

    def _check(self, x_t, t, mask, cond: TextCondition, drop) -> None:
        c = self.config
        if not isinstance(x_t, torch.Tensor) or x_t.ndim != 3 or x_t.shape[-1] != c.feature_dim:
            raise ValueError(f"x_t must be [B, T, {c.feature_dim}], got {tuple(getattr(x_t, 'shape', ()))}")
        B, T, _ = x_t.shape
        if T > c.max_frames:
            raise ValueError(f"{T} frames is longer than the model's maximum of {c.max_frames}")
        if t.shape != (B,):
            raise ValueError(f"t must be [B={B}], got {tuple(t.shape)}")
        if mask.shape != (B, T) or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool [B={B}, T={T}], got {mask.dtype} {tuple(mask.shape)}")
        if cond.pooled.shape != (B, c.text_dim):
            raise ValueError(f"the pooled text feature must be [B={B}, E={c.text_dim}], got {tuple(cond.pooled.shape)} "
                             f"(an encoder other than the one this model was trained with?)")
        if c.cross_attention:
            if cond.tokens is None or cond.token_mask is None:
                raise ValueError("this denoiser cross-attends over token features: pass tokens and token_mask")
            if cond.tokens.ndim != 3 or cond.tokens.shape[0] != B or cond.tokens.shape[2] != c.token_dim \
                    or cond.token_mask.shape != cond.tokens.shape[:2]:
                raise ValueError(f"tokens must be [B={B}, L, W={c.token_dim}] with token_mask [B, L], got "
                                 f"{tuple(cond.tokens.shape)} and {tuple(cond.token_mask.shape)}")
        if drop is not None and drop.shape != (B,):
            raise ValueError(f"drop must be bool [B={B}], got {tuple(drop.shape)}")

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, cond: TextCondition,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """x0 prediction float32 [B, T, F] (zero on padded frames). ``drop`` bool [B]: use the
        null condition for these samples (None: keep every condition)."""
        self._check(x_t, t, mask, cond, drop)
        B, T, _ = x_t.shape
        pooled = self.pooled_proj(cond.pooled)
        if drop is not None:
            pooled = torch.where(drop[:, None], self.null_pooled.to(pooled.dtype).expand_as(pooled), pooled)
        token = self.time_mlp(timestep_embedding(t, self.config.width)) + pooled
        h = torch.cat([token[:, None], self.input_proj(x_t)], dim=1) + self.positions[: T + 1].to(x_t.dtype)
        padding = torch.cat([mask.new_zeros(B, 1), ~mask], dim=1)  # True = ignore
        if self.config.cross_attention:
            memory, memory_padding = self._memory(cond, drop)
            h = self.transformer(h, memory, tgt_key_padding_mask=padding, memory_key_padding_mask=memory_padding)
        else:
            h = self.transformer(h, src_key_padding_mask=padding)
        out = self.output_proj(h[:, 1:])
        return out * mask[..., None].to(out.dtype)

    def _memory(self, cond: TextCondition, drop: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """[null token, projected tokens] and their padding mask: a kept sample reads its tokens
        only, a dropped one the null token only."""
        tokens = self.token_proj(cond.tokens)
        B = tokens.shape[0]
        dropped = drop if drop is not None else torch.zeros(B, dtype=torch.bool, device=tokens.device)
        memory = torch.cat([self.null_token.to(tokens.dtype).expand(B, 1, -1), tokens], dim=1)
        read = torch.cat([dropped[:, None], cond.token_mask.bool() & ~dropped[:, None]], dim=1)
        return memory, ~read

    def guided(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, cond: TextCondition,
               scale: float) -> torch.Tensor:
        """Classifier-free guidance: x0_uncond + scale (x0_cond - x0_uncond), float32 [B, T, F]
        (one forward pass over the doubled batch; scale 1 is the conditional prediction alone)."""
        B = x_t.shape[0]
        if float(scale) == 1.0:
            return self(x_t, t, mask, cond)
        drop = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(x_t.device)
        both = self(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([mask, mask]), cond.repeat(2), drop)
        x_cond, x_uncond = both[:B], both[B:]
        return x_uncond + float(scale) * (x_cond - x_uncond)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict[str, Any]:
        return {"parameters": self.parameter_count(), **self.config.to_dict()}
