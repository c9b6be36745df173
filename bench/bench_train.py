"""One MNIST MLP training epoch: the harness loop vs a plain DataLoader loop.

Both loops train the same 784-256-256-256-256-10 MLP (same init) for one epoch of 60,000
examples in batches of 128, in this process, with the same pinned thread count, after one
warm-up epoch each. Runs are interleaved (harness, reference, harness, ...) and the best of
``--repeats`` is kept, so load from other processes affects both sides alike.

* ``harness``: :func:`harness.training.run_epoch`: data as one tensor on the device, permuted
  once per epoch (seeded) into a reused buffer, batches as slices (views), metrics
  accumulated on the device, fused Adam.
* ``dataloader``: ``DataLoader(TensorDataset(x, y), shuffle=True, batch_size=128)``, default
  ``torch.optim.Adam``, ``loss.item()`` per batch: the loop most torch tutorials write.
* ``dataloader+fused``: the same DataLoader loop with the fused Adam, to separate the data
  pipeline's share of the speed-up from the optimizer's.

A second case (``--case cnn``) times the small CNN (conv 64-64-64, reference §2.3) on 28x28
MNIST images, batch 64, in the memory layouts :func:`harness.training.train` could use: one
training step (forward, backward, fused Adam) and one eval forward, in ms per image:

* ``contiguous``: model and inputs in torch's default NCHW layout.
* ``channels_last``: model and inputs in NHWC (``memory_format=torch.channels_last``), the
  layout oneDNN's CPU convolutions and cuDNN's tensor cores prefer; what ``train`` uses for
  conv nets.
* ``compile`` (with ``--compile``): ``torch.compile`` of the channels-last model; its
  one-off compilation time is reported separately.

Variants are interleaved and the best of ``--repeats`` kept, by wall clock and by this
process's CPU time (with one thread, CPU time is the work done, whatever the load from other
processes; with more it also counts the threads' spinning). Prints tables, then one JSON line
per case: ``{"bench": "train", "epoch_s", "dataloader_epoch_s", "speedup", ...}`` and
``{"bench": "train_cnn", "contiguous_train_ms_per_img", "channels_last_train_ms_per_img",
...}``.
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
from harness.training import run_epoch
from harness.workers import pin_threads, threads_per_process

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
    parser.add_argument("--case", choices=("all", "mlp", "cnn"), default="all",
                        help="the MLP epoch, the small-CNN layouts, or both (default)")
    parser.add_argument("--n", type=int, default=N_TRAIN, help="MLP training examples (60000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (best kept)")
    parser.add_argument("--cnn-batches", type=int, default=20,
                        help="CNN: timed training steps (batches of 64) per run (20)")
    parser.add_argument("--compile", action="store_true",
                        help="CNN: also time torch.compile (needs a C++ compiler; slow to build)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/BLAS threads (default: this process's share of the cores)")
    args = parser.parse_args(argv)
    threads = args.threads or threads_per_process()
    pin_threads(threads)
    status = 0
    if args.case in ("all", "mlp"):
        status |= _mlp_case(args, threads)
    if args.case in ("all", "cnn"):
        status |= _cnn_case(args, threads)
    return status


def _mlp_case(args: argparse.Namespace, threads: int) -> int:
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


# ----------------------------------------------------------------------------------------------
# The small CNN: memory layouts

CNN_BATCH = 64
CNN_EVAL_BATCH = 256


def _cnn_data(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from harness.data import DataUnavailableError, as_torch, load_dataset

        try:
            x, y = as_torch(load_dataset("mnist"), "train", flatten=False, subset=n)
            return x, y, "real MNIST"
        except DataUnavailableError as exc:
            note = f"synthetic (MNIST unavailable: {str(exc).splitlines()[0]})"
    except ImportError:  # pragma: no cover - the data module is part of the project
        note = "synthetic (harness.data not importable)"
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen), note


def _cnn_model(memory_format: torch.memory_format) -> torch.nn.Module:
    config = TrainConfig("mnist", arch="cnn", input_shape=(1, 28, 28), n_out=10)
    return build_model(config).to(memory_format=memory_format)


class _CnnVariant:
    """A small CNN, its fused Adam and its inputs, in one memory layout."""

    def __init__(self, name: str, memory_format: torch.memory_format, x: torch.Tensor,
                 y: torch.Tensor, *, compiled: bool = False) -> None:
        self.name = name
        self.model = _cnn_model(memory_format)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7, fused=True)
        self.x = x.contiguous(memory_format=memory_format)
        self.y = y
        self.forward: Any = torch.compile(self.model) if compiled else self.model
        self.compile_s = 0.0
        if compiled:
            start = time.perf_counter()
            self.train(1)
            self.eval()
            self.compile_s = time.perf_counter() - start

    def train(self, n_batches: int) -> tuple[float, float]:
        """Wall and CPU seconds per image of ``n_batches`` training steps."""
        self.model.train()
        start, cpu = time.perf_counter(), time.process_time()
        for b in range(n_batches):
            sl = slice(b * CNN_BATCH, (b + 1) * CNN_BATCH)
            loss = F.cross_entropy(self.forward(self.x[sl]), self.y[sl])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        n = n_batches * CNN_BATCH
        return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n

    @torch.no_grad()
    def eval(self) -> tuple[float, float]:
        """Wall and CPU seconds per image of an eval-mode forward over all the inputs."""
        self.model.eval()
        start, cpu = time.perf_counter(), time.process_time()
        for b in range(0, self.x.shape[0], CNN_EVAL_BATCH):
            self.forward(self.x[b:b + CNN_EVAL_BATCH])
        n = self.x.shape[0]
        return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def _cnn_case(args: argparse.Namespace, threads: int) -> int:
    n_batches = max(1, args.cnn_batches)
    x, y, source = _cnn_data(n_batches * CNN_BATCH)
    variants = [
        _CnnVariant("contiguous", torch.contiguous_format, x, y),
        _CnnVariant("channels_last", torch.channels_last, x, y),
    ]
    compile_note = ""
    if args.compile:
        try:
            variants.append(_CnnVariant("compile", torch.channels_last, x, y, compiled=True))
        except Exception as exc:  # noqa: BLE001 - report why compile is unavailable, go on
            compile_note = f"torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}"
    for v in variants:  # warm-up (oneDNN primitive caches, allocator), untimed
        v.train(2)
        v.eval()
    # name -> (train, eval) -> list of (wall, cpu) seconds per image
    runs: dict[str, tuple[list[tuple[float, float]], list[tuple[float, float]]]] = {
        v.name: ([], []) for v in variants
    }
    for _ in range(max(1, args.repeats)):
        for v in variants:
            runs[v.name][0].append(v.train(n_batches))
            runs[v.name][1].append(v.eval())

    def best(name: str, phase: int, clock: int) -> float:
        return 1e3 * min(t[clock] for t in runs[name][phase])

    from tabulate import tabulate

    rows = []
    for v in variants:
        row: list[str] = [v.name]
        for phase in (0, 1):
            for clock in (0, 1):
                ms = best(v.name, phase, clock)
                row += [f"{ms:.3f}", f"{best('contiguous', phase, clock) / ms:.2f}x"]
        rows.append([*row, f"{v.compile_s:.1f}" if v.compile_s else ""])
    print(f"small CNN: data {source}, train batch {CNN_BATCH} x {n_batches} steps, eval batch "
          f"{CNN_EVAL_BATCH}, threads {threads}, best of {max(1, args.repeats)}; ms per image, "
          "wall clock and this process's CPU time (robust to load from other processes)")
    print(tabulate(rows, headers=["layout", "train wall", "speed-up", "train cpu", "speed-up",
                                  "eval wall", "speed-up", "eval cpu", "speed-up", "compile s"]))
    if compile_note:
        print(compile_note)
    figures: dict[str, Any] = {"bench": "train_cnn"}
    for v in variants:
        figures[f"{v.name}_train_ms_per_img"] = round(best(v.name, 0, 0), 4)
        figures[f"{v.name}_train_cpu_ms_per_img"] = round(best(v.name, 0, 1), 4)
        figures[f"{v.name}_eval_ms_per_img"] = round(best(v.name, 1, 0), 4)
        figures[f"{v.name}_eval_cpu_ms_per_img"] = round(best(v.name, 1, 1), 4)
        if v.compile_s:
            figures[f"{v.name}_compile_s"] = round(v.compile_s, 2)
    figures.update({"batch": CNN_BATCH, "steps": n_batches, "threads": threads, "data": source})
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
