"""The instance schema: what must run, what can be bought, and the limits.

Every model is strict (unknown fields are rejected) and frozen. Units live in field names.
Cross-references (a job pinned to an accelerator that is not in the catalog, say) are checked
in `Instance`, after the built-in catalog has been merged in by `models.loader`.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

from pydantic import (
    AfterValidator, Discriminator, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, StringConstraints, Tag,
    field_validator, model_validator,
)

from .dims import ModelDims, Strict
from .metrics import objectives
from .presets import PRESETS


def _printable(v: str) -> str:
    if not v.isprintable():
        bad = next(c for c in v if not c.isprintable())
        raise ValueError(f"names must be printable text; this one holds {bad!r}")
    return v


# Names appear in tables, MIP variable names and file names: printable and short.
Name = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_printable)]
Text = Annotated[str, StringConstraints(max_length=10_000)]
# Physical maxima: generous (10-1000x today's largest figures) but finite, so no coefficient
# reaching the MIP is absurd (a carbon price of 1e19 $/t made SCIP abort).
HOURS_PER_YEAR = 8760.0
MIN_DEMAND_RPS = 1e-3  # below this a replica's share rounds away inside solver tolerances
# Shared storage bought per training accelerator: NVIDIA DGX SuperPOD RA-11333-001 Table 6, "best"
# per scalable unit of 32 DGX H100 nodes (256 GPUs): 125 GB/s read, 62 GB/s write; Meta's Llama 3
# storage (arXiv 2407.21783 sec. 3.3.1: 7 TB/s peak on a 16K-GPU run) is the same order.
STORAGE_READ_GBS_PER_ACC = 125 / 256
STORAGE_WRITE_GBS_PER_ACC = 62 / 256
InterruptionClass = Literal["gpu", "hbm", "host", "network", "software", "planned"]
Redundancy = Literal["N", "N+1", "2N"]
PurchaseUnit = Literal["node", "rack", "rented"]
Procurement = Literal["own", "rent", "either"]


# --------------------------------------------------------------------------------------------
# Catalog: what can be bought
# --------------------------------------------------------------------------------------------


class Accelerator(Strict):
    """One accelerator type, sold as nodes (servers) of `accelerators_per_node`."""

    peak_bf16_tflops: PositiveFloat = Field(le=1e5, description="Dense BF16/FP16 tensor peak, TFLOP/s (no sparsity).")
    peak_fp8_tflops: Optional[PositiveFloat] = Field(None, le=1e5, description="Dense FP8 peak, TFLOP/s; null if no FP8 units.")
    hbm_gb: PositiveFloat = Field(le=1e5, description="Memory per accelerator, GB.")
    hbm_bw_tbs: PositiveFloat = Field(le=1e3, description="Memory bandwidth per accelerator, TB/s.")
    scaleup_domain: PositiveInt = Field(le=100_000, description="Accelerators in one scale-up domain (NVLink/ICI/XGMI).")
    scaleup_bw_gbs: PositiveFloat = Field(le=1e5, description="Scale-up bandwidth per accelerator, GB/s per direction.")
    accelerators_per_node: PositiveInt = Field(le=1024, description="Accelerators in one node (server/host).")
    node_power_kw: PositiveFloat = Field(le=1e3, description="Node maximum power, kW (the server rating, not GPU TDP x n).")
    node_price_usd: PositiveFloat = Field(le=1e9, description="Node price, USD (indicative defaults).")
    node_rack_units: PositiveInt = Field(le=1000, description="Rack units one node occupies.")
    nics_per_node: Optional[PositiveInt] = Field(
        None, le=1024, description="Scale-out fabric ports per node; default one per accelerator (rail-optimized)."
    )
    liquid_cooled_only: bool = Field(False, description="True if the node can only be liquid cooled.")
    peak_fp4_tflops: Optional[PositiveFloat] = Field(None, le=1e5, description="Dense FP4 (NVFP4/MXFP4) peak, TFLOP/s; null if none.")
    gemm_tflops_measured: dict[Name, Annotated[PositiveFloat, Field(le=1e5)]] = Field(
        default_factory=dict,
        description="Measured dense GEMM ceiling per precision (bf16, fp8, mxfp8, nvfp4), TFLOP/s; source in `source`.",
    )
    gemm_tflops_derived: dict[Name, Annotated[PositiveFloat, Field(le=1e5)]] = Field(
        default_factory=dict,
        description="Dense GEMM ceiling per precision derived from a measured sibling part with the same datasheet "
        "rate at that precision, scaled by the sustained-clock power law (board power / sibling's)^(1/3) "
        "(models.perf.training.power_clock_factor); used where nothing is measured; derivation in `source`.",
    )
    hbm_bw_measured_tbs: Optional[PositiveFloat] = Field(
        None, le=1e3, description="Measured (achievable) HBM bandwidth, TB/s; null = datasheet x calibration.hbm_efficiency."
    )
    scaleup_busbw_gbs: Optional[PositiveFloat] = Field(
        None, le=1e5, description="Measured all-reduce bus bandwidth inside the scale-up domain, GB/s; null = link rate x efficiency."
    )
    interruptions_per_acc_hour: dict[InterruptionClass, NonNegativeFloat] = Field(
        default_factory=dict,
        description="Job interruptions per accelerator-hour by class (gpu, hbm, host, network, software, planned); "
        "classes left out take the defaults of models/data/reliability.yaml (Llama 3 405B run).",
    )
    pcie_bw_gbs: Optional[PositiveFloat] = Field(
        None, le=10_000,
        description="Host PCIe bandwidth per accelerator, GB/s per direction, used by tensor parallelism when "
        "there is no scale-up fabric (scaleup_domain 1); null = 32 (PCIe Gen4 x16).",
    )
    gemm_efficiency_fitted: Optional[float] = Field(
        None, gt=0, le=1, description="Fraction of the datasheet peak dense GEMMs reach, fitted on this accelerator's "
        "published training runs where no GEMM measurement exists (dcopt calibrate); null = not fitted.",
    )
    matrix_unit_dim: Optional[PositiveInt] = Field(
        None, le=4096, description="Width U of a systolic matrix unit (U x U; TPU MXU): a GEMM dimension d runs at "
        "d / (U ceil(d/U)) of its rate; null = no tile loss (GPU tensor-core tiles divide every shipped model's dims).",
    )
    gemm_ratio_is_calibration: bool = Field(
        False, description="Its GEMM ratio is calibration.gemm_efficiency_max, fitted on its own rows (the A100 runs "
        "of the 2021 file); false = an accelerator without measurement or fit gets calibration.unmeasured_gemm_ratio.",
    )
    purchase_unit: PurchaseUnit = Field(
        "node", description="How it is bought: node (a server), rack (whole racks of rack_nodes nodes, e.g. NVL72 = "
        "18 compute trays of 4 GPUs, one 72-GPU NVLink domain) or rented (never sold: cloud capacity only)."
    )
    rack_nodes: Optional[PositiveInt] = Field(
        None, le=1000, description="Nodes in one purchase rack (purchase_unit rack); the rack is filled by them alone."
    )
    rent_usd_per_acc_hour: Optional[PositiveFloat] = Field(
        None, le=1e4, description="On-demand / short-term rental price per accelerator-hour, USD (indicative); null = not rentable."
    )
    rent_committed_usd_per_acc_hour: Optional[PositiveFloat] = Field(
        None, le=1e4, description="Committed-term rental price per accelerator-hour, USD (indicative); null = on-demand price."
    )
    rent_committed_term_months: PositiveFloat = Field(
        12, le=120, description="Length of the committed term, months: a committed rental is billed for whole terms, "
        "used or not."
    )
    rent_source: Text = Field("", description="Where the rental prices come from, and their date.")
    compatible_fabrics: Optional[list[Name]] = Field(
        None, max_length=1000, description="Scale-out fabrics (catalog names) this accelerator can use; null = every "
        "fabric that admits it (see Fabric.accelerators)."
    )
    source: Text = Field("", description="Where the figures come from.")

    @property
    def fabric_ports_per_node(self) -> int:
        return self.nics_per_node or self.accelerators_per_node

    @property
    def gemm_ceilings_tflops(self) -> dict[str, float]:
        """GEMM ceilings per precision: measured where published, else derived from a measured sibling."""
        return {**self.gemm_tflops_derived, **self.gemm_tflops_measured}

    @property
    def rentable(self) -> bool:
        return self.rent_usd_per_acc_hour is not None or self.rent_committed_usd_per_acc_hour is not None

    @property
    def buyable(self) -> bool:
        return self.purchase_unit != "rented"

    def rent_usd_per_hour(self, committed: bool) -> Optional[float]:
        """Committed-term price where asked and given, else on-demand (else the committed one)."""
        on, com = self.rent_usd_per_acc_hour, self.rent_committed_usd_per_acc_hour
        return (com or on) if committed else (on or com)

    def rent_usd(self, accelerators: float, hours: float) -> tuple[float, str]:
        """The cheaper way to rent `accelerators` for `hours` and its name: on-demand for exactly those
        hours, or committed terms billed whole (a 10-day job pays a full year). Ties go to on-demand."""
        opts = []
        if self.rent_usd_per_acc_hour is not None:
            opts.append((accelerators * hours * self.rent_usd_per_acc_hour, "on-demand"))
        if self.rent_committed_usd_per_acc_hour is not None:
            term = self.rent_committed_term_months * HOURS_PER_YEAR / 12
            opts.append((accelerators * math.ceil(hours / term - 1e-9) * term * self.rent_committed_usd_per_acc_hour,
                         "committed"))
        return min(opts, key=lambda o: o[0]) if opts else (math.inf, "")

    @model_validator(mode="after")
    def _check_unit(self) -> "Accelerator":
        if self.purchase_unit == "rack" and self.rack_nodes is None:
            raise ValueError("rack_nodes: required when purchase_unit is rack (nodes in one purchase rack)")
        return self


class Fabric(Strict):
    """A scale-out network technology, built as a folded-Clos (fat-tree) of one switch model."""

    port_gbps: PositiveFloat = Field(le=1e5, description="Bandwidth per endpoint port, Gb/s.")
    latency_us: PositiveFloat = Field(le=1e6, description="End-to-end latency per message, microseconds.")
    switch_radix: int = Field(ge=2, le=100_000, description="Ports per switch at port_gbps (a switch has at least 2).")
    switch_price_usd: PositiveFloat = Field(le=1e8)
    switch_power_w: PositiveFloat = Field(le=1e6)
    endpoint_price_usd: PositiveFloat = Field(le=1e7, description="NIC plus its cable/optics, per endpoint port, USD.")
    endpoint_power_w: PositiveFloat = Field(le=1e5, description="NIC plus its optics, per endpoint port, W.")
    optic_price_usd: PositiveFloat = Field(le=1e7, description="One transceiver of a switch-to-switch link (two per link), USD.")
    optic_power_w: PositiveFloat = Field(le=1e5, description="One transceiver of a switch-to-switch link, W.")
    oversubscription: float = Field(
        1.0, ge=1.0, le=64, description="Leaf down:up port ratio (1 = non-blocking; 3 means 3:1)."
    )
    accelerators: Optional[list[Name]] = Field(
        None, max_length=1000, description="Only these accelerators can attach (an integrated or cloud-only network, "
        "e.g. Gaudi 3's on-chip RoCE or a TPU data-center network); null = any accelerator with a standard NIC."
    )
    source: Text = ""


def compatible(acc_name: str, acc: "Accelerator", fab_name: str, fab: "Fabric") -> bool:
    """Whether an accelerator can use a scale-out fabric: both sides must admit the pair."""
    return ((acc.compatible_fabrics is None or fab_name in acc.compatible_fabrics)
            and (fab.accelerators is None or acc_name in fab.accelerators))


class StorageTier(Strict):
    """A storage tier: a purchasable system bought in whole units (unit_* fields), or, when no unit is
    given, raw capacity priced per TB (the older continuous form)."""

    usd_per_tb: Optional[PositiveFloat] = Field(None, le=1e7, description="Per-TB form: price per raw TB, USD.")
    w_per_tb: Optional[PositiveFloat] = Field(None, le=1e5, description="Per-TB form: power per raw TB, W.")
    gbps_per_tb: Optional[PositiveFloat] = Field(None, le=1e5, description="Per-TB form: bandwidth per raw TB, GB/s (gigabytes).")
    replication: float = Field(1.0, ge=1.0, le=100, description="Per-TB form: raw TB per usable TB (replication / erasure overhead).")
    unit_usable_tb: Optional[PositiveFloat] = Field(None, le=1e6, description="Usable TB of one unit (after erasure coding).")
    unit_read_gbs: Optional[PositiveFloat] = Field(None, le=1e5, description="Sustained read bandwidth of one unit, GB/s.")
    unit_write_gbs: Optional[PositiveFloat] = Field(None, le=1e5, description="Sustained write bandwidth of one unit, GB/s.")
    unit_price_usd: Optional[PositiveFloat] = Field(None, le=1e9, description="Price of one unit, USD (indicative).")
    unit_power_kw: Optional[PositiveFloat] = Field(None, le=1e3, description="Power of one unit, kW.")
    unit_rack_units: NonNegativeInt = Field(0, le=1000, description="Rack units of one unit (0: it sits inside the compute nodes).")
    min_units_per_site: NonNegativeInt = Field(0, le=10_000, description="Fewest units a site that uses this tier buys (e.g. a parallel "
                                               "file system's smallest cluster).")
    in_node: bool = Field(False, description="Local drives inside compute nodes: at most one unit per owned node, and they only "
                          "serve data reads (datasets and checkpoints must sit on shared tiers).")
    source: Text = ""

    def per_usable_tb(self) -> tuple[float, float, float]:
        """(USD, W, write GB/s) per *usable* TB, for either form: what backup copies are bought by
        (a system's whole-unit figures spread over its usable TB)."""
        if self.is_system:
            tb = self.unit_usable_tb
            return self.unit_price_usd / tb, self.unit_power_kw * 1000.0 / tb, self.unit_write_gbs / tb
        r = self.replication
        return self.usd_per_tb * r, self.w_per_tb * r, self.gbps_per_tb * r

    @property
    def is_system(self) -> bool:
        return self.unit_usable_tb is not None

    @model_validator(mode="after")
    def _check_form(self) -> "StorageTier":
        unit = ("unit_usable_tb", "unit_read_gbs", "unit_write_gbs", "unit_price_usd", "unit_power_kw")
        if self.is_system:
            missing = [f for f in unit if getattr(self, f) is None]
            if missing:
                raise ValueError(f"{missing[0]}: required for a storage system (given unit_usable_tb)")
        else:
            missing = [f for f in ("usd_per_tb", "w_per_tb", "gbps_per_tb") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"{missing[0]}: required (or give the unit_* fields of a storage system)")
        return self


class Calibration(Strict):
    """Knobs of the training performance model, fitted once against published runs (`dcopt calibrate`)."""

    gemm_efficiency_max: float = Field(gt=0, le=1, description="Fraction of peak a large GEMM reaches.")
    gemm_half_dim: float = Field(
        ge=0, le=1e6, description="GEMM dimension at which efficiency is half of the max (small matrices run slower)."
    )
    elementwise_passes: float = Field(
        ge=0, le=1e4, description="HBM passes over a layer's activations (s*b*h) by memory-bound kernels, per layer fwd+bwd."
    )
    attention_passes: float = Field(
        ge=0, le=1e4, description="HBM passes over the attention score matrix (b*a*s^2) per layer fwd+bwd (0 = fused/flash)."
    )
    comm_efficiency: float = Field(gt=0, le=1, description="Fraction of link bandwidth collectives achieve.")
    unmeasured_gemm_ratio: Optional[float] = Field(
        None, gt=0, le=1,
        description="Measured/datasheet GEMM ratio given to an accelerator with neither a GEMM measurement nor its own "
                    "fitted ratio: the median over the catalog's measured accelerators (None = gemm_efficiency_max).",
    )
    dp_overlap: float = Field(ge=0, le=1, description="Fraction of the data-parallel all-reduce hidden under backward.")
    memory_reserved_gb: float = Field(ge=0, le=1e5, description="Per accelerator memory lost to runtime, buffers, fragmentation.")
    hbm_efficiency: float = Field(
        0.8, gt=0, le=1, description="Fraction of HBM bandwidth memory-bound serving kernels (decode) reach."
    )
    serving_step_overhead_s: float = Field(
        0.0, ge=0, le=0.05,
        description="Fixed cost of one serving step (scheduler, sampling, kernel launches, host sync), seconds.",
    )
    serving_chunk_tokens: int = Field(
        0, ge=0, le=1_000_000,
        description="Chunked prefill: prompt tokens per step riding with the decode batch (0 = a prefill runs alone).",
    )
    source: Text = ""


class Catalog(Strict):
    accelerators: dict[Name, Accelerator] = Field(max_length=1000)
    fabrics: dict[Name, Fabric] = Field(max_length=1000)
    storage: dict[Name, StorageTier] = Field(max_length=1000)
    calibration: Calibration
    frontend_fabrics: dict[Name, Fabric] = Field(
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

    tp: Optional[PositiveInt] = Field(None, le=100_000)
    pp: Optional[PositiveInt] = Field(None, le=10_000)
    dp: Optional[PositiveInt] = Field(None, le=10_000_000)
    micro_batch: Optional[PositiveInt] = Field(None, le=1_000_000)
    vp: Optional[PositiveInt] = Field(None, le=1_000, description="Interleaved pipeline chunks per stage.")
    recompute: Optional[Recompute] = None
    distributed_optimizer: Optional[bool] = Field(None, description="Shard the optimizer state (ZeRO-1); see sharding.")
    cp: Optional[PositiveInt] = Field(None, description="Context parallel: the sequence split over cp GPUs (ring attention).")
    sharding: Optional[Sharding] = Field(
        None, description="none (DDP), zero1 (optimizer state), zero2 (+gradients), zero3 (+weights: FSDP)."
    )
    ep: Optional[PositiveInt] = Field(None, le=100_000, description="Expert parallel (MoE): routed experts split over ep GPUs.")
    etp: Optional[PositiveInt] = Field(None, le=100_000, description="Expert tensor parallel (MoE): 1 or tp.")


class TrainingJob(Strict):
    kind: Literal["training"] = "training"
    name: Name
    procurement: Optional[Procurement] = Field(
        None, description="own | rent | either for this job; null = the instance's `procurement`. Rented: billed "
        "per accelerator-hour (on-demand price) for the job's duration."
    )
    model: Union[Name, ModelDims] = Field(description="A preset name (see `dcopt catalog`) or the model's dimensions.")
    seq_len: Optional[PositiveInt] = Field(None, le=100_000_000, description="Override the preset's sequence length.")
    tokens: PositiveFloat = Field(le=1e18, description="Tokens to train on.")
    deadline_days: Optional[PositiveFloat] = Field(
        None, le=36_500, description="Days the job may take (at most 100 years); null = no deadline."
    )
    global_batch: Union[Annotated[int, Field(gt=0, le=10_000_000)], GlobalBatchRange] = Field(
        description="Global batch, sequences per step; or {min, max} to let the optimizer choose."
    )
    precision: Precision = Field("bf16", description="Linear-layer GEMM precision: bf16, fp8, mxfp8 or nvfp4.")
    stack: Stack = Field("megatron-core", description="Software stack profile (features and calibrated efficiencies).")
    parallelism: Optional[PinnedParallelism] = None
    accelerator: Optional[Name] = Field(None, description="Pin the accelerator type.")
    fabric: Optional[Name] = Field(None, description="Pin the fabric.")
    dataset_tb: float = Field(0.0, ge=0, le=1e8, description="Training data kept on storage, TB (usable).")
    data_bytes_per_token: float = Field(4.0, ge=0, le=1e6, description="Bytes read from storage per trained token.")
    checkpoint_interval_hours: Optional[float] = Field(
        None, ge=0.01, le=1e5,
        description="Training hours between checkpoints; null = the optimum for the job's failure rate (Young/Daly).",
    )
    checkpoint_window_s: float = Field(
        300.0, ge=0.01, le=1e7, description="Seconds allowed to write one checkpoint: training stalls this long per "
        "checkpoint, and storage write bandwidth is bought to meet it.",
    )
    checkpoint_reload_s: Optional[float] = Field(
        None, ge=0.01, le=1e7, description="Seconds allowed to read the last checkpoint back after an interruption "
        "(every data-parallel replica reads its shard at once); storage read bandwidth is bought to meet it and "
        "goodput counts it per interruption. null = checkpoint_window_s.",
    )
    storage_read_gbs_per_acc: float = Field(
        STORAGE_READ_GBS_PER_ACC, ge=0, le=1e4, description="Shared-storage read GB/s bought per accelerator of the "
        "job, as training reference architectures size it (docs/storage.md); 0 = no such floor.",
    )
    storage_write_gbs_per_acc: float = Field(
        STORAGE_WRITE_GBS_PER_ACC, ge=0, le=1e4, description="Shared-storage write GB/s bought per accelerator of the "
        "job (reference-architecture sizing); checkpoints are written at it when faster than the window. 0 = none.",
    )
    checkpoints_retained: PositiveInt = Field(2, le=10_000, description="Checkpoints kept on storage.")
    backup_copies: NonNegativeInt = Field(
        0, le=100, description="Extra copies of the dataset and retained checkpoints on a second site or an object tier."
    )


ServingPrecision = Literal["bf16", "fp8", "int8", "fp4"]
ANY_REGION = "*"


class InferenceService(Strict):
    """An LLM serving service: a demand to meet under latency SLOs, with replicas of any layout."""

    kind: Literal["inference"]
    name: Name
    procurement: Optional[Procurement] = Field(
        None, description="own | rent | either for this service; null = the instance's `procurement`. Rented: billed "
        "per accelerator-hour over the horizon, at the cheaper of on-demand and committed terms."
    )
    model: Union[Name, ModelDims] = Field(description="A preset name or the model's dimensions.")
    precision: ServingPrecision = Field("bf16", description="Weights: bf16 (2 B), fp8 (1 B), int8 (1 B, weight-only) or "
                                        "fp4 (0.5 B, NVFP4/MXFP4 at the FP4 peak, fp8 KV cache; accelerators with FP4 units).")
    requests_per_s: Optional[float] = Field(None, ge=MIN_DEMAND_RPS, le=1e9, description="Demand, requests per second.")
    output_tokens_per_s: Optional[PositiveFloat] = Field(None, le=1e12, description="Demand as output tokens per second.")
    demand_by_region: Optional[dict[Name, Annotated[float, Field(ge=MIN_DEMAND_RPS, le=1e9)]]] = Field(
        None, min_length=1, max_length=1000, description="Demand per region, requests per second; a replica serves a region only if "
        "the site's RTT to it plus TTFT stays within the TTFT SLO."
    )
    input_tokens: float = Field(ge=1, le=1e8, description="Mean prompt tokens per request.")
    output_tokens: float = Field(ge=1, le=1e8, description="Mean generated tokens per request.")
    ttft_s: PositiveFloat = Field(le=86_400, description="SLO: time to first token of an idle replica (no queueing), "
                                  "network round trip included, seconds.")
    tpot_s: PositiveFloat = Field(le=3_600, description="SLO: time per output token at full batch (mean, no queueing), "
                                  "seconds.")
    ttft_p99_s: Optional[PositiveFloat] = Field(None, le=86_400, description="SLO: 99th-percentile TTFT under Poisson "
                                                "arrivals at the replica's load, round trip included, seconds.")
    tpot_p99_s: Optional[PositiveFloat] = Field(None, le=3_600, description="SLO: 99th-percentile TPOT under load, seconds.")
    ttft_p50_s: Optional[PositiveFloat] = Field(None, le=86_400, description="SLO: median TTFT under load, round trip "
                                                "included, seconds.")
    tpot_p50_s: Optional[PositiveFloat] = Field(None, le=3_600, description="SLO: median TPOT under load, seconds.")
    disaggregated: Union[bool, Literal["auto"]] = Field(
        False, description="Prefill and decode on separate replica pools (true), on the same replicas (false), or "
        "whichever is cheaper (auto); the KV cache crosses the site's front-end fabric.")
    accelerators: Optional[list[Name]] = Field(None, max_length=1000, description="Only these accelerator types may serve it.")
    survive_site_loss: bool = Field(
        False, description="Keep the whole demand served, within latency, after the loss of any one site."
    )
    availability: Optional[float] = Field(
        None, gt=0, lt=1, description="Target fraction of time each region's demand is fully served (e.g. 0.999); "
        "adds N+k replicas per region from the replica failure rate. Null = no spare replicas."
    )

    @model_validator(mode="after")
    def _check(self) -> "InferenceService":
        given = [x is not None for x in (self.requests_per_s, self.output_tokens_per_s, self.demand_by_region)]
        if sum(given) != 1:
            raise ValueError("give exactly one of requests_per_s, output_tokens_per_s or demand_by_region")
        if self.output_tokens_per_s is not None and self.output_tokens_per_s / self.output_tokens < MIN_DEMAND_RPS:
            raise ValueError(
                f"output_tokens_per_s: got {self.output_tokens_per_s:g}, expected at least {MIN_DEMAND_RPS:g} requests/s "
                f"x output_tokens ({MIN_DEMAND_RPS * self.output_tokens:g} tokens/s): smaller demands are below what one "
                "replica can resolve")
        return self

    @property
    def percentile_slos(self) -> dict[str, float]:
        """The percentile SLOs given, by the keyword `queueing.max_rate_for_slo` takes."""
        return {k: getattr(self, k) for k in ("ttft_p99_s", "tpot_p99_s", "ttft_p50_s", "tpot_p50_s")
                if getattr(self, k) is not None}

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
    max_kw_per_rack: PositiveFloat = Field(le=10_000)
    capex_usd_per_kw: float = Field(ge=0, le=1e6, description="In-rack and in-row cooling capex per kW of IT load cooled "
                                    "(CDUs, cold plates, rear-door exchangers); the cooling plant is in the facility capex.")


class Facility(Strict):
    power_cap_mw: Optional[PositiveFloat] = Field(
        None, le=100_000, description="Contracted facility power (PUE included), MW; null = no cap (what `explain` relaxes to)."
    )
    pue: float = Field(1.3, ge=1.0, le=10, description="Facility power / IT power.")
    energy_usd_per_kwh: float = Field(0.08, ge=0, le=100)
    cooling: dict[Literal["air", "liquid"], CoolingOption] = Field(
        default_factory=lambda: {
            "air": CoolingOption(max_kw_per_rack=40.0, capex_usd_per_kw=1500.0),
            "liquid": CoolingOption(max_kw_per_rack=120.0, capex_usd_per_kw=3000.0),
        }
    )
    rack_units_per_rack: PositiveInt = Field(42, le=1000)
    max_racks: Optional[PositiveInt] = Field(None, le=10_000_000)
    rack_capex_usd: float = Field(20000.0, ge=0, le=1e9, description="Rack, PDUs and cabling per rack, USD.")
    frontend_fabric: Optional[Name] = Field(
        "eth-100g", description="Front-end Ethernet every owned node attaches to (a catalog fabric): users, data ingest, "
        "and the only network serving nodes need; null = none."
    )
    frontend_ports_per_node: PositiveInt = Field(1, le=1024, description="Front-end ports per node.")
    storage_fabric: Optional[Name] = Field(
        "eth-200g", description="Storage network every owned node and every shared storage unit attaches to (a catalog "
        "fabric); null = none (storage reached over the front-end)."
    )
    storage_ports_per_node: PositiveInt = Field(1, le=1024, description="Storage network ports per node.")
    management_fabric: Optional[Name] = Field(
        "eth-1g-mgmt", description="Out-of-band management network (BMC), one port per node; null = none."
    )
    redundancy: Redundancy = Field(
        "N", description="Redundancy of power and cooling: N | N+1 | 2N; sets the facility build cost per MW "
        "and the site's outage rate (models/data/reliability.yaml)."
    )
    facility_capex_usd_per_mw: Optional[NonNegativeFloat] = Field(
        None, le=1e9, description="Facility build cost per MW of critical IT load, USD; null = the redundancy tier's default."
    )

    @model_validator(mode="after")
    def _check(self) -> "Facility":
        if not self.cooling:
            raise ValueError("at least one cooling option (air or liquid) is needed")
        return self


class Site(Facility):
    """One place to build: a facility plus what makes places differ (carbon, build-out, latency)."""

    name: Name
    carbon_g_per_kwh: float = Field(0.0, ge=0, le=10_000, description="Grid carbon intensity, gCO2 per kWh.")
    site_capex_usd: float = Field(0.0, ge=0, le=1e12, description="Build-out capex, paid only if the site is used.")
    latency_ms: dict[Name, Annotated[float, Field(ge=0, le=100_000)]] = Field(
        default_factory=dict, max_length=1000, description="Network round-trip time to each demand region, ms (absent = unreachable)."
    )


class Budget(Strict):
    capex_usd: Optional[PositiveFloat] = Field(None, le=1e13, description="Capex cap, USD; null = no cap.")
    horizon_years: PositiveFloat = Field(5.0, le=100, description="TCO horizon, years.")
    maintenance_pct_per_year: float = Field(3.0, ge=0, le=100, description="Maintenance opex, % of capex per year.")
    carbon_price_usd_per_t: float = Field(
        0.0, ge=0, le=10_000, description="Carbon price, USD per tCO2; when set, TCO includes carbon cost over the horizon."
    )
    carbon_cap_t_per_year: Optional[PositiveFloat] = Field(None, le=1e10, description="Cap on emissions, tCO2 per year.")




class Instance(Strict):
    name: Name = "instance"
    description: Text = ""
    catalog: Catalog
    workloads: list[Workload] = Field(min_length=1, max_length=1000)
    facility: Optional[Facility] = Field(None, description="A single site; or give `sites`.")
    sites: Optional[list[Site]] = Field(None, max_length=100, description="Several places to build; or give `facility`.")
    budget: Budget = Field(default_factory=Budget)
    procurement: Procurement = Field(
        "own", description="own (buy the hardware) | rent (cloud capacity per accelerator-hour: no capex, racks, "
        "cooling or site power; networking included) | either (the optimizer decides, per workload)."
    )
    objective: str = Field(
        "min_tco", description="What to minimise (the objectives of models.metrics).",
        json_schema_extra=lambda s: s.update(enum=objectives()),
    )

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: str) -> str:
        if v not in objectives():
            raise ValueError(f"one of {', '.join(objectives())}")
        return v

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
            if w.fabric is not None and w.accelerator is not None and not compatible(
                    w.accelerator, self.catalog.accelerators[w.accelerator], w.fabric, self.catalog.fabrics[w.fabric]):
                raise ValueError(
                    f"workloads[{i}].fabric: '{w.fabric}' cannot be used by {w.accelerator} "
                    f"(catalog.accelerators.{w.accelerator}.compatible_fabrics / catalog.fabrics.{w.fabric}.accelerators)"
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
            for fld in ("frontend_fabric", "storage_fabric", "management_fabric"):
                name = getattr(site, fld)
                if name is not None and name not in self.catalog.frontend_fabrics:
                    raise ValueError(f"{where}.{fld}: '{name}' is not a known fabric")
        self._check_nodes_fit_racks()
        for i, w in enumerate(self.workloads):
            if isinstance(w, InferenceService) and w.survive_site_loss and len(self.site_list) < 2:
                raise ValueError(f"workloads[{i}].survive_site_loss: true needs at least two sites to fail over to, "
                                 f"got {'one facility' if self.sites is None else 'one site'} (give `sites:`)")
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

    def _check_nodes_fit_racks(self) -> None:
        """A node taller than every rack, or drawing more than every cooling option allows per rack,
        can never be placed. When that leaves no accelerator (or hits a pinned one) the instance
        is refused naming the entry and the field; otherwise the solver would report an
        unrelated limit as the cause."""
        sites = self.site_list
        where = "facility" if self.facility is not None else "sites[*]"
        units = max(x.rack_units_per_rack for x in sites)

        def misfit(name: str, a: Accelerator) -> Optional[str]:
            if a.node_rack_units > units:
                return (f"catalog.accelerators.{name}.node_rack_units: got {a.node_rack_units}, expected at most "
                        f"{units} ({where}.rack_units_per_rack): a node must fit in a rack")
            kw = [o.max_kw_per_rack for x in sites for c, o in x.cooling.items() if c == "liquid" or not a.liquid_cooled_only]
            if a.purchase_unit == "rack" and kw and a.rack_nodes * a.node_power_kw > max(kw) * (1 + 1e-9):
                return (f"catalog.accelerators.{name}.rack_nodes: a purchase rack of {a.rack_nodes} nodes draws "
                        f"{a.rack_nodes * a.node_power_kw:g} kW, expected at most {max(kw):g} "
                        f"({where}.cooling.*.max_kw_per_rack): raise the cooling option's limit")
            if a.purchase_unit == "rack" and a.rack_nodes * a.node_rack_units > units:
                return (f"catalog.accelerators.{name}.rack_nodes: {a.rack_nodes} nodes of {a.node_rack_units} U need "
                        f"{a.rack_nodes * a.node_rack_units} U, expected at most {units} ({where}.rack_units_per_rack)")
            if kw and a.node_power_kw > max(kw):
                return (f"catalog.accelerators.{name}.node_power_kw: got {a.node_power_kw:g}, expected at most "
                        f"{max(kw):g} ({where}.cooling.*.max_kw_per_rack): a node must fit in a rack's power")
            if not kw:
                return (f"catalog.accelerators.{name}.liquid_cooled_only: true, but no site offers liquid cooling "
                        f"({where}.cooling)")
            return None

        bad = {n: m for n, a in self.catalog.accelerators.items() if (m := misfit(n, a))}
        pinned = {w.accelerator for w in self.training_jobs if w.accelerator}
        for n in sorted(pinned & set(bad)):
            raise ValueError(bad[n])
        if bad and len(bad) == len(self.catalog.accelerators):
            raise ValueError("; ".join(bad[n] for n in sorted(bad)))

    @property
    def site_list(self) -> list["Site"]:
        """The sites; a single `facility` is one site named after the instance."""
        if self.sites is not None:
            return list(self.sites)
        # Not re-validated: the facility was, and the diagnosis relaxes its limits past the bounds.
        return [Site.model_construct(name="site", **{k: getattr(self.facility, k) for k in Facility.model_fields})]

    def procurement_of(self, workload) -> str:
        """A workload's own procurement, or the instance's."""
        return workload.procurement or self.procurement

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
