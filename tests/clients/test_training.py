"""Tests for clients.training: SGD steps, determinism, step counts, evaluation, config checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clients.training import TrainConfig, evaluate, train
from simulator.models import MLP, LogisticRegression


def make_data(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two linearly separable classes in a 1x2x2 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)  # shape: (n,)
    x = torch.randn(n, 1, 2, 2, generator=g) * 0.5  # shape: (n, 1, 2, 2)
    x[:, 0, 0, 0] += 3.0 * (2.0 * y - 1.0)
    return x, y


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(input_shape=(1, 2, 2), num_classes=2, hidden=(8,))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_training_reduces_loss() -> None:
    x, y = make_data()
    model = make_model()
    before = evaluate(model, x, y)
    metrics = train(model, x, y, TrainConfig(lr=0.1, batch_size=16, local_epochs=5), gen(0))
    after = evaluate(model, x, y)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > 0.95
    # the mean of the batch losses lies between the loss before and after training
    assert after["loss"] < metrics["train_loss"] < before["loss"]
    assert metrics["num_examples"] == 200


def test_same_generator_seed_gives_identical_weights() -> None:
    x, y = make_data()
    config = TrainConfig(lr=0.05, batch_size=8, local_epochs=2, momentum=0.9, weight_decay=1e-3)
    a, b, c = make_model(), make_model(), make_model()
    train(a, x, y, config, gen(7))
    torch.manual_seed(999)  # the global RNG must not matter
    train(b, x, y, config, gen(7))
    train(c, x, y, config, gen(8))
    assert all(torch.equal(p, q) for p, q in zip(params(a), params(b), strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(params(a), params(c), strict=True))


def test_training_does_not_touch_global_rng() -> None:
    x, y = make_data()
    model = make_model()
    before = torch.get_rng_state()
    train(model, x, y, TrainConfig(lr=0.1, batch_size=8, local_steps=3), gen(0))
    evaluate(model, x, y)
    assert torch.equal(torch.get_rng_state(), before)


def test_one_local_step_is_one_sgd_step() -> None:
    x, y = make_data(n=50)
    model = make_model()
    manual = copy.deepcopy(model)
    metrics = train(model, x, y, TrainConfig(lr=0.3, batch_size=10, local_steps=1), gen(11))
    assert metrics["num_steps"] == 1

    idx = torch.randperm(50, generator=gen(11))[:10]  # same draw as train's first batch
    loss = F.cross_entropy(manual(x[idx]), y[idx])
    grads = torch.autograd.grad(loss, list(manual.parameters()))
    with torch.no_grad():
        expected = [p - 0.3 * g for p, g in zip(manual.parameters(), grads, strict=True)]
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p, e, rtol=0, atol=1e-6)
    assert metrics["train_loss"] == pytest.approx(loss.item(), rel=1e-6)


def test_one_local_step_with_fewer_examples_than_batch_uses_all() -> None:
    x, y = make_data(n=6)
    model = LogisticRegression(input_shape=(1, 2, 2), num_classes=2)
    manual = copy.deepcopy(model)
    train(model, x, y, TrainConfig(lr=0.5, batch_size=32, local_steps=1), gen(0))
    # The mean loss over all examples does not depend on their order.
    loss = F.cross_entropy(manual(x), y)
    grads = torch.autograd.grad(loss, list(manual.parameters()))
    for p, q, g in zip(model.parameters(), manual.parameters(), grads, strict=True):
        torch.testing.assert_close(p.detach(), (q - 0.5 * g).detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("n", "batch_size", "epochs", "steps"),
    [(100, 32, 1, 4), (100, 32, 3, 12), (64, 32, 2, 4), (5, 10, 2, 2), (1, 1, 3, 3)],
)
def test_epoch_mode_step_count(n: int, batch_size: int, epochs: int, steps: int) -> None:
    x, y = make_data(n=n)
    config = TrainConfig(lr=0.01, batch_size=batch_size, local_epochs=epochs)
    metrics = train(make_model(), x, y, config, gen(0))
    assert metrics["num_steps"] == steps == epochs * math.ceil(n / batch_size)
    assert metrics["num_examples"] == n


def test_steps_mode_ignores_epochs_and_spans_shuffles() -> None:
    x, y = make_data(n=10)
    config = TrainConfig(lr=0.01, batch_size=4, local_epochs=5, local_steps=7)
    metrics = train(make_model(), x, y, config, gen(0))
    assert metrics["num_steps"] == 7


def test_inputs_are_not_modified() -> None:
    x, y = make_data()
    x0, y0 = x.clone(), y.clone()
    train(make_model(), x, y, TrainConfig(lr=0.1, batch_size=16, local_epochs=2), gen(0))
    evaluate(make_model(), x, y, batch_size=7)
    assert torch.equal(x, x0)
    assert torch.equal(y, y0)


def test_model_is_left_in_eval_mode() -> None:
    x, y = make_data(n=20)
    model = make_model()
    model.train()
    train(model, x, y, TrainConfig(lr=0.1, batch_size=8), gen(0))
    assert not model.training


def test_zero_examples_raise() -> None:
    x = torch.empty(0, 1, 2, 2)
    y = torch.empty(0, dtype=torch.long)
    with pytest.raises(ValueError, match="0"):
        train(make_model(), x, y, TrainConfig(lr=0.1, batch_size=8), gen(0))
    with pytest.raises(ValueError, match="0"):
        evaluate(make_model(), x, y)


class FixedLogits(nn.Module):
    """Returns the logits stored for each input, keyed by the input's single value."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x.flatten(start_dim=1)[:, 0].long()]


def test_evaluate_hand_built_case() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])
    x = torch.arange(4, dtype=torch.float32).reshape(4, 1, 1, 1)  # shape: (4, 1, 1, 1)
    y = torch.tensor([0, 1, 1, 1])  # third prediction (class 0) is wrong
    model = FixedLogits(logits)
    expected_loss = F.cross_entropy(logits, y).item()
    for batch_size in (1, 3, 1024):
        metrics = evaluate(model, x, y, batch_size=batch_size)
        assert metrics["accuracy"] == pytest.approx(0.75)
        assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)
        assert metrics["num_examples"] == 4


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"lr": 0.0, "batch_size": 8}, "lr"),
        ({"lr": float("nan"), "batch_size": 8}, "lr"),
        ({"lr": 0.1, "batch_size": 0}, "batch_size"),
        ({"lr": 0.1, "batch_size": 2.5}, "batch_size"),
        ({"lr": 0.1, "batch_size": 8, "local_epochs": 0}, "local_epochs"),
        ({"lr": 0.1, "batch_size": 8, "local_steps": 0}, "local_steps"),
        ({"lr": 0.1, "batch_size": 8, "momentum": 1.0}, "momentum"),
        ({"lr": 0.1, "batch_size": 8, "momentum": -0.1}, "momentum"),
        ({"lr": 0.1, "batch_size": 8, "weight_decay": -1e-4}, "weight_decay"),
    ],
)
def test_train_config_errors_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}=") as info:
        TrainConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_train_config_accepts_valid_values() -> None:
    config = TrainConfig(lr=1, batch_size=1, local_steps=1, momentum=0.0, weight_decay=0)
    assert config.local_steps == 1
