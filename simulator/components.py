"""A run's components built from its config: the threat model, the defence, the recipe.

The entry point and the config checks build them the same way, here, so a config that
passes the checks builds exactly what the run will use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig

from clients.poisoning import Poisoning
from clients.training import TrainConfig
from simulator.federation import FederationSpec
from simulator.schema import build, load_target, own_parameters, parameters_of
from simulator.seeding import Stream, derive_seed, torch_generator
from simulator.threat import ThreatModel
from strategies.base import can_single_out
from strategies.pipeline import Defence
from strategies.post import ServerLearningRate

GENERATOR_STREAMS = {"aggregation": Stream.AGGREGATION, "detection": Stream.DETECTION}


def federation_spec(cfg: DictConfig) -> FederationSpec:
    """What decides the data and who holds which part of it."""
    return FederationSpec(
        dataset=own_parameters("dataset", cfg.dataset),
        partition=own_parameters("partition", cfg.partition),
        num_clients=cfg.num_clients,
        seed=cfg.seed,
        root_size=cfg.strategy.root_size,
    )


def train_config(cfg: DictConfig) -> TrainConfig:
    """The local training recipe every client (and FLTrust's server) follows."""
    return TrainConfig(
        lr=float(cfg.lr),
        batch_size=int(cfg.batch_size),
        local_epochs=int(cfg.local_epochs),
        local_steps=None if cfg.local_steps is None else int(cfg.local_steps),
        momentum=float(cfg.momentum),
        weight_decay=float(cfg.weight_decay),
    )


def attack_site(attack: Any) -> str:
    """Where a built attack runs: ``client`` (data poisoning in the malicious clients),
    ``adversary`` (a colluding model-poisoning attack on the server side) or ``none``."""
    if attack is None:
        return "none"
    return "client" if isinstance(attack, Poisoning) else "adversary"


def configured_site(cfg: DictConfig) -> str:
    """Where the configured attack runs, read from its ``_target_`` without building it."""
    target = cfg.attack.get("_target_")
    if target is None:
        return "none"
    component = load_target(target)
    is_poisoning = isinstance(component, type) and issubclass(component, Poisoning)
    return "client" if is_poisoning else "adversary"


def attack_parameters(cfg: DictConfig) -> dict[str, Any]:
    """The attack's own settings (ALIE's z and sign, a trigger, a boost) for the summary."""
    params = parameters_of("attack", cfg.attack)
    if cfg.attack.name == "alie":
        params["form"] = "mu - z * sigma (Baruch et al.: the paper's sign)"
    return params


def threat_model(cfg: DictConfig) -> ThreatModel:
    """The run's threat model, built once from its config."""
    return ThreatModel.build(
        seed=cfg.seed,
        num_clients=cfg.num_clients,
        clients_per_round=cfg.clients_per_round,
        malicious_fraction=cfg.malicious_fraction,
        num_malicious_told=cfg.strategy.num_malicious,
        attack=cfg.attack.name,
        site=configured_site(cfg),
        knowledge=cfg.attack.knowledge,
        parameters=attack_parameters(cfg),
        fake_clients=cfg.fake_clients,
        start_round=cfg.attack.start_round,
        stop_round=cfg.attack.stop_round,
    )


def attack_inputs(
    cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int
) -> dict[str, Callable[[int, torch.Tensor | None], torch.Tensor]]:
    """What only the run can offer a colluding attack, computed for an attack that names it.

    ``base_model``: the attacker's base model w' (MPAF, Cao and Gong 2022: a random
    initialisation) as one flat vector in the global model's layout: the run's model
    architecture, initialised from the seed's ``Stream.BASE_MODEL`` (so never the
    initial global model), built once on first use.
    """
    from simulator.arrays import ArrayLayout, to_array_record
    from simulator.models import build_model

    built: list[torch.Tensor] = []

    def base_model(server_round: int, global_model: torch.Tensor | None) -> torch.Tensor:
        if not built:
            model = build_model(
                build("model", cfg.model), input_shape, num_classes,
                derive_seed(cfg.seed, Stream.BASE_MODEL),
            )  # fmt: skip
            record = to_array_record(model.state_dict())
            built.append(ArrayLayout.of(record).flatten(record))  # shape: (d,)
        return built[0]

    return {"base_model": base_model}


def generators(seed: int) -> Callable[[str, int], torch.Generator]:
    """``generator(kind, round)`` for the defence's stages, one stream per kind."""

    def generator(kind: str, server_round: int) -> torch.Generator:
        return torch_generator(seed, GENERATOR_STREAMS[kind], server_round)

    return generator


def defence_name(cfg: DictConfig) -> str:
    """``detect+pre+rule`` without the stages that are ``none``: ``nnm+krum``."""
    stages = (cfg.detect.name, cfg.pre.name, cfg.strategy.name)
    return "+".join(s for s in stages if s != "none")


def build_defence(
    cfg: DictConfig,
    threat: ThreatModel,
    inputs: Mapping[str, Callable[[int, torch.Tensor | None], Any]] | None = None,
    generator: Callable[[str, int], torch.Generator] | None = None,
) -> Defence:
    """The run's defence: ``detect`` -> ``pre`` -> ``strategy`` -> the server learning rate.

    The stages are told ``threat.num_malicious_told`` attackers. ``inputs`` offers what
    only the run can compute (FLTrust's ``server_update``); ``generator`` defaults to the
    run's seeded streams.
    """
    pre = build("pre", cfg.pre)
    detect = build("detect", cfg.detect)
    return Defence(
        build("strategy", cfg.strategy),
        pre=() if pre is None else (pre,),
        detect=() if detect is None else (detect,),
        post=(ServerLearningRate(cfg.strategy.server_lr),),
        num_malicious=threat.num_malicious_told,
        weight_by_examples=cfg.strategy.weighting == "examples",
        inputs=inputs,
        generator=generator if generator is not None else generators(cfg.seed),
        name=cfg.strategy.name,
    )


def defence_singles_out(cfg: DictConfig) -> bool:
    """Whether the run's defence can flag clients: a detection stage, or a rule marked with
    ``strategies.base.singles_out`` (Krum, FLTrust, ...). Otherwise its detection figures
    are "not a detector" rather than 0."""
    detect = build("detect", cfg.detect)
    return detect is not None or can_single_out(build("strategy", cfg.strategy))
