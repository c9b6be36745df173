"""The executor seam without a cluster: tasks, keys, the local executor, the forecast of a
collected test, the map backend, and the executor options' usage errors."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from harness.cache import cached_clusterability
from harness.configs import TrainConfig
from harness.executors import (
    AnalysisTask,
    ExecutorUnavailable,
    LocalExecutor,
    ModelTask,
    RayExecutor,
    RayOptions,
    dependency_order,
)
from harness.profiles import get_profile
from harness.spec import AnalysisSpec
from harness.store import Store
from harness.training import get_or_train
from harness.workers import map_backend, parallel_map

pytest_plugins = ["pytester"]

TINY = TrainConfig("poly", widths=(16, 16), epochs=1, pruning_epochs=1, n_train=1000,
                   n_test=200, seed=3)


def _analysis(model: ModelTask, phase: str = "pruned", n: int = 4) -> AnalysisTask:
    spec = AnalysisSpec(n_clusters=4, null="layer", n_samples=n)
    return AnalysisTask(model, phase, spec, 11, {"model": model.key, "phase": phase})


# -- tasks and the local executor ---------------------------------------------------------------


def test_task_keys_are_the_store_keys_of_the_local_code_path(tmp_path: Path) -> None:
    store = Store(tmp_path)
    task = ModelTask.of(TINY)
    model = get_or_train(TINY, store=store, progress=False)
    assert task.key == model.key and task.payload == store.read_meta(model.path)["key_payload"]
    again = ModelTask.of_trained(model)
    assert again.key == task.key and again.payload == task.payload
    analysis = _analysis(task)
    result = cached_clusterability(
        model.weights("pruned"), AnalysisSpec(n_clusters=4, null="layer", n_samples=4), seed=11,
        store=store, identity={"model": model.key, "phase": "pruned"})
    assert store.keys("clusterability") == [analysis.key]
    assert analysis.dependencies == (task,) and task.dependencies == ()
    local = LocalExecutor(store).analysis(analysis)
    assert local.ncut == result.ncut
    np.testing.assert_array_equal(local.null_distribution, result.null_distribution)


def test_local_executor_computes_where_asked_and_submits_nothing(tmp_path: Path) -> None:
    executor = LocalExecutor(Store(tmp_path))
    task = _analysis(ModelTask.of(TINY), "unpruned")
    assert executor.submit([task]) == 0
    assert Store(tmp_path).keys("model") == []  # nothing computed ahead
    result = executor.analysis(task)
    assert Store(tmp_path).keys("model") == [task.model.key]
    assert Store(tmp_path).keys("clusterability") == [task.key]
    assert result.n_samples == 4 and result.null == "layer"
    assert executor.model(task.model).key == task.model.key
    assert executor.stats() == {"executor": "local"}


def test_dependency_order_puts_models_first_once() -> None:
    a, b = ModelTask.of(TINY), ModelTask.of(TINY.replace(seed=4))
    tasks = [_analysis(a), _analysis(b, "unpruned"), _analysis(a), b]
    ordered = dependency_order(tasks)
    assert [t.key for t in ordered] == [a.key, b.key, tasks[0].key, tasks[1].key]


# -- the forecast -------------------------------------------------------------------------------


def _item(params: dict[str, Any], fixtures: tuple[str, ...] = ("trained", "analysed")) -> Any:
    return SimpleNamespace(callspec=SimpleNamespace(params=params), fixturenames=list(fixtures))


def test_forecast_names_what_the_fixtures_ask_for() -> None:
    from fixtures.models import analysis_task, model_config, pytest_harness_plan

    smoke = get_profile("smoke")
    plan = pytest_harness_plan(_item({"tag": "POLY", "phase": "unpruned", "instance": 0}),
                               smoke, 7)
    model = ModelTask.of(model_config("POLY", 0, smoke, 7))
    want = analysis_task(model, "unpruned", n_clusters=12, null="layer", n_samples=smoke.n_nulls)
    assert [t.key for t in plan] == [model.key, want.key]
    # A test without analysed gets only its model; one without trained nothing.
    assert [t.key for t in pytest_harness_plan(_item({"tag": "POLY"}, ("trained",)), smoke, 7)] \
        == [model.key]
    assert pytest_harness_plan(_item({"tag": "POLY"}, ("record",)), smoke, 7) == []
    # The different-K study: another K, the profile's n_nulls_k samples (paper: 320).
    paper = get_profile("paper")
    plan = pytest_harness_plan(_item({"tag": "POLY", "k": 7, "null": "layer_nonzero",
                                      "instance": 1}), paper, 0)
    analysis = plan[-1]
    assert isinstance(analysis, AnalysisTask)
    spec = analysis.spec
    assert (spec.n_clusters, spec.null, spec.n_samples, analysis.phase) == (
        7, "layer_nonzero", paper.n_nulls_k, "pruned")
    assert analysis.model.config.seed == model_config("POLY", 1, paper, 0).seed


def test_forecast_of_a_claim_covers_its_cells_and_instances() -> None:
    from fixtures.models import pytest_harness_plan
    from harness.claims import REGISTRY

    claim_id = next(c for c, e in REGISTRY.items()
                    if e.cells and all(cell.tag == "POLY" for cell in e.cells)
                    and all(cell.phase != "init" for cell in e.cells))
    quick = get_profile("quick")
    plan = pytest_harness_plan(_item({"claim_id": claim_id}), quick, 0)
    cells = REGISTRY[claim_id].cells
    analyses = [t for t in plan if isinstance(t, AnalysisTask)]
    assert len(analyses) == len(cells) * quick.instances
    assert {t.phase for t in analyses} == {c.phase for c in cells}


# -- the map backend ----------------------------------------------------------------------------


def _square(x: int) -> int:
    return x * x


def test_map_backend_receives_multi_worker_maps_and_is_restored() -> None:
    calls: list[tuple[int, int]] = []

    def backend(fn: Any, items: list[Any], n_workers: int, on_result: Any) -> list[Any]:
        calls.append((len(items), n_workers))
        out = [fn(i) for i in items]
        for value in out:
            on_result(value) if on_result else None
        return out

    seen: list[int] = []
    with map_backend(backend):
        assert parallel_map(_square, [1, 2, 3], n_workers=2, on_result=seen.append) == [1, 4, 9]
        assert parallel_map(_square, [4], n_workers=1) == [16]  # one worker: in-process
    assert calls == [(3, 2)] and sorted(seen) == [1, 4, 9]
    with pytest.raises(RuntimeError), map_backend(backend):
        raise RuntimeError("inside")
    assert parallel_map(_square, [5, 6], n_workers=1) == [25, 36]
    assert calls == [(3, 2)]  # restored: local again


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ExecutorUnavailable, match=r"pip install 'clusterability-harness\[ray\]'"):
        RayExecutor.start(Store(tmp_path), RayOptions())


# -- options: one clear line before the first test ----------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
CONFTEST = 'pytest_plugins = ["harness.plugin"]\n'
STUDY = "def test_nothing(executor):\n    assert executor.name == 'local'\n"


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``run(*args)``: pytest in a subprocess, on a one-test study, with this checkout's plugin."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's harness, whatever is installed
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_demo=STUDY)

    def _run(*args: str) -> Any:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "0", *args)

    return _run


def test_local_is_the_default_executor(run: Callable[..., Any]) -> None:
    run().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray-address", "127.0.0.1:1"], "*--ray-address need(s) --executor ray*"),
        (["--executor", "spark"], "*invalid choice: 'spark'*"),
        (["--executor", "ray", "--ray-train-gpus", "-1"], "*--ray-train-gpus must be >= 0*"),
        (["--store", "nosuchprotocol://bucket/x"], "*--store nosuchprotocol://bucket/x*"),
    ],
    ids=["ray-option-without-ray", "unknown-executor", "negative-gpus", "unknown-store-url"],
)
def test_bad_executor_options_are_usage_errors(run: Callable[..., Any], args: list[str],
                                               message: str) -> None:
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "passed" not in result.stdout.str()


def test_collect_only_starts_no_local_ray_cluster(
        pytester: pytest.Pytester, run: Callable[..., Any]) -> None:
    """--collect-only computes nothing, so ``--executor ray`` without an address starts no
    local cluster for it (seconds saved on every dry run); here ray cannot even be imported,
    so starting one would be a usage error."""
    pytester.makeconftest('import sys\nsys.modules["ray"] = None\n' + CONFTEST)
    collected = run("--executor", "ray", "--collect-only", "-q")
    assert collected.ret == pytest.ExitCode.OK, collected.stderr.str()
    collected.stdout.fnmatch_lines(["*1 test collected*"])
    started = run("--executor", "ray")
    assert started.ret == pytest.ExitCode.USAGE_ERROR
    started.stderr.fnmatch_lines(["*pip install *clusterability-harness?ray?*"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_cluster_is_one_line_before_the_first_test(run: Callable[..., Any]) -> None:
    pytest.importorskip("ray", reason="needs ray (the ray extra)")
    port = _closed_port()
    result = run("--executor", "ray", "--ray-address", f"127.0.0.1:{port}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: cannot reach the Ray cluster at 127.0.0.1:{port} *"])
    assert len([line for line in result.stderr.lines if line.strip()]) == 1
    client = run("--executor", "ray", "--ray-address", f"ray://127.0.0.1:{port}")
    assert client.ret == pytest.ExitCode.USAGE_ERROR
    client.stderr.fnmatch_lines(["*Ray Client address*folder store*pass --store with a URL*"])
