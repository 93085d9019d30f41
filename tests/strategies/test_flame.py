"""FLAME (Nguyen et al., USENIX Security 2022): the detector, the full defence, and a boosted
backdoor on digits that FedAvg lets through and FLAME stops."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simulator.main import simulate
from strategies.flame import Flame, FlameDetector, cosine_distances, median_norm
from strategies.pipeline import Defence
from tests.conftest import compose_config, rows_of

# 6 clients: 4 honest near +x, 2 attackers near (-1, 1, 0), at cosine distance about 1.7.
SIX = torch.tensor(
    [[1.0, 0, 0], [1, 0.1, 0], [1, -0.1, 0], [1, 0, 0.1], [-1, 1, 0], [-1, 1.1, 0]],
    dtype=torch.float64,
)
ATTACKERS = [False, False, False, False, True, True]


def test_cosine_distances_by_hand() -> None:
    rows = torch.tensor([[1.0, 0], [0, 2], [0, 0], [-3, 0], [0, 0]])
    d = cosine_distances(rows)
    # (0,1): orthogonal, 1 - 0 = 1; (0,3): opposite, 1 - (-1) = 2; (1,3): orthogonal, 1.
    # A zero row: distance 1 to any non-zero row (cosine 0), 0 to another zero row.
    expected = torch.tensor(
        [
            [0.0, 1, 1, 2, 1],
            [1, 0, 1, 1, 1],
            [1, 1, 0, 1, 0],
            [2, 1, 1, 0, 1],
            [1, 1, 0, 1, 0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(d, expected)


def test_median_norm_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    rows = torch.tensor([[3.0, 4], [0, 1], [0, 2], [6, 8]])  # norms 5, 1, 2, 10
    assert float(median_norm(rows)) == pytest.approx(3.5)  # (2 + 5) / 2


@pytest.mark.parametrize("cluster_on", ["models", "updates"])
def test_two_clients_far_in_another_direction_are_flagged(cluster_on: str) -> None:
    # min_cluster_size = floor(6/2) + 1 = 4: the four honest rows (pairwise distances
    # <= 0.02) are the only cluster; the attackers (at 0.001 of each other) are too few.
    flags = FlameDetector(cluster_on=cluster_on)(SIX, global_model=torch.zeros(3))
    assert flags.tolist() == ATTACKERS


def test_models_are_the_global_model_plus_the_updates() -> None:
    g = torch.tensor([0.0, 0, 5])
    x = SIX + torch.tensor([0.0, 0.3, 0])  # shift so that the result depends on g
    on_models = FlameDetector(cluster_on="models")(x, global_model=g)
    assert on_models.tolist() == FlameDetector(cluster_on="updates")(x + g).tolist()
    # without a global model offered, "models" clusters the updates (g taken as zero)
    assert FlameDetector()(x).tolist() == FlameDetector(cluster_on="updates")(x).tolist()


def test_a_boosted_update_in_the_honest_direction_is_admitted_then_clipped() -> None:
    # Cosine ignores the boost: row 3 = 10 x row 0 is at distance 0 from row 0.
    x = torch.tensor([[1.0, 0], [1, 0.1], [1, -0.1], [10, 0]])
    assert not FlameDetector()(x).any()
    result = Flame(noise_lambda=0.0)(x)
    # norms 1, sqrt(1.01), sqrt(1.01), 10: S = sqrt(1.01) (mean of the middle two);
    # factors 1, 1, 1, S/10; mean = ([1,0] + [1,0.1] + [1,-0.1] + [S,0]) / 4
    s = 1.01**0.5
    torch.testing.assert_close(result.update, torch.tensor([(3 + s) / 4, 0.0]))
    torch.testing.assert_close(result.weights, torch.tensor([0.25, 0.25, 0.25, s / 40]))


@pytest.mark.parametrize(
    "rows",
    [torch.zeros(1, 3), torch.zeros(2, 3), torch.ones(5, 3), torch.zeros(7, 2), SIX[:2]],
    ids=["one", "two-zero", "identical", "zero", "two-apart"],
)
def test_nobody_is_flagged_among_one_two_or_identicalrows_of(rows: torch.Tensor) -> None:
    assert not FlameDetector()(rows, global_model=torch.zeros(rows.shape[1])).any()


def test_clip_mean_arithmetic_without_noise() -> None:
    received = torch.tensor([[3.0, 4], [0, 1], [0, 2], [6, 8]])  # norms 5, 1, 2, 10
    admitted = received[:3]  # the detector left out the last row
    result = Flame(noise_lambda=0.0)(admitted, received=received)
    # S = (2 + 5) / 2 = 3.5 over ALL received rows; factors min(1, 3.5/e) = 0.7, 1, 1
    # mean = (0.7 [3, 4] + [0, 1] + [0, 2]) / 3 = [2.1, 5.8] / 3
    torch.testing.assert_close(result.update, torch.tensor([0.7, 5.8 / 3]))
    torch.testing.assert_close(result.weights, torch.tensor([0.7 / 3, 1 / 3, 1 / 3]))
    torch.testing.assert_close(result.weights @ admitted, result.update)


def test_noise_is_lambda_s_times_a_standard_normal_from_the_generator() -> None:
    received = torch.tensor([[3.0, 4], [0, 1], [0, 2], [6, 8]], dtype=torch.float64)
    clean = Flame(noise_lambda=0.0)(received, received=received).update
    noisy = Flame(noise_lambda=0.5)(
        received, received=received, generator=torch.Generator().manual_seed(3)
    ).update
    draw = torch.randn(2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(noisy - clean, 0.5 * 3.5 * draw)  # sigma = lambda * S


def test_same_generator_same_result_and_no_mutation() -> None:
    x = torch.randn(8, 20, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    runs = [Flame()(x, received=x, generator=torch.Generator().manual_seed(1)) for _ in "ab"]
    torch.testing.assert_close(runs[0].update, runs[1].update)
    FlameDetector()(x, global_model=torch.ones(20))
    assert torch.equal(x, before)


def test_the_defence_runs_the_detector_and_takes_s_over_every_received_row() -> None:
    x = SIX.clone()
    x[4:] *= 100.0  # the attackers are also large: S must still count them
    defence = Defence(Flame(noise_lambda=0.0))
    outcome = defence(x, [10, 11, 12, 13, 14, 15], server_round=1, global_model=torch.zeros(3))
    assert outcome.flagged == {14: "flame", 15: "flame"}
    norms = torch.linalg.vector_norm(x, dim=1)
    s = norms.sort().values[2:4].mean()  # median of six: mean of the 3rd and 4th
    factors = torch.clamp(s / norms[:4], max=1.0)
    torch.testing.assert_close(outcome.aggregate, (factors[:, None] * x[:4]).mean(dim=0))
    assert outcome.weights[4:].tolist() == [0.0, 0.0]


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="min_cluster_size >= 2, got min_cluster_size=1"):
        FlameDetector(min_cluster_size=1)
    with pytest.raises(ValueError, match="cluster_on='weights'"):
        Flame(cluster_on="weights")
    with pytest.raises(ValueError, match=r"noise_lambda >= 0, got noise_lambda=-0\.1"):
        Flame(noise_lambda=-0.1)
    with pytest.raises(ValueError, match=r"min_cluster_size <= the 6 clients.*=7"):
        FlameDetector(min_cluster_size=7)(SIX)
    with pytest.raises(ValueError, match="flame needs received with 3 columns"):
        Flame()(SIX, received=torch.zeros(6, 2))


# --------------------------------------------------------------------- end to end, digits
BACKDOOR = ("attack=backdoor", "attack.boost=10", "malicious_fraction=0.1", "num_clients=10",
            "num_rounds=10", "progress=false")  # fmt: skip
RUNS = {
    "fedavg": ("strategy=fedavg",),
    "detect": ("detect=flame", "strategy=median"),
    "strategy": ("strategy=flame",),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, Path]]:
    done = {}
    for name, overrides in RUNS.items():
        out = tmp_path_factory.mktemp(name)
        done[name] = (simulate(compose_config(*BACKDOOR, *overrides), out), out)
    return done


def test_fedavg_lets_the_boosted_backdoor_in(runs: dict[str, tuple[dict, Path]]) -> None:
    summary, _ = runs["fedavg"]
    assert summary["final_attack_success_rate"] == 1.0


@pytest.mark.parametrize("form", ["detect", "strategy"])
def test_flame_flags_the_backdoor_and_keeps_it_out(
    runs: dict[str, tuple[dict, Path]], form: str
) -> None:
    summary, out = runs[form]
    malicious = set(summary["threat_model"]["malicious_clients"])
    rounds = rows_of(out / "rounds.csv")[1:]
    assert [float(r["detection_recall"]) for r in rounds] == [1.0] * 10
    assert max(float(r["attack_success_rate"]) for r in rounds) < 0.1
    assert summary["final_accuracy"] > 0.9
    clients = rows_of(out / "clients.csv")
    flagged = {(int(r["round"]), int(r["client"])) for r in clients if r["flagged"]}
    assert {(r, c) for r in range(1, 11) for c in malicious} <= flagged
    assert {r["flagged"] for r in clients if r["flagged"]} == {"filtered: flame"}
    # min_cluster_size = 6 of 10: at most 4 flagged a round
    per_round = [
        sum(r["flagged"] != "" for r in clients if r["round"] == str(k)) for k in range(1, 11)
    ]
    assert max(per_round) <= 4
