"""Batches for training: per-sample randomness, collation (with the sampled word of each caption)
and the DataLoader over a :class:`mate.distributed.GlobalBatchSampler`.

Every random choice a batch makes (the crop window, the sampled word) is a function of
``(seed, epoch, index)``, so a sample is identical on any number of ranks or workers and after a
resume.
"""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mate import distributed as mdist

__all__ = ["CAPTION_LEMMA_WIDTH", "SeededSamples", "Collator", "make_loader", "to_device", "model_inputs", "DYNAMIC_DIMS",
           "mark_dynamic_dims"]


class SeededSamples(Dataset):
    """A dataset whose randomness is a function of ``(seed, epoch, index)``.

    Indexed by ``(epoch, index)`` (what :class:`mate.distributed.GlobalBatchSampler` yields) or by
    a plain index (epoch 0). Each item gets ``sample_seed`` (the :class:`Collator` draws its word
    from it) and, when ``crop_frames`` is set, a random window of at most that many frames (the
    base dataset must then return uncropped clips). The same sample is thus identical whichever
    rank or DataLoader worker loads it, and after a resume. With ``subclip_probability`` > 0 an
    item is, with that probability, replaced by a random sub-clip of its window (at least
    ``min_subclip_frames`` long, uniform length and position) with the same caption: stage 0's
    augmentation for the segmentation cost model (``--subclip-crops``)."""

    def __init__(self, dataset, seed: int, crop_frames: int | None = None, subclip_probability: float = 0.0,
                 min_subclip_frames: int = 20):
        if not 0.0 <= subclip_probability <= 1.0:
            raise ValueError(f"subclip_probability must be in [0, 1], got {subclip_probability}")
        if min_subclip_frames < 1:
            raise ValueError(f"min_subclip_frames must be >= 1, got {min_subclip_frames}")
        self.dataset, self.seed, self.crop_frames = dataset, int(seed) % 2**63, crop_frames
        self.subclip_probability, self.min_subclip_frames = float(subclip_probability), int(min_subclip_frames)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.dataset[index]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(epoch), int(index)]))
        length = item["length"]
        if self.crop_frames is not None and length > self.crop_frames:
            item = _window(item, int(rng.integers(0, length - self.crop_frames + 1)), self.crop_frames)
        item["sample_seed"] = int(rng.integers(0, 2**63 - 1))
        if self.subclip_probability > 0 and rng.random() < self.subclip_probability \
                and item["length"] > self.min_subclip_frames:
            # A random sub-clip of the window, paired with the whole caption (TMR-style): the
            # motion encoder then also learns short clips, which the segmentation scores.
            length = int(rng.integers(self.min_subclip_frames, item["length"] + 1))
            item = _window(item, int(rng.integers(0, item["length"] - length + 1)), length)
        return item


def _window(item: dict, offset: int, length: int) -> dict:
    """A copy of ``item`` holding frames [offset, offset + length) of its motion, with its length
    and clip frames updated."""
    item = dict(item)
    item["motion"] = item["motion"][offset:offset + length]
    item["length"] = length
    item["start_frame"] = item["start_frame"] + offset
    item["end_frame"] = item["start_frame"] + length
    return item


#: Distinct vocabulary words per caption the batch can list (HumanML3D's longest caption has ~60 words).
CAPTION_LEMMA_WIDTH = 96


class Collator:
    """Pads motions, tokenises captions and, for stage 1, samples one word per caption with its
    prototype index and its sub-text's segment (in the cropped window's frames).

    The word is drawn from the item's ``sample_seed`` when it has one (:class:`SeededSamples`),
    else from the collator's own ``rng`` (seeded with ``seed``). Besides ``word_token_ids`` (lists)
    the batch holds the same ids as tensors, ``word_flat_ids`` and ``word_offsets`` (for
    ``embedding_bag``)."""

    def __init__(self, encoder, words: dict[str, list[tuple]] | None = None, seed: int = 0):
        self.encoder, self.words = encoder, words
        self.rng = random.Random(seed)
        self._token_ids: dict[str, list[int]] = {}

    def token_ids(self, word: str) -> list[int]:
        if word not in self._token_ids:
            self._token_ids[word] = self.encoder.word_token_ids([word])[0]
        return self._token_ids[word]

    def __call__(self, items: list[dict]) -> dict:
        from mate.data.dataset import collate_motion_text

        batch = collate_motion_text(items)
        batch.update(self.encoder.tokenize(batch["caption"]))
        if self.words is not None:
            ids, target, start, end = [], [], [], []
            for item in items:
                rng = random.Random(item["sample_seed"]) if "sample_seed" in item else self.rng
                word, vocab_index, s, e = rng.choice(self.words[item["key"]])
                offset, length = item["start_frame"] - item["clip_start_frame"], item["length"]
                s, e = min(max(s - offset, 0), length), min(max(e - offset, 0), length)
                if e - s < 1:  # the crop cut the segment away: fall back to the whole window
                    s, e = 0, length
                ids.append(self.token_ids(word))
                target.append(vocab_index)
                start.append(s)
                end.append(e)
            batch["word_token_ids"] = ids
            batch["word_flat_ids"] = torch.tensor([i for word_ids in ids for i in word_ids], dtype=torch.int64)
            batch["word_offsets"] = torch.tensor([0] + [len(w) for w in ids[:-1]], dtype=torch.int64).cumsum(0)
            batch["word_target"] = torch.tensor(target, dtype=torch.int64)
            batch["segment_start"] = torch.tensor(start, dtype=torch.float32)
            batch["segment_end"] = torch.tensor(end, dtype=torch.float32)
            batch["caption_lemmas"] = self.caption_lemmas(items)
        return batch

    def caption_lemmas(self, items: list[dict]) -> torch.Tensor:
        """[B, CAPTION_LEMMA_WIDTH] int64: the prototype indices of each caption's words, padded
        with -1 (a fixed width, so ranks can gather them; L_cross's ``exclude_lemma`` rule)."""
        out = torch.full((len(items), CAPTION_LEMMA_WIDTH), -1, dtype=torch.int64)
        for row, item in enumerate(items):
            lemmas = sorted({vocab_index for _, vocab_index, _, _ in self.words[item["key"]]})
            if len(lemmas) > CAPTION_LEMMA_WIDTH:
                raise ValueError(f"caption {item['key']!r} has {len(lemmas)} distinct vocabulary words, more than "
                                 f"CAPTION_LEMMA_WIDTH = {CAPTION_LEMMA_WIDTH}")
            out[row, :len(lemmas)] = torch.tensor(lemmas, dtype=torch.int64)
        return out


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def make_loader(dataset, collate, batch_size: int, seed: int, num_workers: int = 0, shuffle: bool = True,
                crop_frames: int | None = None, world_size: int = 1, rank: int = 0,
                drop_last: bool = True, subclip_probability: float = 0.0, min_subclip_frames: int = 20) -> DataLoader:
    """A DataLoader over :class:`SeededSamples` with a :class:`mate.distributed.GlobalBatchSampler`
    (``batch_size`` is the global batch; this rank gets its slice). Its generator is its own, so
    iterating never touches the global torch RNG."""
    sampler = mdist.GlobalBatchSampler(len(dataset), batch_size, world_size=world_size, rank=rank, seed=seed,
                                       shuffle=shuffle, drop_last=drop_last)
    g = torch.Generator()
    g.manual_seed(seed % 2**63)
    samples = SeededSamples(dataset, seed, crop_frames, subclip_probability, min_subclip_frames)
    return DataLoader(samples, batch_sampler=sampler, collate_fn=collate,
                      num_workers=num_workers, generator=g)


def model_inputs(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on ``device`` (no Python lists: what a compiled forward should see)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}


# Sizes that change from batch to batch: compiled once as dynamic rather than recompiled.
DYNAMIC_DIMS = {"motion": (1,), "mask": (1,), "input_ids": (1,), "attention_mask": (1,), "word_flat_ids": (0,)}


def mark_dynamic_dims(inputs: dict) -> None:
    for name, dims in DYNAMIC_DIMS.items():
        if name in inputs:
            for dim in dims:
                torch._dynamo.maybe_mark_dynamic(inputs[name], dim)
