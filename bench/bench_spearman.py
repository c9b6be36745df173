"""The activation graph's correlations (§7.1): ranks once and one matrix product vs scipy.

Table M correlates every pair of an MLP's 1,024 hidden units over the 10,000 test examples
(Spearman). Both sides get the same ReLU-like activations (about half exact zeros, so ties
are many, as in a trained network's):

* ``harness``: :func:`harness.activations.spearman_matrix` (each unit ranked once with
  average ranks for ties, standardised, then one ``Z @ Z.T``);
* ``scipy``: ``scipy.stats.spearmanr(values, axis=1).statistic``, the reference.

Runs are interleaved, ``--repeats`` of each; reports the medians of CPU time (this process,
all threads: robust to other jobs sharing the cores) and of wall time, and the ratio of the
CPU times, after checking that both give the same matrix (to 1e-10). Prints a table, then one JSON line
``{"bench": "spearman", "harness_s", "scipy_s", "speedup", ...}`` (``*_s``: CPU seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import scipy.stats

from harness.activations import spearman_matrix
from harness.workers import pin_threads, threads_per_process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench spearman", description=__doc__)
    parser.add_argument("--units", type=int, default=1024, help="units (default 1024)")
    parser.add_argument("--examples", type=int, default=10_000, help="examples (default 10,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (median kept)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (default: this process's share of the cores)",
    )
    args = parser.parse_args(argv)
    threads = args.threads or threads_per_process()
    pin_threads(threads)
    rng = np.random.default_rng(0)
    values = np.maximum(rng.normal(size=(args.units, args.examples)), 0).astype(np.float32)

    ours_s, ref_s, ours_wall, ref_wall = [], [], [], []
    for _ in range(max(1, args.repeats)):
        cpu, wall = time.process_time(), time.perf_counter()
        ours = spearman_matrix(values)
        ours_s.append(time.process_time() - cpu)
        ours_wall.append(time.perf_counter() - wall)
        cpu, wall = time.process_time(), time.perf_counter()
        ref = scipy.stats.spearmanr(values, axis=1).statistic
        ref_s.append(time.process_time() - cpu)
        ref_wall.append(time.perf_counter() - wall)
    max_diff = float(np.abs(ours - ref).max())
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)
    harness_s, scipy_s = float(np.median(ours_s)), float(np.median(ref_s))

    from tabulate import tabulate

    print(
        f"Spearman matrix of {args.units} units x {args.examples} examples "
        f"(ReLU-like, {np.mean(values == 0):.0%} zeros), threads {threads}"
    )
    print(tabulate(
        [["harness (ranks once, one product)", f"{harness_s:.3f}", f"{np.median(ours_wall):.3f}", len(ours_s)],
         ["scipy.stats.spearmanr", f"{scipy_s:.3f}", f"{np.median(ref_wall):.3f}", len(ref_s)]],
        headers=["correlation matrix", "median CPU s", "median wall s", "runs"],
    ))  # fmt: skip
    print(
        f"speed-up over scipy in CPU time: {scipy_s / harness_s:.2f}x (same matrix, max |diff| {max_diff:.1e})"
    )
    print(json.dumps({
        "bench": "spearman",
        "harness_s": round(harness_s, 4),
        "scipy_s": round(scipy_s, 4),
        "harness_wall_s": round(float(np.median(ours_wall)), 4),
        "scipy_wall_s": round(float(np.median(ref_wall)), 4),
        "speedup": round(scipy_s / harness_s, 2),
        "max_abs_diff": max_diff,
        "units": args.units,
        "examples": args.examples,
        "threads": threads,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
