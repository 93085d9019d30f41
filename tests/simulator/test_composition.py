"""Every rule composes with every detector and pre-aggregation step, as a sweep would ask.

``oleander -m strategy=foolsgold,fedavg detect=none,flame ...`` checks each point before
anything runs; a rule, detector or step that cannot sit with another must say why in one
line, never crash.
"""

from __future__ import annotations

import itertools

import pytest

from simulator.config import ConfigError
from simulator.preflight import check_point
from tests.conftest import group_entries

STRATEGIES = group_entries("strategy")
DETECTORS = group_entries("detect")
PRE = group_entries("pre")


@pytest.mark.parametrize(("strategy", "detect"), list(itertools.product(STRATEGIES, DETECTORS)))
def test_every_rule_composes_with_every_detector(strategy: str, detect: str) -> None:
    # 10 clients, 2 malicious: every rule's precondition holds (Bulyan: told f = 1).
    told = ["strategy.num_malicious=1"] if strategy == "bulyan" else []
    check_point(
        [
            f"strategy={strategy}",
            f"detect={detect}",
            "malicious_fraction=0.2",
            "attack=sign_flip",
            "num_rounds=20",
            *told,
        ]
    )


@pytest.mark.parametrize(("strategy", "pre"), list(itertools.product(STRATEGIES, PRE)))
def test_every_rule_composes_with_every_pre_aggregation_step(strategy: str, pre: str) -> None:
    told = ["strategy.num_malicious=1"] if strategy == "bulyan" else []
    try:
        check_point(
            [
                f"strategy={strategy}",
                f"pre={pre}",
                "malicious_fraction=0.2",
                "attack=sign_flip",
                *told,
            ]
        )
    except ConfigError as error:
        # Bucketing halves the rows: a rule whose precondition needs more is refused,
        # in one line that names the step's group and the rule's condition.
        message = str(error)
        assert "\n" not in message and "with clients_per_round=10" in message, message
