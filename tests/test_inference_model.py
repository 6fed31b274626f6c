"""Inference (serving) model: hand-computed values on an idealised accelerator, grid rules, and the
single-replica estimate. The expected values are written out as arithmetic, not recomputed by the
model's own helpers."""

import json
import math

import numpy as np
import pytest

from models.perf.estimate import estimate_inference
from models.perf.inference import (
    BATCHES, ServingGrid, enumerate_serving_grid, evaluate_serving, max_batch_fitting,
)
from models.loader import default_catalog
from models.presets import PRESETS
from models.schema import Accelerator, Calibration
from models.perf.training import CHUNK_ROWS, SCALEUP_LATENCY_S

CAT = default_catalog()
L70 = PRESETS["llama3-70b"]
L8 = PRESETS["llama3-8b"]

# Round numbers: 100 GB, 1 TB/s, 100 TFLOP/s bf16 (200 fp8), 100 GB/s scale-up links.
IDEAL = Accelerator(
    peak_bf16_tflops=100, peak_fp8_tflops=200, hbm_gb=100, hbm_bw_tbs=1, scaleup_domain=64, scaleup_bw_gbs=100,
    accelerators_per_node=8, node_power_kw=1, node_price_usd=1, node_rack_units=1,
)
IDEAL_CAL = Calibration(
    gemm_efficiency_max=1, gemm_half_dim=0, elementwise_passes=0, attention_passes=0, comm_efficiency=1,
    dp_overlap=0, memory_reserved_gb=0, hbm_efficiency=1,
)
P70 = 80 * (2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672) + 2 * 128256 * 8192  # Q,O + K,V + SwiGLU; emb + head
P8 = 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 2 * 128256 * 4096


def rows(acc=0, t=1, batch=1) -> ServingGrid:
    acc, t, batch = np.broadcast_arrays(np.asarray(acc), np.asarray(t), np.asarray(batch))
    return ServingGrid(acc=acc.ravel().astype(np.int64), t=t.ravel().astype(np.int64),
                       batch=batch.ravel().astype(np.int64))


def run(dims, grid, n_in=1000, n_out=250, accs=(IDEAL,), calib=IDEAL_CAL, precision="bf16"):
    out = evaluate_serving(dims, grid, list(accs), calib, precision, n_in, n_out)
    return {k: v[0] for k, v in out.items()} if len(grid) == 1 else out


# ------------------------------------------------------------------ memory


def test_llama3_70b_weights_and_kv_bytes_bf16():
    assert P70 == 70_552_387_584 == L70.params
    kv_per_token = 2 * 80 * 8 * 128 * 2  # K and V, layers, KV heads, head dim, bf16
    assert kv_per_token == 327_680
    r = run(L70, rows(t=8, batch=1))
    assert r["weights_gb_per_acc"] == pytest.approx(P70 * 2 / 8 / 1e9, rel=1e-12)  # 17.64 GB
    assert r["kv_gb_per_seq_per_acc"] == pytest.approx(kv_per_token * (1000 + 250) / 8 / 1e9, rel=1e-12)  # 51.2 MB


def test_kv_heads_are_replicated_beyond_kv_heads():
    """8 KV heads over t=16: each accelerator still holds one whole KV head, as at t=8."""
    r = run(L70, rows(t=[8, 16], batch=1))
    assert r["kv_gb_per_seq_per_acc"][1] == pytest.approx(r["kv_gb_per_seq_per_acc"][0], rel=1e-12)
    assert r["weights_gb_per_acc"][1] == pytest.approx(r["weights_gb_per_acc"][0] / 2, rel=1e-12)


def test_max_batch_on_idealised_accelerator():
    assert P8 == 8_029_995_008 == L8.params
    weights = P8 * 2  # bf16, t=1
    kv_per_seq = 2 * 32 * 8 * 128 * 2 * (1000 + 250)  # 131,072 B per token x full context
    act_per_token = 2 * (2 * 4096 + 3 * 14336)  # residual + normed input + SwiGLU gate/up/product, bf16
    logits_per_seq = 4 * 128256  # fp32 logits of the last position
    fixed = 1000 * act_per_token + logits_per_seq  # the prefill's 1000 tokens
    expected = math.floor((100e9 - weights - fixed) / (kv_per_seq + act_per_token + logits_per_seq))
    assert expected == 509
    r = run(L8, rows(t=1, batch=[1, expected, expected + 1]))
    assert list(r["max_batch_fitting"]) == [509, 509, 509]
    assert list(r["fits_memory"]) == [True, True, False]
    assert r["memory_per_acc_gb"][1] == pytest.approx(
        (weights + fixed + 509 * (kv_per_seq + act_per_token + logits_per_seq)) / 1e9, rel=1e-12
    )
    assert r["memory_per_acc_gb"][1] <= 100 < r["memory_per_acc_gb"][2]
    direct = max_batch_fitting(L8, [IDEAL], IDEAL_CAL, "bf16", 1000, 250, [0], [1])
    assert direct.tolist() == [509]


def test_max_batch_zero_when_weights_do_not_fit():
    l40s = list(CAT.accelerators).index("l40s")
    accs = list(CAT.accelerators.values())
    mb = max_batch_fitting(L70, accs, CAT.calibration, "bf16", 1000, 250, [l40s], [1])
    assert mb.tolist() == [0]  # 141 GB of weights on a 48 GB card
    r = run(L70, rows(acc=l40s, t=1, batch=1), accs=accs, calib=CAT.calibration)
    assert not r["fits_memory"] and r["max_batch_fitting"] == 0


def test_precisions_fp8_halves_weights_and_kv_int8_only_weights():
    r = {p: run(L70, rows(t=8, batch=1), precision=p) for p in ("bf16", "fp8", "int8")}
    assert r["fp8"]["weights_gb_per_acc"] == pytest.approx(r["bf16"]["weights_gb_per_acc"] / 2, rel=1e-12)
    assert r["int8"]["weights_gb_per_acc"] == pytest.approx(r["bf16"]["weights_gb_per_acc"] / 2, rel=1e-12)
    assert r["fp8"]["kv_gb_per_seq_per_acc"] == pytest.approx(r["bf16"]["kv_gb_per_seq_per_acc"] / 2, rel=1e-12)
    assert r["int8"]["kv_gb_per_seq_per_acc"] == pytest.approx(r["bf16"]["kv_gb_per_seq_per_acc"], rel=1e-12)
    # fp8 math runs at the fp8 peak (2x here); int8 is weight-only, so bf16 math.
    assert r["fp8"]["prefill_compute_s"] == pytest.approx(r["bf16"]["prefill_compute_s"] / 2, rel=1e-12)
    assert r["int8"]["prefill_compute_s"] == pytest.approx(r["bf16"]["prefill_compute_s"], rel=1e-12)
    assert r["int8"]["max_batch_fitting"] > r["bf16"]["max_batch_fitting"]


# ------------------------------------------------------------------ time


def test_decode_memory_bound_and_ttft_exact_at_t1():
    r = run(L8, rows(t=1, batch=1), n_in=1000, n_out=250)
    # Decode at batch 1 streams the weights (plus one sequence's KV at the average context 1000 + 125).
    kv_read = 2 * 32 * 8 * 128 * 2 * (1000 + 125)
    assert r["decode_memory_s"] == pytest.approx((P8 * 2 + kv_read) / 1e12, rel=1e-12)
    assert r["decode_memory_s"] == pytest.approx(P8 * 2 / 1e12, rel=0.01)  # ~ weights / bw
    assert r["decode_compute_s"] == pytest.approx((2 * P8 + 4 * 32 * 1125 * 4096) / 100e12, rel=1e-12)
    assert r["decode_tp_comm_s"] == 0.0
    assert r["decode_step_s"] == pytest.approx(r["decode_memory_s"], rel=1e-12)
    # Prefill of 1000 tokens: linear layers plus causal attention, compute-bound.
    ttft = 2 * P8 * 1000 / 100e12 + 2 * 32 * 1000**2 * 4096 / 100e12
    assert r["prefill_compute_s"] == pytest.approx(ttft, rel=1e-12)
    assert r["ttft_s"] == pytest.approx(ttft, rel=1e-12)
    assert r["prefill_memory_s"] < r["prefill_compute_s"]


def test_tensor_parallel_all_reduces_hand_computed():
    r = run(L8, rows(t=2, batch=4), n_in=1000)
    bw = 100e9
    # 2 ring all-reduces per layer over 2 peers: 2*(k-1)/k * bytes / bw + 2*(k-1) hops of latency.
    decode = 2 * 32 * (2 * (1 / 2) * 4 * 4096 * 2 / bw + 2 * 1 * SCALEUP_LATENCY_S)
    prefill = 2 * 32 * (2 * (1 / 2) * 1000 * 4096 * 2 / bw + 2 * 1 * SCALEUP_LATENCY_S)
    assert r["decode_tp_comm_s"] == pytest.approx(decode, rel=1e-12)
    assert r["prefill_tp_comm_s"] == pytest.approx(prefill, rel=1e-12)
    assert r["ttft_s"] == pytest.approx(r["prefill_compute_s"] + prefill, rel=1e-12)


def test_throughput_and_tpot_follow_the_serving_timeline():
    beta, n_in, n_out = 8, 1000, 250
    r = run(L8, rows(t=1, batch=beta), n_in=n_in, n_out=n_out)
    prefill, step = r["ttft_s"], r["decode_step_s"]
    assert r["requests_per_s"] == pytest.approx(1 / (prefill + n_out * step / beta), rel=1e-12)
    assert r["output_tokens_per_s"] == pytest.approx(n_out / (prefill + n_out * step / beta), rel=1e-12)
    assert r["output_tokens_per_s_per_acc"] == pytest.approx(r["output_tokens_per_s"], rel=1e-12)  # t = 1
    assert r["tpot_s"] == pytest.approx(step + beta * prefill / n_out, rel=1e-12)
    # Short prompts, long answers: prefill is negligible and throughput is beta / step.
    r = run(L8, rows(t=1, batch=beta), n_in=10, n_out=1000)
    assert r["output_tokens_per_s"] == pytest.approx(beta / r["decode_step_s"], rel=0.01)
    r2 = run(L8, rows(t=2, batch=beta), n_in=10, n_out=1000)
    assert r2["output_tokens_per_s_per_acc"] == pytest.approx(r2["output_tokens_per_s"] / 2, rel=1e-12)


def test_more_batch_more_throughput_higher_tpot_on_h100():
    accs = list(CAT.accelerators.values())
    h100 = list(CAT.accelerators).index("h100-sxm")
    r = run(L70, rows(acc=h100, t=8, batch=list(BATCHES)), accs=accs, calib=CAT.calibration)
    assert np.all(np.diff(r["output_tokens_per_s"]) > 0)
    assert np.all(np.diff(r["tpot_s"]) > 0)
    assert np.all(np.diff(r["decode_step_s"]) > 0)
    assert np.all(r["ttft_s"] == r["ttft_s"][0])  # one request's prefill does not depend on the batch


def test_chunked_evaluation_matches_unchunked():
    accs = list(CAT.accelerators.values())
    base = enumerate_serving_grid(L70, accs, "bf16")
    big = base.take(np.tile(np.arange(len(base)), CHUNK_ROWS // len(base) + 2))
    assert len(big) > CHUNK_ROWS
    small_out = evaluate_serving(L70, base, accs, CAT.calibration, "bf16", 1000, 250)
    big_out = evaluate_serving(L70, big, accs, CAT.calibration, "bf16", 1000, 250)
    for k, v in small_out.items():
        np.testing.assert_array_equal(big_out[k][: len(base)], v)


# ------------------------------------------------------------------ grid rules


def test_grid_tp_rules():
    accs = list(CAT.accelerators.values())
    names = list(CAT.accelerators)
    g = enumerate_serving_grid(L70, accs, "bf16")
    for i, a in enumerate(accs):
        ts = set(g.t[g.acc == i].tolist())
        dom = a.scaleup_domain if a.scaleup_domain > 1 else a.accelerators_per_node
        assert ts == {t for t in (1, 2, 4, 8, 16, 32, 64) if t <= dom and 64 % t == 0}, names[i]
        assert set(g.batch[g.acc == i].tolist()) == set(BATCHES)
    assert set(g.t[g.acc == names.index("l40s")].tolist()) == {1, 2, 4, 8}  # no scale-up fabric: TP over PCIe
    # 405B has 128 heads, but the search stops at t = 64 even on a TPU pod.
    g405 = enumerate_serving_grid(PRESETS["llama3-405b"], accs, "bf16")
    assert g405.t.max() == 64
    # A pinned tp is kept only where it divides the heads and fits the scale-up domain.
    g3 = enumerate_serving_grid(L70, accs, "bf16", tp_options=[16, 3])
    assert set(g3.t.tolist()) == {16} and all(accs[i].scaleup_domain >= 16 for i in g3.acc)


def test_fp8_excludes_accelerators_without_fp8_int8_runs_anywhere():
    accs = [CAT.accelerators["a100-sxm-80gb"], CAT.accelerators["h100-sxm"]]
    assert set(enumerate_serving_grid(L70, accs, "fp8").acc.tolist()) == {1}
    assert set(enumerate_serving_grid(L70, accs, "int8").acc.tolist()) == {0, 1}
    with pytest.raises(ValueError, match="fp8 requested for an accelerator without FP8"):
        evaluate_serving(L70, rows(acc=0, t=8, batch=1), accs, CAT.calibration, "fp8", 1000, 250)
    with pytest.raises(ValueError, match="precision must be one of bf16, fp8, int8"):
        enumerate_serving_grid(L70, accs, "fp2")


# ------------------------------------------------------------------ estimate_inference


def test_estimate_defaults_are_echoed_and_json_serialisable():
    r = estimate_inference(L70, CAT, "h100-sxm")
    json.dumps(r)
    assert (r["accelerator"], r["precision"], r["input_tokens"], r["output_tokens"]) == ("h100-sxm", "bf16", 1000, 250)
    assert r["tp"] in (1, 2, 4, 8) and r["fits_memory"]
    # The default batch is the largest of BATCHES that fits.
    assert r["batch"] == max(b for b in BATCHES if b <= r["max_batch_fitting"])
    for k in ("ttft_s", "tpot_s", "output_tokens_per_s", "output_tokens_per_s_per_acc", "requests_per_s",
              "memory_per_acc_gb"):
        assert r[k] > 0
    assert r["output_tokens_per_s_per_acc"] == pytest.approx(r["output_tokens_per_s"] / r["tp"])
    assert set(r["breakdown"]) >= {"prefill_compute_s", "prefill_tp_comm_s", "decode_compute_s",
                                   "decode_memory_s", "decode_tp_comm_s"}
    # The default tp is the best per accelerator among those that fit.
    for tp in (2, 4, 8):
        other = estimate_inference(L70, CAT, "h100-sxm", tp=tp)
        assert other["output_tokens_per_s_per_acc"] <= r["output_tokens_per_s_per_acc"]


def test_estimate_pinned_layout_and_slo():
    r = estimate_inference(L70, CAT, "h100-sxm", tp=8, batch=32, precision="fp8", input_tokens=500, output_tokens=100)
    assert (r["tp"], r["batch"], r["precision"], r["input_tokens"], r["output_tokens"]) == (8, 32, "fp8", 500, 100)
    slo = estimate_inference(L70, CAT, "h100-sxm", tp=8, max_tpot_s=0.05)
    assert slo["tpot_s"] <= 0.05 and slo["max_tpot_s"] == 0.05
    bigger = [b for b in BATCHES if b > slo["batch"]]
    if bigger:
        assert estimate_inference(L70, CAT, "h100-sxm", tp=8, batch=bigger[0])["tpot_s"] > 0.05
    too_big = estimate_inference(L70, CAT, "h100-sxm", tp=2, batch=512)
    assert not too_big["fits_memory"] and "batch 512 does not fit" in too_big["note"]


def test_estimate_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"unknown accelerator 'h900' \(available: a100-sxm-40gb, .*h100-sxm"):
        estimate_inference(L70, CAT, "h900")
    with pytest.raises(ValueError, match="tp=3 does not divide the model's 64 attention heads"):
        estimate_inference(L70, CAT, "h100-sxm", tp=3)
    with pytest.raises(ValueError, match=r"tp=16 exceeds the scale-up domain of 'h100-sxm' \(8 accelerators\)"):
        estimate_inference(L70, CAT, "h100-sxm", tp=16)
    with pytest.raises(ValueError, match="'a100-sxm-80gb' has no FP8 support.*int8"):
        estimate_inference(L70, CAT, "a100-sxm-80gb", precision="fp8")
    with pytest.raises(ValueError, match="unknown precision 'fp2'"):
        estimate_inference(L70, CAT, "h100-sxm", precision="fp2")
    # 405B in bf16: 811.6 GB / 8 = 101.5 GB of weights per H100 vs 80 - 5 = 75 GB.
    with pytest.raises(ValueError, match=r"at the largest tp=8 .*weights do not fit.*101\.5 GB weights.*75\.0 GB available"):
        estimate_inference(PRESETS["llama3-405b"], CAT, "h100-sxm")
    with pytest.raises(ValueError, match=r"at tp=1: weights do not fit.*141\.1 GB weights.*use a larger tp"):
        estimate_inference(L70, CAT, "h100-sxm", tp=1)
    with pytest.raises(ValueError, match="weights fit but leave no room for one sequence's KV cache"):
        estimate_inference(L70, CAT, "h100-sxm", tp=4, input_tokens=400_000)
