"""Serving that stays up: N+k spare replicas per region (`availability`) and the loss of any one
site (`survive_site_loss`). docs/reliability.md section 7 states the rules.

- N+k: per region r the replicas that reach it hold D_r + k_r x R_r requests/s (served plus
  `reserve`), k_r and R_r from models.facility.region_spares: losing any k_r replicas still
  leaves D_r.
- Site loss: per lost site L a separate split (`after_loss`) of the capacity of the units at
  the other sites covers every region's demand within latency (no N+k margin during the outage).

Both reuse the units of families/serving.py: a unit's requests/s bound each split separately.
The verifier re-solves the split as a max-flow over the design's replica groups, with capacities
and reach recomputed through the serving model, once per scenario.
"""

from __future__ import annotations

import math
from collections import deque

from models.candidates import service_table
from models.facility import region_spares
from models.schema import ANY_REGION

from optimizer.mip.audit import FEAS_TOL, Audit
from optimizer.mip.data import MipData
from optimizer.mip.families.serving import recompute_replica
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars


def _unit_keys(v: Vars, svc: str):
    return [key for key in v.units if key[0] == svc]


def _floor(m: Model, v: Vars, svc, keys, rps: float, key) -> None:
    """Valid inequality: the units in `keys` number at least `rps` over the largest unit's requests/s,
    rounded up (implied by the integers, not by the LP relaxation)."""
    if not keys:
        return
    need = math.ceil(rps / max(svc.layouts[k].unit_requests_per_s for (_, k, _) in keys) - 1e-9)
    if need >= 1:
        m.add_constraint(lin_sum(v.units[x] for x in keys) >= need, key)


def add_resilience(m: Model, d: MipData, v: Vars) -> None:
    for svc in d.services:
        keys = _unit_keys(v, svc.name)
        reached: dict[tuple, list[str]] = {}
        for (s2, k2, site2, r) in v.served:
            if s2 == svc.name:
                reached.setdefault((s2, k2, site2), []).append(r)
        regions = lambda key: reached.get(key, [])  # noqa: E731
        if svc.spare_rps and any(x > 0 for x in svc.spare_rps.values()):
            by_region: dict[str, list] = {r: [] for r in svc.demand_rps}
            for key in keys:
                _, k, site = key
                lay = svc.layouts[k]
                coords = dict(svc=svc.name, layout=lay.index, site=site)
                held = []
                for r in regions(key):
                    x = m.add_var(K("reserve", **coords, region=r), lb=0.0)
                    by_region[r].append(x)
                    held.append(x)
                served = [v.served[(*key, r)] for r in regions(key)]
                m.add_constraint(lin_sum(served) + lin_sum(held) <= lay.unit_requests_per_s * v.units[key],
                                 K("reserve_capacity", **coords))
            for r, need in sorted(svc.spare_rps.items()):
                if need > 0:
                    m.add_constraint(lin_sum(by_region[r]) >= need, K("spare_replicas", svc=svc.name, region=r))
                    _floor(m, v, svc, [key for key in keys if r in regions(key)], svc.demand_rps[r] + need,
                           K("spare_units_floor", svc=svc.name, region=r))
        if svc.survive_site_loss:
            for lost in d.sites:
                by_region = {r: [] for r in svc.demand_rps}
                for key in keys:
                    _, k, site = key
                    if site == lost.name:
                        continue
                    lay = svc.layouts[k]
                    coords = dict(svc=svc.name, layout=lay.index, site=site, lost=lost.name)
                    flows = []
                    for r in regions(key):
                        f = m.add_var(K("after_loss", **coords, region=r), lb=0.0, ub=svc.demand_rps[r])
                        by_region[r].append(f)
                        flows.append(f)
                    m.add_constraint(lin_sum(flows) <= lay.unit_requests_per_s * v.units[key],
                                     K("after_loss_capacity", **coords))
                for r, demand in sorted(svc.demand_rps.items()):
                    m.add_constraint(lin_sum(by_region[r]) >= demand, K("site_loss_demand", svc=svc.name, lost=lost.name, region=r))
                    _floor(m, v, svc, [key for key in keys if key[2] != lost.name and r in regions(key)], demand,
                           K("site_loss_units_floor", svc=svc.name, lost=lost.name, region=r))


def max_flow_shortfall(groups: list[tuple[float, set[str]]], demand: dict[str, float]) -> dict[str, float]:
    """Requests/s of each region left unserved by the best split of the groups' capacities over the
    regions each reaches (a transportation problem solved as a max-flow, Edmonds-Karp)."""
    regions = sorted(demand)
    n_g = len(groups)
    src, sink = 0, n_g + len(regions) + 1
    cap: dict[tuple[int, int], float] = {}
    adj: dict[int, set[int]] = {i: set() for i in range(sink + 1)}

    def edge(a, b, c):
        cap[a, b] = cap.get((a, b), 0.0) + c
        cap.setdefault((b, a), 0.0)
        adj[a].add(b)
        adj[b].add(a)

    for i, (c, reach) in enumerate(groups, start=1):
        edge(src, i, c)
        for j, r in enumerate(regions, start=n_g + 1):
            if r in reach:
                edge(i, j, float("inf"))
    for j, r in enumerate(regions, start=n_g + 1):
        edge(j, sink, demand[r])
    while True:
        parent = {src: None}
        queue = deque([src])
        while queue and sink not in parent:
            a = queue.popleft()
            for b in adj[a]:
                if b not in parent and cap[a, b] > 1e-12:
                    parent[b] = a
                    queue.append(b)
        if sink not in parent:
            break
        path, b = [], sink
        while parent[b] is not None:
            path.append((parent[b], b))
            b = parent[b]
        push = min(cap[e] for e in path)
        for a, b in path:
            cap[a, b] -= push
            cap[b, a] += push
    return {r: cap[j, sink] for j, r in enumerate(regions, start=n_g + 1)}


def check_resilience(a: Audit) -> None:
    """Per service with a target: its replica groups (capacity = replicas x requests/s, reach by
    RTT + TTFT, both recomputed) cover D_r + k_r R_r in every region, and, with survive_site_loss,
    cover D_r with each site removed in turn."""
    inst = a.instance
    for sr in a.sol.services:
        svc = next((w for w in inst.services if w.name == sr.name), None)
        if svc is None or (svc.availability is None and not svc.survive_site_loss):
            continue
        demand = svc.regional_demand_rps
        groups = []  # (site, capacity, regions reached)
        for g in sr.groups:
            r = recompute_replica(inst, svc, g.accelerator, g.tp, g.batch, g.ep)
            site = a.sites.get(g.site)
            if site is None:
                continue
            reach = {reg for reg in demand if reg == ANY_REGION or a.one_facility
                     or (reg in site.latency_ms and site.latency_ms[reg] / 1000 + r["ttft_s"] <= svc.ttft_s * (1 + 1e-9))}
            groups.append((g.site, g.replicas * r["requests_per_s"], reach))
        if svc.availability is not None:
            rule = region_spares(service_table(svc, inst.catalog), inst.catalog,
                                 None if a.one_facility else [s.latency_ms for s in inst.site_list])
            need = {reg: demand[reg] + rule.get(reg, {}).get("spare_rps", 0.0) for reg in demand}
            short = max_flow_shortfall([(c, reach) for _, c, reach in groups], need)
            for reg, x in sorted(short.items()):
                if x > need[reg] * FEAS_TOL + 1e-6:
                    k = rule.get(reg, {}).get("spares", 0)
                    a.problem(f"service {sr.name}: with {k} spare replicas for {reg} (availability {svc.availability:g}) "
                              f"it needs {need[reg]:.3f} req/s of capacity there, replicas can give {need[reg] - x:.3f}")
        if svc.survive_site_loss:
            for lost in sorted(a.sites):
                short = max_flow_shortfall([(c, reach) for site, c, reach in groups if site != lost], demand)
                for reg, x in sorted(short.items()):
                    if x > demand[reg] * FEAS_TOL + 1e-6:
                        label = "" if reg == ANY_REGION else f" in {reg}"
                        a.problem(f"service {sr.name}: after the loss of site {lost} only {demand[reg] - x:.3f} req/s{label} "
                                  f"can be served, demand is {demand[reg]:g}")
