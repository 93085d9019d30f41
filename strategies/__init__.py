"""Aggregation rules as pure functions over stacked client updates, and the Flower adapter.

Every rule takes ``updates``, a float tensor of shape ``(n, d)`` (one flattened client
update per row: client weights minus global weights), and returns an ``Aggregate``.
Pre-aggregation steps return ``Mixed`` and compose in front of any rule
(``strategies.pipeline.aggregate``). No module here but ``strategies.flower`` imports
Flower.
"""

from strategies.base import Aggregate
from strategies.bulyan import bulyan
from strategies.clipping import centered_clipping, norm_bound
from strategies.coordinate import median, trimmed_mean
from strategies.fltrust import fltrust
from strategies.geometric_median import geometric_median
from strategies.krum import krum, multikrum
from strategies.mean import fedavg
from strategies.preaggregation import Mixed, bucketing, nearest_neighbor_mixing

__all__ = [
    "Aggregate",
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
