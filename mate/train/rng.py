"""Seeds and random-number-generator state: what makes a stage reproducible and a resumed run
bit-identical to an uninterrupted one."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "stage_seed", "enable_determinism", "capture_rng_state", "restore_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(seed: int, stage: int) -> int:
    """The seed a stage starts from (model initialisation, dropout): a function of --seed and the
    stage alone, so that a stage trains the same whether the earlier ones ran or were reused."""
    return (seed * 1_000_003 + 7919 * (stage + 1)) % 2**63


def enable_determinism() -> None:
    """torch.use_deterministic_algorithms(True) (and what CUDA needs for it)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def capture_rng_state(collator=None) -> dict:
    """Every random-number generator a training step can touch (weights_only-loadable)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "collator": collator.rng.getstate() if collator is not None and hasattr(collator, "rng") else None,
    }


def restore_rng_state(state: dict, collator=None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if state.get("collator") is not None and collator is not None and hasattr(collator, "rng"):
        collator.rng.setstate(_as_tuple(state["collator"]))


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
