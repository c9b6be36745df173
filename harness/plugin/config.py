"""The run's settings: options, profile, base seed, store and reports folders, thread pinning.

Everything a user can get wrong on the command line (an unwritable folder, a store URL
without credentials, a seed outside ``[0, 2**32)``, a marker typo, a broken baseline) is one
line and exit status 4 here, before the first test. The settings are checked once, on the
controller, and kept in ``config.stash[STATE]`` (:class:`RunState`) for the other parts of
the plugin; xdist workers inherit them.

The profile also decides what is collected: how many ``instance`` parameters a test gets,
and which studies, model tags and claims run at all.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import METHODS as CLUSTER_METHODS
from harness.files import writable_dir_problem
from harness.options import check_store
from harness.plugin.rows import study_of
from harness.profiles import PROFILES, Profile, get_profile
from harness.seeding import check_seed
from harness.store import is_url
from harness.workers import pin_threads, threads_per_process, xdist_worker_count

__all__ = [
    "BASELINE",
    "DEFAULT_PROFILE",
    "DEFAULT_SEED",
    "STATE",
    "RunState",
    "run_baseline",
    "is_worker",
]

DEFAULT_PROFILE = "quick"
DEFAULT_SEED = 0


@dataclass
class RunState:
    """The run's checked settings and, on the controller, what the tests reported."""

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


#: Where each process keeps its :class:`RunState` (``config.stash[STATE]``).
STATE = pytest.StashKey[RunState]()
#: Where the controller keeps the parsed ``--baseline`` (None without one).
BASELINE = pytest.StashKey[Any]()


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker (not the controller, nor a ``-n 0`` run)."""
    return hasattr(config, "workerinput")


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


def run_baseline(config: pytest.Config) -> Any:
    """``--baseline DIR``, read and checked once, before the first test (None without it).

    Every file of the baseline is parsed here (:func:`harness.report.load_baseline`), so a
    truncated ``run.json``, a broken CSV, a baseline of another profile, or a baseline that is
    this run's own reports folder (which the run would overwrite before comparing) is one
    line and exit status 4, not a traceback after the last test.
    """
    if BASELINE in config.stash:
        return config.stash[BASELINE]
    value = config.getoption("--baseline", default=None)
    if config.getoption("--fail-on-drift", default=False) and not value:
        raise pytest.UsageError("--fail-on-drift needs --baseline DIR")
    if not value:
        config.stash[BASELINE] = None
        return None
    from harness.report.baseline import BaselineError, load_baseline

    state = config.stash[STATE]
    path = Path(value).resolve()
    reports = state.reports_dir
    if path == reports or reports in path.parents or path in reports.parents:
        raise pytest.UsageError(
            f"--baseline {value} is (or holds, or sits in) this run's --reports-dir {reports}: the "
            "run would overwrite it before comparing; pass another --reports-dir"
        )
    try:
        loaded = load_baseline(path, profile=state.profile.name)
    except BaselineError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[BASELINE] = loaded
    return loaded


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    if not is_worker(session.config):
        run_baseline(session.config)


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


def _check_output_folders(config: pytest.Config) -> None:
    """UsageError unless the reports folder and the store can be written (or created).

    Checked before the first test, because the controller writes reports (and tests write
    the store) only later. Nothing is created (:func:`harness.files.writable_dir_problem`).
    """
    reports_opt = config.getoption("--reports-dir")
    if reports_opt:
        path = Path(os.path.abspath(reports_opt))
        problem = writable_dir_problem(path)
        if problem is not None:
            raise pytest.UsageError(
                f"--reports-dir {path} {problem}; pass a folder the reports can be written to"
            )
    try:
        check_store(config.getoption("--store"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    _check_markexpr(config)
    if not is_worker(config):  # workers inherit the controller's checked settings
        _check_output_folders(config)
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
    n_workers = xdist_worker_count() if is_worker(config) else 1
    threads = threads_per_process(n_workers)
    pin_threads(threads)
    config.stash[STATE] = RunState(
        profile=profile,
        base_seed=base_seed,
        reports_dir=reports_dir.resolve(),
        store_root=store_root,
        threads=threads,
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash[STATE]
    store = os.environ.get("HARNESS_STORE") or "./.store"
    return [
        f"harness: profile={state.profile.name} ({state.profile.description})",
        f"harness: seed={state.base_seed} store={store} reports={state.reports_dir}",
    ]


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``instance`` over the profile's number of trained instances.

    Tests marked ``cnn`` train convolutional networks: they get the profile's
    ``cnn_instances``. A module whose paper table has more instances than the others sets
    ``INSTANCE_FACTOR`` (Table E: 2, the paper's 10 where the others have 5).
    """
    if "instance" in metafunc.fixturenames:
        profile = metafunc.config.stash[STATE].profile
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
    profile = config.stash[STATE].profile
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        study = study_of(item.nodeid) if item.nodeid.startswith("experiments/") else None
        if not profile.runs(study=study, tag=params.get("tag"), claim=params.get("claim_id")):
            dropped.append(item)
            continue
        kept.append(item)
        if "tag" in params and "instance" in params and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(f"{params['tag']}/i{params['instance']}"))
    if dropped:  # the profile's grid is smaller (the ci profile): deselect, as -k would
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
