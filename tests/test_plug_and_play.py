"""mate.plug_and_play: frozen encoders compared through fresh downstream probes, and the bootstrap
over test motions behind its intervals."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mate import metrics as M
from mate import plug_and_play as P
from mate.text.encoders import build_text_encoder

TINY = P.ProbeConfig(seeds=(0, 1), epochs=2, batch_size=8, dim=16, hidden=16, token_hidden=16, bootstrap=200)


# ------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_interval_resamples_groups_not_items():
    rng = np.random.default_rng(0)
    # 40 motions, 10 items each; all items of a motion share its value: 400 items but 40 samples.
    motion_value = rng.random(40) < 0.7
    values = np.repeat(motion_value, 10).astype(float)
    groups = np.repeat(np.arange(40), 10)
    mean, low, high = M.bootstrap_mean_interval(values, groups, 2000, seed=1)
    assert mean == pytest.approx(values.mean()) and low < mean < high
    _, item_low, item_high = M.bootstrap_mean_interval(values, np.arange(400), 2000, seed=1)
    # treating the 400 items as independent would make the interval about sqrt(10) times too narrow
    assert (high - low) > 2.5 * (item_high - item_low)
    # a constant has a zero-width interval; resampling is seeded
    assert M.bootstrap_mean_interval(np.ones(5), np.arange(5), 100) == (1.0, 1.0, 1.0)
    assert M.bootstrap_mean_interval(values, groups, 300, seed=4) == M.bootstrap_mean_interval(values, groups, 300, seed=4)


def test_bootstrap_interval_bad_input():
    with pytest.raises(ValueError, match="groups has shape"):
        M.bootstrap_mean_interval(np.ones(3), np.arange(4))
    with pytest.raises(ValueError, match="no values"):
        M.bootstrap_mean_interval(np.ones(0), np.arange(0))
    with pytest.raises(ValueError, match="level"):
        M.bootstrap_mean_interval(np.ones(3), np.arange(3), level=1.5)


# -------------------------------------------------------------------------------- the protocol
def test_probe_config_validates():
    with pytest.raises(ValueError, match="probes"):
        P.ProbeConfig(probes=("pooled", "bag"))
    with pytest.raises(ValueError, match="seeds"):
        P.ProbeConfig(seeds=())
    with pytest.raises(ValueError, match="epochs"):
        P.ProbeConfig(epochs=0)


def test_test_texts_hold_every_swap(tiny_synthetic_dataset):
    split = P.load_split(tiny_synthetic_dataset, "train", chunks=4)
    tests = P.TestTexts.build(split.captions)
    assert tests.texts[:len(split.captions)] == split.captions
    assert tests.antonym, "the synthetic captions have antonym words"
    for row, swapped, pair in tests.antonym + tests.synonym:
        assert row < len(split.captions) <= swapped and tests.texts[swapped] != split.captions[row]
    assert split.motions.shape == (len(split.motion_ids), 263 * 5) and split.motions.dtype == torch.float32
    motion = torch.randn(7, 3)
    descriptor = P.motion_descriptor(motion, chunks=4)   # 7 frames -> spans of 2, 2, 2, 1
    torch.testing.assert_close(descriptor[:3], motion[:2].mean(0))
    torch.testing.assert_close(descriptor[9:12], motion[6:].mean(0))
    torch.testing.assert_close(descriptor[12:], motion.std(0, unbiased=False))
    assert P.motion_descriptor(torch.randn(2, 3), chunks=4).shape == (15,)   # fewer frames than chunks


def test_identical_encoders_get_identical_probes_and_a_zero_difference(tiny_synthetic_dataset, tiny_hf_encoder_dir):
    """Same initialisation and batch order for every encoder: two copies of one encoder give the
    same outcomes, so their paired difference is exactly zero; an encoder whose word table is
    scrambled does not."""
    spec = f"hf:{tiny_hf_encoder_dir}"

    def scrambled():
        encoder = build_text_encoder(spec)
        with torch.no_grad():
            table = encoder.word_embeddings.weight
            table.copy_(table[torch.randperm(table.shape[0], generator=torch.Generator().manual_seed(0))])
        return encoder

    encoders = {"a": lambda: build_text_encoder(spec), "b": lambda: build_text_encoder(spec), "scrambled": scrambled}
    results = P.compare_encoders(encoders, tiny_synthetic_dataset, TINY, split="train", progress=False)
    assert results["reference"] == "a" and set(results["paired"]) == {"b", "scrambled"}
    counts = results["counts"]
    assert counts["antonym_tests"] > 0 and counts["test_captions"] >= counts["test_clips"] > 0
    for probe in TINY.probes:
        a, b = results["encoders"]["a"][probe], results["encoders"]["b"][probe]
        assert a == b
        zero = results["paired"]["b"][probe]
        assert all(d["mean"] == d["low"] == d["high"] == 0.0 for d in zero.values())
        metrics = a["antonym_accuracy"]
        assert 0.0 <= metrics["low"] <= metrics["mean"] <= metrics["high"] <= 100.0
        assert a["t2m_R@1"]["mean"] <= a["t2m_R@5"]["mean"] <= a["t2m_R@10"]["mean"]
    assert results["encoders"]["scrambled"]["pooled"] != results["encoders"]["a"]["pooled"]
    tables = results["word_table"]
    assert tables["a"] == tables["b"] and tables["scrambled"] != tables["a"]
    original = build_text_encoder(spec)
    words = original.word_token_ids(["left", "right"])
    rows = [original.word_embeddings.weight[ids].mean(0) for ids in words]
    expected = torch.nn.functional.cosine_similarity(rows[0], rows[1], dim=0).item()
    assert tables["a"]["left/right"] == pytest.approx(expected, abs=1e-6)
    assert tables["a"]["mean"] == pytest.approx(np.mean([v for k, v in tables["a"].items() if k != "mean"]))
    json.dumps(results)  # JSON-ready
    report = "\n".join(P.report_lines(results))
    assert "Too small to decide" in report and "Paired differences against `a`" in report
    assert "Fig. 5" in report and "left/right" in report


def test_evaluate_cli_runs_the_protocol_on_a_run(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    from mate import evaluate, train

    run = tmp_path / "run"
    train.main(["--data", str(tiny_synthetic_dataset), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--out", str(run),
                "--stage0-epochs", "1", "--epochs", "1", "--batch-size", "8", "--max-steps", "1", "--no-export"])
    out = evaluate.main([str(run), "--protocol", "plug-and-play", "--split", "train", "--seeds", "1",
                         "--probe-epochs", "1", "--probes", "pooled", "--no-progress", "--no-figures",
                         "--compare", f"again={run}"])
    pnp = out["plug_and_play"]
    assert list(pnp["encoders"]) == ["original", "baseline", "mate", "again"]
    assert pnp["encoders"]["again"] == pnp["encoders"]["mate"]    # the same stage-1 table
    assert (run / "eval" / "plug_and_play.json").is_file() and (run / "eval" / "plug_and_play.md").is_file()
    with pytest.raises(SystemExit, match="expected NAME=PATH"):
        evaluate.main([str(run), "--protocol", "plug-and-play", "--compare", "nothing"])
    with pytest.raises(SystemExit, match="not an exported encoder folder or a run directory"):
        evaluate.main([str(run), "--protocol", "plug-and-play", "--compare", f"x={tmp_path / 'nowhere'}"])


def test_probe_data_defaults(tmp_path, tiny_synthetic_dataset, monkeypatch):
    """A run on generated data gets a larger synthetic probe set made once in RUN/eval/probe_data;
    a run on a named dataset uses that dataset; --probe-data overrides both."""
    from mate import rundir

    monkeypatch.setattr(P, "PROBE_SET_MOTIONS", 12)   # the real default takes seconds; the rule is the same
    synthetic_run, named_run = tmp_path / "synthetic", tmp_path / "named"
    for root, synthetic in ((synthetic_run, True), (named_run, False)):
        root.mkdir()
        data = root / "data" if synthetic else tiny_synthetic_dataset
        rundir.write_manifest(root, encoder="minilm", data_root=data, synthetic=synthetic, preset="cpu-small", config={})
    made = P.probe_data(synthetic_run)
    assert made == rundir.RunDir(synthetic_run).eval / "probe_data"
    assert len((made / "train.txt").read_text().split()) + len((made / "test.txt").read_text().split()) \
        + len((made / "val.txt").read_text().split()) == 12
    stamp = (made / "train.txt").stat().st_mtime_ns
    assert P.probe_data(synthetic_run) == made and (made / "train.txt").stat().st_mtime_ns == stamp   # made once
    assert P.probe_data(named_run) == tiny_synthetic_dataset
    assert P.probe_data(synthetic_run, tiny_synthetic_dataset) == tiny_synthetic_dataset
    with pytest.raises(rundir.RunDirectoryError, match="not a directory"):
        P.probe_data(named_run, tmp_path / "nowhere")
