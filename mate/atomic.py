"""Atomic file output: every file MATE writes goes through here.

A file is written to a temporary name beside its destination, flushed, ``fsync``'d, renamed over
the destination (``os.replace``, atomic on POSIX) and the folder is ``fsync``'d. A crash at any
moment leaves the old file or the complete new one, never a partial one. Temporary names start
with ``.<name>.tmp-`` (:data:`TMP_MARK`), so a sweep can find what a crash left.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["TMP_MARK", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_torch_save"]

TMP_MARK = ".tmp-"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, fsync it, rename it to
    ``path`` and fsync the folder (created if missing). On any error the temporary file is removed
    and ``path`` is untouched. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, payload: Any, indent: int = 1) -> Path:
    """``payload`` as JSON (one trailing newline; values JSON cannot hold become strings) to
    ``path`` atomically."""
    return atomic_write_text(path, json.dumps(payload, indent=indent, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically: never a partial file."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
