"""The Python API (optimizer.api): the editing idiom and its errors, frames against the Solution they
come from, the notebook displays, and estimate/sweep/pareto/batch as thin passthroughs."""

from __future__ import annotations

import html
import sys
from pathlib import Path

import pytest

from models.perf.estimate import estimate_inference, estimate_training
from models.edit import document
from models.loader import default_catalog, load_instance
from models.presets import resolve_model
from models.schema import Instance as SchemaInstance
from optimizer import api as dc
from optimizer.present.report import tables
from optimizer.solving.pipeline import solve_instance
from optimizer.studies.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "instances"


@pytest.fixture(scope="module")
def mixed():
    """One training job and two services in one facility: every kind of row."""
    return dc.load(INSTANCES / "train-and-serve.yaml")


@pytest.fixture(scope="module")
def mixed_result(mixed):
    return dc.solve(mixed)


# --------------------------------------------------------------------------------------------
# Loading and editing
# --------------------------------------------------------------------------------------------


def test_load_gives_a_schema_instance_that_shows_itself(mixed):
    assert isinstance(mixed, SchemaInstance)  # every dcopt function accepts it
    assert dict(mixed) == dict(load_instance(INSTANCES / "train-and-serve.yaml"))
    page = mixed._repr_html_()
    for text in ("train-and-serve", "pretrain-8b", "chat-70b", "assistant-8b", "b200", "mi300x", "min_tco",
                 "$320,000"):  # an accelerator's node price, from the catalog the instance offers
        assert text in page
    assert repr(mixed) == "<Instance train-and-serve: 1 training job(s), 2 service(s), 1 site(s), objective min_tco>"


def test_with_sets_fields_by_dotted_path_and_leaves_the_original(mixed):
    edited = dc.with_(mixed, {"facility.power_cap_mw": 2.5, "workloads[pretrain-8b].deadline_days": 20,
                              "catalog.accelerators.b200.node_price_usd": 500000})
    assert (edited.facility.power_cap_mw, edited.workloads[0].deadline_days) == (2.5, 20)
    assert edited.catalog.accelerators["b200"].node_price_usd == 500000
    assert mixed.facility.power_cap_mw == 1.0  # frozen: the original is unchanged
    assert isinstance(edited, dc.Instance)
    assert dc.with_(mixed, **{"budget.capex_usd": 5e7}).budget.capex_usd == 5e7  # the same paths as keywords
    assert dc.with_(edited, {"workloads[0].fabric": "roce-400g"}).workloads[0].fabric == "roce-400g"


@pytest.mark.parametrize("path", sorted(INSTANCES.glob("*.yaml")), ids=lambda p: p.stem)
def test_with_changes_nothing_else(path):
    """The edit goes through a dump of the instance: setting a field to its own value must give back
    an equal instance (catalog, sites, workloads and all)."""
    inst = dc.load(path)
    same = dc.with_(inst, {"name": inst.name})
    assert dict(same) == dict(inst)


def test_with_a_bad_value_raises_the_loaders_error_naming_the_field(mixed):
    with pytest.raises(dc.InstanceError) as exc:
        dc.with_(mixed, {"facility.power_cap_mw": -5})
    assert str(exc.value) == ("train-and-serve with facility.power_cap_mw=-5: invalid instance (1 problem)\n"
                              "  - facility.power_cap_mw: got -5, expected: Input should be greater than 0")
    with pytest.raises(dc.InstanceError) as exc:
        dc.with_(mixed, {"facility.colour": "blue"})
    assert exc.value.problems == [
        "facility.colour: unknown field (check the spelling; `dcopt schema` lists the fields)"]
    with pytest.raises(dc.InstanceError) as exc:
        dc.with_(mixed, {"workloads[0].accelerator": "tpu-v9"})
    assert "workloads[0].accelerator: 'tpu-v9' is not in the catalog" in str(exc.value)


def test_with_refuses_paths_that_would_change_the_question(mixed):
    with pytest.raises(ValueError, match=r"'gaudi3' is not offered by this instance .* would add it to the offer"):
        dc.with_(mixed, {"catalog.accelerators.gaudi3.node_price_usd": 1.0})
    with pytest.raises(ValueError, match=r"index 7 out of range \('workloads' has 3 items\)"):
        dc.with_(mixed, {"workloads[7].deadline_days": 1})
    with pytest.raises(ValueError, match="no item named 'nope'"):
        dc.with_(mixed, {"workloads[nope].deadline_days": 1})


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def test_result_passes_the_solution_through(mixed, mixed_result):
    sol = solve_instance(mixed)
    res = mixed_result
    assert (res.status, res.objective, res.verified) == ("optimal", "min_tco", True)
    assert res.objective_value == pytest.approx(sol.objective_value, rel=1e-9)
    assert res.design is res.solution.design and res.jobs is res.solution.jobs
    assert res.tco_usd == res.design.tco_usd and res.capex_usd == res.design.capex_usd["total"]
    assert repr(res) == f"<Result train-and-serve: optimal, TCO ${res.tco_usd / 1e6:,.2f}M>"


def test_to_frame_has_one_row_per_workload_with_the_solutions_values(mixed_result):
    res = mixed_result
    df = res.to_frame()
    assert df.shape == (len(res.jobs) + len(res.services), 20)
    assert list(df.workload) == ["pretrain-8b", "chat-70b", "assistant-8b"]
    job = df.iloc[0]
    j = res.jobs[0]
    assert (job.kind, job.accelerator, job.accelerators, job.nodes, job.fabric) == (
        "training", j.accelerator, j.accelerators, j.nodes, j.fabric)
    assert job.days == j.days and job.tokens_per_s == j.tokens_per_s and job.margin_days == pytest.approx(j.margin_days)
    assert job.layout.startswith(f"tp{j.tp} pp{j.pp} dp{j.dp}")
    for row, s in zip(df.iloc[1:].itertuples(), res.services):
        assert row.kind == "inference"
        assert row.accelerators == sum(g.replicas * g.tp for g in s.groups)
        assert row.nodes == sum(g.nodes for g in s.groups)
        assert row.served_rps == s.served_rps and row.demand_rps == s.demand_rps
        assert row.ttft_s == s.worst_ttft_s and row.tpot_s == s.worst_tpot_s
        assert row.cost_per_million_output_tokens_usd == s.cost_per_million_output_tokens_usd
        assert row.days != row.days  # NaN: training columns are empty for services


def test_cost_sites_and_hardware_frames_add_up(mixed_result):
    res = mixed_result
    d = res.design
    costs = res.cost_frame()
    capex = costs[costs.kind == "capex"]
    assert dict(zip(capex.item, capex.usd)) == {k: v for k, v in d.capex_usd.items() if k not in ("total", "site")}
    assert costs.usd_over_horizon.sum() == pytest.approx(d.tco_usd, rel=1e-9)
    opex = costs[costs.kind == "opex_per_year"].set_index("item").usd
    assert opex["energy"] == d.energy_usd_per_year and opex["maintenance"] == d.maintenance_usd_per_year
    sites = res.sites_frame()
    assert sites.shape[0] == 1 and sites.facility_power_kw[0] == d.facility_power_kw and sites.power_cap_kw[0] == 1000
    hw = res.hardware_frame()
    assert hw.nodes.sum() == sum(n for by_o in d.nodes.values() for n in by_o.values())
    assert hw.capex_usd.sum() == pytest.approx(d.capex_usd["compute"], rel=1e-9)


def test_html_is_the_report_tables(mixed, mixed_result):
    res = mixed_result
    page = res._repr_html_()
    assert "b200" in page
    assert f"${res.tco_usd / 1e6:,.2f}M" in page  # the TCO, written as the terminal report writes it
    assert "verified" in page
    for title, _header, rows in tables(res.solution, mixed):  # every table and cell of `dcopt solve`
        assert title in page
        for row in rows:
            for cell in row:
                assert html.escape(cell) in page


def test_an_infeasible_result_shows_why_and_has_empty_frames(mixed):
    res = dc.solve(dc.with_(mixed, {"facility.power_cap_mw": 0.2}))
    assert res.status == "infeasible" and res.tco_usd is None
    page = res._repr_html_()
    assert "No design exists" in page and "raise the power cap" in page
    assert res.to_frame().empty and res.cost_frame().empty and res.hardware_frame().empty
    assert repr(res) == "<Result train-and-serve: infeasible>"


def test_solve_takes_a_path_an_objective_and_an_export(tmp_path):
    res = dc.solve(INSTANCES / "gpt3-175b-a100.yaml", objective="min_capex", export=tmp_path / "model.lp")
    assert res.objective == "min_capex" and res.status == "optimal"
    assert res.objective_value == pytest.approx(res.capex_usd, rel=1e-6)
    assert (tmp_path / "model.lp").read_text().strip()


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------


def test_estimate_passes_through_to_the_performance_model():
    cat = default_catalog()
    got = dc.estimate("gpt3-175b", "a100-sxm-80gb", gpus=1024, tp=8, pp=8, global_batch=1536, tokens=300e9)
    assert got == estimate_training(resolve_model("gpt3-175b"), cat, "a100-sxm-80gb", None, 1024, tp=8, pp=8,
                                    global_batch=1536, tokens=300e9)
    assert "Training estimate" in got._repr_html_() and "tokens_per_s" in got._repr_html_()
    got = dc.estimate("llama3-70b", "h100-sxm", mode="inference", tp=8, batch=64, precision="fp8",
                      input_tokens=1000, output_tokens=250)
    assert got == estimate_inference(resolve_model("llama3-70b"), cat, "h100-sxm", tp=8, batch=64, precision="fp8",
                                     input_tokens=1000, output_tokens=250)
    dims = dict(layers=2, hidden=256, heads=4, vocab=1000, seq_len=128)
    assert dc.estimate(dims, gpus=1, global_batch=8)["params"] > 0


def test_estimate_errors_are_value_errors():
    with pytest.raises(ValueError, match="needs gpus and global_batch"):
        dc.estimate("llama3-8b", "h100-sxm")
    with pytest.raises(ValueError, match="unknown model preset 'llama9'"):
        dc.estimate("llama9", "h100-sxm", gpus=8, global_batch=8)
    with pytest.raises(ValueError, match="tp=3 does not divide"):
        dc.estimate("llama3-8b", "h100-sxm", gpus=24, tp=3, global_batch=24)


def test_result_estimate_rechecks_the_chosen_layout(mixed, mixed_result):
    res = mixed_result
    j = res.jobs[0]
    est = res.estimate(j.name)
    assert (est["accelerator"], est["fabric"], est["tp"], est["pp"], est["dp"]) == (
        j.accelerator, j.fabric, j.tp, j.pp, j.dp)
    assert est["tokens_per_s"] == pytest.approx(j.tokens_per_s, rel=1e-9)
    g = res.services[0].groups[0]
    est = res.estimate(res.services[0].name)
    assert est["ttft_s"] == pytest.approx(g.ttft_s, rel=1e-9) and est["tpot_s"] == pytest.approx(g.tpot_s, rel=1e-9)
    with pytest.raises(ValueError, match="no workload 'nope'"):
        res.estimate("nope")


# --------------------------------------------------------------------------------------------
# Sweeps, fronts, batches
# --------------------------------------------------------------------------------------------


def test_sweep_frame_matches_the_sweep_records(mixed):
    values = [0.5, 1.0, 2.0]
    df = dc.sweep(mixed, "facility.power_cap_mw", values)
    raw = document(mixed)
    ref = run_sweep(raw, "facility.power_cap_mw", values, "x")
    assert list(df.value) == values and list(df.status) == [r.status for r in ref.rows]
    assert df.tco_usd[1] == pytest.approx(ref.rows[1].solution.design.tco_usd, rel=1e-9)
    assert all(isinstance(r, dc.Result) for r in df.result)
    assert df.result[2].instance.facility.power_cap_mw == 2.0
    assert df.attrs["param"] == "facility.power_cap_mw"


def test_sweep_checks_every_value_before_solving(mixed):
    with pytest.raises(dc.InstanceError, match=r"facility.power_cap_mw: got -1, expected"):
        dc.sweep(mixed, "facility.power_cap_mw", [1.0, -1])


def test_pareto_frame_is_a_front():
    df = dc.pareto(INSTANCES / "gpt3-175b-a100.yaml", "tco", "time_to_train", points=4)
    days = df.attrs["y"]
    assert days == "days:gpt3-175b" and len(df) >= 2
    assert df.tco_usd.is_monotonic_increasing and df[days].is_monotonic_decreasing
    assert all(r.verified for r in df.result)


def test_batch_frames(tmp_path):
    paths = dc.generate(tmp_path / "in", seeds=[1, 2], jobs=1, services=1)
    assert [p.name for p in paths] == ["generated-0001.yaml", "generated-0002.yaml"]
    summary = dc.batch(tmp_path / "in", out=tmp_path / "out", workers=2, time_limit=30)
    assert list(summary.status) == ["optimal", "optimal"] and summary.attrs["out"] == str(tmp_path / "out")
    assert dc.read_batch(tmp_path / "out").drop(columns=["solve_s", "wall_s"]).equals(
        summary.drop(columns=["solve_s", "wall_s"]))
    wl = dc.batch_workloads(summary)
    assert len(wl) == 4 and set(wl.kind) == {"training", "inference"}
    direct = dc.solve(paths[0]).to_frame()  # a batch row and a Result row agree column for column
    first = wl[wl.instance == dc.load(paths[0]).name].drop(columns=["path", "instance"])
    assert list(first.columns) == list(direct.columns)
    assert sorted(first.accelerator) == sorted(direct.accelerator)


def test_frames_say_how_to_get_pandas(mixed_result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'dcopt\[notebooks\]'"):
        mixed_result.to_frame()
