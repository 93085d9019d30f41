"""Engines: Flower's task identity, the inline Grid, and end-to-end runs on both engines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp

from simulator.engines.inline import InlineGrid, node_ids_for, set_task_identity
from tests.conftest import rows_of, run_oleander

METRIC_COLUMNS = ("round", "test_accuracy", "test_loss", "train_loss", "clients_trained")


def test_flower_task_identity_is_where_oleander_sets_it() -> None:
    """Fails loudly if a Flower upgrade moves the task identity Message() reads."""
    from flwr.supercore.task_identity import TaskIdentity

    set_task_identity(77)
    assert (TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id) == (77, 1, 1)
    message = Message(RecordDict(), 1234, MessageType.TRAIN)
    assert message.metadata.run_id == 77
    assert message.metadata.src_node_id == 1
    assert message.metadata.dst_node_id == 1234


def test_node_ids_are_distinct_and_never_flower_reserved() -> None:
    ids = node_ids_for(500, run_id=3)
    assert len(set(ids)) == 500
    assert not {0, 1} & set(ids)
    assert node_ids_for(500, run_id=3) == ids


def _echo_app() -> ClientApp:
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        if pid == 2:
            raise RuntimeError("client 2 is broken")
        return Message(RecordDict({"identity": ConfigRecord({"client-id": pid})}), reply_to=message)

    return app


@pytest.mark.parametrize("workers", [0, 2])
def test_inline_grid_delivers_messages_and_turns_exceptions_into_error_replies(
    workers: int,
) -> None:
    set_task_identity(1)
    grid = InlineGrid(_echo_app, num_clients=4, workers=workers)
    try:
        nodes = list(grid.get_node_ids())
        messages = [Message(RecordDict(), n, MessageType.QUERY) for n in nodes]
        replies = list(grid.send_and_receive(messages))
    finally:
        grid.close()
    assert len(replies) == 4
    by_node = {r.metadata.src_node_id: r for r in replies}
    assert set(by_node) == set(nodes)
    broken = by_node[nodes[2]]
    assert broken.has_error()
    assert "client 2 is broken" in broken.error.reason
    for pid in (0, 1, 3):
        reply = by_node[nodes[pid]]
        assert reply.content["identity"]["client-id"] == pid
        assert reply.metadata.reply_to_message_id == messages[pid].metadata.message_id


def _run(tmp_path: Path, name: str, *overrides: str) -> tuple[list[dict[str, str]], dict]:
    out = tmp_path / name
    result = run_oleander(tmp_path, f"hydra.run.dir={out}", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = rows_of(out / "rounds.csv")
    summary = json.loads((out / "summary.json").read_text())
    return rows, summary


def _metrics(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    return [tuple(row[c] for c in METRIC_COLUMNS) for row in rows]


E2E = ("num_rounds=3", "num_clients=10", "progress=false")


@pytest.fixture(scope="module")
def inline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, str]], dict]:
    return _run(tmp_path_factory.mktemp("inline"), "run", *E2E)


@pytest.fixture(scope="module")
def sequential_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[dict[str, str]], dict]:
    """The inline engine training one client at a time (no cohort): Ray's arithmetic."""
    return _run(tmp_path_factory.mktemp("sequential"), "run", *E2E, "engine.cohort=never")


def test_cohort_training_matches_one_client_at_a_time(
    inline_run: tuple[list[dict[str, str]], dict],
    sequential_run: tuple[list[dict[str, str]], dict],
) -> None:
    """The MLP's clients train as one cohort by default; the numbers agree to rounding."""
    _assert_close(_metrics(inline_run[0]), _metrics(sequential_run[0]))


def _assert_close(first: list[tuple[str, ...]], second: list[tuple[str, ...]]) -> None:
    """Same rounds, accuracies and client counts; losses equal to a relative 1e-5."""
    assert [row[0] for row in first] == [row[0] for row in second]
    for a, b in zip(first, second, strict=True):
        assert a[1] == b[1]  # the same predictions on every test image
        assert a[4] == b[4]
        for x, y in zip(a[2:4], b[2:4], strict=True):
            if "" in (x, y):  # round 0 has no training loss
                assert x == y
            else:
                assert float(x) == pytest.approx(float(y), rel=1e-5)


def test_inline_end_to_end_learns_digits(inline_run: tuple[list[dict[str, str]], dict]) -> None:
    rows, summary = inline_run
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[0]["test_accuracy"]) < 0.3  # an untrained model is near chance (0.1)
    assert summary["final_accuracy"] > 0.6
    assert all(int(r["clients_trained"]) == 10 for r in rows[1:])
    assert summary["rounds"] == 3
    assert len(summary["config_digest"]) == 64
    assert summary["versions"]["flwr"].startswith("1.42")


def test_same_command_twice_gives_identical_metrics(
    tmp_path: Path, inline_run: tuple[list[dict[str, str]], dict]
) -> None:
    rows, _ = _run(tmp_path, "again", *E2E)
    assert _metrics(rows) == _metrics(inline_run[0])


def test_another_seed_gives_other_metrics(
    tmp_path: Path, inline_run: tuple[list[dict[str, str]], dict]
) -> None:
    rows, _ = _run(tmp_path, "seed1", *E2E, "seed=1")
    assert _metrics(rows) != _metrics(inline_run[0])


def test_inline_workers_match_in_process_clients(
    tmp_path: Path, inline_run: tuple[list[dict[str, str]], dict]
) -> None:
    """Workers train the same cohorts in halves, and the server evaluates with their
    threads: the same numbers to floating-point rounding."""
    rows, _ = _run(tmp_path, "workers", *E2E, "engine.workers=2")
    _assert_close(_metrics(rows), _metrics(inline_run[0]))


def test_client_sampling_trains_the_configured_number(tmp_path: Path) -> None:
    rows, summary = _run(tmp_path, "sampled", "num_rounds=2", "num_clients=20",
                         "clients_per_round=5", "progress=false")  # fmt: skip
    assert [int(r["clients_trained"]) for r in rows[1:]] == [5, 5]
    assert summary["clients_per_round"] == 5


def test_local_mnist_runs_with_the_fltrust_cnn(tmp_path: Path, mnist_dir: Path) -> None:
    rows, summary = _run(
        tmp_path, "mnist", "dataset=mnist", f"dataset.path={mnist_dir}", "model=fltrust_cnn",
        "num_rounds=1", "num_clients=10", "local_epochs=1", "lr=0.1", "progress=false",
    )  # fmt: skip
    assert len(rows) == 2
    assert summary["dataset"] == "mnist"
    assert "8,000" in (summary["data_note"] or "")
    assert summary["final_accuracy"] > 0.3


def _dying_app(marker: str) -> ClientApp:
    """A ClientApp whose client 1 kills its worker process once (the marker remembers)."""
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        if pid == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies, as if killed
        return Message(RecordDict({"identity": ConfigRecord({"client-id": pid})}), reply_to=message)

    return app


def test_a_dead_worker_is_replaced_and_its_clients_rerun(tmp_path: Path) -> None:
    import functools

    set_task_identity(1)
    grid = InlineGrid(functools.partial(_dying_app, str(tmp_path / "died")), 4, workers=2)
    try:
        nodes = list(grid.get_node_ids())
        replies = list(
            grid.send_and_receive([Message(RecordDict(), n, MessageType.QUERY) for n in nodes])
        )
    finally:
        grid.close()
    assert (tmp_path / "died").exists(), "the worker did die"
    assert grid.replaced_workers == 1
    assert sorted(r.content["identity"]["client-id"] for r in replies) == [0, 1, 2, 3]


def test_workers_receive_the_global_model_once_per_chunk() -> None:
    """Messages of a round share one content object (as FedAvg builds them), and the
    chunk pickled for a worker holds it once, however many clients the chunk has."""
    import pickle

    import numpy as np
    from flwr.app import Array, ArrayRecord

    set_task_identity(1)
    model = ArrayRecord({"w": Array(np.zeros(100_000, dtype=np.float32))})  # 400 kB
    content = RecordDict({"arrays": model, "config": ConfigRecord({"server-round": 1})})
    one = len(pickle.dumps([Message(content, 10, MessageType.TRAIN)]))
    chunk = [Message(content, 10 + i, MessageType.TRAIN) for i in range(50)]
    assert one > 400_000
    assert len(pickle.dumps(chunk)) < one + 50 * 2_000  # metadata only per extra client


def test_workers_fork_on_cpu_and_spawn_for_cuda() -> None:
    """CUDA cannot run in a forked child; CPU workers fork to start at once."""
    from simulator.engines.inline import CAN_FORK, start_method

    assert start_method("cuda") == "spawn"
    assert start_method("cuda:1") == "spawn"
    assert start_method("cpu") == ("fork" if CAN_FORK else "spawn")


class _BrokenBatcher(ClientApp):
    """A ClientApp whose batched path raises: every message must still get its reply."""

    def train_many(self, batch: list, force: bool = False) -> dict:
        raise RuntimeError("batched path broke")


def test_a_failing_batched_path_falls_back_to_the_handlers() -> None:
    from simulator.engines.inline import _serve

    set_task_identity(1)
    app = _BrokenBatcher()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        return Message(RecordDict({"identity": ConfigRecord({"client-id": pid})}), reply_to=message)

    contexts = [
        Context(run_id=1, node_id=10 + i, node_config={"partition-id": i}, state=RecordDict(),
                run_config={})
        for i in range(3)
    ]  # fmt: skip
    batch = [(Message(RecordDict(), 10 + i, MessageType.QUERY), contexts[i]) for i in range(3)]
    replies = _serve(app, batch, "auto")
    assert [r.content["identity"]["client-id"] for r in replies] == [0, 1, 2]
