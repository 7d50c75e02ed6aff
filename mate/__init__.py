"""MATE: Motion-Aligned Word Embeddings for text-to-motion generation (ICLR 2026).

Subpackages: ``mate.segment`` (optimal temporal segmentation, C++/numba), ``mate.kernels``
(Triton kernels).
"""
__version__ = "0.1.0"
