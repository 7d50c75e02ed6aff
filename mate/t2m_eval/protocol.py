"""The standard text-to-motion evaluation: replications, metrics, and their intervals.

Each replication is one pass over the split (:meth:`mate.t2m_eval.data.EvalSet.draw_pass`: one
random caption per motion, random crops of rounded lengths, batches of 32):

* ``evaluate_real`` (the "Real motions" row of every T2M table): the pass's real motions scored
  against their captions (R-precision, MM-Dist, Diversity) and, for FID, against a second,
  independent pass (different captions and crops), as the reference evaluation does;
* ``evaluate_generator``: per batch, ``generate_fn(captions, tokens, lengths)`` returns motions
  [B, T, F] in the *data's* normalisation; they are brought back to raw features with the data's
  ``Mean.npy``/``Std.npy`` and renormalised with the evaluator's own statistics (frames after each
  length are zeroed, like the padding of real motions), then scored against the batch's captions;
  FID compares them with the same pass's real motions. MultiModality: the first ``mm_batches``
  batches (3 x 32 captions, as MoMask and T2M-GPT) are generated ``mm_repeats`` (30) times; the
  mean distance of 10 random pairs of generations per caption.

Metrics per replication (:mod:`mate.metrics` arithmetic): R-precision top 1/2/3 (inside each batch
of 32, Euclidean distance), FID, MM-Dist, Diversity (300 random pairs; 100 when the split has at
most 300 items), MultiModality. The report is mean and ``1.96 * std / sqrt(replications)`` (std
with ddof 0) over replications (20 by default), the papers' "+-" interval.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mate import metrics as M

from .data import EvalBatch, EvalSet
from .evaluator import Evaluator

__all__ = ["GenerateFn", "summarise_replications", "batch_scores", "evaluate_real", "evaluate_generator", "METRIC_NAMES"]

#: generate_fn(captions list[str] [B], tokens list[tuple[str, ...]] [B], lengths int64 [B]) ->
#: motions [B, T >= max(lengths), F] (numpy or torch) in the data's normalisation.
GenerateFn = Callable[[Sequence[str], Sequence[Sequence[str]], np.ndarray], "np.ndarray | torch.Tensor"]

METRIC_NAMES = ("R_precision_top1", "R_precision_top2", "R_precision_top3", "FID", "MM_Dist", "Diversity",
                "MultiModality")


def summarise_replications(values: Sequence[float]) -> dict:
    """{"mean", "conf" (1.96 std / sqrt(n), std with ddof 0), "replications", "values"}."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError("need one value per replication")
    return {"mean": float(v.mean()), "conf": float(1.96 * v.std() / math.sqrt(v.size)), "replications": int(v.size),
            "values": [float(x) for x in v]}


def _check_settings(replications: int, batch_size: int) -> None:
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    if batch_size < 3:
        raise ValueError(f"batch_size must be >= 3 (R-precision top 3), got {batch_size}")


def _diversity_times(n: int) -> int:
    return 300 if n > 300 else min(100, n)


def batch_scores(text_emb: np.ndarray, motion_emb: np.ndarray) -> tuple[np.ndarray, float]:
    """One batch: (top-1/2/3 hit counts float64 [3], sum of matched distances). Rows are pairs."""
    dist = M.euclidean_distance_matrix(text_emb, motion_emb)                      # [B, B]
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :3] == np.arange(len(dist))[:, None]
    hits = np.cumsum(nearest, axis=1).clip(max=1).sum(axis=0).astype(np.float64)   # own motion within top k
    return hits, float(np.trace(dist))


class _Scores:
    """Accumulates one replication's retrieval scores and embeddings."""

    def __init__(self):
        self.hits, self.dist, self.count, self.motions = np.zeros(3), 0.0, 0, []

    def add(self, text_emb: np.ndarray, motion_emb: np.ndarray) -> None:
        hits, dist = batch_scores(text_emb, motion_emb)
        self.hits += hits
        self.dist += dist
        self.count += len(text_emb)
        self.motions.append(motion_emb)

    def result(self, pair_seed: int) -> dict:
        """The replication's metrics; ``pair_seed`` draws Diversity's pairs (the same seed for the
        real and the generated motions of a replication: the same index pairs, a paired comparison)."""
        emb = np.concatenate(self.motions)
        r = self.hits / self.count
        return {"R_precision_top1": r[0], "R_precision_top2": r[1], "R_precision_top3": r[2],
                "MM_Dist": self.dist / self.count,
                "Diversity": M.diversity(emb, _diversity_times(len(emb)), seed=pair_seed), "embeddings": emb}


def _embed_batch(evaluator: Evaluator, batch: EvalBatch) -> tuple[np.ndarray, np.ndarray]:
    text = evaluator.text_embeddings(batch.word_embs, batch.pos_onehot, batch.sent_lens).numpy()
    motion = evaluator.motion_embeddings(batch.motions, batch.lengths).numpy()
    return text, motion


def _progress(total: int, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False, disable=not show)


def _report(per_rep: list[dict], names: Sequence[str], counts: dict) -> dict:
    out = {"counts": counts, "metrics": {}}
    for name in names:
        values = [r[name] for r in per_rep if name in r]
        if values:
            out["metrics"][name] = summarise_replications(values)
    return out


def evaluate_real(data_root: str | Path, evaluator: Evaluator, split: str = "test", replications: int = 20,
                  seed: int = 0, batch_size: int = 32, progress: bool = True) -> dict:
    """The "Real motions" row: R-precision, FID, MM-Dist and Diversity of the split's real motions
    (module docstring). Returns {"counts", "metrics": {name: summarise_replications(...)}}."""
    _check_settings(replications, batch_size)
    data = EvalSet(data_root, evaluator.convention, split)
    rng = np.random.default_rng(seed)
    per_rep = []
    bar = _progress(replications * 2 * data.num_batches(batch_size), "real motions", progress)
    for _ in range(replications):
        passes = []
        for _ in range(2):
            scores = _Scores()
            for batch in data.draw_pass(evaluator.normalise, evaluator.words, rng, batch_size):
                scores.add(*_embed_batch(evaluator, batch))
                bar.update(1)
            passes.append(scores.result(int(rng.integers(2 ** 32))))
        evaluated, reference = passes[1], passes[0]
        evaluated["FID"] = M.fid(reference["embeddings"], evaluated["embeddings"])
        per_rep.append(evaluated)
    bar.close()
    counts = {"items": len(data), "batches_per_pass": data.num_batches(batch_size), "batch_size": batch_size,
              "skipped_motions": sorted(data.skipped), "split": split, "replications": replications}
    return _report(per_rep, METRIC_NAMES[:6], counts)


def _generated(generate_fn: GenerateFn, batch: EvalBatch, evaluator: Evaluator, data_mean: np.ndarray,
               data_std: np.ndarray) -> np.ndarray:
    """generate_fn's motions for the batch, renormalised for the evaluator: float32 [B, 196, F]."""
    out = generate_fn(batch.captions, batch.tokens, batch.lengths.copy())
    out = out.detach().float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, dtype=np.float32)
    B, F = len(batch.lengths), evaluator.mean.shape[0]
    if out.ndim != 3 or out.shape[0] != B or out.shape[2] != F or out.shape[1] < batch.lengths.max():
        raise ValueError(f"generate_fn must return [B={B}, T >= {int(batch.lengths.max())}, F={F}] motions, "
                         f"got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError("generate_fn returned NaN or inf")
    motions = np.zeros_like(batch.motions)
    for i, length in enumerate(batch.lengths):
        motions[i, :length] = evaluator.normalise(out[i, :length] * data_std + data_mean)
    return motions


def _load_data_statistics(data_root: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    stats = []
    for name in ("Mean.npy", "Std.npy"):
        path = data_root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the normalisation generate_fn's motions are in "
                                    "(pass data_mean= and data_std=)")
        stats.append(np.load(path).astype(np.float32))
    for s in stats:
        if s.shape != (dim,):
            raise ValueError(f"data statistics must have {dim} values, got shape {s.shape}")
    return stats[0], stats[1]


def evaluate_generator(generate_fn: GenerateFn, data_root: str | Path, evaluator: Evaluator, split: str = "test",
                       replications: int = 20, seed: int = 0, batch_size: int = 32, mm_batches: int = 3,
                       mm_repeats: int = 30, mm_times: int = 10, data_mean: np.ndarray | None = None,
                       data_std: np.ndarray | None = None, progress: bool = True) -> dict:
    """Score a generator with the standard evaluator (module docstring). ``generate_fn``: see
    :data:`GenerateFn`; ``data_mean`` / ``data_std`` [F]: the normalisation its motions are in
    (default: ``data_root/Mean.npy``, ``Std.npy``); ``mm_batches=0`` skips MultiModality.
    Returns {"counts", "metrics": {name: summarise_replications(...)}, "real": the same pass's
    real-motion scores}."""
    _check_settings(replications, batch_size)
    if mm_batches and not 1 <= mm_times <= mm_repeats:
        raise ValueError(f"MultiModality needs 1 <= mm_times ({mm_times}) <= mm_repeats ({mm_repeats})")
    data_root = Path(data_root)
    data = EvalSet(data_root, evaluator.convention, split)
    F = evaluator.convention.feature_dim
    if data_mean is None or data_std is None:
        data_mean, data_std = _load_data_statistics(data_root, F)
    data_mean, data_std = np.asarray(data_mean, np.float32), np.asarray(data_std, np.float32)
    mm_batches = min(mm_batches, data.num_batches(batch_size))
    rng = np.random.default_rng(seed)
    per_rep, real_rep = [], []
    bar = _progress(replications * (data.num_batches(batch_size) + mm_batches * (mm_repeats - 1)), "generator", progress)
    for _ in range(replications):
        real, generated, mm = _Scores(), _Scores(), []
        for b, batch in enumerate(data.draw_pass(evaluator.normalise, evaluator.words, rng, batch_size)):
            text_emb, real_emb = _embed_batch(evaluator, batch)
            real.add(text_emb, real_emb)
            repeats = mm_repeats if b < mm_batches else 1
            embeddings = []
            for _ in range(repeats):
                motions = _generated(generate_fn, batch, evaluator, data_mean, data_std)
                embeddings.append(evaluator.motion_embeddings(motions, batch.lengths).numpy())
                bar.update(1)
            generated.add(text_emb, embeddings[0])
            if b < mm_batches:
                mm.append(np.stack(embeddings, axis=1))           # [B, repeats, 512]
        pair_seed = int(rng.integers(2 ** 32))
        result, real_result = generated.result(pair_seed), real.result(pair_seed)
        result["FID"] = M.fid(real_result["embeddings"], result["embeddings"])
        if mm:
            result["MultiModality"] = M.multimodality(np.concatenate(mm), mm_times, seed=rng)
        per_rep.append(result)
        real_rep.append(real_result)
    bar.close()
    counts = {"items": len(data), "batches_per_pass": data.num_batches(batch_size), "batch_size": batch_size,
              "skipped_motions": sorted(data.skipped), "split": split, "replications": replications,
              "multimodality_captions": mm_batches * batch_size, "multimodality_repeats": mm_repeats}
    report = _report(per_rep, METRIC_NAMES, counts)
    report["real"] = _report(real_rep, ("R_precision_top1", "R_precision_top2", "R_precision_top3", "MM_Dist",
                                        "Diversity"), counts)["metrics"]
    return report
