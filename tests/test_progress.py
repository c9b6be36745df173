"""Progress of long runs: shown on a terminal, silent in a pipe, under xdist, or when asked."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest

from harness.progress import Progress, progress_wanted

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from harness.analysis import clusterability

    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(60, 30)), rng.normal(size=(30, 30)), rng.normal(size=(30, 5))]
    print(clusterability(ws, 4, n_samples=20, seed=0, n_workers=1).ncut)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("HARNESS_PROGRESS", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    return env


@pytest.mark.integration
def test_progress_bar_on_a_pseudo_terminal():
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=slave, env=_env(), cwd=ROOT
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=300)
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "'layer' null samples" in shown and "/20" in shown, shown
    assert float(out.decode().strip()) > 0


@pytest.mark.integration
def test_no_progress_in_a_pipe():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=_env(), cwd=ROOT
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_progress_rules(monkeypatch, capsys):
    assert progress_wanted(True) and not progress_wanted(False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("HARNESS_PROGRESS", raising=False)
    assert progress_wanted()
    monkeypatch.setenv("HARNESS_PROGRESS", "0")
    assert not progress_wanted()
    monkeypatch.delenv("HARNESS_PROGRESS")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert not progress_wanted()
    with Progress(5, "x", enabled=False) as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""
