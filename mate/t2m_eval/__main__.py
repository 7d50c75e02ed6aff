"""``python -m mate.t2m_eval``: the standard T2M metrics of real motions or of a generator.

    python -m mate.t2m_eval --data HumanML3D --evaluator checkpoints/t2m --glove glove
    python -m mate.t2m_eval --data HumanML3D --evaluator checkpoints/t2m --glove glove \\
        --generator mypackage.sampling:make_generate_fn

``--generator MODULE:NAME`` names a Python callable: either ``generate_fn(captions, tokens,
lengths)`` itself or a factory taking no argument that returns one (see
:data:`mate.t2m_eval.protocol.GenerateFn`). Without it the real motions are scored (the row to
check a set-up against). Results print as a table and, with ``--out``, as JSON.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Sequence

from mate.cli import add_debug_flag, user_errors

from .evaluator import load_evaluator
from .protocol import METRIC_NAMES, evaluate_generator, evaluate_real


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mate.t2m_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="HumanML3D-layout folder (new_joint_vecs, texts, splits)")
    p.add_argument("--evaluator", type=Path, required=True,
                   help="the dataset's evaluator folder (checkpoints/t2m or checkpoints/kit)")
    p.add_argument("--glove", type=Path, required=True, help="folder of our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl")
    p.add_argument("--dataset", default="humanml3d", choices=("humanml3d", "kit"))
    p.add_argument("--meta", type=Path, default=None, help="the evaluator's mean.npy/std.npy folder (default: found)")
    p.add_argument("--split", default="test")
    p.add_argument("--generator", default=None, metavar="MODULE:NAME", help="a generate_fn or a factory of one")
    p.add_argument("--replications", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mm-batches", type=int, default=3, help="batches of 32 captions for MultiModality (0: skip)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--no-progress", action="store_true")
    add_debug_flag(p)
    return p


def _generator(spec: str):
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"--generator {spec!r}: expected MODULE:NAME")
    try:
        target = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--generator {spec!r}: {err}") from None
    if not callable(target):
        raise ValueError(f"--generator {spec!r} is not callable")
    params = [q for q in inspect.signature(target).parameters.values() if q.default is inspect.Parameter.empty]
    return target() if not params else target


def format_table(report: dict) -> str:
    lines = ["| metric | mean | +- (95 %) |", "|---|---|---|"]
    for name in METRIC_NAMES:
        m = report["metrics"].get(name)
        if m:
            lines.append(f"| {name} | {m['mean']:.4f} | {m['conf']:.4f} |")
    c = report["counts"]
    lines.append(f"\n{c['items']} items, {c['batches_per_pass']} batches of {c['batch_size']} per pass, "
                 f"{c['replications']} replications; skipped motions: {', '.join(c['skipped_motions']) or 'none'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    with user_errors(args.debug):    # a user's mistake: one "error:" line (mate.cli)
        if args.replications < 1:
            raise ValueError(f"--replications must be >= 1, got {args.replications}")
        evaluator = load_evaluator(args.evaluator, args.glove, args.dataset, args.device, args.meta)
        common = dict(split=args.split, replications=args.replications, seed=args.seed, progress=not args.no_progress)
        if args.generator:
            report = evaluate_generator(_generator(args.generator), args.data, evaluator, mm_batches=args.mm_batches,
                                        **common)
        else:
            report = evaluate_real(args.data, evaluator, **common)
    print(format_table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
