"""Per-step overhead, measured achieved rates, TP over PCIe, chunked prefill, and the estimate under load:
hand-computed on the idealised accelerator of test_inference_model."""

import numpy as np
import pytest

from models.loader import default_catalog
from models.perf.estimate import estimate_inference
from models.perf.inference import evaluate_serving, slo_capacity_rps
from models.perf.training import SCALEUP_LATENCY_S
from models.presets import PRESETS
from tests.test_inference_model import IDEAL, IDEAL_CAL, L8, P8, rows

CAT = default_catalog()


def one(acc=IDEAL, calib=IDEAL_CAL, t=1, batch=8, n_in=1000, n_out=250, precision="bf16"):
    out = evaluate_serving(L8, rows(t=t, batch=batch), [acc], calib, precision, n_in, n_out)
    return {k: v[0] for k, v in out.items()}


def test_step_overhead_adds_to_every_step_and_prefill():
    base, over = one(), one(calib=IDEAL_CAL.model_copy(update={"serving_step_overhead_s": 0.004}))
    assert over["decode_step_s"] == pytest.approx(base["decode_step_s"] + 0.004, rel=1e-12)
    assert over["ttft_s"] == pytest.approx(base["ttft_s"] + 0.004, rel=1e-12)
    # Batch 1 decode on the ideal accelerator: weights (2 bytes x P8) over 1 TB/s, plus the overhead.
    b1 = one(calib=IDEAL_CAL.model_copy(update={"serving_step_overhead_s": 0.004}), batch=1)
    kv = 2 * 32 * 8 * 128 * 2 * (1000 + 125)
    assert b1["decode_step_s"] == pytest.approx((2 * P8 + kv) / 1e12 + 0.004, rel=1e-9)


def test_measured_hbm_and_gemm_replace_datasheet_times_efficiency():
    cal = IDEAL_CAL.model_copy(update={"hbm_efficiency": 0.5})
    assert one(calib=cal, batch=1)["decode_memory_s"] == pytest.approx(one(batch=1)["decode_memory_s"] * 2, rel=1e-12)
    meas = IDEAL.model_copy(update={"hbm_bw_measured_tbs": 0.8, "gemm_tflops_measured": {"bf16": 60.0}})
    r = one(acc=meas, calib=cal, batch=1)  # measured figures win over datasheet x efficiency
    assert r["decode_memory_s"] == pytest.approx(one(batch=1)["decode_memory_s"] / 0.8, rel=1e-12)
    assert r["prefill_compute_s"] == pytest.approx((2 * P8 * 1000 + 2 * 32 * 1000**2 * 4096) / 60e12, rel=1e-12)


def test_tp_over_pcie_for_an_accelerator_without_scaleup():
    pcie = IDEAL.model_copy(update={"scaleup_domain": 1, "pcie_bw_gbs": 20.0})
    r = one(acc=pcie, t=4, batch=1)
    # 2 all-reduces per layer of one token's hidden state, ring over 4 peers at 20 GB/s, 10 us per hop.
    ring = 2 * 3 / 4 * 4096 * 2 / 20e9 + 2 * 3 * 10e-6
    assert r["decode_tp_comm_s"] == pytest.approx(2 * 32 * ring, rel=1e-12)
    nvl = one(t=4, batch=1)  # the same on the scale-up links
    assert nvl["decode_tp_comm_s"] == pytest.approx(2 * 32 * (2 * 3 / 4 * 4096 * 2 / 100e9 + 6 * SCALEUP_LATENCY_S))
    # A 70B model on an L40S node at tp 4 (refused before this model had PCIe TP).
    est = estimate_inference(PRESETS["llama3-70b"], CAT, "l40s", tp=4, precision="fp8")
    assert est["tp"] == 4 and est["fits_memory"]
    with pytest.raises(ValueError, match="node"):
        estimate_inference(PRESETS["llama3-70b"], CAT, "l40s", tp=16)


def test_chunked_prefill_costs_the_marginal_step_time():
    cal = IDEAL_CAL.model_copy(update={"serving_chunk_tokens": 256})
    r, alone = one(calib=cal, batch=64), one(batch=64)
    assert r["prefill_steps"] == 4  # ceil(1000 / 256)
    # Decode at batch 64 on the ideal accelerator is memory-bound; a chunk's GEMMs fill that idle
    # compute, so the prefill costs the replica less than running it alone, and decode is unchanged.
    assert r["decode_step_s"] == pytest.approx(alone["decode_step_s"], rel=1e-12)
    assert 0 < r["prefill_work_s"] < alone["prefill_work_s"]
    assert r["requests_per_s"] > alone["requests_per_s"]
    # Work conservation: W = 4 * (mixed step - decode step), mixed = max(compute of both, memory).
    dec_flops = 2 * P8 * 64 + 4 * 32 * 64 * 1125 * 4096
    pre_flops = 2 * P8 * 1000 + 2 * 32 * 1000**2 * 4096
    mixed = max((dec_flops + pre_flops / 4) / 100e12, r["decode_memory_s"])
    assert r["prefill_work_s"] == pytest.approx(4 * (mixed - max(dec_flops / 100e12, r["decode_memory_s"])), rel=1e-9)


def test_estimate_under_load_and_past_capacity():
    r = estimate_inference(PRESETS["llama3-70b"], CAT, "h100-sxm", tp=8, batch=64, requests_per_s=2.0)
    for k in ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "utilization"):
        assert k in r and r[k] > 0
    assert r["ttft_p99_s"] >= r["ttft_p50_s"] >= r["ttft_s"] and r["tpot_p99_s"] >= r["tpot_p50_s"]
    assert r["utilization"] == pytest.approx(2.0 / r["requests_per_s"], rel=1e-9)
    cap = r["requests_per_s"]
    with pytest.raises(ValueError, match=r"capacity of .* req/s"):
        estimate_inference(PRESETS["llama3-70b"], CAT, "h100-sxm", tp=8, batch=64, requests_per_s=cap * 1.01)


def test_slo_capacity_is_below_full_load_and_meets_the_slo():
    g = rows(t=[1, 2], batch=[16, 16])
    perf = evaluate_serving(L8, g, [IDEAL], IDEAL_CAL, "bf16", 1000, 250)
    cap = slo_capacity_rps(L8, g, [IDEAL], IDEAL_CAL, "bf16", 1000, 250, ttft_p99_s=0.2, perf=perf)
    assert np.all(cap > 0) and np.all(cap < perf["requests_per_s"])
    none = slo_capacity_rps(L8, g, [IDEAL], IDEAL_CAL, "bf16", 1000, 250, tpot_p99_s=1e-4, perf=perf)
    assert np.all(none == 0)
