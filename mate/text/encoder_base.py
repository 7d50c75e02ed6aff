"""The text-encoder contract MATE trains through: only the word-embedding table WE learns.

MATE (docs/method.md, "Pipeline: stage 1") anchors motion words to movement by fine-tuning the
input word-embedding table WE of a pretrained text encoder and nothing else. Every other weight of
the encoder is frozen (``requires_grad=False``) yet stays differentiable: the sentence-level loss
L_sent reaches WE *through* the frozen transformer, while the word-level losses read WE(w) directly
(`TextEncoder.embed_words`, the mean of a word's token embeddings).

`TextEncoder` is the base class of every backend (Hugging Face models in `mate.text.hf_backend`,
open_clip's CLIP in `mate.text.clip_backend`); the public entry points are in `mate.text.encoders`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mate.atomic import atomic_directory as atomic_export_directory

__all__ = [
    "TextEncoder",
    "UnknownEncoderSpecError",
    "MissingWeightsError",
    "ChecksumMismatchError",
    "EXPORT_MANIFEST",
    "EXPORT_FORMAT_VERSION",
    "sha256_of_file",
    "atomic_export_directory",
    "write_manifest",
    "read_manifest",
    "untie_parameter",
    "check_text_list",
]

# Every export directory has this JSON file: how to reload it (`mate.text.encoders.load_text_encoder`).
EXPORT_MANIFEST = "mate_text_encoder.json"
EXPORT_FORMAT_VERSION = 1


class UnknownEncoderSpecError(ValueError):
    """The text-encoder spec string names no backend (see `mate.text.encoders.build_text_encoder`)."""


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are not on this machine; MATE never downloads them."""


class ChecksumMismatchError(RuntimeError):
    """A weights file does not have the SHA-256 it is pinned to."""


def sha256_of_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_text_list(texts: Sequence[str], what: str = "texts") -> list[str]:
    """``texts`` as a non-empty list of strings, or ValueError naming the problem."""
    if isinstance(texts, str):
        raise ValueError(f"expected a list of {what}, got a single string")
    texts = list(texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise ValueError(f"expected {what} as strings, got {bad[0]}")
    if not texts:
        raise ValueError(f"expected at least one of the {what}, got none")
    return texts


def untie_parameter(root: nn.Module, parameter: nn.Parameter, keep_in: nn.Module) -> list[str]:
    """Give every module of ``root`` that holds ``parameter`` (other than ``keep_in``) its own frozen
    copy, so that training ``parameter`` changes nothing else (e.g. an LM head tied to the input
    embeddings). Returns the qualified names that were untied."""
    untied = []
    for module_name, module in root.named_modules(remove_duplicate=False):
        if module is keep_in:
            continue
        for name, value in list(module._parameters.items()):
            if value is parameter:
                module._parameters[name] = nn.Parameter(parameter.detach().clone(), requires_grad=False)
                untied.append(f"{module_name}.{name}" if module_name else name)
    return untied


class TextEncoder(nn.Module):
    """A pretrained text encoder whose input word-embedding table WE is the only trainable tensor.

    Subclasses build the frozen network, then call `_freeze_all_but_word_embeddings`. They provide:

    * ``tokenize(texts) -> {"input_ids": [B, L] int64, "attention_mask": [B, L] int64}``
    * ``forward(input_ids, attention_mask) -> [B, output_dim] float32`` sentence features f^t
    * ``word_embeddings``: the ``nn.Embedding`` [V, E] table WE (position embeddings are not part of it)
    * ``word_token_ids(words) -> list[list[int]]``: each word's token ids, as inside a sentence
    * ``_write_export(directory) -> dict``: the backend's export files (manifest fields returned)

    The frozen network is always in eval mode (dropout off, even in ``.train()``), so a sentence
    feature is a deterministic function of WE.
    """

    backend: str = "abstract"

    def __init__(self) -> None:
        super().__init__()
        # Where the encoder came from (a spec string), written into exports.
        self.source: str = ""

    # -- the interface every backend implements ------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def token_features(self, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's last hidden states, before pooling: (features [B, L, W] float32, mask
        [B, L] bool, True on the tokens a sentence feature may read). What a downstream model that
        attends over the text's tokens (MMM, TMR) reads, where MoMask/MDM read `forward`'s pooled
        feature."""
        raise NotImplementedError(f"{type(self).__name__} does not expose token features")

    def sentence_and_token_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(``forward``'s sentence features, then ``token_features``' two outputs), in one pass of
        the network where the backend can (a mean-pooling encoder pools its own token features)."""
        return (self(input_ids, attention_mask), *self.token_features(input_ids, attention_mask))

    @property
    def word_embeddings(self) -> nn.Embedding:
        raise NotImplementedError

    @property
    def output_dim(self) -> int:
        """Width of the sentence feature returned by `forward` (MATE adds its own projection to D)."""
        raise NotImplementedError

    def word_token_ids(self, words: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def _frozen_network(self) -> nn.Module:
        """The module holding every weight (the table included); kept in eval mode."""
        raise NotImplementedError

    def _write_export(self, directory: Path) -> dict:
        raise NotImplementedError

    #: whether `_write_legacy_files` is implemented (Hugging Face backends only)
    legacy_bin_supported: bool = False

    def _write_legacy_files(self, directory: Path) -> list[str]:
        """Beside `_write_export`'s files, the ones older transformers versions load (names returned)."""
        raise NotImplementedError

    # -- shared behaviour ------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        """E, the width of a word embedding (a row of WE)."""
        return self.word_embeddings.embedding_dim

    @property
    def vocab_size(self) -> int:
        """V, the number of rows of WE."""
        return self.word_embeddings.num_embeddings

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentence features of raw texts: `tokenize` then `forward` on the table's device.
        Returns [B, output_dim] float32."""
        device = self.word_embeddings.weight.device
        batch = self.tokenize(texts)
        return self(batch["input_ids"].to(device), batch["attention_mask"].to(device))

    def embed_words(self, token_id_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        """WE(w) for each word: the mean of its token embeddings, read from the trainable table.

        ``token_id_lists``: W lists of token ids (from `word_token_ids`), each non-empty.
        Returns [W, E] in the table's dtype, differentiable with respect to WE."""
        table = self.word_embeddings.weight
        if len(token_id_lists) == 0:
            return table.new_zeros(0, table.shape[1])
        lengths = [len(ids) for ids in token_id_lists]
        if min(lengths) == 0:
            empty = lengths.index(0)
            raise ValueError(f"word {empty} has no token ids: every word needs at least one token")
        flat_ids = torch.tensor([int(i) for ids in token_id_lists for i in ids], dtype=torch.long,
                                device=table.device)
        if int(flat_ids.min()) < 0 or int(flat_ids.max()) >= table.shape[0]:
            raise ValueError(f"token ids must lie in [0, {table.shape[0]}), got "
                             f"[{int(flat_ids.min())}, {int(flat_ids.max())}]")
        offsets = torch.tensor([0] + lengths[:-1], dtype=torch.long, device=table.device).cumsum(0)
        # embedding_bag(mode="mean") = the per-word mean of the gathered rows, in one kernel.
        return F.embedding_bag(flat_ids, table, offsets, mode="mean")

    def trainable_parameter_report(self, vocab_token_ids: Iterable[Sequence[int]] | Iterable[int]) -> dict:
        """How many parameters MATE trains, counted two ways.

        ``vocab_token_ids``: the token ids of the training vocabulary (lists per word, or flat ids).
        Returns a dict of ints:

        * ``full_table``: V x E, every row of WE (what the optimizer holds);
        * ``touched_rows`` / ``touched_row_parameters``: the distinct token ids the vocabulary
          uses, and x E (the rows that can actually change from the word losses);
        * ``vocab_size`` (V), ``embedding_dim`` (E), ``frozen_parameters`` (every other encoder
          weight), ``trainable_parameters`` (all with requires_grad: must equal ``full_table``).
        """
        unique_ids: set[int] = set()
        for item in vocab_token_ids:
            if isinstance(item, torch.Tensor):
                unique_ids.update(int(i) for i in item.reshape(-1).tolist())
            elif isinstance(item, (list, tuple)):
                unique_ids.update(int(i) for i in item)
            else:  # a flat id
                unique_ids.add(int(item))
        table = self.word_embeddings.weight
        out_of_range = [i for i in unique_ids if not 0 <= i < table.shape[0]]
        if out_of_range:
            raise ValueError(f"token ids outside the table [0, {table.shape[0]}): {sorted(out_of_range)[:5]}")
        parameters = {id(p): p for p in self.parameters()}.values()
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        frozen = sum(p.numel() for p in parameters if not p.requires_grad)
        return {
            "vocab_size": table.shape[0],
            "embedding_dim": table.shape[1],
            "full_table": table.numel(),
            "touched_rows": len(unique_ids),
            "touched_row_parameters": len(unique_ids) * table.shape[1],
            "trainable_parameters": trainable,
            "frozen_parameters": frozen,
        }

    def train(self, mode: bool = True) -> "TextEncoder":
        super().train(mode)
        self._frozen_network().eval()  # frozen weights: no dropout noise in f^t or in WE's gradient
        return self

    def _freeze_all_but_word_embeddings(self) -> None:
        """requires_grad=False on every parameter except WE's weight; untie anything sharing it."""
        table_module = self.word_embeddings
        table = table_module.weight
        untied = untie_parameter(self, table, keep_in=table_module)
        if untied:
            # Recorded so that exports can say which tensors were tied to the table at load time.
            self.untied_from_word_embeddings = untied
        for parameter in self.parameters():
            parameter.requires_grad_(parameter is table)
        self.train(self.training)

    def export(self, out_dir: str | os.PathLike, overwrite: bool = False, legacy_bin: bool = False) -> Path:
        """Write this encoder to ``out_dir`` atomically (see `mate.text.encoders.export_text_encoder`).
        ``legacy_bin``: also the files older transformers versions read (`_write_legacy_files`);
        ValueError, before anything is written, for a backend whose export is not a transformers folder."""
        if legacy_bin and not self.legacy_bin_supported:
            raise ValueError(f"legacy_bin (pytorch_model.bin for older transformers) applies to Hugging Face "
                             f"exports ('minilm', 'hf:'); the {self.backend!r} export is not a transformers folder")
        with atomic_export_directory(out_dir, overwrite=overwrite) as staging:
            fields = self._write_export(staging)
            if legacy_bin:
                fields["legacy_files"] = self._write_legacy_files(staging)
            write_manifest(staging, {
                "backend": self.backend,
                "source": self.source,
                "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim,
                "output_dim": self.output_dim,
                **fields,
            })
        return Path(out_dir)


def write_manifest(directory: Path, fields: dict) -> None:
    from mate import __version__

    manifest = {"format": "mate-text-encoder", "format_version": EXPORT_FORMAT_VERSION,
                "mate_version": __version__, **fields}
    (Path(directory) / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """The export manifest of ``directory``, or None if it has none."""
    path = Path(directory) / EXPORT_MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); the export is damaged: export it again") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != "mate-text-encoder":
        raise ValueError(f"{path} is not a MATE text-encoder manifest")
    if manifest.get("format_version", 0) > EXPORT_FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {manifest['format_version']}; this MATE reads up "
                         f"to {EXPORT_FORMAT_VERSION}: upgrade mate-motion")
    return manifest


