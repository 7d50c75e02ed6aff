"""Host-side helpers shared by the kernel modules of :mod:`mate.kernels` (package-internal).

* :func:`poison_outputs` / :func:`empty` -- output buffers that show unwritten elements: under
  ``MATE_POISON_OUTPUTS=1`` every buffer a kernel should fill starts as NaN, so an element that no
  program writes shows up in the tests.
* :func:`acc_dtype` -- the accumulation dtype of a kernel for an input dtype.
* :func:`pow2_at_least_16` -- a tile width that ``tl.dot`` accepts for a problem size.
"""
from __future__ import annotations

import os

import torch
import triton

__all__ = ["acc_dtype", "empty", "poison_outputs", "pow2_at_least_16"]


def poison_outputs() -> bool:
    """Whether ``MATE_POISON_OUTPUTS`` is set (to anything but "" or "0")."""
    return os.environ.get("MATE_POISON_OUTPUTS", "").strip() not in ("", "0")


def empty(shape, dtype, device) -> torch.Tensor:
    """torch.empty, NaN-filled under MATE_POISON_OUTPUTS=1 so an element no kernel wrote shows."""
    out = torch.empty(shape, dtype=dtype, device=device)
    if poison_outputs():
        out.fill_(float("nan"))
    return out


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype for inputs of ``dtype``: float64 for float64, float32 otherwise (half
    precision included). Kernels read it back from a buffer's pointer type, so only int/bool
    constexprs cross into a launch (inductor re-emits them as literals)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def pow2_at_least_16(n: int) -> int:
    """The smallest power of two >= max(n, 1), and at least 16 (``tl.dot``'s smallest tile side)."""
    return max(16, triton.next_power_of_2(max(int(n), 1)))
