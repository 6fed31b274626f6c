"""The instance turned into plain numbers for the MIP (SkyPilot-style cost table).

Units inside the MIP are scaled so coefficients stay within ~1e-4..1e5: money in $M, power in kW,
storage in TB, bandwidth in GB/s, time in days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.candidates import checkpoint_write_gbps, storage_usable_tb
from models.network import MAX_TIERS, port_split, tier_capacity
from models.schema import ANY_REGION, Instance

from optimizer.mip.prune import Pruned, PrunedService

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
    deadline_days: float | None
    usable_tb: float
    write_gbps: float
    candidates: list[Candidate]


@dataclass(frozen=True)
class ServingLayout:
    index: int  # row in the service's ServiceTable
    accelerator: str
    tp: int  # accelerators per replica
    batch: int
    requests_per_s: float  # per replica, at the load that meets the SLOs (the best site)
    ttft_s: float  # idle replica (prefill pool: prefill plus KV transfer at the best site)
    per_node: int = 8  # accelerators per node of this type
    role: str = "combined"  # combined | prefill | decode
    # site -> region -> requests/s per replica within every SLO from there (empty: every region
    # `MipData.serves` admits, at requests_per_s). Decode replicas serve their site's prefills.
    reach: dict = field(default_factory=dict, compare=False)

    @property
    def slots(self) -> int:
        """Accelerators a replica takes in a shared node: its tp when that divides the node (or the
        node divides it), else whole nodes, so packing the total into nodes is always possible."""
        t, n = self.tp, self.per_node
        return t if n % t == 0 or t % n == 0 else n * -(-t // n)

    @property
    def replicas_per_unit(self) -> int:
        return 1

    @property
    def unit_requests_per_s(self) -> float:
        return self.requests_per_s

    @property
    def nodes_per_unit(self) -> float:
        """Nodes one replica occupies when packed (a fraction below a whole node)."""
        return self.slots / self.per_node


@dataclass(frozen=True)
class ServiceData:
    name: str
    demand_rps: dict[str, float]  # region -> requests/s (ANY_REGION: reachable from every site)
    ttft_slo_s: float
    layouts: list[ServingLayout]


@dataclass(frozen=True)
class AcceleratorData:
    name: str
    node_price_musd: float
    node_power_kw: float
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
class SiteData:
    name: str
    pue: float
    power_cap_kw: float | None
    max_racks: int | None
    rack_capex_musd: float
    cooling_capex_musd_per_kw: dict[str, float]
    aux_cooling: str  # cooling option that cools switches and storage (the cheapest per kW)
    nodes_per_rack: dict[str, dict[str, int]]  # accelerator -> cooling option -> whole nodes per rack (0 = not allowed)
    energy_musd_per_kw_year: float
    carbon_t_per_kw_year: float
    site_capex_musd: float
    rtt_ms: dict[str, float]  # region -> round trip; regions absent are unreachable
    frontend: FabricData | None = None


@dataclass(frozen=True)
class MipData:
    name: str
    objective: str
    jobs: list[JobData]
    services: list[ServiceData]
    accelerators: list[AcceleratorData]
    fabrics: list[FabricData]  # training fabrics, built per site
    storage: list[StorageData]
    sites: list[SiteData]
    capex_cap_musd: float | None
    horizon_years: float
    maintenance_fraction: float
    carbon_price_musd_per_t: float = 0.0
    carbon_cap_t_per_year: float | None = None

    def serves(self, site: SiteData, region: str, lay: ServingLayout, svc: ServiceData) -> bool:
        """A replica at `site` serves `region` if the round trip plus its TTFT fits the TTFT SLO."""
        if region == ANY_REGION:
            return True
        rtt = site.rtt_ms.get(region)
        return rtt is not None and rtt / 1000.0 + lay.ttft_s <= svc.ttft_slo_s * (1 + 1e-12)


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
    cat, bud = instance.catalog, instance.budget
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
    from optimizer.mip.serving_pools import serving_layouts

    services = []
    for ps in pruned_services:
        layouts = serving_layouts(instance, ps)
        used_acc.update(lay.accelerator for lay in layouts)
        services.append(ServiceData(ps.table.service.name, ps.table.service.regional_demand_rps, ps.table.service.ttft_s,
                                    layouts))
    accs = [AcceleratorData(n, cat.accelerators[n].node_price_usd / USD_PER_MUSD, cat.accelerators[n].node_power_kw,
                            cat.accelerators[n].accelerators_per_node) for n in sorted(used_acc)]
    fabs = [_fabric_data(name, cat.fabrics[name]) for name in sorted(used_fab)]
    stor = [
        StorageData(n, s.usd_per_tb / USD_PER_MUSD, s.w_per_tb / 1000.0, s.gbps_per_tb, s.replication)
        for n, s in sorted(cat.storage.items())
    ]
    one_facility = instance.sites is None
    sites = []
    for site in instance.site_list:
        cool = {o: c.capex_usd_per_kw / USD_PER_MUSD for o, c in site.cooling.items()}
        npr = {
            n: {o: nodes_per_rack(a.node_power_kw, a.node_rack_units, c.max_kw_per_rack, site.rack_units_per_rack,
                                  allowed=not (a.liquid_cooled_only and o == "air"))
                for o, c in site.cooling.items()}
            for n, a in ((n, cat.accelerators[n]) for n in sorted(used_acc))
        }
        # One facility knows no latencies: it serves every region the services name, at 0 ms.
        regions = {r for svc in services for r in svc.demand_rps}
        rtt = {r: 0.0 for r in regions} if one_facility else dict(site.latency_ms)
        frontend = None
        if services:
            fe = site.frontend_fabric
            frontend = _fabric_data(FRONTEND_PREFIX + fe, cat.frontend_fabrics[fe], site.frontend_ports_per_node)
        sites.append(SiteData(
            name=site.name,
            pue=site.pue,
            power_cap_kw=None if site.power_cap_mw is None else site.power_cap_mw * 1000.0,
            max_racks=site.max_racks,
            rack_capex_musd=site.rack_capex_usd / USD_PER_MUSD,
            cooling_capex_musd_per_kw=cool,
            aux_cooling=min(cool, key=lambda o: (cool[o], o)),
            nodes_per_rack=npr,
            energy_musd_per_kw_year=site.energy_usd_per_kwh * HOURS_PER_YEAR / USD_PER_MUSD,
            carbon_t_per_kw_year=site.carbon_g_per_kwh * HOURS_PER_YEAR / 1e6,
            site_capex_musd=site.site_capex_usd / USD_PER_MUSD,
            rtt_ms=rtt,
            frontend=frontend,
        ))
    return MipData(
        name=instance.name,
        objective=instance.objective,
        jobs=jobs,
        services=services,
        accelerators=accs,
        fabrics=fabs,
        storage=stor,
        sites=sites,
        capex_cap_musd=None if bud.capex_usd is None else bud.capex_usd / USD_PER_MUSD,
        horizon_years=bud.horizon_years,
        maintenance_fraction=bud.maintenance_pct_per_year / 100.0,
        carbon_price_musd_per_t=bud.carbon_price_usd_per_t / USD_PER_MUSD,
        carbon_cap_t_per_year=bud.carbon_cap_t_per_year,
    )
