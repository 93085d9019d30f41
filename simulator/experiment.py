"""One run, in three steps any engine can share: ``prepare``, run the apps, ``finish``.

``prepare`` loads the data, builds the model, the threat model, the ServerPlan and the
ClientSpec from a config; an engine then runs the ServerApp over its clients; ``finish``
writes the summary. The in-process engines call all three in the ``oleander`` process;
on Flower's own runtimes (``flwr run``, the ray and deployment engines) the ServerApp
calls them in the process Flower starts for it (``simulator.server_app.app``), and
``client_spec`` rebuilds the same ClientSpec in every ClientApp process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from simulator import checkpoint
from simulator.adversary import Adversary
from simulator.client_app import ClientSpec
from simulator.components import (
    attack_inputs,
    build_defence,
    defence_name,
    defence_singles_out,
    federation_spec,
    threat_model,
    train_config,
)
from simulator.config import ConfigError, validate
from simulator.federation import Federation, load_federation
from simulator.main import config_digest, quiet_libraries, versions
from simulator.models import build_model
from simulator.pitfalls import end_warnings, start_warnings
from simulator.progress import RoundProgress
from simulator.results import RunRecorder, backdoor_lifespan
from simulator.run_config import typed_overrides
from simulator.schema import build, own_parameters
from simulator.seeding import Stream, derive_seed, torch_generator
from simulator.server_app import Checkpointer, ServerPlan, root_update_fn
from simulator.strategy import OleanderStrategy
from simulator.threat import ThreatModel
from simulator.tracking import Tracker, open_tracker

log = logging.getLogger("oleander")


def client_spec(cfg: DictConfig) -> ClientSpec:
    """What every client needs, from the config alone (the same in every process)."""
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    attack = build("attack", cfg.attack)
    threat = threat_model(cfg)
    poisoning = attack if threat.site == "client" else None
    return ClientSpec(
        federation=federation_spec(cfg),
        model=own_parameters("model", container["model"]),
        seed=cfg.seed,
        threat=threat,
        device=cfg.device,
        torch_threads=cfg.torch_threads,
        poison=own_parameters("attack", container["attack"]) if poisoning else None,
        failure_rate=cfg.faults.client_failure_rate,
    )


@dataclass
class PreparedRun:
    """A run ready for an engine: the ServerApp's plan, the clients' spec, the recorder."""

    cfg: DictConfig
    output_dir: Path
    digest: str
    plan: ServerPlan
    client_spec: ClientSpec
    recorder: RunRecorder
    progress: RoundProgress
    federation: Federation
    started: float
    tracker: Tracker
    warnings: list[str]  # set-ups that test nothing (simulator.pitfalls)


def prepare(
    cfg: DictConfig,
    output_dir: Path,
    *,
    progress: bool | None = None,
    sweep_dir: Path | None = None,
    asked: Sequence[str] | None = None,
) -> PreparedRun:
    """Validate ``cfg``, load the data and build everything the apps need to run it.

    ``progress`` overrides ``cfg.progress`` (a ServerApp in a process of Flower's has no
    terminal to draw on); ``sweep_dir`` groups the run's tracked run (``logger=``);
    ``asked``: the overrides typed for it, for the set-up warnings (default: Hydra's, in
    the process Hydra runs it in).
    """
    started = time.perf_counter()
    validate(cfg)
    digest = config_digest(cfg)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(".*.tmp"):  # left by a write a kill cut short
        stale.unlink(missing_ok=True)
    quiet_libraries(cfg.verbose)
    torch.set_num_threads(cfg.torch_threads)

    spec = client_spec(cfg)
    federation = load_federation(spec.federation)
    data = federation.data
    initial_model = build_model(
        build("model", cfg.model), data.input_shape, data.num_classes,
        derive_seed(cfg.seed, Stream.MODEL),
    )  # fmt: skip
    attack = build("attack", cfg.attack)
    threat = spec.threat
    poisoning = attack if threat.site == "client" else None
    if poisoning is not None:  # what the clients derive too (edge-case examples)
        try:
            poisoning.prepare(
                data.train.x, data.train.y, torch_generator(cfg.seed, Stream.EDGE_CASE)
            )
        except ValueError as error:  # "key=value: constraint", found only with the data
            raise ConfigError(f"attack.{error}") from None
    shown = cfg.progress if progress is None else progress
    round_progress = RoundProgress(cfg.num_rounds, enabled=shown)
    # logger=...: a tracked run beside the run's files; it opens at the first round, and
    # its failure is one warning (entering it as a context ends it as failed if the run stops)
    tracker = open_tracker(cfg, output_dir, sweep_dir)
    recorder = RunRecorder(
        output_dir,
        cfg.num_rounds,
        on_round=round_progress.update,
        malicious=threat.malicious,
        fake=threat.fake,
        attacking=threat.active,
        on_row=tracker.log_round,
        detector=defence_singles_out(cfg),
        rule=cfg.strategy.name,
    )
    recipe = train_config(cfg)
    server_inputs: dict[str, Any] = {}
    if federation.root is not None:
        server_inputs["server_update"] = root_update_fn(
            initial_model, federation.root, recipe, cfg.seed, cfg.device
        )

    def build_strategy(node_to_client: dict[int, int]) -> Any:
        adversary = None
        if threat.site == "adversary" and threat.malicious:
            inputs = attack_inputs(cfg, data.input_shape, data.num_classes)
            adversary = Adversary(attack, threat, cfg.seed, inputs=inputs)
        return OleanderStrategy(
            build_defence(cfg, threat, server_inputs),
            node_to_client=node_to_client,
            clients_per_round=cfg.clients_per_round,
            seed=cfg.seed,
            adversary=adversary,
            observer=recorder,
            device=cfg.device,
        )

    plan = ServerPlan(
        initial_model=initial_model,
        test=data.test,
        num_clients=threat.total_clients,  # the real clients, then the fake ones
        num_rounds=cfg.num_rounds,
        train_config=recipe,
        build_strategy=build_strategy,
        on_evaluated=recorder.on_evaluated,
        device=cfg.device,
        eval_batch_size=cfg.eval_batch_size,
        success=None if poisoning is None else poisoning.success_examples(data.test.x, data.test.y),
        checkpoint=Checkpointer(
            output_dir / checkpoint.FILENAME, cfg.checkpoint_every, digest, recorder
        )
        if cfg.checkpoint_every
        else None,
    )
    return PreparedRun(
        cfg, output_dir, digest, plan, spec, recorder, round_progress, federation, started,
        tracker, start_warnings(cfg, threat, typed_overrides() if asked is None else asked),
    )  # fmt: skip


def warn_at_start(cfg: DictConfig) -> None:
    """Log the set-up warnings of a run whose ServerApp runs in another process."""
    for warning in start_warnings(cfg, threat_model(cfg), typed_overrides()):
        log.warning("warning: %s", warning)


def attack_line(cfg: DictConfig, threat: ThreatModel) -> str:
    """What the start-up line says of the attack: its name, who attacks, the f told."""
    if cfg.attack.name == "none":
        return "no attack"
    fake = f" + {threat.fake_clients} fake" if threat.fake_clients else ""
    return (
        f"attack {cfg.attack.name} by {len(threat.malicious_clients)}{fake} of "
        f"{cfg.num_clients} (malicious_fraction={cfg.malicious_fraction:g}), "
        f"f={threat.num_malicious_told} told"
    )


def announce(run: PreparedRun) -> None:
    """The one line that says what is about to run, and where its results go."""
    cfg, threat = run.cfg, run.client_spec.threat
    log.info(
        "%s: %d clients%s (%d per round), %d rounds, %s on %s, %s, engine %s -> %s",
        run.federation.data.name,
        cfg.num_clients,
        f" + {threat.fake_clients} fake" if threat.fake_clients else "",
        cfg.clients_per_round,
        cfg.num_rounds,
        defence_name(cfg),
        cfg.model.name,
        attack_line(cfg, threat),
        cfg.engine.name,
        run.output_dir,
    )
    for warning in run.warnings:
        log.warning("warning: %s", warning)


def static_effective(run: PreparedRun) -> dict[str, Any]:
    """Effective parameters fixed for the whole run: the f the defence was told, FLTrust's
    root set size, a client-side attack's boost as resolved."""
    cfg, threat = run.cfg, run.client_spec.threat
    found: dict[str, Any] = {"num_malicious_told": threat.num_malicious_told}
    if run.federation.root is not None:
        found["strategy.root_size"] = len(run.federation.root.y)
    if cfg.attack.name != "none" and cfg.attack.get("boost") is not None:
        found["attack.boost"] = float(cfg.attack.boost)
    return found


def finish(run: PreparedRun) -> dict[str, Any]:
    """Write ``summary.json`` for a run whose rounds are done; the summary."""
    cfg, threat, recorder = run.cfg, run.client_spec.threat, run.recorder
    summary = recorder.summary(
        {
            "seed": cfg.seed,
            "config_digest": run.digest,
            "versions": versions(),
            "engine": cfg.engine.name,
            "dataset": run.federation.data.name,
            "strategy": cfg.strategy.name,
            "pre_aggregation": cfg.pre.name,
            "detection": cfg.detect.name,
            "num_malicious_told": threat.num_malicious_told,
            "model": cfg.model.name,
            "num_clients": cfg.num_clients,
            "fake_clients": threat.fake_clients,
            "clients_per_round": cfg.clients_per_round,
            "threat_model": threat.summary(),
            "data_note": run.federation.data.note,
        }
    )
    summary["effective"] = {**static_effective(run), **summary["effective"]}
    summary["warnings"] = end_warnings(run.warnings, summary["effective"])
    for warning in summary["warnings"][len(run.warnings) :]:
        log.warning("warning: %s", warning)
    summary["backdoor_lifespan"] = backdoor_lifespan(
        recorder.rounds, threat.stop_round, cfg.attack.lifespan_threshold
    )
    summary["wall_seconds"] = time.perf_counter() - min(run.started, recorder.started)
    recorder.write_summary(summary)
    run.tracker.finish(summary)
    (run.output_dir / checkpoint.FILENAME).unlink(missing_ok=True)  # finished: summary.json says so
    log.info(
        "final accuracy %.4f (best %.4f at round %s) in %.1f s; results in %s",
        summary["final_accuracy"] or float("nan"),
        summary["best_accuracy"] or float("nan"),
        summary["best_round"],
        summary["wall_seconds"],
        run.output_dir,
    )
    return summary
