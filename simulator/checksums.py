"""Checksums of the official files of data sets that share a file format.

MNIST, Fashion-MNIST and Kuzushiji-MNIST ship the same four IDX files under the same
names, so a folder of one loads as any other without an error. Their official files are
told apart here by checksum: a loader looks up each file it reads and refuses a file that
is another data set's. Files matching no official checksum (user-made files, test
fixtures) are not recognised, and load as before.

A file is hashed as stored: an official ``.gz`` by its MD5 (the value its publishers and
torchvision list), an uncompressed one by its SHA-256. Only files of an official file's
size once decompressed (10,000 or 60,000 28x28 images or labels) are hashed at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["OFFICIAL_NAMES", "OfficialFile", "identify", "is_gzip"]

# Display names of the data sets whose official files are known, by key; a key is also
# the config entry (dataset=KEY) where Oleander reads the data set.
OFFICIAL_NAMES: dict[str, str] = {
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "kmnist": "Kuzushiji-MNIST",
}

# Bytes of an official IDX file once decompressed: 16-byte header + N 28x28 images, or
# 8-byte header + N labels, for the train (N = 60,000) and test (N = 10,000) splits.
_OFFICIAL_SIZES = frozenset({16 + 60_000 * 28 * 28, 16 + 10_000 * 28 * 28, 8 + 60_000, 8 + 10_000})

# MD5 of the official gzip-compressed files, as listed in torchvision's
# torchvision/datasets/mnist.py (``MNIST``, ``FashionMNIST`` and ``KMNIST.resources``;
# github.com/pytorch/vision). The two MNIST t10k values are also those of the official
# files in shared/data/mnist (its README; md5sum agrees).
_GZIP_MD5: dict[str, tuple[str, str]] = {
    "f68b3c2dcbeaaa9fbdd348bbdeb94873": ("mnist", "train-images-idx3-ubyte.gz"),
    "d53e105ee54ea40749a09fcbcd1e9432": ("mnist", "train-labels-idx1-ubyte.gz"),
    "9fb629c4189551a2d022fa330f9573f3": ("mnist", "t10k-images-idx3-ubyte.gz"),
    "ec29112dd5afa0611ce80d1b7f02629c": ("mnist", "t10k-labels-idx1-ubyte.gz"),
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d": ("fashion_mnist", "train-images-idx3-ubyte.gz"),
    "25c81989df183df01b3e8a0aad5dffbe": ("fashion_mnist", "train-labels-idx1-ubyte.gz"),
    "bef4ecab320f06d8554ea6380940ec79": ("fashion_mnist", "t10k-images-idx3-ubyte.gz"),
    "bb300cfdad3c16e7a12a480ee83cd310": ("fashion_mnist", "t10k-labels-idx1-ubyte.gz"),
    "bdb82020997e1d708af4cf47b453dcf7": ("kmnist", "train-images-idx3-ubyte.gz"),
    "e144d726b3acfaa3e44228e80efcd344": ("kmnist", "train-labels-idx1-ubyte.gz"),
    "5c965bf0a639b31b8f53240b1b52f4d7": ("kmnist", "t10k-images-idx3-ubyte.gz"),
    "7320c461ea6c1c855c0b718fb2a4b134": ("kmnist", "t10k-labels-idx1-ubyte.gz"),
}

# SHA-256 of the official files once decompressed. The MNIST t10k values are those of the
# official .gz files in shared/data/mnist, decompressed (``zcat FILE | sha256sum``); the
# other values are those published in several independent public checksum tables of the
# decompressed files, which agree with one another and, for MNIST t10k, with ours.
_RAW_SHA256: dict[str, tuple[str, str]] = {
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db": (
        "mnist",
        "train-images-idx3-ubyte",
    ),
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5": (
        "mnist",
        "train-labels-idx1-ubyte",
    ),
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7": (
        "mnist",
        "t10k-images-idx3-ubyte",
    ),
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2": (
        "mnist",
        "t10k-labels-idx1-ubyte",
    ),
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888": (
        "fashion_mnist",
        "train-images-idx3-ubyte",
    ),
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9": (
        "fashion_mnist",
        "train-labels-idx1-ubyte",
    ),
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b": (
        "fashion_mnist",
        "t10k-images-idx3-ubyte",
    ),
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34": (
        "fashion_mnist",
        "t10k-labels-idx1-ubyte",
    ),
}


@dataclass(frozen=True)
class OfficialFile:
    """An official file recognised by its checksum."""

    dataset: str  # key into OFFICIAL_NAMES
    name: str  # the file's official name
    algorithm: str  # "md5" or "sha256"
    digest: str  # hex

    @property
    def dataset_name(self) -> str:
        """The data set's display name, e.g. "Fashion-MNIST"."""
        return OFFICIAL_NAMES[self.dataset]


def is_gzip(stored: bytes) -> bool:
    """Whether ``stored`` is gzip data (by its magic bytes, not by a file name)."""
    return stored[:2] == b"\x1f\x8b"


def identify(stored: bytes, decompressed_size: int) -> OfficialFile | None:
    """The official file whose bytes are ``stored``, or None.

    ``stored`` is the file as read from disk; ``decompressed_size`` its length once
    gunzipped. A file of no official size is not hashed (tiny fixtures cost nothing).
    """
    if decompressed_size not in _OFFICIAL_SIZES:
        return None
    algorithm, table = ("md5", _GZIP_MD5) if is_gzip(stored) else ("sha256", _RAW_SHA256)
    digest = hashlib.new(algorithm, stored, usedforsecurity=False).hexdigest()
    match = table.get(digest)
    if match is None:
        return None
    return OfficialFile(dataset=match[0], name=match[1], algorithm=algorithm, digest=digest)
