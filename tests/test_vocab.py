"""Words: tokenisation, lemmas, the prototype vocabulary, word -> sub-text -> segment, token ids."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mate.text.subtexts import split_subtexts
from mate.text.vocab import (
    Vocabulary,
    WordLocation,
    assign_words_to_subtexts,
    build_vocabulary,
    is_content_word,
    lemmatize,
    locate_words,
    parse_pos_tokens,
    split_words,
    word_token_ids,
)


def test_split_words():
    assert split_words("A person walks, then turns.") == ["A", "person", "walks", "then", "turns"]
    assert split_words("anti-clockwise t-pose person's 1.5 m him-/herself") == [
        "anti-clockwise", "t-pose", "person's", "1.5", "m", "him", "herself"]
    assert split_words("forward.Then") == ["forward", "Then"]
    assert split_words("  ") == []
    with pytest.raises(ValueError):
        split_words(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("word, lemma", [
    ("walks", "walk"), ("Walking", "walk"), ("sitting", "sit"), ("crosses", "cross"), ("feet", "foot"),
    ("knees", "knee"), ("left", "left"), ("ran", "run"), ("stood", "stand"), ("hopped", "hop"),
    ("clockwise", "clockwise"), ("anti-clockwise", "anti-clockwise"), ("bent", "bent"),
])
def test_lemmatize(word, lemma):
    assert lemmatize(word) == lemma


def test_lemmatize_is_cached_and_validates():
    lemmatize.cache_clear()
    lemmatize("jumps")
    lemmatize("jumps")
    assert lemmatize.cache_info().hits >= 1
    for bad in ("", "  ", "!!", None, 3):
        with pytest.raises(ValueError):
            lemmatize(bad)  # type: ignore[arg-type]


def test_parse_pos_tokens():
    assert parse_pos_tokens("a/DET man/NOUN kick/VERB") == [("a", "DET"), ("man", "NOUN"), ("kick", "VERB")]
    assert parse_pos_tokens(["him/herself/PRON"]) == [("him/herself", "PRON")]
    for bad in (["kick"], ["/VERB"], ["kick/"]):
        with pytest.raises(ValueError, match="word/POS"):
            parse_pos_tokens(bad)


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

CAPTIONS = [
    "A person walks forward and turns left.",
    "Someone is walking in a circle, then sits down.",
    "a man kicks with his left leg 2 times",
    "The person walks past the chair four steps.",
]


def test_build_vocabulary_with_simplemma():
    vocab = build_vocabulary(CAPTIONS)
    words = vocab.index_to_word
    for w in ("walk", "turn", "left", "forward", "circle", "sit", "down", "kick", "leg", "step", "person", "past"):
        assert w in vocab, w
    # function words, pronouns, numbers are dropped
    for w in ("a", "the", "and", "is", "be", "in", "his", "with", "someone", "then", "2", "four"):
        assert w not in vocab, w
    # order: count descending, then alphabetical
    assert words[:3] == ["walk", "left", "person"]  # walk x3, left x2, person x2
    assert [vocab.counts[w] for w in words] == sorted((vocab.counts[w] for w in words), reverse=True)
    assert all(vocab.word_to_index[w] == i for i, w in enumerate(words))
    assert len(vocab) == len(words) and list(vocab) == words
    assert vocab.index_of("Walking") == vocab.word_to_index["walk"]
    assert vocab.index_of("yodel") == -1


def test_build_vocabulary_from_tokens_vs_simplemma():
    caption = "The person walks past the chair and kicks it."
    tokens = "the/DET person/NOUN walk/VERB past/ADP the/DET chair/NOUN and/CCONJ kick/VERB it/PRON"
    untagged = build_vocabulary([caption])
    tagged = build_vocabulary([caption], tokens=[tokens])
    # Tags drop "past" (ADP), which the untagged path keeps (not a stop word).
    assert "past" in untagged and "past" not in tagged
    assert set(tagged) == {"person", "walk", "chair", "kick"}
    # The dataset's own lemma is used where it differs from simplemma's.
    special = build_vocabulary(["a man strides"], tokens=["a/DET man/NOUN stride-walk/VERB"])
    assert set(special) == {"man", "stride-walk"}
    # Mixed: tokens for some captions, None for others; directional particles are kept.
    mixed = build_vocabulary([caption, "someone sits down"], tokens=[tokens, None])
    assert "down" in mixed and "sit" in mixed and "past" not in mixed
    keep = build_vocabulary(["sit down"], tokens=["sit/VERB down/ADP"])
    assert set(keep) == {"sit", "down"}


def test_build_vocabulary_is_configurable():
    vocab = build_vocabulary(CAPTIONS, min_count=2)
    assert set(vocab) == {"walk", "left", "person"}
    with_stop = build_vocabulary(["the man walks"], stop_words=())
    assert "the" in with_stop
    no_keep = build_vocabulary(["sit down"], tokens=["sit/VERB down/ADP"], keep_words=())
    assert set(no_keep) == {"sit"}
    keep_pron = build_vocabulary(["he walks"], tokens=["he/PRON walk/VERB"], drop_pos=(), stop_words=())
    assert set(keep_pron) == {"he", "walk"}
    assert is_content_word("clockwise", "ADV") and not is_content_word("the", "DET")
    assert not is_content_word("90") and not is_content_word("three")


@pytest.mark.parametrize("kwargs, match", [
    (dict(captions=["a man walks"], tokens=[None, None]), "tokens has 2 items"),
    (dict(captions=["a man walks"], min_count=0), "min_count"),
    (dict(captions=["the a an"]), "no content word"),
    (dict(captions="a man walks"), "single string"),
    (dict(captions=["a man walks", 3]), "caption 1"),
    (dict(captions=["a man walks"], tokens=[["man"]]), "caption 0"),
])
def test_build_vocabulary_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_vocabulary(**kwargs)


def test_vocabulary_save_load_round_trip(tmp_path):
    vocab = build_vocabulary(CAPTIONS)
    path = vocab.save(tmp_path / "v" / "vocab.json")
    loaded = Vocabulary.load(path)
    assert loaded == vocab
    assert loaded.index_to_word == vocab.index_to_word
    assert loaded.word_to_index == vocab.word_to_index
    assert loaded.counts == vocab.counts
    assert loaded.config["min_count"] == 1 and "DET" in loaded.config["drop_pos"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(bad)
    bad.write_text(json.dumps({"words": ["a"]}))
    with pytest.raises(ValueError, match="not a MATE vocabulary"):
        Vocabulary.load(bad)
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["walk", "walk"])


# ---------------------------------------------------------------------------------------------
# word -> sub-text -> segment
# ---------------------------------------------------------------------------------------------

def test_locate_words_with_a_repeated_word():
    caption = "a person walks forward, then turns around and walks back"
    subtexts = split_subtexts(caption)
    assert subtexts == ["a person walks forward", "then turns around", "and walks back"]
    vocab = build_vocabulary([caption])
    locations = locate_words(split_words(caption), subtexts, [0, 10, 25, 40], vocab=vocab)
    walks = [loc for loc in locations if loc.word == "walks"]
    assert [(loc.subtext_index, loc.start_frame, loc.end_frame) for loc in walks] == [(0, 0, 10), (2, 25, 40)]
    assert [loc.position for loc in walks] == [2, 8]
    turn = next(loc for loc in locations if loc.lemma == "turn")
    assert (turn.subtext_index, turn.start_frame, turn.end_frame) == (1, 10, 25)
    assert all(loc.vocab_index == vocab.word_to_index[loc.lemma] for loc in locations)
    assert {loc.word for loc in locations}.isdisjoint({"a", "then", "and"})  # not in the vocabulary


def test_locate_words_after_reordering_and_without_vocab():
    caption = "someone kneels down after walking two steps"
    subtexts = split_subtexts(caption)
    assert subtexts == ["after walking two steps", "someone kneels down"]
    locations = locate_words(split_words(caption), subtexts, np.array([0, 20, 50]))
    assert len(locations) == len(split_words(caption))  # no vocabulary: every word, index -1
    by_word = {loc.word: loc for loc in locations}
    assert (by_word["walking"].subtext_index, by_word["walking"].start_frame, by_word["walking"].end_frame) == (0, 0, 20)
    assert by_word["kneels"].subtext_index == 1
    assert (by_word["kneels"].start_frame, by_word["kneels"].end_frame) == (20, 50)
    assert all(loc.vocab_index == -1 for loc in locations)
    assert isinstance(locations[0], WordLocation)


def test_assign_words_repeated_across_and_within_subtexts():
    words = "walk walk then walk".split()
    # The same word in both sub-texts: the contiguous placement decides which occurrence is whose.
    assert assign_words_to_subtexts(words, ["walk walk", "then walk"]) == [0, 0, 1, 1]
    assert assign_words_to_subtexts(words, ["then walk", "walk walk"]) == [1, 1, 0, 0]
    # A non-contiguous (LLM) answer still maps every occurrence once.
    assert sorted(assign_words_to_subtexts(words, ["walk then", "walk walk"])) == [0, 0, 1, 1]


def test_locate_words_with_dataset_lemmas():
    words = ["a", "man", "kicks"]
    locations = locate_words(words, ["a man kicks"], [0, 30], lemmas=["a", "man", "kick-out"])
    assert [loc.lemma for loc in locations] == ["a", "man", "kick-out"]


@pytest.mark.parametrize("subtexts, bounds, match", [
    (["a man walks", "then runs"], [0, 10], "len\\(subtexts\\) \\+ 1"),
    (["a man walks", "then runs"], [0, 10, 10], "increase strictly"),
    (["a man walks", "then runs"], [-1, 10, 20], "start >= 0"),
    (["a man walks", "then runs"], [0, 10.5, 20], "integer"),
    (["a man walks", "then jogs"], [0, 10, 20], "exactly once"),
    (["a man walks"], [0, 10], "exactly once"),
    ([], [0], "empty"),
])
def test_locate_words_errors(subtexts, bounds, match):
    with pytest.raises(ValueError, match=match):
        locate_words(split_words("a man walks then runs"), subtexts, bounds)


# ---------------------------------------------------------------------------------------------
# word -> token ids
# ---------------------------------------------------------------------------------------------

@pytest.fixture()
def bert_tokenizer(tmp_path):
    from transformers import BertTokenizerFast

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "walk", "turn", "left", "clock", "##wise",
              "counter", "kick", "leg"]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(pieces) + "\n")
    # transformers 5 takes the vocab file as `vocab` (and ignores `vocab_file`); 4.x the reverse.
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    if tokenizer("walk", add_special_tokens=False)["input_ids"] != [pieces.index("walk")]:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    return tokenizer, {p: i for i, p in enumerate(pieces)}


def test_word_token_ids_bert(bert_tokenizer):
    tokenizer, ids = bert_tokenizer
    vocab = Vocabulary(["walk", "clockwise", "counterclockwise", "Left", "kick"])
    out = word_token_ids(vocab, tokenizer)
    assert out == [
        [ids["walk"]],
        [ids["clock"], ids["##wise"]],  # multi-token word keeps every id
        [ids["[UNK]"]],  # WordPiece gives [UNK] for a word it cannot piece together
        [ids["left"]],  # BERT lowercases
        [ids["kick"]],
    ]
    assert all(ids["[CLS]"] not in t and ids["[SEP]"] not in t for t in out)  # no special tokens
    assert word_token_ids(["walk"], tokenizer, leading_space=True) == [[ids["walk"]]]


def test_word_token_ids_byte_level_bpe_uses_leading_space():
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    # A tiny GPT-2 style byte-level BPE: "walk" and " walk" ("Ġwalk") are different tokens.
    vocab = {"w": 0, "a": 1, "l": 2, "k": 3, "Ġ": 4, "wa": 5, "wal": 6, "walk": 7, "Ġw": 8, "Ġwa": 9,
             "Ġwal": 10, "Ġwalk": 11}
    merges = [("Ġ", "w"), ("Ġw", "a"), ("Ġwa", "l"), ("Ġwal", "k"), ("w", "a"), ("wa", "l"), ("wal", "k")]
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    assert word_token_ids(["walk"], tokenizer, leading_space=False) == [[7]]
    assert word_token_ids(["walk"], tokenizer) == [[11]]  # detected: the in-caption form " walk"


def test_word_token_ids_rejects_words_without_ids():
    class EmptyTokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": []}

    with pytest.raises(ValueError, match="'walk'"):
        word_token_ids(["walk"], EmptyTokenizer(), leading_space=False)


# ---------------------------------------------------------------------------------------------
# Real captions (KIT-ML)
# ---------------------------------------------------------------------------------------------

def test_kitml_vocabulary(kitml_fixture):
    with open(kitml_fixture / "annotations.json") as f:
        data = json.load(f)
    train_ids = set((kitml_fixture / "splits" / "train.txt").read_text().split())
    texts = [a["text"] for mid, entry in data.items() if mid in train_ids for a in entry["annotations"]]
    vocab = build_vocabulary(texts)
    # The paper reports K = 1,191 for KIT-ML; this filter keeps content words only.
    assert 800 < len(vocab) < 1400
    assert "walk" in vocab.index_to_word[:3]
    for w in ("turn", "left", "right", "forward", "clockwise", "counterclockwise", "jump", "kick"):
        assert w in vocab, w
