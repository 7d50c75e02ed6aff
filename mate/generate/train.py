"""Owns training the generator: ``python -m mate.generate.train --data DIR --encoder SPEC --out GEN_RUN``.

Data: the ``train`` split of a HumanML3D-layout (or TMR-layout) folder through
:class:`mate.data.dataset.MotionTextDataset` (normalised with the folder's Mean/Std, random crops
of up to ``max_frames`` frames, the dataset's length filter, bad motions skipped with a warning).
Each epoch visits every training clip once with one of its captions drawn at random
(:data:`mate.generate.config.CAPTION_SAMPLING`). Every distinct caption is encoded once by the
frozen encoder and cached (:mod:`mate.generate.text`). Without ``--data``, ``--synthetic N``
generates a synthetic set of N motions into ``GEN_RUN/data``.

One process, one device (no torchrun / DDP). Checkpoints each epoch (atomic, checksummed;
``--resume`` continues from the newest valid one), ``--amp`` (bfloat16 autocast), ``--compile``
(``torch.compile``; on a failure it warns and trains eagerly), the manifest ``run.json`` and
``summary.json`` (seconds, steps, loss, peak memory) as in :mod:`mate.generate.rundir`.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mate.atomic import atomic_torch_save, atomic_write, atomic_write_json
from mate.checkpoint import latest_valid_checkpoint, prune_checkpoints, write_checkpoint, checkpoint_path
from mate.generate.config import CAPTION_SAMPLING, PRESETS, GenConfig, preset
from mate.generate.diffusion import GaussianDiffusion
from mate.generate.model import DenoiserConfig, MotionDenoiser, TextCondition
from mate.generate.rundir import GenRunDir, read_gen_manifest, write_gen_manifest
from mate.generate.text import build_encoder, describe_source, encode_captions_cached, encoder_fingerprint
from mate.rundir import fingerprint, mark_done

__all__ = ["train_generator", "main", "build_parser", "set_threads"]

log = logging.getLogger("mate.generate")
STAGE = "gen"


def _training_set(data_root: Path, config: GenConfig):
    from mate.data.dataset import MotionTextDataset

    dataset = MotionTextDataset(data_root, "train", strict=False, captions="all", crop="random",
                                crop_frames=config.max_frames, seed=config.seed)
    if len(dataset) == 0:
        raise ValueError(f"{data_root}: the train split has no usable caption (after the length filter)")
    return dataset


def _epoch_items(clip_groups: list[list[int]], rng: np.random.Generator) -> list[int]:
    """One random caption item per clip, in a random order."""
    picks = [group[int(rng.integers(len(group)))] for group in clip_groups]
    return [picks[i] for i in rng.permutation(len(picks))]


def _check_same_run(run: GenRunDir, manifest: dict) -> None:
    """A ``--resume`` into a run made with other settings is refused, naming the differences."""
    old = read_gen_manifest(run.root)
    diffs = []
    for section in ("config", "denoiser"):
        for key in sorted(set(old[section]) | set(manifest[section])):
            if key in ("amp", "compile", "epochs"):  # how long and how fast, not what is trained
                continue
            a, b = old[section].get(key), manifest[section].get(key)
            if a != b:
                diffs.append(f"{key}: {a!r} -> {b!r}")
    if old["encoder"].get("fingerprint") != manifest["encoder"]["fingerprint"]:
        diffs.append(f"encoder: {old['encoder'].get('source')} -> {manifest['encoder']['source']} (other weights)")
    if diffs:
        raise ValueError(f"--resume: {run.root} was made with other settings ({'; '.join(diffs)}); "
                         f"resume with the original flags or train into a new --out")


class _CompileOrEager:
    """``torch.compile(model)`` that falls back to the eager model, with a warning, when
    compiling fails (at wrapping or at the first call: e.g. no C compiler on a CPU machine)."""

    def __init__(self, model: torch.nn.Module, wanted: bool):
        self.model, self.compiled = model, None
        if wanted:
            try:
                self.compiled = torch.compile(model)
            except Exception as err:  # noqa: BLE001 - compile is an optional speed-up
                log.warning("--compile: torch.compile failed (%s); training eagerly", err)
        self.tried = False

    @property
    def active(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args):
        if self.compiled is None:
            return self.model(*args)
        if self.tried:
            return self.compiled(*args)
        try:
            out = self.compiled(*args)
            self.tried = True
            return out
        except Exception as err:  # noqa: BLE001 - the first call compiles; fall back on any failure
            log.warning("--compile: compiling failed at the first step (%s); training eagerly", str(err)[:300])
            self.compiled = None
            return self.model(*args)


def _prepare(data_root: Path, encoder_source: str, run: GenRunDir, config: GenConfig, device, progress: bool):
    """The dataset, the encoded captions, the manifest fields and the denoiser's config."""
    kind, where = describe_source(encoder_source)  # a bad source fails before the data is indexed
    dataset = _training_set(data_root, config)
    encoder = build_encoder(encoder_source, device)
    encoder_key = encoder_fingerprint(encoder)
    captions = sorted({r.caption.text for r in dataset.records})
    features = encode_captions_cached(encoder, captions, run.text_cache, tokens=config.cross_attention,
                                      encoder_key=encoder_key, progress=progress)
    token_dim = int(features.token_values.shape[1]) if features.has_tokens else 0
    denoiser = DenoiserConfig(feature_dim=dataset.feature_dim, text_dim=int(features.pooled.shape[1]),
                              token_dim=token_dim, max_frames=config.max_frames, width=config.width,
                              layers=config.layers, heads=config.heads, ff=config.ff, dropout=config.dropout,
                              cross_attention=config.cross_attention, cond_drop_prob=config.cond_drop_prob)
    manifest = {"config": config.to_dict(), "denoiser": denoiser.to_dict(),
                "encoder": {"kind": kind, "source": where, "fingerprint": encoder_key,
                            "class": type(encoder).__name__},
                "data": {"root": str(Path(data_root).resolve()), "dataset": dataset.dataset_name,
                         "fps": dataset.fps, "feature_dim": dataset.feature_dim, "train_items": len(dataset),
                         "captions": CAPTION_SAMPLING}}
    return dataset, captions, features, denoiser, manifest


def train_generator(data_root: str | Path, encoder_source: str, out: str | Path, config: GenConfig, *,
                    resume: bool = False, device: str = "auto", progress: bool = True,
                    max_steps: int | None = None, argv: Sequence[str] | None = None) -> dict:
    """Train a generator into ``out`` (layout: :mod:`mate.generate.rundir`) and return the summary.

    ``max_steps`` stops early (smoke runs and tests; the final model is still written, and the
    cut epoch counts as done for a later ``resume``).
    Raises FileExistsError when ``out`` already holds a run and ``resume`` is False, ValueError
    when ``resume`` meets a run of other settings."""
    # Long because it is the training loop itself, read top to bottom: prepare, restore, fit, save.
    from tqdm.auto import tqdm

    from mate.data.dataset import collate_motion_text, distinct_clips
    from mate.distributed import resolve_device
    from mate.memory import track_peak_memory

    run = GenRunDir(Path(out))
    if run.manifest.exists() and not resume:
        raise FileExistsError(f"{run.root} already holds a generator run; pass --resume to continue it or choose a new --out")
    device = resolve_device(device)
    torch.manual_seed(config.seed)
    with track_peak_memory("generator", cuda_device=device if device.type == "cuda" else None) as memory:
        dataset, captions, features, denoiser_config, manifest = _prepare(Path(data_root), encoder_source, run,
                                                                          config, device, progress)
        if resume and run.manifest.exists():
            _check_same_run(run, manifest)
        write_gen_manifest(run, argv=argv, **manifest)
        for path, values in ((run.mean, dataset.mean.numpy()), (run.std, dataset.std.numpy())):
            atomic_write(path, lambda f, values=values: np.save(f, values))
        caption_row = {c: i for i, c in enumerate(captions)}
        clip_of, _ = distinct_clips(dataset.records)
        groups: dict[int, list[int]] = {}
        for item, clip in enumerate(clip_of.tolist()):
            groups.setdefault(clip, []).append(item)
        clip_groups = list(groups.values())

        model = MotionDenoiser(denoiser_config).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        diffusion = GaussianDiffusion(config.diffusion_steps)
        same = {k: v for k, v in manifest["config"].items() if k not in ("amp", "compile", "epochs")}
        key = fingerprint({"config": same, "denoiser": manifest["denoiser"],
                           "encoder": manifest["encoder"]["fingerprint"]})
        start_epoch, step, losses = 0, 0, []
        if resume:
            found = latest_valid_checkpoint(run.checkpoints, STAGE,
                                            accept=lambda p: None if p.get("key") == key else "other settings")
            if found is not None:
                path, payload = found
                model.load_state_dict(payload["model"])
                optimizer.load_state_dict(payload["optimizer"])
                start_epoch, step, losses = int(payload["epoch"]), int(payload["step"]), list(payload["losses"])
                torch.set_rng_state(payload["torch_rng"])
                if device.type == "cuda" and "cuda_rng" in payload:
                    torch.cuda.set_rng_state(payload["cuda_rng"], device)
                log.info("resuming from %s (epoch %d, step %d)", path.name, start_epoch, step)
        forward = _CompileOrEager(model, config.compile)
        amp = config.amp
        generator = torch.Generator()
        started = time.perf_counter()
        done = max_steps is not None and step >= max_steps
        for epoch in range(start_epoch, config.epochs):
            if done:
                break
            # Every draw of an epoch (captions, crops, condition drops) is seeded by (seed, epoch), and
            # torch's global RNG (timesteps, noise, dropout) travels in the checkpoint: a resumed run
            # repeats the uninterrupted one exactly (on the same machine and settings).
            rng = np.random.default_rng([config.seed, epoch])
            generator.manual_seed(config.seed * 1_000_003 + epoch)
            epoch_view = dataset.with_options(seed=config.seed * 100_003 + epoch)  # crops: reproducible per epoch
            loader = torch.utils.data.DataLoader(epoch_view, batch_size=config.batch_size,
                                                 sampler=_epoch_items(clip_groups, rng),
                                                 collate_fn=collate_motion_text)
            model.train()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress,
                       leave=False)
            epoch_losses = []
            for batch in bar:
                rows = [caption_row[c] for c in batch["caption"]]
                cond = TextCondition(*features.batch(rows)).to(device)
                x0, mask = batch["motion"].to(device), batch["mask"].to(device)
                drop = torch.rand(x0.shape[0], generator=generator) < config.cond_drop_prob
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = diffusion.training_loss(
                        lambda x_t, t: forward(x_t, t, mask, cond, drop.to(device)), x0, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f"the loss became {value} at step {step}; lower --lr or turn --amp off")
                epoch_losses.append(value)
                bar.set_postfix(loss=f"{value:.4f}")
                if max_steps is not None and step >= max_steps:
                    done = True
                    break
            losses.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
            log.info("epoch %d: loss %.4f (step %d)", epoch + 1, losses[-1], step)
            write_checkpoint(checkpoint_path(run.checkpoints, STAGE, step),
                             {"key": key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "epoch": epoch + 1, "step": step, "losses": losses,
                              "torch_rng": torch.get_rng_state(),
                              **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {})})
            prune_checkpoints(run.checkpoints, STAGE, keep=2)
        seconds = time.perf_counter() - started
        atomic_torch_save({"model": model.state_dict(), "denoiser": denoiser_config.to_dict()}, run.model)
        mark_done(run.model, key)
    summary = {"seconds_training": round(seconds, 2), "seconds_total": round(memory.seconds, 2), "steps": step,
               "epochs_done": len(losses), "epoch_losses": losses, "parameters": model.parameter_count(),
               "device": str(device), "amp": amp, "compiled": forward.active, "train_items": len(dataset),
               "train_clips": len(clip_groups), "distinct_captions": len(captions),
               "torch_threads": torch.get_num_threads(), "memory": memory.as_dict()}
    atomic_write_json(run.summary, summary)
    return summary


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` (None: leave torch's default); ValueError below 1."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    from mate.cli import add_debug_flag

    p = argparse.ArgumentParser(prog="python -m mate.generate.train",
                                description="Train a text-to-motion diffusion generator on a frozen text encoder.")
    p.add_argument("--data", help="HumanML3D/TMR-layout dataset folder (train split)")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="without --data: generate a synthetic set of N motions into OUT/data")
    p.add_argument("--encoder", required=True,
                   help="text encoder: a spec (minilm, hf:NAME_OR_PATH, clip), a MATE export folder or a MATE run")
    p.add_argument("--out", required=True, help="the generator run directory to write")
    p.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--cross-attention", action="store_true", default=None,
                   help="also cross-attend over the encoder's token features (MMM-style)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (smoke runs)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the denoiser (falls back to eager, with a warning, when compiling fails)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 is much faster on a "
                                               "CPU shared with another job, see docs/generation.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_flag(p)
    return p


def _data_folder(args, out: Path) -> Path:
    if args.data is not None:
        if args.synthetic is not None:
            raise ValueError("pass --data or --synthetic, not both")
        if not Path(args.data).is_dir():
            raise FileNotFoundError(f"--data {args.data} is not a directory")
        return Path(args.data)
    if args.synthetic is None:
        raise ValueError("--data DIR is required (a HumanML3D-layout folder), or --synthetic N for a synthetic set")
    if args.synthetic < 1:
        raise ValueError(f"--synthetic must be a positive number of motions, got {args.synthetic}")
    from mate.train.pipeline import synthetic_dataset

    return synthetic_dataset(out / "data", args.synthetic, seed=0, progress=not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
    from mate.cli import user_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with user_errors(args.debug):
        if args.max_steps is not None and args.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
        set_threads(args.threads)
        config = preset(args.preset).with_overrides(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            cross_attention=args.cross_attention, amp=args.amp, compile=args.compile)
        out = Path(args.out)
        data = _data_folder(args, out)
        summary = train_generator(data, args.encoder, out, config, resume=args.resume, device=args.device,
                                  progress=not args.no_progress, max_steps=args.max_steps, argv=argv)
        print(f"trained {summary['steps']} steps in {summary['seconds_training']:.1f} s; "
              f"the generator is in {out} (sample with `python -m mate.generate --model {out} --text ...`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
