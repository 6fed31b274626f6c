import numpy as np
"""Calibration against published Megatron-LM throughput (Narayanan et al. SC'21)."""

import pytest

from models.perf.calibration import KNOB_BOUNDS, fit_calibration, format_report, load_reference, run_calibration
from models.loader import default_catalog

CAT = default_catalog()
MAE_BOUND_PCT = 3.0  # the issue-13 target; 2.07 % with the shipped knobs


@pytest.fixture(scope="module")
def report():
    rep = run_calibration(CAT)
    print("\n" + format_report(rep))
    return rep


def test_every_published_run_within_15_percent(report):
    assert len(report.rows) == len(load_reference()["cases"]) == 16
    bad = [(r.id, round(r.error_pct, 1)) for r in report.rows if abs(r.error_pct) > 15]
    assert not bad


def test_mean_absolute_error(report):
    assert report.mae_pct < MAE_BOUND_PCT
    assert report.max_abs_error_pct < 10


def test_published_layouts_fit_in_memory(report):
    # They ran on 80 GB A100s, so the memory model must let them.
    assert all(r.fits_memory for r in report.rows + report.end_to_end)


def test_gpt3_end_to_end_days(report):
    gpt3 = next(r for r in report.end_to_end if r.id == "gpt3-175b")
    assert gpt3.published == 34
    assert abs(gpt3.predicted - 34) / 34 < 0.15


def test_report_is_serialisable(report):
    d = report.to_dict()
    assert d["accelerator"] == "a100-sxm-80gb" and d["fabric"] == "ib-hdr-200g"
    assert len(d["rows"]) == 16 and {"id", "published", "predicted", "error_pct"} <= set(d["rows"][0])


def test_fit_stays_in_bounds_and_does_not_worsen():
    start = run_calibration(CAT).mae_pct
    fitted = fit_calibration(CAT, starts=1, rounds=1, points=3)
    for k, (lo, hi) in KNOB_BOUNDS.items():
        assert lo <= getattr(fitted, k) <= hi
    assert run_calibration(CAT, calib=fitted).mae_pct <= start + 1e-9


# ------------------------------------------------------------------ 2024-2026 runs

from models.perf.calibration import (  # noqa: E402
    ACCELERATOR_KNOB_BOUNDS, STACK_KNOB_BOUNDS, _prepare, fit_modern, flops_per_token, format_modern, load_modern,
    logo_fold, published_tokens_per_gpu, run_modern, variant_accelerator,
)
from models.perf.stacks import stack_profiles  # noqa: E402


@pytest.fixture(scope="module")
def modern():
    rep = run_modern(CAT, logo=False)
    print("\n" + format_modern(rep))
    return rep


def test_modern_rows_meet_the_mean_target(modern):
    assert len(modern.rows) == len(load_modern()["training"]) >= 25
    dense = [abs(r.error_pct) for r in modern.rows if r.id not in modern.moe_ids]
    assert np.mean(dense) <= 6.0  # issue-13 target
    assert max(dense) <= 15.0  # issue-13 target: each dense row within 15 %


def test_the_unmeasured_chip_prior_is_reported(modern):
    assert modern.unmeasured_gemm_ratio == CAT.calibration.unmeasured_gemm_ratio == 0.708
    assert "without measurement or rows of its own (LOGO's left-out one too): 0.708" in format_modern(modern)
    assert modern.to_dict()["unmeasured_gemm_ratio"] == 0.708


def test_moe_rows_are_predicted_and_reported(modern):
    # The MoE mean target (<= 10 %) is met (8.6 %: GB300's ceilings derived from GB200's measured ones put its
    # two MoE rows at -9.6 and -14.7 %); one row stays beyond 20 % (gpt-oss-120b on B200, +22.2 %:
    # see docs/performance-model.md). These bounds guard what is reached.
    assert len(modern.moe_ids) == 13 and "mb2511-gb200-dsv3-bf16" in modern.moe_ids
    assert {r.id for r in modern.rows} >= set(modern.moe_ids)
    moe = {r.id: abs(r.error_pct) for r in modern.rows if r.id in modern.moe_ids}
    assert np.mean(list(moe.values())) <= 8.75
    assert sum(e <= 20.0 for e in moe.values()) >= 12
    assert moe["mb2509-h100-dsv3-dropless-1024gpu"] <= 10.0  # EP over 8 nodes: group-limited routing
    assert moe["mb2511-b200-gptoss120b-bf16"] <= 23.0  # expert gradients over one NIC per rank, in fp32
    # per-tensor FP8 scaling (3 kernels per quantised tensor), expert kernels counted pass by pass
    assert moe["mb2511-h100-qwen3-30b-fp8"] <= 20.0
    text = format_modern(modern)
    assert "MoE rows: mean |error|" in text and "target: mean <= 10 %, each within 20 %" in text


def test_tflops_rows_convert_with_their_own_convention():
    row = next(r for r in load_modern()["training"] if r["id"] == "mlm-r080-h100-gpt-1.7b")
    from models.dims import ModelDims

    dims = ModelDims(seq_len=4096, **row["model"])
    h, l, s, V = 2048, 24, 4096, 131072
    full = 6 * (l * 12 * h * h + h * V) + 12 * l * h * s
    assert flops_per_token(dims, "full-attention") == pytest.approx(full, rel=1e-12)
    assert published_tokens_per_gpu(row) == pytest.approx(408.8e12 / full, rel=1e-12)


def test_shipped_stacks_say_what_they_are_calibrated_on():
    st = stack_profiles()
    assert st["megatron-2021"].calibrated and not st["deepspeed"].calibrated
    for name in ("megatron-core", "nemo", "torchtitan", "maxtext"):
        rows = [r["id"] for r in load_modern()["training"] if r["stack"] == name]
        assert rows and set(st[name].calibrated_on) == set(rows)


def test_modern_fit_stays_in_bounds_and_borrows_for_missing_stacks():
    rows = [_prepare(r, CAT) for r in load_modern()["training"] if r["stack"] == "megatron-core"][:4]
    st, pc, ac = fit_modern(rows, CAT.calibration, rounds=1, points=3, start="centre")
    for k, (lo, hi) in STACK_KNOB_BOUNDS.items():
        assert lo <= getattr(st["megatron-core"], k) <= hi
        # no torchtitan rows: the median of the fitted stacks (only megatron-core here)
        assert getattr(st["torchtitan"], k) == getattr(st["megatron-core"], k)
    for a in ac.values():
        lo, hi = ACCELERATOR_KNOB_BOUNDS["gemm_efficiency_fitted"]
        assert lo <= a.gemm_efficiency_fitted <= hi
    # two fitted stacks: the stacks without rows take their median (the mean of two) knob by knob,
    # gemm_efficiency from megatron-core alone (MaxText does not fit it)
    rows += [_prepare(r, CAT) for r in load_modern()["training"] if r["id"] == "maxtext-tier-v5p512-llama2-70b"]
    st, _, _ = fit_modern(rows, CAT.calibration, rounds=1, points=3, start="centre")
    mc, mx, tt = st["megatron-core"], st["maxtext"], st["torchtitan"]
    assert tt.attention_efficiency == pytest.approx((mc.attention_efficiency + mx.attention_efficiency) / 2)
    assert tt.elementwise_passes == pytest.approx((mc.elementwise_passes + mx.elementwise_passes) / 2)
    assert tt.gemm_efficiency == mc.gemm_efficiency and st["nemo"].attention_efficiency == tt.attention_efficiency


def test_an_uncalibrated_stack_takes_the_median_of_the_calibrated_stacks_knob_by_knob():
    from models.perf.stacks import borrowed_efficiencies, stack_profiles

    st = stack_profiles()
    a = st["megatron-core"].model_copy(update=dict(gemm_efficiency=1.0, attention_efficiency=0.4, elementwise_passes=30.0))
    b = st["nemo"].model_copy(update=dict(gemm_efficiency=0.9, attention_efficiency=0.5, elementwise_passes=40.0))
    c = st["torchtitan"].model_copy(update=dict(gemm_efficiency=0.7, attention_efficiency=0.6, elementwise_passes=50.0))
    d = st["maxtext"].model_copy(update=dict(gemm_efficiency=1.0, attention_efficiency=0.35, elementwise_passes=60.0))
    out = borrowed_efficiencies({"megatron-core": a, "nemo": b, "torchtitan": c, "maxtext": d,
                                 "deepspeed": st["deepspeed"], "megatron-2021": st["megatron-2021"]},
                                ["megatron-core", "nemo", "torchtitan", "maxtext", "megatron-2021"])
    ds = out["deepspeed"]
    assert ds.gemm_efficiency == pytest.approx(0.9)  # median of 1.0, 0.9, 0.7 (MaxText does not fit it)
    assert ds.attention_efficiency == pytest.approx(0.45)  # median of 0.4, 0.5, 0.6, 0.35
    assert ds.elementwise_passes == pytest.approx(45.0)  # median of 30, 40, 50, 60
    assert out["megatron-2021"] is st["megatron-2021"] and out["nemo"] is b  # donors and the 2021 stack unchanged
    # shipped: deepspeed has no rows, so it carries the median of the four calibrated modern stacks
    mods = [st[n] for n in ("megatron-core", "nemo", "torchtitan")]
    assert st["deepspeed"].gemm_efficiency == pytest.approx(float(np.median([s.gemm_efficiency for s in mods])))
    assert not st["deepspeed"].calibrated


def test_torchtitan_h100_rows_run_on_the_500w_hbm2e_variant_their_source_states():
    spec = load_modern()["hardware_variants"]["h100-sxm-96gb-hbm2e-500w"]
    a = variant_accelerator(CAT, "h100-sxm-96gb-hbm2e-500w", spec)
    f = (500 / 700) ** (1 / 3)  # sustained clock under the power cap: P ~ f^3
    assert f == pytest.approx(0.89390, abs=1e-5)
    assert a.peak_bf16_tflops == pytest.approx(884.52, abs=0.01) and a.peak_fp8_tflops == pytest.approx(1769.04, abs=0.01)
    assert a.gemm_tflops_measured == pytest.approx({"bf16": 794.5 * f, "fp8": 1402.6 * f}, rel=1e-12)  # 710.2, 1253.8
    # six 16 GB HBM2e stacks at 0.4 TB/s; measured bandwidth keeps the H100 SXM's STREAM/datasheet ratio 2.97/3.35
    assert (a.hbm_gb, a.hbm_bw_tbs) == (96, 2.4) and a.hbm_bw_measured_tbs == pytest.approx(2.97 * 2.4 / 3.35, rel=1e-12)
    assert (a.scaleup_bw_gbs, a.scaleup_domain) == (450, 8)
    # the law's check: H100 NVL (same 132-SM die) at 400 W is 835.5 TFLOPS on its datasheet
    assert 989.5 * (400 / 700) ** (1 / 3) == pytest.approx(835.5, rel=0.02)
    rows = [r for r in load_modern()["training"] if r.get("hardware_variant")]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in load_modern()["training"] if r["id"].startswith("tt-h100"))
    p = _prepare(rows[0], CAT)
    assert p.acc.peak_bf16_tflops == a.peak_bf16_tflops and p.row["accelerator"] == "h100-sxm"  # still an h100-sxm fold row


def test_torchtitan_selective_rows_fit_near_their_published_peaks(modern):
    # Op-level selective AC keeps ~15.5 h bytes per token and layer (not Megatron's 34 h): the 8-GPU Llama 3.1 8B
    # rows fit on the 96 GB parts. Their sources log ~77 GiB (allocator reserved); predicted + reserved stays below.
    rows = {r.id: r for r in modern.rows if r.published_peak_gb is not None}
    assert len(rows) == 5
    for rid in ("tt-h100-llama31-8b-8gpu-bf16-compile", "tt-h100-llama31-8b-8gpu-fp8"):
        r = rows[rid]
        assert r.fits_memory and r.layout["recompute"] == "selective"
        assert 0.75 * r.published_peak_gb <= r.memory_per_gpu_gb + modern.memory_reserved_gb <= r.published_peak_gb
    assert "published peak 82.7 GB" in format_modern(modern)
    assert all(r.fits_memory for r in modern.rows if r.stack == "torchtitan")


def test_hardware_variant_errors_name_the_field():
    base = {"base": "h100-sxm", "power_limit_w": 500, "rated_power_w": 700}
    with pytest.raises(ValueError, match="unknown field.*clock_mhz"):
        variant_accelerator(CAT, "v", {**base, "clock_mhz": 1500})
    with pytest.raises(ValueError, match="base 'h999' is not a catalog accelerator"):
        variant_accelerator(CAT, "v", {**base, "base": "h999"})
    with pytest.raises(ValueError, match=r"power_limit_w must be in \(0, rated_power_w=700\]; got 800"):
        variant_accelerator(CAT, "v", {**base, "power_limit_w": 800})
    with pytest.raises(ValueError, match="power_limit_w and rated_power_w go together"):
        variant_accelerator(CAT, "v", {"base": "h100-sxm", "power_limit_w": 500})
    row = dict(next(r for r in load_modern()["training"] if r.get("hardware_variant")), hardware_variant="nope")
    with pytest.raises(ValueError, match="unknown hardware_variant 'nope'"):
        _prepare(row, CAT)
    with pytest.raises(ValueError, match="based on 'h100-sxm', not on the row's accelerator 'h200'"):
        _prepare(dict(row, hardware_variant="h100-sxm-96gb-hbm2e-500w", accelerator="h200"), CAT)


def test_the_h100_fold_predicts_each_row_on_its_own_hardware():
    # Leaving out h100-sxm leaves torchtitan its one H200 row; the six 500 W rows are still predicted on
    # the variant and the standard rows on the catalog part (the fold keys chips by name).
    dense = [_prepare(r, CAT) for r in load_modern()["training"] if not r["model"].get("experts")]
    rows = {r.id: r for r in logo_fold(dense, "accelerator", "h100-sxm", CAT.calibration)}
    assert len(rows) == 14
    # NeMo has no rows left either: it takes the median of the fitted stacks (megatron-core, torchtitan, maxtext)
    assert np.mean([abs(r.error_pct) for r in rows.values()]) == pytest.approx(8.23, abs=0.05)
    tt = [r.error_pct for i, r in rows.items() if i.startswith("tt-")]
    assert min(tt) > 0 and max(tt) < 27  # over-predicted from the H200 row alone: +0.3 % .. +26 %
