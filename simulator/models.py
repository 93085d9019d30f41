"""Models the clients train: logistic regression, an MLP and the CNNs of the poisoning papers.

Each model is built as ``Model(input_shape=(C, H, W), num_classes=K, **yaml_params)``, takes
float32 inputs of shape ``(B, C, H, W)`` and returns logits of shape ``(B, K)``. Each class has
``check_input(input_shape)`` so a config can be refused before any data is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from simulator.checks import is_int

__all__ = [
    "MLP",
    "CifarCNN",
    "FLTrustCNN",
    "LogisticRegression",
    "build_model",
]

# Models that take any (C, H, W): what a shape error suggests instead of a fixed-shape CNN.
_ANY_SHAPE_MODELS = ("mlp", "logreg")


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def _as_shape(model: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``input_shape`` as a ``(C, H, W)`` tuple of positive ints, or a one-line ValueError."""
    try:
        shape = tuple(int(s) for s in input_shape)
        exact = all(int(s) == s for s in input_shape)
    except (TypeError, ValueError):
        shape, exact = (), False
    if not exact or len(shape) != 3 or any(s < 1 for s in shape):
        raise ValueError(
            f"model={model} needs input_shape=(C, H, W) with three positive ints, "
            f"got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]


def _check_fixed_shape(
    model: str, input_shape: Sequence[int], needed: tuple[int, int, int]
) -> None:
    shape = _as_shape(model, input_shape)
    if shape != needed:
        others = [name for name, fixed in _FIXED_SHAPES.items() if fixed == shape]
        *first, last = [f"model={name}" for name in [*others, *_ANY_SHAPE_MODELS]]
        raise ValueError(
            f"model={model} needs {_shape_str(needed)} inputs, "
            f"the data set gives {_shape_str(shape)}: use {', '.join(first)} or {last}"
        )


def _check_num_classes(model: str, num_classes: int) -> None:
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(f"model={model} needs num_classes >= 2 (an int), got {num_classes!r}")


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: flatten, then one ``Linear`` to the logits.

    The cheapest model in Fang et al. (USENIX Security 2020), where the full-knowledge attacks
    are easiest to study; it has ``C*H*W*K + K`` parameters.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.check_input(input_shape)
        shape = _as_shape("logreg", input_shape)
        _check_num_classes("logreg", num_classes)
        self.input_shape = shape
        self.num_classes = num_classes
        self.linear = nn.Linear(math.prod(shape), num_classes)

    @staticmethod
    def check_input(input_shape: Sequence[int]) -> None:
        """Any positive ``(C, H, W)`` works."""
        _as_shape("logreg", input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(x, start_dim=1))  # shape: (B, K)


class MLP(nn.Module):
    """Flatten, ``Linear`` + ReLU per hidden width, then a ``Linear`` to the logits.

    The default for the 8x8 digits data set, where a CNN is overkill; works on any input shape.
    With ``hidden=(64,)``, 1x8x8 inputs and 10 classes it has 4,810 parameters.

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(C, H, W)`` of one example.
    num_classes : int
        Number of output logits.
    hidden : Sequence[int] (default: (64,))
        Width of each hidden layer; empty gives logistic regression.
    batch_norm : bool (default: False)
        A ``BatchNorm1d`` after each hidden ``Linear``: a model with buffers (running
        mean and variance, a batch counter), which travel and are aggregated with the
        weights (the README's threat-model policy on buffers).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64,),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.check_input(input_shape)
        shape = _as_shape("mlp", input_shape)
        _check_num_classes("mlp", num_classes)
        # A bare int (``hidden: 64`` in YAML) is refused too, not read as one layer.
        widths = tuple(hidden) if isinstance(hidden, Iterable) else (None,)
        if any(not is_int(w) or w < 1 for w in widths):
            raise ValueError(f"model=mlp needs hidden widths that are ints >= 1, got {hidden!r}")
        self.input_shape = shape
        self.num_classes = num_classes
        self.hidden = widths
        layers: list[nn.Module] = [nn.Flatten(start_dim=1)]
        fan_in = math.prod(shape)
        if not isinstance(batch_norm, bool):
            raise ValueError(f"model=mlp needs batch_norm true or false, got {batch_norm!r}")
        for width in widths:
            norm = [nn.BatchNorm1d(width)] if batch_norm else []
            layers += [nn.Linear(fan_in, width), *norm, nn.ReLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def check_input(input_shape: Sequence[int]) -> None:
        """Any positive ``(C, H, W)`` works."""
        _as_shape("mlp", input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # shape: (B, K)


class FLTrustCNN(nn.Module):
    """The MNIST CNN of FLTrust (Cao et al., NDSS 2021), for 1x28x28 inputs only.

    conv 3x3 30 + ReLU, max-pool 2, conv 3x3 50 + ReLU, max-pool 2, fc 100 + ReLU, fc K
    (no padding: 28 -> 26 -> 13 -> 11 -> 5). With 10 classes it has exactly 139,960 parameters:
    300 + 13,550 (convs) + 125,100 + 1,010 (fc).
    """

    INPUT_SHAPE = (1, 28, 28)

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.check_input(input_shape)
        self.input_shape = self.INPUT_SHAPE
        _check_num_classes("fltrust_cnn", num_classes)
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(1, 30, kernel_size=3),  # shape: (B, 30, 26, 26)
            nn.ReLU(),
            nn.MaxPool2d(2),  # shape: (B, 30, 13, 13)
            nn.Conv2d(30, 50, kernel_size=3),  # shape: (B, 50, 11, 11)
            nn.ReLU(),
            nn.MaxPool2d(2),  # shape: (B, 50, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(start_dim=1),  # shape: (B, 1250)
            nn.Linear(50 * 5 * 5, 100),
            nn.ReLU(),
            nn.Linear(100, num_classes),  # shape: (B, K)
        )

    @classmethod
    def check_input(cls, input_shape: Sequence[int]) -> None:
        """Raise a one-line ValueError unless ``input_shape`` is 1x28x28."""
        _check_fixed_shape("fltrust_cnn", input_shape, cls.INPUT_SHAPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CifarCNN(nn.Module):
    """A small CNN for 3x32x32 inputs (CIFAR-10), cheap enough for many simulated clients.

    Two blocks of conv 3x3 (32, then 64 channels, padding 1) + ReLU + max-pool 2, then
    fc 128 + ReLU and fc K. With 10 classes it has 545,098 parameters:
    896 + 18,496 (convs) + 524,416 + 1,290 (fc).
    """

    INPUT_SHAPE = (3, 32, 32)

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.check_input(input_shape)
        self.input_shape = self.INPUT_SHAPE
        _check_num_classes("cifar_cnn", num_classes)
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, padding=1),  # shape: (B, 32, 32, 32)
            nn.ReLU(),
            nn.MaxPool2d(2),  # shape: (B, 32, 16, 16)
            nn.Conv2d(32, 64, kernel_size=3, padding=1),  # shape: (B, 64, 16, 16)
            nn.ReLU(),
            nn.MaxPool2d(2),  # shape: (B, 64, 8, 8)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(start_dim=1),  # shape: (B, 4096)
            nn.Linear(64 * 8 * 8, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),  # shape: (B, K)
        )

    @classmethod
    def check_input(cls, input_shape: Sequence[int]) -> None:
        """Raise a one-line ValueError unless ``input_shape`` is 3x32x32."""
        _check_fixed_shape("cifar_cnn", input_shape, cls.INPUT_SHAPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# The CNNs that need one exact shape, by config name: a shape error suggests the ones that fit.
_FIXED_SHAPES: dict[str, tuple[int, int, int]] = {
    "fltrust_cnn": FLTrustCNN.INPUT_SHAPE,
    "cifar_cnn": CifarCNN.INPUT_SHAPE,
}


def build_model(
    factory: Callable[..., nn.Module],
    input_shape: Sequence[int],
    num_classes: int,
    seed: int,
) -> nn.Module:
    """Build ``factory(input_shape=..., num_classes=...)`` with weights fixed by ``seed``.

    The global model's initial weights must depend only on the seed, and building a model must
    not shift the random draws of anything else in the process: the CPU RNG is forked, seeded,
    and restored on exit. Only the CPU generator is seeded, because models are built on CPU.

    Parameters
    ----------
    factory : Callable[..., nn.Module]
        What ``hydra.utils.instantiate(cfg.model)`` returns for a ``_partial_: true`` config.
    input_shape : tuple[int, int, int]
        ``(C, H, W)`` of one example.
    num_classes : int
        Number of output logits.
    seed : int
        Seed of the initial weights.

    Returns
    -------
    nn.Module
        The model, in eval mode.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        model = factory(input_shape=tuple(input_shape), num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory returned {type(model).__name__}, not a torch nn.Module")
    return model.eval()
