"""The command line: exit codes, clear errors without tracebacks, JSON outputs."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimizer.cli import app

ROOT = Path(__file__).parent.parent
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_solve_prints_a_verified_design():
    r = run("solve", ROOT / "instances/gpt3-175b-a100.yaml")
    assert r.exit_code == 0, r.output
    assert "OPTIMAL" in r.output and "verified" in r.output and "a100-sxm-80gb" in r.output


def test_solve_json_and_markdown():
    r = run("solve", ROOT / "instances/gpt3-175b-a100.yaml", "--json", "--backend", "pulp")
    sol = json.loads(r.output)
    assert sol["status"] == "optimal" and sol["verified"] and sol["jobs"][0]["margin_days"] > 0
    r = run("solve", ROOT / "instances/gpt3-175b-a100.yaml", "--format", "md")
    assert "## Training jobs" in r.output and "| gpt3-175b |" in r.output


def test_infeasible_exits_3_with_a_diagnosis():
    r = run("solve", ROOT / "instances/infeasible-deadline-power.yaml")
    assert r.exit_code == 3
    assert "raise the power cap by" in r.output


def test_bad_file_exits_2_naming_file_field_and_expectation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "workloads:\n"
        "  - {name: a, model: llama3-8b, tokens: 1e12, deadline_days: 10, global_batch: 512}\n"
        "  - {name: b, model: llama3-8b, tokens: 1e12, deadline_days: -3, global_batch: 512, colour: red}\n"
        "facility: {power_cap_mw: 10}\n"
    )
    r = run("solve", bad)
    assert r.exit_code == 2
    assert "bad.yaml: invalid instance" in r.output
    assert "workloads[1].deadline_days: got -3, expected: Input should be greater than 0" in r.output
    assert "workloads[1].colour: unknown field" in r.output
    assert "Traceback" not in r.output


def test_unknown_preset_and_accelerator_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "workloads:\n"
        "  - {name: a, model: llama9, tokens: 1e12, deadline_days: 10, global_batch: 512}\n"
        "facility: {power_cap_mw: 10}\n"
    )
    r = run("solve", bad)
    assert r.exit_code == 2 and "workloads[0].model: unknown preset 'llama9'" in r.output
    bad.write_text(
        "catalog: {accelerators: [h100-sxm]}\n"
        "workloads:\n"
        "  - {name: a, model: llama3-8b, tokens: 1e12, deadline_days: 10, global_batch: 512, accelerator: h900}\n"
        "facility: {power_cap_mw: 10}\n"
    )
    r = run("solve", bad)
    assert r.exit_code == 2 and "workloads[0].accelerator: 'h900' is not in the catalog (available: h100-sxm)" in r.output


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("workloads: [unclosed\n")
    r = run("solve", bad)
    assert r.exit_code == 2 and "not valid YAML" in r.output
    r = run("solve", tmp_path / "nope.yaml")
    assert r.exit_code == 2 and "file not found" in r.output


def test_json_instances_work(tmp_path):
    import yaml

    data = yaml.safe_load((ROOT / "instances/gpt3-175b-a100.yaml").read_text())
    f = tmp_path / "i.json"
    f.write_text(json.dumps(data))
    assert run("solve", f).exit_code == 0


def test_estimate_json_defaults_echoed():
    r = run("estimate", "--model", "gpt3-175b", "--accelerator", "a100-sxm-80gb", "--gpus", "1024",
            "--tp", "8", "--pp", "8", "--global-batch", "1536", "--tokens", "300e9", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for key in ("step_time_s", "tokens_per_s", "tflops_per_gpu_hw", "tflops_per_gpu_model", "mfu",
                "memory_per_gpu_gb", "fits_memory", "time_to_train_days"):
        assert key in out
    assert out["fabric"] == "ib-hdr-200g" and out["dp"] == 16
    assert out["recompute"] in ("none", "selective", "full", "partial") and out["micro_batch"] >= 1  # defaults echoed
    r = run("estimate", "--model", "gpt3-175b", "--accelerator", "a100-sxm-80gb", "--gpus", "1024",
            "--tp", "8", "--pp", "8", "--global-batch", "1536", "--recompute", "full", "--json")
    full = json.loads(r.output)
    assert full["tflops_per_gpu_hw"] == pytest.approx(full["tflops_per_gpu_model"] * 4 / 3, rel=0.05)  # +1 forward


def test_estimate_by_dimensions_and_bad_layout():
    r = run("estimate", "--layers", "32", "--hidden", "4096", "--heads", "32", "--kv-heads", "8", "--ffn-hidden", "14336",
            "--gated-mlp", "--vocab", "128256", "--seq-len", "8192", "--accelerator", "h100-sxm", "--gpus", "64",
            "--global-batch", "512", "--json")
    assert r.exit_code == 0, r.output
    r = run("estimate", "--model", "llama3-8b", "--gpus", "12", "--tp", "8", "--global-batch", "512")
    assert r.exit_code == 2 and "estimate:" in r.output and "Traceback" not in r.output


def test_schema_and_calibrate():
    r = run("schema")
    schema = json.loads(r.output)
    assert "workloads" in schema["properties"] and "catalog" not in schema["required"]
    r = run("calibrate", "--json", "--no-logo")
    assert r.exit_code == 0
    assert json.loads(r.output)["mae_pct"] < 5
    kinds = {row["kind"] for row in json.loads(r.output)["serving"]}
    assert {"hbm", "gemm", "inference"} <= kinds
    text = run("calibrate").output
    assert "Serving" in text and "inference" in text


def test_estimate_inference_json():
    r = run("estimate", "--mode", "inference", "--model", "llama3-70b", "--accelerator", "h100-sxm", "--tp", "8",
            "--batch", "64", "--input-tokens", "1000", "--output-tokens", "250", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    for key in ("ttft_s", "tpot_s", "max_batch_fitting", "output_tokens_per_s", "output_tokens_per_s_per_acc"):
        assert key in out
    assert out["output_tokens_per_s_per_acc"] == pytest.approx(out["output_tokens_per_s"] / 8)
    r = run("estimate", "--mode", "inference", "--model", "llama3-405b", "--accelerator", "h100-sxm", "--tp", "8")
    assert r.exit_code == 2 and "weights do not fit" in r.output


def test_service_needs_exactly_one_demand(tmp_path):
    bad = tmp_path / "svc.yaml"
    bad.write_text(
        "workloads:\n"
        "  - {name: s, kind: inference, model: llama3-8b, input_tokens: 500, output_tokens: 100, ttft_s: 1, tpot_s: 0.05}\n"
        "facility: {power_cap_mw: 1}\n"
    )
    r = run("solve", bad)
    assert r.exit_code == 2 and "workloads[0]: got" not in r.output
    assert "give exactly one of requests_per_s, output_tokens_per_s or demand_by_region" in r.output
