"""Real motion-text datasets: HumanML3D, KIT-ML and the TMR ``annotations.json`` layout.

Two on-disk layouts are read (described with the feature layout, splits and length filter in
``docs/data.md``):

``texts`` layout (HumanML3D, and KIT-ML as processed by the HumanML3D scripts)::

    root/new_joint_vecs/<id>.npy   (T, 263) float32 at 20 fps  (KIT-ML: (T, 251) at 12.5 fps)
    root/texts/<id>.txt            one caption a line: caption#word/POS word/POS ...#start#end
    root/Mean.npy, root/Std.npy    (F,) feature statistics
    root/<split>.txt               motion ids, one a line ("M" prefix = mirrored copy, just an id)

``tmr`` layout (TMR and its forks)::

    root/annotations.json          {id: {path, duration, annotations: [{seg_id, text, start, end}]}}
    root/splits/<split>.txt        motion ids, one a line (TMR also ships ``nsim_test.txt``)
    root/<motion_dir>/<id>.npy     motions (``motion_dir`` defaults to "new_joint_vecs"; with
                                   ``motion_name="path"`` the file is <motion_dir>/<path>.npy,
                                   as TMR's own guoh3dfeats folder is organised)
    root/Mean.npy, root/Std.npy    (or TMR's ``mean.pt``/``std.pt``, or ``mean_path``/``std_path``)

TMR computes the same HumanML3D-skeleton features (263-d at 20 fps, "guoh3dfeats") for both of
its datasets, KIT-ML included, so a TMR-layout KIT-ML root reads as 263-d features at 20 fps; the
``label`` attribute says which layout and which features a dataset holds.

A caption with a sub-clip (start, end in seconds, not both 0.0) is cut to frames
``[int(start * fps), int(end * fps))`` exactly as the HumanML3D / TMR loaders do (``int``
truncates; the end is clamped to the motion's length). A caption whose start and end are both 0.0
covers the whole motion. As in the HumanML3D loader, a ``nan`` start/end is read as 0.0.

Decisions (documented because they change what a model sees):

* Items (``captions``): ``"all"`` (the default) makes every caption its own item, as retrieval
  training and evaluation need; ``"first"`` keeps one item per motion, its first caption (TMR
  evaluates ``annotations[0]`` of each motion); ``"random"`` keeps one item per distinct clip and
  draws one of its captions at each access (Guo et al.'s evaluation loader, reused by T2M-GPT and
  MoMask for FID / R-precision: their ``random.choice(text_list)``).
* Filtering uses the *cut* clip's length: clips shorter than ``min_frames`` (40 HumanML3D, 24 KIT)
  or ``max_frames`` (200) and longer are dropped; a clip of 0 frames is always dropped. The
  HumanML3D / T2M-GPT / MoMask loaders also drop every caption of a motion whose *full* length
  fails the filter; pass ``filter_full_motion=True`` to get that item set exactly. TMR filters
  neither its test splits nor crops them.
* Cropping to ``crop_frames`` (196): ``crop="random"`` draws the window start uniformly (seedable
  with ``seed``; inside DataLoader workers the generator is re-derived from the worker's seed, so
  workers do not repeat each other's crops and a seeded DataLoader is reproducible); ``"start"``
  keeps the first frames; ``"center"`` the middle ones. ``crop="auto"`` is ``"random"`` for the
  ``train`` split and ``"start"`` otherwise (deterministic evaluation; Guo et al.'s evaluation
  loaders crop at random, TMR does not crop). :func:`loader_convention` gives the option sets of
  the three reference projects.
* Bad motions (NaN/inf frames, 0 frames) are found at construction: with ``validate=True`` (the
  default) every motion file of the split is read once, whole (one sequential ``np.load`` per
  file, the same open that gives its shape), and checked for non-finite frames; the result is
  cached per process by (path, size, mtime), so a second dataset over the same files reads
  nothing. Measured on this project's 2-core CPU machine on a 2,100-motion synthetic split
  (6,468 captions, 209 MB of features): construction takes 0.45 s with the scan against 0.25 s
  with headers only (files in the page cache), i.e. the scan costs about 1 s/GB; reading the
  files cold ran at about 4.4 s/GB. HumanML3D's 29,232 motions (28.6 h mirrored: about 4.3 GB) cost some
  4 s warm and 20 s cold, once per process, its 4,384-motion test split (about 0.65 GB) under
  3 s. That is small next to training or evaluation, and it is the only way an
  evaluation can skip a bad motion without breaking the caption-clip alignment (a map-style
  dataset cannot drop an index after the fact). ``validate=False`` reads only the .npy headers;
  a non-finite clip then raises ``ValueError`` when its item is loaded, in both strict modes.
  Empty motions are seen from the header in both cases.
* ``strict=True`` (the class default) raises on the first bad input (``FileNotFoundError`` for a
  missing motion or text file, ``ValueError`` otherwise) with a message naming the file and, for
  caption lines, the line number. ``strict=False`` skips the bad item(s) and emits ONE
  ``DatasetProblemWarning`` that counts every problem kind and names the motions involved (also
  kept in ``problem_counts`` and ``problem_ids``). The command-line entry points (``mate.train``,
  ``mate.evaluate``, the plug-and-play protocol, ``mate.diagnostics``) build their datasets with
  ``strict=False``, so the real HumanML3D test split, whose ``007975`` and ``M007975`` are NaN,
  works out of the box; ``--strict-data`` restores strict mode. Dataset-level inputs (the split
  file, Mean/Std, the root) cannot be skipped: they raise in both modes.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mate.data.skeleton import HUMANML3D, KITML, SkeletonSpec, get_skeleton

__all__ = [
    "DATASET_SPECS",
    "DatasetSpec",
    "DatasetProblemWarning",
    "Caption",
    "MotionTextRecord",
    "MotionTextDataset",
    "collate_motion_text",
    "distinct_clips",
    "loader_convention",
    "CAPTION_MODES",
    "LOADER_CONVENTIONS",
    "parse_humanml3d_caption_line",
    "read_humanml3d_text_file",
    "read_tmr_annotations",
    "seconds_to_frames",
]


#: The fixed facts of a motion representation (feature width, frame rate, standard clip
#: lengths) are those of its skeleton: :class:`mate.data.skeleton.SkeletonSpec`, under its old
#: name here.
DatasetSpec = SkeletonSpec

DATASET_SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (HUMANML3D, KITML)}
# Both HumanML3D and KIT-ML loaders drop clips of 200 frames and longer and crop to 196.
assert HUMANML3D.max_frames == KITML.max_frames and HUMANML3D.crop_frames == KITML.crop_frames
DEFAULT_MAX_FRAMES = HUMANML3D.max_frames
DEFAULT_CROP_FRAMES = HUMANML3D.crop_frames
# A progress bar is worth its noise only for real-size splits.
_PROGRESS_THRESHOLD = 2000

# Problem kinds; the missing-file ones raise FileNotFoundError in strict mode, the rest ValueError.
_MISSING_FILE_KINDS = {"missing_motion", "missing_text"}
# The kinds real releases contain (HumanML3D's 007975 / M007975 are NaN): strict mode says how to skip them.
_BAD_MOTION_KINDS = {"nonfinite_motion", "empty_motion"}
# The warning names at most this many motions per problem kind (then "+N more").
_NAMED_MOTIONS = 10

#: What one item is (the ``captions`` argument): every caption, the first caption of each
#: motion, or one random caption of each distinct clip per access.
CAPTION_MODES = ("all", "first", "random")
#: The reference projects :func:`loader_convention` knows.
LOADER_CONVENTIONS = ("mate", "guo", "tmr")


def loader_convention(name: str, split: str) -> dict[str, Any]:
    """The :class:`MotionTextDataset` options that build ``split`` the way a reference project does.

    * ``"mate"``: ``{}``, this class's defaults: one item per caption (retrieval), the length
      filter on each cut clip, a random crop for ``train`` and a start-anchored one otherwise.
    * ``"guo"``: Guo et al.'s evaluation loader (text-to-motion ``Text2MotionDatasetV2``, copied
      by T2M-GPT's ``dataset_TM_eval`` and MoMask's ``Text2MotionDatasetEval``; the FID /
      R-precision / MM-Dist protocol): ``filter_full_motion=True`` (a motion of fewer than 40
      (KIT 24) or of 200 frames or more loses every caption, sub-clips included),
      ``captions="random"`` (one item per clip, one of its captions drawn at each access) and
      ``crop="random"``. Their crop also rounds the length down to a multiple of 4 frames (one
      unit less one time in three); that rounding is not reproduced.
    * ``"tmr"``: TMR's ``TextMotionDataset``: a split whose name contains "test" is neither
      length-filtered nor cropped (``min_frames=0, max_frames=None, crop_frames=None``: "not for
      the test set, otherwise it is not fair for everyone"); other splits keep annotations of 2
      to 10 s inclusive, at TMR's 20 fps ``min_frames=40, max_frames=201``, uncropped. Every split
      is ``captions="first"``: TMR evaluates the first annotation of each motion (its training
      draws a random annotation per motion instead, which this option set does not reproduce).
    """
    if name == "mate":
        return {}
    if name == "guo":
        return {"filter_full_motion": True, "captions": "random", "crop": "random"}
    if name == "tmr":
        if "test" in split:
            return {"min_frames": 0, "max_frames": None, "crop_frames": None, "captions": "first"}
        return {"min_frames": 40, "max_frames": 201, "crop_frames": None, "captions": "first"}
    raise ValueError(f"unknown loader convention {name!r}; expected one of {', '.join(LOADER_CONVENTIONS)}")


class DatasetProblemWarning(UserWarning):
    """The one warning a non-strict dataset emits when it skipped bad items."""


@dataclass(frozen=True)
class Caption:
    """One parsed caption: text, POS-tagged tokens ("word/POS", may be empty), span in seconds
    (0.0, 0.0 = the whole motion), its index in the motion's caption list and a unique key."""

    text: str
    tokens: tuple[str, ...]
    start: float
    end: float
    index: int
    key: str
    line: int | None = None  # 1-based line in the text file (texts layout only)


@dataclass(frozen=True)
class MotionTextRecord:
    """One dataset item before loading: caption + clip frames [start_frame, end_frame) of the file."""

    motion_id: str
    motion_path: str
    caption: Caption
    start_frame: int
    end_frame: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


class _CaptionProblem(ValueError):
    """A caption-level problem with its kind ("malformed_caption" or "empty_caption")."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _parse_seconds(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise _CaptionProblem("malformed_caption", f"{what} is not a number: {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise _CaptionProblem("malformed_caption", f"{what} is not a number: {value!r}") from None
    if math.isnan(seconds):
        return 0.0  # the HumanML3D loader reads nan tags as 0.0
    if math.isinf(seconds) or seconds < 0:
        raise _CaptionProblem("malformed_caption", f"{what} must be finite and >= 0, got {value!r}")
    return seconds


def _check_span(start: float, end: float) -> None:
    if end < start:
        raise _CaptionProblem("malformed_caption", f"end ({end}) is before start ({start})")


def _raise_or_record(kind: str, message: str, strict: bool,
                     problems: list[tuple[str, str]]) -> None:
    """A bad caption: raise it (strict) or append ``(kind, message)`` to ``problems``."""
    if strict:
        raise _CaptionProblem(kind, message) from None
    problems.append((kind, message))


def parse_humanml3d_caption_line(line: str) -> tuple[str, list[str], float, float]:
    """Parse one HumanML3D caption line ``caption#word/POS word/POS ...#start#end``.

    Returns (caption str, tokens list of "word/POS" str (empty if the field is empty), start
    seconds float, end seconds float). ``nan`` start/end read as 0.0 (the HumanML3D loader's rule).
    Raises ValueError on a wrong number of '#' fields, an empty caption, a non-numeric, negative
    or infinite start/end, or end < start.
    """
    fields = line.rstrip("\r\n").split("#")
    if len(fields) != 4:
        raise _CaptionProblem(
            "malformed_caption",
            f"expected 4 '#'-separated fields (caption#tokens#start#end), got {len(fields)}",
        )
    caption = fields[0].strip()
    if not caption:
        raise _CaptionProblem("empty_caption", "empty caption")
    tokens = fields[1].split()
    start = _parse_seconds(fields[2].strip(), "start")
    end = _parse_seconds(fields[3].strip(), "end")
    _check_span(start, end)
    return caption, tokens, start, end


def read_humanml3d_text_file(path: str | os.PathLike, motion_id: str | None = None,
                             strict: bool = True) -> tuple[list[Caption], list[tuple[str, str]]]:
    """Read ``texts/<id>.txt``; blank lines are ignored.

    Returns (captions, problems): captions a list of Caption (key "<id>_<index>"), problems a list
    of (kind, message) for skipped lines (always empty with strict=True, which raises ValueError
    "<path>:<line>: ..." on the first bad line instead). Raises FileNotFoundError if absent.
    """
    path = Path(path)
    motion_id = path.stem if motion_id is None else motion_id
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: caption file not found") from None
    except UnicodeDecodeError as exc:
        raise _CaptionProblem("malformed_caption", f"{path}: not UTF-8 text ({exc})") from None
    captions: list[Caption] = []
    problems: list[tuple[str, str]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            caption, tokens, start, end = parse_humanml3d_caption_line(line)
        except _CaptionProblem as exc:
            _raise_or_record(exc.kind, f"{path}:{line_number}: {exc} in line {line!r}", strict,
                             problems)
            continue
        index = len(captions)
        captions.append(Caption(caption, tuple(tokens), start, end, index,
                                f"{motion_id}_{index}", line_number))
    return captions, problems


def _parse_tmr_entry(motion_id: str, entry: Any, source: str, strict: bool
                     ) -> tuple[list[Caption], list[tuple[str, str]]]:
    """Validate one annotations.json entry; see read_tmr_annotations."""
    where = f"{source}: motion {motion_id!r}"
    if not isinstance(entry, Mapping) or not isinstance(entry.get("annotations"), list):
        raise _CaptionProblem("malformed_caption", f"{where}: entry has no 'annotations' list")
    captions: list[Caption] = []
    problems: list[tuple[str, str]] = []
    for position, annotation in enumerate(entry["annotations"]):
        seg_id = annotation.get("seg_id") if isinstance(annotation, Mapping) else None
        label = f"{where} annotation {position}" + (f" (seg_id {seg_id!r})" if seg_id else "")
        try:
            if not isinstance(annotation, Mapping) or not {"text", "start", "end"} <= annotation.keys():
                raise _CaptionProblem("malformed_caption", "needs keys 'text', 'start', 'end'")
            text = annotation["text"]
            if not isinstance(text, str):
                raise _CaptionProblem("malformed_caption", f"text is not a string: {text!r}")
            if not text.strip():
                raise _CaptionProblem("empty_caption", "empty caption")
            start = _parse_seconds(annotation["start"], "start")
            end = _parse_seconds(annotation["end"], "end")
            _check_span(start, end)
        except _CaptionProblem as exc:
            _raise_or_record(exc.kind, f"{label}: {exc}", strict, problems)
            continue
        index = len(captions)
        key = str(seg_id) if seg_id else f"{motion_id}_{index}"
        captions.append(Caption(text.strip(), (), start, end, index, key))
    return captions, problems


def _load_tmr_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            entries = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotations file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: expected a JSON object {{id: entry}}, got {type(entries).__name__}")
    return entries


def read_tmr_annotations(path: str | os.PathLike, strict: bool = True
                         ) -> tuple[dict[str, list[Caption]], dict[str, Any], list[tuple[str, str]]]:
    """Read and validate a whole TMR ``annotations.json``.

    Returns (captions, entries, problems): captions maps motion id -> list of Caption (tokens empty,
    key = seg_id), entries the raw json dict (for ``path``/``duration``), problems a list of
    (kind, message) for skipped annotations (empty with strict=True, which raises ValueError naming
    the file, motion id and annotation index on the first bad one).
    """
    path = Path(path)
    entries = _load_tmr_json(path)
    captions: dict[str, list[Caption]] = {}
    problems: list[tuple[str, str]] = []
    for motion_id, entry in entries.items():
        try:
            parsed, entry_problems = _parse_tmr_entry(motion_id, entry, str(path), strict)
        except _CaptionProblem as exc:
            if strict:
                raise
            problems.append((exc.kind, str(exc)))
            continue
        captions[motion_id] = parsed
        problems.extend(entry_problems)
    return captions, entries, problems


def seconds_to_frames(start: float, end: float, num_frames: int, fps: float) -> tuple[int, int]:
    """Frames [start_frame, end_frame) of a caption span, as the HumanML3D/TMR loaders cut them.

    (0.0, 0.0) is the whole motion; otherwise ``int(start * fps)``, ``int(end * fps)`` (truncation,
    like the reference loaders), both clamped to ``num_frames``.
    """
    if start == 0.0 and end == 0.0:
        return 0, num_frames
    return min(int(start * fps), num_frames), min(int(end * fps), num_frames)


def _read_npy_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy file from its header only (no data read)."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            return shape, dtype
        if version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            return shape, dtype
    array = np.load(path, mmap_mode="r")  # other header versions: numpy parses, data stays mapped
    return array.shape, array.dtype


#: Finite scans of motion files, per process: (path, size, mtime_ns, ctime_ns) -> (shape, dtype,
#: int64 indices of the frames holding NaN/inf). A rewritten file has a new key.
_SCAN_CACHE: dict[tuple[str, int, int, int], tuple[tuple[int, ...], np.dtype, np.ndarray]] = {}


def _scan_motion(path: str) -> tuple[tuple[int, ...], np.dtype, np.ndarray]:
    """Shape, dtype and the non-finite frames of a motion file, read whole once (module docstring:
    one sequential read is faster than a memory map here); cached by path, size and times."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    cached = _SCAN_CACHE.get(key)
    if cached is not None:
        return cached
    data = np.load(path)
    bad = np.zeros(0, dtype=np.int64)
    if data.ndim == 2 and data.dtype.kind == "f" and data.size:
        bad = np.flatnonzero(~np.isfinite(data).all(axis=1)).astype(np.int64)
    result = (tuple(data.shape), data.dtype, bad)
    _SCAN_CACHE[key] = result
    return result


def _read_split(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [motion_id for motion_id in ids if motion_id]


def _default_statistic(root: Path, name: str) -> Path:
    """``root/Mean.npy`` (``Std.npy``), else TMR's ``root/mean.pt`` (``std.pt``) when only that exists."""
    npy, pt = root / f"{name}.npy", root / f"{name.lower()}.pt"
    return pt if not npy.is_file() and pt.is_file() else npy


def _load_statistic(path: Path, name: str) -> np.ndarray:
    """A 1-D float statistic from a .npy file or a torch ``.pt`` tensor (TMR's mean.pt / std.pt)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {name} file not found (needed to normalise motions; "
                                f"pass normalize=False to read raw features)")
    try:
        if path.suffix == ".pt":
            array = np.asarray(torch.load(path, map_location="cpu", weights_only=True))
        else:
            array = np.load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"{path}: cannot read {name} ({exc})") from None
    if array.ndim != 1 or array.dtype.kind != "f":
        raise ValueError(f"{path}: {name} must be a 1-D float array, got shape {array.shape} "
                         f"dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: {name} contains NaN or inf")
    return array.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


class MotionTextDataset(Dataset):
    """Caption-motion pairs from a HumanML3D / KIT-ML (``texts``) or TMR (``annotations.json``) root.

    Args:
        root: dataset root (layouts in the module docstring).
        split: split name; ids are read from ``root/<split>.txt`` (texts layout) or
            ``root/splits/<split>.txt`` (tmr layout), or from ``split_file`` if given.
        dataset: "humanml3d" (263 dims, 20 fps, min 40 frames), "kit" (251 dims, 12.5 fps, min 24)
            or "auto": detected from the feature width of Mean.npy, else of the first motion file.
        strict: raise on the first bad input (True) or skip bad items and warn once (False).
        layout: "texts", "tmr" or "auto" (tmr when ``root/annotations.json`` exists).
        motion_dir: folder of the motion .npy files, relative to root or absolute
            (default "new_joint_vecs").
        motion_name: tmr layout only: motion file named after the "id" (default) or the entry's
            "path" (TMR's guoh3dfeats layout).
        texts_dir: folder of the caption files (texts layout), relative to root (default "texts").
        annotations: the annotations file (tmr layout), relative to root (default
            "annotations.json").
        split_file: explicit split file path, overriding the default location.
        mean_path, std_path: explicit Mean/Std files, .npy or a torch .pt tensor (default
            root/Mean.npy, root/Std.npy; else TMR's root/mean.pt, root/std.pt when only those exist).
        normalize: return (x - mean) / std (True) or raw features (False: Mean/Std become optional).
        min_frames: drop clips shorter than this (default from ``dataset``: 40 or 24; 0 keeps every
            non-empty clip).
        max_frames: drop clips this long or longer (default 200; None: no upper limit).
        filter_full_motion: also drop every caption of a motion whose full length fails the
            filter (the HumanML3D / T2M-GPT / MoMask loaders' item set).
        crop_frames: crop clips to at most this many frames (default 196; None = no crop).
        crop: "random", "start", "center" or "auto" ("random" for split "train", else "start").
        captions: "all" (one item per caption, the default), "first" (one item per motion: its
            first kept caption, TMR's evaluation) or "random" (one item per distinct clip, one of
            its captions drawn at each access, Guo et al.'s evaluation).
        seed: seed of the random-crop (and random-caption) generator.
        validate: read every motion at construction and skip (strict: reject) clips with NaN/inf
            (default True; the cost is in the module docstring). False: headers only.
        progress: tqdm bar while indexing; None = only for more than 2,000 ids.

    :func:`loader_convention` returns these options for the reference projects' conventions.

    Attributes:
        dataset_name ("humanml3d" | "kit": the feature representation), label (str: layout and
        features, e.g. "TMR layout (annotations.json): HumanML3D-skeleton features, 263-d at 20 fps"),
        layout ("texts" | "tmr"), fps (float), feature_dim (int), mean, std (float32 tensors [F],
        None if normalize=False and absent), records (list of MotionTextRecord, one per item; in
        "random" mode the clip's first caption), lengths (int64 ndarray [N] of item lengths after
        cropping), problem_counts (dict kind -> count of skipped inputs: per id for missing_motion /
        missing_text / missing_annotation / bad_motion / empty_motion / no_captions, per caption
        for malformed_caption / empty_caption / nonfinite_motion), problem_ids (dict kind -> the
        motion ids involved, in split order), filter_counts (dict "too_short" / "too_long" ->
        captions dropped by the length filter).

    Items (``dataset[i]``), a dict:
        motion: float32 tensor [T, F], normalised unless normalize=False; T = length
        length: int, T (<= crop_frames)
        caption: str; tokens: list of "word/POS" str (empty in the tmr layout)
        id: str motion id; key: str unique caption key ("<id>_<index>", or the TMR seg_id)
        caption_index: int, the caption's index in its motion's caption list
        start_frame, end_frame: int, the returned window in the motion file's frames
            (motion == file[start_frame:end_frame], normalised)
        clip_start_frame, clip_end_frame: int, the captioned clip before cropping
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        dataset: str = "auto",
        strict: bool = True,
        *,
        layout: str = "auto",
        motion_dir: str | os.PathLike = "new_joint_vecs",
        motion_name: str = "id",
        texts_dir: str | os.PathLike = "texts",
        annotations: str | os.PathLike = "annotations.json",
        split_file: str | os.PathLike | None = None,
        mean_path: str | os.PathLike | None = None,
        std_path: str | os.PathLike | None = None,
        normalize: bool = True,
        min_frames: int | None = None,
        max_frames: int | None = DEFAULT_MAX_FRAMES,
        filter_full_motion: bool = False,
        crop_frames: int | None = DEFAULT_CROP_FRAMES,
        crop: str = "auto",
        captions: str = "all",
        seed: int | None = None,
        validate: bool = True,
        progress: bool | None = None,
    ):
        # Long on purpose: every option is checked here, in one place, so that a bad argument or
        # a bad dataset-level file (split, Mean/Std) fails at construction, before any indexing.
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: dataset root not found")
        self.split = split
        self.strict = strict
        self.validate = validate
        self.normalize_features = normalize
        self.problem_counts: dict[str, int] = {}
        self.problem_ids: dict[str, list[str]] = {}
        self.filter_counts: dict[str, int] = {"too_short": 0, "too_long": 0}
        self._problem_examples: dict[str, str] = {}
        if captions not in CAPTION_MODES:
            raise ValueError(f"captions must be one of {', '.join(CAPTION_MODES)}, got {captions!r}")
        self.captions = captions

        annotations_path = self.root / annotations
        if layout == "auto":
            layout = "tmr" if annotations_path.is_file() else "texts"
        if layout not in ("texts", "tmr"):
            raise ValueError(f"layout must be 'texts', 'tmr' or 'auto', got {layout!r}")
        self.layout = layout
        if motion_name not in ("id", "path"):
            raise ValueError(f"motion_name must be 'id' or 'path', got {motion_name!r}")
        if motion_name == "path" and layout != "tmr":
            raise ValueError("motion_name='path' needs the tmr layout (annotations.json paths)")
        self.motion_name = motion_name
        self.motion_dir = self.root / motion_dir  # an absolute motion_dir replaces root
        self.texts_dir = self.root / texts_dir

        if split_file is None:
            split_file = (self.root / "splits" / f"{split}.txt") if layout == "tmr" \
                else (self.root / f"{split}.txt")
        self.split_file = Path(split_file)
        split_ids = _read_split(self.split_file)

        mean_file = Path(mean_path) if mean_path is not None else _default_statistic(self.root, "Mean")
        std_file = Path(std_path) if std_path is not None else _default_statistic(self.root, "Std")
        mean = std = None
        if normalize or (mean_file.is_file() and std_file.is_file()):
            mean = _load_statistic(mean_file, "Mean")
            std = _load_statistic(std_file, "Std")
            if std.shape != mean.shape:
                raise ValueError(f"{std_file}: Std has shape {std.shape}, Mean ({mean_file}) has "
                                 f"{mean.shape}")
            if np.any(std <= 0):
                raise ValueError(f"{std_file}: Std has {int(np.sum(std <= 0))} entries <= 0 "
                                 f"(division by zero when normalising)")

        self.annotations_path = annotations_path
        # Only the split's entries are validated (in _build_index): a bad entry of another split
        # neither fails nor is counted here.
        tmr_entries: dict[str, Any] = _load_tmr_json(annotations_path) if layout == "tmr" else {}

        spec = self._resolve_spec(dataset, mean, mean_file, split_ids, tmr_entries)
        self.spec = spec
        self.dataset_name = spec.name
        self.fps = spec.fps
        self.feature_dim = spec.feature_dim
        self.label = self._label()
        if mean is not None and mean.shape != (spec.feature_dim,):
            raise ValueError(f"{mean_file}: Mean has shape {mean.shape}, expected "
                             f"({spec.feature_dim},) for {spec.name}")
        self._mean_np = mean
        self._std_np = std
        self.mean = None if mean is None else torch.from_numpy(mean)
        self.std = None if std is None else torch.from_numpy(std)

        self.min_frames = spec.min_frames if min_frames is None else int(min_frames)
        if self.min_frames < 0:
            raise ValueError(f"min_frames must be >= 0, got {min_frames}")
        self.max_frames = max_frames
        self.crop_frames = crop_frames
        if crop == "auto":
            crop = "random" if split == "train" else "start"
        if crop not in ("random", "start", "center"):
            raise ValueError(f"crop must be 'random', 'start', 'center' or 'auto', got {crop!r}")
        self.crop = crop
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._rng_worker_seed: int | None = None

        self.records: list[MotionTextRecord] = []
        show = len(split_ids) > _PROGRESS_THRESHOLD if progress is None else progress
        self._build_index(split_ids, tmr_entries, filter_full_motion, show)
        self._choices = self._group_items()
        self.lengths = np.array([self._cropped_length(r.num_frames) for r in self.records],
                                dtype=np.int64)
        self.motion_ids = sorted({r.motion_id for r in self.records})
        if self.problem_counts:
            self._warn_summary()

    # -- construction helpers ------------------------------------------------------------------

    def _label(self) -> str:
        """What the root holds: its layout and its features (module docstring)."""
        features = {263: "HumanML3D-skeleton features", 251: "KIT-ML features"}.get(
            self.feature_dim, f"{self.dataset_name} features")
        where = ("TMR layout (annotations.json)" if self.layout == "tmr"
                 else "HumanML3D-style layout (new_joint_vecs/, texts/)")
        return f"{where}: {features}, {self.feature_dim}-d at {self.fps:g} fps"

    def _problem(self, kind: str, message: str, motion_id: str | None = None) -> None:
        """Raise (strict) or count one skipped input (non-strict), remembering its motion id."""
        if self.strict:
            if kind in _BAD_MOTION_KINDS:
                message += " (strict=True; strict=False skips bad motions with one warning)"
            raise (FileNotFoundError if kind in _MISSING_FILE_KINDS else ValueError)(message)
        self.problem_counts[kind] = self.problem_counts.get(kind, 0) + 1
        self._problem_examples.setdefault(kind, message)
        if motion_id is not None:
            ids = self.problem_ids.setdefault(kind, [])
            if not ids or ids[-1] != motion_id:
                ids.append(motion_id)

    def _warn_summary(self) -> None:
        # Issued from this line (stacklevel=1), so that Python's default filter shows an identical
        # summary once per process: a command that builds the same split twice warns once.
        parts = []
        for kind, count in sorted(self.problem_counts.items()):
            ids = self.problem_ids.get(kind, [])
            named = ", ".join(ids[:_NAMED_MOTIONS])
            if len(ids) > _NAMED_MOTIONS:
                named += f", ... +{len(ids) - _NAMED_MOTIONS} more"
            motions = f"{len(ids)} motion{'s' if len(ids) != 1 else ''}: {named}; " if ids else ""
            parts.append(f"{kind}: {count} ({motions}e.g. {self._problem_examples[kind]})")
        warnings.warn(
            f"MotionTextDataset({self.root}, split={self.split!r}) skipped bad inputs "
            f"[strict=False; {len(self.records)} items kept]: " + "; ".join(parts),
            DatasetProblemWarning, stacklevel=1)

    def _resolve_spec(self, dataset: str, mean: np.ndarray | None, mean_file: Path,
                      split_ids: Sequence[str], tmr_entries: Mapping[str, Any]) -> DatasetSpec:
        if dataset != "auto":
            try:
                return get_skeleton(dataset.lower())
            except ValueError:
                raise ValueError(f"unknown dataset {dataset!r}: expected 'humanml3d', 'kit' or "
                                 f"'auto'") from None
        width, source = None, None
        if mean is not None:
            width, source = mean.shape[0], str(mean_file)
        else:  # raw features without Mean.npy: the first readable motion header decides
            for motion_id in split_ids:
                path = self._motion_path(motion_id, tmr_entries.get(motion_id))
                if path is None or not os.path.isfile(path):
                    continue
                try:
                    shape, _ = _read_npy_header(path)
                except Exception:  # noqa: BLE001 - reported later when indexing
                    continue
                if len(shape) == 2:
                    width, source = shape[1], path
                    break
        if width is None:
            raise ValueError(f"{self.root}: cannot detect the dataset (no Mean.npy and no readable "
                             f"motion); pass dataset='humanml3d' or 'kit'")
        for spec in DATASET_SPECS.values():
            if spec.feature_dim == width:
                return spec
        raise ValueError(f"{source}: feature width {width} is neither HumanML3D (263) nor KIT-ML "
                         f"(251); pass dataset= explicitly if this is intended")

    def _motion_path(self, motion_id: str, entry: Any) -> str | None:
        if self.motion_name == "path":
            if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
                return None
            return str(self.motion_dir / f"{entry['path']}.npy")
        return str(self.motion_dir / f"{motion_id}.npy")

    def _motion_frames(self, path: str, motion_id: str) -> tuple[int, np.ndarray] | None:
        """(frame count, int64 indices of its NaN/inf frames: empty unless ``validate``), or None
        after recording the problem. ``validate`` reads the file whole, once; else the header."""
        if not os.path.isfile(path):
            self._problem("missing_motion", f"{path}: motion file not found", motion_id)
            return None
        bad = np.zeros(0, dtype=np.int64)
        try:
            if self.validate:
                shape, dtype, bad = _scan_motion(path)
            else:
                shape, dtype = _read_npy_header(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad motion
            self._problem("bad_motion", f"{path}: not a readable .npy file ({exc})", motion_id)
            return None
        if len(shape) != 2 or shape[1] != self.feature_dim:
            self._problem("bad_motion", f"{path}: motion has shape {shape}, expected "
                                        f"(T, {self.feature_dim}) for {self.dataset_name}", motion_id)
            return None
        if dtype.kind != "f":
            self._problem("bad_motion", f"{path}: motion dtype {dtype} is not floating point",
                          motion_id)
            return None
        if shape[0] == 0:
            self._problem("empty_motion", f"{path}: motion has 0 frames", motion_id)
            return None
        return int(shape[0]), bad

    def _checked_captions(self, parse: Callable[..., tuple[list[Caption], list[tuple[str, str]]]],
                          motion_id: str, *args: Any) -> list[Caption] | None:
        """The captions ``parse(*args, strict)`` returns, each of its problems recorded; None
        when the motion is skipped: the whole entry or file is bad, or every caption in it is
        (already counted per caption)."""
        try:
            captions, problems = parse(*args, self.strict)
        except _CaptionProblem as exc:
            self._problem(exc.kind, str(exc), motion_id)
            return None
        for kind, message in problems:
            self._problem(kind, message, motion_id)
        if problems and not captions:
            return None
        return captions

    def _length_ok(self, num_frames: int) -> bool:
        if num_frames < max(self.min_frames, 1):
            return False
        return self.max_frames is None or num_frames < self.max_frames

    def _count_filtered(self, num_frames: int, captions: int = 1) -> None:
        self.filter_counts["too_short" if num_frames < max(self.min_frames, 1) else "too_long"] \
            += captions

    def _motion_captions(self, motion_id: str, tmr_entries: Mapping[str, Any]
                         ) -> tuple[str, int, np.ndarray, list[Caption]] | None:
        """(motion path, frame count, non-finite frames, captions) of one split id, or None after
        recording why it is skipped."""
        annotations_name = self.annotations_path
        if self.layout == "tmr":
            if motion_id not in tmr_entries:
                self._problem("missing_annotation", f"{self.split_file}: id {motion_id!r} has no "
                                                    f"entry in {annotations_name}", motion_id)
                return None
            captions = self._checked_captions(_parse_tmr_entry, motion_id, motion_id,
                                              tmr_entries[motion_id], str(annotations_name))
            if captions is None:
                return None
            path = self._motion_path(motion_id, tmr_entries[motion_id])
            if path is None:
                self._problem("malformed_caption", f"{annotations_name}: motion {motion_id!r} "
                                                   f"has no 'path' (motion_name='path')", motion_id)
                return None
            frames = self._motion_frames(path, motion_id)
            if frames is None:
                return None
            empty_message = f"{annotations_name}: motion {motion_id!r} has no annotations"
        else:
            path = self._motion_path(motion_id, None)
            frames = self._motion_frames(path, motion_id)
            if frames is None:
                return None
            text_path = self.texts_dir / f"{motion_id}.txt"
            if not text_path.is_file():
                self._problem("missing_text", f"{text_path}: caption file not found "
                                              f"(split id {motion_id!r} in {self.split_file})", motion_id)
                return None
            captions = self._checked_captions(read_humanml3d_text_file, motion_id, text_path, motion_id)
            if captions is None:
                return None
            empty_message = f"{text_path}: caption file has no captions"
        if not captions:
            self._problem("no_captions", empty_message, motion_id)
            return None
        return path, frames[0], frames[1], captions

    def _build_index(self, split_ids: Sequence[str], tmr_entries: Mapping[str, Any], filter_full_motion: bool, show: bool) -> None:
        ids: Iterable[str] = split_ids
        if show:
            from tqdm.auto import tqdm
            ids = tqdm(split_ids, desc=f"indexing {self.dataset_name} {self.split}", unit="id")
        for motion_id in ids:
            found = self._motion_captions(motion_id, tmr_entries)
            if found is None:
                continue
            path, num_frames, bad_frames, captions = found
            if filter_full_motion and not self._length_ok(num_frames):
                self._count_filtered(num_frames, len(captions))
                continue
            for caption in captions:
                start, end = seconds_to_frames(caption.start, caption.end, num_frames, self.fps)
                if not self._length_ok(end - start):
                    self._count_filtered(end - start)
                    continue
                inside = bad_frames[(bad_frames >= start) & (bad_frames < end)]
                if inside.size:
                    self._problem("nonfinite_motion",
                                  f"{path}: NaN/inf in frame {int(inside[0])} ({inside.size} bad "
                                  f"frames in clip [{start}, {end}))", motion_id)
                    continue
                self.records.append(MotionTextRecord(motion_id, path, caption, start, end))

    def _group_items(self) -> list[list[MotionTextRecord]] | None:
        """Apply ``captions``: "first" keeps each motion's first record; "random" keeps one record
        per distinct clip and returns every clip's records (drawn from per access); "all": None."""
        if self.captions == "all":
            return None
        if self.captions == "first":
            seen: set[str] = set()
            firsts = []
            for record in self.records:
                if record.motion_id not in seen:
                    seen.add(record.motion_id)
                    firsts.append(record)
            self.records = firsts
            return None
        clip_of, first = distinct_clips(self.records)
        choices: list[list[MotionTextRecord]] = [[] for _ in first]
        for record, clip in zip(self.records, clip_of):
            choices[clip].append(record)
        self.records = [self.records[i] for i in first]
        return choices

    def with_options(self, *, crop: str | None = None, crop_frames: int | None | str = "keep",
                     seed: int | None | str = "keep") -> "MotionTextDataset":
        """A view of the same items with other item-level options (nothing is re-read, no second
        warning): ``crop`` ("random", "start", "center"), ``crop_frames`` (None = no crop),
        ``seed`` of a fresh generator. Arguments left out keep this dataset's values."""
        import copy

        view = copy.copy(self)
        if crop is not None:
            if crop not in ("random", "start", "center"):
                raise ValueError(f"crop must be 'random', 'start' or 'center', got {crop!r}")
            view.crop = crop
        if crop_frames != "keep":
            view.crop_frames = crop_frames
        if seed != "keep":
            view.seed = seed
        view._rng = np.random.default_rng(view.seed)
        view._rng_worker_seed = None
        view.lengths = np.array([view._cropped_length(r.num_frames) for r in view.records],
                                dtype=np.int64)
        return view

    # -- items ---------------------------------------------------------------------------------

    def _cropped_length(self, num_frames: int) -> int:
        return num_frames if self.crop_frames is None else min(num_frames, self.crop_frames)

    def _generator(self) -> np.random.Generator:
        """The crop generator; inside a DataLoader worker, one derived from the worker's seed."""
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self._rng
        if self._rng_worker_seed != info.seed:
            # info.seed = the loader's per-epoch base seed + worker id: distinct per worker and
            # epoch, reproducible when the DataLoader's generator is seeded.
            entropy = [info.seed] if self.seed is None else [self.seed, info.seed]
            self._rng = np.random.default_rng(entropy)
            self._rng_worker_seed = info.seed
        return self._rng

    def _crop_offset(self, num_frames: int) -> int:
        excess = num_frames - self._cropped_length(num_frames)
        if excess <= 0:
            return 0
        if self.crop == "random":
            return int(self._generator().integers(0, excess + 1))
        if self.crop == "center":
            return excess // 2
        return 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        if self._choices is not None and len(self._choices[index]) > 1:   # captions="random"
            options = self._choices[index]
            record = options[int(self._generator().integers(0, len(options)))]
        data = np.load(record.motion_path, mmap_mode="r")
        if data.ndim != 2 or data.shape[1] != self.feature_dim or data.shape[0] < record.end_frame:
            raise ValueError(f"{record.motion_path}: motion has shape {data.shape}, expected at "
                             f"least ({record.end_frame}, {self.feature_dim}) (changed since "
                             f"indexing?)")
        clip = data[record.start_frame:record.end_frame]
        # Check the whole captioned clip, not just the crop, so the outcome never depends on the draw.
        finite = np.isfinite(clip).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(f"{record.motion_path}: NaN/inf in frame {record.start_frame + int(bad[0])}"
                             f" ({bad.size} bad frames in clip [{record.start_frame}, "
                             f"{record.end_frame})); validate=True, the default, finds it at "
                             f"construction")
        offset = self._crop_offset(record.num_frames)
        length = self._cropped_length(record.num_frames)
        window = np.array(clip[offset:offset + length], dtype=np.float32)  # copy out of the mmap
        if self.normalize_features:
            window = (window - self._mean_np) / self._std_np
        caption = record.caption
        return {
            "motion": torch.from_numpy(window),
            "length": length,
            "caption": caption.text,
            "tokens": list(caption.tokens),
            "id": record.motion_id,
            "key": caption.key,
            "caption_index": caption.index,
            "start_frame": record.start_frame + offset,
            "end_frame": record.start_frame + offset + length,
            "clip_start_frame": record.start_frame,
            "clip_end_frame": record.end_frame,
        }

    # -- (de)normalisation ---------------------------------------------------------------------

    def _stats_like(self, x: torch.Tensor | np.ndarray):
        if self._mean_np is None:
            raise ValueError(f"{self.root}: no Mean/Std loaded (normalize=False and files absent)")
        if x.shape[-1] != self.feature_dim:
            raise ValueError(f"last dimension must be {self.feature_dim}, got shape {tuple(x.shape)}")
        if isinstance(x, torch.Tensor):
            return self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        return self._mean_np.astype(x.dtype, copy=False), self._std_np.astype(x.dtype, copy=False)

    def denormalize(self, motion: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Raw features from dataset features: ``motion * std + mean``.

        motion: float tensor or ndarray [..., F]; returns the same type, shape and dtype. Identity
        when the dataset was built with normalize=False (its items are raw already).
        """
        if not self.normalize_features:
            return motion
        mean, std = self._stats_like(motion)
        return motion * std + mean

    def normalize(self, motion: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Dataset features from raw ones: ``(motion - mean) / std``; [..., F] in, same out.
        Identity when the dataset was built with normalize=False."""
        if not self.normalize_features:
            return motion
        mean, std = self._stats_like(motion)
        return (motion - mean) / std

    def __repr__(self) -> str:
        return (f"MotionTextDataset(root={str(self.root)!r}, split={self.split!r}, "
                f"dataset={self.dataset_name!r}, layout={self.layout!r}, items={len(self)}, "
                f"motions={len(self.motion_ids)})")


# ---------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------

_INT_KEYS = ("caption_index", "start_frame", "end_frame", "clip_start_frame", "clip_end_frame")


def distinct_clips(records: Sequence[MotionTextRecord]) -> tuple[np.ndarray, list[int]]:
    """The distinct clips (motion, start frame, end frame) of ``records``, in order of first
    appearance: ``clip_of`` int64 [N] (the clip of each record) and ``first`` [C] (the index of
    each clip's first record). The captions of one clip share its motion window."""
    index: dict[tuple, int] = {}
    clip_of, first = [], []
    for i, r in enumerate(records):
        key = (r.motion_id, r.start_frame, r.end_frame)
        if key not in index:
            index[key] = len(first)
            first.append(i)
        clip_of.append(index[key])
    return np.asarray(clip_of, dtype=np.int64), first


def collate_motion_text(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad a list of dataset items into a batch.

    Returns a dict:
        motion: float tensor [B, Tmax, F] (the items' dtype, float32 from MotionTextDataset),
            zero beyond each length; Tmax = max length in the batch
        lengths: int64 tensor [B]
        mask: bool tensor [B, Tmax], True on real frames (t < lengths[b])
        caption_index, start_frame, end_frame, clip_start_frame, clip_end_frame: int64 tensors [B]
            (when present in the items)
        every other key (caption, tokens, id, key, ...): a list of the items' values
    Raises ValueError on an empty batch, mixed feature widths, or a length that disagrees with
    its motion.
    """
    if len(batch) == 0:
        raise ValueError("collate_motion_text: empty batch")
    motions = [torch.as_tensor(item["motion"]) for item in batch]
    widths = {m.shape[-1] if m.ndim == 2 else None for m in motions}
    if len(widths) != 1 or None in widths:
        raise ValueError(f"collate_motion_text: motions must be [T, F] with one F, got shapes "
                         f"{[tuple(m.shape) for m in motions]}")
    lengths = torch.tensor([int(item.get("length", m.shape[0])) for item, m in zip(batch, motions)],
                           dtype=torch.int64)
    for b, motion in enumerate(motions):
        if motion.shape[0] != lengths[b]:
            raise ValueError(f"collate_motion_text: item {b} has length {int(lengths[b])} but "
                             f"motion shape {tuple(motion.shape)}")
    max_length = int(lengths.max())
    padded = motions[0].new_zeros((len(batch), max_length, motions[0].shape[1]))
    for b, motion in enumerate(motions):
        padded[b, : motion.shape[0]] = motion
    mask = torch.arange(max_length)[None, :] < lengths[:, None]
    out: dict[str, Any] = {"motion": padded, "lengths": lengths, "mask": mask}
    for key in batch[0]:
        if key in ("motion", "length"):
            continue
        values = [item[key] for item in batch]
        if key in _INT_KEYS:
            out[key] = torch.tensor(values, dtype=torch.int64)
        else:
            out[key] = values
    return out
