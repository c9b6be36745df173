#!/usr/bin/env bash
# GPU check of the ensemble trainer (issue 23), about 6 minutes on one H200 with 16 cores.
#
#   PYTHONPATH=. bash bench/gpu_check.sh            # on the GPU machine, from the repo root
#   GPU_CHECK_DRY=1 PYTHONPATH=. bash bench/gpu_check.sh   # dry run anywhere (CPU, tiny)
#
# Steps, each under its own `timeout`, each timed, logs under $OUT (default ./gpu-check-out):
#   1. device: torch, CUDA, the GPU's name.
#   2. group independence on the device: 5 MLPs trained together, 2 of them in another
#      ensemble (other slots), and one alone; bit-identical weights expected.
#   3. `python -m bench ensemble`: 75 paper MLPs on full MNIST (1 + 1 epochs) against one
#      network alone (target <= 15 ms per network-epoch), then 16 small CNNs on 10,000
#      images against one alone (two steps).
#   4. `pytest experiments --profile paper -m "clustering and not cnn" -k test_factor -n 16`
#      from an empty store (HARNESS_STORE in $OUT); target 3 minutes. Reports in $OUT/reports;
#      the summary lists the stored models by trainer and ensemble size, and Table B's MNIST
#      and FASHION control and dropout cells against the paper (fidelity.md).
# Data: MNIST and Fashion-MNIST .gz IDX files in $HARNESS_DATA_DIR (default ./.data).
# Limits (seconds, each overridable): T_DEVICE=30 T_CHECK=60 T_BENCH=90 (each bench case)
# T_PYTEST=240, so at most 8.5 minutes; GPU_CHECK_CNN=0 skips the CNN bench.
# GPU_CHECK_DRY=1: the smoke profile, -n 2, 3 MLPs / 2 CNNs on subsets, ensembles forced on
# (HARNESS_TRAINER=ensemble), whatever the device: checks that the script itself works.
set -u

OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-.}
export HARNESS_DATA_DIR=${HARNESS_DATA_DIR:-$PWD/.data}
export HARNESS_PROGRESS=0
DRY=${GPU_CHECK_DRY:-0}

if [ "$DRY" = 1 ]; then
    export HARNESS_TRAINER=ensemble
    BENCH_ARGS="--mlp-nets=3 --n-train=1000 --cnn-nets=2 --cnn-n-train=128"
    PYTEST_ARGS="--profile smoke -n 2"
    CHECK_N_TRAIN=512
    T_DEVICE=60 T_CHECK=120 T_BENCH=300 T_PYTEST=600
else
    BENCH_ARGS=""
    PYTEST_ARGS="--profile paper -n 16"
    CHECK_N_TRAIN=8192
    T_DEVICE=${T_DEVICE:-30} T_CHECK=${T_CHECK:-60} T_BENCH=${T_BENCH:-90} T_PYTEST=${T_PYTEST:-240}
fi

SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
status=0

# step NAME LIMIT_S COMMAND...: run under `timeout`, log to $OUT/NAME.log, print the time.
step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local start end rc
    start=$(date +%s.%N)
    timeout --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    local wall
    wall=$(awk "BEGIN {printf \"%.1f\", $end - $start}")
    tail -n 25 "$OUT/$name.log"
    local note=""
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then note=" (TIMED OUT)"; fi
    echo "== $name: rc=$rc wall=${wall}s$note" | tee -a "$SUMMARY"
    [ "$rc" = 0 ] || status=1
}

step device "$T_DEVICE" "$PY" -c '
import os, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        print("gpu", i, torch.cuda.get_device_name(i))
print("cores", len(os.sched_getaffinity(0)), "trainer", os.environ.get("HARNESS_TRAINER", "auto"))
'

step group_independence "$T_CHECK" "$PY" -c "
import torch
from harness.configs import TrainConfig
from harness.data import load_dataset
from harness.ensemble import train_ensemble
from harness.devices import pick_device
dev = pick_device()
ds = load_dataset('mnist')
base = TrainConfig('mnist', epochs=1, pruning_epochs=1, n_train=$CHECK_N_TRAIN, n_test=1000,
                   pruning_frequency=4, trainer='ensemble')
cfgs = [base.replace(seed=1), base.replace(seed=2, dropout=0.5), base.replace(seed=3, l1=5e-5),
        base.replace(seed=4, l2=5e-5, first_layer_l1=True), base.replace(seed=5, init_modules=10)]
five = train_ensemble(cfgs, ds, device=dev)
two = train_ensemble([cfgs[3], cfgs[1]], ds, device=dev)
one = train_ensemble([cfgs[2]], ds, device=dev)
def same(a, b):
    return all(torch.equal(a.state(p)[k], b.state(p)[k]) for p in ('unpruned', 'pruned')
               for k in a.state(p))
checks = {'l2-quirk in 5 vs 2': same(five[3], two[0]), 'dropout in 5 vs 2': same(five[1], two[1]),
          'l1 in 5 vs alone': same(five[2], one[0])}
print('device', dev, checks)
print('test_acc', [round(r.final_metrics('pruned')['test_acc'], 4) for r in five])
raise SystemExit(0 if all(checks.values()) else 1)
"

# shellcheck disable=SC2086
step bench_mlp "$T_BENCH" "$PY" -m bench ensemble --case=mlp $BENCH_ARGS
if [ "${GPU_CHECK_CNN:-1}" = 1 ]; then
    # shellcheck disable=SC2086
    step bench_cnn "$T_BENCH" "$PY" -m bench ensemble --case=cnn $BENCH_ARGS
fi

STORE="$OUT/store"
rm -rf "$STORE" "$OUT/reports"
# shellcheck disable=SC2086
step pytest_clustering "$T_PYTEST" env HARNESS_STORE="$STORE" "$PY" -m pytest experiments \
    $PYTEST_ARGS -m "clustering and not cnn" -k test_factor -p no:cacheprovider \
    --reports-dir "$OUT/reports" --junitxml "$OUT/junit.xml" --durations=10 -q
if [ -d "$STORE/model" ]; then
    "$PY" - "$STORE/model" <<'EOF' 2>&1 | tee -a "$SUMMARY"
import collections, json, pathlib, sys
metas = [json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("*/meta.json")]
units = collections.Counter(
    (m["info"].get("device"), m["config"].get("trainer", "single"),
     (m["info"].get("ensemble") or {}).get("members", 1)) for m in metas)
print(f"models stored: {len(metas)}; (device, trainer, ensemble size): count")
for unit, count in sorted(units.items(), key=str):
    print(f"  {unit}: {count}")
walls = sorted({(m["info"].get("ensemble") or {}).get("wall_s", m["info"].get("wall_s"))
                for m in metas})
print("training wall seconds per unit:", walls)
EOF
fi
rm -rf "$STORE"  # large; the reports hold the results
if [ -f "$OUT/reports/fidelity.md" ]; then
    {
        echo "Table B (fidelity.md): $(grep -m1 '^Reproduced' "$OUT/reports/fidelity.md")"
        echo "MNIST / FASHION control and dropout cells (ours = mean over instances):"
        grep -E '^\| B +\| (MNIST|FASHION)(\+DROPOUT)? (unpruned|pruned) K=12' \
            "$OUT/reports/fidelity.md"
    } | tee -a "$SUMMARY"
fi

echo "== summary (also in $SUMMARY)"
cat "$SUMMARY"
grep -h '^{"bench"' "$OUT"/bench_*.log | tee "$OUT/bench.json"
exit $status
