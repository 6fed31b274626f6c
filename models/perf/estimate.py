"""One training configuration, estimated (`dcopt estimate`): the same model as the optimizer uses.

Whatever the caller leaves out is chosen: the fabric from `DEFAULT_FABRIC_BY_PREFIX`, and tp, pp,
micro-batch and recompute as the fastest layout that fits in memory. The result echoes every
choice, so the output alone says what was estimated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .inference import (
    BATCHES, BYTES_PER_PARAM, SERVING_PRECISIONS, ServingGrid, enumerate_serving_grid, evaluate_serving, replica_times,
    tp_domain,
)
from ..schema import Catalog, ModelDims, PinnedParallelism
from .goodput import estimate_goodput
from .training import PRECISIONS, RECOMPUTE, enumerate_grid, evaluate

# The fabric each accelerator is usually deployed with (by name prefix); the one place this lives.
DEFAULT_FABRIC_BY_PREFIX = (
    ("h100", "ib-ndr-400g"), ("h200", "ib-ndr-400g"), ("b200", "ib-ndr-400g"),
    ("a100", "ib-hdr-200g"), ("v100", "ib-hdr-200g"),
    ("mi300", "roce-400g"), ("gaudi", "roce-400g"),
    ("l40s", "eth-100g"), ("tpu", "eth-100g"),
)
BREAKDOWN = ("compute_s", "bubble_s", "tp_comm_s", "pp_comm_s", "dp_comm_exposed_s")


def default_fabric(accelerator: str, catalog: Catalog) -> str:
    """The usual fabric for `accelerator`; if unknown or not in the catalog, the fastest port there."""
    for prefix, fab in DEFAULT_FABRIC_BY_PREFIX:
        if accelerator.lower().startswith(prefix) and fab in catalog.fabrics:
            return fab
    return max(sorted(catalog.fabrics), key=lambda f: catalog.fabrics[f].port_gbps)


def _check_layout(dims: ModelDims, gpus: int, tp, pp, global_batch: int, micro_batch, vp: int) -> None:
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1; got {gpus}")
    if global_batch < 1:
        raise ValueError(f"global_batch must be at least 1; got {global_batch}")
    if tp is not None:
        if tp < 1 or tp > dims.heads:
            raise ValueError(f"tp={tp} must be between 1 and the model's {dims.heads} attention heads")
        if dims.heads % tp:
            raise ValueError(f"tp={tp} does not divide the model's {dims.heads} attention heads")
    if pp is not None and (pp < 1 or dims.layers % pp):
        raise ValueError(f"pp={pp} does not divide the model's {dims.layers} layers")
    mp = (tp or 1) * (pp or 1)
    if gpus % mp:
        what = "tp*pp" if tp and pp else ("tp" if tp else "pp")
        raise ValueError(f"gpus={gpus} is not divisible by {what}={mp}")
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(f"micro_batch must be at least 1; got {micro_batch}")
    if tp is not None and pp is not None:
        dp = gpus // mp
        b = micro_batch or 1
        if global_batch % (b * dp):
            raise ValueError(
                f"global batch {global_batch} is not divisible by micro_batch*dp = {b}*{dp} = {b * dp} "
                f"(dp = gpus/(tp*pp) = {gpus}/{mp})"
            )
    if vp < 1:
        raise ValueError(f"vp must be at least 1; got {vp}")
    if vp > 1:
        if pp is not None and pp == 1:
            raise ValueError(f"vp={vp} (interleaving) needs pipeline parallelism; pp is 1")
        if pp is not None and dims.layers % (pp * vp):
            raise ValueError(f"pp*vp = {pp}*{vp} does not divide the model's {dims.layers} layers")


def _checked_accelerator(catalog: Catalog, accelerator: str, precision: str, precisions, fallback: str):
    """The catalog accelerator, after checking it exists and can run `precision`."""
    if accelerator not in catalog.accelerators:
        raise ValueError(f"unknown accelerator '{accelerator}' (available: {', '.join(sorted(catalog.accelerators))})")
    if precision not in precisions:
        raise ValueError(f"unknown precision '{precision}' (available: {', '.join(precisions)})")
    acc = catalog.accelerators[accelerator]
    if precision == "fp8" and acc.peak_fp8_tflops is None:
        fp8 = sorted(k for k, a in catalog.accelerators.items() if a.peak_fp8_tflops is not None)
        raise ValueError(
            f"accelerator '{accelerator}' has no FP8 support (peak_fp8_tflops not set); use precision {fallback} "
            f"or an FP8 accelerator ({', '.join(fp8)})"
        )
    return acc


def estimate_training(
    dims: ModelDims,
    catalog: Catalog,
    accelerator: str,
    fabric: str | None,
    gpus: int,
    *,
    tp: int | None = None,
    pp: int | None = None,
    global_batch: int,
    micro_batch: int | None = None,
    vp: int = 1,
    precision: str = "bf16",
    recompute: str | None = None,
    distributed_optimizer: bool = True,
    tokens: float | None = None,
) -> dict[str, Any]:
    """Step time, throughput, FLOP/s, memory and breakdown of one job on `gpus` accelerators.

    Raises ValueError when the layout is impossible; returns the lowest-memory layout with
    fits_memory false (and a `note`) when none of the candidates fits.
    """
    if accelerator not in catalog.accelerators:
        raise ValueError(f"unknown accelerator '{accelerator}' (available: {', '.join(sorted(catalog.accelerators))})")
    fabric = fabric or default_fabric(accelerator, catalog)
    if fabric not in catalog.fabrics:
        raise ValueError(f"unknown fabric '{fabric}' (available: {', '.join(sorted(catalog.fabrics))})")
    acc = _checked_accelerator(catalog, accelerator, precision, PRECISIONS, "bf16")
    if recompute is not None and recompute not in RECOMPUTE:
        raise ValueError(f"unknown recompute '{recompute}' (available: {', '.join(RECOMPUTE)})")
    _check_layout(dims, gpus, tp, pp, global_batch, micro_batch, vp)

    dp = gpus // (tp * pp) if tp is not None and pp is not None else None
    pinned = PinnedParallelism(
        tp=tp, pp=pp, dp=dp, micro_batch=micro_batch, vp=vp, recompute=recompute,
        distributed_optimizer=distributed_optimizer,
    )
    grid = enumerate_grid(dims, global_batch, [acc], [catalog.fabrics[fabric]], precision, pinned)
    grid = grid.take(np.flatnonzero(grid.t * grid.p * grid.d == gpus))
    if len(grid) == 0:
        raise ValueError(
            f"no valid layout of {gpus} GPUs for global batch {global_batch}: need gpus = tp*pp*dp with tp a power of "
            f"two dividing {dims.heads} heads, pp dividing {dims.layers} layers, global batch divisible by "
            f"micro_batch*dp" + (f", and with vp={vp} micro-batches per pipeline divisible by pp" if vp > 1 else "")
        )
    out = evaluate(dims, grid, [acc], [catalog.fabrics[fabric]], catalog.calibration, precision, global_batch, tokens)
    fits = out["fits_memory"]
    note = None
    if fits.any():
        i = int(np.flatnonzero(fits)[np.argmin(out["step_time_s"][fits])])
    else:
        i = int(np.argmin(out["memory_per_gpu_gb"]))
        note = "no candidate layout fits in memory; showing the one needing the least"

    res: dict[str, Any] = {
        "accelerator": accelerator,
        "fabric": fabric,
        "gpus": gpus,
        "nodes": int(out["nodes"][i]),
        "tp": int(grid.t[i]),
        "pp": int(grid.p[i]),
        "dp": int(grid.d[i]),
        "micro_batch": int(grid.b[i]),
        "vp": int(grid.v[i]),
        "recompute": RECOMPUTE[int(grid.recompute[i])],
        "distributed_optimizer": bool(grid.dist_opt[i]),
        "precision": precision,
        "global_batch": global_batch,
        "micro_batches_per_step": global_batch // (int(grid.b[i]) * int(grid.d[i])),
        "params": dims.params,
    }
    for k in ("step_time_s", "tokens_per_s", "tflops_per_gpu_hw", "tflops_per_gpu_model", "mfu",
              "hw_flops_per_step", "model_flops_per_step", "memory_per_gpu_gb"):
        res[k] = float(out[k][i])
    res["memory_limit_gb"] = acc.hbm_gb - catalog.calibration.memory_reserved_gb
    res["fits_memory"] = bool(fits[i])
    if tokens is not None:
        res["tokens"] = float(tokens)
        days = float(out["time_to_train_days"][i])
        res["time_to_train_days"] = days if math.isfinite(days) else None
    res["breakdown"] = {k: float(out[k][i]) for k in BREAKDOWN}
    if note:
        res["note"] = note
    res.update(estimate_goodput(res, acc))  # failures: goodput, checkpoints, lost time, time to train
    return res


INFERENCE_BREAKDOWN = (
    "prefill_compute_s", "prefill_memory_s", "prefill_tp_comm_s", "decode_compute_s", "decode_memory_s",
    "decode_tp_comm_s", "step_overhead_s",
)


def estimate_inference(
    dims: ModelDims,
    catalog: Catalog,
    accelerator: str,
    tp: int | None = None,
    batch: int | None = None,
    precision: str = "bf16",
    input_tokens: int = 1000,
    output_tokens: int = 250,
    *,
    max_tpot_s: float | None = None,
    requests_per_s: float | None = None,
) -> dict[str, Any]:
    """TTFT, TPOT, throughput and memory of one serving replica (`dcopt estimate --mode inference`).

    With `requests_per_s` (Poisson arrivals on this one replica) the result adds the queueing
    latencies ttft_p50_s, ttft_p99_s, tpot_p50_s, tpot_p99_s and the utilization (models.perf.queueing);
    a load at or past the replica's capacity raises ValueError naming the capacity.

    Left out, batch is the largest of `inference.BATCHES` that fits in memory (and meets
    `max_tpot_s` if given): more concurrent sequences always raise throughput, so memory or the SLO
    is what stops it. tp is the one giving the most output tokens/s per accelerator at its batch
    (ties: the smallest). Raises ValueError for impossible requests; a pinned batch too large for
    memory is returned with fits_memory false and a `note`.
    """
    acc = _checked_accelerator(catalog, accelerator, precision, SERVING_PRECISIONS, "bf16 or int8 (weight-only)")
    if input_tokens < 1 or output_tokens < 1:
        raise ValueError(f"input_tokens and output_tokens must be at least 1; got {input_tokens} and {output_tokens}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1; got {batch}")
    if max_tpot_s is not None and max_tpot_s <= 0:
        raise ValueError(f"max_tpot_s must be positive; got {max_tpot_s}")
    if requests_per_s is not None and not requests_per_s > 0:
        raise ValueError(f"requests_per_s must be positive; got {requests_per_s}")
    dom = tp_domain(acc)
    if tp is not None:
        if tp < 1 or tp > dims.heads or dims.heads % tp:
            raise ValueError(f"tp={tp} does not divide the model's {dims.heads} attention heads")
        if tp > dom:
            where = "scale-up domain" if acc.scaleup_domain > 1 else "node (tensor parallelism over PCIe)"
            raise ValueError(
                f"tp={tp} exceeds the {where} of '{accelerator}' ({dom} accelerators); "
                "a serving replica stays within one scale-up domain, or one node without a scale-up fabric"
            )

    calib = catalog.calibration
    grid = enumerate_serving_grid(
        dims, [acc], precision, None if tp is None else [tp], BATCHES if batch is None else [batch]
    )
    if len(grid) == 0:  # only when no default tp divides the heads within the scale-up domain
        raise ValueError(f"no tensor-parallel degree divides the model's {dims.heads} heads within "
                         f"'{accelerator}''s tensor-parallel domain of {dom}")
    out = evaluate_serving(dims, grid, [acc], calib, precision, input_tokens, output_tokens)
    limit_gb = acc.hbm_gb - calib.memory_reserved_gb
    if not (out["max_batch_fitting"] >= 1).any():
        j = int(np.argmax(grid.t))
        one = ServingGrid(acc=grid.acc[[j]], t=grid.t[[j]], batch=np.ones(1, dtype=np.int64))
        m1 = evaluate_serving(dims, one, [acc], calib, precision, input_tokens, output_tokens)
        w_gb, kv_gb, need_gb = (
            float(m1[k][0]) for k in ("weights_gb_per_acc", "kv_gb_per_seq_per_acc", "memory_per_acc_gb")
        )
        at = f"tp={int(grid.t[j])}"
        if tp is None:
            at = f"the largest {at} (tensor-parallel domain {dom})"
        larger_tp = tp is not None and len(enumerate_serving_grid(dims, [acc], precision, [2 * tp], [1])) > 0
        hint = ("a larger tp, " if larger_tp else "") + (
            "fp8/int8 weights, " if BYTES_PER_PARAM[precision] > 1 else "") + "an accelerator with more memory"
        if w_gb <= limit_gb:
            hint += f", or fewer than {input_tokens + output_tokens} tokens per sequence"
        what = "weights do not fit" if w_gb > limit_gb else "weights fit but leave no room for one sequence's KV cache"
        raise ValueError(
            f"{dims.params / 1e9:.1f}B-parameter model in {precision} on '{accelerator}' at {at}: {what}; one sequence "
            f"of {input_tokens + output_tokens} tokens needs {need_gb:.1f} GB per accelerator ({w_gb:.1f} GB weights + "
            f"{kv_gb:.2f} GB KV + workspace) vs {limit_gb:.1f} GB available "
            f"(hbm_gb {acc.hbm_gb:g} - memory_reserved_gb {calib.memory_reserved_gb:g}); use {hint}"
        )

    fits = out["fits_memory"]
    ok = fits & (out["tpot_s"] <= max_tpot_s) if max_tpot_s is not None else fits
    note = None
    if ok.any():
        # Per t the largest admissible batch, then the t with the most tokens/s per accelerator.
        best_per_t: dict[int, int] = {}
        for j in np.flatnonzero(ok):
            k = int(grid.t[j])
            if k not in best_per_t or grid.batch[j] > grid.batch[best_per_t[k]]:
                best_per_t[k] = int(j)
        i = min(best_per_t.values(), key=lambda j: (-out["output_tokens_per_s_per_acc"][j], grid.t[j]))
    elif not fits.any():  # only a pinned batch can get here
        i = int(np.argmax(out["max_batch_fitting"]))
        note = (f"batch {batch} does not fit in memory: at most {int(out['max_batch_fitting'][i])} sequences of "
                f"{input_tokens + output_tokens} tokens fit at tp={int(grid.t[i])}")
    else:
        cands = np.flatnonzero(fits)
        i = int(cands[np.argmin(out["tpot_s"][cands])])
        note = f"no layout that fits in memory meets max_tpot_s={max_tpot_s:g}; showing the lowest TPOT"

    res: dict[str, Any] = {
        "accelerator": accelerator,
        "tp": int(grid.t[i]),
        "batch": int(grid.batch[i]),
        "precision": precision,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "params": dims.params,
    }
    if max_tpot_s is not None:
        res["max_tpot_s"] = max_tpot_s
    for k in ("ttft_s", "tpot_s", "decode_step_s", "output_tokens_per_s", "output_tokens_per_s_per_acc",
              "requests_per_s", "memory_per_acc_gb", "weights_gb_per_acc", "kv_gb_per_seq_per_acc"):
        res[k] = float(out[k][i])
    res["max_batch_fitting"] = int(out["max_batch_fitting"][i])
    res["memory_limit_gb"] = limit_gb
    res["fits_memory"] = bool(out["fits_memory"][i])
    res["breakdown"] = {k: float(out[k][i]) for k in INFERENCE_BREAKDOWN}
    if requests_per_s is not None:
        res.update(_queueing_at(out, grid.take([i]), i, output_tokens, requests_per_s))
    if note:
        res["note"] = note
    return res


def _queueing_at(out, row: ServingGrid, i: int, output_tokens: int, rate: float) -> dict[str, float]:
    from .queueing import capacity_rps, latency

    rt = replica_times({k: v[[i]] for k, v in out.items()}, row, output_tokens)
    cap = float(capacity_rps(rt)[0])
    if rate >= cap:
        raise ValueError(
            f"requests_per_s={rate:g} is past this replica's capacity of {cap:.3g} req/s "
            f"(tp={int(row.t[0])}, batch={int(row.batch[0])}); use more replicas or a larger batch"
        )
    lat = latency(rt, rate)
    res = {"requests_per_s_offered": float(rate), "capacity_rps": cap}
    for k in ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "utilization"):
        res[k] = float(lat[k][0])
    return res
