"""partition=natural: one client per writer or role, as flwr-datasets' NaturalIdPartitioner."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from simulator.config import ConfigError
from simulator.partition import NaturalPartitioner, natural, partition_indices
from simulator.preflight import check_point

# 5 natural clients of sizes 3, 1, 4, 2, 2, rows interleaved
GROUPS = np.array([2, 0, 2, 1, 4, 0, 3, 2, 3, 4, 0, 2])
LABELS = np.arange(len(GROUPS)) % 3


def test_all_natural_clients_match_flwr_datasets_natural_id_partitioner() -> None:
    from flwr_datasets.partitioner import NaturalIdPartitioner

    ours = partition_indices(LABELS, natural(num_partitions=5, seed=0), seed=0, groups=GROUPS)
    reference = NaturalIdPartitioner(partition_by="writer")
    reference.dataset = datasets.Dataset.from_dict(
        {"writer": [f"w{g}" for g in GROUPS], "row": list(range(len(GROUPS)))}
    )
    assert reference.num_partitions == 5
    for pid, rows in enumerate(ours):
        assert rows.tolist() == sorted(reference.load_partition(pid)["row"])
        assert set(GROUPS[rows]) == {pid}


def test_fewer_clients_take_whole_natural_clients_drawn_from_the_seed() -> None:
    draws = set()
    for seed in range(12):
        parts = partition_indices(
            LABELS, natural(num_partitions=3, seed=seed), seed=0, groups=GROUPS
        )
        owners = [set(GROUPS[rows].tolist()) for rows in parts]
        assert all(len(owner) == 1 for owner in owners)  # never a split writer
        chosen = [owner.pop() for owner in owners]
        assert chosen == sorted(chosen)  # numbered in natural-id order
        for g, rows in zip(chosen, parts, strict=True):
            assert rows.tolist() == np.flatnonzero(g == GROUPS).tolist()  # all its rows
        draws.add(tuple(chosen))
        again = partition_indices(
            LABELS, natural(num_partitions=3, seed=seed), seed=0, groups=GROUPS
        )
        assert [r.tolist() for r in again] == [r.tolist() for r in parts]
    assert len(draws) > 1  # the seed decides which writers take part


def test_more_clients_than_natural_clients_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^num_partitions=6: the training data have only 5 natural"
    ):
        partition_indices(LABELS, natural(num_partitions=6, seed=0), seed=0, groups=GROUPS)


def test_natural_needs_groups() -> None:
    with pytest.raises(
        ValueError, match=r"^partition=natural: the data set has no natural clients"
    ):
        partition_indices(LABELS, natural(num_partitions=2, seed=0), seed=0)


def test_load_partition_reads_the_natural_id_column() -> None:
    partitioner = NaturalPartitioner(num_partitions=5, seed=0, partition_by="writer")
    partitioner.dataset = datasets.Dataset.from_dict({"writer": [f"w{g}" for g in GROUPS]})
    assert [len(partitioner.load_partition(pid)) for pid in range(5)] == [3, 1, 4, 2, 2]


@pytest.mark.parametrize(
    ("dataset", "model"), [("mnist", "fltrust_cnn"), ("digits", "mlp"), ("cifar100", "resnet20")]
)
def test_natural_on_a_data_set_without_natural_clients_fails_before_loading(
    dataset: str, model: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_point([f"dataset={dataset}", f"model={model}", "partition=natural"])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"partition=natural: dataset={dataset} has no natural clients")


def test_natural_composes_with_the_natural_data_sets() -> None:
    check_point(["dataset=femnist", "model=femnist_cnn", "partition=natural", "num_clients=50"])
    check_point(["dataset=shakespeare", "model=char_lstm", "partition=natural"])
