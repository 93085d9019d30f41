"""Keep ``import flwr_datasets`` from importing its plotting helpers.

``flwr_datasets/__init__.py`` imports ``flwr_datasets.visualization`` (matplotlib,
seaborn, scipy.stats): about 1.3 s of the 2 s that importing the package takes on a
2-core machine, in every run and every sweep point, for plots Oleander never draws.
``defer_flwr_datasets_plotting`` puts a stand-in module in its place before the package
is imported; the first attribute anyone reads from the stand-in imports the real
subpackage (which then replaces the stand-in), so code that plots still works.
(``importlib.util.LazyLoader`` cannot do this on Python 3.11: the import system reads
the lazy module's ``__spec__``, which runs it.)
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

_PLOTTING = "flwr_datasets.visualization"


class _Deferred(types.ModuleType):
    """A subpackage not imported yet: reading a public attribute imports the real one."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name != "__path__":
            # Probes for special names (torch's import walks sys.modules with hasattr)
            # must not import the plotting stack; ``__path__`` is asked for by an import
            # of one of its submodules, which needs the real package.
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer_flwr_datasets_plotting() -> None:
    """Stand in for ``flwr_datasets.visualization``; a no-op once flwr_datasets is imported."""
    if "flwr_datasets" in sys.modules or _PLOTTING in sys.modules:
        return
    package = importlib.util.find_spec("flwr_datasets")  # locates it without importing it
    if package is None or package.submodule_search_locations is None:
        return
    spec = importlib.machinery.PathFinder.find_spec(
        _PLOTTING, list(package.submodule_search_locations)
    )
    if spec is None:
        return
    stand_in = _Deferred(_PLOTTING)
    stand_in.__spec__ = spec
    sys.modules[_PLOTTING] = stand_in
