"""Segmentation costs (Eq. 1): every grid clip's feature equals encoding that clip alone, and the
cost table is 1 - cos of the sub-text and clip features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mate.model.motion import MotionEncoder
from mate.model.segmentation import clip_features, clip_features_batch, partition_costs, subtext_cost_tables
from mate.segment import unit_grid


@torch.no_grad()
def assert_each_clip_encoded_alone(encoder, motion, grid, feats):
    """feats[a, b] (a < b) equals E_m of frames [grid[a], grid[b]) encoded on their own; zero elsewhere."""
    G = len(grid) - 1
    for a in range(G + 1):
        for b in range(G + 1):
            if a < b:
                clip = motion[grid[a]:grid[b]][None]
                _, want = encoder(clip, torch.tensor([clip.shape[1]]))
                torch.testing.assert_close(feats[a, b], want[0], rtol=1e-5, atol=1e-5)
            else:
                assert torch.count_nonzero(feats[a, b]) == 0


def test_clip_features_equal_encoding_each_clip_alone():
    torch.manual_seed(0)
    encoder = MotionEncoder(feature_dim=7, d_model=16, num_layers=2, num_heads=2, ff_dim=32).eval()
    length = 67  # 20 fps: 10-frame units, the partial last unit merged into the one before
    motion = torch.randn(length, 7)
    grid = unit_grid(length, 20)
    G = len(grid) - 1
    # a small batch size: several encoder calls per clip length
    feats = clip_features(encoder, motion, grid, batch_size=4)
    assert feats.shape == (G + 1, G + 1, 16)
    assert_each_clip_encoded_alone(encoder, motion, grid, feats)


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


def test_clip_features_batch_equal_encoding_each_clip_alone():
    """Several motions of odd lengths (two sharing a clip length, one shorter than a unit), chunks
    smaller than a length group: every clip's feature equals encoding it alone."""
    torch.manual_seed(2)
    encoder = MotionEncoder(feature_dim=5, d_model=16, num_layers=2, num_heads=2, ff_dim=24).eval()
    motions = [torch.randn(n, 5) for n in (43, 67, 7, 67)]
    grids = [unit_grid(n, 20) for n in (43, 67, 7, 67)]
    feats = clip_features_batch(encoder, motions, grids, max_clips=3)
    assert len(feats) == 4
    for motion, grid, got in zip(motions, grids, feats):
        assert got.shape == (len(grid), len(grid), 16)
        assert_each_clip_encoded_alone(encoder, motion, grid, got)


def test_clip_features_batch_rejects_bad_input():
    encoder = MotionEncoder(feature_dim=5, d_model=8, num_layers=1, num_heads=2, ff_dim=8).eval()
    with pytest.raises(ValueError, match="2 motions but 1 grids"):
        clip_features_batch(encoder, [torch.randn(20, 5)] * 2, [unit_grid(20, 20)])
    with pytest.raises(ValueError, match=r"grids\[0\] must be increasing"):
        clip_features_batch(encoder, [torch.randn(20, 5)], [np.array([0, 10, 30])])
    with pytest.raises(ValueError, match=r"motions\[0\] must be \[T, F\]"):
        clip_features_batch(encoder, [torch.randn(1, 20, 5)], [unit_grid(20, 20)])


class _TinyTextModel(torch.nn.Module):
    """What subtext_cost_tables needs of a MATEModel: a motion encoder, a tokenizer that pads a
    batch (so batching changes the padding), and encode_text (masked mean of embeddings -> Linear)."""

    def __init__(self):
        super().__init__()
        self.motion_encoder = MotionEncoder(feature_dim=5, d_model=12, num_layers=1, num_heads=2, ff_dim=16).eval()
        self.embed = torch.nn.Embedding(50, 12)
        self.proj = torch.nn.Linear(12, 12)

        class Tok:
            def tokenize(self, texts):
                ids = [[1 + (sum(map(ord, w)) % 49) for w in t.split()] for t in texts]
                width = max(len(x) for x in ids)
                return {"input_ids": torch.tensor([x + [0] * (width - len(x)) for x in ids]),
                        "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])}

        self.text_encoder = Tok()

    def encode_text(self, input_ids, attention_mask):
        m = attention_mask[..., None].float()
        return self.proj((self.embed(input_ids) * m).sum(1) / m.sum(1))


def test_subtext_cost_tables_equal_one_caption_at_a_time():
    torch.manual_seed(3)
    model = _TinyTextModel()
    motions = [torch.randn(n, 5) for n in (55, 31, 80)]
    grids = [unit_grid(n, 20) for n in (55, 31, 80)]
    requests = [(0, ["walk forward", "turn left now"]), (2, ["a", "b c d e", "jump"]), (0, ["sit", "stand up slowly"]),
                (1, ["one", "two three"])]
    got = subtext_cost_tables(model, motions, grids, requests, max_clips=4, max_texts=3)
    assert len(got) == len(requests)
    with torch.no_grad():
        for (i, parts), table in zip(requests, got):
            tok = model.text_encoder.tokenize(parts)
            want = partition_costs(model.encode_text(tok["input_ids"], tok["attention_mask"]),
                                   clip_features(model.motion_encoder, motions[i], grids[i]))
            assert table.shape == want.shape == (len(parts), len(grids[i]), len(grids[i]))
            np.testing.assert_allclose(table, want, rtol=1e-5, atol=1e-5)
    assert subtext_cost_tables(model, motions, grids, []) == []
