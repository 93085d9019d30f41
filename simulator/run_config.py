"""Oleander's experiment in a Flower run config, and back (``flwr run``, ray, deployment).

A Flower run carries a flat run config from the app's ``pyproject.toml``
(``[tool.flwr.app.config]``), overridden by ``flwr run --run-config``. Oleander reads:

- ``overrides``: Hydra overrides as one string, ``"strategy=krum attack=alie"``: the
  same experiment as ``oleander strategy=krum attack=alie``;
- ``output-dir``: where the ServerApp writes the run's files (empty: Hydra's run
  directory, ``outputs/<date>/<time>``, under the ServerApp's working directory);
- ``sweep-dir``: the sweep the run is a point of (groups its tracked run, ``logger=``);
- ``config``: the whole resolved config as JSON, which Oleander's own ray and deployment
  engines send so that every process runs exactly what ``oleander`` composed (it wins
  over ``overrides``, which then only say what was typed, for the set-up warnings).

The ServerApp and every ClientApp rebuild the same config from it, so the clients need
no file from the server, only the data set (at the same ``dataset.path``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

OVERRIDES = "overrides"
OUTPUT_DIR = "output-dir"
SWEEP_DIR = "sweep-dir"
CONFIG = "config"


def run_config_for(
    cfg: DictConfig, output_dir: Path, sweep_dir: Path | None = None
) -> dict[str, str]:
    """The run config that makes a Flower run of ``cfg`` write into ``output_dir``
    (``sweep_dir``: the sweep it is a point of, which groups its tracked run)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return {
        OVERRIDES: shlex.join(typed_overrides()),
        OUTPUT_DIR: str(Path(output_dir).resolve()),
        SWEEP_DIR: str(Path(sweep_dir).resolve()) if sweep_dir is not None else "",
        CONFIG: json.dumps(container, sort_keys=True),
    }


def typed_overrides() -> list[str]:
    """The overrides typed for the run Hydra is running in this process (none outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [str(line) for line in HydraConfig.get().overrides.task]


def sweep_dir_of(run_config: Mapping[str, Any]) -> Path | None:
    """The sweep directory a run config names, if any."""
    chosen = str(run_config.get(SWEEP_DIR, "") or "")
    return Path(chosen) if chosen else None


def overrides_of(run_config: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides in ``run_config`` (shell-style quoting allowed)."""
    text = str(run_config.get(OVERRIDES, "") or "")
    try:
        return shlex.split(text)
    except ValueError as error:
        raise ValueError(f"{OVERRIDES}={text!r}: {error}") from None


def compose_run(run_config: Mapping[str, Any]) -> tuple[DictConfig, str]:
    """The experiment config of a Flower run, and Hydra's run directory pattern resolved.

    Raises ``simulator.config.ConfigError`` with the one-line message ``oleander`` gives.
    """
    from hydra import compose, initialize_config_dir

    from simulator.config import ConfigError
    from simulator.preflight import CONFIG_DIR, CONFIG_NAME, check_point

    text = str(run_config.get(CONFIG, "") or "")
    if text:
        cfg = OmegaConf.create(json.loads(text))
        assert isinstance(cfg, DictConfig)
        return cfg, ""
    overrides = overrides_of(run_config)
    cfg = check_point(overrides)  # ConfigError, as on the command line
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            full = compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
        run_dir = str(OmegaConf.select(full, "hydra.run.dir"))
    except Exception as error:  # pragma: no cover - composed once already above
        raise ConfigError(str(error)) from None
    return cfg, run_dir


def output_dir_of(run_config: Mapping[str, Any], run_dir: str) -> Path:
    """Where a Flower run writes: ``output-dir``, else the Hydra run directory, absolute."""
    chosen = str(run_config.get(OUTPUT_DIR, "") or "") or run_dir or "outputs/flwr"
    return Path(chosen).expanduser().resolve()
