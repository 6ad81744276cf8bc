# Sourced by the scripts that run on a GPU machine (gpu-check.sh, perf-on-gpu.sh): the
# repository root, python ($PY), unbuffered output, the repository on PYTHONPATH, the GPUs.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L || true

# limited LOG 'RESULT-GLOB' COMMAND...: COMMAND under $LIMIT seconds, its output also in LOG;
# the results and the log copied to $OUT when it is set. Returns COMMAND's status.
limited() {
    local log=$1 results=$2
    shift 2
    timeout -s TERM -k 20 "$LIMIT" "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    if [ -n "${OUT:-}" ]; then
        # shellcheck disable=SC2086  # the glob is expanded here on purpose
        cp $results "$log" "$OUT"/ 2>/dev/null
    fi
    return "$status"
}
