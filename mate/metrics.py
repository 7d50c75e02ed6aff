"""Evaluation metrics: text-motion retrieval (TMR's protocols), the standard text-to-motion
metrics (Guo et al.'s evaluator conventions), and segmentation boundary errors.

Every function is pure: it takes embeddings or similarities (numpy arrays or torch tensors; they
are converted to float64 numpy) and returns numbers or numpy arrays. Nothing here loads a model.

Retrieval (TMR, Petrovich et al. 2023)
--------------------------------------
``sim[i, j]`` is the similarity of text i and motion j (higher = closer). For a query the rank of
the ground truth is the 0-based position of its *best-scoring positive* in the sorted row; ties
are broken by averaging (the positive's rank is the mean of the tied positions, TMR's default
``break_ties="averaging"``). R@k = 100 * fraction of queries with rank < k; MedR = median rank + 1.

* ``positives=None``: the matrix is square and only the diagonal is positive (TMR's protocol
  (a) "All", and (d) inside each batch).
* A boolean ``positives [N_text, N_motion]`` generalises this: protocol (b) "threshold" marks as
  positive every motion whose caption is a near-paraphrase of the query caption,
  :func:`text_similarity_positives` (TMR: cosine of MPNet sentence embeddings with
  ``(cos + 1) / 2 > 0.95``); it also lets several captions share one motion.
* Protocol (d) random batches: :func:`sample_retrieval_batches` then
  :func:`batched_retrieval_metrics` (metrics per batch of 32, averaged over batches).

TMR's own protocols, exactly as its ``retrieval.py`` defines them (:func:`tmr_retrieval_protocols`)
--------------------------------------------------------------------------------------------------
The functions above generalise TMR's protocols to every caption of a split. TMR itself evaluates
one item per test motion, the motion's *first* annotation, on a test split that is neither
length-filtered nor cropped (``mate.data.dataset.loader_convention("tmr", "test")`` builds that
item set), so its similarity matrix is square, text i against motion i:

* (a) ``normal``: the diagonal is the only positive;
* (b) ``threshold``: text i's positives are the motions j whose caption's sentence embedding
  (MPNet in TMR, L2-normalised) has ``e_i . e_j > 2 * 0.95 - 1`` (:func:`tmr_threshold_positives`);
* (c) ``nsim``: protocol (a) on the motions of the ``nsim_test`` split, TMR's subset of test
  motions whose captions are dissimilar to each other;
* (d) ``guo``: the item keys sorted, ``np.random.seed(0); np.random.shuffle(arange(N))``, cut into
  ``N // 32`` batches of 32 (the rest dropped); protocol (a) in each 32 x 32 matrix, every metric
  averaged over the batches (:func:`tmr_guo_batches`).

Motion-to-text uses the transposed matrix with the same positives. Ranks are the same as above
(best positive, ties averaged); TMR rounds its tables to 2 decimals, these functions do not.

Text-to-motion metrics (Guo et al. 2022, ``calculate_R_precision`` & co. in their evaluator code,
reused by T2M-GPT, MoMask, ...)
----------------------------------------------------------------------------------------------
* R-precision: in batches of 32 (text i, motion i) pairs, rank the 32 motions by the Euclidean
  distance to each text; top-k = fraction of texts whose own motion is among the k nearest
  (ties broken by index, as ``np.argsort``). Batches come from a shuffled pass with the last
  incomplete batch dropped (their evaluation loader: batch 32, shuffle, ``drop_last``).
* MM-Dist ("matching score"): mean Euclidean distance between matched text and motion embeddings.
* FID: Fréchet distance between the Gaussians (mean, ``np.cov`` with ddof=1) of two embedding sets.
* Diversity: mean distance between ``times`` random pairs (300 in the papers); the first and the
  second members are drawn independently, each without replacement.
* MultiModality: per text, mean distance between ``times`` random pairs (10) of its generations
  (30 per text in the papers), averaged over texts.

Segmentation
------------
:func:`boundary_errors` compares two partitions ``0 = b_0 < ... < b_N = T`` of the same motion on
their inner boundaries only (0 and T are fixed), in seconds.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "bootstrap_mean_interval",
    "RECALL_KS",
    "cosine_similarity_matrix",
    "euclidean_distance_matrix",
    "ranks_of_positives",
    "recall_metrics",
    "retrieval_metrics",
    "text_similarity_positives",
    "sample_retrieval_batches",
    "batched_retrieval_metrics",
    "TMR_THRESHOLD",
    "TMR_BATCH_SIZE",
    "tmr_threshold_positives",
    "tmr_guo_batches",
    "tmr_retrieval_protocols",
    "sample_pair_batches",
    "r_precision",
    "mm_dist",
    "activation_statistics",
    "frechet_distance",
    "fid",
    "diversity",
    "multimodality",
    "uniform_bounds",
    "boundary_errors",
    "mean_boundary_error",
]

#: The recalls TMR reports.
RECALL_KS: tuple[int, ...] = (1, 2, 3, 5, 10)


def _array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """``x`` (numpy array, torch tensor or nested sequence) as a finite float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# ----------------------------------------------------------------------------------- distances
def cosine_similarity_matrix(a, b) -> np.ndarray:
    """Cosine similarities of the rows: a [N, D], b [M, D] -> float64 [N, M] in [-1, 1].
    A zero row has similarity 0 to everything."""
    a, b = _array(a, "a", 2), _array(b, "b", 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: a {a.shape}, b {b.shape}")
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    a = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    b = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    return np.clip(a @ b.T, -1.0, 1.0)


def euclidean_distance_matrix(a, b) -> np.ndarray:
    """Euclidean distances of the rows: a [N, D], b [M, D] -> float64 [N, M], ``[i, j] =
    |a_i - b_j|`` (expanded form, clipped at 0 before the square root)."""
    a, b = _array(a, "a", 2), _array(b, "b", 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: a {a.shape}, b {b.shape}")
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


# ----------------------------------------------------------------------------------- retrieval
def ranks_of_positives(sim, positives=None) -> np.ndarray:
    """0-based rank of each query's best positive, ties averaged.

    sim: [Q, C] similarities (query rows, candidate columns; higher = better).
    positives: bool [Q, C] (default: the identity, which needs Q == C); every row needs one.
    Returns float64 [Q]: ``#{c: sim[q, c] > best_q} + (#{c: sim[q, c] == best_q} - 1) / 2`` with
    ``best_q`` the highest similarity among q's positives (TMR's "averaging" tie break).
    """
    sim = _array(sim, "sim", 2)
    q, c = sim.shape
    if positives is None:
        if q != c:
            raise ValueError(f"positives=None needs a square similarity matrix, got {sim.shape}")
        positives = np.eye(q, dtype=bool)
    positives = np.asarray(positives, dtype=bool)
    if positives.shape != sim.shape:
        raise ValueError(f"positives has shape {positives.shape}, sim has {sim.shape}")
    empty = np.flatnonzero(~positives.any(axis=1))
    if empty.size:
        raise ValueError(f"{empty.size} queries have no positive (first: row {int(empty[0])})")
    best = np.where(positives, sim, -np.inf).max(axis=1, keepdims=True)
    better = (sim > best).sum(axis=1)
    tied = (sim == best).sum(axis=1)
    return better + (tied - 1) / 2.0


def recall_metrics(ranks, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """{"R@k": 100 * mean(rank < k) for k in ks, "MedR": median(rank) + 1} from 0-based ranks [Q]."""
    ranks = _array(ranks, "ranks", 1)
    if ranks.size == 0:
        raise ValueError("no queries")
    out = {f"R@{k}": float(100.0 * np.mean(ranks < k)) for k in ks}
    out["MedR"] = float(np.median(ranks) + 1.0)
    return out


def retrieval_metrics(sim, positives=None, ks: Sequence[int] = RECALL_KS) -> dict[str, dict[str, float]]:
    """Text-to-motion and motion-to-text retrieval.

    sim: [N_text, N_motion] text-motion similarities. positives: bool [N_text, N_motion]
    (default: the diagonal of a square matrix). Returns ``{"t2m": {"R@1", "R@2", "R@3", "R@5",
    "R@10", "MedR"}, "m2t": {...}}`` (recalls in percent); t2m queries are the rows, m2t the columns.
    """
    sim = _array(sim, "sim", 2)
    if positives is not None:
        positives = np.asarray(positives, dtype=bool)
    return {
        "t2m": recall_metrics(ranks_of_positives(sim, positives), ks),
        "m2t": recall_metrics(ranks_of_positives(sim.T, None if positives is None else positives.T), ks),
    }


def text_similarity_positives(text_features, motion_index, num_motions: int | None = None,
                              threshold: float = 0.95) -> np.ndarray:
    """TMR's protocol (b): positives from text-text similarity.

    text_features: [N_text, D] sentence features of the captions (any scale; cosine is used).
    motion_index: int [N_text], the motion (column) each caption describes.
    Motion j is a positive of caption i when j is i's own motion, or when some caption i' of
    motion j has ``(cos(i, i') + 1) / 2 > threshold`` (TMR compares its similarity rescaled to
    [0, 1] with 0.95, i.e. cos > 0.9). Returns bool [N_text, num_motions]."""
    motion_index = np.asarray(motion_index, dtype=np.int64)
    feats = _array(text_features, "text_features", 2)
    if motion_index.shape != (feats.shape[0],):
        raise ValueError(f"motion_index must have shape ({feats.shape[0]},), got {motion_index.shape}")
    num_motions = int(motion_index.max()) + 1 if num_motions is None else int(num_motions)
    if motion_index.min() < 0 or motion_index.max() >= num_motions:
        raise ValueError(f"motion_index must lie in [0, {num_motions})")
    close = (cosine_similarity_matrix(feats, feats) + 1.0) / 2.0 > threshold   # [N_text, N_text]
    onehot = np.zeros((feats.shape[0], num_motions), dtype=bool)
    onehot[np.arange(feats.shape[0]), motion_index] = True
    positives = (close.astype(np.int64) @ onehot.astype(np.int64)) > 0
    positives |= onehot
    return positives


def sample_pair_batches(num_pairs: int, batch_size: int = 32, seed=0, drop_last: bool = True
                        ) -> list[np.ndarray]:
    """A shuffled pass over ``num_pairs`` aligned pairs cut into batches (Guo et al.'s evaluation
    loader). With ``drop_last`` the incomplete last batch is dropped, except when there are fewer
    pairs than ``batch_size``: then the single batch holds them all. Returns int64 index arrays."""
    if num_pairs < 1:
        raise ValueError("need at least one pair")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")
    order = _rng(seed).permutation(num_pairs)
    if num_pairs < batch_size:
        return [order]
    stop = num_pairs - num_pairs % batch_size if drop_last else num_pairs
    return [order[s:min(s + batch_size, stop)] for s in range(0, stop, batch_size)]


def sample_retrieval_batches(motion_index, num_motions: int | None = None, batch_size: int = 32, seed=0,
                             rounds: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """TMR's protocol (d): random batches of ``batch_size`` (caption, motion) pairs with distinct
    motions, one caption per motion (drawn at random among its captions).

    motion_index: int [N_text], the motion of each caption. Each round shuffles the motions and
    cuts them into batches (see :func:`sample_pair_batches`). Returns a list of (text rows,
    motion columns) int64 array pairs, aligned: text rows[k] describes motion columns[k]."""
    motion_index = np.asarray(motion_index, dtype=np.int64)
    num_motions = int(motion_index.max()) + 1 if num_motions is None else int(num_motions)
    captions_of = [np.flatnonzero(motion_index == j) for j in range(num_motions)]
    described = np.array([j for j in range(num_motions) if captions_of[j].size], dtype=np.int64)
    rng = _rng(seed)
    batches = []
    for _ in range(rounds):
        for idx in sample_pair_batches(described.size, batch_size, rng):
            motions = described[idx]
            texts = np.array([rng.choice(captions_of[j]) for j in motions], dtype=np.int64)
            batches.append((texts, motions))
    return batches


def batched_retrieval_metrics(sim, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                              ks: Sequence[int] = RECALL_KS) -> dict[str, dict[str, float]]:
    """Protocol (d): :func:`retrieval_metrics` (diagonal positives) of each batch's square
    sub-matrix ``sim[texts][:, motions]``, every metric averaged over the batches."""
    sim = _array(sim, "sim", 2)
    per_batch = [retrieval_metrics(sim[np.ix_(t, m)], None, ks) for t, m in batches]
    if not per_batch:
        raise ValueError("no batches")
    return {d: {k: float(np.mean([b[d][k] for b in per_batch])) for k in per_batch[0][d]} for d in ("t2m", "m2t")}


# ------------------------------------------------------------------------- TMR's own protocols
#: TMR's protocol (b) threshold on (cos + 1) / 2 of the sentence embeddings (its retrieval.yaml).
TMR_THRESHOLD = 0.95
#: TMR's protocol (d) batch size.
TMR_BATCH_SIZE = 32


def tmr_threshold_positives(sent_emb, threshold: float = TMR_THRESHOLD) -> np.ndarray:
    """TMR's protocol (b) positives for a square matrix (one caption per motion).

    sent_emb: [N, D] sentence embeddings of the N captions (L2-normalised here, as TMR's are).
    Returns bool [N, N]: ``[i, j] = e_i . e_j > 2 * threshold - 1`` (TMR's ``real_threshold``);
    the diagonal is positive for any threshold below 1."""
    e = _array(sent_emb, "sent_emb", 2)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)
    positives = (e @ e.T) > 2.0 * threshold - 1.0
    positives[np.diag_indices(e.shape[0])] = True    # a zero embedding still matches its own motion
    return positives


def tmr_guo_batches(keys: Sequence, batch_size: int = TMR_BATCH_SIZE, seed: int = 0) -> list[np.ndarray]:
    """TMR's protocol (d) batches: ``keys`` (one per item, e.g. motion ids) sorted, a permutation
    of ``arange(N)`` from ``np.random.seed(seed); np.random.shuffle`` (the legacy generator TMR
    seeds), cut into ``N // batch_size`` full batches. Returns int64 positions into ``keys``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.array(sorted(range(len(keys)), key=lambda i: keys[i]), dtype=np.int64)
    idx = np.arange(len(keys))
    np.random.RandomState(seed).shuffle(idx)
    return [order[idx[batch_size * i:batch_size * (i + 1)]] for i in range(len(keys) // batch_size)]


def tmr_retrieval_protocols(sim, sent_emb=None, keys: Sequence | None = None, nsim=None,
                            threshold: float = TMR_THRESHOLD, batch_size: int = TMR_BATCH_SIZE,
                            seed: int = 0, ks: Sequence[int] = RECALL_KS) -> dict:
    """TMR's four retrieval protocols (module docstring) on one square matrix.

    sim: [N, N] similarities of TMR's items (text i = the first caption of motion i). sent_emb:
    [N, D] sentence embeddings of those captions, for (b). keys: [N] the items' keys (motion ids)
    for (d). nsim: the positions (into the N items) of the ``nsim_test`` motions, for (c).
    Returns ``{"normal", "threshold", "nsim", "guo"}``, each ``{"t2m": {...}, "m2t": {...}}`` as
    :func:`retrieval_metrics`, or None where its input is missing (or, for "guo", when N < 32),
    with ``"guo_batches"``: the number of batches of (d)."""
    sim = _array(sim, "sim", 2)
    if sim.shape[0] != sim.shape[1]:
        raise ValueError(f"TMR's protocols need a square matrix (one caption per motion), got {sim.shape}")
    out: dict = {"normal": retrieval_metrics(sim, None, ks)}
    out["threshold"] = None if sent_emb is None else \
        retrieval_metrics(sim, tmr_threshold_positives(sent_emb, threshold), ks)
    if nsim is None:
        out["nsim"] = None
    else:
        nsim = np.asarray(nsim, dtype=np.int64)
        out["nsim"] = retrieval_metrics(sim[np.ix_(nsim, nsim)], None, ks) if nsim.size else None
    if keys is not None and len(keys) != sim.shape[0]:
        raise ValueError(f"{len(keys)} keys for {sim.shape[0]} items")
    batches = tmr_guo_batches(keys, batch_size, seed) if keys is not None else []
    out["guo"] = batched_retrieval_metrics(sim, [(b, b) for b in batches], ks) if batches else None
    out["guo_batches"] = len(batches)
    return out


# -------------------------------------------------------------- Guo et al.'s text-to-motion metrics
def r_precision(text_emb, motion_emb, top_k: int = 3, batch_size: int = 32, seed=0,
                drop_last: bool = True) -> np.ndarray:
    """R-precision: text_emb, motion_emb [N, D], row i of each a matched pair.

    Pairs are shuffled (``seed``) into batches of ``batch_size`` (:func:`sample_pair_batches`);
    in each batch every text ranks the batch's motions by Euclidean distance (``np.argsort``
    order). Returns float64 [top_k]: entry k-1 = fraction of texts whose motion is among the
    k nearest."""
    t, m = _array(text_emb, "text_emb", 2), _array(motion_emb, "motion_emb", 2)
    if t.shape != m.shape:
        raise ValueError(f"text_emb {t.shape} and motion_emb {m.shape} must have the same shape")
    hits, count = np.zeros(top_k), 0
    for idx in sample_pair_batches(t.shape[0], batch_size, seed, drop_last):
        order = np.argsort(euclidean_distance_matrix(t[idx], m[idx]), axis=1, kind="stable")
        found = np.zeros((idx.size, top_k), dtype=bool)                    # [B, top_k]
        k = min(top_k, idx.size)   # a batch smaller than top_k: its own motion is surely within top_k
        found[:, :k] = order[:, :k] == np.arange(idx.size)[:, None]
        hits += np.cumsum(found, axis=1).clip(max=1).sum(axis=0)
        count += idx.size
    return hits / count


def mm_dist(text_emb, motion_emb) -> float:
    """MM-Dist (matching score): mean Euclidean distance between matched rows of text_emb and
    motion_emb [N, D]."""
    t, m = _array(text_emb, "text_emb", 2), _array(motion_emb, "motion_emb", 2)
    if t.shape != m.shape:
        raise ValueError(f"text_emb {t.shape} and motion_emb {m.shape} must have the same shape")
    return float(np.linalg.norm(t - m, axis=1).mean())


def activation_statistics(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (``np.cov``, rows = samples, ddof=1) of x [N, D], N >= 2."""
    x = _array(x, "x", 2)
    if x.shape[0] < 2:
        raise ValueError("need at least 2 samples for a covariance")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})``.

    mu [D], sigma [D, D] (symmetric PSD). The trace term is computed as
    ``sum sqrt(eig(S1^{1/2} S2 S1^{1/2}))`` (the same eigenvalues as sigma1 sigma2, from a
    symmetric PSD matrix, so no complex square root and no epsilon retry is needed)."""
    mu1, mu2 = np.atleast_1d(_array(mu1, "mu1")), np.atleast_1d(_array(mu2, "mu2"))
    s1, s2 = np.atleast_2d(_array(sigma1, "sigma1")), np.atleast_2d(_array(sigma2, "sigma2"))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes disagree: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    r1 = _psd_sqrt(s1)
    middle = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def fid(x, y) -> float:
    """FID between two embedding sets x [N, D] and y [M, D] (their Gaussian statistics)."""
    return frechet_distance(*activation_statistics(x), *activation_statistics(y))


def diversity(x, times: int = 300, seed=0) -> float:
    """Diversity of x [N, D]: mean distance of ``times`` random pairs; the first and second
    members are two independent draws of ``times`` indices without replacement (so needs
    ``times <= N``; Guo et al. use 300, T2M-GPT 100 when N <= 300)."""
    x = _array(x, "x", 2)
    if not 1 <= times <= x.shape[0]:
        raise ValueError(f"times must lie in [1, N={x.shape[0]}], got {times}")
    rng = _rng(seed)
    first = rng.choice(x.shape[0], times, replace=False)
    second = rng.choice(x.shape[0], times, replace=False)
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(x, times: int = 10, seed=0) -> float:
    """MultiModality of x [N_text, R, D] (R generations per text): for each text, the mean distance
    of ``times`` random pairs of its generations (the same pair draw for every text, as in the
    reference code), averaged over texts. Needs ``times <= R`` (the papers: R = 30, times = 10)."""
    x = _array(x, "x", 3)
    if not 1 <= times <= x.shape[1]:
        raise ValueError(f"times must lie in [1, R={x.shape[1]}], got {times}")
    rng = _rng(seed)
    first = rng.choice(x.shape[1], times, replace=False)
    second = rng.choice(x.shape[1], times, replace=False)
    return float(np.linalg.norm(x[:, first] - x[:, second], axis=2).mean())


# -------------------------------------------------------------------------------- segmentation
def uniform_bounds(num_frames: int, num_segments: int) -> np.ndarray:
    """Equal-length partition of [0, num_frames) into ``num_segments`` pieces: int64
    ``[num_segments + 1]``, ``round(k * num_frames / num_segments)``."""
    if num_segments < 1 or num_frames < num_segments:
        raise ValueError(f"cannot split {num_frames} frames into {num_segments} non-empty segments")
    return np.rint(np.arange(num_segments + 1) * (num_frames / num_segments)).astype(np.int64)


def boundary_errors(pred_bounds, true_bounds, fps: float) -> np.ndarray:
    """|pred - true| in seconds for each *inner* boundary of two partitions of one motion.

    pred_bounds, true_bounds: int [N + 1] frame boundaries ``0 = b_0 < ... < b_N = T`` (same N,
    same T). Returns float64 [N - 1] (empty for N = 1)."""
    pred = np.asarray(pred_bounds, dtype=np.int64)
    true = np.asarray(true_bounds, dtype=np.int64)
    if pred.ndim != 1 or pred.shape != true.shape or pred.size < 2:
        raise ValueError(f"bounds must be 1-D of the same length >= 2, got {pred.shape} and {true.shape}")
    if pred[0] != true[0] or pred[-1] != true[-1]:
        raise ValueError(f"partitions of different spans: pred [{pred[0]}, {pred[-1]}], true [{true[0]}, {true[-1]}]")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return np.abs(pred[1:-1] - true[1:-1]).astype(np.float64) / float(fps)


def mean_boundary_error(pairs: Iterable[tuple[Sequence[int], Sequence[int]]], fps: float) -> float | None:
    """Mean of :func:`boundary_errors` over every inner boundary of every (pred, true) pair
    (boundaries weigh equally); None when there is no inner boundary."""
    errors = [boundary_errors(p, t, fps) for p, t in pairs]
    flat = np.concatenate(errors) if errors else np.zeros(0)
    return float(flat.mean()) if flat.size else None


# ----------------------------------------------------------------------------------- intervals
def bootstrap_mean_interval(values, groups, num_resamples: int = 1000, seed=0,
                            level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-item ``values`` [N] and its ``level`` interval from a
    percentile bootstrap that resamples whole ``groups`` [N] (e.g. test motions: the items of one
    motion are not independent) with replacement. Each resample's statistic is the mean over
    the items of the drawn groups, counted as often as their group is drawn."""
    values = _array(values, "values", 1)
    groups = np.asarray(groups)
    if groups.shape != values.shape:
        raise ValueError(f"groups has shape {groups.shape}, values {values.shape}")
    if values.size == 0:
        raise ValueError("no values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _, index = np.unique(groups, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    draws = _rng(seed).integers(0, sums.size, size=(int(num_resamples), sums.size))
    stats = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(values.mean()), float(low), float(high)
