"""Benchmarks: timings of Oleander's hot paths against references measured in the same run."""
