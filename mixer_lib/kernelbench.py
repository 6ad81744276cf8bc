"""The fused token-mixing kernel's records (:mod:`mixer_lib.token_kernel`), read for the Claims
chapter:

* ``results/perf/benchmark-token-kernel-configs-*.json``
  (``benchmarks/token_kernel_configs.py``): each tile shape alone on Mixer-B/16's shapes,
  its agreement with the float32 reference and its time;
* ``results/perf/benchmark-token-mixing-*.json`` (``benchmarks/token_mixing.py``): its
  ``check`` section, the kernel against the reference in whole models;
* ``results/perf/benchmark-perf-gpu-forms-*.json`` (``benchmarks/throughput.py --preset
  perf-gpu-forms``; before 2026-11-28 ``--preset perf-gpu``, ``benchmark-perf-gpu-*.json``),
  with ``Mixer-B/16@fused_token_mixing=false`` among the models: the whole model with and
  without the kernel, measured in one run;
* ``results/perf/benchmark-token-kernel-compiled-*.json``
  (``benchmarks/token_kernel_compiled.py``, no GPU needed): each tile shape compiled for an
  H100/H200, its registers, spills and the instructions that move its tiles.
"""

from __future__ import annotations

from pathlib import Path

from mixer_lib import kernel_compile
from mixer_lib.products import DTYPE_WORDS, OURS, PERF, UNFUSED, _latest, _title
from mixer_lib.provenance import read_records

# a tile shape's first entry (token_kernel.CONFIGS) -> how the table names it
FORM_NAMES = {"tokens": "tokens as rows", "channels": "channels as rows",
              "tma": "channels as rows, TMA"}


SHORT_NAMES = {"tokens": "pointers: tokens", "channels": "pointers: channels",
               "tma": "TMA: channels"}  # the same, where a table is wide


def _form(first: str | bool) -> str:
    """A config's form; records before the TMA form wrote True/False (channels as rows)."""
    if isinstance(first, bool):
        return "channels" if first else "tokens"
    return first


def _perf_gpu(folder: str | Path) -> list[dict]:
    """The ``perf-gpu`` and ``perf-gpu-forms`` throughput records in ``folder``, oldest
    first (both measure the bf16 matmul peak; either may hold ours without the kernel)."""
    return read_records(folder, "benchmark-perf-gpu-*.json",
                        lambda r: r.get("preset") in ("perf-gpu", "perf-gpu-forms"))


def shapes_table(folder: str | Path = PERF) -> tuple[list[str], list[list[str]]]:
    """One row per tile shape of the latest configs record: how the products are written,
    channel block, hidden-unit chunk, warps, pipeline stages, largest difference from the
    float32 reference, milliseconds and TFLOP/s of the kernel alone (or the error that
    stopped the shape)."""
    record = _latest(folder, "benchmark-token-kernel-configs-*.json")
    headers = ["products written", "channel block", "hidden chunk", "warps", "stages",
               "max |diff| from float32", "ms", "TFLOP/s"]
    if record is None:
        return headers, []
    out = []
    for r in record["results"]:
        form, block_c, block_h, warps, stages = r["config"]
        shape = [FORM_NAMES[_form(form)], str(block_c), str(block_h), str(warps), str(stages)]
        if "error" in r:
            out.append([*shape, f"failed: {r['error']}", "-", "-"])
            continue
        out.append([*shape, f"{r['max_abs_diff']:.3g}",
                    f"{r['ms']:.3f}" if "ms" in r else "-",
                    f"{r['tflops']:.0f}" if "tflops" in r else "-"])
    return headers, out


def checks_table(folder: str | Path = PERF) -> tuple[list[str], list[list[str]]]:
    """One row per model, dtype and form checked in any token-mixing record (the newest
    check of each, so that a run of ``--checks`` for one model keeps the others' rows): the
    largest differences of the kernel's and the reference's features from float32, between
    the two, the blocks that took the kernel, and the record."""
    headers = ["model, dtype", "kernel vs float32", "reference vs float32",
               "kernel vs reference", "blocks through the kernel", "record"]
    newest: dict[str, tuple[dict, dict]] = {}
    for record in read_records(folder, "benchmark-token-mixing-*.json",
                               lambda r: bool(r.get("check"))):  # oldest first
        for name, case in record["check"].items():
            newest[name] = (case, record)
    return headers, [[name, f"{c['fused_vs_float32']:.3g}", f"{c['reference_vs_float32']:.3g}",
                      f"{c['fused_vs_reference']:.3g}", f"{c['blocks_fused']} of {c['blocks']}",
                      _title(record)] for name, (c, record) in newest.items()]


def kernel_summary(folder: str | Path = PERF) -> dict[str, str]:
    """The figures the Claims chapter quotes: where the configs record was made
    (``tk_where``), its fastest shape's time and TFLOP/s (``tk_best_ms``, ``tk_best_tflops``)
    and share of the bf16 matmul peak measured by the throughput record of the same commit
    (``tk_best_share``); and from the latest ``perf-gpu`` or ``perf-gpu-forms`` record that
    measured the model without the kernel too, ours with the kernel over ours without,
    inference, eager (``tk_model``, with its record in ``tk_model_where``). "not measured"
    where a record is missing."""
    out = dict.fromkeys(("tk_where", "tk_best_ms", "tk_best_tflops", "tk_best_share",
                         "tk_model", "tk_model_where"), "not measured")
    record = _latest(folder, "benchmark-token-kernel-configs-*.json")
    timed = [r for r in (record or {}).get("results", []) if "tflops" in r]
    if timed:
        best = max(timed, key=lambda r: r["tflops"])
        out |= {"tk_where": _title(record), "tk_best_ms": f"{best['ms']:.3f} ms",
                "tk_best_tflops": f"{best['tflops']:.0f}"}
        commit = record["environment"].get("git_commit", "")[:40]
        same = [p for p in _perf_gpu(folder)
                if p["environment"].get("git_commit", "")[:40] == commit]
        peak = (same[0].get("matmul_peak_tflops_by_dtype") or {}).get("bf16") if same else None
        if peak:
            out["tk_best_share"] = f"{100 * best['tflops'] / peak:.0f} %"
    for perf in reversed(_perf_gpu(folder)):
        rows = {(r["model"], r["dtype"], r["batch"]): r for r in perf["rows"]
                if r["mode"] == "eager"}
        pairs = [(dtype, batch, rows[(OURS, dtype, batch)]["infer_img_s"]
                  / rows[(UNFUSED, dtype, batch)]["infer_img_s"])
                 for (model, dtype, batch) in rows if model == UNFUSED
                 and (OURS, dtype, batch) in rows]
        if pairs:
            out["tk_model"] = ", ".join(f"{q:.2f}x ({DTYPE_WORDS.get(d, d)}, batch {b})"
                                        for d, b, q in pairs)
            out["tk_model_where"] = _title(perf)
            break
    return out


def _compiled_record(folder: str | Path) -> dict | None:
    """The latest compiled-for-sm_90a record made by the Triton the latest GPU configs
    record ran (what the GPU compiled), else the latest of any Triton."""
    pattern = "benchmark-token-kernel-compiled-*.json"
    gpu = _latest(folder, "benchmark-token-kernel-configs-*.json")
    triton = ((gpu or {}).get("environment") or {}).get("triton")
    return (_latest(folder, pattern, keep=lambda r: r.get("triton") == triton)
            or _latest(folder, pattern))


def compiled_table(folder: str | Path = PERF, tokens: int = 196, gelu: str = "tanh",
                   x_dtype: str = "bf16") -> tuple[list[str], list[list[str]]]:
    """One row per tile shape of the latest compiled-for-sm_90a record at ``tokens`` tokens
    (Mixer-B/16: 196, padded to 256), ``gelu`` and the residual stream in ``x_dtype`` (bf16:
    what the model hands the kernel under bf16 autocast and with bf16 weights): registers
    per thread, bytes spilled per thread (stores), shared memory (marked where it exceeds
    what a program may have on an H100 or H200), and how often the PTX names each
    instruction that loads or multiplies tiles (loads the threads wait for, TMA copies,
    Hopper products); static counts, not executions. The record's Triton and target, and
    its Ampere-style asynchronous copies, are in :func:`compiled_summary`."""
    record = _compiled_record(folder)
    headers = ["form: rows", "tile (channels x hidden)", "warps, stages", "registers",
               "spilled bytes", "shared KiB", "ld.global", "TMA", "wgmma"]
    if record is None:
        return headers, []
    out = []
    for r in record["results"]:
        if (r["tokens"], r["gelu"], r["x_dtype"]) != (tokens, gelu, x_dtype):
            continue
        form, block_c, block_h, warps, stages = r["config"]
        shape = [SHORT_NAMES[_form(form)], f"{block_c} x {block_h}", f"{warps}, {stages}"]
        if "error" in r:
            out.append([*shape, f"failed: {r['error']}", *["-"] * 5])
            continue
        ins = r["instructions"]
        shared = f"{r['shared_bytes'] / 1024:.0f}"
        if r["shared_bytes"] > kernel_compile.SHARED_LIMIT:
            shared += f" (over {kernel_compile.SHARED_LIMIT // 1024})"
        out.append([*shape, str(r["registers"]), str(r["spill_stores"]), shared,
                    str(ins["ld.global"]),
                    str(ins["cp.async.bulk.tensor"]), str(ins["wgmma.mma_async"])])
    return headers, out


def compiled_summary(folder: str | Path = PERF) -> dict[str, str]:
    """What the Claims chapter quotes from the latest compiled record, over the cases with
    the stream in bf16 (the model's; both token heights and GELUs): per form, the range of
    spilled bytes per thread at 256 padded tokens (``tkc_<form>_spills``), the tile shapes
    that spill anywhere (``tkc_<form>_spilling``, "k of n"), those that spill at 64 padded
    tokens and the most they spill there (``tkc_<form>_short``), the most Ampere-style
    asynchronous copies (``cp.async``) any kernel of the form names
    (``tkc_<form>_cp_async``); for the TMA form with a float32 stream, the shapes that spill
    and the most they spill (``tkc_tma_fp32``); and the Triton that compiled them
    (``tkc_where``)."""
    record = _compiled_record(folder)
    out = {"tkc_where": "not measured", "tkc_tma_fp32": "not measured"}
    for form in ("pointers", "tma"):
        out |= {f"tkc_{form}_{key}": "not measured"
                for key in ("spills", "spilling", "short", "cp_async")}
    if record is None:
        return out
    out["tkc_where"] = f"Triton {record['triton']} for {record['arch']}, built on {_title(record)}"
    built = [r for r in record["results"] if "error" not in r]
    for form in ("pointers", "tma"):
        cases = [r for r in built if r["x_dtype"] == "bf16"
                 and (_form(r["config"][0]) == "tma") == (form == "tma")]
        if not cases:
            continue
        tall = [r["spill_stores"] for r in cases if r["block_tokens"] == 256]
        if tall:
            out[f"tkc_{form}_spills"] = _span(tall)
        shapes = {tuple(r["config"]) for r in cases}
        out[f"tkc_{form}_spilling"] = f"{len(_spilling(cases))} of {len(shapes)}"
        copies = max(r["instructions"]["cp.async.ca"] + r["instructions"]["cp.async.cg"]
                     for r in cases)
        out[f"tkc_{form}_cp_async"] = f"at most {copies} per kernel" if copies else "none"
        short = [r for r in cases if r["block_tokens"] == 64]
        if short:
            out[f"tkc_{form}_short"] = _shapes_spilling(short, len(shapes))
    wide = [r for r in built if r["x_dtype"] == "fp32" and _form(r["config"][0]) == "tma"]
    if wide:
        out["tkc_tma_fp32"] = _shapes_spilling(wide, len({tuple(r["config"]) for r in wide}))
    return out


def _span(values: list[int]) -> str:
    """``values`` as one number or their range."""
    return f"{min(values):,}" if min(values) == max(values) else f"{min(values):,}-{max(values):,}"


def _spilling(cases: list[dict]) -> set[tuple]:
    """The tile shapes among ``cases`` that spill in at least one."""
    return {tuple(r["config"]) for r in cases if r["spill_stores"]}


def _shapes_spilling(cases: list[dict], shapes: int) -> str:
    """"k of ``shapes`` shapes spill" among ``cases``, with the most bytes per thread."""
    few = _spilling(cases)
    most = max(r["spill_stores"] for r in cases)
    return (f"{len(few)} of {shapes} shapes spill"
            + (f", at most {most:,} bytes per thread" if few else ""))
