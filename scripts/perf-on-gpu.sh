#!/usr/bin/env bash
# Issue 17's GPU measurement, one call of at most 8 minutes on a GPU machine:
#
#   bash scripts/perf-on-gpu.sh          # writes results/perf/benchmark-perf-gpu-<device>.json
#   OUT=/some/dir bash scripts/perf-on-gpu.sh   # also copies the record and the log there
#
# Our Mixer-B/16 (eager and compiled), its earlier form (legacy, commit c090817), timm's
# mixer_b16_224 and vit_base_patch16_224 (fused attention): inference and a training step of
# the fine-tuning recipe, bf16 and float32, batch 128 and 512 (training at 512 in
# micro-batches of 128), with the bf16 and float32 matmul peaks measured in the same run.
LIMIT=${LIMIT:-460}
source "$(dirname "$0")/lib/on-gpu.sh"
limited /tmp/perf-on-gpu.log 'results/perf/benchmark-perf-gpu-*.json' \
    $PY benchmarks/throughput.py --preset perf-gpu
