"""Batch solving: every instance gets its row whatever happens to it; killed batches resume to the
same results; the Ray engine agrees with the local one; sweep files expand as written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from optimizer.runs.batch import run_batch
from optimizer.cli import app
from optimizer.runs.generate import write as generate_file
from optimizer.runs.scenarios import SweepError, expand, parse_path, set_path
from optimizer.runs.store import comparable, read_summary, sha256_bytes

runner = CliRunner()

# A solver for tests: hangs or crashes on request, otherwise the real one. Spawned workers import
# it by name; they inherit the test's sys.path.
HOOK = '''
import os, time
from optimizer.runs.worker import solve_payload

def solve(path, data, backend, time_limit_s, gap):
    if "hang" in path:
        time.sleep(120)
    if "crash" in path:
        os._exit(7)
    return solve_payload(path, data, backend, time_limit_s, gap)
'''


# A solver whose MIP solve never ends: the constructive start is all a kill at the wall clock leaves.
SLOW_MIP = '''
import time
from optimizer.runs.worker import solve_payload
from optimizer.solving import pipeline

def solve(path, data, backend, time_limit_s, gap, on_start=None):
    pipeline.run_backend = lambda *a, **kw: time.sleep(120)
    return solve_payload(path, data, backend, time_limit_s, gap, on_start=on_start)
'''


def test_a_killed_solve_keeps_the_verified_start_design(tmp_path, monkeypatch):
    d = tmp_path / "hook"
    d.mkdir()
    (d / "slow_mip.py").write_text(SLOW_MIP)
    monkeypatch.syspath_prepend(str(d))
    src = tmp_path / "in"
    src.mkdir()
    _small(src / "slow.yaml", 1)
    out = tmp_path / "out"
    from optimizer.runs.worker import Options

    run_batch([str(src)], out, workers=1, opts=Options(timeout_s=6, solver="slow_mip:solve"))
    (row,) = read_summary(out)
    assert row["status"] == "timeout" and "constructive start" in row["error"]
    (res,) = [json.loads(p.read_text()) for p in (out / "results").glob("*.json")]
    assert res["incumbent_source"] == "heuristic" and res["verified"] and res["jobs"]
    assert res["objective_value"] == res["start_objective_value"] > 0 and res["gap"] is None


def _small(path: Path, seed: int, **kw) -> Path:
    """A small generated instance (one site: solvable whatever the multi-site MIP's state)."""
    return generate_file(path, jobs=kw.pop("jobs", 1), services=kw.pop("services", 1), sites=1, accelerators=2,
                         seed=seed, fabrics=1, **kw)


def _rows(out: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in read_summary(out)}


@pytest.fixture()
def hook(tmp_path, monkeypatch):
    d = tmp_path / "hook"
    d.mkdir()
    (d / "batch_hook.py").write_text(HOOK)
    monkeypatch.syspath_prepend(str(d))
    return "batch_hook:solve"


def test_every_instance_gets_its_row_and_resume_skips_only_unchanged(tmp_path, hook, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    _small(src / "good-1.yaml", 1)
    _small(src / "good-2.yaml", 2, jobs=2, services=0)
    generate_file(src / "infeasible.yaml", jobs=1, services=0, sites=1, accelerators=2, fabrics=1, seed=3,
                  infeasible=True)
    (src / "malformed.yaml").write_text("workloads: [\n")
    (src / "bad-field.yaml").write_text(
        "workloads:\n  - {name: a, model: llama3-8b, tokens: 1e12, deadline_days: -3, global_batch: 512}\n"
        "facility: {power_cap_mw: 10}\n")
    (src / "hang.yaml").write_bytes((src / "good-1.yaml").read_bytes())
    (src / "crash.yaml").write_bytes((src / "good-1.yaml").read_bytes())
    (src / "notes.txt").write_text("not an instance: ignored by the directory scan")
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    args = ["batch", "in", "--out", str(out), "--workers", "2", "--timeout", "4", "--solver", hook]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = _rows(out)
    assert {k: v["status"] for k, v in rows.items()} == {
        "bad-field.yaml": "invalid", "crash.yaml": "error", "good-1.yaml": "optimal", "good-2.yaml": "optimal",
        "hang.yaml": "timeout", "infeasible.yaml": "infeasible", "malformed.yaml": "invalid",
    }
    assert "deadline_days: got -3" in rows["bad-field.yaml"]["error"]
    assert "not valid YAML" in rows["malformed.yaml"]["error"]
    assert "worker process died" in rows["crash.yaml"]["error"]
    assert "killed after 4 s" in rows["hang.yaml"]["error"]
    assert rows["good-1.yaml"]["objective_value"] > 0 and rows["good-1.yaml"]["nodes"] > 0
    assert [r["path"] for r in read_summary(out)] == sorted(r["path"] for r in read_summary(out))
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 7 and csv_lines[0].startswith("path,instance,status")
    # One JSON per instance: the full solution plus path, hash, status, error.
    results = {json.loads(p.read_text())["path"]: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
    assert len(results) == 7
    good = results[str(Path("in/good-1.yaml"))]
    assert good["sha256"] == sha256_bytes((src / "good-1.yaml").read_bytes())
    assert good["verified"] and good["design"]["tco_usd"] > 0 and good["jobs"]
    assert results[str(Path("in/infeasible.yaml"))]["diagnosis"]
    # The final table names every status.
    for status in ("optimal", "infeasible", "invalid", "error", "timeout"):
        assert status in r.output

    # --resume: nothing to do; then a changed file is solved again, and only it.
    before = comparable(read_summary(out))
    r = runner.invoke(app, args + ["--resume", "-q"])
    assert r.exit_code == 0 and r.output.startswith("7 instances"), r.output
    assert comparable(read_summary(out)) == before
    text = (src / "good-2.yaml").read_text().replace("horizon_years: ", "horizon_years: 1")
    (src / "good-2.yaml").write_text(text)
    report = run_batch(["in"], out, workers=1, resume=True)
    assert report.solved == 1 and report.skipped == 6  # hang and crash too: same bytes, recorded outcome
    after = _rows(out)
    assert after["good-2.yaml"]["sha256"] != rows["good-2.yaml"]["sha256"]
    assert after["good-1.yaml"] == rows["good-1.yaml"]


def test_bad_arguments_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [
        ["batch", str(tmp_path / "missing.yaml")],
        ["batch", str(tmp_path / "empty")],
        ["batch", str(tmp_path / "*.nothing")],
        ["batch", str(tmp_path), "--engine", "spark"],
        ["batch", str(tmp_path), "--workers", "0"],
        ["generate", "--jobs", "0", "--services", "0"],
    ]
    for args in cases:
        r = runner.invoke(app, args + (["--out", str(tmp_path / "o")] if args[0] == "batch" else []))
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def _run_cli(args: list[str], **kw) -> subprocess.Popen:
    code = "from optimizer.cli import app; app()"
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_killed_batch_resumes_to_the_same_results(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for seed in range(6):
        _small(src / f"inst-{seed}.yaml", 10 + seed, jobs=2, services=1)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    p = _run_cli(["batch", str(src), "--out", str(clean), "--workers", "1", "-q"])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    expected = {r["path"]: r["objective_value"] for r in read_summary(clean)}
    assert len(expected) == 6 and all(v for v in expected.values())

    p = _run_cli(["batch", str(src), "--out", str(killed), "--workers", "1", "-q"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        if len(list((killed / "results").glob("*.json"))) >= 1:
            break
        time.sleep(0.02)
    assert p.poll() is None, "the batch finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    finished = len(list((killed / "results").glob("*.json")))
    assert 1 <= finished < 6
    for row in read_summary(killed):  # what the summary has, it has whole
        assert row["status"] == "optimal"

    p = _run_cli(["batch", str(src), "--out", str(killed), "--workers", "1", "--resume", "-q"])
    assert p.wait(timeout=120) == 0, p.stderr.read()
    out = p.stdout.read().decode()
    assert "6 instances" in out
    got = {r["path"]: r["objective_value"] for r in read_summary(killed)}
    assert got == expected
    assert comparable(read_summary(killed)) == comparable(read_summary(clean))


def test_ray_engine_gives_the_local_engine_rows(tmp_path, monkeypatch):
    """On a local Ray the test starts itself (as on a cluster the user connected to), and on one
    the batch starts and stops on its own: both give the local engine's rows."""
    ray_mod = pytest.importorskip("ray")
    src = tmp_path / "in"
    src.mkdir()
    _small(src / "a.yaml", 21)
    _small(src / "b.yaml", 22, jobs=2, services=0)
    generate_file(src / "c-infeasible.yaml", jobs=1, services=1, sites=1, accelerators=2, fabrics=1, seed=23,
                  infeasible=True)
    (src / "d-malformed.yaml").write_text("facility: {power_cap_mw: 1}\n")
    monkeypatch.chdir(tmp_path)
    local = run_batch(["in"], tmp_path / "local", workers=2)
    assert [r["status"] for r in local.records] == ["optimal", "optimal", "infeasible", "invalid"]
    ray_mod.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ours = run_batch(["in"], tmp_path / "ray-ours", workers=2, engine="ray")
        assert ray_mod.is_initialized()  # the batch leaves a Ray it did not start alone
    finally:
        ray_mod.shutdown()
    own = run_batch(["in"], tmp_path / "ray-own", workers=2, engine="ray")
    assert not ray_mod.is_initialized()
    timings = ("runtime_s", "wall_s", "first_design_s", "phases_s")  # seconds differ run to run
    def strip(r):
        out = {k: v for k, v in r.items() if k not in timings}
        if isinstance(out.get("improvement"), dict):  # the start's improvement: its seconds too
            out["improvement"] = {k: v for k, v in out["improvement"].items() if k != "seconds"}
        return out

    for name, res in (("ray-ours", ours), ("ray-own", own)):
        assert comparable(read_summary(tmp_path / name)) == comparable(read_summary(tmp_path / "local"))
        assert [strip(r) for r in res.records] == [strip(r) for r in local.records]


# -- sweep files --------------------------------------------------------------------------------


def test_field_paths():
    assert parse_path("workloads[0].deadline_days") == ["workloads", 0, "deadline_days"]
    assert parse_path("catalog.accelerators.h100-sxm.node_price_usd") == [
        "catalog", "accelerators", "h100-sxm", "node_price_usd"]
    assert parse_path("sites[oregon].power_cap_mw") == ["sites", "oregon", "power_cap_mw"]
    for bad in ("", "a..b", "a[]", "a[0]b"):
        with pytest.raises(SweepError):
            parse_path(bad)
    doc = {"catalog": {"accelerators": ["b200", "h100-sxm"]}, "workloads": [{"name": "x", "deadline_days": 1}],
           "facility": {"power_cap_mw": 1}}
    set_path(doc, "catalog.accelerators.h100-sxm.node_price_usd", 1.0)
    set_path(doc, "workloads[x].deadline_days", 9)
    set_path(doc, "budget.capex_usd", 5e6)
    assert doc["catalog"]["accelerators"] == {"b200": {}, "h100-sxm": {"node_price_usd": 1.0}}
    assert doc["workloads"][0]["deadline_days"] == 9 and doc["budget"] == {"capex_usd": 5e6}
    doc2 = {"workloads": []}
    set_path(doc2, "catalog.fabrics.roce-400g.switch_price_usd", 1)  # absent section = every built-in entry
    assert len(doc2["catalog"]["fabrics"]) > 1 and doc2["catalog"]["fabrics"]["roce-400g"] == {"switch_price_usd": 1}
    for bad in ("workloads[3].tokens", "workloads[nope].tokens", "facility.power_cap_mw.x"):
        with pytest.raises(SweepError):
            set_path(doc, bad, 1)


def test_sweep_file_expands_and_batches(tmp_path, monkeypatch):
    _small(tmp_path / "base.yaml", 5)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"sweep": {
        "base": "base.yaml",
        "grid": {"facility.power_cap_mw": [50, 60], "workloads[0].deadline_days": [400]},
        "cases": [{"budget.maintenance_pct_per_year": 1}, {"budget.maintenance_pct_per_year": 5}],
    }}))
    scenarios = expand(tmp_path / "sweep.yaml")
    assert len(scenarios) == 4
    assert scenarios[0].data["facility"]["power_cap_mw"] == 50 and scenarios[3].data["budget"]["maintenance_pct_per_year"] == 5
    assert len({s.name for s in scenarios}) == 4 and "power_cap_mw=50" in scenarios[0].name
    (tmp_path / "broken-sweep.yaml").write_text("sweep: {base: base.yaml, grid: {workloads[9].tokens: [1]}}\n")
    monkeypatch.chdir(tmp_path)
    report = run_batch(["sweep.yaml", "broken-sweep.yaml"], tmp_path / "out", workers=2)
    st = {Path(r["path"]).name: r["status"] for r in report.records}
    assert st.pop("broken-sweep.yaml") == "invalid"
    assert sorted(st) == [f"sweep-000{i}.yaml" for i in range(1, 5)] and set(st.values()) == {"optimal"}
    values = {r["instance"]: r["objective_value"] for r in report.records if r["status"] == "optimal"}
    m1 = [v for k, v in values.items() if "maintenance_pct_per_year=1" in k]
    m5 = [v for k, v in values.items() if "maintenance_pct_per_year=5" in k]
    assert max(m1) < min(m5)  # more maintenance costs more: the overrides reached the solver
    # Expanding again writes the same bytes, so a resumed sweep skips every scenario.
    again = run_batch(["sweep.yaml"], tmp_path / "out", workers=1, resume=True)
    assert again.solved == 0 and again.skipped == 4
