"""Mixture of experts: parameter counts, expert all-to-all, expert-touch, memory with and without EP."""

import numpy as np
import pytest

from models.dims import ModelDims
from models.presets import PRESETS

# (published total B, published active B, active counts the input embedding?) from each preset's source
# (models/data/presets.yaml). gpt-oss counts active parameters without the input embedding.
PUBLISHED = {
    "deepseek-v3": (671, 37, True), "kimi-k2": (1000, 32, True), "qwen3-235b-a22b": (235, 22, True),
    "qwen3-30b-a3b": (30, 3.3, True), "gpt-oss-120b": (117, 5.1, False), "gpt-oss-20b": (21, 3.6, False),
    "mixtral-8x7b": (47, 13, True), "mixtral-8x22b": (141, 39, True), "llama4-scout": (109, 17, True),
    "llama4-maverick": (400, 17, True),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts_match_published(name):
    d = PRESETS[name]
    total, active, with_input_embedding = PUBLISHED[name]
    act = d.active_params - (0 if with_input_embedding else d.padded_vocab * d.hidden)
    # Published totals are rounded ("1T", "47B"); Kimi's 1T is 1.04T in its tech report.
    assert d.params / 1e9 == pytest.approx(total, rel=0.03)
    assert act / 1e9 == pytest.approx(active, rel=0.03)


def test_deepseek_v3_counts_by_hand():
    d = PRESETS["deepseek-v3"]
    attn = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 512 * 128 * 256 + 128 * 128 * 7168
    assert d.attn_params_per_layer == attn == 187_105_280
    expert = 3 * 7168 * 2048
    moe = 257 * expert + 7168 * 256
    total = 61 * attn + 3 * 3 * 7168 * 18432 + 58 * moe + 2 * 129280 * 7168
    assert d.params == total
    assert d.active_params == 61 * attn + 3 * 3 * 7168 * 18432 + 58 * (9 * expert + 7168 * 256) + 2 * 129280 * 7168
    assert d.moe_layers == 58 and d.kv_cache_width == 576
    assert PRESETS["llama4-maverick"].moe_layers == 24


def test_moe_fields_are_checked():
    base = dict(layers=4, hidden=64, heads=4, vocab=100, seq_len=128)
    with pytest.raises(ValueError, match="top_k"):
        ModelDims(**base, experts=8, top_k=9)
    with pytest.raises(ValueError, match="experts"):
        ModelDims(**base, top_k=2)
    with pytest.raises(ValueError, match="MLA"):
        ModelDims(**base, kv_lora_rank=16)
    assert ModelDims(**base).params == ModelDims(**base, experts=0).params


def test_expert_touch_formula():
    from models.perf.inference import experts_touched

    assert experts_touched(256, 8, 1) == pytest.approx(8.0)  # batch 1: the active experts
    assert experts_touched(256, 8, 2) == pytest.approx(256 * (1 - (248 / 256) ** 2))  # 15.75
    assert experts_touched(256, 8, 1024) == pytest.approx(256.0, rel=1e-9)  # large batch: all


def test_all_to_all_by_hand():
    from models.perf.training import SCALEUP_LATENCY_S, a2a_time_s

    # 4096 tokens of h=1024 in bf16 = 8 MiB per copy; k=2; ep=8 inside one 8-GPU domain at 400 GB/s:
    # every copy leaves over scale-up: 2 x 8 MiB x 7/8 / 400 GB/s + one hop.
    copy = 4096 * 1024 * 2.0
    t = a2a_time_s(np.array([copy]), 2.0, np.array([8.0]), np.array([8.0]), 8.0, 400e9, 50e9, 5e-6)
    assert t[0] == pytest.approx(2 * copy * 7 / 8 / 400e9 + SCALEUP_LATENCY_S)
    # ep=16 over two domains: 8 remote peers of 16; fabric copies min(2 x 8/16, 1) = 1 at 50 GB/s + 5 us.
    t = a2a_time_s(np.array([copy]), 2.0, np.array([16.0]), np.array([16.0]), 8.0, 400e9, 50e9, 5e-6)
    assert t[0] == pytest.approx(max(copy * 2 * 15 / 16 / 400e9 + SCALEUP_LATENCY_S, copy / 50e9 + 5e-6))


def test_memory_with_and_without_ep():
    from models.loader import default_catalog
    from models.perf.training import evaluate_layout

    cat = default_catalog()
    d = PRESETS["qwen3-30b-a3b"]
    acc, fab = cat.accelerators["h100-sxm"], cat.fabrics["ib-ndr-400g"]
    lay = dict(tp=1, pp=1, dp=8, micro_batch=1, recompute="full", sharding="none", global_batch=64)
    one = evaluate_layout(d, lay, acc, fab, cat.calibration, "bf16", 64)
    eight = evaluate_layout(d, dict(lay, ep=8), acc, fab, cat.calibration, "bf16", 64)
    routed = d.moe_layers * d.experts * d.expert_params
    # No sharding: 2 B weights + fp32 gradients (megatron-core) + 12 B optimizer state per parameter;
    # ep=8 holds 1/8 of the routed experts (and their state).
    from models.perf.stacks import get_stack

    per_param = 2 + get_stack(None).grad_bytes + 12
    assert per_param == 18
    assert one["memory_per_gpu_gb"] - eight["memory_per_gpu_gb"] == pytest.approx(per_param * routed * 7 / 8 / 1e9, rel=1e-9)
    assert one["a2a_s"] == 0.0 < eight["a2a_s"]
