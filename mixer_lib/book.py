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
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from mixer_lib.bookhtml import REPO, build_html, html_dir
from mixer_lib.preflight import chapter_checks, profile_checks, table
from mixer_lib.profiles import (
    CIFAR_ORDER,
    DRYRUN,
    DRYRUN_ROOT,
    DRYRUN_RUN,
    PAPER,
    PROFILES,
    QUICK,
    Job,
    jobs_for,
)
from mixer_lib.recipes import PAPER_RUN

NOTEBOOKS = REPO / "notebooks"
CHAPTERS = REPO / "book" / "chapters"


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
    out = CHAPTERS / f"{job.output}.ipynb"
    stamp = CHAPTERS / f"{job.output}.inputs"
    digest = inputs_digest(job, extra)
    if not force and out.exists() and stamp.exists() and stamp.read_text() == digest:
        return False
    CHAPTERS.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    run_notebook(job.notebook, out, {**job.parameters, **extra}, f"{job.notebook}.md "
                 f"({job.output})")
    present(out, job)
    stamp.write_text(digest)
    return True


KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def run_notebook(notebook: str, out: Path, parameters: dict, name: str = "",
                 progress: bool = True) -> None:
    """``notebooks/<notebook>.md`` (jupytext) executed by papermill with ``parameters`` into
    ``out``, in the repository; :class:`NotebookFailed` names the failing cell."""
    import jupytext
    import papermill as pm

    source = out.with_name(out.stem + ".source.ipynb")
    nb = jupytext.read(NOTEBOOKS / f"{notebook}.md")
    nb.metadata["kernelspec"] = KERNELSPEC
    jupytext.write(nb, source)
    try:
        pm.execute_notebook(str(source), str(out), parameters=parameters, cwd=str(REPO),
                            kernel_name="python3", progress_bar=progress, log_output=False)
    except pm.PapermillExecutionError as err:
        raise NotebookFailed(
            f"notebook {name or notebook + '.md'} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"--- cell source ---\n{err.source}\n--- executed copy: {out}"
        ) from err
    finally:
        source.unlink(missing_ok=True)


def shown_paths(source: str) -> str:
    """Absolute paths in a parameters cell shown relative to the repository (the chapters run
    there), so a page does not print the folders of the machine that built it."""
    import re

    def relative(match: re.Match) -> str:
        path = Path(match[2])
        if not path.is_absolute():
            return match[0]
        return f"{match[1]}{os.path.relpath(path, REPO)}{match[1]}"

    return re.sub(r"""(['"])(/[^'"]*)\1""", relative, source)


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
            cell.source = shown_paths(cell.source.replace(
                "# Parameters",
                f"# Parameters of this build (defaults: notebooks/{job.notebook}.md)", 1))
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


def quick_cifar(root: str) -> str:
    """The quick profile's CIFAR-10 in its stated order: the real CIFAR-10 under the data
    root (fetched when the machine is online), else the CIFAR-10 JPEG copy; ``cifar10`` when
    neither can be had (its chapters then say how to get it)."""
    from mixer_lib.datasets import DataError, base_dataset

    for name in CIFAR_ORDER:
        try:
            base_dataset(name, "test", root, download=name == "cifar10")
            return name
        except DataError as err:
            print(f"quick profile: {name} not used ({str(err).split('. ')[0]})", flush=True)
    return CIFAR_ORDER[0]


def chapter_title(job: Job) -> str:
    """The page title: the job's, else the notebook's first heading."""
    if job.title:
        return job.title
    for line in (NOTEBOOKS / f"{job.notebook}.md").read_text().splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return job.output


QUICK_DATA_NOTE = ("The quick profile's CIFAR-10 is, in this order: the real CIFAR-10 under "
                   "the data root (downloaded when the machine is online), else the CIFAR-10 "
                   "JPEG copy (`<data root>/cifar10-jpeg/{train,test}/<class>/*.jpg`); "
                   "neither was found.")


def write_not_run(job: Job, missing: list, note: str = "") -> None:
    """The page of a chapter that was not run: what is missing and how to get it."""
    import nbformat

    rows = "\n".join(f"| {c.item} | {c.detail} | {c.fix} |" for c in missing)
    text = (f"# {chapter_title(job)}\n\n"
            f"**This chapter was not run in this build**: what it reads is not here. Once the "
            f"items below are in place, `make book` (or `python -m mixer_lib.book --only "
            f"{job.output}`) runs it; the rest of the book was built from what did run."
            f"{' ' + note if note else ''}\n\n"
            f"| missing | where it was looked for | how to get it |\n| --- | --- | --- |\n"
            f"{rows}\n")
    CHAPTERS.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    nb.metadata["kernelspec"] = KERNELSPEC
    nbformat.write(nb, CHAPTERS / f"{job.output}.ipynb")
    (CHAPTERS / f"{job.output}.inputs").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixer_lib.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--force", action="store_true", help="re-execute every notebook")
    parser.add_argument("--only", nargs="*", help="execute only these chapter outputs")
    parser.add_argument("--no-html", action="store_true", help="skip jupyter-book build")
    parser.add_argument("--gpus", type=int, default=1,
                        help="paper profile: GPUs per fine-tuning run (torchrun when > 1)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="paper profile: build with what is ready instead of stopping at "
                             "the preflight (chapters missing data show what is missing)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="override a parameter of the chapters that have it, e.g. "
                             "--only finetune-cifar10 --set steps=20 (JSON values; the "
                             "chapter checks them)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.set)
    except ValueError as err:
        parser.error(str(err))
    if args.gpus < 1:
        parser.error(f"--gpus must be >= 1; got {args.gpus}")
    extra = {"data_root": default_data_root(), "profile": args.profile}
    if args.profile == DRYRUN:
        made = prepare_dryrun(extra["data_root"])
        extra["data_root"] = made["data_root"]
        os.environ["MIXER_CACHE_DIR"] = made["cache_dir"]  # the chapters' kernels inherit it
        print(f"dry run: stand-in data in {made['data_root']}, stand-in checkpoint and ReaL "
              f"labels in {made['cache_dir']}; no number of this build is a result")
    cifar = quick_cifar(extra["data_root"]) if args.profile == QUICK else CIFAR_ORDER[0]
    profile_jobs = jobs_for(args.profile, args.gpus, cifar)
    if args.profile == PAPER:  # nothing is trained before everything is known to be there
        checks, _ = profile_checks(PAPER, args.gpus, extra["data_root"], jobs=profile_jobs)
        print(f"preflight of the paper profile ({args.gpus} GPU per run):\n{table(checks)}",
              flush=True)
        if not all(c.ok for c in checks) and not args.allow_missing:
            print(f"\nBOOK BUILD NOT STARTED: {sum(not c.ok for c in checks)} item(s) not "
                  f"ready (above, each with its fix). Nothing was trained. Fix them, or "
                  f"build what is ready with ALLOW_MISSING=1 (--allow-missing).",
                  file=sys.stderr)
            return 2
    jobs = [with_overrides(j, overrides) for j in profile_jobs
            if not args.only or j.output in args.only]
    # chapters of another profile must not be mixed into this build
    keep = {j.output for j in profile_jobs}
    for old in CHAPTERS.glob("*.ipynb") if CHAPTERS.exists() else []:
        if old.stem not in keep:
            old.unlink()
            old.with_suffix(".inputs").unlink(missing_ok=True)
    manifest_path = CHAPTERS / "build.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if manifest.get("profile") != args.profile:
        manifest = {}
    manifest.update(profile=args.profile, cifar=cifar if args.profile == QUICK else None,
                    gpus=args.gpus)
    chapters = {k: v for k, v in manifest.get("chapters", {}).items() if k in keep}
    t0 = time.perf_counter()
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {job.output} ({job.notebook}.md)", flush=True)
        t_job = time.perf_counter()
        missing = [c for c in chapter_checks(job, extra["data_root"]) if not c.ok]
        if missing:
            cifar_missing = args.profile == QUICK and any(
                c.item.startswith("data: cifar10") for c in missing)
            write_not_run(job, missing, QUICK_DATA_NOTE if cifar_missing else "")
            chapters[job.output] = {"status": "not run", "missing": [asdict(c) for c in missing]}
            print("    NOT RUN: " + "; ".join(f"{c.item}: {c.detail}" for c in missing),
                  flush=True)
            _write_manifest(manifest_path, manifest, chapters)
            continue
        try:
            ran = execute(job, extra, args.force)
        except NotebookFailed as err:
            print(f"\nBOOK BUILD STOPPED: {err}", file=sys.stderr)
            return 1
        chapters[job.output] = {"status": "executed" if ran else "up to date"}
        _write_manifest(manifest_path, manifest, chapters)
        print(f"    {'executed' if ran else 'up to date, skipped (use --force / FORCE=1)'}"
              f" in {time.perf_counter() - t_job:.0f}s [total {time.perf_counter() - t0:.0f}s]",
              flush=True)
    if not args.no_html:
        build_html(args.profile)
        print(f"book: {html_dir(args.profile) / 'index.html'} "
              f"[{time.perf_counter() - t0:.0f}s]")
    return 0


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["steps=20", "device=cpu"]`` -> ``{"steps": 20, "device": "cpu"}`` (JSON values,
    else text)."""
    out: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes NAME=VALUE; got {item!r}")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def with_overrides(job: Job, overrides: dict[str, object]) -> Job:
    """``job`` with the overridden parameters it has."""
    changed = {k: v for k, v in overrides.items() if k in job.parameters}
    return dataclasses.replace(job, parameters={**job.parameters, **changed}) if changed else job


def _write_manifest(path: Path, manifest: dict, chapters: dict) -> None:
    """``book/chapters/build.json``: the profile and each chapter's status (the intro lists
    the chapters that were not run, with what they miss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**manifest, "chapters": chapters}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
