"""Segmentation cost tables (paper, Eq. 1): one motion at a time vs batched across motions.

    python benchmarks/bench_segmentation.py                 # writes benchmarks/results/segmentation_<device>.json
    python benchmarks/bench_segmentation.py --clips 16      # quicker

What is timed is the work of ``mate.train.pipeline.compute_segments`` (through
``mate.model.segmentation.segment_captions``) before its dynamic programs: for each clip, E_m of its
G(G+1)/2 grid sub-clips, E_t of its captions' sub-texts, and the cost tables.

- ``one_motion_at_a_time`` (the baseline, how MATE did it before): per motion, the sub-clips sorted
  by length and encoded in padded chunks of 64 with a padding mask; one text-encoder call per
  caption.
- ``subtext_cost_tables`` (``mate.model.segmentation``) with ``clips_per_batch`` clips per call:
  the sub-clips of all of them grouped by exact length (no padding, no mask) and every sub-text in
  one text-encoder call.

Data: the first training clips of a synthetic HumanML3D-layout set (generated into --root if
absent), the cpu-small motion encoder (random weights: the time does not depend on them) and
MiniLM. The tables of both paths are checked equal (and their DP partitions identical).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, median_seconds, write_results  # noqa: E402


def one_motion_at_a_time(model, motions, grids, requests, chunk: int = 64) -> list[np.ndarray]:
    """The baseline: padded, length-sorted chunks of one motion's sub-clips; a text call per caption."""
    from mate.model.segmentation import partition_costs

    out = []
    cache: dict[int, torch.Tensor] = {}
    for i, parts in requests:
        if i not in cache:
            motion, grid = motions[i], grids[i]
            G = len(grid) - 1
            pairs = sorted(((a, b) for a in range(G) for b in range(a + 1, G + 1)), key=lambda ab: grid[ab[1]] - grid[ab[0]])
            feats = None
            for s in range(0, len(pairs), chunk):
                part = pairs[s:s + chunk]
                lengths = torch.tensor([grid[b] - grid[a] for a, b in part])
                clips = motion.new_zeros(len(part), int(lengths.max()), motion.shape[-1])
                for k, (a, b) in enumerate(part):
                    clips[k, : grid[b] - grid[a]] = motion[grid[a]:grid[b]]
                _, f = model.motion_encoder(clips, lengths)
                if feats is None:
                    feats = f.new_zeros(G + 1, G + 1, f.shape[-1])
                feats[[a for a, _ in part], [b for _, b in part]] = f
            cache[i] = feats
        tok = model.text_encoder.tokenize(list(parts))
        out.append(partition_costs(model.encode_text(tok["input_ids"], tok["attention_mask"]), cache[i]))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "mate_bench_segmentation")
    p.add_argument("--data", type=Path, default=None, help="an existing dataset folder (default: generate 200 motions)")
    p.add_argument("--clips", type=int, default=64, help="clips timed (their captions with several sub-texts)")
    p.add_argument("--batches", default="1,16,64", help="clips_per_batch values of the batched path")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mate.data.dataset import MotionTextDataset
    from mate.model.mate_model import MATEConfig, MATEModel
    from mate.model.segmentation import subtext_cost_tables
    from mate.segment import optimal_partition_batch, unit_grid
    from mate.text.encoders import build_text_encoder
    from mate.text.subtexts import split_subtexts

    data = args.data
    if data is None:
        data = args.root / "data"
        if not (data / "train.txt").exists():
            from mate.data.synthetic import write_dataset

            write_dataset(data, num_motions=200, seed=0)
    view = MotionTextDataset(data, "train", crop="start")
    by_clip: dict[tuple, list[int]] = {}
    for i, r in enumerate(view.records):
        by_clip.setdefault((r.motion_id, r.start_frame, r.end_frame), []).append(i)
    motions, grids, requests = [], [], []
    for indices in list(by_clip.values()):
        if len(motions) == args.clips:
            break
        item = view[indices[0]]
        grid = unit_grid(item["length"], view.fps)
        todo = []
        for i in indices:
            rec = view.records[i]
            parts = split_subtexts(rec.caption.text, list(rec.caption.tokens) or None)
            if 1 < len(parts) <= len(grid) - 1:
                todo.append(parts)
        if todo:
            motions.append(item["motion"])
            grids.append(grid)
            requests += [(len(motions) - 1, parts) for parts in todo]
    torch.manual_seed(0)
    model = MATEModel(build_text_encoder("minilm"), view.feature_dim, 94,
                      MATEConfig(d_model=128, motion_layers=2, motion_heads=4, motion_ff=256)).eval()

    def batched(clips_per_batch: int):
        out = []
        for s in range(0, len(motions), clips_per_batch):
            sub = [(i - s, parts) for i, parts in requests if s <= i < s + clips_per_batch]
            out += subtext_cost_tables(model, motions[s:s + clips_per_batch], grids[s:s + clips_per_batch], sub)
        return out

    with torch.no_grad():
        ref = one_motion_at_a_time(model, motions, grids, requests)
        ref_parts = [p.bounds.tolist() for p in optimal_partition_batch(ref)]
        results = {}
        t_ref, _ = median_seconds(lambda: one_motion_at_a_time(model, motions, grids, requests),
                                  min_repeats=args.repeats, min_total_s=0, warmup=1)
        results["one_motion_at_a_time"] = {"seconds": t_ref, "ms_per_clip": 1e3 * t_ref / len(motions)}
        for cpb in (int(x) for x in args.batches.split(",")):
            got = batched(cpb)
            max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
            same = [p.bounds.tolist() for p in optimal_partition_batch(got)] == ref_parts
            t, _ = median_seconds(lambda: batched(cpb), min_repeats=args.repeats, min_total_s=0, warmup=1)
            results[f"batched_{cpb}"] = {"clips_per_batch": cpb, "seconds": t, "ms_per_clip": 1e3 * t / len(motions),
                                         "speedup_vs_one_motion_at_a_time": t_ref / t,
                                         "max_abs_cost_difference": max_diff, "same_partitions": same}
            print(f"clips_per_batch={cpb}: {1e3 * t / len(motions):.1f} ms/clip vs {1e3 * t_ref / len(motions):.1f} "
                  f"({t_ref / t:.2f}x), max |cost diff| {max_diff:.1e}, same partitions: {same}", flush=True)
    env = environment()
    payload = {"benchmark": "bench_segmentation", "environment": env, "torch_threads": torch.get_num_threads(),
               "data": str(data), "clips": len(motions), "captions": len(requests),
               "sub_clips": int(sum(len(g) * (len(g) - 1) // 2 for g in grids)),
               "timing": f"median of {args.repeats} after 1 warm-up", "results": results}
    device = "cpu" if env.get("device") == "cpu" else "cuda"
    print(f"wrote {write_results(f'segmentation_{device}', payload)}")


if __name__ == "__main__":
    main()
