"""Data sets as float tensors: scikit-learn digits, MNIST, Fashion-MNIST and CIFAR-10.

Each data set class is built by Hydra from ``conf/dataset/<name>.yaml``. As in
scikit-learn, the constructor only stores its hyperparameters, ``check()`` validates them
without touching any data, and ``load(seed)`` does the work. MNIST-like sets and CIFAR-10
come from the Hugging Face Hub (through flwr-datasets) or, offline, from a local copy of
the original files given as ``dataset.path``; user files are parsed by hand from their
documented binary layouts and never unpickled.

Loaded data are cached per process, because every client process asks for the same data:
the tensors returned are shared, and callers must not modify them in place.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import os
import socket
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from simulator.checks import is_real
from simulator.seeding import Stream, derive_seed

__all__ = [
    "Cifar10",
    "DataError",
    "DataSplit",
    "Digits",
    "FashionMnist",
    "LoadedData",
    "Mnist",
    "read_cifar10_batch",
    "read_idx_images",
    "read_idx_labels",
]

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
CIFAR10_RECORD = 1 + 3 * 32 * 32  # one label byte, then the R, G and B planes (32x32 each)

# When only the MNIST test files are at hand, the first 80% train and the rest test
# (8,000 / 2,000 for the official 10,000-image file).
_TEST_ONLY_TRAIN_FRACTION = 0.8


class DataError(ValueError):
    """A data set cannot be loaded; message is one clear line naming the data set and what to do."""


@dataclass(frozen=True)
class DataSplit:
    """Images and labels of one split. Shared through the cache: do not modify in place."""

    x: torch.Tensor  # float32, shape (N, C, H, W), values in [0, 1]
    y: torch.Tensor  # int64, shape (N,)

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"DataSplit needs x of shape (N, C, H, W) and y of shape (N,), "
                f"got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class LoadedData:
    """A loaded data set: both splits and what a model needs to know about them."""

    name: str
    train: DataSplit
    test: DataSplit
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    note: str | None = None  # how the data were obtained when that is unusual; the caller logs it


def _split(images: np.ndarray, labels: np.ndarray) -> DataSplit:
    """uint8 images ``(N, C, H, W)`` and integer labels -> float tensors in [0, 1]."""
    # astype copies: the readers' arrays are read-only views of the file bytes.
    x = torch.from_numpy(np.ascontiguousarray(images).astype(np.float32) / np.float32(255.0))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    return DataSplit(x=x, y=y)  # shape: (N, C, H, W), (N,)


# --------------------------------------------------------------------------- base class


class _DataSet:
    """Shared plumbing: hyperparameters as a cache key, ``check`` before ``load``."""

    # Whether ``load`` depends on the seed (only when the train/test split is drawn).
    _seeded: ClassVar[bool] = False
    _input_shape: ClassVar[tuple[int, int, int]]
    _num_classes: ClassVar[int]

    name: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image, known before loading (models are checked against it)."""
        return self._input_shape

    @property
    def num_classes(self) -> int:
        """Number of classes, known before loading."""
        return self._num_classes

    def train_size(self) -> int | None:
        """Training examples, where known before loading (None: only after it)."""
        return None

    def _params(self) -> tuple[tuple[str, Any], ...]:
        return tuple(sorted(vars(self).items()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params())
        return f"{type(self).__name__}({args})"

    def check(self) -> None:
        """Validate the hyperparameters cheaply; raise ``DataError`` naming the key."""
        if not isinstance(self.name, str) or not self.name:
            raise DataError(f"dataset.name={self.name!r}: must be a non-empty string")

    def load(self, seed: int) -> LoadedData:
        """Load (or fetch from this process's cache) the data set.

        The result is shared between callers: do not modify its tensors in place.
        """
        self.check()
        return _load_cached(type(self), self._params(), int(seed) if self._seeded else 0)

    def _load(self, seed: int) -> LoadedData:
        raise NotImplementedError


@functools.lru_cache(maxsize=4)
def _load_cached(cls: type[_DataSet], params: tuple[tuple[str, Any], ...], seed: int) -> LoadedData:
    """One load per (class, hyperparameters, seed) and process.

    Keyed on a snapshot of the hyperparameters, not on the instance, so changing an
    instance after a load cannot return data loaded for other values.
    """
    instance = cls.__new__(cls)
    vars(instance).update(dict(params))
    return instance._load(seed)


# --------------------------------------------------------------------------- digits


class Digits(_DataSet):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, no download).

    Pixel values 0..16 are divided by 16. The train/test split is stratified and drawn from
    the seed, so it is the same for a seed and differs between seeds.

    Parameters
    ----------
    name : str (default: "digits")
        Name recorded in results.
    test_fraction : float (default: 0.25)
        Share of the images held out for testing, in (0, 1).
    """

    _seeded: ClassVar[bool] = True
    _input_shape: ClassVar[tuple[int, int, int]] = (1, 8, 8)
    _total: ClassVar[int] = 1797
    _num_classes: ClassVar[int] = 10

    def __init__(self, name: str = "digits", test_fraction: float = 0.25) -> None:
        self.name = name
        self.test_fraction = test_fraction

    def check(self) -> None:
        super().check()
        fraction = self.test_fraction
        if not is_real(fraction):
            raise DataError(f"dataset.test_fraction={fraction!r}: must be a number in (0, 1)")
        # A stratified split needs at least one example of every class on each side.
        low = self._num_classes / self._total
        if not low <= fraction <= 1 - low:
            raise DataError(
                f"dataset.test_fraction={fraction!r}: must be in [{low:.4f}, {1 - low:.4f}] "
                f"so both splits hold every one of the {self._num_classes} classes"
            )

    def train_size(self) -> int:
        # The split puts ceil(test_fraction * N) examples in the test set.
        return self._total - math.ceil(float(self.test_fraction) * self._total)

    def _load(self, seed: int) -> LoadedData:
        images, labels = _digits_arrays()
        images = (images / 16.0).astype(np.float32).reshape(-1, *self._input_shape)
        rng = np.random.default_rng(derive_seed(seed, Stream.DIGITS_SPLIT))
        train_idx, test_idx = stratified_split(labels, float(self.test_fraction), rng)

        def split(idx: np.ndarray) -> DataSplit:
            return DataSplit(
                x=torch.from_numpy(np.ascontiguousarray(images[idx])),
                y=torch.from_numpy(labels[idx]),
            )

        return LoadedData(
            name=self.name,
            train=split(train_idx),
            test=split(test_idx),
            num_classes=self._num_classes,
            input_shape=self._input_shape,
        )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(1797, 64)`` pixel counts 0..16 and int64 labels.

    Read straight from the CSV file scikit-learn ships (what ``load_digits`` reads):
    importing scikit-learn costs about a second of every run's start-up on two cores.
    Falls back to ``load_digits`` if the file is not where scikit-learn keeps it.
    """
    package = importlib.util.find_spec("sklearn")
    locations = [] if package is None else list(package.submodule_search_locations or [])
    for location in locations:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.float64)  # shape: (N, 65)
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices, each class split in the proportions of the whole.

    The test set gets ``ceil(test_fraction * N)`` examples, shared among the classes by
    their sizes (largest remainders get the leftover examples, ties to the smaller
    label); each class's examples are drawn at random from ``rng``.
    """
    n = labels.shape[0]
    n_test = math.ceil(test_fraction * n)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = counts * n_test / n
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: n_test - int(take.sum())]] += 1
    if (take < 1).any() or (take > counts - 1).any():
        raise DataError(
            f"dataset.test_fraction={test_fraction!r}: leaves a class out of one split "
            f"(class sizes {counts.tolist()}, test shares {take.tolist()})"
        )
    test: list[np.ndarray] = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        test.append(rng.permutation(members)[: take[c]])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(n), test_idx)  # sorted
    return train_idx, test_idx


# --------------------------------------------------------------------------- file readers


def _read_bytes(path: Path, dataset: str) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by content, not by name)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{dataset}: cannot read {path}: {error}") from error


def read_idx_images(path: str | os.PathLike[str], dataset: str = "idx") -> np.ndarray:
    """Read an IDX image file (``*-images-idx3-ubyte[.gz]``) as uint8, shape ``(N, H, W)``.

    Layout: big-endian int32 magic 2051, count, rows, cols, then the pixels row-major.
    """
    path = Path(path)
    data = _read_bytes(path, dataset)
    if len(data) < 16:
        raise DataError(f"{dataset}: {path} is too short for an IDX image header (16 bytes)")
    magic, count, rows, cols = (int(v) for v in np.frombuffer(data, dtype=">i4", count=4))
    if magic != IDX_IMAGES_MAGIC:
        raise DataError(
            f"{dataset}: {path} is not an IDX image file (magic {magic}, expected "
            f"{IDX_IMAGES_MAGIC})"
        )
    if min(count, rows, cols) < 0 or len(data) != 16 + count * rows * cols:
        raise DataError(
            f"{dataset}: {path} holds {len(data) - 16} pixel bytes but its header says "
            f"{count} images of {rows}x{cols}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: str | os.PathLike[str], dataset: str = "idx") -> np.ndarray:
    """Read an IDX label file (``*-labels-idx1-ubyte[.gz]``) as uint8, shape ``(N,)``.

    Layout: big-endian int32 magic 2049, count, then one byte per label.
    """
    path = Path(path)
    data = _read_bytes(path, dataset)
    if len(data) < 8:
        raise DataError(f"{dataset}: {path} is too short for an IDX label header (8 bytes)")
    magic, count = (int(v) for v in np.frombuffer(data, dtype=">i4", count=2))
    if magic != IDX_LABELS_MAGIC:
        raise DataError(
            f"{dataset}: {path} is not an IDX label file (magic {magic}, expected "
            f"{IDX_LABELS_MAGIC})"
        )
    if count < 0 or len(data) != 8 + count:
        raise DataError(
            f"{dataset}: {path} holds {len(data) - 8} label bytes but its header says {count}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=8)


def read_cifar10_batch(
    path: str | os.PathLike[str], dataset: str = "cifar10"
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 *binary* batch: uint8 images ``(N, 3, 32, 32)`` and labels ``(N,)``.

    Each record is one label byte then 3,072 pixel bytes: the red, green and blue 32x32
    planes, row-major, i.e. already channels-first.
    """
    path = Path(path)
    data = _read_bytes(path, dataset)
    if len(data) == 0 or len(data) % CIFAR10_RECORD:
        raise DataError(
            f"{dataset}: {path} is not a CIFAR-10 binary batch ({len(data)} bytes, not a "
            f"positive multiple of the {CIFAR10_RECORD}-byte record)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0]  # shape: (N,)
    if labels.max() >= 10:
        raise DataError(f"{dataset}: {path} has label {labels.max()}, CIFAR-10 labels are 0-9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels  # shape: (N, 3, 32, 32)


# --------------------------------------------------------------------------- hub data sets


def _offline_flag() -> str | None:
    """The Hugging Face offline variable that is set to a true value, if any."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return var
    return None


def _hub_unreachable() -> str | None:
    """Why the Hub obviously cannot be reached (its host name does not resolve), else None.

    Without this, huggingface_hub retries for about 25 s before giving up. The check is
    skipped behind a proxy, where the proxy may resolve names this machine cannot.
    """
    if any(
        os.environ.get(var)
        for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
    ):
        return None
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urllib.parse.urlparse(endpoint).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, 443)
    except OSError as error:
        return f"cannot resolve {host}: {error}"
    return None


class _HubDataSet(_DataSet):
    """A data set from the Hugging Face Hub, or from a local copy of its original files."""

    _image_column: ClassVar[str] = "image"
    _num_classes: ClassVar[int] = 10
    _local_files_hint: ClassVar[str]

    def __init__(self, name: str, path: str | None, hub_id: str) -> None:
        self.name = name
        self.path = path
        self.hub_id = hub_id

    def check(self) -> None:
        """Also look for the local files (a few stat calls), so that a directory without
        them is refused before a run starts, not when the data are loaded."""
        super().check()
        if self.path is not None:
            directory = Path(str(self.path)).expanduser()
            if not str(self.path).strip() or not directory.is_dir():
                raise DataError(
                    f"dataset.path={self.path!r}: must be an existing directory holding "
                    f"{self._local_files_hint}"
                )
            self._local_files(directory)
        if not isinstance(self.hub_id, str) or not self.hub_id:
            raise DataError(f"dataset.hub_id={self.hub_id!r}: must be a Hub data set id")

    def _lacks(self, missing: list[str], where: str = "") -> DataError:
        """One line: the key and value, the files not found, and what the directory needs."""
        return DataError(
            f"dataset.path={self.path!r}: {self.name} lacks {', '.join(missing)}{where}; "
            f"it must hold {self._local_files_hint}"
        )

    def _local_files(self, directory: Path) -> tuple[Path | None, ...]:
        """The files to read from ``directory``; ``DataError`` naming those missing."""
        raise NotImplementedError

    def _load(self, seed: int) -> LoadedData:
        del seed  # both sources have a fixed train/test split
        if self.path is None:
            return self._load_hub()
        return self._load_local(Path(str(self.path)).expanduser())

    def _offline_error(self, reason: str) -> DataError:
        return DataError(
            f"{self.name}: could not be downloaded from the Hugging Face Hub ({self.hub_id}; "
            f"{reason}); pass a local copy with dataset.path=DIR, where DIR holds "
            f"{self._local_files_hint}"
        )

    def _load_hub(self) -> LoadedData:
        flag = _offline_flag()
        if flag is not None:
            raise self._offline_error(f"{flag} is set")
        reason = _hub_unreachable()
        if reason is not None:
            raise self._offline_error(reason)

        from flwr_datasets import FederatedDataset

        try:
            # shuffle=False: FederatedDataset shuffles every split by default; we keep the
            # published order and shuffle when partitioning.
            fds = FederatedDataset(dataset=self.hub_id, partitioners={"train": 1}, shuffle=False)
            train, test = fds.load_split("train"), fds.load_split("test")
        except Exception as error:  # network, hub and file-system failures alike
            first_line = (str(error).splitlines() or [""])[0]
            raise self._offline_error(f"{type(error).__name__}: {first_line}") from error
        return LoadedData(
            name=self.name,
            train=self._from_hub(train),
            test=self._from_hub(test),
            num_classes=self._num_classes,
            input_shape=self._input_shape,
        )

    def _from_hub(self, split: Any) -> DataSplit:
        """A Hugging Face split of PIL images -> float tensors."""
        table = split.with_format("numpy")[:]
        images = np.asarray(table[self._image_column], dtype=np.uint8)
        # Grey images come as (N, H, W), colour ones as (N, H, W, C).
        channels_first = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return _split(channels_first, np.asarray(table["label"]))  # shape: (N, C, H, W)

    def _load_local(self, directory: Path) -> LoadedData:
        raise NotImplementedError


class _MnistLike(_HubDataSet):
    """MNIST-format data: the four original IDX files, gzip-compressed or not."""

    _input_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    _files: ClassVar[tuple[str, str, str, str]] = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    _local_files_hint: ClassVar[str] = (
        "the original IDX files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or the same without .gz)"
    )

    def _find(self, directory: Path, gz_name: str) -> Path | None:
        for candidate in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
        return None

    def _read_pair(self, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
        images = read_idx_images(images_path, self.name)
        labels = read_idx_labels(labels_path, self.name)
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{self.name}: {images_path} holds {images.shape[0]} images but "
                f"{labels_path} holds {labels.shape[0]} labels"
            )
        if images.shape[1:] != self._input_shape[1:]:
            raise DataError(
                f"{self.name}: {images_path} holds {images.shape[1]}x{images.shape[2]} images, "
                f"expected {self._input_shape[1]}x{self._input_shape[2]}"
            )
        if labels.size and labels.max() >= self._num_classes:
            raise DataError(
                f"{self.name}: {labels_path} has label {labels.max()}, expected 0-"
                f"{self._num_classes - 1}"
            )
        return images[:, None], labels  # shape: (N, 1, 28, 28), (N,)

    def _local_files(self, directory: Path) -> tuple[Path | None, Path | None, Path, Path]:
        """Both test files, and both train files or neither (the test split is then cut)."""
        found = [self._find(directory, name) for name in self._files]
        train_images, train_labels, test_images, test_labels = found
        if test_images is None or test_labels is None:
            missing = [n for n, p in zip(self._files, found, strict=True) if p is None]
            raise self._lacks(missing)
        if (train_images is None) != (train_labels is None):
            raise self._lacks([self._files[0] if train_images is None else self._files[1]])
        return train_images, train_labels, test_images, test_labels

    def _load_local(self, directory: Path) -> LoadedData:
        train_images, train_labels, test_images, test_labels = self._local_files(directory)
        note = None
        x_test, y_test = self._read_pair(test_images, test_labels)
        if train_images is not None and train_labels is not None:
            x_train, y_train = self._read_pair(train_images, train_labels)
        else:
            # Only the official test split is at hand (as in shared/data/mnist): split it.
            total = x_test.shape[0]
            cut = int(total * _TEST_ONLY_TRAIN_FRACTION)
            if cut == 0 or cut == total:
                raise DataError(
                    f"{self.name}: {test_images} holds {total} images, too few to split "
                    "into train and test; add the train files"
                )
            x_train, y_train = x_test[:cut], y_test[:cut]
            x_test, y_test = x_test[cut:], y_test[cut:]
            note = (
                f"local {self.name} copy in {directory} holds only the test split: "
                f"first {cut:,} images train, last {total - cut:,} test"
            )
        return LoadedData(
            name=self.name,
            train=_split(x_train, y_train),
            test=_split(x_test, y_test),
            num_classes=self._num_classes,
            input_shape=self._input_shape,
            note=note,
        )


class Mnist(_MnistLike):
    """MNIST (LeCun et al.): 60,000 + 10,000 28x28 grey digits.

    Parameters
    ----------
    name : str (default: "mnist")
        Name recorded in results.
    path : str | None (default: None)
        Directory with the original IDX files; None downloads from the Hub. With only the
        two ``t10k-*`` files, their first 8,000 images train and the last 2,000 test.
    hub_id : str (default: "ylecun/mnist")
        Hugging Face data set id.
    """

    def __init__(
        self, name: str = "mnist", path: str | None = None, hub_id: str = "ylecun/mnist"
    ) -> None:
        super().__init__(name=name, path=path, hub_id=hub_id)


class FashionMnist(_MnistLike):
    """Fashion-MNIST (Xiao et al. 2017): MNIST's format, 10 classes of clothing.

    Parameters
    ----------
    name : str (default: "fashion_mnist")
        Name recorded in results.
    path : str | None (default: None)
        Directory with the original IDX files (same names as MNIST's); None downloads.
    hub_id : str (default: "zalando-datasets/fashion_mnist")
        Hugging Face data set id.
    """

    def __init__(
        self,
        name: str = "fashion_mnist",
        path: str | None = None,
        hub_id: str = "zalando-datasets/fashion_mnist",
    ) -> None:
        super().__init__(name=name, path=path, hub_id=hub_id)


class Cifar10(_HubDataSet):
    """CIFAR-10 (Krizhevsky 2009): 50,000 + 10,000 32x32 colour images, 10 classes.

    Locally only the *binary* version is read (``cifar-10-binary.tar.gz``, extracted); the
    Python version is a pickle, and user files are never unpickled.

    Parameters
    ----------
    name : str (default: "cifar10")
        Name recorded in results.
    path : str | None (default: None)
        Directory with ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``
        (or its ``cifar-10-batches-bin`` subdirectory); None downloads from the Hub.
    hub_id : str (default: "uoft-cs/cifar10")
        Hugging Face data set id.
    """

    _image_column: ClassVar[str] = "img"
    _input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    _files: ClassVar[tuple[str, ...]] = (
        *(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test_batch.bin",
    )
    _local_files_hint: ClassVar[str] = (
        "the CIFAR-10 binary version: data_batch_1.bin ... data_batch_5.bin and test_batch.bin"
    )

    def __init__(
        self, name: str = "cifar10", path: str | None = None, hub_id: str = "uoft-cs/cifar10"
    ) -> None:
        super().__init__(name=name, path=path, hub_id=hub_id)

    def _local_files(self, directory: Path) -> tuple[Path, ...]:
        """The six batches, in ``directory`` or in its ``cifar-10-batches-bin`` folder."""
        nested = directory / "cifar-10-batches-bin"  # the tarball's own folder
        if not (directory / self._files[0]).is_file() and nested.is_dir():
            directory = nested
        missing = [name for name in self._files if not (directory / name).is_file()]
        if missing:
            pickled = (directory / "data_batch_1").is_file() or (
                directory / "cifar-10-batches-py"
            ).is_dir()
            if pickled:
                raise DataError(
                    f"dataset.path={self.path!r}: holds the python-pickle version of "
                    f"{self.name}, which is never unpickled here; use the binary version "
                    f"(cifar-10-binary.tar.gz): {self._local_files_hint}"
                )
            raise self._lacks(missing, f" in {directory}" if directory == nested else "")
        return tuple(directory / name for name in self._files)

    def _load_local(self, directory: Path) -> LoadedData:
        files = self._local_files(directory)
        batches = [read_cifar10_batch(path, self.name) for path in files]
        x_train = np.concatenate([images for images, _ in batches[:-1]])  # shape: (N, 3, 32, 32)
        y_train = np.concatenate([labels for _, labels in batches[:-1]])
        x_test, y_test = batches[-1]
        return LoadedData(
            name=self.name,
            train=_split(x_train, y_train),
            test=_split(x_test, y_test),
            num_classes=self._num_classes,
            input_shape=self._input_shape,
        )
