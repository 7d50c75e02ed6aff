"""Words of the captions: tokenisation, lemmas, the prototype vocabulary, where each word lies in
the motion, and each word's token ids in a text encoder.

MATE's self-disentanglement loss (paper, Eq. 5; docs/method.md, "Losses") has one learnable
prototype per lemmatised training word (5,161 for HumanML3D, 1,191 for KIT-ML in the paper). This
module builds that vocabulary (`build_vocabulary`), maps each vocabulary word of a caption to the
sub-text and the motion segment that contain it (`locate_words`), and gives each vocabulary word's
token ids in a Hugging Face tokenizer (`word_token_ids`), so that WE(w) can be the mean of its
token embeddings.

This module is the word layer; `mate.text.subtexts` (the clause layer) builds on it.

Word definition (shared by every function here and in `mate.text.subtexts`): a word is a run of
letters/digits, optionally joined by apostrophes or hyphens ("person's", "anti-clockwise",
"t-pose"), or a decimal number ("1.5"). Everything else (spaces, punctuation, "/") separates words.
"""
from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import simplemma

__all__ = [
    "WORD_PATTERN",
    "split_words",
    "lemmatize",
    "parse_pos_tokens",
    "DEFAULT_DROP_POS",
    "DEFAULT_STOP_WORDS",
    "DEFAULT_KEEP_WORDS",
    "NUMBER_WORDS",
    "MOTION_VERBS",
    "is_content_word",
    "Vocabulary",
    "build_vocabulary",
    "WordLocation",
    "assign_words_to_subtexts",
    "locate_words",
    "word_token_ids",
]

# ---------------------------------------------------------------------------------------------
# Tokenisation
# ---------------------------------------------------------------------------------------------

# Decimal numbers first so that "1.5" stays one word while "forward.Then" splits at the period.
WORD_PATTERN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:['\u2019\-][^\W_]+)*")


def split_words(text: str) -> list[str]:
    """The words of ``text`` in order, with their original case (see the module docstring for
    what a word is). ``split_words("A person walks, then turns.") == ["A", "person", "walks",
    "then", "turns"]``. Raises ValueError if ``text`` is not a string."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    return WORD_PATTERN.findall(text)


# ---------------------------------------------------------------------------------------------
# Lexicons
# ---------------------------------------------------------------------------------------------

# Curated motion verbs (lemmas), plus the general action verbs that motion captions use ("gets
# pushed", "performs a jump", "picks up"). Used by `mate.text.subtexts` to decide whether a clause
# describes an action, and here to repair simplemma's few "-ing" misses ("sitting" -> "sit").
# Deliberately absent: "be"/"have" (auxiliaries: "is on all fours" is a state, not an action) and
# nouns that are rarely verbs in captions ("hand", "head", "face", "back", "knee", "arm").
MOTION_VERBS: frozenset[str] = frozenset(
    """
    walk run jog sprint dash jump hop skip leap bounce bound vault hurdle turn spin rotate twist
    pivot swivel twirl pirouette circle kick punch hit strike jab slap smack chop box spar fight
    wrestle tackle block parry dodge duck evade defend attack wave sit stand squat kneel crouch lie
    lay rise raise lift hoist lower drop bend bow lean tilt tip arch straighten stretch extend
    flex curl step stride march pace shuffle tiptoe limp hobble stumble trip fall slip tumble
    stagger sway wobble teeter rock bob balance crawl climb descend ascend mount dismount dance
    waltz swing throw toss hurl fling pitch lob catch grab grasp grip clutch reach hold carry
    push pull shove drag tug haul heave press squeeze pick put place set clap shake nod shrug tap
    pat stomp stamp kneel skate ski swim dive roll flip cartwheel somersault lunge slide glide
    sidestep backstep strafe trot gallop stroll wander wiggle jiggle shiver tremble flap flutter
    flail swat scratch rub touch wipe wash brush clean scrub sweep mop stir pour drink eat sip
    cut mix open close knock hug salute pray applaud cheer celebrate fly hang dangle wag point
    gesture signal beckon conduct drum strum play row paddle shoot dribble juggle bowl bat golf
    serve volley swim crawl hammer saw dig shovel rake paint draw write type
    move go come get make take perform do start stop begin continue keep try return repeat pause
    rest wait stay remain halt freeze collapse recover approach cross follow lead chase avoid
    imitate mimic act pretend practise practice demonstrate exercise warm stretch lunge crunch
    look glance watch turn use check stop jump land launch release let bring give pass receive
    lift kneel stoop hunch slouch squat lay settle stand walk ride pedal cycle skateboard
    surf bend clap hop walk inspect examine search grope feel fan shuffle sneak creep
    zigzag spin rotate circle orbit revolve wind unwind coil uncoil shift transfer
    tumble somersault crouch pose amble beat cast stroke shave
    accelerate decelerate speed gesticulate greet interact assume sink retreat shout form fish
    convulse hurry whirl bang smash sign lurk zoom lose relax brace whip hide peek peer scan
    bump stay
    """.split()
)

# Spoken number words: dropped from the vocabulary like digits (their meaning is a count, which
# the prototypes cannot anchor to a movement).
NUMBER_WORDS: frozenset[str] = frozenset(
    """
    zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
    hundred thousand once twice thrice first second third fourth fifth half
    """.split()
) - frozenset({"once", "twice", "thrice", "first", "second", "third", "fourth", "fifth", "half"})

# Universal POS tags dropped from the vocabulary when the dataset gives tags (HumanML3D texts):
# determiners, adpositions, pronouns, conjunctions, auxiliaries, particles, numbers, punctuation,
# symbols, interjections and unknowns carry no movement of their own.
DEFAULT_DROP_POS: frozenset[str] = frozenset(
    {"DET", "ADP", "PRON", "CCONJ", "SCONJ", "AUX", "PART", "NUM", "PUNCT", "SYM", "SPACE", "X", "INTJ"}
)

# Function words dropped from the vocabulary, with or without tags (the untagged path has only
# this list): articles/determiners, pronouns, prepositions, conjunctions, auxiliaries, particles
# and discourse connectives ("then", "while" order actions; they do not describe one).
DEFAULT_STOP_WORDS: frozenset[str] = frozenset(
    """
    a an the this that these those each every another other some any no all both either neither
    such what which who whom whose where when why how whether there here
    i me my mine myself you your yours yourself he him his himself she her hers herself it its
    itself we us our ours ourselves they them their theirs themselves one oneself someone somebody
    something anyone anybody anything everyone everybody everything nobody nothing
    him/herself his/her he/she
    in on at to of with from by for into onto upon about as than like within without during
    between among against via per
    and or but nor so yet if because while whilst although though unless until till since
    then afterwards afterward after before next finally later meanwhile simultaneously also
    be am is are was were been being have has had having do does did done doing
    will would shall should can could may might must not n't 's 're 've 'll 'd
    very just too quite rather really
    """.split()
)

# Directional particles/adverbs that carry movement ("sits down", "turns around", "steps back"):
# kept even where the tag is ADP/PART or the word is a preposition.
DEFAULT_KEEP_WORDS: frozenset[str] = frozenset(
    """
    up down around round over under across through away back forward forwards backward backwards
    sideways aside along behind above below off out toward towards upward upwards downward
    downwards inward inwards outward outwards clockwise counterclockwise anticlockwise
    anti-clockwise counter-clockwise left right
    """.split()
)


# ---------------------------------------------------------------------------------------------
# Lemmas
# ---------------------------------------------------------------------------------------------

_DOUBLED_FINAL = re.compile(r"([bdfgklmnprtvz])\1$")
# Irregular forms simplemma leaves as other words ("bent" -> "bent", "rose" -> "rose").
# ("bent" is left alone: in captions it is an adjective, "knees bent", "slightly bent".)
_IRREGULAR_VERB_FORMS = {"rose": "rise", "dove": "dive", "leant": "lean",
                         "knelt": "kneel", "leapt": "leap", "slid": "slide", "swung": "swing"}


def _inflection_stems(low: str):
    """Candidate base forms of an inflected verb, most specific first."""
    if low.endswith("ies") or low.endswith("ied"):
        yield low[:-3] + "y"
    for suffix in ("ing", "ed"):
        if low.endswith(suffix) and len(low) > len(suffix) + 1:
            stem = low[: -len(suffix)]
            yield _DOUBLED_FINAL.sub(r"\1", stem)  # "sitting" -> "sit", "hopped" -> "hop"
            yield stem
            yield stem + "e"  # "moving" -> "move"
    if low.endswith("es"):
        yield low[:-2]  # "crosses" -> "cross"
    if low.endswith("s") and not low.endswith("ss"):
        yield low[:-1]


@functools.lru_cache(maxsize=65536)
def lemmatize(word: str) -> str:
    """The English lemma of ``word``, lowercase (simplemma; cached).

    simplemma misses a few verb forms ("sitting" -> "sitting", "crosses" -> "crosse", "bent" ->
    "bent"); when its lemma is not a motion verb but an irregular form or a stripped
    -s/-es/-ed/-ing stem is (`MOTION_VERBS`), that verb is the lemma, so the tagged (HumanML3D)
    and untagged paths agree on motion words. Hyphenated words are lemmatised as a whole
    ("anti-clockwise"). Raises ValueError for a non-string or a string with no letter or digit."""
    if not isinstance(word, str):
        raise ValueError(f"lemmatize expects a string, got {type(word).__name__}")
    low = word.strip().lower()
    if not low or not any(ch.isalnum() for ch in low):
        raise ValueError(f"lemmatize expects a word, got {word!r}")
    lemma = simplemma.lemmatize(low, lang="en").lower()
    if lemma in MOTION_VERBS:
        return lemma
    if low in _IRREGULAR_VERB_FORMS:
        return _IRREGULAR_VERB_FORMS[low]
    for candidate in _inflection_stems(low):
        if candidate in MOTION_VERBS:
            return candidate
    return lemma


def parse_pos_tokens(tokens: str | Sequence[str]) -> list[tuple[str, str]]:
    """Parse dataset tokens "word/POS" (HumanML3D `texts/*.txt`: "a/DET man/NOUN kick/VERB ...",
    where "word" is spaCy's lemma) into (word lowercased, POS uppercased) pairs. ``tokens`` is a
    list of "word/POS" strings or one whitespace-separated string. The last "/" splits, so
    "him/herself/PRON" -> ("him/herself", "PRON"). Raises ValueError on a token without "/" or
    with an empty part."""
    if isinstance(tokens, str):
        tokens = tokens.split()
    pairs: list[tuple[str, str]] = []
    for token in tokens:
        if not isinstance(token, str) or "/" not in token:
            raise ValueError(f"expected a 'word/POS' token, got {token!r}")
        word, pos = token.rsplit("/", 1)
        if not word or not pos:
            raise ValueError(f"expected a 'word/POS' token with both parts, got {token!r}")
        pairs.append((word.lower(), pos.upper()))
    return pairs


def _is_number(lemma: str) -> bool:
    return lemma in NUMBER_WORDS or not any(ch.isalpha() for ch in lemma)


def is_content_word(lemma: str, pos: str | None = None, *,
                    stop_words: Iterable[str] = DEFAULT_STOP_WORDS,
                    drop_pos: Iterable[str] = DEFAULT_DROP_POS,
                    keep_words: Iterable[str] = DEFAULT_KEEP_WORDS) -> bool:
    """Whether a lemma can carry motion meaning and so gets a prototype. ``keep_words`` win over
    everything (directional particles); otherwise the word is dropped if it is a stop word, a
    number (digits or a number word), has no letter, or its tag ``pos`` (when given) is in
    ``drop_pos``."""
    if lemma in keep_words:
        return True
    if lemma in stop_words or _is_number(lemma):
        return False
    if pos is not None and pos in drop_pos:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

_VOCAB_FORMAT = "mate.vocabulary"
_VOCAB_VERSION = 1


class Vocabulary:
    """The lemmatised training vocabulary: the K prototypes of L_self, in a fixed order.

    Attributes: ``index_to_word`` (list of lemmas, index = prototype index), ``word_to_index``
    (dict lemma -> index), ``counts`` (dict lemma -> occurrences in the training captions),
    ``config`` (how it was built: min_count and the word filters, stored with it). Order: by
    count descending, then alphabetically, so the same captions always give the same indices."""

    def __init__(self, words: Sequence[str], counts: Mapping[str, int] | None = None,
                 config: Mapping | None = None):
        words = list(words)
        for w in words:
            if not isinstance(w, str) or not w:
                raise ValueError(f"vocabulary words must be non-empty strings, got {w!r}")
        if len(set(words)) != len(words):
            dup = [w for w, c in Counter(words).items() if c > 1]
            raise ValueError(f"vocabulary words must be unique; duplicated: {dup[:5]}")
        self.index_to_word: list[str] = words
        self.word_to_index: dict[str, int] = {w: i for i, w in enumerate(words)}
        counts = dict(counts or {})
        missing = [w for w in words if w not in counts]
        if counts and missing:
            raise ValueError(f"counts given but missing for {len(missing)} words, e.g. {missing[:5]}")
        self.counts: dict[str, int] = {w: int(counts.get(w, 0)) for w in words}
        self.config: dict = dict(config or {})

    def __len__(self) -> int:
        return len(self.index_to_word)

    def __contains__(self, lemma: object) -> bool:
        return lemma in self.word_to_index

    def __iter__(self):
        return iter(self.index_to_word)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Vocabulary) and self.index_to_word == other.index_to_word
                and self.counts == other.counts)

    def __repr__(self) -> str:
        head = ", ".join(self.index_to_word[:5])
        return f"Vocabulary({len(self)} words: {head}{', ...' if len(self) > 5 else ''})"

    def index_of(self, word: str, *, lemmatized: bool = False) -> int:
        """Prototype index of ``word`` (lemmatised first unless ``lemmatized``); -1 when it is not
        in the vocabulary."""
        lemma = word.lower() if lemmatized else lemmatize(word)
        return self.word_to_index.get(lemma, -1)

    def to_json(self) -> dict:
        return {"format": _VOCAB_FORMAT, "version": _VOCAB_VERSION, "config": self.config,
                "words": self.index_to_word, "counts": [self.counts[w] for w in self.index_to_word]}

    def save(self, path: str | Path) -> Path:
        """Write the vocabulary as JSON to ``path`` (parents created). Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1)
            f.write("\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        """Read a vocabulary written by `save`. Raises ValueError naming the file when it is not
        valid JSON or not a vocabulary file."""
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != _VOCAB_FORMAT:
            raise ValueError(f"{path}: not a MATE vocabulary file (missing format={_VOCAB_FORMAT!r})")
        if data.get("version") != _VOCAB_VERSION:
            raise ValueError(f"{path}: unsupported vocabulary version {data.get('version')!r}")
        words, counts = data.get("words"), data.get("counts")
        if not isinstance(words, list) or not isinstance(counts, list) or len(words) != len(counts):
            raise ValueError(f"{path}: 'words' and 'counts' must be lists of the same length")
        try:
            return cls(words, dict(zip(words, counts)), data.get("config") or {})
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def _caption_lemmas(caption: str, tokens) -> list[tuple[str, str | None]]:
    """(lemma, POS or None) of each word of a caption: the dataset's own tokens where given,
    simplemma otherwise."""
    if tokens is not None:
        return [(word, pos) for word, pos in parse_pos_tokens(tokens)
                if any(ch.isalnum() for ch in word)]
    return [(lemmatize(w), None) for w in split_words(caption)]


def build_vocabulary(captions: Sequence[str], tokens: Sequence | None = None, min_count: int = 1, *,
                     stop_words: Iterable[str] = DEFAULT_STOP_WORDS,
                     drop_pos: Iterable[str] = DEFAULT_DROP_POS,
                     keep_words: Iterable[str] = DEFAULT_KEEP_WORDS) -> Vocabulary:
    """Build the lemmatised vocabulary (the prototypes of L_self) from training captions.

    Inputs: ``captions``, a sequence of caption strings; ``tokens`` (optional), a sequence of the
    same length whose items are the caption's dataset tokens ("lemma/POS" strings, a list or one
    whitespace-separated string, as in HumanML3D `texts/*.txt`) or None for captions without
    them. Where tokens are present their lemmas and tags are used; otherwise simplemma lemmatises
    the caption's words. Only content words are kept (`is_content_word`: no stop words, numbers,
    or DET/ADP/PRON/CCONJ/PUNCT/... tags; directional ``keep_words`` always kept); the three
    filters are configurable. Lemmas seen fewer than ``min_count`` times are dropped.

    Output: a `Vocabulary` ordered by count (descending) then alphabetically. Raises ValueError
    on a bad caption (not a string), mismatched ``tokens`` length, malformed tokens, min_count < 1
    or when nothing is left."""
    if isinstance(captions, str):
        raise ValueError("captions must be a sequence of strings, got a single string")
    captions = list(captions)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    if tokens is not None:
        tokens = list(tokens)
        if len(tokens) != len(captions):
            raise ValueError(f"tokens has {len(tokens)} items but captions has {len(captions)}")
    stop_words, drop_pos, keep_words = frozenset(stop_words), frozenset(drop_pos), frozenset(keep_words)
    counts: Counter[str] = Counter()
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise ValueError(f"caption {i} is not a string: {caption!r}")
        caption_tokens = tokens[i] if tokens is not None else None
        try:
            lemmas = _caption_lemmas(caption, caption_tokens)
        except ValueError as err:
            raise ValueError(f"caption {i}: {err}") from None
        for lemma, pos in lemmas:
            if is_content_word(lemma, pos, stop_words=stop_words, drop_pos=drop_pos, keep_words=keep_words):
                counts[lemma] += 1
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
        raise ValueError(f"no content word occurs at least {min_count} times in {len(captions)} captions")
    config = {"min_count": min_count, "num_captions": len(captions),
              "tagged_captions": sum(t is not None for t in tokens) if tokens is not None else 0,
              "stop_words": sorted(stop_words), "drop_pos": sorted(drop_pos), "keep_words": sorted(keep_words)}
    return Vocabulary(kept, {w: counts[w] for w in kept}, config)


# ---------------------------------------------------------------------------------------------
# word -> sub-text -> motion segment
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WordLocation:
    """One vocabulary word occurrence of a caption and where it lies in the motion.

    ``position``: index of the word among the caption's words; ``word``: the word as written
    (lowercased); ``lemma``; ``vocab_index``: prototype index (-1 when no vocabulary was given);
    ``subtext_index``: index of the sub-text that contains it; ``start_frame``/``end_frame``: that
    sub-text's motion segment [start, end) in frames."""
    position: int
    word: str
    lemma: str
    vocab_index: int
    subtext_index: int
    start_frame: int
    end_frame: int


def _find_exact_cover(caption: list[str], parts: list[list[str]]) -> list[int] | None:
    """Start positions placing every part as a contiguous run of the caption, runs disjoint and
    covering it (parts may be in any order: sub-texts are in temporal, not textual, order).
    Depth-first over the parts in order; None when no such placement exists."""
    n = len(caption)
    candidates = []
    for part in parts:
        k = len(part)
        candidates.append([s for s in range(n - k + 1) if caption[s:s + k] == part])
    used = [False] * n
    starts: list[int] = []

    def place(j: int) -> bool:
        if j == len(parts):
            return True
        k = len(parts[j])
        for s in candidates[j]:
            if not any(used[s:s + k]):
                for p in range(s, s + k):
                    used[p] = True
                starts.append(s)
                if place(j + 1):
                    return True
                starts.pop()
                for p in range(s, s + k):
                    used[p] = False
        return False

    return starts if place(0) else None


def assign_words_to_subtexts(caption_words: Sequence[str], subtexts: Sequence[str]) -> list[int]:
    """For each caption word, the index of the sub-text that contains it.

    Inputs: ``caption_words``, the caption's words in order (`split_words`); ``subtexts``, its
    sub-texts in temporal order, which together use each caption word exactly once (compared
    case- and punctuation-insensitively). A repeated word ("walks ..., then walks back") is
    resolved by placing every sub-text as a contiguous run of the caption (the splitter's and a
    well-behaved LLM's output); if no such placement exists, each sub-text takes the earliest
    unused occurrences of its words. Raises ValueError when the words do not match."""
    caption = [w.lower() for w in caption_words]
    parts = [[w.lower() for w in split_words(s)] for s in subtexts]
    if not caption:
        raise ValueError("caption_words is empty")
    if any(not p for p in parts):
        raise ValueError(f"sub-text {[len(p) for p in parts].index(0)} has no word")
    if Counter(caption) != Counter(w for p in parts for w in p):
        extra = Counter(w for p in parts for w in p) - Counter(caption)
        missing = Counter(caption) - Counter(w for p in parts for w in p)
        raise ValueError(f"sub-texts do not use the caption's words exactly once "
                         f"(extra {sorted(extra)}, missing {sorted(missing)})")
    owner = [-1] * len(caption)
    starts = _find_exact_cover(caption, parts) if len(parts) <= 16 else None
    if starts is not None:
        for j, (s, part) in enumerate(zip(starts, parts)):
            for p in range(s, s + len(part)):
                owner[p] = j
        return owner
    for j, part in enumerate(parts):
        for w in part:
            p = next(p for p in range(len(caption)) if owner[p] == -1 and caption[p] == w)
            owner[p] = j
    return owner


def _as_int_list(bounds) -> list[int]:
    if hasattr(bounds, "tolist"):  # numpy array or torch tensor
        bounds = bounds.tolist()
    out = []
    for b in bounds:
        if isinstance(b, bool) or not float(b).is_integer():
            raise ValueError(f"bounds_frames must be integer frame indices, got {b!r}")
        out.append(int(b))
    return out


def locate_words(caption_words: Sequence[str], subtexts: Sequence[str], bounds_frames,
                 vocab: Vocabulary | None = None, lemmas: Sequence[str] | None = None) -> list[WordLocation]:
    """Map each vocabulary word occurrence of a caption to its sub-text and motion segment.

    Inputs: ``caption_words``, the caption's words in order (`split_words(caption)`);
    ``subtexts``, its N sub-texts in temporal order (`split_subtexts` or imported LLM answers);
    ``bounds_frames``, the segmenter's N+1 strictly increasing frame boundaries (list, numpy or
    torch), so sub-text n covers frames [bounds[n], bounds[n+1]); ``vocab`` (optional): keep only
    words whose lemma is in it (all words when None, with vocab_index -1); ``lemmas`` (optional):
    one lemma per caption word (e.g. from the dataset's tokens), `lemmatize` otherwise.

    Output: one `WordLocation` per kept word occurrence, in caption order; a word written twice
    gets two locations, each in the sub-text that contains that occurrence. Raises ValueError on
    mismatched lengths, bad boundaries, or sub-texts that do not use the caption's words."""
    caption_words = list(caption_words)
    subtexts = list(subtexts)
    if not subtexts:
        raise ValueError("subtexts is empty")
    bounds = _as_int_list(bounds_frames)
    if len(bounds) != len(subtexts) + 1:
        raise ValueError(f"bounds_frames must have len(subtexts) + 1 = {len(subtexts) + 1} entries, "
                         f"got {len(bounds)}")
    if bounds[0] < 0 or any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ValueError(f"bounds_frames must start >= 0 and increase strictly, got {bounds}")
    if lemmas is not None and len(lemmas) != len(caption_words):
        raise ValueError(f"lemmas has {len(lemmas)} items but caption_words has {len(caption_words)}")
    owner = assign_words_to_subtexts(caption_words, subtexts)
    out: list[WordLocation] = []
    for p, (word, n) in enumerate(zip(caption_words, owner)):
        lemma = lemmas[p].lower() if lemmas is not None else lemmatize(word)
        index = -1
        if vocab is not None:
            index = vocab.word_to_index.get(lemma, -1)
            if index < 0:
                continue
        out.append(WordLocation(p, word.lower(), lemma, index, n, bounds[n], bounds[n + 1]))
    return out


# ---------------------------------------------------------------------------------------------
# word -> token ids
# ---------------------------------------------------------------------------------------------

def _space_sensitive(tokenizer) -> bool:
    """True for tokenizers whose ids for a word depend on a preceding space (byte-level BPE:
    GPT-2, RoBERTa, BART mark it with "Ġ"); BERT/DistilBERT WordPiece and CLIP BPE strip it."""
    probe_plain = tokenizer("walk", add_special_tokens=False)["input_ids"]
    probe_space = tokenizer(" walk", add_special_tokens=False)["input_ids"]
    return list(probe_plain) != list(probe_space)


def word_token_ids(vocab: Vocabulary | Sequence[str], tokenizer, leading_space: bool | None = None) -> list[list[int]]:
    """Token ids of every vocabulary word in a Hugging Face tokenizer, in vocabulary order.

    Each word is tokenized alone with ``tokenizer(word, add_special_tokens=False)["input_ids"]``,
    so any tokenizer works: BERT lowercases itself, CLIP's BPE ids already include the "</w>"
    end-of-word form, and a word split into several pieces keeps all its ids (MATE takes the mean
    of their embeddings). ``leading_space``: tokenize " word" instead of "word", the form a word
    has inside a caption for byte-level BPE tokenizers (GPT-2, RoBERTa: "Ġwalk" != "walk");
    None (default) detects it by comparing the ids of "walk" and " walk". Raises ValueError if a
    word yields no id."""
    words = vocab.index_to_word if isinstance(vocab, Vocabulary) else list(vocab)
    if leading_space is None:
        leading_space = _space_sensitive(tokenizer)
    prefix = " " if leading_space else ""
    out: list[list[int]] = []
    for word in words:
        ids = list(tokenizer(prefix + word, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"the tokenizer gives no token id for vocabulary word {word!r}")
        out.append([int(i) for i in ids])
    return out
