"""The permutation chapter's E3 table, figure values and sentences from synthetic records."""

from __future__ import annotations

import pytest

from mixer_lib.invariance import invariance
from tests.test_claims import full_records


def test_invariance_reads_each_group_against_no_shuffle():
    e3 = invariance(full_records())
    assert e3.complete()
    assert e3.means["Mixer-T/4"]["none"] == pytest.approx(50.0)
    assert e3.means["ResNet-S"]["patch_pixel"] == pytest.approx(45.0)
    assert e3.changes["e3_resnet_patch_pixel"].startswith("-15.0 ± ")
    assert e3.changes["e3_mixer_patch_pixel"].startswith("+0.0 ± ")
    header, rows = e3.table()
    assert header[3] == "change vs none" and rows[0] == ["mixer", "none", "50.00", "",
                                                         "2 seeds"]


def test_a_missing_seed_makes_its_group_pending():
    records = full_records()
    del records["e3-mixer-global-s1"]
    e3 = invariance(records)
    assert not e3.complete() and e3.changes["e3_mixer_global"] == "(pending)"
    assert ["mixer", "global", None, None, "pending"] in e3.rows
