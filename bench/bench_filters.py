"""Building the VGG filter graph (§3.3): the vectorised norms vs a per-slice loop.

The graph of the CIFAR-10 VGG has one node per conv filter (4,224) and, between consecutive
conv layers, an edge per (in filter, out filter) pair weighing the matrix 1-norm of the 3x3
kernel slice: 1.63 million slices. Both sides start from a freshly initialised
:class:`harness.models.VGG`:

* ``harness``: :func:`harness.model_kernels.module_filter_graph` (reads the kernels out of the
  module, permutes them to Keras layout, validates them, one vectorised reduction per layer).
* ``loop``: the original's way (reference §3.3), ``np.linalg.norm(|K[:, :, i, j]|, 1)`` per
  slice in Python loops over the same Keras-layout kernels. Run ``--loop-repeats`` times
  (default 1: it takes tens of seconds).

Reports the median of ``--repeats`` harness builds, the loop's median and their ratio, after
checking that both give the same matrices. Prints a table, then one JSON line
``{"bench": "filters", "build_s", "loop_s", "speedup", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from harness.model_kernels import module_filter_graph
from harness.models import VGG, conv_kernels, keras_init_
from harness.workers import pin_threads, threads_per_process


def _loop_graph(kernels: list[np.ndarray]) -> list[np.ndarray]:
    """The reference: one ``np.linalg.norm`` call per (in, out) slice, conv layers 2..n."""
    out = []
    for kernel in kernels[1:]:
        a = np.abs(kernel)
        n_in, n_out = a.shape[2], a.shape[3]
        out.append(np.array([[np.linalg.norm(a[:, :, i, j], 1) for j in range(n_out)]
                             for i in range(n_in)]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench filters", description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="harness builds (median kept)")
    parser.add_argument("--loop-repeats", type=int, default=1,
                        help="per-slice loop builds (median kept; 0 skips the loop)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/BLAS threads (default: this process's share of the cores)")
    args = parser.parse_args(argv)
    threads = args.threads or threads_per_process()
    pin_threads(threads)
    with torch.random.fork_rng(devices=[]):
        model = VGG()
    keras_init_(model, seed=0)

    builds = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        graph = module_filter_graph(model)
        builds.append(time.perf_counter() - start)
    n_nodes = graph[0].shape[0] + sum(m.shape[1] for m in graph)
    n_edges = sum(m.size for m in graph)
    build_s = float(np.median(builds))

    loop_s = None
    if args.loop_repeats > 0:
        kernels = [k.astype(np.float64) for k in conv_kernels(model)]
        loops = []
        for _ in range(args.loop_repeats):
            start = time.perf_counter()
            reference = _loop_graph(kernels)
            loops.append(time.perf_counter() - start)
        loop_s = float(np.median(loops))
        for ours, ref in zip(graph, reference, strict=True):
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)

    from tabulate import tabulate

    rows = [["harness (vectorised)", f"{build_s:.3f}", f"{min(builds):.3f}", len(builds)]]
    if loop_s is not None:
        rows.append(["loop (np.linalg.norm per slice)", f"{loop_s:.3f}", "", args.loop_repeats])
    print(f"VGG filter graph: {n_nodes} nodes, {n_edges} edges (matrix 1-norm), threads {threads}")
    print(tabulate(rows, headers=["build", "median s", "best s", "runs"]))
    if loop_s is not None:
        print(f"speed-up over the loop: {loop_s / build_s:.0f}x (same matrices)")
    print(json.dumps({
        "bench": "filters",
        "build_s": round(build_s, 4),
        "loop_s": None if loop_s is None else round(loop_s, 3),
        "speedup": None if loop_s is None else round(loop_s / build_s, 1),
        "nodes": n_nodes,
        "edges": n_edges,
        "threads": threads,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
