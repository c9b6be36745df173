"""One MNIST MLP training epoch: the harness loop vs a plain DataLoader loop.

Both loops train the same 784-256-256-256-256-10 MLP (same init) for one epoch of 60,000
examples in batches of 128, in this process, with the same pinned thread count, after one
warm-up epoch each. Runs are interleaved (harness, reference, harness, ...) and the best of
``--repeats`` is kept, so load from other processes affects both sides alike.

* ``harness``: :func:`harness.train.run_epoch`: data as one tensor on the device, permuted
  once per epoch (seeded) into a reused buffer, batches as slices (views), metrics
  accumulated on the device, fused Adam.
* ``dataloader``: ``DataLoader(TensorDataset(x, y), shuffle=True, batch_size=128)``, default
  ``torch.optim.Adam``, ``loss.item()`` per batch: the loop most torch tutorials write.
* ``dataloader+fused``: the same DataLoader loop with the fused Adam, to separate the data
  pipeline's share of the speed-up from the optimizer's.

Prints a table, then one JSON line ``{"bench": "train", "epoch_s", "dataloader_epoch_s",
"speedup", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from harness.configs import TrainConfig
from harness.models import build_model
from harness.parallel import pin_threads, threads_per_process
from harness.train import run_epoch

N_TRAIN = 60_000
BATCH = 128


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from harness.data import DataUnavailableError, as_torch, load_dataset

        try:
            dataset = load_dataset("mnist")
            x, y = as_torch(dataset, "train", subset=n)
            return x, y, "real MNIST"
        except DataUnavailableError as exc:
            note = f"synthetic (MNIST unavailable: {str(exc).splitlines()[0]})"
    except ImportError:  # pragma: no cover - the data module is part of the project
        note = "synthetic (harness.data not importable)"
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 784, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return x, y, note


def _model() -> torch.nn.Module:
    config = TrainConfig("mnist", input_shape=(784,), n_out=10, widths=(256,) * 4)
    return build_model(config)


def _harness_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                   y: torch.Tensor, gen: torch.Generator,
                   buffers: tuple[torch.Tensor, torch.Tensor]) -> float:
    start = time.perf_counter()
    order = torch.randperm(x.shape[0], generator=gen)
    run_epoch(model, opt, x, y, order, batch_size=BATCH, classification=True, buffers=buffers)
    return time.perf_counter() - start


def _dataloader_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer,
                      loader: DataLoader[Any]) -> float:
    start = time.perf_counter()
    model.train()
    running = 0.0
    for xb, yb in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        running += loss.item()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench train", description=__doc__)
    parser.add_argument("--n", type=int, default=N_TRAIN, help="training examples (60000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per loop (best kept)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/BLAS threads (default: this process's share of the cores)")
    args = parser.parse_args(argv)
    threads = args.threads or threads_per_process()
    pin_threads(threads)
    x, y, source = _data(args.n)
    torch.manual_seed(0)  # the DataLoader's shuffling draws from the global RNG

    model_h = _model()
    opt_h = torch.optim.Adam(model_h.parameters(), lr=1e-3, eps=1e-7, fused=True)
    gen = torch.Generator().manual_seed(0)
    buffers = (torch.empty_like(x), torch.empty_like(y))  # reused across epochs, as in train()
    model_d = _model()
    opt_d = torch.optim.Adam(model_d.parameters(), lr=1e-3, eps=1e-7)
    model_f = _model()
    opt_f = torch.optim.Adam(model_f.parameters(), lr=1e-3, eps=1e-7, fused=True)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)

    runs: dict[str, list[float]] = {"harness": [], "dataloader": [], "dataloader+fused": []}
    # Warm-up epoch of each, untimed.
    _harness_epoch(model_h, opt_h, x, y, gen, buffers)
    _dataloader_epoch(model_d, opt_d, loader)
    _dataloader_epoch(model_f, opt_f, loader)
    for _ in range(max(1, args.repeats)):
        runs["harness"].append(_harness_epoch(model_h, opt_h, x, y, gen, buffers))
        runs["dataloader"].append(_dataloader_epoch(model_d, opt_d, loader))
        runs["dataloader+fused"].append(_dataloader_epoch(model_f, opt_f, loader))

    best = {name: min(times) for name, times in runs.items()}
    from tabulate import tabulate

    rows = [
        [name, f"{best[name]:.3f}", f"{np.median(times):.3f}",
         f"{best['dataloader'] / best[name]:.2f}x"]
        for name, times in runs.items()
    ]
    print(f"data: {source}, {x.shape[0]} examples, batch {BATCH}, threads {threads}, "
          f"best of {max(1, args.repeats)} warm epochs")
    print(tabulate(rows, headers=["loop", "best epoch s", "median s", "speed vs dataloader"]))
    print(json.dumps({
        "bench": "train",
        "epoch_s": round(best["harness"], 4),
        "dataloader_epoch_s": round(best["dataloader"], 4),
        "dataloader_fused_epoch_s": round(best["dataloader+fused"], 4),
        "speedup": round(best["dataloader"] / best["harness"], 3),
        "n": int(x.shape[0]),
        "threads": threads,
        "data": source,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
