#!/usr/bin/env bash
# One prepared session on a GPU machine (one H200, 16 cores, no network), within ~9 minutes:
#
#   1. the device;
#   2. `python -m bench ensemble`: 75 paper MLPs trained together against one network alone
#      (per network-epoch), and the small CNN;
#   3. the paper profile's MLP clustering study (Table B; `-m "clustering and not cnn" -k
#      test_factor -n 16`) from an empty store: wall time, and its tables (the MNIST and
#      FASHION control / dropout / L2 cells are compared with the paper's);
#   4. with the time left, the quick profile's calibration at base seeds $QUICK_SEEDS
#      (`python -m harness calibrate`), each finished seed kept.
#
# Usage there, from the repository root (data: MNIST and Fashion-MNIST .gz IDX files under
# $HARNESS_DATA_DIR/raw/{mnist,fashion}; wheels of missing packages in $WHEELS):
#
#   OUT=/some/dir HARNESS_DATA_DIR=.gpu/data WHEELS=.gpu/whl bash bench/gpu_session.sh
#
# Everything lands in $OUT as at most 8 files (logs and tarballs); the store stays in /tmp.
set -u
export PYTHONUNBUFFERED=1 HARNESS_PROGRESS=0
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
START=$(date +%s)
BUDGET=${BUDGET_S:-560}
QUICK_SEEDS=${QUICK_SEEDS:-"100 200 300"}
PAPER_ARGS=(--profile paper -n 16)
BENCH_ARGS=()
CAL_PROFILE=quick
CAL_ARGS=(-n 16)
if [ "${DRY:-0}" = 1 ]; then  # a dry run of the script itself, on any machine, in minutes
    PAPER_ARGS=(--profile smoke -n 2)
    CAL_PROFILE=smoke
    CAL_ARGS=(-n 2 -- -k "random_init and not vgg")
    BENCH_ARGS=(--mlp-nets=3 --n-train=1000 --cnn-nets=2 --cnn-n-train=128)
fi
LOG="$OUT/session.log"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }

if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export HARNESS_DATA_DIR=$(realpath "${HARNESS_DATA_DIR:-.data}")

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    say "== $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "/tmp/$name.log" 2>&1
    rc=$?
    tail -n 30 "/tmp/$name.log" >> "$LOG"
    say "== $name: rc=$rc wall=$(( $(date +%s) - t0 ))s"
}

step device 60 python3 -c '
import os, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-",
      "cores", len(os.sched_getaffinity(0)))'
step data 120 python3 -m harness data fetch --all
step bench 120 python3 -m bench ensemble "${BENCH_ARGS[@]}"

rm -rf /tmp/paper-store /tmp/paper-reports
step paper_clustering 300 env HARNESS_STORE=/tmp/paper-store python3 -m pytest experiments \
    "${PAPER_ARGS[@]}" -m "clustering and not cnn" -k test_factor -p no:cacheprovider -q \
    --reports-dir /tmp/paper-reports --durations=5
tar -czf "$OUT/paper-reports.tgz" -C /tmp paper-reports --exclude='*.png' --exclude='*.svg' 2>/dev/null

rm -rf "baselines/$CAL_PROFILE.partial"
if [ "$(left)" -gt 90 ]; then
    # shellcheck disable=SC2086
    step quick_calibration "$(( $(left) - 20 ))" env HARNESS_STORE=/tmp/quick-store \
        python3 -m harness calibrate --profile "$CAL_PROFILE" --seeds $QUICK_SEEDS "${CAL_ARGS[@]}"
fi
tar -czf "$OUT/quick-calibration.tgz" "baselines/$CAL_PROFILE" "baselines/$CAL_PROFILE.partial" 2>/dev/null
for name in bench paper_clustering quick_calibration; do
    [ -f "/tmp/$name.log" ] && tail -c 2000000 "/tmp/$name.log" > "$OUT/$name.log"
done
say "== total $(( $(date +%s) - START ))s"
