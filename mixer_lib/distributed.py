"""Several processes, one run: PyTorch distributed data parallel under ``torchrun``.

``torchrun --nproc_per_node=N -m mixer_lib.train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`setup` joins them into one process group (NCCL
on GPUs, gloo on CPUs). The global batch of each update is cut into equal shares, one per
rank (:class:`RankShare`), so the ranks together see the same samples in the same order as one
process would; DDP averages the gradients.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (one process: rank 0 of 1).

    ``device`` is where the process group's collectives take their tensors: this rank's GPU
    under NCCL (which serves CUDA tensors only), the CPU under gloo.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """The rank that writes the run folder and prints."""
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (the values themselves with one process)."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.cpu().tolist()

    def minimum(self, value: float) -> float:
        """The smallest ``value`` over ranks (e.g. free GPU memory: every rank must plan the
        same micro-batches)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return float(t.item())

    def agree(self, ok: bool) -> bool:
        """True on every rank when ``ok`` is true on every rank (one all-reduce)."""
        return self.sum([0.0 if ok else 1.0])[0] == 0.0

    def barrier(self) -> None:
        if self.size > 1:
            self.sum([0.0])  # an all-reduce on the backend's own device: NCCL needs no guess

    def main_first(self, work: Callable[[], T], what: str) -> T:
        """``work()`` on rank 0 first, then on the other ranks (which then find its
        downloads and extractions done). If rank 0 fails, every rank stops with an error
        instead of waiting for it."""
        if self.size == 1:
            return work()
        if self.main:
            try:
                result = work()
            except BaseException:
                self.agree(False)
                raise
            self.agree(True)
            return result
        if not self.agree(True):
            raise RuntimeError(f"rank 0 failed while {what}; see its message")
        return work()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def backend_for(device_type: str) -> str:
    """NCCL for GPUs, gloo for CPUs."""
    return "nccl" if device_type == "cuda" else "gloo"


def collective_device(backend: str, local_rank: int) -> torch.device:
    """The device whose tensors ``backend``'s collectives take: NCCL serves CUDA tensors
    only, gloo CPU tensors."""
    return torch.device(f"cuda:{local_rank}") if backend == "nccl" else torch.device("cpu")


def setup(device_type: str) -> World:
    """Join the process group torchrun set up (no-op for a single process).

    On GPUs each rank first selects its own GPU (``LOCAL_RANK``), so no rank opens a context
    on GPU 0 that it does not use, and NCCL binds each rank to its device.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    backend = backend_for(device_type)
    device = collective_device(backend, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    else:
        device = collective_device(dist.get_backend(), local_rank)
    return World(dist.get_rank(), dist.get_world_size(), local_rank, device)


def teardown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


class RankShare:
    """This rank's share of a stream of global sample positions.

    ``items`` yields one process's sequence of samples; every ``chunk`` consecutive items (one
    micro-batch of the global batch) are cut into ``world.size`` equal slices and this rank
    keeps slice ``world.rank``. With one process it is ``items`` unchanged.
    """

    def __init__(self, items: Iterable, chunk: int, world: World) -> None:
        if chunk % world.size:
            raise ValueError(f"micro-batch {chunk} is not divisible by {world.size} ranks")
        self.items, self.chunk, self.world = items, chunk, world
        self.share = chunk // world.size

    def __iter__(self) -> Iterator:
        lo = self.world.rank * self.share
        for i, item in enumerate(self.items):
            if lo <= i % self.chunk < lo + self.share:
                yield item

    def __len__(self) -> int:
        return len(self.items) // self.world.size  # type: ignore[arg-type]
