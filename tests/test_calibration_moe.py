"""Hand-computed checks of the MoE training terms the calibration relies on, and the MoE targets."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from models.dims import ModelDims
from models.loader import default_catalog
from models.perf.stacks import get_stack
from models.perf.training import evaluate_layout, exposed_s, remote_domains_touched

CAT = default_catalog()
TINY = dict(layers=2, hidden=1024, heads=8, vocab=1024, seq_len=1024, gated_mlp=True, experts=8, top_k=2,
            expert_ffn_hidden=1024)


def test_remote_domains_touched_by_hand():
    # k=8 of 256 experts over 4 domains: a given domain misses all 8 with C(192,8)/C(256,8).
    q = comb(192, 8) / comb(256, 8)
    assert remote_domains_touched(8, 256, np.array([4.0]))[0] == pytest.approx(3 * (1 - q), rel=1e-12)
    # DeepSeek-V3 routing, 4 of 8 groups, one group per domain over 8 domains: C(7,4)/C(8,4) = 1/2 untouched.
    assert remote_domains_touched(8, 256, np.array([8.0]), 8, 4)[0] == pytest.approx(7 * 0.5, rel=1e-12)
    # One domain: nothing crosses the fabric.
    assert remote_domains_touched(8, 256, np.array([1.0]))[0] == 0.0


def test_group_limited_routing_is_validated():
    assert ModelDims(**TINY, expert_groups=4, group_top_k=1).group_top_k == 1
    with pytest.raises(ValueError, match="expert_groups"):
        ModelDims(**TINY, expert_groups=3, group_top_k=1)  # 3 does not divide 8 experts
    with pytest.raises(ValueError, match="group_top_k"):
        ModelDims(**dict(TINY, top_k=4), expert_groups=4, group_top_k=1)  # one group of 2 cannot hold 4 experts


def test_exposed_communication_by_hand():
    raw = np.array([10.0, 10.0])
    assert list(exposed_s(raw, 0.3)) == pytest.approx([3.0, 3.0])
    # hidden under at most the overlapping work: 4 s of work leave 6 s; 9 s leave the 30 % floor
    assert list(exposed_s(raw, 0.3, np.array([4.0, 9.0]))) == pytest.approx([6.0, 3.0])


def _stack(**upd):
    return get_stack("megatron-core").model_copy(update=upd)


def test_expert_gradients_ring_over_one_nic_per_peer():
    """16 H100s (2 nodes), ep=8: dense gradients reduce over 16 ranks, 8 per node each on its own NIC;
    the routed experts over their 2-rank expert-data-parallel group, one rank per node: one NIC."""
    d = ModelDims(**TINY)
    acc, fab, calib = CAT.accelerators["h100-sxm"], CAT.fabrics["ib-ndr-400g"], CAT.calibration
    lay = dict(tp=1, pp=1, dp=16, ep=8, micro_batch=1, recompute="none", sharding="zero1", global_batch=16)
    nic = 400 / 8 * 1e9 * calib.comm_efficiency  # one NDR port per GPU
    su = acc.scaleup_bw_gbs * 1e9 * calib.comm_efficiency
    lat = fab.latency_us * 1e-6
    routed = d.moe_layers * d.experts * d.expert_params  # all routed experts of the (single) stage
    dense = d.layers * (d.stored_params_per_layer - d.moe_layers / d.layers * d.experts * d.expert_params) \
        + 2 * d.padded_vocab * d.hidden  # untied input embedding and output head on the one stage

    def ring(k, nbytes, bw):
        return (k - 1) / k * nbytes / bw + (k - 1) * lat

    for grad_bytes in (2.0, 4.0):
        st = _stack(dp_exposed=1.0, overlap_limited_by_compute=False, grad_bytes=grad_bytes)
        out = evaluate_layout(d, dict(lay, stack=st), acc, fab, calib, "bf16", 16)
        bw = min(8 * nic, su)
        want = ring(16, grad_bytes * dense, bw) + ring(16, 2 * dense, bw)  # reduce-scatter grads, gather weights
        ex = routed / 8  # experts held per GPU
        want += ring(2, grad_bytes * ex, nic) + ring(2, 2 * ex, nic)
        assert out["dp_comm_exposed_s"] == pytest.approx(want, rel=1e-9)


def test_expert_launch_cost_per_local_expert_by_hand():
    d = ModelDims(**TINY)
    acc, fab, calib = CAT.accelerators["h100-sxm"], CAT.fabrics["ib-ndr-400g"], CAT.calibration
    lay = dict(tp=1, pp=1, dp=1, micro_batch=1, recompute="none", sharding="none", global_batch=2)
    base = _stack(moe_layer_overhead_us=0.0, expert_launch_us=0.0)
    a = evaluate_layout(d, dict(lay, stack=base), acc, fab, calib, "bf16", 2)
    b = evaluate_layout(d, dict(lay, stack=base.model_copy(update={"expert_launch_us": 100.0})), acc, fab, calib,
                        "bf16", 2)
    # 2 micro-batches x 2 MoE layers x 8 local experts x 100 us (fwd+bwd, no recompute)
    assert b["step_time_s"] - a["step_time_s"] == pytest.approx(2 * 2 * 8 * 100e-6, rel=1e-9)


def test_expert_kernels_per_pass_by_hand():
    from models.perf.training import expert_kernels_per_micro_batch as kernels

    assert kernels("bf16", 1.0) == 6 and kernels("mxfp8", 1.0) == 10 and kernels("fp8", 1.0) == 18
    # a recomputed forward reruns the forward's 2 GEMMs and 2 quantisations: FP8-CS 8 + 8 + 10, not 18 x 4/3
    assert kernels("fp8", 2.0) == 26 and kernels("bf16", 2.0) == 8
    assert kernels("fp8", 1.5) == pytest.approx(22.0)


@pytest.mark.parametrize("precision, acc, q", [("bf16", "h100-sxm", 0), ("fp8", "h100-sxm", 3), ("mxfp8", "b200", 1)])
@pytest.mark.parametrize("recompute", ["none", "full"])
def test_expert_launch_cost_counts_the_quantisation_kernels(precision, acc, q, recompute):
    """Per local expert and micro-batch: a forward pass runs 2 GEMMs and quantises their 2 inputs, the
    backward 4 GEMMs and the 2 output gradients, a recomputed forward the forward's kernels again; a
    quantisation is 3 kernels with per-tensor current scaling (amax scan, scale, cast), 1 with MXFP8 (block
    scales inside the cast). The 2 weights are quantised once per step (cached for the other micro-batch)."""
    d = ModelDims(**TINY)
    acc, fab, calib = CAT.accelerators[acc], CAT.fabrics["ib-ndr-400g"], CAT.calibration
    lay = dict(tp=1, pp=1, dp=1, micro_batch=1, recompute=recompute, sharding="none", global_batch=2)
    base = _stack(moe_layer_overhead_us=0.0, expert_launch_us=0.0)
    a = evaluate_layout(d, dict(lay, stack=base), acc, fab, calib, precision, 2)
    b = evaluate_layout(d, dict(lay, stack=base.model_copy(update={"expert_launch_us": 60.0})), acc, fab, calib,
                        precision, 2)
    forwards = 2 if recompute == "full" else 1
    kernels = (2 + 2 * q) * forwards + 4 + 2 * q  # bf16, no recompute: the 6 GEMMs; FP8-CS 18; MXFP8 10
    # 2 micro-batches x 2 MoE layers x 8 local experts x 60 us per 6 kernels, plus 2 weights x q once per step
    want = (2 * 2 * 8 * kernels + 2 * 8 * 2 * q) * 60e-6 / 6
    assert b["step_time_s"] - a["step_time_s"] == pytest.approx(want, rel=1e-9)


def test_routed_copies_are_cast_at_low_precision_by_hand():
    """FP8 casts: `cast_passes` over the layer's tok x h activations, and half as many over each routed copy's
    h + f_e GEMM inputs (k copies per token), at HBM speed."""
    from models.perf.stacks import precision_profiles
    from models.perf.training import ConfigGrid, evaluate

    d = ModelDims(**TINY)
    acc, fab, calib = CAT.accelerators["h100-sxm"], CAT.fabrics["ib-ndr-400g"], CAT.calibration
    one = lambda x: np.array([x])  # noqa: E731
    grid = ConfigGrid(acc=one(0), fab=one(0), t=one(1), p=one(1), d=one(1), b=one(1), v=one(1), recompute=one(0),
                      dist_opt=np.array([False]), cp=one(1), shard=one(0), gb=one(2), ep=one(1), etp=one(1))
    pp = precision_profiles()
    steps = []
    for passes in (0.0, 6.0):
        precs = dict(pp, fp8=pp["fp8"].model_copy(update={"cast_passes": passes}))
        out = evaluate(d, grid, [acc], [fab], calib, "fp8", 2, stack="megatron-core", precisions=precs)
        steps.append(float(out["step_time_s"][0]))
    tok, h, k, fe = 1024, 1024, 2, 1024
    per_layer = 6.0 * tok * h * 2 + 6.0 / 2 * tok * k * (h + fe) * 2  # bytes, fwd + bwd (no recompute)
    want = 2 * 2 * per_layer / (acc.hbm_bw_measured_tbs * 1e12)  # 2 micro-batches x 2 layers
    assert steps[1] - steps[0] == pytest.approx(want, rel=1e-9)


def test_deepseek_preset_routes_to_4_of_8_groups():
    from models.presets import PRESETS

    assert (PRESETS["deepseek-v3"].expert_groups, PRESETS["deepseek-v3"].group_top_k) == (8, 4)


def test_moe_only_fit_keeps_dense_knobs_and_xla_host_costs():
    from models.perf.calibration import MOE_KNOB_BOUNDS, STACK_KNOB_BOUNDS, _prepare, fit_modern, load_modern
    from models.perf.stacks import stack_profiles

    rows = [_prepare(r, CAT) for r in load_modern()["training"] if r["model"].get("experts")]
    shipped = stack_profiles()
    st, _, _ = fit_modern(rows, CAT.calibration, rounds=1, points=3, start="centre", moe_only=True)
    for name in ("megatron-core", "nemo", "torchtitan", "maxtext"):
        for k in STACK_KNOB_BOUNDS:  # a MoE-only refit (leave-one-model-out) leaves the dense fit alone
            assert getattr(st[name], k) == getattr(shipped[name], k)
    for k, (lo, hi) in MOE_KNOB_BOUNDS.items():
        assert lo <= getattr(st["megatron-core"], k) <= hi
    assert st["maxtext"].moe_layer_overhead_us == 0.0 and st["maxtext"].expert_launch_us == 0.0  # XLA: no host loop
    assert st["nemo"].ep_exposed == st["megatron-core"].ep_exposed  # no NeMo MoE rows: borrowed
