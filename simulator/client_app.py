"""The Flower ClientApp every simulated client runs.

It answers two message types (``simulator.protocol``): ``query`` (which client am I:
the server maps Flower node ids to Oleander client ids this way, on any engine) and
``train`` (load the global weights, train on this client's partition, reply with weights,
example count and loss). Hyperparameters travel in the train message's ConfigRecord; the
data and the model architecture come from the ``ClientSpec`` the app was built with. The
training itself, honest or poisoned, is ``clients``' plain torch.

A fake client (``fake_clients=K``: ids after the real ones) holds no data and never
trains: it answers with the global weights unchanged (a zero update, which the colluding
adversary replaces), the real clients' mean example count (a nominal claim, so it is
never 0, which the server rejects, and blends in where clients are weighted by examples)
and a NaN loss (it trained on nothing; ``rounds.csv`` leaves it out of the training loss).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MessageType
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from clients.cohort import cohort_pays_off, supports_cohort, train_cohort
from clients.training import train
from simulator import protocol
from simulator.federation import Federation, FederationSpec, load_federation
from simulator.seeding import Stream, numpy_generator, torch_generator
from simulator.threat import ThreatModel

log = logging.getLogger("oleander")
# Context.state key of the global model a malicious client received at its last
# participation (Neurotoxin's previous global model).
PREVIOUS_GLOBAL = "oleander.previous_global"


@dataclass(frozen=True)
class ClientSpec:
    """What a client process needs to rebuild its data and model (plain, picklable)."""

    federation: FederationSpec
    model: dict[str, Any]
    seed: int
    threat: ThreatModel
    device: str = "cpu"
    torch_threads: int = 1
    poison: dict[str, Any] | None = None  # the data poisoning malicious clients apply
    failure_rate: float = 0.0  # share of train tasks that fail on purpose (faults)

    def poisons(self, client: int, server_round: int) -> bool:
        """Whether ``client`` trains on poisoned data in ``server_round``: a malicious real
        client, a client-side attack, a round inside the attack window."""
        return (
            self.poison is not None
            and client in self.threat.malicious
            and not self.threat.is_fake(client)
            and self.threat.active(server_round)
        )


class InjectedFailure(RuntimeError):
    """A client task failing on purpose (``faults.client_failure_rate``)."""


@functools.lru_cache(maxsize=4)
def _poisoning(poison_key: str) -> Any:
    return instantiate(OmegaConf.create(json.loads(poison_key)))


@functools.lru_cache(maxsize=4)
def _model(
    model_key: str, input_shape: tuple[int, ...], num_classes: int, device: str
) -> nn.Module:
    """One model object per process and architecture, reloaded with each message's weights."""
    factory = instantiate(OmegaConf.create(json.loads(model_key)))
    return factory(input_shape=input_shape, num_classes=num_classes).to(device)


def client_id_of(context: Context) -> int:
    """The Oleander client id of the node running this ClientApp."""
    return protocol.client_id_of(context.node_config)


def nominal_examples(federation: Federation) -> int:
    """The example count a fake client claims: the real clients' mean, rounded half up."""
    total = sum(len(part) for part in federation.partitions)
    return max(1, (2 * total + federation.num_clients) // (2 * federation.num_clients))


def injected_failure(spec: ClientSpec, client: int, server_round: int) -> bool:
    """Whether ``faults.client_failure_rate`` makes this client's task fail this round."""
    if not spec.failure_rate:
        return False
    draw = numpy_generator(spec.seed, Stream.FAULT, server_round, client).random()
    return bool(draw < spec.failure_rate)


class OleanderClientApp(ClientApp):
    """Flower's ClientApp, plus ``train_many`` for engines that hold a round's messages at once.

    ``train_many`` answers the honest train messages that share one payload (the global
    weights and the recipe) with ``clients.cohort.train_cohort``, which equals training
    them one at a time to floating-point rounding. Messages it leaves out (queries,
    poisoning clients, injected failures, models it cannot batch) go through the
    ordinary handlers. With mods, nothing is batched: a mod must see every message.
    """

    def __init__(self, spec: ClientSpec, mods: list[Mod] | None = None) -> None:
        super().__init__(mods=mods)
        self.spec = spec
        self.batchable = not mods
        # torch threads per task; an engine's worker process pins its own (one each).
        self.threads = spec.torch_threads
        self._last_global: tuple[ArrayRecord, dict[str, torch.Tensor]] | None = None

    def global_weights(self, arrays: ArrayRecord) -> dict[str, torch.Tensor]:
        """The weights a train message carries, decoded once per round.

        The messages of a round share one ArrayRecord (in a worker too: pickle keeps the
        sharing within a chunk), so the last one decoded is kept, with the record itself,
        which keeps its identity from being reused. Callers must not modify the tensors.
        """
        if self._last_global is not None and self._last_global[0] is arrays:
            return self._last_global[1]
        state = arrays.to_torch_state_dict()
        self._last_global = (arrays, state)
        return state

    def _setup(self) -> tuple[Federation, nn.Module]:
        spec = self.spec
        torch.set_num_threads(self.threads)
        federation = load_federation(spec.federation)
        model = _model(
            json.dumps(spec.model, sort_keys=True),
            tuple(federation.data.input_shape),
            federation.data.num_classes,
            spec.device,
        )
        return federation, model

    def train_many(
        self, batch: Sequence[tuple[Message, Context]], *, force: bool = False
    ) -> dict[int, Message]:
        """Replies, by position in ``batch``, for the messages trained as one cohort.

        ``force`` batches every model ``supports_cohort`` accepts; otherwise only those
        where batching pays off on this device (``cohort_pays_off``).
        """
        if not self.batchable:
            return {}
        groups: dict[tuple[int, int], list[int]] = {}  # (content object, round) -> positions
        rounds: dict[int, int | None] = {}  # content object -> its round (None: malformed)
        for position, (message, context) in enumerate(batch):
            if message.metadata.message_type != MessageType.TRAIN:
                continue
            # Messages of one round share their content object (FedAvg._construct_messages).
            key = id(message.content)
            if key not in rounds:
                try:
                    rounds[key] = protocol.round_of(protocol.train_payload(message)[1])
                except Exception:  # malformed: the ordinary handler replies with the error
                    rounds[key] = None
            server_round = rounds[key]
            client = client_id_of(context)
            if server_round is None or injected_failure(self.spec, client, server_round):
                continue
            if self.spec.poisons(client, server_round) or self.spec.threat.is_fake(client):
                continue  # a poisoning or fake client keeps its own code path
            groups.setdefault((key, server_round), []).append(position)
        replies: dict[int, Message] = {}
        for (_, server_round), positions in groups.items():
            if len(positions) > 1:
                replies.update(self._train_group(batch, positions, server_round, force))
        return replies

    def _train_group(
        self,
        batch: Sequence[tuple[Message, Context]],
        positions: list[int],
        server_round: int,
        force: bool,
    ) -> dict[int, Message]:
        spec = self.spec
        try:
            federation, model = self._setup()
            if not supports_cohort(model) or not (force or cohort_pays_off(model, spec.device)):
                return {}
            # A client without examples is left to the handler, which reports it.
            positions = [
                p for p in positions if len(federation.partitions[client_id_of(batch[p][1])]) > 0
            ]
            if len(positions) < 2:
                return {}
            arrays, config = protocol.train_payload(batch[positions[0]][0])
            model.load_state_dict(self.global_weights(arrays))
            clients = [client_id_of(batch[p][1]) for p in positions]
            indices = [torch.from_numpy(federation.partitions[c]) for c in clients]
            result = train_cohort(
                model,
                federation.data.train.x,
                federation.data.train.y,
                indices,
                protocol.parse_train_config(config),
                [torch_generator(spec.seed, Stream.TRAIN, server_round, c) for c in clients],
                spec.device,
            )
            return {
                p: protocol.train_reply(
                    batch[p][0],
                    {k: v.cpu() for k, v in result.state_of(i).items()},
                    len(indices[i]),
                    result.train_losses[i],
                )
                for i, p in enumerate(positions)
            }
        except Exception:  # the ordinary handlers run these messages and report any error
            log.warning("cohort training failed; training one client at a time", exc_info=True)
            return {}


def make_client_app(spec: ClientSpec, mods: list[Mod] | None = None) -> OleanderClientApp:
    """Build the ClientApp for ``spec`` (a fresh one in every process that needs it).

    ``mods`` are Flower ClientApp mods wrapped around every handler.
    """
    app = OleanderClientApp(spec, mods=mods)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        return protocol.identity_reply(message, client_id_of(context))

    @app.train()
    def train_handler(message: Message, context: Context) -> Message:
        client = client_id_of(context)
        arrays, config = protocol.train_payload(message)
        server_round = protocol.round_of(config)
        if injected_failure(spec, client, server_round):
            raise InjectedFailure(f"client {client} failed on purpose in round {server_round}")
        federation, model = app._setup()
        sent = app.global_weights(arrays)
        if spec.threat.is_fake(client):  # no data, no training: the global weights back
            return protocol.train_reply(message, sent, nominal_examples(federation), math.nan)
        data = federation.client_data(client)
        model.load_state_dict(sent)
        generator = torch_generator(spec.seed, Stream.TRAIN, server_round, client)
        x, y, poison, after_step = data.x, data.y, None, None
        if spec.poisons(client, server_round):
            poison = _poisoning(json.dumps(spec.poison, sort_keys=True))
            train_set = federation.data.train
            poison.prepare(train_set.x, train_set.y, torch_generator(spec.seed, Stream.EDGE_CASE))
            x, y = poison.poison_data(
                x,
                y,
                federation.data.num_classes,
                rank=spec.threat.malicious_clients.index(client),
                generator=torch_generator(spec.seed, Stream.POISON, client),
            )
            previous = None
            if poison.needs_previous_global:
                # Node state, kept by Flower's runtimes (and the inline engine) across rounds.
                kept = context.state.get(PREVIOUS_GLOBAL)
                previous = kept.to_torch_state_dict() if isinstance(kept, ArrayRecord) else None
            after_step = poison.step_hook(model, sent, previous)
        stats = train(
            model,
            x,
            y,
            protocol.parse_train_config(config),
            generator,
            spec.device,
            after_step=after_step,
        )
        if poison is not None and poison.needs_previous_global:
            context.state[PREVIOUS_GLOBAL] = arrays  # after training: a failed task keeps none
        state = model.state_dict()
        if poison is not None and poison.boost != 1:
            # Model replacement: send global + boost * (trained - global).
            state = {k: sent[k] + poison.boost * (v.cpu() - sent[k]) for k, v in state.items()}
        # The client's own example count: poisoning that adds examples (the edge case)
        # does not let the client claim more (it would weigh more where counts weight).
        return protocol.train_reply(message, state, len(data.y), stats["train_loss"])

    return app


# The ClientApp Flower's runtimes load (pyproject.toml: clientapp = "simulator.client_app:app").
app = ClientApp()


@functools.lru_cache(maxsize=2)
def _app_for(run_config_key: str) -> OleanderClientApp:
    """This process's ClientApp for a run config (one per run: built once, then reused)."""
    from simulator import experiment, run_config

    cfg, _ = run_config.compose_run(json.loads(run_config_key))
    return make_client_app(experiment.client_spec(cfg))


def _delegate(message: Message, context: Context) -> Message:
    key = json.dumps(dict(context.run_config), sort_keys=True)
    return _app_for(key)(message, context)


app.query()(_delegate)
app.train()(_delegate)
