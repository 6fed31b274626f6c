"""Registry metrics (models.metrics) on a MIP and on a solved design, in the user's units."""

from __future__ import annotations

from models.metrics import parse

from optimizer.mip.build import metric_expr
from optimizer.mip.data import MipData
from optimizer.mip.design import Solution
from optimizer.mip.vars import Vars


def bound_expr(data: MipData, v: Vars, spec: str):
    """A metric ('tco_usd', 'days:JOB', ...) as a MIP expression, and the factor from user units."""
    metric, job = parse(spec)
    if metric.per_job and not job:
        raise ValueError(f"metric '{spec}' needs a job: {metric.name}:JOB")
    return metric_expr(data, v, metric, job), metric.mip_scale


def metric_value(sol: Solution, spec: str) -> float:
    """A metric read from a solved design, in the user's units."""
    metric, job = parse(spec)
    if metric.per_job:
        if job is None:
            return sum(j.days for j in sol.jobs)
        return next(j.days for j in sol.jobs if j.name == job)
    return sol.totals[metric.mip_total] / metric.mip_scale
