"""Training performance model: step time, throughput and memory of every parallel layout at once.

One row of a `ConfigGrid` is one candidate layout (accelerator, fabric, t, p, d, b, v, recompute,
sharding, cp, global batch); `evaluate` computes every row with numpy broadcasting, so the optimizer
can score >10^6 layouts per second. The formulas and their sources are in docs/performance-model.md
(Narayanan et al. SC'21; Korthikanti et al. 2022; Dao et al. 2022; PaLM App. B; Rajbhandari et al.
2020; Liu et al. 2023 ring attention; Patarasuk & Yuan 2009). What a software stack can do and its
fitted efficiencies come from `models.perf.stacks`; per-accelerator GEMM ceilings and bus bandwidths
from the catalog's measured fields; the 2021 knobs from `Calibration`.

Mixtures of experts: routed experts are split over `ep` GPUs (carved out of the t*d*cp GPUs of a
stage, Megatron-Core convention) and expert tensor parallel `etp` (1 or t); `_expert_terms` gives
their dispatch/combine all-to-all, their GEMMs and their share of memory and gradient traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

from ..schema import Accelerator, Calibration, Fabric, ModelDims, PinnedParallelism
from .stacks import LOW_PRECISIONS, SHARDING, PrecisionProfile, StackProfile, get_stack, precision_profiles

RECOMPUTE = ("none", "selective", "full", "partial")  # codes 0..3; partial = full recompute of just enough layers
PRECISIONS = ("bf16", "fp8", "mxfp8", "nvfp4")
TP_MAX = 64
PP_MAX = 64
CP_CHOICES = (1, 2, 4, 8)
CP_MIN_TOKENS = 4096  # searched cp keeps at least this many tokens of a sequence per rank
VP_CHOICES = (1, 2, 4)
MICRO_BATCH_CHOICES = (1, 2, 4, 8)
ACT_BYTES = 2  # activations and communication stay bf16 in every recipe modelled here
CHUNK_ROWS = 16384
SCALEUP_LATENCY_S = 2e-6  # NVLink/ICI hop incl. collective-library step overhead; not in the catalog
FLOPS_CONVENTION = "causal"  # model FLOPs count half the s x s attention work (Megatron-Bridge, MaxText)
EP_MAX = 256
MOE_PERMUTE_PASSES = 8.0  # token permute + unpermute, read and write, forward and backward (x k tokens)
# Per local expert, per MoE layer and micro-batch: 6 GEMMs, 2 in a forward pass (fc1, fc2) and 4 in the
# backward (their dgrad and wgrad), and at low precision 4 quantised tensors, 2 per forward pass (the two GEMM
# inputs) and 2 in the backward (the two output gradients). The 2 weights are cast once per step: Megatron-Core's
# TEGroupedLinear passes `is_first_microbatch`, so Transformer Engine caches their casts for the step's later
# micro-batches and recomputed forwards. Kernels per quantised tensor (Transformer Engine): MXFP8 computes its
# block scales inside the cast (1); per-tensor current scaling (FP8 "tensorwise", Megatron-Bridge's FP8-CS)
# first scans the tensor for its amax, turns it into a scale, then casts (3); NVFP4's second-level per-tensor
# scale needs the same amax scan (3).
EXPERT_FWD_GEMMS, EXPERT_BWD_GEMMS = 2, 4
EXPERT_GEMMS = EXPERT_FWD_GEMMS + EXPERT_BWD_GEMMS
EXPERT_FWD_QUANTISED, EXPERT_BWD_QUANTISED = 2, 2
EXPERT_WEIGHTS = 2
QUANTIZE_KERNELS = {"bf16": 0, "fp8": 3, "mxfp8": 1, "nvfp4": 3}


@dataclass(frozen=True)
class ConfigGrid:
    """Candidate layouts, one per row; all arrays have equal length."""

    acc: np.ndarray  # index into the accelerators list passed alongside
    fab: np.ndarray  # index into the fabrics list
    t: np.ndarray  # tensor parallel
    p: np.ndarray  # pipeline parallel
    d: np.ndarray  # data parallel (replicas of the model, each of t*p*cp GPUs)
    b: np.ndarray  # micro-batch, sequences
    v: np.ndarray  # interleaved pipeline chunks per stage
    recompute: np.ndarray  # codes into RECOMPUTE
    dist_opt: np.ndarray  # bool: optimizer state sharded (sharding >= zero1)
    cp: np.ndarray  # context parallel (sequence split over cp GPUs)
    shard: np.ndarray  # codes into SHARDING
    gb: np.ndarray  # global batch, sequences per step
    ep: Optional[np.ndarray] = None  # expert parallel (MoE; None = 1)
    etp: Optional[np.ndarray] = None  # expert tensor parallel (MoE; None = 1)

    def __len__(self) -> int:
        return int(self.acc.shape[0])

    def take(self, idx) -> "ConfigGrid":
        return ConfigGrid(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[idx])
                             for f in fields(self)})

    def ep_or_one(self) -> np.ndarray:
        return np.ones_like(self.t) if self.ep is None else self.ep

    def etp_or_one(self) -> np.ndarray:
        return np.ones_like(self.t) if self.etp is None else self.etp


def batch_bounds(global_batch) -> tuple[int, int]:
    """(min, max) of a global batch given as an int, a (min, max) pair, a {min, max} dict or a range object."""
    if isinstance(global_batch, (int, np.integer)):
        return int(global_batch), int(global_batch)
    if isinstance(global_batch, dict):
        lo, hi = global_batch.get("min"), global_batch.get("max")
    elif isinstance(global_batch, (tuple, list)):
        lo, hi = global_batch
    else:
        lo, hi = getattr(global_batch, "min"), getattr(global_batch, "max")
    lo, hi = int(lo), int(hi)
    if lo < 1 or hi < lo:
        raise ValueError(f"global_batch range must have 1 <= min <= max; got min={lo}, max={hi}")
    return lo, hi


def _divisors(n: int) -> np.ndarray:
    c = np.arange(1, n + 1, dtype=np.int64)
    return c[n % c == 0]


def _dp_ladder(n: int) -> np.ndarray:
    """Data-parallel sizes searched when the batch is a range: 2^k x {1, 3, 5} up to n."""
    out = {m * 2**k for m in (1, 3, 5) for k in range(0, 20) if m * 2**k <= n}
    return np.array(sorted(out), dtype=np.int64)


def _choices(pinned_value, default) -> np.ndarray:
    return np.asarray([pinned_value] if pinned_value is not None else default, dtype=np.int64)


def stage_layers(layers, p):
    """(layers on a full stage, on the first stage, on the last stage) of the ceil split.

    Full stages hold ceil(l/p); the remainder r = l - (p-2)*ceil(l/p) goes to the first and last stage
    (first ceil(r/2), last floor(r/2): the last also computes the logits), as Llama 3 put 126 layers on
    16 stages (7, 8 x 14, 7). Valid while the last stage keeps at least one layer."""
    l, p = np.asarray(layers), np.asarray(p)
    full = -(-l // p)
    r = np.where(p >= 2, l - (p - 2) * full, l)
    first = np.where(p >= 2, -(-r // 2), l)
    last = np.where(p >= 2, r // 2, l)
    return full, first, last


def valid_stage_split(layers: int, p, uneven: bool):
    p = np.asarray(p)
    if not uneven:
        return (layers % p == 0) & (p <= layers)
    full, first, last = stage_layers(layers, p)
    return (p <= layers) & (last >= 1) & (first <= full)


def _sharding_choices(pin: PinnedParallelism, stack: StackProfile) -> list[int]:
    offered = [SHARDING.index(s) for s in stack.sharding]
    if pin.sharding is not None:
        code = SHARDING.index(pin.sharding)
        if code not in offered:
            raise ValueError(f"sharding '{pin.sharding}' is not offered by this stack (offers: {', '.join(stack.sharding)})")
        return [code]
    if pin.distributed_optimizer is not None:
        want = [1, 2, 3] if pin.distributed_optimizer else [0]
        got = [c for c in offered if c in want]
        if not got:
            raise ValueError(f"distributed_optimizer={pin.distributed_optimizer} needs a sharding mode the stack lacks "
                             f"(offers: {', '.join(stack.sharding)})")
        return got[:1] if pin.distributed_optimizer else got
    # Searched: ZeRO-2 moves the bytes of ZeRO-1 (itself those of DDP) with less memory, so the most
    # sharded of none/zero1/zero2 dominates the others; ZeRO-3 trades traffic for memory.
    partial = [c for c in offered if c < 3]
    return ([max(partial)] if partial else []) + ([3] if 3 in offered else [])


def enumerate_grid(
    dims: ModelDims,
    global_batch,
    accelerators: list[Accelerator],
    fabrics: list[Fabric],
    precision: str = "bf16",
    pinned: PinnedParallelism | None = None,
    *,
    max_accelerators: int | None = None,
    stack: "str | StackProfile | None" = None,
) -> ConfigGrid:
    """Every valid layout for one job on every (accelerator, fabric) pair.

    Caps (t <= 64 power of two, p <= 64, b <= 8, v <= 4, cp <= 8 keeping >= 4096 tokens per rank)
    bound only what is searched; a pinned value bypasses them but must still satisfy the divisibility
    rules. Unpinned p takes the divisors of the layer count and, on stacks with uneven stages, the
    splits whose end stages lose at most one layer each. A global batch given as a range picks, per
    (micro-batch, dp), the largest batch in the range that micro-batch x dp divides.
    `max_accelerators` drops layouts needing more accelerators (e.g. beyond the site's power).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'")
    st = get_stack(stack)
    pin = pinned or PinnedParallelism()
    l, s = dims.layers, dims.seq_len
    B_lo, B_hi = batch_bounds(global_batch)

    pow2 = 2 ** np.arange(0, int(np.log2(TP_MAX)) + 1)
    t_c = _choices(pin.tp, pow2)
    t_c = t_c[(dims.heads % t_c == 0) & (t_c <= dims.heads)]
    if pin.pp is not None:
        p_c = _choices(pin.pp, ())
    else:
        p_all = np.arange(1, min(l, PP_MAX) + 1)
        near_even = (p_all * -(-l // p_all) - l) <= 2 if st.uneven_stages else (l % p_all == 0)
        p_c = p_all[(l % p_all == 0) | near_even]
    p_c = p_c[valid_stage_split(l, p_c, st.uneven_stages)]
    v_c = _choices(pin.vp, VP_CHOICES if st.interleaving else (1,))
    b_c = _choices(pin.micro_batch, MICRO_BATCH_CHOICES)
    if pin.cp is not None:
        if pin.cp > 1 and not st.context_parallel:
            raise ValueError("cp > 1 needs a stack with context parallelism (megatron-core, nemo, torchtitan, maxtext)")
        cp_c = _choices(pin.cp, ())
    else:
        cp_c = np.array([c for c in CP_CHOICES if c == 1 or (st.context_parallel and s // c >= CP_MIN_TOKENS)])
    cp_c = cp_c[(cp_c == 1) | (s % (2 * cp_c) == 0)]
    d_c = _choices(pin.dp, _divisors(B_lo) if B_lo == B_hi else _dp_ladder(B_hi))
    # Searched: where the stack recomputes a chosen number of layers, "partial" with the fewest layers
    # that fit dominates none and full; otherwise each uniform mode.
    searched_rc = [RECOMPUTE.index("partial")] if "partial" in st.recompute_modes else \
        [RECOMPUTE.index(x) for x in st.recompute_modes]
    r_c = _choices(None if pin.recompute is None else RECOMPUTE.index(pin.recompute), searched_rc)
    o_c = np.asarray(_sharding_choices(pin, st), dtype=np.int64)

    # MoE: ep over powers of two dividing the routed experts; etp 1 or t (code 0/1).
    if dims.is_moe:
        ep_c = _choices(pin.ep, [e for e in 2 ** np.arange(0, 9) if e <= min(dims.experts, EP_MAX) and dims.experts % e == 0])
        et_c = np.array([0, 1]) if pin.etp is None else np.array([1 if pin.etp > 1 else 0])
    else:
        if pin.ep not in (None, 1) or pin.etp not in (None, 1):
            raise ValueError("ep/etp > 1 need a mixture-of-experts model (experts > 0)")
        ep_c, et_c = np.array([1]), np.array([0])
    T, P, V, Bm, D, R, O, C, EP, ET = (x.ravel() for x in np.meshgrid(
        t_c, p_c, v_c, b_c, d_c, r_c, o_c, cp_c, ep_c, et_c, indexing="ij"))
    ET = np.where(ET == 1, T, 1)
    G = (B_hi // np.maximum(Bm * D, 1)) * Bm * D  # largest batch in range divisible by b*d
    ok = (G >= B_lo) & (G >= 1)
    if max_accelerators is not None:
        ok &= T * P * D * C <= max_accelerators
    m = np.where(ok, G // np.maximum(Bm * D, 1), 0)
    full, _, _ = stage_layers(l, P)
    # Interleaving needs several stages and whole chunks of a full stage's layers.
    inter_ok = (P > 1) & (full % V == 0)
    if st.interleave_needs_m_multiple_of_p:
        inter_ok &= (l % (P * V) == 0) & (m % P == 0)
    ok &= (V == 1) | inter_ok
    if dims.is_moe:  # etp = t only when t > 1 (else a duplicate); ep x etp divides the stage's t*d*cp GPUs
        ok &= ((ET == 1) | (T > 1)) & ((T * D * C) % (EP * ET) == 0)
        if pin.etp is not None:
            ok &= ET == pin.etp
    T, P, V, Bm, D, R, O, C, G, EP, ET = (x[ok] for x in (T, P, V, Bm, D, R, O, C, G, EP, ET))

    acc_ok = [i for i, a in enumerate(accelerators) if supports_precision(a, precision)]
    A, F = (x.ravel() for x in np.meshgrid(np.asarray(acc_ok, dtype=np.int64), np.arange(len(fabrics)), indexing="ij"))
    n_rows, n_pairs = T.shape[0], A.shape[0]
    tile = lambda x: np.tile(x, n_pairs)  # noqa: E731
    return ConfigGrid(
        acc=np.repeat(A, n_rows), fab=np.repeat(F, n_rows),
        t=tile(T), p=tile(P), d=tile(D), b=tile(Bm), v=tile(V), recompute=tile(R), dist_opt=tile(O >= 1),
        cp=tile(C), shard=tile(O), gb=tile(G),
        ep=tile(EP) if dims.is_moe else None, etp=tile(ET) if dims.is_moe else None,
    )


def supports_precision(acc: Accelerator, precision: str) -> bool:
    """The accelerator has the matrix units the precision's recipe needs (enumerate_grid skips it otherwise)."""
    if precision == "fp8":
        return acc.peak_fp8_tflops is not None
    if precision in ("mxfp8", "nvfp4"):
        return acc.peak_fp4_tflops is not None
    return precision == "bf16"


def _model_flops_terms(dims: ModelDims) -> tuple[float, float]:
    """Model FLOPs per token: (6N + logits, attention per attended key); 6 l a (d_qk + d_v) = 12 l a d_h
    for standard attention."""
    h, V, a = float(dims.hidden), float(dims.padded_vocab), float(dims.heads)
    return (6.0 * (dims.layers * dims.params_per_layer + h * V),
            6.0 * dims.layers * a * (float(dims.qk_head_dim) + float(dims.value_head_dim)))


def model_flops_per_token(dims: ModelDims) -> float:
    """Model FLOPs per trained token, causal convention (the `mfu` numerator per token)."""
    dense_tok, att_tok = _model_flops_terms(dims)
    return dense_tok + att_tok * dims.mean_attended_keys


def peak_flops_bound(acc: Accelerator, precision: str, calib: Calibration) -> float:
    """FLOP/s no kernel of `evaluate` exceeds on `acc` (the datasheet peaks and GEMM ceilings at the
    job's precision and BF16): tokens/s <= accelerators x this / model_flops_per_token, a bound that
    prunes a layout before it is evaluated (optimizer.mip.prune). tests/test_fast_prune.py checks it."""
    peak = _peak(acc, precision)
    rates = [acc.peak_bf16_tflops, peak, gemm_ceiling_tflops(acc, "bf16", calib)]
    if peak is not None:
        rates.append(gemm_ceiling_tflops(acc, precision, calib))
    return max(r for r in rates if r is not None) * 1e12


def _ring_allreduce_s(k, nbytes, bw_bs, lat_s):
    """Ring all-reduce over k peers (Patarasuk & Yuan 2009) at bus bandwidth bw; zero for k = 1."""
    return np.where(k > 1, 2.0 * (k - 1) / k * nbytes / bw_bs + 2.0 * (k - 1) * lat_s, 0.0)


def _ring_gather_s(k, nbytes, bw_bs, lat_s):
    """Ring all-gather or reduce-scatter of `nbytes` in total over k peers: half an all-reduce."""
    return np.where(k > 1, (k - 1) / k * nbytes / bw_bs + (k - 1) * lat_s, 0.0)


def exposed_s(raw_s, frac, window_s=None):
    """Time a communication of `raw_s` adds when overlapped: the stack's exposed fraction `frac`, and
    never less than what the overlapping work (`window_s`; None = unlimited) leaves uncovered."""
    out = frac * raw_s if window_s is None else np.maximum(frac * raw_s, raw_s - window_s)
    return np.maximum(out, 0.0)


def _size_eff(dim, calib: Calibration):
    """Small matrices under-use the matrix units: efficiency saturates with the thinnest GEMM dimension."""
    return dim / (dim + calib.gemm_half_dim)


def tile_efficiency(dim, unit):
    """Share of a systolic matrix unit's rate a GEMM dimension `dim` keeps on a `unit` x `unit` array
    (TPU MXU): the weight tile is padded to whole units, so `dim` fills dim / (unit * ceil(dim/unit))
    of it (head_dim 128 on a 256-wide v6e MXU: 0.5; 320 on 256: 0.625). `unit` 0 or None (GPUs, whose
    tensor-core tiles divide every shipped dimension) loses nothing. The streamed (token) dimension
    is not padded to the unit, so only the weight-side dimensions of a GEMM go through this."""
    d = np.asarray(dim, dtype=np.float64)
    u = np.asarray(unit if unit is not None else 0, dtype=np.float64)
    safe = np.where(u > 0, u, 1.0)
    return np.where(u > 0, d / (safe * np.ceil(d / safe)), 1.0)


def power_clock_factor(power_w: float, base_power_w: float) -> float:
    """Sustained tensor clock of a part held to `power_w` relative to one held to `base_power_w`, at the
    same datasheet rate per clock: dynamic power goes as f V^2 with the voltage roughly proportional to
    the clock, so f ~ P^(1/3). Checked on the one die measured at two board powers: B200 at 1000 W
    (HGX) and 1200 W (GB200) gives 1.063, the measured GEMM ceilings 1.044 (BF16) and 1.053 (FP8)."""
    return (power_w / base_power_w) ** (1.0 / 3.0)


def fallback_gemm_ratio(acc: Accelerator, calib: Calibration) -> float:
    """Measured (or sibling-derived) over datasheet GEMM ratio of this accelerator (mean over those
    precisions); without either, the ratio fitted on its own training runs (the A100's is the 2021 fit
    `gemm_efficiency_max`); else the prior `unmeasured_gemm_ratio`, the median of the measured
    accelerators' ratios (without one, `gemm_efficiency_max`)."""
    peaks = {"bf16": acc.peak_bf16_tflops, "fp8": acc.peak_fp8_tflops, "mxfp8": acc.peak_fp8_tflops,
             "nvfp4": acc.peak_fp4_tflops}
    r = [v / peaks[k] for k, v in acc.gemm_ceilings_tflops.items() if peaks.get(k)]
    if r:
        return float(np.mean(r))
    if acc.gemm_efficiency_fitted:
        return acc.gemm_efficiency_fitted
    if acc.gemm_ratio_is_calibration:
        return calib.gemm_efficiency_max
    return calib.unmeasured_gemm_ratio or calib.gemm_efficiency_max


def gemm_ceiling_tflops(acc: Accelerator, precision: str, calib: Calibration) -> float:
    """Dense GEMM ceiling at `precision`: measured where published, else derived from a measured sibling
    part (`gemm_tflops_derived`), else datasheet x fallback ratio."""
    meas = acc.gemm_ceilings_tflops
    if precision in meas:
        return float(meas[precision])
    if precision == "mxfp8" and "fp8" in meas:  # same tensor-core rate; block scales ride along
        return float(meas["fp8"])
    peak = {"bf16": acc.peak_bf16_tflops, "fp8": acc.peak_fp8_tflops, "mxfp8": acc.peak_fp8_tflops,
            "nvfp4": acc.peak_fp4_tflops}[precision]
    if peak is None:
        raise ValueError(f"precision {precision} requested for an accelerator without such units")
    return float(peak) * fallback_gemm_ratio(acc, calib)


def _peak(acc: Accelerator, precision: str):
    return {"bf16": acc.peak_bf16_tflops, "fp8": acc.peak_fp8_tflops, "mxfp8": acc.peak_fp8_tflops,
            "nvfp4": acc.peak_fp4_tflops}[precision]


def scaleup_busbw_gbs(acc: Accelerator, calib: Calibration) -> float:
    """Collective bus bandwidth inside the scale-up domain: measured where published, else link x efficiency."""
    return float(acc.scaleup_busbw_gbs) if acc.scaleup_busbw_gbs else acc.scaleup_bw_gbs * calib.comm_efficiency


def _none_in_domain(n: float, domains, draws: int):
    """Chance that `draws` distinct picks among n items, spread evenly over `domains`, miss a given domain."""
    q = np.ones_like(domains)
    for i in range(draws):
        q = q * np.clip((n - n / domains - i) / (n - i), 0.0, 1.0)
    return q


def remote_domains_touched(k: int, experts: int, domains, groups: int = 0, group_top_k: int = 0):
    """Expected scale-up domains other than its own that one token's k experts land in, with the
    experts spread evenly over `domains` domains: (D - 1) x (1 - q), q = the chance a given domain
    holds none of them (drawn without replacement). Group-limited routing (DeepSeek-V3: 4 of 8
    groups) draws groups instead, while each group fits inside one domain (groups >= domains)."""
    D = np.maximum(np.asarray(domains, dtype=np.float64), 1.0)
    out = np.zeros_like(D)
    far = D > 1.0  # only EP groups spanning domains send anything over the fabric
    if far.any():
        Df = D[far]
        q = _none_in_domain(float(experts), Df, int(k))
        if groups and group_top_k:
            q = np.where(groups >= Df, _none_in_domain(float(groups), Df, int(group_top_k)), q)
        out[far] = (Df - 1.0) * (1.0 - q)
    return out


def a2a_time_s(copy_bytes, k, ep, span, su_dom, su_bs, fab_bs, fab_lat, fabric_copies=None):
    """One dispatch (or combine) all-to-all: each GPU sends each of its tokens (`copy_bytes` each) to
    the k experts it picked, spread evenly over its ep peers. Inside one scale-up domain it runs on
    those links. An EP group spanning `span` > domain GPUs is hierarchical (DeepEP, Megatron's
    HybridEP): a token crosses the fabric once per remote domain holding any of its experts
    (`fabric_copies`, from `remote_domains_touched`; default its upper bound min(k x remote share,
    remote domains)) and fans out over scale-up there; both links run at once, each with one hop of latency."""
    ep = np.asarray(ep, dtype=np.float64)
    spans = span > su_dom
    inside = np.where(spans, np.minimum(ep, np.maximum(su_dom * ep / span, 1.0)), ep)  # ep peers per domain
    many = ep > 1
    remote_share = np.where(many, (ep - inside) / np.maximum(ep, 1.0), 0.0)
    local_share = np.where(many, (inside - 1.0) / np.maximum(ep, 1.0), 0.0)
    remote_domains = np.maximum(np.ceil(span / su_dom) - 1.0, 0.0)
    if fabric_copies is None:
        fabric_copies = np.minimum(k * remote_share, remote_domains)
    fabric_copies = np.where(spans & many, fabric_copies, 0.0)
    scaleup_copies = k * (local_share + remote_share)  # local experts, and the fan-out of remote arrivals
    t_in = copy_bytes * scaleup_copies / su_bs + np.where(many, SCALEUP_LATENCY_S, 0.0)
    t_out = copy_bytes * fabric_copies / fab_bs + np.where(fabric_copies > 0, fab_lat, 0.0)
    return np.maximum(t_in, t_out)


def _expert_terms(dims: ModelDims, grid: "ConfigGrid", tok, t, su_dom, su_bs, fab_bs, fab_lat):
    """Per GPU, per micro-batch, averaged per layer: (all-to-all bytes of one dispatch, one
    all-to-all's seconds, tokens per local expert, routed expert parameters held). Zeros for dense models.

    Balanced routing gives every GPU of a stage 2 tok k P_e / t routed FLOPs whatever ep and etp;
    the busiest rank gets `routing_factor` times that. Each GPU holds E/ep experts sliced over etp
    and receives tok k ep etp / (E t) tokens per local expert (the grouped GEMMs' thin dimension)."""
    n = len(grid)
    if not dims.is_moe:
        z = np.zeros(n)
        return z, z, z, z
    ep, etp = grid.ep_or_one().astype(np.float64), grid.etp_or_one().astype(np.float64)
    k, E, rf, h = float(dims.top_k), float(dims.experts), dims.routing_factor, float(dims.hidden)
    share = dims.moe_layers / dims.layers  # MoE layers among all
    copy_bytes = tok * h * ACT_BYTES / t * rf  # one copy of this GPU's tokens (the busiest rank's share)
    a2a_bytes = k * copy_bytes
    span = ep * etp
    domains = np.where(span > su_dom, np.ceil(span / su_dom), 1.0)
    copies = remote_domains_touched(dims.top_k, dims.experts, domains, dims.expert_groups, dims.group_top_k)
    a2a_s = a2a_time_s(copy_bytes, k, ep, span, su_dom, su_bs, fab_bs, fab_lat, copies) * share
    tok_expert = tok * k * ep * etp / (E * t) * rf
    expert_params_gpu = share * E * dims.expert_params / (ep * etp)  # per layer of a stage, averaged
    return a2a_bytes * share, a2a_s, tok_expert, expert_params_gpu


def expert_kernels_per_micro_batch(precision: str, forward_passes):
    """Kernels one local expert launches per MoE layer and micro-batch: each forward pass (1, plus the
    recomputed share of a layer) runs its 2 GEMMs and quantises their 2 inputs, the backward its 4 GEMMs
    and the 2 output gradients; a quantisation is QUANTIZE_KERNELS[precision] kernels (0 in BF16)."""
    q = QUANTIZE_KERNELS[precision]
    return (EXPERT_FWD_GEMMS + EXPERT_FWD_QUANTISED * q) * forward_passes + EXPERT_BWD_GEMMS + EXPERT_BWD_QUANTISED * q


def _op_sac_matmuls(dims: ModelDims, t, moe_layer: bool) -> list[tuple]:
    """A block's aten.mm calls in forward order (torchtitan's Llama/DeepSeek modules), each as
    (output width per rank and token, weight parameters). Column-parallel outputs split over t; a
    row-parallel one (o, down) holds every token of the gathered sequence before its reduce-scatter,
    so it does not. The routed experts run as grouped GEMMs, not aten.mm: not in this list."""
    t = np.asarray(t, dtype=np.float64)
    h, a = float(dims.hidden), float(dims.heads)
    if dims.mla:  # latent down-projections are replicated over TP, the per-head up-projections split
        qd, kvr = a * dims.qk_head_dim, float(dims.kv_lora_rank + dims.qk_rope_head_dim)
        ql = float(dims.q_lora_rank or 0)
        attn = ([(ql + 0.0 * t, h * ql), (qd / t, ql * qd)] if ql else [(qd / t, h * qd)]) + [
            (kvr + 0.0 * t, h * kvr), (a * (dims.qk_nope_head_dim + dims.v_head_dim) / t,
                                       dims.kv_lora_rank * a * (dims.qk_nope_head_dim + dims.v_head_dim))]
        attn.append((h + 0.0 * t, a * dims.v_head_dim * h))
    else:
        qd, kvd = a * dims.head_size, float(dims.n_kv_heads * dims.head_size)
        attn = [(qd / t, h * qd), (kvd / t, h * kvd), (kvd / t, h * kvd), (h + 0.0 * t, qd * h)]

    def mlp(width):
        up = [(width / t, h * width)] * (2 if dims.gated_mlp else 1)
        return up + [(h + 0.0 * t, width * h)]

    if not moe_layer:
        return attn + mlp(float(dims.ffn))
    shared = mlp(float(dims.shared_experts * dims.expert_ffn)) if dims.shared_experts else []
    return attn + [(dims.experts + 0.0 * t, h * dims.experts)] + shared  # router, then shared experts


def _per_layer_mean(dims: ModelDims, f) -> np.ndarray:
    if not dims.is_moe:
        return f(False)
    return (dims.dense_mlp_layers * f(False) + dims.moe_layers * f(True)) / dims.layers


def op_sac_saved_bytes_per_token(dims: ModelDims, t) -> np.ndarray:
    """Bytes per token of a micro-batch, per layer and GPU, that torchtitan's op-level selective
    activation checkpointing (selective_ac_option "op") keeps from the forward to the backward:
    the block's input, the output of every odd-numbered matmul of the block (1st, 3rd, ...; its
    counter skips the even ones), the attention kernel's output with its fp32 log-sum-exp, and with
    tensor parallelism the two reduce-scatter outputs. Everything else (norms, rope, activations,
    the routed experts' grouped GEMMs) is recomputed. Averaged over dense and MoE layers."""
    t = np.asarray(t, dtype=np.float64)
    h, a = float(dims.hidden), float(dims.heads)
    fixed = (h / t + a * dims.value_head_dim / t + np.where(t > 1, 2.0 * h / t, 0.0)) * ACT_BYTES + 4.0 * a / t
    saved = _per_layer_mean(dims, lambda moe: sum(w for i, (w, _) in enumerate(_op_sac_matmuls(dims, t, moe))
                                                  if i % 2 == 0))
    return fixed + saved * ACT_BYTES


def op_sac_recomputed_linear_share(dims: ModelDims) -> float:
    """Share of a layer's linear forward FLOPs the op-level policy runs again in the backward: the
    even-numbered matmuls (Llama 3.1 8B: k, o, w3, 36.5 %; a plain MHA + 4h MLP block: k, o, fc2, 50 %)
    and, in MoE layers, the routed experts' grouped GEMMs."""
    def recomputed(moe):
        mms = _op_sac_matmuls(dims, 1.0, moe)
        routed = dims.top_k * dims.expert_params if moe else 0.0
        return sum(p for i, (_, p) in enumerate(mms) if i % 2 == 1) + routed
    return float(_per_layer_mean(dims, recomputed)) / dims.params_per_layer


def evaluate(
    dims: ModelDims,
    grid: ConfigGrid,
    accelerators: list[Accelerator],
    fabrics: list[Fabric],
    calib: Calibration,
    precision: str,
    global_batch=None,
    tokens: float | None = None,
    *,
    stack: "str | StackProfile | None" = None,
    precisions: dict[str, PrecisionProfile] | None = None,
    detail: bool = True,
) -> dict[str, np.ndarray]:
    """Step time, throughput, FLOPs, memory and the step-time breakdown of every row of `grid`.
    (`global_batch` is kept for callers; each row carries its own batch in `grid.gb`.) With
    `detail=False` only what the optimizer reads (CORE_KEYS) is returned, which saves the memory
    traffic of ~20 more output arrays on tables of millions of rows."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'")
    st = get_stack(stack)
    pp = (precisions or precision_profiles()).get(precision) if precision in LOW_PRECISIONS else None
    # Per-accelerator and per-fabric tables (a few entries), gathered per row below.
    tabs = _tables(accelerators, fabrics, calib, precision, st)
    if len(grid) <= CHUNK_ROWS:
        return _evaluate(dims, grid, tabs, calib, precision, st, pp, tokens, detail)
    # Cache-sized chunks: reusing small temporaries beats page-faulting fresh 10 MB arrays ~5x.
    parts = [_evaluate(dims, grid.take(slice(i, i + CHUNK_ROWS)), tabs, calib, precision, st, pp, tokens, detail)
             for i in range(0, len(grid), CHUNK_ROWS)]
    return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}


def _tables(accelerators, fabrics, calib, precision, st):
    nan = float("nan")

    def ceil_or_nan(a, prec):
        try:
            return gemm_ceiling_tflops(a, prec, calib) * 1e12
        except ValueError:
            return nan

    a = accelerators
    return {
        "lin": np.array([ceil_or_nan(x, precision) for x in a]),
        "bf16": np.array([gemm_ceiling_tflops(x, "bf16", calib) * 1e12 for x in a]),
        "peak_bf16": np.array([x.peak_bf16_tflops for x in a]) * 1e12,
        "mxu": np.array([float(x.matrix_unit_dim or 0) for x in a]),
        "peak_lin": np.array([(_peak(x, precision) or nan) for x in a]) * 1e12,
        "hbm_gb": np.array([x.hbm_gb for x in a]),
        "hbm_bs": np.array([(x.hbm_bw_measured_tbs or x.hbm_bw_tbs) for x in a]) * 1e12,
        "su_dom": np.array([x.scaleup_domain for x in a]),
        "su_bs": np.array([scaleup_busbw_gbs(x, calib) for x in a]) * 1e9,
        "per_node": np.array([x.accelerators_per_node for x in a]),
        "ports_per_acc": np.array([x.fabric_ports_per_node / x.accelerators_per_node for x in a]),
        "ports_per_node": np.array([x.fabric_ports_per_node for x in a]),
        "fab_bs": np.array([f.port_gbps for f in fabrics]) / 8 * 1e9 * calib.comm_efficiency,
        "fab_lat": np.array([f.latency_us for f in fabrics]) * 1e-6,
        "fab_oversub": np.array([f.oversubscription for f in fabrics]),
        "leaf_down": np.array([f.switch_radix * f.oversubscription / (1.0 + f.oversubscription) for f in fabrics]),
    }


def _evaluate(dims, grid, tabs, calib, precision, st: StackProfile, pprof, tokens, detail=True) -> dict[str, np.ndarray]:
    s, h, l = float(dims.seq_len), float(dims.hidden), dims.layers
    a, kvh, hd = float(dims.heads), float(dims.n_kv_heads), float(dims.head_size)
    V, ffn = float(dims.padded_vocab), float(dims.ffn)
    P_layer = dims.params_per_layer  # per token (MoE: top_k routed + shared experts, averaged over layers)
    moe = dims.is_moe
    # Parameters split over t per layer (MoE: all but the routed experts, which split over ep x etp).
    P_tp = P_layer - (dims.moe_layers / l * dims.top_k * dims.expert_params if moe else 0.0)
    d_qk, d_v = float(dims.qk_head_dim), float(dims.value_head_dim)
    fused = st.fused_attention
    gemm_eff = st.gemm_efficiency if st.gemm_efficiency is not None else 1.0
    att_eff = st.attention_efficiency if st.attention_efficiency is not None else calib.gemm_efficiency_max
    elem_passes = st.elementwise_passes if st.elementwise_passes is not None else calib.elementwise_passes
    dp_exposed_frac = st.dp_exposed if st.dp_exposed is not None else 1.0 - calib.dp_overlap
    # Keys each query attends to: fused kernels skip masked blocks (causal: ~s/2), unfused do all s.
    keys = dims.mean_attended_keys if (fused and st.causal_skip) else s

    ai, fi = grid.acc, grid.fab
    lin_rate_pk = tabs["lin"][ai]
    if np.isnan(lin_rate_pk).any():
        raise ValueError(f"{precision} requested for an accelerator without {precision} units")
    bf16_pk = tabs["bf16"][ai]
    hbm_gb, hbm_bs = tabs["hbm_gb"][ai], tabs["hbm_bs"][ai]
    su_dom, su_bs = tabs["su_dom"][ai], tabs["su_bs"][ai]
    per_node = tabs["per_node"][ai]
    fab_bs = tabs["fab_bs"][fi] * tabs["ports_per_acc"][ai]
    fab_lat = tabs["fab_lat"][fi]

    t, p, d, b, v, c = (x.astype(np.float64) for x in (grid.t, grid.p, grid.d, grid.b, grid.v, grid.cp))
    rc, shard = grid.recompute, grid.shard
    Bg = grid.gb.astype(np.float64)
    n_acc = grid.t * grid.p * grid.d * grid.cp
    n_f = n_acc.astype(np.float64)
    nodes = -(-n_acc // per_node)
    # Collectives crossing an oversubscribed fabric run at its uplink share once the job spans leaves.
    spans_leaves = nodes * tabs["ports_per_node"][ai] > tabs["leaf_down"][fi]
    fab_bs = np.where(spans_leaves, fab_bs / tabs["fab_oversub"][fi], fab_bs)
    m = Bg / (b * d)
    tok = b * s / c  # tokens of one micro-batch on one GPU
    a2a_bytes, a2a_one_s, tok_expert, expert_params_gpu = _expert_terms(dims, grid, tok, t, su_dom, su_bs, fab_bs, fab_lat)

    # Memory of the heaviest stage (Korthikanti et al. 2022 with sequence parallelism; the s^2 score
    # term only without fused attention); sequence split over cp. Computed first: partial recompute
    # picks the fewest layers per stage to recompute so that the stage fits.
    full, first, last = (x.astype(np.float64) for x in stage_layers(l, grid.p))
    k = d * c  # data-parallel group of the weights (cp ranks hold the same weights)
    fsdp = shard == 3
    # The heaviest stage: its layers plus the input embedding (first) or output head (last); a single
    # stage holds both unless they are tied.
    P_store_tp = dims.stored_params_per_layer - (dims.moe_layers / l * dims.experts * dims.expert_params if moe else 0.0)
    stage_params = full * P_store_tp + V * h * np.where((p == 1) & (not dims.tied_embeddings), 2.0, 1.0)
    params_gpu = stage_params / t
    # bytes per parameter: weights 2 + gradients 2 + fp32 master, momentum, variance 12, each sharded
    # over k from ZeRO-1 (optimizer state), ZeRO-2 (+ gradients), ZeRO-3 (+ weights).
    sh = shard.astype(np.float64)
    inv_k = 1.0 / k
    gb_ = st.grad_bytes  # bf16 gradients, or fp32 where the stack accumulates and reduces them in fp32
    state_per_param = (np.where(sh >= 1, 12.0 * inv_k, 12.0) + np.where(sh >= 2, gb_ * inv_k, gb_)
                       + np.where(sh >= 3, 2.0 * inv_k, 2.0))
    gathered = np.where(fsdp, 2.0 * 2.0 * (P_store_tp / t + expert_params_gpu), 0.0)  # ZeRO-3: two layers in flight
    if moe:
        # Routed experts: their data-parallel group is the stage's t*d*cp GPUs over ep x etp.
        k_exp = t * k / (grid.ep_or_one() * grid.etp_or_one())
        inv_ke = 1.0 / k_exp
        exp_state = (np.where(sh >= 1, 12.0 * inv_ke, 12.0) + np.where(sh >= 2, gb_ * inv_ke, gb_)
                     + np.where(sh >= 3, 2.0 * inv_ke, 2.0))
        expert_stage = full * expert_params_gpu
        expert_state_bytes = exp_state * expert_stage
    else:
        k_exp, expert_stage, expert_state_bytes = k, 0.0, 0.0
    state_bytes = state_per_param * params_gpu + gathered + expert_state_bytes
    score_term = 0.0 if fused else 5.0 * a * s / h
    layer_full = tok * h * (34.0 + score_term) / t
    if moe:  # routed tokens: expert input (2h bytes) and fc1/act outputs (6 f_e, gated) per token copy
        layer_full = layer_full + dims.moe_layers / l * tok * dims.top_k * dims.routing_factor / t * (
            2.0 * h * grid.etp_or_one() + 6.0 * dims.expert_ffn)
    layer_ckpt = 2.0 * tok * h / t  # a fully recomputed layer keeps only its input
    # 1F1B: the first stage holds p micro-batches in flight (m if fewer), i.e. ~all l layers of one.
    in_flight = np.minimum(m, p) * np.where(v > 1, 1.0 + (p - 1.0) / (p * v), 1.0)
    other = tok * V * 4.0 / t  # fp32 logits of one micro-batch
    budget = (hbm_gb - calib.memory_reserved_gb) * 1e9 - state_bytes - other
    partial = rc == 3
    need = (in_flight * full * layer_full - (budget - layer_full)) / (in_flight * (layer_full - layer_ckpt))
    n_rc = np.where(partial, np.clip(np.ceil(np.maximum(need, 0.0)), 0.0, full), np.where(rc == 2, full, 0.0))
    if st.selective_recompute == "ops":  # op-level policy: what it saves, plus one layer rebuilt in the backward
        act_sel, sel_transient = tok * op_sac_saved_bytes_per_token(dims, t), layer_full
    else:  # Megatron's selective recompute: everything but the attention core (Korthikanti et al. 2022)
        act_sel, sel_transient = 34.0 * tok * h / t, 0.0
    act_layer = np.where(rc == 1, act_sel, layer_full)
    act_bytes = np.where(
        (rc == 2) | partial,
        in_flight * ((full - n_rc) * layer_full + n_rc * layer_ckpt) + np.where(n_rc > 0, layer_full, 0.0),
        full * in_flight * act_layer + np.where(rc == 1, sel_transient, 0.0)) + other
    memory_gb = (state_bytes + act_bytes) / 1e9
    frac_rc = n_rc / full  # share of a stage's layers recomputed in full

    # FLOPs per micro-batch per layer per GPU. Passes: fwd + 2x bwd, +1 fwd where recomputed
    # (full: the whole layer; selective: the attention core only, or with an op-level policy every
    # second matmul and every elementwise op). `fwd_mult` scales the memory-bound work and fixed costs.
    lin_mult = 3.0 + frac_rc
    att_mult = np.where(rc == 1, 4.0, 3.0 + frac_rc)
    fwd_mult = lin_mult
    if st.selective_recompute == "ops":
        sel = (rc == 1).astype(np.float64)
        lin_mult, att_mult, fwd_mult = lin_mult + op_sac_recomputed_linear_share(dims) * sel, np.where(rc == 1, 3.0, att_mult), lin_mult + sel
    lin_fwd = 2.0 * tok * P_layer / t
    att_fwd = 2.0 * tok * keys * a * (d_qk + d_v) / t  # QK^T and AV
    logit_fwd = 2.0 * tok * h * V / t

    # Rates. Linear GEMMs at the job's precision against the measured ceiling; attention, logits and
    # elementwise work stay BF16. The thinnest GEMM dimension sets the size efficiency.
    low = pprof is not None
    lin_rate = lin_rate_pk * gemm_eff * (pprof.gemm_efficiency if low else 1.0)
    lin_rate = np.minimum(lin_rate, tabs["peak_lin"][ai])  # no kernel beats the datasheet
    # Each of the layer's four GEMMs is as efficient as its thinnest dimension (tokens, or the
    # tensor-parallel slice of its output or input width): QKV and fc1 split their outputs over t,
    # the output projection and fc2 their inputs.
    # On a systolic matrix unit (TPU MXU) each GEMM also loses the unfilled part of its padded weight
    # tile: tile(width) is the tile efficiency of its hidden side times that of its per-rank width.
    mult = 2.0 if dims.gated_mlp else 1.0
    unit = tabs["mxu"][ai]
    tile_h = tile_efficiency(h, unit)

    def tile(width):
        return tile_h * tile_efficiency(width, unit)

    if not moe:
        qd, kvd = float(a * hd), float(2 * kvh * hd)
        # (weights, width of the size term: Q, K, V as one GEMM, width of the tile term: each matrix)
        gemms = ((h * qd, (qd + kvd) / t, qd / t), (h * kvd, (qd + kvd) / t, kvd / 2.0 / t), (qd * h, qd / t, qd / t),
                 (mult * h * ffn, mult * ffn / t, ffn / t), (ffn * h, ffn / t, ffn / t))
        inv_size = sum(w / (_size_eff(np.minimum(np.minimum(dim, h), tok), calib) * tile(tw))
                       for w, dim, tw in gemms) / P_layer
    else:
        # Dense part (attention as one GEMM as wide as its per-rank heads, dense/shared MLPs), then the
        # routed experts' grouped GEMMs, as thin as the tokens each local expert receives.
        attn, fe = dims.attn_params_per_layer, float(dims.expert_ffn)
        mlp_tp = P_tp - attn
        width = (dims.dense_mlp_layers * ffn + dims.moe_layers * dims.shared_experts * fe) / l or fe
        dense = (attn / (_size_eff(np.minimum(np.minimum(a * d_qk / t, h), tok), calib) * tile(a * d_qk / t))
                 + mlp_tp / (_size_eff(np.minimum(np.minimum(width / t, h), tok), calib) * tile(width / t)))
        fe_rank = fe / grid.etp_or_one()
        routed = (P_layer - P_tp) * dims.routing_factor / (_size_eff(
            np.minimum(np.minimum(fe_rank, h), tok_expert), calib) * tile(fe_rank)) / st.expert_gemm_efficiency
        inv_size = (dense + routed) / P_layer
    if fused:
        att_rate = bf16_pk * att_eff
    else:  # unfused: batched GEMMs as thin as a head
        att_rate = bf16_pk * gemm_eff * _size_eff(hd, calib)
    logit_rate = bf16_pk * gemm_eff * _size_eff(np.minimum(np.minimum(h, V / t), tok), calib) * tile(V / t)
    # QK^T and its two backward GEMMs have head_dim d_qk (MLA: nope + rope) on the weight side, AV
    # and its two d_v: on a matrix unit wider than them, they run at its tile efficiency.
    att_tile_inv = (d_qk / tile_efficiency(d_qk, unit) + d_v / tile_efficiency(d_v, unit)) / (d_qk + d_v)
    lin_s = lin_mult * lin_fwd * inv_size / lin_rate
    att_s = att_mult * att_fwd * att_tile_inv / att_rate
    # Memory-bound kernels: passes over the layer's activations (norms, activations, residuals, rope),
    # over the s x s scores when attention is unfused, and the casts of a low-precision recipe.
    act_elems = tok * h / t
    elem_bytes = elem_passes * act_elems * ACT_BYTES * fwd_mult / 3.0
    score_bytes = 0.0 if fused else calib.attention_passes * b * (a / t) * s * s / c * ACT_BYTES * att_mult / 3.0
    cast_bytes = (pprof.cast_passes if low else 0.0) * act_elems * ACT_BYTES * fwd_mult / 3.0
    routed_tok = dims.moe_layers / l * tok * dims.top_k * dims.routing_factor if moe else 0.0  # per layer, busiest rank
    if moe and low:  # each routed copy is cast too: h wide into fc1, f_e wide into fc2 (half the dense passes each)
        cast_bytes = cast_bytes + pprof.cast_passes / 2.0 * routed_tok * (h + float(dims.expert_ffn)) / t * ACT_BYTES \
            * fwd_mult / 3.0
    moe_bytes = MOE_PERMUTE_PASSES * routed_tok * h / t * ACT_BYTES * fwd_mult / 3.0
    mem_s = (elem_bytes + score_bytes + cast_bytes + moe_bytes) / hbm_bs

    # Tensor parallel: all-reduces (or reduce-scatter + all-gather with sequence parallelism, same
    # bytes) of the layer's activations: 2 fwd + 2 bwd, +2 for a recomputed forward; one pair less
    # for a parallel block. The stack hides part of it under the GEMMs.
    tp_in_su = grid.t <= su_dom
    tp_bw = np.where(tp_in_su, su_bs, fab_bs)
    tp_lat = np.where(tp_in_su, SCALEUP_LATENCY_S, fab_lat)
    n_ar = (4.0 + 2.0 * frac_rc) / (2.0 if dims.parallel_block else 1.0)
    tp_layer = st.tp_exposed * n_ar * _ring_allreduce_s(t, tok * h * ACT_BYTES, tp_bw, tp_lat)

    # Context parallel (ring attention): each rank passes its K,V block around the ring, cp-1 steps
    # fwd; bwd passes K,V again and returns dK,dV (3x). Hidden under the attention blocks it overlaps.
    cp_in_su = grid.t * grid.cp <= su_dom
    cp_bw = np.where(cp_in_su, su_bs, fab_bs)
    cp_lat = np.where(cp_in_su, SCALEUP_LATENCY_S, fab_lat)
    kv_bytes = tok * (a * (d_qk + d_v) if dims.mla else 2.0 * kvh * hd) / t * ACT_BYTES  # MLA: per-head K, V
    cp_passes = att_mult
    cp_raw = np.where(c > 1, cp_passes * (c - 1.0) * (kv_bytes / cp_bw + cp_lat), 0.0)
    cp_layer = np.maximum(cp_raw - att_s, 0.0) if st.overlap_limited_by_compute else cp_raw

    # Fixed cost per layer; MoE layers add theirs (router, permutation, dropless token-count syncs).
    # Grouped expert GEMMs launch one GEMM (and, at low precision, its quantisation kernels) per local
    # expert and pass (Transformer Engine GroupedLinear loops over the E/(ep etp) local experts), and
    # dropless routing syncs the host on the token counts every MoE layer: a fixed cost per MoE layer
    # plus one per local expert, `expert_launch_us` for its 6 GEMMs and a sixth of that per other kernel,
    # counted pass by pass (a recomputed forward reruns the forward's kernels, not a third of all of them).
    if moe:
        local_experts = dims.experts / (grid.ep_or_one() * grid.etp_or_one())
        kernel_us = st.expert_launch_us / EXPERT_GEMMS  # one expert kernel's launch
        kernels = expert_kernels_per_micro_batch(precision if low else "bf16", fwd_mult - 2.0)
        moe_fixed_us = (st.moe_layer_overhead_us * fwd_mult / 3.0 + kernel_us * kernels * local_experts) \
            * dims.moe_layers / l
    else:
        moe_fixed_us = 0.0
    overhead_s = st.layer_overhead_us * 1e-6 * fwd_mult / 3.0 + moe_fixed_us * 1e-6
    # MoE dispatch + combine all-to-all: 2 forward, 2 backward, 2 more for a recomputed forward.
    # Overlapped (Megatron's 1F1B a2a overlap, DeepEP): hidden at most under the compute it overlaps.
    if moe:
        ep_layer = exposed_s((4.0 + 2.0 * frac_rc) * a2a_one_s, st.ep_exposed,
                             lin_s + att_s + mem_s if st.overlap_limited_by_compute else None)
    else:
        ep_layer = 0.0
    T_layer = lin_s + att_s + mem_s + overhead_s + tp_layer + cp_layer + ep_layer
    T_logit = 3.0 * logit_fwd / logit_rate

    # Pipeline: the slowest stage sets the pace (full stages: ceil(l/p) layers; the last adds logits).
    mtp = float(dims.mtp_modules)  # MTP modules: one more layer and output head each, on the last stage
    T_stage = np.maximum(np.maximum(full * T_layer, first * T_layer), (last + mtp) * T_layer + (1.0 + mtp) * T_logit)
    bubble_mb = (p - 1.0) / v  # 1F1B / interleaved bubble in stage times
    job_in_su = n_acc <= su_dom
    pp_bw = np.where(job_in_su, su_bs, fab_bs)
    pp_lat = np.where(job_in_su, SCALEUP_LATENCY_S, fab_lat)
    pp_comm_s = st.pp_exposed * np.where(
        p > 1, 2.0 * (m * v + p - 1.0) * (pp_lat + tok * h * ACT_BYTES / t / pp_bw), 0.0)

    # Data parallel over d*cp ranks (cp ranks hold the same weights). ZeRO-0/1/2: one gradient
    # all-reduce (or reduce-scatter + all-gather: same bytes) per step. ZeRO-3/FSDP: parameters
    # all-gathered for every micro-batch's forward and backward, gradients reduce-scattered once.
    # The ring runs over the fabric at the NIC bandwidth of each peer sharing a node, capped by the
    # scale-up links; inside one scale-up domain it uses those links only.
    shard_bytes = 2.0 * stage_params / t  # bf16 weights or gradients of one GPU's model slice
    # Ranks are ordered tp, cp, dp, pp (pp outermost; Megatron-Core, torchtitan): a node holds
    # per_node / t ranks of one weight group, each on its own NIC.
    dp_peers_per_node = np.clip(per_node // grid.t, 1, grid.d * grid.cp)
    dp_bw = np.where(job_in_su, su_bs, np.minimum(fab_bs * dp_peers_per_node, su_bs))
    dp_lat = np.where(job_in_su, SCALEUP_LATENCY_S, fab_lat)
    # Low-precision recipes gather the weights already cast (1 byte: --fp8-param-gather, torchao
    # float8 all-gather); gradients are reduced at the stack's gradient width (bf16 or fp32).
    w_bytes = 0.5 if low else 1.0
    g_bytes = st.grad_bytes / 2.0
    rs_s = _ring_gather_s(k, g_bytes * shard_bytes, dp_bw, dp_lat)
    ag_s = _ring_gather_s(k, w_bytes * shard_bytes, dp_bw, dp_lat)
    if moe:  # routed experts reduce over their own (smaller) data-parallel group
        ex_bytes = 2.0 * expert_stage
        # Expert ranks are ordered etp, ep, edp: a node holds per_node / (ep etp) of a group.
        ex_peers = np.clip(per_node // (grid.ep_or_one() * grid.etp_or_one()), 1, np.maximum(k_exp, 1))
        ex_bw = np.where(job_in_su, su_bs, np.minimum(fab_bs * ex_peers, su_bs))
        rs_s = rs_s + _ring_gather_s(k_exp, g_bytes * ex_bytes, ex_bw, dp_lat)
        ag_s = ag_s + _ring_gather_s(k_exp, w_bytes * ex_bytes, ex_bw, dp_lat)
    # What can hide it. FSDP: gathers and reductions overlap every micro-batch. Otherwise the gradient
    # reduction (the whole all-reduce without sharding) overlaps only the last micro-batch's backward,
    # the parameter gather of ZeRO-1/2 only the first forward of the next step (--overlap-param-gather),
    # both on the first stage, which finishes its backward last (the later stages' reductions run in its
    # cool-down): the window is its layers' own work, never the output layer and loss. Megatron-Core
    # launches a bucket's reduce-scatter once its gradients exist (none before the loss's backward has
    # gone through the output layer) and gathers a bucket's parameters just ahead of the module using it
    # (all gathered before the logits), so with one stage the logits and loss hide neither collective.
    grad_s = np.where(shard == 0, 2.0 * rs_s, rs_s)
    gather_s = np.where(shard == 0, 0.0, ag_s)
    if st.overlap_limited_by_compute:
        layers_w = first * T_layer  # one micro-batch on the first stage, its layers only
        fwd_w = layers_w / fwd_mult  # their forward; the backward (with its recompute) is the rest
        dp_exposed_s = np.where(fsdp, exposed_s(grad_s + 2.0 * m * gather_s, dp_exposed_frac, m * T_stage),
                                exposed_s(grad_s, dp_exposed_frac, layers_w - fwd_w)
                                + exposed_s(gather_s, dp_exposed_frac, fwd_w))
    else:
        dp_exposed_s = exposed_s(grad_s + np.where(fsdp, 2.0 * m, 1.0) * gather_s, dp_exposed_frac)

    # Optimizer step: memory-bound pass reading and writing each GPU's (sharded) state, plus the
    # stack's fixed per-step cost (gradient norm and clipping, data loading, logging, host syncs).
    opt_s = (2.0 * state_bytes / hbm_bs if st.optimizer_step else np.zeros(len(grid))) + st.step_overhead_s
    if moe and low:  # each local expert's 2 weights are quantised once per step (cached for the other passes)
        opt_s = opt_s + full * dims.moe_layers / l * local_experts * EXPERT_WEIGHTS * QUANTIZE_KERNELS[precision] \
            * kernel_us * 1e-6
    step_s = (m + bubble_mb) * T_stage + pp_comm_s + dp_exposed_s + opt_s
    tokens_per_s = Bg * s / step_s

    # FLOPs. Hardware: what runs, recompute included. Model: 6N + logits + attention with the causal
    # convention (half the s x s work) and with full attention (PaLM App. B, torchtitan, NeMo 24.07).
    hw_flops_mb = (l + mtp) * (lin_mult * lin_fwd + att_mult * att_fwd) + 3.0 * (1.0 + mtp) * logit_fwd
    hw_flops_per_step = hw_flops_mb * t * c * m * d
    dense_tok, att_tok = _model_flops_terms(dims)
    model_flops_per_step = Bg * s * model_flops_per_token(dims)
    model_flops_full = Bg * s * (dense_tok + att_tok * s)

    days = np.full_like(step_s, np.nan) if tokens is None else float(tokens) / tokens_per_s / 86400
    peak = tabs["peak_bf16"][ai]
    gpu_s = n_f * step_s
    out = {
        "n_acc": n_acc,
        "nodes": nodes,
        "step_time_s": step_s,
        "tokens_per_s": tokens_per_s,
        "time_to_train_days": days,
        "tflops_per_gpu_hw": hw_flops_per_step / gpu_s / 1e12,
        "tflops_per_gpu_model": model_flops_per_step / gpu_s / 1e12,
        "mfu": model_flops_per_step / (gpu_s * peak),  # against the BF16 datasheet peak
        "memory_per_gpu_gb": memory_gb,
        "fits_memory": memory_gb <= hbm_gb - calib.memory_reserved_gb,
    }
    if not detail:
        return out
    out.update({
        "tokens_per_s_per_gpu": tokens_per_s / n_f,
        "hw_flops_per_step": hw_flops_per_step,
        "model_flops_per_step": model_flops_per_step,
        "model_flops_per_step_full_attention": model_flops_full,
        "tflops_per_gpu_model_full_attention": model_flops_full / gpu_s / 1e12,
        "mfu_full_attention": model_flops_full / (gpu_s * peak),
        "compute_s": m * (T_stage - full * (tp_layer + cp_layer + ep_layer)),
        "bubble_s": bubble_mb * T_stage,
        "tp_comm_s": m * full * tp_layer,
        "cp_comm_s": m * full * cp_layer,
        "ep_comm_s": m * full * ep_layer,
        "a2a_s": m * full * ep_layer,
        "a2a_bytes_per_layer": a2a_bytes,
        "pp_comm_s": pp_comm_s,
        "dp_comm_exposed_s": dp_exposed_s,
        "optimizer_s": opt_s,
        "global_batch": Bg,
        "recompute_layers": n_rc,
    })
    return out


def evaluate_layout(dims: ModelDims, layout: dict, accelerator: Accelerator, fabric: Fabric, calib: Calibration,
                    precision: str, global_batch, tokens: float | None = None) -> dict[str, float]:
    """`evaluate` on one layout given by name: the one place a single layout is evaluated (verifier,
    calibration, estimate). Keys: tp, pp, dp, micro_batch, vp, recompute, distributed_optimizer, and
    cp, sharding, global_batch, stack, ep, etp; missing keys take the old defaults (cp 1, sharding
    from distributed_optimizer, the job's global batch, stack megatron-core, ep = etp = 1)."""
    one = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
    dist = bool(layout.get("distributed_optimizer", True))
    sharding = layout.get("sharding") or ("zero1" if dist else "none")
    if sharding not in SHARDING:
        raise ValueError(f"sharding must be one of {', '.join(SHARDING)}; got '{sharding}'")
    gb = layout.get("global_batch")
    if gb is None:
        lo, hi = batch_bounds(global_batch)
        b, d = int(layout.get("micro_batch", 1)), int(layout["dp"])
        gb = (hi // (b * d)) * b * d if lo != hi else lo
    grid = ConfigGrid(
        acc=one(0), fab=one(0), t=one(layout["tp"]), p=one(layout["pp"]), d=one(layout["dp"]),
        b=one(layout.get("micro_batch", 1)), v=one(layout.get("vp", 1)),
        recompute=one(RECOMPUTE.index(layout.get("recompute", "none"))),
        dist_opt=np.array([SHARDING.index(sharding) >= 1], dtype=bool),
        cp=one(layout.get("cp", 1)), shard=one(SHARDING.index(sharding)), gb=one(gb),
        ep=one(layout.get("ep", 1)) if dims.is_moe else None, etp=one(layout.get("etp", 1)) if dims.is_moe else None,
    )
    out = evaluate(dims, grid, [accelerator], [fabric], calib, precision, gb, tokens, stack=layout.get("stack"))
    return {k: float(np.atleast_1d(v)[0]) for k, v in out.items()}


def _throughput_benchmark() -> None:
    """Configs/s of `evaluate` as the optimizer runs it (detail=False) on the full built-in catalog
    (python -m models.perf.training)."""
    import time

    from ..loader import default_catalog
    from ..presets import PRESETS

    cat = default_catalog()
    accs, fabs = list(cat.accelerators.values()), list(cat.fabrics.values())
    for name, B, stack in (("gpt3-175b", 1536, "megatron-2021"), ("llama3-70b", 2048, "megatron-core"),
                           ("llama3-405b", {"min": 1024, "max": 2048}, "megatron-core"),
                           ("llama2-7b", 1024, "megatron-core")):
        dims = PRESETS[name]
        t0 = time.perf_counter()
        grid = enumerate_grid(dims, B, accs, fabs, stack=stack)
        t1 = time.perf_counter()
        evaluate(dims, grid, accs, fabs, cat.calibration, "bf16", B, stack=stack, detail=False)
        t2 = time.perf_counter()
        print(
            f"{name} B={B} ({stack}): {len(grid):,} rows; enumerate {t1 - t0:.3f} s; "
            f"evaluate {t2 - t1:.3f} s = {len(grid) / (t2 - t1):,.0f} configs/s"
        )


if __name__ == "__main__":
    _throughput_benchmark()
