"""The federation both sides share: the data set, its client partitions, the server's test set.

Server and clients build it from the same plain-dict spec, so a client in another process
(a Ray actor, an inline worker) gets exactly the partition the server expects. It is
cached per process: every client in a process reuses one copy.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from simulator.data import DataError, DataSplit, LoadedData
from simulator.partition import partition_indices
from simulator.seeding import Stream, derive_seed

log = logging.getLogger("oleander")


@dataclass(frozen=True)
class FederationSpec:
    """Everything that decides the data and who holds which part of it."""

    dataset: dict[str, Any]
    partition: dict[str, Any]
    num_clients: int
    seed: int
    root_size: int = 0  # examples the server keeps as its root set (FLTrust), not the clients'

    def key(self) -> str:
        return json.dumps(
            [self.dataset, self.partition, self.num_clients, self.seed, self.root_size],
            sort_keys=True,
        )


@dataclass
class Federation:
    """The loaded data set and each client's indices into its training split."""

    data: LoadedData
    partitions: list[np.ndarray]
    root: DataSplit | None = None
    _client_cache: dict[int, DataSplit] = field(default_factory=dict, repr=False)

    @property
    def num_clients(self) -> int:
        return len(self.partitions)

    def client_data(self, client_id: int) -> DataSplit:
        """Client ``client_id``'s training examples (a cached copy; do not mutate)."""
        if client_id not in self._client_cache:
            index = torch.from_numpy(self.partitions[client_id])
            train = self.data.train
            self._client_cache[client_id] = DataSplit(x=train.x[index], y=train.y[index])
        return self._client_cache[client_id]


def load_federation(spec: FederationSpec) -> Federation:
    """Load (once per process) the data set and partition it among ``spec.num_clients``."""
    return _load_federation(spec.key())


@functools.lru_cache(maxsize=2)
def _load_federation(key: str) -> Federation:
    dataset_cfg, partition_cfg, num_clients, seed, root_size = json.loads(key)
    dataset = instantiate(OmegaConf.create(dataset_cfg))
    data = dataset.load(seed)
    if data.note:
        log.info("%s", data.note)
    labels = data.train.y.numpy()
    if root_size >= len(labels):
        raise DataError(
            f"strategy.root_size={root_size}: must be below the {len(labels)} training "
            f"examples of {data.name}, which the clients need too"
        )
    # FLTrust's root set: drawn uniformly from the training data, removed from the clients'.
    order = np.random.default_rng(derive_seed(seed, Stream.ROOT)).permutation(len(labels))
    root_index = np.sort(order[:root_size])
    client_pool = np.sort(order[root_size:])
    partitioner = instantiate(OmegaConf.create(partition_cfg))(
        num_partitions=num_clients, seed=derive_seed(seed, Stream.PARTITION)
    )
    groups = data.train.groups  # natural clients (writers, roles), where the data set has them
    local = partition_indices(
        labels[client_pool],
        partitioner,
        seed=derive_seed(seed, Stream.PARTITION, 1),
        groups=None if groups is None else groups.numpy()[client_pool],
    )
    partitions = [client_pool[part] for part in local]
    root = None
    if root_size:
        index = torch.from_numpy(root_index)
        root = DataSplit(x=data.train.x[index], y=data.train.y[index])
    return Federation(data=data, partitions=partitions, root=root)
