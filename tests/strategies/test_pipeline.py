"""The defence pipeline: detection -> pre-aggregation -> rule -> post-processing, with state."""

from __future__ import annotations

import functools
import io

import pytest
import torch

from strategies import CenteredClipping, bucketing, centered_clipping, fedavg, krum, median
from strategies.pipeline import Defence, aggregate
from strategies.post import ServerLearningRate
from strategies.state import DefenceState, StageState


def _updates(n: int = 6, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


class LargestNorm:
    """A toy detector: flags the ``count`` rows of largest norm."""

    name = "largest_norm"

    def __init__(self, count: int = 1) -> None:
        self.count = count

    def __call__(self, updates: torch.Tensor) -> torch.Tensor:
        flags = torch.zeros(updates.shape[0], dtype=torch.bool)
        flags[torch.linalg.vector_norm(updates, dim=1).topk(self.count).indices] = True
        return flags


# Detection ------------------------------------------------------------------------------
def test_flagged_rows_leave_the_round_and_get_weight_zero() -> None:
    x = _updates()
    x[4] *= 100  # client 14's update is the outlier
    ids = [10, 11, 12, 13, 14, 15]
    outcome = Defence(fedavg, detect=[LargestNorm()])(x, ids, server_round=1)
    assert outcome.flagged == {14: "largest_norm"}
    keep = [0, 1, 2, 3, 5]
    torch.testing.assert_close(outcome.aggregate, x[keep].mean(dim=0))
    assert outcome.weights is not None and outcome.weights[4] == 0
    torch.testing.assert_close(outcome.weights[keep], torch.full((5,), 0.2, dtype=x.dtype))


def test_detectors_run_in_order_on_what_the_one_before_left() -> None:
    x = _updates()
    x[1] *= 50
    x[3] *= 10
    outcome = Defence(median, detect=[LargestNorm(), LargestNorm()])(
        x, list(range(6)), server_round=1
    )
    assert set(outcome.flagged) == {1, 3}
    # even n: the median is the mean of the two middle values
    torch.testing.assert_close(
        outcome.aggregate, x[[0, 2, 4, 5]].sort(dim=0).values[1:3].mean(dim=0)
    )
    assert outcome.weights is None  # the median defines no shares; the flags still count


def test_detection_runs_before_mixing_and_sees_clients() -> None:
    seen: list[list[int]] = []

    def spy(updates: torch.Tensor, client_ids: list[int]) -> torch.Tensor:
        seen.append(list(client_ids))
        return torch.zeros(updates.shape[0], dtype=torch.bool)

    defence = Defence(
        fedavg,
        pre=[functools.partial(bucketing, bucket_size=2)],
        detect=[spy],
        generator=lambda kind, r: torch.Generator().manual_seed(r),
    )
    outcome = defence(_updates(), [5, 6, 7, 8, 9, 10], server_round=2)
    assert seen == [[5, 6, 7, 8, 9, 10]]
    assert outcome.step is not None


def test_a_round_where_every_update_is_flagged_keeps_the_global_model() -> None:
    flag_all = lambda updates: torch.ones(updates.shape[0], dtype=torch.bool)  # noqa: E731
    outcome = Defence(fedavg, detect=[flag_all], name="fedavg")(
        _updates(), range(6), server_round=1
    )
    assert outcome.step is None
    assert (
        outcome.note == "fedavg could not aggregate (every update was flagged): global model kept"
    )
    assert len(outcome.flagged) == 6


def test_a_detector_of_the_wrong_shape_is_a_kept_round_with_the_reason() -> None:
    outcome = Defence(fedavg, detect=[lambda u: torch.zeros(2, dtype=torch.bool)])(
        _updates(), range(6), server_round=1
    )
    assert outcome.step is None and "expected flags of shape (6,)" in outcome.reason


# Keywords -------------------------------------------------------------------------------
def test_each_stage_gets_only_the_keywords_it_names() -> None:
    calls: dict[str, dict] = {}

    def rule(updates, num_malicious, server_round, weights):
        calls["rule"] = {"f": num_malicious, "round": server_round, "w": weights.tolist()}
        return fedavg(updates, weights)

    Defence(rule, num_malicious=2, weight_by_examples=True)(
        _updates(n=3), [0, 1, 2], server_round=7, num_examples=[1, 1, 2]
    )
    assert calls["rule"] == {"f": 2, "round": 7, "w": [0.25, 0.25, 0.5]}


def test_a_run_input_is_computed_only_for_a_stage_that_names_it() -> None:
    asked: list[int] = []

    def server_update(server_round: int, global_model: torch.Tensor | None) -> torch.Tensor:
        asked.append(server_round)
        return torch.ones(4)

    inputs = {"server_update": server_update}
    Defence(fedavg, inputs=inputs)(_updates(), range(6), server_round=1)
    assert asked == []

    def uses_it(updates: torch.Tensor, server_update: torch.Tensor):
        return fedavg(updates + 0 * server_update)

    Defence(uses_it, inputs=inputs)(_updates(), range(6), server_round=3)
    assert asked == [3]


def test_a_stage_that_needs_what_the_run_cannot_give_is_refused_at_build() -> None:
    def needs_root(updates: torch.Tensor, server_update: torch.Tensor):
        return fedavg(updates)

    with pytest.raises(ValueError, match="needs_root needs server_update, which this run does not"):
        Defence(needs_root)


def test_without_stages_around_it_the_defence_is_the_rule_then_the_server_lr() -> None:
    x = _updates(n=7)
    rule = functools.partial(krum)
    outcome = Defence(rule, post=[ServerLearningRate(0.5)], num_malicious=2)(
        x, range(7), server_round=1
    )
    expected = aggregate(x, rule, num_malicious=2)
    torch.testing.assert_close(outcome.aggregate, expected.update)
    torch.testing.assert_close(outcome.step, 0.5 * expected.update)
    torch.testing.assert_close(outcome.weights, expected.weights)


def test_a_non_finite_aggregate_keeps_the_global_model() -> None:
    x = _updates()
    x[0, 0] = float("inf")
    outcome = Defence(fedavg)(x, range(6), server_round=1)
    assert outcome.step is None
    assert outcome.note == "aggregate has non-finite values: global model kept"


# State ----------------------------------------------------------------------------------
def test_centered_clipping_keeps_its_centre_in_the_state_across_rounds() -> None:
    stage = CenteredClipping(tau=0.5, iterations=2)
    defence = Defence(stage)
    first, second = _updates(seed=1), _updates(seed=2)
    one = defence(first, range(6), server_round=1)
    assert torch.equal(defence.state.stage("rule").get("center"), one.aggregate)
    two = defence(second, range(6), server_round=2)
    expected = centered_clipping(second, tau=0.5, iterations=2, center=one.aggregate)
    torch.testing.assert_close(two.aggregate, expected.update)


def test_a_kept_round_leaves_no_trace_in_the_state() -> None:
    defence = Defence(CenteredClipping(tau=0.5))
    defence(_updates(seed=1), range(6), server_round=1)
    before = defence.state.state_dict()
    bad = _updates(seed=2)
    bad[2] = float("nan")  # the clipped mean becomes NaN: the round keeps the global model
    assert defence(bad, range(6), server_round=2).step is None
    after = defence.state.state_dict()
    assert torch.equal(after["rule"]["shared"]["center"], before["rule"]["shared"]["center"])


def test_state_round_trips_through_a_weights_only_checkpoint() -> None:
    state = DefenceState()
    stage = state.stage("rule")
    stage.set("center", torch.arange(3.0))
    stage.set("threshold", 0.5)
    stage.set_client(7, "history", torch.ones(2))
    stage.set_client(3, "seen", [1, 2])
    assert stage.get("threshold") == 0.5 and stage.get_client(7, "history") is not None
    state.commit()
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    buffer.seek(0)
    restored = DefenceState()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    view = restored.stage("rule")
    assert torch.equal(view.get("center"), torch.arange(3.0))
    assert view.get("threshold") == 0.5
    assert torch.equal(view.get_client(7, "history"), torch.ones(2))
    assert list(view.clients()) == [3, 7]


def test_pending_writes_are_seen_by_their_stage_and_dropped_on_discard() -> None:
    state = DefenceState()
    stage = state.stage("detect.0")
    stage.set("window", [1])
    assert stage.get("window") == [1]
    state.discard()
    assert stage.get("window") is None and not state
    stage.set_client(1, "score", 0.3)
    state.commit()
    assert stage.get_client(1, "score") == 0.3 and bool(state)


@pytest.mark.parametrize("value", [object(), {1.5: 2}, [torch.ones(1), {"a": set()}]])
def test_state_holds_tensors_and_plain_containers_only(value: object) -> None:
    with pytest.raises(TypeError, match=r"defence state|dict keys"):
        StageState({}, {}).set("x", value)
