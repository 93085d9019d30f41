"""The ClientApp: ``train_many`` answers a round's honest clients as one cohort, as the
train handler answers them one by one, and leaves every other message to the handlers."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MessageType, RecordDict

from clients.training import TrainConfig
from simulator import protocol
from simulator.client_app import ClientSpec, injected_failure, make_client_app
from simulator.engines.inline import set_task_identity
from simulator.federation import FederationSpec, load_federation
from simulator.models import MLP
from simulator.threat import ThreatModel

# ClientApp.train_many ------------------------------------------------------------------
SPEC = ClientSpec(
    federation=FederationSpec(
        dataset={"_target_": "simulator.data.Digits"},
        partition={"_target_": "simulator.partition.iid", "_partial_": True},
        num_clients=6,
        seed=0,
    ),
    model={"_target_": "simulator.models.MLP", "_partial_": True},
    seed=0,
    threat=ThreatModel.clean(6),
)


def _round(spec: ClientSpec, clients: list[int]) -> list[tuple[Message, Context]]:
    """One round's train messages, sharing one content object as Flower's FedAvg builds them."""
    set_task_identity(1)
    federation = load_federation(spec.federation)
    model = MLP(input_shape=federation.data.input_shape, num_classes=10)
    config = protocol.train_config_record(TrainConfig(lr=0.1, batch_size=16, local_epochs=1))
    content = protocol.train_content(ArrayRecord(model.state_dict()), config, server_round=3)
    return [
        (
            Message(content, 10 + c, MessageType.TRAIN),
            Context(
                run_id=1,
                node_id=10 + c,
                node_config=protocol.node_config(c, spec.federation.num_clients),
                state=RecordDict(),
                run_config={},
            ),
        )
        for c in clients
    ]


def _weights(reply: Message) -> dict[str, torch.Tensor]:
    return next(iter(reply.content.array_records.values())).to_torch_state_dict()


def test_train_many_replies_as_the_train_handler_does() -> None:
    app = make_client_app(SPEC)
    batch = _round(SPEC, [0, 2, 5])
    batched = app.train_many(batch)
    assert sorted(batched) == [0, 1, 2]
    for position, (message, context) in enumerate(batch):
        alone = app(message, context)
        reply = batched[position]
        assert reply.metadata.reply_to_message_id == message.metadata.message_id
        for name, value in _weights(alone).items():
            torch.testing.assert_close(_weights(reply)[name], value, rtol=1e-5, atol=1e-6)
        for key in (protocol.NUM_EXAMPLES, protocol.TRAIN_LOSS):
            got = reply.content[protocol.METRICS][key]
            assert got == pytest.approx(alone.content[protocol.METRICS][key], rel=1e-5)


def test_train_many_leaves_attackers_failures_and_mods_to_the_handlers() -> None:
    poison = {"_target_": "clients.poisoning.LabelFlip"}
    threat = dataclasses.replace(SPEC.threat, malicious_clients=(2,))
    spec = dataclasses.replace(SPEC, threat=threat, poison=poison, failure_rate=0.5)

    failing = {c for c in range(6) if injected_failure(spec, c, 3)}
    assert failing and failing != set(range(6)) - {2}  # the seed gives both kinds
    batch = _round(spec, list(range(6)))
    batched = make_client_app(spec).train_many(batch)
    trained = {protocol.client_id_of(batch[p][1].node_config) for p in batched}
    assert trained == set(range(6)) - {2} - failing
    assert make_client_app(SPEC, mods=[lambda m, c, call: call(m, c)]).train_many(batch) == {}


def test_train_many_skips_a_lone_client_and_other_message_types() -> None:
    app = make_client_app(SPEC)
    assert app.train_many(_round(SPEC, [4])) == {}
    query = [(Message(RecordDict(), 10, MessageType.QUERY), _round(SPEC, [0])[0][1])] * 2
    assert app.train_many(query) == {}
