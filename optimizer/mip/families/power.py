"""Power: IT power per site (nodes at their rated maximum, network, storage); facility power =
PUE x IT power, within the site's contracted cap."""

from __future__ import annotations

from optimizer.mip.audit import FEAS_TOL, Audit, close
from optimizer.mip.data import MipData
from optimizer.mip.families.fabric import fabric_endpoints, fabric_optics, fabric_switches
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars, define_total

POWER_PARTS = ("node_power_kw", "network_power_kw", "storage_power_kw", "backup_power_kw")


def add_power(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (6): switches, endpoint NICs/optics and link optics count in network power."""
    node_kw = {a.name: a.node_power_kw for a in d.accelerators}
    for s in d.sites:
        n = s.name
        define_total(m, v, K("node_power_kw", site=n), lin_sum(node_kw[a] * x for (a, _, site), x in v.nodes.items() if site == n))
        define_total(m, v, K("network_power_kw", site=n), lin_sum(
            f.switch_power_kw * fabric_switches(v, f.name, n) + f.endpoint_power_kw * fabric_endpoints(v, f.name, n)
            + f.optic_power_kw * fabric_optics(f, v, n)
            for f in v.fabrics_at[n]
        ))
        define_total(m, v, K("storage_power_kw", site=n), lin_sum(t.power_kw_per_tb * v.storage_tb[t.name, n] for t in d.storage))
        it = define_total(m, v, K("it_power_kw", site=n), lin_sum(v.total(p, site=n) for p in POWER_PARTS))
        fac = define_total(m, v, K("facility_power_kw", site=n), s.pue * it)
        if s.power_cap_kw is not None:
            m.add_constraint(fac <= s.power_cap_kw * v.site_open[n], K("power_cap", site=n))
    define_total(m, v, K("facility_power_kw"), lin_sum(v.total("facility_power_kw", site=s.name) for s in d.sites))


def check_power(a: Audit) -> None:
    """IT power recomputed from what the design buys; facility power within each site's cap."""
    for sd in a.sol.design.sites:
        site, tag = a.sites[sd.name], a.tag(sd.name)
        it_kw = a.node_kw[sd.name] + a.network_kw[sd.name] + a.storage_kw[sd.name] + a.backup_kw[sd.name]
        fac_kw = site.pue * it_kw
        a.facility_kw[sd.name] = fac_kw
        if site.power_cap_mw is not None and fac_kw > site.power_cap_mw * 1000 * (1 + FEAS_TOL):
            a.problem(f"{tag}power: facility {fac_kw / 1000:.3f} MW exceeds the cap of {site.power_cap_mw} MW")
        if not close(it_kw, sd.it_power_kw, rel=1e-5, abs_=1e-3):
            a.problem(f"{tag}power: reported IT {sd.it_power_kw:.3f} kW, recomputed {it_kw:.3f} kW")
    fac_total = sum(a.facility_kw.values())
    a.totals["facility_power_kw"] = fac_total
    if not close(fac_total, a.sol.design.facility_power_kw, rel=1e-5, abs_=1e-3):
        a.problem(f"power: reported facility {a.sol.design.facility_power_kw:,.3f} kW, recomputed {fac_total:,.3f} kW")
