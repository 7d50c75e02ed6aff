"""mate.evaluate: antonym swaps, decomposition matching, and evaluate_run on a tiny finished run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mate import evaluate as E
from mate.rundir import RunDirectoryError, load_stage_model
from mate.text.antonyms import ANTONYM_GROUPS, antonym_swaps
from mate import train


# ------------------------------------------------------------------------------- antonym swaps
def swapped(caption):
    return [s.swapped for s in antonym_swaps(caption)]


def test_antonym_swaps_one_test_per_occurrence():
    caption = "A person walks forward quickly, turns left and then raises the right hand up."
    assert swapped(caption) == [
        "A person walks backward quickly, turns left and then raises the right hand up.",
        "A person walks forward slowly, turns left and then raises the right hand up.",
        "A person walks forward quickly, turns right and then raises the right hand up.",
        "A person walks forward quickly, turns left and then raises the left hand up.",
        "A person walks forward quickly, turns left and then raises the right hand down.",
    ]
    pairs = [s.pair for s in antonym_swaps(caption)]
    assert pairs == ["forward/backward", "quickly/slowly", "left/right", "left/right", "up/down"]


@pytest.mark.parametrize("caption,expected", [
    ("walks in a counter-clockwise circle", ["walks in a clockwise circle"]),
    ("walks in a counter clockwise circle", ["walks in a clockwise circle"]),
    ("Anticlockwise spin", ["Clockwise spin"]),
    ("turns clockwise", ["turns counterclockwise"]),
    ("LEFT-hand wave", ["RIGHT-hand wave"]),
    ("steps backwards then goes upstairs fast", ["steps forwards then goes upstairs fast",
                                                 "steps backwards then goes downstairs fast",
                                                 "steps backwards then goes upstairs slow"]),
    ("jumps up and down", []),                           # coordinated with its own antonym
    ("moves from left to right", []),
    ("sits down right after waving", ["sits up right after waving"]),   # "right after": no direction
    ("leftover rightward upward", []),                   # whole words only
])
def test_antonym_swap_spellings_and_skips(caption, expected):
    assert swapped(caption) == expected


def test_antonym_accuracy_with_fake_scorers():
    captions = ["a man turns left then walks forward", "someone jumps", "a person circles clockwise slowly"]
    refs = [0, 1, 2]
    truth = set(captions)
    prefer_true = E.antonym_swap_accuracy(captions, refs, lambda t, r: [1.0 if x in truth else 0.0 for x in t])
    assert prefer_true["overall"] == 100.0
    assert prefer_true["counts"] == {**{p: 0 for p in ANTONYM_GROUPS}, "left/right": 1, "forward/backward": 1,
                                     "clockwise/counterclockwise": 1, "quickly/slowly": 1, "total": 4}
    assert prefer_true["per_pair"]["up/down"] is None and prefer_true["per_pair"]["left/right"] == 100.0
    prefer_antonym = E.antonym_swap_accuracy(captions, refs, lambda t, r: [0.0 if x in truth else 1.0 for x in t])
    assert prefer_antonym["overall"] == 0.0 and prefer_antonym["mean_margin"] == -1.0
    constant = E.antonym_swap_accuracy(captions, refs, lambda t, r: np.zeros(len(t)))
    assert constant["overall"] == 0.0                     # ties fail
    # The scorer sees each swapped text with its own caption's motion.
    seen = {}
    E.antonym_swap_accuracy(captions, refs, lambda t, r: seen.update(zip(t, r)) or np.zeros(len(t)))
    assert seen["a man turns right then walks forward"] == 0 and seen["a person circles counterclockwise slowly"] == 2
    # A scorer that is right only about left/right: per-pair accuracies tell the pairs apart.
    mixed = E.antonym_swap_accuracy(captions, refs, lambda t, r: [1.0 if x in truth else
                                                                  2.0 * ("turns right" not in x) for x in t])
    assert mixed["per_pair"]["left/right"] == 100.0 and mixed["per_pair"]["forward/backward"] == 0.0
    assert mixed["overall"] == 25.0 and mixed["correct"]["total"] == 1
    assert E.antonym_swap_accuracy(["no antonym here"], [0], lambda t, r: [])["overall"] is None


def test_decomposition_normalisation():
    truth = [["a man jumps", "walks forward", "sits down"]]
    assert E.decomposition_accuracy([["A man jumps,", "and then walks forward", "Finally, sits down."]], truth) == \
        {"exact": 100.0, "count": 100.0, "num_captions": 1}
    assert E.decomposition_accuracy([["a man jumps", "sits down", "walks forward"]], truth)["exact"] == 0.0
    assert E.decomposition_accuracy([["a man jumps and then walks forward", "sits down"]], truth) == \
        {"exact": 0.0, "count": 0.0, "num_captions": 1}
    assert E.normalise_subtexts(["after that he turns", "before jumping"]) == [("he", "turns"), ("jumping",)]


# ------------------------------------------------------------------------------- a tiny run
@pytest.fixture(scope="module")
def tiny_run(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path_factory):
    """A finished run in seconds: the tiny synthetic set with only 4 training motions and no
    validation split (the segmentation stage encodes every training clip), the tiny encoder."""
    data = tmp_path_factory.mktemp("evaldata")
    for name in ("new_joint_vecs", "texts", "Mean.npy", "Std.npy", "segments.json", "test.txt"):
        (data / name).symlink_to(tiny_synthetic_dataset / name)
    train_ids = (tiny_synthetic_dataset / "train.txt").read_text().split()[:4]
    (data / "train.txt").write_text("\n".join(train_ids) + "\n")
    out = tmp_path_factory.mktemp("evalrun")
    train.main(["--data", str(data), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--out", str(out),
                "--stage0-epochs", "1", "--epochs", "1", "--batch-size", "8", "--max-steps", "1", "--no-export"])
    return out


@pytest.fixture(scope="module")
def evaluated(tiny_run):
    return E.evaluate_run(tiny_run, split="test", progress=False)


def test_evaluate_run_metrics(tiny_run, evaluated):
    m = evaluated
    assert set(m) >= {"retrieval", "antonym_swap_accuracy", "segmentation_boundary_error_s",
                      "decomposition_accuracy", "meta", "t2m_standard"}
    for variant in ("original", "baseline", "mate"):
        for protocol in ("all", "threshold", "small_batches"):
            for direction in ("t2m", "m2t"):
                r = m["retrieval"][variant][protocol][direction]
                assert set(r) == {"R@1", "R@2", "R@3", "R@5", "R@10", "MedR"}
                assert all(0.0 <= r[f"R@{k}"] <= 100.0 for k in (1, 2, 3, 5, 10))
                assert r["R@1"] <= r["R@2"] <= r["R@3"] <= r["R@5"] <= r["R@10"]
                assert r["MedR"] >= 1.0
            # a threshold positive can only help
            assert m["retrieval"][variant]["threshold"]["t2m"]["R@1"] >= m["retrieval"][variant]["all"]["t2m"]["R@1"]
        acc = m["antonym_swap_accuracy"][variant]
        assert set(acc) >= {"overall", "per_pair", "counts"}
        assert acc["counts"]["total"] > 0 and 0.0 <= acc["overall"] <= 100.0
        assert sum(v for k, v in acc["counts"].items() if k != "total") == acc["counts"]["total"]
        std = m["t2m_standard"][variant]
        assert 0 <= std["R_precision_top1"] <= std["R_precision_top2"] <= std["R_precision_top3"] <= 1
    assert m["antonym_swap_accuracy"]["original"]["counts"] == m["antonym_swap_accuracy"]["mate"]["counts"]
    # the word table: the original is the reference; the trained tables moved (one AdamW step)
    table = m["word_table"]
    assert table["original"]["mean_relative_change"] == 0.0
    assert table["baseline"]["mean_relative_change"] > 0.0 and table["mate"]["mean_relative_change"] > 0.0
    for variant in table:
        assert all(-1.0 <= c <= 1.0 for c in table[variant]["antonym_cosine"].values())
        assert "_rows" not in table[variant]
    seg = m["segmentation_boundary_error_s"]
    assert seg["num_captions"] > 0 and seg["dp"] >= 0.0 and seg["uniform"] >= 0.0
    dec = m["decomposition_accuracy"]
    assert 0.0 <= dec["exact"] <= dec["count"] <= 100.0 and dec["num_captions"] == m["meta"]["num_captions"]
    meta = m["meta"]
    assert meta["split"] == "test" and meta["num_captions"] >= meta["num_clips"] > 0
    on_disk = json.loads((tiny_run / "eval" / "metrics.json").read_text())
    assert on_disk["retrieval"] == json.loads(json.dumps(m["retrieval"]))
    report = (tiny_run / "eval" / "report.md").read_text()
    for heading in ("Retrieval", "Antonym-swap accuracy", "Word-embedding table", "Segmentation", "Text decomposition"):
        assert heading in report


def test_original_variant_resets_only_the_word_table(tiny_run, tiny_hf_encoder_dir):
    import transformers

    baseline = load_stage_model(tiny_run, 0)
    original = load_stage_model(tiny_run, 0, original_word_embeddings=True)
    fresh = transformers.AutoModel.from_pretrained(tiny_hf_encoder_dir).get_input_embeddings().weight
    assert torch.equal(original.text_encoder.word_embeddings.weight, fresh)
    assert not torch.equal(baseline.text_encoder.word_embeddings.weight, fresh)
    a, b = baseline.state_dict(), original.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == ["text_encoder.model.embeddings.word_embeddings.weight"]
    assert not baseline.training


def test_missing_stage_is_named(tiny_run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_run, partial, ignore=shutil.ignore_patterns("stage1", "eval", "tensorboard"))
    with pytest.raises(RunDirectoryError, match=r"stage1/model\.pt \(stage 1 \(MATE\) has not finished\).*"
                                                  r"python -m mate\.train --out"):
        E.evaluate_run(partial, progress=False)
    with pytest.raises(SystemExit, match="stage1/model.pt"):
        E.main([str(partial)])
    with pytest.raises(RunDirectoryError, match="is not a directory"):
        load_stage_model(tmp_path / "nowhere", 0)


# ------------------------------------------------------------- a real split with bad motions
def _bad_humanml3d_split(root, humanml3d_fixture, synthetic):
    """A HumanML3D-layout set: the real Mean/Std and motion 012314, the tiny synthetic set's
    motions, and the bad motions of real releases: 007975 (NaN everywhere, as in HumanML3D's test
    split), M007975 (inf from frame 50) and 999999 (0 frames). 007975 is the first test id."""
    (root / "new_joint_vecs").mkdir(parents=True)
    for name in ("Mean.npy", "Std.npy"):
        (root / name).symlink_to(humanml3d_fixture / name)
    (root / "texts").mkdir()
    real = np.load(humanml3d_fixture / "new_joint_vecs" / "012314.npy")
    nan, inf = real.copy(), real.copy()
    nan[:] = np.nan
    inf[50:, 10] = np.inf
    motions = {"012314": real, "007975": nan, "M007975": inf, "999999": np.zeros((0, 263), np.float32)}
    for mid, motion in motions.items():
        np.save(root / "new_joint_vecs" / f"{mid}.npy", motion)
        (root / "texts" / f"{mid}.txt").write_text(
            "a person kicks with the left leg then walks forward#a/DET person/NOUN kick/VERB#0.0#0.0\n"
            "someone kicks to the left#someone/PRON kick/VERB#0.0#0.0\n")
    synthetic_ids = (synthetic / "all.txt").read_text().split()
    for mid in synthetic_ids:
        (root / "new_joint_vecs" / f"{mid}.npy").symlink_to(synthetic / "new_joint_vecs" / f"{mid}.npy")
        (root / "texts" / f"{mid}.txt").symlink_to(synthetic / "texts" / f"{mid}.txt")
    test = ["007975", "012314"] + (synthetic / "test.txt").read_text().split() + ["M007975", "999999"]
    (root / "test.txt").write_text("\n".join(test) + "\n")
    (root / "train.txt").write_text("\n".join((synthetic / "train.txt").read_text().split() + ["007975"]) + "\n")
    (root / "nsim_test.txt").write_text("\n".join(test[:-2]) + "\n")   # TMR's (c): all but the last two
    return root


def test_real_split_with_bad_motions_is_evaluated_end_to_end(tiny_run, humanml3d_fixture, tiny_synthetic_dataset,
                                                            tmp_path):
    """`python -m mate.evaluate` (its Python entry, both protocols and the figures) on a test split
    holding a NaN, an inf and an empty motion: no crash, one warning per split naming and counting
    them, the skipped motions in the metrics, TMR's protocols on the remaining motions."""
    from mate.data.dataset import DatasetProblemWarning

    data = _bad_humanml3d_split(tmp_path / "data", humanml3d_fixture, tiny_synthetic_dataset)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    with pytest.warns(DatasetProblemWarning) as record:
        out = E.main([str(run), "--data", str(data), "--protocol", "both", "--seeds", "1", "--probe-epochs", "1",
                      "--probes", "pooled", "--no-progress"])
    test_warnings = {str(w.message) for w in record if "split='test'" in str(w.message)}
    assert len(test_warnings) == 1          # the co-trained and the plug-and-play test splits: one summary
    message = test_warnings.pop()
    assert "nonfinite_motion: 4 (2 motions: 007975, M007975;" in message   # 2 captions each
    assert "empty_motion: 1 (1 motion: 999999;" in message
    assert any("split='train'" in str(w.message) and "007975" in str(w.message) for w in record)
    meta = out["meta"]
    assert meta["skipped"]["motions"] == {"empty_motion": ["999999"], "nonfinite_motion": ["007975", "M007975"]}
    assert meta["num_motions"] == 1 + len((tiny_synthetic_dataset / "test.txt").read_text().split())
    assert meta["layout"].startswith("HumanML3D-style layout")
    tmr = out["retrieval_tmr"]
    assert set(tmr) == {"original", "baseline", "mate"}
    assert meta["retrieval_tmr"]["num_items"] == meta["num_motions"]          # one (first) caption per motion
    assert meta["retrieval_tmr"]["nsim_items"] == meta["num_motions"]       # 007975 is not evaluated
    assert meta["retrieval_tmr"]["nsim_ids_not_evaluated"] == 1
    for variant in tmr:
        assert 0.0 <= tmr[variant]["normal"]["t2m"]["R@1"] <= 100.0
        assert tmr[variant]["threshold"]["t2m"]["R@1"] >= tmr[variant]["normal"]["t2m"]["R@1"]
        assert tmr[variant]["nsim"] is not None and tmr[variant]["guo"] is None   # fewer than 32 motions
    assert out["plug_and_play"]["counts"]["test_motions"] == meta["num_motions"]
    report = (run / "eval" / "report.md").read_text()
    assert "Skipped bad inputs" in report and "TMR's protocols exactly" in report
    assert (run / "eval" / "stick_figures_012314.png").is_file()     # the NaN first test motion passed over
    # --strict-data: the first bad motion ends the command with one error line naming it
    with pytest.raises(SystemExit, match=r"^error: .*007975\.npy: NaN/inf in frame 0"):
        E.main([str(run), "--data", str(data), "--protocol", "co-trained", "--no-figures", "--no-progress",
                "--strict-data"])
