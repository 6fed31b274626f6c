"""The instance schema: what must run, what can be bought, and the limits.

Every model is strict (unknown fields are rejected) and frozen. Units live in field names.
Cross-references (a job pinned to an accelerator that is not in the catalog, say) are checked
in `Instance`, after the built-in catalog has been merged in by `models.loader`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Discriminator, Field, PositiveFloat, PositiveInt, Tag, model_validator

from .dims import ModelDims, Strict
from .presets import PRESETS


# --------------------------------------------------------------------------------------------
# Catalog: what can be bought
# --------------------------------------------------------------------------------------------


class Accelerator(Strict):
    """One accelerator type, sold as nodes (servers) of `accelerators_per_node`."""

    peak_bf16_tflops: PositiveFloat = Field(description="Dense BF16/FP16 tensor peak, TFLOP/s (no sparsity).")
    peak_fp8_tflops: Optional[PositiveFloat] = Field(None, description="Dense FP8 peak, TFLOP/s; null if no FP8 units.")
    hbm_gb: PositiveFloat = Field(description="Memory per accelerator, GB.")
    hbm_bw_tbs: PositiveFloat = Field(description="Memory bandwidth per accelerator, TB/s.")
    scaleup_domain: PositiveInt = Field(description="Accelerators in one scale-up domain (NVLink/ICI/XGMI).")
    scaleup_bw_gbs: PositiveFloat = Field(description="Scale-up bandwidth per accelerator, GB/s per direction.")
    accelerators_per_node: PositiveInt = Field(description="Accelerators in one node (server/host).")
    node_power_kw: PositiveFloat = Field(description="Node maximum power, kW (the server rating, not GPU TDP x n).")
    node_price_usd: PositiveFloat = Field(description="Node price, USD (indicative defaults).")
    node_rack_units: PositiveInt = Field(description="Rack units one node occupies.")
    nics_per_node: Optional[PositiveInt] = Field(
        None, description="Scale-out fabric ports per node; default one per accelerator (rail-optimized)."
    )
    liquid_cooled_only: bool = Field(False, description="True if the node can only be liquid cooled.")
    peak_fp4_tflops: Optional[PositiveFloat] = Field(None, description="Dense FP4 (NVFP4/MXFP4) peak, TFLOP/s; null if none.")
    gemm_tflops_measured: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="Measured dense GEMM ceiling per precision (bf16, fp8, mxfp8, nvfp4), TFLOP/s; source in `source`.",
    )
    hbm_bw_measured_tbs: Optional[PositiveFloat] = Field(
        None, description="Measured (achievable) HBM bandwidth, TB/s; null = datasheet x calibration.hbm_efficiency."
    )
    scaleup_busbw_gbs: Optional[PositiveFloat] = Field(
        None, description="Measured all-reduce bus bandwidth inside the scale-up domain, GB/s; null = link rate x efficiency."
    )
    gemm_efficiency_fitted: Optional[float] = Field(
        None, gt=0, le=1, description="Fraction of the datasheet peak dense GEMMs reach, fitted on this accelerator's "
        "published training runs where no GEMM measurement exists (dcopt calibrate); null = not fitted.",
    )
    source: str = Field("", description="Where the figures come from.")

    @property
    def fabric_ports_per_node(self) -> int:
        return self.nics_per_node or self.accelerators_per_node


class Fabric(Strict):
    """A scale-out network technology, built as a folded-Clos (fat-tree) of one switch model."""

    port_gbps: PositiveFloat = Field(description="Bandwidth per endpoint port, Gb/s.")
    latency_us: PositiveFloat = Field(description="End-to-end latency per message, microseconds.")
    switch_radix: PositiveInt = Field(description="Ports per switch at port_gbps.")
    switch_price_usd: PositiveFloat
    switch_power_w: PositiveFloat
    endpoint_price_usd: PositiveFloat = Field(description="NIC plus its cable/optics, per endpoint port, USD.")
    endpoint_power_w: PositiveFloat = Field(description="NIC plus its optics, per endpoint port, W.")
    optic_price_usd: PositiveFloat = Field(description="One transceiver of a switch-to-switch link (two per link), USD.")
    optic_power_w: PositiveFloat = Field(description="One transceiver of a switch-to-switch link, W.")
    oversubscription: float = Field(
        1.0, ge=1.0, description="Leaf down:up port ratio (1 = non-blocking; 3 means 3:1)."
    )
    source: str = ""


class StorageTier(Strict):
    usd_per_tb: PositiveFloat = Field(description="Price per raw TB, USD.")
    w_per_tb: PositiveFloat = Field(description="Power per raw TB, W.")
    gbps_per_tb: PositiveFloat = Field(description="Sustained bandwidth per raw TB, GB/s (gigabytes).")
    replication: float = Field(1.0, ge=1.0, description="Raw TB per usable TB (replication / erasure overhead).")
    source: str = ""


class Calibration(Strict):
    """Knobs of the training performance model, fitted once against published runs (`dcopt calibrate`)."""

    gemm_efficiency_max: float = Field(gt=0, le=1, description="Fraction of peak a large GEMM reaches.")
    gemm_half_dim: float = Field(
        ge=0, description="GEMM dimension at which efficiency is half of the max (small matrices run slower)."
    )
    elementwise_passes: float = Field(
        ge=0, description="HBM passes over a layer's activations (s*b*h) by memory-bound kernels, per layer fwd+bwd."
    )
    attention_passes: float = Field(
        ge=0, description="HBM passes over the attention score matrix (b*a*s^2) per layer fwd+bwd (0 = fused/flash)."
    )
    comm_efficiency: float = Field(gt=0, le=1, description="Fraction of link bandwidth collectives achieve.")
    dp_overlap: float = Field(ge=0, le=1, description="Fraction of the data-parallel all-reduce hidden under backward.")
    memory_reserved_gb: float = Field(ge=0, description="Per accelerator memory lost to runtime, buffers, fragmentation.")
    hbm_efficiency: float = Field(
        0.8, gt=0, le=1, description="Fraction of HBM bandwidth memory-bound serving kernels (decode) reach."
    )
    source: str = ""


class Catalog(Strict):
    accelerators: dict[str, Accelerator]
    fabrics: dict[str, Fabric]
    storage: dict[str, StorageTier]
    calibration: Calibration
    frontend_fabrics: dict[str, Fabric] = Field(
        default_factory=dict, description="Filled by the loader: the front-end network serving nodes attach to."
    )


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


Recompute = Literal["none", "selective", "full", "partial"]
Precision = Literal["bf16", "fp8", "mxfp8", "nvfp4"]
Sharding = Literal["none", "zero1", "zero2", "zero3"]
Stack = Literal["megatron-core", "nemo", "torchtitan", "deepspeed", "maxtext", "megatron-2021"]


class GlobalBatchRange(Strict):
    """A global batch the optimizer may choose inside (it picks what divides the cluster best)."""

    min: PositiveInt
    max: PositiveInt

    @model_validator(mode="after")
    def _check(self) -> "GlobalBatchRange":
        if self.max < self.min:
            raise ValueError(f"global_batch: max ({self.max}) must be >= min ({self.min})")
        return self


class PinnedParallelism(Strict):
    """Fix any part of the layout; what is left out the optimizer chooses."""

    tp: Optional[PositiveInt] = None
    pp: Optional[PositiveInt] = None
    dp: Optional[PositiveInt] = None
    micro_batch: Optional[PositiveInt] = None
    vp: Optional[PositiveInt] = Field(None, description="Interleaved pipeline chunks per stage.")
    recompute: Optional[Recompute] = None
    distributed_optimizer: Optional[bool] = Field(None, description="Shard the optimizer state (ZeRO-1); see sharding.")
    cp: Optional[PositiveInt] = Field(None, description="Context parallel: the sequence split over cp GPUs (ring attention).")
    sharding: Optional[Sharding] = Field(
        None, description="none (DDP), zero1 (optimizer state), zero2 (+gradients), zero3 (+weights: FSDP)."
    )


class TrainingJob(Strict):
    kind: Literal["training"] = "training"
    name: str = Field(min_length=1)
    model: Union[str, ModelDims] = Field(description="A preset name (see `dcopt presets`) or the model's dimensions.")
    seq_len: Optional[PositiveInt] = Field(None, description="Override the preset's sequence length.")
    tokens: PositiveFloat = Field(description="Tokens to train on.")
    deadline_days: PositiveFloat
    global_batch: Union[PositiveInt, GlobalBatchRange] = Field(
        description="Global batch, sequences per step; or {min, max} to let the optimizer choose."
    )
    precision: Precision = Field("bf16", description="Linear-layer GEMM precision: bf16, fp8, mxfp8 or nvfp4.")
    stack: Stack = Field("megatron-core", description="Software stack profile (features and calibrated efficiencies).")
    parallelism: Optional[PinnedParallelism] = None
    accelerator: Optional[str] = Field(None, description="Pin the accelerator type.")
    fabric: Optional[str] = Field(None, description="Pin the fabric.")
    dataset_tb: float = Field(0.0, ge=0, description="Training data kept on storage, TB (usable).")
    data_bytes_per_token: float = Field(4.0, ge=0, description="Bytes read from storage per trained token.")
    checkpoint_interval_hours: PositiveFloat = Field(4.0, description="Hours between checkpoints.")
    checkpoint_window_s: PositiveFloat = Field(
        300.0, description="Seconds allowed to write one checkpoint (training stalls meanwhile)."
    )
    checkpoints_retained: PositiveInt = Field(2, description="Checkpoints kept on storage.")


ServingPrecision = Literal["bf16", "fp8", "int8"]
ANY_REGION = "*"


class InferenceService(Strict):
    """An LLM serving service: a demand to meet under latency SLOs, with replicas of any layout."""

    kind: Literal["inference"]
    name: str = Field(min_length=1)
    model: Union[str, ModelDims] = Field(description="A preset name or the model's dimensions.")
    precision: ServingPrecision = Field("bf16", description="Weights: bf16 (2 B), fp8 (1 B) or int8 (1 B, weight-only).")
    requests_per_s: Optional[PositiveFloat] = Field(None, description="Demand, requests per second.")
    output_tokens_per_s: Optional[PositiveFloat] = Field(None, description="Demand as output tokens per second.")
    demand_by_region: Optional[dict[str, PositiveFloat]] = Field(
        None, description="Demand per region, requests per second; a replica serves a region only if "
        "the site's RTT to it plus TTFT stays within the TTFT SLO."
    )
    input_tokens: PositiveFloat = Field(description="Mean prompt tokens per request.")
    output_tokens: PositiveFloat = Field(description="Mean generated tokens per request.")
    ttft_s: PositiveFloat = Field(description="SLO: time to first token, seconds.")
    tpot_s: PositiveFloat = Field(description="SLO: time per output token, seconds.")
    accelerators: Optional[list[str]] = Field(None, description="Only these accelerator types may serve it.")

    @model_validator(mode="after")
    def _check(self) -> "InferenceService":
        given = [x is not None for x in (self.requests_per_s, self.output_tokens_per_s, self.demand_by_region)]
        if sum(given) != 1:
            raise ValueError("give exactly one of requests_per_s, output_tokens_per_s or demand_by_region")
        return self

    @property
    def regional_demand_rps(self) -> dict[str, float]:
        """Requests/s per region; a service without regions has one, ANY_REGION, reachable from every site."""
        if self.demand_by_region is not None:
            return dict(self.demand_by_region)
        rps = self.requests_per_s if self.requests_per_s is not None else self.output_tokens_per_s / self.output_tokens
        return {ANY_REGION: rps}

    @property
    def demand_rps(self) -> float:
        return sum(self.regional_demand_rps.values())

    @property
    def demand_output_tokens_per_s(self) -> float:
        return self.demand_rps * self.output_tokens


def _workload_kind(v) -> str:
    return v.get("kind", "training") if isinstance(v, dict) else getattr(v, "kind", "training")


Workload = Annotated[
    Union[Annotated[TrainingJob, Tag("training")], Annotated[InferenceService, Tag("inference")]],
    Discriminator(_workload_kind),
]


# --------------------------------------------------------------------------------------------
# Facility, budget, objective
# --------------------------------------------------------------------------------------------


class CoolingOption(Strict):
    max_kw_per_rack: PositiveFloat
    capex_usd_per_kw: float = Field(ge=0, description="Cooling capex per kW of IT load cooled.")


class Facility(Strict):
    power_cap_mw: PositiveFloat = Field(description="Contracted facility power (PUE included), MW.")
    pue: float = Field(1.3, ge=1.0, description="Facility power / IT power.")
    energy_usd_per_kwh: float = Field(0.08, ge=0)
    cooling: dict[Literal["air", "liquid"], CoolingOption] = Field(
        default_factory=lambda: {
            "air": CoolingOption(max_kw_per_rack=40.0, capex_usd_per_kw=1500.0),
            "liquid": CoolingOption(max_kw_per_rack=120.0, capex_usd_per_kw=3000.0),
        }
    )
    rack_units_per_rack: PositiveInt = 42
    max_racks: Optional[PositiveInt] = None
    rack_capex_usd: float = Field(20000.0, ge=0, description="Rack, PDUs and cabling per rack, USD.")
    frontend_fabric: str = Field(
        "eth-100g", description="Network serving nodes attach to (a catalog fabric); serving needs no training fabric."
    )
    frontend_ports_per_node: PositiveInt = Field(1, description="Front-end ports per serving node.")

    @model_validator(mode="after")
    def _check(self) -> "Facility":
        if not self.cooling:
            raise ValueError("at least one cooling option (air or liquid) is needed")
        return self


class Site(Facility):
    """One place to build: a facility plus what makes places differ (carbon, build-out, latency)."""

    name: str = Field(min_length=1)
    carbon_g_per_kwh: float = Field(0.0, ge=0, description="Grid carbon intensity, gCO2 per kWh.")
    site_capex_usd: float = Field(0.0, ge=0, description="Build-out capex, paid only if the site is used.")
    latency_ms: dict[str, float] = Field(
        default_factory=dict, description="Network round-trip time to each demand region, ms (absent = unreachable)."
    )


class Budget(Strict):
    capex_usd: Optional[PositiveFloat] = Field(None, description="Capex cap, USD; null = no cap.")
    horizon_years: PositiveFloat = Field(5.0, description="TCO horizon, years.")
    maintenance_pct_per_year: float = Field(3.0, ge=0, description="Maintenance opex, % of capex per year.")
    carbon_price_usd_per_t: float = Field(
        0.0, ge=0, description="Carbon price, USD per tCO2; when set, TCO includes carbon cost over the horizon."
    )
    carbon_cap_t_per_year: Optional[PositiveFloat] = Field(None, description="Cap on emissions, tCO2 per year.")


Objective = Literal["min_tco", "min_capex", "min_power", "min_time", "min_carbon"]


class Instance(Strict):
    name: str = "instance"
    description: str = ""
    catalog: Catalog
    workloads: list[Workload] = Field(min_length=1)
    facility: Optional[Facility] = Field(None, description="A single site; or give `sites`.")
    sites: Optional[list[Site]] = Field(None, description="Several places to build; or give `facility`.")
    budget: Budget = Field(default_factory=Budget)
    objective: Objective = "min_tco"

    @model_validator(mode="after")
    def _cross_refs(self) -> "Instance":
        names = [w.name for w in self.workloads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"workload names must be unique; repeated: {', '.join(dup)}")
        for i, w in enumerate(self.workloads):
            if isinstance(w.model, str) and w.model not in PRESETS:
                raise ValueError(
                    f"workloads[{i}].model: unknown preset '{w.model}' (known: {', '.join(sorted(PRESETS))}; "
                    "or give the dimensions)"
                )
            if isinstance(w, InferenceService):
                for a in w.accelerators or []:
                    if a not in self.catalog.accelerators:
                        raise ValueError(
                            f"workloads[{i}].accelerators: '{a}' is not in the catalog "
                            f"(available: {', '.join(sorted(self.catalog.accelerators))})"
                        )
                continue
            if w.accelerator is not None and w.accelerator not in self.catalog.accelerators:
                raise ValueError(
                    f"workloads[{i}].accelerator: '{w.accelerator}' is not in the catalog "
                    f"(available: {', '.join(sorted(self.catalog.accelerators))})"
                )
            if w.fabric is not None and w.fabric not in self.catalog.fabrics:
                raise ValueError(
                    f"workloads[{i}].fabric: '{w.fabric}' is not in the catalog "
                    f"(available: {', '.join(sorted(self.catalog.fabrics))})"
                )
        if self.objective == "min_time" and (len(self.training_jobs) != 1 or self.services):
            raise ValueError("objective min_time needs exactly one training job and no services")
        if (self.facility is None) == (self.sites is None):
            raise ValueError("give either `facility` (one site) or `sites` (several), not both and not neither")
        if self.sites is not None:
            if not self.sites:
                raise ValueError("sites: give at least one site")
            names = [x.name for x in self.sites]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"sites: names must be unique; repeated: {', '.join(dup)}")
        for i, site in enumerate(self.site_list):
            where = "facility" if self.facility is not None else f"sites[{i}]"
            if self.services and site.frontend_fabric not in self.catalog.frontend_fabrics:
                raise ValueError(f"{where}.frontend_fabric: '{site.frontend_fabric}' is not a known fabric")
        regions = {r for site in self.site_list for r in site.latency_ms}
        for i, w in enumerate(self.workloads):
            if isinstance(w, InferenceService) and w.demand_by_region:
                if self.sites is None:
                    continue  # one facility: it serves every region, latency unknown (0 ms)
                missing = sorted(set(w.demand_by_region) - regions)
                if missing:
                    raise ValueError(
                        f"workloads[{i}].demand_by_region: no site gives a latency to {', '.join(missing)} "
                        "(add it to some site's latency_ms)"
                    )
        return self

    @property
    def site_list(self) -> list["Site"]:
        """The sites; a single `facility` is one site named after the instance."""
        if self.sites is not None:
            return list(self.sites)
        return [Site(name="site", **self.facility.model_dump())]

    @property
    def training_jobs(self) -> list[TrainingJob]:
        return [w for w in self.workloads if isinstance(w, TrainingJob)]

    @property
    def services(self) -> list[InferenceService]:
        return [w for w in self.workloads if isinstance(w, InferenceService)]


def instance_file_schema() -> dict:
    """JSON Schema of an instance *file*: like `Instance`, but the catalog section only selects and
    overrides built-in entries (any field may be given; new entries must give all of them)."""
    schema = Instance.model_json_schema()
    defs = schema.setdefault("$defs", {})

    def partial(name: str) -> dict:
        d = dict(defs[name])
        d.pop("required", None)
        return d

    section = lambda name: {  # noqa: E731
        "anyOf": [
            {"type": "array", "items": {"type": "string"}, "description": "Built-in entries to offer, by name."},
            {"type": "object", "additionalProperties": partial(name), "description": "Name -> field overrides."},
        ]
    }
    schema["properties"]["catalog"] = {
        "type": "object",
        "additionalProperties": False,
        "description": "Omit a section to offer every built-in entry of that kind.",
        "properties": {
            "accelerators": section("Accelerator"),
            "fabrics": section("Fabric"),
            "storage": section("StorageTier"),
            "calibration": partial("Calibration"),
        },
    }
    schema["required"] = [r for r in schema.get("required", []) if r != "catalog"]
    return schema
