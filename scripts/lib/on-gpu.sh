# Sourced by the scripts that run on a GPU machine (gpu-check.sh, perf-on-gpu.sh): the
# repository root, python ($PY), unbuffered output, the repository on PYTHONPATH, the GPUs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L || true

# limited LOG 'RESULT-GLOB' COMMAND...: COMMAND under $LIMIT seconds, its output also in LOG;
# the results it wrote (those matching the glob, newer than its start: not the records it
# set aside) and the log copied to $OUT when it is set. Returns COMMAND's status.
limited() {
    local log=$1 results=$2 started
    shift 2
    started=$(mktemp)
    timeout -s TERM -k 20 "$LIMIT" "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    if [ -n "${OUT:-}" ]; then
        find "$(dirname "$results")" -maxdepth 1 -name "$(basename "$results")" \
            -newer "$started" -exec cp {} "$OUT"/ \; 2>/dev/null
        cp "$log" "$OUT"/
    fi
    rm -f "$started"
    return "$status"
}
