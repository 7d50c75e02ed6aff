"""Writing the synthetic benchmark to disk: one motion's arrays and captions, the statistics,
the splits, :func:`write_dataset` and the command line (``python -m mate.data.synthetic``).

``write_dataset(DIR, N, seed=S)`` writes a complete dataset in the HumanML3D layout that the real
loader (:class:`mate.data.dataset.MotionTextDataset`) reads unchanged::

    DIR/new_joint_vecs/<id>.npy   (T, 263) float32 HumanML3D features at 20 fps, 40 <= T <= 196
    DIR/new_joints/<id>.npy       (T, 22, 3) float32 = recover_joints(features) (as HumanML3D's)
    DIR/texts/<id>.txt            3 (sometimes 4) captions, one a line:
                                  ``caption#lemma/UPOS lemma/UPOS ...#0.0#0.0``
    DIR/Mean.npy, DIR/Std.npy     (263,) float32 statistics of the train split (see below)
    DIR/train.txt val.txt test.txt all.txt   ids, one a line (80 / 5 / 15 %, seeded)
    DIR/segments.json             ground truth of every caption (see below)

The joint positions of a plan (:func:`.actions.render_motion`) go through
:func:`mate.data.features.joints_to_features` (HumanML3D's processing: floor, centre, face +Z,
IK, velocities, foot contacts), and ``new_joints`` is :func:`mate.data.features.recover_joints`
of those features, exactly as the released HumanML3D ``new_joints`` files are. The 6D block of
the features is therefore HumanML3D's (swing-only IK rotations relative to the smoothed inverse
heading), *not* the 6D of the rotations that posed the motion: HumanML3D's IK cannot see twist
and uses a different root rotation, so only running ``joints_to_features`` gives a 6D block
consistent with real HumanML3D features. HumanML3D's mirrored "M" copies are not produced.

segments.json
-------------
``{id: [{"caption", "subtexts", "bounds_frames", "actions", "speeds", "text_order",
"spans"}, ...]}``
with one entry per caption line, in the same order as the text file:

* ``subtexts[k]``: the caption substring that describes segment k, segments in **time order**
  (``caption[spans[k][0]:spans[k][1]] == subtexts[k]``);
* ``bounds_frames``: ``[0, b_1, ..., T]`` strictly increasing feature-frame boundaries, segment k
  is frames ``[bounds[k], bounds[k+1])``; ``len(bounds) == len(subtexts) + 1``;
* ``actions[k]``: the action names of segment k (two for a "while" segment);
* ``speeds[k]``: "quick", "normal" or "slow";
* ``text_order``: segment indices in the order their sub-texts appear in the caption.

Mean/Std
--------
Over the train split, like HumanML3D's ``mean_variance``: the per-dimension population std is
averaged within each feature group (root rotation velocity, root linear velocity, root height,
positions, 6D rotations, velocities, foot contacts) and then floored at :data:`STD_FLOOR`
(HumanML3D's group averaging already keeps std away from zero on real data; the floor only guards
tiny synthetic sets where a whole group can be constant, e.g. no foot ever leaves the ground).

(HumanML3D computed its statistics over all released motions; here only the train split
contributes, so evaluation data stays unseen.)

Determinism: motion ``i`` depends only on ``(seed, i)`` (its generators are spawned from
``numpy.random.SeedSequence([seed, i])``), statistics are accumulated in id order, so files are
byte-identical for the same seed whatever the number of worker processes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from mate.cli import add_debug_flag, user_errors
from mate.data.features import feature_layout, joints_to_features, recover_joints
from mate.data.skeleton import HUMANML3D
from mate.data.synthetic.actions import ACTIONS, DURATION_PROFILES, MotionPlan, plan_motion, render_motion
from mate.data.synthetic.captions import CaptionRecord, generate_captions
from mate.data.synthetic.kinematics import _Style

#: Width of the HumanML3D features the generator writes (263).
FEATURE_DIM = HUMANML3D.feature_dim
#: Lower bound of every Std entry (after HumanML3D's per-group averaging).
STD_FLOOR = 1e-3
#: Fractions of the train / val / test splits (HumanML3D: 23384 / 1460 / 4384 of 29228).
SPLIT_FRACTIONS = (0.80, 0.05, 0.15)
#: About 44,970 captions for 14,616 motions in HumanML3D: 3 per motion, a 4th with this chance.
FOURTH_CAPTION_PROBABILITY = 44970 / 14616 - 3.0

# --------------------------------------------------------------------------------------------
# One motion: plan, joints, features, captions
# --------------------------------------------------------------------------------------------

def motion_id(index: int) -> str:
    """File id of motion ``index``: six digits like HumanML3D ("000042"), wider past 999999."""
    return f"{index:06d}"


@dataclass(frozen=True)
class SyntheticMotion:
    """One generated motion.

    id: file id; plan: its segments; features: ``[T, 263]`` float32 (HumanML3D layout);
    joints: ``[T, 22, 3]`` float32 = ``recover_joints(features)``; captions: its captions
    (3, sometimes 4) with their ground truth.
    """

    id: str
    plan: MotionPlan
    features: np.ndarray
    joints: np.ndarray
    captions: tuple[CaptionRecord, ...]

    def text_lines(self) -> list[str]:
        return [c.line for c in self.captions]

    def segment_entries(self) -> list[dict]:
        """The segments.json entries of this motion (one per caption, same order as the text
        file)."""
        bounds = self.plan.bounds
        actions = [s.actions for s in self.plan.segments]
        speeds = [s.speed for s in self.plan.segments]
        return [{"caption": c.text, "subtexts": list(c.subtexts), "bounds_frames": bounds,
                 "actions": actions, "speeds": speeds, "text_order": list(c.text_order),
                 "spans": [list(span) for span in c.spans]} for c in self.captions]


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def motion_from_plan(plan: MotionPlan, rng: np.random.Generator | None = None,
                     style: "_Style | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and joints of a plan, exactly as the dataset files hold them.

    Returns ``(features [T, 263] float32, joints [T, 22, 3] float32)`` with T =
    ``plan.num_frames``: :func:`render_motion` (T+1 poses) -> ``joints_to_features`` (T rows,
    HumanML3D processing: floor, start at the origin facing +Z, IK 6D, velocities, contacts),
    cast to float32 -> ``recover_joints`` (what ``new_joints`` holds). ``rng`` only matters for
    actions with a random detail (turn-around direction, jump distance); ``style`` defaults to
    the neutral performer.
    """
    if not isinstance(plan, MotionPlan) or not plan.segments:
        raise ValueError("plan must be a MotionPlan with at least one segment")
    for segment in plan.segments:
        if segment.action not in ACTIONS:
            raise ValueError(f"unknown action {segment.action!r}; known: {sorted(ACTIONS)}")
        if segment.speed not in ("quick", "normal", "slow"):
            raise ValueError(f"speed must be 'quick', 'normal' or 'slow', got {segment.speed!r}")
        if not 1 <= segment.active <= segment.frames:
            raise ValueError(f"segment {segment.action!r}: need 1 <= active ({segment.active}) "
                             f"<= frames ({segment.frames})")
        if segment.overlay is not None and not (segment.overlay.startswith("wave_")
                                                and segment.overlay in ACTIONS):
            raise ValueError(f"overlay must be a wave action, got {segment.overlay!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    world_joints = render_motion(plan, rng, style)                              # [T+1, 22, 3]
    features = joints_to_features(world_joints, "humanml3d").astype(np.float32)  # [T, 263]
    joints = recover_joints(features)                                           # [T, 22, 3]
    return features, joints


def generate_motion(seed: int, index: int, durations: str = "realistic") -> SyntheticMotion:
    """Motion number ``index`` of the dataset with ``seed`` (pure function of both and of the
    ``durations`` profile, :data:`.actions.DURATION_PROFILES`).

    Two independent generators are spawned from ``SeedSequence([seed, index])``: one for the
    motion (plan, performer style, kinematics), one for the captions, so changing the caption
    grammar never changes a motion.
    """
    seed = _check_seed(seed)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    motion_seq, caption_seq = np.random.SeedSequence([seed, int(index)]).spawn(2)
    motion_rng = np.random.default_rng(motion_seq)
    caption_rng = np.random.default_rng(caption_seq)
    plan = plan_motion(motion_rng, durations)
    features, joints = motion_from_plan(plan, motion_rng, style=_Style.sample(motion_rng))
    count = 3 + int(caption_rng.random() < FOURTH_CAPTION_PROBABILITY)
    captions = tuple(generate_captions(plan, caption_rng, count))
    return SyntheticMotion(motion_id(int(index)), plan, features, joints, captions)


# --------------------------------------------------------------------------------------------
# Statistics and splits
# --------------------------------------------------------------------------------------------

#: HumanML3D's ``mean_variance`` groups of the 263 channels (the feature blocks: root angular
#: velocity, root linear velocity, root height, positions, rotations, velocities, foot contacts),
#: each given its mean std.
_STD_GROUPS = tuple((block.start, block.stop)
                    for block in feature_layout(HUMANML3D).blocks().values())


@dataclass
class _Moments:
    """Count, mean and sum of squared deviations (float64 [D]) of a set of feature rows;
    merged with Chan et al.'s pairwise update, which is exact and order-defined:
    mean = mean_a + δ n_b/n, M2 = M2_a + M2_b + δ² n_a n_b / n, δ = mean_b − mean_a."""

    count: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray) -> "_Moments":
        rows = np.asarray(rows, dtype=np.float64)
        mean = rows.mean(axis=0)
        return cls(rows.shape[0], mean, ((rows - mean) ** 2).sum(axis=0))

    def merge(self, other: "_Moments") -> "_Moments":
        if self.count == 0:
            return other
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / total)
        return _Moments(total, mean, m2)


def _finish_statistics(moments: _Moments) -> tuple[np.ndarray, np.ndarray]:
    if moments.count == 0:
        raise ValueError("cannot compute feature statistics of zero frames")
    std = np.sqrt(moments.m2 / moments.count)  # population std, like numpy's default
    for lo, hi in _STD_GROUPS:
        std[lo:hi] = std[lo:hi].mean()
    std = np.maximum(std, STD_FLOOR)
    return moments.mean.astype(np.float32), std.astype(np.float32)


def feature_statistics(features: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D-style Mean and Std, each ``(263,)`` float32, over all rows of ``features``
    (an iterable of ``[T_i, 263]`` arrays): per-channel mean; per-channel population std,
    averaged within each feature group (root rotation velocity, root linear velocity, root
    height, positions, rotations, velocities, foot contacts) as HumanML3D's ``mean_variance``
    does, then floored at :data:`STD_FLOOR`. Raises ValueError for no rows or a wrong width."""
    moments = _Moments(0, np.zeros(FEATURE_DIM), np.zeros(FEATURE_DIM))
    for array in features:
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != FEATURE_DIM or array.shape[0] == 0:
            raise ValueError(f"features must be [T, {FEATURE_DIM}] with T >= 1, got "
                             f"{array.shape}")
        moments = moments.merge(_Moments.of(array))
    return _finish_statistics(moments)


def split_ids(num_motions: int, seed: int) -> dict[str, list[str]]:
    """Seeded train/val/test split of ids ``motion_id(0..num_motions-1)``: 80/5/15 % (val and
    test at least one motion each once there are 3 motions), each list sorted; "all" is every
    id in order."""
    if num_motions < 1:
        raise ValueError(f"num_motions must be >= 1, got {num_motions}")
    seed = _check_seed(seed)
    order = np.random.default_rng([seed, 0x53504C4954]).permutation(num_motions)  # "SPLIT"
    n_val = max(1, round(SPLIT_FRACTIONS[1] * num_motions)) if num_motions >= 3 else 0
    n_test = max(1, round(SPLIT_FRACTIONS[2] * num_motions)) if num_motions >= 3 else 0
    n_train = num_motions - n_val - n_test
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
             "test": order[n_train + n_val:]}
    splits = {name: [motion_id(int(i)) for i in np.sort(idx)] for name, idx in parts.items()}
    splits["all"] = [motion_id(i) for i in range(num_motions)]
    return splits


# --------------------------------------------------------------------------------------------
# Writing a dataset
# --------------------------------------------------------------------------------------------

def _write_motion(out_dir: Path, motion: SyntheticMotion) -> None:
    np.save(out_dir / "new_joint_vecs" / f"{motion.id}.npy", motion.features)
    np.save(out_dir / "new_joints" / f"{motion.id}.npy", motion.joints)
    with open(out_dir / "texts" / f"{motion.id}.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(motion.text_lines()) + "\n")


def _worker_init() -> None:
    # One process per core: keep torch (imported by mate.data.features) single-threaded.
    try:
        import torch
        torch.set_num_threads(1)
    except Exception:  # pragma: no cover - torch is a dependency, but never fail a worker on it
        pass


def _generate_and_write(task: tuple[str, int, int, str]) -> tuple[int, list[dict], _Moments]:
    out_dir, seed, index, durations = task
    motion = generate_motion(seed, index, durations)
    _write_motion(Path(out_dir), motion)
    return index, motion.segment_entries(), _Moments.of(motion.features)


def _resolve_workers(workers: int | None, num_motions: int) -> int:
    if workers is None or workers == 0:
        if num_motions < 500:
            return 1
        return max(1, min(os.cpu_count() or 1, 8))
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer (0 = automatic), got "
                         f"{workers!r}")
    return int(workers)


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`write_dataset` wrote: directory, motion and caption counts, total feature
    frames, split sizes, worker count and wall time in seconds."""

    out_dir: str
    num_motions: int
    num_captions: int
    num_frames: int
    split_sizes: dict
    workers: int
    seconds: float


def write_dataset(out_dir: str | os.PathLike, num_motions: int, seed: int = 0,
                  workers: int | None = None, progress: bool | None = None,
                  durations: str = "realistic") -> DatasetSummary:
    """Generate ``num_motions`` motions and write them in the HumanML3D layout (see the module
    docstring) under ``out_dir`` (created; files of the same names are overwritten).

    Args:
        out_dir: output directory.
        num_motions: >= 1 (HumanML3D scale: 14616).
        seed: non-negative integer; the same seed gives byte-identical files.
        workers: processes (None or 0: 1 below 500 motions, else min(cores, 8)); the output
            does not depend on it.
        progress: tqdm bar (None: only from 1000 motions).
        durations: how long actions last, ``realistic`` (default) or ``uniform`` (every action
            1-3 s, the sets made before the profiles existed; :mod:`.actions`).

    Returns:
        :class:`DatasetSummary`.
    """
    if isinstance(num_motions, bool) or not isinstance(num_motions, (int, np.integer)) \
            or num_motions < 1:
        raise ValueError(f"num_motions must be a positive integer, got {num_motions!r}")
    num_motions = int(num_motions)
    seed = _check_seed(seed)
    if durations not in DURATION_PROFILES:
        raise ValueError(f"durations must be one of {DURATION_PROFILES}, got {durations!r}")
    workers = _resolve_workers(workers, num_motions)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory")
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    splits = split_ids(num_motions, seed)
    train = np.zeros(num_motions, dtype=bool)
    train[[int(i) for i in splits["train"]]] = True

    started = time.perf_counter()
    tasks = [(str(out), seed, i, durations) for i in range(num_motions)]
    show = num_motions >= 1000 if progress is None else bool(progress)
    segments: dict[str, list[dict]] = {}
    moments = _Moments(0, np.zeros(FEATURE_DIM), np.zeros(FEATURE_DIM))
    num_captions = num_frames = 0
    with _motion_results(tasks, workers) as results:
        if show:
            from tqdm import tqdm

            results = tqdm(results, total=num_motions, desc="synthetic motions", unit="motion")
        for index, entries, motion_moments in results:  # in index order: deterministic sums
            segments[motion_id(index)] = entries
            num_captions += len(entries)
            num_frames += motion_moments.count
            if train[index]:
                moments = moments.merge(motion_moments)
    _write_index_files(out, moments, splits, segments)
    return DatasetSummary(str(out), num_motions, num_captions, num_frames,
                          {k: len(v) for k, v in splits.items()}, workers,
                          time.perf_counter() - started)


@contextlib.contextmanager
def _motion_results(tasks: list[tuple[str, int, int, str]], workers: int) -> Iterator[Iterable]:
    """The results of :func:`_generate_and_write` for ``tasks``, in task order: in this process
    (``workers <= 1``) or from a pool of ``workers`` processes, closed and joined on exit."""
    if workers <= 1:
        yield map(_generate_and_write, tasks)
        return
    import multiprocessing

    # Not plain fork: torch's thread pools do not survive fork if the caller used them.
    # A forkserver that preloads the feature code (numpy + torch) forks workers without
    # re-importing torch (spawn re-imports it in every worker, ~2-3 s each); spawn
    # where there is no forkserver.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["mate.data.features"])
    else:  # pragma: no cover - Windows
        context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_worker_init)
    try:
        yield pool.imap(_generate_and_write, tasks, chunksize=16)
    finally:
        pool.close()
        pool.join()


def _write_index_files(out: Path, moments: _Moments, splits: dict[str, list[str]],
                       segments: dict[str, list[dict]]) -> None:
    """Mean.npy and Std.npy (of the train ``moments``), the split files and segments.json."""
    mean, std = _finish_statistics(moments)
    np.save(out / "Mean.npy", mean)
    np.save(out / "Std.npy", std)
    for name, ids in splits.items():
        with open(out / f"{name}.txt", "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(f"{i}\n" for i in ids))
    with open(out / "segments.json", "w", encoding="utf-8", newline="\n") as f:
        # One motion per line: valid JSON that diffs and greps well.
        f.write("{\n")
        f.write(",\n".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                           for k, v in segments.items()))
        f.write("\n}\n")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def _parse_int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def main(argv: Sequence[str] | None = None) -> DatasetSummary:
    """``python -m mate.data.synthetic --out DIR --motions N --seed S [--workers W]
    [--progress/--no-progress] [--durations realistic|uniform] [--debug]``. A bad argument exits
    with status 2 and one ``error:`` line naming it (``--debug``: the traceback)."""
    parser = argparse.ArgumentParser(
        prog="python -m mate.data.synthetic",
        description="Write the synthetic compositional text-motion benchmark in the HumanML3D "
                    "layout (new_joint_vecs, new_joints, texts, Mean/Std, splits, "
                    "segments.json).")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--motions", default="1000",
                        help="number of motions (HumanML3D scale: 14616); default 1000")
    parser.add_argument("--seed", default="0", help="non-negative integer seed; default 0")
    parser.add_argument("--workers", default="0",
                        help="worker processes, 0 = automatic (default); output is identical "
                             "for any value")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: from 1000 motions)")
    parser.add_argument("--durations", choices=DURATION_PROFILES, default="realistic",
                        help="how long actions last: realistic (default; a long walk beside a short "
                             "kick) or uniform (every action 1-3 s, as sets made before this option)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    with user_errors(args.debug, status=2):   # a bad argument: one "error:" line, status 2 (mate.cli)
        if not str(args.out).strip():
            raise ValueError("--out must be a directory path, got an empty string")
        summary = write_dataset(args.out, _parse_int("--motions", args.motions, 1),
                                seed=_parse_int("--seed", args.seed, 0),
                                workers=_parse_int("--workers", args.workers, 0),
                                progress=args.progress, durations=args.durations)
    print(f"wrote {summary.num_motions} motions, {summary.num_captions} captions, "
          f"{summary.num_frames} frames to {summary.out_dir} "
          f"(train/val/test {summary.split_sizes['train']}/{summary.split_sizes['val']}/"
          f"{summary.split_sizes['test']}) with {summary.workers} worker(s) in "
          f"{summary.seconds:.1f} s")
    return summary
