"""The threat model's counts: how many clients are malicious, and what a defence is told.

One rounding rule everywhere: round half up, ``floor(fraction * n + 1/2)``. With all
clients training every round, the number of attackers a rule is told (``f``) equals the
true number of malicious clients.
"""

from __future__ import annotations

import math


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
