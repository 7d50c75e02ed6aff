"""Implementation dispatch and argument checks shared by the ops in :mod:`mate.ops`.

Every op takes ``impl``:

* ``"reference"`` -- the eager function that reads like the paper's equations: the ground truth.
* ``"compiled"``  -- ``torch.compile`` of that same function (``fullgraph=True``, ``dynamic=True``):
  the CPU fast path. One compiled wrapper per op and *static call signature* (dtype, device type,
  optional inputs present or not, reduction, ...), see :func:`compiled`. Like any
  ``torch.compile``d graph, its backward refuses ``retain_graph=True`` / ``create_graph=True``
  (AOTAutograd's donated buffers) unless ``torch._functorch.config.donated_buffer`` is False
  (globally: torch reads it again at backward time); use ``"reference"`` for double backward.
* ``"triton"``    -- the fused Triton kernel. Kernels register themselves here with
  :func:`register_triton_impl` (from ``mate.kernels``); until one is registered the op raises
  ``NotImplementedError``. Nothing in the ops' public signatures changes when they land.
* ``"auto"``      -- ``"triton"`` on CUDA when a kernel is registered, else ``"compiled"`` when
  ``torch.compile`` works here, else ``"reference"``.

Set ``MATE_DISABLE_COMPILE=1`` to make ``"auto"`` fall back to the reference (debugging,
platforms without a C++ compiler).
"""
from __future__ import annotations

import functools
import math
import numbers
import os
import types
import warnings
from typing import Callable

import torch

IMPLS = ("auto", "reference", "compiled", "triton")

# op name -> callable with the op's *kernel signature* (validated arguments, defaults resolved).
_TRITON_IMPLS: dict[str, Callable] = {}
_compile_failed: BaseException | None = None


def register_triton_impl(op: str, fn: Callable) -> None:
    """Plug a Triton implementation of ``op`` into ``impl="triton"`` / ``impl="auto"`` (on CUDA).

    ``fn`` receives the arguments after validation, with defaults resolved (floats as ``float``),
    positionally, and returns what the op returns:

    * ``"gaussian_word_attention"``: ``(q, k, v, motion_idx, center, sigma, lengths, lam, scale,
      prior, dropout_p, seed)``; ``prior`` is None or ``[Q, T]``; dropout from its own RNG.
    * ``"prototype_cross_entropy"``: ``(features, prototypes, target, tau, reduction,
      ignore_index)`` (``info_nce`` calls it once per direction).
    """
    _TRITON_IMPLS[op] = fn


_kernels_import_error: BaseException | None = None


def _load_kernels() -> None:
    """Import mate.kernels once: each kernel module registers itself here. Failure (no triton on
    this platform) is remembered and reported by :func:`triton_impl`."""
    global _kernels_import_error
    if _TRITON_IMPLS or _kernels_import_error is not None:
        return
    try:
        import mate.kernels  # noqa: F401  (registers the Triton implementations)
    except ImportError as err:
        _kernels_import_error = err


def triton_impl(op: str) -> Callable:
    _load_kernels()
    try:
        return _TRITON_IMPLS[op]
    except KeyError:
        raise NotImplementedError(
            f"{op}: impl='triton' is not available: the Triton kernels in mate.kernels are not "
            f"registered ({_kernels_import_error or 'no kernel for this op'}); use impl='reference' "
            "or impl='compiled'"
        ) from None


@functools.cache
def _compile_supported() -> bool:
    if os.environ.get("MATE_DISABLE_COMPILE", "").strip() not in ("", "0"):
        return False
    if not hasattr(torch, "compile"):
        return False
    try:
        from torch import _dynamo

        return bool(_dynamo.is_dynamo_supported())
    except Exception:  # pragma: no cover - exotic platforms
        return False


def compile_available() -> bool:
    """Whether ``impl="compiled"`` can run here (``torch.compile`` supported, not disabled, and
    no backend failure seen in this process)."""
    return _compile_supported() and _compile_failed is None


def resolve_impl(op: str, impl: str, device: torch.device) -> str:
    """The concrete implementation (``"reference" | "compiled" | "triton"``) for ``impl``."""
    if impl not in IMPLS:
        raise ValueError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto" and device.type == "cuda":
        _load_kernels()
        if op in _TRITON_IMPLS:
            return "triton"
    if torch.compiler.is_compiling() and impl in ("auto", "compiled"):
        return "reference"  # an outer torch.compile is tracing us: it compiles the reference inline
    if impl == "auto":
        return "compiled" if compile_available() else "reference"
    if impl == "triton":
        triton_impl(op)  # raises NotImplementedError until the kernel is registered
    if impl == "compiled" and not compile_available():
        reason = _compile_failed or "torch.compile is unsupported or disabled (MATE_DISABLE_COMPILE)"
        raise RuntimeError(f"{op}: impl='compiled' is unavailable here: {reason}")
    return impl


@functools.cache
def compiled(fn: Callable, key: tuple) -> Callable:
    """``torch.compile(fn, fullgraph=True, dynamic=True)``, one per ``(fn, key)``.

    Dynamo keeps its compiled graphs on the *code object* it traced, at most
    ``torch._dynamo.config.recompile_limit`` (8) per code object, after which it silently runs
    eagerly. The ops have a handful of static variants (dtype, optional inputs, reduction, grad
    or not); giving each ``key`` its own copy of ``fn``'s code keeps every variant on its own
    budget, so with dynamic shapes a key compiles once however Q, B, T, N, K, lam or tau vary
    (plus once per size that is 0 or 1, which dynamo always specialises, and once more when the
    same key is called both with and without autograd).
    """
    tag = "__".join(str(part).replace(".", "_") for part in key)
    code = fn.__code__.replace(co_name=f"{fn.__name__}__{tag}")
    clone = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = code.co_name
    return torch.compile(clone, fullgraph=True, dynamic=True)


def _compile_config():
    """Settings read while our graphs compile: no duck sizing. Otherwise a first batch whose B
    happens to equal H (or Q equal B) ties those sizes together and the next batch recompiles.
    (Size-oblivious guards, which would also cover sizes 1, specialise T on this torch: not used.)
    """
    from torch.fx.experimental import _config as fx_config

    return fx_config.patch(use_duck_shape=False)


def _guard_signature(args) -> tuple:
    """What dynamo guards on besides sizes and values, per call: the grad mode and, for each
    tensor argument, whether it is a Parameter, requires grad, and is contiguous. A training step
    mixes all of these (L_self's prototypes are a Parameter, L_sent's and L_align's are tensors,
    validation runs without grad, some inputs are views), and on one code object each combination
    is a recompile: past ``recompile_limit`` that is a hard error under ``fullgraph=True``. Made
    part of the :func:`compiled` key, each combination has its own budget and compiles once."""
    return (("grad", torch.is_grad_enabled()),) + tuple(
        (isinstance(a, torch.nn.Parameter), a.requires_grad, a.is_contiguous())
        for a in args if isinstance(a, torch.Tensor))


def run_compiled(op: str, fn: Callable, key: tuple, impl_requested: str, *args):
    """Run ``fn`` compiled; under an outer ``torch.compile`` trace, run it eagerly (the outer
    compile fuses it). With ``impl="auto"`` a backend failure (e.g. no C++ compiler) falls back to
    the reference once, with a warning, for the rest of the process."""
    global _compile_failed
    if torch.compiler.is_compiling():
        return fn(*args)
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        with _compile_config():
            return compiled(fn, key + _guard_signature(args))(*args)
    except BackendCompilerFailed as err:
        if impl_requested != "auto":
            raise
        _compile_failed = err
        warnings.warn(
            f"{op}: torch.compile failed ({type(err).__name__}); impl='auto' falls back to the eager "
            "reference for the rest of this process",
            RuntimeWarning,
            stacklevel=3,
        )
        return fn(*args)


# ----------------------------------------------------------------------------- argument checks


def shape_str(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def check_tensor(op: str, name: str, x, ndim: int, spec: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor {spec}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{op}: {name} must be {spec}, got shape {shape_str(x)}")
    return x


def check_floating(op: str, name: str, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating-point tensor, got dtype {x.dtype}")


def check_int64(op: str, name: str, x: torch.Tensor) -> None:
    if x.dtype != torch.int64:
        raise ValueError(f"{op}: {name} must be int64, got dtype {x.dtype}")


def check_same_device(op: str, **tensors: torch.Tensor | None) -> None:
    present = {n: t for n, t in tensors.items() if t is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        where = ", ".join(f"{n} on {t.device}" for n, t in present.items())
        raise ValueError(f"{op}: all tensors must be on the same device, got {where}")


def check_real(op: str, name: str, x, *, positive: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{op}: {name} must be a real number, got {type(x).__name__}")
    if torch.compiler.is_compiling():
        # Under torch.compile a float that changed between calls is traced as a symbolic value:
        # it is not known while tracing, and math.isfinite on it would break the graph. Its range
        # is checked in eager calls only.
        return x
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{op}: {name} must be > 0, got {value}")
    return value


def raise_first_failure(op: str, checks: list[tuple[torch.Tensor, str]]) -> None:
    """Evaluate boolean 0-d ``failed`` tensors with one host sync; raise for the first that holds."""
    if not checks or any(c.is_meta for c, _ in checks):
        return  # 'meta' tensors carry shapes only: there are no values to check
    failed = torch.stack([c for c, _ in checks]).tolist()  # the one device sync
    for bad, (_, message) in zip(failed, checks):
        if bad:
            raise ValueError(f"{op}: {message}")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed in float32; float32/float64 as they are."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_int64_scalar(op: str, name: str, x) -> int:
    """A Python integer that fits int64 (what torch and the kernels take)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise ValueError(f"{op}: {name} must be an int, got {type(x).__name__}")
    if not INT64_MIN <= int(x) <= INT64_MAX:
        raise ValueError(f"{op}: {name} must fit in int64 [-2**63, 2**63 - 1], got {int(x)}")
    return int(x)
