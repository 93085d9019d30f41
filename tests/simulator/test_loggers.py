"""``logger=``: each tracker's files, read back with the tracker's own library, hold the
run's config, every round of ``rounds.csv`` and the summary; a tracker that fails is one
warning and leaves the run's own files as they would be without it."""

from __future__ import annotations

import glob
import json
import logging
import math
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from simulator.config import ConfigError, validate
from simulator.main import simulate
from simulator.preflight import check_point
from simulator.tracking import TensorBoardLogger, open_tracker
from tests.conftest import compose_config, rows_of, run_oleander

TINY = ("debug=tiny", "progress=false", "attack=sign_flip", "malicious_fraction=0.2",
        "strategy=krum")  # fmt: skip
# Columns that time the run: they differ between any two runs.
TIMINGS = ("round_seconds", "aggregation_seconds")
CLOCKS = ("wall_seconds", "first_round_started_unix")  # the same in summary.json
# What a tracker must plot: every column of rounds.csv that holds a number in some round.
PLOTTED = ("test_accuracy", "test_loss", "train_loss", "malicious_sampled", "clients_sampled",
           "detection_precision", "detection_recall", "detection_fpr")  # fmt: skip


@pytest.fixture(autouse=True)
def mlflow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MLflow logger sets these for the process; put them back after each test."""
    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def _run(tmp: Path, *overrides: str) -> tuple[dict[str, Any], Path]:
    out = tmp / "run"
    return simulate(compose_config(*TINY, *overrides), out), out


def _rounds(out: Path) -> list[dict[str, float]]:
    """rounds.csv's numbers by column, without the timings."""
    return [
        {k: float(v) for k, v in row.items() if v != "" and k not in TIMINGS and k != "note"}
        for row in rows_of(out / "rounds.csv")
    ]


def _series(out: Path, column: str) -> list[tuple[int, float]]:
    """(round, value) of one rounds.csv column where it is defined."""
    return [(int(r["round"]), r[column]) for r in _rounds(out) if column in r]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The same run with logger=csv: what every other logger must leave unchanged."""
    out = tmp_path_factory.mktemp("csv")
    return simulate(compose_config(*TINY), out), out


def _same_results(plain: tuple[dict[str, Any], Path], summary: dict, out: Path) -> None:
    assert _rounds(out) == _rounds(plain[1])
    assert (out / "clients.csv").read_text() == (plain[1] / "clients.csv").read_text()
    timeless = lambda s: {k: v for k, v in s.items() if k not in CLOCKS}  # noqa: E731
    stored = json.loads((out / "summary.json").read_text())
    assert timeless(stored) == timeless(json.loads((plain[1] / "summary.json").read_text()))
    assert summary["config_digest"] == plain[0]["config_digest"]  # logger changes no result


def test_the_sample_run_has_every_plotted_column(plain: tuple[dict[str, Any], Path]) -> None:
    rounds = _rounds(plain[1])
    assert [r["round"] for r in rounds] == [0, 1, 2]
    for column in PLOTTED:
        assert any(column in r for r in rounds), column


# TensorBoard ------------------------------------------------------------------------------
def test_tensorboard_events_hold_rounds_config_and_summary(
    tmp_path: Path, plain: tuple[dict[str, Any], Path]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary, out = _run(tmp_path, "logger=tensorboard")
    _same_results(plain, summary, out)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    for column in PLOTTED:
        written = [(e.step, e.value) for e in events.Scalars(column)]
        expected = _series(out, column)
        assert [s for s, _ in written] == [s for s, _ in expected], column
        assert [v for _, v in written] == pytest.approx([v for _, v in expected], rel=1e-6)
    final = events.Scalars("summary/final_accuracy")
    assert final[-1].value == pytest.approx(summary["final_accuracy"], rel=1e-6)
    assert events.Scalars("summary/best_round")[-1].value == summary["best_round"]
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "strategy.name: krum" in config and "num_rounds: 2" in config
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert "note" not in tags["scalars"]  # text columns are not plotted


def test_tensorboard_log_dir_holds_one_directory_per_run(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    common = tmp_path / "tb"
    for seed in (0, 1):
        out = tmp_path / f"seed={seed}"
        simulate(compose_config(*TINY, "logger=tensorboard", f"logger.log_dir={common}",
                                f"seed={seed}"), out)  # fmt: skip
        assert not (out / "tensorboard").exists()
    runs = EventMultiplexer().AddRunsFromDirectory(str(common))
    runs.Reload()
    assert sorted(runs.Runs()) == ["seed=0", "seed=1"]
    for name in ("seed=0", "seed=1"):
        assert [e.step for e in runs.Scalars(name, "test_accuracy")] == [0, 1, 2]


# MLflow -------------------------------------------------------------------------------------
def test_mlflow_store_holds_params_metric_history_and_summary(
    tmp_path: Path, plain: tuple[dict[str, Any], Path]
) -> None:
    from mlflow import MlflowClient

    summary, out = _run(tmp_path, "logger=mlflow")
    _same_results(plain, summary, out)
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("oleander")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == out.name
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["strategy.name"] == "krum"
    assert params["num_rounds"] == "2"
    assert params["attack.name"] == "sign_flip"
    assert json.loads(params["model._partial_"]) is True
    for column in PLOTTED:
        history = sorted(
            (m.step, m.value) for m in client.get_metric_history(run.info.run_id, column)
        )
        assert history == _series(out, column), column
    metrics = run.data.metrics
    assert metrics["summary.final_accuracy"] == summary["final_accuracy"]
    assert metrics["summary.best_round"] == summary["best_round"]
    assert run.data.tags["summary.strategy"] == "krum"


# Weights & Biases -----------------------------------------------------------------------
def _wandb_records(run_dir: Path) -> list[Any]:
    """The records of an offline run's ``.wandb`` file (W&B's LevelDB-style log of
    ``wandb_internal_pb2.Record`` messages: a 7-byte header, 32 KiB blocks, each record
    chunk after a 7-byte header of CRC, length and type (1 full, 2 first, 3 middle, 4 last))."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(str(run_dir / "run-*.wandb"))
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # too little left in the block: padding
            position += block - position % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            break
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_holds_config_history_and_summary(
    tmp_path: Path, plain: tuple[dict[str, Any], Path]
) -> None:
    summary, out = _run(tmp_path, "logger=wandb")
    _same_results(plain, summary, out)
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    # W&B's service process writes the file on its own: wait (bounded) for its exit record.
    deadline = time.monotonic() + 60
    while True:
        records = _wandb_records(run_dir)
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == out.name
    assert run.project == "oleander"
    assert run.run_group == ""  # a single run belongs to no sweep
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["strategy.name"] == "krum"
    assert config["num_rounds"] == 2
    history: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                     for i in record.history.item}  # fmt: skip
            for key, value in items.items():
                history.setdefault(key, []).append((items["_step"], value))
    for column in PLOTTED:
        assert history[column] == _series(out, column), column
    final: dict[str, Any] = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                final["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    assert final["final_accuracy"] == summary["final_accuracy"]
    assert final["best_round"] == summary["best_round"]
    exit_record = records[kinds.index("exit")].exit
    assert exit_record.exit_code == 0


# Failures -----------------------------------------------------------------------------------
def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "overrides",
    [
        # nothing listens on port 1: every request is refused
        # (one retry: urllib3's own warning about it is kept quiet)
        ("logger=mlflow", "logger.tracking_uri=http://127.0.0.1:1", "logger.request_retries=1"),
        ("logger=tensorboard", "logger.log_dir=FILE"),  # the log directory is a file
        ("logger=wandb", "logger.dir=FILE"),
    ],
    ids=["mlflow-unreachable", "tensorboard-dir-is-a-file", "wandb-dir-is-a-file"],
)
def test_a_failing_logger_is_one_warning_and_the_run_is_intact(
    tmp_path: Path,
    plain: tuple[dict[str, Any], Path],
    caplog: pytest.LogCaptureFixture,
    overrides: tuple[str, ...],
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory\n")
    overrides = tuple(o.replace("FILE", str(blocker)) for o in overrides)
    with caplog.at_level(logging.WARNING):
        summary, out = _run(tmp_path, *overrides)
    warned = _warnings(caplog)
    assert len(warned) == 1, warned
    assert warned[0].startswith(f"{overrides[0]} failed, the run goes on without it: ")
    assert "\n" not in warned[0]
    _same_results(plain, summary, out)
    assert blocker.read_text() == "not a directory\n"


def test_a_run_stopped_by_an_error_ends_its_tracked_run_as_failed(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    tracker = open_tracker(compose_config(*TINY, "logger=mlflow"), tmp_path)
    tracker.log_round({"round": 0, "test_accuracy": 0.25, "note": "", "test_loss": None})
    with pytest.raises(RuntimeError), tracker:
        raise RuntimeError("the engine failed")
    tracker.finish({"final_accuracy": 0.5})  # after close: nothing more is logged
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("oleander").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"test_accuracy": 0.25}


class AbsentLogger(TensorBoardLogger):
    """A logger whose library is not installed."""

    package = "no_such_tracking_library"
    extra = "nothing"


def test_a_missing_library_is_a_config_error_naming_the_extra() -> None:
    cfg = compose_config(
        "logger=tensorboard", f"logger._target_={__name__}.{AbsentLogger.__name__}"
    )
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert str(error.value) == (
        "logger=tensorboard: the no_such_tracking_library package is not installed: "
        "pip install 'oleander[nothing]'"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("logger=nosuch",),
            "logger=nosuch: no such logger: choose one of csv, mlflow, tensorboard, wandb",
        ),
        (
            ("logger=mlflow", "+logger.trackinguri=x"),
            "logger.trackinguri=x: no such key for logger=mlflow; did you mean "
            "logger.tracking_uri?",
        ),
        (
            ("logger=mlflow", "logger.request_timeout=0"),
            "logger.request_timeout=0: must be an integer >= 1",
        ),
        (
            ("logger=wandb", "logger.mode=online2"),
            "logger.mode=online2: must be one of offline, online, disabled",
        ),
    ],
)
def test_bad_logger_settings_are_one_line_before_the_run(
    overrides: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        check_point(list(overrides))
    assert str(error.value) == message


# Sweeps ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_logs_one_run_per_point_in_one_experiment(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    sweep = tmp_path / "multirun"
    args = ["-m", "debug=tiny", "seed=0,1", "progress=false", "logger=mlflow",
            f"hydra.sweep.dir={sweep}"]  # fmt: skip
    result = run_oleander(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    points = sorted(p.name for p in sweep.iterdir() if (p / "summary.json").is_file())
    assert points == ["debug=tiny,seed=0", "debug=tiny,seed=1"]  # the logger names none
    client = MlflowClient(tracking_uri=(sweep / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(str(sweep))
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == points
    for run in runs:
        assert run.data.tags["oleander.sweep"] == str(sweep)
        accuracy = json.loads((sweep / run.info.run_name / "summary.json").read_text())
        assert run.data.metrics["summary.final_accuracy"] == accuracy["final_accuracy"]
        assert math.isfinite(run.data.metrics["test_accuracy"])
