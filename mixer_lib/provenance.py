"""Where a number came from: environment, device, git commit; atomic JSON writes, and the
records read back."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

OUTPUT_DIRS = ("runs", "results")  # what runs write; changes there leave the code as committed


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The repository's HEAD commit (with ``-dirty`` when tracked files have changes), or
    None. Changes under ``runs/`` and ``results/`` do not count: they are what the code
    writes (a resumed study run rewrites its committed checkpoint), not the code.

    A copy of a working tree shipped to another machine (e.g. a GPU machine) may carry no
    ``.git``, or a stale one: there the ``MIXER_GIT_COMMIT`` environment variable, set by
    whoever shipped the tree, names the commit and wins."""
    shipped = os.environ.get("MIXER_GIT_COMMIT")
    if shipped:
        return f"{shipped} (shipped copy)"
    cwd = Path(path or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", *(f":(top,exclude){d}" for d in OUTPUT_DIRS)],
                               cwd=cwd, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """The host processor as Linux names it, with its family and model numbers (e.g. ``AMD
    EPYC (family 25, model 17)``): CPU timings differ by processor, and a VM's name alone may
    not say which. ``platform.processor()`` (or None) where ``cpuinfo`` cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return platform.processor() or None
    fields: dict[str, str] = {}
    for line in text.splitlines():  # the first processor's block, up to its blank line
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or None
    numbers = [f"{label} {fields[key]}" for key, label in (("cpu family", "family"),
                                                           ("model", "model")) if key in fields]
    return f"{name} ({', '.join(numbers)})" if name and numbers else name


def device_tag(name: str) -> str:
    """A device name (:func:`device_name`) as record file names carry it: ``cpu`` for any
    CPU, ``NVIDIA-H200`` for a GPU."""
    return name.split(" (")[0].replace(" ", "-")


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Versions, device and commit to record next to every result."""
    import einops
    import numpy
    import torchvision

    from mixer_lib import __version__

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_name(device),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "einops": einops.__version__,
        "mixer_lib": __version__,
        "git_commit": git_commit(),
        "threads": torch.get_num_threads(),
        "processor": cpu_model(),
        "triton": _version("triton"),
    }


def _version(package: str) -> str | None:
    """An installed package's version, None where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def read_records(folder: str | os.PathLike, pattern: str,
                 keep: Callable[[dict], bool] | None = None) -> list[dict]:
    """The JSON records matching ``pattern`` in ``folder`` (those ``keep`` accepts, when
    given), oldest first by their environment's date."""
    records = [r for r in (json.loads(p.read_text()) for p in Path(folder).glob(pattern))
               if keep is None or keep(r)]
    return sorted(records, key=lambda r: r["environment"].get("date", ""))


def latest_record(folder: str | os.PathLike, pattern: str,
                  keep: Callable[[dict], bool] | None = None) -> dict | None:
    """The newest of :func:`read_records`, None where there is none."""
    records = read_records(folder, pattern, keep)
    return records[-1] if records else None


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path


def add_result(record: dict, result: dict, path: str | os.PathLike | None) -> None:
    """Append ``result`` to ``record["results"]``, rewrite the record at ``path`` (when
    given: a run cut short keeps what it measured) and print the result as one JSON line."""
    record["results"].append(result)
    if path:
        write_json(path, record)
    print(json.dumps(result), flush=True)


def atomic_torch_save(obj: Any, path: str | os.PathLike,
                      before_replace: Callable[[Path], None] | None = None) -> Path:
    """``torch.save`` to a temp file, flush it to disk, then rename: a crash never leaves a
    half-written file at ``path``. ``before_replace(tmp)`` runs just before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".pt.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
