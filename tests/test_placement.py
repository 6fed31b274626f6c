"""Placement across sites, worked by hand on an idealised accelerator, asserted on both backends."""

import copy

import pytest

from models.loader import instance_from_dict
from optimizer.solving.pipeline import solve_instance
from optimizer.solving.verify import VerificationError, verify_solution

from .test_sweep import LEGACY_FLASH

BACKENDS = ["ortools", "pulp"]
IDEAL = {"gemm_efficiency_max": 1.0, "unmeasured_gemm_ratio": 1.0, "gemm_half_dim": 0.0, "elementwise_passes": 0.0, "attention_passes": 0.0,
         "comm_efficiency": 1.0, "dp_overlap": 1.0, "memory_reserved_gb": 0.0, "hbm_efficiency": 1.0,
         "serving_step_overhead_s": 0.0}
TOY_MODEL = {"layers": 2, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 1024}
NO_EXTRAS = {"cooling": {"air": {"max_kw_per_rack": 40, "capex_usd_per_kw": 0}}, "rack_capex_usd": 0, "pue": 1.2, "facility_capex_usd_per_mw": 0,
             "frontend_fabric": None, "storage_fabric": None, "management_fabric": None}  # ideal sites: no site networks


def site(name, **over):
    out = {"name": name, "power_cap_mw": 10, "energy_usd_per_kwh": 0.05, **NO_EXTRAS}
    out.update(over)
    return out


def instance(sites, workloads, **budget):
    return instance_from_dict({
        "name": "placement",
        "catalog": {
            "accelerators": {"toy": {
                "peak_bf16_tflops": 10, "hbm_gb": 1000, "hbm_bw_tbs": 1, "scaleup_domain": 8, "scaleup_bw_gbs": 100,
                "accelerators_per_node": 8, "node_power_kw": 10, "node_price_usd": 100_000, "node_rack_units": 8}},
            "fabrics": ["ib-ndr-400g"], "storage": {"flash-pfs": LEGACY_FLASH}, "calibration": IDEAL,
        },
        "workloads": workloads,
        "sites": sites,
        "budget": {"horizon_years": 1, "maintenance_pct_per_year": 0, **budget},
    }, "placement")


JOB = {"name": "job", "model": TOY_MODEL, "tokens": 1e13, "deadline_days": 10, "global_batch": 1536, "stack": "megatron-2021",
       "parallelism": {"tp": 1, "pp": 1, "micro_batch": 1, "recompute": "none"},
       "checkpoint_interval_hours": 1, "checkpoint_window_s": 36, "storage_read_gbs_per_acc": 0, "storage_write_gbs_per_acc": 0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_job_moves_when_its_preferred_site_shrinks(backend):
    sites = [site("cheap", energy_usd_per_kwh=0.04), site("dear", energy_usd_per_kwh=0.10)]
    sol = solve_instance(instance(sites, [JOB]), backend=backend)
    assert sol.jobs[0].site == "cheap" and sol.verified
    need_mw = sol.design.site("cheap").facility_power_kw / 1000  # (64 + 3 spare) nodes x 10 kW x PUE 1.2 + the NDR fabric
    assert 0.804 < need_mw < 0.9
    sites[0]["power_cap_mw"] = round(need_mw - 0.01, 3)
    moved = solve_instance(instance(sites, [JOB]), backend=backend)
    assert moved.jobs[0].site == "dear" and moved.verified
    assert moved.design.site("cheap").open is False
    # Same hardware, dearer energy: TCO grows by exactly the energy price difference.
    fac_kw = moved.design.site("dear").facility_power_kw
    assert fac_kw == pytest.approx(need_mw * 1000)
    assert moved.objective_value - sol.objective_value == pytest.approx(fac_kw * 8760 * 0.06, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_carbon_price_flips_the_site_at_the_hand_computed_threshold(backend):
    # dirty: $0.04/kWh at 700 g/kWh; clean: $0.08/kWh at 50 g/kWh. Same PUE, no other difference:
    # per facility kWh, 0.04 + p x 700e-6 = 0.08 + p x 50e-6  at  p* = 0.04 / 650e-6 = $61.54/t.
    sites = [site("dirty", energy_usd_per_kwh=0.04, carbon_g_per_kwh=700),
             site("clean", energy_usd_per_kwh=0.08, carbon_g_per_kwh=50)]
    threshold = 0.04 / 650e-6
    assert threshold == pytest.approx(61.538, abs=1e-3)
    below = solve_instance(instance(sites, [JOB], carbon_price_usd_per_t=threshold - 1.5), backend=backend)
    above = solve_instance(instance(sites, [JOB], carbon_price_usd_per_t=threshold + 1.5), backend=backend)
    assert below.jobs[0].site == "dirty" and above.jobs[0].site == "clean"
    fac_kw = above.design.facility_power_kw
    assert above.design.carbon_t_per_year == pytest.approx(fac_kw * 8760 * 50 / 1e6)
    assert below.design.carbon_t_per_year == pytest.approx(fac_kw * 8760 * 700 / 1e6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_carbon_and_carbon_cap(backend):
    sites = [site("dirty", energy_usd_per_kwh=0.04, carbon_g_per_kwh=700),
             site("clean", energy_usd_per_kwh=0.08, carbon_g_per_kwh=50)]
    inst = instance(sites, [JOB])
    greenest = solve_instance(inst.model_copy(update={"objective": "min_carbon"}), backend=backend)
    assert greenest.jobs[0].site == "clean"
    t_clean = greenest.objective_value
    capped = solve_instance(instance(sites, [JOB], carbon_cap_t_per_year=t_clean * 2), backend=backend)
    assert capped.jobs[0].site == "clean"  # the dirty site would emit 14x more


SERVICE = {"name": "chat", "kind": "inference", "model": TOY_MODEL, "demand_by_region": {"city": 50},
           "input_tokens": 500, "output_tokens": 100, "ttft_s": 0.030, "tpot_s": 0.050}


@pytest.mark.parametrize("backend", BACKENDS)
def test_tight_ttft_forces_the_edge(backend):
    # Prefill of 500 tokens on one accelerator: (2 x 90.7M params x 500 + 2 x 2 layers x 500^2 x 1024)
    # / 10 TFLOP/s = 9.2 ms (faster with tensor parallelism). From the core the 50 ms RTT alone breaks
    # the 30 ms SLO; from the edge, 2 ms + at most 9.2 ms fits. With a 100 ms SLO the cheap core wins.
    sites = [site("core", energy_usd_per_kwh=0.04, latency_ms={"city": 50}),
             site("edge", energy_usd_per_kwh=0.30, site_capex_usd=200_000, latency_ms={"city": 2})]
    sol = solve_instance(instance(sites, [SERVICE]), backend=backend)
    g = sol.services[0].groups
    assert {x.site for x in g} == {"edge"} and sol.verified
    one_acc_s = (2 * 90_701_824 * 500 + 2 * 2 * 500**2 * 1024) / 10e12
    assert one_acc_s == pytest.approx(0.0092, abs=1e-4)
    assert all(x.ttft_s <= one_acc_s * 1.001 for x in g)
    loose = solve_instance(instance(sites, [dict(SERVICE, ttft_s=0.100)]), backend=backend)
    assert {x.site for x in loose.services[0].groups} == {"core"}
    assert loose.design.site("edge").open is False

    # The verifier re-checks latency: move the tight service's replicas to the core and it objects.
    wrong = copy.deepcopy(sol)
    wrong.services[0].groups[0].site = "core"
    with pytest.raises(VerificationError, match="RTT 50 ms .* breaks the TTFT SLO"):
        verify_solution(instance(sites, [SERVICE]), wrong)


def test_unreachable_region_is_a_clear_error():
    sites = [site("core", latency_ms={"town": 5})]
    with pytest.raises(Exception, match="no site gives a latency to city"):
        instance(sites, [SERVICE])


def test_facility_or_sites_not_both():
    from models.loader import InstanceError

    with pytest.raises(InstanceError, match="either `facility`"):
        instance_from_dict({"workloads": [JOB], "facility": {"power_cap_mw": 1}, "sites": [site("a")]}, "x")


def _built(inst):
    from optimizer.mip.build import build_model
    from optimizer.mip.data import build_data
    from optimizer.solving.pipeline import prepare, prepare_services

    d = build_data(inst, prepare(inst)[1], prepare_services(inst))
    return d, *build_model(d)


def test_site_cover_cuts_follow_the_hand_arithmetic():
    # The job needs 64 nodes + 3 hot spares x 10 kW = 670 kW of IT (spares: Poisson mean 64 x 8 x
    # 1.479e-5 x 48 h = 0.363 nodes out, P(more than 3 out) = 5.4e-4 <= 1e-3 while P(more than 2) =
    # 6.1e-3). 'small' and 'mid' each hold 0.5 MW / PUE 1.2 = 416.7 kW: too small alone, enough
    # together (833 kW). So some site besides 'small' is open, and
    # some site besides 'mid' is open.
    from optimizer.mip.build import least_it_power_kw

    sites = [site("small", power_cap_mw=0.5), site("mid", power_cap_mw=0.5), site("big", power_cap_mw=10)]
    d, m, v = _built(instance(sites, [JOB]))
    assert least_it_power_kw(d) == pytest.approx(670.0)
    cuts = {c.name: c for c in m.constraints if c.name.startswith("site_cover")}
    assert sorted(cuts) == ["site_cover[closed_alone_too_small=mid]", "site_cover[closed_alone_too_small=small]"]
    small_cut = cuts["site_cover[closed_alone_too_small=small]"]
    assert small_cut.sense == ">=" and small_cut.rhs == 1
    assert {m.vars[i].name for i in small_cut.coefs} == {"site_open[site=mid]", "site_open[site=big]"}
    assert "site_count[least_sites_for_least_it_power]" not in {c.name for c in m.constraints}  # 'big' alone will do
    # Three sites of 416.7 kW: any two hold 670 kW, none alone: at least two open.
    sites[2]["power_cap_mw"] = 0.5
    _, m3, _ = _built(instance(sites, [JOB]))
    count = m3.constraint("site_count[least_sites_for_least_it_power]")
    assert count.sense == ">=" and count.rhs == 2 and len(count.coefs) == 3
    assert len([c for c in m3.constraints if c.name.startswith("site_cover")]) == 3
    # Enough room at every site alone: no cut.
    sites[0]["power_cap_mw"] = sites[1]["power_cap_mw"] = sites[2]["power_cap_mw"] = 0.85  # 708 kW each
    _, m2, _ = _built(instance(sites, [JOB]))
    assert not [c for c in m2.constraints if c.name.startswith("site_cover")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_site_cover_cuts_do_not_change_the_answer(backend, monkeypatch):
    import optimizer.mip.build as build

    sites = [site("small", power_cap_mw=0.5, energy_usd_per_kwh=0.01), site("big", energy_usd_per_kwh=0.05)]
    with_cuts = solve_instance(instance(sites, [JOB]), backend=backend)
    monkeypatch.setattr(build, "add_site_cover", lambda m, d, v: None)
    without = solve_instance(instance(sites, [JOB]), backend=backend)
    assert with_cuts.jobs[0].site == without.jobs[0].site == "big"  # 'small' is cheap but cannot hold it
    assert with_cuts.objective_value == pytest.approx(without.objective_value, rel=1e-9)


def test_switches_outside_the_built_depth_are_infeasible():
    """An incumbent a solver stops at must not pay for switches the design does not report."""
    from optimizer.mip.backends import solve as run
    from optimizer.mip.build import objective_expr

    inst = instance([site("only")], [JOB])
    d, m, v = _built(inst)
    m.minimize(objective_expr(d, v, "min_tco"))
    values = list(run(m).values)
    assert not m.violations(values)
    # (64 + 3 spare) nodes x 8 ports = 536 endpoints: two tiers of radix-64 switches (17 leaves, 9 spines).
    assert values[v.tiers["ib-ndr-400g", "only", 2].index] == pytest.approx(1)
    assert values[v.leaves["ib-ndr-400g", "only", 2].index] == pytest.approx(17)
    values[v.spines["ib-ndr-400g", "only", 3].index] += 1  # a spare core switch of a depth not built
    assert "switches_in_depth[fabric=ib-ndr-400g,site=only,tiers=3]" in [x.name for x in m.violations(values)]
    values[v.spines["ib-ndr-400g", "only", 3].index] -= 1
    values[v.tiers["ib-ndr-400g", "only", 1].index] = 1  # a one-switch depth built beside, with nothing on it
    assert "tier_in_use[fabric=ib-ndr-400g,site=only,tiers=1]" in [x.name for x in m.violations(values)]
