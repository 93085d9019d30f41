"""The ray engine: Flower's own simulation runtime (``flwr.simulation``, Ray backend).

The same ServerApp and ClientApp as the inline engine, run by Flower's Simulation
Runtime: each client task goes to a Ray actor. Slower per task on a laptop, but it is
Flower's reference runtime, it honours client resources (CPUs, GPUs per client), and it
can join an existing Ray cluster (``engine.address=auto`` or ``ray://host:port``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp


class RayEngine:
    """Run the apps with ``flwr.simulation.run_simulation`` on Ray.

    Parameters
    ----------
    num_cpus : float (default: 1)
        CPUs reserved per client task (Flower's ``client_resources.num_cpus``).
    num_gpus : float (default: 0)
        GPUs reserved per client task.
    address : str | None (default: None)
        Ray cluster to join (``auto`` or ``ray://host:port``); None starts a local one.
    init_args : dict | None
        Extra keyword arguments for ``ray.init``.
    """

    def __init__(
        self,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        address: str | None = None,
        init_args: dict[str, Any] | None = None,
    ) -> None:
        if num_cpus <= 0:
            raise ValueError(f"num_cpus={num_cpus}: must be > 0")
        if num_gpus < 0:
            raise ValueError(f"num_gpus={num_gpus}: must be >= 0")
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.address = address
        self.init_args = dict(init_args or {})

    def backend_config(self, verbose: bool = False) -> dict[str, Any]:
        init_args: dict[str, Any] = {
            "logging_level": logging.INFO if verbose else logging.ERROR,
            "log_to_driver": verbose,
            **self.init_args,
        }
        if self.address:
            init_args["address"] = self.address
        return {
            "client_resources": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "init_args": init_args,
        }

    def run(
        self,
        server_app: ServerApp,
        client_app_factory: Callable[[], ClientApp],
        num_clients: int,
        *,
        verbose: bool = False,
        device: str = "cpu",
    ) -> None:
        del device  # Ray starts its own processes; client resources say where they run
        import ray
        from flwr.simulation import run_simulation

        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
        started_here = not ray.is_initialized()
        try:
            run_simulation(
                server_app=server_app,
                client_app=client_app_factory(),
                num_supernodes=num_clients,
                backend_config=self.backend_config(verbose),
                verbose_logging=verbose,
            )
        finally:
            if started_here and ray.is_initialized():
                ray.shutdown()
