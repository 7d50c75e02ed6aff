"""The standard evaluator's text input: GloVe word vectors and part-of-speech one-hots.

Guo et al.'s evaluator (``text_mot_match``, reused by every T2M paper) does not read raw text: it
reads the dataset's POS-tagged tokens (``word/POS``, as in HumanML3D's ``texts/*.txt``; the words
there are spaCy lemmas) through a word vectoriser:

* a word's vector is its 300-d GloVe row from ``glove/our_vab_data.npy`` (rows indexed by
  ``our_vab_idx.pkl``; the known words in ``our_vab_words.pkl``); a word outside that vocabulary
  reads as ``unk`` with the POS ``OTHER``;
* the POS one-hot has 15 categories (:data:`POS_CATEGORIES`): nine spaCy tags, five "very
  important" word groups (direction, body part, object, action, manner words:
  :data:`VIP_WORDS`) that override the tagger's POS for the listed words, and ``OTHER`` for any
  other tag;
* a caption becomes ``sos`` + its first 20 tokens + ``eos`` (``sent_len`` counts them), padded with
  ``unk/OTHER`` to 22 rows (:func:`caption_inputs`).

Re-implemented from the published description and the public reference code's conventions; the
pickles are read with an unpickler that only accepts plain lists, dicts, strings and numbers.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["POS_CATEGORIES", "VIP_WORDS", "MAX_TEXT_TOKENS", "GLOVE_FILES", "WordVectorizer", "caption_inputs"]

#: The 15 POS categories, in the one-hot order of the released evaluator.
POS_CATEGORIES: tuple[str, ...] = ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
                                   "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER")

#: Words whose POS is replaced by their group, checked in this order (a word in two groups gets the
#: first; "dance" is listed twice in the reference list, which changes nothing).
VIP_WORDS: dict[str, tuple[str, ...]] = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back",
                "backward", "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee",
                 "shoulder", "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball",
                "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance",
                "jump", "turn", "stumble", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel",
                "stroll", "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin",
                "spread", "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad",
                 "happily", "angrily", "sadly"),
}

#: Tokens kept per caption (``max_text_len``); with ``sos`` and ``eos`` a caption is 22 rows.
MAX_TEXT_TOKENS = 20

#: The three files of the released word vectors, for prefix ``our_vab``.
GLOVE_FILES = ("{prefix}_data.npy", "{prefix}_words.pkl", "{prefix}_idx.pkl")

_POS_INDEX = {name: i for i, name in enumerate(POS_CATEGORIES)}
_VIP_OF = {}
for _group, _words in VIP_WORDS.items():
    for _word in _words:
        _VIP_OF.setdefault(_word, _group)


class _PlainUnpickler(pickle.Unpickler):
    """Only builtins containers and scalars: a word list or a word -> row dict, never code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the word-vector pickles hold only "
                                     "a list of words and a dict of word -> row")


def _load_pickle(path: Path):
    return _PlainUnpickler(io.BytesIO(path.read_bytes())).load()


class WordVectorizer:
    """``vectorizer["walk/VERB"] -> (word vector float32 [300], POS one-hot float32 [15])``.

    ``WordVectorizer(glove_dir, prefix="our_vab")`` reads ``glove_dir/our_vab_data.npy`` [V, 300],
    ``our_vab_words.pkl`` (list of words) and ``our_vab_idx.pkl`` (word -> row). The vocabulary must
    hold ``unk`` (every unknown word reads as it), ``sos`` and ``eos``."""

    def __init__(self, glove_dir: str | Path, prefix: str = "our_vab"):
        glove_dir = Path(glove_dir)
        paths = [glove_dir / name.format(prefix=prefix) for name in GLOVE_FILES]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"GloVe word vectors not found: {', '.join(missing)} (the evaluator's "
                                    f"glove/ folder, downloaded with the evaluator weights)")
        vectors = np.load(paths[0])
        if vectors.ndim != 2:
            raise ValueError(f"{paths[0]}: expected a [words, dim] array, got shape {vectors.shape}")
        words, index = _load_pickle(paths[1]), _load_pickle(paths[2])
        if not isinstance(index, dict):
            raise ValueError(f"{paths[2]}: expected a dict word -> row, got {type(index).__name__}")
        self.dim = int(vectors.shape[1])
        self.word_to_vector = {}
        for word in words:
            row = index.get(word)
            if row is None or not 0 <= int(row) < vectors.shape[0]:
                raise ValueError(f"{paths[2]}: word {word!r} has no valid row in {paths[0]} ({vectors.shape[0]} rows)")
            self.word_to_vector[word] = vectors[int(row)].astype(np.float32)
        for needed in ("unk", "sos", "eos"):
            if needed not in self.word_to_vector:
                raise ValueError(f"{paths[1]}: the vocabulary has no {needed!r} (the evaluator needs it)")

    def __len__(self) -> int:
        return len(self.word_to_vector)

    @staticmethod
    def pos_one_hot(pos: str) -> np.ndarray:
        """float32 [15]: the category's one-hot (an unknown tag is ``OTHER``)."""
        out = np.zeros(len(POS_CATEGORIES), dtype=np.float32)
        out[_POS_INDEX.get(pos, _POS_INDEX["OTHER"])] = 1.0
        return out

    def __getitem__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        word, sep, pos = token.rpartition("/")
        if not sep:
            raise ValueError(f"token {token!r} is not 'word/POS'")
        if word not in self.word_to_vector:
            return self.word_to_vector["unk"], self.pos_one_hot("OTHER")
        return self.word_to_vector[word], self.pos_one_hot(_VIP_OF.get(word, pos))


def caption_inputs(tokens: Sequence[str], vectorizer: WordVectorizer,
                   max_tokens: int = MAX_TEXT_TOKENS) -> tuple[np.ndarray, np.ndarray, int]:
    """One caption's evaluator input: (word vectors float32 [max_tokens + 2, 300], POS one-hots
    float32 [max_tokens + 2, 15], sent_len int).

    ``sos`` + the first ``max_tokens`` tokens + ``eos``; ``sent_len`` counts those rows; the rest is
    ``unk/OTHER`` padding (the reference loader's rule, which pads only captions shorter than
    ``max_tokens`` and crops the others)."""
    if not tokens:
        raise ValueError("caption has no POS-tagged tokens (the standard evaluator reads the dataset's "
                         "'word/POS' tokens, not raw text)")
    rows = ["sos/OTHER", *list(tokens)[:max_tokens], "eos/OTHER"]
    sent_len = len(rows)
    rows += ["unk/OTHER"] * (max_tokens + 2 - sent_len)
    vectors, pos = zip(*(vectorizer[t] for t in rows))
    return np.stack(vectors), np.stack(pos), sent_len
