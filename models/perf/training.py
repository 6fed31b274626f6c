"""Training performance model: step time, throughput and memory of every parallel layout at once.

One row of a `ConfigGrid` is one candidate layout (accelerator, fabric, t, p, d, b, v, recompute,
distributed optimizer); `evaluate` computes every row with numpy broadcasting, so the optimizer can
score ~10^6 layouts per second. Formulas and sources: docs/performance-model.md
(Narayanan et al. SC'21; Korthikanti et al. 2022; PaLM App. B; Patarasuk & Yuan 2009), generalised
to GQA and gated MLPs through `ModelDims.params_per_layer`. Knobs in `Calibration` are fitted
against published Megatron-LM runs by `models.perf.calibration`.

Not modelled: fabric oversubscription, the optimizer step, uneven pipeline stages, and flash
attention's memory saving (attention_passes = 0 only removes its HBM traffic).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..schema import Accelerator, Calibration, Fabric, ModelDims, PinnedParallelism

RECOMPUTE = ("none", "selective", "full")  # codes 0, 1, 2
PRECISIONS = ("bf16", "fp8")
TP_MAX = 64
PP_MAX = 64
VP_CHOICES = (1, 2, 4)
MICRO_BATCH_CHOICES = (1, 2, 4, 8)
ACT_BYTES = 2  # bf16 activations; fp8 runs keep activations and communication in bf16
CHUNK_ROWS = 16384
SCALEUP_LATENCY_S = 2e-6  # NVLink/ICI hop incl. collective-library step overhead; not in the catalog


@dataclass(frozen=True)
class ConfigGrid:
    """Candidate layouts, one per row; all arrays have equal length."""

    acc: np.ndarray  # index into the accelerators list passed alongside
    fab: np.ndarray  # index into the fabrics list
    t: np.ndarray  # tensor parallel
    p: np.ndarray  # pipeline parallel
    d: np.ndarray  # data parallel
    b: np.ndarray  # micro-batch, sequences
    v: np.ndarray  # interleaved pipeline chunks per stage
    recompute: np.ndarray  # codes into RECOMPUTE
    dist_opt: np.ndarray  # bool: ZeRO-1 / distributed optimizer

    def __len__(self) -> int:
        return int(self.acc.shape[0])

    def take(self, idx) -> "ConfigGrid":
        return ConfigGrid(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def _divisors(n: int) -> np.ndarray:
    c = np.arange(1, n + 1, dtype=np.int64)
    return c[n % c == 0]


def _choices(pinned_value, default) -> np.ndarray:
    return np.asarray([pinned_value] if pinned_value is not None else default, dtype=np.int64)


def enumerate_grid(
    dims: ModelDims,
    global_batch: int,
    accelerators: list[Accelerator],
    fabrics: list[Fabric],
    precision: str = "bf16",
    pinned: PinnedParallelism | None = None,
    *,
    max_accelerators: int | None = None,
) -> ConfigGrid:
    """Every valid layout for one job on every (accelerator, fabric) pair.

    Caps (t ≤ 64 power of two, p ≤ 64, b ≤ 8, v ≤ 4) bound only what is searched; a pinned value
    bypasses them but must still satisfy the divisibility rules Megatron-LM enforces.
    `max_accelerators` drops layouts needing more accelerators (e.g. beyond the site's power).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'")
    pin = pinned or PinnedParallelism()
    l, B = dims.layers, int(global_batch)

    pow2 = 2 ** np.arange(0, int(np.log2(TP_MAX)) + 1)
    t_c = _choices(pin.tp, pow2)
    t_c = t_c[(dims.heads % t_c == 0) & (t_c <= dims.heads)]
    p_c = _choices(pin.pp, _divisors(l)[_divisors(l) <= PP_MAX])
    p_c = p_c[l % p_c == 0]
    v_c = _choices(pin.vp, VP_CHOICES)
    b_c = _choices(pin.micro_batch, MICRO_BATCH_CHOICES)
    d_c = _choices(pin.dp, _divisors(B))
    r_c = _choices(None if pin.recompute is None else RECOMPUTE.index(pin.recompute), range(len(RECOMPUTE)))
    # The distributed optimizer moves the same bytes as an all-reduce and only saves memory.
    o_c = np.asarray([True if pin.distributed_optimizer is None else pin.distributed_optimizer])

    T, P, V, Bm, D, R, O = (x.ravel() for x in np.meshgrid(t_c, p_c, v_c, b_c, d_c, r_c, o_c, indexing="ij"))
    ok = B % (Bm * D) == 0
    if max_accelerators is not None:
        ok &= T * P * D <= max_accelerators
    m = np.where(ok, B // np.maximum(Bm * D, 1), 0)
    # Interleaving needs several stages, whole chunks of layers, and m a multiple of p (Megatron).
    ok &= (V == 1) | ((P > 1) & (l % (P * V) == 0) & (m % P == 0))
    T, P, V, Bm, D, R, O = (x[ok] for x in (T, P, V, Bm, D, R, O))

    acc_ok = [i for i, a in enumerate(accelerators) if precision != "fp8" or a.peak_fp8_tflops is not None]
    A, F = (x.ravel() for x in np.meshgrid(np.asarray(acc_ok, dtype=np.int64), np.arange(len(fabrics)), indexing="ij"))
    n_rows, n_pairs = T.shape[0], A.shape[0]
    tile = lambda x: np.tile(x, n_pairs)  # noqa: E731
    return ConfigGrid(
        acc=np.repeat(A, n_rows), fab=np.repeat(F, n_rows),
        t=tile(T), p=tile(P), d=tile(D), b=tile(Bm), v=tile(V), recompute=tile(R), dist_opt=tile(O).astype(bool),
    )


def _ring_allreduce_s(k, nbytes, bw_bs, lat_s):
    """Ring all-reduce over k peers (Patarasuk & Yuan 2009); zero for k = 1."""
    return np.where(k > 1, 2.0 * (k - 1) / k * nbytes / bw_bs + 2.0 * (k - 1) * lat_s, 0.0)


def _gemm_eff(dim, calib: Calibration):
    """Small matrices under-use the tensor cores: efficiency saturates with the thinnest GEMM dimension."""
    return calib.gemm_efficiency_max * dim / (dim + calib.gemm_half_dim)


def evaluate(
    dims: ModelDims,
    grid: ConfigGrid,
    accelerators: list[Accelerator],
    fabrics: list[Fabric],
    calib: Calibration,
    precision: str,
    global_batch: int,
    tokens: float | None = None,
) -> dict[str, np.ndarray]:
    """Step time, throughput, FLOPs, memory and the step-time breakdown of every row of `grid`."""
    if len(grid) <= CHUNK_ROWS:
        return _evaluate(dims, grid, accelerators, fabrics, calib, precision, global_batch, tokens)
    # Cache-sized chunks: reusing small temporaries beats page-faulting fresh 10 MB arrays ~5x.
    args = (accelerators, fabrics, calib, precision, global_batch, tokens)
    parts = [_evaluate(dims, grid.take(slice(i, i + CHUNK_ROWS)), *args) for i in range(0, len(grid), CHUNK_ROWS)]
    return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}


def _evaluate(dims, grid, accelerators, fabrics, calib, precision, global_batch, tokens) -> dict[str, np.ndarray]:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'")
    s, h, a, l, V = float(dims.seq_len), float(dims.hidden), float(dims.heads), float(dims.layers), float(dims.vocab)
    P_layer, P = dims.params_per_layer, dims.params
    Bg = float(global_batch)

    # Per-accelerator and per-fabric figures, gathered per row.
    peak_tab = np.array(
        [(x.peak_fp8_tflops if precision == "fp8" else x.peak_bf16_tflops) or np.nan for x in accelerators]
    ) * 1e12
    peak = peak_tab[grid.acc]
    if np.isnan(peak).any():
        raise ValueError("fp8 requested for an accelerator without FP8 units")
    hbm_gb = np.array([x.hbm_gb for x in accelerators])[grid.acc]
    hbm_bs = np.array([x.hbm_bw_tbs for x in accelerators])[grid.acc] * 1e12
    su_dom = np.array([x.scaleup_domain for x in accelerators])[grid.acc]
    su_bs = np.array([x.scaleup_bw_gbs for x in accelerators])[grid.acc] * 1e9 * calib.comm_efficiency
    per_node = np.array([x.accelerators_per_node for x in accelerators])[grid.acc]
    ports_per_acc = np.array([x.fabric_ports_per_node / x.accelerators_per_node for x in accelerators])[grid.acc]
    fab_bs = np.array([f.port_gbps for f in fabrics])[grid.fab] / 8 * 1e9 * ports_per_acc * calib.comm_efficiency
    fab_lat = np.array([f.latency_us for f in fabrics])[grid.fab] * 1e-6

    t, p, d, b, v = (x.astype(np.float64) for x in (grid.t, grid.p, grid.d, grid.b, grid.v))
    rc = grid.recompute
    n_acc = grid.t * grid.p * grid.d
    m = Bg / (b * d)

    # FLOPs per micro-batch, whole model. Passes: fwd + 2x bwd, +1 fwd where recomputed
    # (full: the whole layer; selective: the attention core only).
    lin_mult = np.where(rc == 2, 4.0, 3.0)
    att_mult = np.where(rc == 0, 3.0, 4.0)
    lin_fwd = 2.0 * b * s * P_layer  # per layer
    att_fwd = 4.0 * b * s * s * h  # QK^T and AV, per layer
    logit_fwd = 2.0 * b * s * h * V
    hw_flops_mb = l * (lin_mult * lin_fwd + att_mult * att_fwd) + 3.0 * logit_fwd
    hw_flops_per_step = hw_flops_mb * m * d
    model_flops_per_step = np.full(len(grid), Bg * s * (6.0 * P + 12.0 * l * h * s))

    # Compute time per micro-batch per stage per GPU. The thinnest GEMM dimension sets efficiency:
    # the row-parallel projections' inner dimension h/t, or the token count b*s; attention's batched
    # GEMMs are as thin as a head (head_dim); the logit GEMM as min(h, V/t, b*s).
    eff_lin = _gemm_eff(np.minimum(h / t, b * s), calib)
    eff_att = _gemm_eff(float(dims.head_dim), calib)
    eff_logit = _gemm_eff(np.minimum(np.minimum(h, V / t), b * s), calib)
    lps = l / p  # layers per stage
    gemm_s = (lps * (lin_mult * lin_fwd / eff_lin + att_mult * att_fwd / eff_att) + 3.0 * logit_fwd / p / eff_logit) / (
        t * peak
    )
    # Memory-bound kernels (norms, activations, dropout, softmax): HBM passes over the layer's
    # activations and over the attention scores, repeated where the forward is recomputed.
    elem_bytes = calib.elementwise_passes * b * s * h / t * ACT_BYTES * lin_mult / 3.0
    score_bytes = calib.attention_passes * b * (a / t) * s * s * ACT_BYTES * att_mult / 3.0
    membound_s = lps * (elem_bytes + score_bytes) / hbm_bs
    compute_mb = gemm_s + membound_s

    # Tensor parallel: 2 all-reduces fwd + 2 bwd per layer (+2 for a recomputed fwd), not overlapped.
    tp_in_su = grid.t <= su_dom
    tp_bw = np.where(tp_in_su, su_bs, fab_bs)
    tp_lat = np.where(tp_in_su, SCALEUP_LATENCY_S, fab_lat)
    n_ar = np.where(rc == 2, 6.0, 4.0)
    tp_mb = lps * n_ar * _ring_allreduce_s(t, b * s * h * ACT_BYTES, tp_bw, tp_lat)

    T_mb = compute_mb + tp_mb
    bubble_mb = (p - 1.0) / v  # 1F1B / interleaved bubble in micro-batch times

    # Pipeline p2p: each of the m*v chunk passes sends its activations (scatter-gathered over the t
    # GPUs) once forward and once backward; fill and drain add p-1 sends each way. Blocking.
    job_in_su = n_acc <= su_dom
    pp_bw = np.where(job_in_su, su_bs, fab_bs)
    pp_lat = np.where(job_in_su, SCALEUP_LATENCY_S, fab_lat)
    pp_comm_s = np.where(p > 1, 2.0 * (m * v + p - 1.0) * (pp_lat + b * s * h * ACT_BYTES / t / pp_bw), 0.0)

    # Data parallel: gradient all-reduce (or reduce-scatter + all-gather, same bytes). The ring
    # runs over the fabric at the NIC bandwidth of each DP peer sharing a node (NCCL multi-ring),
    # capped by the scale-up links; inside one scale-up domain it uses those links only.
    dp_peers_per_node = np.clip(per_node // (grid.t * grid.p), 1, grid.d)
    dp_bw = np.where(job_in_su, su_bs, np.minimum(fab_bs * dp_peers_per_node, su_bs))
    dp_lat = np.where(job_in_su, SCALEUP_LATENCY_S, fab_lat)
    dp_s = _ring_allreduce_s(d, 2.0 * P / (t * p), dp_bw, dp_lat)
    dp_exposed_s = (1.0 - calib.dp_overlap) * dp_s

    step_s = (m + bubble_mb) * T_mb + pp_comm_s + dp_exposed_s
    tokens_per_s = Bg * s / step_s
    n_f = n_acc.astype(np.float64)

    # Memory of the first pipeline stage (Korthikanti et al. 2022, with sequence parallelism).
    emb = V * h * np.where((p == 1) & (not dims.tied_embeddings), 2.0, 1.0)
    params_gpu = (l * P_layer / p + emb) / t
    state_bytes = np.where(grid.dist_opt, 4.0 + 12.0 / d, 16.0) * params_gpu
    layer_full = s * b * h * (34.0 + 5.0 * a * s / h) / t
    act_layer = np.select([rc == 0, rc == 1], [layer_full, 34.0 * s * b * h / t], 2.0 * s * b * h / t)
    # 1F1B: the first stage holds p micro-batches in flight (m if fewer), i.e. ~all l layers of one.
    in_flight = np.minimum(m, p) * np.where(v > 1, 1.0 + (p - 1.0) / (p * v), 1.0)
    act_bytes = lps * in_flight * act_layer + np.where(rc == 2, layer_full, 0.0) + s * b * V * 4.0 / t
    memory_gb = (state_bytes + act_bytes) / 1e9

    return {
        "n_acc": n_acc,
        "nodes": -(-n_acc // per_node),
        "step_time_s": step_s,
        "tokens_per_s": tokens_per_s,
        "time_to_train_days": np.full_like(step_s, np.nan) if tokens is None else float(tokens) / tokens_per_s / 86400,
        "hw_flops_per_step": hw_flops_per_step,
        "model_flops_per_step": model_flops_per_step,
        "tflops_per_gpu_hw": hw_flops_per_step / (n_f * step_s) / 1e12,
        "tflops_per_gpu_model": model_flops_per_step / (n_f * step_s) / 1e12,
        "mfu": model_flops_per_step / (n_f * step_s * peak),
        "memory_per_gpu_gb": memory_gb,
        "fits_memory": memory_gb <= hbm_gb - calib.memory_reserved_gb,
        "compute_s": m * compute_mb,
        "bubble_s": bubble_mb * T_mb,
        "tp_comm_s": m * tp_mb,
        "pp_comm_s": pp_comm_s,
        "dp_comm_exposed_s": dp_exposed_s,
    }


def evaluate_layout(dims: ModelDims, layout: dict, accelerator: Accelerator, fabric: Fabric, calib: Calibration,
                    precision: str, global_batch: int, tokens: float | None = None) -> dict[str, float]:
    """`evaluate` on one layout given by name (tp, pp, dp, micro_batch, vp, recompute, distributed_optimizer):
    the one place a single layout is evaluated (verifier, calibration, estimate)."""
    one = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
    grid = ConfigGrid(
        acc=one(0), fab=one(0), t=one(layout["tp"]), p=one(layout["pp"]), d=one(layout["dp"]),
        b=one(layout.get("micro_batch", 1)), v=one(layout.get("vp", 1)),
        recompute=one(RECOMPUTE.index(layout.get("recompute", "none"))),
        dist_opt=np.array([bool(layout.get("distributed_optimizer", True))], dtype=bool),
    )
    out = evaluate(dims, grid, [accelerator], [fabric], calib, precision, global_batch, tokens)
    return {k: float(v[0]) for k, v in out.items()}


def _throughput_benchmark() -> None:
    """Configs/s of `evaluate` on the full built-in catalog (python -m models.perf.training)."""
    import time

    from ..loader import default_catalog
    from ..presets import PRESETS

    cat = default_catalog()
    accs, fabs = list(cat.accelerators.values()), list(cat.fabrics.values())
    for name, B in (("gpt3-175b", 1536), ("llama3-70b", 2048), ("llama2-7b", 1024)):
        dims = PRESETS[name]
        t0 = time.perf_counter()
        grid = enumerate_grid(dims, B, accs, fabs)
        t1 = time.perf_counter()
        evaluate(dims, grid, accs, fabs, cat.calibration, "bf16", B)
        t2 = time.perf_counter()
        print(
            f"{name} B={B}: {len(grid):,} rows; enumerate {t1 - t0:.3f} s; "
            f"evaluate {t2 - t1:.3f} s = {len(grid) / (t2 - t1):,.0f} configs/s"
        )


if __name__ == "__main__":
    _throughput_benchmark()
