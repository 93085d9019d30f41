"""MPAF (Cao and Gong, CVPR Workshops 2022): known values on small vectors, the scale's
default and its n / f alternative, bad settings; end to end on digits, fake clients drag
FedAvg to the base model while FLTrust resists."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from flwr.app import Message, MessageType

from clients.attacks import mpaf
from clients.attacks.mpaf import PAPER_SCALE
from simulator import protocol
from simulator.arrays import ArrayLayout
from simulator.components import attack_inputs, federation_spec
from simulator.federation import load_federation
from simulator.main import simulate
from tests.conftest import compose_config

W = torch.tensor([1.0, 2.0, -1.0])  # w_t
BASE = torch.tensor([0.0, 4.0, 1.0])  # w'; w' - w_t = [-1, 2, 2]


def test_every_attacker_sends_scale_times_the_way_to_the_base_model() -> None:
    out = mpaf(torch.zeros(0, 3), 2, 10, global_model=W, base_model=BASE, scale=3.0)
    # 3 * ([0, 4, 1] - [1, 2, -1]) = 3 * [-1, 2, 2] = [-3, 6, 6], once per attacker
    assert torch.equal(out, torch.tensor([[-3.0, 6.0, 6.0], [-3.0, 6.0, 6.0]]))


def test_default_scale_is_the_papers() -> None:
    out = mpaf(torch.zeros(0, 3), 1, 10, global_model=W, base_model=BASE)
    assert PAPER_SCALE == 1e6
    assert torch.equal(out, torch.tensor([[-1e6, 2e6, 2e6]]))


def test_scale_none_is_n_over_f_and_lands_a_plain_mean_on_the_base_model() -> None:
    out = mpaf(torch.zeros(0, 3), 2, 10, global_model=W, base_model=BASE, scale=None)
    # lambda = n / f = 10 / 2 = 5: 5 * [-1, 2, 2] = [-5, 10, 10]
    assert torch.equal(out[0], torch.tensor([-5.0, 10.0, 10.0]))
    # 8 honest zero updates and the 2 crafted ones: mean = (2/10) * 5 (w' - w) = w' - w
    mean = torch.cat([torch.zeros(8, 3), out]).mean(dim=0)
    torch.testing.assert_close(W + mean, BASE)


def test_benign_rows_are_not_used_and_nothing_is_mutated() -> None:
    benign = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    copies = [benign.clone(), W.clone(), BASE.clone()]
    with_rows = mpaf(benign, 2, 6, global_model=W, base_model=BASE, scale=2.0)
    without = mpaf(torch.zeros(0, 3), 2, 6, global_model=W, base_model=BASE, scale=2.0)
    assert torch.equal(with_rows, without)
    for original, copy in zip((benign, W, BASE), copies, strict=True):
        assert torch.equal(original, copy)


def test_computed_in_float64_and_returned_in_the_benign_dtype() -> None:
    # 2^24 + 1 is not a float32: the difference 1 survives only in float64
    w = torch.tensor([2.0**24 + 1], dtype=torch.float64)
    base = torch.tensor([2.0**24], dtype=torch.float64)
    out = mpaf(torch.zeros(0, 1), 1, 2, global_model=w, base_model=base, scale=1.0)
    assert out.dtype == torch.float32 and out.item() == -1.0
    half = mpaf(torch.zeros(0, 3, dtype=torch.float16), 1, 2, global_model=W, base_model=BASE)
    assert half.dtype == torch.float16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0.0}, "scale must be > 0"),
        ({"scale": -1.0}, "scale must be > 0"),
        ({"scale": math.inf}, "scale must be a finite real number"),
        ({"scale": math.nan}, "scale must be a finite real number"),
        ({"scale": True}, "scale must be a finite real number"),
        ({"global_model": torch.zeros(2)}, r"global_model must have shape \(d,\) = \(3,\)"),
        ({"base_model": torch.zeros(3, 1)}, r"base_model must have shape \(d,\)"),
        ({"base_model": torch.zeros(3, dtype=torch.int64)}, "base_model must be a floating"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs: dict, message: str) -> None:
    args = {"global_model": W, "base_model": BASE, **kwargs}
    with pytest.raises(ValueError, match=message) as error:
        mpaf(torch.zeros(0, 3), 1, 10, **args)
    assert "\n" not in str(error.value)


# End to end ----------------------------------------------------------------------------
# Nine real clients and one fake (10% of the federation), all sampled every round; the
# scale n / f, with which FedAvg lands on w' (the paper's 1e6 overshoots it: see the
# docstring, and the last test).
MPAF_RUN = (
    "num_clients=9", "fake_clients=1", "clients_per_round=10", "num_rounds=8",
    "attack=mpaf", "attack.scale=null", "progress=false", "checkpoint_every=0",
)  # fmt: skip


def _global_models(store: dict[int, torch.Tensor]):
    """A client mod that keeps the global model each round's train messages carry."""

    def mod(message: Message, context, call_next):
        if message.metadata.message_type == MessageType.TRAIN:
            arrays, config = protocol.train_payload(message)
            store.setdefault(protocol.round_of(config), ArrayLayout.of(arrays).flatten(arrays))
        return call_next(message, context)

    return mod


def _drag(tmp_path: Path, *overrides: str) -> tuple[list[float], list[float]]:
    """(test accuracy after each round, distance of the global model to w' at the start of
    each round) of an MPAF run."""
    cfg = compose_config(*MPAF_RUN, *overrides)
    models: dict[int, torch.Tensor] = {}
    simulate(cfg, tmp_path, client_mods=[_global_models(models)])
    data = load_federation(federation_spec(cfg)).data
    base = attack_inputs(cfg, data.input_shape, data.num_classes)["base_model"](1, None)
    with open(tmp_path / "rounds.csv", newline="") as handle:
        accuracy = [float(r["test_accuracy"]) for r in csv.DictReader(handle)]
    distance = [float(torch.linalg.vector_norm(models[r] - base)) for r in sorted(models)]
    return accuracy, distance


@pytest.fixture(scope="module")
def fltrust_drag(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[float], list[float]]:
    return _drag(tmp_path_factory.mktemp("fltrust"), "strategy=fltrust")


def test_fake_clients_drag_fedavg_to_the_base_model(
    tmp_path: Path, fltrust_drag: tuple[list[float], list[float]]
) -> None:
    accuracy, distance = _drag(tmp_path, "strategy=fedavg")
    # Measured: the distance to w' falls from 7.06 to about 1.9 after one round and stays
    # (the model is put back on w' every round, plus the honest clients' share of one
    # step); accuracy about 0.5-0.7, against 0.95 under FLTrust.
    assert max(distance[1:]) < 0.4 * distance[0]
    assert max(accuracy[-3:]) < 0.75
    assert min(fltrust_drag[0][-3:]) - max(accuracy[-3:]) > 0.2


def test_fltrust_resists_the_drag(fltrust_drag: tuple[list[float], list[float]]) -> None:
    accuracy, distance = fltrust_drag
    # The fake update has no positive cosine with the server's: trust 0. The model
    # learns as without attack and moves away from w' (7.06 -> about 10.8).
    assert min(distance[1:]) > distance[0]
    assert accuracy[-1] > 0.9


def test_the_papers_scale_ruins_fedavg(tmp_path: Path) -> None:
    cfg = compose_config(*MPAF_RUN, "attack.scale=1e6", "num_rounds=3")
    summary = simulate(cfg, tmp_path)
    assert summary["final_accuracy"] < 0.2  # chance is 0.1
