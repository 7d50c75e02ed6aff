"""mate.plots: every figure is a valid, non-empty, deterministic PNG; bad inputs raise ValueError."""
from __future__ import annotations

import csv
import struct

import numpy as np
import pytest
import torch

from mate import plots
from mate.text.antonyms import word_embedding_vectors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_width=300, min_height=150):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_width and height >= min_height, (width, height)
    assert len(data) > 5_000  # something was drawn
    assert not path.with_name(path.name + ".tmp.png").exists()
    return width, height


@pytest.fixture(scope="module")
def encoders(tiny_hf_encoder_dir):
    """The tiny encoder as "original", and a copy with a perturbed table as "MATE"."""
    from mate.text.encoders import build_text_encoder

    original = build_text_encoder(f"hf:{tiny_hf_encoder_dir}")
    changed = build_text_encoder(f"hf:{tiny_hf_encoder_dir}")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        table = changed.word_embeddings.weight
        table.add_(0.5 * torch.randn(table.shape, generator=g) * table.std())
    return {"original": original, "MATE": changed}


PAIRS = [("left", "right"), ("clockwise", "counterclockwise"), ("forward", "backward"), ("quickly", "slowly")]


def test_word_embedding_map(encoders, tmp_path):
    path = plots.plot_word_embedding_map(encoders, PAIRS + ["walk"], tmp_path / "map.png")
    assert path == tmp_path / "map.png"
    assert_png(path)
    again = plots.plot_word_embedding_map(encoders, PAIRS + ["walk"], tmp_path / "map2.png")
    assert path.read_bytes() == again.read_bytes()  # deterministic
    with pytest.raises(ValueError):
        plots.plot_word_embedding_map(encoders, "left", tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_word_embedding_map({}, PAIRS, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_word_embedding_map(encoders, [("left", "right", "up")], tmp_path / "x.png")


def test_word_vectors_are_normalised_token_means(encoders):
    enc = encoders["original"]
    vec = word_embedding_vectors(enc, ["counterclockwise"], normalise=False)
    ids = enc.word_token_ids(["counterclockwise"])[0]
    expected = enc.word_embeddings.weight[ids].mean(0).detach().double().numpy()
    np.testing.assert_allclose(vec[0], expected, rtol=1e-6)
    unit = word_embedding_vectors(enc, ["left", "right"])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-9)


def test_antonym_similarity_heatmap(encoders, tmp_path):
    three = {"original": encoders["original"], "baseline": encoders["original"], "MATE": encoders["MATE"]}
    assert_png(plots.plot_antonym_similarity_heatmap(three, PAIRS, tmp_path / "heat.png"))
    with pytest.raises(ValueError):
        plots.plot_antonym_similarity_heatmap(three, ["left"], tmp_path / "x.png")


def test_segmentation_timeline(tmp_path):
    subtexts = ["a person walks forward", "turns around clockwise", "then sits down slowly on a chair"]
    path = plots.plot_segmentation_timeline(subtexts, [0, 35, 80, 140], [0, 40, 70, 140], 20.0, tmp_path / "seg.png")
    assert_png(path)
    assert_png(plots.plot_segmentation_timeline(subtexts, [0, 35, 80, 140], None, 20.0, tmp_path / "pred.png"))
    with pytest.raises(ValueError, match="3 sub-texts"):
        plots.plot_segmentation_timeline(subtexts, [0, 70, 140], [0, 40, 70, 140], 20.0, tmp_path / "x.png")
    with pytest.raises(ValueError, match="true_bounds_frames"):
        plots.plot_segmentation_timeline(subtexts, [0, 35, 80, 140], [0, 40, 140], 20.0, tmp_path / "x.png")
    with pytest.raises(ValueError, match="increase"):
        plots.plot_segmentation_timeline(subtexts, [0, 80, 35, 140], None, 20.0, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_segmentation_timeline(subtexts, [0, 35, float("nan"), 140], None, 20.0, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_segmentation_timeline([], [0], None, 20.0, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_segmentation_timeline(subtexts, [0, 35, 80, 140], None, 0.0, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_stick_figures(tiny_synthetic_dataset, tmp_path):
    from mate.data.features import recover_joints

    vec = sorted((tiny_synthetic_dataset / "new_joint_vecs").glob("*.npy"))[0]
    joints = recover_joints(np.load(vec))
    assert_png(plots.plot_stick_figures(joints, tmp_path / "stick.png", frames=6))
    # torch input, KIT-ML's 21 joints, more frames requested than the motion has
    kit = torch.from_numpy(np.cumsum(np.random.default_rng(0).normal(size=(5, 21, 3)), axis=0))
    assert_png(plots.plot_stick_figures(kit, tmp_path / "kit.png", frames=8))
    with pytest.raises(ValueError, match="22"):
        plots.plot_stick_figures(np.zeros((10, 5, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_stick_figures(np.zeros((10, 22)), tmp_path / "x.png")
    with pytest.raises(ValueError):
        plots.plot_stick_figures(joints, tmp_path / "x.png", frames=0)


def test_training_curves(tmp_path):
    csv_path = tmp_path / "metrics.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stage", "split", "epoch", "step", "name", "value", "time_s"])
        for stage, names in (("stage0", ("total", "rec", "sent")), ("stage1", ("total", "rec", "sent", "self", "cross"))):
            for step in range(1, 11):
                for i, name in enumerate(names):
                    w.writerow([stage, "train", (step - 1) // 5, step, name, 3.0 / (step + i), step])
            for epoch in (0, 1):
                for i, name in enumerate(names):
                    w.writerow([stage, "val", epoch, 5 * (epoch + 1), name, 2.5 / (epoch + 1 + i), 1])
    assert_png(plots.plot_training_curves(csv_path, tmp_path / "curves.png"))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        plots.plot_training_curves(bad, tmp_path / "x.png")
    with pytest.raises(FileNotFoundError):
        plots.plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")


@pytest.fixture
def one_thread():
    """One intra-op thread: the tiny models gain nothing from more, and on a shared 2-core machine
    oversubscribed threads make a tiny run several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_render_run_figures(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path_factory, one_thread):
    """A tiny finished run (seconds) -> every figure in RUN/eval/."""
    from mate import train

    out = tmp_path_factory.mktemp("plots_run")
    train.main(["--data", str(tiny_synthetic_dataset), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--out", str(out),
                "--stage0-epochs", "1", "--epochs", "1", "--batch-size", "8", "--max-steps", "2", "--log-every", "1",
                "--no-export"])
    paths = plots.render_run_figures(out, device="cpu")
    names = sorted(p.name for p in paths)
    assert all(p.parent == out / "eval" for p in paths)
    for expected in ("word_embedding_map.png", "antonym_similarity.png", "training_curves.png"):
        assert expected in names
    assert any(n.startswith("segmentation_") for n in names)  # the synthetic set has ground truth
    assert any(n.startswith("stick_figures_") for n in names)
    for p in paths:
        assert_png(p)
