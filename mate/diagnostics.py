"""What a trained MATE model's word localisation learned: the shortcut test.

L_self asks the localised feature f^{m_i}_{w_i} (word w_i querying its own motion) to classify as
w_i among the prototypes. A model can meet that by encoding *which word asked* rather than *what
the motion did* (the query picks frames through the attention; values carry positions; the prior
is weak). Such a model also classifies a *cross* query f^{m_j}_{w_i} -- word w_i on a motion j
whose caption does not contain it -- as w_i, though nothing in motion j shows w_i. This module
measures both on a run's captions:

* ``own_accuracy``: argmax_k cos(f^{m_i}_{w_i}, P_k) == w_i (what L_self trains);
* ``cross_accuracy``: argmax_k cos(f^{m_j}_{w_i}, P_k) == w_i over the L_cross pairs (i, j) whose
  caption j lacks w_i's lemma: near 0 when the feature reflects the motion; near
  ``own_accuracy`` when it reflects the query (the shortcut);
* ``cross_motion_cos``: mean cos(f^{m_i}_{w_i}, f^{m_j}_{w_i}) over the same pairs (the same word
  on two motions; L_cross pushes its absolute value towards 0), and ``cross_loss``, L_cross.

The paper's Fig. 7 picture (:func:`word_query_features`, drawn by
:func:`mate.plots.plot_word_query_features`): each antonym word queries every test motion (no
prior); features that reflect the motion separate the motions whose caption has the word from
those whose caption does not; features that reflect the query cluster by word whatever the motion.

``python -m mate.diagnostics RUN`` prints the numbers and writes ``RUN/eval/word_queries.json``
and ``RUN/eval/word_queries.png``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from mate.cli import add_debug_flag, user_errors

__all__ = ["word_query_diagnostics", "word_query_features", "main"]

#: The words of the Fig. 7 picture: three antonym pairs.
PICTURE_WORDS = ("left", "right", "clockwise", "counterclockwise", "forward", "backward")


def _run_strict_data(run_dir: str | Path) -> bool:
    """The run's ``--strict-data``: the diagnostics read the training split's items as training did
    (its segments are keyed by the captions it kept; bad motions are skipped unless it was set)."""
    from mate import rundir

    return bool(rundir.read_manifest(Path(run_dir)).get("config", {}).get("strict_data", False))


@torch.no_grad()
def word_query_diagnostics(run_dir: str | Path, split: str = "train", max_batches: int = 20, batch_size: int = 32,
                           seed: int = 0) -> dict:
    """The shortcut test (module docstring) of RUN's stage-1 model on ``split`` (``train``: the
    run's DP segments; another split: each caption whole). Returns floats in [0, 1] (accuracies)
    or [-1, 1] (cosines), the counts, and chance = 1 / number of prototypes."""
    from mate import rundir
    from mate.data.dataset import MotionTextDataset
    from mate.model.losses import cross_disentanglement_loss, lemma_exclusion
    from mate.text.vocab import Vocabulary
    from mate.train.batches import Collator, make_loader
    from mate.train.pipeline import whole_caption_segments, word_samples

    model = rundir.load_stage_model(run_dir, 1)
    if not model.config.use_self:
        raise ValueError(f"{run_dir}: stage 1 was trained without L_self; the shortcut test reads its prototypes")
    run = rundir.RunDir(Path(run_dir))
    dataset = MotionTextDataset(rundir.data_root(run.root), split, strict=_run_strict_data(run.root), crop="start")
    vocab = Vocabulary.load(run.vocab)
    if split == "train":
        segments = json.loads(run.segments.read_text())
    else:
        segments = whole_caption_segments(dataset.records)
    sampling = rundir.read_manifest(run.root).get("config", {}).get("word_sampling", "paper")
    words = word_samples(dataset.records, segments, vocab, sampling)
    usable = [i for i, r in enumerate(dataset.records) if words.get(r.caption.key)]
    if not usable:
        raise ValueError(f"split {split!r} of {rundir.data_root(run.root)} has no caption with a vocabulary word")
    from torch.utils.data import Subset

    loader = make_loader(Subset(dataset, usable), Collator(model.text_encoder, words, seed=seed), batch_size,
                         seed=seed, drop_last=False)
    # The diagnostic reads every negative the paper's rule picks, then keeps those whose caption
    # lacks w_i: that is where a cross query has nothing of w_i to find.
    model.config.cross_negatives = "literal"
    own_hits = own_n = cross_hits = cross_n = 0
    cos_sum, losses = 0.0, []
    prototypes = F.normalize(model.prototypes.float(), dim=-1)
    for b, batch in enumerate(loader):
        if b >= max_batches:
            break
        features = model(batch)
        w = features.words
        if w.other_motion is None:
            continue
        target = w.target
        own = (F.normalize(w.f_mw, dim=-1) @ prototypes.T).argmax(-1)
        own_hits += int((own == target).sum())
        own_n += target.numel()
        losses.append(float(cross_disentanglement_loss(w.f_mw, w.other_word, w.other_motion)))
        excluded = lemma_exclusion(target, batch["caption_lemmas"])
        keep = ~excluded.gather(1, w.negatives)                                    # [B, n]
        cross_pred = (F.normalize(w.other_motion, dim=-1) @ prototypes.T).argmax(-1)  # [B, n]
        cross_hits += int(((cross_pred == target[:, None]) & keep).sum())
        cross_n += int(keep.sum())
        cos = F.cosine_similarity(w.f_mw[:, None, :], w.other_motion, dim=-1)
        cos_sum += float((cos * keep).sum())
    if own_n == 0 or cross_n == 0:
        raise ValueError("no cross pair to test (batches too small, or L_cross off)")
    return {"own_accuracy": own_hits / own_n, "cross_accuracy": cross_hits / cross_n,
            "cross_motion_cos": cos_sum / cross_n, "cross_loss": sum(losses) / len(losses),
            "chance": 1.0 / model.prototypes.shape[0], "own_queries": own_n, "cross_queries": cross_n,
            "split": split}


@torch.no_grad()
def word_query_features(run_dir: str | Path, words: Sequence[str] = PICTURE_WORDS, split: str = "test",
                        max_motions: int = 120) -> dict:
    """f^{m_j}_w [len(words) * M, D] float32 for every word w querying each of M distinct clips
    of ``split`` (no prior), with ``word`` [N] (index into ``words``) and ``has_word`` [N] bool
    (whether any caption of clip j contains w as a word)."""
    import numpy as np

    from mate import rundir
    from mate.data.dataset import MotionTextDataset, collate_motion_text, distinct_clips
    from mate.text.vocab import split_words

    model = rundir.load_stage_model(run_dir, 1)
    dataset = MotionTextDataset(rundir.data_root(run_dir), split, strict=_run_strict_data(run_dir), crop="start")
    clip_of, first = distinct_clips(dataset.records)
    first = list(first)[:max_motions]
    if not first:
        raise ValueError(f"split {split!r} has no motion")
    words_of_clip = [set() for _ in first]
    for i, r in enumerate(dataset.records):
        if clip_of[i] < len(first):
            words_of_clip[clip_of[i]].update(w.lower() for w in split_words(r.caption.text))
    batch = collate_motion_text([dataset[i] for i in first])
    frames, _ = model.encode_motion(batch["motion"], batch["lengths"])
    queries = model.encode_words(model.text_encoder.word_token_ids(list(words)))      # [W, D]
    M, W = len(first), len(words)
    word_idx = torch.arange(W).repeat_interleave(M)
    motion_idx = torch.arange(M).repeat(W)
    zeros = torch.zeros(W * M)
    features = model.localise_words(queries[word_idx], frames, batch["lengths"], motion_idx, zeros, zeros)
    has = np.array([words[w] in words_of_clip[m] for w, m in zip(word_idx.tolist(), motion_idx.tolist())])
    return {"features": features.float().numpy(), "word": word_idx.numpy(), "has_word": has, "words": list(words)}


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m mate.diagnostics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a finished mate.train run directory")
    p.add_argument("--split", default="train")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--figure-split", default="test", help="the motions of the Fig. 7 picture (default: test)")
    p.add_argument("--no-figure", action="store_true")
    add_debug_flag(p)
    args = p.parse_args(argv)
    from mate.atomic import atomic_write_json

    with user_errors(args.debug):    # a user's mistake: one "error:" line (mate.cli)
        out = word_query_diagnostics(args.run, args.split, args.batches)
        for k, v in out.items():
            print(f"{k:18s} {v:.4f}" if isinstance(v, float) else f"{k:18s} {v}")
        (args.run / "eval").mkdir(exist_ok=True)
        atomic_write_json(args.run / "eval" / "word_queries.json", out)
        if not args.no_figure:
            from mate.plots import plot_word_query_features

            picture = plot_word_query_features(word_query_features(args.run, split=args.figure_split),
                                               args.run / "eval" / "word_queries.png")
            print(f"wrote {picture}")
    return out


if __name__ == "__main__":
    main()
