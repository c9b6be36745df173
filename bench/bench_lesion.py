"""Benchmark: single lesion test, batched ("fast") vs one lesion at a time ("reference").

Both methods run in the same process on the same model, labels and test set, and the
benchmark checks that they agree. Two cases:

``mlp``
    The paper's MLP setting: K=12 clusters, 20 random trials, the 10,000 MNIST test images,
    pruned MLP (``--synthetic``: a random 784-256x4-10 MLP pruned to 90%, random images).
``cnn``
    Lesions of conv filters (§6, the CNN rows): the small CNN of §2.3 (Keras-init random
    weights; 64-64-64 filters), K=12 labels from clustering its filter graph (§3.3), a few
    hundred MNIST test images (random images with ``--synthetic`` or without the data), 3
    random trials. A forward pass of this CNN costs ~100x the MLP's, so the case is small.

Usage::

    python -m bench lesion                        # both cases (trains the MNIST MLP once)
    python -m bench lesion --case=cnn --threads=1 # via the runner: write values as --opt=value
    python -m bench.bench_lesion --synthetic --case=mlp --trials=5

The fast method issues many small multi-threaded operations, so it suffers more than the
reference when other processes compete for the cores (OpenMP threads wait at barriers);
measure on a quiet machine, or pass ``--threads=1``. Times are wall-clock; the CPU time of
this process is printed too (steadier on a shared machine).

The last line printed is one JSON object:
``{"bench": "lesion", "cases": {"mlp": {"fast_s": ..., "reference_s": ..., "speedup": ...,
"identical": ..., ...}, "cnn": {...}}, "identical": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np

SIZES = (784, 256, 256, 256, 256, 10)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_lesion", description=__doc__)
    parser.add_argument(
        "--case", choices=("all", "mlp", "cnn"), default="all", help="which case (default all)"
    )
    parser.add_argument("--synthetic", action="store_true", help="random images (MLP: pruned)")
    parser.add_argument("--n-test", type=int, default=10_000, help="MLP test images (10000)")
    parser.add_argument("-k", "--n-clusters", type=int, default=12, help="clusters (default 12)")
    parser.add_argument("--trials", type=int, default=20, help="MLP random lesions per sub-cluster")
    parser.add_argument("--cnn-test", type=int, default=200, help="CNN test images (200)")
    parser.add_argument("--cnn-trials", type=int, default=3, help="CNN random lesions (3)")
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
    from harness.training import get_or_train

    dataset = load_dataset("mnist")
    trained = get_or_train(config_for_tag("MNIST", epochs=2, pruning_epochs=2), dataset=dataset)
    x, y = as_torch(dataset, "test", subset=n_test)
    return trained.model("pruned"), x.numpy(), y.numpy()


def _cnn(n_test: int, seed: int, synthetic: bool) -> tuple[Any, np.ndarray, np.ndarray, str]:
    """The small CNN of §2.3 with Keras-init weights, and MNIST test images (N, 1, 28, 28)."""
    from harness.models import SmallCNN, keras_init_

    model = keras_init_(SmallCNN((1, 28, 28)), seed=seed).eval()
    if not synthetic:
        try:
            from harness.data import as_torch, load_dataset

            x, y = as_torch(load_dataset("mnist"), "test", flatten=False, subset=n_test)
            return model, x.numpy(), y.numpy(), "mnist"
        except Exception as exc:  # noqa: BLE001 - any failure to get data: say so, go on
            print(
                f"note: MNIST unavailable ({type(exc).__name__}: {exc}); random images",
                file=sys.stderr,
            )
    rng = np.random.default_rng(seed)
    x = rng.random((n_test, 1, 28, 28), dtype=np.float32)
    return model, x, rng.integers(0, 10, n_test), "random"


def _cnn_labels(model: Any, k: int, seed: int) -> tuple[np.ndarray, tuple[int, ...], str]:
    from harness.cluster import cluster_weights
    from harness.model_kernels import module_filter_graph

    clustering = cluster_weights(module_filter_graph(model), k, seed=seed)
    return np.asarray(clustering.labels), tuple(clustering.layer_sizes), "filter graph"


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


def _compare(
    run: Any, fast_kw: dict[str, Any], ref_kw: dict[str, Any]
) -> tuple[Any, Any, dict[str, float]]:
    """Run both methods (fast first); their results and wall / CPU seconds."""
    times: dict[str, float] = {}
    results = []
    for name, kw in (("fast", fast_kw), ("reference", ref_kw)):
        wall, cpu = time.perf_counter(), time.process_time()
        results.append(run(**kw))
        times[f"{name}_s"] = time.perf_counter() - wall
        times[f"{name}_cpu_s"] = time.process_time() - cpu
    return results[0], results[1], times


def _report(
    title: str, fast: Any, ref: Any, times: dict[str, float], **info: Any
) -> dict[str, Any]:
    """Print one case's table; its figures as builtin types."""
    n_subs = len(fast.rows)
    n_lesions = 1 + n_subs * (fast.n_trials + 1)
    identical = bool(
        np.array_equal(fast.true_outcomes, ref.true_outcomes)
        and np.array_equal(fast.random_outcomes, ref.random_outcomes)
    )
    max_diff = float(np.max(np.abs(fast.random_overall - ref.random_overall)))
    speedup = times["reference_s"] / times["fast_s"]
    cpu_speedup = times["reference_cpu_s"] / max(times["fast_cpu_s"], 1e-9)
    print(f"{title}: {n_subs} sub-clusters x {fast.n_trials} trials = {n_lesions} lesions")
    print(f"  unlesioned accuracy     {fast.unlesioned:.4f}")
    print(f"  fast (batched)          {times['fast_s']:8.2f} s   (CPU {times['fast_cpu_s']:.2f} s)")
    print(
        f"  reference (one by one)  {times['reference_s']:8.2f} s   "
        f"(CPU {times['reference_cpu_s']:.2f} s)"
    )
    print(f"  speedup                 {speedup:8.1f} x   (CPU time {cpu_speedup:.1f} x)")
    print(f"  identical results       {identical} (max |accuracy difference| {max_diff:.2g})")
    return {
        **{k: round(v, 3) for k, v in times.items()},
        "speedup": round(speedup, 2),
        "cpu_speedup": round(cpu_speedup, 2),
        "n_trials": int(fast.n_trials),
        "n_sub_clusters": n_subs,
        "n_lesions": n_lesions,
        "identical": identical,
        "max_abs_diff": max_diff,
        **info,
    }


def _mlp_case(args: argparse.Namespace) -> dict[str, Any]:
    from harness.lesion import single_lesion_test

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
    fast, ref, times = _compare(
        lambda **o: single_lesion_test(model, labels, SIZES, x, y, **o),
        dict(kw, method="fast"),
        dict(kw, method="reference"),
    )
    return _report(
        f"MLP {source}, labels {label_source}, {len(x)} test images, device {args.device}",
        fast,
        ref,
        times,
        model=source,
        labels=label_source,
        n_test=len(x),
        n_clusters=args.n_clusters,
        device=args.device,
    )


def _cnn_case(args: argparse.Namespace) -> dict[str, Any]:
    from harness.lesion import single_lesion_test

    model, x, y, source = _cnn(args.cnn_test, args.seed, args.synthetic)
    labels, sizes, label_source = _cnn_labels(model, args.n_clusters, args.seed)
    kw = dict(n_trials=args.cnn_trials, seed=args.seed, device=args.device)
    with warnings.catch_warnings():  # warm-up (first-call costs of the conv kernels)
        warnings.simplefilter("ignore")  # a few images miss some classes
        for method in ("fast", "reference"):
            single_lesion_test(
                model,
                labels,
                sizes,
                x[:16],
                y[:16],
                method=method,
                layers=[3],
                **dict(kw, n_trials=1),
            )
    fast, ref, times = _compare(
        lambda **o: single_lesion_test(model, labels, sizes, x, y, **o),
        dict(kw, method="fast"),
        dict(kw, method="reference"),
    )
    return _report(
        f"small CNN (random init) on {source} images, labels {label_source}, {len(x)} test "
        f"images, device {args.device}",
        fast,
        ref,
        times,
        model=f"small CNN, {source} images",
        labels=label_source,
        n_test=len(x),
        n_clusters=args.n_clusters,
        device=args.device,
    )


CASES = {"mlp": _mlp_case, "cnn": _cnn_case}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from harness.workers import pin_threads, threads_per_process

    pin_threads(args.threads or threads_per_process())
    names = list(CASES) if args.case == "all" else [args.case]
    cases = {name: CASES[name](args) for name in names}
    ok = all(c["identical"] or c["max_abs_diff"] <= 1e-3 for c in cases.values())
    identical = all(c["identical"] for c in cases.values())
    print(json.dumps({"bench": "lesion", "cases": cases, "identical": identical}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
