"""Serving in the MIP by hand: packing replicas of two services into one node, disaggregated pools
sized separately, and percentile SLOs checked by the verifier at the load a group carries."""

import copy

import pytest

from models.loader import instance_from_dict
from models.perf.pools import kv_bytes_per_request, prefill_capacity_rps, prefill_latency
from models.presets import PRESETS
from optimizer.mip.build import build_model, objective_expr
from optimizer.mip.backends import solve as run_backend
from optimizer.mip.data import AcceleratorData, FabricData, MipData, ServiceData, ServingLayout, SiteData, StorageData
from optimizer.solving.pipeline import solve_instance
from optimizer.solving.verify import VerificationError, verify_solution

BACKENDS = ["ortools", "pulp"]


def _data(services, node_price_usd=100_000.0) -> MipData:
    free = FabricData("frontend:eth", radix=64, down=32, up=32, tier_capacity={1: 64, 2: 2048, 3: 65536},
                      switch_price_musd=0.0, switch_power_kw=0.0, endpoint_price_musd=0.0, endpoint_power_kw=0.0,
                      optic_price_musd=0.0, optic_power_kw=0.0, frontend_ports_per_node=1)
    site = SiteData("dc", pue=1.0, power_cap_kw=None, max_racks=None, rack_capex_musd=0.0,
                    cooling_capex_musd_per_kw={"air": 0.0}, aux_cooling="air", nodes_per_rack={"g": {"air": 10}},
                    energy_musd_per_kw_year=0.0, carbon_t_per_kw_year=0.0, site_capex_musd=0.0, rtt_ms={},
                    frontend=free)
    return MipData(name="pack", objective="min_tco", jobs=[], services=services,
                   accelerators=[AcceleratorData("g", node_price_usd / 1e6, 1.0, per_node=8)], fabrics=[],
                   storage=[StorageData("s", 1e-4, 0.001, 1.0, 1.0)], sites=[site], capex_cap_musd=None,
                   horizon_years=1.0, maintenance_fraction=0.0)


def _solve(data, backend):
    m, v = build_model(data)
    m.minimize(objective_expr(data, v, "min_tco"))
    res = run_backend(m, backend=backend, fallback=False)
    return res, v


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_services_share_one_node(backend):
    # A: 25 req/s on one-GPU replicas of 10 req/s -> 3 replicas (3 GPUs); B: 15 req/s on a four-GPU
    # replica of 20 req/s -> 1 replica (4 GPUs). 7 GPUs fit one 8-GPU node: $100k (dedicated
    # nodes would have cost two).
    a = ServiceData("a", {"*": 25.0}, 1.0, [ServingLayout(0, "g", tp=1, batch=8, requests_per_s=10.0, ttft_s=0.1)])
    b = ServiceData("b", {"*": 15.0}, 1.0, [ServingLayout(0, "g", tp=4, batch=8, requests_per_s=20.0, ttft_s=0.1)])
    res, v = _solve(_data([a, b]), backend)
    assert res.objective * 1e6 == pytest.approx(100_000, abs=0.01)
    assert round(res.values[v.units["a", 0, "dc"].index]) == 3
    assert round(res.values[v.units["b", 0, "dc"].index]) == 1
    assert round(res.values[v.serving_node_count["g", "dc"].index]) == 1
    # One more B replica's worth of demand (4 more GPUs: 11 > 8) needs a second node.
    b2 = ServiceData("b", {"*": 35.0}, 1.0, [ServingLayout(0, "g", tp=4, batch=8, requests_per_s=20.0, ttft_s=0.1)])
    res, v = _solve(_data([a, b2]), backend)
    assert res.objective * 1e6 == pytest.approx(200_000, abs=0.01)


@pytest.mark.parametrize("backend", BACKENDS)
def test_disaggregated_pools_sized_separately(backend):
    # 17 req/s; prefill replicas (1 GPU) take 2 prompts/s -> ceil(17/2) = 9 (9 GPUs); decode
    # replicas (2 GPUs) take 10 req/s -> 2 (4 GPUs); 13 GPUs -> 2 nodes. A combined 4-GPU layout
    # at 5 req/s would need 4 replicas = 16 GPUs = 2 nodes too, at 2.5 req/s 7 replicas = 4 nodes.
    lays = [ServingLayout(0, "g", tp=1, batch=1, requests_per_s=2.0, ttft_s=0.5, role="prefill"),
            ServingLayout(1, "g", tp=2, batch=64, requests_per_s=10.0, ttft_s=0.0, role="decode"),
            ServingLayout(2, "g", tp=4, batch=16, requests_per_s=2.5, ttft_s=0.3)]
    res, v = _solve(_data([ServiceData("rag", {"*": 17.0}, 1.0, lays)]), backend)
    assert res.objective * 1e6 == pytest.approx(200_000, abs=0.01)
    assert [round(res.values[v.units["rag", k, "dc"].index]) for k in (0, 1, 2)] == [9, 2, 0]
    # Decode slower (4 req/s): 5 decode replicas (10 GPUs) + 9 prefill = 19 GPUs = 3 nodes, while
    # combined replicas alone take 28 GPUs = 4 nodes; the pools still win.
    lays[1] = ServingLayout(1, "g", tp=2, batch=64, requests_per_s=4.0, ttft_s=0.0, role="decode")
    res, v = _solve(_data([ServiceData("rag", {"*": 17.0}, 1.0, lays)]), backend)
    assert res.objective * 1e6 == pytest.approx(300_000, abs=0.01)


def test_pool_physics_by_hand():
    # Llama 3 70B: 80 layers, 8 KV heads of 128; fp8 KV (1 B): 2*80*8*128 = 163,840 B per token.
    assert kv_bytes_per_request(PRESETS["llama3-70b"], "fp8", 12000) == pytest.approx(163_840 * 12000)
    # M/D/1 below rho = 0.5 waits with probability rho < 0.5: the median TTFT is the bare prefill.
    assert float(prefill_latency(0.1, 3.0)["ttft_p50_s"]) == pytest.approx(0.1)
    # No percentile SLO: the full prefill rate, or the KV link if it is slower.
    assert float(prefill_capacity_rps(0.1, 0.05, 100.0, {})) == pytest.approx(10.0)
    assert float(prefill_capacity_rps(0.1, 0.05, 4.0, {})) == pytest.approx(4.0)
    # A p99 budget below the bare prefill plus transfer: nothing.
    assert float(prefill_capacity_rps(0.1, 0.05, 100.0, {"ttft_p99_s": 0.14})) == 0.0


def _voice(**slo):
    return instance_from_dict({
        "name": "voice-p99",
        "catalog": {"accelerators": ["b200"]},
        "workloads": [{"name": "voice", "kind": "inference", "model": "llama3-8b", "requests_per_s": 300,
                       "input_tokens": 300, "output_tokens": 120, "ttft_s": 0.5, "tpot_s": 0.03, **slo}],
        "facility": {"power_cap_mw": 1, "pue": 1.2, "energy_usd_per_kwh": 0.08,
                     "cooling": {"air": {"max_kw_per_rack": 40, "capex_usd_per_kw": 1500}}},
        "budget": {"horizon_years": 4},
    })


def test_percentile_slos_size_capacity_and_are_verified():
    loose = solve_instance(_voice())
    tight = solve_instance(_voice(ttft_p99_s=0.08, tpot_p99_s=0.025))
    assert tight.verified and loose.verified
    cap = lambda sol: sum(g.replicas * g.requests_per_s_each for g in sol.services[0].groups)  # noqa: E731
    n = lambda sol: sum(g.replicas for g in sol.services[0].groups)  # noqa: E731
    # Sized below full load to meet the p99s: each replica is credited with fewer requests/s, so
    # never fewer replicas are bought.
    each = lambda sol: max(g.requests_per_s_each for g in sol.services[0].groups)  # noqa: E731
    assert each(tight) < each(loose) and n(tight) >= n(loose)
    for g in tight.services[0].groups:
        assert g.utilization < 1 and g.ttft_p99_s <= 0.08 * (1 + 1e-6) and g.tpot_p99_s <= 0.025 * (1 + 1e-6)
    assert cap(tight) >= 300
    crowded = copy.deepcopy(tight)
    g = max(crowded.services[0].groups, key=lambda g: g.replicas)
    g.replicas -= 1
    others = [x for x in crowded.services[0].groups if x is not g]
    for x in others:  # the others stay as they were; the remaining replicas take the lost one's load
        assert x.replicas >= 1
    with pytest.raises(VerificationError, match="breaks the SLO|capacity"):
        verify_solution(_voice(ttft_p99_s=0.08, tpot_p99_s=0.025), crowded)
