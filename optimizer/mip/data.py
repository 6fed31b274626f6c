"""The instance turned into plain numbers for the MIP (SkyPilot-style cost table).

Units inside the MIP are scaled so coefficients stay within ~1e-4..1e5: money in $M, power in kW,
storage in TB, bandwidth in GB/s, time in days.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from models.candidates import checkpoint_write_gbps, storage_usable_tb, weights_tb
from models.facility import backup_usable_tb, backup_write_gbps, facility_capex_usd_per_mw, region_spares
from models.network import MAX_TIERS, port_split, tier_capacity
from models.schema import ANY_REGION, Instance
from models.units import rack_holds

import numpy as np

from optimizer.mip.prune import Pruned, PrunedService

USD_PER_MUSD = 1e6
HOURS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class Candidate:
    index: int  # row in the job's JobTable
    accelerator: str
    fabric: str
    nodes: int  # bought: the layout's nodes plus its hot spares (powered, racked and cabled)
    endpoints: int  # fabric ports of every bought node, spares included
    days: float
    read_gbps: float
    spare_nodes: int = 0  # hot spares among `nodes` (models.perf.goodput.spare_nodes)
    rent_musd: float = 0.0  # rented: its duration's rent at the cheaper rate ($M, Accelerator.rent_usd)
    rent_rate: str = ""  # rented: "on-demand" or "committed"
    write_gbps: float = 0.0  # shared-storage writes: checkpoint window or per-accelerator floor (storage_rates)


@dataclass(frozen=True)
class JobData:
    name: str
    deadline_days: float | None
    usable_tb: float
    write_gbps: float  # one checkpoint within its window; each candidate's write_gbps adds the floor
    candidates: list[Candidate]
    backup_tb: float = 0.0  # usable TB of its backup copies (models.facility.backup_usable_tb)
    backup_gbps: float = 0.0  # copy rate at the shortest checkpoint interval of its candidates
    rented: list[Candidate] = field(default_factory=list)  # cloud capacity: no site, no capex, no power


@dataclass(frozen=True)
class ServingLayout:
    index: int  # row in the service's ServiceTable
    accelerator: str
    tp: int  # accelerators per replica
    batch: int
    requests_per_s: float  # per replica, at the load that meets the SLOs (the best site)
    ttft_s: float  # idle replica (prefill pool: prefill plus KV transfer at the best site)
    per_node: int = 8  # accelerators per node of this type
    rented: bool = False
    rent_musd_per_year: float = 0.0  # per unit, rented: the horizon's rent at the cheaper rate, per year
    rent_rate: str = ""  # rented: "on-demand" or "committed"
    role: str = "combined"  # combined | prefill | decode
    # site -> region -> requests/s per replica within every SLO from there (empty: every region
    # `MipData.serves` admits, at requests_per_s). Decode replicas serve their site's prefills.
    reach: dict = field(default_factory=dict, compare=False)
    # A wide-EP replica spanning scale-up domains: the scale-out fabric between its nodes and the
    # endpoints (ports) one replica attaches to it; None / 0 inside one domain.
    fabric: str | None = None
    endpoints: int = 0
    ep: int = 1  # MoE: experts spread over the replica's ep = tp accelerators (attention data-parallel)

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
    survive_site_loss: bool = False  # demand served after the loss of any one site (families/resilience.py)
    spare_rps: dict[str, float] | None = None  # region -> requests/s held spare for N+k (models.facility.region_spares)
    weights_tb: float = 0.0  # model weights kept on shared storage at every open site


@dataclass(frozen=True)
class AcceleratorData:
    name: str
    node_price_musd: float
    node_power_kw: float
    per_node: int = 8  # accelerators per node
    rack_nodes: int = 0  # > 0: sold as whole racks of this many nodes (nodes = rack_nodes x racks)


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
    frontend_ports_per_node: int = 0  # > 0: a site network (front-end, storage, management), ports per node
    port_gbps: float = 0.0


@dataclass(frozen=True)
class StorageData:
    """A storage tier. Per-TB form (unit_tb 0): the variable is raw TB. A system (unit_tb > 0): the
    variable counts whole units, and price/power are per unit."""

    name: str
    price_musd_per_tb: float  # per unit for a system
    power_kw_per_tb: float  # per unit for a system
    gbps_per_tb: float
    replication: float
    unit_tb: float = 0.0  # usable TB per unit
    read_gbs: float = 0.0
    write_gbs: float = 0.0
    rack_units: int = 0
    min_units: int = 0
    in_node: bool = False

    def per_usable_tb(self) -> tuple[float, float, float]:
        """($M, kW, write GB/s) per usable TB; a system's whole-unit figures spread over its usable TB."""
        if self.unit_tb > 0:
            return self.price_musd_per_tb / self.unit_tb, self.power_kw_per_tb / self.unit_tb, self.write_gbs / self.unit_tb
        r = self.replication
        return self.price_musd_per_tb * r, self.power_kw_per_tb * r, self.gbps_per_tb * r


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
    facility_musd_per_kw: float = 0.0  # facility build cost per kW of critical IT (redundancy tier)
    storage_net: FabricData | None = None  # every owned node and shared storage unit
    management: FabricData | None = None  # every owned node
    rack_units: int = 42  # per rack (storage systems fill racks by their rack units)


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

    @property
    def backup_tier(self) -> str | None:
        """Where backup copies go: the shared storage tier cheapest per usable TB (an object tier)."""
        shared = [t for t in self.storage if not t.in_node]
        return min(shared, key=lambda t: (t.per_usable_tb()[0], t.name)).name if shared else None

    def serves(self, site: SiteData, region: str, lay: ServingLayout, svc: ServiceData) -> bool:
        """A replica at `site` serves `region` if the round trip plus its TTFT fits the TTFT SLO."""
        if region == ANY_REGION:
            return True
        rtt = site.rtt_ms.get(region)
        return rtt is not None and rtt / 1000.0 + lay.ttft_s <= svc.ttft_slo_s * (1 + 1e-12)


def _fabric_data(name, f, frontend_ports: int = 0) -> FabricData:
    down, up = port_split(f.switch_radix, f.oversubscription)
    return FabricData(
        name, f.switch_radix, down, up,
        {n: tier_capacity(n, f.switch_radix, f.oversubscription) for n in range(1, MAX_TIERS + 1)},
        f.switch_price_usd / USD_PER_MUSD, f.switch_power_w / 1000.0,
        f.endpoint_price_usd / USD_PER_MUSD, f.endpoint_power_w / 1000.0,
        f.optic_price_usd / USD_PER_MUSD, f.optic_power_w / 1000.0,
        frontend_ports,
        f.port_gbps,
    )


FRONTEND_PREFIX = "frontend:"


def rented_candidates(t, cat) -> list[Candidate]:
    """Rented configurations of a job: per (accelerator, fabric) the feasible layout with the lowest
    rent (whole nodes' accelerators for its wall-clock hours, at the cheaper of on-demand and whole
    committed terms: Accelerator.rent_usd), fewest nodes among ties. Only accelerators with a rental price."""
    job, perf = t.job, t.perf
    ok = perf["fits_memory"].astype(bool) & np.isfinite(t.days)
    if job.deadline_days is not None:
        ok &= t.days <= job.deadline_days
    best: dict[tuple[int, int], tuple] = {}
    for i in np.flatnonzero(ok):
        a, f = int(t.grid.acc[i]), int(t.grid.fab[i])
        spec = cat.accelerators[t.accelerators[a]]
        if not spec.rentable:
            continue
        nodes = int(perf["nodes"][i])
        usd, rate = spec.rent_usd(nodes * spec.accelerators_per_node, float(t.days[i]) * 24.0)
        key = (usd, nodes, int(i), rate)
        if (a, f) not in best or key < best[(a, f)]:
            best[(a, f)] = key
    out = []
    for (a, f), (usd, nodes, i, rate) in sorted(best.items()):
        out.append(Candidate(i, t.accelerators[a], t.fabrics[f], nodes, int(t.endpoints[i]), float(t.days[i]),
                             float(t.read_gbps[i]), rent_musd=usd / USD_PER_MUSD, rent_rate=rate))
    return out


def _procured(instance, service, layouts: list) -> list:
    """Each layout owned, rented, or both, as the service's procurement and the accelerator allow;
    a rented replica bills its accelerators (slots) every hour of the horizon at the cheaper of
    on-demand and whole committed terms (Accelerator.rent_usd), spread per year."""
    cat, mode, out = instance.catalog, instance.procurement_of(service), []
    for lay in layouts:
        spec = cat.accelerators[lay.accelerator]
        if spec.purchase_unit == "rack" and spec.rack_nodes % lay.nodes_per_unit:
            continue  # replicas would straddle racks' scale-up domains
        if mode != "rent" and spec.buyable:
            out.append(lay)
        if mode != "own" and spec.rentable:
            years = instance.budget.horizon_years
            usd, rate = spec.rent_usd(lay.slots, years * HOURS_PER_YEAR)
            out.append(replace(lay, rented=True, rent_musd_per_year=usd / years / USD_PER_MUSD, rent_rate=rate))
    return out


def build_data(instance: Instance, pruned: list[Pruned], pruned_services: list[PrunedService] = ()) -> MipData:
    cat, bud = instance.catalog, instance.budget
    jobs = []
    used_acc, used_fab = set(), set()
    for pr in pruned:
        t = pr.table
        cands = []
        mode = instance.procurement_of(t.job)
        for i in pr.keep:
            i = int(i)
            lay = t.layout(i)
            if mode == "rent" or not cat.accelerators[lay["accelerator"]].buyable:
                continue
            used_acc.add(lay["accelerator"])
            used_fab.add(lay["fabric"])
            working, spares = int(t.perf["nodes"][i]), int(t.perf["spare_nodes"][i])
            ports = cat.accelerators[lay["accelerator"]].fabric_ports_per_node
            cands.append(
                Candidate(
                    index=i,
                    accelerator=lay["accelerator"],
                    fabric=lay["fabric"],
                    nodes=working + spares,
                    endpoints=int(t.endpoints[i]) + spares * ports,
                    days=float(t.days[i]),
                    read_gbps=float(t.read_gbps[i]),
                    spare_nodes=spares,
                    write_gbps=float(t.perf["storage_write_gbps"][i]),
                )
            )
        intervals = [float(t.perf["checkpoint_interval_s"][c.index]) for c in cands]
        backup = (backup_usable_tb(t.job, t.dims), max((backup_write_gbps(t.job, t.dims, x) for x in intervals), default=0.0)) \
            if t.job.backup_copies else (0.0, 0.0)
        rented = rented_candidates(t, cat) if mode != "own" else []
        jobs.append(
            JobData(t.job.name, t.job.deadline_days, storage_usable_tb(t.job, t.dims), checkpoint_write_gbps(t.job, t.dims), cands,
                    backup_tb=backup[0], backup_gbps=backup[1], rented=rented)
        )
    from optimizer.mip.serving_pools import serving_layouts

    services = []
    one_facility = instance.sites is None
    for ps in pruned_services:
        layouts = _procured(instance, ps.table.service, serving_layouts(instance, ps, ServingLayout))
        used_acc.update(lay.accelerator for lay in layouts if not lay.rented)
        used_fab.update(lay.fabric for lay in layouts if lay.fabric and not lay.rented)
        t = ps.table
        spares = region_spares(t, cat, None if one_facility else [x.latency_ms for x in instance.site_list])
        services.append(ServiceData(t.service.name, t.service.regional_demand_rps, t.service.ttft_s, layouts,
                                    survive_site_loss=t.service.survive_site_loss,
                                    spare_rps={r: x["spare_rps"] for r, x in spares.items()},
                                    weights_tb=weights_tb(t.service, t.dims)))
    accs = [AcceleratorData(n, cat.accelerators[n].node_price_usd / USD_PER_MUSD, cat.accelerators[n].node_power_kw,
                            cat.accelerators[n].accelerators_per_node,
                            cat.accelerators[n].rack_nodes if cat.accelerators[n].purchase_unit == "rack" else 0)
            for n in sorted(used_acc)]
    fabs = [_fabric_data(name, cat.fabrics[name]) for name in sorted(used_fab)]
    stor = [
        StorageData(n, s.unit_price_usd / USD_PER_MUSD, s.unit_power_kw, 0.0, 1.0, s.unit_usable_tb, s.unit_read_gbs,
                    s.unit_write_gbs, s.unit_rack_units, s.min_units_per_site, s.in_node) if s.is_system else
        StorageData(n, s.usd_per_tb / USD_PER_MUSD, s.w_per_tb / 1000.0, s.gbps_per_tb, s.replication)
        for n, s in sorted(cat.storage.items())
    ]
    sites = []
    for site in instance.site_list:
        cool = {o: c.capex_usd_per_kw / USD_PER_MUSD for o, c in site.cooling.items()}
        npr = {
            n: {o: rack_holds(a, o, c.max_kw_per_rack, site.rack_units_per_rack) for o, c in site.cooling.items()}
            for n, a in ((n, cat.accelerators[n]) for n in sorted(used_acc))
        }
        # One facility knows no latencies: it serves every region the services name, at 0 ms.
        regions = {r for svc in services for r in svc.demand_rps}
        rtt = {r: 0.0 for r in regions} if one_facility else dict(site.latency_ms)
        fe = site.frontend_fabric
        frontend = None if fe is None else _fabric_data(FRONTEND_PREFIX + fe, cat.frontend_fabrics[fe], site.frontend_ports_per_node)
        nets = {}
        for key, name, ports in (("storage_net", site.storage_fabric, site.storage_ports_per_node),
                                 ("management", site.management_fabric, 1)):
            nets[key] = None if name is None else _fabric_data(f"{key.split('_')[0]}:{name}", cat.frontend_fabrics[name], ports)
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
            facility_musd_per_kw=facility_capex_usd_per_mw(site) / 1000.0 / USD_PER_MUSD,
            rack_units=site.rack_units_per_rack,
            **nets,
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
