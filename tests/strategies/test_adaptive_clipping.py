"""Adaptive clipping: one round by hand, the clip's convergence to a quantile, digits, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from simulator.config import ConfigError
from simulator.main import simulate
from simulator.preflight import check_point
from strategies.adaptive_clipping import AdaptiveClipping, next_clip
from strategies.state import DefenceState
from tests.conftest import compose_config, rows_of
from tests.simulator.test_resume import interrupted

X = torch.tensor([[3.0, 4.0], [0.0, 0.5], [0.6, 0.8]])  # norms 5, 0.5, 1


def _round(rule: AdaptiveClipping, state: DefenceState, x: torch.Tensor, **kw):
    result = rule(x, state=state.stage("rule"), **kw)
    state.commit()
    return result, state.stage("rule").get("clip")


def test_one_round_by_hand() -> None:
    state = DefenceState()
    rule = AdaptiveClipping(initial_clip=1.0, target_quantile=0.5, clip_lr=0.2)
    result, clip = _round(rule, state, X)
    # C_0 = 1: factors (1/5, 1, 1); mean = ((0.6, 0.8) + (0, 0.5) + (0.6, 0.8)) / 3
    torch.testing.assert_close(result.update, torch.tensor([0.4, 0.7]))
    torch.testing.assert_close(result.weights, torch.tensor([0.2, 1.0, 1.0]) / 3)
    # norms <= 1: 0.5 and 1 (the boundary counts as unclipped): b = 2/3;
    # C_1 = 1 * exp(-0.2 (2/3 - 1/2)) = exp(-1/30)
    assert clip == pytest.approx(math.exp(-1 / 30), rel=1e-15)
    # round 2 clips to C_1 < 1: now only 0.5 is unclipped, b = 1/3
    result, clip2 = _round(rule, state, X)
    torch.testing.assert_close(result.weights[1], torch.tensor(1 / 3))
    torch.testing.assert_close(result.weights[2], torch.tensor(clip / 3, dtype=torch.float32))
    assert clip2 == pytest.approx(clip * math.exp(-0.2 * (1 / 3 - 1 / 2)), rel=1e-15)


def test_example_weighted_mean_and_unweighted_count() -> None:
    state = DefenceState()
    rule = AdaptiveClipping(initial_clip=1.0)
    result, clip = _round(rule, state, X, weights=torch.tensor([2.0, 1.0, 1.0]))
    # shares (1/2, 1/4, 1/4) times factors (1/5, 1, 1): (0.1, 0.25, 0.25);
    # update = 0.1 (3, 4) + 0.25 (0, 0.5) + 0.25 (0.6, 0.8) = (0.45, 0.725)
    torch.testing.assert_close(result.weights, torch.tensor([0.1, 0.25, 0.25]))
    torch.testing.assert_close(result.update, torch.tensor([0.45, 0.725]))
    assert clip == pytest.approx(math.exp(-1 / 30), rel=1e-15)  # b counts clients: 2/3


def test_next_clip_by_hand() -> None:
    assert next_clip(2.0, 0.5, 0.5, 0.2) == 2.0  # at the target: still
    assert next_clip(1.0, 1.0, 0.5, 0.2) == math.exp(-0.1)  # all unclipped: shrink
    assert next_clip(1.0, 0.0, 0.5, 0.2) == math.exp(0.1)  # all clipped: grow
    assert next_clip(3.0, 0.0, 0.5, 0.0) == 3.0  # eta_C = 0: a fixed clip


@pytest.mark.parametrize(
    ("initial", "quantile", "low", "high"),
    [
        (0.1, 0.5, 5.0, 6.0),  # from below to the median interval of norms 1..10
        (100.0, 0.5, 5.0, 6.0),  # from above
        (0.1, 0.9, 9.0, 10.0),
        (50.0, 0.2, 2.0, 3.0),
    ],
)
def test_clip_converges_to_the_target_quantile_of_fixed_norms(
    initial: float, quantile: float, low: float, high: float
) -> None:
    """Norms 1, 2, ..., 10 every round: b = gamma exactly when C is in [10 gamma, 10 gamma + 1),
    where the geometric update stands still; elsewhere it moves C towards that interval."""
    norms = torch.arange(1.0, 11.0, dtype=torch.float64)
    x = torch.stack([norms, torch.zeros(10, dtype=torch.float64)], dim=1)  # row i: norm i
    state = DefenceState()
    rule = AdaptiveClipping(initial_clip=initial, target_quantile=quantile)
    clips = [_round(rule, state, x)[1] for _ in range(150)]
    # from 0.1 to 5 takes ln(50) / (0.2 * 0.5) = 39 rounds; from 100 to < 6 about 29
    assert all(low <= c < high for c in clips[-50:]), clips[-5:]
    assert len(set(clips[-50:])) == 1  # settled: it stands still
    # the last round clipped exactly the rows above the clip
    result = rule(x, state=state.stage("rule"))
    clipped = (result.weights * 10 < 1 - 1e-12).tolist()
    assert clipped == (norms > clips[-1]).tolist()


def test_zero_matrix_does_not_crash_and_shrinks_the_clip() -> None:
    state = DefenceState()
    result, clip = _round(AdaptiveClipping(), state, torch.zeros(4, 2))
    assert result.update.tolist() == [0.0, 0.0]
    assert clip == pytest.approx(0.1 * math.exp(-0.2 * 0.5))  # every norm 0 <= C: b = 1


def test_inputs_are_not_mutated_and_discarded_rounds_leave_no_clip() -> None:
    x = X.clone()
    state = DefenceState()
    AdaptiveClipping()(x, state=state.stage("rule"))
    assert torch.equal(x, X)
    state.discard()
    assert state.stage("rule").get("clip") is None  # the next round starts from C_0 again


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial_clip": 0.0}, "finite initial_clip > 0, got initial_clip=0.0"),
        ({"initial_clip": -1.0}, "initial_clip=-1.0"),
        ({"initial_clip": math.inf}, "initial_clip=inf"),
        ({"initial_clip": True}, "initial_clip=True"),
        ({"target_quantile": -0.1}, "0 <= target_quantile <= 1, got target_quantile=-0.1"),
        ({"target_quantile": 1.5}, "target_quantile=1.5"),
        ({"target_quantile": math.nan}, "target_quantile=nan"),
        ({"clip_lr": -0.2}, "finite clip_lr >= 0, got clip_lr=-0.2"),
        ({"clip_lr": math.inf}, "clip_lr=inf"),
    ],
)
def test_bad_settings_are_refused_in_one_line(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match="adaptive_clipping needs") as info:
        AdaptiveClipping(**kwargs)
    assert match in str(info.value) and "\n" not in str(info.value)


def test_config_entry_is_checked() -> None:
    check_point(["strategy=adaptive_clipping"])
    with pytest.raises(ConfigError, match=r"target_quantile=2\.0"):
        check_point(["strategy=adaptive_clipping", "strategy.target_quantile=2.0"])


# ------------------------------------------------------------------------- end to end


def test_digits_run_completes_and_the_clip_grows_while_every_update_is_clipped(
    tmp_path: Path,
) -> None:
    summary = simulate(
        compose_config("num_clients=10", "num_rounds=5", "progress=false",
                       "strategy=adaptive_clipping", "strategy.initial_clip=0.5"),
        tmp_path,
    )  # fmt: skip
    assert summary["rounds"] == 5
    accuracy = [float(r["test_accuracy"]) for r in rows_of(tmp_path / "rounds.csv")]
    assert accuracy[-1] > accuracy[0] + 0.3, accuracy  # it learns
    # Digits' updates have norms about 1.5 > C: all clipped, so weight * n * norm = C_t,
    # and C_t = 0.5 exp(0.2 * 0.5 (t - 1)), growing about 10.5% a round.
    for row in rows_of(tmp_path / "clients.csv"):
        t, norm, weight = int(row["round"]), float(row["update_norm"]), float(row["weight"])
        assert norm > 0.5 * math.exp(0.1 * 4)
        assert weight * 10 * norm == pytest.approx(0.5 * math.exp(0.1 * (t - 1)), rel=1e-5)


def test_interrupted_run_resumes_with_the_clip(tmp_path: Path) -> None:
    cfg = compose_config(
        "num_clients=10", "clients_per_round=8", "num_rounds=5", "progress=false",
        "engine.cohort=never", "strategy=adaptive_clipping", "strategy.initial_clip=1.0",
        "attack=sign_flip", "malicious_fraction=0.2",
    )  # fmt: skip
    saved, resume = interrupted(cfg, tmp_path, at=4)
    clip = saved["strategy"]["defence"]["rule"]["shared"]["clip"]
    assert isinstance(clip, float) and clip != 1.0  # C_3 after 3 rounds
    resume()
