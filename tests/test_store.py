"""The content-addressed artifact store: keys, atomicity, locking, integrity, no pickle.

Every behaviour is checked on three backends: a folder (``path``), the fsspec protocol on a
real file system (``file-url``, ``file:///...``) and S3 (``s3``) against a real S3-compatible
server (moto's server mode, started here on the loopback address). For a URL store the
"store's own copy" is the remote one; a store with an empty local cache stands for another
machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    is_url,
    load_tensors,
    save_tensors,
)

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["path", "file-url", "s3"]


def _writer(text: str, calls: list[int] | None = None):  # type: ignore[no-untyped-def]
    def build(directory: Path) -> None:
        if calls is not None:
            calls.append(1)
        (directory / "data.txt").write_text(text)
        (directory / "sub").mkdir()
        (directory / "sub" / "more.bin").write_bytes(b"\x00\x01" * 100)

    return build


# -- backends -----------------------------------------------------------------------------------


@dataclass
class S3Server:
    """A moto S3 server on the loopback address, and the settings that reach it."""

    endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def new_bucket(self) -> str:
        import s3fs

        name = f"b{uuid.uuid4().hex[:16]}"
        s3fs.S3FileSystem(endpoint_url=self.endpoint).mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("s3fs", reason="the s3 backend needs s3fs (the ray extra)")
    pytest.importorskip("moto.server", reason="the s3 backend needs moto[server] (dev extra)")
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        # Subprocesses reach it through fsspec's environment configuration.
        yield S3Server(endpoint, {**env, "FSSPEC_S3_ENDPOINT_URL": endpoint})
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Backend:
    """One way of holding a store, with access to the store's own copy of each artifact."""

    name: str
    tmp: Path
    s3: S3Server | None = None
    bucket: str = ""

    @property
    def location(self) -> str:
        if self.name == "path":
            return str(self.tmp / "store")
        if self.name == "file-url":
            return (self.tmp / "store").as_uri()
        return f"s3://{self.bucket}/store"

    @property
    def options(self) -> dict[str, Any]:
        return {"endpoint_url": self.s3.endpoint} if self.s3 else {}

    @property
    def env(self) -> dict[str, str]:
        return dict(self.s3.env) if self.s3 else {}

    def store(self, machine: str = "a", **kwargs: Any) -> Store:
        """A store on this backend; stores of different ``machine`` share no local cache."""
        return Store(self.location, storage_options=self.options,
                     cache_dir=self.tmp / f"cache-{machine}", **kwargs)

    def raw(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        fs, base = url_to_fs(self.location, **self.options)
        return fs, str(base).rstrip("/")

    # The store's own copy of an artifact: the folder, or the objects behind the URL.

    def read(self, store: Store, kind: str, key: str, name: str) -> bytes:
        if self.name == "path":
            return (store.path_for(kind, key) / name).read_bytes()
        fs, base = self.raw()
        return bytes(fs.cat_file(self._object(kind, key, name)))

    def write(self, store: Store, kind: str, key: str, name: str, data: bytes | None) -> None:
        """Overwrite (or, with None, delete) one file of the store's own copy."""
        if self.name == "path":
            target = store.path_for(kind, key) / name
            if data is None:
                target.unlink()
            else:
                target.write_bytes(data)
            return
        fs, _ = self.raw()
        target = self._object(kind, key, name)
        if data is None:
            fs.rm_file(target)
        else:
            fs.pipe_file(target, data)
        shutil.rmtree(store.root, ignore_errors=True)  # the local copy would hide the damage

    def _object(self, kind: str, key: str, name: str) -> str:
        fs, base = self.raw()
        folder = f"{base}/{kind}/{key}"
        if name == "manifest.json":
            return f"{folder}/manifest.json"
        files = json.loads(fs.cat_file(f"{folder}/manifest.json"))["files"]
        return f"{folder}/blobs/{files[name]}"

    def remote_names(self) -> list[str]:
        """Every object behind the URL (empty for a folder store)."""
        if self.name == "path":
            return []
        fs, base = self.raw()
        try:
            return sorted(str(p)[len(base) + 1:] for p in fs.find(base))
        except FileNotFoundError:
            return []


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return Backend("s3", tmp_path, server, server.new_bucket())
    return Backend(request.param, tmp_path)


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
    # A URL store computes the same keys: an artifact is the same wherever it is stored.
    assert Store("s3://bucket/prefix").key("model", {"b": 1, "a": [1, 2],
                                                     "c": {"y": 1.5, "x": None}}) == a


def test_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "elsewhere"))
    assert Store().root == tmp_path / "elsewhere" and Store().url is None
    monkeypatch.setenv("HARNESS_STORE", "s3://bucket/prefix/")
    monkeypatch.setenv("HARNESS_STORE_CACHE", str(tmp_path / "cache"))
    assert Store().url == "s3://bucket/prefix" and Store().location == "s3://bucket/prefix"
    assert Store().root.parent == tmp_path / "cache" / "store-cache"
    monkeypatch.delenv("HARNESS_STORE")
    # The working directory, never the package's install location.
    monkeypatch.chdir(tmp_path)
    assert default_root() == tmp_path / ".store"


def test_is_url() -> None:
    assert is_url("s3://b/p") and is_url("file:///tmp/x") and is_url("gs://b")
    assert not is_url("/tmp/x") and not is_url("relative/dir") and not is_url(Path("/a"))
    assert not is_url("C:\\store") and not is_url("://nothing")


# -- build once, verify, rebuild --------------------------------------------------------------


def test_get_or_create_builds_once_and_writes_meta_and_manifest(backend: Backend) -> None:
    store = backend.store()
    calls: list[int] = []
    path = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    again = store.get_or_create("demo", {"n": 1}, _writer("other", calls))
    key = store.key("demo", {"n": 1})
    assert path == again == store.path_for("demo", key) == store.root / "demo" / key
    assert calls == [1]
    assert (path / "data.txt").read_text() == "one"
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"data.txt", "sub/more.bin", "meta.json"}
    meta = store.read_meta(path)
    assert meta["key_payload"] == {"n": 1} and meta["kind"] == "demo"
    assert meta["format_version"] == FORMAT_VERSION and "numpy" in meta["versions"]
    assert store.exists("demo", {"n": 1}) and not store.exists("demo", {"n": 2})
    assert store.artifacts("demo") == [path]
    assert store.keys("demo") == [key]
    # Another machine (no local copy) reads the same artifact without building it.
    other = backend.store("b")
    if backend.name != "path":
        assert other.root != store.root
    there = other.get_or_create("demo", {"n": 1}, _writer("other", calls))
    assert calls == [1] and (there / "data.txt").read_text() == "one"
    assert (there / "manifest.json").read_bytes() == (path / "manifest.json").read_bytes()


def test_builder_meta_is_kept_and_manifest_is_reserved(backend: Backend) -> None:
    store = backend.store()

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
def test_corrupt_artifact_is_detected_and_rebuilt(backend: Backend, damage: str) -> None:
    store = backend.store()
    calls: list[int] = []
    path = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    key = path.name
    name = "manifest.json" if damage == "manifest" else "sub/more.bin"
    original = backend.read(store, "demo", key, name)
    if damage == "flip":
        data = bytearray(original)
        data[7] ^= 0xFF
        backend.write(store, "demo", key, name, bytes(data))
    elif damage == "truncate":
        backend.write(store, "demo", key, name, original[:10])
    else:
        backend.write(store, "demo", key, name, None)
    assert not store.exists("demo", {"n": 1})
    # Behind a URL the manifest is the commit: without it the artifact is simply absent.
    absent = damage == "manifest" and backend.name != "path"
    with contextlib.nullcontext() if absent else pytest.warns(StoreWarning, match="rebuilding"):
        again = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    assert again == path and calls == [1, 1]
    assert store.verify(path) and store.exists("demo", {"n": 1})
    assert (path / "sub" / "more.bin").read_bytes() == b"\x00\x01" * 100
    assert [p.name for p in (store.root / "demo").iterdir() if p.name.startswith(".t")] == []
    assert backend.store("c").get_or_create("demo", {"n": 1}, _writer("x", calls)) and calls == [1, 1]


def test_corrupt_local_copy_of_a_url_store_is_fetched_again(backend: Backend) -> None:
    if backend.name == "path":
        pytest.skip("a folder store has no separate local copy")
    store = backend.store()
    calls: list[int] = []
    path = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    (path / "sub" / "more.bin").write_bytes(b"bad")
    assert not store.verify(path)
    with pytest.warns(StoreWarning, match="corrupt"):
        again = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    assert again == path and calls == [1]  # fetched from the URL, not rebuilt
    assert store.verify(path)


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
def test_malformed_manifest_is_corrupt_and_rebuilt(backend: Backend, damage: str) -> None:
    store = backend.store()
    calls: list[int] = []
    path = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    good = json.loads((path / "manifest.json").read_text())
    (path.parent / "outside.txt").write_text("one")  # what "../outside.txt" would check
    backend.write(store, "demo", path.name, "manifest.json",
                  json.dumps(MANIFEST_DAMAGE[damage](good)).encode())
    assert not store.exists("demo", {"n": 1})
    with pytest.warns(StoreWarning, match="corrupt or incomplete.*rebuilding"):
        again = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    assert again == path and calls == [1, 1]
    rebuilt = json.loads((path / "manifest.json").read_text())["files"]
    assert set(rebuilt) == set(good["files"]) and rebuilt["data.txt"] == good["files"]["data.txt"]
    assert store.verify(path)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_or_interrupted_build_leaves_nothing_visible(backend: Backend,
                                                            error: type[BaseException]) -> None:
    store = backend.store()

    def build(directory: Path) -> None:
        (directory / "half.bin").write_bytes(b"x" * 1000)
        raise error("stop")

    with pytest.raises(error):
        store.get_or_create("demo", {"n": 1}, build)
    kind_dir = store.root / "demo"
    assert sorted(p.name for p in kind_dir.iterdir()) == [".locks"]
    assert store.artifacts("demo") == [] and store.keys("demo") == []
    assert backend.remote_names() == []  # nothing was uploaded
    path = store.get_or_create("demo", {"n": 1}, _writer("ok"))
    assert (path / "data.txt").read_text() == "ok"


def test_uncommitted_upload_is_invisible_and_rebuilt(backend: Backend) -> None:
    """A writer killed after uploading its blobs, before its manifest, leaves nothing visible."""
    if backend.name == "path":
        pytest.skip("a folder store publishes by rename")
    donor = backend.store("donor")
    path = donor.get_or_create("demo", {"n": 1}, _writer("one"))
    key = path.name
    backend.write(donor, "demo", key, "manifest.json", None)  # blobs stay, manifest gone
    assert any("/blobs/" in name for name in backend.remote_names())
    store = backend.store()
    assert store.keys("demo") == [] and not store.exists("demo", {"n": 1})
    calls: list[int] = []
    again = store.get_or_create("demo", {"n": 1}, _writer("one", calls))
    assert calls == [1] and store.keys("demo") == [key] and store.verify(again)


def test_unwritable_root_says_how_to_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = Store(blocker / "store")  # cannot be created, even as root
    with pytest.raises(StoreNotWritableError, match="a-file is not a folder.*HARNESS_STORE"):
        store.get_or_create("demo", {"n": 1}, _writer("x"))
    with pytest.raises(StoreNotWritableError, match="a-file is not a folder.*HARNESS_STORE"):
        store.check_writable()
    (tmp_path / "ok" / "demo").mkdir(parents=True)
    (tmp_path / "ok" / "demo" / ".locks").write_text("a file where the locks go")
    with pytest.raises(StoreNotWritableError, match=r"demo/\.locks is a file, not a folder.*HARNESS_STORE"):
        Store(tmp_path / "ok").get_or_create("demo", {"n": 1}, _writer("x"))
    assert isinstance(StoreNotWritableError("x"), PermissionError)
    Store(tmp_path / "new" / "store").check_writable()  # creatable: fine, nothing created
    assert not (tmp_path / "new").exists()


def test_unreachable_url_says_how_to_fix(s3_server: S3Server, tmp_path: Path) -> None:
    missing = Store("s3://no-such-bucket/store", cache_dir=tmp_path,
                    storage_options={"endpoint_url": s3_server.endpoint})
    with pytest.raises(StoreNotWritableError, match="no-such-bucket.*bucket exists"):
        missing.check_writable()
    bucket = s3_server.new_bucket()
    Store(f"s3://{bucket}/store", cache_dir=tmp_path,
          storage_options={"endpoint_url": s3_server.endpoint}).check_writable()


def test_missing_filesystem_package_is_a_clear_error(tmp_path: Path) -> None:
    store = Store("nosuchprotocol://bucket/x", cache_dir=tmp_path)
    with pytest.raises(StoreError, match="nosuchprotocol.*not one fsspec knows"):
        store.get_or_create("demo", {"n": 1}, _writer("x"))


def test_read_only_use_of_a_complete_artifact_needs_no_lock(backend: Backend) -> None:
    store = backend.store()
    path = store.get_or_create("demo", {"n": 1}, _writer("one"))
    # Another process holding the key's lock (e.g. rebuilding something else) does not block
    # readers of a verified artifact.
    lock = FileLock(str(store.root / "demo" / ".locks" / f"{path.name}.lock"))
    with lock:
        assert backend.store(lock_timeout=0.1).get_or_create(
            "demo", {"n": 1}, _writer("other")) == path


def test_clean_removes_stale_temps_but_not_active_builds(backend: Backend) -> None:
    store = backend.store()
    store.get_or_create("demo", {"n": 1}, _writer("one"))
    kind_dir = store.root / "demo"
    stale = kind_dir / f".tmp-{'a' * 64}-xyz"
    active = kind_dir / f".tmp-{'b' * 64}-xyz"
    stale.mkdir()
    active.mkdir()
    (stale / "part").write_bytes(b"1")
    with FileLock(str(kind_dir / ".locks" / f"{'b' * 64}.lock")):
        assert store.clean() == 1
    assert not stale.exists() and active.exists()


# -- moving artifacts between stores (a cluster worker's scratch store -> the driver's) ---------


def test_export_and_install_move_a_verified_artifact(backend: Backend, tmp_path: Path) -> None:
    scratch = Store(tmp_path / "scratch")
    path = scratch.get_or_create("demo", {"n": 1}, _writer("one"))
    files = scratch.export_files(path)
    assert set(files) == {"data.txt", "sub/more.bin", "meta.json", "manifest.json"}
    store = backend.store()
    installed = store.install_files("demo", path.name, files)
    assert store.verify(installed) and (installed / "data.txt").read_text() == "one"
    calls: list[int] = []
    assert store.get_or_create("demo", {"n": 1}, _writer("x", calls)) == installed and not calls
    assert backend.store("b").get_or_create("demo", {"n": 1}, _writer("x", calls)) and not calls
    # One writer wins: a second install of the same key keeps what is there.
    other = Store(tmp_path / "scratch2").get_or_create("demo", {"n": 1}, _writer("two"))
    again = store.install_files("demo", path.name, Store(tmp_path).export_files(other))
    assert again == installed and (again / "data.txt").read_text() == "one"


def test_install_rejects_incomplete_or_foreign_files(backend: Backend, tmp_path: Path) -> None:
    scratch = Store(tmp_path / "scratch")
    path = scratch.get_or_create("demo", {"n": 1}, _writer("one"))
    files = scratch.export_files(path)
    store = backend.store()
    tampered = {**files, "data.txt": b"two"}
    with pytest.raises(StoreError, match="checksum mismatch in data.txt"):
        store.install_files("demo", path.name, tampered)
    with pytest.raises(StoreError, match="missing file"):
        store.install_files("demo", path.name, {k: v for k, v in files.items() if k != "data.txt"})
    with pytest.raises(StoreError, match="another artifact"):
        store.install_files("demo", "f" * 64, files)
    with pytest.raises(StoreError, match="not in the manifest"):
        store.install_files("demo", path.name, {**files, "extra.txt": b""})
    assert store.keys("demo") == [] and backend.remote_names() == []
    (path / "data.txt").write_text("changed")
    with pytest.raises(StoreError, match="cannot export"):
        scratch.export_files(path)


def test_url_store_pickles_without_its_connection(backend: Backend) -> None:
    store = backend.store()
    store.get_or_create("demo", {"n": 1}, _writer("one"))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.location == store.location and copy.root == store.root
    assert copy.exists("demo", {"n": 1})


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
    root, log, barrier, idx, cache = sys.argv[1:6]
    Path(barrier, "ready" + idx).touch()
    while len(list(Path(barrier).glob("ready*"))) < 2:
        time.sleep(0.01)
    def build(d):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        (d / "data.txt").write_text("built by " + idx)
    path = Store(root, cache_dir=cache or None).get_or_create("demo", {"x": 1}, build)
    print(path.name, (path / "data.txt").read_text(), sep="|")
    """
)


def _run_pair(script: str, backend: Backend, *, caches: tuple[str, str] = ("a", "a"),
              builds: Callable[[int], bool] = lambda n: n == 1) -> list[str]:
    tmp_path = backend.tmp
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    log = tmp_path / "builds.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **backend.env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, backend.location, str(log), str(barrier), str(i),
             str(tmp_path / f"cache-{caches[i]}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )
        for i in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outputs.append(out.strip().splitlines()[-1])
    n_builds = len(log.read_text().splitlines())
    assert builds(n_builds), n_builds
    return outputs


@pytest.mark.integration
def test_two_processes_build_once(backend: Backend) -> None:
    a, b = _run_pair(_CONCURRENT_STORE, backend)  # built once, the other process read it
    assert a == b


@pytest.mark.integration
def test_two_machines_one_writer_wins(backend: Backend) -> None:
    """Two machines (no shared local cache) may both build; both end with the winner's copy."""
    if backend.name == "path":
        pytest.skip("a folder store locks across processes instead")
    a, b = _run_pair(_CONCURRENT_STORE, backend, caches=("a", "b"), builds=lambda n: n in (1, 2))
    assert a == b  # the same bytes: the loser reads the winner's artifact
    manifests = [n for n in backend.remote_names() if n.endswith("manifest.json")]
    assert len(manifests) == 1


_CONCURRENT_TRAIN = textwrap.dedent(
    """
    import hashlib, os, sys, time
    from pathlib import Path
    import numpy as np
    import harness.training as T
    from harness.data import Dataset
    from harness.store import Store
    root, log, barrier, idx, cache = sys.argv[1:6]
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
    model = T.get_or_train(config, store=Store(root, cache_dir=cache or None), dataset=data,
                           device="cpu", progress=False)
    weights = b"".join(w.tobytes() for w in model.weights("pruned"))
    print(model.key, hashlib.sha256(weights).hexdigest())
    """
)


@pytest.mark.integration
def test_two_processes_asking_for_the_same_model_train_once(backend: Backend) -> None:
    a, b = _run_pair(_CONCURRENT_TRAIN, backend)
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
    Store(sys.argv[1], cache_dir=sys.argv[2]).get_or_create("demo", {"x": 1}, build)
    """
)


@pytest.mark.integration
def test_sigkill_mid_write_leaves_nothing_visible_and_next_build_is_clean(
        backend: Backend) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **backend.env}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BUILD, backend.location, str(backend.tmp / "cache-a")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "WRITING", proc.stderr.read() if proc.stderr else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    store = backend.store()
    kind_dir = store.root / "demo"
    assert store.artifacts("demo") == [] and store.keys("demo") == []
    assert not store.path_for("demo", store.key("demo", {"x": 1})).exists()
    assert backend.remote_names() == []
    leftovers = [p for p in kind_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1  # hidden, and only until the next build of the key
    start = time.monotonic()
    path = store.get_or_create("demo", {"x": 1}, _writer("clean"))
    assert time.monotonic() - start < 30  # the dead process's lock was released
    assert (path / "data.txt").read_text() == "clean" and store.verify(path)
    assert not [p for p in kind_dir.iterdir() if p.name.startswith(".tmp-")]
