"""Owns drawing generated motions: an animated stick figure (GIF through matplotlib's
PillowWriter; MP4 through FFMpegWriter only where ``ffmpeg`` is installed), with the bone colours
and skeleton of :func:`mate.plots.plot_stick_figures`."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

__all__ = ["animate_stick_figure", "ffmpeg_available"]


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def animate_stick_figure(joints, path: str | Path, fps: float, title: str | None = None, dpi: int = 72) -> Path:
    """Write an animation of ``joints`` [T, 22|21, 3] (y up, e.g. ``recover_joints``' output) to
    ``path`` (``.gif``: PillowWriter; ``.mp4``: needs ffmpeg, else RuntimeError) at ``fps``:
    a front view (x-y) that follows the root and the root's path seen from above (x-z). Returns
    ``path``. ValueError for a bad shape or non-finite joints."""
    from matplotlib.animation import FFMpegWriter, FuncAnimation, PillowWriter

    from mate.plots import _SIDE_COLOURS, _bone_sides, _new_figure, _skeleton_for

    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] != 3 or joints.shape[0] < 1:
        raise ValueError(f"joints must be [T, J, 3] with T >= 1, got shape {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("joints contain NaN or inf")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: the animation must be a .gif or .mp4 file")
    if suffix == ".mp4" and not ffmpeg_available():
        raise RuntimeError("writing an MP4 needs ffmpeg on PATH; write a .gif instead")
    spec = _skeleton_for(joints.shape[1])
    bones = _bone_sides(spec)
    root = joints[:, 0]
    rel = joints - root[:, None, :] * np.array([1.0, 0.0, 1.0])
    half = max(float(np.abs(rel[..., 0]).max()) * 1.2, 0.5)
    floor, top = float(joints[..., 1].min()), float(joints[..., 1].max())
    height = max(top - floor, 1e-3)

    fig = _new_figure(7.0, 4.0)
    front, above = fig.subplots(1, 2)
    fig.subplots_adjust(top=0.8, bottom=0.12, wspace=0.3)
    if title:
        fig.suptitle(title, fontsize=9.5)
    lines = [front.plot([], [], "-", color=_SIDE_COLOURS[side], lw=2.2, solid_capstyle="round")[0]
             for _, _, side in bones]
    front.axhline(floor, color="#999999", lw=0.8)
    front.set_ylim(floor - 0.05 * height, top + 0.1 * height)
    front.set_aspect("equal", adjustable="box")
    front.set_xticks([])
    front.set_yticks([])
    front.set_title("front view (x-y), following the root", fontsize=9)
    span = max(np.ptp(root[:, 0]), np.ptp(root[:, 2]), 0.5) * 0.6
    cx, cz = (root[:, 0].max() + root[:, 0].min()) / 2, (root[:, 2].max() + root[:, 2].min()) / 2
    above.plot(root[:, 0], root[:, 2], "-", color="#bbbbbb", lw=1.0)
    trail, = above.plot([], [], "-", color="#1f5fbf", lw=1.6)
    head, = above.plot([], [], "o", color="black", ms=5)
    above.plot(root[0, 0], root[0, 2], "s", color="green", ms=5)
    above.set_xlim(cx - span, cx + span)
    above.set_ylim(cz - span, cz + span)
    above.set_aspect("equal", adjustable="box")
    above.invert_xaxis()
    above.set_title("root path from above (x-z)", fontsize=9)
    above.tick_params(labelsize=7)

    def draw(t: int):
        for line, (p, j, _) in zip(lines, bones):
            line.set_data([joints[t, p, 0], joints[t, j, 0]], [joints[t, p, 1], joints[t, j, 1]])
        front.set_xlim(root[t, 0] - half, root[t, 0] + half)
        trail.set_data(root[: t + 1, 0], root[: t + 1, 2])
        head.set_data([root[t, 0]], [root[t, 2]])
        front.set_xlabel(f"t = {t / fps:.2f} s", fontsize=9)
        return [*lines, trail, head]

    animation = FuncAnimation(fig, draw, frames=joints.shape[0], interval=1000.0 / fps, blit=False)
    writer = PillowWriter(fps=fps) if suffix == ".gif" else FFMpegWriter(fps=fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        animation.save(tmp, writer=writer, dpi=dpi)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
