"""Command lines: ``python -m harness`` (every failure one line and an exit status, Ctrl-C
included) and the set-up that ``make test`` does on a fresh machine."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.cli import EXIT_INTERRUPTED, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parent.parent


def _network(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.npz"
    np.savez(path, *_network([6, 5, 4]))
    return path


# ---------------------------------------------------------------- unreadable networks


def test_npy_renamed_npz(tmp_path, capsys):
    path = tmp_path / "w.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.ones((3, 2)))
    assert main(["cluster", str(path)]) == EXIT_USAGE
    _one_line_error(capsys, "w.npz is a single .npy array, not a .npz archive", "np.savez")


def test_header_claiming_a_huge_array(tmp_path, capsys):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    buf.write(b"\0" * 64)
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("arr_0.npy", buf.getvalue())
    assert main(["cluster", str(path)]) == EXIT_USAGE
    _one_line_error(capsys, "arr_0.npy", "(1000000, 1000000)", "holds 64 bytes")


def test_text_file_named_npz(tmp_path, capsys):
    path = tmp_path / "w.npz"
    path.write_text("0.1 0.2\n0.3 0.4\n")
    assert main(["cluster", str(path)]) == EXIT_USAGE
    err = _one_line_error(capsys, "w.npz is not a .npz archive")
    assert "pickl" not in err


def test_complex_weights(tmp_path, capsys):
    path = tmp_path / "w.npz"
    ws = _network([6, 5, 4])
    np.savez(path, ws[0], ws[1] * 1j)
    assert main(["cluster", str(path), "-k", "2", "--samples", "0"]) == EXIT_USAGE
    _one_line_error(capsys, "layer 1 (arr_1.npy) holds complex values")


# ---------------------------------------------------------------- seeds


def test_negative_seed_names_the_flag(good, capsys):
    assert main(["cluster", str(good), "--seed", "-1"]) == EXIT_USAGE
    _one_line_error(capsys, "--seed", "-1")


@pytest.mark.parametrize("seed", [2**32, 2**64 + 5])
def test_seeds_beyond_32_bits_are_refused(good, capsys, seed):
    """One rule for every seed (harness.seeding.check_seed): a seed past 2**32 would be
    reduced modulo 2**32 downstream and silently give another seed's results."""
    args = ["cluster", str(good), "-k", "2", "--samples", "2", "--workers", "1", "--json"]
    assert main([*args, "--seed", str(seed)]) == 2
    err = capsys.readouterr().err
    assert "[0, 2**32)" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("seed", [str(2**70), "-5"])
@pytest.mark.parametrize(
    "command",
    [
        ["cluster", "{net}"],
        ["activations", "{net}", "mnist"],
        ["train", "MNIST"],
        ["data", "fetch", "line"],
        ["data", "list"],
        ["calibrate", "--profile", "smoke", "--seeds", "1", "2"],
    ],
    ids=["cluster", "activations", "train", "data-fetch", "data-list", "calibrate"],
)
def test_every_seed_option_has_the_one_rule(good, capsys, command, seed):
    """Every ``--seed`` of every subcommand is checked by harness.seeding.check_seed, before
    any work."""
    argv = [a.format(net=good) for a in command]
    flag = "--seeds" if command[0] == "calibrate" else "--seed"
    argv = [*argv, seed] if flag == "--seeds" else [*argv, flag, seed]
    assert main(argv) == EXIT_USAGE
    _one_line_error(capsys, flag, "[0, 2**32)")


# ---------------------------------------------------------------- files the command writes


def test_plot_format_is_checked_before_any_work(good, capsys, monkeypatch):
    import harness.analysis

    def no_work(*args, **kwargs):
        raise AssertionError("the network was analysed before the --plot check")

    monkeypatch.setattr(harness.analysis, "clusterability", no_work)
    assert main(["cluster", str(good), "--plot", "out.gif"]) == EXIT_USAGE
    _one_line_error(capsys, "--plot out.gif", "must be one of 'png', 'svg', 'pdf'")


def _no_training(monkeypatch):
    import harness.training

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the store was checked")

    monkeypatch.setattr(harness.training, "get_or_train", no_training)


@pytest.mark.parametrize("from_env", [False, True], ids=["option", "HARNESS_STORE"])
def test_train_checks_a_store_folder_before_training(tmp_path, capsys, monkeypatch, from_env):
    _no_training(monkeypatch)
    (tmp_path / "blocker").write_text("a file, not a folder")  # unwritable even as root
    store = str(tmp_path / "blocker" / "store")
    if from_env:
        monkeypatch.setenv("HARNESS_STORE", store)
        argv = ["train", "MNIST"]
    else:
        monkeypatch.delenv("HARNESS_STORE", raising=False)
        argv = ["train", "MNIST", "--store", store]
    assert main(argv) == EXIT_USAGE
    source = "HARNESS_STORE" if from_env else "--store"
    _one_line_error(capsys, f"{source} {store} cannot be created")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_train_checks_a_store_url_before_training(tmp_path, capsys, monkeypatch):
    """``--store s3://...`` without credentials: one line, before any training (not the
    botocore traceback after the first epoch). No network: nothing listens where it points."""
    s3fs = pytest.importorskip("s3fs", reason="an s3:// store needs s3fs (the ray extra)")
    _no_training(monkeypatch)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "HARNESS_STORE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HARNESS_STORE_CACHE", str(tmp_path / "cache"))
    s3fs.S3FileSystem.clear_instance_cache()  # no file system built with other credentials
    try:
        assert main(["train", "MNIST", "--store", "s3://bucket/x"]) == EXIT_USAGE
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    _one_line_error(capsys, "--store s3://bucket/x", "cannot be written", "credentials")


# ---------------------------------------------------------------- Ctrl-C


def _default_sigint() -> None:
    # A child of an xdist worker may inherit an ignored SIGINT; a terminal's child would not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.integration
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_during_null_sampling(tmp_path, workers):
    path = tmp_path / "net.npz"
    np.savez(path, *_network([100, 64, 64, 10]))
    before = sorted(tmp_path.iterdir())
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "cluster", str(path), "-k", "4",
         "--samples", "5000", "--workers", workers, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HARNESS_STORE": str(tmp_path / "store")},
        preexec_fn=_default_sigint,
        start_new_session=True,
    )
    try:
        time.sleep(2.0 if workers == "1" else 6.0)  # the pool takes seconds to start
        assert proc.poll() is None, "finished before the interrupt; give it more samples"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # 130, or killed by the SIGINT itself (a shell reports both as exit status 130): under
    # heavy load the interpreter can end by the signal after our handler has run.
    assert proc.returncode in (EXIT_INTERRUPTED, -signal.SIGINT), err
    assert err.startswith("interrupted") and err.count("\n") == 1, err
    assert out == ""
    assert sorted(tmp_path.iterdir()) == before  # nothing written, nothing half-written


@pytest.mark.integration
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_pool_workers_leave_ctrl_c_to_the_parent():
    from harness.workers import parallel_map

    handlers = parallel_map(signal.getsignal, [signal.SIGINT] * 2, n_workers=2)
    assert handlers == [signal.SIG_IGN] * 2


# ---------------------------------------------------------------- make test on a fresh machine

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_make_test_installs_the_browser_the_report_test_needs():
    plan = subprocess.run(
        ["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert plan.returncode == 0, plan.stderr
    # tests/test_report.py looks for either name; the set-up accepts either.
    assert "command -v chromium " in plan.stdout and "command -v chromium-browser" in plan.stdout
    assert "apt-get install -y -qq chromium" in plan.stdout
    ci = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in ci and "make test" in ci


@needs_make
def test_make_browser_without_a_way_to_install_says_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"  # no chromium, no apt-get, no sudo
    bin_dir.mkdir()
    for tool in ("make", "id", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    failed = subprocess.run(
        ["make", "--no-print-directory", "browser"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert failed.returncode != 0
    first = failed.stderr.splitlines()[0]
    assert "install Debian's chromium package" in first and "HARNESS_SKIP_BROWSER=1" in first
    skipped = subprocess.run(
        ["make", "--no-print-directory", "browser"],
        cwd=ROOT, env={**env, "HARNESS_SKIP_BROWSER": "1"}, capture_output=True, text=True,
        timeout=60,
    )
    assert skipped.returncode == 0, skipped.stderr
