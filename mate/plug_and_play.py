"""The paper's plug-and-play protocol: frozen text encoders compared through fresh downstream models.

MATE is judged the way the paper judges it: the enhanced text encoder is frozen and a downstream
model is trained from scratch on it, against the same downstream model trained on the original
encoder. Scoring an encoder through the heads it was trained with favours whichever word table
those heads were fitted to; a fresh model does not.

For every frozen encoder (the original; the run's stage-0 table; MATE; any exported encoder or
run directory named by the user) and every seed, the same retrieval model is trained on the
dataset's training split from an identical initialisation and identical batch order, then scored
on the test split. The motion side is a fresh motion encoder (an MLP over a fixed summary of the
clip's features), the same for every text encoder;
the text side is one of two probes, how text-to-motion models read text:

* ``pooled``: the encoder's pooled sentence feature -> MLP (MoMask, MDM, T2M-GPT);
* ``tokens``: one transformer layer over the encoder's token features -> masked mean (MMM, TMR).

Scores (test split): antonym-swap accuracy (the true caption must score above the caption with
one antonym swapped; overall, per pair, counts, mean margin), a synonym-swap control (quickly <->
rapidly, ...: the score should barely move), and retrieval R@1/5/10/MedR both ways over all test
clips and in batches of 32. Each is a mean +- std over seeds with a 95 % interval from a bootstrap
that resamples test *motions*, and a paired difference against the original encoder (same seeds,
same items). The text features of each encoder are computed once and shared by its seeds and
probes. See ``docs/evaluation.md``.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mate import metrics as M
from mate.text.antonyms import ANTONYM_WORD_PAIRS, antonym_swaps, synonym_swaps, word_embedding_vectors

__all__ = ["ProbeConfig", "ProbeSplit", "load_split", "encode_texts", "MotionProbe", "PooledTextProbe",
           "TokenTextProbe", "train_probe", "score_probe", "compare_encoders", "PROBE_KINDS", "antonym_pair_cosines",
           "probe_data", "encoders_of_run", "evaluate_run", "report_lines"]

log = logging.getLogger("mate.plug_and_play")

PROBE_KINDS = ("pooled", "tokens")
#: Below these counts the test set is too small to decide between encoders (one standard error of
#: an accuracy near 75 % is about 1.4 points at 1,000 tests).
MIN_SWAP_TESTS, MIN_TEST_MOTIONS = 1000, 300
#: The probe set of a run trained on generated data: a 2,100-motion synthetic set (seed 1), whose
#: test split has 315 motions and about 3,000 antonym swaps (the run's own 200-motion set has ~30).
PROBE_SET_MOTIONS, PROBE_SET_SEED = 2100, 1


@dataclass(frozen=True)
class ProbeConfig:
    """The downstream model and its training, the same for every encoder."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    probes: tuple[str, ...] = PROBE_KINDS
    dim: int = 256                # the joint space
    hidden: int = 256
    token_hidden: int = 128       # the width of the token probe's transformer layer
    epochs: int = 30              # over the training clips, one caption of each per epoch
    batch_size: int = 128         # distinct clips per batch
    lr: float = 1e-3
    weight_decay: float = 0.01
    tau: float = 0.07
    time_chunks: int = 4          # the motion descriptor: mean features of this many time chunks, + std
    text_batch: int = 256         # captions per frozen-encoder call
    bootstrap: int = 1000
    retrieval_batch: int = 32

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        unknown = [p for p in self.probes if p not in PROBE_KINDS]
        if unknown or not self.probes:
            raise ValueError(f"probes must be a non-empty subset of {PROBE_KINDS}, got {self.probes}")
        for name in ("dim", "hidden", "token_hidden", "epochs", "batch_size", "time_chunks", "text_batch", "bootstrap",
                     "retrieval_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "tau"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")


# ----------------------------------------------------------------------------------- the data
@dataclass
class ProbeSplit:
    """One split for the probes: captions [N]; ``clip_of`` int64 [N]; per distinct clip its
    ``motion_id`` and its descriptor ``motions`` [C, F * (chunks + 1)] float32
    (:func:`motion_descriptor` of the normalised features)."""

    captions: list[str]
    clip_of: np.ndarray
    motion_ids: list[str]
    motions: torch.Tensor

    @property
    def motion_of_caption(self) -> np.ndarray:
        return np.asarray(self.motion_ids, dtype=object)[self.clip_of]


def motion_descriptor(motion: torch.Tensor, chunks: int = 4) -> torch.Tensor:
    """A fixed summary of a clip [T, F] (normalised features) -> [F * (chunks + 1)]: the mean of
    each of ``chunks`` equal spans of time (what moved, which way, in which order) and the
    standard deviation over the clip (how much, how fast). The motion probe learns on top of it:
    cheap, and the same for every text encoder."""
    spans = torch.tensor_split(motion, min(chunks, motion.shape[0]))
    means = [span.mean(0) for span in spans] + [spans[-1].mean(0)] * (chunks - len(spans))
    return torch.cat(means + [motion.std(0, unbiased=False)])


def load_split(data_root: str | Path, split: str, chunks: int = 4, strict: bool = False) -> ProbeSplit:
    """The captions and distinct clips of ``split`` (windows cropped deterministically from the
    start, as evaluation does), each clip summarised by :func:`motion_descriptor`. Bad inputs
    (NaN/inf or empty motions, missing files, malformed captions) are skipped with one warning
    naming them (``strict=True``: the first one raises)."""
    from mate.data.dataset import MotionTextDataset, distinct_clips

    dataset = MotionTextDataset(data_root, split, strict=strict, crop="start")
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of {data_root} has no usable caption")
    clip_of, first = distinct_clips(dataset.records)
    motions = torch.stack([motion_descriptor(dataset[i]["motion"], chunks) for i in first])
    return ProbeSplit([r.caption.text for r in dataset.records], clip_of,
                      [dataset.records[i].motion_id for i in first], motions)


@torch.no_grad()
def encode_texts(encoder, texts: Sequence[str], batch: int = 256, tokens: bool = True) -> dict[str, torch.Tensor]:
    """The frozen encoder's features of ``texts``: ``pooled`` [N, E] float32 and, with
    ``tokens``, ``tokens`` [N, L, W] float32 and ``mask`` [N, L] bool (L: the longest text)."""
    encoder.eval()
    pooled, toks, masks = [], [], []
    for s in range(0, len(texts), batch):
        ids = encoder.tokenize(list(texts[s:s + batch]))
        if tokens:
            p, t, m = encoder.sentence_and_token_features(ids["input_ids"], ids["attention_mask"])
            toks.append(t.float())
            masks.append(m)
        else:
            p = encoder(ids["input_ids"], ids["attention_mask"])
        pooled.append(p.float())
    out = {"pooled": torch.cat(pooled)}
    if tokens:
        width = max(t.shape[1] for t in toks)
        out["tokens"] = torch.cat([F.pad(t, (0, 0, 0, width - t.shape[1])) for t in toks])
        out["mask"] = torch.cat([F.pad(m, (0, width - m.shape[1])) for m in masks])
    return out


def antonym_pair_cosines(encoder) -> dict[str, float]:
    """cos(WE(a), WE(b)) of the encoder's word table for every antonym pair ("a/b"; multi-token
    words: the mean of their rows), and their ``mean``: the quantity of the paper's Fig. 5, which
    MATE should lower."""
    words = sorted({w for pair in ANTONYM_WORD_PAIRS for w in pair})
    rows = dict(zip(words, word_embedding_vectors(encoder, words)))
    out = {f"{a}/{b}": float(rows[a] @ rows[b]) for a, b in ANTONYM_WORD_PAIRS}
    out["mean"] = float(np.mean(list(out.values())))
    return out


# ---------------------------------------------------------------------------------- the probes
def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class MotionProbe(nn.Module):
    """Motion descriptors [B, F * (chunks + 1)] (:func:`motion_descriptor`) -> [B, dim]: an MLP.
    The same for every text encoder."""

    def __init__(self, width: int, hidden: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        return self.net(descriptors)


class PooledTextProbe(nn.Module):
    """Pooled sentence feature [B, E] -> [B, dim] (how MoMask, MDM and T2M-GPT read text)."""

    def __init__(self, width: int, hidden: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, pooled: torch.Tensor, tokens=None, mask=None) -> torch.Tensor:
        return self.net(pooled)


class TokenTextProbe(nn.Module):
    """Token features [B, L, W] with mask [B, L] -> [B, dim]: one transformer layer, then the
    masked mean (how MMM and TMR read text)."""

    def __init__(self, width: int, hidden: int, dim: int):
        super().__init__()
        self.inp = nn.Linear(width, hidden)
        self.layer = nn.TransformerEncoderLayer(hidden, nhead=4, dim_feedforward=2 * hidden, dropout=0.1,
                                                batch_first=True, norm_first=True)
        self.out = nn.Linear(hidden, dim)

    def forward(self, pooled, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.layer(self.inp(tokens), src_key_padding_mask=~mask)
        return self.out(_masked_mean(h, mask))


def _text_probe(kind: str, feats: dict, config: ProbeConfig) -> nn.Module:
    if kind == "pooled":
        return PooledTextProbe(feats["pooled"].shape[1], config.hidden, config.dim)
    return TokenTextProbe(feats["tokens"].shape[2], config.token_hidden, config.dim)


def _text_inputs(feats: dict, rows) -> tuple:
    """(pooled, tokens, mask) of ``rows``; the tokens cut to the longest text among them (the
    padding is masked out anyway: cutting it only saves time)."""
    if "tokens" not in feats:
        return feats["pooled"][rows], None, None
    mask = feats["mask"][rows]
    width = max(1, int(mask.sum(1).max()))
    return feats["pooled"][rows], feats["tokens"][rows][:, :width], mask[:, :width]


def train_probe(kind: str, feats: dict, train: ProbeSplit, config: ProbeConfig, seed: int) -> tuple[nn.Module, nn.Module]:
    """Train (text probe, motion probe) from scratch on ``train`` with the frozen text features
    ``feats`` (rows = ``train.captions``). The initialisation and the batches depend on ``seed``
    alone: every encoder of the same width gets the same starting weights and the same batches.
    Loss: symmetric InfoNCE over batches of distinct clips (one random caption each)."""
    torch.manual_seed(seed)
    motion_probe = MotionProbe(train.motions.shape[-1], config.hidden, config.dim)
    text_probe = _text_probe(kind, feats, config)
    params = list(motion_probe.parameters()) + list(text_probe.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(seed)
    captions_of = [np.flatnonzero(train.clip_of == c) for c in range(len(train.motion_ids))]
    motion_probe.train()
    text_probe.train()
    for _ in range(config.epochs):
        order = rng.permutation(len(captions_of))
        for s in range(0, len(order) - 1, config.batch_size):   # a last batch of one clip has no negative
            clips = order[s:s + config.batch_size]
            if clips.size < 2:
                continue
            rows = np.array([rng.choice(captions_of[c]) for c in clips])
            t = text_probe(*_text_inputs(feats, torch.from_numpy(rows)))
            m = motion_probe(train.motions[clips])
            logits = F.normalize(t, dim=-1) @ F.normalize(m, dim=-1).T / config.tau
            target = torch.arange(clips.size)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return text_probe.eval(), motion_probe.eval()


# ----------------------------------------------------------------------------------- the tests
@dataclass
class TestTexts:
    """Every text the test split is scored on: the captions, then each antonym-swapped and each
    synonym-swapped caption. ``antonym`` / ``synonym``: (caption row, swapped row, pair name) per
    test."""

    texts: list[str]
    antonym: list[tuple[int, int, str]] = field(default_factory=list)
    synonym: list[tuple[int, int, str]] = field(default_factory=list)

    @classmethod
    def build(cls, captions: Sequence[str]) -> "TestTexts":
        out = cls(list(captions))
        for kind, swaps_of in (("antonym", antonym_swaps), ("synonym", synonym_swaps)):
            for row, caption in enumerate(captions):
                for swap in swaps_of(caption):
                    getattr(out, kind).append((row, len(out.texts), swap.pair))
                    out.texts.append(swap.swapped)
        return out


@torch.no_grad()
def score_probe(text_probe: nn.Module, motion_probe: nn.Module, feats: dict, test: ProbeSplit,
                tests: TestTexts, config: ProbeConfig, seed: int) -> dict[str, np.ndarray | dict]:
    """Per-item outcomes of one trained probe on the test split: ``t2m_rank`` [N captions] and
    ``m2t_rank`` [C clips] (0-based rank of the positive among all clips / captions),
    ``antonym_margin`` / ``synonym_margin`` [tests] (cos(true caption, its clip) - cos(swapped,
    clip)), and ``batched`` (retrieval in random batches of ``config.retrieval_batch`` clips)."""
    t = F.normalize(text_probe(*_text_inputs(feats, slice(None))), dim=-1).double().numpy()
    m = F.normalize(motion_probe(test.motions), dim=-1).double().numpy()
    n = len(test.captions)
    sim = t[:n] @ m.T
    positives = np.zeros(sim.shape, dtype=bool)
    positives[np.arange(n), test.clip_of] = True
    out: dict[str, Any] = {"t2m_rank": M.ranks_of_positives(sim, positives),
                           "m2t_rank": M.ranks_of_positives(sim.T, positives.T)}
    for kind in ("antonym", "synonym"):
        rows = getattr(tests, kind)
        true = np.array([r for r, _, _ in rows], dtype=np.int64)
        swapped = np.array([s for _, s, _ in rows], dtype=np.int64)
        clip = test.clip_of[true]
        out[f"{kind}_margin"] = (t[true] * m[clip]).sum(1) - (t[swapped] * m[clip]).sum(1)
    batches = M.sample_retrieval_batches(test.clip_of, len(test.motion_ids), config.retrieval_batch, seed)
    out["batched"] = M.batched_retrieval_metrics(sim, batches)
    return out


def _interval(per_seed: list[np.ndarray], groups: np.ndarray, config: ProbeConfig, scale: float = 100.0) -> dict:
    """mean +- std over seeds of the per-seed means, and the bootstrap interval (over ``groups``)
    of the per-item values averaged over seeds."""
    stacked = np.stack(per_seed).astype(np.float64)          # [seeds, items]
    seed_means = stacked.mean(axis=1) * scale
    mean, low, high = M.bootstrap_mean_interval(stacked.mean(axis=0), groups, config.bootstrap, seed=0)
    return {"mean": mean * scale, "std": float(seed_means.std(ddof=1)) if len(per_seed) > 1 else 0.0,
            "low": low * scale, "high": high * scale}


def _summarise(outcomes: list[dict], test: ProbeSplit, tests: TestTexts, config: ProbeConfig) -> dict:
    """Metrics of one (encoder, probe) over its seeds (module docstring)."""
    caption_motion = test.motion_of_caption
    clip_motion = np.asarray(test.motion_ids, dtype=object)
    out: dict[str, Any] = {}
    for kind in ("antonym", "synonym"):
        rows = getattr(tests, kind)
        if not rows:
            continue
        groups = caption_motion[np.array([r for r, _, _ in rows])]
        margins = [o[f"{kind}_margin"] for o in outcomes]
        out[f"{kind}_accuracy"] = _interval([mg > 0 for mg in margins], groups, config)
        out[f"{kind}_margin"] = _interval(margins, groups, config, scale=1.0)
        out[f"{kind}_abs_margin"] = _interval([np.abs(mg) for mg in margins], groups, config, scale=1.0)
        pairs = np.array([p for _, _, p in rows], dtype=object)
        out[f"{kind}_per_pair"] = {p: {"accuracy": float(np.mean([(mg[pairs == p] > 0).mean() for mg in margins]) * 100),
                                       "tests": int((pairs == p).sum())} for p in dict.fromkeys(pairs)}
    for direction, key, groups in (("t2m", "t2m_rank", caption_motion), ("m2t", "m2t_rank", clip_motion)):
        for k in (1, 5, 10):
            out[f"{direction}_R@{k}"] = _interval([o[key] < k for o in outcomes], groups, config)
        medr = [float(np.median(o[key]) + 1) for o in outcomes]
        out[f"{direction}_MedR"] = {"mean": float(np.mean(medr)), "std": float(np.std(medr, ddof=1)) if len(medr) > 1 else 0.0}
        for k in (1, 5):
            vals = [o["batched"][direction][f"R@{k}"] for o in outcomes]
            out[f"{direction}_R@{k}_batch{config.retrieval_batch}"] = {
                "mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}
    return out


def _paired(outcomes: list[dict], reference: list[dict], test: ProbeSplit, tests: TestTexts,
            config: ProbeConfig) -> dict:
    """Differences against the reference encoder's outcomes on the same seeds and items, with a
    bootstrap interval over test motions (percentage points for accuracies and recalls)."""
    caption_motion = test.motion_of_caption
    out = {}
    rows = tests.antonym
    if rows:
        groups = caption_motion[np.array([r for r, _, _ in rows])]
        diff = [(a["antonym_margin"] > 0).astype(float) - (b["antonym_margin"] > 0) for a, b in zip(outcomes, reference)]
        out["antonym_accuracy"] = _interval(diff, groups, config)
        diff = [a["antonym_margin"] - b["antonym_margin"] for a, b in zip(outcomes, reference)]
        out["antonym_margin"] = _interval(diff, groups, config, scale=1.0)
    for k in (1, 5):
        diff = [(a["t2m_rank"] < k).astype(float) - (b["t2m_rank"] < k) for a, b in zip(outcomes, reference)]
        out[f"t2m_R@{k}"] = _interval(diff, caption_motion, config)
    return out


# -------------------------------------------------------------------------------- the comparison
def compare_encoders(encoders: dict[str, Callable[[], Any]], data_root: str | Path, config: ProbeConfig | None = None,
                     split: str = "test", reference: str | None = None, progress: bool = True,
                     strict: bool = False) -> dict:
    """Train and score the probes of every encoder (module docstring).

    encoders: name -> a function returning the frozen :class:`mate.text.encoder_base.TextEncoder`
    (built when its turn comes, dropped after its features are computed). data_root: the dataset
    the downstream models train (``train``) and are scored on (``split``: ``test``, or ``val`` to
    tune). reference: the encoder the paired differences are taken against (default: the first).
    Returns a JSON-ready dict: ``counts``, ``config``, ``encoders`` {name: {probe: metrics}},
    ``paired`` {name: {probe: differences vs reference}}, ``word_table`` {name:
    :func:`antonym_pair_cosines`}, ``seconds``. ``strict``: see :func:`load_split`."""
    from tqdm.auto import tqdm

    config = config or ProbeConfig()
    if not encoders:
        raise ValueError("no encoder to compare")
    reference = reference or next(iter(encoders))
    if reference not in encoders:
        raise ValueError(f"reference {reference!r} is not one of the encoders {list(encoders)}")
    started = time.time()
    train = load_split(data_root, "train", config.time_chunks, strict)
    test = load_split(data_root, split, config.time_chunks, strict)
    tests = TestTexts.build(test.captions)
    counts = {"train_captions": len(train.captions), "train_clips": len(train.motion_ids),
              "test_captions": len(test.captions), "test_clips": len(test.motion_ids),
              "test_motions": len(set(test.motion_ids)), "antonym_tests": len(tests.antonym),
              "antonym_test_motions": len({test.motion_of_caption[r] for r, _, _ in tests.antonym}),
              "synonym_tests": len(tests.synonym), "split": split}
    if counts["antonym_tests"] < MIN_SWAP_TESTS or counts["test_motions"] < MIN_TEST_MOTIONS:
        log.warning("plug-and-play: %d antonym tests on %d test motions: fewer than %d tests or %d motions, too "
                    "few to decide between encoders (generate a larger synthetic set for the probes)",
                    counts["antonym_tests"], counts["test_motions"], MIN_SWAP_TESTS, MIN_TEST_MOTIONS)
    outcomes: dict[str, dict[str, list]] = {}
    word_tables: dict[str, dict[str, float]] = {}
    bar = tqdm(total=len(encoders) * len(config.probes) * len(config.seeds), desc="plug-and-play", leave=False,
               dynamic_ncols=True, disable=not progress)
    for name, make in encoders.items():
        encoder = make()
        word_tables[name] = antonym_pair_cosines(encoder)
        tokens = "tokens" in config.probes
        train_feats = encode_texts(encoder, train.captions, config.text_batch, tokens)
        test_feats = encode_texts(encoder, tests.texts, config.text_batch, tokens)
        del encoder
        outcomes[name] = {}
        for probe in config.probes:
            outcomes[name][probe] = []
            for seed in config.seeds:
                text_probe, motion_probe = train_probe(probe, train_feats, train, config, seed)
                outcomes[name][probe].append(score_probe(text_probe, motion_probe, test_feats, test, tests, config, seed))
                bar.update(1)
    bar.close()
    results = {"counts": counts, "config": {**asdict(config), "seeds": list(config.seeds), "probes": list(config.probes)},
               "reference": reference, "encoders": {}, "paired": {}, "word_table": word_tables}
    for name, per_probe in outcomes.items():
        results["encoders"][name] = {p: _summarise(o, test, tests, config) for p, o in per_probe.items()}
        if name != reference:
            results["paired"][name] = {p: _paired(o, outcomes[reference][p], test, tests, config)
                                       for p, o in per_probe.items()}
    results["seconds"] = round(time.time() - started, 1)
    return results


def _cell(m: dict, digits: int = 1) -> str:
    if "low" in m:
        return f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"
    return f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}"


def _diff_cell(m: dict, digits: int = 1) -> str:
    return f"{m['mean']:+.{digits}f} [{m['low']:+.{digits}f}, {m['high']:+.{digits}f}]"


def report_lines(results: dict) -> list[str]:
    """``results`` (from :func:`compare_encoders`) as Markdown."""
    c, cfg = results["counts"], results["config"]
    lines = ["## Plug-and-play: frozen encoders through fresh downstream models", "",
             f"Probes trained on {c['train_captions']} captions ({c['train_clips']} clips), scored on the "
             f"`{c['split']}` split: {c['test_captions']} captions, {c['test_clips']} clips, {c['test_motions']} "
             f"motions; {c['antonym_tests']} antonym swaps from {c['antonym_test_motions']} motions, "
             f"{c['synonym_tests']} synonym swaps. {len(cfg['seeds'])} seeds per encoder and probe, identical "
             f"initialisation and batches; mean ± std over seeds [95 % interval, bootstrap over test motions]; "
             f"{results['seconds']:.0f} s.", ""]
    if c["antonym_tests"] < MIN_SWAP_TESTS or c["test_motions"] < MIN_TEST_MOTIONS:
        lines += [f"**Too small to decide**: fewer than {MIN_SWAP_TESTS} antonym tests or {MIN_TEST_MOTIONS} test "
                  "motions.", ""]
    for probe in cfg["probes"]:
        lines += [f"### Probe `{probe}`", "",
                  "| encoder | antonym acc. (%) | antonym margin | synonym acc. (%) | synonym abs. margin | "
                  "t2m R@1 | t2m R@5 | m2t R@1 | t2m R@1 (B=32) |", "|---|---|---|---|---|---|---|---|---|"]
        for name, per_probe in results["encoders"].items():
            m = per_probe[probe]
            cells = [_cell(m[k], d) if k in m else "–" for k, d in
                     (("antonym_accuracy", 1), ("antonym_margin", 4), ("synonym_accuracy", 1),
                      ("synonym_abs_margin", 4), ("t2m_R@1", 1), ("t2m_R@5", 1), ("m2t_R@1", 1),
                      (f"t2m_R@1_batch{cfg['retrieval_batch']}", 1))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        if results["paired"]:
            lines += [f"Paired differences against `{results['reference']}` (same seeds, same items):", "",
                      "| encoder | antonym acc. (points) | antonym margin | t2m R@1 (points) | t2m R@5 (points) |",
                      "|---|---|---|---|---|"]
            for name, per_probe in results["paired"].items():
                d = per_probe[probe]
                cells = [_diff_cell(d[k], dg) if k in d else "–" for k, dg in
                         (("antonym_accuracy", 1), ("antonym_margin", 4), ("t2m_R@1", 1), ("t2m_R@5", 1))]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"Antonym-swap accuracy per pair (%, mean over seeds; probe `{probe}`):", ""]
        pairs = list(next(iter(results["encoders"].values()))[probe]["antonym_per_pair"])
        lines += ["| encoder | " + " | ".join(pairs) + " |", "|---" * (len(pairs) + 1) + "|"]
        for name, per_probe in results["encoders"].items():
            per_pair = per_probe[probe]["antonym_per_pair"]
            lines.append(f"| {name} | " + " | ".join(f"{per_pair[p]['accuracy']:.1f}" for p in pairs) + " |")
        tests = next(iter(results["encoders"].values()))[probe]["antonym_per_pair"]
        lines += ["| (tests) | " + " | ".join(str(tests[p]["tests"]) for p in pairs) + " |", ""]
    if results.get("word_table"):
        pairs = [k for k in next(iter(results["word_table"].values())) if k != "mean"]
        lines += ["### The word table: cos(WE(a), WE(b)) of each antonym pair (the paper's Fig. 5; lower = more "
                  "distinct)", "", "| encoder | " + " | ".join(pairs) + " | mean |", "|---" * (len(pairs) + 2) + "|"]
        for name, cosines in results["word_table"].items():
            lines.append(f"| {name} | " + " | ".join(f"{cosines[p]:.3f}" for p in pairs + ["mean"]) + " |")
        lines.append("")
    return lines


# ------------------------------------------------------------------------------------ a run
def encoders_of_run(run_dir: str | Path, extra: dict[str, str | Path] | None = None) -> dict[str, Callable]:
    """The frozen encoders to compare for a run: ``original`` (the encoder it started from),
    ``baseline`` (its stage-0 word table: sentence-level fine-tuning only), ``mate`` (stage 1),
    then ``extra`` {name: an exported encoder folder, or another run directory (its stage 1)}."""
    from mate import rundir
    from mate.text.encoders import build_text_encoder, load_text_encoder

    spec = rundir.encoder_spec(run_dir)
    out = {"original": lambda: build_text_encoder(spec)}
    for stage in (0, 1):
        if rundir.RunDir(run_dir).stage_model(rundir.STAGES[stage][0]).is_file():
            out[rundir.STAGES[stage][1]] = lambda s=stage: rundir.load_stage_model(run_dir, s).text_encoder
    for name, path in (extra or {}).items():
        if name in out:
            raise ValueError(f"--compare {name}={path}: the name {name!r} is taken; choose another")
        path = Path(path)
        if (path / rundir.MANIFEST_NAME).is_file():
            out[name] = lambda p=path: rundir.load_stage_model(p, 1).text_encoder
        elif path.is_dir():
            out[name] = lambda p=path: load_text_encoder(p)
        else:
            raise ValueError(f"--compare {name}={path}: not an exported encoder folder or a run directory")
    return out


def probe_data(run_dir: str | Path, override: str | Path | None = None, progress: bool | None = None) -> Path:
    """The dataset the probes of a run train and are scored on: ``override`` when given; for a run
    trained on a generated synthetic set, a larger synthetic set (:data:`PROBE_SET_MOTIONS`
    motions, seed :data:`PROBE_SET_SEED`) generated once into ``RUN/eval/probe_data`` (seconds);
    else the run's own dataset (e.g. HumanML3D, whose test split is large enough)."""
    from mate import rundir

    if override is not None:
        return rundir.data_root(run_dir, override)
    if rundir.read_manifest(run_dir).get("synthetic_data"):
        from mate.train.pipeline import synthetic_dataset

        return synthetic_dataset(rundir.RunDir(Path(run_dir)).eval / "probe_data", PROBE_SET_MOTIONS, PROBE_SET_SEED,
                                 progress=None if progress else False)
    return rundir.data_root(run_dir)


def evaluate_run(run_dir: str | Path, data_root: str | Path | None = None, config: ProbeConfig | None = None,
                 split: str = "test", extra: dict[str, str | Path] | None = None, progress: bool = True,
                 write: bool = True, strict: bool = False) -> dict:
    """:func:`compare_encoders` for a run's encoders (:func:`encoders_of_run`) on ``data_root``
    (default: :func:`probe_data`); with ``write``, ``RUN/eval/plug_and_play.json`` and ``.md``.
    ``strict``: see :func:`load_split`."""
    from mate import rundir
    from mate.atomic import atomic_write_json, atomic_write_text

    run = rundir.check_run_dir(run_dir, stages=(0,))
    data = probe_data(run.root, data_root, progress)
    results = compare_encoders(encoders_of_run(run.root, extra), data, config, split=split, progress=progress,
                               strict=strict)
    results["run_dir"], results["data_root"] = str(run.root.resolve()), str(Path(data).resolve())
    if write:
        atomic_write_json(run.eval / "plug_and_play.json", results)
        atomic_write_text(run.eval / "plug_and_play.md", "\n".join(
            [f"# MATE plug-and-play evaluation: {results['run_dir']}", "", f"Data: `{results['data_root']}`.", ""]
            + report_lines(results)))
    return results
