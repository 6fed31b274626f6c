"""Costs: capex by category and site ($M), yearly opex (energy, maintenance, carbon), TCO over the
horizon, the capex budget and the carbon cap."""

from __future__ import annotations

from optimizer.mip.audit import FEAS_TOL, Audit, close
from optimizer.mip.data import HOURS_PER_YEAR, USD_PER_MUSD, MipData
from optimizer.mip.families.fabric import fabric_endpoints, fabric_optics, fabric_switches
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars, define_total

CAPEX_PARTS = ("compute", "network", "storage", "racks", "cooling", "site", "facility", "backup")


def add_costs(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (7): cooling capex is per kW of IT load: nodes at their rack's option, switches and
    storage at the cheapest option of the site. Energy is billed at facility power for the whole
    horizon; carbon = energy x the site's grid intensity."""
    price = {a.name: a.node_price_musd for a in d.accelerators}
    node_kw = {a.name: a.node_power_kw for a in d.accelerators}
    for s in d.sites:
        n = s.name
        define_total(m, v, K("capex_compute_musd", site=n), lin_sum(price[a] * x for (a, _, site), x in v.nodes.items() if site == n))
        define_total(m, v, K("capex_network_musd", site=n), lin_sum(
            f.switch_price_musd * fabric_switches(v, f.name, n) + f.endpoint_price_musd * fabric_endpoints(v, f.name, n)
            + f.optic_price_musd * fabric_optics(f, v, n)
            for f in v.fabrics_at[n]
        ))
        define_total(m, v, K("capex_storage_musd", site=n), lin_sum(st.price_musd_per_tb * v.storage_tb[st.name, n] for st in d.storage))
        define_total(m, v, K("capex_racks_musd", site=n), lin_sum(s.rack_capex_musd * r for (_, _, site), r in v.racks.items() if site == n))
        cooled = lin_sum(s.cooling_capex_musd_per_kw[o] * node_kw[a] * x for (a, o, site), x in v.nodes.items() if site == n)
        aux = s.cooling_capex_musd_per_kw[s.aux_cooling] * (v.total("network_power_kw", site=n) + v.total("storage_power_kw", site=n))
        define_total(m, v, K("capex_cooling_musd", site=n), cooled + aux)
        define_total(m, v, K("capex_site_musd", site=n), s.site_capex_musd * v.site_open[n])
        define_total(m, v, K("capex_musd", site=n), lin_sum(v.total(f"capex_{p}_musd", site=n) for p in CAPEX_PARTS))
        define_total(m, v, K("energy_musd_per_year", site=n), s.energy_musd_per_kw_year * v.total("facility_power_kw", site=n))
        define_total(m, v, K("carbon_t_per_year", site=n), s.carbon_t_per_kw_year * v.total("facility_power_kw", site=n))
    for p in CAPEX_PARTS:
        define_total(m, v, K(f"capex_{p}_musd"), lin_sum(v.total(f"capex_{p}_musd", site=s.name) for s in d.sites))
    capex = define_total(m, v, K("capex_musd"), lin_sum(v.total(f"capex_{p}_musd") for p in CAPEX_PARTS))
    define_total(m, v, K("energy_musd_per_year"), lin_sum(v.total("energy_musd_per_year", site=s.name) for s in d.sites))
    carbon = define_total(m, v, K("carbon_t_per_year"), lin_sum(v.total("carbon_t_per_year", site=s.name) for s in d.sites))
    define_total(m, v, K("carbon_musd_per_year"), d.carbon_price_musd_per_t * carbon)
    define_total(m, v, K("maintenance_musd_per_year"), d.maintenance_fraction * capex)
    # Rented capacity: no capex, power or racks; jobs pay for their duration, services every year.
    rent_jobs = define_total(m, v, K("rent_jobs_musd"), lin_sum(
        c.rent_musd * v.rent[j.name, k] for j in d.jobs for k, c in enumerate(j.rented)))
    rent_svc = define_total(m, v, K("rent_services_musd_per_year"), lin_sum(
        next(s for s in d.services if s.name == svc).layouts[k].rent_musd_per_year * x
        for (svc, k, _), x in v.units.items() if next(s for s in d.services if s.name == svc).layouts[k].rented))
    define_total(m, v, K("tco_musd"), capex + rent_jobs + d.horizon_years * (
        v.total("energy_musd_per_year") + v.total("maintenance_musd_per_year") + v.total("carbon_musd_per_year") + rent_svc))
    if d.capex_cap_musd is not None:
        m.add_constraint(capex <= d.capex_cap_musd, K("capex_budget"))
    if d.carbon_cap_t_per_year is not None:
        m.add_constraint(carbon <= d.carbon_cap_t_per_year, K("carbon_cap"))


def rent_usd(inst, sol) -> tuple[float, float]:
    """Rent from the design alone, at the cheaper of on-demand and whole committed terms
    (Accelerator.rent_usd): a rented job bills its whole nodes' accelerators for its wall-clock
    hours; a rented replica group its accelerators for every hour of the horizon, per year."""
    cat, years = inst.catalog.accelerators, inst.budget.horizon_years
    jobs = sum(cat[j.accelerator].rent_usd(j.nodes * cat[j.accelerator].accelerators_per_node, j.days * 24.0)[0]
               for j in sol.jobs if j.procurement == "rent")
    def slots(g):  # accelerators a rented replica bills: its tp, or whole nodes when tp does not fit one
        n = cat[g.accelerator].accelerators_per_node
        return g.tp if n % g.tp == 0 or g.tp % n == 0 else n * -(-g.tp // n)

    svc = sum(g.replicas * cat[g.accelerator].rent_usd(slots(g), years * HOURS_PER_YEAR)[0] / years
              for s in sol.services for g in s.groups if g.procurement == "rent")
    return jobs, svc


def check_costs(a: Audit) -> None:
    """Every capex line per site and in total, energy, carbon, the budget, the carbon cap and TCO,
    recomputed in USD from the design and the instance's prices. Records the totals (MIP units)."""
    inst, d = a.instance, a.sol.design
    cat, bud = inst.catalog, inst.budget
    cap_total = {k: 0.0 for k in CAPEX_PARTS}
    energy = carbon = 0.0
    for sd in d.sites:
        site, tag = a.sites[sd.name], a.tag(sd.name)
        cool_usd = {o: c.capex_usd_per_kw for o, c in site.cooling.items()}
        aux = min(cool_usd, key=lambda o: (cool_usd[o], o))
        capex = {
            "compute": sum(n * cat.accelerators[x].node_price_usd for x, by_o in sd.nodes.items() for n in by_o.values()),
            "network": a.network_usd[sd.name],
            "storage": a.storage_usd[sd.name],
            "racks": (sd.total_racks + sd.storage_racks) * site.rack_capex_usd,
            "cooling": sum(n * cat.accelerators[x].node_power_kw * cool_usd.get(o, 0) for x, by_o in sd.nodes.items()
                           for o, n in by_o.items()) + (a.network_kw[sd.name] + a.storage_kw[sd.name]) * cool_usd[aux],
            "site": site.site_capex_usd if sd.open else 0.0,
            "facility": a.facility_usd[sd.name],
            "backup": a.backup_usd[sd.name],
        }
        for k, val in capex.items():
            cap_total[k] += val
        capex["total"] = sum(capex.values())
        for k, val in capex.items():
            if not close(val, sd.capex_usd[k], rel=1e-5, abs_=1.0):
                a.problem(f"{tag}capex {k}: reported ${sd.capex_usd[k]:,.0f}, recomputed ${val:,.0f}")
        fac_kw = a.facility_kw[sd.name]
        energy += fac_kw * HOURS_PER_YEAR * site.energy_usd_per_kwh
        carbon += fac_kw * HOURS_PER_YEAR * site.carbon_g_per_kwh / 1e6
    capex_total = sum(cap_total.values())
    for k, val in {**cap_total, "total": capex_total}.items():
        if not close(val, d.capex_usd[k], rel=1e-5, abs_=1.0):
            a.problem(f"capex {k}: reported ${d.capex_usd[k]:,.0f}, recomputed ${val:,.0f}")
    if bud.capex_usd is not None and capex_total > bud.capex_usd * (1 + FEAS_TOL):
        a.problem(f"capex ${capex_total:,.0f} exceeds the budget of ${bud.capex_usd:,.0f}")
    if bud.carbon_cap_t_per_year is not None and carbon > bud.carbon_cap_t_per_year * (1 + FEAS_TOL):
        a.problem(f"carbon {carbon:,.1f} tCO2/yr exceeds the cap of {bud.carbon_cap_t_per_year:,.1f}")
    maint = capex_total * bud.maintenance_pct_per_year / 100
    carbon_usd = carbon * bud.carbon_price_usd_per_t
    rent_jobs, rent_svc = rent_usd(inst, a.sol)
    for j in a.sol.jobs:
        acc = cat.accelerators[j.accelerator]
        rate = acc.rent_usd(j.nodes * acc.accelerators_per_node, j.days * 24.0)[1] if j.procurement == "rent" else ""
        if j.rent_rate != rate:
            a.problem(f"job {j.name}: rented at the {j.rent_rate or 'no'} rate, the cheaper is {rate or 'none (owned)'}")
    for s in a.sol.services:
        for g in s.groups:
            acc = cat.accelerators[g.accelerator]
            rate = acc.rent_usd(g.tp, bud.horizon_years * HOURS_PER_YEAR)[1] if g.procurement == "rent" else ""
            if g.rent_rate != rate:
                a.problem(f"service {s.name}: a {g.accelerator} group rented at the {g.rent_rate or 'no'} rate, the "
                          f"cheaper is {rate or 'none (owned)'}")
    for what, val, rep in (("rented jobs", rent_jobs, d.rent_jobs_usd), ("rented serving per year", rent_svc,
                                                                          d.rent_services_usd_per_year)):
        if not close(val, rep, rel=1e-5, abs_=1.0):
            a.problem(f"{what}: reported ${rep:,.0f}, recomputed ${val:,.0f}")
    tco = capex_total + rent_jobs + bud.horizon_years * (energy + maint + carbon_usd + rent_svc)
    if not close(tco, d.tco_usd, rel=1e-5, abs_=1.0):
        a.problem(f"TCO: reported ${d.tco_usd:,.0f}, recomputed ${tco:,.0f}")
    musd = 1 / USD_PER_MUSD
    a.totals.update({f"capex_{k}_musd": x * musd for k, x in cap_total.items()})
    a.totals.update(rent_jobs_musd=rent_jobs * musd, rent_services_musd_per_year=rent_svc * musd)
    a.totals.update(capex_musd=capex_total * musd, energy_musd_per_year=energy * musd, carbon_t_per_year=carbon,
                    carbon_musd_per_year=carbon_usd * musd, maintenance_musd_per_year=maint * musd, tco_musd=tco * musd)
