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

Scale and robustness:

    torchrun --nproc_per_node=N -m mate.train ...   DistributedDataParallel (NCCL on GPUs, gloo on
                CPUs); --batch-size is the global batch, and every in-batch loss sees the global
                batch: N processes train exactly like one with the same global batch
                (mate.distributed). Only rank 0 writes to the run directory.
    --amp       bfloat16 autocast (CUDA, and CPU autocast on a CPU); losses stay in float32
    --compile   torch.compile of the training forward (the fused ops trace inline)
    --save-every N, --keep-checkpoints K, --resume
                atomic, checksummed checkpoints in RUN/checkpoints/ (model, optimizer, scheduler,
                every RNG, the data position); --resume continues mid-epoch from the last valid one
    --deterministic
                deterministic algorithms: a run killed and resumed ends bit-identical to an
                uninterrupted one
"""
from __future__ import annotations

import argparse
import contextlib
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
from torch.utils.data import DataLoader, Dataset

from mate import checkpoint as ckpt
from mate.memory import track_peak_memory
from mate import distributed as mdist

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
    """JSON to ``path`` through a temporary file, fsync and rename (never a partial file)."""
    ckpt.atomic_write_bytes(path, (json.dumps(payload, indent=1) + "\n").encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file, fsync and rename (never a partial file)."""
    ckpt.atomic_torch_save(obj, path)


def cached(path: Path, key: str) -> bool:
    """A stage output at ``path`` is reusable when its ``.done`` marker holds the same key."""
    marker = path.with_name(path.name + ".done")
    return path.exists() and marker.exists() and marker.read_text().strip() == key


def mark_done(path: Path, key: str) -> None:
    ckpt.atomic_write_bytes(path.with_name(path.name + ".done"), (key + "\n").encode())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(seed: int, stage: int) -> int:
    """The seed a stage starts from (model initialisation, dropout): a function of --seed and the
    stage alone, so that a stage trains the same whether the earlier ones ran or were reused."""
    return (seed * 1_000_003 + 7919 * (stage + 1)) % 2**63


def enable_determinism() -> None:
    """torch.use_deterministic_algorithms(True) (and what CUDA needs for it)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def capture_rng_state(collator=None) -> dict:
    """Every random-number generator a training step can touch (weights_only-loadable)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "collator": collator.rng.getstate() if collator is not None and hasattr(collator, "rng") else None,
    }
    return state


def restore_rng_state(state: dict, collator=None) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("collator") is not None and collator is not None and hasattr(collator, "rng"):
        collator.rng.setstate(_as_tuple(state["collator"]))


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


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
    p.add_argument("--lambda-word", type=float, default=None,
                   help="weight lambda1 of L_word = L_self + L_cross + L_align (default: the paper's 0.1)")
    p.add_argument("--lambda-sent", type=float, default=None,
                   help="weight lambda2 of L_sent (default: the paper's 0.1)")
    p.add_argument("--dropout", type=float, default=None,
                   help="dropout of the motion transformers and the word attention (default: the paper's 0.1)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="constant (default) or linear warm-up then cosine decay to 0 over the stage")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (both schedules)")
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast (CUDA; on a CPU, CPU autocast); the losses stay float32")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the training forward (backend: inductor, the default; aot_eager or "
                        "eager to debug tracing)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms (a resumed run ends bit-identical to an uninterrupted one)")
    p.add_argument("--save-every", type=int, default=0,
                   help="also checkpoint every N optimizer steps (always at the end of each epoch)")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="checkpoints kept per stage (default 3)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted stage from its last valid checkpoint in RUN/checkpoints/")
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
    for name in ("save_every", "warmup_steps", "num_workers"):
        value = getattr(args, name)
        if value < 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 0, got {value}")
    if args.keep_checkpoints < 1:
        raise SystemExit(f"error: --keep-checkpoints must be >= 1, got {args.keep_checkpoints}")
    if args.log_every < 1:
        raise SystemExit(f"error: --log-every must be >= 1, got {args.log_every}")
    for name in ("lambda_word", "lambda_sent"):
        value = getattr(args, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise SystemExit(f"error: --{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if args.dropout is not None and not 0.0 <= args.dropout < 1.0:
        raise SystemExit(f"error: --dropout must be in [0, 1), got {args.dropout}")
    if args.data is not None and not args.data.is_dir():
        raise SystemExit(f"error: --data {args.data} is not a directory")
    if args.subtexts is not None and not args.subtexts.is_file():
        raise SystemExit(f"error: --subtexts {args.subtexts} is not a file")
    resolve_device(args.device)  # a usage error for a malformed or unavailable --device, before any output


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as err:
        raise SystemExit(f"error: --device {spec}: not a device name (expected auto, cpu, cuda or cuda:N): {err}") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device {spec}: MATE trains on cpu or cuda, got a {device.type!r} device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {spec}: CUDA is not available on this machine")
    return device


# ------------------------------------------------------------------------------ data stages
def prepare_data(cfg: RunConfig, run_dir: Path) -> Path:
    """The dataset folder: --data, or a synthetic set generated (by rank 0) into RUN/data."""
    if cfg.args.data is not None:
        return cfg.args.data
    from mate.data import synthetic
    from mate.text.encoder_base import atomic_export_directory

    root = run_dir / "data"
    key = fingerprint({"motions": cfg.get("synthetic_motions"), "seed": cfg.args.seed})
    marker = run_dir / "data.done"
    if root.is_dir() and marker.exists() and marker.read_text().strip() == key:
        log.info("data: reusing the synthetic set in %s", root)
        return root
    if not mdist.is_main_process():
        raise RuntimeError(f"rank {mdist.rank()}: rank 0 did not leave a synthetic set in {root} "
                           "(is the run directory on a filesystem every rank sees?)")
    log.info("data: generating %d synthetic motions into %s", cfg.get("synthetic_motions"), root)
    # Generated beside RUN/data and renamed into place: never a half-written set.
    with atomic_export_directory(root, overwrite=True) as staging:
        synthetic.write_dataset(staging, num_motions=cfg.get("synthetic_motions"), seed=cfg.args.seed)
    ckpt.atomic_write_bytes(marker, (key + "\n").encode())
    return root


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


def caption_words_and_lemmas(caption: str, tokens: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """The caption's words, and their lemmas from the dataset's ``lemma/POS`` tokens when those
    align 1:1 with the words (else None: simplemma lemmatises)."""
    from mate.text.vocab import split_words

    words = split_words(caption)
    lemmas = [t.rsplit("/", 1)[0] for t in tokens if "/" in t and t.rsplit("/", 1)[1] != "PUNCT"]
    return words, (lemmas if len(lemmas) == len(words) else None)


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


def compute_subtexts(cfg: RunConfig, run_dir: Path, records) -> dict[str, list[str]]:
    from mate.text.subtexts import import_llm_answers, split_subtexts

    path = run_dir / "subtexts.json"
    key = fingerprint({"captions": captions_fingerprint(records), "llm": str(cfg.args.subtexts),
                       "llm_sha256": file_fingerprint(cfg.args.subtexts)})
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
    if mdist.is_main_process():
        atomic_write_json(path, answers)
        mark_done(path, key)
    return answers


def build_vocab(run_dir: Path, records):
    """The training vocabulary (the prototypes), from the same lemmas the word lookup uses."""
    from mate.text.vocab import Vocabulary, build_vocabulary

    path = run_dir / "vocab.json"
    key = captions_fingerprint(records)
    if cached(path, key):
        return Vocabulary.load(path)
    captions, tokens = [], []
    for r in records:
        captions.append(r.caption.text)
        _, lemmas = caption_words_and_lemmas(r.caption.text, r.caption.tokens)
        tokens.append(list(r.caption.tokens) if lemmas is not None else None)
    vocab = build_vocabulary(captions, tokens=tokens)
    if mdist.is_main_process():
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            vocab.save(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        mark_done(path, key)
    log.info("vocabulary: %d lemmas (the prototypes)", len(vocab))
    return vocab


# ------------------------------------------------------------------------------- the batches
class SeededSamples(Dataset):
    """A dataset whose randomness is a function of ``(seed, epoch, index)``.

    Indexed by ``(epoch, index)`` (what :class:`mate.distributed.GlobalBatchSampler` yields) or by
    a plain index (epoch 0). Each item gets ``sample_seed`` (the :class:`Collator` draws its word
    from it) and, when ``crop_frames`` is set, a random window of at most that many frames (the
    base dataset must then return uncropped clips). The same sample is thus identical whichever
    rank or DataLoader worker loads it, and after a resume."""

    def __init__(self, dataset, seed: int, crop_frames: int | None = None):
        self.dataset, self.seed, self.crop_frames = dataset, int(seed) % 2**63, crop_frames

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.dataset[index]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), int(index)]))
        length = item["length"]
        if self.crop_frames is not None and length > self.crop_frames:
            offset = int(rng.integers(0, length - self.crop_frames + 1))
            item = dict(item)
            item["motion"] = item["motion"][offset:offset + self.crop_frames]
            item["length"] = self.crop_frames
            item["start_frame"] = item["start_frame"] + offset
            item["end_frame"] = item["start_frame"] + self.crop_frames
        item["sample_seed"] = int(rng.integers(0, 2**63 - 1))
        return item


class Collator:
    """Pads motions, tokenises captions and, for stage 1, samples one word per caption with its
    prototype index and its sub-text's segment (in the cropped window's frames).

    The word is drawn from the item's ``sample_seed`` when it has one (:class:`SeededSamples`),
    else from the collator's own ``rng`` (seeded with ``seed``). Besides ``word_token_ids`` (lists)
    the batch holds the same ids as tensors, ``word_flat_ids`` and ``word_offsets`` (for
    ``embedding_bag``)."""

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
                rng = random.Random(item["sample_seed"]) if "sample_seed" in item else self.rng
                word, vocab_index, s, e = rng.choice(self.words[item["key"]])
                offset, length = item["start_frame"] - item["clip_start_frame"], item["length"]
                s, e = min(max(s - offset, 0), length), min(max(e - offset, 0), length)
                if e - s < 1:  # the crop cut the segment away: fall back to the whole window
                    s, e = 0, length
                ids.append(self.token_ids(word))
                target.append(vocab_index)
                start.append(s)
                end.append(e)
            batch["word_token_ids"] = ids
            batch["word_flat_ids"] = torch.tensor([i for word_ids in ids for i in word_ids], dtype=torch.int64)
            batch["word_offsets"] = torch.tensor([0] + [len(w) for w in ids[:-1]], dtype=torch.int64).cumsum(0)
            batch["word_target"] = torch.tensor(target, dtype=torch.int64)
            batch["segment_start"] = torch.tensor(start, dtype=torch.float32)
            batch["segment_end"] = torch.tensor(end, dtype=torch.float32)
        return batch


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def make_loader(dataset, collate, batch_size: int, seed: int, num_workers: int = 0, shuffle: bool = True,
                crop_frames: int | None = None, world_size: int = 1, rank: int = 0,
                drop_last: bool = True) -> DataLoader:
    """A DataLoader over :class:`SeededSamples` with a :class:`mate.distributed.GlobalBatchSampler`
    (``batch_size`` is the global batch; this rank gets its slice). Its generator is its own, so
    iterating never touches the global torch RNG."""
    sampler = mdist.GlobalBatchSampler(len(dataset), batch_size, world_size=world_size, rank=rank, seed=seed,
                                       shuffle=shuffle, drop_last=drop_last)
    g = torch.Generator()
    g.manual_seed(seed % 2**63)
    return DataLoader(SeededSamples(dataset, seed, crop_frames), batch_sampler=sampler, collate_fn=collate,
                      num_workers=num_workers, generator=g)


# ---------------------------------------------------------------------------------- training
METRICS_HEADER = ["stage", "split", "epoch", "step", "name", "value", "time_s"]


class MetricsLog:
    """CSV (always) and TensorBoard (when installed) scalars for one run. ``enabled=False`` (ranks
    other than 0) writes nothing."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.csv_path = run_dir / "metrics.csv"
        self.start = time.time()
        self.file = self.writer = self.tb = None
        if not enabled:
            return
        self._open()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception as e:  # tensorboard not installed: CSV only
            log.warning("TensorBoard logging off (%s); metrics go to %s", e, self.csv_path)
            self.tb = None

    def _open(self) -> None:
        new = not self.csv_path.exists()
        self.file = open(self.csv_path, "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(METRICS_HEADER)
            self.file.flush()

    def rewind(self, stage: str, step: int) -> None:
        """Forget ``stage``'s rows after ``step`` (a resume replays them) and any partial last line
        a crash left; the file is rewritten atomically."""
        if not self.enabled or not self.csv_path.exists():
            return
        self.file.close()
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [METRICS_HEADER]
        for row in rows[1:]:
            if len(row) != len(METRICS_HEADER):
                continue
            try:
                if row[0] == stage and int(row[3]) > step:
                    continue
            except ValueError:
                continue
            kept.append(row)
        import io

        buf = io.StringIO()
        csv.writer(buf).writerows(kept)
        ckpt.atomic_write_bytes(self.csv_path, buf.getvalue().encode())
        self._open()

    def scalars(self, stage: str, split: str, epoch: int, step: int, values: dict) -> None:
        if not self.enabled:
            return
        t = round(time.time() - self.start, 2)
        for name, value in values.items():
            self.writer.writerow([stage, split, epoch, step, name, f"{value:.6g}", t])
            if self.tb is not None:
                self.tb.add_scalar(f"{stage}/{split}/{name}", value, step)
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def amp_context(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device``'s type when ``enabled`` (CUDA; CPU autocast on a CPU)."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def model_inputs(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on ``device`` (no Python lists: what a compiled forward should see)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}


# Sizes that change from batch to batch: compiled once as dynamic rather than recompiled.
DYNAMIC_DIMS = {"motion": (1,), "mask": (1,), "input_ids": (1,), "attention_mask": (1,), "word_flat_ids": (0,)}


def mark_dynamic_dims(inputs: dict) -> None:
    for name, dims in DYNAMIC_DIMS.items():
        if name in inputs:
            for dim in dims:
                torch._dynamo.maybe_mark_dynamic(inputs[name], dim)


@torch.no_grad()
def validation_losses(model, loader, device, max_batches: int = 20, amp: bool = False) -> dict:
    """Mean loss terms over the first ``max_batches`` batches of ``loader``, in this process only
    (no cross-rank gathering: call it on one rank)."""
    was_training = model.training
    gather = getattr(model, "batch_gather", None)
    model.batch_gather = None
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    try:
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            with amp_context(device, amp):
                out = model(to_device(batch, device))
            for name, value in {"total": out.total, **out.terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            n += 1
    finally:
        model.batch_gather = gather
        model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


def build_scheduler(optimizer, kind: str, warmup_steps: int, total_steps: int):
    """LambdaLR: linear warm-up over ``warmup_steps``, then constant (``"constant"``: the factor is
    exactly 1, i.e. plain AdamW) or cosine decay to 0 at ``total_steps`` (``"cosine"``)."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _debug_hang_after_checkpoint(name: str, step: int) -> None:
    """Fault-injection hook for the crash tests: ``MATE_DEBUG_HANG_AFTER_CHECKPOINT=stage1:3``
    makes the process stop making progress once that checkpoint is on disk, so that a test can
    SIGKILL it at a known point."""
    spec = os.environ.get("MATE_DEBUG_HANG_AFTER_CHECKPOINT")
    if spec and spec == f"{name}:{step}":
        log.warning("debug hook: hanging after checkpoint %s step %d", name, step)
        while True:
            time.sleep(1.0)


def train_stage(name: str, model, train_loader, val_loader, cfg: RunConfig, device, run_dir: Path,
                epochs: int, metrics: MetricsLog, key: str) -> dict:
    """Train ``model`` for ``epochs`` (or --max-steps) and keep ``RUN/<name>/model.pt``.

    A finished stage with the same key is loaded instead of retrained. Checkpoints go to
    ``RUN/checkpoints/<name>-stepNNNNNNNN.ckpt`` at the end of every epoch and every --save-every
    steps (the last --keep-checkpoints kept); with --resume an interrupted stage continues from the
    last valid one, mid-epoch. Under torchrun the model is wrapped in DDP, the batches are this
    rank's share of the global batch, and only rank 0 writes."""
    from tqdm.auto import tqdm

    args = cfg.args
    is_main = mdist.is_main_process()
    stage_dir = run_dir / name
    ckpt_dir = run_dir / "checkpoints"
    final = stage_dir / "model.pt"
    if cached(final, key):
        try:
            state = torch.load(final, map_location=device, weights_only=True)
            summary = json.loads((stage_dir / "summary.json").read_text())
        except Exception as err:  # noqa: BLE001 - any unreadable cached output is a cache miss
            log.warning("%s: the cached %s (or its summary.json) cannot be read (%s: %s); training the stage again",
                        name, final, type(err).__name__, err)
            mdist.barrier()
            if is_main:
                Path(str(final) + ".done").unlink(missing_ok=True)
        else:
            log.info("%s: reusing %s", name, final)
            model.load_state_dict(state["model"])
            return summary
    if is_main:
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / "last.pt").unlink(missing_ok=True)  # the old per-epoch format
        ckpt.remove_stale_temporaries(ckpt_dir)
        ckpt.remove_stale_temporaries(stage_dir)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameter_groups(cfg.get("lr_word"), cfg.get("lr_rest") if args.lr is None
                                                         else args.lr, cfg.get("weight_decay")))
    sampler = train_loader.batch_sampler
    if not isinstance(sampler, mdist.GlobalBatchSampler):
        raise TypeError("train_stage needs a loader from make_loader (a GlobalBatchSampler)")
    collator = train_loader.collate_fn
    max_steps = args.max_steps
    planned = epochs * sampler.batches_per_epoch
    if max_steps is not None:
        planned = min(planned, max_steps)
    scheduler = build_scheduler(optimizer, args.lr_schedule, args.warmup_steps, planned)

    start_epoch, start_batch, step, elapsed = 0, 0, 0, 0.0
    last_terms: dict = {}
    pending_rng = None
    found = None
    if args.resume:
        def accept(payload: dict) -> str | None:
            if payload.get("stage") != name or payload.get("key") != key:
                return "written by another configuration of this stage"
            return None

        path = None
        if is_main:
            hit = ckpt.latest_valid_checkpoint(ckpt_dir, name, accept=accept, map_location="cpu")
            path = str(hit[0]) if hit is not None else None
        path = mdist.broadcast_object(path)
        if path is not None:
            found = ckpt.read_checkpoint(path, map_location="cpu")
            log.info("%s: resuming from %s (step %d, epoch %d, batch %d)", name, Path(path).name, found["step"],
                     found["epoch"], found["batch"])
        else:
            log.info("%s: --resume: no usable checkpoint, starting the stage from scratch", name)
    elif is_main:
        stale = ckpt.remove_checkpoints(ckpt_dir, name)
        if stale:
            log.warning("%s: removed %d checkpoint(s) of an earlier run (pass --resume to continue one)",
                        name, len(stale))
    if found is not None:
        model.load_state_dict(found["model"])
        optimizer.load_state_dict(found["optimizer"])
        scheduler.load_state_dict(found["scheduler"])
        start_epoch, start_batch, step = found["epoch"], found["batch"], found["step"]
        elapsed, last_terms = found.get("elapsed", 0.0), dict(found.get("last_terms", {}))
        rng_states = found["rng"]
        if len(rng_states) == mdist.world_size():
            pending_rng = rng_states[mdist.rank()]
        else:
            log.warning("%s: the checkpoint was written by %d processes, this run has %d: random streams "
                        "restart (the resumed run is not bit-identical)", name, len(rng_states), mdist.world_size())
        metrics.rewind(name, step)
        del found

    module = model
    if mdist.is_distributed():
        from torch.nn.parallel import DistributedDataParallel as DDP

        module = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = torch.compile(module, backend=args.compile) if args.compile else module

    def save(epoch: int, batch: int) -> None:
        rng = mdist.all_gather_object(capture_rng_state(collator))
        if not is_main:
            return
        payload = {"format": "mate-train-checkpoint", "stage": name, "key": key, "step": step, "epoch": epoch,
                   "batch": batch, "world_size": mdist.world_size(), "model": model.state_dict(),
                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                   "sampler": {**sampler.state_dict(), "epoch": epoch, "start": batch},
                   "elapsed": elapsed + time.time() - t0, "last_terms": last_terms}
        path = ckpt.write_checkpoint(ckpt.checkpoint_path(ckpt_dir, name, step), payload)
        ckpt.prune_checkpoints(ckpt_dir, name, args.keep_checkpoints)
        log.debug("%s: checkpoint %s", name, path)
        _debug_hang_after_checkpoint(name, step)

    def finished() -> bool:
        return max_steps is not None and step >= max_steps

    t0 = time.time()
    for epoch in range(start_epoch, epochs):
        if finished():
            break
        sampler.set_epoch(epoch)
        sampler.set_start(start_batch if epoch == start_epoch else 0)
        batch_index = sampler.start
        batches = iter(train_loader)
        if pending_rng is not None:  # after the iterator exists: exactly where the checkpoint was taken
            restore_rng_state(pending_rng, collator)
            pending_rng = None
        bar = tqdm(batches, total=len(sampler), desc=f"{name} epoch {epoch + 1}/{epochs}", leave=False,
                   dynamic_ncols=True, disable=not is_main)
        for batch in bar:
            inputs = model_inputs(batch, device)
            if args.compile:
                mark_dynamic_dims(inputs)
            with amp_context(device, args.amp):
                out = step_fn(inputs)
            optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            batch_index += 1
            local = {"total": out.total.item(), **{k: v.item() for k, v in out.terms.items()}}
            last_terms = mdist.mean_over_ranks(local, device)  # the global batch's values
            if not all(math.isfinite(v) for v in last_terms.values()):
                raise FloatingPointError(f"{name}: non-finite loss at step {step}: {last_terms}")
            bar.set_postfix(loss=f"{last_terms['total']:.4f}")
            if step % args.log_every == 0:
                metrics.scalars(name, "train", epoch, step, last_terms)
            if args.save_every and step % args.save_every == 0 and batch_index < sampler.batches_per_epoch \
                    and not finished():
                save(epoch, batch_index)
            if finished():
                break
        val = {}
        if val_loader is not None and is_main:
            val = validation_losses(model, val_loader, device, amp=args.amp)
        mdist.barrier()
        metrics.scalars(name, "val", epoch, step, val)
        log.info("%s: epoch %d/%d step %d  train %s  val %s", name, epoch + 1, epochs, step,
                 _fmt(last_terms), _fmt(val))
        if not finished() and epoch + 1 < epochs:
            save(epoch + 1, 0)
    summary = {"steps": step, "seconds": round(elapsed + time.time() - t0, 1), "last_train": last_terms}
    if is_main:
        atomic_torch_save({"model": model.state_dict(), "config": model.config.to_dict()}, final)
        atomic_write_json(stage_dir / "summary.json", summary)
        mark_done(final, key)
        ckpt.remove_checkpoints(ckpt_dir, name)
    mdist.barrier()
    return summary


def _fmt(values: dict) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in values.items()) or "-"


# ------------------------------------------------------------------------------ segmentation
@torch.no_grad()
def compute_segments(model, view, subtexts: dict, run_dir: Path, device, key: str, clips_per_batch: int = 16) -> dict:
    """Per caption key: {"subtexts": [...], "bounds_frames": [0, ..., L]} in the clip's frames.

    The clips are taken ``clips_per_batch`` at a time: their grid sub-clips and the sub-texts of
    all their captions are encoded in one batched pass (``partition_clips``), and their DPs
    solved together, so memory stays bounded by one batch's cost tables.
    Under torchrun the clips are shared out among the ranks (round robin), each rank segments its
    share, the results are gathered on every rank, and rank 0 writes ``segments.json``."""
    from tqdm.auto import tqdm

    from mate.model.segmentation import partition_clips
    from mate.segment import unit_grid

    path = run_dir / "segments.json"
    if cached(path, key):
        log.info("segments: reusing %s", path)
        return json.loads(path.read_text())
    was_training = model.training
    model.to(device).eval()
    local = {}
    merged = segmented = 0
    # Group the captions by clip so that each clip's G(G+1)/2 sub-clips are encoded once.
    by_clip: dict[tuple, list[int]] = {}
    for i, r in enumerate(view.records):
        by_clip.setdefault((r.motion_id, r.start_frame, r.end_frame), []).append(i)
    groups = list(by_clip.values())[mdist.rank()::mdist.world_size()]
    clips = []
    for indices in groups:
        length = int(view.lengths[indices[0]])
        grid = unit_grid(length, view.fps)
        wanted = []
        for i in indices:
            key_i, parts = view.records[i].caption.key, subtexts[view.records[i].caption.key]
            if len(parts) == 1 or len(parts) > len(grid) - 1:
                merged += len(parts) > 1
                local[key_i] = {"subtexts": [" ".join(parts)] if len(parts) > 1 else parts, "bounds_frames": [0, length]}
            else:
                wanted.append((key_i, parts))
        # the motion is loaded only when some caption needs the DP
        clips.append((lambda i=indices[0]: view[i]["motion"].to(device), grid, wanted))
    with tqdm(total=len(clips), desc="segments", leave=False, dynamic_ncols=True,
              disable=not mdist.is_main_process()) as bar:
        for covered, done in partition_clips(model, clips, clips_per_batch):
            for k, grid, part in done:
                local[k] = {"subtexts": subtexts[k], "bounds_frames": part.frames(grid).tolist()}
            segmented += len(done)
            bar.update(covered)
    shares = mdist.all_gather_object((local, merged, segmented))
    found = {k: v for share, _, _ in shares for k, v in share.items()}
    segments = {r.caption.key: found[r.caption.key] for r in view.records if r.caption.key in found}
    log.info("segments: %d captions segmented by the DP, %d with more sub-texts than grid units kept whole",
             sum(n for _, _, n in shares), sum(m for _, m, _ in shares))
    if mdist.is_main_process():
        atomic_write_json(path, segments)
        mark_done(path, key)
    mdist.barrier()
    model.train(was_training)
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
    dropout = getattr(args, "dropout", None)
    extra = {} if dropout is None else {"motion_dropout": dropout, "attention_dropout": dropout}
    # lambda1 weighs the word losses only: stage 0 keeps the default, so that its config (and
    # cache key) does not change with it and runs that differ only in lambda1 share one stage 0.
    for name in ("lambda_word", "lambda_sent") if word_losses else ("lambda_sent",):
        if getattr(args, name, None) is not None:
            extra[name] = getattr(args, name)
    config = MATEConfig(
        d_model=cfg.get("d_model"), motion_layers=cfg.get("motion_layers"), motion_heads=cfg.get("motion_heads"),
        motion_ff=cfg.get("motion_ff"), prior_variant=args.prior,
        use_rec=not args.no_rec, use_sent=not args.no_sent,
        use_self=word_losses and not args.no_self, use_cross=word_losses and not args.no_cross,
        use_align=word_losses and not args.no_align, **extra,
    )
    return MATEModel(encoder, feature_dim, num_prototypes, config, impl="auto" if args.fused else "reference")


def setup_logging(run_dir: Path, main_process: bool = True) -> None:
    """Rank 0: INFO to stderr and RUN/train.log. Other ranks: warnings to stderr only."""
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s" if main_process else
                            f"%(asctime)s %(levelname)s [rank {mdist.rank()}] %(message)s", "%H:%M:%S")
    root = logging.getLogger("mate")
    root.setLevel(logging.INFO if main_process else logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers = [logging.StreamHandler(sys.stderr)]
    if main_process:
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    for handler in handlers:
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
    world = mdist.torchrun_world_size()
    if cfg.get("batch_size") % world:
        raise SystemExit(f"error: --batch-size {cfg.get('batch_size')} (the global batch) must be divisible by "
                         f"the {world} processes")
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    env = mdist.init_distributed(args.device)
    try:
        if args.deterministic:
            enable_determinism()
        return _run(cfg, env)
    finally:
        if args.deterministic:
            torch.use_deterministic_algorithms(deterministic_before)
        if env.enabled:
            mdist.destroy_distributed()


def _run(cfg: RunConfig, env: mdist.DistEnv) -> dict:
    args = cfg.args
    run_dir = args.out
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    mdist.barrier()
    setup_logging(run_dir, env.is_main)
    seed_everything(args.seed)
    device = env.device
    started = time.time()
    if args.amp and device.type == "cpu":
        log.info("--amp on a CPU: bfloat16 CPU autocast (fast only on CPUs with native bf16, e.g. AMX/AVX512-BF16)")
    log.info("run directory %s, device %s, processes %d, preset %s, encoder %s, fused %s, amp %s, compile %s",
             run_dir, device, env.world_size, args.preset, args.encoder, args.fused, args.amp, args.compile)

    from mate.data.dataset import MotionTextDataset
    from mate.text.encoders import build_text_encoder

    data_root = main_process_first(prepare_data, cfg, run_dir)
    # Training items come uncropped; SeededSamples crops them (randomness per (seed, epoch, index)).
    train_set = MotionTextDataset(data_root, "train", seed=args.seed, crop_frames=None)
    from mate.data.dataset import DEFAULT_CROP_FRAMES

    view = MotionTextDataset(data_root, "train", crop="start")  # deterministic, for segmentation
    val_set = MotionTextDataset(data_root, "val", crop="start") if (data_root / "val.txt").exists() or \
        (data_root / "splits" / "val.txt").exists() else None
    log.info("data: %s (%s), %d training captions, %d validation", data_root, train_set.dataset_name,
             len(train_set), len(val_set) if val_set is not None else 0)
    if len(train_set) == 0:
        counts = train_set.filter_counts
        raise ValueError(f"{data_root}: the train split has no usable clip: {counts['too_short']} captions' clips are "
                         f"too short (< {train_set.min_frames} frames) and {counts['too_long']} too long "
                         f"(>= {train_set.max_frames} frames) for the standard length filter")
    subtexts = main_process_first(compute_subtexts, cfg, run_dir, train_set.records)
    vocab = main_process_first(build_vocab, run_dir, train_set.records)
    batch_size = cfg.get("batch_size")
    metrics = MetricsLog(run_dir, enabled=env.is_main)
    common_key = {"data": str(data_root), "encoder": args.encoder, "preset": args.preset, "seed": args.seed,
                  "batch": batch_size, "lr": [cfg.get("lr_word"), cfg.get("lr_rest")], "max_steps": args.max_steps,
                  "fused": args.fused, "n": len(train_set), "schedule": [args.lr_schedule, args.warmup_steps],
                  "amp": args.amp, "compile": args.compile, "captions": captions_fingerprint(train_set.records),
                  "motions": motions_fingerprint(train_set),
                  "subtexts": file_fingerprint(args.subtexts)}

    def loaders(dataset, collate, val_dataset, val_collate):
        train = make_loader(dataset, collate, batch_size, args.seed, num_workers=args.num_workers,
                            crop_frames=DEFAULT_CROP_FRAMES, world_size=env.world_size, rank=env.rank)
        val = None
        if val_dataset is not None and len(val_dataset) > 0:
            val = make_loader(val_dataset, val_collate, batch_size, args.seed, shuffle=False, drop_last=False)
        return train, val

    def distribute(model):
        model.batch_gather = mdist.BatchGather(env.feature_group) if env.enabled else None
        return model

    memory: dict[str, dict] = {}

    @contextlib.contextmanager
    def measured(stage: str):
        """Wall time and peak memory (host RSS; CUDA allocated on a GPU) of one stage, logged and
        kept for summary.json's ``memory``."""
        with track_peak_memory(stage, cuda_device=device if device.type == "cuda" else None) as mem:
            yield
        memory[stage] = mem.as_dict()
        log.info("memory: %s", mem)

    try:
        # Stage 0: the retrieval baseline (L_rec + L_sent).
        seed_everything(stage_seed(args.seed, 0))
        encoder = build_text_encoder(args.encoder)
        model0 = distribute(build_model(cfg, encoder, train_set.feature_dim, len(vocab), word_losses=False))
        stage0_key = fingerprint({**common_key, "stage": 0, "epochs": cfg.get("stage0_epochs"),
                                  "model": model0.config.to_dict()})
        train0, val0 = loaders(train_set, Collator(encoder, seed=args.seed), val_set, Collator(encoder, seed=args.seed))
        with measured("stage0"):
            summary = {"stage0": train_stage("stage0", model0, train0, val0, cfg, device, run_dir,
                                             cfg.get("stage0_epochs"), metrics, stage0_key)}

        # Segmentation with the stage-0 encoders.
        with measured("segments"):
            segments = compute_segments(model0, view, subtexts, run_dir, device, fingerprint({"stage0": stage0_key}))
        words = word_samples(train_set.records, segments, vocab)
        val_words = None
        if val_set is not None:
            val_segments = {r.caption.key: {"subtexts": [r.caption.text], "bounds_frames": [0, r.num_frames]}
                            for r in val_set.records}
            val_words = word_samples(val_set.records, val_segments, vocab)
        del model0

        # Stage 1: MATE, from the original encoder (the baseline is "MATE without L_word").
        seed_everything(stage_seed(args.seed, 1))
        encoder = build_text_encoder(args.encoder)
        model1 = distribute(build_model(cfg, encoder, train_set.feature_dim, len(vocab), word_losses=True))
        vocab_token_ids = encoder.word_token_ids(list(vocab.index_to_word))
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
            val_subset = torch.utils.data.Subset(val_set, [i for i, r in enumerate(val_set.records)
                                                           if val_words[r.caption.key]])
        train1, val1 = loaders(torch.utils.data.Subset(train_set, usable), Collator(encoder, words, seed=args.seed),
                               val_subset, Collator(encoder, val_words, seed=args.seed))
        stage1_key = fingerprint({**common_key, "stage": 1, "epochs": cfg.get("epochs"), "model": model1.config.to_dict(),
                                  "segments": fingerprint(segments)})
        with measured("stage1"):
            summary["stage1"] = train_stage("stage1", model1, train1, val1, cfg, device, run_dir, cfg.get("epochs"),
                                            metrics, stage1_key)
    finally:
        metrics.close()

    if not args.no_export and env.is_main:
        with measured("export"):
            out = encoder.export(run_dir / "encoder", overwrite=True)
        log.info("export: %s (load it with transformers.AutoModel.from_pretrained or mate.load_text_encoder)", out)
    summary.update({"trainable_parameters": report, "seconds": round(time.time() - started, 1),
                    "device": str(device), "processes": env.world_size, "preset": args.preset,
                    "encoder": args.encoder, "fused": args.fused, "amp": args.amp, "compile": args.compile,
                    "memory": memory})
    if env.is_main:
        atomic_write_json(run_dir / "summary.json", summary)
    mdist.barrier()
    log.info("done in %.1f s; run directory %s", summary["seconds"], run_dir)
    return summary


if __name__ == "__main__":
    main()
