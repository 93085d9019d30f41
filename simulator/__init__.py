"""Oleander: a federated-learning poisoning simulator built on Flower."""

__version__ = "0.1.0"
