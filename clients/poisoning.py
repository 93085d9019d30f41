"""Client-side data poisoning: what a malicious client does to its own data and update.

These run inside the malicious client (the ClientApp), as in the papers: label flipping
changes its labels once; a backdoor stamps a trigger on a share of every minibatch and
relabels those examples; ``boost`` multiplies the client's update before it is sent
(model replacement, Bagdasaryan et al. 2020; FLTrust's "scaling attack" boosts by the
number of clients). Each also says how its success is measured on the test set.
"""

from __future__ import annotations

import torch

from clients.checks import is_real

PATTERNS = ("square", "pixels")


class Poisoning:
    """What a client-side attack does: to the client's data once, to every minibatch, to
    the update it sends (``boost``); and how its success is measured on the test set."""

    boost: float = 1.0

    def _set_boost(self, boost: float) -> None:
        """Keep ``boost``, a finite number > 0 (an infinite one only makes the update
        non-finite, which the server drops)."""
        if not is_real(boost) or boost <= 0:
            raise ValueError(f"boost={boost}: must be a finite number > 0")
        self.boost = boost

    def check_classes(self, num_classes: int) -> None:
        """``ValueError`` if the attack's labels do not fit ``num_classes``."""

    def poison_data(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def poison_batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def success_examples(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """Test images whose prediction as the target counts as success, and the target;
        None where the attack has no target."""
        return None


class LabelFlip(Poisoning):
    """Label flipping: ``l -> C - 1 - l`` on every example (Fang et al. 2020, FLTrust), or,
    with ``source`` and ``target`` set, a targeted flip ``source -> target`` only.

    Attack success rate (targeted flip only): the share of test images of class
    ``source`` that the model assigns to ``target``.

    Parameters
    ----------
    source, target : int | None (default: None)
        Both None: the untargeted flip. Both set: the targeted flip.
    boost : float (default: 1.0)
        Factor on the update the client sends.
    """

    def __init__(
        self,
        source: int | None = None,
        target: int | None = None,
        boost: float = 1.0,
    ) -> None:
        if (source is None) != (target is None):
            raise ValueError(f"source={source}, target={target}: set both (targeted) or neither")
        if source is not None and source == target:
            raise ValueError(f"source={source}: must differ from target")
        self._set_boost(boost)
        self.source = source
        self.target = target

    @property
    def targeted(self) -> bool:
        return self.source is not None

    def check_classes(self, num_classes: int) -> None:
        for key, value in (("source", self.source), ("target", self.target)):
            if value is not None and not 0 <= value < num_classes:
                raise ValueError(f"{key}={value}: must be in [0, {num_classes - 1}]")

    def poison_data(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The client's data with its labels flipped (a new label tensor; ``x`` as is)."""
        if self.targeted:
            return x, torch.where(y == self.source, torch.full_like(y, self.target), y)
        return x, (num_classes - 1) - y

    def success_examples(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """Test images whose prediction as ``target`` counts as success, and ``target``."""
        if not self.targeted:
            return None
        return x[y == self.source], int(self.target)  # type: ignore[arg-type]


class Backdoor(Poisoning):
    """A BadNets-style pixel trigger (Gu et al. 2017) with optional boosting.

    A share ``poison_fraction`` of every local minibatch gets the trigger stamped and its
    label set to ``target_label`` (0 in FLTrust). ``pattern="square"`` fills a
    ``size x size`` square at ``position`` (row, column of its top-left corner; negative
    values count from the bottom/right); ``pattern="pixels"`` sets the listed ``pixels``
    (the published MNIST trigger: (26,26), (24,26), (26,24), (25,25)). Pixels are set to
    ``value`` (the maximum, 1.0, for data in [0, 1]) in every channel.

    Attack success rate: the share of triggered test images whose true label is not the
    target that the model assigns to the target.

    Parameters
    ----------
    target_label : int (default: 0)
    poison_fraction : float (default: 0.5)
        In (0, 1]: share of each minibatch that is poisoned.
    pattern : str (default: "square")
    size : int (default: 2)
    position : list[int] (default: [-2, -2]): the bottom-right 2x2 corner
    pixels : list[list[int]] | None
    value : float (default: 1.0)
    boost : float (default: 1.0)
        Factor on the update the client sends (model replacement / scaling attack).
    """

    def __init__(
        self,
        target_label: int = 0,
        poison_fraction: float = 0.5,
        pattern: str = "square",
        size: int = 2,
        position: tuple[int, int] | list[int] = (-2, -2),
        pixels: list[list[int]] | None = None,
        value: float = 1.0,
        boost: float = 1.0,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"pattern={pattern}: must be one of {', '.join(PATTERNS)}")
        if not 0 < poison_fraction <= 1:
            raise ValueError(f"poison_fraction={poison_fraction}: must be in (0, 1]")
        if pattern == "square" and size < 1:
            raise ValueError(f"size={size}: must be >= 1")
        if pattern == "pixels" and not pixels:
            raise ValueError(f"pixels={pixels}: pattern=pixels needs a list of [row, column]")
        self._set_boost(boost)
        self.target_label = target_label
        self.poison_fraction = poison_fraction
        self.pattern = pattern
        self.size = size
        self.position = tuple(position)
        self.pixels = [tuple(p) for p in pixels] if pixels else []
        self.value = value

    def check_classes(self, num_classes: int) -> None:
        if not 0 <= self.target_label < num_classes:
            raise ValueError(f"target_label={self.target_label}: must be in [0, {num_classes - 1}]")

    def check_shape(self, input_shape: tuple[int, int, int]) -> None:
        """Raise ``ValueError`` if the trigger does not fit images of ``input_shape``."""
        self.mask(input_shape)

    def mask(self, input_shape: tuple[int, int, int]) -> torch.Tensor:
        """Boolean ``(H, W)`` mask of the trigger's pixels."""
        _, height, width = input_shape
        mask = torch.zeros(height, width, dtype=torch.bool)
        if self.pattern == "square":
            row, col = self.position
            row = row + height if row < 0 else row
            col = col + width if col < 0 else col
            if not (0 <= row <= height - self.size and 0 <= col <= width - self.size):
                raise ValueError(
                    f"position={list(self.position)}: a {self.size}x{self.size} trigger "
                    f"does not fit {height}x{width} images"
                )
            mask[row : row + self.size, col : col + self.size] = True
        else:
            for row, col in self.pixels:
                if not (-height <= row < height and -width <= col < width):
                    raise ValueError(
                        f"pixels={[list(p) for p in self.pixels]}: ({row}, {col}) is outside "
                        f"{height}x{width} images"
                    )
                mask[row, col] = True
        return mask

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (``(B, C, H, W)``) with the trigger set; a new tensor."""
        mask = self.mask(tuple(x.shape[1:])).to(x.device)  # type: ignore[arg-type]
        return torch.where(mask, torch.full_like(x, self.value), x)

    def poison_batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stamp and relabel ``ceil(poison_fraction * B)`` randomly chosen examples."""
        count = min(len(y), int(torch.ceil(torch.tensor(self.poison_fraction * len(y)))))
        chosen = torch.randperm(len(y), generator=generator)[:count].to(y.device)
        x = x.clone()
        y = y.clone()
        x[chosen] = self.stamp(x[chosen])
        y[chosen] = self.target_label
        return x, y

    def success_examples(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """Triggered test images whose true label is not the target, and the target."""
        return self.stamp(x[y != self.target_label]), self.target_label
