"""Inference services: each region's demand met by whole serving units that reach it within the
TTFT SLO; a unit is one node dedicated to one layout of one service."""

from __future__ import annotations

import math

import numpy as np

from models.perf.inference import ServingGrid, evaluate_serving
from models.presets import resolve_model
from models.schema import ANY_REGION, Instance

from optimizer.mip.audit import FEAS_TOL, Audit, close
from optimizer.mip.data import MipData
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars


def add_serving(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (1b): each region's demand of each service is met by replicas that reach it within
    the TTFT SLO; a replica's requests/s are split over the regions it reaches; replicas of different
    accelerator types and sites may be mixed (Melange). Layouts that break an SLO never get here."""
    multi = len(d.sites) > 1
    for svc in d.services:
        by_region: dict[str, list] = {r: [] for r in svc.demand_rps}
        for s in d.sites:
            for k, lay in enumerate(svc.layouts):
                regions = [r for r in sorted(svc.demand_rps) if d.serves(s, r, lay, svc)]
                if not regions:
                    continue
                unit_rps = lay.unit_requests_per_s
                spare = svc.spare_rps or {}  # N+k capacity held on top (families/resilience.py)
                ub = math.ceil(sum(svc.demand_rps[r] + spare.get(r, 0.0) for r in regions) / unit_rps - 1e-9)
                rent = dict(procurement="rent") if lay.rented else {}
                x = m.add_var(K("units", svc=svc.name, acc=lay.accelerator, tp=lay.tp, batch=lay.batch, site=s.name, **rent),
                              lb=0, ub=ub, integer=True)
                v.units[svc.name, k, s.name] = x
                coords = dict(svc=svc.name, layout=lay.index, site=s.name, **rent)
                flows = []
                for r in regions:
                    f = m.add_var(K("served", **coords, region=r), lb=0.0, ub=svc.demand_rps[r])
                    v.served[svc.name, k, s.name, r] = f
                    by_region[r].append(f)
                    flows.append(f)
                m.add_constraint(lin_sum(flows) <= unit_rps * x, K("serving_capacity", **coords))
                if multi and not lay.rented:
                    m.add_constraint(x <= ub * v.site_open[s.name], K("serving_at_open_site", **coords))
        for r, demand in sorted(svc.demand_rps.items()):
            m.add_constraint(lin_sum(by_region[r]) >= demand, K("demand", svc=svc.name, region=r))
        _serving_unit_floors(m, v, svc)


def _serving_unit_floors(m: Model, v: Vars, svc) -> None:
    """Valid inequalities: the units that reach a region, and all units of the service, number at
    least the demand over the largest unit's requests/s, rounded up. Implied by integrality but not
    by the LP relaxation, which would otherwise serve a small service with a tenth of a node."""
    def floor_cut(keys, demand, key):
        keys = list(keys)
        if not keys:
            return
        biggest = max(svc.layouts[k].unit_requests_per_s for (_, k, _) in keys)
        need = math.ceil(demand / biggest - 1e-9)
        if need >= 1:
            m.add_constraint(lin_sum(v.units[x] for x in keys) >= need, key)

    mine = [key for key in v.units if key[0] == svc.name]
    floor_cut(mine, sum(svc.demand_rps.values()), K("serving_units_floor", svc=svc.name))
    if len(svc.demand_rps) > 1:
        for r, demand in sorted(svc.demand_rps.items()):
            reach = [key for key in mine if (svc.name, key[1], key[2], r) in v.served]
            floor_cut(reach, demand, K("serving_units_floor", svc=svc.name, region=r))


def _layout(d: MipData, svc_name: str, k: int):
    return next(s for s in d.services if s.name == svc_name).layouts[k]


def serving_nodes_expr(d: MipData, v: Vars, acc: str, site: str):
    """Nodes the serving units of one accelerator type occupy at a site."""
    return lin_sum(
        _layout(d, svc, k).nodes_per_unit * x for (svc, k, s), x in v.units.items()
        if s == site and _layout(d, svc, k).accelerator == acc and not _layout(d, svc, k).rented
    )


def serving_nodes_ub(d: MipData, v: Vars, site: str, acc: str | None = None) -> float:
    """The most serving nodes a site can hold (of one accelerator type, or of all)."""
    return sum(
        _layout(d, svc, k).nodes_per_unit * x.ub for (svc, k, s), x in v.units.items()
        if s == site and acc in (None, _layout(d, svc, k).accelerator) and not _layout(d, svc, k).rented
    )


def recompute_replica(instance: Instance, svc, accelerator: str, tp: int, batch: int) -> dict:
    """The serving model on one replica layout: TTFT, TPOT, memory, requests/s."""
    one = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
    grid = ServingGrid(acc=one(0), t=one(tp), batch=one(batch))
    perf = evaluate_serving(resolve_model(svc.model), grid, [instance.catalog.accelerators[accelerator]],
                            instance.catalog.calibration, svc.precision, svc.input_tokens, svc.output_tokens)
    return {k: float(v[0]) for k, v in perf.items()}


def check_serving(a: Audit) -> None:
    """Every replica layout re-run through the serving model: SLOs, latency reach, memory, capacity
    and dedicated nodes; each region's demand met. Records the serving nodes per site."""
    inst, sol = a.instance, a.sol
    cat = inst.catalog
    if sorted(s.name for s in sol.services) != sorted(w.name for w in inst.services):
        a.problem("the solution does not serve every service")
    for sr in sol.services:
        svc = next(w for w in inst.services if w.name == sr.name)
        served: dict[str, float] = {}
        for g in sr.groups:
            where = f"service {sr.name} ({g.replicas} x {g.accelerator} tp={g.tp} batch={g.batch} at {g.site})"
            if g.site not in a.sites:
                a.problem(f"{where}: unknown site")
                continue
            if svc.accelerators and g.accelerator not in svc.accelerators:
                a.problem(f"{where}: {g.accelerator} is not among its allowed accelerators")
            r = recompute_replica(inst, svc, g.accelerator, g.tp, g.batch)
            if not r["fits_memory"]:
                a.problem(f"{where}: needs {r['memory_per_acc_gb']:.1f} GB per accelerator, more than fits")
            if r["ttft_s"] > svc.ttft_s * (1 + 1e-9):
                a.problem(f"{where}: TTFT {r['ttft_s']:.3f} s breaks the SLO of {svc.ttft_s} s")
            if r["tpot_s"] > svc.tpot_s * (1 + 1e-9):
                a.problem(f"{where}: TPOT {r['tpot_s'] * 1000:.1f} ms breaks the SLO of {svc.tpot_s * 1000:g} ms")
            for region, rps in g.regions.items():
                if region != ANY_REGION and not a.one_facility:
                    rtt = a.sites[g.site].latency_ms.get(region)
                    if rtt is None:
                        a.problem(f"{where}: serves {region}, to which the site has no route")
                    elif rtt / 1000 + r["ttft_s"] > svc.ttft_s * (1 + 1e-9):
                        a.problem(f"{where}: serves {region}, but RTT {rtt:g} ms + TTFT {r['ttft_s'] * 1000:.0f} ms "
                                  f"breaks the TTFT SLO of {svc.ttft_s * 1000:g} ms")
                served[region] = served.get(region, 0.0) + rps
            if not close(r["requests_per_s"], g.requests_per_s_each):
                a.problem(f"{where}: reported {g.requests_per_s_each:.4f} req/s per replica, recomputed "
                          f"{r['requests_per_s']:.4f}")
            if sum(g.regions.values()) > g.replicas * r["requests_per_s"] * (1 + FEAS_TOL) + 1e-6:
                a.problem(f"{where}: assigned {sum(g.regions.values()):.3f} req/s, more than its "
                          f"{g.replicas * r['requests_per_s']:.3f} req/s of capacity")
            per_node = cat.accelerators[g.accelerator].accelerators_per_node
            need = math.ceil(g.replicas / max(1, per_node // g.tp)) * max(1, math.ceil(g.tp / per_node))
            if g.nodes < need:
                a.problem(f"{where}: {g.replicas} replicas of {g.tp} accelerators need {need} dedicated nodes, "
                          f"design has {g.nodes}")
            spec, mode = cat.accelerators[g.accelerator], inst.procurement_of(svc)
            if g.procurement == "rent":
                if mode == "own" or not spec.rentable:
                    a.problem(f"{where}: rented, but its procurement is {mode} / {g.accelerator} has no rental price")
                continue  # cloud capacity near the site: no nodes, power or racks there
            if mode == "rent" or not spec.buyable:
                a.problem(f"{where}: owned, but its procurement is {mode} / {g.accelerator} is {spec.purchase_unit}")
            a.serving_nodes[g.site][g.accelerator] = a.serving_nodes[g.site].get(g.accelerator, 0) + g.nodes
            a.used[g.site] = True
        for region, demand in svc.regional_demand_rps.items():
            if served.get(region, 0.0) < demand * (1 - FEAS_TOL):
                label = "" if region == ANY_REGION else f" in {region}"
                a.problem(f"service {sr.name}: replicas serve {served.get(region, 0.0):.3f} req/s{label}, demand is {demand:g}")
    for name in a.sites:  # their front-end ports: check_fabric, with every other owned node's
        for acc, n in a.serving_nodes[name].items():
            a.need_nodes[name][acc] = a.need_nodes[name].get(acc, 0) + n
