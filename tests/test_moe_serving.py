"""Mixture-of-experts serving by hand: expert touch, all-to-all of an expert-parallel replica, memory
with and without EP, estimate's --ep, and the wide-EP instance (wide replicas across nodes vs 8-GPU ones)."""

import copy
from pathlib import Path

import numpy as np
import pytest

from models.dims import ModelDims
from models.loader import default_catalog, load_instance
from models.perf.inference import ServingGrid, evaluate_serving, experts_touched
from models.presets import PRESETS
from optimizer import api

ROOT = Path(__file__).parent.parent
CAT = default_catalog()
ONE = np.ones(1, dtype=np.int64)


def _row(dims, acc, t, batch, ep=1, precision="bf16", n_in=1000, n_out=250, fabric=None):
    g = ServingGrid(acc=0 * ONE, t=t * ONE, batch=batch * ONE, ep=ep * ONE)
    fab = [CAT.fabrics[fabric]] if fabric else None
    out = evaluate_serving(dims, g, [CAT.accelerators[acc]], CAT.calibration, precision, n_in, n_out, fabrics=fab)
    return {k: float(v[0]) for k, v in out.items()}


def test_expert_touch_batch_one_is_the_active_experts_and_large_batches_read_all():
    for E, k in ((256, 8), (128, 8), (8, 2), (16, 1)):
        assert experts_touched(E, k, 1) == pytest.approx(k)
        assert experts_touched(E, k, 100_000) == pytest.approx(E, rel=1e-9)
    # Batch 4 of Mixtral's 8 experts, top 2: 8 (1 - (6/8)^4) = 8 (1 - 81/256) = 5.46875.
    assert experts_touched(8, 2, 4) == pytest.approx(5.46875)


# A small MoE: 2 MoE layers, h = 1024, 16 experts top 2 (no MLA, no dense layers).
SMALL = ModelDims(layers=2, hidden=1024, heads=8, kv_heads=8, gated_mlp=True, vocab=1000, seq_len=2048,
                  experts=16, top_k=2, expert_ffn_hidden=512)


def test_serving_all_to_all_by_hand_inside_a_node_and_across_two():
    acc = CAT.accelerators["h100-sxm"]  # 8 per node, one 8-GPU NVLink domain
    eff = CAT.calibration.comm_efficiency
    su = acc.scaleup_bw_gbs * 1e9 * eff
    B = 512
    # EP8 in one node: each GPU sends its B/8 tokens (2 KiB each in bf16) to k = 2 experts, 7/8 of
    # them on other GPUs, over NVLink; dispatch and combine per MoE layer, one 2 us hop each.
    copy_b = B / 8 * 1024 * 2.0
    one = copy_b * 2 * 7 / 8 / su + 2e-6
    r = _row(SMALL, "h100-sxm", 8, B, ep=8)
    assert r["decode_a2a_s"] == pytest.approx(2 * 2 * one)
    assert r["decode_tp_comm_s"] > 0  # no MLA: attention stays tensor-parallel over the 8, with its all-reduces
    # EP16 over two nodes on NDR (400 Gb/s, 1 us, one port per GPU): half of the peers are remote;
    # a token crosses the fabric min(k x 1/2, 1 remote domain) = 1 time and fans out over NVLink
    # 2 x (7/16 + 8/16) times; both links run at once.
    fab = 400e9 / 8 * eff
    copy_b = B / 16 * 1024 * 2.0
    one = max(copy_b * 2 * 15 / 16 / su + 2e-6, copy_b / fab + 1e-6)
    r = _row(SMALL, "h100-sxm", 16, B, ep=16, fabric="ib-ndr-400g")
    assert r["decode_a2a_s"] == pytest.approx(2 * 2 * one)
    # A tensor-parallel replica has no all-to-all.
    assert _row(SMALL, "h100-sxm", 8, B)["decode_a2a_s"] == 0.0


def test_deepseek_memory_with_and_without_expert_parallelism():
    d = PRESETS["deepseek-v3"]
    routed = 58 * 256 * 3 * 7168 * 2048
    assert d.moe_layers * d.experts * d.expert_params == routed
    tp8 = _row(d, "h200", 8, 1, precision="fp8")
    ep8 = _row(d, "h200", 8, 8, ep=8, precision="fp8")
    # fp8, 1 B per parameter. TP8: everything sharded 8 ways. EP8 with data-parallel attention (MLA):
    # the routed experts sharded 8 ways, attention, dense layers and shared experts on every GPU.
    assert tp8["weights_gb_per_acc"] == pytest.approx(d.params / 8 / 1e9)
    assert ep8["weights_gb_per_acc"] == pytest.approx(((d.params - routed) + routed / 8) / 1e9)
    # MLA latent KV: 61 layers x (512 + 64) x 1 B (fp8 cache) x 1,250 tokens. TP8 keeps it on each of
    # the 8 GPUs; with data-parallel attention a sequence lives on one GPU (1/8 per GPU on average).
    kv = 61 * 576 * 1.0 * 1250
    assert tp8["kv_gb_per_seq_per_acc"] == pytest.approx(kv / 1e9)
    assert ep8["kv_gb_per_seq_per_acc"] == pytest.approx(kv / 8 / 1e9)
    assert ep8["max_batch_fitting"] > 5 * tp8["max_batch_fitting"]
    # Decode at batch 1 reads the k = 8 active routed experts of 256 (plus everything else).
    assert tp8["decode_weights_gb_per_acc"] == pytest.approx((d.params - routed * (1 - 8 / 256)) / 8 / 1e9)


def test_prefill_is_compute_bound_on_active_parameters():
    d = PRESETS["deepseek-v3"]
    r = _row(d, "h200", 8, 1, precision="fp8", n_in=8000)
    assert r["prefill_compute_s"] > r["prefill_memory_s"]
    # Doubling the routed experts (same top_k) adds only the router's 58 x 7168 x 256 weights to the
    # prefill FLOPs: 2 P_active n + 2 l n^2 x heads (qk + v dims) / 2 (causal attention).
    wider = d.model_copy(update={"experts": 512})
    n, att = 8000, 2 * 61 * 8000**2 * 128 * (192 + 128) / 2
    flops = lambda active: 2 * active * n + att  # noqa: E731
    ratio = flops(d.active_params + 58 * 7168 * 256) / flops(d.active_params)
    assert _row(wider, "h200", 8, 1, precision="fp8", n_in=n)["prefill_compute_s"] == pytest.approx(
        r["prefill_compute_s"] * ratio)


def test_estimate_ep_layouts_and_errors():
    e = api.estimate("deepseek-v3", "h200", mode="inference", ep=16, precision="fp8", batch=1024)
    assert (e["tp"], e["ep"], e["attention_tp"]) == (16, 16, 1) and e["breakdown"]["decode_a2a_s"] > 0
    e = api.estimate("deepseek-v3", "h200", mode="inference", tp=8, ep=16, precision="fp8", batch=1024)
    assert (e["tp"], e["ep"], e["attention_tp"]) == (16, 16, 8)
    with pytest.raises(ValueError, match=r"ep=16 \(a wide-EP replica of 2 nodes\)"):
        api.estimate("deepseek-v3", "h200", mode="inference", tp=8)  # bf16 does not fit one node
    with pytest.raises(ValueError, match="mixture-of-experts"):
        api.estimate("llama3-70b", "h200", mode="inference", ep=8)
    with pytest.raises(ValueError, match="divide the model's 256 routed experts"):
        api.estimate("deepseek-v3", "h200", mode="inference", ep=12)
    twelve = dict(SMALL.model_dump(by_alias=True), experts=24)
    with pytest.raises(ValueError, match="whole nodes: a multiple of 8"):
        api.estimate(twelve, "h100-sxm", mode="inference", ep=12)
    with pytest.raises(ValueError, match="attention tensor-parallel degree"):
        api.estimate("deepseek-v3", "h200", mode="inference", tp=16, ep=16, precision="fp8")
    with pytest.raises(ValueError, match="unknown fabric"):
        api.estimate("deepseek-v3", "h200", mode="inference", ep=16, fabric="nope")


@pytest.fixture(scope="module")
def reasoning():
    inst = load_instance(ROOT / "instances" / "moe-reasoning-serving.yaml")
    return inst, api.solve(inst)


def test_wide_ep_replicas_across_nodes_win_and_attach_fabric_ports(reasoning):
    inst, res = reasoning
    groups = next(s for s in res.solution.services if s.name == "reasoning-r1").groups
    wide = [g for g in groups if g.tp > 8]
    assert wide and all(g.ep == g.tp == 16 and g.fabric == "ib-ndr-400g" for g in wide)
    assert all(g.endpoints == g.replicas * 2 * 8 for g in wide)  # 2 nodes x 8 NDR ports per replica
    ib = next(f for f in res.solution.design.fabrics if f.name == "ib-ndr-400g")
    assert ib.endpoints == sum(g.endpoints for g in wide)
    # The re-estimate of a wide group agrees with the design.
    g = wide[0]
    e = res.estimate("reasoning-r1", groups.index(g))
    assert e["ep"] == 16 and e["tpot_s"] == pytest.approx(g.tpot_s)
    # Without a scale-out fabric no replica may span nodes: only 8-GPU replicas, and a dearer design.
    flat = api.solve(api.with_(inst, {"catalog.fabrics": {}}))
    flat_groups = next(s for s in flat.solution.services if s.name == "reasoning-r1").groups
    assert flat.solution.status == "optimal" and all(x.tp <= 8 for x in flat_groups)
    assert flat.tco_usd > 1.1 * res.tco_usd


def test_verifier_wants_the_fabric_ports_of_a_wide_replica(reasoning):
    from optimizer.solving.verify import VerificationError, verify_solution

    inst, res = reasoning
    sol = copy.deepcopy(res.solution)
    for s in sol.services:
        for g in s.groups:
            if g.tp > 8:
                g.fabric = None
    with pytest.raises(VerificationError, match="names no compatible scale-out fabric"):
        verify_solution(inst, sol)
    thin = copy.deepcopy(res.solution)
    ib = next(f for f in thin.design.fabrics if f.name == "ib-ndr-400g")
    ib.endpoints -= 8
    with pytest.raises(VerificationError, match="ib-ndr-400g: workloads attach"):
        verify_solution(inst, thin)


def test_disaggregated_kv_transfer_ships_the_mla_latent_and_prefill_counts_its_all_to_all():
    from models.perf.pools import kv_bytes_per_request, prefill_only_s

    # DeepSeek-V3: 61 layers x 576 latent elements x 1 B (fp8 cache) per prompt token; Llama 3 70B
    # (GQA): 80 layers x 8 KV heads x 128 x 2 (K and V) x 2 B (bf16).
    assert kv_bytes_per_request(PRESETS["deepseek-v3"], "fp8", 2000) == 61 * 576 * 2000
    assert kv_bytes_per_request(PRESETS["llama3-70b"], "bf16", 2000) == 80 * 8 * 128 * 2 * 2 * 2000
    r = _row(PRESETS["deepseek-v3"], "h200", 16, 16, ep=16, precision="fp8", n_in=2000, fabric="ib-ndr-400g")
    alone = max(r["prefill_compute_s"], r["prefill_memory_s"]) + r["prefill_a2a_s"] + r["step_overhead_s"]
    assert r["prefill_a2a_s"] > 0
    assert prefill_only_s({k: np.array([v]) for k, v in r.items()})[0] == pytest.approx(alone)
