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


def _ft(tokens, procurement="either"):
    return instance({"accelerators": ["h100-sxm"], "fabrics": ["ib-ndr-400g"]},
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
