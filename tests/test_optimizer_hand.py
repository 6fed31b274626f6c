"""Small designs whose optimum is worked out by hand, asserted on both backends."""

import math

import pytest

from models.loader import instance_from_dict
from optimizer.mip.build import build_model, objective_expr
from optimizer.mip.backends import Status, solve as run_backend
from optimizer.mip.data import AcceleratorData, Candidate, FabricData, JobData, MipData, SiteData, StorageData
from optimizer.solving.pipeline import solve_instance
from .test_sweep import LEGACY_FLASH, NEVER_FAILS, NO_SITE_NETWORKS, NO_STORAGE_FLOOR

BACKENDS = ["ortools", "pulp"]


# ---------------------------------------------------------------------------------------------
# MIP level: two candidate machines for one job, every cost term counted by hand.
# ---------------------------------------------------------------------------------------------


def tiny_data(y_price_usd=300_000, power_cap_kw=None, capex_cap_usd=None) -> MipData:
    fab = FabricData("f", radix=8, down=4, up=4, tier_capacity={1: 8, 2: 32, 3: 128},
                     switch_price_musd=0.010, switch_power_kw=0.2, endpoint_price_musd=0.001, endpoint_power_kw=0.01,
                     optic_price_musd=0.0005, optic_power_kw=0.005)
    job = JobData("j", deadline_days=12, usable_tb=10.0, write_gbps=5.0, candidates=[
        Candidate(0, "x", "f", nodes=8, endpoints=8, days=10.0, read_gbps=0.0),
        Candidate(1, "y", "f", nodes=3, endpoints=3, days=9.0, read_gbps=0.0),
    ])
    site = SiteData("dc", pue=1.5, power_cap_kw=power_cap_kw, max_racks=None, rack_capex_musd=0.010,
                    cooling_capex_musd_per_kw={"air": 0.001}, aux_cooling="air",
                    nodes_per_rack={"x": {"air": 4}, "y": {"air": 4}}, energy_musd_per_kw_year=0.1 * 8760 / 1e6,
                    carbon_t_per_kw_year=0.0, site_capex_musd=0.0, rtt_ms={})
    return MipData(
        name="tiny", objective="min_tco", jobs=[job], services=[],
        accelerators=[AcceleratorData("x", 0.100, 5.0, 8), AcceleratorData("y", y_price_usd / 1e6, 4.0, 8)],
        fabrics=[fab], storage=[StorageData("s", 1e-4, 0.001, 1.0, 1.0)], sites=[site],
        capex_cap_musd=None if capex_cap_usd is None else capex_cap_usd / 1e6, horizon_years=1.0, maintenance_fraction=0.0,
    )


# Design x: 8 nodes x $100k = 800,000; fabric: 1 switch (8 ports) $10k + 8 endpoints x $1k = 18,000;
# storage 10 TB (capacity binds over 5 GB/s) x $100 = 1,000; 2 racks (4 nodes each) x $10k = 20,000;
# IT power 40 (nodes) + 0.2 + 0.08 (network) + 0.01 (storage) = 40.29 kW -> cooling 40,290.
# capex 879,290; energy 1.5 x 40.29 kW x 8760 h x $0.1 = 52,941.06 -> TCO 932,231.06.
TCO_X = 879_290 + 1.5 * 40.29 * 876
# Design y (at $300k a node): 900,000 + 13,000 + 1,000 + 10,000 (1 rack) + 12,240 (IT 12.24 kW) = 936,240 capex;
# energy 1.5 x 12.24 x 876 = 16,083.36 -> TCO 952,323.36.
TCO_Y = 936_240 + 1.5 * 12.24 * 876


def _solve(data, backend, objective="min_tco"):
    m, v = build_model(data)
    m.minimize(objective_expr(data, v, objective))
    res = run_backend(m, backend=backend, fallback=False)
    return res, v


@pytest.mark.parametrize("backend", BACKENDS)
def test_cheaper_machine_wins_by_hand(backend):
    res, v = _solve(tiny_data(), backend)
    assert res.status == Status.OPTIMAL
    assert res.objective * 1e6 == pytest.approx(TCO_X, abs=0.01)
    assert res.values[v.choose["j", 0, "dc"].index] == pytest.approx(1)
    assert res.values[v.totals["capex_musd"].index] * 1e6 == pytest.approx(879_290, abs=0.01)


@pytest.mark.parametrize("backend", BACKENDS)
def test_power_cap_flips_the_choice(backend):
    # x draws 60.435 kW at the facility; a 50 kW cap leaves only y.
    res, v = _solve(tiny_data(power_cap_kw=50.0), backend)
    assert res.objective * 1e6 == pytest.approx(TCO_Y, abs=0.01)
    assert res.values[v.choose["j", 1, "dc"].index] == pytest.approx(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_budget_below_every_design_is_infeasible(backend):
    res, _ = _solve(tiny_data(capex_cap_usd=879_000), backend)  # x needs 879,290, y 936,240
    assert res.status == Status.INFEASIBLE


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_power_picks_the_frugal_machine(backend):
    res, _ = _solve(tiny_data(), backend, objective="min_power")
    assert res.objective == pytest.approx(1.5 * 12.24)


# ---------------------------------------------------------------------------------------------
# End to end: an idealised accelerator where time to train is pure arithmetic.
# ---------------------------------------------------------------------------------------------

IDEAL = {"gemm_efficiency_max": 1.0, "unmeasured_gemm_ratio": 1.0, "gemm_half_dim": 0.0, "elementwise_passes": 0.0, "attention_passes": 0.0,
         "comm_efficiency": 1.0, "dp_overlap": 1.0, "memory_reserved_gb": 0.0}


def ideal_instance(**over):
    inst = {
        "name": "ideal",
        "catalog": {
            "accelerators": {"toy": {
                "peak_bf16_tflops": 10, "hbm_gb": 1000, "hbm_bw_tbs": 1, "scaleup_domain": 8, "scaleup_bw_gbs": 100,
                "accelerators_per_node": 8, "node_power_kw": 10, "node_price_usd": 100_000, "node_rack_units": 8,
                "interruptions_per_acc_hour": NEVER_FAILS}},
            "fabrics": ["ib-ndr-400g"],
            "storage": {"flash-pfs": LEGACY_FLASH},
            "calibration": IDEAL,
        },
        "workloads": [{
            "name": "toy-job",
            "model": {"layers": 2, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 1024},
            "tokens": 1e13, "deadline_days": 10, "global_batch": 1536, "stack": "megatron-2021",
            "parallelism": {"tp": 1, "pp": 1, "micro_batch": 1, "recompute": "none"},
            "checkpoint_interval_hours": 1, "checkpoint_window_s": 36, **NO_STORAGE_FLOOR,
        }],
        "facility": {**NO_SITE_NETWORKS, "power_cap_mw": 10, "pue": 1.2, "cooling": {"air": {"max_kw_per_rack": 40, "capex_usd_per_kw": 0}},
                     "rack_capex_usd": 0, "facility_capex_usd_per_mw": 0},
        "budget": {"horizon_years": 1, "maintenance_pct_per_year": 0},
    }
    inst.update(over)
    return instance_from_dict(inst, "ideal")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ideal_accelerator_days_by_hand(backend):
    # FLOPs per token without recomputation: 3 passes x l x (2 x 12h^2 + 4sh) + 6hV
    per_token = 3 * 2 * (2 * 12 * 1024**2 + 4 * 1024 * 1024) + 6 * 1024 * 32000
    assert per_token == 372_768_768
    acc_days = 1e13 * per_token / 10e12 / 86400 * 1.01  # x1.01: 36 s checkpoint stall per hour
    # dp must divide the global batch 1536 = 2^9 x 3: 384 gives 11.35 days (late), 512 gives 8.51.
    assert acc_days / 384 > 10 > acc_days / 512
    sol = solve_instance(ideal_instance(), backend=backend)
    assert sol.status == "optimal" and sol.verified
    job = sol.jobs[0]
    assert (job.dp, job.accelerators, job.nodes) == (512, 512, 64)
    assert job.days == pytest.approx(acc_days / 512, rel=1e-9)
    d = sol.design
    assert d.nodes == {"toy": {"air": 64}}
    assert d.racks == {"toy": {"air": 16}}  # 4 nodes of 10 kW per 40 kW rack
    f = d.fabrics[0]  # 512 endpoints, radix 64: 16 leaves, 8 spines, 512 links
    assert (f.tiers, f.leaves, f.spines, f.optics) == (2, 16, 8, 1024)
    assert d.capex_usd["compute"] == pytest.approx(6.4e6)
    assert d.capex_usd["network"] == pytest.approx(24 * 30_000 + 512 * 3_000 + 1024 * 1_000)
    assert d.node_power_kw == pytest.approx(640)


def test_deadline_out_of_reach_names_the_job():
    sol = solve_instance(ideal_instance(workloads=[{
        "name": "rush", "model": {"layers": 2, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 1024},
        "tokens": 1e13, "deadline_days": 1, "global_batch": 1536, "stack": "megatron-2021", "parallelism": {"tp": 1, "pp": 1}}]))
    assert sol.status == "infeasible" and sol.design is None
    assert "job 'rush': no configuration meets its deadline of 1 days" in sol.diagnosis[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_power_cap_diagnosis_by_hand(backend):
    from optimizer.studies.explain import diagnose_solution, find_fixes

    # The on-time design (64 toy nodes, dp=512) draws, in kW:
    #   nodes 64 x 10 = 640; NDR fabric for 512 ports: 16 leaves + 8 spines = 24 switches x 1.5 = 36,
    #   512 NICs x 0.040 = 20.48, 1024 link optics x 0.015 = 15.36;
    #   storage: no data reads here, so the checkpoint write bandwidth sizes it: 14 B x 90,701,824
    #   params = 1.27 GB in 36 s = 0.03527 GB/s on flash at 1 GB/s per TB, 8 W/TB -> 0.000282 kW.
    params = 2 * (2 * 1024**2 + 2 * 1024 * 8 * 128 + 2 * 1024 * 4096) + 2 * 32000 * 1024
    assert params == 90_701_824
    storage_kw = 14 * params / 1e9 / 36 * 8 / 1000
    facility_kw = 1.2 * (640 + 24 * 1.5 + 512 * 0.040 + 1024 * 0.015 + storage_kw)
    assert facility_kw == pytest.approx(854.2083, abs=1e-3)
    job = {"name": "toy-job", "model": {"layers": 2, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 1024},
           "tokens": 1e13, "deadline_days": 10, "global_batch": 1536, "stack": "megatron-2021", "data_bytes_per_token": 0,
           "parallelism": {"tp": 1, "pp": 1, "micro_batch": 1, "recompute": "none"},
           "checkpoint_interval_hours": 1, "checkpoint_window_s": 36, **NO_STORAGE_FLOOR}
    tight = ideal_instance(workloads=[job], facility={**NO_SITE_NETWORKS, "power_cap_mw": 0.5, "pue": 1.2, "rack_capex_usd": 0,
                                                     "cooling": {"air": {"max_kw_per_rack": 40, "capex_usd_per_kw": 0}}})
    sol = diagnose_solution(tight, solve_instance(tight, backend=backend), backend)
    assert sol.status == "infeasible" and sol.design is None
    fixes = {f.limit: f for f in find_fixes(tight, backend=backend)}
    power = fixes["power cap"]
    assert power.needed == pytest.approx(0.855)  # 854.208 kW, rounded up to the next kW
    assert power.verified and power.path == "facility.power_cap_mw"
    assert "raise the power cap by 0.355 MW (0.500 MW -> 0.855 MW" in sol.diagnosis[-2] + sol.diagnosis[-1]
    ok = solve_instance(ideal_instance(workloads=[job], objective="min_power"), backend=backend)
    assert ok.objective_value == pytest.approx(facility_kw, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_the_deadline_can_fix_it(backend):
    from optimizer.studies.explain import find_fixes

    # No facility limit binds (10 MW, no budget) but the deadline of 2 days is beyond any dp the
    # global batch allows: dp = 1536 gives 4357.6 / 1536 = 2.837 days. Only the deadline can move.
    acc_days = 1e13 * 372_768_768 / 10e12 / 86400 * 1.01
    inst = ideal_instance(workloads=[{
        "name": "rush", "model": {"layers": 2, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 1024},
        "tokens": 1e13, "deadline_days": 2, "global_batch": 1536, "stack": "megatron-2021",
        "parallelism": {"tp": 1, "pp": 1, "micro_batch": 1, "recompute": "none"},
        "checkpoint_interval_hours": 1, "checkpoint_window_s": 36, **NO_STORAGE_FLOOR}])
    fixes = find_fixes(inst, backend=backend)
    assert [f.limit for f in fixes] == ["deadline of job rush"]
    assert fixes[0].needed == pytest.approx(math.ceil(acc_days / 1536 * 100) / 100)  # 2.84 days
    assert fixes[0].verified


# ---------------------------------------------------------------------------------------------
# Serving, MIP level: integer replicas make a mix of accelerator types cheaper (Melange).
# ---------------------------------------------------------------------------------------------


def serving_data(b_node_price_usd: float) -> MipData:
    from optimizer.mip.data import ServiceData, ServingLayout

    free_net = FabricData("frontend:eth", radix=64, down=32, up=32, tier_capacity={1: 64, 2: 2048, 3: 65536},
                          switch_price_musd=0.0, switch_power_kw=0.0, endpoint_price_musd=0.0, endpoint_power_kw=0.0,
                          optic_price_musd=0.0, optic_power_kw=0.0, frontend_ports_per_node=1)
    svc = ServiceData("chat", demand_rps={"*": 10.0}, ttft_slo_s=1.0, layouts=[
        ServingLayout(0, "a", tp=1, batch=8, requests_per_s=4.0, ttft_s=0.1, per_node=1),
        ServingLayout(1, "b", tp=1, batch=8, requests_per_s=3.0, ttft_s=0.1, per_node=1),
    ])
    site = SiteData("dc", pue=1.0, power_cap_kw=None, max_racks=None, rack_capex_musd=0.0,
                    cooling_capex_musd_per_kw={"air": 0.0}, aux_cooling="air",
                    nodes_per_rack={"a": {"air": 10}, "b": {"air": 10}}, energy_musd_per_kw_year=0.0,
                    carbon_t_per_kw_year=0.0, site_capex_musd=0.0, rtt_ms={}, frontend=free_net)
    return MipData(
        name="serve", objective="min_tco", jobs=[], services=[svc],
        accelerators=[AcceleratorData("a", 0.100, 1.0, per_node=1), AcceleratorData("b", b_node_price_usd / 1e6, 1.0, per_node=1)],
        fabrics=[], storage=[StorageData("s", 1e-4, 0.001, 1.0, 1.0)], sites=[site],
        capex_cap_musd=None, horizon_years=1.0, maintenance_fraction=0.0,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_mix_of_two_types_is_cheapest(backend):
    # 10 req/s from replicas of 4 req/s ($100k) and 3 req/s ($80k): 3a = $300k, 4b = $320k,
    # 2a + 1b = $280k, 1a + 2b = $260k (exactly 10 req/s) -> the mix wins.
    data = serving_data(80_000)
    res, v = _solve(data, backend)
    assert res.objective * 1e6 == pytest.approx(260_000, abs=0.01)
    assert [round(res.values[v.units["chat", k, "dc"].index]) for k in (0, 1)] == [1, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_type_when_the_other_is_dear(backend):
    # b at $120k: 1a + 2b = $340k, 2a + 1b = $320k, 4b = $480k, 3a = $300k -> a alone.
    res, v = _solve(serving_data(120_000), backend)
    assert res.objective * 1e6 == pytest.approx(300_000, abs=0.01)
    assert [round(res.values[v.units["chat", k, "dc"].index]) for k in (0, 1)] == [3, 0]


def test_serving_unit_floor_and_the_lp_bound_it_buys(monkeypatch):
    # 10 req/s, the biggest unit serves 4: at least ceil(10 / 4) = 3 units. Without the floor the LP
    # relaxation buys 2.5 a-units ($250k); with it, 3 units that serve 10 req/s at least cost
    # 1a + 2b = $260k (b at $80k, 3 req/s): the LP bound becomes the integer optimum.
    import optimizer.mip.build as build
    from optimizer.mip.backends import solve as run

    def lp_bound():
        data = serving_data(80_000)
        m, v = build.build_model(data)
        m.minimize(build.objective_expr(data, v, "min_tco"))
        for var in m.vars:
            var.integer = False
        return m, run(m).objective * 1e6

    m, with_floor = lp_bound()
    floor = m.constraint("serving_units_floor[svc=chat]")
    assert floor.sense == ">=" and floor.rhs == 3
    assert with_floor == pytest.approx(260_000, abs=0.01)
    import optimizer.mip.families.serving as serving

    monkeypatch.setattr(serving, "_serving_unit_floors", lambda *a: None)
    assert lp_bound()[1] == pytest.approx(260_000, abs=0.01)  # the node floor (one replica per node here) holds it
    monkeypatch.setattr(serving, "_serving_node_floors", lambda *a: None)
    assert lp_bound()[1] == pytest.approx(250_000, abs=0.01)
