"""A constructive start for the MIP: a complete, feasible assignment of its variables, or nothing.

The design decisions are made greedily, in the domain: each training job goes to its best candidate
(by the objective's estimate per node: price, power, cooling, energy, carbon) at the cheapest site
that still has power and racks for it; each region's demand of each service goes to the layout and
site that serve it cheapest per request/s (with the decode replicas a prefill layout needs, the
spare capacity of N+k services and a second site for services that must survive a site loss).
Those choices fix `site_open`, `choose`, `rent` and the replica counts; everything they imply
(nodes, racks, fabric depth and switches, storage, backup, named totals, flows) is then completed
by the same model with the decisions fixed, which presolve reduces to a small problem. If that
model is infeasible (a cap, budget or density the estimates missed), the greedy is repeated with
more headroom kept at every site and with capex- or carbon-driven scores, and if no attempt
completes the start is None: a start is only ever returned after every row, bound and integrality
of the original model holds at it (`Model.violations`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from optimizer.mip.data import MipData, SiteData
from optimizer.mip.lp import Model, Var
from optimizer.mip.vars import Vars

# Network and storage add to a site's node power; kept as headroom when filling a capped site.
OVERHEAD = 0.12
# (share of each site's power cap and racks the greedy may fill, score) per attempt.
ATTEMPTS = ((0.92, None), (0.75, None), (0.75, "min_capex"), (0.55, "min_carbon"), (0.4, "min_capex"))


@dataclass
class Start:
    values: list[float]  # by variable index, for the model it was built for
    objective: float  # MIP units
    seconds: float
    attempt: int  # which entry of ATTEMPTS completed


def fixed_copy(m: Model, fixed: dict[int, float]) -> Model:
    """A copy of `m` whose variables in `fixed` have lb = ub = the value; same indices and names."""
    c = Model(m.name + "[start]")
    for x in m.vars:
        if x.index in fixed:
            val = fixed[x.index]
            c.vars.append(Var(x.index, x.name, val, val, x.integer))
        else:
            c.vars.append(x)
    c._var_by_name = m._var_by_name
    c.constraints = m.constraints
    c._con_by_name = m._con_by_name
    c.objective, c.sense = m.objective, m.sense
    return c


class _Costs:
    """Per-node and per-unit estimates of the objective, in MIP units."""

    def __init__(self, d: MipData, objective: str):
        self.d, self.objective = d, objective
        self.acc = {a.name: a for a in d.accelerators}

    def node(self, acc: str, s: SiteData) -> float | None:
        """The objective's estimate for one node of `acc` at site `s` (None: no rack takes it there)."""
        a, d = self.acc[acc], self.d
        options = {o: n for o, n in s.nodes_per_rack.get(acc, {}).items() if n > 0}
        if not options:
            return None
        kw = a.node_power_kw * (1 + OVERHEAD)
        o, npr = min(options.items(), key=lambda on: (s.cooling_capex_musd_per_kw[on[0]] * kw + s.rack_capex_musd / on[1],
                                                       on[0]))
        capex = a.node_price_musd + kw * (s.cooling_capex_musd_per_kw[o] + s.facility_musd_per_kw) + s.rack_capex_musd / npr
        fac_kw = kw * s.pue
        if self.objective == "min_capex":
            return capex
        if self.objective == "min_power":
            return fac_kw + 1e-6 * capex
        if self.objective == "min_carbon":
            return fac_kw * s.carbon_t_per_kw_year + 1e-6 * capex
        h = d.horizon_years
        return capex * (1 + d.maintenance_fraction * h) + h * fac_kw * (
            s.energy_musd_per_kw_year + d.carbon_price_musd_per_t * s.carbon_t_per_kw_year)

    def site(self, s: SiteData) -> float:
        return s.site_capex_musd if self.objective in ("min_tco", "min_capex", "min_time") else 0.0

    def rent(self, musd: float) -> float:
        return musd if self.objective in ("min_tco", "min_time") else 0.0


class _Room:
    """What the greedy has put at each site: IT kW and racks against the share of the caps it may fill."""

    def __init__(self, d: MipData, share: float):
        self.kw = {s.name: 0.0 for s in d.sites}
        self.racks = {s.name: 0.0 for s in d.sites}
        self.cap_kw = {s.name: math.inf if s.power_cap_kw is None else share * s.power_cap_kw / s.pue for s in d.sites}
        self.cap_racks = {s.name: math.inf if s.max_racks is None else share * s.max_racks for s in d.sites}
        self.open: set[str] = set()

    def fits(self, s: SiteData, kw: float, racks: float) -> bool:
        return self.kw[s.name] + kw <= self.cap_kw[s.name] and self.racks[s.name] + racks <= self.cap_racks[s.name]

    def take(self, s: SiteData, kw: float, racks: float) -> None:
        self.kw[s.name] += kw
        self.racks[s.name] += racks
        self.open.add(s.name)


def _node_load(d: MipData, acc: str, s: SiteData, nodes: float) -> tuple[float, float]:
    kw = next(x.node_power_kw for x in d.accelerators if x.name == acc)
    npr = max((n for n in s.nodes_per_rack.get(acc, {}).values()), default=0)
    return nodes * kw * (1 + OVERHEAD), (nodes / npr if npr else math.inf)


def _place_jobs(d: MipData, v: Vars, costs: _Costs, room: _Room, fixed: dict[int, float]) -> bool:
    # Largest jobs first: they are the hardest to fit once the caps fill up.
    node_kw = {a.name: a.node_power_kw for a in d.accelerators}
    order = sorted(d.jobs, key=lambda j: -min((c.nodes * node_kw[c.accelerator] for c in j.candidates), default=0))
    by_job: dict[str, list[Var]] = {}
    for key, x in [*v.choose.items(), *v.rent.items()]:
        by_job.setdefault(key[0], []).append(x)
    for job in order:
        best = None
        for k, c in enumerate(job.candidates):
            for s in d.sites:
                per_node = costs.node(c.accelerator, s)
                if per_node is None:
                    continue
                kw, racks = _node_load(d, c.accelerator, s, c.nodes)
                if not room.fits(s, kw, racks):
                    continue
                score = c.nodes * per_node + (0.0 if s.name in room.open else costs.site(s))
                if costs.objective == "min_time":
                    score = c.days * 1e6 + score
                key = (score, k, s.name)
                if best is None or key < best[0]:
                    best = (key, ("own", k, s, kw, racks))
        for k, c in enumerate(job.rented):
            score = costs.rent(c.rent_musd) + (c.days * 1e6 if costs.objective == "min_time" else 0.0)
            key = (score, k, "")
            if best is None or key < best[0]:
                best = (key, ("rent", k, None, 0.0, 0.0))
        if best is None:
            return False
        kind, k, s, kw, racks = best[1]
        for x in by_job.get(job.name, []):
            fixed[x.index] = 0.0
        if kind == "own":
            fixed[v.choose[job.name, k, s.name].index] = 1.0
            room.take(s, kw, racks)
        else:
            fixed[v.rent[job.name, k].index] = 1.0
    return True


def _place_services(d: MipData, v: Vars, costs: _Costs, room: _Room, fixed: dict[int, float]) -> bool:
    from optimizer.mip.families.serving import _caps  # the model's own reach, so the start matches its rows

    sites = {s.name: s for s in d.sites}
    for svc in d.services:
        units: dict[tuple[int, str], float] = {}  # (layout pos, site) -> requests/s to carry
        decode = {}  # site -> (pos, rps per replica, cost per replica) of the cheapest decode layout
        for k, lay in enumerate(svc.layouts):
            if lay.role != "decode" or lay.requests_per_s <= 0:
                continue
            for s in d.sites:
                if (svc.name, k, s.name) not in v.units:
                    continue
                cost = _unit_cost(costs, lay, s)
                if cost is None:
                    continue
                per = cost / lay.requests_per_s
                if s.name not in decode or per < decode[s.name][2] / decode[s.name][1]:
                    decode[s.name] = (k, lay.requests_per_s, cost)
        options = []  # (pos, site, min cap, cost per rps, caps by region)
        for k, lay in enumerate(svc.layouts):
            if lay.role == "decode":
                continue
            for s in d.sites:
                if (svc.name, k, s.name) not in v.units:
                    continue
                caps = _caps(d, s, lay, svc)
                cost = _unit_cost(costs, lay, s)
                if not caps or cost is None or (lay.role == "prefill" and s.name not in decode):
                    continue
                cap = min(caps.values())
                per = cost / cap + (decode[s.name][2] / decode[s.name][1] if lay.role == "prefill" else 0.0)
                options.append((k, s.name, cap, per, caps))
        spare = svc.spare_rps or {}
        copies = 2 if svc.survive_site_loss and len(d.sites) > 1 else 1
        for r, demand in sorted(svc.demand_rps.items()):
            need = demand + spare.get(r, 0.0)
            used_sites: set[str] = set()
            for _ in range(copies):
                pick = None
                for k, site, cap, per, caps in options:
                    if r not in caps or site in used_sites:
                        continue
                    lay = svc.layouts[k]
                    extra = 0.0 if site in room.open or lay.rented else costs.site(sites[site]) / max(need / cap, 1.0)
                    kw, racks = (0.0, 0.0) if lay.rented else _node_load(d, lay.accelerator, sites[site],
                                                                         need / cap * lay.nodes_per_unit)
                    if not room.fits(sites[site], kw, racks):
                        continue
                    key = (per + extra / cap, k, site)
                    if pick is None or key < pick[0]:
                        pick = (key, k, site, cap, kw, racks)
                if pick is None:
                    return False
                _, k, site, cap, kw, racks = pick
                units[k, site] = units.get((k, site), 0.0) + need
                used_sites.add(site)
                if kw or not svc.layouts[k].rented:
                    room.take(sites[site], kw, racks)
        prefilled: dict[str, float] = {}
        for key, x in v.units.items():
            if key[0] == svc.name:
                fixed[x.index] = 0.0
        for (k, site), rps in units.items():
            lay = svc.layouts[k]
            cap = min(_caps(d, sites[site], lay, svc).values())
            fixed[v.units[svc.name, k, site].index] = float(math.ceil(rps / cap - 1e-9))
            if lay.role == "prefill":
                prefilled[site] = prefilled.get(site, 0.0) + rps
        for site, rps in prefilled.items():
            k, per, _ = decode[site]
            fixed[v.units[svc.name, k, site].index] = float(math.ceil(rps / per - 1e-9))
    return True


def _unit_cost(costs: _Costs, lay, s: SiteData) -> float | None:
    if lay.rented:
        return costs.rent(lay.rent_musd_per_year * costs.d.horizon_years)
    per_node = costs.node(lay.accelerator, s)
    return None if per_node is None else per_node * lay.nodes_per_unit


def greedy_decisions(m: Model, d: MipData, v: Vars, objective: str, share: float) -> dict[int, float] | None:
    """The greedy's decisions (site_open, choose, rent, replicas) by variable index, or None."""
    costs = _Costs(d, objective)
    room = _Room(d, share)
    fixed: dict[int, float] = {}
    # Services first: their sites are set by where their regions are reached, and a job that goes
    # to a site already open for them does not pay another build-out.
    if not _place_services(d, v, costs, room, fixed) or not _place_jobs(d, v, costs, room, fixed):
        return None
    for name, x in v.site_open.items():
        # A single site is open by its bounds; elsewhere only sites that hold something.
        fixed[x.index] = 1.0 if (name in room.open or x.lb >= 1) else 0.0
    for i, val in fixed.items():
        x = m.vars[i]
        fixed[i] = min(max(val, x.lb), x.ub)
    return fixed


def heuristic_start(m: Model, d: MipData, v: Vars, objective: str, time_limit_s: float | None = 30.0,
                    backend: str = "ortools") -> Start | None:
    """A complete assignment satisfying every row of `m` (its objective already set), or None."""
    from optimizer.mip.backends import solve as run_backend

    t0 = time.perf_counter()
    tried: set[tuple] = set()
    for i, (share, score) in enumerate(ATTEMPTS):
        fixed = greedy_decisions(m, d, v, score or objective, share)
        if fixed is None:
            continue
        sig = tuple(sorted(fixed.items()))
        if sig in tried:
            continue
        tried.add(sig)
        left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - t0)
        if left is not None and left <= 0.05:
            break
        res = run_backend(fixed_copy(m, fixed), backend=backend, time_limit_s=left, gap=1e-4)
        if res.values is None:
            continue
        if m.violations(res.values):
            continue  # never a start the full model would reject
        return Start(values=res.values, objective=m.objective_value(res.values), seconds=time.perf_counter() - t0,
                     attempt=i)
    return None
