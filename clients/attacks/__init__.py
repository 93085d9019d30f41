"""Model-poisoning attacks as pure functions of the benign updates they may see.

Contract: ``attack(benign, num_malicious, num_clients, *, own=None, **params)`` takes
``benign``, a float tensor ``(k, d)`` of the updates the adversary knows (partial
knowledge: its own clients' honest updates; full: every benign update of the round) and
returns ``(num_malicious, d)`` crafted updates, never mutating its inputs. Randomness
comes only from a ``generator`` keyword. An attack that searches against the defence
(``tailored``) takes a ``defend`` keyword: crafted ``(num_malicious, d)`` rows in, the
defence's ``Verdict`` on them out (``simulator.adversary`` passes the run's own defence,
run without keeping state). An attack whose parameters are computed (ALIE's z from n and
f, a searched gamma or lambda) takes a ``record`` dict and writes them there: the run
reports them per round as its effective parameters.
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
from clients.attacks.mimic import mimic, mimic_choice
from clients.attacks.minmax import halving_search, minmax, minmax_gamma, minsum, minsum_gamma
from clients.attacks.mpaf import mpaf
from clients.attacks.tailored import (
    DIRECTIONS,
    TailoredSearch,
    Verdict,
    defend_with,
    tailored,
    tailored_search,
)

__all__ = [
    "DIRECTIONS",
    "KNOWLEDGE",
    "FangKrumSearch",
    "TailoredSearch",
    "Verdict",
    "alie",
    "alie_z",
    "defend_with",
    "fang_krum",
    "fang_krum_lambda_bound",
    "fang_krum_search",
    "fang_trimmed_mean",
    "fang_trimmed_mean_intervals",
    "gaussian",
    "halving_search",
    "ipm",
    "mimic",
    "mimic_choice",
    "minmax",
    "minmax_gamma",
    "minsum",
    "minsum_gamma",
    "mpaf",
    "nan",
    "scaling",
    "sign_flip",
    "tailored",
    "tailored_search",
]
