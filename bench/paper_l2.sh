#!/usr/bin/env bash
# MNIST+L2REG and FASHION+L2REG at the paper profile (issue 21): Table B's four L2 cells, then
# the training variants of bench/paper_l2.py, each under both isolation rules.
#
#   OUT=/path/to/out bench/paper_l2.sh            # the paper profile, 5 instances, 16 workers
#   OUT=/tmp/l2 PROFILE=smoke INSTANCES=1 WORKERS=1 bench/paper_l2.sh   # a dry run
#
# Writes under $OUT: reports-l2/ (the pytest reports: clustering.md, fidelity.md, claims.md),
# l2/l2_variants.csv and l2/l2_variants.md (the variants' table, rewritten as each network
# finishes: a run cut short still leaves it), and the logs of both steps.
set -u
: "${OUT:?set OUT to the folder for the reports}"
PROFILE="${PROFILE:-paper}"
INSTANCES="${INSTANCES:-5}"
WORKERS="${WORKERS:-16}"
VARIANTS="${VARIANTS:-paper,l2-all,l2x10,no-pruning-penalty}"
PYTHON="${PYTHON:-python}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# Step 1: the Table B cells as the harness runs them (pruned and unpruned, the tag's training).
XDIST=(-n "$WORKERS")
[ "$WORKERS" -le 1 ] && XDIST=(-n 0)
"$PYTHON" -m pytest experiments --profile "$PROFILE" -m clustering "${XDIST[@]}" \
    -k "test_factor and (MNIST+L2REG- or FASHION+L2REG-) and not ALL" \
    --reports-dir "$OUT/reports-l2" -q 2>&1 | tee "$OUT/pytest-l2.log" | tail -n 5
status=${PIPESTATUS[0]}
if [ "$PROFILE" != smoke ] && [ "$INSTANCES" -ne 5 ]; then
    echo "note: the pytest step runs the profile's own instance count" >&2
fi

# Step 2: the training variants, INSTANCES each (shares the store: 'paper' is read, not retrained).
"$PYTHON" -m bench.paper_l2 --profile "$PROFILE" --instances "$INSTANCES" --workers "$WORKERS" \
    --variants "$VARIANTS" --out "$OUT/l2" 2>&1 | tee "$OUT/variants-l2.log" | tail -n 40
variants=${PIPESTATUS[0]}
echo "pytest exit $status, variants exit $variants"
[ "$status" -eq 0 ] && [ "$variants" -eq 0 ]
