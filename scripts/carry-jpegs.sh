#!/usr/bin/env bash
# Before scripts/perf-on-gpu.sh, on the machine that holds ../shared: copy the first N
# (default 32) real CIFAR-10 test JPEGs of each class into .carry/data (ignored by git), so
# that the GPU machine, which has no ../shared, makes its stand-ins from real images:
#
#   bash scripts/carry-jpegs.sh && run: OUT=$OUT MIXER_DATA_ROOT=.carry/data \
#       bash scripts/perf-on-gpu.sh   (carry: [".carry"])
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
per_class=${1:-32}
source=${SHARED_DATA:-../shared/data}/cifar10-jpeg/test
[ -d "$source" ] || { echo "no $source: set SHARED_DATA to the folder holding cifar10-jpeg/" >&2; exit 2; }
for class_dir in "$source"/*/; do
    class=$(basename "$class_dir")
    mkdir -p ".carry/data/cifar10-jpeg/test/$class"
    find "$class_dir" -maxdepth 1 -name '*.jpg' | sort | sed -n "1,${per_class}p" |
        xargs -r cp -t ".carry/data/cifar10-jpeg/test/$class"
done
echo "$(find .carry/data -name '*.jpg' | wc -l) JPEGs in .carry/data ($(du -sh .carry/data | cut -f1))"
