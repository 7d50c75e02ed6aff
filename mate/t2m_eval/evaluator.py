"""The loaded standard evaluator: its three networks, its own normalisation and its word vectors.

:func:`load_evaluator` finds the released files under the dataset's checkpoint folder
(``checkpoints/t2m`` for HumanML3D, ``checkpoints/kit`` for KIT-ML)::

    <evaluator_dir>/text_mot_match/model/finest.tar     the networks (strict load)
    <evaluator_dir>/<any>/meta/mean.npy, std.npy        the evaluator's normalisation
                                                        (Comp_v6_KLD005 or Comp_v6_KLD01 in the
                                                        released archives; or pass meta_dir)
    <glove_dir>/our_vab_data.npy, _words.pkl, _idx.pkl  the word vectors

The evaluator was trained on motions normalised with *its* mean and std. A generator's output (or
a dataset read with other statistics) must be brought back to raw features and renormalised with
the evaluator's before embedding; :meth:`Evaluator.normalise` takes raw features. Feeding motions
in another normalisation is a known source of wrong numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .networks import EVALUATOR_SIZES, UNIT_LENGTH, MotionEncoderBiGRUCo, MovementConvEncoder, TextEncoderBiGRUCo
from .words import WordVectorizer

__all__ = ["DatasetConvention", "CONVENTIONS", "Evaluator", "load_evaluator", "find_meta_dir"]


@dataclass(frozen=True)
class DatasetConvention:
    """The evaluation conventions of one dataset in the reference code."""

    name: str
    feature_dim: int        # 263 (HumanML3D) / 251 (KIT-ML)
    min_frames: int         # motions (and annotated sub-motions) shorter than this are left out
    max_frames: int = 200   # ... and those this long or longer
    max_motion_length: int = 196   # padding length of a motion batch
    annotation_fps: float = 20.0   # the reference loader cuts annotated spans at 20 fps for both datasets


CONVENTIONS = {"humanml3d": DatasetConvention("humanml3d", 263, 40),
               "kit": DatasetConvention("kit", 251, 24)}
_ALIASES = {"t2m": "humanml3d", "humanml": "humanml3d", "kit-ml": "kit", "kitml": "kit"}

#: Where the released archives keep the evaluator's normalisation, relative to the evaluator folder.
META_CANDIDATES = ("Comp_v6_KLD005/meta", "Comp_v6_KLD01/meta", "text_mot_match/meta", "meta")


def _convention(dataset: str) -> DatasetConvention:
    key = _ALIASES.get(dataset.lower(), dataset.lower())
    if key not in CONVENTIONS:
        raise ValueError(f"dataset {dataset!r}: choose humanml3d or kit")
    return CONVENTIONS[key]


def find_meta_dir(evaluator_dir: Path) -> Path:
    """The folder holding the evaluator's ``mean.npy`` / ``std.npy`` (:data:`META_CANDIDATES`)."""
    for rel in META_CANDIDATES:
        if (evaluator_dir / rel / "mean.npy").is_file() and (evaluator_dir / rel / "std.npy").is_file():
            return evaluator_dir / rel
    raise FileNotFoundError(f"the evaluator's meta/mean.npy and meta/std.npy were not found under {evaluator_dir} "
                            f"(looked in {', '.join(META_CANDIDATES)}); pass meta_dir=")


def _statistic(path: Path, dim: int) -> np.ndarray:
    array = np.load(path).astype(np.float32)
    if array.shape != (dim,) or not np.isfinite(array).all():
        raise ValueError(f"{path}: expected {dim} finite values, got shape {array.shape}")
    if path.name.startswith("std") and (array <= 0).any():
        raise ValueError(f"{path}: a standard deviation is <= 0")
    return array


class Evaluator:
    """The standard evaluator on one device, in eval mode. Embeddings are float32 [B, 512].

    Attributes: ``convention`` (:class:`DatasetConvention`), ``mean`` / ``std`` float32 [F] (the
    evaluator's normalisation), ``words`` (:class:`WordVectorizer`), ``device``."""

    def __init__(self, movement_encoder: MovementConvEncoder, text_encoder: TextEncoderBiGRUCo,
                 motion_encoder: MotionEncoderBiGRUCo, mean: np.ndarray, std: np.ndarray, words: WordVectorizer,
                 convention: DatasetConvention, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.movement_encoder = movement_encoder.to(self.device).eval()
        self.text_encoder = text_encoder.to(self.device).eval()
        self.motion_encoder = motion_encoder.to(self.device).eval()
        self.mean, self.std, self.words, self.convention = mean, std, words, convention

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Raw features [..., F] -> the evaluator's normalisation (float32)."""
        if raw.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"motions have {raw.shape[-1]} features; the {self.convention.name} evaluator reads "
                             f"{self.mean.shape[0]}")
        return ((raw - self.mean) / self.std).astype(np.float32)

    @torch.no_grad()
    def motion_embeddings(self, motions, lengths) -> torch.Tensor:
        """motions [B, T, F] float (evaluator-normalised, zero after each length), lengths [B] int
        (frames, multiples of 4) -> [B, 512] float32 (CPU)."""
        motions = torch.as_tensor(np.asarray(motions), dtype=torch.float32, device=self.device)
        lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
        if motions.ndim != 3 or lengths.shape != (motions.shape[0],):
            raise ValueError(f"motions [B, T, F] and lengths [B] expected, got {tuple(motions.shape)} and "
                             f"{tuple(lengths.shape)}")
        movements = self.movement_encoder(motions[..., :-4])          # the 4 foot contacts are not read
        return self.motion_encoder(movements, lengths // UNIT_LENGTH).float().cpu()

    @torch.no_grad()
    def text_embeddings(self, word_embs, pos_onehot, sent_lens) -> torch.Tensor:
        """word_embs [B, 22, 300], pos_onehot [B, 22, 15] float, sent_lens [B] int -> [B, 512] float32 (CPU)."""
        word_embs = torch.as_tensor(np.asarray(word_embs), dtype=torch.float32, device=self.device)
        pos_onehot = torch.as_tensor(np.asarray(pos_onehot), dtype=torch.float32, device=self.device)
        lengths = torch.as_tensor(np.asarray(sent_lens), dtype=torch.long)
        return self.text_encoder(word_embs, pos_onehot, lengths).float().cpu()


def load_evaluator(evaluator_dir: str | Path, glove_dir: str | Path, dataset: str = "humanml3d",
                   device: str | torch.device = "cpu", meta_dir: str | Path | None = None) -> Evaluator:
    """The released evaluator of ``dataset`` (``humanml3d``/``t2m`` or ``kit``).

    evaluator_dir: the dataset's checkpoint folder (``checkpoints/t2m`` or ``checkpoints/kit``),
    holding ``text_mot_match/model/finest.tar``; glove_dir: the folder of ``our_vab_*``; meta_dir:
    the evaluator's normalisation (default: found by :func:`find_meta_dir`). Every missing file is
    a FileNotFoundError naming it; a checkpoint of another layout or dataset fails the strict load
    with the keys that differ."""
    convention = _convention(dataset)
    evaluator_dir = Path(evaluator_dir)
    if not evaluator_dir.is_dir():
        raise FileNotFoundError(f"evaluator folder {evaluator_dir} does not exist (the dataset's checkpoint folder, "
                                f"e.g. checkpoints/t2m, holding text_mot_match/model/finest.tar)")
    checkpoint_path = evaluator_dir / "text_mot_match" / "model" / "finest.tar"
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"{checkpoint_path} not found (the released evaluator weights)")
    meta = Path(meta_dir) if meta_dir is not None else find_meta_dir(evaluator_dir)
    for name in ("mean.npy", "std.npy"):
        if not (meta / name).is_file():
            raise FileNotFoundError(f"{meta / name} not found (the evaluator's normalisation)")
    mean, std = _statistic(meta / "mean.npy", convention.feature_dim), _statistic(meta / "std.npy", convention.feature_dim)
    words = WordVectorizer(glove_dir)
    s = EVALUATOR_SIZES
    networks = {"movement_encoder": MovementConvEncoder(convention.feature_dim - 4, s["movement_hidden"], s["movement_latent"]),
                "text_encoder": TextEncoderBiGRUCo(s["word"], s["pos"], s["text_hidden"], s["embedding"]),
                "motion_encoder": MotionEncoderBiGRUCo(s["movement_latent"], s["motion_hidden"], s["embedding"])}
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    for key, network in networks.items():
        if key not in checkpoint:
            raise ValueError(f"{checkpoint_path}: no {key!r} (keys: {sorted(checkpoint)}); not a text_mot_match checkpoint")
        try:
            network.load_state_dict(checkpoint[key], strict=True)
        except RuntimeError as err:
            raise ValueError(f"{checkpoint_path}: {key} does not match the {convention.name} evaluator "
                             f"({convention.feature_dim}-d motions): {err}") from None
    if words.dim != s["word"]:
        raise ValueError(f"{glove_dir}: word vectors are {words.dim}-d; the evaluator reads {s['word']}-d")
    return Evaluator(networks["movement_encoder"], networks["text_encoder"], networks["motion_encoder"],
                     mean, std, words, convention, device)
