"""Software-stack profiles: which training features a framework has, and its calibrated efficiencies.

A stack decides what the layout search may use (fused attention, context parallelism, sharding modes,
interleaving, uneven stages) and how much communication stays exposed. Its efficiencies are fitted
only on published runs of that stack (`models.perf.calibration`); a stack without such runs takes,
knob by knob, the median of the calibrated stacks' values (`borrowed_efficiencies`) and says it is
uncalibrated. Data: data/stacks.yaml.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal, Optional

import numpy as np
import yaml
from pydantic import Field

from ..dims import Strict

SHARDING = ("none", "zero1", "zero2", "zero3")  # codes 0..3
DEFAULT_STACK = "megatron-core"
LEGACY_STACK = "megatron-2021"  # the SC'21 software: its efficiencies are the catalog's 2021 calibration
# The efficiencies calibration fits per stack (models.perf.calibration.STACK_KNOB_BOUNDS has their bounds).
EFFICIENCY_KNOBS = ("gemm_efficiency", "attention_efficiency", "elementwise_passes", "layer_overhead_us",
                    "step_overhead_s")
LOW_PRECISIONS = ("fp8", "mxfp8", "nvfp4")


class StackProfile(Strict):
    description: str = ""
    fused_attention: bool = Field(description="Flash-style fused attention: no s x s scores in HBM or memory.")
    causal_skip: bool = Field(description="The attention kernel skips fully masked blocks (halves causal work).")
    tp_exposed: float = Field(ge=0, le=1, description="Fraction of tensor-parallel communication not hidden by GEMMs.")
    pp_exposed: float = Field(ge=0, le=1, description="Fraction of pipeline send/receive time not overlapped.")
    dp_exposed: Optional[float] = Field(
        None, ge=0, le=1, description="Fraction of data-parallel/FSDP traffic exposed; null = 1 - calibration.dp_overlap."
    )
    sharding: list[Literal["none", "zero1", "zero2", "zero3"]] = Field(description="Sharding modes the stack offers.")
    recompute_modes: list[Literal["none", "selective", "full", "partial"]] = Field(
        default_factory=lambda: ["none", "selective", "full", "partial"],
        description="Recompute modes; partial = full recompute of a chosen number of layers per stage.")
    selective_recompute: Literal["attention", "ops"] = Field(
        "attention", description="What recompute 'selective' redoes in the backward: the attention core (Megatron, "
        "Korthikanti et al.) or an op-level policy that keeps matmul and attention outputs but every second linear "
        "matmul's and recomputes those and the elementwise ops (torchtitan's selective_ac_option 'op').")
    context_parallel: bool = False
    interleaving: bool = True
    uneven_stages: bool = Field(False, description="Stages may hold different layer counts (ceil split).")
    interleave_needs_m_multiple_of_p: bool = Field(
        False, description="Interleaving requires micro-batches per step to be a multiple of pp (Megatron-LM 2021)."
    )
    # Calibrated efficiencies (null = take the catalog's Calibration, i.e. the 2021 fit).
    gemm_efficiency: Optional[float] = Field(
        None, gt=0, le=1.1, description="Achieved fraction of the accelerator's measured GEMM ceiling in training."
    )
    attention_efficiency: Optional[float] = Field(
        None, gt=0, le=1, description="Fused attention kernel rate as a fraction of the BF16 GEMM ceiling."
    )
    elementwise_passes: Optional[float] = Field(
        None, ge=0, description="HBM passes over a layer's activations by unfused memory-bound kernels, fwd+bwd."
    )
    layer_overhead_us: float = Field(
        0.0, ge=0, description="Fixed time per layer per micro-batch (fwd+bwd): kernel launches, syncs, host work."
    )
    overlap_limited_by_compute: bool = Field(
        True, description="Hidden communication cannot exceed the compute it overlaps (false: the SC'21 model's "
        "fitted fraction alone).")
    optimizer_step: bool = Field(
        True, description="Model the optimizer's memory-bound pass over the state (false: absorbed in the 2021 fit).")
    step_overhead_s: float = Field(
        0.0, ge=0, description="Fixed time per optimizer step: grad norm/clip, data loading, logging, host syncs."
    )
    ep_exposed: float = Field(
        1.0, ge=0, le=1, description="Fraction of the MoE dispatch/combine all-to-all not hidden (a2a overlap).")
    expert_gemm_efficiency: float = Field(
        1.0, gt=0, le=1.1, description="Grouped expert GEMMs relative to dense ones of the same shape (router, "
        "permutation and per-expert launch costs).")
    moe_layer_overhead_us: float = Field(
        0.0, ge=0, description="Extra fixed time per MoE layer per micro-batch (fwd+bwd): router, permutation, "
        "token-count syncs of dropless routing, grouped-GEMM launches.")
    grad_bytes: float = Field(
        2.0, ge=2.0, le=4.0, description="Bytes per gradient element held and reduced: 2 (bf16) or 4 (accumulated and "
        "reduced in fp32: Megatron-Core grad_reduce_in_fp32, torchtitan mixed_precision_reduce float32).")
    expert_launch_us: float = Field(
        0.0, ge=0, description="Fixed time per local expert per MoE layer per micro-batch (fwd+bwd) for its 6 GEMM "
        "launches (a grouped GEMM runs as a loop over experts); each quantisation kernel of a low-precision recipe "
        "adds a sixth of it.")
    fitted_knobs: Optional[list[str]] = Field(
        None, description="Knobs calibration fits for this stack (null = all); gemm_efficiency is left at 1 where "
        "the stack's runs are all on accelerators without a measured GEMM ceiling (their own ratio is fitted)."
    )
    calibrated_on: list[str] = Field(default_factory=list, description="Published rows its efficiencies were fitted on.")
    source: str = ""

    @property
    def calibrated(self) -> bool:
        return bool(self.calibrated_on)


class PrecisionProfile(Strict):
    """How a low-precision recipe runs the linear layers (attention, logits and elementwise stay BF16)."""

    gemm_efficiency: float = Field(
        gt=0, le=1, description="Achieved fraction of the low-precision GEMM ceiling (scaling, amax, tile losses)."
    )
    cast_passes: float = Field(ge=0, description="HBM passes over a layer's activations to quantise/cast, fwd+bwd.")
    calibrated_on: list[str] = Field(default_factory=list)
    source: str = ""


@lru_cache(maxsize=1)
def _data() -> dict:
    return yaml.safe_load(resources.files("models").joinpath("data/stacks.yaml").read_text())


def fits_knob(st: StackProfile, knob: str) -> bool:
    """Whether calibration fits `knob` for this stack (MaxText leaves gemm_efficiency at 1: its TPUs' own
    ratios are fitted instead)."""
    return st.fitted_knobs is None or knob in st.fitted_knobs


def borrowed_efficiencies(stacks: dict[str, StackProfile], donors) -> dict[str, StackProfile]:
    """Every modern stack outside `donors` (the stacks calibrated on rows) takes, per efficiency knob,
    the median over the donors that fit that knob. Why the median: a stack without published runs is
    one more draw from the population of stacks, and the median is the estimate with the least
    expected absolute error, the same rule as the GEMM ratio of an unmeasured accelerator
    (calibration.unmeasured_gemm_ratio, the median over the measured chips). Borrowing one stack's
    values instead (Megatron-Core, the most tuned) would make every unknown stack as fast as it."""
    donors = sorted(n for n in donors if n in stacks and n != LEGACY_STACK)
    upd = {}
    for k in EFFICIENCY_KNOBS:
        vals = [getattr(stacks[n], k) for n in donors if fits_knob(stacks[n], k) and getattr(stacks[n], k) is not None]
        if vals:
            upd[k] = float(np.median(vals))
    return {n: st if n in donors or n == LEGACY_STACK else st.model_copy(update=upd) for n, st in stacks.items()}


@lru_cache(maxsize=1)
def stack_profiles() -> dict[str, StackProfile]:
    """The shipped profiles; an uncalibrated one (no published runs) carries the borrowed efficiencies."""
    raw = {k: StackProfile.model_validate(v) for k, v in _data()["stacks"].items()}
    return borrowed_efficiencies(raw, [n for n, st in raw.items() if st.calibrated])


@lru_cache(maxsize=1)
def precision_profiles() -> dict[str, PrecisionProfile]:
    return {k: PrecisionProfile.model_validate(v) for k, v in _data()["precisions"].items()}


def get_stack(stack: "str | StackProfile | None") -> StackProfile:
    if isinstance(stack, StackProfile):
        return stack
    name = stack or DEFAULT_STACK
    profiles = stack_profiles()
    if name not in profiles:
        raise ValueError(f"unknown stack '{name}' (known: {', '.join(sorted(profiles))})")
    return profiles[name]
