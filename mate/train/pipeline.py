"""The cached stages of a training run and :func:`run`, the typed entry point.

    data -> subtexts -> vocabulary -> stage 0 -> segments -> stage 1 -> export

Each stage's output lives in the run directory (:mod:`mate.rundir`) with a ``.done`` marker
holding its cache key: a re-run reuses every stage whose inputs are unchanged. Under torchrun,
rank 0 computes and writes a stage first and the other ranks then read it
(:func:`main_process_first`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mate import distributed as mdist
from mate.atomic import atomic_directory, atomic_write_json, atomic_write_text
from mate.memory import track_peak_memory
from mate.rundir import RunDir, fingerprint, is_cached, mark_done, write_manifest

from .batches import Collator, make_loader
from .config import WORD_SAMPLING, ConfigError, TrainConfig
from .logs import MetricsLog, setup_logging
from .rng import enable_determinism, seed_everything, stage_seed
from .trainer import train_stage

__all__ = ["run", "synthetic_dataset", "prepare_data", "compute_subtexts", "build_vocab", "compute_segments",
           "word_samples", "build_model", "caption_words_and_lemmas"]

log = logging.getLogger("mate.train")


def main_process_first(fn, *args, **kwargs):
    """Run ``fn`` on rank 0 (which computes and writes a stage), then on the other ranks (which
    find it cached and read it). One process: just ``fn``."""
    if not mdist.is_distributed():
        return fn(*args, **kwargs)
    if mdist.is_main_process():
        try:
            return fn(*args, **kwargs)
        finally:
            mdist.barrier()
    mdist.barrier()
    return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------ keys
#: MATEConfig fields that only the word losses read and that are left out of stage 0's cache key
#: (older fields of that kind stay in it at their defaults, as they always were).
STAGE0_UNREAD_SETTINGS = ("cross_negatives",)
#: The shortest sub-clip stage 0's --subclip-crops draws (one second: two segmentation grid units).
SUBCLIP_MIN_SECONDS = 1.0


def dataset_fps(dataset) -> float:
    """Frames per second of a dataset (or of a Subset of one)."""
    return float(getattr(dataset, "fps", None) or dataset.dataset.fps)


def captions_fingerprint(records) -> str:
    """A key over every caption's content (key, text, tokens, span): a caption edited in place
    invalidates the text stages and everything trained on them."""
    return fingerprint([[r.caption.key, r.caption.text, list(r.caption.tokens), r.caption.start, r.caption.end]
                        for r in records])


def motions_fingerprint(dataset) -> str:
    """A key over the motion files a dataset reads -- each one's path, size and modification time,
    as make does, so 14,616 files cost a stat each, not a read -- and over its feature statistics:
    a motion rewritten in place, or a new Mean/Std, invalidates every trained stage."""
    stats = []
    for path in sorted({str(r.motion_path) for r in dataset.records}):
        st = os.stat(path)
        stats.append([path, st.st_size, st.st_mtime_ns])
    mean, std = getattr(dataset, "_mean_np", None), getattr(dataset, "_std_np", None)
    norm = [hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() if a is not None else None
            for a in (mean, std)]
    return fingerprint({"motions": stats, "statistics": norm})


def file_fingerprint(path: Path | None) -> str | None:
    """SHA-256 of a file's bytes (None for no file)."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ text stages
def synthetic_dataset(root: Path, motions: int, seed: int, durations: str = "realistic",
                      progress: bool | None = None) -> Path:
    """A synthetic set of ``motions`` motions generated from ``seed`` (with the ``durations``
    profile of :mod:`mate.data.synthetic.actions`) into ``root`` (by rank 0), unless the one there
    already is (``root.done`` holds the key). Generated beside ``root`` and renamed into place:
    never a half-written set."""
    from mate.data import synthetic

    root = Path(root)
    key = fingerprint({"motions": motions, "seed": seed, "durations": durations})
    if is_cached(root, key) and root.is_dir():
        log.info("data: reusing the synthetic set in %s", root)
        return root
    if not mdist.is_main_process():
        raise RuntimeError(f"rank {mdist.rank()}: rank 0 did not leave a synthetic set in {root} "
                           "(is the run directory on a filesystem every rank sees?)")
    log.info("data: generating %d synthetic motions into %s", motions, root)
    with atomic_directory(root, overwrite=True) as staging:
        synthetic.write_dataset(staging, num_motions=motions, seed=seed, durations=durations, progress=progress)
    mark_done(root, key)
    return root


def prepare_data(config: TrainConfig, run: RunDir) -> Path:
    """The dataset folder: ``config.data``, or a synthetic set generated into RUN/data."""
    if config.data is not None:
        return config.data
    return synthetic_dataset(run.data, config.synthetic_motions, config.seed)


def caption_words_and_lemmas(caption: str, tokens: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """The caption's words, and their lemmas from the dataset's ``lemma/POS`` tokens when those
    align 1:1 with the words (else None: simplemma lemmatises)."""
    from mate.text.vocab import split_words

    words = split_words(caption)
    lemmas = [t.rsplit("/", 1)[0] for t in tokens if "/" in t and t.rsplit("/", 1)[1] != "PUNCT"]
    return words, (lemmas if len(lemmas) == len(words) else None)


def compute_subtexts(config: TrainConfig, run: RunDir, records) -> dict[str, list[str]]:
    """Per caption key, its sub-texts: rule-based, or the imported LLM answers (``config.subtexts``)."""
    from mate.text.subtexts import import_llm_answers, split_subtexts

    key = fingerprint({"captions": captions_fingerprint(records), "llm": str(config.subtexts),
                       "llm_sha256": file_fingerprint(config.subtexts)})
    if is_cached(run.subtexts, key):
        log.info("subtexts: reusing %s", run.subtexts)
        return json.loads(run.subtexts.read_text())
    if config.subtexts is not None:
        answers, stats = import_llm_answers(config.subtexts, {r.caption.key: r.caption.text for r in records})
        log.info("subtexts: imported LLM answers: %s", stats.as_dict())
    else:
        answers = {r.caption.key: split_subtexts(r.caption.text, list(r.caption.tokens) or None) for r in records}
    log.info("subtexts: %d captions, %d split into several sub-texts", len(answers),
             sum(len(v) > 1 for v in answers.values()))
    if mdist.is_main_process():
        atomic_write_json(run.subtexts, answers)
        mark_done(run.subtexts, key)
    return answers


def build_vocab(run: RunDir, records):
    """The training vocabulary (the prototypes), from the same lemmas the word lookup uses."""
    from mate.text.vocab import Vocabulary, build_vocabulary

    key = captions_fingerprint(records)
    if is_cached(run.vocab, key):
        return Vocabulary.load(run.vocab)
    captions, tokens = [], []
    for r in records:
        captions.append(r.caption.text)
        _, lemmas = caption_words_and_lemmas(r.caption.text, r.caption.tokens)
        tokens.append(list(r.caption.tokens) if lemmas is not None else None)
    vocab = build_vocabulary(captions, tokens=tokens)
    if mdist.is_main_process():
        text = json.dumps(vocab.to_json(), ensure_ascii=False, indent=1) + "\n"   # as Vocabulary.save writes it
        atomic_write_text(run.vocab, text)
        mark_done(run.vocab, key)
    log.info("vocabulary: %d lemmas (the prototypes)", len(vocab))
    return vocab


# ------------------------------------------------------------------------------ segmentation
@torch.no_grad()
def compute_segments(model, view, subtexts: dict, run: RunDir, device, key: str, clips_per_batch: int = 16) -> dict:
    """Per caption key: {"subtexts": [...], "bounds_frames": [0, ..., L]} in the clip's frames,
    from :func:`mate.model.segmentation.segment_captions` with the stage-0 encoders. A caption
    with more sub-texts than 0.5 s grid units is kept whole (its sub-texts joined).

    Under torchrun the clips are shared out among the ranks (round robin), each rank segments its
    share, the results are gathered on every rank, and rank 0 writes ``segments.json``."""
    from mate.data.dataset import distinct_clips
    from mate.model.segmentation import segment_captions

    if is_cached(run.segments, key):
        log.info("segments: reusing %s", run.segments)
        return json.loads(run.segments.read_text())
    was_training = model.training
    model.to(device).eval()
    clip_of, first = distinct_clips(view.records)
    mine = set(range(len(first))[mdist.rank()::mdist.world_size()])
    requests = [(r.caption.key, int(clip_of[i]), subtexts[r.caption.key])
                for i, r in enumerate(view.records) if clip_of[i] in mine]
    length = [int(view.lengths[i]) for i in first]
    bounds = segment_captions(model, requests, lambda clip: view[first[clip]]["motion"].to(device),
                              length.__getitem__, view.fps, clips_per_batch, progress=mdist.is_main_process())
    local, merged, segmented = {}, 0, 0
    for key_i, clip, parts in requests:
        if bounds[key_i] is None:          # more sub-texts than grid units: the caption stays whole
            merged += 1
            local[key_i] = {"subtexts": [" ".join(parts)], "bounds_frames": [0, length[clip]]}
        else:
            segmented += len(parts) > 1
            local[key_i] = {"subtexts": parts, "bounds_frames": bounds[key_i].tolist()}
    shares = mdist.all_gather_object((local, merged, segmented))
    found = {k: v for share, _, _ in shares for k, v in share.items()}
    segments = {r.caption.key: found[r.caption.key] for r in view.records if r.caption.key in found}
    log.info("segments: %d captions segmented by the DP, %d with more sub-texts than grid units kept whole",
             sum(n for _, _, n in shares), sum(m for _, m, _ in shares))
    if mdist.is_main_process():
        atomic_write_json(run.segments, segments)
        mark_done(run.segments, key)
    mdist.barrier()
    model.train(was_training)
    return segments


def whole_caption_segments(records) -> dict[str, dict]:
    """Per caption key: the caption as one sub-text over its whole clip (no segmentation: how
    validation and other held-out splits place their words)."""
    return {r.caption.key: {"subtexts": [r.caption.text], "bounds_frames": [0, r.num_frames]} for r in records}


def word_samples(records, segments: dict, vocab, sampling: str = "paper") -> dict[str, list[tuple]]:
    """Per caption key: the (surface word, prototype index, segment start, end) it can sample.

    ``sampling``: ``paper`` (every vocabulary word, its own prototype) or ``motion-words`` (words
    naming who moves, :data:`mate.text.antonyms.SUBJECT_WORDS`, are not sampled, and synonyms take
    one prototype, :data:`mate.text.antonyms.PROTOTYPE_SYNONYMS`)."""
    from mate.text.antonyms import PROTOTYPE_SYNONYMS, SUBJECT_WORDS
    from mate.text.vocab import locate_words

    if sampling not in WORD_SAMPLING:
        raise ValueError(f"word sampling must be one of {WORD_SAMPLING}, got {sampling!r}")

    out = {}
    for r in records:
        seg = segments[r.caption.key]
        words, lemmas = caption_words_and_lemmas(r.caption.text, r.caption.tokens)
        try:
            found = locate_words(words, seg["subtexts"], seg["bounds_frames"], vocab=vocab, lemmas=lemmas)
        except ValueError:  # sub-texts that do not use the caption's words (e.g. merged): whole clip
            found = locate_words(words, [" ".join(words)], [0, seg["bounds_frames"][-1]], vocab=vocab, lemmas=lemmas)
        rows = [(w.word, w.vocab_index, w.start_frame, w.end_frame) for w in found]
        if sampling == "motion-words":
            lemma = vocab.index_to_word
            rows = [(word, vocab.word_to_index.get(PROTOTYPE_SYNONYMS.get(lemma[i], ""), i), s, e)
                    for word, i, s, e in rows if lemma[i] not in SUBJECT_WORDS]
        out[r.caption.key] = rows
    return out


# --------------------------------------------------------------------------------- the run
def build_model(config: TrainConfig, encoder, feature_dim: int, num_prototypes: int, word_losses: bool):
    """The :class:`mate.model.mate_model.MATEModel` of stage 1 (``word_losses``) or stage 0
    (:meth:`TrainConfig.model_config`); ``config.fused`` routes its ops through the fast paths."""
    from mate.model.mate_model import MATEModel

    return MATEModel(encoder, feature_dim, num_prototypes, config.model_config(word_losses),
                     impl="auto" if config.fused else "reference")


class _Stages:
    """What the stages of one run share: the configuration, the run directory, the process
    group, the metrics log, the per-stage memory record, and the common part of the cache keys."""

    def __init__(self, config: TrainConfig, env: mdist.DistEnv, run: RunDir, metrics: MetricsLog, common_key: dict):
        self.config, self.env, self.run, self.device = config, env, run, env.device
        self.metrics, self.common_key = metrics, common_key
        self.memory: dict[str, dict] = {}

    @contextlib.contextmanager
    def measured(self, stage: str):
        """Wall time and peak memory (host RSS; CUDA allocated on a GPU) of one stage, logged and
        kept for summary.json's ``memory``."""
        with track_peak_memory(stage, cuda_device=self.device if self.device.type == "cuda" else None) as mem:
            yield
        self.memory[stage] = mem.as_dict()
        log.info("memory: %s", mem)

    def loaders(self, dataset, collate, val_dataset, val_collate, subclip_probability: float = 0.0):
        from mate.data.dataset import DEFAULT_CROP_FRAMES

        c = self.config
        train = make_loader(dataset, collate, c.batch_size, c.seed, num_workers=c.num_workers,
                            crop_frames=DEFAULT_CROP_FRAMES, world_size=self.env.world_size, rank=self.env.rank,
                            subclip_probability=subclip_probability,
                            min_subclip_frames=max(1, round(SUBCLIP_MIN_SECONDS * dataset_fps(dataset))))
        val = None
        if val_dataset is not None and len(val_dataset) > 0:
            val = make_loader(val_dataset, val_collate, c.batch_size, c.seed, shuffle=False, drop_last=False)
        return train, val

    def model(self, encoder, feature_dim: int, num_prototypes: int, word_losses: bool):
        model = build_model(self.config, encoder, feature_dim, num_prototypes, word_losses)
        model.batch_gather = mdist.BatchGather(self.env.feature_group) if self.env.enabled else None
        return model

    def stage_key(self, stage: int, epochs: int, model, **extra) -> str:
        settings = model.config.to_dict()
        if stage == 0:  # word-loss settings stage 0 never reads, added later: existing caches stay valid
            for name in STAGE0_UNREAD_SETTINGS:
                settings.pop(name, None)
        return fingerprint({**self.common_key, "stage": stage, "epochs": epochs, "model": settings, **extra})


def run(config: TrainConfig, argv: Sequence[str] | None = None) -> dict:
    """Train MATE end to end as ``python -m mate.train`` does (the stages above) and return the
    run summary (also ``RUN/summary.json``). ``config`` is resolved against its preset first;
    ``argv`` (the command line, when there was one) is recorded in the manifest. Raises
    :class:`ConfigError` for an invalid configuration, before anything is written."""
    config = config.resolve()
    world = mdist.torchrun_world_size()
    if config.batch_size % world:
        raise ConfigError(f"--batch-size {config.batch_size} (the global batch) must be divisible by "
                          f"the {world} processes")
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    env = mdist.init_distributed(config.device)
    try:
        if config.deterministic:
            enable_determinism()
        return _run(config, env, argv)
    finally:
        if config.deterministic:
            torch.use_deterministic_algorithms(deterministic_before)
        if env.enabled:
            mdist.destroy_distributed()


def _run(config: TrainConfig, env: mdist.DistEnv, argv: Sequence[str] | None) -> dict:
    from mate.data.dataset import DEFAULT_CROP_FRAMES, MotionTextDataset

    run_dir = RunDir(config.out)
    if env.is_main:
        run_dir.root.mkdir(parents=True, exist_ok=True)
    mdist.barrier()
    setup_logging(run_dir, env.is_main)
    seed_everything(config.seed)
    started = time.time()
    if config.amp and env.device.type == "cpu":
        log.info("--amp on a CPU: bfloat16 CPU autocast (fast only on CPUs with native bf16, e.g. AMX/AVX512-BF16)")
    log.info("run directory %s, device %s, processes %d, preset %s, encoder %s, fused %s, amp %s, compile %s",
             run_dir.root, env.device, env.world_size, config.preset, config.encoder, config.fused, config.amp,
             config.compile)
    data_root = main_process_first(prepare_data, config, run_dir)
    if env.is_main:
        write_manifest(run_dir.root, encoder=config.encoder, data_root=data_root, synthetic=config.data is None,
                       preset=config.preset, config=config.to_dict(), argv=argv)
    # Training items come uncropped; SeededSamples crops them (randomness per (seed, epoch, index)).
    # Bad inputs (NaN/inf or empty motions, ...) are skipped with one warning unless --strict-data.
    strict = config.strict_data
    train_set = MotionTextDataset(data_root, "train", strict=strict, seed=config.seed, crop_frames=None)
    # deterministic, for segmentation: the same items, start-anchored crops (nothing re-read)
    view = train_set.with_options(crop="start", crop_frames=DEFAULT_CROP_FRAMES, seed=None)
    val_set = MotionTextDataset(data_root, "val", strict=strict, crop="start") \
        if (data_root / "val.txt").exists() or (data_root / "splits" / "val.txt").exists() else None
    log.info("data: %s [%s]; %d training captions, %d validation", data_root, train_set.label,
             len(train_set), len(val_set) if val_set is not None else 0)
    for name, dataset in (("train", train_set), ("val", val_set)):
        if dataset is not None and dataset.problem_counts:
            log.info("data: %s split: skipped %s (motions %s)", name, dataset.problem_counts,
                     {k: v[:10] for k, v in dataset.problem_ids.items()})
    if len(train_set) == 0:
        counts = train_set.filter_counts
        raise ValueError(f"{data_root}: the train split has no usable clip: {counts['too_short']} captions' clips are "
                         f"too short (< {train_set.min_frames} frames) and {counts['too_long']} too long "
                         f"(>= {train_set.max_frames} frames) for the standard length filter")
    subtexts = main_process_first(compute_subtexts, config, run_dir, train_set.records)
    vocab = main_process_first(build_vocab, run_dir, train_set.records)
    common_key = {
        "data": str(data_root), "encoder": config.encoder, "preset": config.preset, "seed": config.seed,
        "batch": config.batch_size, "lr": [config.lr_word, config.lr], "max_steps": config.max_steps,
        "fused": config.fused, "n": len(train_set), "schedule": [config.lr_schedule, config.warmup_steps],
        "amp": config.amp, "compile": config.compile, "captions": captions_fingerprint(train_set.records),
        "motions": motions_fingerprint(train_set), "subtexts": file_fingerprint(config.subtexts)}
    stages = _Stages(config, env, run_dir, MetricsLog(run_dir, enabled=env.is_main), common_key)
    try:
        summary, segments = _stage0_and_segments(stages, train_set, view, val_set, subtexts, vocab)
        summary["stage1"], encoder, report = _stage1(stages, train_set, val_set, segments, vocab)
    finally:
        stages.metrics.close()
    if not config.no_export and env.is_main:
        with stages.measured("export"):
            out = encoder.export(run_dir.encoder, overwrite=True, legacy_bin=config.pytorch_model_bin)
        log.info("export: %s (load it with transformers.AutoModel.from_pretrained or mate.load_text_encoder)", out)
    summary.update({"trainable_parameters": report, "seconds": round(time.time() - started, 1),
                    "device": str(env.device), "processes": env.world_size, "preset": config.preset,
                    "encoder": config.encoder, "fused": config.fused, "amp": config.amp, "compile": config.compile,
                    "memory": stages.memory})
    if env.is_main:
        atomic_write_json(run_dir.summary, summary)
    mdist.barrier()
    log.info("done in %.1f s; run directory %s", summary["seconds"], run_dir.root)
    return summary


def _stage0_and_segments(stages: _Stages, train_set, view, val_set, subtexts, vocab) -> tuple[dict, dict]:
    """Stage 0 (the retrieval baseline, L_rec + L_sent), then the segmentation with its encoders."""
    from mate.text.encoders import build_text_encoder

    config = stages.config
    seed_everything(stage_seed(config.seed, 0))
    encoder = build_text_encoder(config.encoder)
    model0 = stages.model(encoder, train_set.feature_dim, len(vocab), word_losses=False)
    crops = {"subclip_crops": config.subclip_crops} if config.subclip_crops else {}   # 0: the key it always had
    key0 = stages.stage_key(0, config.stage0_epochs, model0, **crops)
    train0, val0 = stages.loaders(train_set, Collator(encoder, seed=config.seed), val_set,
                                  Collator(encoder, seed=config.seed), subclip_probability=config.subclip_crops)
    with stages.measured("stage0"):
        summary = {"stage0": train_stage("stage0", model0, train0, val0, config, stages.device, stages.run,
                                         config.stage0_epochs, stages.metrics, key0)}
    with stages.measured("segments"):
        segments = compute_segments(model0, view, subtexts, stages.run, stages.device, fingerprint({"stage0": key0}))
    return summary, segments


def _stage1(stages: _Stages, train_set, val_set, segments: dict, vocab) -> tuple[dict, object, dict]:
    """Stage 1, MATE (all losses), from the original encoder: (summary, the trained encoder, the
    trainable-parameter report)."""
    from torch.utils.data import Subset

    from mate.text.encoders import build_text_encoder

    config = stages.config
    words = word_samples(train_set.records, segments, vocab, config.word_sampling)
    val_words = None
    if val_set is not None:
        val_words = word_samples(val_set.records, whole_caption_segments(val_set.records), vocab, config.word_sampling)
    seed_everything(stage_seed(config.seed, 1))
    encoder = build_text_encoder(config.encoder)
    model1 = stages.model(encoder, train_set.feature_dim, len(vocab), word_losses=True)
    vocab_token_ids = encoder.word_token_ids(list(vocab.index_to_word))
    if config.prototype_init == "proj":   # random: keep the model's N(0, 0.02^2) rows
        model1.init_prototypes(vocab_token_ids)
    report = encoder.trainable_parameter_report(vocab_token_ids)
    log.info("trainable text parameters: full word table %s (%d x %d); rows the vocabulary touches: %d (%s parameters)",
             f"{report['full_table']:,}", report["vocab_size"], report["embedding_dim"], report["touched_rows"],
             f"{report['touched_row_parameters']:,}")
    usable = [i for i, r in enumerate(train_set.records) if words[r.caption.key]]
    if len(usable) < len(train_set):
        log.info("stage1: %d captions have no vocabulary word and are left out", len(train_set) - len(usable))
    val_subset = None
    if val_set is not None:
        val_subset = Subset(val_set, [i for i, r in enumerate(val_set.records) if val_words[r.caption.key]])
    train1, val1 = stages.loaders(Subset(train_set, usable), Collator(encoder, words, seed=config.seed),
                                  val_subset, Collator(encoder, val_words, seed=config.seed))
    sampling = {"word_sampling": config.word_sampling} if config.word_sampling != "paper" else {}
    if config.prototype_init != "proj":   # the default leaves the key it always had
        sampling["prototype_init"] = config.prototype_init
    key1 = stages.stage_key(1, config.epochs, model1, segments=fingerprint(segments), **sampling)
    with stages.measured("stage1"):
        summary = train_stage("stage1", model1, train1, val1, config, stages.device, stages.run, config.epochs,
                              stages.metrics, key1)
    return summary, encoder, report
