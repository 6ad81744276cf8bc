"""What the fine-tuning chapter runs and shows: one run, or the paper's whole protocol, on the
dataset asked for (or its labelled stand-in), and its summary as the book prints it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from html import escape
from pathlib import Path

from mixer_lib.config import RunConfig
from mixer_lib.datasets import resolve_dataset
from mixer_lib.protocol import parse_grid, positive_int, run_one, run_protocol
from mixer_lib.records import html_table, measured

DRY_RUN_BANNER = ("DRY RUN: the data are tiny stand-ins made from CIFAR-10 JPEGs and the "
                  "weights a random stand-in; no number on this page is a result.")


@dataclass(frozen=True)
class Reproduction:
    """A finished chapter run: its config, the protocol record (None for a single run), the
    result record of the run shown (the protocol's first final run), its folder, whether it
    is a dry run, and the record's path."""

    cfg: RunConfig
    protocol: dict | None
    result: dict
    shown_run: Path
    dry: bool
    record_path: str

    def sweep_table(self) -> tuple[list[str], list[list]]:
        """The learning-rate sweep: rate, dev top-1, which was chosen."""
        p = self.protocol or {"dev_top1": {}}
        return (["learning rate", "dev top-1 (%)", ""],
                [[lr, measured(top1, None, self.dry),
                  "chosen" if float(lr) == p.get("chosen_lr") else ""]
                 for lr, top1 in p["dev_top1"].items()])

    def summary_html(self) -> str:
        """The result in two or three paragraphs: the protocol's mean over final runs (with
        ReaL where measured), the run shown, its data, weights and environment."""
        parts = []
        p, r, dry = self.protocol, self.result, self.dry
        if p:
            real = (f"; ReaL top-1 {measured(p['real_top1_mean'], p['real_top1_std'], dry)}%"
                    if "real_top1_mean" in p else "")
            parts.append(
                "<p>Learning-rate sweep, dev top-1 (training split less its dev slice):</p>"
                + html_table(*self.sweep_table())
                + f"<p><b>{escape(p['variant'])}</b> ({escape(p['weights'])}) on "
                f"<b>{escape(p['dataset'])}</b>, lr {p['chosen_lr']:g}, {len(p['test_top1'])} "
                f"final runs on the whole training split: test top-1 <b>"
                f"{measured(p['test_top1_mean'], p['test_top1_std'], dry)}%</b> (runs: "
                f"{', '.join(measured(v, None, dry) for v in p['test_top1'])}){real}. Record: "
                f"<code>{escape(self.record_path)}</code>.</p>")
        env = r["environment"]
        parts.append(
            f"<p>{'Final run (seed 0): ' if p else ''}<b>{escape(r['variant'])}</b> "
            f"({escape(r['weights'])} weights, {r['recipe']} recipe) on "
            f"<b>{escape(r['dataset'])}</b>: {r['eval_split']} top-1 "
            f"<b>{measured(r['top1'], None, dry)}%</b>, top-5 {measured(r['top5'], None, dry)}% "
            f"on {r['num_eval']} images after {r['steps']} updates of batch "
            f"{r['config']['batch_size']}.</p><p>Data: {escape(r['data'])}.<br>Weights: "
            f"{escape(r['weights_report'])}.<br>Run: {escape(env['device'])}, torch "
            f"{env['torch']}, commit {env['git_commit']}, {env['date']}, "
            f"{r['wall_time_s'] / 60:.1f} min. Record: "
            f"<code>{escape(str(self.shown_run / 'results.json'))}</code>.</p>")
        return "".join(parts)


def published_beside(variant: str, weights: str, dataset: str) -> list[tuple[str, float]]:
    """The published figures a fine-tuning of ``variant`` from ``weights`` on ``dataset`` can
    be set beside, each named with its source and how it was evaluated: Table 3's ImageNet
    top-1 (resize the smaller side, crop), the official README's CIFAR-10 (plain resize)."""
    from mixer_lib.published import OFFICIAL_README_CIFAR10, PAPER

    base = dataset.removeprefix("standin:")
    out = []
    if base == "imagenet1k" and (variant, weights) in PAPER:
        out.append(("paper Table 3, ImageNet top-1 (smaller side resized, centre crop)",
                    PAPER[variant, weights]["imagenet1k"]))
    if base == "cifar10" and (variant, weights) in OFFICIAL_README_CIFAR10:
        out.append(("official README, CIFAR-10 (plain resize)",
                    OFFICIAL_README_CIFAR10[variant, weights]))
    return out


def verdict_html(rep: Reproduction) -> str:
    """This chapter's answer: our protocol's test top-1 beside each published figure for the
    same model, pre-training and dataset (evaluated as that figure was), or why there is none
    to compare with."""
    p = rep.protocol
    figures = published_beside(rep.cfg.variant, rep.cfg.weights, rep.cfg.dataset)
    if not p or not figures:
        why = ("this run is not the paper's protocol (a sweep of the learning rate on the dev "
               "slice, then repeats)" if not p else
               f"no per-dataset figure is published for {rep.cfg.variant} from "
               f"{rep.cfg.weights} on {rep.cfg.dataset} (Table 3 prints ImageNet and the "
               f"average over five datasets, on the intro)")
        return f"<p>No published figure to compare with: {escape(why)}.</p>"
    rows = []
    for source, figure in figures:
        resized = "plain resize" in source
        mean = p.get("test_top1_resize_mean") if resized else p["test_top1_mean"]
        std = p.get("test_top1_resize_std") if resized else p["test_top1_std"]
        rows.append([source, f"{figure:.2f}", measured(mean, std, rep.dry),
                     f"{mean - figure:+.2f}" if mean is not None and not rep.dry else None])
    return html_table(["published figure", "published", "ours (mean ± std)", "gap"], rows)


def reproduce(cfg: RunConfig, run_dir: str | Path, *, protocol: bool = False,
              grid: object = None, repeats: object = 3, gpus: object = 1,
              stand_in: bool = False, overwrite: bool = False) -> Reproduction:
    """Check the options, resolve the dataset (fetching it, or its labelled stand-in only with
    ``stand_in``), then run: the paper's protocol (sweep ``grid`` on the dev slice, choose,
    ``repeats`` final runs), or one run (on ``gpus`` processes). A finished run is reused;
    another experiment in ``run_dir`` is refused unless ``overwrite``, which moves it aside."""
    grid, repeats, gpus = parse_grid(grid), positive_int("repeats", repeats), \
        positive_int("gpus", gpus)
    resolved, note = resolve_dataset(cfg.dataset, cfg.data_root, cfg.download,
                                     stand_in=stand_in)
    print(note or f"dataset: {resolved}")
    cfg = dataclasses.replace(cfg, dataset=resolved,
                              lr=None if protocol else cfg.lr,
                              eval_every=max(1, cfg.resolved().steps // 4))
    dry = cfg.dataset.startswith("standin:")
    if dry:
        print(DRY_RUN_BANNER)
    record = None
    if protocol:
        record = run_protocol(cfg, run_dir, grid, repeats, gpus, progress=False)
        shown = Path(record["runs"]["final"][0])
    else:
        if gpus > 1:
            run_one(cfg, Path(run_dir), gpus, progress=False)
        else:
            from mixer_lib.train import run_or_resume

            run_or_resume(cfg, run_dir, progress=False, overwrite=overwrite)
        shown = Path(run_dir)
    result = json.loads((shown / "results.json").read_text())
    return Reproduction(cfg, record, result, shown, dry, f"{run_dir}/protocol.json")
