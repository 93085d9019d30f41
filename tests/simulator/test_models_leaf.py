"""ResNet-20, LEAF's FEMNIST CNN and Shakespeare LSTM: parameter counts, shapes, input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from clients.cohort import supports_cohort
from simulator.models import CharLSTM, FemnistCNN, ResNet20, build_model
from simulator.schema import build
from tests.conftest import compose_config


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(k: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def linear(a: int, b: int) -> int:
    return a * b + b


def resnet20_count(channels: int, classes: int) -> int:
    """He et al.'s 6n+2 network with n = 3, bias-free convs, BN (scale, shift), option-A
    shortcuts (no parameters)."""
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(3, channels, 16, bias=False) + bn(16)
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(3):
            total += (
                conv(3, c_in, width, False) + bn(width) + conv(3, width, width, False) + bn(width)
            )
            c_in = width
    return total + linear(64, classes)


def lstm_count(vocab: int, embed: int, hidden: int, layers: int) -> int:
    """Embedding, PyTorch LSTM layers (4 gates, input and hidden weights, two biases), linear."""
    total = vocab * embed
    fan_in = embed
    for _ in range(layers):
        total += 4 * hidden * (fan_in + hidden) + 2 * 4 * hidden
        fan_in = hidden
    return total + linear(hidden, vocab)


def test_parameter_counts_match_the_formulas() -> None:
    femnist = conv(5, 1, 32) + conv(5, 32, 64) + linear(64 * 7 * 7, 2048) + linear(2048, 62)
    assert num_params(FemnistCNN((1, 28, 28), 62)) == femnist == 6_603_710
    assert num_params(ResNet20((3, 32, 32), 10)) == resnet20_count(3, 10) == 269_722
    assert num_params(ResNet20((3, 32, 32), 100)) == resnet20_count(3, 100) == 275_572
    assert num_params(ResNet20((1, 28, 28), 62)) == resnet20_count(1, 62)
    assert num_params(CharLSTM((80,), 81)) == lstm_count(81, 8, 256, 2) == 820_185
    assert num_params(CharLSTM((80,), 81, hidden_size=16, num_layers=1)) == lstm_count(81, 8, 16, 1)


@pytest.mark.parametrize(
    ("model", "x", "classes"),
    [
        (FemnistCNN((1, 28, 28), 62), torch.rand(3, 1, 28, 28), 62),
        (ResNet20((3, 32, 32), 100), torch.rand(3, 3, 32, 32), 100),
        (ResNet20((1, 8, 8), 10), torch.rand(3, 1, 8, 8), 10),
        (CharLSTM((80,), 81), torch.randint(0, 81, (3, 80), dtype=torch.uint8), 81),
    ],
)
def test_outputs_are_logits_and_gradients_flow(
    model: nn.Module, x: torch.Tensor, classes: int
) -> None:
    model.train()
    out = model(x)
    assert out.shape == (3, classes) and out.dtype == torch.float32
    out.logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_lstm_predicts_from_the_last_character() -> None:
    model = CharLSTM((5,), 81, hidden_size=4).eval()
    x = torch.randint(0, 81, (2, 5))
    changed = x.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 81
    assert not torch.allclose(model(x), model(changed))


def test_resnet20_has_batch_norm_buffers_and_trains_alone() -> None:
    model = ResNet20((3, 32, 32), 10)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 19  # the stem and two per block
    buffers = sum(b.numel() for b in model.buffers())
    assert buffers == sum(2 * m.num_features + 1 for m in norms)
    assert {"features.1.running_mean", "features.1.num_batches_tracked"} <= set(model.state_dict())
    assert not supports_cohort(model)  # buffers: one client at a time


def test_the_lstm_trains_one_client_at_a_time() -> None:
    # vmap has no batching rule for the fused LSTM kernel
    assert not supports_cohort(CharLSTM((80,), 81))


@pytest.mark.parametrize(
    ("factory", "shape", "message"),
    [
        (
            FemnistCNN,
            (3, 32, 32),
            r"^model=femnist_cnn needs 1x28x28 inputs, the data set gives 3x32x32",
        ),
        (
            CharLSTM,
            (1, 28, 28),
            r"^model=char_lstm takes text sequences \(L,\); the data set gives 1x28x28",
        ),
        (
            ResNet20,
            (80,),
            r"^model=resnet20 takes images \(C, H, W\); .* 80 characters: use model=char_lstm",
        ),
        (CharLSTM, (0,), r"^model=char_lstm needs input_shape=\(L,\) with L >= 1"),
    ],
)
def test_inputs_of_the_wrong_kind_are_refused_in_one_line(factory, shape, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        factory.check_input(shape)


@pytest.mark.parametrize("key", ["embedding_dim", "hidden_size", "num_layers"])
def test_lstm_sizes_are_checked(key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}=0: must be an integer >= 1"):
        CharLSTM((80,), 81, **{key: 0})


@pytest.mark.parametrize(
    ("entry", "shape", "classes"),
    [("resnet20", (3, 32, 32), 100), ("femnist_cnn", (1, 28, 28), 62), ("char_lstm", (80,), 81)],
)
def test_config_entries_build_seeded_models(
    entry: str, shape: tuple[int, ...], classes: int
) -> None:
    factory = build("model", compose_config(f"model={entry}").model)
    first = build_model(factory, shape, classes, seed=1)
    again = build_model(factory, shape, classes, seed=1)
    other = build_model(factory, shape, classes, seed=2)
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    assert any(
        not torch.equal(a, c) for a, c in zip(first.parameters(), other.parameters(), strict=True)
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none here")
@pytest.mark.parametrize(
    ("model", "x"),
    [
        (FemnistCNN((1, 28, 28), 62), torch.rand(4, 1, 28, 28)),
        (ResNet20((3, 32, 32), 100), torch.rand(4, 3, 32, 32)),
        (CharLSTM((80,), 81), torch.randint(0, 81, (4, 80), dtype=torch.uint8)),
    ],
)
def test_models_train_on_cuda_like_on_cpu(model: nn.Module, x: torch.Tensor) -> None:
    from clients.training import TrainConfig, train

    y = torch.arange(4) % 2
    config = TrainConfig(lr=0.01, batch_size=2)
    cpu = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, x, y, config, torch.Generator().manual_seed(0), "cpu")
    on_cpu = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(cpu)
    model.to("cuda")
    train(model, x, y, config, torch.Generator().manual_seed(0), "cuda")
    for name, value in model.state_dict().items():
        assert value.device.type == "cuda"
        assert torch.allclose(value.cpu().float(), on_cpu[name].float(), atol=1e-3), name
