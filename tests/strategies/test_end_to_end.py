"""A defence must change the outcome: on digits, 30% of clients send large sign-flipped
updates; plain FedAvg collapses while the robust rules keep the model accurate."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import ArrayRecord, Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from simulator.main import simulate
from tests.conftest import compose_config

MALICIOUS = {1, 4, 7}  # of 10 clients: 30%
SCALE = 10.0


def sign_flip_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A malicious client in the test: it trains honestly, then sends -SCALE x its update."""
    reply = call_next(message, context)
    client = int(context.node_config["partition-id"])
    if message.metadata.message_type != MessageType.TRAIN or client not in MALICIOUS:
        return reply
    sent = message.content["arrays"].to_torch_state_dict()
    trained = reply.content["arrays"].to_torch_state_dict()
    flipped = {k: sent[k] - SCALE * (trained[k] - sent[k]) for k in sent}
    reply.content["arrays"] = ArrayRecord(flipped)
    return reply


def _final_accuracy(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose_config(
        "num_clients=10", "num_rounds=5", "progress=false", "strategy.num_malicious=3", *overrides
    )
    return simulate(cfg, tmp_path, client_mods=[sign_flip_mod])


def test_fedavg_collapses_under_sign_flipping(tmp_path: Path) -> None:
    summary = _final_accuracy(tmp_path, "strategy=fedavg")
    assert summary["final_accuracy"] < 0.3


@pytest.mark.parametrize(
    "overrides",
    [
        ("strategy=median",),
        ("strategy=trimmed_mean", "strategy.beta=0.3"),
        ("strategy=krum",),
        ("strategy=multikrum",),
        ("strategy=bulyan", "num_clients=15", "strategy.num_malicious=3"),
        ("strategy=geometric_median",),
        ("strategy=fltrust",),
        # tau must be of the order of the honest update norms (about 1.8 here)
        ("strategy=centered_clipping", "strategy.tau=1.0"),
        ("strategy=median", "pre=nnm"),
    ],
    ids=lambda o: "-".join(x.split("=")[1] for x in o[:1] + tuple(x for x in o if "pre=" in x)),
)
def test_robust_rules_keep_accuracy_under_sign_flipping(
    tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    summary = _final_accuracy(tmp_path, *overrides)
    assert summary["final_accuracy"] > 0.8, summary


def test_robust_rule_flags_the_attackers(tmp_path: Path) -> None:
    import csv

    _final_accuracy(tmp_path, "strategy=krum")
    with open(tmp_path / "clients.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = {int(r["client"]) for r in rows if float(r["weight"]) > 0}
    assert chosen and not chosen & MALICIOUS
