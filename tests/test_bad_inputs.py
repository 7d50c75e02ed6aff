"""Bad-input corpus: every surface a user feeds MATE, each bad input answered by a clear error
that names the problem, and nothing half-written left behind.

Surfaces: dataset folders (HumanML3D texts layout, TMR annotations.json), the command line of
``python -m mate.train`` (in-process: ``train.main`` raises SystemExit for argument errors),
model configs, run-directory stage outputs and text-encoder exports (checkpoints from another
vocabulary, truncated files), LLM sub-text answer files, and the segmenter's cost tables.

Each case states the behaviour we want: the error type, and a message that names the file,
argument or field at fault.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mate import train

# ------------------------------------------------------------------------------------ helpers

PARTIAL_NAME = re.compile(r"\.tmp|\.partial|\.replaced-|\.incomplete")


def leftovers(out: Path) -> list[str]:
    """Files that betray a half-written output: temporaries, staging folders, a ``.done`` marker
    without its output."""
    if not out.exists():
        return []
    bad = [str(p.relative_to(out)) for p in out.rglob("*") if PARTIAL_NAME.search(p.name)]
    for marker in out.rglob("*.done"):
        if not marker.with_name(marker.name[: -len(".done")]).exists():
            bad.append(f"{marker.relative_to(out)} (marker without output)")
    return bad


def assert_clean(out: Path, *never: str) -> None:
    """No partial files in ``out``, and none of the paths in ``never`` (outputs of the stage that
    failed, e.g. "stage0/model.pt.done")."""
    assert leftovers(out) == []
    present = [name for name in never if (out / name).exists()]
    assert present == [], f"outputs of a failed stage were left behind: {present}"


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("new_joints", "segments.json"))
    return dst


def first_train_id(root: Path) -> str:
    return (root / "train.txt").read_text().split()[0]


def make_dataset(root: Path, **kwargs):
    from mate.data.dataset import MotionTextDataset

    return MotionTextDataset(root, "train", progress=False, **kwargs)


def pipeline_args(data: Path, encoder_dir: Path | str, out: Path, *extra: str) -> list[str]:
    encoder = encoder_dir if isinstance(encoder_dir, str) else f"hf:{encoder_dir}"
    return ["--data", str(data), "--encoder", encoder, "--out", str(out), "--stage0-epochs", "1",
            "--epochs", "1", "--batch-size", "4", "--max-steps", "1", "--log-every", "1", "--no-export", *extra]


@pytest.fixture
def dataset_copy(tiny_synthetic_dataset, tmp_path) -> Path:
    return copy_dataset(tiny_synthetic_dataset, tmp_path / "data")


# ------------------------------------------------------------------------------- dataset files


def test_missing_mean_npy_names_the_file(dataset_copy):
    (dataset_copy / "Mean.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"Mean\.npy: Mean file not found"):
        make_dataset(dataset_copy)


def test_mean_of_unknown_feature_width(dataset_copy):
    np.save(dataset_copy / "Mean.npy", np.zeros(100, np.float32))
    np.save(dataset_copy / "Std.npy", np.ones(100, np.float32))
    with pytest.raises(ValueError, match=r"feature width 100 is neither HumanML3D \(263\) nor KIT-ML \(251\)"):
        make_dataset(dataset_copy)


def test_zero_std_is_refused(dataset_copy):
    std = np.load(dataset_copy / "Std.npy")
    std[5] = 0.0
    np.save(dataset_copy / "Std.npy", std)
    with pytest.raises(ValueError, match=r"Std has 1 entries <= 0"):
        make_dataset(dataset_copy)


def test_motion_with_wrong_feature_width(dataset_copy):
    motion_id = first_train_id(dataset_copy)
    path = dataset_copy / "new_joint_vecs" / f"{motion_id}.npy"
    np.save(path, np.load(path)[:, :200])
    with pytest.raises(ValueError) as info:
        make_dataset(dataset_copy)
    message = str(info.value)
    assert f"{motion_id}.npy" in message and "expected (T, 263)" in message and "200)" in message


def test_nan_in_a_motion_names_file_and_frame(dataset_copy):
    motion_id = first_train_id(dataset_copy)
    path = dataset_copy / "new_joint_vecs" / f"{motion_id}.npy"
    motion = np.load(path)
    motion[7, 3] = np.nan
    np.save(path, motion)
    # Construction reads every motion once (validate=True, the default): strict names file and frame,
    with pytest.raises(ValueError, match=rf"{motion_id}\.npy: NaN/inf in frame 7"):
        make_dataset(dataset_copy)
    # non-strict skips the motion's captions with one warning naming it,
    with pytest.warns(UserWarning, match=rf"nonfinite_motion: \d+ \(1 motion: {motion_id};"):
        lenient = make_dataset(dataset_copy, strict=False)
    assert motion_id not in lenient.motion_ids
    # and with validate=False (headers only) the bad frame is reported when the item is loaded.
    dataset = make_dataset(dataset_copy, crop="start", validate=False)
    index = next(i for i, r in enumerate(dataset.records) if r.motion_id == motion_id)
    with pytest.raises(ValueError, match=rf"{motion_id}\.npy: NaN/inf in frame 7"):
        dataset[index]


def test_malformed_caption_line_names_file_and_line(dataset_copy):
    motion_id = first_train_id(dataset_copy)
    path = dataset_copy / "texts" / f"{motion_id}.txt"
    lines = path.read_text().splitlines()
    lines.insert(1, "a person walks#a/DET person/NOUN walk/VERB")  # 3 fields: no start/end
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{motion_id}\.txt:2: expected 4 '#'-separated fields"):
        make_dataset(dataset_copy)


def test_empty_caption_names_file_and_line(dataset_copy):
    motion_id = first_train_id(dataset_copy)
    path = dataset_copy / "texts" / f"{motion_id}.txt"
    path.write_text("   #a/DET#0.0#0.0\n" + path.read_text())
    with pytest.raises(ValueError, match=rf"{motion_id}\.txt:1: empty caption"):
        make_dataset(dataset_copy)


@pytest.mark.parametrize("span,fragment", [("#-1.0#2.0", "start must be finite and >= 0"),
                                           ("#3.0#1.0", r"end \(1.0\) is before start \(3.0\)"),
                                           ("#abc#1.0", "start is not a number")])
def test_bad_caption_span(dataset_copy, span, fragment):
    motion_id = first_train_id(dataset_copy)
    path = dataset_copy / "texts" / f"{motion_id}.txt"
    path.write_text(f"a person walks forward#a/DET person/NOUN walk/VERB forward/ADV{span}\n")
    with pytest.raises(ValueError, match=fragment):
        make_dataset(dataset_copy)


def test_split_id_without_motion_file(dataset_copy):
    with open(dataset_copy / "train.txt", "a") as f:
        f.write("999999\n")
    with pytest.raises(FileNotFoundError, match=r"999999\.npy: motion file not found"):
        make_dataset(dataset_copy)
    # Non-strict: skipped, counted, one warning that says what was skipped.
    with pytest.warns(UserWarning, match=r"missing_motion: 1"):
        dataset = make_dataset(dataset_copy, strict=False)
    assert dataset.problem_counts == {"missing_motion": 1}


def test_split_id_without_caption_file(dataset_copy):
    motion_id = first_train_id(dataset_copy)
    (dataset_copy / "texts" / f"{motion_id}.txt").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{motion_id}\.txt: caption file not found \(split id '{motion_id}'"):
        make_dataset(dataset_copy)


def test_missing_split_file(dataset_copy):
    (dataset_copy / "train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"train\.txt: split file not found"):
        make_dataset(dataset_copy)


def _tmr_root(dataset_copy: Path, annotations: str) -> Path:
    (dataset_copy / "splits").mkdir()
    shutil.copy(dataset_copy / "train.txt", dataset_copy / "splits" / "train.txt")
    (dataset_copy / "annotations.json").write_text(annotations)
    return dataset_copy


def test_annotations_json_that_is_not_json(dataset_copy):
    root = _tmr_root(dataset_copy, '{"000001": {"annotations": [')
    with pytest.raises(ValueError, match=r"annotations\.json: not valid JSON"):
        make_dataset(root)


def test_annotations_json_of_the_wrong_shape(dataset_copy):
    root = _tmr_root(dataset_copy, '[{"text": "a person walks"}]')
    with pytest.raises(ValueError, match=r"annotations\.json: expected a JSON object \{id: entry\}, got list"):
        make_dataset(root)
    motion_id = first_train_id(dataset_copy)
    (root / "annotations.json").write_text(json.dumps({motion_id: {"path": motion_id, "duration": 3.0}}))
    with pytest.raises(ValueError, match=rf"motion '{motion_id}': entry has no 'annotations' list"):
        make_dataset(root)


# ------------------------------------------------------------------------------- command line


def _exit_message(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        train.main(argv)
    return str(info.value.code)


@pytest.mark.parametrize("argv,fragment", [
    (["--epochs", "-1"], "--epochs must be positive, got -1"),
    (["--stage0-epochs", "-3"], "--stage0-epochs must be positive, got -3"),
    (["--max-steps", "0"], "--max-steps must be positive, got 0"),
    (["--lr-word", "inf"], "--lr-word must be a positive number, got inf"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--data", "/nonexistent/mate-data"], "--data /nonexistent/mate-data is not a directory"),
    (["--subtexts", "/nonexistent/answers.jsonl"], "--subtexts /nonexistent/answers.jsonl is not a file"),
])
def test_bad_cli_values_exit_before_writing_anything(argv, fragment, tmp_path):
    out = tmp_path / "run"
    assert fragment in _exit_message(["--out", str(out), *argv])
    assert not out.exists()


@pytest.mark.parametrize("argv,fragment", [
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--prior", "cosine"], "argument --prior: invalid choice: 'cosine'"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
])
def test_unknown_choices_are_argparse_errors(argv, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    assert _exit_message(["--out", str(out), *argv]) == "2"
    assert fragment in capsys.readouterr().err
    assert not out.exists()


def test_data_that_is_a_file(tmp_path):
    (tmp_path / "data.npy").write_bytes(b"")
    assert "is not a directory" in _exit_message(["--out", str(tmp_path / "run"), "--data", str(tmp_path / "data.npy")])


def test_data_folder_that_is_not_a_dataset(tmp_path, tiny_hf_encoder_dir):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"^error: .*train\.txt: split file not found"):
        train.main(pipeline_args(tmp_path / "empty", tiny_hf_encoder_dir, out))
    assert_clean(out, "subtexts.json", "vocab.json")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda(tmp_path):
    out = tmp_path / "run"
    assert "--device cuda: CUDA is not available" in _exit_message(["--out", str(out), "--device", "cuda"])
    assert not out.exists()


@pytest.mark.parametrize("spec", ["tpu", "cuda:x"])
def test_malformed_device_is_a_usage_error(spec, tmp_path):
    out = tmp_path / "run"
    message = _exit_message(["--out", str(out), "--device", spec])
    assert f"--device {spec}" in message
    assert not out.exists()


def test_unknown_encoder_spec(tmp_path, tiny_synthetic_dataset):
    from mate.text.encoders import UnknownEncoderSpecError

    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"^error: unknown text-encoder spec 'bert-base'; expected 'minilm'"):
        train.main(pipeline_args(tiny_synthetic_dataset, "bert-base", out))
    with pytest.raises(UnknownEncoderSpecError):     # --debug: the exception itself
        train.main(pipeline_args(tiny_synthetic_dataset, "bert-base", out, "--debug"))
    assert_clean(out, "stage0", "segments.json", "stage1", "encoder")


def test_encoder_folder_that_does_not_exist(tmp_path, tiny_synthetic_dataset):
    from mate.text.encoders import MissingWeightsError

    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"^error: no transformers model at '/nonexistent/encoder'.*never downloads"):
        train.main(pipeline_args(tiny_synthetic_dataset, "hf:/nonexistent/encoder", out))
    with pytest.raises(MissingWeightsError, match=r"(?s)no transformers model at '/nonexistent/encoder'"):
        train.main(pipeline_args(tiny_synthetic_dataset, "hf:/nonexistent/encoder", out, "--debug"))
    assert_clean(out, "stage0", "segments.json", "stage1", "encoder")


def test_training_split_with_no_usable_clip(tmp_path, dataset_copy, tiny_hf_encoder_dir):
    for path in (dataset_copy / "new_joint_vecs").glob("*.npy"):
        np.save(path, np.load(path)[:30])  # every clip below the 40-frame minimum
    out = tmp_path / "run"
    with pytest.raises((ValueError, SystemExit)) as info:
        train.main(pipeline_args(dataset_copy, tiny_hf_encoder_dir, out))
    message = str(info.value)
    assert "train" in message and ("too short" in message or "40 frames" in message), message
    assert_clean(out, "vocab.json")


# ------------------------------------------------------------------------------------- configs


def test_config_with_unknown_prior_variant():
    from mate.model.mate_model import MATEConfig

    with pytest.raises(ValueError, match=r"prior_variant must be one of .* got 'cosine'"):
        MATEConfig(prior_variant="cosine")


def test_config_heads_that_do_not_divide_d_model():
    from mate.model.mate_model import MATEConfig

    with pytest.raises(ValueError, match=r"d_model=100 must be divisible by attention_heads=8"):
        MATEConfig(d_model=100)


def test_config_with_zero_attention_heads():
    from mate.model.mate_model import MATEConfig

    with pytest.raises(ValueError, match="attention_heads"):
        MATEConfig(attention_heads=0)


def test_config_with_nan_temperature():
    from mate.model.mate_model import MATEConfig

    with pytest.raises(ValueError, match="tau"):
        MATEConfig(tau=math.nan)


# --------------------------------------------------------- run directory: stage outputs, reuse


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory) -> Path:
    """5 synthetic motions (3 for training): the cheapest set the whole pipeline runs on."""
    from mate.data.synthetic import write_dataset

    root = tmp_path_factory.mktemp("mini") / "data"
    write_dataset(root, num_motions=5, seed=11, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def finished_mini_run(mini_data, tiny_hf_encoder_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mini_run") / "run"
    train.main(pipeline_args(mini_data, tiny_hf_encoder_dir, out))
    assert (out / "stage0" / "model.pt.done").exists() and (out / "stage1" / "model.pt.done").exists()
    return out


def _rerun_copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def test_truncated_cached_stage_model(finished_mini_run, mini_data, tiny_hf_encoder_dir, tmp_path):
    out = _rerun_copy(finished_mini_run, tmp_path)
    model = out / "stage0" / "model.pt"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    try:
        train.main(pipeline_args(mini_data, tiny_hf_encoder_dir, out))
    except Exception as err:  # noqa: BLE001 - the message is what is under test
        assert "stage0" in str(err) and "model.pt" in str(err), f"{type(err).__name__}: {err}"
    else:  # recovered: the stage was retrained and its model is whole again
        torch.load(model, weights_only=True)
    assert_clean(out)


def test_cached_stage_model_from_another_vocabulary(finished_mini_run, mini_data, tiny_hf_encoder_dir, tmp_path):
    out = _rerun_copy(finished_mini_run, tmp_path)
    model = out / "stage0" / "model.pt"
    state = torch.load(model, weights_only=True)
    prototypes = state["model"]["prototypes"]
    state["model"]["prototypes"] = torch.randn(prototypes.shape[0] + 5, prototypes.shape[1])
    torch.save(state, model)
    try:
        train.main(pipeline_args(mini_data, tiny_hf_encoder_dir, out))
    except Exception as err:  # noqa: BLE001
        message = str(err)
        assert "prototypes" in message and "size mismatch" in message, message
        assert f"[{prototypes.shape[0] + 5}, {prototypes.shape[1]}]" in message.replace("torch.Size(", "").replace(")", "")
    assert_clean(out)


def test_edited_caption_invalidates_cached_subtexts(dataset_copy, tmp_path):
    out = tmp_path / "run"
    argv = pipeline_args(dataset_copy, "no-such-encoder", out)  # stops right after the vocabulary stage
    with pytest.raises(SystemExit, match="unknown text-encoder spec"):
        train.main(argv)
    if not (out / "subtexts.json.done").exists():
        pytest.skip("the encoder is now validated before the data stages: stop the run another way")
    motion_id = first_train_id(dataset_copy)
    path = dataset_copy / "texts" / f"{motion_id}.txt"
    new_caption = "a person crawls forward then somersaults"
    path.write_text("".join(f"{new_caption}#a/DET person/NOUN crawl/VERB forward/ADV then/ADV somersault/VERB#0.0#0.0\n"
                            for _ in path.read_text().splitlines()))
    with pytest.raises(SystemExit, match="unknown text-encoder spec"):
        train.main(argv)
    subtexts = json.loads((out / "subtexts.json").read_text())
    assert " ".join(subtexts[f"{motion_id}_0"]).replace(",", "") == new_caption



def test_motion_rewritten_in_place_invalidates_the_trained_stages(dataset_copy, tiny_hf_encoder_dir, tmp_path):
    """The stage keys cover the motion files (path, size, mtime) and the statistics: a motion
    edited under the same name retrains stage 0 instead of reusing a model trained on the old one."""
    out = tmp_path / "run"
    argv = pipeline_args(dataset_copy, tiny_hf_encoder_dir, out)
    train.main(argv)
    train.main(argv)
    assert "stage0: reusing" in (out / "train.log").read_text()  # unchanged data: reused
    path = dataset_copy / "new_joint_vecs" / f"{first_train_id(dataset_copy)}.npy"
    motion = np.load(path)
    np.save(path, motion[::-1].copy())  # same name, same shape, new content
    (out / "train.log").unlink()
    train.main(argv)
    log = (out / "train.log").read_text()
    assert "stage0: reusing" not in log and "segments: reusing" not in log, log
    assert "subtexts: reusing" in log  # the text stages depend on the captions only


# --------------------------------------------------------------------------- LLM answer files


def _captions(dataset: Path) -> dict[str, str]:
    records = make_dataset(dataset).records
    return {r.caption.key: r.caption.text for r in records}


def test_llm_answers_with_an_invalid_json_line_stop_the_run_cleanly(tiny_synthetic_dataset, tiny_hf_encoder_dir,
                                                                    tmp_path):
    key, caption = next(iter(_captions(tiny_synthetic_dataset).items()))
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": key, "answer": [caption]}) + "\n" + '{"id": "x", "answer": ["a"\n')
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"answers\.jsonl:2: malformed JSON line"):
        train.main(pipeline_args(tiny_synthetic_dataset, tiny_hf_encoder_dir, out, "--subtexts", str(answers)))
    assert_clean(out, "subtexts.json", "subtexts.json.done", "vocab.json")


def test_llm_answer_with_new_words_falls_back_and_is_counted(tmp_path):
    from mate.text.subtexts import import_llm_answers

    captions = {"a": "a person walks forward then turns left", "b": "a man jumps"}
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": "a", "answer": ["a person walks forward", "then turns right"]}) + "\n"
                       + json.dumps({"id": "b", "answer": '```json\n["a man jumps"]\n```'}) + "\n")
    result, stats = import_llm_answers(answers, captions)
    assert stats.rejected == {"new_word": 1} and stats.accepted == 1 and stats.fallback == 1
    assert " ".join(result["a"]).endswith("turns left")  # the rule-based split of the caption itself
    assert result["b"] == ["a man jumps"]


@pytest.mark.parametrize("lines,fragment", [
    ([{"id": "a"}], r"answers\.jsonl:1: expected a JSON object with 'id' and 'answer'"),
    ([["a", ["a person walks"]]], r"answers\.jsonl:1: expected a JSON object with 'id' and 'answer'"),
    ([{"id": "a", "answer": ["x"]}, {"id": "a", "answer": ["y"]}], r"answers\.jsonl:2: duplicate answer for id 'a'"),
])
def test_llm_answer_lines_of_the_wrong_shape(lines, fragment, tmp_path):
    from mate.text.subtexts import import_llm_answers

    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ValueError, match=fragment):
        import_llm_answers(answers, {"a": "a person walks"})


# ------------------------------------------------------------------- text-encoder exports / loads


@pytest.fixture(scope="module")
def exported_encoder(tiny_hf_encoder_dir, tmp_path_factory) -> Path:
    from mate.text.encoders import build_text_encoder

    out = tmp_path_factory.mktemp("export") / "encoder"
    build_text_encoder(f"hf:{tiny_hf_encoder_dir}").export(out)
    return out


def test_load_text_encoder_from_a_missing_path(tmp_path):
    import mate

    with pytest.raises(FileNotFoundError, match=r"no text-encoder export at .*nowhere"):
        mate.load_text_encoder(tmp_path / "nowhere")


def test_load_text_encoder_from_a_folder_that_is_no_export(tmp_path):
    import mate

    with pytest.raises(ValueError, match=r"is neither a MATE export \(no mate_text_encoder\.json\) nor a transformers"):
        mate.load_text_encoder(tmp_path)


def test_load_text_encoder_from_a_training_checkpoint(finished_mini_run):
    import mate

    with pytest.raises(ValueError) as info:
        mate.load_text_encoder(finished_mini_run / "stage1" / "model.pt")
    message = str(info.value)
    assert "model.pt" in message and "token_embedding.weight" in message and "model, config" in message


def test_export_manifest_from_a_newer_mate(exported_encoder, tmp_path):
    import mate

    export = shutil.copytree(exported_encoder, tmp_path / "encoder")
    manifest = json.loads((export / "mate_text_encoder.json").read_text())
    (export / "mate_text_encoder.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match=r"mate_text_encoder\.json has format_version 99; .* upgrade"):
        mate.load_text_encoder(export)
    (export / "mate_text_encoder.json").write_text(json.dumps({**manifest, "backend": "onnx"}))
    with pytest.raises(ValueError, match=r"names an unknown backend 'onnx'"):
        mate.load_text_encoder(export)


def test_export_with_a_damaged_manifest(exported_encoder, tmp_path):
    import mate

    export = shutil.copytree(exported_encoder, tmp_path / "encoder")
    (export / "mate_text_encoder.json").write_text('{"backend": "hf",')
    with pytest.raises(ValueError, match=r"mate_text_encoder\.json"):
        mate.load_text_encoder(export)


def test_export_with_truncated_weights(exported_encoder, tmp_path):
    import mate

    export = shutil.copytree(exported_encoder, tmp_path / "encoder")
    weights = export / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors|encoder"):
        mate.load_text_encoder(export)


def test_export_that_fails_midway_leaves_nothing(tiny_hf_encoder_dir, exported_encoder, tmp_path, monkeypatch):
    from mate.text.encoders import build_text_encoder

    encoder = build_text_encoder(f"hf:{tiny_hf_encoder_dir}")
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True"):
        encoder.export(exported_encoder)
    original = encoder._write_export

    def write_then_fail(directory):
        original(directory)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encoder, "_write_export", write_then_fail)
    target = tmp_path / "exports" / "encoder"
    with pytest.raises(OSError, match="No space left"):
        encoder.export(target)
    assert not target.exists()
    assert list((tmp_path / "exports").iterdir()) == []  # no staging folder either
    previous = sorted(p.name for p in exported_encoder.iterdir())
    with pytest.raises(OSError, match="No space left"):
        encoder.export(exported_encoder, overwrite=True)
    assert sorted(p.name for p in exported_encoder.iterdir()) == previous  # the old export is intact
    assert [p.name for p in exported_encoder.parent.iterdir()] == ["encoder"]


# --------------------------------------------------------------------- segmenter cost tables


@pytest.mark.parametrize("make,fragment", [
    (lambda c: np.where(np.arange(c.size).reshape(c.shape) == 13, np.nan, c), r"cost\[0, 1, 5\] is not finite"),
    (lambda c: c.astype(np.int64), "cost dtype must be float32 or float64, got int64"),
    (lambda c: c.astype(np.float16), "cost dtype must be float32 or float64, got float16"),
    (lambda c: c[:, :, :5], r"cost must have shape \[N, G\+1, G\+1\], got \[2, 8, 5\]"),
    (lambda c: c[0], "cost must be 3-D"),
    (lambda c: np.random.rand(9, 8, 8), r"N \* min_units = 9 \* 1 exceeds G = 7"),
    (lambda c: c[:0], "N = 0 sub-texts"),
])
def test_bad_cost_table(make, fragment):
    from mate.segment import optimal_partition, optimal_partition_batch

    good = np.random.default_rng(0).random((2, 8, 8))
    bad = make(good)
    with pytest.raises(ValueError, match=fragment):
        optimal_partition(bad)
    with pytest.raises(ValueError, match=r"costs\[1\]: .*" + fragment):
        optimal_partition_batch([good, bad])


def test_bad_min_units():
    from mate.segment import optimal_partition

    cost = np.random.default_rng(0).random((2, 8, 8))
    with pytest.raises(ValueError, match="min_units must be >= 1, got 0"):
        optimal_partition(cost, min_units=0)
    with pytest.raises(ValueError, match="min_units must be an integer, got float"):
        optimal_partition(cost, min_units=2.0)
    with pytest.raises(ValueError, match=r"N \* min_units = 2 \* 4 exceeds G = 7"):
        optimal_partition(cost, min_units=4)


def _no_core_dumps() -> None:
    """In the child: a crash must not spend a minute writing a core file."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@pytest.mark.parametrize("call", ["optimal_partition(c, min_units=3074457345618258603)",  # ceil(2**63 / 3)
                                  "optimal_partition_batch([c], min_units=3074457345618258603)"])
def test_huge_min_units_does_not_crash_the_extension(call):
    code = textwrap.dedent(f"""
        import numpy as np
        from mate.segment import optimal_partition, optimal_partition_batch
        c = np.random.rand(3, 8, 8).astype(np.float32)
        try:
            {call}
        except ValueError as e:
            print("ValueError:", e)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            preexec_fn=_no_core_dumps)
    assert result.returncode == 0, f"the extension crashed (exit code {result.returncode})"
    assert result.stdout.startswith("ValueError:") and "N * min_units = 3 * 3074457345618258603 exceeds G = 7" \
        in result.stdout, result.stdout


# ------------------------------------------------------- every command: one "error:" line (mate.cli)


def _command(module: str, *args: str, env_extra: dict | None = None, timeout: int = 180):
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def _assert_one_error_line(result, fragment: str, status: int = 1) -> str:
    assert result.returncode == status, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr[-2000:]
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


def test_offline_hf_encoder_is_one_error_line_and_debug_shows_the_traceback(tiny_synthetic_dataset, tmp_path):
    """``python -m mate.train --encoder hf:distilbert-base-uncased`` on a machine without those
    weights (an empty Hugging Face cache, offline): one ``error:`` line, status 1, no traceback;
    ``--debug`` shows the traceback."""
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = ["--encoder", "hf:distilbert-base-uncased", "--data", str(tiny_synthetic_dataset), "--out",
            str(tmp_path / "run"), "--max-steps", "1", "--no-export"]
    line = _assert_one_error_line(_command("mate.train", *argv, env_extra=env),
                                  "no transformers model at 'distilbert-base-uncased'")
    assert "never downloads" in line
    debug = _command("mate.train", *argv, "--debug", env_extra=env)
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr and "MissingWeightsError" in debug.stderr
    assert not any(line.startswith("error:") for line in debug.stderr.splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("module,args,fragment,status", [
    ("mate.evaluate", ["{tmp}/no-run"], "no-run", 1),
    ("mate.diagnostics", ["{tmp}/no-run"], "no-run", 1),
    ("mate.ablate", ["--data", "{tmp}/no-data", "--out", "{tmp}/abl"], "--data {tmp}/no-data is not a directory", 1),
    ("mate.data.synthetic", ["--out", "{tmp}/syn", "--motions", "0"], "--motions must be >= 1", 2),
    ("mate.train", ["--out", "{tmp}/run", "--epochs", "-1"], "--epochs must be positive", 1),
])
def test_every_command_reports_a_mistake_in_one_line(module, args, fragment, status, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    _assert_one_error_line(_command(module, *args), fragment.format(tmp=tmp_path), status)
    debug = _command(module, *args, "--debug")
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr, debug.stderr[-2000:]


def test_every_command_has_a_debug_flag(tmp_path, capsys):
    """In-process: the same mistakes are SystemExit("error: ...") (status 2 for the synthetic
    writer, its message on stderr), and --debug lets the exception itself through."""
    from mate import ablate, diagnostics, evaluate
    from mate.data.synthetic import writer
    from mate.rundir import RunDirectoryError

    for main in (evaluate.main, diagnostics.main):
        with pytest.raises(SystemExit, match=r"^error: .*no-run"):
            main([str(tmp_path / "no-run")])
        with pytest.raises(RunDirectoryError):
            main([str(tmp_path / "no-run"), "--debug"])
    with pytest.raises(SystemExit, match=r"^error: --data .* is not a directory"):
        ablate.main(["--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "abl")])
    with pytest.raises(NotADirectoryError):
        ablate.main(["--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "abl"), "--debug"])
    with pytest.raises(SystemExit) as info:
        writer.main(["--out", str(tmp_path / "syn"), "--motions", "many"])
    assert info.value.code == 2 and "error: --motions" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--motions"):
        writer.main(["--out", str(tmp_path / "syn"), "--motions", "many", "--debug"])


def _raised_in(module_name: str, exc: BaseException) -> BaseException:
    """``exc`` as raised by code whose module is ``module_name`` (its innermost frame)."""
    namespace = {"__name__": module_name}
    exec(compile("def fail(e):\n    raise e\n", f"<{module_name}>", "exec"), namespace)
    try:
        namespace["fail"](exc)
    except BaseException as caught:  # noqa: BLE001
        return caught
    raise AssertionError("not raised")


def test_user_mistakes_and_bugs_are_told_apart():
    from mate import cli
    from mate.checkpoint import CorruptCheckpointError
    from mate.train import ConfigError

    mistakes = [_raised_in("mate.data.dataset", ValueError("bad caption")),
                _raised_in("mate.train.config", ConfigError("--epochs must be positive")),
                _raised_in("numpy.lib.npyio", FileNotFoundError("x.npy")),        # a path: wherever raised
                _raised_in("mate.checkpoint", CorruptCheckpointError("ckpt.pt: checksum mismatch")),
                _raised_in("mate.text.clip_backend", ImportError("pip install open_clip_torch"))]
    bugs = [_raised_in("numpy.core.fromnumeric", ValueError("operands could not be broadcast")),
            _raised_in("mate.model.mate_model", TypeError("unsupported operand")),
            _raised_in("mate.model.mate_model", RuntimeError("shape mismatch")),
            _raised_in("mate.evaluate", KeyError("R@1")),
            _raised_in("torch.nn.modules", ImportError("cannot import name"))]
    assert all(cli.is_user_mistake(e) for e in mistakes)
    assert not any(cli.is_user_mistake(e) for e in bugs)
    # a mistake: one line, whitespace runs collapsed; a bug: through, untouched; --debug: through
    with pytest.raises(SystemExit, match=r"^error: bad caption in line 3$"):
        with cli.user_errors():
            raise _raised_in("mate.data.dataset", ValueError("bad caption\n  in line 3"))
    with pytest.raises(TypeError):
        with cli.user_errors():
            raise bugs[1]
    with pytest.raises(ValueError):
        with cli.user_errors(debug=True):
            raise mistakes[0]
    with pytest.raises(SystemExit) as info:
        with cli.user_errors():
            raise KeyboardInterrupt
    assert info.value.code == 130


# ------------------------------------------------------------------------------ synthetic data


def test_synthetic_writer_refuses_bad_arguments(tmp_path):
    from mate.data.synthetic import write_dataset

    with pytest.raises(ValueError, match="num_motions must be a positive integer, got 0"):
        write_dataset(tmp_path / "a", 0)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        write_dataset(tmp_path / "file", 2)


# ------------------------------------------------------------------------------------ mate.memory
# (Tests of the peak-memory utility live here: this change owns no other test file.)

def _touch(megabytes: int) -> np.ndarray:
    block = np.empty(megabytes << 20, dtype=np.uint8)
    block[::4096] = 1  # fault every page in
    return block


def test_track_peak_memory_sees_a_short_spike():
    from mate.memory import track_peak_memory

    with track_peak_memory("spike") as mem:
        block = _touch(96)
        del block  # freed before the block ends: only the peak remembers it
    assert mem.seconds > 0 and mem.rss_source in ("vmhwm-reset", "sampled", "sampled+vmhwm")
    if mem.rss_source == "vmhwm-reset":  # exact on Linux: no sampling can miss it
        assert mem.peak_rss_delta_bytes >= 90 << 20
    assert mem.peak_rss_bytes >= mem.start_rss_bytes and mem.peak_rss_bytes >= mem.end_rss_bytes
    assert mem.peak_cuda_bytes is None or torch.cuda.is_available()
    payload = json.loads(json.dumps(mem.as_dict()))
    assert {"name", "seconds", "peak_rss_bytes", "peak_rss_delta_bytes", "peak_cuda_bytes", "rss_source"} <= payload.keys()


def test_track_peak_memory_nested_blocks_and_sampling():
    # In a fresh process: after hundreds of tests this one's heap may already hold resident pages
    # that the allocations below would reuse, which no RSS counter can see.
    code = textwrap.dedent("""
        import time
        import numpy as np
        from mate.memory import track_peak_memory

        def touch(megabytes):
            block = np.empty(megabytes << 20, dtype=np.uint8)
            block[::4096] = 1  # fault every page in
            return block

        with track_peak_memory("outer", interval=0.005) as outer:
            held = touch(64)
            with track_peak_memory("inner", interval=0.005) as inner:
                spike = touch(48)
                time.sleep(0.05)
                del spike
            del held
        # the inner block reset the kernel's counter, yet the outer block still saw both allocations
        assert outer.peak_rss_bytes >= inner.peak_rss_bytes, (outer, inner)
        assert outer.peak_rss_delta_bytes >= 100 << 20, outer
        assert inner.samples >= 1, inner
        with track_peak_memory("sampled", interval=0.002, reset_peak=False) as sampled:
            held = touch(64)
            time.sleep(0.3)  # long enough for the sampling thread to run on a loaded machine
            del held
        assert sampled.rss_source in ("sampled", "sampled+vmhwm") and sampled.peak_rss_delta_bytes >= 50 << 20, sampled
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_track_peak_memory_on_error_and_bad_arguments():
    from mate.memory import format_bytes, rss_of_pid, track_peak_memory

    with pytest.raises(KeyError):
        with track_peak_memory("fails") as mem:
            raise KeyError("boom")
    assert mem.seconds >= 0 and mem.peak_rss_bytes is not None  # filled in anyway
    for interval in (0, -1.0, math.nan, math.inf, "0.1", True):
        with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
            with track_peak_memory("x", interval=interval):
                pass
    rss, peak = rss_of_pid(__import__("os").getpid())
    assert rss and rss > 0 and (peak is None or peak >= rss)
    assert rss_of_pid(2**22 + 12345) == (None, None)  # above pid_max: no such process
    assert format_bytes(None) == "n/a" and format_bytes(512) == "512 B" and format_bytes(3 << 30) == "3.0 GiB"
