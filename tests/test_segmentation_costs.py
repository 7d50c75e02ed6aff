"""Segmentation costs (Eq. 1): every grid clip's feature equals encoding that clip alone, and the
cost table is 1 - cos of the sub-text and clip features."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mate.model.motion import MotionEncoder
from mate.model.segmentation import clip_features, partition_costs
from mate.segment import unit_grid


def test_clip_features_equal_encoding_each_clip_alone():
    torch.manual_seed(0)
    encoder = MotionEncoder(feature_dim=7, d_model=16, num_layers=2, num_heads=2, ff_dim=32).eval()
    length = 67  # 20 fps: 10-frame units, the partial last unit merged into the one before
    motion = torch.randn(length, 7)
    grid = unit_grid(length, 20)
    G = len(grid) - 1
    # a small batch size: several chunks of different padded lengths
    feats = clip_features(encoder, motion, grid, batch_size=4)
    assert feats.shape == (G + 1, G + 1, 16)
    with torch.no_grad():
        for a in range(G + 1):
            for b in range(G + 1):
                if a < b:
                    clip = motion[grid[a]:grid[b]][None]
                    _, want = encoder(clip, torch.tensor([clip.shape[1]]))
                    torch.testing.assert_close(feats[a, b], want[0], rtol=1e-5, atol=1e-5)
                else:
                    assert torch.count_nonzero(feats[a, b]) == 0


def test_partition_costs_are_one_minus_cosine():
    g = torch.Generator().manual_seed(1)
    text = torch.randn(3, 8, generator=g)
    clips = torch.randn(5, 5, 8, generator=g)
    cost = partition_costs(text, clips)
    assert cost.dtype == np.float32 and cost.shape == (3, 5, 5)
    for n in range(3):
        for a in range(5):
            for b in range(5):
                want = 1 - F.cosine_similarity(text[n], clips[a, b], dim=0).item()
                assert abs(cost[n, a, b] - want) < 1e-5
