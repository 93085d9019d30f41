"""Seeds derived from ``(seed, round, client id, ...)`` so no draw depends on order."""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(seed: int, *keys: int) -> int:
    """Return a 63-bit seed that depends only on ``seed`` and ``keys``.

    ``numpy.random.SeedSequence`` hashes the whole tuple, so ``(s, 1, 2)`` and
    ``(s, 2, 1)`` give unrelated streams, and nothing depends on call order.
    """
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF)


def torch_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``derive_seed(seed, *keys)``."""
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, *keys))
    return generator


def numpy_generator(seed: int, *keys: int) -> np.random.Generator:
    """A ``numpy`` generator seeded from ``derive_seed(seed, *keys)``."""
    return np.random.default_rng(derive_seed(seed, *keys))
