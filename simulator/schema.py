"""The schemas under ``conf/``: the types of the keys, and which keys are settings.

Hydra composes ``conf/``; the dataclasses here sit under the YAML (each group entry names
its schema in its ``defaults``), so a value of the wrong type fails at composition. The
groups whose entries take their own parameters (``strategy``, ``attack``, ``pre``,
``detect``) have an open base instead: a rule's ``beta`` or an attack's ``z`` sits one
level under the group (``strategy.beta``, ``attack.z``), beside the group's settings, and
is checked by the component's own constructor.

``build(group, node)`` instantiates a group entry with its own parameters only: the
group's settings (``name``, ``server_lr``, ``knowledge``, ...) are read by the simulator
and never passed to the component.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

# The swappable concerns, in the order of the primary config's defaults list.
GROUPS = (
    "dataset", "partition", "model", "strategy", "pre", "detect", "attack", "engine", "logger",
)  # fmt: skip
# Groups of the command line that only change what the run is called or how it is shown.
EXTRA_GROUPS = ("experiment", "debug")
# Upper bounds that hold on every machine, so a config valid here is valid where a sweep
# runs; far above any real need, and far below the C int that threads and pools take.
MAX_THREADS = 1024
MAX_WORKERS = 1024
# Clients in a federation, real and fake: the engines hold one node per client.
MAX_CLIENTS = 2**20
# engine.cohort: train a round's honest clients together where it pays off, always, never.
COHORT_MODES = ("auto", "always", "never")


# strategy.weighting: what weights a mean-type rule's average.
WEIGHTINGS = ("examples", "uniform")
# attack.knowledge: what a colluding attacker sees besides its own updates (the attacks'
# own ``clients.attacks.KNOWLEDGE``, here so the checks need not import torch to read it).
KNOWLEDGE = ("partial", "full")


# Typed groups ---------------------------------------------------------------------------
@dataclass
class DigitsSchema:
    _target_: str = "simulator.data.Digits"
    name: str = "digits"
    test_fraction: float = 0.25


@dataclass
class ImageDatasetSchema:
    _target_: str = MISSING
    name: str = MISSING
    path: str | None = None
    hub_id: str = MISSING


@dataclass
class NaturalDatasetSchema(ImageDatasetSchema):
    """A data set of natural clients, split into train and test inside every client."""

    test_fraction: float = 0.1


@dataclass
class PartialSchema:
    """A group entry built as a factory: the call site passes the runtime arguments."""

    _target_: str = MISSING
    _partial_: bool = True
    name: str = MISSING


@dataclass
class PartitionSchema(PartialSchema):
    """A partitioner factory, called with ``num_partitions`` and ``seed``."""


@dataclass
class DirichletSchema(PartitionSchema):
    alpha: float = 0.5
    min_partition_size: int = 2
    self_balancing: bool = False


@dataclass
class ShardSchema(PartitionSchema):
    num_shards_per_partition: int | None = 2
    shard_size: int | None = None


@dataclass
class BiasSchema(PartitionSchema):
    bias: float = 0.5
    num_classes: int | None = None


@dataclass
class ModelSchema(PartialSchema):
    """A model factory, called with ``input_shape`` and ``num_classes``."""


@dataclass
class MLPSchema(ModelSchema):
    hidden: list[int] = field(default_factory=lambda: [64])
    batch_norm: bool = False


@dataclass
class CharLSTMSchema(ModelSchema):
    embedding_dim: int = 8
    hidden_size: int = 256
    num_layers: int = 2


@dataclass
class InlineEngineSchema:
    _target_: str = "simulator.engines.inline.InlineEngine"
    name: str = "inline"
    workers: int = 0
    cohort: str = "auto"


@dataclass
class DeploymentEngineSchema:
    _target_: str = "simulator.engines.superlink.DeploymentEngine"
    name: str = "deployment"
    superlink: str | None = None
    timeout: float = 86400.0


@dataclass
class RayEngineSchema(DeploymentEngineSchema):
    _target_: str = "simulator.engines.superlink.RayEngine"
    name: str = "ray"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    address: str | None = None


@dataclass
class LoggerSchema:
    """``logger=csv``: the run's own files only (written whatever the logger)."""

    _target_: str = "simulator.tracking.Logger"
    name: str = "csv"


@dataclass
class TensorBoardLoggerSchema:
    _target_: str = "simulator.tracking.TensorBoardLogger"
    name: str = "tensorboard"
    log_dir: str | None = None


@dataclass
class MlflowLoggerSchema:
    _target_: str = "simulator.tracking.MlflowLogger"
    name: str = "mlflow"
    tracking_uri: str | None = None
    experiment: str | None = None
    request_timeout: int = 10
    request_retries: int = 2


@dataclass
class WandbLoggerSchema:
    _target_: str = "simulator.tracking.WandbLogger"
    name: str = "wandb"
    project: str = "oleander"
    entity: str | None = None
    mode: str = "offline"
    dir: str | None = None


@dataclass
class FaultsSchema:
    """Faults injected on purpose, to see a rule and the simulator survive them."""

    client_failure_rate: float = 0.0  # share of client tasks that raise


@dataclass
class OleanderConfig:
    """The primary config: one group per concern, then the run's top-level knobs."""

    dataset: Any = MISSING
    partition: Any = MISSING
    model: Any = MISSING
    strategy: Any = MISSING
    pre: Any = MISSING
    detect: Any = MISSING
    attack: Any = MISSING
    engine: Any = MISSING
    logger: Any = MISSING
    seed: int = 0
    num_clients: int = 10
    clients_per_round: int = 10
    num_rounds: int = 10
    local_epochs: int = 1
    local_steps: int | None = None
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    malicious_fraction: float = 0.0
    fake_clients: int = 0
    device: str = "cpu"
    torch_threads: int = 1
    eval_batch_size: int = 1024
    checkpoint_every: int = 1
    faults: FaultsSchema = field(default_factory=FaultsSchema)
    progress: bool = True
    verbose: bool = False


# Open groups: settings beside the component's own parameters -----------------------------
# Each group's settings and their defaults; every other key of an entry (but ``_target_``
# and ``_partial_``) is a parameter of the entry's component.
SETTINGS: dict[str, dict[str, Any]] = {
    "strategy": {
        "name": MISSING,
        "server_lr": 1.0,  # the global model moves by server_lr times the aggregate
        # examples: a mean-type rule weights clients by their reported example counts;
        # uniform: every client counts once (counts are the clients' own claims)
        "weighting": "uniform",
        "num_malicious": None,  # f told to the defence; null: from malicious_fraction
        "root_size": 0,  # FLTrust's root set, taken from the training data
    },
    "attack": {
        "name": "none",
        "knowledge": None,  # partial | full, for colluding (server-side) attacks
        "start_round": 1,  # the attack window: the first round attackers attack
        "stop_round": None,  # the last (null: to the end); success is measured every round
        "lifespan_threshold": 0.5,  # a backdoor is gone once its success falls below this
    },
    "pre": {"name": "none"},
    "detect": {"name": "none"},
}
# Settings of the typed groups that are labels, not constructor parameters.
LABELS = {"partition": ("name",), "model": ("name",), "engine": ("name",), "logger": ("name",)}
# Keys of the first release's nested layout, and where their contents live now.
# Settings renamed since the first release: old key -> the key and values now.
RENAMED = {"strategy.weight_by_examples": "strategy.weighting=examples|uniform"}
MOVED = {
    "strategy.rule": "strategy",
    "attack.craft": "attack",
    "attack.poison": "attack",
    "pre.steps": "pre",
}

SCHEMAS: dict[str, tuple[str | None, Any]] = {
    "oleander_schema": (None, OleanderConfig),
    "digits": ("schema/dataset", DigitsSchema),
    "image": ("schema/dataset", ImageDatasetSchema),
    "natural": ("schema/dataset", NaturalDatasetSchema),
    "partition": ("schema/partition", PartitionSchema),
    "dirichlet": ("schema/partition", DirichletSchema),
    "shard": ("schema/partition", ShardSchema),
    "bias": ("schema/partition", BiasSchema),
    "model": ("schema/model", ModelSchema),
    "mlp": ("schema/model", MLPSchema),
    "char_lstm": ("schema/model", CharLSTMSchema),
    "inline": ("schema/engine", InlineEngineSchema),
    "ray": ("schema/engine", RayEngineSchema),
    "deployment": ("schema/engine", DeploymentEngineSchema),
    "csv": ("schema/logger", LoggerSchema),
    "tensorboard": ("schema/logger", TensorBoardLoggerSchema),
    "mlflow": ("schema/logger", MlflowLoggerSchema),
    "wandb": ("schema/logger", WandbLoggerSchema),
    **{group: (f"schema/{group}", settings) for group, settings in SETTINGS.items()},
}


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (the YAML files name them in ``defaults``)."""
    store = ConfigStore.instance()
    for name, (group, node) in SCHEMAS.items():
        store.store(name=name, group=group, node=node)


register_schemas()


# Keywords the run passes to a component when it calls it; a config may not set them.
RUN_KEYWORDS = frozenset(
    {
        "num_malicious", "client_ids", "server_round", "global_model", "state", "generator",
        "weights", "server_update", "own", "num_clients", "knowledge", "received",
        "previous_aggregate", "base_model",
    }
)  # fmt: skip


def load_target(path: str) -> Any:
    """The object a ``_target_`` names (``package.module.name``); ``ValueError`` if none."""
    module, _, name = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"_target_={path}: cannot be imported ({error})") from None


def own_parameters(group: str, node: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The entry ``node`` of ``group`` as a plain dict without the group's settings.

    What is left is ``_target_`` (absent or null for ``none`` entries), ``_partial_`` and
    the component's own parameters.
    """
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    assert isinstance(container, dict)
    drop = set(SETTINGS.get(group, ())) | set(LABELS.get(group, ()))
    return {k: v for k, v in container.items() if k not in drop}


def parameters_of(group: str, node: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """Only the component's own parameters (no ``_target_``/``_partial_``)."""
    return {k: v for k, v in own_parameters(group, node).items() if not k.startswith("_")}


def build(group: str, node: DictConfig | dict[str, Any], **kwargs: Any) -> Any:
    """Instantiate the entry ``node`` of ``group`` with its own parameters and ``kwargs``;
    None for an entry without a ``_target_`` (``pre=none``)."""
    config = own_parameters(group, node)
    if config.get("_target_") is None:
        return None
    return instantiate(OmegaConf.create(config), **kwargs)
