"""Threat-model policy on buffers: a model's running statistics are part of the update.

Everything in the model's state_dict travels to the server and back (as with Flower's
FedAvg): batch-norm running means and variances are rows of the (n, d) update matrix the
rules and detectors see, and are aggregated like weights; the integer batch counter is
aggregated as a float and cast back to an integer.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from flwr.app import ArrayRecord
from omegaconf import open_dict

from simulator.arrays import ArrayLayout
from simulator.main import simulate
from simulator.models import MLP
from strategies import Aggregate, fedavg
from tests.conftest import compose_config, rows_of

BN = ("model=mlp", "model.batch_norm=true", "num_clients=6", "num_rounds=2", "progress=false")


def test_the_update_matrix_holds_the_buffers() -> None:
    model = MLP((1, 8, 8), 10, hidden=(16,), batch_norm=True)
    layout = ArrayLayout.of(ArrayRecord(model.state_dict()))
    assert {"net.2.running_mean", "net.2.running_var", "net.2.num_batches_tracked"} <= set(
        layout.keys
    )
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    assert layout.size == params + buffers  # d counts 16 + 16 + 1 buffer values


CAPTURED: list[torch.Tensor] = []


def spy(updates: torch.Tensor) -> Aggregate:
    """The mean, keeping what the rule was given."""
    CAPTURED.append(updates.clone())
    return fedavg(updates)


def test_a_batch_norm_model_trains_and_its_running_stats_are_aggregated(tmp_path: Path) -> None:
    summary = simulate(compose_config(*BN, "strategy=median"), tmp_path)
    assert summary["final_accuracy"] > 0.5
    assert all(float(r["update_norm"]) > 0 for r in rows_of(tmp_path / "clients.csv"))

    cfg = compose_config(*BN)
    with open_dict(cfg):
        cfg.strategy = {"name": "spy", "_target_": f"{__name__}.spy", "_partial_": True,
                        "server_lr": 1.0, "weighting": "uniform", "num_malicious": None,
                        "root_size": 0}  # fmt: skip
    CAPTURED.clear()
    simulate(cfg, tmp_path / "spied")
    state = MLP((1, 8, 8), 10, hidden=(64,), batch_norm=True).state_dict()
    sizes = [t.numel() for t in state.values()]
    offsets = dict(zip(state, itertools.accumulate(sizes[:-1], initial=0), strict=True))
    # round 1's matrix (6 clients, d); the config check's call on zeros(n, 2) comes first
    first = next(c for c in CAPTURED if c.shape[1] == sum(sizes))
    var = offsets["net.2.running_var"]
    assert bool((first[:, var : var + 64] != 0).all())  # every client moved the statistics
    counter = first[:, offsets["net.2.num_batches_tracked"]]
    assert bool((counter > 0).all()) and bool((counter == counter.round()).all())
