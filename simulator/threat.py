"""The threat model's counts: how many clients are malicious, and what a defence is told.

One rounding rule everywhere: round half up, ``floor(fraction * n + 1/2)``. With all
clients training every round, the number of attackers a rule is told (``f``) equals the
true number of malicious clients.
"""

from __future__ import annotations

import math

MALICIOUS_STREAM = 8


def count_for(fraction: float, n: int) -> int:
    """``round_half_up(fraction * n)``: 0.25 of 10 is 3 (2.5 rounds up), 0.2 of 10 is 2."""
    if not 0 <= fraction < 1:
        raise ValueError(f"malicious_fraction={fraction}: must be in [0, 1)")
    # The small epsilon keeps products such as 0.15 * 10 = 1.4999999999999998 exact.
    return math.floor(fraction * n + 0.5 + 1e-9)


def attackers_told(num_malicious: int | None, fraction: float, clients_per_round: int) -> int:
    """The ``f`` a rule is told: the configured value, else the expected count per round."""
    if num_malicious is not None:
        return int(num_malicious)
    return count_for(fraction, clients_per_round)


def malicious_clients(seed: int, num_clients: int, fraction: float) -> list[int]:
    """The malicious client ids: ``count_for(fraction, num_clients)`` drawn once from the seed.

    Fixed for the whole run (the draw depends on nothing but the seed and the counts),
    and recorded in ``summary.json``.
    """
    from simulator.seeding import numpy_generator

    count = count_for(fraction, num_clients)
    rng = numpy_generator(seed, MALICIOUS_STREAM, num_clients)
    return sorted(int(c) for c in rng.choice(num_clients, size=count, replace=False))
