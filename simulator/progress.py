"""A progress bar over rounds that shows the latest test accuracy (rich)."""

from __future__ import annotations

import logging
import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

log = logging.getLogger("oleander")


class RoundProgress:
    """Shows rounds done and the latest accuracy; on a non-terminal, one log line a round."""

    def __init__(self, num_rounds: int, enabled: bool = True) -> None:
        self.num_rounds = num_rounds
        console = Console(file=sys.stderr)
        self.live = enabled and console.is_terminal
        self.log_rounds = not self.live
        self._progress = Progress(
            TextColumn("[bold]rounds"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("accuracy {task.fields[accuracy]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self._task = self._progress.add_task("rounds", total=num_rounds, accuracy="-")

    def __enter__(self) -> RoundProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, server_round: int, accuracy: float) -> None:
        if server_round == 0:
            self._progress.update(self._task, accuracy=f"{accuracy:.4f}")
            return
        self._progress.update(self._task, completed=server_round, accuracy=f"{accuracy:.4f}")
        if self.log_rounds:
            log.info("round %d/%d: test accuracy %.4f", server_round, self.num_rounds, accuracy)
