"""Shared benchmark helpers: timing, environment description, JSON results."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def median_seconds(fn: Callable[[], object], min_repeats: int = 5, min_total_s: float = 0.3,
                   max_repeats: int = 1000, warmup: int = 1) -> tuple[float, int]:
    """Median wall time of ``fn()`` after ``warmup`` calls; repeats until both ``min_repeats``
    runs and ``min_total_s`` seconds are reached (or ``max_repeats``). Returns (median, repeats)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    total = 0.0
    while len(times) < max_repeats and (len(times) < min_repeats or total < min_total_s):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return statistics.median(times), len(times)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Machine and library versions recorded beside every result."""
    import numpy

    env = {
        "timestamp_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "numpy": numpy.__version__,
    }
    for name in ("torch", "triton", "numba", "transformers"):
        try:
            env[name] = __import__(name).__version__
        except Exception:  # not installed, or fails to import here
            env[name] = None
    try:
        import torch

        env["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        env["cuda"] = torch.version.cuda
    except Exception:
        env["device"] = "cpu"
    return env


def write_results(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    return path


def proc_status_kib(key: str) -> int:
    """A memory line of /proc/self/status in KiB (``VmRSS``: now; ``VmHWM``: the peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} line")
