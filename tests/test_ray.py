"""The Ray executor on a real Ray cluster of three nodes on this machine.

One cluster (``ray.cluster_utils.Cluster``: a head and two workers of one CPU each, one of
them advertising a GPU) serves the module; its tests run in one xdist worker. Checked:

* tasks computed on the cluster equal the local executor's, bit for bit, and spread over
  several nodes; training asks for the GPU (and gets it), analyses and null samples do not;
* the smoke grid through ``pytest --executor ray`` writes the same tables as a local run,
  after its driver was interrupted (the second run resumes from the store) and while a
  worker process is killed in the middle of a task (Ray re-runs it).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor needs ray (the ray extra)")

from harness.configs import TrainConfig  # noqa: E402
from harness.executors import (  # noqa: E402
    AnalysisTask,
    ExecutorUnavailable,
    LocalExecutor,
    ModelTask,
    RayExecutor,
    RayOptions,
)
from harness.spec import AnalysisSpec  # noqa: E402
from harness.store import Store  # noqa: E402
from harness.workers import pin_threads, threads_per_process  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray-cluster")]

ROOT = Path(__file__).resolve().parents[1]
NODE_MEMORY = 100 * 1024**2


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # pragma: no cover - another test left a connection
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": NODE_MEMORY,
                        "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
        cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=NODE_MEMORY)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def _tiny_tasks(n: int) -> list[AnalysisTask]:
    tasks = []
    for seed in range(n):
        model = ModelTask.of(TrainConfig("poly", widths=(32, 32), epochs=1, pruning_epochs=1,
                                         n_train=2000, n_test=500, seed=seed))
        tasks.append(AnalysisTask(model, "pruned", AnalysisSpec(n_clusters=4, null="layer", n_samples=6), seed,
                                  {"model": model.key, "phase": "pruned"}))
    return tasks


def test_cluster_results_equal_local_spread_over_nodes_and_train_on_the_gpu(
        cluster: Any, tmp_path: Path) -> None:
    tasks = _tiny_tasks(3)
    # A folder store on the driver: the coordinator collects what remote workers produced.
    executor = RayExecutor.start(Store(tmp_path / "ray-store"), RayOptions(address=cluster.address))
    try:
        assert executor.submit(tasks) == 6  # models first, then their analyses
        assert executor.submit(tasks) == 0  # each key once per run
        results = [executor.analysis(task) for task in tasks]
        models = [executor.model(task.model) for task in tasks]
        stats = executor.stats()
        gpu_nodes = {n["NodeID"] for n in ray.nodes() if n["Resources"].get("GPU")}
        with pytest.raises(ExecutorUnavailable, match="asks for 2 GPU.*has 1"):
            RayExecutor.start(Store(tmp_path / "other"), RayOptions(train_gpus=2))
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert stats["computed"] == 6 and stats["planned"] == 6 and stats["asked"] == 6
    assert stats["train_gpus"] == 1.0  # the cluster has a GPU: training asks for one
    records = {r["key"]: r for r in stats["tasks"]}
    for task in tasks:
        trained = records[task.model.key]
        assert trained["node"] in gpu_nodes and trained["gpus"] == [0]
        assert trained["device"] == "cpu"  # the advertised GPU is not a CUDA device here
        assert records[task.key]["gpus"] == []
        assert records[task.key]["map_tasks"] > 0  # null samples ran as separate tasks
    nodes = {r["node"] for r in stats["tasks"]} | {
        n for r in stats["tasks"] for n in r["map_nodes"]}
    assert len(nodes) >= 2, nodes

    # The same tasks locally, single-threaded like every Ray task: the same numbers.
    previous = threads_per_process()
    pin_threads(1)
    try:
        local = LocalExecutor(Store(tmp_path / "local-store"))
        expected = [local.analysis(task) for task in tasks]
        expected_models = [local.model(task.model) for task in tasks]
    finally:
        pin_threads(previous)
    for got, want in zip(results, expected, strict=True):
        assert got.ncut == want.ncut and got.pvalue == want.pvalue
        np.testing.assert_array_equal(got.null_distribution, want.null_distribution)
        np.testing.assert_array_equal(got.labels, want.labels)
    for got_model, want_model in zip(models, expected_models, strict=True):
        assert got_model.key == want_model.key
        for a, b in zip(got_model.weights("pruned"), want_model.weights("pruned"), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_training_unit_is_one_task_on_the_gpu(cluster: Any, tmp_path: Path) -> None:
    """Ensemble members (trainer="ensemble") of one unit train in one Ray task, on the GPU
    node, and store the weights each would have alone."""
    from harness.ensemble import train_ensemble

    configs = [TrainConfig("poly", widths=(32, 32), epochs=1, pruning_epochs=1, n_train=2000,
                           n_test=500, seed=seed, trainer="ensemble") for seed in range(3)]
    tasks = [ModelTask.of(config) for config in configs]
    executor = RayExecutor.start(Store(tmp_path / "ray-store"), RayOptions(address=cluster.address))
    try:
        assert executor.submit(tasks) == 3
        models = [executor.model(task) for task in tasks]
        stats = executor.stats()
        gpu_nodes = {n["NodeID"] for n in ray.nodes() if n["Resources"].get("GPU")}
    finally:
        executor.close()
    records = stats["tasks"]
    assert len(records) == 3 and {r["unit"] for r in records} == {3}
    assert len({(r["node"], r["pid"]) for r in records}) == 1  # one task trained all three
    assert {r["node"] for r in records} <= gpu_nodes
    previous = threads_per_process()
    pin_threads(1)
    try:
        alone = [train_ensemble([config], device="cpu")[0] for config in configs]
    finally:
        pin_threads(previous)
    for model, expected in zip(models, alone, strict=True):
        state = model.state_dict("pruned")
        for name, tensor in expected.state("pruned").items():
            assert np.array_equal(state[name].numpy(), tensor.numpy()), name


# -- the smoke grid through pytest --executor ray --------------------------------------------

SELECTION = [
    "experiments/test_clustering.py::test_factor",
    "experiments/test_random_init.py::test_random_init",
    "-k",
    "random_init or (not HALVES and (MNIST-unpruned or MNIST-pruned or POLY))",
]


def _pytest(tmp_path: Path, name: str, *args: str, store: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", *SELECTION, "--profile", "smoke", "-q",
        "-p", "no:cacheprovider", "--reports-dir", str(tmp_path / f"reports-{name}"),
        "--store", store, *args,
    ]


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]
    return sorted(rows, key=lambda r: r["test_id"])


class _Killer(threading.Thread):
    """Kills (SIGKILL) the first Ray worker process seen running a harness task for 2 s."""

    TITLES = (b"ray::harness.model", b"ray::harness.analysis")

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.killed: list[tuple[int, str]] = []

    def run(self) -> None:
        seen: dict[int, float] = {}
        while not self.stop.is_set() and not self.killed:
            now = time.monotonic()
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    title = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
                except OSError:
                    continue
                if title in self.TITLES:
                    pid = int(entry.name)
                    if now - seen.setdefault(pid, now) >= 2.0:
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append((pid, title.decode()))
                        break
            self.stop.wait(0.2)


def test_smoke_grid_on_ray_equals_local_after_an_interruption_and_a_killed_worker(
        cluster: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_STORE"))}
    env["HARNESS_PROGRESS"] = "0"
    local = subprocess.run(_pytest(tmp_path, "local", "-n", "2", store=str(tmp_path / "local")),
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]

    # A store URL (the fsspec code path) that the cluster's driver node writes.
    store_dir = tmp_path / "ray-store"
    store = store_dir.as_uri()
    ray_args = ["--executor", "ray", "--ray-address", cluster.address]

    # 1. Interrupt the driver as soon as the first model is in the store. SIGKILL, not Ctrl-C:
    # a Ctrl-C can land after the last test on a fast run (the run then completes and there
    # is nothing left to resume), and a killed driver is the harsher interruption (no clean-up).
    first = subprocess.Popen(_pytest(tmp_path, "ray-1", "-n", "0", *ray_args, store=store),
                             cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while not list(store_dir.glob("model/*/manifest.json")):
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no model reached the store"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    out, _ = first.communicate(timeout=300)
    assert first.returncode != 0, out[-3000:]
    stored = len(list(store_dir.glob("*/*/manifest.json")))
    assert stored >= 1

    # 2. Run again (two xdist workers joining the run) while a worker process is killed.
    log = tmp_path / "ray-tasks.jsonl"
    killer = _Killer()
    killer.start()
    try:
        second = subprocess.run(
            _pytest(tmp_path, "ray-2", "-n", "2", *ray_args, "--ray-log", str(log), store=store),
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        killer.stop.set()
        killer.join()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    summary = re.search(r"executor ray: (\d+) task\(s\) computed on (\d+) node\(s\), "
                        r"(\d+) already stored", second.stdout)
    assert summary, second.stdout[-2000:]
    computed, _, already = (int(g) for g in summary.groups())
    assert already >= stored and computed >= 1  # resumed: the first run's work was reused
    assert killer.killed, "no harness task was running long enough to be killed"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == computed
    killed_pids = {pid for pid, _ in killer.killed}
    assert not killed_pids & {r["pid"] for r in records}  # the killed attempt was re-run
    nodes = {r["node"] for r in records} | {n for r in records for n in r["map_nodes"]}
    assert len(nodes) >= 2, records

    for study in ("clustering", "random_init"):
        want = _table(tmp_path / "reports-local" / f"{study}.csv")
        got = _table(tmp_path / "reports-ray-2" / f"{study}.csv")
        assert want, f"no rows in {study}.csv"
        assert got == want, f"{study}.csv differs between the local run and the Ray run"
