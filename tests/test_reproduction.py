"""The fine-tuning chapter's run (one run, or the paper's protocol) and its summary."""

from __future__ import annotations

import pytest

from mixer_lib.config import ConfigError, RunConfig
from mixer_lib.reproduction import reproduce
from tests.test_data import make_image_folder


def _cfg(root, **kw) -> RunConfig:
    base = dict(dataset=f"imagefolder:{root}", variant="Mixer-T/4", img_size=16,
                recipe="scratch", steps=2, batch_size=4, num_workers=0, lr=0.01)
    return RunConfig(**{**base, **kw})


def test_one_run_then_its_reuse_and_summary(tmp_path, capsys):
    root = make_image_folder(tmp_path / "d", per_class=4)
    run = reproduce(_cfg(root), tmp_path / "run")
    assert run.protocol is None and not run.dry and run.shown_run == tmp_path / "run"
    assert run.result["steps"] == 2 and run.cfg.eval_every == 1  # a quarter of the updates
    html = run.summary_html()
    assert "<b>Mixer-T/4</b>" in html and "test top-1" in html
    assert str(tmp_path / "run" / "results.json") in html and "Learning-rate sweep" not in html
    again = reproduce(_cfg(root), tmp_path / "run")  # finished: reused, same record
    assert again.result == run.result
    assert f"dataset: imagefolder:{root}" in capsys.readouterr().out


def test_protocol_sweeps_chooses_and_repeats(tmp_path):
    root = make_image_folder(tmp_path / "d", per_class=20)  # a dev slice of one image
    run = reproduce(_cfg(root, recipe="finetune"), tmp_path / "p", protocol=True,
                    grid="0.01,0.03", repeats=1)
    assert run.protocol["chosen_lr"] in (0.01, 0.03) and run.cfg.lr is None
    header, rows = run.sweep_table()
    assert [r[0] for r in rows] == list(run.protocol["dev_top1"])
    assert sum(r[2] == "chosen" for r in rows) == 1
    html = run.summary_html()
    assert "Learning-rate sweep" in html and "Final run (seed 0)" in html
    assert f"{tmp_path / 'p'}/protocol.json" in html


def test_bad_options_fail_before_any_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match="repeats"):
        reproduce(_cfg(tmp_path / "missing"), tmp_path / "r", repeats="three")
    assert not (tmp_path / "r").exists()


def test_verdict_sets_each_published_figure_beside_ours_evaluated_as_it_was(tmp_path):
    from mixer_lib.reproduction import Reproduction, published_beside, verdict_html

    assert [s for s, _ in published_beside("Mixer-B/16", "imagenet21k", "cifar10")] == [
        "official README, CIFAR-10 (plain resize)"]
    assert published_beside("Mixer-B/16", "imagenet21k", "imagenet1k")[0][1] == 80.64
    assert published_beside("Mixer-T/4", "random", "cifar10") == []
    cfg = RunConfig(dataset="cifar10", variant="Mixer-B/16", weights="imagenet21k")
    protocol = {"test_top1_mean": 97.5, "test_top1_std": 0.1, "test_top1_resize_mean": 97.0,
                "test_top1_resize_std": 0.2}
    html = verdict_html(Reproduction(cfg, protocol, {}, tmp_path, False, ""))
    assert "97.00 ± 0.20" in html and "96.82" in html and "+0.18" in html
    assert "97.50" not in html  # the README's figure is set beside the resized evaluation
    none = verdict_html(Reproduction(cfg, None, {}, tmp_path, False, ""))
    assert "not the paper&#x27;s protocol" in none
