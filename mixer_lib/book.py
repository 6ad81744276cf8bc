"""Build the book: execute every chapter with papermill, then ``jupyter-book build``.

``python -m mixer_lib.book --profile quick`` (what ``make book`` runs):

1. for each (chapter, parameters) job of the profile, convert ``notebooks/<chapter>.md``
   (jupytext) to a notebook and execute it with papermill into ``book/chapters/`` (executed
   copies; sources stay text). A job whose inputs (notebook text, parameters, mixer_lib
   sources) did not change since its last successful run is skipped unless ``--force``;
2. the first failing notebook stops the build with its name, the failing cell and error;
3. ``jupyter-book build`` with warnings treated as errors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CHAPTERS = REPO / "book" / "chapters"


@dataclass(frozen=True)
class Job:
    """One notebook execution: ``notebooks/<notebook>.md`` -> ``book/chapters/<output>``.

    ``reads``: glob patterns (relative to the repository) of files the notebook reads that
    other jobs or runs elsewhere write; they are part of its inputs, so it re-executes when
    they change (e.g. the results chapter after a fine-tuning run or a new benchmark record).
    """

    notebook: str
    output: str
    parameters: dict = field(default_factory=dict)
    reads: tuple[str, ...] = ()


def _quick_ft(dataset: str) -> dict:
    return {"dataset": dataset, "variant": "Mixer-T/4", "weights": "random",
            "recipe": "scratch", "img_size": 32, "steps": 300, "batch_size": 128, "lr": 2e-3,
            "train_limit": 10_000, "eval_limit": 2_000, "device": "cpu",
            "run_dir": f"runs/quick/finetune-{dataset}"}


def _paper_ft(dataset: str) -> dict:
    return {"dataset": dataset, "variant": "Mixer-B/16", "weights": "imagenet21k",
            "recipe": "finetune", "img_size": 224, "steps": None, "batch_size": 512,
            "lr": 0.03, "train_limit": None, "eval_limit": None, "device": "cuda",
            "run_dir": f"runs/paper/finetune-{dataset}"}


PAPER_DATASETS = ("cifar10", "cifar100", "pets", "flowers102", "imagenet1k")

PROFILES: dict[str, list[Job]] = {
    "quick": [
        Job("architecture", "architecture"),
        Job("weights", "weights"),
        Job("finetune", "finetune-cifar10-jpeg", _quick_ft("cifar10-jpeg")),
        Job("permutation", "permutation", {"steps": 150, "train_limit": 5000,
                                            "eval_limit": 1000, "device": "cpu",
                                            "run_dir": "runs/quick/permutation"}),
        Job("token_mixing", "token_mixing",
            {"checkpoint": "runs/quick/finetune-cifar10-jpeg/checkpoint.pt",
             "variant": "Mixer-T/4", "img_size": 32},
            reads=("runs/quick/finetune-cifar10-jpeg/checkpoint.pt",)),
        Job("results", "results", {"runs_dir": "runs/quick"},
            reads=("runs/quick/**/results.json", "results/*.json")),
    ],
    "paper": [
        Job("architecture", "architecture"),
        Job("weights", "weights", {"weights": "imagenet21k"}),
        *[Job("finetune", f"finetune-{d}", _paper_ft(d)) for d in PAPER_DATASETS],
        Job("permutation", "permutation", {"steps": 2000, "train_limit": None,
                                            "eval_limit": None, "device": "cuda",
                                            "run_dir": "runs/paper/permutation"}),
        Job("token_mixing", "token_mixing", {"checkpoint": "imagenet21k",
                                              "variant": "Mixer-B/16", "img_size": 224}),
        Job("results", "results", {"runs_dir": "runs/paper"},
            reads=("runs/paper/**/results.json", "results/*.json")),
    ],
}


def default_data_root() -> str:
    """``$MIXER_DATA_ROOT``, else ``../shared/data`` when it exists, else ``data``."""
    if os.environ.get("MIXER_DATA_ROOT"):
        return os.environ["MIXER_DATA_ROOT"]
    shared = REPO.parent / "shared" / "data"
    return str(shared) if shared.is_dir() else str(REPO / "data")


def inputs_digest(job: Job, extra: dict) -> str:
    """Hash of everything a chapter's output depends on: its text, parameters, the library
    code and the files it declares in ``job.reads``."""
    h = hashlib.sha256()
    h.update((NOTEBOOKS / f"{job.notebook}.md").read_bytes())
    h.update(json.dumps({**job.parameters, **extra}, sort_keys=True).encode())
    read = sorted({p for pattern in job.reads for p in REPO.glob(pattern)})
    for path in sorted((REPO / "mixer_lib").glob("*.py")) + read:
        h.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    return h.hexdigest()


class NotebookFailed(RuntimeError):
    pass


def execute(job: Job, extra: dict, force: bool) -> bool:
    """Run one job; returns False when it was skipped as up to date."""
    import jupytext
    import papermill as pm

    out = CHAPTERS / f"{job.output}.ipynb"
    stamp = CHAPTERS / f"{job.output}.inputs"
    digest = inputs_digest(job, extra)
    if not force and out.exists() and stamp.exists() and stamp.read_text() == digest:
        return False
    CHAPTERS.mkdir(parents=True, exist_ok=True)
    source = CHAPTERS / f"{job.output}.source.ipynb"
    nb = jupytext.read(NOTEBOOKS / f"{job.notebook}.md")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    jupytext.write(nb, source)
    stamp.unlink(missing_ok=True)
    try:
        pm.execute_notebook(str(source), str(out), parameters={**job.parameters, **extra},
                            cwd=str(REPO), kernel_name="python3", progress_bar=True,
                            log_output=False)
    except pm.PapermillExecutionError as err:
        raise NotebookFailed(
            f"notebook {job.notebook}.md ({job.output}) failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"--- cell source ---\n{err.source}\n--- executed copy: {out}"
        ) from err
    finally:
        source.unlink(missing_ok=True)
    stamp.write_text(digest)
    return True


def build_html() -> None:
    """``jupyter-book build`` with Sphinx warnings as errors."""
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(REPO), "--path-output",
           str(REPO / "book"), "-W", "-n", "--keep-going"]
    if subprocess.run(cmd, cwd=REPO).returncode:
        raise SystemExit("jupyter-book build failed (warnings are errors); see above")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixer_lib.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--force", action="store_true", help="re-execute every notebook")
    parser.add_argument("--only", nargs="*", help="execute only these chapter outputs")
    parser.add_argument("--no-html", action="store_true", help="skip jupyter-book build")
    args = parser.parse_args(argv)
    jobs = [j for j in PROFILES[args.profile] if not args.only or j.output in args.only]
    extra = {"data_root": default_data_root(), "profile": args.profile}
    # chapters of another profile must not be mixed into this build
    keep = {j.output for j in PROFILES[args.profile]}
    for old in CHAPTERS.glob("*.ipynb") if CHAPTERS.exists() else []:
        if old.stem not in keep:
            old.unlink()
            old.with_suffix(".inputs").unlink(missing_ok=True)
    t0 = time.perf_counter()
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.output} ({job.notebook}.md)", flush=True)
        try:
            ran = execute(job, extra, args.force)
        except NotebookFailed as err:
            print(f"\nBOOK BUILD STOPPED: {err}", file=sys.stderr)
            return 1
        print(f"    {'executed' if ran else 'up to date, skipped (use --force / FORCE=1)'}"
              f" [{time.perf_counter() - t0:.0f}s]", flush=True)
    if not args.no_html:
        build_html()
        print(f"book: {REPO / 'book' / '_build' / 'html' / 'index.html'} "
              f"[{time.perf_counter() - t0:.0f}s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
