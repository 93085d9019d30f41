"""Edge cases of the second-wave defences where rounding used to decide the answer."""

from __future__ import annotations

import torch

from strategies.clipping import norm_bound
from strategies.flame import FlameDetector, cosine_distances
from strategies.fldetector import FLDetector, gap_statistic
from strategies.foolsgold import cosine_matrix, foolsgold
from strategies.mean import fedavg
from strategies.pipeline import Defence
from strategies.post import ServerLearningRate
from strategies.signguard import SignGuardDetector


def test_signguard_flags_no_honest_client_when_only_two_or_three_reply() -> None:
    """With n <= 3 the bandwidth estimate is a row's distance to itself: rounding, not
    a scale; the sign filter must then put everyone in one cluster (no flag, no error)."""
    detector = SignGuardDetector()
    for n in (2, 3):
        for seed in range(40):
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(n, 500, generator=g, dtype=torch.float64)
            flags = detector(x, generator=torch.Generator().manual_seed(seed))
            assert not bool(flags.any()), (n, seed)


def test_flame_puts_identical_rows_at_distance_zero_and_flags_them_alike() -> None:
    g = torch.Generator().manual_seed(0)
    sybil = torch.randn(100_000, generator=g, dtype=torch.float64)
    x = torch.cat([sybil.expand(6, -1), torch.randn(1, 100_000, generator=g).double()])
    distances = cosine_distances(x)
    assert bool((distances[:6, :6] == 0).all())
    flags = FlameDetector()(x)
    assert len(set(flags[:6].tolist())) == 1  # the six identical rows share one verdict
    assert flags.tolist() == [False] * 6 + [True]


def test_gap_statistic_sees_one_cluster_in_rounding_noise() -> None:
    # ten suspicions about 0.1, apart only by float32 rounding (relative 1e-6)
    values = 0.1 + 1e-7 * torch.randn(10, generator=torch.Generator().manual_seed(0))
    assert gap_statistic(values.double(), generator=torch.Generator().manual_seed(0)) == 1
    # values far apart are more than one cluster
    spread = torch.tensor([0.1] * 8 + [0.3, 0.31], dtype=torch.float64)
    assert gap_statistic(spread, generator=torch.Generator().manual_seed(0)) > 1


def test_fldetector_takes_the_aggregate_as_the_global_update() -> None:
    """Pairs are (model move, aggregate change): the server learning rate and noise added
    after the rule stay out of the global update."""
    detector = FLDetector(window=2)
    defence = Defence(fedavg, detect=(detector,), post=(ServerLearningRate(0.5),))
    model = torch.zeros(4, dtype=torch.float64)
    updates = [torch.full((3, 4), v, dtype=torch.float64) for v in (1.0, 2.0, 4.0)]
    for r, x in enumerate(updates, start=1):
        outcome = defence(x, [0, 1, 2], server_round=r, global_model=model)
        model = model + outcome.step
    state = defence.state.stage("detect.0")
    # round 3 saw the aggregate of round 2 (2.0) as g, and the model's move 0.5 * 2.0
    assert torch.equal(state.get("g"), torch.full((4,), 2.0))
    assert torch.equal(state.get("step"), torch.full((4,), 1.0))
    # the pair of round 2: model move 0.5 * 1.0, aggregate change 2.0 - 1.0
    assert torch.equal(state.get("s"), torch.full((1, 4), 0.5))
    assert torch.equal(state.get("y"), torch.full((1, 4), 1.0))


def test_weak_dp_noise_is_the_same_draw_in_float32_and_float64() -> None:
    x = torch.randn(5, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    wide = norm_bound(x, 1.0, noise_std=0.025, generator=torch.Generator().manual_seed(3))
    narrow = norm_bound(x.float(), 1.0, noise_std=0.025, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(narrow.update, wide.update.float(), rtol=1e-5, atol=1e-6)


def test_foolsgold_stays_finite_for_huge_rows() -> None:
    x = torch.randn(5, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0] *= 1e200  # a Gram of the raw rows would overflow to inf and make alpha NaN
    assert bool(torch.isfinite(cosine_matrix(x)).all())
    result = foolsgold(x)
    assert bool(torch.isfinite(result.weights).all())
    # the cosines are those of the rows at a moderate scale (row 0 back by 1e200)
    moderate = x.clone()
    moderate[0] /= 1e200
    unit = moderate / torch.linalg.vector_norm(moderate, dim=1, keepdim=True)
    torch.testing.assert_close(cosine_matrix(x), (unit @ unit.T).clamp(-1, 1))


def test_the_aggregate_is_kept_only_for_a_stage_that_asks() -> None:
    x = torch.ones(3, 2)
    plain = Defence(fedavg)
    plain(x, [0, 1, 2], server_round=1)
    assert not plain.state  # nothing kept: no stage asked for previous_aggregate
    asking = Defence(fedavg, detect=(FLDetector(window=1),))
    asking(x, [0, 1, 2], server_round=1, global_model=torch.zeros(2))
    kept = asking.state.stage("pipeline").get("aggregate")
    assert torch.equal(kept, torch.ones(2))
