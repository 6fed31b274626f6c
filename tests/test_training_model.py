"""Training performance model: hand-computed values, grid rules, and the single-config estimate."""

import dataclasses
import json
import math

import numpy as np
import pytest

from models.perf.estimate import default_fabric, estimate_training
from models.loader import default_catalog
from models.presets import PRESETS
from models.schema import Calibration, ModelDims, PinnedParallelism
from models.perf.training import RECOMPUTE, SCALEUP_LATENCY_S, ConfigGrid, enumerate_grid, evaluate

CAT = default_catalog()
A100 = CAT.accelerators["a100-sxm-80gb"]
HDR = CAT.fabrics["ib-hdr-200g"]
TINY = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
SMALL = ModelDims(layers=4, hidden=1024, heads=16, vocab=32000, seq_len=1024)


def one(t=1, p=1, d=1, b=1, v=1, recompute="full", dist_opt=False, acc=0, fab=0, cp=1, shard=None) -> ConfigGrid:
    a = lambda x: np.asarray([x])  # noqa: E731
    shard = (1 if dist_opt else 0) if shard is None else shard
    return ConfigGrid(acc=a(acc), fab=a(fab), t=a(t), p=a(p), d=a(d), b=a(b), v=a(v),
                      recompute=a(RECOMPUTE.index(recompute)), dist_opt=a(shard >= 1), cp=a(cp), shard=a(shard), gb=a(0))


def run(dims, grid, B, calib=None, accs=(A100,), fabs=(HDR,), precision="bf16", tokens=None, stack="megatron-2021"):
    """The SC'21 model unless `stack` says otherwise (these tests check its formulas)."""
    if (grid.gb == 0).all():
        grid = dataclasses.replace(grid, gb=np.full(len(grid), B))
    out = evaluate(dims, grid, list(accs), list(fabs), calib or CAT.calibration, precision, B, tokens, stack=stack)
    return {k: v[0] for k, v in out.items()} if len(grid) == 1 else out


# ------------------------------------------------------------------ FLOPs and parameters


@pytest.mark.parametrize("recompute", ["full", "none"])
def test_hw_flops_match_megatron_eq3_for_gpt3(recompute):
    dims = PRESETS["gpt3-175b"]
    B, s, l, h, V = 1536, 2048, 96, 12288, 51200
    r = run(dims, one(t=8, p=12, d=16, recompute=recompute), B)
    if recompute == "full":  # Narayanan et al. eq. 3
        expected = 96 * B * s * l * h**2 * (1 + s / (6 * h) + V / (16 * l * h))
    else:  # same paper, without recomputation
        expected = 72 * B * s * l * h**2 * (1 + s / (6 * h) + V / (12 * l * h))
    assert r["hw_flops_per_step"] == pytest.approx(expected, rel=1e-12)
    P = 96 * 12 * h**2 + V * h
    assert r["model_flops_per_step_full_attention"] == pytest.approx(B * s * (6 * P + 12 * l * h * s), rel=1e-12)
    # causal convention: a query attends to (s+1)/2 keys on average
    assert r["model_flops_per_step"] == pytest.approx(B * s * (6 * P + 12 * l * h * (s + 1) / 2), rel=1e-12)


def test_selective_recompute_flops_between_none_and_full():
    B = 64
    f = {rc: run(SMALL, one(d=8, recompute=rc), B)["hw_flops_per_step"] for rc in RECOMPUTE}
    s, h, l, V, P_layer = 1024, 1024, 4, 32000, 12 * 1024**2
    # GEMMs 3 passes, attention core 4 passes, logits 3 passes.
    assert f["selective"] == pytest.approx(B * s * (l * (3 * 2 * P_layer + 4 * 4 * s * h) + 6 * h * V), rel=1e-12)
    assert f["none"] < f["selective"] < f["full"]


def test_preset_parameter_counts():
    assert PRESETS["gpt3-175b"].params == 96 * 12 * 12288**2 + 51200 * 12288 == 174_575_321_088
    assert PRESETS["llama2-7b"].params == 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 2 * 32000 * 4096 == 6_738_149_376
    # GQA: K and V projections are 8 heads of 128.
    assert PRESETS["llama3-8b"].params == 32 * (2 * 4096**2 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + 2 * 128256 * 4096
    assert PRESETS["llama3-70b"].params == pytest.approx(70.55e9, rel=1e-3)
    assert PRESETS["llama3-405b"].params == pytest.approx(405.8e9, rel=2e-3)


# ------------------------------------------------------------------ memory


def test_memory_hand_worked_no_recompute():
    # t=2, p=2, d=4, b=2, B=32 -> m=4; distributed optimizer; untied embeddings; first stage.
    r = run(SMALL, one(t=2, p=2, d=4, b=2, recompute="none", dist_opt=True), 32)
    params_gpu = (2 * 12 * 1024 * 1024 + 32000 * 1024) / 2  # 2 layers + input embedding, over t=2
    assert params_gpu == 28_966_912
    states = params_gpu * (2 + 2 + 12 / 4)  # = 202_768_384
    per_layer = 1024 * 2 * 1024 * (34 + 5 * 16 * 1024 / 1024) / 2  # s*b*h*(34+5as/h)/t = 119_537_664
    acts = 2 * 2 * per_layer  # 2 layers per stage x min(m, p)=2 micro-batches in flight
    logits = 1024 * 2 * 32000 * 4 / 2  # fp32 logits over t
    assert r["memory_per_gpu_gb"] == pytest.approx((202_768_384 + 478_150_656 + 131_072_000) / 1e9, rel=1e-12)
    assert r["memory_per_gpu_gb"] == pytest.approx((states + acts + logits) / 1e9, rel=1e-12)
    assert r["fits_memory"]


def test_memory_full_recompute_no_distributed_optimizer_single_stage():
    # t=1, p=1 holds both embedding matrices (untied) and Adam's 16 bytes per parameter.
    r = run(SMALL, one(d=2, b=1, recompute="full"), 8)  # m = 4
    states = 16 * (4 * 12 * 1024**2 + 2 * 32000 * 1024)  # = 1_853_882_368
    inputs = 4 * 1 * (2 * 1024 * 1 * 1024)  # 4 layers x min(m=4, p=1) x 2sbh
    recompute_layer = 1024 * 1 * 1024 * (34 + 80)  # one layer's full activations during recompute
    logits = 1024 * 1 * 32000 * 4
    assert r["memory_per_gpu_gb"] == pytest.approx((states + inputs + recompute_layer + logits) / 1e9, rel=1e-12)


def test_memory_limit_uses_reserved_gb():
    dims = PRESETS["gpt3-175b"]
    r = run(dims, one(t=8, p=1, d=1), 8)  # 175B on 8 GPUs: ~350 GB of states each
    assert not r["fits_memory"] and r["memory_per_gpu_gb"] > 80


# ------------------------------------------------------------------ time


def test_single_gpu_step_time_is_pure_compute():
    calib = Calibration(gemm_efficiency_max=0.5, gemm_half_dim=0, elementwise_passes=0, attention_passes=0,
                        comm_efficiency=0.8, dp_overlap=0.5, memory_reserved_gb=0)
    r = run(TINY, one(recompute="none"), 4, calib)  # b=1, m=4
    lin_fwd = 2 * 128 * 12 * 256**2  # 2*b*s*P_layer = 201_326_592
    att_fwd = 4 * 128 * 128 * 256  # 16_777_216
    logit_fwd = 2 * 128 * 256 * 1000  # 65_536_000
    flops_mb = 2 * (3 * lin_fwd + 3 * att_fwd) + 3 * logit_fwd
    assert flops_mb == 1_505_230_848
    assert r["hw_flops_per_step"] == 4 * flops_mb
    assert r["step_time_s"] == pytest.approx(4 * 1_505_230_848 / (312e12 * 0.5), rel=1e-12)
    assert r["tflops_per_gpu_hw"] == pytest.approx(312 * 0.5, rel=1e-12)
    for k in ("bubble_s", "tp_comm_s", "pp_comm_s", "dp_comm_exposed_s"):
        assert r[k] == 0
    assert r["tokens_per_s"] == pytest.approx(4 * 128 / r["step_time_s"])
    assert math.isnan(r["time_to_train_days"])


def test_gemm_efficiency_and_memory_bound_time_by_hand():
    calib = Calibration(gemm_efficiency_max=0.8, gemm_half_dim=128, elementwise_passes=10, attention_passes=4,
                        comm_efficiency=0.8, dp_overlap=0.5, memory_reserved_gb=0)
    r = run(TINY, one(recompute="full"), 1, calib)  # one micro-batch
    eff_lin = 0.8 * 128 / (128 + 128)  # thinnest dim min(h/t=256, b*s=128)
    eff_att = 0.8 * 64 / (64 + 128)  # head_dim 64
    gemm = 2 * (4 * 201_326_592 / eff_lin + 4 * 16_777_216 / eff_att) + 3 * 65_536_000 / eff_lin
    membound = 2 * (10 * 128 * 256 * 2 + 4 * 4 * 128 * 128 * 2) * 4 / 3  # bytes, fwd recomputed
    assert r["compute_s"] == pytest.approx(gemm / 312e12 + membound / 2.0e12, rel=1e-12)


def test_tensor_parallel_all_reduce_time_by_hand():
    r = run(TINY, one(t=2, recompute="none"), 4)  # m=4, 2 layers, 4 all-reduces each
    ce = CAT.calibration.comm_efficiency
    ring = 2 * 1 / 2 * (128 * 256 * 2) / (300e9 * ce) + 2 * 1 * SCALEUP_LATENCY_S
    assert r["tp_comm_s"] == pytest.approx(4 * 2 * 4 * ring, rel=1e-12)


def test_tensor_parallel_beyond_the_node_uses_the_fabric():
    dims = PRESETS["llama2-7b"]
    h100, ndr = CAT.accelerators["h100-sxm"], CAT.fabrics["ib-ndr-400g"]
    tp8, tp16 = (run(dims, one(t=t), 16, accs=(h100,), fabs=(ndr,)) for t in (8, 16))
    # Per all-reduce bytes barely change with t, but 50 GB/s NICs replace 450 GB/s NVLink.
    assert tp16["tp_comm_s"] > 5 * tp8["tp_comm_s"]
    tpu = CAT.accelerators["tpu-v5p"]  # the ICI domain spans hosts: t=16 stays on scale-up links
    t16 = run(dims, one(t=16), 16, accs=(tpu,), fabs=(ndr,))
    t4 = run(dims, one(t=4), 16, accs=(tpu,), fabs=(ndr,))
    assert t16["tp_comm_s"] < 2 * t4["tp_comm_s"]


def test_bubble_grows_with_pipeline_depth_and_interleaving_shrinks_it():
    dims = PRESETS["gpt3-175b"]
    B = 512
    fr = []
    for p in (1, 2, 4, 8, 16):
        r = run(dims, one(t=8, p=p, d=4), B)
        fr.append(r["bubble_s"] / r["step_time_s"])
    assert fr[0] == 0 and all(a < b for a, b in zip(fr, fr[1:]))
    v1, v2 = (run(dims, one(t=8, p=8, d=4, v=v), B) for v in (1, 2))
    assert v2["bubble_s"] == pytest.approx(v1["bubble_s"] / 2, rel=1e-12)
    assert v2["pp_comm_s"] > v1["pp_comm_s"]


def test_step_time_is_the_sum_of_the_breakdown():
    dims = PRESETS["llama3-8b"]
    grid = enumerate_grid(dims, 256, [A100], [HDR])
    out = run(dims, grid, 256, stack="megatron-core")
    parts = sum(out[k] for k in ("compute_s", "bubble_s", "tp_comm_s", "cp_comm_s", "pp_comm_s", "dp_comm_exposed_s",
                                 "optimizer_s"))
    np.testing.assert_allclose(out["step_time_s"], parts, rtol=1e-12)
    np.testing.assert_array_equal(out["n_acc"], grid.t * grid.p * grid.d * grid.cp)
    np.testing.assert_array_equal(out["nodes"], -(-out["n_acc"] // 8))
    np.testing.assert_allclose(out["mfu"], out["tflops_per_gpu_model"] / 312, rtol=1e-12)


def test_distributed_optimizer_saves_memory_not_time():
    dims = PRESETS["gpt3-175b"]
    a, b = (run(dims, one(t=8, p=8, d=16, dist_opt=x), 1536) for x in (False, True))
    assert b["memory_per_gpu_gb"] < a["memory_per_gpu_gb"]
    assert b["step_time_s"] == a["step_time_s"]


# ------------------------------------------------------------------ grid


def _brute_force(dims, B):
    rows = set()
    for t in (1, 2, 4, 8, 16, 32, 64):
        for p in range(1, 65):
            for v in (1, 2, 4):
                for b in (1, 2, 4, 8):
                    for d in range(1, B + 1):
                        for rc in range(3):
                            if dims.heads % t or t > dims.heads or dims.layers % p or B % (b * d):
                                continue
                            m = B // (b * d)
                            if v > 1 and (p == 1 or dims.layers % (p * v) or m % p):
                                continue
                            rows.add((t, p, d, b, v, rc))
    return rows


def test_grid_is_exactly_the_valid_layouts():
    dims = ModelDims(layers=12, hidden=768, heads=12, vocab=50257, seq_len=1024)
    accs = [A100, CAT.accelerators["h100-sxm"]]
    fabs = [HDR, CAT.fabrics["eth-100g"]]
    g = enumerate_grid(dims, 24, accs, fabs, stack="megatron-2021")
    assert g.dist_opt.all()
    per_pair = _brute_force(dims, 24)
    got = list(zip(g.acc, g.fab, g.t, g.p, g.d, g.b, g.v, g.recompute))
    assert len(got) == len(set(got)) == 4 * len(per_pair)
    assert {r[2:] for r in got} == {(t, p, d, b, v, rc) for (t, p, d, b, v, rc) in per_pair}
    assert {(a, f) for a, f, *_ in got} == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_fp8_excludes_accelerators_without_fp8():
    names = list(CAT.accelerators)
    accs, fabs = list(CAT.accelerators.values()), list(CAT.fabrics.values())
    g = enumerate_grid(TINY, 8, accs, fabs, precision="fp8")
    kept = {names[i] for i in np.unique(g.acc)}
    assert kept == {n for n, a in CAT.accelerators.items() if a.peak_fp8_tflops is not None}
    assert "a100-sxm-80gb" not in kept and "tpu-v5p" not in kept and "h100-sxm" in kept
    with pytest.raises(ValueError, match="fp8"):
        evaluate(TINY, one(), [A100], [HDR], CAT.calibration, "fp8", 1)
    h100 = CAT.accelerators["h100-sxm"]
    bf16, fp8 = (run(TINY, one(), 1, accs=(h100,), precision=x) for x in ("bf16", "fp8"))
    assert fp8["compute_s"] < bf16["compute_s"]


def test_pinned_fields_filter_the_grid():
    dims = PRESETS["gpt3-175b"]
    pin = PinnedParallelism(tp=4, pp=8, micro_batch=2, vp=2, recompute="selective", distributed_optimizer=False)
    g = enumerate_grid(dims, 1536, [A100], [HDR], pinned=pin, stack="megatron-2021")
    assert len(g) > 0
    assert (g.t == 4).all() and (g.p == 8).all() and (g.b == 2).all() and (g.v == 2).all()
    assert (g.recompute == RECOMPUTE.index("selective")).all() and not g.dist_opt.any()
    assert ((1536 // (g.b * g.d)) % 8 == 0).all()  # interleaving: m multiple of p
    g = enumerate_grid(dims, 1536, [A100], [HDR], pinned=PinnedParallelism(tp=8, pp=12, dp=16), stack="megatron-2021")
    assert len(g) == 3 * 4 * 3  # v in {1,2,4} (all valid: 96 layers, m = 96/b) x b x recompute
    assert len(enumerate_grid(dims, 1536, [A100], [HDR], pinned=PinnedParallelism(tp=5))) == 0
    # A pinned value may exceed the search caps when it is valid.
    g = enumerate_grid(PRESETS["llama3-405b"], 1024, [A100], [HDR], pinned=PinnedParallelism(tp=128, pp=63))
    assert len(g) > 0 and (g.t == 128).all()


def test_take_subsets_rows():
    g = enumerate_grid(TINY, 8, [A100], [HDR])
    sub = g.take(np.arange(3))
    assert len(sub) == 3 and (sub.t == g.t[:3]).all()


# ------------------------------------------------------------------ estimate


def test_estimate_echoes_choices_and_is_json():
    r = estimate_training(PRESETS["gpt3-175b"], CAT, "a100-sxm-80gb", None, 1024, global_batch=1536, tokens=300e9)
    json.dumps(r)
    assert r["fabric"] == "ib-hdr-200g"
    assert r["tp"] * r["pp"] * r["dp"] == 1024 and r["fits_memory"]
    assert r["recompute"] in RECOMPUTE and r["micro_batch"] in (1, 2, 4, 8) and r["vp"] in (1, 2, 4)
    assert r["time_to_train_failure_free_days"] == pytest.approx(300e9 / r["tokens_per_s"] / 86400)
    assert r["time_to_train_days"] == pytest.approx(r["time_to_train_failure_free_days"] / r["goodput"])
    assert set(r["breakdown"]) == {"compute_s", "bubble_s", "tp_comm_s", "cp_comm_s", "pp_comm_s", "dp_comm_exposed_s",
                                   "optimizer_s"}
    assert r["flops_convention"] == "causal" and r["stack"] == "megatron-core"
    assert r["tokens_per_s_per_gpu"] == pytest.approx(r["tokens_per_s"] / 1024)
    pinned = estimate_training(PRESETS["gpt3-175b"], CAT, "a100-sxm-80gb", None, 1024, tp=8, pp=8, global_batch=1536,
                               micro_batch=1, recompute="full", distributed_optimizer=False)
    assert (pinned["tp"], pinned["pp"], pinned["dp"], pinned["recompute"]) == (8, 8, 16, "full")
    assert "time_to_train_days" not in pinned
    assert r["step_time_s"] <= pinned["step_time_s"]  # the chosen layout is at least as fast


def test_default_fabrics():
    expect = {"h100-sxm": "ib-ndr-400g", "h200": "ib-ndr-400g", "b200": "ib-ndr-400g", "a100-sxm-40gb": "ib-hdr-200g",
              "v100-sxm2": "ib-hdr-200g", "mi300x": "roce-400g", "gaudi3": "roce-400g", "l40s": "eth-100g",
              "tpu-v4": "eth-100g", "tpu-v5p": "eth-100g"}
    for acc, fab in expect.items():
        assert default_fabric(acc, CAT) == fab
    assert default_fabric("my-new-chip", CAT) == "ib-xdr-800g"  # unknown: the fastest port


def test_more_gpus_train_faster():
    days = [estimate_training(PRESETS["gpt3-175b"], CAT, "h100-sxm", None, g, tp=8, pp=8, global_batch=1536,
                              tokens=300e9)["time_to_train_days"] for g in (256, 512, 1024)]
    assert days[0] > days[1] > days[2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(accelerator="a200"), "unknown accelerator 'a200' (available: a100-sxm-40gb, a100-sxm-80gb"),
        (dict(fabric="ib-foo"), "unknown fabric 'ib-foo' (available: efa-v3, eth-100g"),
        (dict(gpus=1000, tp=8, pp=8), "gpus=1000 is not divisible by tp*pp=64"),
        (dict(tp=128), "tp=128 must be between 1 and the model's 96 attention heads"),
        (dict(tp=5), "tp=5 does not divide the model's 96 attention heads"),
        (dict(pp=5, stack="megatron-2021"), "pp=5 does not divide the model's 96 layers (this stack has no uneven"),
        (dict(pp=97), "pp=97 must be between 1 and the model's 96 layers"),
        (dict(cp=2, stack="megatron-2021"), "cp=2: this stack has no context parallelism"),
        (dict(cp=3), "cp=3: seq_len 2048 must be divisible by 2*cp = 6"),
        (dict(precision="nvfp4", accelerator="h100-sxm"), "no block-scaled FP8/FP4 units"),
        (dict(sharding="zero2"), "sharding 'zero2' is not offered by this stack"),
        (dict(fsdp=True, sharding="zero1"), "--fsdp means sharding zero3"),
        (dict(tp=8, pp=8, vp=5), "vp=5 does not divide the 12 layers of a full pipeline stage"),
        (dict(stack="jax"), "unknown stack 'jax'"),
        (dict(tp=8, pp=8, global_batch=1000), "global batch 1000 is not divisible by micro_batch*dp = 1*16 = 16"),
        (dict(tp=8, pp=8, micro_batch=4, global_batch=32), "micro_batch*dp = 4*16 = 64"),
        (dict(precision="fp8"), "accelerator 'a100-sxm-80gb' has no FP8 support"),
        (dict(tp=8, pp=1, vp=2), "vp=2 (interleaving) needs pipeline parallelism"),
        (dict(recompute="some"), "unknown recompute 'some'"),
        (dict(global_batch=7, micro_batch=2), "no valid layout of 1024 GPUs for global batch 7"),
    ],
)
def test_estimate_errors(kwargs, message):
    args = dict(accelerator="a100-sxm-80gb", fabric=None, gpus=1024, global_batch=1536)
    args.update(kwargs)
    with pytest.raises(ValueError) as exc:
        estimate_training(PRESETS["gpt3-175b"], CAT, **args)
    assert message in str(exc.value)


def test_estimate_reports_when_nothing_fits():
    r = estimate_training(PRESETS["gpt3-175b"], CAT, "a100-sxm-80gb", None, 8, global_batch=8)
    assert not r["fits_memory"] and "note" in r


def test_max_accelerators_and_empty_grid():
    g = enumerate_grid(PRESETS["gpt3-175b"], 1536, [A100], [HDR], max_accelerators=512)
    assert len(g) > 0 and (g.t * g.p * g.d <= 512).all()
    empty = enumerate_grid(PRESETS["gpt3-175b"], 1536, [A100], [HDR], pinned=PinnedParallelism(tp=5))
    out = evaluate(PRESETS["gpt3-175b"], empty, [A100], [HDR], CAT.calibration, "bf16", 1536)
    assert all(len(v) == 0 for v in out.values())
