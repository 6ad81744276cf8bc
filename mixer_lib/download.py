"""Files from the internet into a cache: resumable, atomic, verified, one process per file.

Used for the released checkpoints (:func:`mixer_lib.checkpoints.download`), the ReaL labels
and the CIFAR archives. Offline, the error says where to put the file by hand.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from mixer_lib.filelock import exclusive


class CheckpointDownloadError(RuntimeError):
    """A file (a checkpoint, labels, a dataset archive) that could not be downloaded."""


def default_cache_dir() -> Path:
    """``$MIXER_CACHE_DIR``, else ``$XDG_CACHE_HOME/mixer_lib``, else ``~/.cache/mixer_lib``."""
    if os.environ.get("MIXER_CACHE_DIR"):
        return Path(os.environ["MIXER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mixer_lib"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, *, sha256: str | None = None,
          expected_size: int | None = None, progress: bool = True,
          timeout: float = 30.0) -> Path:
    """``url`` as the file ``target``; returns ``target``.

    Resumes a partial ``.part`` file with an HTTP Range request, writes atomically (the final
    name appears only once the file is complete and verified) and checks size and sha256
    where known. A file already there is verified and reused.
    """
    if target.exists():
        _verify_download(target, sha256, expected_size, url)
        return target
    # One process downloads, the others wait and then reuse its file: torchrun's ranks, or
    # separate runs sharing the cache. Under the lock the .part file is only this process's,
    # so a download killed earlier is resumed, never written by two processes at once.
    with exclusive(target.with_name(f".{target.name}.lock"),
                   f"downloading {target.name}") as locked:
        if target.exists():  # another process finished it while this one waited
            _verify_download(target, sha256, expected_size, url)
            return target
        # without a lock (a file system that has none) each process writes a file of its
        # own; the first complete, verified copy is renamed into place, the others too (the
        # same bytes), so no reader ever sees a partial file
        part = target.with_name(target.name + ".part" if locked else
                                f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
        _fetch(url, target, part, sha256, expected_size, timeout, progress)
    return target


def _fetch(url: str, target: Path, part: Path, sha256: str | None, expected_size: int | None,
           timeout: float, progress: bool) -> None:
    """Download ``url`` to ``target`` through ``part`` (resumed with a Range request when it
    holds the start of an earlier attempt), verify, and rename atomically."""
    cache = target.parent
    cache.mkdir(parents=True, exist_ok=True)
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and done:  # the .part file is already complete
            response = None
        else:
            raise _offline_error(url, target, err) from err
    except (urllib.error.URLError, OSError) as err:
        raise _offline_error(url, target, err) from err
    if response is not None:
        with response:
            if done and response.status != 206:  # server ignored Range: start over
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            mode = "ab" if done else "wb"
            with open(part, mode) as f, tqdm(
                total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"download {target.name}", disable=not progress, file=sys.stderr,
            ) as bar:
                while block := response.read(1 << 20):
                    f.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size != total:
                raise CheckpointDownloadError(
                    f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                    f"call download() again to resume from {part}."
                )
    _verify_download(part, sha256, expected_size, url)
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, target)


def _verify_download(path: Path, sha256: str | None, size: int | None, url: str) -> None:
    if size is not None and path.stat().st_size != size:
        raise CheckpointDownloadError(
            f"{path} has {path.stat().st_size} bytes, expected {size}: delete it and "
            f"download {url} again."
        )
    if sha256 is not None and sha256_file(path) != sha256:
        raise CheckpointDownloadError(
            f"{path} does not match its sha256 checksum {sha256}: the file is corrupt or "
            f"not the released one; delete it and download {url} again."
        )


def _offline_error(url: str, target: Path, err: Exception) -> CheckpointDownloadError:
    if not url.endswith(".npz"):
        return CheckpointDownloadError(
            f"could not download {url} ({err}). If this machine is offline, fetch the file "
            f"elsewhere and put it at {target}.")
    return CheckpointDownloadError(
        f"could not download {url} ({err}). If this machine is offline, fetch the file "
        f"elsewhere (e.g. `gsutil cp {url.replace('https://storage.googleapis.com/', 'gs://')} "
        f".` or a browser) and put it at {target} (set MIXER_CACHE_DIR to use another cache "
        f"folder), or pass the local .npz path instead of the checkpoint name."
    )
