"""Kills at random moments: every restart resumes, no file is half written, and the final
numbers equal those of a run that was never interrupted (reliability issue)."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from simulator.checkpoint import FILENAME
from simulator.results import ROUND_COLUMNS

METRICS = ("round", "test_accuracy", "test_loss", "train_loss", "clients_trained")
RUN = ("num_clients=50", "num_rounds=100", "progress=false")


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to the group reaches joblib's workers too
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path / "rounds.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _metrics(path: Path) -> list[tuple[str, ...]]:
    return [tuple(row[c] for c in METRICS) for row in _rows(path)]


def _assert_whole(path: Path) -> None:
    """Every file an interrupted run leaves is complete: parseable, no partial rows."""
    if (path / "rounds.csv").exists():
        rows = _rows(path)
        assert all(list(row) == list(ROUND_COLUMNS) and None not in row.values() for row in rows)
        assert [int(r["round"]) for r in rows] == list(range(len(rows)))
    if (path / "summary.json").exists():
        json.loads((path / "summary.json").read_text())
    if (path / FILENAME).exists():
        saved = torch.load(path / FILENAME, weights_only=True)
        assert saved["round"] >= 1


@pytest.mark.slow
def test_twenty_random_kills_end_with_the_uninterrupted_numbers(tmp_path: Path) -> None:
    """Kill at 20 random moments (SIGKILL, SIGTERM, SIGINT), resuming after each one.

    Should a run finish between kills (a fast machine), its numbers are checked and the
    next kills go to a fresh run, so the count of kills never depends on the speed.
    """
    reference = tmp_path / "reference"
    assert _start(*RUN, f"hydra.run.dir={reference}").wait(timeout=300) == 0
    rng = random.Random(20)
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
    kills, runs = 0, 0
    target = tmp_path / "killed-0"
    while kills < 20:
        process = _start(*RUN, f"hydra.run.dir={target}")
        try:
            process.wait(timeout=rng.uniform(0.5, 6.0))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signals[kills % 3])
            process.wait(timeout=120)
            kills += 1
            _assert_whole(target)
            if not (target / "summary.json").exists():
                continue
            # Killed after the summary was written (while exiting): the run is complete.
        else:
            assert process.returncode == 0
        _assert_whole(target)
        assert _metrics(target) == _metrics(reference)
        runs += 1
        target = tmp_path / f"killed-{runs}"
    if not (target / "summary.json").exists():
        assert _start(*RUN, f"hydra.run.dir={target}").wait(timeout=300) == 0
    _assert_whole(target)
    assert _metrics(target) == _metrics(reference)
    assert not list(target.glob(".*.tmp")), "no temporary file survives a finished run"


@pytest.mark.slow
def test_killed_parallel_sweep_restarts_and_every_point_ends_once(tmp_path: Path) -> None:
    sweep = ["-m", "hydra/launcher=local", "strategy=fedavg,median", "malicious_fraction=0,0.2",
             "attack=sign_flip", "num_clients=30", "num_rounds=40", "progress=false"]  # fmt: skip
    reference = tmp_path / "reference"
    assert _start(*sweep, f"hydra.sweep.dir={reference}").wait(timeout=600) == 0
    target = tmp_path / "killed"
    process = _start(*sweep, f"hydra.sweep.dir={target}")
    time.sleep(9.0)  # jobs are running in parallel by now
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert _start(*sweep, f"hydra.sweep.dir={target}").wait(timeout=600) == 0
    points = sorted(p.name for p in reference.iterdir() if p.is_dir())
    assert points == sorted(p.name for p in target.iterdir() if p.is_dir())
    assert len(points) == 4
    for name in points:
        _assert_whole(target / name)
        assert _metrics(target / name) == _metrics(reference / name), name
