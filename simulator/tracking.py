"""Experiment tracking (``logger=``): the run's config, rounds and summary in TensorBoard,
MLflow or Weights & Biases, beside the run's own files.

``rounds.csv``, ``clients.csv`` and ``summary.json`` are written whatever the logger;
``logger=csv`` (the default) adds nothing to them. Each ``logger`` entry names its class
with ``_target_``; the class imports its library only when the run's first round is
logged, so choosing none costs no start-up time. A tracker never stops or changes a run:
its first failure is one warning line, and the run goes on without it.

A sweep (Hydra's multirun) logs one tracked run per point, named by the point's
directory, grouped by the sweep directory: one MLflow experiment, one wandb group, one
TensorBoard log directory per sweep.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from simulator.checks import check_int

log = logging.getLogger("oleander")


@dataclass(frozen=True)
class RunInfo:
    """Where a tracked run belongs: its name, its group and its flattened config."""

    output_dir: Path
    sweep_dir: Path | None  # None: a single run
    config: dict[str, Any]  # the resolved config, flattened to dotted keys

    @property
    def name(self) -> str:
        """The point's directory name in a sweep (its overrides); the run's otherwise."""
        return self.output_dir.name or "run"

    @property
    def group(self) -> str | None:
        """The sweep directory as given (``hydra.sweep.dir``); None for a single run."""
        return None if self.sweep_dir is None else str(self.sweep_dir)

    @property
    def home(self) -> Path:
        """Where a local store lives: the sweep directory, else the run's directory."""
        return self.output_dir if self.sweep_dir is None else self.sweep_dir


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict of dotted keys (``strategy.name``); other values as they are."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of ``row`` (ints and floats, not bools): what a tracker plots.

    Empty cells (None) and undefined ratios (NaN: no detector ran, nobody was flagged)
    have no point to draw.
    """
    return {
        key: float(value)
        for key, value in row.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def text(value: Any) -> str:
    """A config value as a parameter string: JSON for lists and dicts, ``null`` for None."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


class Logger:
    """``logger=csv``: nothing beside the run's own files; the base of the other loggers.

    A logger's constructor only stores and checks its settings; ``start`` imports its
    library and opens the tracked run. Every method may raise: ``Tracker`` turns the
    first failure into one warning.
    """

    package: ClassVar[str | None] = None  # the module the logger imports
    extra: ClassVar[str | None] = None  # the pyproject extra that installs it

    def missing_package(self) -> str | None:
        """What to install when the library is absent (found without importing it)."""
        if self.package is None or importlib.util.find_spec(self.package) is not None:
            return None
        return f"the {self.package} package is not installed: pip install 'oleander[{self.extra}]'"

    def start(self, run: RunInfo) -> None:
        """Open the tracked run and record the config."""

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        """Record one round's numbers at ``step`` (the round; 0: the initial model)."""

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Record the run's summary (``summary.json``)."""

    def end(self, finished: bool) -> None:
        """Close the tracked run: finished, or stopped by an error or an interrupt."""


class TensorBoardLogger(Logger):
    """``logger=tensorboard``: event files in ``RUN/tensorboard`` (``log_dir``: in
    ``log_dir/RUN``), so ``tensorboard --logdir SWEEPDIR`` shows every point of a sweep.

    Rounds are scalars named as in ``rounds.csv``; the summary's numbers are scalars under
    ``summary/`` and, with the config, an HParams session.
    """

    package = "tensorboard"
    extra = "tensorboard"

    def __init__(self, log_dir: str | None = None) -> None:
        self.log_dir = log_dir
        self.writer: Any = None
        self.run: RunInfo | None = None
        self.last_step = 0

    def start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        where = run.output_dir / "tensorboard"
        if self.log_dir is not None:
            where = Path(self.log_dir).expanduser() / run.name
        self.writer = SummaryWriter(log_dir=str(where))
        yaml = "\n".join(f"    {key}: {text(value)}" for key, value in run.config.items())
        self.writer.add_text("config", yaml)
        self.writer.flush()

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.last_step = step
        self.writer.flush()  # a run killed later keeps its rounds

    def log_summary(self, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        assert self.run is not None
        metrics = {f"summary/{k}": v for k, v in numbers(flatten(summary)).items()}
        config = {k: v if isinstance(v, int | float | str) else text(v)
                  for k, v in self.run.config.items() if v is not None}  # fmt: skip
        for summary_proto in hparams(config, metrics):
            self.writer.file_writer.add_summary(summary_proto, self.last_step)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, self.last_step)

    def end(self, finished: bool) -> None:
        if self.writer is not None:
            self.writer.close()


class MlflowLogger(Logger):
    """``logger=mlflow``: one MLflow run per run, in one experiment per sweep.

    ``tracking_uri`` null: a local file store, ``mlruns/`` in the sweep directory (a
    single run: in its own directory); else a server (``http://host:5000``) or any URI
    MLflow takes. ``experiment`` null: the sweep directory as given, or ``oleander``.
    The config is logged as params, every round's numbers as metrics at step = round, the
    summary's numbers as metrics and its other values as tags. ``request_timeout`` and
    ``request_retries`` bound how long a request to a server that does not answer may
    hold the run (MLflow's own defaults wait for minutes).
    """

    package = "mlflow"
    extra = "mlflow"
    BATCH = 100  # params a log_batch call takes (MLflow's limit)

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        request_timeout: int = 10,
        request_retries: int = 2,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.request_timeout = check_int("request_timeout", request_timeout, 1)
        self.request_retries = check_int("request_retries", request_retries, 0)
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, run: RunInfo) -> None:
        uri = self.tracking_uri or (run.home / "mlruns").resolve().as_uri()
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 refuses its file store unless asked for; it is the light local store.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(self.request_timeout)
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(self.request_retries)
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(tracking_uri=uri)
        name = self.experiment or run.group or "oleander"
        with _quiet_retries():
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:
                experiment_id = self._create_experiment(name)
            tags = {"oleander.output_dir": str(run.output_dir)}
            if run.group is not None:
                tags["oleander.sweep"] = run.group
            self.run_id = self.client.create_run(
                experiment_id, run_name=run.name, tags=tags
            ).info.run_id
            params = [Param(k, text(v)) for k, v in run.config.items()]
            for i in range(0, len(params), self.BATCH):
                self.client.log_batch(self.run_id, params=params[i : i + self.BATCH])

    def _create_experiment(self, name: str) -> str:
        """Create the experiment; a sweep point that starts at the same time may win."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_experiment(name)
        except MlflowException:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(key, value, stamp, step) for key, value in metrics.items()]
        with _quiet_retries():
            self.client.log_batch(self.run_id, metrics=batch)

    def log_summary(self, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        flat = flatten(summary)
        found = numbers(flat)
        stamp = int(time.time() * 1000)
        metrics = [Metric(f"summary.{k}", v, stamp, 0) for k, v in found.items()]
        tags = [RunTag(f"summary.{k}", text(v)[:5000]) for k, v in flat.items() if k not in found]
        with _quiet_retries():
            self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def end(self, finished: bool) -> None:
        if self.run_id is not None:
            with _quiet_retries():
                self.client.set_terminated(self.run_id, "FINISHED" if finished else "FAILED")


@contextlib.contextmanager
def _quiet_retries() -> Iterator[None]:
    """urllib3 logs every retry of an unreachable server as a warning of its own; the
    tracker's one warning says it."""
    pool = logging.getLogger("urllib3.connectionpool")
    level = pool.level
    pool.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pool.setLevel(level)


class WandbLogger(Logger):
    """``logger=wandb``: a Weights & Biases run, offline by default (``mode=offline``:
    files under ``wandb/`` in the sweep directory, or the run's; ``wandb sync`` uploads
    them later), ``group`` the sweep directory, ``name`` the point's directory.

    The config is the run's config, every round's numbers are logged at step = round, and
    the summary goes into the run's summary.
    """

    package = "wandb"
    extra = "wandb"
    MODES = ("offline", "online", "disabled")

    def __init__(
        self,
        project: str = "oleander",
        entity: str | None = None,
        mode: str = "offline",
        dir: str | None = None,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode={mode}: must be one of {', '.join(self.MODES)}")
        self.project = project
        self.entity = entity
        self.mode = mode
        self.dir = dir
        self.run: Any = None

    def start(self, run: RunInfo) -> None:
        import wandb

        where = Path(self.dir).expanduser() if self.dir is not None else run.home
        where.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=str(where),
            group=run.group,
            name=run.name,
            config=run.config,
            reinit="create_new",  # several runs in one process (sweep points) stay apart
            settings=wandb.Settings(console="off", silent=True, disable_git=True),
        )

    def log_round(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def log_summary(self, summary: dict[str, Any]) -> None:
        self.run.summary.update(flatten(summary))

    def end(self, finished: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if finished else 1)


class Tracker:
    """The run's side of a logger: never raises, never stops the run.

    Opens the tracked run at the first round (so a run that fails before training leaves
    none behind). Its first failure is one warning; after it, every call does nothing.
    As a context manager it ends the tracked run as failed when the block raises; a run
    that finishes is ended by ``finish``.
    """

    def __init__(self, logger: Logger, run: RunInfo, name: str) -> None:
        self.logger = logger
        self.run = run
        self.name = name
        self.started = False
        self.ended = False
        self.failed = False

    def _call(self, action: Callable[[], None]) -> None:
        if self.failed or self.ended:
            return
        try:
            if not self.started:
                self.started = True
                self.logger.start(self.run)
            action()
        except Exception as error:
            self.failed = True
            reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            log.warning("logger=%s failed, the run goes on without it: %s", self.name, reason)
            with contextlib.suppress(Exception):
                self.logger.end(finished=False)

    def log_round(self, row: dict[str, Any]) -> None:
        """Log a ``rounds.csv`` row's numbers at step = its round."""
        step = int(row["round"])
        metrics = numbers({k: v for k, v in row.items() if k != "round"})
        self._call(lambda: self.logger.log_round(step, metrics))

    def finish(self, summary: dict[str, Any]) -> None:
        """Log the summary and end the tracked run as finished."""
        self._call(lambda: self.logger.log_summary(summary))
        self._call(lambda: self.logger.end(finished=True))
        self.ended = True

    def close(self) -> None:
        """End a tracked run that did not finish (an error or an interrupt stopped it)."""
        if self.started and not self.ended:
            self._call(lambda: self.logger.end(finished=False))
        self.ended = True

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None:
            self.close()


def open_tracker(cfg: DictConfig, output_dir: Path, sweep_dir: Path | None = None) -> Tracker:
    """The tracker of ``cfg.logger`` for the run in ``output_dir`` (``sweep_dir``: the
    sweep it belongs to). Starts nothing yet and never raises: a logger that cannot be
    built is one warning, and the run is tracked by its own files only."""
    from simulator.schema import build

    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    config.pop("hydra", None)
    run = RunInfo(Path(output_dir), None if sweep_dir is None else Path(sweep_dir), flatten(config))
    name = str(cfg.logger.get("name", "csv"))
    try:
        logger = build("logger", cfg.logger)
    except Exception as error:
        log.warning("logger=%s failed, the run goes on without it: %s", name, error)
        logger = Logger()
    return Tracker(logger if logger is not None else Logger(), run, name)
