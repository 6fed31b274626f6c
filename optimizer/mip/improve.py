"""Improve the constructive start with the LP relaxation, then hand the solver a cutoff.

The constructive start (optimizer.mip.start) is 2.6-9.6 % above the optimum on the 20- and 50-workload
models, too loose to prune anything. The LP relaxation knows better where the workloads go: on
those models it puts weight on fewer than a tenth of the placements (a job's candidate at a site,
its rental, a service layout's replicas at a site). The restricted model keeps only the placements
the relaxation or the start uses and zeroes the rest, so it is the full model with a smaller search
(every row and bound unchanged); its design is within 0.01-0.3 % of the optimum, found in well
under a second. That design's objective, a hair above, becomes the full solve's cutoff: HiGHS then fixes
integer domains by reduced cost before its root cut loop fills up, which is where its seconds went
(benchmarks/RESULTS.md).

The restricted design is a design of the full model (checked against every row before it is kept),
never a bound: the bound reported is the full solve's. A full solve that finds nothing below the
cutoff has proved the restricted design optimal to the cutoff's slack.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from optimizer.mip.backends import Status
from optimizer.mip.backends import solve as run_backend
from optimizer.mip.lp import Model
from optimizer.mip.start import Start, fixed_copy
from optimizer.mip.vars import Vars

# A placement the relaxation gives less weight than this is zeroed in the restricted model.
LP_ZERO = 1e-6
# The restricted model stops at this relative gap: its design only has to be close, not proven
# (0.1 % stopped 0.1-0.3 s sooner than 0.01 % on the 20- and 50-workload seeds 1 and 2, with designs
# 0.02-0.06 % worse and the full solves after them no slower).
RESTRICTED_GAP = 1e-3
# The cutoff sits this far (relative) above the design, so the design itself stays below it. Measured
# on the ladder's 20- and 50-workload seeds 1, 2 and 4 (benchmarks/RESULTS.md): 0.1 % above took
# 9.8 s in all against 11.7 s at 0.01 % and 10.9 s at 0.0001 % (19.2 s with no cutoff).
CUTOFF_SLACK = 1e-3


@dataclass
class Improvement:
    start: Start  # the better of the constructive and the restricted design
    lp_bound: float | None  # the LP relaxation's optimum: a valid bound on the full model (MIP units)
    placements_kept: int
    placements: int
    seconds: float
    improved: bool  # the restricted design beat the constructive one


def placements_to_zero(v: Vars, lp_values: list[float], start_values: list[float]) -> dict[int, float]:
    """Every placement variable that neither the LP relaxation nor the start uses, fixed at zero."""
    fixed: dict[int, float] = {}
    for x in [*v.choose.values(), *v.rent.values(), *v.units.values()]:
        if lp_values[x.index] < LP_ZERO and start_values[x.index] < 0.5 and x.lb <= 0.0:
            fixed[x.index] = 0.0
    return fixed


def improve_start(m: Model, v: Vars, start: Start, backend: str, time_limit_s: float | None,
                  work_limit: int | None = None, hint: bool = False) -> Improvement:
    """The LP-restricted model's design, or `start` itself when that is not better. `hint`: give the
    restricted solve `start` as its MIP start (off by default, like the full solve's: HiGHS took
    1.6 s instead of 0.2 s on 20 x 8 x 3 seed 2 with it, staying in its root cut loop)."""
    t0 = time.perf_counter()
    placements = len(v.choose) + len(v.rent) + len(v.units)
    lp = run_backend(m.relaxation(), backend=backend, time_limit_s=time_limit_s)
    if lp.status != Status.OPTIMAL or lp.values is None:
        return Improvement(start, None, placements, placements, time.perf_counter() - t0, False)
    fixed = placements_to_zero(v, lp.values, start.values)
    left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - t0)
    best = start
    if left is None or left > 0.05:
        res = run_backend(fixed_copy(m, fixed), backend=backend, time_limit_s=left, gap=RESTRICTED_GAP,
                          start=start.values if hint else None, work_limit=work_limit)
        obj = None if res.values is None else m.objective_value(res.values)
        if obj is not None and obj < start.objective - 1e-9 * max(1.0, abs(start.objective)) \
                and not m.violations(res.values):
            best = Start(values=res.values, objective=obj, seconds=start.seconds + time.perf_counter() - t0,
                         attempt=start.attempt)
    return Improvement(best, lp.objective, placements - len(fixed), placements, time.perf_counter() - t0,
                       best is not start)


def cutoff_for(start: Start) -> float:
    """The full solve's cutoff: the design's objective and a hair, so the design itself stays below it."""
    return start.objective + CUTOFF_SLACK * max(1.0, abs(start.objective))
