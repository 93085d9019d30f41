"""Post-processing: from the rule's aggregate to the step the global model takes."""

from __future__ import annotations

import math

import torch

from strategies.checks import is_real


class ServerLearningRate:
    """The global model moves by ``lr`` times the aggregate (``lr = 1``: the aggregate itself).

    Parameters
    ----------
    lr : float
        The server learning rate, a finite number > 0.
    """

    def __init__(self, lr: float) -> None:
        if not is_real(lr) or not 0 < lr < math.inf:
            raise ValueError(f"server_lr={lr!r}: must be a finite number > 0")
        self.lr = float(lr)
        self.name = "server_lr"

    def __call__(self, update: torch.Tensor) -> torch.Tensor:
        return self.lr * update
