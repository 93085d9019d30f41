"""What a defence remembers across rounds: one explicit state object, saved with the run.

Defences such as centered clipping (the previous aggregate), FoolsGold (each client's
summed updates), FLDetector (a window of past updates) or adaptive clipping (the current
threshold) carry information from round to round. They keep it here, never in the
adapter or in attributes of their own, so that a checkpoint holds all of it and a resumed
run continues with exactly the state an uninterrupted run would have.

Each stage of the pipeline sees its own ``StageState``: entries shared by the stage
(``get``/``set``) and entries per client id (``get_client``/``set_client``). Values are
tensors and plain containers (numbers, strings, None, lists, tuples, dicts), so
``torch.load(weights_only=True)`` reads them back. Writes made during a round are pending:
the pipeline commits them when the round's aggregate is accepted and discards them when the
round keeps the global model, so a failed round leaves no trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

_PLAIN = (int, float, bool, str, type(None))


def check_value(value: Any, where: str = "value") -> None:
    """``TypeError`` unless ``value`` is a tensor or a plain container of such values."""
    if isinstance(value, (torch.Tensor, *_PLAIN)):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, int | str) or isinstance(key, bool):
                raise TypeError(f"{where}: dict keys must be int or str, got {key!r}")
            check_value(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where}: defence state holds tensors and plain containers only, "
        f"got {type(value).__name__}"
    )


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


class StageState:
    """One stage's entries, shared and per client; writes wait for ``DefenceState.commit``."""

    def __init__(self, shared: dict[str, Any], clients: dict[int, dict[str, Any]]) -> None:
        self._shared = shared
        self._clients = clients
        self._new_shared: dict[str, Any] = {}
        self._new_clients: dict[int, dict[str, Any]] = {}

    def get(self, key: str, default: Any = None) -> Any:
        """The stage's entry ``key`` (this round's pending value first)."""
        if key in self._new_shared:
            return self._new_shared[key]
        return self._shared.get(key, default)

    def set(self, key: str, value: Any) -> None:
        check_value(value, key)
        self._new_shared[key] = value

    def get_client(self, client: int, key: str, default: Any = None) -> Any:
        """Client ``client``'s entry ``key`` (this round's pending value first)."""
        pending = self._new_clients.get(client, {})
        if key in pending:
            return pending[key]
        return self._clients.get(client, {}).get(key, default)

    def set_client(self, client: int, key: str, value: Any) -> None:
        check_value(value, key)
        self._new_clients.setdefault(int(client), {})[key] = value

    def clients(self) -> Iterator[int]:
        """Client ids with any entry, committed or pending, ascending."""
        return iter(sorted(set(self._clients) | set(self._new_clients)))

    def _commit(self) -> None:
        self._shared.update(self._new_shared)
        for client, entries in self._new_clients.items():
            self._clients.setdefault(client, {}).update(entries)
        self._discard()

    def _discard(self) -> None:
        self._new_shared = {}
        self._new_clients = {}


class DefenceState:
    """The state of every stage of one run's defence, by stage name."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._views: dict[str, StageState] = {}

    def stage(self, name: str) -> StageState:
        """The state of stage ``name`` (created empty on first use)."""
        if name not in self._views:
            data = self._data.setdefault(name, {"shared": {}, "clients": {}})
            self._views[name] = StageState(data["shared"], data["clients"])
        return self._views[name]

    def commit(self) -> None:
        """Keep this round's writes (the round's aggregate was accepted)."""
        for view in self._views.values():
            view._commit()

    def discard(self) -> None:
        """Forget this round's writes (the round kept the global model)."""
        for view in self._views.values():
            view._discard()

    def state_dict(self) -> dict[str, Any]:
        """The committed state, tensors on the CPU, for a checkpoint."""
        return _to_cpu(self._data)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output (as ``torch.load`` read it back)."""
        check_value(state, "state")
        data: dict[str, dict[str, Any]] = {}
        for name, entries in state.items():
            if not isinstance(entries, dict) or set(entries) != {"shared", "clients"}:
                raise ValueError(f"state of stage {name!r} must hold 'shared' and 'clients'")
            clients = {int(c): dict(e) for c, e in entries["clients"].items()}
            data[name] = {"shared": dict(entries["shared"]), "clients": clients}
        self._data = data
        self._views = {}

    def __bool__(self) -> bool:
        return any(entries["shared"] or entries["clients"] for entries in self._data.values())
