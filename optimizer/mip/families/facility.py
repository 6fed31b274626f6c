"""Facility build cost: shell, power distribution, UPS/generators and the cooling plant, per MW of
critical IT load at the site's redundancy tier (models.facility; docs/reliability.md section 6).

Linear in the IT load the design builds (nodes, network, storage and backups), so it is one
coefficient per site. The cooling options' `capex_usd_per_kw` stays in the `cooling` category and
counts only the in-rack and in-row equipment (CDUs, cold plates, rear-door exchangers); chillers,
towers and air handlers are part of the per-MW figure, so nothing is counted twice.
"""

from __future__ import annotations

from models.facility import facility_capex_usd

from optimizer.mip.audit import Audit
from optimizer.mip.data import MipData
from optimizer.mip.lp import K, Model
from optimizer.mip.vars import Vars, define_total


def add_facility(m: Model, d: MipData, v: Vars) -> None:
    """capex_facility_musd[site] = the tier's $M per kW of critical IT x the site's IT power."""
    for s in d.sites:
        define_total(m, v, K("capex_facility_musd", site=s.name), s.facility_musd_per_kw * v.total("it_power_kw", site=s.name))


def check_facility(a: Audit) -> None:
    """Recomputes the facility build cost from the IT power the design buys (as check_power found
    it) and the site's tier or own figure; check_costs compares it with the reported line."""
    for sd in a.sol.design.sites:
        it_kw = a.node_kw[sd.name] + a.network_kw[sd.name] + a.storage_kw[sd.name] + a.backup_kw[sd.name]
        a.facility_usd[sd.name] = facility_capex_usd(a.sites[sd.name], it_kw / 1000.0)
