"""Crash-safe training checkpoints: atomic, self-checking files and "the last good one" on resume.

File format (``RUN/checkpoints/<stage>-step<NNNNNNNN>.ckpt``)::

    offset  size  field
    0       8     magic  b"MATECKPT"
    8       4     format version (little-endian uint32, currently 1)
    12      8     payload length in bytes (little-endian uint64)
    20      32    SHA-256 of the payload
    52      ...   payload: ``torch.save`` of a dict (tensors, numbers, strings, lists, tuples, dicts
                  only, so that it loads with ``torch.load(weights_only=True)``: no pickled code)

Writing: the payload goes to a temporary file in the same folder (``.<name>.tmp-XXXX``), the
header is patched in once its hash is known, the file is flushed and ``fsync``'d, renamed over the
final name (``os.replace``: atomic on POSIX) and the folder is ``fsync``'d. A crash at any moment
leaves either the previous checkpoints untouched or a complete new one; stray temporary files are
swept by :func:`remove_stale_temporaries`.

Reading: :func:`read_checkpoint` checks the magic, the version, the length and the hash before it
unpickles anything, and raises :class:`CorruptCheckpointError` naming the problem.
:func:`latest_valid_checkpoint` walks a stage's checkpoints newest first and returns the first one
that passes, warning (:class:`CheckpointWarning`) about each one it skips.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from mate.atomic import TMP_MARK as _TMP_MARK, atomic_torch_save, atomic_write as _atomic_write, atomic_write_bytes

__all__ = [
    "CHECKPOINT_MAGIC",
    "CHECKPOINT_VERSION",
    "CheckpointWarning",
    "CorruptCheckpointError",
    "atomic_write_bytes",
    "atomic_torch_save",
    "checkpoint_path",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "read_checkpoint",
    "remove_checkpoints",
    "remove_stale_temporaries",
    "write_checkpoint",
]

log = logging.getLogger("mate.checkpoint")

CHECKPOINT_MAGIC = b"MATECKPT"
CHECKPOINT_VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")  # magic, version, payload length, sha256
HEADER_SIZE = _HEADER.size  # 52
_NAME = re.compile(r"^(?P<stage>[A-Za-z0-9_]+)-step(?P<step>\d+)\.ckpt$")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is truncated, has a bad magic/version, or its payload hash does not match."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped on resume (corrupt, or from another configuration)."""


# ------------------------------------------------------------------------------ checkpoints
def write_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as a checkpoint file (format in the module docstring), atomically."""

    def write(f) -> None:
        f.write(b"\0" * HEADER_SIZE)  # placeholder: the hash is known once the payload is written
        torch.save(payload, f)
        length = f.tell() - HEADER_SIZE
        f.flush()
        f.seek(HEADER_SIZE)
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
        f.seek(0)
        f.write(_HEADER.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, length, digest.digest()))

    path = Path(path)
    _atomic_write(path, write)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Verify and load a checkpoint written by :func:`write_checkpoint`.

    Raises :class:`CorruptCheckpointError` (truncated file, bad magic, unknown version, length or
    SHA-256 mismatch, unreadable payload) and ``FileNotFoundError``."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < HEADER_SIZE:
        raise CorruptCheckpointError(f"{path}: truncated ({len(data)} bytes, shorter than the {HEADER_SIZE}-byte header)")
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != CHECKPOINT_MAGIC:
        raise CorruptCheckpointError(f"{path}: bad magic {magic!r} (not a MATE checkpoint)")
    if not 1 <= version <= CHECKPOINT_VERSION:
        raise CorruptCheckpointError(f"{path}: format version {version}; this MATE reads up to {CHECKPOINT_VERSION}")
    payload = memoryview(data)[HEADER_SIZE:]
    if len(payload) != length:
        raise CorruptCheckpointError(f"{path}: truncated or padded: payload is {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpointError(f"{path}: SHA-256 mismatch (the payload is damaged)")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # the hash matched: a payload we cannot read (e.g. a newer torch)
        raise CorruptCheckpointError(f"{path}: payload does not load: {err}") from err


def checkpoint_path(directory: str | os.PathLike, stage: str, step: int) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_]+", stage):
        raise ValueError(f"stage name {stage!r} must be letters, digits and underscores")
    return Path(directory) / f"{stage}-step{int(step):08d}.ckpt"


def list_checkpoints(directory: str | os.PathLike, stage: str) -> list[tuple[int, Path]]:
    """(step, path) of ``stage``'s checkpoints in ``directory``, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        m = _NAME.match(path.name)
        if m and m["stage"] == stage and path.is_file():
            found.append((int(m["step"]), path))
    return sorted(found, reverse=True)


def latest_valid_checkpoint(directory: str | os.PathLike, stage: str, accept: Callable[[dict], str | None] | None = None,
                            map_location: Any = "cpu") -> tuple[Path, dict] | None:
    """The newest checkpoint of ``stage`` that verifies (and that ``accept`` does not reject:
    ``accept(payload)`` returns None to accept, else the reason to skip). Each skipped file gets a
    :class:`CheckpointWarning` (and a log line). None when there is none."""
    for _, path in list_checkpoints(directory, stage):
        try:
            payload = read_checkpoint(path, map_location=map_location)
        except (CorruptCheckpointError, OSError) as err:
            _skip(f"checkpoint {path.name} is unusable ({err}); trying the previous one")
            continue
        reason = accept(payload) if accept is not None else None
        if reason is not None:
            _skip(f"checkpoint {path.name} skipped: {reason}")
            continue
        return path, payload
    return None


def _skip(message: str) -> None:
    log.warning(message)
    warnings.warn(message, CheckpointWarning, stacklevel=3)


def prune_checkpoints(directory: str | os.PathLike, stage: str, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints of ``stage``; returns the deleted paths."""
    removed = []
    for _, path in list_checkpoints(directory, stage)[max(keep, 1):]:
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def remove_checkpoints(directory: str | os.PathLike, stage: str) -> list[Path]:
    """Delete every checkpoint of ``stage``; returns the deleted paths."""
    removed = []
    for _, path in list_checkpoints(directory, stage):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete temporary files that a killed writer left in ``directory`` (``.<name>.tmp-*``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        if path.name.startswith(".") and _TMP_MARK in path.name and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
