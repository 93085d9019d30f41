"""The ``oleander`` command: Hydra entry point for one run or a sweep of runs.

``cli`` checks every override before Hydra creates any output directory (bad input is
one line on stderr and exit status 2); ``run`` is the Hydra task: load and partition the
data, build the ServerApp and ClientApp, run them on the chosen engine, and write the
results into Hydra's output directory.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from simulator import __version__
from simulator.config import ConfigError, validate
from simulator.preflight import CONFIG_DIR, CONFIG_NAME, JOB_NAME, fail, preflight
from simulator.run_names import NON_RESULT_KEYS, record_run
from simulator.schema import build

# torch, Flower and the data libraries are imported where a run needs them (simulate and
# the modules it imports): --help, --cfg and bad input are answered without them.

log = logging.getLogger("oleander")


def config_digest(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config without the keys that cannot change the results."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    for key in (*NON_RESULT_KEYS, "hydra"):
        container.pop(key, None)
    return hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()


def versions() -> dict[str, str]:
    from importlib import metadata

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

    engine = build("engine", cfg.engine)
    if hasattr(engine, "submit"):  # a Flower runtime that runs the apps in its own processes
        validate(cfg)  # here, before any process starts (prepare validates in-process runs)
        if client_mods:
            raise ConfigError(f"engine={cfg.engine.name}: client mods run only in-process")
        quiet_libraries(cfg.verbose)
        experiment.warn_at_start(cfg)  # the ServerApp's own log shows only the rounds
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


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: one run, with errors turned into one clear line."""
    from simulator.checkpoint import CheckpointError
    from simulator.data import DataError
    from simulator.interrupt import RunInterrupted

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if multirun:
        sweep_dir = Path(HydraConfig.get().sweep.dir)
        name = os.path.relpath(output_dir, sweep_dir.resolve())
        record_run(sweep_dir, name, list(HydraConfig.get().overrides.task))
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


hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)(task)


def normalise(args: Sequence[str]) -> list[str]:
    """``+experiment=X`` (the first release's spelling) is ``experiment=X``: the primary
    config's defaults list holds ``experiment: null`` (and ``debug: null``)."""
    return [arg[1:] if arg.startswith(("+experiment=", "+debug=")) else arg for arg in args]


def cli(argv: Sequence[str] | None = None) -> None:
    """Console script ``oleander``: check the overrides, then hand over to Hydra.

    Without ``argv`` (the process's own command line) the start-up's objects, torch's,
    Flower's and the data libraries' modules among them, live until the process exits:
    the garbage collector is off while the preflight imports them and they are then
    frozen out of its walks (``gc.freeze``), including the interpreter's last ones at
    exit. Each full walk over them costs 0.1-0.2 s on two cores and frees nothing; files
    are closed and exit handlers run as before. An in-process caller (``argv`` given)
    keeps the collector as it was.
    """
    own_process = argv is None
    if own_process:
        gc.disable()
    try:
        args = normalise(sys.argv[1:] if argv is None else argv)
        if any(arg in ("-h", "--help") for arg in args):
            from simulator.usage import help_text

            print(help_text(Path(CONFIG_DIR)))
            return
        composed = preflight(args)
        if own_process:
            gc.freeze()
            gc.enable()
        sys.argv = [sys.argv[0], *args]
        if composed is not None and composed.hydra.mode is None:
            run_composed(composed)
        else:  # a sweep, Hydra's own flags, or a config that sets hydra.mode itself
            hydra_main()
    finally:
        if own_process:
            gc.freeze()


def run_composed(cfg: DictConfig) -> None:
    """Run ``task`` on a single run's config as composed and checked by the preflight.

    What ``hydra.main`` does for a run, less its two compositions of the same config
    (one to read ``hydra.mode``, one for the run; about 0.15 s each on two cores): the
    same output directory, logging, ``.hydra/`` files, callbacks and error reports.
    """
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.utils import run_and_report
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext

    def launch() -> None:
        configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
        cfg.hydra.mode = RunMode.RUN  # as hydra.main's run, which passes hydra.mode=RUN
        cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
        callbacks = Callbacks(cfg)
        callbacks.on_run_start(config=cfg, config_name=CONFIG_NAME)
        context = HydraContext(
            config_loader=GlobalHydra.instance().config_loader(), callbacks=callbacks
        )
        ran = run_job(
            hydra_context=context,
            task_function=task,
            config=cfg,
            job_dir_key="hydra.run.dir",
            job_subdir_key=None,
        )
        callbacks.on_run_end(config=cfg, config_name=CONFIG_NAME, job_return=ran)
        _ = ran.return_value  # raises the task's exception, reported by run_and_report

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=JOB_NAME):
        run_and_report(launch)
