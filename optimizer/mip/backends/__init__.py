"""Solve an `optimizer.mip.lp.Model` with OR-Tools MathOpt (default) or PuLP/CBC (fallback).

Each backend translates the model, solves, and returns a `SolveResult` normalised across solvers:
one status enum, the objective *including* its constant, the best bound, the relative gap and
the values by variable index. Solver packages are imported inside the backends, so importing
this module never loads ortools or pulp (docs/solvers.md says why import order matters).

Status semantics (identical on every backend):
  OPTIMAL     proven optimal to a relative gap of 1e-6 (`DEFAULT_GAP`)
  FEASIBLE    a solution, but stopped by the time limit or by a looser `gap` than 1e-6
  INFEASIBLE  no solution exists (also "infeasible or unbounded"; the message says so)
  UNBOUNDED   the objective can improve without limit
  TIME_LIMIT  stopped by a limit before any solution was found
  ERROR       the solver failed; `message` carries the solver's own words
"""


from __future__ import annotations

import math
import time
import warnings

from optimizer.mip.lp import Model
from optimizer.mip.backends.common import (  # noqa: F401 (the backends' public names live here)
    Status, SolveResult, Backend, _check_limits, _check_work, _time_left, ABS_GAP, DEFAULT_GAP, run_deadline, _exc_message,
)
from optimizer.mip.backends.cbc import PulpBackend, _import_pulp, _to_pulp
from optimizer.mip.backends.ortools import OrToolsBackend, _to_model_proto


_FACTORIES = {
    "ortools": lambda: OrToolsBackend(),
    "ortools-highs": lambda: OrToolsBackend("highs"),
    "ortools-scip": lambda: OrToolsBackend("scip"),
    "pulp": lambda: PulpBackend(),
}
BACKEND_NAMES = tuple(_FACTORIES)


def _implausible(model: Model, res: SolveResult, tol: float = 1e-5) -> str | None:
    """Why a backend's solution cannot be trusted (non-finite values, a constraint broken beyond
    solver tolerance), or None. A garbage answer is treated like a solver failure: fall back."""
    if res.values is None:
        return None
    if len(res.values) != model.num_vars or not all(math.isfinite(x) for x in res.values):
        return "holds non-finite or missing values"
    if res.objective is not None and not math.isfinite(res.objective):
        return "has a non-finite objective"
    worst = model.violations(res.values, tol=tol)  # the verifier's own test, 10x looser
    if worst:
        w = worst[0]
        return f"breaks the {w.kind} of '{w.name}' by {w.amount:.3g}"
    return None


def _extras(start, work_limit, cutoff=None) -> dict:
    """Only the options given, so a backend without them (a test double) still takes plain solves."""
    return {k: x for k, x in (("start", start), ("work_limit", work_limit), ("cutoff", cutoff)) if x is not None}


def get_backend(name: str = "ortools") -> Backend:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}") from None


def solve(model: Model, backend: str | Backend = "ortools", time_limit_s: float | None = None,
          gap: float | None = None, fallback: bool = True, start: list[float] | None = None,
          work_limit: int | None = None, cutoff: float | None = None) -> SolveResult:
    """Solve with `backend`; if it is missing or fails (ERROR), try the other backend when
    `fallback` is true, saying in `message` that it fell back and why.

    Only ERROR / unavailability falls back: INFEASIBLE or TIME_LIMIT are answers, not failures.
    The fallback gets the remaining time, but never less than 10% of the limit.
    `start` (a feasible assignment by variable index) is the MIP start; `work_limit` caps the
    branch-and-bound nodes, a limit that stops at the same point however loaded the machine is.
    `cutoff` (the objective, constant included, of a design known to exist) lets the solver discard
    every node that cannot beat it; INFEASIBLE then means "nothing below the cutoff", not "no design".
    """
    _check_limits(time_limit_s, gap)
    _check_work(work_limit)
    first = get_backend(backend) if isinstance(backend, str) else backend
    left = _time_left()
    if left is not None:
        if left <= 0.05:
            return SolveResult(Status.TIME_LIMIT, None, None, None, None, 0.0, first.name, getattr(first, "solver", "?"),
                               "the run's time limit was spent before this solve")
        time_limit_s = left if time_limit_s is None else min(time_limit_s, left)
    chain: list[Backend] = [first]
    if fallback:
        chain += [get_backend(n) for n in ("ortools", "pulp") if n != first.name]
    t0 = time.perf_counter()
    notes: list[str] = []
    result: SolveResult | None = None
    for b in chain:
        label = f"{b.name}/{getattr(b, 'solver', '?')}"
        limit = time_limit_s
        if limit is not None and notes:
            limit = max(limit - (time.perf_counter() - t0), 0.1 * limit)
        if not b.is_available():
            notes.append(f"{label} is not available")
            continue
        result = b.solve(model, limit, gap, **_extras(start, work_limit, cutoff))
        bad = _implausible(model, result)
        if bad:
            result = SolveResult(Status.ERROR, None, None, None, None, result.runtime_s, result.backend, result.solver,
                                 f"returned a solution that {bad}")
        if result.status != Status.ERROR:
            break
        notes.append(f"{label} failed: {result.message}")
    if result is None:
        return SolveResult(Status.ERROR, None, None, None, None, time.perf_counter() - t0,
                           first.name, getattr(first, "solver", "?"), "; ".join(notes) or "no backend")
    if notes and result.status != Status.ERROR:
        fell = f"fell back to {result.backend}/{result.solver} because " + "; ".join(notes)
        result.message = f"{fell}. {result.message}".strip() if result.message else fell
    elif notes and len(notes) > 1:
        result.message = "; ".join(notes)
    result.runtime_s = time.perf_counter() - t0
    return result


def lp_duals(model: Model) -> dict[str, float]:
    """Constraint duals (d objective / d right-hand side) of a continuous model, by constraint name.

    Solved with MathOpt's GLOP (an LP solver: exact duals, unlike a MIP solver's), falling back to
    CBC through PuLP. Empty when the model is not an LP or no solver answers."""
    if model.num_integer_vars:
        raise ValueError("lp_duals needs a continuous model (fix the integers first)")
    try:
        from ortools.math_opt.python import mathopt

        proto = _to_model_proto(model)
        mm = mathopt.Model.from_model_proto(proto)
        res = mathopt.solve(mm, mathopt.SolverType.GLOP)
        if res.termination.reason != mathopt.TerminationReason.OPTIMAL:
            return {}
        return {c.name: float(x) for c, x in res.dual_values().items()}
    except ImportError:
        pass
    pulp = _import_pulp()
    prob, _ = _to_pulp(pulp, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        prob.solve(pulp.PULP_CBC_CMD(msg=False))
    if prob.status != pulp.LpStatusOptimal:
        return {}
    return {model.constraints[k].name: float(prob.constraints[f"c{k}"].pi or 0.0) for k in range(model.num_constraints)}


__all__ = [
    "ABS_GAP", "BACKEND_NAMES", "DEFAULT_GAP", "Backend", "OrToolsBackend", "PulpBackend", "SolveResult", "Status",
    "get_backend", "lp_duals", "run_deadline", "solve",
]
