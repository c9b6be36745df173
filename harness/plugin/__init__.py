"""The pytest plugin: profiles, seeds, thread pinning, result rows, claims and reports.

Loaded by the project's ``conftest.py``. Experiments are ordinary parametrized tests; they use
these fixtures:

``profile``
    The :class:`~harness.profiles.Profile` chosen with ``--profile`` (default ``quick``).
``seed``
    This test's seed: ``--harness-seed`` + crc32(node id), so it is the same whatever the
    number of xdist workers or the order tests run in.
``store``
    The artifact :class:`~harness.store.Store` (``--store`` or ``HARNESS_STORE``).
``record``
    ``record(row)`` / ``record(**columns)`` adds one result row (builtin types only). Rows
    travel with the test report (``user_properties``) to the controller, which alone writes
    ``reports/<study>.csv|md`` at the end of the run.
``claim``
    ``claim(text, holds, expected=..., observed=...)`` records one research claim and, in
    profiles that assert claims, fails the test with the numbers when it does not hold.

Threads: every process (the controller with ``-n 0``, or each xdist worker) pins torch, BLAS
and OpenMP to ``cores // workers`` threads in ``pytest_configure``.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cluster import METHODS as CLUSTER_METHODS
from harness.profiles import PROFILES, Profile, get_profile
from harness.seeding import check_seed, derive_seed
from harness.store import Store, is_url, library_versions
from harness.workers import pin_threads, threads_per_process, xdist_worker_count

ROW_KEY = "harness_row"
CLAIM_KEY = "harness_claim"
FIGURE_KEY = "harness_figure"
DEFAULT_PROFILE = "quick"
DEFAULT_SEED = 0

__all__ = ["ROW_KEY", "CLAIM_KEY", "to_builtin", "ClaimFailed"]


class ClaimFailed(AssertionError):
    """A research claim did not hold in the data (the message carries the numbers)."""


def to_builtin(value: Any, *, where: str = "value") -> Any:
    """Convert a row value to builtin Python types; reject arrays and other objects.

    numpy scalars become ``int``/``float``/``bool``; tuples become lists. Rows must be plain
    data because xdist ships them between processes and the report writers format them.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [to_builtin(v, where=where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_builtin(v, where=f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"{where} has type {type(value).__name__}; result rows hold builtin types only "
        "(str, int, float, bool, None, lists and dicts of those). Convert arrays to "
        "summary numbers, or use a result's to_row()."
    )


def canonical_nodeid(nodeid: str) -> str:
    """The node id without xdist's ``@group`` suffix (added under ``--dist loadgroup``).

    Seeds and report keys use this form so that they do not depend on how tests were
    scheduled. Parameter ids in this project never contain ``@``.
    """
    return nodeid.split("@", 1)[0]


def _study_of(nodeid: str) -> str:
    """``experiments/test_clustering.py::test_x[...]`` -> ``clustering``."""
    module = nodeid.split("::", 1)[0]
    stem = Path(module).stem
    return stem.removeprefix("test_")


# --------------------------------------------------------------------------------------
# options and configuration


def cell_of(item: Any) -> str:
    """The configuration a test's rows belong to: its function and every parameter but
    ``instance``, e.g. ``test_factor[tag=MNIST, phase=pruned]``.

    Rows of one cell are instances of one configuration (their mean is what the drift check
    compares), so every parameter that tells variants apart (``isolation``, ``bn``, ...)
    is part of it without being listed anywhere.
    """
    params = getattr(getattr(item, "callspec", None), "params", {})
    name = getattr(item, "originalname", None) or str(getattr(item, "name", "")).split("[")[0]
    inner = ", ".join(f"{k}={v}" for k, v in params.items() if k != "instance")
    return f"{name}[{inner}]" if inner else name


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "clusterability harness")
    group.addoption(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help=f"experiment scale: {', '.join(sorted(PROFILES))} (default {DEFAULT_PROFILE})",
    )
    group.addoption(
        "--harness-seed",
        type=int,
        default=None,
        help=f"base seed of every experiment (default {DEFAULT_SEED}); test seed = base + crc32(node id)",
    )
    group.addoption(
        "--store",
        default=None,
        help="artifact store folder for trained models and null distributions "
        "(default: $HARNESS_STORE or <project>/.store)",
    )
    group.addoption(
        "--reports-dir",
        default=None,
        help="where the controller writes tables, claims and index.html (default: <rootdir>/reports)",
    )
    group.addoption(
        "--baseline",
        default=None,
        metavar="DIR",
        help="a baseline of the same profile (baselines/ci: runs at several seeds, from `make "
        "baseline`; or one earlier run's reports folder): write drift.md (claims whose verdict "
        "flipped, cells that moved beyond their seed-to-seed and sampling noise)",
    )
    group.addoption(
        "--cluster-method",
        choices=CLUSTER_METHODS,
        default="fast",
        help="spectral clustering estimator of every analysis: fast (default, the paper's), "
        "reference (scikit-learn itself) or fast_ncut (lowest-n-cut restart, another estimator)",
    )
    group.addoption(
        "--record-claims",
        action="store_true",
        default=False,
        help="record every claim's verdict without asserting it (calibration runs)",
    )
    group.addoption(
        "--fail-on-drift",
        action="store_true",
        default=False,
        help="with --baseline: fail the session when anything drifted",
    )
    _add_executor_options(group)


def _baseline(config: pytest.Config) -> Any:
    """``--baseline DIR``, read and checked once, before the first test (None without it).

    Every file of the baseline is parsed here (:func:`harness.report.load_baseline`), so a
    truncated ``run.json``, a broken CSV, a baseline of another profile, or a baseline that is
    this run's own reports folder (which the run would overwrite before comparing) is one
    line and exit status 4, not a traceback after the last test.
    """
    if _BASELINE in config.stash:
        return config.stash[_BASELINE]
    value = config.getoption("--baseline", default=None)
    if config.getoption("--fail-on-drift", default=False) and not value:
        raise pytest.UsageError("--fail-on-drift needs --baseline DIR")
    if not value:
        config.stash[_BASELINE] = None
        return None
    from harness.report.baseline import BaselineError, load_baseline

    state = config.stash[_STATE]
    path = Path(value).resolve()
    reports = state.reports_dir
    if path == reports or reports in path.parents or path in reports.parents:
        raise pytest.UsageError(
            f"--baseline {value} is (or holds, or sits in) this run's --reports-dir {reports}: the "
            "run would overwrite it before comparing; pass another --reports-dir"
        )
    try:
        baseline = load_baseline(path, profile=state.profile.name)
    except BaselineError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_BASELINE] = baseline
    return baseline


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    if not _is_worker(session.config):
        _baseline(session.config)


@dataclass
class _RunState:
    profile: Profile
    base_seed: int
    reports_dir: Path
    store_root: str | None
    started: float = field(default_factory=time.time)
    rows: list[dict[str, Any]] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    figures: set[str] = field(default_factory=set)
    threads: int = 1
    fidelity_line: str = ""
    drift_line: str = ""


_STATE = pytest.StashKey[_RunState]()
_BASELINE = pytest.StashKey[Any]()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


_BUILTIN_MARKERS = {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings"}


def _check_markexpr(config: pytest.Config) -> None:
    """Fail early on ``-m`` expressions that name no registered marker (a typo selects nothing)."""
    expr = config.getoption("markexpr", default="") or ""
    if not expr:
        return
    registered = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    registered |= _BUILTIN_MARKERS | {"xdist_group"}
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expr)) - {"and", "or", "not"}
    unknown = sorted(names - registered)
    if unknown:
        raise pytest.UsageError(
            f"-m {expr!r} names unknown marker(s) {unknown}; registered markers: "
            f"{', '.join(sorted(registered - _BUILTIN_MARKERS))}"
        )


def _check_writable_dir(path: Path, source: str, fix: str) -> None:
    """UsageError unless ``path`` is a folder this process can write to, or can create.

    Checked before the first test, because the controller writes reports (and tests write
    the store) only later. Nothing is created: the nearest existing folder gets a probe file,
    removed at once.
    """
    import tempfile

    path = Path(os.path.abspath(path))
    existing = path
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            problem = (
                "is a file, not a folder"
                if existing == path
                else f"cannot be created: {existing} is not a folder"
            )
            raise pytest.UsageError(f"{source} {path} {problem}; {fix}")
        with tempfile.TemporaryFile(dir=existing, prefix=".harness-probe-"):
            pass
    except OSError as exc:
        where = "" if existing == path else f" (cannot create files in {existing})"
        raise pytest.UsageError(
            f"{source} {path} is not writable{where}: {exc.strerror or exc}; {fix}"
        ) from None


def pytest_configure(config: pytest.Config) -> None:
    _check_markexpr(config)
    if not _is_worker(config):  # workers inherit the controller's checked settings
        reports_opt = config.getoption("--reports-dir")
        if reports_opt:
            _check_writable_dir(
                Path(reports_opt), "--reports-dir", "pass a folder the reports can be written to"
            )
        store_opt = config.getoption("--store")
        store_env = os.environ.get("HARNESS_STORE")
        if _check_store_url(store_opt or store_env, "--store" if store_opt else "HARNESS_STORE"):
            pass  # a URL store, checked there
        elif store_opt:
            _check_writable_dir(
                Path(store_opt).expanduser(), "--store", "pass a writable folder for the artifact store"
            )
        elif store_env:
            _check_writable_dir(
                Path(store_env).expanduser(),
                "HARNESS_STORE",
                "set HARNESS_STORE to a writable folder (or pass --store DIR)",
            )
    profile = get_profile(config.getoption("--profile") or DEFAULT_PROFILE)
    seed_opt = config.getoption("--harness-seed")
    try:
        base_seed = DEFAULT_SEED if seed_opt is None else check_seed(seed_opt, name="--harness-seed")
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(str(exc)) from None
    reports_opt = config.getoption("--reports-dir")
    reports_dir = Path(reports_opt) if reports_opt else Path(config.rootpath) / "reports"
    store_root = config.getoption("--store")
    if store_root:
        # Workers and null-sampling subprocesses inherit the environment.
        os.environ["HARNESS_STORE"] = (
            store_root if is_url(store_root) else str(Path(store_root).resolve())
        )
    n_workers = xdist_worker_count() if _is_worker(config) else 1
    threads = threads_per_process(n_workers)
    pin_threads(threads)
    config.stash[_STATE] = _RunState(
        profile=profile,
        base_seed=base_seed,
        reports_dir=reports_dir.resolve(),
        store_root=store_root,
        threads=threads,
    )
    if not _is_worker(config):
        config.pluginmanager.register(_Collector(config), "harness-collector")
    _start_executor(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash[_STATE]
    store = os.environ.get("HARNESS_STORE") or "./.store"
    return [
        f"harness: profile={state.profile.name} ({state.profile.description})",
        f"harness: seed={state.base_seed} store={store} reports={state.reports_dir}",
        *_executor_header(config),
    ]


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``instance`` over the profile's number of trained instances.

    Tests marked ``cnn`` train convolutional networks: they get the profile's
    ``cnn_instances``. A module whose paper table has more instances than the others sets
    ``INSTANCE_FACTOR`` (Table E: 2, the paper's 10 where the others have 5).
    """
    if "instance" in metafunc.fixturenames:
        profile = metafunc.config.stash[_STATE].profile
        conv = metafunc.definition.get_closest_marker("cnn") is not None
        n = profile.instances_for("cnn" if conv else "mlp")
        n *= int(getattr(metafunc.module, "INSTANCE_FACTOR", 1))
        metafunc.parametrize("instance", list(range(n)), ids=[f"i{i}" for i in range(n)])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect what the profile does not run; group tests that share a trained model.

    A profile may restrict the studies, model tags and claims it runs (the ``ci`` profile
    does); other tests are deselected, as with ``-k``. Tests that share a model go to one
    xdist worker (``--dist loadgroup``).

    A test parametrized with ``tag`` and ``instance`` joins group ``<tag>/i<instance>`` unless
    it carries its own ``xdist_group`` mark; the model is then trained once, where it is used.
    """
    profile = config.stash[_STATE].profile
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        study = _study_of(item.nodeid) if item.nodeid.startswith("experiments/") else None
        if not profile.runs(study=study, tag=params.get("tag"), claim=params.get("claim_id")):
            dropped.append(item)
            continue
        kept.append(item)
        if "tag" in params and "instance" in params and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(f"{params['tag']}/i{params['instance']}"))
    if dropped:  # the profile's grid is smaller (the ci profile): deselect, as -k would
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# --------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> Profile:
    """The active :class:`~harness.profiles.Profile`."""
    return pytestconfig.stash[_STATE].profile


@pytest.fixture(scope="session")
def harness_seed(pytestconfig: pytest.Config) -> int:
    """The run's base seed (``--harness-seed``)."""
    return pytestconfig.stash[_STATE].base_seed


@pytest.fixture(scope="session")
def cluster_method(pytestconfig: pytest.Config) -> str:
    """The spectral clustering estimator of every analysis (``--cluster-method``)."""
    return str(pytestconfig.getoption("--cluster-method", default="fast") or "fast")


@pytest.fixture
def seed(request: pytest.FixtureRequest, harness_seed: int) -> int:
    """This test's seed: base seed + crc32(node id)."""
    return derive_seed(harness_seed, canonical_nodeid(request.node.nodeid))


@pytest.fixture(scope="session")
def store(pytestconfig: pytest.Config) -> Store:
    """The artifact store shared by every worker of the run."""
    root = pytestconfig.stash[_STATE].store_root
    return Store(root) if root else Store()


@pytest.fixture
def record(request: pytest.FixtureRequest, profile: Profile, seed: int) -> Callable[..., dict]:
    """Record one result row: ``record({"ncut": 8.1}, model_tag="MNIST")``.

    The row gets ``study``, ``test_id``, ``cell`` (:func:`cell_of`), ``profile`` and
    ``test_seed`` (this test's seed) columns unless given. A ``seed`` column, where there is one, is the seed the row's numbers
    came from (a result's ``to_row()`` carries it); it is never filled in from the test.
    Returns the stored row.
    """
    node = request.node

    def _record(row: Mapping[str, Any] | None = None, /, **columns: Any) -> dict:
        merged: dict[str, Any] = {
            "study": _study_of(node.nodeid),
            "test_id": canonical_nodeid(node.nodeid),
            "cell": cell_of(node),
            "profile": profile.name,
            "test_seed": seed,
        }
        merged.update(dict(row or {}))
        merged.update(columns)
        clean = {str(k): to_builtin(v, where=f"column {k!r}") for k, v in merged.items()}
        node.user_properties.append((ROW_KEY, clean))
        return clean

    return _record


@pytest.fixture
def figure(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Callable[[str], Path]:
    """Path stem of a figure of this test: ``figure("null")``.

    Gives ``<reports>/figures/<study>/<test>__<name>`` (pass it to a ``harness.report.plot_*``
    function, which adds the extensions). Each test writes only its own figures, atomically;
    the controller drops figures of the run's studies that this run did not draw again.
    """
    from harness.report import figure_stem

    node = request.node
    reports_dir = pytestconfig.stash[_STATE].reports_dir

    def _figure(name: str) -> Path:
        nodeid = canonical_nodeid(node.nodeid)
        stem = figure_stem(reports_dir, _study_of(nodeid), nodeid, name)
        stem.parent.mkdir(parents=True, exist_ok=True)
        node.user_properties.append((FIGURE_KEY, str(stem)))
        return stem

    return _figure


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


@pytest.fixture
def claim(request: pytest.FixtureRequest, profile: Profile) -> Callable[..., bool]:
    """Check a research claim; fail the test with the numbers when it does not hold.

    Two forms:

    ``claim(claim_id, rows)``
        A claim of the registry (:mod:`harness.claims`), evaluated on ``rows`` (a DataFrame
        or a list of row dicts). Its status at this profile decides what happens: asserted
        (fails the test when it does not hold), expected-to-fail with its reason (strict: a
        claim that unexpectedly holds fails the run, so the xfail gets removed), or recorded
        with its reason (mixed cells of the paper; the smoke profile).
    ``claim(text, holds, expected=..., observed=..., xfail=None)``
        An ad-hoc claim of your own experiment, asserted unless the profile records only.

    Every claim becomes a row of ``reports/claims.csv`` with its verdict.
    """
    node = request.node
    record_only = bool(request.config.getoption("--record-claims", default=False))

    def _finish(entry: dict[str, Any], status: str, reason: str) -> bool:
        holds = bool(entry["holds"])
        if status == "record" or not profile.assert_claims or record_only:
            verdict = "recorded"
        elif status == "xfail":
            verdict = "xpass" if holds else "xfail"
        else:
            verdict = "pass" if holds else "fail"
        entry.update(verdict=verdict, note=reason, status=status)
        node.user_properties.append((CLAIM_KEY, entry))
        text = f"[{entry['claim_id']}] {entry['claim']}" if entry.get("claim_id") else entry["claim"]
        if verdict == "fail":
            raise ClaimFailed(
                f"claim does not hold: {text}\n  expected: {entry['expected']}\n"
                f"  observed: {entry['observed']}"
            )
        if verdict == "xfail":
            pytest.xfail(f"{text}: {reason} (observed {entry['observed']})")
        if verdict == "xpass":
            raise ClaimFailed(
                f"claim marked expected-to-fail now holds: {text} ({reason}); "
                f"observed {entry['observed']}. Remove the xfail."
            )
        return holds

    def _claim(
        text: str,
        holds: Any,
        *,
        expected: Any = "",
        observed: Any = "",
        xfail: str | None = None,
    ) -> bool:
        from harness.claims import REGISTRY

        base = {
            "study": _study_of(node.nodeid),
            "test_id": canonical_nodeid(node.nodeid),
            "profile": profile.name,
        }
        if text in REGISTRY and not isinstance(holds, bool):
            import pandas as pd

            entry = REGISTRY[text]
            rows = holds if isinstance(holds, pd.DataFrame) else pd.DataFrame(list(holds))
            outcome = entry.evaluate(rows)
            status, reason = entry.status_at(profile.name)
            record = {
                **base,
                "claim_id": entry.id,
                "table": entry.table,
                "claim": entry.statement,
                "expected": entry.evidence,
                "observed": _fmt(dict(outcome.observed)),
                "holds": bool(outcome.holds),
            }
            return _finish(record, status, reason)
        record = {
            **base,
            "claim_id": "",
            "table": "",
            "claim": text,
            "expected": _fmt(expected),
            "observed": _fmt(observed),
            "holds": bool(holds),
        }
        return _finish(record, "xfail" if xfail is not None else "assert", xfail or "")

    return _claim


# --------------------------------------------------------------------------------------
# collecting rows on the controller and writing reports


class _Collector:
    """Controller-side: gathers rows and claims from test reports, writes reports at the end.

    Registered only on the controller (never on xdist workers), so only one process writes.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state = config.stash[_STATE]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Rows are attached during setup or call; both are visible in the call report.
        # Skipped tests have no call report: take the setup report then.
        if report.when != "call" and not (report.when == "setup" and report.skipped):
            return
        for key, value in report.user_properties:
            if key == FIGURE_KEY:
                self.state.figures.add(str(value))
            if key == ROW_KEY:
                row = dict(value)  # type: ignore[call-overload]  # plain dict in transit
                row["outcome"] = report.outcome
                row["duration_s"] = round(float(report.duration), 3)
                self.state.rows.append(row)
            elif key == CLAIM_KEY:
                entry = dict(value)  # type: ignore[call-overload]
                if report.outcome == "failed" and entry["verdict"] == "pass":
                    entry["verdict"] = "error"
                self.state.claims.append(entry)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        if not state.rows and not state.claims:
            return
        from harness import report as report_mod

        rows_by_study: dict[str, list[dict[str, Any]]] = {}
        for row in state.rows:
            rows_by_study.setdefault(str(row["study"]), []).append(row)
        state.reports_dir.mkdir(parents=True, exist_ok=True)
        run_info = {
            "profile": state.profile.name,
            "profile_settings": state.profile.to_row(),
            "seed": state.base_seed,
            "workers": getattr(self.config.option, "numprocesses", None) or 0,
            "threads_per_process": state.threads,
            "wall_time_s": round(time.time() - state.started, 1),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.started)),
            "versions": library_versions(),
            "args": list(self.config.invocation_params.args),
            "exitstatus": int(exitstatus),
            "n_rows": len(state.rows),
            "n_claims": len(state.claims),
        }
        self._drop_stale_figures(set(rows_by_study))
        report_mod.write_study_tables(rows_by_study, state.reports_dir)
        report_mod.write_summary_figures(
            self._summary_functions(rows_by_study), rows_by_study, state.reports_dir
        )
        name = state.profile.name
        records = report_mod.registry_claims(state.claims, profile=name)
        report_mod.write_claims(records, state.reports_dir)
        fidelity = report_mod.fidelity_table(rows_by_study, records, profile=name)
        report_mod.write_fidelity(
            fidelity, state.reports_dir, cells=report_mod.fidelity_cells(rows_by_study)
        )
        state.fidelity_line = report_mod.fidelity_line(fidelity)
        report_mod.write_run_info(run_info, state.reports_dir)  # compare_runs reads it
        baseline = _baseline(self.config)
        drift_file = state.reports_dir / report_mod.DRIFT_FILE
        if baseline is not None:
            drift = report_mod.compare_runs(state.reports_dir, baseline)
            report_mod.write_drift(drift, state.reports_dir)
            state.drift_line = report_mod.drift_line(drift)
            if not drift.ok and self.config.getoption("--fail-on-drift"):
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        else:
            drift_file.unlink(missing_ok=True)  # an old drift.md would describe another run
        report_mod.build_index(state.reports_dir, run_info)

    def _summary_functions(
        self, rows_by_study: Mapping[str, list[dict[str, Any]]]
    ) -> dict[str, Callable[..., Any]]:
        """Each study's ``summary_figures(rows, stem)``, where its experiment module has one.

        The module is the file the study's test ids name. Under xdist the controller collects
        no tests (``session.items`` is empty there), so when pytest has not imported that file
        in this process the controller imports it itself, under a private name.
        """
        import importlib.util
        import sys

        loaded = {
            Path(file).resolve(): module
            for module in list(sys.modules.values())
            if isinstance(file := getattr(module, "__file__", None), str)
        }
        found: dict[str, Callable[..., Any]] = {}
        for study, rows in rows_by_study.items():
            path = (self.config.rootpath / str(rows[0]["test_id"]).split("::", 1)[0]).resolve()
            module = loaded.get(path)
            if module is None and path.suffix == ".py" and path.is_file():
                spec = importlib.util.spec_from_file_location(f"_harness_summary_{study}", path)
                if spec is None or spec.loader is None:
                    continue
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module  # as import does: dataclasses etc. look it up
                spec.loader.exec_module(module)
            function = getattr(module, "summary_figures", None)
            if callable(function):
                found[study] = function
        return found

    def _drop_stale_figures(self, studies: set[str]) -> None:
        """Remove figures of this run's studies that this run did not draw (stale ones).

        Studies not run this time keep their tables and figures, so a subset run updates
        the report in place.
        """
        root = self.state.reports_dir / "figures"
        fresh = {str(Path(stem).resolve()) for stem in self.state.figures}
        for study in studies:
            for path in sorted((root / study).glob("*")) if (root / study).is_dir() else []:
                if str(path.with_suffix("").resolve()) not in fresh and path.suffix in {".png", ".svg"}:
                    path.unlink()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        state = self.state
        if not state.claims and not state.rows:
            return
        tr = terminalreporter
        tr.section("harness: claims")
        counts: dict[str, int] = {}
        for entry in state.claims:
            counts[entry["verdict"]] = counts.get(entry["verdict"], 0) + 1
        from harness.report import VERDICTS

        order = {v: i for i, v in enumerate(VERDICTS)}
        for entry in sorted(state.claims, key=lambda e: (order.get(e["verdict"], 99), e["test_id"])):
            ident = f"[{entry['claim_id']}] " if entry.get("claim_id") else ""
            tr.write_line(f"{entry['verdict']:>8}  {ident}{entry['claim']}  [{entry['observed']}]")
        summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        tr.write_line(
            f"profile {state.profile.name}, seed {state.base_seed}: {len(state.rows)} rows, "
            f"{len(state.claims)} claims ({summary or 'none'}); reports in {state.reports_dir}"
        )
        for line in (state.fidelity_line, state.drift_line):
            if line:
                tr.write_line(line)


# ======================================================================================
# BEGIN executor block: where heavy units run (--executor local|ray, --ray-*), store URLs,
# and the submission of a run's forecast right after collection (harness.executors).
# Self-contained: hooks and helpers of this concern only.


class _PlanSpec:
    """Hook specifications the harness adds (``pytest_addhooks``)."""

    @pytest.hookspec
    def pytest_harness_plan(
        self, item: pytest.Item, profile: Profile, base_seed: int
    ) -> list[Any]:
        """The heavy tasks (:mod:`harness.executors`) ``item`` will ask for: a forecast.

        Implemented by the experiment fixtures (``fixtures/models.py``); an executor that
        submits ahead (Ray) gets the union of all items' lists, in dependency order, as
        soon as collection ends.
        """
        raise NotImplementedError  # a specification: pluggy never calls this body


_EXECUTOR = pytest.StashKey[Any]()
_RAY_HANDLE = "harness_ray"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_PlanSpec)


def _add_executor_options(group: Any) -> None:
    from harness.executors import EXECUTORS

    group.addoption(
        "--executor",
        choices=list(EXECUTORS),
        default=None,
        help="where training and null distributions run: local (this machine's processes, "
        "the default; $HARNESS_EXECUTOR) or ray (a Ray cluster: see --ray-address)",
    )
    group.addoption(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: the cluster's head (host:port from `ray start --head`, "
        "auto, or ray://host:port); default: start Ray on this machine for the session",
    )
    group.addoption(
        "--ray-train-gpus",
        type=float,
        default=None,
        metavar="N",
        help="with --executor ray: GPUs per training task (default: 1 if the cluster has "
        "GPUs, else 0)",
    )
    group.addoption(
        "--ray-log",
        default=None,
        metavar="FILE",
        help="with --executor ray: write one JSON line per task computed (kind, key, node, "
        "seconds, GPUs) to FILE at the end of the session",
    )


def _check_store_url(location: str | None, source: str) -> bool:
    """For a URL store: UsageError unless it can be written. False for a folder (or none)."""
    if not location or not is_url(location):
        return False
    from harness.store import StoreError, StoreNotWritableError

    try:
        Store(location).check_writable()
    except (StoreNotWritableError, StoreError) as exc:
        raise pytest.UsageError(f"{source} {location}: {exc}") from None
    return True


def _executor_name(config: pytest.Config) -> str:
    from harness.executors import EXECUTORS

    name = config.getoption("--executor") or os.environ.get("HARNESS_EXECUTOR") or "local"
    if name not in EXECUTORS:
        raise pytest.UsageError(
            f"HARNESS_EXECUTOR={name!r} is not an executor; choose one of {list(EXECUTORS)}"
        )
    return name


def _start_executor(config: pytest.Config) -> None:
    """The run's executor, in ``config.stash``; a Ray cluster that cannot be reached is a
    usage error here, before the first test."""
    from harness.executors import ExecutorUnavailable, LocalExecutor, RayExecutor, RayOptions

    name = _executor_name(config)
    ray_opts = [o for o in ("--ray-address", "--ray-train-gpus", "--ray-log")
                if config.getoption(o) is not None]
    if name != "ray" and ray_opts:
        raise pytest.UsageError(f"{', '.join(ray_opts)} need(s) --executor ray")
    gpus = config.getoption("--ray-train-gpus")
    if gpus is not None and gpus < 0:
        raise pytest.UsageError(f"--ray-train-gpus must be >= 0, got {gpus:g}")
    root = config.stash[_STATE].store_root
    store = Store(root) if root else Store()
    if store.url is None:  # the coordinator runs in another folder: an absolute path
        store = Store(store.root.resolve())
    if name == "local":
        config.stash[_EXECUTOR] = LocalExecutor(store)
        return
    try:
        if _is_worker(config):
            handle = config.workerinput.get(_RAY_HANDLE)  # type: ignore[attr-defined]
            executor = RayExecutor.join(store, handle)
        else:
            options = RayOptions(address=config.getoption("--ray-address"), train_gpus=gpus)
            executor = RayExecutor.start(store, options)
    except ExecutorUnavailable as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_EXECUTOR] = executor
    if not _is_worker(config) and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistExecutorHooks(executor.handle), "harness-executor-xdist")


class _XdistExecutorHooks:
    """Hands the Ray run's handle to each xdist worker (registered only with xdist)."""

    def __init__(self, handle: Mapping[str, Any]) -> None:
        self.handle = dict(handle)

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_RAY_HANDLE] = self.handle


def _executor_header(config: pytest.Config) -> list[str]:
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None or executor.name == "local":
        return []
    return [f"harness: executor={executor.name} cluster={executor.handle.get('address')}"]


@pytest.fixture(scope="session")
def executor(pytestconfig: pytest.Config) -> Any:
    """The run's :mod:`harness.executors` executor (``--executor``), over the run's store."""
    return pytestconfig.stash[_EXECUTOR]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Submit everything the selected tests will ask for, models first: executors that
    compute ahead start on it; the local one only learns the training units (models that
    train together as one ensemble), when it trains ensembles."""
    executor = session.config.stash.get(_EXECUTOR, None)
    if executor is None or not session.items:
        return
    if executor.name == "local" and not getattr(executor, "wants_plan", False):
        return
    if session.config.option.collectonly:  # nothing will wait for the results
        return
    state = session.config.stash[_STATE]
    tasks: list[Any] = []
    for item in session.items:
        for found in item.ihook.pytest_harness_plan(
            item=item, profile=state.profile, base_seed=state.base_seed
        ):
            tasks.extend(found or [])
    if tasks:
        from harness.executors import dependency_order

        executor.submit(dependency_order(tasks))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None or executor.name == "local" or _is_worker(config):
        return
    stats = config.stash.get(_EXECUTOR_STATS, None) or _executor_stats(config)
    if not stats:
        return
    terminalreporter.write_line(
        f"harness: executor {executor.name}: {stats['computed']} task(s) computed on "
        f"{len(stats['nodes'])} node(s), {stats['already_stored']} already stored; forecast "
        f"{stats['planned']}, asked for {stats['asked']} ({stats['asked_and_planned']} forecast)"
    )


_EXECUTOR_STATS = pytest.StashKey[dict[str, Any]]()


def _executor_stats(config: pytest.Config) -> dict[str, Any]:
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None or executor.name == "local":
        return {}
    try:
        stats: dict[str, Any] = executor.stats()
    except Exception:  # the cluster went away: nothing to report, the run already knows
        return {}
    config.stash[_EXECUTOR_STATS] = stats
    return stats


def pytest_unconfigure(config: pytest.Config) -> None:
    executor = config.stash.get(_EXECUTOR, None)
    if executor is None:
        return
    log = config.getoption("--ray-log", default=None)
    if log and not _is_worker(config):
        import json

        from harness.files import atomic_write_text

        stats = config.stash.get(_EXECUTOR_STATS, None) or _executor_stats(config)
        lines = [json.dumps(to_builtin(task)) for task in stats.get("tasks", [])]
        atomic_write_text(Path(log), "".join(f"{line}\n" for line in lines))
    executor.close()


# END executor block
# ======================================================================================
