"""Null-sample cost: the "fast" spectral clustering against the "reference" (scikit-learn).

For each benchmark network the true network and its first ``N`` ``layer``-null samples (the
same seeded shuffles for both methods, exactly those of :func:`harness.nulls.null_distribution`)
are run through the whole per-sample pipeline - shuffle, drop isolated neurons, graph,
spectral clustering, n-cut - once with each method, alternating methods sample by sample so
that load on a shared machine affects both alike. Reported per graph: seconds per sample for
each method, the speed-up, the mean n-cut of each method over the same graphs and their ratio.

Networks (Glorot-uniform weights, seed ``--seed``; pruning keeps the 10% largest |w| of each
layer):

* ``a``: 784-256-256-256-256-10, pruned to 90% (1818 neurons);
* ``b``: the same, unpruned;
* ``c``: 784-2048-2048-2048-2048-10, pruned to 90% (8986 neurons; reference ~1 min/sample).

Targets: speed-up >= 10 on a and c; the same estimator, so the mean n-cuts agree:
``|fast_mean_ncut / reference_mean_ncut - 1| <= 0.01`` on all.

Run ``python -m bench nulls [--samples-a N] [--samples-b N] [--samples-c N] [--threads T]``;
the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

GRAPHS = {
    "a": ((784, 256, 256, 256, 256, 10), 0.9),
    "b": ((784, 256, 256, 256, 256, 10), None),
    "c": ((784, 2048, 2048, 2048, 2048, 10), 0.9),
}
SPEEDUP_TARGET = {"a": 10.0, "c": 10.0}
NCUT_RATIO_TOLERANCE = 0.01


def glorot_network(
    sizes: tuple[int, ...], sparsity: float | None, rng: np.random.Generator
) -> list[np.ndarray]:
    """Glorot-uniform weights; with ``sparsity`` s, keep only the (1 - s) largest |w| per layer."""
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        limit = math.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, size=(n_in, n_out))
        if sparsity is not None:
            n_keep = round((1.0 - sparsity) * w.size)
            flat = np.abs(w).ravel()
            keep = np.argpartition(flat, flat.size - n_keep)[flat.size - n_keep :]
            mask = np.zeros(flat.size, dtype=bool)
            mask[keep] = True
            w = np.where(mask.reshape(w.shape), w, 0.0)
        weights.append(w)
    return weights


def _one_graph(name: str, n_null: int, k: int, seed: int) -> dict[str, float]:
    from harness.cluster import cluster_weights
    from harness.graph import remove_isolated
    from harness.nulls import null_sample_ncut, null_sample_streams

    sizes, sparsity = GRAPHS[name]
    weights = glorot_network(sizes, sparsity, np.random.default_rng(seed))
    kept, mask = remove_isolated(weights)
    seeds = null_sample_streams(seed, "layer", n_null)
    times: dict[str, list[float]] = {"reference": [], "fast": []}
    ncuts: dict[str, list[float]] = {"reference": [], "fast": []}
    for i in range(-1, n_null):  # -1: the true network
        for method in ("reference", "fast"):
            t0 = time.perf_counter()
            if i < 0:
                value = cluster_weights(weights, k, method=method, seed=seed).ncut
            else:
                value, _ = null_sample_ncut(kept, k, "layer", method, None, seeds[i], i)
            times[method].append(time.perf_counter() - t0)
            ncuts[method].append(value)
        print(
            f"  {name} {'true' if i < 0 else f'null {i}':>8}: reference {times['reference'][-1]:7.3f}s "
            f"ncut {ncuts['reference'][-1]:.4f} | fast {times['fast'][-1]:7.3f}s "
            f"ncut {ncuts['fast'][-1]:.4f}",
            flush=True,
        )
    ref_s = float(np.mean(times["reference"]))
    fast_s = float(np.mean(times["fast"]))
    ref_ncut = float(np.mean(ncuts["reference"]))
    fast_ncut = float(np.mean(ncuts["fast"]))
    return {
        "reference_s_per_sample": ref_s,
        "fast_s_per_sample": fast_s,
        "speedup": ref_s / fast_s,
        "reference_mean_ncut": ref_ncut,
        "fast_mean_ncut": fast_ncut,
        "ncut_ratio": fast_ncut / ref_ncut,
        "n_graphs": n_null + 1,
        "n_nodes": int(mask.sum()),
    }


def _warm_up(k: int) -> None:
    """Import and run both methods once on a toy network, so no timing pays first-call costs."""
    from harness.cluster import cluster_weights

    toy = glorot_network((40, 30, 20), None, np.random.default_rng(0))
    for method in ("reference", "fast"):
        cluster_weights(toy, min(k, 10), method=method, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench nulls", description=__doc__)
    parser.add_argument("--samples-a", type=int, default=8, help="null samples on graph a")
    parser.add_argument("--samples-b", type=int, default=6, help="null samples on graph b")
    parser.add_argument("--samples-c", type=int, default=1, help="null samples on graph c")
    parser.add_argument("--graphs", default="abc", help="which graphs to run (default abc)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default 1)")
    parser.add_argument("--k", type=int, default=12, help="clusters (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    unknown = set(args.graphs) - set(GRAPHS)
    if unknown:
        parser.error(f"unknown graphs {sorted(unknown)}; choose from {sorted(GRAPHS)}")

    from harness.workers import pin_threads

    # One thread per process, as each null-sampling worker runs; both methods alike.
    pin_threads(args.threads)
    counts = {"a": args.samples_a, "b": args.samples_b, "c": args.samples_c}
    _warm_up(args.k)
    results = {}
    for name in args.graphs:
        print(f"graph {name}: layers {GRAPHS[name][0]}, sparsity {GRAPHS[name][1]}", flush=True)
        results[name] = _one_graph(name, counts[name], args.k, args.seed)

    from tabulate import tabulate

    rows = [
        [
            name,
            r["n_nodes"],
            r["n_graphs"],
            r["reference_s_per_sample"],
            r["fast_s_per_sample"],
            r["speedup"],
            r["reference_mean_ncut"],
            r["fast_mean_ncut"],
            r["ncut_ratio"],
        ]
        for name, r in results.items()
    ]
    headers = [
        "graph",
        "nodes",
        "graphs",
        "ref s",
        "fast s",
        "speedup",
        "ref ncut",
        "fast ncut",
        "ratio",
    ]
    print(tabulate(rows, headers=headers, floatfmt=".4g"))
    met = {
        name: bool(
            r["speedup"] >= SPEEDUP_TARGET.get(name, 0.0) and abs(r["ncut_ratio"] - 1.0) <= NCUT_RATIO_TOLERANCE
        )
        for name, r in results.items()
    }
    print(f"targets met (speedup >= 10 on a, c; |ncut ratio - 1| <= {NCUT_RATIO_TOLERANCE}): {met}")
    print(
        json.dumps(
            {"bench": "nulls", "graphs": results, "threads": args.threads, "targets_met": met}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
