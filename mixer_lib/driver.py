"""The NVIDIA driver against the CUDA version torch was built for.

``torch==2.14.1`` from PyPI is a CUDA 13 build, which needs a driver of the R580 branch or
newer; on an older driver ``torch.cuda.is_available()`` is simply False. This module says so,
with the fix, wherever a GPU is expected (the preflight, ``device="cuda"``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

# the oldest Linux driver branch each CUDA major version runs on (NVIDIA's release notes)
MIN_DRIVER = {13: 580, 12: 525, 11: 450}


def driver_version() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi``, None when there is none."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


@dataclass(frozen=True)
class DriverVerdict:
    ok: bool
    detail: str
    fix: str = ""


def driver_verdict(torch_cuda: str | None, driver: str | None) -> DriverVerdict | None:
    """Does ``driver`` run CUDA ``torch_cuda``? None when there is nothing to compare."""
    if not torch_cuda or not driver:
        return None
    need = MIN_DRIVER.get(int(torch_cuda.split(".")[0]))
    have = int(driver.split(".")[0])
    if need is None or have >= need:
        return DriverVerdict(True, f"{driver} runs CUDA {torch_cuda} (torch build)")
    older = max((m for m, d in MIN_DRIVER.items() if d <= have), default=None)
    fix = f"update the NVIDIA driver to R{need} or newer"
    if older is not None:
        fix += (f", or install a torch build for CUDA {older}.x, e.g. `pip install "
                f"torch==2.14.1 torchvision==0.29.1 --index-url "
                f"https://download.pytorch.org/whl/cu{older}{'6' if older == 12 else '8'}`")
    return DriverVerdict(False, f"driver {driver} is older than CUDA {torch_cuda} (this torch "
                                f"build) needs (R{need}+); torch sees no GPU", fix)


def no_gpu_reason() -> str:
    """Why torch sees no GPU, with the fix when the driver is the reason."""
    import torch

    if torch.version.cuda is None:
        return "this torch is a CPU-only build"
    verdict = driver_verdict(torch.version.cuda, driver_version())
    if verdict is not None and not verdict.ok:
        return f"{verdict.detail}: {verdict.fix}"
    return "no CUDA GPU is visible (check the driver with nvidia-smi and CUDA_VISIBLE_DEVICES)"
