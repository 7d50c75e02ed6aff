"""``python -m mate.evaluate RUN_DIR``: evaluate a finished ``python -m mate.train`` run.

Two protocols (``--protocol``):

* ``plug-and-play`` (the default; the paper's): every text encoder of the run is frozen and fresh
  downstream models are trained on it from one initialisation (:mod:`mate.plug_and_play`).
  Writes ``RUN_DIR/eval/plug_and_play.json`` and ``.md``. For a run on generated data the probes
  use a 2,100-motion synthetic set made once in ``RUN_DIR/eval/probe_data``.
* ``co-trained`` (described below): the run's own training heads score each word table. Biased
  towards the table the heads were fitted with; kept as a secondary view. Writes
  ``RUN_DIR/eval/metrics.json`` and ``RUN_DIR/eval/report.md``.

The co-trained protocol:

Models (all rebuilt from the run directory by :func:`mate.rundir.load_stage_model`):

* ``baseline``: the stage-0 model (L_rec + L_sent: the paper's "Baseline", MATE without L_word);
* ``mate``: the stage-1 model (all losses);
* ``original``: the baseline with its word-embedding table reset to the ORIGINAL encoder's table
  (``build_text_encoder(spec)`` fresh); the rest of the encoder is frozen during training anyway,
  so this differs from ``baseline`` only in WE and isolates what the (sentence-level) fine-tuned
  table contributes. Its sentence projection and motion encoder are the baseline's.

What is measured, on the chosen split's captions (motions cropped deterministically,
``crop="start"``); scores are cosines between the model's sentence feature f^t and motion
feature f^m. Bad inputs of the split (NaN/inf or empty motions: HumanML3D's test split holds
two NaN ones, missing files, malformed captions) are skipped with one warning that names them
and counts them, also recorded in ``meta.skipped``; ``--strict-data`` stops at the first one
instead. A user's mistake (a wrong path, an unfinished run, a bad value) prints one ``error:``
line; ``--debug`` shows the traceback (:mod:`mate.cli`).

* ``retrieval_tmr``: TMR's four protocols exactly as its ``retrieval.py`` defines them
  (:func:`mate.metrics.tmr_retrieval_protocols`), on TMR's items: the *first* caption of every
  motion of the split, a test split neither length-filtered nor cropped
  (``loader_convention("tmr", split)``; clips longer than the motion encoder's ``max_len``, 200
  frames, are cut to their start and counted in ``meta.retrieval_tmr``): (a) ``normal``, (b)
  ``threshold`` (positives: sentence embeddings with e_i . e_j > 2 * 0.95 - 1; TMR's come from
  MPNet, here from the ORIGINAL encoder's pooled feature), (c) ``nsim`` (the motions of
  ``nsim_<split>.txt`` when the dataset has one, as TMR ships for its test split), (d) ``guo``
  (sorted motion ids, seed-0 shuffle, batches of 32). On TMR's test split these are the
  quantities of TMR's tables (unrounded), but for (b)'s sentence encoder and any cut clip.
* ``retrieval`` (TMR's protocols generalised to every caption, :mod:`mate.metrics`),
  text-to-motion (t2m) and motion-to-text (m2t), R@1/2/3/5/10 in percent and MedR, for original,
  baseline and mate:

  - ``all``: every caption of the split against every distinct clip; a caption's positive is
    its own clip (a clip with several captions is one candidate, not several tied copies;
    for m2t a clip's best-ranked caption counts);
  - ``threshold``: as ``all``, plus every clip that has a caption with ``(cos + 1) / 2 > 0.95``
    to the query caption (TMR's rule, cos > 0.9). TMR measures text-text similarity with a
    sentence encoder (MPNet); here it is the ORIGINAL text encoder's pooled sentence feature
    (for the default MiniLM, itself a sentence-transformers model), computed once and shared by
    every model so that all of them face the same positives;
  - ``small_batches``: random batches of 32 distinct clips with one random caption each
    (seeded), metrics of each 32x32 matrix averaged over the batches (a split with fewer than 32
    clips gives one smaller batch: see ``meta.small_batches``).

* ``t2m_standard``: Guo et al.'s evaluator metrics with the model as the evaluator: R-precision
  top-1/2/3 (batches of 32, one caption per clip), MM-Dist and the Diversity of the motion
  embeddings. Embeddings are L2-normalised first (the models are trained on cosines; Euclidean
  distance on unit vectors ranks exactly as cosine does), so the values are not comparable with
  numbers from Guo et al.'s own evaluator.
* ``antonym_swap_accuracy``: every occurrence of a word with a kinematic antonym
  (:data:`ANTONYM_GROUPS`) in a caption is one test: the true caption must score strictly above
  the caption with that one occurrence swapped (ties fail). Overall and per word pair, percent,
  with counts. Occurrences coordinated with their own antonym ("up and down", "left to right")
  and "right" as an intensifier ("right after", "right away") are skipped.
* ``segmentation_boundary_error_s`` (only with ground truth, ``DATA/segments.json`` from the
  synthetic generator): multi-action captions are segmented exactly as the training pipeline
  does (stage-0 encoders, 0.5 s grid, :func:`mate.model.segmentation.partition_costs`,
  :func:`mate.segment.optimal_partition_batch`) with the GROUND-TRUTH sub-texts (so the error
  measures segmentation alone), and also with the rule-based sub-texts where their count
  matches; the error is the mean absolute difference of the inner boundaries in seconds (over
  all boundaries), beside an equal-length split as a reference. The paper reports 0.73 s
  (HumanML3D) and 0.42 s (KIT) against human labels.
* ``decomposition_accuracy`` (with ground truth): :func:`mate.text.subtexts.split_subtexts`
  against the ground-truth sub-texts; ``exact`` = percent of captions whose list matches after
  normalisation (lower case, words only, leading connectives such as "and then", "after",
  "finally" removed), ``count`` = percent with the right number of sub-texts.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mate import metrics as M
from mate.atomic import atomic_write_json, atomic_write_text
from mate.cli import add_debug_flag, user_errors
from mate.distributed import resolve_device
from mate.reporting import format_value as _fmt, markdown_table as _table
from mate.rundir import RunDirectoryError, check_run_dir, data_root as resolve_data_root, load_stage_model, read_manifest
from mate.plug_and_play import PROBE_KINDS, ProbeConfig
from mate.text.antonyms import ANTONYM_GROUPS, ANTONYM_WORD_PAIRS, antonym_swaps, word_embedding_vectors

log = logging.getLogger("mate.evaluate")

__all__ = [
    "antonym_swap_accuracy",
    "normalise_subtexts",
    "decomposition_accuracy",
    "evaluate_run",
    "write_report",
    "main",
]

VARIANTS = ("original", "baseline", "mate")
PROTOCOLS = ("all", "threshold", "small_batches")
TMR_THRESHOLD = M.TMR_THRESHOLD   # TMR's protocol (b) value, one home: mate.metrics
SMALL_BATCH = M.TMR_BATCH_SIZE


# ------------------------------------------------------------------------------------- antonyms
def antonym_swap_accuracy(captions: Sequence[str], motion_refs: Sequence[Any],
                          scorer: Callable[[list[str], list[Any]], Sequence[float]]) -> dict:
    """Antonym-swap accuracy of a scorer.

    captions: the true captions; motion_refs: per caption, whatever identifies its motion for
    the scorer. ``scorer(texts, refs)`` returns one score per (text, ref) pair (higher = better
    match). Each :func:`antonym_swaps` occurrence is one test, passed when the true caption
    scores strictly above the swapped one.

    Returns ``{"overall": percent or None, "per_pair": {pair: percent or None}, "counts":
    {pair: tests, "total": tests}, "correct": {pair: passed, "total": passed}, "mean_margin":
    mean(true - swapped score) or None}`` (None where there is no test)."""
    if len(captions) != len(motion_refs):
        raise ValueError(f"{len(captions)} captions but {len(motion_refs)} motion refs")
    texts, refs, tests = [], [], []   # tests: (pair, index of the true text, index of the swapped text)
    for caption, ref in zip(captions, motion_refs):
        swaps = antonym_swaps(caption)
        if not swaps:
            continue
        true_index = len(texts)
        texts.append(caption)
        refs.append(ref)
        for s in swaps:
            tests.append((s.pair, true_index, len(texts)))
            texts.append(s.swapped)
            refs.append(ref)
    scores = np.asarray(scorer(texts, refs), dtype=np.float64) if texts else np.zeros(0)
    if scores.shape != (len(texts),):
        raise ValueError(f"scorer returned shape {scores.shape} for {len(texts)} texts")
    counts = {pair: 0 for pair in ANTONYM_GROUPS}
    correct = {pair: 0 for pair in ANTONYM_GROUPS}
    margins = []
    for pair, t, s in tests:
        counts[pair] += 1
        correct[pair] += bool(scores[t] > scores[s])
        margins.append(scores[t] - scores[s])
    total, passed = sum(counts.values()), sum(correct.values())
    return {
        "overall": 100.0 * passed / total if total else None,
        "per_pair": {p: (100.0 * correct[p] / counts[p] if counts[p] else None) for p in ANTONYM_GROUPS},
        "counts": {**counts, "total": total},
        "correct": {**correct, "total": passed},
        "mean_margin": float(np.mean(margins)) if margins else None,
    }


# ------------------------------------------------------------------------------- decomposition
_LEADING_CONNECTIVES = frozenset(
    "and then but next finally afterwards afterward after before that this which later subsequently lastly "
    "eventually so".split())


def antonym_word_rows(encoder) -> dict[str, np.ndarray]:
    """WE(w) float64 for every word of :data:`mate.text.antonyms.ANTONYM_WORD_PAIRS` (the mean of
    its token rows, as MATE reads a word)."""
    words = [w for pair in ANTONYM_WORD_PAIRS for w in pair]
    return dict(zip(words, word_embedding_vectors(encoder, words, normalise=False)))


def word_table_summary(rows: dict[str, np.ndarray], original_rows: dict[str, np.ndarray]) -> dict:
    """How the word-embedding table moved, from :func:`antonym_word_rows` of a trained encoder
    and of the ORIGINAL one: ``antonym_cosine`` {"a/b": cos(WE(a), WE(b))}, ``relative_change``
    {word: ||WE(w) - WE_0(w)|| / ||WE_0(w)||} and its mean. A table that did not move is the
    usual reason a fine-tuned encoder scores like the original."""
    def cos(a, b):
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))

    change = {w: float(np.linalg.norm(rows[w] - original_rows[w]) / max(np.linalg.norm(original_rows[w]), 1e-12))
              for w in rows}
    return {"antonym_cosine": {f"{a}/{b}": cos(rows[a], rows[b]) for a, b in ANTONYM_WORD_PAIRS},
            "relative_change": change, "mean_relative_change": float(np.mean(list(change.values())))}


def normalise_subtexts(subtexts: Sequence[str]) -> list[tuple[str, ...]]:
    """Sub-texts as comparable word tuples: lower case, words only (:func:`mate.text.vocab.split_words`),
    leading connectives ("and then", "after that", "finally", "before", ...) removed."""
    from mate.text.vocab import split_words

    out = []
    for text in subtexts:
        words = [w.lower() for w in split_words(text)]
        while len(words) > 1 and words[0] in _LEADING_CONNECTIVES:
            words.pop(0)
        out.append(tuple(words))
    return out


def decomposition_accuracy(predicted: Sequence[Sequence[str]], truth: Sequence[Sequence[str]]) -> dict:
    """``{"exact": percent of lists equal after :func:`normalise_subtexts` (order matters: the
    temporal order), "count": percent with the right number of sub-texts, "num_captions"}``
    (None values when there is no caption)."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} ground truths")
    n = len(truth)
    exact = sum(normalise_subtexts(p) == normalise_subtexts(t) for p, t in zip(predicted, truth))
    count = sum(len(p) == len(t) for p, t in zip(predicted, truth))
    return {"exact": 100.0 * exact / n if n else None, "count": 100.0 * count / n if n else None,
            "num_captions": n}


# ------------------------------------------------------------------------------------- features
@dataclass
class EvalSet:
    """The split's captions and distinct clips. ``clip_of[i]``: the clip of caption i;
    ``clip_item[j]``: a dataset index whose window is clip j."""

    dataset: Any
    captions: list[str]
    clip_of: np.ndarray
    clip_item: list[int]


def build_eval_set(data_root: Path, split: str, strict: bool = False) -> EvalSet:
    """Every caption of ``split`` and its clip (start-anchored crops). ``strict=False`` (the
    command's default) skips bad motions (NaN/inf, empty), missing files and malformed captions
    with one warning that names them; ``strict=True`` stops at the first."""
    from mate.data.dataset import MotionTextDataset, distinct_clips

    try:
        dataset = MotionTextDataset(data_root, split, strict=strict, crop="start")
    except FileNotFoundError as e:
        raise RunDirectoryError(f"{e} (choose another split with --split)") from None
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of {data_root} has no captions to evaluate")
    clip_of, clip_item = distinct_clips(dataset.records)
    return EvalSet(dataset, [r.caption.text for r in dataset.records], clip_of, clip_item)


@dataclass
class TMRSet:
    """TMR's items of a split (:func:`build_tmr_set`): one per motion, its first caption.
    ``nsim``: positions of the ``nsim_<split>`` motions among them (None without that file);
    ``sent_emb``: the captions' sentence embeddings for protocol (b), set by the first variant
    scored (the original encoder)."""

    dataset: Any
    captions: list[str]
    keys: list[str]
    nsim: np.ndarray | None
    nsim_file: str | None
    nsim_missing: int
    cropped: int
    max_len: int
    sent_emb: torch.Tensor | None = None


def build_tmr_set(data_root: Path, split: str, max_len: int, strict: bool = False) -> TMRSet | None:
    """The split as TMR evaluates it (:func:`mate.data.dataset.loader_convention` ``"tmr"``: the
    first caption of every motion, a test split neither length-filtered nor cropped), except that
    clips longer than the motion encoder's ``max_len`` frames are cut to their first ``max_len``
    frames (counted in ``cropped``). None when no item remains. The dataset's problems were
    already reported by :func:`build_eval_set`'s warning; they are not warned about twice."""
    import warnings

    from mate.data.dataset import DatasetProblemWarning, MotionTextDataset, loader_convention

    options = {**loader_convention("tmr", split), "crop_frames": max_len, "crop": "start"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetProblemWarning)
        dataset = MotionTextDataset(data_root, split, strict=strict, **options)
    if len(dataset) == 0:
        return None
    keys = [r.motion_id for r in dataset.records]
    nsim_name = f"nsim_{split}.txt"
    nsim_path = (dataset.root / "splits" / nsim_name) if dataset.layout == "tmr" else dataset.root / nsim_name
    nsim, missing = None, 0
    if nsim_path.is_file():
        position = {key: i for i, key in enumerate(keys)}
        ids = [line.strip() for line in nsim_path.read_text().splitlines() if line.strip()]
        nsim = np.array([position[i] for i in ids if i in position], dtype=np.int64)
        missing = len(ids) - nsim.size
    cropped = int(sum(r.num_frames > max_len for r in dataset.records))
    return TMRSet(dataset, [r.caption.text for r in dataset.records], keys, nsim,
                  str(nsim_path) if nsim is not None else None, missing, cropped, max_len)


def _bar(iterable, desc: str, progress: bool, total: int | None = None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=not progress)


@torch.no_grad()
def encode_captions(model, texts: Sequence[str], batch_size: int, device, progress: bool = False,
                    desc: str = "text", raw: bool = False) -> torch.Tensor:
    """Sentence features of ``texts``: f^t = SentProj(E_t(t)) [N, D] float32 on the CPU (``raw``:
    the text encoder's own pooled feature E_t(t), before MATE's projection)."""
    out = []
    starts = range(0, len(texts), batch_size)
    for s in _bar(starts, desc, progress, len(starts)):
        tok = model.text_encoder.tokenize(list(texts[s:s + batch_size]))
        ids, mask = tok["input_ids"].to(device), tok["attention_mask"].to(device)
        feats = model.text_encoder(ids, mask) if raw else model.encode_text(ids, mask)
        out.append(feats.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.d_model)


@torch.no_grad()
def encode_clips(model, dataset, items: Sequence[int], batch_size: int, device, progress: bool = False,
                 desc: str = "motion") -> torch.Tensor:
    """Motion features f^m [M, D] float32 (CPU) of the windows ``dataset[i]`` for i in ``items``."""
    from mate.data.dataset import collate_motion_text

    out = []
    starts = range(0, len(items), batch_size)
    for s in _bar(starts, desc, progress, len(starts)):
        batch = collate_motion_text([dataset[i] for i in items[s:s + batch_size]])
        _, f_m = model.encode_motion(batch["motion"].to(device), batch["lengths"].to(device))
        out.append(f_m.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.d_model)


def _normalised(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.double(), dim=-1).numpy()


# -------------------------------------------------------------------------------- segmentation
def load_ground_truth(data_root: Path) -> dict | None:
    """``DATA/segments.json`` (synthetic sets): {motion_id: [per caption: {subtexts, bounds_frames, ...}]}."""
    path = Path(data_root) / "segments.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _truth_of(record, gt: dict):
    entries = gt.get(record.motion_id)
    if not entries or record.caption.index >= len(entries):
        return None
    entry = entries[record.caption.index]
    if entry.get("caption", record.caption.text).strip() != record.caption.text.strip():
        return None
    return entry


@torch.no_grad()
def predict_partitions(model, eval_set: EvalSet, requests: Sequence[tuple[int, list[str]]], device,
                       progress: bool = False, clips_per_batch: int = 16) -> list[np.ndarray | None]:
    """Frame boundaries [N+1] (window frames) for each (dataset index, sub-texts) request, as
    training segments its captions (:func:`mate.model.segmentation.segment_captions`: 0.5 s grid,
    costs from the model's encoders, the C++ dynamic program). None where the window has fewer
    grid units than sub-texts."""
    from mate.model.segmentation import segment_captions

    model.eval()
    ds = eval_set.dataset
    clip_requests = [(r, int(eval_set.clip_of[index]), parts) for r, (index, parts) in enumerate(requests)]
    bounds = segment_captions(model, clip_requests, lambda clip: ds[eval_set.clip_item[clip]]["motion"].to(device),
                              lambda clip: int(ds.lengths[eval_set.clip_item[clip]]), ds.fps, clips_per_batch,
                              progress=progress, desc="segmentation")
    return [bounds[r] for r in range(len(requests))]


def segmentation_and_decomposition(model0, eval_set: EvalSet, gt: dict, device, progress: bool) -> tuple[dict, dict]:
    """(segmentation_boundary_error_s, decomposition_accuracy) of the split against ``gt``."""
    from mate.text.subtexts import split_subtexts

    ds = eval_set.dataset
    fps = float(ds.fps)
    truth_rows = []          # (dataset index, truth subtexts, truth window bounds or None, rule subtexts)
    for i, r in enumerate(ds.records):
        entry = _truth_of(r, gt)
        if entry is None:
            continue
        rule = split_subtexts(r.caption.text, list(r.caption.tokens) or None)
        length = int(ds.lengths[i])
        bounds = np.clip(np.asarray(entry["bounds_frames"], dtype=np.int64) - r.start_frame, 0, length)
        whole = r.start_frame == 0 and entry["bounds_frames"][-1] == r.num_frames
        valid = whole and bounds[-1] == length and bool(np.all(np.diff(bounds) > 0))
        truth_rows.append((i, list(entry["subtexts"]), bounds if valid else None, rule))
    decomposition = decomposition_accuracy([row[3] for row in truth_rows], [row[1] for row in truth_rows])
    multi = [row for row in truth_rows if len(row[1]) > 1]
    multi_dec = decomposition_accuracy([row[3] for row in multi], [row[1] for row in multi])
    decomposition.update({"exact_multi_action": multi_dec["exact"], "count_multi_action": multi_dec["count"],
                          "num_multi_action": multi_dec["num_captions"]})

    usable = [row for row in multi if row[2] is not None]
    requests = [(row[0], row[1]) for row in usable]
    rule_rows = [row for row in usable if len(row[3]) == len(row[1])]
    requests += [(row[0], row[3]) for row in rule_rows]
    predicted = predict_partitions(model0, eval_set, requests, device, progress)
    dp_pairs, uni_pairs, rule_pairs, skipped = [], [], [], 0
    for row, pred in zip(usable, predicted[:len(usable)]):
        if pred is None:
            skipped += 1
            continue
        dp_pairs.append((pred, row[2]))
        uni_pairs.append((M.uniform_bounds(int(row[2][-1]), len(row[1])), row[2]))
    for row, pred in zip(rule_rows, predicted[len(usable):]):
        if pred is not None:
            rule_pairs.append((pred, row[2]))
    segmentation = {
        "dp": M.mean_boundary_error(dp_pairs, fps),
        "uniform": M.mean_boundary_error(uni_pairs, fps),
        "num_captions": len(dp_pairs),
        "num_boundaries": int(sum(len(t) - 2 for _, t in dp_pairs)),
        "dp_rule_subtexts": M.mean_boundary_error(rule_pairs, fps),
        "num_captions_rule_subtexts": len(rule_pairs),
        "skipped_fewer_units_than_subtexts": skipped,
        "fps": fps,
    }
    return segmentation, decomposition


# ---------------------------------------------------------------------------------------- main
@dataclass
class _Protocol:
    """The random draws every variant is scored on (the same for all of them): TMR's batches of
    32 clips, Guo et al.'s one caption per clip, and the positives of the protocols."""

    small_batches: list
    one_caption: np.ndarray          # caption index per clip
    one_caption_clip: np.ndarray
    diversity_times: int
    positives_all: np.ndarray        # [captions, clips] bool: each caption's own clip
    positives_threshold: np.ndarray | None = None   # set from the original encoder's features

    @classmethod
    def draw(cls, eval_set: EvalSet, seed: int) -> "_Protocol":
        num_clips, num_captions = len(eval_set.clip_item), len(eval_set.captions)
        small_batches = M.sample_retrieval_batches(eval_set.clip_of, num_clips, SMALL_BATCH, seed)
        rng = np.random.default_rng(seed)   # Guo et al.'s items: one random caption per clip
        one_caption = np.array([rng.choice(np.flatnonzero(eval_set.clip_of == j)) for j in range(num_clips)])
        positives_all = np.zeros((num_captions, num_clips), dtype=bool)
        positives_all[np.arange(num_captions), eval_set.clip_of] = True
        return cls(small_batches, one_caption, eval_set.clip_of[one_caption],
                   300 if num_clips > 300 else min(100, num_clips), positives_all)


def _score_variant(model, variant: str, eval_set: EvalSet, protocol: _Protocol, batch_size: int, device,
                   progress: bool, seed: int) -> dict:
    """Retrieval, the T2M-style metrics and antonym swaps of one model, scored by cosines of its
    sentence and motion features. The first variant scored sets ``protocol.positives_threshold``
    (it must be the original encoder)."""
    raw = encode_captions(model, eval_set.captions, batch_size, device, progress, f"{variant}: captions", raw=True)
    with torch.no_grad():
        f_t = model.sentence_proj(raw.to(device)).float().cpu()       # = model.encode_text
    f_m = encode_clips(model, eval_set.dataset, eval_set.clip_item, batch_size, device, progress, f"{variant}: motions")
    if protocol.positives_threshold is None:  # the original encoder's sentence features decide paraphrases
        if variant != "original":
            raise AssertionError("the original variant must come first")
        protocol.positives_threshold = M.text_similarity_positives(raw, eval_set.clip_of, len(eval_set.clip_item),
                                                                   TMR_THRESHOLD)
    t, m = _normalised(f_t), _normalised(f_m)
    sim = t @ m.T
    retrieval = {
        "all": M.retrieval_metrics(sim, protocol.positives_all),
        "threshold": M.retrieval_metrics(sim, protocol.positives_threshold),
        "small_batches": M.batched_retrieval_metrics(sim, protocol.small_batches),
    }
    pairs_t, pairs_m = t[protocol.one_caption], m[protocol.one_caption_clip]
    rp = M.r_precision(pairs_t, pairs_m, top_k=3, batch_size=SMALL_BATCH, seed=seed)
    standard = {"R_precision_top1": float(rp[0]), "R_precision_top2": float(rp[1]), "R_precision_top3": float(rp[2]),
                "MM_Dist": M.mm_dist(pairs_t, pairs_m), "Diversity": M.diversity(m, protocol.diversity_times, seed)}
    known = dict(zip(eval_set.captions, t))

    def scorer(texts, refs):
        todo = list(dict.fromkeys(x for x in texts if x not in known))
        if todo:
            known.update(zip(todo, _normalised(encode_captions(model, todo, batch_size, device, progress,
                                                               f"{variant}: antonym swaps"))))
        feats = np.stack([known[x] for x in texts])
        return (feats * m[np.asarray(refs, dtype=np.int64)]).sum(axis=1)

    swaps = antonym_swap_accuracy(eval_set.captions, list(eval_set.clip_of), scorer)
    return {"retrieval": retrieval, "t2m_standard": standard, "antonym_swap_accuracy": swaps}


def _score_tmr(model, variant: str, tmr: TMRSet, batch_size: int, device, progress: bool, seed: int) -> dict:
    """TMR's four protocols (:func:`mate.metrics.tmr_retrieval_protocols`) for one model on
    ``tmr``'s items. The first variant scored (the original encoder) sets ``tmr.sent_emb``, the
    sentence embeddings of protocol (b), shared by every model."""
    raw = encode_captions(model, tmr.captions, batch_size, device, progress, f"{variant}: TMR captions", raw=True)
    with torch.no_grad():
        f_t = model.sentence_proj(raw.to(device)).float().cpu()
    f_m = encode_clips(model, tmr.dataset, list(range(len(tmr.keys))), batch_size, device, progress,
                       f"{variant}: TMR motions")
    if tmr.sent_emb is None:
        tmr.sent_emb = raw
    sim = _normalised(f_t) @ _normalised(f_m).T
    return M.tmr_retrieval_protocols(sim, tmr.sent_emb, tmr.keys, tmr.nsim, M.TMR_THRESHOLD, M.TMR_BATCH_SIZE, seed)


def _tmr_meta(tmr: TMRSet | None) -> dict | None:
    if tmr is None:
        return None
    return {"num_items": len(tmr.keys), "items": "the first caption of every motion (TMR)",
            "filter": "none on test splits, 2-10 s otherwise (TMR)", "threshold": M.TMR_THRESHOLD,
            "threshold_rule": "e_i . e_j > 2 * value - 1 on L2-normalised sentence embeddings",
            "sentence_embeddings": "the original text encoder's pooled feature (TMR: all-mpnet-base-v2)",
            "guo_batches": len(M.tmr_guo_batches(tmr.keys)), "nsim_file": tmr.nsim_file,
            "nsim_items": None if tmr.nsim is None else int(tmr.nsim.size), "nsim_ids_not_evaluated": tmr.nsim_missing,
            "max_len": tmr.max_len, "cropped_to_max_len": tmr.cropped}


def _meta(run_dir: Path, data: Path, split: str, eval_set: EvalSet, protocol: _Protocol, device, seed: int,
          batch_size: int, ground_truth: bool, timings: dict, started: float) -> dict:
    """``meta`` of the results: what was evaluated, how, and how long it took."""
    manifest = read_manifest(run_dir)
    ds = eval_set.dataset
    return {
        "run_dir": str(run_dir.resolve()),
        "data_root": str(Path(data).resolve()),
        "split": split,
        "dataset": ds.dataset_name,
        "layout": ds.label,
        "skipped": {"problems": dict(ds.problem_counts), "motions": {k: list(v) for k, v in ds.problem_ids.items()}},
        "num_captions": len(ds),
        "num_clips": len(eval_set.clip_item),
        "num_motions": len(ds.motion_ids),
        "encoder": manifest["encoder"],
        "preset": manifest.get("preset"),
        "device": str(device),
        "seed": seed,
        "batch_size": batch_size,
        "threshold": {"value": TMR_THRESHOLD, "rule": "(cos + 1) / 2 > value",
                      "features": "original text encoder, pooled sentence feature",
                      "mean_positives_per_caption": float(protocol.positives_threshold.sum(1).mean())},
        "small_batches": {"batch_size": int(len(protocol.small_batches[0][0])),
                          "num_batches": len(protocol.small_batches)},
        "t2m_standard": {"num_pairs": int(protocol.one_caption.size), "diversity_times": protocol.diversity_times,
                         "features": "L2-normalised"},
        "ground_truth": ground_truth,
        "timings_s": timings,
        "seconds": round(time.time() - started, 2),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def evaluate_run(run_dir: str | Path, split: str = "test", device: str | torch.device = "cpu", batch_size: int = 64,
                 seed: int = 0, data_root: str | Path | None = None, progress: bool = True,
                 write: bool = True, strict: bool = False) -> dict:
    """Evaluate the run in ``run_dir`` (module docstring) and, with ``write``, save
    ``RUN/eval/metrics.json`` and ``RUN/eval/report.md``. ``strict``: stop at the first bad
    dataset input instead of skipping it with one warning (:func:`build_eval_set`). Returns the
    metrics dict:

    ``retrieval``: {variant: {protocol: {"t2m": {...}, "m2t": {...}}}} for variants original,
    baseline, mate and protocols all, threshold, small_batches (R@k in percent, MedR);
    ``retrieval_tmr``: {variant: {"normal", "threshold", "nsim", "guo": {"t2m", "m2t"} or None,
    "guo_batches"}}: TMR's protocols (a)-(d) exactly, on TMR's items (module docstring);
    ``t2m_standard``: {variant: {R_precision_top1/2/3 (fractions), MM_Dist, Diversity}};
    ``antonym_swap_accuracy``: {variant: {overall, per_pair, counts, correct, mean_margin}};
    ``segmentation_boundary_error_s``: {dp, uniform, num_captions, ...} or None without ground truth;
    ``decomposition_accuracy``: {exact, count, num_captions, ...} or None without ground truth;
    ``meta``: run dir, split, sizes, settings, timings."""
    started = time.time()
    run_dir = check_run_dir(run_dir).root
    device = resolve_device(str(device))
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    data = resolve_data_root(run_dir, data_root)
    eval_set = build_eval_set(data, split, strict)
    ds = eval_set.dataset
    num_clips = len(eval_set.clip_item)
    log.info("evaluating %s on %s/%s: %d captions, %d clips", run_dir, data, split, len(ds), num_clips)

    models = {
        "original": lambda: load_stage_model(run_dir, 0, device, original_word_embeddings=True),
        "baseline": lambda: load_stage_model(run_dir, 0, device),
        "mate": lambda: load_stage_model(run_dir, 1, device),
    }
    protocol = _Protocol.draw(eval_set, seed)
    results: dict[str, Any] = {"retrieval": {}, "retrieval_tmr": {}, "t2m_standard": {}, "antonym_swap_accuracy": {},
                               "word_table": {}}
    original_rows = None
    timings: dict[str, float] = {}
    model0 = tmr = None
    for variant, make in models.items():   # the original first: its features define paraphrases
        t0 = time.time()
        model = make()
        scores = _score_variant(model, variant, eval_set, protocol, batch_size, device, progress, seed)
        for name, value in scores.items():
            results[name][variant] = value
        if variant == "original":
            tmr = build_tmr_set(data, split, model.config.max_len, strict)
        if tmr is not None:
            results["retrieval_tmr"][variant] = _score_tmr(model, variant, tmr, batch_size, device, progress, seed)
        rows = antonym_word_rows(model.text_encoder)
        original_rows = rows if original_rows is None else original_rows
        results["word_table"][variant] = word_table_summary(rows, original_rows)
        if variant == "baseline":
            model0 = model
        else:
            del model
        timings[variant] = round(time.time() - t0, 2)

    gt = load_ground_truth(data)
    t0 = time.time()
    if gt is not None:
        results["segmentation_boundary_error_s"], results["decomposition_accuracy"] = \
            segmentation_and_decomposition(model0, eval_set, gt, device, progress)
    else:
        results["segmentation_boundary_error_s"] = None
        results["decomposition_accuracy"] = None
    timings["segmentation"] = round(time.time() - t0, 2)
    del model0

    results["meta"] = _meta(run_dir, data, split, eval_set, protocol, device, seed, batch_size, gt is not None,
                            timings, started)
    results["meta"]["retrieval_tmr"] = _tmr_meta(tmr)
    if write:
        out = run_dir / "eval"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", results)
        write_report(results, out / "report.md")
    return results


# -------------------------------------------------------------------------------------- report
def _retrieval_report_lines(results: dict) -> list[str]:
    """The report's skipped inputs and its two retrieval sections: TMR's protocols exactly, then
    the protocols generalised to every caption."""
    meta = results["meta"]
    lines: list[str] = []
    if meta.get("skipped", {}).get("problems"):
        lines += [f"Skipped bad inputs of the split: {meta['skipped']['problems']} "
                  f"(motions: {meta['skipped']['motions']}).", ""]
    ks = [f"R@{k}" for k in M.RECALL_KS] + ["MedR"]
    tmr = results.get("retrieval_tmr") or {}
    tmr_meta = meta.get("retrieval_tmr")
    if tmr and tmr_meta:
        lines += ["## Retrieval, TMR's protocols exactly (R@k in %)", "",
                  f"TMR's items: the first caption of each of the {tmr_meta['num_items']} motions, no length filter "
                  f"on a test split, no crop ({tmr_meta['cropped_to_max_len']} clips longer than the motion encoder's "
                  f"{tmr_meta['max_len']} frames cut to their start). (b) positives: sentence embeddings with "
                  f"e_i . e_j > 2 * {tmr_meta['threshold']} - 1, from {tmr_meta['sentence_embeddings']}; (c) the "
                  f"`nsim` split ({tmr_meta['nsim_items'] if tmr_meta['nsim_file'] else 'no nsim file: not run'}); "
                  f"(d) {tmr_meta['guo_batches']} batches of 32.", ""]
        tmr_names = {"normal": "(a) all", "threshold": f"(b) threshold {tmr_meta['threshold']}", "nsim": "(c) dissimilar",
                     "guo": "(d) batches of 32"}
        for direction, title in (("t2m", "Text → motion"), ("m2t", "Motion → text")):
            rows = [[tmr_names[p], v] + [tmr[v][p][direction][k] for k in ks]
                    for p in tmr_names for v in tmr if tmr[v][p] is not None]
            lines += [f"### {title} (TMR)", ""] + _table(["protocol", "model"] + ks, rows)
    lines += ["## Retrieval over every caption (TMR's protocols generalised; R@k in %)", "",
              "Every caption of the split against every distinct clip (start-anchored 196-frame crops); "
              "batches: 32 distinct clips with one random caption each.", ""]
    names = {"all": "all captions", "threshold": f"threshold {meta['threshold']['value']}",
             "small_batches": f"batches of {meta['small_batches']['batch_size']}"}
    for direction, title in (("t2m", "Text → motion"), ("m2t", "Motion → text")):
        lines += [f"### {title}", ""]
        rows = [[names[p], v] + [results["retrieval"][v][p][direction][k] for k in ks]
                for p in PROTOCOLS for v in results["retrieval"]]
        lines += _table(["protocol", "model"] + ks, rows)
    return lines


def write_report(results: dict, path: str | Path) -> Path:
    """``results`` (from :func:`evaluate_run`) as Markdown tables at ``path``."""
    meta = results["meta"]
    lines = [f"# MATE evaluation: {meta['run_dir']}", "",
             f"Split `{meta['split']}` of `{meta['data_root']}` ({meta['dataset']}): {meta['num_captions']} captions, "
             f"{meta['num_clips']} clips. Encoder `{meta['encoder']}`, preset `{meta['preset']}`, device "
             f"`{meta['device']}`, seed {meta['seed']}; {meta['seconds']:.1f} s.", "",
             "Variants: **original** = baseline with the original encoder's word table; **baseline** = stage 0 "
             "(no L_word); **mate** = stage 1.", ""]
    lines += _retrieval_report_lines(results)
    lines += ["## Text-to-motion metrics (model as evaluator, normalised embeddings)", ""]
    cols = ["R_precision_top1", "R_precision_top2", "R_precision_top3", "MM_Dist", "Diversity"]
    lines += _table(["model", "R-prec top1", "top2", "top3", "MM-Dist", "Diversity"],
                    [[v] + [results["t2m_standard"][v][c] for c in cols] for v in results["t2m_standard"]])
    lines += ["## Antonym-swap accuracy (%; true caption must beat the swapped one)", ""]
    acc = results["antonym_swap_accuracy"]
    variants = list(acc)
    pairs = list(ANTONYM_GROUPS)
    rows = [[p, str(acc[variants[0]]["counts"][p])] + [acc[v]["per_pair"][p] for v in variants] for p in pairs]
    rows.append(["**overall**", str(acc[variants[0]]["counts"]["total"])] + [acc[v]["overall"] for v in variants])
    rows.append(["mean margin", ""] + [_fmt(acc[v]["mean_margin"], 4) for v in variants])
    lines += _table(["word pair", "tests"] + variants, rows)
    table = results.get("word_table")
    if table:
        lines += ["## Word-embedding table (antonym words)", ""]
        tv = list(table)
        rows = [[pair] + [_fmt(table[v]["antonym_cosine"][pair], 4) for v in tv] for pair in table[tv[0]]["antonym_cosine"]]
        rows.append(["mean relative change of the rows vs original"] + [_fmt(table[v]["mean_relative_change"], 4)
                                                                         for v in tv])
        lines += _table(["cos(WE(a), WE(b))"] + tv, rows)
    seg = results.get("segmentation_boundary_error_s")
    dec = results.get("decomposition_accuracy")
    lines += ["## Segmentation (mean absolute inner-boundary error, seconds)", ""]
    if seg is None:
        lines += ["No ground truth (`DATA/segments.json` is written only by the synthetic generator).", ""]
    else:
        lines += _table(["method", "captions", "error (s)"], [
            ["DP, ground-truth sub-texts (stage-0 encoders)", str(seg["num_captions"]), seg["dp"]],
            ["uniform split, ground-truth count", str(seg["num_captions"]), seg["uniform"]],
            ["DP, rule-based sub-texts (where the count matches)", str(seg["num_captions_rule_subtexts"]),
             seg["dp_rule_subtexts"]],
        ])
        lines += [f"{seg['num_boundaries']} inner boundaries; {seg['skipped_fewer_units_than_subtexts']} captions "
                  f"skipped (fewer 0.5 s units than sub-texts). Paper, against human labels: 0.73 s (HumanML3D), "
                  f"0.42 s (KIT).", ""]
    lines += ["## Text decomposition (rule-based `split_subtexts` vs ground truth, %)", ""]
    if dec is None:
        lines += ["No ground truth.", ""]
    else:
        lines += _table(["captions", "n", "exact", "right count"], [
            ["all", str(dec["num_captions"]), dec["exact"], dec["count"]],
            ["multi-action", str(dec["num_multi_action"]), dec["exact_multi_action"], dec["count_multi_action"]],
        ])
    return atomic_write_text(path, "\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mate.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a run directory made by `python -m mate.train --out RUN_DIR`")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--batch-size", type=int, default=64, help="encoding batch size (default: 64)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random batches and pair draws")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder (default: the run's, from RUN_DIR/run.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures (mate.plots)")
    p.add_argument("--strict-data", action="store_true",
                   help="stop at the first bad dataset input (a NaN/inf or empty motion, a missing file, a malformed "
                        "caption) instead of skipping it with one warning that names it (default: skip)")
    add_debug_flag(p)
    g = p.add_argument_group("plug-and-play protocol (mate.plug_and_play)")
    g.add_argument("--protocol", choices=("co-trained", "plug-and-play", "both"), default="plug-and-play",
                   help="plug-and-play (default): freeze each encoder and train fresh downstream probes on it (the "
                        "paper's protocol); co-trained: score the run's own training heads (biased towards the "
                        "table they were fitted with); both")
    g.add_argument("--probe-data", type=Path, default=None,
                   help="dataset the probes train and are scored on (default: for a run on generated data a "
                        "2,100-motion synthetic set made once in RUN/eval/probe_data; else the run's dataset)")
    g.add_argument("--seeds", type=int, default=5, help="probe seeds per encoder (default 5)")
    g.add_argument("--probe-epochs", type=int, default=ProbeConfig.epochs,
                   help=f"probe training epochs (default {ProbeConfig.epochs})")
    g.add_argument("--probes", default=",".join(PROBE_KINDS), help="pooled, tokens or both (default: both)")
    g.add_argument("--compare", action="append", default=[], metavar="NAME=PATH",
                   help="another frozen encoder: an exported encoder folder or a run directory (repeatable)")
    return p


def _probe_config(args) -> ProbeConfig:
    probes = tuple(p.strip() for p in args.probes.split(",") if p.strip())
    return ProbeConfig(seeds=tuple(range(args.seeds)), probes=probes, epochs=args.probe_epochs)


def _compare_paths(specs: Sequence[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"--compare {spec!r}: expected NAME=PATH")
        out[name.strip()] = path.strip()
    return out


def _print_co_trained(results: dict, out: Path) -> None:
    ret, tmr = results["retrieval"], results.get("retrieval_tmr") or {}
    for v in ret:
        a = ret[v]["all"]["t2m"]
        tmr_a = f"TMR (a) t2m R@1 {tmr[v]['normal']['t2m']['R@1']:.2f}   " if v in tmr else ""
        print(f"{v:9s} t2m(all captions) R@1 {a['R@1']:.2f} R@5 {a['R@5']:.2f} MedR {a['MedR']:.1f}   {tmr_a}"
              f"antonym swap {_fmt(results['antonym_swap_accuracy'][v]['overall'])}%")
    seg = results["segmentation_boundary_error_s"]
    if seg is not None:
        print(f"segmentation boundary error: DP {_fmt(seg['dp'], 3)} s, uniform {_fmt(seg['uniform'], 3)} s "
              f"({seg['num_captions']} captions)")
    print(f"wrote {out / 'metrics.json'} and {out / 'report.md'} in {results['meta']['seconds']:.1f} s")


def _print_plug_and_play(results: dict, out: Path) -> None:
    c = results["counts"]
    print(f"plug-and-play: {c['antonym_tests']} antonym swaps on {c['antonym_test_motions']} test motions, "
          f"{len(results['config']['seeds'])} seeds")
    for name, per_probe in results["encoders"].items():
        print(f"{name:9s} " + "   ".join(f"{p}: antonym {m['antonym_accuracy']['mean']:.1f}% "
                                         f"[{m['antonym_accuracy']['low']:.1f}, {m['antonym_accuracy']['high']:.1f}] "
                                         f"t2m R@1 {m['t2m_R@1']['mean']:.1f}"
                                         for p, m in per_probe.items() if "antonym_accuracy" in m))
    print(f"wrote {out / 'plug_and_play.json'} and {out / 'plug_and_play.md'} in {results['seconds']:.1f} s")


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m mate.evaluate``: returns the co-trained metrics (when run) with the
    plug-and-play results under ``"plug_and_play"`` (when run)."""
    args = build_parser().parse_args(argv)
    with user_errors(args.debug):    # a user's mistake: one "error:" line (mate.cli)
        return _run_command(args)


def _run_command(args) -> dict:
    from mate import plug_and_play

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    resolve_device(args.device)
    probe_config = _probe_config(args)
    compare = _compare_paths(args.compare)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    out = args.run_dir / "eval"
    results: dict = {}
    check_run_dir(args.run_dir)   # both stages: a run whose MATE stage has not finished is named as such
    if args.protocol in ("co-trained", "both"):
        results = evaluate_run(args.run_dir, args.split, args.device, args.batch_size, args.seed, args.data,
                               progress=not args.no_progress, strict=args.strict_data)
        _print_co_trained(results, out)
    if args.protocol in ("plug-and-play", "both"):
        results["plug_and_play"] = plug_and_play.evaluate_run(
            args.run_dir, args.probe_data or args.data, probe_config, split=args.split, extra=compare,
            progress=not args.no_progress, strict=args.strict_data)
        _print_plug_and_play(results["plug_and_play"], out)
    if not args.no_figures:
        from mate.plots import render_run_figures

        figures = render_run_figures(args.run_dir, device=args.device, data_dir=args.data)
        print(f"wrote {len(figures)} figures into {out}: " + ", ".join(f.name for f in figures))
    return results


if __name__ == "__main__":
    main()
