"""The seeded sample order and the loader settings."""

from __future__ import annotations

import pytest
import torch

from mixer_lib import sampling


@pytest.mark.parametrize("cores, cpu_workers, gpu_workers", [(1, 0, 1), (2, 0, 2), (4, 2, 4),
                                                             (16, 2, 8)])
def test_default_workers_leave_small_cpus_to_the_model(monkeypatch, cores, cpu_workers,
                                                       gpu_workers):
    monkeypatch.setattr(sampling.os, "cpu_count", lambda: cores)
    cpu = sampling.loader_kwargs(torch.device("cpu"), None)
    assert cpu["num_workers"] == cpu_workers and not cpu["pin_memory"]
    assert ("persistent_workers" in cpu) == (cpu_workers > 0)
    gpu = sampling.loader_kwargs(torch.device("cuda"), None)
    assert gpu["num_workers"] == gpu_workers and gpu["pin_memory"]
    assert sampling.loader_kwargs(torch.device("cpu"), 3)["num_workers"] == 3  # as asked

