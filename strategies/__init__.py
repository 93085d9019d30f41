"""Defences as plain torch: aggregation rules, pre-aggregation, detection, their state.

Every rule takes ``updates``, a float tensor of shape ``(n, d)`` (one flattened client
update per row: client weights minus global weights), and returns an ``Aggregate``.
Pre-aggregation steps return ``Mixed``; detectors return flags; a run's ``Defence``
(``strategies.pipeline``) chains them, with each stage's state across rounds
(``strategies.state``). Nothing here imports Flower or the simulator.
"""

from strategies.base import Aggregate
from strategies.bulyan import bulyan
from strategies.clipping import CenteredClipping, centered_clipping, norm_bound
from strategies.coordinate import median, trimmed_mean
from strategies.fltrust import fltrust
from strategies.geometric_median import geometric_median
from strategies.krum import krum, multikrum
from strategies.mean import fedavg
from strategies.preaggregation import Mixed, bucketing, nearest_neighbor_mixing

__all__ = [
    "Aggregate",
    "CenteredClipping",
    "Mixed",
    "bucketing",
    "bulyan",
    "centered_clipping",
    "fedavg",
    "fltrust",
    "geometric_median",
    "krum",
    "median",
    "multikrum",
    "nearest_neighbor_mixing",
    "norm_bound",
    "trimmed_mean",
]
