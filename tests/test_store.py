"""The content-addressed artifact store: keys, atomicity, locking, integrity, no pickle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

from harness.store import (
    FORMAT_VERSION,
    Store,
    StoreError,
    StoreNotWritableError,
    StoreWarning,
    canonical_json,
    default_root,
    load_tensors,
    save_tensors,
)

ROOT = Path(__file__).resolve().parent.parent


def _writer(text: str, calls: list[int] | None = None):  # type: ignore[no-untyped-def]
    def build(directory: Path) -> None:
        if calls is not None:
            calls.append(1)
        (directory / "data.txt").write_text(text)
        (directory / "sub").mkdir()
        (directory / "sub" / "more.bin").write_bytes(b"\x00\x01" * 100)

    return build


# -- keys -------------------------------------------------------------------------------------


def test_keys_are_canonical_and_content_addressed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    a = store.key("model", {"b": 1, "a": [1, 2], "c": {"y": 1.5, "x": None}})
    b = store.key("model", {"c": {"x": None, "y": 1.5}, "a": (1, 2), "b": 1})
    assert a == b and len(a) == 64
    assert store.key("model", {"b": 2, "a": [1, 2], "c": {"y": 1.5, "x": None}}) != a
    assert store.key("null", {"b": 1, "a": [1, 2], "c": {"y": 1.5, "x": None}}) != a
    assert canonical_json({"b": np.int64(3), "a": (np.float32(0.5),)}) == '{"a":[0.5],"b":3}'
    with pytest.raises(ValueError, match="finite"):
        store.key("model", {"x": float("nan")})
    with pytest.raises(TypeError):
        store.key("model", {"x": object()})
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="kind"):
            store.key(bad, {})


def test_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "elsewhere"))
    assert Store().root == tmp_path / "elsewhere"
    monkeypatch.delenv("HARNESS_STORE")
    # The working directory, never the package's install location.
    monkeypatch.chdir(tmp_path)
    assert default_root() == tmp_path / ".store"


# -- build once, verify, rebuild --------------------------------------------------------------


def test_get_or_create_builds_once_and_writes_meta_and_manifest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    calls: list[int] = []
    path = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    again = store.get_or_create("demo", {"n": 1}, _writer("other", calls))
    assert path == again == tmp_path / "demo" / store.key("demo", {"n": 1})
    assert calls == [1]
    assert (path / "data.txt").read_text() == "one"
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"data.txt", "sub/more.bin", "meta.json"}
    meta = store.read_meta(path)
    assert meta["key_payload"] == {"n": 1} and meta["kind"] == "demo"
    assert meta["format_version"] == FORMAT_VERSION and "numpy" in meta["versions"]
    assert store.exists("demo", {"n": 1}) and not store.exists("demo", {"n": 2})
    assert store.artifacts("demo") == [path]


def test_builder_meta_is_kept_and_manifest_is_reserved(tmp_path: Path) -> None:
    store = Store(tmp_path)

    def build(directory: Path) -> None:
        (directory / "meta.json").write_text(json.dumps({"metrics": [1, 2]}))

    path = store.get_or_create("demo", {"m": 1}, build)
    assert store.read_meta(path)["metrics"] == [1, 2]

    def bad(directory: Path) -> None:
        (directory / "manifest.json").write_text("{}")

    with pytest.raises(StoreError, match="manifest"):
        store.get_or_create("demo", {"m": 2}, bad)
    assert not store.exists("demo", {"m": 2})


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_corrupt_artifact_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    store = Store(tmp_path)
    calls: list[int] = []
    path = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    target = path / "sub" / "more.bin"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[7] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    elif damage == "delete":
        target.unlink()
    else:
        (path / "manifest.json").unlink()
    assert not store.verify(path)
    with pytest.warns(StoreWarning, match="rebuilding"):
        again = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    assert again == path and calls == [1, 1]
    assert store.verify(path)
    assert target.read_bytes() == b"\x00\x01" * 100
    assert [p.name for p in (tmp_path / "demo").iterdir() if p.name.startswith(".t")] == []


def _rewrite_files(files):  # type: ignore[no-untyped-def]
    return lambda manifest: {**manifest, "files": files(manifest["files"])}


MANIFEST_DAMAGE = {
    "files-is-a-list": _rewrite_files(lambda files: sorted(files)),
    "files-is-empty": _rewrite_files(lambda files: {}),
    "files-is-null": _rewrite_files(lambda files: None),
    "digest-not-a-string": _rewrite_files(lambda files: {name: 5 for name in files}),
    "digest-is-null": _rewrite_files(lambda files: {**files, "data.txt": None}),
    "digest-not-hex": _rewrite_files(lambda files: {**files, "data.txt": "x" * 64}),
    "meta-not-listed": _rewrite_files(
        lambda files: {k: v for k, v in files.items() if k != "meta.json"}
    ),
    "path-leaves-artifact": _rewrite_files(
        lambda files: {**files, "../outside.txt": files["data.txt"]}
    ),
    "no-files-key": lambda manifest: {"format_version": manifest["format_version"]},
    "top-level-list": lambda manifest: [manifest],
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE), ids=list(MANIFEST_DAMAGE))
def test_malformed_manifest_is_corrupt_and_rebuilt(tmp_path: Path, damage: str) -> None:
    store = Store(tmp_path / "store")
    calls: list[int] = []
    path = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    good = json.loads((path / "manifest.json").read_text())
    (path.parent / "outside.txt").write_text("one")  # what "../outside.txt" would check
    (path / "manifest.json").write_text(json.dumps(MANIFEST_DAMAGE[damage](good)))
    assert not store.verify(path)
    assert not store.exists("demo", {"n": 1})
    with pytest.warns(StoreWarning, match="corrupt or incomplete.*rebuilding"):
        again = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    assert again == path and calls == [1, 1]
    rebuilt = json.loads((path / "manifest.json").read_text())["files"]
    assert set(rebuilt) == set(good["files"]) and rebuilt["data.txt"] == good["files"]["data.txt"]
    assert store.verify(path)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_or_interrupted_build_leaves_nothing_visible(tmp_path: Path,
                                                            error: type[BaseException]) -> None:
    store = Store(tmp_path)

    def build(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"x" * 1000)
        raise error("stop")

    with pytest.raises(error):
        store.get_or_create("demo", {"n": 1}, build)
    kind_dir = tmp_path / "demo"
    assert sorted(p.name for p in kind_dir.iterdir()) == [".locks"]
    assert store.artifacts("demo") == []
    path = store.get_or_create("demo", {"n": 1}, _writer("ok"))
    assert (path / "data.txt").read_text() == "ok"


def test_unwritable_root_says_how_to_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = Store(blocker / "store")  # cannot be created, even as root
    with pytest.raises(StoreNotWritableError, match="HARNESS_STORE"):
        store.get_or_create("demo", {"n": 1}, _writer("x"))
    assert isinstance(StoreNotWritableError("x"), PermissionError)


def test_read_only_use_of_a_complete_artifact_needs_no_lock(tmp_path: Path) -> None:
    store = Store(tmp_path)
    path = store.get_or_create("demo", {"n": 1}, _writer("one"))
    # Another process holding the key's lock (e.g. rebuilding something else) does not block
    # readers of a verified artifact.
    lock = FileLock(str(tmp_path / "demo" / ".locks" / f"{path.name}.lock"))
    with lock:
        assert Store(tmp_path, lock_timeout=0.1).get_or_create(
            "demo", {"n": 1}, _writer("other")) == path


def test_clean_removes_stale_temps_but_not_active_builds(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.get_or_create("demo", {"n": 1}, _writer("one"))
    kind_dir = tmp_path / "demo"
    stale = kind_dir / f".tmp-{'a' * 64}-xyz"
    active = kind_dir / f".tmp-{'b' * 64}-xyz"
    stale.mkdir()
    active.mkdir()
    (stale / "part").write_bytes(b"1")
    with FileLock(str(kind_dir / ".locks" / f"{'b' * 64}.lock")):
        assert store.clean() == 1
    assert not stale.exists() and active.exists()


# -- tensors without pickle -------------------------------------------------------------------


def test_tensor_io_round_trip_without_pickle(tmp_path: Path) -> None:
    tensors = {"w": torch.randn(3, 4).t(), "n": np.arange(5, dtype=np.int64),
               "steps": torch.tensor(7)}
    save_tensors(tmp_path / "t.safetensors", tensors)
    back = load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(back["w"], tensors["w"])
    assert back["n"].tolist() == list(range(5)) and back["n"].dtype == torch.int64
    assert int(back["steps"]) == 7
    assert not (tmp_path / "t.safetensors").read_bytes().startswith(b"\x80")  # no pickle


# -- processes ---------------------------------------------------------------------------------

_CONCURRENT_STORE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from harness.store import Store
    root, log, barrier, idx = sys.argv[1:5]
    Path(barrier, "ready" + idx).touch()
    while len(list(Path(barrier).glob("ready*"))) < 2:
        time.sleep(0.01)
    def build(d):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        (d / "data.txt").write_text("built by " + idx)
    path = Store(root).get_or_create("demo", {"x": 1}, build)
    print(path, (path / "data.txt").read_text(), sep="|")
    """
)


def _run_pair(script: str, tmp_path: Path, *extra: str) -> list[str]:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    log = tmp_path / "builds.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "store"), str(log), str(barrier),
             str(i), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )
        for i in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(out.strip().splitlines()[-1])
    builds = log.read_text().splitlines()
    assert len(builds) == 1, builds  # built once, the other process waited and read
    return outputs


@pytest.mark.integration
def test_two_processes_build_once(tmp_path: Path) -> None:
    a, b = _run_pair(_CONCURRENT_STORE, tmp_path)
    assert a == b


_CONCURRENT_TRAIN = textwrap.dedent(
    """
    import hashlib, os, sys, time
    from pathlib import Path
    import numpy as np
    import harness.train as T
    from harness.data import Dataset
    from harness.store import Store
    root, log, barrier, idx = sys.argv[1:5]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(80, 8, 8), dtype=np.uint8)
    x[:, 0, 0] = 0
    x[:, 0, 1] = 255
    y = rng.integers(0, 10, 80)
    data = Dataset("tiny", 0, x[:64], y[:64], x[64:], y[64:], "classification", 10)
    original = T.train
    def counting(*args, **kwargs):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        return original(*args, **kwargs)
    T.train = counting
    Path(barrier, "ready" + idx).touch()
    while len(list(Path(barrier).glob("ready*"))) < 2:
        time.sleep(0.01)
    config = T.TrainConfig("tiny", widths=(8,), epochs=1, pruning_epochs=1, batch_size=16)
    model = T.get_or_train(config, store=Store(root), dataset=data, device="cpu",
                           progress=False)
    weights = b"".join(w.tobytes() for w in model.weights("pruned"))
    print(model.key, hashlib.sha256(weights).hexdigest())
    """
)


@pytest.mark.integration
def test_two_processes_asking_for_the_same_model_train_once(tmp_path: Path) -> None:
    a, b = _run_pair(_CONCURRENT_TRAIN, tmp_path)
    assert a == b  # same key, identical weights


_KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    from harness.store import Store
    def build(d):
        (d / "weights.bin").write_bytes(b"x" * 100000)
        print("WRITING", flush=True)
        time.sleep(120)
        (d / "done.txt").write_text("never")
    Store(sys.argv[1]).get_or_create("demo", {"x": 1}, build)
    """
)


@pytest.mark.integration
def test_sigkill_mid_write_leaves_nothing_visible_and_next_build_is_clean(
        tmp_path: Path) -> None:
    root = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", proc.stderr.read() if proc.stderr else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    store = Store(root)
    kind_dir = root / "demo"
    assert store.artifacts("demo") == []
    assert not store.path_for("demo", store.key("demo", {"x": 1})).exists()
    leftovers = [p for p in kind_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1  # hidden, and only until the next build of the key
    start = time.monotonic()
    path = store.get_or_create("demo", {"x": 1}, _writer("clean"))
    assert time.monotonic() - start < 30  # the dead process's lock was released
    assert (path / "data.txt").read_text() == "clean" and store.verify(path)
    assert not [p for p in kind_dir.iterdir() if p.name.startswith(".tmp-")]
