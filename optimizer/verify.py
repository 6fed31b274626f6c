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
from models.schema import Instance
from models.training import RECOMPUTE, ConfigGrid, evaluate

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


def recompute_job(instance: Instance, job_name: str, layout: dict) -> dict:
    """The performance model on one layout: days (with checkpoint stalls), memory, nodes, rates."""
    job = next(w for w in instance.training_jobs if w.name == job_name)
    cat = instance.catalog
    dims = resolve_model(job.model, job.seq_len)
    acc, fab = cat.accelerators[layout["accelerator"]], cat.fabrics[layout["fabric"]]
    one = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
    grid = ConfigGrid(
        acc=one(0), fab=one(0), t=one(layout["tp"]), p=one(layout["pp"]), d=one(layout["dp"]), b=one(layout["micro_batch"]),
        v=one(layout["vp"]), recompute=one(RECOMPUTE.index(layout["recompute"])),
        dist_opt=np.array([layout["distributed_optimizer"]], dtype=bool),
    )
    perf = evaluate(dims, grid, [acc], [fab], cat.calibration, job.precision, job.global_batch, tokens=job.tokens)
    r = {k: float(v[0]) for k, v in perf.items()}
    r["days"] = float(effective_days(job, r["time_to_train_days"]))
    r["read_gbps"] = float(read_gbps(job, r["tokens_per_s"]))
    r["usable_tb"] = storage_usable_tb(job, dims)
    r["write_gbps"] = checkpoint_write_gbps(job, dims)
    r["endpoints"] = int(r["nodes"]) * acc.fabric_ports_per_node
    return r


def recompute_replica(instance: Instance, svc, accelerator: str, tp: int, batch: int) -> dict:
    """The serving model on one replica layout: TTFT, TPOT, memory, requests/s."""
    from models.inference import ServingGrid, evaluate_serving

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
    cat, fac, bud = instance.catalog, instance.facility, instance.budget

    # Jobs: layout valid, fits memory, meets deadline, numbers as reported.
    need_nodes: dict[str, int] = {}
    need_endpoints: dict[str, int] = {}
    usable_tb = write_gbps = read_total = 0.0
    if {j.name for j in sol.jobs} != {w.name for w in instance.training_jobs}:
        problems.append("the solution does not place every training job exactly once")
    if {s.name for s in sol.services} != {w.name for w in instance.services}:
        problems.append("the solution does not serve every service")
    for j in sol.jobs:
        lay = {k: getattr(j, k) for k in ("accelerator", "fabric", "tp", "pp", "dp", "micro_batch", "vp", "recompute", "distributed_optimizer")}
        w = next(w for w in instance.training_jobs if w.name == j.name)
        if w.accelerator and w.accelerator != j.accelerator:
            problems.append(f"job {j.name}: pinned to {w.accelerator} but runs on {j.accelerator}")
        if w.fabric and w.fabric != j.fabric:
            problems.append(f"job {j.name}: pinned to fabric {w.fabric} but uses {j.fabric}")
        if w.global_batch % (j.micro_batch * j.dp):
            problems.append(f"job {j.name}: global batch {w.global_batch} is not a multiple of micro-batch x dp")
        r = recompute_job(instance, j.name, lay)
        if not r["fits_memory"]:
            problems.append(f"job {j.name}: needs {r['memory_per_gpu_gb']:.1f} GB per accelerator, more than fits")
        if r["days"] > w.deadline_days * (1 + 1e-9):
            problems.append(f"job {j.name}: takes {r['days']:.3f} days, deadline {w.deadline_days} days")
        if not _close(r["days"], j.days) or int(r["nodes"]) != j.nodes:
            problems.append(f"job {j.name}: reported {j.days:.4f} days on {j.nodes} nodes, recomputed {r['days']:.4f} on {int(r['nodes'])}")
        need_nodes[j.accelerator] = need_nodes.get(j.accelerator, 0) + int(r["nodes"])
        need_endpoints[j.fabric] = need_endpoints.get(j.fabric, 0) + r["endpoints"]
        usable_tb += r["usable_tb"]
        write_gbps += r["write_gbps"]
        read_total += r["read_gbps"]

    # Services: every replica layout re-run through the serving model; SLOs, memory, demand.
    serving_accs: dict[str, int] = {}
    for sr in sol.services:
        svc = next(w for w in instance.services if w.name == sr.name)
        served = 0.0
        for g in sr.groups:
            if svc.accelerators and g.accelerator not in svc.accelerators:
                problems.append(f"service {sr.name}: {g.accelerator} is not among its allowed accelerators")
            r = recompute_replica(instance, svc, g.accelerator, g.tp, g.batch)
            where = f"service {sr.name} ({g.replicas} x {g.accelerator} tp={g.tp} batch={g.batch})"
            if not r["fits_memory"]:
                problems.append(f"{where}: needs {r['memory_per_acc_gb']:.1f} GB per accelerator, more than fits")
            if r["ttft_s"] > svc.ttft_s * (1 + 1e-9):
                problems.append(f"{where}: TTFT {r['ttft_s']:.3f} s breaks the SLO of {svc.ttft_s} s")
            if r["tpot_s"] > svc.tpot_s * (1 + 1e-9):
                problems.append(f"{where}: TPOT {r['tpot_s'] * 1000:.1f} ms breaks the SLO of {svc.tpot_s * 1000:g} ms")
            if not _close(r["requests_per_s"], g.requests_per_s_each):
                problems.append(f"{where}: reported {g.requests_per_s_each:.4f} req/s per replica, recomputed {r['requests_per_s']:.4f}")
            served += g.replicas * r["requests_per_s"]
            serving_accs[g.accelerator] = serving_accs.get(g.accelerator, 0) + g.replicas * g.tp
        if served < svc.demand_rps * (1 - FEAS_TOL):
            problems.append(f"service {sr.name}: replicas serve {served:.3f} req/s, demand is {svc.demand_rps:g}")
    serving_nodes = 0
    for acc, n_acc in serving_accs.items():
        n = math.ceil(n_acc / cat.accelerators[acc].accelerators_per_node - 1e-9)
        need_nodes[acc] = need_nodes.get(acc, 0) + n
        serving_nodes += n
    if serving_nodes:
        fe = f"frontend:{fac.frontend_fabric}"
        need_endpoints[fe] = serving_nodes * fac.frontend_ports_per_node

    # Nodes and racks.
    for acc, n in need_nodes.items():
        if d.total_nodes(acc) < n:
            problems.append(f"{acc}: jobs need {n} nodes, design buys {d.total_nodes(acc)}")
    node_kw = 0.0
    for acc, by_o in d.nodes.items():
        a = cat.accelerators[acc]
        for o, n in by_o.items():
            node_kw += n * a.node_power_kw
            if o not in fac.cooling:
                problems.append(f"{acc}: placed in {o} racks, which the facility does not offer")
                continue
            if a.liquid_cooled_only and o == "air":
                problems.append(f"{acc}: liquid-cooled only, placed in air racks")
            per_rack = min(math.floor(fac.cooling[o].max_kw_per_rack / a.node_power_kw + 1e-9), fac.rack_units_per_rack // a.node_rack_units)
            racks = d.racks.get(acc, {}).get(o, 0)
            if per_rack < 1 or racks * per_rack < n:
                problems.append(f"{acc} ({o}): {n} nodes need {math.ceil(n / max(per_rack, 1e-9))} racks at {per_rack} per rack, design has {racks}")
    if fac.max_racks is not None and d.total_racks > fac.max_racks:
        problems.append(f"racks: {d.total_racks} exceed the facility's {fac.max_racks}")

    # Fabrics.
    net_kw = net_usd = 0.0
    built = {f.name: f for f in d.fabrics}
    for fab, ep in need_endpoints.items():
        if fab not in built or built[fab].endpoints < ep:
            problems.append(f"fabric {fab}: jobs attach {ep} endpoints, design has {built[fab].endpoints if fab in built else 0}")
    for f in d.fabrics:
        spec = cat.frontend_fabrics[f.name.split(":", 1)[1]] if f.name.startswith("frontend:") else cat.fabrics[f.name]
        if f.tiers < 1 or f.endpoints > tier_capacity(f.tiers, spec.switch_radix, spec.oversubscription):
            problems.append(f"fabric {f.name}: {f.endpoints} endpoints do not fit {f.tiers} tiers of radix {spec.switch_radix}")
            continue
        ref = fat_tree(f.endpoints, spec.switch_radix, spec.oversubscription, tiers=f.tiers)
        for part in ("leaves", "aggregation", "spines", "optics"):
            if getattr(f, part) < getattr(ref, part):
                problems.append(f"fabric {f.name}: {getattr(f, part)} {part}, a {f.tiers}-tier fat-tree needs {getattr(ref, part)}")
        net_kw += (f.switches * spec.switch_power_w + f.endpoints * spec.endpoint_power_w + f.optics * spec.optic_power_w) / 1000
        net_usd += f.switches * spec.switch_price_usd + f.endpoints * spec.endpoint_price_usd + f.optics * spec.optic_price_usd

    # Storage.
    tiers = cat.storage
    cap = sum(tb / tiers[s].replication for s, tb in d.storage_tb.items())
    bw = sum(tb * tiers[s].gbps_per_tb for s, tb in d.storage_tb.items())
    if cap < usable_tb * (1 - FEAS_TOL) - 1e-6:
        problems.append(f"storage: {cap:.2f} usable TB, jobs need {usable_tb:.2f}")
    if bw < (write_gbps + read_total) * (1 - FEAS_TOL) - 1e-6:
        problems.append(f"storage: {bw:.2f} GB/s, jobs need {write_gbps + read_total:.2f} (checkpoint writes + data reads)")
    sto_kw = sum(tb * tiers[s].w_per_tb for s, tb in d.storage_tb.items()) / 1000
    sto_usd = sum(tb * tiers[s].usd_per_tb for s, tb in d.storage_tb.items())

    # Power.
    it_kw = node_kw + net_kw + sto_kw
    fac_kw = fac.pue * it_kw
    if fac_kw > fac.power_cap_mw * 1000 * (1 + FEAS_TOL):
        problems.append(f"power: facility {fac_kw / 1000:.3f} MW exceeds the cap of {fac.power_cap_mw} MW")
    if not _close(it_kw, d.it_power_kw, rel=1e-5, abs_=1e-3):
        problems.append(f"power: reported IT {d.it_power_kw:.3f} kW, recomputed {it_kw:.3f} kW")

    # Cost.
    cool_usd = {o: c.capex_usd_per_kw for o, c in fac.cooling.items()}
    aux = min(cool_usd, key=lambda o: (cool_usd[o], o))
    capex = {
        "compute": sum(n * cat.accelerators[a].node_price_usd for a, by_o in d.nodes.items() for n in by_o.values()),
        "network": net_usd,
        "storage": sto_usd,
        "racks": d.total_racks * fac.rack_capex_usd,
        "cooling": sum(n * cat.accelerators[a].node_power_kw * cool_usd.get(o, 0) for a, by_o in d.nodes.items() for o, n in by_o.items())
        + (net_kw + sto_kw) * cool_usd[aux],
    }
    capex["total"] = sum(capex.values())
    for k, val in capex.items():
        if not _close(val, d.capex_usd[k], rel=1e-5, abs_=1.0):
            problems.append(f"capex {k}: reported ${d.capex_usd[k]:,.0f}, recomputed ${val:,.0f}")
    if bud.capex_usd is not None and capex["total"] > bud.capex_usd * (1 + FEAS_TOL):
        problems.append(f"capex ${capex['total']:,.0f} exceeds the budget of ${bud.capex_usd:,.0f}")
    energy = fac_kw * 8760 * fac.energy_usd_per_kwh
    maint = capex["total"] * bud.maintenance_pct_per_year / 100
    tco = capex["total"] + bud.horizon_years * (energy + maint)
    if not _close(tco, d.tco_usd, rel=1e-5, abs_=1.0):
        problems.append(f"TCO: reported ${d.tco_usd:,.0f}, recomputed ${tco:,.0f}")

    # Objective.
    obj = {"min_tco": tco, "min_capex": capex["total"], "min_power": fac_kw,
           "min_time": sum(j.days for j in sol.jobs)}[instance.objective]
    if sol.objective_value is not None and not _close(obj, sol.objective_value, rel=1e-5, abs_=1e-3):
        problems.append(f"objective {instance.objective}: reported {sol.objective_value:,.4f}, recomputed {obj:,.4f}")
    if problems:
        raise VerificationError(problems)
