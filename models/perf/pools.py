"""Serving capacity per replica layout under the percentile SLOs, combined or disaggregated.

Combined replicas run prefill and decode together (`queueing.latency` on `inference.replica_times`).
Disaggregated serving (DistServe, Zhong et al., OSDI 2024; Splitwise, Patel et al., ISCA 2024)
splits them into two pools at one site:

  prefill replica  runs prompts one at a time: an M/D/1 queue of service time `prefill_s`, then
                   ships the prompt's KV cache to a decode replica over the site's front-end fabric
                   (its share of the node's ports): TTFT = wait + prefill_s + kv_bytes / link.
  decode replica   continuous batching without prefills: the queueing model with W = 0, so TPOT is
                   the bare decode step and only the wait for a KV slot plus the step in progress
                   delays the first decoded token.

The TTFT SLO is split so the pools are sized separately: the decode pool may add at most
`decode_ttft_allowance_s` = two TPOT SLOs (the step in progress and one more), and the prefill
pool gets what is left after the round trip and the KV transfer. Percentile sums are bounded by the
sum of percentiles (conservative for the independent parts).

Every function takes plain arrays; nothing here knows the MIP.
"""

from __future__ import annotations

import numpy as np

from .inference import KV_BYTES
from .queueing import BISECT_ITERS, ReplicaTimes, _wait_quantile, largest_rate, latency, max_rate_for_slo, mg1_tail

# Only this share of a replica's front-end bandwidth is planned for KV traffic (headroom for bursts
# and the request/response traffic on the same ports).
KV_LINK_UTILIZATION = 0.5
# The MIP lets a site's replicas of one layout serve a region only at the capacity of the farthest
# region they serve; a region whose capacity is below this fraction of the nearest's is left to others.
REACH_CAPACITY_FRACTION = 0.5


def kv_bytes_per_request(dims, precision: str, input_tokens: float) -> float:
    """The prompt's KV cache, all layers and KV heads (what a prefill replica hands over); MLA: the
    latent and the shared rope key (`ModelDims.kv_cache_width`)."""
    return dims.layers * dims.kv_cache_width * KV_BYTES[precision] * float(input_tokens)


def decode_ttft_allowance_s(tpot_slo_s: float) -> float:
    return 2.0 * tpot_slo_s


def prefill_only_s(perf: dict[str, np.ndarray]) -> np.ndarray:
    """One prompt run alone on the replica (no decode steps to share), with an EP replica's all-to-all."""
    return np.maximum(perf["prefill_compute_s"], perf["prefill_memory_s"]) + perf["prefill_tp_comm_s"] \
        + perf.get("prefill_a2a_s", 0.0) + perf["step_overhead_s"]


def decode_only_times(perf: dict[str, np.ndarray], batch, output_tokens: float) -> ReplicaTimes:
    """A decode-pool replica as the queueing model sees it: no prefill work on its timeline."""
    zero = np.zeros_like(perf["step_fixed_s"])
    return ReplicaTimes(prefill_work_s=zero, step_fixed_s=perf["step_fixed_s"], step_per_seq_s=perf["step_per_seq_s"],
                        batch=np.asarray(batch, dtype=np.float64), output_tokens=float(output_tokens), prefill_steps=0)


def prefill_latency(prefill_s, rate, percentiles=(0.5, 0.99)) -> dict[str, np.ndarray]:
    """M/D/1 prefill pool replica at `rate`: utilization and ttft_pXX_s (wait + service, no transfer)."""
    S, rate = np.broadcast_arrays(np.asarray(prefill_s, dtype=np.float64), np.asarray(rate, dtype=np.float64))
    rho = rate * S
    stable = (rho < 1) & (rate > 0)
    theta, C = mg1_tail(np.where(stable, rate, 0.0), S)
    theta, C = np.nan_to_num(theta, nan=1.0), np.nan_to_num(C, nan=0.0)
    out = {"utilization": rho}
    for p in percentiles:
        wq = _wait_quantile(p, np.where(stable, rho, 0.5), theta, np.where(stable, C, 0.0), np.zeros_like(S),
                            np.zeros_like(S), np.ones_like(S))
        out[f"ttft_p{round(p * 100):d}_s"] = np.where(stable, wq + S, np.where(rate > 0, np.inf, S))
    return out


def prefill_capacity_rps(prefill_s, transfer_s, link_rps, budgets: dict[str, float]) -> np.ndarray:
    """Largest rate per prefill replica whose TTFT percentiles plus the KV transfer meet `budgets`
    (keys ttft_p50_s / ttft_p99_s, seconds left after the round trip and the decode allowance),
    also below 1/prefill_s and the KV link's `link_rps`; 0 where even a vanishing load misses."""
    S, X, L = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (prefill_s, transfer_s, link_rps)))
    cap = np.minimum(1.0 / S, L)
    if not budgets:
        return cap
    pcts = sorted({0.99 if k.endswith("p99_s") else 0.5 for k in budgets})

    def meets(rate):
        lat = prefill_latency(S, rate, pcts)
        ok = np.ones(S.shape, dtype=bool)
        for k, b in budgets.items():
            ok &= lat[k] + X <= b
        return ok

    ok0 = meets(cap * 1e-9)
    return np.where(ok0, largest_rate(cap, meets, BISECT_ITERS // 2), 0.0)


def decode_capacity_rps(rt: ReplicaTimes, tpot_slos: dict[str, float], allowance_s: float) -> np.ndarray:
    """Largest rate per decode replica meeting the TPOT percentiles and adding at most `allowance_s`
    (p99) to TTFT (waiting for a KV slot and the step in progress)."""
    return max_rate_for_slo(rt, ttft_p99_s=allowance_s, tpot_p99_s=tpot_slos.get("tpot_p99_s"),
                            tpot_p50_s=tpot_slos.get("tpot_p50_s"))


__all__ = ["KV_LINK_UTILIZATION", "REACH_CAPACITY_FRACTION", "decode_capacity_rps", "decode_only_times",
           "decode_ttft_allowance_s", "kv_bytes_per_request", "latency", "prefill_capacity_rps", "prefill_latency",
           "prefill_only_s"]
