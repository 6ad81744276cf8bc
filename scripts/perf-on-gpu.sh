#!/usr/bin/env bash
# Issue 17's GPU measurement, one call of at most 8 minutes on a GPU machine:
#
#   bash scripts/perf-on-gpu.sh          # writes results/perf/benchmark-{perf-gpu,input}-*.json
#   OUT=/some/dir bash scripts/perf-on-gpu.sh   # also copies the records and the logs there
#
# 1. (at most 400 s) Our Mixer-B/16 (eager and compiled), its earlier form (legacy, commit
#    c090817), timm's mixer_b16_224 and vit_base_patch16_224 (fused attention): inference and
#    a training step of the fine-tuning recipe, bf16 and float32, batch 128 and 512 (training
#    at 512 in micro-batches of 128), inference with bf16 weights (no autocast), with the bf16
#    and float32 matmul peaks measured in the same run; the first compiled calls timed from
#    empty compiler caches (where compiling pays for itself). Batch 128 is measured first,
#    every model at one dtype and mode before the next, and the record is rewritten after
#    each configuration, so a run cut short by the limit keeps whole comparisons.
# 2. (at most 60 s) The input pipeline on 500x375 JPEG stand-ins: one CPU worker, the loader
#    with 1, 4, 8 and 16 workers, --decode device with as many workers, against Mixer-B/16
#    training alone.
source "$(dirname "$0")/lib/on-gpu.sh"
LIMIT=${PERF_LIMIT:-400} limited /tmp/perf-on-gpu.log 'results/perf/benchmark-perf-gpu-*.json' \
    $PY benchmarks/throughput.py --preset perf-gpu
perf=$?
LIMIT=${INPUT_LIMIT:-60} limited /tmp/input-on-gpu.log 'results/perf/benchmark-input-*.json' \
    $PY benchmarks/input_pipeline.py --data-root "${MIXER_DATA_ROOT:-shared/data}"
input=$?
exit $(( perf != 0 ? perf : input ))
