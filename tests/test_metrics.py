"""mate.metrics on cases with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mate import metrics as M


# ---------------------------------------------------------------------------------- retrieval
def test_perfect_and_reversed_retrieval():
    sim = np.eye(12)
    out = M.retrieval_metrics(sim)
    for d in ("t2m", "m2t"):
        assert out[d]["R@1"] == 100.0 and out[d]["MedR"] == 1.0
    # Every query's match is the least similar of 12 candidates: rank 11.
    out = M.retrieval_metrics(-np.eye(12))
    assert out["t2m"]["R@10"] == 0.0 and out["t2m"]["MedR"] == 12.0


def test_hand_built_similarity_matrix():
    # Ranks of the diagonal per row (t2m): 0, 1, 2, 3.
    sim = np.array([[0.9, 0.1, 0.0, 0.0],
                    [0.8, 0.7, 0.1, 0.0],
                    [0.9, 0.8, 0.5, 0.0],
                    [0.9, 0.8, 0.7, 0.1]])
    np.testing.assert_array_equal(M.ranks_of_positives(sim), [0, 1, 2, 3])
    t2m = M.retrieval_metrics(sim)["t2m"]
    assert t2m["R@1"] == 25.0 and t2m["R@2"] == 50.0 and t2m["R@3"] == 75.0 and t2m["R@5"] == 100.0
    assert t2m["MedR"] == 2.5
    # m2t = columns: column 0's match 0.9 is tied with two other 0.9s -> rank (0+1+2)/2 = 1;
    # column 1's 0.7 is below two 0.8s -> 2; column 2's 0.5 below 0.7 -> 1; column 3 -> 0.
    np.testing.assert_array_equal(M.ranks_of_positives(sim.T), [1.0, 2.0, 1.0, 0.0])
    assert M.retrieval_metrics(sim)["m2t"]["R@1"] == 25.0


def test_ties_are_averaged():
    sim = np.ones((4, 4))                      # every candidate tied: rank (0+1+2+3)/4 = 1.5
    np.testing.assert_array_equal(M.ranks_of_positives(sim), [1.5] * 4)
    assert M.recall_metrics([1.5] * 4)["R@2"] == 100.0 and M.recall_metrics([1.5] * 4)["R@1"] == 0.0


def test_positive_mask_takes_the_best_positive():
    sim = np.array([[0.1, 0.5, 0.9],
                    [0.3, 0.2, 0.1]])
    positives = np.array([[True, False, True], [True, True, False]])
    np.testing.assert_array_equal(M.ranks_of_positives(sim, positives), [0, 0])
    with pytest.raises(ValueError, match="no positive"):
        M.ranks_of_positives(sim, np.zeros_like(positives))
    with pytest.raises(ValueError, match="square"):
        M.ranks_of_positives(sim)


def test_text_similarity_positives():
    # Captions 0 and 1 are paraphrases (cos 1); caption 2 is orthogonal.
    feats = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    pos = M.text_similarity_positives(feats, [0, 1, 2], 3, threshold=0.95)
    np.testing.assert_array_equal(pos, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    # cos = 0.85 -> (cos + 1) / 2 = 0.925 < 0.95: not a paraphrase.
    feats = np.array([[1.0, 0.0], [0.85, math.sqrt(1 - 0.85 ** 2)]])
    assert not M.text_similarity_positives(feats, [0, 1])[0, 1]


def test_small_batches_are_disjoint_and_averaged():
    clip_of = np.repeat(np.arange(70), 2)       # 70 clips, 2 captions each
    batches = M.sample_retrieval_batches(clip_of, 70, batch_size=32, seed=1)
    assert len(batches) == 2 and all(len(t) == len(m) == 32 for t, m in batches)
    motions = np.concatenate([m for _, m in batches])
    assert len(set(motions.tolist())) == 64
    for t, m in batches:
        np.testing.assert_array_equal(clip_of[t], m)
    sim = np.eye(140)[:, ::2]                   # caption i matches clip i // 2 only (for even i)
    sim[1::2] = np.eye(70)                      # odd captions too
    out = M.batched_retrieval_metrics(sim, batches)
    assert out["t2m"]["R@1"] == 100.0 and out["m2t"]["MedR"] == 1.0
    assert M.sample_retrieval_batches(clip_of, 70, 32, seed=1)[0][0].tolist() == batches[0][0].tolist()
    assert len(M.sample_retrieval_batches(np.arange(10), 10, 32)) == 1    # fewer than 32: one batch


def test_cosine_and_euclidean_matrices():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    b = np.array([[3.0, 4.0], [-4.0, 3.0], [0.0, -1.0]])
    np.testing.assert_allclose(M.cosine_similarity_matrix(a, b), [[1.0, 0.0, -0.8], [0, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(M.euclidean_distance_matrix(a, b), [[0.0, math.sqrt(50), math.sqrt(34)],
                                                                   [5.0, 5.0, 1.0]], atol=1e-7)
    with pytest.raises(ValueError, match="NaN"):
        M.cosine_similarity_matrix([[float("nan"), 0.0]], b)


# ------------------------------------------------------------------------- Guo et al.'s metrics
def test_r_precision_and_mm_dist_known_answers():
    B = 8
    motions = np.zeros((B, 4))
    motions[:, 0] = np.arange(B) * 10.0
    assert M.r_precision(motions, motions, batch_size=B).tolist() == [1.0, 1.0, 1.0]
    # Text i sits 6 past motion i: motion i+1 (4 away) is nearer, motion i second; the last
    # text has no motion i+1 and finds its own first.
    texts = motions.copy()
    texts[:, 0] += 6.0
    np.testing.assert_allclose(M.r_precision(texts, motions, batch_size=B), [1 / B, 1.0, 1.0])
    np.testing.assert_allclose(M.mm_dist(texts, motions), 6.0)
    # 70 pairs in batches of 32: the incomplete batch is dropped (64 pairs used).
    many = np.random.default_rng(0).normal(size=(70, 5))
    assert M.r_precision(many, many)[0] == 1.0
    assert len(M.sample_pair_batches(70, 32, seed=0)) == 2


def test_fid_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6))
    assert M.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert M.fid(x, x + 3.0) == pytest.approx(6 * 9.0, rel=1e-9)          # shifted mean only
    # Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # Non-commuting covariances: tr sqrt(S1 S2) from the eigenvalues of S1 S2.
    s1 = np.cov(rng.normal(size=(50, 4)), rowvar=False)
    s2 = np.cov(rng.normal(size=(50, 4)) @ rng.normal(size=(4, 4)), rowvar=False)
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    assert M.frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(
        np.trace(s1) + np.trace(s2) - 2 * tr, rel=1e-9)
    mu, cov = M.activation_statistics(x)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False))


def test_diversity_on_a_lattice():
    assert M.diversity(np.ones((40, 3)), times=40) == 0.0
    # The 4 corners of the unit square, 1000 points each: a random pair is the same corner
    # (1/4, distance 0), adjacent (1/2, distance 1) or diagonal (1/4, sqrt 2).
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    x = np.repeat(corners, 1000, axis=0)
    values = [M.diversity(x, 300, seed=s) for s in range(40)]
    assert np.mean(values) == pytest.approx(0.5 + math.sqrt(2) / 4, abs=0.02)
    assert M.diversity(2 * x, 300, seed=3) == pytest.approx(2 * M.diversity(x, 300, seed=3))
    with pytest.raises(ValueError, match="times"):
        M.diversity(x[:10], 300)


def test_multimodality():
    same = np.repeat(np.random.default_rng(0).normal(size=(5, 1, 3)), 30, axis=1)
    assert M.multimodality(same, 10) == 0.0
    # Each text's generations on two points 2 apart, alternating: a pair is 0 or 2 apart.
    x = np.zeros((6, 30, 2))
    x[:, 1::2, 0] = 2.0
    value = M.multimodality(x, 10, seed=0)
    assert value in {2.0 * k / 10 for k in range(11)}
    with pytest.raises(ValueError, match="times"):
        M.multimodality(x, 31)


# --------------------------------------------------------------------------------- segmentation
def test_boundary_errors_hand_made():
    # 20 fps: inner boundaries 20 vs 30 frames (0.5 s) and 60 vs 60 (0 s).
    np.testing.assert_allclose(M.boundary_errors([0, 20, 60, 100], [0, 30, 60, 100], fps=20), [0.5, 0.0])
    assert M.boundary_errors([0, 50], [0, 50], 20).size == 0
    pairs = [([0, 20, 60, 100], [0, 30, 60, 100]), ([0, 10, 40], [0, 40 - 10, 40])]   # 0.5, 0, 1.0
    assert M.mean_boundary_error(pairs, 20) == pytest.approx(0.5)
    assert M.mean_boundary_error([([0, 9], [0, 9])], 20) is None
    with pytest.raises(ValueError, match="different spans"):
        M.boundary_errors([0, 5, 10], [0, 5, 11], 20)
    np.testing.assert_array_equal(M.uniform_bounds(100, 3), [0, 33, 67, 100])
    np.testing.assert_array_equal(M.uniform_bounds(40, 4), [0, 10, 20, 30, 40])


# ------------------------------------------------------------------------ TMR's own protocols
TMR_SIM = np.array([[0.9, 0.1, 0.0, 0.0],
                    [0.8, 0.7, 0.1, 0.0],
                    [0.9, 0.8, 0.5, 0.0],
                    [0.9, 0.8, 0.7, 0.1]])


def _paraphrase_embeddings():
    """Texts 2 and 3 are paraphrases (cos 0.95 > 0.9 = 2 * 0.95 - 1); 0 and 1 are unrelated."""
    s = math.sqrt(1 - 0.95 ** 2)
    return np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0.95, s]]) * 3.0  # any scale


def test_tmr_threshold_positives_known_answer():
    pos = M.tmr_threshold_positives(_paraphrase_embeddings())
    expected = np.eye(4, dtype=bool)
    expected[2, 3] = expected[3, 2] = True
    np.testing.assert_array_equal(pos, expected)
    assert M.tmr_threshold_positives(_paraphrase_embeddings(), threshold=0.98).sum() == 4   # cos 0.95 < 0.96


def test_tmr_protocols_known_answers():
    out = M.tmr_retrieval_protocols(TMR_SIM, _paraphrase_embeddings(), nsim=[0, 3])
    # (a) the diagonal: t2m ranks 0, 1, 2, 3; m2t ranks 1 (three tied 0.9), 2, 1, 0
    assert out["normal"]["t2m"]["R@1"] == 25.0 and out["normal"]["t2m"]["MedR"] == 2.5
    assert out["normal"]["m2t"]["R@1"] == 25.0 and out["normal"]["m2t"]["R@2"] == 75.0
    # (b) texts 2 and 3 accept motions 2 and 3: t2m ranks 0, 1, 2, 2 (row 3's best positive is
    # motion 2 at 0.7); m2t ranks 1, 2, 0, 0 (motion 2's best positive text is 3 at 0.7)
    assert out["threshold"]["t2m"] == {"R@1": 25.0, "R@2": 50.0, "R@3": 100.0, "R@5": 100.0,
                                       "R@10": 100.0, "MedR": 2.5}
    assert out["threshold"]["m2t"]["R@1"] == 50.0 and out["threshold"]["m2t"]["R@2"] == 75.0
    # (c) motions 0 and 3 alone: [[0.9, 0.0], [0.9, 0.1]] -> t2m ranks 0, 1; m2t ranks 0.5 (a tie,
    # averaged) and 0
    assert out["nsim"]["t2m"]["R@1"] == 50.0 and out["nsim"]["m2t"]["R@1"] == 100.0
    assert out["nsim"]["m2t"]["MedR"] == 1.25
    # (d) fewer than 32 items: no batch
    assert out["guo"] is None and out["guo_batches"] == 0
    missing = M.tmr_retrieval_protocols(TMR_SIM)
    assert missing["threshold"] is None and missing["nsim"] is None and missing["guo"] is None
    with pytest.raises(ValueError, match="square"):
        M.tmr_retrieval_protocols(TMR_SIM[:3])


def test_tmr_guo_batches_known_answer():
    """TMR: keys sorted, np.random.seed(0); np.random.shuffle(arange(N)), N // 32 batches. For
    N = 70 that permutation starts 26, 27, 48, 22, 30 and leaves 36, 21, 9, 64, 47, 44 out."""
    keys = [f"{i:03d}" for i in reversed(range(70))]       # sorted key k sits at position 69 - k
    batches = M.tmr_guo_batches(keys)
    assert [len(b) for b in batches] == [32, 32]
    assert batches[0][:5].tolist() == [69 - k for k in (26, 27, 48, 22, 30)]
    left_out = set(range(70)) - set(np.concatenate(batches).tolist())
    assert left_out == {69 - k for k in (36, 21, 9, 64, 47, 44)}
    # protocol (d) averages the per-batch metrics: one miss in batch 0, none in batch 1, and a
    # miss among the dropped items changes nothing
    sim = np.eye(70)
    sim[batches[0][0], batches[0][0]] = -1.0
    sim[69 - 36, 69 - 36] = -1.0
    out = M.tmr_retrieval_protocols(sim, keys=keys)
    assert out["guo_batches"] == 2
    assert out["guo"]["t2m"]["R@1"] == pytest.approx((100.0 * 31 / 32 + 100.0) / 2)
    assert out["normal"]["t2m"]["R@1"] == pytest.approx(100.0 * 68 / 70)
