"""Split a motion caption into sub-texts t^1..t^N, one per action, in temporal order.

MATE segments each motion into N clips, one per sub-text (paper, Eq. 1; docs/method.md,
"Pipeline: sub-texts" and "Pipeline: segmentation"); a vocabulary word's motion segment is the clip
of the sub-text that contains it. The paper has an
LLM split the captions under a fixed prompt. This module gives

* `split_subtexts`: an offline, rule-based splitter that follows the same rules;
* `export_llm_prompts` / `import_llm_answers`: a JSONL round trip to have any LLM do the split,
  with every answer checked against the rules and the rule-based split as the fallback.

The rules (the paper's prompt as described; its verbatim text was not found in any source
available here, so `SUBTEXT_PROMPT` is written from these rules):

1. one sub-text per action, in the temporal order in which the actions happen;
2. every word of the caption is used exactly once, and no word is added;
3. each sub-text contains a verb;
4. simultaneous actions ("while", "as", "at the same time") stay in one sub-text, so a caption
   whose actions are all simultaneous stays whole.

How `split_subtexts` applies them. The caption is cut into candidate pieces at sentence ends
(. ! ? ;), commas/colons/dashes, and before the connectives "then", "and", "but", "next",
"finally", "afterwards", "later", "after that", and "before"/"after" when they open a clause
("before turning", "after he jumps", not "after 2 steps"). Connectives stay with the piece they
open ("and then turns left"). Pieces are then merged back:

* a piece with no verb joins its left neighbour (the first piece joins its right one): "waves with
  the left hand and the right hand" stays one sub-text, "walks forward and turns left" is two;
* a piece opened by "while", "whilst", "as", "when" or "during" is simultaneous with its
  neighbour and joins it (the following piece when it opens its sentence: "While walking, a
  human is pushed"), and a piece containing "at the same time", "simultaneously" or "meanwhile"
  joins the previous one;
* after a comma or "and", a piece opened by an accompanying gerund ("using", "starting with",
  "holding", ...) describes how the previous action is done and joins it.

Temporal order: "X after Y" becomes [after Y, X]; a sentence opening with "Before Y, X" becomes
[X, Before Y]. Whole clauses move, with their connective, so no word is lost or added.

Verbs: a word is a verb when the caption's own POS tag says VERB (HumanML3D "word/POS" tokens,
when given), else when its lemma is in `MOTION_VERBS` or it is an "-ing" form (simplemma changes
its lemma), unless its context makes it a noun: after a determiner, a number or a preposition
("a sharp turn", "4 steps", "in circles"; "-ing" after a preposition stays a verb: "before
turning"), or as a plural object right after a verb ("takes steps"). "be"/"have" are not action
verbs ("is on all fours" is a state).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mate.text.vocab import (
    DEFAULT_KEEP_WORDS,
    DEFAULT_STOP_WORDS,
    MOTION_VERBS,
    NUMBER_WORDS,
    WORD_PATTERN,
    lemmatize,
    parse_pos_tokens,
)

__all__ = [
    "SUBTEXT_PROMPT",
    "FEW_SHOT_EXAMPLES",
    "detect_verbs",
    "has_verb",
    "split_subtexts",
    "build_prompt",
    "check_subtexts",
    "export_llm_prompts",
    "import_llm_answers",
    "ImportStats",
    "REJECTION_REASONS",
]

# ---------------------------------------------------------------------------------------------
# Word classes used by the rules
# ---------------------------------------------------------------------------------------------

_DETERMINERS = frozenset(
    """a an the this that these those his her its their my your our each every another some any
    no few several many more most other both either neither whose which what same such
    certain various multiple""".split()
)
# Prepositions after which a bare motion word is a noun ("in circles", "with a kick"); "-ing"
# forms stay verbs there ("before turning"), and "to" + base form is an infinitive.
_PREPOSITIONS = frozenset(
    """in on at of with from by for into onto upon about like within without during between
    among against via per to after before until till toward towards than""".split()
)
# Modifiers that sit between a determiner/number and a noun ("a sharp turn", "two small steps").
_PRENOMINAL = frozenset(
    """small big little large short long sharp quick fast slow full half quarter wide high low
    sudden single double couple right left giant tiny huge deep light heavy gentle hard soft
    strong weak powerful rapid brief final last first second third next other same different
    normal regular side forward backward backwards forwards slight tight big-ish degree degrees
    few more additional extra u complete spinning running jumping walking standing sitting
    karate dance ballet 180 360 90 45 270 round circular""".split()
)
# Verbs that take a gerund/infinitive complement: "starts walks" is not an object pattern.
_CATENATIVES = frozenset("start stop keep begin continue try finish quit go".split())
_AUXILIARIES = frozenset("be am is are was were been being have has had having".split())
# Nouns and pronouns that are the subject of a caption ("A person ambles"): an -s/-ed word right
# after one (optionally after an -ly adverb) is a finite verb even when not in the lexicon.
_SUBJECT_NOUNS = frozenset(
    """he she they it who someone somebody person man woman human subject figure guy girl boy
    lady individual character people""".split()
)
# -s words that are never finite verbs after a subject.
_NOT_VERBS_AFTER_SUBJECT = frozenset(
    """always sometimes perhaps besides towards backwards forwards sideways upwards downwards
    afterwards as is was has does his its this thus us plus""".split()
)
_SUBJECT_WORDS = frozenset(
    """he she they it someone somebody person man woman human subject figure guy girl boy lady
    individual character people the a an his her their its""".split()
)

# Connectives that open a new sequential piece.
_SEQUENCE_WORDS = frozenset("then next finally afterwards afterward later subsequently lastly eventually".split())
_COORDINATORS = frozenset("and but".split())
_TEMPORAL_SUBORDINATORS = frozenset("before after".split())
# "after that", "after this", "after which": a sequence marker, not an after-clause.
_AFTER_PRONOUNS = frozenset("that this which".split())
_SIMULTANEOUS_OPENERS = frozenset("while whilst as when during".split())
_SIMULTANEOUS_PHRASES = (("at", "the", "same", "time"), ("simultaneously",), ("meanwhile",),
                         ("in", "the", "meantime"))
_ACCOMPANYING_GERUNDS = frozenset(
    "using starting beginning leading keeping holding carrying balancing supporting".split()
)
_CONNECTIVES = _SEQUENCE_WORDS | _COORDINATORS | _TEMPORAL_SUBORDINATORS | {"that", "this", "which"}

# Words, sentence ends, and clause punctuation (comma, colon, dashes). Word alternatives first so
# that word matches are exactly those of `split_words`.
_TOKEN_RE = re.compile(
    rf"(?P<word>{WORD_PATTERN.pattern})|(?P<sent>[.!?;]+)|(?P<comma>[,:\u2013\u2014]|(?<=\s)-(?=\s))"
)


# ---------------------------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------------------------

def _is_number(low: str) -> bool:
    return low in NUMBER_WORDS or low[:1].isdigit()


def _lemma(low: str) -> str:
    try:
        return lemmatize(low)
    except ValueError:
        return low


def _align_tags(words: list[str], pairs: list[tuple[str, str]]) -> list[str | None]:
    """The dataset tag of each word, aligning its (lemma, POS) tokens to the words in order with
    a small look-ahead (spaCy splits "anti-clockwise" and drops punctuation differently); None
    where a word has no matching token."""
    tags: list[str | None] = []
    j = 0
    for word in words:
        low = word.lower()
        lem = _lemma(low)
        found = None
        for k in range(j, min(j + 4, len(pairs))):
            tok = pairs[k][0]
            if tok in (low, lem) or _lemma(tok) == lem or (
                    len(tok) > 1 and tok.isalnum() and (low.startswith(tok) or tok.startswith(low))):
                found = k
                break
        if found is None:
            tags.append(None)
        else:
            tags.append(pairs[found][1])
            j = found + 1
    return tags


def _is_ing_form(low: str) -> bool:
    # A real verb form, not "something", "during" or "ceiling".
    return low.endswith("ing") and len(low) > 4 and _lemma(low) != low


def _finite_after_subject(lows: list[str], i: int) -> bool:
    low = lows[i]
    if not (low.endswith("ed") or (low.endswith("s") and not low.endswith("ss"))):
        return False
    if low in _NOT_VERBS_AFTER_SUBJECT or low in DEFAULT_STOP_WORDS or low in DEFAULT_KEEP_WORDS:
        return False
    k = i - 1
    if k >= 0 and lows[k].endswith("ly"):
        k -= 1
    return k >= 0 and lows[k] in _SUBJECT_NOUNS


def _lexical_verb(low: str) -> bool:
    lem = _lemma(low)
    if lem in MOTION_VERBS:
        return True
    # Any "-ing" form simplemma maps to another lemma is a verb form ("checking", "performing").
    return _is_ing_form(low)


_COPULAS = frozenset("is are was were am".split())


def detect_verbs(words: Sequence[str], tokens: str | Sequence[str] | None = None,
                 breaks: Iterable[int] = ()) -> list[bool]:
    """Which of ``words`` (a caption's words in order, `split_words`) are action verbs.

    With ``tokens`` (the caption's "word/POS" tokens, a list or one string, as in HumanML3D), a
    word aligned to a token is a verb iff its tag is VERB; other words use the lexicon and the
    context rules of the module docstring. ``breaks``: indices of words preceded by punctuation;
    the context rules do not look back across them ("to the right, walks back"). A copula
    followed by a preposition is a (state) verb: "is on all fours". Returns one bool per word.
    Raises ValueError on malformed tokens."""
    lows = [w.lower() for w in words]
    breaks = set(breaks)
    tags = _align_tags(list(words), parse_pos_tokens(tokens)) if tokens is not None else [None] * len(lows)
    flags: list[bool] = []
    for i, low in enumerate(lows):
        if tags[i] is not None:
            flags.append(tags[i] == "VERB")
            continue
        if low.endswith("n't") or low.endswith("n\u2019t"):
            flags.append(False)  # "don't", "doesn't": negated auxiliaries
            continue
        if low in _AUXILIARIES:
            flags.append(low in _COPULAS and i + 1 < len(lows) and i + 1 not in breaks
                         and lows[i + 1] in _PREPOSITIONS and lows[i + 1] != "to")
            continue
        if not _lexical_verb(low):
            flags.append(i not in breaks and _finite_after_subject(lows, i))
            continue
        prev = lows[i - 1] if i > 0 and i not in breaks else None
        is_verb = True
        # "after that walks back": "that" is a pronoun closing the connective, not a determiner.
        if prev in _AFTER_PRONOUNS and i >= 2 and lows[i - 2] in _TEMPORAL_SUBORDINATORS and (i - 1) not in breaks:
            prev = None
        if prev is not None:
            if prev in _DETERMINERS or _is_number(prev):
                is_verb = False
            elif prev in _PREPOSITIONS:
                is_verb = low.endswith("ing") or prev == "to"
            elif prev in _PRENOMINAL or (_is_ing_form(prev) and not flags[i - 1]
                                         and prev not in _AUXILIARIES):
                # Walk back over modifiers: "a sharp turn", "two small steps", "a running jump"
                # (not over auxiliaries: "after being pushed" is a verb).
                # Also over coordinated modifiers ("a quick and large step"); never across
                # punctuation.
                k = i - 1
                while (k >= 0 and i - k <= 4 and (k + 1) not in breaks and lows[k] not in _AUXILIARIES
                       and (lows[k] in _PRENOMINAL or _is_ing_form(lows[k]) or lows[k] in ("and", "or"))):
                    k -= 1
                if k >= 0 and (k + 1) not in breaks and (
                        lows[k] in _DETERMINERS or _is_number(lows[k]) or lows[k] in _PREPOSITIONS):
                    is_verb = False
            elif (flags[i - 1] and not prev.endswith("ing") and _lemma(prev) not in _CATENATIVES
                  and low.endswith("s")
                  and not low.endswith("ss") and _lemma(low) != low):
                is_verb = False  # plural object of the previous verb: "takes steps"
        flags.append(is_verb)
    return flags


def _scan(text: str) -> tuple[list[str], list[tuple[int, int]], list[str | None]]:
    """Words of ``text``, their character spans, and for each word the strongest punctuation
    before it ("sent", "comma" or None)."""
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    punct_before: list[str | None] = []
    pending: str | None = None
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind == "word":
            words.append(m.group())
            spans.append(m.span())
            punct_before.append(pending)
            pending = None
        elif kind == "sent" or pending is None:
            pending = kind
    return words, spans, punct_before


def has_verb(text: str, tokens: str | Sequence[str] | None = None) -> bool:
    """Whether ``text`` contains an action verb (`detect_verbs` on its words). Raises
    ValueError if ``text`` is not a string."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    words, _, punct_before = _scan(text)
    return any(detect_verbs(words, tokens, [i for i, p in enumerate(punct_before) if p and i > 0]))


# ---------------------------------------------------------------------------------------------
# The rule-based splitter
# ---------------------------------------------------------------------------------------------

@dataclass
class _Piece:
    first: int            # first word index (inclusive)
    last: int             # last word index (inclusive)
    sentence: int         # sentence index of its first word
    sequential: bool      # opened by a sequence marker (then, after that, a sentence end ...)
    clause: str | None = None  # "before" / "after" when it is a temporal subordinate clause


def _is_temporal_clause(lows: list[str], flags: list[bool], at: int) -> bool:
    """Whether "before"/"after" at word ``at`` opens a clause with its own verb: the verb comes
    within 4 words and only a subject, an auxiliary or an "-ly" adverb precedes it ("before
    turning", "after he jumps", "after being pushed"; not "after 2 steps", "before where")."""
    for k in range(at + 1, min(at + 5, len(lows))):
        if flags[k]:
            return True
        if not (lows[k] in _SUBJECT_WORDS or lows[k] in _AUXILIARIES or lows[k].endswith("ly")):
            return False
    return False


def _contains_phrase(lows: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(lows[i:i + n]) == phrase for i in range(len(lows) - n + 1))


def _opening_word(lows: list[str], piece: _Piece) -> str | None:
    """First word of a piece after its connectives ("and then while ..." -> "while")."""
    for k in range(piece.first, piece.last + 1):
        if lows[k] not in _CONNECTIVES:
            return lows[k]
    return None


def _merge(pieces: list[_Piece], left: int) -> None:
    """Merge pieces[left + 1] into pieces[left] (they are adjacent in the caption)."""
    pieces[left].last = pieces[left + 1].last
    del pieces[left + 1]


def split_subtexts(caption: str, tokens: str | Sequence[str] | None = None) -> list[str]:
    """Split a motion caption into sub-texts, one per action, in temporal order.

    Input: ``caption`` (str); ``tokens`` (optional): the caption's "word/POS" tokens (a list or
    one whitespace-separated string, HumanML3D style) used for verb detection. Output: a list of
    N >= 1 non-empty strings. Each sub-text is a span of the caption from its first to its last
    word (inner punctuation kept); a caption that stays whole is returned stripped. The sub-texts'
    words are exactly the caption's words, each once (as a multiset: reordering moves whole
    clauses). Rules: see the module docstring. Raises ValueError when ``caption`` is not a string,
    is empty or whitespace, or has no word."""
    # Long on purpose: the six rule stages below run in order over shared state (the pieces, the
    # verb flags, the sentence of each word); split into functions they would pass it all around.
    if not isinstance(caption, str):
        raise ValueError(f"caption must be a string, got {type(caption).__name__}")
    if not caption.strip():
        raise ValueError("caption is empty or whitespace")

    # punct_before[i]: the strongest punctuation between word i-1 and word i.
    words, spans, punct_before = _scan(caption)
    if not words:
        raise ValueError(f"caption has no word: {caption!r}")

    lows = [w.lower() for w in words]
    flags = detect_verbs(words, tokens, [i for i, p in enumerate(punct_before) if p and i > 0])
    n = len(words)

    # 1) Candidate cuts: cuts[i] = (sequential, clause) for a piece starting at word i, where
    #    sequential marks a sequence marker or a sentence end and clause is "before"/"after" for a
    #    temporal subordinate clause.
    sentence_of = [0] * n
    cuts: dict[int, tuple[bool, str | None]] = {0: (True, None)}
    if lows[0] in _TEMPORAL_SUBORDINATORS and _is_temporal_clause(lows, flags, 0):
        cuts[0] = (True, lows[0])
    for i in range(1, n):
        sentence_of[i] = sentence_of[i - 1] + (punct_before[i] == "sent")
        low, prev = lows[i], lows[i - 1]
        if punct_before[i] is not None:
            cuts[i] = (punct_before[i] == "sent", None)
        elif prev in _CONNECTIVES and i - 1 in cuts:
            # Second word of a connective run ("and then", "after that"): one cut, at the first.
            if low in _SEQUENCE_WORDS or (prev == "after" and low in _AFTER_PRONOUNS):
                cuts[i - 1] = (True, None)
            continue
        sequential = cuts.get(i, (False, None))[0]
        if low in _SEQUENCE_WORDS or low in _COORDINATORS:
            cuts[i] = (sequential or low in _SEQUENCE_WORDS, None)
        elif low in _TEMPORAL_SUBORDINATORS:
            if i + 1 < n and lows[i + 1] in _AFTER_PRONOUNS and punct_before[i + 1] is None:
                cuts[i] = (True, None)  # "after that": a sequence marker
            elif _is_temporal_clause(lows, flags, i):
                cuts[i] = (sequential, low)

    starts = sorted(cuts)
    pieces = [
        _Piece(first=s, last=(starts[j + 1] - 1 if j + 1 < len(starts) else n - 1),
               sentence=sentence_of[s], sequential=cuts[s][0], clause=cuts[s][1])
        for j, s in enumerate(starts)
    ]
    # A clause opened by "and before ..." keeps its temporal kind.
    for p in pieces:
        if p.clause is None:
            k = p.first
            while k < p.last and lows[k] in _COORDINATORS:
                k += 1
            if k != p.first and lows[k] in _TEMPORAL_SUBORDINATORS and _is_temporal_clause(lows, flags, k):
                p.clause = lows[k]

    def piece_lows(p: _Piece) -> list[str]:
        return lows[p.first:p.last + 1]

    def piece_has_verb(p: _Piece) -> bool:
        # Verbs inside a simultaneous phrase ("... while walking") do not make a piece an action
        # of its own unless the piece opens with it ("While walking, ...": merged in step 4).
        k = p.first
        while k <= p.last and lows[k] in _CONNECTIVES:
            k += 1
        end = p.last
        if k <= p.last and lows[k] not in _SIMULTANEOUS_OPENERS:
            end = next((q - 1 for q in range(k, p.last + 1) if lows[q] in _SIMULTANEOUS_OPENERS), p.last)
        return any(flags[p.first:end + 1])

    # 2) Connective-only pieces ("and" before a comma) join the following piece.
    j = 0
    while j < len(pieces) - 1:
        if all(w in _CONNECTIVES for w in piece_lows(pieces[j])):
            # The merged piece is what the following one was, opened by more connectives.
            pieces[j].sequential |= pieces[j + 1].sequential
            pieces[j].clause = pieces[j].clause or pieces[j + 1].clause
            _merge(pieces, j)
        else:
            j += 1

    # 3) Verb-less pieces join their left neighbour (the first one its right neighbour).
    def merge_verbless() -> None:
        j = 0
        while len(pieces) > 1 and j < len(pieces):
            if piece_has_verb(pieces[j]):
                j += 1
            elif j == 0:
                _merge(pieces, 0)
            else:
                _merge(pieces, j - 1)

    merge_verbless()

    # 4) Simultaneity: "while/as/when/during ..." pieces and "at the same time" pieces.
    j = 0
    while len(pieces) > 1 and j < len(pieces):
        p = pieces[j]
        opener = _opening_word(lows, p)
        opens_sentence = j == 0 or pieces[j - 1].sentence != p.sentence
        # Each merge consumes the simultaneous piece; the merged result is not re-examined (its
        # opener may still be "while", which must not swallow the rest of the sentence).
        if opener in _SIMULTANEOUS_OPENERS and p.clause is None:
            nxt_same = j + 1 < len(pieces) and pieces[j + 1].sentence == p.sentence
            if opens_sentence and nxt_same:
                _merge(pieces, j)
                j += 1
            elif j > 0:
                _merge(pieces, j - 1)
            else:
                j += 1
            continue
        if j > 0 and any(_contains_phrase(piece_lows(p), ph) for ph in _SIMULTANEOUS_PHRASES):
            _merge(pieces, j - 1)
            continue
        j += 1

    # 5) Accompanying gerunds after a comma or "and" describe how the previous action is done.
    j = 1
    while j < len(pieces):
        p = pieces[j]
        if not p.sequential and p.clause is None and _opening_word(lows, p) in _ACCOMPANYING_GERUNDS:
            _merge(pieces, j - 1)
        else:
            j += 1

    merge_verbless()

    # 6) Temporal order within each sentence: "X after Y" -> [after Y, X]; "Before Y, X" -> [X, Before Y].
    ordered: list[_Piece] = []
    for s in sorted({p.sentence for p in pieces}):
        group = [p for p in pieces if p.sentence == s]
        if len(group) >= 2 and group[0].clause == "before" and group[0].first == sentence_of.index(s):
            group[0], group[1] = group[1], group[0]
            start = 2
        else:
            start = 1
        j = max(start, 1)
        while j < len(group):
            if group[j].clause == "after" and j >= start:
                group[j - 1], group[j] = group[j], group[j - 1]
                j += 2  # the moved pair is final; do not move the same clause twice
            else:
                j += 1
        ordered.extend(group)

    if len(ordered) == 1:
        return [caption.strip()]
    return [caption[spans[p.first][0]:spans[p.last][1]] for p in ordered]



# ---------------------------------------------------------------------------------------------
# LLM round trip
# ---------------------------------------------------------------------------------------------

# Written from the rules the paper states (its verbatim prompt was not available here).
SUBTEXT_PROMPT = """\
You split the description of a human motion into sub-texts, one for each action, so that each \
sub-text can be matched to a segment of the motion.

Rules:
1. Give the actions in the temporal order in which they happen, which may differ from the order \
of the description ("walks after jumping": the jump comes first).
2. Use every word of the description exactly once. Do not add, remove, change or repeat any word; \
punctuation and capitalisation may change.
3. Every sub-text must contain a verb.
4. Actions that happen at the same time (joined by "while", "as", "at the same time") stay in the \
same sub-text. A description with only simultaneous actions stays whole, as one sub-text.
5. Answer with a JSON list of strings and nothing else.

{examples}
Description: {caption}
Answer:"""

FEW_SHOT_EXAMPLES: tuple[tuple[str, list[str]], ...] = (
    ("a person walks forward then turns left and jumps",
     ["a person walks forward", "then turns left", "and jumps"]),
    ("before sitting down, a man waves with his right hand",
     ["a man waves with his right hand", "before sitting down"]),
    ("someone kneels down after walking two steps",
     ["after walking two steps", "someone kneels down"]),
    ("a person waves with both arms while walking in a circle",
     ["a person waves with both arms while walking in a circle"]),
)


def build_prompt(caption: str) -> str:
    """The full LLM prompt for one caption: the rules, the few-shot examples and the caption.
    Raises ValueError for an empty caption."""
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"caption must be a non-empty string, got {caption!r}")
    examples = "".join(f"Description: {c}\nAnswer: {json.dumps(a)}\n\n" for c, a in FEW_SHOT_EXAMPLES)
    return SUBTEXT_PROMPT.format(examples=examples, caption=caption.strip())


def _norm_words(text: str) -> list[str]:
    # Case- and punctuation-insensitive: every run of letters/digits is a word, so "anti-clockwise"
    # and "anti clockwise" compare equal.
    return re.findall(r"[^\W_]+", text.lower())


def _parse_answer(answer):
    """An answer as given (list) or parsed from the model's reply string, which may sit in a
    ```json fence. Raises json.JSONDecodeError for an unparseable reply."""
    if isinstance(answer, str):
        text = answer.strip()
        fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
        return json.loads(fence.group(1) if fence else text)
    return answer


# Rejection reasons, in the order they are checked.
REJECTION_REASONS = ("not_json", "wrong_type", "empty_list", "empty_subtext", "new_word",
                     "missing_word", "no_verb")


def check_subtexts(caption: str, answer) -> str | None:
    """Validate an LLM answer for ``caption``; None when it is accepted, else the reason.

    ``answer``: a list of strings, or the model's raw reply (a string holding a JSON list,
    optionally inside a ``` fence). Reasons, checked in this order: "not_json" (unparseable
    reply), "wrong_type" (not a list of strings), "empty_list", "empty_subtext", "new_word" (a word
    not in the caption, or used more often than there), "missing_word" (a caption word left out),
    "no_verb" (a sub-text without an action verb). Words compare case- and
    punctuation-insensitively."""
    try:
        answer = _parse_answer(answer)
    except json.JSONDecodeError:
        return "not_json"
    if not isinstance(answer, list) or not all(isinstance(s, str) for s in answer):
        return "wrong_type"
    if not answer:
        return "empty_list"
    if any(not _norm_words(s) for s in answer):
        return "empty_subtext"
    caption_count = Counter(_norm_words(caption))
    answer_count = Counter(w for s in answer for w in _norm_words(s))
    if answer_count - caption_count:
        return "new_word"
    if caption_count - answer_count:
        return "missing_word"
    if not all(has_verb(s) for s in answer):
        return "no_verb"
    return None


def _caption_items(captions) -> list[tuple[str, str]]:
    if isinstance(captions, str):
        raise ValueError("captions must be a mapping id -> caption or a sequence of captions, got a string")
    items = list(captions.items()) if isinstance(captions, Mapping) else [(str(i), c) for i, c in enumerate(captions)]
    for cid, caption in items:
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"caption {cid!r} must be a non-empty string, got {caption!r}")
    return [(str(cid), caption) for cid, caption in items]


def export_llm_prompts(captions: Mapping[str, str] | Sequence[str], path: str | Path) -> Path:
    """Write one JSONL line per caption for an LLM to answer.

    Input: ``captions``, a mapping id -> caption (e.g. KIT-ML seg_id -> text) or a sequence
    (ids "0", "1", ...); ``path``: the output .jsonl (parents created). Each line is
    {"id", "caption", "prompt" (rules + few-shot examples + caption, `build_prompt`),
    "answer_format": "JSON list of strings"}. Send each prompt to the model and write its replies
    as {"id": ..., "answer": <the reply string, or the parsed list>} lines for
    `import_llm_answers`. Returns the path. Raises ValueError on empty captions or duplicate ids."""
    items = _caption_items(captions)
    ids = [cid for cid, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate caption ids: {[i for i, c in Counter(ids).items() if c > 1][:5]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for cid, caption in items:
            f.write(json.dumps({"id": cid, "caption": caption, "prompt": build_prompt(caption),
                                "answer_format": "JSON list of strings"}, ensure_ascii=False) + "\n")
    return path


@dataclass
class ImportStats:
    """Outcome of `import_llm_answers`: ``total`` captions, ``accepted`` LLM answers,
    ``fallback`` captions split by `split_subtexts` instead, ``rejected`` (reason -> count; see
    `check_subtexts`), ``missing`` (captions with no answer line), ``unknown_ids`` (answer lines
    for ids not among the captions, ignored)."""
    total: int = 0
    accepted: int = 0
    fallback: int = 0
    missing: int = 0
    unknown_ids: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"total": self.total, "accepted": self.accepted, "fallback": self.fallback,
                "missing": self.missing, "unknown_ids": self.unknown_ids, "rejected": dict(self.rejected)}


def import_llm_answers(path: str | Path, captions: Mapping[str, str] | Sequence[str]
                       ) -> tuple[dict[str, list[str]], ImportStats]:
    """Read LLM answers (JSONL), validate them, and fall back to the rule-based split.

    Inputs: ``path``, a JSONL file with one {"id": ..., "answer": ...} object per line (blank
    lines allowed; "answer" is the model's raw reply string or a list of strings);
    ``captions``, the same mapping/sequence given to `export_llm_prompts`. Each answer is checked
    with `check_subtexts`; rejected and missing answers are replaced by `split_subtexts(caption)`
    and counted. Output: (id -> list of sub-texts for every caption, `ImportStats`). Raises
    ValueError naming the file and line for a line that is not a JSON object with "id" and
    "answer", or that repeats an id."""
    items = _caption_items(captions)
    by_id = dict(items)
    path = Path(path)
    answers: dict[str, object] = {}
    stats = ImportStats(total=len(items))
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: malformed JSON line ({err.msg})") from None
            if not isinstance(record, dict) or "id" not in record or "answer" not in record:
                raise ValueError(f"{path}:{lineno}: expected a JSON object with 'id' and 'answer'")
            cid = str(record["id"])
            if cid in answers:
                raise ValueError(f"{path}:{lineno}: duplicate answer for id {cid!r}")
            if cid not in by_id:
                stats.unknown_ids += 1
                answers[cid] = None
                continue
            answers[cid] = record["answer"]

    result: dict[str, list[str]] = {}
    for cid, caption in items:
        if cid not in answers:
            stats.missing += 1
            reason = None
            accepted = False
        else:
            reason = check_subtexts(caption, answers[cid])
            accepted = reason is None
        if accepted:
            result[cid] = [s.strip() for s in _parse_answer(answers[cid])]
            stats.accepted += 1
        else:
            if reason is not None:
                stats.rejected[reason] = stats.rejected.get(reason, 0) + 1
            result[cid] = split_subtexts(caption)
            stats.fallback += 1
    return result, stats
