"""The ``oleander`` command: Hydra entry point for one run or a sweep of runs.

``cli`` checks every override before Hydra creates any output directory (bad input is
one line on stderr and exit status 2); ``run`` is the Hydra task: load and partition the
data, build the ServerApp and ClientApp, run them on the chosen engine, and write the
results into Hydra's output directory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from simulator import __version__, checkpoint
from simulator.config import ConfigError, validate
from simulator.preflight import CONFIG_DIR, CONFIG_NAME, fail, preflight

log = logging.getLogger("oleander")

MODEL_STREAM = 4
# Keys that change how a run is executed or shown, never its numbers.
NON_RESULT_KEYS = ("engine", "progress", "verbose", "checkpoint_every")


def config_digest(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config without the keys that cannot change the results."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    for key in (*NON_RESULT_KEYS, "hydra"):
        container.pop(key, None)
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()


def versions() -> dict[str, str]:
    found = {"oleander": __version__, "python": platform.python_version()}
    for package in ("flwr", "torch", "numpy", "hydra-core", "flwr-datasets"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def quiet_libraries(verbose: bool) -> None:
    """Flower logs every round at INFO; keep it (and Ray) quiet unless asked."""
    # CRITICAL: Flower's runtimes log a failing client task's traceback at ERROR; the
    # failure is recorded in rounds.csv instead.
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.CRITICAL)
    # Flower's link state sets up SQLAlchemy/alembic, which log at INFO through the root.
    for name in ("alembic", "sqlalchemy", "ray", "filelock", "datasets", "fsspec"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's run: ``simulate`` into Hydra's output directory."""
    return simulate(cfg, Path(HydraConfig.get().runtime.output_dir))


def simulate(
    cfg: DictConfig, output_dir: Path, *, client_mods: Sequence[Any] = ()
) -> dict[str, Any]:
    """Run one simulation described by ``cfg``, writing into ``output_dir``; its summary.

    ``client_mods`` are Flower ClientApp mods added to every client (tests use them to
    stand in for clients that misbehave).
    """
    import torch

    from clients.app import ClientSpec, make_client_app, train_config_record
    from simulator.adversary import Adversary
    from simulator.federation import FederationSpec, load_federation
    from simulator.interrupt import StopRequest
    from simulator.models import build_model
    from simulator.progress import RoundProgress
    from simulator.results import RunRecorder
    from simulator.seeding import derive_seed
    from simulator.server_app import Checkpointer, ServerPlan, make_server_app, root_update_fn
    from simulator.threat import attackers_told, malicious_clients

    started = time.perf_counter()
    validate(cfg)
    digest = config_digest(cfg)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(".*.tmp"):  # left by a write a kill cut short
        stale.unlink(missing_ok=True)
    quiet_libraries(cfg.verbose)
    torch.set_num_threads(cfg.torch_threads)
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]

    federation_spec = FederationSpec(
        dataset=container["dataset"],
        partition=container["partition"],
        num_clients=cfg.num_clients,
        seed=cfg.seed,
        root_size=cfg.strategy.root_size,
    )
    federation = load_federation(federation_spec)
    data = federation.data
    initial_model = build_model(
        instantiate(cfg.model),
        data.input_shape,
        data.num_classes,
        derive_seed(cfg.seed, MODEL_STREAM),
    )
    malicious = frozenset(malicious_clients(cfg.seed, cfg.num_clients, cfg.malicious_fraction))
    poison = None if cfg.attack.poison is None else instantiate(cfg.attack.poison)
    adversary = None
    knowledge = cfg.attack.knowledge or ("full" if cfg.attack.craft is not None else None)
    if cfg.attack.craft is not None and malicious:
        adversary = Adversary(instantiate(cfg.attack.craft), malicious, knowledge, cfg.seed)
    client_spec = ClientSpec(
        federation=federation_spec,
        model=container["model"],
        seed=cfg.seed,
        device=cfg.device,
        torch_threads=cfg.torch_threads,
        malicious=malicious,
        poison=container["attack"]["poison"],
        failure_rate=cfg.faults.client_failure_rate,
    )
    progress = RoundProgress(cfg.num_rounds, enabled=cfg.progress)
    recorder = RunRecorder(
        output_dir, cfg.num_rounds, on_round=progress.update, malicious=malicious
    )

    told = attackers_told(cfg.strategy.num_malicious, cfg.malicious_fraction, cfg.clients_per_round)
    server_update_fn = None
    if federation.root is not None:
        server_update_fn = root_update_fn(
            initial_model, federation.root, train_config_record(cfg), cfg.seed, cfg.device
        )

    def build_strategy(node_to_client: dict[int, int]) -> Any:
        return instantiate(
            cfg.strategy,
            node_to_client=node_to_client,
            clients_per_round=cfg.clients_per_round,
            seed=cfg.seed,
            device=cfg.device,
            observer=recorder,
            num_malicious=told,
            pre=instantiate(cfg.pre.steps),
            server_update_fn=server_update_fn,
            adversary=adversary,
        )

    plan = ServerPlan(
        initial_model=initial_model,
        test=data.test,
        num_clients=cfg.num_clients,
        num_rounds=cfg.num_rounds,
        train_config=train_config_record(cfg),
        build_strategy=build_strategy,
        on_evaluated=recorder.on_evaluated,
        device=cfg.device,
        eval_batch_size=cfg.eval_batch_size,
        success=None if poison is None else poison.success_examples(data.test.x, data.test.y),
        checkpoint=Checkpointer(
            output_dir / checkpoint.FILENAME, cfg.checkpoint_every, digest, recorder
        )
        if cfg.checkpoint_every
        else None,
    )
    stop = StopRequest()
    plan.stop = stop
    engine = instantiate(cfg.engine)
    # The inline engine's workers wait while the server evaluates: it may use their cores.
    # (Evaluation with more threads can differ from one thread in the last float bits.)
    workers = int(getattr(engine, "workers", 0) or 0)
    plan.eval_threads = max(cfg.torch_threads, workers) if workers else None
    log.info(
        "%s: %d clients (%d per round), %d rounds, %s on %s, engine %s -> %s",
        data.name,
        cfg.num_clients,
        cfg.clients_per_round,
        cfg.num_rounds,
        cfg.strategy.name,
        cfg.model.name,
        engine.name,
        output_dir,
    )
    with stop, progress:
        engine.run(
            make_server_app(plan),
            functools.partial(make_client_app, client_spec, mods=list(client_mods)),
            cfg.num_clients,
            verbose=cfg.verbose,
            device=cfg.device,
        )
    summary = recorder.summary(
        {
            "seed": cfg.seed,
            "config_digest": digest,
            "versions": versions(),
            "engine": engine.name,
            "dataset": data.name,
            "strategy": cfg.strategy.name,
            "pre_aggregation": cfg.pre.name,
            "num_malicious_told": told,
            "model": cfg.model.name,
            "num_clients": cfg.num_clients,
            "clients_per_round": cfg.clients_per_round,
            "threat_model": {
                "malicious_fraction": cfg.malicious_fraction,
                "attack": cfg.attack.name,
                "knowledge": knowledge,
                "parameters": _attack_parameters(container["attack"]),
                "where": _attack_site(cfg),
                "malicious_clients": sorted(malicious),
                "num_malicious": len(malicious),
                "num_malicious_told": told,
                "rounding": "round half up: floor(fraction * n + 1/2)",
            },
            "data_note": data.note,
        }
    )
    summary["wall_seconds"] = time.perf_counter() - min(started, recorder.started)
    recorder.write_summary(summary)
    (output_dir / checkpoint.FILENAME).unlink(missing_ok=True)  # finished: summary.json says so
    log.info(
        "final accuracy %.4f (best %.4f at round %s) in %.1f s; results in %s",
        summary["final_accuracy"] or float("nan"),
        summary["best_accuracy"] or float("nan"),
        summary["best_round"],
        summary["wall_seconds"],
        output_dir,
    )
    return summary


def finished_summary(output_dir: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """The summary of a finished run of this very config in ``output_dir``, else None."""
    path = output_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("config_digest") != config_digest(cfg):
        return None
    return summary


def record_skipped(output_dir: Path, cfg: DictConfig, reason: str) -> None:
    """``skipped.json``: a sweep point that cannot run, with the reason (for the report)."""
    from simulator.results import atomic_write_text

    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "reason": reason,
        "overrides": list(HydraConfig.get().overrides.task),
        "config_digest": config_digest(cfg),
    }
    atomic_write_text(output_dir / "skipped.json", json.dumps(payload, indent=2) + "\n")


def _attack_parameters(attack: dict[str, Any]) -> dict[str, Any]:
    """The attack's own settings (ALIE's z and sign, a trigger, a boost) for the summary."""
    part = attack.get("craft") or attack.get("poison") or {}
    params = {k: v for k, v in part.items() if not k.startswith("_")}
    if attack.get("name") == "alie":
        params["form"] = "mu - z * sigma (Baruch et al.: the paper's sign)"
    return params


def _attack_site(cfg: DictConfig) -> str:
    if cfg.attack.craft is not None:
        return "server-side colluding adversary, between replies and aggregation"
    if cfg.attack.poison is not None:
        return "inside the malicious clients"
    return "none"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra's task function: one run, with errors turned into one clear line."""
    from simulator.checkpoint import CheckpointError
    from simulator.data import DataError
    from simulator.interrupt import RunInterrupted

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    finished = finished_summary(output_dir, cfg)
    if finished is not None:
        log.info("already finished with this config; results in %s", output_dir)
        return finished["final_accuracy"]
    try:
        summary = run(cfg)
    except (ConfigError, DataError, CheckpointError) as error:
        if multirun:
            record_skipped(output_dir, cfg, str(error))
            log.error("skipped: %s", error)
            return None
        fail(str(error))
    except RunInterrupted as stopped:
        where = f" hydra.run.dir={output_dir}" if not multirun else ""
        fail(
            f"{stopped}; its checkpoint is kept: run the same command again{where} to resume",
            status=128 + stopped.signum,
        )
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume from the last checkpoint", 130)
    except Exception as error:  # anything else: one line here, the traceback in the log
        log.debug("run failed", exc_info=True)
        logfile = Path(HydraConfig.get().runtime.output_dir) / f"{HydraConfig.get().job.name}.log"
        message = f"run failed: {type(error).__name__}: {error}".splitlines()[0]
        if multirun:
            log.error("%s (traceback in %s)", message, logfile)
            return None
        fail(f"{message} (traceback in {logfile})", status=1)
    return summary["final_accuracy"]


def cli(argv: Sequence[str] | None = None) -> None:
    """Console script ``oleander``: check the overrides, then hand over to Hydra."""
    args = list(sys.argv[1:] if argv is None else argv)
    preflight(args)
    sys.argv = [sys.argv[0], *args]
    hydra_main()
