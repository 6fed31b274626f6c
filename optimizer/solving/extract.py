"""Solver values -> the typed design: what is bought per site, each job's layout, each service's replicas.

Named totals are read back by their keys (`K("capex_musd", site=...)`), never re-typed as text.
"""

from __future__ import annotations

import math

from models.candidates import layout_storage
from models.facility import region_spares
from models.schema import Instance

from optimizer.mip.build import CAPEX_PARTS, Vars
from optimizer.mip.data import HOURS_PER_YEAR, USD_PER_MUSD, MipData
from optimizer.mip.design import LAYOUT_FIELDS, Design, FabricResult, JobResult, ReplicaGroup, ServiceResult, SiteResult
from optimizer.mip.lp import K
from optimizer.mip.prune import Pruned, PrunedService
from optimizer.mip.families.storage import STORAGE_RACK, storage_sizing


def fabric_result(f, v: Vars, site: str, val, rint):
    ep = int(round(sum(val(v.endpoints[f.name, site, n]) for n in (1, 2, 3))))
    if ep == 0:
        return None
    tiers = next((n for n in (1, 2, 3) if rint(v.tiers[f.name, site, n]) == 1), 0)
    leaves = {1: rint(v.tiers[f.name, site, 1]), 2: rint(v.leaves[f.name, site, 2]), 3: rint(v.leaves[f.name, site, 3])}[tiers] if tiers else 0
    agg = rint(v.aggregation[f.name, site]) if tiers == 3 else 0
    spines = rint(v.spines[f.name, site, tiers]) if tiers in (2, 3) else 0
    links = f.up * leaves + (f.radix // 2) * agg if tiers >= 2 else 0
    return FabricResult(f.name, site, ep, tiers, leaves, agg, spines, 2 * links)


def design_from(data: MipData, v: Vars, values: list[float]) -> Design:
    val = lambda var: float(values[var.index])  # noqa: E731
    rint = lambda var: int(round(val(var)))  # noqa: E731
    t = {k: val(var) for k, var in v.totals.items()}
    usd = USD_PER_MUSD
    unit_tier = {t.name: t.unit_tb > 0 for t in data.storage}
    sites = []
    for s in data.sites:
        nodes: dict[str, dict[str, int]] = {}
        racks: dict[str, dict[str, int]] = {}
        for (acc, o, site), var in v.nodes.items():  # storage racks are keyed apart (STORAGE_RACK)
            n, r = rint(var), rint(v.racks[acc, o, site])
            # An unproven incumbent may hold a spare rack: keep it when it is paid for (free ones are noise).
            if site == s.name and (n or (r and s.rack_capex_musd > 0)):
                nodes.setdefault(acc, {})[o] = n
                racks.setdefault(acc, {})[o] = r
        fabrics = [r for f in v.fabrics_at[s.name] if (r := fabric_result(f, v, s.name, val, rint)) is not None]
        g = lambda k: t[K(k, site=s.name)]  # noqa: E731
        capex = {p: g(f"capex_{p}_musd") * usd for p in CAPEX_PARTS}
        capex["total"] = g("capex_musd") * usd
        picked = [(j, c) for j in data.jobs for k, c in enumerate(j.candidates) if val(v.choose[j.name, k, s.name]) > 0.5]
        amounts = {tier: (rint(var) if unit_tier[tier] else val(var)) for (tier, site), var in v.storage_tb.items()
                   if site == s.name}
        sites.append(SiteResult(
            # Open = something is placed there, or its build-out is paid (a free site may sit "open" empty).
            name=s.name, open=any(n for by_o in nodes.values() for n in by_o.values())
            or (rint(v.site_open[s.name]) == 1 and s.site_capex_musd > 0), nodes=nodes, racks=racks, fabrics=fabrics,
            storage_tb={tier: val(var) for (tier, site), var in v.storage_tb.items()
                        if site == s.name and val(var) > 1e-4 and not unit_tier[tier]},
            storage_units={tier: rint(var) for (tier, site), var in v.storage_tb.items()
                           if site == s.name and unit_tier[tier] and rint(var) > 0},
            storage_racks=rint(v.racks[STORAGE_RACK, s.aux_cooling, s.name]) if (STORAGE_RACK, s.aux_cooling, s.name) in v.racks else 0,
            node_power_kw=g("node_power_kw"), network_power_kw=g("network_power_kw"), storage_power_kw=g("storage_power_kw"),
            it_power_kw=g("it_power_kw"), facility_power_kw=g("facility_power_kw"), capex_usd=capex,
            energy_usd_per_year=g("energy_musd_per_year") * usd, carbon_t_per_year=g("carbon_t_per_year"),
            backup_tb={data.backup_tier: val(var) for site, var in v.backup_tb.items() if site == s.name and val(var) > 1e-6}
            if data.backup_tier else {},
            storage_sizing=storage_sizing(data, picked, amounts, rint(v.site_open[s.name]) == 1),
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
        rent_jobs_usd=t["rent_jobs_musd"] * usd,
        rent_services_usd_per_year=t["rent_services_musd_per_year"] * usd,
    )


def _finite(x) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


def _job_storage(t, lay: dict, i: int, usable_tb: float) -> dict:
    st = layout_storage(t.job, t.dims, lay, int(t.perf["n_acc"][i]), float(t.perf["tokens_per_s"][i]))
    return {"usable_tb": usable_tb, "write_gbps": st["write_gbps"], "write_sized_by": st["sized_write"],
            "read_gbps": st["read_gbps"], "read_sized_by": st["sized_read"], "checkpoint_write_s": st["write_s"],
            "checkpoint_reload_s": st["reload_s"], "reload_gb": st["reload_gb"]}


def jobs_from(data: MipData, pruned: list[Pruned], v: Vars, values: list[float]) -> list[JobResult]:
    out = []
    for job, pr in zip(data.jobs, pruned):
        options = [(values[v.choose[job.name, k, s.name].index], c, s.name, "own")
                   for k, c in enumerate(job.candidates) for s in data.sites]
        options += [(values[v.rent[job.name, k].index], c, "cloud", "rent") for k, c in enumerate(job.rented)]
        _, cand, site, procurement = max(options, key=lambda o: o[0])
        i = cand.index
        t = pr.table
        lay = t.layout(i)
        out.append(
            JobResult(
                name=job.name,
                **{k: lay[k] for k in LAYOUT_FIELDS},
                layout_extra={k: x for k, x in lay.items() if k not in LAYOUT_FIELDS},
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
                spare_nodes=int(t.perf["spare_nodes"][i]) if procurement == "own" else 0,  # the cloud replaces failed nodes
                goodput=float(t.perf["goodput"][i]),
                interruptions_per_day=float(t.perf["interruptions_per_day"][i]),
                checkpoint_interval_s=_finite(t.perf["checkpoint_interval_s"][i]),
                time_to_train_failure_free_days=float(t.perf["time_to_train_days"][i]),
                candidates_enumerated=pr.enumerated,
                candidates_fit_memory=pr.fit_memory,
                candidates_meet_deadline=pr.meet_deadline,
                candidates_in_mip=pr.survived,
                candidates_evaluated=pr.enumerated if pr.evaluated is None else pr.evaluated,
                procurement=procurement,
                rent_usd=cand.rent_musd * USD_PER_MUSD if procurement == "rent" else 0.0,
                rent_rate=cand.rent_rate if procurement == "rent" else "",
                storage=_job_storage(t, lay, i, job.usable_tb) if procurement == "own" else {},
            )
        )
    return out


def services_from(instance: Instance, data: MipData, pruned: list[PrunedService], v: Vars, values, design: Design,
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
            replicas = int(round(values[var.index]))
            if svc != s.name or not replicas:
                continue
            lay = s.layouts[k]
            i = lay.index
            regions = {reg: values[f.index] for (sv2, k2, site2, reg), f in v.served.items()
                       if (sv2, k2, site2) == (svc, k, site) and values[f.index] > 1e-7}
            rented = "rent" if lay.rented else "own"
            groups.append(ReplicaGroup(site, regions, lay.accelerator, lay.tp, lay.batch, replicas,
                                       0 if lay.rented else -(-replicas * lay.slots // lay.per_node), lay.requests_per_s,
                                       lay.requests_per_s * ps.table.service.output_tokens,
                                       float(p["ttft_s"][i]), float(p["tpot_s"][i]), float(p["memory_per_acc_gb"][i]),
                                       rented, replicas * lay.rent_musd_per_year * USD_PER_MUSD,
                                       role=lay.role, node_share=0.0 if lay.rented else replicas * lay.slots / lay.per_node,
                                       fabric=lay.fabric, endpoints=0 if lay.rented else replicas * lay.endpoints,
                                       ep=lay.ep, rent_rate=lay.rent_rate))
        _decode_regions(groups)
        for g in groups:
            _at_load(instance, ps.table.service, g)
        groups_by_svc.append(groups)
    # Owned TCO is shared by the compute capex of the node shares each workload occupies; rent is its own.
    svc_capex = [sum(g.node_share * node_price[g.accelerator] for g in groups if g.procurement == "own")
                 for groups in groups_by_svc]
    job_capex = [j.nodes * node_price[j.accelerator] for j in jobs if j.procurement == "own"]
    total = sum(svc_capex) + sum(job_capex)
    years = instance.budget.horizon_years
    owned_tco = design.tco_usd - design.rent_jobs_usd - years * design.rent_services_usd_per_year
    horizon_s = years * HOURS_PER_YEAR * 3600
    out = []
    for s, ps, groups, capex in zip(data.services, pruned, groups_by_svc, svc_capex):
        svc = ps.table.service
        share = (owned_tco * capex / total if total else 0.0) + years * sum(g.rent_usd_per_year for g in groups)
        tokens_m = svc.demand_output_tokens_per_s * horizon_s / 1e6
        spares = region_spares(ps.table, cat, None if instance.sites is None else [x.latency_ms for x in instance.site_list])
        out.append(ServiceResult(
            s.name, svc.demand_rps, sum(g.replicas * g.requests_per_s_each for g in groups if g.role != "decode"),
            svc.demand_output_tokens_per_s,
            svc.ttft_s, svc.tpot_s, groups, share, share / tokens_m, ps.enumerated, ps.meet_slo, ps.survived,
            svc.survive_site_loss, svc.availability, {r: x["spares"] for r, x in spares.items()},
        ))
    return out


def _decode_regions(groups: list[ReplicaGroup]) -> None:
    """A site's decode replicas take the prompts its prefill replicas finish: split them over the
    decode groups by capacity, region by region (what the verifier checks each decode group at)."""
    for site in {g.site for g in groups}:
        pre: dict[str, float] = {}
        for g in groups:
            if g.site == site and g.role == "prefill":
                for r, x in g.regions.items():
                    pre[r] = pre.get(r, 0.0) + x
        dec = [g for g in groups if g.site == site and g.role == "decode"]
        cap = sum(g.replicas * g.requests_per_s_each for g in dec)
        for g in dec:
            share = g.replicas * g.requests_per_s_each / cap if cap else 0.0
            g.regions = {r: x * share for r, x in pre.items() if x * share > 1e-7}


def _at_load(instance: Instance, svc, g: ReplicaGroup) -> None:
    """Fill the group's figures at the load it carries (the verifier recomputes them)."""
    from optimizer.mip.families.serving import group_latency

    lat = group_latency(instance, svc, g)
    g.utilization = float(lat["utilization"])
    g.kv_transfer_s = float(lat["kv_transfer_s"])
    g.ttft_p99_s = float(lat["ttft_p99_s"]) + g.kv_transfer_s
    g.tpot_p99_s = float(lat["tpot_p99_s"])
    if g.role == "prefill":
        g.ttft_s, g.tpot_s, g.output_tokens_per_s_each = lat["prefill_s"] + g.kv_transfer_s, 0.0, 0.0
    elif g.role == "decode":
        g.ttft_s, g.tpot_s = 0.0, float(lat["decode_step_s"])
