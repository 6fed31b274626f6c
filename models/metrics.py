"""The registry of metrics and objectives: one entry each, read by every layer.

A metric is something a design can be measured by (TCO, capex, facility power, carbon, a job's
days); an objective minimises one. Each entry says its name, unit, how tables and axes label it,
which named total of the MIP holds it and at what scale, and the tie-break that picks among equal
optima. The formulation, the verifier, Pareto fronts, sweeps, reports, plots, explain, the CLI, the
generator and the API all read this table, so a new objective or metric is one entry here (its
MIP total must exist: any `K(name)` total defined by a constraint family, e.g. `capex_network_musd`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str  # how solutions, bounds, CSVs and JSON call it: "tco_usd"
    unit: str  # the user's unit of `name`: "USD"
    label: str  # for tables and axes: "TCO"
    display_unit: str  # what tables and axes show: "$M"
    display_scale: float  # value x display_scale = shown value
    mip_total: str | None  # the MIP's named total holding it ("tco_musd"); None: per job (days)
    mip_scale: float = 1.0  # MIP units per user unit ($M per USD = 1e-6)
    objective: str | None = None  # the objective minimising it: "min_tco"
    tie_break: str | None = None  # objective minimised second, at this one's optimum
    axis: str | None = None  # short name for Pareto axes: "tco"
    aliases: tuple[str, ...] = ()
    per_job: bool = False  # "days:<job>"

    def show(self, value: float) -> float:
        return value * self.display_scale

    @property
    def title(self) -> str:
        return f"{self.label} ({self.display_unit})"


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric (and its objective) to the registry; the one step a new objective needs."""
    METRICS[metric.name] = metric
    return metric


for _m in (
    Metric("tco_usd", "USD", "TCO", "$M", 1e-6, "tco_musd", 1e-6, objective="min_tco", axis="tco", aliases=("tco",)),
    Metric("capex_usd", "USD", "capex", "$M", 1e-6, "capex_musd", 1e-6, objective="min_capex",
           axis="capex", aliases=("capex",)),
    Metric("facility_power_kw", "kW", "facility power", "MW", 1e-3, "facility_power_kw", 1.0, objective="min_power",
           tie_break="min_tco", axis="power", aliases=("power", "facility_power")),
    Metric("carbon_t_per_year", "tCO2/yr", "carbon", "tCO2/yr", 1.0, "carbon_t_per_year", 1.0, objective="min_carbon",
           tie_break="min_tco", axis="carbon", aliases=("carbon",)),
    Metric("days", "days", "time to train", "days", 1.0, None, 1.0, objective="min_time", tie_break="min_tco",
           axis="time_to_train", aliases=("time_to_train", "time"), per_job=True),
):
    register(_m)
del _m


def objectives() -> list[str]:
    """Every objective name, in registry order."""
    return [m.objective for m in METRICS.values() if m.objective]


def by_objective(objective: str) -> Metric:
    for m in METRICS.values():
        if m.objective == objective:
            return m
    raise ValueError(f"unknown objective '{objective}' (expected one of {', '.join(objectives())})")


def parse(spec: str) -> tuple[Metric, str | None]:
    """'tco_usd' | 'tco' | 'days:JOB' | 'time_to_train:JOB' -> (metric, job or None)."""
    head, _, job = spec.strip().partition(":")
    for m in METRICS.values():
        if head == m.name or head in m.aliases or head == m.axis:
            if m.per_job or not job:
                return m, (job or None)
    names = [m.name + (":<job>" if m.per_job else "") for m in METRICS.values()]
    raise ValueError(f"unknown metric '{spec}' (expected one of {', '.join(names)})")
