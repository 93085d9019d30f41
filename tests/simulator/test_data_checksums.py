"""Data sets of one file format told apart by their official files' checksums, and what an
MNIST-format folder must hold."""

from __future__ import annotations

import gzip
import hashlib
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from simulator import checksums
from simulator.checksums import OFFICIAL_NAMES, identify
from simulator.data import DataError, FashionMnist, Mnist

TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _gunzip_into(source: Path, target: Path, names: tuple[str, ...] = TEST_FILES) -> Path:
    """The official files ``names`` of ``source``, uncompressed, in ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        (target / name.removesuffix(".gz")).write_bytes(
            gzip.decompress((source / name).read_bytes())
        )
    return target


def _idx_images(images: np.ndarray) -> bytes:
    header = np.array([2051, *images.shape], dtype=">i4").tobytes()
    return header + images.tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return np.array([2049, len(labels)], dtype=">i4").tobytes() + labels.tobytes()


def _user_test_files(directory: Path, count: int, seed: int = 0) -> Path:
    """Test files of ``count`` random images and labels: no data set's official files."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TEST_FILES[0]).write_bytes(gzip.compress(_idx_images(images), mtime=0))
    (directory / TEST_FILES[1]).write_bytes(gzip.compress(_idx_labels(labels), mtime=0))
    return directory


def _one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- the table


def test_table_entries_name_a_known_data_set_and_a_format_file() -> None:
    for table, length, gz in ((checksums._GZIP_MD5, 32, True), (checksums._RAW_SHA256, 64, False)):
        for digest, (dataset, name) in table.items():
            assert dataset in OFFICIAL_NAMES
            assert len(digest) == length and int(digest, 16) >= 0
            assert name.endswith(".gz") == gz
            assert name.removesuffix(".gz").rsplit("-", 3)[0] in ("train", "t10k"), name
    # MNIST and Fashion-MNIST: all four files in each table.
    for table in (checksums._GZIP_MD5, checksums._RAW_SHA256):
        for dataset in ("mnist", "fashion_mnist"):
            assert len([1 for key, _ in table.values() if key == dataset]) == 4


def test_identify_recognises_the_official_mnist_test_files(mnist_dir: Path, tmp_path: Path) -> None:
    raw_dir = _gunzip_into(mnist_dir, tmp_path)
    for name in TEST_FILES:
        stored = (mnist_dir / name).read_bytes()
        found = identify(stored, len(gzip.decompress(stored)))
        assert found is not None
        assert (found.dataset, found.name, found.algorithm) == ("mnist", name, "md5")
        assert found.digest == hashlib.md5(stored).hexdigest()
        assert found.dataset_name == "MNIST"
        raw = (raw_dir / name.removesuffix(".gz")).read_bytes()
        found_raw = identify(raw, len(raw))
        assert found_raw is not None
        assert (found_raw.dataset, found_raw.name) == ("mnist", name.removesuffix(".gz"))
        assert found_raw.algorithm == "sha256"


def test_identify_skips_files_of_no_official_size(mnist_dir: Path) -> None:
    stored = (mnist_dir / TEST_FILES[0]).read_bytes()
    # The same bytes said to decompress to another size are not even hashed.
    assert identify(stored, 7840016 + 1) is None
    assert identify(b"\x00" * 10008, 10008) is None  # official size, unknown contents


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("compressed", [True, False])
def test_fashion_mnist_refuses_the_official_mnist_files(
    mnist_dir: Path, tmp_path: Path, compressed: bool
) -> None:
    folder = mnist_dir if compressed else _gunzip_into(mnist_dir, tmp_path / "raw")
    with pytest.raises(DataError) as info:
        FashionMnist(path=str(folder)).load(seed=0)
    message = _one_line(info)
    suffix = ".gz" if compressed else ""
    assert message.startswith("fashion_mnist: ")
    assert f"{folder / ('t10k-images-idx3-ubyte' + suffix)} is MNIST's official" in message
    assert "not Fashion-MNIST's" in message
    assert ("md5 " if compressed else "sha256 ") in message
    assert "dataset=mnist" in message


def test_each_file_is_checked_not_only_the_first(mnist_dir: Path, tmp_path: Path) -> None:
    """User-made images of the official size, with MNIST's official labels beside them."""
    folder = _user_test_files(tmp_path, count=10_000)
    (folder / TEST_FILES[1]).write_bytes((mnist_dir / TEST_FILES[1]).read_bytes())
    with pytest.raises(DataError) as info:
        FashionMnist(path=str(folder)).load(seed=0)
    message = _one_line(info)
    assert f"{folder / TEST_FILES[1]} is MNIST's official t10k-labels-idx1-ubyte.gz" in message
    assert "Fashion-MNIST" in message
    # The same folder is fine for MNIST: the user's images are nobody's official file.
    assert len(Mnist(path=str(folder)).load(seed=0).train) == 8000


def test_mnist_loads_its_own_files_compressed_or_not(mnist_dir: Path, tmp_path: Path) -> None:
    gz = Mnist(path=str(mnist_dir)).load(seed=0)
    raw = Mnist(path=str(_gunzip_into(mnist_dir, tmp_path))).load(seed=0)
    assert torch.equal(gz.train.x, raw.train.x) and torch.equal(gz.test.y, raw.test.y)
    assert (len(gz.train), len(gz.test)) == (8000, 2000)


@pytest.mark.parametrize("cls", [Mnist, FashionMnist])
@pytest.mark.parametrize("count", [10, 10_000])
def test_unknown_files_load_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cls: type, count: int
) -> None:
    folder = _user_test_files(tmp_path, count=count, seed=count)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = cls(path=str(folder)).load(seed=0)
    assert (len(data.train), len(data.test)) == (count * 8 // 10, count - count * 8 // 10)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- what is required


@pytest.mark.parametrize("cls", [Mnist, FashionMnist])
def test_empty_folder_message_requires_only_the_test_files(tmp_path: Path, cls: type) -> None:
    with pytest.raises(DataError) as info:
        cls(path=str(tmp_path)).check()
    message = _one_line(info)
    lacks, needs = message.split("; ", 1)
    assert lacks == (
        f"dataset.path={str(tmp_path)!r}: {cls().name} lacks t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz"
    )
    assert "train-" not in lacks
    # The train files are named as the optional pair they are.
    assert "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz" in needs
    assert "without them the test files' first 80% train" in needs
    # What it says is enough is accepted.
    _user_test_files(tmp_path, count=10)
    cls(path=str(tmp_path)).check()
    assert len(cls(path=str(tmp_path)).load(seed=0).test) == 2


def test_folder_with_one_test_file_lacks_only_the_other(tmp_path: Path) -> None:
    _user_test_files(tmp_path, count=10)
    (tmp_path / TEST_FILES[1]).unlink()
    with pytest.raises(DataError) as info:
        Mnist(path=str(tmp_path)).check()
    assert _one_line(info).split("; ", 1)[0].endswith("mnist lacks t10k-labels-idx1-ubyte.gz")
