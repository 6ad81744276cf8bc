"""A run folder: its files, its lock, its checkpoints. Nothing here deletes a run.

Files of a run folder ``out/``:

* ``config.json``         the run's config and environment (rewritten when resumed);
* ``run.lock``            held (``fcntl.flock``) by the one process writing the folder;
* ``checkpoint.pt``       the newest checkpoint, written atomically;
* ``checkpoint.prev.pt``  the one before it, kept so a damaged newest one is not the end;
* ``metrics.jsonl``       one JSON record per log/eval step;
* ``results.json``        the result record.

A different experiment is never written over an existing run: :func:`check_experiment`
refuses with the differing fields, and :func:`move_aside` (the explicit overwrite) renames the
old folder with a timestamp.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import torch

from mixer_lib.config import differences, experiment
from mixer_lib.provenance import atomic_torch_save, write_json

CHECKPOINT, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"


class RunExists(FileExistsError):
    """The folder holds another experiment (or a run that needs resume)."""


class RunLocked(RuntimeError):
    """Another live process is writing the run folder."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the good one kept, if any."""


def stored_config(out: Path) -> dict[str, Any] | None:
    """The config recorded in ``out/config.json`` (None when there is none)."""
    path = out / "config.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["config"]


def check_experiment(out: Path, cfg: Any, overwrite_hint: str = "overwrite=True") -> None:
    """Refuse when ``out`` holds a run of another experiment than ``cfg``."""
    previous = stored_config(out)
    if previous is None:
        return
    diff = differences(experiment(previous), experiment(cfg))
    if diff:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in
                           ((k, *v) for k, v in diff.items()))
        raise RunExists(
            f"{out} holds a run of another experiment: it differs in {', '.join(diff)} "
            f"({listed}). Nothing was changed. Use another output folder, or pass "
            f"{overwrite_hint} to move the old run aside (renamed with a timestamp, never "
            f"deleted) and start this one.")


def refuse_or_move_aside(out: Path, cfg: Any, overwrite: bool, hint: str) -> bool:
    """Refuse (:class:`RunExists`) when ``out`` holds another experiment than ``cfg``, unless
    ``overwrite``: then move it aside and return True. False when nothing was in the way."""
    try:
        check_experiment(out, cfg, hint)
    except RunExists:
        if not overwrite:
            raise
        print(f"moved the previous run aside to {move_aside(out)}", file=sys.stderr)
        return True
    return False


def move_aside(out: Path, label: str | None = None) -> Path | None:
    """Rename ``out`` to ``out.replaced-<UTC timestamp>`` (then ``-1``, ``-2``, ... while
    taken), or with ``label`` to ``<stem>-<label><suffix>`` (then ``-2``, ``-3``, ...: a
    record set aside keeps its extension and so its file pattern); returns the new path,
    None when nothing is at ``out``."""
    if not out.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

    def name(n: int) -> str:  # n = 0: the first choice
        if label is None:
            return f"{out.name}.replaced-{stamp}" + (f"-{n}" if n else "")
        return f"{out.stem}-{label}" + (f"-{n + 1}" if n else "") + out.suffix

    target = next(t for n in count() if not (t := out.with_name(name(n))).exists())
    out.rename(target)
    return target


def set_aside_record(path: Path) -> Path | None:
    """Move a JSON record already at ``path`` aside under its commit's name
    (``benchmark-perf-cpu-cpu.json`` -> ``benchmark-perf-cpu-cpu-4eb6ba1.json``,
    :func:`move_aside`), so a new measurement never overwrites one; says so on stderr and
    returns where it went."""
    if not path.exists():
        return None
    try:
        commit = str(json.loads(path.read_text())["environment"]["git_commit"])[:7]
    except (ValueError, KeyError, TypeError):
        commit = "unreadable"
    aside = move_aside(path, commit)
    print(f"the earlier record {path.name} is kept as {aside.name}", file=sys.stderr)
    return aside


class RunLock:
    """One writer per run folder: an exclusive ``flock`` on ``out/run.lock``.

    The kernel releases the lock when its process dies, so a lock file left by a killed
    process is stale: the next writer takes it over (and says so).
    """

    def __init__(self, out: Path) -> None:
        self.path = out / "run.lock"
        self.fd: int | None = None
        self.took_over: str | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(f"{self.path.parent} is being written by another process "
                            f"({holder}); wait for it to finish or stop it, or use another "
                            f"output folder") from None
        previous = os.read(fd, 4096).decode(errors="replace").strip()
        if previous:
            self.took_over = previous
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{datetime.now(UTC).isoformat(timespec='seconds')}".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def save_checkpoint(out: Path, state: dict[str, Any]) -> None:
    """Write ``checkpoint.pt`` atomically, keeping the one before as ``checkpoint.prev.pt``."""
    newest = out / CHECKPOINT

    def keep_previous(tmp: Path) -> None:
        if newest.exists():
            os.replace(newest, out / PREVIOUS)

    atomic_torch_save(state, newest, before_replace=keep_previous)


def _read(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        raise ValueError("not a mixer_lib checkpoint (model/optimizer/step missing)")
    return state


def load_checkpoint(out: Path, use_previous: bool = False) -> dict[str, Any] | None:
    """The state to resume from (``weights_only=True``), or None when there is none.

    A missing ``checkpoint.pt`` beside a ``checkpoint.prev.pt`` (killed between the two
    renames of a save) resumes from the previous one. A damaged ``checkpoint.pt`` raises
    :class:`CheckpointError` naming the previous good one; ``use_previous=True`` moves the
    damaged file aside (``checkpoint.damaged-<time>.pt``) and resumes from the previous one.
    """
    newest, previous = out / CHECKPOINT, out / PREVIOUS
    if not newest.exists():
        return _read(previous) if previous.exists() else None
    try:
        return _read(newest)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if not previous.exists():
            raise CheckpointError(f"{newest} cannot be read ({reason}) and no previous "
                                  f"checkpoint is kept; start the run again in another "
                                  f"folder") from err
        try:
            prev_step = _read(previous)["step"]
        except Exception as err2:  # noqa: BLE001
            raise CheckpointError(f"{newest} cannot be read ({reason}), and neither can "
                                  f"{previous}; start the run again in another folder") \
                from err2
        if not use_previous:
            raise CheckpointError(
                f"{newest} cannot be read ({reason}). The previous good checkpoint "
                f"{previous} (update {prev_step}) is kept: resume from it with "
                f"--resume --from-previous (use_previous=True), which moves the damaged file "
                f"aside") from err
        stamp = time.strftime("%Y%m%dT%H%M%S")
        os.replace(newest, out / f"checkpoint.damaged-{stamp}.pt")
        return _read(previous)


def checkpoint_step(out: Path) -> int | None:
    """The update of the newest readable checkpoint, or None."""
    for name in (CHECKPOINT, PREVIOUS):
        try:
            return int(_read(out / name)["step"])
        except Exception:  # noqa: BLE001, S112 - missing or unreadable: try the next
            continue
    return None


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only metric records up to ``last_step`` (the resumed checkpoint's update); a
    half-written last line (killed while logging) is dropped too."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record["step"] <= last_step:
            keep.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    os.replace(tmp, path)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class RunFolder:
    """One run's folder and what it holds: ``config.json`` (what ran, on what), the newest
    ``checkpoint.pt`` and the one before, ``metrics.jsonl`` (a line per log and evaluation),
    ``results.json`` (the result record). Only the ``writer`` (the main process) writes."""

    def __init__(self, path: str | os.PathLike, writer: bool = True) -> None:
        self.path, self.writer = Path(path), writer
        self.metrics = self.path / "metrics.jsonl"

    def write_config(self, config: dict[str, Any], env: dict[str, Any]) -> None:
        if self.writer:
            write_json(self.path / "config.json", {"config": config, "environment": env})

    def resume_state(self, use_previous: bool = False) -> dict[str, Any] | None:
        """The checkpoint to continue from (:func:`load_checkpoint`), or None."""
        return load_checkpoint(self.path, use_previous)

    def restart_metrics(self, start: int) -> None:
        """Metrics up to update ``start`` kept (a resumed run), or none (a fresh start)."""
        if not self.writer:
            return
        if start:
            truncate_metrics(self.metrics, start)
        elif self.metrics.exists():
            self.metrics.unlink()  # records of a start that wrote no checkpoint

    def log(self, record: dict[str, Any]) -> None:
        if self.writer:
            append_metrics(self.metrics, record)

    def save(self, state: dict[str, Any]) -> None:
        if self.writer:
            save_checkpoint(self.path, state)

    def checkpoint_step(self) -> int | None:
        return checkpoint_step(self.path)

    def evaluations(self) -> list[dict[str, Any]]:
        """Every evaluation logged in ``metrics.jsonl``."""
        return [r for line in self.metrics.read_text().splitlines()
                if "split" in (r := json.loads(line))]

    def write_result(self, record: dict[str, Any]) -> None:
        if self.writer:
            write_json(self.path / "results.json", record)
