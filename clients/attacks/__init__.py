"""Model-poisoning attacks as pure functions of the benign updates they may see.

Contract: ``attack(benign, num_malicious, num_clients, *, own=None, **params)`` takes
``benign``, a float tensor ``(k, d)`` of the updates the adversary knows (partial
knowledge: its own clients' honest updates; full: every benign update of the round) and
returns ``(num_malicious, d)`` crafted updates, never mutating its inputs. Randomness
comes only from a ``generator`` keyword.
"""

from clients.attacks.alie import alie, alie_z
from clients.attacks.basic import KNOWLEDGE, gaussian, nan, scaling, sign_flip
from clients.attacks.fang import (
    FangKrumSearch,
    fang_krum,
    fang_krum_lambda_bound,
    fang_krum_search,
    fang_trimmed_mean,
    fang_trimmed_mean_intervals,
)
from clients.attacks.ipm import ipm
from clients.attacks.minmax import halving_search, minmax, minmax_gamma, minsum, minsum_gamma
from clients.attacks.mpaf import mpaf

__all__ = [
    "KNOWLEDGE",
    "FangKrumSearch",
    "alie",
    "alie_z",
    "fang_krum",
    "fang_krum_lambda_bound",
    "fang_krum_search",
    "fang_trimmed_mean",
    "fang_trimmed_mean_intervals",
    "gaussian",
    "halving_search",
    "ipm",
    "minmax",
    "minmax_gamma",
    "minsum",
    "minsum_gamma",
    "mpaf",
    "nan",
    "scaling",
    "sign_flip",
]
