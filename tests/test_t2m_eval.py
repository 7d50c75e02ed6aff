"""mate.t2m_eval: the standard evaluator without its real weights.

A checkpoint written in the released key layout and shapes (spelled out here, independently of
the module) must load strictly; a small GloVe fixture stands in for the word vectors; each
evaluation convention has a known-answer test; and the whole protocol runs end to end on a
HumanML3D-layout split holding bad motions."""
from __future__ import annotations

import math
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from mate import t2m_eval
from mate.t2m_eval.data import BadMotionWarning, EvalSet, round_length
from mate.t2m_eval.evaluator import CONVENTIONS, Evaluator
from mate.t2m_eval.networks import MotionEncoderBiGRUCo, MovementConvEncoder, TextEncoderBiGRUCo
from mate.t2m_eval.protocol import batch_scores, summarise_replications
from mate.t2m_eval.words import POS_CATEGORIES, WordVectorizer, caption_inputs


def _gru(prefix: str, inp: int, hidden: int) -> dict:
    out = {}
    for suffix in ("", "_reverse"):
        out[f"{prefix}.weight_ih_l0{suffix}"] = (3 * hidden, inp)
        out[f"{prefix}.weight_hh_l0{suffix}"] = (3 * hidden, hidden)
        out[f"{prefix}.bias_ih_l0{suffix}"] = (3 * hidden,)
        out[f"{prefix}.bias_hh_l0{suffix}"] = (3 * hidden,)
    return out


def released_layout(dim: int) -> dict[str, dict[str, tuple]]:
    """Key -> shape of the released text_mot_match/model/finest.tar (dim = 263 or 251)."""
    movement = {"main.0.weight": (512, dim - 4, 4), "main.0.bias": (512,), "main.3.weight": (512, 512, 4),
                "main.3.bias": (512,), "out_net.weight": (512, 512), "out_net.bias": (512,)}
    text = {"pos_emb.weight": (300, 15), "pos_emb.bias": (300,), "input_emb.weight": (512, 300),
            "input_emb.bias": (512,), **_gru("gru", 512, 512), "output_net.0.weight": (512, 1024),
            "output_net.0.bias": (512,), "output_net.1.weight": (512,), "output_net.1.bias": (512,),
            "output_net.3.weight": (512, 512), "output_net.3.bias": (512,), "hidden": (2, 1, 512)}
    motion = {"input_emb.weight": (1024, 512), "input_emb.bias": (1024,), **_gru("gru", 1024, 1024),
              "output_net.0.weight": (1024, 2048), "output_net.0.bias": (1024,), "output_net.1.weight": (1024,),
              "output_net.1.bias": (1024,), "output_net.3.weight": (512, 1024), "output_net.3.bias": (512,),
              "hidden": (2, 1, 1024)}
    return {"movement_encoder": movement, "text_encoder": text, "motion_encoder": motion}


WORDS = ["unk", "sos", "eos", "a", "person", "walk", "left", "forward", "the", "fast", "turn", "wave", "hand", "slowly"]


def write_glove(folder, words=WORDS, dim=300, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.random.default_rng(seed).standard_normal((len(words) + 2, dim)).astype(np.float32)
    rows = {w: i + 2 for i, w in enumerate(words)}          # rows not in list order: the index is read
    np.save(folder / "our_vab_data.npy", vectors)
    (folder / "our_vab_words.pkl").write_bytes(pickle.dumps(list(words)))
    (folder / "our_vab_idx.pkl").write_bytes(pickle.dumps(rows))
    return vectors, rows


def write_evaluator(folder, dim=263, seed=0, meta="Comp_v6_KLD005"):
    g = torch.Generator().manual_seed(seed)
    checkpoint = {key: {k: torch.randn(shape, generator=g) * 0.05 for k, shape in layout.items()}
                  for key, layout in released_layout(dim).items()}
    checkpoint["epoch"] = 7
    (folder / "text_mot_match" / "model").mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, folder / "text_mot_match" / "model" / "finest.tar")
    (folder / meta / "meta").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.save(folder / meta / "meta" / "mean.npy", rng.standard_normal(dim).astype(np.float32) * 0.1)
    np.save(folder / meta / "meta" / "std.npy", (0.5 + rng.random(dim)).astype(np.float32))
    return checkpoint


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluator")
    checkpoint = write_evaluator(root / "t2m")
    write_glove(root / "glove")
    return root, checkpoint


# ------------------------------------------------------------------------------------ loading
def test_released_layout_loads_strictly(released):
    root, checkpoint = released
    ev = t2m_eval.load_evaluator(root / "t2m", root / "glove", dataset="humanml3d")
    for key, net in (("movement_encoder", ev.movement_encoder), ("text_encoder", ev.text_encoder),
                     ("motion_encoder", ev.motion_encoder)):
        state = net.state_dict()
        assert set(state) == set(checkpoint[key])
        assert all(torch.equal(state[k], checkpoint[key][k]) for k in state)
    assert ev.mean.shape == (263,) and len(ev.words) == len(WORDS)


def test_kit_checkpoint_is_not_a_humanml3d_evaluator(tmp_path, released):
    write_evaluator(tmp_path / "kit", dim=251, meta="Comp_v6_KLD01")
    ev = t2m_eval.load_evaluator(tmp_path / "kit", released[0] / "glove", dataset="kit")
    assert ev.convention.feature_dim == 251
    (tmp_path / "mixed" / "text_mot_match").mkdir(parents=True)
    (tmp_path / "mixed" / "text_mot_match" / "model").symlink_to(tmp_path / "kit" / "text_mot_match" / "model")
    (tmp_path / "mixed" / "meta").mkdir()
    np.save(tmp_path / "mixed" / "meta" / "mean.npy", np.zeros(263, np.float32))
    np.save(tmp_path / "mixed" / "meta" / "std.npy", np.ones(263, np.float32))
    with pytest.raises(ValueError, match="movement_encoder does not match the humanml3d evaluator"):
        t2m_eval.load_evaluator(tmp_path / "mixed", released[0] / "glove", dataset="humanml3d")


@pytest.mark.parametrize("remove,fragment", [
    ("t2m/text_mot_match/model/finest.tar", "finest.tar not found"),
    ("t2m/Comp_v6_KLD005/meta/std.npy", "meta/mean.npy and meta/std.npy were not found"),
    ("glove/our_vab_idx.pkl", "our_vab_idx.pkl"),
])
def test_missing_file_is_named(tmp_path, remove, fragment):
    write_evaluator(tmp_path / "t2m")
    write_glove(tmp_path / "glove")
    (tmp_path / remove).unlink()
    with pytest.raises(FileNotFoundError, match=fragment):
        t2m_eval.load_evaluator(tmp_path / "t2m", tmp_path / "glove")


def test_unknown_dataset_and_missing_folder(tmp_path, released):
    with pytest.raises(ValueError, match="choose humanml3d or kit"):
        t2m_eval.load_evaluator(released[0] / "t2m", released[0] / "glove", dataset="babel")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        t2m_eval.load_evaluator(tmp_path / "nowhere", released[0] / "glove")


# ------------------------------------------------------------------------------------- words
def test_word_vectorizer_known_answers(tmp_path):
    vectors, rows = write_glove(tmp_path)
    words = WordVectorizer(tmp_path)
    pos = {name: i for i, name in enumerate(POS_CATEGORIES)}
    assert len(POS_CATEGORIES) == 15
    for token, category in [("left/ADJ", "Loc_VIP"), ("walk/NOUN", "Act_VIP"), ("hand/NOUN", "Body_VIP"),
                            ("fast/ADV", "Desc_VIP"), ("slowly/ADV", "Desc_VIP"), ("the/DET", "DET"),
                            ("person/NOUN", "NOUN"), ("a/CCONJ", "OTHER")]:
        vec, onehot = words[token]
        assert np.array_equal(vec, vectors[rows[token.split("/")[0]]])
        assert onehot.argmax() == pos[category] and onehot.sum() == 1, token
    vec, onehot = words["moonwalk/VERB"]                     # unknown word: unk, and POS OTHER
    assert np.array_equal(vec, vectors[rows["unk"]]) and onehot.argmax() == pos["OTHER"]


def test_caption_inputs_pad_and_crop(tmp_path):
    vectors, rows = write_glove(tmp_path)
    words = WordVectorizer(tmp_path)
    emb, pos, n = caption_inputs(["a/DET", "person/NOUN", "walk/VERB"], words)
    assert emb.shape == (22, 300) and pos.shape == (22, 15) and n == 5
    assert np.array_equal(emb[0], vectors[rows["sos"]]) and np.array_equal(emb[4], vectors[rows["eos"]])
    assert all(np.array_equal(emb[i], vectors[rows["unk"]]) for i in range(5, 22))
    long = ["walk/VERB"] * 20 + ["left/ADJ"] * 5
    emb, pos, n = caption_inputs(long, words)
    assert n == 22 and np.array_equal(emb[21], vectors[rows["eos"]]) and np.array_equal(emb[20], vectors[rows["walk"]])
    with pytest.raises(ValueError, match="no POS-tagged tokens"):
        caption_inputs([], words)


def test_word_pickles_are_data_only(tmp_path):
    write_glove(tmp_path)
    (tmp_path / "our_vab_idx.pkl").write_bytes(pickle.dumps(np.arange(3)))    # an object, not a plain dict
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        WordVectorizer(tmp_path)


# ------------------------------------------------------------------------------- conventions
def test_round_length_rule():
    rng = np.random.default_rng(0)
    got = [round_length(101, rng) for _ in range(3000)]
    assert set(got) == {100, 96}
    assert abs(np.mean(np.array(got) == 96) - 1 / 3) < 0.03


def test_summarise_replications_known_answer():
    s = summarise_replications([1.0, 2.0, 3.0, 6.0])
    assert s["mean"] == 3.0
    assert math.isclose(s["conf"], 1.96 * np.std([1, 2, 3, 6]) / 2.0)


def test_batch_scores_known_answer():
    motion = np.eye(4) * 10
    text = 0.9 * motion[[0, 1, 3, 2]] + 0.1 * motion   # texts 2, 3: own motion second nearest
    hits, dist = batch_scores(text, motion)
    assert hits.tolist() == [2, 4, 4]
    assert math.isclose(dist, np.linalg.norm(text - motion, axis=1).sum())


# ------------------------------------------------------------------------- a HumanML3D split
TOKENS = "a/DET person/NOUN walk/VERB forward/ADV"


def write_split(root, n_good=70, seed=0, dim=263, constant=False):
    """HumanML3D layout: n_good usable motions (lengths 40..199, whole-motion captions), plus a
    too-short, a too-long, a NaN, an inf and an empty motion, and one annotated span."""
    rng = np.random.default_rng(seed)
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    ids = []

    def add(name, motion, lines):
        np.save(root / "new_joint_vecs" / f"{name}.npy", motion.astype(np.float32))
        (root / "texts" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        ids.append(name)

    def random_motion(length):
        if constant:
            return np.repeat(rng.standard_normal((1, dim)), length, axis=0)
        return rng.standard_normal((length, dim))

    for i in range(n_good):
        motion = random_motion(int(rng.integers(40, 200)))
        extra = " ".join(["left/ADJ"] * int(rng.integers(0, 25)))
        add(f"{i:06d}", motion, [f"caption {i} a#{TOKENS} {extra}#0.0#0.0", f"caption {i} b#{TOKENS}#0.0#0.0"])
    add("short", rng.standard_normal((39, dim)), [f"too short#{TOKENS}#0.0#0.0"])
    add("long", rng.standard_normal((200, dim)), [f"too long#{TOKENS}#0.0#0.0"])
    nan = rng.standard_normal((80, dim))
    nan[3, 5] = np.nan
    add("007975", nan, [f"nan motion#{TOKENS}#0.0#0.0"])
    inf = rng.standard_normal((80, dim))
    inf[0, 0] = np.inf
    add("M007975", inf, [f"inf motion#{TOKENS}#0.0#0.0"])
    add("empty", np.zeros((0, dim)), [f"empty#{TOKENS}#0.0#0.0"])
    add("spans", random_motion(260), [f"the first part#{TOKENS}#0.0#3.0", f"too short part#{TOKENS}#3.0#4.0"])
    (root / "test.txt").write_text("\n".join(ids) + "\n")
    np.save(root / "Mean.npy", rng.standard_normal(dim).astype(np.float32))
    np.save(root / "Std.npy", (1.0 + rng.random(dim)).astype(np.float32))
    return root


def small_evaluator(glove_dir, dim=263, seed=0) -> Evaluator:
    """The evaluator's architecture at small widths (fast on CPU) with a random normalisation."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    return Evaluator(MovementConvEncoder(dim - 4, 16, 16), TextEncoderBiGRUCo(300, 15, 16, 8),
                     MotionEncoderBiGRUCo(16, 16, 8), (rng.standard_normal(dim) * 0.1).astype(np.float32),
                     (0.5 + rng.random(dim)).astype(np.float32), WordVectorizer(glove_dir), CONVENTIONS["humanml3d"])


def test_eval_set_filters_and_names_bad_motions(tmp_path):
    write_split(tmp_path / "data")
    with pytest.warns(BadMotionWarning, match=r"skipped 3 motion\(s\): 007975 \(NaN or inf\), M007975 \(NaN or inf\), "
                                              r"empty \(empty"):
        data = EvalSet(tmp_path / "data", CONVENTIONS["humanml3d"])
    names = [item.name for item in data.items]
    assert len(names) == 71 and "spans#0-3" in names
    assert not {"short", "long", "spans", "007975"} & set(names)


def test_draw_pass_conventions(tmp_path):
    write_split(tmp_path / "data")
    write_glove(tmp_path / "glove")
    words = WordVectorizer(tmp_path / "glove")
    with pytest.warns(BadMotionWarning):
        data = EvalSet(tmp_path / "data", CONVENTIONS["humanml3d"])
    by_name = {item.name: item for item in data.items}
    mean, std = np.full(263, 0.5, np.float32), np.full(263, 2.0, np.float32)
    batches = list(data.draw_pass(lambda x: (x - mean) / std, words, np.random.default_rng(1)))
    assert len(batches) == 71 // 32                                    # drop_last
    for b in batches:
        assert b.motions.shape == (32, 196, 263) and b.word_embs.shape == (32, 22, 300)
        assert (np.diff(b.sent_lens) <= 0).all()                       # longest caption first
        for name, caption, motion, length in zip(b.names, b.captions, b.motions, b.lengths):
            raw = by_name[name].motion
            assert length % 4 == 0 and length in ((len(raw) // 4) * 4, (len(raw) // 4 - 1) * 4)
            assert caption in [c for c, _ in by_name[name].captions]
            assert not motion[length:].any()
            window = motion[:length] * std + mean                      # a contiguous window of the raw motion
            starts = [s for s in range(len(raw) - length + 1) if np.allclose(raw[s:s + length], window, atol=1e-5)]
            assert starts, name


# ------------------------------------------------------------------------------ end to end
def test_evaluate_real_end_to_end_with_a_nan_motion(tmp_path):
    write_split(tmp_path / "data")
    write_glove(tmp_path / "glove")
    ev = small_evaluator(tmp_path / "glove")
    with pytest.warns(BadMotionWarning, match="007975"):
        report = t2m_eval.evaluate_real(tmp_path / "data", ev, replications=3, progress=False)
    m = report["metrics"]
    assert set(m) == {"R_precision_top1", "R_precision_top2", "R_precision_top3", "FID", "MM_Dist", "Diversity"}
    assert m["R_precision_top1"]["mean"] <= m["R_precision_top2"]["mean"] <= m["R_precision_top3"]["mean"] <= 1
    assert m["FID"]["mean"] > 0 and m["FID"]["replications"] == 3
    assert report["counts"]["skipped_motions"] == ["007975", "M007975", "empty"]


def test_generator_renormalisation_known_answer(tmp_path):
    """Motions constant in time: a generator returning each caption's motion in the *data's*
    normalisation must embed exactly like the real motion (the evaluator's normalisation differs:
    a missing renormalisation would show), so FID ~ 0 and R-precision / MM-Dist equal the real ones."""
    root = write_split(tmp_path / "data", constant=True)
    write_glove(tmp_path / "glove")
    ev = small_evaluator(tmp_path / "glove")
    data_mean, data_std = np.load(root / "Mean.npy"), np.load(root / "Std.npy")
    with pytest.warns(BadMotionWarning):
        frames = {c: item.motion[0] for item in EvalSet(root, ev.convention).items for c, _ in item.captions}

    def oracle(captions, tokens, lengths):
        T = int(lengths.max())
        return np.stack([np.repeat(((frames[c] - data_mean) / data_std)[None], T, axis=0) for c in captions])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadMotionWarning)
        report = t2m_eval.evaluate_generator(oracle, root, ev, replications=2, mm_batches=1, mm_repeats=3, mm_times=2,
                                             progress=False)
        wrong = t2m_eval.evaluate_generator(oracle, root, ev, replications=1, mm_batches=0, progress=False,
                                            data_mean=np.zeros(263), data_std=np.ones(263))
        constant = t2m_eval.evaluate_generator(lambda c, t, lengths: np.zeros((len(c), int(lengths.max()), 263)), root,
                                               ev, replications=2, mm_batches=1, mm_repeats=3, mm_times=2, progress=False)
    m, real = report["metrics"], report["real"]
    assert m["FID"]["mean"] < wrong["metrics"]["FID"]["mean"] / 30      # float32 embeddings: ~1e-5 noise
    for name in ("R_precision_top1", "R_precision_top3", "MM_Dist", "Diversity"):
        assert math.isclose(m[name]["mean"], real[name]["mean"], rel_tol=1e-5, abs_tol=1e-6), name
    assert m["MultiModality"]["mean"] < 1e-6                              # a deterministic generator
    # one motion for every caption: only its length varies
    assert constant["metrics"]["Diversity"]["mean"] < 0.1 * real["Diversity"]["mean"] and constant["metrics"]["FID"]["mean"] > 30 * m["FID"]["mean"]


def test_generator_output_is_checked(tmp_path):
    root = write_split(tmp_path / "data")
    write_glove(tmp_path / "glove")
    ev = small_evaluator(tmp_path / "glove")
    with warnings.catch_warnings(), pytest.raises(ValueError, match=r"must return \[B=32, T >= "):
        warnings.simplefilter("ignore", BadMotionWarning)
        t2m_eval.evaluate_generator(lambda c, t, lengths: np.zeros((len(c), 10, 263)), root, ev, replications=1,
                                    progress=False)


def test_cli_mistake_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mate.t2m_eval", "--data", str(tmp_path), "--evaluator",
                          str(tmp_path / "missing"), "--glove", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error:") and "does not exist" in out.stderr


def test_real_humanml3d_motion_and_split(humanml3d_fixture, tmp_path):
    """The real fixture: its motion is read with the HumanML3D conventions, and the real test
    split does list the two NaN motions the loader must skip."""
    ids = (humanml3d_fixture / "test.txt").read_text().split()
    assert "007975" in ids and "M007975" in ids
    motion = np.load(humanml3d_fixture / "new_joint_vecs" / "012314.npy")
    root = tmp_path / "data"
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    np.save(root / "new_joint_vecs" / "012314.npy", motion)
    (root / "texts" / "012314.txt").write_text(f"a person walks#{TOKENS}#0.0#0.0\n")
    (root / "test.txt").write_text("012314\n")
    usable = 40 <= len(motion) < 200
    if usable:
        assert [item.name for item in EvalSet(root, CONVENTIONS["humanml3d"]).items] == ["012314"]
    else:
        with pytest.raises(ValueError, match="no motion the evaluator can read"):
            EvalSet(root, CONVENTIONS["humanml3d"])


def test_cli_debug_shows_the_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mate.t2m_eval", "--data", str(tmp_path), "--evaluator",
                          str(tmp_path / "missing"), "--glove", str(tmp_path), "--debug"], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr and "FileNotFoundError" in out.stderr
