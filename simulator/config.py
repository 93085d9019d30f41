"""The checks every run passes before any work starts (the schemas are ``simulator.schema``).

``validate`` checks ranges, the constraints between keys and every component's own
parameters (each is built, and the rule and the attack are run once on small stand-in
data). Every failure is a ``ConfigError`` whose message is one line naming the key, the
value and the constraint; the entry point prints it and exits with status 2. Components
name only their own parameter (``beta=0.7: ...``); the checks here add the full key
(``strategy.beta=0.7: ...``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from omegaconf import Container, DictConfig, OmegaConf

from simulator.checks import is_int, is_real
from simulator.schema import (
    COHORT_MODES,
    GROUPS,
    KNOWLEDGE,
    MAX_CLIENTS,
    MAX_THREADS,
    MAX_WORKERS,
    MOVED,
    RENAMED,
    RUN_KEYWORDS,
    SETTINGS,
    WEIGHTINGS,
    build,
    load_target,
)

if TYPE_CHECKING:
    from simulator.threat import ThreatModel

# torch, the attacks, the rules and the data sets are imported by the checks that build
# them (after the checks of plain values): a command line with a typo, a wrong type or a
# value out of range is answered without importing them (seconds on two cores).


class ConfigError(ValueError):
    """A bad configuration value.

    ``combination`` is True when each value is fine alone but they do not fit together
    (a sweep records such a point as skipped; a single run exits with status 2).
    """

    def __init__(self, message: str, *, combination: bool = False) -> None:
        super().__init__(message)
        self.combination = combination


# Checks --------------------------------------------------------------------------------
def _fail(key: str, value: Any, constraint: str, *, combination: bool = False) -> ConfigError:
    return ConfigError(f"{key}={_show(value)}: {constraint}", combination=combination)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


_RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    ("num_clients", lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    ("clients_per_round", lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    ("num_rounds", lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    ("local_epochs", lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    ("local_steps", lambda v: v is None or (is_int(v) and v >= 1), "must be null or >= 1"),
    ("batch_size", lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    ("lr", lambda v: is_real(v) and v > 0, "must be a number > 0"),
    ("momentum", lambda v: is_real(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("weight_decay", lambda v: is_real(v) and v >= 0, "must be a number >= 0"),
    ("malicious_fraction", lambda v: is_real(v) and 0 <= v < 1, "must be in [0, 1)"),
    (
        "fake_clients",
        lambda v: is_int(v) and v >= 0,
        "must be an integer >= 0 (clients the attacker adds)",
    ),
    (
        "torch_threads",
        lambda v: is_int(v) and 1 <= v <= MAX_THREADS,
        f"must be an integer in [1, {MAX_THREADS}]",
    ),
    ("eval_batch_size", lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    ("checkpoint_every", lambda v: is_int(v) and v >= 0, "must be an integer >= 0 (0: never)"),
    ("faults.client_failure_rate", lambda v: is_real(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("progress", lambda v: isinstance(v, bool), "must be true or false"),
    ("verbose", lambda v: isinstance(v, bool), "must be true or false"),
    ("strategy.server_lr", lambda v: is_real(v) and v > 0, "must be a number > 0"),
    (
        "strategy.weighting",
        lambda v: v in WEIGHTINGS,
        f"must be one of {', '.join(WEIGHTINGS)} (examples: by the clients' reported counts)",
    ),
    (
        "attack.knowledge",
        lambda v: v is None or v in KNOWLEDGE,
        f"must be null or one of {', '.join(KNOWLEDGE)}",
    ),
    ("attack.start_round", lambda v: is_int(v) and v >= 1, "must be an integer >= 1"),
    (
        "attack.stop_round",
        lambda v: v is None or (is_int(v) and v >= 1),
        "must be null (no end) or an integer >= 1",
    ),
    (
        "attack.lifespan_threshold",
        lambda v: is_real(v) and 0 < v <= 1,
        "must be a number in (0, 1]",
    ),
    (
        "strategy.num_malicious",
        lambda v: v is None or (is_int(v) and v >= 0),
        "must be null (from malicious_fraction) or an integer >= 0",
    ),
    ("strategy.root_size", lambda v: is_int(v) and v >= 0, "must be an integer >= 0"),
    (
        "engine.workers",
        lambda v: is_int(v) and 0 <= v <= MAX_WORKERS,
        f"must be an integer in [0, {MAX_WORKERS}] (0: clients run in this process)",
    ),
    ("engine.cohort", lambda v: v in COHORT_MODES, f"must be one of {', '.join(COHORT_MODES)}"),
    # Ray waits forever for a client task that asks for infinite resources.
    ("engine.num_cpus", lambda v: is_real(v) and v > 0, "must be a finite number > 0"),
    ("engine.num_gpus", lambda v: is_real(v) and v >= 0, "must be a finite number >= 0"),
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
        import torch

        if not torch.cuda.is_available():
            raise _fail("device", device, "CUDA is not available on this machine; use device=cpu")
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise _fail("device", device, f"this machine has {torch.cuda.device_count()} GPU(s)")
        return
    raise _fail("device", device, "must be cpu, cuda or cuda:N")


def _prefixed(group: str, message: str) -> str:
    """A component's one-line complaint with the full key: ``beta=0.7: ...`` in group
    ``strategy`` becomes ``strategy.beta=0.7: ...``."""
    key = message.split(":")[0]
    if "=" in key and " " not in key.split("=")[0] and not key.startswith(f"{group}."):
        return f"{group}.{message}"
    return message


def _first_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _build(group: str, node: DictConfig, **kwargs: Any) -> Any:
    """Build a group entry (``simulator.schema.build``); its complaint -> ConfigError."""
    try:
        return build(group, node, **kwargs)
    except Exception as error:
        message = _first_cause(error)
        if re.match(r"[\w.]+=[^:]*: ", message):  # "key=value[, key=value]: constraint"
            raise ConfigError(_prefixed(group, message)) from None
        raise ConfigError(f"{group}={node.get('name', '?')}: {message}") from None


def _checked(group: str, check: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a component's own check; its ValueError (one line) -> ConfigError with the key."""
    try:
        return check(**kwargs)
    except ValueError as error:
        raise ConfigError(_prefixed(group, str(error).splitlines()[0])) from None


def unknown_key_message(
    key: str, value: Any, node: DictConfig, known: Iterable[str] | None = None
) -> str:
    """``KEY=VALUE: no such key`` for a key of ``node``, with the group entry it is not in
    and the closest of the ``known`` keys beside it (default: ``node``'s keys). A key of
    the first release's nested layout (``strategy.rule.beta``) names the key it is now."""
    if key in RENAMED:
        return f"{key}={_show(value)}: the setting is now {RENAMED[key]}"
    for old, new in MOVED.items():
        if key.startswith(f"{old}."):
            now = f"{new}.{key[len(old) + 1 :]}"
            return f"{key}={_show(value)}: the key is now {now} (parameters sit under {new}.)"
        if key == old:
            names = sorted(value) if isinstance(value, dict) else ["NAME"]
            now = ", ".join(f"{new}.{name}" for name in names)
            return f"{key}={_show(value)}: parameters now sit directly under {new}: {now}"
    parent, _, name = key.rpartition(".")
    siblings = sorted(str(k) for k in (node if known is None else known) if k != name)
    siblings = [k for k in siblings if not k.startswith("_")]
    close = difflib.get_close_matches(name, siblings, n=1)
    entry = node.get("name") if parent in GROUPS else None
    where = f" for {parent}={entry}" if entry is not None else ""
    hint = f"; did you mean {parent}{'.' if parent else ''}{close[0]}?" if close else ""
    return f"{key}={_show(value)}: no such key{where}{hint}"


def _given(node: DictConfig, key: str) -> Any:
    """The value of ``node[key]`` as given: an interpolation (+x=${y}) is shown, not resolved."""
    child = node._get_node(key)
    return OmegaConf.to_container(child) if isinstance(child, Container) else child._value()


def _component_keys(group: str, node: DictConfig) -> list[str] | None:
    """The keys an entry of an open group may hold: the group's settings and the
    parameters its component takes; None when the component takes ``**kwargs``."""
    known = [*SETTINGS[group], "_target_", "_partial_"]
    target = node.get("_target_")
    if target is None:
        return known
    from strategies.pipeline import accepted_keywords

    try:
        component = load_target(target)
    except ValueError as error:
        raise ConfigError(f"{group}.{error}") from None
    keywords = accepted_keywords(component)
    if "*" in keywords:
        return None
    # The first parameter (the updates) and what the run passes at each call are not
    # settable: a configured value would be silently replaced.
    first = next(iter(inspect.signature(component).parameters), None)
    if isinstance(component, type):
        first = None  # a class: its constructor's parameters are all settable
    return [*known, *sorted(keywords - RUN_KEYWORDS - {first})]


def _check_known_keys(node: DictConfig, prefix: str = "", *, open_groups: bool = True) -> None:
    """Refuse a key that no schema and no component has.

    Hydra adds a key given with ``+`` or ``++`` silently: at the top level it would be
    ignored (a typo such as ``+lrr=0.1`` runs with the default lr), in a group it would
    reach a constructor. The open groups' entries may hold their settings and the
    parameters of their component (read from the component, which imports it: with
    ``open_groups=False`` they are left to a later call).
    """
    group = prefix.rstrip(".")
    if group in SETTINGS and not open_groups:
        return
    if group in SETTINGS:
        known = _component_keys(group, node)
    else:
        schema = OmegaConf.get_type(node)
        if schema is None or not dataclasses.is_dataclass(schema):
            return
        known = [f.name for f in dataclasses.fields(schema)]
    for key in node:
        if known is not None and key not in known:
            raise ConfigError(unknown_key_message(f"{prefix}{key}", _given(node, key), node, known))
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not prefix:
            _check_known_keys(child, f"{prefix}{key}.", open_groups=open_groups)


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

    A config this process already found valid (the entry point checks it before the
    run) is not checked twice.
    """
    key = _validated_key(cfg)
    if key is not None and key in _VALIDATED:
        return
    check_values(cfg)
    _check_components(cfg)
    if key is not None:
        _VALIDATED.add(key)


def check_values(cfg: DictConfig) -> None:
    """The checks of ``validate`` that read the config alone: the keys of the top level
    and the typed groups, every value's range, the constraints between values and the
    attack window. None of them imports torch, Flower, the data libraries or a component,
    so a typo or a value out of range is answered in the time Hydra takes to compose."""
    _check_known_keys(cfg, open_groups=False)
    for key, ok, constraint in _RULES:
        value = OmegaConf.select(cfg, key)
        if _applies(cfg, key) and not ok(value):
            raise _fail(key, value, constraint)
    told = cfg.strategy.num_malicious
    if told is not None and is_int(told) and told >= cfg.clients_per_round:
        raise _fail(
            "strategy.num_malicious",
            told,
            f"must be below clients_per_round ({cfg.clients_per_round})",
            combination=True,
        )
    fake = cfg.fake_clients
    if fake and cfg.num_clients + fake > MAX_CLIENTS:
        raise _fail(
            "fake_clients",
            fake,
            f"num_clients + fake_clients must be <= {MAX_CLIENTS} (one node per client id)",
            combination=True,
        )
    if cfg.clients_per_round > cfg.num_clients + fake:
        federation = f"num_clients + fake_clients ({cfg.num_clients + fake})"
        raise _fail(
            "clients_per_round",
            cfg.clients_per_round,
            f"must be <= {federation if fake else f'num_clients ({cfg.num_clients})'}",
            combination=True,
        )
    _check_window(cfg)
    if not fake:  # with fake clients, their own complaint about the attack comes first
        _check_attack_chosen(cfg)


def _check_attack_chosen(cfg: DictConfig) -> None:
    if cfg.malicious_fraction > 0 and cfg.attack.name == "none":
        raise _fail(
            "malicious_fraction",
            cfg.malicious_fraction,
            "needs an attack: choose one with attack=<name>",
            combination=True,
        )


def _check_components(cfg: DictConfig) -> None:
    """The checks that build the components (importing them and torch) and run them once."""
    fake = cfg.fake_clients
    for group in (g for g in GROUPS if g in SETTINGS):  # keys read from the components
        entry = cfg._get_node(group)
        if isinstance(entry, DictConfig):
            _check_known_keys(entry, f"{group}.")
    threat = _threat(cfg)
    if fake:
        _check_fake_clients(cfg, threat)
    if threat.num_malicious >= cfg.num_clients:
        raise _fail(
            "malicious_fraction",
            cfg.malicious_fraction,
            f"rounds to all {cfg.num_clients} clients; at least one must be honest",
            combination=True,
        )
    _check_attack_chosen(cfg)
    _check_device(cfg.device)
    dataset = _build("dataset", cfg.dataset)
    _checked("dataset", dataset.check)
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
    model_factory = _build("model", cfg.model)
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
    partitioner = _build("partition", cfg.partition)
    built = _checked("partition", partitioner, num_partitions=cfg.num_clients, seed=0)
    check_dataset = getattr(built, "check_dataset", None)  # partition=natural needs ids
    if check_dataset is not None:
        try:
            check_dataset(dataset)
        except ValueError as error:
            raise ConfigError(str(error).splitlines()[0], combination=True) from None
    _build("engine", cfg.engine)
    _check_logger(cfg)
    _check_defence(cfg, threat)
    _check_attack(cfg, threat, dataset)


def _check_logger(cfg: DictConfig) -> None:
    """The logger's settings, and its library installed (found without importing it)."""
    logger = _build("logger", cfg.logger)
    missing = logger.missing_package() if logger is not None else None
    if missing:
        raise ConfigError(f"logger={cfg.logger.name}: {missing}")


def _check_fake_clients(cfg: DictConfig, threat: ThreatModel) -> None:
    """Fake clients hold no data: they need a colluding attack, and honest clients left."""
    site = threat.site
    if site != "adversary":
        need = (
            "an attack" if site == "none" else f"a colluding attack, not attack={cfg.attack.name}"
        )
        raise _fail(
            "fake_clients",
            cfg.fake_clients,
            f"fake clients hold no data; they need {need} (e.g. attack=mpaf or attack=alie)",
            combination=True,
        )
    if threat.malicious_per_round >= cfg.clients_per_round:
        raise _fail(
            "fake_clients",
            cfg.fake_clients,
            f"with the compromised clients, the expected attackers per round "
            f"({threat.malicious_per_round}) reach clients_per_round ({cfg.clients_per_round}); "
            "at least one sampled client must be honest",
            combination=True,
        )


def _threat(cfg: DictConfig) -> ThreatModel:
    """The run's threat model (``simulator.components.threat_model``), or ConfigError."""
    from simulator.components import threat_model

    try:
        return threat_model(cfg)
    except ValueError as error:
        raise ConfigError(_prefixed("attack", _first_cause(error))) from None
    except OverflowError:  # numpy draws client ids below 2^63
        raise _fail("num_clients", cfg.num_clients, "must be below 2^63") from None
    except Exception as error:  # an attack _target_ that does not exist
        raise ConfigError(f"attack={cfg.attack.name}: {_first_cause(error)}") from None


def _check_attack(cfg: DictConfig, threat: ThreatModel, dataset: Any) -> None:
    """Build the attack and run it once on small stand-in data.

    A colluding attack is called by the real ``Adversary`` on a seeded random
    ``(clients_per_round, 8)`` matrix with the configured share of attackers, so a bad
    parameter fails here, in one line, and not silently in every round; an attack that
    searches against the defence (``defend``) is given the run's defence, built for the
    stand-in rows. A poisoning must fit the data set's classes and images.
    """
    import torch

    from simulator.adversary import Adversary, NoKnowledge
    from simulator.components import attack_site
    from simulator.threat import count_for
    from strategies.pipeline import accepts

    attack = _build("attack", cfg.attack)
    site = attack_site(attack)
    if site != threat.site:  # the site is read from the _target_ before anything is built
        raise ConfigError(
            f"attack._target_={cfg.attack._target_}: builds a {site}-side attack; name the "
            "class itself for a client-side (Poisoning) attack"
        )
    if site == "adversary":
        n, f = cfg.clients_per_round, threat.malicious_per_round
        # Fake clients expected among the round's attackers (at least one where there are
        # any, so the check meets them); the others are compromised real clients.
        fake = 0
        if threat.fake_clients:
            share = threat.fake_clients / threat.total_clients
            fake = min(max(count_for(share, n), 1), max(f, 1))
        # One attacker among 10 clients with full knowledge: a failure is the attack's own
        # parameters (checked even when malicious_fraction is 0, so a sweep's bad value is
        # caught once; partial knowledge would see one update, too few for some attacks);
        # with the configured f, clients per round, fake clients and knowledge, the mix.
        checks = (
            (1, 0, max(n, 10), "full", False),
            (max(f - fake, 0), fake, n, threat.knowledge, True),
        )
        for real, fakes, rows, seen, combination in checks:
            if not real + fakes:
                continue
            stand_in = dataclasses.replace(
                threat,
                knowledge=seen,
                num_clients=rows - fakes,  # fake ids: the last rows
                fake_clients=fakes,
                malicious_clients=tuple(range(real)),
            )
            updates = torch.randn(rows, 8, generator=torch.Generator().manual_seed(0))
            # MPAF's w' and w_t: any vectors of the stand-in's width.
            inputs = {"base_model": lambda server_round, global_model: torch.ones(8)}
            adversary = Adversary(attack, stand_in, seed=0, inputs=inputs)
            extra = (
                {"defend": _stand_in_defence(cfg, threat, rows)}
                if accepts(attack, "defend")
                else {}
            )
            try:
                adversary(
                    updates, list(range(rows)), server_round=1, global_model=torch.zeros(8),
                    **extra,
                )  # fmt: skip
            except NoKnowledge:
                pass  # fake clients alone under partial knowledge: recorded per round
            except (ValueError, TypeError) as error:
                raise ConfigError(
                    _attack_error(cfg, error, real + fakes, rows), combination=combination
                ) from None
    if site == "client":
        _checked("attack", attack.check_classes, num_classes=dataset.num_classes)
        _check_poisoning_fits_text(cfg, attack, dataset)
        if hasattr(attack, "check_shape"):
            _checked("attack", attack.check_shape, input_shape=dataset.input_shape)


def _check_poisoning_fits_text(cfg: DictConfig, attack: Any, dataset: Any) -> None:
    """On text (an input shape that is not ``(C, H, W)``), refuse a poisoning that reads
    image shapes: one that has its own ``check_shape`` (pixel triggers, edge-case images).
    Label flipping only relabels and stays allowed."""
    from clients.poisoning import Poisoning

    shape = tuple(dataset.input_shape)
    if len(shape) == 3 or type(attack).check_shape is Poisoning.check_shape:
        return
    raise ConfigError(
        f"attack={cfg.attack.name}: works on images (C, H, W); dataset={cfg.dataset.name} "
        f"holds text sequences of {shape[0]} characters: use attack=label_flip or a "
        "colluding attack",
        combination=True,
    )


def _stand_in_defence(cfg: DictConfig, threat: ThreatModel, rows: int) -> Any:
    """The run's defence as ``defend`` for ``rows`` stand-in updates of 8 values (its
    checks ran before: ``_check_defence``)."""
    import torch

    from simulator.components import build_defence

    inputs: dict[str, Any] = {}
    if cfg.strategy.root_size >= 1:
        inputs["server_update"] = lambda server_round, global_model: torch.ones(8)
    seeded = lambda kind, server_round: torch.Generator().manual_seed(0)  # noqa: E731
    defence = build_defence(cfg, threat, inputs, seeded)
    return functools.partial(
        defence.preview, client_ids=list(range(rows)), server_round=1,
        num_examples=[1] * rows, global_model=torch.zeros(8),
    )  # fmt: skip


def _attack_error(cfg: DictConfig, error: Exception, attackers: int, n: int) -> str:
    reason = _first_cause(error)
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", reason)
    if unexpected:
        return f"attack.{unexpected.group(1)}: attack={cfg.attack.name} has no such parameter"
    return f"attack={cfg.attack.name} with {attackers} of {n} clients per round malicious: {reason}"


def _check_weighting(cfg: DictConfig, defence: Any) -> None:
    """``weighting=examples`` only for a rule that averages with client weights."""
    from strategies.pipeline import accepts

    if cfg.strategy.weighting == "examples" and not accepts(defence.rule, "weights"):
        raise _fail(
            "strategy.weighting",
            "examples",
            f"strategy={cfg.strategy.name} takes no client weights; use uniform",
        )


def _check_run_length(cfg: DictConfig, defence: Any) -> None:
    """A stage that needs rounds of history (FLDetector's window) checks it fits the run:
    its ``check_run(num_rounds=..., clients_per_round=...)`` raises ``ValueError``."""
    for name, stage in defence.stages():
        check = getattr(stage, "check_run", None)
        if check is not None:
            _checked(
                _stage_group(defence, name),
                check,
                num_rounds=cfg.num_rounds,
                clients_per_round=cfg.clients_per_round,
            )


def _stage_group(defence: Any, stage: str) -> str:
    """The config group a stage of ``defence`` came from: ``pre``, ``detect``, or
    ``strategy`` (the rule, the post-processing, and the detection a rule carries)."""
    group = stage.split(".")[0]
    if group == "detect":
        carried = len(getattr(defence.rule, "detectors", ()))
        return "strategy" if int(stage.split(".")[1]) < carried else "detect"
    return "pre" if group == "pre" else "strategy"


def _check_window(cfg: DictConfig) -> None:
    """The attack window starts within the run and ends after it starts."""
    start, stop = cfg.attack.start_round, cfg.attack.stop_round
    if start > cfg.num_rounds:
        raise _fail(
            "attack.start_round",
            start,
            f"after the last round (num_rounds={cfg.num_rounds}): the attack would never run",
            combination=True,
        )
    if stop is not None and stop < start:
        raise _fail(
            "attack.stop_round",
            stop,
            f"the window ends before it starts (attack.start_round={start})",
            combination=True,
        )


def _told(threat: ThreatModel, f: int) -> ThreatModel:
    return dataclasses.replace(threat, num_malicious_told=f)


def _check_defence(cfg: DictConfig, threat: ThreatModel) -> None:
    """Build the defence and run it on a zero matrix of the round's shape.

    Every precondition (Krum's n > 2f + 2, Bulyan's n >= 4f + 3, a trimmed-mean beta
    below 1/2, ...) is checked by the stages themselves, so running the defence on
    ``zeros(n, 2)`` checks the configuration exactly as a round will, in microseconds. A
    failure with f = 0 is a bad value; a failure only with the configured f is a
    combination (a sweep skips it).
    """
    import torch

    from simulator.components import build_defence

    _build("pre", cfg.pre)  # constructor complaints name their own group
    _build("detect", cfg.detect)
    n, told = cfg.clients_per_round, threat.num_malicious_told
    inputs: dict[str, Any] = {}
    if cfg.strategy.root_size >= 1:
        inputs["server_update"] = lambda server_round, global_model: torch.ones(2)
    seeded = lambda kind, server_round: torch.Generator().manual_seed(0)  # noqa: E731
    try:
        defences = [(build_defence(cfg, _told(threat, f), inputs, seeded), f) for f in (0, told)]
    except ValueError as error:
        message = _first_cause(error)
        if "server_update" in message:
            raise _fail(
                "strategy.root_size",
                cfg.strategy.root_size,
                f"strategy={cfg.strategy.name} needs a root set of at least 1 example",
            ) from None
        raise ConfigError(_prefixed("strategy", message)) from None
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"strategy={cfg.strategy.name}: {_first_cause(error)}") from None
    _check_weighting(cfg, defences[0][0])
    _check_run_length(cfg, defences[0][0])
    for defence, f in defences:
        combination = f != 0
        try:
            outcome = defence(
                torch.zeros(n, 2), list(range(n)), server_round=1, num_examples=[1] * n,
                global_model=torch.zeros(2),
            )  # fmt: skip
        except (ValueError, TypeError) as error:  # a stage that cannot be called at all
            raise ConfigError(f"strategy={cfg.strategy.name}: {_first_cause(error)}") from None
        if outcome.step is None:
            reason = outcome.reason
            if combination and cfg.strategy.num_malicious is None:
                reason += f" (f from malicious_fraction={_show(cfg.malicious_fraction)})"
            group = _stage_group(defence, outcome.stage)
            raise ConfigError(
                f"{group}={cfg[group].name} with clients_per_round={n}: {reason}",
                combination=combination,
            )
