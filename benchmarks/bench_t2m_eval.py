"""Cost of the standard evaluator (``mate.t2m_eval``) per batch, and what a full evaluation costs.

The released networks' sizes (random weights: the cost does not depend on them): one batch of 32
motions padded to 196 frames through the movement convolutions and the 1024-wide bidirectional
GRU, and 32 captions of 22 tokens through the text GRU; median after warm-up. The estimate for a
whole evaluation multiplies by the number of batches the reference conventions give HumanML3D's
test split (4,384 motions listed; about 4,600 items with the annotated spans, 143 batches of 32 per
pass; the real split is not on this machine, so this count is the published split's, not read).

    python benchmarks/bench_t2m_eval.py [--device cuda]

writes ``benchmarks/results/t2m_eval_<device>.json``.
"""
from __future__ import annotations

import argparse

import torch

from common import environment, median_seconds, write_results
from mate.t2m_eval.networks import MotionEncoderBiGRUCo, MovementConvEncoder, TextEncoderBiGRUCo

BATCHES_PER_PASS = 143   # HumanML3D test split, reference conventions (module docstring)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    movement, motion, text = (m.to(device).eval() for m in (MovementConvEncoder(259), MotionEncoderBiGRUCo(),
                                                            TextEncoderBiGRUCo()))
    g = torch.Generator().manual_seed(0)
    motions = torch.randn(32, 196, 259, generator=g).to(device)
    lengths = (torch.randint(40, 197, (32,), generator=g) // 4 * 4)
    words, pos = torch.randn(32, 22, 300, generator=g).to(device), torch.zeros(32, 22, 15, device=device)
    sent_lens = torch.randint(5, 23, (32,), generator=g)

    @torch.no_grad()
    def motion_batch():
        motion(movement(motions), lengths // 4)
        sync()

    @torch.no_grad()
    def text_batch():
        text(words, pos, sent_lens)
        sync()

    motion_s, motion_n = median_seconds(motion_batch, warmup=2)
    text_s, text_n = median_seconds(text_batch, warmup=2)
    per_batch = motion_s + text_s
    results = {
        "what": __doc__.split("\n\n")[0],
        "batch": {"motions": [32, 196, 263], "captions": [32, 22]},
        "motion_batch_seconds": motion_s, "motion_repeats": motion_n,
        "text_batch_seconds": text_s, "text_repeats": text_n,
        "estimate_humanml3d_test": {
            "batches_per_pass": BATCHES_PER_PASS,
            "real_motions_seconds_per_replication": 2 * BATCHES_PER_PASS * per_batch,   # two passes (FID)
            "real_motions_minutes_20_replications": 20 * 2 * BATCHES_PER_PASS * per_batch / 60,
            "generator_embedding_seconds_per_replication": BATCHES_PER_PASS * (per_batch + motion_s)
            + 3 * 29 * motion_s,   # real + generated motions, and 29 more generations of 3 batches (MultiModality)
            "note": "embedding only; the generator's own sampling time comes on top",
        },
        "environment": environment(),
    }
    path = write_results(f"t2m_eval_{device.type}", results)
    print(f"motion batch {motion_s * 1e3:.0f} ms, text batch {text_s * 1e3:.0f} ms; real motions, 20 replications: "
          f"~{results['estimate_humanml3d_test']['real_motions_minutes_20_replications']:.0f} min -> {path}")


if __name__ == "__main__":
    main()
