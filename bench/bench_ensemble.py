"""Ensembles against one network at a time: training time per network-epoch (issue 23).

In one run, on one device:

* ``ensemble``: :func:`harness.ensemble.train_ensemble` trains ``--mlp-nets`` paper MLPs
  (784-256x4-10 on MNIST, batch 128, the six MNIST variants of Table B in turn: control,
  dropout, L1, L2 with the first-layer quirk, L2 on every layer, clusterable init; seeds
  0..N-1) together, ``--epochs`` epochs then ``--pruning-epochs`` pruning epochs;
* ``single``: :func:`harness.training.train` trains the first of them alone, the same schedule;
* ``ensemble of 1``: the ensemble trainer on that one network.

Each figure is the whole call's wall time (data to the device, model building, every epoch
and its test-set evaluation) divided by networks x epochs, after an untimed warm-up (CUDA
context, kernels, oneDNN caches); the CPU time of this process is reported too (on a shared
machine it is the work done, whatever the load from other processes). ``--case cnn`` does the same for ``--cnn-nets`` small CNNs
(conv 64-64-64, batch 64). On the CPU, training runs on one thread
(:data:`harness.training.TRAIN_THREADS`) and the defaults use data subsets so that the
benchmark takes about a minute; on CUDA the defaults are full MNIST, 75 MLPs and 16 CNNs.

Prints a table, then one JSON line: ``{"bench": "ensemble", "device", "mlp_nets",
"mlp_ensemble_ms_per_net_epoch", "mlp_single_ms_per_net_epoch", "mlp_speedup", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from harness.configs import TrainConfig, config_for_tag
from harness.devices import pick_device
from harness.ensemble import train_ensemble
from harness.training import train

MLP_TAGS = ("MNIST", "MNIST+DROPOUT", "MNIST+L1REG", "MNIST+L2REG", "MNIST+L2REG-ALL",
            "MNIST+MOD-INIT")
CNN_TAGS = ("CNN-MNIST", "CNN-MNIST+DROPOUT", "CNN-MNIST+L1REG", "CNN-MNIST+L2REG",
            "CNN-MNIST+MOD-INIT")


def _configs(tags: tuple[str, ...], n: int, **schedule: Any) -> list[TrainConfig]:
    return [config_for_tag(tags[i % len(tags)], seed=i, trainer="ensemble", **schedule)
            for i in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Any, device: torch.device) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds of ``fn()``."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def _case(name: str, tags: tuple[str, ...], n_nets: int, schedule: dict[str, Any],
          dataset: Any, device: torch.device) -> dict[str, Any]:
    configs = _configs(tags, n_nets, **schedule)
    epochs = schedule["epochs"] + schedule["pruning_epochs"]
    # Warm-up, untimed: a short run of each path.
    warm = {**schedule, "epochs": 1, "pruning_epochs": 0,
            "n_train": min(2048, schedule.get("n_train") or 2048), "n_test": 256}
    train_ensemble(_configs(tags, min(n_nets, 2), **warm), dataset, device=device)
    train(_configs(tags, 1, **warm)[0].replace(trainer="single"), dataset, device=device)
    ensemble_s = _timed(lambda: train_ensemble(configs, dataset, device=device), device)
    single_s = _timed(
        lambda: train(configs[0].replace(trainer="single"), dataset, device=device), device)
    one_s = _timed(lambda: train_ensemble(configs[:1], dataset, device=device), device)
    per = {
        "ensemble": 1e3 * ensemble_s[0] / (n_nets * epochs),
        "single": 1e3 * single_s[0] / epochs,
        "ensemble_of_1": 1e3 * one_s[0] / epochs,
        "ensemble_cpu": 1e3 * ensemble_s[1] / (n_nets * epochs),
        "single_cpu": 1e3 * single_s[1] / epochs,
    }
    return {"case": name, "nets": n_nets, "epochs": epochs,
            "n_train": schedule.get("n_train") or dataset.n_train, **per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ensemble", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("all", "mlp", "cnn"), default="all")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA "
                        "when present; $HARNESS_DEVICE)")
    parser.add_argument("--mlp-nets", type=int, default=75, help="MLPs in the ensemble (75)")
    parser.add_argument("--cnn-nets", type=int, default=None,
                        help="small CNNs in the ensemble (16 on CUDA, 4 on the CPU)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="MLP training examples (all 60,000 on CUDA, 2,000 on the CPU)")
    parser.add_argument("--cnn-n-train", type=int, default=None,
                        help="CNN training examples (10,000 on CUDA, 256 on the CPU)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs before pruning (1)")
    parser.add_argument("--pruning-epochs", type=int, default=1, help="pruning epochs (1)")
    args = parser.parse_args(argv)
    for name in ("mlp_nets", "cnn_nets", "n_train", "cnn_n_train"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"--{name.replace('_', '-')} must be >= 1, got {value}", file=sys.stderr)
            return 2
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    from harness.data import load_dataset

    dataset = load_dataset("mnist")
    rows = []
    schedule = {"epochs": args.epochs, "pruning_epochs": args.pruning_epochs}
    if args.case in ("all", "mlp"):
        n_train = args.n_train or (None if cuda else 2000)
        rows.append(_case("mlp", MLP_TAGS, args.mlp_nets,
                          {**schedule, "n_train": n_train, "n_test": 10_000 if cuda else 1000},
                          dataset, device))
    if args.case in ("all", "cnn"):
        n_nets = args.cnn_nets or (16 if cuda else 4)
        n_train = args.cnn_n_train or (10_000 if cuda else 256)
        rows.append(_case("cnn", CNN_TAGS, n_nets,
                          {**schedule, "n_train": n_train, "n_test": 2000 if cuda else 256},
                          dataset, device))
    from tabulate import tabulate

    name = torch.cuda.get_device_name(device) if cuda else "cpu, 1 training thread"
    print(f"device: {device} ({name}); ms per network-epoch, whole training call (data, "
          "build, epochs, evaluation) after a warm-up")
    print(tabulate(
        [[r["case"], r["nets"], r["n_train"], r["epochs"], f"{r['ensemble']:.1f}",
          f"{r['single']:.1f}", f"{r['ensemble_of_1']:.1f}", f"{r['single'] / r['ensemble']:.2f}x",
          f"{r['ensemble_cpu']:.1f}", f"{r['single_cpu']:.1f}"]
         for r in rows],
        headers=["case", "nets", "examples", "epochs", "ensemble", "single", "ensemble of 1",
                 "speed-up", "ensemble cpu", "single cpu"]))
    figures: dict[str, Any] = {"bench": "ensemble", "device": str(device), "device_name": name}
    for r in rows:
        c = r["case"]
        figures.update({
            f"{c}_nets": r["nets"], f"{c}_n_train": r["n_train"], f"{c}_epochs": r["epochs"],
            f"{c}_ensemble_ms_per_net_epoch": round(r["ensemble"], 2),
            f"{c}_single_ms_per_net_epoch": round(r["single"], 2),
            f"{c}_ensemble_of_1_ms_per_net_epoch": round(r["ensemble_of_1"], 2),
            f"{c}_speedup": round(r["single"] / r["ensemble"], 3),
            f"{c}_ensemble_cpu_ms_per_net_epoch": round(r["ensemble_cpu"], 2),
            f"{c}_single_cpu_ms_per_net_epoch": round(r["single_cpu"], 2),
        })
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
