"""The README's worked examples are what dcopt answers today: the sample solve, the diagnosis
object and the sweep file's outcome. When a model change moves them, refresh the README text."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models import candidates
from optimizer import api
from optimizer.cli import app
from optimizer.runs.scenarios import expand, scenario_text
from optimizer.solving.pipeline import solve_instance

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _block(after: str, lang: str = "") -> str:
    return re.search(re.escape(after) + r".*?```" + lang + r"\n(.*?)```", README, re.S).group(1)


def test_the_sample_solve_is_what_dcopt_prints():
    sample = _block("## What it answers")
    cmd = sample.splitlines()[0]
    assert cmd == "$ dcopt solve instances/llama3-70b-20mw.yaml"
    r = CliRunner().invoke(app, ["solve", str(ROOT / "instances/llama3-70b-20mw.yaml")], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    printed = r.stdout
    objective = next(ln for ln in sample.splitlines() if ln.startswith("Objective:"))
    assert objective in printed, "README 'What it answers': refresh the Objective line"
    job = re.search(r"on (.+?), (\S+), (tp\S+ pp\S+ dp\S+) \.\.\., ([\d.]+) of (\d+) days", sample)
    perf = re.search(r"goodput ([\d.]+), ([\d.]+) interruptions/day, checkpoint every ([\d.]+ h)", sample)
    for text in (*job.groups()[:4], *perf.groups()):
        assert text in printed, f"README 'What it answers' says {text!r}; the solve prints otherwise"


def test_the_diagnosis_example_is_the_shipped_instance_s_power_fix():
    shown = json.loads(_block("**The diagnosis as data.**", "json"))
    res = api.solve(ROOT / "instances/infeasible-deadline-power.yaml")
    fix = next(x for x in api.diagnosis_data(res) if x["field"] == shown["field"])
    assert {k: fix[k] for k in ("kind", "unit", "message")} == {k: shown[k] for k in ("kind", "unit", "message")}
    assert (fix["current"], fix["needed"]) == pytest.approx((shown["current"], shown["needed"]), rel=1e-12)
    assert fix["tco_usd_after"] == pytest.approx(shown["tco_usd_after"], abs=0.05)


def test_the_sweep_example_finds_what_the_readme_says(tmp_path, monkeypatch):
    # The twelve scenarios differ in caps and the deadline only, so they share the job's evaluated
    # layouts (deadline-free, as job_tables shares them across jobs): evaluate once, not twelve times.
    evaluated, memo = candidates._evaluated, {}

    def once(job, catalog):
        key = (job.model_copy(update={"deadline_days": None}).model_dump_json(), catalog.model_dump_json())
        if key not in memo:
            memo[key] = evaluated(job, catalog)
        return memo[key]

    monkeypatch.setattr(candidates, "_evaluated", once)
    (tmp_path / "instances").mkdir()
    base = ROOT / "instances/llama3-70b-20mw.yaml"
    (tmp_path / "instances" / base.name).write_text(base.read_text())
    sweep = tmp_path / "power-deadline.yaml"
    sweep.write_text(_block("**Sweep files and the batch summary.**", "yaml"))
    scenarios = expand(sweep)
    found, accelerators = 0, {}  # deadline days -> accelerator counts of the designs
    for i, sc in enumerate(scenarios):
        f = tmp_path / f"s{i}.yaml"
        f.write_text(scenario_text(sweep, i, sc))
        inst = api.load(f)
        sol = solve_instance(inst, verify=False)
        if sol.has_design:
            found += 1
            assert set(sol.design.nodes) == {"b200"}
            chips = sum(sol.design.nodes["b200"].values()) * inst.catalog.accelerators["b200"].accelerators_per_node
            days = sc.overrides["workloads[llama3-70b].deadline_days"]
            accelerators.setdefault(days, set()).add(chips)  # hot spares included, as the batch summary counts
    claim = re.search(r"finds a design for (\d+) of the (\d+): the\s+60-day deadline takes ([\d,]+) B200s.*?"
                      r"the 50-day one ([\d,]+)", README, re.S)
    assert claim, "README: the sweep example's outcome sentence changed shape"
    said = [int(x.replace(",", "")) for x in claim.groups()]
    assert said == [found, len(scenarios), *[min(accelerators.get(d, {0})) for d in (60, 50)]], \
        "README: refresh the sweep example's outcome"
    assert all(len(v) == 1 for v in accelerators.values())  # "under every cap": the same design
    assert len(memo) <= 1  # node-order pruning (prepare) does not call _evaluated at all
