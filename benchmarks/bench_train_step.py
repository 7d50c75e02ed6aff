"""One MATE training step (all losses, forward + backward + AdamW): eager vs --fused (and
torch.compile of the whole loss function), in samples per second.

    python benchmarks/bench_train_step.py --preset paper --device cuda     # the issue's target
    python benchmarks/bench_train_step.py --preset cpu-small               # what runs here

Fused = the model's ops at impl="auto": the Triton kernels on CUDA, the torch.compile'd ops on
CPU. Batches come from a synthetic set generated once into --data (default: a temp folder).

The step is what ``mate.train.trainer.Trainer.step`` does without the gradient clipping and the
scheduler: ``model.loss(batch)`` (features, then ``mate.model.losses.mate_loss``), backward,
AdamW. ``--with-compile`` times ``mate.train.trainer.loss_function(model, compile_backend=
"inductor")``: one torch.compile of features and losses, as ``python -m mate.train --compile``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch

from common import environment, write_results

from mate.data.dataset import MotionTextDataset
from mate.model.mate_model import MATEConfig, MATEModel
from mate.text.encoders import build_text_encoder
from mate.train import PRESETS
from mate.train.batches import Collator, to_device
from mate.train.trainer import loss_function


def make_batches(data: Path, encoder, batch_size: int, count: int, num_prototypes: int):
    dataset = MotionTextDataset(data, "train", crop="start")
    words = {}
    for r in dataset.records:  # the training pipeline's word sampling needs segments; any word will do here
        tokens = [w.strip(".,").lower() for w in r.caption.text.split()]
        words[r.caption.key] = [(w, zlib.crc32(w.encode()) % num_prototypes, 0, max(2, r.num_frames // 2)) for w in tokens[1:4]]
    collate = Collator(encoder, words, seed=0)
    n = len(dataset)
    return [collate([dataset[(b * batch_size + i) % n] for i in range(batch_size)]) for b in range(count)]


def time_steps(model, batches, device, steps: int, warmup: int, loss_of=None) -> float:
    """Median seconds of one step: ``loss_of(batch)`` (default ``model.loss``: features and all
    losses), backward, AdamW."""
    optimizer = torch.optim.AdamW(model.parameter_groups(1e-5, 1e-4))
    batches = [to_device(b, device) for b in batches]
    loss_of = model.loss if loss_of is None else loss_of

    def step(batch):
        losses = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()

    for i in range(warmup):
        step(batches[i % len(batches)])
    times = []
    for i in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(batches[i % len(batches)])  # rotate batches: caches do not flatter
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--vocab", type=int, default=5161, help="prototypes (HumanML3D: 5,161)")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--with-compile", action="store_true", help="also torch.compile the whole eager step")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    preset = PRESETS[args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from mate.data.synthetic import write_dataset

            data = Path(tmp) / "data"
            write_dataset(data, num_motions=max(48, 2 * preset["batch_size"]), seed=0, progress=False)
        results = {}
        for name, impl in (("eager", "reference"), ("fused", "auto")):
            torch.manual_seed(0)
            encoder = build_text_encoder(args.encoder)
            config = MATEConfig(d_model=preset["d_model"], motion_layers=preset["motion_layers"],
                                motion_heads=preset["motion_heads"], motion_ff=preset["motion_ff"])
            model = MATEModel(encoder, 263, args.vocab, config, impl=impl).to(device)
            batches = make_batches(data, encoder, preset["batch_size"], 4, args.vocab)
            seconds = time_steps(model, batches, device, args.steps, args.warmup)
            results[name] = {"seconds_per_step": seconds, "samples_per_s": preset["batch_size"] / seconds}
            print(f"{name}: {seconds * 1e3:.1f} ms/step, {preset['batch_size'] / seconds:.1f} samples/s", flush=True)
            if args.with_compile:  # --compile (eager ops) and --fused --compile
                label = "compile" if name == "eager" else "fused_compile"
                compiled_loss = loss_function(model, compile_backend="inductor")  # features + losses, one graph
                seconds = time_steps(model, batches, device, args.steps, args.warmup, loss_of=compiled_loss)
                results[label] = {"seconds_per_step": seconds, "samples_per_s": preset["batch_size"] / seconds}
                print(f"{label}: {seconds * 1e3:.1f} ms/step, {preset['batch_size'] / seconds:.1f} samples/s", flush=True)
    for name in results:
        results[name]["speedup_vs_eager"] = results["eager"]["seconds_per_step"] / results[name]["seconds_per_step"]
    payload = {"benchmark": "train_step", "preset": args.preset, "encoder": args.encoder, "batch_size": preset["batch_size"],
               "prototypes": args.vocab, "steps": args.steps, "warmup": args.warmup, "results": results,
               "target": "fused >= 1.5x eager at the paper preset on GPU", "environment": environment()}
    path = write_results(f"train_step_{args.preset}_{device.type}", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
