"""The Flower adapter: array layouts, seeded sampling, and OleanderStrategy's aggregation.

``OleanderStrategy.aggregate_train`` is driven directly with hand-built reply Messages (no
Grid); every expected global model is computed independently here with numpy in float64.
"""

from __future__ import annotations

import random
from typing import ClassVar

import numpy as np
import pytest
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import ErrorCode
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from simulator.arrays import ArrayLayout
from simulator.results import RoundReport
from simulator.strategy import OleanderStrategy, sample_clients
from strategies import fedavg
from strategies.pipeline import Defence
from strategies.post import ServerLearningRate

# Node ids deliberately out of step with client ids: sorting by node id would give the
# client order 3, 0, 2, 1, so a strategy that ordered rows by node id gets caught.
NODE_TO_CLIENT = {55: 3, 311: 0, 907: 2, 1200: 1}
CLIENT_TO_NODE = {c: n for n, c in NODE_TO_CLIENT.items()}


pytestmark = pytest.mark.usefixtures("flower_task_identity")


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def model_with_buffers(seed: int = 0) -> nn.Module:
    """Float parameters plus BatchNorm's running stats and its int64 step counter."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model.train()
    model(torch.randn(8, 4))  # move the running stats and num_batches_tracked off defaults
    return model


def as_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: record[k].numpy() for k in record}


def make_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def flat64(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in arrays.values()])


class Observer:
    def __init__(self) -> None:
        self.started: list[int] = []
        self.reports: list[RoundReport] = []

    def on_round_start(self, server_round: int) -> None:
        self.started.append(server_round)

    def on_aggregated(self, report: RoundReport) -> None:
        self.reports.append(report)


def make_strategy(
    *,
    weight_by_examples: bool = True,
    server_lr: float = 1.0,
    observer: Observer | None = None,
    node_to_client: dict[int, int] | None = None,
    clients_per_round: int | None = None,
) -> OleanderStrategy:
    mapping = NODE_TO_CLIENT if node_to_client is None else node_to_client
    defence = Defence(
        fedavg, post=[ServerLearningRate(server_lr)], weight_by_examples=weight_by_examples
    )
    return OleanderStrategy(
        defence,
        node_to_client=mapping,
        clients_per_round=len(mapping) if clients_per_round is None else clients_per_round,
        seed=0,
        observer=observer,
    )


def reply(instruction: Message, arrays: dict[str, np.ndarray], n: int, loss: float) -> Message:
    content = RecordDict(
        {
            "arrays": make_record(arrays),
            "metrics": MetricRecord({"num-examples": n, "train_loss": loss}),
        }
    )
    return Message(content, reply_to=instruction)


def error_reply(instruction: Message, reason: str = "boom") -> Message:
    return Message(
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=instruction
    )


class Round:
    """One configured round: the global arrays, the instructions, and client updates."""

    # Distinct example counts so the weighted and plain means differ.
    COUNTS: ClassVar[dict[int, int]] = {0: 10, 1: 30, 2: 5, 3: 55}
    LOSSES: ClassVar[dict[int, float]] = {0: 0.5, 1: 1.5, 2: 2.0, 3: 0.25}

    def __init__(self, strategy: OleanderStrategy, seed: int = 1) -> None:
        self.strategy = strategy
        self.global_arrays = as_numpy(ArrayRecord(small_model().state_dict()))
        self.instructions = list(
            strategy.configure_train(1, make_record(self.global_arrays), ConfigRecord(), None)
        )
        rng = np.random.default_rng(seed)
        self.client_arrays: dict[int, dict[str, np.ndarray]] = {}
        for client in NODE_TO_CLIENT.values():
            self.client_arrays[client] = {
                k: (v + rng.normal(0, 0.1, v.shape)).astype(v.dtype)
                for k, v in self.global_arrays.items()
            }

    def instruction(self, client: int) -> Message:
        (message,) = [
            m for m in self.instructions if m.metadata.dst_node_id == CLIENT_TO_NODE[client]
        ]
        return message

    def reply(self, client: int, **overrides: object) -> Message:
        arrays = overrides.get("arrays", self.client_arrays[client])
        return reply(
            self.instruction(client),
            arrays,  # type: ignore[arg-type]
            overrides.get("n", self.COUNTS[client]),  # type: ignore[arg-type]
            overrides.get("loss", self.LOSSES[client]),  # type: ignore[arg-type]
        )

    def update(self, client: int) -> np.ndarray:
        """The client's update in float64, computed from the arrays it sent."""
        return flat64(self.client_arrays[client]) - flat64(self.global_arrays)

    def expected(self, clients: list[int], weighted: bool, server_lr: float = 1.0) -> np.ndarray:
        updates = np.stack([self.update(c) for c in clients])  # shape: (n, d)
        weights = [self.COUNTS[c] for c in clients] if weighted else None
        return flat64(self.global_arrays) + server_lr * np.average(updates, axis=0, weights=weights)


# ArrayLayout -----------------------------------------------------------------------


@pytest.mark.parametrize("factory", [small_model, model_with_buffers])
def test_layout_round_trip_keeps_keys_dtypes_shapes_and_values(factory) -> None:
    state = factory().state_dict()
    record = ArrayRecord(state)
    layout = ArrayLayout.of(record)
    assert layout.keys == tuple(state)
    assert layout.size == sum(t.numel() for t in state.values())

    vector = layout.flatten(record)
    assert vector.shape == (layout.size,)
    assert vector.dtype == torch.float32

    rebuilt = layout.unflatten(vector)
    assert list(rebuilt.keys()) == list(state)
    for key, tensor in state.items():
        got = rebuilt[key].numpy()
        want = tensor.numpy()
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_layout_flatten_is_layout_order_concatenation() -> None:
    arrays = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array([7.0, 8.0])}
    layout = ArrayLayout.of(make_record(arrays))
    np.testing.assert_array_equal(
        layout.flatten(make_record(arrays)).numpy(), [0, 1, 2, 3, 4, 5, 7, 8]
    )
    # unflatten casts each array back to its own dtype (float64 for "a")
    rebuilt = layout.unflatten(torch.tensor([0, 1, 2, 3, 4, 5, 7, 8.0]))
    assert rebuilt["a"].numpy().dtype == np.float64
    assert rebuilt["b"].numpy().dtype == np.float32


def test_layout_rejects_missing_key_naming_it() -> None:
    arrays = as_numpy(ArrayRecord(small_model().state_dict()))
    layout = ArrayLayout.of(make_record(arrays))
    del arrays["2.bias"]
    with pytest.raises(ValueError, match=r"2\.bias"):
        layout.flatten(make_record(arrays))


def test_layout_rejects_extra_key_naming_it() -> None:
    arrays = as_numpy(ArrayRecord(small_model().state_dict()))
    layout = ArrayLayout.of(make_record(arrays))
    arrays["backdoor.weight"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"backdoor\.weight"):
        layout.flatten(make_record(arrays))


def test_layout_rejects_misshaped_array_naming_it() -> None:
    arrays = as_numpy(ArrayRecord(small_model().state_dict()))
    layout = ArrayLayout.of(make_record(arrays))
    # same number of values, different shape: only a shape check can catch it
    arrays["0.weight"] = arrays["0.weight"].reshape(4, 3)
    with pytest.raises(ValueError, match=r"0\.weight"):
        layout.flatten(make_record(arrays))


# sample_clients --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    server_round=st.integers(1, 500),
    num_clients=st.integers(1, 60),
    per_round=st.integers(1, 80),
)
def test_sample_clients_is_sorted_distinct_in_range_and_deterministic(
    seed: int, server_round: int, num_clients: int, per_round: int
) -> None:
    drawn = sample_clients(seed, server_round, num_clients, per_round)
    assert drawn == sample_clients(seed, server_round, num_clients, per_round)
    assert drawn == sorted(set(drawn))
    assert all(0 <= c < num_clients for c in drawn)
    assert len(drawn) == min(per_round, num_clients)
    if per_round >= num_clients:
        assert drawn == list(range(num_clients))


def test_sample_clients_changes_across_rounds_and_seeds() -> None:
    by_round = {tuple(sample_clients(0, r, 20, 5)) for r in range(1, 11)}
    assert len(by_round) > 1
    by_seed = {tuple(sample_clients(s, 1, 20, 5)) for s in range(10)}
    assert len(by_seed) > 1


def test_sample_clients_is_roughly_uniform() -> None:
    # 2,000 rounds x 3 of 10: each client expected 600 times, sd ~ 20.5
    counts = np.zeros(10, dtype=int)
    for r in range(1, 2001):
        counts[sample_clients(7, r, 10, 3)] += 1
    assert counts.sum() == 6000
    assert counts.min() > 500 and counts.max() < 700


# configure_train -------------------------------------------------------------------


def test_configure_train_sends_global_to_every_client_when_all_sampled() -> None:
    observer = Observer()
    strategy = make_strategy(observer=observer)
    arrays = ArrayRecord(small_model().state_dict())
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), None))
    assert observer.started == [1]
    assert [m.metadata.dst_node_id for m in messages] == [CLIENT_TO_NODE[c] for c in range(4)]
    for message in messages:
        assert message.metadata.message_type == MessageType.TRAIN
        (sent,) = message.content.array_records.values()
        for key in arrays:
            np.testing.assert_array_equal(sent[key].numpy(), arrays[key].numpy())
        (config,) = message.content.config_records.values()
        assert config["server-round"] == 1


def test_configure_train_sends_to_the_seeded_sample_only() -> None:
    mapping = {1000 + 7 * c: c for c in range(10)}
    strategy = make_strategy(node_to_client=mapping, clients_per_round=3)
    arrays = ArrayRecord(small_model().state_dict())
    for server_round in (1, 2, 3):
        messages = list(strategy.configure_train(server_round, arrays, ConfigRecord(), None))
        clients = [mapping[m.metadata.dst_node_id] for m in messages]
        assert clients == sample_clients(0, server_round, 10, 3)
        assert len(set(clients)) == 3


# aggregate_train -------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [True, False])
def test_aggregate_is_global_plus_mean_update(weighted: bool) -> None:
    observer = Observer()
    rnd = Round(make_strategy(weight_by_examples=weighted, observer=observer))
    arrays, metrics = rnd.strategy.aggregate_train(1, [rnd.reply(c) for c in range(4)])
    assert arrays is not None and metrics is not None
    got = flat64(as_numpy(arrays))
    np.testing.assert_allclose(got, rnd.expected([0, 1, 2, 3], weighted), rtol=1e-5, atol=1e-6)
    # the other weighting gives a visibly different model, so the check above can fail
    other = rnd.expected([0, 1, 2, 3], not weighted)
    assert np.abs(got - other).max() > 1e-3
    # same keys, dtypes and shapes as the global model
    assert list(arrays.keys()) == list(rnd.global_arrays)
    for key, value in rnd.global_arrays.items():
        assert arrays[key].numpy().dtype == value.dtype
        assert arrays[key].numpy().shape == value.shape
    # train loss is example-weighted over the accepted replies, whatever the rule
    n = np.array([rnd.COUNTS[c] for c in range(4)])
    losses = np.array([rnd.LOSSES[c] for c in range(4)])
    assert metrics["train_loss"] == pytest.approx(float((n * losses).sum() / n.sum()))


def test_aggregate_does_not_depend_on_reply_order() -> None:
    rnd = Round(make_strategy())
    replies = [rnd.reply(c) for c in range(4)]
    reference, _ = rnd.strategy.aggregate_train(1, replies)
    assert reference is not None
    shuffler = random.Random(0)
    for _ in range(5):
        shuffled = replies[:]
        shuffler.shuffle(shuffled)
        arrays, _ = rnd.strategy.aggregate_train(1, shuffled)
        assert arrays is not None
        for key in reference:
            np.testing.assert_array_equal(arrays[key].numpy(), reference[key].numpy())


def test_observer_sees_ascending_ids_update_norms_and_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import simulator.strategy

    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    replies = [rnd.reply(c) for c in (2, 0, 3, 1)]
    clock = iter([3.0, 3.25])  # the aggregation starts at 3.0 and ends at 3.25
    monkeypatch.setattr(simulator.strategy.time, "perf_counter", lambda: next(clock))
    rnd.strategy.aggregate_train(1, replies)
    assert observer.started == [1]
    (report,) = observer.reports
    assert report.server_round == 1
    assert report.sampled == [0, 1, 2, 3]
    assert report.client_ids == [0, 1, 2, 3]
    assert report.num_examples == [rnd.COUNTS[c] for c in range(4)]
    assert report.train_losses == [rnd.LOSSES[c] for c in range(4)]
    norms = [float(np.linalg.norm(rnd.update(c))) for c in range(4)]
    np.testing.assert_allclose(report.update_norms, norms, rtol=1e-5)
    assert report.weights is not None
    assert sum(report.weights) == pytest.approx(1.0)
    total = sum(rnd.COUNTS.values())
    np.testing.assert_allclose(report.weights, [rnd.COUNTS[c] / total for c in range(4)])
    assert report.failures == {} and report.rejected == {}
    assert report.aggregation_seconds == 0.25
    assert report.note == ""


def test_nan_reply_is_rejected_and_the_rest_aggregate() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    poisoned = {k: v.copy() for k, v in rnd.client_arrays[1].items()}
    poisoned["2.weight"][0, 0] = np.nan
    replies = [rnd.reply(0), rnd.reply(1, arrays=poisoned), rnd.reply(2), rnd.reply(3)]
    arrays, _ = rnd.strategy.aggregate_train(1, replies)
    assert arrays is not None
    np.testing.assert_allclose(
        flat64(as_numpy(arrays)), rnd.expected([0, 2, 3], True), rtol=1e-5, atol=1e-6
    )
    (report,) = observer.reports
    assert set(report.rejected) == {1}
    assert "finite" in report.rejected[1]
    assert report.client_ids == [0, 2, 3]
    assert len(report.weights or []) == 3


def test_infinities_are_rejected_and_huge_finite_values_are_not() -> None:
    """+inf and -inf in one row (their sum is NaN, their mean too) are rejected; a row
    near float32's largest value is finite and reaches the rule (whose sum would overflow)."""
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    both = {k: v.copy() for k, v in rnd.client_arrays[1].items()}
    both["2.weight"][0, 0], both["2.weight"][0, 1] = np.inf, -np.inf
    huge = {k: np.full_like(v, 3.0e38) for k, v in rnd.client_arrays[2].items()}
    replies = [rnd.reply(0), rnd.reply(1, arrays=both), rnd.reply(2, arrays=huge), rnd.reply(3)]
    rnd.strategy.aggregate_train(1, replies)
    (report,) = observer.reports
    assert set(report.rejected) == {1}
    assert report.client_ids == [0, 2, 3]


def test_misshaped_reply_is_rejected_with_a_reason() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    bad = dict(rnd.client_arrays[3])
    bad["0.bias"] = np.zeros(4, dtype=np.float32)  # the model's is (3,)
    replies = [rnd.reply(0), rnd.reply(1), rnd.reply(2), rnd.reply(3, arrays=bad)]
    arrays, _ = rnd.strategy.aggregate_train(1, replies)
    assert arrays is not None
    np.testing.assert_allclose(
        flat64(as_numpy(arrays)), rnd.expected([0, 1, 2], True), rtol=1e-5, atol=1e-6
    )
    (report,) = observer.reports
    assert set(report.rejected) == {3}
    assert "0.bias" in report.rejected[3]
    assert report.client_ids == [0, 1, 2]


@pytest.mark.parametrize("count", [0, -5])
def test_non_positive_example_count_is_rejected(count: int) -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    replies = [rnd.reply(0, n=count), rnd.reply(1), rnd.reply(2), rnd.reply(3)]
    arrays, _ = rnd.strategy.aggregate_train(1, replies)
    assert arrays is not None
    (report,) = observer.reports
    assert set(report.rejected) == {0}
    assert "num-examples" in report.rejected[0]
    np.testing.assert_allclose(
        flat64(as_numpy(arrays)), rnd.expected([1, 2, 3], True), rtol=1e-5, atol=1e-6
    )


def test_infinite_example_count_is_rejected() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    replies = [rnd.reply(0, n=float("inf")), rnd.reply(1), rnd.reply(2), rnd.reply(3)]
    arrays, _ = rnd.strategy.aggregate_train(1, replies)
    assert arrays is not None
    assert set(observer.reports[0].rejected) == {0}


def test_list_train_loss_is_rejected() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    replies = [rnd.reply(0, loss=[1.0, 2.0]), rnd.reply(1), rnd.reply(2), rnd.reply(3)]
    arrays, _ = rnd.strategy.aggregate_train(1, replies)
    assert arrays is not None
    assert set(observer.reports[0].rejected) == {0}


def test_fractional_example_counts_do_not_crash_the_round() -> None:
    rnd = Round(make_strategy(weight_by_examples=True))
    replies = [rnd.reply(c, n=0.5) for c in range(4)]
    assert rnd.strategy.aggregate_train(1, replies) == (None, None)


def test_error_reply_counts_as_a_failure() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    replies = [rnd.reply(0), error_reply(rnd.instruction(1)), rnd.reply(2), rnd.reply(3)]
    arrays, _ = rnd.strategy.aggregate_train(1, replies)
    assert arrays is not None
    np.testing.assert_allclose(
        flat64(as_numpy(arrays)), rnd.expected([0, 2, 3], True), rtol=1e-5, atol=1e-6
    )
    (report,) = observer.reports
    assert report.failures == {1: "boom"}
    assert report.rejected == {}
    assert report.client_ids == [0, 2, 3]


def test_no_usable_reply_keeps_the_global_model() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    nan_arrays = {k: np.full_like(v, np.nan) for k, v in rnd.global_arrays.items()}
    short = dict(rnd.client_arrays[2])
    del short["2.bias"]
    replies = [
        error_reply(rnd.instruction(0)),
        rnd.reply(1, arrays=nan_arrays),
        rnd.reply(2, arrays=short),
        error_reply(rnd.instruction(3), "timeout"),
    ]
    assert rnd.strategy.aggregate_train(1, replies) == (None, None)
    (report,) = observer.reports
    assert report.failures == {0: "boom", 3: "timeout"}
    assert set(report.rejected) == {1, 2}
    assert report.client_ids == []
    assert "global model kept" in report.note


def test_no_reply_at_all_keeps_the_global_model() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    assert rnd.strategy.aggregate_train(1, []) == (None, None)
    assert "global model kept" in observer.reports[0].note


@pytest.mark.parametrize("server_lr", [0.5, 2.0])
def test_server_lr_scales_the_step(server_lr: float) -> None:
    rnd = Round(make_strategy(server_lr=server_lr))
    arrays, _ = rnd.strategy.aggregate_train(1, [rnd.reply(c) for c in range(4)])
    assert arrays is not None
    np.testing.assert_allclose(
        flat64(as_numpy(arrays)),
        rnd.expected([0, 1, 2, 3], True, server_lr=server_lr),
        rtol=1e-5,
        atol=1e-6,
    )


def test_aggregate_does_not_mutate_replies_or_global() -> None:
    rnd = Round(make_strategy())
    replies = [rnd.reply(c) for c in range(4)]
    before = [as_numpy(next(iter(r.content.array_records.values()))) for r in replies]
    global_before = as_numpy(rnd.strategy._global)  # type: ignore[arg-type]
    rnd.strategy.aggregate_train(1, replies)
    for message, saved in zip(replies, before, strict=True):
        after = as_numpy(next(iter(message.content.array_records.values())))
        assert list(after) == list(saved)
        for key in saved:
            np.testing.assert_array_equal(after[key], saved[key])
    for key, value in as_numpy(rnd.strategy._global).items():  # type: ignore[arg-type]
        np.testing.assert_array_equal(value, global_before[key])


def test_aggregate_before_configure_raises() -> None:
    with pytest.raises(RuntimeError, match="configure_train"):
        make_strategy().aggregate_train(1, [])


def test_duplicate_reply_is_rejected_and_the_first_one_counts() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    first = [rnd.reply(c) for c in range(4)]
    duplicate = rnd.reply(2, arrays={k: v * 100 for k, v in rnd.client_arrays[2].items()})
    arrays, _ = rnd.strategy.aggregate_train(1, [*first, duplicate])
    assert arrays is not None
    np.testing.assert_allclose(
        flat64(as_numpy(arrays)), rnd.expected([0, 1, 2, 3], True), rtol=1e-5, atol=1e-6
    )
    assert "not sampled" in observer.reports[0].rejected[2]


def test_reply_from_an_unsampled_client_is_not_aggregated() -> None:
    observer = Observer()
    strategy = make_strategy(observer=observer, clients_per_round=2)
    rnd = Round(strategy)
    sampled = strategy._sampled
    outsider = next(c for c in range(4) if c not in sampled)
    instruction = Message(RecordDict(), CLIENT_TO_NODE[outsider], MessageType.TRAIN)
    stray = reply(instruction, rnd.client_arrays[outsider], 10, 0.1)
    arrays, _ = strategy.aggregate_train(1, [*(rnd.reply(c) for c in sampled), stray])
    assert arrays is not None
    assert observer.reports[0].client_ids == sorted(sampled)
    assert outsider in observer.reports[0].rejected


def test_unreadable_array_is_rejected_not_raised() -> None:
    from flwr.app import Array

    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    bad = rnd.reply(0)
    record = next(iter(bad.content.array_records.values()))
    key = next(iter(record))
    good = record[key]
    record[key] = Array(dtype=good.dtype, shape=good.shape, stype="torch.raw", data=good.data)
    arrays, _ = rnd.strategy.aggregate_train(1, [bad, *(rnd.reply(c) for c in (1, 2, 3))])
    assert arrays is not None
    assert "cannot be read" in observer.reports[0].rejected[0]


def test_huge_example_count_is_rejected() -> None:
    observer = Observer()
    rnd = Round(make_strategy(observer=observer))
    replies = [rnd.reply(0, n=10**300), *(rnd.reply(c) for c in (1, 2, 3))]
    arrays, _ = rnd.strategy.aggregate_train(1, replies)
    assert arrays is not None
    assert set(observer.reports[0].rejected) == {0}


def test_failing_attack_is_recorded_and_the_round_goes_on() -> None:
    observer = Observer()
    strategy = make_strategy(observer=observer)

    def broken_adversary(updates, client_ids, server_round, *, global_model):
        raise RuntimeError("attack exploded")

    strategy.adversary = broken_adversary
    rnd = Round(strategy)
    arrays, _ = strategy.aggregate_train(1, [rnd.reply(c) for c in range(4)])
    assert arrays is not None
    report = observer.reports[0]
    assert report.attack_failed
    assert "attack exploded" in report.note
