"""RunConfig validation: every bad value is refused with its option, value and range, before
any folder is written; the run identity leaves out how a run is executed."""

from __future__ import annotations

import pytest

from mixer_lib.config import ConfigError, RunConfig, differences, experiment
from mixer_lib.train import main

# (CLI flags, message the error must contain); the values of the issue report and more.
BAD_CLI = [
    (["--lr", "-1"], "lr must be > 0; got -1"),
    (["--lr", "0"], "lr must be > 0; got 0"),
    (["--batch-size", "0"], "batch_size must be >= 1; got 0"),
    (["--eval-every", "0"], "eval_every must be >= 1; got 0"),
    (["--train-limit", "-5"], "train_limit must be >= 1; got -5"),
    (["--img-size", "30"], "img_size 30 is not a multiple of Mixer-T/4's patch size 4; "
                           "use e.g. 28 or 32"),
    (["--drop-rate", "1.5"], "drop_rate must be >= 0 and < 1; got 1.5"),
    (["--steps", "-3"], "steps must be >= 1; got -3"),
    (["--steps", "0"], "steps must be >= 1; got 0"),
    (["--mixup-alpha", "-1"], "mixup_alpha must be >= 0; got -1"),
    (["--steps", "ten"], "steps must be an integer; got the text 'ten'"),
    (["--steps", "2.5"], "steps must be an integer; got 2.5"),
    (["--lr", "nan"], "lr must be a number; got nan"),
    (["--momentum", "1"], "momentum must be >= 0 and < 1; got 1"),
    (["--checkpoint-every", "0"], "checkpoint_every must be >= 1; got 0"),
    (["--log-every", "-1"], "log_every must be >= 1; got -1"),
    (["--accum-steps", "0"], "accum_steps must be >= 1; got 0"),
    (["--warmup-steps", "-1"], "warmup_steps must be >= 0; got -1"),
    (["--num-workers", "-2"], "num_workers must be >= 0; got -2"),
    (["--seed", "-1"], "seed must be >= 0; got -1"),
    (["--grad-clip", "-0.5"], "grad_clip must be >= 0; got -0.5"),
    (["--drop-path-rate", "1"], "drop_path_rate must be >= 0 and < 1; got 1"),
    (["--eval-limit", "0"], "eval_limit must be >= 1; got 0"),
    (["--weight-decay", "-0.1"], "weight_decay must be >= 0; got -0.1"),
    (["--randaugment", "2"], "randaugment must be 'num_ops,magnitude'"),
    (["--recipe", "nope"], "unknown recipe 'nope'; choose one of finetune, scratch"),
    (["--eval-crop", "zoom"], "unknown eval_crop 'zoom'; choose one of resmall_crop, resize"),
    (["--permutation", "patch_pixel", "--permutation-patch", "3"],
     "permutation_patch 3 does not divide img_size 32"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_CLI, ids=[" ".join(f) for f, _ in BAD_CLI])
def test_cli_refuses_bad_values_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    argv = ["--out", str(out), "--dataset", f"imagefolder:{tmp_path / 'no-data'}", "--variant",
            "Mixer-T/4", "--img-size", "32", "--no-progress", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()  # no folder written, no data read (the data folder is missing)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("steps", "ten", "steps must be an integer; got the text 'ten'"),
    ("lr", "fast", "lr must be a number; got the text 'fast'"),
    ("batch_size", True, "batch_size must be an integer; got True"),
    ("compile", "maybe", "compile must be true or false; got 'maybe'"),
    ("dataset", 3, "dataset must be text; got 3"),
    ("img_size", None, "img_size needs a value; got None"),
    ("variant", "Mixer-Q/3", "unknown Mixer variant 'Mixer-Q/3'"),
    ("dataset", "imagenet22k", "unknown dataset 'imagenet22k'"),
    ("weights", "imagenet22k", "unknown weights 'imagenet22k'"),
])
def test_papermill_style_values_are_checked(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**{field: value})


def test_numbers_given_as_text_are_converted():
    cfg = RunConfig(steps="10", lr="0.03", batch_size="8", train_limit="None", compile="false",
                    img_size=224.0)
    assert (cfg.steps, cfg.lr, cfg.batch_size, cfg.train_limit, cfg.compile, cfg.img_size) == \
        (10, 0.03, 8, None, False, 224)
    assert isinstance(cfg.img_size, int)


def test_identity_ignores_how_a_run_is_executed():
    a = RunConfig(dataset="cifar10", data_root="/old/checkout/data", num_workers=2,
                  device="cpu", eval_every=100)
    b = RunConfig(dataset="cifar10", data_root="/new/place/data", num_workers=8,
                  device="cuda:1", eval_every=250)
    assert experiment(a) == experiment(b)
    c = RunConfig(dataset="cifar10", lr=0.01)
    assert differences(experiment(a), experiment(c)) == {"lr": (0.03, 0.01)}
    # defaults filled in count as given: lr=None resolves to the recipe's 0.03
    assert experiment(RunConfig(dataset="cifar10", lr=0.03)) == experiment(a)


def test_presets_fill_the_paper_protocol():
    ft = RunConfig(dataset="pets").resolved()
    assert (ft.steps, ft.warmup_steps, ft.eval_crop) == (500, 100, "resmall_crop")
    assert RunConfig(recipe="scratch").resolved().eval_crop == "resize"


def test_cli_takes_no_abbreviated_options(tmp_path, capsys):
    """``--lr`` must never be read as another option that starts the same (``--lr-lead``)."""
    import pytest

    from mixer_lib.train import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--out", str(tmp_path), "--lr-l", "1"])
    assert "unrecognized arguments" in capsys.readouterr().err
