"""A run's defence as stages: detection -> pre-aggregation -> rule -> post-processing.

- Detection (FLAME, DnC, FLDetector, SignGuard, ...) flags clients; flagged rows leave
  the round before anything is averaged, and the flags count in detection precision and
  recall. A detector is ``detector(updates, **keywords) -> flags``, a bool tensor ``(m,)``.
- Pre-aggregation (nearest-neighbour mixing, bucketing) returns ``Mixed(updates, mixing)``;
  the mixing matrices are chained so that a rule's weights over mixed rows become client
  shares ``weights @ mixing``.
- The rule aggregates what is left and returns ``Aggregate(update, weights)``.
- Post-processing maps the aggregate to the step the global model takes (the server
  learning rate; noise).

Stages take different inputs: the number of attackers f, the server's own update
(FLTrust), example-count weights (FedAvg), a generator, the clients' ids, the global
model, the round's updates as received (``received``: every row, flagged ones included,
for a rule whose bound is a statistic of all clients, as FLAME's and SignGuard's median
norm), the rule's output of the last round whose aggregate was accepted
(``previous_aggregate``: FLDetector's global update, free of the server learning rate
and of any noise added after the rule; None before the first; kept in the defence state
only when a stage asks for it), and their own ``state`` across rounds
(``strategies.state``). The defence offers
everything it has; each stage receives only the keywords its signature names, so a new
stage needs no change here or in the Flower adapter. Detection runs before mixing because
it judges clients: a mixed row belongs to no single client. ``Defence.preview`` runs the
same stages without keeping any state: a dry run for an adversary that searches against the
defence.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from strategies.base import Aggregate
from strategies.state import DefenceState

NON_FINITE = "aggregate has non-finite values"
# The defence's own entry in its state (the last accepted aggregate, when asked for).
PIPELINE = "pipeline"
# Keywords the defence offers every stage; anything else a stage requires must come from
# the run (``inputs``) or be bound in the stage's configuration.
ROUND_KEYWORDS = frozenset(
    {
        "num_malicious", "client_ids", "server_round", "global_model", "state", "generator",
        "received", "previous_aggregate",
    }
)  # fmt: skip


def accepted_keywords(fn: Callable[..., Any]) -> frozenset[str]:
    """The keyword names ``fn`` (a function, a ``functools.partial`` or a callable
    object) can take; ``{"*"}`` if it takes ``**kwargs``."""
    try:
        return _cached_keywords(fn)
    except TypeError:  # an unhashable callable: read its signature each time
        return _keywords(fn)


@functools.lru_cache(maxsize=256)
def _cached_keywords(fn: Callable[..., Any]) -> frozenset[str]:
    # Stages are called every round; their signatures do not change.
    return _keywords(fn)


def _keywords(fn: Callable[..., Any]) -> frozenset[str]:
    parameters = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return frozenset({"*"})
    return frozenset(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def required_keywords(fn: Callable[..., Any]) -> frozenset[str]:
    """The keywords ``fn`` must be given (no default), after its first (the updates)."""
    parameters = list(inspect.signature(fn).parameters.values())[1:]
    return frozenset(
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def accepts(fn: Callable[..., Any], name: str) -> bool:
    keywords = accepted_keywords(fn)
    return "*" in keywords or name in keywords


def call_with_available(fn: Callable[..., Any], updates: torch.Tensor, **available: Any) -> Any:
    """``fn(updates, **k)`` with ``k`` the entries of ``available`` that ``fn`` accepts."""
    keywords = accepted_keywords(fn)
    kwargs = {k: v for k, v in available.items() if "*" in keywords or k in keywords}
    return fn(updates, **kwargs)


def stage_name(stage: Callable[..., Any]) -> str:
    """A readable name for a stage: its ``name``, or its function's name."""
    name = getattr(stage, "name", None)
    if isinstance(name, str):
        return name
    func = stage.func if isinstance(stage, functools.partial) else stage
    return getattr(func, "__name__", type(func).__name__)


def _mix_then_aggregate(
    updates: torch.Tensor,
    rule: Callable[..., Aggregate],
    pre: Sequence[Callable[..., Any]],
    offer: Callable[[str], dict[str, Any]],
) -> Aggregate:
    """The pre-aggregation steps in order, then ``rule``; weights mapped back to rows.

    ``offer(stage)`` gives the keywords offered to the stage named ``pre.i`` or ``rule``.
    Example-count ``weights`` offered to the rule are mixed like the rows.
    """
    x = updates
    mixing: torch.Tensor | None = None
    for i, step in enumerate(pre):
        mixed = call_with_available(step, x, **offer(f"pre.{i}"))
        x = mixed.updates
        mixing = mixed.mixing if mixing is None else mixed.mixing @ mixing
    offered = offer("rule")
    if mixing is not None and offered.get("weights") is not None:
        weights = offered["weights"]
        offered["weights"] = mixing.to(weights.device, weights.dtype) @ weights
    result: Aggregate = call_with_available(rule, x, **offered)
    if mixing is None or result.weights is None:
        return result if mixing is None else Aggregate(update=result.update, weights=None)
    # shape: (n,)
    return Aggregate(update=result.update, weights=result.weights @ mixing.to(result.weights))


def aggregate(
    updates: torch.Tensor,
    rule: Callable[..., Aggregate],
    pre: Sequence[Callable[..., Any]] = (),
    **available: Any,
) -> Aggregate:
    """Apply the pre-aggregation steps in order, then ``rule`` (stateless, no detection).

    Each step returns ``Mixed(updates=(m, d), mixing=(m, n))``; the rule's weights over
    mixed rows are mapped back to the input rows as ``weights @ mixing``.
    """
    return _mix_then_aggregate(updates, rule, pre, lambda _: dict(available))


@dataclass(frozen=True)
class Outcome:
    """What the defence made of one round.

    Attributes
    ----------
    step : torch.Tensor | None
        Shape ``(d,)``: what the global model moves by (after post-processing); None when
        the round keeps the global model (``note`` says why).
    aggregate : torch.Tensor | None
        Shape ``(d,)``: the rule's output, before post-processing.
    weights : torch.Tensor | None
        Shape ``(n,)`` over the input rows: each client's share in ``aggregate`` (0 for a
        flagged client), or None where the rule defines no share.
    flagged : dict[int, str]
        Client id -> the detector that flagged it.
    reason : str
        Why the round kept the global model (a stage's complaint), or "".
    name : str
        The defence's name, for the note.
    stage : str
        The stage whose complaint ``reason`` is (``detect.0``, ``pre.0``, ``rule``, ...).
    """

    step: torch.Tensor | None
    aggregate: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    flagged: dict[int, str] = field(default_factory=dict)
    reason: str = ""
    name: str = "defence"
    stage: str = ""

    @property
    def note(self) -> str:
        """The round's note when it kept the global model, else ""."""
        if self.step is not None:
            return ""
        if self.reason == NON_FINITE:
            return f"{NON_FINITE}: global model kept"
        return f"{self.name} could not aggregate ({self.reason}): global model kept"


class Defence:
    """One run's defence: detection -> pre-aggregation -> rule -> post-processing, with state.

    Parameters
    ----------
    rule : Callable[..., Aggregate]
        The aggregation rule: ``rule(updates, **keywords) -> Aggregate``.
    pre : Sequence[Callable] (default: ())
        Pre-aggregation steps, each ``step(updates, **keywords) -> Mixed``, in order.
    detect : Sequence[Callable] (default: ())
        Detectors, each ``detector(updates, **keywords) -> flags`` (bool ``(m,)``), in order;
        each sees only the rows the ones before it left. A rule that carries its paper's
        own detection (FLAME, DnC, SignGuard) names it in a ``detectors`` attribute; those
        run first, so its flags count like any detector's.
    post : Sequence[Callable] (default: ())
        Post-processing, each ``post(update, **keywords) -> update``, in order.
    num_malicious : int (default: 0)
        The number of attackers the stages are told (f).
    weight_by_examples : bool (default: False)
        Offer the clients' reported example counts, normalised, as ``weights``.
    inputs : Mapping[str, Callable[[int, torch.Tensor | None], Any]] | None
        Further keywords the run can offer, computed only for a stage that names them, from
        the round and the global model (FLTrust's ``server_update``: the server's own update
        on its root set).
    generator : Callable[[str, int], torch.Generator] | None
        ``generator(kind, round)`` for ``kind`` "aggregation" (one generator shared by the
        pre-aggregation steps and the rule in a round) or "detection".
    name : str (default: "defence")
        For notes.
    """

    def __init__(
        self,
        rule: Callable[..., Aggregate],
        *,
        pre: Sequence[Callable[..., Any]] = (),
        detect: Sequence[Callable[..., Any]] = (),
        post: Sequence[Callable[..., Any]] = (),
        num_malicious: int = 0,
        weight_by_examples: bool = False,
        inputs: Mapping[str, Callable[[int, torch.Tensor | None], Any]] | None = None,
        generator: Callable[[str, int], torch.Generator] | None = None,
        name: str = "defence",
    ) -> None:
        self.rule = rule
        self.pre = tuple(pre)
        self.detect = (*getattr(rule, "detectors", ()), *detect)
        self.post = tuple(post)
        self.num_malicious = int(num_malicious)
        self.weight_by_examples = weight_by_examples
        self.inputs = dict(inputs or {})
        self.generator = generator
        self.name = name
        self.state = DefenceState()
        # ((round, id of the global model), inputs computed, the model) for ``preview``.
        self._preview_inputs: tuple[tuple[int, int] | None, dict[str, Any], Any] = (None, {}, None)
        self._stages = dict(self.stages())
        self._keeps_aggregate = any(
            accepts(stage, "previous_aggregate") for stage in self._stages.values()
        )
        offered = ROUND_KEYWORDS | set(self.inputs) | ({"weights"} if weight_by_examples else set())
        for stage in self._stages.values():
            missing = sorted(required_keywords(stage) - offered)
            if missing:
                raise ValueError(
                    f"{stage_name(stage)} needs {', '.join(missing)}, which this run does not "
                    "provide" + (" (a root set)" if "server_update" in missing else "")
                )

    def stages(self) -> list[tuple[str, Callable[..., Any]]]:
        """``(state name, stage)`` of every stage, in the order they run."""
        return [
            *((f"detect.{i}", d) for i, d in enumerate(self.detect)),
            *((f"pre.{i}", p) for i, p in enumerate(self.pre)),
            ("rule", self.rule),
            *((f"post.{i}", p) for i, p in enumerate(self.post)),
        ]

    def __call__(
        self,
        updates: torch.Tensor,
        client_ids: Sequence[int],
        *,
        server_round: int,
        num_examples: Sequence[int] | None = None,
        global_model: torch.Tensor | None = None,
    ) -> Outcome:
        """Aggregate one round's ``(n, d)`` updates of clients ``client_ids``.

        A stage's ``ValueError`` (a precondition the round's rows no longer meet) and a
        non-finite aggregate keep the global model, with a note naming the stage; the state
        written in the round is then discarded.
        """
        return self._run(
            updates, client_ids, server_round, num_examples, global_model, {}, commit=True
        )

    def preview(
        self,
        updates: torch.Tensor,
        client_ids: Sequence[int],
        *,
        server_round: int,
        num_examples: Sequence[int] | None = None,
        global_model: torch.Tensor | None = None,
    ) -> Outcome:
        """What ``__call__`` would return for these updates, without keeping any state.

        A dry run for an adversary that searches against the defence (the AGR-tailored
        attack): every stage runs as in the round, with the state as it stands and the
        generators the round will use (``generator(kind, server_round)`` is drawn afresh for
        each run, so a preview and the round see the same draws), and every state write is
        discarded, the last aggregate included. The run's further inputs (FLTrust's
        ``server_update``) are computed once per round and global model for all previews
        (the object ``global_model``, by identity); the round itself computes its own.
        """
        key = (server_round, id(global_model))
        if self._preview_inputs[0] != key:
            # Keep the model itself alive with its id, so the id cannot be reused.
            self._preview_inputs = (key, {}, global_model)
        return self._run(
            updates,
            client_ids,
            server_round,
            num_examples,
            global_model,
            self._preview_inputs[1],
            commit=False,
        )

    def _run(
        self,
        updates: torch.Tensor,
        client_ids: Sequence[int],
        server_round: int,
        num_examples: Sequence[int] | None,
        global_model: torch.Tensor | None,
        lazy: dict[str, Any],
        *,
        commit: bool,
    ) -> Outcome:
        """One pass of the stages; the state written is kept only when ``commit``."""
        n = updates.shape[0]
        kept = list(range(n))
        flagged: dict[int, str] = {}
        generators: dict[str, torch.Generator] = {}
        current = ""  # the stage running, for the note when it fails

        def offer(stage: str, rows: list[int]) -> dict[str, Any]:
            nonlocal current
            current = stage
            kind = "detection" if stage.startswith("detect") else "aggregation"
            callable_ = self._stages[stage]
            offered: dict[str, Any] = {
                "num_malicious": self.num_malicious,
                "client_ids": [int(client_ids[r]) for r in rows],
                "server_round": server_round,
                "global_model": global_model,
                "received": updates,
            }
            if accepts(callable_, "state"):
                offered["state"] = self.state.stage(stage)
            if accepts(callable_, "previous_aggregate"):
                offered["previous_aggregate"] = self.state.stage(PIPELINE).get("aggregate")
            if self.generator is not None and accepts(callable_, "generator"):
                if kind not in generators:
                    generators[kind] = self.generator(kind, server_round)
                offered["generator"] = generators[kind]
            if (
                self.weight_by_examples
                and num_examples is not None
                and accepts(callable_, "weights")
            ):
                counts = torch.tensor([num_examples[r] for r in rows], dtype=torch.float64)
                offered["weights"] = (counts / counts.sum()).to(updates.device, updates.dtype)
            for key, compute in self.inputs.items():
                if accepts(callable_, key):
                    if key not in lazy:
                        lazy[key] = compute(server_round, global_model)
                    value = lazy[key]
                    is_tensor = isinstance(value, torch.Tensor)
                    offered[key] = value.to(updates.device, updates.dtype) if is_tensor else value
            return offered

        try:
            x = updates
            for i, detector in enumerate(self.detect):
                flags = call_with_available(detector, x, **offer(f"detect.{i}", kept))
                flags = _check_flags(flags, len(kept), stage_name(detector))
                for row in flags.nonzero().flatten().tolist():
                    flagged[int(client_ids[kept[row]])] = stage_name(detector)
                kept = [r for r, flag in zip(kept, flags.tolist(), strict=True) if not flag]
                if not kept:
                    raise ValueError("every update was flagged")
                x = updates[kept] if len(kept) < n else updates
            result = _mix_then_aggregate(x, self.rule, self.pre, lambda stage: offer(stage, kept))
            if not torch.isfinite(result.update).all():
                raise ValueError(NON_FINITE)
            step = result.update
            for i, post in enumerate(self.post):
                step = call_with_available(post, step, **offer(f"post.{i}", kept))
        except ValueError as error:  # e.g. too few replies left for the rule's precondition
            self.state.discard()
            return Outcome(
                step=None, flagged=flagged, reason=str(error), name=self.name, stage=current
            )
        if not commit:
            self.state.discard()
        else:
            if self._keeps_aggregate:
                self.state.stage(PIPELINE).set("aggregate", result.update.detach())
            self.state.commit()
        weights = result.weights
        if weights is not None and len(kept) < n:
            full = torch.zeros(n, dtype=weights.dtype, device=weights.device)
            full[kept] = weights
            weights = full
        return Outcome(
            step=step, aggregate=result.update, weights=weights, flagged=flagged, name=self.name
        )


def _check_flags(flags: Any, rows: int, detector: str) -> torch.Tensor:
    """A detector's output as a bool tensor ``(rows,)``; ``ValueError`` otherwise."""
    if not isinstance(flags, torch.Tensor) or flags.shape != (rows,):
        shape = tuple(flags.shape) if isinstance(flags, torch.Tensor) else type(flags).__name__
        raise ValueError(f"detector {detector} returned {shape}, expected flags of shape ({rows},)")
    return flags.to(torch.bool)
