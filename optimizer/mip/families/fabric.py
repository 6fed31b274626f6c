"""Fabrics: per site, each training fabric is one fat-tree over the endpoints of the jobs placed
there on it, and the serving front-end one over the serving nodes (models.network has the closed
form). Endpoints are split over the depth options so that the chosen depth's capacity and switch
counts apply (a disaggregated form, no big-M beyond each depth's capacity)."""

from __future__ import annotations

import math

from models.network import fat_tree, tier_capacity

from optimizer.mip.audit import Audit
from optimizer.mip.data import FabricData, MipData, SiteData
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars

DEPTHS = (1, 2, 3)


def add_fabric(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (4): the fat-trees of every site (training fabrics and the serving front-end)."""
    for s in d.sites:
        built = []
        for f in d.fabrics:
            attached = lin_sum(
                c.endpoints * v.choose[j.name, k, s.name] for j in d.jobs for k, c in enumerate(j.candidates) if c.fabric == f.name
            )
            most = sum(max((c.endpoints for c in j.candidates if c.fabric == f.name), default=0) for j in d.jobs)
            wide = serving_endpoints(d, v, f.name, s.name)  # wide-EP serving replicas spanning nodes
            if wide:
                attached = attached + lin_sum(e * x for e, x in wide)
                most += int(sum(e * x.ub for e, x in wide))
            _fat_tree(m, v, f, s, attached, most, job_ports(d, v, s.name, lambda c: c.endpoints if c.fabric == f.name else 0))
            built.append(f)
        # The networks every owned node gets besides its compute fabric (training and serving alike).
        owned = [x for (_, _, site), x in v.nodes.items() if site == s.name]
        for f in (s.frontend, s.management):
            if f is not None and owned:
                ports = max(1, f.frontend_ports_per_node)
                _fat_tree(m, v, f, s, lin_sum(ports * x for x in owned), ports * int(sum(x.ub for x in owned)),
                          job_ports(d, v, s.name, lambda c: ports * c.nodes))
                built.append(f)
        v.fabrics_at[s.name] = built


def serving_endpoints(d: MipData, v: Vars, fabric: str, site: str) -> list:
    """(endpoints per replica, replica count variable) of the owned serving layouts whose replicas
    span nodes over `fabric` at `site` (their all-to-all crosses it)."""
    return [(lay.endpoints, v.units[svc.name, k, site]) for svc in d.services for k, lay in enumerate(svc.layouts)
            if lay.fabric == fabric and lay.endpoints and not lay.rented and (svc.name, k, site) in v.units]


def job_ports(d: MipData, v: Vars, site: str, ports) -> list[tuple[str, list[tuple[int, object]]]]:
    """Per job, (ports one of its candidates attaches to a fabric at `site`, its choose variable):
    the ports a job placed there brings on its own, which `depth_for_job` turns into depth floors."""
    return [(j.name, [(ports(c), v.choose[j.name, k, site]) for k, c in enumerate(j.candidates)]) for j in d.jobs]


def _fat_tree(m: Model, v: Vars, f: FabricData, s: SiteData, attached, most: int, jobs=()) -> None:
    """`most`: the most endpoints that can ever attach here; it caps each depth's capacity (a
    3-tier fat-tree of radix 64 holds 65,536 endpoints: a big-M that slows the solvers' cuts), and
    a depth whose shallower sibling already holds `most` is never worth building. `jobs`: per job,
    (ports, choose variable) of its candidates here (job_ports), for the depth_for_job floors."""
    fs = (f.name, s.name)
    at = dict(fabric=f.name, site=s.name)
    for n in DEPTHS:
        useful = n == 1 or f.tier_capacity[n - 1] < most
        cap = min(f.tier_capacity[n], most) if useful else 0
        v.tiers[(*fs, n)] = m.add_var(K("fabric_tiers", **at, tiers=n), lb=0, ub=1 if useful else 0, integer=True)
        v.endpoints[(*fs, n)] = m.add_var(K("endpoints", **at, tiers=n), lb=0.0, ub=cap)
        m.add_constraint(v.endpoints[(*fs, n)] <= cap * v.tiers[(*fs, n)], K("tier_capacity", **at, tiers=n))
    # At most one depth, and only at an open site: implied by the integers, but in the LP relaxation
    # it stops a site that is 25 % open from holding a whole 2-tier fabric (2,048 ports at radix 64)
    # and so from splitting a large fabric into cheap shallow pieces across sites.
    m.add_constraint(lin_sum(v.tiers[(*fs, n)] for n in DEPTHS) <= v.site_open[s.name], K("one_depth", **at))
    m.add_constraint(lin_sum(v.endpoints[(*fs, n)] for n in DEPTHS) == attached, K("endpoints_attached", **at))
    most_sw = _switch_bounds(f, [v.endpoints[(*fs, n)].ub for n in DEPTHS])
    for n in (2, 3):
        leaves = m.add_var(K("leaves", **at, tiers=n), lb=0, ub=most_sw["leaves", n], integer=True)
        spines = m.add_var(K("spines", **at, tiers=n), lb=0, ub=most_sw["spines", n], integer=True)
        v.leaves[(*fs, n)], v.spines[(*fs, n)] = leaves, spines
        m.add_constraint(f.down * leaves >= v.endpoints[(*fs, n)], K("leaf_ports", **at, tiers=n))
    m.add_constraint(f.radix * v.spines[(*fs, 2)] >= f.up * v.leaves[(*fs, 2)], K("spine_ports", **at, tiers=2))
    agg = m.add_var(K("aggregation", **at, tiers=3), lb=0, ub=most_sw["aggregation", 3], integer=True)
    v.aggregation[fs] = agg
    m.add_constraint((f.radix // 2) * agg >= f.up * v.leaves[(*fs, 3)], K("aggregation_ports", **at, tiers=3))
    m.add_constraint(2 * v.spines[(*fs, 3)] >= agg, K("core_ports", **at, tiers=3))
    # Switches only in the depth built, and no depth built without endpoints: an incumbent the
    # solver stops at cannot carry switches the design would not report.
    for n in DEPTHS:
        m.add_constraint(v.endpoints[(*fs, n)] >= v.tiers[(*fs, n)], K("tier_in_use", **at, tiers=n))
    for n in (2, 3):
        switches = v.leaves[(*fs, n)] + v.spines[(*fs, n)] + (agg if n == 3 else 0)
        big_m = sum(ub for (_, t), ub in most_sw.items() if t == n)
        m.add_constraint(switches <= big_m * v.tiers[(*fs, n)], K("switches_in_depth", **at, tiers=n))
    _depth_for_job(m, v, f, fs, at, jobs)


def _switch_bounds(f: FabricData, depth_endpoints: list[float]) -> dict[tuple[str, int], int]:
    """The most switches of each kind a depth can need, from the most endpoints it can hold
    (`depth_endpoints`, by depth 1-3): leaves = ceil(endpoints / down), 2-tier spines = ceil(up x
    leaves / radix), 3-tier aggregation = ceil(up x leaves / (radix / 2)), core = ceil(aggregation / 2),
    the least counts the port rows below allow, so no optimum needs more (switches only cost).
    Per depth, not the 3-tier leaf count for every kind: HiGHS's reduced-cost fixing at the root
    stores up to 1,024 bound steps per integer column with a nonzero reduced cost, at a cost that
    grows with the square of the domain in every cut round; a 2-tier leaf bounded by 1,152 where 48
    suffice paid it (benchmarks/RESULTS.md, "HiGHS's root seconds")."""
    e2, e3 = depth_endpoints[1], depth_endpoints[2]
    leaves2, leaves3 = math.ceil(e2 / f.down - 1e-9), math.ceil(e3 / f.down - 1e-9)
    agg = math.ceil(f.up * leaves3 / (f.radix // 2) - 1e-9)
    return {("leaves", 2): leaves2, ("spines", 2): math.ceil(f.up * leaves2 / f.radix - 1e-9),
            ("leaves", 3): leaves3, ("aggregation", 3): agg, ("spines", 3): math.ceil(agg / 2 - 1e-9)}


def _depth_for_job(m: Model, v: Vars, f: FabricData, fs, at, jobs) -> None:
    """Valid inequalities `depth_for_job[job,fabric,site,deeper_than=n]`: a job whose candidate
    brings more ports than an n-tier tree holds, placed here, needs a deeper tree:
    sum_{c: ports_c > cap_n} choose[j,c,s] <= sum_{n' > n} fabric_tiers[n']. The aggregate rows see
    only the ports' total, so the LP builds a 1-tier fabric at 90 % and a 2-tier one at 10 % for a
    total that no single switch holds, and pays 90 % of the cheap depth (docs/mip.md)."""
    for job, cands in jobs:
        for n in (1, 2):
            big = [x for p, x in cands if p > f.tier_capacity[n]]
            deeper = [v.tiers[(*fs, t)] for t in DEPTHS if t > n]
            if big and deeper:
                m.add_constraint(lin_sum(big) <= lin_sum(deeper), K("depth_for_job", job=job, **at, deeper_than=n))


def storage_unit_ports(spec, port_gbps: float) -> int:
    """Storage-network ports of one shared storage unit: enough for its read or write rate."""
    return 0 if spec.in_node else math.ceil(max(spec.unit_read_gbs, spec.unit_write_gbs) * 8 / port_gbps - 1e-9)


def site_network_endpoints(site, sd, cat) -> dict[str, int]:
    """Endpoints of a site's front-end, storage and management networks, from what the design buys."""
    nodes = sum(n for by_o in sd.nodes.values() for n in by_o.values())
    if not nodes:
        return {}
    out = {} if site.frontend_fabric is None else {f"frontend:{site.frontend_fabric}": nodes * site.frontend_ports_per_node}
    if site.management_fabric is not None:
        out[f"management:{site.management_fabric}"] = nodes
    if site.storage_fabric is not None:
        port = cat.frontend_fabrics[site.storage_fabric].port_gbps
        out[f"storage:{site.storage_fabric}"] = nodes * site.storage_ports_per_node + sum(
            n * storage_unit_ports(cat.storage[t], port) for t, n in sd.storage_units.items())
    return out


def fabric_switches(v: Vars, f: str, s: str):
    return (v.tiers[f, s, 1] + v.leaves[f, s, 2] + v.spines[f, s, 2] + v.leaves[f, s, 3] + v.aggregation[f, s]
            + v.spines[f, s, 3])


def fabric_optics(fd: FabricData, v: Vars, s: str):
    """Two transceivers per switch-to-switch link."""
    f = fd.name
    return 2 * (fd.up * v.leaves[f, s, 2] + fd.up * v.leaves[f, s, 3] + (fd.radix // 2) * v.aggregation[f, s])


def fabric_endpoints(v: Vars, f: str, s: str):
    return lin_sum(v.endpoints[f, s, n] for n in DEPTHS)


def check_fabric(a: Audit) -> None:
    """Every workload's endpoints attached; each fat-tree's depth holds its endpoints and has the
    switches and optics a fat-tree of that depth needs. Records network power and capex per site."""
    cat = a.instance.catalog
    for sd in a.sol.design.sites:
        tag = a.tag(sd.name)
        a.need_endpoints[sd.name].update(site_network_endpoints(a.sites[sd.name], sd, cat))
        built = {f.name: f for f in sd.fabrics}
        for fab, ep in a.need_endpoints[sd.name].items():
            if fab not in built or built[fab].endpoints < ep:
                a.problem(f"{tag}fabric {fab}: workloads attach {ep} endpoints, design has "
                          f"{built[fab].endpoints if fab in built else 0}")
        for f in sd.fabrics:
            spec = cat.frontend_fabrics[f.name.split(":", 1)[1]] if ":" in f.name else cat.fabrics[f.name]
            if f.tiers < 1 or f.endpoints > tier_capacity(f.tiers, spec.switch_radix, spec.oversubscription):
                a.problem(f"{tag}fabric {f.name}: {f.endpoints} endpoints do not fit {f.tiers} tiers of radix {spec.switch_radix}")
                continue
            ref = fat_tree(f.endpoints, spec.switch_radix, spec.oversubscription, tiers=f.tiers)
            for part in ("leaves", "aggregation", "spines", "optics"):
                if getattr(f, part) < getattr(ref, part):
                    a.problem(f"{tag}fabric {f.name}: {getattr(f, part)} {part}, a {f.tiers}-tier fat-tree needs {getattr(ref, part)}")
            a.network_kw[sd.name] += (f.switches * spec.switch_power_w + f.endpoints * spec.endpoint_power_w
                                      + f.optics * spec.optic_power_w) / 1000
            a.network_usd[sd.name] += (f.switches * spec.switch_price_usd + f.endpoints * spec.endpoint_price_usd
                                       + f.optics * spec.optic_price_usd)
