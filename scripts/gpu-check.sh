#!/usr/bin/env bash
# The GPU check of the paper profile, one call of at most 8 minutes on a GPU machine:
#
#   bash scripts/gpu-check.sh            # writes results/gpu-check-<device>.json
#   OUT=/some/dir bash scripts/gpu-check.sh   # also copies the record and the log there
#
# 1. a few updates each of Mixer-B/16 at 224 px, L/16 at 224 px and L/16 at 448 px, global
#    batch 512, bf16, with the micro-batches the run chooses (time per update, peak memory);
# 2. mixer_lib.train under torchrun with NCCL on every GPU here (one process with one GPU);
# 3. the fine-tuning chapter with the protocol on a generated stand-in, through papermill.
# The preflight's memory plan for the same GPUs is printed first. Part 3 needs papermill and
# jupytext; where they are missing and a folder .whl holds their wheels (see README, "GPU
# check"), they are installed from it, else part 3 is skipped and the record says so.
LIMIT=${LIMIT:-450}
source "$(dirname "$0")/lib/on-gpu.sh"
GPUS=$($PY -c 'import torch; print(torch.cuda.device_count())')
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"gpus", torch.cuda.device_count())'
parts=sizes,torchrun,chapter
if ! $PY -c 'import papermill, jupytext' 2>/dev/null; then
    if [ -d .whl ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
            && export PYTHONPATH="$PYTHONPATH:/tmp/site"
        $PY -m ipykernel install --user --name python3 >/dev/null 2>&1 || true
    fi
    $PY -c 'import papermill, jupytext' 2>/dev/null || {
        echo "papermill/jupytext missing: the chapter part is skipped"; parts=sizes,torchrun; }
fi
$PY -m mixer_lib.preflight --profile paper --gpus "$GPUS" | grep -E "^(GPUs|NVIDIA|memory)" || true
limited /tmp/gpu-check.log 'results/gpu-check-*.json' $PY -m mixer_lib.gpucheck \
    --parts "$parts" "$@"
