"""Peak memory of a block of code: process RSS (host) and ``torch.cuda.max_memory_allocated``.

    from mate.memory import track_peak_memory

    with track_peak_memory("stage0") as mem:
        train_stage(...)
    log.info("%s: %.1f s, peak RSS %s, peak CUDA %s", mem.name, mem.seconds,
             format_bytes(mem.peak_rss_bytes), format_bytes(mem.peak_cuda_bytes))
    summary["stage0"]["memory"] = mem.as_dict()

Host memory (Linux first, portable fallbacks):

* At entry the kernel's peak-RSS counter (``VmHWM``) is reset through ``/proc/self/clear_refs``
  (``"5"``; Linux >= 4.0, the process's own file), so at exit ``VmHWM`` *is* the peak RSS of the
  block, exactly, whatever its duration (no sampling can miss a short spike).
* A sampling thread also reads the current RSS every ``interval`` seconds (``psutil`` when it is
  installed, else ``/proc/self/statm``): the fallback where ``clear_refs`` cannot be written, and
  a cross-check. Where neither /proc nor psutil exists, ``resource.getrusage`` (``ru_maxrss``,
  the lifetime peak) is all there is; ``rss_source`` says which method produced the number.
* Nesting works: an inner block that resets the counter first folds the peak so far into every
  enclosing block, and hands its own peak to them at exit.

RSS counts every resident page of the process, file-backed ones included: pages of a memory-mapped
dataset count while they are mapped and resident (they are reclaimable, unlike heap memory).

CUDA memory: when torch is imported and CUDA is initialised, the allocator's peak counter is reset
at entry (``torch.cuda.reset_peak_memory_stats``, after folding the current peak into enclosing
blocks) and read at exit (``torch.cuda.max_memory_allocated``): bytes held by tensors, not the
caching allocator's reserve (``peak_cuda_reserved_bytes`` has that). ``None`` on a CPU run. This
module never imports torch itself, so ``import mate.memory`` stays cheap.

Also: :func:`current_rss_bytes`, :func:`lifetime_peak_rss_bytes`, :func:`rss_of_pid` (a child
process, e.g. a training run watched from a benchmark) and :func:`format_bytes`.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator

__all__ = [
    "PeakMemory",
    "track_peak_memory",
    "current_rss_bytes",
    "lifetime_peak_rss_bytes",
    "rss_of_pid",
    "format_bytes",
]

try:  # optional: not a dependency
    import psutil as _psutil
except ImportError:  # pragma: no cover - depends on the environment
    _psutil = None

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATUS_FIELD = re.compile(r"^(VmRSS|VmHWM):\s+(\d+)\s+kB", re.M)


def _read_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes from /proc (empty dict when unavailable)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    return {name: int(kb) * 1024 for name, kb in _STATUS_FIELD.findall(text)}


def current_rss_bytes() -> int | None:
    """Resident set size of this process now, in bytes (None when it cannot be read)."""
    if _psutil is not None:
        return int(_psutil.Process().memory_info().rss)
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def lifetime_peak_rss_bytes() -> int | None:
    """Peak RSS of this process since it started (or since the last reset by
    :func:`track_peak_memory`), in bytes: ``VmHWM``, else ``getrusage`` ``ru_maxrss``."""
    hwm = _read_status().get("VmHWM")
    if hwm is not None:
        return hwm
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, kB on Linux


def rss_of_pid(pid: int) -> tuple[int | None, int | None]:
    """(current RSS, peak RSS ``VmHWM``) of process ``pid`` in bytes; None where unreadable (the
    process ended, or no /proc and no psutil)."""
    status = _read_status(pid)
    if status:
        return status.get("VmRSS"), status.get("VmHWM")
    if _psutil is not None:
        try:
            return int(_psutil.Process(pid).memory_info().rss), None
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess and friends
            return None, None
    return None, None


def format_bytes(n: int | float | None) -> str:
    """``1536 -> '1.5 KiB'``; None -> ``'n/a'``."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0). False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass(eq=False)  # identity: nested blocks are told apart by object
class PeakMemory:
    """What :func:`track_peak_memory` measured (filled in when the block exits).

    Attributes:
        name: the label given to :func:`track_peak_memory`.
        seconds: wall time of the block (``time.perf_counter``).
        peak_rss_bytes: peak resident set size of the whole process during the block (bytes; it
            includes what was resident before the block: see ``peak_rss_delta_bytes``).
        start_rss_bytes, end_rss_bytes: RSS at entry and at exit.
        peak_cuda_bytes: ``torch.cuda.max_memory_allocated`` during the block, None without CUDA.
        peak_cuda_reserved_bytes: ``torch.cuda.max_memory_reserved`` during the block, or None.
        rss_source: how ``peak_rss_bytes`` was obtained: ``"vmhwm-reset"`` (exact),
            ``"sampled"`` (``interval`` sampling, psutil or /proc; may miss spikes shorter than
            ``interval``), ``"getrusage-lifetime"`` (the process's lifetime peak, an upper bound).
        samples: how many times the sampling thread read the RSS.
    """

    name: str
    seconds: float = 0.0
    peak_rss_bytes: int | None = None
    start_rss_bytes: int | None = None
    end_rss_bytes: int | None = None
    peak_cuda_bytes: int | None = None
    peak_cuda_reserved_bytes: int | None = None
    rss_source: str = "none"
    samples: int = 0
    # internal running maxima, raised by nested blocks
    _sampled_peak: int = field(default=0, repr=False)
    _hwm_floor: int = field(default=0, repr=False)
    _cuda_floor: int = field(default=0, repr=False)
    _cuda_reserved_floor: int = field(default=0, repr=False)

    @property
    def peak_rss_delta_bytes(self) -> int | None:
        """``peak_rss_bytes - start_rss_bytes``: what the block added at its peak."""
        if self.peak_rss_bytes is None or self.start_rss_bytes is None:
            return None
        return self.peak_rss_bytes - self.start_rss_bytes

    def as_dict(self) -> dict:
        """JSON-ready dict of the public fields plus ``peak_rss_delta_bytes``."""
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        out["seconds"] = round(self.seconds, 4)
        out["peak_rss_delta_bytes"] = self.peak_rss_delta_bytes
        return out

    def __str__(self) -> str:
        cuda = f", peak CUDA {format_bytes(self.peak_cuda_bytes)}" if self.peak_cuda_bytes is not None else ""
        return (f"{self.name}: {self.seconds:.2f} s, peak RSS {format_bytes(self.peak_rss_bytes)} "
                f"(+{format_bytes(self.peak_rss_delta_bytes)}){cuda}")


# Blocks currently open (any thread), innermost last: nested blocks fold their peaks into these.
_active: list[PeakMemory] = []
_active_lock = threading.Lock()


def _torch_cuda(device):
    """(torch.cuda module, device) when torch is already imported and CUDA is initialised."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "cuda"):
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
    except Exception:  # noqa: BLE001 - exotic builds
        return None
    return torch.cuda


def _cuda_peaks(cuda, device) -> tuple[int, int]:
    return int(cuda.max_memory_allocated(device)), int(cuda.max_memory_reserved(device))


class _Sampler(threading.Thread):
    def __init__(self, result: PeakMemory, interval: float):
        super().__init__(name=f"track_peak_memory[{result.name}]", daemon=True)
        self.result, self.interval = result, interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        while True:
            rss = current_rss_bytes()
            if rss is not None:
                self.result.samples += 1
                if rss > self.result._sampled_peak:
                    self.result._sampled_peak = rss
            if self.stop_event.wait(self.interval):
                return


@contextmanager
def track_peak_memory(name: str = "block", *, interval: float = 0.01, reset_peak: bool = True,
                      cuda_device=None) -> Iterator[PeakMemory]:
    """Measure the wall time, the peak RSS and (on CUDA) the peak allocated memory of a block.

    Args:
        name: a label, kept in the result.
        interval: seconds between RSS samples of the sampling thread (> 0).
        reset_peak: reset the kernel's peak-RSS counter at entry (exact peaks; it rewrites this
            process's ``VmHWM``, which other readers of that counter will notice). False: rely on
            sampling, plus ``VmHWM`` when the block raises the process's lifetime peak.
        cuda_device: the CUDA device to watch (default: the current one).

    Yields:
        :class:`PeakMemory`, whose fields are filled in when the block exits (also when it
        raises).

    Raises:
        ValueError: ``interval`` not a positive finite number.
    """
    # Long mostly for its docstring: the body starts a sampler, runs the block, and stops it.
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < float("inf"):
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    result = PeakMemory(name=str(name))
    result.start_rss_bytes = current_rss_bytes()
    hwm_start = lifetime_peak_rss_bytes()
    cuda = _torch_cuda(cuda_device)
    with _active_lock:
        # Fold what the enclosing blocks have seen so far into them before the counters reset.
        if hwm_start is not None:
            for outer in _active:
                outer._hwm_floor = max(outer._hwm_floor, hwm_start)
        if cuda is not None:
            allocated, reserved = _cuda_peaks(cuda, cuda_device)
            for outer in _active:
                outer._cuda_floor = max(outer._cuda_floor, allocated)
                outer._cuda_reserved_floor = max(outer._cuda_reserved_floor, reserved)
            cuda.reset_peak_memory_stats(cuda_device)
        did_reset = reset_peak and _reset_hwm()
        _active.append(result)
    hwm_at_entry = lifetime_peak_rss_bytes() if did_reset else hwm_start
    sampler = _Sampler(result, float(interval))
    sampler.start()
    started = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        sampler.stop_event.set()
        sampler.join()
        result.end_rss_bytes = current_rss_bytes()
        hwm_end = lifetime_peak_rss_bytes()
        candidates = [v for v in (result._sampled_peak, result.start_rss_bytes, result.end_rss_bytes,
                                  result._hwm_floor) if v]
        if did_reset and hwm_end is not None:
            candidates.append(hwm_end)
            result.rss_source = "vmhwm-reset"
        elif hwm_end is not None and hwm_at_entry is not None and hwm_end > hwm_at_entry:
            candidates.append(hwm_end)  # the block set a new lifetime peak: VmHWM is its peak
            result.rss_source = "sampled+vmhwm"
        elif result.samples:
            result.rss_source = "sampled"
        elif hwm_end is not None:
            candidates.append(hwm_end)
            result.rss_source = "getrusage-lifetime"
        result.peak_rss_bytes = max(candidates) if candidates else None
        cuda = _torch_cuda(cuda_device)  # CUDA may have been initialised inside the block
        if cuda is not None:
            allocated, reserved = _cuda_peaks(cuda, cuda_device)
            result.peak_cuda_bytes = max(allocated, result._cuda_floor)
            result.peak_cuda_reserved_bytes = max(reserved, result._cuda_reserved_floor)
        with _active_lock:
            for i, active in enumerate(_active):
                if active is result:
                    del _active[i]
                    break
            for outer in _active:  # enclosing blocks inherit this block's peaks
                if result.peak_rss_bytes is not None:
                    outer._hwm_floor = max(outer._hwm_floor, result.peak_rss_bytes)
                if result.peak_cuda_bytes is not None:
                    outer._cuda_floor = max(outer._cuda_floor, result.peak_cuda_bytes)
                    outer._cuda_reserved_floor = max(outer._cuda_reserved_floor,
                                                     result.peak_cuda_reserved_bytes or 0)
