"""The two fused inference paths that wait on a GPU measurement, read from the GPU records as
the decisions they are for (issue 17; ``scripts/perf-on-gpu.sh`` prints them last):

* the channel MLP's dense layer with its bias and GELU in one cuBLASLt call
  (:mod:`mixer_lib.dense_gelu`, ``MixerConfig.fused_dense_gelu``, on by default on CUDA,
  without autocast): does the call compute the tanh GELU (``dense_gelu_float32`` of the
  token-mixing record), and is the model with bf16 weights faster with it (preset
  ``perf-gpu-forms``, ``Mixer-B/16@fused_dense_gelu=false``)? Under bf16 autocast it was
  slower (0.92x, H200, 2f7240f) and no longer applies there; that ratio is reported, not
  decided on.
* the token-mixing kernel's TMA form (:mod:`mixer_lib.token_kernel`,
  ``MixerConfig.token_kernel_form``, ``"tma"`` since the H200 records of 2f7240f): is it
  faster than the pointer form alone (the configs record), in the whole model
  (``Mixer-B/16@token_kernel_form=tma`` against ``...=pointers``, or against ``Mixer-B/16``
  in records made while the pointer form was the default), and as close to float32 (the
  token-mixing record's ``check``)?

Only records made on a GPU count. Each finding names its record; a missing one reads "not
yet". The defaults stay decisions made in code (:class:`MixerConfig`); this
module says what the records support and the Claims chapter quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from mixer_lib.kernelbench import _form
from mixer_lib.model import MODEL_FORM, MixerConfig
from mixer_lib.products import DTYPE_WORDS, OURS, PERF, VIT, _latest, _title
from mixer_lib.throughputs import MODEL_FORMS, form_rank, of_current_form, peak_share

TMA_MODEL = f"{OURS}@token_kernel_form=tma"
POINTERS_MODEL = f"{OURS}@token_kernel_form=pointers"
UNFUSED_GELU = f"{OURS}@fused_dense_gelu=false"
TANH_TOL = 1e-5  # float32 rounding of a GELU of pre-activations of a few units
SAME_SPEED = 0.02  # ratios within 2 % of 1 are noise between two rows of one run
CLOSE_TO_FLOAT32 = 1.5  # TMA's largest difference from float32 at most this x the pointers'
NOT_YET = "not yet"  # a finding no GPU record holds


def _gpu(record: dict) -> bool:
    return not str(record["environment"].get("device", "cpu")).startswith("cpu")


def _default(field: str):
    return next(f.default for f in dataclasses.fields(MixerConfig) if f.name == field)


def _speed(q: float) -> str:
    """A speed ratio in words: faster, slower or the same within :data:`SAME_SPEED`."""
    if abs(q - 1) <= SAME_SPEED:
        return f"{q:.2f}x, the same within noise"
    return f"{q:.2f}x, {'faster' if q > 1 else 'slower'}"


def _forms_record(folder: str | Path) -> dict | None:
    return _latest(folder, "benchmark-perf-gpu-forms-*.json", "perf-gpu-forms", _gpu)


def _model_ratios(record: dict, model: str, base: str) -> tuple[dict[str, float], int | None]:
    """``model``'s inference images/s over ``base``'s per dtype, eager, at the smallest batch
    of ``record``'s rows (the preset measures one), and that batch."""
    rows = {(r["model"], r["dtype"], r["batch"]): r["infer_img_s"] for r in record["rows"]
            if r["mode"] == "eager" and r.get("infer_img_s")}
    batch = min((b for _, _, b in rows), default=None)
    return {dtype: rows[(model, dtype, b)] / rows[(base, dtype, b)]
            for (name, dtype, b) in rows if name == model and b == batch
            and (base, dtype, b) in rows}, batch


def _pointers_row(record: dict) -> str | None:
    """The forms record's row of the pointer form: named, or ``Mixer-B/16`` itself in a
    record made while it was the default (a model form before ``gemm-stem-tma``)."""
    if any(r["model"] == POINTERS_MODEL for r in record["rows"]):
        return POINTERS_MODEL
    return OURS if form_rank(record) < list(MODEL_FORMS).index("gemm-stem-tma") else None


def _in_model(folder: str | Path, model: str, base: str | None,
              dtype: str = "bf16") -> tuple[str, float | None, bool]:
    """The words for ``model`` against ``base`` (None: the record's pointer-form row) in the
    latest GPU forms record, its ratio in ``dtype`` (None when not measured) and whether a
    measurement of ``model`` failed there (the record's ``failed``)."""
    record = _forms_record(folder)
    if record is None:
        return NOT_YET, None, False
    base = base or _pointers_row(record) or POINTERS_MODEL
    ratios, batch = _model_ratios(record, model, base)
    failed = [f["error"] for f in record.get("failed", []) if f" {model} " in f"{f['what']} "]
    words = [f"{DTYPE_WORDS.get(d, d)} {_speed(q)}" for d, q in ratios.items()]
    words += [f"{len(failed)} measurement(s) failed (first: {failed[0]})"] if failed else []
    if not words:
        return NOT_YET, None, False
    where = _title(record) + (f", batch {batch}" if ratios else "")
    return f"{', '.join(words)} ({where})", ratios.get(dtype), bool(failed)


def gelu_epilogue(folder: str | Path = PERF) -> dict:
    """The finding on the one-call dense layer and GELU: ``agrees`` (True, False or None when
    not checked), ``check`` and ``speed`` (sentences), ``ratio`` (with bf16 weights, where it
    applies; or None), ``failed`` (a measurement of the model with it failed)."""
    record = _latest(folder, "benchmark-token-mixing-*.json",
                     keep=lambda r: _gpu(r) and "dense_gelu_float32" in r)
    agrees, check = None, NOT_YET
    if record:
        g = record["dense_gelu_float32"]
        agrees = g["vs_tanh"] <= TANH_TOL
        what = ("the tanh GELU to float32 rounding" if agrees else
                "closer to the tanh GELU than to the exact one, but not to float32 rounding"
                if g["vs_tanh"] < g["vs_exact"] else "not the tanh GELU")
        check = (f"{what}: largest difference {g['vs_tanh']:.1e} from the tanh GELU and "
                 f"{g['vs_exact']:.1e} from the exact one, float32 ({_title(record)})")
    speed, ratio, failed = _in_model(folder, OURS, UNFUSED_GELU, "bf16w")
    return {"agrees": agrees, "check": check, "speed": speed, "ratio": ratio, "failed": failed}


def tma_form(folder: str | Path = PERF) -> dict:
    """The finding on the kernel's TMA form against the pointer form: ``alone``, ``model``
    and ``check`` (sentences), ``ratio`` (whole model, bf16 autocast, or None), ``failed``
    (a measurement of the model with it failed, or the newest GPU check of Mixer-B/16 with
    it), ``close`` (its features as close to float32 as the pointer form's: True, False or
    None)."""
    out = {"alone": NOT_YET, "check": NOT_YET, "close": None}
    record = _latest(folder, "benchmark-token-kernel-configs-*.json", keep=_gpu)
    results = (record or {}).get("results", [])
    tma = [r for r in results if _form(r["config"][0]) == "tma"]
    pointers = [r for r in results if _form(r["config"][0]) != "tma"]
    t, p = (max((r for r in rs if "tflops" in r), key=lambda r: r["tflops"], default=None)
            for rs in (tma, pointers))  # each form's fastest timed shape
    if t and p:
        out["alone"] = (f"its fastest shape {tuple(t['config'][1:])} ran at {t['tflops']:.0f} "
                        f"TFLOP/s against the pointer form's {p['tflops']:.0f} "
                        f"({_speed(t['tflops'] / p['tflops'])}; {_title(record)})")
    failed = [r for r in tma if "error" in r]
    if failed:
        out["alone"] += (f"; {len(failed)} of {len(tma)} TMA shapes failed "
                         f"(first: {failed[0]['error']})")
    out["model"], out["ratio"], out["failed"] = _in_model(folder, TMA_MODEL, None)
    newest = _latest(folder, "benchmark-token-mixing-*.json", keep=_gpu)
    broke = [f["error"] for f in (newest or {}).get("failed") or []
             if f["what"] == f"check {OURS} bf16 tma"]
    checked = _latest(folder, "benchmark-token-mixing-*.json",
                      keep=lambda r: _gpu(r) and f"{OURS} bf16 tma" in (r.get("check") or {}))
    if broke:  # the newest GPU check of the form failed: whatever an older one said
        out["failed"] = True
        out["check"] = f"Mixer-B/16's check failed: {broke[0]} ({_title(newest)})"
    elif checked:
        tma_diff = checked["check"][f"{OURS} bf16 tma"]["fused_vs_float32"]
        ptr_diff = checked["check"][f"{OURS} bf16"]["fused_vs_float32"]
        out["close"] = tma_diff <= CLOSE_TO_FLOAT32 * ptr_diff
        out["check"] = (f"Mixer-B/16's features differ from float32 by at most {tma_diff:.3g} "
                        f"with it and {ptr_diff:.3g} with the pointer form, bf16 "
                        f"({_title(checked)})")
    return out


def current_form_timed(folder: str | Path = PERF) -> str:
    """Whether a GPU throughput record of today's model form
    (:func:`~mixer_lib.throughputs.of_current_form`) exists: a sentence naming the newest GPU
    record and its form."""
    record = _latest(folder, "benchmark-perf-gpu-*.json", keep=_gpu)
    if record is None:
        return "No GPU has timed this model yet"
    if of_current_form(record):
        return f"The current form was timed on a GPU: {_title(record)} ({record['preset']})"
    return (f"The current form, {MODEL_FORM}, has not been timed on a GPU as a whole yet: the "
            f"newest GPU record ({_title(record)}) is of the earlier form "
            f"{record.get('model_form', 'not recorded')}")


def tma_against_vit(folder: str | Path = PERF) -> str:
    """Mixer-B/16 with the TMA form against ViT-B/16 in the latest GPU forms record, eager
    inference, per dtype: the ratio and the share of the bf16 matmul peak measured in that
    run (:func:`~mixer_lib.throughputs.peak_share`; a sentence; "not measured" without both
    rows)."""
    record = _forms_record(folder)
    if record is None:
        return "not measured"
    ratios, batch = _model_ratios(record, TMA_MODEL, VIT)
    mfu = {r["dtype"]: peak_share(record, r) for r in record["rows"]
           if r["model"] == TMA_MODEL and r["mode"] == "eager" and r["batch"] == batch}
    words = [f"{DTYPE_WORDS.get(d, d)} {q:.2f}x"
             + (f" at {100 * mfu[d]:.1f} % of the bf16 matmul peak" if mfu.get(d) else "")
             for d, q in ratios.items()]
    if not words:
        return "not measured"
    return f"{', '.join(words)} ({_title(record)}, perf-gpu-forms, eager, batch {batch})"


def status(folder: str | Path = PERF) -> dict[str, str]:
    """The sentences the Claims chapter glues: ``fp_form`` (is today's form timed on a GPU),
    ``fp_tma_vit`` (Mixer-B/16 with the TMA form against ViT-B/16),
    ``fp_gelu`` (the one-call GELU: check and speed), ``fp_tma`` (the TMA form: alone, in the
    model, its check and the default)."""
    gelu, tma = gelu_epilogue(folder), tma_form(folder)
    default = _default("token_kernel_form")
    return {"fp_form": current_form_timed(folder), "fp_tma_vit": tma_against_vit(folder),
            "fp_gelu": f"Checked on a GPU: {gelu['check']}. Timed on a GPU in the whole "
                       f"model, with it against without it: {gelu['speed']}. It applies "
                       f"without autocast only (the weights in the compute dtype)",
            "fp_tma": f"Timed alone on a GPU: {tma['alone']}. Timed on a GPU in the whole "
                      f"model against the pointer form: {tma['model']}. Checked against "
                      f"float32 on a GPU: {tma['check']}. The default is the {default} form "
                      f"(MixerConfig.token_kernel_form)"}


def _decision(field: str, failed: bool, undecided: bool, supported: bool, yes, no) -> str:
    """A recommendation line for the :class:`MixerConfig` default ``field``: ``yes`` where
    the records support the fused path, ``no`` where it failed or they do not."""
    now = _default(field)
    if failed:
        return f"  -> not supported (it failed on the GPU): {field}={no!r} (now {now!r})"
    if undecided:
        return f"  -> not decided ({field} stays {now!r}): measure on a GPU"
    return (f"  -> {'supported' if supported else 'not supported'}: "
            f"{field}={yes if supported else no!r} (now {now!r})")


def recommendations(folder: str | Path = PERF) -> list[str]:
    """What the records support for the two defaults, a line each (printed by ``python -m
    mixer_lib.fused_paths`` and at the end of ``scripts/perf-on-gpu.sh``): the dense layer's
    GELU epilogue where it computes the tanh GELU and does not slow the model with bf16
    weights (without autocast, where it applies); the TMA form
    where it is faster in the model beyond noise and as close to float32."""
    gelu, tma = gelu_epilogue(folder), tma_form(folder)
    return [f"dense layer + GELU in one call, checked: {gelu['check']}",
            f"  in the model: {gelu['speed']}",
            _decision("fused_dense_gelu", gelu["failed"],
                      gelu["agrees"] is None or gelu["ratio"] is None,
                      bool(gelu["agrees"]) and (gelu["ratio"] or 0) >= 1 - SAME_SPEED,
                      True, False),
            f"token kernel, TMA form, timed alone: {tma['alone']}",
            f"  in the model: {tma['model']}", f"  checked: {tma['check']}",
            _decision("token_kernel_form", tma["failed"],
                      tma["ratio"] is None or tma["close"] is None,
                      bool(tma["close"]) and (tma["ratio"] or 0) > 1 + SAME_SPEED,
                      "tma", "pointers")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixer_lib.fused_paths",
                                     description="What the GPU records support for the "
                                     "fused inference paths' defaults.")
    parser.add_argument("folder", nargs="?", default=str(PERF), help="records (results/perf)")
    folder = Path(parser.parse_args(argv).folder)
    if not folder.is_dir():
        parser.error(f"{folder} is not a folder of records (the benchmarks write them to "
                     f"results/perf)")
    print("\n".join(recommendations(folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
