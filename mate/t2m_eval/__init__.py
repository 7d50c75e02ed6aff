"""``mate.t2m_eval``: the standard text-to-motion evaluator (Guo et al. 2022), in one call.

Every T2M paper (MATE's Tables 1-6 included) reports R-precision, FID, MM-Dist, Diversity and
MultiModality through the same released evaluator: a text encoder and a motion encoder trained to
match, reading GloVe vectors with POS one-hots and motions in the evaluator's own normalisation.
This package loads those released weights and reproduces the reference evaluation's conventions:

* :mod:`.networks`: the three networks, parameter for parameter as in ``finest.tar``;
* :mod:`.words`: the word vectoriser (GloVe rows, 15 POS categories, the direction/body/object/
  action/manner word overrides, ``sos``/``eos``/``unk`` padding to 22 tokens);
* :mod:`.evaluator`: :func:`load_evaluator` and :class:`Evaluator` (renormalisation, embeddings);
* :mod:`.data`: the evaluation set (length filter, annotated spans, bad motions skipped with a
  warning, one random caption per motion, lengths rounded to 4, padding to 196, shuffled batches
  of 32 with the last dropped, sorted by caption length);
* :mod:`.protocol`: :func:`evaluate_real`, :func:`evaluate_generator` (20 replications, mean +-
  1.96 sigma / sqrt(20)).

Usage::

    from mate import t2m_eval
    ev = t2m_eval.load_evaluator("checkpoints/t2m", "glove", dataset="humanml3d")
    t2m_eval.evaluate_real("HumanML3D", ev)          # R-precision ~0.511/0.703/0.797, FID ~0.002
    t2m_eval.evaluate_generator(generate_fn, "HumanML3D", ev)

or ``python -m mate.t2m_eval --data HumanML3D --evaluator checkpoints/t2m --glove glove``.
"""
from .data import BadMotionWarning, EvalSet
from .evaluator import CONVENTIONS, Evaluator, load_evaluator
from .networks import MotionEncoderBiGRUCo, MovementConvEncoder, TextEncoderBiGRUCo
from .protocol import evaluate_generator, evaluate_real, summarise_replications
from .words import POS_CATEGORIES, WordVectorizer, caption_inputs

__all__ = ["BadMotionWarning", "CONVENTIONS", "EvalSet", "Evaluator", "MotionEncoderBiGRUCo", "MovementConvEncoder",
           "POS_CATEGORIES", "TextEncoderBiGRUCo", "WordVectorizer", "caption_inputs", "evaluate_generator",
           "evaluate_real", "load_evaluator", "summarise_replications"]
