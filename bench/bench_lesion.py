"""Benchmark: single lesion test, batched ("fast") vs one lesion at a time ("reference").

Both methods run in the same process on the same model, labels and test set (the paper's
setting: K=12 clusters, 20 random trials, the 10,000 MNIST test images, pruned MLP), and the
benchmark checks that they agree. Usage::

    python -m bench lesion                      # trained MNIST MLP (trains it once if needed)
    python -m bench.bench_lesion --synthetic    # random 784-256x4-10 MLP pruned to 90%
    python -m bench lesion --synthetic --trials=5   # via the runner: write values as --opt=value

The fast method issues many small multi-threaded operations, so it suffers more than the
reference when other processes compete for the cores (OpenMP threads wait at barriers);
measure on a quiet machine, or pass ``--threads=1``.

The last line printed is one JSON object:
``{"bench": "lesion", "fast_s": ..., "reference_s": ..., "speedup": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

SIZES = (784, 256, 256, 256, 256, 10)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_lesion", description=__doc__)
    parser.add_argument("--synthetic", action="store_true", help="random pruned MLP, random images")
    parser.add_argument("--n-test", type=int, default=10_000, help="test images (default 10000)")
    parser.add_argument("-k", "--n-clusters", type=int, default=12, help="clusters (default 12)")
    parser.add_argument("--trials", type=int, default=20, help="random lesions per sub-cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device for both methods")
    parser.add_argument("--threads", type=int, default=None, help="default: this process's share")
    return parser.parse_args(argv)


def _synthetic(n_test: int, seed: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """Random 784-256x4-10 MLP, each weight matrix magnitude-pruned to 90%, random images."""
    import torch

    try:
        from harness.models import MLP

        model = MLP(784, (256,) * 4, 10)
    except ImportError:  # pragma: no cover - harness.models is part of the project
        layers: list[torch.nn.Module] = []
        for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
            layers.append(torch.nn.Linear(a, b))
            if i < len(SIZES) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.uniform_(-1, 1, generator=gen).mul_((6 / sum(m.weight.shape)) ** 0.5)
                m.bias.zero_()
                cut = m.weight.abs().flatten().kthvalue(int(0.9 * m.weight.numel())).values
                m.weight[m.weight.abs() <= cut] = 0
    rng = np.random.default_rng(seed)
    x = rng.random((n_test, 784), dtype=np.float32)
    y = rng.integers(0, 10, n_test)
    return model.eval(), x, y


def _mnist(n_test: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """The pruned MNIST MLP (2 + 2 epochs; trained once and cached by the store)."""
    from harness.configs import config_for_tag
    from harness.data import as_torch, load_dataset
    from harness.train import get_or_train

    dataset = load_dataset("mnist")
    trained = get_or_train(config_for_tag("MNIST", epochs=2, pruning_epochs=2), dataset=dataset)
    x, y = as_torch(dataset, "test", subset=n_test)
    return trained.model("pruned"), x.numpy(), y.numpy()


def _labels(model: Any, k: int, seed: int) -> tuple[np.ndarray, str]:
    try:
        from harness.cluster import cluster_weights
        from harness.models import weight_matrices

        return np.asarray(
            cluster_weights(weight_matrices(model), k, seed=seed).labels
        ), "cluster_weights"
    except (ImportError, AttributeError) as exc:  # pragma: no cover - fallback for a bare tree
        print(f"note: harness.cluster unavailable ({exc}); using random labels", file=sys.stderr)
        return np.random.default_rng(seed).integers(0, k, sum(SIZES)), "random"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from harness.lesion import single_lesion_test
    from harness.parallel import pin_threads, threads_per_process

    pin_threads(args.threads or threads_per_process())
    source = "synthetic"
    if args.synthetic:
        model, x, y = _synthetic(args.n_test, args.seed)
    else:
        try:
            model, x, y = _mnist(args.n_test)
            source = "mnist"
        except Exception as exc:  # noqa: BLE001 - any failure to get data/model: say so, go on
            print(
                f"note: MNIST model unavailable ({type(exc).__name__}: {exc}); using --synthetic",
                file=sys.stderr,
            )
            model, x, y = _synthetic(args.n_test, args.seed)
            source = "synthetic (fallback)"
    labels, label_source = _labels(model, args.n_clusters, args.seed)

    kw = dict(n_trials=args.trials, seed=args.seed, device=args.device)
    single_lesion_test(model, labels, SIZES, x[:256], y[:256], method="fast", **kw)  # warm-up
    start = time.perf_counter()
    fast = single_lesion_test(model, labels, SIZES, x, y, method="fast", **kw)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    ref = single_lesion_test(model, labels, SIZES, x, y, method="reference", **kw)
    reference_s = time.perf_counter() - start

    n_subs = len(fast.rows)
    n_lesions = 1 + n_subs * (args.trials + 1)
    identical = bool(
        np.array_equal(fast.true_outcomes, ref.true_outcomes)
        and np.array_equal(fast.random_outcomes, ref.random_outcomes)
    )
    max_diff = float(np.max(np.abs(fast.random_overall - ref.random_overall)))
    print(
        f"model {source}, labels {label_source}, {n_subs} sub-clusters x {args.trials} trials "
        f"= {n_lesions} lesions on {len(x)} test images, device {args.device}"
    )
    print(f"  unlesioned accuracy     {fast.unlesioned:.4f}")
    print(f"  fast (batched)          {fast_s:8.2f} s")
    print(f"  reference (one by one)  {reference_s:8.2f} s")
    print(f"  speedup                 {reference_s / fast_s:8.1f} x")
    print(f"  identical results       {identical} (max |accuracy difference| {max_diff:.2g})")
    print(
        json.dumps(
            {
                "bench": "lesion",
                "fast_s": round(fast_s, 3),
                "reference_s": round(reference_s, 3),
                "speedup": round(reference_s / fast_s, 2),
                "model": source,
                "labels": label_source,
                "n_test": len(x),
                "n_clusters": args.n_clusters,
                "n_trials": args.trials,
                "n_sub_clusters": n_subs,
                "n_lesions": n_lesions,
                "device": args.device,
                "identical": identical,
                "max_abs_diff": max_diff,
            }
        )
    )
    return 0 if identical or max_diff <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
