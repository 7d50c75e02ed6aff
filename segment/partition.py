"""Optimal temporal segmentation (paper, Eq. 1).

Given N sub-texts and a motion cut into G grid units (see :func:`unit_grid`), ``cost[n, a, b]``
is the cost of giving sub-text ``n`` the units ``[a, b)`` (in MATE, ``1 - cos(E_t(t^n),
E_m(m[frame(a):frame(b)]))``). We look for boundaries ``0 = b_0 < b_1 < ... < b_N = G``, each
clip at least ``min_units`` long, minimising ``sum_n cost[n, b_n, b_{n+1}]``.

The paper searches all ``C(G-1, N-1)`` partitions (:func:`exhaustive_partition`, kept as the
reference). The objective is a sum along a chain, so a dynamic program finds the same minimum in
``O(N * G^2)``: :func:`optimal_partition` runs it in C++ (``csrc/partition.cpp``), or in numba
when the extension is not built.
"""
from __future__ import annotations

import itertools
import os
import warnings
from typing import NamedTuple, Sequence

import numpy as np

try:
    from . import _partition as _cpp
except ImportError as _err:  # the extension was not built: numba takes over
    _cpp = None
    _CPP_IMPORT_ERROR: ImportError | None = _err
else:
    _CPP_IMPORT_ERROR = None

__all__ = [
    "Partition",
    "available_backends",
    "exhaustive_partition",
    "optimal_partition",
    "optimal_partition_batch",
]


class Partition(NamedTuple):
    """An optimal partition.

    bounds: int64 ``[N + 1]`` grid indices ``0 = b_0 < ... < b_N = G``; sub-text ``n`` gets the
        grid units ``[bounds[n], bounds[n+1])``.
    cost: the total cost ``sum_n cost[n, b_n, b_{n+1}]`` (float, accumulated in float64).
    """

    bounds: np.ndarray
    cost: float

    def frames(self, grid: np.ndarray) -> np.ndarray:
        """Frame boundaries ``[N + 1]`` given the grid from :func:`unit_grid`."""
        return np.asarray(grid, dtype=np.int64)[self.bounds]


def available_backends() -> list[str]:
    """The dynamic-program backends usable here: ``"cpp"`` when the extension is built, ``"numba"``."""
    return (["cpp"] if _cpp is not None else []) + ["numba"]


_warned_fallback = False
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _resolve_backend(backend: str) -> str:
    global _warned_fallback
    if backend not in ("auto", "cpp", "numba"):
        raise ValueError(f"backend must be 'auto', 'cpp' or 'numba', got {backend!r}")
    if backend == "cpp" and _cpp is None:
        raise RuntimeError(
            "the C++ extension mate.segment._partition is not built "
            f"({_CPP_IMPORT_ERROR}); reinstall with `pip install -e .` or use backend='numba'"
        )
    if backend == "auto":
        if _cpp is not None:
            return "cpp"
        if not _warned_fallback:
            warnings.warn(
                "mate.segment: the C++ extension is not built "
                f"({_CPP_IMPORT_ERROR}); using the numba dynamic program instead",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_fallback = True
        return "numba"
    return backend


def _as_cost_array(cost, where: str = "") -> np.ndarray:
    """Any array-like (numpy, torch, nested lists) -> C-contiguous float32/float64 numpy array,
    with shape and dtype checked. Non-contiguous input is copied."""
    if hasattr(cost, "detach") and hasattr(cost, "cpu"):  # a torch tensor, without importing torch
        if getattr(cost, "is_meta", False):
            raise ValueError(f"{where}cost is a 'meta' tensor (it has no values): pass a CPU or CUDA tensor")
        cost = cost.detach().cpu().numpy()
    try:
        arr = np.asarray(cost)
    except (TypeError, ValueError) as e:  # ragged lists and the like
        raise ValueError(f"{where}cost is not an array: {e}") from None
    if arr.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{where}cost dtype must be float32 or float64, got {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{where}cost must be 3-D [N, G+1, G+1], got {arr.ndim}-D")
    n, g1, g2 = arr.shape
    if g1 != g2:
        raise ValueError(f"{where}cost must have shape [N, G+1, G+1], got [{n}, {g1}, {g2}]")
    if n < 1:
        raise ValueError(f"{where}cost has N = 0 sub-texts; need N >= 1")
    if g1 < 2:
        raise ValueError(f"{where}cost has G = {g1 - 1} grid units; need G >= 1")
    return np.ascontiguousarray(arr)


def _check_min_units(min_units) -> int:
    if isinstance(min_units, bool) or not isinstance(min_units, (int, np.integer)):
        raise ValueError(f"min_units must be an integer, got {type(min_units).__name__}")
    if min_units < 1:
        raise ValueError(f"min_units must be >= 1, got {min_units}")
    return int(min_units)


def _check_solvable(arr: np.ndarray, min_units: int, where: str = "") -> None:
    """The checks the C++ code makes before its DP, for the Python backends (same messages)."""
    n_sub, g = arr.shape[0], arr.shape[1] - 1
    if n_sub * min_units > g:
        raise ValueError(
            f"{where}N * min_units = {n_sub} * {min_units} exceeds G = {g} grid units "
            "(N > G when min_units = 1)"
        )
    upper = np.triu(np.ones((g + 1, g + 1), dtype=bool), k=1)
    bad = ~np.isfinite(arr) & upper
    if bad.any():
        n, a, b = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where}cost[{n}, {a}, {b}] is not finite (NaN or inf)")


def _solve_numba(arr: np.ndarray, min_units: int, where: str = "") -> Partition:
    from ._numba_partition import solve

    _check_solvable(arr, min_units, where)
    bounds, total = solve(arr, min_units)
    if not np.isfinite(total):
        raise ValueError(f"{where}the partition cost overflows float64; rescale the costs")
    return Partition(bounds, float(total))


def optimal_partition(cost, min_units: int = 1, backend: str = "auto") -> Partition:
    """Optimal partition of one motion by dynamic programming, ``O(N * G^2)``.

    Args:
        cost: ``[N, G+1, G+1]`` float32 or float64 (numpy array, torch tensor or nested lists);
            ``cost[n, a, b]`` for ``0 <= a < b <= G`` is the cost of sub-text ``n`` on grid units
            ``[a, b)``. Entries with ``a >= b`` are never read. Non-contiguous input is copied.
        min_units: the shortest clip, in grid units (>= 1).
        backend: ``"auto"`` (C++ when built, else numba with a warning), ``"cpp"`` or ``"numba"``.

    Returns:
        :class:`Partition`. Among equal-cost optima the earliest last boundary wins.

    Raises:
        ValueError: wrong ndim, shape or dtype; N = 0 or G = 0; ``N * min_units > G``; a NaN or
            inf entry with ``a < b``; ``min_units < 1``.
    """
    min_units = _check_min_units(min_units)
    if _resolve_backend(backend) == "cpp":
        # A C-contiguous float array goes straight to C++, which checks shape, dtype and values
        # itself (same messages); anything else is converted first.
        if not (isinstance(cost, np.ndarray) and cost.flags.c_contiguous and cost.dtype in _FLOAT_DTYPES):
            cost = _as_cost_array(cost)
        bounds, total = _cpp.optimal_partition(cost, min_units)
        return Partition(bounds, total)
    return _solve_numba(_as_cost_array(cost), min_units)


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def optimal_partition_batch(
    costs: Sequence | np.ndarray,
    num_threads: int | None = None,
    min_units: int = 1,
    backend: str = "auto",
) -> list[Partition]:
    """Optimal partitions of many motions in one call.

    Args:
        costs: a sequence of ``[N_i, G_i+1, G_i+1]`` float32/float64 tables (N and G may differ
            per table), or one ``[B, N, G+1, G+1]`` array.
        num_threads: worker threads for the C++ backend (default: the cores this process may
            use). The GIL is released while they run. The numba backend is single-threaded.
        min_units, backend: as in :func:`optimal_partition`.

    Returns:
        ``list[Partition]``, one per table, in order.

    Raises:
        ValueError: as :func:`optimal_partition`, the message prefixed with ``costs[i]:``.
    """
    min_units = _check_min_units(min_units)
    if num_threads is None:
        num_threads = _default_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
    if isinstance(costs, np.ndarray) or (hasattr(costs, "detach") and hasattr(costs, "cpu")):
        if costs.ndim != 4:
            raise ValueError(f"a batch array must be 4-D [B, N, G+1, G+1], got {costs.ndim}-D")
        costs = list(costs)
    elif isinstance(costs, (str, bytes)) or not isinstance(costs, Sequence):
        raise ValueError(f"costs must be a sequence of arrays or a 4-D array, got {type(costs).__name__}")
    # Cheap pass: only non-numpy or non-contiguous tables are converted here; shapes, dtypes and
    # values are checked by the backend (in C++ inside the worker threads).
    tables = [
        c if isinstance(c, np.ndarray) and c.flags.c_contiguous and c.dtype in _FLOAT_DTYPES
        else _as_cost_array(c, f"costs[{i}]: ")
        for i, c in enumerate(costs)
    ]
    if _resolve_backend(backend) == "cpp":
        return [Partition(b, c) for b, c in _cpp.optimal_partition_batch(tables, min_units, int(num_threads))]
    out = []
    for i, arr in enumerate(tables):
        where = f"costs[{i}]: "
        out.append(_solve_numba(_as_cost_array(arr, where), min_units, where))
    return out


def exhaustive_partition(cost, min_units: int = 1) -> Partition:
    """The paper's search: score every one of the ``C(G-1, N-1)`` partitions and keep the best.

    Same arguments, checks and result as :func:`optimal_partition` (ties: the lexicographically
    smallest boundaries). Exponential in N; it is the reference the dynamic program is tested and
    benchmarked against, not something to run on a dataset.
    """
    min_units = _check_min_units(min_units)
    arr = _as_cost_array(cost)
    _check_solvable(arr, min_units)
    n_sub, g = arr.shape[0], arr.shape[1] - 1
    if n_sub == 1:  # a single clip: the whole motion
        total = float(arr[0, 0, g])
        if not np.isfinite(total):
            raise ValueError("the partition cost overflows float64; rescale the costs")
        return Partition(np.array([0, g], dtype=np.int64), total)
    best_cost, best_bounds = np.inf, None
    sub = np.arange(n_sub)
    # Interior boundaries are (N-1)-subsets of 1..G-1, enumerated in lexicographic order; each
    # chunk is scored with one gather + sum in float64.
    combos = itertools.combinations(range(1, g), n_sub - 1)
    chunk = 1 << 16
    while True:
        flat = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, chunk)), dtype=np.int64)
        if flat.size == 0:
            break
        bounds = np.empty((flat.size // (n_sub - 1), n_sub + 1), dtype=np.int64)
        bounds[:, 0], bounds[:, -1], bounds[:, 1:-1] = 0, g, flat.reshape(-1, n_sub - 1)
        if min_units > 1:
            bounds = bounds[(np.diff(bounds, axis=1) >= min_units).all(axis=1)]
        if bounds.shape[0]:
            with np.errstate(over="ignore"):  # overflow is reported below, by name
                totals = arr[sub, bounds[:, :-1], bounds[:, 1:]].astype(np.float64).sum(axis=1)
            k = int(np.argmin(totals))  # first minimum: lexicographically smallest on ties
            if totals[k] < best_cost:
                best_cost, best_bounds = float(totals[k]), bounds[k].copy()
    if best_bounds is None or not np.isfinite(best_cost):
        raise ValueError("the partition cost overflows float64; rescale the costs")
    return Partition(best_bounds, best_cost)
