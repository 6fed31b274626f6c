"""Inference services: each region's demand met by whole serving units that reach it within the
TTFT SLO; a unit is one node dedicated to one layout of one service."""

from __future__ import annotations

import math

import numpy as np

from models.candidates import serving_fabric
from models.perf.inference import ServingGrid, evaluate_serving, tp_domain
from models.presets import resolve_model
from models.schema import ANY_REGION, Instance

from optimizer.mip.audit import FEAS_TOL, Audit
from optimizer.mip.data import MipData
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars


INTEGER_NODES = True


def _caps(d: MipData, s, lay, svc) -> dict[str, float]:
    """Region -> requests/s per replica of this layout at this site (reachable regions only)."""
    if lay.reach:
        return dict(lay.reach.get(s.name, {}))
    return {r: lay.requests_per_s for r in sorted(svc.demand_rps) if d.serves(s, r, lay, svc)}


def add_serving(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (1b): each region's demand of each service is met by replicas that reach it within
    the TTFT SLOs; a replica's requests/s (at the load its percentile SLOs allow) are split over the
    regions it reaches; replicas of different accelerator types and sites may be mixed (Melange).
    Disaggregated services: prefill replicas carry the regions' requests, and the decode replicas at
    the same site must take every prompt they prefill. Constraint (1c), packing: the replicas of
    every service and layout at a site share whole nodes of their accelerator type."""
    multi = len(d.sites) > 1
    slots: dict[tuple[str, str], list] = {}  # (acc, site) -> [(slots, var)]
    unit_cap: dict[tuple[str, int, str], float] = {}  # (svc, layout pos, site) -> requests/s per replica, all regions
    for svc in d.services:
        by_region: dict[str, list] = {r: [] for r in svc.demand_rps}
        total = sum(svc.demand_rps.values())
        for s in d.sites:
            prefilled, decoding = [], []
            for k, lay in enumerate(svc.layouts):
                rent = dict(procurement="rent") if lay.rented else {}
                coords = dict(svc=svc.name, layout=lay.index, role=lay.role, site=s.name, **rent)
                ep = dict(ep=lay.ep) if lay.ep > 1 else {}
                name = K("replicas", svc=svc.name, acc=lay.accelerator, tp=lay.tp, **ep, batch=lay.batch, role=lay.role,
                         site=s.name, **rent)
                if lay.role == "decode":
                    if lay.requests_per_s <= 0:
                        continue
                    x = m.add_var(name, lb=0, ub=math.ceil(total / lay.requests_per_s - 1e-9), integer=True)
                    decoding.append(lay.requests_per_s * x)
                    unit_cap[svc.name, k, s.name] = lay.requests_per_s
                else:
                    caps = _caps(d, s, lay, svc)
                    if not caps:
                        continue
                    cap = min(caps.values())
                    spare = svc.spare_rps or {}  # N+k capacity held on top (families/resilience.py)
                    x = m.add_var(name, lb=0, ub=math.ceil(sum(svc.demand_rps[r] + spare.get(r, 0.0) for r in caps) / cap
                                                            - 1e-9), integer=True)
                    flows = []
                    for r in sorted(caps):
                        f = m.add_var(K("served", **coords, region=r), lb=0.0, ub=svc.demand_rps[r])
                        v.served[svc.name, k, s.name, r] = f
                        by_region[r].append(f)
                        flows.append(f)
                    m.add_constraint(lin_sum(flows) <= cap * x, K("serving_capacity", **coords))
                    unit_cap[svc.name, k, s.name] = cap
                    if lay.role == "prefill":
                        prefilled += flows
                v.units[svc.name, k, s.name] = x
                if not lay.rented:  # rented capacity sits in the cloud near the site: no nodes to pack
                    slots.setdefault((lay.accelerator, s.name), []).append((lay.slots, x))
            if prefilled or decoding:
                m.add_constraint(lin_sum(prefilled) <= lin_sum(decoding), K("decode_takes_prefills", svc=svc.name,
                                                                          site=s.name))
        for r, demand in sorted(svc.demand_rps.items()):
            m.add_constraint(lin_sum(by_region[r]) >= demand, K("demand", svc=svc.name, region=r))
        _serving_unit_floors(m, v, svc, unit_cap)
    per_node = {a.name: a.per_node for a in d.accelerators}
    for (acc, site), xs in sorted(slots.items()):
        n = per_node[acc]
        most = math.ceil(sum(sl * x.ub for sl, x in xs) / n - 1e-9)
        nodes = m.add_var(K("serving_node_count", acc=acc, site=site), lb=0, ub=most, integer=INTEGER_NODES)
        v.serving_node_count[acc, site] = nodes
        if multi:  # replicas sit in these nodes, so this keeps them at open sites too
            m.add_constraint(nodes <= most * v.site_open[site], K("serving_at_open_site", acc=acc, site=site))
        # Not tightened by nodes <= (used + n - 1) / n: that row made CBC three times slower.
        m.add_constraint(lin_sum(sl * x for sl, x in xs) <= n * nodes, K("serving_packing", acc=acc, site=site))
    _serving_node_floors(m, d, v)


def _serving_node_floors(m: Model, d: MipData, v: Vars) -> None:
    """Valid inequalities on the packed nodes: a node splits its accelerators between services, and
    a service's share f of a node serves at most f times its best requests/s per node, so the nodes
    at the sites that reach a region number at least the sum over services of demand / best per
    node, rounded up (each service alone, and all of a region's services together; decode replicas
    left out, which only weakens the bound). Without them the LP buys an eighth of a node at an
    edge site and the solvers branch for tens of seconds to close the gap."""
    demand: dict[str, list[tuple[float, float, set]]] = {}  # region -> [(demand, best rps/node, sites)]
    for svc in d.services:
        if any(lay.rented for lay in svc.layouts):
            continue  # rented replicas carry demand without nodes or an open site: no floor holds
        for r, dem in sorted(svc.demand_rps.items()):
            best, sites = 0.0, set()
            for (name, k, site), _ in v.units.items():
                lay = svc.layouts[k] if name == svc.name else None
                if lay is None or lay.role == "decode" or (name, k, site, r) not in v.served:
                    continue
                cap = min(_caps(d, next(s for s in d.sites if s.name == site), lay, svc).values())
                best = max(best, cap * lay.per_node / lay.slots)
                sites.add(site)
            if best > 0:
                demand.setdefault(r, []).append((dem, best, sites, svc.name))
    nodes_at = lambda sites: [n for (_, s), n in sorted(v.serving_node_count.items()) if s in sites]  # noqa: E731
    for r, rows in sorted(demand.items()):
        groups = [[row] for row in rows] + ([rows] if len(rows) > 1 else [])
        for g in groups:
            need = math.ceil(sum(dem / best for dem, best, _, _ in g) - 1e-9)
            sites = set().union(*(row[2] for row in g))
            if need >= 1:
                label = g[0][3] if len(g) == 1 else "all"
                m.add_constraint(lin_sum(nodes_at(sites)) >= need, K("serving_nodes_floor", svc=label, region=r))
    # And some site that reaches a region is built (binding when only edge sites meet a tight TTFT).
    if len(d.sites) > 1:
        for r, rows in sorted(demand.items()):
            for _, _, sites, name in rows:
                if len(sites) < len(d.sites):
                    m.add_constraint(lin_sum(v.site_open[s] for s in sorted(sites)) >= 1,
                                     K("serving_site_floor", svc=name, region=r))


def _serving_unit_floors(m: Model, v: Vars, svc, unit_cap=None) -> None:
    """Valid inequalities: the replicas that take a region's requests (combined or prefill), and
    all of them, number at least the demand over the largest replica's requests/s, rounded up; a
    service that must disaggregate needs as many decode replicas likewise. Implied by integrality
    but not by the LP relaxation, which would otherwise serve a small service with a tenth of a replica.
    Each floor gets a rounding row beside it (`serving_units_rounding`, _rounding_cut)."""
    def floor_cut(keys, demand, key):
        keys = list(keys)
        if not keys:
            return
        biggest = max(svc.layouts[k].requests_per_s for (_, k, _) in keys)
        need = math.ceil(demand / biggest - 1e-9) if biggest > 0 else 0
        if need >= 1:
            m.add_constraint(lin_sum(v.units[x] for x in keys) >= need, key)
            if unit_cap:
                _rounding_cut(m, v, {x: unit_cap[x] for x in keys}, demand, K("serving_units_rounding", *key.index,
                                                                              **dict(key.coords)))

    mine = [key for key in v.units if key[0] == svc.name]
    front = [key for key in mine if svc.layouts[key[1]].role != "decode"]
    floor_cut(front, sum(svc.demand_rps.values()), K("serving_units_floor", svc=svc.name))
    if len(svc.demand_rps) > 1:
        for r, demand in sorted(svc.demand_rps.items()):
            reach = [key for key in front if (svc.name, key[1], key[2], r) in v.served]
            floor_cut(reach, demand, K("serving_units_floor", svc=svc.name, region=r))
    if not any(svc.layouts[key[1]].role == "combined" for key in mine):
        decode = [key for key in mine if svc.layouts[key[1]].role == "decode"]
        floor_cut(decode, sum(svc.demand_rps.values()), K("serving_units_floor", svc=svc.name, role="decode"))


def _rounding_cut(m: Model, v: Vars, caps: dict, demand: float, key) -> None:
    """The mixed-integer rounding of `sum_u Q_u units_u >= D` (each replica serves at most Q_u
    requests/s over all the regions it takes): with `b = D / Q_max` and `f = b - floor(b)`,
    `sum_u min(1, (Q_u / Q_max) / f) units_u >= ceil(b)`. Stronger than the plain floor, whose
    coefficients are all 1: there the LP meets the replica count with a small layout's replica that
    carries a tenth of a big one's load (measured: 0.65 of an L4 replica beside 1.35 big ones)."""
    qmax = max(caps.values())
    if qmax <= 0:
        return
    b = demand / qmax
    need, f = math.ceil(b - 1e-9), b - math.floor(b + 1e-9)
    if need < 1 or f < 1e-6:
        return  # b whole: the rounding is the floor itself
    coefs = {x: min(1.0, q / qmax / f) for x, q in caps.items()}
    if all(c >= 1.0 - 1e-12 for c in coefs.values()):
        return
    m.add_constraint(lin_sum((c, v.units[x]) for x, c in coefs.items()) >= need, key)


def serving_nodes_expr(d: MipData, v: Vars, acc: str, site: str):
    """Nodes the serving replicas of one accelerator type occupy at a site (packed, integer)."""
    n = v.serving_node_count.get((acc, site))
    return n + 0 if n is not None else lin_sum([])


def serving_nodes_ub(d: MipData, v: Vars, site: str, acc: str | None = None) -> float:
    """The most serving nodes a site can hold (of one accelerator type, or of all)."""
    return sum(n.ub for (a, s), n in v.serving_node_count.items() if s == site and acc in (None, a))


def recompute_replica(instance: Instance, svc, accelerator: str, tp: int, batch: int, ep: int = 1) -> dict:
    """The serving model on one replica layout: TTFT, TPOT, memory, requests/s (`ep` > 1: the
    experts of a mixture spread over the replica's tp accelerators, attention data-parallel)."""
    one = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
    cat, dims = instance.catalog, resolve_model(svc.model)
    grid = ServingGrid(acc=one(0), t=one(tp), batch=one(batch), ep=one(ep) if dims.is_moe else None)
    fab = serving_fabric(accelerator, cat) if dims.is_moe else None
    perf = evaluate_serving(dims, grid, [cat.accelerators[accelerator]], cat.calibration, svc.precision,
                            svc.input_tokens, svc.output_tokens, fabrics=[None if fab is None else cat.fabrics[fab]])
    return {k: float(v[0]) for k, v in perf.items()}


def group_latency(instance: Instance, svc, g) -> dict:
    """A group re-run through the serving and queueing models at the load it carries per replica:
    the replica's idle figures (recompute_replica) plus utilization, ttft/tpot p50/p99 (TTFT without
    the round trip), kv_transfer_s and, for prefill, prefill_s."""
    from models.perf.inference import replica_times
    from models.perf.pools import (decode_only_times, kv_bytes_per_request, prefill_latency, prefill_only_s)
    from models.perf.queueing import latency
    from optimizer.mip.serving_pools import kv_link_gbs

    r = recompute_replica(instance, svc, g.accelerator, g.tp, g.batch, g.ep)
    perf = {k: np.array([x]) for k, x in r.items()}
    load = sum(g.regions.values()) / g.replicas if g.replicas else 0.0
    out = dict(r, load_rps=load, kv_transfer_s=0.0)
    if g.role == "prefill":
        site = next(s for s in instance.site_list if s.name == g.site)
        per_node = instance.catalog.accelerators[g.accelerator].accelerators_per_node
        link = kv_link_gbs(site, instance.catalog, g.tp, per_node) * 1e9
        out["kv_transfer_s"] = kv_bytes_per_request(resolve_model(svc.model), svc.precision, svc.input_tokens) / link
        out["kv_link_rps"] = link / kv_bytes_per_request(resolve_model(svc.model), svc.precision, svc.input_tokens)
        out["prefill_s"] = pre = float(prefill_only_s(perf)[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            lat = {k: float(x) for k, x in prefill_latency(pre, max(load, 1e-12)).items()}
        out.update(lat, tpot_p50_s=0.0, tpot_p99_s=0.0)
        return out
    batch = np.array([float(g.batch)])
    rt = decode_only_times(perf, batch, svc.output_tokens) if g.role == "decode" else replica_times(
        perf, ServingGrid(acc=np.zeros(1, dtype=np.int64), t=np.array([g.tp]), batch=np.array([g.batch])),
        svc.output_tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        out.update({k: float(x[0]) for k, x in latency(rt, max(load, 1e-12)).items()})
    return out


def _check_latency(a: Audit, svc, g, where: str, lat: dict) -> None:
    """Idle SLOs, percentile SLOs at the group's load (round trip included), reach and capacity."""
    from models.perf.pools import decode_ttft_allowance_s
    from optimizer.mip.serving_pools import tpot_budget_s

    tol = 1 + 1e-6
    idle_ttft = lat["prefill_s"] + lat["kv_transfer_s"] if g.role == "prefill" else lat["ttft_s"]
    idle_tpot = lat["decode_step_s"] if g.role == "decode" else lat["tpot_s"]
    if g.role != "decode" and idle_ttft > svc.ttft_s * (1 + 1e-9):
        a.problem(f"{where}: TTFT {idle_ttft:.3f} s breaks the SLO of {svc.ttft_s} s")
    if g.role != "prefill" and idle_tpot > svc.tpot_s * (1 + 1e-9):
        a.problem(f"{where}: TPOT {idle_tpot * 1000:.1f} ms breaks the SLO of {svc.tpot_s * 1000:g} ms")
    if lat["utilization"] > 1 + FEAS_TOL:
        cap = lat["load_rps"] / lat["utilization"]
        a.problem(f"{where}: assigned {lat['load_rps'] * g.replicas:.3f} req/s, more than its "
                  f"{cap * g.replicas:.3f} req/s of capacity")
        return
    if lat["utilization"] >= 1 - 1e-9 and not svc.percentile_slos and g.role != "decode":
        return  # sized at full load, as the idle SLOs allow
    allow = decode_ttft_allowance_s(tpot_budget_s(svc))
    if g.role == "decode":
        if lat["ttft_p99_s"] > allow * tol:
            a.problem(f"{where}: adds {lat['ttft_p99_s'] * 1000:.1f} ms (p99) to TTFT, more than its "
                      f"allowance of {allow * 1000:g} ms")
    for key, limit in svc.percentile_slos.items():
        if key.startswith("tpot") and g.role != "prefill" and lat[key] > limit * tol:
            a.problem(f"{where}: {key[:-2]} {lat[key] * 1000:.1f} ms at {lat['utilization']:.0%} load breaks "
                      f"the SLO of {limit * 1000:g} ms")
        if key.startswith("ttft") and g.role != "decode":
            extra = lat["kv_transfer_s"] + (allow if g.role == "prefill" else 0.0)
            for region in g.regions:
                rtt = 0.0 if region == ANY_REGION or a.one_facility else a.sites[g.site].latency_ms.get(region, 0.0) / 1000
                if rtt + lat[key] + extra > limit * tol:
                    a.problem(f"{where}: {key[:-2]} {(rtt + lat[key] + extra) * 1000:.0f} ms for {region} at "
                              f"{lat['utilization']:.0%} load breaks the SLO of {limit * 1000:g} ms")
    if g.role == "prefill" and lat["load_rps"] > lat["kv_link_rps"] * tol:
        a.problem(f"{where}: ships {lat['load_rps']:.2f} KV caches/s per replica, more than its front-end "
                  f"share carries ({lat['kv_link_rps']:.2f})")


def _check_wide_ep(a: Audit, inst: Instance, svc, g, where: str) -> None:
    """A replica wider than its scale-up domain (a mixture of experts' wide EP) takes whole nodes,
    each attaching its fabric ports to a compatible scale-out fabric at the site; recorded as
    endpoints that fabric must hold (check_fabric)."""
    from models.schema import compatible

    cat = inst.catalog
    spec = cat.accelerators[g.accelerator]
    if not resolve_model(svc.model).is_moe:
        a.problem(f"{where}: a replica wider than the {tp_domain(spec)}-accelerator scale-up domain needs a "
                  "mixture-of-experts model (wide expert parallelism)")
    if g.tp % spec.accelerators_per_node:
        a.problem(f"{where}: a replica across scale-up domains must be whole nodes of {spec.accelerators_per_node}")
    if g.fabric is None or g.fabric not in cat.fabrics or not compatible(g.accelerator, spec, g.fabric, cat.fabrics[g.fabric]):
        a.problem(f"{where}: spans {g.tp // spec.accelerators_per_node} nodes but names no compatible scale-out "
                  f"fabric (got {g.fabric!r})")
        return
    need = g.replicas * (g.tp // spec.accelerators_per_node) * spec.fabric_ports_per_node
    a.need_endpoints[g.site][g.fabric] = a.need_endpoints[g.site].get(g.fabric, 0) + need


def check_serving(a: Audit) -> None:
    """Every replica group re-run through the serving and queueing models at its load: idle and
    percentile SLOs, latency reach, memory, KV transfer; decode pools take their site's prefills;
    each region's demand met; replicas packed into whole nodes. Records the serving nodes per site."""
    inst, sol = a.instance, a.sol
    cat = inst.catalog
    if sorted(s.name for s in sol.services) != sorted(w.name for w in inst.services):
        a.problem("the solution does not serve every service")
    slots: dict[str, dict[str, int]] = {name: {} for name in a.sites}
    for sr in sol.services:
        svc = next(w for w in inst.services if w.name == sr.name)
        served: dict[str, float] = {}
        pools: dict[str, list[float]] = {}  # site -> [prefilled, decoded] requests/s
        for g in sr.groups:
            where = f"service {sr.name} ({g.replicas} x {g.accelerator} tp={g.tp} batch={g.batch} {g.role} at {g.site})"
            if g.site not in a.sites:
                a.problem(f"{where}: unknown site")
                continue
            if g.role not in ("combined", "prefill", "decode"):
                a.problem(f"{where}: role {g.role!r}, expected combined, prefill or decode")
                continue
            if g.role != "combined" and svc.disaggregated is False:
                a.problem(f"{where}: the service is not disaggregated")
            if g.role == "combined" and svc.disaggregated is True:
                a.problem(f"{where}: the service must be disaggregated")
            if svc.accelerators and g.accelerator not in svc.accelerators:
                a.problem(f"{where}: {g.accelerator} is not among its allowed accelerators")
            if g.replicas < 1:
                a.problem(f"{where}: assigned {sum(g.regions.values()):.3f} req/s, more than its 0 req/s of capacity")
                continue
            lat = group_latency(inst, svc, g)
            if not lat["fits_memory"]:
                a.problem(f"{where}: needs {lat['memory_per_acc_gb']:.1f} GB per accelerator, more than fits")
            _check_latency(a, svc, g, where, lat)
            idle_ttft = lat["prefill_s"] + lat["kv_transfer_s"] if g.role == "prefill" else lat["ttft_s"]
            for region, rps in g.regions.items():
                if region != ANY_REGION and not a.one_facility and g.role != "decode":
                    rtt = a.sites[g.site].latency_ms.get(region)
                    if rtt is None:
                        a.problem(f"{where}: serves {region}, to which the site has no route")
                    elif rtt / 1000 + idle_ttft > svc.ttft_s * (1 + 1e-9):
                        a.problem(f"{where}: serves {region}, but RTT {rtt:g} ms + TTFT {idle_ttft * 1000:.0f} ms "
                                  f"breaks the TTFT SLO of {svc.ttft_s * 1000:g} ms")
                if g.role != "decode":
                    served[region] = served.get(region, 0.0) + rps
            pool = pools.setdefault(g.site, [0.0, 0.0])
            if g.role == "prefill":
                pool[0] += sum(g.regions.values())
            elif g.role == "decode":
                pool[1] += sum(g.regions.values())
            per_node = cat.accelerators[g.accelerator].accelerators_per_node
            spec, mode = cat.accelerators[g.accelerator], inst.procurement_of(svc)
            if g.procurement == "rent":
                if mode == "own" or not spec.rentable:
                    a.problem(f"{where}: rented, but its procurement is {mode} / {g.accelerator} has no rental price")
                continue  # cloud capacity near the site: no nodes, power or racks there
            if mode == "rent" or not spec.buyable:
                a.problem(f"{where}: owned, but its procurement is {mode} / {g.accelerator} is {spec.purchase_unit}")
            if g.tp > tp_domain(spec):  # wide EP across domains: its nodes' ports on the fabric between them
                _check_wide_ep(a, inst, svc, g, where)
            t = g.tp if per_node % g.tp == 0 or g.tp % per_node == 0 else per_node * -(-g.tp // per_node)
            slots[g.site][g.accelerator] = slots[g.site].get(g.accelerator, 0) + g.replicas * t
            a.used[g.site] = True
        for site, (pre, dec) in sorted(pools.items()):
            if pre > dec * (1 + FEAS_TOL) + 1e-6:
                a.problem(f"service {sr.name} at {site}: prefill replicas pass {pre:.3f} req/s to decode replicas "
                          f"that take {dec:.3f}")
        for region, demand in svc.regional_demand_rps.items():
            if served.get(region, 0.0) < demand * (1 - FEAS_TOL):
                label = "" if region == ANY_REGION else f" in {region}"
                a.problem(f"service {sr.name}: replicas serve {served.get(region, 0.0):.3f} req/s{label}, demand is {demand:g}")
    for name in a.sites:  # their front-end ports: check_fabric, with every other owned node's
        for acc, used in sorted(slots[name].items()):
            # Replica sizes divide the node (or are whole nodes), so the total packs exactly.
            n = math.ceil(used / cat.accelerators[acc].accelerators_per_node - 1e-9)
            a.serving_nodes[name][acc] = n
            a.need_nodes[name][acc] = a.need_nodes[name].get(acc, 0) + n
