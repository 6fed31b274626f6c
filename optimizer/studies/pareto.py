"""Pareto fronts of two metrics by the epsilon-constraint method.

"How much faster if I spend 20% more?" is a question about a front, not a point. For axes x and y
(each minimised) the front is traced by minimising x subject to y <= eps over a grid of eps from
y's own minimum to y at x's minimum. Each eps is solved lexicographically, min x then min y at
that x, so every point is a proven-optimal, verified design that no other design dominates (a
plain `min x s.t. y <= eps` may return a design with the right x but needlessly high y).

The grid is walked from y at x's minimum downwards: once a point with y = y_k is known, every eps
in [y_k, previous eps] has the same answer, so it is not solved again: a front of k points costs
about 2k + 2 solves, whatever the grid (plus the bisection probes below). A grid can step over
points of a discrete front; `points=None` (`--all`) walks it point by point instead (each next
bound just below the last point), so every nondominated design is found, again at about two
solves per point.

Axes: tco, capex, power (facility, PUE included), carbon, time_to_train:JOB. Time to train is
minimised with the `min_time` objective when the instance has exactly one training job and no
services; otherwise by bisection over the job's candidate training times (each probe a
feasibility solve with a bound on its days), since `min_time` would minimise the sum over jobs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from models.metrics import METRICS, by_objective, parse
from models.schema import Instance

from optimizer.mip.design import Solution
from optimizer.solving.measure import metric_value
from optimizer.solving.pipeline import prepare, solve_instance
from optimizer.studies.explain import diagnose_solution
from optimizer.fmt import csv_row

REL_TOL = 1e-6  # the MIP's optimality gap: values closer than this are the same value
MAX_POINTS = 10_000  # a safety stop for the point-by-point walk
# The walk's next bound sits this far (relative) below the last point. It must clear the solvers'
# integrality and feasibility tolerances (1e-6): a binary at 0.999999 would let a design at the
# last point's y pass a bound a hair below it. Points closer than this in y are one point.
STEP = 1e-5


class ParetoError(ValueError):
    """Bad axes or arguments (the message says why)."""


class ParetoInfeasible(ParetoError):
    """No design satisfies the instance at all: there is no front (the message carries the diagnosis)."""


@dataclass(frozen=True)
class Axis:
    spec: str  # what the user wrote
    metric: str  # a `solving.measure.metric_value` spec
    objective: Optional[str]  # the objective that minimises it; None = bisection over a job's days
    label: str
    unit: str
    scale: float  # metric value x scale = display value

    def show(self, value: float) -> float:
        return value * self.scale

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})"


def _axis_names() -> tuple[str, ...]:
    return tuple(m.axis + (":JOB" if m.per_job else "") for m in METRICS.values() if m.axis)


AXIS_NAMES = _axis_names()


def parse_axis(spec: str, instance: Instance) -> Axis:
    """A registry metric by its axis name or alias ('tco', 'capex', 'power', 'carbon',
    'time_to_train:JOB', also 'days:JOB'; the job may be left out when the instance has one
    training job)."""
    try:
        metric, job = parse(spec)
    except ValueError:
        raise ParetoError(f"unknown axis '{spec}' (expected one of: {', '.join(_axis_names())})") from None
    if not metric.per_job:
        return Axis(spec, metric.name, metric.objective, metric.label, metric.display_unit, metric.display_scale)
    names = [j.name for j in instance.training_jobs]
    if not job:
        if len(names) != 1:
            raise ParetoError(f"axis '{spec}': name the job, time_to_train:JOB (jobs: {', '.join(names) or 'none'})")
        job = names[0]
    if job not in names:
        raise ParetoError(f"axis '{spec}': no training job '{job}' (jobs: {', '.join(names) or 'none'})")
    single = len(names) == 1 and not instance.services
    return Axis(spec, f"{metric.name}:{job}", metric.objective if single else None, f"{metric.label} {job}",
                metric.display_unit, metric.display_scale)


def _up(v: float) -> float:
    """A bound that a design at exactly v satisfies despite floating point."""
    return v + 1e-9 * max(1.0, abs(v))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(1.0, abs(a), abs(b))


@dataclass
class ParetoPoint:
    x: float  # metric units (USD, kW, tCO2/yr, days)
    y: float
    eps: Optional[float]  # the y bound it was found for (None: the x-minimum anchor)
    solution: Solution

    @property
    def proven(self) -> bool:
        return self.solution.status == "optimal" and self.solution.verified

    @property
    def label(self) -> str:
        """Accelerator(s) and node count, for plots and tables: '128 nodes a100-sxm-80gb'."""
        nodes = self.solution.design.nodes
        return " + ".join(f"{sum(by_o.values())} nodes {acc}" for acc, by_o in sorted(nodes.items()) if sum(by_o.values()))


@dataclass
class ParetoFront:
    instance: str
    x: Axis
    y: Axis
    points: list[ParetoPoint] = field(default_factory=list)  # by increasing x (so decreasing y)
    solves: int = 0
    duplicates: int = 0
    dominated: int = 0
    grid: list[float] = field(default_factory=list)

    def records(self) -> list[dict]:
        out = []
        for p in self.points:
            sol, d = p.solution, p.solution.design
            rec: dict[str, Any] = {
                self.x.metric: p.x, self.y.metric: p.y, "eps": p.eps,
                "tco_usd": d.tco_usd, "capex_usd": d.capex_usd["total"], "facility_power_kw": d.facility_power_kw,
                "carbon_t_per_year": d.carbon_t_per_year, "design": p.label,
            }
            for j in sol.jobs:
                rec[f"{j.name}.accelerator"] = j.accelerator
                rec[f"{j.name}.accelerators"] = j.accelerators
                rec[f"{j.name}.layout"] = f"tp{j.tp} pp{j.pp} dp{j.dp}"
                rec[f"{j.name}.days"] = j.days
            rec["status"] = sol.status
            rec["verified"] = sol.verified
            out.append(rec)
        return out

    def to_csv(self) -> str:
        recs = self.records()
        keys: list[str] = []
        for r in recs:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys or [self.x.metric, self.y.metric], lineterminator="\n")
        w.writeheader()
        for r in recs:
            w.writerow(csv_row(r))
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {
            "instance": self.instance, "x": self.x.metric, "y": self.y.metric, "solves": self.solves,
            "duplicates_removed": self.duplicates, "dominated_removed": self.dominated, "eps_grid": self.grid,
            "points": [{**rec, "solution": p.solution.to_dict()} for rec, p in zip(self.records(), self.points)],
        }


class _Solver:
    """Minimise one axis under bounds; counts solves and reports each to a callback."""

    def __init__(self, instance: Instance, backend: str, time_limit_s, gap, on_solve):
        self.instance, self.on_solve = instance, on_solve
        self.kw = dict(backend=backend, time_limit_s=time_limit_s, gap=gap)
        self.count = 0
        self._days: dict[str, list[float]] = {}

    def _solve(self, objective: str, bounds: dict[str, float], what: str) -> Solution:
        sol = solve_instance(self.instance, objective=objective, bounds=bounds, **self.kw)
        self.count += 1
        if sol.status not in ("optimal", "infeasible"):
            raise ParetoError(f"{what}: the solver stopped with status '{sol.status}' {sol.message}".rstrip()
                              + " (raise --time-limit)")
        if self.on_solve is not None:
            self.on_solve(what, sol)
        return sol

    def minimize(self, axis: Axis, bounds: dict[str, float]) -> Solution:
        what = f"min {axis.spec}" + "".join(f", {k} <= {v:.6g}" for k, v in bounds.items())
        if axis.objective is not None:
            return self._solve(axis.objective, bounds, what)
        return self._min_days(axis.metric, bounds, what)

    def _candidate_days(self, job: str) -> list[float]:
        if job not in self._days:
            _, pruned = prepare(self.instance, frontier=True)
            pr = next(p for p in pruned if p.table.job.name == job)
            self._days[job] = sorted({float(d) for d in pr.table.days[pr.keep]})
        return self._days[job]

    def _min_days(self, metric: str, bounds: dict[str, float], what: str) -> Solution:
        """Bisection over the job's candidate times: the least days bound with a feasible design.
        The answer is the cheapest (TCO) design at that time, like min_time's tie-break."""
        cand = self._candidate_days(metric.split(":", 1)[1])
        best = self._solve("min_tco", dict(bounds), what)
        if best.design is None or not cand:
            return best

        def at(sol):  # index of the solution's time among the candidates
            d = next(j.days for j in sol.jobs if f"days:{j.name}" == metric)
            return min(range(len(cand)), key=lambda i: abs(cand[i] - d))

        lo, hi = 0, at(best)
        while lo < hi:
            mid = (lo + hi) // 2
            sol = self._solve("min_tco", {**bounds, metric: _up(cand[mid])}, f"{what} (probe {metric} <= {cand[mid]:.4g})")
            if sol.design is not None and at(sol) <= mid:
                best, hi = sol, at(sol)
            else:  # no design (or one a solver tolerance let through from just above the bound)
                lo = mid + 1
        return best


def pareto_front(instance: Instance, x: str = "tco", y: str = "time_to_train", points: Optional[int] = 8,
                 backend: str = "ortools", time_limit_s: Optional[float] = None, gap: Optional[float] = None,
                 on_solve: Optional[Callable[[str, Solution], None]] = None) -> ParetoFront:
    """The front of (x, y), both minimised, over `points` eps values of y (at least 2: the two ends),
    or every point of it when `points` is None (about two solves per point)."""
    ax, ay = parse_axis(x, instance), parse_axis(y, instance)
    if ax.metric == ay.metric:
        raise ParetoError(f"--x and --y are the same metric ({ax.metric})")
    if points is not None and points < 2:
        raise ParetoError("--points must be at least 2 (the two ends of the front)")
    if gap:
        raise ParetoError("a Pareto front needs proven optima; leave --gap out")
    s = _Solver(instance, backend, time_limit_s, gap, on_solve)
    front = ParetoFront(instance.name, ax, ay)

    def lexicographic(eps: Optional[float], first: Optional[Solution] = None) -> Optional[ParetoPoint]:
        """min x s.t. y <= eps, then min y s.t. x <= that minimum."""
        first = first or s.minimize(ax, {} if eps is None else {ay.metric: _up(eps)})
        if first.design is None:
            return None
        xe, y1 = metric_value(first, ax.metric), metric_value(first, ay.metric)
        sol = first
        if y1 > _up(y_lo):  # at y's own minimum no design does better on y: nothing to tie-break
            # The known y1 as a bound too: it changes no answer and helps the solver prune.
            second = s.minimize(ay, {ax.metric: _up(xe), ay.metric: _up(y1)})
            sol = second if second.design is not None else first
        return ParetoPoint(metric_value(sol, ax.metric), metric_value(sol, ay.metric), eps, sol)

    anchor = s.minimize(ax, {})
    if anchor.design is None:
        diagnose_solution(instance.model_copy(update={"objective": anchor.objective}), anchor, backend, time_limit_s)
        raise ParetoInfeasible("no design satisfies the instance, so there is no front:\n"
                               + "\n".join(f"  {x.strip()}" for x in anchor.diagnosis or [anchor.status]))
    low = s.minimize(ay, {})
    y_lo = metric_value(low, ay.metric)
    # min_time / min_power / min_carbon (and the days bisection) break ties by TCO: with x = TCO the
    # y-minimum solve already is the front's last point.
    bottom = None
    if ax.metric == "tco_usd" and (ay.objective is None or by_objective(ay.objective).tie_break == "min_tco"):
        bottom = ParetoPoint(metric_value(low, ax.metric), y_lo, y_lo, low)
    top = lexicographic(None, anchor)
    y_hi = top.y
    found = [top]
    if _close(y_lo, y_hi):
        front.grid = [y_hi]
    elif points is None:
        # Every point: each next bound sits just below the last point's y, so no design is skipped.
        current = top
        front.grid = [y_hi]
        while current.y > _up(y_lo) and len(found) < MAX_POINTS:
            eps = current.y - STEP * max(1.0, abs(current.y))
            front.grid.append(eps)
            p = lexicographic(eps)
            if p is None or p.y >= current.y:
                break
            found.append(p)
            current = p
    else:
        n = points - 1
        front.grid = [y_hi - k * (y_hi - y_lo) / n for k in range(n + 1)]
        front.grid[-1] = y_lo
        current = top
        for eps in front.grid[1:]:
            if current.y <= _up(eps):
                continue  # min x under this eps is `current` again (its bound was looser, and it satisfies this one)
            p = bottom if bottom is not None and eps == y_lo else lexicographic(eps)
            if p is None:  # cannot happen above y's minimum; guard against solver noise
                continue
            found.append(p)
            current = p
    front.solves = s.count
    front.points, front.duplicates, front.dominated = nondominated(found)
    return front


def nondominated(points: list) -> tuple[list, int, int]:
    """(the points no other point dominates, by increasing x; duplicates dropped; dominated dropped).

    Both coordinates are minimised; values within REL_TOL count as equal (the solvers' gap), so a
    point with the same x and a higher y is dominated, and two with the same x and y are one."""
    pts = sorted(points, key=lambda p: (p.x, p.y))
    unique, kept = [], []
    for p in pts:
        if unique and _close(p.x, unique[-1].x) and _close(p.y, unique[-1].y):
            continue
        unique.append(p)
    for p in unique:
        if kept and not (p.y < kept[-1].y and not _close(p.y, kept[-1].y)):
            continue  # some earlier point has x no larger and y no larger
        kept.append(p)
    return kept, len(pts) - len(unique), len(unique) - len(kept)
