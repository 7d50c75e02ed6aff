"""MATE at HumanML3D scale on a CPU: data generation, indexing, one pass of the loader, training.

    python benchmarks/bench_scale.py                       # everything, ~25 min on 2 cores
    python benchmarks/bench_scale.py --skip-train          # data + loader only
    python benchmarks/bench_scale.py --phases train --max-steps 20 --train-budget-s 600
    # one whole epoch of each stage, uninterrupted (about 2 h on 2 idle cores), checkpointed:
    python benchmarks/bench_scale.py --phases train --max-steps 0 --calib-motions 0 \
        --train-budget-s 10000 --save-every 100

Phases (each in its own process, so that each peak RSS is its own; results merged into
``benchmarks/results/scale_cpu.json``):

generate  ``mate.data.synthetic.write_dataset(ROOT/data, 14616, seed=0)`` (HumanML3D's motion
          count), written to ROOT/data.partial and renamed when complete (reused on later runs).
          Time, peak RSS of the parent and of the worker processes, size on disk.
index     ``MotionTextDataset(ROOT/data, "train")`` then one full pass of a DataLoader (batch 32,
          ``collate_motion_text``) over it: time and peak RSS of each, against the size of the
          motions on disk. The loader reads only .npy headers while indexing and memory-maps a
          motion when an item is loaded, so the peak stays far below the data size.
train     ``python -m mate.train --data ROOT/data --preset cpu-small --stage0-epochs 1 --epochs 1
          --max-steps S`` watched from outside: the stage in progress (from the files the run
          directory gains as stages finish: ``STAGES``, ``mate.rundir.RunDir`` paths), the
          child's RSS sampled every 0.25 s (``/proc/<pid>/status``), the progress bars (stderr)
          for rates. A full epoch does not fit in ~20 minutes on 2 shared cores, so:
          (a) the full-scale run is stopped after ``--train-budget-s``; the stages it finished
              are measured, the one in progress is extrapolated from its progress bar;
          (b) a calibration run on the first ``--calib-motions`` training motions (same data,
              a split-file subset) completes every stage with the same ``--max-steps``;
          per-stage full-epoch times are extrapolated from the measured per-step / per-clip rates
          (stated per stage in ``extrapolation``, with what each number rests on).
          With ``--max-steps 0`` and a budget the run fits in, nothing is extrapolated: the
          measured epoch is in ``one_epoch_measured`` (wall, CPU seconds and peak RSS per stage).
reference the same training command on the first ``--reference-motions`` training motions: the
          memory the process needs whatever the data size, beside which the full-scale peaks
          show what 14,616 motions add.

Timed numbers on a shared 2-core machine are noisy: the load average is recorded beside them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS_DIR, environment  # noqa: E402

HUMANML3D_MOTIONS = 14616
PY = sys.executable

# Stage order of `python -m mate.train`, and what the run directory (mate.rundir.RunDir) holds
# once each one has finished: a stage output is complete when its ``.done`` marker exists (written
# last, atomically), the manifest when the data folder is ready, RUN/encoder/ when the export has
# been renamed into place, RUN/summary.json at the very end. The run directory has no file for the
# end of indexing: "startup+index" ends when run.json is written (the dataset folder known, the
# captions not yet indexed), so the indexing is counted in "subtexts".
STAGES = [
    ("startup+index", lambda run: run.manifest.is_file()),
    ("subtexts", lambda run: run.is_done(run.subtexts)),
    ("vocabulary", lambda run: run.is_done(run.vocab)),
    ("stage0", lambda run: run.is_done(run.stage_model("stage0"))),
    ("segments", lambda run: run.is_done(run.segments)),
    ("stage1", lambda run: run.is_done(run.stage_model("stage1"))),
    ("export", lambda run: run.encoder.is_dir()),
    ("finish", lambda run: run.summary.is_file()),
]
# tqdm bars on stderr: "<desc>:  12%|###   | 140/1170 [02:01<14:50, 1.16it/s]"
BAR = re.compile(r"(stage0 epoch \d+/\d+|stage1 epoch \d+/\d+|segments|indexing \S+ \S+):\s+\d+%\|[^|]*\|\s*"
                 r"(\d+)/(\d+) \[(\d+:)?(\d+):(\d+)<")


def stages_finished(run) -> int:
    """How many of ``STAGES`` the run directory ``run`` (a ``mate.rundir.RunDir``) shows finished,
    in order: ``STAGES[stages_finished(run)]`` is the stage in progress."""
    n = 0
    while n < len(STAGES) and STAGES[n][1](run):
        n += 1
    return n


def du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds_of(pid: int) -> float | None:
    """user + system CPU seconds of a live process (all its threads), from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_child(phase: str, args: argparse.Namespace) -> dict:
    """Run one phase in a fresh interpreter; it prints one JSON line last."""
    cmd = [PY, str(Path(__file__).resolve()), "--child", phase, "--root", str(args.root),
           "--motions", str(args.motions), "--seed", str(args.seed), "--loader-batch", str(args.loader_batch)]
    print(f"[bench_scale] {phase}: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"[bench_scale] phase {phase} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ child phases
def child_generate(args) -> dict:
    import resource

    from mate.data.synthetic import write_dataset
    from mate.memory import track_peak_memory

    data, partial = args.root / "data", args.root / "data.partial"
    marker = args.root / "data.complete.json"
    if data.is_dir() and marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("motions") == args.motions and info.get("seed") == args.seed:
            return {**info, "reused": True}
    shutil.rmtree(partial, ignore_errors=True)
    args.root.mkdir(parents=True, exist_ok=True)
    with track_peak_memory("generate") as mem:
        summary = write_dataset(partial, args.motions, seed=args.seed, progress=True)
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    shutil.rmtree(data, ignore_errors=True)
    os.rename(partial, data)
    info = {
        "motions": args.motions, "seed": args.seed, "captions": summary.num_captions,
        "frames": summary.num_frames, "splits": summary.split_sizes, "workers": summary.workers,
        "seconds": round(mem.seconds, 1), "peak_rss_bytes": mem.peak_rss_bytes,
        "peak_rss_waited_children_bytes": children_peak, "rss_source": mem.rss_source,
        "disk_bytes_total": du_bytes(data), "disk_bytes_new_joint_vecs": du_bytes(data / "new_joint_vecs"),
        "disk_bytes_new_joints": du_bytes(data / "new_joints"), "disk_bytes_texts": du_bytes(data / "texts"),
        "loadavg_after": loadavg(),
    }
    marker.write_text(json.dumps(info, indent=1))
    return {**info, "reused": False}


def child_index(args) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from mate.data.dataset import MotionTextDataset, collate_motion_text
    from mate.memory import current_rss_bytes, track_peak_memory

    data = args.root / "data"
    baseline = current_rss_bytes()  # torch, numpy, mate imported
    # Which files the items read, and how: count np.load calls with and without mmap_mode.
    calls = {"mmap": 0, "full": 0}
    real_load = np.load

    def counting_load(*a, **k):
        calls["mmap" if k.get("mmap_mode") else "full"] += 1
        return real_load(*a, **k)

    with track_peak_memory("index") as index_mem:
        dataset = MotionTextDataset(data, "train", progress=False)
    np.load = counting_load
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=args.loader_batch, shuffle=True, collate_fn=collate_motion_text)
    frames = batches = 0
    with track_peak_memory("loader_pass") as pass_mem:
        for batch in loader:
            frames += int(batch["lengths"].sum())
            batches += 1
    np.load = real_load
    motion_bytes = du_bytes(data / "new_joint_vecs")
    return {
        "items": len(dataset), "motions": len(dataset.motion_ids), "batches": batches, "frames_loaded": frames,
        "baseline_rss_bytes_after_imports": baseline,
        "index": {"seconds": round(index_mem.seconds, 2), "peak_rss_bytes": index_mem.peak_rss_bytes,
                  "peak_rss_delta_bytes": index_mem.peak_rss_delta_bytes, "rss_source": index_mem.rss_source},
        "loader_pass": {"seconds": round(pass_mem.seconds, 2), "peak_rss_bytes": pass_mem.peak_rss_bytes,
                        "peak_rss_delta_bytes": pass_mem.peak_rss_delta_bytes, "rss_source": pass_mem.rss_source,
                        "items_per_s": round(len(dataset) / pass_mem.seconds, 1),
                        "np_load_calls": calls},
        "disk_bytes_new_joint_vecs": motion_bytes, "disk_bytes_total": du_bytes(data),
        "peak_rss_over_motion_bytes": round(max(index_mem.peak_rss_bytes, pass_mem.peak_rss_bytes) / motion_bytes, 4),
        "peak_rss_delta_over_motion_bytes": round(max(index_mem.peak_rss_delta_bytes, pass_mem.peak_rss_delta_bytes)
                                                  / motion_bytes, 4),
        "loadavg_after": loadavg(),
    }


# ------------------------------------------------------------------------------ training
def parse_bars(stderr_text: str) -> dict:
    """Last state of each progress bar: {desc: (n, total, elapsed_s)}."""
    out = {}
    for m in BAR.finditer(stderr_text.replace("\r", "\n")):
        desc, n, total = m.group(1), int(m.group(2)), int(m.group(3))
        hours = int(m.group(4)[:-1]) if m.group(4) else 0
        elapsed = hours * 3600 + int(m.group(5)) * 60 + int(m.group(6))
        out[desc] = (n, total, elapsed)
    return out


def steady_step_rates(metrics_csv: Path) -> dict:
    """Per training stage, seconds per optimizer step after the first logged step (warm-up and
    first-batch costs excluded), from the time_s column of RUN/metrics.csv (--log-every 1)."""
    from mate.train.logs import read_metrics

    times: dict[str, dict[int, float]] = {}
    for row in read_metrics(metrics_csv, missing_ok=True):
        if row["split"] == "train" and row["time_s"] is not None:
            times.setdefault(row["stage"], {})[row["step"]] = row["time_s"]
    out = {}
    for stage, by_step in times.items():
        steps = sorted(by_step)
        if len(steps) >= 2 and steps[-1] > steps[0]:
            out[stage] = {"seconds_per_step": round((by_step[steps[-1]] - by_step[steps[0]]) / (steps[-1] - steps[0]), 3),
                          "from_step": steps[0], "to_step": steps[-1]}
    return out


def rss_breakdown(pid: int) -> dict | None:
    """VmRSS and its anonymous / file-backed parts (RssAnon, RssFile) of ``pid`` in bytes, from
    /proc (None where unreadable): mapped motion files show up in RssFile, heap in RssAnon."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "RssAnon", "RssFile")}
    except (OSError, KeyError, ValueError):
        return None


def watch_training(data: Path, run: Path, args, budget_s: float, label: str, epochs: int = 1) -> dict:
    """Run `python -m mate.train` on ``data`` into ``run`` and watch it (see module docstring)."""
    from mate.memory import rss_of_pid
    from mate.rundir import RunDir

    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    cmd = [PY, "-m", "mate.train", "--data", str(data), "--preset", "cpu-small", "--stage0-epochs", "1",
           "--epochs", str(epochs), "--out", str(run), "--encoder", args.encoder, "--log-every", "1", "--no-export"]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    if args.save_every:  # mid-epoch checkpoints: a full-epoch run can be continued with mate.train --resume
        cmd += ["--save-every", str(args.save_every)]
    print(f"[bench_scale] train ({label}): {' '.join(cmd)}", flush=True)
    err_path = run.parent / f"{run.name}.stderr.txt"
    run_dir = RunDir(run)
    t0 = time.perf_counter()
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    stage_index, stage_start, stage_cpu = 0, t0, 0.0
    cpu_now = 0.0
    stages: list[dict] = []
    peak_in_stage = 0
    stopped = False
    load_samples = []
    next_load_sample = t0
    rss_timeline: list[dict] = []  # every --sample-every-s: RSS and its anonymous / file-backed parts
    rusage = None
    while True:
        done_pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        rc = None
        if done_pid:
            rc = proc.returncode = os.waitstatus_to_exitcode(status)
            rusage = ru
        else:
            cpu_now = cpu_seconds_of(proc.pid) or cpu_now
        rss, _ = rss_of_pid(proc.pid)
        if rss:
            peak_in_stage = max(peak_in_stage, rss)
        finished = stages_finished(run_dir)
        now = time.perf_counter()
        while stage_index < finished:
            cpu = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else cpu_now
            stages.append({"stage": STAGES[stage_index][0], "seconds": round(now - stage_start, 1),
                           "cpu_seconds": round(cpu - stage_cpu, 1), "peak_rss_bytes": peak_in_stage or None,
                           "finished": True})
            stage_index, stage_start, stage_cpu, peak_in_stage = stage_index + 1, now, cpu, rss or 0
        if rc is not None:
            break
        if now - t0 > budget_s:
            os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.perf_counter() + 30
            while True:
                done_pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if done_pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.perf_counter() > deadline:
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, rusage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.1)
            stopped = True
            break
        if now >= next_load_sample:
            load_samples.append(loadavg()[0] if loadavg() else None)
            parts = rss_breakdown(proc.pid)
            if parts:
                stage = STAGES[stage_index][0] if stage_index < len(STAGES) else "finish"
                rss_timeline.append({"t": round(now - t0), "stage": stage, **parts})
            next_load_sample = now + args.sample_every_s
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    stderr_text = err_path.read_text(errors="replace")
    bars = parse_bars(stderr_text)
    in_progress = None
    if stage_index < len(STAGES) and (stopped or proc.returncode != 0):
        in_progress = {"stage": STAGES[stage_index][0], "seconds_so_far": round(time.perf_counter() - stage_start, 1),
                       "cpu_seconds_so_far": round(cpu_now - stage_cpu, 1),
                       "peak_rss_bytes_so_far": peak_in_stage or None, "finished": False}
    cpu_total = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else cpu_now
    summary = None
    step_rates = steady_step_rates(run_dir.metrics_csv)
    if run_dir.summary.exists():
        summary = json.loads(run_dir.summary.read_text())
    result = {
        "label": label, "command": cmd, "wall_seconds": round(wall, 1), "returncode": proc.returncode,
        "cpu_seconds": round(cpu_total, 1), "cores_used_on_average": round(cpu_total / wall, 2),
        "peak_rss_bytes_lifetime": (rusage.ru_maxrss * 1024) if rusage is not None else None,
        "stopped_at_budget": stopped, "budget_s": budget_s, "stages": stages, "in_progress": in_progress,
        "progress_bars": {k: {"n": v[0], "total": v[1], "elapsed_s": v[2]} for k, v in bars.items()},
        "steady_seconds_per_step": step_rates,
        "summary": summary, "loadavg_1min_samples": [x for x in load_samples if x is not None][:80],
        "rss_timeline": rss_timeline,
        "stderr_tail": stderr_text.replace("\r", "\n").strip().splitlines()[-5:],
        # for the reader only: nothing above is taken from the log
        "log_tail": run_dir.log.read_text(errors="replace").strip().splitlines()[-12:] if run_dir.log.exists() else [],
    }
    return result


def make_subset(data: Path, dest: Path, motions: int) -> dict:
    """A view of ``data`` with the first ``motions`` training ids (and a few val ids): symlinked
    motion/text folders and statistics, truncated split files."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in ("new_joint_vecs", "new_joints", "texts", "Mean.npy", "Std.npy"):
        os.symlink(data / name, dest / name)
    train = [x for x in (data / "train.txt").read_text().split() if x][:motions]
    val = [x for x in (data / "val.txt").read_text().split() if x][:max(1, motions // 16)]
    (dest / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (dest / "val.txt").write_text("".join(f"{i}\n" for i in val))
    return {"train_motions": len(train), "val_motions": len(val)}


def stage_seconds(run: dict, stage: str) -> float | None:
    for s in run["stages"]:
        if s["stage"] == stage:
            return s["seconds"]
    return None


def extrapolate(full: dict, calib: dict, index: dict | None, args) -> dict:
    """Per-stage time of one full epoch of each stage at full scale, from measured rates."""
    out: dict = {}
    batch = 32  # cpu-small
    train_items = index["items"] if index else None
    steps_epoch0 = math.ceil(train_items / batch) if train_items else None
    for name, run in (("full", full), ("calibration", calib)):
        if run is None:
            continue
        for desc, bar in run["progress_bars"].items():
            if bar["n"] > 0 and bar["elapsed_s"] > 0:
                out.setdefault("rates", {})[f"{name}:{desc}"] = {
                    "seconds_per_item": round(bar["elapsed_s"] / bar["n"], 4), "n": bar["n"], "total": bar["total"]}
    rates = out.get("rates", {})

    def rate(desc_prefix: str, prefer=("full", "calibration")):
        for who in prefer:
            for key, value in rates.items():
                if key.startswith(f"{who}:{desc_prefix}"):
                    return value, who
        return None, None

    def steady(stage: str):
        for who, run in (("full", full), ("calibration", calib)):
            if run and stage in run.get("steady_seconds_per_step", {}):
                return run["steady_seconds_per_step"][stage], who
        return None, None

    est = {}
    for stage in ("stage0", "stage1"):
        if not steps_epoch0:
            break
        sr, who = steady(stage)
        if sr:
            est[stage] = {"seconds": round(sr["seconds_per_step"] * steps_epoch0), "steps": steps_epoch0,
                          "basis": f"{who} run: steady {sr['seconds_per_step']} s/step over steps "
                                   f"{sr['from_step']}..{sr['to_step']} (metrics.csv), x {steps_epoch0} steps"}
    r0, who0 = rate("stage0")
    if r0 and steps_epoch0 and "stage0" not in est:
        est["stage0"] = {"seconds": round(r0["seconds_per_item"] * steps_epoch0), "steps": steps_epoch0,
                         "basis": f"{who0} run: {r0['n']} steps at {r0['seconds_per_item']} s/step"}
    rs, whos = rate("segments")
    if rs:
        clips_full = rs["total"] if whos == "full" else None
        if clips_full is None and full and full["progress_bars"].get("segments"):
            clips_full = full["progress_bars"]["segments"]["total"]
        if clips_full is None and index:
            clips_full = index["motions"]  # ~one clip per motion (captions of a clip share it)
        est["segments"] = {"seconds": round(rs["seconds_per_item"] * clips_full), "clips": clips_full,
                           "basis": f"{whos} run: {rs['n']} clips at {rs['seconds_per_item']} s/clip"}
    r1, who1 = rate("stage1", prefer=("full", "calibration"))
    if r1 and train_items and "stage1" not in est:
        # stage 1 drops captions without a vocabulary word (a handful): the same step count
        est["stage1"] = {"seconds": round(r1["seconds_per_item"] * steps_epoch0), "steps": steps_epoch0,
                         "basis": f"{who1} run: {r1['n']} steps at {r1['seconds_per_item']} s/step"}
    for stage in ("startup+index", "subtexts", "vocabulary"):
        seconds = stage_seconds(full, stage) if full else None
        if seconds is not None:
            est[stage] = {"seconds": seconds, "basis": "measured at full scale"}
    if calib:
        seconds = stage_seconds(calib, "export")
        if seconds is not None:
            est["export"] = {"seconds": seconds, "basis": "measured on the calibration run (size-independent)"}
    # CPU time is what contention does not change: each stage's CPU/wall ratio where it was measured
    # turns the wall estimate into CPU seconds, and a free machine with 2 cores runs those in
    # between cpu / 2 (perfect use of both cores) and cpu / 1 (one busy core) seconds.
    def cpu_ratio(stage: str) -> float | None:
        for run in (full, calib):
            if not run:
                continue
            for s in run["stages"] + ([run["in_progress"]] if run.get("in_progress") else []):
                if s["stage"] == stage:
                    wall = s.get("seconds", s.get("seconds_so_far"))
                    cpu = s.get("cpu_seconds", s.get("cpu_seconds_so_far"))
                    if wall and cpu is not None:
                        return cpu / wall
        return None

    for stage, value in est.items():
        ratio = cpu_ratio(stage)
        if ratio is not None:
            value["cores_used_while_measured"] = round(ratio, 2)
            value["cpu_seconds"] = round(value["seconds"] * ratio)
    out["full_epoch_estimate"] = est
    out["caveats"] = [
        "2 shared cores: the training process got about half a core on average (cores_used_while_measured); "
        "wall times scale with the machine's load, CPU seconds much less",
        "per-step rates exclude each epoch's validation pass (at most 20 batches) and the first step's warm-up",
        "stage1's step count is taken equal to stage0's (it drops only captions without a vocabulary word)",
        "segments: one progress-bar item per distinct clip (the captions of a clip share its encoded sub-clips)",
    ]
    if est:
        total = sum(v["seconds"] for v in est.values())
        out["total_seconds_estimate"] = round(total)
        out["total_hours_estimate"] = round(total / 3600, 2)
        if all("cpu_seconds" in v for v in est.values()):
            cpu = sum(v["cpu_seconds"] for v in est.values())
            out["total_cpu_hours_estimate"] = round(cpu / 3600, 2)
            out["free_2_core_machine_hours_range"] = [round(cpu / 2 / 3600, 2), round(cpu / 3600, 2)]
    return out


def measured_epoch(full: dict) -> dict | None:
    """The headline of a complete full-scale run (``--max-steps 0``, every stage finished): wall and
    CPU seconds and peak RSS per stage, as watched from outside, beside the run's own per-stage
    ``memory`` from summary.json. None if the run did not finish."""
    if not full or full.get("returncode") != 0 or full.get("stopped_at_budget"):
        return None
    summary = full.get("summary") or {}
    memory = summary.get("memory", {})
    stages = {}
    for s in full["stages"]:
        row = {"seconds": s["seconds"], "cpu_seconds": s["cpu_seconds"], "peak_rss_bytes": s["peak_rss_bytes"]}
        if s["stage"] in memory:
            row["run_reported"] = memory[s["stage"]]
        for stage in ("stage0", "stage1"):
            if s["stage"] == stage and stage in summary:
                row["steps"] = summary[stage].get("steps")
        stages[s["stage"]] = row
    return {"wall_seconds": full["wall_seconds"], "wall_hours": round(full["wall_seconds"] / 3600, 2),
            "cpu_seconds": full["cpu_seconds"], "peak_rss_bytes": full["peak_rss_bytes_lifetime"],
            "stages": stages,
            "note": "one uninterrupted run of python -m mate.train --preset cpu-small --stage0-epochs 1 --epochs 1 "
                    "on the full synthetic set; stage rows run from the previous stage's completion in the run "
                    "directory (its .done marker; run.json for startup+index, so indexing counts in subtexts) "
                    "to this one's (stage0 includes building the model and the loaders)"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "mate_scale",
                   help="working folder (data, runs); ~2.5 GB")
    p.add_argument("--motions", type=int, default=HUMANML3D_MOTIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phases", default="generate,index,train",
                   help="comma-separated subset of generate,index,train,reference,extrapolate (reference: the "
                        "same training command on a small subset; extrapolate: recompute the estimate from the "
                        "runs stored in --results)")
    p.add_argument("--skip-train", action="store_true", help="data and loader phases only")
    p.add_argument("--max-steps", type=int, default=20, help="optimizer steps per training stage (0: full epochs)")
    p.add_argument("--train-budget-s", type=float, default=720, help="wall-time budget of the full-scale run")
    p.add_argument("--save-every", type=int, default=0,
                   help="pass --save-every N to mate.train (checkpoints of a long full-epoch run)")
    p.add_argument("--calib-motions", type=int, default=64, help="training motions of the calibration run (0: skip)")
    p.add_argument("--calib-budget-s", type=float, default=600)
    p.add_argument("--reference-motions", type=int, default=200, help="training motions of the reference phase")
    p.add_argument("--reference-epochs", type=int, default=1,
                   help="stage-1 epochs of the reference phase (several: does the RSS grow with steps?)")
    p.add_argument("--sample-every-s", type=float, default=30,
                   help="seconds between load-average and RSS-breakdown samples (rss_timeline)")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--loader-batch", type=int, default=32)
    p.add_argument("--results", type=Path, default=RESULTS_DIR / "scale_cpu.json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.root = args.root.absolute()
    if args.child:
        result = {"generate": child_generate, "index": child_index}[args.child](args)
        print(json.dumps(result), flush=True)
        return
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    if args.skip_train and "train" in phases:
        phases.remove("train")
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    if set(phases) - {"extrapolate", "reference"}:  # the headline is measured now: describe this machine and moment
        results.update({"benchmark": "bench_scale", "environment": environment(), "root": str(args.root),
                        "motions": args.motions, "seed": args.seed, "loadavg_at_start": loadavg()})

    def save():
        args.results.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.results.with_name(f".{args.results.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(tmp, args.results)

    if "generate" in phases:
        results["generate"] = run_child("generate", args)
        save()
    if "index" in phases:
        results["index"] = run_child("index", args)
        save()
    if "train" in phases:
        if "train_full" in results:  # keep the previous run's headline numbers
            results.setdefault("previous_train_runs", []).append({
                "max_steps": results.get("max_steps"), "extrapolation": results.get("extrapolation"),
                "full_wall_seconds": results["train_full"].get("wall_seconds"),
                "loadavg_1min_samples": results["train_full"].get("loadavg_1min_samples")})
        data = args.root / "data"
        if not (args.root / "data.complete.json").exists():
            raise SystemExit(f"{data}: no complete dataset; run the generate phase first")
        full = watch_training(data, args.root / "run_full", args, args.train_budget_s, "full scale")
        results["train_full"] = full
        save()
        calib = None
        if args.calib_motions:
            subset = args.root / f"data_first{args.calib_motions}"
            info = make_subset(data, subset, args.calib_motions)
            calib = watch_training(subset, args.root / "run_calib", args, args.calib_budget_s,
                                   f"calibration ({info['train_motions']} training motions)")
            calib["subset"] = info
            results["train_calibration"] = calib
            save()
        results["max_steps"] = args.max_steps
        epoch = measured_epoch(full) if not args.max_steps else None
        if epoch is not None:  # measured, nothing to extrapolate; earlier estimates stay in previous_train_runs
            results["one_epoch_measured"] = epoch
            results.pop("extrapolation", None)
            if not args.calib_motions:
                results.pop("train_calibration", None)
        else:
            results["extrapolation"] = extrapolate(full, calib, results.get("index"), args)
    if "reference" in phases:
        # The same command on the first --reference-motions training motions: what the process
        # needs whatever the data size (model, optimizer, allocator), against which the full-scale
        # peaks show what the data adds.
        data = args.root / "data"
        subset = args.root / f"data_first{args.reference_motions}"
        info = make_subset(data, subset, args.reference_motions)
        load_before = loadavg()
        ref = watch_training(subset, args.root / "run_reference", args, args.calib_budget_s,
                             f"small-scale reference ({info['train_motions']} training motions)",
                             epochs=args.reference_epochs)
        ref["subset"] = info
        key = "small_scale_reference" + ("" if args.reference_epochs == 1 else f"_{args.reference_epochs}_stage1_epochs")
        results[key] = {"max_steps": args.max_steps, "stage1_epochs": args.reference_epochs,
                        "environment": environment(), "loadavg_at_start": load_before, **ref}
        save()
    if "extrapolate" in phases and "train_full" in results:
        epoch = measured_epoch(results["train_full"]) if not results.get("max_steps") else None
        if epoch is not None:
            results["one_epoch_measured"] = epoch
            results.pop("extrapolation", None)
        else:
            results["extrapolation"] = extrapolate(results["train_full"], results.get("train_calibration"),
                                                   results.get("index"), args)
    if set(phases) - {"extrapolate", "reference"}:
        results["loadavg_at_end"] = loadavg()
    save()
    print(json.dumps({k: results[k] for k in results if k in ("generate", "index", "extrapolation", "one_epoch_measured")},
                     indent=1))
    print(f"[bench_scale] wrote {args.results}")


if __name__ == "__main__":
    main()
