"""Brute force on seeded tiny random instances: the MIP's optimum equals the best of every
combination of the jobs' choices, each solved with the choice pinned (SkyPilot-style check)."""

import itertools
import random

import pytest

from models.loader import instance_from_dict
from optimizer.solving.pipeline import prepare, solve_instance

from .test_sweep import NO_STORAGE_FLOOR

IDEAL = {"gemm_efficiency_max": 1.0, "unmeasured_gemm_ratio": 1.0, "gemm_half_dim": 0.0, "elementwise_passes": 0.0, "attention_passes": 0.0,
         "comm_efficiency": 1.0, "dp_overlap": 1.0, "memory_reserved_gb": 0.0}
TOY = {"layers": 2, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 1024}


def random_instance(seed: int) -> dict:
    rng = random.Random(seed)
    accs = {}
    for k in range(3):
        accs[f"acc{k}"] = {
            "peak_bf16_tflops": rng.choice([8, 10, 15, 20]), "hbm_gb": 1000, "hbm_bw_tbs": 1, "scaleup_domain": 8,
            "scaleup_bw_gbs": 100, "accelerators_per_node": rng.choice([4, 8]), "node_power_kw": rng.choice([5, 8, 10, 12]),
            "node_price_usd": rng.choice([60_000, 90_000, 120_000, 200_000]), "node_rack_units": rng.choice([2, 4, 8]),
        }
    jobs = [{
        "name": f"job{j}", "model": TOY, "tokens": rng.choice([3e12, 5e12, 1e13]), "deadline_days": rng.choice([8, 12, 20]),
        "global_batch": 1536, "stack": "megatron-2021", "parallelism": {"tp": 1, "pp": 1, "micro_batch": 1, "recompute": "none"},
        "checkpoint_interval_hours": 1, "checkpoint_window_s": 36, **NO_STORAGE_FLOOR,
    } for j in range(2)]
    return {
        "name": f"random-{seed}",
        "catalog": {"accelerators": accs, "fabrics": ["ib-ndr-400g", "roce-400g"], "storage": ["flash-pfs"],
                    "calibration": IDEAL},
        "workloads": jobs,
        "facility": {"power_cap_mw": rng.choice([0.6, 1.0, 5.0]), "pue": 1.25, "max_racks": rng.choice([20, 40, 200])},
        "budget": {"horizon_years": 3},
    }


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_mip_matches_brute_force(seed):
    raw = random_instance(seed)
    inst = instance_from_dict(raw, f"seed {seed}")
    best = solve_instance(inst)
    _, pruned = prepare(inst)
    options = [[p.table.layout(int(i)) for i in p.keep] for p in pruned]
    values = []
    for combo in itertools.product(*options):
        pinned = dict(raw, workloads=[
            dict(w, accelerator=lay["accelerator"], fabric=lay["fabric"],
                 parallelism={"tp": lay["tp"], "pp": lay["pp"], "dp": lay["dp"], "micro_batch": lay["micro_batch"],
                              "vp": lay["vp"], "recompute": lay["recompute"]})
            for w, lay in zip(raw["workloads"], combo)
        ])
        sol = solve_instance(instance_from_dict(pinned, "pinned"))
        if sol.has_design:
            values.append(sol.objective_value)
    if best.has_design:
        assert best.verified
        assert best.objective_value == pytest.approx(min(values), rel=1e-6)
    else:
        assert values == []  # no combination fits the limits either
