"""Geometric median, centered clipping, norm bounding, FLTrust, NNM and bucketing.

Expected values come from hand computation, from independent numpy transcriptions of the
papers' formulas written here with plain loops, or from scipy's minimiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from strategies.clipping import centered_clipping, norm_bound
from strategies.fltrust import fltrust
from strategies.geometric_median import geometric_median
from strategies.preaggregation import Mixed, bucketing, nearest_neighbor_mixing


def rand(n: int, d: int, seed: int, scale: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) * scale).to(dtype)


def gm_objective(z: np.ndarray, x: np.ndarray, a: np.ndarray) -> float:
    return float(sum(a[i] * np.linalg.norm(z - x[i]) for i in range(len(x))))


# --------------------------------------------------------------------------- geometric median


def square_with_outlier_abscissa() -> float:
    """x of the geometric median of (+-1, +-1) and a point far out on the positive x axis.

    By symmetry it lies on the x axis; there the unit vectors towards the five points sum
    to zero: 2(1-t)/sqrt((1-t)^2+1) - 2(1+t)/sqrt((1+t)^2+1) + 1 = 0 (the outlier pulls
    with unit force wherever it is), solved here by bisection.
    """

    def force(t: float) -> float:
        return (
            2 * (1 - t) / math.sqrt((1 - t) ** 2 + 1)
            - 2 * (1 + t) / math.sqrt((1 + t) ** 2 + 1)
            + 1
        )

    lo, hi = 0.0, 1.0  # force(0) = 1 > 0, force(1) = 1 - 4/sqrt(5) < 0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if force(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("far", [10.0, 1e3, 1e8])
def test_geometric_median_square_with_far_outlier(far: float) -> None:
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0], [far, 0.0]])
    x = x.double()
    result = geometric_median(x, nu=1e-9, max_iter=10_000, tol=1e-15)
    t = square_with_outlier_abscissa()
    assert 0.62 < t < 0.63  # inside the square, whatever "far" is
    torch.testing.assert_close(result.update, torch.tensor([t, 0.0], dtype=torch.float64))
    # the plain mean is dragged to far/5; the median does not move with the outlier
    assert x.mean(0)[0] >= 1.8


def test_geometric_median_symmetric_configuration_is_its_center() -> None:
    square = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]])
    shifted = square.double() + torch.tensor([3.0, -7.0], dtype=torch.float64)
    result = geometric_median(shifted)
    torch.testing.assert_close(result.update, torch.tensor([3.0, -7.0], dtype=torch.float64))


def test_geometric_median_in_one_dimension_is_the_median() -> None:
    x = torch.tensor([[0.0], [1.0], [2.5], [40.0], [-3.0], [1e6], [7.0]], dtype=torch.float64)
    result = geometric_median(x, nu=1e-9, max_iter=10_000, tol=1e-15)
    torch.testing.assert_close(result.update, torch.tensor([2.5], dtype=torch.float64))


def scipy_geometric_median(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        diff = z[None, :] - x
        dist = np.linalg.norm(diff, axis=1)
        return float(a @ dist), (a / dist) @ diff

    start = np.median(x, axis=0)
    res = minimize(fun, start, jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 10_000})
    return res.x


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_geometric_median_matches_scipy_minimiser(seed: int, weighted: bool) -> None:
    x = rand(9, 6, seed, scale=50.0)  # distances >> nu: the default nu does not smooth
    a = torch.rand(9, generator=torch.Generator().manual_seed(seed)).double() + 0.1
    weights = a if weighted else None
    a_np = (a / a.sum()).numpy() if weighted else np.full(9, 1 / 9)
    expected = scipy_geometric_median(x.numpy(), a_np)
    scale = float(np.linalg.norm(x.numpy(), axis=1).max())
    tight = {"nu": 1e-9, "tol": 1e-12, "max_iter": 10_000}
    for kwargs, accuracy in (({}, 2e-6), (tight, 1e-7)):
        result = geometric_median(x, weights, **kwargs)
        z = result.update.numpy()
        assert np.linalg.norm(z - expected) <= accuracy * scale
        ours, theirs = gm_objective(z, x.numpy(), a_np), gm_objective(expected, x.numpy(), a_np)
        assert ours <= theirs * (1 + 1e-9)


@pytest.mark.parametrize("far", [1e3, 1e12, 1e20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_geometric_median_stopping_is_not_loosened_by_a_far_update(
    far: float, dtype: torch.dtype
) -> None:
    """RFA's relative-objective test stops ~5.8e3 off here at far = 1e12 (see docstring)."""
    honest = rand(9, 5, seed=0)
    x = torch.cat([honest, torch.full((1, 5), far, dtype=torch.float64)]).to(dtype)
    converged = geometric_median(x.double(), tol=0.0, max_iter=5000).update
    honest_only = geometric_median(honest, tol=0.0, max_iter=5000).update
    result = geometric_median(x)
    assert float(torch.linalg.vector_norm(result.update.double() - converged)) < 1e-5
    assert float(torch.linalg.vector_norm(converged - honest_only)) < 0.3  # one in ten moves it
    assert float(result.weights[9]) * far < 0.1  # its share shrinks as it moves away


def test_geometric_median_weights_equal_duplicated_points() -> None:
    x = rand(4, 3, seed=5, scale=10.0)
    counts = torch.tensor([1.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    duplicated = x.repeat_interleave(counts.long(), dim=0)
    kwargs = {"nu": 1e-9, "tol": 1e-14, "max_iter": 10_000}
    weighted = geometric_median(x, counts, **kwargs)
    plain = geometric_median(duplicated, **kwargs)
    torch.testing.assert_close(weighted.update, plain.update)
    groups = torch.repeat_interleave(torch.arange(4), counts.long())
    summed = torch.zeros(4, dtype=torch.float64).index_add_(0, groups, plain.weights)
    torch.testing.assert_close(weighted.weights, summed)


def numpy_smoothed_weiszfeld(
    x: np.ndarray, a: np.ndarray, nu: float, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """RFA's iteration transcribed with loops: start at the weighted mean."""
    a = a / a.sum()
    z = sum(a[i] * x[i] for i in range(len(x)))
    share = a
    for _ in range(iterations):
        b = np.array([a[i] / max(nu, np.linalg.norm(z - x[i])) for i in range(len(x))])
        share = b / b.sum()
        z = sum(share[i] * x[i] for i in range(len(x)))
    return z, share


@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_geometric_median_iterations_match_literal_weiszfeld(iterations: int) -> None:
    x = rand(7, 5, seed=3)
    x[0] += 20.0  # one far update, one that sits within nu of another
    x[2] = x[1] + 0.01
    a = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 1.0, 1.0])
    result = geometric_median(x, torch.tensor(a), nu=0.1, max_iter=iterations, tol=0.0)
    z, share = numpy_smoothed_weiszfeld(x.numpy(), a, 0.1, iterations)
    np.testing.assert_allclose(result.update.numpy(), z, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(result.weights.numpy(), share, rtol=1e-10, atol=1e-12)


def test_geometric_median_weights_are_the_shares_of_the_result() -> None:
    x = rand(8, 4, seed=7)
    w = torch.tensor([1.0, 1.0, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    result = geometric_median(x, w)
    assert result.weights is not None
    torch.testing.assert_close(result.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert (result.weights >= 0).all() and result.weights[2] == 0
    torch.testing.assert_close(result.update, result.weights @ x)


def test_geometric_median_stays_with_a_majority_of_honest_updates() -> None:
    honest = rand(11, 20, seed=11)
    attackers = torch.full((10, 20), 1e6, dtype=torch.float64)
    x = torch.cat([honest, attackers])
    result = geometric_median(x)
    # 11 of 21 honest: bounded, while the mean is dragged ~ 5e5 per coordinate
    assert result.update.abs().max() < 100.0
    assert x.mean(0).abs().min() > 1e5
    assert result.weights[11:].sum() < 1e-3


def test_geometric_median_is_permutation_and_translation_equivariant() -> None:
    x = rand(9, 5, seed=13, scale=3.0)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    shift = rand(1, 5, seed=14, scale=100.0)[0]
    base = geometric_median(x, tol=1e-12)
    torch.testing.assert_close(geometric_median(x[perm], tol=1e-12).update, base.update)
    torch.testing.assert_close(geometric_median(x[perm], tol=1e-12).weights, base.weights[perm])
    moved = geometric_median(x + shift, tol=1e-12)
    torch.testing.assert_close(moved.update, base.update + shift)


def test_geometric_median_of_identical_updates_is_that_update() -> None:
    x = torch.tensor([[1.5, -2.0, 3.0]]).repeat(5, 1)
    result = geometric_median(x)
    torch.testing.assert_close(result.update, x[0])


# --------------------------------------------------------------------------- centered clipping


def numpy_centered_clipping(
    x: np.ndarray, tau: float, iterations: int, center: np.ndarray
) -> np.ndarray:
    """Karimireddy et al.'s loop, transcribed."""
    v = center.copy()
    for _ in range(iterations):
        total = np.zeros_like(v)
        for i in range(len(x)):
            y = x[i] - v
            norm = np.linalg.norm(y)
            total += y * min(1.0, tau / norm) if norm > 0 else y
        v = v + total / len(x)
    return v


@pytest.mark.parametrize("iterations", [1, 3])
def test_centered_clipping_matches_literal_loop(iterations: int) -> None:
    x = rand(10, 6, seed=21, scale=2.0)
    x[3] *= 50.0
    center = rand(1, 6, seed=22)[0]
    result = centered_clipping(x, tau=4.0, iterations=iterations, center=center)
    expected = numpy_centered_clipping(x.numpy(), 4.0, iterations, center.numpy())
    np.testing.assert_allclose(result.update.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("iterations", [1, 3])
def test_centered_clipping_with_huge_tau_is_the_mean(iterations: int) -> None:
    x = rand(6, 4, seed=23)
    center = rand(1, 4, seed=24)[0]
    result = centered_clipping(x, tau=1e12, iterations=iterations, center=center)
    torch.testing.assert_close(result.update, center + (x - center).mean(0))
    torch.testing.assert_close(result.update, x.mean(0))


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_centered_clipping_outlier_moves_center_by_at_most_tau_over_n(iterations: int) -> None:
    n, tau = 8, 10.0
    center = rand(1, 5, seed=25)[0]
    x = center.repeat(n, 1)
    x[4] = center + 1e9 * rand(1, 5, seed=26)[0]
    result = centered_clipping(x, tau=tau, iterations=iterations, center=center)
    moved = float(torch.linalg.vector_norm(result.update - center))
    assert moved <= iterations * tau / n * (1 + 1e-12)
    if iterations == 1:
        assert moved == pytest.approx(tau / n, rel=1e-12)
    assert float(torch.linalg.vector_norm(x.mean(0) - center)) > 1e7


@pytest.mark.parametrize("iterations", [1, 3])
def test_centered_clipping_weights_are_exact_shares(iterations: int) -> None:
    x = rand(7, 4, seed=27, scale=3.0)
    x[0] *= 100.0
    center = rand(1, 4, seed=28)[0]
    result = centered_clipping(x, tau=2.0, iterations=iterations, center=center)
    w = result.weights
    assert w is not None and (w >= 0).all() and float(w.sum()) <= 1.0
    center_share = 1.0 - w.sum()
    torch.testing.assert_close(result.update, center_share * center + w @ x)
    assert w[0] < 1.0 / 7  # the clipped outlier counted less than a plain mean gives it
    if iterations == 1:
        norms = torch.linalg.vector_norm(x - center, dim=1)
        torch.testing.assert_close(w, torch.clamp(2.0 / norms, max=1.0) / 7)


def test_centered_clipping_without_center_starts_at_zero() -> None:
    x = rand(5, 3, seed=29, scale=5.0)
    torch.testing.assert_close(
        centered_clipping(x, tau=3.0, iterations=2).update,
        centered_clipping(x, tau=3.0, iterations=2, center=torch.zeros(3).double()).update,
    )


# --------------------------------------------------------------------------- norm bounding


def test_norm_bound_known_values() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [0.0, 0.0]])
    result = norm_bound(x, max_norm=5.0)
    # scales 1, 1, 1/2, 1 (zero row untouched): rows (3,4), (0,1), (3,4), (0,0)
    torch.testing.assert_close(result.update, torch.tensor([1.5, 2.25]))
    torch.testing.assert_close(result.weights, torch.tensor([0.25, 0.25, 0.125, 0.25]))


def test_norm_bound_never_scales_up() -> None:
    x = rand(9, 7, seed=31)
    norms = torch.linalg.vector_norm(x, dim=1)
    small = norm_bound(x, max_norm=float(norms.max()) * 2)
    torch.testing.assert_close(small.update, x.mean(0))  # nothing above M: the plain mean
    tight = norm_bound(x, max_norm=float(norms.median()))
    assert (tight.weights <= 1.0 / 9).all()
    torch.testing.assert_close(tight.update, tight.weights @ x)


def test_norm_bound_is_centered_clipping_around_zero() -> None:
    x = rand(6, 5, seed=32, scale=4.0)
    a, b = norm_bound(x, 3.0), centered_clipping(x, tau=3.0)
    torch.testing.assert_close(a.update, b.update)
    torch.testing.assert_close(a.weights, b.weights)


# --------------------------------------------------------------------------- FLTrust


def numpy_fltrust(g: np.ndarray, g0: np.ndarray) -> np.ndarray:
    """The paper's formula with loops (a zero-norm client gets trust 0)."""
    trusts, rescaled = [], []
    for gi in g:
        ni = np.linalg.norm(gi)
        cos = gi @ g0 / (ni * np.linalg.norm(g0)) if ni > 0 else 0.0
        trusts.append(max(cos, 0.0))
        rescaled.append(gi * np.linalg.norm(g0) / ni if ni > 0 else gi)
    total = sum(trusts)
    if total == 0:
        return np.zeros_like(g0)
    return sum(t * r for t, r in zip(trusts, rescaled, strict=True)) / total


def test_fltrust_matches_literal_formula() -> None:
    g0 = rand(1, 8, seed=41)[0]
    x = rand(7, 8, seed=42, scale=3.0) + 0.5 * g0
    x[2] = -x[2]
    result = fltrust(x, g0)
    np.testing.assert_allclose(result.update.numpy(), numpy_fltrust(x.numpy(), g0.numpy()))
    torch.testing.assert_close(result.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_fltrust_opposite_or_orthogonal_update_gets_zero_weight() -> None:
    g0 = torch.tensor([1.0, 2.0, 0.0])
    x = torch.tensor([[2.0, 1.0, 0.0], [-3.0, -6.0, 0.0], [2.0, -1.0, 5.0], [0.5, 1.0, 0.0]])
    result = fltrust(x, g0)
    assert result.weights[1] == 0 and result.weights[2] == 0
    assert result.weights[0] > 0 and result.weights[3] > 0
    # trust 4/5 and 1 on unit directions (2,1)/sqrt5 and (1,2)/sqrt5, each scaled to sqrt5
    expected = (0.8 * torch.tensor([2.0, 1.0, 0.0]) + 1.0 * torch.tensor([1.0, 2.0, 0.0])) / 1.8
    torch.testing.assert_close(result.update, expected)
    torch.testing.assert_close(result.weights, torch.tensor([0.8, 0.0, 0.0, 1.0]) / 1.8)


def test_fltrust_is_invariant_to_positive_rescaling_of_a_client() -> None:
    g0 = rand(1, 6, seed=43)[0]
    x = rand(5, 6, seed=44) + g0
    boosted = x.clone()
    boosted[1] *= 1e4  # a scaling attack buys nothing
    boosted[3] *= 1e-3
    a, b = fltrust(x, g0), fltrust(boosted, g0)
    torch.testing.assert_close(a.update, b.update)
    torch.testing.assert_close(a.weights, b.weights)
    assert float(torch.linalg.vector_norm(b.update)) <= float(torch.linalg.vector_norm(g0)) + 1e-9


def test_fltrust_all_negative_gives_zero_update() -> None:
    g0 = rand(1, 5, seed=45)[0]
    x = -(rand(4, 5, seed=46).abs() * g0.sign())  # every row points away from g0
    assert ((x @ g0) < 0).all()
    result = fltrust(x, g0)
    assert torch.equal(result.update, torch.zeros(5, dtype=torch.float64))
    assert torch.equal(result.weights, torch.zeros(4, dtype=torch.float64))


def test_fltrust_zero_rows_and_zero_server_update() -> None:
    g0 = torch.tensor([1.0, 0.0])
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
    result = fltrust(x, g0)
    assert torch.isfinite(result.update).all() and result.weights[0] == 0
    zero = fltrust(x, torch.zeros(2))
    assert torch.equal(zero.update, torch.zeros(2)) and torch.equal(zero.weights, torch.zeros(3))


# --------------------------------------------------------------------------- pre-aggregation


def check_mixing(mixed: Mixed, updates: torch.Tensor) -> None:
    torch.testing.assert_close(mixed.mixing.sum(1), torch.ones(mixed.mixing.shape[0]).to(updates))
    assert (mixed.mixing >= 0).all()
    torch.testing.assert_close(mixed.mixing @ updates, mixed.updates)


def test_nearest_neighbor_mixing_known_values() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    mixed = nearest_neighbor_mixing(x, num_malicious=1)
    torch.testing.assert_close(mixed.updates, torch.tensor([[4 / 3], [4 / 3], [4 / 3], [14 / 3]]))
    check_mixing(mixed, x)
    # ties go to the lower index: 1 and -1 are both at distance 1 from 0
    tied = nearest_neighbor_mixing(torch.tensor([[0.0], [1.0], [-1.0], [5.0]]), 2)
    torch.testing.assert_close(tied.mixing[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    # a row is its own first neighbour even when an identical row has a lower index
    dup = nearest_neighbor_mixing(torch.tensor([[1.0], [1.0], [5.0]]), 2)
    torch.testing.assert_close(dup.mixing, torch.eye(3))


@pytest.mark.parametrize("f", [0, 1, 3, 5])
def test_nearest_neighbor_mixing_rows_are_means_of_nearest(f: int) -> None:
    x = rand(9, 4, seed=51, scale=2.0)
    x[7] += 30.0
    mixed = nearest_neighbor_mixing(x, f)
    check_mixing(mixed, x)
    xn = x.numpy()
    for i in range(9):
        dist = [np.sum((xn[i] - xn[j]) ** 2) for j in range(9)]
        others = sorted((dist[j], j) for j in range(9) if j != i)
        chosen = [i] + [j for _, j in others[: 9 - f - 1]]
        np.testing.assert_allclose(mixed.updates[i].numpy(), xn[chosen].mean(0), rtol=1e-12)
        assert set(torch.nonzero(mixed.mixing[i]).flatten().tolist()) == set(chosen)


def test_bucketing_is_deterministic_for_a_seeded_generator() -> None:
    x = rand(10, 3, seed=61)
    a = bucketing(x, 3, torch.Generator().manual_seed(7))
    b = bucketing(x, 3, torch.Generator().manual_seed(7))
    c = bucketing(x, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a.mixing, b.mixing) and torch.equal(a.updates, b.updates)
    assert not torch.equal(a.mixing, c.mixing)


@pytest.mark.parametrize(("n", "s"), [(10, 3), (12, 4), (5, 1), (4, 9)])
def test_bucketing_partitions_clients(n: int, s: int) -> None:
    x = rand(n, 3, seed=62)
    mixed = bucketing(x, s, torch.Generator().manual_seed(3))
    m = math.ceil(n / s)
    assert mixed.mixing.shape == (m, n) and mixed.updates.shape == (m, 3)
    check_mixing(mixed, x)
    members = mixed.mixing > 0
    assert (members.sum(0) == 1).all()  # every client in exactly one bucket
    sizes = members.sum(1).tolist()
    assert sizes == [min(s, n)] * (m - 1) + [n - (m - 1) * s]  # only the last one smaller
    # each bucket is the plain mean of its members
    for j in range(m):
        torch.testing.assert_close(mixed.updates[j], x[members[j]].mean(0))


def test_bucketing_matches_authors_loop_on_the_same_permutation() -> None:
    x = rand(11, 4, seed=63)
    mixed = bucketing(x, 4, torch.Generator().manual_seed(5))
    order = torch.randperm(11, generator=torch.Generator().manual_seed(5)).tolist()
    for t in range(math.ceil(11 / 4)):
        members = order[t * 4 : (t + 1) * 4]
        expected = sum(x[i] for i in members) / len(members)
        torch.testing.assert_close(mixed.updates[t], expected)


def test_rule_weights_map_back_through_mixing() -> None:
    x = rand(10, 5, seed=64)
    mixed = bucketing(x, 2, torch.Generator().manual_seed(0))
    client_weights = geometric_median(mixed.updates).weights @ mixed.mixing
    assert client_weights.shape == (10,)
    torch.testing.assert_close(client_weights.sum(), torch.tensor(1.0, dtype=torch.float64))


# --------------------------------------------------------------------------- shared contract


def g0_for(x: torch.Tensor) -> torch.Tensor:
    return torch.linspace(-1.0, 2.0, x.shape[1], dtype=x.dtype)


CALLS: dict[str, Callable[[torch.Tensor], object]] = {
    "geometric_median": lambda x: geometric_median(x),
    "centered_clipping": lambda x: centered_clipping(x, 1.0, 2, center=x[0] * 0.5),
    "norm_bound": lambda x: norm_bound(x, 1.0),
    "fltrust": lambda x: fltrust(x, g0_for(x)),
    "nearest_neighbor_mixing": lambda x: nearest_neighbor_mixing(x, 2),
    "bucketing": lambda x: bucketing(x, 2, torch.Generator().manual_seed(0)),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inputs_unchanged_and_dtype_preserved(name: str, dtype: torch.dtype) -> None:
    x = rand(7, 5, seed=71, dtype=dtype)
    before = x.clone()
    result = CALLS[name](x)
    assert torch.equal(x, before)
    produced = result.updates if isinstance(result, Mixed) else result.update
    assert produced.dtype == dtype
    assert result.mixing.dtype == dtype if isinstance(result, Mixed) else True
    if not isinstance(result, Mixed):
        assert result.update.shape == (5,) and result.weights.shape == (7,)
        assert result.weights.dtype == dtype


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: geometric_median(x, nu=0.0), r"nu > 0, got nu=0\.0"),
        (lambda x: geometric_median(x, max_iter=0), r"max_iter >= 1, got max_iter=0"),
        (lambda x: geometric_median(x, tol=-1e-3), r"tol >= 0, got tol=-0\.001"),
        (lambda x: geometric_median(x, torch.ones(3)), r"weights must have shape \(4,\)"),
        (lambda x: centered_clipping(x, tau=-1.0), r"tau > 0, got tau=-1\.0"),
        (lambda x: centered_clipping(x, 1.0, iterations=0), r"iterations >= 1, got iterations=0"),
        (lambda x: centered_clipping(x, 1.0, center=torch.zeros(2)), r"shape \(3,\), got \(2,\)"),
        (
            lambda x: centered_clipping(x, 1.0, center=torch.tensor([0.0, math.inf, 0.0])),
            r"finite center",
        ),
        (lambda x: norm_bound(x, max_norm=-1), r"max_norm > 0, got max_norm=-1"),
        (lambda x: norm_bound(x, max_norm=math.nan), r"max_norm > 0, got max_norm=nan"),
        (lambda x: fltrust(x, torch.zeros(4)), r"server_update of shape \(3,\), got \(4,\)"),
        (lambda x: fltrust(x, torch.tensor([1.0, math.nan, 0.0])), r"finite server_update"),
        (lambda x: nearest_neighbor_mixing(x, 4), r"num_malicious < n, got num_malicious=4, n=4"),
        (lambda x: nearest_neighbor_mixing(x, -1), r"got num_malicious=-1, n=4"),
        (lambda x: bucketing(x, 0), r"bucket_size >= 1, got bucket_size=0"),
        (lambda x: geometric_median(x[0]), r"shape \(n, d\), got \(3,\)"),
    ],
)
def test_value_errors_name_the_values(call: Callable[[torch.Tensor], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(torch.ones(4, 3))
