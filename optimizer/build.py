"""The datacenter design MIP, one function per constraint family.

Data (optimizer.data.MipData, all numbers; $M, kW, TB, GB/s, days):
  jobs j with surviving candidates c: accelerator a(c), fabric f(c), nodes n_c, endpoints e_c,
  days_c, data read rate r_c; per job usable storage U_j and checkpoint write rate W_j.
Variables:
  choose[job,cand] in {0,1}           the configuration each job runs
  replicas[svc,layout] in Z+          serving replicas per layout (accelerator x tp x batch)
  serving_nodes[acc] in Z+            nodes holding serving replicas (replicas of any service share nodes)
  nodes[acc,cooling] in Z+            nodes bought, by the cooling of the racks they sit in
  racks[acc,cooling] in Z+            racks of one node type and cooling option
  fabric_tiers[fabric,tiers] in {0,1} the fat-tree depth built for each fabric
  endpoints[fabric,tiers] >= 0        endpoint ports attached, on the chosen depth
  leaves / aggregation / spines       switch counts per fabric and depth (integers)
  storage_tb[tier] >= 0               raw TB bought per storage tier
  it_power_kw, capex_musd, ...        named totals, defined by equalities, for reports and exports
Objective: min TCO (default), capex, facility power or the single job's days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .data import MipData
from .lp import Model, Var, lin_sum

OBJECTIVES = ("min_tco", "min_capex", "min_power", "min_time")


@dataclass
class Vars:
    choose: dict[tuple[str, int], Var] = field(default_factory=dict)  # (job, candidate position)
    replicas: dict[tuple[str, int], Var] = field(default_factory=dict)  # (service, layout position)
    serving_nodes: dict[str, Var] = field(default_factory=dict)  # acc
    nodes: dict[tuple[str, str], Var] = field(default_factory=dict)  # (acc, cooling)
    racks: dict[tuple[str, str], Var] = field(default_factory=dict)
    tiers: dict[tuple[str, int], Var] = field(default_factory=dict)  # (fabric, tiers)
    endpoints: dict[tuple[str, int], Var] = field(default_factory=dict)
    leaves: dict[tuple[str, int], Var] = field(default_factory=dict)
    aggregation: dict[str, Var] = field(default_factory=dict)
    spines: dict[tuple[str, int], Var] = field(default_factory=dict)
    storage_tb: dict[str, Var] = field(default_factory=dict)
    totals: dict[str, Var] = field(default_factory=dict)  # named totals (it_power_kw, capex_musd, ...)


def _total(m: Model, v: Vars, name: str, expr) -> Var:
    """A named continuous variable equal to `expr`, so totals show up by name in exports and reports."""
    var = m.add_var(name, lb=0.0)
    m.add_constraint(var == expr, f"define[{name}]")
    v.totals[name] = var
    return var


def add_job_choice(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (1): every job runs exactly one surviving configuration."""
    for job in d.jobs:
        for k, c in enumerate(job.candidates):
            v.choose[job.name, k] = m.add_binary(f"choose[job={job.name},cand={c.index}]")
        m.add_constraint(lin_sum(v.choose[job.name, k] for k in range(len(job.candidates))) == 1, f"one_config[job={job.name}]")


def add_serving(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (1b): every service's replicas together serve its demand (requests/s); replicas of
    different accelerator types may be mixed (Melange). Layouts that break an SLO never get here."""
    for s in d.services:
        for k, lay in enumerate(s.layouts):
            ub = math.ceil(s.demand_rps / lay.requests_per_s - 1e-9)
            v.replicas[s.name, k] = m.add_var(
                f"replicas[svc={s.name},acc={lay.accelerator},tp={lay.tp},batch={lay.batch}]", lb=0, ub=ub, integer=True
            )
        m.add_constraint(
            lin_sum(lay.requests_per_s * v.replicas[s.name, k] for k, lay in enumerate(s.layouts)) >= s.demand_rps,
            f"demand[svc={s.name}]",
        )


def _serving_accelerators(d: MipData, v: Vars, acc: str):
    return lin_sum(lay.tp * v.replicas[s.name, k] for s in d.services for k, lay in enumerate(s.layouts) if lay.accelerator == acc)


def _nodes_needed(d: MipData, v: Vars, acc: str):
    training = lin_sum(
        c.nodes * v.choose[j.name, k] for j in d.jobs for k, c in enumerate(j.candidates) if c.accelerator == acc
    )
    return training + v.serving_nodes[acc] if acc in v.serving_nodes else training


def add_nodes_and_racks(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (2): nodes bought cover the jobs' nodes (jobs run concurrently, on their own nodes)
    plus the serving nodes (whole nodes holding the replicas' accelerators).
    Constraint (3): racks hold whole nodes under each cooling option's kW-per-rack and the rack's units;
    racks of a node type are homogeneous, so nodes_per_rack is exact, not a fractional relaxation."""
    for a in d.accelerators:
        ub = sum(max((c.nodes for c in j.candidates if c.accelerator == a.name), default=0) for j in d.jobs)
        serving_ub = sum(
            max((lay.tp * math.ceil(s.demand_rps / lay.requests_per_s - 1e-9) for lay in s.layouts if lay.accelerator == a.name), default=0)
            for s in d.services
        )
        if serving_ub:
            sn = m.add_var(f"serving_nodes[acc={a.name}]", lb=0, ub=-(-serving_ub // a.per_node), integer=True)
            v.serving_nodes[a.name] = sn
            m.add_constraint(a.per_node * sn >= _serving_accelerators(d, v, a.name), f"serving_node_count[acc={a.name}]")
            ub += -(-serving_ub // a.per_node)
        placed = []
        for o, npr in a.nodes_per_rack.items():
            if npr <= 0:
                continue
            n = m.add_var(f"nodes[acc={a.name},cooling={o}]", lb=0, ub=ub, integer=True)
            r = m.add_var(f"racks[acc={a.name},cooling={o}]", lb=0, ub=-(-ub // npr), integer=True)
            v.nodes[a.name, o], v.racks[a.name, o] = n, r
            m.add_constraint(npr * r >= n, f"rack_density[acc={a.name},cooling={o}]")
            placed.append(n)
        m.add_constraint(lin_sum(placed) == _nodes_needed(d, v, a.name), f"node_count[acc={a.name}]")
    if d.max_racks is not None:
        m.add_constraint(lin_sum(v.racks.values()) <= d.max_racks, "rack_space")


def add_fabric(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (4): each fabric is one fat-tree over all endpoints of the jobs that chose it
    (models.network has the closed form). Endpoints are split over the depth options so that the
    chosen depth's capacity and switch counts apply (a disaggregated, LP-tight form, no big-M
    beyond each depth's own capacity)."""
    for f in d.fabrics:
        if f.frontend_ports_per_node:  # the serving front-end: every serving node attaches
            attached = lin_sum(f.frontend_ports_per_node * sn for sn in v.serving_nodes.values())
        else:
            attached = lin_sum(
                c.endpoints * v.choose[j.name, k] for j in d.jobs for k, c in enumerate(j.candidates) if c.fabric == f.name
            )
        ub = f.tier_capacity[3]
        for n in (1, 2, 3):
            v.tiers[f.name, n] = m.add_binary(f"fabric_tiers[fabric={f.name},tiers={n}]")
            v.endpoints[f.name, n] = m.add_var(f"endpoints[fabric={f.name},tiers={n}]", lb=0.0, ub=f.tier_capacity[n])
            m.add_constraint(
                v.endpoints[f.name, n] <= f.tier_capacity[n] * v.tiers[f.name, n], f"tier_capacity[fabric={f.name},tiers={n}]"
            )
        m.add_constraint(lin_sum(v.tiers[f.name, n] for n in (1, 2, 3)) <= 1, f"one_depth[fabric={f.name}]")
        m.add_constraint(lin_sum(v.endpoints[f.name, n] for n in (1, 2, 3)) == attached, f"endpoints_attached[fabric={f.name}]")
        leaf_ub = -(-ub // f.down)
        for n in (2, 3):
            leaves = m.add_var(f"leaves[fabric={f.name},tiers={n}]", lb=0, ub=leaf_ub, integer=True)
            spines = m.add_var(f"spines[fabric={f.name},tiers={n}]", lb=0, ub=leaf_ub, integer=True)
            v.leaves[f.name, n], v.spines[f.name, n] = leaves, spines
            m.add_constraint(f.down * leaves >= v.endpoints[f.name, n], f"leaf_ports[fabric={f.name},tiers={n}]")
        m.add_constraint(
            f.radix * v.spines[f.name, 2] >= f.up * v.leaves[f.name, 2], f"spine_ports[fabric={f.name},tiers=2]"
        )
        agg = m.add_var(f"aggregation[fabric={f.name},tiers=3]", lb=0, ub=leaf_ub, integer=True)
        v.aggregation[f.name] = agg
        m.add_constraint((f.radix // 2) * agg >= f.up * v.leaves[f.name, 3], f"aggregation_ports[fabric={f.name},tiers=3]")
        m.add_constraint(2 * v.spines[f.name, 3] >= agg, f"core_ports[fabric={f.name},tiers=3]")


def fabric_switches(v: Vars, name: str):
    return v.tiers[name, 1] + v.leaves[name, 2] + v.spines[name, 2] + v.leaves[name, 3] + v.aggregation[name] + v.spines[name, 3]


def fabric_optics(d_f, v: Vars, name: str):
    """Two transceivers per switch-to-switch link."""
    links = d_f.up * v.leaves[name, 2] + d_f.up * v.leaves[name, 3] + (d_f.radix // 2) * v.aggregation[name]
    return 2 * links


def fabric_endpoints(v: Vars, name: str):
    return lin_sum(v.endpoints[name, n] for n in (1, 2, 3))


def add_storage(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (5): storage, sized as one pool of tiers: usable capacity for datasets and retained
    checkpoints (raw TB / replication), and bandwidth for every job writing a checkpoint within its
    window while all jobs read training data at their token rate."""
    for s in d.storage:
        v.storage_tb[s.name] = m.add_var(f"storage_tb[tier={s.name}]", lb=0.0)
    need_tb = sum(j.usable_tb for j in d.jobs)
    m.add_constraint(lin_sum(v.storage_tb[s.name] * (1.0 / s.replication) for s in d.storage) >= need_tb, "storage_capacity")
    read = lin_sum(c.read_gbps * v.choose[j.name, k] for j in d.jobs for k, c in enumerate(j.candidates))
    m.add_constraint(
        lin_sum(s.gbps_per_tb * v.storage_tb[s.name] for s in d.storage) >= read + sum(j.write_gbps for j in d.jobs),
        "storage_bandwidth",
    )


def add_power(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (6): IT power = nodes at their rated maximum + switches, endpoint NICs/optics and link
    optics + storage; facility power = PUE x IT power, within the contracted cap."""
    nodes_kw = lin_sum(a.node_power_kw * v.nodes[a.name, o] for a in d.accelerators for o in a.nodes_per_rack if (a.name, o) in v.nodes)
    network_kw = lin_sum(
        f.switch_power_kw * fabric_switches(v, f.name) + f.endpoint_power_kw * fabric_endpoints(v, f.name)
        + f.optic_power_kw * fabric_optics(f, v, f.name)
        for f in d.fabrics
    )
    storage_kw = lin_sum(s.power_kw_per_tb * v.storage_tb[s.name] for s in d.storage)
    _total(m, v, "node_power_kw", nodes_kw)
    _total(m, v, "network_power_kw", network_kw)
    _total(m, v, "storage_power_kw", storage_kw)
    it = _total(m, v, "it_power_kw", v.totals["node_power_kw"] + v.totals["network_power_kw"] + v.totals["storage_power_kw"])
    fac = _total(m, v, "facility_power_kw", d.pue * it)
    if d.power_cap_kw is not None:
        m.add_constraint(fac <= d.power_cap_kw, "power_cap")


def add_costs(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (7): capex by category ($M), yearly opex, TCO over the horizon, capex budget.
    Cooling capex is per kW of IT load cooled: nodes at their rack's option, switches and storage at
    the cheapest option offered. Energy is billed at facility power for the whole horizon."""
    t = v.totals
    price = {a.name: a.node_price_musd for a in d.accelerators}
    _total(m, v, "capex_compute_musd", lin_sum(price[acc] * n for (acc, _), n in v.nodes.items()))
    _total(
        m, v, "capex_network_musd",
        lin_sum(
            f.switch_price_musd * fabric_switches(v, f.name) + f.endpoint_price_musd * fabric_endpoints(v, f.name)
            + f.optic_price_musd * fabric_optics(f, v, f.name)
            for f in d.fabrics
        ),
    )
    _total(m, v, "capex_storage_musd", lin_sum(s.price_musd_per_tb * v.storage_tb[s.name] for s in d.storage))
    _total(m, v, "capex_racks_musd", lin_sum(d.rack_capex_musd * r for r in v.racks.values()))
    node_kw = {a.name: a.node_power_kw for a in d.accelerators}
    cooled = lin_sum(d.cooling_capex_musd_per_kw[o] * node_kw[acc] * n for (acc, o), n in v.nodes.items())
    aux = d.cooling_capex_musd_per_kw[d.aux_cooling] * (t["network_power_kw"] + t["storage_power_kw"])
    _total(m, v, "capex_cooling_musd", cooled + aux)
    capex = _total(
        m, v, "capex_musd",
        t["capex_compute_musd"] + t["capex_network_musd"] + t["capex_storage_musd"] + t["capex_racks_musd"] + t["capex_cooling_musd"],
    )
    _total(m, v, "energy_musd_per_year", d.energy_musd_per_kw_year * t["facility_power_kw"])
    _total(m, v, "maintenance_musd_per_year", d.maintenance_fraction * capex)
    _total(m, v, "tco_musd", capex + d.horizon_years * (t["energy_musd_per_year"] + t["maintenance_musd_per_year"]))
    if d.capex_cap_musd is not None:
        m.add_constraint(capex <= d.capex_cap_musd, "capex_budget")


def objective_expr(d: MipData, v: Vars, objective: str):
    if objective == "min_tco":
        return v.totals["tco_musd"] + 0
    if objective == "min_capex":
        return v.totals["capex_musd"] + 0
    if objective == "min_power":
        return v.totals["facility_power_kw"] + 0
    if objective == "min_time":
        return lin_sum(c.days * v.choose[j.name, k] for j in d.jobs for k, c in enumerate(j.candidates))
    raise ValueError(f"unknown objective {objective!r} (expected one of {', '.join(OBJECTIVES)})")


def build_model(d: MipData) -> tuple[Model, Vars]:
    """All constraint families in a fixed order; the caller sets the objective."""
    m = Model(f"dcopt[{d.name}]")
    v = Vars()
    add_job_choice(m, d, v)
    add_serving(m, d, v)
    add_nodes_and_racks(m, d, v)
    add_fabric(m, d, v)
    add_storage(m, d, v)
    add_power(m, d, v)
    add_costs(m, d, v)
    return m, v
