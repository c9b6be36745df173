"""One training step with the clusterability regulariser (§7.4) against a plain one.

Both steps train the same MLP on one batch of 128 random examples with Adam, as
:func:`harness.training.run_epoch` does: forward, cross-entropy, backward, optimizer step. The
regularised step adds the weight normalisation (:func:`harness.regulariser.normalize_weights_`)
and the penalty (:func:`harness.regulariser.clusterability_penalty`: the dense normalised
Laplacian and ``torch.linalg.eigvalsh`` in float64, differentiated by autograd). The
eigensolver's share is the time of ``eigvalsh`` and its backward on the same Laplacian,
measured alone, over the regularised step's time.

Networks (``--net``): ``small``, the paper's 49-64x3-10 MLP of Table E (251 nodes), and
``mnist``, the 784-256x4-10 MLP (1,818 nodes). Training runs on one thread, as the harness
trains (``harness.training.TRAIN_THREADS``). Prints a table, then one JSON line
``{"bench": "regulariser", "cases": [{"net", "plain_s", "regularised_s", "ratio",
"eigen_s", "eigen_share", ...}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from harness.models import MLP
from harness.regulariser import (
    ORIGINAL_EFFECTIVE_STRENGTH,
    PAPER_EIGS,
    clusterability_penalty,
    normalize_weights_,
    normalized_laplacian,
)
from harness.training import TRAIN_THREADS

NETS = {"small": (49, (64, 64, 64), 10), "mnist": (784, (256, 256, 256, 256), 10)}
#: Steps timed per network unless ``--repeats`` says otherwise (a large-MLP step takes seconds).
REPEATS = {"small": 20, "mnist": 3}


def _median_time(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _case(net: str, repeats: int) -> dict[str, object]:
    n_in, widths, n_out = NETS[net]
    torch.manual_seed(0)
    model = MLP(n_in, widths, n_out)
    x, y = torch.rand(128, n_in), torch.randint(0, n_out, (128,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def plain() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def regularised() -> None:
        normalize_weights_(model)
        loss = F.cross_entropy(model(x), y) + clusterability_penalty(
            model, strength=ORIGINAL_EFFECTIVE_STRENGTH, n_eigs=PAPER_EIGS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        lap = normalized_laplacian(model)
    leaf = lap.clone().requires_grad_(True)

    def eigen() -> None:
        torch.linalg.eigvalsh(leaf)[1:PAPER_EIGS + 1].sum().backward()

    plain_s = _median_time(plain, repeats)
    regularised_s = _median_time(regularised, repeats)
    eigen_s = _median_time(eigen, repeats)
    return {
        "net": net,
        "nodes": int(lap.shape[0]),
        "plain_s": round(plain_s, 6),
        "regularised_s": round(regularised_s, 6),
        "ratio": round(regularised_s / plain_s, 2),
        "eigen_s": round(eigen_s, 6),
        "eigen_share": round(eigen_s / regularised_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench regulariser", description=__doc__)
    parser.add_argument("--net", choices=sorted(NETS), action="append",
                        help="network(s) to time (default: both)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"steps timed, median kept (default {REPEATS})")
    args = parser.parse_args(argv)
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        cases = [_case(net, max(1, args.repeats or REPEATS[net]))
                 for net in (args.net or ["small", "mnist"])]
    finally:
        torch.set_num_threads(before)
    from tabulate import tabulate

    print(f"one Adam step on 128 examples, {TRAIN_THREADS} thread(s)")
    print(tabulate(
        [[c["net"], c["nodes"], f"{c['plain_s'] * 1e3:.2f}", f"{c['regularised_s'] * 1e3:.2f}",
          f"{c['ratio']:.1f}x", f"{c['eigen_s'] * 1e3:.2f}", f"{c['eigen_share']:.0%}"]
         for c in cases],
        headers=["net", "graph nodes", "plain ms", "regularised ms", "ratio", "eigvalsh ms",
                 "eigen share"],
    ))
    print(json.dumps({"bench": "regulariser", "threads": TRAIN_THREADS, "cases": cases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
