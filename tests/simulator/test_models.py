"""Tests for simulator.models: shapes, parameter counts, input checks, seeded construction."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn

from simulator.models import MLP, CifarCNN, FLTrustCNN, LogisticRegression, build_model
from simulator.schema import build
from tests.conftest import compose_config

CONF_MODEL = Path(__file__).resolve().parents[2] / "conf" / "model"

CASES = [
    (LogisticRegression, (1, 8, 8)),
    (LogisticRegression, (3, 32, 32)),
    (MLP, (1, 8, 8)),
    (MLP, (1, 28, 28)),
    (FLTrustCNN, (1, 28, 28)),
    (CifarCNN, (3, 32, 32)),
]


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("cls", "shape"), CASES)
def test_output_shape(cls: type[nn.Module], shape: tuple[int, int, int]) -> None:
    model = cls(input_shape=shape, num_classes=7)
    x = torch.randn(5, *shape)  # shape: (B, C, H, W)
    out = model(x)
    assert out.shape == (5, 7)
    assert out.dtype == torch.float32


def test_parameter_counts() -> None:
    # FLTrust's MNIST CNN: 300 + 13,550 + 125,100 + 1,010.
    assert num_params(FLTrustCNN(input_shape=(1, 28, 28), num_classes=10)) == 139_960
    assert num_params(CifarCNN(input_shape=(3, 32, 32), num_classes=10)) == 545_098
    assert num_params(MLP(input_shape=(1, 8, 8), num_classes=10)) == 64 * 64 + 64 + 64 * 10 + 10
    assert num_params(MLP(input_shape=(1, 8, 8), num_classes=10, hidden=(32, 16))) == (
        64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    )
    assert num_params(LogisticRegression(input_shape=(1, 8, 8), num_classes=10)) == 650


def test_mlp_without_hidden_layers_is_one_linear() -> None:
    model = MLP(input_shape=(1, 4, 4), num_classes=3, hidden=())
    assert [type(m) for m in model.modules() if not isinstance(m, nn.Sequential | MLP)] == [
        nn.Flatten,
        nn.Linear,
    ]


def test_the_config_label_is_not_a_constructor_parameter() -> None:
    # ``name`` labels a group entry; ``simulator.schema.build`` never passes it on.
    for cls, shape in ((LogisticRegression, (1, 8, 8)), (MLP, (1, 8, 8)),
                       (FLTrustCNN, (1, 28, 28)), (CifarCNN, (3, 32, 32))):  # fmt: skip
        with pytest.raises(TypeError, match="name"):
            cls(input_shape=shape, num_classes=10, name="x")
        assert cls(input_shape=shape, num_classes=10)(torch.zeros(2, *shape)).shape == (2, 10)


def test_fltrust_check_input_message() -> None:
    with pytest.raises(ValueError) as info:
        FLTrustCNN.check_input((1, 8, 8))
    message = str(info.value)
    assert "\n" not in message
    assert "model=fltrust_cnn" in message
    assert "1x28x28" in message
    assert "1x8x8" in message
    assert "model=mlp" in message


def test_cifar_check_input_suggests_the_cnn_that_fits() -> None:
    with pytest.raises(ValueError, match=r"model=cifar_cnn needs 3x32x32 .* gives 1x28x28") as info:
        CifarCNN.check_input((1, 28, 28))
    assert "model=fltrust_cnn" in str(info.value)


@pytest.mark.parametrize(
    ("cls", "bad"),
    [(FLTrustCNN, (3, 32, 32)), (CifarCNN, (1, 28, 28)), (FLTrustCNN, (28, 28, 1))],
)
def test_constructor_checks_input(cls: type[nn.Module], bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="x".join(map(str, bad))):
        cls(input_shape=bad, num_classes=10)


def test_matching_shapes_pass_check_input() -> None:
    assert FLTrustCNN.check_input([1, 28, 28]) is None
    assert CifarCNN.check_input((3, 32, 32)) is None
    assert MLP.check_input((3, 5, 7)) is None
    assert LogisticRegression.check_input((1, 1, 1)) is None


@pytest.mark.parametrize("bad", [(8, 8), (1, 0, 8), (1, 8, 8, 1), ("a", 8, 8)])
def test_any_shape_models_refuse_malformed_shapes(bad: tuple) -> None:
    with pytest.raises(ValueError, match="model=mlp"):
        MLP.check_input(bad)
    with pytest.raises(ValueError, match="model=logreg"):
        LogisticRegression(input_shape=bad, num_classes=10)


def test_bad_num_classes_and_hidden() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        MLP(input_shape=(1, 8, 8), num_classes=1)
    with pytest.raises(ValueError, match="hidden"):
        MLP(input_shape=(1, 8, 8), num_classes=10, hidden=(64, 0))
    with pytest.raises(ValueError, match="hidden"):
        MLP(input_shape=(1, 8, 8), num_classes=10, hidden=64)


def _state(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_build_model_is_seeded() -> None:
    factory = partial(MLP, hidden=(16,))
    a = build_model(factory, (1, 8, 8), 10, seed=3)
    b = build_model(factory, (1, 8, 8), 10, seed=3)
    c = build_model(factory, (1, 8, 8), 10, seed=4)
    assert all(torch.equal(s, t) for s, t in zip(_state(a), _state(b), strict=True))
    assert not all(torch.equal(s, t) for s, t in zip(_state(a), _state(c), strict=True))
    assert not a.training


def test_build_model_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    expected = torch.rand(4)
    torch.set_rng_state(before)
    build_model(FLTrustCNN, (1, 28, 28), 10, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(4), expected)


def test_build_model_does_not_depend_on_global_rng() -> None:
    torch.manual_seed(1)
    a = build_model(LogisticRegression, (1, 8, 8), 10, seed=5)
    torch.manual_seed(2)
    b = build_model(LogisticRegression, (1, 8, 8), 10, seed=5)
    assert all(torch.equal(s, t) for s, t in zip(_state(a), _state(b), strict=True))


@pytest.mark.parametrize(
    ("name", "shape", "cls"),
    [
        ("logreg", (1, 8, 8), LogisticRegression),
        ("mlp", (1, 8, 8), MLP),
        ("fltrust_cnn", (1, 28, 28), FLTrustCNN),
        ("cifar_cnn", (3, 32, 32), CifarCNN),
    ],
)
def test_yaml_configs_build(name: str, shape: tuple[int, int, int], cls: type) -> None:
    cfg = compose_config(f"model={name}").model
    assert cfg.name == name
    factory = build("model", cfg)
    model = build_model(factory, shape, 10, seed=0)
    assert type(model) is cls
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
