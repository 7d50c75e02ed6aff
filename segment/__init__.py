"""mate.segment: optimal temporal segmentation of motions into sub-text clips (paper, Eq. 1).

Installed as ``mate.segment`` (never as a top-level ``segment``). The dynamic program runs in a
C++ extension (``mate.segment._partition``, built from ``csrc/``) or, when that is not built,
in numba.
"""
from . import partition as _partition
from .grid import unit_frames, unit_grid
from .partition import Partition, available_backends, exhaustive_partition, optimal_partition, optimal_partition_batch

__all__ = [*_partition.__all__, "unit_frames", "unit_grid"]
