"""Issue 15: fabric compatibility, purchase units (NVL72 racks), own-versus-rent, storage systems and
the networks every node gets; each number below is worked out by hand in its comment."""

import math

import pytest

from models.candidates import job_table
from models.loader import InstanceError, instance_from_dict
from optimizer.solving.pipeline import solve_instance

BACKENDS = ["ortools", "pulp"]


def small_job(**over):
    job = {"name": "ft", "model": "llama2-7b", "tokens": 2e9, "deadline_days": 30, "global_batch": 256,
           "dataset_tb": 1, "checkpoint_window_s": 600}
    job.update(over)
    return job


def instance(catalog, workloads, **top):
    return instance_from_dict({"name": "t", "catalog": catalog, "workloads": workloads,
                               "facility": top.pop("facility", {"pue": 1.2, "energy_usd_per_kwh": 0.08}), **top})


# -- compatibility -----------------------------------------------------------------------------


def test_gaudi3_never_on_infiniband_and_tpu_never_bought():
    # Gaudi 3 has IB priced at a dollar: still never paired with it (only its integrated RoCE).
    inst = instance({"accelerators": ["gaudi3"], "fabrics": {"ib-ndr-400g": {"switch_price_usd": 1, "endpoint_price_usd": 1},
                                                             "gaudi3-roce-600g": {}}}, [small_job()])
    t = job_table(inst.training_jobs[0], inst.catalog)
    assert len(t) > 0 and set(t.fabrics[int(i)] for i in set(t.grid.fab.tolist())) == {"gaudi3-roce-600g"}
    for backend in BACKENDS:
        sol = solve_instance(inst, backend=backend)
        assert sol.verified and sol.jobs[0].fabric == "gaudi3-roce-600g"


def test_incompatible_pin_is_refused_naming_the_field():
    with pytest.raises(InstanceError, match=r"workloads\[0\]\.fabric: 'ib-ndr-400g' cannot be used by gaudi3"):
        instance({"accelerators": ["gaudi3"], "fabrics": ["ib-ndr-400g"]},
                 [small_job(accelerator="gaudi3", fabric="ib-ndr-400g")])


def test_each_accelerator_is_described_in_one_catalog_entry():
    from importlib import resources

    import yaml

    from models.loader import default_catalog_raw

    text = resources.files("models").joinpath("data/catalog.yaml").read_text()
    assert set(yaml.safe_load(text)) == {"accelerators", "fabrics", "storage", "calibration"}
    gb200 = default_catalog_raw()["accelerators"]["gb200"]
    assert (gb200["purchase_unit"], gb200["rack_nodes"], gb200["rent_usd_per_acc_hour"]) == ("rack", 18, 10.582)
    assert default_catalog_raw()["accelerators"]["gaudi3"]["compatible_fabrics"] == ["gaudi3-roce-600g"]


# -- purchase units: NVL72 ---------------------------------------------------------------------

# GB200 NVL72 as the catalog describes it (figures from the Blackwell datasheet; 120 kW per rack / 18 trays).
GB200 = {"peak_bf16_tflops": 2500, "peak_fp8_tflops": 5000, "peak_fp4_tflops": 10000, "hbm_gb": 186, "hbm_bw_tbs": 8.0,
         "scaleup_domain": 72, "scaleup_bw_gbs": 900, "accelerators_per_node": 4, "node_power_kw": 6.66,
         "node_price_usd": 172000, "node_rack_units": 2, "purchase_unit": "rack", "rack_nodes": 18,
         "liquid_cooled_only": True, "compatible_fabrics": ["ib-ndr-400g", "ib-xdr-800g", "roce-400g"],
         "rent_usd_per_acc_hour": 10.582}


def test_layout_nodes_pack_tp_groups_into_whole_domains():
    from models.schema import Accelerator
    from models.units import layout_nodes

    a = Accelerator(**GB200)
    # tp=8: 9 groups fill a 72-GPU domain; 10 groups = 80 GPUs = 20 trays (18 + 2).
    assert int(layout_nodes(a, 80, 8)) == 20
    # tp=16: 4 groups per domain (64 of 72 GPUs); 9 groups -> 3 racks: 2 x 18 trays + 16/4 = 40 trays.
    assert int(layout_nodes(a, 144, 16)) == 40
    # tp within a tray: plain whole trays, ceil(10 / 4) = 3.
    assert int(layout_nodes(a, 10, 2)) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_nvl72_bought_in_whole_liquid_cooled_racks(backend):
    inst = instance({"accelerators": {"gb200": GB200}, "fabrics": ["ib-ndr-400g", "eth-100g"]},
                    [small_job(tokens=60e9, deadline_days=10)])
    sol = solve_instance(inst, backend=backend)
    assert sol.verified
    j = sol.jobs[0]
    nodes = sol.design.nodes["gb200"]
    assert set(nodes) == {"liquid"}  # never air
    racks = sol.design.racks["gb200"]["liquid"]
    assert racks == math.ceil(j.nodes / 18) and nodes["liquid"] == 18 * racks  # whole racks only


# -- own versus rent ---------------------------------------------------------------------------


def _ft(tokens, procurement="either", committed=None):
    # committed None: on-demand only, so renting grows linearly with the job's days.
    return instance({"accelerators": {"h100-sxm": {"rent_committed_usd_per_acc_hour": committed}}, "fabrics": ["ib-ndr-400g"]},
                    [small_job(tokens=tokens, deadline_days=None)], procurement=procurement)


def test_own_versus_rent_flips_at_the_hand_computed_duration():
    own = solve_instance(_ft(20e9, "own"))
    j = own.jobs[0]
    # Owned TCO does not depend on how long the job runs (the hardware is bought for the horizon);
    # renting bills nodes x 8 GPUs x 24 h x $5.970 per GPU-hour per day. Break-even days = TCO / that.
    per_day = j.nodes * 8 * 24 * 5.970
    flip_days = own.design.tco_usd / per_day
    tokens_per_day = 20e9 / j.days
    for backend in BACKENDS:
        short = solve_instance(_ft(0.95 * flip_days * tokens_per_day), backend=backend)
        long = solve_instance(_ft(1.05 * flip_days * tokens_per_day), backend=backend)
        assert short.verified and long.verified
        assert short.jobs[0].procurement == "rent" and long.jobs[0].procurement == "own"
        r = short.jobs[0]
        assert r.rent_usd == pytest.approx(r.nodes * 8 * 24 * 5.970 * r.days, rel=1e-9)
        # Any node count bills about the same GPU-hours (it may take 2 nodes for half the days).
        assert r.rent_usd == pytest.approx(0.95 * flip_days * per_day, rel=0.01)
        assert short.design.capex_usd["total"] == 0 and short.design.tco_usd == pytest.approx(short.jobs[0].rent_usd)


def test_rent_rate_is_the_cheaper_of_on_demand_and_whole_committed_terms():
    from models.loader import default_catalog

    h100 = default_catalog().accelerators["h100-sxm"]  # $5.970 on demand, $2.95 committed for 12 months
    # 8 GPUs for h hours: on demand 8 h x 5.970; committed 8 x ceil(h / 8,760) x 8,760 x 2.95. A year
    # of commitment costs 8,760 x 2.95 = $25,842 per GPU = 4,328.6 on-demand hours = 180.4 days.
    flip_h = 8760 * 2.95 / 5.970
    assert h100.rent_usd(8, 0.99 * flip_h) == pytest.approx((8 * 0.99 * flip_h * 5.970, "on-demand"))
    assert h100.rent_usd(8, 1.01 * flip_h) == pytest.approx((8 * 8760 * 2.95, "committed"))
    # Two years and a day: three whole terms, still cheaper than 731 days on demand (4.22 x $25,842 < ...).
    assert h100.rent_usd(1, 731 * 24) == pytest.approx((3 * 8760 * 2.95, "committed"))
    # A 10-day fine-tune rents on demand; the same job run 400 days commits (2 terms).
    ft = solve_instance(_ft(2e9, "rent", committed=2.95))
    j = ft.jobs[0]
    assert ft.verified and j.days < 180 and j.rent_rate == "on-demand"
    assert j.rent_usd == pytest.approx(j.nodes * 8 * j.days * 24 * 5.970, rel=1e-9)
    long = solve_instance(_ft(2e9 * 400 / j.days, "rent", committed=2.95))
    j = long.jobs[0]
    assert long.verified and j.days > 365 and j.rent_rate == "committed"
    assert j.rent_usd == pytest.approx(j.nodes * 8 * math.ceil(j.days / 365) * 8760 * 2.95, rel=1e-9)


def test_a_multi_year_rented_service_commits():
    svc = {"kind": "inference", "name": "chat", "model": "llama3-8b", "requests_per_s": 1.0, "input_tokens": 500,
           "output_tokens": 100, "ttft_s": 2.0, "tpot_s": 0.1, "accelerators": ["h100-sxm"], "procurement": "rent"}
    sol = solve_instance(instance({"accelerators": ["h100-sxm"], "fabrics": ["ib-ndr-400g"]}, [svc]))
    assert sol.verified
    g = sol.services[0].groups[0]
    # 5-year horizon, 12-month term: 5 whole terms at $2.95 beat 43,800 h at $5.970; billed per year.
    assert g.procurement == "rent" and g.rent_rate == "committed"
    assert g.rent_usd_per_year == pytest.approx(g.replicas * g.tp * 8760 * 2.95, rel=1e-9)
    # The report's procurement table names rented replicas, not owned nodes (it said "0 x h100-sxm node").
    from optimizer.present.report import procurement_tables
    inst = instance({"accelerators": ["h100-sxm"], "fabrics": ["ib-ndr-400g"]}, [svc])
    rows = next(rows for title, _, rows in procurement_tables(sol, inst) if title.startswith("Procurement"))
    hardware = [r[3] for r in rows if r[2] == "rent"]
    assert hardware == [f"{g.replicas} replica{'s' * (g.replicas != 1)} of {g.tp} x h100-sxm"]


def test_break_even_follows_the_rent_staircase():
    from models.loader import default_catalog
    from optimizer.solving.procurement import extra_days

    h100 = default_catalog().accelerators["h100-sxm"]
    day = 72 * 24 * 5.970  # 72 GPUs on demand, per day
    # Within the on-demand stretch (3.7 + 50 days < 180.4): linear, 50 days.
    assert extra_days(h100, 72, 3.7, 50 * day) == pytest.approx(50, rel=1e-9)
    # A gap past one committed year ($1.861M for 72 GPUs) needs a second term: rent jumps to 2 years'
    # $3.722M once the job passes 365 days, so the break-even is 365 - 3.7 days.
    gap = 72 * 8760 * 2.95 * 1.5 - 3.7 * day
    assert extra_days(h100, 72, 3.7, gap) == pytest.approx(365 - 3.7, rel=1e-6)
    # Renting wins if the job were shorter: 2 days fewer on demand.
    assert extra_days(h100, 72, 3.7, -2 * day) == pytest.approx(-2, rel=1e-9)
    assert extra_days(h100, 72, 3.7, -10 * day) is None  # not even a zero-day job closes it


def test_break_even_is_shown_in_text_html_and_json():
    from optimizer.present.html import render_html
    from optimizer.present.report import render_markdown

    sol = solve_instance(_ft(2e9))
    row = next(r for r in sol.procurement if r["workload"] == "ft")
    extra = row["break_even_extra_days"]
    assert sol.jobs[0].procurement == "rent" and extra > 0
    # Linear on demand: owning wins after (TCO owned - TCO rented) / rent per day more days.
    j = sol.jobs[0]
    assert extra == pytest.approx((row["tco_owned_usd"] - row["tco_rented_usd"]) / (j.rent_usd / j.days), rel=1e-6)
    words = f"owning wins if it ran {extra:,.1f} more days"
    doc = sol.to_dict()
    assert doc["procurement"][0]["break_even_extra_days"] == extra
    assert words in render_markdown(sol, _ft(2e9)) and words in render_html(doc)


def test_rent_only_accelerators_are_never_bought():
    inst = instance({"accelerators": ["trainium2", "h100-sxm"], "fabrics": ["efa-v3", "ib-ndr-400g"]}, [small_job()])
    sol = solve_instance(inst)
    assert sol.verified and sol.jobs[0].accelerator == "h100-sxm" and sol.jobs[0].procurement == "own"
    rented = solve_instance(inst.model_copy(update={"procurement": "rent"}))
    assert rented.verified and rented.jobs[0].procurement == "rent" and not rented.design.nodes


# -- storage systems ---------------------------------------------------------------------------


@pytest.mark.parametrize("dataset_tb, window_s", [(3200, 600), (10, 0.4)])
def test_storage_units_cover_capacity_and_bandwidth_by_hand(dataset_tb, window_s):
    from models.candidates import checkpoint_write_gbps, storage_usable_tb
    from models.presets import resolve_model

    inst = instance({"accelerators": ["h100-sxm"], "fabrics": ["ib-ndr-400g"], "storage": ["flash-pfs"]},
                    [small_job(dataset_tb=dataset_tb, checkpoint_window_s=window_s)])
    job, dims = inst.training_jobs[0], resolve_model("llama2-7b")
    # flash-pfs: 500 usable TB, 30 GB/s write per unit, at least 4 units. Case 1: 3,200 TB of data ->
    # 7 units by capacity; case 2: 14 B x 6.7e9 params = 94 GB in 0.4 s = 235 GB/s -> 8 units by writes.
    need = max(4, math.ceil(storage_usable_tb(job, dims) / 500), math.ceil(checkpoint_write_gbps(job, dims) / 30))
    assert need == (7 if dataset_tb > 1000 else 8)
    for backend in BACKENDS:
        sol = solve_instance(inst, backend=backend)
        site = sol.design.sites[0]
        assert sol.verified and site.storage_units == {"flash-pfs": need}
        assert site.storage_racks == math.ceil(need * 4 / 42)  # 4 U each, 42 U racks
        assert sol.design.capex_usd["storage"] == pytest.approx(need * 450_000)


# -- FP4 serving -------------------------------------------------------------------------------


def _wide_job(**over):
    # llama2-7b (6.74e9 params) pinned to tp8 dp64 = 512 H100s, no sharding: every replica holds it all.
    return small_job(tokens=20e9, deadline_days=None, parallelism={"tp": 8, "pp": 1, "dp": 64, "micro_batch": 1,
                                                                    "sharding": "none", "distributed_optimizer": False},
                     **over)


def _flash(job):
    return instance({"accelerators": ["h100-sxm"], "fabrics": ["ib-ndr-400g"], "storage": ["flash-pfs"]}, [job])


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_accelerator_floor_sizes_the_flash_by_hand(backend):
    from models.presets import resolve_model

    sol = solve_instance(_flash(_wide_job()), backend=backend)
    j, site = sol.jobs[0], sol.design.sites[0]
    assert sol.verified and j.accelerators == 512
    # Floors (DGX SuperPOD RA 'best', 125 / 62 GB/s per 256 GPUs): 250 GB/s read, 124 GB/s write.
    # Restart reload: 64 replicas x 14 B x 6.74e9 = 6.04 TB in the 600 s window = 10 GB/s; data reads
    # (4 B per token) are far below. Flash units: max(4, 250 / 60 -> 5, 124 / 30 -> 5, 1 TB / 500) = 5.
    params = resolve_model("llama2-7b").params
    s = j.storage
    assert s["read_gbps"] == pytest.approx(250) and s["read_sized_by"] == "per accelerator"
    assert s["write_gbps"] == pytest.approx(124) and s["write_sized_by"] == "per accelerator"
    assert s["reload_gb"] == pytest.approx(64 * 14 * params / 1e9)
    # Goodput sees the storage: the checkpoint (94 GB) stalls 94 / 124 = 0.76 s, not the 600 s window,
    # and a restart reads 6.04 TB at 250 GB/s = 24 s.
    assert s["checkpoint_write_s"] == pytest.approx(14 * params / 1e9 / 124)
    assert s["checkpoint_reload_s"] == pytest.approx(64 * 14 * params / 1e9 / 250)
    assert site.storage_units == {"flash-pfs": 5} and sol.design.capex_usd["storage"] == pytest.approx(5 * 450_000)
    z = site.storage_sizing
    assert (z["read_gbps_needed"], z["read_gbps"], z["write_gbps"]) == pytest.approx((250, 300, 150))
    assert z["sized_by"] == "read bandwidth"  # 250 / 300 > 124 / 150


@pytest.mark.parametrize("sharded, units", [(False, 6), (True, 4)])
def test_restart_reload_sizes_reads_by_hand(sharded, units):
    from models.presets import resolve_model

    job = _wide_job(storage_read_gbs_per_acc=0, storage_write_gbs_per_acc=0, checkpoint_reload_s=20)
    if sharded:  # ZeRO-1 (distributed optimizer): replicas read 2 B of weights each, the 12 B of state once
        job["parallelism"].update(sharding="zero1", distributed_optimizer=True)
    sol = solve_instance(_flash(job))
    params = resolve_model("llama2-7b").params
    # Unsharded: 64 x 14 B x 6.74e9 = 6.04 TB in 20 s = 302 GB/s -> 6 units (5 give 300).
    # Sharded: (64 x 2 + 12) B x 6.74e9 = 944 GB in 20 s = 47 GB/s -> the 4-unit minimum.
    gb = (64 * 2 + 12 if sharded else 64 * 14) * params / 1e9
    s = sol.jobs[0].storage
    assert sol.verified and s["reload_gb"] == pytest.approx(gb) and s["read_gbps"] == pytest.approx(gb / 20)
    assert s["read_sized_by"] == "checkpoint reload" and s["checkpoint_reload_s"] == pytest.approx(20)
    assert sol.design.sites[0].storage_units == {"flash-pfs": units}
    assert sol.design.sites[0].storage_sizing["sized_by"] == ("read bandwidth" if not sharded else "smallest cluster")


def test_verifier_catches_storage_short_of_the_floor():
    import copy

    from optimizer.solving.verify import VerificationError, verify_solution

    inst = _flash(_wide_job())
    sol = solve_instance(inst)
    cut = copy.deepcopy(sol)
    cut.design.sites[0].storage_units = {"flash-pfs": 4}  # 240 GB/s of reads for a 250 GB/s floor
    with pytest.raises(VerificationError, match=r"reads at 240.00 GB/s, jobs need 250.00 \(data reads, per-accelerator floor, restart reload\)"):
        verify_solution(inst, cut)


def test_fp4_serving_halves_the_weights_and_runs_only_where_there_are_fp4_units():
    from optimizer import api

    fp4 = api.estimate("llama3-70b", "b300", mode="inference", tp=1, batch=8, precision="fp4",
                       input_tokens=1000, output_tokens=200)
    fp8 = api.estimate("llama3-70b", "b300", mode="inference", tp=1, batch=8, precision="fp8",
                       input_tokens=1000, output_tokens=200)
    # 70.6e9 parameters: 0.5 B each in fp4 = 35.3 GB of weights, half of fp8's.
    assert fp4["memory_per_acc_gb"] < fp8["memory_per_acc_gb"] - 30
    inst = instance({"accelerators": ["b300", "h100-sxm"]}, [{
        "name": "chat", "kind": "inference", "model": "llama3-8b", "precision": "fp4", "requests_per_s": 10,
        "input_tokens": 500, "output_tokens": 100, "ttft_s": 1.0, "tpot_s": 0.05}])
    sol = solve_instance(inst)
    assert sol.verified and {g.accelerator for g in sol.services[0].groups} == {"b300"}  # H100: no FP4 units
