"""The threat model of a run: who is malicious, what they do, what a defence is told.

Built once from the config (``simulator.components.threat_model``), handed to the
adversary, the clients, the defence and the results, and written as is into
``summary.json``. One rounding rule everywhere: round half up, ``floor(fraction * n + 1/2)``.

Two kinds of attacker: compromised real clients (``malicious_fraction`` of the
``num_clients`` real ones, drawn from the seed) and fake clients (``fake_clients``, added by
the attacker, Cao and Gong, CVPR Workshops 2022). Fake clients get the ids after the real
ones, are sampled like them, hold no data and never train (``FAKE_REPLY``); both kinds
are malicious in every record.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from clients.attacks import KNOWLEDGE
from simulator.seeding import Stream, numpy_generator

ROUNDING = "round half up: floor(fraction * n + 1/2)"
# Where an attack runs, by kind (``simulator.components.configured_site``).
SITES = {
    "adversary": "server-side colluding adversary, between replies and aggregation",
    "client": "inside the malicious clients",
    "none": "none",
}
# What a fake client does, as summary.json states it (simulator.client_app, simulator.adversary).
FAKE_REPLY = (
    "fake clients hold no data and never train: each answers a train message with the "
    "global weights unchanged (a zero update), the real clients' mean example count and "
    "no loss, and the adversary replaces its row; a fake client has no honest update, so "
    "with partial knowledge the adversary sees only the compromised real clients' "
    "updates, and a round where it sees none sends the rows as received (recorded as "
    "attack failed)"
)


# What every run's attackers can and cannot do, stated in summary.json (README: "Policies").
POLICIES = {
    "poisoned_examples": "chosen once per run for each malicious client, seeded by (seed, "
    "client); the same examples are poisoned every round",
    "knowledge": "a colluding adversary with full knowledge sees the benign updates of this "
    "round's sampled clients only, never a stale update of a client not sampled",
    "not_sampled": "an attacker not sampled in a round does nothing that round; the attack "
    "success rate is measured every round and rounds.csv counts the attackers sampled",
    "buffers": "everything in the model's state_dict is part of the update the defence sees "
    "and aggregates, batch-norm running statistics included; integer buffers are "
    "aggregated as floats and cast back",
    "window": "attackers attack in rounds start_round..stop_round and train honestly outside",
}


def count_for(fraction: float, n: int) -> int:
    """``round_half_up(fraction * n)``: 0.25 of 10 is 3 (2.5 rounds up), 0.2 of 10 is 2."""
    # The small epsilon keeps products such as 0.15 * 10 = 1.4999999999999998 exact.
    return math.floor(fraction * n + 0.5 + 1e-9)


def malicious_clients(seed: int, num_clients: int, count: int) -> tuple[int, ...]:
    """``count`` malicious client ids drawn once from the seed, ascending.

    Fixed for the whole run (the draw depends on nothing but the seed and the counts).
    """
    if count == 0:
        return ()
    rng = numpy_generator(seed, Stream.MALICIOUS, num_clients)
    return tuple(sorted(int(c) for c in rng.choice(num_clients, size=count, replace=False)))


@dataclass(frozen=True)
class ThreatModel:
    """Who attacks, how, and what the defence is told, for one run.

    Attributes
    ----------
    attack : str
        The attack's name (``none`` for a clean run).
    site : str
        ``client``, ``adversary`` or ``none`` (a key of ``SITES``).
    where : str
        Where it runs: in the malicious clients, or in the server-side adversary.
    knowledge : str | None
        What a colluding adversary sees: ``partial`` (its own clients' honest updates) or
        ``full`` (every benign update of the round); None for client-side attacks.
    parameters : dict
        The attack's own settings (ALIE's z and sign, a trigger, a boost).
    malicious_fraction : float
        The true share of all clients that are malicious.
    num_clients : int
        Clients in the federation.
    malicious_clients : tuple[int, ...]
        The compromised real clients' ids, drawn once from the seed.
    num_malicious : int
        ``len(malicious_clients)``: ``round_half_up(malicious_fraction * num_clients)``.
    malicious_per_round : int
        The expected number of attackers (compromised and fake) among the clients sampled
        each round: ``round_half_up(share * clients_per_round)`` with ``share`` the
        attackers' expected share of the federation,
        ``(malicious_fraction * num_clients + fake_clients) / (num_clients + fake_clients)``
        (``malicious_fraction`` without fake clients).
    num_malicious_told : int
        f, the number of attackers a defence is told: ``strategy.num_malicious`` when set,
        else ``malicious_per_round``.
    fake_clients : int
        Clients the attacker adds to the federation (``fake_clients=K``).
    fake_client_ids : tuple[int, ...]
        Their ids: ``num_clients .. num_clients + fake_clients - 1``, after the real ones.
    fake_reply : str
        What a fake client sends (``FAKE_REPLY``).
    start_round, stop_round : int, int | None
        The attack window: attackers attack in rounds ``start_round .. stop_round`` (no end
        when None) and train honestly (fake clients: send nothing of their own) outside it;
        the attack success rate is measured every round.
    rounding : str
        The rounding rule of every count above.
    """

    attack: str
    site: str
    where: str
    knowledge: str | None
    parameters: dict[str, Any]
    malicious_fraction: float
    num_clients: int
    malicious_clients: tuple[int, ...]
    malicious_per_round: int
    num_malicious_told: int
    fake_clients: int = 0
    start_round: int = 1
    stop_round: int | None = None
    rounding: str = ROUNDING
    fake_reply: str = FAKE_REPLY
    num_malicious: int = field(init=False)
    fake_client_ids: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.fake_clients, int) or isinstance(self.fake_clients, bool):
            raise ValueError(f"fake_clients={self.fake_clients!r}: must be an integer >= 0")
        if self.fake_clients < 0:
            raise ValueError(f"fake_clients={self.fake_clients}: must be an integer >= 0")
        object.__setattr__(self, "num_malicious", len(self.malicious_clients))
        first = self.num_clients
        object.__setattr__(self, "fake_client_ids", tuple(range(first, first + self.fake_clients)))
        if self.knowledge is not None and self.knowledge not in KNOWLEDGE:
            raise ValueError(f"knowledge={self.knowledge}: must be one of {', '.join(KNOWLEDGE)}")

    @property
    def total_clients(self) -> int:
        """Every client in the federation: the real ones and the fake ones."""
        return self.num_clients + self.fake_clients

    @property
    def malicious(self) -> frozenset[int]:
        """Every attacker: the compromised real clients and the fake ones."""
        return frozenset(self.malicious_clients) | frozenset(self.fake_client_ids)

    @property
    def fake(self) -> frozenset[int]:
        return frozenset(self.fake_client_ids)

    def active(self, server_round: int) -> bool:
        """Whether the attack runs in ``server_round`` (inside its window)."""
        stop = self.stop_round
        return self.start_round <= server_round and (stop is None or server_round <= stop)

    def is_fake(self, client: int) -> bool:
        """Whether ``client`` is a fake client (an id after the real ones)."""
        return self.num_clients <= client < self.num_clients + self.fake_clients

    @classmethod
    def build(
        cls,
        *,
        seed: int,
        num_clients: int,
        clients_per_round: int,
        malicious_fraction: float,
        num_malicious_told: int | None,
        attack: str,
        site: str,
        knowledge: str | None,
        parameters: dict[str, Any],
        fake_clients: int = 0,
        start_round: int = 1,
        stop_round: int | None = None,
    ) -> ThreatModel:
        """The threat model of a run from its settings (``site``: a key of ``SITES``).

        A colluding attack without a stated knowledge level gets ``full``.
        """
        share = malicious_fraction
        if fake_clients:
            share = (malicious_fraction * num_clients + fake_clients) / (num_clients + fake_clients)
        per_round = count_for(share, clients_per_round)
        told = per_round if num_malicious_told is None else num_malicious_told
        if site == "adversary" and knowledge is None:
            knowledge = "full"
        return cls(
            attack=attack,
            site=site,
            where=SITES[site],
            knowledge=knowledge,
            parameters=dict(parameters),
            malicious_fraction=malicious_fraction,
            num_clients=num_clients,
            malicious_clients=malicious_clients(
                seed, num_clients, count_for(malicious_fraction, num_clients)
            ),
            malicious_per_round=per_round,
            num_malicious_told=int(told),
            fake_clients=fake_clients,
            start_round=int(start_round),
            stop_round=None if stop_round is None else int(stop_round),
        )

    @classmethod
    def clean(cls, num_clients: int) -> ThreatModel:
        """No attack: every one of ``num_clients`` clients is honest."""
        return cls(
            attack="none",
            site="none",
            where=SITES["none"],
            knowledge=None,
            parameters={},
            malicious_fraction=0.0,
            num_clients=num_clients,
            malicious_clients=(),
            malicious_per_round=0,
            num_malicious_told=0,
        )

    def summary(self) -> dict[str, Any]:
        """The threat model as ``summary.json`` records it."""
        record = dataclasses.asdict(self)
        record["malicious_clients"] = list(self.malicious_clients)
        record["fake_client_ids"] = list(self.fake_client_ids)
        record["policies"] = dict(POLICIES)
        return record
