"""The inline engine: an in-process Flower ``Grid`` that hands each Message to the ClientApp.

Flower's Ray runtime costs about 30 ms per client task on two cores, which dominates
small models; this engine costs a function call. It stays honest Flower: the strategy's
real ``Message``s and ``ArrayRecord``s go to the real ``ClientApp``, replies are real
reply Messages, and a ClientApp that raises yields an error reply as in Flower's runtimes.
With ``workers > 0`` the messages of a round are spread over worker processes, each
holding its own ClientApp (messages are pickled there and back).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import traceback
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from simulator.protocol import node_config
from simulator.schema import COHORT_MODES
from simulator.seeding import derive_seed

log = logging.getLogger("oleander")

SERVER_NODE_ID = 1  # flwr.common.constant.SUPERLINK_NODE_ID
SERVER_TASK_ID = 1
MAX_POOL_RESTARTS = 3
# Workers are forked where the platform allows it and clients train on the CPU: a forked
# worker starts at once, with the modules and the loaded data set of this process (copy
# on write), where a spawned one spends seconds importing torch and Flower and loading
# the data again. Workers run one torch thread, so they never enter an OpenMP parallel
# region inherited from here. CUDA cannot be used in a forked child: spawn then.
CAN_FORK = "fork" in multiprocessing.get_all_start_methods()


def start_method(device: str) -> str:
    """How worker processes start for clients on ``device``."""
    return "fork" if CAN_FORK and device == "cpu" else "spawn"


def set_task_identity(run_id: int) -> None:
    """Tell Flower which task this process is, so ``Message(...)`` can be built here.

    ``flwr.app.Message.__init__`` reads ``flwr.supercore.task_identity.TaskIdentity``
    (run id, node id, task id) to fill an instruction message's metadata. Flower's own
    runtimes set it before they run a ServerApp (``run_serverapp``, and ``run_simulation``
    with a dummy task id 1 on the SuperLink node); an in-process Grid must do the same.
    This is the one place Oleander touches that internal; ``tests/simulator/test_engines``
    fails loudly if a Flower upgrade moves it.
    """
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SERVER_NODE_ID
    TaskIdentity.task_id = SERVER_TASK_ID


def node_ids_for(num_clients: int, run_id: int) -> list[int]:
    """Distinct random-looking node ids, as Flower assigns them (never 0 or 1)."""
    ids: list[int] = []
    taken = {0, SERVER_NODE_ID}
    for pid in range(num_clients):
        node = derive_seed(run_id, pid)
        while node in taken:
            node += 1
        taken.add(node)
        ids.append(node)
    return ids


def _error_reply(message: Message, error: BaseException) -> Message:
    reason = f"{type(error).__name__}: {error}"
    log.debug("client task failed:\n%s", "".join(traceback.format_exception(error)))
    return Message(
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message
    )


def _stamp(reply: Message) -> Message:
    """Give a reply its message id, as Flower's runtimes do when they store it."""
    reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
    return reply


def _handle(app: ClientApp, message: Message, context: Context) -> Message:
    try:
        reply = app(message, context)
    except Exception as error:  # a failing client is recorded by the strategy, not fatal
        reply = _error_reply(message, error)
    return _stamp(reply)


def _serve(app: ClientApp, batch: list[tuple[Message, Context]], cohort: str) -> list[Message]:
    """Replies to ``batch`` in order: a cohort of train messages at once, the rest one by one.

    ``cohort``: "auto" batches where the ClientApp expects it to pay off, "always"
    wherever it can, "never" not at all. A ClientApp without ``train_many`` handles
    every message alone.
    """
    train_many = getattr(app, "train_many", None)
    batched: dict[int, Message] = {}
    if cohort != "never" and train_many is not None:
        try:
            batched = train_many(batch, force=cohort == "always")
        except Exception:  # every message then goes to its handler, which reports errors
            log.warning("batched training failed; one message at a time", exc_info=True)
    return [
        _stamp(batched[i]) if i in batched else _handle(app, message, context)
        for i, (message, context) in enumerate(batch)
    ]


# Worker processes ----------------------------------------------------------------------
_WORKER_APP: ClientApp | None = None


_WORKER_COHORT = "auto"


def _worker_init(factory: Callable[[], ClientApp], threads: int, cohort: str) -> None:
    global _WORKER_APP, _WORKER_COHORT
    # Ctrl-C and kill reach the whole process group; the parent decides when to stop (a
    # forked worker would otherwise run the parent's stop-after-this-round handler).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A forked worker must not write through the parent's progress display (its lock
    # may have been held at the fork).
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    torch.set_num_threads(threads)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    _WORKER_APP = factory()
    if hasattr(_WORKER_APP, "threads"):
        _WORKER_APP.threads = threads  # one thread per worker, whatever the spec says
    _WORKER_COHORT = cohort


def _worker_handle(
    batch: list[tuple[Message, Context]],
) -> list[tuple[Message, int, RecordDict]]:
    """Replies, each with its node and that node's ``Context.state`` after the task: the
    contexts here are copies, so node state (a client's memory across rounds) goes back
    to the grid, as Flower's Simulation Runtime stores the context a task returns."""
    assert _WORKER_APP is not None
    replies = _serve(_WORKER_APP, batch, _WORKER_COHORT)
    return [
        (reply, context.node_id, context.state)
        for reply, (_, context) in zip(replies, batch, strict=True)
    ]


class InlineGrid(Grid):
    """A Flower ``Grid`` whose nodes are ClientApps called in this process or in workers."""

    def __init__(
        self,
        client_app_factory: Callable[[], ClientApp],
        num_clients: int,
        run_id: int = 1,
        workers: int = 0,
        worker_threads: int = 1,
        cohort: str = "auto",
        device: str = "cpu",
    ) -> None:
        self._run = Run.create_empty(run_id=run_id)
        self._factory = client_app_factory
        self._app = client_app_factory() if workers == 0 else None
        self._nodes = node_ids_for(num_clients, run_id)
        self._contexts = {
            node: Context(
                run_id=run_id,
                node_id=node,
                node_config=node_config(pid, num_clients),
                state=RecordDict(),
                run_config={},
            )
            for pid, node in enumerate(self._nodes)
        }
        self._replies: dict[str, Message] = {}
        self._pool: ProcessPoolExecutor | None = None
        self.workers = workers
        self.worker_threads = worker_threads
        self.cohort = cohort
        self.device = device
        self.replaced_workers = 0
        if workers > 0:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context(start_method(self.device)),
            initializer=_worker_init,
            initargs=(self._factory, self.worker_threads, self.cohort),
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    # Grid API ----------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        batch: list[tuple[Message, Context]] = []
        ids: list[str] = []
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in self._contexts:
                raise ValueError(f"no node with id {node}")
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            ids.append(message.metadata.message_id)
            batch.append((message, self._contexts[node]))
        for reply in self._process(batch):
            self._replies[reply.metadata.reply_to_message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    # ------------------------------------------------------------------------------
    def _process(self, batch: list[tuple[Message, Context]]) -> list[Message]:
        if self._pool is None:
            assert self._app is not None
            return _serve(self._app, batch, self.cohort)
        # One chunk per worker: messages of a round share one content object, which
        # pickle writes once per chunk, so each worker receives the global model once.
        chunks = [c for c in (batch[i :: self.workers] for i in range(self.workers)) if c]
        for attempt in range(MAX_POOL_RESTARTS + 1):
            try:
                results = [
                    item for result in self._pool.map(_worker_handle, chunks) for item in result
                ]
                for _, node, state in results:
                    self._contexts[node].state = state
                return [reply for reply, _, _ in results]
            except BrokenProcessPool:
                # A worker died (killed, out of memory): replace the pool, rerun the batch.
                # Client tasks are pure functions of the message, so rerunning is exact.
                if attempt == MAX_POOL_RESTARTS:
                    raise
                log.warning("an inline worker process died; starting new ones and rerunning")
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                self.replaced_workers += 1
        raise AssertionError("unreachable")


class InlineEngine:
    """Run the ServerApp in this process over an ``InlineGrid``.

    Parameters
    ----------
    workers : int (default: 0)
        0 runs every client in this process; N > 0 starts N worker processes (one torch
        thread each) and spreads each round's clients over them.
    cohort : str (default: "auto")
        Train a round's honest clients together (``clients.cohort``): "auto" where it is
        expected to pay off (linear-layer models on CPU), "always" for every model it
        supports, "never" not at all. The numbers agree to floating-point rounding either way.
    """

    def __init__(self, workers: int = 0, cohort: str = "auto") -> None:
        if workers < 0:
            raise ValueError(f"workers={workers}: must be >= 0")
        if cohort not in COHORT_MODES:
            raise ValueError(f"cohort={cohort!r}: must be one of {', '.join(COHORT_MODES)}")
        self.workers = workers
        self.cohort = cohort

    def run(
        self,
        server_app: ServerApp,
        client_app_factory: Callable[[], ClientApp],
        num_clients: int,
        *,
        verbose: bool = False,
        device: str = "cpu",
    ) -> None:
        run_id = 1
        set_task_identity(run_id)
        grid = InlineGrid(
            client_app_factory,
            num_clients,
            run_id=run_id,
            workers=self.workers,
            cohort=self.cohort,
            device=device,
        )
        context = Context(
            run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config={}
        )
        try:
            server_app(grid, context)
        finally:
            grid.close()
