"""The run directory of ``python -m mate.train``: its layout, its manifest, stage caching, and
loading what a run produced. Every module that opens a run goes through here (see
``docs/run-directory.md``).

Layout (``RUN`` = ``--out``)::

    run.json                 the manifest: encoder, data, preset, the resolved configuration, versions
    data/, data.done         the synthetic set, when no --data was given
    subtexts.json(.done)     captions -> sub-texts
    vocab.json(.done)        the lemmatised training vocabulary (the prototypes)
    stage0/model.pt(.done)   stage 0 (the retrieval baseline), with summary.json
    segments.json(.done)     per caption: sub-texts and frame boundaries (from stage 0)
    stage1/model.pt(.done)   stage 1 (MATE), with summary.json
    checkpoints/             mid-stage checkpoints (removed when a stage finishes)
    encoder/                 the exported MATE-enhanced text encoder
    metrics.csv, tensorboard/, train.log, summary.json
    eval/                    mate.evaluate's metrics.json, report.md and figures

A stage output ``X`` is reused when ``X.done`` holds the same cache key (:func:`fingerprint` of
everything the output depends on); a key that differs retrains the stage.
"""
from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from mate.atomic import atomic_write_bytes, atomic_write_json

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "STAGES",
    "RunDir",
    "RunDirectoryError",
    "fingerprint",
    "is_cached",
    "forget",
    "mark_done",
    "write_manifest",
    "read_manifest",
    "check_run_dir",
    "load_stage_model",
    "encoder_spec",
    "data_root",
]

MANIFEST_NAME = "run.json"
MANIFEST_FORMAT = "mate-run"
MANIFEST_VERSION = 1

#: stage number -> (sub-folder, name in evaluation results, description)
STAGES = {0: ("stage0", "baseline", "stage 0 (the retrieval baseline)"),
          1: ("stage1", "mate", "stage 1 (MATE)")}


class RunDirectoryError(FileNotFoundError):
    """The run directory lacks something that is asked of it; the message says what and how to
    make it."""


def fingerprint(obj: Any) -> str:
    """A short stable hash (16 hex digits) of a JSON-able object (keys sorted; other values by
    ``str``): the cache key of a stage output."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _done_marker(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def is_cached(path: Path, key: str) -> bool:
    """A stage output at ``path`` is reusable when its ``.done`` marker holds ``key``."""
    marker = _done_marker(path)
    return path.exists() and marker.exists() and marker.read_text().strip() == key


def mark_done(path: Path, key: str) -> None:
    """Record that ``path`` is complete for ``key`` (written last, atomically)."""
    atomic_write_bytes(_done_marker(path), (key + "\n").encode())


def forget(path: Path) -> None:
    """Drop ``path``'s ``.done`` marker: the output is recomputed next time."""
    _done_marker(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created or read by building one)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    manifest = property(lambda self: self.root / MANIFEST_NAME)
    data = property(lambda self: self.root / "data")
    subtexts = property(lambda self: self.root / "subtexts.json")
    vocab = property(lambda self: self.root / "vocab.json")
    segments = property(lambda self: self.root / "segments.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    encoder = property(lambda self: self.root / "encoder")
    eval = property(lambda self: self.root / "eval")
    metrics_csv = property(lambda self: self.root / "metrics.csv")
    tensorboard = property(lambda self: self.root / "tensorboard")
    summary = property(lambda self: self.root / "summary.json")
    log = property(lambda self: self.root / "train.log")

    def stage_dir(self, name: str) -> Path:
        """``RUN/<name>`` (``stage0``, ``stage1``)."""
        return self.root / name

    def stage_model(self, name: str) -> Path:
        """``RUN/<name>/model.pt``: {"model": state dict, "config": MATEConfig dict}."""
        return self.root / name / "model.pt"

    def stage_summary(self, name: str) -> Path:
        return self.root / name / "summary.json"

    def is_done(self, path: Path) -> bool:
        """Whether ``path`` has a ``.done`` marker (finished, whatever its key)."""
        return _done_marker(path).is_file()


# ------------------------------------------------------------------------------- the manifest
def _versions() -> dict:
    import numpy
    import torch

    import mate

    versions = {"mate": mate.__version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__}
    transformers = sys.modules.get("transformers")
    if transformers is not None:
        versions["transformers"] = transformers.__version__
    return versions


def write_manifest(root: str | Path, *, encoder: str, data_root: Path, synthetic: bool, preset: str,
                   config: dict, argv: Sequence[str] | None = None) -> Path:
    """Write ``RUN/run.json`` (atomically) when a run starts: the text-encoder spec, the dataset
    folder (``synthetic``: the set generated into ``RUN/data``), the preset, the fully resolved
    configuration, the command line when there was one, and library versions."""
    run = RunDir(Path(root))
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoder": encoder, "data_root": str(Path(data_root).resolve()), "synthetic_data": bool(synthetic),
        "preset": preset, "config": config, "argv": list(argv) if argv is not None else None,
        "versions": _versions(),
    }
    return atomic_write_json(run.manifest, manifest)


def _legacy_hint(root: Path) -> str:
    return (f"Finish or migrate it with `python -m mate.train --out {root}` and the same arguments as the "
            f"original run (see its train.log): the manifest is written when a run starts, and the stages "
            f"that finished are reused, not retrained")


def read_manifest(root: str | Path) -> dict:
    """``RUN/run.json``. Raises :class:`RunDirectoryError` when ``root`` is not a run directory or
    has no manifest (a run from before manifests existed: the message says how to migrate it)."""
    root = Path(root)
    if not root.is_dir():
        raise RunDirectoryError(f"{root} is not a directory: expected a run directory made by "
                                f"`python -m mate.train --out {root}`")
    path = RunDir(root).manifest
    if not path.is_file():
        raise RunDirectoryError(f"{path} not found: {root} has no run manifest (a run directory from before "
                                f"MATE wrote one, or not a run directory). {_legacy_hint(root)}")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise RunDirectoryError(f"{path} is not valid JSON ({err}). {_legacy_hint(root)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise RunDirectoryError(f"{path} is not a MATE run manifest (no \"format\": \"{MANIFEST_FORMAT}\")")
    for key in ("encoder", "data_root", "config"):
        if key not in manifest:
            raise RunDirectoryError(f"{path} has no {key!r}. {_legacy_hint(root)}")
    return manifest


def encoder_spec(root: str | Path) -> str:
    """The text-encoder spec the run was trained with (from its manifest)."""
    return read_manifest(root)["encoder"]


def data_root(root: str | Path, override: str | Path | None = None) -> Path:
    """The run's dataset folder: ``override`` when given, else the manifest's (``RUN/data`` for a
    generated synthetic set, wherever the run directory has moved). Raises
    :class:`RunDirectoryError` when it is not a directory."""
    root = Path(root)
    if override is not None:
        if not Path(override).is_dir():
            raise RunDirectoryError(f"--data {override} is not a directory")
        return Path(override)
    manifest = read_manifest(root)
    path = RunDir(root).data if manifest.get("synthetic_data") else Path(manifest["data_root"])
    if not path.is_dir():
        raise RunDirectoryError(f"the dataset of {root} ({path}, from {RunDir(root).manifest}) is not a directory; "
                                f"pass it with --data DIR")
    return path


def check_run_dir(root: str | Path, stages: Sequence[int] = (0, 1)) -> RunDir:
    """The :class:`RunDir` of a run whose manifest, vocabulary and ``stages`` exist; otherwise
    :class:`RunDirectoryError` naming everything missing and how to produce it."""
    root = Path(root)
    read_manifest(root)
    run = RunDir(root)
    missing = []
    for stage in stages:
        folder, _, what = STAGES[stage]
        if not run.stage_model(folder).is_file():
            missing.append(f"{folder}/model.pt ({what} has not finished)")
    if not run.vocab.is_file():
        missing.append("vocab.json (the vocabulary stage has not run)")
    if missing:
        raise RunDirectoryError(
            f"{root} is missing " + "; ".join(missing) + f". Produce it with `python -m mate.train --out "
            f"{root}` and the same arguments as the original run (finished stages are reused, an interrupted "
            f"stage resumes)")
    return run


# ------------------------------------------------------------------------------ trained models
def load_stage_model(root: str | Path, stage: int, device: Any = "cpu", original_word_embeddings: bool = False):
    """The trained :class:`mate.model.mate_model.MATEModel` of one stage, in eval mode on ``device``.

    Rebuilt from ``RUN/run.json`` (the encoder spec), ``RUN/vocab.json`` (the prototypes) and
    ``RUN/stage{stage}/model.pt`` ({"model": state dict, "config": MATEConfig dict}). With
    ``original_word_embeddings`` the text encoder's word table is put back to the freshly built
    encoder's (the "original" variant). Raises :class:`RunDirectoryError` naming what is missing,
    ``ValueError`` when the files disagree."""
    import torch

    from mate.model.mate_model import MATEConfig, MATEModel
    from mate.text.encoders import build_text_encoder
    from mate.text.vocab import Vocabulary

    if stage not in STAGES:
        raise ValueError(f"stage must be 0 or 1, got {stage!r}")
    run = check_run_dir(root, (stage,))
    path = run.stage_model(STAGES[stage][0])
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path}: expected {{'model': state dict, 'config': MATEConfig dict}}")
    # A state dict saved from a torch.compile / DDP wrapper carries their prefixes.
    weights = {re.sub(r"^(?:_orig_mod\.|module\.)+", "", k): v for k, v in state["model"].items()}
    encoder = build_text_encoder(encoder_spec(run.root))
    original_table = encoder.word_embeddings.weight.detach().clone() if original_word_embeddings else None
    num_prototypes = weights["prototypes"].shape[0]
    vocab = Vocabulary.load(run.vocab)
    if max(1, len(vocab)) != num_prototypes:
        raise ValueError(f"{path} has {num_prototypes} prototypes but {run.vocab} has {len(vocab)} "
                         f"words: the run directory mixes two runs")
    feature_dim = weights["motion_encoder.input_proj.weight"].shape[1]
    model = MATEModel(encoder, feature_dim, num_prototypes, MATEConfig(**state["config"]), impl="reference")
    model.load_state_dict(weights)
    if original_table is not None:
        with torch.no_grad():
            model.text_encoder.word_embeddings.weight.copy_(original_table)
    return model.to(device).eval()
