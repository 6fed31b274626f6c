"""The datacenter design MIP, one function per constraint family.

Data (optimizer.mip.data.MipData, all numbers; $M, kW, TB, GB/s, days, tCO2):
  jobs j with surviving candidates c: accelerator a(c), fabric f(c), nodes n_c, endpoints e_c,
  days_c, data read rate r_c; per job usable storage U_j and checkpoint write rate W_j;
  services v with regional demand D_vr and layouts l (accelerator, tp, requests/s, TTFT);
  sites s with power cap, PUE, racks, cooling, prices, carbon intensity, build-out capex, RTTs.
Variables:
  site_open[s] in {0,1}               the site is built (its build-out capex is paid)
  choose[job,cand,site] in {0,1}      the configuration each job runs, and where (one site, one fabric)
  units[svc,layout,site] in Z+        serving units of each layout at each site: a unit is one node
                                      dedicated to one layout of one service, holding per_node/tp
                                      replicas (or, for replicas wider than a node, one replica on
                                      tp/per_node nodes)
  served[svc,layout,site,region] >= 0 requests/s those replicas serve for a region they reach within
                                      the TTFT SLO (RTT + TTFT); only reachable pairs exist. Capacity is
                                      split continuously: a replica may serve several regions.
  serving_nodes[acc,site] >= 0        nodes of serving units (integral because units are)
  nodes[acc,cooling,site] in Z+       nodes bought, by site and by the cooling of their racks
  racks[acc,cooling,site] in Z+       racks of one node type and cooling option
  fabric_tiers[fabric,site,tiers]     the fat-tree depth built per fabric and site (binary), with
  endpoints / leaves / aggregation / spines per depth
  storage_tb[tier,site] >= 0          raw TB per storage tier at each site
  named totals (it_power_kw[site=s], capex_musd, tco_musd, carbon_t_per_year, ...) by equalities
Objective: min TCO (default; includes carbon cost when a carbon price is set), capex, facility
power, the single job's days, or tCO2 per year.

Site linking is tight, not big-M: sum_c choose[j,c,s] <= site_open[s] per job, each replica
variable <= its own demand bound x site_open[s], and facility power <= cap x site_open[s].

Valid inequalities (implied by the integers, not by the LP relaxation; they change no optimum but
lift the bound the solver must close): site_cover / site_count (sites too small for the least IT
load the workloads need force others open), one_depth <= site_open (a fabric only at an open site),
serving_units_floor (whole units cover each region's demand). On the generated 50-workload x 3-site
instance they raise the root LP bound from 208.0 to 222.3 ($M; optimum 227.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from optimizer.mip.data import FabricData, MipData, SiteData
from optimizer.mip.lp import Model, Var, lin_sum

OBJECTIVES = ("min_tco", "min_capex", "min_power", "min_time", "min_carbon")
DEPTHS = (1, 2, 3)
COVER_MAX_SITES = 10


@dataclass
class Vars:
    site_open: dict[str, Var] = field(default_factory=dict)
    choose: dict[tuple[str, int, str], Var] = field(default_factory=dict)  # (job, cand position, site)
    units: dict[tuple[str, int, str], Var] = field(default_factory=dict)  # (svc, layout pos, site)
    served: dict[tuple[str, int, str, str], Var] = field(default_factory=dict)  # (svc, layout pos, site, region)
    serving_nodes: dict[tuple[str, str], Var] = field(default_factory=dict)  # (acc, site)
    nodes: dict[tuple[str, str, str], Var] = field(default_factory=dict)  # (acc, cooling, site)
    racks: dict[tuple[str, str, str], Var] = field(default_factory=dict)
    tiers: dict[tuple[str, str, int], Var] = field(default_factory=dict)  # (fabric, site, depth)
    endpoints: dict[tuple[str, str, int], Var] = field(default_factory=dict)
    leaves: dict[tuple[str, str, int], Var] = field(default_factory=dict)
    aggregation: dict[tuple[str, str], Var] = field(default_factory=dict)
    spines: dict[tuple[str, str, int], Var] = field(default_factory=dict)
    storage_tb: dict[tuple[str, str], Var] = field(default_factory=dict)  # (tier, site)
    totals: dict[str, Var] = field(default_factory=dict)  # named totals
    fabrics_at: dict[str, list[FabricData]] = field(default_factory=dict)  # site -> fabrics built there (incl. front-end)


def _total(m: Model, v: Vars, name: str, expr) -> Var:
    """A named continuous variable equal to `expr`, so totals show up by name in exports and reports."""
    var = m.add_var(name, lb=0.0)
    m.add_constraint(var == expr, f"define[{name}]")
    v.totals[name] = var
    return var


def at(name: str, site: str) -> str:
    return f"{name}[site={site}]"


def add_sites(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (0): a site is open if anything is placed there. One site is simply open."""
    single = len(d.sites) == 1
    for s in d.sites:
        lb = 1 if single else 0
        v.site_open[s.name] = m.add_var(f"site_open[site={s.name}]", lb=lb, ub=1, integer=True)


def least_it_power_kw(d: MipData) -> float:
    """A lower bound on the IT power any design needs: each job on its least-power surviving
    configuration and each service's demand at the best kW per request/s of its layouts (nodes
    only; network and storage only add to it)."""
    node_kw = {a.name: a.node_power_kw for a in d.accelerators}
    kw = sum(min(c.nodes * node_kw[c.accelerator] for c in j.candidates) for j in d.jobs)
    for svc in d.services:
        per_rps = min(lay.nodes_per_unit * node_kw[lay.accelerator] / lay.unit_requests_per_s for lay in svc.layouts)
        kw += per_rps * sum(svc.demand_rps.values())
    return kw


def add_site_cover(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (0b): if a set of sites cannot power even the least IT load the workloads need,
    some site outside it is open. Implied by the integer model, but not by its LP relaxation, where
    each job may sit 16 % at a site that is then only 16 % built (and pays 16 % of its build-out):
    these cover cuts make the bound see the build-out a capped site forces. Exhaustive over site
    sets up to COVER_MAX_SITES sites; beyond that, single sites and their complements only."""
    caps = {s.name: math.inf if s.power_cap_kw is None else s.power_cap_kw / s.pue for s in d.sites}
    if len(caps) < 2 or all(math.isinf(c) for c in caps.values()):
        return
    need = least_it_power_kw(d) * (1 - 1e-9)
    names = [s.name for s in d.sites]
    if len(names) <= COVER_MAX_SITES:
        subsets = [frozenset(n for i, n in enumerate(names) if mask >> i & 1) for mask in range(1, 2 ** len(names) - 1)]
    else:
        subsets = [frozenset([n]) for n in names] + [frozenset(names) - {n} for n in names]
    # However the sites are picked, at least this many: the largest caps first.
    largest = sorted(caps.values(), reverse=True)
    at_least = next((k for k in range(1, len(largest) + 1) if sum(largest[:k]) >= need), None)
    if at_least is not None and at_least > 1:
        m.add_constraint(lin_sum(v.site_open.values()) >= at_least, "site_count[least_sites_for_least_it_power]")
    short = [t for t in subsets if sum(caps[n] for n in t) < need]
    maximal = [t for t in short if not any(t < u for u in short)]
    for t in sorted(maximal, key=sorted):
        rest = [n for n in names if n not in t]
        m.add_constraint(lin_sum(v.site_open[n] for n in rest) >= 1,
                         f"site_cover[closed_alone_too_small={'+'.join(sorted(t))}]")


def add_job_choice(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (1): every job runs exactly one surviving configuration, whole, at one site."""
    for job in d.jobs:
        for s in d.sites:
            for k, c in enumerate(job.candidates):
                v.choose[job.name, k, s.name] = m.add_binary(f"choose[job={job.name},cand={c.index},site={s.name}]")
            m.add_constraint(
                lin_sum(v.choose[job.name, k, s.name] for k in range(len(job.candidates))) <= v.site_open[s.name],
                f"job_at_open_site[job={job.name},site={s.name}]",
            )
        m.add_constraint(lin_sum(v.choose[job.name, k, s.name] for k in range(len(job.candidates)) for s in d.sites) == 1,
                         f"one_config[job={job.name}]")


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
                ub = math.ceil(sum(svc.demand_rps[r] for r in regions) / unit_rps - 1e-9)
                x = m.add_var(f"units[svc={svc.name},acc={lay.accelerator},tp={lay.tp},batch={lay.batch},site={s.name}]",
                              lb=0, ub=ub, integer=True)
                v.units[svc.name, k, s.name] = x
                key = f"svc={svc.name},layout={lay.index},site={s.name}"
                flows = []
                for r in regions:
                    f = m.add_var(f"served[{key},region={r}]", lb=0.0, ub=svc.demand_rps[r])
                    v.served[svc.name, k, s.name, r] = f
                    by_region[r].append(f)
                    flows.append(f)
                m.add_constraint(lin_sum(flows) <= unit_rps * x, f"serving_capacity[{key}]")
                if multi:
                    m.add_constraint(x <= ub * v.site_open[s.name], f"serving_at_open_site[{key}]")
        for r, demand in sorted(svc.demand_rps.items()):
            m.add_constraint(lin_sum(by_region[r]) >= demand, f"demand[svc={svc.name},region={r}]")
        _serving_unit_floors(m, v, svc)


def _serving_unit_floors(m: Model, v: Vars, svc) -> None:
    """Whole units: the units that reach a region, and all units of the service, number at least
    the demand over the largest unit's requests/s, rounded up. Implied by integrality but not by the
    LP relaxation, which would otherwise serve a small service with a tenth of a node."""
    def floor_cut(keys, demand, name):
        keys = list(keys)
        if not keys:
            return
        biggest = max(svc.layouts[k].unit_requests_per_s for (_, k, _) in keys)
        need = math.ceil(demand / biggest - 1e-9)
        if need >= 1:
            m.add_constraint(lin_sum(v.units[key] for key in keys) >= need, name)

    mine = [key for key in v.units if key[0] == svc.name]
    floor_cut(mine, sum(svc.demand_rps.values()), f"serving_units_floor[svc={svc.name}]")
    if len(svc.demand_rps) > 1:
        for r, demand in sorted(svc.demand_rps.items()):
            reach = [key for key in mine if (svc.name, key[1], key[2], r) in v.served]
            floor_cut(reach, demand, f"serving_units_floor[svc={svc.name},region={r}]")


def _layout(d: MipData, svc_name: str, k: int):
    return next(s for s in d.services if s.name == svc_name).layouts[k]


def _serving_nodes(d: MipData, v: Vars, acc: str, site: str):
    return lin_sum(
        _layout(d, svc, k).nodes_per_unit * x for (svc, k, s), x in v.units.items()
        if s == site and _layout(d, svc, k).accelerator == acc
    )


def _serving_nodes_ub(d: MipData, v: Vars, site: str, acc: str | None = None) -> float:
    """The most serving nodes a site can hold (of one accelerator type, or of all)."""
    return sum(
        _layout(d, svc, k).nodes_per_unit * x.ub for (svc, k, s), x in v.units.items()
        if s == site and acc in (None, _layout(d, svc, k).accelerator)
    )


def _training_nodes(d: MipData, v: Vars, acc: str, site: str):
    return lin_sum(
        c.nodes * v.choose[j.name, k, site] for j in d.jobs for k, c in enumerate(j.candidates) if c.accelerator == acc
    )


def add_nodes_and_racks(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (2): nodes bought at a site cover the jobs placed there (jobs run concurrently, on
    their own nodes) plus the serving nodes (whole nodes holding the replicas' accelerators).
    Constraint (3): racks hold whole nodes under each cooling option's kW per rack and the rack's
    units; racks of a node type are homogeneous, so nodes_per_rack is exact, not a fractional relaxation."""
    for s in d.sites:
        for a in d.accelerators:
            ub = sum(max((c.nodes for c in j.candidates if c.accelerator == a.name), default=0) for j in d.jobs)
            serving_ub = _serving_nodes_ub(d, v, s.name, a.name)
            needed = _training_nodes(d, v, a.name, s.name)
            if serving_ub:
                sn = _total(m, v, f"serving_nodes[acc={a.name},site={s.name}]", _serving_nodes(d, v, a.name, s.name))
                v.serving_nodes[a.name, s.name] = sn
                ub += serving_ub
                needed = needed + sn
            if ub == 0:
                continue
            placed = []
            for o, npr in s.nodes_per_rack[a.name].items():
                if npr <= 0:
                    continue
                n = m.add_var(f"nodes[acc={a.name},cooling={o},site={s.name}]", lb=0, ub=ub, integer=True)
                r = m.add_var(f"racks[acc={a.name},cooling={o},site={s.name}]", lb=0, ub=-(-ub // npr), integer=True)
                v.nodes[a.name, o, s.name], v.racks[a.name, o, s.name] = n, r
                m.add_constraint(npr * r >= n, f"rack_density[acc={a.name},cooling={o},site={s.name}]")
                placed.append(n)
            m.add_constraint(lin_sum(placed) == needed, f"node_count[acc={a.name},site={s.name}]")
        if s.max_racks is not None:
            m.add_constraint(lin_sum(r for (_, _, site), r in v.racks.items() if site == s.name) <= s.max_racks,
                             f"rack_space[site={s.name}]")


def add_fabric(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (4): at each site, each training fabric is one fat-tree over the endpoints of the
    jobs placed there on it, and the serving front-end one over the serving nodes (models.network
    has the closed form). Endpoints are split over the depth options so that the chosen depth's
    capacity and switch counts apply (a disaggregated form, no big-M beyond each depth's capacity)."""
    for s in d.sites:
        built = []
        for f in d.fabrics:
            attached = lin_sum(
                c.endpoints * v.choose[j.name, k, s.name] for j in d.jobs for k, c in enumerate(j.candidates) if c.fabric == f.name
            )
            most = sum(max((c.endpoints for c in j.candidates if c.fabric == f.name), default=0) for j in d.jobs)
            _fat_tree(m, v, f, s, attached, most)
            built.append(f)
        if s.frontend is not None and any(site == s.name for (_, site) in v.serving_nodes):
            f = s.frontend
            attached = lin_sum(f.frontend_ports_per_node * sn for (_, site), sn in v.serving_nodes.items() if site == s.name)
            most = f.frontend_ports_per_node * _serving_nodes_ub(d, v, s.name)
            _fat_tree(m, v, f, s, attached, most)
            built.append(f)
        v.fabrics_at[s.name] = built


def _fat_tree(m: Model, v: Vars, f: FabricData, s: SiteData, attached, most: int) -> None:
    """`most`: the most endpoints that can ever attach here; it caps each depth's capacity (a
    3-tier fat-tree of radix 64 holds 65,536 endpoints: a big-M that slows the solvers' cuts), and
    a depth whose shallower sibling already holds `most` is never worth building."""
    key = f"fabric={f.name},site={s.name}"
    for n in DEPTHS:
        useful = n == 1 or f.tier_capacity[n - 1] < most
        cap = min(f.tier_capacity[n], most) if useful else 0
        v.tiers[f.name, s.name, n] = m.add_var(f"fabric_tiers[{key},tiers={n}]", lb=0, ub=1 if useful else 0, integer=True)
        v.endpoints[f.name, s.name, n] = m.add_var(f"endpoints[{key},tiers={n}]", lb=0.0, ub=cap)
        m.add_constraint(v.endpoints[f.name, s.name, n] <= cap * v.tiers[f.name, s.name, n],
                         f"tier_capacity[{key},tiers={n}]")
    # At most one depth, and only at an open site: implied by the integers, but in the LP relaxation
    # it stops a site that is 25 % open from holding a whole 2-tier fabric (2,048 ports at radix 64)
    # and so from splitting a large fabric into cheap shallow pieces across sites.
    m.add_constraint(lin_sum(v.tiers[f.name, s.name, n] for n in DEPTHS) <= v.site_open[s.name], f"one_depth[{key}]")
    m.add_constraint(lin_sum(v.endpoints[f.name, s.name, n] for n in DEPTHS) == attached, f"endpoints_attached[{key}]")
    leaf_ub = -(-min(f.tier_capacity[3], most) // f.down)
    for n in (2, 3):
        leaves = m.add_var(f"leaves[{key},tiers={n}]", lb=0, ub=leaf_ub, integer=True)
        spines = m.add_var(f"spines[{key},tiers={n}]", lb=0, ub=leaf_ub, integer=True)
        v.leaves[f.name, s.name, n], v.spines[f.name, s.name, n] = leaves, spines
        m.add_constraint(f.down * leaves >= v.endpoints[f.name, s.name, n], f"leaf_ports[{key},tiers={n}]")
    m.add_constraint(f.radix * v.spines[f.name, s.name, 2] >= f.up * v.leaves[f.name, s.name, 2], f"spine_ports[{key},tiers=2]")
    agg = m.add_var(f"aggregation[{key},tiers=3]", lb=0, ub=leaf_ub, integer=True)
    v.aggregation[f.name, s.name] = agg
    m.add_constraint((f.radix // 2) * agg >= f.up * v.leaves[f.name, s.name, 3], f"aggregation_ports[{key},tiers=3]")
    m.add_constraint(2 * v.spines[f.name, s.name, 3] >= agg, f"core_ports[{key},tiers=3]")
    # Switches only in the depth built, and no depth built without endpoints: an incumbent the
    # solver stops at cannot carry switches the design would not report.
    for n in DEPTHS:
        m.add_constraint(v.endpoints[f.name, s.name, n] >= v.tiers[f.name, s.name, n], f"tier_in_use[{key},tiers={n}]")
    for n in (2, 3):
        switches = v.leaves[f.name, s.name, n] + v.spines[f.name, s.name, n] + (agg if n == 3 else 0)
        m.add_constraint(switches <= 3 * leaf_ub * v.tiers[f.name, s.name, n], f"switches_in_depth[{key},tiers={n}]")


def fabric_switches(v: Vars, f: str, s: str):
    return (v.tiers[f, s, 1] + v.leaves[f, s, 2] + v.spines[f, s, 2] + v.leaves[f, s, 3] + v.aggregation[f, s]
            + v.spines[f, s, 3])


def fabric_optics(fd: FabricData, v: Vars, s: str):
    """Two transceivers per switch-to-switch link."""
    f = fd.name
    return 2 * (fd.up * v.leaves[f, s, 2] + fd.up * v.leaves[f, s, 3] + (fd.radix // 2) * v.aggregation[f, s])


def fabric_endpoints(v: Vars, f: str, s: str):
    return lin_sum(v.endpoints[f, s, n] for n in DEPTHS)


def add_storage(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (5): storage at each site, sized as one pool of tiers for the jobs placed there:
    usable capacity for datasets and retained checkpoints (raw TB / replication), and bandwidth for
    every job writing a checkpoint within its window while reading training data at its token rate."""
    for s in d.sites:
        for t in d.storage:
            v.storage_tb[t.name, s.name] = m.add_var(f"storage_tb[tier={t.name},site={s.name}]", lb=0.0)
        placed = {j.name: lin_sum(v.choose[j.name, k, s.name] for k in range(len(j.candidates))) for j in d.jobs}
        m.add_constraint(
            lin_sum(v.storage_tb[t.name, s.name] * (1.0 / t.replication) for t in d.storage)
            >= lin_sum(j.usable_tb * placed[j.name] for j in d.jobs),
            f"storage_capacity[site={s.name}]",
        )
        read = lin_sum(c.read_gbps * v.choose[j.name, k, s.name] for j in d.jobs for k, c in enumerate(j.candidates))
        m.add_constraint(
            lin_sum(t.gbps_per_tb * v.storage_tb[t.name, s.name] for t in d.storage)
            >= read + lin_sum(j.write_gbps * placed[j.name] for j in d.jobs),
            f"storage_bandwidth[site={s.name}]",
        )


def add_power(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (6): IT power per site = nodes at their rated maximum + switches, endpoint NICs/optics
    and link optics + storage; facility power = PUE x IT power, within the site's contracted cap."""
    node_kw = {a.name: a.node_power_kw for a in d.accelerators}
    for s in d.sites:
        nodes_kw = lin_sum(node_kw[a] * n for (a, _, site), n in v.nodes.items() if site == s.name)
        network_kw = lin_sum(
            f.switch_power_kw * fabric_switches(v, f.name, s.name) + f.endpoint_power_kw * fabric_endpoints(v, f.name, s.name)
            + f.optic_power_kw * fabric_optics(f, v, s.name)
            for f in v.fabrics_at[s.name]
        )
        storage_kw = lin_sum(t.power_kw_per_tb * v.storage_tb[t.name, s.name] for t in d.storage)
        _total(m, v, at("node_power_kw", s.name), nodes_kw)
        _total(m, v, at("network_power_kw", s.name), network_kw)
        _total(m, v, at("storage_power_kw", s.name), storage_kw)
        it = _total(m, v, at("it_power_kw", s.name), lin_sum(v.totals[at(k, s.name)] for k in ("node_power_kw", "network_power_kw", "storage_power_kw")))
        fac = _total(m, v, at("facility_power_kw", s.name), s.pue * it)
        if s.power_cap_kw is not None:
            m.add_constraint(fac <= s.power_cap_kw * v.site_open[s.name], f"power_cap[site={s.name}]")
    _total(m, v, "facility_power_kw", lin_sum(v.totals[at("facility_power_kw", s.name)] for s in d.sites))


CAPEX_PARTS = ("compute", "network", "storage", "racks", "cooling", "site")


def add_costs(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (7): capex by category and site ($M), yearly opex (energy, maintenance, carbon),
    TCO over the horizon, the capex budget and the carbon cap. Cooling capex is per kW of IT load:
    nodes at their rack's option, switches and storage at the cheapest option of the site. Energy is
    billed at facility power for the whole horizon; carbon = energy x the site's grid intensity."""
    t = v.totals
    price = {a.name: a.node_price_musd for a in d.accelerators}
    node_kw = {a.name: a.node_power_kw for a in d.accelerators}
    for s in d.sites:
        n = s.name
        _total(m, v, at("capex_compute_musd", n), lin_sum(price[a] * x for (a, _, site), x in v.nodes.items() if site == n))
        _total(m, v, at("capex_network_musd", n), lin_sum(
            f.switch_price_musd * fabric_switches(v, f.name, n) + f.endpoint_price_musd * fabric_endpoints(v, f.name, n)
            + f.optic_price_musd * fabric_optics(f, v, n)
            for f in v.fabrics_at[n]
        ))
        _total(m, v, at("capex_storage_musd", n), lin_sum(st.price_musd_per_tb * v.storage_tb[st.name, n] for st in d.storage))
        _total(m, v, at("capex_racks_musd", n), lin_sum(s.rack_capex_musd * r for (_, _, site), r in v.racks.items() if site == n))
        cooled = lin_sum(s.cooling_capex_musd_per_kw[o] * node_kw[a] * x for (a, o, site), x in v.nodes.items() if site == n)
        aux = s.cooling_capex_musd_per_kw[s.aux_cooling] * (t[at("network_power_kw", n)] + t[at("storage_power_kw", n)])
        _total(m, v, at("capex_cooling_musd", n), cooled + aux)
        _total(m, v, at("capex_site_musd", n), s.site_capex_musd * v.site_open[n])
        _total(m, v, at("capex_musd", n), lin_sum(t[at(f"capex_{p}_musd", n)] for p in CAPEX_PARTS))
        _total(m, v, at("energy_musd_per_year", n), s.energy_musd_per_kw_year * t[at("facility_power_kw", n)])
        _total(m, v, at("carbon_t_per_year", n), s.carbon_t_per_kw_year * t[at("facility_power_kw", n)])
    for p in CAPEX_PARTS:
        _total(m, v, f"capex_{p}_musd", lin_sum(t[at(f"capex_{p}_musd", s.name)] for s in d.sites))
    capex = _total(m, v, "capex_musd", lin_sum(t[f"capex_{p}_musd"] for p in CAPEX_PARTS))
    _total(m, v, "energy_musd_per_year", lin_sum(t[at("energy_musd_per_year", s.name)] for s in d.sites))
    carbon = _total(m, v, "carbon_t_per_year", lin_sum(t[at("carbon_t_per_year", s.name)] for s in d.sites))
    _total(m, v, "carbon_musd_per_year", d.carbon_price_musd_per_t * carbon)
    _total(m, v, "maintenance_musd_per_year", d.maintenance_fraction * capex)
    _total(m, v, "tco_musd", capex + d.horizon_years * (t["energy_musd_per_year"] + t["maintenance_musd_per_year"]
                                                        + t["carbon_musd_per_year"]))
    if d.capex_cap_musd is not None:
        m.add_constraint(capex <= d.capex_cap_musd, "capex_budget")
    if d.carbon_cap_t_per_year is not None:
        m.add_constraint(carbon <= d.carbon_cap_t_per_year, "carbon_cap")


def objective_expr(d: MipData, v: Vars, objective: str):
    if objective == "min_tco":
        return v.totals["tco_musd"] + 0
    if objective == "min_capex":
        return v.totals["capex_musd"] + 0
    if objective == "min_power":
        return v.totals["facility_power_kw"] + 0
    if objective == "min_carbon":
        return v.totals["carbon_t_per_year"] + 0
    if objective == "min_time":
        return lin_sum(c.days * v.choose[j.name, k, s.name] for j in d.jobs for k, c in enumerate(j.candidates) for s in d.sites)
    raise ValueError(f"unknown objective {objective!r} (expected one of {', '.join(OBJECTIVES)})")


def build_model(d: MipData) -> tuple[Model, Vars]:
    """All constraint families in a fixed order; the caller sets the objective."""
    m = Model(f"dcopt[{d.name}]")
    v = Vars()
    add_sites(m, d, v)
    add_site_cover(m, d, v)
    add_job_choice(m, d, v)
    add_serving(m, d, v)
    add_nodes_and_racks(m, d, v)
    add_fabric(m, d, v)
    add_storage(m, d, v)
    add_power(m, d, v)
    add_costs(m, d, v)
    return m, v
