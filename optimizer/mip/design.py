"""The typed answer: the design (what to buy), each job's configuration, costs, and solver facts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


LAYOUT_FIELDS = ("accelerator", "fabric", "tp", "pp", "dp", "micro_batch", "vp", "recompute", "distributed_optimizer")


@dataclass
class JobResult:
    name: str
    accelerator: str
    fabric: str
    tp: int
    pp: int
    dp: int
    micro_batch: int
    vp: int
    recompute: str
    distributed_optimizer: bool
    site: str
    accelerators: int
    nodes: int  # the layout's; its hot spares are bought on top (spare_nodes)
    days: float  # wall clock, checkpoint stalls and failures included
    deadline_days: float | None
    tokens_per_s: float
    mfu: float
    tflops_per_gpu_hw: float
    tflops_per_gpu_model: float
    memory_per_gpu_gb: float
    candidates_enumerated: int
    candidates_fit_memory: int
    candidates_meet_deadline: int
    candidates_in_mip: int
    # Layouts evaluated (node-order pruning stops early); fit_memory and meet_deadline count among these.
    candidates_evaluated: int | None = None
    layout_extra: dict = field(default_factory=dict)  # layout keys the performance model adds (flattened in JSON)
    spare_nodes: int = 0  # hot spares bought for the job (counted in nodes, racks, power, fabric and cost)
    goodput: float = 1.0  # useful training time / wall clock (models.perf.goodput)
    interruptions_per_day: float = 0.0
    checkpoint_interval_s: float | None = None  # None: the job never fails
    time_to_train_failure_free_days: float | None = None
    procurement: str = "own"  # own | rent (rented: site "cloud", billed rent_usd for its duration)
    rent_usd: float = 0.0
    rent_rate: str = ""  # rented: the price billed, "on-demand" or "committed" (models.schema.Accelerator)
    # Owned: what it asks of shared storage (models.candidates.storage_rates): usable_tb, write_gbps and
    # read_gbps with the term that sets each (write_sized_by, read_sized_by), checkpoint_write_s, checkpoint_reload_s.
    storage: dict = field(default_factory=dict)

    @property
    def margin_days(self) -> float | None:
        return None if self.deadline_days is None else self.deadline_days - self.days

    @property
    def layout(self) -> dict:
        """The layout as the performance model takes it (`models.perf.training.evaluate_layout`)."""
        out = {k: getattr(self, k) for k in LAYOUT_FIELDS}
        out.update(self.layout_extra)
        return out


@dataclass
class ReplicaGroup:
    site: str
    regions: dict[str, float]  # requests/s served per region ("*" = the service gave no regions)
    accelerator: str
    tp: int
    batch: int
    replicas: int
    nodes: int  # nodes its replicas touch; replicas of other services and layouts may share them
    requests_per_s_each: float  # capacity per replica within the SLOs (prefill: prompts/s; decode: requests/s)
    output_tokens_per_s_each: float
    ttft_s: float  # idle replica (prefill: prefill + KV transfer; decode: 0, its TTFT share is under load)
    tpot_s: float  # full batch, no queueing (prefill: 0)
    memory_per_acc_gb: float
    procurement: str = "own"  # own | rent (rented: cloud capacity near the site, billed per accelerator-hour)
    rent_usd_per_year: float = 0.0
    rent_rate: str = ""  # rented: "on-demand" or "committed" (the cheaper over the horizon)
    role: str = "combined"  # combined | prefill | decode
    node_share: float = 0.0  # replicas x accelerators per replica / accelerators per node
    kv_transfer_s: float = 0.0  # prefill: the prompt's KV cache to a decode replica over the front-end fabric
    utilization: float = 0.0  # at the load the group carries
    ttft_p99_s: float = 0.0  # at that load (prefill: + KV transfer; decode: its added wait)
    tpot_p99_s: float = 0.0
    # Wide EP (MoE): a replica spanning scale-up domains names the scale-out fabric its all-to-all
    # crosses and attaches endpoints (fabric ports) to it; None / 0 otherwise.
    fabric: str | None = None
    endpoints: int = 0
    ep: int = 1  # MoE: expert-parallel replica (experts over its tp = ep accelerators, attention data-parallel)


@dataclass
class ServiceResult:
    name: str
    demand_rps: float
    served_rps: float
    output_tokens_per_s: float  # demand
    ttft_slo_s: float
    tpot_slo_s: float
    groups: list[ReplicaGroup]
    tco_share_usd: float  # TCO allocated by share of compute capex (the nodes it occupies)
    cost_per_million_output_tokens_usd: float  # at full demand, 24/7 over the horizon
    candidates_enumerated: int
    candidates_meet_slo: int
    candidates_in_mip: int
    survive_site_loss: bool = False  # the demand stays served after the loss of any one site
    availability: float | None = None
    spare_replicas: dict[str, int] = field(default_factory=dict)  # region -> k of N+k (models.facility.region_spares)

    @property
    def worst_ttft_s(self) -> float:
        return max(g.ttft_s for g in self.groups)

    @property
    def worst_tpot_s(self) -> float:
        return max(g.tpot_s for g in self.groups)


@dataclass
class FabricResult:
    name: str  # "frontend:<fabric>" for the serving front-end network
    site: str
    endpoints: int
    tiers: int
    leaves: int
    aggregation: int
    spines: int
    optics: int  # switch-to-switch transceivers

    @property
    def switches(self) -> int:
        return self.leaves + self.aggregation + self.spines


@dataclass
class SiteResult:
    name: str
    open: bool
    nodes: dict[str, dict[str, int]]  # accelerator -> cooling -> nodes
    racks: dict[str, dict[str, int]]  # accelerator -> cooling -> racks
    fabrics: list[FabricResult]
    storage_tb: dict[str, float]  # raw TB per tier
    node_power_kw: float
    network_power_kw: float
    storage_power_kw: float
    it_power_kw: float
    facility_power_kw: float
    capex_usd: dict[str, float]  # compute, network, storage, racks, cooling, site, total
    energy_usd_per_year: float
    carbon_t_per_year: float
    backup_tb: dict[str, float] = field(default_factory=dict)  # usable TB per tier holding backup copies of other data
    storage_units: dict[str, int] = field(default_factory=dict)  # whole units per storage system
    storage_racks: int = 0  # racks holding storage systems (priced, not counted against max_racks)
    # Needed versus bought: usable_tb, write_gbps, read_gbps (each `_needed` and bought) and `sized_by`,
    # the requirement the storage is bought to (capacity, write bandwidth, read bandwidth, smallest cluster).
    storage_sizing: dict = field(default_factory=dict)

    @property
    def total_racks(self) -> int:
        return sum(n for by_o in self.racks.values() for n in by_o.values())


@dataclass
class Design:
    sites: list[SiteResult]
    it_power_kw: float
    facility_power_kw: float
    capex_usd: dict[str, float]  # by category over all sites, and total
    energy_usd_per_year: float
    maintenance_usd_per_year: float
    carbon_t_per_year: float
    carbon_usd_per_year: float
    tco_usd: float
    rent_jobs_usd: float = 0.0  # rented training jobs, for their duration (one-off)
    rent_services_usd_per_year: float = 0.0  # rented serving replicas, every year of the horizon

    @property
    def nodes(self) -> dict[str, dict[str, int]]:
        """Nodes over all sites: accelerator -> cooling -> nodes."""
        out: dict[str, dict[str, int]] = {}
        for s in self.sites:
            for acc, by_o in s.nodes.items():
                for o, n in by_o.items():
                    out.setdefault(acc, {})[o] = out.get(acc, {}).get(o, 0) + n
        return out

    @property
    def racks(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for s in self.sites:
            for acc, by_o in s.racks.items():
                for o, n in by_o.items():
                    out.setdefault(acc, {})[o] = out.get(acc, {}).get(o, 0) + n
        return out

    @property
    def fabrics(self) -> list[FabricResult]:
        return [f for s in self.sites for f in s.fabrics]

    @property
    def storage_tb(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.sites:
            for t, tb in s.storage_tb.items():
                out[t] = out.get(t, 0.0) + tb
        return out

    @property
    def node_power_kw(self) -> float:
        return sum(s.node_power_kw for s in self.sites)

    @property
    def network_power_kw(self) -> float:
        return sum(s.network_power_kw for s in self.sites)

    @property
    def storage_power_kw(self) -> float:
        return sum(s.storage_power_kw for s in self.sites)

    def total_nodes(self, acc: str) -> int:
        return sum(self.nodes.get(acc, {}).values())

    @property
    def total_racks(self) -> int:
        return sum(s.total_racks for s in self.sites)

    def site(self, name: str) -> SiteResult:
        return next(s for s in self.sites if s.name == name)


@dataclass
class Solution:
    instance: str
    objective: str
    status: str  # optimal | feasible | infeasible | time_limit | error
    objective_value: Optional[float] = None  # in the objective's unit: USD, kW or days
    best_bound: Optional[float] = None
    gap: Optional[float] = None
    backend: str = ""
    solver: str = ""
    runtime_s: float = 0.0
    jobs: list[JobResult] = field(default_factory=list)
    services: list[ServiceResult] = field(default_factory=list)
    design: Optional[Design] = None
    diagnosis: list[str] = field(default_factory=list)  # why infeasible, in the instance's units
    message: str = ""
    verified: bool = False
    mip_size: dict[str, int] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)  # the MIP's named totals over all sites, MIP units
    procurement: list[dict] = field(default_factory=list)  # own-versus-rent study of `either` workloads
    incumbent_source: str = ""  # "solver" | "heuristic" (the start, optimizer/mip/start.py, as improved by mip/improve.py)
    start_objective_value: Optional[float] = None  # the constructive start's objective, reported unit
    first_design_s: Optional[float] = None  # seconds from the start of the run to the first complete design
    work: dict = field(default_factory=dict)  # {"nodes": explored, "work_limit": nodes or None, "stopped_by": ...}
    phases_s: dict = field(default_factory=dict)  # seconds: prepare, build, start, improve, solve, verify
    decomposition: dict = field(default_factory=dict)  # when decomposed: LP bound, restricted solve, seconds
    improvement: dict = field(default_factory=dict)  # the LP-restricted re-solve of the start: objective, LP bound, cutoff

    @property
    def has_design(self) -> bool:
        return self.design is not None

    def to_dict(self) -> dict:
        out = asdict(self)
        for j, job in zip(out["jobs"], self.jobs):
            j.update(j.pop("layout_extra"))
            j["margin_days"] = job.margin_days
        if self.design is not None:
            for site_out, site in zip(out["design"]["sites"], self.design.sites):
                for f, fab in zip(site_out["fabrics"], site.fabrics):
                    f["switches"] = fab.switches
            out["design"]["nodes"] = self.design.nodes
            out["design"]["storage_tb"] = self.design.storage_tb
        return out
