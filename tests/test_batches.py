"""mate.train.batches: seeded per-sample randomness, including stage 0's sub-clip crops."""
from __future__ import annotations

import pytest
import torch

from mate.train.batches import SeededSamples


class Clips(torch.utils.data.Dataset):
    """Motions whose frame t holds the value t (so a crop is recognisable), lengths 25..60."""

    def __len__(self):
        return 40

    def __getitem__(self, i):
        length = 25 + i
        motion = torch.arange(length, dtype=torch.float32)[:, None].repeat(1, 3)
        return {"motion": motion, "length": length, "start_frame": 0, "end_frame": length, "key": str(i)}


def test_subclip_crops_are_seeded_contiguous_and_bounded():
    plain = SeededSamples(Clips(), seed=3)
    crops = SeededSamples(Clips(), seed=3, subclip_probability=0.5, min_subclip_frames=20)
    cropped = 0
    for i in range(40):
        a, b = plain[(2, i)], crops[(2, i)]
        assert a["sample_seed"] == b["sample_seed"]        # the word draw does not depend on cropping
        assert b["length"] == b["motion"].shape[0] and 20 <= b["length"] <= a["length"]
        start = int(b["motion"][0, 0])
        torch.testing.assert_close(b["motion"], a["motion"][start:start + b["length"]])
        assert b["start_frame"] == start and b["end_frame"] == start + b["length"]
        cropped += b["length"] < a["length"]
        again = crops[(2, i)]
        assert torch.equal(again["motion"], b["motion"])   # a function of (seed, epoch, index)
    assert 8 <= cropped <= 32
    none = SeededSamples(Clips(), seed=3, subclip_probability=0.0)
    assert all(torch.equal(none[(2, i)]["motion"], plain[(2, i)]["motion"]) for i in range(40))
    every = SeededSamples(Clips(), seed=3, subclip_probability=1.0, min_subclip_frames=20)
    assert sum(every[(0, i)]["length"] < 25 + i for i in range(40)) >= 30
    with pytest.raises(ValueError, match="subclip_probability"):
        SeededSamples(Clips(), seed=3, subclip_probability=1.5)
