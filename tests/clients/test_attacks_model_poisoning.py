"""Sign flip, scaling, Gaussian, NaN, ALIE, IPM, Min-Max and Min-Sum model-poisoning attacks.

Expected values come from independent numpy transcriptions of the papers' formulas written
here with plain loops, from scipy's normal quantile, or from closed forms of the largest
feasible gamma (the Min-Max condition is a quadratic in gamma per benign update; the Min-Sum
one a single quadratic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import norm

from clients.attacks.alie import alie, alie_z
from clients.attacks.basic import gaussian, nan, scaling, sign_flip
from clients.attacks.ipm import ipm
from clients.attacks.minmax import halving_search, minmax, minmax_gamma, minsum, minsum_gamma

TOL = 1e-5


def rand(k: int, d: int, seed: int, dtype=torch.float64, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(k, d, generator=g, dtype=torch.float64) + shift).to(dtype)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Every attack with the parameters it needs; each entry: (name, fn, extra kwargs factory).
ATTACKS: list[tuple[str, Callable[..., torch.Tensor], Callable[[], dict[str, Any]]]] = [
    ("sign_flip", sign_flip, dict),
    ("scaling", scaling, dict),
    ("gaussian_blanchard", gaussian, lambda: {"generator": gen(1)}),
    ("gaussian_fang", gaussian, lambda: {"generator": gen(1), "variant": "fang"}),
    ("nan", nan, dict),
    ("alie", alie, dict),
    ("ipm", ipm, dict),
    ("minmax_unit", minmax, dict),
    ("minmax_std", minmax, lambda: {"perturbation": "std"}),
    ("minmax_sign", minmax, lambda: {"perturbation": "sign"}),
    ("minsum_unit", minsum, dict),
    ("minsum_std", minsum, lambda: {"perturbation": "std"}),
    ("minsum_sign", minsum, lambda: {"perturbation": "sign"}),
]
IDS = [a[0] for a in ATTACKS]


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize(("name", "attack", "kwargs"), ATTACKS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_inputs_unchanged(name, attack, kwargs, dtype) -> None:
    benign = rand(8, 13, seed=3, dtype=dtype, shift=0.5)
    own = rand(3, 13, seed=4, dtype=dtype)
    benign_before, own_before = benign.clone(), own.clone()
    out = attack(benign, 3, 11, own=own, **kwargs())
    assert out.shape == (3, 13)
    assert out.dtype == dtype
    assert out.device == benign.device
    assert torch.equal(benign, benign_before)
    assert torch.equal(own, own_before)
    # the result never aliases an input
    assert out.data_ptr() not in (benign.data_ptr(), own.data_ptr())


@pytest.mark.parametrize(("name", "attack", "kwargs"), ATTACKS, ids=IDS)
def test_zero_malicious_gives_empty(name, attack, kwargs) -> None:
    out = attack(rand(5, 4, seed=0), 0, 5, **kwargs())
    assert out.shape == (0, 4)


@pytest.mark.parametrize(("name", "attack", "kwargs"), ATTACKS, ids=IDS)
def test_contract_errors_name_values(name, attack, kwargs) -> None:
    benign = rand(5, 4, seed=0)
    with pytest.raises(ValueError, match=r"f=6, n=5"):
        attack(benign, 6, 5, **kwargs())
    with pytest.raises(ValueError, match=r"num_malicious must be an integer >= 0, got -1"):
        attack(benign, -1, 5, **kwargs())
    with pytest.raises(ValueError, match=r"shape \(k, d\), got \(5,\)"):
        attack(benign[:, 0], 1, 5, **kwargs())
    with pytest.raises(ValueError, match=r"floating tensor, got dtype torch.int64"):
        attack(benign.long(), 1, 5, **kwargs())
    with pytest.raises(ValueError, match=r"own must have shape \(f, d\) = \(2, 4\), got \(3, 4\)"):
        attack(benign, 2, 5, own=rand(3, 4, seed=1), **kwargs())


@pytest.mark.parametrize(
    ("attack", "kwargs"),
    [
        (alie, dict),
        (ipm, dict),
        (minmax, dict),
        (minsum, dict),
        (gaussian, lambda: {"generator": gen(), "variant": "fang"}),
    ],
)
def test_statistics_need_a_benign_update(attack, kwargs) -> None:
    with pytest.raises(ValueError, match=r"benign has 0 rows; this attack needs >= 1|got k=0"):
        attack(torch.zeros(0, 3), 1, 4, **kwargs())


# --------------------------------------------------------------------------- sign flip, scaling


def test_sign_flip_values_with_own_and_fallback() -> None:
    benign = rand(6, 5, seed=1)
    own = rand(2, 5, seed=2)
    np.testing.assert_array_equal(sign_flip(benign, 2, 8, own=own).numpy(), -own.numpy())
    np.testing.assert_allclose(
        sign_flip(benign, 2, 8, own=own, scale=3.0).numpy(), -3.0 * own.numpy(), rtol=1e-15
    )
    # own None: benign[:f] are the malicious clients' own updates (partial knowledge)
    np.testing.assert_allclose(
        sign_flip(benign, 3, 8, scale=2.5).numpy(), -2.5 * benign[:3].numpy(), rtol=1e-15
    )


def test_scaling_values_and_default_boost_is_n() -> None:
    benign = rand(4, 3, seed=5)
    own = rand(2, 3, seed=6)
    np.testing.assert_allclose(
        scaling(benign, 2, 10, own=own).numpy(), 10.0 * own.numpy(), rtol=1e-15
    )
    np.testing.assert_allclose(
        scaling(benign, 2, 10, own=own, scale=0.5).numpy(), 0.5 * own.numpy(), rtol=1e-15
    )
    np.testing.assert_allclose(scaling(benign, 3, 7).numpy(), 7.0 * benign[:3].numpy())


def test_own_fallback_needs_enough_rows() -> None:
    with pytest.raises(ValueError, match=r"benign has 2 rows < num_malicious=3"):
        sign_flip(rand(2, 4, seed=0), 3, 6)
    # with own, benign may even be empty
    own = rand(3, 4, seed=1)
    assert torch.equal(scaling(torch.zeros(0, 4, dtype=torch.float64), 3, 6, own=own), 6 * own)


def test_own_is_cast_to_benign_dtype() -> None:
    out = sign_flip(rand(4, 3, seed=0, dtype=torch.float32), 2, 5, own=rand(2, 3, seed=1))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("bad", [math.inf, math.nan, "2", True])
def test_scale_must_be_finite_real(bad) -> None:
    with pytest.raises(ValueError, match=r"scale must be a finite real number, got"):
        sign_flip(rand(4, 3, seed=0), 2, 5, scale=bad)
    with pytest.raises(ValueError, match=r"scale must be a finite real number, got"):
        scaling(rand(4, 3, seed=0), 2, 5, scale=bad)


# --------------------------------------------------------------------------- gaussian


@pytest.mark.parametrize("variant", ["blanchard", "fang"])
def test_gaussian_is_deterministic_for_a_seeded_generator(variant) -> None:
    benign = rand(6, 50, seed=2)
    a = gaussian(benign, 4, 10, generator=gen(7), variant=variant)
    b = gaussian(benign, 4, 10, generator=gen(7), variant=variant)
    c = gaussian(benign, 4, 10, generator=gen(8), variant=variant)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the same draws whatever the input dtype
    a32 = gaussian(benign.float(), 4, 10, generator=gen(7), variant=variant)
    np.testing.assert_allclose(a32.numpy(), a.numpy(), rtol=1e-6, atol=1e-4)
    # each malicious client its own draw
    assert not torch.equal(a[0], a[1])


def test_gaussian_blanchard_statistics() -> None:
    out = gaussian(rand(3, 200, seed=0), 200, 400, generator=gen(3))  # 40,000 draws
    assert abs(float(out.mean())) < 200 * 4 / math.sqrt(out.numel())
    assert float(out.std()) == pytest.approx(200.0, rel=0.02)
    shifted = gaussian(rand(3, 200, seed=0), 200, 400, generator=gen(3), std=2.0, mean=5.0)
    assert float(shifted.mean()) == pytest.approx(5.0, abs=0.05)
    assert float(shifted.std()) == pytest.approx(2.0, rel=0.02)


def test_gaussian_fang_statistics_follow_benign_per_coordinate() -> None:
    # coordinates with very different means and spreads
    x = rand(12, 4, seed=9) * torch.tensor([0.1, 1.0, 10.0, 3.0]) + torch.tensor([5, -2, 0, 40])
    mu = x.numpy().mean(axis=0)
    sigma = x.numpy().std(axis=0, ddof=0)  # population std over the benign updates
    out = gaussian(x, 20_000, 20_000, generator=gen(4), variant="fang").numpy()
    np.testing.assert_allclose(out.mean(axis=0), mu, atol=float(4 * sigma.max() / 141))
    np.testing.assert_allclose(out.std(axis=0), sigma, rtol=0.03)


def test_gaussian_errors() -> None:
    benign = rand(4, 3, seed=0)
    with pytest.raises(ValueError, match=r"needs generator=torch.Generator, got None"):
        gaussian(benign, 2, 5)
    with pytest.raises(ValueError, match=r"unknown gaussian variant 'cauchy'; valid: "):
        gaussian(benign, 2, 5, generator=gen(), variant="cauchy")
    with pytest.raises(ValueError, match=r"got std=200.0, mean=None"):
        gaussian(benign, 2, 5, generator=gen(), variant="fang", std=200.0)
    with pytest.raises(ValueError, match=r"std must be >= 0, got -1.0"):
        gaussian(benign, 2, 5, generator=gen(), std=-1.0)


# --------------------------------------------------------------------------- nan


@pytest.mark.parametrize(("value", "check"), [("nan", torch.isnan), ("inf", torch.isposinf)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_nan_is_all_non_finite(value, check, dtype) -> None:
    out = nan(rand(4, 6, seed=0, dtype=dtype), 3, 7, value=value)
    assert out.shape == (3, 6) and out.dtype == dtype
    assert bool(check(out).all())
    assert not bool(torch.isfinite(out).any())


def test_nan_unknown_value() -> None:
    with pytest.raises(ValueError, match=r"unknown value 'zero'; valid: \['inf', 'nan'\]"):
        nan(rand(4, 6, seed=0), 3, 7, value="zero")


# --------------------------------------------------------------------------- ALIE


def alie_z_reference(n: int, f: int) -> float:
    s = math.floor(n / 2 + 1) - f
    return float(norm.ppf((n - f - s) / (n - f)))


def test_alie_z_published_values() -> None:
    assert alie_z(50, 24) == pytest.approx(1.43, abs=0.005)
    assert alie_z(100, 20) == pytest.approx(0.286, abs=0.001)


@pytest.mark.parametrize(("n", "f"), [(n, f) for n in (3, 4, 7, 10, 51, 100) for f in range(n)])
def test_alie_z_matches_scipy(n: int, f: int) -> None:
    s = math.floor(n / 2 + 1) - f
    p = (n - f - s) / (n - f)
    if 0 < p < 1:
        assert alie_z(n, f) == pytest.approx(alie_z_reference(n, f), rel=1e-9, abs=1e-12)
    else:
        with pytest.raises(ValueError, match=rf"for n={n}, f={f}, s={s}; give z explicitly"):
            alie_z(n, f)


def test_alie_z_errors() -> None:
    with pytest.raises(ValueError, match=r"got 1 for n=10, f=6, s=0"):
        alie_z(10, 6)  # a malicious majority: s <= 0
    with pytest.raises(ValueError, match=r"at least one benign client, got n=5, f=5"):
        alie_z(5, 5)
    with pytest.raises(ValueError, match=r"num_clients must be an integer >= 0, got 2.5"):
        alie_z(2.5, 1)


def test_alie_is_mean_minus_z_population_std() -> None:
    benign = rand(9, 7, seed=11, shift=0.3)
    x = benign.numpy()
    mu = [sum(x[i, j] for i in range(9)) / 9 for j in range(7)]
    sigma = [math.sqrt(sum((x[i, j] - mu[j]) ** 2 for i in range(9)) / 9) for j in range(7)]
    z = alie_z_reference(50, 24)
    expected = np.array([mu[j] - z * sigma[j] for j in range(7)])
    out = alie(benign, 24, 50).numpy()
    assert out.shape == (24, 7)
    np.testing.assert_allclose(out, np.tile(expected, (24, 1)), rtol=1e-9, atol=1e-12)
    # a given z (the paper's fixed 1.5) replaces z_max, for any (n, f)
    out = alie(benign, 6, 10, z=1.5).numpy()
    np.testing.assert_allclose(out[0], [mu[j] - 1.5 * sigma[j] for j in range(7)], rtol=1e-9)


def test_alie_errors() -> None:
    with pytest.raises(ValueError, match=r"for n=10, f=6, s=0"):
        alie(rand(4, 3, seed=0), 6, 10)
    with pytest.raises(ValueError, match=r"z must be a finite real number, got nan"):
        alie(rand(4, 3, seed=0), 2, 10, z=math.nan)


# --------------------------------------------------------------------------- IPM


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 100.0])
def test_ipm_is_minus_epsilon_mean(epsilon: float) -> None:
    benign = rand(7, 9, seed=12, shift=1.0)
    x = benign.numpy()
    mean = [sum(x[i, j] for i in range(7)) / 7 for j in range(9)]
    out = ipm(benign, 3, 10, epsilon=epsilon).numpy()
    np.testing.assert_allclose(out, np.tile([-epsilon * m for m in mean], (3, 1)), rtol=1e-12)
    # the inner product with the benign mean is negative
    assert float(out[0] @ np.array(mean)) < 0


def test_ipm_epsilon_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"epsilon must be > 0, got -0.1"):
        ipm(rand(4, 3, seed=0), 2, 5, epsilon=-0.1)


# --------------------------------------------------------------------------- min-max / min-sum


def direction(x: np.ndarray, perturbation: str) -> np.ndarray:
    mu = x.mean(axis=0)
    return {
        "unit": -mu / np.linalg.norm(mu),
        "std": -x.std(axis=0, ddof=1),
        "sign": -np.sign(mu),
    }[perturbation]


def minmax_holds(x: np.ndarray, crafted: np.ndarray) -> bool:
    k = len(x)
    widest = max(np.linalg.norm(x[i] - x[j]) for i in range(k) for j in range(k))
    return max(np.linalg.norm(crafted - x[i]) for i in range(k)) <= widest


def minsum_holds(x: np.ndarray, crafted: np.ndarray) -> bool:
    k = len(x)
    worst = max(sum(np.linalg.norm(x[i] - x[j]) ** 2 for j in range(k)) for i in range(k))
    return sum(np.linalg.norm(crafted - x[i]) ** 2 for i in range(k)) <= worst


def minmax_gamma_exact(x: np.ndarray, p: np.ndarray) -> float:
    """Smallest positive root over i of ||mu + g p - x_i||^2 = max pairwise distance^2."""
    k, mu = len(x), x.mean(axis=0)
    widest_sq = max(np.sum((x[i] - x[j]) ** 2) for i in range(k) for j in range(k))
    roots = []
    for i in range(k):
        v = mu - x[i]
        a, b, c = p @ p, 2 * (v @ p), v @ v - widest_sq
        roots.append((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))
    return min(roots)


def minsum_gamma_exact(x: np.ndarray, p: np.ndarray) -> float:
    k, mu = len(x), x.mean(axis=0)
    worst = max(sum(np.sum((x[i] - x[j]) ** 2) for j in range(k)) for i in range(k))
    base = sum(np.sum((mu - x[i]) ** 2) for i in range(k))
    return math.sqrt((worst - base) / (k * (p @ p)))


RULES = [
    ("minmax", minmax, minmax_gamma, minmax_holds, minmax_gamma_exact),
    ("minsum", minsum, minsum_gamma, minsum_holds, minsum_gamma_exact),
]


@pytest.mark.parametrize(("rule", "attack", "gamma_of", "holds", "exact"), RULES, ids=["mm", "ms"])
@pytest.mark.parametrize("perturbation", ["unit", "std", "sign"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constraint_holds_and_gamma_is_maximal(
    rule, attack, gamma_of, holds, exact, perturbation, seed
) -> None:
    k, d = 6 + seed, 10
    # a shifted cloud, so the mean has a clear sign and norm
    benign = rand(k, d, seed=20 + seed, shift=0.4)
    x = benign.numpy()
    p = direction(x, perturbation)
    gamma = gamma_of(benign, perturbation=perturbation)
    out = attack(benign, 4, k + 4, perturbation=perturbation).numpy()
    assert out.shape == (4, d)
    crafted = x.mean(axis=0) + gamma * p
    np.testing.assert_allclose(out, np.tile(crafted, (4, 1)), rtol=1e-12, atol=1e-12)
    assert 0 < gamma < 2 * 10.0 - 2 * TOL, "the default range should hold these gammas"
    assert holds(x, out[0])
    assert not holds(x, x.mean(axis=0) + (gamma + 2 * TOL) * p)
    assert gamma == pytest.approx(exact(x, p), abs=2 * TOL)


@pytest.mark.parametrize(("rule", "attack", "gamma_of", "holds", "exact"), RULES, ids=["mm", "ms"])
def test_gamma_capped_at_the_search_range(rule, attack, gamma_of, holds, exact) -> None:
    benign = rand(6, 5, seed=3, shift=0.2)
    x = benign.numpy()
    p = direction(x, "unit")
    gamma_init = 0.01  # the search covers [0, 0.02), far below gamma*
    assert exact(x, p) > 2 * gamma_init
    gamma = gamma_of(benign, gamma_init=gamma_init)
    assert 2 * gamma_init - 2 * TOL <= gamma < 2 * gamma_init
    assert holds(x, x.mean(axis=0) + gamma * p)


@pytest.mark.parametrize(("rule", "attack", "gamma_of", "holds", "exact"), RULES, ids=["mm", "ms"])
def test_single_benign_update_gives_gamma_zero(rule, attack, gamma_of, holds, exact) -> None:
    benign = rand(1, 5, seed=4, shift=1.0)
    assert gamma_of(benign) == 0.0
    np.testing.assert_allclose(attack(benign, 2, 3).numpy(), np.tile(benign.numpy(), (2, 1)))
    with pytest.raises(ValueError, match=r"perturbation 'std' needs >= 2 benign updates, got k=1"):
        attack(benign, 2, 3, perturbation="std")


def test_minmax_minsum_errors() -> None:
    benign = rand(5, 3, seed=0)
    with pytest.raises(ValueError, match=r"unknown perturbation 'gauss'; valid: "):
        minmax(benign, 2, 7, perturbation="gauss")
    with pytest.raises(ValueError, match=r"gamma_init must be > 0, got 0"):
        minsum(benign, 2, 7, gamma_init=0)
    with pytest.raises(ValueError, match=r"tol must be > 0, got -1"):
        minmax_gamma(benign, tol=-1)
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1, got 0"):
        minsum_gamma(benign, max_iter=0)


def test_minsum_is_looser_than_minmax_on_a_tight_cluster_with_an_outlier() -> None:
    # Min-Sum's bound is set by the outlier's summed distances; Min-Max's by the diameter.
    benign = torch.cat([rand(8, 4, seed=5) * 0.01 + 1.0, torch.full((1, 4), 3.0)])
    assert minsum_gamma(benign) > 0 and minmax_gamma(benign) > 0


# --------------------------------------------------------------------------- halving search


def official_search(feasible, gamma_init: float, tol: float) -> tuple[float, list[float]]:
    """The authors' loop, transcribed as published (lamda, lamda_fail, lamda_succ)."""
    lamda, lamda_fail, lamda_succ, tested = gamma_init, gamma_init, 0.0, []
    while abs(lamda_succ - lamda) > tol:
        tested.append(lamda)
        if feasible(lamda):
            lamda_succ = lamda
            lamda = lamda + lamda_fail / 2
        else:
            lamda = lamda - lamda_fail / 2
        lamda_fail = lamda_fail / 2
    return lamda_succ, tested


@pytest.mark.parametrize("threshold", [0.0, 1e-3, 3.7, 10.0, 12.5, 19.99, 50.0])
def test_halving_search_follows_the_official_loop(threshold: float) -> None:
    tested: list[float] = []

    def feasible(gamma: float) -> bool:
        tested.append(gamma)
        return gamma <= threshold

    expected, expected_tested = official_search(lambda g: g <= threshold, 10.0, TOL)
    assert halving_search(feasible, gamma_init=10.0, tol=TOL) == expected
    assert tested == expected_tested
    assert tested[:2] == [10.0, 15.0 if threshold >= 10.0 else 5.0]
    if threshold < 20.0 - 2 * TOL:
        assert threshold - 2 * TOL <= expected <= threshold
    else:
        assert expected >= 20.0 - 2 * TOL


def test_halving_search_stops_at_max_iter() -> None:
    calls: list[float] = []
    halving_search(lambda g: calls.append(g) or True, gamma_init=10.0, tol=1e-300, max_iter=7)
    assert len(calls) == 7
