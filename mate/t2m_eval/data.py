"""The evaluation set as the standard evaluator's reference loader builds and samples it.

:class:`EvalSet` reads a HumanML3D-layout folder (``new_joint_vecs/<id>.npy`` raw features,
``texts/<id>.txt`` captions with their POS-tagged tokens, ``<split>.txt``) with the reference
conventions:

* a motion is an item when its full length lies in [min_frames, 200) (40 for HumanML3D, 24 for
  KIT-ML) and it has at least one whole-motion caption; a caption annotating a span
  (``#start#end``) makes its own item when the span, cut at 20 frames per second as the reference
  loader cuts it for both datasets, lies in that range too;
* a motion that is empty or holds NaN/inf is skipped, with one warning naming the skipped motions
  and their count (HumanML3D's test split holds two NaN motions, ``007975`` and ``M007975``);
* every pass (:meth:`EvalSet.draw_pass`) draws, per item, one random caption, a length rounded
  down to the unit of 4 frames (one time in three one unit shorter), a random window of that
  length, normalises it with the evaluator's statistics and pads it with zeros to 196 frames; then
  shuffles the items into batches of 32, drops the last incomplete batch, and sorts each batch by
  caption length (longest first), as the reference collate function does.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mate.data.dataset import read_humanml3d_text_file

from .evaluator import DatasetConvention
from .networks import UNIT_LENGTH
from .words import WordVectorizer, caption_inputs

__all__ = ["BadMotionWarning", "EvalItem", "EvalBatch", "EvalSet", "round_length"]


class BadMotionWarning(UserWarning):
    """Motions of an evaluation split skipped because they are empty or not finite."""


@dataclass
class EvalItem:
    name: str                                  # motion id, or "<id>#<start>-<end>" for an annotated span
    motion: np.ndarray                         # raw features float32 [T, F]
    captions: list[tuple[str, tuple[str, ...]]]   # (text, "word/POS" tokens)


@dataclass
class EvalBatch:
    """One batch of a pass, sorted by caption length (longest first)."""

    names: list[str]
    captions: list[str]
    tokens: list[tuple[str, ...]]
    word_embs: np.ndarray      # float32 [B, 22, 300]
    pos_onehot: np.ndarray     # float32 [B, 22, 15]
    sent_lens: np.ndarray      # int64 [B]
    motions: np.ndarray        # float32 [B, 196, F], evaluator-normalised, zero after each length
    lengths: np.ndarray        # int64 [B], multiples of 4


def round_length(num_frames: int, rng: np.random.Generator, unit: int = UNIT_LENGTH) -> int:
    """The reference rule: ``(n // unit) * unit`` two times in three, ``(n // unit - 1) * unit`` one
    time in three (a coin over single, single, double)."""
    if rng.choice(["single", "single", "double"]) == "double":
        return (num_frames // unit - 1) * unit
    return (num_frames // unit) * unit


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class EvalSet:
    """The items of one split (module docstring). ``EvalSet(data_root, convention, split="test")``."""

    def __init__(self, data_root: str | Path, convention: DatasetConvention, split: str = "test",
                 motion_dir: str = "new_joint_vecs", text_dir: str = "texts"):
        root = Path(data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder {root} does not exist")
        self.convention = convention
        self.items: list[EvalItem] = []
        self.skipped: dict[str, str] = {}
        lo, hi = convention.min_frames, convention.max_frames
        for motion_id in _read_ids(root / f"{split}.txt"):
            path = root / motion_dir / f"{motion_id}.npy"
            if not path.is_file():
                self.skipped[motion_id] = "missing motion file"
                continue
            motion = np.load(path)
            if motion.ndim != 2 or motion.shape[0] == 0:
                self.skipped[motion_id] = f"empty or malformed (shape {motion.shape})"
                continue
            if motion.shape[1] != convention.feature_dim:
                raise ValueError(f"{path}: {motion.shape[1]} features; the {convention.name} evaluator reads "
                                 f"{convention.feature_dim}")
            if not np.isfinite(motion).all():
                self.skipped[motion_id] = "NaN or inf"
                continue
            text_path = root / text_dir / f"{motion_id}.txt"
            if not text_path.is_file():
                self.skipped[motion_id] = "missing caption file"
                continue
            captions, _ = read_humanml3d_text_file(text_path, motion_id, strict=False)
            self._add(motion_id, motion.astype(np.float32), captions, lo, hi)
        if self.skipped:
            listed = ", ".join(f"{k} ({v})" for k, v in sorted(self.skipped.items()))
            warnings.warn(f"{split} split of {root}: skipped {len(self.skipped)} motion(s): {listed}",
                          BadMotionWarning, stacklevel=2)
        if not self.items:
            raise ValueError(f"{split} split of {root} has no motion the evaluator can read "
                             f"({convention.name}: {lo} <= frames < {hi}, with captions)")

    def _add(self, motion_id: str, motion: np.ndarray, captions, lo: int, hi: int) -> None:
        whole = []
        for c in captions:
            if not c.tokens:
                continue                       # the evaluator reads tokens only
            if c.start == 0.0 and c.end == 0.0:
                whole.append((c.text, c.tokens))
                continue
            fps = self.convention.annotation_fps
            span = motion[int(c.start * fps):int(c.end * fps)]
            if lo <= len(span) < hi:
                self.items.append(EvalItem(f"{motion_id}#{c.start:g}-{c.end:g}", span, [(c.text, c.tokens)]))
        if whole and lo <= len(motion) < hi:
            self.items.append(EvalItem(motion_id, motion, whole))

    def __len__(self) -> int:
        return len(self.items)

    def num_batches(self, batch_size: int = 32) -> int:
        return len(self.items) // batch_size

    def draw_pass(self, normalise, words: WordVectorizer, rng: np.random.Generator,
                  batch_size: int = 32) -> Iterator[EvalBatch]:
        """One pass over the split (module docstring); ``normalise`` maps raw features [T, F] to
        the evaluator's normalisation (:meth:`mate.t2m_eval.Evaluator.normalise`)."""
        if len(self.items) < batch_size:
            raise ValueError(f"{len(self.items)} items: fewer than one batch of {batch_size} (drop_last)")
        pad = self.convention.max_motion_length
        order = rng.permutation(len(self.items))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            rows = []
            for i in order[start:start + batch_size]:
                item = self.items[i]
                text, tokens = item.captions[rng.integers(len(item.captions))]
                word_embs, pos, sent_len = caption_inputs(tokens, words)
                length = min(round_length(len(item.motion), rng), pad)
                offset = int(rng.integers(0, len(item.motion) - length + 1))
                motion = np.zeros((pad, item.motion.shape[1]), dtype=np.float32)
                motion[:length] = normalise(item.motion[offset:offset + length])
                rows.append((item.name, text, tokens, word_embs, pos, sent_len, motion, length))
            rows.sort(key=lambda r: r[5], reverse=True)   # stable: ties keep the shuffled order
            yield _batch(rows)


def _batch(rows: Sequence[tuple]) -> EvalBatch:
    names, texts, tokens, word_embs, pos, sent_lens, motions, lengths = zip(*rows)
    return EvalBatch(list(names), list(texts), list(tokens), np.stack(word_embs), np.stack(pos),
                     np.asarray(sent_lens, dtype=np.int64), np.stack(motions), np.asarray(lengths, dtype=np.int64))
