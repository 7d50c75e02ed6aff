"""Optimal partition: the paper's exhaustive search vs the dynamic program (numba, C++).

    python benchmarks/bench_partition.py            # full run, writes benchmarks/results/partition.json
    python benchmarks/bench_partition.py --quick    # smaller sweep, for a smoke test

Work per table: the exhaustive search scores C(G-1, N-1) partitions of N terms each; the DP does
about N * G^2 / 2 additions. At N = 5, G = 20: 3,876 * 5 = 19,380 terms vs ~1,000, so ~20x of the
gap is algorithmic and the rest is interpreter overhead. Two exhaustive implementations are timed:
`mate.segment.exhaustive_partition` (numpy, vectorised in chunks: the honest baseline) and a literal
Python loop (how the search is usually written).
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import time

import numpy as np

from common import environment, median_seconds, write_results

import mate.segment as seg


def exhaustive_python_loop(cost: np.ndarray) -> tuple[tuple[int, ...], float]:
    """The paper's search written as a plain loop over every partition."""
    n_sub, g = cost.shape[0], cost.shape[1] - 1
    best, best_bounds = math.inf, None
    for inner in itertools.combinations(range(1, g), n_sub - 1):
        bounds = (0, *inner, g)
        total = 0.0
        for n in range(n_sub):
            total += float(cost[n, bounds[n], bounds[n + 1]])
        if total < best:
            best, best_bounds = total, bounds
    return best_bounds, best


def random_costs(rng, n, g, dtype=np.float32):
    return rng.uniform(0.0, 2.0, size=(n, g + 1, g + 1)).astype(dtype)


def bench_single(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    sizes = [(n, g) for n in range(2, 7) for g in (10, 20, 30, 40)]
    if quick:
        sizes = [(2, 10), (5, 20)]
    for n, g in sizes:
        cost = random_costs(rng, n, g)
        partitions = math.comb(g - 1, n - 1)
        want = seg.exhaustive_partition(cost)
        row = {"N": n, "G": g, "partitions": partitions, "ms": {}, "repeats": {}}
        impls = {
            "cpp": lambda: seg.optimal_partition(cost, backend="cpp"),
            "numba": lambda: seg.optimal_partition(cost, backend="numba"),
            "exhaustive_numpy": lambda: seg.exhaustive_partition(cost),
        }
        if partitions <= 100_000:  # the plain loop takes minutes beyond that
            impls["exhaustive_python"] = lambda: exhaustive_python_loop(cost)
        for name, fn in impls.items():
            # Every implementation must find the same optimum before its time counts.
            got = fn()
            got_cost = got.cost if isinstance(got, seg.Partition) else got[1]
            assert abs(got_cost - want.cost) <= 1e-9 * max(1.0, abs(want.cost)), (name, n, g)
            t, reps = median_seconds(fn, min_repeats=3 if name.startswith("exhaustive") else 20)
            row["ms"][name], row["repeats"][name] = t * 1e3, reps
        row["speedup_cpp_vs_exhaustive_numpy"] = row["ms"]["exhaustive_numpy"] / row["ms"]["cpp"]
        if "exhaustive_python" in row["ms"]:
            row["speedup_cpp_vs_exhaustive_python"] = row["ms"]["exhaustive_python"] / row["ms"]["cpp"]
        row["speedup_cpp_vs_numba"] = row["ms"]["numba"] / row["ms"]["cpp"]
        rows.append(row)
        print(f"N={n} G={g:2d} partitions={partitions:>7d} " + " ".join(f"{k}={v:.4f}ms" for k, v in row["ms"].items()), flush=True)
    return rows


def bench_batch(quick: bool, num_tables: int) -> dict:
    """A HumanML3D-sized dataset: one table per caption, G = 20 (10 s), N uniform in 1..5."""
    rng = np.random.default_rng(1)
    if quick:
        num_tables = 2_000
    g = 20
    ns = rng.integers(1, 6, size=num_tables)
    tables = [random_costs(rng, int(n), g) for n in ns]
    ref = seg.optimal_partition_batch(tables, num_threads=1, backend="cpp")
    out = {"tables": num_tables, "G": g, "N": "uniform 1..5", "dtype": "float32", "seconds": {}}
    cores = seg.partition._default_threads()
    runs = {
        "cpp_1_thread": lambda: seg.optimal_partition_batch(tables, num_threads=1, backend="cpp"),
        f"cpp_{cores}_threads": lambda: seg.optimal_partition_batch(tables, num_threads=cores, backend="cpp"),
        "numba_loop": lambda: seg.optimal_partition_batch(tables, backend="numba"),
    }
    for name, fn in runs.items():
        got = fn()
        assert all(np.array_equal(a.bounds, b.bounds) for a, b in zip(got, ref)), name
        t, reps = median_seconds(fn, min_repeats=5, min_total_s=0.0)
        out["seconds"][name] = t
        print(f"batch {num_tables} tables: {name} = {t:.3f} s (median of {reps})", flush=True)
    # The exhaustive search on the same batch, extrapolated from a timed sample (it takes minutes).
    sample = tables[:300] if not quick else tables[:50]
    t0 = time.perf_counter()
    for c in sample:
        seg.exhaustive_partition(c)
    out["seconds"]["exhaustive_numpy_extrapolated"] = (time.perf_counter() - t0) / len(sample) * num_tables
    print(f"batch: exhaustive_numpy (extrapolated from {len(sample)}) = {out['seconds']['exhaustive_numpy_extrapolated']:.1f} s")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sweep (smoke test)")
    parser.add_argument("--tables", type=int, default=44_970, help="batch size (HumanML3D captions)")
    parser.add_argument("--name", default=None, help="results file name (default: partition[_quick])")
    args = parser.parse_args(argv)
    if "cpp" not in seg.available_backends():
        print("the C++ extension is not built; nothing to compare", file=sys.stderr)
        return 1
    single = bench_single(args.quick)
    batch = bench_batch(args.quick, args.tables)
    target = next((r for r in single if r["N"] == 5 and r["G"] == 20), None)
    summary = {
        "cpp_vs_exhaustive_numpy_at_N5_G20": target and target["speedup_cpp_vs_exhaustive_numpy"],
        "cpp_vs_exhaustive_python_at_N5_G20": target and target.get("speedup_cpp_vs_exhaustive_python"),
        "batch_seconds_best_cpp": min(v for k, v in batch["seconds"].items() if k.startswith("cpp")),
        "targets": {"cpp_vs_exhaustive_at_N5_G20": ">= 1000x", "batch_44970_seconds": "< 1 s on 2 cores"},
    }
    payload = {"benchmark": "partition", "environment": environment(), "single": single, "batch": batch, "summary": summary}
    path = write_results(args.name or ("partition_quick" if args.quick else "partition"), payload)
    print(f"\nsummary: {summary}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
