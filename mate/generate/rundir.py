"""Owns the generator's run directory (``GEN_RUN``, the ``--out`` of ``python -m
mate.generate.train``): its layout and its manifest.

Layout::

    run.json             the manifest: format "mate-generator-run", the full GenConfig, the
                         DenoiserConfig, the encoder (kind, source, fingerprint), the data
                         (folder, dataset, fps, feature width), the command line, versions
    Mean.npy, Std.npy    the data's feature statistics (samples are in this normalisation)
    model.pt, model.pt.done   the final weights {"model": state dict, "denoiser": DenoiserConfig dict}
    checkpoints/         gen-stepNNNNNNNN.ckpt, one per epoch (the last two kept), for --resume
    text_cache/          text-<key>.pt: the encoded training captions (mate.generate.text)
    summary.json         seconds, steps, final loss, peak memory

A generator run is rebuilt from ``run.json`` alone (plus the encoder it names).
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mate.atomic import atomic_write_json

__all__ = ["GEN_MANIFEST_FORMAT", "GenRunDir", "GeneratorRunError", "write_gen_manifest", "read_gen_manifest"]

GEN_MANIFEST_FORMAT = "mate-generator-run"
GEN_MANIFEST_VERSION = 1


class GeneratorRunError(FileNotFoundError):
    """A folder is not a (finished) generator run; the message says what is missing."""


@dataclass(frozen=True)
class GenRunDir:
    """The paths of one generator run (nothing is created by building one)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    manifest = property(lambda self: self.root / "run.json")
    mean = property(lambda self: self.root / "Mean.npy")
    std = property(lambda self: self.root / "Std.npy")
    model = property(lambda self: self.root / "model.pt")
    checkpoints = property(lambda self: self.root / "checkpoints")
    text_cache = property(lambda self: self.root / "text_cache")
    summary = property(lambda self: self.root / "summary.json")


def _versions() -> dict:
    import numpy
    import torch

    import mate

    return {"mate": mate.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__}


def write_gen_manifest(run: GenRunDir, *, config: dict, denoiser: dict, encoder: dict, data: dict,
                       argv=None) -> Path:
    """Write ``GEN_RUN/run.json`` atomically (fields in the module docstring)."""
    manifest = {"format": GEN_MANIFEST_FORMAT, "version": GEN_MANIFEST_VERSION,
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "config": config, "denoiser": denoiser, "encoder": encoder, "data": data,
                "argv": list(argv) if argv is not None else None, "versions": _versions()}
    return atomic_write_json(run.manifest, manifest)


def read_gen_manifest(root: str | Path) -> dict:
    """``GEN_RUN/run.json``; :class:`GeneratorRunError` when ``root`` is not a generator run
    (not a folder, no manifest, a MATE training run's manifest, unreadable JSON)."""
    root = Path(root)
    if not root.is_dir():
        raise GeneratorRunError(f"{root} is not a directory: expected a generator run made by "
                                f"`python -m mate.generate.train --out {root}`")
    path = GenRunDir(root).manifest
    if not path.is_file():
        raise GeneratorRunError(f"{root} is not a generator run: {path.name} not found (make one with "
                                f"`python -m mate.generate.train --data DIR --encoder SPEC --out {root}`)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise GeneratorRunError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != GEN_MANIFEST_FORMAT:
        what = "a MATE training run, not a generator run" if isinstance(manifest, dict) and \
            manifest.get("format") == "mate-run" else f"not a generator manifest (no \"format\": \"{GEN_MANIFEST_FORMAT}\")"
        raise GeneratorRunError(f"{path}: {what}")
    for key in ("config", "denoiser", "encoder", "data"):
        if key not in manifest:
            raise GeneratorRunError(f"{path} has no {key!r}: the run directory is damaged")
    return manifest
