"""Weak differential privacy: norm bounding, the (weighted) mean, then seeded Gaussian noise."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from simulator.config import ConfigError
from simulator.main import simulate
from simulator.preflight import check_point
from strategies.clipping import norm_bound
from tests.conftest import compose_config

X = torch.tensor([[3.0, 4.0], [0.0, 0.5], [0.6, 0.8]])  # norms 5, 0.5, 1


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_without_noise_nothing_is_drawn_and_the_result_is_plain_norm_bounding() -> None:
    g = _generator()
    before = g.get_state()
    result = norm_bound(X, max_norm=1.0, noise_std=0.0, generator=g)
    assert torch.equal(g.get_state(), before)  # no draw: runs without noise are unchanged
    # factors (1/5, 1, 1); ((0.6, 0.8) + (0, 0.5) + (0.6, 0.8)) / 3 = (0.4, 0.7)
    torch.testing.assert_close(result.update, torch.tensor([0.4, 0.7]))
    assert torch.equal(result.update, norm_bound(X, max_norm=1.0).update)


def test_noise_is_added_after_the_mean_from_the_generator() -> None:
    result = norm_bound(X, max_norm=1.0, noise_std=0.025, generator=_generator(7))
    expected_noise = 0.025 * torch.randn(2, generator=_generator(7))
    torch.testing.assert_close(result.update, torch.tensor([0.4, 0.7]) + expected_noise)
    # the shares are the clients' only (the noise is nobody's)
    torch.testing.assert_close(result.weights, torch.tensor([0.2, 1.0, 1.0]) / 3)


def test_same_generator_same_noise_other_seed_other_noise() -> None:
    x = torch.randn(5, 1000, generator=_generator(1))
    a = norm_bound(x, max_norm=2.0, noise_std=0.1, generator=_generator(3)).update
    b = norm_bound(x, max_norm=2.0, noise_std=0.1, generator=_generator(3)).update
    c = norm_bound(x, max_norm=2.0, noise_std=0.1, generator=_generator(4)).update
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noise_has_the_standard_deviation_asked_for() -> None:
    d = 200_000
    x = torch.zeros(3, d, dtype=torch.float64)
    noise = norm_bound(x, max_norm=1.0, noise_std=0.025, generator=_generator(5)).update
    assert noise.dtype == torch.float64
    # the sample std of 200k draws has a standard error of 0.16%; the seed is fixed
    assert float(noise.std()) == pytest.approx(0.025, rel=0.01)
    assert abs(float(noise.mean())) < 0.025 * 5 / math.sqrt(d)


def test_example_weighted_mean() -> None:
    # shares (2, 1, 1)/4 times factors (1/5, 1, 1) = (0.1, 0.25, 0.25);
    # 0.1 (3, 4) + 0.25 (0, 0.5) + 0.25 (0.6, 0.8) = (0.45, 0.725)
    result = norm_bound(X, max_norm=1.0, weights=torch.tensor([2.0, 1.0, 1.0]))
    torch.testing.assert_close(result.update, torch.tensor([0.45, 0.725]))
    torch.testing.assert_close(result.weights, torch.tensor([0.1, 0.25, 0.25]))
    torch.testing.assert_close(result.update, result.weights @ X)


def test_inputs_are_not_mutated_and_zero_rows_do_not_crash() -> None:
    x, w = X.clone(), torch.tensor([1.0, 2.0, 3.0])
    norm_bound(x, max_norm=0.5, noise_std=0.1, generator=_generator(), weights=w)
    assert torch.equal(x, X) and w.tolist() == [1.0, 2.0, 3.0]
    zero = norm_bound(torch.zeros(4, 2), max_norm=1.0, noise_std=0.01, generator=_generator())
    assert torch.isfinite(zero.update).all() and zero.weights.tolist() == [0.25] * 4


@pytest.mark.parametrize("noise_std", [-0.1, -math.inf, math.inf, math.nan, True])
def test_bad_noise_is_refused(noise_std: object) -> None:
    with pytest.raises(ValueError, match=r"norm_bound needs finite noise_std >= 0") as info:
        norm_bound(X, max_norm=1.0, noise_std=noise_std, generator=_generator())  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_noise_without_a_generator_is_refused() -> None:
    with pytest.raises(ValueError, match="norm_bound needs a generator"):
        norm_bound(X, max_norm=1.0, noise_std=0.025)


def test_config_checks_the_noise() -> None:
    check_point(["strategy=norm_bound", "strategy.noise_std=0.025"])
    with pytest.raises(ConfigError, match=r"noise_std=-1") as info:
        check_point(["strategy=norm_bound", "strategy.noise_std=-1"])
    assert "\n" not in str(info.value)


def test_digits_run_with_noise_is_reproducible_and_differs_from_no_noise(tmp_path: Path) -> None:
    base = ("num_clients=10", "num_rounds=3", "progress=false", "strategy=norm_bound")
    noisy = compose_config(*base, "strategy.noise_std=0.025")
    a = simulate(noisy, tmp_path / "a")
    b = simulate(noisy, tmp_path / "b")
    clean = simulate(compose_config(*base), tmp_path / "clean")
    assert a["final_accuracy"] == b["final_accuracy"]
    rounds = [(tmp_path / p / "rounds.csv").read_text().splitlines() for p in ("a", "b")]
    strip = [[line.split(",")[:4] for line in r] for r in rounds]  # timings differ
    assert strip[0] == strip[1]
    assert a["final_loss"] != clean["final_loss"]
