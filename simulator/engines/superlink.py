"""Engines that submit the run to a Flower SuperLink: ``deployment`` and ``ray``.

Both run the experiment as a Flower app, exactly as ``flwr run`` does: a SuperLink
receives the app bundle and a run config carrying the resolved config
(``simulator.run_config``); Flower starts the ServerApp (``simulator.server_app:app``),
which writes rounds.csv, clients.csv and summary.json into the run's output directory.

- ``deployment``: a real SuperLink (insecure, loopback) and one ``flower-supernode`` per
  client (``--node-config "partition-id=K num-partitions=N"``), each running the
  ClientApp in its own process, talking to the SuperLink over HTTP as on real machines;
  or, with ``superlink=HOST:PORT``, an existing SuperLink whose SuperNodes the operator
  started with that node config.
- ``ray``: a SuperLink in simulation mode: Flower's Simulation Runtime on Ray, the
  supported route to it in Flower 1.42 (``run_simulation`` is deprecated).

Every process the engine starts gets its own session; all of them, and whatever they
started, are stopped when the run ends, fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from simulator import run_config
from simulator.protocol import NUM_PARTITIONS, PARTITION_ID

log = logging.getLogger("oleander")
HOST = "127.0.0.1"
START_TIMEOUT = 60.0  # seconds for the SuperLink to answer its health check


class DeploymentError(RuntimeError):
    """The SuperLink, a SuperNode or the submitted run failed."""


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _tool(name: str) -> str:
    """The Flower command ``name`` of this environment (beside this Python first)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise DeploymentError(f"`{name}` not found: is Flower installed (pip install flwr)?")
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


class Processes:
    """The processes an engine started; ``stop`` ends them and everything they started."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "wb") as out:
            self.started[name] = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or self.env,
                start_new_session=True,
            )

    def exited(self) -> dict[str, int]:
        """The processes that have ended, with their exit status."""
        return {
            name: code for name, proc in self.started.items() if (code := proc.poll()) is not None
        }

    def stop(self) -> None:
        """SIGTERM every process started here and everything below it, reap them, then
        SIGKILL whatever of those is left (Flower starts some helpers in sessions of
        their own). A pid is signalled only while it is still the process seen at first
        (same start time), never a stranger that reused the number."""
        targets: list[tuple[int, str | None]] = []
        for proc in self.started.values():
            for pid in [proc.pid, *descendants(proc.pid)]:
                targets.append((pid, _start_time(pid)))
        _signal_all(targets, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.started.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _signal_all(targets, signal.SIGKILL)


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks (``/proc/PID/stat`` field 22)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _signal_all(targets: list[tuple[int, str | None]], sig: int) -> None:
    for pid, started in targets:
        if started is not None and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://{HOST}:{port}/health", timeout=0.5).is_success
    except httpx.HTTPError:
        return False


def app_dir(home: Path, config: dict[str, str]) -> Path:
    """A Flower app of one ``pyproject.toml``: the installed Oleander with this run config.

    The bundle then holds no code: every process imports the Oleander installed beside
    Flower, whichever way it was installed.
    """
    import tomli_w

    from simulator import __version__

    folder = home / "app"
    folder.mkdir(parents=True, exist_ok=True)
    pyproject = {
        "build-system": {"requires": ["setuptools>=77"], "build-backend": "setuptools.build_meta"},
        "project": {
            "name": "oleander",
            "version": __version__,
            "description": "Oleander's experiment, run by the installed Oleander",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "oleander",
                    "components": {
                        "serverapp": "simulator.server_app:app",
                        "clientapp": "simulator.client_app:app",
                    },
                    "config": config,
                }
            }
        },
    }
    (folder / "pyproject.toml").write_text(tomli_w.dumps(pyproject))
    return folder


def _connection_config(home: Path, address: str) -> None:
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "oleander"\n\n[superlink.oleander]\n'
        f'address = "{address}"\ninsecure = true\n'
    )


def _last_error(log_file: Path) -> str | None:
    """Why a run failed, from its ``flwr run`` log: Oleander's one-line error, the text of
    the CLI's error box, or Flower's last ERROR line."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if "oleander: error:" in line:
            return line.split("oleander: error:", 1)[1].strip()
    box = [line.strip("│ ") for line in lines if line.startswith("│")]
    if box:
        return " ".join(part for part in box if part)
    for line in reversed(lines):
        if "ERROR" in line:
            return line.split("ERROR", 1)[1].strip(" :")
    return None


class SuperLinkEngine:
    """Submit the run to a SuperLink, started here unless ``superlink`` names one."""

    simulation = False

    def __init__(self, superlink: str | None = None, timeout: float = 86400.0) -> None:
        if superlink is not None and (":" not in superlink or not superlink.rsplit(":", 1)[1]):
            raise ValueError(f"superlink={superlink!r}: must be HOST:PORT")
        if timeout <= 0:
            raise ValueError(f"timeout={timeout}: must be > 0")
        self.superlink = superlink
        self.timeout = timeout

    # What differs between the engines ------------------------------------------------
    def superlink_args(self) -> list[str]:
        return ["--simulation"] if self.simulation else []

    def environment(self) -> dict[str, str]:
        """Variables for the processes this engine starts."""
        return {}

    def start_nodes(self, processes: Processes, port: int, num_nodes: int, home: Path) -> None:
        """Start the SuperNodes (none on the simulation runtime)."""

    def run_args(self, num_nodes: int) -> list[str]:
        """Extra ``flwr run`` arguments (the simulated federation's size)."""
        return []

    # ---------------------------------------------------------------------------------
    def submit(
        self, cfg: DictConfig, output_dir: Path, sweep_dir: Path | None = None
    ) -> dict[str, Any]:
        """Run ``cfg`` on the SuperLink; its summary, once ``output_dir`` holds it."""
        from simulator.main import config_digest
        from simulator.progress import RoundProgress

        output_dir = Path(output_dir).resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        home = Path(tempfile.mkdtemp(prefix="oleander-flwr-"))
        env = {
            **os.environ,
            "FLWR_HOME": str(home),
            # Flower starts its helpers (flower-superexec, flwr-serverapp, ...) by name.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
        }
        env.update(self.environment())
        processes = Processes(output_dir / "flower", env)
        progress = RoundProgress(cfg.num_rounds, enabled=cfg.progress)
        interrupted: int | None = None
        with _signals_raise() as caught:
            try:
                self._start_and_follow(cfg, output_dir, sweep_dir, home, processes, progress)
            except _Signalled as signalled:
                interrupted = signalled.signum
                if self.superlink is not None:  # a SuperLink that outlives us: stop the run
                    _stop_run(processes, home)
            finally:
                for sig in caught:  # a second Ctrl-C must not cut the clean-up short
                    signal.signal(sig, signal.SIG_IGN)
                processes.stop()
                shutil.rmtree(home, ignore_errors=True)
        if interrupted is not None:
            from simulator.interrupt import RunInterrupted

            raise RunInterrupted(_rounds_done(output_dir), interrupted)
        summary_path = output_dir / "summary.json"
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError):
            stream = processes.log_dir / "flwr-run.log"
            finished = self.superlink and remote_summary(stream, cfg, self.superlink)
            if finished:  # the ServerApp ran on another machine and wrote its files there
                log.info(
                    "finished on %s; rounds.csv, clients.csv and summary.json are in %s "
                    "on that machine",
                    self.superlink,
                    output_dir,
                )
                return finished
            reason = _last_error(processes.log_dir / "flwr-run.log") or "no summary.json written"
            raise DeploymentError(
                f"the run on the SuperLink failed: {reason} (logs in {processes.log_dir})"
            ) from None
        if summary.get("config_digest") != config_digest(cfg):
            raise DeploymentError(f"{summary_path} belongs to another config")
        return summary

    def _start_and_follow(
        self,
        cfg: DictConfig,
        output_dir: Path,
        sweep_dir: Path | None,
        home: Path,
        processes: Processes,
        progress: Any,
    ) -> None:
        num_nodes = cfg.num_clients + cfg.fake_clients  # one node per client, fake ones too
        address = self.superlink
        if address is None:
            port = free_port()
            processes.start(
                "superlink",
                [
                    _tool("flower-superlink"), "--insecure", *self.superlink_args(),
                    "--disable-runtime-dependency-installation",
                    "--host", HOST, "--port", str(port),
                ],
            )  # fmt: skip
            self._wait_healthy(processes, port)
            self.start_nodes(processes, port, num_nodes, home)
            address = f"{HOST}:{port}"
        _connection_config(home, address)
        folder = app_dir(home, run_config.run_config_for(cfg, output_dir, sweep_dir))
        nodes = "simulated SuperNodes" if self.simulation else "SuperNodes"
        log.info(
            "%s engine: SuperLink %s (%s), %d %s; Flower's logs in %s",
            cfg.engine.name,
            address,
            "started here" if self.superlink is None else "already running",
            num_nodes,
            nodes if self.superlink is None or self.simulation else f"{nodes} expected",
            processes.log_dir,
        )
        command = [_tool("flwr"), "run", str(folder), "oleander", "--stream"]
        processes.start("flwr-run", [*command, *self.run_args(num_nodes)])
        with progress:
            self._follow(processes, output_dir, progress)

    def _wait_healthy(self, processes: Processes, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(port):
            if "superlink" in processes.exited():
                raise DeploymentError(
                    f"flower-superlink exited (log: {processes.log_dir / 'superlink.log'})"
                )
            if time.monotonic() > deadline:
                raise DeploymentError(f"flower-superlink did not answer in {START_TIMEOUT:.0f} s")
            time.sleep(0.1)

    def _follow(self, processes: Processes, output_dir: Path, progress: Any) -> None:
        """Wait for ``flwr run --stream`` to end, showing the rounds its log reports (the
        ServerApp logs one line a round, on whichever machine it runs)."""
        stream = processes.log_dir / "flwr-run.log"
        deadline = time.monotonic() + self.timeout
        shown = 0
        while "flwr-run" not in processes.exited():
            if "superlink" in processes.exited():
                raise DeploymentError("flower-superlink exited during the run")
            if time.monotonic() > deadline:
                raise DeploymentError(f"the run took longer than timeout={self.timeout:.0f} s")
            shown = _show_rounds(stream, shown, progress)
            if _finished(stream):  # its files are written: no need to watch Flower wind down
                break
            time.sleep(0.2)
        _show_rounds(stream, shown, progress)


class _Signalled(BaseException):
    """SIGINT or SIGTERM while a run is submitted: stop every process, keep the files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[dict[int, Any]]:
    """SIGINT and SIGTERM raise ``_Signalled`` inside the block (main thread only); it
    yields the signals it handles, and restores their handlers on the way out."""
    previous: dict[int, Any] = {}

    def raise_signalled(signum: int, frame: Any) -> None:
        raise _Signalled(signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, raise_signalled)
    handlers = dict(previous)
    try:
        yield previous
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _rounds_done(output_dir: Path) -> int:
    """The last round rounds.csv records (0 if none)."""
    try:
        lines = (output_dir / "rounds.csv").read_text().splitlines()[1:]
        return int(lines[-1].split(",")[0]) if lines else 0
    except (OSError, ValueError):
        return 0


def _stop_run(processes: Processes, home: Path) -> None:
    """Ask the SuperLink to stop the submitted run (its id is in the ``flwr run`` log)."""
    try:
        text = (processes.log_dir / "flwr-run.log").read_text(errors="replace")
        run_id = text.split("Successfully started run ", 1)[1].split()[0]
    except (OSError, IndexError):
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [_tool("flwr"), "stop", run_id, "oleander"],
            env=processes.env, capture_output=True, timeout=30, check=False,
        )  # fmt: skip


ROUND_LINE = re.compile(r"oleander: round (\d+)/\d+: accuracy ([0-9.naninf]+)")
FINAL_LINE = re.compile(
    r"oleander: final accuracy ([0-9.naninf]+) \(best ([0-9.naninf]+) at round (\w+)\)"
)


def _show_rounds(stream: Path, shown: int, progress: Any) -> int:
    """Update ``progress`` with the rounds the log reports after the first ``shown``."""
    try:
        rounds = ROUND_LINE.findall(stream.read_text(errors="replace"))
    except OSError:
        return shown
    for server_round, accuracy in rounds[shown:]:
        progress.update(int(server_round), float(accuracy))
    return max(shown, len(rounds))


def _finished(stream: Path) -> bool:
    """Whether the ServerApp reported the end of the run (after its last file)."""
    try:
        return FINAL_LINE.search(stream.read_text(errors="replace")) is not None
    except OSError:
        return False


def remote_summary(stream: Path, cfg: DictConfig, address: str) -> dict[str, Any] | None:
    """What the log of a run on another machine's SuperLink says (its files stay there)."""
    try:
        found = FINAL_LINE.findall(stream.read_text(errors="replace"))
    except OSError:
        return None
    if not found:
        return None
    final, best, best_round = found[-1]
    return {
        "final_accuracy": float(final),
        "best_accuracy": float(best),
        "best_round": int(best_round) if best_round.isdigit() else None,
        "engine": cfg.engine.name,
        "superlink": address,
        "files": "on the SuperLink's machine",
    }


class DeploymentEngine(SuperLinkEngine):
    """A real Flower deployment on loopback (or an existing SuperLink: ``superlink``).

    Parameters
    ----------
    superlink : str | None (default: None)
        ``HOST:PORT`` of a running SuperLink (its HTTP port, ``flower-superlink --port``)
        to submit to; its SuperNodes must be started with ``--node-config
        "partition-id=K num-partitions=N"`` for K = 0..N-1. None starts one here.
    timeout : float (default: 86400)
        Seconds the whole run may take.
    """

    def start_nodes(self, processes: Processes, port: int, num_nodes: int, home: Path) -> None:
        tool = _tool("flower-supernode")
        for client in range(num_nodes):
            node_home = home / f"node-{client}"
            node_home.mkdir()
            processes.start(
                f"supernode-{client}",
                [
                    tool, "--insecure", "--superlink", f"{HOST}:{port}",
                    "--host", HOST, "--port", str(free_port()),
                    "--node-config", f"{PARTITION_ID}={client} {NUM_PARTITIONS}={num_nodes}",
                ],
                env={**processes.env, "FLWR_HOME": str(node_home)},
            )  # fmt: skip


class RayEngine(SuperLinkEngine):
    """Flower's Simulation Runtime on Ray, through a SuperLink in simulation mode.

    Parameters
    ----------
    num_cpus, num_gpus : float
        Resources per client task (the federation's ``client-resources``).
    address : str | None (default: None)
        A Ray cluster to join (``auto``, ``ray://host:port``), handed to the runtime as
        ``RAY_ADDRESS``; None starts a local one.
    superlink : str | None
        ``HOST:PORT`` of a running ``flower-superlink --simulation``; None starts one.
    """

    simulation = True

    def __init__(
        self,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        address: str | None = None,
        superlink: str | None = None,
        timeout: float = 86400.0,
    ) -> None:
        super().__init__(superlink=superlink, timeout=timeout)
        self.address = address
        if num_cpus <= 0:
            raise ValueError(f"num_cpus={num_cpus}: must be > 0")
        if num_cpus != int(num_cpus):
            raise ValueError(f"num_cpus={num_cpus}: Flower's simulation runtime takes whole CPUs")
        if num_gpus < 0:
            raise ValueError(f"num_gpus={num_gpus}: must be >= 0")
        self.num_cpus = int(num_cpus)
        self.num_gpus = num_gpus

    def environment(self) -> dict[str, str]:
        return {"RAY_ADDRESS": self.address} if self.address else {}

    def run_args(self, num_nodes: int) -> list[str]:
        return [
            "--federation-config",
            f"num-supernodes={num_nodes} client-resources-num-cpus={self.num_cpus} "
            f"client-resources-num-gpus={self.num_gpus}",
        ]
