"""Aggregation rules as pure functions over stacked client updates, and the Flower adapter.

Every rule takes ``updates``, a float tensor of shape ``(n, d)`` (one flattened client
update per row: client weights minus global weights), and returns an ``Aggregate``.
No module here but ``strategies.flower`` imports Flower.
"""

from strategies.base import Aggregate
from strategies.mean import fedavg

__all__ = ["Aggregate", "fedavg"]
