"""The caption grammar of the synthetic benchmark: captions of a plan, with their ground truth.

This module owns the words (lexicon, lemmas, POS tags, verb inflection), the rendering of the
action templates of :mod:`.actions`, and the composition of whole captions
(:func:`generate_captions`, :class:`CaptionRecord`).

Every caption of a motion describes the same segments with a different surface form: subject
("a person", "someone", "the man", ...), synonyms per action, speed adverbs, and connectors
("then", "and then", "after that", "and finally", ...), including reordering ones whose text
order differs from the time order ("X before Y-ing" is time X, Y; "before Y-ing, X" is also time
X, Y; "Y after X-ing"; "Y, but before that X") and "while" for simultaneity ("waves his right hand
while walking forward" is ONE segment with both actions). Tokens follow HumanML3D's
``process_text``: only alphabetic words, NOUN and VERB as lemmas ("walks" -> walk/VERB, "stairs"
-> stair/NOUN), every other word as written with its universal POS tag (left/ADJ, quickly/ADV,
his/DET); hyphens are removed first ("counter-clockwise" -> counterclockwise/ADV). The generator
knows every word's lemma and POS from its templates; no tagger is involved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mate.data.synthetic.actions import ACTIONS, MotionPlan, Segment

# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Word:
    """One caption word: ``surface`` as written, and its HumanML3D token ``lemma/POS``."""

    surface: str
    lemma: str
    pos: str

    @property
    def token(self) -> str:
        return f"{self.lemma}/{self.pos}"


# Default (lemma, UPOS) of every word the templates use. Words with several readings ("left",
# "up", "right", "clockwise") get their POS in the template (``left|ADV``, ``{side:NOUN}``).
_LEXICON: dict[str, tuple[str, str]] = {}


def _lex(pos: str, words: str, lemmas: dict[str, str] | None = None) -> None:
    for word in words.split():
        _LEXICON[word] = ((lemmas or {}).get(word, word), pos)


_lex("DET", "a the some both all his her their another")
_lex("PRON", "someone something he she that")
_lex("NOUN", "person man woman figure direction circle flight arm hand leg foot head knee jump "
             "kick squat seat chair place way turn side air distance jog run stair step degree "
             "pace time",)
_lex("NOUN", "stairs steps arms hands knees feet degrees sides",
     {"stairs": "stair", "steps": "step", "arms": "arm", "hands": "hand", "knees": "knee",
      "feet": "foot", "degrees": "degree", "sides": "side"})
_lex("ADV", "forward forwards ahead straight backward backwards back sideways upstairs downstairs "
            "around once then next finally first quickly fast rapidly slowly very also "
            "clockwise counterclockwise anticlockwise")
_lex("ADJ", "few light short full half other slow quick same")
_lex("ADP", "up down after before to in on of with into above from at out")
_lex("SCONJ", "while")
_lex("CCONJ", "and but")
_lex("INTJ", "hello")
_lex("NUM", "ninety")
_lex("VERB", "face going")
_LEXICON["going"] = ("go", "VERB")
_lex("AUX", "is")

# Inflections (third person singular, gerund) of the verbs the templates use.
_IRREGULAR = {
    "go": ("goes", "going"), "do": ("does", "doing"), "run": ("runs", "running"),
    "jog": ("jogs", "jogging"), "sit": ("sits", "sitting"), "squat": ("squats", "squatting"),
    "step": ("steps", "stepping"), "put": ("puts", "putting"), "get": ("gets", "getting"),
    "drop": ("drops", "dropping"), "hop": ("hops", "hopping"), "side-step": ("side-steps",
                                                                              "side-stepping"),
    "sidestep": ("sidesteps", "sidestepping"), "crouch": ("crouches", "crouching"),
    "bend": ("bends", "bending"), "pivot": ("pivots", "pivoting"),
}


def _inflect(lemma: str, form: str) -> str:
    """``form`` "3sg" (walks) or "ing" (walking) of a verb lemma."""
    if lemma in _IRREGULAR:
        return _IRREGULAR[lemma][0 if form == "3sg" else 1]
    if form == "3sg":
        return lemma + ("es" if lemma.endswith(("s", "sh", "ch", "x")) else "s")
    if lemma.endswith("e") and not lemma.endswith("ee"):
        return lemma[:-1] + "ing"
    return lemma + "ing"


_CIRCLE_WORDS = {"clockwise": ("clockwise",),
                 "counterclockwise": ("counterclockwise", "anticlockwise", "counter-clockwise")}


def _make_word(surface: str, pos: str | None = None) -> _Word:
    """A word with its HumanML3D token. HumanML3D's ``process_text`` removes hyphens, keeps only
    alphabetic tokens, lemmatizes NOUN and VERB (except "left") and keeps every other word as
    written."""
    plain = surface.replace("-", "")
    lemma, default_pos = _LEXICON.get(surface, _LEXICON.get(plain, (plain, None)))
    pos = pos or default_pos
    if pos is None:
        raise KeyError(f"word {surface!r} has no POS: add it to the lexicon or tag it in the "
                       f"template")
    if pos not in ("NOUN", "VERB") or plain == "left":
        lemma = plain
    return _Word(surface, lemma.replace("-", ""), pos)


def _phrase_words(template: str, form: str, poss: str, side: str | None,
                  circle_word: str | None) -> list[_Word]:
    """Render a template into words.

    Markup: ``~verb`` = a verb lemma inflected to ``form`` ("3sg" or "ing"); ``word|POS`` = POS
    override; ``{poss}`` = the subject's possessive (his/her/their); ``{side:POS}`` = "left" or
    "right"; ``{dir:POS}`` = the circle direction word (clockwise, counterclockwise, ...).
    """
    words = []
    for item in template.split():
        pos = None
        if item.startswith("{poss}"):
            words.append(_make_word(poss, "DET"))
            continue
        if item.startswith("{side:") or item.startswith("{dir:"):
            pos = item[item.index(":") + 1:-1]
            words.append(_make_word(side if item.startswith("{side:") else circle_word, pos))
            continue
        if "|" in item:
            item, pos = item.split("|")
        if item.startswith("~"):
            lemma = item[1:]
            words.append(_Word(_inflect(lemma, form), lemma.replace("-", ""), "VERB"))
        else:
            words.append(_make_word(item, pos))
    return words


_SPEED_SUFFIX = {"quick": ("quickly", "fast", "rapidly", "quickly", "very quickly"),
                 "slow": ("slowly", "slowly", "at a slow pace", "very slowly")}
_SPEED_PREFIX = {"quick": ("quickly", "rapidly"), "slow": ("slowly",)}
_SUBJECTS = (("a person", "his"), ("a person", "their"), ("the person", "his"),
             ("the person", "their"), ("someone", "their"), ("someone", "his"), ("a man", "his"),
             ("the man", "his"), ("a woman", "her"), ("the woman", "her"), ("a figure", "its"),
             ("the figure", "its"))
_SUBJECT_WEIGHTS = np.array([6, 3, 4, 2, 3, 2, 4, 2, 1.5, 1, 1, 0.5])
_LEXICON["its"] = ("its", "DET")
_PRONOUN = {"his": "he", "her": "she"}


class _CaptionBuilder:
    """Accumulates words and punctuation into a caption, remembering each segment's span."""

    def __init__(self) -> None:
        self.text = ""
        self.words: list[_Word] = []
        self.spans: dict[int, list[int]] = {}
        self.order: list[int] = []

    def add(self, words: Sequence[_Word], segment: int | None = None) -> None:
        if not words:
            return
        if self.text:
            self.text += " "
        start = len(self.text)
        self.text += " ".join(w.surface for w in words)
        self.words.extend(words)
        if segment is not None:
            if segment in self.spans:  # a segment's words are contiguous
                assert self.spans[segment][1] == start - 1 or self.spans[segment][1] == start
                self.spans[segment][1] = len(self.text)
            else:
                self.spans[segment] = [start, len(self.text)]
                self.order.append(segment)

    def punct(self, mark: str) -> None:
        self.text += mark


@dataclass(frozen=True)
class CaptionRecord:
    """One caption with its ground truth: ``text``; ``tokens`` ("lemma/POS"); ``subtexts``
    and ``spans`` (char [start, end) in ``text``) per segment in time order; ``text_order`` the
    segment indices in caption order."""

    text: str
    tokens: tuple[str, ...]
    subtexts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    text_order: tuple[int, ...]

    @property
    def line(self) -> str:
        """The HumanML3D text-file line ``caption#tokens#0.0#0.0``."""
        return f"{self.text}#{' '.join(self.tokens)}#0.0#0.0"


def _segment_side(action: str) -> tuple[str | None, str | None]:
    spec = ACTIONS[action]
    if spec.name.startswith("circle_"):
        return None, spec.side
    return spec.side, None


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


class _SegmentPhrases:
    """The surface choices for one segment within one caption (template, adverb placement)."""

    def __init__(self, segment: Segment, rng: np.random.Generator, poss: str):
        self.segment = segment
        self.poss = poss
        spec = ACTIONS[segment.action]
        self.template = _pick(rng, spec.phrases)
        side, circle = _segment_side(segment.action)
        self.side = side
        self.circle_word = _pick(rng, _CIRCLE_WORDS[circle]) if circle else None
        self.speed_words: list[_Word] = []
        self.speed_prefix = False
        if segment.speed != "normal":
            self.speed_prefix = rng.random() < 0.3
            table = _SPEED_PREFIX if self.speed_prefix else _SPEED_SUFFIX
            self.speed_words = [_make_word(w) for w in _pick(rng, table[segment.speed]).split()]
        self.overlay_pattern = int(rng.integers(3))
        if segment.overlay:
            wave_spec = ACTIONS[segment.overlay]
            self.wave_template = _pick(rng, wave_spec.phrases)
            self.wave_side = wave_spec.side

    def primary(self, form: str) -> list[_Word]:
        words = _phrase_words(self.template, form, self.poss, self.side, self.circle_word)
        if self.speed_prefix:
            return self.speed_words + words
        return words + self.speed_words

    def wave(self, form: str) -> list[_Word]:
        return _phrase_words(self.wave_template, form, self.poss, self.wave_side, None)

    def words(self, form: str) -> list[_Word]:
        """The whole segment: for a "while" segment one of "X while Y-ing", "Y while X-ing",
        "X and Y at the same time" (X the locomotion, Y the wave)."""
        if not self.segment.overlay:
            return self.primary(form)
        if self.overlay_pattern == 0:
            return self.primary(form) + [_make_word("while")] + self.wave("ing")
        if self.overlay_pattern == 1:
            return self.wave(form) + [_make_word("while")] + self.primary("ing")
        return (self.primary(form) + [_make_word("and")] + self.wave(form)
                + [_make_word(w) for w in "at the same time".split()])


def _words(text: str) -> list[_Word]:
    return [_make_word(w) for w in text.split()]


# Connectors between consecutive clauses in time order: (words before the next clause, whether a
# sentence break comes first, i.e. the next clause may restate the subject).
_CHAIN_CONNECTORS = ((",", "then"), ("", "then"), ("", "and then"), (",", "and then"),
                     (".", "then"), (",", "after that"), (".", "after that ,"), ("", "and"),
                     (",", "and after that"), (",", "next"), (".", "next ,"))
_FINAL_CONNECTORS = ((",", "and finally"), ("", "and finally"), (".", "finally ,"))


class _CaptionComposer:
    """Composes one caption of a plan: the subject, a structure, the clauses and connectors.

    The random draws happen in a fixed order (subject, each segment's surface choices, the
    structure, then connectors and restated subjects as the caption is written left to right, and
    the final period), so a caption is a pure function of the generator's state.
    """

    def __init__(self, plan: MotionPlan, rng: np.random.Generator):
        self.segments = plan.segments
        self.n = len(self.segments)
        self.rng = rng
        self.subject_text, self.poss = _SUBJECTS[int(rng.choice(
            len(_SUBJECTS), p=_SUBJECT_WEIGHTS / _SUBJECT_WEIGHTS.sum()))]
        self.subject = _words(self.subject_text)
        self.phrases = [_SegmentPhrases(s, rng, self.poss) for s in self.segments]
        self.builder = _CaptionBuilder()
        self.structure, self.pair = self._choose_structure()

    def restated_subject(self) -> list[_Word]:
        """After a sentence break, sometimes restate the subject ("then he turns left")."""
        rng = self.rng
        if rng.random() < 0.5:
            return []
        pronoun = _PRONOUN.get(self.poss)
        if pronoun and rng.random() < 0.7:
            return [_make_word(pronoun)]
        return _words("the " + self.subject_text.split()[-1]) \
            if self.subject_text != "someone" else []

    def chain(self, first: int, stop: int, lead_connector: tuple[str, str] | None) -> None:
        """Clauses first..stop-1 in time order with sequential connectors."""
        n, builder = self.n, self.builder
        for k in range(first, stop):
            connector = lead_connector if k == first else None
            if k > 0 and connector is None:
                table = _FINAL_CONNECTORS if (k == n - 1 and n >= 3 and self.rng.random() < 0.4) \
                    else _CHAIN_CONNECTORS
                connector = _pick(self.rng, table)
            extra: list[_Word] = []
            if connector is not None:
                mark, text = connector
                if mark:
                    builder.punct(mark)
                tail_comma = text.endswith(" ,")
                builder.add(_words(text[:-2] if tail_comma else text))
                if tail_comma:
                    builder.punct(",")
                if mark == "." or text.startswith("next"):
                    extra = self.restated_subject()
            builder.add(extra + self.phrases[k].words("3sg"), k)

    # Structures. "chain": X, then Y, ... ; "first": "a person first X, then Y". Pair structures
    # join two consecutive simple (no "while") segments p, p+1 with "before"/"after":
    #   before:            "X before Y-ing"          time X, Y   text X, Y
    #   after:             "after X-ing, Y"          time X, Y   text X, Y
    #   after_reordered:   "Y after X-ing"           time X, Y   text Y, X
    #   before_reordered:  "before Y-ing, X"         time X, Y   text Y, X
    #   but_before_that:   "Y, but before that X"    time X, Y   text Y, X
    # A pair that opens the caption may be followed by more clauses only when its last clause
    # is the later one in time (before, after): "a person walks forward before turning left,
    # then jumps". Reordered pairs close the caption ("..., then turns left after walking
    # forward"), or are the whole caption, so "then"/"after that" always refer to the segment
    # just before in time.
    def _choose_structure(self) -> tuple[str, int]:
        """The caption's structure and, for pair structures, the pair's first segment."""
        n, segments = self.n, self.segments
        options: list[tuple[str, int]] = [("chain", 0)]
        weights = [0.6]
        if n >= 2:
            options.append(("first", 0))
            weights.append(0.1)
        simple = [not s.overlay for s in segments]
        if n >= 2 and simple[0] and simple[1]:
            options += [("before", 0), ("after", 0)]
            weights += [0.07, 0.04]
            if n == 2:
                options += [("after_reordered", 0), ("before_reordered", 0),
                            ("but_before_that", 0)]
                weights += [0.07, 0.06, 0.04]
        if n >= 3 and simple[n - 2] and simple[n - 1]:
            options += [("before", n - 2), ("after_reordered", n - 2)]
            weights += [0.04, 0.06]
        if n == 1 and not segments[0].overlay:
            options.append(("progressive", 0))
            weights.append(0.25)
        weights_array = np.asarray(weights) / np.sum(weights)
        return options[int(self.rng.choice(len(options), p=weights_array))]

    def pair_clauses(self, lead: list[_Word]) -> None:
        """Segments pair, pair+1 in the chosen pair structure; ``lead`` = words before the
        first main clause (the subject when the pair opens the caption)."""
        builder, phrases, structure = self.builder, self.phrases, self.structure
        x, y = self.pair, self.pair + 1
        if structure == "before":
            builder.add(lead + phrases[x].words("3sg"), x)
            builder.add([_make_word("before")])
            builder.add(phrases[y].words("ing"), y)
        elif structure == "after":
            builder.add([_make_word("after")])
            builder.add(phrases[x].words("ing"), x)
            builder.punct(",")
            builder.add(lead + phrases[y].words("3sg"), y)
        elif structure == "after_reordered":
            builder.add(lead + phrases[y].words("3sg"), y)
            builder.add([_make_word("after")])
            builder.add(phrases[x].words("ing"), x)
        elif structure == "before_reordered":
            builder.add([_make_word("before")])
            builder.add(phrases[y].words("ing"), y)
            builder.punct(",")
            builder.add(lead + phrases[x].words("3sg"), x)
        else:  # but_before_that
            builder.add(lead + phrases[y].words("3sg"), y)
            builder.punct(",")
            builder.add(_words("but before that"))
            builder.add(phrases[x].words("3sg"), x)

    def compose(self) -> CaptionRecord:
        """Write the caption in its structure and return it with its ground truth."""
        builder, n, rng, structure = self.builder, self.n, self.rng, self.structure
        if structure == "progressive":  # "a person is walking forward"
            builder.add(self.subject + [_make_word("is")] + self.phrases[0].words("ing"), 0)
        elif structure == "chain":
            builder.add(self.subject)
            self.chain(0, n, None)
            builder.spans[0][0] = 0  # the subject belongs to the first clause's sub-text
        elif structure == "first":
            builder.add(self.subject)
            builder.add([_make_word("first")] + self.phrases[0].words("3sg"), 0)
            builder.spans[0][0] = 0
            self.chain(1, n, (",", "then") if rng.random() < 0.6 else None)
        elif self.pair == 0:
            self.pair_clauses(self.subject)
            self.chain(2, n, None)
        else:
            builder.add(self.subject)
            self.chain(0, self.pair, None)
            builder.spans[0][0] = 0
            mark, text = _pick(rng, _CHAIN_CONNECTORS[:5])
            if mark:
                builder.punct(mark)
            builder.add(_words(text))
            self.pair_clauses(self.restated_subject() if mark == "." else [])
        if rng.random() < 0.7:
            builder.punct(".")
        text = builder.text
        spans = tuple(tuple(builder.spans[k]) for k in range(n))
        return CaptionRecord(text=text, tokens=tuple(w.token for w in builder.words),
                             subtexts=tuple(text[a:b] for a, b in spans), spans=spans,
                             text_order=tuple(builder.order))


def _build_caption(plan: MotionPlan, rng: np.random.Generator) -> CaptionRecord:
    """One caption of ``plan`` (see :class:`_CaptionComposer`)."""
    return _CaptionComposer(plan, rng).compose()


def generate_captions(plan: MotionPlan, rng: np.random.Generator,
                      count: int = 3) -> list[CaptionRecord]:
    """``count`` distinct captions of ``plan`` (different surface forms of the same segments;
    a few retries, then duplicates are allowed for one-word-choice plans)."""
    captions: list[CaptionRecord] = []
    seen: set[str] = set()
    for _ in range(count * 8):
        caption = _build_caption(plan, rng)
        if caption.text not in seen:
            seen.add(caption.text)
            captions.append(caption)
            if len(captions) == count:
                break
    while len(captions) < count:
        captions.append(_build_caption(plan, rng))
    return captions
