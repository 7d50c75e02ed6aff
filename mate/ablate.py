"""``python -m mate.ablate``: the paper's ablations on one dataset, side by side.

Variants (each one ``mate.train`` run in its own sub-directory of ``--out``, then
``mate.evaluate.evaluate_run`` on it):

===============================  ==============================================================
``mate``                         MATE: every loss, Gaussian prior (the reference row of both
                                 tables)
``no_self`` / ``no_cross`` /     Table 3: one word loss removed (``--no-self`` ...)
``no_align``
``no_word``                      Table 3: w/o L_word = L_self, L_cross and L_align all removed
                                 (stage 1 trains L_rec + L_sent only: the baseline)
``prior_none`` /                 Table 6: the localisation prior none (lambda = 0), binary
``prior_binary`` /               (1 inside the segment), Gaussian restricted to the segment;
``prior_gaussian_in_segment``    Gaussian over the whole sequence is ``mate``
===============================  ==============================================================

Every variant is a :class:`mate.train.TrainConfig` run through :func:`mate.train.run`. All read
the same dataset (``--data``, or one synthetic set generated once into ``DIR/data``) and, by
default, share one stage 0: the first variant trains the baseline and segments the captions; the
others start from a copy of those outputs (hard links), which ``mate.train`` reuses because their
cache keys match. Stage 0 trains L_rec + L_sent only, and its configuration leaves out what acts
only through the word losses (the switches, lambda1, the prior), so every variant has the same
stage-0 key. ``--no-share-stage0`` runs every variant from scratch instead.

Outputs: ``DIR/<variant>/`` (a complete run directory with ``eval/metrics.json``),
``DIR/ablation.md`` (Markdown tables, co-trained protocol) and ``DIR/ablation.json``; and, with
``--protocol plug-and-play`` or ``both`` (the default), ``DIR/ablation_plug_and_play.md`` /
``.json``: every variant's frozen encoder, the original and the shared stage-0 table through fresh
downstream probes (:mod:`mate.plug_and_play`; for generated data on a 2,100-motion probe set made
once in ``DIR/probe_data``). Re-running skips finished
variants (same settings); an interrupted variant resumes through ``mate.train``'s own caching.
``--quick`` is a tiny configuration for tests (16 motions, a few optimizer steps).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mate.atomic import atomic_write_text
from mate.cli import add_debug_flag, user_errors
from mate.reporting import format_value
from mate.rundir import RunDir, fingerprint, load_stage_model
from mate.text.antonyms import ANTONYM_WORD_PAIRS
from mate.train import PRESETS, TrainConfig
from mate.train import run as run_training
from mate.train.logs import read_metrics
from mate.train.pipeline import synthetic_dataset

__all__ = ["Variant", "VARIANTS", "VARIANT_NAMES", "QUICK", "KEY_PAIRS", "build_parser", "select_variants",
           "train_config", "run_variant", "run_ablation", "summarise_metrics", "write_tables", "main"]


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    overrides: tuple[tuple[str, Any], ...]   # TrainConfig fields this variant sets
    tables: tuple[str, ...]  # "losses" (Table 3) and/or "prior" (Table 6)

    @property
    def flags(self) -> str:
        """The variant as ``mate.train`` flags (for listings)."""
        return " ".join(f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')} {v}"
                        for k, v in self.overrides) or "(defaults)"


VARIANTS: tuple[Variant, ...] = (
    Variant("mate", "MATE (all losses, Gaussian prior)", (), ("losses", "prior")),
    Variant("no_self", "w/o L_self", (("no_self", True),), ("losses",)),
    Variant("no_cross", "w/o L_cross", (("no_cross", True),), ("losses",)),
    Variant("no_align", "w/o L_align", (("no_align", True),), ("losses",)),
    Variant("no_word", "w/o L_word (= baseline)", (("no_self", True), ("no_cross", True), ("no_align", True)),
            ("losses",)),
    Variant("prior_none", "prior: none (lambda = 0)", (("prior", "none"),), ("prior",)),
    Variant("prior_binary", "prior: binary", (("prior", "binary"),), ("prior",)),
    Variant("prior_gaussian_in_segment", "prior: Gaussian in segment", (("prior", "gaussian_in_segment"),),
            ("prior",)),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)

#: ``--quick``: a tiny configuration that runs in seconds (for tests).
QUICK = dict(synthetic_motions=16, stage0_epochs=1, epochs=1, batch_size=8, max_steps=2, log_every=1)

#: Antonym pairs shown as their own columns (when the evaluation reports them).
KEY_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ANTONYM_WORD_PAIRS
                                               if p[0] in ("clockwise", "left", "forward", "quickly"))

_VARIANT_RECORD = "ablation_variant.json"


def _shared_files(run: RunDir) -> list[Path]:
    """The outputs of a finished stage 0 (and of what only depends on it), with their markers,
    that a variant can start from."""
    outputs = [run.stage_model("stage0"), run.subtexts, run.vocab, run.segments]
    return outputs + [p.with_name(p.name + ".done") for p in outputs] + [run.stage_summary("stage0")]


def _say(message: str) -> None:
    print(f"[mate.ablate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mate.ablate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/ablation"), help="output directory (default: runs/ablation)")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder shared by every variant; default: a synthetic set generated once into OUT/data")
    p.add_argument("--encoder", default="minilm", help="text encoder spec, as for mate.train (default: minilm)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (training and evaluation)")
    p.add_argument("--quick", action="store_true",
                   help="tiny configuration for tests: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--variants", default="all",
                   help=f"comma-separated subset of: {', '.join(VARIANT_NAMES)} (default: all)")
    p.add_argument("--list", action="store_true", help="print the variants and exit")
    p.add_argument("--preset", default="cpu-small", help="mate.train preset (default: cpu-small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="stage-1 epochs (default: the preset's)")
    p.add_argument("--stage0-epochs", type=int, default=None, help="stage-0 epochs (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: the preset's)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps per stage")
    p.add_argument("--synthetic-motions", type=int, default=None,
                   help="size of the generated synthetic set (default: the preset's; ignored with --data)")
    p.add_argument("--lr-word", type=float, default=None, help="word-table learning rate (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the rest (default: the preset's)")
    p.add_argument("--lambda-word", type=float, default=None, help="lambda1, weight of L_word (default 0.1)")
    p.add_argument("--lambda-sent", type=float, default=None, help="lambda2, weight of L_sent (default 0.1)")
    p.add_argument("--fused", action="store_true", help="train with the fused ops (mate.train --fused)")
    p.add_argument("--eval-split", default="test", help="split evaluated (default: test)")
    p.add_argument("--no-share-stage0", action="store_true",
                   help="train every variant's stage 0 itself instead of sharing the first variant's")
    p.add_argument("--force", action="store_true",
                   help="re-run finished variants (mate.train still reuses its cached stages) and re-evaluate them")
    g = p.add_argument_group("plug-and-play protocol (mate.plug_and_play)")
    g.add_argument("--protocol", choices=("co-trained", "plug-and-play", "both"), default="both",
                   help="co-trained: each variant scored through its own heads (the tables above); "
                        "plug-and-play: every variant's frozen stage-1 encoder, the original and the shared "
                        "stage-0 table through fresh downstream probes, in one comparison (the paper's "
                        "protocol); both (default)")
    g.add_argument("--probe-data", type=Path, default=None,
                   help="dataset of the probes (default: with generated data, a 2,100-motion synthetic set "
                        "made once in OUT/probe_data; with --data or --quick, the variants' dataset)")
    g.add_argument("--seeds", type=int, default=None, help="probe seeds (default 5; 2 with --quick)")
    g.add_argument("--probe-epochs", type=int, default=None, help="probe epochs (default 30; 2 with --quick)")
    g.add_argument("--probes", default="pooled,tokens",
                   help="pooled, tokens or both (default: both; pooled alone is ~3x faster)")
    add_debug_flag(p)
    return p


def select_variants(spec: str) -> list[Variant]:
    """``"all"`` or comma-separated variant names (ValueError naming an unknown one), in the
    canonical order."""
    if spec.strip() in ("", "all"):
        return list(VARIANTS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANT_NAMES)}")
    return [v for v in VARIANTS if v.name in names]


def _settings(args: argparse.Namespace) -> dict:
    """The training settings every variant shares (``--quick`` fills in what is not given)."""
    quick = QUICK if args.quick else {}
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else quick.get(name)  # noqa: E731
    return {"preset": args.preset, "seed": args.seed, "encoder": args.encoder, "device": args.device,
            "fused": bool(args.fused), "epochs": pick("epochs"), "stage0_epochs": pick("stage0_epochs"),
            "batch_size": pick("batch_size"), "max_steps": pick("max_steps"),
            "synthetic_motions": None if args.data is not None else pick("synthetic_motions"),
            "log_every": quick.get("log_every"), "lr_word": args.lr_word, "lr": args.lr,
            "lambda_word": args.lambda_word, "lambda_sent": args.lambda_sent}


def train_config(variant: Variant, run_dir: Path, data_dir: Path, settings: dict) -> TrainConfig:
    """The :class:`mate.train.TrainConfig` of one variant (no export: the tables need none)."""
    values = {name: settings[name] for name in ("encoder", "preset", "seed", "device", "fused", "epochs",
                                                "stage0_epochs", "batch_size", "max_steps", "lr_word", "lr",
                                                "lambda_word", "lambda_sent")
              if settings.get(name) is not None}
    if settings.get("log_every") is not None:
        values["log_every"] = settings["log_every"]
    return TrainConfig(data=data_dir, out=run_dir, no_export=True, **values, **dict(variant.overrides))


# ----------------------------------------------------------------------------------- the data
def prepare_data(args: argparse.Namespace, out: Path, settings: dict) -> Path:
    """--data, or a synthetic set generated once into OUT/data (reused while its size and seed
    are unchanged; :func:`mate.train.pipeline.synthetic_dataset`)."""
    if args.data is not None:
        if not args.data.is_dir():
            raise NotADirectoryError(f"--data {args.data} is not a directory")
        return args.data.resolve()
    motions = settings["synthetic_motions"] or PRESETS.get(settings["preset"], {}).get("synthetic_motions", 200)
    return synthetic_dataset((out / "data").resolve(), int(motions), settings["seed"])


# ------------------------------------------------------------------------------ stage sharing
def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".ablate-tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # the trainer replaces files by rename, so a shared inode is never written
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def seed_shared_stage0(run_dir: Path, source: Path) -> bool:
    """Give ``run_dir`` the finished stage-0 outputs of ``source`` (unless it has its own).
    Returns whether anything was copied."""
    run, src = RunDir(run_dir), RunDir(source)
    if run.is_done(run.stage_model("stage0")):
        return False
    files = _shared_files(src)
    if not all(f.is_file() for f in files):
        return False
    for f, dst in zip(files, _shared_files(run)):
        _link_or_copy(f, dst)
    return True


# ------------------------------------------------------------------------------- the metrics
def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _get(tree, *path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def final_loss(run_dir: Path, name: str = "self", stage: str = "stage1") -> tuple[float | None, str]:
    """The last value of L_<name> of ``stage`` in RUN/metrics.csv: the last validation value when
    there is one, else the last training value. Returns (value, "val"|"train"|"-")."""
    last = {"val": None, "train": None}
    for row in read_metrics(RunDir(run_dir).metrics_csv, missing_ok=True):
        if row["stage"] == stage and row["name"] == name and row["split"] in last:
            last[row["split"]] = row["value"]
    for split in ("val", "train"):
        if last[split] is not None:
            return last[split], split
    return None, "-"


def summarise_metrics(metrics: dict, run_dir: Path) -> dict:
    """The table row of one variant, from its ``evaluate_run`` metrics (``antonym_swap_accuracy``
    = {model: {overall, per_pair}} in percent; ``retrieval`` = {model: {protocol: {t2m, m2t}}},
    protocol ``small_batches`` = random batches of 32) and its metrics.csv (final L_self)."""
    swap = _get(metrics, "antonym_swap_accuracy") or {}
    per_pair = _get(swap, "mate", "per_pair") or {}
    l_self, l_self_split = final_loss(run_dir, "self")
    return {
        "antonym_swap_accuracy": _number(_get(swap, "mate", "overall")),
        "antonym_swap_accuracy_pairs": {f"{a}/{b}": _number(per_pair.get(f"{a}/{b}")) for a, b in KEY_PAIRS},
        "antonym_swap_tests": _get(swap, "mate", "counts", "total"),
        "antonym_swap_accuracy_baseline": _number(_get(swap, "baseline", "overall")),
        "antonym_swap_accuracy_original": _number(_get(swap, "original", "overall")),
        "r1_t2m_batch32": _number(_get(metrics, "retrieval", "mate", "small_batches", "t2m", "R@1")),
        "r1_m2t_batch32": _number(_get(metrics, "retrieval", "mate", "small_batches", "m2t", "R@1")),
        "r1_batch_size": _get(metrics, "meta", "small_batches", "batch_size"),
        "r1_t2m_all": _number(_get(metrics, "retrieval", "mate", "all", "t2m", "R@1")),
        "final_l_self": l_self,
        "final_l_self_split": l_self_split,
    }


# ----------------------------------------------------------------------------------- the tables
def _fmt(value, digits: int = 1) -> str:
    return format_value(value, digits)


def write_tables(out: Path, results: dict, settings: dict, eval_split: str = "test") -> tuple[Path, Path]:
    """DIR/ablation.md and DIR/ablation.json from ``results`` = {variant name: record}."""
    atomic_write_text(out / "ablation.json", json.dumps({"settings": settings, "eval_split": eval_split,
                                                    "variants": results}, indent=1, default=str) + "\n")
    pair_names = [f"{a}/{b}" for a, b in KEY_PAIRS]
    header = (["Variant", "swap acc. (%)"] + [f"swap {p}" for p in pair_names]
              + ["R@1 t2m (B=32)", "R@1 m2t (B=32)", "final L_self"])
    lines = ["# MATE ablations", "",
             "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
             + f"; evaluated on the `{eval_split}` split with `mate.evaluate.evaluate_run`.", "",
             "Antonym-swap accuracy (percent of antonym occurrences where the true caption scores above the "
             "caption with that word swapped) and R@1 (percent, random batches of 32 clips, one caption each) "
             "are the variant's stage-1 model's. Final L_self is the last stage-1 validation value "
             "(– where L_self is not trained).", ""]
    done = [r for r in results.values() if r.get("status") == "done"]
    if done:
        row = done[0]["row"]
        smaller = [r["name"] for r in done if (r["row"].get("r1_batch_size") or 32) < 32]
        lines += [f"Reference: antonym-swap accuracy of the original encoder "
                  f"{_fmt(row.get('antonym_swap_accuracy_original'))} %, of the stage-0 baseline "
                  f"{_fmt(row.get('antonym_swap_accuracy_baseline'))} % ({row.get('antonym_swap_tests')} tests)."]
        if smaller:
            lines.append(f"The split has fewer than 32 clips: R@1 batches hold "
                         f"{done[0]['row'].get('r1_batch_size')} clips.")
        lines.append("")
    tables = (("losses", "Table 3: word losses"), ("prior", "Table 6: localisation prior"))
    for key, title in tables:
        present = [v for v in VARIANTS if key in v.tables and v.name in results]
        if not present:
            continue
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for v in present:
            r = results[v.name]
            label = "prior: Gaussian (= MATE)" if key == "prior" and v.name == "mate" else v.label
            if r.get("status") != "done":
                status = str(r.get("status", "not run")).replace("|", "/").replace("\n", " ")[:120]
                lines.append("| " + " | ".join([label, f"({status})"] + [""] * (len(header) - 2)) + " |")
                continue
            row = r["row"]
            cells = [label, _fmt(row.get("antonym_swap_accuracy"))]
            cells += [_fmt(row.get("antonym_swap_accuracy_pairs", {}).get(p)) for p in pair_names]
            cells += [_fmt(row.get("r1_t2m_batch32")), _fmt(row.get("r1_m2t_batch32")),
                      _fmt(row.get("final_l_self"), 3)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    atomic_write_text(out / "ablation.md", "\n".join(lines))
    return out / "ablation.md", out / "ablation.json"


# --------------------------------------------------------------------------------- the runs
def _default_evaluate() -> Callable:
    from mate.evaluate import evaluate_run

    return evaluate_run


def run_variant(variant: Variant, out: Path, data_dir: Path, settings: dict, share_from: Path | None,
                evaluate_fn: Callable, eval_split: str = "test", force: bool = False,
                share_stage0: bool = True) -> dict:
    """Train (or reuse) and evaluate one variant; returns its record for ablation.json (also
    kept in ``DIR/<variant>/ablation_variant.json``, which makes a re-run skip it)."""
    run_dir = out / variant.name
    config = train_config(variant, run_dir, data_dir, settings)
    key = fingerprint({"config": config.to_dict(), "eval_split": eval_split, "share": share_stage0})
    record_path = run_dir / _VARIANT_RECORD
    if not force and record_path.is_file() and (run_dir / "eval" / "metrics.json").is_file():
        try:
            record = json.loads(record_path.read_text())
        except ValueError:
            record = {}
        if record.get("key") == key and record.get("status") == "done":
            return {**record, "skipped": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    if share_stage0 and share_from is not None and share_from != run_dir and seed_shared_stage0(run_dir, share_from):
        _say(f"{variant.name}: starting from the stage 0 of {share_from.name}")
    started = time.time()
    summary = run_training(config)
    trained = time.time() - started
    shared = bool(summary["stage0"].get("reused"))
    _say(f"{variant.name}: trained in {trained:.0f} s ({'shared' if shared else 'own'} stage 0); evaluating")
    started = time.time()
    metrics = evaluate_fn(run_dir, split=eval_split, device=settings["device"], batch_size=64, seed=settings["seed"])
    evaluated = time.time() - started
    metrics_path = run_dir / "eval" / "metrics.json"
    if not metrics_path.is_file():  # an evaluator that only returns its metrics
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(metrics_path, json.dumps(metrics, indent=1, default=str) + "\n")
    record = {"name": variant.name, "label": variant.label, "status": "done", "key": key, "config": config.to_dict(),
              "eval_split": eval_split, "train_seconds": round(trained, 1), "eval_seconds": round(evaluated, 1),
              "stage0_shared": shared,
              "steps": {s: (summary.get(s) or {}).get("steps") for s in ("stage0", "stage1")},
              "row": summarise_metrics(metrics, run_dir), "metrics": str(metrics_path)}
    atomic_write_text(record_path, json.dumps(record, indent=1, default=str) + "\n")
    return {**record, "skipped": False}


def _share_source(out: Path, exclude: str) -> Path | None:
    """The first variant directory (canonical order) with a finished stage 0 and segmentation."""
    for v in VARIANTS:
        candidate = out / v.name
        if v.name != exclude and all(f.is_file() for f in _shared_files(RunDir(candidate))):
            return candidate
    return None


def run_ablation(args: argparse.Namespace, evaluate_fn: Callable | None = None) -> dict:
    """Every selected variant, then the tables. Returns {variant name: record}."""
    variants = select_variants(args.variants)
    settings = _settings(args)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    evaluate_fn = evaluate_fn or _default_evaluate()
    data_dir = prepare_data(args, out, settings)
    share = not args.no_share_stage0
    results: dict[str, dict] = {}
    previous = out / "ablation.json"
    if previous.is_file():  # keep the rows of variants not selected this time
        try:
            old = json.loads(previous.read_text())
            if old.get("settings") == settings:
                results.update(old.get("variants", {}))
        except ValueError:
            pass
    total = time.time()
    for i, variant in enumerate(variants, 1):
        tag = f"[{i}/{len(variants)}] {variant.name}"
        _say(f"{tag}: {variant.label} -> {out / variant.name}")
        try:
            record = run_variant(variant, out, data_dir, settings, _share_source(out, variant.name) if share else None,
                                 evaluate_fn, eval_split=args.eval_split, force=args.force, share_stage0=share)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failed variant does not lose the others; re-run to retry it
            _say(f"{tag}: FAILED: {type(e).__name__}: {e}")
            results[variant.name] = {"name": variant.name, "label": variant.label,
                                     "status": f"failed: {type(e).__name__}: {e}"}
            write_tables(out, results, settings, args.eval_split)
            continue
        skipped = record.pop("skipped")
        row = record["row"]
        verdict = "finished earlier, skipped" if skipped else \
            f"train {record['train_seconds']:.0f} s, eval {record['eval_seconds']:.0f} s"
        _say(f"{tag}: {verdict}: antonym-swap acc. {_fmt(row.get('antonym_swap_accuracy'))} %, "
             f"R@1 (B=32) t2m {_fmt(row.get('r1_t2m_batch32'))} m2t {_fmt(row.get('r1_m2t_batch32'))}, "
             f"final L_self {_fmt(row.get('final_l_self'), 3)}")
        results[variant.name] = record
        write_tables(out, results, settings, args.eval_split)
    md, js = write_tables(out, results, settings, args.eval_split)
    failed = [n for n, r in results.items() if r.get("status") != "done"]
    _say(f"{len(variants)} variant(s) in {time.time() - total:.0f} s"
         + (f"; FAILED: {', '.join(failed)}" if failed else "") + f": {md}, {js}")
    if args.protocol in ("plug-and-play", "both"):
        done = [v.name for v in VARIANTS if results.get(v.name, {}).get("status") == "done"]
        if done:
            results["plug_and_play"] = plug_and_play_table(out, done, _probe_data(args, out, data_dir),
                                                           _probe_config(args), args.eval_split)
    return results


def _probe_data(args: argparse.Namespace, out: Path, data_dir: Path) -> Path:
    """--probe-data; else, for generated data, the larger synthetic probe set of
    :func:`mate.plug_and_play.probe_data` (in OUT/probe_data); else the variants' dataset."""
    from mate.plug_and_play import PROBE_SET_MOTIONS, PROBE_SET_SEED

    if args.probe_data is not None:
        if not args.probe_data.is_dir():
            raise NotADirectoryError(f"--probe-data {args.probe_data} is not a directory")
        return args.probe_data
    if args.data is None and not args.quick:
        return synthetic_dataset((out / "probe_data").resolve(), PROBE_SET_MOTIONS, PROBE_SET_SEED)
    return data_dir


def _probe_config(args: argparse.Namespace):
    from mate.plug_and_play import ProbeConfig

    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    epochs = args.probe_epochs if args.probe_epochs is not None else (2 if args.quick else ProbeConfig.epochs)
    probes = tuple(p.strip() for p in args.probes.split(",") if p.strip())
    return ProbeConfig(seeds=tuple(range(seeds)), epochs=epochs, probes=probes)


def plug_and_play_table(out: Path, variants: Sequence[str], probe_data: Path, config, split: str = "test") -> dict:
    """One plug-and-play comparison (:mod:`mate.plug_and_play`) of the original encoder, the
    shared stage-0 table (from the first variant) and every variant's stage-1 encoder; written to
    ``DIR/ablation_plug_and_play.json`` and ``.md``."""
    from mate import plug_and_play

    first = out / variants[0]
    encoders = plug_and_play.encoders_of_run(first)
    encoders.pop("mate", None)
    for name in variants:
        encoders[name] = (lambda run=out / name: load_stage_model(run, 1).text_encoder)
    _say(f"plug-and-play: {len(encoders)} frozen encoders through fresh probes on {probe_data}")
    results = plug_and_play.compare_encoders(encoders, probe_data, config, split=split)
    atomic_write_text(out / "ablation_plug_and_play.json", json.dumps(results, indent=1) + "\n")
    atomic_write_text(out / "ablation_plug_and_play.md", "\n".join(
        ["# MATE ablations under the plug-and-play protocol", "",
         "`baseline` is the shared stage 0; every other row but `original` is a variant's stage 1.", ""]
        + plug_and_play.report_lines(results)))
    _say(f"plug-and-play: {out / 'ablation_plug_and_play.md'} in {results['seconds']:.0f} s")
    return results


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m mate.ablate``: a user's mistake exits with one ``error:`` line (:mod:`mate.cli`;
    ``--debug``: the traceback)."""
    args = build_parser().parse_args(argv)
    if args.list:
        for v in VARIANTS:
            print(f"{v.name:27s} {v.label:36s} mate.train {v.flags}")
        return {}
    with user_errors(args.debug):
        try:
            select_variants(args.variants)
        except ValueError as e:
            raise ValueError(f"--variants: {e}") from None
        if args.preset not in PRESETS:
            raise ValueError(f"--preset {args.preset!r}: choose from {', '.join(sorted(PRESETS))}")
        if args.protocol != "co-trained":
            try:   # before hours of training, not after
                _probe_config(args)
            except ValueError as e:
                raise ValueError(f"--probes / --seeds / --probe-epochs: {e}") from None
        return run_ablation(args)


if __name__ == "__main__":
    main()
