"""Instance -> candidates -> pruning -> MIP -> backend -> design -> independent verification."""

from __future__ import annotations

import dataclasses
import time

from models.candidates import JobTable, job_tables, service_table
from models.metrics import by_objective, parse
from models.schema import Instance

from optimizer.mip.backends import SolveResult, Status
from optimizer.mip.backends import solve as run_backend
from optimizer.mip.backends.common import _rel_gap
from optimizer.mip.backends.progress import ProgressEvent, progress_sink
from optimizer.mip.build import Vars, build_model, objective_expr
from optimizer.mip.data import MipData, build_data
from optimizer.mip.design import Solution
from optimizer.mip.lp import K
from optimizer.mip.prune import Pruned, PrunedService, prune, prune_service
from optimizer.solving.extract import design_from, jobs_from, services_from
from optimizer.solving.measure import bound_expr
from optimizer.solving.unfit import explain_job, explain_service
from optimizer.solving.verify import verify_solution

STATUS_TEXT = {
    Status.OPTIMAL: "optimal",
    Status.FEASIBLE: "feasible",
    Status.INFEASIBLE: "infeasible",
    Status.UNBOUNDED: "error",
    Status.TIME_LIMIT: "time_limit",
    Status.ERROR: "error",
}


def objective_scale(objective: str) -> float:
    """MIP objective unit -> reported unit (USD for cost objectives)."""
    return 1.0 / by_objective(objective).mip_scale


def prepare(instance: Instance, frontier: bool = False) -> tuple[list[JobTable], list[Pruned]]:
    """Candidate tables and their pruning; `frontier` keeps every job's whole nodes/time front
    (needed when time is bounded or traded off, e.g. Pareto fronts), not only its fewest-node point."""
    tables = job_tables(instance.training_jobs, instance.catalog)
    return tables, [prune(t, "min_time" if frontier else instance.objective) for t in tables]


def prepare_services(instance: Instance) -> list[PrunedService]:
    return [prune_service(service_table(s, instance.catalog)) for s in instance.services]


def solve_mip(data: MipData, objective: str, backend: str, time_limit_s, gap, export_path=None,
              bounds: dict[str, float] | None = None, progress=None) -> tuple[SolveResult, Vars, object]:
    """Build, bound, solve; then the objective's tie-break (models.metrics) at its optimum.
    `progress(incumbent, bound)` hears the first solve only (MIP units): the tie-break's numbers
    are of another objective."""
    # Symmetry breaking only when no bound singles out a job (every objective is a total).
    m, v = build_model(data, symmetry=not any(parse(k)[0].per_job for k in (bounds or {})))
    for metric, bound in sorted((bounds or {}).items()):
        expr, factor = bound_expr(data, v, metric)
        m.add_constraint(expr <= bound * factor, K("bound", metric))
    m.minimize(objective_expr(data, v, objective))
    if export_path is not None:
        m.export(str(export_path))
    with progress_sink(progress):
        res = run_backend(m, backend=backend, time_limit_s=time_limit_s, gap=gap)
    second = by_objective(objective).tie_break
    if second and res.values is not None and res.objective is not None:
        # Fix the primary objective at its optimum (with a hair of tolerance), then minimise the tie-break.
        m.add_constraint(objective_expr(data, v, objective) <= res.objective + 1e-6 * max(1.0, abs(res.objective)),
                         K("primary_optimum"))
        m.minimize(objective_expr(data, v, second))
        res2 = run_backend(m, backend=backend, time_limit_s=time_limit_s, gap=gap)
        if res2.values is not None:
            res = dataclasses.replace(res2, objective=res.objective, best_bound=res.best_bound, gap=res.gap,
                                      runtime_s=res.runtime_s + res2.runtime_s)
    return res, v, m


def _progress_events(on_progress, objective: str, start: float):
    """A backend progress sink (MIP units) that calls `on_progress` with ProgressEvents in user units."""
    if on_progress is None:
        return None
    scale = objective_scale(objective)

    def sink(incumbent, bound):
        inc = None if incumbent is None else incumbent * scale
        low = None if bound is None else bound * scale
        on_progress(ProgressEvent(time.perf_counter() - start, inc, low, _rel_gap(inc, low)))

    return sink


def solve_instance(
    instance: Instance, backend: str = "ortools", time_limit_s: float | None = None, gap: float | None = None,
    verify: bool = True, export_path=None, objective: str | None = None, bounds: dict[str, float] | None = None,
    frontier: bool = False, study_procurement: bool = True, on_progress=None,
) -> Solution:
    """Solve one instance; the returned design has passed the independent verifier (when verify).

    `objective` overrides the instance's; `bounds` caps metrics (see METRICS) in user units, e.g.
    {"days:gpt3": 30} or {"tco_usd": 2e8} (the epsilon constraints of a Pareto front); `frontier`
    keeps every job's nodes/time front in the MIP (implied when a job's days are bounded).
    An infeasible instance gets `diagnosis` lines (optimizer.studies.explain: what must grow, by how much,
    each fix confirmed by a verified design) unless `diagnose_infeasible` is off.

    `on_progress(ProgressEvent)` hears the main MIP solve as it runs (incumbent, bound, gap in the
    objective's user units, as the solver logs them) and then once more with `final=True` and the
    solve's own answer; the re-solves of tie-breaks, procurement and diagnosis stay silent."""
    start = time.perf_counter()
    if objective is not None and objective != instance.objective:
        if by_objective(objective).per_job and (len(instance.training_jobs) != 1 or instance.services):
            raise ValueError(f"objective {objective} needs exactly one training job and no services "
                             "(bound other jobs' days with `bounds` instead)")
        instance = instance.model_copy(update={"objective": objective})
    frontier = (frontier or by_objective(instance.objective).per_job
                or any(parse(k)[0].per_job for k in (bounds or {})))
    sol = Solution(instance=instance.name, objective=instance.objective, status="infeasible", backend=backend)
    _, pruned = prepare(instance, frontier=frontier)
    pruned_services = prepare_services(instance)
    empty = [explain_job(pr) for pr in pruned if pr.survived == 0]
    empty += [explain_service(ps) for ps in pruned_services if ps.survived == 0]
    if empty:
        sol.diagnosis = empty
        sol.runtime_s = time.perf_counter() - start
        return sol
    data = build_data(instance, pruned, pruned_services)
    res, v, m = solve_mip(data, instance.objective, backend, time_limit_s, gap, export_path, bounds,
                          progress=_progress_events(on_progress, instance.objective, start))
    sol.status = STATUS_TEXT[res.status]
    sol.backend, sol.solver, sol.message = res.backend, res.solver, res.message
    sol.mip_size = {"variables": m.num_vars, "integer_variables": m.num_integer_vars, "constraints": m.num_constraints}
    if res.values is not None and res.status in (Status.OPTIMAL, Status.FEASIBLE):
        scale = objective_scale(instance.objective)
        sol.objective_value = res.objective * scale
        sol.best_bound = None if res.best_bound is None else res.best_bound * scale
        sol.gap = res.gap
    if on_progress is not None:
        on_progress(ProgressEvent(time.perf_counter() - start, sol.objective_value, sol.best_bound, sol.gap, final=True,
                                  status=sol.status))
    if res.values is not None and res.status in (Status.OPTIMAL, Status.FEASIBLE):
        sol.design = design_from(data, v, res.values)
        sol.jobs = jobs_from(data, pruned, v, res.values)
        sol.services = services_from(instance, data, pruned_services, v, res.values, sol.design, sol.jobs)
        sol.totals = {str(k): float(res.values[x.index]) for k, x in v.totals.items() if not k.coords}
        if verify:
            verify_solution(instance, sol)
            sol.verified = True
        if study_procurement and sol.verified and any(instance.procurement_of(w) == "either" for w in instance.workloads):
            from optimizer.solving.procurement import break_even

            sol.procurement = break_even(instance, sol, solve_instance, backend=backend, time_limit_s=time_limit_s,
                                         gap=gap, study_procurement=False)
    sol.runtime_s = time.perf_counter() - start
    return sol
