"""Decomposition for size: fix where the workloads go, solve what is left, then the whole model again.

On a large instance the monolithic MIP spends its time choosing sites for hundreds of jobs at once.
Here the constructive start (optimizer.mip.start) fixes each training job's site (or rental) and
each service's sites; the restricted model that remains is the per-site sub-MIPs (which candidate
each job runs, replicas, nodes, racks, fabric, storage at its site) joined only by the coupling
rows (budget, carbon cap, regional demand), so it solves far faster. Its design then starts the
full model, which re-solves the coupling (moving jobs between sites) with the time left.

The bound reported is never a sub-MIP's: it is the best of the monolithic LP relaxation's optimum
and the final full-model solve's own bound, both valid for the whole model, so the gap is true.
"""

from __future__ import annotations

import dataclasses
import time

from optimizer.mip.backends import SolveResult, Status
from optimizer.mip.backends import solve as run_backend
from optimizer.mip.backends.common import _rel_gap
from optimizer.mip.lp import Model
from optimizer.mip.start import Start, fixed_copy
from optimizer.mip.vars import Vars

# Not on by default at any size: measured at 200 x 40 x 5 (benchmarks/RESULTS.md), the monolithic
# model started from the same design ends with the smaller gap in the same time.
# Share of the time limit the restricted model may use; the full model gets the rest.
RESTRICTED_SHARE = 0.5


def site_fixings(v: Vars, values: list[float]) -> dict[int, float]:
    """Zero every placement the start did not use: jobs only at their start site (any candidate
    there) or their rental, service replicas only at the sites the start put that service."""
    fixed: dict[int, float] = {}
    job_site = {(j, s) for (j, _, s), x in v.choose.items() if values[x.index] > 0.5}
    rented = {j for (j, _), x in v.rent.items() if values[x.index] > 0.5}
    for (j, _, s), x in v.choose.items():
        if (j, s) not in job_site:
            fixed[x.index] = 0.0
    for (j, _), x in v.rent.items():
        if j not in rented:
            fixed[x.index] = 0.0
    svc_site = {(n, s) for (n, _, s), x in v.units.items() if values[x.index] > 0.5}
    for (n, _, s), x in v.units.items():
        if (n, s) not in svc_site:
            fixed[x.index] = 0.0
    return fixed


def solve_decomposed(m: Model, v: Vars, start: Start, backend: str, time_limit_s: float | None,
                     gap: float | None, work_limit: int | None = None, info: dict | None = None,
                     hint: bool = True) -> SolveResult:
    """Restricted model (sites fixed from `start`), then the full model from its design; the bound is
    the monolithic LP relaxation's or the full solve's, whichever is higher."""
    info = {} if info is None else info
    t0 = time.perf_counter()
    lp = run_backend(m.relaxation(), backend=backend, time_limit_s=time_limit_s)
    lp_bound = lp.objective if lp.status == Status.OPTIMAL else None
    t1 = time.perf_counter()
    left = lambda share: None if time_limit_s is None else max(share * (time_limit_s - (time.perf_counter() - t0)),  # noqa: E731
                                                                 0.05 * time_limit_s)
    sub = run_backend(fixed_copy(m, site_fixings(v, start.values)), backend=backend, time_limit_s=left(RESTRICTED_SHARE),
                      gap=gap, start=start.values if hint else None, work_limit=work_limit)
    best_values, best_obj = start.values, start.objective
    if sub.values is not None and sub.objective is not None and sub.objective < best_obj and not m.violations(sub.values):
        best_values, best_obj = sub.values, sub.objective
    t2 = time.perf_counter()
    full = run_backend(m, backend=backend, time_limit_s=left(1.0), gap=gap, start=best_values if hint else None,
                       work_limit=work_limit)
    t3 = time.perf_counter()
    info["decomposition"] = {"lp_bound": lp_bound, "restricted_objective": sub.objective,
                             "restricted_status": sub.status.value, "lp_s": t1 - t0, "restricted_s": t2 - t1,
                             "full_s": t3 - t2}
    if full.status in (Status.ERROR, Status.UNBOUNDED) and full.values is None:
        return full
    source = "heuristic" if best_values is start.values else "restricted"
    if full.values is not None and full.objective is not None and full.objective <= best_obj:
        best_values, best_obj = full.values, full.objective
        source = "full"
    info["decomposition"]["source"] = source
    bounds = [b for b in (lp_bound, full.best_bound) if b is not None]
    bound = max(bounds) if bounds else None
    if bound is not None and bound > best_obj:
        bound = best_obj  # the LP optimum may sit a hair above a proven optimum (tolerances)
    g = _rel_gap(best_obj, bound)
    proved = full.status == Status.OPTIMAL and full.values is not None and full.objective <= best_obj
    status = Status.OPTIMAL if proved or (g is not None and g <= 1e-6) else Status.FEASIBLE
    return dataclasses.replace(full, status=status, objective=best_obj, best_bound=bound, gap=g, values=best_values,
                               runtime_s=t3 - t0, message=full.message if proved else
                               f"decomposed: sites fixed from the constructive start, then the full model; "
                               f"bound from the LP relaxation or the full solve. {full.message}".strip())
