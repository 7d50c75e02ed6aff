"""Multi-process (DistributedDataParallel) support for ``python -m mate.train``.

``torchrun --nproc_per_node=N -m mate.train ...`` starts N processes; :func:`init_distributed`
joins them (NCCL on CUDA, gloo on CPU) from torchrun's environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Without them (a plain
``python -m mate.train``) nothing is initialised and every helper here is a no-op.

**The global batch.** ``--batch-size`` is the global batch B; each rank gets B/N samples. MATE's
contrastive and in-batch terms (L_sent, L_align, L_cross) are defined over the whole batch, so a
rank must see the other ranks' features. :class:`BatchGather` gathers them with the autograd-aware
``torch.distributed.nn.functional.all_gather``: every rank then computes the same global loss, the
gather's backward *sums* the gradient of each rank's copy (N identical copies: N x the gradient of
the local slice), and DDP's gradient *average* divides by N: each parameter receives exactly the
single-process gradient of the global batch. Per-sample terms (L_rec, L_self) are a local mean,
whose DDP average is the global mean. See ``MATEModel.forward``.

**The batches.** :class:`GlobalBatchSampler` draws one permutation per epoch (seeded with
``(seed, epoch)``), cuts it into global batches of B and hands rank r the contiguous slice
``[r*B/N, (r+1)*B/N)`` of each. Gathering in rank order therefore rebuilds the single-process
batch exactly, in the same order (torch's ``DistributedSampler`` strides ``indices[r::N]``, which
gives the same sets but another order). Its position (epoch, batch) is all a resume needs, and it
does not depend on N. Each index is yielded as ``(epoch, index)`` so that per-sample randomness
(crops, word choice) is a function of ``(seed, epoch, index)`` alone: the same on any number of
ranks or workers, and after a resume.
"""
from __future__ import annotations

import datetime
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "BatchGather",
    "DistEnv",
    "GlobalBatchSampler",
    "all_gather_object",
    "answer_on_owner_ranks",
    "barrier",
    "broadcast_object",
    "destroy_distributed",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "mean_over_ranks",
    "resolve_device",
    "rank",
    "world_size",
]

log = logging.getLogger("mate.distributed")

# torch >= 2.10 marks torch.distributed.nn.functional.all_gather deprecated in favour of the
# functional collectives; it is still the autograd-aware gather that works on gloo and NCCL alike
# (its backward: reduce-scatter on NCCL, all-to-all + sum elsewhere).
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_gather is deprecated")


# ------------------------------------------------------------------------------- process group
def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_object(obj: Any) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in one process."""
    if not is_distributed():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average a dict of floats over the ranks (same keys on every rank); identity in one process."""
    if not is_distributed() or not values:
        return values
    names = list(values)  # the same insertion order on every rank (same model, same config)
    t = torch.tensor([float(values[n]) for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(names, t.tolist()))


@dataclass
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device | None = None
    feature_group: Any = None  # the process group of the feature gathers (not DDP's)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_spec: str = "auto", timeout_minutes: float = 30.0) -> DistEnv:
    """Join the torchrun job (if any) and pick this rank's device.

    ``device_spec``: ``auto`` (this rank's GPU ``cuda:LOCAL_RANK`` when CUDA is available, else the
    CPU), ``cpu``, ``cuda`` (= ``cuda:LOCAL_RANK``) or ``cuda:N`` (one process only). Backend:
    NCCL for CUDA devices, gloo for the CPU. Returns a single-process :class:`DistEnv` when not
    started by torchrun (``WORLD_SIZE`` unset or 1)."""
    world = torchrun_world_size()
    if world <= 1:
        return DistEnv(device=_resolve_device(device_spec, None))
    if not dist.is_available():
        raise SystemExit("error: torch.distributed is not available in this torch build")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_spec.startswith("cuda:"):
        raise SystemExit(f"error: --device {device_spec}: with torchrun each rank uses cuda:LOCAL_RANK; pass --device cuda")
    device = _resolve_device(device_spec, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes), **kwargs)
    # A second group for the feature gathers inside the loss: their backward runs while DDP's
    # reducer all-reduces gradient buckets; separate groups keep the two streams of collectives
    # independent.
    feature_group = dist.new_group(backend=backend)
    env = DistEnv(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                  backend=backend, device=device, feature_group=feature_group)
    return env


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(spec: str, local_rank: int | None = None) -> torch.device:
    """The device named by a ``--device`` value: ``auto`` (CUDA when available -- this rank's
    ``cuda:LOCAL_RANK`` under torchrun -- else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. With a
    ``local_rank`` a CUDA device is this rank's. Raises ``ValueError`` naming the problem for a
    malformed name, a device type MATE does not run on, or CUDA on a machine without it (command
    lines turn it into one ``error:`` line). The one device resolver of every MATE command."""
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", local_rank or 0) if local_rank is not None else torch.device("cuda")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {spec}: not a device name (expected auto, cpu, cuda or cuda:N): {err}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {spec}: MATE runs on cpu or cuda, got a {device.type!r} device")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available on this machine")
        if local_rank is not None:
            return torch.device("cuda", local_rank)
    return device


def _resolve_device(spec: str, local_rank: int | None) -> torch.device:
    try:
        return resolve_device(spec, local_rank)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def answer_on_owner_ranks(gather: "BatchGather", motion_idx: torch.Tensor, local_batch: int,
                          answer) -> torch.Tensor:
    """Route queries of the global batch to the rank that holds the motion each one reads.

    ``motion_idx`` [Q] int64: the global index of the motion query q reads; motion j lives on rank
    ``j // local_batch`` (the :class:`GlobalBatchSampler` slices). This rank calls
    ``answer(mine)`` with ``mine`` [Q_r] int64, the indices of the queries that read its motions
    (it must return their outputs [Q_r, ...] in that order); every rank's answers are gathered and
    returned in the global query order [Q, ...], differentiably (:meth:`BatchGather.varying`).
    ``motion_idx`` must be the same on every rank."""
    owner = torch.div(motion_idx, local_batch, rounding_mode="floor")
    counts = torch.bincount(owner, minlength=gather.world_size).tolist()   # the same on every rank
    mine = (owner == gather.rank).nonzero().squeeze(1)
    local = answer(mine)
    order = torch.sort(owner, stable=True).indices                          # rank-major query order
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return gather.varying(local, counts)[inverse]


# ------------------------------------------------------------------------------------ gathers
class BatchGather:
    """Concatenate a per-rank tensor over the ranks, differentiably (rank-major order).

    ``BatchGather(None)`` (one process) is the identity. The backward of :meth:`__call__` sums the
    incoming gradients of every rank's copy (``torch.distributed.nn.functional.all_gather``); used
    with a loss computed identically on every rank and DDP's gradient average, that is the
    single-process gradient (module docstring)."""

    def __init__(self, group: Any = None):
        self.group = group
        self.world_size = dist.get_world_size(group) if group is not None else 1
        self.rank = dist.get_rank(group) if group is not None else 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[n, ...] on every rank (same n) -> [world * n, ...]; differentiable."""
        if not self.enabled:
            return x
        if not x.requires_grad:
            return self.no_grad(x)
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x.contiguous(), group=self.group), dim=0)

    def no_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Like ``__call__`` for tensors that need no gradient (indices, segment bounds)."""
        if not self.enabled:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=0)

    def varying(self, x: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """Differentiable gather of per-rank tensors with different first sizes: rank r holds
        ``counts[r]`` rows (every rank knows ``counts``). Pads to the largest, gathers, unpads."""
        if not self.enabled:
            return x
        longest = max(counts)
        if x.shape[0] != counts[self.rank]:
            raise ValueError(f"rank {self.rank} holds {x.shape[0]} rows, counts say {counts[self.rank]}")
        if longest > x.shape[0]:
            x = torch.cat([x, x.new_zeros(longest - x.shape[0], *x.shape[1:])], dim=0)
        full = self(x) if x.requires_grad else self.no_grad(x)
        return torch.cat([full[r * longest: r * longest + c] for r, c in enumerate(counts)], dim=0)


# ---------------------------------------------------------------------------------- sampling
class GlobalBatchSampler(Sampler[list]):
    """Global batches of one seeded permutation per epoch; this rank's contiguous slice of each.

    Yields lists of ``(epoch, dataset index)`` (the dataset wrapper turns them into items with
    per-sample randomness). ``num_samples`` items, global batch ``batch_size`` (divisible by
    ``world_size``), rank ``rank``. The epoch has ``num_samples // batch_size`` batches (the tail is
    dropped), or one batch of every sample when ``num_samples <= batch_size`` (one process only).

    ``set_epoch(e)`` selects the permutation (``torch.randperm`` from a generator seeded with
    ``seed`` and ``e``); ``set_start(k)`` skips the first k batches of the epoch (a resume);
    ``state_dict``/``load_state_dict`` carry both.
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True):
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(f"global batch {batch_size} must be a positive multiple of the {world_size} ranks")
        if num_samples < 1:
            raise ValueError("no samples to draw batches from")
        if world_size > 1 and num_samples < batch_size:
            raise ValueError(f"{num_samples} samples do not fill one global batch of {batch_size} "
                             f"across {world_size} ranks: lower --batch-size")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank, self.seed, self.shuffle = world_size, rank, seed, shuffle
        if not drop_last and world_size > 1:
            raise ValueError("drop_last=False is for one process only (the ranks' shares must be equal)")
        self.drop_last = drop_last
        self.local_batch = batch_size // world_size
        self.epoch, self.start = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        if not self.drop_last:
            return -(-self.num_samples // self.batch_size)
        return max(1, self.num_samples // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, batch: int) -> None:
        self.start = int(batch)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "start": self.start, "seed": self.seed, "num_samples": self.num_samples,
                "batch_size": self.batch_size, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        for name in ("seed", "num_samples", "batch_size", "shuffle"):
            if state[name] != getattr(self, name):
                raise ValueError(f"sampler state has {name}={state[name]}, this sampler {getattr(self, name)}")
        self.epoch, self.start = int(state["epoch"]), int(state["start"])

    def permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator()
        g.manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start)

    def __iter__(self) -> Iterator[list]:
        order = self.permutation(self.epoch)
        size = self.batch_size if self.num_samples >= self.batch_size else self.num_samples
        local = size // self.world_size
        for b in range(self.start, self.batches_per_epoch):
            first = b * size + self.rank * local
            yield [(self.epoch, i) for i in order[first:first + local]]  # the tail: shorter (drop_last=False)
