"""MATE: Motion-Aligned Word Embeddings for text-to-motion generation (ICLR 2026).

Subpackages: ``mate.segment`` (optimal temporal segmentation, C++/numba), ``mate.kernels``
(Triton kernels).
"""
__version__ = "0.1.0"

# A CUDA-only torchvision next to a CPU torch breaks every transformers model import; make it
# harmless before anything imports transformers (no-op when torchvision is absent or works).
from .text.torchvision_compat import block_broken_torchvision as _block_broken_torchvision

_block_broken_torchvision()
