"""mate.kernels: fused Triton kernels for MATE's hot ops (installed as ``mate.kernels``, never as a
top-level ``kernels``).

Importing this package registers each kernel with :mod:`mate.ops` (``impl="triton"``, and
``impl="auto"`` on CUDA). On CPU the kernels run under ``TRITON_INTERPRET=1`` (tests only: the
interpreter is numpy, one program at a time).

* :mod:`mate.kernels.gaussian_attention` -- Gaussian-prior word-query attention, forward and
  backward, online softmax over frames, log-sum-exp kept for the backward.
* :mod:`mate.kernels.prototype_ce` -- cosine prototype cross-entropy blocked over K with an online
  log-sum-exp; never materialises the N x K logits.

Both use only public names of :mod:`mate.ops` (``register_triton_impl``, ``NORM_EPS``,
``REDUCTIONS``) and share their host-side helpers (poisoned output buffers, accumulation dtype,
tile widths) through ``mate.kernels._helpers``. The math they implement is in docs/method.md
("Fused forms").
"""
if __name__ == "mate.kernels":
    from . import gaussian_attention, prototype_ce  # noqa: F401  (each registers itself with mate.ops)
# Else this folder was imported as a top-level ``kernels`` because the repository root is on
# sys.path (pytest, ``python -m`` from a checkout): transformers probes ``import kernels`` for the
# unrelated hub-kernels package. Stay inert then: importing the kernel modules a second time under
# another name would register a second copy of every kernel with mate.ops.
