"""The controller's report collector: rows and claims in, tables, claims.csv and reports out.

Tests attach their rows, claims and figure stems to their reports (:mod:`harness.plugin.rows`);
the :class:`Collector`, registered on the controller only (never on an xdist worker), gathers
them and at the end of the session writes ``reports/<study>.csv|md``, ``claims.csv``,
``fidelity.md``, ``run.json``, ``drift.md`` (with ``--baseline``) and ``index.html``
(:mod:`harness.report`), then the terminal summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.plugin.config import STATE, is_worker, run_baseline
from harness.plugin.executor import executor_summary
from harness.plugin.rows import CLAIM_KEY, FIGURE_KEY, ROW_KEY
from harness.store import library_versions

__all__ = ["Collector"]


@pytest.hookimpl(trylast=True)  # after harness.plugin.config has set up the run's state
def pytest_configure(config: pytest.Config) -> None:
    if not is_worker(config):
        config.pluginmanager.register(Collector(config), "harness-collector")


class Collector:
    """Controller-side: gathers rows and claims from test reports, writes reports at the end.

    Registered only on the controller (never on xdist workers), so only one process writes.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state = config.stash[STATE]

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
        baseline = run_baseline(self.config)
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


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The run's claims and their verdicts, where its reports are, and what the executor did."""
    if is_worker(config):
        return
    state = config.stash[STATE]
    tr = terminalreporter
    if state.claims or state.rows:
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
    executor_line = executor_summary(config)
    if executor_line:
        tr.write_line(executor_line)
