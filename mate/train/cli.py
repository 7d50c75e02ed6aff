"""The command line of ``python -m mate.train``: flags -> :class:`TrainConfig` -> :func:`run`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mate.cli import add_debug_flag, user_errors
from mate.model.losses import LOSS_NAMES
from mate.ops import PRIOR_VARIANTS

from .config import PRESETS, PROTOTYPE_INIT, WORD_SAMPLING, TrainConfig
from .pipeline import run

__all__ = ["build_parser", "config_from_args", "main"]

PACKAGE_DOC = sys.modules["mate.train"].__doc__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mate.train", description=PACKAGE_DOC,
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
    p.add_argument("--prior", choices=list(PRIOR_VARIANTS), default="gaussian",
                   help="localisation prior of the word attention (stage 1; default: gaussian)")
    p.add_argument("--cross-negatives", choices=["literal", "exclude-lemma"], default="literal",
                   help="how L_cross picks its negatives N(i): literal (the paper: the 8 captions least similar to "
                        "Proj(WE(w_i))) or exclude-lemma (the same among captions without w_i's lemma)")
    p.add_argument("--word-sampling", choices=WORD_SAMPLING, default="paper",
                   help="stage 1's sampled words: paper (every vocabulary word, one prototype each; default) or "
                        "motion-words (subject nouns such as 'person' not sampled; synonyms such as "
                        "quickly/rapidly/fast share one prototype)")
    p.add_argument("--prototype-init", choices=PROTOTYPE_INIT, default="proj",
                   help="stage 1's prototypes: proj (P_k = Proj(WE(w_k)) through the freshly initialised Proj, the "
                        "paper; default) or random (rows independent of the word table)")
    p.add_argument("--subclip-crops", type=float, default=0.0, metavar="P",
                   help="stage 0: train on a random sub-clip (1 s to the whole clip) of a motion with probability "
                        "P, paired with its whole caption, so the segmentation cost model also knows short clips "
                        "(default 0)")
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
    p.add_argument("--pytorch-model-bin", action="store_true",
                   help="the export also writes pytorch_model.bin and the slow tokenizer's vocabulary, for the older "
                        "transformers that MDM / TMR environments pin (Hugging Face encoders only)")
    p.add_argument("--strict-data", action="store_true",
                   help="stop at the first bad dataset input (a NaN/inf or empty motion, a missing file, a malformed "
                        "caption) instead of skipping it with one warning that names it (default: skip)")
    add_debug_flag(p)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The (unresolved) :class:`TrainConfig` of parsed command-line flags."""
    values = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__ if hasattr(args, name)}
    values["cross_negatives"] = values.get("cross_negatives", "literal").replace("-", "_")
    return TrainConfig(**values)


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m mate.train``: returns the run summary. A user's mistake exits with one
    ``error:`` line (SystemExit, :mod:`mate.cli`; ``--debug``: the traceback); a bad flag value
    does so before anything is written."""
    args = build_parser().parse_args(argv)
    with user_errors(args.debug):
        config = config_from_args(args).resolve()
        return run(config, argv=list(sys.argv[1:] if argv is None else argv))
