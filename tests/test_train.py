"""`python -m mate.train` end to end on a tiny synthetic set with a tiny encoder."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from mate import train


def run_args(data, encoder_dir, out, *extra):
    return ["--data", str(data), "--encoder", f"hf:{encoder_dir}", "--out", str(out), "--stage0-epochs", "1",
            "--epochs", "2", "--batch-size", "8", "--max-steps", "3", "--log-every", "1", *extra]


@pytest.fixture(scope="module")
def finished_run(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    summary = train.main(run_args(tiny_synthetic_dataset, tiny_hf_encoder_dir, out))
    return out, summary


def test_run_directory_contents(finished_run):
    out, summary = finished_run
    for name in ("train.log", "metrics.csv", "summary.json", "subtexts.json", "vocab.json", "segments.json",
                 "stage0/model.pt", "stage1/model.pt", "encoder/config.json", "encoder/mate_text_encoder.json"):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").iterdir())
    assert summary["stage0"]["steps"] == 3 and summary["stage1"]["steps"] == 3
    assert summary["trainable_parameters"]["touched_rows"] > 0
    # peak memory per stage (host RSS; CUDA only on a GPU)
    for stage in ("stage0", "segments", "stage1", "export"):
        mem = summary["memory"][stage]
        assert mem["peak_rss_bytes"] > 50 << 20 and mem["seconds"] > 0, (stage, mem)
    assert json.loads((out / "summary.json").read_text())["memory"].keys() == summary["memory"].keys()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    names = {(r["stage"], r["name"]) for r in rows if r["split"] == "train"}
    assert {("stage0", "rec"), ("stage0", "sent")} <= names
    assert {("stage1", n) for n in ("self", "cross", "align", "rec", "sent")} <= names
    assert all(float(r["value"]) == float(r["value"]) for r in rows)  # no NaN


def test_manifest_rebuilds_the_run_config(finished_run, tiny_synthetic_dataset, tiny_hf_encoder_dir):
    """run.json holds the encoder, the data folder and the fully resolved configuration: the run's
    TrainConfig is rebuilt from it exactly (what evaluation and plots read instead of logs)."""
    from mate.rundir import data_root, encoder_spec, read_manifest

    out, _ = finished_run
    manifest = read_manifest(out)
    assert manifest["encoder"] == f"hf:{tiny_hf_encoder_dir}" and encoder_spec(out) == manifest["encoder"]
    assert data_root(out) == tiny_synthetic_dataset and not manifest["synthetic_data"]
    config = train.TrainConfig.from_dict(manifest["config"])
    assert config.resolved and config == train.cli.config_from_args(
        train.build_parser().parse_args(run_args(tiny_synthetic_dataset, tiny_hf_encoder_dir, out))).resolve()
    assert (config.batch_size, config.max_steps, config.epochs, config.d_model) == (8, 3, 2, 128)
    assert manifest["argv"][:2] == ["--data", str(tiny_synthetic_dataset)]
    assert {"mate", "torch", "python"} <= set(manifest["versions"])


def test_python_api_equals_the_command_line(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    """mate.train.run(TrainConfig) is what the command line runs: same losses, same table."""
    common = dict(data=tiny_synthetic_dataset, encoder=f"hf:{tiny_hf_encoder_dir}", stage0_epochs=1, epochs=1,
                  batch_size=8, max_steps=2, log_every=1, deterministic=True)
    api = train.run(train.TrainConfig(out=tmp_path / "api", **common))
    cli = train.main(run_args(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path / "cli", "--epochs", "1",
                              "--max-steps", "2", "--deterministic"))
    assert api["stage1"]["last_train"] == cli["stage1"]["last_train"]
    a = torch.load(tmp_path / "api" / "stage1" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cli" / "stage1" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(train.ConfigError, match="--batch-size must be positive"):
        train.run(train.TrainConfig(out=tmp_path / "bad", batch_size=0))
    assert not (tmp_path / "bad").exists()


def test_segments_are_valid_partitions(finished_run):
    out, _ = finished_run
    segments = json.loads((out / "segments.json").read_text())
    subtexts = json.loads((out / "subtexts.json").read_text())
    assert segments.keys() == subtexts.keys()
    segmented = 0
    for key, seg in segments.items():
        bounds = seg["bounds_frames"]
        assert bounds[0] == 0 and all(a < b for a, b in zip(bounds, bounds[1:]))
        assert len(bounds) == len(seg["subtexts"]) + 1
        segmented += len(seg["subtexts"]) > 1
    assert segmented > 0


def test_export_loads_without_mate_and_only_word_rows_changed(finished_run, tiny_hf_encoder_dir, tmp_path):
    out, _ = finished_run
    code = ("import transformers, sys; m = transformers.AutoModel.from_pretrained(sys.argv[1]); "
            "assert 'mate' not in sys.modules; print(type(m).__name__)")
    result = subprocess.run([sys.executable, "-P", "-c", code, str(out / "encoder")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import transformers

    original = transformers.AutoModel.from_pretrained(tiny_hf_encoder_dir).state_dict()
    exported = transformers.AutoModel.from_pretrained(out / "encoder").state_dict()
    assert original.keys() == exported.keys()
    changed = [k for k in original if not torch.equal(original[k], exported[k])]
    assert changed == ["embeddings.word_embeddings.weight"]


def test_rerun_reuses_every_stage(finished_run, tiny_synthetic_dataset, tiny_hf_encoder_dir):
    out, _ = finished_run
    before = (out / "stage1" / "model.pt").stat().st_mtime_ns
    train.main(run_args(tiny_synthetic_dataset, tiny_hf_encoder_dir, out))
    log = (out / "train.log").read_text()
    for stage in ("subtexts: reusing", "stage0: reusing", "segments: reusing", "stage1: reusing"):
        assert stage in log
    assert (out / "stage1" / "model.pt").stat().st_mtime_ns == before


def test_prototype_init_random_shares_stage0_and_retrains_stage1(finished_run, tiny_synthetic_dataset,
                                                                  tiny_hf_encoder_dir, tmp_path):
    """--prototype-init random reads only stage 1: stage 0 (and the segments) of the default run are
    reused, stage 1 is not, and its prototypes start independent of the word table."""
    from mate.ablate import seed_shared_stage0
    from mate.rundir import load_stage_model
    from mate.text.vocab import Vocabulary

    out, _ = finished_run
    other = tmp_path / "random"
    assert seed_shared_stage0(other, out)
    train.main(run_args(tiny_synthetic_dataset, tiny_hf_encoder_dir, other, "--prototype-init", "random"))
    log = (other / "train.log").read_text()
    assert "stage0: reusing" in log and "segments: reusing" in log and "stage1: reusing" not in log
    model = load_stage_model(other, 1)
    words = list(Vocabulary.load(other / "vocab.json").index_to_word)
    with torch.no_grad():
        from_table = model.word_proj(model.text_encoder.embed_words(model.text_encoder.word_token_ids(words)))
    cos = torch.nn.functional.cosine_similarity(from_table, model.prototypes, dim=-1)
    assert cos.abs().max() < 0.5   # proj init: ~1.0 on every row after three small steps
    with pytest.raises(train.ConfigError, match="--prototype-init 'zeros'"):
        train.TrainConfig(prototype_init="zeros").resolve()


def test_pytorch_model_bin_export(finished_run, tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    """--pytorch-model-bin only changes the export: every stage is reused, and the export also holds
    pytorch_model.bin with the tensors of model.safetensors."""
    from safetensors.torch import load_file

    from mate.ablate import seed_shared_stage0

    out, _ = finished_run
    other = tmp_path / "bin"
    assert seed_shared_stage0(other, out)
    train.main(run_args(tiny_synthetic_dataset, tiny_hf_encoder_dir, other, "--pytorch-model-bin"))
    encoder = other / "encoder"
    legacy = torch.load(encoder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    current = load_file(encoder / "model.safetensors")
    assert legacy.keys() == current.keys() and all(torch.equal(legacy[k], current[k]) for k in current)
    with pytest.raises(train.ConfigError, match="--pytorch-model-bin"):
        train.TrainConfig(encoder="clip", pytorch_model_bin=True).resolve()


@pytest.mark.parametrize("argv,fragment", [
    (["--epochs", "-1"], "--epochs must be positive"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--data", "/nonexistent/dir"], "is not a directory"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--epochs", "-2"], "error"),
])
def test_bad_arguments_exit_with_a_message(argv, fragment, tmp_path):
    with pytest.raises(SystemExit) as info:
        train.main(["--out", str(tmp_path / "run"), *argv])
    assert fragment in str(info.value)


def test_compute_segments_same_whatever_the_batching(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    """Segmenting one clip per batch and many clips per batch (one padded text batch, clips of
    several motions encoded together) gives the same partitions."""
    from mate.data.dataset import MotionTextDataset
    from mate.model.mate_model import MATEConfig, MATEModel
    from mate.text.encoders import build_text_encoder
    from mate.rundir import RunDir
    from mate.text.subtexts import split_subtexts
    from mate.train.pipeline import compute_segments

    torch.manual_seed(0)
    view = MotionTextDataset(tiny_synthetic_dataset, "train", crop="start")
    encoder = build_text_encoder(f"hf:{tiny_hf_encoder_dir}")
    model = MATEModel(encoder, view.feature_dim, 4, MATEConfig(d_model=16, motion_layers=1, motion_heads=2,
                                                              motion_ff=16))
    subtexts = {r.caption.key: split_subtexts(r.caption.text, list(r.caption.tokens) or None) for r in view.records}
    assert sum(len(p) > 1 for p in subtexts.values()) >= 3
    one = compute_segments(model, view, subtexts, RunDir(tmp_path / "one"), torch.device("cpu"), "k", clips_per_batch=1)
    many = compute_segments(model, view, subtexts, RunDir(tmp_path / "many"), torch.device("cpu"), "k",
                            clips_per_batch=7)
    assert one == many
    assert one.keys() == subtexts.keys()
    assert sum(len(s["subtexts"]) > 1 for s in one.values()) >= 3


def test_training_skips_bad_motions_with_one_warning(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    """A training split holding a NaN, an inf and an empty motion (real releases have such files:
    HumanML3D's 007975): the run skips them with one warning naming and counting them, logs it,
    and trains on the rest; --strict-data stops at the first with one error line."""
    import numpy as np

    from mate.data.dataset import DatasetProblemWarning

    data = tmp_path / "data"
    (data / "new_joint_vecs").mkdir(parents=True)
    (data / "texts").mkdir()
    for name in ("Mean.npy", "Std.npy", "val.txt"):
        (data / name).symlink_to(tiny_synthetic_dataset / name)
    ids = (tiny_synthetic_dataset / "all.txt").read_text().split()
    for mid in ids:
        (data / "new_joint_vecs" / f"{mid}.npy").symlink_to(tiny_synthetic_dataset / "new_joint_vecs" / f"{mid}.npy")
        (data / "texts" / f"{mid}.txt").symlink_to(tiny_synthetic_dataset / "texts" / f"{mid}.txt")
    good = np.load(tiny_synthetic_dataset / "new_joint_vecs" / f"{ids[0]}.npy")
    nan, inf = good.copy(), good.copy()
    nan[:, :] = np.nan
    inf[10, 0] = np.inf
    for mid, motion in (("nan0", nan), ("inf0", inf), ("empty0", good[:0])):
        np.save(data / "new_joint_vecs" / f"{mid}.npy", motion)
        (data / "texts" / f"{mid}.txt").write_text("a person walks forward#a/DET person/NOUN walk/VERB#0.0#0.0\n")
    train_ids = (tiny_synthetic_dataset / "train.txt").read_text().split()
    (data / "train.txt").write_text("\n".join(["nan0"] + train_ids + ["inf0", "empty0"]) + "\n")
    out = tmp_path / "run"
    with pytest.warns(DatasetProblemWarning) as record:
        summary = train.main(run_args(data, tiny_hf_encoder_dir, out, "--epochs", "1", "--max-steps", "1"))
    messages = [str(w.message) for w in record if "split='train'" in str(w.message)]
    assert len(messages) == 1
    assert "nonfinite_motion: 2 (2 motions: nan0, inf0;" in messages[0]
    assert "empty_motion: 1 (1 motion: empty0;" in messages[0]
    assert summary["stage0"]["steps"] == 1 and summary["stage1"]["steps"] == 1
    log = (out / "train.log").read_text()
    assert "train split: skipped" in log and "nan0" in log
    segments = json.loads((out / "segments.json").read_text())
    assert not any(key.startswith(("nan0", "inf0", "empty0")) for key in segments)
    with pytest.raises(SystemExit, match=r"^error: .*nan0\.npy: NaN/inf in frame 0"):
        train.main(run_args(data, tiny_hf_encoder_dir, tmp_path / "strict", "--strict-data"))
