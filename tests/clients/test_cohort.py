"""Cohort training (many clients in one vmap'd step) equals training them one at a time."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from clients.cohort import cohort_pays_off, supports_cohort, train_cohort
from clients.training import TrainConfig, train
from simulator.models import MLP, FLTrustCNN, LogisticRegression
from simulator.seeding import torch_generator

RECIPES = {
    "epochs": TrainConfig(lr=0.1, batch_size=8, local_epochs=2),
    "one step": TrainConfig(lr=0.1, batch_size=8, local_steps=1),
    "steps past the data": TrainConfig(lr=0.05, batch_size=16, local_steps=5),
    "momentum and decay": TrainConfig(
        lr=0.05, batch_size=8, local_epochs=2, momentum=0.9, weight_decay=1e-3
    ),
}


def _pool(shape: tuple[int, ...], sizes: list[int]) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    total = sum(sizes)
    x = torch.rand(total, *shape, generator=gen)
    y = torch.randint(0, 10, (total,), generator=gen)
    perm = torch.randperm(total, generator=gen)
    indices = list(perm.split(sizes))
    return x, y, *indices


def _sequential(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, indices: list[torch.Tensor], config
) -> list[tuple[dict[str, torch.Tensor], float]]:
    out = []
    for c, index in enumerate(indices):
        copy_ = copy.deepcopy(model)
        stats = train(copy_, x[index], y[index], config, torch_generator(0, c))
        out.append((copy_.state_dict(), stats["train_loss"]))
    return out


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize(
    ("factory", "shape"),
    [(LogisticRegression, (1, 8, 8)), (MLP, (1, 8, 8)), (FLTrustCNN, (1, 28, 28))],
)
def test_cohort_equals_one_client_at_a_time(factory, shape, recipe: str) -> None:
    """Unequal data sizes: partial last batches and different step counts are padded."""
    torch.manual_seed(1)
    model = factory(input_shape=shape, num_classes=10)
    before = copy.deepcopy(model.state_dict())
    # 21 and 13 examples: partial batches at 8 and 16; 3 examples: fewer than a batch.
    x, y, *indices = _pool(shape, [21, 16, 13, 3])
    config = RECIPES[recipe]
    expected = _sequential(model, x, y, indices, config)
    result = train_cohort(
        model, x, y, indices, config, [torch_generator(0, c) for c in range(len(indices))]
    )
    for c, (state, loss) in enumerate(expected):
        got = result.state_of(c)
        assert list(got) == list(state)
        for name in state:
            torch.testing.assert_close(got[name], state[name], rtol=1e-4, atol=1e-5)
            assert not torch.equal(state[name], before[name])  # training moved every array
        assert result.train_losses[c] == pytest.approx(loss, rel=1e-5)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])  # the template is untouched


def test_steps_per_client_follow_the_recipe() -> None:
    model = LogisticRegression(input_shape=(1, 8, 8), num_classes=10)
    x, y, *indices = _pool((1, 8, 8), [21, 3])
    config = TrainConfig(lr=0.1, batch_size=8, local_epochs=2)
    result = train_cohort(model, x, y, indices, config, [torch_generator(0, c) for c in (0, 1)])
    assert result.num_steps == [6, 2]  # ceil(21/8) * 2 and ceil(3/8) * 2


def test_models_with_state_or_mode_are_refused() -> None:
    with_dropout = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Dropout(0.5))
    with_norm = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10))
    assert supports_cohort(MLP(input_shape=(1, 8, 8), num_classes=10))
    assert not supports_cohort(with_dropout)
    assert not supports_cohort(with_norm)
    x, y, *indices = _pool((1, 8, 8), [5, 5])
    with pytest.raises(ValueError, match="mode-dependent"):
        train_cohort(with_dropout, x, y, indices, RECIPES["epochs"], [torch.Generator()] * 2)
    with pytest.raises(ValueError, match="num_examples=0"):
        empty = [indices[0], indices[0][:0]]
        train_cohort(with_norm, x, y, empty, RECIPES["epochs"], [torch.Generator()] * 2)


def test_frozen_or_tied_parameters_are_refused() -> None:
    frozen = MLP(input_shape=(1, 8, 8), num_classes=10)
    next(frozen.parameters()).requires_grad_(False)
    assert not supports_cohort(frozen)
    tied = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.Linear(64, 64))
    tied[2].weight = tied[1].weight
    assert not supports_cohort(tied)


def test_a_padded_example_never_reaches_the_loss() -> None:
    """Client 1's only batch is padded to client 0's width with one of its own examples;
    a huge input elsewhere in the pool must not turn its update into NaN."""
    model = LogisticRegression(input_shape=(1, 8, 8), num_classes=10)
    x, y, *_ = _pool((1, 8, 8), [8, 3])
    indices = [torch.arange(8), torch.arange(8, 11)]  # row 0, the old padding, is client 0's
    x[indices[0]] = float("inf")  # client 0's loss is NaN; client 1's must not be
    config = TrainConfig(lr=0.1, batch_size=8, local_steps=1)
    result = train_cohort(model, x, y, indices, config, [torch_generator(0, c) for c in (0, 1)])
    assert all(torch.isfinite(v).all() for v in result.state_of(1).values())
    expected = _sequential(model, x, y, indices, config)[1][0]
    for name, value in expected.items():
        torch.testing.assert_close(result.state_of(1)[name], value, rtol=1e-4, atol=1e-5)


def test_convolutions_train_one_client_at_a_time_on_cpu() -> None:
    assert not cohort_pays_off(FLTrustCNN(input_shape=(1, 28, 28), num_classes=10), "cpu")
    assert cohort_pays_off(MLP(input_shape=(1, 8, 8), num_classes=10), "cpu")
