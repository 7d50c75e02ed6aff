"""mate.ops: MATE's hot ops, each with an eager reference that reads like the paper's equations.

* :func:`gaussian_word_attention` -- word queries attending to motion frames under a Gaussian
  prior (Eqs. 2-4), in the projected-once form; :func:`gaussian_word_attention_literal` is the
  literal per-query formula (a test oracle); :func:`prior_weights` gives the ablation variants.
* :func:`prototype_cross_entropy` -- cosine-to-prototype cross-entropy (Eq. 5, L_self);
  :func:`info_nce` -- its symmetric two-direction form (Eq. 6, L_align, L_sent).

Every op takes ``impl``:

* ``"reference"``: the eager equations, the ground truth every fast path is tested against.
* ``"compiled"``: ``torch.compile(reference, fullgraph=True, dynamic=True)``, cached per static
  call signature (device type, dtype, optional inputs, reduction); varying Q, N, T, lam or tau does
  not recompile (sizes 0/1 get their own graph). The CPU fast path. Its backward refuses
  ``retain_graph=True`` (torch's donated buffers; see ``mate.ops._common``). Under an outer
  ``torch.compile`` it runs the reference inline.
* ``"triton"``: the fused kernels, registered by ``mate.kernels`` through
  :func:`register_triton_impl`; ``NotImplementedError`` until then.
* ``"auto"``: ``"triton"`` on CUDA once registered, else ``"compiled"``, else (torch.compile
  unavailable, or ``MATE_DISABLE_COMPILE=1``) ``"reference"``.

Dropout masks come from a seeded ``torch.Generator`` in the reference/compiled paths and from the
kernel's own RNG in the Triton path: masks differ across impls.

Constants: ``IMPLS``; ``PRIOR_VARIANTS``, the attention-prior variants of :func:`prior_weights`
(``"none" | "binary" | "gaussian_in_segment" | "gaussian"``; its single home: the model and the
command line take it from here); ``REDUCTIONS``, the ``reduction`` values of
:func:`prototype_cross_entropy`; ``NORM_EPS``, the eps of its cosine normalisation.

For kernel authors: ``mate.kernels`` uses only public names of this package --
:func:`register_triton_impl` to plug a kernel in (see its docstring for the arguments each op
passes), and ``NORM_EPS`` / ``REDUCTIONS`` so that the kernels and the references cannot drift
apart. The math of every op, eager and fused, is written out in docs/method.md.
"""
from ._common import IMPLS, compile_available, register_triton_impl, resolve_impl
from .attention import PRIOR_VARIANTS, gaussian_word_attention, gaussian_word_attention_literal, prior_weights
from .prototype_ce import NORM_EPS, REDUCTIONS, info_nce, prototype_cross_entropy

__all__ = [
    "IMPLS",
    "NORM_EPS",
    "PRIOR_VARIANTS",
    "REDUCTIONS",
    "compile_available",
    "gaussian_word_attention",
    "gaussian_word_attention_literal",
    "info_nce",
    "prior_weights",
    "prototype_cross_entropy",
    "register_triton_impl",
    "resolve_impl",
]
