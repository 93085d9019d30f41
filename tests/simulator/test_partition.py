"""Partitioners: cover and disjointness, seeding, skew, the bias split, parameter checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pytest
from flwr_datasets.partitioner import Partitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.partition import (
    BiasPartitioner,
    OwnPartitioner,
    dirichlet,
    iid,
    partition_indices,
    shard,
)
from simulator.schema import build
from tests.conftest import compose_config

CONF = Path(__file__).resolve().parents[2] / "conf" / "partition"
NUM_CLASSES = 10


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    # 2,000 = 10 clients x 2 shards x 100: the shard partitioner drops nothing.
    return np.random.default_rng(123).integers(0, NUM_CLASSES, size=2000)


FACTORIES: dict[str, Callable[[int, int], Partitioner]] = {
    "iid": lambda p, s: iid(num_partitions=p, seed=s),
    "dirichlet": lambda p, s: dirichlet(num_partitions=p, seed=s, alpha=0.5),
    "shard": lambda p, s: shard(num_partitions=p, seed=s, num_shards_per_partition=2),
    "bias": lambda p, s: BiasPartitioner(num_partitions=p, seed=s, bias=0.5),
}


def _split(labels: np.ndarray, kind: str, seed: int, num_partitions: int = 10) -> list[np.ndarray]:
    return partition_indices(labels, FACTORIES[kind](num_partitions, seed), seed=seed)


def _label_shares(labels: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """Per-client label distribution, shape (clients, classes)."""
    counts = np.stack([np.bincount(labels[p], minlength=NUM_CLASSES) for p in parts])
    return counts / counts.sum(axis=1, keepdims=True)


def _mean_entropy(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    shares = _label_shares(labels, parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(shares > 0, -shares * np.log(shares), 0.0)
    return float(terms.sum(axis=1).mean())


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_partitions_are_disjoint_and_cover(labels: np.ndarray, kind: str) -> None:
    parts = _split(labels, kind, seed=0)
    assert len(parts) == 10
    assert sum(len(p) for p in parts) == len(labels)
    everything = np.concatenate(parts)
    assert np.array_equal(np.sort(everything), np.arange(len(labels)))
    for p in parts:
        assert p.dtype == np.int64
        assert p.size > 0
        assert np.all(np.diff(p) > 0)  # sorted, no repeats


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_partitions_depend_only_on_the_seed(labels: np.ndarray, kind: str) -> None:
    first, again, other = (_split(labels, kind, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_iid_sizes_differ_by_at_most_one() -> None:
    labels = np.zeros(1003, dtype=np.int64)
    sizes = [len(p) for p in partition_indices(labels, iid(num_partitions=10, seed=0), seed=0)]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == 1003


def test_iid_label_shares_are_close_to_global(labels: np.ndarray) -> None:
    shares = _label_shares(labels, _split(labels, "iid", seed=0))
    assert np.abs(shares - np.bincount(labels) / len(labels)).max() < 0.08


def test_shard_drops_only_the_left_over_rows() -> None:
    # 2,003 rows, 10 clients x 2 shards: shard size 100, 3 rows left over.
    labels = np.random.default_rng(0).integers(0, NUM_CLASSES, size=2003)
    parts = partition_indices(labels, shard(num_partitions=10, seed=0), seed=0)
    assert [len(p) for p in parts] == [200] * 10
    assert len(np.unique(np.concatenate(parts))) == 2000


def test_shard_clients_see_few_classes(labels: np.ndarray) -> None:
    shares = _label_shares(labels, _split(labels, "shard", seed=0))
    # Two label-sorted shards of 100 from ~200 per class: at most 4 classes per client.
    assert ((shares > 0).sum(axis=1) <= 4).all()


def test_dirichlet_small_alpha_is_more_skewed(labels: np.ndarray) -> None:
    def entropy(alpha: float) -> float:
        partitioner = dirichlet(num_partitions=10, seed=0, alpha=alpha, min_partition_size=0)
        return _mean_entropy(labels, partition_indices(labels, partitioner, seed=0))

    skewed, mild, flat = entropy(0.1), entropy(1.0), entropy(100.0)
    assert skewed < mild < flat
    assert flat > 0.95 * np.log(NUM_CLASSES)


def _share_in_own_group(bias: float, seed: int = 0) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """Share of examples whose client belongs to their label's group."""
    labels = np.random.default_rng(seed).integers(0, NUM_CLASSES, size=20_000)
    partitioner = BiasPartitioner(num_partitions=20, seed=seed, bias=bias, num_classes=10)
    parts = partition_indices(labels, partitioner, seed=seed)
    client_of = np.empty(len(labels), dtype=np.int64)
    for pid, part in enumerate(parts):
        client_of[part] = pid
    share = float(np.mean(partitioner.groups[client_of] == labels))
    return share, labels, parts


@pytest.mark.parametrize("bias", [0.0, 0.5, 0.9, 1.0])
def test_bias_share_in_own_group_matches_q(bias: float) -> None:
    share, _, _ = _share_in_own_group(bias)
    # Binomial(20,000, q): standard deviation <= 0.0036.
    assert share == pytest.approx(bias, abs=0.02)


def test_bias_groups_are_even_and_shuffled() -> None:
    partitioner = BiasPartitioner(num_partitions=25, seed=3, bias=0.5, num_classes=10)
    partitioner.assign(np.arange(1000) % 10)
    groups = partitioner.groups
    assert sorted(np.bincount(groups, minlength=10)) == [2] * 5 + [3] * 5
    # Client ids are shuffled: the groups are not laid out in order.
    assert not np.array_equal(groups, np.sort(groups))


def test_bias_high_q_concentrates_clients_on_one_label() -> None:
    _, labels, parts = _share_in_own_group(0.9)
    top = _label_shares(labels, parts).max(axis=1)
    # A client's own label makes up about q of its data (labels are balanced).
    assert top.mean() == pytest.approx(0.9, abs=0.03)


def test_bias_one_over_c_is_iid() -> None:
    _, labels, parts = _share_in_own_group(1 / NUM_CLASSES)
    shares = _label_shares(labels, parts)
    # About 1,000 examples per client: one standard deviation of a share is ~0.01.
    assert np.abs(shares - 0.1).max() < 0.05


def test_bias_rejects_fewer_clients_than_classes() -> None:
    with pytest.raises(ValueError, match=r"^num_partitions=5"):
        BiasPartitioner(num_partitions=5, seed=0, num_classes=10)
    partitioner = BiasPartitioner(num_partitions=5, seed=0)  # C is read from the labels
    with pytest.raises(ValueError, match=r"num_classes=10"):
        partitioner.assign(np.arange(100) % 10)


def test_bias_load_partition_matches_assign() -> None:
    labels = np.random.default_rng(1).integers(0, 4, size=300)
    parts = partition_indices(labels, BiasPartitioner(num_partitions=8, seed=5, bias=0.7), 0)
    assert sum(len(p) for p in parts) == 300
    partitioner = BiasPartitioner(num_partitions=8, seed=5, bias=0.7)
    partitioner.dataset = datasets.Dataset.from_dict({"label": labels})
    assert np.array_equal(
        np.asarray(partitioner.load_partition(3)["label"]),
        labels[partitioner.assign(labels)[3]],
    )
    with pytest.raises(ValueError, match="partition_id=8"):
        partitioner.load_partition(8)


@settings(max_examples=60, deadline=None)
@given(
    num_classes=st.integers(1, 6),
    extra_clients=st.integers(0, 12),
    bias=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_bias_assign_is_a_partition(
    num_classes: int, extra_clients: int, bias: float, seed: int, data: st.DataObject
) -> None:
    labels = np.asarray(
        data.draw(st.lists(st.integers(0, num_classes - 1), max_size=200)), dtype=np.int64
    )
    num_partitions = num_classes + extra_clients
    partitioner = BiasPartitioner(num_partitions, seed, bias=bias, num_classes=num_classes)
    parts = partitioner.assign(labels)
    assert len(parts) == num_partitions
    everything = np.concatenate(parts)
    assert np.array_equal(np.sort(everything), np.arange(len(labels)))
    assert all(np.all(np.diff(p) > 0) for p in parts)
    again = BiasPartitioner(num_partitions, seed, bias=bias, num_classes=num_classes)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again.assign(labels), strict=True))
    if bias == 1.0:  # every example lands in its own label's group
        for pid, part in enumerate(parts):
            assert np.all(labels[part] == partitioner.groups[pid])


def test_empty_partition_is_reported() -> None:
    with pytest.raises(ValueError, match=r"5 examples cannot fill 10 partitions"):
        partition_indices(np.arange(5), iid(num_partitions=10, seed=0), seed=0)
    # 12 examples among 10 clients: some bias-split client is left empty.
    with pytest.raises(ValueError, match=r"partition \d+ of 10 is empty.*fewer clients"):
        partition_indices(np.arange(12) % 2, BiasPartitioner(10, seed=0, bias=1.0), seed=0)


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: iid(num_partitions=0, seed=0), "num_partitions=0"),
        (lambda: iid(num_partitions=2.5, seed=0), "num_partitions=2.5"),
        (lambda: dirichlet(10, 0, alpha=-1), "alpha=-1"),
        (lambda: dirichlet(10, 0, alpha=0), "alpha=0"),
        (lambda: dirichlet(10, 0, alpha=float("nan")), "alpha=nan"),
        (lambda: dirichlet(10, 0, min_partition_size=-1), "min_partition_size=-1"),
        (lambda: dirichlet(10, 0, self_balancing="yes"), "self_balancing='yes'"),
        (lambda: shard(10, 0, num_shards_per_partition=0), "num_shards_per_partition=0"),
        (lambda: shard(10, 0, shard_size=0), "shard_size=0"),
        (
            lambda: shard(10, 0, num_shards_per_partition=None),
            "num_shards_per_partition=None",
        ),
        (lambda: BiasPartitioner(10, 0, bias=1.5), "bias=1.5"),
        (lambda: BiasPartitioner(10, 0, bias=-0.1), "bias=-0.1"),
        (lambda: BiasPartitioner(10, 0, bias="high"), "bias='high'"),
        (lambda: BiasPartitioner(10, 0, num_classes=0), "num_classes=0"),
        (lambda: BiasPartitioner(True, 0), "num_partitions=True"),
    ],
)
def test_bad_parameters_name_their_own_parameter(make: Callable[[], object], key: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert message.startswith(key), message
    assert "\n" not in message


@pytest.mark.parametrize("entry", ["iid", "dirichlet", "shard", "bias"])
def test_config_entries_instantiate(labels: np.ndarray, entry: str) -> None:
    cfg = compose_config(f"partition={entry}").partition
    assert cfg.name == entry
    partitioner = build("partition", cfg)(num_partitions=10, seed=0)
    assert isinstance(partitioner, Partitioner | OwnPartitioner)
    parts = partition_indices(labels, partitioner, seed=0)
    assert len(parts) == 10


@pytest.mark.parametrize(("rows", "clients"), [(2000, 10), (1347, 10), (101, 7), (5, 5)])
def test_iid_cuts_the_rows_as_flwr_datasets_iid_partitioner_does(rows: int, clients: int) -> None:
    """Oleander's numpy iid split and flwr-datasets' (``Dataset.shard``, contiguous) agree
    row for row, so moving off the Arrow round trip changed no run."""
    import datasets
    from flwr_datasets.partitioner import IidPartitioner as FlwrIid

    order = np.random.default_rng(rows).permutation(rows)
    reference = FlwrIid(num_partitions=clients)
    reference.dataset = datasets.Dataset.from_dict({"idx": order})
    expected = [np.asarray(reference.load_partition(i)["idx"]) for i in range(clients)]
    ours = iid(num_partitions=clients, seed=0)
    assert [order[r].tolist() for r in ours.split(rows)] == [e.tolist() for e in expected]
    ours.dataset = datasets.Dataset.from_dict({"idx": order})
    assert np.asarray(ours.load_partition(clients - 1)["idx"]).tolist() == expected[-1].tolist()
