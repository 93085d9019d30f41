"""FLDetector (Zhang, Cao, Jia and Gong, KDD 2022): flag clients whose updates do not follow
from their previous ones."""

from __future__ import annotations

import math
from typing import Any

import torch

from strategies.checks import check_int, check_updates, check_vector
from strategies.state import StageState

_CPU = torch.device("cpu")
# Values closer together than this share of their mean magnitude are one cluster.
MIN_RELATIVE_SPREAD = 1e-3


def lbfgs_hvp(s: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The L-BFGS approximation ``B`` of a Hessian, applied to ``v``, from curvature pairs.

    Compact representation (Byrd, Nocedal and Schnabel, "Representations of quasi-Newton
    matrices and their use in limited memory methods", Math. Programming 1994, eq. 2.25;
    Nocedal and Wright, eq. 7.24), as the FLDetector paper's code builds it::

        B = sigma I - [sigma S  Y] [[sigma S^T S, L], [L^T, -D]]^-1 [sigma S^T; Y^T]

    with ``S``, ``Y`` the pairs as columns (oldest first), ``S^T Y = L + D + R`` (``L``
    strictly lower, ``D`` diagonal), ``sigma = y_m^T s_m / s_m^T s_m`` of the newest pair.
    ``B`` is the BFGS matrix after the m updates ``B <- B - B s s^T B / s^T B s +
    y y^T / y^T s`` from ``B_0 = sigma I``; it satisfies the newest secant equation
    ``B s_m = y_m``, and for pairs of a quadratic (``y_k = A s_k``) whose steps are
    A-conjugate and span the space, ``B = A`` exactly.

    Cost: the ``(m, m)`` Gram matrices and two ``(m,) x (m, d)`` products, ``O(m^2 d)``, no
    ``(d, d)`` matrix. The ``(2m, 2m)`` middle matrix is inverted with a pseudo-inverse, so
    pairs that make it singular (a repeated step, ``y^T s = 0``) give the least-squares
    product instead of infinities. Pairs with ``s = 0`` carry no curvature and are dropped;
    none left gives the zero vector.

    Sign: FLDetector's pairs live in update space, where an update is minus a learning rate
    times a gradient, so ``y ~ -lr H s``. The BFGS update is equivariant under ``y -> -y``
    (with ``sigma -> -sigma``, ``B -> -B``), so the same formula gives ``-lr H`` there: the
    change of the updates, as wanted.

    Parameters
    ----------
    s : torch.Tensor
        Shape ``(m, d)``: the steps ``s_k`` (rows, oldest first).
    y : torch.Tensor
        Shape ``(m, d)``: the changes ``y_k`` they caused.
    v : torch.Tensor
        Shape ``(d,)``.

    Returns
    -------
    torch.Tensor
        Shape ``(d,)``, float64, on ``v``'s device.
    """
    if s.ndim != 2 or s.shape != y.shape or v.shape != (s.shape[1],):
        raise ValueError(
            f"lbfgs_hvp needs s, y of one shape (m, d) and v of shape (d,), got "
            f"{tuple(s.shape)}, {tuple(y.shape)}, {tuple(v.shape)}"
        )
    v = v.to(torch.float64)
    s = s.to(v.device, torch.float64)
    y = y.to(v.device, torch.float64)
    keep = (s * s).sum(dim=1) > 0
    s, y = s[keep], y[keep]
    m = s.shape[0]
    if m == 0:
        return torch.zeros_like(v)
    sy = s @ y.T  # shape: (m, m), sy[i, j] = s_i . y_j
    ss = s @ s.T  # shape: (m, m)
    sigma = sy[-1, -1] / ss[-1, -1]
    lower = torch.tril(sy, diagonal=-1)
    middle = torch.cat(
        [
            torch.cat([sigma * ss, lower], dim=1),
            torch.cat([lower.T, -torch.diag(torch.diagonal(sy))], dim=1),
        ]
    )  # shape: (2m, 2m), symmetric
    p = torch.cat([sigma * (s @ v), y @ v])  # shape: (2m,)
    q = torch.linalg.pinv(middle, hermitian=True) @ p
    return sigma * v - (sigma * q[:m]) @ s - q[m:] @ y


def within_cluster_sums(x: torch.Tensor, max_clusters: int) -> torch.Tensor:
    """Exact 1-D k-means: the least within-cluster sum of squares W_k, k = 1..max_clusters.

    In one dimension an optimal k-means partition splits the sorted values into k runs, so
    dynamic programming over split points gives the exact optimum (no random restarts):
    ``C_k(e) = min_s C_{k-1}(s) + SSE(s, e)`` over the first ``e`` sorted values, with
    ``SSE(s, e)`` from prefix sums. ``x``: shape ``(b, n)``, b data sets at once; returns
    shape ``(b, max_clusters)``. ``O(max_clusters b n^2)``; n is the clients of a round.
    """
    b, n = x.shape
    x = torch.sort(x, dim=1).values
    zero = torch.zeros(b, 1, dtype=x.dtype, device=x.device)
    p1 = torch.cat([zero, x.cumsum(dim=1)], dim=1)  # shape: (b, n+1)
    p2 = torch.cat([zero, (x * x).cumsum(dim=1)], dim=1)
    idx = torch.arange(n + 1, device=x.device)
    count = (idx[None, :] - idx[:, None]).to(x.dtype)  # count[s, e] = e - s
    valid = count > 0
    total = p1[:, None, :] - p1[:, :, None]  # shape: (b, n+1, n+1), sum of x[s:e]
    squares = p2[:, None, :] - p2[:, :, None]
    # SSE of a run = sum x^2 - (sum x)^2 / count, clamped at 0 against rounding
    sse = (squares - total * total / count.clamp_min(1)).clamp_min(0)
    sse = torch.where(valid, sse, torch.full_like(sse, math.inf))
    cost = sse[:, 0, :]  # C_1(e), shape: (b, n+1)
    sums = [cost[:, n]]
    for _ in range(1, max_clusters):
        cost = (cost[:, :, None] + sse).amin(dim=1)
        sums.append(cost[:, n])
    return torch.stack(sums, dim=1)


def gap_statistic(
    values: torch.Tensor,
    *,
    samples: int = 20,
    max_clusters: int = 10,
    generator: torch.Generator | None = None,
) -> int:
    """The number of clusters of 1-D ``values`` by the gap statistic (Tibshirani, Walther and
    Hastie, JRSS B 2001), with exact 1-D k-means.

    ``Gap(k) = (1/B) sum_b log W*_kb - log W_k``, ``W_k`` the least within-cluster sum of
    squares of ``values`` in k clusters, ``W*_kb`` that of the b-th of ``B = samples``
    reference sets of n values drawn uniformly over ``[min, max]`` of ``values`` (values and
    references are rescaled to [0, 1], which leaves every Gap unchanged);
    ``s_k = sqrt(1 + 1/B) sd_k``, ``sd_k`` the standard deviation of the ``log W*_kb``. The
    answer is the smallest k with ``Gap(k) >= Gap(k+1) - s_{k+1}``, k < K, else K, where
    ``K = min(max_clusters, n - 1)`` (with k = n every reference set has W = 0). Fewer than
    3 values, or values whose spread (max - min) is below ``MIN_RELATIVE_SPREAD`` = 1e-3 of
    their mean magnitude, give 1: the statistic is scale-free (min-max rescaled), so
    without that floor the rounding of float32 updates alone reads as two clusters (seen
    in a noiseless run without attackers: 8 of 10 honest clients flagged in round 20,
    their suspicions 6e-5 apart). This floor is Oleander's; the paper has none. A W of
    exactly 0 (values with at most k distinct entries) is floored at the smallest
    positive float, so its log is finite.
    FLDetector's paper (Algorithm 2) sets B = 20 and K = 10; its code uses 10 references,
    K = 7 and ``log mean W*`` in place of the mean of logs. Only the answer "1" or "more
    than 1" matters to FLDetector, which depends on Gap(1), Gap(2) and s_2 alone.

    Parameters
    ----------
    values : torch.Tensor
        Shape ``(n,)``, finite.
    samples : int (default: 20)
        B, the number of reference sets, >= 1.
    max_clusters : int (default: 10)
        The largest k tried, >= 2.
    generator : torch.Generator | None (default: None)
        Draws the references (a fresh one seeded 0 when None).
    """
    samples = check_int("gap_statistic", "samples", samples, 1)
    max_clusters = check_int("gap_statistic", "max_clusters", max_clusters, 2)
    x = values.detach().to(_CPU, torch.float64).flatten()
    n = x.numel()
    limit = min(max_clusters, n - 1)
    spread = x.max() - x.min() if n else x.new_zeros(())
    if limit < 2 or not spread > MIN_RELATIVE_SPREAD * x.abs().mean():
        return 1
    x = (x - x.min()) / spread
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    references = torch.rand(samples, n, generator=generator, dtype=torch.float64)
    within = within_cluster_sums(torch.cat([x[None, :], references]), limit)  # shape: (1+B, K)
    logs = within.clamp_min(torch.finfo(torch.float64).tiny).log()
    gaps = logs[1:].mean(dim=0) - logs[0]  # shape: (K,)
    spreads = math.sqrt(1 + 1 / samples) * logs[1:].std(dim=0, correction=0)
    for k in range(1, limit):  # k clusters vs k + 1 (index k - 1 vs k)
        if gaps[k - 1] >= gaps[k] - spreads[k]:
            return k
    return limit


def upper_cluster(values: torch.Tensor) -> torch.Tensor:
    """The cluster of larger mean when 1-D ``values`` are split in two by exact 2-means.

    Sorted values are split where the summed within-cluster squares are least (an optimal
    2-means split is a cut of the sorted order); returns a bool mask over ``values``, True
    from the cut's upper value on (equal values fall on the same side). Values all equal:
    nothing is flagged.
    """
    x = values.detach().to(_CPU, torch.float64).flatten()
    n = x.numel()
    if n < 2 or not x.max() > x.min():
        return torch.zeros(n, dtype=torch.bool)
    ordered = torch.sort(x).values
    prefix = torch.cat([x.new_zeros(1), ordered.cumsum(0)])
    squares = torch.cat([x.new_zeros(1), (ordered * ordered).cumsum(0)])
    cut = torch.arange(1, n, dtype=torch.float64)  # the lower cluster's size
    low = squares[1:n] - prefix[1:n] ** 2 / cut
    high = (squares[n] - squares[1:n]) - (prefix[n] - prefix[1:n]) ** 2 / (n - cut)
    best = int(torch.argmin(low + high))
    return x >= ordered[best + 1]


class FLDetector:
    """FLDetector: predict each client's update from its last one; flag the inconsistent.

    Variant: Zhang, Cao, Jia and Gong, "FLDetector: Defending Federated Learning Against
    Model Poisoning Attacks via Detecting Malicious Clients", KDD 2022, Algorithm 1, in
    update space (an update is trained minus global weights, not a gradient). In round t,
    with global model ``w_t``:

    - Global update of the last round ``g_{t-1}``: the rule's output of that round, which
      the pipeline offers as ``previous_aggregate`` (before the server learning rate and
      any noise added after the rule: FLAME's, weak DP's). Called without it, the model's
      move ``w_t - w_{t-1}`` stands in (the aggregate times the server learning rate,
      plus any noise).
    - Curvature pairs ``Δw_k = w_k - w_{k-1}`` and ``Δg_k = g_k - g_{k-1}``, the last N
      (``window``); round t adds the pair of round t-1. ``H`` is their L-BFGS matrix
      (``lbfgs_hvp``), applied once per round to ``w_t - w_{t-1}``: the same vector for
      every client, ``O(N^2 d)``.
    - Prediction ``ĝ_i = Δ_i^{t-1} + H (w_t - w_{t-1})`` (Cauchy's mean value theorem);
      ``d_i = ||ĝ_i - Δ_i^t||``, normalised by its sum over the clients scored this round
      (each gets ``1/m`` when the sum is 0); suspicion ``s_i`` = the mean of client i's
      normalised distances over the last N rounds in which it had one.
    - A client needs its update of the previous round: one not sampled then (or that
      joined later) gets no score this round, and its suspicion keeps its older scores. No
      client is scored before the first pair exists (round 3).
    - Detection: from round ``max(start_round, window + 2)`` on, when the window holds N
      pairs and at least 3 clients were scored this round: the gap statistic
      (``gap_statistic``) on the scored clients' suspicions; if it finds more than one
      cluster, exact 2-means on them and the cluster of larger mean is flagged.
    - ``remove=True`` (the paper): Algorithm 1 ends at its first detection, and the
      detected clients leave training. The detected clients are recorded and flagged in
      every later round they are sampled in; nothing is scored or detected any more (so
      honest clients cannot be removed one false alarm after another). The paper then
      restarts training from scratch without them; Oleander continues from the current
      model. Under partial participation only the attackers scored in that round are
      caught. ``remove=False``: detection runs every round from then on and flags a
      client only in the rounds it picks it (a per-round filter).

    A round's "previous round" is the last round whose state was kept: a round that kept
    the global model (its state is discarded) is skipped, and the model did not move in it.

    Defaults: ``window=10`` (the paper's N); ``gap_samples=20`` and ``max_clusters=10``
    (the paper's B and K for its gap statistic; the authors' code uses 10 and 7);
    ``start_round=1`` (detect as soon as the window is full; the authors' code scores from
    round 51, the attack starting at round 50).

    Why: an honest client's update changes smoothly with the global model (the Hessian
    term), so it is predictable from its last one; a poisoned update (boosted, crafted
    anew each round, or switching between honest and malicious) is not. Breaks down
    against attackers who stay consistent with their own history (an attack applied the
    same way every round from the start, slow drifts within the honest spread), and with
    strongly non-IID honest clients whose prediction errors vary widely; it needs the same
    clients round after round (few scores under sparse sampling). The gap statistic can
    also split honest clients when no attack is present (false alarms the paper reports as
    rare).

    State (``strategies.state``): shared ``model`` (w of the last kept round), ``round``,
    ``step`` (``w_t - w_{t-1}``), ``g`` (the global update), ``s``/``y`` (the pairs,
    ``(m, d)``), ``removed`` (client ids); per
    client ``update`` and ``round`` (its last update, None once stale) and ``scores`` (its
    last N normalised distances). Tensors are kept as float32 on the CPU.

    Parameters
    ----------
    window : int (default: 10)
        N: curvature pairs kept and scores averaged, >= 1.
    remove : bool (default: True)
        Stop at the first detection and flag the detected clients for the rest of the
        run (the paper); False: detect every round, flag only in that round.
    gap_samples : int (default: 20)
        B, reference sets of the gap statistic, >= 1.
    max_clusters : int (default: 10)
        K, the largest number of clusters the gap statistic tries, >= 2.
    start_round : int (default: 1)
        The first round detection may run in, >= 1 (it also waits for the window).
    """

    def __init__(
        self,
        window: int = 10,
        remove: bool = True,
        gap_samples: int = 20,
        max_clusters: int = 10,
        start_round: int = 1,
    ) -> None:
        check_int("fldetector", "window", window, 1)
        check_int("fldetector", "gap_samples", gap_samples, 1)
        check_int("fldetector", "max_clusters", max_clusters, 2)
        check_int("fldetector", "start_round", start_round, 1)
        if not isinstance(remove, bool):
            raise ValueError(f"fldetector needs remove to be true or false, got remove={remove}")
        self.window = window
        self.remove = remove
        self.gap_samples = gap_samples
        self.max_clusters = max_clusters
        self.start_round = start_round
        self.name = "fldetector"

    def first_detection_round(self) -> int:
        """The first round detection can run in: round 1 stores the model, round 2 the
        first global update, round k >= 3 adds pair k - 2, so N pairs in round N + 2."""
        return max(self.start_round, int(self.window) + 2)

    def check_run(self, *, num_rounds: int, clients_per_round: int) -> None:
        """``ValueError`` when the run ends before detection could start."""
        first = self.first_detection_round()
        if first <= num_rounds:
            return
        if self.start_round > self.window + 2:
            raise ValueError(
                f"start_round={self.start_round}: fldetector would first detect in round "
                f"{first}, after the last round (num_rounds={num_rounds})"
            )
        raise ValueError(
            f"window={self.window}: fldetector needs window + 2 = {first} rounds before it "
            f"can detect, but num_rounds={num_rounds}"
        )

    def __call__(
        self,
        updates: torch.Tensor,
        *,
        client_ids: list[int],
        global_model: torch.Tensor | None,
        state: StageState,
        server_round: int,
        generator: torch.Generator | None = None,
        previous_aggregate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        check_updates(updates)
        n, d = updates.shape
        ids = [int(c) for c in client_ids]
        if len(ids) != n or len(set(ids)) != n:
            raise ValueError(f"fldetector needs {n} distinct client ids, got {len(ids)}")
        if global_model is None:
            raise ValueError("fldetector needs the global model")
        model = check_vector("fldetector", "global_model", global_model, d).detach()
        device = updates.device
        removed = set(state.get("removed", []))
        flags = torch.tensor([c in removed for c in ids], dtype=torch.bool)
        if removed:  # Algorithm 1 ends at its first detection; the detected stay out
            return flags.to(device)

        last_round = state.get("round")  # the last round whose state was kept
        if previous_aggregate is not None:
            previous_aggregate = check_vector(
                "fldetector", "previous_aggregate", previous_aggregate, d
            ).detach()
        hvp = self._advance(model, previous_aggregate, state, server_round, device)
        scored, suspicion = self._score(updates, ids, hvp, last_round, state)

        pairs = state.get("s")
        ready = (
            server_round >= self.start_round
            and pairs is not None
            and pairs.shape[0] >= self.window
            and len(scored) >= 3
        )
        if ready:
            clusters = gap_statistic(
                suspicion,
                samples=self.gap_samples,
                max_clusters=self.max_clusters,
                generator=generator,
            )
            if clusters > 1:
                upper = upper_cluster(suspicion).tolist()
                detected = [row for row, up in zip(scored, upper, strict=True) if up]
                flags[torch.tensor(detected, dtype=torch.long)] = True
                if self.remove:
                    removed |= {ids[row] for row in detected}
                    state.set("removed", sorted(removed))

        kept = updates.detach().to(_CPU, torch.float32)
        for row, client in enumerate(ids):
            if client in removed:
                state.set_client(client, "update", None)
            else:
                state.set_client(client, "update", kept[row].clone())
                state.set_client(client, "round", int(server_round))
        sampled = set(ids)
        for client in state.clients():  # a stale update is never used again: free it
            if client not in sampled and state.get_client(client, "update") is not None:
                state.set_client(client, "update", None)
        return flags.to(device)

    def _advance(
        self,
        model: torch.Tensor,
        aggregate: torch.Tensor | None,
        state: StageState,
        server_round: int,
        device: torch.device,
    ) -> torch.Tensor | None:
        """Add the last round's curvature pair; ``H (w_t - w_{t-1})``, or None without pairs.

        ``aggregate`` is the rule's output of the last kept round (the global update
        ``g_{t-1}``); without it, the model's move ``w_t - w_{t-1}`` stands in for it.
        Everything is read from and written to ``state`` as float32 on the CPU, so a run
        resumed from a checkpoint computes exactly what an uninterrupted one does.
        """
        previous = state.get("model")
        state.set("round", int(server_round))
        state.set("model", model.to(_CPU, torch.float32).clone())
        if previous is None:
            return None
        if previous.shape != model.shape:
            raise ValueError(
                f"fldetector: the global model has {model.numel()} values, the one it "
                f"kept {previous.numel()}"
            )
        step = model.to(_CPU, torch.float64) - previous.to(torch.float64)  # w_t - w_{t-1}
        g = step if aggregate is None else aggregate.to(_CPU, torch.float64)  # g_{t-1}
        last_step, last_g = state.get("step"), state.get("g")
        state.set("step", step.to(torch.float32))
        state.set("g", g.to(torch.float32))
        if last_step is not None:
            last_g = last_step if last_g is None else last_g
            s, y = state.get("s"), state.get("y")
            pair_s = last_step[None, :]  # Δw_{t-1} = w_{t-1} - w_{t-2}
            pair_y = (g - last_g.to(torch.float64)).to(torch.float32)[None, :]  # Δg_{t-1}
            s = pair_s if s is None else torch.cat([s, pair_s])[-self.window :]
            y = pair_y if y is None else torch.cat([y, pair_y])[-self.window :]
            state.set("s", s)
            state.set("y", y)
        s, y = state.get("s"), state.get("y")
        if s is None:
            return None
        v = state.get("step").to(device)  # w_t - w_{t-1}, as stored
        return lbfgs_hvp(s.to(device), y.to(device), v)

    def _score(
        self,
        updates: torch.Tensor,
        ids: list[int],
        hvp: torch.Tensor | None,
        last_round: Any,
        state: StageState,
    ) -> tuple[list[int], torch.Tensor]:
        """Rows scored this round and their suspicions; appends to each client's scores."""
        if hvp is None or last_round is None:
            return [], torch.zeros(0, dtype=torch.float64)
        rows = [
            row
            for row, client in enumerate(ids)
            if state.get_client(client, "round") == last_round
            and state.get_client(client, "update") is not None
        ]
        if not rows:
            return [], torch.zeros(0, dtype=torch.float64)
        device = updates.device
        # In the updates' dtype: a float64 copy of (m, d) costs more than the scores.
        before = torch.stack([state.get_client(ids[r], "update") for r in rows])
        predicted = before.to(device, updates.dtype).add_(hvp.to(updates.dtype))  # (m, d)
        predicted.sub_(updates[rows])
        distance = torch.linalg.vector_norm(predicted, dim=1).to(_CPU, torch.float64)  # (m,)
        total = distance.sum()
        # a zero total (every prediction exact): nobody is more suspicious than anybody else
        equal = torch.full_like(distance, 1.0 / len(rows))
        normalised = distance / total if total > 0 else equal
        suspicion = []
        for row, value in zip(rows, normalised.tolist(), strict=True):
            scores = [*state.get_client(ids[row], "scores", []), value][-self.window :]
            state.set_client(ids[row], "scores", scores)
            suspicion.append(sum(scores) / len(scores))
        return rows, torch.tensor(suspicion, dtype=torch.float64)
