"""Shared test helpers: compose Oleander's real Hydra config with overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from simulator.preflight import CONFIG_DIR, CONFIG_NAME

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("OLEANDER_MNIST_DIR", REPO.parent / "shared" / "data" / "mnist"))


def compose_config(*overrides: str) -> DictConfig:
    """The composed primary config, as a run would see it (without the ``hydra`` node)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def group_entries(group: str) -> list[str]:
    """Every option of a config group, read from ``conf/<group>/``."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def flower_task_identity() -> Iterator[None]:
    """``Message(...)`` needs Flower's task identity outside a Flower runtime."""
    from flwr.supercore.task_identity import TaskIdentity

    from simulator.engines.inline import set_task_identity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    set_task_identity(1)
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST test files not found in {MNIST_DIR} (set OLEANDER_MNIST_DIR)")
    return MNIST_DIR


def rows_of(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV (rounds.csv, clients.csv) as dicts of strings."""
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_oleander(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``oleander ARGS`` in a fresh process from ``cwd`` (output captured as text)."""
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def simulate_each(
    factory: pytest.TempPathFactory, base: tuple[str, ...], runs: dict[Any, tuple[str, ...]]
) -> dict[Any, tuple[dict, Path]]:
    """Run every config ``base + runs[key]`` into its own directory: key -> (summary, dir)."""
    from simulator.main import simulate

    done = {}
    for key, overrides in runs.items():
        name = "-".join(key) if isinstance(key, tuple) else str(key)
        out = factory.mktemp(name)
        done[key] = (simulate(compose_config(*base, *overrides), out), out)
    return done
