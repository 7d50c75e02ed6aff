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


def test_motion_words_sampling_skips_subjects_and_merges_synonyms():
    """--word-sampling motion-words: no subject noun is sampled, a synonym gets its canonical
    word's prototype, every other word keeps its own; paper sampling is unchanged."""
    from types import SimpleNamespace

    from mate.text.antonyms import PROTOTYPE_SYNONYMS, SUBJECT_WORDS
    from mate.text.vocab import build_vocabulary
    from mate.train.pipeline import word_samples

    captions = ["a person rapidly walks forwards then waves the left hand",
                "the man quickly turns left and walks forward slowly"]
    records = [SimpleNamespace(caption=SimpleNamespace(key=str(i), text=t, tokens=()), num_frames=60)
               for i, t in enumerate(captions)]
    vocab = build_vocabulary(captions)
    segments = {str(i): {"subtexts": [t], "bounds_frames": [0, 60]} for i, t in enumerate(captions)}
    paper = word_samples(records, segments, vocab)
    motion = word_samples(records, segments, vocab, "motion-words")
    lemma = vocab.index_to_word
    for key in paper:
        kept = [row for row in paper[key] if lemma[row[1]] not in SUBJECT_WORDS]
        assert len(motion[key]) == len(kept) < len(paper[key])
        for (word, i, s, e), (word2, j, s2, e2) in zip(kept, motion[key]):
            assert (word, s, e) == (word2, s2, e2)
            canonical = PROTOTYPE_SYNONYMS.get(lemma[i])
            assert lemma[j] == (canonical if canonical in vocab else lemma[i])
    assert any(lemma[i] == "rapidly" for _, i, _, _ in paper["0"])
    assert not any(lemma[j] == "rapidly" for _, j, _, _ in motion["0"])
    with pytest.raises(ValueError, match="word sampling"):
        word_samples(records, segments, vocab, "all")
