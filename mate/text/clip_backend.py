"""CLIP's text tower through open_clip: the paper's default text encoder (OpenAI ViT-B/32).

The sentence feature f^t is CLIP's: the final-LayerNorm state at the end-of-text (EOT) token,
through the text projection (``output_dim`` = CLIP's embed_dim, 512 for ViT-B/32). Only the token
embedding table ``token_embedding`` [49408, 512] trains; the positional embedding, the 12 causal
transformer blocks, ``ln_final`` and ``text_projection`` are frozen.

Weights come from the user's machine only (MATE never downloads them):

* ``OpenCLIPTextEncoder.from_cache("ViT-B-32", "openai")``: the file open_clip or OpenAI's ``clip``
  package already downloaded (the Hugging Face cache of ``timm/vit_base_patch32_clip_224.openai``,
  or ``~/.cache/clip/ViT-B-32.pt``);
* ``OpenCLIPTextEncoder.from_checkpoint(path)``: a local checkpoint: OpenAI's TorchScript archive
  (``ViT-B-32.pt``), an open_clip checkpoint (``.pt``/``.bin``, optionally under ``"state_dict"``
  with ``module.`` prefixes), or ``.safetensors``.

Exports (`OpenCLIPTextEncoder._write_export`) are a state dict in the OpenAI CLIP key layout, which
open_clip's ``CLIP`` class shares key for key (``token_embedding.weight``, ``positional_embedding``,
``transformer.resblocks.*``, ``ln_final.*``, ``text_projection``, ``visual.*``, ``logit_scale``).
When the encoder came from a full CLIP checkpoint, the export is that full checkpoint with only
``token_embedding.weight`` replaced, so it loads into ``clip.load("ViT-B/32")``'s model in
MoMask/MDM as is.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from mate.text.encoder_base import (ChecksumMismatchError, MissingWeightsError, TextEncoder, check_text_list,
                                    sha256_of_file)
from mate.text.torchvision_compat import import_open_clip

__all__ = ["OpenCLIPTextEncoder", "CLIP_STATE_DICT_FILE", "read_clip_checkpoint", "infer_clip_text_config",
           "find_cached_clip_weights"]

# The export's weights file (OpenAI CLIP layout == open_clip CLIP layout).
CLIP_STATE_DICT_FILE = "clip_state_dict.pt"
# Top-level names of the text tower in a CLIP-layout state dict (the rest is visual.* / logit_*).
_TEXT_TOWER_KEYS = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
# Entries of OpenAI's TorchScript state dict that are model metadata, not weights: clip.model.CLIP's
# own state_dict() has none of them, so a strict load_state_dict would reject them.
_TORCHSCRIPT_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Text-tower options that the SimpleTokenizer-based OpenAI-style tower here does not cover.
_UNSUPPORTED_TEXT_CFG = {"hf_model_name": None, "hf_tokenizer_name": None, "embed_cls": False}


@dataclass(frozen=True)
class SourceCheckpoint:
    """The full checkpoint an encoder was loaded from, re-read at export time (so the visual tower
    is never held in memory) and checked against the SHA-256 it had at load time."""

    path: str
    sha256: str
    text_prefix: str  # "" (OpenAI / open_clip CLIP layout) or "text." (open_clip CustomTextCLIP)


@lru_cache(maxsize=4)
def _simple_tokenizer(context_length: int):
    """open_clip's SimpleTokenizer (CLIP's BPE; its vocabulary ships inside open_clip: offline)."""
    return import_open_clip().tokenizer.SimpleTokenizer(context_length=context_length)


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def read_clip_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a CLIP checkpoint file, tensors as stored (an OpenAI archive is float16).

    Accepts OpenAI's TorchScript archive, ``torch.save`` files (a state dict, or a training
    checkpoint holding it under ``"state_dict"``; ``module.`` prefixes removed) and ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"CLIP checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if _is_torchscript_archive(path):
        # OpenAI's archives exist only as TorchScript; torch.jit.load is deprecated, not replaced.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a CLIP state dict")
    if loaded and all(key.startswith("module.") for key in loaded):  # saved from DistributedDataParallel
        loaded = {key[len("module."):]: value for key, value in loaded.items()}
    return dict(loaded)


def _text_prefix(state_dict: Mapping[str, Any], path: str) -> str:
    for prefix in ("", "text."):
        if f"{prefix}token_embedding.weight" in state_dict:
            return prefix
    sample = ", ".join(list(state_dict)[:5])
    raise ValueError(
        f"{path} has no CLIP text tower: expected 'token_embedding.weight' (OpenAI / open_clip CLIP layout) "
        f"or 'text.token_embedding.weight' (open_clip CustomTextCLIP layout); its keys start with: {sample}")


def _text_tower_state(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    text_state = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if prefix or name.split(".", 1)[0] in _TEXT_TOWER_KEYS:
            text_state[name] = value
    return text_state


def infer_clip_text_config(text_state: Mapping[str, torch.Tensor]) -> tuple[dict, int]:
    """(text_cfg, embed_dim) of a CLIP text tower from its weights, by the rules of OpenAI's
    ``clip.model.build_model``: widths from the tensors, layers by counting blocks, 64-wide heads."""
    vocab_size, width = text_state["token_embedding.weight"].shape
    context_length = text_state["positional_embedding"].shape[0]
    block_indices = {int(match.group(1)) for key in text_state
                     if (match := re.match(r"transformer\.resblocks\.(\d+)\.", key))}
    projection = text_state.get("text_projection", text_state.get("text_projection.weight"))
    if projection is None:
        raise ValueError("the CLIP text tower has no text_projection")
    proj_bias = "text_projection.bias" in text_state
    embed_dim = projection.shape[0] if proj_bias else projection.shape[1]  # Linear is [out, in]
    hidden = text_state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    text_cfg = {
        "context_length": int(context_length),
        "vocab_size": int(vocab_size),
        "width": int(width),
        "heads": int(width) // 64,
        "layers": len(block_indices),
        "mlp_ratio": hidden / width,
        "proj_bias": proj_bias,
    }
    if "transformer.resblocks.0.ls_1.gamma" in text_state:
        text_cfg["ls_init_value"] = 1.0  # layer scale present; its value comes from the weights
    return text_cfg, int(embed_dim)


def find_cached_clip_weights(model_name: str = "ViT-B-32", pretrained: str = "openai",
                             cache_dir: str | os.PathLike | None = None) -> tuple[Path | None, list[str]]:
    """Where open_clip (or OpenAI's ``clip`` package) already stored these pretrained weights.
    Looks, without any network access, in the Hugging Face cache (open_clip's ``hf_hub`` source)
    and in ``~/.cache/clip`` (open_clip's and OpenAI clip's download folder for URL sources).
    Returns (path or None, the places searched)."""
    open_clip = import_open_clip()
    config = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not config:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(f"open_clip has no pretrained weights {pretrained!r} for {model_name!r}; "
                         f"known tags for it: {tags or 'none (unknown model name)'}")
    searched: list[str] = []
    hub_source = config.get("hf_hub", "")
    if hub_source:
        from huggingface_hub import try_to_load_from_cache

        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        if hub_source.endswith("/"):  # open_clip's convention: a repo with its default file names
            repo_id, filenames = hub_source.rstrip("/"), [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        else:
            repo_id, filename = os.path.split(hub_source)
            filenames = [filename]
        for name in filenames:
            searched.append(f"Hugging Face cache: {repo_id}/{name}")
            cached = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(cached, str) and Path(cached).is_file():
                return Path(cached), searched
    url = config.get("url", "")
    if url:
        folders = [Path(cache_dir)] if cache_dir else []
        folders.append(Path(os.path.expanduser("~/.cache/clip")))
        for folder in folders:
            candidate = folder / os.path.basename(url)
            searched.append(str(candidate))
            if candidate.is_file():
                return candidate, searched
    return None, searched


class OpenCLIPTextEncoder(TextEncoder):
    """CLIP's text tower (open_clip ``TextTransformer``) as a MATE text encoder; only
    ``token_embedding`` trains. Build it with `from_cache`, `from_checkpoint` or `from_config`.

    Args:
        text_cfg: open_clip ``CLIPTextCfg`` fields (dict); the tower is OpenAI-style (causal
            attention, EOT pooling, CLIP's BPE tokenizer with ``vocab_size`` 49408).
        embed_dim: width of the projected sentence feature (``output_dim``).
        quick_gelu: OpenAI's weights use QuickGELU; open_clip's own (LAION) ViT-B-32 use GELU.
        source_checkpoint: the full checkpoint to re-read at export time (None: export the tower).
    """

    backend = "clip"

    def __init__(self, text_cfg: Mapping[str, Any], embed_dim: int, quick_gelu: bool,
                 source_checkpoint: SourceCheckpoint | None = None) -> None:
        super().__init__()
        open_clip = import_open_clip()
        text_cfg = dict(text_cfg)
        for field, default in _UNSUPPORTED_TEXT_CFG.items():
            if text_cfg.get(field, default) != default:
                raise ValueError(f"CLIP text towers with {field}={text_cfg[field]!r} are not supported by the "
                                 "'clip' backend (use 'hf:' for Hugging Face text towers)")
        # Normalised through CLIPTextCfg so that exports record every field the tower was built with.
        self.text_cfg = dataclasses.asdict(open_clip.CLIPTextCfg(**text_cfg))
        self.embed_dim_out = int(embed_dim)
        self.quick_gelu = bool(quick_gelu)
        self.source_checkpoint = source_checkpoint
        self.text_tower = open_clip.model._build_text_tower(self.embed_dim_out, self.text_cfg,
                                                            quick_gelu=self.quick_gelu)
        self.tokenizer = _simple_tokenizer(self.text_cfg["context_length"])
        if self.tokenizer.vocab_size != self.text_cfg["vocab_size"]:
            raise ValueError(f"CLIP's tokenizer has {self.tokenizer.vocab_size} tokens but text_cfg.vocab_size is "
                             f"{self.text_cfg['vocab_size']}")
        self.eot_token_id = int(self.tokenizer.eot_token_id)
        self._freeze_all_but_word_embeddings()

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_config(cls, text_cfg: Mapping[str, Any] | None = None, embed_dim: int = 512, quick_gelu: bool = False,
                    model_name: str | None = None) -> "OpenCLIPTextEncoder":
        """A randomly initialised tower: from ``model_name``'s open_clip config (e.g. "ViT-B-32"),
        with ``text_cfg`` fields overriding it, or from ``text_cfg`` alone."""
        if model_name is not None:
            model_cfg = cls._model_config(model_name)
            text_cfg = {**model_cfg["text_cfg"], **(text_cfg or {})}
            embed_dim = model_cfg["embed_dim"]
            quick_gelu = quick_gelu or model_cfg.get("quick_gelu", False)
        encoder = cls(text_cfg or {}, embed_dim=embed_dim, quick_gelu=quick_gelu)
        encoder.source = f"clip-config:{model_name or 'custom'}"
        return encoder

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, model_name: str | None = None,
                        text_cfg: Mapping[str, Any] | None = None, quick_gelu: bool = True) -> "OpenCLIPTextEncoder":
        """CLIP's text tower from a local checkpoint (see `read_clip_checkpoint` for formats).

        The tower's shape comes from ``model_name``'s open_clip config when given, else from the
        weights (`infer_clip_text_config`); ``text_cfg`` fields override either. ``quick_gelu``
        defaults to True: OpenAI's CLIP, the text encoder of MoMask and MDM, uses QuickGELU."""
        path = Path(path).expanduser().absolute()
        if not path.is_file():
            raise MissingWeightsError(
                f"CLIP checkpoint {path} does not exist. Pass the file that `clip.load('ViT-B/32')` downloaded "
                "(~/.cache/clip/ViT-B-32.pt) or an open_clip checkpoint (.pt/.bin/.safetensors)")
        sha256 = sha256_of_file(path)
        state = read_clip_checkpoint(path)
        prefix = _text_prefix(state, str(path))
        text_state = _text_tower_state(state, prefix)
        is_full_model = any(key.startswith("visual.") for key in state)
        del state  # the visual tower is re-read at export time, not kept
        if model_name is not None:
            model_cfg = cls._model_config(model_name)
            base_cfg, embed_dim = model_cfg["text_cfg"], model_cfg["embed_dim"]
        else:
            base_cfg, embed_dim = infer_clip_text_config(text_state)
        source = SourceCheckpoint(str(path), sha256, prefix) if is_full_model else None
        encoder = cls({**base_cfg, **(text_cfg or {})}, embed_dim=embed_dim, quick_gelu=quick_gelu,
                      source_checkpoint=source)
        encoder._load_text_state(text_state, str(path))
        encoder.source = f"clip:{path}"
        return encoder

    @classmethod
    def from_cache(cls, model_name: str = "ViT-B-32", pretrained: str = "openai",
                   cache_dir: str | os.PathLike | None = None) -> "OpenCLIPTextEncoder":
        """open_clip's pretrained ``model_name``/``pretrained`` weights from the local caches only
        (`find_cached_clip_weights`). Raises MissingWeightsError explaining how to provide them."""
        path, searched = find_cached_clip_weights(model_name, pretrained, cache_dir)
        if path is None:
            raise MissingWeightsError(
                f"CLIP weights {model_name}/{pretrained} are not on this machine (MATE never downloads). Looked in: "
                + "; ".join(searched) + ". Provide them in one of these ways: pass a local checkpoint as "
                "'clip:/path/to/ViT-B-32.pt' (the file OpenAI's `clip.load(\"ViT-B/32\")` downloads to "
                "~/.cache/clip/); or fill open_clip's cache once on a machine with network with "
                f"`open_clip.create_model('{model_name}', pretrained='{pretrained}')` and copy the cache "
                "(HF_HOME) here.")
        open_clip = import_open_clip()
        # OpenAI's weights always use QuickGELU; open_clip < 3 does not say so in its pretrained cfg.
        quick_gelu = (pretrained == "openai" or model_name.endswith("-quickgelu")
                      or bool(open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu", False)))
        encoder = cls.from_checkpoint(path, model_name=model_name, quick_gelu=quick_gelu)
        encoder.source = f"clip:{model_name}@{pretrained}"
        return encoder

    @staticmethod
    def _model_config(model_name: str) -> dict:
        config = import_open_clip().get_model_config(model_name)
        if not config:
            raise ValueError(f"open_clip has no model config named {model_name!r} (e.g. 'ViT-B-32', 'ViT-L-14')")
        return config

    def _load_text_state(self, text_state: Mapping[str, torch.Tensor], where: str) -> None:
        try:
            self.text_tower.load_state_dict(text_state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"the CLIP text tower in {where} does not match text_cfg={self.text_cfg}, "
                             f"embed_dim={self.embed_dim_out}: {err}. Pass model_name=... (an open_clip "
                             "config) or text_cfg={...} (e.g. heads) to describe it") from err

    # -- the TextEncoder interface ---------------------------------------------------------------

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.text_tower.token_embedding

    @property
    def output_dim(self) -> int:
        return self.embed_dim_out

    @property
    def context_length(self) -> int:
        return int(self.text_cfg["context_length"])

    def _frozen_network(self) -> nn.Module:
        return self.text_tower

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """CLIP's convention: ``<start> tokens <end>`` padded with id 0 to the context length (77),
        truncated with the end token kept. Returns ``input_ids`` [B, 77] int64 and
        ``attention_mask`` [B, 77] int64, 1 up to and including the end token. (CLIP's attention is
        causal, so padding after the end token cannot reach the pooled feature; the mask is for
        callers. Note that id 0 is the token "!", so the mask cannot be ``input_ids != 0``.)"""
        input_ids = self.tokenizer(check_text_list(texts), context_length=self.context_length).long()
        eot_positions = (input_ids == self.eot_token_id).int().argmax(dim=1)
        positions = torch.arange(input_ids.shape[1])
        attention_mask = (positions[None, :] <= eot_positions[:, None]).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sentence features f^t [B, output_dim] float32: the EOT token's final state, projected.
        ``input_ids`` [B, context_length] int64 (from `tokenize`); ``attention_mask`` is not needed
        (causal attention; the EOT token is the highest id, found by argmax as in CLIP)."""
        if input_ids.dim() != 2 or input_ids.shape[1] != self.context_length:
            raise ValueError(f"CLIP input_ids must be [B, {self.context_length}] (its positional embedding is "
                             f"fixed), got {list(input_ids.shape)}")
        return self.text_tower(input_ids).float()

    def token_features(self, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(final states after ``ln_final`` [B, context_length, width] float32, mask [B, L] bool:
        the tokens up to and including EOT, the ones the causal EOT state reads)."""
        if input_ids.dim() != 2 or input_ids.shape[1] != self.context_length:
            raise ValueError(f"CLIP input_ids must be [B, {self.context_length}], got {list(input_ids.shape)}")
        before = self.text_tower.output_tokens
        self.text_tower.output_tokens = True
        try:
            _, tokens = self.text_tower(input_ids)
        finally:
            self.text_tower.output_tokens = before
        eot = input_ids.argmax(dim=-1, keepdim=True)
        mask = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] <= eot
        return tokens.float(), mask

    def word_token_ids(self, words: Sequence[str]) -> list[list[int]]:
        """Each word's BPE ids as inside a sentence (after CLIP's ftfy clean-up and lower-casing;
        the last piece carries the end-of-word mark "</w>"), without start/end tokens."""
        out = []
        for word in check_text_list(words, what="words"):
            ids = [int(i) for i in self.tokenizer.encode(word)]
            if not ids:
                raise ValueError(f"word {word!r} gives no CLIP token (CLIP's tokenizer drops it entirely)")
            out.append(ids)
        return out

    # -- export ----------------------------------------------------------------------------------

    def _write_export(self, directory: Path) -> dict:
        table = self.word_embeddings.weight.detach().to("cpu", torch.float32).clone()
        if self.source_checkpoint is not None:
            source = self.source_checkpoint
            if not Path(source.path).is_file():
                raise MissingWeightsError(f"the source checkpoint {source.path} this encoder was loaded from is gone: "
                                          "its visual tower cannot be written into the export")
            if sha256_of_file(source.path) != source.sha256:
                raise ChecksumMismatchError(f"the source checkpoint {source.path} changed since this encoder was "
                                            "loaded from it; reload the encoder before exporting")
            state = read_clip_checkpoint(source.path)
            for key in _TORCHSCRIPT_METADATA_KEYS:
                state.pop(key, None)
            prefix, contents = source.text_prefix, "full_model"
            # The trained table is written in float32 even when the source is float16 (OpenAI's
            # archive): lr 1e-5 updates would not survive a round trip through float16.
            state[f"{prefix}token_embedding.weight"] = table
        else:
            state = {key: value.detach().cpu().clone() for key, value in self.text_tower.state_dict().items()}
            state["token_embedding.weight"] = table
            prefix, contents = "", "text_tower"
        torch.save(state, directory / CLIP_STATE_DICT_FILE)
        return {
            "state_dict_file": CLIP_STATE_DICT_FILE,
            "contents": contents,
            "layout": "openai_clip" if prefix == "" else "open_clip_custom_text",
            "text_prefix": prefix,
            "text_cfg": self.text_cfg,
            "embed_dim": self.embed_dim_out,
            "quick_gelu": self.quick_gelu,
            "source_checkpoint_sha256": self.source_checkpoint.sha256 if self.source_checkpoint else None,
        }

    @classmethod
    def from_export(cls, directory: str | os.PathLike, manifest: Mapping[str, Any]) -> "OpenCLIPTextEncoder":
        """Reload an export written by `_write_export` (see `mate.text.encoders.load_text_encoder`)."""
        path = Path(directory).absolute() / manifest["state_dict_file"]
        prefix = manifest["text_prefix"]
        state = read_clip_checkpoint(path)
        text_state = _text_tower_state(state, prefix)
        del state
        source = (SourceCheckpoint(str(path), sha256_of_file(path), prefix)
                  if manifest["contents"] == "full_model" else None)
        encoder = cls(manifest["text_cfg"], embed_dim=manifest["embed_dim"], quick_gelu=manifest["quick_gelu"],
                      source_checkpoint=source)
        encoder._load_text_state(text_state, str(path))
        encoder.source = manifest.get("source", f"clip:{path}")
        return encoder
