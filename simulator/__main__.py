"""``python -m simulator`` is the ``oleander`` command."""

from simulator.main import cli

if __name__ == "__main__":
    cli()
