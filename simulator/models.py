"""Models the clients train: logistic regression, an MLP, CNNs, ResNet-20 and a character LSTM.

Each image model is built as ``Model(input_shape=(C, H, W), num_classes=K, **yaml_params)``,
takes float32 inputs of shape ``(B, C, H, W)`` and returns logits of shape ``(B, K)``. The
text model (``CharLSTM``) is built with ``input_shape=(L,)`` and ``num_classes`` = the
vocabulary size, and takes integer character ids of shape ``(B, L)``. Each class has
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
    "CharLSTM",
    "CifarCNN",
    "FLTrustCNN",
    "FemnistCNN",
    "LogisticRegression",
    "ResNet20",
    "build_model",
]

# Models that take any (C, H, W): what a shape error suggests instead of a fixed-shape CNN.
_ANY_SHAPE_MODELS = ("mlp", "logreg", "resnet20")
# Models of character sequences (L,): what an image model suggests for text.
_TEXT_MODELS = ("char_lstm",)


def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def _as_shape(model: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``input_shape`` as a ``(C, H, W)`` tuple of positive ints, or a one-line ValueError."""
    try:
        shape = tuple(int(s) for s in input_shape)
        exact = all(int(s) == s for s in input_shape)
    except (TypeError, ValueError):
        shape, exact = (), False
    if exact and len(shape) == 1:
        raise ValueError(
            f"model={model} takes images (C, H, W); the data set gives text sequences of "
            f"{shape[0]} characters: use model={' or model='.join(_TEXT_MODELS)}"
        )
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


class FemnistCNN(nn.Module):
    """The FEMNIST CNN of LEAF (Caldas et al. 2018), for 1x28x28 inputs only.

    conv 5x5 32 ('same' padding) + ReLU, max-pool 2, conv 5x5 64 + ReLU, max-pool 2, fc 2048 +
    ReLU, fc K (28 -> 14 -> 7). With LEAF's 62 classes it has 6,603,710 parameters:
    832 + 51,264 (convs) + 6,424,576 + 127,038 (fc).
    """

    INPUT_SHAPE = (1, 28, 28)

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.check_input(input_shape)
        self.input_shape = self.INPUT_SHAPE
        _check_num_classes("femnist_cnn", num_classes)
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2),  # shape: (B, 32, 28, 28)
            nn.ReLU(),
            nn.MaxPool2d(2),  # shape: (B, 32, 14, 14)
            nn.Conv2d(32, 64, kernel_size=5, padding=2),  # shape: (B, 64, 14, 14)
            nn.ReLU(),
            nn.MaxPool2d(2),  # shape: (B, 64, 7, 7)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(start_dim=1),  # shape: (B, 3136)
            nn.Linear(64 * 7 * 7, 2048),
            nn.ReLU(),
            nn.Linear(2048, num_classes),  # shape: (B, K)
        )

    @classmethod
    def check_input(cls, input_shape: Sequence[int]) -> None:
        """Raise a one-line ValueError unless ``input_shape`` is 1x28x28."""
        _check_fixed_shape("femnist_cnn", input_shape, cls.INPUT_SHAPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers and a parameter-free shortcut (He et al., option A):
    the input, subsampled by ``stride`` and zero-padded to the new channel count."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, :: self.stride, :: self.stride]  # shape: (B, C_in, H', W')
        if self.extra_channels:
            half = self.extra_channels // 2  # zeros on both sides of the channel axis
            shortcut = nn.functional.pad(shortcut, (0, 0, 0, 0, half, self.extra_channels - half))
        return torch.relu(out + shortcut)


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al., CVPR 2016, section 4.2): 6n + 2 layers with n = 3.

    conv 3x3 16 + BN + ReLU; three stages of three basic blocks with 16, 32 and 64 channels
    (the second and third stage start with stride 2); global average pooling; fc K. The
    shortcuts are identities, zero-padded where the channels double (option A), so the
    network has 0.27M parameters: with 3 input channels and 10 classes 269,722 (432 + 32
    for the stem, 14,016 + 51,072 + 203,520 for the stages, 650 for the fc), with 100
    classes 275,572. Batch norm brings buffers (running mean and variance, a batch
    counter), which travel and are aggregated with the weights, as for ``MLP`` with
    ``batch_norm`` (the README's threat-model policy on buffers). Global pooling makes it
    fit any ``(C, H, W)``; it was designed for 32x32.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.check_input(input_shape)
        shape = _as_shape("resnet20", input_shape)
        _check_num_classes("resnet20", num_classes)
        self.input_shape = shape
        self.num_classes = num_classes
        layers: list[nn.Module] = [
            nn.Conv2d(shape[0], 16, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        ]
        in_channels = 16
        for stage, channels in enumerate((16, 32, 64)):
            for block in range(3):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(_BasicBlock(in_channels, channels, stride))
                in_channels = channels
        self.features = nn.Sequential(*layers)  # shape: (B, 64, H/4, W/4)
        self.classifier = nn.Linear(64, num_classes)
        for module in self.modules():  # He et al.'s initialisation of the convolutions
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def check_input(input_shape: Sequence[int]) -> None:
        """Any positive ``(C, H, W)`` works."""
        _as_shape("resnet20", input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))  # shape: (B, 64)
        return self.classifier(pooled)  # shape: (B, K)


class CharLSTM(nn.Module):
    """The Shakespeare next-character model of LEAF (Caldas et al. 2018).

    Embedding of the ``num_classes`` characters in 8 dimensions, a two-layer LSTM of 256
    units, and a linear layer from the last step's output to the ``num_classes`` logits of
    the next character. Inputs are integer ids ``(B, L)`` (any integer dtype). PyTorch's
    LSTM has two bias vectors per layer where LEAF's TensorFlow cell has one, so it has
    2,048 more parameters than LEAF's: with the 81 characters of ``dataset=shakespeare``
    820,185 (648 + 272,384 + 526,336 + 20,817).

    Parameters
    ----------
    input_shape : tuple[int]
        ``(L,)``: characters per input sequence.
    num_classes : int
        Vocabulary size: input ids and predicted characters alike.
    embedding_dim : int (default: 8)
        Size of a character's embedding.
    hidden_size : int (default: 256)
        Units of each LSTM layer.
    num_layers : int (default: 2)
        Stacked LSTM layers.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        embedding_dim: int = 8,
        hidden_size: int = 256,
        num_layers: int = 2,
    ) -> None:
        super().__init__()
        self.check_input(input_shape)
        _check_num_classes("char_lstm", num_classes)
        for key, value in (
            ("embedding_dim", embedding_dim),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not is_int(value) or value < 1:
                raise ValueError(f"{key}={value!r}: must be an integer >= 1")
        self.input_shape = (int(input_shape[0]),)
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.classifier = nn.Linear(hidden_size, num_classes)

    @staticmethod
    def check_input(input_shape: Sequence[int]) -> None:
        """Raise a one-line ValueError unless ``input_shape`` is ``(L,)``, L >= 1."""
        shape = tuple(input_shape) if isinstance(input_shape, Iterable) else ()
        if len(shape) == 1 and is_int(shape[0]) and shape[0] >= 1:
            return
        if len(shape) == 3:
            raise ValueError(
                f"model=char_lstm takes text sequences (L,); the data set gives "
                f"{_shape_str(shape)} images: use model={', model='.join(_ANY_SHAPE_MODELS)} "
                "or a CNN"
            )
        raise ValueError(f"model=char_lstm needs input_shape=(L,) with L >= 1, got {input_shape!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(x.long())  # shape: (B, L, E)
        outputs, _ = self.lstm(embedded)  # shape: (B, L, H)
        return self.classifier(outputs[:, -1])  # shape: (B, K)


# The CNNs that need one exact shape, by config name: a shape error suggests the ones that fit.
_FIXED_SHAPES: dict[str, tuple[int, int, int]] = {
    "fltrust_cnn": FLTrustCNN.INPUT_SHAPE,
    "cifar_cnn": CifarCNN.INPUT_SHAPE,
    "femnist_cnn": FemnistCNN.INPUT_SHAPE,
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
    input_shape : tuple[int, ...]
        ``(C, H, W)`` of one image, or ``(L,)`` of one text sequence.
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
