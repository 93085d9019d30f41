"""Stopping cleanly on SIGINT or SIGTERM: finish the round, keep the checkpoint, say how to resume.

The first signal only asks: the run completes the round in progress, saves a checkpoint
and stops with ``RunInterrupted`` (no ``summary.json``, so the run counts as unfinished).
A second signal stops at once, as Python's default would.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

log = logging.getLogger("oleander")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(Exception):
    """A run stopped on request after ``server_round``, its checkpoint saved."""

    def __init__(self, server_round: int, signum: int) -> None:
        super().__init__(f"stopped after round {server_round} ({signal.Signals(signum).name})")
        self.server_round = server_round
        self.signum = signum


class StopRequest:
    """Turns SIGINT and SIGTERM into a request checked at the end of every round."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals need it
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second signal: stop now
            self.__exit__(None, None, None)
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(
            "%s: stopping after this round (again to stop at once)", signal.Signals(signum).name
        )

    def check(self, server_round: int) -> None:
        """Raise ``RunInterrupted`` if a stop was requested (call after the checkpoint)."""
        if self.signum is not None:
            raise RunInterrupted(server_round, self.signum)
