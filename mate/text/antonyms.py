"""Motion words and their antonyms: the one home of the antonym lists, the antonym-swap tests
built from them, and the word-embedding rows WE(w) that MATE fine-tunes.

* :data:`ANTONYM_GROUPS` -- the word pairs an antonym swap tests, with every spelling matched;
* :data:`ANTONYM_WORD_PAIRS` -- one spelling per word of each group (the rows a report follows);
* :data:`FIGURE_WORD_PAIRS` -- those plus pairs shown in figures only (raise/lower, sit/stand);
* :data:`SYNONYM_GROUPS` -- synonym pairs, the control of the antonym test;
* :func:`word_swaps` / :func:`antonym_swaps` / :func:`synonym_swaps` -- every swap test of a caption;
* :func:`word_embedding_vectors` -- WE(w) of words, as MATE reads a word.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ANTONYM_GROUPS", "SYNONYM_GROUPS", "PROTOTYPE_SYNONYMS", "SUBJECT_WORDS", "ANTONYM_WORD_PAIRS", "FIGURE_WORD_PAIRS", "WordSwap", "AntonymSwap",
           "word_swaps", "antonym_swaps", "synonym_swaps", "word_embedding_vectors"]

#: Lemmas that name the same movement as another lemma: with ``--word-sampling motion-words`` a
#: sampled word of the left column gets the prototype of the right one (one prototype per meaning,
#: so L_self never asks a motion to tell "rapidly" from "quickly").
PROTOTYPE_SYNONYMS: dict[str, str] = {
    "rapidly": "quickly", "fast": "quickly", "slow": "slowly", "anticlockwise": "counterclockwise",
    "forwards": "forward", "backwards": "backward",
}
#: Lemmas that name who moves, not how: never sampled with ``--word-sampling motion-words``.
SUBJECT_WORDS = frozenset({"person", "man", "woman", "figure", "human", "guy", "individual", "someone", "somebody",
                           "people", "character", "actor", "subject", "boy", "girl", "lady"})

#: Word pair -> {word as written: its antonym}. Matching is case-insensitive on whole words
#: (a hyphen separates words: "left-hand" -> "right-hand"); multi-word and hyphenated spellings
#: of counterclockwise are matched as one word.
ANTONYM_GROUPS: dict[str, dict[str, str]] = {
    "clockwise/counterclockwise": {
        "clockwise": "counterclockwise", "counterclockwise": "clockwise", "counter-clockwise": "clockwise",
        "counter clockwise": "clockwise", "anticlockwise": "clockwise", "anti-clockwise": "clockwise",
        "anti clockwise": "clockwise",
    },
    "left/right": {"left": "right", "right": "left"},
    "forward/backward": {"forward": "backward", "backward": "forward", "forwards": "backwards",
                         "backwards": "forwards"},
    "quickly/slowly": {"quickly": "slowly", "slowly": "quickly", "fast": "slow", "slow": "fast"},
    "up/down": {"up": "down", "down": "up"},
    "upstairs/downstairs": {"upstairs": "downstairs", "downstairs": "upstairs"},
}

#: Word pair -> {word as written: its synonym}: the control of the antonym test (swapping a word
#: for a synonym should barely move a score; swapping it for its antonym should).
SYNONYM_GROUPS: dict[str, dict[str, str]] = {
    "quickly/rapidly": {"quickly": "rapidly", "rapidly": "quickly"},
    "counterclockwise/anticlockwise": {"counterclockwise": "anticlockwise", "counter-clockwise": "anticlockwise",
                                       "counter clockwise": "anticlockwise", "anticlockwise": "counterclockwise",
                                       "anti-clockwise": "counterclockwise", "anti clockwise": "counterclockwise"},
    "forward/forwards": {"forward": "forwards", "forwards": "forward"},
    "backward/backwards": {"backward": "backwards", "backwards": "backward"},
}
_COORDINATORS = r"(?:and|or|to|&|/)"
# "right" as an intensifier ("right after", "right away"): no direction to swap.
_RIGHT_INTENSIFIED = {"after", "before", "away", "now", "then", "there", "here", "when", "as", "until", "behind"}


def _alternation(words) -> str:
    """A regex alternation of ``words``, longest first ("counter-clockwise" before "clockwise"),
    a space matching any run of white space."""
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True))


_MATCHERS: dict[int, tuple[dict, dict, re.Pattern]] = {}


def _matcher(groups: dict[str, dict[str, str]]) -> tuple[dict, re.Pattern]:
    """(word -> group name, a regex of every word) for ``groups``, built once per groups dict."""
    entry = _MATCHERS.get(id(groups))
    if entry is None or entry[0] is not groups:
        word_to_pair = {w: pair for pair, words in groups.items() for w in words}
        pattern = re.compile(r"(?<![^\W_])(" + _alternation(word_to_pair) + r")(?![^\W_])", re.IGNORECASE)
        entry = _MATCHERS[id(groups)] = (groups, word_to_pair, pattern)
    return entry[1], entry[2]


@dataclass(frozen=True)
class WordSwap:
    """One swap test: ``caption[start:end]`` is ``word`` (of ``pair``); ``swapped`` is the
    caption with that occurrence replaced by ``antonym`` (its antonym, or its synonym for a
    synonym swap; case kept)."""

    pair: str
    word: str
    antonym: str
    start: int
    end: int
    swapped: str


AntonymSwap = WordSwap


def _match_case(antonym: str, written: str) -> str:
    if written.isupper() and len(written) > 1:
        return antonym.upper()
    if written[:1].isupper():
        return antonym[:1].upper() + antonym[1:]
    return antonym


def _canonical(word: str) -> str:
    return re.sub(r"\s+", " ", word.lower())


def word_swaps(caption: str, groups: dict[str, dict[str, str]]) -> list[WordSwap]:
    """Every swap test of ``caption`` for ``groups`` (:data:`ANTONYM_GROUPS` or
    :data:`SYNONYM_GROUPS`): one per occurrence of a word of a group, in text order. Skipped: an
    occurrence joined to a word of its own group by "and"/"or"/"to" ("up and down", "from left to
    right": the swap is a paraphrase), and "right" followed by after/before/away/now/... (an
    intensifier)."""
    if not isinstance(caption, str):
        raise ValueError(f"caption must be a string, got {type(caption).__name__}")
    word_to_pair, pattern = _matcher(groups)
    out = []
    for m in pattern.finditer(caption):
        written = m.group(1)
        word = _canonical(written)
        pair = word_to_pair[word]
        group = _alternation(groups[pair])
        after, before = caption[m.end():], caption[:m.start()]
        if re.match(rf"\s*{_COORDINATORS}\s*(?:{group})(?![^\W_])", after, re.IGNORECASE) or \
                re.search(rf"(?<![^\W_])(?:{group})\s*{_COORDINATORS}\s*$", before, re.IGNORECASE):
            continue
        if word == "right":
            nxt = re.match(r"\s+([^\W_]+)", after)
            if nxt and nxt.group(1).lower() in _RIGHT_INTENSIFIED:
                continue
        antonym = groups[pair][word]
        swapped = caption[:m.start()] + _match_case(antonym, written) + caption[m.end():]
        out.append(WordSwap(pair, word, antonym, m.start(), m.end(), swapped))
    return out


def antonym_swaps(caption: str) -> list[WordSwap]:
    """Every antonym test of ``caption`` (:func:`word_swaps` with :data:`ANTONYM_GROUPS`)."""
    return word_swaps(caption, ANTONYM_GROUPS)


def synonym_swaps(caption: str) -> list[WordSwap]:
    """Every synonym-swap control of ``caption`` (:func:`word_swaps` with :data:`SYNONYM_GROUPS`)."""
    return word_swaps(caption, SYNONYM_GROUPS)


#: One spelling per word of each :data:`ANTONYM_GROUPS` pair, in the same order.
ANTONYM_WORD_PAIRS: tuple[tuple[str, str], ...] = (("clockwise", "counterclockwise"), ("left", "right"),
                                            ("forward", "backward"), ("quickly", "slowly"), ("up", "down"),
                                            ("upstairs", "downstairs"))

#: Pairs drawn in the word-embedding figures: the tested pairs, then two more whose rows MATE
#: also trains on the synthetic set (their captions use them; no swap test is built from them).
FIGURE_WORD_PAIRS: tuple[tuple[str, str], ...] = ANTONYM_WORD_PAIRS + (("raise", "lower"), ("sit", "stand"))


def word_embedding_vectors(encoder, words: Sequence[str], normalise: bool = True) -> np.ndarray:
    """WE(w) [W, E] float64 for each word (the mean of its token embeddings, as MATE reads it),
    L2-normalised when ``normalise``."""
    import torch

    with torch.no_grad():
        emb = encoder.embed_words(encoder.word_token_ids(list(words))).detach().to("cpu", torch.float64).numpy()
    if normalise:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb
