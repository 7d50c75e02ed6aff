"""Segmentation costs from a trained retrieval model (paper, Eq. 1).

For a motion on the grid ``0 = f_0 < ... < f_G`` (``mate.segment.unit_grid``) and sub-texts
``t^0..t^{N-1}``::

    cost[n, a, b] = 1 - cos(E_t(t^n), E_m(m[f_a : f_b]))      for 0 <= a < b <= G

Each of the G(G+1)/2 clips is encoded once and shared by every caption of the motion; the optimum
over partitions comes from ``mate.segment.optimal_partition_batch``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["clip_features", "partition_costs"]


@torch.no_grad()
def clip_features(motion_encoder, motion: torch.Tensor, grid: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """E_m of every grid clip of one motion.

    Args:
        motion_encoder: returns (frames, sequence feature [B, D]) for (motion [B, T, F], lengths [B]).
        motion: [T, F] float32, normalised.
        grid: int64 [G+1] frame boundaries.

    Returns:
        [G+1, G+1, D] float32; entry [a, b] (a < b) is the feature of frames [grid[a], grid[b]),
        other entries are zero.
    """
    G = len(grid) - 1
    # Sorted by length, so that each chunk pads to a similar length: the padded work falls from
    # G(G+1)/2 full-length clips to about the sum of the clip lengths (~3x less at G = 19).
    pairs = sorted(((a, b) for a in range(G) for b in range(a + 1, G + 1)), key=lambda ab: grid[ab[1]] - grid[ab[0]])
    device = motion.device
    out = None
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        lengths = torch.tensor([grid[b] - grid[a] for a, b in chunk], device=device)
        clips = motion.new_zeros(len(chunk), int(lengths.max()), motion.shape[-1])
        for i, (a, b) in enumerate(chunk):
            clips[i, : grid[b] - grid[a]] = motion[grid[a]:grid[b]]
        _, features = motion_encoder(clips, lengths)
        if out is None:
            out = features.new_zeros(G + 1, G + 1, features.shape[-1])
        idx_a = torch.tensor([a for a, _ in chunk], device=device)
        idx_b = torch.tensor([b for _, b in chunk], device=device)
        out[idx_a, idx_b] = features
    return out


def partition_costs(subtext_features: torch.Tensor, clips: torch.Tensor) -> np.ndarray:
    """cost[n, a, b] = 1 - cos(subtext_features[n], clips[a, b]).

    subtext_features [N, D]; clips [G+1, G+1, D] from :func:`clip_features`.
    Returns float32 numpy [N, G+1, G+1] (entries with a >= b are 1 and never read).
    """
    t = F.normalize(subtext_features.float(), dim=-1)
    m = F.normalize(clips.float(), dim=-1)
    cos = torch.einsum("nd,abd->nab", t, m)
    return (1.0 - cos).cpu().numpy().astype(np.float32)
