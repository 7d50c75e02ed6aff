"""Owns the generator's text side: building the frozen text encoder from a source (an encoder spec,
a MATE export folder or a MATE run directory), its fingerprint, checking a prompt, and encoding
captions once into an on-disk cache keyed by the encoder's fingerprint and the caption list.

Sources (:func:`build_encoder`):

==============================  ===============================================================
``minilm``, ``hf:...``, ``clip``  an encoder spec (``mate.text.encoders.build_text_encoder``)
a MATE export folder            one holding ``mate_text_encoder.json`` (``load_text_encoder``)
a MATE run directory            one holding ``run.json``: stage 1's (MATE's) text encoder
==============================  ===============================================================

The cache (:func:`encode_captions_cached`) stores, per distinct caption, the pooled feature
(float32 [N, E]) and optionally the token features, packed without padding as float16
[sum of lengths, W] with int64 offsets [N + 1] (HumanML3D's ~87k captions stay near 1 GB with a
512-wide encoder instead of ~14 GB padded in float32).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from mate.atomic import atomic_torch_save
from mate.rundir import fingerprint

__all__ = ["MAX_PROMPT_CHARS", "TextFeatures", "build_encoder", "describe_source", "encoder_fingerprint",
           "check_prompts", "encode_texts", "encode_captions_cached"]

log = logging.getLogger("mate.generate")

#: A prompt longer than this many characters is refused outright (before tokenising).
MAX_PROMPT_CHARS = 1000


def describe_source(source: str | Path) -> tuple[str, str]:
    """(kind, source as stored in a run manifest): ``"mate-run"`` / ``"export"`` (absolute paths)
    or ``"spec"``. Raises ValueError for a folder that is neither a MATE run nor an export."""
    from mate.text.encoder_base import EXPORT_MANIFEST

    text = str(source)
    path = Path(text)
    if ":" not in text.split("/")[0] and path.is_dir():
        if (path / "run.json").is_file():
            return "mate-run", str(path.resolve())
        if (path / EXPORT_MANIFEST).is_file():
            return "export", str(path.resolve())
        raise ValueError(f"{path} is a folder but neither a MATE run directory (no run.json) nor a MATE encoder "
                         f"export (no {EXPORT_MANIFEST}); for a plain Hugging Face folder pass hf:{path}")
    if not text.strip():
        raise ValueError("the text encoder is empty: pass a spec (minilm, hf:NAME, clip), an export folder or a MATE run")
    if ":" not in text.split("/")[0] and ("/" in text or text.startswith(".")):
        raise FileNotFoundError(f"text encoder {text}: no such folder (expected a MATE run directory or a MATE "
                                f"encoder export; specs are minilm, hf:NAME_OR_PATH, clip)")
    return "spec", text


def build_encoder(source: str | Path, device="cpu"):
    """The frozen text encoder named by ``source`` (module docstring), in eval mode on ``device``,
    with gradients off. Raises FileNotFoundError / ValueError naming the problem."""
    kind, where = describe_source(source)
    if kind == "mate-run":
        from mate.rundir import load_stage_model

        encoder = load_stage_model(where, 1).text_encoder
    elif kind == "export":
        from mate.text.encoders import load_text_encoder

        encoder = load_text_encoder(where)
    else:
        from mate.text.encoders import build_text_encoder

        encoder = build_text_encoder(where)
    encoder.requires_grad_(False)
    return encoder.to(device).eval()


def encoder_fingerprint(encoder) -> str:
    """16 hex digits identifying an encoder's weights: SHA-256 over its class and every entry of
    its state dict (name, dtype, shape, bytes). Two MATE runs of one base encoder differ here
    (their word tables differ); a rebuilt identical encoder matches."""
    digest = hashlib.sha256(type(encoder).__name__.encode())
    for name, value in sorted(encoder.state_dict().items()):
        if not isinstance(value, torch.Tensor):
            continue
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def _token_limit(encoder) -> int | None:
    for name in ("max_length", "context_length"):
        value = getattr(encoder, name, None)
        if isinstance(value, int) and 0 < value < 100_000:
            return value
    return None


def check_prompts(encoder, texts: Sequence[str]) -> list[str]:
    """``texts`` as a list of non-empty prompts that fit the encoder's context, else ValueError
    naming the offending prompt (empty, over :data:`MAX_PROMPT_CHARS` characters, or truncated by
    the tokenizer)."""
    from mate.text.encoder_base import check_text_list

    texts = check_text_list(texts, "prompts")
    limit = _token_limit(encoder)
    for i, text in enumerate(texts):
        if not text.strip():
            raise ValueError(f"prompt {i} is empty: describe the motion, e.g. 'a person walks forward'")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"prompt {i} is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}")
        if limit is not None:
            used = int(encoder.tokenize([text])["attention_mask"].sum())
            if used >= limit:
                raise ValueError(f"prompt {i} is too long for the text encoder: it fills all {limit} tokens of "
                                 f"its context and would be cut; shorten it")
    return texts


@dataclass
class TextFeatures:
    """Frozen-encoder features of N texts: ``pooled`` float32 [N, E]; optionally the token
    features packed as ``token_values`` float16 [S, W] with ``token_offsets`` int64 [N + 1]
    (text i's tokens are rows offsets[i]:offsets[i+1], the encoder's readable tokens only)."""

    pooled: torch.Tensor
    token_values: torch.Tensor | None = None
    token_offsets: torch.Tensor | None = None

    @property
    def has_tokens(self) -> bool:
        return self.token_values is not None

    def batch(self, rows: Sequence[int] | torch.Tensor):
        """(pooled float32 [B, E], tokens float32 [B, L, W] or None, mask bool [B, L] or None)
        for the texts ``rows`` (L: the longest of them)."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        pooled = self.pooled[rows]
        if not self.has_tokens:
            return pooled, None, None
        starts, ends = self.token_offsets[rows], self.token_offsets[rows + 1]
        width = int((ends - starts).max())
        tokens = pooled.new_zeros(len(rows), width, self.token_values.shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for b, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            tokens[b, : e - s] = self.token_values[s:e].float()
            mask[b, : e - s] = True
        return pooled, tokens, mask


@torch.no_grad()
def encode_texts(encoder, texts: Sequence[str], tokens: bool = False, batch: int = 256, progress: bool = False
                 ) -> TextFeatures:
    """Encode ``texts`` with the frozen ``encoder`` (on its device) into :class:`TextFeatures`
    (CPU tensors). ``tokens``: also keep the token features the encoder exposes."""
    from tqdm.auto import tqdm

    encoder.eval()
    device = next(encoder.parameters()).device
    pooled, values, lengths = [], [], []
    starts = range(0, len(texts), batch)
    for s in tqdm(starts, desc="encoding captions", unit="batch", disable=not progress):
        ids = encoder.tokenize(list(texts[s:s + batch]))
        input_ids, attention = ids["input_ids"].to(device), ids["attention_mask"].to(device)
        if tokens:
            p, t, m = encoder.sentence_and_token_features(input_ids, attention)
            for row, keep in zip(t.float().cpu(), m.bool().cpu()):
                values.append(row[keep].half())
                lengths.append(int(keep.sum()))
        else:
            p = encoder(input_ids, attention)
        pooled.append(p.float().cpu())
    out = TextFeatures(torch.cat(pooled))
    if tokens:
        out.token_values = torch.cat(values)
        out.token_offsets = F.pad(torch.tensor(lengths, dtype=torch.int64).cumsum(0), (1, 0))
    return out


def encode_captions_cached(encoder, captions: Sequence[str], cache_dir: str | Path, tokens: bool = False,
                           encoder_key: str | None = None, progress: bool = False) -> TextFeatures:
    """:func:`encode_texts` of ``captions``, read from ``cache_dir/text-<key>.pt`` when present,
    else computed and written atomically. The key is the fingerprint of the encoder's
    fingerprint (``encoder_key``, computed when None), the caption list and ``tokens``."""
    captions = list(captions)
    encoder_key = encoder_key or encoder_fingerprint(encoder)
    caption_hash = hashlib.sha256("\n".join(captions).encode()).hexdigest()
    key = fingerprint({"encoder": encoder_key, "captions": caption_hash, "count": len(captions), "tokens": bool(tokens)})
    path = Path(cache_dir) / f"text-{key}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.get("key") == key:
                log.info("text features: reusing %s", path)
                return TextFeatures(stored["pooled"], stored.get("token_values"), stored.get("token_offsets"))
        except Exception as err:  # a damaged cache file is recomputed, never trusted
            log.warning("text features: %s is unreadable (%s); recomputing", path, err)
    features = encode_texts(encoder, captions, tokens=tokens, progress=progress)
    atomic_torch_save({"key": key, "pooled": features.pooled, "token_values": features.token_values,
                       "token_offsets": features.token_offsets}, path)
    return features
