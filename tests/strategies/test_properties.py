"""One property suite run over every aggregation rule (STYLE.md, "Tests that mean something").

Every rule is called with parameters that meet its precondition (Krum n > 2f+2, Bulyan
n >= 4f+3, trimmed mean k = floor(beta*n) >= f with beta < 1/2, f < n/2 elsewhere). Data
come from torch generators seeded by hypothesis, in float64 unless a test says otherwise:
continuous draws have no ties, so Krum's lower-index rule decides a result only where a
test makes ties on purpose (identical rows). Bulyan's last Krum steps tie by construction
when f <= 2 (one neighbour counted); its order-free tie-break is checked here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.adaptive_clipping import AdaptiveClipping
from strategies.base import Aggregate, pairwise_sq_distances
from strategies.bulyan import bulyan
from strategies.clipping import centered_clipping, norm_bound
from strategies.coordinate import median, trimmed_mean
from strategies.dnc import DnC
from strategies.flame import Flame
from strategies.fltrust import fltrust
from strategies.foolsgold import foolsgold
from strategies.geometric_median import geometric_median
from strategies.krum import krum, krum_scores, multikrum
from strategies.mean import fedavg
from strategies.pipeline import Defence, aggregate
from strategies.preaggregation import bucketing, nearest_neighbor_mixing
from strategies.rlr import robust_learning_rate
from strategies.signguard import SignGuard
from strategies.state import DefenceState

SETTINGS = settings(max_examples=40, deadline=None)

TAU = 1.0  # centered clipping radius
ITERATIONS = 3  # centered clipping L
MAX_NORM = 2.0  # norm bounding M (and adaptive clipping's first threshold)
RLR_THRESHOLD = 4  # the paper's theta for 10 agents
OUTLIER_SCALE = 1e6

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

Kwargs = dict[str, Any]


# ------------------------------------------------------------------------------ the rules


def _beta(n: int, f: int) -> float:
    """Trimmed-mean beta with floor(beta * n) == f exactly (and beta < 1/2 when 2f+1 < n)."""
    return (f + 0.5) / n


@dataclass(frozen=True)
class Rule:
    """One rule, how to call it, and which properties it claims.

    ``call(x, f, **kw)`` runs the rule on ``x`` told of f malicious rows, with ``kw`` the
    extra inputs ``extras`` made (client weights, server update, center).
    """

    name: str
    call: Callable[..., Aggregate]
    max_f: Callable[[int], int]
    extras: Callable[[torch.Generator, int, torch.dtype, bool], Kwargs] = field(
        default=lambda g, d, dtype, optional: {}
    )
    translation: bool = True  # rule(x + c) == rule(x) + c
    convex: bool = False  # weights sum to exactly 1
    shares: bool = False  # update == weights @ x + (1 - sum(weights)) * center
    coordinatewise: bool = False  # stays inside each coordinate's honest range
    robust: bool = True  # bounded under f huge outliers
    identical: bool = True  # n identical rows give that row (or a documented image of it)


def _client_weights(g: torch.Generator, n: int, dtype: torch.dtype, optional: bool) -> Kwargs:
    """Example counts for the rules that take them, on half of the draws."""
    if not optional or torch.rand((), generator=g) < 0.5:
        return {}
    return {"weights": torch.randint(1, 100, (n,), generator=g).to(dtype)}


def _server_update(g: torch.Generator, d: int, dtype: torch.dtype, optional: bool) -> Kwargs:
    """An honest-looking g0: a draw from the honest rows' distribution."""
    return {"server_update": torch.randn(d, generator=g, dtype=torch.float64).to(dtype)}


def _center(g: torch.Generator, d: int, dtype: torch.dtype, optional: bool) -> Kwargs:
    if not optional or torch.rand((), generator=g) < 0.5:
        return {}
    return {"center": torch.randn(d, generator=g, dtype=torch.float64).to(dtype)}


RULES = [
    Rule(
        "fedavg",
        lambda x, f, **kw: fedavg(x, **kw),
        max_f=lambda n: n - 1,
        convex=True,
        shares=True,
        robust=False,
    ),
    Rule(
        "krum",
        lambda x, f, **kw: krum(x, f),
        max_f=lambda n: (n - 3) // 2,
        convex=True,
        shares=True,
    ),
    Rule(
        "multikrum",
        lambda x, f, **kw: multikrum(x, f),
        max_f=lambda n: (n - 3) // 2,
        convex=True,
        shares=True,
    ),
    Rule(
        "median",
        lambda x, f, **kw: median(x),
        max_f=lambda n: (n - 1) // 2,
        coordinatewise=True,
    ),
    Rule(
        "trimmed_mean",
        lambda x, f, **kw: trimmed_mean(x, _beta(x.shape[0], f)),
        max_f=lambda n: (n - 2) // 2,
        coordinatewise=True,
    ),
    Rule(
        "bulyan",
        lambda x, f, **kw: bulyan(x, f),
        max_f=lambda n: (n - 3) // 4,
        coordinatewise=True,
    ),
    Rule(
        "geometric_median",
        lambda x, f, **kw: geometric_median(x, **kw),
        max_f=lambda n: (n - 1) // 2,
        convex=True,
        shares=True,
    ),
    Rule(
        "centered_clipping",
        lambda x, f, **kw: centered_clipping(x, TAU, iterations=ITERATIONS, **kw),
        max_f=lambda n: (n - 1) // 2,
        extras=_center,
        shares=True,
    ),
    Rule(
        "norm_bound",
        lambda x, f, **kw: norm_bound(x, MAX_NORM),
        max_f=lambda n: (n - 1) // 2,
        translation=False,
        shares=True,
    ),
    Rule(
        "fltrust",
        lambda x, f, **kw: fltrust(x, **kw),
        max_f=lambda n: n - 1,
        extras=_server_update,
        translation=False,
        convex=True,
    ),
]


def _defended(rule: Callable[..., Aggregate], x: torch.Tensor, f: int) -> Aggregate:
    """A defence that carries its paper's detection, run as a round runs it: its detector
    flags rows, the rule aggregates the rest; weights over every row (0 for the flagged).
    Its randomness comes from one fixed seed, so a permuted call draws the same."""
    defence = Defence(
        rule, num_malicious=f, generator=lambda kind, server_round: torch.Generator().manual_seed(7)
    )
    outcome = defence(x, list(range(x.shape[0])), server_round=1)
    assert outcome.step is not None, outcome.note
    return Aggregate(update=outcome.step, weights=outcome.weights)


def _adaptive_clipping(x: torch.Tensor, **kw: Any) -> Aggregate:
    """Adaptive clipping's first round: norm bounding at its initial threshold."""
    stage = AdaptiveClipping(initial_clip=MAX_NORM)
    return stage(x, state=DefenceState().stage("rule"), **kw)


RULES += [
    Rule(
        "foolsgold",
        lambda x, f, **kw: foolsgold(x),
        max_f=lambda n: n - 1,
        translation=False,
        shares=True,
        robust=False,  # a single outlier is no sybil: nothing bounds it
        identical=False,  # identical rows look like sybils: alpha = 0, the zero update
    ),
    Rule(
        "rlr",
        lambda x, f, **kw: robust_learning_rate(x, RLR_THRESHOLD, **kw),
        max_f=lambda n: n - 1,
        translation=False,  # signs are taken about the origin
        robust=False,  # it flips the mean's direction, it bounds no size
    ),
    Rule(
        "adaptive_clipping",
        lambda x, f, **kw: _adaptive_clipping(x, **kw),
        max_f=lambda n: (n - 1) // 2,
        translation=False,
        shares=True,
    ),
    Rule(
        "flame",
        lambda x, f, **kw: _defended(Flame(noise_lambda=0.0), x, f),
        max_f=lambda n: (n - 1) // 2,
        translation=False,  # cosine distances and norms are taken about the origin
        shares=True,
    ),
    Rule(
        "dnc",
        lambda x, f, **kw: _defended(DnC(), x, f),
        max_f=lambda n: (n - 1) // 2,
        convex=True,
        shares=True,
        # No bound: outliers spread in several directions drag the mean among them, and
        # then score lower along the top direction than the honest rows (seen at d = 1).
        robust=False,
    ),
    Rule(
        "signguard",
        lambda x, f, **kw: _defended(SignGuard(), x, f),
        max_f=lambda n: (n - 1) // 2,
        translation=False,
        shares=True,
    ),
]
WEIGHTED = {
    "fedavg",
    "geometric_median",
    "rlr",
    "adaptive_clipping",
}  # rules that take example-count weights
SELECTING = {"krum", "multikrum", "bulyan"}  # weights mark the rows a Krum score selected
BY_NAME = {rule.name: rule for rule in RULES}
TRANSLATION_RULES = [rule for rule in RULES if rule.translation]
IDENTICAL_RULES = [rule for rule in RULES if rule.identical]
ROBUST_RULES = [rule for rule in RULES if rule.robust]
COORDINATE_RULES = [rule for rule in RULES if rule.coordinatewise]
ids = pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)


def _extras(
    rule: Rule, g: torch.Generator, n: int, d: int, dtype: torch.dtype, optional: bool = True
) -> Kwargs:
    """The extra inputs of one call; ``optional`` False leaves out what may be left out."""
    if rule.name in WEIGHTED:
        return _client_weights(g, n, dtype, optional)
    return rule.extras(g, d, dtype, optional)


# ------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class Problem:
    n: int
    d: int
    f: int
    seed: int

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


@st.composite
def problems(draw: st.DrawFn, rule: Rule, min_f: int = 0) -> Problem:
    n = draw(st.integers(7, 15))
    f = draw(st.integers(min_f, rule.max_f(n)))
    d = draw(st.integers(1, 6))
    return Problem(n=n, d=d, f=f, seed=draw(st.integers(0, 2**32 - 1)))


def randn(g: torch.Generator, *shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def with_outliers(
    g: torch.Generator, honest: torch.Tensor, f: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``honest`` plus f clustered outliers of size ``scale``, rows shuffled.

    The outliers sit around one random direction (a coordinated attack: close to each
    other, which is what Krum's score rewards). Returns the rows and the outliers' mask.
    """
    d = honest.shape[1]
    direction = randn(g, d)
    direction = direction / direction.norm()
    outliers = scale * (direction + 0.1 * randn(g, f, d))  # shape: (f, d)
    x = torch.cat([honest, outliers.to(honest.dtype)])
    order = torch.randperm(x.shape[0], generator=g)
    is_outlier = (torch.arange(x.shape[0]) >= honest.shape[0])[order]
    return x[order], is_outlier


def _clone(kw: Kwargs) -> Kwargs:
    return {k: v.clone() for k, v in kw.items()}


def _close(actual: torch.Tensor, expected: torch.Tensor, rule: Rule, scale: float = 1.0) -> None:
    # Geometric median stops within ~tol of its fixed point, so two runs on equivalent
    # inputs agree to about tol, not to rounding.
    tol = 1e-5 if rule.name == "geometric_median" else 1e-9
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * max(1.0, scale))


# ------------------------------------------------------------------------------ the properties


@ids
@SETTINGS
@given(data=st.data())
def test_permutation_invariance(rule: Rule, data: st.DataObject) -> None:
    p = data.draw(problems(rule))
    g = p.generator()
    x = randn(g, p.n, p.d)
    kw = _extras(rule, g, p.n, p.d, torch.float64)
    perm = torch.randperm(p.n, generator=g)
    kw_perm = {k: v[perm] if k == "weights" else v for k, v in kw.items()}

    result = rule.call(x, p.f, **kw)
    permuted = rule.call(x[perm], p.f, **kw_perm)

    _close(permuted.update, result.update, rule)
    assert (permuted.weights is None) == (result.weights is None)
    if result.weights is not None:
        _close(permuted.weights, result.weights[perm], rule)


@pytest.mark.parametrize("rule", TRANSLATION_RULES, ids=lambda r: r.name)
@SETTINGS
@given(data=st.data(), shift=st.sampled_from([0.1, 10.0, 100.0]))
def test_translation_equivariance(rule: Rule, data: st.DataObject, shift: float) -> None:
    p = data.draw(problems(rule))
    g = p.generator()
    x = randn(g, p.n, p.d)
    c = shift * randn(g, p.d)
    kw = _extras(rule, g, p.n, p.d, torch.float64)
    kw_moved = dict(kw)
    if rule.name == "centered_clipping":  # equivariant when the center moves with the rows
        kw_moved["center"] = kw.get("center", torch.zeros(p.d, dtype=x.dtype)) + c

    result = rule.call(x, p.f, **kw)
    moved = rule.call(x + c, p.f, **kw_moved)

    _close(moved.update, result.update + c, rule, scale=shift)
    if result.weights is not None:  # the shares do not depend on where the origin is
        assert moved.weights is not None
        _close(moved.weights, result.weights, rule, scale=shift)


@SETTINGS
@given(
    p=problems(BY_NAME["fltrust"]),
    factor=st.floats(1e-3, 1e3),
    data=st.data(),
)
def test_fltrust_invariant_to_rescaling_one_client(
    p: Problem, factor: float, data: st.DataObject
) -> None:
    """FLTrust is not translation-equivariant; what it promises is that size buys nothing."""
    g = p.generator()
    x = randn(g, p.n, p.d)
    g0 = randn(g, p.d)
    i = data.draw(st.integers(0, p.n - 1))
    boosted = x.clone()
    boosted[i] *= factor

    result = fltrust(x, g0)
    rescaled = fltrust(boosted, g0)

    torch.testing.assert_close(rescaled.update, result.update, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(rescaled.weights, result.weights, rtol=1e-9, atol=1e-12)
    assert torch.linalg.vector_norm(result.update) <= torch.linalg.vector_norm(g0) * (1 + 1e-9)


@SETTINGS
@given(p=problems(BY_NAME["fltrust"]), zero_server=st.booleans())
def test_fltrust_gives_zero_when_it_trusts_nobody(p: Problem, zero_server: bool) -> None:
    """Every update at an obtuse angle to g0 (or g0 = 0): zero update, no mean fallback."""
    g = p.generator()
    x = randn(g, p.n, p.d)
    g0 = torch.zeros(p.d, dtype=x.dtype) if zero_server else randn(g, p.d)
    if not zero_server:
        x = torch.where((x @ g0 < 0)[:, None], x, -x)  # shape: (n, d), all facing away
        x[0] = 0.0  # a zero update has no direction: not trusted either

    result = fltrust(x, g0)

    assert torch.equal(result.update, torch.zeros(p.d, dtype=x.dtype))
    assert result.weights is not None
    assert torch.equal(result.weights, torch.zeros(p.n, dtype=x.dtype))


@SETTINGS
@given(p=problems(BY_NAME["norm_bound"]), scale=st.floats(1e-3, 1e4))
def test_norm_bound_output_norm_is_bounded(p: Problem, scale: float) -> None:
    """Norm bounding is not translation-equivariant: its result has norm <= M, and rows
    already within M are averaged untouched."""
    g = p.generator()
    x = scale * randn(g, p.n, p.d)
    result = norm_bound(x, MAX_NORM)
    assert torch.linalg.vector_norm(result.update) <= MAX_NORM * (1 + 1e-12)
    norms = torch.linalg.vector_norm(x, dim=1)
    if bool((norms <= MAX_NORM).all()):
        torch.testing.assert_close(result.update, x.mean(0))
    else:  # a row beyond M is scaled down, so it counts less than 1/n
        assert result.weights is not None
        assert bool((result.weights[norms > MAX_NORM] < 1.0 / p.n).all())


@pytest.mark.parametrize("rule", IDENTICAL_RULES, ids=lambda r: r.name)
@SETTINGS
@given(data=st.data(), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_identical_inputs_give_that_input(rule: Rule, data: st.DataObject, scale: float) -> None:
    p = data.draw(problems(rule))
    g = p.generator()
    v = scale * randn(g, p.d)
    x = v.expand(p.n, p.d).clone()
    kw = _extras(rule, g, p.n, p.d, torch.float64)
    v_norm = torch.linalg.vector_norm(v)
    expected = v
    if rule.name == "centered_clipping":  # holds when v is within tau of the center
        offset = randn(g, p.d)
        kw["center"] = v + 0.5 * TAU * offset / offset.norm()
    elif rule.name in {"norm_bound", "adaptive_clipping"}:  # v, scaled down to norm M
        expected = v * min(1.0, MAX_NORM / float(v_norm))
    elif rule.name == "fltrust":  # v's direction at the server update's norm
        g0 = kw["server_update"]
        if float(g0 @ v) <= 0:
            g0 = g0 - 2 * (g0 @ v) / (v @ v) * v + 0.1 * v  # reflect, then tilt towards v
        kw["server_update"] = g0
        expected = v / v_norm * torch.linalg.vector_norm(g0)

    result = rule.call(x, p.f, **kw)

    torch.testing.assert_close(result.update, expected, rtol=1e-9, atol=1e-12 * scale)
    if rule.convex:
        assert result.weights is not None
        torch.testing.assert_close(result.weights.sum(), torch.tensor(1.0, dtype=x.dtype))
    if rule.name in {"krum", "multikrum"}:  # the scores tie up to rounding: ties go low
        # The Gram-matrix distances of identical rows are zero only up to the rounding of
        # the matrix product, so the selection follows the scores as computed, with exact
        # ties to the lower index.
        m = 1 if rule.name == "krum" else p.n - p.f
        scores = krum_scores(pairwise_sq_distances(x), p.f).tolist()
        chosen = sorted(range(p.n), key=lambda i: (scores[i], i))[:m]
        lowest = torch.zeros(p.n, dtype=x.dtype)
        lowest[chosen] = 1.0 / m
        assert result.weights is not None
        torch.testing.assert_close(result.weights, lowest)


@pytest.mark.parametrize("rule", COORDINATE_RULES, ids=lambda r: r.name)
@SETTINGS
@given(data=st.data(), scale=st.sampled_from([1.0, 3.0, 10.0, OUTLIER_SCALE]))
def test_coordinatewise_rules_stay_in_the_honest_range(
    rule: Rule, data: st.DataObject, scale: float
) -> None:
    if rule.name == "bulyan":
        # Bulyan averages the beta values closest to the median of Krum's selection; one
        # outlier close enough to that median may be among them and lift the average above
        # every honest value (theta = 5: 0, 10, 10 honest and 19 chosen gives 13). Its
        # guarantee is a bound, not the range; the range holds once Krum rejects outliers.
        scale = OUTLIER_SCALE
    p = data.draw(problems(rule, min_f=1))
    g = p.generator()
    honest = randn(g, p.n - p.f, p.d)
    x, _ = with_outliers(g, honest, p.f, scale)

    update = rule.call(x, p.f).update

    lo, hi = honest.min(0).values, honest.max(0).values
    slack = 1e-12 * (1 + honest.abs().max())
    assert bool((update >= lo - slack).all()), (update, lo)
    assert bool((update <= hi + slack).all()), (update, hi)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@SETTINGS
@given(data=st.data(), outliers=st.booleans())
def test_krum_returns_one_of_its_inputs(
    dtype: torch.dtype, data: st.DataObject, outliers: bool
) -> None:
    rule = BY_NAME["krum"]
    p = data.draw(problems(rule))
    g = p.generator()
    x = randn(g, p.n, p.d, dtype=dtype)
    if outliers and p.f:
        x, _ = with_outliers(g, x[: p.n - p.f], p.f, OUTLIER_SCALE)

    result = krum(x, p.f)

    chosen = [i for i in range(p.n) if torch.equal(x[i], result.update)]
    assert len(chosen) == 1, "Krum's update is not exactly one of its rows"
    one_hot = torch.zeros(p.n, dtype=dtype)
    one_hot[chosen[0]] = 1.0
    assert result.weights is not None
    assert torch.equal(result.weights, one_hot)


def _robust_bound(rule: Rule, p: Problem, honest_max: float, kw: Kwargs) -> float:
    """How far from the origin the result may be, given honest rows within honest_max."""
    n, f, d = p.n, p.f, p.d
    if rule.name in {"krum", "multikrum"}:  # a mean of honest rows only
        return honest_max
    if rule.coordinatewise:  # each coordinate within the honest range
        return math.sqrt(d) * honest_max
    if rule.name == "geometric_median":  # breakdown 1/2: ||z|| <= 2(n-f)/(n-2f) max ||h||
        return 2 * (n - f) / (n - 2 * f) * honest_max + 1e-3
    if rule.name == "centered_clipping":  # each step: honest convex pull + f tau / n
        return honest_max + ITERATIONS * f * TAU / n
    if rule.name in {"norm_bound", "adaptive_clipping"}:  # honest share + f rows of norm M
        return (n - f) / n * honest_max + f * MAX_NORM / n
    if rule.name in {"flame", "signguard"}:  # clipped to the median norm, an honest one
        return honest_max
    if rule.name == "fltrust":  # never beyond the server update's norm
        return float(torch.linalg.vector_norm(kw["server_update"]))
    raise AssertionError(f"no bound for {rule.name}")


@pytest.mark.parametrize("rule", ROBUST_RULES, ids=lambda r: r.name)
@SETTINGS
@given(data=st.data())
def test_huge_outliers_move_the_rule_little_and_the_mean_far(
    rule: Rule, data: st.DataObject
) -> None:
    p = data.draw(problems(rule, min_f=1))
    g = p.generator()
    honest = randn(g, p.n - p.f, p.d)
    x, is_outlier = with_outliers(g, honest, p.f, OUTLIER_SCALE)
    kw = _extras(rule, g, p.n, p.d, torch.float64, optional=False)
    bound = _robust_bound(rule, p, float(torch.linalg.vector_norm(honest, dim=1).max()), kw)

    result = rule.call(x, p.f, **kw)
    control = fedavg(x).update

    assert float(torch.linalg.vector_norm(result.update)) <= bound * (1 + 1e-9)
    assert float(torch.linalg.vector_norm(control)) > 100 * bound  # the mean is dragged away
    if rule.name in SELECTING:  # Krum's score leaves every outlier out of the selection
        assert result.weights is not None
        assert bool((result.weights[is_outlier] == 0).all())
        assert bool((result.weights[~is_outlier] >= 0).all())


@ids
@SETTINGS
@given(data=st.data())
def test_inputs_are_not_mutated(rule: Rule, data: st.DataObject) -> None:
    p = data.draw(problems(rule))
    g = p.generator()
    x = randn(g, p.n, p.d)
    kw = _extras(rule, g, p.n, p.d, torch.float64)
    if rule.name == "centered_clipping":
        kw["center"] = randn(g, p.d)
    x_before, kw_before = x.clone(), _clone(kw)

    rule.call(x, p.f, **kw)

    assert torch.equal(x, x_before)
    for key, value in kw.items():
        assert torch.equal(value, kw_before[key]), key


@SETTINGS
@given(p=problems(BY_NAME["krum"]), bucket_size=st.integers(1, 4))
def test_preaggregation_and_pipeline_do_not_mutate_inputs(p: Problem, bucket_size: int) -> None:
    g = p.generator()
    x = randn(g, p.n, p.d)
    w = torch.randint(1, 100, (p.n,), generator=g).to(x.dtype)
    x_before, w_before = x.clone(), w.clone()

    nearest_neighbor_mixing(x, p.f)
    bucketing(x, bucket_size, generator=torch.Generator().manual_seed(p.seed))
    pre = (nearest_neighbor_mixing, bucketing)
    available = {"num_malicious": p.f, "bucket_size": bucket_size, "weights": w}
    aggregate(x, fedavg, pre=pre, generator=torch.Generator().manual_seed(p.seed), **available)

    assert torch.equal(x, x_before)
    assert torch.equal(w, w_before)


@ids
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@SETTINGS
@given(data=st.data())
def test_update_keeps_dtype_and_device(
    rule: Rule, device: str, dtype: torch.dtype, data: st.DataObject
) -> None:
    p = data.draw(problems(rule))
    g = p.generator()
    x = randn(g, p.n, p.d, dtype=dtype).to(device)
    kw = {k: v.to(device) for k, v in _extras(rule, g, p.n, p.d, dtype).items()}

    result = rule.call(x, p.f, **kw)

    assert result.update.shape == (p.d,)
    assert result.update.dtype == dtype
    assert result.update.device == x.device
    assert bool(torch.isfinite(result.update).all())
    if result.weights is not None:
        assert result.weights.shape == (p.n,)
        assert result.weights.device == x.device


@ids
@SETTINGS
@given(data=st.data(), outliers=st.booleans())
def test_weights_are_shares(rule: Rule, data: st.DataObject, outliers: bool) -> None:
    p = data.draw(problems(rule))
    g = p.generator()
    x = randn(g, p.n, p.d)
    if outliers and p.f:
        x, _ = with_outliers(g, x[: p.n - p.f], p.f, OUTLIER_SCALE)
    kw = _extras(rule, g, p.n, p.d, torch.float64)

    result = rule.call(x, p.f, **kw)

    w = result.weights
    if w is None:
        assert not rule.convex and not rule.shares, f"{rule.name} gave no weights"
        return
    assert bool(torch.isfinite(w).all())
    assert bool((w >= 0).all())
    total = float(w.sum())
    assert total <= 1 + 1e-6
    if rule.name == "fltrust" and total == 0:  # nobody trusted: zero update, zero weights
        assert torch.equal(result.update, torch.zeros_like(result.update))
    elif rule.convex:
        assert total == pytest.approx(1.0, abs=1e-9)
    if rule.shares:  # the weights are the exact coefficients of the rows in the update
        anchor = kw.get("center", torch.zeros(p.d, dtype=x.dtype))
        expected = w @ x + (1 - w.sum()) * anchor
        scale = float(x.abs().max())
        _close(result.update, expected, BY_NAME["fedavg"], scale=scale)


PRE_STEPS = {
    "nearest_neighbor_mixing": (nearest_neighbor_mixing,),
    "bucketing": (bucketing,),
    "nnm_then_bucketing": (nearest_neighbor_mixing, bucketing),
}


def _run_pre(steps: tuple, x: torch.Tensor, available: Kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixed rows and the (m, n) mixing matrix, step by step, without the pipeline."""
    mixing = torch.eye(x.shape[0], dtype=x.dtype)
    for step in steps:
        if step is bucketing:
            mixed = bucketing(x, available["bucket_size"], generator=available["generator"])
        else:
            mixed = nearest_neighbor_mixing(x, available["num_malicious"])
        x, mixing = mixed.updates, mixed.mixing @ mixing
    return x, mixing


@pytest.mark.parametrize("steps", PRE_STEPS.values(), ids=PRE_STEPS.keys())
@pytest.mark.parametrize("rule_name", ["fedavg", "median"])
@SETTINGS
@given(p=problems(BY_NAME["median"]), bucket_size=st.integers(1, 4), counts=st.booleans())
def test_pipeline_maps_weights_back_to_clients(
    steps: tuple, rule_name: str, p: Problem, bucket_size: int, counts: bool
) -> None:
    g = p.generator()
    x = randn(g, p.n, p.d)
    available: Kwargs = {"num_malicious": p.f, "bucket_size": bucket_size}
    if counts:  # example counts, for the rules that take them
        available["weights"] = torch.randint(1, 100, (p.n,), generator=g).to(x.dtype)
    rule = fedavg if rule_name == "fedavg" else median

    result = aggregate(
        x, rule, pre=steps, generator=torch.Generator().manual_seed(p.seed), **available
    )

    # the same steps by hand, with an identically seeded shuffle
    by_hand = dict(available, generator=torch.Generator().manual_seed(p.seed))
    mixed, mixing = _run_pre(steps, x, by_hand)
    assert mixing.shape[1] == p.n
    torch.testing.assert_close(mixing.sum(1), torch.ones(mixing.shape[0], dtype=x.dtype))
    if rule_name == "median":
        expected = median(mixed)
        torch.testing.assert_close(result.update, expected.update)
        if expected.weights is None:
            assert result.weights is None
        else:
            assert result.weights is not None and result.weights.shape == (p.n,)
            torch.testing.assert_close(result.weights, expected.weights @ mixing)
        return
    assert result.weights is not None
    assert result.weights.shape == (p.n,)
    assert bool((result.weights >= 0).all())
    torch.testing.assert_close(result.weights.sum(), torch.tensor(1.0, dtype=x.dtype))
    torch.testing.assert_close(result.update, result.weights @ x)
    if counts:  # example counts follow the clients through the mixing
        mixed_counts = mixing @ available["weights"]
        torch.testing.assert_close(result.weights, (mixed_counts / mixed_counts.sum()) @ mixing)
    else:
        torch.testing.assert_close(result.update, mixed.mean(0))
