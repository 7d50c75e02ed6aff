"""The standard text-to-motion evaluator's networks (Guo et al. 2022, ``text_mot_match``).

Three networks whose parameter names and shapes match the released checkpoints
``checkpoints/{t2m,kit}/text_mot_match/model/finest.tar`` (keys ``movement_encoder``,
``text_encoder``, ``motion_encoder``), so they load with ``strict=True``:

* :class:`MovementConvEncoder`: motion features without the 4 foot contacts [B, T, F - 4] -> two
  stride-2 convolutions (kernel 4) -> movement codes [B, T / 4, 512] (one per 4 frames: the
  "unit length" every length is rounded to);
* :class:`MotionEncoderBiGRUCo`: movement codes + their count -> a bidirectional GRU (hidden 1024)
  -> the motion embedding [B, 512];
* :class:`TextEncoderBiGRUCo`: GloVe vectors [B, 22, 300] + POS one-hots [B, 22, 15] + caption
  lengths -> a bidirectional GRU (hidden 512) -> the text embedding [B, 512].

Both GRUs start from a learned initial state (``hidden`` [2, 1, H]) and read only the valid
steps (packed sequences); the embedding is the two directions' last states through an MLP.
Everything is re-implemented from the paper and the checkpoint layout.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = ["UNIT_LENGTH", "EVALUATOR_SIZES", "MovementConvEncoder", "TextEncoderBiGRUCo", "MotionEncoderBiGRUCo"]

#: Frames per movement code (the two stride-2 convolutions).
UNIT_LENGTH = 4

#: Sizes of the released evaluators (the same for both datasets but the motion width).
EVALUATOR_SIZES = dict(word=300, pos=15, text_hidden=512, movement_hidden=512, movement_latent=512,
                       motion_hidden=1024, embedding=512)


def _head(width: int, hidden: int, out: int) -> nn.Sequential:
    """Indices 0 (Linear), 1 (LayerNorm), 2 (LeakyReLU), 3 (Linear): the checkpoint's ``output_net.*``."""
    return nn.Sequential(nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, out))


def _last_states(gru: nn.GRU, inputs: torch.Tensor, lengths: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """[B, 2H]: the forward and backward GRU states after the valid steps of each sequence."""
    if lengths.numel() and int(lengths.min()) < 1:
        raise ValueError(f"every sequence needs at least one step, got lengths {lengths.tolist()}")
    if lengths.numel() and int(lengths.max()) > inputs.shape[1]:
        raise ValueError(f"lengths up to {int(lengths.max())} for sequences of {inputs.shape[1]} steps")
    packed = pack_padded_sequence(inputs, lengths.cpu().long(), batch_first=True, enforce_sorted=False)
    _, last = gru(packed, initial.expand(-1, inputs.shape[0], -1).contiguous())   # [2, B, H], input order
    return torch.cat([last[0], last[1]], dim=-1)


class MovementConvEncoder(nn.Module):
    """[B, T, F - 4] float32 (evaluator-normalised features, foot contacts dropped) -> [B, T // 4, latent]."""

    def __init__(self, input_size: int, hidden_size: int = 512, output_size: int = 512):
        super().__init__()
        self.main = nn.Sequential(nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
                                  nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2))
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, motions: torch.Tensor) -> torch.Tensor:
        if motions.ndim != 3 or motions.shape[-1] != self.main[0].in_channels:
            raise ValueError(f"motions must be [B, T, {self.main[0].in_channels}], got {tuple(motions.shape)}")
        return self.out_net(self.main(motions.transpose(1, 2)).transpose(1, 2))


class TextEncoderBiGRUCo(nn.Module):
    """(word vectors [B, L, 300], POS one-hots [B, L, 15], lengths [B] int) -> text embedding [B, out]."""

    def __init__(self, word_size: int = 300, pos_size: int = 15, hidden_size: int = 512, output_size: int = 512):
        super().__init__()
        self.pos_emb = nn.Linear(pos_size, word_size)
        self.input_emb = nn.Linear(word_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = _head(2 * hidden_size, hidden_size, output_size)
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, word_embs: torch.Tensor, pos_onehot: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if word_embs.shape[:2] != pos_onehot.shape[:2] or word_embs.shape[-1] != self.pos_emb.out_features \
                or pos_onehot.shape[-1] != self.pos_emb.in_features:
            raise ValueError(f"word_embs [B, L, {self.pos_emb.out_features}] and pos_onehot "
                             f"[B, L, {self.pos_emb.in_features}] expected, got {tuple(word_embs.shape)} and "
                             f"{tuple(pos_onehot.shape)}")
        inputs = self.input_emb(word_embs + self.pos_emb(pos_onehot))   # the POS enters added to the word
        return self.output_net(_last_states(self.gru, inputs, lengths, self.hidden))


class MotionEncoderBiGRUCo(nn.Module):
    """(movement codes [B, T', latent], code counts [B] int) -> motion embedding [B, out]."""

    def __init__(self, input_size: int = 512, hidden_size: int = 1024, output_size: int = 512):
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = _head(2 * hidden_size, hidden_size, output_size)
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, movements: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output_net(_last_states(self.gru, self.input_emb(movements), lengths, self.hidden))
