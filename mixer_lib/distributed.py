"""Several processes, one run: PyTorch distributed data parallel under ``torchrun``.

``torchrun --nproc_per_node=N -m mixer_lib.train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`setup` joins them into one process group (NCCL
on GPUs, gloo on CPUs). The global batch of each update is cut into equal shares, one per
rank (:class:`RankShare`), so the ranks together see the same samples in the same order as one
process would; DDP averages the gradients.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The rank that writes the run folder and prints."""
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (the values themselves with one process)."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def agree(self, ok: bool) -> bool:
        """True on every rank when ``ok`` is true on every rank (one all-reduce)."""
        return self.sum([0.0 if ok else 1.0])[0] == 0.0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device_type: str) -> World:
    """Join the process group torchrun set up (no-op for a single process)."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


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
