"""Explain an answer: what must grow when nothing fits, what binds when something does, and what
one more unit of a limit is worth.

Infeasible instances (`find_fixes`): every hard limit — each site's power cap and rack space, the
capex budget, the carbon cap, each job's deadline, each service's TTFT and TPOT SLOs — is relaxed
alone (an elastic copy with that one limit open). The least value any design needs is found by a
solve that minimises that quantity under all the other limits (a bisection over the layouts'
latencies for SLOs), and then the instance with the limit moved to exactly that value is solved
again, so every fix printed comes with a real, verified design and its objective. No open solver
here gives an IIS (docs/solvers.md); this is the elastic alternative, one limit at a time.

Solved instances (`what_binds`, `shadow_prices`): the slack of every limit, and for the
budget-like ones (power caps, capex budget, carbon cap) the LP dual with the integer choices fixed
(local: it holds only while the integer design stays the same) next to the MIP re-solved with one
more unit of the limit (the real, global effect of that one step).
"""

from __future__ import annotations

import math

import numpy as np
from dataclasses import dataclass

from models.edit import with_changes
from models.metrics import by_objective, objectives
from models.schema import ANY_REGION, Instance

from optimizer.mip.backends import Status, lp_duals
from optimizer.mip.backends import solve as run_backend
from optimizer.mip.build import build_model, objective_expr
from optimizer.mip.data import USD_PER_MUSD, build_data
from optimizer.mip.design import Solution
from optimizer.mip.families.jobs import job_days_expr
from optimizer.mip.lp import K, lin_sum
from optimizer.solving.pipeline import prepare, prepare_services, solve_instance, solve_mip
from optimizer.solving.unfit import explain_job, explain_service
from optimizer import fmt

TIGHT_REL = 0.02  # a limit is "tight" when its slack is under 2% of the limit


# ------------------------------------------------------------------------------------------------
# Editing an instance: through models.edit (dotted paths, re-validated); None removes a limit
# ------------------------------------------------------------------------------------------------


def _site_path(inst: Instance, i: int, fld: str) -> str:
    return f"facility.{fld}" if inst.sites is None else f"sites[{i}].{fld}"


def _workload_path(inst: Instance, name: str, fld: str) -> str:
    i = next(k for k, w in enumerate(inst.workloads) if w.name == name)
    return f"workloads[{i}].{fld}"


def _with_site(inst: Instance, i: int, fld: str, value) -> Instance:
    return with_changes(inst, {_site_path(inst, i, fld): value})


def _with_workload(inst: Instance, name: str, fld: str, value) -> Instance:
    return with_changes(inst, {_workload_path(inst, name, fld): value})


def _with_budget(inst: Instance, fld: str, value) -> Instance:
    return with_changes(inst, {f"budget.{fld}": value})


# ------------------------------------------------------------------------------------------------
# Infeasibility: the smallest single relaxation, each with a verified design
# ------------------------------------------------------------------------------------------------


@dataclass
class Fix:
    limit: str  # in words: "power cap of site campus", "deadline of job gpt3", ...
    path: str  # the instance field to change
    current: float
    needed: float  # the least value that admits a design
    unit: str
    objective: str = ""
    objective_value: float | None = None  # of the verified design at `needed`
    verified: bool = False
    tco_usd_after: float | None = None  # TCO of that verified design

    @property
    def delta(self) -> float:
        return self.needed - self.current

    def text(self) -> str:
        fmt = _FMT.get(self.unit, lambda x: f"{x:,.4g} {self.unit}")
        verb = "raise" if self.unit not in ("days", "s") else "extend" if self.unit == "days" else "relax"
        design = ""
        if self.verified and self.objective_value is not None:
            design = f"; a verified design then exists ({_fmt_objective(self.objective, self.objective_value)})"
        return (f"{verb} the {self.limit} by {fmt(self.delta)} ({fmt(self.current)} -> {fmt(self.needed)}; "
                f"{self.path}){design}")

    def finding(self) -> "Finding":
        return Finding(f"  {self.text()}", kind="fix", field=self.path, current=self.current, needed=self.needed,
                       unit=self.unit, tco_usd_after=self.tco_usd_after)


DIAGNOSIS_KEYS = ("kind", "field", "current", "needed", "unit", "tco_usd_after", "message")


class Finding(str):
    """One line of a diagnosis: the text users read, carrying the data it was written from.

    A str, so every reader of `Solution.diagnosis` (reports, sweeps, batch files) keeps working;
    `data` is the JSON object `{kind, field, current, needed, unit, tco_usd_after, message}`.
    kind: "fix" (change `field` from `current` to `needed` and a verified design exists, whose TCO
    is `tco_usd_after`), "unfit" (a workload no layout can run as asked; `field` names the limit),
    or "note" (the text only)."""

    def __new__(cls, message: str, *, kind: str = "note", field: str | None = None, current: float | None = None,
                needed: float | None = None, unit: str | None = None, tco_usd_after: float | None = None):
        self = super().__new__(cls, message)
        self.kind, self.field, self.current, self.needed = kind, field, current, needed
        self.unit, self.tco_usd_after = unit, tco_usd_after
        return self

    def __reduce__(self):  # pickles across the wall-clock child process with its data
        return (_finding, (str(self), self.data))

    @property
    def data(self) -> dict:
        return {"kind": self.kind, "field": self.field, "current": self.current, "needed": self.needed,
                "unit": self.unit, "tco_usd_after": self.tco_usd_after, "message": str(self).strip()}


def _finding(message: str, data: dict) -> Finding:
    return Finding(message, **{k: v for k, v in data.items() if k != "message"})


def diagnosis_data(lines) -> list[dict]:
    """A diagnosis (Findings or plain lines) as the JSON list of objects."""
    return [x.data if isinstance(x, Finding) else {**dict.fromkeys(DIAGNOSIS_KEYS), "kind": "note",
                                                     "message": str(x).strip()} for x in lines]


_FMT = fmt.QUANTITY


def _fmt_objective(objective: str, value: float) -> str:
    return fmt.objective(objective, value, "sentence")


def _least(inst: Instance, measure, backend: str, time_limit_s, frontier: bool = False) -> float | None:
    """The least value of `measure(data, vars)` over all designs of `inst`, or None if none exists."""
    _, pruned = prepare(inst, frontier=frontier)
    ps = prepare_services(inst)
    if any(p.survived == 0 for p in pruned) or any(p.survived == 0 for p in ps):
        return None
    data = build_data(inst, pruned, ps)
    m, v = build_model(data)
    m.minimize(measure(data, v))
    res = run_backend(m, backend=backend, time_limit_s=time_limit_s)
    return res.objective if res.values is not None and res.status in (Status.OPTIMAL, Status.FEASIBLE) else None


def _solve(inst: Instance, backend: str, time_limit_s) -> Solution:
    return solve_instance(inst, backend=backend, time_limit_s=time_limit_s)


def _confirm(fix: Fix, inst: Instance, backend: str, time_limit_s) -> Fix | None:
    """Solve the instance with the limit moved to the needed value; keep the fix only if it holds."""
    sol = _solve(inst, backend, time_limit_s)
    if not sol.has_design:
        return None
    if not sol.verified:  # every fix printed stands on a verified design
        return None
    fix.objective, fix.objective_value, fix.verified = sol.objective, sol.objective_value, sol.verified
    fix.tco_usd_after = sol.design.tco_usd
    return fix


def _up(x: float, step: float) -> float:
    """Round a needed value up to a step users can type, never below the need."""
    return math.ceil(x / step - 1e-9) * step


def find_fixes(instance: Instance, backend: str = "ortools", time_limit_s: float | None = None) -> list[Fix]:
    """Every single-limit relaxation that makes `instance` feasible, smallest first per limit."""
    fixes: list[Fix] = []
    for i, site in enumerate(instance.site_list):
        where = "" if instance.sites is None else f" of site {site.name}"
        kw = None
        if site.power_cap_mw is not None:
            relaxed = _with_site(instance, i, "power_cap_mw", None)
            kw = _least(relaxed, lambda d, v, s=site.name: v.total("facility_power_kw", site=s) + 0, backend, time_limit_s)
        if kw is not None:
            need = _up(kw / 1000, 0.001)
            fix = Fix(f"power cap{where}", _site_path(instance, i, "power_cap_mw"), site.power_cap_mw, need, "MW")
            fixes.append(_confirm(fix, _with_site(instance, i, "power_cap_mw", need), backend, time_limit_s))
        if site.max_racks is not None:
            relaxed = _with_site(instance, i, "max_racks", None)
            racks = _least(relaxed, lambda d, v, s=site.name: lin_sum(r for (_, _, x), r in v.racks.items() if x == s),
                           backend, time_limit_s)
            if racks is not None:
                need = int(round(racks))
                fix = Fix(f"rack space{where}", _site_path(instance, i, "max_racks"), site.max_racks, need, "racks")
                fixes.append(_confirm(fix, _with_site(instance, i, "max_racks", max(need, 1)), backend, time_limit_s))
    if instance.budget.capex_usd is not None:
        relaxed = _with_budget(instance, "capex_usd", None)
        musd = _least(relaxed, lambda d, v: objective_expr(d, v, "min_capex"), backend, time_limit_s)
        if musd is not None:
            need = _up(musd * USD_PER_MUSD, 1000.0)
            fix = Fix("capex budget", "budget.capex_usd", instance.budget.capex_usd, need, "$")
            fixes.append(_confirm(fix, _with_budget(instance, "capex_usd", need), backend, time_limit_s))
    if instance.budget.carbon_cap_t_per_year is not None:
        relaxed = _with_budget(instance, "carbon_cap_t_per_year", None)
        t = _least(relaxed, lambda d, v: objective_expr(d, v, "min_carbon"), backend, time_limit_s)
        if t is not None:
            need = _up(t, 0.1)
            fix = Fix("carbon cap", "budget.carbon_cap_t_per_year", instance.budget.carbon_cap_t_per_year, need, "tCO2/yr")
            fixes.append(_confirm(fix, _with_budget(instance, "carbon_cap_t_per_year", need), backend, time_limit_s))
    for job in instance.training_jobs:
        if job.deadline_days is None:
            continue
        relaxed = _with_workload(instance, job.name, "deadline_days", None)
        days = _least(relaxed, lambda d, v, n=job.name: job_days_expr(d, v, n), backend, time_limit_s, frontier=True)
        if days is not None and days > job.deadline_days * (1 + 1e-9):
            need = _up(days, 0.01)
            fix = Fix(f"deadline of job {job.name}", _workload_path(instance, job.name, "deadline_days"), job.deadline_days,
                      need, "days")
            fixes.append(_confirm(fix, _with_workload(instance, job.name, "deadline_days", need), backend, time_limit_s))
    for svc in instance.services:
        for slo in ("ttft_s", "tpot_s"):
            fix = _slo_fix(instance, svc, slo, backend, time_limit_s)
            if fix is not None:
                fixes.append(fix)
    seen: set[str] = set()  # one fix per field
    return [f for f in fixes if f is not None and not (f.path in seen or seen.add(f.path))]


def _slo_fix(instance: Instance, svc, slo: str, backend: str, time_limit_s) -> Fix | None:
    """Smallest SLO value with a design: bisection over the latencies layouts can actually reach."""
    from models.candidates import service_table

    current = getattr(svc, slo)
    t = service_table(svc, instance.catalog)
    ok = t.perf["fits_memory"].astype(bool)
    values = set(float(x) for x in t.perf[slo][ok])
    if slo == "ttft_s" and instance.sites is not None:  # the SLO covers the network round trip too
        rtts = {site.latency_ms.get(r) for site in instance.site_list for r in svc.regional_demand_rps if r != ANY_REGION}
        values = {x + r / 1000 for x in values for r in rtts if r is not None} | values
    cands = sorted(x for x in values if x > current)
    # The loosest value any layout can need: an SLO beyond it admits every layout, so if no design
    # exists there, this SLO alone is not the cause.
    if not cands or not _solve(_with_workload(instance, svc.name, slo, cands[-1] * (1 + 1e-9)), backend,
                               time_limit_s).has_design:
        return None
    lo, hi, best = 0, len(cands) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        sol = _solve(_with_workload(instance, svc.name, slo, cands[mid] * (1 + 1e-9)), backend, time_limit_s)
        if sol.has_design:
            best, hi = (cands[mid], sol), mid - 1
        else:
            lo = mid + 1
    if best is None:
        return None
    need, sol = best
    label = "TTFT SLO" if slo == "ttft_s" else "TPOT SLO"
    fix = Fix(f"{label} of service {svc.name}", _workload_path(instance, svc.name, slo), current, need * (1 + 1e-9), "s")
    if not sol.verified:
        return None
    fix.objective, fix.objective_value, fix.verified = sol.objective, sol.objective_value, sol.verified
    fix.tco_usd_after = sol.design.tco_usd
    return fix


def alone_infeasible(instance: Instance) -> list[str]:
    """Workloads that no design can run, whatever the facility: memory, batch or SLO reasons."""
    _, pruned = prepare(instance, frontier=True)
    out = [explain_job(p) for p in pruned if p.fit_memory == 0 or p.enumerated == 0]
    out += [explain_service(p) for p in prepare_services(instance) if p.fit_memory == 0]
    return out


def _deadline_fact(instance: Instance, p) -> Finding:
    """A job no layout runs by its deadline, stated as a fact: how much to extend it comes only from
    a verified design (the fastest layout alone may still break the power cap or the budget)."""
    t, job = p.table, p.table.job
    days = np.where(t.perf["fits_memory"].astype(bool), t.days, np.inf)
    i = int(np.argmin(days))
    lay = t.layout(i)
    return Finding(f"job '{job.name}': no layout meets its deadline of {job.deadline_days:g} days; the fastest, "
                   f"on {int(t.perf['n_acc'][i])} x {lay['accelerator']} (tp={lay['tp']} pp={lay['pp']} dp={lay['dp']}) "
                   f"with nothing else limiting it, takes {days[i]:.2f} days", kind="unfit",
                   field=_workload_path(instance, job.name, "deadline_days"), current=job.deadline_days,
                   needed=None, unit="days")


def _slo_fact(instance: Instance, p) -> Finding:
    text = explain_service(p)
    head = text.rsplit(": relax", 1)[0]  # the SLO change to make is the verified fix below, if any
    return Finding(head, kind="unfit", field=_workload_path(instance, p.table.service.name, "ttft_s"
                                                            if "TTFT" in head else "tpot_s"), unit="s")


def diagnose_solution(instance: Instance, sol: Solution, backend: str = "ortools",
                      time_limit_s: float | None = None) -> Solution:
    """Fill `sol.diagnosis` when the instance is infeasible: the study a caller asks for after a solve."""
    if sol.status == "infeasible" and not sol.has_design:
        objective = instance.objective if sol.objective == instance.objective else sol.objective
        sol.diagnosis = diagnose(instance.model_copy(update={"objective": objective}), backend, time_limit_s)
    return sol


def diagnose(instance: Instance, backend: str = "ortools", time_limit_s: float | None = None) -> list[Finding]:
    """What cannot run at all, and each single change that makes a design exist (each confirmed by a
    verified design, one per field): lines for the user that carry their data (`Finding`)."""
    lines = [Finding(x, kind="unfit") for x in alone_infeasible(instance)]
    if lines:
        return lines + [Finding("no change of power, space, budget or deadline can fix that: change the model, "
                                "the precision, the layout pins or the catalog")]
    _, pruned = prepare(instance)
    lines += [_deadline_fact(instance, p) for p in pruned if p.survived == 0]
    lines += [_slo_fact(instance, p) for p in prepare_services(instance) if p.survived == 0]
    fixes = find_fixes(instance, backend, time_limit_s)
    if fixes:
        lines.append(Finding("any one of these makes a design exist:" if len(fixes) > 1 else "this makes a design exist:"))
        lines += [f.finding() for f in fixes]
    else:
        lines.append(Finding("no single limit is the cause: several bind together (relax two at once, e.g. power and "
                             "deadline)"))
    return lines


# ------------------------------------------------------------------------------------------------
# Solved instances: what binds, and what a unit of each limit is worth
# ------------------------------------------------------------------------------------------------


@dataclass
class Binding:
    limit: str
    value: float
    bound: float
    unit: str

    @property
    def slack(self) -> float:
        return self.bound - self.value

    @property
    def tight(self) -> bool:
        return self.slack <= TIGHT_REL * abs(self.bound) + 1e-9


def what_binds(instance: Instance, sol: Solution) -> list[Binding]:
    """Every limit with its use and slack; `tight` when under 2% is left."""
    d = sol.design
    out: list[Binding] = []
    for site, sd in zip(instance.site_list, d.sites):
        where = "" if instance.sites is None else f" of site {site.name}"
        if site.power_cap_mw is not None:
            out.append(Binding(f"power cap{where}", sd.facility_power_kw / 1000, site.power_cap_mw, "MW"))
        if site.max_racks is not None:
            out.append(Binding(f"rack space{where}", sd.total_racks, site.max_racks, "racks"))
    if instance.budget.capex_usd is not None:
        out.append(Binding("capex budget", d.capex_usd["total"], instance.budget.capex_usd, "$"))
    if instance.budget.carbon_cap_t_per_year is not None:
        out.append(Binding("carbon cap", d.carbon_t_per_year, instance.budget.carbon_cap_t_per_year, "tCO2/yr"))
    for j in sol.jobs:
        if j.deadline_days is not None:
            out.append(Binding(f"deadline of job {j.name}", j.days, j.deadline_days, "days"))
    sites = {s.name: s for s in instance.site_list}
    for s in sol.services:
        # A group held only as spare (survive_site_loss, N+k) serves no region in the design itself.
        ttft = max(g.ttft_s + max(((sites[g.site].latency_ms.get(r, 0.0) if instance.sites else 0.0) / 1000
                                   for r in g.regions), default=0.0) for g in s.groups)
        out.append(Binding(f"TTFT SLO of service {s.name} (with network RTT)", ttft, s.ttft_slo_s, "s"))
        out.append(Binding(f"TPOT SLO of service {s.name}", s.worst_tpot_s, s.tpot_slo_s, "s"))
    return out


@dataclass
class ShadowPrice:
    limit: str
    unit: str  # of one step of the limit
    lp_dual_usd: float | None  # d objective / d limit from the LP with integer choices fixed (local)
    resolve_delta: float | None  # objective change when the MIP is re-solved with one more unit
    objective: str = ""

    def text(self) -> str:
        obj = by_objective(self.objective).label if self.objective in objectives() else self.objective
        parts = []
        if self.resolve_delta is not None:
            delta = self.rounded_delta
            change = "lower" if delta < 0 else "raise" if delta > 0 else "not change"
            amount = "" if delta == 0 else " by " + fmt.usd(abs(delta))
            parts.append(f"one more {self.unit} of the {self.limit} would {change} {obj}{amount} (MIP re-solved)")
        if self.lp_dual_usd is not None:
            worth = -self.lp_dual_usd
            amount = fmt.usd(0.0 if abs(worth) < 0.5 else worth)  # never "$-0"
            parts.append(f"LP shadow price with the integer design fixed: {amount} per {self.unit} "
                         "(holds only while the integer choices stay as they are)")
        return "; ".join(parts)

    @property
    def rounded_delta(self) -> float:
        """The re-solve's change with solver noise (under a dollar, or 1e-7 of nothing) read as none."""
        d = self.resolve_delta or 0.0
        return 0.0 if abs(d) < 1.0 else d


def shadow_prices(instance: Instance, sol: Solution, backend: str = "ortools",
                  time_limit_s: float | None = None) -> list[ShadowPrice]:
    """What one more MW, $1M of capex or tonne of carbon cap is worth, for cost objectives."""
    if by_objective(instance.objective).unit != "USD" or sol.design is None:  # cost objectives only
        return []
    duals = _lp_duals(instance, sol, backend)
    out = []
    for i, site in enumerate(instance.site_list):
        if site.power_cap_mw is None:
            continue
        where = "" if instance.sites is None else f" of site {site.name}"
        lp = duals.get(K("power_cap", site=site.name))
        resolved = _solve(_with_site(instance, i, "power_cap_mw", site.power_cap_mw + 1), backend, time_limit_s)
        delta = resolved.objective_value - sol.objective_value if resolved.has_design else None
        out.append(ShadowPrice(f"power cap{where}", "MW", None if lp is None else lp * 1000 * USD_PER_MUSD, delta,
                               instance.objective))
    if instance.budget.capex_usd is not None:
        lp = duals.get(K("capex_budget"))
        resolved = _solve(_with_budget(instance, "capex_usd", instance.budget.capex_usd + 1e6), backend, time_limit_s)
        delta = resolved.objective_value - sol.objective_value if resolved.has_design else None
        out.append(ShadowPrice("capex budget", "$1M", None if lp is None else lp * USD_PER_MUSD, delta, instance.objective))
    if instance.budget.carbon_cap_t_per_year is not None:
        lp = duals.get(K("carbon_cap"))
        resolved = _solve(_with_budget(instance, "carbon_cap_t_per_year", instance.budget.carbon_cap_t_per_year + 1),
                          backend, time_limit_s)
        delta = resolved.objective_value - sol.objective_value if resolved.has_design else None
        out.append(ShadowPrice("carbon cap", "tCO2/yr", None if lp is None else lp * USD_PER_MUSD, delta, instance.objective))
    for job in instance.training_jobs:  # a deadline is a limit too: what one more day saves
        if job.deadline_days is None:
            continue
        resolved = _solve(_with_workload(instance, job.name, "deadline_days", job.deadline_days + 1), backend,
                          time_limit_s)
        delta = resolved.objective_value - sol.objective_value if resolved.has_design else None
        out.append(ShadowPrice(f"deadline of job {job.name}", "day", None, delta, instance.objective))
    return out


def _lp_duals(instance: Instance, sol: Solution, backend: str) -> dict[str, float]:
    """Constraint duals of the MIP with every integer variable fixed at the solution ($M per unit)."""
    _, pruned = prepare(instance)
    ps = prepare_services(instance)
    data = build_data(instance, pruned, ps)
    res, v, m = solve_mip(data, instance.objective, backend, None, None)
    if res.values is None:
        return {}
    fixed = m.with_integers_fixed(res.values)
    fixed.minimize(objective_expr(data, v, instance.objective))
    return lp_duals(fixed)
