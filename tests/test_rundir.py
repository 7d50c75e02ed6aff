"""mate.rundir: the run-directory layout, the manifest, stage caching, and the errors a user gets
for a directory that is not (or not yet) a run."""
from __future__ import annotations

import json
import shutil

import pytest

from mate import rundir
from mate.rundir import RunDir, RunDirectoryError


def _manifest(root, data, synthetic=False):
    return rundir.write_manifest(root, encoder="hf:/some/encoder", data_root=data, synthetic=synthetic,
                                 preset="cpu-small", config={"seed": 3}, argv=["--seed", "3"])


def test_manifest_round_trip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = _manifest(tmp_path / "run", data)
    assert path == RunDir(tmp_path / "run").manifest and path.name == "run.json"
    manifest = rundir.read_manifest(tmp_path / "run")
    assert manifest["format"] == "mate-run" and manifest["encoder"] == "hf:/some/encoder"
    assert manifest["config"] == {"seed": 3} and manifest["argv"] == ["--seed", "3"]
    assert rundir.encoder_spec(tmp_path / "run") == "hf:/some/encoder"
    assert rundir.data_root(tmp_path / "run") == data.resolve()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name != "run.json"]  # no temporaries


def test_synthetic_data_follows_a_moved_run_directory(tmp_path):
    (tmp_path / "run" / "data").mkdir(parents=True)
    _manifest(tmp_path / "run", tmp_path / "run" / "data", synthetic=True)
    shutil.move(str(tmp_path / "run"), str(tmp_path / "moved"))
    assert rundir.data_root(tmp_path / "moved") == RunDir(tmp_path / "moved").data


def test_legacy_run_without_manifest_says_how_to_migrate(tmp_path):
    legacy = tmp_path / "old"
    (legacy / "stage0").mkdir(parents=True)
    (legacy / "stage0" / "model.pt").write_bytes(b"")
    (legacy / "train.log").write_text("... run directory x, device cpu, processes 1, preset cpu-small, "
                                      "encoder minilm, fused False ...\n")
    for call in (rundir.read_manifest, rundir.encoder_spec, rundir.data_root,
                 lambda root: rundir.load_stage_model(root, 0), rundir.check_run_dir):
        with pytest.raises(RunDirectoryError, match=r"(?s)run\.json not found.*python -m mate\.train --out .*reused"):
            call(legacy)
    from mate import evaluate, plots

    with pytest.raises(SystemExit, match="run.json not found"):
        evaluate.main([str(legacy), "--no-progress"])
    with pytest.raises(RunDirectoryError, match="run.json not found"):
        plots.render_run_figures(legacy)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirectoryError, match="is not a directory"):
        rundir.read_manifest(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match="not valid JSON"):
        rundir.read_manifest(tmp_path / "bad")
    (tmp_path / "bad" / "run.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(RunDirectoryError, match="not a MATE run manifest"):
        rundir.read_manifest(tmp_path / "bad")


def test_data_root_errors(tmp_path):
    _manifest(tmp_path / "run", tmp_path / "gone")
    with pytest.raises(RunDirectoryError, match="pass it with --data"):
        rundir.data_root(tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="--data .* is not a directory"):
        rundir.data_root(tmp_path / "run", tmp_path / "also-gone")
    assert rundir.data_root(tmp_path / "run", tmp_path) == tmp_path


def test_stage_cache_markers(tmp_path):
    out = tmp_path / "stage0" / "model.pt"
    out.parent.mkdir()
    key = rundir.fingerprint({"a": 1, "b": [2, 3]})
    assert key == rundir.fingerprint({"b": [2, 3], "a": 1}) and len(key) == 16
    assert not rundir.is_cached(out, key)
    out.write_bytes(b"weights")
    assert not rundir.is_cached(out, key)          # no marker yet: not finished
    rundir.mark_done(out, key)
    assert rundir.is_cached(out, key) and RunDir(tmp_path).is_done(out)
    assert not rundir.is_cached(out, rundir.fingerprint({"a": 2}))   # another configuration
    rundir.forget(out)
    assert not rundir.is_cached(out, key)


def test_missing_stages_are_named(tmp_path):
    _manifest(tmp_path, tmp_path)
    with pytest.raises(RunDirectoryError, match=r"stage0/model\.pt.*stage1/model\.pt.*vocab\.json"):
        rundir.check_run_dir(tmp_path)
