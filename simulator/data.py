"""Data sets as tensors: digits, MNIST, Fashion-MNIST, CIFAR-10/100, FEMNIST, Shakespeare.

Each data set class is built by Hydra from ``conf/dataset/<name>.yaml``. As in
scikit-learn, the constructor only stores its hyperparameters, ``check()`` validates them
without touching any data, and ``load(seed)`` does the work. MNIST-like sets and CIFAR-10
come from the Hugging Face Hub (through flwr-datasets) or, offline, from a local copy of
the original files given as ``dataset.path``; user files are parsed by hand from their
documented binary layouts and never unpickled. CIFAR-100, FEMNIST and Shakespeare come
from the Hub too, or offline from the Hub's own files: a folder of its parquet files or a
folder written by ``datasets``' ``save_to_disk`` (Arrow tables, read without unpickling).

Images are float32 ``(N, C, H, W)`` in [0, 1]; text (Shakespeare) is uint8 character ids
``(N, L)``. FEMNIST and Shakespeare also carry each training example's natural client
(its writer or speaking role) for ``partition=natural``.

Loaded data are cached per process, because every client process asks for the same data:
the tensors returned are shared, and callers must not modify them in place.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
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
from simulator.checksums import OFFICIAL_NAMES, identify, is_gzip
from simulator.seeding import Stream, derive_seed

__all__ = [
    "SHAKESPEARE_LETTERS",
    "Cifar10",
    "Cifar100",
    "DataError",
    "DataSplit",
    "Digits",
    "FashionMnist",
    "Femnist",
    "LoadedData",
    "Mnist",
    "Shakespeare",
    "encode_text",
    "natural_split",
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
    """Inputs and labels of one split. Shared through the cache: do not modify in place.

    ``x`` holds images, float32 of shape ``(N, C, H, W)`` with values in [0, 1], or text,
    uint8 character ids of shape ``(N, L)``. ``groups``, where the data set has natural
    clients (FEMNIST's writers, Shakespeare's speaking roles), is each example's natural
    client as an index into ``LoadedData.natural_ids``.
    """

    x: torch.Tensor  # float32 (N, C, H, W) in [0, 1], or uint8 (N, L) character ids
    y: torch.Tensor  # int64, shape (N,)
    groups: torch.Tensor | None = None  # int64, shape (N,): natural client of each example

    def __post_init__(self) -> None:
        if self.x.ndim not in (2, 4) or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"DataSplit needs x of shape (N, C, H, W) or (N, L) and y of shape (N,), "
                f"got {tuple(self.x.shape)} and {tuple(self.y.shape)}"
            )
        if self.groups is not None and tuple(self.groups.shape) != tuple(self.y.shape):
            raise ValueError(
                f"DataSplit needs groups of shape {tuple(self.y.shape)}, "
                f"got {tuple(self.groups.shape)}"
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
    input_shape: tuple[int, ...]  # (C, H, W) of an image, or (L,) of a text sequence
    note: str | None = None  # how the data were obtained when that is unusual; the caller logs it
    # The natural clients (writer or role ids, sorted) that ``train.groups`` index; None
    # for a data set without them.
    natural_ids: tuple[str, ...] | None = None


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
    _input_shape: ClassVar[tuple[int, ...]]
    _num_classes: ClassVar[int]
    # What a natural client is (e.g. "writer"), for data sets that have them.
    natural_client: ClassVar[str | None] = None

    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of every image, or ``(L,)`` of every text sequence, known before
        loading (models and attacks are checked against it)."""
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


def _read_stored(path: Path, dataset: str) -> tuple[bytes, bytes]:
    """The file's bytes as stored, and its contents: gunzipped when it is gzip (by
    content, not by name). Both, so a caller can hash the file without reading it again."""
    try:
        stored = path.read_bytes()
        return stored, gzip.decompress(stored) if is_gzip(stored) else stored
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{dataset}: cannot read {path}: {error}") from error


def _read_bytes(path: Path, dataset: str) -> bytes:
    """The file's contents, gunzipped when it is gzip."""
    return _read_stored(path, dataset)[1]


def read_idx_images(path: str | os.PathLike[str], dataset: str = "idx") -> np.ndarray:
    """Read an IDX image file (``*-images-idx3-ubyte[.gz]``) as uint8, shape ``(N, H, W)``.

    Layout: big-endian int32 magic 2051, count, rows, cols, then the pixels row-major.
    """
    path = Path(path)
    return _parse_idx_images(_read_bytes(path, dataset), path, dataset)


def _parse_idx_images(data: bytes, path: Path, dataset: str) -> np.ndarray:
    """The images of an IDX image file's contents ``data`` (read from ``path``)."""
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
    return _parse_idx_labels(_read_bytes(path, dataset), path, dataset)


def _parse_idx_labels(data: bytes, path: Path, dataset: str) -> np.ndarray:
    """The labels of an IDX label file's contents ``data`` (read from ``path``)."""
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

    def _hub_splits(self, names: tuple[str, ...]) -> dict[str, Any]:
        """The Hub's splits ``names`` as Hugging Face data sets, or a one-line DataError."""
        flag = _offline_flag()
        if flag is not None:
            raise self._offline_error(f"{flag} is set")
        reason = _hub_unreachable()
        if reason is not None:
            raise self._offline_error(reason)

        from simulator.lazy_imports import defer_flwr_datasets_plotting

        defer_flwr_datasets_plotting()
        from flwr_datasets import FederatedDataset

        try:
            # shuffle=False: FederatedDataset shuffles every split by default; we keep the
            # published order and shuffle when partitioning.
            fds = FederatedDataset(dataset=self.hub_id, partitioners={"train": 1}, shuffle=False)
            return {name: fds.load_split(name) for name in names}
        except Exception as error:  # network, hub and file-system failures alike
            first_line = (str(error).splitlines() or [""])[0]
            raise self._offline_error(f"{type(error).__name__}: {first_line}") from error

    def _load_hub(self) -> LoadedData:
        splits = self._hub_splits(("train", "test"))
        return LoadedData(
            name=self.name,
            train=self._from_hub(splits["train"]),
            test=self._from_hub(splits["test"]),
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
    """MNIST-format data: the original IDX files, gzip-compressed or not.

    The two test files are required; the two train files are optional, but come as a
    pair. Data sets of this format share the file names too, so a file that is another
    data set's official one (``simulator.checksums``) is refused when it is read.
    """

    # Key of this data set's official files in simulator.checksums.OFFICIAL_NAMES.
    _official: ClassVar[str]
    _input_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    _files: ClassVar[tuple[str, str, str, str]] = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    _local_files_hint: ClassVar[str] = (
        "the IDX files t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz, and for "
        "the full train split train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz "
        f"(without them the test files' first {_TEST_ONLY_TRAIN_FRACTION:.0%} train), "
        "each gzip-compressed or not (no .gz)"
    )

    def _find(self, directory: Path, gz_name: str) -> Path | None:
        for candidate in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
            if candidate.is_file():
                return candidate
        return None

    def _read_own(self, path: Path) -> bytes:
        """The contents of ``path``; ``DataError`` if it is another data set's official file."""
        stored, data = _read_stored(path, self.name)
        found = identify(stored, len(data))
        if found is not None and found.dataset != self._official:
            readable = {cls._official for cls in _MnistLike.__subclasses__()}
            instead = f" or use dataset={found.dataset}" if found.dataset in readable else ""
            own = OFFICIAL_NAMES[self._official]
            raise DataError(
                f"{self.name}: {path} is {found.dataset_name}'s official {found.name} "
                f"({found.algorithm} {found.digest}), not {own}'s; point dataset.path at "
                f"the {own} files{instead}"
            )
        return data

    def _read_pair(self, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
        images = _parse_idx_images(self._read_own(images_path), images_path, self.name)
        labels = _parse_idx_labels(self._read_own(labels_path), labels_path, self.name)
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
            # Only the test files are required: name those missing, not the train files.
            test_files = zip(self._files[2:], found[2:], strict=True)
            raise self._lacks([name for name, path in test_files if path is None])
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
        Fashion-MNIST's official files are refused (Kuzushiji-MNIST's .gz files too).
    hub_id : str (default: "ylecun/mnist")
        Hugging Face data set id.
    """

    _official: ClassVar[str] = "mnist"

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
        Directory with the original IDX files (same names and layout as MNIST's, whose
        official files are refused); None downloads. With only the two ``t10k-*``
        files, their first 8,000 images train and the last 2,000 test.
    hub_id : str (default: "zalando-datasets/fashion_mnist")
        Hugging Face data set id.
    """

    _official: ClassVar[str] = "fashion_mnist"

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


# --------------------------------------------------------------------------- Hub tables

# LEAF's Shakespeare alphabet (Caldas et al. 2018, ``models/utils/language_utils.py``): the
# 80 characters its next-character model knows; every other character maps to one more id.
SHAKESPEARE_LETTERS = (
    "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
)
_UNKNOWN_LETTER = len(SHAKESPEARE_LETTERS)  # 80: the id of any character not listed above
_MAX_CODE_POINT = 0x110000
_TEXT_CHUNK = 65_536  # rows converted at a time: bounds the fixed-width string buffer


def encode_text(
    texts: list[str], length: int, dataset: str, column: str, first_row: int = 0
) -> np.ndarray:
    """Strings of exactly ``length`` characters -> uint8 ids ``(N, length)`` in LEAF's
    alphabet (``SHAKESPEARE_LETTERS``; any other character gets id 80).

    Vectorised: the strings become fixed-width UTF-32 code points, looked up in a table.
    A string of another length is a ``DataError`` naming the row (``texts[0]`` being row
    ``first_row`` of the table).
    """
    table = np.full(_MAX_CODE_POINT, _UNKNOWN_LETTER, dtype=np.uint8)
    table[[ord(c) for c in SHAKESPEARE_LETTERS]] = np.arange(len(SHAKESPEARE_LETTERS))
    out = np.empty((len(texts), length), dtype=np.uint8)  # shape: (N, L)
    for start in range(0, len(texts), _TEXT_CHUNK):
        chunk = np.asarray(texts[start : start + _TEXT_CHUNK], dtype=f"<U{length + 1}")
        lengths = np.char.str_len(chunk)
        bad = np.flatnonzero(lengths != length)
        if bad.size:
            row = start + int(bad[0])
            raise DataError(
                f"{dataset}: row {first_row + row} of column {column!r} has {len(texts[row])} "
                f"characters, expected {length}"
            )
        codes = chunk.view(np.uint32).reshape(len(chunk), length + 1)[:, :length]
        out[start : start + len(chunk)] = table[codes]
    return out


def natural_split(
    groups: np.ndarray, test_fraction: float, rng: np.random.Generator | None, gap: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices, split inside every natural client (LEAF's ``-t sample``).

    Each group of ``n`` examples keeps ``max(1, floor((1 - test_fraction) * n))`` for
    training; the rest are test examples, less the ``gap`` examples right after the
    training ones (Shakespeare's 80-character windows overlap: LEAF skips 79 so no test
    window repeats training text). With ``rng`` the examples of a group are shuffled
    first; without, the split is in row order. LEAF drops a user left without test
    examples; here it keeps its training examples (it can still be a client).
    """
    groups = np.asarray(groups, dtype=np.int64)
    n = groups.shape[0]
    keys = rng.random(n) if rng is not None else np.arange(n)
    order = np.lexsort((keys, groups))  # by group, then by key
    counts = np.bincount(groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    in_group = groups[order]
    rank = np.arange(n) - starts[in_group]  # position inside the group
    # round: 0.9 * 10 is 9, not 8.999...
    train_count = np.maximum(1, np.floor(np.round((1 - test_fraction) * counts, 9)))
    train_rows = rank < train_count[in_group]
    test_rows = rank >= train_count[in_group] + gap
    return np.sort(order[train_rows]), np.sort(order[test_rows])


def _decode_images(column: Any, mode: str, shape: tuple[int, int, int], dataset: str) -> np.ndarray:
    """An Arrow image column (``datasets``' Image: ``{bytes, path}`` structs, or bare
    bytes) -> uint8 ``(N, C, H, W)``, each encoded image (PNG) decoded with Pillow."""
    import pyarrow as pa
    from PIL import Image

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_struct(array.type):
        array = array.field("bytes")
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        raise DataError(f"{dataset}: the image column holds {array.type}, not encoded images")
    channels, height, width = shape
    out = np.empty((len(array), height, width, channels), dtype=np.uint8)
    for row, encoded in enumerate(array.to_pylist()):
        if encoded is None:
            raise DataError(f"{dataset}: image {row} has no bytes (a path-only image column)")
        with Image.open(io.BytesIO(encoded)) as image:
            pixels = np.asarray(image.convert(mode))
        if pixels.shape[:2] != (height, width):
            raise DataError(
                f"{dataset}: image {row} is {pixels.shape[0]}x{pixels.shape[1]}, "
                f"expected {height}x{width}"
            )
        out[row] = pixels.reshape(height, width, channels)
    return out.transpose(0, 3, 1, 2)  # shape: (N, C, H, W)


def _int_labels(table: Any, column: str, num_classes: int, dataset: str) -> np.ndarray:
    """An integer label column as int64 ``(N,)``; ``DataError`` outside ``[0, num_classes)``."""
    labels = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise DataError(
            f"{dataset}: column {column!r} has label {bad}, expected 0-{num_classes - 1}"
        )
    return labels


def _natural_groups(table: Any, column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each row's natural client as an index into the sorted distinct ids (the order
    flwr-datasets' ``NaturalIdPartitioner`` numbers its partitions in)."""
    ids = np.asarray(table.column(column).to_pylist(), dtype=object).astype(str)
    names, groups = np.unique(ids, return_inverse=True)
    return groups.astype(np.int64), tuple(str(name) for name in names)


class _TableDataSet(_HubDataSet):
    """A data set read as Arrow tables: from the Hub, a parquet folder or a save_to_disk folder.

    Offline, ``dataset.path`` is either a folder that ``datasets.Dataset.save_to_disk`` or
    ``DatasetDict.save_to_disk`` wrote (``state.json`` or ``dataset_dict.json`` at its top),
    or a folder holding the Hub's ``*.parquet`` files (searched recursively). A parquet
    file belongs to the split its name starts with (``train-00000-of-00001.parquet``) or
    a folder on its path is named after (``default/train/0000.parquet``); for a data set
    with only a train split on the Hub, every parquet file is training data.
    """

    _splits: ClassVar[tuple[str, ...]] = ("train", "test")
    _columns: ClassVar[tuple[str, ...]]
    _local_files_hint: ClassVar[str] = (
        "the Hub's parquet files (*.parquet) or a folder written by datasets' save_to_disk"
    )

    def _local_files(self, directory: Path) -> tuple[Path, ...]:
        """``(directory,)`` for a save_to_disk folder, else the parquet files of each split."""
        if (directory / "dataset_dict.json").is_file() or (directory / "state.json").is_file():
            return (directory,)
        files = sorted(directory.rglob("*.parquet"))
        if not files:
            raise self._lacks(["*.parquet files and a save_to_disk folder's state.json"])
        missing = [split for split in self._splits if not self._parquet_of(directory, split)]
        if missing:
            raise self._lacks([f"parquet files of the {split} split" for split in missing])
        return tuple(files)

    def _parquet_of(self, directory: Path, split: str) -> list[Path]:
        """The parquet files of ``split`` under ``directory``, in path order."""
        files = sorted(directory.rglob("*.parquet"))
        if self._splits == ("train",):
            return files
        return [
            path
            for path in files
            if path.name.startswith(split) or split in path.relative_to(directory).parent.parts
        ]

    def _read_local(self, directory: Path) -> dict[str, Any]:
        """Every split as a pyarrow Table, from a save_to_disk folder or parquet files."""
        self._local_files(directory)
        if (directory / "dataset_dict.json").is_file() or (directory / "state.json").is_file():
            import datasets

            try:
                saved = datasets.load_from_disk(str(directory))
            except Exception as error:  # a damaged folder: name it, in one line
                first_line = (str(error).splitlines() or [""])[0]
                raise DataError(
                    f"{self.name}: cannot read the save_to_disk folder {directory}: {first_line}"
                ) from error
            if isinstance(saved, datasets.Dataset):
                saved = datasets.DatasetDict({"train": saved})
            missing = [split for split in self._splits if split not in saved]
            if missing:
                raise self._lacks(
                    [f"the {split} split" for split in missing], f" (it has {', '.join(saved)})"
                )
            return {split: saved[split].with_format("arrow")[:] for split in self._splits}
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = {}
        for split in self._splits:
            try:
                parts = [pq.read_table(path) for path in self._parquet_of(directory, split)]
                tables[split] = pa.concat_tables(parts, promote_options="default")
            except (OSError, pa.ArrowException) as error:
                first_line = (str(error).splitlines() or [""])[0]
                raise DataError(
                    f"{self.name}: cannot read the parquet files in {directory}: {first_line}"
                ) from error
        return tables

    def _check_columns(self, table: Any, source: str) -> None:
        missing = [column for column in self._columns if column not in table.column_names]
        if missing:
            raise DataError(
                f"{self.name}: {source} lacks the column(s) {', '.join(missing)} "
                f"(it has {', '.join(table.column_names)})"
            )

    def _load(self, seed: int) -> LoadedData:
        if self.path is None:
            splits = self._hub_splits(self._splits)
            tables = {name: split.with_format("arrow")[:] for name, split in splits.items()}
            source = f"the Hub's {self.hub_id}"
        else:
            directory = Path(str(self.path)).expanduser()
            tables, source = self._read_local(directory), str(directory)
        for table in tables.values():
            self._check_columns(table, source)
        return self._convert(tables, seed)

    def _convert(self, tables: dict[str, Any], seed: int) -> LoadedData:
        """The loaded data from each split's Arrow table (columns checked)."""
        raise NotImplementedError


class Cifar100(_TableDataSet):
    """CIFAR-100 (Krizhevsky 2009): 50,000 + 10,000 32x32 colour images, 100 fine classes.

    From the Hub (``uoft-cs/cifar100``: columns ``img``, ``fine_label``, ``coarse_label``;
    the fine labels are used) through flwr-datasets, or offline from ``dataset.path``: a
    folder with the Hub's parquet files (``train-*.parquet`` and ``test-*.parquet``) or a
    ``DatasetDict.save_to_disk`` folder with ``train`` and ``test`` splits.

    Parameters
    ----------
    name : str (default: "cifar100")
        Name recorded in results.
    path : str | None (default: None)
        Parquet or save_to_disk folder; None downloads from the Hub.
    hub_id : str (default: "uoft-cs/cifar100")
        Hugging Face data set id.
    """

    _input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    _num_classes: ClassVar[int] = 100
    _columns: ClassVar[tuple[str, ...]] = ("img", "fine_label")

    def __init__(
        self, name: str = "cifar100", path: str | None = None, hub_id: str = "uoft-cs/cifar100"
    ) -> None:
        super().__init__(name=name, path=path, hub_id=hub_id)

    def _convert(self, tables: dict[str, Any], seed: int) -> LoadedData:
        del seed  # the Hub's fixed train/test split

        def split(table: Any) -> DataSplit:
            images = _decode_images(table.column("img"), "RGB", self._input_shape, self.name)
            labels = _int_labels(table, "fine_label", self._num_classes, self.name)
            return _split(images, labels)  # shape: (N, 3, 32, 32), (N,)

        return LoadedData(
            name=self.name,
            train=split(tables["train"]),
            test=split(tables["test"]),
            num_classes=self._num_classes,
            input_shape=self._input_shape,
        )


class _NaturalDataSet(_TableDataSet):
    """A data set of natural clients with one published split, divided inside every client."""

    _splits: ClassVar[tuple[str, ...]] = ("train",)
    _natural_column: ClassVar[str]

    def __init__(self, name: str, path: str | None, hub_id: str, test_fraction: float) -> None:
        super().__init__(name=name, path=path, hub_id=hub_id)
        self.test_fraction = test_fraction

    def check(self) -> None:
        if not is_real(self.test_fraction) or not 0 < self.test_fraction < 1:
            raise DataError(
                f"dataset.test_fraction={self.test_fraction!r}: must be a number in (0, 1)"
            )
        super().check()

    def _examples(self, table: Any) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels of every row (uint8 images or character ids, int64 labels)."""
        raise NotImplementedError

    def _split_rows(self, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _convert(self, tables: dict[str, Any], seed: int) -> LoadedData:
        table = tables["train"]
        groups, natural_ids = _natural_groups(table, self._natural_column)
        x, y = self._examples(table)
        train_idx, test_idx = self._split_rows(groups, seed)
        if test_idx.size == 0:
            raise DataError(
                f"dataset.test_fraction={self.test_fraction!r}: leaves no test examples in "
                f"{self.name}'s {len(y)} rows"
            )

        def split(idx: np.ndarray, with_groups: bool) -> DataSplit:
            inputs = torch.from_numpy(np.ascontiguousarray(x[idx]))
            if inputs.dtype == torch.uint8 and inputs.ndim == 4:  # images: floats in [0, 1]
                inputs = inputs.to(torch.float32) / 255.0
            return DataSplit(
                x=inputs,
                y=torch.from_numpy(y[idx]),
                groups=torch.from_numpy(groups[idx]) if with_groups else None,
            )

        return LoadedData(
            name=self.name,
            train=split(train_idx, True),
            test=split(test_idx, False),
            num_classes=self._num_classes,
            input_shape=self._input_shape,
            natural_ids=natural_ids,
        )


class Femnist(_NaturalDataSet):
    """FEMNIST (LEAF, Caldas et al. 2018): 28x28 grey handwritten characters, 62 classes,
    3,597 writers (digits, upper- and lower-case letters of EMNIST, by writer).

    From the Hub (``flwrlabs/femnist``: one ``train`` split of 814,277 rows, columns
    ``image``, ``writer_id``, ``hsf_id``, ``character``) through flwr-datasets, or offline
    from ``dataset.path``: a folder with the Hub's parquet files or a ``save_to_disk``
    folder (a ``Dataset``, or a ``DatasetDict`` with a ``train`` split). The labels are
    ``character`` (0-61); ``writer_id`` is the natural client of ``partition=natural``.
    As in LEAF (``-t sample``), every writer's examples are split at random, seeded:
    ``max(1, floor(0.9 n))`` train, the rest test.

    Parameters
    ----------
    name : str (default: "femnist")
        Name recorded in results.
    path : str | None (default: None)
        Parquet or save_to_disk folder; None downloads from the Hub.
    hub_id : str (default: "flwrlabs/femnist")
        Hugging Face data set id.
    test_fraction : float (default: 0.1)
        Share of every writer's examples held out for testing, in (0, 1).
    """

    _seeded: ClassVar[bool] = True
    _input_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    _num_classes: ClassVar[int] = 62
    _columns: ClassVar[tuple[str, ...]] = ("image", "writer_id", "character")
    _natural_column: ClassVar[str] = "writer_id"
    natural_client: ClassVar[str | None] = "writer"

    def __init__(
        self,
        name: str = "femnist",
        path: str | None = None,
        hub_id: str = "flwrlabs/femnist",
        test_fraction: float = 0.1,
    ) -> None:
        super().__init__(name=name, path=path, hub_id=hub_id, test_fraction=test_fraction)

    def _examples(self, table: Any) -> tuple[np.ndarray, np.ndarray]:
        images = _decode_images(table.column("image"), "L", self._input_shape, self.name)
        return images, _int_labels(table, "character", self._num_classes, self.name)

    def _split_rows(self, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(derive_seed(seed, Stream.NATURAL_SPLIT))
        return natural_split(groups, float(self.test_fraction), rng)


class Shakespeare(_NaturalDataSet):
    """Shakespeare (LEAF, Caldas et al. 2018): next-character prediction, one client per
    speaking role of a play.

    From the Hub (``flwrlabs/shakespeare``: one ``train`` split, columns ``character_id``
    (the role), ``x`` (80 characters) and ``y`` (the next character)) through
    flwr-datasets, or offline from ``dataset.path``: a folder with parquet files of those
    columns (the Hub's parquet conversion) or a ``save_to_disk`` folder. Inputs are the 80
    characters as uint8 ids in LEAF's 80-letter alphabet (``SHAKESPEARE_LETTERS``) plus one
    id (80) for any other character, so there are 81 classes. As in LEAF, every role's
    examples are split in text order: the first ``max(1, floor(0.9 n))`` train, then 79
    are skipped (their windows overlap the training text), the rest test.

    Parameters
    ----------
    name : str (default: "shakespeare")
        Name recorded in results.
    path : str | None (default: None)
        Parquet or save_to_disk folder; None downloads from the Hub.
    hub_id : str (default: "flwrlabs/shakespeare")
        Hugging Face data set id.
    test_fraction : float (default: 0.1)
        Share of every role's examples after which testing starts, in (0, 1).
    """

    SEQUENCE_LENGTH = 80
    _input_shape: ClassVar[tuple[int, ...]] = (SEQUENCE_LENGTH,)
    _num_classes: ClassVar[int] = len(SHAKESPEARE_LETTERS) + 1
    _columns: ClassVar[tuple[str, ...]] = ("character_id", "x", "y")
    _natural_column: ClassVar[str] = "character_id"
    natural_client: ClassVar[str | None] = "speaking role"

    def __init__(
        self,
        name: str = "shakespeare",
        path: str | None = None,
        hub_id: str = "flwrlabs/shakespeare",
        test_fraction: float = 0.1,
    ) -> None:
        super().__init__(name=name, path=path, hub_id=hub_id, test_fraction=test_fraction)

    def _examples(self, table: Any) -> tuple[np.ndarray, np.ndarray]:
        length = self.SEQUENCE_LENGTH
        x = np.empty((table.num_rows, length), dtype=np.uint8)  # shape: (N, 80)
        y = np.empty(table.num_rows, dtype=np.int64)  # shape: (N,)
        # Slice by slice: millions of Python strings at once would cost gigabytes.
        for start in range(0, table.num_rows, _TEXT_CHUNK):
            part = table.slice(start, _TEXT_CHUNK)
            x[start : start + part.num_rows] = encode_text(
                part.column("x").to_pylist(), length, self.name, "x", start
            )
            y[start : start + part.num_rows] = encode_text(
                part.column("y").to_pylist(), 1, self.name, "y", start
            )[:, 0]
        return x, y

    def _split_rows(self, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        del seed  # the split follows the text
        return natural_split(groups, float(self.test_fraction), None, gap=self.SEQUENCE_LENGTH - 1)
