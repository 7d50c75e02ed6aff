"""optimal_partition (C++ and numba dynamic programs) against the paper's exhaustive search."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mate.segment as seg
from mate.segment import partition as partition_module

BACKENDS = seg.available_backends()


def test_cpp_extension_is_built():
    # A normal install compiles csrc/; if this fails the package silently runs on numba.
    assert "cpp" in BACKENDS, (
        f"mate.segment._partition was not built ({partition_module._CPP_IMPORT_ERROR}); "
        "reinstall with a C++17 compiler available"
    )


def random_table(rng, n, g, dtype, ties):
    """[N, G+1, G+1] costs; with ties, small integers so that many partitions share the optimum."""
    if ties:
        cost = rng.integers(0, 3, size=(n, g + 1, g + 1)).astype(dtype)
    else:
        cost = rng.uniform(-1.0, 2.0, size=(n, g + 1, g + 1)).astype(dtype)
    # Entries with a >= b are never read: poison them so that a read shows up as a wrong answer.
    lower = np.tril(np.ones((g + 1, g + 1), dtype=bool))
    cost[:, lower] = -1e6
    return cost


def check_valid(part: seg.Partition, cost: np.ndarray, min_units: int):
    n, g = cost.shape[0], cost.shape[1] - 1
    b = part.bounds
    assert b.dtype == np.int64 and b.shape == (n + 1,)
    assert b[0] == 0 and b[-1] == g
    assert np.all(np.diff(b) >= min_units)
    recomputed = sum(float(cost[i, b[i], b[i + 1]]) for i in range(n))  # float64, in order
    assert part.cost == recomputed


@st.composite
def problems(draw):
    n = draw(st.integers(1, 5))
    g = draw(st.integers(n, 11))
    min_units = draw(st.integers(1, g // n))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    return random_table(np.random.default_rng(seed), n, g, dtype, ties), min_units


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_dp_matches_exhaustive_minimum(backend, problem):
    cost, min_units = problem
    dp = seg.optimal_partition(cost, min_units=min_units, backend=backend)
    ref = seg.exhaustive_partition(cost, min_units=min_units)
    check_valid(dp, cost, min_units)
    check_valid(ref, cost, min_units)
    # Any optimal partition is fine where there are ties: compare the costs, not the bounds.
    assert dp.cost == pytest.approx(ref.cost, rel=1e-12, abs=1e-12)


@pytest.mark.skipif("cpp" not in BACKENDS, reason="C++ extension not built")
@settings(max_examples=100, deadline=None)
@given(problem=problems())
def test_cpp_and_numba_agree_exactly(problem):
    cost, min_units = problem
    cpp = seg.optimal_partition(cost, min_units=min_units, backend="cpp")
    nb = seg.optimal_partition(cost, min_units=min_units, backend="numba")
    # Same arithmetic and tie rule: bit-identical, ties included.
    np.testing.assert_array_equal(cpp.bounds, nb.bounds)
    assert cpp.cost == nb.cost


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_sizes(backend, dtype):
    rng = np.random.default_rng(0)
    # N = 1: the whole motion is one clip.
    cost = random_table(rng, 1, 7, dtype, ties=False)
    p = seg.optimal_partition(cost, backend=backend)
    np.testing.assert_array_equal(p.bounds, [0, 7])
    assert p.cost == float(cost[0, 0, 7])
    # N = G: every clip is one unit, the only partition.
    cost = random_table(rng, 6, 6, dtype, ties=False)
    p = seg.optimal_partition(cost, backend=backend)
    np.testing.assert_array_equal(p.bounds, np.arange(7))
    # N * min_units = G: also forced.
    cost = random_table(rng, 3, 9, dtype, ties=False)
    p = seg.optimal_partition(cost, min_units=3, backend=backend)
    np.testing.assert_array_equal(p.bounds, [0, 3, 6, 9])
    # G = 1.
    p = seg.optimal_partition(random_table(rng, 1, 1, dtype, False), backend=backend)
    np.testing.assert_array_equal(p.bounds, [0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answer(backend):
    # Three sub-texts on G = 6; the cheap clips are [0,2), [2,5), [5,6) and nothing else is < 1.
    cost = np.ones((3, 7, 7))
    cost[0, 0, 2] = 0.1
    cost[1, 2, 5] = 0.2
    cost[2, 5, 6] = 0.3
    p = seg.optimal_partition(cost, backend=backend)
    np.testing.assert_array_equal(p.bounds, [0, 2, 5, 6])
    assert p.cost == pytest.approx(0.6)
    assert seg.exhaustive_partition(cost).cost == pytest.approx(0.6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_accepts_non_contiguous_torch_and_lists(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    base = random_table(rng, 3, 8, np.float64, ties=False)
    want = seg.optimal_partition(base, backend=backend)
    strided = np.empty((3, 9, 9, 2))
    strided[..., 0] = base
    assert not strided[..., 0].flags.c_contiguous
    for variant in (strided[..., 0], torch.from_numpy(base), base.tolist()):
        got = seg.optimal_partition(variant, backend=backend)
        np.testing.assert_array_equal(got.bounds, want.bounds)
        assert got.cost == want.cost
    transposed = np.ascontiguousarray(np.swapaxes(base, 1, 2)).swapaxes(1, 2)  # F-order view
    np.testing.assert_array_equal(seg.optimal_partition(transposed, backend=backend).bounds, want.bounds)


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_below_the_diagonal_are_ignored(backend):
    cost = random_table(np.random.default_rng(2), 2, 5, np.float64, ties=False)
    want = seg.optimal_partition(cost, backend=backend)
    cost[:, np.tril(np.ones((6, 6), dtype=bool))] = np.nan
    got = seg.optimal_partition(cost, backend=backend)
    np.testing.assert_array_equal(got.bounds, want.bounds)


def _good():
    return np.random.default_rng(3).uniform(size=(2, 6, 6))


def _with(value, index=(1, 2, 4)):
    c = _good()
    c[index] = value
    return c


BAD_INPUTS = [
    # (case id, cost, kwargs, message fragment)
    ("n_greater_than_g", np.zeros((5, 4, 4)), {}, "exceeds G = 3"),
    ("min_units_too_large", _good(), {"min_units": 3}, "N * min_units = 2 * 3 exceeds G = 5"),
    ("nan", _with(np.nan), {}, "cost[1, 2, 4] is not finite"),
    ("inf", _with(np.inf), {}, "cost[1, 2, 4] is not finite"),
    ("neg_inf_float32", _with(-np.inf).astype(np.float32), {}, "cost[1, 2, 4] is not finite"),
    ("nan_unreachable_entry", _with(np.nan, (1, 0, 1)), {}, "cost[1, 0, 1] is not finite"),
    ("ndim_2", np.zeros((6, 6)), {}, "must be 3-D"),
    ("ndim_4", np.zeros((1, 2, 6, 6)), {}, "must be 3-D"),
    ("not_square", np.zeros((2, 5, 6)), {}, "shape [N, G+1, G+1], got [2, 5, 6]"),
    ("dtype_int64", np.zeros((2, 6, 6), dtype=np.int64), {}, "dtype must be float32 or float64, got int64"),
    ("dtype_float16", np.zeros((2, 6, 6), dtype=np.float16), {}, "got float16"),
    ("dtype_complex", np.zeros((2, 6, 6), dtype=np.complex128), {}, "got complex128"),
    ("dtype_bool", np.zeros((2, 6, 6), dtype=bool), {}, "got bool"),
    ("dtype_object", np.array([[[None]]]), {}, "got object"),
    ("ragged_list", [[[0.0, 1.0], [0.0]]], {}, "cost is not an array"),
    ("n_zero", np.zeros((0, 6, 6)), {}, "N = 0"),
    ("g_zero", np.zeros((2, 1, 1)), {}, "G = 0"),
    ("empty", np.zeros((0, 0, 0)), {}, "N = 0"),
    ("min_units_zero", _good(), {"min_units": 0}, "min_units must be >= 1"),
    ("min_units_negative", _good(), {"min_units": -2}, "min_units must be >= 1"),
    ("min_units_float", _good(), {"min_units": 1.5}, "min_units must be an integer"),
    ("min_units_bool", _good(), {"min_units": True}, "min_units must be an integer"),
    # N * min_units overflows int64 here: must still be a ValueError, never a segfault.
    ("min_units_huge", _good(), {"min_units": 3074457345618258603}, "exceeds G = 5"),
    ("overflow", np.full((3, 4, 4), 1e308), {}, "overflows float64"),
]


@pytest.mark.parametrize("case_id,cost,kwargs,fragment", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
@pytest.mark.parametrize("solver", ["cpp", "numba", "exhaustive", "batch"])
def test_bad_input_raises_value_error(solver, case_id, cost, kwargs, fragment):
    if solver == "cpp" and "cpp" not in BACKENDS:
        pytest.skip("C++ extension not built")
    with pytest.raises(ValueError) as info:
        if solver == "exhaustive":
            seg.exhaustive_partition(cost, **kwargs)
        elif solver == "batch":
            seg.optimal_partition_batch([_good(), cost], **kwargs)
        else:
            seg.optimal_partition(cost, backend=solver, **kwargs)
    assert fragment in str(info.value)
    if solver == "batch" and not case_id.startswith("min_units"):
        assert "costs[1]: " in str(info.value)  # names the table


def test_bad_backend_and_threads():
    with pytest.raises(ValueError, match="backend must be"):
        seg.optimal_partition(_good(), backend="cuda")
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_threads"):
            seg.optimal_partition_batch([_good()], num_threads=bad)
    with pytest.raises(ValueError, match="4-D"):
        seg.optimal_partition_batch(np.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match="sequence of arrays"):
        seg.optimal_partition_batch(5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_equals_single_calls(backend):
    rng = np.random.default_rng(4)
    tables = []
    for _ in range(600):  # more than one 256-table chunk per thread
        n = int(rng.integers(1, 6))
        g = int(rng.integers(n, 25))
        tables.append(random_table(rng, n, g, rng.choice([np.float32, np.float64]), ties=bool(rng.integers(2))))
    singles = [seg.optimal_partition(c, backend=backend) for c in tables]
    for threads in (1, 3):
        batch = seg.optimal_partition_batch(tables, num_threads=threads, backend=backend)
        assert len(batch) == len(tables)
        for s, b in zip(singles, batch):
            np.testing.assert_array_equal(s.bounds, b.bounds)
            assert s.cost == b.cost
    # A 4-D array is a batch of same-shaped tables.
    stacked = np.stack([random_table(rng, 3, 10, np.float64, False) for _ in range(5)])
    for c, p in zip(stacked, seg.optimal_partition_batch(stacked, backend=backend)):
        np.testing.assert_array_equal(p.bounds, seg.optimal_partition(c, backend=backend).bounds)
    assert seg.optimal_partition_batch([], backend=backend) == []


def test_numba_fallback_warns_and_agrees(monkeypatch):
    cost = random_table(np.random.default_rng(5), 4, 12, np.float32, ties=False)
    want = seg.exhaustive_partition(cost)
    monkeypatch.setattr(partition_module, "_cpp", None)
    monkeypatch.setattr(partition_module, "_warned_fallback", False)
    assert seg.available_backends() == ["numba"]
    with pytest.warns(RuntimeWarning, match="using the numba dynamic program"):
        got = seg.optimal_partition(cost)
    assert got.cost == pytest.approx(want.cost, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        seg.optimal_partition(cost)
    with pytest.raises(RuntimeError, match="not built"):
        seg.optimal_partition(cost, backend="cpp")


def test_partition_frames():
    grid = seg.unit_grid(47, fps=20)  # [0, 10, 20, 30, 47]
    p = seg.Partition(np.array([0, 1, 4]), 0.0)
    np.testing.assert_array_equal(p.frames(grid), [0, 10, 47])
