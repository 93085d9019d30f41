"""End to end on tiny local copies: FEMNIST by writer, Shakespeare by role, CIFAR-100 with
ResNet-20; and what runs on text."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config import ConfigError
from simulator.main import simulate
from simulator.preflight import check_point
from tests.conftest import compose_config, rows_of
from tests.simulator import hub_fixtures as fx

RUN = ("num_rounds=2", "local_epochs=1", "progress=false", "checkpoint_every=0", "batch_size=8")


def _run(
    tmp_path: Path, *overrides: str
) -> tuple[dict, list[dict[str, str]], list[dict[str, str]]]:  # type: ignore[type-arg]
    summary = simulate(compose_config(*RUN, *overrides), tmp_path / "run")
    return (
        summary,
        rows_of(tmp_path / "run" / "rounds.csv"),
        rows_of(tmp_path / "run" / "clients.csv"),
    )


def _check(summary: dict, rounds: list[dict[str, str]]) -> None:  # type: ignore[type-arg]
    assert [row["round"] for row in rounds] == ["0", "1", "2"]  # round 0: the initial model
    assert 0.0 <= summary["final_accuracy"] <= 1.0


def test_femnist_by_writer_with_the_leaf_cnn(tmp_path: Path) -> None:
    path = fx.write_parquet(fx.femnist_rows(writers=4, per_writer=6), tmp_path / "femnist")
    summary, rounds, clients = _run(
        tmp_path, "dataset=femnist", f"dataset.path={path}", "model=femnist_cnn",
        "partition=natural", "num_clients=3", "lr=0.01",
    )  # fmt: skip
    _check(summary, rounds)
    # three of the four writers, each with its floor(0.9 * 6) = 5 training images
    assert {row["client"] for row in clients} == {"0", "1", "2"}
    assert {row["num_examples"] for row in clients} == {"5"}


def test_shakespeare_by_role_with_the_leaf_lstm(tmp_path: Path) -> None:
    path = fx.write_saved(fx.shakespeare_rows(roles=3, per_role=200), tmp_path / "shakespeare")
    summary, rounds, clients = _run(
        tmp_path, "dataset=shakespeare", f"dataset.path={path}", "dataset.test_fraction=0.5",
        "model=char_lstm", "model.hidden_size=16", "model.num_layers=1", "partition=natural",
        "num_clients=3", "attack=label_flip", "malicious_fraction=0.34",
    )  # fmt: skip
    _check(summary, rounds)
    assert {row["client"] for row in clients} == {"0", "1", "2"}
    assert {row["num_examples"] for row in clients} == {"100"}  # each role's first half
    assert sum(row["malicious"] == "1" for row in clients) == 2  # one role, in both rounds


def test_cifar100_with_resnet20(tmp_path: Path) -> None:
    path = fx.write_saved(fx.cifar100_rows(train=12, test=5), tmp_path / "cifar100")
    summary, rounds, _ = _run(
        tmp_path, "dataset=cifar100", f"dataset.path={path}", "model=resnet20", "num_clients=3"
    )
    _check(summary, rounds)


@pytest.mark.parametrize("attack", ["backdoor", "dba", "neurotoxin", "edge_case"])
def test_image_attacks_are_refused_on_text_before_the_run(attack: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_point(
            ["dataset=shakespeare", "model=char_lstm", f"attack={attack}", "malicious_fraction=0.2"]
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"attack={attack}: works on images (C, H, W); dataset=shakespeare")


@pytest.mark.parametrize(
    "attack", ["label_flip", "attack.source=4 attack.target=5", "alie", "sign_flip", "minmax"]
)
def test_label_flipping_and_colluding_attacks_run_on_text(attack: str) -> None:
    name = attack if "=" not in attack else "label_flip"
    extra = attack.split() if "=" in attack else []
    check_point(
        [
            "dataset=shakespeare",
            "model=char_lstm",
            f"attack={name}",
            "malicious_fraction=0.2",
            *extra,
        ]
    )


def test_image_models_are_refused_on_text() -> None:
    with pytest.raises(ConfigError, match=r"^model=mlp takes images .* use model=char_lstm$"):
        check_point(["dataset=shakespeare"])
