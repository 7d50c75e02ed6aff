"""One training stage: a small trainer with restore / fit / validate / save, and the stage cache.

The step, in full (:meth:`Trainer.step`)::

    losses = mate_loss(model(batch))          # features -> L_rec, L_sent, L_self, L_cross, L_align, L_all
    optimizer.zero_grad(); losses.total.backward()
    clip_grad_norm_(params, 1.0); optimizer.step(); scheduler.step()

Checkpoints go to ``RUN/checkpoints/<stage>-stepNNNNNNNN.ckpt`` at the end of every epoch and
every ``save_every`` steps (the last ``keep_checkpoints`` kept); ``resume`` continues an
interrupted stage from the last valid one, mid-epoch, bit-identical under ``deterministic``.
Under torchrun the model is wrapped in DDP, the batches are this rank's share of the global batch,
and only rank 0 writes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from mate import checkpoint as ckpt
from mate import distributed as mdist
from mate.atomic import atomic_torch_save, atomic_write_json
from mate.model.losses import Losses, mate_loss
from mate.rundir import RunDir, forget, is_cached, mark_done

from .batches import mark_dynamic_dims, model_inputs, to_device
from .config import TrainConfig
from .logs import MetricsLog, format_terms
from .rng import capture_rng_state, restore_rng_state

__all__ = ["Trainer", "train_stage", "amp_context", "build_scheduler", "loss_function", "validation_losses"]

log = logging.getLogger("mate.train")

CHECKPOINT_FORMAT = "mate-train-checkpoint"


def amp_context(device: torch.device, enabled: bool):
    """bfloat16 autocast on ``device``'s type when ``enabled`` (CUDA; CPU autocast on a CPU)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


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
                out = model.loss(to_device(batch, device))
            for name, value in {"total": out.total, **out.terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            n += 1
    finally:
        model.batch_gather = gather
        model.train(was_training)
    return {k: v / max(n, 1) for k, v in sums.items()}


def loss_function(model, module=None, compile_backend: str | None = None):
    """What a training step calls: model inputs (dict of tensors) -> :class:`Losses`, i.e.
    ``mate_loss(module(inputs))`` with ``module`` the model or its DDP wrapper. With a
    ``compile_backend`` the whole function -- features and losses -- is one ``torch.compile``."""
    module = model if module is None else module

    def loss_of(inputs: dict) -> Losses:
        return mate_loss(module(inputs), model.config, model.impl)

    return torch.compile(loss_of, backend=compile_backend) if compile_backend else loss_of


def _debug_hang_after_checkpoint(name: str, step: int) -> None:
    """Fault-injection hook for the crash tests: ``MATE_DEBUG_HANG_AFTER_CHECKPOINT=stage1:3``
    makes the process stop making progress once that checkpoint is on disk, so that a test can
    SIGKILL it at a known point."""
    spec = os.environ.get("MATE_DEBUG_HANG_AFTER_CHECKPOINT")
    if spec and spec == f"{name}:{step}":
        log.warning("debug hook: hanging after checkpoint %s step %d", name, step)
        while True:
            time.sleep(1.0)


class Trainer:
    """Trains ``model`` for one stage: ``restore()`` (from a checkpoint, with ``config.resume``),
    ``fit()`` (the epochs; returns the stage summary), ``validate()``, ``save()``."""

    def __init__(self, name: str, model, train_loader, val_loader, config: TrainConfig, device: torch.device,
                 run: RunDir, epochs: int, metrics: MetricsLog, key: str):
        self.name, self.model, self.config, self.device = name, model, config, device
        self.train_loader, self.val_loader, self.run, self.epochs = train_loader, val_loader, run, epochs
        self.metrics, self.key = metrics, key
        self.is_main = mdist.is_main_process()
        self.sampler = train_loader.batch_sampler
        if not isinstance(self.sampler, mdist.GlobalBatchSampler):
            raise TypeError("Trainer needs a loader from make_loader (a GlobalBatchSampler)")
        self.collator = train_loader.collate_fn
        model.to(device).train()
        self.optimizer = torch.optim.AdamW(model.parameter_groups(config.lr_word, config.lr, config.weight_decay))
        planned = epochs * self.sampler.batches_per_epoch
        if config.max_steps is not None:
            planned = min(planned, config.max_steps)
        self.scheduler = build_scheduler(self.optimizer, config.lr_schedule, config.warmup_steps, planned)
        self.start_epoch = self.start_batch = self.step_count = 0
        self.elapsed, self.last_terms, self.pending_rng = 0.0, {}, None
        self._t0 = time.time()

    # ------------------------------------------------------------------------- checkpoints
    def restore(self) -> bool:
        """With ``config.resume``: load the last valid checkpoint of this stage and key (model,
        optimizer, scheduler, position; the RNG states are restored when the epoch starts).
        Without: remove this stage's checkpoints of an earlier run. Returns whether it resumed."""
        ckpt_dir = self.run.checkpoints
        if not self.config.resume:
            if self.is_main:
                stale = ckpt.remove_checkpoints(ckpt_dir, self.name)
                if stale:
                    log.warning("%s: removed %d checkpoint(s) of an earlier run (pass --resume to continue one)",
                                self.name, len(stale))
            return False

        def accept(payload: dict) -> str | None:
            if payload.get("stage") != self.name or payload.get("key") != self.key:
                return "written by another configuration of this stage"
            return None

        path = None
        if self.is_main:
            hit = ckpt.latest_valid_checkpoint(ckpt_dir, self.name, accept=accept, map_location="cpu")
            path = str(hit[0]) if hit is not None else None
        path = mdist.broadcast_object(path)
        if path is None:
            log.info("%s: --resume: no usable checkpoint, starting the stage from scratch", self.name)
            return False
        found = ckpt.read_checkpoint(path, map_location="cpu")
        log.info("%s: resuming from %s (step %d, epoch %d, batch %d)", self.name, Path(path).name, found["step"],
                 found["epoch"], found["batch"])
        self.model.load_state_dict(found["model"])
        self.optimizer.load_state_dict(found["optimizer"])
        self.scheduler.load_state_dict(found["scheduler"])
        self.start_epoch, self.start_batch, self.step_count = found["epoch"], found["batch"], found["step"]
        self.elapsed, self.last_terms = found.get("elapsed", 0.0), dict(found.get("last_terms", {}))
        rng_states = found["rng"]
        if len(rng_states) == mdist.world_size():
            self.pending_rng = rng_states[mdist.rank()]
        else:
            log.warning("%s: the checkpoint was written by %d processes, this run has %d: random streams "
                        "restart (the resumed run is not bit-identical)", self.name, len(rng_states),
                        mdist.world_size())
        self.metrics.rewind(self.name, self.step_count)
        return True

    def save(self, epoch: int, batch: int) -> None:
        """Checkpoint the position ``(epoch, batch)`` (every rank's RNG states; rank 0 writes)."""
        rng = mdist.all_gather_object(capture_rng_state(self.collator))
        if not self.is_main:
            return
        payload = {"format": CHECKPOINT_FORMAT, "stage": self.name, "key": self.key, "step": self.step_count,
                   "epoch": epoch, "batch": batch, "world_size": mdist.world_size(),
                   "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict(), "rng": rng,
                   "sampler": {**self.sampler.state_dict(), "epoch": epoch, "start": batch},
                   "elapsed": self.elapsed + time.time() - self._t0, "last_terms": self.last_terms}
        path = ckpt.write_checkpoint(ckpt.checkpoint_path(self.run.checkpoints, self.name, self.step_count), payload)
        ckpt.prune_checkpoints(self.run.checkpoints, self.name, self.config.keep_checkpoints)
        log.debug("%s: checkpoint %s", self.name, path)
        _debug_hang_after_checkpoint(self.name, self.step_count)

    # ---------------------------------------------------------------------------- training
    def _loss_function(self):
        """:func:`loss_function` of the model, DDP-wrapped under torchrun."""
        module = self.model
        if mdist.is_distributed():
            from torch.nn.parallel import DistributedDataParallel as DDP

            module = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return loss_function(self.model, module, self.config.compile)

    def finished(self) -> bool:
        return self.config.max_steps is not None and self.step_count >= self.config.max_steps

    def step(self, loss_of, batch: dict) -> dict:
        """One optimizer step on ``batch``; returns the global batch's loss terms (floats)."""
        inputs = model_inputs(batch, self.device)
        if self.config.compile:
            mark_dynamic_dims(inputs)
        with amp_context(self.device, self.config.amp):
            losses = loss_of(inputs)
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        local = {"total": losses.total.item(), **{k: v.item() for k, v in losses.terms.items()}}
        terms = mdist.mean_over_ranks(local, self.device)   # the global batch's values
        if not all(math.isfinite(v) for v in terms.values()):
            raise FloatingPointError(f"{self.name}: non-finite loss at step {self.step_count}: {terms}")
        return terms

    def train_epoch(self, loss_of, epoch: int) -> None:
        """The steps of ``epoch`` from where it starts (mid-epoch after a resume)."""
        from tqdm.auto import tqdm

        self.sampler.set_epoch(epoch)
        self.sampler.set_start(self.start_batch if epoch == self.start_epoch else 0)
        batch_index = self.sampler.start
        batches = iter(self.train_loader)
        if self.pending_rng is not None:  # after the iterator exists: exactly where the checkpoint was taken
            restore_rng_state(self.pending_rng, self.collator)
            self.pending_rng = None
        bar = tqdm(batches, total=len(self.sampler), desc=f"{self.name} epoch {epoch + 1}/{self.epochs}",
                   leave=False, dynamic_ncols=True, disable=not self.is_main)
        for batch in bar:
            self.last_terms = self.step(loss_of, batch)
            batch_index += 1
            bar.set_postfix(loss=f"{self.last_terms['total']:.4f}")
            if self.step_count % self.config.log_every == 0:
                self.metrics.scalars(self.name, "train", epoch, self.step_count, self.last_terms)
            every = self.config.save_every
            if every and self.step_count % every == 0 and batch_index < self.sampler.batches_per_epoch \
                    and not self.finished():
                self.save(epoch, batch_index)
            if self.finished():
                break

    def validate(self) -> dict:
        """Validation losses (rank 0; {} without a validation loader or on other ranks)."""
        if self.val_loader is None or not self.is_main:
            return {}
        return validation_losses(self.model, self.val_loader, self.device, amp=self.config.amp)

    def fit(self) -> dict:
        """Every remaining epoch (or up to ``max_steps``); keeps ``RUN/<stage>/model.pt`` and
        returns ``{"steps", "seconds", "last_train"}``."""
        loss_of = self._loss_function()
        self._t0 = time.time()
        for epoch in range(self.start_epoch, self.epochs):
            if self.finished():
                break
            self.train_epoch(loss_of, epoch)
            val = self.validate()
            mdist.barrier()
            self.metrics.scalars(self.name, "val", epoch, self.step_count, val)
            log.info("%s: epoch %d/%d step %d  train %s  val %s", self.name, epoch + 1, self.epochs,
                     self.step_count, format_terms(self.last_terms), format_terms(val))
            if not self.finished() and epoch + 1 < self.epochs:
                self.save(epoch + 1, 0)
        summary = {"steps": self.step_count, "seconds": round(self.elapsed + time.time() - self._t0, 1),
                   "last_train": self.last_terms}
        if self.is_main:
            final = self.run.stage_model(self.name)
            atomic_torch_save({"model": self.model.state_dict(), "config": self.model.config.to_dict()}, final)
            atomic_write_json(self.run.stage_summary(self.name), summary)
            mark_done(final, self.key)
            ckpt.remove_checkpoints(self.run.checkpoints, self.name)
        mdist.barrier()
        return summary


def _load_finished_stage(name: str, model, run: RunDir, device, key: str) -> dict | None:
    """The summary of a finished stage with this key, its weights loaded into ``model``; None
    (and the stale marker dropped) when there is none or it cannot be read."""
    final = run.stage_model(name)
    if not is_cached(final, key):
        return None
    try:
        state = torch.load(final, map_location=device, weights_only=True)
        summary = json.loads(run.stage_summary(name).read_text())
    except Exception as err:  # noqa: BLE001 - any unreadable cached output is a cache miss
        log.warning("%s: the cached %s (or its summary.json) cannot be read (%s: %s); training the stage again",
                    name, final, type(err).__name__, err)
        mdist.barrier()
        if mdist.is_main_process():
            forget(final)
        return None
    log.info("%s: reusing %s", name, final)
    model.load_state_dict(state["model"])
    return {**summary, "reused": True}


def train_stage(name: str, model, train_loader, val_loader, config: TrainConfig, device, run: RunDir,
                epochs: int, metrics: MetricsLog, key: str) -> dict:
    """Train ``model`` for ``epochs`` (or ``config.max_steps``) and keep ``RUN/<name>/model.pt``;
    a finished stage with the same ``key`` is loaded instead (its summary then has
    ``"reused": True``)."""
    reused = _load_finished_stage(name, model, run, device, key)
    if reused is not None:
        return reused
    if mdist.is_main_process():
        stage_dir = run.stage_dir(name)
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / "last.pt").unlink(missing_ok=True)  # the old per-epoch format
        ckpt.remove_stale_temporaries(run.checkpoints)
        ckpt.remove_stale_temporaries(stage_dir)
    trainer = Trainer(name, model, train_loader, val_loader, config, device, run, epochs, metrics, key)
    trainer.restore()
    return {**trainer.fit(), "reused": False}
