"""dcopt sweep: values, paths, the accelerator flip at a price computed by hand, CSV and PNG output."""

import csv
import io
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from models.loader import InstanceError
from optimizer.cli import app
from optimizer.runs.scenarios import SweepError
from optimizer.studies.sweep import build_instances, parse_values, run_sweep

# Idealised accelerators: time to train is pure arithmetic (as in test_optimizer_hand).
IDEAL = {"gemm_efficiency_max": 1.0, "unmeasured_gemm_ratio": 1.0, "gemm_half_dim": 0.0, "elementwise_passes": 0.0, "attention_passes": 0.0,
         "comm_efficiency": 1.0, "dp_overlap": 1.0, "memory_reserved_gb": 0.0}
# A flat network: one port per node into one 256-port switch (one tier for up to 256 nodes), so
# the network costs $10,000 + $1,000 per node. Energy, racks, cooling and maintenance cost nothing.
FLAT = {"port_gbps": 400, "latency_us": 1.0, "switch_radix": 256, "switch_price_usd": 10_000, "switch_power_w": 1000,
        "endpoint_price_usd": 1_000, "endpoint_power_w": 10, "optic_price_usd": 100, "optic_power_w": 5}


# Toy accelerators never fail: goodput is then the checkpoint stall alone (interval / (interval + window)).
NEVER_FAILS = {c: 0.0 for c in ("gpu", "hbm", "host", "network", "software", "planned")}


# The per-TB storage form (the old flash-pfs figures) and no site networks: the hand sums below
# count only compute, the training fabric and a few dollars of storage.
LEGACY_FLASH = {"usd_per_tb": 250, "w_per_tb": 8, "gbps_per_tb": 1.0, "replication": 1.25,
                "unit_usable_tb": None, "unit_read_gbs": None, "unit_write_gbs": None, "unit_price_usd": None,
                "unit_power_kw": None, "min_units_per_site": 0}
NO_SITE_NETWORKS = {"frontend_fabric": None, "storage_fabric": None, "management_fabric": None}
# No per-accelerator storage floor and no restart-reload sizing (docs/storage.md): checkpoints take the
# whole window and only writes and data reads size storage, as the hand sums say.
NO_STORAGE_FLOOR = {"storage_read_gbs_per_acc": 0, "storage_write_gbs_per_acc": 0, "checkpoint_reload_s": 1e7}

def accelerator(tflops, price):
    return {"interruptions_per_acc_hour": NEVER_FAILS, "peak_bf16_tflops": tflops, "hbm_gb": 1000, "hbm_bw_tbs": 1, "scaleup_domain": 8, "scaleup_bw_gbs": 100,
            "accelerators_per_node": 8, "nics_per_node": 1, "node_power_kw": 10, "node_price_usd": price,
            "node_rack_units": 8}


def two_accelerators(slow_price=100_000, fast_price=300_000) -> dict:
    """One job (tp=pp=1 pinned) that may run on `slow` (10 TFLOP/s) or `fast` (20 TFLOP/s) nodes.

    TCO = nodes x (node price + $1,000 port) + $10,000 switch + storage (checkpoints of one model,
    the same for every design), so the choice flips where the node-and-port bills cross."""
    return {
        "name": "two-accelerators",
        "catalog": {
            "accelerators": {"slow": accelerator(10, slow_price), "fast": accelerator(20, fast_price)},
            "fabrics": {"flat": FLAT},
            "storage": {"flash-pfs": LEGACY_FLASH},
            "calibration": IDEAL,
        },
        "workloads": [{
            "name": "job",
            "model": {"layers": 2, "hidden": 1024, "heads": 8, "vocab": 32000, "seq_len": 1024},
            "tokens": 1e13, "deadline_days": 10, "global_batch": 1536, "stack": "megatron-2021",
            "parallelism": {"tp": 1, "pp": 1, "micro_batch": 1, "recompute": "none"},
            "checkpoint_interval_hours": 1, "checkpoint_window_s": 36, **NO_STORAGE_FLOOR,
        }],
        "facility": {**NO_SITE_NETWORKS, "power_cap_mw": 10, "pue": 1.2, "energy_usd_per_kwh": 0,
                     "cooling": {"air": {"max_kw_per_rack": 40, "capex_usd_per_kw": 0}}, "rack_capex_usd": 0,
                     "facility_capex_usd_per_mw": 0},
        "budget": {"horizon_years": 1, "maintenance_pct_per_year": 0},
    }


# FLOPs per token (no recomputation): 3 passes x layers x (24 h^2 + 4 s h) + 6 h V; 36 s of checkpoint per hour = x1.01.
PER_TOKEN = 3 * 2 * (2 * 12 * 1024**2 + 4 * 1024 * 1024) + 6 * 1024 * 32000
SLOW_ACC_DAYS = 1e13 * PER_TOKEN / 10e12 / 86400 * 1.01  # accelerator-days on `slow`; half that on `fast`


def test_flip_price_by_hand():
    # dp must divide the global batch 1536 = 2^9 x 3 and meet the 10-day deadline:
    # slow needs dp >= 435.8 -> 512 accelerators = 64 nodes; fast needs dp >= 217.9 -> 256 = 32 nodes.
    assert SLOW_ACC_DAYS / 384 > 10 > SLOW_ACC_DAYS / 512
    assert SLOW_ACC_DAYS / 2 / 192 > 10 > SLOW_ACC_DAYS / 2 / 256
    # TCO slow = 64 x (p + 1,000) + 10,000 + storage; TCO fast = 32 x (300,000 + 1,000) + 10,000 + storage:
    # slow wins while 64 (p + 1,000) < 9,632,000, i.e. p < 150,500 - 1,000 = $149,500.
    threshold = 32 * (300_000 + 1_000) / 64 - 1_000
    assert threshold == 149_500
    values = parse_values("145000:155000:1000")
    assert values == [145_000 + 1_000 * i for i in range(11)]
    res = run_sweep(two_accelerators(), "catalog.accelerators.slow.node_price_usd", values)
    assert all(r.status == "optimal" and r.solution.verified for r in res.rows)
    assert [(r.value, r.nodes) for r in res.rows] == [(v, {"slow": 64}) if v < threshold else (v, {"fast": 32})
                                                      for v in values]
    assert [r.value for r in res.rows if r.flip] == [150_000]
    (before, after), = res.flips()
    assert (before.value, after.value) == (149_000, 150_000)
    storage = res.rows[0].solution.design.capex_usd["storage"]
    assert storage > 0
    for r in res.rows:
        d, job = r.solution.design, r.solution.jobs[0]
        assert d.capex_usd["storage"] == pytest.approx(storage)  # checkpoints of one model: the same everywhere
        assert d.capex_usd["network"] == pytest.approx(10_000 + 1_000 * job.nodes)
        price = r.value if job.accelerator == "slow" else 300_000
        assert d.tco_usd == pytest.approx(job.nodes * (price + 1_000) + 10_000 + storage, abs=0.01)
        assert job.days == pytest.approx(SLOW_ACC_DAYS / 512 if r.value < threshold else SLOW_ACC_DAYS / 2 / 256)


def test_values_and_ranges():
    assert parse_values("10,15,20,25") == [10, 15, 20, 25]
    assert parse_values("10:25:5") == [10, 15, 20, 25]  # stop included when the steps land on it
    assert parse_values("10:24:5") == [10, 15, 20]
    assert parse_values("0.1:0.5:0.1") == [0.1, 0.2, 0.3, 0.4, 0.5]  # no 0.30000000000000004
    assert parse_values("5, 1e5:3e5:1e5") == [5, 100000.0, 200000.0, 300000.0]
    assert parse_values("30:10:-10") == [30, 20, 10]
    assert all(isinstance(v, int) for v in parse_values("1:9:2"))
    for bad, why in [("10,,20", "empty item"), ("a,b", "'a' is not a number"), ("1:2", "start:stop:step"),
                     ("1:10:0", "never goes"), ("10:1:1", "never goes"), ("0:1e9:1", "at most 1000")]:
        with pytest.raises(SweepError, match=why):
            parse_values(bad)


def test_list_catalog_section_becomes_a_mapping_for_a_price():
    raw = two_accelerators()
    raw["catalog"]["accelerators"] = ["h100-sxm", "b200"]  # names only: built-in entries
    h100, b200 = (build_instances(raw, "catalog.accelerators.b200.node_price_usd", [123_456], "t.yaml")[0]
                  .catalog.accelerators[n] for n in ("h100-sxm", "b200"))
    from models.loader import default_catalog

    assert b200.node_price_usd == 123_456
    assert h100 == default_catalog().accelerators["h100-sxm"]  # the rest of the offer is unchanged
    with pytest.raises(SweepError, match="'mi300x' is not offered by this instance"):
        build_instances(raw, "catalog.accelerators.mi300x.node_price_usd", [1], "t.yaml")


def test_bad_paths_and_values_name_the_path():
    raw = two_accelerators()
    with pytest.raises(InstanceError) as e:
        build_instances(raw, "facility.power_cap_mx", [5], "t.yaml")
    assert "t.yaml with facility.power_cap_mx=5: invalid instance" in e.value.format()
    assert "facility.power_cap_mx: unknown field" in e.value.format()
    with pytest.raises(InstanceError) as e:
        build_instances(raw, "workloads[0].deadline_days", [5, -1, -2], "t.yaml")
    text = e.value.format()
    assert "workloads[0].deadline_days: got -1" in text and "1 more value(s)" in text
    with pytest.raises(SweepError, match=r"index 3 out of range \('workloads' has 1 items\)"):
        build_instances(raw, "workloads[3].deadline_days", [5], "t.yaml")
    with pytest.raises(SweepError, match="bad field path"):
        build_instances(raw, "facility..power_cap_mw", [5], "t.yaml")


@pytest.fixture()
def instance_file(tmp_path):
    p = tmp_path / "two.yaml"
    p.write_text(yaml.safe_dump(two_accelerators()))
    return p


def test_cli_bad_path_is_exit_2_without_traceback(instance_file):
    r = CliRunner().invoke(app, ["sweep", str(instance_file), "--param", "facility.power_cap_mx", "--values", "5,10"])
    assert r.exit_code == 2
    assert "facility.power_cap_mx: unknown field" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["sweep", str(instance_file), "--param", "facility.power_cap_mw", "--values", "5:1:1"])
    assert r.exit_code == 2 and "never goes" in r.output


def test_cli_csv_and_png(instance_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    png = tmp_path / "sweep.png"
    r = CliRunner().invoke(app, ["sweep", str(instance_file), "--param", "catalog.accelerators.slow.node_price_usd",
                                 "--values", "140000,160000", "--format", "csv", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))  # "Plot: ..." goes to stderr, so stdout is pure CSV
    assert [(int(x["value"]), x["status"], x["nodes"], x["flip"], x["job.accelerator"]) for x in rows] == [
        (140000, "optimal", "slow:64", "False", "slow"), (160000, "optimal", "fast:32", "True", "fast")]
    assert float(rows[0]["tco_usd"]) > 64 * 141_000 + 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_table_marks_the_flip(instance_file):
    r = CliRunner().invoke(app, ["sweep", str(instance_file), "--param", "catalog.accelerators.slow.node_price_usd",
                                 "--values", "140000,160000"])
    assert r.exit_code == 0, r.output
    assert "flip" in r.output
    # node counts say nodes: "64 x slow" would read as 64 accelerators (the job has 512)
    assert "flip between catalog.accelerators.slow.node_price_usd = 140000 and 160000: 64 slow nodes -> 32 fast nodes" \
        in r.output
    assert any("64 slow nodes" in ln and "512 x slow" in ln for ln in r.output.splitlines())  # the row: nodes, chips


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path):
    import sys

    from optimizer.present.plots import PlotUnavailable, plot_sweep

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    with pytest.raises(PlotUnavailable, match=r"pip install 'dcopt\[plot\]'"):
        plot_sweep(SimpleNamespace(), tmp_path / "x.png")
