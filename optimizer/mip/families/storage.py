"""Storage: per site, tiers holding the datasets and retained checkpoints of the jobs placed there
and the weights of every served model, fast enough for checkpoint writes and data reads.

A tier is a purchasable system bought in whole units (usable TB, read and write GB/s, a smallest
cluster per site, rack units) or, in the older form, raw TB priced per TB. Units in the nodes
(local NVMe) serve data reads only, one per owned node at most. Storage racks are priced like
compute racks but not counted against max_racks (like switches)."""

from __future__ import annotations

import math

from optimizer.mip.audit import FEAS_TOL, Audit
from optimizer.mip.families.fabric import _fat_tree, job_ports
from optimizer.mip.data import MipData
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars

STORAGE_RACK = "storage"  # key of storage racks in Vars.racks: (STORAGE_RACK, aux cooling, site)


def add_storage(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (5): usable capacity for datasets, retained checkpoints and served weights; write
    bandwidth per chosen layout (a checkpoint within its window, at least the per-accelerator floor)
    and read bandwidth (the largest of data reads at its token rate, the per-accelerator floor and
    every replica reloading the checkpoint within its reload time: models.candidates.storage_rates).
    With per-TB tiers only, one bandwidth pool serves both (the older model)."""
    systems = any(t.unit_tb > 0 for t in d.storage)
    for s in d.sites:
        placed = {j.name: lin_sum(v.choose[j.name, k, s.name] for k in range(len(j.candidates))) for j in d.jobs}
        usable = lin_sum(j.usable_tb * placed[j.name] for j in d.jobs)
        weights = sum(svc.weights_tb for svc in d.services)
        need = usable + weights * v.site_open[s.name] if weights else usable
        read = lin_sum(c.read_gbps * v.choose[j.name, k, s.name] for j in d.jobs for k, c in enumerate(j.candidates))
        write = lin_sum(c.write_gbps * v.choose[j.name, k, s.name] for j in d.jobs for k, c in enumerate(j.candidates))
        most_tb = sum(j.usable_tb for j in d.jobs) + weights
        most_gbs = sum(max((c.write_gbps + c.read_gbps for c in j.candidates), default=0.0) for j in d.jobs)
        clusters = []  # storage_bought of the shared tiers
        for t in d.storage:
            at = dict(tier=t.name, site=s.name)
            if t.unit_tb <= 0:
                v.storage_tb[t.name, s.name] = m.add_var(K("storage_tb", **at), lb=0.0)
                continue
            rate = t.read_gbs if t.in_node else min(t.read_gbs, t.write_gbs)
            ub = max(t.min_units, math.ceil((0 if t.in_node else most_tb / t.unit_tb) + most_gbs / rate + 1e-9))
            units = m.add_var(K("storage_units", **at), lb=0, ub=ub, integer=True)
            v.storage_tb[t.name, s.name] = units
            if t.min_units > 0:
                used = m.add_binary(K("storage_bought", **at))
                m.add_constraint(units >= t.min_units * used, K("storage_min_units", **at))
                m.add_constraint(units <= ub * used, K("storage_bought_link", **at))
                if not t.in_node:
                    clusters.append(used)
            if t.in_node:
                owned = lin_sum(x for (_, _, site), x in v.nodes.items() if site == s.name)
                m.add_constraint(units <= owned, K("storage_in_nodes", **at))
        if clusters and len(clusters) == sum(not t.in_node for t in d.storage):
            _cluster_for_job(m, d, s, clusters, placed)
        tiers = [(t, v.storage_tb[t.name, s.name]) for t in d.storage]
        legacy_cap = lin_sum(x * (1.0 / t.replication) for t, x in tiers if t.unit_tb <= 0)
        legacy_bw = lin_sum(t.gbps_per_tb * x for t, x in tiers if t.unit_tb <= 0)
        shared = legacy_cap + lin_sum(t.unit_tb * x for t, x in tiers if t.unit_tb > 0 and not t.in_node)
        local = lin_sum(t.unit_tb * x for t, x in tiers if t.unit_tb > 0 and t.in_node)
        if weights and any(t.in_node and t.unit_tb > 0 for t in d.storage):
            # Datasets and checkpoints on shared tiers; served weights may also sit on the nodes' own drives.
            m.add_constraint(shared >= usable, K("storage_capacity", site=s.name))
            m.add_constraint(shared + local >= need, K("storage_capacity_weights", site=s.name))
        else:
            m.add_constraint(shared >= need, K("storage_capacity", site=s.name))
        if not systems:
            m.add_constraint(legacy_bw >= read + write, K("storage_bandwidth", site=s.name))
            continue
        m.add_constraint(legacy_bw + lin_sum(t.write_gbs * x for t, x in tiers if t.unit_tb > 0 and not t.in_node) >= write,
                         K("storage_write_bandwidth", site=s.name))
        m.add_constraint(legacy_bw + lin_sum(t.read_gbs * x for t, x in tiers if t.unit_tb > 0) >= read,
                         K("storage_read_bandwidth", site=s.name))
        _storage_network(m, d, v, s, tiers)
        ru = [(t.rack_units, x) for t, x in tiers if t.unit_tb > 0 and t.rack_units > 0]
        if ru:
            most = sum(r * x.ub for r, x in ru)
            racks = m.add_var(K("storage_racks", site=s.name), lb=0, ub=math.ceil(most / s.rack_units), integer=True)
            v.racks[STORAGE_RACK, s.aux_cooling, s.name] = racks
            m.add_constraint(s.rack_units * racks >= lin_sum(r * x for r, x in ru), K("storage_rack_space", site=s.name))


def _cluster_for_job(m: Model, d: MipData, s, clusters, placed) -> None:
    """Valid inequalities `storage_cluster_for_job[job,site]`: a job's dataset sits on a shared
    tier, and every shared tier is bought as at least its smallest cluster, so a site holding a job
    buys some tier's cluster: sum_t storage_bought[t,s] >= sum_c choose[j,c,s]. Without them the
    LP buys 60 % of a 4-unit cluster and pays 60 % of it (docs/mip.md)."""
    for j in d.jobs:
        if j.usable_tb > 0:
            m.add_constraint(lin_sum(clusters) >= placed[j.name], K("storage_cluster_for_job", job=j.name, site=s.name))


def _storage_network(m: Model, d: MipData, v: Vars, s, tiers) -> None:
    """The storage network: a fat-tree over every owned node's storage ports and each shared unit's."""
    f = s.storage_net
    owned = [x for (_, _, site), x in v.nodes.items() if site == s.name]
    if f is None or not owned:
        return
    per_node = max(1, f.frontend_ports_per_node)
    unit_ports = [(math.ceil(max(t.read_gbs, t.write_gbs) * 8 / f.port_gbps - 1e-9), x) for t, x in tiers
                  if t.unit_tb > 0 and not t.in_node]
    attached = lin_sum(per_node * x for x in owned) + lin_sum(p * x for p, x in unit_ports)
    most = per_node * int(sum(x.ub for x in owned)) + int(sum(p * x.ub for p, x in unit_ports))
    _fat_tree(m, v, f, s, attached, most, job_ports(d, v, s.name, lambda c: per_node * c.nodes))
    v.fabrics_at[s.name].append(f)


SIZED_BY = ("capacity", "write bandwidth", "read bandwidth")


def storage_sizing(d: MipData, picked, amounts: dict[str, float], site_open: bool) -> dict:
    """Needed versus bought at one site, and what the storage is bought to: the requirement it
    covers most tightly, or "smallest cluster" when every one has room (the minimum units bind).
    `picked`: the (job, candidate) pairs placed there; `amounts`: units (systems) or raw TB per tier."""
    need = {"usable_tb": sum(j.usable_tb for j, _ in picked) + (sum(s.weights_tb for s in d.services) if site_open else 0.0),
            "write_gbps": sum(c.write_gbps for _, c in picked), "read_gbps": sum(c.read_gbps for _, c in picked)}
    have = dict.fromkeys(need, 0.0)
    legacy = not any(t.unit_tb > 0 for t in d.storage)
    for t in d.storage:
        x = amounts.get(t.name, 0.0)
        if t.unit_tb <= 0:
            have["usable_tb"] += x / t.replication
            have["write_gbps"] += x * t.gbps_per_tb
            have["read_gbps"] += x * t.gbps_per_tb
        else:
            have["usable_tb"] += x * t.unit_tb  # local drives hold served weights only; counted here for the ratio
            have["write_gbps"] += 0.0 if t.in_node else x * t.write_gbs
            have["read_gbps"] += x * t.read_gbs
    if legacy:  # one bandwidth pool serves writes and reads at once
        need["write_gbps"] = need["read_gbps"] = need["write_gbps"] + need["read_gbps"]
    out = {**{f"{k}_needed": v for k, v in need.items()}, **have, "sized_by": ""}
    ratios = {why: need[k] / have[k] for why, k in zip(SIZED_BY, need) if have[k] > 0 and need[k] > 0}
    if ratios:
        why = max(ratios, key=ratios.get)
        smallest = any(t.min_units and amounts.get(t.name, 0) == t.min_units for t in d.storage)
        out["sized_by"] = "smallest cluster" if smallest and ratios[why] < 0.98 else why
    return out


def storage_capacity(tiers, sd) -> tuple[float, float, float, int]:
    """Shared usable TB, write GB/s, read GB/s, rack units filled, and usable TB on the nodes' own
    drives (served weights only), from the design."""
    cap = bw_w = bw_r = 0.0
    ru = 0
    local = 0.0
    for t, tb in sd.storage_tb.items():
        spec = tiers[t]
        if not spec.is_system:
            cap += tb / spec.replication
            bw_w += tb * spec.gbps_per_tb
            bw_r += tb * spec.gbps_per_tb
    for t, n in sd.storage_units.items():
        spec = tiers[t]
        cap += 0.0 if spec.in_node else n * spec.unit_usable_tb
        local += n * spec.unit_usable_tb if spec.in_node else 0.0
        bw_w += 0.0 if spec.in_node else n * spec.unit_write_gbs
        bw_r += n * spec.unit_read_gbs
        ru += n * spec.unit_rack_units
    return cap, bw_w, bw_r, ru, local


def check_storage(a: Audit) -> None:
    """Capacity and bandwidth per site against the jobs placed there (their needs recomputed by
    models.candidates.layout_storage in check_job_choice) and the served weights; whole
    units, smallest clusters, local drives within the nodes, storage racks. Records storage power and capex."""
    inst = a.instance
    tiers = inst.catalog.storage
    systems = any(t.is_system for t in tiers.values())
    weights = sum(svc_weights_tb(inst))
    for sd in a.sol.design.sites:
        tag = a.tag(sd.name)
        w = weights if sd.open or a.one_facility else 0.0
        cap, bw_w, bw_r, ru, local = storage_capacity(tiers, sd)
        if cap < a.usable_tb[sd.name] * (1 - FEAS_TOL) - 1e-6:
            a.problem(f"{tag}storage: {cap:.2f} shared usable TB, datasets and checkpoints need {a.usable_tb[sd.name]:.2f}")
        if cap + local < (a.usable_tb[sd.name] + w) * (1 - FEAS_TOL) - 1e-6:
            a.problem(f"{tag}storage: {cap + local:.2f} usable TB, workloads and served weights need "
                      f"{a.usable_tb[sd.name] + w:.2f}")
        if not systems:
            if bw_w < (a.need_gbps[sd.name] + a.need_read_gbps[sd.name]) * (1 - FEAS_TOL) - 1e-6:
                a.problem(f"{tag}storage: {bw_w:.2f} GB/s, jobs need {a.need_gbps[sd.name] + a.need_read_gbps[sd.name]:.2f} "
                          "(checkpoint writes + data reads)")
        else:
            if bw_w < a.need_gbps[sd.name] * (1 - FEAS_TOL) - 1e-6:
                a.problem(f"{tag}storage: writes at {bw_w:.2f} GB/s, jobs need {a.need_gbps[sd.name]:.2f} "
                          "(checkpoints within the window, per-accelerator floor)")
            if bw_r < a.need_read_gbps[sd.name] * (1 - FEAS_TOL) - 1e-6:
                a.problem(f"{tag}storage: reads at {bw_r:.2f} GB/s, jobs need {a.need_read_gbps[sd.name]:.2f} "
                          "(data reads, per-accelerator floor, restart reload)")
        owned_nodes = sum(n for by_o in sd.nodes.values() for n in by_o.values())
        for t, n in sd.storage_units.items():
            spec = tiers[t]
            if 0 < n < spec.min_units_per_site:
                a.problem(f"{tag}storage {t}: {n} units, its smallest cluster is {spec.min_units_per_site}")
            if spec.in_node and n > owned_nodes:
                a.problem(f"{tag}storage {t}: {n} units inside {owned_nodes} nodes")
        site = a.sites[sd.name]
        if sd.storage_racks * site.rack_units_per_rack < ru:
            a.problem(f"{tag}storage: {ru} rack units need {math.ceil(ru / site.rack_units_per_rack)} racks, design has "
                      f"{sd.storage_racks}")
        a.storage_kw[sd.name] = (sum(tb * tiers[t].w_per_tb for t, tb in sd.storage_tb.items() if not tiers[t].is_system) / 1000
                                 + sum(n * tiers[t].unit_power_kw for t, n in sd.storage_units.items()))
        a.storage_usd[sd.name] = (sum(tb * tiers[t].usd_per_tb for t, tb in sd.storage_tb.items() if not tiers[t].is_system)
                                  + sum(n * tiers[t].unit_price_usd for t, n in sd.storage_units.items()))


def svc_weights_tb(inst) -> list[float]:
    from models.candidates import weights_tb
    from models.presets import resolve_model

    return [weights_tb(s, resolve_model(s.model)) for s in inst.services]
