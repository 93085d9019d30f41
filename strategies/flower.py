"""The one adapter between Flower's message-API strategies and Oleander's pure rules.

``RobustStrategy`` keeps Flower's ``FedAvg`` message flow (``Strategy.start`` drives it)
and overrides only client sampling (seeded, by client id) and ``aggregate_train``: the
replies are ordered by client id, stacked into an ``(n, d)`` matrix of updates (client
weights minus global weights), checked row by row, and handed to a rule from
``strategies``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import DEBUG, INFO
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from simulator.arrays import read_array, records_of, to_array
from simulator.seeding import numpy_generator, torch_generator
from strategies.base import Aggregate
from strategies.pipeline import accepts, aggregate

# Stream keys for derive_seed, so each kind of draw has its own stream.
SAMPLING_STREAM = 1
PREAGGREGATION_STREAM = 5

NUM_EXAMPLES_KEY = "num-examples"
MAX_EXAMPLES = 2**31  # a larger reported count is a malformed (or malicious) reply
TRAIN_LOSS_KEY = "train_loss"


@dataclass(frozen=True)
class ArrayLayout:
    """Names, shapes and dtypes of a model's arrays, to flatten and rebuild them."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]

    @classmethod
    def of(cls, record: ArrayRecord) -> ArrayLayout:
        # From each Array's own metadata: the global model is not decoded for this.
        arrays = [record[k] for k in record]
        return cls(
            keys=tuple(record.keys()),
            shapes=tuple(tuple(int(n) for n in a.shape) for a in arrays),
            dtypes=tuple(np.dtype(a.dtype) for a in arrays),
        )

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def flatten(self, record: ArrayRecord, out: np.ndarray | None = None) -> torch.Tensor:
        """One float32 vector of every array in layout order; ``ValueError`` if mis-shaped.

        ``out``: a float32 array of shape ``(d,)`` to write into (a row of the round's
        update matrix) instead of a new one.
        """
        if set(record.keys()) != set(self.keys):
            missing = sorted(set(self.keys) - set(record.keys()))
            extra = sorted(set(record.keys()) - set(self.keys))
            raise ValueError(f"arrays do not match the model: missing {missing}, extra {extra}")
        parts = []
        for key, shape, dtype in zip(self.keys, self.shapes, self.dtypes, strict=True):
            try:
                array = read_array(record[key], dtype, shape)
            except (TypeError, ValueError) as error:  # e.g. not numpy-serialised
                raise ValueError(f"array {key!r} cannot be read: {error}") from None
            if array.shape != shape:
                raise ValueError(f"array {key!r} has shape {array.shape}, the model {shape}")
            parts.append(array.reshape(-1))
        if not parts:
            return torch.zeros(0)
        # One copy, into float32: the parts may be read-only views of the message's bytes.
        try:
            if out is None:
                flat = np.concatenate(parts, dtype=np.float32, casting="unsafe")
            else:
                flat = np.concatenate(parts, out=out, casting="unsafe")
        except (TypeError, ValueError) as error:  # e.g. an array of strings
            raise ValueError(f"arrays cannot be read as numbers: {error}") from None
        return torch.from_numpy(flat)  # shape: (d,)

    def unflatten(self, vector: torch.Tensor) -> ArrayRecord:
        """Inverse of ``flatten``, casting each array back to its own dtype."""
        flat = vector.detach().to("cpu", torch.float32).numpy()
        record = ArrayRecord()
        offset = 0
        for key, shape, dtype in zip(self.keys, self.shapes, self.dtypes, strict=True):
            size = int(np.prod(shape))
            record[key] = to_array(flat[offset : offset + size].reshape(shape).astype(dtype))
            offset += size
        return record


@dataclass
class RoundReport:
    """What one round's aggregation saw and did, for ``clients.csv`` and ``rounds.csv``."""

    server_round: int
    sampled: list[int]
    client_ids: list[int] = field(default_factory=list)  # accepted rows, ascending id
    num_examples: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    update_norms: list[float] = field(default_factory=list)
    weights: list[float] | None = None
    failures: dict[int, str] = field(default_factory=dict)  # client id -> error reason
    rejected: dict[int, str] = field(default_factory=dict)  # client id -> why
    aggregation_seconds: float = 0.0
    note: str = ""
    attack_failed: bool = False

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text

    @property
    def train_loss(self) -> float:
        """Example-weighted mean training loss over the accepted replies (NaN if none)."""
        total = sum(self.num_examples)
        if not total:
            return float("nan")
        pairs = zip(self.num_examples, self.train_losses, strict=True)
        return sum(n * loss for n, loss in pairs) / total


class RoundObserver(Protocol):
    """Receives what the strategy saw each round (the results recorder implements it)."""

    def on_round_start(self, server_round: int) -> None: ...

    def on_aggregated(self, report: RoundReport) -> None: ...


def sample_clients(seed: int, server_round: int, num_clients: int, per_round: int) -> list[int]:
    """The client ids that train in a round: a seeded draw without replacement, ascending."""
    if per_round >= num_clients:
        return list(range(num_clients))
    rng = numpy_generator(seed, SAMPLING_STREAM, server_round)
    return sorted(int(c) for c in rng.choice(num_clients, size=per_round, replace=False))


class RobustStrategy(FedAvg):
    """Flower's FedAvg message flow around a robust rule over stacked client updates.

    Parameters
    ----------
    rule : Callable[..., Aggregate]
        A function from ``strategies`` (usually a Hydra partial carrying its
        hyperparameters) called as ``rule(updates, **extra)``.
    node_to_client : Mapping[int, int]
        Flower node id -> Oleander client id (found by the ServerApp at start).
    clients_per_round : int
        Clients sampled each round (seeded by ``(seed, round)``).
    seed : int
        Run seed.
    server_lr : float (default: 1.0)
        The global model moves by ``server_lr`` times the aggregated update.
    weight_by_examples : bool (default: False)
        Pass the clients' reported example counts to the rule as ``weights`` (FedAvg).
        Off for robust rules: the counts are attacker-controlled.
    device : str (default: "cpu")
        Where the update matrix is stacked and aggregated.
    observer : RoundObserver | None (default: None)
        Told when each round starts and what its aggregation did.
    name : str (default: "fedavg")
        The rule's name, for logs and results.
    num_malicious : int (default: 0)
        The number of attackers the rule is told (``f``), for rules that take it.
    pre : Sequence[Callable] (default: ())
        Pre-aggregation steps (nearest-neighbour mixing, bucketing) applied in order.
    server_update_fn : Callable[[int, ArrayRecord], torch.Tensor] | None
        The server's own update for a round (FLTrust's root-set training), asked for
        only when the rule takes ``server_update``.
    root_size : int (default: 0)
        Examples of the training data the server holds as its root set (FLTrust); the
        run removes them from the clients' data and builds ``server_update_fn``.
    adversary : Callable | None (default: None)
        The colluding adversary (``simulator.adversary.Adversary``): given the round's
        ``(n, d)`` updates and their client ids, returns the matrix with its clients'
        rows crafted. It runs after honest rows are checked and before the rule.
    """

    def __init__(
        self,
        rule: Callable[..., Aggregate],
        *,
        node_to_client: Mapping[int, int],
        clients_per_round: int,
        seed: int,
        server_lr: float = 1.0,
        weight_by_examples: bool = False,
        device: str = "cpu",
        observer: RoundObserver | None = None,
        name: str = "fedavg",
        num_malicious: int = 0,
        pre: Sequence[Callable[..., Any]] = (),
        server_update_fn: Callable[[int, ArrayRecord], torch.Tensor] | None = None,
        root_size: int = 0,
        adversary: Callable[[torch.Tensor, list[int], int], torch.Tensor] | None = None,
    ) -> None:
        num_clients = len(node_to_client)
        super().__init__(
            fraction_train=clients_per_round / num_clients,
            fraction_evaluate=0.0,  # evaluation is centralised, on the server's test set
            min_train_nodes=clients_per_round,
            min_evaluate_nodes=0,
            min_available_nodes=num_clients,
        )
        self.rule = rule
        self.name = name
        self.node_to_client = dict(node_to_client)
        self.client_to_node = {c: n for n, c in self.node_to_client.items()}
        self.num_clients = num_clients
        self.clients_per_round = clients_per_round
        self.seed = seed
        self.server_lr = server_lr
        self.weight_by_examples = weight_by_examples
        self.device = torch.device(device)
        self.observer = observer
        self.num_malicious = num_malicious
        self.pre = tuple(pre)
        self.server_update_fn = server_update_fn
        self.root_size = root_size
        self.adversary = adversary
        steps = (*self.pre, rule)
        self._needs_server_update = any(accepts(step, "server_update") for step in steps)
        if self._needs_server_update and server_update_fn is None:
            raise ValueError(f"strategy={name} needs the server's own update (a root set)")
        self._center: torch.Tensor | None = None  # previous aggregate (centered clipping)
        # Rounds already done before ``start`` (a resumed run): Flower's loop counts from 1,
        # every seed and record uses ``round_offset + server_round``.
        self.round_offset = 0
        self._global: ArrayRecord | None = None
        self._sampled: list[int] = []

    def summary(self) -> None:
        log(INFO, "\t├──> Rule: %s, server lr %s", self.name, self.server_lr)
        log(INFO, "\t└──> Clients: %d per round of %d", self.clients_per_round, self.num_clients)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the global model to this round's seeded sample of clients."""
        server_round += self.round_offset
        if self.observer is not None:
            self.observer.on_round_start(server_round)
        self._global = arrays
        self._sampled = sample_clients(
            self.seed, server_round, self.num_clients, self.clients_per_round
        )
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        nodes = [self.client_to_node[c] for c in self._sampled]
        return self._construct_messages(record, nodes, MessageType.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Stack, check and aggregate the replies; ``(None, None)`` keeps the global model."""
        start = time.perf_counter()
        server_round += self.round_offset
        if self._global is None:
            raise RuntimeError("aggregate_train called before configure_train")
        report = RoundReport(server_round=server_round, sampled=list(self._sampled))
        layout = ArrayLayout.of(self._global)
        replies = list(replies)
        # Every reply is read straight into its row of one matrix: no per-reply vectors.
        buffer = np.empty((len(replies), layout.size), dtype=np.float32)
        rows: dict[int, tuple[int, int, float]] = {}  # client -> (row of buffer, count, loss)
        sampled = set(self._sampled)
        for message in replies:
            client = self.node_to_client.get(message.metadata.src_node_id)
            if client is None or client not in sampled or client in rows:
                # Not a node this round asked, or a second reply: never aggregated.
                key = -1 if client is None else client
                report.rejected.setdefault(key, "reply from a node not sampled this round")
                continue
            if message.has_error():
                report.failures[client] = message.error.reason
                continue
            slot = len(rows)
            try:
                rows[client] = (slot, *self._parse_reply(message.content, layout, buffer[slot]))
            except ValueError as err:
                report.rejected[client] = str(err)

        arrays = metrics = None
        if rows:
            global_vector = layout.flatten(self._global).to(self.device)
            order = sorted(rows)  # results never depend on reply order
            slots = [rows[c][0] for c in order]
            # shape: (n, d); replies usually arrive in client order: then no gather is needed
            matrix = buffer[: len(slots)] if slots == list(range(len(slots))) else buffer[slots]
            updates = torch.from_numpy(matrix).to(self.device)
            updates -= global_vector
            updates, order = self._drop_non_finite(updates, order, report)
            if order and self.adversary is not None:
                updates, order = self._attack(updates, order, report)
            if order:
                report.client_ids = order
                report.num_examples = [rows[c][1] for c in order]
                report.train_losses = [rows[c][2] for c in order]
                report.update_norms = torch.linalg.vector_norm(updates, dim=1).tolist()
                arrays = self._aggregate(updates, report, global_vector, layout)
        if arrays is not None:
            metrics = MetricRecord({TRAIN_LOSS_KEY: report.train_loss})
        elif not report.note:
            report.add_note("no usable reply: global model kept")
        report.aggregation_seconds = time.perf_counter() - start
        if self.observer is not None:
            self.observer.on_aggregated(report)
        return arrays, metrics

    @staticmethod
    def _drop_non_finite(
        updates: torch.Tensor, order: list[int], report: RoundReport
    ) -> tuple[torch.Tensor, list[int]]:
        """Rows with NaN or infinity are rejected (recorded with the reason), never aggregated."""
        # A row's max and min propagate NaN and are infinite if any value is: no (n, d)
        # temporary (a bool mask, or a float64 copy for an overflow-free sum).
        finite = (
            torch.isfinite(updates.amax(dim=1)) & torch.isfinite(updates.amin(dim=1))
        ).tolist()
        for client, ok in zip(order, finite, strict=True):
            if not ok:
                report.rejected[client] = "update has non-finite values"
        keep = [i for i, ok in enumerate(finite) if ok]
        if len(keep) == len(order):
            return updates, order
        return updates[keep], [order[i] for i in keep]

    def _attack(
        self, updates: torch.Tensor, order: list[int], report: RoundReport
    ) -> tuple[torch.Tensor, list[int]]:
        """Let the colluding adversary rewrite its rows; its failures are recorded, not fatal."""
        assert self.adversary is not None
        try:
            crafted = self.adversary(updates, order, report.server_round)
        except Exception as error:  # a failing attack is recorded, never a crash
            log(DEBUG, "attack failed in round %d", report.server_round, exc_info=True)
            report.add_note(f"attack failed ({type(error).__name__}: {error}): honest updates sent")
            report.attack_failed = True
            return updates, order
        return self._drop_non_finite(crafted, order, report)

    def state(self) -> dict[str, Any]:
        """What a checkpoint must keep for the next rounds to be as if never interrupted."""
        return {"center": None if self._center is None else self._center.cpu()}

    def load_state(self, state: dict[str, Any], rounds_done: int) -> None:
        center = state.get("center")
        self._center = None if center is None else center.to(self.device)
        self.round_offset = rounds_done

    def _aggregate(
        self,
        updates: torch.Tensor,
        report: RoundReport,
        global_vector: torch.Tensor,
        layout: ArrayLayout,
    ) -> ArrayRecord | None:
        available: dict[str, Any] = {
            "num_malicious": self.num_malicious,
            "generator": torch_generator(self.seed, PREAGGREGATION_STREAM, report.server_round),
            "center": self._center,
        }
        if self.weight_by_examples:
            counts = torch.tensor(report.num_examples, dtype=torch.float64)
            available["weights"] = (counts / counts.sum()).to(updates.device, updates.dtype)
        if self._needs_server_update:
            assert self.server_update_fn is not None and self._global is not None
            server_update = self.server_update_fn(report.server_round, self._global)
            available["server_update"] = server_update.to(updates.device, updates.dtype)
        try:
            result = aggregate(updates, self.rule, self.pre, **available)
        except ValueError as error:  # e.g. too few replies left for the rule's precondition
            report.add_note(f"{self.name} could not aggregate ({error}): global model kept")
            return None
        if not torch.isfinite(result.update).all():
            report.add_note("aggregate has non-finite values: global model kept")
            return None
        if result.weights is not None:
            report.weights = result.weights.detach().cpu().tolist()
        self._center = result.update.detach()
        return layout.unflatten(global_vector + self.server_lr * result.update)

    @staticmethod
    def _parse_reply(
        content: RecordDict, layout: ArrayLayout, out: np.ndarray
    ) -> tuple[int, float]:
        """(example count, training loss) of one reply, its flat weights written to ``out``;
        or ``ValueError``.

        Everything in a reply is client-controlled: anything malformed is a rejection
        with a reason, never an exception that escapes the round.
        """
        arrays = records_of(content, ArrayRecord)
        if len(arrays) != 1:
            raise ValueError(f"expected 1 ArrayRecord, got {len(arrays)}")
        metric_records = records_of(content, MetricRecord)
        if len(metric_records) != 1:
            raise ValueError(f"expected 1 MetricRecord, got {len(metric_records)}")
        layout.flatten(arrays[0], out=out)
        metrics = metric_records[0]
        count = metrics.get(NUM_EXAMPLES_KEY)
        if not _is_real(count) or not 1 <= count <= MAX_EXAMPLES or count != int(count):  # type: ignore[operator]
            raise ValueError(f"{NUM_EXAMPLES_KEY}={count!r} is not a whole count in [1, 2^31]")
        loss = metrics.get(TRAIN_LOSS_KEY, float("nan"))
        if not _is_real(loss, allow_nan=True):
            raise ValueError(f"{TRAIN_LOSS_KEY}={loss!r} is not a number")
        return int(count), float(loss)  # type: ignore[arg-type]


def _is_real(value: object, allow_nan: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (allow_nan and math.isnan(value)) or math.isfinite(value)
