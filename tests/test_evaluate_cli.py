"""Released checkpoints evaluated with their own head (no fine-tuning), ReaL top-1, and the
top-5 ImageNet class names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mixer_lib.dryrun import write_standin_checkpoint
from mixer_lib.evaluate import imagenet_class_names, main, top5_classes
from mixer_lib.real import real_labels, real_top1, val_index


def make_imagenet_val(root, classes=1000, per_class=1):
    """An ImageNet validation folder (class folders, official file names)."""
    rng = np.random.default_rng(0)
    n = 0
    for c in range(classes):
        folder = root / "imagenet" / "val" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for _ in range(per_class):
            n += 1
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                folder / f"ILSVRC2012_val_{n:08d}.JPEG")
    return n


def test_real_top1_counts_only_images_with_labels():
    files = [f"x/ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3, 4)]
    labels = [[5], [1, 2], [], [7]] + [[]] * 10
    assert val_index(files[1]) == 1
    assert real_top1([5, 2, 9, 0], files, labels) == (pytest.approx(200 / 3), 3)
    with pytest.raises(ValueError, match="not named like an ImageNet validation image"):
        val_index("cat.jpg")


def test_real_labels_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path))
    import mixer_lib.download as ck

    def offline(*a, **k):
        raise ck.urllib.error.URLError("no network")

    monkeypatch.setattr(ck.urllib.request, "urlopen", offline)
    with pytest.raises(ck.CheckpointDownloadError, match=r"could not download .*real.json.*"
                                                         r"put it at .*real.json"):
        real_labels(progress=False)
    (tmp_path / "real.json").write_text(json.dumps([[1]] * 3))
    with pytest.raises(ValueError, match="is not the ReaL label file"):
        real_labels(progress=False)


def test_top5_names_are_imagenet_classes():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench"

    class Fixed(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(len(x), 1000)
            logits[:, 1], logits[:, 0] = 10.0, 9.0
            return logits

    top = top5_classes(Fixed(), torch.zeros(2, 3, 8, 8), names)
    assert [n for n, _ in top[0][:2]] == ["goldfish", "tench"] and top[0][0][1] > 0.5


def test_evaluate_cli_scores_a_released_checkpoint_with_its_head(tmp_path, monkeypatch,
                                                                  capsys):
    from mixer_lib.checkpoints import load_npz
    from mixer_lib.config import RunConfig
    from mixer_lib.data import build_split, sample_files
    from mixer_lib.model import create_model
    from mixer_lib.runtime import data_config

    cache = tmp_path / "cache"
    monkeypatch.setenv("MIXER_CACHE_DIR", str(cache))
    path = write_standin_checkpoint("Mixer-S/32", "gsam", cache, img_size=64)
    weights = dict(np.load(path))
    rng = np.random.default_rng(3)  # a head that is not zero: predictions differ per image
    weights["head/kernel"] = rng.normal(size=weights["head/kernel"].shape).astype(np.float32)
    weights["head/bias"] = rng.normal(size=weights["head/bias"].shape).astype(np.float32)
    np.savez(path, **weights)
    make_imagenet_val(tmp_path / "data")
    # the test's own predictions for the 20 images the command evaluates, prepared as it
    # prepares them (the default eval_crop, resize the shorter side + centre crop)
    cfg = RunConfig(dataset="imagenet1k", variant="Mixer-S/32", weights="gsam", img_size=64,
                    eval_crop="resmall_crop", eval_limit=20, data_root=str(tmp_path / "data"))
    test = build_split(data_config(cfg), "test")
    model = create_model("Mixer-S/32", num_classes=1000, img_size=64)
    load_npz(model, path)
    with torch.no_grad():
        preds = model(torch.stack([test[i][0] for i in range(len(test))])).argmax(1).tolist()
    # ReaL label sets by file number: of every four images, two sets hold the prediction, one
    # does not, one is empty (not counted): 2/3 of the counted, whatever the 20 images are,
    # only when each prediction meets the label set of its own file
    labels: list[list[int]] = [[] for _ in range(50_000)]
    counted = correct = 0
    for k, (file, pred) in enumerate(zip(sample_files(test), preds, strict=True)):
        index = int(file.rsplit("_", 1)[1].split(".")[0]) - 1
        if k % 4 < 2:
            labels[index], counted, correct = [pred, (pred + 1) % 1000], counted + 1, correct + 1
        elif k % 4 == 2:
            labels[index], counted = [(pred + 7) % 1000], counted + 1
    assert len(set(preds)) > 1 and counted == 15 and correct == 10
    (cache / "real.json").write_text(json.dumps(labels))
    out = tmp_path / "eval.json"
    assert main(["--variant", "Mixer-S/32", "--weights", "gsam", "--dataset", "imagenet1k",
                 "--img-size", "64", "--eval-limit", "20", "--data-root",
                 str(tmp_path / "data"), "--num-workers", "0", "--out", str(out),
                 "--no-progress"]) == 0
    record = json.loads(out.read_text())
    assert record["num_samples"] == 20 and record["fine_tuned"] is False
    assert record["num_real"] == counted
    assert record["real_top1"] == pytest.approx(100 * correct / counted)
    assert "new head" not in record["weights_report"]  # its own 1000-class head
    assert record["precision"] == "float32"  # auto on a CPU
    bf16 = tmp_path / "eval-bf16.json"
    assert main(["--variant", "Mixer-S/32", "--weights", "gsam", "--dataset", "imagenet1k",
                 "--img-size", "64", "--eval-limit", "20", "--data-root",
                 str(tmp_path / "data"), "--num-workers", "0", "--out", str(bf16),
                 "--no-progress", "--precision", "bf16-weights"]) == 0
    assert json.loads(bf16.read_text())["precision"] == "bf16 weights"
    with pytest.raises(SystemExit):
        main(["--variant", "Mixer-S/32", "--weights", "gsam", "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
    # a dataset whose classes do not match the head is refused before evaluating
    (tmp_path / "data" / "cifar10-jpeg").mkdir()
    assert main(["--variant", "Mixer-S/32", "--weights", "gsam", "--dataset", "cifar100",
                 "--data-root", str(tmp_path / "data"), "--no-progress"]) == 1
    assert "cifar100" in capsys.readouterr().err
    assert main(["--variant", "Mixer-S/32", "--weights", "random", "--dataset", "imagenet1k",
                 "--no-progress"]) == 2


def test_bf16_weights_change_few_predictions_of_a_trained_mixer(cifar_root):
    """What ``--precision bf16-weights`` costs in accuracy, on the study's trained Mixer-T/4
    (runs/study/e1-up-mixer, CIFAR-10 classes 0-4 at 32 px): its test predictions with the
    weights and activations in bf16 against float32, on 1,000 test images."""
    from mixer_lib.config import RunConfig
    from mixer_lib.data import build_split
    from mixer_lib.evaluate import evaluate
    from mixer_lib.model import create_model
    from mixer_lib.runtime import data_config
    from mixer_lib.sampling import make_eval_loader
    from tests.conftest import REPO

    checkpoint = torch.load(REPO / "runs" / "study" / "e1-up-mixer" / "checkpoint.pt",
                            map_location="cpu", weights_only=False)
    cfg = RunConfig(**{**checkpoint["config"], "data_root": str(cifar_root),
                       "eval_limit": 1000})
    test = build_split(data_config(cfg), "test")
    model = create_model(cfg.variant, num_classes=5, img_size=cfg.img_size)
    model.load_state_dict(checkpoint["model"])
    loader = make_eval_loader(test, 250, torch.device("cpu"), 0)
    full = evaluate(model, loader)
    half = evaluate(model.to(torch.bfloat16), loader)
    agree = (full.predictions == half.predictions).float().mean().item()
    assert full.num_samples == half.num_samples == 1000 and full.top1 > 60
    assert agree >= 0.97 and abs(full.top1 - half.top1) <= 1.5, (agree, full.top1, half.top1)


def test_unknown_precision_is_refused_before_any_data_is_read(tmp_path):
    from mixer_lib.config import ConfigError
    from mixer_lib.evaluate import evaluate_released

    with pytest.raises(ConfigError, match="unknown precision 'fp16'; choose one of auto, "
                                          "bf16, bf16-weights, fp32"):
        evaluate_released("Mixer-S/32", "gsam", data_root=str(tmp_path / "nothing-here"),
                          precision="fp16", progress=False)
