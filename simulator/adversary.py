"""The colluding adversary: rewrites the malicious clients' rows between replies and rule.

Model-poisoning attacks need other updates (the mean and spread of the benign ones, or
a search against the rule), so they are computed on the server side, after every
sampled client has trained honestly and before the aggregation rule runs, as in the
threat models of Fang et al. 2020, Baruch et al. 2019 and Shejwalkar & Houmansadr 2021.
``knowledge`` says what the adversary sees: ``partial``, only its own clients' honest
updates; ``full``, the updates of every benign client of the round. With full knowledge an
attack that takes ``defend`` (the AGR-tailored attack) may also run the round's defence on
candidate rows without changing its state (``Defence.preview``).

Fake clients (``fake_clients=K``) are attackers too, but hold no data: their rows arrive
as zero updates (the global model sent back), so they add nothing to what the adversary
knows. Under partial knowledge it sees only the compromised real clients' honest updates;
in a round where it sees no update at all (only fake attackers sampled), an attack that
needs one raises ``NoKnowledge`` and the rows stay as received (fake clients: zero).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from clients.attacks.tailored import Verdict
from simulator.seeding import Stream, torch_generator
from simulator.threat import ThreatModel
from strategies.pipeline import Outcome, accepts, call_with_available


class NoKnowledge(ValueError):
    """The attack needs benign updates and the adversary saw none this round."""


class Adversary:
    """Replace the malicious rows of a round's update matrix with crafted updates.

    Parameters
    ----------
    craft : Callable
        An attack from ``clients.attacks`` (usually a Hydra partial with its parameters),
        called as ``craft(benign, num_malicious, num_clients, own=..., generator=...)``;
        keywords it does not take are not passed.
    threat : ThreatModel
        The run's threat model: the malicious client ids and the knowledge level.
    seed : int
        Run seed; the attack's randomness is seeded by ``(seed, round)``.
    inputs : Mapping[str, Callable[[int, torch.Tensor | None], Any]] | None
        Further keywords the run can offer (``simulator.components.attack_inputs``: MPAF's
        ``base_model``), computed from the round and the global model, only for an attack
        that names them.
    """

    def __init__(
        self,
        craft: Callable[..., torch.Tensor],
        threat: ThreatModel,
        seed: int,
        inputs: Mapping[str, Callable[[int, torch.Tensor | None], Any]] | None = None,
    ) -> None:
        self.craft = craft
        self.malicious = threat.malicious
        self.fake = threat.fake
        self.window = threat.active
        self.knowledge = threat.knowledge or "full"
        self.seed = seed
        self.inputs = {k: v for k, v in (inputs or {}).items() if accepts(craft, k)}
        # What the last call's attack computed (ALIE's z, a searched gamma or lambda), as
        # ``attack.<name>``: the round's effective parameters.
        self.effective: dict[str, float] = {}

    def __call__(
        self,
        updates: torch.Tensor,
        client_ids: Sequence[int],
        server_round: int,
        *,
        global_model: torch.Tensor | None = None,
        defend: Callable[[torch.Tensor], Outcome] | None = None,
    ) -> torch.Tensor:
        """A new ``(n, d)`` matrix whose malicious rows are crafted; the input is not changed.

        ``global_model``: the round's global model as one flat vector, for an attack that
        takes it (MPAF). ``defend(matrix)``, when given, is the round's defence run without
        keeping state on an ``(n, d)`` matrix in the round's row order
        (``Defence.preview``); an attack that takes ``defend`` gets it, with full knowledge
        only, as a function of its ``(f, d)`` crafted rows (``_crafted_view``).
        """
        self.effective = {}
        bad = [i for i, c in enumerate(client_ids) if c in self.malicious]
        if not bad or not self.window(server_round):  # outside the window: honest rows
            return updates
        good = [i for i, c in enumerate(client_ids) if c not in self.malicious]
        # A fake client's row is no honest update: it adds nothing to what is known.
        real = [i for i in bad if client_ids[i] not in self.fake]
        own = updates[bad]  # shape: (f, d), the attackers' own honest updates (fake: 0)
        known = good if self.knowledge == "full" and good else real
        benign = updates[known]  # shape: (k, d)
        record: dict[str, float] = {}
        available: dict[str, Any] = {
            "record": record,
            "own": own,
            "knowledge": self.knowledge,
            "generator": torch_generator(self.seed, Stream.ATTACK, server_round),
        }
        if global_model is not None:
            available["global_model"] = global_model
        for key, compute in self.inputs.items():
            value = compute(server_round, global_model)
            available[key] = value.to(updates.device, updates.dtype)
        if defend is not None and self.knowledge == "full" and accepts(self.craft, "defend"):
            available["defend"] = _crafted_view(defend, updates, bad, client_ids)
        try:
            crafted = call_with_available(
                self.craft, benign, num_malicious=len(bad), num_clients=len(client_ids),
                **available,
            )  # fmt: skip
        except ValueError as error:
            if known:
                raise
            unseen = " and no benign client was sampled" if self.knowledge == "full" else ""
            raise NoKnowledge(
                f"knowledge={self.knowledge}: no honest update to craft from: the attackers "
                f"sampled are fake clients, which hold no data{unseen} ({error})"
            ) from error
        expected = (len(bad), updates.shape[1])
        if tuple(crafted.shape) != expected:
            raise ValueError(f"attack returned shape {tuple(crafted.shape)}, expected {expected}")
        self.effective = {f"attack.{k}": float(v) for k, v in record.items()}
        result = updates.clone()
        result[bad] = crafted.to(result.dtype)
        return result


def _crafted_view(
    defend: Callable[[torch.Tensor], Outcome],
    updates: torch.Tensor,
    bad: list[int],
    client_ids: Sequence[int],
) -> Callable[[torch.Tensor], Verdict]:
    """``defend`` as an attack sees it: crafted ``(f, d)`` rows in, in the attackers' places
    of the round's matrix; out, the ``Verdict`` on those rows (their shares and flags)."""
    ids = [int(client_ids[i]) for i in bad]

    def view(crafted: torch.Tensor) -> Verdict:
        matrix = updates.clone()  # shape: (n, d)
        matrix[bad] = crafted.to(matrix.dtype)
        outcome = defend(matrix)
        weights = None if outcome.weights is None else outcome.weights[bad]
        flagged = torch.tensor([c in outcome.flagged for c in ids], dtype=torch.bool)
        aggregate = outcome.aggregate if outcome.step is not None else None
        return Verdict(aggregate=aggregate, weights=weights, flagged=flagged)

    return view
