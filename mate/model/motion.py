"""TEMOS/ACTOR-style motion encoder and decoder (the motion side of MATE).

The encoder maps a padded motion [B, T, F] to per-frame features F^m [B, T, D] (the keys and
values of the word-query attention, Eqs. 2-4) and one sequence feature f^m [B, D] (read from a
learned token, as in ACTOR/TEMOS/TMR, deterministic: no VAE). The decoder reconstructs the motion
from f^m alone (L_rec, an L1 loss on the valid frames), which keeps f^m a summary of the whole
movement.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MotionDecoder", "MotionEncoder", "sinusoidal_positions"]


def sinusoidal_positions(num_positions: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The Transformer's fixed positions: PE[t, 2i] = sin(t / 10000^(2i/D)), PE[t, 2i+1] = cos(...).
    Returns [num_positions, dim]."""
    position = torch.arange(num_positions, device=device, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num_positions, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return pe.to(dtype)


def _check_motion(motion: torch.Tensor, lengths: torch.Tensor, feature_dim: int) -> None:
    if motion.ndim != 3 or motion.shape[-1] != feature_dim:
        raise ValueError(f"motion must be [B, T, {feature_dim}], got {list(motion.shape)}")
    if lengths.ndim != 1 or lengths.shape[0] != motion.shape[0]:
        raise ValueError(f"lengths must be [B={motion.shape[0]}], got {list(lengths.shape)}")


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] int64 -> bool [B, max_len], True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class MotionEncoder(nn.Module):
    """Motion [B, T, F] (normalised features, zero-padded) and lengths [B] int64 ->
    (frame features F^m [B, T, D], sequence feature f^m [B, D]), float32.

    Linear(F -> D), a learned summary token prepended, sinusoidal positions, a Transformer encoder
    (``num_layers`` layers, ``num_heads`` heads, GELU, pre-norm) with padding masked.
    """

    def __init__(self, feature_dim: int, d_model: int = 512, num_layers: int = 6, num_heads: int = 4,
                 ff_dim: int = 1024, dropout: float = 0.1, max_len: int = 512):
        super().__init__()
        self.feature_dim, self.d_model, self.max_len = feature_dim, d_model, max_len
        self.input_proj = nn.Linear(feature_dim, d_model)
        self.summary_token = nn.Parameter(torch.randn(d_model) * 0.02)
        self.register_buffer("positions", sinusoidal_positions(max_len + 1, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, ff_dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, motion: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_motion(motion, lengths, self.feature_dim)
        B, T, _ = motion.shape
        if T > self.max_len:
            raise ValueError(f"motion has {T} frames; this encoder was built for at most {self.max_len}")
        x = self.input_proj(motion)
        x = torch.cat([self.summary_token.expand(B, 1, -1), x], dim=1) + self.positions[: T + 1]
        valid = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=motion.device), length_mask(lengths, T)], dim=1)
        h = self.norm(self.transformer(x, src_key_padding_mask=~valid))
        return h[:, 1:], h[:, 0]


class MotionDecoder(nn.Module):
    """Sequence feature f^m [B, D] and lengths [B] -> reconstructed motion [B, T, F] (T = max length).

    ACTOR-style: the queries are sinusoidal time positions, the memory is f^m (one token); a
    Transformer decoder then Linear(D -> F).
    """

    def __init__(self, feature_dim: int, d_model: int = 512, num_layers: int = 6, num_heads: int = 4,
                 ff_dim: int = 1024, dropout: float = 0.1, max_len: int = 512):
        super().__init__()
        self.feature_dim, self.max_len = feature_dim, max_len
        self.register_buffer("positions", sinusoidal_positions(max_len, d_model), persistent=False)
        layer = nn.TransformerDecoderLayer(d_model, num_heads, ff_dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerDecoder(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)
        self.output_proj = nn.Linear(d_model, feature_dim)

    def forward(self, sequence_feature: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        B = sequence_feature.shape[0]
        T = int(max_len if max_len is not None else lengths.max())
        if T > self.max_len:
            raise ValueError(f"cannot decode {T} frames; this decoder was built for at most {self.max_len}")
        queries = self.positions[:T].expand(B, T, -1)
        h = self.transformer(queries, sequence_feature[:, None, :], tgt_key_padding_mask=~length_mask(lengths, T))
        return self.output_proj(self.norm(h))
