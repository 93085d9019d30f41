"""Client-side data poisoning: what a malicious client does to its own data and update.

These run inside the malicious client (the ClientApp), as in the papers: label flipping
changes its labels; a backdoor stamps a trigger on a share of its examples and relabels
them; ``boost`` multiplies the client's update before it is sent (model replacement,
Bagdasaryan et al. 2020; FLTrust's "scaling attack" boosts by the number of clients);
``project_norm`` keeps the trained model within a ball around the global one after every
local step (PGD; ``clients.projection``). Each also says how its success is measured on
the test set.

Threat-model policy: a malicious client's poisoned examples are chosen once per run, not
redrawn every round. ``poison_data`` draws them from the client's own generator, seeded by
``(seed, client)`` only, so the same examples carry the trigger in every round and
wherever the minibatch order puts them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from clients.checks import is_int, is_real
from clients.projection import BallProjection, CoordinateMask, chain, top_k_mask
from clients.training import StepHook

PATTERNS = ("square", "pixels")


class Poisoning:
    """What a client-side attack does: to the client's data once per run, to its weights
    after every local step (``step_hook``), to the update it sends (``boost``); and how
    its success is measured (``success_examples``).

    The ClientApp calls, for a malicious client in each round: ``prepare`` (run-wide data
    every attacker and the server derive alike), ``poison_data``, ``step_hook``, then
    training, then the boost. The server calls ``prepare`` and ``success_examples``.
    """

    boost: float = 1.0
    project_norm: float | None = None
    # Whether the client keeps the global model it received, to pass it to ``step_hook``
    # as ``previous_global`` at its next participation (Neurotoxin).
    needs_previous_global: bool = False

    def _set_boost(self, boost: float) -> None:
        """Keep ``boost``, a finite number > 0 (an infinite one only makes the update
        non-finite, which the server drops)."""
        if not is_real(boost) or boost <= 0:
            raise ValueError(f"boost={boost}: must be a finite number > 0")
        self.boost = boost

    def _set_project_norm(self, project_norm: float | None) -> None:
        """Keep ``project_norm``: None (no projection) or a finite number > 0."""
        if project_norm is not None and (not is_real(project_norm) or project_norm <= 0):
            raise ValueError(
                f"project_norm={project_norm}: must be a finite number > 0 (null: no projection)"
            )
        self.project_norm = project_norm

    def check_classes(self, num_classes: int) -> None:
        """``ValueError`` if the attack's labels do not fit ``num_classes``."""

    def check_shape(self, input_shape: tuple[int, int, int]) -> None:
        """``ValueError`` if the attack does not fit images of ``input_shape`` (C, H, W)."""

    def prepare(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> None:
        """Derive what every attacker and the server share from the whole training set
        ``(x, y)`` and a generator seeded by the run seed alone (the edge-case examples);
        the same inputs give the same result in every process. Nothing by default."""

    def poison_data(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        *,
        rank: int = 0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The client's training data, poisoned (new tensors where anything changes).

        ``rank`` is the client's position among the malicious ids (ascending);
        ``generator`` is seeded by ``(seed, client)`` only, so draws from it are the same
        in every round.
        """
        return x, y

    def step_hook(
        self,
        model: nn.Module,
        global_state: Mapping[str, torch.Tensor],
        previous_global: Mapping[str, torch.Tensor] | None = None,
    ) -> StepHook | None:
        """What to do to ``model`` after every local step: the projection onto the ball of
        radius ``project_norm`` around ``global_state`` when it is set, else nothing.
        ``previous_global`` is the global model this client received at its previous
        participation (None at its first, or when ``needs_previous_global`` is False)."""
        if self.project_norm is None:
            return None
        return BallProjection(global_state, self.project_norm)

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
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        *,
        rank: int = 0,
        generator: torch.Generator | None = None,
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


def poisoned_share(n: int, fraction: float, generator: torch.Generator | None) -> torch.Tensor:
    """Indices of the ``ceil(fraction * n)`` examples (of ``n``) a client poisons, drawn
    from ``generator`` (one ``randperm``); ``ValueError`` without a generator."""
    if generator is None:
        raise ValueError("generator=None: choosing the poisoned examples needs the client's one")
    count = min(n, math.ceil(round(fraction * n, 9)))  # round: 0.3 * 10 is 3, not 4
    return torch.randperm(n, generator=generator)[:count]


def _pixel_mask(
    pixels: Sequence[tuple[int, int]], input_shape: Sequence[int], key: str
) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of ``pixels`` (negative values count from the bottom/right);
    ``ValueError`` naming ``key`` for a pixel outside the image."""
    _, height, width = input_shape
    mask = torch.zeros(height, width, dtype=torch.bool)
    for row, col in pixels:
        if not (-height <= row < height and -width <= col < width):
            raise ValueError(f"{key}: ({row}, {col}) is outside {height}x{width} images")
        mask[row, col] = True
    return mask


class Backdoor(Poisoning):
    """A BadNets-style pixel trigger (Gu et al. 2017) with optional boosting and PGD.

    A share ``poison_fraction`` of the client's examples, ``ceil(poison_fraction * n)``
    of its ``n``, chosen once per run from its ``(seed, client)`` generator, gets the
    trigger stamped and its label set to ``target_label`` (0 in FLTrust); minibatches
    then hold them wherever the batch order puts them (``poison_fraction`` of each batch
    on average). ``pattern="square"`` fills a ``size x size`` square at ``position`` (row,
    column of its top-left corner; negative values count from the bottom/right);
    ``pattern="pixels"`` sets the listed ``pixels`` (the published MNIST trigger: (26,26),
    (24,26), (26,24), (25,25)). Pixels are set to ``value`` (the maximum, 1.0, for data in
    [0, 1]) in every channel.

    With ``project_norm=E`` the client runs projected gradient descent (Sun et al. 2019;
    Wang et al. 2020): after every local step its model is projected onto the L2 ball of
    radius ``E`` around the global model it received (``clients.projection``), so its
    trained update has norm at most ``E`` and passes norm bounding at ``E``. The boost
    applies after training, to the projected update: the client sends
    ``g + boost * (w - g)``, of norm at most ``boost * E`` (to pass a bound ``M`` with a
    boost, set ``E = M / boost``).

    Attack success rate: the share of triggered test images whose true label is not the
    target that the model assigns to the target.

    Parameters
    ----------
    target_label : int (default: 0)
    poison_fraction : float (default: 0.5)
        In (0, 1]: share of the client's examples that are poisoned.
    pattern : str (default: "square")
    size : int (default: 2)
    position : list[int] (default: [-2, -2]): the bottom-right 2x2 corner
    pixels : list[list[int]] | None
    value : float (default: 1.0)
    boost : float (default: 1.0)
        Factor on the update the client sends (model replacement / scaling attack).
    project_norm : float | None (default: None)
        ``E`` > 0: the PGD radius; None: no projection.
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
        project_norm: float | None = None,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"pattern={pattern}: must be one of {', '.join(PATTERNS)}")
        if pattern == "square" and size < 1:
            raise ValueError(f"size={size}: must be >= 1")
        if pattern == "pixels" and not pixels:
            raise ValueError(f"pixels={pixels}: pattern=pixels needs a list of [row, column]")
        self._set_common(target_label, poison_fraction, value, boost, project_norm)
        self.pattern = pattern
        self.size = size
        self.position = tuple(position)
        self.pixels = [tuple(p) for p in pixels] if pixels else []

    def _set_common(
        self,
        target_label: int,
        poison_fraction: float,
        value: float,
        boost: float,
        project_norm: float | None,
    ) -> None:
        if not is_real(poison_fraction) or not 0 < poison_fraction <= 1:
            raise ValueError(f"poison_fraction={poison_fraction}: must be in (0, 1]")
        self._set_boost(boost)
        self._set_project_norm(project_norm)
        self.target_label = target_label
        self.poison_fraction = poison_fraction
        self.value = value

    def check_classes(self, num_classes: int) -> None:
        if not 0 <= self.target_label < num_classes:
            raise ValueError(f"target_label={self.target_label}: must be in [0, {num_classes - 1}]")

    def check_shape(self, input_shape: tuple[int, int, int]) -> None:
        """Raise ``ValueError`` if the trigger does not fit images of ``input_shape``."""
        self.mask(input_shape)

    def mask(self, input_shape: tuple[int, int, int]) -> torch.Tensor:
        """Boolean ``(H, W)`` mask of the trigger's pixels (the one tested for success)."""
        _, height, width = input_shape
        if self.pattern == "pixels":
            key = f"pixels={[list(p) for p in self.pixels]}"
            return _pixel_mask(self.pixels, input_shape, key)
        mask = torch.zeros(height, width, dtype=torch.bool)
        row, col = self.position
        row = row + height if row < 0 else row
        col = col + width if col < 0 else col
        if not (0 <= row <= height - self.size and 0 <= col <= width - self.size):
            raise ValueError(
                f"position={list(self.position)}: a {self.size}x{self.size} trigger "
                f"does not fit {height}x{width} images"
            )
        mask[row : row + self.size, col : col + self.size] = True
        return mask

    def training_mask(self, input_shape: tuple[int, int, int], rank: int) -> torch.Tensor:
        """The trigger the malicious client of ``rank`` stamps in training: the whole one."""
        del rank
        return self.mask(input_shape)

    def stamp(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (``(B, C, H, W)``) with the trigger (or ``mask``) set; a new tensor."""
        if mask is None:
            mask = self.mask(tuple(x.shape[1:]))  # type: ignore[arg-type]
        return torch.where(mask.to(x.device), torch.full_like(x, self.value), x)

    def poison_data(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        *,
        rank: int = 0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stamp and relabel the client's ``ceil(poison_fraction * n)`` poisoned examples,
        drawn from ``generator`` (seeded by ``(seed, client)``: the same every round)."""
        chosen = poisoned_share(len(y), self.poison_fraction, generator)
        x = x.clone()
        y = y.clone()
        x[chosen] = self.stamp(x[chosen], self.training_mask(tuple(x.shape[1:]), rank))  # type: ignore[arg-type]
        y[chosen] = self.target_label
        return x, y

    def success_examples(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """Triggered test images whose true label is not the target, and the target."""
        return self.stamp(x[y != self.target_label]), self.target_label


class DBA(Backdoor):
    """Distributed backdoor attack (Xie, Huang, Chen, Li, ICLR 2020).

    A global trigger is split into ``K`` local patterns; the malicious client of rank
    ``k`` (its position among the malicious ids, ascending) stamps only pattern
    ``k mod K`` on its poisoned examples, and the attack success rate is measured with the
    global trigger, the union of the patterns (the paper's finding: the global trigger
    succeeds more than any local one).

    Default layout: the paper's MNIST trigger, four horizontal bars of ``1 x bar_length``
    pixels in two rows, ``gap`` pixels apart, from ``position`` (DBA's code,
    ``utils/mnist_params.yaml``: bars of 1x4, gap 2, at (0, 0): rows 0 and 3, columns 0-3
    and 6-9; pattern order: top-left, top-right, bottom-left, bottom-right). Images
    narrower than 20 pixels (8x8 digits) get bars of 1x2 with gap 1 (rows 0 and 2,
    columns 0-1 and 3-4): the MNIST layout at 8/28 scale would make 1-pixel bars, which
    are no longer bars, and the global trigger covers 8 of 64 pixels (12.5%, against 16 of
    784 on MNIST). ``patterns`` replaces the layout with explicit pixel lists.

    Poison share, boost and ``project_norm`` as ``Backdoor``. The paper's MNIST runs use
    target 2 and 20 poisoned of 64 per batch; the defaults here are ``Backdoor``'s.

    Parameters
    ----------
    target_label : int (default: 0)
    poison_fraction : float (default: 0.5)
    patterns : list[list[list[int]]] | None (default: None)
        ``K`` lists of [row, column] pixels; None: the four-bar layout.
    bar_length, gap : int | None (default: None)
        Bar length >= 1 and gap >= 0 of the layout; None: 4 and 2 on images at least 20
        pixels wide, else 2 and 1.
    position : list[int] (default: [0, 0])
        Top-left pixel of the layout (>= 0).
    value : float (default: 1.0)
    boost : float (default: 1.0)
    project_norm : float | None (default: None)
    """

    def __init__(
        self,
        target_label: int = 0,
        poison_fraction: float = 0.5,
        patterns: list[list[list[int]]] | None = None,
        bar_length: int | None = None,
        gap: int | None = None,
        position: tuple[int, int] | list[int] = (0, 0),
        value: float = 1.0,
        boost: float = 1.0,
        project_norm: float | None = None,
    ) -> None:
        if patterns is not None:
            if not patterns or any(not p for p in patterns):
                raise ValueError(f"patterns={patterns}: needs one or more non-empty pixel lists")
            if any(len(pixel) != 2 for p in patterns for pixel in p):
                raise ValueError(f"patterns={patterns}: every pixel is a [row, column] pair")
        if bar_length is not None and (not is_int(bar_length) or bar_length < 1):
            raise ValueError(f"bar_length={bar_length}: must be an integer >= 1 (or null)")
        if gap is not None and (not is_int(gap) or gap < 0):
            raise ValueError(f"gap={gap}: must be an integer >= 0 (or null)")
        if len(position) != 2 or any(not is_int(p) or p < 0 for p in position):
            raise ValueError(f"position={list(position)}: must be [row, column], both >= 0")
        self._set_common(target_label, poison_fraction, value, boost, project_norm)
        self.patterns = [[tuple(pixel) for pixel in p] for p in patterns] if patterns else None
        self.bar_length = bar_length
        self.gap = gap
        self.position = tuple(position)

    def local_patterns(self, input_shape: tuple[int, int, int]) -> list[list[tuple[int, int]]]:
        """The ``K`` local patterns as pixel lists, for images of ``input_shape``;
        ``ValueError`` if one does not fit."""
        _, height, width = input_shape
        if self.patterns is not None:
            key = f"patterns={[[list(px) for px in p] for p in self.patterns]}"
            for pattern in self.patterns:
                _pixel_mask(pattern, input_shape, key)
            return self.patterns
        wide = width >= 20
        length = self.bar_length if self.bar_length is not None else (4 if wide else 2)
        gap = self.gap if self.gap is not None else (2 if wide else 1)
        row0, col0 = self.position
        # Bar (i, j): row row0 + i * (gap + 1), columns from col0 + j * (length + gap).
        patterns = [
            [(row0 + i * (gap + 1), col0 + j * (length + gap) + c) for c in range(length)]
            for i in (0, 1)
            for j in (0, 1)
        ]
        last_row, last_col = patterns[-1][-1]
        if last_row >= height or last_col >= width:
            raise ValueError(
                f"position={list(self.position)}: four 1x{length} bars with gap {gap} reach "
                f"pixel ({last_row}, {last_col}), outside {height}x{width} images"
            )
        return patterns

    def mask(self, input_shape: tuple[int, int, int]) -> torch.Tensor:
        """The global trigger: the union of the local patterns."""
        pixels = [pixel for pattern in self.local_patterns(input_shape) for pixel in pattern]
        return _pixel_mask(pixels, input_shape, "patterns")

    def training_mask(self, input_shape: tuple[int, int, int], rank: int) -> torch.Tensor:
        """Local pattern ``rank mod K``."""
        patterns = self.local_patterns(input_shape)
        return _pixel_mask(patterns[rank % len(patterns)], input_shape, "patterns")


class Neurotoxin(Backdoor):
    """Neurotoxin (Zhang et al., ICML 2022): a backdoor trained only on the coordinates
    the last global update changed least.

    The attacker keeps the global model it received at its previous participation,
    ``g_prev``; with the one it receives now, ``g``, the last global update it saw is
    ``g - g_prev`` (several rounds' updates together when it was not sampled in between).
    The top ``top_k_percent``% of the model's parameter coordinates by ``|g - g_prev|``
    (``ceil(k d / 100)`` of the ``d`` coordinates, over all layers jointly, ties to the
    first) are masked: after every local step they are reset to ``g``'s values, so the
    update on them is exactly zero and the backdoor is trained in coordinates honest
    clients rarely move, where it survives longer (``clients.projection.CoordinateMask``).
    At its first participation there is no previous model: the client trains that round
    without a mask (a plain backdoor round). The mask covers the parameters, not buffers.

    ``k = 1%`` is the paper's main setting. The paper's description is followed here (the
    previous global update); the authors' public code instead ranks coordinates by the
    attacker's own gradient on clean data (``grad_mask_cv``, keeping a share ``ratio``).

    The previous global model is node state: the ClientApp keeps it in the Flower
    ``Context.state`` of the node, which persists across rounds on both engines. A run
    resumed from a checkpoint starts with fresh nodes: each attacker's first round after
    the resume is again unmasked, so a resumed run can differ from an uninterrupted one.

    Trigger, poison share, boost and ``project_norm`` as ``Backdoor`` (with both, the
    mask is applied first, then the projection, which keeps masked coordinates at zero).

    Parameters
    ----------
    top_k_percent : float (default: 1.0)
        ``k`` in (0, 100): the share, in percent, of coordinates masked.
    target_label, poison_fraction, pattern, size, position, pixels, value, boost, project_norm
        As ``Backdoor``'s (the trigger, its share, the boost, the PGD radius).
    """

    needs_previous_global = True

    def __init__(
        self,
        top_k_percent: float = 1.0,
        target_label: int = 0,
        poison_fraction: float = 0.5,
        pattern: str = "square",
        size: int = 2,
        position: tuple[int, int] | list[int] = (-2, -2),
        pixels: list[list[int]] | None = None,
        value: float = 1.0,
        boost: float = 1.0,
        project_norm: float | None = None,
    ) -> None:
        if not is_real(top_k_percent) or not 0 < top_k_percent < 100:
            raise ValueError(f"top_k_percent={top_k_percent}: must be in (0, 100)")
        super().__init__(
            target_label=target_label,
            poison_fraction=poison_fraction,
            pattern=pattern,
            size=size,
            position=position,
            pixels=pixels,
            value=value,
            boost=boost,
            project_norm=project_norm,
        )
        self.top_k_percent = top_k_percent

    def mask_of(
        self,
        model: nn.Module,
        global_state: Mapping[str, torch.Tensor],
        previous_global: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """The masked coordinates of ``model``'s parameters: the top-k% of ``|g - g_prev|``."""
        names = [name for name, _ in model.named_parameters()]
        update = {name: global_state[name] - previous_global[name] for name in names}
        return top_k_mask(update, names, self.top_k_percent)

    def step_hook(
        self,
        model: nn.Module,
        global_state: Mapping[str, torch.Tensor],
        previous_global: Mapping[str, torch.Tensor] | None = None,
    ) -> StepHook | None:
        """The mask (none at the first participation), then the PGD projection if set."""
        masked = None
        if previous_global is not None:
            masked = CoordinateMask(
                global_state, self.mask_of(model, global_state, previous_global)
            )
        return chain(masked, super().step_hook(model, global_state, previous_global))
