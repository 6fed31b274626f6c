"""One training configuration, estimated (`dcopt estimate`): the same model as the optimizer uses.

Whatever the caller leaves out is chosen: the fabric from `DEFAULT_FABRIC_BY_PREFIX`, and tp, pp,
cp, micro-batch, vp, recompute and sharding as the fastest layout that fits in memory. The result echoes every
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
from .stacks import DEFAULT_STACK, SHARDING, get_stack
from .training import (
    FLOPS_CONVENTION, PRECISIONS, RECOMPUTE, batch_bounds, enumerate_grid, evaluate, stage_layers, valid_stage_split,
)

# The fabric each accelerator is usually deployed with (by name prefix); the one place this lives.
DEFAULT_FABRIC_BY_PREFIX = (
    ("h100", "ib-ndr-400g"), ("h200", "ib-ndr-400g"), ("b200", "ib-ndr-400g"),
    ("a100", "ib-hdr-200g"), ("v100", "ib-hdr-200g"),
    ("gb300", "ib-xdr-800g"), ("gb200", "ib-ndr-400g"),
    ("mi3", "roce-400g"), ("gaudi", "roce-400g"),
    ("l40s", "eth-100g"), ("tpu", "eth-100g"),
)
# One term per exposed communication (tp, cp, pp, dp or FSDP) besides compute, bubble and optimizer.
BREAKDOWN = ("compute_s", "bubble_s", "tp_comm_s", "cp_comm_s", "pp_comm_s", "dp_comm_exposed_s", "optimizer_s")


def parse_global_batch(text: str):
    """'1536' -> 1536; '1024:2048' -> {'min': 1024, 'max': 2048} (the CLI's --global-batch)."""
    parts = str(text).split(":")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"global batch must be an integer or MIN:MAX; got '{text}'") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) != 2 or not 1 <= vals[0] <= vals[1]:
        raise ValueError(f"global batch range must be MIN:MAX with 1 <= MIN <= MAX; got '{text}'")
    return {"min": vals[0], "max": vals[1]}


def default_fabric(accelerator: str, catalog: Catalog) -> str:
    """The usual fabric for `accelerator`; if unknown or not in the catalog, the fastest port there."""
    for prefix, fab in DEFAULT_FABRIC_BY_PREFIX:
        if accelerator.lower().startswith(prefix) and fab in catalog.fabrics:
            return fab
    return max(sorted(catalog.fabrics), key=lambda f: catalog.fabrics[f].port_gbps)


def _check_layout(dims: ModelDims, gpus: int, tp, pp, global_batch, micro_batch, vp, cp, stack) -> None:
    """Clear errors for layouts that cannot exist, before any search."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1; got {gpus}")
    lo, hi = batch_bounds(global_batch)
    if tp is not None:
        if tp < 1 or tp > dims.heads:
            raise ValueError(f"tp={tp} must be between 1 and the model's {dims.heads} attention heads")
        if dims.heads % tp:
            raise ValueError(f"tp={tp} does not divide the model's {dims.heads} attention heads")
    if pp is not None:
        if pp < 1 or pp > dims.layers:
            raise ValueError(f"pp={pp} must be between 1 and the model's {dims.layers} layers")
        if not bool(valid_stage_split(dims.layers, pp, stack.uneven_stages)):
            if stack.uneven_stages:
                raise ValueError(f"pp={pp} cannot split {dims.layers} layers: with ceil({dims.layers}/{pp}) layers per "
                                 "stage the last stage would hold none")
            raise ValueError(f"pp={pp} does not divide the model's {dims.layers} layers "
                             "(this stack has no uneven pipeline stages; megatron-core, nemo and torchtitan do)")
    if cp is not None:
        if cp < 1:
            raise ValueError(f"cp must be at least 1; got {cp}")
        if cp > 1 and not stack.context_parallel:
            raise ValueError(f"cp={cp}: this stack has no context parallelism")
        if cp > 1 and dims.seq_len % (2 * cp):
            raise ValueError(f"cp={cp}: seq_len {dims.seq_len} must be divisible by 2*cp = {2 * cp} "
                             "(load-balanced causal ring attention)")
    mp = (tp or 1) * (pp or 1) * (cp or 1)
    if gpus % mp:
        names = [n for n, x in (("tp", tp), ("pp", pp), ("cp", cp)) if x is not None]
        raise ValueError(f"gpus={gpus} is not divisible by {'*'.join(names) or 'tp'}={mp}")
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(f"micro_batch must be at least 1; got {micro_batch}")
    if tp is not None and pp is not None and lo == hi:
        dp = gpus // mp
        b = micro_batch or 1
        if lo % (b * dp):
            raise ValueError(
                f"global batch {lo} is not divisible by micro_batch*dp = {b}*{dp} = {b * dp} "
                f"(dp = gpus/(tp*pp*cp) = {gpus}/{mp})"
            )
    if vp is not None:
        if vp < 1:
            raise ValueError(f"vp must be at least 1; got {vp}")
        if vp > 1:
            if not stack.interleaving:
                raise ValueError(f"vp={vp}: this stack has no interleaved pipeline schedule")
            if pp is not None and pp == 1:
                raise ValueError(f"vp={vp} (interleaving) needs pipeline parallelism; pp is 1")
            if pp is not None:
                full = int(stage_layers(dims.layers, pp)[0])
                if full % vp:
                    raise ValueError(f"vp={vp} does not divide the {full} layers of a full pipeline stage "
                                     f"({dims.layers} layers on pp={pp})")


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
    if precision in ("mxfp8", "nvfp4") and acc.peak_fp4_tflops is None:
        fp4 = sorted(k for k, a in catalog.accelerators.items() if a.peak_fp4_tflops is not None)
        raise ValueError(
            f"accelerator '{accelerator}' has no block-scaled FP8/FP4 units (peak_fp4_tflops not set), needed for "
            f"{precision}; use bf16 or fp8, or one of {', '.join(fp4)}"
        )
    return acc


def _sharding_pins(sharding, fsdp, distributed_optimizer, stack):
    """(sharding pin, distributed_optimizer pin, allowed codes) from --sharding / --fsdp / --distributed-optimizer."""
    if sharding is not None and sharding not in SHARDING:
        raise ValueError(f"unknown sharding '{sharding}' (available: {', '.join(SHARDING)})")
    if fsdp is True:
        if sharding not in (None, "zero3"):
            raise ValueError(f"--fsdp means sharding zero3; it contradicts sharding {sharding}")
        sharding = "zero3"
    if sharding is not None and sharding not in stack.sharding:
        raise ValueError(f"sharding '{sharding}' is not offered by this stack (offers: {', '.join(stack.sharding)})")
    if sharding is not None and distributed_optimizer is not None and (SHARDING.index(sharding) >= 1) != distributed_optimizer:
        raise ValueError(f"distributed_optimizer={distributed_optimizer} contradicts sharding {sharding}")
    return sharding, (None if sharding is not None else distributed_optimizer), fsdp is False


def _check_experts(dims: ModelDims, gpus: int, ep, etp, tp) -> None:
    if (ep not in (None, 1) or etp not in (None, 1)) and not dims.is_moe:
        raise ValueError(f"ep={ep} / etp={etp}: expert parallelism needs a mixture-of-experts model (experts > 0)")
    if ep is not None:
        if ep < 1 or dims.experts % ep:
            raise ValueError(f"ep={ep} must divide the model's {dims.experts} routed experts")
        if gpus % ep:
            raise ValueError(f"ep={ep} does not divide gpus={gpus}")
    if etp is not None and etp != 1 and tp is not None and etp != tp:
        raise ValueError(f"etp={etp} must be 1 or tp ({tp})")


def estimate_training(
    dims: ModelDims,
    catalog: Catalog,
    accelerator: str,
    fabric: str | None,
    gpus: int,
    *,
    tp: int | None = None,
    pp: int | None = None,
    global_batch,
    micro_batch: int | None = None,
    vp: int | None = None,
    precision: str = "bf16",
    recompute: str | None = None,
    distributed_optimizer: bool | None = None,
    tokens: float | None = None,
    cp: int | None = None,
    sharding: str | None = None,
    fsdp: bool | None = None,
    stack: str | None = None,
    ep: int | None = None,
    etp: int | None = None,
) -> dict[str, Any]:
    """Step time, throughput, FLOP/s, memory and breakdown of one job on `gpus` accelerators.

    Every knob left out (tp, pp, cp, micro-batch, vp, recompute, sharding, the batch inside a range) is
    searched: the fastest layout that fits is returned, with every choice echoed. `fsdp=True` pins
    sharding zero3, `fsdp=False` excludes it. Raises ValueError when the layout is impossible; returns
    the lowest-memory layout with fits_memory false (and a `note`) when none of the candidates fits.
    """
    if accelerator not in catalog.accelerators:
        raise ValueError(f"unknown accelerator '{accelerator}' (available: {', '.join(sorted(catalog.accelerators))})")
    fabric = fabric or default_fabric(accelerator, catalog)
    if fabric not in catalog.fabrics:
        raise ValueError(f"unknown fabric '{fabric}' (available: {', '.join(sorted(catalog.fabrics))})")
    acc = _checked_accelerator(catalog, accelerator, precision, PRECISIONS, "bf16")
    if recompute is not None and recompute not in RECOMPUTE:
        raise ValueError(f"unknown recompute '{recompute}' (available: {', '.join(RECOMPUTE)})")
    st_name = stack or DEFAULT_STACK
    st = get_stack(st_name)
    if recompute is not None and recompute not in st.recompute_modes:
        raise ValueError(f"recompute '{recompute}' is not offered by stack {st_name} "
                         f"(offers: {', '.join(st.recompute_modes)})")
    _check_layout(dims, gpus, tp, pp, global_batch, micro_batch, vp, cp, st)
    sh_pin, dist_pin, no_zero3 = _sharding_pins(sharding, fsdp, distributed_optimizer, st)
    _check_experts(dims, gpus, ep, etp, tp)

    dp = gpus // (tp * pp * (cp or 1)) if tp is not None and pp is not None and cp is not None else None
    pinned = PinnedParallelism(
        tp=tp, pp=pp, dp=dp, micro_batch=micro_batch, vp=vp, recompute=recompute,
        distributed_optimizer=dist_pin, cp=cp, sharding=sh_pin, ep=ep, etp=etp,
    )
    fab = catalog.fabrics[fabric]
    grid = enumerate_grid(dims, global_batch, [acc], [fab], precision, pinned, stack=st)
    keep = grid.t * grid.p * grid.d * grid.cp == gpus
    if no_zero3:
        keep &= grid.shard != SHARDING.index("zero3")
    grid = grid.take(np.flatnonzero(keep))
    if len(grid) == 0:
        lo, hi = batch_bounds(global_batch)
        what = f"{lo}" if lo == hi else f"{lo}-{hi}"
        raise ValueError(
            f"no valid layout of {gpus} GPUs for global batch {what}: need gpus = tp*pp*cp*dp with tp a power of "
            f"two dividing {dims.heads} heads, pp splitting {dims.layers} layers, the global batch divisible by "
            f"micro_batch*dp" + (f", and whole interleaved chunks (vp={vp})" if vp and vp > 1 else "")
            + (f", and ep*etp dividing tp*dp*cp" if dims.is_moe else "")
        )
    out = evaluate(dims, grid, [acc], [fab], catalog.calibration, precision, global_batch, tokens, stack=st)
    fits = out["fits_memory"]
    note = None
    if fits.any():
        i = int(np.flatnonzero(fits)[np.argmax(out["tokens_per_s"][fits])])  # batches may differ: compare rates
    else:
        i = int(np.argmin(out["memory_per_gpu_gb"]))
        note = "no candidate layout fits in memory; showing the one needing the least"

    gb = int(grid.gb[i])
    res: dict[str, Any] = {
        "accelerator": accelerator,
        "fabric": fabric,
        "stack": st_name,
        "stack_calibrated": st.calibrated,
        "gpus": gpus,
        "nodes": int(out["nodes"][i]),
        "tp": int(grid.t[i]),
        "pp": int(grid.p[i]),
        "cp": int(grid.cp[i]),
        "dp": int(grid.d[i]),
        "micro_batch": int(grid.b[i]),
        "vp": int(grid.v[i]),
        "recompute": RECOMPUTE[int(grid.recompute[i])],
        "recompute_layers_per_stage": int(out["recompute_layers"][i]),
        "sharding": SHARDING[int(grid.shard[i])],
        "distributed_optimizer": bool(grid.dist_opt[i]),
        "precision": precision,
        "global_batch": gb,
        "micro_batches_per_step": gb // (int(grid.b[i]) * int(grid.d[i])),
        "pipeline_stage_layers": dict(zip(("full", "first", "last"),
                                          (int(x) for x in stage_layers(dims.layers, int(grid.p[i]))))),
        "params": dims.params,
        "flops_convention": FLOPS_CONVENTION,
    }
    if dims.is_moe:
        res.update({"ep": int(grid.ep[i]), "etp": int(grid.etp[i]), "active_params": dims.active_params})
    for k in ("step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "tflops_per_gpu_hw", "tflops_per_gpu_model",
              "mfu", "tflops_per_gpu_model_full_attention", "mfu_full_attention", "hw_flops_per_step",
              "model_flops_per_step", "model_flops_per_step_full_attention", "memory_per_gpu_gb"):
        res[k] = float(out[k][i])
    res["memory_limit_gb"] = acc.hbm_gb - catalog.calibration.memory_reserved_gb
    res["fits_memory"] = bool(fits[i])
    if tokens is not None:
        res["tokens"] = float(tokens)
        days = float(out["time_to_train_days"][i])
        res["time_to_train_days"] = days if math.isfinite(days) else None
    res["breakdown"] = {k: float(out[k][i]) for k in BREAKDOWN + (("a2a_s",) if dims.is_moe else ())}
    if not st.calibrated:
        res["stack_note"] = f"stack {st_name} has no published runs in the calibration files: efficiencies are the " \
                            "median of the calibrated stacks'"
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
    ep: int | None = None,
    precision: str = "bf16",
    input_tokens: int = 1000,
    output_tokens: int = 250,
    *,
    fabric: str | None = None,
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

    MoE: `ep` makes a wide-EP replica of ep accelerators (routed experts spread over all of them,
    attention data-parallel, or tensor-parallel over `tp` when both are given); a replica wider than
    the scale-up domain takes whole nodes and its all-to-all crosses `fabric` (default: the
    accelerator's usual one).
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
    atp = None
    if ep is not None:  # wide EP: a replica of ep accelerators, experts over all, attention data-parallel
        if not dims.is_moe:
            raise ValueError(f"ep={ep} needs a mixture-of-experts model (experts > 0); this model is dense")
        if ep < 2 or dims.experts % ep:
            raise ValueError(f"ep={ep} must be at least 2 and divide the model's {dims.experts} routed experts")
        if ep > dom and ep % acc.accelerators_per_node:
            raise ValueError(f"ep={ep} spans more than one {dom}-accelerator domain of '{accelerator}', so it must be "
                             f"whole nodes: a multiple of {acc.accelerators_per_node}")
        if tp is not None:  # tp with ep: the attention tensor-parallel degree inside the replica
            if ep % tp or tp > dom or dims.heads % tp:
                raise ValueError(f"with ep={ep}, tp={tp} is the attention tensor-parallel degree: it must divide ep "
                                 f"and the model's {dims.heads} heads and stay within the scale-up domain ({dom})")
            atp = tp
        tp = None
    if fabric is not None and fabric not in catalog.fabrics:
        raise ValueError(f"unknown fabric '{fabric}' (available: {', '.join(sorted(catalog.fabrics))})")
    fab = catalog.fabrics[fabric or default_fabric(accelerator, catalog)] if catalog.fabrics else None
    if tp is not None:
        if tp < 1 or tp > dims.heads or dims.heads % tp:
            raise ValueError(f"tp={tp} does not divide the model's {dims.heads} attention heads")
        if tp > dom:
            where = "scale-up domain" if acc.scaleup_domain > 1 else "node (tensor parallelism over PCIe)"
            hint = f"; for this mixture of experts, ep=N (expert parallelism) makes a wide-EP replica across nodes" if dims.is_moe else ""
            raise ValueError(
                f"tp={tp} exceeds the {where} of '{accelerator}' ({dom} accelerators); "
                f"a tensor-parallel serving replica stays within one scale-up domain, or one node without a scale-up fabric{hint}"
            )

    calib = catalog.calibration
    grid = enumerate_serving_grid(
        dims, [acc], precision, [ep] if ep is not None else (None if tp is None else [tp]),
        BATCHES if batch is None else [batch]
    )
    if batch is not None:  # a pinned batch is the replica's, not per attention group
        grid = ServingGrid(acc=grid.acc, t=grid.t, batch=np.full(len(grid), batch, dtype=np.int64), ep=grid.ep)
    if ep is not None:
        grid = ServingGrid(acc=grid.acc, t=grid.t, batch=grid.batch, ep=np.full(len(grid), ep, dtype=np.int64),
                           atp=None if atp is None else np.full(len(grid), atp, dtype=np.int64))
    if len(grid) == 0:  # only when no default tp divides the heads within the scale-up domain
        raise ValueError(f"no tensor-parallel degree divides the model's {dims.heads} heads within "
                         f"'{accelerator}''s tensor-parallel domain of {dom}")
    out = evaluate_serving(dims, grid, [acc], calib, precision, input_tokens, output_tokens, fabrics=[fab])
    limit_gb = acc.hbm_gb - calib.memory_reserved_gb
    if not (out["max_batch_fitting"] >= 1).any():
        j = int(np.argmax(grid.t))
        one = ServingGrid(acc=grid.acc[[j]], t=grid.t[[j]], batch=np.ones(1, dtype=np.int64))
        m1 = evaluate_serving(dims, one, [acc], calib, precision, input_tokens, output_tokens, fabrics=[fab])
        w_gb, kv_gb, need_gb = (
            float(m1[k][0]) for k in ("weights_gb_per_acc", "kv_gb_per_seq_per_acc", "memory_per_acc_gb")
        )
        at = f"tp={int(grid.t[j])}"
        if tp is None:
            at = f"the largest {at} (tensor-parallel domain {dom})"
        larger_tp = tp is not None and 2 * tp <= dom and len(enumerate_serving_grid(dims, [acc], precision, [2 * tp], [1])) > 0
        wide = _wide_ep_hint(dims, acc, calib, precision, input_tokens, output_tokens, fab) \
            if dims.is_moe and ep is None else None
        hint = ("a larger tp, " if larger_tp else "") + (f"ep={wide} (a wide-EP replica of {wide // acc.accelerators_per_node} "
                                                         "nodes), " if wide else "") + (
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
    if dims.is_moe:
        from .inference import wide_ep
        w, atp = wide_ep(dims, grid.take([i]), [acc])
        res.update({"ep": int(grid.t[i]) if w[0] else 1, "attention_tp": int(atp[0]), "active_params": dims.active_params})
    if max_tpot_s is not None:
        res["max_tpot_s"] = max_tpot_s
    for k in ("ttft_s", "tpot_s", "decode_step_s", "output_tokens_per_s", "output_tokens_per_s_per_acc",
              "requests_per_s", "memory_per_acc_gb", "weights_gb_per_acc", "kv_gb_per_seq_per_acc"):
        res[k] = float(out[k][i])
    res["max_batch_fitting"] = int(out["max_batch_fitting"][i])
    res["memory_limit_gb"] = limit_gb
    res["fits_memory"] = bool(out["fits_memory"][i])
    res["breakdown"] = {k: float(out[k][i]) for k in INFERENCE_BREAKDOWN
                        + (("prefill_a2a_s", "decode_a2a_s") if dims.is_moe else ())}
    if requests_per_s is not None:
        res.update(_queueing_at(out, grid.take([i]), i, output_tokens, requests_per_s))
    if note:
        res["note"] = note
    return res


def _wide_ep_hint(dims: ModelDims, acc, calib, precision: str, n_in, n_out, fab) -> int | None:
    """The smallest wide-EP replica (whole nodes beyond the domain, dividing the experts) where one
    sequence fits, or None."""
    dom, per_node = tp_domain(acc), acc.accelerators_per_node
    for t in range(per_node * (dom // per_node + 1), dims.experts + 1, per_node):
        if dims.experts % t:
            continue
        one = np.ones(1, dtype=np.int64)
        g = ServingGrid(acc=0 * one, t=t * one, batch=one, ep=t * one)
        if evaluate_serving(dims, g, [acc], calib, precision, n_in, n_out, fabrics=[fab])["max_batch_fitting"][0] >= 1:
            return t
    return None


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
