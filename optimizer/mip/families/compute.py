"""Nodes and racks: nodes bought cover the workloads placed at a site; racks hold whole nodes under
each cooling option's kW per rack and the rack's units; rack space per site."""

from __future__ import annotations

import math

from models.units import rack_holds

from optimizer.mip.audit import Audit
from optimizer.mip.data import MipData
from optimizer.mip.families.serving import serving_nodes_expr, serving_nodes_ub
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars, define_total


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
            whole = a.rack_nodes > 0  # bought as whole racks: every rack full
            ub = sum(max((c.nodes for c in j.candidates if c.accelerator == a.name), default=0) for j in d.jobs)
            serving_ub = serving_nodes_ub(d, v, s.name, a.name)
            needed = _training_nodes(d, v, a.name, s.name)
            if serving_ub:
                sn = define_total(m, v, K("serving_nodes", acc=a.name, site=s.name), serving_nodes_expr(d, v, a.name, s.name))
                v.serving_nodes[a.name, s.name] = sn
                ub += serving_ub
                needed = needed + sn
            if ub == 0:
                continue
            if whole:
                ub = -(-ub // a.rack_nodes) * a.rack_nodes
            placed = []
            for o, npr in s.nodes_per_rack[a.name].items():
                if npr <= 0:
                    continue
                coords = dict(acc=a.name, cooling=o, site=s.name)
                n = m.add_var(K("nodes", **coords), lb=0, ub=ub, integer=True)
                r = m.add_var(K("racks", **coords), lb=0, ub=-(-ub // npr), integer=True)
                v.nodes[a.name, o, s.name], v.racks[a.name, o, s.name] = n, r
                if whole:
                    m.add_constraint(npr * r == n, K("whole_racks", **coords))
                else:
                    m.add_constraint(npr * r >= n, K("rack_density", **coords))
                placed.append(n)
            if whole:  # a rack's trays beyond what the workloads use are bought all the same
                m.add_constraint(lin_sum(placed) >= needed, K("node_count", acc=a.name, site=s.name))
            else:
                m.add_constraint(lin_sum(placed) == needed, K("node_count", acc=a.name, site=s.name))
        if s.max_racks is not None:
            m.add_constraint(lin_sum(r for (_, _, site), r in v.racks.items() if site == s.name) <= s.max_racks,
                             K("rack_space", site=s.name))


def check_nodes_and_racks(a: Audit) -> None:
    """Per site: open where used, nodes cover the workloads, allowed cooling, racks hold the nodes
    under power and space, rack space. Records each site's node power."""
    cat = a.instance.catalog
    for sd in a.sol.design.sites:
        site, tag = a.sites[sd.name], a.tag(sd.name)
        if a.used[sd.name] and not sd.open:
            a.problem(f"{tag}hosts workloads but is not open (its build-out is not paid)")
        for acc, n in a.need_nodes[sd.name].items():
            have = sum(sd.nodes.get(acc, {}).values())
            if have < n:
                a.problem(f"{tag}{acc}: workloads need {n} nodes, design buys {have}")
        for acc, by_o in sd.nodes.items():
            spec = cat.accelerators[acc]
            for o, n in by_o.items():
                a.node_kw[sd.name] += n * spec.node_power_kw
                if o not in site.cooling:
                    a.problem(f"{tag}{acc}: placed in {o} racks, which the site does not offer")
                    continue
                if spec.liquid_cooled_only and o == "air":
                    a.problem(f"{tag}{acc}: liquid-cooled only, placed in air racks")
                per_rack = rack_holds(spec, o, site.cooling[o].max_kw_per_rack, site.rack_units_per_rack)
                racks = sd.racks.get(acc, {}).get(o, 0)
                if spec.purchase_unit == "rack" and n != racks * spec.rack_nodes:
                    a.problem(f"{tag}{acc} ({o}): sold in whole racks of {spec.rack_nodes} nodes, design has {n} nodes "
                              f"in {racks} racks")
                if per_rack < 1 or racks * per_rack < n:
                    a.problem(f"{tag}{acc} ({o}): {n} nodes need {math.ceil(n / max(per_rack, 1e-9))} racks at "
                              f"{per_rack} per rack, design has {racks}")
        if site.max_racks is not None and sd.total_racks > site.max_racks:
            a.problem(f"{tag}racks: {sd.total_racks} exceed the limit of {site.max_racks}")
