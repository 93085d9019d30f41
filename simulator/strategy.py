"""The one adapter between Flower's message-API strategies and Oleander's defences.

``OleanderStrategy`` keeps Flower's ``FedAvg`` message flow (``Strategy.start`` drives it)
and overrides two steps: ``configure_train`` samples the round's clients by client id
(seeded), and ``aggregate_train`` unpacks the replies into the ``(n, d)`` update matrix
(``simulator.replies``), lets the colluding adversary rewrite its rows, runs the defence
(``strategies.pipeline.Defence``) and packs the step into the new global model. Everything
a defence remembers lives in the defence's own state, saved in the checkpoint.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from logging import DEBUG, INFO
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from simulator.arrays import ArrayLayout
from simulator.protocol import TRAIN_LOSS, train_content
from simulator.replies import RoundUpdates, unpack_train_replies
from simulator.results import RoundObserver, RoundReport
from simulator.seeding import Stream, numpy_generator
from strategies.pipeline import Defence, accepts

# (updates, client ids, round, global_model=flat global vector) -> updates
Adversary = Callable[..., torch.Tensor]


def sample_clients(seed: int, server_round: int, num_clients: int, per_round: int) -> list[int]:
    """The client ids that train in a round: a seeded draw without replacement, ascending."""
    if per_round >= num_clients:
        return list(range(num_clients))
    rng = numpy_generator(seed, Stream.SAMPLING, server_round)
    return sorted(int(c) for c in rng.choice(num_clients, size=per_round, replace=False))


class OleanderStrategy(FedAvg):
    """Flower's FedAvg message flow around an Oleander defence.

    Parameters
    ----------
    defence : Defence
        Detection, pre-aggregation, the rule and post-processing, with their state.
    node_to_client : Mapping[int, int]
        Flower node id -> Oleander client id (found by the ServerApp at start).
    clients_per_round : int
        Clients sampled each round (seeded by ``(seed, round)``).
    seed : int
        Run seed.
    adversary : Callable | None (default: None)
        The colluding adversary (``simulator.adversary.Adversary``): given the round's
        ``(n, d)`` updates, their client ids, the round and the ``global_model`` keyword
        (the flat global vector), returns the matrix with its clients' rows crafted. It
        runs after the replies are checked, before the defence. One that takes ``defend``
        is given the round's defence as a dry run (``Defence.preview`` with this round's
        inputs, on an ``(n, d)`` matrix in the round's row order).
    observer : RoundObserver | None (default: None)
        Told when each round starts and what its aggregation did.
    device : str (default: "cpu")
        Where the update matrix is built and aggregated.
    """

    def __init__(
        self,
        defence: Defence,
        *,
        node_to_client: Mapping[int, int],
        clients_per_round: int,
        seed: int,
        adversary: Adversary | None = None,
        observer: RoundObserver | None = None,
        device: str = "cpu",
    ) -> None:
        num_clients = len(node_to_client)
        super().__init__(
            fraction_train=clients_per_round / num_clients,
            fraction_evaluate=0.0,  # evaluation is centralised, on the server's test set
            min_train_nodes=clients_per_round,
            min_evaluate_nodes=0,
            min_available_nodes=num_clients,
        )
        self.defence = defence
        self.node_to_client = dict(node_to_client)
        self.client_to_node = {c: n for n, c in self.node_to_client.items()}
        self.clients_per_round = clients_per_round
        self.seed = seed
        self.adversary = adversary
        self.observer = observer
        self.device = torch.device(device)
        # Rounds already done before ``start`` (a resumed run): Flower's loop counts from 1,
        # every seed and record uses ``round_offset + server_round``.
        self.round_offset = 0
        self._global: ArrayRecord | None = None
        self._sampled: list[int] = []

    def summary(self) -> None:
        log(INFO, "\t├──> Defence: %s", self.defence.name)
        total = len(self.node_to_client)
        log(INFO, "\t└──> Clients: %d per round of %d", self.clients_per_round, total)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Send the global model to this round's seeded sample of clients."""
        server_round += self.round_offset
        if self.observer is not None:
            self.observer.on_round_start(server_round)
        self._global = arrays
        self._sampled = sample_clients(
            self.seed, server_round, len(self.node_to_client), self.clients_per_round
        )
        nodes = [self.client_to_node[c] for c in self._sampled]
        content = train_content(arrays, config, server_round)
        return self._construct_messages(content, nodes, MessageType.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Unpack, attack, defend; ``(None, None)`` keeps the global model."""
        start = time.perf_counter()
        server_round += self.round_offset
        if self._global is None:
            raise RuntimeError("aggregate_train called before configure_train")
        layout = ArrayLayout.of(self._global)
        global_vector = layout.flatten(self._global).to(self.device)
        received = unpack_train_replies(
            replies,
            layout=layout,
            global_vector=global_vector,
            node_to_client=self.node_to_client,
            sampled=self._sampled,
        )
        report = RoundReport(
            server_round=server_round,
            sampled=list(self._sampled),
            failures=received.failures,
            rejected=received.rejected,
        )
        if received.client_ids and self.adversary is not None:
            self._attack(received, report, global_vector)
        arrays = metrics = None
        if received.client_ids:
            report.client_ids = received.client_ids
            report.num_examples = received.num_examples
            report.train_losses = received.train_losses
            report.update_norms = torch.linalg.vector_norm(received.updates, dim=1).tolist()
            outcome = self.defence(
                received.updates,
                received.client_ids,
                server_round=server_round,
                num_examples=received.num_examples,
                global_model=global_vector,
            )
            if self.defence.detect:
                report.flagged = outcome.flagged
            if outcome.weights is not None:
                report.weights = outcome.weights.detach().cpu().tolist()
            if outcome.step is None:
                report.add_note(outcome.note)
            else:
                arrays = layout.unflatten(global_vector + outcome.step)
                metrics = MetricRecord({TRAIN_LOSS: report.train_loss})
        if arrays is None and not report.note:
            report.add_note("no usable reply: global model kept")
        report.aggregation_seconds = time.perf_counter() - start
        if self.observer is not None:
            self.observer.on_aggregated(report)
        return arrays, metrics

    def _attack(
        self, received: RoundUpdates, report: RoundReport, global_vector: torch.Tensor
    ) -> None:
        """Let the colluding adversary rewrite its rows; its failures are recorded, not fatal.

        An adversary that takes ``defend`` may run this round's defence on candidate rows
        (``Defence.preview``: the same inputs and generators as the round, no state kept).
        """
        assert self.adversary is not None
        extra: dict[str, Any] = {}
        if accepts(self.adversary, "defend"):
            extra["defend"] = functools.partial(
                self.defence.preview,
                client_ids=received.client_ids,
                server_round=report.server_round,
                num_examples=received.num_examples,
                global_model=global_vector,
            )
        try:
            received.updates = self.adversary(
                received.updates, received.client_ids, report.server_round,
                global_model=global_vector, **extra,
            )  # fmt: skip
        except Exception as error:  # a failing attack is recorded, never a crash
            log(DEBUG, "attack failed in round %d", report.server_round, exc_info=True)
            report.add_note(f"attack failed ({type(error).__name__}: {error}): honest updates sent")
            report.attack_failed = True
            return
        report.effective = dict(getattr(self.adversary, "effective", {}))
        received.drop_non_finite()

    def state(self) -> dict[str, Any]:
        """What a checkpoint must keep for the next rounds to be as if never interrupted."""
        return {"defence": self.defence.state.state_dict()}

    def load_state(self, state: Mapping[str, Any], rounds_done: int) -> None:
        self.defence.state.load_state_dict(state["defence"])
        self.round_offset = rounds_done
