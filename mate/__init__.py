"""MATE: Motion-Aligned Word Embeddings for text-to-motion generation (ICLR 2026).

Subpackages: ``mate.data`` (datasets, motion features, the synthetic benchmark), ``mate.text``
(sub-texts, vocabulary, text encoders), ``mate.model`` (the MATE model and losses), ``mate.ops``
(the hot ops: eager references and fast paths), ``mate.segment`` (optimal temporal segmentation,
C++/numba), ``mate.kernels`` (Triton kernels), ``mate.train`` (``python -m mate.train`` and
``mate.train.run``), ``mate.rundir`` (the run directory and its ``run.json``), ``mate.evaluate``,
``mate.plots`` and ``mate.ablate`` (which read runs). The architecture is in the README.
"""
__version__ = "0.1.0"

# A CUDA-only torchvision next to a CPU torch breaks every transformers model import; make it
# harmless before anything imports transformers (no-op when torchvision is absent or works).
from .text.torchvision_compat import block_broken_torchvision as _block_broken_torchvision

_block_broken_torchvision()

_LAZY = {
    "build_text_encoder": "mate.text.encoders",
    "export_text_encoder": "mate.text.encoders",
    "load_text_encoder": "mate.text.encoders",
}


def __getattr__(name: str):
    # Heavy imports (transformers) only when asked for: `import mate` stays cheap.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mate' has no attribute {name!r}")
