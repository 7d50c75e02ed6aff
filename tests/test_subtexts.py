"""Sub-text splitting (rule-based) and the LLM prompt/answer round trip."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mate.text.subtexts import (
    build_prompt,
    check_subtexts,
    detect_verbs,
    export_llm_prompts,
    has_verb,
    import_llm_answers,
    split_subtexts,
)
from mate.text.vocab import split_words


def word_multiset(texts):
    return Counter(w.lower() for t in texts for w in split_words(t))


# ---------------------------------------------------------------------------------------------
# Known answers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("caption, expected", [
    # sequence markers
    ("a person walks forward then turns left and jumps",
     ["a person walks forward", "then turns left", "and jumps"]),
    ("A person walks forward and turns left.", ["A person walks forward", "and turns left"]),
    ("A person walks forward, turns on the spot and walks back to the original position.",
     ["A person walks forward", "turns on the spot", "and walks back to the original position"]),
    ("a man kneels down and then crawls forward", ["a man kneels down", "and then crawls forward"]),
    ("A person stands still. Then he jumps; finally he sits down.",
     ["A person stands still", "Then he jumps", "finally he sits down"]),
    ("someone runs forward, after that walks back", ["someone runs forward", "after that walks back"]),
    ("A person squats and afterwards stands up", ["A person squats", "and afterwards stands up"]),
    # "and" between noun phrases or adverbs is not an action boundary
    ("a person waves with the left hand and the right hand",
     ["a person waves with the left hand and the right hand"]),
    ("The human walks back and forth.", ["The human walks back and forth."]),
    ("A human jumps to the left, then to the right.", ["A human jumps to the left, then to the right."]),
    # nouns that look like verbs
    ("A person makes a sharp turn.", ["A person makes a sharp turn."]),
    ("A person walks 4 steps forward and a quarter circle.", ["A person walks 4 steps forward and a quarter circle."]),
    ("A person does a quick and large step back", ["A person does a quick and large step back"]),
    # temporal order: before / after
    ("Before sitting down, a man waves with his right hand",
     ["a man waves with his right hand", "Before sitting down"]),
    ("a person walks two steps before turning around", ["a person walks two steps", "before turning around"]),
    ("A person stumbling after being pushed.", ["after being pushed", "A person stumbling"]),
    ("someone is kneeling down after performing a T-pose.", ["after performing a T-pose", "someone is kneeling down"]),
    ("After walking a bit forward, a person turns around", ["After walking a bit forward", "a person turns around"]),
    ("A person starts running and stops after four steps.",
     ["A person starts running", "and stops after four steps"]),  # "after four steps": no clause
    # simultaneity stays whole
    ("a person waves while walking in a circle", ["a person waves while walking in a circle"]),
    ("While walking, a human is pushed from the right side.",
     ["While walking, a human is pushed from the right side."]),
    ("A person moves to the right as if he was pushed by someone else.",
     ["A person moves to the right as if he was pushed by someone else."]),
    ("a person walks forward and claps and waves at the same time",
     ["a person walks forward", "and claps and waves at the same time"]),
    ("A person walks forward and waves while turning", ["A person walks forward", "and waves while turning"]),
    ("While walking, he waves, then sits down.", ["While walking, he waves", "then sits down"]),
    # accompanying gerunds and verb-less pieces join their neighbour
    ("A person kneels down on the floor, using both hands as support.",
     ["A person kneels down on the floor, using both hands as support."]),
    ("human goes forward, slowly and firmly, starting with right",
     ["human goes forward, slowly and firmly, starting with right"]),
    # a state then an action
    ("A person is on all fours and stands up", ["A person is on all fours", "and stands up"]),
    # single actions, whitespace and punctuation
    ("A person walks forward.", ["A person walks forward."]),
    ("   a person jogs   ", ["a person jogs"]),
    ("a jump to the left", ["a jump to the left"]),
])
def test_known_splits(caption, expected):
    assert split_subtexts(caption) == expected


@pytest.mark.parametrize("bad", ["", "   ", "\n\t", "...", " , ; "])
def test_empty_or_wordless_caption_raises(bad):
    with pytest.raises(ValueError, match="caption"):
        split_subtexts(bad)


def test_non_string_caption_raises():
    with pytest.raises(ValueError, match="string"):
        split_subtexts(None)  # type: ignore[arg-type]


def test_pos_tokens_decide_verbs():
    # "whistles" is not in the motion lexicon: without tags the second clause has no verb.
    caption = "a person yodels then whistles"
    assert split_subtexts(caption) == [caption]
    tokens = "a/DET person/NOUN yodel/VERB then/ADV whistle/VERB"
    assert split_subtexts(caption, tokens=tokens) == ["a person yodels", "then whistles"]
    # Tags also win the other way: a NOUN tag keeps a lexicon word from being a verb.
    assert split_subtexts("a person walks and turns", tokens=["a/DET", "person/NOUN", "walk/VERB",
                                                                "and/CCONJ", "turn/NOUN"]) == ["a person walks and turns"]


def test_humanml3d_token_line():
    caption = "a man kicks something or someone with his left leg."
    tokens = "a/DET man/NOUN kick/VERB something/PRON or/CCONJ someone/PRON with/ADP his/DET left/ADJ leg/NOUN"
    words = split_words(caption)
    assert detect_verbs(words, tokens) == [w == "kicks" for w in words]
    assert split_subtexts(caption, tokens) == [caption]
    with pytest.raises(ValueError, match="word/POS"):
        split_subtexts(caption, tokens=["a/DET", "man"])


def test_verb_detection_contexts():
    def verbs(text):
        words = split_words(text)
        return [w for w, f in zip(words, detect_verbs(words)) if f]

    assert verbs("a person takes 4 steps") == ["takes"]
    assert verbs("a person steps forward") == ["steps"]
    assert verbs("walks in circles") == ["walks"]
    assert verbs("after being pushed") == ["pushed"]
    assert verbs("before turning") == ["turning"]
    assert verbs("a human ambles slowly") == ["ambles"]  # not in the lexicon: after a subject
    assert verbs("a running jump") == []
    assert verbs("crosses the road") == ["crosses"]
    assert has_verb("gets up") and not has_verb("on the left side")


# ---------------------------------------------------------------------------------------------
# Invariant: the sub-texts use every word of the caption exactly once
# ---------------------------------------------------------------------------------------------

_SUBJECTS = ["a person", "A man", "someone", "the human", "he", "Subject"]
_VERBS = ["walks", "turns", "jumps", "kicks", "waves", "sits down", "stands up", "runs", "steps",
          "is walking", "gets pushed", "raises his arm", "lowers it", "spins around", "crouches",
          "takes 4 steps", "makes a sharp turn", "walking", "turning", "yodels"]
_TAILS = ["forward", "to the left", "with the right hand", "in a circle", "slowly", "two times",
          "and the left hand", "back and forth", "after 2 steps", "clockwise", ""]
_LINKS = [" then ", " and ", " and then ", ", ", ". ", "; ", " before ", " after ", " while ",
          ", then ", " as ", " after that ", " finally ", " next ", " and, ", " - ", " afterwards "]


@st.composite
def captions(draw):
    parts = [draw(st.sampled_from(_SUBJECTS)) + " " + draw(st.sampled_from(_VERBS))]
    for _ in range(draw(st.integers(0, 5))):
        parts.append(draw(st.sampled_from(_LINKS)))
        if draw(st.booleans()):
            parts.append(draw(st.sampled_from(_SUBJECTS)) + " ")
        parts.append(draw(st.sampled_from(_VERBS)) + " " + draw(st.sampled_from(_TAILS)))
    prefix = draw(st.sampled_from(["", "Before ", "After ", "While ", "  ", "First "]))
    return prefix + "".join(parts) + draw(st.sampled_from(["", ".", " .", "!", "  "]))


@settings(max_examples=300, deadline=None)
@given(captions())
def test_word_multiset_invariant_on_generated_captions(caption):
    subtexts = split_subtexts(caption)
    assert subtexts and all(s.strip() for s in subtexts)
    assert word_multiset(subtexts) == word_multiset([caption])
    assert all(s in caption for s in subtexts)  # whole spans of the caption, no new text


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=80))
def test_word_multiset_invariant_on_arbitrary_text(text):
    if not split_words(text):
        with pytest.raises(ValueError):
            split_subtexts(text)
        return
    assert word_multiset(split_subtexts(text)) == word_multiset([text])


# ---------------------------------------------------------------------------------------------
# LLM round trip
# ---------------------------------------------------------------------------------------------

CAPTIONS = {
    "a": "a person walks forward then turns left and jumps",
    "b": "A person waves with both hands.",
    "c": "someone kneels down after walking two steps",
    "d": "a man runs and then sits down",
    "e": "A person jumps and turns",
    "f": "a person squats then stands up",
    "g": "a person walks back and forth",
    "h": "the human spins around",
    "i": "a person crawls forward",
}


def write_jsonl(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def test_export_prompts(tmp_path):
    path = export_llm_prompts(CAPTIONS, tmp_path / "sub" / "prompts.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["id"] for r in lines] == list(CAPTIONS)
    first = lines[0]
    assert first["caption"] == CAPTIONS["a"]
    assert first["answer_format"] == "JSON list of strings"
    prompt = first["prompt"]
    assert prompt == build_prompt(CAPTIONS["a"])
    assert prompt.rstrip().endswith(f"Description: {CAPTIONS['a']}\nAnswer:")
    for rule in ("temporal order", "exactly once", "verb", "while", "JSON list"):
        assert rule in prompt
    assert '["a person walks forward", "then turns left", "and jumps"]' in prompt  # few-shot example
    # sequences get ids "0", "1", ...
    path2 = export_llm_prompts(["a man walks", "a man runs"], tmp_path / "p2.jsonl")
    assert [json.loads(x)["id"] for x in path2.read_text().splitlines()] == ["0", "1"]
    with pytest.raises(ValueError, match="non-empty"):
        export_llm_prompts(["a man walks", "  "], tmp_path / "p3.jsonl")


def test_import_answers_validation_and_fallback(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, [
        {"id": "a", "answer": ["A person walks forward,", "then turns LEFT", "and jumps."]},  # accepted
        {"id": "b", "answer": '```json\n["A person waves with both hands."]\n```'},  # fenced reply
        {"id": "c", "answer": json.dumps(["after walking two steps", "someone kneels down"])},
        {"id": "d", "answer": ["a man runs", "and then quickly sits down"]},  # new word
        {"id": "e", "answer": ["A person jumps"]},  # missing word
        {"id": "f", "answer": ["a person squats then", "stands up"]},  # fine: both have verbs
        {"id": "g", "answer": ["a person walks back", "and forth"]},  # no verb in the second
        {"id": "h", "answer": "Sure! Here it is: the human spins around"},  # not JSON
        {"id": "i", "answer": {"subtexts": ["a person crawls forward"]}},  # wrong type
        "",  # blank lines are allowed
        {"id": "zz", "answer": ["unknown"]},
    ])
    result, stats = import_llm_answers(path, CAPTIONS)
    assert set(result) == set(CAPTIONS)
    assert result["a"] == ["A person walks forward,", "then turns LEFT", "and jumps."]
    assert result["b"] == ["A person waves with both hands."]
    assert result["c"] == ["after walking two steps", "someone kneels down"]
    assert result["f"] == ["a person squats then", "stands up"]
    # rejected answers fall back to the rule-based split
    for cid in "deghi":
        assert result[cid] == split_subtexts(CAPTIONS[cid])
    assert stats.total == 9 and stats.accepted == 4 and stats.fallback == 5
    assert stats.rejected == {"new_word": 1, "missing_word": 1, "no_verb": 1, "not_json": 1, "wrong_type": 1}
    assert stats.missing == 0 and stats.unknown_ids == 1
    assert stats.as_dict()["rejected"]["no_verb"] == 1


def test_import_counts_missing_answers(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_jsonl(path, [{"id": "0", "answer": ["a man walks", "then runs"]}])
    result, stats = import_llm_answers(path, ["a man walks then runs", "a man jumps and turns"])
    assert result == {"0": ["a man walks", "then runs"], "1": ["a man jumps", "and turns"]}
    assert stats.accepted == 1 and stats.missing == 1 and stats.fallback == 1 and stats.rejected == {}


@pytest.mark.parametrize("answer, reason", [
    (["a man walks", "then runs"], None),
    (["A MAN walks", "then... runs!"], None),
    ("[\"a man walks\", \"then runs\"]", None),
    ("not json", "not_json"),
    ('{"a": 1}', "wrong_type"),
    ([1, 2], "wrong_type"),
    ([], "empty_list"),
    (["a man walks then runs", " ,"], "empty_subtext"),
    (["a man walks", "then runs", "fast"], "new_word"),
    (["a man walks", "then runs", "then"], "new_word"),  # a caption word used twice
    (["a man walks"], "missing_word"),
    (["a man", "walks then runs"], "no_verb"),
])
def test_check_subtexts_reasons(answer, reason):
    assert check_subtexts("a man walks then runs", answer) == reason


def test_import_malformed_lines_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [{"id": "0", "answer": ["a man walks"]}, "", '{"id": "1", "answer": [oops'])
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: malformed JSON"):
        import_llm_answers(path, ["a man walks", "a man runs"])
    write_jsonl(path, [{"id": "0"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: expected a JSON object with 'id' and 'answer'"):
        import_llm_answers(path, ["a man walks"])
    write_jsonl(path, [["not", "an", "object"]])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        import_llm_answers(path, ["a man walks"])
    write_jsonl(path, [{"id": "0", "answer": ["a man walks"]}, {"id": 0, "answer": ["a man walks"]}])
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: duplicate answer"):
        import_llm_answers(path, ["a man walks"])


# ---------------------------------------------------------------------------------------------
# Real captions (KIT-ML)
# ---------------------------------------------------------------------------------------------

def test_kitml_captions(kitml_fixture):
    with open(kitml_fixture / "annotations.json") as f:
        data = json.load(f)
    texts = [a["text"] for entry in data.values() for a in entry["annotations"]]
    assert len(texts) == 12164
    results = [split_subtexts(t) for t in texts]
    for text, subtexts in zip(texts, results):
        assert word_multiset(subtexts) == word_multiset([text]), text
    n_split = sum(len(r) > 1 for r in results)
    # Most KIT-ML captions describe one action; about a fifth describe a sequence.
    assert 0.10 * len(texts) < n_split < 0.40 * len(texts)
    by_text = dict(zip(texts, results))
    assert by_text["A person walks forward, turns on the spot and walks back to the original position."] == [
        "A person walks forward", "turns on the spot", "and walks back to the original position"]
    assert by_text["A person walks forward."] == ["A person walks forward."]
    assert by_text["someone is kneeling down after performing a T-pose."] == [
        "after performing a T-pose", "someone is kneeling down"]
