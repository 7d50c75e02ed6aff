"""Using the exported encoder (`mate.export`): a MATE CLIP export loads where OpenAI-CLIP and
open_clip code expects it and computes MATE's own sentence feature; Hugging Face exports carry a
``pytorch_model.bin`` for older transformers; ``python -m mate.export`` re-exports a run.

CLIP weights ship in no package, so the CLIPs here are tiny (random weights, every parameter
perturbed so that no LayerNorm sits at its identity) with OpenAI's real key layout, CLIP's real BPE
vocabulary (49,408 tokens, from open_clip) and OpenAI's 64-wide heads unless a test says otherwise.
They go through MATE's own path: ``build_text_encoder("clip:<file>")``, a few word rows changed as
training would, ``export_text_encoder``.

float16: PyTorch runs float16 matmuls, attention and LayerNorm on the CPU, so the converted
model is run as is (no cast back) and compared with MATE's float32 feature at a float16 tolerance.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import pytest
import torch

from mate import export as E
from mate.text.encoder_base import EXPORT_MANIFEST
from mate.text.encoders import HFTextEncoder, build_text_encoder, export_text_encoder
from mate.text.torchvision_compat import ImageTransformsUnavailableError, import_open_clip

transformers = pytest.importorskip("transformers")
open_clip = import_open_clip()

from mate.text.clip_backend import CLIP_STATE_DICT_FILE, OpenCLIPTextEncoder  # noqa: E402

CAPTIONS = ["a person walks clockwise", "someone jumps to the left quickly", "a man kicks with his right leg"]
TRAINED_WORDS = ["clockwise", "left", "quickly"]
# OpenAI's rules: heads = width // 64 (text and ViT), ResNet attention-pool heads = width * 32 // 64.
TEXT_CFG = dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=2)
VIT_CFG = dict(image_size=32, patch_size=16, width=64, layers=1, head_width=64)
RESNET_CFG = dict(image_size=64, layers=(1, 1, 1, 1), width=8)
EMBED_DIM = 32


def _perturbed_open_clip(vision_cfg: dict, text_cfg: dict = TEXT_CFG, seed: int = 0):
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(embed_dim=EMBED_DIM, vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=True)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    for module in model.modules():  # BatchNorm statistics away from (0, 1) as well
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _train_rows(encoder) -> list[int]:
    """What MATE's stage 1 does to the table, in miniature: the rows of a few words move."""
    rows = sorted({i for ids in encoder.word_token_ids(TRAINED_WORDS) for i in ids})
    with torch.no_grad():
        encoder.word_embeddings.weight[rows] += 0.3 * torch.randn(len(rows), encoder.embedding_dim)
    return rows


@pytest.fixture(scope="module")
def reference_clip():
    """The source CLIP: open_clip's model with a ViT image tower, OpenAI's key layout."""
    return _perturbed_open_clip(VIT_CFG)


@pytest.fixture(scope="module")
def exported(reference_clip, tmp_path_factory):
    """(MATE encoder with trained rows, its export folder) from a full checkpoint."""
    folder = tmp_path_factory.mktemp("clip_export")
    checkpoint = folder / "tiny_clip.pt"
    torch.save(reference_clip.state_dict(), checkpoint)
    encoder = build_text_encoder(f"clip:{checkpoint}").eval()
    assert encoder.text_cfg["heads"] == 1  # OpenAI's rule read the tiny width right
    _train_rows(encoder)
    return encoder, export_text_encoder(encoder, folder / "encoder")


def _mate_features(encoder, captions=CAPTIONS):
    batch = encoder.tokenize(captions)
    with torch.no_grad():
        return batch["input_ids"], encoder(batch["input_ids"], batch["attention_mask"])


# ---------------------------------------------------------------------------------------------
# clip_load: OpenAI's clip.load interface on a MATE export
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["folder", "file"])
def test_clip_load_encode_text_is_mate_sentence_feature(exported, which):
    encoder, folder = exported
    path = folder if which == "folder" else folder / CLIP_STATE_DICT_FILE
    model, preprocess = E.clip_load(path)  # CPU: float32, as clip.load
    assert isinstance(model, E.OpenAICLIP) and not model.training and model.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    input_ids, expected = _mate_features(encoder)
    with torch.no_grad():
        features = model.encode_text(input_ids)
    assert features.shape == (len(CAPTIONS), EMBED_DIM) and features.dtype == torch.float32
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
    assert isinstance(preprocess, E.ClipImagePreprocess) and preprocess.n_px == 32


def test_the_trained_rows_reach_the_loaded_model(exported, reference_clip):
    """The loaded model is the trained encoder, not the original CLIP: features of captions with a
    trained word differ from the source checkpoint's, the others do not."""
    encoder, folder = exported
    model, _ = E.clip_load(folder)
    input_ids, _ = _mate_features(encoder)
    with torch.no_grad():
        changed = (model.encode_text(input_ids) - reference_clip.encode_text(input_ids)).abs().amax(dim=1)
    assert changed[0] > 1e-3 and changed[1] > 1e-3  # "clockwise", "left quickly"
    assert changed[2] < 1e-5  # no trained word


def test_fp16_conversion_where_openai_converts(exported):
    encoder, folder = exported
    model, _ = E.clip_load(folder, fp16=True)
    half = {name for name, p in model.named_parameters() if p.dtype == torch.float16}
    single = {name for name, p in model.named_parameters() if p.dtype == torch.float32}
    assert half | single == {name for name, _ in model.named_parameters()}
    for name in half:  # convert_weights: conv/linear weights and biases, attention projections, projections
        assert name.endswith(("conv1.weight", "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias",
                              "c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias", "text_projection",
                              "visual.proj")), name
    for name in ("token_embedding.weight", "positional_embedding", "ln_final.weight", "logit_scale",
                 "visual.class_embedding", "transformer.resblocks.0.ln_1.bias"):
        assert name in single, name
    assert model.dtype == torch.float16
    input_ids, expected = _mate_features(encoder)
    with torch.no_grad():
        features = model.encode_text(input_ids)
    assert features.dtype == torch.float16  # as OpenAI's encode_text on a GPU; callers add .float()
    # float16 keeps 11 significant bits: errors of a few 1e-3 on features of magnitude ~1-2.
    torch.testing.assert_close(features.float(), expected, rtol=1e-2, atol=1e-2)
    assert (features.float() - expected).abs().max() > 0  # it did run in float16
    # The public helper converts exactly these tensors on any model with OpenAI's module types.
    fresh, _ = E.clip_load(folder)
    E.convert_weights_to_fp16(fresh)
    assert {name for name, p in fresh.named_parameters() if p.dtype == torch.float16} == half


def test_clip_load_encode_image_matches_open_clip(exported, reference_clip):
    _, folder = exported
    model, _ = E.clip_load(folder)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), reference_clip.encode_image(images),
                                   rtol=1e-5, atol=1e-5)
        logits_per_image, logits_per_text = model(images, _mate_features(exported[0])[0])
    assert logits_per_image.shape == (2, len(CAPTIONS)) and torch.equal(logits_per_text, logits_per_image.t())


def test_resnet_image_tower(tmp_path):
    """OpenAI's ModifiedResNet (RN50-style) image tower, architecture read from the shapes."""
    reference = _perturbed_open_clip(RESNET_CFG, seed=2)
    path = tmp_path / "rn.pt"
    torch.save(reference.state_dict(), path)
    model, preprocess = E.clip_load(path)
    vision = model.architecture.vision
    assert (vision.kind, vision.layers, vision.width, vision.heads, vision.image_resolution) == \
        ("resnet", (1, 1, 1, 1), 8, 4, 64)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    tokens = open_clip.tokenize(CAPTIONS)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), reference.encode_image(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.encode_text(tokens), reference.encode_text(tokens), rtol=1e-5, atol=1e-5)
    assert preprocess.n_px == 64


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|load)` is deprecated:DeprecationWarning")
def test_openai_float16_torchscript_archive_loads_too(tmp_path):
    """OpenAI's own ViT-B-32.pt: a float16 TorchScript archive with metadata entries in its state dict."""
    archived = _perturbed_open_clip(VIT_CFG, seed=8).half()
    for name, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        if name in archived.__dict__:
            delattr(archived, name)  # open_clip keeps plain ints under two of these names
        archived.register_buffer(name, torch.tensor(value))
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.script(archived).save(str(archive))
    model, _ = E.clip_load(archive)
    assert model.dtype == torch.float32  # CPU: float32, as clip.load
    reference = _perturbed_open_clip(VIT_CFG, seed=8).half().float()  # the same float16-rounded weights
    tokens = open_clip.tokenize(CAPTIONS)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(tokens), reference.encode_text(tokens), rtol=1e-5, atol=1e-5)


def test_text_only_export_loads_for_encode_text(tmp_path):
    torch.manual_seed(4)
    encoder = OpenCLIPTextEncoder.from_config(TEXT_CFG, embed_dim=EMBED_DIM, quick_gelu=True).eval()
    _train_rows(encoder)
    folder = export_text_encoder(encoder, tmp_path / "tower")
    assert json.loads((folder / EXPORT_MANIFEST).read_text())["contents"] == "text_tower"
    model, preprocess = E.clip_load(folder)
    assert model.visual is None
    input_ids, expected = _mate_features(encoder)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(input_ids), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(E.TextOnlyExportError, match="only CLIP's text tower"):
        preprocess(None)
    with pytest.raises(E.TextOnlyExportError, match="encode_image"):
        model.encode_image(torch.zeros(1, 3, 32, 32))
    # float16 works without an image tower too (the dtype is read from text_projection)
    model16, _ = E.clip_load(folder, fp16=True)
    assert model16.dtype == torch.float16


def test_heads_come_from_the_manifest(tmp_path):
    """Width 32 breaks OpenAI's 64-wide-heads rule: the export's manifest records 2 heads. The bare
    file, copied away from its manifest, needs text_heads (no tensor holds the head count)."""
    text_cfg = dict(TEXT_CFG, width=32, heads=2)
    reference = _perturbed_open_clip(dict(VIT_CFG, width=32, head_width=16), text_cfg=text_cfg, seed=5)
    torch.save(reference.state_dict(), tmp_path / "narrow.pt")
    encoder = build_text_encoder(f"clip:{tmp_path / 'narrow.pt'}", text_cfg={"heads": 2})
    folder = export_text_encoder(encoder, tmp_path / "export")
    input_ids, expected = _mate_features(encoder)
    with torch.no_grad():
        torch.testing.assert_close(E.clip_load(folder, vision_heads=2)[0].encode_text(input_ids), expected,
                                   rtol=1e-5, atol=1e-5)
    alone = tmp_path / "alone.pt"
    shutil.copy(folder / CLIP_STATE_DICT_FILE, alone)
    with pytest.raises(ValueError, match=r"width 32 into 0 attention heads.*text_heads"):
        E.clip_load(alone)
    with torch.no_grad():
        torch.testing.assert_close(E.clip_load(alone, text_heads=2, vision_heads=2)[0].encode_text(input_ids),
                                   expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# clip_load: errors
# ---------------------------------------------------------------------------------------------


def test_jit_true_is_refused_clearly(exported):
    with pytest.raises(ValueError, match=r"jit=True.*plain state dict.*TorchScript"):
        E.clip_load(exported[1], jit=True)


def test_wrong_paths_and_wrong_files_name_the_problem(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match="no MATE export at .*absent"):
        E.clip_load(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"has no {CLIP_STATE_DICT_FILE}"):
        E.clip_load(empty)
    not_clip = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), not_clip)
    with pytest.raises(ValueError, match=r"not a CLIP state dict in the OpenAI layout: it lacks token_embedding"):
        E.clip_load(not_clip)
    stage_model = tmp_path / "model.pt"  # a MATE stage checkpoint is not an export
    torch.save({"model": {"w": torch.zeros(1)}, "config": {"d_model": 8}}, stage_model)
    with pytest.raises(ValueError, match=r"not a CLIP state dict \(name -> tensor\).*model, config"):
        E.clip_load(stage_model)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes((exported[1] / CLIP_STATE_DICT_FILE).read_bytes()[:5000])
    with pytest.raises(ValueError, match="cannot read a state dict.*damaged"):
        E.clip_load(damaged)
    custom_text = tmp_path / "custom.pt"
    torch.save({f"text.{k}": v for k, v in torch.load(exported[1] / CLIP_STATE_DICT_FILE).items()
                if not k.startswith("visual.")}, custom_text)
    with pytest.raises(ValueError, match="CustomTextCLIP layout.*open_clip_load"):
        E.clip_load(custom_text)
    with pytest.raises(ValueError, match="implementation must be"):
        E.clip_load(exported[1], implementation="torchscript")


def test_text_configs_openai_cannot_express_are_refused(exported, tmp_path):
    """No tensor shows a missing causal mask: the manifest does, and clip_load refuses it."""
    folder = tmp_path / "copy"
    shutil.copytree(exported[1], folder)
    manifest = json.loads((folder / EXPORT_MANIFEST).read_text())
    manifest["text_cfg"]["no_causal_mask"] = True
    (folder / EXPORT_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no_causal_mask=True.*open_clip_load"):
        E.clip_load(folder)


def test_hugging_face_exports_say_there_is_no_conversion(tmp_path, tiny_hf_encoder_dir):
    folder = export_text_encoder(build_text_encoder(f"hf:{tiny_hf_encoder_dir}"), tmp_path / "hf")
    with pytest.raises(ValueError, match=r"'hf' export.*no conversion"):
        E.clip_load(folder)
    with pytest.raises(ValueError, match=r"'hf' export.*no conversion"):
        E.open_clip_load(folder)
    with pytest.raises(ValueError, match="transformers folder.*no conversion"):
        E.clip_load(tiny_hf_encoder_dir)


def test_openai_clip_package_is_used_when_it_imports(exported, monkeypatch, tmp_path):
    """Where OpenAI's ``clip`` package imports, ``build_model`` builds the model (a stand-in package
    here that behaves like it: the real one needs torchvision, which this CPU torch cannot import).
    Its model comes back float16 (build_model converts *before* loading, so this float32 source's
    linear weights are rounded to float16; OpenAI's own archive is float16 already and the trained
    token table stays float32) and clip_load turns it to float32 on the CPU, as clip.load."""
    calls = []

    def build_model(state_dict):
        calls.append(sorted(state_dict))
        model = E.OpenAICLIP(E.infer_openai_clip_architecture(state_dict))
        E.convert_weights_to_fp16(model)
        model.load_state_dict(state_dict)
        return model.eval()

    package = types.ModuleType("clip")
    package.load = lambda *args, **kwargs: None
    package.model = types.ModuleType("clip.model")
    package.model.build_model = build_model
    monkeypatch.setitem(sys.modules, "clip", package)
    monkeypatch.setitem(sys.modules, "clip.model", package.model)
    encoder, folder = exported
    model, preprocess = E.clip_load(folder)
    assert len(calls) == 1 and "visual.proj" in calls[0]
    assert model.dtype == torch.float32 and isinstance(preprocess, E.ClipImagePreprocess)
    assert model.token_embedding.weight.dtype == torch.float32
    assert torch.equal(model.token_embedding.weight, encoder.word_embeddings.weight)  # the trained rows, unrounded
    input_ids, expected = _mate_features(encoder)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(input_ids), expected, rtol=1e-2, atol=1e-2)
    assert E.clip_load(folder, fp16=True)[0].dtype == torch.float16 and len(calls) == 2
    E.clip_load(folder, implementation="mate")
    assert len(calls) == 2
    torch.manual_seed(0)
    tower = export_text_encoder(OpenCLIPTextEncoder.from_config(TEXT_CFG, embed_dim=EMBED_DIM, quick_gelu=True),
                                tmp_path / "tower")
    E.clip_load(tower)  # text-only: build_model would need visual.* keys, so MATE's network is used
    assert len(calls) == 2
    with pytest.raises(ValueError, match="OpenAI's build_model cannot build"):
        E.clip_load(tower, implementation="openai")
    monkeypatch.setitem(sys.modules, "clip", None)
    with pytest.raises(ImportError, match="OpenAI's clip package"):
        E.clip_load(folder, implementation="openai")


# ---------------------------------------------------------------------------------------------
# open_clip_load
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_open_clip_config(monkeypatch):
    """The tiny ViT CLIP as an open_clip model config named "mate-tiny-ViT" (removed afterwards)."""
    config = {"embed_dim": EMBED_DIM, "quick_gelu": True, "vision_cfg": dict(VIT_CFG), "text_cfg": dict(TEXT_CFG)}
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "mate-tiny-ViT", config)
    return "mate-tiny-ViT"


def test_open_clip_load_equals_mate_and_clip_load(exported, tiny_open_clip_config, caplog):
    encoder, folder = exported
    model, preprocess = E.open_clip_load(folder, model_name=tiny_open_clip_config)
    assert isinstance(model, open_clip.model.CLIP) and not model.training
    assert not any("initialized randomly" in record.getMessage() for record in caplog.records)  # it is not
    input_ids, expected = _mate_features(encoder)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(input_ids), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.encode_image(images), E.clip_load(folder)[0].encode_image(images),
                                   rtol=1e-5, atol=1e-5)
    # No torchvision next to this CPU torch: the model loads, the image transform raises when used.
    with pytest.raises(ImageTransformsUnavailableError, match="ClipImagePreprocess"):
        preprocess(None)
    file_model, _ = E.open_clip_load(folder / CLIP_STATE_DICT_FILE, model_name=tiny_open_clip_config)
    with torch.no_grad():
        torch.testing.assert_close(file_model.encode_text(input_ids), expected, rtol=1e-5, atol=1e-5)


def test_open_clip_load_text_only_and_wrong_model_names(tmp_path, exported, tiny_open_clip_config, monkeypatch):
    torch.manual_seed(7)
    encoder = OpenCLIPTextEncoder.from_config(TEXT_CFG, embed_dim=EMBED_DIM, quick_gelu=True).eval()
    _train_rows(encoder)
    folder = export_text_encoder(encoder, tmp_path / "tower")
    model, preprocess = E.open_clip_load(folder, model_name=tiny_open_clip_config)
    input_ids, expected = _mate_features(encoder)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(input_ids), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(E.TextOnlyExportError):
        model.encode_image(torch.zeros(1, 3, 32, 32))
    with pytest.raises(E.TextOnlyExportError):
        preprocess(None)

    with pytest.raises(ValueError, match="no model config 'ViT-Tiny-Absent'"):
        E.open_clip_load(exported[1], model_name="ViT-Tiny-Absent")
    with pytest.raises(ValueError, match=r"1 attention heads, open_clip's 'ViT-B-32' has 8"):
        E.open_clip_load(exported[1])  # the default ViT-B-32 is not this tiny CLIP
    wide = {"embed_dim": EMBED_DIM, "quick_gelu": True, "vision_cfg": dict(VIT_CFG),
            "text_cfg": dict(TEXT_CFG, width=128, heads=1)}
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "mate-tiny-wide", wide)
    with pytest.raises(ValueError, match=r"does not fit open_clip's 'mate-tiny-wide' \(pass the model_name"):
        E.open_clip_load(exported[1], model_name="mate-tiny-wide")


# ---------------------------------------------------------------------------------------------
# Image preprocessing without torchvision
# ---------------------------------------------------------------------------------------------


def test_clip_image_preprocess_resizes_the_short_side_and_crops_the_centre():
    from PIL import Image

    gradient = torch.arange(48 * 64 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(48, 64, 3)
    image = Image.frombytes("RGB", (64, 48), bytes(gradient.flatten().tolist()))
    preprocess = E.ClipImagePreprocess(32)
    pixels = preprocess(image)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    # By hand: short side 48 -> 32, long side int(32 * 64 / 48) = 42, crop 5 pixels off the left.
    by_hand = image.resize((42, 32), Image.BICUBIC).crop((5, 0, 37, 32))
    expected = torch.tensor(list(by_hand.tobytes()), dtype=torch.float32).view(32, 32, 3).permute(2, 0, 1) / 255
    mean, std = torch.tensor(E.CLIP_IMAGE_MEAN).view(3, 1, 1), torch.tensor(E.CLIP_IMAGE_STD).view(3, 1, 1)
    torch.testing.assert_close(pixels, (expected - mean) / std)
    grey = preprocess(Image.new("L", (32, 32), 128))  # already the size; converted to RGB
    torch.testing.assert_close(grey, ((torch.full((3, 32, 32), 128 / 255)) - mean) / std)
    with pytest.raises(TypeError, match="PIL image"):
        preprocess(torch.zeros(3, 32, 32))


# ---------------------------------------------------------------------------------------------
# Hugging Face exports for older transformers: pytorch_model.bin
# ---------------------------------------------------------------------------------------------


def test_legacy_bin_holds_the_safetensors_weights(tmp_path, tiny_hf_encoder_dir):
    from safetensors.torch import load_file

    encoder = build_text_encoder(f"hf:{tiny_hf_encoder_dir}")
    _train_rows(encoder)
    folder = export_text_encoder(encoder, tmp_path / "export", legacy_bin=True)
    manifest = json.loads((folder / EXPORT_MANIFEST).read_text())
    assert manifest["legacy_files"] == ["pytorch_model.bin", "vocab.txt"]
    safetensors = load_file(folder / "model.safetensors")
    legacy = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert legacy.keys() == safetensors.keys()
    assert all(legacy[k].dtype == v.dtype and torch.equal(legacy[k], v) for k, v in safetensors.items())
    # transformers reads the .bin alone (the safetensors file removed, so nothing else can be read)
    only_bin = tmp_path / "only_bin"
    shutil.copytree(folder, only_bin)
    (only_bin / "model.safetensors").unlink()
    model = transformers.AutoModel.from_pretrained(only_bin, use_safetensors=False)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in safetensors.items())
    batch = encoder.tokenize(CAPTIONS)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).float()
        torch.testing.assert_close((hidden * weights).sum(1) / weights.sum(1), encoder(**batch), rtol=1e-5, atol=1e-5)
    # vocab.txt: the WordPiece vocabulary, one token a line in id order (what slow tokenizers read)
    vocab = encoder.tokenizer.get_vocab()
    assert (folder / "vocab.txt").read_text().splitlines() == sorted(vocab, key=vocab.get)


def test_legacy_bin_writes_bpe_vocabulary_files_for_a_clip_tokenizer(tmp_path):
    """A transformers CLIP text model (an hf: CLIP run): vocab.json + merges.txt, CLIP's real BPE."""
    simple = open_clip.tokenizer.SimpleTokenizer()
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    tokenizer = transformers.CLIPTokenizer(
        vocab={renamed.get(token, token): index for token, index in simple.encoder.items()},
        merges=[tuple(pair) for pair in sorted(simple.bpe_ranks, key=simple.bpe_ranks.get)])
    torch.manual_seed(9)
    config = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=77,
                                         bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    encoder = HFTextEncoder(transformers.CLIPTextModel(config), tokenizer)
    folder = export_text_encoder(encoder, tmp_path / "hf_clip", legacy_bin=True)
    assert json.loads((folder / EXPORT_MANIFEST).read_text())["legacy_files"] == \
        ["pytorch_model.bin", "vocab.json", "merges.txt"]
    assert json.loads((folder / "vocab.json").read_text()) == tokenizer.get_vocab()
    assert len((folder / "merges.txt").read_text().splitlines()) >= len(simple.bpe_ranks)
    model = transformers.CLIPTextModel.from_pretrained(folder, use_safetensors=False)
    batch = encoder.tokenize(CAPTIONS)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).pooler_output, encoder(**batch))


def test_legacy_bin_is_refused_for_clip_exports(exported, tmp_path):
    with pytest.raises(ValueError, match="legacy_bin.*Hugging Face exports.*'clip' export"):
        export_text_encoder(exported[0], tmp_path / "clip", legacy_bin=True)
    assert not (tmp_path / "clip").exists()


# ---------------------------------------------------------------------------------------------
# python -m mate.export
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tiny_synthetic_dataset, tiny_hf_encoder_dir, tmp_path_factory):
    """A finished run without its export (--no-export), in seconds: 4 training motions, 1 step a stage."""
    from mate import train

    data = tmp_path_factory.mktemp("exportdata")
    for name in ("new_joint_vecs", "texts", "Mean.npy", "Std.npy", "segments.json", "test.txt"):
        (data / name).symlink_to(tiny_synthetic_dataset / name)
    train_ids = (tiny_synthetic_dataset / "train.txt").read_text().split()[:4]
    (data / "train.txt").write_text("\n".join(train_ids) + "\n")
    out = tmp_path_factory.mktemp("exportrun")
    train.main(["--data", str(data), "--encoder", f"hf:{tiny_hf_encoder_dir}", "--out", str(out),
                "--stage0-epochs", "1", "--epochs", "1", "--batch-size", "8", "--max-steps", "1", "--no-export",
                "--lr-word", "0.05"])
    return out


def test_cli_rewrites_the_run_export_with_pytorch_model_bin(finished_run, tiny_hf_encoder_dir, capsys):
    from safetensors.torch import load_file

    from mate.rundir import load_stage_model

    assert not (finished_run / "encoder").exists()
    written = E.main([str(finished_run), "--pytorch-model-bin"])
    assert written == finished_run / "encoder"
    assert {"model.safetensors", "pytorch_model.bin", "vocab.txt", EXPORT_MANIFEST} <= {p.name for p in written.iterdir()}
    assert capsys.readouterr().out.startswith(f"wrote {written}: ")
    trained = load_stage_model(finished_run, stage=1).text_encoder.word_embeddings.weight
    original = build_text_encoder(f"hf:{tiny_hf_encoder_dir}").word_embeddings.weight
    key = "embeddings.word_embeddings.weight"
    exported_table = torch.load(written / "pytorch_model.bin", weights_only=True)[key]
    assert torch.equal(exported_table, trained) and not torch.equal(exported_table, original)
    assert torch.equal(load_file(written / "model.safetensors")[key], exported_table)
    E.main([str(finished_run)])  # RUN/encoder is the run's own: replaced without --overwrite
    assert not (written / "pytorch_model.bin").exists()


def test_cli_mistakes_are_one_error_line(finished_run, tmp_path):
    def error_of(argv) -> str:
        with pytest.raises(SystemExit) as caught:
            E.main(argv)
        message = str(caught.value.code)
        assert message.startswith("error: ") and "\n" not in message
        return message

    assert "run.json" in error_of([str(tmp_path)])
    taken = tmp_path / "taken"
    taken.mkdir()
    assert "exists: pass --overwrite" in error_of([str(finished_run), "--out", str(taken)])
    assert "unrecognized arguments: --bin" in error_of([str(finished_run), "--bin"])
    assert "the following arguments are required: run" in error_of([])
    E.main([str(finished_run), "--out", str(taken), "--overwrite"])
    assert (taken / "model.safetensors").is_file()

    # As a command: exit status 1, one line on stderr, no traceback.
    result = subprocess.run([sys.executable, "-m", "mate.export", str(tmp_path / "absent")], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()][-1].startswith("error: ")
    assert len([line for line in result.stderr.splitlines() if line.startswith("error: ")]) == 1


def test_cli_refuses_pytorch_model_bin_for_a_clip_run(monkeypatch, tmp_path, exported):
    """A clip run's export is a state dict already: the flag is refused before anything is written."""
    import mate.rundir

    monkeypatch.setattr(mate.rundir, "check_run_dir", lambda root, stages: None)
    monkeypatch.setattr(mate.rundir, "load_stage_model",
                        lambda root, stage: types.SimpleNamespace(text_encoder=exported[0]))
    with pytest.raises(SystemExit, match=r"^error: --pytorch-model-bin applies to Hugging Face exports.*'clip'"):
        E.main([str(tmp_path), "--out", str(tmp_path / "out"), "--pytorch-model-bin"])
    assert not (tmp_path / "out").exists()
