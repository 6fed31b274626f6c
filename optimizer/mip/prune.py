"""Cut each job's candidate table down to what the MIP can ever want.

1. Feasible: fits memory and meets the deadline (checkpoint stalls included).
2. Same hardware, fastest layout: among candidates with the same accelerator, fabric and node
   count, keep the fastest. This is a policy as much as a pruning: nobody buys the same nodes to
   run a slower layout. (A slower layout would read training data slightly slower; we ignore
   that second-order storage saving on purpose.)
3. Dominance per (accelerator, fabric): a candidate is dropped when another uses no more nodes
   and trains no slower. What is left is the nodes/time Pareto front.
4. For cost and power objectives, time is only a constraint; every cost, power, rack, endpoint and
   storage-bandwidth term grows with the node count along the front (more nodes = faster = more
   data read), so only the front's fewest-node point per (accelerator, fabric) can be optimal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from models.candidates import JobSpace, JobTable, ServiceTable, evaluated_table, job_space, shared_evaluations
from models.perf.training import model_flops_per_token, peak_flops_bound
from models.schema import Catalog, TrainingJob
from models.metrics import by_objective


@dataclass(frozen=True)
class Pruned:
    table: JobTable
    keep: np.ndarray  # row indices into table, survivors
    enumerated: int
    fit_memory: int
    meet_deadline: int
    # Layouts evaluated (None: all enumerated); fit_memory and meet_deadline count among those.
    evaluated: int | None = None

    @property
    def survived(self) -> int:
        return len(self.keep)


def compact(pr: Pruned, also=()) -> Pruned:
    """The same survivors in a table of the surviving rows (plus the rows `also`, e.g. a job's rental
    choices) only: a 200-job instance's full tables are gigabytes, and nothing after pruning reads
    the other rows. Row order is kept, so a choice among the rows left (least hours, then lowest
    row) is the one made on the full table. A job with no survivor keeps its whole table, which
    `optimizer.solving.unfit` explains from."""
    t = pr.table
    if not len(pr.keep):
        return pr
    k = np.union1d(pr.keep, np.asarray(list(also), dtype=np.int64)).astype(np.int64)
    n = len(t)
    rows = lambda a: a[k] if isinstance(a, np.ndarray) and a.shape[:1] == (n,) else a  # noqa: E731
    small = replace(t, grid=t.grid.take(k), perf={name: rows(a) for name, a in t.perf.items()}, days=rows(t.days),
                    read_gbps=rows(t.read_gbps), endpoints=rows(t.endpoints))
    return Pruned(small, np.searchsorted(k, pr.keep), pr.enumerated, pr.fit_memory, pr.meet_deadline, pr.evaluated)


def prune(table: JobTable, objective: str) -> Pruned:
    perf = table.perf
    fits = perf["fits_memory"].astype(bool)
    ok = fits & np.isfinite(table.days) & (table.days <= (np.inf if table.job.deadline_days is None else table.job.deadline_days))
    idx = np.flatnonzero(ok)
    if len(idx) and not by_objective(objective).per_job:
        idx = _fewest_nodes_then_fastest(table, idx)
    elif len(idx):
        g = table.grid
        nodes = perf["nodes"][idx]
        days = table.days[idx]
        # Sort by (acc, fab, nodes, days): the first row of each (acc, fab, nodes) group is its fastest;
        # walking a group of (acc, fab) in node order, a row survives only if strictly faster than all before.
        order = np.lexsort((days, nodes, g.fab[idx], g.acc[idx]))
        idx, nodes, days = idx[order], nodes[order], days[order]
        acc, fab = g.acc[idx], g.fab[idx]
        new_group = np.r_[True, (acc[1:] != acc[:-1]) | (fab[1:] != fab[:-1])]
        # Keep a row only if strictly faster than every row before it in its (acc, fab) group.
        starts = np.flatnonzero(new_group)
        keep = np.zeros(len(idx), dtype=bool)
        for lo, hi in zip(starts, np.r_[starts[1:], len(idx)]):
            before = np.r_[np.inf, np.minimum.accumulate(days[lo:hi])[:-1]]
            keep[lo:hi] = days[lo:hi] < before - 1e-12
        idx = idx[keep]
    return Pruned(table, idx, len(table), int(fits.sum()), int(ok.sum()))


def _fewest_nodes_then_fastest(table: JobTable, idx: np.ndarray) -> np.ndarray:
    """Per (accelerator, fabric), the row with the fewest nodes, fastest among those, lowest index
    among exact ties; in linear time (a sort of ~400k rows per job dominated large instances)."""
    g = table.grid
    group = g.acc[idx].astype(np.int64) * (int(g.fab.max()) + 1) + g.fab[idx]
    nodes = table.perf["nodes"][idx]
    days = table.days[idx]
    n_groups = int(group.max()) + 1
    fewest = np.full(n_groups, np.inf)
    np.minimum.at(fewest, group, nodes)
    on_min = nodes == fewest[group]
    fastest = np.full(n_groups, np.inf)
    np.minimum.at(fastest, group[on_min], days[on_min])
    best = np.flatnonzero(on_min & (days == fastest[group]))  # ascending, so the first per group is the lowest index
    _, first = np.unique(group[best], return_index=True)
    return idx[best[first]]


FIRST_ROWS = 256  # rows per (accelerator, fabric) pair in the first round of `prune_fewest_nodes`
BOUND_SLACK = 1e-9  # relative: the FLOP bound skips a row only when it misses the deadline by more


def prune_fewest_nodes(space: JobSpace, jobs: list[TrainingJob], flop_bound: bool = True) -> list[Pruned | None]:
    """`compact(prune(table, objective))` for a cost or power objective, for jobs sharing `space`'s
    evaluation, without evaluating every row. The survivor of a pair is its fewest-node feasible
    row (fastest, then lowest row), so each pair's rows are evaluated in rounds in order of nodes
    (known before evaluation), the first round FIRST_ROWS and each next one half as many more, always
    ending at a whole node count, until every job has a feasible row there or the pair is done.
    With `flop_bound`, rows with too few accelerators to meet any job's deadline even at the peak FLOP
    rate (models.perf.training.peak_flops_bound) are never evaluated; every evaluated row is
    checked against that bound, and one that beats it reruns the whole search without the bound.
    None for a job with no survivor at all: every row was evaluated then, and the caller's full
    table explains why (optimizer.solving.unfit)."""
    nb, n_pairs = len(space.base), len(space.pair_acc)
    if not nb or not n_pairs:
        return [None] * len(jobs)
    cat, dims = space.catalog, space.dims
    flops_token = model_flops_per_token(dims)
    n_acc = space.base.t * space.base.p * space.base.d * space.base.cp
    peak = {}
    orders = {}
    for a in np.unique(space.pair_acc):
        a = int(a)
        nodes = space.nodes(a)
        order = np.argsort(nodes, kind="stable")  # ties keep row order, so lower rows come first
        peak[a] = peak_flops_bound(cat.accelerators[space.acc_names[a]], space.job.precision, cat.calibration)
        # Failure-free days at the peak rate bound the wall-clock days from below (goodput <= 1):
        # fewer accelerators than `need` meet no job's deadline.
        need = 0.0
        if flop_bound and all(job.deadline_days is not None for job in jobs):
            need = min(job.tokens * flops_token / (peak[a] * job.deadline_days * 86400.0) for job in jobs)
        cand = n_acc[order] >= need / (1.0 + BOUND_SLACK)
        orders[a] = (order, nodes[order], cand, np.r_[0, np.cumsum(cand)])
    peak_of_pair = np.array([peak[int(a)] for a in space.pair_acc])
    pos = np.zeros(n_pairs, dtype=np.int64)
    size = np.full(n_pairs, FIRST_ROWS, dtype=np.int64)
    best = np.full((len(jobs), n_pairs), -2, dtype=np.int64)  # -2 open, -1 none feasible, else the row
    fit = np.zeros(len(jobs), dtype=np.int64)
    meet = np.zeros(len(jobs), dtype=np.int64)
    seen = np.zeros(len(jobs), dtype=np.int64)
    while True:
        for p in np.flatnonzero(pos < nb):  # no candidate left: the pair is done
            cum = orders[int(space.pair_acc[p])][3]
            if cum[pos[p]] == cum[nb]:
                pos[p] = nb
        done = pos >= nb
        best[:, done] = np.where(best[:, done] == -2, -1, best[:, done])
        active = np.flatnonzero(~done & (best == -2).any(axis=0))
        if not len(active):
            break
        parts, bounds = [], [0]
        for p in active:
            order, sorted_nodes, cand, cum = orders[int(space.pair_acc[p])]
            end = min(int(np.searchsorted(cum, cum[pos[p]] + size[p], side="left")), nb)
            end = int(np.searchsorted(sorted_nodes, sorted_nodes[end - 1], side="right"))
            parts.append(p * nb + order[pos[p]:end][cand[pos[p]:end]])
            bounds.append(bounds[-1] + len(parts[-1]))
            pos[p], size[p] = end, size[p] * 3 // 2
        rows = np.concatenate(parts)
        ev = space.evaluated(rows)
        perf = ev[4]
        if flop_bound:
            pk = peak_of_pair[rows // nb]
            done_flops = ev[3].gb * float(dims.seq_len) * flops_token
            if (done_flops > perf["step_time_s"] * perf["n_acc"] * pk * (1.0 + BOUND_SLACK)).any():
                return prune_fewest_nodes(space, jobs, flop_bound=False)  # the bound is wrong: search without
        for j, job in enumerate(jobs):
            want = best[j, active] == -2
            if not want.any():
                continue
            sel = np.concatenate([np.arange(bounds[q], bounds[q + 1]) for q in np.flatnonzero(want)])
            deadline = np.inf if job.deadline_days is None else job.deadline_days
            fits = perf["fits_memory"][sel].astype(bool)
            # Goodput is at most 1, so a row whose failure-free time misses the deadline misses it:
            # the rest of the job's table (storage, goodput) only where it can meet it.
            sel = sel[fits & (job.tokens / perf["tokens_per_s"][sel] / 86400.0 <= deadline)]
            t = evaluated_table(job, ev, sel)
            ok = np.isfinite(t.days) & (t.days <= deadline)
            fit[j] += int(fits.sum())
            meet[j] += int(ok.sum())
            seen[j] += len(fits)
            pair = np.searchsorted(bounds, sel, side="right") - 1  # position in `active` of each row
            nodes, days = t.perf["nodes"], t.days
            for q in np.unique(pair[ok]):
                on = ok & (pair == q)
                on &= nodes == nodes[on].min()
                best[j, active[q]] = rows[sel[on & (days == days[on].min())]].min()
    out: list[Pruned | None] = []
    for j, job in enumerate(jobs):
        keep = np.sort(best[j][best[j] >= 0])
        out.append(Pruned(space.table(job, keep), np.arange(len(keep)), len(space), int(fit[j]), int(meet[j]),
                          int(seen[j])) if len(keep) else None)
    return out


def prune_owned_jobs(jobs: list[TrainingJob], positions: list[int], catalog: Catalog) -> dict[int, Pruned]:
    """`prune_fewest_nodes` for the jobs at `positions`, two evaluations at a time (numpy releases
    the GIL in its kernels); position -> Pruned, missing for jobs with no survivor."""
    from concurrent.futures import ThreadPoolExecutor

    groups = list(shared_evaluations([jobs[i] for i in positions]).values())

    def one(members: list[int]) -> list[Pruned | None]:
        chosen = [jobs[positions[m]] for m in members]
        return prune_fewest_nodes(job_space(chosen[0], catalog), chosen)

    out: dict[int, Pruned] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for members, result in zip(groups, pool.map(one, groups)):
            for m, pr in zip(members, result):
                if pr is not None:
                    out[positions[m]] = pr
    return out


@dataclass(frozen=True)
class PrunedService:
    table: ServiceTable
    keep: np.ndarray
    enumerated: int
    fit_memory: int
    meet_slo: int
    # Disaggregated pools (empty unless the service allows it): prefill rows (one batch per
    # accelerator and tp) and decode rows (the best batch per accelerator and tp within the TPOT SLO).
    prefill_keep: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    decode_keep: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def survived(self) -> int:
        pools = len(self.prefill_keep) + len(self.decode_keep) if len(self.prefill_keep) and len(self.decode_keep) else 0
        return len(self.keep) + pools


def prune_service(table: ServiceTable) -> PrunedService:
    """Keep, per (accelerator, tp), the batch serving the most requests/s within the SLOs: a replica's
    cost (its t accelerators) does not depend on the batch, so this is exact. Then drop a layout when
    another on the same accelerator uses no more accelerators and serves at least as much."""
    from optimizer.mip.serving_pools import prune_pools

    ok = table.meets_slo()
    idx = np.flatnonzero(ok) if table.service.disaggregated is not True else np.zeros(0, dtype=np.int64)
    g, rps = table.grid, table.perf.get("slo_requests_per_s", table.perf["requests_per_s"])
    best: dict[tuple[int, int], int] = {}
    for i in idx:
        key = (int(g.acc[i]), int(g.t[i]))
        if key not in best or rps[i] > rps[best[key]]:
            best[key] = int(i)
    keep = [
        i for (a, t), i in best.items()
        if not any(a2 == a and t2 <= t and rps[j] >= rps[i] and (t2, j) != (t, i) for (a2, t2), j in best.items())
    ]
    return PrunedService(table, np.array(sorted(keep), dtype=np.int64), len(table),
                         int(table.perf["fits_memory"].astype(bool).sum()), int(ok.sum()), *prune_pools(table))
