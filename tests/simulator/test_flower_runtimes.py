"""Flower's own runtimes: `flwr run` of the project, engine=deployment, engine=ray.

The end-to-end tests bring up real Flower processes on loopback (a SuperLink, SuperNodes,
Flower's ServerApp and ClientApp processes) and compare what they record with the inline
engine's run of the same config: the same seeded clients, so the same accuracies and,
to float rounding (the inline engine trains honest clients as one batch), the same losses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

from simulator.engines.superlink import (
    DeploymentEngine,
    RayEngine,
    app_dir,
    descendants,
    free_port,
)
from simulator.main import simulate
from simulator.preflight import check_point
from simulator.run_config import compose_run, output_dir_of, run_config_for
from tests.conftest import rows_of

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Neurotoxin: a client-side attack that keeps the previous global model in the node's
# state between rounds (the SuperNode keeps it for its ClientApp processes).
DEPLOYMENT = ("num_clients=3", "num_rounds=3", "attack=neurotoxin", "malicious_fraction=0.34",
              "progress=false")  # fmt: skip


def _assert_same_run(remote: Path, inline: Path, last_round: int | None = None) -> None:
    """Same accuracies and client records (up to ``last_round``); losses equal to float
    rounding."""

    def upto(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [r for r in rows if last_round is None or int(r["round"]) <= last_round]

    a, b = upto(rows_of(remote / "rounds.csv")), upto(rows_of(inline / "rounds.csv"))
    assert [r["round"] for r in a] == [r["round"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x["test_accuracy"] == y["test_accuracy"]
        assert float(x["test_loss"]) == pytest.approx(float(y["test_loss"]), rel=1e-5)
        for key in ("clients_trained", "malicious_sampled", "failures", "attack_success_rate"):
            assert x[key] == y[key]
    keys = ("round", "client", "malicious", "num_examples", "weight", "flagged")
    clients_a = [{k: r[k] for k in keys} for r in upto(rows_of(remote / "clients.csv"))]
    clients_b = [{k: r[k] for k in keys} for r in upto(rows_of(inline / "clients.csv"))]
    assert clients_a
    assert clients_a == clients_b


def _flower_processes() -> list[int]:
    """Flower processes below this test process (none may outlive a run)."""
    found = []
    for pid in descendants(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"flower-" in command or b"flwr" in command:
            found.append(pid)
    return found


# Run config and app bundle -------------------------------------------------------------
def test_a_run_config_carries_the_whole_config_and_the_output_dir(tmp_path: Path) -> None:
    cfg = check_point(["strategy=krum", "attack=alie", "malicious_fraction=0.2"])
    run_config = run_config_for(cfg, tmp_path / "out")
    again, _ = compose_run(run_config)
    assert again == cfg
    assert output_dir_of(run_config, "") == (tmp_path / "out").resolve()


def test_overrides_in_a_run_config_compose_as_on_the_command_line() -> None:
    overrides = "strategy=krum attack=alie malicious_fraction=0.2 'dataset.test_fraction=0.3'"
    cfg, run_dir = compose_run({"overrides": overrides, "output-dir": "", "config": ""})
    assert cfg == check_point(["strategy=krum", "attack=alie", "malicious_fraction=0.2",
                               "dataset.test_fraction=0.3"])  # fmt: skip
    assert run_dir.startswith("outputs/")
    assert output_dir_of({"output-dir": ""}, run_dir) == Path(run_dir).resolve()


def test_bad_overrides_in_a_run_config_are_the_command_line_error() -> None:
    from simulator.config import ConfigError

    with pytest.raises(ConfigError, match=r"strategy=nope"):
        compose_run({"overrides": "strategy=nope"})
    with pytest.raises(ValueError, match="overrides="):
        compose_run({"overrides": "strategy='krum"})


def test_the_project_and_the_engines_bundle_are_valid_flower_apps(tmp_path: Path) -> None:
    from flwr.common.config import validate_config

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(project, check_module=True, project_dir=REPO)
    assert ok, errors
    assert set(project["tool"]["flwr"]["app"]["config"]) == {
        "overrides", "output-dir", "sweep-dir", "config",
    }  # fmt: skip
    bundle = app_dir(tmp_path, {"overrides": "", "output-dir": "/x", "config": "{}"})
    generated = tomllib.loads((bundle / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(generated, check_module=True, project_dir=bundle)
    assert ok, errors
    assert generated["tool"]["flwr"]["app"]["config"]["output-dir"] == "/x"


@pytest.mark.parametrize(
    ("engine", "kwargs", "message"),
    [
        (DeploymentEngine, {"superlink": "localhost"}, "superlink='localhost': must be HOST:PORT"),
        (DeploymentEngine, {"timeout": 0}, "timeout=0: must be > 0"),
        (RayEngine, {"num_cpus": 0.5}, "num_cpus=0.5: Flower's simulation runtime takes whole"),
        (RayEngine, {"num_gpus": -1}, "num_gpus=-1: must be >= 0"),
    ],
)
def test_engine_settings_are_checked(engine: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine(**kwargs)


def test_a_bad_engine_setting_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "engine=deployment", "engine.superlink=nowhere",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("oleander: error: "), lines
    assert "superlink='nowhere': must be HOST:PORT" in lines[0]
    assert not (tmp_path / "run").exists()


def test_rounds_and_a_remote_result_are_read_from_the_run_log(tmp_path: Path) -> None:
    """A SuperLink on another machine: progress and the result come from Flower's log
    stream (the ServerApp's files stay on that machine)."""
    from omegaconf import OmegaConf

    from simulator.engines.superlink import _show_rounds, remote_summary

    stream = tmp_path / "flwr-run.log"
    stream.write_text("INFO: Starting logstream\noleander: round 0/2: accuracy 0.0533\n")
    seen: list[tuple[int, float]] = []

    class Progress:
        def update(self, server_round: int, accuracy: float) -> None:
            seen.append((server_round, accuracy))

    shown = _show_rounds(stream, 0, Progress())
    with open(stream, "a") as handle:
        handle.write("oleander: round 1/2: accuracy 0.5\noleander: round 2/2: accuracy 0.75\n")
        handle.write("oleander: final accuracy 0.7500 (best 0.7500 at round 2) in 3.0 s; ...\n")
    _show_rounds(stream, shown, Progress())
    assert seen == [(0, 0.0533), (1, 0.5), (2, 0.75)]
    cfg = OmegaConf.create({"engine": {"name": "deployment"}})
    summary = remote_summary(stream, cfg, "10.0.0.2:9095")
    assert summary is not None
    assert (summary["final_accuracy"], summary["best_round"]) == (0.75, 2)
    assert remote_summary(tmp_path / "missing.log", cfg, "10.0.0.2:9095") is None


# Real processes ------------------------------------------------------------------------
def _kill_node_after(out: Path, client: int, num_clients: int, server_round: int) -> list[int]:
    """Start a thread that SIGKILLs client ``client``'s SuperNode (and its ClientApp
    processes) once rounds.csv holds ``server_round``; the list gets the pid killed."""
    killed: list[int] = []

    def kill() -> None:
        rounds = out / "rounds.csv"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if rounds.exists() and len(rounds.read_text().splitlines()) >= server_round + 2:
                break
            time.sleep(0.1)
        wanted = f"partition-id={client} num-partitions={num_clients}".encode()
        for pid in descendants(os.getpid()):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(part.endswith(b"flower-supernode") for part in command) and wanted in command:
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)

    threading.Thread(target=kill, daemon=True).start()
    return killed


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path, list[int]]:
    """One deployment on loopback shared by the two tests below (a deployment costs about
    half a minute a round on two cores): 3 SuperNodes, one malicious client, 3 rounds;
    client 2's SuperNode is killed once round 2 is recorded. And the inline run."""
    out = tmp_path_factory.mktemp("deployment")
    inline = tmp_path_factory.mktemp("inline")
    killed = _kill_node_after(out, client=2, num_clients=3, server_round=2)
    summary = simulate(check_point([*DEPLOYMENT, "engine=deployment"]), out)
    simulate(check_point(list(DEPLOYMENT)), inline)
    return summary, out, inline, killed


@pytest.mark.slow
def test_deployment_gives_the_inline_numbers_and_stops_every_process(
    deployment: tuple[dict, Path, Path, list[int]],
) -> None:
    """3 SuperNodes, one of them malicious: rounds 0-2 (before the kill) as inline."""
    summary, out, inline, _ = deployment
    assert summary["engine"] == "deployment" and summary["num_clients"] == 3
    assert summary["final_attack_success_rate"] is not None
    assert summary["threat_model"]["malicious_clients"] == [0]  # client 2 is honest
    _assert_same_run(out, inline, last_round=2)
    logs = out / "flower"
    assert sorted(p.name for p in logs.iterdir()) == [
        "flwr-run.log", "superlink.log", "supernode-0.log", "supernode-1.log", "supernode-2.log",
    ]  # fmt: skip
    assert _flower_processes() == []


@pytest.mark.slow
def test_a_supernode_killed_mid_run_is_a_recorded_failure_and_the_run_finishes(
    deployment: tuple[dict, Path, Path, list[int]],
) -> None:
    summary, out, _, killed = deployment
    assert len(killed) == 1
    rows = rows_of(out / "rounds.csv")
    assert [r["round"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["failures"] for r in rows[1:3]] == ["0", "0"]
    # Client 2 never answers again: a failure, not a crash; the round goes on without it.
    assert rows[3]["failures"] == "1" and rows[3]["clients_trained"] == "2"
    assert rows[3]["rejected"] == "0"
    assert summary["rounds"] == 3 and (out / "summary.json").is_file()
    assert _flower_processes() == []


@pytest.mark.slow
@pytest.mark.skipif(
    not (REPO / "pyproject.toml").is_file(), reason="needs the source tree: flwr run builds it"
)
def test_flwr_run_with_overrides_is_the_oleander_run(tmp_path: Path) -> None:
    """The README's sequence: a SuperLink in simulation mode, then `flwr run .`; then
    engine=ray submitting to that SuperLink."""
    home, port = tmp_path / "flwr-home", free_port()
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local-sim"\n\n[superlink.local-sim]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = {**os.environ, "FLWR_HOME": str(home),
           "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}  # fmt: skip
    overrides = "num_rounds=2 strategy=median attack=sign_flip malicious_fraction=0.2"
    superlink = subprocess.Popen(
        [BIN / "flower-superlink", "--insecure", "--simulation",
         "--disable-runtime-dependency-installation", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        result = subprocess.run(
            [BIN / "flwr", "run", ".", "--stream", "--run-config",
             f'overrides="{overrides}" output-dir="{tmp_path / "flwr"}"',
             "--federation-config", "num-supernodes=10"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        # The ray engine submits to the same running SuperLink (engine.superlink).
        existing = check_point([*overrides.split(), "progress=false", "engine=ray",
                                f"engine.superlink=127.0.0.1:{port}"])  # fmt: skip
        submitted = simulate(existing, tmp_path / "submitted")
    finally:
        for pid in [superlink.pid, *descendants(superlink.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        superlink.wait(timeout=30)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "oleander: final accuracy" in result.stdout + result.stderr
    simulate(check_point([*overrides.split(), "progress=false"]), tmp_path / "oleander")
    _assert_same_run(tmp_path / "flwr", tmp_path / "oleander")
    summary = json.loads((tmp_path / "flwr" / "summary.json").read_text())
    assert summary["strategy"] == "median" and summary["engine"] == "flwr-run"
    assert submitted["engine"] == "ray"
    _assert_same_run(tmp_path / "submitted", tmp_path / "oleander")
    # Bit for bit against the inline engine training one client at a time, as Ray does.
    sequential = [*overrides.split(), "progress=false", "engine.cohort=never"]
    simulate(check_point(sequential), tmp_path / "sequential")
    columns = ("round", "test_accuracy", "test_loss", "train_loss", "clients_trained")
    assert [[r[c] for c in columns] for r in rows_of(tmp_path / "submitted" / "rounds.csv")] == [
        [r[c] for c in columns] for r in rows_of(tmp_path / "sequential" / "rounds.csv")
    ]
    assert superlink.returncode is not None and _flower_processes() == []


@pytest.mark.slow
def test_an_interrupted_run_stops_every_process_and_resumes(tmp_path: Path) -> None:
    """SIGTERM mid-run: every Flower process goes, the checkpoint stays, and the same
    command again finishes the run from it."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "simulator", "engine=ray", "num_rounds=2", "progress=false",
               f"hydra.run.dir={out}"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        seen.update(descendants(proc.pid))
        rounds = out / "rounds.csv"
        if rounds.exists() and len(rounds.read_text().splitlines()) >= 3:  # header, 0, 1
            break
        time.sleep(0.1)
    seen.update(descendants(proc.pid))
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "its checkpoint is kept: run the same command again" in stderr
    assert stderr.count("\n") <= 3, stderr  # a line, not a traceback
    time.sleep(1)
    alive = [pid for pid in seen if Path(f"/proc/{pid}").exists()
             and b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()]  # fmt: skip
    assert alive == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in alive]
    assert not (out / "summary.json").exists() and (out / "checkpoint.pt").exists()
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming after round" in (out / "flower" / "flwr-run.log").read_text()
    rounds = [r["round"] for r in rows_of(out / "rounds.csv")]
    assert rounds == ["0", "1", "2"]
