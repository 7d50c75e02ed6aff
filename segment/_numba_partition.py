"""The same dynamic program as csrc/partition.cpp, in numba: the fallback when the C++
extension is not built. Identical arithmetic (float64 accumulation, ties to the smallest
boundary), so both give bit-identical answers."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def solve(cost, min_units):  # pragma: no cover - compiled
    N = cost.shape[0]
    G = cost.shape[1] - 1
    S = G + 1
    best = np.full((N + 1, S), np.inf)
    arg = np.full((N + 1, S), -1, dtype=np.int64)
    best[0, 0] = 0.0
    for n in range(N):
        a_lo = n * min_units
        b_hi = G - (N - n - 1) * min_units
        for b in range(a_lo + min_units, b_hi + 1):
            m = np.inf
            am = -1
            for a in range(a_lo, b - min_units + 1):
                prev = best[n, a]
                if prev == np.inf:
                    continue
                total = prev + np.float64(cost[n, a, b])
                if total < m:
                    m = total
                    am = a
            best[n + 1, b] = m
            arg[n + 1, b] = am
    bounds = np.zeros(N + 1, dtype=np.int64)
    bounds[N] = G
    for n in range(N, 0, -1):
        bounds[n - 1] = arg[n, bounds[n]]
    return bounds, best[N, G]
