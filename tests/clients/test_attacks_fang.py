"""Fang et al. (USENIX Security 2020) attacks on Krum and on trimmed mean / median.

The Theorem-1 bound, the halving sequence and Krum's choice are checked against independent
loop-based numpy references (not against ``strategies.krum``); the trimmed-mean intervals
against a per-coordinate loop over REFERENCES.md's four cases. Effect checks apply Oleander's
own ``strategies.krum.krum``, ``strategies.coordinate.trimmed_mean`` and ``median`` to benign +
crafted updates.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from clients.attacks.fang import (
    fang_krum,
    fang_krum_lambda_bound,
    fang_krum_search,
    fang_trimmed_mean,
    fang_trimmed_mean_intervals,
)
from strategies.base import Aggregate
from strategies.coordinate import median, trimmed_mean
from strategies.krum import krum


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spread_benign(k: int = 20, d: int = 100, *, centre: float = 0.05, noise: float = 0.1):
    """k updates = a common vector + Gaussian noise (float64)."""
    g = gen(1234)
    common = centre * torch.sign(torch.randn(d, generator=g, dtype=torch.float64))
    return common + noise * torch.randn(k, d, generator=g, dtype=torch.float64)


# --------------------------------------------------------------------------- references


def loop_lambda_bound(known: np.ndarray, f: int, n: int) -> float:
    """Theorem 1, one update at a time: neighbours counted among the known updates."""
    k, d = known.shape
    q = min(n - f - 2, k - 1)
    sums = []
    for i in range(k):
        dists = sorted(float(np.sum((known[i] - known[j]) ** 2)) for j in range(k) if j != i)
        sums.append(sum(dists[:q]))
    max_norm = max(math.sqrt(float(np.sum(row**2))) for row in known)
    return math.sqrt(min(sums) / ((n - 2 * f - 1) * d)) + max_norm / math.sqrt(d)


def loop_krum_index(rows: np.ndarray, f: int) -> int:
    """Blanchard's Krum: lowest sum of squared distances to the n - f - 2 nearest others."""
    n = rows.shape[0]
    best, best_score = -1, math.inf
    for i in range(n):
        dists = sorted(float(np.sum((rows[i] - rows[j]) ** 2)) for j in range(n) if j != i)
        score = sum(dists[: n - f - 2])
        if score < best_score:  # strict: ties go to the lower index
            best, best_score = i, score
    return best


def loop_interval(column: np.ndarray, b: float) -> tuple[float, float]:
    """REFERENCES.md's full-knowledge interval for one coordinate."""
    s = np.sign(column.mean())
    hi, lo = column.max(), column.min()
    if s < 0:
        return (hi, b * hi) if hi > 0 else (hi, hi / b)
    return (lo / b, lo) if lo > 0 else (b * lo, lo)


# --------------------------------------------------------------------------- Krum attack


def test_krum_selects_the_crafted_update_first_success_of_the_halving_sequence() -> None:
    benign = spread_benign()  # 20 benign updates around a common vector
    k, d = benign.shape
    f, n, eps = 4, 24, 0.01
    result = fang_krum_search(benign, f, n, generator=gen(7))
    crafted = result.updates
    assert crafted.shape == (f, d)

    # Oleander's Krum over benign + crafted picks a crafted row
    chosen = krum(torch.cat([benign, crafted]), num_malicious=f)
    assert result.selected
    assert int(chosen.weights.argmax()) >= k
    assert any(torch.equal(chosen.update, row) for row in crafted)

    # the main update is -lambda * s, s = sign of the benign mean
    s = torch.sign(benign.mean(dim=0))
    torch.testing.assert_close(crafted[0], -result.lam * s, rtol=0, atol=0)
    # the supporters are within epsilon of it, and not copies of it
    dist = (crafted[1:] - crafted[0]).norm(dim=1)
    assert bool((dist <= eps * (1 + 1e-9)).all()) and bool((dist > 0).all())

    # lambda starts at Theorem 1's bound and halves
    assert result.lam_init == pytest.approx(loop_lambda_bound(benign.numpy(), f, n), rel=1e-10)
    assert result.lam == result.lam_init / 2 ** (result.num_tried - 1)
    assert result.num_tried > 1  # the search really halved here

    # the reported lambda is the first of lam_init / 2^t that the (loop) Krum selects
    noise = (crafted[1:] - crafted[0]).numpy()
    sn, bn = s.numpy(), benign.numpy()
    for t in range(result.num_tried):
        lam = result.lam_init / 2**t
        w1 = -lam * sn
        rows = np.vstack([bn, w1[None, :], w1[None, :] + noise])
        selected = loop_krum_index(rows, f) >= k
        assert selected == (t == result.num_tried - 1), t


def test_krum_search_falls_back_to_the_smallest_lambda_at_or_above_threshold() -> None:
    # tight around a mean far from zero: no lambda wins Krum's selection
    benign = spread_benign(centre=0.5, noise=0.01)
    f, n = 4, 24
    result = fang_krum_search(benign, f, n, generator=gen(0), threshold=1e-5)
    assert not result.selected
    assert result.lam >= 1e-5 > result.lam / 2
    assert result.lam == result.lam_init / 2 ** (result.num_tried - 1)
    s = torch.sign(benign.mean(dim=0))
    torch.testing.assert_close(result.updates[0], -result.lam * s, rtol=0, atol=0)
    chosen = krum(torch.cat([benign, result.updates]), num_malicious=f)
    assert int(chosen.weights.argmax()) < benign.shape[0]


def test_krum_search_tries_once_when_the_bound_is_below_threshold() -> None:
    benign = torch.zeros(8, 5)
    result = fang_krum_search(benign, 2, 10, epsilon=0.0)
    assert result.num_tried == 1 and result.lam == result.lam_init == 0.0
    assert torch.equal(result.updates, torch.zeros(2, 5))


@pytest.mark.parametrize(("k", "f", "n"), [(20, 4, 24), (30, 7, 37), (6, 6, 20), (2, 2, 9)])
def test_lambda_bound_matches_a_loop(k: int, f: int, n: int) -> None:
    known = torch.randn(k, 17, generator=gen(k + f), dtype=torch.float64) * 0.3 + 0.1
    bound = fang_krum_lambda_bound(known, f, n)
    assert bound == pytest.approx(loop_lambda_bound(known.numpy(), f, n), rel=1e-10)


def test_krum_partial_knowledge_uses_only_the_own_updates() -> None:
    f, n, d = 6, 30, 40
    own = spread_benign(k=f, d=d, centre=0.05, noise=0.1)
    a = fang_krum_search(
        torch.randn(n - f, d, dtype=torch.float64),
        f,
        n,
        own=own,
        knowledge="partial",
        generator=gen(3),
    )
    b = fang_krum_search(
        torch.randn(3, d, dtype=torch.float64), f, n, own=own, knowledge="partial", generator=gen(3)
    )
    assert torch.equal(a.updates, b.updates) and a.lam == b.lam
    # s and the bound come from the own updates; the first search (one copy of w1 among
    # the f own updates: the paper's Equation 4) starts at Theorem 1's bound for the
    # simulated Krum on f + 1 rows, told (f + 1 - 3) // 2
    told = (f + 1 - 3) // 2
    assert a.lam_init == pytest.approx(loop_lambda_bound(own.numpy(), told, f + 1), rel=1e-10)
    torch.testing.assert_close(a.updates[0], -a.lam * torch.sign(own.mean(dim=0)), rtol=0, atol=0)
    # own=None: partial knowledge uses `benign` as the own updates
    c = fang_krum_search(own, f, n, knowledge="partial", generator=gen(3))
    assert torch.equal(a.updates, c.updates)
    # some number m of copies of w1 among the own updates makes the simulated Krum pick it
    w1 = a.updates[0]
    picked = [
        int(
            krum(
                torch.cat([own, w1.expand(m, -1)]), num_malicious=(f + m - 3) // 2
            ).weights.argmax()
        )
        >= f
        for m in range(1, f + 1)
    ]
    assert a.selected and any(picked)


def test_krum_partial_knowledge_adds_copies_of_w1_until_selected() -> None:
    own = spread_benign(k=5, d=12)
    f, k = 4, 5

    def needs_three_copies(rows: torch.Tensor) -> Aggregate:
        return Aggregate(update=rows[-1 if rows.shape[0] >= k + 3 else 0].clone())

    r = fang_krum_search(
        own, f, 20, knowledge="partial", aggregator=needs_three_copies, threshold=1e-3,
        generator=gen(0),
    )  # fmt: skip
    assert r.selected
    # m = 1 and m = 2 found nothing; m = 3 is selected at its first lambda, its own bound
    assert r.lam == pytest.approx(fang_krum_lambda_bound(own, (k + 3 - 3) // 2, k + 3))
    first = fang_krum_lambda_bound(own, (k + 1 - 3) // 2, k + 1)
    assert r.lam_init == pytest.approx(first)
    halvings = lambda lam: math.floor(math.log2(lam / 1e-3)) + 1  # noqa: E731
    second = fang_krum_lambda_bound(own, (k + 2 - 3) // 2, k + 2)
    assert r.num_tried == halvings(first) + halvings(second) + 1


def test_krum_aggregator_keyword_defines_the_check() -> None:
    benign = spread_benign(k=10, d=12)
    last_row = lambda rows: Aggregate(update=rows[-1].clone())  # noqa: E731 -- no weights
    never = lambda rows: Aggregate(update=rows[0].clone())  # noqa: E731
    r1 = fang_krum_search(benign, 3, 13, aggregator=last_row, generator=gen(0))
    assert r1.selected and r1.num_tried == 1 and r1.lam == r1.lam_init
    r2 = fang_krum_search(benign, 3, 13, aggregator=never, generator=gen(0), threshold=1e-3)
    assert not r2.selected and r2.lam >= 1e-3 > r2.lam / 2
    r3 = fang_krum_search(
        benign, 3, 13, aggregator=functools.partial(krum, num_malicious=3), generator=gen(0)
    )
    r4 = fang_krum_search(benign, 3, 13, generator=gen(0))
    assert torch.equal(r3.updates, r4.updates)


def test_krum_epsilon_and_generator() -> None:
    benign = spread_benign(k=12, d=9)
    same = fang_krum(benign, 3, 15, epsilon=0.0)  # no draws, no generator needed
    assert torch.equal(same[1], same[0]) and torch.equal(same[2], same[0])
    one = fang_krum(benign, 1, 13)  # a single attacker draws nothing either
    assert one.shape == (1, 9)
    with pytest.raises(ValueError, match="generator"):
        fang_krum(benign, 3, 15)
    x = fang_krum(benign, 3, 15, generator=gen(5), epsilon=0.5)
    y = fang_krum(benign, 3, 15, generator=gen(5), epsilon=0.5)
    z = fang_krum(benign, 3, 15, generator=gen(6), epsilon=0.5)
    assert torch.equal(x, y) and not torch.equal(x, z)
    assert bool(((x[1:] - x[0]).norm(dim=1) <= 0.5 * (1 + 1e-9)).all())


# --------------------------------------------------------------------------- trimmed mean


def four_case_benign(k: int = 15, d: int = 400) -> torch.Tensor:
    """Coordinates covering every branch: s<0 with max>0 / max<=0, s>=0 with min>0 / min<=0."""
    g = gen(99)
    offsets = torch.tensor([-0.2, -5.0, 5.0, 0.2], dtype=torch.float64).repeat(d // 4)
    return offsets + torch.randn(k, d, generator=g, dtype=torch.float64)


def test_trimmed_mean_values_lie_in_their_intervals_opposite_to_s() -> None:
    benign = four_case_benign()
    k, d = benign.shape
    f, n, b = 5, k + 5, 2.0
    crafted = fang_trimmed_mean(benign, f, n, generator=gen(11))
    assert crafted.shape == (f, d) and crafted.dtype == torch.float64
    bn, cn = benign.numpy(), crafted.numpy()
    cases = set()
    for j in range(d):
        lo, hi = loop_interval(bn[:, j], b)
        assert bool(np.all((cn[:, j] >= lo) & (cn[:, j] <= hi))), j
        s = np.sign(bn[:, j].mean())
        if s < 0:  # against s: at or above every benign value
            assert bool(np.all(cn[:, j] >= bn[:, j].max())), j
            cases.add(("s<0", bn[:, j].max() > 0))
        else:
            assert bool(np.all(cn[:, j] <= bn[:, j].min())), j
            cases.add(("s>=0", bn[:, j].min() > 0))
    assert len(cases) == 4  # every branch of REFERENCES.md was exercised
    # the intervals are drawn from, not collapsed: values spread over them
    low, high = fang_trimmed_mean_intervals(benign, f, n)
    position = ((crafted - low) / (high - low)).flatten()
    assert 0.4 < float(position.mean()) < 0.6 and float(position.std()) > 0.2


def test_trimmed_mean_is_deterministic_for_a_seeded_generator() -> None:
    benign = four_case_benign(d=40)
    a = fang_trimmed_mean(benign, 4, 19, generator=gen(1))
    b = fang_trimmed_mean(benign, 4, 19, generator=gen(1))
    c = fang_trimmed_mean(benign, 4, 19, generator=gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a}) == 4  # independent draws per attacker


def test_trimmed_mean_partial_knowledge_intervals() -> None:
    f, d = 6, 300
    own = four_case_benign(k=f, d=d)
    crafted = fang_trimmed_mean(
        torch.zeros(2, d, dtype=torch.float64),
        f,
        30,
        own=own,
        knowledge="partial",
        generator=gen(4),
    )
    o, cn = own.numpy(), crafted.numpy()
    mu, sigma = o.mean(axis=0), o.std(axis=0, ddof=1)
    for j in range(d):
        if np.sign(mu[j]) < 0:
            lo, hi = mu[j] + 3 * sigma[j], mu[j] + 4 * sigma[j]
        else:
            lo, hi = mu[j] - 4 * sigma[j], mu[j] - 3 * sigma[j]
        assert bool(np.all((cn[:, j] >= lo - 1e-12) & (cn[:, j] <= hi + 1e-12))), j
    # own=None: the partial-knowledge statistics come from `benign`
    again = fang_trimmed_mean(own, f, 30, knowledge="partial", generator=gen(4))
    assert torch.equal(crafted, again)


@pytest.mark.parametrize("knowledge", ["full", "partial"])
def test_trimmed_mean_and_median_move_against_s(knowledge: str) -> None:
    k, f, d = 20, 5, 300
    n = k + f
    g = gen(21)
    # a common direction that 5 own updates estimate well (|centre_j| = 1 = the noise scale)
    centre = torch.sign(torch.randn(d, generator=g, dtype=torch.float64))
    benign = centre + torch.randn(k, d, generator=g, dtype=torch.float64)
    own = centre + torch.randn(f, d, generator=g, dtype=torch.float64)
    crafted = fang_trimmed_mean(benign, f, n, own=own, knowledge=knowledge, generator=gen(5))
    attacked = torch.cat([benign, crafted])
    s = torch.sign(benign.mean(dim=0))
    beta = f / n  # trim k = f per side, as the Fang and FLTrust papers
    for rule in (functools.partial(trimmed_mean, beta=beta), median):
        shift = (rule(attacked).update - rule(benign).update) * s
        assert float((shift < 0).double().mean()) > 0.9
        # the control: the same number of extra honest updates does not move it that way
        honest_shift = (rule(torch.cat([benign, own])).update - rule(benign).update) * s
        assert float((honest_shift < 0).double().mean()) < 0.7


# --------------------------------------------------------------------------- contract


ATTACKS = {
    "krum": functools.partial(fang_krum, generator=gen(0)),
    "trimmed_mean": functools.partial(fang_trimmed_mean, generator=gen(0)),
    "median": functools.partial(fang_trimmed_mean, generator=gen(0)),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("knowledge", ["full", "partial"])
def test_shape_dtype_device_and_inputs_unchanged(name: str, dtype, knowledge: str) -> None:
    f, k, d = 4, 16, 11
    benign = (torch.randn(k, d, generator=gen(2)) * 0.1 + 0.02).to(dtype)
    own = (torch.randn(f, d, generator=gen(3)) * 0.1).to(dtype)
    before = (benign.clone(), own.clone())
    out = ATTACKS[name](benign, f, k + f, own=own, knowledge=knowledge)
    assert out.shape == (f, d) and out.dtype == dtype and out.device == benign.device
    assert bool(torch.isfinite(out).all())
    assert torch.equal(benign, before[0]) and torch.equal(own, before[1])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_no_malicious_clients_gives_an_empty_matrix(name: str) -> None:
    benign = torch.randn(9, 5)
    out = ATTACKS[name](benign, 0, 9)
    assert out.shape == (0, 5) and out.dtype == benign.dtype


BAD_CALLS = [
    (lambda: fang_krum([[1.0]], 1, 2), "benign must be a torch.Tensor"),
    (lambda: fang_krum(torch.ones(3), 1, 4), r"benign must have shape \(k, d\)"),
    (lambda: fang_krum(torch.ones(3, 2, dtype=torch.int64), 1, 4), "floating"),
    (lambda: fang_krum(torch.tensor([[math.nan, 1.0]]), 1, 2), "finite"),
    (lambda: fang_krum(torch.ones(6, 2), -1, 5), "num_malicious must be an integer >= 0"),
    (lambda: fang_krum(torch.ones(6, 2), True, 7), "num_malicious must be an integer >= 0"),
    (lambda: fang_krum(torch.ones(6, 2), 1, 7.0), "num_clients must be an integer"),
    (lambda: fang_krum(torch.ones(6, 2), 5, 4), "num_malicious must be <= num_clients"),
    (lambda: fang_krum(torch.ones(6, 2), 1, 9), r"all n - f = 8 benign updates, got .* 6 rows"),
    (lambda: fang_krum(torch.ones(6, 2), 1, 7, knowledge="some"), "knowledge must be one of"),
    (lambda: fang_krum(torch.ones(6, 2), 2, 8, own=torch.ones(3, 2)), r"own must have shape"),
    (lambda: fang_krum(torch.ones(6, 2), 1, 7, epsilon=-1.0), "epsilon must be >= 0, got -1.0"),
    (lambda: fang_krum(torch.ones(6, 2), 1, 7, threshold=0.0), "threshold must be > 0, got 0.0"),
    (lambda: fang_krum(torch.ones(6, 2), 1, 7, aggregator=3), "aggregator must be callable"),
    (lambda: fang_krum(torch.ones(4, 2), 3, 7, epsilon=0.0), r"needs n > 2f \+ 1, got n=7"),
    (lambda: fang_krum(torch.ones(5, 2), 3, 8, epsilon=0.0), r"krum needs n > 2f \+ 2"),
    (
        lambda: fang_krum(torch.ones(1, 2), 1, 9, knowledge="partial"),
        r"simulates Krum on 2 rows \(f=1\)",
    ),
    (lambda: fang_trimmed_mean(torch.ones(6, 2), 1, 7), "needs generator=torch.Generator"),
    (lambda: fang_trimmed_mean(torch.ones(6, 2), 0, 6), "needs generator=torch.Generator"),
    (lambda: fang_trimmed_mean(torch.ones(6, 2), 1, 7, b=0.5, generator=gen(0)), "b must be"),
    (
        lambda: fang_trimmed_mean(torch.ones(1, 2), 1, 9, knowledge="partial", generator=gen(0)),
        ">= 2 known updates for sigma, got 1",
    ),
]


@pytest.mark.parametrize(("call", "message"), BAD_CALLS)
def test_value_errors_name_the_values(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
