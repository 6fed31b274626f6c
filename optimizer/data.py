"""The instance turned into plain numbers for the MIP (SkyPilot-style cost table).

Units inside the MIP are scaled so coefficients stay within ~1e-4..1e5: money in $M, power in kW,
storage in TB, bandwidth in GB/s, time in days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.candidates import checkpoint_write_gbps, storage_usable_tb
from models.network import MAX_TIERS, port_split, tier_capacity
from models.schema import Instance

from .prune import Pruned, PrunedService

USD_PER_MUSD = 1e6
HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class Candidate:
    index: int  # row in the job's JobTable
    accelerator: str
    fabric: str
    nodes: int
    endpoints: int
    days: float
    read_gbps: float


@dataclass(frozen=True)
class JobData:
    name: str
    deadline_days: float
    usable_tb: float
    write_gbps: float
    candidates: list[Candidate]


@dataclass(frozen=True)
class ServingLayout:
    index: int  # row in the service's ServiceTable
    accelerator: str
    tp: int  # accelerators per replica
    batch: int
    requests_per_s: float  # per replica


@dataclass(frozen=True)
class ServiceData:
    name: str
    demand_rps: float
    layouts: list[ServingLayout]


@dataclass(frozen=True)
class AcceleratorData:
    name: str
    node_price_musd: float
    node_power_kw: float
    nodes_per_rack: dict[str, int]  # cooling option -> whole nodes per rack (0 = not allowed)
    per_node: int = 8  # accelerators per node


@dataclass(frozen=True)
class FabricData:
    name: str
    radix: int
    down: int
    up: int
    tier_capacity: dict[int, int]
    switch_price_musd: float
    switch_power_kw: float
    endpoint_price_musd: float
    endpoint_power_kw: float
    optic_price_musd: float
    optic_power_kw: float
    frontend_ports_per_node: int = 0  # > 0: the front-end network of serving nodes, not a training fabric


@dataclass(frozen=True)
class StorageData:
    name: str
    price_musd_per_tb: float
    power_kw_per_tb: float
    gbps_per_tb: float
    replication: float


@dataclass(frozen=True)
class MipData:
    name: str
    objective: str
    jobs: list[JobData]
    services: list[ServiceData]
    accelerators: list[AcceleratorData]
    fabrics: list[FabricData]
    storage: list[StorageData]
    cooling_capex_musd_per_kw: dict[str, float]
    aux_cooling: str  # cooling option that cools switches and storage (the cheapest per kW)
    pue: float
    power_cap_kw: float | None
    max_racks: int | None
    rack_capex_musd: float
    capex_cap_musd: float | None
    horizon_years: float
    maintenance_fraction: float
    energy_musd_per_kw_year: float


def nodes_per_rack(node_kw: float, node_ru: int, rack_kw: float, rack_ru: int, allowed: bool) -> int:
    """Whole nodes one rack holds under its power and space limits."""
    if not allowed:
        return 0
    return max(0, min(int(math.floor(rack_kw / node_kw + 1e-9)), rack_ru // node_ru))


def _fabric_data(name, f, frontend_ports: int = 0) -> FabricData:
    down, up = port_split(f.switch_radix, f.oversubscription)
    return FabricData(
        name, f.switch_radix, down, up,
        {n: tier_capacity(n, f.switch_radix, f.oversubscription) for n in range(1, MAX_TIERS + 1)},
        f.switch_price_usd / USD_PER_MUSD, f.switch_power_w / 1000.0,
        f.endpoint_price_usd / USD_PER_MUSD, f.endpoint_power_w / 1000.0,
        f.optic_price_usd / USD_PER_MUSD, f.optic_power_w / 1000.0,
        frontend_ports,
    )


FRONTEND_PREFIX = "frontend:"


def build_data(instance: Instance, pruned: list[Pruned], pruned_services: list[PrunedService] = ()) -> MipData:
    cat, fac, bud = instance.catalog, instance.facility, instance.budget
    jobs = []
    used_acc, used_fab = set(), set()
    for pr in pruned:
        t = pr.table
        cands = []
        for i in pr.keep:
            i = int(i)
            lay = t.layout(i)
            used_acc.add(lay["accelerator"])
            used_fab.add(lay["fabric"])
            cands.append(
                Candidate(
                    index=i,
                    accelerator=lay["accelerator"],
                    fabric=lay["fabric"],
                    nodes=int(t.perf["nodes"][i]),
                    endpoints=int(t.endpoints[i]),
                    days=float(t.days[i]),
                    read_gbps=float(t.read_gbps[i]),
                )
            )
        jobs.append(
            JobData(t.job.name, t.job.deadline_days, storage_usable_tb(t.job, t.dims), checkpoint_write_gbps(t.job, t.dims), cands)
        )
    services = []
    for ps in pruned_services:
        t = ps.table
        layouts = []
        for i in ps.keep:
            i = int(i)
            lay = t.layout(i)
            used_acc.add(lay["accelerator"])
            layouts.append(ServingLayout(i, lay["accelerator"], lay["tp"], lay["batch"], float(t.perf["requests_per_s"][i])))
        services.append(ServiceData(t.service.name, t.service.demand_rps, layouts))
    accs = []
    for name in sorted(used_acc):
        a = cat.accelerators[name]
        npr = {
            o: nodes_per_rack(a.node_power_kw, a.node_rack_units, c.max_kw_per_rack, fac.rack_units_per_rack,
                              allowed=not (a.liquid_cooled_only and o == "air"))
            for o, c in fac.cooling.items()
        }
        accs.append(AcceleratorData(name, a.node_price_usd / USD_PER_MUSD, a.node_power_kw, npr, a.accelerators_per_node))
    fabs = [_fabric_data(name, cat.fabrics[name]) for name in sorted(used_fab)]
    if services:
        fe = fac.frontend_fabric
        fabs.append(_fabric_data(FRONTEND_PREFIX + fe, cat.frontend_fabrics[fe], fac.frontend_ports_per_node))
    stor = [
        StorageData(n, s.usd_per_tb / USD_PER_MUSD, s.w_per_tb / 1000.0, s.gbps_per_tb, s.replication)
        for n, s in sorted(cat.storage.items())
    ]
    cool = {o: c.capex_usd_per_kw / USD_PER_MUSD for o, c in fac.cooling.items()}
    return MipData(
        name=instance.name,
        objective=instance.objective,
        jobs=jobs,
        services=services,
        accelerators=accs,
        fabrics=fabs,
        storage=stor,
        cooling_capex_musd_per_kw=cool,
        aux_cooling=min(cool, key=lambda o: (cool[o], o)),
        pue=fac.pue,
        power_cap_kw=fac.power_cap_mw * 1000.0,
        max_racks=fac.max_racks,
        rack_capex_musd=fac.rack_capex_usd / USD_PER_MUSD,
        capex_cap_musd=None if bud.capex_usd is None else bud.capex_usd / USD_PER_MUSD,
        horizon_years=bud.horizon_years,
        maintenance_fraction=bud.maintenance_pct_per_year / 100.0,
        energy_musd_per_kw_year=fac.energy_usd_per_kwh * HOURS_PER_YEAR / USD_PER_MUSD,
    )
