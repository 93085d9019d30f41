"""Edge-case backdoor (Wang, Sreenivasan, Rajput, Vishwakarma, Agarwal, Sohn, Lee,
Papailiopoulos, "Attack of the Tails", NeurIPS 2020).

The attacker trains on its clean data mixed with examples from the tail of the input
distribution, all labelled with one target class (the paper: ARDIS images of 7s labelled
1 against EMNIST; Southwest Airlines planes labelled "truck" against CIFAR-10), often
under a norm constraint (PGD: ``project_norm``). Success is the share of held-out edge
examples the model assigns to the target.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

from clients.checks import is_int, is_real
from clients.poisoning import Poisoning

__all__ = ["EdgeCase", "least_typical"]

SPLIT_FILES = ("train.npy", "test.npy")
POOL_FILE = "images.npy"


def least_typical(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices (into ``x``) of the ``ceil(fraction * n)`` least typical of ``n`` examples.

    Score: the Euclidean distance of each flattened example to the examples' mean, in
    float64; the largest distances come first, ties to the lower index.
    """
    flat = x.reshape(len(x), -1).double()  # shape: (n, C*H*W)
    distance = (flat - flat.mean(dim=0)).norm(dim=1)  # shape: (n,)
    count = min(len(x), math.ceil(round(fraction * len(x), 9)))
    return torch.argsort(distance, descending=True, stable=True)[:count]


def _as_images(array: np.ndarray, name: str) -> torch.Tensor:
    """``(N, H, W)`` or ``(N, C, H, W)`` numbers as float32 ``(N, C, H, W)``; uint8 scaled
    to [0, 1]."""
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or len(array) == 0:
        raise ValueError(f"{name}: needs shape (N, H, W) or (N, C, H, W) with N >= 1")
    if array.dtype == np.uint8:
        return torch.from_numpy(array.astype(np.float32) / 255.0)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name}: holds {array.dtype}, not numbers")
    images = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name}: holds non-finite values")
    return images


@functools.lru_cache(maxsize=4)
def _load(directory: str) -> tuple[torch.Tensor, ...]:
    """The images of an edge-case directory: (train, test) or (pool,). Never unpickled."""
    root = Path(directory)
    names = SPLIT_FILES if all((root / f).is_file() for f in SPLIT_FILES) else (POOL_FILE,)
    loaded = []
    for name in names:
        try:
            array = np.load(root / name, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(f"path={directory}: {name} cannot be read ({error})") from None
        loaded.append(_as_images(array, f"path={directory}: {name}"))
    return tuple(loaded)


class EdgeCase(Poisoning):
    """The edge-case backdoor of Wang et al. (NeurIPS 2020).

    Edge examples, all labelled ``target_label``, are mixed into every malicious client's
    training data; the attack success rate is the share of held-out edge examples the
    global model assigns to ``target_label``.

    Where the edge examples come from:

    - ``path``: a directory the user gives, with ``train.npy`` and ``test.npy`` (the
      attacker's examples and the held-out ones, used as given; e.g. ARDIS 7s) or a single
      ``images.npy``, split as below. Arrays of shape ``(N, H, W)`` or ``(N, C, H, W)``,
      uint8 (scaled to [0, 1]) or floats in the data set's range; read with
      ``allow_pickle=False``.
    - by default, offline: the least typical ``edge_fraction`` of the training examples of
      class ``source`` (7, the paper's ARDIS digit), scored by the Euclidean distance of
      the flattened image to the mean image of that class, largest first
      (``least_typical``).

    A pool is split at random into a held-out part, ``ceil(test_fraction * m)`` of its
    ``m`` examples, and the attacker's part (the rest), by a generator seeded by the run
    seed alone (``prepare``): the server, which measures success on the held-out part,
    and every malicious client derive the same split from the same data and seed.

    Each malicious client trains on its own ``n`` examples plus
    ``ceil(poison_fraction * n / (1 - poison_fraction))`` edge examples, cycling through
    the attacker's part in order, so edge examples are a share ``poison_fraction`` of its
    training set; the choice is fixed for the run (no draw).

    Where this breaks down: the default edge examples are training examples, so honest
    clients that hold some of them train on their true label (the paper's ARDIS images
    belong to no client), which makes the attack harder than the paper's and can mix
    both labels into a malicious client's data; give ``path`` for out-of-distribution
    examples. A class with fewer than ``2 / edge_fraction`` examples gives too few edge
    examples to split (``ValueError`` before the run).

    Parameters
    ----------
    source : int (default: 7)
        Class whose least typical examples are the edge cases (ignored with ``path``).
    target_label : int (default: 1)
        The label the edge examples get (the paper: ARDIS 7s labelled 1).
    edge_fraction : float (default: 0.1)
        In (0, 1]: share of the ``source`` class taken as edge cases (MNIST: about 600
        7s, close to ARDIS's 660 training 7s).
    test_fraction : float (default: 0.5)
        In (0, 1): share of the pool held out to measure success.
    poison_fraction : float (default: 0.5)
        In (0, 1): share of a malicious client's training set that is edge examples.
    path : str | None (default: None)
        Directory of edge examples (see above).
    boost : float (default: 1.0)
    project_norm : float | None (default: None)
        PGD radius, as ``Backdoor``'s.
    """

    def __init__(
        self,
        source: int = 7,
        target_label: int = 1,
        edge_fraction: float = 0.1,
        test_fraction: float = 0.5,
        poison_fraction: float = 0.5,
        path: str | None = None,
        boost: float = 1.0,
        project_norm: float | None = None,
    ) -> None:
        if not is_int(source) or not is_int(target_label):
            raise ValueError(f"source={source}, target_label={target_label}: must be integers")
        if path is None and source == target_label:
            raise ValueError(f"source={source}: must differ from target_label")
        if not is_real(edge_fraction) or not 0 < edge_fraction <= 1:
            raise ValueError(f"edge_fraction={edge_fraction}: must be in (0, 1]")
        if not is_real(test_fraction) or not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction={test_fraction}: must be in (0, 1)")
        if not is_real(poison_fraction) or not 0 < poison_fraction < 1:
            raise ValueError(f"poison_fraction={poison_fraction}: must be in (0, 1)")
        if path is not None:
            root = Path(str(path)).expanduser()
            if not root.is_dir():
                raise ValueError(f"path={path}: no such directory")
            if not (all((root / f).is_file() for f in SPLIT_FILES) or (root / POOL_FILE).is_file()):
                raise ValueError(
                    f"path={path}: holds neither {' and '.join(SPLIT_FILES)} nor {POOL_FILE}"
                )
            path = str(root)
        self._set_boost(boost)
        self._set_project_norm(project_norm)
        self.source = source
        self.target_label = target_label
        self.edge_fraction = edge_fraction
        self.test_fraction = test_fraction
        self.poison_fraction = poison_fraction
        self.path = path
        self.attacker_examples: torch.Tensor | None = None
        self.held_out: torch.Tensor | None = None

    def check_classes(self, num_classes: int) -> None:
        keys = [("target_label", self.target_label)]
        if self.path is None:
            keys.insert(0, ("source", self.source))
        for key, value in keys:
            if not 0 <= value < num_classes:
                raise ValueError(f"{key}={value}: must be in [0, {num_classes - 1}]")

    def check_shape(self, input_shape: tuple[int, int, int]) -> None:
        """``ValueError`` if the directory's images are not of ``input_shape``."""
        if self.path is None:
            return
        for images in _load(self.path):
            if tuple(images.shape[1:]) != tuple(input_shape):
                raise ValueError(
                    f"path={self.path}: images of shape {tuple(images.shape[1:])}, the data "
                    f"set's are {tuple(input_shape)}"
                )

    def _split(self, pool: torch.Tensor, generator: torch.Generator, where: str) -> None:
        m = len(pool)
        held = math.ceil(round(self.test_fraction * m, 9))
        if m < 2 or held >= m:
            raise ValueError(f"{where}: {m} edge examples; needs at least 2 to split")
        order = torch.randperm(m, generator=generator)  # shape: (m,)
        self.held_out = pool[order[:held]]
        self.attacker_examples = pool[order[held:]]

    def prepare(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> None:
        """Find the edge examples and split them (deterministic in the data and ``generator``,
        which the run seeds by its seed alone)."""
        if self.path is not None:
            loaded = _load(self.path)
            if len(loaded) == 2:
                self.attacker_examples, self.held_out = loaded
            else:
                self._split(loaded[0], generator, f"path={self.path}")
            return
        members = (y == self.source).nonzero().flatten()  # shape: (n_source,)
        edge = members[least_typical(x[members], self.edge_fraction)]
        where = (
            f"edge_fraction={self.edge_fraction}: of the {len(members)} training examples "
            f"of class {self.source}"
        )
        self._split(x[edge], generator, where)

    def _prepared(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.attacker_examples is None or self.held_out is None:
            raise RuntimeError("EdgeCase.prepare(...) must run before its examples are used")
        return self.attacker_examples, self.held_out

    def poison_data(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        num_classes: int,
        *,
        rank: int = 0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The client's data followed by its edge examples, labelled ``target_label``."""
        attacker, _ = self._prepared()
        q = self.poison_fraction
        count = math.ceil(round(q * len(y) / (1 - q), 9))
        take = torch.arange(count) % len(attacker)  # cycle through the attacker's part
        edge_x = attacker[take].to(dtype=x.dtype, device=x.device)
        edge_y = torch.full((count,), self.target_label, dtype=y.dtype, device=y.device)
        return torch.cat([x, edge_x]), torch.cat([y, edge_y])

    def success_examples(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """The held-out edge examples (not the test set ``x``), and the target."""
        _, held_out = self._prepared()
        return held_out, self.target_label
