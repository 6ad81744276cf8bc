"""The training-loop benchmark's records (``benchmarks/training_loop.py``) as the tables and
lines the Claims chapter shows: the loop against the model alone, where an update's time
goes, and the earlier records kept beside the current one; and the input pipeline's
(``benchmarks/input_pipeline.py``): the loader and the fine-tuning loop on ImageNet-sized
JPEGs against the model alone."""

from __future__ import annotations

import json
from pathlib import Path

from mixer_lib.provenance import latest_record, read_records

EARLIER_METHOD = "median of single model-alone updates"  # records made before rate_method
PERF_RECORDS = Path(__file__).resolve().parents[1] / "results" / "perf"


def loop_tables(loop: dict) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows) of two tables: the rates with the loop's share (per segment too) and the
    share of the matmul peak; the milliseconds of each part of one update."""
    rates = (["", "images/s", "share"], [
        ["model alone (median of the measurements between segments)",
         f"{loop['model_alone_img_s']:.0f}", "100%"],
        ["the training loop, data included (median of segments)", f"{loop['loop_img_s']:.0f}",
         f"{100 * loop['loop_fraction_of_model_alone']:.0f}% (per segment: " + ", ".join(
             f"{100 * f:.0f}%" for f in loop["loop_fraction_per_segment"]) + ")"],
        ["the loop's training FLOP/s against the measured fp32 matmul peak "
         f"({loop['matmul_peak_gflops_fp32']:.0f} GFLOP/s)", "",
         f"{100 * loop['loop_fraction_of_matmul_peak']:.0f}%"]])
    parts = (["part of one update", "ms"], [
        [k.replace("_", " "), f"{1000 * v:.1f}"] for k, v in loop["seconds_per_update"].items()
    ] + [["tanh GELU, share of the forward", f"{100 * loop['gelu_share_of_forward']:.0f}%"]])
    return [rates, parts]


def loop_provenance(loop: dict) -> str:
    env = loop["environment"]
    return (f"{loop['variant']} {loop['img_size']} px, batch {loop['batch']}, "
            f"{loop['updates']} updates in {loop['segments']} segments, {loop['num_workers']} "
            f"loader worker(s); {env['device']}, torch {env['torch']}, "
            f"commit {str(env['git_commit'])[:12]}, {env['date']}")


def earlier_loop_records(folder: str | Path, device: str = "cpu") -> list[str]:
    """One line per earlier record ``benchmark-loop-<device>-*.json`` (kept as they were
    made): its date, how its rates were measured, the loop's share of the model alone."""
    lines = []
    for path in sorted(Path(folder).glob(f"benchmark-loop-{device}-*.json")):
        old = json.loads(path.read_text())
        lines.append(f"earlier record {path.name} ({old['environment']['date'][:16]}, rate "
                     f"method {old.get('rate_method', EARLIER_METHOD)}, "
                     f"{old['num_workers']} loader worker(s)): the loop at "
                     f"{100 * old['loop_fraction_of_model_alone']:.0f}% of the model alone")
    return lines


def loop_html(folder: str | Path, device: str = "cpu") -> str:
    """The current record ``benchmark-loop-<device>.json`` in ``folder`` as the Claims chapter
    shows it (its tables and provenance), then one line per earlier record; "pending" when
    none is committed."""
    from html import escape

    from mixer_lib.records import html_table

    path = Path(folder) / f"benchmark-loop-{device}.json"
    if path.exists():
        loop = json.loads(path.read_text())
        out = "".join(html_table(h, r) for h, r in loop_tables(loop))
        out += f"<p>{escape(loop_provenance(loop))}</p>"
    else:
        out = f"<p>pending: no training-loop record under {escape(str(folder))}/</p>"
    return out + "".join(f"<p>{escape(line)}</p>" for line in earlier_loop_records(folder, device))


def _shown(value: float | None, spec: str, unit: str = "") -> str:
    """``value`` formatted, or "-" where a record lacks it (a measurement that failed or
    was not reached)."""
    return "-" if value is None else f"{value:{spec}}{unit}"


def input_table(folder: str | Path = PERF_RECORDS) -> tuple[list[str], list[list[str]]]:
    """One column per input-pipeline record ``benchmark-input-*.json`` in ``folder``, by
    date (its device, date and commit), one row per measure: the model, the model alone, one
    CPU worker, the workers the model needs, the form of the pixels the loader hands over
    (float32 before uint8 existed), the best loader and the best decoding on the device (as
    multiples of the model alone), and the fine-tuning loop's share of the model alone for
    each decode setting and, with decode cpu, for more workers ("-" where a record predates
    a measurement or lacks it)."""
    records = read_records(folder, "benchmark-input-*.json")
    names = ["model", "model alone (img/s)", "one CPU worker (img/s)", "workers needed",
             "pixels leave the loader as", "best loader / model",
             "decoding on the device / model", "the loop / model, decode cpu",
             "the loop / model, decode device", "the loop / model, decode cpu, more workers"]
    columns = []
    for rec in records:
        model = rec["model_alone_train_img_s"]
        on_device = rec.get("device_decode_img_s_by_workers") or {}
        loops = rec.get("loop") or {}
        columns.append([
            f"{rec['variant']} {rec['img_size']} px, batch {rec['batch']}, "
            f"{rec['model_precision']}", _shown(model, ".1f"),
            _shown(rec["one_worker_img_s"], ".0f"), _shown(rec["workers_needed"], "d"),
            rec.get("loader_pixels", "float32"), _shown(rec["loader_over_model"], ".1f", "x"),
            f"{max(on_device.values()) / model:.1f}x (best of {', '.join(on_device)} "
            f"workers)" if on_device and model else "-",
            *(f"{100 * loops[d]['fraction_of_model_alone']:.0f} % ({loops[d]['workers']} "
              f"workers)" if d in loops else "-" for d in ("cpu", "device")),
            ", ".join(f"{100 * loop['fraction_of_model_alone']:.0f} % ({w} workers)"
                      for w, loop in (rec.get("loop_cpu_by_workers") or {}).items()) or "-"])
    headers = [""] + [f"{r['environment']['device'].split(' (')[0]}, "
                      f"{r['environment']['date'][:10]}, commit "
                      f"{str(r['environment']['git_commit'])[:7]}" for r in records]
    rows = [[name, *(column[i] for column in columns)] for i, name in enumerate(names)]
    return headers, rows if records else []


def input_summary(folder: str | Path = PERF_RECORDS) -> dict[str, str]:
    """The figures the Claims chapter quotes from the latest input-pipeline record made on a
    GPU: where (``in_where``), the pixels' form (``in_pixels``), the fine-tuning loop's share
    of the model alone with decode cpu and the workers it used (``in_loop_cpu``), with more
    workers (``in_loop_more``) and with decode device (``in_loop_device``); "not measured"
    without one."""
    keys = ("in_where", "in_pixels", "in_loop_cpu", "in_loop_more", "in_loop_device")
    rec = latest_record(folder, "benchmark-input-*.json",
                        lambda r: not r["environment"]["device"].startswith("cpu"))
    if rec is None:
        return dict.fromkeys(keys, "not measured")
    env, loops = rec["environment"], rec.get("loop") or {}

    def share(loop: dict | None, workers: object) -> str:
        return ("not measured" if loop is None else
                f"{100 * loop['fraction_of_model_alone']:.0f} % ({workers} workers)")

    return dict(zip(keys, (
        f"{env['device']}, {env['date'][:10]}, commit {str(env['git_commit'])[:7]}",
        rec.get("loader_pixels", "float32"),
        share(loops.get("cpu"), (loops.get("cpu") or {}).get("workers")),
        ", ".join(share(loop, w) for w, loop in
                  (rec.get("loop_cpu_by_workers") or {}).items()) or "not measured",
        share(loops.get("device"), (loops.get("device") or {}).get("workers"))), strict=True))
