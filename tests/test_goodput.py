"""Failures in time to train (goodput, Daly interval, hot spares), facility tiers, N+k replicas, backups."""

import math

import numpy as np
import pytest

from models.candidates import checkpoint_tb, job_table
from models.facility import (
    backup_usable_tb, backup_write_gbps, facility_capex_usd, facility_capex_usd_per_mw, replica_failures_per_hour,
    replica_unavailability, site_availability, spare_replicas, tier_usd_per_mw,
)
from models.loader import InstanceError, default_catalog, instance_from_dict
from models.perf.goodput import (
    INTERRUPTION_CLASSES, checkpoint_interval_s, default_rates_per_acc_hour, goodput, layout_goodput, rate_arrays,
    spare_nodes,
)
from models.presets import resolve_model
from models.schema import Facility, TrainingJob

CAT = default_catalog()


def job(**over) -> TrainingJob:
    return TrainingJob(**{"name": "j", "model": "llama3-405b", "tokens": 1e12, "deadline_days": 100,
                          "global_batch": 2048, **over})


def test_daly_interval_and_goodput_by_hand():
    # 1000 accelerators at 1e-5 work-losing interruptions per accelerator-hour: one per 100 h = 360,000 s.
    # Daly: sqrt(2 x 200 x 360,000) = 12,000 s; d/2M = 1/3600 -> x (1 + 1/180 + 1/32,400) - 200 = 11,867.037 s.
    tau = 12_000 * (1 + 1 / 180 + 1 / 32_400) - 200
    assert checkpoint_interval_s(200.0, 360_000.0) == pytest.approx(tau, rel=1e-12)
    assert tau == pytest.approx(11_867.037, abs=1e-3)
    g = goodput(np.array([1000]), 1e-5, 0.0, 200.0, detect_s=120, restart_s=300)
    assert g["interruptions_per_day"][0] == pytest.approx(0.24)
    assert g["checkpoint_interval_s"][0] == pytest.approx(tau)
    # Per second of wall clock: rework tau/2/M, detection 120/M, restart 300/M, reload (= write) 200/M.
    down = (tau / 2 + 120 + 300 + 200) / 360_000
    assert g["lost_rework"][0] == pytest.approx(tau / 2 / 360_000)
    assert g["goodput"][0] == pytest.approx((1 - down) * tau / (tau + 200), rel=1e-12)
    assert g["goodput"][0] == pytest.approx(0.96553, abs=1e-5)
    parts = sum(g[f"lost_{k}"][0] for k in ("checkpoint_write", "rework", "detection", "restart", "reload"))
    assert g["goodput"][0] + parts == pytest.approx(1.0)
    # A pinned interval of 1 h, plus planned interruptions (no detection, no rework) at 5e-6:
    p = goodput(np.array([1000]), 1e-5, 5e-6, 200.0, 3600.0, detect_s=120, restart_s=300)
    down = (1800 + 120 + 500) / 360_000 + (300 + 200) / 720_000
    assert p["goodput"][0] == pytest.approx((1 - down) * 3600 / 3800, rel=1e-12)
    assert p["interruptions_per_day"][0] == pytest.approx(0.36)


def test_young_is_the_leading_term_and_no_failures_means_only_the_stall():
    assert checkpoint_interval_s(1.0, 1e8) == pytest.approx(math.sqrt(2e8), rel=1e-4)
    assert checkpoint_interval_s(300.0, 100.0) == 100.0  # write longer than 2 MTBF: checkpoint every MTBF
    never = goodput(np.array([4096]), 0.0, 0.0, 36.0, 3600.0)
    assert never["goodput"][0] == pytest.approx(3600 / 3636) and never["interruptions_per_day"][0] == 0
    assert goodput(np.array([4096]), 0.0, 0.0, 36.0)["goodput"][0] == 1.0  # never fails, never checkpoints


def test_goodput_falls_with_job_size():
    h100 = CAT.accelerators["h100-sxm"]
    r = rate_arrays([h100])
    sizes = np.array([64, 512, 4096, 16384, 65536, 262144])
    g = goodput(sizes, r["lose_work"][0], r["planned"][0], 60.0)
    assert np.all(np.diff(g["goodput"]) < 0)
    assert g["interruptions_per_day"] == pytest.approx(sizes * sum(default_rates_per_acc_hour().values()) * 24)
    assert g["goodput"][-1] < 0.5 < 0.99 < g["goodput"][0]
    # An accelerator that fails ten times as often (catalog override) does worse at the same size.
    flaky = h100.model_copy(update={"interruptions_per_acc_hour": {"gpu": 10 * default_rates_per_acc_hour()["gpu"]}})
    rf = rate_arrays([flaky])
    assert rf["lose_work"][0] > r["lose_work"][0] and rf["planned"][0] == r["planned"][0]
    assert goodput(sizes, rf["lose_work"][0], rf["planned"][0], 60.0)["goodput"][2] < g["goodput"][2]


def test_llama3_405b_on_16k_gpus_is_of_the_order_published():
    # Llama 3 (arXiv 2407.21783): 466 interruptions in 54 days on 16,384 H100s, > 90% effective
    # training time. Checkpoint write time from its storage: 14 B/param written at 2 TB/s sustained.
    dims = resolve_model("llama3-405b")
    write_s = checkpoint_tb(dims) / 2.0
    assert 2.5 < write_s < 3.0
    g = layout_goodput(job(checkpoint_window_s=write_s), CAT.accelerators["h100-sxm"], 16384, 2048)
    assert g["interruptions_per_day"] == pytest.approx(466 / 54, rel=1e-9)
    assert g["mtbf_hours"] == pytest.approx(54 * 24 / 419, rel=1e-9)  # work-losing ones only
    assert 0.90 < g["goodput"] < 0.96
    assert 15 <= g["spare_nodes"] <= 35  # about 1% of the 2,048 nodes


def test_spares_by_the_poisson_rule():
    # 100 nodes x 8 accelerators x 1e-5 per hour x 48 h: mean 0.384 nodes out at once.
    mu = 100 * 8 * 1e-5 * 48
    tail = lambda k: 1 - sum(math.exp(-mu) * mu**j / math.factorial(j) for j in range(k + 1))  # noqa: E731
    assert tail(2) > 1e-3 >= tail(3) and tail(1) > 1e-2 >= tail(2)
    assert spare_nodes(np.array([100]), 8, 1e-5, 48, 1e-3)[0] == 3
    assert spare_nodes(np.array([100]), 8, 1e-5, 48, 1e-2)[0] == 2
    # 1000 nodes: mean 3.84; P(> 10) = 2.1e-3, P(> 11) = 6.5e-4.
    assert list(spare_nodes(np.array([0, 100, 100, 1000]), 8, 1e-5, 48, 1e-3)) == [0, 3, 3, 11]
    assert list(spare_nodes(np.array([1000]), 8, 0.0, 48, 1e-3)) == [0]


def test_job_table_days_count_failures_and_the_verifier_agrees():
    from optimizer.mip.families.jobs import recompute_job

    inst = instance_from_dict({
        "name": "t", "catalog": {"accelerators": ["h100-sxm"], "fabrics": ["ib-ndr-400g"], "storage": ["flash-pfs"]},
        "workloads": [{"name": "j", "model": "llama3-8b", "tokens": 1e12, "deadline_days": 30, "global_batch": 1024,
                       "parallelism": {"tp": 1, "pp": 1, "micro_batch": 1}, "checkpoint_window_s": 60}],
        "facility": {"power_cap_mw": 20},
    })
    t = job_table(inst.training_jobs[0], inst.catalog)
    p = t.perf
    assert np.all(p["goodput"] < 1) and np.all(p["goodput"] > 0.9)
    assert t.days == pytest.approx(p["time_to_train_days"] / p["goodput"])
    i = int(np.argmax(t.grid.d))
    r = recompute_job(inst, "j", t.layout(i))
    assert r["days"] == pytest.approx(t.days[i], rel=1e-12) and r["spare_nodes"] == p["spare_nodes"][i]


def test_schema_fields_and_errors():
    j = job()
    assert j.checkpoint_interval_hours is None and j.backup_copies == 0
    base = {"name": "t", "sites": [{"name": "a", "power_cap_mw": 1}, {"name": "b", "power_cap_mw": 1}],  # site loss needs two
            "workloads": [{"name": "s", "kind": "inference", "model": "llama3-8b", "requests_per_s": 1,
                           "input_tokens": 10, "output_tokens": 10, "ttft_s": 1, "tpot_s": 1}]}
    ok = instance_from_dict({**base, "workloads": [{**base["workloads"][0], "availability": 0.999,
                                                    "survive_site_loss": True}]})
    assert ok.services[0].availability == 0.999 and ok.services[0].survive_site_loss
    assert ok.site_list[0].redundancy == "N"
    for bad, where in (({"availability": 1.5}, "workloads[0].availability"),):
        with pytest.raises(InstanceError, match=where.replace("[", r"\[").replace("]", r"\]")):
            instance_from_dict({**base, "workloads": [{**base["workloads"][0], **bad}]})
    with pytest.raises(InstanceError, match=r"facility.redundancy: got '3N'"):
        instance_from_dict({**base, "facility": {"power_cap_mw": 1, "redundancy": "3N"}})
    with pytest.raises(InstanceError, match=r"interruptions_per_acc_hour.gpu: got -1"):
        instance_from_dict({**base, "catalog": {"accelerators": {"h100-sxm": {"interruptions_per_acc_hour": {"gpu": -1}}}}})
    with pytest.raises(InstanceError, match=r"interruptions_per_acc_hour.disk"):
        instance_from_dict({**base, "catalog": {"accelerators": {"h100-sxm": {"interruptions_per_acc_hour": {"disk": 1}}}}})
    assert set(INTERRUPTION_CLASSES) == {"gpu", "hbm", "host", "network", "software", "planned"}


def test_facility_capex_by_tier_by_hand():
    # $11.7M/MW average taken as N+1; 53% of it is plant, which scales 1 : 5/4 : 2 for N : N+1 : 2N.
    n, n1, two_n = (tier_usd_per_mw(t) for t in ("N", "N+1", "2N"))
    assert n == pytest.approx(11.7e6 * (0.47 + 0.53 / 1.25)) == pytest.approx(10_459_800)
    assert n1 == pytest.approx(11.7e6)
    assert two_n == pytest.approx(11.7e6 * (0.47 + 0.53 * 2 / 1.25)) == pytest.approx(15_420_600)
    assert n < n1 < two_n
    assert site_availability("N") < site_availability("N+1") < site_availability("2N")
    site = Facility(power_cap_mw=30, redundancy="2N")
    assert facility_capex_usd(site, 20.0) == pytest.approx(20 * 15_420_600)
    assert facility_capex_usd_per_mw(Facility(power_cap_mw=30, facility_capex_usd_per_mw=0)) == 0
    with pytest.raises(ValueError, match=r"redundancy: got 'N\+2'"):
        tier_usd_per_mw("N+2")


def test_spare_replicas_by_hand():
    q = 0.01
    assert list(spare_replicas([1], q, 0.999)) == [1]  # 0.99 < 0.999 <= 1 - q^2
    p11 = (1 - q) ** 11 + 11 * q * (1 - q) ** 10
    p12 = sum(math.comb(12, j) * q**j * (1 - q) ** (12 - j) for j in range(3))
    assert p11 < 0.999 <= p12
    assert list(spare_replicas([10, 1, 0], q, 0.999)) == [2, 1, 0]
    assert list(spare_replicas([10], 0.0, 0.999)) == [0]
    assert replica_unavailability(1e-3, 1.0) == pytest.approx(1e-3 / 1.001)
    h100 = CAT.accelerators["h100-sxm"]
    unplanned = sum(v for c, v in default_rates_per_acc_hour().items() if c != "planned")
    assert replica_failures_per_hour(h100, 8) == pytest.approx(8 * unplanned)
    with pytest.raises(ValueError, match="availability: got 1.0"):
        spare_replicas([1], q, 1.0)


def test_backups_by_hand():
    dims = resolve_model("llama3-8b")
    j = job(model="llama3-8b", dataset_tb=10, backup_copies=2, checkpoints_retained=3)
    assert backup_usable_tb(j, dims) == pytest.approx(2 * (10 + 3 * checkpoint_tb(dims)))
    assert backup_write_gbps(j, dims, 1800.0) == pytest.approx(2 * checkpoint_tb(dims) * 1000 / 1800)
    assert backup_usable_tb(job(model="llama3-8b"), dims) == 0
