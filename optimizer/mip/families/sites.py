"""Sites: which are built (`site_open`), and the cover cuts that make the LP see forced build-outs."""

from __future__ import annotations

import math
from dataclasses import replace

from optimizer.mip.audit import Audit
from optimizer.mip.data import MipData
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars

COVER_MAX_SITES = 10


def add_sites(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (0): a site is open if anything is placed there. One site is simply open."""
    single = len(d.sites) == 1
    for s in d.sites:
        v.site_open[s.name] = m.add_var(K("site_open", site=s.name), lb=1 if single else 0, ub=1, integer=True)


def check_sites(a: Audit) -> None:
    """The design answers for exactly the instance's sites (nothing else can be checked without them)."""
    d = a.sol.design
    if {s.name for s in d.sites} != set(a.sites):
        a.problem(f"the design's sites {sorted(s.name for s in d.sites)} are not the instance's {sorted(a.sites)}")


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
    """Constraint (0b), valid inequalities: if a set of sites cannot power even the least IT load the
    workloads need, some site outside it is open. Implied by the integer model, but not by its LP
    relaxation, where each job may sit a fraction at a site that is then built by that fraction only (and pays that share of
    its build-out): these cuts make the bound see the build-out a capped site forces. Exhaustive over
    site sets up to COVER_MAX_SITES sites; beyond that, single sites and their complements only."""
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
        m.add_constraint(lin_sum(v.site_open.values()) >= at_least, K("site_count", "least_sites_for_least_it_power"))
    short = [t for t in subsets if sum(caps[n] for n in t) < need]
    maximal = [t for t in short if not any(t < u for u in short)]
    for t in sorted(maximal, key=sorted):
        rest = [n for n in names if n not in t]
        m.add_constraint(lin_sum(v.site_open[n] for n in rest) >= 1,
                         K("site_cover", closed_alone_too_small="+".join(sorted(t))))


def check_site_cover(a: Audit) -> None:
    """Nothing to check: valid inequalities cut no integer design (the power check covers the caps)."""


def identical_sites(d: MipData) -> list[list[str]]:
    """Groups (2 or more, in instance order) of sites the MIP cannot tell apart: equal data in
    every field but the name, and every serving layout reaching the same regions at the same rates
    from each. Relabelling them maps any design onto another of the same cost, power and carbon."""
    def reach(s):
        return [[lay.reach.get(s.name) for lay in svc.layouts] for svc in d.services]

    groups: list[tuple[object, list, list[str]]] = []
    for s in d.sites:
        key, r = replace(s, name=""), reach(s)
        for g in groups:
            if g[0] == key and g[1] == r:
                g[2].append(s.name)
                break
        else:
            groups.append((key, r, [s.name]))
    return [names for _, _, names in groups if len(names) > 1]


def add_site_symmetry(m: Model, d: MipData, v: Vars) -> None:
    """Symmetry breaking among identical sites (after power: it orders their IT power). Within a
    group, in instance order: `site_order`: y_s >= y_next (open sites first) and `site_load_order`:
    it_power_kw[s] >= it_power_kw[next] (the busier first). Any design, its identical sites sorted
    by (open, IT power), meets both rows (a closed site holds nothing, 0 kW, unless a costlier
    design puts equipment there), so the optimum stays; the solver stops exploring the k! copies
    of each design that only permute the sites. Only for objectives and bounds that treat the
    sites alike (build_model's `symmetry`; a per-site measure would break the symmetry)."""
    for names in identical_sites(d):
        for a, b in zip(names, names[1:]):
            m.add_constraint(v.site_open[a] >= v.site_open[b], K("site_order", site=a, next=b))
            m.add_constraint(v.total("it_power_kw", site=a) >= v.total("it_power_kw", site=b),
                             K("site_load_order", site=a, next=b))


def check_site_symmetry(a: Audit) -> None:
    """Nothing to check: the rows only choose among relabellings of the same design."""
