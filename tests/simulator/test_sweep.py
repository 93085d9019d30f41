"""Sweeps through Hydra: one directory per point, resumable, impossible points skipped."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from simulator.preflight import CONFIG_DIR, CONFIG_NAME
from tests.conftest import run_oleander

SWEEP = ["-m", "strategy=fedavg,median", "malicious_fraction=0,0.2", "attack=sign_flip",
         "num_rounds=2", "seed=0", "progress=false"]  # fmt: skip


_oleander = run_oleander


def _points(sweep: Path) -> dict[str, Path]:
    return {p.name: p for p in sweep.iterdir() if p.is_dir()}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    result = _oleander(root, *SWEEP, f"hydra.sweep.dir={root / 'multirun'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "multirun"


def test_every_point_has_its_own_directory_named_by_its_overrides(sweep: Path) -> None:
    points = _points(sweep)
    assert len(points) == 4
    for name, path in points.items():
        summary = json.loads((path / "summary.json").read_text())
        assert f"strategy={summary['strategy']}" in name
        assert f"malicious_fraction={summary['threat_model']['malicious_fraction']:g}" in name
        assert "progress" not in name, "display settings do not name directories"


def test_same_command_again_skips_finished_points_and_reruns_a_deleted_one(sweep: Path) -> None:
    points = _points(sweep)
    deleted = next(p for n, p in points.items() if "median" in n and "0.2" in n)
    before = {n: (p / "summary.json").stat().st_mtime_ns for n, p in points.items()}
    (deleted / "summary.json").unlink()
    result = _oleander(sweep.parent, *SWEEP, f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("already finished") == 3
    after = {n: (p / "summary.json").stat().st_mtime_ns for n, p in points.items()}
    for name, stamp in before.items():
        if name == deleted.name:
            assert after[name] != stamp
        else:
            assert after[name] == stamp, f"{name} was run again"


def test_impossible_point_is_recorded_as_skipped_and_the_sweep_goes_on(tmp_path: Path) -> None:
    args = ["-m", "strategy=krum,bulyan", "strategy.num_malicious=3", "num_rounds=1",
            "progress=false", f"hydra.sweep.dir={tmp_path / 'm'}"]  # fmt: skip
    result = _oleander(tmp_path, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    points = _points(tmp_path / "m")
    bulyan = next(p for n, p in points.items() if "bulyan" in n)
    krum = next(p for n, p in points.items() if "krum" in n)
    skipped = json.loads((bulyan / "skipped.json").read_text())
    assert "bulyan needs n >= 4f + 3" in skipped["reason"]
    assert not (bulyan / "summary.json").exists()
    assert (krum / "summary.json").is_file()


def _compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=True)


def test_local_parallel_launcher_composes() -> None:
    cfg = _compose_hydra("hydra/launcher=local")
    assert "joblib" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.n_jobs == 2
    assert cfg.torch_threads == 1  # each job takes one core


def test_slurm_launcher_composes() -> None:
    # hydra-submitit-launcher is in the test extra: a missing one is a broken install.
    assert importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None, (
        "hydra-submitit-launcher is not installed: pip install -e '.[test]'"
    )
    cfg = _compose_hydra("hydra/launcher=slurm")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.cpus_per_task == 1


def test_ray_cluster_launcher_composes() -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        pytest.skip("hydra-ray-launcher is not installed (pip install 'oleander[ray-launcher]')")
    cfg = _compose_hydra("hydra/launcher=ray_cluster")
    assert "ray" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.ray.init.address == "auto"


def test_report_of_the_sweep_has_rows_columns_and_plots(sweep: Path, tmp_path: Path) -> None:
    import csv

    result = subprocess.run(
        [sys.executable, "-m", "simulator.report", str(sweep), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for column in ("strategy", "attack", "malicious_fraction", "seed", "final_accuracy"):
        assert column in rows[0]
    assert {r["strategy"] for r in rows} == {"fedavg", "median"}
    assert {float(r["malicious_fraction"]) for r in rows} == {0.0, 0.2}
    report = (tmp_path / "report.md").read_text()
    assert "sign_flip" in report and "`median`" in report
    for name in ("accuracy_vs_fraction.png", "accuracy_over_rounds.png", "heatmap.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000
