"""Data sets: digits, the IDX and CIFAR-10 binary readers, local copies, offline failures."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from sklearn.datasets import load_digits

import simulator.data as data_module
from simulator.data import (
    Cifar10,
    DataError,
    Digits,
    FashionMnist,
    LoadedData,
    Mnist,
    read_cifar10_batch,
    read_idx_images,
    read_idx_labels,
)
from tests.conftest import compose_config

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = Path(os.environ.get("OLEANDER_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


# --------------------------------------------------------------------------- helpers


def _write(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def _idx_images(images: np.ndarray, magic: int = 2051) -> bytes:
    count, rows, cols = images.shape
    return np.array([magic, count, rows, cols], dtype=">i4").tobytes() + images.tobytes()


def _idx_labels(labels: np.ndarray, magic: int = 2049) -> bytes:
    return np.array([magic, len(labels)], dtype=">i4").tobytes() + labels.tobytes()


def _fake_mnist(
    directory: Path, counts: dict[str, int], gz: bool = True, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write IDX files for the given splits ("train", "t10k"); return what was written."""
    rng = np.random.default_rng(seed)
    written = {}
    suffix = ".gz" if gz else ""
    for prefix, count in counts.items():
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        _write(directory / f"{prefix}-images-idx3-ubyte{suffix}", _idx_images(images))
        _write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", _idx_labels(labels))
        written[prefix] = (images, labels)
    return written


def _assert_split(data: LoadedData, channels: int, side: int) -> None:
    for split in (data.train, data.test):
        assert split.x.dtype == torch.float32
        assert split.y.dtype == torch.int64
        assert split.x.shape[1:] == (channels, side, side)
        assert split.x.shape[0] == split.y.shape[0] == len(split)
        assert float(split.x.min()) >= 0.0
        assert float(split.x.max()) <= 1.0
    assert data.input_shape == (channels, side, side)
    assert data.num_classes == 10


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_ranges() -> None:
    data = Digits().load(seed=0)
    _assert_split(data, channels=1, side=8)
    assert data.name == "digits"
    assert len(data.train) + len(data.test) == 1797
    assert len(data.test) == pytest.approx(0.25 * 1797, abs=1)
    assert float(data.train.x.max()) == 1.0  # 16/16: pixels really are scaled by 1/16
    # Stratified: every class on both sides, in about the same proportions.
    train_share = torch.bincount(data.train.y, minlength=10) / len(data.train)
    test_share = torch.bincount(data.test.y, minlength=10) / len(data.test)
    assert (test_share > 0).all()
    assert torch.allclose(train_share, test_share, atol=0.01)
    assert data.note is None


def test_digits_split_depends_only_on_the_seed() -> None:
    first = Digits().load(seed=0)
    again = Digits(test_fraction=0.25).load(seed=0)
    other = Digits().load(seed=1)
    assert torch.equal(first.test.y, again.test.y)
    assert torch.equal(first.test.x, again.test.x)
    assert not torch.equal(first.test.x, other.test.x)

    # Either seed splits the same 1,797 images: together the splits hold them all.
    def rows_sorted(rows: np.ndarray) -> np.ndarray:
        return rows[np.lexsort(rows.T[::-1])]

    reference = rows_sorted(load_digits().data.astype(np.float32) / 16)
    for data in (first, other):
        both = torch.cat([data.train.x, data.test.x]).flatten(1).numpy()
        assert np.array_equal(rows_sorted(both), reference)


def test_loads_are_cached_per_process() -> None:
    assert Digits().load(seed=7) is Digits().load(seed=7)
    assert Digits().load(seed=7) is not Digits(test_fraction=0.5).load(seed=7)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.001, -0.2, "a quarter"])
def test_digits_check_rejects_bad_test_fraction(fraction: object) -> None:
    with pytest.raises(DataError, match=r"^dataset\.test_fraction="):
        Digits(test_fraction=fraction).check()  # type: ignore[arg-type]


def test_constructors_store_parameters_unchanged() -> None:
    dataset = Mnist(path="~/somewhere")
    assert (dataset.name, dataset.path, dataset.hub_id) == ("mnist", "~/somewhere", "ylecun/mnist")
    assert Cifar10().hub_id == "uoft-cs/cifar10"
    assert FashionMnist().hub_id == "zalando-datasets/fashion_mnist"


# --------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_reader_round_trips(tmp_path: Path, suffix: str) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    image_file = _write(tmp_path / f"imgs{suffix}", _idx_images(images))
    label_file = _write(tmp_path / f"lbls{suffix}", _idx_labels(labels))
    assert np.array_equal(read_idx_images(image_file), images)
    assert np.array_equal(read_idx_labels(label_file), labels)


def test_idx_reader_rejects_bad_files(tmp_path: Path) -> None:
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    bad_magic = _write(tmp_path / "bad-magic.gz", _idx_images(images, magic=2049))
    with pytest.raises(DataError, match=r"bad-magic\.gz.*magic 2049, expected 2051"):
        read_idx_images(bad_magic)
    wrong_kind = _write(tmp_path / "labels-as-images", _idx_images(images))
    with pytest.raises(DataError, match=r"labels-as-images.*expected 2049"):
        read_idx_labels(wrong_kind)
    truncated = _write(tmp_path / "short.gz", _idx_images(images)[:-10])
    with pytest.raises(DataError, match=r"short\.gz.*header says 2 images of 28x28"):
        read_idx_images(truncated)
    broken_gzip = tmp_path / "broken.gz"
    broken_gzip.write_bytes(gzip.compress(_idx_images(images))[:30])
    with pytest.raises(DataError, match=r"broken\.gz"):
        read_idx_images(broken_gzip)
    tiny = _write(tmp_path / "tiny", b"\x00\x00")
    with pytest.raises(DataError, match="too short"):
        read_idx_labels(tiny)


# --------------------------------------------------------------------------- local MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_local_mnist_with_all_four_files(tmp_path: Path, gz: bool) -> None:
    written = _fake_mnist(tmp_path, {"train": 6, "t10k": 4}, gz=gz)
    data = FashionMnist(path=str(tmp_path)).load(seed=0)
    _assert_split(data, channels=1, side=28)
    assert data.name == "fashion_mnist"
    assert data.note is None
    train_images, train_labels = written["train"]
    assert torch.equal(data.train.y, torch.from_numpy(train_labels.astype(np.int64)))
    # Pixel 255 -> 1.0, 0 -> 0.0, the rest in between, in the stored order.
    expected = torch.from_numpy(train_images.astype(np.float32) / 255)[:, None]
    assert torch.equal(data.train.x, expected)
    assert len(data.test) == 4


def test_local_mnist_with_only_test_files_is_split(tmp_path: Path) -> None:
    written = _fake_mnist(tmp_path, {"t10k": 10})
    data = Mnist(path=str(tmp_path)).load(seed=0)
    _, labels = written["t10k"]
    assert (len(data.train), len(data.test)) == (8, 2)
    assert torch.equal(data.test.y, torch.from_numpy(labels[8:].astype(np.int64)))
    assert data.note is not None and "first 8 images train, last 2 test" in data.note


def test_local_mnist_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        Mnist(path=str(tmp_path)).load(seed=0)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    for name in ("t10k-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        assert name in message


def test_local_mnist_mismatched_counts(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, {"t10k": 10})
    _write(tmp_path / "t10k-labels-idx1-ubyte.gz", _idx_labels(np.zeros(9, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"10 images but .* 9 labels"):
        Mnist(path=str(tmp_path)).load(seed=0)


@pytest.mark.skipif(
    not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"no local MNIST copy at {MNIST_DIR} (set OLEANDER_MNIST_DIR to a directory "
    "holding t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)",
)
def test_shared_mnist_test_split_is_8000_2000() -> None:
    data = Mnist(path=str(MNIST_DIR)).load(seed=0)
    _assert_split(data, channels=1, side=28)
    assert (len(data.train), len(data.test)) == (8000, 2000)
    assert data.note is not None and "8,000" in data.note and "2,000" in data.note
    assert data.train.y[:5].tolist() == [7, 2, 1, 0, 4]  # the official test set's first labels
    assert torch.bincount(data.test.y, minlength=10).min() > 100


# --------------------------------------------------------------------------- CIFAR-10


def _cifar_records(labels: np.ndarray, seed: int) -> tuple[bytes, np.ndarray]:
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 3, 32, 32), np.uint8)
    records = np.concatenate([labels[:, None], pixels.reshape(len(labels), -1)], axis=1)
    return records.astype(np.uint8).tobytes(), pixels


def _fake_cifar(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for seed, name in enumerate([*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]):
        labels = np.array([seed % 10, (seed + 3) % 10], dtype=np.uint8)
        payload, pixels = _cifar_records(labels, seed)
        (directory / name).write_bytes(payload)
        written[name] = (pixels, labels)
    return written


def test_cifar_binary_reader(tmp_path: Path) -> None:
    labels = np.array([3, 9, 0], dtype=np.uint8)
    payload, pixels = _cifar_records(labels, 0)
    path = tmp_path / "batch.bin"
    path.write_bytes(payload)
    images, read_labels = read_cifar10_batch(path)
    assert np.array_equal(read_labels, labels)
    assert images.shape == (3, 3, 32, 32)
    assert np.array_equal(images, pixels)  # R, G, B planes stay channels-first
    path.write_bytes(payload[:-1])
    with pytest.raises(DataError, match=r"batch\.bin.*3073-byte record"):
        read_cifar10_batch(path)
    bad = bytearray(payload)
    bad[0] = 10
    path.write_bytes(bytes(bad))
    with pytest.raises(DataError, match="label 10"):
        read_cifar10_batch(path)


@pytest.mark.parametrize("nested", [False, True])
def test_local_cifar10(tmp_path: Path, nested: bool) -> None:
    written = _fake_cifar(tmp_path / "cifar-10-batches-bin" if nested else tmp_path)
    data = Cifar10(path=str(tmp_path)).load(seed=0)
    _assert_split(data, channels=3, side=32)
    assert (len(data.train), len(data.test)) == (10, 2)
    assert data.train.y.tolist() == [v for i in range(5) for v in (i % 10, (i + 3) % 10)]
    test_pixels, _ = written["test_batch.bin"]
    assert torch.equal(data.test.x, torch.from_numpy(test_pixels.astype(np.float32) / 255))


def test_local_cifar10_refuses_the_pickle_version(tmp_path: Path) -> None:
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (tmp_path / name).write_bytes(b"\x80\x04not going to be unpickled")
    with pytest.raises(DataError, match=r"python-pickle.*binary version") as info:
        Cifar10(path=str(tmp_path)).load(seed=0)
    assert "\n" not in str(info.value)


def test_local_cifar10_missing_files(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1.bin").write_bytes(_cifar_records(np.array([1], np.uint8), 0)[0])
    with pytest.raises(DataError, match=r"lacks data_batch_2\.bin.*test_batch\.bin"):
        Cifar10(path=str(tmp_path)).load(seed=0)


# --------------------------------------------------------------------------- checks, hub


@pytest.mark.parametrize("cls", [Mnist, FashionMnist, Cifar10])
def test_check_rejects_a_missing_path(tmp_path: Path, cls: type) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        cls(path=str(missing)).check()
    message = str(info.value)
    assert message.startswith(f"dataset.path={str(missing)!r}: must be an existing directory")
    assert "\n" not in message
    a_file = _write(tmp_path / "file", b"x")
    with pytest.raises(DataError, match=r"^dataset\.path="):
        cls(path=str(a_file)).check()


@pytest.mark.parametrize(
    ("cls", "needed"),
    [
        (Mnist, "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"),
        (FashionMnist, "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"),
        (Cifar10, "data_batch_1.bin, data_batch_2.bin, data_batch_3.bin"),
    ],
)
def test_check_rejects_a_directory_without_the_files(
    tmp_path: Path, cls: type, needed: str
) -> None:
    """Refused by the cheap check, before a run starts, not only when loading."""
    (tmp_path / "unrelated.txt").write_text("")
    with pytest.raises(DataError) as info:
        cls(path=str(tmp_path)).check()
    message = str(info.value)
    assert message.startswith(f"dataset.path={str(tmp_path)!r}: {cls().name} lacks "), message
    assert needed in message
    assert "\n" not in message


def test_check_accepts_the_files_without_reading_them(tmp_path: Path) -> None:
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz"):  # the test split only
        (tmp_path / name).write_bytes(b"")
    Mnist(path=str(tmp_path)).check()
    cifar = tmp_path / "cifar" / "cifar-10-batches-bin"  # the tarball's own folder
    cifar.mkdir(parents=True)
    for name in [*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"]:
        (cifar / name).write_bytes(b"")
    Cifar10(path=str(cifar.parent)).check()


def test_check_rejects_one_train_file_without_the_other(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, {"t10k": 10})
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"^dataset\.path=.*lacks train-labels-idx1-ubyte\.gz;"):
        Mnist(path=str(tmp_path)).check()


def test_check_names_the_nested_cifar_folder_it_looked_in(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-bin").mkdir()
    with pytest.raises(DataError) as info:
        Cifar10(path=str(tmp_path)).check()
    assert f"test_batch.bin in {tmp_path / 'cifar-10-batches-bin'};" in str(info.value)


@pytest.mark.parametrize(
    ("cls", "name", "expected_file"),
    [
        (Mnist, "mnist", "t10k-images-idx3-ubyte.gz"),
        (FashionMnist, "fashion_mnist", "train-labels-idx1-ubyte.gz"),
        (Cifar10, "cifar10", "test_batch.bin"),
    ],
)
@pytest.mark.parametrize("flag", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hub_offline_fails_fast_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, cls: type, name: str, expected_file: str, flag: str
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(flag, "1")
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        cls().load(seed=0)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: could not be downloaded")
    assert "dataset.path=DIR" in message
    assert expected_file in message
    assert flag in message


def test_hub_unresolvable_host_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    def no_dns(*args: object, **kwargs: object) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(data_module.socket, "getaddrinfo", no_dns)
    with pytest.raises(DataError, match=r"^mnist: could not be downloaded.*cannot resolve"):
        Mnist().load(seed=0)


def _hub_split(column: str, images: list[np.ndarray], labels: list[int]) -> datasets.Dataset:
    features = datasets.Features(
        {column: datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}
    )
    pil = [Image.fromarray(image) for image in images]
    return datasets.Dataset.from_dict({column: pil, "label": labels}, features=features)


@pytest.mark.parametrize(
    ("cls", "column", "shape"),
    [(Mnist, "image", (28, 28)), (Cifar10, "img", (32, 32, 3))],
)
def test_hub_split_conversion(
    monkeypatch: pytest.MonkeyPatch, cls: type, column: str, shape: tuple[int, ...]
) -> None:
    """The online path, with flwr-datasets' FederatedDataset replaced by local splits."""
    rng = np.random.default_rng(0)
    splits = {
        split: [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
        for split, count in (("train", 3), ("test", 2))
    }
    calls: list[dict[str, object]] = []

    class FakeFederatedDataset:
        def __init__(self, **kwargs: object) -> None:
            calls.append(kwargs)

        def load_split(self, split: str) -> datasets.Dataset:
            return _hub_split(column, splits[split], list(range(len(splits[split]))))

    import flwr_datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(data_module, "_hub_unreachable", lambda: None)
    monkeypatch.setattr(flwr_datasets, "FederatedDataset", FakeFederatedDataset)
    data = cls(hub_id="someone/fake-" + column).load(seed=0)
    assert calls[0]["dataset"] == "someone/fake-" + column
    assert calls[0]["shuffle"] is False
    channels = 1 if len(shape) == 2 else 3
    _assert_split(data, channels=channels, side=shape[0])
    first = splits["train"][0]
    expected = first[None] if channels == 1 else first.transpose(2, 0, 1)
    assert torch.equal(data.train.x[0], torch.from_numpy(expected.astype(np.float32) / 255))
    assert data.test.y.tolist() == [0, 1]


@pytest.mark.parametrize("entry", ["digits", "mnist", "fashion_mnist", "cifar10"])
def test_config_entries_instantiate(entry: str) -> None:
    cfg = compose_config(f"dataset={entry}").dataset
    dataset = instantiate(cfg)
    assert dataset.name == entry
    dataset.check()


def test_stratified_split_keeps_class_shares_and_every_class_on_both_sides() -> None:
    from simulator.data import stratified_split

    labels = np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    for fraction in (10 / 1797, 0.25, 1 - 10 / 1797):
        train, test = stratified_split(labels, fraction, np.random.default_rng(0))
        assert len(test) == int(np.ceil(fraction * len(labels)))
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
        assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
        shares = np.bincount(labels[test], minlength=10) / np.bincount(labels)
        assert shares.min() > 0 and (1 - shares).min() > 0  # every class on both sides
        assert shares.max() - shares.min() < 2 / 174 + 1e-9  # proportional to within 1 each
    a = stratified_split(labels, 0.25, np.random.default_rng(1))
    b = stratified_split(labels, 0.25, np.random.default_rng(1))
    c = stratified_split(labels, 0.25, np.random.default_rng(2))
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_digits_load_without_importing_scikit_learn() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from simulator.data import Digits; d = Digits().load(0); "
        "assert 'sklearn' not in sys.modules; print(len(d.train), len(d.test))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1347", "450"]
