"""Instance -> candidates -> pruning -> MIP -> backend -> design -> independent verification."""

from __future__ import annotations

import dataclasses
import time

from models.candidates import JobTable, iter_job_tables, service_table
from models.metrics import by_objective, parse
from models.schema import Instance

from optimizer.mip.backends import SolveResult, Status
from optimizer.mip.backends.common import _check_work, _rel_gap
from optimizer.mip.backends.progress import ProgressEvent, progress_sink
from optimizer.mip.backends import solve as run_backend
from optimizer.mip.build import Vars, build_model, objective_expr
from optimizer.mip.data import MipData, build_data, rented_candidates
from optimizer.mip.design import Solution
from optimizer.mip.lp import K
from optimizer.mip.decompose import solve_decomposed
from optimizer.mip.improve import cutoff_for, improve_start
from optimizer.mip.start import heuristic_start
from optimizer.mip.prune import Pruned, PrunedService, compact, prune, prune_owned_jobs, prune_service
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
    objective = "min_time" if frontier else instance.objective
    # Pruned one at a time and kept as the surviving rows only: peak memory is one full table, not all.
    def kept(t: JobTable) -> Pruned:
        rent = rented_candidates(t, instance.catalog) if instance.procurement_of(t.job) != "own" else []
        return compact(prune(t, objective), also=[c.index for c in rent])

    jobs = instance.training_jobs
    # Owned jobs under a total objective keep one fewest-node row per pair: found without evaluating
    # every layout (prune_owned_jobs). Others, and jobs with no survivor (explained from the full table), in full.
    owned = [] if by_objective(objective).per_job else [i for i, j in enumerate(jobs) if instance.procurement_of(j) == "own"]
    by_position = prune_owned_jobs(jobs, owned, instance.catalog) if owned else {}
    rest = [i for i in range(len(jobs)) if i not in by_position]
    by_position.update({rest[i]: kept(t) for i, t in iter_job_tables([jobs[i] for i in rest], instance.catalog)})
    pruned = [by_position[i] for i in range(len(jobs))]
    return [p.table for p in pruned], pruned


def prepare_services(instance: Instance) -> list[PrunedService]:
    return [prune_service(service_table(s, instance.catalog)) for s in instance.services]


def solve_mip(data: MipData, objective: str, backend: str, time_limit_s, gap, export_path=None,
              bounds: dict[str, float] | None = None, start: bool = True, work_limit: int | None = None,
              info: dict | None = None, decompose: bool = False, hint: bool | None = None, progress=None,
              on_start=None, improve: bool | None = None) -> tuple[SolveResult, Vars, object]:
    """Build, bound, solve; then the objective's tie-break (models.metrics) at its optimum.

    `start`: build the constructive design (optimizer.mip.start) first; if the solver then stops with
    no incumbent (or a worse one), that design is the answer, with the solver's bound and the true
    gap. `hint`: also hand it to the solver as a MIP start (None: where measured to help, HINT_BACKENDS).
    `work_limit`: branch-and-bound nodes per solve.
    `decompose` fixes the sites from the start and solves the restricted model before the full one
    (optimizer.mip.decompose; the bound stays the full model's).
    `improve` re-solves the start's model restricted to the placements the LP relaxation uses
    (optimizer.mip.improve) and gives the solver that design's objective as a cutoff (None: where
    measured to help: CUTOFF_BACKENDS, up to IMPROVE_MAX_INTEGERS; elsewhere no cutoff is given).
    `info` (a dict) receives where the design came from, the work done and the phase seconds.
    `progress(incumbent, bound)` hears the first solve only (MIP units): the tie-break's numbers
    are of another objective. `on_start(v, values, objective)` hears the constructive start's
    design before the solve begins (a batch worker reports it, so a kill still leaves a design)."""
    _check_work(work_limit)
    info = {} if info is None else info
    t0 = time.perf_counter()
    # Symmetry breaking only when no bound singles out a job (every objective is a total).
    m, v = build_model(data, symmetry=not any(parse(k)[0].per_job for k in (bounds or {})))
    for metric, bound in sorted((bounds or {}).items()):
        expr, factor = bound_expr(data, v, metric)
        m.add_constraint(expr <= bound * factor, K("bound", metric))
    m.minimize(objective_expr(data, v, objective))
    if export_path is not None:
        m.export(str(export_path))
    t1 = time.perf_counter()
    heur = (heuristic_start(m, data, v, objective, time_limit_s=_start_budget(time_limit_s), backend=backend)
            if start else None)
    t2 = time.perf_counter()
    info["phases_s"] = {"build": t1 - t0, "start": t2 - t1}
    if heur is not None:
        info["start_objective"] = heur.objective
        info["first_design_s"] = t2 - t0
        if on_start is not None:
            on_start(v, heur.values, heur.objective)
    cutoff = None
    if improve is None:
        improve = backend in CUTOFF_BACKENDS and m.num_integer_vars <= IMPROVE_MAX_INTEGERS
    if heur is not None and improve and not decompose:
        better = improve_start(m, v, heur, backend, _improve_budget(time_limit_s), work_limit)
        heur = better.start
        info["improvement"] = {"objective": heur.objective, "improved": better.improved, "lp_bound": better.lp_bound,
                               "placements_kept": better.placements_kept, "placements": better.placements,
                               "seconds": better.seconds}
        if backend in CUTOFF_BACKENDS:
            cutoff = cutoff_for(heur)
            info["improvement"]["cutoff"] = cutoff
    t3 = time.perf_counter()
    info["phases_s"]["improve"] = t3 - t2
    limit = time_limit_s if time_limit_s is None else max(time_limit_s - (t3 - t1), 0.1 * time_limit_s)
    hint = backend in HINT_BACKENDS if hint is None else hint
    info["hinted"] = bool(hint and heur is not None)
    within = _within_gap(heur, info.get("improvement", {}).get("lp_bound"), gap, backend)
    with progress_sink(progress):
        if within is not None:
            res = within
        elif decompose and heur is not None:
            res = solve_decomposed(m, v, heur, backend, limit, gap, work_limit, info)  # its point is the hint
        else:
            res = run_backend(m, backend=backend, time_limit_s=limit, gap=gap,
                              start=heur.values if hint and heur is not None else None, work_limit=work_limit,
                              cutoff=cutoff)
    res = _prefer_start(m, res, heur, cutoff)
    info["decomposed"] = bool(decompose and heur is not None)
    info["incumbent_source"] = "heuristic" if heur is not None and _from_start(res, heur) else "solver"
    info["work"] = {"nodes": res.nodes, "work_limit": work_limit, "stopped_by": res.stopped_by or None}
    second = by_objective(objective).tie_break
    if second and res.values is not None and res.objective is not None:
        # Fix the primary objective at its optimum (with a hair of tolerance), then minimise the tie-break.
        m.add_constraint(objective_expr(data, v, objective) <= res.objective + 1e-6 * max(1.0, abs(res.objective)),
                         K("primary_optimum"))
        m.minimize(objective_expr(data, v, second))
        res2 = run_backend(m, backend=backend, time_limit_s=time_limit_s, gap=gap,
                           start=res.values if hint else None, work_limit=work_limit)
        if res2.values is not None:
            res = dataclasses.replace(res2, objective=res.objective, best_bound=res.best_bound, gap=res.gap,
                                      runtime_s=res.runtime_s + res2.runtime_s, status=res.status,
                                      message=res.message or res2.message, nodes=res.nodes, stopped_by=res.stopped_by)
    info["phases_s"]["solve"] = time.perf_counter() - t3
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


# Backends that get the constructive start as a MIP start by default: none. Measured (benchmarks/
# RESULTS.md), every solver did worse with it: HiGHS stayed in its root cut loop instead of running
# the heuristics that find its own, better incumbents (50 x 10 x 3 to 0.5%: 0.8 s -> 4.7 s; 200 x 40 x 5
# at 60 s: gap 0.05% -> 1.1%), SCIP searched longer, and CBC never left the start (100 x 20 x 5 at
# 60 s: gap 0.64% -> 4.3%). So the start is the design to fall back on; `hint=True` hands it over.
HINT_BACKENDS: tuple[str, ...] = ()


# Backends whose start is improved by default and whose solve then gets its objective as a cutoff
# (optimizer.mip.improve). Measured on the issue-20 ladder (benchmarks/RESULTS.md): HiGHS, whose
# root spent most of its seconds fixing wide integer domains that a near-optimal cutoff shrinks
# first. CBC is not: with the cutoff it took 97 s instead of 20 s on 20 x 8 x 3 seed 1, and the
# restricted re-solve alone (no cutoff) only adds its seconds.
CUTOFF_BACKENDS: tuple[str, ...] = ("ortools", "ortools-highs")
# Up to this many integer variables (the 20- and 50-workload models: 630-1,578). Above it the
# restricted model is itself a hard MIP: on 100 x 20 x 5 seed 1 (5,040 integers) HiGHS found nothing
# better than the start in the 12 s it was given, and on 200 x 40 x 5 it took 13-20 s.
IMPROVE_MAX_INTEGERS = 2500


def _within_gap(heur, lp_bound: float | None, gap: float | None, backend: str) -> SolveResult | None:
    """The improved start as the answer when it is already within the requested gap of the LP
    relaxation's bound (a valid bound on the whole model): no branch-and-bound can say more."""
    g = None if heur is None else _rel_gap(heur.objective, lp_bound)
    if g is None or g > (1e-6 if gap is None else gap) or lp_bound > heur.objective + 1e-9 * max(1.0, abs(heur.objective)):
        return None
    status = Status.OPTIMAL if g <= 1e-6 else Status.FEASIBLE
    return SolveResult(status, heur.objective, lp_bound, g, heur.values, 0.0, backend, "LP bound",
                       f"the improved start is within the requested gap of the LP relaxation's bound ({100 * g:.2f}%): "
                       "no branch-and-bound was needed")


def _improve_budget(time_limit_s: float | None) -> float:
    """Seconds the LP-restricted re-solve may take: a fifth of the limit, at most 20."""
    return 20.0 if time_limit_s is None else min(20.0, max(0.2 * time_limit_s, 0.5))


def _start_budget(time_limit_s: float | None) -> float:
    """Seconds the constructive start may take (its completion solves): a quarter of the limit, at most 30."""
    return 30.0 if time_limit_s is None else min(30.0, max(0.25 * time_limit_s, 0.5))


def _from_start(res: SolveResult, heur) -> bool:
    """The design is the start's: the solver ended without one, or never improved on the start it was given."""
    if res.values is heur.values:
        return True
    return res.objective is not None and res.objective >= heur.objective - 1e-9 * max(1.0, abs(heur.objective))


def _prefer_start(m, res: SolveResult, heur, cutoff: float | None = None) -> SolveResult:
    """The solver's answer, unless it ended with no incumbent (or a worse one than the start it was
    given): then the start, with the solver's bound, so the gap stays true. Under a `cutoff` (a hair
    above the start) "infeasible" cannot be a true answer: the start stands, with no bound."""
    if heur is None or res.status == Status.UNBOUNDED:
        return res
    tol = 1e-9 * max(1.0, abs(heur.objective))
    if res.values is not None and res.objective is not None and res.objective <= heur.objective + tol:
        return res
    if cutoff is not None and res.status == Status.INFEASIBLE:
        # Nothing below a cutoff that the start itself is below: a tolerance fault, not a proof. The
        # start stands, verified like any design, with no bound claimed.
        res = dataclasses.replace(res, best_bound=None, message=f"no design below the cutoff {cutoff:.6g} (the "
                                  f"start is below it: a solver tolerance fault); {res.message}".rstrip("; "))
    bound = res.best_bound
    if bound is not None and bound > heur.objective + 1e-6 * max(1.0, abs(heur.objective)):
        bound = None  # a bound above a feasible design is no bound on it (a solver fault): report none
    g = _rel_gap(heur.objective, bound)
    why = ("the solver failed" if res.status == Status.ERROR else
           "the solver stopped without a design" if res.values is None else
           f"the solver's best ({res.objective:.6g}) was worse than the start")
    msg = f"the constructive start's design: {why} ({res.message or res.status.value})"
    status = Status.OPTIMAL if g is not None and g <= 1e-6 else Status.FEASIBLE
    return dataclasses.replace(res, status=status, objective=heur.objective, best_bound=bound, gap=g,
                               values=heur.values, message=msg)


def _fill_design(sol: Solution, instance: Instance, data, pruned, pruned_services, v, values, verify: bool) -> None:
    """The design, jobs, services and totals of MIP `values` into `sol`; verified when `verify`."""
    sol.design = design_from(data, v, values)
    sol.jobs = jobs_from(data, pruned, v, values)
    sol.services = services_from(instance, data, pruned_services, v, values, sol.design, sol.jobs)
    sol.totals = {str(k): float(values[x.index]) for k, x in v.totals.items() if not k.coords}
    if verify:
        t_ver = time.perf_counter()
        verify_solution(instance, sol)
        sol.verified = True
        sol.phases_s["verify"] = time.perf_counter() - t_ver


def solve_instance(
    instance: Instance, backend: str = "ortools", time_limit_s: float | None = None, gap: float | None = None,
    verify: bool = True, export_path=None, objective: str | None = None, bounds: dict[str, float] | None = None,
    frontier: bool = False, study_procurement: bool = True, start: bool = True, work_limit: int | None = None,
    decompose: bool = False, hint: bool | None = None, on_progress=None, on_start=None, improve: bool | None = None,
) -> Solution:
    """Solve one instance; the returned design has passed the independent verifier (when verify).

    `objective` overrides the instance's; `bounds` caps metrics (see METRICS) in user units, e.g.
    {"days:gpt3": 30} or {"tco_usd": 2e8} (the epsilon constraints of a Pareto front); `frontier`
    keeps every job's nodes/time front in the MIP (implied when a job's days are bounded); `start` builds
    the constructive design first and gives it to the solver (solve_mip); `work_limit` caps the
    branch-and-bound nodes of each solve (deterministic, unlike the time limit); `improve` re-solves
    the start restricted to what the LP relaxation uses and hands its objective on as a cutoff.
    An infeasible instance gets `diagnosis` lines (optimizer.studies.explain: what must grow, by how much,
    each fix confirmed by a verified design) unless `diagnose_infeasible` is off.

    `on_progress(ProgressEvent)` hears the main MIP solve as it runs (incumbent, bound, gap in the
    objective's user units, as the solver logs them) and then once more with `final=True` and the
    solve's own answer; the re-solves of tie-breaks, procurement and diagnosis stay silent.

    `on_start(Solution)` gets the constructive start's design, verified (when verify), before the
    MIP solve begins: `incumbent_source` "heuristic", status "feasible", the gap unknown."""
    t_start = time.perf_counter()
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
        sol.runtime_s = time.perf_counter() - t_start
        return sol
    data = build_data(instance, pruned, pruned_services)
    t_prep = time.perf_counter() - t_start
    info: dict = {}

    def start_design(v, values, objective) -> None:
        value = objective * objective_scale(instance.objective)
        early = Solution(instance=instance.name, objective=instance.objective, status="feasible", backend=backend,
                         objective_value=value, incumbent_source="heuristic", start_objective_value=value,
                         first_design_s=t_prep + info["first_design_s"], phases_s={"prepare": t_prep})
        try:
            _fill_design(early, instance, data, pruned, pruned_services, v, values, verify)
        except Exception:  # a start the verifier rejects is not reported; the solve goes on
            return
        early.runtime_s = time.perf_counter() - t_start
        on_start(early)

    res, v, m = solve_mip(data, instance.objective, backend, time_limit_s, gap, export_path, bounds, start=start,
                          work_limit=work_limit, info=info, decompose=decompose, hint=hint, improve=improve,
                          progress=_progress_events(on_progress, instance.objective, t_start),
                          on_start=start_design if on_start is not None else None)
    if info.get("decomposed"):
        sol.decomposition = info.get("decomposition", {})
    if "improvement" in info:
        scale = objective_scale(instance.objective)
        sol.improvement = {k: (x * scale if k in ("objective", "lp_bound", "cutoff") and x is not None else x)
                           for k, x in info["improvement"].items()}
    sol.phases_s = {"prepare": t_prep, **info.get("phases_s", {})}
    sol.work = info.get("work", {})
    sol.status = STATUS_TEXT[res.status]
    sol.backend, sol.solver, sol.message = res.backend, res.solver, res.message
    sol.mip_size = {"variables": m.num_vars, "integer_variables": m.num_integer_vars, "constraints": m.num_constraints}
    if res.values is not None and res.status in (Status.OPTIMAL, Status.FEASIBLE):
        scale = objective_scale(instance.objective)
        sol.objective_value = res.objective * scale
        sol.best_bound = None if res.best_bound is None else res.best_bound * scale
        sol.gap = res.gap
        sol.incumbent_source = info.get("incumbent_source", "solver")
        if "start_objective" in info:
            sol.start_objective_value = info["start_objective"] * scale
            sol.first_design_s = t_prep + info["first_design_s"]
        else:
            sol.first_design_s = time.perf_counter() - t_start
    if on_progress is not None:
        on_progress(ProgressEvent(time.perf_counter() - t_start, sol.objective_value, sol.best_bound, sol.gap, final=True,
                                  status=sol.status))
    if res.values is not None and res.status in (Status.OPTIMAL, Status.FEASIBLE):
        _fill_design(sol, instance, data, pruned, pruned_services, v, res.values, verify)
        if study_procurement and sol.verified and any(instance.procurement_of(w) == "either" for w in instance.workloads):
            from optimizer.solving.procurement import break_even

            sol.procurement = break_even(instance, sol, solve_instance, backend=backend, time_limit_s=time_limit_s,
                                         gap=gap, study_procurement=False)
    sol.runtime_s = time.perf_counter() - t_start
    return sol
