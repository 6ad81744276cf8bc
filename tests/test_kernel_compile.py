"""mixer_lib.kernel_compile: the fused token-mixing kernel built for an H100/H200 (sm_90a) on
this CPU, and ptxas's report read back. What it reports is the pinned Triton's compile, so
the tests check structure (which instructions move the tiles) and the property the TMA
tile shapes were chosen for (no spills), not exact register counts."""

from __future__ import annotations

import pytest
import torch

from mixer_lib import kernel_compile, token_kernel

PTXAS = """ptxas info    : Compiling entry function 'k' for 'sm_90a'
ptxas info    : Function properties for k
    1020 bytes stack frame, 988 bytes spill stores, 1196 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 1020 bytes cumulative stack size"""


def test_ptxas_report_is_parsed():
    assert kernel_compile.parse_ptxas(PTXAS) == {"registers": 255, "spill_stores": 988,
                                                 "spill_loads": 1196}
    with pytest.raises(ValueError, match="no register or spill line"):
        kernel_compile.parse_ptxas("ptxas fatal   : Unresolved extern function")


def test_the_pointer_form_loads_through_registers_and_the_tma_form_through_tma():
    pointers = kernel_compile.compile_config(token_kernel.configs_of("pointers")[0], 196, False)
    tma = kernel_compile.compile_config(token_kernel.configs_of("tma")[0], 196, False)
    for report in (pointers, tma):
        assert 0 < report["registers"] <= 255 and report["shared_bytes"] > 0
        assert report["instructions"]["wgmma.mma_async"] > 0  # Hopper's products, both
        assert report["instructions"]["mma.sync"] == 0
    assert pointers["instructions"]["cp.async.bulk.tensor"] == 0
    assert pointers["instructions"]["ld.global"] > 100  # every tile element's load
    assert tma["instructions"]["cp.async.bulk.tensor"] > 0
    assert tma["instructions"]["ld.global"] < pointers["instructions"]["ld.global"] / 5


@pytest.mark.parametrize("exact", [False, True])
def test_every_tma_tile_shape_compiles_without_spills_at_256_padded_tokens(exact):
    """The property CONFIGS' comment states for the TMA shapes, at Mixer-B/16's tokens, with
    the stream in bf16 as the model hands it to the kernel; each fits a program's shared
    memory on an H100/H200."""
    for config in token_kernel.configs_of("tma"):
        report = kernel_compile.compile_config(config, 196, exact, torch.bfloat16)
        assert report["spill_stores"] == report["spill_loads"] == 0, config
        assert report["shared_bytes"] <= kernel_compile.SHARED_LIMIT, config


def test_with_a_float32_stream_every_tma_shape_fits_and_some_spill_nothing():
    """A float32 stream (not the model's, but the op takes it): every TMA shape still fits
    in shared memory, the few that spill spill little, and the autotuner, which keys its
    choice on the dtypes, has shapes that spill nothing to choose from."""
    clean = 0
    for config in token_kernel.configs_of("tma"):
        report = kernel_compile.compile_config(config, 196, False, torch.float32)
        assert report["shared_bytes"] <= kernel_compile.SHARED_LIMIT, config
        assert report["spill_stores"] < 256, config
        clean += report["spill_stores"] == 0
    assert clean >= 2


def test_the_tma_forms_autotuner_keys_on_the_streams_element_size():
    """A descriptor carries no dtype Triton's autotuner could key on (a pointer does), so the
    TMA kernel takes the element sizes as arguments that key it."""
    tuned = token_kernel._tuned_tma_kernel
    assert {"X_SIZE", "Y_SIZE"} <= set(tuned.keys) <= set(tuned.arg_names)


def test_an_ampere_target_has_no_hopper_products():
    report = kernel_compile.compile_config(token_kernel.configs_of("pointers")[2], 49, False,
                                           arch=80)
    assert report["instructions"]["wgmma.mma_async"] == 0
    assert report["instructions"]["mma.sync"] > 0
