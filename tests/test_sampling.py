"""The seeded sample order and the loader settings."""

from __future__ import annotations

import pytest
import torch

from mixer_lib import sampling


@pytest.mark.parametrize("cores, processes, cpu_workers, gpu_workers", [
    (1, None, 0, 1), (2, None, 0, 1), (4, None, 2, 3), (16, None, 2, 12), (16, "1", 2, 12),
    (64, None, 2, 12), (64, "8", 2, 7), (16, "8", 2, 1)])
def test_default_workers_leave_small_cpus_to_the_model_and_share_cores_among_gpus(
        monkeypatch, cores, processes, cpu_workers, gpu_workers):
    """On a GPU: this process's share of the cores less one, at most 12 (torchrun's
    LOCAL_WORLD_SIZE processes share the machine); on a CPU: none on 2 cores, at most 2."""
    monkeypatch.setattr(sampling.os, "cpu_count", lambda: cores)
    if processes is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
    cpu = sampling.loader_kwargs(torch.device("cpu"), None)
    assert cpu["num_workers"] == cpu_workers and not cpu["pin_memory"]
    assert ("persistent_workers" in cpu) == (cpu_workers > 0)
    gpu = sampling.loader_kwargs(torch.device("cuda"), None)
    assert gpu["num_workers"] == gpu_workers and gpu["pin_memory"]
    assert sampling.loader_kwargs(torch.device("cuda"), 3)["num_workers"] == 3  # as asked
    assert sampling.loader_kwargs(torch.device("cpu"), 3)["num_workers"] == 3  # as asked

