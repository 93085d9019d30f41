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

from simulator.data import DataSplit, LoadedData
from simulator.partition import partition_indices
from simulator.seeding import derive_seed

log = logging.getLogger("oleander")

PARTITION_STREAM = 2


@dataclass(frozen=True)
class FederationSpec:
    """Everything that decides the data and who holds which part of it."""

    dataset: dict[str, Any]
    partition: dict[str, Any]
    num_clients: int
    seed: int

    def key(self) -> str:
        return json.dumps(
            [self.dataset, self.partition, self.num_clients, self.seed], sort_keys=True
        )


@dataclass
class Federation:
    """The loaded data set and each client's indices into its training split."""

    data: LoadedData
    partitions: list[np.ndarray]
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
    dataset_cfg, partition_cfg, num_clients, seed = json.loads(key)
    dataset = instantiate(OmegaConf.create(dataset_cfg))
    data = dataset.load(seed)
    if data.note:
        log.info("%s", data.note)
    partitioner = instantiate(OmegaConf.create(partition_cfg))(
        num_partitions=num_clients, seed=derive_seed(seed, PARTITION_STREAM)
    )
    partitions = partition_indices(
        data.train.y.numpy(), partitioner, seed=derive_seed(seed, PARTITION_STREAM, 1)
    )
    return Federation(data=data, partitions=partitions)
