"""The ``oleander-report`` command: tables, a Markdown report and plots over a sweep of runs.

The pipeline is ``collect`` (folders -> ``Run``) -> ``results_rows`` / ``rounds_rows`` (one row
per finished run / per finished run and round) -> ``aggregate`` (mean and sample standard
deviation over seeds) -> ``render_markdown`` and the ``plot_*`` functions.

Each module imports only the ones after it: ``cli`` (arguments, the files written),
``markdown`` (report.md), ``plots`` (the PNGs), ``tables`` (rows and aggregates) and
``collect`` (reading run directories).
"""

from simulator.report.cli import main

__all__ = ["main"]
