"""Figures for MATE runs: word-embedding maps, antonym similarities, segmentation timelines,
stick figures and training curves.

Every function writes one PNG and returns its path. Figures are drawn with matplotlib's
object-oriented API on an Agg canvas (no pyplot, no display, no global backend switch), and are
deterministic: the same inputs give the same bytes.

=====================================  ===========================================================
`plot_word_embedding_map`              WE(w) of motion words and their antonyms, PCA to 2-D fitted
                                       jointly over all encoders (shared axes), one panel per
                                       encoder, antonym pairs joined by lines (paper, Figure 5)
`plot_antonym_similarity_heatmap`      cos(WE(a), WE(b)) per antonym pair x encoder
`plot_segmentation_timeline`           sub-texts as coloured spans over time: predicted vs ground
                                       truth (paper, Figure 10)
`plot_stick_figures`                   frames of a motion as stick figures (front and side views)
                                       plus the root's path seen from above
`plot_training_curves`                 every loss term of every stage: train per step, val per epoch
`render_run_figures`                   all of the above for a run directory, into RUN/eval/
=====================================  ===========================================================
"""
from __future__ import annotations

import json
import logging
import math
import os
import textwrap
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from mate.atomic import atomic_write
from mate.rundir import STAGES, RunDir, RunDirectoryError, data_root, encoder_spec, load_stage_model
from mate.text.antonyms import FIGURE_WORD_PAIRS, word_embedding_vectors
from mate.train.logs import read_metrics

log = logging.getLogger("mate.plots")

__all__ = [
    "plot_word_embedding_map",
    "plot_antonym_similarity_heatmap",
    "plot_segmentation_timeline",
    "plot_stick_figures",
    "plot_training_curves",
    "render_run_figures",
]

PathLike = Union[str, os.PathLike]

_DPI = 120
# Qualitative colours (tab10 without its grey), cycled.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
            "#17becf")
_PNG_METADATA = {"Software": None}  # no version string: bytes depend only on the inputs


# ---------------------------------------------------------------------------------- helpers
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: PathLike) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=_DPI, metadata=_PNG_METADATA))


def _pairs_and_singles(words) -> tuple[list[str], list[tuple[str, str]]]:
    """``words``: items that are a word or an (a, b) antonym pair -> (unique words, pairs)."""
    if isinstance(words, str):
        raise ValueError("expected a list of words or (word, antonym) pairs, got a single string")
    ordered: list[str] = []
    pairs: list[tuple[str, str]] = []
    for item in words:
        if isinstance(item, str):
            group = [item]
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(w, str) for w in item):
            group = list(item)
            pairs.append((item[0], item[1]))
        else:
            raise ValueError(f"expected a word or a (word, antonym) pair, got {item!r}")
        for w in group:
            if not w.strip():
                raise ValueError("empty word")
            if w not in ordered:
                ordered.append(w)
    if not ordered:
        raise ValueError("no words to plot")
    return ordered, pairs


def _check_encoders(encoders: Mapping) -> list[str]:
    if not isinstance(encoders, Mapping) or not encoders:
        raise ValueError("expected a non-empty dict {name: TextEncoder}")
    return list(encoders)


def _pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean [E], components [2, E] with a deterministic sign, explained-variance ratios [2])."""
    mean = x.mean(axis=0)
    centred = x - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = np.zeros((2, x.shape[1]))
    k = min(2, vt.shape[0])
    comps[:k] = vt[:k]
    for c in comps:  # sign: the largest-magnitude loading is positive
        i = int(np.argmax(np.abs(c)))
        if c[i] < 0:
            c *= -1
    var = s ** 2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return mean, comps, ratio


# ------------------------------------------------------------------------- word queries
def plot_word_query_features(data: Mapping, path: PathLike) -> Path:
    """The paper's Fig. 7: localised word features f^{m_j}_w (``data`` from
    :func:`mate.diagnostics.word_query_features`: ``features`` [N, D], ``word`` [N], ``has_word``
    [N], ``words``) in the 2-D PCA of all of them; colour = the querying word, filled = motion j's
    caption contains the word, hollow = it does not. Disentangled features separate filled from
    hollow; features that encode the query cluster by colour whatever the motion."""
    features = np.asarray(data["features"], dtype=np.float64)
    word, has = np.asarray(data["word"]), np.asarray(data["has_word"], dtype=bool)
    if features.ndim != 2 or not (len(features) == len(word) == len(has)) or len(features) < 2:
        raise ValueError(f"features [N, D], word [N] and has_word [N] must agree, got {features.shape}, "
                         f"{word.shape}, {has.shape}")
    mean, comps, ratio = _pca_2d(features)
    xy = (features - mean) @ comps.T
    fig = _new_figure(6.4, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    colours = [f"C{k % 10}" for k in range(len(data["words"]))]
    for k, name in enumerate(data["words"]):
        for filled in (True, False):
            sel = (word == k) & (has == filled)
            if sel.any():
                ax.scatter(xy[sel, 0], xy[sel, 1], s=14, linewidths=0.8,
                           facecolors=colours[k] if filled else "none", edgecolors=colours[k],
                           label=f"{name} ({'in caption' if filled else 'not in caption'})")
    ax.set_xlabel(f"PC 1 ({ratio[0]:.0%})")
    ax.set_ylabel(f"PC 2 ({ratio[1]:.0%})")
    ax.set_title("Localised word features f^m_w (each word queries every motion)", fontsize=9)
    ax.legend(fontsize=6.5, ncol=2, loc="best")
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------- word embeddings
def plot_word_embedding_map(encoders: Mapping[str, object], words, path: PathLike,
                            title: str | None = None) -> Path:
    """The normalised word embeddings WE(w) of ``words`` under each encoder, projected to 2-D by
    one PCA fitted on all encoders' embeddings together (so every panel shares the axes), one
    panel per encoder side by side (e.g. {"original": ..., "MATE": ...}: before vs after).

    ``words``: words and/or (word, antonym) pairs; pairs are joined by a line in their own colour.
    Each panel's title gives the mean cosine similarity of its antonym pairs."""
    names = _check_encoders(encoders)
    vocab, pairs = _pairs_and_singles(words)
    embs = {name: word_embedding_vectors(encoders[name], vocab) for name in names}
    widths = {e.shape[1] for e in embs.values()}
    if len(widths) != 1:
        raise ValueError(f"encoders have different embedding widths {sorted(widths)}: one PCA cannot cover them")
    stacked = np.concatenate([embs[n] for n in names])
    mean, comps, ratio = _pca_2d(stacked)
    proj = {n: (embs[n] - mean) @ comps.T for n in names}
    allp = np.concatenate(list(proj.values()))
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = np.maximum((hi - lo) * 0.12, 1e-3)
    index = {w: i for i, w in enumerate(vocab)}
    pair_colour = {p: _COLOURS[i % len(_COLOURS)] for i, p in enumerate(pairs)}
    word_colour = {}
    for p in pairs:
        for w in p:
            word_colour.setdefault(w, pair_colour[p])

    fig = _new_figure(5.2 * len(names) + 0.4, 5.6)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        xy = proj[name]
        for p in pairs:
            a, b = xy[index[p[0]]], xy[index[p[1]]]
            ax.plot([a[0], b[0]], [a[1], b[1]], "-", color=pair_colour[p], lw=1.6, alpha=0.8, zorder=1)
        for w, i in index.items():
            ax.scatter(xy[i, 0], xy[i, 1], s=28, color=word_colour.get(w, "#444444"), edgecolor="black",
                       linewidth=0.4, zorder=2)
        subtitle = name
        if pairs:
            e = embs[name]
            cos = np.mean([float(e[index[a]] @ e[index[b]]) for a, b in pairs])
            subtitle += f"\nmean cos(antonym pair) = {cos:.3f}"
        ax.set_title(subtitle, fontsize=10.5)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0] * 2.5)  # room for the labels on the right
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
        ax.grid(True, lw=0.4, alpha=0.4)
    fig.suptitle(title or "Word embeddings WE(w) of motion words and their antonyms "
                 "(L2-normalised, one PCA over all panels; antonym pairs joined)", fontsize=11.5)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    for ax, name in zip(axes, names):  # labels last: placed where they overlap nothing drawn so far
        _place_labels(ax, proj[name], list(index), [word_colour.get(w, "#444444") for w in index])
    return _save(fig, path)


# Label positions tried in order (offset in points from the point, horizontal alignment).
_LABEL_OFFSETS = ((5, 3, "left"), (5, -11, "left"), (-5, 3, "right"), (-5, -11, "right"), (5, 12, "left"),
                  (-5, 12, "right"), (5, -20, "left"), (-5, -20, "right"), (0, 20, "center"), (0, -28, "center"),
                  (14, 22, "left"), (-14, 22, "right"), (14, -30, "left"), (-14, -30, "right"))


def _place_labels(ax, xy: np.ndarray, labels: Sequence[str], colours: Sequence[str], fontsize: float = 8.5) -> None:
    """Annotate each point with its label at the first candidate offset whose box overlaps no
    label placed before it and no other point (greedy, deterministic)."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    points = to_px(xy)
    placed = []
    axbox = ax.get_window_extent(renderer)
    order = np.lexsort((points[:, 0], -points[:, 1]))  # top to bottom, then left to right
    for i in order:
        best = None
        for dx, dy, ha in _LABEL_OFFSETS:
            text = ax.annotate(labels[i], xy[i], xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                               color=colours[i], ha=ha, zorder=3)
            box = text.get_window_extent(renderer).expanded(1.04, 1.1)
            hits = sum(box.overlaps(b) for b in placed)
            hits += sum(box.contains(*p) for j, p in enumerate(points) if j != i)
            inside = axbox.contains(box.x0, box.y0) and axbox.contains(box.x1, box.y1)
            score = hits * 10 + (0 if inside else 5)
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, text, box)
            else:
                text.remove()
            if score == 0:
                break
        placed.append(best[2])


def plot_antonym_similarity_heatmap(encoders: Mapping[str, object], pairs: Sequence[tuple[str, str]],
                                    path: PathLike, title: str | None = None) -> Path:
    """Cosine similarity of WE(a) and WE(b) for each antonym pair (rows) under each encoder
    (columns, e.g. original / baseline / MATE), plus a mean row. Lower = better separated."""
    names = _check_encoders(encoders)
    words, pair_list = _pairs_and_singles(list(pairs))
    if len(pair_list) != len(list(pairs)) or not pair_list:
        raise ValueError("expected a non-empty list of (word, antonym) pairs")
    index = {w: i for i, w in enumerate(words)}
    sim = np.zeros((len(pair_list) + 1, len(names)))
    for j, name in enumerate(names):
        e = word_embedding_vectors(encoders[name], words)
        sim[:-1, j] = [float(e[index[a]] @ e[index[b]]) for a, b in pair_list]
    sim[-1] = sim[:-1].mean(axis=0)
    labels = [f"{a} / {b}" for a, b in pair_list] + ["mean"]

    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    vmin, vmax = float(sim.min()), float(sim.max())
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.05, vmax + 0.05
    fig = _new_figure(2.0 + 1.6 * len(names) + 1.2, 1.4 + 0.42 * len(labels))
    ax = fig.subplots()
    im = ax.imshow(sim, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for r in range(sim.shape[0]):
        for c in range(sim.shape[1]):
            value = sim[r, c]
            shade = (value - vmin) / (vmax - vmin)
            ax.text(c, r, f"{value:.3f}", ha="center", va="center", fontsize=9,
                    color="black" if shade > 0.55 else "white")
    ax.axhline(len(pair_list) - 0.5, color="white", lw=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(labels)), labels)
    ax.tick_params(axis="x", labelsize=9.5)
    ax.tick_params(axis="y", labelsize=9)
    cbar = fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03)
    cbar.set_label("cosine similarity")
    ax.set_title(title or "cos(WE(word), WE(antonym))\nlower = antonyms better separated", fontsize=10.5)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------- segmentation
def _check_bounds(bounds, n: int, what: str) -> np.ndarray:
    try:
        b = np.asarray(bounds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of frame numbers, got {bounds!r}") from None
    if b.size != n + 1:
        raise ValueError(f"{what} has {b.size} boundaries for {n} sub-texts; expected {n + 1}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{what} contains NaN or inf: {b.tolist()}")
    if b[0] < 0 or np.any(np.diff(b) <= 0):
        raise ValueError(f"{what} must start at >= 0 and increase strictly, got {b.tolist()}")
    return b


def plot_segmentation_timeline(subtexts: Sequence[str], predicted_bounds_frames, true_bounds_frames,
                               fps: float, path: PathLike, title: str | None = None) -> Path:
    """Each sub-text as a coloured span over the motion's time axis (seconds), one row for the
    predicted segmentation and one for the ground truth (``true_bounds_frames=None``: predicted
    row only). Bounds are ``[0, b_1, ..., T]`` frames, ``len(subtexts) + 1`` of them, strictly
    increasing; anything else raises ValueError. Dotted lines mark the ground-truth boundaries;
    the title gives the mean absolute error of the inner boundaries in seconds."""
    if isinstance(subtexts, str) or not len(subtexts) or not all(isinstance(s, str) for s in subtexts):
        raise ValueError("subtexts must be a non-empty list of strings")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    n = len(subtexts)
    rows = [("predicted", _check_bounds(predicted_bounds_frames, n, "predicted_bounds_frames"))]
    if true_bounds_frames is not None:
        rows.append(("ground truth", _check_bounds(true_bounds_frames, n, "true_bounds_frames")))
    colours = [_COLOURS[i % len(_COLOURS)] for i in range(n)]
    end_s = max(b[-1] for _, b in rows) / fps

    # Layout in inches: title, the rows, the time axis, then the legend of full sub-texts.
    title_h, row_h, axis_h, legend_h = 0.75, 0.62, 0.6, 0.35 + 0.2 * n
    height = title_h + row_h * len(rows) + axis_h + legend_h
    fig = _new_figure(12, height)
    bottom = axis_h + legend_h
    ax = fig.add_axes((0.1, bottom / height, 0.87, row_h * len(rows) / height))
    for r, (_, b) in enumerate(rows):
        y = len(rows) - 1 - r
        for k in range(n):
            s, e = b[k] / fps, b[k + 1] / fps
            ax.barh(y, e - s, left=s, height=0.78, color=colours[k], edgecolor="black", linewidth=0.6, alpha=0.85)
            chars = int((e - s) / end_s * 118)  # characters of 8-pt text that fit across the span
            if chars >= 6:
                lines = textwrap.wrap(subtexts[k], width=chars) or [""]
                if len(lines) > 2:
                    lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), width=chars, placeholder="…")]
                label = "\n".join(lines)
            else:
                label = str(k + 1)
            ax.text((s + e) / 2, y, label, ha="center", va="center", fontsize=8, color="black", clip_on=True,
                    linespacing=1.0)
    if len(rows) == 2:
        for t in rows[1][1][1:-1] / fps:
            ax.axvline(t, color="black", ls=":", lw=1.0)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows][::-1], fontsize=10)
    ax.set_xlim(0, end_s)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel("time (s)")
    ax.grid(True, axis="x", lw=0.4, alpha=0.5)
    head = title or "Segmentation of the motion among its sub-texts"
    if len(rows) == 2 and n > 1:
        err = float(np.mean(np.abs(rows[0][1][1:-1] - rows[1][1][1:-1]))) / fps
        head += f"\nmean |boundary error| = {err:.2f} s over {n - 1} inner boundar{'y' if n == 2 else 'ies'}"
    ax.set_title(head, fontsize=10.5)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours[k], edgecolor="black", label=f"{k + 1}. {textwrap.shorten(subtexts[k], 110)}")
               for k in range(n)]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.1, legend_h / height), ncol=1, fontsize=8.5,
               frameon=False, borderaxespad=0.2,
               title="sub-texts (time order)", title_fontsize=8.5, alignment="left")
    return _save(fig, path)


# ------------------------------------------------------------------------------ stick figures
def _skeleton_for(num_joints: int):
    from mate.data.skeleton import HUMANML3D, KITML

    if num_joints == HUMANML3D.num_joints:
        return HUMANML3D
    if num_joints == KITML.num_joints:
        return KITML
    raise ValueError(f"joints must have 22 (HumanML3D) or 21 (KIT-ML) joints, got {num_joints}")


def _bone_sides(spec) -> list[tuple[int, int, str]]:
    """(parent, child, side) for every bone; side from the chain holding a left/right hip or
    shoulder (``spec.face_joints`` = r_hip, l_hip, r_shoulder, l_shoulder)."""
    from mate.data.skeleton import kinematic_chains

    r_hip, l_hip, r_sh, l_sh = spec.face_joints
    side = {}
    for chain in kinematic_chains(spec.parents):
        tail = set(chain[1:])
        s = "left" if tail & {l_hip, l_sh} else "right" if tail & {r_hip, r_sh} else "centre"
        for a, b in zip(chain, chain[1:]):
            side[b] = s
    return [(p, j, side.get(j, "centre")) for j, p in enumerate(spec.parents) if p >= 0]


_SIDE_COLOURS = {"left": "#1f5fbf", "right": "#d62728", "centre": "#333333"}


def plot_stick_figures(joints, path: PathLike, frames: int = 8, fps: float | None = None,
                       title: str | None = None) -> Path:
    """Stick figures of ``frames`` evenly spaced frames of a motion ``joints`` [T, 22|21, 3]
    (y up; e.g. ``mate.data.features.recover_joints(features)``): a front view (x vs y) and a side
    view (z vs y) per frame, each centred on the root, plus the root's path seen from above
    (x vs z) with the drawn frames marked. Left-side bones blue, right red, spine black."""
    import torch

    if isinstance(joints, torch.Tensor):
        joints = joints.detach().cpu().numpy()
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] != 3 or joints.shape[0] < 1:
        raise ValueError(f"joints must be [T, J, 3] with T >= 1, got shape {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("joints contain NaN or inf")
    if not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    spec = _skeleton_for(joints.shape[1])
    fps = spec.fps if fps is None else float(fps)
    T = joints.shape[0]
    picks = np.unique(np.round(np.linspace(0, T - 1, min(int(frames), T))).astype(int))
    bones = _bone_sides(spec)
    root = joints[:, 0, :]
    rel = joints - root[:, None, :] * np.array([1.0, 0.0, 1.0])
    half = max(float(np.abs(rel[..., [0, 2]]).max()) * 1.15, 1e-3)
    floor = float(joints[..., 1].min())
    top = float(joints[..., 1].max())
    height = max(top - floor, 1e-3)
    ylim = (floor - 0.05 * height, top + 0.08 * height)

    ncols = len(picks)
    width = 1.55 * ncols + 4.2
    fig = _new_figure(width, 6.0)
    split = 1.0 - 4.0 / width  # the frames on the left, the path from above in the last 4 inches
    gs = fig.add_gridspec(2, ncols, left=0.45 / width, right=split - 0.1 / width, top=0.86, bottom=0.1,
                          wspace=0.08, hspace=0.25)
    for r, (axis, view) in enumerate(((0, "front view (x–y)"), (2, "side view (z–y),\nfrom the left"))):
        for c, t in enumerate(picks):
            ax = fig.add_subplot(gs[r, c])
            centre = root[t, axis]
            for p, j, side in bones:
                ax.plot([joints[t, p, axis], joints[t, j, axis]], [joints[t, p, 1], joints[t, j, 1]],
                        "-", color=_SIDE_COLOURS[side], lw=1.8, solid_capstyle="round")
            ax.plot(joints[t, 0, axis], joints[t, 0, 1], "o", color="black", ms=2.5)
            ax.axhline(floor, color="#999999", lw=0.8)
            ax.set_xlim(centre - half, centre + half)
            ax.set_ylim(*ylim)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {t / fps:.2f} s", fontsize=8.5)
            if c == 0:
                ax.set_ylabel(view, fontsize=9)
    ax = fig.add_axes((split + 0.75 / width, 0.3, 3.0 / width, 0.52))
    ax.plot(root[:, 0], root[:, 2], "-", color="#777777", lw=1.2, label="root path")
    ax.scatter(root[picks, 0], root[picks, 2], c=picks / max(T - 1, 1), cmap="viridis", s=22, zorder=3,
               edgecolor="black", linewidth=0.4, label="drawn frames (colour = time)")
    ax.plot(root[0, 0], root[0, 2], "s", color="green", ms=6, label="start", zorder=4)
    ax.plot(root[-1, 0], root[-1, 2], "X", color="black", ms=7, label="end", zorder=4)
    span = max(np.ptp(root[:, 0]), np.ptp(root[:, 2]), 0.5) * 0.6
    cx, cz = (root[:, 0].max() + root[:, 0].min()) / 2, (root[:, 2].max() + root[:, 2].min()) / 2
    ax.set_xlim(cx - span, cx + span)
    ax.set_ylim(cz - span, cz + span)
    ax.set_aspect("equal", adjustable="box")
    ax.invert_xaxis()  # seen from above (y towards the viewer) with +z up the page, +x points left
    ax.set_xlabel("x (m; +x = the person's initial left)", fontsize=8.5)
    ax.set_ylabel("z (m, initial facing)", fontsize=8.5)
    ax.tick_params(labelsize=7.5)
    ax.set_title("root path seen from above\n(start facing up the page)", fontsize=9)
    ax.grid(True, lw=0.4, alpha=0.5)
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    from matplotlib.lines import Line2D

    fig.legend(handles=[Line2D([], [], color=_SIDE_COLOURS[s], lw=2, label=label) for s, label in (("left", "left side"), ("right", "right side"), ("centre", "spine and head"))],
               loc="lower center", bbox_to_anchor=(split / 2, 0.0), ncol=3, fontsize=8.5, frameon=False)
    fig.suptitle(title or f"Motion as stick figures ({T} frames at {fps:g} fps; {spec.name} skeleton)", fontsize=11)
    return _save(fig, path)


# ---------------------------------------------------------------------------- training curves
def _minor_log_label(value: float, _pos=None) -> str:
    """Label the 2x, 3x and 5x minor ticks of a log axis (plain numbers), leave the rest blank."""
    if value <= 0:
        return ""
    mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if mantissa in (2.0, 3.0, 5.0) else ""


def plot_training_curves(metrics_csv: PathLike, path: PathLike, title: str | None = None) -> Path:
    """One panel per stage of ``metrics.csv``: every loss term vs optimizer step, train (solid
    lines, every --log-every steps) and validation (circles, dashed, at the end of each epoch).
    Log scale on y when every value is positive."""
    rows = read_metrics(metrics_csv)
    if not rows:
        raise ValueError(f"{metrics_csv} has no rows")
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    names = list(dict.fromkeys(r["name"] for r in rows))
    names = [n for n in names if n != "total"] + (["total"] if "total" in names else [])
    colour = {n: ("black" if n == "total" else _COLOURS[i % len(_COLOURS)]) for i, n in enumerate(names)}
    from matplotlib import ticker
    from matplotlib.lines import Line2D

    fig = _new_figure(max(6.2 * len(stages), 8.0), 5.3)
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    for ax, stage in zip(axes, stages):
        srows = [r for r in rows if r["stage"] == stage]
        for n in names:
            for split, style in (("train", dict(ls="-", lw=1.4, marker=None)),
                                 ("val", dict(ls="--", lw=1.0, marker="o", ms=4))):
                pts = sorted((r["step"], r["value"]) for r in srows if r["name"] == n and r["split"] == split)
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, color=colour[n], **style)
        if all(r["value"] > 0 for r in srows):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(ticker.FuncFormatter(_minor_log_label))
            ax.tick_params(axis="y", which="both", labelsize=8.5)
        present = [n for n in names if any(r["name"] == n for r in srows)]
        ax.set_title(f"{stage}: " + ", ".join("total" if n == "total" else f"L_{n}" for n in present), fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.grid(True, which="both", lw=0.4, alpha=0.4)
    handles = [Line2D([], [], color=colour[n], lw=2, label="total (weighted)" if n == "total" else f"L_{n}")
               for n in names]
    handles += [Line2D([], [], color="grey", ls="-", label="train (every --log-every steps)"),
                Line2D([], [], color="grey", ls="--", marker="o", ms=4, label="val (end of each epoch)")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8.5, frameon=False)
    fig.suptitle(title or "Training curves", fontsize=11.5)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return _save(fig, path)


# ------------------------------------------------------------------------------- run figures
def _run_pairs(run: RunDir) -> list[tuple[str, str]]:
    """Antonym pairs for a run's figures (:data:`mate.text.antonyms.FIGURE_WORD_PAIRS`): only those
    whose two words are in the run's training vocabulary (the trained rows), unless none is."""
    pairs = list(FIGURE_WORD_PAIRS)
    if run.vocab.is_file():
        try:
            vocab = set(json.loads(run.vocab.read_text()).get("words", []))
        except (ValueError, AttributeError):
            vocab = set()
        inside = [p for p in pairs if p[0] in vocab and p[1] in vocab]
        if inside:
            return inside
    return pairs


def _data_dir(run: RunDir, data_dir: PathLike | None) -> Path | None:
    """The run's dataset folder (``data_dir`` when given), None when it cannot be found."""
    try:
        return data_root(run.root, data_dir)
    except RunDirectoryError as err:
        log.info("render_run_figures: no dataset (%s): motion figures skipped", err)
        return None


def _fps_of(data: Path | None) -> float:
    from mate.data.skeleton import HUMANML3D, KITML

    if data is not None:
        vecs = sorted((data / "new_joint_vecs").glob("*.npy"))[:1]
        if vecs:
            width = np.load(vecs[0], mmap_mode="r").shape[-1]
            return KITML.fps if width == KITML.feature_dim else HUMANML3D.fps
    return HUMANML3D.fps


def _pick_segmentations(pred: dict, truth: dict, count: int) -> list[tuple[str, dict, list]]:
    """Up to ``count`` captions (most sub-texts first, then key order) whose predicted and true
    segmentations have the same number of sub-texts (N >= 2)."""
    candidates = []
    for key in sorted(pred):
        seg = pred[key]
        n = len(seg.get("subtexts", []))
        if n < 2:
            continue
        motion_id, _, index = key.rpartition("_")
        true_bounds = None
        if motion_id in truth and index.isdigit() and int(index) < len(truth[motion_id]):
            t = truth[motion_id][int(index)]
            if len(t.get("bounds_frames", [])) == n + 1:
                true_bounds = t["bounds_frames"]
        if truth and true_bounds is None:
            continue
        candidates.append((-n, key, seg, true_bounds))
    candidates.sort(key=lambda c: (c[0], c[1]))
    # Prefer distinct motions.
    out, seen = [], set()
    for _, key, seg, tb in candidates:
        mid = key.rpartition("_")[0]
        if mid in seen:
            continue
        seen.add(mid)
        out.append((key, seg, tb))
        if len(out) == count:
            break
    return out


def _first_caption(data: Path, motion_id: str) -> str:
    path = data / "texts" / f"{motion_id}.txt"
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            return lines[0].split("#")[0]
    return ""


def _word_figures(run: RunDir, spec: str, device: str) -> list[Path]:
    """The word-embedding map and the antonym heat map: the original encoder vs the stage-0
    (baseline) and stage-1 (MATE) word tables; none without a stage model."""
    stages = [s for s in STAGES if run.stage_model(STAGES[s][0]).is_file()]
    if not stages:
        log.info("render_run_figures: no stage model in %s: word figures skipped", run.root)
        return []
    from mate.text.encoders import build_text_encoder

    encoders = {"original": build_text_encoder(spec).eval()}
    for s in stages:
        encoders[{0: "baseline (stage 0)", 1: "MATE (stage 1)"}[s]] = \
            load_stage_model(run.root, s, device).text_encoder.eval()
    pairs = _run_pairs(run)
    if 1 in stages:  # before vs after MATE
        map_encoders = {k: v for k, v in encoders.items() if k != "baseline (stage 0)"}
        title = "Motion words before vs after MATE: WE(w), L2-normalised, one PCA over both panels; antonym pairs joined"
    else:
        map_encoders, title = encoders, None
    return [plot_word_embedding_map(map_encoders, pairs, run.eval / "word_embedding_map.png", title=title),
            plot_antonym_similarity_heatmap(encoders, pairs, run.eval / "antonym_similarity.png")]


def _test_motion_figure(data: Path, fps: float, out_dir: Path) -> list[Path]:
    """Stick figures of the first motion of the test split (else val, train) that has usable
    features (a missing, empty or NaN/inf motion, such as HumanML3D's test 007975, is passed over)."""
    ids = []
    for split in ("test.txt", "val.txt", "train.txt"):
        for base in (data, data / "splits"):
            if (base / split).is_file():
                ids = [i.strip() for i in (base / split).read_text().splitlines() if i.strip()]
                break
        if ids:
            break
    for motion_id in ids:
        vec = data / "new_joint_vecs" / f"{motion_id}.npy"
        if vec.is_file():
            from mate.data.features import recover_joints

            features = np.load(vec)
            if features.ndim != 2 or features.shape[0] == 0 or not np.isfinite(features).all():
                continue
            joints = recover_joints(features)
            caption = _first_caption(data, motion_id)
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in motion_id)
            return [plot_stick_figures(
                joints, out_dir / f"stick_figures_{safe}.png", frames=8, fps=fps,
                title=f"Test motion {motion_id}: \u201c{textwrap.shorten(caption, 120)}\u201d" if caption else None)]
    return []


def render_run_figures(run_dir: PathLike, device: str = "cpu", data_dir: PathLike | None = None,
                       num_timelines: int = 3) -> list[Path]:
    """Every figure for a finished run, written into ``RUN/eval/``; returns their paths.

    * ``word_embedding_map.png`` and ``antonym_similarity.png``: the original encoder vs the
      stage-0 (baseline) and stage-1 (MATE) word tables;
    * ``segmentation_<caption key>.png``: ``num_timelines`` captions of RUN/segments.json against
      the dataset's ground truth (DATA/segments.json of a synthetic set) when present;
    * ``stick_figures_<motion id>.png``: the first test motion (joints from its features);
    * ``training_curves.png``: RUN/metrics.csv.

    A figure whose inputs are missing (no stage-1 model, no data) is skipped with a log message."""
    run = RunDir(Path(run_dir))
    run_dir = run.root
    spec = encoder_spec(run_dir)          # RunDirectoryError for a directory that is not a run
    out_dir = run.eval
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    written += _word_figures(run, spec, device)
    data = _data_dir(run, data_dir)
    fps = _fps_of(data)

    # Segmentation timelines.
    seg_path = run.segments
    if seg_path.is_file() and num_timelines > 0:
        pred = json.loads(seg_path.read_text())
        truth = {}
        if data is not None and (data / "segments.json").is_file():
            truth = json.loads((data / "segments.json").read_text())
        for key, seg, true_bounds in _pick_segmentations(pred, truth, num_timelines):
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key)
            written.append(plot_segmentation_timeline(
                seg["subtexts"], seg["bounds_frames"], true_bounds, fps, out_dir / f"segmentation_{safe}.png",
                title=f"Caption {key}: predicted (stage-0 encoders + DP) vs ground-truth segments"))

    if data is not None:
        written += _test_motion_figure(data, fps, out_dir)
    if run.metrics_csv.is_file() and read_metrics(run.metrics_csv):
        written.append(plot_training_curves(run.metrics_csv, out_dir / "training_curves.png",
                                            title=f"Training curves of {run_dir.name}"))
    elif run.metrics_csv.is_file():   # a run too short to log a row: nothing to draw
        log.info("render_run_figures: %s has no rows: training curves skipped", run.metrics_csv)
    return written
