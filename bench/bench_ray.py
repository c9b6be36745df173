"""The Ray executor against local processes on the same cores, and Ray's null-sample throughput.

1. **Study**: the clustering study (``experiments/test_clustering.py``, Table B) at a profile,
   run twice from empty stores: locally (``pytest -n <cores>``: xdist workers, training in
   them, null samples in loky processes) and through ``--executor ray`` on a Ray instance
   of the same cores started for the run (``-n 0``: the forecast is submitted after
   collection, the tests wait). Reported: both wall times and their ratio (Ray / local;
   above 1 is Ray's overhead), and whether the two runs' tables are equal.
2. **Null samples**: ``--samples`` ``layer``-null samples of a 784-256x4-10 MLP pruned to 90%
   (bench ``nulls``' graph a), one sample per task, on Ray (``harness.executors.ray_map``)
   and in loky worker processes (``harness.workers.parallel_map``), both over all cores:
   samples (tasks) per second each, and Ray's rate for empty tasks (its per-task overhead).
   The same samples, so the n-cuts must be equal.
3. **Per-task costs** from the Ray run's task log (seconds per model and per analysis), the
   inputs of the README's estimate for the paper profile on a cluster.

Run ``python -m bench ray [--profile=smoke] [--select=EXPR] [--samples=N] [--skip-study]``; the last
line of output is one JSON object. Times are measured in one run, on one machine, as ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STUDY = "experiments/test_clustering.py::test_factor"


def _table(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in csv.DictReader(fh)]
    return sorted(rows, key=lambda r: r["test_id"])


def _study(tmp: Path, name: str, profile: str, select: str, cores: int, *extra: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(HARNESS_STORE=str(tmp / f"store-{name}"), HARNESS_PROGRESS="0")
    cmd = [sys.executable, "-m", "pytest", STUDY, "--profile", profile, "-q",
           "-p", "no:cacheprovider", "--reports-dir", str(tmp / f"reports-{name}"), *extra]
    if select:
        cmd += ["-k", select]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the {name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print(f"  {name:>5}: {wall:8.1f} s  ({proc.stdout.strip().splitlines()[-1]})", flush=True)
    return wall


def _one_sample(task: tuple[list[np.ndarray], Any, int]) -> float:
    """One null sample, single-threaded (as in harness.nulls' worker processes)."""
    from threadpoolctl import threadpool_limits

    from harness.nulls import null_sample_ncut

    kept, seed_seq, index = task
    with threadpool_limits(limits=1):
        return null_sample_ncut(kept, 12, "layer", "fast", None, seed_seq, index)[0]


def _null_throughput(n_samples: int, cores: int) -> dict[str, Any]:
    import ray

    import bench
    import harness
    from bench.bench_nulls import glorot_network
    from harness.executors import ray_map
    from harness.graph import remove_isolated
    from harness.nulls import null_sample_streams
    from harness.workers import parallel_map

    weights = glorot_network((784, 256, 256, 256, 256, 10), 0.9, np.random.default_rng(0))
    kept, _ = remove_isolated(weights)
    tasks = [(kept, ss, i) for i, ss in enumerate(null_sample_streams(0, "layer", n_samples))]

    parallel_map(_one_sample, tasks[:cores], n_workers=cores)  # start the workers
    started = time.perf_counter()
    local = parallel_map(_one_sample, tasks, n_workers=cores)
    local_s = time.perf_counter() - started

    modules = [str(Path(m.__file__).parent) for m in (harness, bench) if m.__file__]
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", object_store_memory=200 * 1024**2,
             runtime_env={"py_modules": modules})
    try:
        ray_map(_one_sample, tasks[:cores], cores, None)  # start the workers, imports paid
        started = time.perf_counter()
        remote = ray_map(_one_sample, tasks, cores, None)
        ray_s = time.perf_counter() - started
        empty = [(None,)] * 200
        ray_map(len, empty[:cores], cores, None)
        started = time.perf_counter()
        ray_map(len, empty, cores, None)
        empty_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    same = local == remote
    return {
        "null_samples": n_samples,
        "local_samples_per_s": n_samples / local_s,
        "ray_samples_per_s": n_samples / ray_s,
        "ray_null_tasks_per_s": n_samples / ray_s,
        "ray_empty_tasks_per_s": len(empty) / empty_s,
        "null_ratio_ray_over_local_time": ray_s / local_s,
        "null_samples_equal": bool(same),
    }


def _task_costs(log: Path) -> dict[str, Any]:
    if not log.is_file():
        return {}
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    out: dict[str, Any] = {}
    for kind in ("model", "clusterability"):
        seconds = [r["seconds"] for r in records if r["kind"] == kind]
        if seconds:
            out[f"{kind}_tasks"] = len(seconds)
            out[f"{kind}_median_s"] = statistics.median(seconds)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ray", description=__doc__)
    parser.add_argument("--profile", default="smoke", help="profile of the study (default smoke)")
    parser.add_argument("-k", "--select", dest="select", default="",
                        help="pytest -k expression selecting part of the study (default: all)")
    parser.add_argument("--samples", type=int, default=24, help="null samples (default 24)")
    parser.add_argument("--skip-study", action="store_true", help="only the null throughput")
    args = parser.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        # An optional extra: `python -m bench` still runs the other benchmarks.
        print("bench ray skipped: needs ray (pip install 'clusterability-harness[ray]')")
        return 0

    from harness.workers import available_cores, pin_threads

    cores = available_cores()
    pin_threads(1)
    result: dict[str, Any] = {"bench": "ray", "cores": cores, "profile": args.profile,
                              "select": args.select}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as name:
        tmp = Path(name)
        if not args.skip_study:
            print(f"clustering study, profile {args.profile}, {cores} cores:", flush=True)
            local_s = _study(tmp, "local", args.profile, args.select, cores, "-n", str(cores))
            log = tmp / "ray-tasks.jsonl"
            ray_s = _study(tmp, "ray", args.profile, args.select, cores, "-n", "0",
                           "--executor", "ray", "--ray-log", str(log))
            same = _table(tmp / "reports-local" / "clustering.csv") == _table(
                tmp / "reports-ray" / "clustering.csv")
            result.update(study_local_s=round(local_s, 1), study_ray_s=round(ray_s, 1),
                          study_ratio_ray_over_local=round(ray_s / local_s, 3),
                          study_tables_equal=same, **_task_costs(log))
        print(f"null samples: {args.samples}, one per task, {cores} cores:", flush=True)
        result.update(_null_throughput(args.samples, cores))

    from tabulate import tabulate

    rows = [[k, f"{v:.3f}" if isinstance(v, float) else v] for k, v in result.items()]
    print(tabulate(rows, headers=["figure", "value"]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
