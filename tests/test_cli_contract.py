"""What every dcopt command promises: --version, one backend list, flags shown as flags, --debug
everywhere, the one exit-code map, and a catalog that prints itself whole as JSON."""

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from models.loader import default_catalog
from models.presets import PRESETS
from models.schema import Accelerator
from optimizer import api
from optimizer.cli import app
from optimizer.cli.common import exit_code, status_code

ROOT = Path(__file__).parent.parent
runner = CliRunner()
COMMANDS = ("solve", "estimate", "calibrate", "explain", "schema", "catalog", "batch", "generate", "sweep", "pareto",
            "report", "compare")
TAKE_BACKEND = ("solve", "explain", "batch", "sweep", "pareto")


def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_every_command_is_listed_and_tested_here():
    assert set(typer.main.get_command(app).commands) == set(COMMANDS)


def test_version_comes_from_the_installed_package():
    from importlib.metadata import version

    r = run("--version")
    assert r.exit_code == 0 and r.output.strip() == f"dcopt {version('dcopt')}"


def test_catalog_json_is_the_whole_catalog():
    r = run("catalog", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    cat = default_catalog()
    assert set(doc) == {"accelerators", "fabrics", "storage", "calibration", "presets"}
    assert set(doc["accelerators"]) == set(cat.accelerators)
    for name, a in doc["accelerators"].items():
        assert set(a) == set(Accelerator.model_fields), name  # every field, nulls included
        assert a["node_price_usd"] == cat.accelerators[name].node_price_usd
    assert set(doc["fabrics"]) == set(cat.fabrics) and set(doc["storage"]) == set(cat.storage)
    assert doc["calibration"] == cat.calibration.model_dump(mode="json")
    assert set(doc["presets"]) == set(PRESETS)
    assert doc["presets"]["gpt3-175b"]["params"] == pytest.approx(PRESETS["gpt3-175b"].params)
    assert 170e9 < doc["presets"]["gpt3-175b"]["params"] < 180e9


@pytest.mark.parametrize("command", TAKE_BACKEND)
def test_every_backend_option_is_the_same_choice(command):
    assert set(api.BACKEND_NAMES) == {"ortools", "ortools-scip", "ortools-highs", "pulp"}
    choices = re.search(r"--backend\s+<([a-z|-]+)>", run(command, "--help").output).group(1)
    assert sorted(choices.split("|")) == sorted(api.BACKEND_NAMES)


@pytest.mark.parametrize("command", TAKE_BACKEND)
def test_a_bad_backend_is_refused_with_exit_2(command, tmp_path):
    inst = ROOT / "instances/gpt3-175b-a100.yaml"
    extra = {"sweep": ["--param", "facility.power_cap_mw", "--values", "20"], "pareto": ["--y", "capex"],
             "batch": ["--out", tmp_path / "out"]}.get(command, [])
    r = run(command, inst, *extra, "--backend", "gurobi")
    assert r.exit_code == 2, r.output
    assert "gurobi" in r.output and "ortools-highs" in r.output
    assert not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags_and_names_only_commands_that_exist(command):
    r = run(command, "--help")
    assert r.exit_code == 0
    assert "<bool>" not in r.output
    named = set(re.findall(r"`dcopt ([a-z-]+)", r.output.replace("\n", " ")))
    assert named <= set(COMMANDS), named
    assert "--debug" in r.output


def test_top_level_help_has_no_bool_placeholder():
    r = run("--help")
    assert r.exit_code == 0 and "<bool>" not in r.output and "--version" in r.output


def test_estimate_help_points_at_the_catalog_for_presets():
    r = run("estimate", "--help")
    assert "dcopt catalog" in r.output and "dcopt presets" not in r.output


def test_debug_is_accepted_everywhere(tmp_path):
    inst = ROOT / "instances/gpt3-175b-a100.yaml"
    assert run("schema", "--debug").exit_code == 0
    assert run("catalog", "--debug").exit_code == 0
    assert run("calibrate", "--json", "--debug").exit_code == 0
    r = run("generate", "--jobs", "1", "--services", "0", "--debug")
    assert r.exit_code == 0 and "workloads:" in r.output
    r = run("estimate", "--model", "llama3-8b", "--gpus", "8", "--global-batch", "64", "--json", "--debug")
    assert r.exit_code == 0 and json.loads(r.output)["gpus"] == 8
    missing = tmp_path / "nope.yaml"
    for command, extra in (("solve", []), ("explain", []), ("sweep", ["--param", "facility.power_cap_mw", "--values", "9"]),
                           ("pareto", ["--y", "capex"]), ("batch", ["--out", tmp_path / "o"])):
        r = run(command, missing, *extra, "--debug")
        assert r.exit_code == 2, (command, r.output)
    assert run("solve", inst, "--time-limit", "60", "--debug").exit_code == 0


def test_debug_shows_the_traceback_and_without_it_none(tmp_path):
    r = run("estimate", "--model", "llama3-8b", "--gpus", "12", "--tp", "8", "--global-batch", "512", "--debug")
    assert r.exit_code == 2 and "Traceback" in r.output
    r = run("estimate", "--model", "llama3-8b", "--gpus", "12", "--tp", "8", "--global-batch", "512")
    assert r.exit_code == 2 and "Traceback" not in r.output and r.output.startswith("estimate: ")


def test_one_exit_code_map():
    from optimizer.solving.verify import VerificationError
    from optimizer.studies.pareto import ParetoError, ParetoInfeasible

    assert exit_code(api.InstanceError("f.yaml", ["x: bad"])) == 2
    assert exit_code(ValueError("bad")) == 2 and exit_code(ParetoError("bad")) == 2
    assert exit_code(ParetoInfeasible("none")) == 3
    assert exit_code(VerificationError("wrong")) == 1 and exit_code(RuntimeError("solver died")) == 1
    assert status_code("optimal", True) == 0 and status_code("time_limit", True) == 0
    assert status_code("infeasible", False) == 3 and status_code("time_limit", False) == 4
    assert status_code("error", False) == 1


def test_an_unexpected_error_is_one_line_exit_1(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(api, "solve", boom)
    r = run("solve", ROOT / "instances/gpt3-175b-a100.yaml")
    assert r.exit_code == 1 and "RuntimeError: solver crashed" in r.output and "Traceback" not in r.output


def test_batch_takes_every_backend(tmp_path):
    r = run("batch", ROOT / "instances/gpt3-175b-a100.yaml", "--out", tmp_path / "o", "--backend", "ortools-highs",
            "--quiet", "--workers", "1")
    assert r.exit_code == 0, r.output
    row = json.loads((tmp_path / "o/summary.jsonl").read_text().splitlines()[0])
    assert row["status"] == "optimal"


def test_cli_imports_only_the_api_and_presentation():
    allowed = ("optimizer.api", "optimizer.cli", "optimizer.present", "models")
    for f in (ROOT / "optimizer/cli").glob("*.py"):
        for mod in re.findall(r"^\s*(?:from|import) ((?:optimizer|models)[\w.]*)", f.read_text(), re.M):
            if mod == "optimizer":  # `from optimizer import api`
                continue
            assert mod.startswith(allowed), (f.name, mod)
    assert "optimizer.cli" not in (ROOT / "optimizer/api.py").read_text()
