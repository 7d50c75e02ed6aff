"""The shortcut test of a trained model's word queries (mate.diagnostics)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from mate import diagnostics, rundir, train
from mate.model.losses import cross_negatives, lemma_exclusion


@pytest.fixture(scope="module")
def tiny_run(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("diag") / "run"
    train.main(["--data", str(tiny_synthetic_dataset), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--out", str(run),
                "--stage0-epochs", "1", "--epochs", "1", "--batch-size", "8", "--max-steps", "2", "--no-export"])
    return run


def test_shortcut_test_counts_match_a_recomputation(tiny_run):
    out = diagnostics.word_query_diagnostics(tiny_run, "train", max_batches=1, batch_size=8)
    assert out["own_queries"] == 8 and 0 < out["cross_queries"] <= 8 * 7
    for k in ("own_accuracy", "cross_accuracy"):
        assert 0.0 <= out[k] <= 1.0
    assert -1.0 <= out["cross_motion_cos"] <= 1.0 and out["cross_loss"] >= 0.0
    # Recompute the cross pairs of the first batch from the model's own features.
    from torch.utils.data import Subset

    from mate.data.dataset import MotionTextDataset
    from mate.text.vocab import Vocabulary
    from mate.train.batches import Collator, make_loader
    from mate.train.pipeline import word_samples

    model = rundir.load_stage_model(tiny_run, 1)
    run = rundir.RunDir(tiny_run)
    dataset = MotionTextDataset(rundir.data_root(tiny_run), "train", crop="start")
    words = word_samples(dataset.records, json.loads(run.segments.read_text()), Vocabulary.load(run.vocab))
    usable = [i for i, r in enumerate(dataset.records) if words.get(r.caption.key)]
    batch = next(iter(make_loader(Subset(dataset, usable), Collator(model.text_encoder, words, seed=0), 8, seed=0,
                                  drop_last=False)))
    with torch.no_grad():
        f = model(batch)
        negatives = cross_negatives(f.words.f_e, f.f_t, 7)
        keep = ~lemma_exclusion(f.words.target, batch["caption_lemmas"]).gather(1, negatives)
        pred = (F.normalize(f.words.other_motion, dim=-1) @ F.normalize(model.prototypes, dim=-1).T).argmax(-1)
    assert out["cross_queries"] == int(keep.sum())
    assert out["cross_accuracy"] == pytest.approx(float(((pred == f.words.target[:, None]) & keep).sum()) / int(keep.sum()))


def test_word_query_features_are_the_localised_queries(tiny_run):
    data = diagnostics.word_query_features(tiny_run, ("left", "right"), split="train", max_motions=5)
    f, word, has = data["features"], data["word"], data["has_word"]
    assert f.shape[0] == word.shape[0] == has.shape[0] == 10 and f.dtype.name == "float32"
    assert word.tolist() == [0] * 5 + [1] * 5
    model = rundir.load_stage_model(tiny_run, 1)
    from mate.data.dataset import MotionTextDataset, collate_motion_text, distinct_clips

    dataset = MotionTextDataset(rundir.data_root(tiny_run), "train", crop="start")
    _, first = distinct_clips(dataset.records)
    batch = collate_motion_text([dataset[first[3]]])
    with torch.no_grad():
        frames, _ = model.encode_motion(batch["motion"], batch["lengths"])
        q = model.encode_words(model.text_encoder.word_token_ids(["right"]))
        one = model.localise_words(q, frames, batch["lengths"], torch.tensor([0]), torch.zeros(1), torch.zeros(1))
    torch.testing.assert_close(torch.from_numpy(f[5 + 3]), one[0], rtol=1e-4, atol=1e-5)


def test_shortcut_cli_writes_json_and_reports_errors(tiny_run, tmp_path, capsys):
    out = diagnostics.main([str(tiny_run), "--batches", "1", "--figure-split", "train"])
    assert json.loads((tiny_run / "eval" / "word_queries.json").read_text()) == out
    assert (tiny_run / "eval" / "word_queries.png").read_bytes()[:4] == b"\x89PNG"
    assert "cross_accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="error: "):
        diagnostics.main([str(tmp_path / "nowhere")])
