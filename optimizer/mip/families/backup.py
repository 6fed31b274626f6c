"""Backups: `backup_copies` of each job's dataset and retained checkpoints on the object tier (the
storage tier cheapest per usable TB), at a second site when there are several (never the job's
own), at the job's site otherwise. Counted in capacity, in the bandwidth to copy every checkpoint
before the next one (at the shortest interval among the job's candidates), in storage power and
in its own capex line (tier price plus the aux cooling of its power)."""

from __future__ import annotations

from models.candidates import checkpoint_tb, storage_usable_tb
from models.presets import resolve_model

from optimizer.mip.audit import FEAS_TOL, Audit
from optimizer.mip.data import MipData
from optimizer.mip.families.jobs import recompute_job
from optimizer.mip.families.resilience import max_flow_shortfall
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars, define_total


def add_backup(m: Model, d: MipData, v: Vars) -> None:
    jobs = [j for j in d.jobs if j.backup_tb > 0 or j.backup_gbps > 0]
    tier = next((t for t in d.storage if t.name == d.backup_tier), None)
    multi = len(d.sites) > 1
    share: dict[tuple[str, str], object] = {}
    for j in jobs:
        for s in d.sites:
            if not multi:
                share[j.name, s.name] = 1.0
                continue
            x = m.add_var(K("backup_share", job=j.name, site=s.name), lb=0.0, ub=1.0)
            here = lin_sum(v.choose[j.name, k, s.name] for k in range(len(j.candidates)))
            m.add_constraint(x + here <= 1, K("backup_elsewhere", job=j.name, site=s.name))
            m.add_constraint(x <= v.site_open[s.name], K("backup_at_open_site", job=j.name, site=s.name))
            share[j.name, s.name] = x
        if multi:
            m.add_constraint(lin_sum(share[j.name, s.name] for s in d.sites) == 1, K("backup_placed", job=j.name))
    for s in d.sites:
        n = s.name
        if jobs and tier is not None:
            # Usable TB on the backup tier, bought by the TB at its per-usable-TB figures (a storage
            # system's whole-unit price, power and write rate spread over its usable TB).
            musd_tb, kw_tb, gbps_tb = tier.per_usable_tb()
            tb = v.backup_tb[n] = m.add_var(K("backup_tb", tier=tier.name, site=n), lb=0.0)
            m.add_constraint(tb >= lin_sum(j.backup_tb * share[j.name, n] for j in jobs), K("backup_capacity", site=n))
            m.add_constraint(gbps_tb * tb >= lin_sum(j.backup_gbps * share[j.name, n] for j in jobs),
                             K("backup_bandwidth", site=n))
            kw = kw_tb * tb
            usd = musd_tb * tb + s.cooling_capex_musd_per_kw[s.aux_cooling] * kw
        else:
            kw = usd = 0.0
        define_total(m, v, K("backup_power_kw", site=n), kw + lin_sum([]))
        define_total(m, v, K("capex_backup_musd", site=n), usd + lin_sum([]))


def check_backup(a: Audit) -> None:
    """Each job's copies fit the backup capacity and bandwidth of the sites allowed to hold them
    (capacity and bandwidth each checked as a split over those sites). Records backup power and capex."""
    inst, cat = a.instance, a.instance.catalog
    need_tb, need_gbps, home = {}, {}, {}
    for w in inst.training_jobs:
        if not w.backup_copies:
            continue
        job = next((j for j in a.sol.jobs if j.name == w.name), None)
        if job is None:
            continue
        dims = resolve_model(w.model, w.seq_len)
        need_tb[w.name] = w.backup_copies * storage_usable_tb(w, dims)
        interval = recompute_job(inst, job.name, job.layout)["checkpoint_interval_s"]  # the chosen layout's, recomputed
        need_gbps[w.name] = w.backup_copies * checkpoint_tb(dims) * 1000.0 / interval
        home[w.name] = job.site
    have_tb, have_gbps = {}, {}
    for sd in a.sol.design.sites:
        site = a.sites[sd.name]
        cool = {o: c.capex_usd_per_kw for o, c in site.cooling.items()}
        aux = min(cool, key=lambda o: (cool[o], o))
        for t, tb in sd.backup_tb.items():
            usd_tb, w_tb, gbps_tb = cat.storage[t].per_usable_tb()  # tb: usable TB
            have_tb[sd.name] = have_tb.get(sd.name, 0.0) + tb
            have_gbps[sd.name] = have_gbps.get(sd.name, 0.0) + tb * gbps_tb
            kw = tb * w_tb / 1000.0
            a.backup_kw[sd.name] += kw
            a.backup_usd[sd.name] += tb * usd_tb + kw * cool[aux]
    if not need_tb:
        return
    multi = len(a.sites) > 1
    for what, have, need, unit in (("capacity", have_tb, need_tb, "usable TB"), ("bandwidth", have_gbps, need_gbps, "GB/s")):
        groups = [(have.get(s, 0.0), {j for j in need if not multi or home[j] != s}) for s in sorted(a.sites)]
        short = max_flow_shortfall(groups, need)
        for j, x in sorted(short.items()):
            if x > need[j] * FEAS_TOL + 1e-6:
                where = "at other sites" if multi else "on the backup tier"
                a.problem(f"job {j}: backup copies need {need[j]:.3f} {unit} {where}, the design has {need[j] - x:.3f}")
