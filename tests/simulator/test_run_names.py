"""Sweep directory names: no paths, no execution settings, interpolations by value, a
digest (listed in runs.csv) for names that would be unsafe or long."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from simulator.preflight import CONFIG_DIR, CONFIG_NAME, preflight
from simulator.run_names import MAX_NAME, is_path_key, record_run, register_resolver, run_name


def _root(*overrides: str):
    """The composed config with Hydra's node, as a sweep job sees it."""
    register_resolver()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=True)


def test_paths_and_execution_settings_never_name_a_directory() -> None:
    name = run_name(
        ["strategy=krum", "dataset=mnist", "dataset.path=/data/sets/mnist", "engine=ray",
         "logger=mlflow", "logger.tracking_uri=http://127.0.0.1:5000", "progress=false",
         "torch_threads=2", "malicious_fraction=0.2"]
    )  # fmt: skip
    assert name == "dataset=mnist,malicious_fraction=0.2,strategy=krum"
    assert is_path_key("dataset.path") and is_path_key("logger.log_dir")
    assert not is_path_key("partition.alpha")


def test_the_subdir_resolves_interpolations_to_their_values() -> None:
    root = _root("attack=backdoor", "attack.boost=${num_clients}", "malicious_fraction=0.1")
    subdir = OmegaConf.select(root, "hydra.sweep.subdir")
    assert subdir == "attack.boost=10,attack=backdoor,malicious_fraction=0.1"
    # the sweeper hands a job the braces escaped: the same value names it
    escaped = run_name([r"attack.boost=$\{num_clients\}", "attack=backdoor"], root)
    assert escaped == "attack.boost=10,attack=backdoor"


def test_plain_names_are_hydras_so_an_older_sweep_finds_its_points() -> None:
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = ["seed=1", "strategy=median", "malicious_fraction=0.10", "attack=alie"]
    parsed = OverridesParser.create().parse_overrides(lines)
    hydra_name = get_overrides_dirname(parsed, exclude_keys=[], item_sep=",", kv_sep="=")
    assert run_name(lines) == hydra_name


def test_unsafe_or_long_names_become_a_stable_digest() -> None:
    unsafe = run_name(["strategy=krum", "attack.target_label=a b"])
    assert unsafe.startswith("run-") and len(unsafe) == 16
    assert run_name(["strategy=krum", "attack.target_label=a b"]) == unsafe
    assert run_name(["strategy=krum", "attack.target_label=a c"]) != unsafe
    long = run_name([f"key{i}=value{i}" for i in range(20)])
    assert long.startswith("run-")
    assert len(run_name(["strategy=krum"] * 3)) < MAX_NAME


def test_runs_csv_lists_each_point_once(tmp_path: Path) -> None:
    record_run(tmp_path, "run-abc", ["a=1", "dataset.path=/x y"])
    record_run(tmp_path, "run-abc", ["a=1", "dataset.path=/x y"])
    record_run(tmp_path, "b=2", ["b=2"])
    with open(tmp_path / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {"name": "run-abc", "overrides": "a=1 'dataset.path=/x y'"},
        {"name": "b=2", "overrides": "b=2"},
    ]


def test_sweeping_a_path_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        preflight(["-m", "dataset=mnist", f"dataset.path={tmp_path}/a,{tmp_path}/b"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "dataset.path=" in err and "a path cannot be swept" in err
    assert not any(tmp_path.iterdir())
