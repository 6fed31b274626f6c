"""Inference (serving) performance model: latency, throughput and memory of every replica layout at once.

One row of a `ServingGrid` is one replica layout (accelerator, tensor-parallel degree t, decode
batch beta); `evaluate_serving` computes every row with numpy broadcasting, like
`models.perf.training.evaluate`, and reuses its GEMM-efficiency and ring all-reduce helpers so serving
and training share one calibration.

Formulas (docs/serving.md; memory per Pope et al. 2022, "Efficiently Scaling Transformer
Inference", and Kwon et al. 2023, "vLLM / PagedAttention"; all-reduce per Patarasuk & Yuan 2009).
P parameters, l layers, h hidden, hd head dim, kv KV heads, n input tokens, o output tokens,
beta concurrent sequences, t accelerators per replica, bpp bytes per parameter:

  weights per accelerator      W   = P * bpp / t
  KV per token per accelerator kv  = 2 * l * ceil(kv / t) * hd * KV_BYTES  (KV heads are replicated
                                     once t > kv, as vLLM and TensorRT-LLM do)
  context per sequence         memory at its longest: n + o;  HBM traffic, on average: n + o/2
  memory per accelerator       W + beta * kv * (n + o) + workspace(n + beta tokens)  <= hbm - reserved
  efficiency                   eff = ceiling x _size_eff(thinnest GEMM dim): decode h/t (a skinny batch is
                               a weight-streaming GEMV: the HBM term below bounds it, not a second
                               compute ceiling), prefill min(h/t, n)
  prefill (TTFT)               max((2*P*n + 2*l*n^2*h) / (t*peak*eff), W / hbm_bw_eff)
                               + 2*l all-reduces of n*h*2 bytes            (causal attention: half
                                                                            of 4*l*n^2*h)
  decode step                  max((2*P*beta + 4*l*beta*ctx_avg*h) / (t*peak*eff),
                                   (W + beta*kv*ctx_avg) / hbm_bw_eff)
                               + 2*l all-reduces of beta*h*2 bytes (latency-dominated: the ring's
                                                                    2*(t-1) hops are included)
  hbm_bw_eff = hbm_bw * calib.hbm_efficiency; all-reduces run on the scale-up links at
  scaleup_bw * calib.comm_efficiency (a replica stays within one scale-up domain).

Mixtures of experts (docs/serving.md, "Mixtures of experts"). Memory holds every expert; FLOPs
count the active parameters (top_k routed + shared experts), so prefill is compute-bound on them.
A decode step of beta tokens reads, per MoE layer, the distinct routed experts the batch touches:
                  E_touched = E * (1 - (1 - k/E)^beta)        (experts_touched: k at beta = 1, -> E)
A tensor-parallel replica (ServingGrid.ep 1) slices the experts like the dense layers. An
expert-parallel one (ep = t > 1: inside the domain, or wide EP in whole nodes beyond it, whose
all-to-all crosses the scale-out fabric) spreads the E experts over its t accelerators and runs
attention tensor-parallel over atp (1 for MLA: data-parallel attention, each GPU holding its own
sequences' latent KV; else the domain) and data-parallel over t/atp groups: dense and attention
weights are held t/atp times, routed ones once. Per MoE layer and step it adds a dispatch and a combine all-to-all of each
GPU's tokens/t, k copies each (training.a2a_time_s: scale-up links inside the domain, one fabric
crossing per remote domain, one hop of latency each). MLA caches kv_lora_rank + qk_rope_head_dim
elements per token and layer (ModelDims.kv_cache_width) for memory, decode traffic and KV transfer.

Serving assumptions (continuous batching, non-chunked prefill, no queueing):
  A replica's timeline holds each request's prefill once and its o decode steps, shared by beta
  sequences, so   requests_per_s = 1 / (prefill_s + o * decode_step_s / beta),
                  output_tokens_per_s = requests_per_s * o.
  A user sees each token after one decode step plus the other sequences' prefills that interrupt
  decoding, amortised over its o tokens (Little's law with beta sequences in flight):
                  TPOT = decode_step_s + beta * prefill_s / o.
  TTFT = prefill time of one request: the replica is assumed to pick a new request up at once
  (no queueing delay, so this is the lower bound an SLO is checked against).

Not modelled: chunked prefill and prefill/decode disaggregation, speculative decoding, prefix
caching, pipeline parallelism for serving, KV paging fragmentation (inside memory_reserved_gb), and
the input embedding being a lookup (its FLOPs and bytes, ~1.5 % of Llama 3 70B, are counted).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..schema import Accelerator, Calibration, ModelDims
from .training import (ACT_BYTES, CHUNK_ROWS, SCALEUP_LATENCY_S, TP_MAX, _ring_allreduce_s, _size_eff, a2a_time_s,
                       gemm_ceiling_tflops)

SERVING_PRECISIONS = ("bf16", "fp8", "int8", "fp4")
# fp4: NVFP4 / MXFP4 weights and activations at the FP4 peak, KV cache in fp8 (as FP4 deployments run).
BYTES_PER_PARAM = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5}
# int8 is weight-only quantisation (W8A16, e.g. AWQ/GPTQ-style kernels): weights are dequantised to
# bf16 on the fly, so the math runs at the bf16 peak and the KV cache stays in bf16.
KV_BYTES = {"bf16": 2.0, "fp8": 1.0, "int8": 2.0, "fp4": 1.0}
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LOGIT_BYTES = 4.0  # fp32 logits of the last position of each sequence, sharded over t (vocab-parallel head)
PCIE_BW_DEFAULT_GBS = 32.0  # PCIe Gen4 x16 per direction, when an accelerator gives no pcie_bw_gbs
# Widest expert-parallel replica enumerated (DeepSeek's V3/R1 inference-system overview decodes at EP144, 18 nodes).
MAX_WIDE_EP = 256
PCIE_LATENCY_S = 10e-6  # one host-bridged PCIe hop of an all-reduce (NCCL over PCIe, no NVLink)
# A wide-EP replica's all-to-all leaves its scale-up domain over the scale-out fabric; when the
# caller names none (a bare `evaluate_serving`), a 400 Gb/s port per accelerator at 5 us is assumed.
A2A_PORT_GBPS_DEFAULT = 400.0
A2A_LATENCY_US_DEFAULT = 5.0


@dataclass(frozen=True)
class ServingGrid:
    """Candidate replica layouts, one per row; all arrays have equal length."""

    acc: np.ndarray  # index into the accelerators list passed alongside
    t: np.ndarray  # tensor-parallel degree = accelerators per replica
    batch: np.ndarray  # decode batch beta: concurrent sequences per replica
    # MoE: ep > 1 (= t) spreads the experts over the t accelerators with attention data-parallel,
    # 1 slices all weights tensor-parallel; None = t for replicas wider than the scale-up domain, else 1.
    ep: "np.ndarray | None" = None
    # Attention tensor-parallel degree inside a wide-EP replica; None = `attention_tp` (1 for MLA).
    atp: "np.ndarray | None" = None

    def __len__(self) -> int:
        return int(self.acc.shape[0])

    def take(self, idx) -> "ServingGrid":
        return ServingGrid(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[idx])
                              for f in fields(self)})


def experts_touched(experts: int, top_k: int, batch):
    """Distinct routed experts a decode step of `batch` tokens reads per MoE layer, with each token
    picking top_k of E uniformly: E (1 - (1 - k/E)^B), since an expert is missed by one token with
    probability 1 - k/E. k at batch 1 (the active experts); tends to E for large batches."""
    E, k = float(experts), float(top_k)
    return E * (1.0 - (1.0 - k / E) ** np.asarray(batch, dtype=np.float64))


def attention_tp(dims: ModelDims, a: Accelerator) -> int:
    """Attention tensor-parallel degree inside a wide-EP replica: 1 for MLA (data-parallel attention,
    each GPU holds the latent KV of its own sequences), else the scale-up domain where the heads allow."""
    dom = tp_domain(a)
    return 1 if dims.mla or dims.heads % dom else dom


def _check_precision(precision: str) -> None:
    if precision not in SERVING_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(SERVING_PRECISIONS)}; got '{precision}'")


def _peak_flops_tab(accelerators: list[Accelerator], precision: str) -> np.ndarray:
    """FP8 / FP4 peak for fp8 / fp4 (NaN where there are no such units); bf16 peak otherwise (int8 is weight-only)."""
    return np.array(
        [(x.peak_fp8_tflops if precision == "fp8" else x.peak_fp4_tflops if precision == "fp4" else x.peak_bf16_tflops)
         or np.nan for x in accelerators]
    ) * 1e12


def gemm_ceiling_flops(accelerators: list[Accelerator], precision: str, calib: Calibration) -> np.ndarray:
    """FLOP/s a large GEMM reaches: training's ceiling (the measured one for this precision, else
    datasheet x the accelerator's fallback ratio), one rule for both workloads. int8 is weight-only,
    so its math is bf16; NaN where the accelerator has no units for the precision."""
    key = {"fp8": "fp8", "fp4": "nvfp4"}.get(precision, "bf16")
    peak = _peak_flops_tab(accelerators, precision)
    return np.array([gemm_ceiling_tflops(x, key, calib) * 1e12 if np.isfinite(pk) else np.nan
                     for x, pk in zip(accelerators, peak)])


def hbm_achieved_bs(accelerators: list[Accelerator], calib: Calibration) -> np.ndarray:
    """Bytes/s decode streams at: the measured HBM bandwidth where known, else datasheet x hbm_efficiency."""
    return np.array([x.hbm_bw_measured_tbs * 1e12 if x.hbm_bw_measured_tbs else x.hbm_bw_tbs * 1e12 * calib.hbm_efficiency
                     for x in accelerators])


def tp_domain(a: Accelerator) -> int:
    """Accelerators one replica may span: the scale-up domain, or the whole node over PCIe when
    there is no scale-up fabric."""
    return a.scaleup_domain if a.scaleup_domain > 1 else a.accelerators_per_node


def _tp_links(accelerators: list[Accelerator], calib: Calibration):
    """Per accelerator: (bytes/s, per-hop latency) of the replica's all-reduces."""
    pcie = [x.scaleup_domain == 1 for x in accelerators]
    bw = np.array([(x.pcie_bw_gbs or PCIE_BW_DEFAULT_GBS) if p else x.scaleup_bw_gbs
                   for x, p in zip(accelerators, pcie)]) * 1e9 * calib.comm_efficiency
    lat = np.where(pcie, PCIE_LATENCY_S, SCALEUP_LATENCY_S)
    return bw, lat


def enumerate_serving_grid(
    dims: ModelDims,
    accelerators: list[Accelerator],
    precision: str = "bf16",
    tp_options=None,
    batches=BATCHES,
) -> ServingGrid:
    """Every (accelerator, t, batch) replica layout.

    t: powers of two up to TP_MAX by default (a given `tp_options` bypasses that cap), dividing the
    attention heads and within `tp_domain` (the scale-up domain, or the node over PCIe), since a
    replica's per-layer all-reduces would be latency-bound across the scale-out fabric. fp8 needs FP8 units.
    A mixture of experts adds expert-parallel rows (ep = t, `ServingGrid.ep`): by default every t of
    2 .. the domain and, as wide EP, whole nodes beyond it up to min(E, MAX_WIDE_EP), t dividing the
    E experts; with `tp_options`, the given t beyond the domain. An EP row's batch counts every
    attention group's sequences (the `batches` x t / attention TP).
    Rows that do not fit in memory are kept; `evaluate_serving` flags them.
    """
    _check_precision(precision)
    default = tp_options is None
    if default:
        tp_options = 2 ** np.arange(0, int(np.log2(TP_MAX)) + 1)
    t_c = np.asarray(tp_options, dtype=np.int64)
    t_all = t_c[t_c >= 1]
    t_c = t_all[dims.heads % np.maximum(t_all, 1) == 0]
    b_c = np.asarray(batches, dtype=np.int64)
    A, T, Bt, EP = [], [], [], []
    for i, a in enumerate(accelerators):
        if (precision == "fp8" and a.peak_fp8_tflops is None) or (precision == "fp4" and a.peak_fp4_tflops is None):
            continue
        dom, per_node = tp_domain(a), a.accelerators_per_node
        t_ok, ep_ok = t_c[t_c <= dom], np.ones(int((t_c <= dom).sum()), dtype=np.int64)
        if dims.is_moe:
            if default:
                inside = [w for w in 2 ** np.arange(1, int(np.log2(TP_MAX)) + 1) if w <= dom and dims.experts % w == 0]
                wide = [w for w in 2 ** np.arange(1, 12) if dom < w <= min(dims.experts, MAX_WIDE_EP)
                        and dims.experts % w == 0 and w % per_node == 0]
                ep_t = np.asarray(inside + wide, dtype=np.int64)
            else:
                ep_t = t_all[(t_all > dom) & (dims.experts % np.maximum(t_all, 1) == 0)]
            t_ok, ep_ok = np.concatenate([t_ok, ep_t]), np.concatenate([ep_ok, ep_t])
        k = np.arange(len(t_ok))
        kk, bb = (x.ravel() for x in np.meshgrid(k, b_c, indexing="ij"))
        tt, ee = t_ok[kk], ep_ok[kk]
        if dims.is_moe:  # an EP replica batches per attention group: scale the batch by its groups
            atp = np.minimum(min(attention_tp(dims, a), dom), tt)
            bb = np.where(ee > 1, bb * np.maximum(tt // atp, 1), bb)
        A.append(np.full(tt.shape, i, dtype=np.int64))
        T.append(tt)
        Bt.append(bb)
        EP.append(ee)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)  # noqa: E731
    return ServingGrid(acc=cat(A), t=cat(T), batch=cat(Bt), ep=cat(EP) if dims.is_moe else None)


def _memory_terms(dims: ModelDims, precision: str, input_tokens: float, output_tokens: float, t, atp=None):
    """Bytes per accelerator: weights, KV per sequence at full context, and the workspace as
    fixed + per-sequence parts (so the largest batch has a closed form). `atp` < t: a wide-EP replica
    whose attention is tensor-parallel over atp and data-parallel over t/atp (sequences split)."""
    h, l = float(dims.hidden), float(dims.layers)
    t = np.asarray(t, dtype=np.float64)
    atp = t if atp is None else np.asarray(atp, dtype=np.float64)
    weights_b = dims.params * BYTES_PER_PARAM[precision] / t  # every expert held once per replica
    if dims.is_moe:  # attention and dense parts are replicated over the t/atp attention groups
        routed = dims.moe_layers * dims.experts * dims.expert_params
        weights_b = ((dims.params - routed) / atp + routed / t) * BYTES_PER_PARAM[precision]
    if dims.mla:  # one latent + shared rope key per token, replicated on every attention-TP rank
        kv_per_token_b = l * dims.kv_cache_width * KV_BYTES[precision] * atp / t
    else:
        kv_heads_per_acc = np.ceil(dims.n_kv_heads / atp)
        kv_per_token_b = 2.0 * l * kv_heads_per_acc * dims.head_dim * KV_BYTES[precision] * atp / t
    kv_per_seq_b = kv_per_token_b * (float(input_tokens) + float(output_tokens))
    # Workspace: one layer's live activations per token in flight (residual + normed input, and the
    # MLP's up/gate/product sharded over t; flash attention, so no n^2 scores), for the prefill's n
    # tokens plus a decode step's beta tokens, and each sequence's last-position logits.
    act_per_token_b = ACT_BYTES * (2.0 * h + (3.0 if dims.gated_mlp else 2.0) * dims.ffn / t)
    logits_per_seq_b = LOGIT_BYTES * dims.vocab / t
    ws_fixed_b = float(input_tokens) * act_per_token_b + logits_per_seq_b
    ws_per_seq_b = act_per_token_b + logits_per_seq_b
    return weights_b, kv_per_token_b, kv_per_seq_b, ws_fixed_b, ws_per_seq_b


def _max_batch(weights_b, kv_per_seq_b, ws_fixed_b, ws_per_seq_b, limit_b) -> np.ndarray:
    room = limit_b - weights_b - ws_fixed_b
    # The relative nudge keeps an exact fit (room an exact multiple) from flooring one below.
    beta = np.floor(room / (kv_per_seq_b + ws_per_seq_b) * (1.0 + 1e-12))
    return np.maximum(beta, 0.0).astype(np.int64)


def max_batch_fitting(
    dims: ModelDims,
    accelerators: list[Accelerator],
    calib: Calibration,
    precision: str,
    input_tokens: float,
    output_tokens: float,
    acc_idx,
    t,
) -> np.ndarray:
    """Largest integer decode batch whose weights, KV at full context and workspace fit in
    hbm_gb - memory_reserved_gb; 0 where the weights alone do not fit. Vectorized over (acc_idx, t)."""
    _check_precision(precision)
    acc_idx = np.asarray(acc_idx, dtype=np.int64)
    t = np.asarray(t, dtype=np.float64)
    limit_b = (np.array([x.hbm_gb for x in accelerators])[acc_idx] - calib.memory_reserved_gb) * 1e9
    w, _, kv_seq, ws_fixed, ws_seq = _memory_terms(dims, precision, input_tokens, output_tokens, t)
    return _max_batch(w, kv_seq, ws_fixed, ws_seq, limit_b)


def evaluate_serving(
    dims: ModelDims,
    grid: ServingGrid,
    accelerators: list[Accelerator],
    calib: Calibration,
    precision: str,
    input_tokens: float,
    output_tokens: float,
    fabrics=None,
) -> dict[str, np.ndarray]:
    """TTFT, TPOT, throughput, memory and the time breakdown of every row of `grid` (per replica
    unless the name says per accelerator). `fabrics` (MoE only): per accelerator, the scale-out
    `Fabric` a wide-EP replica's all-to-all crosses between domains (None: a 400 Gb/s default)."""
    _check_precision(precision)
    if not input_tokens >= 1 or not output_tokens >= 1:
        raise ValueError(f"input_tokens and output_tokens must be at least 1; got {input_tokens}, {output_tokens}")
    args = (accelerators, calib, precision, float(input_tokens), float(output_tokens), fabrics)
    if len(grid) <= CHUNK_ROWS:
        return _evaluate_serving(dims, grid, *args)
    parts = [
        _evaluate_serving(dims, grid.take(slice(i, i + CHUNK_ROWS)), *args) for i in range(0, len(grid), CHUNK_ROWS)
    ]
    return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}


def wide_ep(dims: ModelDims, grid: ServingGrid, accelerators: list[Accelerator]):
    """(experts spread over all t with data-parallel attention?, attention TP degree) per row."""
    t = grid.t.astype(np.float64)
    if not dims.is_moe:
        return np.zeros(len(grid), dtype=bool), t
    dom = np.array([tp_domain(a) for a in accelerators])[grid.acc]
    wide = (grid.t > dom) if grid.ep is None else (grid.ep > 1)
    atp = np.array([attention_tp(dims, a) for a in accelerators], dtype=np.float64)[grid.acc]
    if grid.atp is not None:
        atp = grid.atp.astype(np.float64)
    return wide, np.where(wide, np.minimum(atp, t), t)


def spans_domains(grid: ServingGrid, accelerators: list[Accelerator]) -> np.ndarray:
    """Rows whose replica is wider than one scale-up domain: its all-to-all crosses the scale-out
    fabric, so its nodes need fabric ports (the MIP attaches them)."""
    dom = np.array([tp_domain(a) for a in accelerators], dtype=np.int64)
    return grid.t > dom[grid.acc] if len(grid) else np.zeros(0, dtype=bool)


def _fabric_links(accelerators: list[Accelerator], fabrics, calib: Calibration):
    """Per accelerator: (scale-out bytes/s per accelerator, latency s) an all-to-all leaving the
    domain gets: its share of the node's fabric ports (`fabrics` aligned with `accelerators`; a
    None entry or no list: A2A_PORT_GBPS_DEFAULT per accelerator)."""
    fabrics = fabrics if fabrics is not None else [None] * len(accelerators)
    bw, lat = [], []
    for a, f in zip(accelerators, fabrics):
        if f is None:
            bw.append(A2A_PORT_GBPS_DEFAULT / 8.0 * 1e9)
            lat.append(A2A_LATENCY_US_DEFAULT * 1e-6)
        else:
            bw.append(f.port_gbps / 8.0 * 1e9 * a.fabric_ports_per_node / a.accelerators_per_node)
            lat.append(f.latency_us * 1e-6)
    return np.array(bw) * calib.comm_efficiency, np.array(lat)


def _evaluate_serving(dims, grid, accelerators, calib, precision, n_in, n_out, fabrics=None) -> dict[str, np.ndarray]:
    h, l = float(dims.hidden), float(dims.layers)
    P = dims.active_params  # FLOPs per token: MoE counts top_k routed + shared experts

    ceiling = gemm_ceiling_flops(accelerators, precision, calib)[grid.acc]
    if np.isnan(ceiling).any():
        raise ValueError(f"{precision} requested for an accelerator without {precision.upper()} units")
    hbm_gb = np.array([x.hbm_gb for x in accelerators])[grid.acc]
    hbm_bs = hbm_achieved_bs(accelerators, calib)[grid.acc]
    link_bs, link_lat = (x[grid.acc] for x in _tp_links(accelerators, calib))
    wide, atp = wide_ep(dims, grid, accelerators)
    over = calib.serving_step_overhead_s

    t = grid.t.astype(np.float64)
    beta = grid.batch.astype(np.float64)
    ctx_avg = n_in + n_out / 2.0

    # Memory.
    limit_b = (hbm_gb - calib.memory_reserved_gb) * 1e9
    weights_b, kv_tok_b, kv_seq_b, ws_fixed_b, ws_seq_b = _memory_terms(dims, precision, n_in, n_out, t, atp)
    memory_b = weights_b + beta * (kv_seq_b + ws_seq_b) + ws_fixed_b
    max_beta = _max_batch(weights_b, kv_seq_b, ws_fixed_b, ws_seq_b, limit_b)

    def allreduces(tokens):  # attention-TP all-reduces (a wide replica's groups each hold tokens*atp/t)
        return 2.0 * l * _ring_allreduce_s(atp, tokens * atp / t * h * ACT_BYTES, link_bs, link_lat)

    # Wide EP: per MoE layer a dispatch and a combine all-to-all of each GPU's tokens/t, k copies
    # each spread over the t experts' GPUs (training.a2a_time_s: scale-up links inside the domain,
    # the fabric once per remote domain beyond it, each with one hop of latency; DeepEP's
    # low-latency kernels). Dispatch is sent at the math precision (fp8/fp4: 1 B), combine in bf16.
    if dims.is_moe:
        dom = np.array([tp_domain(a) for a in accelerators], dtype=np.float64)[grid.acc]
        fab_bs, fab_lat = (x[grid.acc] for x in _fabric_links(accelerators, fabrics, calib))
        disp_b = 1.0 if precision in ("fp8", "fp4") else ACT_BYTES

        def a2a(tokens):
            one = lambda nb: a2a_time_s(tokens / t * h * nb, float(dims.top_k), t, t, dom, link_bs, fab_bs, fab_lat)  # noqa: E731
            return np.where(wide, dims.moe_layers * (one(disp_b) + one(ACT_BYTES)), 0.0)
    else:
        def a2a(tokens):
            return 0.0

    # Decode reads the experts the batch touches: E (1 - (1 - k/E)^beta) per MoE layer (experts_touched).
    if dims.is_moe:
        routed_b = dims.moe_layers * dims.experts * dims.expert_params * BYTES_PER_PARAM[precision] / t
        touched = experts_touched(dims.experts, dims.top_k, beta) / dims.experts
        decode_weights_b = weights_b - routed_b * (1.0 - touched)
    else:
        decode_weights_b = weights_b

    # Prefill of one request run alone: compute-bound for any real prompt, but it still reads the weights once.
    att_w = dims.heads * (dims.qk_head_dim + dims.value_head_dim) / 2.0  # = h for standard attention
    pre_flops = 2.0 * P * n_in + 2.0 * l * n_in * n_in * att_w
    # The GEMMs' thin dimension: h over the tensor-parallel degree (atp = t unless the experts are
    # spread with attention data-parallel, where each GPU multiplies full-width rows).
    prefill_compute_s = pre_flops / (t * ceiling * _size_eff(np.minimum(h / atp, n_in), calib))
    prefill_memory_s = weights_b / hbm_bs
    prefill_tp_s = allreduces(n_in)
    prefill_a2a_s = a2a(n_in)
    prefill_s = np.maximum(prefill_compute_s, prefill_memory_s) + prefill_tp_s + prefill_a2a_s + over

    # Decode step at batch beta: weights + the batch's KV streamed from HBM, or the GEMMs, whichever
    # is slower; the tiny all-reduces are latency-bound and not overlapped; plus the fixed step cost.
    dec_ceiling = t * ceiling * _size_eff(h / atp, calib)
    dec_flops = 2.0 * P * beta + 4.0 * l * beta * ctx_avg * att_w
    decode_compute_s = dec_flops / dec_ceiling
    decode_memory_s = (decode_weights_b + beta * kv_tok_b * ctx_avg) / hbm_bs
    decode_tp_s = allreduces(beta)
    decode_a2a_s = a2a(beta)
    step_s = np.maximum(decode_compute_s, decode_memory_s) + decode_tp_s + decode_a2a_s + over
    # The chord of step(b) between b = 0 and beta (an upper bound in between: max() is convex). MoE:
    # at b = 0 no expert is read; the touched experts grow concavely, so the chord stays a bound.
    step_fixed_s = (weights_b - (routed_b if dims.is_moe else 0.0)) / hbm_bs + allreduces(0.0) + a2a(0.0) + over
    step_per_seq_s = (step_s - step_fixed_s) / beta

    # Prefill: alone (chunk 0), or in k chunks that ride in decode steps (Sarathi-Serve): a chunk
    # adds its FLOPs to the step's roofline and its tokens to the all-reduces, while the weights are
    # streamed once for both, so the replica time a prefill costs is the sum of the marginal costs.
    C = calib.serving_chunk_tokens
    if C > 0:
        k = float(np.ceil(n_in / C))
        chunk_flops = pre_flops / k
        mixed_s = np.maximum((dec_flops + chunk_flops) / dec_ceiling, decode_memory_s) + allreduces(beta + n_in / k) \
            + a2a(beta + n_in / k) + over
        prefill_work_s = k * (mixed_s - step_s)
        # An idle replica runs the k chunk steps alone.
        ttft_idle_s = k * (np.maximum(chunk_flops / dec_ceiling, prefill_memory_s) + allreduces(n_in / k)
                           + a2a(n_in / k) + over)
        prefill_steps = np.full(len(grid), k)
    else:
        prefill_work_s, ttft_idle_s, prefill_steps = prefill_s, prefill_s, np.zeros(len(grid))

    # Continuous batching at full batch (queueing.py for partial load).
    requests_per_s = 1.0 / (prefill_work_s + n_out * step_s / beta)
    out_tps = requests_per_s * n_out

    return {
        "weights_gb_per_acc": weights_b / 1e9,
        "kv_gb_per_seq_per_acc": kv_seq_b / 1e9,
        "memory_per_acc_gb": memory_b / 1e9,
        "fits_memory": grid.batch <= max_beta,  # max_beta is 0 when the weights alone do not fit
        "max_batch_fitting": max_beta,
        "ttft_s": ttft_idle_s,
        "decode_step_s": step_s,
        "tpot_s": step_s + beta * prefill_work_s / n_out,
        "requests_per_s": requests_per_s,
        "output_tokens_per_s": out_tps,
        "output_tokens_per_s_per_acc": out_tps / t,
        "prefill_work_s": prefill_work_s,
        "prefill_steps": prefill_steps,
        "step_fixed_s": step_fixed_s,
        "step_per_seq_s": step_per_seq_s,
        "prefill_compute_s": prefill_compute_s,
        "prefill_memory_s": prefill_memory_s,
        "prefill_tp_comm_s": prefill_tp_s,
        "decode_compute_s": decode_compute_s,
        "decode_memory_s": decode_memory_s,
        "decode_tp_comm_s": decode_tp_s,
        "prefill_a2a_s": prefill_a2a_s + np.zeros(len(grid)),
        "decode_a2a_s": decode_a2a_s + np.zeros(len(grid)),
        "decode_weights_gb_per_acc": decode_weights_b / 1e9 + np.zeros(len(grid)),
        "step_overhead_s": np.full(len(grid), over),
    }


def replica_times(perf: dict[str, np.ndarray], grid: ServingGrid, output_tokens: float, prefill_scv: float = 0.0):
    """The queueing model's view (`queueing.ReplicaTimes`) of rows of `evaluate_serving`'s output."""
    from .queueing import ReplicaTimes

    return ReplicaTimes(
        prefill_work_s=perf["prefill_work_s"], step_fixed_s=perf["step_fixed_s"], step_per_seq_s=perf["step_per_seq_s"],
        batch=grid.batch.astype(np.float64), output_tokens=float(output_tokens), prefill_steps=perf["prefill_steps"],
        prefill_scv=prefill_scv,
    )


def slo_capacity_rps(
    dims: ModelDims,
    grid: ServingGrid,
    accelerators: list[Accelerator],
    calib: Calibration,
    precision: str,
    input_tokens: float,
    output_tokens: float,
    *,
    ttft_p99_s=None,
    tpot_p99_s=None,
    ttft_p50_s=None,
    tpot_p50_s=None,
    rtt_s: float = 0.0,
    perf: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Requests/s each row of `grid` sustains under Poisson arrivals while meeting the percentile
    SLOs given (TTFT ones include the round trip `rtt_s`); 0 where it cannot meet them or does not
    fit in memory. The number the MIP uses as a replica's capacity."""
    from .queueing import max_rate_for_slo

    if perf is None:
        perf = evaluate_serving(dims, grid, accelerators, calib, precision, input_tokens, output_tokens)
    rate = max_rate_for_slo(replica_times(perf, grid, output_tokens), ttft_p99_s=ttft_p99_s, tpot_p99_s=tpot_p99_s,
                            ttft_p50_s=ttft_p50_s, tpot_p50_s=tpot_p50_s, rtt_s=rtt_s)
    return np.where(perf["fits_memory"], rate, 0.0)


def _throughput_benchmark() -> None:
    """Rows/s of `evaluate_serving` on the built-in catalog, tiled (python -m models.perf.inference)."""
    import time

    from ..loader import default_catalog
    from ..presets import PRESETS

    cat = default_catalog()
    accs = list(cat.accelerators.values())
    for name in ("llama3-70b", "llama3-8b", "llama3-405b"):
        dims = PRESETS[name]
        base = enumerate_serving_grid(dims, accs, "bf16")
        grid = base.take(np.tile(np.arange(len(base)), 2_000_000 // len(base) + 1))
        evaluate_serving(dims, base, accs, cat.calibration, "bf16", 1000, 250)  # warm-up
        t0 = time.perf_counter()
        evaluate_serving(dims, grid, accs, cat.calibration, "bf16", 1000, 250)
        dt = time.perf_counter() - t0
        print(f"{name}: {len(base)} distinct rows, tiled to {len(grid):,}; {dt:.3f} s = {len(grid) / dt:,.0f} rows/s")


if __name__ == "__main__":
    _throughput_benchmark()
