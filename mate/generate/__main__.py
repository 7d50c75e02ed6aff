"""Owns the sampling command: ``python -m mate.generate --model GEN_RUN --text "..." --seconds 6
[--num 3] [--seed S] [--guidance 2.5] [--steps 50] --out DIR``.

Per sample ``k`` (``sample_<k>``) it writes to DIR: ``_features.npy`` (float32 [T, F], the
dataset's raw features: denormalised with the run's Mean/Std), ``_joints.npy`` (float32 [T, J, 3],
:func:`mate.data.features.recover_joints`; 263/251-d features only), ``.gif`` (an animated stick
figure) and ``.mp4`` when ffmpeg is installed (``--no-mp4`` skips it); and ``samples.json`` (the
prompt, seed, guidance, steps, frames and files of each sample).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["main", "build_parser", "write_samples"]


def build_parser() -> argparse.ArgumentParser:
    from mate.cli import add_debug_flag

    p = argparse.ArgumentParser(prog="python -m mate.generate", description="Generate motions from a text prompt.")
    p.add_argument("--model", required=True, help="a generator run (python -m mate.generate.train --out)")
    p.add_argument("--text", required=True, help="the prompt, e.g. 'a person walks in a clockwise circle'")
    p.add_argument("--seconds", type=float, default=6.0, help="duration (default 6 s, MDM's default)")
    p.add_argument("--num", type=int, default=1, help="how many samples of the prompt (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample k uses seed + k")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the run's)")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the run's)")
    p.add_argument("--encoder", help="where the run's text encoder is now, if it moved")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--no-gif", action="store_true", help="skip the animations")
    p.add_argument("--no-mp4", action="store_true", help="no MP4 even where ffmpeg exists")
    add_debug_flag(p)
    return p


def write_samples(generator, text: str, seconds: float, num: int, seed: int, out: str | Path,
                  guidance: float | None = None, steps: int | None = None, gif: bool = True,
                  mp4: bool = True) -> dict:
    """Sample ``num`` motions of ``text`` lasting ``seconds`` and write them (module docstring) to
    ``out``; returns the ``samples.json`` record. Raises ValueError for bad arguments."""
    from mate.atomic import atomic_write, atomic_write_json
    from mate.data.features import recover_joints
    from mate.generate.render import animate_stick_figure, ffmpeg_available

    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"--num must be a positive integer, got {num!r}")
    frames = generator.frames_for_seconds(seconds)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    records = []
    motions = generator.sample([text] * num, [frames] * num, guidance=guidance, steps=steps,
                               seed=[seed + k for k in range(num)])
    for k, motion in enumerate(motions):
        raw = generator.denormalize(motion.numpy()).astype(np.float32)
        name = f"sample_{k:02d}"
        files = {"features": f"{name}_features.npy"}
        atomic_write(out / files["features"], lambda f: np.save(f, raw))
        if raw.shape[-1] in (263, 251):
            joints = recover_joints(raw).astype(np.float32)
            files["joints"] = f"{name}_joints.npy"
            atomic_write(out / files["joints"], lambda f: np.save(f, joints))
            if gif:
                files["gif"] = animate_stick_figure(joints, out / f"{name}.gif", generator.fps, title=text[:80]).name
            if mp4 and ffmpeg_available():
                files["mp4"] = animate_stick_figure(joints, out / f"{name}.mp4", generator.fps, title=text[:80]).name
        records.append({"sample": k, "seed": seed + k, "frames": frames, "files": files})
    summary = {"text": text, "seconds": seconds, "fps": generator.fps, "frames": frames,
               "guidance": generator.config["guidance"] if guidance is None else guidance,
               "steps": generator.config["sample_steps"] if steps is None else steps,
               "features": "raw (denormalised with the run's Mean/Std)", "samples": records}
    atomic_write_json(out / "samples.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    from mate.cli import user_errors

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with user_errors(args.debug):
        from mate.generate.sample import load
        from mate.generate.train import set_threads

        set_threads(args.threads)
        if not args.seconds > 0:
            raise ValueError(f"--seconds must be positive, got {args.seconds}")
        generator = load(args.model, encoder=args.encoder, device=args.device)
        summary = write_samples(generator, args.text, args.seconds, args.num, args.seed, args.out,
                                guidance=args.guidance, steps=args.steps, gif=not args.no_gif, mp4=not args.no_mp4)
        print(f"wrote {len(summary['samples'])} sample(s) of {summary['frames']} frames to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
