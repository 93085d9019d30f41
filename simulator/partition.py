"""Partitioners that split a training set among clients: flwr-datasets' and Fang et al.'s.

Every factory here is a Hydra ``_target_`` (with ``_partial_: true``): the YAML holds the
hyperparameters, and the one call site adds ``num_partitions`` and ``seed``::

    partitioner = hydra.utils.instantiate(cfg.partition)(num_partitions=10, seed=0)
    indices = partition_indices(train_labels, partitioner, seed=0)

Factories validate their own hyperparameters eagerly (a ``ValueError`` naming the key, the
value and the constraint), so a config is checked before any data loads.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.checks import check_bool, check_float, check_int
from simulator.lazy_imports import defer_flwr_datasets_plotting
from simulator.seeding import Stream, derive_seed

if TYPE_CHECKING:
    import datasets
    from flwr_datasets.partitioner import Partitioner

# flwr-datasets (and the datasets library under it: about 0.5 s to import on two cores)
# is imported only by the partitioners that are its own (dirichlet, shard); iid, bias and
# natural are plain numpy.

__all__ = [
    "BiasPartitioner",
    "NaturalPartitioner",
    "dirichlet",
    "iid",
    "natural",
    "partition_indices",
    "shard",
]


# --------------------------------------------------------------------------- factories


class OwnPartitioner:
    """What Oleander's own partitioners share with flwr-datasets' ``Partitioner``: a data
    set to split (``dataset``) and ``load_partition``; their split is plain numpy."""

    _num_partitions: int
    _partition_to_indices: list[np.ndarray] | None = None
    _dataset: Any = None

    @property
    def num_partitions(self) -> int:
        """Total number of partitions."""
        return self._num_partitions

    @property
    def dataset(self) -> Any:
        if self._dataset is None:
            raise AttributeError("no data set assigned (assign one to `dataset` first)")
        return self._dataset

    @dataset.setter
    def dataset(self, value: Any) -> None:
        self._dataset = value

    def _check_partition_id(self, partition_id: int) -> None:
        if not 0 <= partition_id < self._num_partitions:
            raise ValueError(f"partition_id={partition_id}: must be in [0, {self._num_partitions})")


class IidPartitioner(OwnPartitioner):
    """Equal-size contiguous chunks of the rows (sizes differ by at most one, the larger
    first): flwr-datasets' ``IidPartitioner`` rule (``Dataset.shard(contiguous=True)``),
    in numpy. It has no randomness of its own: ``partition_indices`` shuffles the rows."""

    def __init__(self, num_partitions: int) -> None:
        self._num_partitions = check_int("num_partitions", num_partitions, 1)

    def split(self, num_rows: int) -> list[np.ndarray]:
        """Row positions ``0..num_rows-1`` of every partition."""
        return np.array_split(np.arange(num_rows, dtype=np.int64), self._num_partitions)

    def load_partition(self, partition_id: int) -> datasets.Dataset:
        self._check_partition_id(partition_id)
        return self.dataset.select(self.split(len(self.dataset))[partition_id])


def iid(num_partitions: int, seed: int) -> IidPartitioner:
    """Uniformly random, equal-size partitions (sizes differ by at most one).

    Contiguous chunks of the rows, as flwr-datasets' ``IidPartitioner`` cuts them, with
    no seed of its own: ``partition_indices`` shuffles the rows first, which is what makes
    it random. ``seed`` is accepted so every factory has the same call signature.
    """
    del seed
    return IidPartitioner(num_partitions=num_partitions)


def dirichlet(
    num_partitions: int,
    seed: int,
    alpha: float = 0.5,
    min_partition_size: int = 2,
    self_balancing: bool = False,
) -> Partitioner:
    """Label-skewed partitions: each class is split among clients by proportions ~ Dir(alpha).

    As flwr-datasets defines it (Yurochkin et al. 2019): smaller ``alpha`` means more skew.
    When some client gets fewer than ``min_partition_size`` examples the draw is repeated,
    up to 10 times, after which flwr-datasets raises ``ValueError``.

    Parameters
    ----------
    num_partitions : int
        Number of clients.
    seed : int
        Run seed; the partitioner's own generator is seeded from it.
    alpha : float (default: 0.5)
        Dirichlet concentration, > 0.
    min_partition_size : int (default: 2)
        Smallest acceptable client data set, >= 0.
    self_balancing : bool (default: False)
        Stop giving a client more examples once it holds more than the average (the
        original paper's code does this; it is not in the paper).
    """
    num_partitions = check_int("num_partitions", num_partitions, 1)
    alpha = check_float("alpha", alpha)
    if alpha <= 0:
        raise ValueError(f"alpha={alpha!r}: must be > 0")
    min_partition_size = check_int("min_partition_size", min_partition_size, 0)
    defer_flwr_datasets_plotting()
    from flwr_datasets.partitioner import DirichletPartitioner

    return DirichletPartitioner(
        num_partitions=num_partitions,
        partition_by="label",
        alpha=alpha,
        min_partition_size=min_partition_size,
        self_balancing=check_bool("self_balancing", self_balancing),
        shuffle=True,
        seed=derive_seed(seed, Stream.DIRICHLET),
    )


def shard(
    num_partitions: int,
    seed: int,
    num_shards_per_partition: int | None = 2,
    shard_size: int | None = None,
) -> Partitioner:
    """Pathological non-IID split of McMahan et al. 2017, as flwr-datasets defines it.

    The rows are sorted by label and cut into shards of ``shard_size`` consecutive rows;
    each client gets ``num_shards_per_partition`` random shards, so it sees few classes.
    With ``shard_size=None`` the size is ``floor(N / (num_partitions *
    num_shards_per_partition))`` and the ``N mod (num_partitions * num_shards_per_partition)``
    left-over rows are dropped (flwr-datasets' behaviour): partitions then do not cover
    every index. With ``num_shards_per_partition=None``, ``shard_size`` is required and
    clients get as many whole shards as fit (some one more than others).

    Parameters
    ----------
    num_partitions : int
        Number of clients.
    seed : int
        Run seed; the partitioner's own generator is seeded from it.
    num_shards_per_partition : int | None (default: 2)
        Shards per client (McMahan et al.: 2 shards of 300 MNIST images, 100 clients).
    shard_size : int | None (default: None)
        Rows per shard; derived from the data set size when None.
    """
    num_partitions = check_int("num_partitions", num_partitions, 1)
    if num_shards_per_partition is not None:
        num_shards_per_partition = check_int(
            "num_shards_per_partition", num_shards_per_partition, 1
        )
    if shard_size is not None:
        shard_size = check_int("shard_size", shard_size, 1)
    if num_shards_per_partition is None and shard_size is None:
        raise ValueError(
            "num_shards_per_partition=None and shard_size=None: at least one of them must be set"
        )
    defer_flwr_datasets_plotting()
    from flwr_datasets.partitioner import ShardPartitioner

    return ShardPartitioner(
        num_partitions=num_partitions,
        partition_by="label",
        num_shards_per_partition=num_shards_per_partition,
        shard_size=shard_size,
        shuffle=True,
        seed=derive_seed(seed, Stream.SHARD),
    )


class BiasPartitioner(OwnPartitioner):
    """Bias-probability split of Fang et al. 2020 (also FLTrust, Cao et al. 2021).

    The clients are split into C groups, one per class, as evenly as possible (the first
    ``num_partitions mod C`` groups get one client more). Each example with label l goes
    to group l with probability q = ``bias``, otherwise to one of the other C-1 groups
    uniformly; then to a client of that group uniformly. Client ids are shuffled at the
    end so that, e.g., malicious clients drawn as ids 0..f-1 come from mixed groups.
    q = 1/C is IID; the papers use q = 0.5 for non-IID MNIST. Every example is assigned,
    so partitions are disjoint and cover the data set; a client may end up empty on a
    small data set (``partition_indices`` reports it).

    Fewer clients than classes would leave some groups without a client, so it is refused
    with ``ValueError`` (at construction when ``num_classes`` is given, else when the data
    set is assigned and C is read from the labels).

    Parameters
    ----------
    num_partitions : int
        Number of clients, >= C.
    seed : int
        Run seed; the assignment is a pure function of it and the labels.
    bias : float (default: 0.5)
        q, in [0, 1].
    num_classes : int | None (default: None)
        C; labels must be integers in [0, C). When None, C = max label + 1.
    partition_by : str (default: "label")
        Label column of the data set.
    """

    def __init__(
        self,
        num_partitions: int,
        seed: int,
        bias: float = 0.5,
        num_classes: int | None = None,
        partition_by: str = "label",
    ) -> None:
        self._num_partitions = check_int("num_partitions", num_partitions, 1)
        self._seed = int(seed)
        self._bias = check_float("bias", bias)
        if not 0.0 <= self._bias <= 1.0:
            raise ValueError(f"bias={bias!r}: must be in [0, 1]")
        self._num_classes = None
        if num_classes is not None:
            self._num_classes = check_int("num_classes", num_classes, 1)
            self._check_enough_partitions(self._num_classes)
        if not isinstance(partition_by, str) or not partition_by:
            raise ValueError(f"partition_by={partition_by!r}: must be a column name")
        self._partition_by = partition_by
        self._partition_to_indices: list[np.ndarray] | None = None
        self._groups: np.ndarray | None = None

    @property
    def bias(self) -> float:
        """q, the probability that an example goes to its own label's group."""
        return self._bias

    @property
    def groups(self) -> np.ndarray:
        """The class group of every partition id, shape ``(num_partitions,)``.

        Known once the split is computed (``assign`` or ``load_partition``); recorded so a
        run can say which groups, e.g., its malicious clients came from.
        """
        if self._groups is None:
            raise AttributeError("groups are known once the split is computed")
        return self._groups

    def load_partition(self, partition_id: int) -> datasets.Dataset:
        """Rows of ``self.dataset`` assigned to ``partition_id`` (computed once, for all)."""
        self._check_partition_id(partition_id)
        return self.dataset.select(self.partition_to_indices()[partition_id])

    def partition_to_indices(self) -> list[np.ndarray]:
        """Sorted row indices of ``self.dataset`` for every partition id."""
        if self._partition_to_indices is None:
            labels = self.dataset.with_format("arrow")[:][self._partition_by].to_numpy()
            self._partition_to_indices = self.assign(labels)
        return self._partition_to_indices

    def assign(self, labels: np.ndarray) -> list[np.ndarray]:
        """The bias split of ``labels`` (shape ``(N,)``): row indices for every partition.

        Pure numpy and independent of ``self.dataset``, so it is cheap to test on its own.
        """
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64, copy=False)
        if labels.size and labels.min() < 0:
            raise ValueError(f"labels must be >= 0, found {labels.min()}")
        num_classes = self._num_classes
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.size else 1
            self._check_enough_partitions(num_classes)
        elif labels.size and labels.max() >= num_classes:
            raise ValueError(
                f"num_classes={num_classes}: found label {labels.max()}, "
                f"labels must be in [0, {num_classes})"
            )

        n = labels.shape[0]
        rng = np.random.default_rng(derive_seed(self._seed, Stream.BIAS))
        # Groups of clients, one per class: sizes differ by at most one.
        group_sizes = np.full(num_classes, self._num_partitions // num_classes, dtype=np.int64)
        group_sizes[: self._num_partitions % num_classes] += 1
        group_starts = np.concatenate(([0], np.cumsum(group_sizes)[:-1]))
        # With probability q the own group, else one of the C-1 others uniformly:
        # label + 1 + U{0..C-2} (mod C) never hits the label itself.
        own = rng.random(n) < self._bias  # shape: (N,)
        other = (labels + 1 + rng.integers(0, max(num_classes - 1, 1), size=n)) % num_classes
        group = np.where(own, labels, other)  # shape: (N,)
        client = group_starts[group] + rng.integers(0, group_sizes[group])  # shape: (N,)
        # Shuffle client ids so that consecutive ids do not share a group.
        relabel = rng.permutation(self._num_partitions)
        partition = relabel[client]  # shape: (N,)
        groups = np.empty(self._num_partitions, dtype=np.int64)
        groups[relabel] = np.repeat(np.arange(num_classes), group_sizes)
        self._groups = groups

        order = np.argsort(partition, kind="stable")  # stable: indices stay sorted
        counts = np.bincount(partition, minlength=self._num_partitions)
        return np.split(order.astype(np.int64), np.cumsum(counts)[:-1])

    def _check_enough_partitions(self, num_classes: int) -> None:
        if self._num_partitions < num_classes:
            raise ValueError(
                f"num_partitions={self._num_partitions}: the bias split needs at "
                f"least one client per class group, i.e. >= num_classes={num_classes}"
            )


class NaturalPartitioner(OwnPartitioner):
    """One client per natural id: a FEMNIST writer, a Shakespeare speaking role.

    With every natural client taking part (``num_partitions`` equal to their number G),
    partition ``i`` holds the rows of the ``i``-th natural id in sorted order, which is
    flwr-datasets' ``NaturalIdPartitioner`` rule. With fewer, ``num_partitions`` of the G
    ids are drawn without replacement from the seed (then numbered in sorted order), and
    the other ids' rows are left unused; more than G is a ``ValueError``. Data sets
    without natural ids (MNIST, CIFAR) are refused by ``check_dataset`` before loading.

    Parameters
    ----------
    num_partitions : int
        Number of clients: the natural clients that take part, <= G.
    seed : int
        Run seed; the draw of the natural clients is a pure function of it.
    partition_by : str (default: "natural_id")
        Column of ``self.dataset`` with each row's natural id (for ``load_partition``).
    """

    def __init__(self, num_partitions: int, seed: int, partition_by: str = "natural_id") -> None:
        self._num_partitions = check_int("num_partitions", num_partitions, 1)
        self._seed = int(seed)
        if not isinstance(partition_by, str) or not partition_by:
            raise ValueError(f"partition_by={partition_by!r}: must be a column name")
        self._partition_by = partition_by
        self._partition_to_indices: list[np.ndarray] | None = None

    @staticmethod
    def check_dataset(dataset: object) -> None:
        """``ValueError`` unless ``dataset`` (a data set object, not loaded) has natural
        clients (its ``natural_client`` names what they are)."""
        if getattr(dataset, "natural_client", None) is None:
            name = getattr(dataset, "name", type(dataset).__name__)
            raise ValueError(
                f"partition=natural: dataset={name} has no natural clients (writers or "
                "speaking roles); use dataset=femnist or dataset=shakespeare, or another "
                "partition (iid, dirichlet, shard, bias)"
            )

    def load_partition(self, partition_id: int) -> datasets.Dataset:
        """Rows of ``self.dataset`` of the natural id behind ``partition_id``."""
        self._check_partition_id(partition_id)
        if self._partition_to_indices is None:
            column = self.dataset.with_format("arrow")[:][self._partition_by]
            ids = np.asarray(column.to_pylist(), dtype=object).astype(str)
            self._partition_to_indices = self.assign(np.unique(ids, return_inverse=True)[1])
        return self.dataset.select(self._partition_to_indices[partition_id])

    def assign(self, groups: np.ndarray) -> list[np.ndarray]:
        """Sorted row indices for every partition, from each row's natural client
        ``groups`` (ints; the distinct values, in order, are the natural ids)."""
        groups = np.asarray(groups)
        if groups.ndim != 1 or (groups.size and not np.issubdtype(groups.dtype, np.integer)):
            raise ValueError(
                f"groups must be one-dimensional ints, got {groups.dtype} {groups.shape}"
            )
        present, inverse = np.unique(groups, return_inverse=True)  # shape: (G,), (N,)
        available = len(present)
        if self._num_partitions > available:
            raise ValueError(
                f"num_partitions={self._num_partitions}: the training data have only "
                f"{available} natural clients (writers or roles); use at most that many clients"
            )
        rng = np.random.default_rng(derive_seed(self._seed, Stream.NATURAL))
        chosen = np.sort(rng.choice(available, size=self._num_partitions, replace=False))
        order = np.argsort(inverse, kind="stable")  # rows by natural client, in row order
        bounds = np.concatenate(([0], np.cumsum(np.bincount(inverse, minlength=available))))
        return [order[bounds[g] : bounds[g + 1]].astype(np.int64) for g in chosen]


def natural(num_partitions: int, seed: int) -> NaturalPartitioner:
    """One client per natural id (writer, speaking role); see ``NaturalPartitioner``."""
    return NaturalPartitioner(num_partitions=num_partitions, seed=seed)


# --------------------------------------------------------------------------- indices


def partition_indices(
    labels: np.ndarray,
    partitioner: Partitioner,
    seed: int,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split row indices ``0..N-1`` among clients with ``partitioner``.

    The rows are presented to the partitioner in a seeded random order, because
    flwr-datasets' ``IidPartitioner`` takes contiguous chunks (and other partitioners break
    ties by row order); the ``idx`` column carries each row's original index back.

    Parameters
    ----------
    labels : np.ndarray
        Integer labels, shape ``(N,)``.
    partitioner : Partitioner
        A fresh partitioner (a data set can be assigned to it only once).
    seed : int
        Run seed for the row shuffle.
    groups : np.ndarray | None (default: None)
        Each row's natural client, shape ``(N,)``, where the data set has them; the
        natural partitioner needs them.

    Returns
    -------
    list[np.ndarray]
        For every partition id, the sorted int64 original indices of its rows. They are
        disjoint; they cover every row except for the shard partitioner's left-overs.

    Raises
    ------
    ValueError
        When some partition is empty, or the partitioner cannot split this data.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    n = labels.shape[0]
    if isinstance(partitioner, NaturalPartitioner):
        if groups is None:
            raise ValueError(
                "partition=natural: the data set has no natural clients (writers or speaking "
                "roles); use dataset=femnist or dataset=shakespeare"
            )
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise ValueError(f"groups must have shape {labels.shape}, got {groups.shape}")
        # Natural clients are not drawn from the row order: no shuffle, no Arrow round trip.
        return _non_empty(partitioner.assign(groups), n, partitioner)
    order = np.random.default_rng(derive_seed(seed, Stream.PARTITION_SHUFFLE)).permutation(n)
    if isinstance(partitioner, IidPartitioner | BiasPartitioner):
        # Oleander's own splits: numpy on the shuffled rows, no round trip through Arrow.
        if n < partitioner.num_partitions:
            raise ValueError(
                f"{n} examples cannot fill {partitioner.num_partitions} partitions: "
                "use fewer clients"
            )
        if isinstance(partitioner, IidPartitioner):
            rows = partitioner.split(n)
        else:
            rows = partitioner.assign(labels[order].astype(np.int64))
        return _non_empty([np.sort(order[r]) for r in rows], n, partitioner)
    import datasets

    table = datasets.Dataset.from_dict(
        {"label": labels[order].astype(np.int64), "idx": order.astype(np.int64)}
    )
    partitioner.dataset = table
    with warnings.catch_warnings():
        # datasets' sort (ShardPartitioner sorts by label) trips a pyarrow deprecation notice.
        warnings.filterwarnings("ignore", message=".*null_placement", category=FutureWarning)
        try:
            num_partitions = partitioner.num_partitions  # after the assignment: some need it
        except ValueError as error:  # flwr-datasets' own checks (e.g. too few rows)
            raise ValueError(
                f"{type(partitioner).__name__} cannot split {n} examples: {error}"
            ) from error
        if n < num_partitions:
            raise ValueError(
                f"{n} examples cannot fill {num_partitions} partitions: use fewer clients"
            )
        result = [
            np.sort(
                partitioner.load_partition(pid)
                .with_format("arrow")[:]["idx"]
                .to_numpy()
                .astype(np.int64)
            )
            for pid in range(num_partitions)
        ]
    return _non_empty(result, n, partitioner)


def _non_empty(result: list[np.ndarray], n: int, partitioner: Any) -> list[np.ndarray]:
    """``result``, or a ``ValueError`` naming the first empty partition."""
    num_partitions = len(result)
    empty = [pid for pid, idx in enumerate(result) if idx.size == 0]
    if empty:
        raise ValueError(
            f"partition {empty[0]} of {num_partitions} is empty ({len(empty)} empty in all, "
            f"{n} examples, {type(partitioner).__name__}): use fewer clients, "
            "or a partition that spreads data more evenly (e.g. a larger alpha)"
        )
    return result
