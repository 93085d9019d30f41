"""The ``oleander-report`` command: tables, a Markdown report and plots over a sweep of runs,
and two views of one run (``show``, ``flagged``).

The pipeline is ``collect`` (folders -> ``Run``, sweep records -> ``Sweep``) ->
``results_rows`` / ``rounds_rows`` (one row per finished run / per finished run and round)
-> ``aggregate`` (mean, sample standard deviation and 95% confidence interval over seeds)
-> ``document`` (report.md's blocks, also written as LaTeX) and the ``plot_*`` functions.

Each module imports only the ones after it: ``cli`` (arguments, the files written),
``runinfo`` (``show`` and ``flagged``), ``latex`` (report.tex), ``markdown`` (report.md),
``plots`` (the PNGs), ``tables`` (rows and aggregates), ``settings`` (the settings tables
against the defaults of ``conf/``) and ``collect`` (reading run directories).
"""

from simulator.report.cli import main

__all__ = ["main"]
