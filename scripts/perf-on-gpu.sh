#!/usr/bin/env bash
# Issue 17's GPU measurement, one call of at most 8 minutes on a GPU machine:
#
#   bash scripts/perf-on-gpu.sh          # writes results/perf/benchmark-{perf-gpu,input}-*.json
#   OUT=/some/dir bash scripts/perf-on-gpu.sh   # also copies the records and the logs there
#
# Stand-ins from real images: first, where ../shared is, `bash scripts/carry-jpegs.sh`
# (320 CIFAR-10 test JPEGs into .carry/data, ignored by git), then carry .carry to the GPU
# machine; the script reads $MIXER_DATA_ROOT, else .carry/data, else shared/data.
#
# The GPU machine's torch and Triton can differ from the pinned ones (the H200 so far: torch
# 2.11.0+cu130, Triton 3.6.0; every record's environment names them). A CPU venv with those
# versions runs this script's CPU test and the model's first (PYTHONPATH=. python -m pytest
# tests/test_benchmark.py tests/test_model.py tests/test_kernel_compile.py); there, Triton
# 3.6's interpreter fails on the kernel's loop, so the interpreted tests say nothing.
#
# 0. (at most 60 s) The fused token-mixing kernel's tile shapes alone on Mixer-B/16's
#    shapes, each in its own process (benchmarks/token_kernel_configs.py; by default the
#    pointer form's fastest shape on the H200, entry 2, and every shape of the TMA form),
#    checked against float32 and timed (results/perf/benchmark-token-kernel-configs-*.json).
# 1. (at most 70 s) The channel MLP's dense layer with its GELU in one cuBLASLt call against
#    the tanh and the exact GELU (float32), the kernel against the reference in whole
#    models (B/16, S/32 and H/14 in the TMA form, the default, bf16, in a child process,
#    whose fault could not end the stage; then S/32, B/16 tanh and exact GELU, H/14 in the
#    pointer form, bf16 and fp16), as far as the limit allows; each first use of a shape
#    autotunes the kernel, which took over 40 s for H/14 on the H200. Only the checks by
#    default (--checks-only): the token-mixing MLP's product forms, timed alone and in the
#    model, answered their question in the records of 28c7e71, and stages 2 and 3 time the
#    whole model; TOKEN_ARGS="" times them again (benchmarks/token_mixing.py --no-compile;
#    results/perf/benchmark-token-mixing-*.json).
# 2. (at most 80 s) The fused inference paths in the whole model, each against ours without
#    it: the token-mixing kernel off, its two forms named ("pointers", "tma"), and the dense
#    layer with its GELU epilogue off, with ViT-B/16, inference, eager, bf16 autocast and
#    bf16 weights, batch 128 (preset perf-gpu-forms; about 40 s on the H200).
# 3. (at most 170 s) Our Mixer-B/16, its earlier form (legacy, commit c090817), timm's
#    mixer_b16_224 and vit_base_patch16_224 (fused attention): inference and a training step
#    of the fine-tuning recipe, bf16 and float32, batch 128 and 512 (training at 512 in
#    micro-batches of 128), inference with bf16 weights (no autocast); ours and ViT also
#    compiled (bf16 autocast, and bf16 weights for inference); the bf16 and float32 matmul
#    peaks measured in the same run; the first compiled calls timed from empty compiler
#    caches (where compiling pays for itself); each eager training step's matrix products
#    replayed alone (the share of the step that fusing could save). Batch 128 is measured
#    first, every model eager before the compiled runs (about ten times an eager one's
#    cost), and the record is rewritten after each configuration, so a run cut short by the
#    limit keeps whole comparisons (preset perf-gpu).
# 4. (at most 100 s) The input pipeline on 500x375 JPEG stand-ins: one CPU worker, the loader
#    with 1, 4, 8 and 16 workers (uint8 pixels, scaled on the GPU, as training hands them
#    over), --decode device with as many workers, Mixer-B/16 training alone, and the
#    fine-tuning loop itself (mixer_lib.train) with decode cpu and device against it (issue
#    17's target: >= 90 % of the model alone), decode cpu also with 8 workers (the default
#    before 2026-11-27) and with (cores - 1).
# 5. (what is left of the 8 minutes, TOTAL_LIMIT) Each perf preset its limit cut, resumed
#    where it stopped (benchmarks/throughput.py --resume: the same record, only the
#    configurations it lacks), so that time the earlier stages did not use goes to the
#    measurements they left; a preset the resumed run completes no longer counts as cut.
# 6. (seconds) What the records support for the defaults of the fused inference paths
#    (mixer_lib.fused_paths: the one-call dense layer and GELU, the kernel's TMA form).
# Not by default (80 s, PERF_PRESETS="perf-gpu-products"): where the bf16 products' time
# goes: ours, timm's Mixer and ViT eager at batch 128, each distinct product of an inference
# call and of a training step replayed alone, and with aligned rows where an input's are not.
#
# Each stage rewrites its record after each measurement, so the time limit keeps what it
# measured; a measurement that raises (out of memory, a kernel this machine's Triton rejects)
# is listed under "failed" in its record, the stage goes on, and this script's status is
# then non-zero (the first failing stage's, in the order above).
# PERF_STAGES (default "configs token perf input") picks the stages (perf: 2, 3 and 5);
# PERF_PRESETS (default "perf-gpu-forms perf-gpu") the presets of perf; CONFIGS_ARGS (default
# "--configs 2,tma") and TOKEN_ARGS (default "--checks-only") replace the arguments of 0 and
# 1; PERF_ARGS and INPUT_ARGS are added to the commands (tests run the script on a CPU with
# them); CONFIGS_LIMIT,
# TOKEN_LIMIT, FORMS_LIMIT, PERF_LIMIT, PRODUCTS_LIMIT and INPUT_LIMIT change the limits,
# TOTAL_LIMIT (default 480 s) the whole script's, which bounds stage 5.
source "$(dirname "$0")/lib/on-gpu.sh"
if [ -z "${MIXER_DATA_ROOT:-}" ]; then
    MIXER_DATA_ROOT=shared/data
    [ -d .carry/data/cifar10-jpeg ] && MIXER_DATA_ROOT=.carry/data
fi
if [ -z "${MIXER_GIT_COMMIT:-}" ] && ! git rev-parse HEAD >/dev/null 2>&1; then
    echo "warning: no MIXER_GIT_COMMIT and no git here: the records will not name their" \
        "commit, and a preset its limit cuts cannot be resumed" >&2
fi
stages=" ${PERF_STAGES:-configs token perf input} "
deadline=$(( SECONDS + ${TOTAL_LIMIT:-480} ))
declare -A stage_status  # a stage's (a perf preset's) status, by name
order=()
ran() { order+=("$1"); stage_status[$1]=$2; }
if [[ $stages == *" configs "* ]]; then
    # shellcheck disable=SC2086
    LIMIT=${CONFIGS_LIMIT:-60} limited "${TMPDIR:-/tmp}/token-kernel-configs.log" \
        "results/perf/benchmark-token-kernel-configs-*.json" \
        $PY benchmarks/token_kernel_configs.py ${CONFIGS_ARGS:---configs 2,tma}
    ran configs $?
fi
if [[ $stages == *" token "* ]]; then
    # shellcheck disable=SC2086
    LIMIT=${TOKEN_LIMIT:-70} limited "${TMPDIR:-/tmp}/token-mixing.log" \
        "results/perf/benchmark-token-mixing-*.json" \
        $PY benchmarks/token_mixing.py --no-compile --repeats 10 ${TOKEN_ARGS---checks-only}
    ran token $?
fi
[[ $stages == *" perf "* ]] || PERF_PRESETS=none
cut=()  # the perf presets their limit cut (timeout's status: 124, or 137 after its KILL)
for preset in ${PERF_PRESETS:-perf-gpu-forms perf-gpu}; do
    [ "$preset" = none ] && continue
    case $preset in
        perf-gpu-forms) limit=${FORMS_LIMIT:-80} ;;
        perf-gpu-products) limit=${PRODUCTS_LIMIT:-80} ;;
        *) limit=${PERF_LIMIT:-170} ;;
    esac
    # shellcheck disable=SC2086  # the extra arguments are split on purpose
    LIMIT=$limit limited "${TMPDIR:-/tmp}/$preset.log" "results/perf/benchmark-$preset-*.json" \
        $PY benchmarks/throughput.py --preset "$preset" ${PERF_ARGS:-}
    ran "$preset" $?
    case ${stage_status[$preset]} in 124|137) cut+=("$preset") ;; esac
done
if [[ $stages == *" input "* ]]; then
    cores=$(nproc)
    # shellcheck disable=SC2086
    LIMIT=${INPUT_LIMIT:-100} limited "${TMPDIR:-/tmp}/input-on-gpu.log" \
        'results/perf/benchmark-input-*.json' \
        $PY benchmarks/input_pipeline.py --data-root "$MIXER_DATA_ROOT" \
        --loop-workers "8,$(( cores > 2 ? cores - 1 : 1 ))" ${INPUT_ARGS:-}
    ran input $?
fi
# the cut perf presets again, with what is left of the whole limit (less 25 s: timeout's
# 20 s of grace and the last stage); a resumed run's status replaces the cut one's
for preset in "${cut[@]}"; do
    left=$(( deadline - SECONDS - 25 ))
    if [ $left -lt 30 ]; then
        echo "== $preset stays cut short: ${left} s left of the whole limit =="
        break
    fi
    echo "== $preset resumed with ${left} s left of the whole limit =="
    # shellcheck disable=SC2086
    LIMIT=$left limited "${TMPDIR:-/tmp}/$preset-resumed.log" \
        "results/perf/benchmark-$preset-*.json" \
        $PY benchmarks/throughput.py --preset "$preset" --resume ${PERF_ARGS:-}
    stage_status[$preset]=$?
done
# what the records now here (this run's, else the committed ones) support for the defaults
# of the fused inference paths (a few seconds; its status does not count)
echo "== the fused inference paths' defaults (python -m mixer_lib.fused_paths) =="
$PY -m mixer_lib.fused_paths || true
status=0  # the first failing stage's, in the order they ran
for stage in "${order[@]}"; do
    [ "${stage_status[$stage]}" -ne 0 ] && { status=${stage_status[$stage]}; break; }
done
exit $status
