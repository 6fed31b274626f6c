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

import contextlib
import math
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from optimizer.mip.lp import EQ, GE, LE, Model

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

    def solve(self, model: Model, time_limit_s: float | None = None, gap: float | None = None) -> SolveResult: ...


# -- shared helpers ---------------------------------------------------------------------------

def _check_limits(time_limit_s: float | None, gap: float | None) -> None:
    if time_limit_s is not None and not (time_limit_s > 0 and math.isfinite(time_limit_s)):
        raise ValueError(f"time_limit_s must be a positive number of seconds, got {time_limit_s!r}")
    if gap is not None and not (0 <= gap < 1):
        raise ValueError(f"gap is a relative gap in [0, 1), got {gap!r}")


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


# -- OR-Tools MathOpt -------------------------------------------------------------------------

class _Results:
    """Builds this backend's normalised SolveResult (both backends share the shape)."""

    name: str
    solver: str

    def _result(self, status: Status, t0: float, message: str = "", **kw) -> SolveResult:
        base = dict(objective=None, best_bound=None, gap=None, values=None)
        base.update(kw)
        return SolveResult(status=status, runtime_s=time.perf_counter() - t0, backend=self.name,
                           solver=self.solver, message=message, **base)


class OrToolsBackend(_Results):
    """OR-Tools MathOpt with SCIP or HiGHS ("auto": by size). Never CP-SAT: it is integer-only and
    returned a wrong optimum on a mixed model (docs/solvers.md).

    "auto" (the default) picks SCIP for small models and HiGHS from AUTO_HIGHS_INTEGERS integer
    variables up: SCIP runs one thread, tells INFEASIBLE from UNBOUNDED, prints nothing to stdout and
    is immune to the pulp+highspy crash; HiGHS is faster on dcopt's larger, multi-site MIPs (the
    measurements are in benchmarks/RESULTS.md).
    """

    name = "ortools"
    SOLVERS = ("auto", "scip", "highs")
    AUTO_HIGHS_INTEGERS = 250

    def __init__(self, solver: str = "auto"):
        if solver not in self.SOLVERS:
            raise ValueError(f"OrToolsBackend solver must be one of {self.SOLVERS}, got {solver!r}")
        self.solver = solver

    def __repr__(self) -> str:
        return f"OrToolsBackend(solver={self.solver!r})"

    def is_available(self) -> bool:
        try:
            from ortools.math_opt.python import mathopt  # noqa: F401
        except ImportError:
            return False
        return True

    def solve(self, model: Model, time_limit_s: float | None = None, gap: float | None = None) -> SolveResult:
        _check_limits(time_limit_s, gap)
        t0 = time.perf_counter()
        try:
            from ortools.math_opt.python import mathopt
        except ImportError as exc:
            return self._result(Status.ERROR, t0, f"ortools is not installed: {exc}")
        solver, note = self.solver, ""
        if solver == "auto":
            solver = "highs" if model.num_integer_vars >= self.AUTO_HIGHS_INTEGERS else "scip"
        if solver == "highs" and _highs_would_crash():
            solver = "scip"
            note = ("used SCIP instead of HiGHS: pulp (with highspy) was imported before ortools in "
                    "this process, and HiGHS then segfaults; import ortools first to use HiGHS")
        try:
            proto = _to_model_proto(model)
            params = self._params(mathopt, solver, time_limit_s, gap)
            solver_type = mathopt.SolverType.HIGHS if solver == "highs" else mathopt.SolverType.GSCIP
            with _quiet_stdout(solver == "highs"):
                res = mathopt.solve(mathopt.Model.from_model_proto(proto), solver_type, params=params)
            result = self._interpret(model, mathopt, res, t0)
            if res.termination.reason == mathopt.TerminationReason.INFEASIBLE_OR_UNBOUNDED \
                    and result.status == Status.INFEASIBLE:
                result = self._disambiguate(mathopt, proto, solver_type, params, result, t0, time_limit_s)
        except Exception as exc:  # solver failures must come back as a result, not a crash
            result = self._result(Status.ERROR, t0, f"the {solver.upper() if solver == 'scip' else 'HiGHS'} solve failed: "
                                                    f"{_exc_message(exc)}")
        result.solver = solver
        if note:
            result.message = f"{note}; {result.message}" if result.message else note
        return result

    def _disambiguate(self, mathopt, proto, solver_type, params, result, t0, time_limit_s):
        """HiGHS answers "infeasible or unbounded" from presolve, even for a feasible model with
        an unbounded objective. Telling the user "infeasible" then sends them hunting for
        conflicting limits, so solve once more without objective: feasible means unbounded."""
        import datetime

        if time_limit_s is not None:
            left = time_limit_s - (time.perf_counter() - t0)
            if left <= 0:
                return result
            params.time_limit = datetime.timedelta(seconds=left)
        proto.objective.Clear()
        with _quiet_stdout(solver_type == mathopt.SolverType.HIGHS):
            res = mathopt.solve(mathopt.Model.from_model_proto(proto), solver_type, params=params)
        if res.has_primal_feasible_solution():
            return self._result(Status.UNBOUNDED, t0, "the model is feasible and the objective is unbounded")
        if res.termination.reason == mathopt.TerminationReason.INFEASIBLE:
            return self._result(Status.INFEASIBLE, t0)
        return result

    def _params(self, mathopt, solver, time_limit_s, gap):
        import datetime

        p = mathopt.SolveParameters(
            random_seed=SEED,
            relative_gap_tolerance=DEFAULT_GAP if gap is None else gap,
            absolute_gap_tolerance=ABS_GAP,
        )
        if time_limit_s is not None:
            p.time_limit = datetime.timedelta(seconds=time_limit_s)
        if solver == "scip":
            p.threads = 1  # HiGHS rejects `threads` (must be set via globals); SCIP accepts it
        if solver == "highs":
            from ortools.math_opt.solvers import highs_pb2

            # 3x HiGHS's default primal-heuristic effort: on large multi-site models the bound reaches
            # the gap long before a good enough incumbent exists (benchmarks/RESULTS.md).
            p.highs = highs_pb2.HighsOptionsProto(double_options={"mip_heuristic_effort": HIGHS_HEURISTIC_EFFORT})
        return p

    def _interpret(self, model: Model, mathopt, res, t0: float) -> SolveResult:
        TR = mathopt.TerminationReason
        term = res.termination
        reason = term.reason
        detail = term.detail or ""
        limit = f"{term.limit.name.lower().replace('_', ' ')} limit" if term.limit is not None else "limit"
        bound = _finite(term.objective_bounds.dual_bound)

        has_sol = res.has_primal_feasible_solution()
        if has_sol and reason in (TR.OPTIMAL, TR.FEASIBLE, TR.IMPRECISE):
            raw = [0.0] * model.num_vars
            for var, x in res.variable_values().items():
                raw[var.id] = x
            values = _clean_values(model, raw)
            obj = model.objective_value(values)
            g = _rel_gap(obj, bound)
            status, msg = _solution_status(obj, bound, g, proved_optimal=reason == TR.OPTIMAL)
            if reason == TR.FEASIBLE:
                msg = f"stopped by the {limit} with a solution"
            elif reason == TR.IMPRECISE:
                msg = f"solver reports imprecise result: {detail}"
            return self._result(status, t0, msg, objective=obj, best_bound=bound, gap=g, values=values)
        if reason == TR.INFEASIBLE:
            return self._result(Status.INFEASIBLE, t0, detail)
        if reason == TR.UNBOUNDED:
            return self._result(Status.UNBOUNDED, t0, detail)
        if reason == TR.INFEASIBLE_OR_UNBOUNDED:
            if term.problem_status.primal_status == mathopt.FeasibilityStatus.FEASIBLE:
                return self._result(Status.UNBOUNDED, t0, detail)
            return self._result(Status.INFEASIBLE, t0,
                                f"infeasible or unbounded (the solver could not tell which) {detail}".strip())
        if reason in (TR.NO_SOLUTION_FOUND, TR.FEASIBLE):
            return self._result(Status.TIME_LIMIT, t0, f"no solution found before the {limit}",
                                best_bound=bound)
        return self._result(Status.ERROR, t0, f"{reason.name.lower()}: {detail}".strip())


@contextlib.contextmanager
def _quiet_stdout(active: bool):
    """HiGHS (through MathOpt 9.15) prints a stray line to the process's stdout from C++, which
    would corrupt `dcopt solve --json`; send file descriptor 1 to stderr while it runs."""
    if not active:
        yield
        return
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (embedded interpreters): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _highs_would_crash() -> bool:
    """True when pulp+highspy were imported before MathOpt's native solver module: measured
    here (ortools 9.15, highspy 1.16), the first HiGHS solve then kills the interpreter (exit
    139) while SCIP works. sys.modules keeps insertion order, i.e. import order."""
    if "pulp" not in sys.modules or "highspy" not in sys.modules:
        return False
    names = list(sys.modules)
    core = "ortools.math_opt.core.python.solver"
    return core not in sys.modules or names.index("pulp") < names.index(core)


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _to_model_proto(model: Model):
    """Fill MathOpt's ModelProto in bulk: far cheaper than one Python call per term, and the
    names go through verbatim (MathOpt accepts any unique string)."""
    from ortools.math_opt import model_pb2

    p = model_pb2.ModelProto(name=model.name)
    vs = p.variables
    n = model.num_vars
    vs.ids.extend(range(n))
    vs.lower_bounds.extend(v.lb for v in model.vars)
    vs.upper_bounds.extend(v.ub for v in model.vars)
    vs.integers.extend(v.integer for v in model.vars)
    vs.names.extend(v.name for v in model.vars)

    obj = model.objective
    p.objective.maximize = model.sense == "max"
    p.objective.offset = obj.constant
    ids = sorted(obj.terms)
    p.objective.linear_coefficients.ids.extend(ids)
    p.objective.linear_coefficients.values.extend(obj.terms[i] for i in ids)

    lc = p.linear_constraints
    lc.ids.extend(range(model.num_constraints))
    inf = math.inf
    lc.lower_bounds.extend(c.rhs if c.sense in (GE, EQ) else -inf for c in model.constraints)
    lc.upper_bounds.extend(c.rhs if c.sense in (LE, EQ) else inf for c in model.constraints)
    lc.names.extend(c.name or "" for c in model.constraints)

    rows, cols, coefs = [], [], []
    for k, c in enumerate(model.constraints):
        idx = sorted(c.coefs)
        rows.extend([k] * len(idx))
        cols.extend(idx)
        coefs.extend(c.coefs[i] for i in idx)
    m = p.linear_constraint_matrix
    m.row_ids.extend(rows)
    m.column_ids.extend(cols)
    m.coefficients.extend(coefs)
    return p


# -- PuLP / CBC -------------------------------------------------------------------------------

def _import_pulp():
    """Import pulp, loading ortools first when it exists: with highspy installed, importing
    pulp before ortools segfaults the interpreter (docs/solvers.md; exit 139)."""
    try:
        from ortools.math_opt.python import mathopt  # noqa: F401
    except ImportError:
        pass
    import pulp

    return pulp


class PulpBackend(_Results):
    """PuLP's bundled CBC binary, single-threaded with fixed seeds so reruns agree.

    Variables/constraints are renamed x<i>/c<k> inside PuLP (it rejects some characters and
    renames for CBC anyway); results map back by index.
    """

    name = "pulp"
    solver = "cbc"

    def __repr__(self) -> str:
        return "PulpBackend()"

    def is_available(self) -> bool:
        try:
            pulp = _import_pulp()
            return self._command(pulp, None, None, None) is not None
        except Exception:
            return False

    def _command(self, pulp, time_limit_s, gap, log_path):
        kw = dict(msg=False, timeLimit=time_limit_s, gapRel=DEFAULT_GAP if gap is None else gap,
                  gapAbs=ABS_GAP, threads=1, logPath=log_path,
                  options=[f"randomCbcSeed {SEED}", "randomSeed 1234567"])
        with warnings.catch_warnings():
            # PuLP 3.x deprecates PULP_CBC_CMD in favour of COIN_CMD + a separately installed
            # CBC; the bundled binary is exactly what makes PuLP a zero-install fallback.
            warnings.simplefilter("ignore", DeprecationWarning)
            if hasattr(pulp, "PULP_CBC_CMD"):
                cmd = pulp.PULP_CBC_CMD(**kw)
                if cmd.available():
                    return cmd
            cmd = pulp.COIN_CMD(**kw)
        return cmd if cmd.available() else None

    def solve(self, model: Model, time_limit_s: float | None = None, gap: float | None = None) -> SolveResult:
        _check_limits(time_limit_s, gap)
        t0 = time.perf_counter()
        try:
            pulp = _import_pulp()
        except ImportError as exc:
            return self._result(Status.ERROR, t0, f"pulp is not installed: {exc}")
        fd, log_path = tempfile.mkstemp(prefix="dcopt-cbc-", suffix=".log")
        os.close(fd)
        try:
            cmd = self._command(pulp, time_limit_s, gap, log_path)
            if cmd is None:
                return self._result(Status.ERROR, t0, "no CBC binary available to PuLP")
            prob, pvars = _to_pulp(pulp, model)
            try:
                _run_cbc(pulp, cmd, prob, time_limit_s, gap, log_path)
            except Exception as exc:
                return self._result(Status.ERROR, t0, f"{type(exc).__name__}: {exc}{_log_tail(log_path)}")
            return self._interpret(pulp, model, prob, pvars, time_limit_s, _read(log_path), t0)
        finally:
            try:
                os.remove(log_path)
            except OSError:
                pass

    def _interpret(self, pulp, model, prob, pvars, time_limit_s, log: str, t0: float) -> SolveResult:
        # At a time limit CBC's "Stopped on time - objective value X" makes prob.status read
        # Optimal; sol_status (IntegerFeasible vs Optimal) is what tells them apart.
        status, sol = prob.status, prob.sol_status
        if sol in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) and status == pulp.LpStatusOptimal:
            raw = [pv.varValue if pv.varValue is not None else _neutral(v) for v, pv in zip(model.vars, pvars)]
            values = _clean_values(model, raw)
            obj = model.objective_value(values)
            bound = _cbc_bound(log, model.objective.constant)
            if sol == pulp.LpSolutionOptimal and (bound is None or abs(bound - obj) <= 5e-4):
                bound = obj  # CBC prints the bound to 3 decimals; don't invent a gap from rounding
            g = _rel_gap(obj, bound)
            st, msg = _solution_status(obj, bound, g, proved_optimal=sol == pulp.LpSolutionOptimal)
            if sol == pulp.LpSolutionIntegerFeasible:
                msg = "stopped by the time limit with a solution"
            return self._result(st, t0, msg, objective=obj, best_bound=bound, gap=g, values=values)
        if status == pulp.LpStatusInfeasible or sol == pulp.LpSolutionInfeasible:
            return self._result(Status.INFEASIBLE, t0, _cbc_line(log, "Result") or "")
        if status == pulp.LpStatusUnbounded or sol == pulp.LpSolutionUnbounded:
            return self._result(Status.UNBOUNDED, t0, _cbc_line(log, "Result") or "")
        if status == pulp.LpStatusNotSolved and time_limit_s is not None:
            return self._result(Status.TIME_LIMIT, t0, "no solution found before the time limit")
        return self._result(Status.ERROR, t0,
                            f"CBC status {pulp.LpStatus.get(status, status)}, solution status "
                            f"{pulp.LpSolution.get(sol, sol)}{_log_tail(log_path=None, text=log)}")


def _run_cbc(pulp, cmd, prob, time_limit_s, gap, log_path: str) -> None:
    """What `prob.solve(cmd)` does, plus `-saveSolution`: CBC's text solution (all PuLP reads)
    carries 8 significant digits, its binary one every bit. Values are taken from the binary file
    when it matches the model, statuses from the text one."""
    import struct
    import subprocess

    tmp = tempfile.mkdtemp(prefix="dcopt-cbc-")
    mps, sol, binary = (os.path.join(tmp, n) for n in ("model.mps", "model.sol", "model.bin"))
    try:
        vs, vnames, cnames, _ = prob.writeMPS(mps, rename=1)
        args = [cmd.path, mps] + (["-max"] if prob.sense == pulp.LpMaximize else [])
        if time_limit_s is not None:
            args += ["-sec", f"{time_limit_s}"]
        for opt in cmd.options + cmd.getOptions():
            args += ["-" + opt.split()[0], *opt.split()[1:]]
        args += ["-solve", "-saveSolution", binary, "-printingOptions", "all", "-solution", sol]
        with open(log_path, "w") as log:
            subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
                           timeout=None if time_limit_s is None else 2 * time_limit_s + 30)
        if not os.path.exists(sol):
            raise RuntimeError(f"CBC wrote no solution ({cmd.path})")
        status, values, dj, pi, slacks, sol_status = cmd.readsol_MPS(sol, prob, vs, vnames, cnames)
        prob.assignVarsVals(values)
        prob.assignStatus(status, sol_status)
        try:
            with open(binary, "rb") as f:
                raw = f.read()
            rows, cols = struct.unpack("ii", raw[:8])
            if cols == len(vs) and len(raw) == 16 + 16 * rows + 16 * cols:
                full = struct.unpack(f"{cols}d", raw[16 + 16 * rows: 16 + 16 * rows + 8 * cols])
                if all(math.isfinite(x) for x in full):
                    for v, x in zip(vs, full):
                        if v.varValue is not None:
                            v.varValue = x
        except (OSError, struct.error):
            pass  # keep the 8-digit values
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _neutral(v) -> float:
    """A value for a variable CBC did not report (it appears nowhere): 0 clipped to bounds."""
    x = min(max(0.0, v.lb), v.ub)
    return math.ceil(x) if v.integer else x


def _to_pulp(pulp, model: Model):
    sense = pulp.LpMaximize if model.sense == "max" else pulp.LpMinimize
    prob = pulp.LpProblem(re.sub(r"[^A-Za-z0-9_]", "_", model.name) or "model", sense)
    # PuLP 3.x deprecates LpVariable(...) in favour of prob.add_variable (PuLP 4 API).
    new_var = getattr(prob, "add_variable", None) or pulp.LpVariable
    pvars = [
        new_var(f"x{v.index}",
                lowBound=None if v.lb == -math.inf else v.lb,
                upBound=None if v.ub == math.inf else v.ub,
                cat=pulp.LpInteger if v.integer else pulp.LpContinuous)
        for v in model.vars
    ]
    obj = model.objective
    used = set(obj.terms)
    for c in model.constraints:
        used.update(c.coefs)
    # PuLP writes no COLUMNS entry for a variable that appears nowhere and CBC then rejects its
    # BOUNDS line; a zero objective coefficient keeps it declared (and its bounds checked).
    unused = [(pv, 0.0) for i, pv in enumerate(pvars) if i not in used]
    prob.setObjective(pulp.LpAffineExpression([(pvars[i], c) for i, c in obj.terms.items()] + unused,
                                              constant=obj.constant))
    psense = {LE: pulp.LpConstraintLE, GE: pulp.LpConstraintGE, EQ: pulp.LpConstraintEQ}
    for k, c in enumerate(model.constraints):
        e = pulp.LpAffineExpression([(pvars[i], a) for i, a in c.coefs.items()])
        prob.addConstraint(pulp.LpConstraint(e, psense[c.sense], f"c{k}", c.rhs))
    return prob, pvars


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _log_tail(log_path: str | None, text: str | None = None, lines: int = 8) -> str:
    text = _read(log_path) if text is None and log_path else (text or "")
    tail = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return ("\nCBC log (tail):\n  " + "\n  ".join(tail)) if tail else ""


def _cbc_line(log: str, key: str) -> str | None:
    m = re.search(rf"^{key}\s*[-:]\s*(.+)$", log, re.M)
    return m.group(1).strip() if m else None


def _cbc_bound(log: str, constant: float) -> float | None:
    """CBC's final bound from its log ("Lower bound:" when minimising, "Upper bound:" when
    maximising; PuLP does not expose it). CBC solves PuLP's MPS, which drops the objective
    constant, so add it back. CBC prints the bound to 3 decimals only."""
    m = re.search(r"^(?:Lower|Upper) bound:\s*(\S+)", log, re.M)
    if not m:
        return None
    try:
        b = float(m.group(1))
    except ValueError:
        return None
    if not math.isfinite(b) or abs(b) >= 1e30:
        return None
    return b + constant


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


# -- choosing and falling back ----------------------------------------------------------------

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


def get_backend(name: str = "ortools") -> Backend:
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}") from None


def solve(model: Model, backend: str | Backend = "ortools", time_limit_s: float | None = None,
          gap: float | None = None, fallback: bool = True) -> SolveResult:
    """Solve with `backend`; if it is missing or fails (ERROR), try the other backend when
    `fallback` is true, saying in `message` that it fell back and why.

    Only ERROR / unavailability falls back: INFEASIBLE or TIME_LIMIT are answers, not failures.
    The fallback gets the remaining time, but never less than 10% of the limit.
    """
    _check_limits(time_limit_s, gap)
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
        result = b.solve(model, limit, gap)
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
