"""Feeding a run: the seeded, resumable sample order and the ``DataLoader`` settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded per-epoch shuffling that can start mid-run: yields ``(index, item_seed)`` for
    global sample positions ``start, start+1, ...``. Same seed -> same order and augmentation,
    whether or not the run was interrupted."""

    def __init__(self, n: int, seed: int, start: int = 0, total: int | None = None,
                 fixed_order: bool = False) -> None:
        self.n, self.seed, self.start, self.total = n, seed, start, total
        self.fixed_order = fixed_order  # one seeded order for every epoch (no reshuffle)

    def _perm(self, epoch: int) -> list[int]:
        epoch = 0 if self.fixed_order else epoch
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        epoch, perm = -1, []
        while self.total is None or pos < self.total:
            if pos // self.n != epoch:
                epoch = pos // self.n
                perm = self._perm(epoch)
            yield perm[pos % self.n], (self.seed * 1_000_003 + pos) % (2**63)
            pos += 1

    def __len__(self) -> int:
        return (self.total - self.start) if self.total is not None else 2**62


GPU_WORKERS = 12  # the most the loader starts per GPU by default (loader_kwargs)


def loader_kwargs(device: torch.device, num_workers: int | None) -> dict:
    """Workers, pinned memory and persistent workers so data keeps up with a GPU. On a GPU
    the default is this process's share of the cores (``LOCAL_WORLD_SIZE`` processes, as
    torchrun starts them) less one for the process itself, at most :data:`GPU_WORKERS`: on
    an H200 with 16 cores, the fine-tuning loop of Mixer-B/16 on 500x375 JPEGs ran at 88 %
    of the model alone with 8 workers, 95 % with 12 and 95 % with 15
    (``results/perf/benchmark-input-NVIDIA-H200.json``). On a CPU the workers share the
    cores with the model: with two cores or fewer the default is none (batches are made in
    the training process: ``benchmarks/training_loop.py`` measured the study's loop at 94 %
    of the model alone with none, 85 % with one worker, in one session on 2 cores),
    otherwise half the cores, at most 2."""
    if num_workers is None:
        cpus = os.cpu_count() or 1
        if device.type == "cuda":
            share = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
            num_workers = max(1, min(GPU_WORKERS, share - 1))
        else:
            num_workers = 0 if cpus <= 2 else min(2, cpus // 2)
    kw: dict = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=4)
    return kw


def make_eval_loader(ds: Dataset, batch_size: int, device: torch.device,
                     num_workers: int | None = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False,
                      **loader_kwargs(device, num_workers))
