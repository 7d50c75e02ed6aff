"""Atomic file output: every file MATE writes goes through here.

A file is written to a temporary name beside its destination, flushed, ``fsync``'d, renamed over
the destination (``os.replace``, atomic on POSIX) and the folder is ``fsync``'d. A crash at any
moment leaves the old file or the complete new one, never a partial one. A folder is built in a
staging folder beside its destination and renamed into place (:func:`atomic_directory`). Temporary names start
with ``.<name>.tmp-`` (:data:`TMP_MARK`), so a sweep can find what a crash left.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["TMP_MARK", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "atomic_torch_save", "atomic_directory"]

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


def _finalise_tree(directory: Path) -> None:
    """Flush every file to disk and give files and folders the umask's permissions (some writers,
    e.g. transformers' safetensors shards, create owner-only files via temporary files)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            path.chmod(0o666 & ~umask)
        elif path.is_dir():
            path.chmod(0o777 & ~umask)
    directory.chmod(0o777 & ~umask)  # mkdtemp makes it owner-only


@contextmanager
def atomic_directory(out_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside ``out_dir``; when the block succeeds, flush it and
    rename it to ``out_dir`` (replacing an existing one only if ``overwrite``). On an error the
    staging directory is deleted and ``out_dir`` is untouched: there is never a half-written export."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
        _finalise_tree(staging)
        if out_dir.exists():
            retired = out_dir.with_name(f".{out_dir.name}.replaced-{uuid.uuid4().hex[:8]}")
            os.rename(out_dir, retired)
            os.rename(staging, out_dir)
            shutil.rmtree(retired) if retired.is_dir() else retired.unlink()
        else:
            os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
