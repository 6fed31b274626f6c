"""Independent verifier: re-derive every constraint from the design and the instance.

It reads only the design (counts of what is bought, each job's layout) and the instance; it
re-runs the performance model on each layout and recomputes power, racks, fabric, storage and
cost with its own arithmetic (not the MIP's expressions), then compares with what the solver
reported. Any violation raises `VerificationError` listing all of them.
"""

from __future__ import annotations

import math

import numpy as np

from models.candidates import checkpoint_write_gbps, effective_days, read_gbps, storage_usable_tb
from models.network import fat_tree, tier_capacity
from models.presets import resolve_model
from models.schema import ANY_REGION, Instance
from models.perf.training import evaluate_layout

from .solution import Solution

REL_TOL = 1e-6
# Solvers meet constraints to ~1e-6 in scaled units; continuous sizing is checked at this slack.
FEAS_TOL = 1e-5


class VerificationError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("design failed verification:\n" + "\n".join(f"  - {p}" for p in problems))


def _close(a: float, b: float, rel: float = REL_TOL, abs_: float = 1e-6) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def _batch_in(spec, gb: int) -> bool:
    lo, hi = (spec, spec) if isinstance(spec, int) else (spec.min, spec.max)
    return lo <= gb <= hi


def recompute_job(instance: Instance, job_name: str, layout: dict) -> dict:
    """The performance model on one layout: days (with checkpoint stalls), memory, nodes, rates."""
    job = next(w for w in instance.training_jobs if w.name == job_name)
    cat = instance.catalog
    dims = resolve_model(job.model, job.seq_len)
    acc, fab = cat.accelerators[layout["accelerator"]], cat.fabrics[layout["fabric"]]
    r = evaluate_layout(dims, layout, acc, fab, cat.calibration, job.precision, job.global_batch, tokens=job.tokens)
    r["days"] = float(effective_days(job, r["time_to_train_days"]))
    r["read_gbps"] = float(read_gbps(job, r["tokens_per_s"]))
    r["usable_tb"] = storage_usable_tb(job, dims)
    r["write_gbps"] = checkpoint_write_gbps(job, dims)
    r["endpoints"] = int(r["nodes"]) * acc.fabric_ports_per_node
    return r


def recompute_replica(instance: Instance, svc, accelerator: str, tp: int, batch: int) -> dict:
    """The serving model on one replica layout: TTFT, TPOT, memory, requests/s."""
    from models.perf.inference import ServingGrid, evaluate_serving

    one = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
    grid = ServingGrid(acc=one(0), t=one(tp), batch=one(batch))
    perf = evaluate_serving(resolve_model(svc.model), grid, [instance.catalog.accelerators[accelerator]],
                            instance.catalog.calibration, svc.precision, svc.input_tokens, svc.output_tokens)
    return {k: float(v[0]) for k, v in perf.items()}


def verify_solution(instance: Instance, sol: Solution) -> None:
    """Raise VerificationError unless the design satisfies every limit of the instance."""
    problems: list[str] = []
    d = sol.design
    if d is None:
        raise VerificationError(["no design to verify"])
    cat, bud = instance.catalog, instance.budget
    sites = {s.name: s for s in instance.site_list}
    if {s.name for s in d.sites} != set(sites):
        problems.append(f"the design's sites {sorted(s.name for s in d.sites)} are not the instance's {sorted(sites)}")
        raise VerificationError(problems)
    one_facility = instance.sites is None
    # What each site must hold, recomputed from the jobs' layouts and the services' replicas.
    need_nodes = {n: {} for n in sites}  # site -> acc -> nodes
    need_endpoints = {n: {} for n in sites}  # site -> fabric -> endpoints
    usable_tb = {n: 0.0 for n in sites}
    need_gbps = {n: 0.0 for n in sites}
    used = {n: False for n in sites}

    # Jobs: layout valid, fits memory, meets deadline, numbers as reported.
    if sorted(j.name for j in sol.jobs) != sorted(w.name for w in instance.training_jobs):
        problems.append("the solution does not place every training job exactly once")
    if sorted(s.name for s in sol.services) != sorted(w.name for w in instance.services):
        problems.append("the solution does not serve every service")
    for j in sol.jobs:
        lay = {k: getattr(j, k) for k in ("accelerator", "fabric", "tp", "pp", "dp", "micro_batch", "vp", "recompute", "distributed_optimizer",
                                         "cp", "sharding", "global_batch", "stack")}
        w = next(w for w in instance.training_jobs if w.name == j.name)
        if j.site not in sites:
            problems.append(f"job {j.name}: placed at unknown site {j.site}")
            continue
        if w.accelerator and w.accelerator != j.accelerator:
            problems.append(f"job {j.name}: pinned to {w.accelerator} but runs on {j.accelerator}")
        if w.fabric and w.fabric != j.fabric:
            problems.append(f"job {j.name}: pinned to fabric {w.fabric} but uses {j.fabric}")
        if j.global_batch % (j.micro_batch * j.dp) or not _batch_in(w.global_batch, j.global_batch):
            problems.append(f"job {j.name}: global batch {j.global_batch} is not the job's ({w.global_batch}) "
                            "or not a multiple of micro-batch x dp")
        r = recompute_job(instance, j.name, lay)
        if not r["fits_memory"]:
            problems.append(f"job {j.name}: needs {r['memory_per_gpu_gb']:.1f} GB per accelerator, more than fits")
        if r["days"] > w.deadline_days * (1 + 1e-9):
            problems.append(f"job {j.name}: takes {r['days']:.3f} days, deadline {w.deadline_days} days")
        if not _close(r["days"], j.days) or int(r["nodes"]) != j.nodes:
            problems.append(f"job {j.name}: reported {j.days:.4f} days on {j.nodes} nodes, recomputed {r['days']:.4f} on {int(r['nodes'])}")
        site = j.site
        used[site] = True
        need_nodes[site][j.accelerator] = need_nodes[site].get(j.accelerator, 0) + int(r["nodes"])
        need_endpoints[site][j.fabric] = need_endpoints[site].get(j.fabric, 0) + r["endpoints"]
        usable_tb[site] += r["usable_tb"]
        need_gbps[site] += r["write_gbps"] + r["read_gbps"]

    # Services: every replica layout re-run through the serving model; SLOs, latency, memory, demand.
    serving_nodes_at = {n: {} for n in sites}  # site -> acc -> nodes dedicated to serving
    for sr in sol.services:
        svc = next(w for w in instance.services if w.name == sr.name)
        served: dict[str, float] = {}
        for g in sr.groups:
            where = f"service {sr.name} ({g.replicas} x {g.accelerator} tp={g.tp} batch={g.batch} at {g.site})"
            if g.site not in sites:
                problems.append(f"{where}: unknown site")
                continue
            if svc.accelerators and g.accelerator not in svc.accelerators:
                problems.append(f"{where}: {g.accelerator} is not among its allowed accelerators")
            r = recompute_replica(instance, svc, g.accelerator, g.tp, g.batch)
            if not r["fits_memory"]:
                problems.append(f"{where}: needs {r['memory_per_acc_gb']:.1f} GB per accelerator, more than fits")
            if r["ttft_s"] > svc.ttft_s * (1 + 1e-9):
                problems.append(f"{where}: TTFT {r['ttft_s']:.3f} s breaks the SLO of {svc.ttft_s} s")
            if r["tpot_s"] > svc.tpot_s * (1 + 1e-9):
                problems.append(f"{where}: TPOT {r['tpot_s'] * 1000:.1f} ms breaks the SLO of {svc.tpot_s * 1000:g} ms")
            for region, rps in g.regions.items():
                if region != ANY_REGION and not one_facility:
                    rtt = sites[g.site].latency_ms.get(region)
                    if rtt is None:
                        problems.append(f"{where}: serves {region}, to which the site has no route")
                    elif rtt / 1000 + r["ttft_s"] > svc.ttft_s * (1 + 1e-9):
                        problems.append(f"{where}: serves {region}, but RTT {rtt:g} ms + TTFT {r['ttft_s'] * 1000:.0f} ms "
                                        f"breaks the TTFT SLO of {svc.ttft_s * 1000:g} ms")
                served[region] = served.get(region, 0.0) + rps
            if not _close(r["requests_per_s"], g.requests_per_s_each):
                problems.append(f"{where}: reported {g.requests_per_s_each:.4f} req/s per replica, recomputed {r['requests_per_s']:.4f}")
            if sum(g.regions.values()) > g.replicas * r["requests_per_s"] * (1 + FEAS_TOL) + 1e-6:
                problems.append(f"{where}: assigned {sum(g.regions.values()):.3f} req/s, more than its "
                                f"{g.replicas * r['requests_per_s']:.3f} req/s of capacity")
            per_node = cat.accelerators[g.accelerator].accelerators_per_node
            need = math.ceil(g.replicas / max(1, per_node // g.tp)) * max(1, math.ceil(g.tp / per_node))
            if g.nodes < need:
                problems.append(f"{where}: {g.replicas} replicas of {g.tp} accelerators need {need} dedicated nodes, design has {g.nodes}")
            serving_nodes_at[g.site][g.accelerator] = serving_nodes_at[g.site].get(g.accelerator, 0) + g.nodes
            used[g.site] = True
        for region, demand in svc.regional_demand_rps.items():
            if served.get(region, 0.0) < demand * (1 - FEAS_TOL):
                label = "" if region == ANY_REGION else f" in {region}"
                problems.append(f"service {sr.name}: replicas serve {served.get(region, 0.0):.3f} req/s{label}, demand is {demand:g}")
    for name, site in sites.items():
        serving_nodes = 0
        for acc, n in serving_nodes_at[name].items():
            need_nodes[name][acc] = need_nodes[name].get(acc, 0) + n
            serving_nodes += n
        if serving_nodes:
            need_endpoints[name][f"frontend:{site.frontend_fabric}"] = serving_nodes * site.frontend_ports_per_node

    # Per site: nodes, racks, fabrics, storage, power, cost.
    cap_total = {k: 0.0 for k in ("compute", "network", "storage", "racks", "cooling", "site")}
    energy = carbon = fac_total = 0.0
    for sd in d.sites:
        site = sites[sd.name]
        tag = "" if one_facility else f"site {sd.name}: "
        if used[sd.name] and not sd.open:
            problems.append(f"{tag}hosts workloads but is not open (its build-out is not paid)")
        for acc, n in need_nodes[sd.name].items():
            have = sum(sd.nodes.get(acc, {}).values())
            if have < n:
                problems.append(f"{tag}{acc}: workloads need {n} nodes, design buys {have}")
        node_kw = 0.0
        for acc, by_o in sd.nodes.items():
            a = cat.accelerators[acc]
            for o, n in by_o.items():
                node_kw += n * a.node_power_kw
                if o not in site.cooling:
                    problems.append(f"{tag}{acc}: placed in {o} racks, which the site does not offer")
                    continue
                if a.liquid_cooled_only and o == "air":
                    problems.append(f"{tag}{acc}: liquid-cooled only, placed in air racks")
                per_rack = min(math.floor(site.cooling[o].max_kw_per_rack / a.node_power_kw + 1e-9), site.rack_units_per_rack // a.node_rack_units)
                racks = sd.racks.get(acc, {}).get(o, 0)
                if per_rack < 1 or racks * per_rack < n:
                    problems.append(f"{tag}{acc} ({o}): {n} nodes need {math.ceil(n / max(per_rack, 1e-9))} racks at {per_rack} per rack, design has {racks}")
        if site.max_racks is not None and sd.total_racks > site.max_racks:
            problems.append(f"{tag}racks: {sd.total_racks} exceed the limit of {site.max_racks}")

        net_kw = net_usd = 0.0
        built = {f.name: f for f in sd.fabrics}
        for fab, ep in need_endpoints[sd.name].items():
            if fab not in built or built[fab].endpoints < ep:
                problems.append(f"{tag}fabric {fab}: workloads attach {ep} endpoints, design has {built[fab].endpoints if fab in built else 0}")
        for f in sd.fabrics:
            spec = cat.frontend_fabrics[f.name.split(":", 1)[1]] if f.name.startswith("frontend:") else cat.fabrics[f.name]
            if f.tiers < 1 or f.endpoints > tier_capacity(f.tiers, spec.switch_radix, spec.oversubscription):
                problems.append(f"{tag}fabric {f.name}: {f.endpoints} endpoints do not fit {f.tiers} tiers of radix {spec.switch_radix}")
                continue
            ref = fat_tree(f.endpoints, spec.switch_radix, spec.oversubscription, tiers=f.tiers)
            for part in ("leaves", "aggregation", "spines", "optics"):
                if getattr(f, part) < getattr(ref, part):
                    problems.append(f"{tag}fabric {f.name}: {getattr(f, part)} {part}, a {f.tiers}-tier fat-tree needs {getattr(ref, part)}")
            net_kw += (f.switches * spec.switch_power_w + f.endpoints * spec.endpoint_power_w + f.optics * spec.optic_power_w) / 1000
            net_usd += f.switches * spec.switch_price_usd + f.endpoints * spec.endpoint_price_usd + f.optics * spec.optic_price_usd

        tiers = cat.storage
        cap = sum(tb / tiers[t].replication for t, tb in sd.storage_tb.items())
        bw = sum(tb * tiers[t].gbps_per_tb for t, tb in sd.storage_tb.items())
        if cap < usable_tb[sd.name] * (1 - FEAS_TOL) - 1e-6:
            problems.append(f"{tag}storage: {cap:.2f} usable TB, jobs need {usable_tb[sd.name]:.2f}")
        if bw < need_gbps[sd.name] * (1 - FEAS_TOL) - 1e-6:
            problems.append(f"{tag}storage: {bw:.2f} GB/s, jobs need {need_gbps[sd.name]:.2f} (checkpoint writes + data reads)")
        sto_kw = sum(tb * tiers[t].w_per_tb for t, tb in sd.storage_tb.items()) / 1000
        sto_usd = sum(tb * tiers[t].usd_per_tb for t, tb in sd.storage_tb.items())

        it_kw = node_kw + net_kw + sto_kw
        fac_kw = site.pue * it_kw
        if fac_kw > site.power_cap_mw * 1000 * (1 + FEAS_TOL):
            problems.append(f"{tag}power: facility {fac_kw / 1000:.3f} MW exceeds the cap of {site.power_cap_mw} MW")
        if not _close(it_kw, sd.it_power_kw, rel=1e-5, abs_=1e-3):
            problems.append(f"{tag}power: reported IT {sd.it_power_kw:.3f} kW, recomputed {it_kw:.3f} kW")

        cool_usd = {o: c.capex_usd_per_kw for o, c in site.cooling.items()}
        aux = min(cool_usd, key=lambda o: (cool_usd[o], o))
        capex = {
            "compute": sum(n * cat.accelerators[a].node_price_usd for a, by_o in sd.nodes.items() for n in by_o.values()),
            "network": net_usd,
            "storage": sto_usd,
            "racks": sd.total_racks * site.rack_capex_usd,
            "cooling": sum(n * cat.accelerators[a].node_power_kw * cool_usd.get(o, 0) for a, by_o in sd.nodes.items() for o, n in by_o.items())
            + (net_kw + sto_kw) * cool_usd[aux],
            "site": site.site_capex_usd if sd.open else 0.0,
        }
        for k, val in capex.items():
            cap_total[k] += val
        capex["total"] = sum(capex.values())
        for k, val in capex.items():
            if not _close(val, sd.capex_usd[k], rel=1e-5, abs_=1.0):
                problems.append(f"{tag}capex {k}: reported ${sd.capex_usd[k]:,.0f}, recomputed ${val:,.0f}")
        energy += fac_kw * 8760 * site.energy_usd_per_kwh
        carbon += fac_kw * 8760 * site.carbon_g_per_kwh / 1e6
        fac_total += fac_kw

    capex_total = sum(cap_total.values())
    for k, val in {**cap_total, "total": capex_total}.items():
        if not _close(val, d.capex_usd[k], rel=1e-5, abs_=1.0):
            problems.append(f"capex {k}: reported ${d.capex_usd[k]:,.0f}, recomputed ${val:,.0f}")
    if not _close(fac_total, d.facility_power_kw, rel=1e-5, abs_=1e-3):
        problems.append(f"power: reported facility {d.facility_power_kw:,.3f} kW, recomputed {fac_total:,.3f} kW")
    if bud.capex_usd is not None and capex_total > bud.capex_usd * (1 + FEAS_TOL):
        problems.append(f"capex ${capex_total:,.0f} exceeds the budget of ${bud.capex_usd:,.0f}")
    if bud.carbon_cap_t_per_year is not None and carbon > bud.carbon_cap_t_per_year * (1 + FEAS_TOL):
        problems.append(f"carbon {carbon:,.1f} tCO2/yr exceeds the cap of {bud.carbon_cap_t_per_year:,.1f}")
    maint = capex_total * bud.maintenance_pct_per_year / 100
    carbon_usd = carbon * bud.carbon_price_usd_per_t
    tco = capex_total + bud.horizon_years * (energy + maint + carbon_usd)
    if not _close(tco, d.tco_usd, rel=1e-5, abs_=1.0):
        problems.append(f"TCO: reported ${d.tco_usd:,.0f}, recomputed ${tco:,.0f}")

    obj = {"min_tco": tco, "min_capex": capex_total, "min_power": fac_total, "min_carbon": carbon,
           "min_time": sum(j.days for j in sol.jobs)}[instance.objective]
    if sol.objective_value is not None and not _close(obj, sol.objective_value, rel=1e-5, abs_=1e-3):
        problems.append(f"objective {instance.objective}: reported {sol.objective_value:,.4f}, recomputed {obj:,.4f}")
    if problems:
        raise VerificationError(problems)
