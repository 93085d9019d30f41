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
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from simulator import __version__
from simulator.config import ConfigError, validate
from simulator.preflight import CONFIG_DIR, CONFIG_NAME, fail, preflight
from simulator.schema import build

log = logging.getLogger("oleander")
# Keys that change how a run is executed or shown, never its numbers.
NON_RESULT_KEYS = ("engine", "progress", "verbose", "checkpoint_every", "logger")


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
    for name in ("alembic", "sqlalchemy", "ray", "filelock", "datasets", "fsspec", "httpx"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's run: ``simulate`` into Hydra's output directory."""
    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    sweep_dir = Path(hydra_config.sweep.dir) if multirun else None
    return simulate(cfg, Path(hydra_config.runtime.output_dir), sweep_dir=sweep_dir)


def simulate(
    cfg: DictConfig,
    output_dir: Path,
    *,
    client_mods: Sequence[Any] = (),
    sweep_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one simulation described by ``cfg``, writing into ``output_dir``; its summary.

    ``client_mods`` are Flower ClientApp mods added to every client (tests use them to
    stand in for clients that misbehave); engines that run the apps in Flower's own
    processes cannot take them. ``sweep_dir``: the sweep the run is a point of (its
    tracked run, ``logger=``, is grouped by it).
    """
    from simulator import experiment
    from simulator.client_app import make_client_app
    from simulator.interrupt import StopRequest
    from simulator.server_app import make_server_app

    validate(cfg)
    engine = build("engine", cfg.engine)
    if hasattr(engine, "submit"):  # a Flower runtime that runs the apps in its own processes
        if client_mods:
            raise ConfigError(f"engine={cfg.engine.name}: client mods run only in-process")
        quiet_libraries(cfg.verbose)
        return engine.submit(cfg, Path(output_dir), sweep_dir=sweep_dir)
    run = experiment.prepare(cfg, output_dir, sweep_dir=sweep_dir)
    stop = StopRequest()
    run.plan.stop = stop
    # The inline engine's workers wait while the server evaluates: it may use their cores.
    # (Evaluation with more threads can differ from one thread in the last float bits.)
    workers = int(getattr(engine, "workers", 0) or 0)
    run.plan.eval_threads = max(cfg.torch_threads, workers) if workers else None
    experiment.announce(run)
    with stop, run.progress, run.tracker:
        engine.run(
            make_server_app(run.plan),
            functools.partial(make_client_app, run.client_spec, mods=list(client_mods)),
            run.plan.num_clients,
            verbose=cfg.verbose,
            device=cfg.device,
        )
    return experiment.finish(run)


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


def normalise(args: Sequence[str]) -> list[str]:
    """``+experiment=X`` (the first release's spelling) is ``experiment=X``: the primary
    config's defaults list holds ``experiment: null`` (and ``debug: null``)."""
    return [arg[1:] if arg.startswith(("+experiment=", "+debug=")) else arg for arg in args]


def cli(argv: Sequence[str] | None = None) -> None:
    """Console script ``oleander``: check the overrides, then hand over to Hydra."""
    args = normalise(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in args):
        from simulator.usage import help_text

        print(help_text(Path(CONFIG_DIR)))
        return
    preflight(args)
    sys.argv = [sys.argv[0], *args]
    hydra_main()
