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

from mixer_lib.dryrun import PAPER_DATASETS
from mixer_lib.recipes import PAPER_RUN, QUICK_RUN, STANDIN_PREFIX

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
    title: str | None = None  # replaces the notebook's title (chapters run per dataset)


def _finetune(run: dict, dataset: str, profile: str, **extra: object) -> dict:
    return {**run, "dataset": dataset, "run_dir": f"runs/{profile}/finetune-{dataset}",
            **extra}


DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "pets": "Oxford-IIIT Pets",
                  "flowers102": "Oxford Flowers-102", "imagenet1k": "ImageNet",
                  "cifar10-jpeg": "CIFAR-10 (JPEG copy), from scratch"}


def _ft_job(profile: str, dataset: str, parameters: dict) -> Job:
    title = f"Fine-tuning: {DATASET_TITLES[dataset]}" + (" (dry run)" if profile == DRYRUN
                                                         else "")
    return Job("finetune", f"finetune-{dataset}", parameters, title=title)


# The dry run of the paper profile: the paper's chapters and code path (released-checkpoint
# name resolved in a cache, the protocol with sweep and repeats, Avg 5, the results table) on
# tiny stand-ins (mixer_lib.dryrun), a few updates each. Its numbers are labelled dry run.
DRYRUN = "paper-dryrun"
DRYRUN_ROOT = f"runs/{DRYRUN}"
DRYRUN_RUN = {**PAPER_RUN, "img_size": 32, "steps": 2, "batch_size": 8, "device": "cpu",
              "eval_limit": None}


def _dryrun_ft(dataset: str) -> dict:
    return {**DRYRUN_RUN, "dataset": STANDIN_PREFIX + dataset,
            "run_dir": f"{DRYRUN_ROOT}/finetune-{dataset}", "protocol": True,
            "grid": [0.01, 0.03], "repeats": 2, "download": False}


def _intro(runs_dir: str) -> Job:
    """The summary page, executed last: it reads the other chapters' records and timings."""
    return Job("intro", "intro", {"runs_dir": runs_dir},
               reads=("book/chapters/[!i]*.ipynb", f"{runs_dir}/**/protocol.json",
                      "results/study/claims.json"))


PROFILES: dict[str, list[Job]] = {
    "quick": [
        Job("architecture", "architecture"),
        Job("weights", "weights"),
        _ft_job("quick", "cifar10-jpeg", _finetune(QUICK_RUN, "cifar10-jpeg", "quick")),
        Job("permutation", "permutation", {"steps": 150, "train_limit": 5000,
                                            "eval_limit": 1000, "device": "cpu",
                                            "run_dir": "runs/quick/permutation"},
            reads=("results/study/*.json",)),
        Job("token_mixing", "token_mixing",
            {"checkpoint": "runs/quick/finetune-cifar10-jpeg/checkpoint.pt",
             "variant": "Mixer-T/4", "img_size": 32},
            reads=("runs/quick/finetune-cifar10-jpeg/checkpoint.pt", "results/study/*.json")),
        Job("claims", "claims", {"runs_dir": "runs/quick"},
            reads=("results/study/*.json", "runs/quick/**/protocol.json")),
        Job("autopsy", "autopsy", {"runs_dir": "runs/quick"}, reads=("results/study/*.json",)),
        Job("results", "results", {"runs_dir": "runs/quick"},
            reads=("runs/quick/**/results.json", "results/*.json")),
        _intro("runs/quick"),
    ],
    "paper": [
        Job("architecture", "architecture"),
        Job("weights", "weights", {"weights": "imagenet21k"}),
        *[_ft_job("paper", d, _finetune(PAPER_RUN, d, "paper", protocol=True))
          for d in PAPER_DATASETS],
        Job("permutation", "permutation", {"steps": 2000, "train_limit": None,
                                            "eval_limit": None, "device": "cuda",
                                            "run_dir": "runs/paper/permutation"},
            reads=("results/study/*.json",)),
        Job("token_mixing", "token_mixing", {"checkpoint": "imagenet21k",
                                              "variant": "Mixer-B/16", "img_size": 224},
            reads=("results/study/*.json",)),
        Job("claims", "claims", {"runs_dir": "runs/paper"},
            reads=("results/study/*.json", "runs/paper/**/protocol.json")),
        Job("autopsy", "autopsy", {"runs_dir": "runs/paper"}, reads=("results/study/*.json",)),
        Job("results", "results", {"runs_dir": "runs/paper"},
            reads=("runs/paper/**/results.json", "runs/paper/**/protocol.json",
                   "results/*.json")),
        _intro("runs/paper"),
    ],
    DRYRUN: [
        Job("architecture", "architecture"),
        Job("weights", "weights", {"weights": "imagenet21k", "img_size": 32}),
        *[_ft_job(DRYRUN, d, _dryrun_ft(d)) for d in PAPER_DATASETS],
        Job("permutation", "permutation", {"steps": 3, "train_limit": 200, "eval_limit": 100,
                                            "device": "cpu",
                                            "run_dir": f"{DRYRUN_ROOT}/permutation"}),
        Job("token_mixing", "token_mixing", {"checkpoint": "imagenet21k",
                                              "variant": "Mixer-B/16", "img_size": 32},
            reads=("results/study/*.json",)),
        Job("claims", "claims", {"runs_dir": "runs/paper-dryrun"},
            reads=("results/study/*.json", "runs/paper-dryrun/**/protocol.json")),
        Job("autopsy", "autopsy", {"runs_dir": "runs/paper-dryrun"},
            reads=("results/study/*.json",)),
        Job("results", "results", {"runs_dir": DRYRUN_ROOT},
            reads=(f"{DRYRUN_ROOT}/**/results.json", f"{DRYRUN_ROOT}/**/protocol.json",
                   "results/*.json")),
        _intro(DRYRUN_ROOT),
    ],
}


def prepare_dryrun(source_root: str) -> dict[str, str]:
    """Stand-in data, checkpoint and ReaL labels of the dry run; returns the data root and
    cache folder its chapters use (never the user's cache)."""
    from mixer_lib.dryrun import (
        make_standins,
        write_standin_checkpoint,
        write_standin_real_labels,
    )

    root, cache = REPO / DRYRUN_ROOT / "data", REPO / DRYRUN_ROOT / "cache"
    make_standins(root, source_root)
    jpeg = root / "cifar10-jpeg"  # the permutation chapter reads the CIFAR-10 JPEG copy
    if not jpeg.exists():
        jpeg.symlink_to((Path(source_root) / "cifar10-jpeg").resolve())
    for weights in (PAPER_RUN["weights"], "imagenet1k"):  # fine-tuned; classifies (weights)
        write_standin_checkpoint(PAPER_RUN["variant"], weights, cache,
                                 img_size=DRYRUN_RUN["img_size"])
    write_standin_real_labels(root, cache)
    return {"data_root": str(root), "cache_dir": str(cache)}


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
    h.update(json.dumps({**job.parameters, **extra, "title": job.title}, sort_keys=True).encode())
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
    present(out, job)
    stamp.write_text(digest)
    return True


CHAPTER_TOKEN = "CHAPTER"  # in figure names of a notebook executed more than once per build


def present(path: Path, job: Job) -> None:
    """Shape an executed chapter for readers: the notebook's default parameters are hidden and
    the parameters papermill injected are shown once, labelled as this build's; code is folded
    under its results (``hide-input``); the title names the dataset when the chapter is
    executed per dataset; figure names get the chapter's output name (unique labels)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags:
            tags.append("remove-cell")
        elif "injected-parameters" in tags:
            cell.source = cell.source.replace(
                "# Parameters",
                f"# Parameters of this build (defaults: notebooks/{job.notebook}.md)", 1)
        elif cell.cell_type == "code" and "show-input" not in tags and "hide-input" not in tags:
            tags.append("hide-input")
        if cell.cell_type == "markdown" and job.title and cell.source.startswith("# "):
            first, _, rest = cell.source.partition("\n")
            cell.source = f"# {job.title}\n{rest}"
        figure = cell.metadata.get("mystnb", {}).get("figure")
        if figure and CHAPTER_TOKEN in figure.get("name", ""):
            figure["name"] = figure["name"].replace(CHAPTER_TOKEN, job.output)
        if cell.cell_type == "markdown" and CHAPTER_TOKEN + "-" in cell.source:
            cell.source = cell.source.replace(CHAPTER_TOKEN + "-", job.output + "-")
    nbformat.write(nb, path)


def output_root(profile: str) -> Path:
    """Where ``jupyter-book`` writes a profile's ``_build/html``: ``book/`` for the quick and
    paper profiles, ``book/_build/<profile>/`` for the dry run (so it never replaces them)."""
    return REPO / "book" if profile in ("quick", "paper") else REPO / "book" / "_build" / profile


def html_dir(profile: str) -> Path:
    return output_root(profile) / "_build" / "html"


MATHJAX_PARTS = ("tex-chtml.js", "output/chtml", "input/tex", "ui", "a11y", "sre", "adaptors")


def install_mathjax(target: Path = REPO / "book" / "_mathjax" / "mathjax") -> Path:
    """Copy MathJax 3 (from the ``django-static-mathjax`` wheel, PyPI) into the book's static
    files, so equations render offline: ``_config.yml`` copies it to ``<html>/mathjax/`` (an
    extra path: jupyter-book would load every script of a static path on every page) and
    points Sphinx at it instead of a CDN. Returns the script's path."""
    import shutil

    import mathjax

    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    for part in MATHJAX_PARTS:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return target / "tex-chtml.js"


def build_html(profile: str = "quick") -> None:
    """``jupyter-book build`` with Sphinx warnings as errors (MathJax served locally)."""
    install_mathjax()
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(REPO), "--path-output",
           str(output_root(profile)), "-W", "-n", "--keep-going"]
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
    if args.profile == DRYRUN:
        made = prepare_dryrun(extra["data_root"])
        extra["data_root"] = made["data_root"]
        os.environ["MIXER_CACHE_DIR"] = made["cache_dir"]  # the chapters' kernels inherit it
        print(f"dry run: stand-in data in {made['data_root']}, stand-in checkpoint and ReaL "
              f"labels in {made['cache_dir']}; no number of this build is a result")
    # chapters of another profile must not be mixed into this build
    keep = {j.output for j in PROFILES[args.profile]}
    for old in CHAPTERS.glob("*.ipynb") if CHAPTERS.exists() else []:
        if old.stem not in keep:
            old.unlink()
            old.with_suffix(".inputs").unlink(missing_ok=True)
    t0 = time.perf_counter()
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.output} ({job.notebook}.md)", flush=True)
        t_job = time.perf_counter()
        try:
            ran = execute(job, extra, args.force)
        except NotebookFailed as err:
            print(f"\nBOOK BUILD STOPPED: {err}", file=sys.stderr)
            return 1
        print(f"    {'executed' if ran else 'up to date, skipped (use --force / FORCE=1)'}"
              f" in {time.perf_counter() - t_job:.0f}s [total {time.perf_counter() - t0:.0f}s]",
              flush=True)
    if not args.no_html:
        build_html(args.profile)
        print(f"book: {html_dir(args.profile) / 'index.html'} "
              f"[{time.perf_counter() - t0:.0f}s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
