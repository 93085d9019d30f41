"""The Flower ServerApp: find the clients, then run the strategy with server-side evaluation."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy
from torch import nn

from clients.training import TrainConfig, evaluate, train
from simulator import checkpoint, protocol
from simulator.arrays import ArrayLayout, to_array_record
from simulator.data import DataSplit
from simulator.interrupt import StopRequest
from simulator.seeding import Stream, torch_generator

log = logging.getLogger("oleander")


class ClientDiscoveryError(RuntimeError):
    """The nodes on the grid do not answer as the configured clients."""


def discover_clients(grid: Grid, num_clients: int, timeout: float = 300.0) -> dict[int, int]:
    """Map Flower node ids to Oleander client ids by asking every node (a ``query`` message).

    Flower's runtimes give nodes random ids and keep the partition id on the node side;
    asking makes sampling by client id, and so results, identical on every engine.
    """
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < num_clients:
        if time.monotonic() > deadline:
            raise ClientDiscoveryError(
                f"only {len(nodes)} of {num_clients} client nodes connected in {timeout:.0f} s"
            )
        time.sleep(0.05)
    mapping: dict[int, int] = {}
    for reply in grid.send_and_receive([protocol.query(node) for node in nodes], timeout=timeout):
        if reply.has_error():
            raise ClientDiscoveryError(
                f"node {reply.metadata.src_node_id} failed to identify itself: {reply.error.reason}"
            )
        mapping[reply.metadata.src_node_id] = protocol.identity_of(reply)
    if sorted(mapping.values()) != list(range(num_clients)):
        raise ClientDiscoveryError(
            f"expected client ids 0..{num_clients - 1}, nodes answered {sorted(mapping.values())}"
        )
    return mapping


def root_update_fn(
    model: nn.Module, root: DataSplit, config: TrainConfig, seed: int, device: str
) -> Callable[[int, torch.Tensor | None], torch.Tensor]:
    """FLTrust's server update: the global model trained on the root set, minus the global.

    The server trains as every client does (same ``config``), with its own seeded
    minibatch order, on a private copy of the model. The result is a ``Defence`` input:
    ``server_update(round, global_model)`` with the global model as one flat vector.
    """
    server_model = copy.deepcopy(model).to(device)
    layout = ArrayLayout.of(to_array_record(server_model.state_dict()))

    def server_update(server_round: int, global_model: torch.Tensor | None) -> torch.Tensor:
        assert global_model is not None
        server_model.load_state_dict(layout.unflatten(global_model).to_torch_state_dict())
        generator = torch_generator(seed, Stream.ROOT_TRAIN, server_round)
        train(server_model, root.x, root.y, config, generator, device)
        trained = layout.flatten(to_array_record(server_model.state_dict()))
        return trained.to(global_model.device) - global_model

    return server_update


@dataclass
class ServerPlan:
    """What the ServerApp needs, built by the entry point before any engine starts."""

    initial_model: nn.Module  # also used for evaluation: its weights are overwritten
    test: DataSplit
    num_clients: int
    num_rounds: int
    train_config: TrainConfig
    build_strategy: Callable[[dict[int, int]], Strategy]
    on_evaluated: Callable[..., None]
    device: str = "cpu"
    # Test images whose prediction as the target counts as attack success, and the target.
    success: tuple[torch.Tensor, int] | None = None
    checkpoint: Checkpointer | None = None
    stop: StopRequest | None = None
    eval_batch_size: int = 1024
    round_timeout: float = 3600.0
    # Threads for server evaluation (None: the process's). Worker processes wait while the
    # server evaluates, so with N workers it may use N threads without oversubscribing.
    eval_threads: int | None = None


@dataclass
class Checkpointer:
    """Saves the run every ``every`` rounds (and after the last), and resumes from it."""

    path: Path
    every: int
    config_digest: str
    recorder: Any  # simulator.results.RunRecorder

    def load(self) -> dict[str, Any] | None:
        return checkpoint.load(self.path, self.config_digest)

    def maybe_save(
        self,
        server_round: int,
        last_round: int,
        arrays: ArrayRecord,
        strategy: Any,
        force: bool = False,
    ) -> None:
        due = self.every > 0 and (server_round % self.every == 0 or server_round == last_round)
        if not (due or force):
            return
        checkpoint.save(
            self.path,
            {
                "round": server_round,
                "config_digest": self.config_digest,
                "arrays": checkpoint.arrays_to_tensors(arrays),
                "strategy": strategy.state(),
                "recorder": self.recorder.state(),
            },
        )


@torch.no_grad()
def attack_success_rate(
    model: nn.Module, x: torch.Tensor, target: int, batch_size: int, device: str
) -> float:
    """Share of ``x`` the model assigns to ``target``."""
    hits = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size].to(device))
        hits += int((logits.argmax(dim=1) == target).sum())
    return hits / len(x)


def make_server_app(plan: ServerPlan) -> ServerApp:
    """A ServerApp whose main discovers the clients and runs ``plan``'s strategy."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, plan)

    return app


def run_server(grid: Grid, plan: ServerPlan) -> Any:
    """Discover the clients, then ``Strategy.start`` with centralized evaluation each round.

    With a checkpoint in the output directory, the run resumes after its last saved round:
    the strategy is told how many rounds are done, so Flower's loop counts on from there.
    """
    node_to_client = discover_clients(grid, plan.num_clients)
    strategy = plan.build_strategy(node_to_client)
    model = plan.initial_model.to(plan.device)
    initial = ArrayRecord(model.state_dict())
    done = 0
    saver = plan.checkpoint
    saved = saver.load() if saver is not None else None
    if saver is not None and saved is not None:
        done = int(saved["round"])
        initial = checkpoint.tensors_to_arrays(saved["arrays"])
        strategy.load_state(saved["strategy"], rounds_done=done)
        saver.recorder.load_state(saved["recorder"])
        log.info("resuming after round %d of %d from %s", done, plan.num_rounds, saver.path)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0 and done:
            return None  # the resumed model was evaluated when it was saved
        server_round += done
        model.load_state_dict(arrays.to_torch_state_dict())
        threads = torch.get_num_threads()
        torch.set_num_threads(plan.eval_threads or threads)
        try:
            metrics = evaluate(
                model, plan.test.x, plan.test.y, plan.eval_batch_size, device=plan.device
            )
            asr = None
            if plan.success is not None and len(plan.success[0]):
                asr = attack_success_rate(model, *plan.success, plan.eval_batch_size, plan.device)
        finally:
            torch.set_num_threads(threads)
        record = MetricRecord({"accuracy": metrics["accuracy"], "loss": metrics["loss"]})
        if asr is not None:
            record["attack_success_rate"] = asr
        plan.on_evaluated(server_round, float(metrics["accuracy"]), float(metrics["loss"]), asr)
        stopping = plan.stop is not None and plan.stop.requested
        if saver is not None and server_round > 0:
            saver.maybe_save(server_round, plan.num_rounds, arrays, strategy, force=stopping)
        if plan.stop is not None and server_round > 0 and server_round < plan.num_rounds:
            plan.stop.check(server_round)
        return record

    return strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=plan.num_rounds - done,
        timeout=plan.round_timeout,
        train_config=protocol.train_config_record(plan.train_config),
        evaluate_fn=evaluate_fn,
    )


# The ServerApp Flower's runtimes load (pyproject.toml: serverapp = "simulator.server_app:app").
app = ServerApp()


@app.main()
def flower_main(grid: Grid, context: Context) -> None:
    """Run the experiment the Flower run config describes (``simulator.run_config``).

    Used by ``flwr run`` and by the ray and deployment engines: the run's files go to
    the run config's ``output-dir`` on the machine that runs this ServerApp, one log
    line per round goes to Flower's log stream (``flwr run --stream``, ``flwr log``).
    """
    from simulator import experiment, run_config
    from simulator.config import ConfigError

    if not log.handlers:  # Flower's process configures only Flower's own logger
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("oleander: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    try:
        cfg, run_dir = run_config.compose_run(context.run_config)
    except (ConfigError, ValueError) as error:
        log.error("error: %s", error)
        raise SystemExit(2) from None
    if run_dir:  # composed from `overrides`: a run `flwr run` submitted, not an engine
        cfg.engine.name = "flwr-run"
    output_dir = run_config.output_dir_of(context.run_config, run_dir)
    sweep_dir = run_config.sweep_dir_of(context.run_config)
    asked = run_config.overrides_of(context.run_config)
    run = experiment.prepare(cfg, output_dir, progress=False, sweep_dir=sweep_dir, asked=asked)

    def report(server_round: int, accuracy: float) -> None:
        log.info("round %d/%d: accuracy %.4f", server_round, cfg.num_rounds, accuracy)

    run.recorder.on_round = report
    experiment.announce(run)
    with run.tracker:
        run_server(grid, run.plan)
    experiment.finish(run)
