"""OR-Tools MathOpt: SCIP or HiGHS on the model translated to a MathOpt proto."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time

from optimizer.mip.lp import EQ, GE, LE, Model
from optimizer.mip.backends.common import (
    DEFAULT_GAP, ABS_GAP, SEED, HIGHS_HEURISTIC_EFFORT, Status, SolveResult, _check_cutoff, _check_limits, _check_work, _rel_gap, _clean_values, _solution_status, _exc_message, _Results,
)


class OrToolsBackend(_Results):
    """OR-Tools MathOpt with SCIP or HiGHS ("auto": by size). Never CP-SAT: it is integer-only and
    returned a wrong optimum on a mixed model (docs/solvers.md).

    "auto" (the default) picks the solver by the model's integer variables from AUTO_SOLVER: SCIP
    for small models (one thread, tells INFEASIBLE from UNBOUNDED, prints nothing to stdout, immune
    to the pulp+highspy crash), HiGHS for dcopt's larger, multi-site MIPs.
    """

    name = "ortools"
    SOLVERS = ("auto", "scip", "highs")
    # The size classes of "auto": (fewer integer variables than this, solver), first match wins.
    # Set by `benchmarks/solvers_choice.py --dcopt-ladder` (figures in benchmarks/RESULTS.md,
    # "Solver per size class"): SCIP was the quickest on the smallest models, HiGHS on every larger
    # one. CP-SAT is never a candidate: every dcopt MIP has continuous variables (named totals,
    # served requests/s, fabric endpoints).
    AUTO_SOLVER = ((100, "scip"), (math.inf, "highs"))

    @classmethod
    def pick(cls, model: Model) -> str:
        """The solver "auto" runs on this model (AUTO_SOLVER)."""
        return next(name for below, name in cls.AUTO_SOLVER if model.num_integer_vars < below)

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

    def solve(self, model: Model, time_limit_s: float | None = None, gap: float | None = None,
              start: list[float] | None = None, work_limit: int | None = None,
              cutoff: float | None = None) -> SolveResult:
        """`start`: a feasible assignment by variable index, passed as a solution hint (SCIP and HiGHS
        both take it on OR-Tools 9.15); `work_limit`: branch-and-bound nodes after the root (MathOpt's node_limit);
        `cutoff`: an objective no better than a known design's (HiGHS's objective_bound; SCIP goes without)."""
        _check_limits(time_limit_s, gap)
        _check_work(work_limit)
        t0 = time.perf_counter()
        try:
            from ortools.math_opt.python import mathopt
        except ImportError as exc:
            return self._result(Status.ERROR, t0, f"ortools is not installed: {exc}")
        solver, note = self.solver, ""
        if solver == "auto":
            solver = self.pick(model)
        if solver == "highs" and _highs_would_crash():
            solver = "scip"
            note = ("used SCIP instead of HiGHS: pulp (with highspy) was imported before ortools in "
                    "this process, and HiGHS then segfaults; import ortools first to use HiGHS")
        try:
            proto = _to_model_proto(model)
            params = self._params(mathopt, solver, time_limit_s, gap)
            _work_params(params, work_limit)
            _cutoff_params(params, solver, model, cutoff)
            solver_type = mathopt.SolverType.HIGHS if solver == "highs" else mathopt.SolverType.GSCIP
            mm = mathopt.Model.from_model_proto(proto)
            with _quiet_stdout(solver == "highs"):
                res = mathopt.solve(mm, solver_type, params=params, model_params=_start_params(mathopt, mm, start),
                                    msg_cb=_progress_msg_cb(solver))
            result = self._interpret(model, mathopt, res, t0)
            _work_done(mathopt, res, result)
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


def _work_params(params, work_limit: int | None) -> None:
    """The deterministic limit: `work_limit` branch-and-bound nodes after the root (CBC's maxNodes
    counts the same way; SCIP and HiGHS count the root as a node). Single-threaded with a fixed seed,
    the solve stops at the same point on a loaded or an idle machine."""
    if work_limit is not None:
        params.node_limit = work_limit + 1


def _cutoff_params(params, solver: str, model: Model, cutoff: float | None) -> None:
    """Prune every node whose bound cannot beat `cutoff` (HiGHS's objective_bound, which compares
    the objective with its constant, as `cutoff` is given). Only HiGHS takes it: on OR-Tools 9.15
    MathOpt refuses cutoff_limit for HiGHS, and SCIP's answer when the cutoff prunes everything
    (termination limit "cutoff") fails to parse in MathOpt's Python layer. SCIP only gets the
    models of at most 100 integers (`pick`), solved in milliseconds: it goes without."""
    if cutoff is None or solver != "highs":
        return
    _check_cutoff(model, cutoff)
    params.highs.double_options["objective_bound"] = float(cutoff)


def _start_params(mathopt, mm, start: list[float] | None):
    """A MIP start as MathOpt's solution hint (every variable, so the solver need not complete it)."""
    if start is None:
        return None
    hint = mathopt.SolutionHint(variable_values={mm.get_variable(i): float(x) for i, x in enumerate(start)})
    return mathopt.ModelSolveParameters(solution_hints=[hint])


def _work_done(mathopt, res, result: SolveResult) -> None:
    """Nodes explored, and which limit (if any) ended the solve."""
    try:
        result.nodes = int(res.solve_stats.node_count)
    except (AttributeError, TypeError, ValueError):
        result.nodes = None
    lim = res.termination.limit
    if lim == mathopt.Limit.NODE:
        result.stopped_by = "work"
    elif lim == mathopt.Limit.TIME:
        result.stopped_by = "time"
    elif lim is not None:
        result.stopped_by = lim.name.lower()


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


def _progress_msg_cb(solver: str):
    """MathOpt's message callback feeding the solver's log to the progress sink, or None when
    nobody listens (then the solver logs nothing, as before)."""
    from optimizer.mip.backends.progress import HighsLog, ScipLog, reporter

    rep = reporter(HighsLog() if solver == "highs" else ScipLog())
    return None if rep is None else rep.lines


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


