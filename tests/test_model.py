"""MATEModel: the losses are the paper's, gradients reach exactly what should learn."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mate.data.dataset import MotionTextDataset
from mate.model.losses import cross_negatives, lemma_exclusion
from mate.model.mate_model import MATEConfig, MATEModel
from mate.text.encoders import build_text_encoder
from mate.train.batches import Collator

TINY = dict(d_model=32, motion_layers=1, motion_heads=2, motion_ff=64, attention_heads=4)


@pytest.fixture()
def setup(tiny_synthetic_dataset, tiny_hf_encoder_dir):
    torch.manual_seed(0)
    dataset = MotionTextDataset(tiny_synthetic_dataset, "train", crop="start")
    encoder = build_text_encoder(f"hf:{tiny_hf_encoder_dir}")
    words = {}
    for r in dataset.records:  # one word per caption, with an odd segment
        word = r.caption.text.split()[1].strip(".,").lower()
        words[r.caption.key] = [(word, len(words) % 5, 3, 17)]
    batch = Collator(encoder, words, seed=0)([dataset[i] for i in range(11)])
    return encoder, dataset, batch


def make_model(encoder, dataset, **overrides):
    config = MATEConfig(**{**TINY, **overrides})
    return MATEModel(encoder, dataset.feature_dim, num_prototypes=5, config=config, impl="reference")


def test_all_losses_finite_and_only_the_word_table_learns_in_the_encoder(setup):
    encoder, dataset, batch = setup
    model = make_model(encoder, dataset)
    out = model.loss(batch)
    assert set(out.terms) == {"rec", "sent", "self", "cross", "align"}
    assert all(torch.isfinite(v) for v in out.terms.values())
    cfg = model.config
    expected = out.terms["rec"] + cfg.lambda_sent * out.terms["sent"] + cfg.lambda_word * (
        out.terms["self"] + out.terms["cross"] + out.terms["align"])
    torch.testing.assert_close(out.total, expected)
    out.total.backward()
    table = encoder.word_embeddings.weight
    assert table.grad is not None and table.grad.abs().sum() > 0
    for name, p in encoder.named_parameters():
        if p is not table:
            assert not p.requires_grad and p.grad is None, name
    for module in (model.motion_encoder, model.motion_decoder, model.word_attention, model.sentence_proj, model.word_proj):
        assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
    assert model.prototypes.grad is not None and model.prototypes.grad.abs().sum() > 0


def test_cross_loss_is_the_papers_definition(setup):
    """L_cross = mean over i, j in N(i) of |cos(f^{m_i}_{w_i}, f^{m_i}_{w_j})| + |cos(f^{m_i}_{w_i}, f^{m_j}_{w_i})|,
    N(i) the 8 samples whose sentence is least similar to word i; recomputed one query at a time."""
    encoder, dataset, batch = setup
    model = make_model(encoder, dataset).eval()  # no dropout
    with torch.no_grad():
        # At initialisation every attention output is nearly the same vector (near-uniform
        # attention plus a shared bias): sharpen the attention and drop the biases so that the
        # outputs, and so this test, depend on which word queries which motion.
        model.word_attention.q_proj.weight.mul_(30.0)
        model.word_attention.v_proj.bias.zero_()
        model.word_attention.out_proj.bias.zero_()
        terms = model.loss(batch).terms
        frames, _ = model.encode_motion(batch["motion"], batch["lengths"])
        f_t = model.encode_text(batch["input_ids"], batch["attention_mask"])
        f_e = model.encode_words(batch["word_token_ids"])
        B = f_e.shape[0]
        start, end = batch["segment_start"], batch["segment_end"]

        def attend(word, motion, with_prior):
            c = ((start[word] + end[word]) / 2).view(1) if with_prior else torch.zeros(1)
            s = ((end[word] - start[word]) / 2).view(1) if with_prior else torch.zeros(1)
            return model.localise_words(f_e[word:word + 1], frames, batch["lengths"], torch.tensor([motion]), c, s)[0]

        total, pairs = 0.0, []
        for i in range(B):
            sims = torch.tensor([F.cosine_similarity(f_e[i], f_t[j], dim=0) if j != i else float("inf") for j in range(B)])
            negatives = sims.argsort()[:8]
            anchor = attend(i, i, True)
            for j in negatives.tolist():
                pairs += [F.cosine_similarity(anchor, attend(j, i, False), dim=0).abs(),
                          F.cosine_similarity(anchor, attend(i, j, False), dim=0).abs()]
                total += (pairs[-1] + pairs[-2]) / (B * 8)
    assert torch.stack(pairs).std() > 0.05, "outputs too alike for the test to tell queries apart"
    torch.testing.assert_close(terms["cross"], torch.as_tensor(total, dtype=terms["cross"].dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["none", "binary", "gaussian_in_segment", "gaussian"])
def test_prior_variants_run_and_differ(setup, variant):
    encoder, dataset, batch = setup
    torch.manual_seed(1)
    model = make_model(encoder, dataset, prior_variant=variant).eval()
    with torch.no_grad():
        terms = model.loss(batch).terms
    assert torch.isfinite(terms["self"])
    if variant != "gaussian":
        torch.manual_seed(1)
        reference = make_model(encoder, dataset, prior_variant="gaussian").eval()
        with torch.no_grad():
            assert not torch.equal(reference.loss(batch).terms["self"], terms["self"])


def test_loss_switches_remove_terms(setup):
    encoder, dataset, batch = setup
    model = make_model(encoder, dataset, use_self=False, use_cross=False, use_align=False)
    assert set(model.loss(batch).terms) == {"rec", "sent"}
    model = make_model(encoder, dataset, use_rec=False, use_sent=False, use_cross=False)
    assert set(model.loss(batch).terms) == {"self", "align"}


def test_optimizer_step_leaves_untouched_table_rows_bit_identical(setup):
    encoder, dataset, batch = setup
    model = make_model(encoder, dataset)
    table = encoder.word_embeddings.weight
    before = table.detach().clone()
    groups = model.parameter_groups(1e-2, 1e-3)
    assert groups[0]["params"][0] is table and groups[0]["weight_decay"] == 0.0
    assert all(p is not table for p in groups[1]["params"])
    optimizer = torch.optim.AdamW(groups)
    model.loss(batch).total.backward()
    used = table.grad.abs().sum(dim=1) > 0
    optimizer.step()
    assert torch.equal(table.detach()[~used], before[~used])
    assert not torch.equal(table.detach()[used], before[used])


def test_prototypes_initialised_from_word_embeddings(setup):
    encoder, dataset, _ = setup
    model = make_model(encoder, dataset)
    ids = encoder.word_token_ids(["walks", "jumps", "left", "right", "turns"])
    model.init_prototypes(ids)
    with torch.no_grad():
        want = model.word_proj(encoder.embed_words(ids))  # E = 32 = D here, so ...
    if encoder.embedding_dim == model.config.d_model:
        want = encoder.embed_words(ids).detach()
    torch.testing.assert_close(model.prototypes.detach(), want)
    with pytest.raises(ValueError, match="vocabulary words"):
        model.init_prototypes(ids[:2])


def test_bad_config_raises():
    with pytest.raises(ValueError, match="prior_variant"):
        MATEConfig(prior_variant="laplace")
    with pytest.raises(ValueError, match="divisible"):
        MATEConfig(d_model=30, attention_heads=8)
    with pytest.raises(ValueError, match="tau"):
        MATEConfig(tau=0.0)


def test_lemma_exclusion_marks_captions_holding_the_word():
    target = torch.tensor([0, 1, 2, 0])
    lemmas = torch.tensor([[0, 3, -1], [1, 0, -1], [4, -1, -1], [2, -1, -1]])
    expected = torch.tensor([[(target[i] == lemmas[j]).any() for j in range(4)] for i in range(4)])
    assert torch.equal(lemma_exclusion(target, lemmas), expected)
    with pytest.raises(ValueError, match="caption_lemmas"):
        lemma_exclusion(target, lemmas[:3])


def test_cross_negatives_rank_excluded_pairs_last():
    """Excluded pairs are never chosen while a row has enough allowed samples, and the allowed
    ones keep the literal rule's order; with too few allowed, the excluded fill the rest."""
    g = torch.Generator().manual_seed(5)
    B, n = 13, 4
    f_e, f_t = torch.randn(B, 7, generator=g), torch.randn(B, 7, generator=g)
    excluded = torch.rand(B, B, generator=g) < 0.4
    excluded[0, 1:] = True          # row 0: no allowed sample at all
    got = cross_negatives(f_e, f_t, n, excluded)
    sims = F.normalize(f_e, dim=-1) @ F.normalize(f_t, dim=-1).T
    for i in range(B):
        allowed = [j for j in sims[i].argsort().tolist() if j != i and not excluded[i, j]]
        rest = [j for j in sims[i].argsort().tolist() if j != i and excluded[i, j]]
        assert got[i].tolist() == (allowed + rest)[:n], i
    assert torch.equal(cross_negatives(f_e, f_t, n), cross_negatives(f_e, f_t, n, torch.zeros(B, B, dtype=torch.bool)))
    with pytest.raises(ValueError, match="excluded"):
        cross_negatives(f_e, f_t, n, excluded[:5])


def test_exclude_lemma_rule_changes_only_the_negatives(setup):
    """With every caption holding its own word only, exclude_lemma removes j whose word is w_i's;
    L_cross then differs from the literal rule, the other terms do not."""
    encoder, dataset, batch = setup
    assert "caption_lemmas" in batch and batch["caption_lemmas"].shape[0] == batch["word_target"].shape[0]
    # the fixture: caption j's only word is its sampled one
    assert torch.equal(batch["caption_lemmas"][:, 0], batch["word_target"])
    assert (batch["caption_lemmas"][:, 1:] == -1).all()
    torch.manual_seed(0)
    literal = make_model(encoder, dataset).eval()
    torch.manual_seed(0)
    excluding = make_model(encoder, dataset, cross_negatives="exclude_lemma").eval()
    with torch.no_grad():
        a, b = literal.loss(batch).terms, excluding.loss(batch).terms
        f_e = excluding.encode_words(batch["word_token_ids"])
        f_t = excluding.encode_text(batch["input_ids"], batch["attention_mask"])
    same_word = batch["word_target"][:, None] == batch["word_target"][None, :]
    chosen = cross_negatives(f_e, f_t, 8, same_word)
    assert not any(same_word[i, j] for i in range(len(chosen)) for j in chosen[i].tolist()
                   if (~same_word[i]).sum() > 8), "a same-word caption was chosen while others were allowed"
    literal_chosen = cross_negatives(f_e, f_t, 8)
    assert any(same_word[i, j] for i in range(len(chosen)) for j in literal_chosen[i].tolist()), \
        "the fixture never picks a same-word negative: the test cannot tell the rules apart"
    for name in ("rec", "sent", "self", "align"):
        torch.testing.assert_close(a[name], b[name])
    assert not torch.isclose(a["cross"], b["cross"])
    with pytest.raises(ValueError, match="cross_negatives"):
        MATEConfig(cross_negatives="nearest")
