"""Issue-13 terms of the training model, checked against hand arithmetic on a toy accelerator:
fused causal attention, uneven pipeline stages, context-parallel exchange, ZeRO/FSDP traffic and
memory, batch ranges, measured GEMM ceilings, oversubscribed fabrics."""

import numpy as np
import pytest

from models.dims import ModelDims
from models.loader import default_catalog
from models.perf.stacks import StackProfile, get_stack
from models.perf.training import (
    RECOMPUTE, SCALEUP_LATENCY_S, ConfigGrid, enumerate_grid, evaluate, evaluate_layout, gemm_ceiling_tflops,
    op_sac_recomputed_linear_share, op_sac_saved_bytes_per_token, power_clock_factor, stage_layers, tile_efficiency,
)
from models.schema import Accelerator, Calibration, PinnedParallelism

CAT = default_catalog()
NDR = CAT.fabrics["ib-ndr-400g"]
TOY = Accelerator(peak_bf16_tflops=100, peak_fp8_tflops=200, hbm_gb=1000, hbm_bw_tbs=1, scaleup_domain=8,
                  scaleup_bw_gbs=100, accelerators_per_node=8, node_power_kw=10, node_price_usd=1, node_rack_units=1)
IDEAL = Calibration(gemm_efficiency_max=1.0, gemm_half_dim=0.0, elementwise_passes=0.0, attention_passes=0.0,
                    comm_efficiency=1.0, dp_overlap=0.0, memory_reserved_gb=0.0)
# A fused, causal-skipping stack whose only costs are the ones each test looks at.
FUSED = StackProfile(fused_attention=True, causal_skip=True, tp_exposed=0.0, pp_exposed=0.0, dp_exposed=1.0,
                     sharding=["none", "zero1", "zero2", "zero3"], context_parallel=True, uneven_stages=True,
                     gemm_efficiency=1.0, attention_efficiency=0.5, elementwise_passes=10.0,
                     overlap_limited_by_compute=False, optimizer_step=False)
PEAK = 100e12


def grid(t=1, p=1, d=1, b=1, v=1, cp=1, shard=0, rc="none", gb=1):
    a = lambda x: np.asarray([x])  # noqa: E731
    return ConfigGrid(acc=a(0), fab=a(0), t=a(t), p=a(p), d=a(d), b=a(b), v=a(v), recompute=a(RECOMPUTE.index(rc)),
                      dist_opt=a(shard >= 1), cp=a(cp), shard=a(shard), gb=a(gb))


def run(dims, g, stack=FUSED, precision="bf16", acc=TOY, fab=NDR):
    out = evaluate(dims, g, [acc], [fab], IDEAL, precision, None, stack=stack)
    return {k: float(np.atleast_1d(v)[0]) for k, v in out.items()}


def test_fused_causal_attention_flops_bytes_and_memory():
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    r = run(dims, grid())
    keys = (128 + 1) / 2  # causal: query i sees i keys, mean (s+1)/2
    lin = 2 * 128 * 12 * 256**2  # 201_326_592
    att = 4 * 128 * keys * 256  # QK^T + AV over the attended keys = 8_454_144
    logit = 2 * 128 * 256 * 1000
    assert att == 8_454_144
    assert r["hw_flops_per_step"] == pytest.approx(2 * (3 * lin + 3 * att) + 3 * logit, rel=1e-12)
    # GEMMs at the peak, flash attention at half of it, 10 HBM passes over s*h bf16 per layer, no s^2 traffic.
    elem_bytes = 10 * 128 * 256 * 2
    expect = 2 * (3 * lin / PEAK + 3 * att / (0.5 * PEAK) + elem_bytes / 1e12) + 3 * logit / PEAK
    assert r["compute_s"] == pytest.approx(expect, rel=1e-12)
    assert r["step_time_s"] == pytest.approx(expect, rel=1e-12)
    # Memory: 16 B/param (both embeddings on one stage), 34*s*b*h per layer (no 5as^2 term), fp32 logits.
    params = 2 * 12 * 256**2 + 2 * 1000 * 256
    acts = 2 * 34 * 128 * 256
    assert r["memory_per_gpu_gb"] == pytest.approx((16 * params + acts + 128 * 1000 * 4) / 1e9, rel=1e-12)
    # The 2021 (unfused) stack pays the s x s work in full and its 5as/h activation term.
    old = run(dims, grid(), stack=get_stack("megatron-2021"))
    assert old["hw_flops_per_step"] == pytest.approx(2 * (3 * lin + 3 * 4 * 128 * 128 * 256) + 3 * logit, rel=1e-12)
    acts_old = 2 * 128 * 256 * (34 + 5 * 4 * 128 / 256)
    assert old["memory_per_gpu_gb"] == pytest.approx((16 * params + acts_old + 128 * 1000 * 4) / 1e9, rel=1e-12)


def test_matrix_unit_tile_efficiency_by_hand():
    # A dimension d on a U-wide systolic unit fills d / (U ceil(d/U)) of its padded tile.
    assert tile_efficiency(128, 256) == 0.5
    assert tile_efficiency(320, 256) == 0.625
    assert tile_efficiency(192, 128) == 0.75 and tile_efficiency(256, 256) == 1.0 and tile_efficiency(128, 128) == 1.0
    assert tile_efficiency(64, None) == 1.0 and tile_efficiency(64, 0) == 1.0
    # head_dim 128 on a 256-wide unit: attention (QK^T, AV and their backward GEMMs) at half rate;
    # every linear width (h 256, Q/K/V/O 256, ffn 1024) fills its tiles; the 1000-wide logits 1000/1024.
    dims = ModelDims(layers=2, hidden=256, heads=2, vocab=1000, seq_len=128)
    wide = TOY.model_copy(update={"matrix_unit_dim": 256})
    r = run(dims, grid(), acc=wide)
    lin, att, logit = 2 * 128 * 12 * 256**2, 4 * 128 * 64.5 * 256, 2 * 128 * 256 * 1000
    elem_s = 10 * 128 * 256 * 2 / 1e12
    expect = 2 * (3 * lin / PEAK + 3 * att / (0.5 * 0.5 * PEAK) + elem_s) + 3 * logit / (PEAK * 1000 / 1024)
    assert r["compute_s"] == pytest.approx(expect, rel=1e-12)
    # Without a unit width (GPUs) nothing is lost.
    plain = run(dims, grid())
    assert plain["compute_s"] == pytest.approx(2 * (3 * lin / PEAK + 3 * att / (0.5 * PEAK) + elem_s) + 3 * logit / PEAK,
                                               rel=1e-12)


def test_op_level_selective_recompute_by_hand():
    # torchtitan's selective AC ('op'): every second linear matmul and every elementwise op run again in
    # the backward, attention is saved; Megatron's selective redoes the attention core only.
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    lin, att, logit = 2 * 128 * 12 * 256**2, 4 * 128 * 64.5 * 256, 2 * 128 * 256 * 1000
    elem_s = 10 * 128 * 256 * 2 / 1e12  # 10 passes over s*h bf16 at 1 TB/s, fwd+bwd
    ops = run(dims, grid(rc="selective"), stack=FUSED.model_copy(update={"selective_recompute": "ops",
                                                                         "layer_overhead_us": 30.0}))
    assert ops["hw_flops_per_step"] == pytest.approx(2 * (3.5 * lin + 3 * att) + 3 * logit, rel=1e-12)
    expect = 2 * (3.5 * lin / PEAK + 3 * att / (0.5 * PEAK) + elem_s * 4 / 3 + 30e-6 * 4 / 3) + 3 * logit / PEAK
    assert ops["step_time_s"] == pytest.approx(expect, rel=1e-12)
    meg = run(dims, grid(rc="selective"))
    assert meg["hw_flops_per_step"] == pytest.approx(2 * (3 * lin + 4 * att) + 3 * logit, rel=1e-12)
    assert meg["step_time_s"] == pytest.approx(2 * (3 * lin / PEAK + 4 * att / (0.5 * PEAK) + elem_s) + 3 * logit / PEAK,
                                               rel=1e-12)
    assert get_stack("torchtitan").selective_recompute == "ops" and get_stack("megatron-core").selective_recompute == "attention"


def test_op_level_selective_recompute_memory_by_hand():
    # Llama 3.1 8B under torchtitan's op policy, per token and layer: block input (h), the 1st/3rd/5th/7th
    # matmul outputs of q, k, v, o, w1, w3, w2 (q 4096, v 1024, w1 14336, w2 4096), the flash-attention
    # output (4096) in bf16, and its fp32 log-sum-exp per head (32 x 4 B).
    l8b = ModelDims(layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, gated_mlp=True, vocab=128256,
                    seq_len=8192)
    assert float(op_sac_saved_bytes_per_token(l8b, 1)) == 2 * (4096 + 4096 + 1024 + 14336 + 4096 + 4096) + 128 == 63616
    # t=2: column-parallel outputs halve (q 2048, v 512, w1 7168), the row-parallel w2 output keeps every
    # token of the gathered sequence (4096) and the two reduce-scatter outputs (2 x 2048) are saved too.
    assert float(op_sac_saved_bytes_per_token(l8b, 2)) == 2 * (2048 + 512 + 7168 + 4096 + 2048 + 2048 + 4096) + 64 == 44096
    # The backward reruns the 2nd, 4th, 6th matmuls: k, o, w3 = (4096 x 1024 + 4096^2 + 4096 x 14336) of
    # the layer's 218,103,808 weights, 36.5 % of its linear work (the toy block below: k, o, fc2 = 50 %).
    assert op_sac_recomputed_linear_share(l8b) == pytest.approx((4096 * 1024 + 4096**2 + 4096 * 14336) / 218_103_808,
                                                                rel=1e-12)
    assert op_sac_recomputed_linear_share(ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)) == 0.5
    # Toy layer (MHA, plain MLP: q, k, v, o, fc1, fc2): saved q, v, fc1 + input + attention out = 2 x 2048 + 16 B;
    # one layer's full activations (34 s h) come back while its backward runs.
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    ops = run(dims, grid(rc="selective"), stack=FUSED.model_copy(update={"selective_recompute": "ops"}))
    params = 2 * 12 * 256**2 + 2 * 1000 * 256
    acts = 2 * 128 * 4112 + 34 * 128 * 256
    assert ops["memory_per_gpu_gb"] == pytest.approx((16 * params + acts + 128 * 1000 * 4) / 1e9, rel=1e-12)
    meg = run(dims, grid(rc="selective"))  # Megatron's selective: 34 s h per layer
    assert meg["memory_per_gpu_gb"] == pytest.approx((16 * params + 2 * 34 * 128 * 256 + 128 * 1000 * 4) / 1e9, rel=1e-12)


def test_gradient_reduction_hides_under_the_last_backward_and_the_gather_under_the_first_forward():
    # Two GPUs in one scale-up domain (100 GB/s, 2 us per step), one micro-batch, nothing hidden by the
    # stack's fraction (0): each collective is exposed by what its own window leaves. Ring over 2 peers
    # of the 2 x 2,084,864 bf16 bytes of the model: 0.5 x 4,169,728 / 1e11 + 2e-6 = 22.85 us.
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    one = 0.5 * 2 * (2 * 12 * 256**2 + 2 * 1000 * 256) / 100e9 + 2e-6
    assert one == pytest.approx(22.848_64e-6, rel=1e-12)
    st = FUSED.model_copy(update={"dp_exposed": 0.0, "overlap_limited_by_compute": True})
    z1 = run(dims, grid(d=2, shard=1, gb=2), stack=st)
    # One micro-batch on the one stage: its layers, then the output layer and loss (3 x 65.536 MFLOP at
    # the 100 TFLOP/s peak = 1.966 us), which hide neither collective: no gradient exists before the
    # loss's backward has gone through the output layer, and every parameter is gathered before it.
    logits = 3 * 2 * 128 * 256 * 1000 / PEAK
    layers = z1["compute_s"] - logits  # their forward is a third of it
    assert layers < one  # both collectives outlast their windows
    # ZeRO-1: reduce-scatter under the layers' backward (2/3), parameter gather under their forward (1/3).
    assert z1["dp_comm_exposed_s"] == pytest.approx((one - 2 / 3 * layers) + (one - layers / 3), rel=1e-12)
    # No sharding: the whole all-reduce has only the backward to hide under.
    z0 = run(dims, grid(d=2, shard=0, gb=2), stack=st)
    assert z0["dp_comm_exposed_s"] == pytest.approx(2 * one - 2 / 3 * (z0["compute_s"] - logits), rel=1e-12)


def test_data_parallel_windows_are_the_first_stage_layers():
    # Two stages of one layer each, two replicas (4 GPUs in one domain, 100 GB/s, 2 us per step): the first
    # stage finishes its backward last, so its one layer is the window, not the last stage with the logits.
    # A stage holds 786,432 layer weights + the 256,000 of its embedding or output head: bf16 ring over 2
    # peers 0.5 x 2 x 1,042,432 / 1e11 + 2e-6 = 12.42 us each way.
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    one = 0.5 * 2 * (12 * 256**2 + 1000 * 256) / 100e9 + 2e-6
    assert one == pytest.approx(12.424_32e-6, rel=1e-12)
    keys = (128 + 1) / 2
    layer = 3 * 2 * 128 * 12 * 256**2 / PEAK + 3 * 4 * 128 * keys * 256 / (0.5 * PEAK) + 10 * 128 * 256 * 2 / 1e12
    assert layer == pytest.approx(7.202_406_4e-6, rel=1e-12)  # 6.040 us of GEMMs, 0.507 attention, 0.655 elementwise
    st = FUSED.model_copy(update={"dp_exposed": 0.0, "overlap_limited_by_compute": True})
    r = run(dims, grid(p=2, d=2, shard=1, gb=2), stack=st)
    assert r["dp_comm_exposed_s"] == pytest.approx((one - 2 / 3 * layer) + (one - layer / 3), rel=1e-12)
    assert r["dp_comm_exposed_s"] == pytest.approx(17.646_233_6e-6, rel=1e-9)  # 2 x 12.424 - 7.202 us


def test_model_flops_conventions():
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    r = run(dims, grid(gb=4, d=1, b=1))
    dense = 6 * (2 * 12 * 256**2 + 256 * 1000)
    assert r["model_flops_per_step"] == pytest.approx(4 * 128 * (dense + 12 * 2 * 256 * 64.5), rel=1e-12)
    assert r["model_flops_per_step_full_attention"] == pytest.approx(4 * 128 * (dense + 12 * 2 * 256 * 128), rel=1e-12)


def test_stage_split_of_published_layouts():
    assert tuple(int(x) for x in stage_layers(126, 16)) == (8, 7, 7)  # Llama 3 405B: 7 + 14 x 8 + 7
    assert tuple(int(x) for x in stage_layers(70, 12)) == (6, 5, 5)
    assert tuple(int(x) for x in stage_layers(96, 8)) == (12, 12, 12)


def test_uneven_stage_time_by_hand():
    # 10 layers on 4 stages: 2, 3, 3, 2 (+ logits on the last). m = 8 micro-batches, no interleaving.
    dims = ModelDims(layers=10, hidden=256, heads=4, vocab=1000, seq_len=128)
    r = run(dims, grid(p=4, gb=8))
    lin, att, logit = 2 * 128 * 12 * 256**2, 4 * 128 * 64.5 * 256, 2 * 128 * 256 * 1000
    T = 3 * lin / PEAK + 3 * att / (0.5 * PEAK) + 10 * 128 * 256 * 2 / 1e12
    T_logit = 3 * logit / PEAK
    assert 2 * T + T_logit < 3 * T  # the full middle stage is the slowest
    assert r["step_time_s"] == pytest.approx((8 + 3) * 3 * T, rel=1e-12)
    assert r["bubble_s"] == pytest.approx(3 * 3 * T, rel=1e-12)
    # A large vocabulary makes the last stage (2 layers + logits) the slowest instead.
    big = dims.model_copy(update={"vocab": 100_000})
    r = run(big, grid(p=4, gb=8))
    T_logit = 3 * 2 * 128 * 256 * 100_000 / PEAK
    assert r["step_time_s"] == pytest.approx((8 + 3) * (2 * T + T_logit), rel=1e-12)


def test_context_parallel_exchange_by_hand():
    # cp = 2: each rank keeps 512 of 1024 tokens and passes its K,V block (2 kv heads x 64) once around
    # the ring fwd; bwd passes K,V and dK,dV: 3 transfers per layer, on the scale-up links (100 GB/s).
    dims = ModelDims(layers=2, hidden=256, heads=4, kv_heads=2, vocab=1000, seq_len=1024)
    no_hide = FUSED.model_copy(update={"overlap_limited_by_compute": False})
    r = run(dims, grid(cp=2), stack=no_hide)
    kv_bytes = 512 * 2 * 2 * 64 * 2
    assert kv_bytes == 262_144
    per_layer = 3 * 1 * (kv_bytes / 100e9 + SCALEUP_LATENCY_S)
    assert r["cp_comm_s"] == pytest.approx(2 * per_layer, rel=1e-12)
    # With overlap, the exchange hides under the attention blocks it feeds (here entirely).
    hidden = run(dims, grid(cp=2), stack=FUSED.model_copy(update={"overlap_limited_by_compute": True}))
    att_s = 3 * 4 * 512 * dims.mean_attended_keys * 256 / (0.5 * PEAK)
    assert att_s > per_layer and hidden["cp_comm_s"] == 0
    # Activations are split over cp: half the tokens per rank.
    one_rank = run(dims, grid(cp=1), stack=no_hide)
    assert r["memory_per_gpu_gb"] < one_rank["memory_per_gpu_gb"]


def test_fsdp_and_zero_traffic_and_memory_by_hand():
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    params = 2 * 12 * 256**2 + 2 * 1000 * 256  # single stage, untied
    ring = 3 / 4 * 2 * params / 100e9 + 3 * SCALEUP_LATENCY_S  # one reduce-scatter or all-gather of bf16 over 4
    z3 = run(dims, grid(d=4, gb=8, shard=3))  # m = 2 micro-batches per rank
    assert z3["dp_comm_exposed_s"] == pytest.approx(ring + 2 * 2 * ring, rel=1e-12)  # RS once, AG fwd+bwd each
    z1 = run(dims, grid(d=4, gb=8, shard=1))
    assert z1["dp_comm_exposed_s"] == pytest.approx(2 * ring, rel=1e-12)  # RS + AG
    z0 = run(dims, grid(d=4, gb=8, shard=0))
    assert z0["dp_comm_exposed_s"] == pytest.approx(2 * ring, rel=1e-12)  # all-reduce: the same bytes
    # FP8 recipes gather weights already cast: 1 byte instead of 2.
    ring8 = 3 / 4 * params / 100e9 + 3 * SCALEUP_LATENCY_S
    z3_fp8 = run(dims, grid(d=4, gb=8, shard=3), precision="fp8")
    assert z3_fp8["dp_comm_exposed_s"] == pytest.approx(ring + 4 * ring8, rel=1e-12)
    # Memory: 16 B/param unsharded; ZeRO-1 4 + 12/k; ZeRO-2 2 + 14/k; ZeRO-3 16/k plus two gathered layers.
    rest = z0["memory_per_gpu_gb"] * 1e9 - 16 * params
    mem = {s: run(dims, grid(d=4, gb=8, shard=s))["memory_per_gpu_gb"] * 1e9 - rest for s in range(4)}
    assert mem[1] == pytest.approx(params * (4 + 12 / 4), rel=1e-9)
    assert mem[2] == pytest.approx(params * (2 + 14 / 4), rel=1e-9)
    assert mem[3] == pytest.approx(params * 16 / 4 + 2 * 2 * 12 * 256**2, rel=1e-9)


def test_overlap_hides_fsdp_under_compute_but_not_beyond():
    dims = ModelDims(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    st = FUSED.model_copy(update={"overlap_limited_by_compute": True, "dp_exposed": 0.1})
    r = run(dims, grid(d=4, gb=8, shard=3), stack=st)
    params = 2 * 12 * 256**2 + 2 * 1000 * 256
    traffic = 5 * (3 / 4 * 2 * params / 100e9 + 3 * SCALEUP_LATENCY_S)
    compute = r["compute_s"]
    assert r["dp_comm_exposed_s"] == pytest.approx(max(0.1 * traffic, traffic - compute), rel=1e-12)


def test_oversubscribed_fabric_slows_collectives_that_cross_it():
    dims = ModelDims(layers=2, hidden=8192, heads=64, vocab=32000, seq_len=1024)
    a100 = CAT.accelerators["a100-sxm-80gb"]
    hdr = CAT.fabrics["ib-hdr-200g"]
    blocked = hdr.model_copy(update={"oversubscription": 4.0})
    g = grid(d=512, gb=512)  # 64 nodes: more endpoints than one leaf's down-ports
    flat, over = (run(dims, g, acc=a100, fab=f)["dp_comm_exposed_s"] for f in (hdr, blocked))
    assert over > 3.5 * flat
    small = grid(d=8, gb=8)  # one node: never leaves the scale-up domain
    assert run(dims, small, acc=a100, fab=blocked)["dp_comm_exposed_s"] == run(dims, small, acc=a100, fab=hdr)[
        "dp_comm_exposed_s"]


def test_global_batch_range_takes_the_largest_batch_the_layout_divides():
    dims = ModelDims(layers=4, hidden=256, heads=4, vocab=1000, seq_len=128)
    for dp, want in ((64, 1088), (3, 1098), (1000, 1000)):
        g = enumerate_grid(dims, {"min": 1000, "max": 1100}, [TOY], [NDR],
                           pinned=PinnedParallelism(tp=1, pp=1, dp=dp, micro_batch=1, cp=1), stack="megatron-core")
        assert set(g.gb.tolist()) == {want}
    g = enumerate_grid(dims, {"min": 1000, "max": 1100}, [TOY], [NDR],
                       pinned=PinnedParallelism(tp=1, pp=1, dp=128, micro_batch=1, cp=1))
    assert set(g.gb.tolist()) == {1024}
    g = enumerate_grid(dims, {"min": 1025, "max": 1100}, [TOY], [NDR],
                       pinned=PinnedParallelism(tp=1, pp=1, dp=128, micro_batch=1, cp=1))
    assert len(g) == 0  # no multiple of 128 in [1025, 1100]


def test_evaluate_layout_accepts_old_dicts():
    dims = ModelDims(layers=4, hidden=256, heads=4, vocab=1000, seq_len=1024)
    old = {"tp": 1, "pp": 2, "dp": 2, "micro_batch": 1, "vp": 1, "recompute": "none", "distributed_optimizer": True}
    new = dict(old, cp=1, sharding="zero1", global_batch=8, stack="megatron-core")
    a = evaluate_layout(dims, old, TOY, NDR, IDEAL, "bf16", 8)
    b = evaluate_layout(dims, new, TOY, NDR, IDEAL, "bf16", {"min": 1, "max": 100})
    a.pop("time_to_train_days"), b.pop("time_to_train_days")  # nan without tokens
    assert a == b


def test_gemm_ceilings_come_from_each_accelerators_measurements():
    acc = CAT.accelerators
    assert gemm_ceiling_tflops(acc["gb200"], "nvfp4", CAT.calibration) == 7627.6  # measured
    assert gemm_ceiling_tflops(acc["gb200"], "mxfp8", CAT.calibration) == 3615.6  # the fp8 figure
    b200_ratio = np.mean([1745.0 / 2250, 3432.5 / 4500])  # no FP4 measurement: its own measured ratio
    assert gemm_ceiling_tflops(acc["b200"], "nvfp4", CAT.calibration) == pytest.approx(9000 * b200_ratio, rel=1e-12)
    a100 = gemm_ceiling_tflops(acc["a100-sxm-80gb"], "bf16", CAT.calibration)  # nothing measured: the 2021 fit
    assert a100 == pytest.approx(312 * CAT.calibration.gemm_efficiency_max, rel=1e-12)
    with pytest.raises(ValueError, match="nvfp4"):
        gemm_ceiling_tflops(acc["h100-sxm"], "nvfp4", CAT.calibration)


def test_a_part_without_measurement_takes_its_measured_siblings_ceilings_scaled_by_power():
    acc, cal = CAT.accelerators, CAT.calibration
    # the power law, checked on the one die measured at two board powers (B200 1000 W, GB200 1200 W)
    assert power_clock_factor(1200, 1000) == pytest.approx(1.0627, abs=1e-4)
    assert 1822.0 / 1745.0 == pytest.approx(power_clock_factor(1200, 1000), abs=0.02)
    assert 3615.6 / 3432.5 == pytest.approx(power_clock_factor(1200, 1000), abs=0.02)
    # (part, sibling, its power, sibling's power): same dense BF16/FP8 datasheet rates
    for name, base, p, pb in (("gb300", "gb200", 1400, 1200), ("b300", "b200", 1100, 1000), ("h800", "h100-sxm", 700, 700)):
        a, b = acc[name], acc[base]
        assert not a.gemm_tflops_measured and a.gemm_efficiency_fitted is None
        for prec in ("bf16", "fp8"):
            assert getattr(a, f"peak_{prec}_tflops") == getattr(b, f"peak_{prec}_tflops")
            want = b.gemm_tflops_measured[prec] * power_clock_factor(p, pb)
            assert gemm_ceiling_tflops(a, prec, cal) == pytest.approx(want, abs=0.06)
        assert gemm_ceiling_tflops(a, "mxfp8", cal) == gemm_ceiling_tflops(a, "fp8", cal)
    # a precision whose datasheet rate differs from the sibling's (NVFP4: 15 PF against GB200's 10) is not
    # carried over: it takes the part's own derived ratio
    g = acc["gb300"]
    ratio = np.mean([1918.1 / 2500, 3806.2 / 5000])
    assert gemm_ceiling_tflops(g, "nvfp4", cal) == pytest.approx(15000 * ratio, rel=1e-12)


def test_an_unmeasured_accelerator_gets_the_median_measured_ratio():
    acc, cal = CAT.accelerators, CAT.calibration
    # per measured chip, mean of measured/datasheet over its precisions; median over chips (8 of them:
    # mi300x 0.489, mi325x 0.600, mi355x 0.626, gaudi3 0.677 | gb200 0.738, h100 0.756, h200 0.769, b200 0.769;
    # the H200's BF16 ceiling is the H100 SXM's, same die)
    mean_ratio = {"h100-sxm": (794.5 / 989 + 1402.6 / 1979) / 2, "h200": (794.5 / 989.5 + 1453.4 / 1979) / 2,
                  "b200": (1745.0 / 2250 + 3432.5 / 4500) / 2, "mi300x": (668.4 / 1307.4 + 1222.9 / 2614.9) / 2,
                  "gaudi3": 1243.0 / 1835, "gb200": (1822.0 / 2500 + 3615.6 / 5000 + 7627.6 / 10000) / 3,
                  "mi325x": 784.9 / 1307.4, "mi355x": 1565.0 / 2500}
    measured = sorted(n for n, a in acc.items() if a.gemm_tflops_measured)
    assert measured == sorted(mean_ratio)
    assert cal.unmeasured_gemm_ratio == pytest.approx((1243.0 / 1835 + (1822.0 / 2500 + 3615.6 / 5000 + 7627.6 / 10000) / 3)
                                                      / 2, abs=5e-4)
    assert cal.unmeasured_gemm_ratio == pytest.approx(float(np.median(list(mean_ratio.values()))), abs=5e-4)
    # a chip with neither a measurement, a measured sibling nor its own fit (Trainium2) gets it; the A100
    # keeps its 2021 fit
    assert gemm_ceiling_tflops(acc["trainium2"], "bf16", cal) == pytest.approx(667 * cal.unmeasured_gemm_ratio, rel=1e-12)
    assert gemm_ceiling_tflops(acc["a100-sxm-40gb"], "bf16", cal) == pytest.approx(312 * cal.gemm_efficiency_max)
    # its own fit wins over the prior
    v5p = acc["tpu-v5p"]
    assert gemm_ceiling_tflops(v5p, "bf16", cal) == pytest.approx(459 * v5p.gemm_efficiency_fitted, rel=1e-12)


def test_partial_recompute_keeps_the_fewest_layers_that_fit():
    dims = ModelDims(layers=8, hidden=1024, heads=8, vocab=1000, seq_len=4096)
    small = TOY.model_copy(update={"hbm_gb": 2.46})
    out = evaluate(dims, grid(b=1, gb=1, rc="partial"), [small], [NDR], IDEAL, "bf16", None, stack=FUSED)
    n = int(out["recompute_layers"][0])
    assert 0 < n < 8 and out["fits_memory"][0]
    # one layer fewer recomputed would not fit: check with the same arithmetic the model uses
    layer_full, ckpt = 34 * 4096 * 1024, 2 * 4096 * 1024
    params = 8 * 12 * 1024**2 + 2 * 1000 * 1024
    budget = 2.46e9 - 16 * params - 4096 * 1000 * 4
    assert (8 - (n - 1)) * layer_full + (n - 1) * ckpt + layer_full > budget
    assert (8 - n) * layer_full + n * ckpt + layer_full <= budget


def test_estimate_expresses_todays_layouts():
    from models.perf.estimate import estimate_training, parse_global_batch
    from models.presets import PRESETS

    r = estimate_training(PRESETS["llama3-405b"], CAT, "gb200", None, 256, tp=4, pp=16, vp=4, global_batch=1536,
                          precision="nvfp4")
    assert r["pipeline_stage_layers"] == {"full": 8, "first": 7, "last": 7} and r["fits_memory"]
    v6e = estimate_training(PRESETS["llama3-405b"], CAT, "tpu-v6e", None, 256, fsdp=True, global_batch=256,
                            stack="maxtext")
    assert v6e["sharding"] == "zero3" and v6e["pp"] == 1 and v6e["stack"] == "maxtext"
    # A batch range is compared on throughput: the chosen batch is reported.
    assert parse_global_batch("1000:2048") == {"min": 1000, "max": 2048} and parse_global_batch("64") == 64
    free = estimate_training(PRESETS["llama3-70b"], CAT, "h100-sxm", None, 64, global_batch={"min": 100, "max": 128})
    pinned = estimate_training(PRESETS["llama3-70b"], CAT, "h100-sxm", None, 64, global_batch=128)
    assert 100 <= free["global_batch"] <= 128 and free["tokens_per_s"] >= pinned["tokens_per_s"] - 1e-6


def test_an_uncalibrated_stack_estimates_with_the_median_efficiencies_and_says_so():
    from models.perf.estimate import estimate_training
    from models.perf.stacks import stack_profiles

    dims = ModelDims(layers=32, hidden=4096, heads=32, kv_heads=8, ffn_hidden=14336, vocab=128256, gated_mlp=True,
                     seq_len=8192)
    st = stack_profiles()
    r = estimate_training(dims, CAT, "h100-sxm", None, 64, tp=1, pp=8, global_batch=512, stack="deepspeed")
    assert "median of the calibrated stacks" in r["stack_note"]
    # the profile it ran with: the medians (gemm over megatron-core, nemo, torchtitan; MaxText leaves it at 1)
    ds = st["deepspeed"]
    assert ds.gemm_efficiency == pytest.approx(np.median([st[n].gemm_efficiency for n in ("megatron-core", "nemo", "torchtitan")]))
    assert ds.attention_efficiency == pytest.approx(np.median([st[n].attention_efficiency for n in
                                                               ("megatron-core", "nemo", "torchtitan", "maxtext")]))
    assert ds.layer_overhead_us == st["megatron-core"].layer_overhead_us  # a shared fixed cost: every median is it
