"""Interrupted runs resume from their checkpoint and end with the numbers they would have had."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable
from omegaconf import DictConfig

from simulator import protocol
from simulator.checkpoint import FILENAME, CheckpointError
from simulator.main import simulate
from tests.conftest import compose_config

METRICS = ("round", "test_accuracy", "test_loss", "train_loss", "clients_trained",
           "malicious_sampled", "detection_precision", "detection_recall")  # fmt: skip


class Interrupt(KeyboardInterrupt):
    """Stands in for a kill: a BaseException no part of a run may swallow."""


def interrupt_at(server_round: int):
    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        train = message.metadata.message_type == MessageType.TRAIN
        if train and protocol.round_of(protocol.train_payload(message)[1]) == server_round:
            raise Interrupt
        return call_next(message, context)

    return mod


def _metrics(path: Path) -> list[tuple[str, ...]]:
    with open(path / "rounds.csv", newline="") as handle:
        return [tuple(row[c] for c in METRICS) for row in csv.DictReader(handle)]


def _numbers(path: Path) -> list[dict[str, str]]:
    """A results file without its timings (they differ from run to run)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


def interrupted(cfg: DictConfig, tmp_path: Path, at: int) -> tuple[dict, Callable[[], None]]:
    """Run ``cfg`` whole, then again interrupted in round ``at``: the checkpoint the
    interrupted run left (as ``torch.load`` reads it), and a function that resumes it and
    asserts that rounds.csv and clients.csv end as the uninterrupted run's."""
    simulate(cfg, tmp_path / "whole")
    broken = tmp_path / "broken"
    with pytest.raises(Interrupt):
        simulate(cfg, broken, client_mods=[interrupt_at(at)])
    saved = torch.load(broken / FILENAME, weights_only=True)

    def resume() -> None:
        simulate(cfg, broken)
        for name in ("rounds.csv", "clients.csv"):
            assert _numbers(broken / name) == _numbers(tmp_path / "whole" / name), name

    return saved, resume


@pytest.mark.parametrize(
    "overrides",
    [
        ("strategy=fedavg",),
        # centered clipping keeps state across rounds; the attack and sampling draw per round
        ("strategy=centered_clipping", "strategy.tau=1.0", "attack=alie",
         "malicious_fraction=0.2", "clients_per_round=8"),
        # FLTrust's server trains on its root set each round, seeded by the round
        ("strategy=fltrust", "attack=sign_flip", "malicious_fraction=0.2"),
    ],
    ids=["fedavg", "cclip-alie-sampled", "fltrust-sign-flip"],
)  # fmt: skip
def test_interrupted_run_resumes_to_identical_numbers(
    tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    # The interrupting mod turns the cohort path off (mods see every message), so every
    # leg of this test trains one client at a time: bit-for-bit comparable.
    cfg = compose_config(
        "num_clients=10", "num_rounds=5", "progress=false", "engine.cohort=never", *overrides
    )
    simulate(cfg, tmp_path / "whole")

    broken = tmp_path / "broken"
    with pytest.raises(Interrupt):
        simulate(cfg, broken, client_mods=[interrupt_at(4)])
    assert (broken / FILENAME).is_file()
    assert not (broken / "summary.json").exists()
    assert len(_metrics(broken)) == 4  # rounds 0..3

    summary = simulate(cfg, broken)
    assert _metrics(broken) == _metrics(tmp_path / "whole")
    assert summary["rounds"] == 5
    assert not (broken / FILENAME).exists(), "a finished run keeps no checkpoint"


def test_checkpoint_of_another_config_is_refused(tmp_path: Path) -> None:
    cfg = compose_config("num_clients=10", "num_rounds=3", "progress=false")
    with pytest.raises(Interrupt):
        simulate(cfg, tmp_path, client_mods=[interrupt_at(2)])
    other = compose_config("num_clients=10", "num_rounds=3", "progress=false", "lr=0.05")
    with pytest.raises(CheckpointError, match="another configuration"):
        simulate(other, tmp_path)


def test_the_checkpoint_holds_the_defence_state_and_the_resume_needs_it(tmp_path: Path) -> None:
    """Centered clipping's centre is saved with the run; without it the numbers change."""
    cfg = compose_config(
        "num_clients=10", "num_rounds=4", "progress=false", "engine.cohort=never",
        "strategy=centered_clipping", "strategy.tau=0.5", "attack=sign_flip",
        "malicious_fraction=0.2",
    )  # fmt: skip
    simulate(cfg, tmp_path / "whole")
    broken = tmp_path / "broken"
    with pytest.raises(Interrupt):
        simulate(cfg, broken, client_mods=[interrupt_at(3)])
    saved = torch.load(broken / FILENAME, weights_only=True)
    center = saved["strategy"]["defence"]["rule"]["shared"]["center"]
    assert isinstance(center, torch.Tensor) and center.ndim == 1 and center.abs().sum() > 0

    forgetful = tmp_path / "forgetful"
    forgetful.mkdir()
    saved["strategy"]["defence"]["rule"]["shared"] = {}  # as if the centre were not kept
    torch.save(saved, forgetful / FILENAME)
    for name in ("rounds.csv", "clients.csv"):
        (forgetful / name).write_bytes((broken / name).read_bytes())
    simulate(cfg, forgetful)
    simulate(cfg, broken)
    assert _metrics(broken) == _metrics(tmp_path / "whole")
    assert _metrics(forgetful)[3:] != _metrics(tmp_path / "whole")[3:]
