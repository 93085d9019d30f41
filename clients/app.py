"""The Flower ClientApp every simulated client runs.

It answers two message types: ``query`` (which client am I: the server maps Flower
node ids to Oleander client ids this way, on any engine) and ``train`` (load the global
weights, train on this client's partition, reply with weights, example count and loss).
Hyperparameters travel in the train message's ConfigRecord; the data and the model
architecture come from the ``ClientSpec`` the app was built with.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from clients.training import TrainConfig, train
from simulator.federation import FederationSpec, load_federation
from simulator.seeding import numpy_generator, torch_generator

PARTITION_ID_KEY = "partition-id"
CLIENT_ID_KEY = "client-id"
TRAIN_STREAM = 3
FAULT_STREAM = 10


@dataclass(frozen=True)
class ClientSpec:
    """What a client process needs to rebuild its data and model (plain, picklable)."""

    federation: FederationSpec
    model: dict[str, Any]
    seed: int
    device: str = "cpu"
    torch_threads: int = 1
    malicious: frozenset[int] = frozenset()  # this run's malicious client ids
    poison: dict[str, Any] | None = None  # the data poisoning malicious clients apply
    failure_rate: float = 0.0  # share of train tasks that fail on purpose (faults)


class InjectedFailure(RuntimeError):
    """A client task failing on purpose (``faults.client_failure_rate``)."""


def train_config_record(cfg: Any) -> ConfigRecord:
    """The training knobs the server sends each round (from the run's config)."""
    record = ConfigRecord(
        {
            "lr": float(cfg.lr),
            "batch-size": int(cfg.batch_size),
            "local-epochs": int(cfg.local_epochs),
            "momentum": float(cfg.momentum),
            "weight-decay": float(cfg.weight_decay),
        }
    )
    if cfg.local_steps is not None:
        record["local-steps"] = int(cfg.local_steps)
    return record


def parse_train_config(config: ConfigRecord) -> TrainConfig:
    """The TrainConfig a train message's ConfigRecord describes."""
    steps = config.get("local-steps")
    return TrainConfig(
        lr=float(config["lr"]),
        batch_size=int(config["batch-size"]),
        local_epochs=int(config["local-epochs"]),
        local_steps=None if steps is None else int(steps),
        momentum=float(config.get("momentum", 0.0)),
        weight_decay=float(config.get("weight-decay", 0.0)),
    )


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
    return int(context.node_config[PARTITION_ID_KEY])


def make_client_app(spec: ClientSpec, mods: list[Mod] | None = None) -> ClientApp:
    """Build the ClientApp for ``spec`` (a fresh one in every process that needs it).

    ``mods`` are Flower ClientApp mods wrapped around every handler.
    """
    app = ClientApp(mods=mods)

    @app.query()
    def query(message: Message, context: Context) -> Message:
        identity = ConfigRecord({CLIENT_ID_KEY: client_id_of(context)})
        return Message(RecordDict({"identity": identity}), reply_to=message)

    @app.train()
    def train_handler(message: Message, context: Context) -> Message:
        client = client_id_of(context)
        if spec.failure_rate:
            server_round = int(next(iter(message.content.config_records.values()))["server-round"])
            draw = numpy_generator(spec.seed, FAULT_STREAM, server_round, client).random()
            if draw < spec.failure_rate:
                raise InjectedFailure(f"client {client} failed on purpose in round {server_round}")
        torch.set_num_threads(spec.torch_threads)
        federation = load_federation(spec.federation)
        data = federation.client_data(client)
        model = _model(
            json.dumps(spec.model, sort_keys=True),
            tuple(federation.data.input_shape),
            federation.data.num_classes,
            spec.device,
        )
        arrays = next(iter(message.content.array_records.values()))
        sent = arrays.to_torch_state_dict()
        model.load_state_dict(sent)
        config = next(iter(message.content.config_records.values()))
        server_round = int(config["server-round"])
        generator = torch_generator(spec.seed, TRAIN_STREAM, server_round, client)
        x, y, poison = data.x, data.y, None
        if client in spec.malicious and spec.poison is not None:
            poison = _poisoning(json.dumps(spec.poison, sort_keys=True))
            x, y = poison.poison_data(x, y, federation.data.num_classes)
        stats = train(
            model,
            x,
            y,
            parse_train_config(config),
            generator,
            spec.device,
            batch_transform=None if poison is None else poison.poison_batch,
        )
        state = model.state_dict()
        if poison is not None and poison.boost != 1:
            # Model replacement: send global + boost * (trained - global).
            state = {k: sent[k] + poison.boost * (v.cpu() - sent[k]) for k, v in state.items()}
        content = RecordDict(
            {
                "arrays": ArrayRecord(state),
                "metrics": MetricRecord(
                    {"num-examples": len(data.y), "train_loss": float(stats["train_loss"])}
                ),
            }
        )
        return Message(content, reply_to=message)

    return app
