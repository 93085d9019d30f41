"""A round's train replies -> the ``(n, d)`` update matrix, bad rows rejected with reasons.

Everything in a reply is client-controlled. A reply from a node that was not asked, a
second reply, an error reply, a malformed one and a non-finite update are each recorded
with the reason and never aggregated; what is left is ordered by client id, so nothing
downstream depends on the order replies arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import Message

from simulator.arrays import ArrayLayout
from simulator.protocol import read_train_reply


@dataclass
class RoundUpdates:
    """The usable updates of one round, in ascending client id, and what was left out."""

    updates: torch.Tensor  # shape: (n, d), trained weights minus the global weights
    client_ids: list[int]
    num_examples: list[int]
    train_losses: list[float]
    failures: dict[int, str] = field(default_factory=dict)  # client id -> error reason
    rejected: dict[int, str] = field(default_factory=dict)  # client id (-1: no client) -> why

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (positions, ascending)."""
        if len(rows) == len(self.client_ids):
            return
        self.updates = self.updates[list(rows)]
        self.client_ids = [self.client_ids[r] for r in rows]
        self.num_examples = [self.num_examples[r] for r in rows]
        self.train_losses = [self.train_losses[r] for r in rows]

    def drop_non_finite(self) -> None:
        """Reject the rows with NaN or infinity (recorded with the reason)."""
        # A row's max and min propagate NaN and are infinite if any value is: no (n, d)
        # temporary (a bool mask, or a float64 copy for an overflow-free sum).
        if not self.client_ids:
            return
        finite = (
            torch.isfinite(self.updates.amax(dim=1)) & torch.isfinite(self.updates.amin(dim=1))
        ).tolist()
        for client, ok in zip(self.client_ids, finite, strict=True):
            if not ok:
                self.rejected[client] = "update has non-finite values"
        self.keep([i for i, ok in enumerate(finite) if ok])


def unpack_train_replies(
    replies: Iterable[Message],
    *,
    layout: ArrayLayout,
    global_vector: torch.Tensor,
    node_to_client: Mapping[int, int],
    sampled: Sequence[int],
) -> RoundUpdates:
    """The round's updates from its replies, on ``global_vector``'s device.

    Every reply is read straight into its row of one preallocated matrix (no per-reply
    vectors, no stacking); rows with non-finite values are rejected.
    """
    replies = list(replies)
    buffer = np.empty((len(replies), layout.size), dtype=np.float32)
    rows: dict[int, tuple[int, int, float]] = {}  # client -> (row of buffer, count, loss)
    failures: dict[int, str] = {}
    rejected: dict[int, str] = {}
    asked = set(sampled)
    unanswered: list[str] = []  # error replies from no client's node
    for message in replies:
        client = node_to_client.get(message.metadata.src_node_id)
        if client is None and message.has_error():
            # The SuperLink's own error reply for a node that left: its client is the
            # sampled one that never answered (below).
            unanswered.append(message.error.reason)
            continue
        if client is None or client not in asked or client in rows:
            # Not a node this round asked, or a second reply: never aggregated.
            key = -1 if client is None else client
            rejected.setdefault(key, "reply from a node not sampled this round")
            continue
        if message.has_error():
            failures[client] = message.error.reason
            continue
        slot = len(rows)
        try:
            rows[client] = (slot, *read_train_reply(message.content, layout, buffer[slot]))
        except ValueError as err:
            rejected[client] = str(err)
    for client in sampled:  # asked, but no reply came back before the round's timeout
        if client not in rows and client not in failures and client not in rejected:
            reason = unanswered.pop(0) if unanswered else "the round timed out"
            failures[client] = f"no reply: {reason}"
    order = sorted(rows)  # results never depend on reply order
    slots = [rows[c][0] for c in order]
    # Replies usually arrive in client order: then no gather is needed.
    matrix = buffer[: len(slots)] if slots == list(range(len(slots))) else buffer[slots]
    updates = torch.from_numpy(matrix).to(global_vector.device)  # shape: (n, d)
    updates -= global_vector
    result = RoundUpdates(
        updates=updates,
        client_ids=order,
        num_examples=[rows[c][1] for c in order],
        train_losses=[rows[c][2] for c in order],
        failures=failures,
        rejected=rejected,
    )
    result.drop_non_finite()
    return result
