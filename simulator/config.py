"""Structured-config schemas and the checks every run passes before any work starts.

Hydra composes ``conf/``; the dataclasses here are the schemas under that YAML (the
primary config and each group entry extend them, so a value of the wrong type fails at
composition). ``validate`` then checks ranges and the constraints between keys. Every
failure is a ``ConfigError`` whose message is one line naming the key, the value and the
constraint; the entry point prints it and exits with status 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A bad configuration value.

    ``combination`` is True when each value is fine alone but they do not fit together
    (a sweep records such a point as skipped; a single run exits with status 2).
    """

    def __init__(self, message: str, *, combination: bool = False) -> None:
        super().__init__(message)
        self.combination = combination


# Schemas -------------------------------------------------------------------------------
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


@dataclass
class StrategySchema:
    _target_: str = "strategies.flower.RobustStrategy"
    name: str = MISSING
    rule: Any = MISSING
    server_lr: float = 1.0
    weight_by_examples: bool = False


@dataclass
class AttackSchema:
    name: str = "none"


@dataclass
class InlineEngineSchema:
    _target_: str = "simulator.engines.inline.InlineEngine"
    name: str = "inline"
    workers: int = 0


@dataclass
class RayEngineSchema:
    _target_: str = "simulator.engines.ray.RayEngine"
    name: str = "ray"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    address: str | None = None
    init_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class OleanderConfig:
    """The primary config: one group per concern, then the run's top-level knobs."""

    dataset: Any = MISSING
    partition: Any = MISSING
    model: Any = MISSING
    strategy: Any = MISSING
    attack: Any = MISSING
    engine: Any = MISSING
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
    device: str = "cpu"
    torch_threads: int = 1
    eval_batch_size: int = 1024
    progress: bool = True
    verbose: bool = False


SCHEMAS: dict[str, tuple[str | None, type]] = {
    "oleander_schema": (None, OleanderConfig),
    "digits": ("schema/dataset", DigitsSchema),
    "image": ("schema/dataset", ImageDatasetSchema),
    "partition": ("schema/partition", PartitionSchema),
    "dirichlet": ("schema/partition", DirichletSchema),
    "shard": ("schema/partition", ShardSchema),
    "bias": ("schema/partition", BiasSchema),
    "model": ("schema/model", ModelSchema),
    "mlp": ("schema/model", MLPSchema),
    "strategy": ("schema/strategy", StrategySchema),
    "attack": ("schema/attack", AttackSchema),
    "inline": ("schema/engine", InlineEngineSchema),
    "ray": ("schema/engine", RayEngineSchema),
}


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (the YAML files name them in ``defaults``)."""
    store = ConfigStore.instance()
    for name, (group, node) in SCHEMAS.items():
        store.store(name=name, group=group, node=node)


register_schemas()


# Checks --------------------------------------------------------------------------------
def _fail(key: str, value: Any, constraint: str, *, combination: bool = False) -> ConfigError:
    return ConfigError(f"{key}={_show(value)}: {constraint}", combination=combination)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0"),
    ("num_clients", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("clients_per_round", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("num_rounds", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("local_epochs", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("local_steps", lambda v: v is None or (_is_int(v) and v >= 1), "must be null or >= 1"),
    ("batch_size", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("lr", lambda v: _is_real(v) and v > 0, "must be a number > 0"),
    ("momentum", lambda v: _is_real(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("weight_decay", lambda v: _is_real(v) and v >= 0, "must be a number >= 0"),
    ("malicious_fraction", lambda v: _is_real(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("torch_threads", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("eval_batch_size", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("strategy.server_lr", lambda v: _is_real(v) and v > 0, "must be a number > 0"),
]


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise _fail("device", device, "CUDA is not available on this machine; use device=cpu")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise _fail("device", device, f"this machine has {torch.cuda.device_count()} GPU(s)")
        return
    raise _fail("device", device, "must be cpu, cuda or cuda:N")


def _instantiate(group: str, node: DictConfig, **kwargs: Any) -> Any:
    """Build a group entry, turning its constructor's complaint into a ConfigError."""
    try:
        return instantiate(node, **kwargs)
    except Exception as error:
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        if "=" in message.split(":")[0]:
            full = message if message.startswith(group) else f"{group}.{message}"
            raise ConfigError(full) from None
        raise ConfigError(f"{group}={node.get('name', '?')}: {message}") from None


def _checked(check: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a component's own check; its ValueError (one line, names the key) -> ConfigError."""
    try:
        return check(**kwargs)
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0]) from None


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value that breaks a constraint; cheap, no data."""
    for key, ok, constraint in _RULES:
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise _fail(key, value, constraint)
    if cfg.clients_per_round > cfg.num_clients:
        raise _fail(
            "clients_per_round",
            cfg.clients_per_round,
            f"must be <= num_clients ({cfg.num_clients})",
            combination=True,
        )
    if cfg.malicious_fraction > 0 and cfg.attack.name == "none":
        raise _fail(
            "malicious_fraction",
            cfg.malicious_fraction,
            "needs an attack: choose one with attack=<name>",
            combination=True,
        )
    _check_device(cfg.device)
    dataset = _instantiate("dataset", cfg.dataset)
    _checked(dataset.check)
    model_factory = _instantiate("model", cfg.model)
    check_input = getattr(model_factory.func, "check_input", None)
    try:
        if check_input is not None:
            check_input(dataset.input_shape)
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0], combination=True) from None
    try:  # building a model costs milliseconds and runs every constructor check
        model_factory(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    except (ValueError, TypeError) as error:
        message = str(error).splitlines()[0]
        raise ConfigError(message if "=" in message else f"model: {message}") from None
    partitioner = _instantiate("partition", cfg.partition)
    _checked(partitioner, num_partitions=cfg.num_clients, seed=0)
    _instantiate("engine", cfg.engine)
