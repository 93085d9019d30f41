"""Published tables reproduced by one command: ``oleander-reproduce NAME``.

Each table is a YAML file in ``tables/`` (the paper's values, citation and exact setting as
data); :mod:`simulator.reproduce.table` reads and checks it, :mod:`.grid` turns it into one
resumable Hydra sweep per cell, :mod:`.verdict` compares Oleander's numbers with the paper's
and :mod:`.cli` runs it all and writes ``reproduction.md``, ``reproduction.csv`` and a plot.
Nothing here imports torch or Flower: the runs are ``oleander`` processes.
"""
