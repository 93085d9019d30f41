"""The messages between Oleander's ServerApp and ClientApp: every record and key spelled once.

Three kinds of message cross the grid:

- ``query`` (server -> every node at start): the reply's ``identity`` ConfigRecord holds
  the node's Oleander client id (its ``partition-id`` node config, Flower's convention),
  so sampling by client id gives the same clients on every engine.
- ``train`` (server -> sampled clients): the global weights (ArrayRecord ``arrays``) and
  a ConfigRecord ``config`` with the round and the training recipe.
- the train reply: the trained weights (``arrays``) and a MetricRecord ``metrics`` with the
  example count and the mean training loss.

Everything in a reply is client-controlled: the parsers here raise ``ValueError`` with a
reason for anything malformed, and the strategy records the reply as rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from clients.training import TrainConfig
from simulator.arrays import ArrayLayout, records_of, to_array_record
from simulator.checks import is_real

# Node config (set by the engine on each client node).
PARTITION_ID = "partition-id"
NUM_PARTITIONS = "num-partitions"
# Records of a message's content.
ARRAYS = "arrays"  # FedAvg's arrayrecord_key
CONFIG = "config"  # FedAvg's configrecord_key
METRICS = "metrics"
IDENTITY = "identity"
# Keys of the query reply, the train config and the train reply.
CLIENT_ID = "client-id"
SERVER_ROUND = "server-round"
LR = "lr"
BATCH_SIZE = "batch-size"
LOCAL_EPOCHS = "local-epochs"
LOCAL_STEPS = "local-steps"
MOMENTUM = "momentum"
WEIGHT_DECAY = "weight-decay"
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train_loss"

MAX_EXAMPLES = 2**31  # a larger reported count is a malformed (or malicious) reply


# Node config -------------------------------------------------------------------------
def node_config(client_id: int, num_clients: int) -> dict[str, int]:
    """The node config of client ``client_id``'s node (``flower-supernode --node-config``)."""
    return {PARTITION_ID: client_id, NUM_PARTITIONS: num_clients}


def client_id_of(node_config: Mapping[str, Any]) -> int:
    """The Oleander client id of the node with ``node_config``."""
    return int(node_config[PARTITION_ID])


# Query -------------------------------------------------------------------------------
def query(node_id: int) -> Message:
    """The message that asks a node which client it is."""
    return Message(RecordDict({CONFIG: ConfigRecord()}), node_id, MessageType.QUERY)


def identity_reply(message: Message, client_id: int) -> Message:
    return Message(RecordDict({IDENTITY: ConfigRecord({CLIENT_ID: client_id})}), reply_to=message)


def identity_of(reply: Message) -> int:
    """The client id a query reply states."""
    return int(reply.content[IDENTITY][CLIENT_ID])  # type: ignore[arg-type]


# Train -------------------------------------------------------------------------------
def train_config_record(config: TrainConfig) -> ConfigRecord:
    """The training recipe the server sends each round."""
    record = ConfigRecord(
        {
            LR: float(config.lr),
            BATCH_SIZE: int(config.batch_size),
            LOCAL_EPOCHS: int(config.local_epochs),
            MOMENTUM: float(config.momentum),
            WEIGHT_DECAY: float(config.weight_decay),
        }
    )
    if config.local_steps is not None:
        record[LOCAL_STEPS] = int(config.local_steps)
    return record


def parse_train_config(record: ConfigRecord) -> TrainConfig:
    """The TrainConfig a train message's ConfigRecord describes."""
    steps = record.get(LOCAL_STEPS)
    return TrainConfig(
        lr=float(record[LR]),  # type: ignore[arg-type]
        batch_size=int(record[BATCH_SIZE]),  # type: ignore[arg-type]
        local_epochs=int(record[LOCAL_EPOCHS]),  # type: ignore[arg-type]
        local_steps=None if steps is None else int(steps),  # type: ignore[arg-type]
        momentum=float(record.get(MOMENTUM, 0.0)),  # type: ignore[arg-type]
        weight_decay=float(record.get(WEIGHT_DECAY, 0.0)),  # type: ignore[arg-type]
    )


def train_content(arrays: ArrayRecord, config: ConfigRecord, server_round: int) -> RecordDict:
    """A train message's content: the global weights and the recipe, stamped with the round."""
    config[SERVER_ROUND] = server_round
    return RecordDict({ARRAYS: arrays, CONFIG: config})


def train_payload(message: Message) -> tuple[ArrayRecord, ConfigRecord]:
    """The global weights and the training config a train message carries."""
    content = message.content
    return records_of(content, ArrayRecord)[0], records_of(content, ConfigRecord)[0]


def round_of(config: ConfigRecord) -> int:
    return int(config[SERVER_ROUND])  # type: ignore[arg-type]


def train_reply(
    message: Message, state: Mapping[str, torch.Tensor], num_examples: int, loss: float
) -> Message:
    """A client's answer to a train message: its weights, example count and mean loss."""
    content = RecordDict(
        {
            ARRAYS: to_array_record(state),
            METRICS: MetricRecord({NUM_EXAMPLES: num_examples, TRAIN_LOSS: float(loss)}),
        }
    )
    return Message(content, reply_to=message)


def read_train_reply(
    content: RecordDict, layout: ArrayLayout, out: np.ndarray
) -> tuple[int, float]:
    """(example count, training loss) of one train reply, its flat weights written to ``out``.

    ``ValueError`` with the reason for anything malformed: the wrong records, arrays that do
    not match the model, an example count that is not a whole number in [1, 2^31], a loss
    that is not a number.
    """
    arrays = records_of(content, ArrayRecord)
    if len(arrays) != 1:
        raise ValueError(f"expected 1 ArrayRecord, got {len(arrays)}")
    metric_records = records_of(content, MetricRecord)
    if len(metric_records) != 1:
        raise ValueError(f"expected 1 MetricRecord, got {len(metric_records)}")
    layout.flatten(arrays[0], out=out)
    metrics = metric_records[0]
    count = metrics.get(NUM_EXAMPLES)
    if not is_real(count) or not 1 <= count <= MAX_EXAMPLES or count != int(count):  # type: ignore[operator]
        raise ValueError(f"{NUM_EXAMPLES}={count!r} is not a whole count in [1, 2^31]")
    loss = metrics.get(TRAIN_LOSS, float("nan"))
    if not is_real(loss, allow_nan=True):
        raise ValueError(f"{TRAIN_LOSS}={loss!r} is not a number")
    return int(count), float(loss)  # type: ignore[arg-type]
