"""``python -m mate.train``: the whole MATE pipeline from one command.

Stages (each cached in the run directory and reused on re-run while its inputs are unchanged):

    data        --data DIR (HumanML3D / KIT-ML / TMR layout) or a synthetic set generated into
                RUN/data
    subtexts    captions -> sub-texts (rule-based; or --subtexts FILE with imported LLM answers)
    vocabulary  the lemmatised training vocabulary = the K prototypes
    stage0      a text-motion retrieval model trained with L_rec + L_sent (the paper's "Baseline")
    segments    per caption, the optimal partition of its motion among its sub-texts, with costs
                1 - cos(E_t(t^n), E_m(m[a:b])) from the stage-0 encoders (C++ dynamic program)
    stage1      MATE: all losses; on the text side only the word-embedding table learns
    export      RUN/encoder/: the MATE-enhanced text encoder (drop-in replacement)

With no arguments it runs offline on a CPU: a synthetic set, the MiniLM encoder, the ``cpu-small``
preset.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

log = logging.getLogger("mate.train")

# The paper's hyper-parameters, and a preset that finishes on a 2-core CPU in minutes. A preset
# fills in whatever the command line does not set.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(
        batch_size=64, epochs=100, stage0_epochs=100, lr_word=1e-5, lr_rest=1e-4, weight_decay=0.01,
        d_model=512, motion_layers=6, motion_heads=4, motion_ff=1024, synthetic_motions=14616,
    ),
    "cpu-small": dict(
        batch_size=32, epochs=6, stage0_epochs=4, lr_word=2e-4, lr_rest=2e-4, weight_decay=0.01,
        d_model=128, motion_layers=2, motion_heads=4, motion_ff=256, synthetic_motions=200,
    ),
}
LOSS_NAMES = ("rec", "sent", "self", "cross", "align")


# ------------------------------------------------------------------------------------ helpers
def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cached(path: Path, key: str) -> bool:
    """A stage output at ``path`` is reusable when its ``.done`` marker holds the same key."""
    marker = path.with_name(path.name + ".done")
    return path.exists() and marker.exists() and marker.read_text().strip() == key


def mark_done(path: Path, key: str) -> None:
    path.with_name(path.name + ".done").write_text(key + "\n")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mate.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder (HumanML3D/KIT-ML/TMR layout); default: generate a synthetic set into RUN/data")
    p.add_argument("--encoder", default="minilm", help="minilm | hf:<name or path> | clip | clip:<checkpoint> (default: minilm)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    p.add_argument("--out", type=Path, default=Path("runs/mate"), help="run directory (default: runs/mate)")
    p.add_argument("--epochs", type=int, default=None, help="stage-1 (MATE) epochs")
    p.add_argument("--stage0-epochs", type=int, default=None, help="stage-0 (baseline retrieval) epochs")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="stop each stage after this many optimizer steps")
    p.add_argument("--lr-word", type=float, default=None, help="learning rate of the word-embedding table")
    p.add_argument("--lr", type=float, default=None, help="learning rate of everything else that learns")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--fused", action="store_true", help="use the fused ops (Triton on CUDA, torch.compile on CPU)")
    p.add_argument("--synthetic-motions", type=int, default=None, help="size of the generated synthetic set")
    p.add_argument("--subtexts", type=Path, default=None, help="JSONL of LLM answers to import (see mate.text.subtexts)")
    p.add_argument("--prior", choices=["none", "binary", "gaussian_in_segment", "gaussian"], default="gaussian")
    for name in LOSS_NAMES:
        p.add_argument(f"--no-{name}", action="store_true", help=f"drop L_{name} (ablation)")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--no-export", action="store_true")
    return p


@dataclass
class RunConfig:
    args: argparse.Namespace
    preset: dict

    def get(self, name: str):
        value = getattr(self.args, name, None)
        return self.preset[name] if value is None else value


def validate_args(args: argparse.Namespace) -> None:
    for name in ("epochs", "stage0_epochs", "batch_size", "max_steps", "synthetic_motions"):
        value = getattr(args, name)
        if value is not None and value < (0 if name in ("epochs", "stage0_epochs") else 1):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be positive, got {value}")
    for name in ("lr_word", "lr"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be a positive number, got {value}")
    if args.data is not None and not args.data.is_dir():
        raise SystemExit(f"error: --data {args.data} is not a directory")
    if args.subtexts is not None and not args.subtexts.is_file():
        raise SystemExit(f"error: --subtexts {args.subtexts} is not a file")


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {spec}: CUDA is not available on this machine")
    return device


# ------------------------------------------------------------------------------ data stages
def prepare_data(cfg: RunConfig, run_dir: Path) -> Path:
    if cfg.args.data is not None:
        return cfg.args.data
    from mate.data import synthetic

    root = run_dir / "data"
    key = fingerprint({"motions": cfg.get("synthetic_motions"), "seed": cfg.args.seed})
    marker = run_dir / "data.done"
    if root.is_dir() and marker.exists() and marker.read_text().strip() == key:
        log.info("data: reusing the synthetic set in %s", root)
        return root
    log.info("data: generating %d synthetic motions into %s", cfg.get("synthetic_motions"), root)
    synthetic.write_dataset(root, num_motions=cfg.get("synthetic_motions"), seed=cfg.args.seed)
    marker.write_text(key + "\n")
    return root


def caption_words_and_lemmas(caption: str, tokens: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """The caption's words, and their lemmas from the dataset's ``lemma/POS`` tokens when those
    align 1:1 with the words (else None: simplemma lemmatises)."""
    from mate.text.vocab import split_words

    words = split_words(caption)
    lemmas = [t.rsplit("/", 1)[0] for t in tokens if "/" in t and t.rsplit("/", 1)[1] != "PUNCT"]
    return words, (lemmas if len(lemmas) == len(words) else None)


def compute_subtexts(cfg: RunConfig, run_dir: Path, records) -> dict[str, list[str]]:
    from mate.text.subtexts import import_llm_answers, split_subtexts

    path = run_dir / "subtexts.json"
    key = fingerprint({"captions": [r.caption.key for r in records], "llm": str(cfg.args.subtexts)})
    if cached(path, key):
        log.info("subtexts: reusing %s", path)
        return json.loads(path.read_text())
    if cfg.args.subtexts is not None:
        answers, stats = import_llm_answers(cfg.args.subtexts, {r.caption.key: r.caption.text for r in records})
        log.info("subtexts: imported LLM answers: %s", stats.as_dict())
    else:
        answers = {r.caption.key: split_subtexts(r.caption.text, list(r.caption.tokens) or None) for r in records}
    log.info("subtexts: %d captions, %d split into several sub-texts", len(answers),
             sum(len(v) > 1 for v in answers.values()))
    atomic_write_json(path, answers)
    mark_done(path, key)
    return answers


def build_vocab(run_dir: Path, records):
    """The training vocabulary (the prototypes), from the same lemmas the word lookup uses."""
    from mate.text.vocab import Vocabulary, build_vocabulary

    path = run_dir / "vocab.json"
    key = fingerprint([r.caption.key for r in records])
    if cached(path, key):
        return Vocabulary.load(path)
    captions, tokens = [], []
    for r in records:
        captions.append(r.caption.text)
        _, lemmas = caption_words_and_lemmas(r.caption.text, r.caption.tokens)
        tokens.append(list(r.caption.tokens) if lemmas is not None else None)
    vocab = build_vocabulary(captions, tokens=tokens)
    vocab.save(path)
    mark_done(path, key)
    log.info("vocabulary: %d lemmas (the prototypes)", len(vocab))
    return vocab


# ------------------------------------------------------------------------------- the batches
class Collator:
    """Pads motions, tokenises captions and, for stage 1, samples one word per caption with its
    prototype index and its sub-text's segment (in the cropped window's frames)."""

    def __init__(self, encoder, words: dict[str, list[tuple]] | None = None, seed: int = 0):
        self.encoder, self.words = encoder, words
        self.rng = random.Random(seed)
        self._token_ids: dict[str, list[int]] = {}

    def token_ids(self, word: str) -> list[int]:
        if word not in self._token_ids:
            self._token_ids[word] = self.encoder.word_token_ids([word])[0]
        return self._token_ids[word]

    def __call__(self, items: list[dict]) -> dict:
        from mate.data.dataset import collate_motion_text

        batch = collate_motion_text(items)
        batch.update(self.encoder.tokenize(batch["caption"]))
        if self.words is not None:
            ids, target, start, end = [], [], [], []
            for item in items:
                word, vocab_index, s, e = self.rng.choice(self.words[item["key"]])
                offset, length = item["start_frame"] - item["clip_start_frame"], item["length"]
                s, e = min(max(s - offset, 0), length), min(max(e - offset, 0), length)
                if e - s < 1:  # the crop cut the segment away: fall back to the whole window
                    s, e = 0, length
                ids.append(self.token_ids(word))
                target.append(vocab_index)
                start.append(s)
                end.append(e)
            batch["word_token_ids"] = ids
            batch["word_target"] = torch.tensor(target, dtype=torch.int64)
            batch["segment_start"] = torch.tensor(start, dtype=torch.float32)
            batch["segment_end"] = torch.tensor(end, dtype=torch.float32)
        return batch


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---------------------------------------------------------------------------------- training
class MetricsLog:
    """CSV (always) and TensorBoard (when installed) scalars for one run."""

    def __init__(self, run_dir: Path):
        self.csv_path = run_dir / "metrics.csv"
        new = not self.csv_path.exists()
        self.file = open(self.csv_path, "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["stage", "split", "epoch", "step", "name", "value", "time_s"])
        self.start = time.time()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception as e:  # tensorboard not installed: CSV only
            log.warning("TensorBoard logging off (%s); metrics go to %s", e, self.csv_path)
            self.tb = None

    def scalars(self, stage: str, split: str, epoch: int, step: int, values: dict) -> None:
        t = round(time.time() - self.start, 2)
        for name, value in values.items():
            self.writer.writerow([stage, split, epoch, step, name, f"{value:.6g}", t])
            if self.tb is not None:
                self.tb.add_scalar(f"{stage}/{split}/{name}", value, step)
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def validation_losses(model, loader, device, max_batches: int = 20) -> dict:
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        out = model(to_device(batch, device))
        for name, value in {"total": out.total, **out.terms}.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        n += 1
    model.train()
    return {k: v / max(n, 1) for k, v in sums.items()}


def train_stage(name: str, model, train_loader, val_loader, cfg: RunConfig, device, run_dir: Path,
                epochs: int, metrics: MetricsLog, key: str) -> dict:
    """Train ``model`` for ``epochs`` (or --max-steps) and keep ``RUN/<name>/model.pt``.

    A finished stage with the same key is loaded instead of retrained; an interrupted one resumes
    from its last epoch checkpoint."""
    from tqdm.auto import tqdm

    stage_dir = run_dir / name
    stage_dir.mkdir(parents=True, exist_ok=True)
    final, last = stage_dir / "model.pt", stage_dir / "last.pt"
    if cached(final, key):
        log.info("%s: reusing %s", name, final)
        state = torch.load(final, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        return json.loads((stage_dir / "summary.json").read_text())
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameter_groups(cfg.get("lr_word"), cfg.get("lr_rest") if cfg.args.lr is None
                                                         else cfg.args.lr, cfg.get("weight_decay")))
    start_epoch, step = 0, 0
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, step = state["epoch"] + 1, state["step"]
            log.info("%s: resuming after epoch %d (step %d)", name, state["epoch"], step)
    max_steps = cfg.args.max_steps
    t0 = time.time()
    last_terms: dict = {}
    for epoch in range(start_epoch, epochs):
        bar = tqdm(train_loader, desc=f"{name} epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)
        for batch in bar:
            out = model(to_device(batch, device))
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            last_terms = {"total": out.total.item(), **{k: v.item() for k, v in out.terms.items()}}
            if not all(math.isfinite(v) for v in last_terms.values()):
                raise FloatingPointError(f"{name}: non-finite loss at step {step}: {last_terms}")
            bar.set_postfix(loss=f"{last_terms['total']:.4f}")
            if step % cfg.args.log_every == 0:
                metrics.scalars(name, "train", epoch, step, last_terms)
            if max_steps is not None and step >= max_steps:
                break
        val = validation_losses(model, val_loader, device) if val_loader is not None else {}
        metrics.scalars(name, "val", epoch, step, val)
        log.info("%s: epoch %d/%d step %d  train %s  val %s", name, epoch + 1, epochs, step,
                 _fmt(last_terms), _fmt(val))
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                           "step": step, "key": key}, last)
        if max_steps is not None and step >= max_steps:
            break
    summary = {"steps": step, "seconds": round(time.time() - t0, 1), "last_train": last_terms}
    atomic_torch_save({"model": model.state_dict(), "config": model.config.to_dict()}, final)
    atomic_write_json(stage_dir / "summary.json", summary)
    mark_done(final, key)
    last.unlink(missing_ok=True)
    return summary


def _fmt(values: dict) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in values.items()) or "-"


# ------------------------------------------------------------------------------ segmentation
@torch.no_grad()
def compute_segments(model, view, subtexts: dict, run_dir: Path, device, key: str, batch_size: int = 64) -> dict:
    """Per caption key: {"subtexts": [...], "bounds_frames": [0, ..., L]} in the clip's frames."""
    from tqdm.auto import tqdm

    from mate.model.segmentation import clip_features, partition_costs
    from mate.segment import optimal_partition_batch, unit_grid

    path = run_dir / "segments.json"
    if cached(path, key):
        log.info("segments: reusing %s", path)
        return json.loads(path.read_text())
    model.to(device).eval()
    segments, costs, pending = {}, [], []
    merged = 0
    # Group the captions by clip so that each clip's G(G+1)/2 sub-clips are encoded once.
    by_clip: dict[tuple, list[int]] = {}
    for i, r in enumerate(view.records):
        by_clip.setdefault((r.motion_id, r.start_frame, r.end_frame), []).append(i)
    for indices in tqdm(by_clip.values(), desc="segments", leave=False, dynamic_ncols=True):
        item = view[indices[0]]
        length = item["length"]
        grid = unit_grid(length, view.fps)
        clips = None
        for i in indices:
            rec = view.records[i]
            parts = subtexts[rec.caption.key]
            if len(parts) == 1 or len(parts) > len(grid) - 1:
                merged += len(parts) > 1
                segments[rec.caption.key] = {"subtexts": [" ".join(parts)] if len(parts) > 1 else parts,
                                             "bounds_frames": [0, length]}
                continue
            if clips is None:
                clips = clip_features(model.motion_encoder, item["motion"].to(device), grid)
            tok = model.text_encoder.tokenize(parts)
            feats = model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))
            costs.append(partition_costs(feats, clips))
            pending.append((rec.caption.key, parts, grid))
    for (k, parts, grid), part in zip(pending, optimal_partition_batch(costs)):
        segments[k] = {"subtexts": parts, "bounds_frames": part.frames(grid).tolist()}
    log.info("segments: %d captions segmented by the DP, %d with more sub-texts than grid units kept whole",
             len(pending), merged)
    atomic_write_json(path, segments)
    mark_done(path, key)
    model.train()
    return segments


def word_samples(records, segments: dict, vocab) -> dict[str, list[tuple]]:
    """Per caption key: the (surface word, prototype index, segment start, end) it can sample."""
    from mate.text.vocab import locate_words

    out = {}
    for r in records:
        seg = segments[r.caption.key]
        words, lemmas = caption_words_and_lemmas(r.caption.text, r.caption.tokens)
        try:
            found = locate_words(words, seg["subtexts"], seg["bounds_frames"], vocab=vocab, lemmas=lemmas)
        except ValueError:  # sub-texts that do not use the caption's words (e.g. merged): whole clip
            found = locate_words(words, [" ".join(words)], [0, seg["bounds_frames"][-1]], vocab=vocab, lemmas=lemmas)
        out[r.caption.key] = [(w.word, w.vocab_index, w.start_frame, w.end_frame) for w in found]
    return out


# -------------------------------------------------------------------------------------- main
def build_model(cfg: RunConfig, encoder, feature_dim: int, num_prototypes: int, word_losses: bool):
    from mate.model.mate_model import MATEConfig, MATEModel

    args = cfg.args
    config = MATEConfig(
        d_model=cfg.get("d_model"), motion_layers=cfg.get("motion_layers"), motion_heads=cfg.get("motion_heads"),
        motion_ff=cfg.get("motion_ff"), prior_variant=args.prior,
        use_rec=not args.no_rec, use_sent=not args.no_sent,
        use_self=word_losses and not args.no_self, use_cross=word_losses and not args.no_cross,
        use_align=word_losses and not args.no_align,
    )
    return MATEModel(encoder, feature_dim, num_prototypes, config, impl="auto" if args.fused else "reference")


def setup_logging(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger("mate")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir / "train.log")):
        handler.setFormatter(fmt)
        root.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    validate_args(args)
    cfg = RunConfig(args, dict(PRESETS[args.preset]))
    if args.lr is not None:
        cfg.preset["lr_rest"] = args.lr
    if args.lr_word is not None:
        cfg.preset["lr_word"] = args.lr_word
    run_dir = args.out
    setup_logging(run_dir)
    seed_everything(args.seed)
    device = resolve_device(args.device)
    started = time.time()
    log.info("run directory %s, device %s, preset %s, encoder %s, fused %s", run_dir, device, args.preset,
             args.encoder, args.fused)

    from mate.data.dataset import MotionTextDataset
    from mate.text.encoders import build_text_encoder

    data_root = prepare_data(cfg, run_dir)
    train_set = MotionTextDataset(data_root, "train", seed=args.seed)
    view = MotionTextDataset(data_root, "train", crop="start")  # deterministic, for segmentation
    val_set = MotionTextDataset(data_root, "val", crop="start") if (data_root / "val.txt").exists() or \
        (data_root / "splits" / "val.txt").exists() else None
    log.info("data: %s (%s), %d training captions, %d validation", data_root, train_set.dataset_name,
             len(train_set), len(val_set) if val_set is not None else 0)
    subtexts = compute_subtexts(cfg, run_dir, train_set.records)
    vocab = build_vocab(run_dir, train_set.records)
    batch_size = cfg.get("batch_size")
    metrics = MetricsLog(run_dir)
    common_key = {"data": str(data_root), "encoder": args.encoder, "preset": args.preset, "seed": args.seed,
                  "batch": batch_size, "lr": [cfg.get("lr_word"), cfg.get("lr_rest")], "max_steps": args.max_steps,
                  "fused": args.fused, "n": len(train_set)}

    def loaders(collate):
        g = torch.Generator().manual_seed(args.seed)
        train = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) > batch_size,
                           collate_fn=collate, num_workers=args.num_workers, generator=g)
        val = DataLoader(val_set, batch_size=batch_size, collate_fn=collate) if val_set is not None else None
        return train, val

    # Stage 0: the retrieval baseline (L_rec + L_sent).
    encoder = build_text_encoder(args.encoder)
    model0 = build_model(cfg, encoder, train_set.feature_dim, len(vocab), word_losses=False)
    stage0_key = fingerprint({**common_key, "stage": 0, "epochs": cfg.get("stage0_epochs"),
                              "model": model0.config.to_dict()})
    train0, val0 = loaders(Collator(encoder, seed=args.seed))
    summary = {"stage0": train_stage("stage0", model0, train0, val0, cfg, device, run_dir,
                                     cfg.get("stage0_epochs"), metrics, stage0_key)}

    # Segmentation with the stage-0 encoders.
    segments = compute_segments(model0, view, subtexts, run_dir, device, fingerprint({"stage0": stage0_key}))
    words = word_samples(train_set.records, segments, vocab)
    val_words = None
    if val_set is not None:
        val_segments = {r.caption.key: {"subtexts": [r.caption.text], "bounds_frames": [0, r.num_frames]}
                        for r in val_set.records}
        val_words = word_samples(val_set.records, val_segments, vocab)
    del model0

    # Stage 1: MATE, from the original encoder (the baseline is "MATE without L_word").
    encoder = build_text_encoder(args.encoder)
    model1 = build_model(cfg, encoder, train_set.feature_dim, len(vocab), word_losses=True)
    vocab_token_ids = encoder.word_token_ids(list(vocab.index_to_word))
    model1.init_prototypes(vocab_token_ids)
    report = encoder.trainable_parameter_report(vocab_token_ids)
    log.info("trainable text parameters: full word table %s (%d x %d); rows the vocabulary touches: %d (%s parameters)",
             f"{report['full_table']:,}", report["vocab_size"], report["embedding_dim"], report["touched_rows"],
             f"{report['touched_row_parameters']:,}")
    usable = [i for i, r in enumerate(train_set.records) if words[r.caption.key]]
    if len(usable) < len(train_set):
        log.info("stage1: %d captions have no vocabulary word and are left out", len(train_set) - len(usable))
    stage1_set = torch.utils.data.Subset(train_set, usable)
    g = torch.Generator().manual_seed(args.seed)
    train1 = DataLoader(stage1_set, batch_size=batch_size, shuffle=True, drop_last=len(stage1_set) > batch_size,
                        collate_fn=Collator(encoder, words, seed=args.seed), num_workers=args.num_workers, generator=g)
    val1 = None
    if val_set is not None:
        val_usable = [i for i, r in enumerate(val_set.records) if val_words[r.caption.key]]
        val1 = DataLoader(torch.utils.data.Subset(val_set, val_usable), batch_size=batch_size,
                          collate_fn=Collator(encoder, val_words, seed=args.seed))
    stage1_key = fingerprint({**common_key, "stage": 1, "epochs": cfg.get("epochs"), "model": model1.config.to_dict(),
                              "segments": fingerprint(segments)})
    summary["stage1"] = train_stage("stage1", model1, train1, val1, cfg, device, run_dir, cfg.get("epochs"),
                                    metrics, stage1_key)
    metrics.close()

    if not args.no_export:
        out = encoder.export(run_dir / "encoder", overwrite=True)
        log.info("export: %s (load it with transformers.AutoModel.from_pretrained or mate.load_text_encoder)", out)
    summary.update({"trainable_parameters": report, "seconds": round(time.time() - started, 1),
                    "device": str(device), "preset": args.preset, "encoder": args.encoder, "fused": args.fused})
    atomic_write_json(run_dir / "summary.json", summary)
    log.info("done in %.1f s; run directory %s", summary["seconds"], run_dir)
    return summary


if __name__ == "__main__":
    main()
