"""The 0.5-second grid on which MATE segments a motion (paper, Sec. 3.1)."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["unit_frames", "unit_grid"]


def unit_frames(fps: float, unit_seconds: float = 0.5) -> int:
    """Frames per grid unit: ``round(unit_seconds * fps)``, halves rounded up.

    10 at 20 fps (HumanML3D) and 6 at 12.5 fps (KIT-ML, 6.25 frames), as in the paper.
    """
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    if not (isinstance(unit_seconds, (int, float)) and math.isfinite(unit_seconds) and unit_seconds > 0):
        raise ValueError(f"unit_seconds must be a positive finite number, got {unit_seconds!r}")
    unit = int(math.floor(unit_seconds * fps + 0.5))
    if unit < 1:
        raise ValueError(f"unit_seconds * fps = {unit_seconds * fps:g} rounds to 0 frames per unit")
    return unit


def unit_grid(num_frames: int, fps: float, unit_seconds: float = 0.5) -> np.ndarray:
    """Frame boundaries of the segmentation grid.

    Args:
        num_frames: motion length in frames (>= 1).
        fps: frames per second (20 for HumanML3D, 12.5 for KIT-ML).
        unit_seconds: grid unit in seconds (0.5 in the paper).

    Returns:
        int64 array ``[G + 1]`` of frame indices ``0 = f_0 < f_1 < ... < f_G = num_frames``.
        Unit ``g`` covers frames ``[f_g, f_{g+1})``. A final partial unit is merged into the
        previous one, so the last unit is between 1 and 2 units long; a motion shorter than one
        unit is a single unit.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"num_frames must be an integer, got {type(num_frames).__name__}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    unit = unit_frames(fps, unit_seconds)
    num_units = max(1, int(num_frames) // unit)
    grid = np.arange(num_units + 1, dtype=np.int64) * unit
    grid[-1] = num_frames  # absorbs the partial unit
    return grid
