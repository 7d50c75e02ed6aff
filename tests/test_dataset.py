"""MotionTextDataset: HumanML3D / KIT-ML texts layout, TMR annotations.json layout, bad inputs.

Tiny datasets are written to tmp_path; the real fixtures (../shared/fixtures) are read in place or
symlinked into tmp_path, never copied into the repository.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mate.data.dataset import (
    DatasetProblemWarning,
    MotionTextDataset,
    collate_motion_text,
    parse_humanml3d_caption_line,
    read_humanml3d_text_file,
    read_tmr_annotations,
    seconds_to_frames,
)

HML_DIM, KIT_DIM = 263, 251


def caption_line(text="a person walks forward", start=0.0, end=0.0, tokens="a/DET person/NOUN walk/VERB"):
    return f"{text}#{tokens}#{start}#{end}"


def write_motion(path: Path, num_frames: int, dim: int, seed: int = 0) -> np.ndarray:
    motion = np.random.default_rng(seed).standard_normal((num_frames, dim)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, motion)
    return motion


def write_stats(root: Path, dim: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dim).astype(np.float32)
    std = rng.uniform(0.5, 1.5, dim).astype(np.float32)
    np.save(root / "Mean.npy", mean)
    np.save(root / "Std.npy", std)
    return mean, std


def make_texts_dataset(root: Path, motions: dict[str, int], captions: dict[str, list[str]],
                       splits: dict[str, list[str]], dim: int = HML_DIM):
    """HumanML3D-style root; returns (raw motions by id, mean, std)."""
    raw = {mid: write_motion(root / "new_joint_vecs" / f"{mid}.npy", frames, dim, seed=i)
           for i, (mid, frames) in enumerate(motions.items())}
    (root / "texts").mkdir(parents=True, exist_ok=True)
    for mid, lines in captions.items():
        (root / "texts" / f"{mid}.txt").write_text("\n".join(lines) + "\n")
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    mean, std = write_stats(root, dim)
    return raw, mean, std


@pytest.fixture
def hml(tmp_path):
    """Three motions: a mirrored pair with whole-clip and sub-clip captions, and a long one."""
    motions = {"000001": 120, "M000001": 120, "000002": 250}
    captions = {
        "000001": [caption_line("a man kicks with his left leg"),
                   caption_line("a man steps back", 1.0, 3.5)],  # frames [20, 70)
        "M000001": [caption_line("a man kicks with his right leg")],
        # whole clip is 250 frames (dropped); the sub-clip [20, 219) is 199 frames (kept, cropped)
        "000002": [caption_line("a person dances"), caption_line("a person spins", 1.0, 10.95)],
    }
    raw, mean, std = make_texts_dataset(tmp_path, motions, captions,
                                        {"train": list(motions), "test": list(motions)})
    return tmp_path, raw, mean, std


def normalised(raw, mean, std):
    return torch.from_numpy((raw - mean) / std)


# ---------------------------------------------------------------------------------------------
# Loading, sub-clips, filtering, cropping, normalisation, mirrored ids
# ---------------------------------------------------------------------------------------------


def test_humanml3d_layout_items(hml):
    root, raw, mean, std = hml
    ds = MotionTextDataset(root, split="test")
    assert (ds.dataset_name, ds.layout, ds.fps, ds.feature_dim) == ("humanml3d", "texts", 20.0, 263)
    assert ds.mean.dtype == torch.float32 and ds.mean.shape == (263,)
    assert [r.caption.text for r in ds.records] == [
        "a man kicks with his left leg", "a man steps back", "a man kicks with his right leg",
        "a person spins"]
    assert ds.filter_counts == {"too_short": 0, "too_long": 1}
    assert ds.problem_counts == {}

    item = ds[0]
    assert set(item) >= {"motion", "length", "caption", "tokens", "id", "start_frame", "end_frame",
                         "caption_index"}
    assert item["motion"].dtype == torch.float32 and item["motion"].shape == (120, 263)
    assert item["length"] == 120 and item["id"] == "000001" and item["caption_index"] == 0
    assert item["tokens"] == ["a/DET", "person/NOUN", "walk/VERB"]
    torch.testing.assert_close(item["motion"], normalised(raw["000001"], mean, std))

    sub = ds[1]  # "#1.0#3.5" at 20 fps -> frames [20, 70)
    assert (sub["start_frame"], sub["end_frame"], sub["length"], sub["caption_index"]) == (20, 70, 50, 1)
    torch.testing.assert_close(sub["motion"], normalised(raw["000001"][20:70], mean, std))

    mirrored = ds[2]  # an "M" id is just another id with its own file and captions
    assert mirrored["id"] == "M000001" and mirrored["caption"].endswith("right leg")
    torch.testing.assert_close(mirrored["motion"], normalised(raw["M000001"], mean, std))

    # 199-frame sub-clip [20, 219), non-train split: deterministic crop keeps the first 196 frames
    spin = ds[3]
    assert (spin["clip_start_frame"], spin["clip_end_frame"]) == (20, 219)
    assert (spin["start_frame"], spin["end_frame"], spin["length"]) == (20, 216, 196)
    torch.testing.assert_close(spin["motion"], normalised(raw["000002"][20:216], mean, std))
    assert ds.lengths.tolist() == [120, 50, 120, 196] and ds.lengths.dtype == np.int64


def test_denormalize_roundtrip(hml):
    root, raw, mean, std = hml
    ds = MotionTextDataset(root, split="test")
    item = ds[0]
    torch.testing.assert_close(ds.denormalize(item["motion"]), torch.from_numpy(raw["000001"]))
    np.testing.assert_allclose(ds.normalize(ds.denormalize(item["motion"].numpy())),
                               item["motion"].numpy(), rtol=1e-5, atol=1e-5)
    raw_ds = MotionTextDataset(root, split="test", normalize=False)
    torch.testing.assert_close(raw_ds[0]["motion"], torch.from_numpy(raw["000001"]))
    with pytest.raises(ValueError, match="last dimension"):
        ds.denormalize(torch.zeros(3, 10))


def test_length_filter_boundaries(tmp_path):
    motions = {"short": 39, "min": 40, "max": 199, "long": 200}
    captions = {mid: [caption_line()] for mid in motions}
    make_texts_dataset(tmp_path, motions, captions, {"val": list(motions)})
    ds = MotionTextDataset(tmp_path, split="val")
    assert [r.motion_id for r in ds.records] == ["min", "max"]
    assert ds.filter_counts == {"too_short": 1, "too_long": 1}
    assert [ds[i]["length"] for i in range(len(ds))] == [40, 196]
    assert len(MotionTextDataset(tmp_path, split="val", min_frames=10, max_frames=None)) == 4


def test_subclip_filter_and_full_motion_filter(hml):
    root, *_ = hml
    lines = [caption_line("too short sub-clip", 0.0, 1.95), caption_line("kept", 0.5, 5.0)]
    (root / "texts" / "000001.txt").write_text("\n".join(lines))
    ds = MotionTextDataset(root, split="test")
    texts = [r.caption.text for r in ds.records]
    assert "too short sub-clip" not in texts and "kept" in texts  # 39 frames < 40
    kept = ds[texts.index("kept")]
    assert (kept["start_frame"], kept["end_frame"]) == (10, 100)
    # the original HumanML3D loader also drops the sub-clips of a motion whose full length fails
    legacy = MotionTextDataset(root, split="test", filter_full_motion=True)
    assert "a person spins" not in [r.caption.text for r in legacy.records]
    assert legacy.filter_counts["too_long"] == 2


def test_subclip_end_beyond_motion_is_clamped():
    assert seconds_to_frames(0.0, 0.0, 77, 20) == (0, 77)
    assert seconds_to_frames(1.0, 9.0, 77, 20) == (20, 77)
    assert seconds_to_frames(1.0, 3.0, 100, 12.5) == (12, 37)


def test_random_crop_is_seeded_and_in_range(hml):
    root, raw, mean, std = hml
    spin = lambda ds: next(i for i, r in enumerate(ds.records) if r.caption.text == "a person spins")
    ds_a = MotionTextDataset(root, split="train", seed=123)
    ds_b = MotionTextDataset(root, split="train", seed=123)
    assert ds_a.crop == "random"
    index = spin(ds_a)
    starts_a = [ds_a[index]["start_frame"] for _ in range(30)]
    starts_b = [ds_b[index]["start_frame"] for _ in range(30)]
    assert starts_a == starts_b  # same seed, same crops
    assert all(20 <= s <= 23 for s in starts_a) and len(set(starts_a)) > 1  # 199 -> 196: 4 offsets
    item = ds_a[index]
    s = item["start_frame"]
    assert item["end_frame"] == s + 196
    torch.testing.assert_close(item["motion"], normalised(raw["000002"][s:s + 196], mean, std))
    centre = MotionTextDataset(root, split="train", crop="center")[index]
    assert centre["start_frame"] == 21


def test_dataloader_workers_reproducible(hml):
    root, *_ = hml
    ds = MotionTextDataset(root, split="train", seed=5)
    index = next(i for i, r in enumerate(ds.records) if r.caption.text == "a person spins")
    subset = torch.utils.data.Subset(ds, [index] * 16)

    def starts(seed):
        loader = torch.utils.data.DataLoader(subset, batch_size=4, num_workers=2,
                                             collate_fn=collate_motion_text,
                                             generator=torch.Generator().manual_seed(seed))
        return torch.cat([batch["start_frame"] for batch in loader]).tolist()

    assert starts(0) == starts(0)
    assert len(set(starts(0))) > 1


def test_collate_pads_and_masks(hml):
    root, *_ = hml
    ds = MotionTextDataset(root, split="test")
    items = [ds[1], ds[0], ds[3]]  # lengths 50, 120, 196
    batch = collate_motion_text(items)
    assert batch["motion"].shape == (3, 196, 263) and batch["motion"].dtype == torch.float32
    assert batch["lengths"].dtype == torch.int64 and batch["lengths"].tolist() == [50, 120, 196]
    assert batch["mask"].dtype == torch.bool and batch["mask"].shape == (3, 196)
    assert batch["mask"].sum(1).tolist() == [50, 120, 196]
    assert batch["mask"][0, 49] and not batch["mask"][0, 50]
    assert torch.all(batch["motion"][0, 50:] == 0) and torch.all(batch["motion"][1, 120:] == 0)
    torch.testing.assert_close(batch["motion"][1, :120], items[1]["motion"])
    assert batch["caption"] == [it["caption"] for it in items]
    assert batch["id"] == ["000001", "000001", "000002"]
    assert batch["tokens"][0] == items[0]["tokens"]
    assert batch["start_frame"].tolist() == [20, 0, 20]
    assert batch["caption_index"].dtype == torch.int64
    with pytest.raises(ValueError, match="empty batch"):
        collate_motion_text([])


def test_kit_layout(tmp_path):
    motions = {"00001": 24, "00002": 23, "00003": 60}
    captions = {"00001": [caption_line("a human waves")], "00002": [caption_line()],
                "00003": [caption_line("walking", 1.0, 3.0)]}  # 12.5 fps -> [12, 37)
    raw, mean, std = make_texts_dataset(tmp_path, motions, captions, {"test": list(motions)},
                                        dim=KIT_DIM)
    ds = MotionTextDataset(tmp_path, split="test")
    assert (ds.dataset_name, ds.fps, ds.feature_dim, ds.min_frames) == ("kit", 12.5, 251, 24)
    assert [r.motion_id for r in ds.records] == ["00001", "00003"]
    assert ds[0]["motion"].shape == (24, 251)
    walk = ds[1]
    assert (walk["start_frame"], walk["end_frame"]) == (12, 37)
    torch.testing.assert_close(walk["motion"], normalised(raw["00003"][12:37], mean, std))
    # explicit dataset name that disagrees with the data: the Mean shape is rejected
    with pytest.raises(ValueError, match=r"Mean\.npy.*\(263,\)"):
        MotionTextDataset(tmp_path, split="test", dataset="humanml3d")


def test_auto_detect_without_mean(tmp_path):
    make_texts_dataset(tmp_path, {"a": 50}, {"a": [caption_line()]}, {"train": ["a"]}, dim=KIT_DIM)
    os.remove(tmp_path / "Mean.npy")
    os.remove(tmp_path / "Std.npy")
    ds = MotionTextDataset(tmp_path, normalize=False)
    assert ds.dataset_name == "kit" and ds.mean is None
    make_texts_dataset(tmp_path / "odd", {"a": 50}, {"a": [caption_line()]}, {"train": ["a"]}, dim=7)
    with pytest.raises(ValueError, match="feature width 7"):
        MotionTextDataset(tmp_path / "odd")


def write_tmr(root: Path, entries: dict, splits: dict[str, list[str]]):
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps(entries))
    (root / "splits").mkdir(exist_ok=True)
    for split, ids in splits.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def test_tmr_layout(tmp_path):
    entries = {
        "000001": {"path": "humanact12/a", "duration": 6.0, "annotations": [
            {"seg_id": "000001_0", "text": "a person jumps", "start": 0.0, "end": 6.0},
            {"seg_id": "000001_1", "text": "a person lands", "start": 2.0, "end": 5.0}]},
        "000002": {"path": "KIT/4/b", "duration": 3.0, "annotations": [
            {"seg_id": "000002_0", "text": "a person sits", "start": 0.0, "end": 3.0}]},
    }
    write_tmr(tmp_path, entries, {"train": ["000001", "000002"]})
    mean, std = write_stats(tmp_path, HML_DIM)
    raw1 = write_motion(tmp_path / "feats" / "000001.npy", 120, HML_DIM, seed=3)
    raw2 = write_motion(tmp_path / "feats" / "000002.npy", 61, HML_DIM, seed=4)
    ds = MotionTextDataset(tmp_path, split="train", motion_dir="feats", crop="start")
    assert ds.layout == "tmr" and ds.dataset_name == "humanml3d"
    items = [ds[i] for i in range(len(ds))]
    assert [it["caption"] for it in items] == ["a person jumps", "a person lands", "a person sits"]
    assert [it["key"] for it in items] == ["000001_0", "000001_1", "000002_0"]
    assert all(it["tokens"] == [] for it in items)
    assert [(it["start_frame"], it["end_frame"]) for it in items] == [(0, 120), (40, 100), (0, 60)]
    torch.testing.assert_close(items[1]["motion"], normalised(raw1[40:100], mean, std))
    torch.testing.assert_close(items[2]["motion"], normalised(raw2[:60], mean, std))

    # TMR's own feature folder is organised by the entry's path
    write_motion(tmp_path / "guoh3dfeats" / "humanact12" / "a.npy", 120, HML_DIM, seed=3)
    write_motion(tmp_path / "guoh3dfeats" / "KIT" / "4" / "b.npy", 61, HML_DIM, seed=4)
    by_path = MotionTextDataset(tmp_path, motion_dir=tmp_path / "guoh3dfeats", motion_name="path",
                                crop="start")
    torch.testing.assert_close(by_path[1]["motion"], items[1]["motion"])


# ---------------------------------------------------------------------------------------------
# Bad inputs: strict raises naming the file (and line), non-strict skips with ONE warning
# ---------------------------------------------------------------------------------------------

def _mutate_caption(text):
    def mutate(root):
        (root / "texts" / "000001.txt").write_text(caption_line("fine caption") + "\n" + text + "\n")
    return mutate


def _mutate_wrong_width(root):
    write_motion(root / "new_joint_vecs" / "000001.npy", 120, 250)


def _mutate_missing_motion(root):
    os.remove(root / "new_joint_vecs" / "000001.npy")


def _mutate_missing_text(root):
    os.remove(root / "texts" / "000001.txt")


def _mutate_no_captions(root):
    (root / "texts" / "000001.txt").write_text("\n\n")


def _mutate_not_npy(root):
    (root / "new_joint_vecs" / "000001.npy").write_bytes(b"definitely not numpy")


BAD_ITEMS = {
    # name: (mutation, exception, fragment of the strict message, kind, count)
    "too_many_fields": (_mutate_caption("a man#a/DET#0.0#0.0#1.0"), ValueError,
                        r"000001\.txt:2: expected 4 '#'-separated fields", "malformed_caption", 1),
    "too_few_fields": (_mutate_caption("a man#a/DET#0.0"), ValueError,
                       r"000001\.txt:2: expected 4", "malformed_caption", 1),
    "non_numeric_start": (_mutate_caption("a man#a/DET#abc#1.0"), ValueError,
                          r"000001\.txt:2: start is not a number", "malformed_caption", 1),
    "end_before_start": (_mutate_caption("a man#a/DET#3.0#1.0"), ValueError,
                         r"000001\.txt:2: end \(1\.0\) is before start", "malformed_caption", 1),
    "infinite_end": (_mutate_caption("a man#a/DET#0.0#inf"), ValueError,
                     r"000001\.txt:2: end must be finite", "malformed_caption", 1),
    "empty_caption": (_mutate_caption("  #a/DET#0.0#0.0"), ValueError,
                      r"000001\.txt:2: empty caption", "empty_caption", 1),
    "wrong_width": (_mutate_wrong_width, ValueError, r"000001\.npy: motion has shape \(120, 250\)",
                    "bad_motion", 1),
    "not_npy": (_mutate_not_npy, ValueError, r"000001\.npy: not a readable \.npy", "bad_motion", 1),
    "missing_motion": (_mutate_missing_motion, FileNotFoundError,
                       r"000001\.npy: motion file not found", "missing_motion", 1),
    "missing_text": (_mutate_missing_text, FileNotFoundError,
                     r"000001\.txt: caption file not found", "missing_text", 1),
    "no_captions": (_mutate_no_captions, ValueError, r"000001\.txt: caption file has no captions",
                    "no_captions", 1),
}


@pytest.mark.parametrize("name", list(BAD_ITEMS))
def test_bad_item_strict_and_lenient(hml, name):
    root, *_ = hml
    mutate, exception, fragment, kind, count = BAD_ITEMS[name]
    clean = len(MotionTextDataset(root, split="test"))
    mutate(root)
    with pytest.raises(exception, match=fragment):
        MotionTextDataset(root, split="test")
    with pytest.warns(DatasetProblemWarning) as record:
        ds = MotionTextDataset(root, split="test", strict=False)
    assert len(record) == 1
    assert ds.problem_counts == {kind: count}
    assert f"{kind}: {count}" in str(record[0].message)
    assert "000001" in str(record[0].message)
    # only the bad caption (line-level) or the bad motion's two captions (file-level) are gone
    lost = 0 if kind in ("malformed_caption", "empty_caption") else 2
    expected = clean - 2 + 1 if lost == 0 else clean - lost  # mutated file has 1 good caption
    assert len(ds) == expected
    for i in range(len(ds)):  # what is left loads
        assert torch.isfinite(ds[i]["motion"]).all()


def test_lenient_one_warning_for_many_problems(hml):
    root, *_ = hml
    (root / "texts" / "000001.txt").write_text("bad line\n" + caption_line("good") + "\nx#y#1#0\n")
    os.remove(root / "texts" / "M000001.txt")
    (root / "test.txt").write_text("000001\nM000001\n000002\nghost\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = MotionTextDataset(root, split="test", strict=False)
    problems = [w for w in caught if issubclass(w.category, DatasetProblemWarning)]
    assert len(problems) == 1
    assert ds.problem_counts == {"malformed_caption": 2, "missing_text": 1, "missing_motion": 1}
    message = str(problems[0].message)
    assert "malformed_caption: 2" in message and "missing_text: 1" in message
    assert "missing_motion: 1" in message and "ghost.npy" in message
    assert [r.caption.text for r in ds.records] == ["good", "a person spins"]


def test_clean_dataset_warns_nothing(hml):
    root, *_ = hml
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MotionTextDataset(root, split="test", strict=False)


def test_nan_motion(hml):
    root, raw, *_ = hml
    poisoned = raw["000001"].copy()
    poisoned[30, 5] = np.nan
    np.save(root / "new_joint_vecs" / "000001.npy", poisoned)
    # default (validate=True): every motion is read once at construction; strict names file + frame
    with pytest.raises(ValueError, match=r"000001\.npy: NaN/inf in frame 30.*strict=False skips"):
        MotionTextDataset(root, split="test")
    with pytest.warns(DatasetProblemWarning, match=r"nonfinite_motion: 2 \(1 motion: 000001; e\.g\. ") as record:
        lenient = MotionTextDataset(root, split="test", strict=False)
    assert len(record) == 1
    assert lenient.problem_counts == {"nonfinite_motion": 2}
    assert lenient.problem_ids == {"nonfinite_motion": ["000001"]}
    assert [r.motion_id for r in lenient.records] == ["M000001", "000002"]
    # validate=False: headers only; the NaN is caught when the item loads (in both modes)
    for strict in (True, False):
        lazy = MotionTextDataset(root, split="test", strict=strict, validate=False)
        with pytest.raises(ValueError, match=r"000001\.npy: NaN/inf in frame 30"):
            lazy[0]
        with pytest.raises(ValueError, match=r"000001\.npy: NaN/inf in frame 30"):
            lazy[1]  # sub-clip [20, 70) contains frame 30
    # a NaN outside a sub-clip does not affect that sub-clip
    poisoned = raw["000001"].copy()
    poisoned[100] = np.inf
    np.save(root / "new_joint_vecs" / "000001.npy", poisoned)
    with pytest.warns(DatasetProblemWarning, match="nonfinite_motion: 1"):
        partial = MotionTextDataset(root, split="test", strict=False)
    assert partial.problem_counts == {"nonfinite_motion": 1}
    assert partial[0]["caption"] == "a man steps back"


def test_bad_motions_skipped_with_one_warning_naming_them(hml):
    """NaN, inf and empty motions (HumanML3D's test split holds two NaN ones): strict=False skips
    each with one warning that names the motions and counts them; strict=True stops at the first."""
    root, raw, *_ = hml
    for mid, frames in (("nan1", 80), ("inf1", 90), ("empty1", 0)):
        motion = np.zeros((frames, HML_DIM), np.float32)
        if mid == "nan1":
            motion[:] = np.nan
        if mid == "inf1":
            motion[45, 7] = -np.inf
        np.save(root / "new_joint_vecs" / f"{mid}.npy", motion)
        (root / "texts" / f"{mid}.txt").write_text(caption_line("a person waves") + "\n")
    (root / "bad.txt").write_text("000001\nnan1\ninf1\nempty1\n000002\n")
    with pytest.warns(DatasetProblemWarning) as record:
        ds = MotionTextDataset(root, split="bad", strict=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert "empty_motion: 1 (1 motion: empty1;" in message
    assert "nonfinite_motion: 2 (2 motions: nan1, inf1;" in message
    assert "inf1.npy" not in message or "frame 45" in message
    assert ds.problem_ids == {"nonfinite_motion": ["nan1", "inf1"], "empty_motion": ["empty1"]}
    assert {r.motion_id for r in ds.records} == {"000001", "000002"}
    for i in range(len(ds)):
        assert torch.isfinite(ds[i]["motion"]).all()
    with pytest.raises(ValueError, match=r"nan1\.npy: NaN/inf in frame 0 \(80 bad frames"):
        MotionTextDataset(root, split="bad")
    (root / "bad.txt").write_text("empty1\n")
    with pytest.raises(ValueError, match=r"empty1\.npy: motion has 0 frames"):
        MotionTextDataset(root, split="bad", validate=False)   # seen from the header alone
    # no length filter (TMR's test convention): the empty motion is still refused, not an item
    with pytest.warns(DatasetProblemWarning, match="empty_motion: 1"):
        unfiltered = MotionTextDataset(root, split="bad", strict=False, min_frames=0, max_frames=None)
    assert len(unfiltered) == 0


def test_repeated_construction_reads_each_motion_once(hml, monkeypatch):
    from mate.data import dataset as D

    root, *_ = hml
    MotionTextDataset(root, split="test")
    calls = []
    real_load = np.load
    monkeypatch.setattr(D.np, "load", lambda *a, **k: calls.append(Path(a[0])) or real_load(*a, **k))
    MotionTextDataset(root, split="test")
    motions = [c.name for c in calls if c.parent.name == "new_joint_vecs"]
    assert motions == []          # the finite scan is cached per (path, size, mtime)
    np.save(root / "new_joint_vecs" / "000002.npy", np.zeros((250, HML_DIM), np.float32))
    MotionTextDataset(root, split="test")
    assert [c.name for c in calls if c.parent.name == "new_joint_vecs"] == ["000002.npy"]


def test_caption_modes_and_views(hml):
    root, raw, mean, std = hml
    every = MotionTextDataset(root, split="test")
    assert [(r.motion_id, r.caption.index) for r in every.records] == [
        ("000001", 0), ("000001", 1), ("M000001", 0), ("000002", 1)]
    # "first": one item per motion, its first kept caption (TMR's evaluation); 000002's first
    # caption is its too-long whole clip, so its sub-clip caption is the first kept one
    first = MotionTextDataset(root, split="test", captions="first")
    assert [(r.motion_id, r.caption.index) for r in first.records] == [
        ("000001", 0), ("M000001", 0), ("000002", 1)]
    # "random": one item per distinct clip, a caption drawn per access (Guo et al.'s evaluation)
    (root / "texts" / "M000001.txt").write_text(
        caption_line("a man kicks") + "\n" + caption_line("someone kicks right") + "\n")
    rand = MotionTextDataset(root, split="test", captions="random", seed=0)
    assert [(r.motion_id, r.start_frame, r.end_frame) for r in rand.records] == [
        ("000001", 0, 120), ("000001", 20, 70), ("M000001", 0, 120), ("000002", 20, 219)]
    drawn = {rand[2]["caption"] for _ in range(40)}
    assert drawn == {"a man kicks", "someone kicks right"}
    assert rand.lengths.tolist() == [120, 50, 120, 196]
    with pytest.raises(ValueError, match="captions must be one of all, first, random"):
        MotionTextDataset(root, split="test", captions="some")
    # a view with other crop options shares the items and reads nothing
    view = every.with_options(crop="center", crop_frames=100)
    assert view.records is every.records and view.lengths.tolist() == [100, 50, 100, 100]
    item = view[3]
    assert (item["start_frame"], item["end_frame"]) == (20 + 49, 20 + 149)
    assert every.lengths.tolist() == [120, 50, 120, 196]


def test_loader_conventions(hml):
    from mate.data.dataset import loader_convention

    root, *_ = hml
    assert loader_convention("mate", "test") == {}
    guo = MotionTextDataset(root, split="test", **loader_convention("guo", "test"))
    # the full-motion filter drops 000002 (250 frames) with its kept sub-clip
    assert [(r.motion_id, r.start_frame, r.end_frame) for r in guo.records] == [
        ("000001", 0, 120), ("000001", 20, 70), ("M000001", 0, 120)]
    assert guo.crop == "random" and guo.captions == "random"
    tmr = MotionTextDataset(root, split="test", **loader_convention("tmr", "test"))
    # TMR's test split: no length filter, no crop, the first caption of every motion
    assert [(r.motion_id, r.num_frames) for r in tmr.records] == [("000001", 120), ("M000001", 120),
                                                                   ("000002", 250)]
    assert tmr.lengths.tolist() == [120, 120, 250]
    assert loader_convention("tmr", "val")["max_frames"] == 201
    with pytest.raises(ValueError, match="unknown loader convention"):
        loader_convention("momask", "test")


def test_tmr_statistics_files(hml):
    root, raw, mean, std = hml
    os.remove(root / "Mean.npy")
    os.remove(root / "Std.npy")
    torch.save(torch.from_numpy(mean), root / "mean.pt")
    torch.save(torch.from_numpy(std), root / "std.pt")
    ds = MotionTextDataset(root, split="test")
    torch.testing.assert_close(ds[0]["motion"], normalised(raw["000001"], mean, std))
    assert ds.label == "HumanML3D-style layout (new_joint_vecs/, texts/): HumanML3D-skeleton features, 263-d at 20 fps"
    torch.save({"not": "a tensor"}, root / "std.pt")
    with pytest.raises(ValueError, match=r"std\.pt: Std must be a 1-D float array"):
        MotionTextDataset(root, split="test")


@pytest.mark.parametrize("strict", [True, False])
def test_dataset_level_files_raise_in_both_modes(hml, strict):
    root, *_ = hml
    with pytest.raises(FileNotFoundError, match=r"nosuchsplit\.txt: split file not found"):
        MotionTextDataset(root, split="nosuchsplit", strict=strict)
    with pytest.raises(FileNotFoundError, match="dataset root not found"):
        MotionTextDataset(root / "absent", strict=strict)

    np.save(root / "Std.npy", np.ones(262, np.float32))
    with pytest.raises(ValueError, match=r"Std\.npy: Std has shape \(262,\)"):
        MotionTextDataset(root, split="test", strict=strict)
    np.save(root / "Std.npy", np.zeros(263, np.float32))
    with pytest.raises(ValueError, match=r"Std\.npy: Std has 263 entries <= 0"):
        MotionTextDataset(root, split="test", strict=strict)
    np.save(root / "Std.npy", np.ones(263, np.float32))
    np.save(root / "Mean.npy", np.ones((263, 1), np.float32))
    with pytest.raises(ValueError, match=r"Mean\.npy: Mean must be a 1-D float array"):
        MotionTextDataset(root, split="test", strict=strict)
    np.save(root / "Mean.npy", np.ones(251, np.float32))
    with pytest.raises(ValueError, match=r"Mean\.npy"):  # KIT-width Mean with 263-wide Std
        MotionTextDataset(root, split="test", strict=strict)
    np.save(root / "Mean.npy", np.ones(263, np.float32))
    np.save(root / "Std.npy", np.ones(251, np.float32))
    with pytest.raises(ValueError, match=r"Std\.npy: Std has shape \(251,\)"):
        MotionTextDataset(root, split="test", strict=strict)
    os.remove(root / "Mean.npy")
    with pytest.raises(FileNotFoundError, match=r"Mean\.npy: Mean file not found"):
        MotionTextDataset(root, split="test", strict=strict)


def test_bad_tmr_annotations(tmp_path):
    entries = {
        "a": {"path": "p/a", "duration": 4.0, "annotations": [
            {"seg_id": "a_0", "text": "fine", "start": 0.0, "end": 4.0},
            {"seg_id": "a_1", "text": "backwards", "start": 3.0, "end": 1.0}]},
        "b": {"path": "p/b", "duration": 4.0, "annotations": [
            {"seg_id": "b_0", "text": "   ", "start": 0.0, "end": 4.0}]},
        "c": {"path": "p/c", "duration": 4.0, "annotations": [
            {"seg_id": "c_0", "text": "no start", "end": 4.0}]},
        "d": {"path": "p/d", "duration": 4.0, "annotations": [
            {"seg_id": "d_0", "text": "ok", "start": "soon", "end": 4.0}]},
    }
    write_tmr(tmp_path, entries, {"train": ["a", "b", "c", "d", "ghost"]})
    write_stats(tmp_path, KIT_DIM)
    for mid in entries:
        write_motion(tmp_path / "new_joint_vecs" / f"{mid}.npy", 50, KIT_DIM)
    with pytest.raises(ValueError, match=r"annotations\.json: motion 'a' annotation 1 \(seg_id "
                                         r"'a_1'\): end \(1\.0\) is before start"):
        MotionTextDataset(tmp_path)
    with pytest.warns(DatasetProblemWarning) as record:
        ds = MotionTextDataset(tmp_path, strict=False)
    assert len(record) == 1
    assert ds.problem_counts == {"malformed_caption": 3, "empty_caption": 1,
                                 "missing_annotation": 1}
    assert [r.caption.key for r in ds.records] == ["a_0"]
    (tmp_path / "splits" / "train.txt").write_text("ghost\n")
    with pytest.raises(ValueError, match=r"id 'ghost' has no entry in .*annotations\.json"):
        MotionTextDataset(tmp_path)
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"annotations\.json: not valid JSON"):
        MotionTextDataset(tmp_path)


def test_caption_line_parser():
    assert parse_humanml3d_caption_line(
        "a man kicks something or someone with his left leg.#a/DET man/NOUN kick/VERB "
        "something/PRON or/CCONJ someone/PRON with/ADP his/DET left/ADJ leg/NOUN#0.0#0.0"
    ) == ("a man kicks something or someone with his left leg.",
          ["a/DET", "man/NOUN", "kick/VERB", "something/PRON", "or/CCONJ", "someone/PRON",
           "with/ADP", "his/DET", "left/ADJ", "leg/NOUN"], 0.0, 0.0)
    assert parse_humanml3d_caption_line("walks##nan#nan") == ("walks", [], 0.0, 0.0)  # loader rule
    assert parse_humanml3d_caption_line("walks#w/VERB#1.5#2\r\n")[2:] == (1.5, 2.0)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        parse_humanml3d_caption_line("walks#w/VERB#-1#2")


def test_text_file_reader(tmp_path):
    path = tmp_path / "000007.txt"
    path.write_text(caption_line("one") + "\n\nbroken\n" + caption_line("two", 1.0, 2.0) + "\n")
    captions, problems = read_humanml3d_text_file(path, strict=False)
    assert [(c.text, c.index, c.key, c.line) for c in captions] == [
        ("one", 0, "000007_0", 1), ("two", 1, "000007_1", 4)]
    assert problems == [("malformed_caption", f"{path}:3: expected 4 '#'-separated fields "
                         "(caption#tokens#start#end), got 1 in line 'broken'")]
    with pytest.raises(ValueError, match=r"000007\.txt:3: expected 4"):
        read_humanml3d_text_file(path)
    with pytest.raises(FileNotFoundError, match=r"absent\.txt: caption file not found"):
        read_humanml3d_text_file(tmp_path / "absent.txt")


# ---------------------------------------------------------------------------------------------
# Real fixtures (../shared/fixtures)
# ---------------------------------------------------------------------------------------------


def test_real_humanml3d_motion(humanml3d_fixture, tmp_path):
    fixture = humanml3d_fixture
    (tmp_path / "new_joint_vecs").mkdir()
    (tmp_path / "texts").mkdir()
    for name in ("Mean.npy", "Std.npy", "train.txt"):
        (tmp_path / name).symlink_to(fixture / name)
    (tmp_path / "new_joint_vecs" / "012314.npy").symlink_to(fixture / "new_joint_vecs" / "012314.npy")
    (tmp_path / "texts" / "012314.txt").write_text(
        caption_line("a person kicks with the left leg") + "\n"
        + caption_line("a person raises the leg", 1.0, 4.0) + "\n")
    raw = np.load(fixture / "new_joint_vecs" / "012314.npy")
    mean, std = np.load(fixture / "Mean.npy"), np.load(fixture / "Std.npy")

    # the real train split (23,384 ids) with only this motion present: every other id is a
    # counted missing motion, including its mirror M012314, and nothing else is wrong
    with pytest.warns(DatasetProblemWarning, match="missing_motion: 23383"):
        ds = MotionTextDataset(tmp_path, split="train", strict=False, progress=False)
    assert ds.problem_counts == {"missing_motion": 23383}
    assert (ds.dataset_name, ds.fps, ds.feature_dim) == ("humanml3d", 20.0, 263)
    assert len(ds) == 2
    whole, sub = ds[0], ds[1]
    assert whole["length"] == 170 == raw.shape[0]
    torch.testing.assert_close(whole["motion"], torch.from_numpy((raw - mean) / std))
    torch.testing.assert_close(ds.denormalize(whole["motion"]), torch.from_numpy(raw),
                               rtol=1e-5, atol=1e-5)
    assert (sub["start_frame"], sub["end_frame"]) == (20, 80)
    torch.testing.assert_close(sub["motion"], torch.from_numpy((raw[20:80] - mean) / std))

    # explicit split file with just this id: strict mode is clean
    (tmp_path / "one.txt").write_text("012314\n")
    assert len(MotionTextDataset(tmp_path, split="one", validate=True)) == 2


def test_real_kitml_annotations(kitml_fixture, tmp_path):
    annotations_file = kitml_fixture / "annotations.json"
    captions, entries, problems = read_tmr_annotations(annotations_file)
    assert len(entries) == 5766 and problems == []
    assert sum(len(c) for c in captions.values()) == 12164
    assert captions["00001"][0].text == "A person is walking forwards."
    assert captions["00001"][0].key == "00001_0"

    (tmp_path / "annotations.json").symlink_to(annotations_file)
    (tmp_path / "splits").symlink_to(kitml_fixture / "splits")
    write_stats(tmp_path, KIT_DIM)
    train_ids = [line.strip() for line in (kitml_fixture / "splits" / "train.txt").read_text().split()]
    present = train_ids[:6]
    for i, mid in enumerate(present):  # TMR's frame count for the annotated duration at 12.5 fps
        write_motion(tmp_path / "new_joint_vecs" / f"{mid}.npy",
                     int(round(entries[mid]["duration"] * 12.5)), KIT_DIM, seed=i)
    with pytest.warns(DatasetProblemWarning, match=f"missing_motion: {len(train_ids) - 6}"):
        ds = MotionTextDataset(tmp_path, split="train", strict=False, crop="start", progress=False)
    assert ds.layout == "tmr" and ds.dataset_name == "kit" and ds.fps == 12.5
    assert ds.problem_counts == {"missing_motion": len(train_ids) - 6}
    expected = []
    for mid in present:
        frames = int(round(entries[mid]["duration"] * 12.5))
        for annotation in entries[mid]["annotations"]:
            start = int(annotation["start"] * 12.5)
            end = min(int(annotation["end"] * 12.5), frames)
            if 24 <= end - start < 200:
                expected.append((mid, annotation["text"], start, end))
    assert expected, "the first training motions should pass the length filter"
    got = [(r.motion_id, r.caption.text, r.start_frame, r.end_frame) for r in ds.records]
    assert got == expected
    item = ds[0]
    assert item["motion"].shape == (min(item["length"], 196), 251)
    assert item["tokens"] == [] and item["key"] == f"{expected[0][0]}_0"


def test_real_humanml3d_test_split_with_its_nan_motions(humanml3d_fixture, tmp_path):
    """HumanML3D's released test split lists 007975 and M007975, whose features are NaN. Here the
    real split file, the real Mean/Std and the real motion 012314 (as the first test id) are
    joined by stand-ins for those two: a non-strict dataset skips them with one warning naming
    them, and every item it yields is finite."""
    fixture = humanml3d_fixture
    test_ids = (fixture / "test.txt").read_text().split()
    assert {"007975", "M007975"} <= set(test_ids)
    for name in ("Mean.npy", "Std.npy", "test.txt"):
        (tmp_path / name).symlink_to(fixture / name)
    raw = np.load(fixture / "new_joint_vecs" / "012314.npy")
    (tmp_path / "new_joint_vecs").mkdir()
    (tmp_path / "texts").mkdir()
    nan_copy = raw.copy()
    nan_copy[:] = np.nan
    inf_copy = raw.copy()
    inf_copy[60:, 3] = np.inf
    for mid, motion in ((test_ids[0], raw), ("007975", nan_copy), ("M007975", inf_copy)):
        np.save(tmp_path / "new_joint_vecs" / f"{mid}.npy", motion)
        (tmp_path / "texts" / f"{mid}.txt").write_text(caption_line("a person kicks") + "\n")
    with pytest.warns(DatasetProblemWarning) as record:
        ds = MotionTextDataset(tmp_path, split="test", strict=False, progress=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert "nonfinite_motion: 2 (2 motions: 007975, M007975;" in message
    assert f"missing_motion: {len(test_ids) - 3}" in message
    assert ds.problem_ids["nonfinite_motion"] == ["007975", "M007975"]
    assert [r.motion_id for r in ds.records] == [test_ids[0]]
    assert torch.isfinite(ds[0]["motion"]).all() and ds[0]["length"] == 170
    (tmp_path / "bad.txt").write_text("007975\n")
    with pytest.raises(ValueError, match=r"007975\.npy: NaN/inf in frame 0 \(170 bad frames"):
        MotionTextDataset(tmp_path, split="bad")     # strict, the class default


def test_real_kitml_annotations_as_tmr_reads_its_test_split(kitml_fixture, tmp_path):
    """TMR's KIT-ML: its features are HumanML3D-skeleton ones (263-d, 20 fps); its test split is
    neither length-filtered nor cropped and each motion is evaluated on its first annotation."""
    from mate.data.dataset import loader_convention

    entries = json.loads((kitml_fixture / "annotations.json").read_text())
    (tmp_path / "annotations.json").symlink_to(kitml_fixture / "annotations.json")
    test_ids = (kitml_fixture / "splits" / "test.txt").read_text().split()
    # the first 12 test motions plus the longest one; TMR's frame count at 20 fps
    chosen = test_ids[:12] + [max(test_ids, key=lambda i: entries[i]["duration"])]
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "test.txt").write_text("\n".join(chosen) + "\n")
    mean, std = write_stats(tmp_path, HML_DIM)
    torch.save(torch.from_numpy(mean), tmp_path / "mean.pt")     # TMR's statistics files
    torch.save(torch.from_numpy(std), tmp_path / "std.pt")
    os.remove(tmp_path / "Mean.npy")
    os.remove(tmp_path / "Std.npy")
    for i, mid in enumerate(chosen):
        write_motion(tmp_path / "new_joint_vecs" / f"{mid}.npy", int(entries[mid]["duration"] * 20), HML_DIM, seed=i)
    ds = MotionTextDataset(tmp_path, split="test", **loader_convention("tmr", "test"))
    assert ds.layout == "tmr" and ds.feature_dim == 263 and ds.fps == 20.0
    assert ds.label == "TMR layout (annotations.json): HumanML3D-skeleton features, 263-d at 20 fps"
    expected = []
    for mid in chosen:
        first = entries[mid]["annotations"][0]
        frames = int(entries[mid]["duration"] * 20)
        expected.append((mid, first["text"], min(int(first["start"] * 20), frames), min(int(first["end"] * 20), frames)))
    assert [(r.motion_id, r.caption.text, r.start_frame, r.end_frame) for r in ds.records] == expected
    assert ds.lengths.tolist() == [e - s for _, _, s, e in expected]   # uncropped
    assert max(ds.lengths) > 1000                                      # the longest motion, whole
    # the same split under this project's defaults: every annotation, filtered and cropped
    default = MotionTextDataset(tmp_path, split="test")
    assert len(default) != len(ds) and max(default.lengths) <= 196
