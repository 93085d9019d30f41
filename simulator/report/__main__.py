"""``python -m simulator.report`` is the ``oleander-report`` command."""

from simulator.report.cli import main

if __name__ == "__main__":
    main()
