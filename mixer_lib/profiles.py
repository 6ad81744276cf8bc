"""The book's profiles: which chapters run, with which parameters (``make book PROFILE=...``).

* ``quick``: a 2-core CPU, minutes. Its CIFAR-10 is, in this order, the real CIFAR-10 under
  the data root (downloaded by torchvision's format when the machine is online), else the
  CIFAR-10 JPEG copy; :func:`jobs_for` is given the one found, and each page says which.
* ``paper``: the paper's settings on GPUs (released weights, the protocol on five datasets);
  ``gpus`` > 1 runs each fine-tuning under torchrun. It never substitutes a dataset.
* ``paper-dryrun``: the paper profile's chapters and code path on tiny stand-ins.

Read by the book runner (:mod:`mixer_lib.book`) and the preflight (:mod:`mixer_lib.preflight`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mixer_lib.dryrun import PAPER_DATASETS
from mixer_lib.recipes import PAPER_RUN, QUICK_RUN, STANDIN_PREFIX


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


QUICK, PAPER, DRYRUN = "quick", "paper", "paper-dryrun"
DRYRUN_ROOT = f"runs/{DRYRUN}"
CIFAR_ORDER = ("cifar10", "cifar10-jpeg")  # the quick profile's CIFAR-10, first found wins

DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "pets": "Oxford-IIIT Pets",
                  "flowers102": "Oxford Flowers-102", "imagenet1k": "ImageNet",
                  "cifar10-jpeg": "CIFAR-10 (JPEG copy)"}


def _finetune(run: dict, dataset: str, profile: str, **extra: object) -> dict:
    return {**run, "dataset": dataset, "run_dir": f"runs/{profile}/finetune-{dataset}",
            **extra}


def _ft_job(profile: str, dataset: str, parameters: dict) -> Job:
    suffix = {QUICK: ", from scratch", DRYRUN: " (dry run)"}.get(profile, "")
    return Job("finetune", f"finetune-{dataset}", parameters,
               title=f"Fine-tuning: {DATASET_TITLES[dataset]}{suffix}")


# The dry run of the paper profile: the paper's chapters and code path (released-checkpoint
# name resolved in a cache, the protocol with sweep and repeats, Avg 5, the results table) on
# tiny stand-ins (mixer_lib.dryrun), a few updates each. Its numbers are labelled dry run.
DRYRUN_RUN = {**PAPER_RUN, "img_size": 32, "steps": 2, "batch_size": 8, "device": "cpu",
              "eval_limit": None}


def _dryrun_ft(dataset: str) -> dict:
    return {**DRYRUN_RUN, "dataset": STANDIN_PREFIX + dataset,
            "run_dir": f"{DRYRUN_ROOT}/finetune-{dataset}", "protocol": True,
            "grid": [0.01, 0.03], "repeats": 2, "download": False}


def _intro(runs_dir: str) -> Job:
    """The summary page, executed last: it reads the other chapters' records and timings."""
    return Job("intro", "intro", {"runs_dir": runs_dir},
               reads=("book/chapters/[!i]*.ipynb", "book/chapters/build.json",
                      f"{runs_dir}/**/protocol.json", "results/study/*.json",
                      "results/gpu-check-*.json"))


def _analysis(runs_dir: str) -> list[Job]:
    """Claims, scale, autopsy, results and the intro: built from the records whatever ran."""
    return [
        Job("claims", "claims", {"runs_dir": runs_dir},
            reads=("results/study/*.json", f"{runs_dir}/**/protocol.json")),
        Job("scale", "scale", {"runs_dir": runs_dir},
            reads=("results/study/*.json", f"{runs_dir}/**/protocol.json")),
        Job("autopsy", "autopsy", {"runs_dir": runs_dir}, reads=("results/study/*.json",)),
        Job("results", "results", {"runs_dir": runs_dir},
            reads=(f"{runs_dir}/**/results.json", f"{runs_dir}/**/protocol.json",
                   "results/*.json")),
        _intro(runs_dir),
    ]


def quick_jobs(cifar: str = "cifar10-jpeg") -> list[Job]:
    """The quick profile on ``cifar`` (``cifar10`` or ``cifar10-jpeg``)."""
    ft_dir = f"runs/quick/finetune-{cifar}"
    return [
        Job("architecture", "architecture"),
        Job("weights", "weights", {"dataset": cifar}),
        _ft_job(QUICK, cifar, _finetune(QUICK_RUN, cifar, QUICK)),
        Job("permutation", "permutation", {"dataset": cifar, "steps": 150,
                                            "train_limit": 5000, "eval_limit": 1000,
                                            "device": "cpu",
                                            "run_dir": f"runs/quick/permutation-{cifar}"},
            reads=("results/study/*.json",)),
        Job("token_mixing", "token_mixing",
            {"checkpoint": f"{ft_dir}/checkpoint.pt", "variant": "Mixer-T/4", "img_size": 32},
            reads=(f"{ft_dir}/checkpoint.pt", "results/study/*.json")),
        *_analysis("runs/quick"),
    ]


def paper_jobs(gpus: int = 1) -> list[Job]:
    """The paper profile; ``gpus`` processes per fine-tuning run (torchrun when > 1)."""
    return [
        Job("architecture", "architecture"),
        Job("weights", "weights", {"weights": "imagenet21k", "dataset": "cifar10"}),
        *[_ft_job(PAPER, d, _finetune(PAPER_RUN, d, PAPER, protocol=True, gpus=gpus))
          for d in PAPER_DATASETS],
        Job("permutation", "permutation", {"dataset": "cifar10", "steps": 2000,
                                            "train_limit": None, "eval_limit": None,
                                            "device": "cuda",
                                            "run_dir": "runs/paper/permutation"},
            reads=("results/study/*.json",)),
        Job("token_mixing", "token_mixing", {"checkpoint": "imagenet21k",
                                              "variant": "Mixer-B/16", "img_size": 224},
            reads=("results/study/*.json",)),
        *_analysis("runs/paper"),
    ]


def dryrun_jobs() -> list[Job]:
    return [
        Job("architecture", "architecture"),
        Job("weights", "weights", {"weights": "imagenet21k", "img_size": 32,
                                   "dataset": "cifar10-jpeg"}),
        *[_ft_job(DRYRUN, d, _dryrun_ft(d)) for d in PAPER_DATASETS],
        Job("permutation", "permutation", {"dataset": "cifar10-jpeg", "steps": 3,
                                            "train_limit": 200, "eval_limit": 100,
                                            "device": "cpu",
                                            "run_dir": f"{DRYRUN_ROOT}/permutation"}),
        Job("token_mixing", "token_mixing", {"checkpoint": "imagenet21k",
                                              "variant": "Mixer-B/16", "img_size": 32},
            reads=("results/study/*.json",)),
        *_analysis(DRYRUN_ROOT),
    ]


def jobs_for(profile: str, gpus: int = 1, cifar: str = "cifar10-jpeg") -> list[Job]:
    """The jobs of ``profile``; ``gpus`` applies to the paper profile, ``cifar`` to quick."""
    if profile == QUICK:
        return quick_jobs(cifar)
    if profile == PAPER:
        return paper_jobs(gpus)
    if profile == DRYRUN:
        return dryrun_jobs()
    raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILE_NAMES)}")


PROFILE_NAMES = (QUICK, PAPER, DRYRUN)
# The default form of each profile (quick on the JPEG copy, paper on one GPU).
PROFILES: dict[str, list[Job]] = {name: jobs_for(name) for name in PROFILE_NAMES}
