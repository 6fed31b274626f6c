"""Why a workload has no candidate at all: memory, batch, deadline or SLO, with the nearest miss."""

from __future__ import annotations

import numpy as np

from optimizer.mip.prune import Pruned, PrunedService


def explain_service(ps: PrunedService) -> str:
    """Why no replica layout of a service meets memory and its SLOs, with the nearest miss."""
    t, s = ps.table, ps.table.service
    if ps.fit_memory == 0:
        return (f"service '{s.name}': the model's weights and one sequence's KV cache fit no accelerator at any "
                "tensor-parallel degree within its scale-up domain (try fp8/int8 or larger accelerators)")
    fits = t.perf["fits_memory"].astype(bool)
    ttft = np.where(fits, t.perf["ttft_s"], np.inf)
    tpot = np.where(fits & (t.perf["ttft_s"] <= s.ttft_s), t.perf["tpot_s"], np.inf)
    if not np.isfinite(tpot).any():
        i = int(np.argmin(ttft))
        lay = t.layout(i)
        return (f"service '{s.name}': no layout meets the TTFT SLO of {s.ttft_s:g} s; the fastest prefill is "
                f"{ttft[i]:.3f} s ({lay['accelerator']}, tp={lay['tp']}): relax the SLO by {ttft[i] - s.ttft_s:.3f} s "
                "or shorten prompts")
    i = int(np.argmin(tpot))
    lay = t.layout(i)
    return (f"service '{s.name}': no layout meets the TPOT SLO of {s.tpot_s * 1000:g} ms; the best is "
            f"{tpot[i] * 1000:.1f} ms ({lay['accelerator']}, tp={lay['tp']}, batch={lay['batch']}): relax it by "
            f"{(tpot[i] - s.tpot_s) * 1000:.1f} ms")


def explain_job(pr: Pruned) -> str:
    """Why a job has no candidate: memory, batch, or deadline, with the nearest miss."""
    t, job = pr.table, pr.table.job
    if pr.enumerated == 0:
        return (
            f"job '{job.name}': no parallel layout exists for its model, global batch {job.global_batch} and pins "
            "(check tp divides heads, pp divides layers, the batch divides by micro-batch x dp, fp8 support)"
        )
    if pr.fit_memory == 0:
        mem = t.perf["memory_per_gpu_gb"]
        i = int(np.nanargmin(mem))
        lay = t.layout(i)
        return (
            f"job '{job.name}': no configuration fits accelerator memory; the smallest footprint is "
            f"{mem[i]:.1f} GB per accelerator on {lay['accelerator']} (tp={lay['tp']}, pp={lay['pp']}, "
            f"recompute={lay['recompute']})"
        )
    days = np.where(t.perf["fits_memory"].astype(bool), t.days, np.inf)
    i = int(np.argmin(days))
    lay = t.layout(i)
    return (
        f"job '{job.name}': no configuration meets its deadline of {job.deadline_days:g} days within memory and the "
        f"global batch of {job.global_batch} sequences; the fastest takes {days[i]:.1f} days "
        f"({int(t.perf['n_acc'][i])} x {lay['accelerator']}, tp={lay['tp']} pp={lay['pp']} dp={lay['dp']}): "
        f"extend the deadline by {days[i] - job.deadline_days:.1f} days or raise the global batch"
    )
