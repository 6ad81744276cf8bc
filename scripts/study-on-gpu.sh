#!/usr/bin/env bash
# The study (python -m mixer_lib.study) on one GPU machine, then E5's throughput on that GPU,
# then the finished records and run folders packed for copying back into a checkout.
#
#   DATA_ROOT=/data PACK=/tmp/out STUDY_SECONDS=420 BENCH_SECONDS=100 bash scripts/study-on-gpu.sh
#
# DATA_ROOT holds cifar10-jpeg/ (checked against the SHA-256 in shared/data/README.md first).
# The study stops with SIGTERM after STUDY_SECONDS (every run checkpoints; run it again to
# resume). The pack holds results/study/, the run folders without the fine-tuned runs'
# weights (their records keep what the book draws), the upstream runs' checkpoints and those
# of unfinished runs (to resume elsewhere).
set -uo pipefail
: "${DATA_ROOT:?set DATA_ROOT}" "${PACK:?set PACK}"
STUDY_SECONDS=${STUDY_SECONDS:-420}
BENCH_SECONDS=${BENCH_SECONDS:-100}
JOBS=${JOBS:-7}
WORKERS=${WORKERS:-2}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
mkdir -p "$PACK"

echo "== data check"
digest=$(cd "$DATA_ROOT/cifar10-jpeg" && find . -type f -name '*.jpg' | LC_ALL=C sort |
         xargs sha256sum | sha256sum | cut -d' ' -f1)
want=c217601eebcfee757a51b381539a30bc3b0a89cac54850a81d992750b4fa8352
if [ "$digest" != "$want" ]; then echo "data digest $digest != $want"; exit 3; fi
nvidia-smi -L
$PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision",
torchvision.__version__, torch.cuda.get_device_name())'

echo "== study ($JOBS runs at a time, $WORKERS data workers each, stop after ${STUDY_SECONDS}s)"
start=$(date +%s)
timeout -s TERM -k 60 "$STUDY_SECONDS" $PY -m mixer_lib.study run --device cuda \
    --jobs "$JOBS" --num-workers "$WORKERS" --data-root "$DATA_ROOT"
echo "study exit $? after $(( $(date +%s) - start )) s"
$PY -m mixer_lib.study status | sort | uniq -c -w 8 | awk '{print $1, $2}'

echo "== E5 throughput on this GPU"
timeout -s TERM "$BENCH_SECONDS" $PY benchmarks/throughput.py --preset claims-gpu
echo "bench exit $?"

echo "== pack"
keep=()
for d in runs/study/*/; do
    d=${d%/}
    [ "$(basename "$d")" = logs ] && continue
    case $(basename "$d") in e1-up-*) keep+=("$d/checkpoint.pt");; esac
    [ -f "$d/results.json" ] || keep+=("$d/checkpoint.pt")
done
tar cf - --exclude='checkpoint*.pt' --exclude=run.lock --exclude='*.tmp' results/study \
    runs/study > "$PACK/study.tar"
existing=()
for f in "${keep[@]}"; do [ -f "$f" ] && existing+=("$f"); done
[ ${#existing[@]} -gt 0 ] && tar rf "$PACK/study.tar" "${existing[@]}"
xz -T0 -6 "$PACK/study.tar"
split -b 15M -d "$PACK/study.tar.xz" "$PACK/study.tar.xz.part"
rm "$PACK/study.tar.xz"
ls -l "$PACK"
