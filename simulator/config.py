"""Structured-config schemas and the checks every run passes before any work starts.

Hydra composes ``conf/``; the dataclasses here are the schemas under that YAML (the
primary config and each group entry extend them, so a value of the wrong type fails at
composition). ``validate`` then checks ranges and the constraints between keys. Every
failure is a ``ConfigError`` whose message is one line naming the key, the value and the
constraint; the entry point prints it and exits with status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import MISSING, Container, DictConfig, OmegaConf

GROUPS = ("dataset", "partition", "model", "strategy", "pre", "attack", "engine")
# Upper bounds that hold on every machine, so a config valid here is valid where a sweep
# runs; far above any real need, and far below the C int that threads and pools take.
MAX_THREADS = 1024
MAX_WORKERS = 1024
# engine.cohort: train a round's honest clients together where it pays off, always, never.
COHORT_MODES = ("auto", "always", "never")


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
    num_malicious: int | None = None  # f told to the rule; null: from malicious_fraction
    root_size: int = 0  # FLTrust's root set, taken from the training data


@dataclass
class PreSchema:
    name: str = "none"
    steps: list[Any] = field(default_factory=list)


@dataclass
class BucketingSchema(PreSchema):
    bucket_size: int = 2


@dataclass
class AttackSchema:
    name: str = "none"
    knowledge: str | None = None  # partial | full, for colluding (server-side) attacks
    craft: Any = None  # a clients.attacks function: model poisoning by the adversary
    poison: Any = None  # a clients.poisoning object: data poisoning in the clients


@dataclass
class InlineEngineSchema:
    _target_: str = "simulator.engines.inline.InlineEngine"
    name: str = "inline"
    workers: int = 0
    cohort: str = "auto"


@dataclass
class RayEngineSchema:
    _target_: str = "simulator.engines.ray.RayEngine"
    name: str = "ray"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    address: str | None = None
    init_args: dict[str, Any] = field(default_factory=dict)


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
    checkpoint_every: int = 1
    faults: FaultsSchema = field(default_factory=FaultsSchema)
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
    "pre": ("schema/pre", PreSchema),
    "bucketing": ("schema/pre", BucketingSchema),
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
    (
        "torch_threads",
        lambda v: _is_int(v) and 1 <= v <= MAX_THREADS,
        f"must be an integer in [1, {MAX_THREADS}]",
    ),
    ("eval_batch_size", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    ("checkpoint_every", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0 (0: never)"),
    ("faults.client_failure_rate", lambda v: _is_real(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("progress", lambda v: isinstance(v, bool), "must be true or false"),
    ("verbose", lambda v: isinstance(v, bool), "must be true or false"),
    ("strategy.server_lr", lambda v: _is_real(v) and v > 0, "must be a number > 0"),
    (
        "strategy.num_malicious",
        lambda v: v is None or (_is_int(v) and v >= 0),
        "must be null (from malicious_fraction) or an integer >= 0",
    ),
    ("strategy.root_size", lambda v: _is_int(v) and v >= 0, "must be an integer >= 0"),
    (
        "engine.workers",
        lambda v: _is_int(v) and 0 <= v <= MAX_WORKERS,
        f"must be an integer in [0, {MAX_WORKERS}] (0: clients run in this process)",
    ),
    ("engine.cohort", lambda v: v in COHORT_MODES, f"must be one of {', '.join(COHORT_MODES)}"),
    # Ray waits forever for a client task that asks for infinite resources.
    ("engine.num_cpus", lambda v: _is_real(v) and v > 0, "must be a finite number > 0"),
    ("engine.num_gpus", lambda v: _is_real(v) and v >= 0, "must be a finite number >= 0"),
]


def _applies(cfg: DictConfig, key: str) -> bool:
    """A rule for a group's key applies where the chosen entry has the key (engine.workers
    only to engine=inline); a top-level key is always checked (removed with ~: null)."""
    parent, _, name = key.rpartition(".")
    return parent not in GROUPS or name in cfg[parent]


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


def _rule_keywords(rule: Any, pre: list[Any]) -> set[str]:
    from strategies.pipeline import accepted_keywords

    return set().union(*(accepted_keywords(step) for step in (*pre, rule)))


def _checked(check: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a component's own check; its ValueError (one line, names the key) -> ConfigError."""
    try:
        return check(**kwargs)
    except ValueError as error:
        raise ConfigError(str(error).splitlines()[0]) from None


def unknown_key_message(
    key: str, value: Any, node: DictConfig, known: Iterable[str] | None = None
) -> str:
    """``KEY=VALUE: no such key`` for a key of ``node``, with the group entry it is not in
    and the closest of the ``known`` keys beside it (default: ``node``'s keys)."""
    parent, _, name = key.rpartition(".")
    siblings = sorted(str(k) for k in (node if known is None else known) if k != name)
    close = difflib.get_close_matches(name, siblings, n=1)
    entry = node.get("name") if parent in GROUPS else None
    where = f" for {parent}={entry}" if entry is not None else ""
    hint = f"; did you mean {parent}{'.' if parent else ''}{close[0]}?" if close else ""
    return f"{key}={_show(value)}: no such key{where}{hint}"


def _check_known_keys(node: DictConfig, prefix: str = "") -> None:
    """Refuse a key added with ``+`` or ``++`` that no schema has.

    Hydra adds such a key silently: at the top level it would be ignored (a typo such as
    ``+lrr=0.1`` runs with the default lr), in a group it would reach a constructor.
    Nodes whose schema is free-form (a rule's or an attack's parameters) are left to
    their constructors.
    """
    schema = OmegaConf.get_type(node)
    if schema is None or not dataclasses.is_dataclass(schema):
        return
    known = [f.name for f in dataclasses.fields(schema)]
    for key in node:
        child = node._get_node(key)
        if key not in known:
            # As given: an interpolation (+x=${y}) is shown, not resolved.
            value = (
                OmegaConf.to_container(child) if isinstance(child, Container) else child._value()
            )
            raise ConfigError(unknown_key_message(f"{prefix}{key}", value, node, known))
        if isinstance(child, DictConfig):
            _check_known_keys(child, f"{prefix}{key}.")


_VALIDATED: set[str] = set()  # configs this process has found valid (see validate)


def _validated_key(cfg: DictConfig) -> str | None:
    """The config without Hydra's own node, as text; None if it does not resolve."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # validate reports it
        return None
    if isinstance(container, dict):
        container.pop("hydra", None)
    return json.dumps(container, sort_keys=True, default=repr)


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first value that breaks a constraint; cheap, no data.

    A config this process already found valid (the entry point checks it before Hydra
    composes it again for the run) is not checked twice.
    """
    key = _validated_key(cfg)
    if key is not None and key in _VALIDATED:
        return
    _check(cfg)
    if key is not None:
        _VALIDATED.add(key)


def _check(cfg: DictConfig) -> None:
    _check_known_keys(cfg)
    for key, ok, constraint in _RULES:
        value = OmegaConf.select(cfg, key)
        if _applies(cfg, key) and not ok(value):
            raise _fail(key, value, constraint)
    told = cfg.strategy.num_malicious
    if told is not None and _is_int(told) and told >= cfg.clients_per_round:
        raise _fail(
            "strategy.num_malicious",
            told,
            f"must be below clients_per_round ({cfg.clients_per_round})",
            combination=True,
        )
    if cfg.clients_per_round > cfg.num_clients:
        raise _fail(
            "clients_per_round",
            cfg.clients_per_round,
            f"must be <= num_clients ({cfg.num_clients})",
            combination=True,
        )
    if cfg.attack.knowledge is not None and cfg.attack.knowledge not in ("partial", "full"):
        raise _fail("attack.knowledge", cfg.attack.knowledge, "must be partial or full")
    from simulator.threat import count_for

    if count_for(cfg.malicious_fraction, cfg.num_clients) >= cfg.num_clients:
        raise _fail(
            "malicious_fraction",
            cfg.malicious_fraction,
            f"rounds to all {cfg.num_clients} clients; at least one must be honest",
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
    train_size = dataset.train_size()
    if train_size is not None and cfg.strategy.root_size >= train_size:
        raise _fail(
            "strategy.root_size",
            cfg.strategy.root_size,
            f"must be below the {train_size} training examples of {cfg.dataset.name}",
        )
    if train_size is not None and cfg.num_clients > train_size - cfg.strategy.root_size:
        available = train_size - cfg.strategy.root_size
        raise _fail(
            "num_clients",
            cfg.num_clients,
            f"{cfg.dataset.name} has {available} training examples for the clients; "
            "every client needs at least one",
            combination=True,
        )
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
    _check_rule(cfg)
    _check_attack(cfg, dataset)


def _check_attack(cfg: DictConfig, dataset: Any) -> None:
    """Build the attack's parts and run them once on small stand-in data.

    A colluding attack is called by the real ``Adversary`` on a seeded random
    ``(clients_per_round, 8)`` matrix with the configured share of attackers, so a bad
    parameter fails here, in one line, and not silently in every round. A poisoning must
    fit the data set's classes and images.
    """
    from simulator.adversary import Adversary
    from simulator.threat import count_for

    if cfg.attack.craft is not None:
        craft = _instantiate("attack", cfg.attack.craft)
        n = cfg.clients_per_round
        f = count_for(cfg.malicious_fraction, n)
        # One attacker among 10 clients with full knowledge: a failure is the attack's own
        # parameters (checked even when malicious_fraction is 0, so a sweep's bad value is
        # caught once; partial knowledge would see one update, too few for some attacks);
        # with the configured f, clients per round and knowledge, the mix.
        knowledge = cfg.attack.knowledge or "full"
        checks = ((1, max(n, 10), "full", False), (f, n, knowledge, True))
        for attackers, rows, seen, combination in checks:
            if not attackers:
                continue
            adversary = Adversary(craft, range(attackers), seen, seed=0)
            updates = torch.randn(rows, 8, generator=torch.Generator().manual_seed(0))
            try:
                adversary(updates, list(range(rows)), server_round=1)
            except (ValueError, TypeError) as error:
                raise ConfigError(
                    _attack_error(cfg, error, attackers, rows), combination=combination
                ) from None
    if cfg.attack.poison is not None:
        poison = _instantiate("attack", cfg.attack.poison)
        _checked(poison.check_classes, num_classes=dataset.num_classes)
        if hasattr(poison, "check_shape"):
            _checked(poison.check_shape, input_shape=dataset.input_shape)


def _attack_error(cfg: DictConfig, error: Exception, attackers: int, n: int) -> str:
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
    if unexpected:
        return f"attack.craft.{unexpected.group(1)}: attack={cfg.attack.name} has no such parameter"
    reason = str(cause).splitlines()[0]
    return f"attack={cfg.attack.name} with {attackers} of {n} clients per round malicious: {reason}"


def _check_rule(cfg: DictConfig) -> None:
    """Run the rule and its pre-aggregation steps on a zero matrix of the round's shape.

    Every precondition (Krum's n > 2f + 2, Bulyan's n >= 4f + 3, a trimmed-mean beta
    below 1/2, ...) is checked by the rule itself, so calling it on ``zeros(n, 2)`` checks
    the configuration exactly as a round will, in microseconds. A failure with f = 0 is a
    bad value; a failure only with the configured f is a combination (a sweep skips it).
    """
    from simulator.threat import attackers_told
    from strategies.pipeline import aggregate

    rule = _instantiate("strategy", cfg.strategy.rule)
    pre = [_instantiate("pre", step) for step in cfg.pre.steps]
    n = cfg.clients_per_round
    told = attackers_told(cfg.strategy.num_malicious, cfg.malicious_fraction, n)
    available: dict[str, Any] = {
        "server_update": torch.ones(2),
        "center": None,
        "generator": torch.Generator().manual_seed(0),
    }
    if cfg.strategy.weight_by_examples:
        available["weights"] = torch.ones(n)
    for f, combination in ((0, False), (told, True)):
        try:
            aggregate(torch.zeros(n, 2), rule, pre, num_malicious=f, **available)
        except ValueError as error:
            reason = str(error).splitlines()[0]
            if combination and cfg.strategy.num_malicious is None:
                reason += f" (f from malicious_fraction={_show(cfg.malicious_fraction)})"
            key = f"strategy={cfg.strategy.name}"
            raise ConfigError(
                f"{key} with clients_per_round={n}: {reason}", combination=combination
            ) from None
    if "server_update" in _rule_keywords(rule, pre) and cfg.strategy.root_size < 1:
        raise _fail(
            "strategy.root_size",
            cfg.strategy.root_size,
            f"strategy={cfg.strategy.name} needs a root set of at least 1 example",
        )
