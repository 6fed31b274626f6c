"""Instance -> candidates -> pruning -> MIP -> backend -> design -> independent verification."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from models.candidates import JobTable, job_tables, service_table
from models.schema import Instance

from optimizer.mip.backends import SolveResult, Status
from optimizer.mip.backends import solve as run_backend
from optimizer.mip.build import CAPEX_PARTS, Vars, build_model, objective_expr
from optimizer.mip.data import HOURS_PER_YEAR, USD_PER_MUSD, MipData, build_data
from optimizer.mip.prune import Pruned, PrunedService, prune, prune_service
from optimizer.mip.design import Design, FabricResult, JobResult, ReplicaGroup, ServiceResult, SiteResult, Solution

# Lexicographic tie-break: after min_time or min_power, the cheapest (TCO) design at that optimum.
SECOND_STAGE = {"min_time": "min_tco", "min_power": "min_tco", "min_carbon": "min_tco"}
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
    return USD_PER_MUSD if objective in ("min_tco", "min_capex") else 1.0


def prepare(instance: Instance, frontier: bool = False) -> tuple[list[JobTable], list[Pruned]]:
    """Candidate tables and their pruning; `frontier` keeps every job's whole nodes/time front
    (needed when time is bounded or traded off, e.g. Pareto fronts), not only its fewest-node point."""
    tables = job_tables(instance.training_jobs, instance.catalog)
    return tables, [prune(t, "min_time" if frontier else instance.objective) for t in tables]


# Metrics that can be bounded (`bounds=`) or read back from a solution, in the user's units.
METRICS = ("tco_usd", "capex_usd", "facility_power_kw", "carbon_t_per_year", "days:<job>")


def metric_expr(data: MipData, v: Vars, metric: str):
    """A metric as a MIP expression in the MIP's units, with the factor from user units."""
    from optimizer.mip.lp import lin_sum

    if metric == "tco_usd":
        return v.totals["tco_musd"] + 0, 1 / USD_PER_MUSD
    if metric == "capex_usd":
        return v.totals["capex_musd"] + 0, 1 / USD_PER_MUSD
    if metric == "facility_power_kw":
        return v.totals["facility_power_kw"] + 0, 1.0
    if metric == "carbon_t_per_year":
        return v.totals["carbon_t_per_year"] + 0, 1.0
    if metric.startswith("days:"):
        name = metric.split(":", 1)[1]
        job = next((j for j in data.jobs if j.name == name), None)
        if job is None:
            raise ValueError(f"unknown training job '{name}' in metric '{metric}' (jobs: {', '.join(j.name for j in data.jobs)})")
        return lin_sum(c.days * v.choose[job.name, k, s.name] for k, c in enumerate(job.candidates) for s in data.sites), 1.0
    raise ValueError(f"unknown metric '{metric}' (expected one of {', '.join(METRICS)})")


def metric_value(sol: Solution, metric: str) -> float:
    """A metric read from a solved design, in the user's units."""
    d = sol.design
    if metric == "tco_usd":
        return d.tco_usd
    if metric == "capex_usd":
        return d.capex_usd["total"]
    if metric == "facility_power_kw":
        return d.facility_power_kw
    if metric == "carbon_t_per_year":
        return d.carbon_t_per_year
    if metric.startswith("days:"):
        name = metric.split(":", 1)[1]
        return next(j.days for j in sol.jobs if j.name == name)
    raise ValueError(f"unknown metric '{metric}' (expected one of {', '.join(METRICS)})")


def prepare_services(instance: Instance) -> list[PrunedService]:
    return [prune_service(service_table(s, instance.catalog)) for s in instance.services]


def explain_service(ps: PrunedService) -> str:
    """Why no replica layout of a service meets memory and its SLOs, with the nearest miss."""
    t, s = ps.table, ps.table.service
    if ps.fit_memory == 0:
        return (f"service '{s.name}': the model's weights and one sequence's KV cache fit no accelerator at any "
                "tensor-parallel degree within its scale-up domain (try fp8/int8 or larger accelerators)")
    fits = t.perf["fits_memory"].astype(bool)
    ttft = np.where(fits, t.perf["ttft_s"], np.inf)
    tpot = np.where(fits & (t.perf["ttft_s"] <= s.ttft_s), t.perf["tpot_s"], np.inf)
    if not np.isfinite(tpot).any():
        i = int(np.argmin(ttft))
        lay = t.layout(i)
        return (f"service '{s.name}': no layout meets the TTFT SLO of {s.ttft_s:g} s; the fastest prefill is "
                f"{ttft[i]:.3f} s ({lay['accelerator']}, tp={lay['tp']}): relax the SLO by {ttft[i] - s.ttft_s:.3f} s "
                "or shorten prompts")
    i = int(np.argmin(tpot))
    lay = t.layout(i)
    return (f"service '{s.name}': no layout meets the TPOT SLO of {s.tpot_s * 1000:g} ms; the best is "
            f"{tpot[i] * 1000:.1f} ms ({lay['accelerator']}, tp={lay['tp']}, batch={lay['batch']}): relax it by "
            f"{(tpot[i] - s.tpot_s) * 1000:.1f} ms")


def explain_job(pr: Pruned) -> str:
    """Why a job has no candidate: memory, batch, or deadline, with the nearest miss."""
    t, job = pr.table, pr.table.job
    if pr.enumerated == 0:
        return (
            f"job '{job.name}': no parallel layout exists for its model, global batch {job.global_batch} and pins "
            "(check tp divides heads, pp divides layers, the batch divides by micro-batch x dp, fp8 support)"
        )
    if pr.fit_memory == 0:
        mem = t.perf["memory_per_gpu_gb"]
        i = int(np.nanargmin(mem))
        lay = t.layout(i)
        return (
            f"job '{job.name}': no configuration fits accelerator memory; the smallest footprint is "
            f"{mem[i]:.1f} GB per accelerator on {lay['accelerator']} (tp={lay['tp']}, pp={lay['pp']}, "
            f"recompute={lay['recompute']})"
        )
    days = np.where(t.perf["fits_memory"].astype(bool), t.days, np.inf)
    i = int(np.argmin(days))
    lay = t.layout(i)
    return (
        f"job '{job.name}': no configuration meets its deadline of {job.deadline_days:g} days within memory and the "
        f"global batch of {job.global_batch} sequences; the fastest takes {days[i]:.1f} days "
        f"({int(t.perf['n_acc'][i])} x {lay['accelerator']}, tp={lay['tp']} pp={lay['pp']} dp={lay['dp']}): "
        f"extend the deadline by {days[i] - job.deadline_days:.1f} days or raise the global batch"
    )


def _solve_mip(data: MipData, objective: str, backend: str, time_limit_s, gap, export_path=None,
               bounds: dict[str, float] | None = None) -> tuple[SolveResult, Vars, object]:
    m, v = build_model(data)
    for metric, bound in sorted((bounds or {}).items()):
        expr, factor = metric_expr(data, v, metric)
        m.add_constraint(expr <= bound * factor, f"bound[{metric}]")
    m.minimize(objective_expr(data, v, objective))
    if export_path is not None:
        m.export(str(export_path))
    res = run_backend(m, backend=backend, time_limit_s=time_limit_s, gap=gap)
    second = SECOND_STAGE.get(objective)
    if second and res.values is not None and res.objective is not None:
        # Fix the primary objective at its optimum (with a hair of tolerance), then minimise TCO.
        m.add_constraint(objective_expr(data, v, objective) <= res.objective + 1e-6 * max(1.0, abs(res.objective)), "primary_optimum")
        m.minimize(objective_expr(data, v, second))
        res2 = run_backend(m, backend=backend, time_limit_s=time_limit_s, gap=gap)
        if res2.values is not None:
            res = dataclasses.replace(res2, objective=res.objective, best_bound=res.best_bound, gap=res.gap,
                                      runtime_s=res.runtime_s + res2.runtime_s)
    return res, v, m


def _diagnose(instance: Instance, backend: str, time_limit_s) -> list[str]:
    from optimizer.studies.explain import diagnose

    return diagnose(instance, backend, time_limit_s)


def _fabric_result(f, v: Vars, site: str, val, rint):
    ep = int(round(sum(val(v.endpoints[f.name, site, n]) for n in (1, 2, 3))))
    if ep == 0:
        return None
    tiers = next((n for n in (1, 2, 3) if rint(v.tiers[f.name, site, n]) == 1), 0)
    leaves = {1: rint(v.tiers[f.name, site, 1]), 2: rint(v.leaves[f.name, site, 2]), 3: rint(v.leaves[f.name, site, 3])}[tiers] if tiers else 0
    agg = rint(v.aggregation[f.name, site]) if tiers == 3 else 0
    spines = rint(v.spines[f.name, site, tiers]) if tiers in (2, 3) else 0
    links = f.up * leaves + (f.radix // 2) * agg if tiers >= 2 else 0
    return FabricResult(f.name, site, ep, tiers, leaves, agg, spines, 2 * links)


def _design(data: MipData, v: Vars, values: list[float]) -> Design:
    val = lambda var: float(values[var.index])  # noqa: E731
    rint = lambda var: int(round(val(var)))  # noqa: E731
    t = {k: val(var) for k, var in v.totals.items()}
    usd = USD_PER_MUSD
    sites = []
    for s in data.sites:
        nodes: dict[str, dict[str, int]] = {}
        racks: dict[str, dict[str, int]] = {}
        for (acc, o, site), var in v.nodes.items():
            n, r = rint(var), rint(v.racks[acc, o, site])
            # An unproven incumbent may hold a spare rack: keep it when it is paid for (free ones are noise).
            if site == s.name and (n or (r and s.rack_capex_musd > 0)):
                nodes.setdefault(acc, {})[o] = n
                racks.setdefault(acc, {})[o] = r
        fabrics = [r for f in v.fabrics_at[s.name] if (r := _fabric_result(f, v, s.name, val, rint)) is not None]
        g = lambda k: t[f"{k}[site={s.name}]"]  # noqa: E731
        capex = {p: g(f"capex_{p}_musd") * usd for p in CAPEX_PARTS}
        capex["total"] = g("capex_musd") * usd
        sites.append(SiteResult(
            # Open = something is placed there, or its build-out is paid (a free site may sit "open" empty).
            name=s.name, open=any(n for by_o in nodes.values() for n in by_o.values())
            or (rint(v.site_open[s.name]) == 1 and s.site_capex_musd > 0), nodes=nodes, racks=racks, fabrics=fabrics,
            storage_tb={tier: val(var) for (tier, site), var in v.storage_tb.items() if site == s.name and val(var) > 1e-4},
            node_power_kw=g("node_power_kw"), network_power_kw=g("network_power_kw"), storage_power_kw=g("storage_power_kw"),
            it_power_kw=g("it_power_kw"), facility_power_kw=g("facility_power_kw"), capex_usd=capex,
            energy_usd_per_year=g("energy_musd_per_year") * usd, carbon_t_per_year=g("carbon_t_per_year"),
        ))
    capex = {p: t[f"capex_{p}_musd"] * usd for p in CAPEX_PARTS}
    capex["total"] = t["capex_musd"] * usd
    return Design(
        sites=sites,
        it_power_kw=sum(x.it_power_kw for x in sites),
        facility_power_kw=t["facility_power_kw"],
        capex_usd=capex,
        energy_usd_per_year=t["energy_musd_per_year"] * usd,
        maintenance_usd_per_year=t["maintenance_musd_per_year"] * usd,
        carbon_t_per_year=t["carbon_t_per_year"],
        carbon_usd_per_year=t["carbon_musd_per_year"] * usd,
        tco_usd=t["tco_musd"] * usd,
    )


def _jobs(data: MipData, pruned: list[Pruned], v: Vars, values: list[float]) -> list[JobResult]:
    out = []
    for job, pr in zip(data.jobs, pruned):
        k, site = max(((k, s.name) for k in range(len(job.candidates)) for s in data.sites),
                      key=lambda ks: values[v.choose[job.name, ks[0], ks[1]].index])
        i = job.candidates[k].index
        t = pr.table
        lay = t.layout(i)
        out.append(
            JobResult(
                name=job.name,
                **lay,
                site=site,
                accelerators=int(t.perf["n_acc"][i]),
                nodes=int(t.perf["nodes"][i]),
                days=float(t.days[i]),
                deadline_days=job.deadline_days,
                tokens_per_s=float(t.perf["tokens_per_s"][i]),
                mfu=float(t.perf["mfu"][i]),
                tflops_per_gpu_hw=float(t.perf["tflops_per_gpu_hw"][i]),
                tflops_per_gpu_model=float(t.perf["tflops_per_gpu_model"][i]),
                memory_per_gpu_gb=float(t.perf["memory_per_gpu_gb"][i]),
                candidates_enumerated=pr.enumerated,
                candidates_fit_memory=pr.fit_memory,
                candidates_meet_deadline=pr.meet_deadline,
                candidates_in_mip=pr.survived,
            )
        )
    return out


def _services(instance: Instance, data: MipData, pruned: list[PrunedService], v: Vars, values, design: Design,
              jobs: list[JobResult]) -> list[ServiceResult]:
    """Replicas by layout, site and region, SLO figures and cost per million output tokens (TCO
    allocated by compute capex)."""
    cat = instance.catalog
    node_price = {n: a.node_price_usd for n, a in cat.accelerators.items()}
    groups_by_svc = []
    for s, ps in zip(data.services, pruned):
        p = ps.table.perf
        groups = []
        for (svc, k, site), var in v.units.items():
            units = int(round(values[var.index]))
            if svc != s.name or not units:
                continue
            lay = s.layouts[k]
            i = lay.index
            r = units * lay.replicas_per_unit
            regions = {reg: values[f.index] for (sv2, k2, site2, reg), f in v.served.items()
                       if (sv2, k2, site2) == (svc, k, site) and values[f.index] > 1e-7}
            groups.append(ReplicaGroup(site, regions, lay.accelerator, lay.tp, lay.batch, r, units * lay.nodes_per_unit,
                                       float(p["requests_per_s"][i]),
                                       float(p["output_tokens_per_s"][i]), float(p["ttft_s"][i]), float(p["tpot_s"][i]),
                                       float(p["memory_per_acc_gb"][i])))
        groups_by_svc.append(groups)
    svc_capex = [sum(g.nodes * node_price[g.accelerator] for g in groups) for groups in groups_by_svc]
    job_capex = [j.nodes * node_price[j.accelerator] for j in jobs]
    total = sum(svc_capex) + sum(job_capex)
    horizon_s = instance.budget.horizon_years * HOURS_PER_YEAR * 3600
    out = []
    for s, ps, groups, capex in zip(data.services, pruned, groups_by_svc, svc_capex):
        svc = ps.table.service
        share = design.tco_usd * capex / total if total else 0.0
        tokens_m = svc.demand_output_tokens_per_s * horizon_s / 1e6
        out.append(ServiceResult(
            s.name, svc.demand_rps, sum(g.replicas * g.requests_per_s_each for g in groups), svc.demand_output_tokens_per_s,
            svc.ttft_s, svc.tpot_s, groups, share, share / tokens_m, ps.enumerated, ps.meet_slo, ps.survived,
        ))
    return out


def solve_instance(
    instance: Instance, backend: str = "ortools", time_limit_s: float | None = None, gap: float | None = None,
    verify: bool = True, export_path=None, objective: str | None = None, bounds: dict[str, float] | None = None,
    frontier: bool = False, diagnose_infeasible: bool = True,
) -> Solution:
    """Solve one instance; the returned design has passed the independent verifier (when verify).

    `objective` overrides the instance's; `bounds` caps metrics (see METRICS) in user units, e.g.
    {"days:gpt3": 30} or {"tco_usd": 2e8} (the epsilon constraints of a Pareto front); `frontier`
    keeps every job's nodes/time front in the MIP (implied when a job's days are bounded).
    An infeasible instance gets `diagnosis` lines (optimizer.studies.explain: what must grow, by how much,
    each fix confirmed by a verified design) unless `diagnose_infeasible` is off."""
    start = time.perf_counter()
    if objective is not None and objective != instance.objective:
        if objective == "min_time" and (len(instance.training_jobs) != 1 or instance.services):
            raise ValueError("objective min_time needs exactly one training job and no services "
                             "(bound other jobs' days with `bounds` instead)")
        instance = instance.model_copy(update={"objective": objective})
    frontier = frontier or instance.objective == "min_time" or any(k.startswith("days:") for k in (bounds or {}))
    sol = Solution(instance=instance.name, objective=instance.objective, status="infeasible", backend=backend)
    _, pruned = prepare(instance, frontier=frontier)
    pruned_services = prepare_services(instance)
    empty = [explain_job(pr) for pr in pruned if pr.survived == 0]
    empty += [explain_service(ps) for ps in pruned_services if ps.survived == 0]
    if empty:
        sol.diagnosis = _diagnose(instance, backend, time_limit_s) if diagnose_infeasible and not bounds else empty
        sol.runtime_s = time.perf_counter() - start
        return sol
    data = build_data(instance, pruned, pruned_services)
    res, v, m = _solve_mip(data, instance.objective, backend, time_limit_s, gap, export_path, bounds)
    sol.status = STATUS_TEXT[res.status]
    sol.backend, sol.solver, sol.message = res.backend, res.solver, res.message
    sol.mip_size = {"variables": m.num_vars, "integer_variables": m.num_integer_vars, "constraints": m.num_constraints}
    if res.values is not None and res.status in (Status.OPTIMAL, Status.FEASIBLE):
        scale = objective_scale(instance.objective)
        sol.objective_value = res.objective * scale
        sol.best_bound = None if res.best_bound is None else res.best_bound * scale
        sol.gap = res.gap
        sol.design = _design(data, v, res.values)
        sol.jobs = _jobs(data, pruned, v, res.values)
        sol.services = _services(instance, data, pruned_services, v, res.values, sol.design, sol.jobs)
        if verify:
            from optimizer.solving.verify import verify_solution

            verify_solution(instance, sol)
            sol.verified = True
    elif res.status == Status.INFEASIBLE and diagnose_infeasible and not bounds:
        sol.diagnosis = _diagnose(instance, backend, time_limit_s)
    sol.runtime_s = time.perf_counter() - start
    return sol
