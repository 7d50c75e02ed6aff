"""Owns nothing itself: the entry points of the text-to-motion generator that sits on any frozen
text encoder MATE supports (issue #15). See ``docs/generation.md``.

=====================  ===============================================================
``config``             ``GenConfig`` and the presets (``cpu-small``, ``mdm``)
``model``              the MDM-style x0-predicting denoiser, classifier-free guidance
``diffusion``          cosine schedule, DDPM training loss, DDIM sampling
``text``               the frozen encoder from a spec / export / MATE run; cached caption features
``rundir``             the generator run directory and its manifest
``train``              ``python -m mate.generate.train``
``sample``             ``load(GEN_RUN) -> Generator`` with ``.sample(texts, lengths, ...)``
``render``             animated stick figures (GIF; MP4 with ffmpeg)
``__main__``           ``python -m mate.generate``: prompt -> features, joints, GIF
=====================  ===============================================================
"""
from __future__ import annotations

__all__ = ["load", "Generator"]


def __getattr__(name: str):
    # Lazy, so that `python -m mate.generate.train` does not import the sampling side first.
    if name in __all__:
        from mate.generate import sample

        return getattr(sample, name)
    raise AttributeError(f"module 'mate.generate' has no attribute {name!r}")
