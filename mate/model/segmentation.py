"""Segmentation costs from a trained retrieval model (paper, Eq. 1).

For a motion on the grid ``0 = f_0 < ... < f_G`` (``mate.segment.unit_grid``) and sub-texts
``t^0..t^{N-1}``::

    cost[n, a, b] = 1 - cos(E_t(t^n), E_m(m[f_a : f_b]))      for 0 <= a < b <= G

Each of the G(G+1)/2 clips is encoded once and shared by every caption of the motion; the optimum
over partitions comes from ``mate.segment.optimal_partition_batch``. ``subtext_cost_tables`` builds
the tables of many captions of many motions in one batched pass; ``segment_captions`` is the entry
point training and evaluation call.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["clip_features", "clip_features_batch", "partition_clips", "partition_costs", "segment_captions",
           "subtext_cost_tables"]


@torch.no_grad()
def clip_features_batch(motion_encoder, motions: Sequence[torch.Tensor], grids: Sequence[np.ndarray],
                        max_clips: int = 256) -> list[torch.Tensor]:
    """E_m of every grid clip of several motions, with no padding.

    Args:
        motion_encoder: returns (frames, sequence feature [B, D]) for (motion [B, T, F], lengths [B]).
        motions: M tensors [T_i, F] float32, normalised, on one device.
        grids: M int64 arrays [G_i + 1] of frame boundaries (``mate.segment.unit_grid``).
        max_clips: most clips in one encoder call (bounds the activations' memory).

    Returns:
        M tensors [G_i+1, G_i+1, D] float32; entry [a, b] (a < b) of the i-th is the feature of
        frames [grid[a], grid[b]) of motion i, other entries are zero.

    Why grouped by length: on the 0.5 s grid most clips share their length with many others (k
    units long), across motions too. Encoding equal-length clips together needs no padding and no
    mask, so the work is exactly the sum of the clip lengths; one call covers many motions, so
    the per-call overhead is shared (the padded chunks of one motion at a time cost ~1.5x more).
    """
    if len(motions) != len(grids):
        raise ValueError(f"got {len(motions)} motions but {len(grids)} grids")
    by_length: dict[int, list[tuple[int, int, int]]] = {}
    for i, (motion, grid) in enumerate(zip(motions, grids)):
        if motion.ndim != 2:
            raise ValueError(f"motions[{i}] must be [T, F], got {list(motion.shape)}")
        grid = np.asarray(grid)
        if grid.ndim != 1 or len(grid) < 2 or grid[0] != 0 or grid[-1] > motion.shape[0] or np.any(np.diff(grid) <= 0):
            raise ValueError(f"grids[{i}] must be increasing frame boundaries from 0 to at most "
                             f"{motion.shape[0]}, got {grid.tolist()}")
        G = len(grid) - 1
        for a in range(G):
            for b in range(a + 1, G + 1):
                by_length.setdefault(int(grid[b] - grid[a]), []).append((i, a, b))
    # One flat buffer holds every motion's [G+1, G+1, D] table: each encoder call's features go in
    # with one index_copy_ (not one tiny copy per clip, which costs a kernel launch each on a GPU).
    sizes = [len(g) ** 2 for g in grids]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    flat = None
    for length, clips in sorted(by_length.items()):
        for start in range(0, len(clips), max_clips):
            chunk = clips[start:start + max_clips]
            batch = torch.stack([motions[i][int(grids[i][a]):int(grids[i][a]) + length] for i, a, _ in chunk])
            _, features = motion_encoder(batch, torch.full((len(chunk),), length, device=batch.device))
            if flat is None:
                flat = features.new_zeros(int(offsets[-1]), features.shape[-1])
            rows = [int(offsets[i]) + a * len(grids[i]) + b for i, a, b in chunk]
            flat.index_copy_(0, torch.tensor(rows, device=flat.device), features)
    if flat is None:
        return []
    return [flat[int(offsets[i]):int(offsets[i + 1])].view(len(g), len(g), -1) for i, g in enumerate(grids)]


def clip_features(motion_encoder, motion: torch.Tensor, grid: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """E_m of every grid clip of one motion: ``clip_features_batch`` of one motion.

    motion [T, F] float32, grid int64 [G+1]; returns [G+1, G+1, D] float32 (zero where a >= b).
    ``batch_size``: most clips in one encoder call."""
    return clip_features_batch(motion_encoder, [motion], [grid], max_clips=batch_size)[0]


@torch.no_grad()
def subtext_cost_tables(model, motions: Sequence[torch.Tensor], grids: Sequence[np.ndarray],
                        requests: Sequence[tuple[int, Sequence[str]]], max_clips: int = 256,
                        max_texts: int = 512) -> list[np.ndarray]:
    """The Eq. 1 cost table of each (motion index, sub-texts) request, in one batched pass.

    Args:
        model: has ``motion_encoder``, ``text_encoder.tokenize`` and ``encode_text`` (MATEModel).
        motions, grids: as :func:`clip_features_batch` (on the model's device).
        requests: (i, [t^0..t^{N-1}]) pairs; i indexes ``motions``.
        max_clips, max_texts: most clips / sub-texts in one encoder call.

    Returns:
        float32 numpy [N, G_i+1, G_i+1] per request, in order (see :func:`partition_costs`).

    Every sub-text of every request is encoded in one text-encoder call (one call per caption
    costs ~2.5x more on a CPU), and only the motions some request needs are encoded.
    """
    needed = sorted({i for i, _ in requests})
    clips = dict(zip(needed, clip_features_batch(model.motion_encoder, [motions[i] for i in needed],
                                                 [grids[i] for i in needed], max_clips=max_clips)))
    flat = [t for _, parts in requests for t in parts]
    if not flat:
        return []
    device = motions[needed[0]].device
    feats = []
    for start in range(0, len(flat), max_texts):
        tok = model.text_encoder.tokenize(flat[start:start + max_texts])
        feats.append(model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device)))
    feats = torch.cat(feats)
    out, at = [], 0
    for i, parts in requests:
        out.append(partition_costs(feats[at:at + len(parts)], clips[i]))
        at += len(parts)
    return out


def partition_costs(subtext_features: torch.Tensor, clips: torch.Tensor) -> np.ndarray:
    """cost[n, a, b] = 1 - cos(subtext_features[n], clips[a, b]).

    subtext_features [N, D]; clips [G+1, G+1, D] from :func:`clip_features`.
    Returns float32 numpy [N, G+1, G+1] (entries with a >= b are 1 and never read).
    """
    t = F.normalize(subtext_features.float(), dim=-1)
    m = F.normalize(clips.float(), dim=-1)
    cos = torch.einsum("nd,abd->nab", t, m)
    return (1.0 - cos).cpu().numpy().astype(np.float32)


def partition_clips(model, clips: Sequence[tuple[Callable[[], torch.Tensor], np.ndarray, Sequence[tuple]]],
                    clips_per_batch: int = 16) -> Iterator[tuple[int, list[tuple]]]:
    """The optimal partition of every (tag, sub-texts) request of every clip, a batch at a time.

    Args:
        model: as :func:`subtext_cost_tables`.
        clips: (load_motion, grid, requests) per clip: ``load_motion()`` gives the motion [T, F] on
            the model's device, and is called only when the clip has a request; grid int64 [G+1];
            requests: (tag, [t^0..t^{N-1}]) pairs with 1 <= N <= G.
        clips_per_batch: clips whose tables are built in one batched pass and whose DPs are solved
            together (memory is bounded by one batch's tables).

    Yields:
        per batch, (number of clips it covered, [(tag, grid, Partition), ...]).
    """
    from mate.segment import optimal_partition_batch

    for start in range(0, len(clips), clips_per_batch):
        chunk = clips[start:start + clips_per_batch]
        motions, grids, requests, tagged = [], [], [], []
        for load_motion, grid, wanted in chunk:
            if not wanted:
                continue
            motions.append(load_motion())
            grids.append(grid)
            requests += [(len(motions) - 1, list(parts)) for _, parts in wanted]
            tagged += [(tag, grid) for tag, _ in wanted]
        parts = optimal_partition_batch(subtext_cost_tables(model, motions, grids, requests)) if requests else []
        yield len(chunk), [(tag, grid, part) for (tag, grid), part in zip(tagged, parts)]


def segment_captions(model, requests: Sequence[tuple[Hashable, Hashable, Sequence[str]]],
                     load_motion: Callable[[Hashable], torch.Tensor], clip_length: Callable[[Hashable], int],
                     fps: float, clips_per_batch: int = 16, progress: bool = False,
                     desc: str = "segments") -> dict:
    """The optimal partition (Eq. 1) of each caption's clip among its sub-texts: the one
    segmentation entry point of training and evaluation.

    Args:
        model: a trained retrieval model (as :func:`subtext_cost_tables`), in eval mode.
        requests: (key, clip, [t^0..t^{N-1}]) per caption; ``key`` names the result, ``clip`` any
            hashable id of the motion window (captions of one clip share its sub-clip features).
        load_motion: clip -> its motion [T, F] float32 on the model's device; called only for
            clips that have a request with N >= 2.
        clip_length: clip -> T (frames); the grid is ``unit_grid(T, fps)``.
        clips_per_batch: clips encoded and solved together (memory: one batch's cost tables).
        progress: a progress bar (over clips) named ``desc``.

    Returns:
        {key: int64 [N+1] frame boundaries 0 = b_0 < ... < b_N = T in the clip, or None where the
        clip has fewer 0.5 s grid units than N}. A single sub-text gets [0, T] without the DP.
    """
    from tqdm.auto import tqdm

    from mate.segment import unit_grid

    by_clip: dict[Hashable, list[tuple[Hashable, list[str]]]] = {}
    for key, clip, subtexts in requests:
        by_clip.setdefault(clip, []).append((key, list(subtexts)))
    out: dict = {}
    clips = []
    for clip, captions in by_clip.items():
        length = int(clip_length(clip))
        grid = unit_grid(length, fps)
        wanted = []
        for key, subtexts in captions:
            if len(subtexts) == 1:
                out[key] = np.array([0, length], dtype=np.int64)
            elif len(subtexts) > len(grid) - 1:
                out[key] = None
            else:
                wanted.append((key, subtexts))
        clips.append((lambda c=clip: load_motion(c), grid, wanted))
    with tqdm(total=len(clips), desc=desc, leave=False, dynamic_ncols=True, disable=not progress) as bar:
        for covered, done in partition_clips(model, clips, clips_per_batch):
            for key, grid, part in done:
                out[key] = part.frames(grid)
            bar.update(covered)
    return out
