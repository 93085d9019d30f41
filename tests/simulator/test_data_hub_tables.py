"""FEMNIST, Shakespeare and CIFAR-100: Hub tables, parquet and save_to_disk folders, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import simulator.data as data_module
from simulator.data import (
    SHAKESPEARE_LETTERS,
    Cifar100,
    DataError,
    Femnist,
    Shakespeare,
    encode_text,
    natural_split,
)
from tests.simulator import hub_fixtures as fx

FORMATS = ["parquet", "save_to_disk"]


@pytest.fixture(scope="module")
def femnist_rows():  # type: ignore[no-untyped-def]
    return fx.femnist_rows(writers=4, per_writer=6)


@pytest.fixture(scope="module")
def femnist_dirs(tmp_path_factory: pytest.TempPathFactory, femnist_rows) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    return fx.both_formats(femnist_rows, tmp_path_factory.mktemp("femnist"))


@pytest.fixture(scope="module")
def shakespeare_rows():  # type: ignore[no-untyped-def]
    return fx.shakespeare_rows(roles=3, per_role=200)


@pytest.fixture(scope="module")
def shakespeare_dirs(tmp_path_factory: pytest.TempPathFactory, shakespeare_rows) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    return fx.both_formats(shakespeare_rows, tmp_path_factory.mktemp("shakespeare"))


@pytest.fixture(scope="module")
def cifar100_rows():  # type: ignore[no-untyped-def]
    return fx.cifar100_rows(train=12, test=5)


@pytest.fixture(scope="module")
def cifar100_dirs(tmp_path_factory: pytest.TempPathFactory, cifar100_rows) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    return fx.both_formats(cifar100_rows, tmp_path_factory.mktemp("cifar100"))


# --------------------------------------------------------------------------- FEMNIST


@pytest.mark.parametrize("fmt", FORMATS)
def test_femnist_loads_with_writers(femnist_dirs, femnist_rows, fmt: str) -> None:  # type: ignore[no-untyped-def]
    data = Femnist(path=str(femnist_dirs[fmt])).load(seed=0)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 62
    assert data.train.x.dtype == torch.float32 and data.train.x.shape[1:] == (1, 28, 28)
    assert float(data.train.x.min()) >= 0.0 and float(data.train.x.max()) <= 1.0
    assert len(data.train) + len(data.test) == len(femnist_rows)
    assert data.natural_ids == tuple(sorted(set(femnist_rows["writer_id"])))
    # every writer keeps floor(0.9 * 6) = 5 examples for training and tests on 1
    assert data.train.groups is not None and data.test.groups is None
    assert data.train.groups.bincount().tolist() == [5, 5, 5, 5]
    assert len(data.test) == 4
    # images and labels stay together: find each training image among the rows
    pixels = np.stack([np.asarray(image) for image in femnist_rows["image"]])
    labels = np.asarray(femnist_rows["character"])
    writers = np.asarray(femnist_rows["writer_id"])
    for x, y, g in zip(data.train.x, data.train.y, data.train.groups, strict=True):
        row = int(np.flatnonzero((pixels == np.round(x[0].numpy() * 255)).all(axis=(1, 2)))[0])
        assert labels[row] == int(y)
        assert writers[row] == data.natural_ids[int(g)]


def test_femnist_formats_agree_and_the_split_follows_the_seed(femnist_dirs) -> None:  # type: ignore[no-untyped-def]
    parquet = Femnist(path=str(femnist_dirs["parquet"])).load(seed=3)
    saved = Femnist(path=str(femnist_dirs["save_to_disk"])).load(seed=3)
    assert torch.equal(parquet.train.x, saved.train.x) and torch.equal(parquet.test.y, saved.test.y)
    other = Femnist(path=str(femnist_dirs["parquet"])).load(seed=4)
    assert not torch.equal(parquet.test.x, other.test.x)


def test_femnist_from_the_hub_reads_only_its_train_split(monkeypatch, femnist_rows) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []

    class FakeFederatedDataset:
        def __init__(self, **kwargs: object) -> None:
            assert kwargs["dataset"] == "flwrlabs/femnist" and kwargs["shuffle"] is False

        def load_split(self, split: str):  # type: ignore[no-untyped-def]
            calls.append(split)
            return femnist_rows

    import flwr_datasets

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(data_module, "_hub_unreachable", lambda: None)
    monkeypatch.setattr(flwr_datasets, "FederatedDataset", FakeFederatedDataset)
    data = Femnist(test_fraction=0.5).load(seed=0)
    assert calls == ["train"]
    assert data.train.groups.bincount().tolist() == [3, 3, 3, 3]


# --------------------------------------------------------------------------- Shakespeare


@pytest.mark.parametrize("fmt", FORMATS)
def test_shakespeare_loads_character_ids_by_role(
    shakespeare_dirs, shakespeare_rows, fmt: str
) -> None:  # type: ignore[no-untyped-def]
    data = Shakespeare(path=str(shakespeare_dirs[fmt]), test_fraction=0.5).load(seed=0)
    assert data.input_shape == (80,) and data.num_classes == len(SHAKESPEARE_LETTERS) + 1 == 81
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape[1:] == (80,)
    assert int(data.train.x.max()) <= 80 and int(data.train.y.max()) <= 80
    assert data.natural_ids == ("THE_PLAY_ROLE0", "THE_PLAY_ROLE1", "THE_PLAY_ROLE2")
    # 200 windows per role: the first 100 train, 79 skipped, the last 21 test
    assert data.train.groups.bincount().tolist() == [100, 100, 100]
    assert len(data.test) == 3 * 21
    # the first training row decodes back to the text, and its label is the next character
    alphabet = SHAKESPEARE_LETTERS + "?"
    first = "".join(alphabet[i] for i in data.train.x[0].tolist())
    assert first == "".join(
        c if c in SHAKESPEARE_LETTERS else "?" for c in shakespeare_rows[0]["x"]
    )
    assert alphabet[int(data.train.y[0])] == shakespeare_rows[1]["x"][-1].replace("é", "?")


def test_shakespeare_default_split_needs_long_roles(shakespeare_dirs) -> None:  # type: ignore[no-untyped-def]
    # 200 windows, 10% test: 180 train, then the 79 overlapping windows leave none
    with pytest.raises(DataError, match=r"^dataset\.test_fraction=0\.1: leaves no test examples"):
        Shakespeare(path=str(shakespeare_dirs["parquet"])).load(seed=0)


def test_encode_text_maps_leaf_letters_and_unknowns() -> None:
    ids = encode_text(["ab\n}", "é?Z "], 4, "t", "x")
    assert ids.dtype == np.uint8
    assert ids.tolist() == [
        [SHAKESPEARE_LETTERS.index(c) for c in "ab\n}"],
        [80, SHAKESPEARE_LETTERS.index("?"), SHAKESPEARE_LETTERS.index("Z"), 1],
    ]
    with pytest.raises(DataError, match=r"row 1 of column 'x' has 3 characters, expected 4"):
        encode_text(["abcd", "abc"], 4, "t", "x")
    with pytest.raises(DataError, match=r"row 11 of column"):
        encode_text(["abcd", "abc"], 4, "t", "x", first_row=10)


def test_natural_split_is_per_group() -> None:
    groups = np.array([0, 1, 0, 1, 0, 1, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    train, test = natural_split(groups, 0.25, None)
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).tolist() == list(range(len(groups)))
    # group 0: 4 rows -> 3 train; group 1: 3 -> 2; group 2: 10 -> 7, in row order
    assert np.bincount(groups[train]).tolist() == [3, 2, 7]
    assert test.tolist() == [5, 6, 14, 15, 16]
    train_gap, test_gap = natural_split(groups, 0.25, None, gap=2)
    assert train_gap.tolist() == train.tolist() and test_gap.tolist() == [16]
    shuffled, _ = natural_split(groups, 0.25, np.random.default_rng(0))
    assert np.bincount(groups[shuffled]).tolist() == [3, 2, 7]


# --------------------------------------------------------------------------- CIFAR-100


@pytest.mark.parametrize("fmt", FORMATS)
def test_cifar100_loads_fine_labels(cifar100_dirs, cifar100_rows, fmt: str) -> None:  # type: ignore[no-untyped-def]
    data = Cifar100(path=str(cifar100_dirs[fmt])).load(seed=0)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 100
    assert tuple(data.train.x.shape) == (12, 3, 32, 32) and tuple(data.test.x.shape) == (
        5,
        3,
        32,
        32,
    )
    assert data.train.y.tolist() == cifar100_rows["train"]["fine_label"]
    assert data.test.y.tolist() == cifar100_rows["test"]["fine_label"]
    first = np.asarray(cifar100_rows["train"][0]["img"]).transpose(2, 0, 1)
    assert torch.equal(data.train.x[0], torch.from_numpy(first.astype(np.float32) / 255))
    assert data.natural_ids is None and data.train.groups is None


def test_cifar100_parquet_without_a_test_split(tmp_path: Path, cifar100_rows) -> None:  # type: ignore[no-untyped-def]
    fx.write_parquet(cifar100_rows["train"], tmp_path)
    with pytest.raises(DataError, match=r"^dataset\.path=.*lacks parquet files of the test split"):
        Cifar100(path=str(tmp_path)).check()


def test_a_table_without_the_columns_is_named(tmp_path: Path, shakespeare_rows) -> None:  # type: ignore[no-untyped-def]
    fx.write_saved(shakespeare_rows.rename_column("x", "text"), tmp_path)
    with pytest.raises(
        DataError, match=r"lacks the column\(s\) x \(it has character_id, text, y\)"
    ):
        Shakespeare(path=str(tmp_path)).load(seed=0)


# --------------------------------------------------------------------------- offline, checks


@pytest.mark.parametrize(
    ("cls", "name"), [(Femnist, "femnist"), (Shakespeare, "shakespeare"), (Cifar100, "cifar100")]
)
def test_offline_without_a_path_is_one_line(monkeypatch, cls: type, name: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        cls().load(seed=0)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: could not be downloaded from the Hugging Face Hub")
    assert "HF_HUB_OFFLINE is set" in message and "dataset.path=DIR" in message
    assert "parquet" in message and "save_to_disk" in message


@pytest.mark.parametrize("cls", [Femnist, Shakespeare, Cifar100])
def test_check_refuses_a_folder_without_data(tmp_path: Path, cls: type) -> None:
    with pytest.raises(DataError, match=r"^dataset\.path=.*lacks \*\.parquet files"):
        cls(path=str(tmp_path)).check()
    with pytest.raises(DataError, match=r"^dataset\.path=.*must be an existing directory"):
        cls(path=str(tmp_path / "absent")).check()


@pytest.mark.parametrize("fraction", [0, 1, -0.1, "0.1", True])
def test_natural_data_sets_check_the_test_fraction(fraction: object) -> None:
    with pytest.raises(DataError, match=r"^dataset\.test_fraction=.*must be a number in \(0, 1\)"):
        Femnist(test_fraction=fraction).check()  # type: ignore[arg-type]
