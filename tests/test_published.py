"""The published numbers: one module, each table with its source, values as printed."""

from __future__ import annotations

import mixer_lib.published as published


def test_every_table_names_where_it_is_printed():
    tables = {name for name, value in vars(published).items()
              if name.isupper() and isinstance(value, dict) and name != "SOURCES"}
    assert tables == set(published.SOURCES)
    assert all(published.SOURCES[name].strip() for name in tables)


def test_values_as_printed():
    """A few cells typed here from the printed tables (paper Table 3 and Table 2, the official
    README, the reproduction's table), against the module."""
    assert published.PAPER[("Mixer-B/16", "imagenet21k")] == {
        "imagenet1k": 80.64, "real": 85.80, "avg5": 92.50}
    assert published.PAPER[("Mixer-L/16", "imagenet1k")]["imagenet1k"] == 71.76
    assert published.PAPER_TABLE2_L16_448["avg5"] == 93.91
    assert published.PAPER_THROUGHPUT["Mixer-B/16"] == 1384
    assert published.PAPER_THROUGHPUT["ViT-B/16"] == 861
    assert published.OFFICIAL_README_CIFAR10[("Mixer-L/16", "imagenet21k")] == 98.34
    assert published.REPRODUCTION_REPORT[("Mixer-L/16", "imagenet21k")]["avg5"] == 88.70
    # the reproduction quotes Table 3's ImageNet-1k B/16 figure as the ImageNet-21k one
    assert published.REPRODUCTION_MISQUOTE[("Mixer-B/16", "imagenet21k")] == \
        published.PAPER[("Mixer-B/16", "imagenet1k")]["imagenet1k"]
