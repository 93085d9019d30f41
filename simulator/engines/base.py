"""What every engine offers: run one ServerApp against ``num_clients`` ClientApp nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp


class Engine(Protocol):
    """Transport between the ServerApp and the ClientApps; the apps are the same on all."""

    def run(
        self,
        server_app: ServerApp,
        client_app_factory: Callable[[], ClientApp],
        num_clients: int,
        *,
        verbose: bool = False,
        device: str = "cpu",
    ) -> None:
        """Run ``server_app`` to completion with ``num_clients`` nodes.

        ``client_app_factory`` is picklable and builds the ClientApp, so engines that
        run clients in other processes can rebuild it there. ``device`` is where the
        clients train (an engine that starts processes may need to know).
        """
        ...
