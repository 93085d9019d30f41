"""Faults during a run are recorded and survived."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

from simulator.checkpoint import FILENAME
from simulator.main import simulate
from tests.conftest import compose_config


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "rounds.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_injected_client_failures_are_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    cfg = compose_config("num_rounds=4", "progress=false", "faults.client_failure_rate=0.3")
    summary = simulate(cfg, tmp_path / "a")
    rows = _rows(tmp_path / "a")[1:]
    failures = [int(r["failures"]) for r in rows]
    assert sum(failures) > 0
    assert all(int(r["clients_trained"]) + int(r["failures"]) == 10 for r in rows)
    assert summary["final_accuracy"] > 0.5
    simulate(cfg, tmp_path / "b")
    assert [int(r["failures"]) for r in _rows(tmp_path / "b")[1:]] == failures, "seeded"


def test_every_client_failing_keeps_the_global_model(tmp_path: Path) -> None:
    cfg = compose_config("num_rounds=2", "progress=false", "faults.client_failure_rate=0.999")
    simulate(cfg, tmp_path)
    rows = _rows(tmp_path)
    assert rows[1]["note"] == "no usable reply: global model kept"
    assert rows[2]["test_accuracy"] == rows[0]["test_accuracy"]


def test_sigint_stops_after_the_round_keeps_the_checkpoint_and_says_how_to_resume(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    args = ["num_clients=50", "num_rounds=40", "progress=false", f"hydra.run.dir={run}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", *args], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (run / "rounds.csv").exists() and len(_rows(run)) >= 3:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("oleander: error: stopped after round ")
    assert f"hydra.run.dir={run} to resume" in last
    assert "Traceback" not in stderr
    assert (run / FILENAME).is_file()
    assert not (run / "summary.json").exists()
    done = len(_rows(run)) - 1
    assert 2 <= done < 40
    resumed = subprocess.run(
        [sys.executable, "-m", "simulator", *args], capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after round {done} of 40" in resumed.stderr
    assert len(_rows(run)) == 41
