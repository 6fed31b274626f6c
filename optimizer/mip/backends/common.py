"""What every backend shares: the normalised result, the status enum, gap and value helpers, and the
one deadline a whole run may share (`run_deadline`)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from optimizer.mip.lp import Model


DEFAULT_GAP = 1e-6  # relative; so that OPTIMAL means optimal, not "within solver default 1e-4"
ABS_GAP = 1e-6  # absolute; only matters for objectives near 0
SEED = 1
HIGHS_HEURISTIC_EFFORT = 0.15  # HiGHS default 0.05; see OrToolsBackend._params


class Status(str, Enum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"
    ERROR = "error"

    @property
    def has_solution(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


@dataclass
class SolveResult:
    status: Status
    objective: float | None  # including the objective's constant
    best_bound: float | None
    gap: float | None  # |objective - best_bound| / max(1e-9, |objective|)
    values: list[float] | None  # by variable index; integers rounded, all clipped to bounds
    runtime_s: float  # wall clock, translation + solve
    backend: str  # "ortools" | "pulp"
    solver: str  # "highs" | "scip" | "cbc"
    message: str = ""
    nodes: int | None = None  # branch-and-bound nodes the solver explored (the work done)
    stopped_by: str = ""  # the limit that ended the solve: "time", "work" (node limit) or "" (finished)

    @property
    def has_solution(self) -> bool:
        return self.values is not None

    def values_by_name(self, model: Model) -> dict[str, float]:
        if self.values is None:
            raise ValueError(f"no solution ({self.status.value}): {self.message}")
        return model.values_by_name(self.values)


@runtime_checkable
class Backend(Protocol):
    name: str

    def is_available(self) -> bool: ...

    def solve(self, model: Model, time_limit_s: float | None = None, gap: float | None = None,
              start: list[float] | None = None, work_limit: int | None = None,
              cutoff: float | None = None) -> SolveResult: ...


# -- shared helpers ---------------------------------------------------------------------------

def _check_limits(time_limit_s: float | None, gap: float | None) -> None:
    if time_limit_s is not None and not (time_limit_s > 0 and math.isfinite(time_limit_s)):
        raise ValueError(f"time_limit_s must be a positive number of seconds, got {time_limit_s!r}")
    if gap is not None and not (0 <= gap < 1):
        raise ValueError(f"gap is a relative gap in [0, 1), got {gap!r}")


def _check_work(work_limit: int | None) -> None:
    if work_limit is not None and (isinstance(work_limit, bool) or not isinstance(work_limit, int) or work_limit < 0):
        raise ValueError(f"work_limit is a number of branch-and-bound nodes (an integer >= 0), got {work_limit!r}")


def _check_cutoff(model, cutoff: float | None) -> None:
    """A cutoff prunes what cannot beat a known design: only meaningful when minimising."""
    if cutoff is not None and model.sense != "min":
        raise ValueError("a cutoff is only supported for minimisation")


def _rel_gap(obj: float | None, bound: float | None) -> float | None:
    if obj is None or bound is None or not math.isfinite(bound) or not math.isfinite(obj):
        return None
    return abs(obj - bound) / max(1e-9, abs(obj))


def _within_default_gap(obj: float, bound: float | None) -> bool:
    """Did the solver prove optimality to our default tolerance (not just to a looser `gap`)?"""
    if bound is None or not math.isfinite(bound):
        return True  # solver said optimal and gave no bound to doubt it with
    diff = abs(obj - bound)
    slack = 1.01  # solvers measure the gap slightly differently (SCIP divides by min(|p|,|d|))
    return diff <= ABS_GAP * slack or diff <= DEFAULT_GAP * slack * max(1e-9, abs(obj))


def _clean_values(model: Model, raw: list[float]) -> list[float]:
    """Round integer variables and clip to bounds: solvers return 2.9999999 and -1e-12."""
    out = []
    for v, x in zip(model.vars, raw):
        x = float(x)
        if v.integer:
            x = float(round(x))
        x = min(max(x, v.lb), v.ub)
        out.append(x + 0.0)  # -0.0 -> 0.0
    return out


def _solution_status(obj: float, bound: float | None, gap: float | None,
                     proved_optimal: bool) -> tuple[Status, str]:
    if proved_optimal and _within_default_gap(obj, bound):
        return Status.OPTIMAL, ""
    if proved_optimal:
        return Status.FEASIBLE, f"stopped at relative gap {gap:.3g} (requested gap reached)"
    return Status.FEASIBLE, ""


def _exc_message(exc: BaseException) -> str:
    """MathOpt 9.15 sometimes raises a generic error while translating a solver failure; the
    solver's real message is in `__context__`, so lead with that."""
    msg = f"{type(exc).__name__}: {exc}"
    ctx = exc.__context__
    if ctx is not None and ctx is not exc:
        # e.g. HiGHS's "kError [INTERNAL]" surfacing as an AttributeError inside MathOpt's status
        # translation: the solver's words are the message, the translation error only noise.
        return str(ctx) if isinstance(exc, AttributeError) else f"{ctx} (raised as {msg})"
    return msg



class _Results:
    """Builds this backend's normalised SolveResult (both backends share the shape)."""

    name: str
    solver: str

    def _result(self, status: Status, t0: float, message: str = "", **kw) -> SolveResult:
        base = dict(objective=None, best_bound=None, gap=None, values=None)
        base.update(kw)
        return SolveResult(status=status, runtime_s=time.perf_counter() - t0, backend=self.name,
                           solver=self.solver, message=message, **base)


# -- one deadline for a whole run ------------------------------------------------------------

_DEADLINE: list[float] = []  # time.monotonic() by which every solve of the current run must end


@contextlib.contextmanager
def run_deadline(seconds: float | None):
    """Within this block every `solve` shares one budget of `seconds` (None: no budget): its time
    limit is cut to what is left, and once nothing is left it answers TIME_LIMIT without solving.
    This is what bounds a run's lexicographic second stage and an infeasible instance's diagnosis."""
    if seconds is None:
        yield
        return
    _DEADLINE.append(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.pop()


def _time_left() -> float | None:
    return None if not _DEADLINE else _DEADLINE[-1] - time.monotonic()


