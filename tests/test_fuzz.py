"""Fuzzing the input validation of the segmenter (C++ extension, numba) and of the ops.

Contract (the docstrings of mate.segment and mate.ops): whatever it is handed, a call either
returns a valid result or raises ValueError / TypeError with a message; never a crash, never another exception type.

* Segmenter: ``optimal_partition`` / ``optimal_partition_batch`` on random shapes (empty
  included), dtypes (ints, float16, complex, object, big-endian, bool), NaN / inf / huge values,
  non-contiguous, Fortran-ordered, negative-stride and broadcast layouts, numpy / torch / nested
  lists, random ``min_units`` and ``num_threads``. A valid result is a partition (``0 = b_0 < ...
  < b_N = G``, clips >= min_units) whose cost is the sum of its entries and equals the exhaustive
  search's optimum. Crashes of the extension are looked for in a subprocess.
* Ops (``impl="reference"``): ``gaussian_word_attention`` and ``prototype_cross_entropy`` on
  random shapes (empty tensors, mismatched dims), dtypes, NaN / inf, out-of-range indices,
  non-contiguous / expanded layouts, odd scalars. A valid result has the documented shape and
  dtype, and is finite whenever the inputs are finite and moderate.

Edge cases found by fuzzing have their own regression tests at the end of the file: head dim
d = 0, dropout seeds and ignore_index beyond int64, a huge min_units, 'meta' tensors, and a tau
whose 1/tau overflows. Finiteness is asserted only for moderate inputs (tau >= 1e-3, |x| <= 1e3).
"""
from __future__ import annotations

import re
import math
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

import mate.segment as seg
from mate.ops import gaussian_word_attention, prototype_cross_entropy

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate, Phase.target])
OK_ERRORS = (ValueError, TypeError)


def check_error(err: BaseException) -> None:
    """An allowed rejection: ValueError/TypeError with a message."""
    event(f"rejected: {type(err).__name__}: {re.sub(r'[0-9]+', '#', str(err))[:50]}")
    assert isinstance(err, OK_ERRORS), f"{type(err).__name__}: {err}"
    assert str(err).strip(), f"{type(err).__name__} without a message"


# =============================================================================== segmenter

SPECIALS = [np.nan, np.inf, -np.inf, 1e308, -1e308, 3e38, -3e38, 1e-320, 0.0]
DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool", "complex64", "complex128",
          "object", ">f8", "<f4"]


@st.composite
def cost_arrays(draw, valid=None):
    """An array-like cost table: half the time a valid [N, G+1, G+1] float32/float64 table (in any
    layout, NaN allowed only where the DP never reads: a >= b), else one with one or two defects:
    any shape or rank, empty dims, another dtype, NaN / inf / huge values, not a numpy array."""
    if valid is None:
        valid = draw(st.booleans())
    defects = set() if valid else set(draw(st.lists(
        st.sampled_from(["shape", "rank", "dtype", "special", "torch_dtype", "huge"]), min_size=1, max_size=2)))
    n = draw(st.integers(1, 5))
    g = draw(st.integers(n, 9))
    shape = (n, g + 1, g + 1)
    if "shape" in defects:
        shape = (draw(st.integers(0, 5)), draw(st.integers(0, 9)), draw(st.integers(0, 9)))
    if "rank" in defects:
        shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
    dtype = draw(st.sampled_from(DTYPES)) if "dtype" in defects else draw(st.sampled_from(["float32", "float64"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = np.asarray(rng.random(shape) * draw(st.sampled_from([1.0, 1e3, 1e30])))
    if "huge" in defects:
        with np.errstate(over="ignore"):
            values = values * 1e300
    if values.ndim == 3 and values.size and values.shape[1] >= 2 and draw(st.booleans()):
        values[:, -1, 0] = np.nan  # cost[n, G, 0]: a > b, never read by the DP
    if "special" in defects and values.size:
        flat = values.reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(SPECIALS))
    with np.errstate(all="ignore"):
        arr = values.astype(dtype) if dtype != "object" else values.astype(object)
    layouts = ["c", "fortran", "reversed", "strided", "broadcast", "torch", "list"]
    layout = draw(st.sampled_from(layouts))
    if layout == "fortran":
        arr = np.asfortranarray(arr)
    elif layout == "reversed" and arr.ndim:
        arr = arr[::-1]
    elif layout == "strided" and arr.ndim:
        arr = np.repeat(arr[..., None], 2, axis=-1)[..., 0]
    elif layout == "broadcast" and arr.ndim and arr.shape[0]:
        arr = np.broadcast_to(arr[:1], arr.shape)
    elif layout == "torch" and dtype not in ("object", ">f8", "uint8"):
        arr = torch.from_numpy(np.ascontiguousarray(arr))
        if "torch_dtype" in defects and arr.is_floating_point():
            arr = arr.to(draw(st.sampled_from([torch.bfloat16, torch.float16])))
    elif layout == "list":
        arr = arr.tolist()
    return arr


def mostly(valid, invalid, valid_share: float = 0.75):
    """``valid`` with probability ~valid_share, else ``invalid`` (hypothesis' one_of and
    sampled_from are not uniform)."""
    cut = round(100 * valid_share)
    return st.integers(0, 99).flatmap(lambda i: valid if i < cut else invalid)


MIN_UNITS = mostly(st.sampled_from([1, 2, np.int64(1), np.int32(2)]),
                   st.sampled_from([0, -2, 12, 2**31, 2**40, 2**53, True, 1.0, 2.5, None, "2"]))


def as_float64(cost) -> np.ndarray | None:
    """The table as float64 when it is a valid-looking [N, G+1, G+1] numeric table, else None."""
    if isinstance(cost, torch.Tensor):
        cost = cost.float().numpy() if cost.dtype == torch.bfloat16 else cost.numpy()
    arr = np.asarray(cost)
    if arr.dtype.kind != "f" or arr.ndim != 3:
        return None
    return arr.astype(np.float64)


def check_partition(result, cost, min_units: int) -> None:
    arr = as_float64(cost)
    assert arr is not None, "a table that should have been refused was accepted"
    n, g = arr.shape[0], arr.shape[1] - 1
    bounds = np.asarray(result.bounds)
    assert bounds.dtype == np.int64 and bounds.shape == (n + 1,)
    assert bounds[0] == 0 and bounds[-1] == g
    assert np.all(np.diff(bounds) >= min_units)
    assert math.isfinite(result.cost)
    total = sum(arr[i, bounds[i], bounds[i + 1]] for i in range(n))
    assert result.cost == pytest.approx(total, rel=1e-12, abs=1e-300)
    if math.comb(g - 1, n - 1) <= 5000:  # the paper's search agrees on the optimum
        best = seg.exhaustive_partition(np.ascontiguousarray(arr), min_units=min_units)
        assert result.cost == pytest.approx(best.cost, rel=1e-12, abs=1e-300)


@FUZZ
@given(cost=cost_arrays(), min_units=MIN_UNITS, backend=st.sampled_from(["auto", "auto", "auto", "numba"]))
@example(cost=np.zeros((1, 1, 1)), min_units=1, backend="auto")
@example(cost=np.full((2, 4, 4), np.nan), min_units=1, backend="auto")
@example(cost=np.full((3, 8, 8), 1e308), min_units=1, backend="auto")
def test_optimal_partition_never_crashes(cost, min_units, backend):
    try:
        result = seg.optimal_partition(cost, min_units=min_units, backend=backend)
    except BaseException as err:  # noqa: BLE001 - the type is what is under test
        check_error(err)
        return
    event("accepted")
    check_partition(result, cost, int(min_units))


@FUZZ
@given(costs=st.booleans().flatmap(lambda all_valid: st.lists(cost_arrays(valid=True if all_valid else None),
                                                              min_size=0, max_size=4)),
       min_units=MIN_UNITS,
       num_threads=mostly(st.sampled_from([None, 1, 2, 4, 2**40]), st.sampled_from([0, -1, 1.5, "2"]), 0.8),
       container=st.sampled_from(["list", "tuple", "stacked"]))
def test_optimal_partition_batch_never_crashes(costs, min_units, num_threads, container):
    if container == "tuple":
        costs = tuple(costs)
    elif container == "stacked":
        arrays = [c for c in costs if isinstance(c, np.ndarray)]
        try:
            costs = np.stack(arrays) if arrays else np.zeros((0, 1, 2, 2))
        except ValueError:
            costs = arrays
    try:
        results = seg.optimal_partition_batch(costs, num_threads=num_threads, min_units=min_units)
    except BaseException as err:  # noqa: BLE001
        check_error(err)
        return
    event(f"accepted {len(results)} tables")
    assert len(results) == len(costs)
    for result, cost in zip(results, costs):
        check_partition(result, cost, int(min_units))


# -- crash search for the extension, in a subprocess ------------------------------------------

_WORKER = textwrap.dedent("""
    import sys, numpy as np
    from mate.segment import optimal_partition_batch, optimal_partition
    for line in sys.stdin:
        n, g, min_units, batch = (int(x) for x in line.split())
        cost = np.random.default_rng(0).random((n, g + 1, g + 1))
        try:
            if batch:
                optimal_partition_batch([cost], min_units=min_units, num_threads=1)
            else:
                optimal_partition(cost, min_units=min_units)
            print("ok", flush=True)
        except (ValueError, TypeError) as err:
            print("error", type(err).__name__, flush=True)
""")


class _Worker:
    """A persistent child process that runs one partition per stdin line; a crash or a hang kills
    only the child (restarted for the next case)."""

    def __init__(self):
        self.proc = None

    def start(self):
        import resource

        def no_core():
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, preexec_fn=no_core)

    def run(self, line: str, timeout: float = 5.0) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.proc.kill()
            self.proc.wait()
            return "hang"
        reply = self.proc.stdout.readline().strip()
        if not reply:
            code = self.proc.wait()
            return f"crash (exit code {code}, {signal.Signals(-code).name if code < 0 else ''})"
        return reply

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def partition_worker():
    worker = _Worker()
    yield worker
    worker.close()


@settings(max_examples=60, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(n=st.integers(1, 6), g=st.integers(1, 9), min_units=st.integers(1, 2**63 - 1), batch=st.booleans())
@example(n=3, g=7, min_units=3074457345618258603, batch=False)
def test_extension_survives_any_min_units(partition_worker, n, g, min_units, batch):
    reply = partition_worker.run(f"{n} {g} {min_units} {int(batch)}")
    assert reply in ("ok", "error ValueError", "error TypeError"), reply


# ===================================================================================== ops

FLOAT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
ANY_DTYPES = FLOAT_DTYPES + [torch.int64, torch.int32, torch.bool, torch.complex64, torch.uint8]
TENSOR_DEFECTS = ["dim", "rank", "dtype", "nan", "inf", "huge", "not_tensor", "meta_device"]


@st.composite
def tensors(draw, shape, dtype, defect=None, low=-3.0, high=3.0):
    """A tensor of ``shape`` and ``dtype`` (values uniform in [low, high); ints drawn from
    [low, high)), in a random layout (contiguous, strided, expanded); with ``defect`` one of
    TENSOR_DEFECTS applied."""
    shape = list(shape)
    if defect == "dim" and shape:
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.integers(0, 5).filter(lambda x: x != shape[i]))
    elif defect == "rank":
        shape = shape + [1] if draw(st.booleans()) or not shape else shape[:-1]
    if defect == "dtype":
        dtype = draw(st.sampled_from([d for d in ANY_DTYPES if d != dtype]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    layout = draw(st.sampled_from(["contiguous", "strided", "expanded"]))
    base_shape = shape + [2] if layout == "strided" else shape
    if layout == "expanded" and shape and shape[0] > 1:
        base_shape = [1] + shape[1:]
    if dtype.is_floating_point or dtype.is_complex:
        x = torch.rand(base_shape, generator=gen, dtype=torch.float64) * (high - low) + low
        if defect in ("nan", "inf", "huge") and x.numel():
            flat = x.view(-1)
            flat[int(torch.randint(0, flat.numel(), (1,), generator=gen))] = {"nan": math.nan, "inf": -math.inf,
                                                                              "huge": 1e30}[defect]
        x = x.to(dtype)
    else:
        lo, hi = int(math.floor(low)), max(int(math.ceil(high)), int(math.floor(low)) + 1)
        if defect in ("nan", "inf", "huge"):  # integers: out of range instead
            lo, hi = lo - 3, hi + 3
        x = torch.randint(lo, hi, base_shape, generator=gen).to(dtype)
    if layout == "strided":
        x = x[..., 0]
    elif layout == "expanded" and shape and shape[0] > 1:
        x = x.expand(shape)
    if defect == "meta_device":  # the only other device on a CPU machine: a device mismatch
        return x.to("meta")
    if defect == "not_tensor":
        return x.tolist() if draw(st.booleans()) else x.numpy() if x.dtype != torch.bfloat16 else 1.0
    return x


def all_finite(*xs) -> bool:
    return all(not (isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex()))
               or bool(torch.isfinite(x).all()) for x in xs)


def max_abs(*xs) -> float:
    values = [float(x.abs().max()) for x in xs if isinstance(x, torch.Tensor) and x.numel()
              and (x.is_floating_point() or x.is_complex())]
    return max(values, default=0.0)


BAD_REALS = st.sampled_from([math.nan, math.inf, -math.inf, None, "0.1", torch.tensor(0.1), 1e308, -1.0, 0.0])


def _defects(draw, fields: list[str]) -> dict[str, str]:
    """Half the time no defect; else one or two fields, each with a defect kind."""
    if draw(st.booleans()):
        return {}
    chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True))
    return {f: draw(st.sampled_from(TENSOR_DEFECTS)) for f in chosen}


ATTN_TENSORS = ["q", "k", "v", "motion_idx", "center", "sigma", "lengths", "prior"]
ATTN_SCALARS = ["lam", "scale", "dropout_p", "seed"]


@st.composite
def attention_inputs(draw):
    """Valid inputs of gaussian_word_attention (empty Q, H or B included), or ones with one or two
    defective arguments (shapes, dtypes, NaN/inf, out-of-range indices, odd scalars)."""
    bad = _defects(draw, ATTN_TENSORS + ATTN_SCALARS)
    q_n, h, d = draw(st.integers(0, 4)), draw(st.integers(0, 3)), draw(st.integers(1, 4))
    b = draw(st.integers(1 if q_n else 0, 3))
    t = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    out = {}
    out["q"] = draw(tensors([q_n, h, d], dtype, bad.get("q")))
    out["k"] = draw(tensors([b, t, h, d], dtype, bad.get("k")))
    out["v"] = draw(tensors([b, t, h, d], dtype, bad.get("v")))
    out["motion_idx"] = draw(tensors([q_n], torch.int64, bad.get("motion_idx"), 0, b))
    pos_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    out["center"] = draw(tensors([q_n], pos_dtype, bad.get("center"), -2.0, t + 2.0))
    out["sigma"] = draw(tensors([q_n], pos_dtype, bad.get("sigma"), -1.0, 3.0))
    out["lengths"] = draw(tensors([b], torch.int64, bad.get("lengths"), 1, t + 1))
    out["prior"] = None
    if "prior" in bad or draw(st.integers(0, 3)) == 0:
        out["prior"] = draw(tensors([q_n, t], draw(st.sampled_from(FLOAT_DTYPES)), bad.get("prior"), 0.0, 1.0))
    out["lam"] = draw(BAD_REALS.filter(lambda x: x is not None)) if "lam" in bad else draw(st.floats(-1, 10))
    out["scale"] = draw(BAD_REALS) if "scale" in bad else draw(st.one_of(st.none(), st.floats(1e-3, 10)))
    out["dropout_p"] = draw(st.sampled_from([1.0, -0.1, math.nan, "0.1"])) if "dropout_p" in bad \
        else draw(st.sampled_from([0.0, 0.0, 0.1, 0.9]))
    out["seed"] = draw(st.sampled_from([1.5, "1", True, -2**63 - 1])) if "seed" in bad \
        else draw(st.one_of(st.none(), st.integers(0, 2**63 - 1)))
    return out


@FUZZ
@given(inputs=attention_inputs())
def test_gaussian_word_attention_validates_everything(inputs):
    q, k = inputs["q"], inputs["k"]
    try:
        out = gaussian_word_attention(**inputs, impl="reference")
    except BaseException as err:  # noqa: BLE001
        check_error(err)
        return
    event("accepted")
    assert isinstance(q, torch.Tensor) and out.shape == q.shape and out.dtype == q.dtype
    tensors_in = [inputs[n] for n in ("q", "k", "v", "center", "sigma", "prior")]
    lam = float(inputs["lam"])
    scale = q.shape[-1] ** -0.5 if inputs["scale"] is None else float(inputs["scale"])
    moderate = max_abs(q, k, inputs["v"]) <= 1e3 and abs(lam) <= 10 and scale <= 10
    if all_finite(*tensors_in) and moderate:
        assert bool(torch.isfinite(out).all()), "finite inputs gave a non-finite output"
        if inputs["dropout_p"] == 0.0 and q.numel():  # a convex combination of the values
            bound = max_abs(inputs["v"]) * (1 + 1e-2) + 1e-2
            assert float(out.abs().max()) <= bound


@st.composite
def ce_inputs(draw):
    """Valid inputs of prototype_cross_entropy (N = 0, D = 0 included), or ones with one or two
    defective arguments."""
    bad = _defects(draw, ["features", "prototypes", "target", "tau", "reduction", "ignore_index"])
    n, kp, d = draw(st.integers(0, 5)), draw(st.integers(1, 5)), draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    features = draw(tensors([n, d], dtype, bad.get("features")))
    prototypes = draw(tensors([kp, d], dtype, bad.get("prototypes")))
    ignore_index = draw(st.sampled_from([1.0, None, True, "-100"])) if "ignore_index" in bad \
        else draw(st.one_of(st.just(-100), st.integers(-2**63, 2**63 - 1)))
    target = draw(tensors([n], torch.int64, bad.get("target"), 0, kp))
    if isinstance(target, torch.Tensor) and target.dtype == torch.int64 and target.ndim == 1 and target.numel() \
            and isinstance(ignore_index, int) and draw(st.booleans()):
        target = target.clone()
        target[0] = ignore_index
    tau = draw(BAD_REALS) if "tau" in bad else draw(st.floats(1e-3, 10))
    reduction = draw(st.sampled_from(["max", None, "MEAN"])) if "reduction" in bad \
        else draw(st.sampled_from(["mean", "sum", "none"]))
    return dict(features=features, prototypes=prototypes, target=target, tau=tau, reduction=reduction,
                ignore_index=ignore_index)


@FUZZ
@given(inputs=ce_inputs())
def test_prototype_cross_entropy_validates_everything(inputs):
    features = inputs["features"]
    try:
        loss = prototype_cross_entropy(**inputs, impl="reference")
    except BaseException as err:  # noqa: BLE001
        check_error(err)
        return
    event("accepted")
    assert isinstance(features, torch.Tensor) and loss.dtype == features.dtype
    assert loss.shape == ((features.shape[0],) if inputs["reduction"] == "none" else ())
    moderate = float(inputs["tau"]) >= 1e-3 and max_abs(features, inputs["prototypes"]) <= 1e3
    if all_finite(features, inputs["prototypes"]) and moderate:
        assert bool(torch.isfinite(loss).all()), "finite inputs gave a non-finite loss"
        assert bool((loss >= -1e-2).all()), "a cross-entropy is never negative"


# ======================================================================= pinned findings


def _attention_args(d: int = 4, device: str = "cpu", **overrides):
    args = dict(q=torch.randn(3, 2, d), k=torch.randn(2, 5, 2, d), v=torch.randn(2, 5, 2, d),
                motion_idx=torch.tensor([0, 1, 1]), center=torch.tensor([1.0, 2.0, 3.0]),
                sigma=torch.tensor([1.0, 0.0, 2.0]), lengths=torch.tensor([5, 3]), lam=0.1)
    args = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    return {**args, **overrides}


def test_attention_with_zero_head_dim():
    with pytest.raises(ValueError, match="d"):
        gaussian_word_attention(**_attention_args(d=0), impl="reference")


def test_attention_with_out_of_range_seed():
    with pytest.raises(ValueError, match="seed"):
        gaussian_word_attention(**_attention_args(), dropout_p=0.5, seed=2**70, impl="reference")


def test_cross_entropy_with_out_of_range_ignore_index():
    features, prototypes = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="ignore_index"):
        prototype_cross_entropy(features, prototypes, torch.tensor([0, 1, 2]), ignore_index=2**70, impl="reference")


def test_cross_entropy_with_underflowing_temperature():
    features, prototypes = torch.randn(3, 4), torch.randn(5, 4)
    try:
        loss = prototype_cross_entropy(features, prototypes, torch.tensor([0, 1, 2]), tau=1e-40, impl="reference")
    except ValueError as err:
        assert "tau" in str(err)
    else:
        assert torch.isfinite(loss)


@pytest.mark.parametrize("op", ["attention", "cross_entropy", "partition"])
def test_meta_tensors(op):
    try:
        if op == "attention":
            out = gaussian_word_attention(**_attention_args(device="meta"), impl="reference")
            assert out.shape == (3, 2, 4)
        elif op == "cross_entropy":
            prototype_cross_entropy(torch.randn(3, 4, device="meta"), torch.randn(5, 4, device="meta"),
                                    torch.zeros(3, dtype=torch.int64, device="meta"), impl="reference")
        else:
            seg.optimal_partition(torch.rand(2, 6, 6, device="meta"))
    except (ValueError, TypeError):
        pass
