"""Crash safety: atomic, self-checking checkpoints, and a SIGKILLed run that resumes bit-identical.

* the checkpoint format: a truncated file, a bad magic, a damaged payload (SHA-256 mismatch) are
  each detected; the newest good checkpoint is used instead, with a warning; pruning keeps the last
  K; a failed write leaves nothing behind;
* end to end: ``python -m mate.train --deterministic --save-every 1`` killed with SIGKILL in the
  middle of a stage-1 epoch, its newest checkpoints then damaged, and rerun with ``--resume``, ends
  with stage-1 weights *identical* (torch.equal) to an uninterrupted run, and the same logged
  losses.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

from mate import checkpoint as ckpt


# ------------------------------------------------------------------------ the checkpoint file
def _payload(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"step": step, "model": {"w": torch.randn(4, 3, generator=g)}, "rng": (1, (2, 3), None), "name": "x"}


def test_roundtrip_and_every_kind_of_damage_is_detected(tmp_path):
    path = ckpt.write_checkpoint(ckpt.checkpoint_path(tmp_path, "stage1", 7), _payload(7))
    assert path.name == "stage1-step00000007.ckpt"
    loaded = ckpt.read_checkpoint(path)
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], _payload(7)["model"]["w"])
    assert loaded["rng"] == (1, (2, 3), None)
    data = path.read_bytes()
    assert data[:8] == ckpt.CHECKPOINT_MAGIC

    damaged = {
        "truncated": data[: len(data) // 2],
        "header only": data[:20],
        "bad magic": b"NOTACKPT" + data[8:],
        "checksum": data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:],
        "padded": data + b"\0",
        "empty": b"",
    }
    expected = {"truncated": "truncated", "header only": "truncated", "bad magic": "bad magic",
                "checksum": "SHA-256 mismatch", "padded": "padded", "empty": "truncated"}
    for kind, blob in damaged.items():
        bad = tmp_path / f"{kind}.ckpt"
        bad.write_bytes(blob)
        with pytest.raises(ckpt.CorruptCheckpointError, match=expected[kind]):
            ckpt.read_checkpoint(bad)


def test_the_newest_good_checkpoint_is_used_with_a_warning(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.write_checkpoint(ckpt.checkpoint_path(tmp_path, "stage1", step), _payload(step))
    ckpt.write_checkpoint(ckpt.checkpoint_path(tmp_path, "stage0", 9), _payload(9))  # another stage
    four, three = ckpt.checkpoint_path(tmp_path, "stage1", 4), ckpt.checkpoint_path(tmp_path, "stage1", 3)
    four.write_bytes(four.read_bytes()[:-100])                      # a partial write
    blob = bytearray(three.read_bytes())
    blob[len(blob) // 2] ^= 1                                        # one flipped bit
    three.write_bytes(bytes(blob))
    with pytest.warns(ckpt.CheckpointWarning) as caught:
        path, payload = ckpt.latest_valid_checkpoint(tmp_path, "stage1")
    assert path.name == "stage1-step00000002.ckpt" and payload["step"] == 2
    messages = " ".join(str(w.message) for w in caught)
    assert "step00000004" in messages and "step00000003" in messages
    # a configuration check rejects checkpoints too
    with pytest.warns(ckpt.CheckpointWarning) as caught:
        found = ckpt.latest_valid_checkpoint(tmp_path, "stage1", accept=lambda p: "other run" if p["step"] == 2 else None)
    assert found[1]["step"] == 1 and any("other run" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ckpt.latest_valid_checkpoint(tmp_path / "none", "stage1") is None


def test_prune_and_failed_writes_leave_nothing_behind(tmp_path):
    for step in range(1, 6):
        ckpt.write_checkpoint(ckpt.checkpoint_path(tmp_path, "stage0", step), _payload(step))
    ckpt.prune_checkpoints(tmp_path, "stage0", keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path, "stage0")] == [5, 4]

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    target = ckpt.checkpoint_path(tmp_path, "stage0", 6)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        ckpt.write_checkpoint(target, {"bad": Unpicklable()})
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    stale = tmp_path / ".stage0-step00000007.ckpt.tmp-abc123"
    stale.write_bytes(b"partial")
    assert ckpt.remove_stale_temporaries(tmp_path) == [stale] and not stale.exists()


# ------------------------------------------------------------------------------- end to end
def _train_rows(path):
    return [(r["stage"], r["step"], r["name"], r["value"]) for r in csv.DictReader(open(path)) if r["split"] == "train"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path):
    # Dropout stays on (the default 0.1): the resumed run must restore the RNG streams exactly.
    common = ["--data", str(tiny_synthetic_dataset), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--stage0-epochs", "1",
              "--epochs", "2", "--batch-size", "8", "--log-every", "1", "--deterministic", "--save-every", "1",
              "--keep-checkpoints", "3", "--no-export"]
    cmd = [sys.executable, "-m", "mate.train", *common]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    # One intra-op thread: on a shared 2-core machine, oversubscribed OpenMP threads make every
    # step many times slower (and bit-identity needs the same thread count in every run anyway).
    env = {**{k: v for k, v in os.environ.items() if k != "MATE_DEBUG_HANG_AFTER_CHECKPOINT"}, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*cmd, "--out", str(whole)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    # The same run, stopped dead once stage 1 has checkpointed step 4 (mid-epoch: 4 < 5 batches).
    hang = {**env, "MATE_DEBUG_HANG_AFTER_CHECKPOINT": "stage1:4"}
    proc = subprocess.Popen([*cmd, "--out", str(crashed)], env=hang, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = crashed / "checkpoints" / "stage1-step00000004.ckpt"
    deadline = time.time() + 300
    try:
        while not target.exists():
            assert proc.poll() is None, "the run ended before its stage-1 checkpoint"
            assert time.time() < deadline, "no stage-1 checkpoint in time"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (crashed / "stage1" / "model.pt").exists()
    steps = [s for s, _ in ckpt.list_checkpoints(crashed / "checkpoints", "stage1")]
    assert steps == [4, 3, 2]

    # Damage the two newest: the resume must fall back to step 2 and warn.
    newest = crashed / "checkpoints" / "stage1-step00000004.ckpt"
    newest.write_bytes(newest.read_bytes()[:1000])                   # truncated
    second = crashed / "checkpoints" / "stage1-step00000003.ckpt"
    blob = bytearray(second.read_bytes())
    blob[-50] ^= 0x10                                                 # checksum mismatch
    second.write_bytes(bytes(blob))
    (crashed / "checkpoints" / ".stage1-step00000005.ckpt.tmp-dead").write_bytes(b"half")  # a killed writer's

    resumed = subprocess.run([*cmd, "--out", str(crashed), "--resume"], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    log = (crashed / "train.log").read_text()
    assert "stage0: reusing" in log and "segments: reusing" in log
    assert "stage1-step00000004.ckpt is unusable" in log and "stage1-step00000003.ckpt is unusable" in log
    assert "stage1: resuming from stage1-step00000002.ckpt" in log

    a = torch.load(whole / "stage1" / "model.pt", weights_only=True)["model"]
    b = torch.load(crashed / "stage1" / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, different
    assert _train_rows(whole / "metrics.csv") == _train_rows(crashed / "metrics.csv")  # replayed rows replaced
    # Nothing half-written is left: no temporaries anywhere, the finished stage's checkpoints gone.
    assert not [p for p in crashed.rglob("*") if ".tmp" in p.name]
    assert not list((crashed / "checkpoints").glob("*.ckpt"))
