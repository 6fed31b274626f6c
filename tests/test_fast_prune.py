"""Node-order pruning (optimizer.mip.prune.prune_fewest_nodes) keeps exactly what the full table's
pruning keeps, and the FLOP bound it skips layouts with holds on every evaluated layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.candidates import iter_job_tables, job_space
from models.loader import default_catalog, instance_from_dict, load_instance
from models.perf.training import enumerate_grid, evaluate, model_flops_per_token, peak_flops_bound
from models.presets import PRESETS
from optimizer.mip import prune as PR
from optimizer.runs.generate import generate

ROOT = Path(__file__).resolve().parent.parent
GRID_FIELDS = ("acc", "fab", "t", "p", "d", "b", "v", "recompute", "dist_opt", "cp", "shard", "gb", "ep", "etp")


def _same(full: PR.Pruned, fast: PR.Pruned) -> None:
    a, b = full.table, fast.table
    assert full.enumerated == fast.enumerated
    assert np.array_equal(full.keep, fast.keep)
    for f in GRID_FIELDS:
        x, y = getattr(a.grid, f), getattr(b.grid, f)
        assert (x is None and y is None) or np.array_equal(x, y), f
    assert set(a.perf) == set(b.perf)
    for k in a.perf:  # bit for bit: the same rows evaluated by the same elementwise formulas
        assert np.array_equal(a.perf[k], b.perf[k], equal_nan=True), k
    for k in ("days", "read_gbps", "endpoints"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert fast.evaluated <= fast.enumerated and fast.meet_deadline <= fast.fit_memory <= fast.evaluated


def _check(inst) -> int:
    jobs = inst.training_jobs
    fast = PR.prune_owned_jobs(jobs, list(range(len(jobs))), inst.catalog)
    for i, table in iter_job_tables(jobs, inst.catalog):
        full = PR.compact(PR.prune(table, "min_tco"))
        if not full.survived:
            assert i not in fast  # the caller explains it from the full table
            continue
        _same(full, fast[i])
    return sum(p.evaluated for p in fast.values())


@pytest.mark.parametrize("name", ["three-jobs-budget", "nvl72-training", "gpt3-175b-a100",
                                  "infeasible-deadline-power"])
def test_fast_pruning_keeps_what_the_full_table_keeps_on_shipped_instances(name):
    _check(load_instance(ROOT / "instances" / f"{name}.yaml"))


def test_fast_pruning_on_a_generated_full_catalog_job_evaluates_a_fraction():
    doc, _ = generate(1, 0, 1, 0, 6, fabrics=0)  # llama2-13b on all 16 accelerators x 7 fabrics
    inst = instance_from_dict(doc, "gen-full-catalog")
    evaluated = _check(inst)
    assert evaluated < 0.8 * sum(len(job_space(j, inst.catalog)) for j in inst.training_jobs)


def test_job_space_rows_are_the_full_tables_rows():
    inst = load_instance(ROOT / "instances" / "three-jobs-budget.yaml")
    job = inst.training_jobs[0]
    space = job_space(job, inst.catalog)
    (_, table), = iter_job_tables([job], inst.catalog)
    grid = space.grid(np.arange(len(space)))
    assert len(space) == len(table)
    for f in GRID_FIELDS:
        x, y = getattr(table.grid, f), getattr(grid, f)
        assert (x is None and y is None) or np.array_equal(x, y), f
    rack = {k: space.nodes(k) for k in range(len(space.acc_names))}
    nodes = np.array([rack[int(a)][i % len(space.base)] for i, a in enumerate(grid.acc)])
    assert np.array_equal(nodes, table.perf["nodes"])


def test_a_wrong_flop_bound_is_caught_and_the_search_reruns_without_it(monkeypatch):
    inst = load_instance(ROOT / "instances" / "three-jobs-budget.yaml")
    jobs = inst.training_jobs
    right = PR.prune_owned_jobs(jobs, list(range(len(jobs))), inst.catalog)
    calls = []
    real = PR.prune_fewest_nodes

    def spy(space, group, flop_bound=True):
        calls.append(flop_bound)
        return real(space, group, flop_bound)

    low = PR.peak_flops_bound  # a third of the true bound: layouts running above it get evaluated
    monkeypatch.setattr(PR, "peak_flops_bound", lambda acc, precision, calib: low(acc, precision, calib) / 3)
    monkeypatch.setattr(PR, "prune_fewest_nodes", spy)
    wrong = PR.prune_owned_jobs(jobs, list(range(len(jobs))), inst.catalog)
    assert False in calls
    for i in right:
        _same(right[i], wrong[i])


@pytest.mark.parametrize("name,batch,stack,precision", [
    ("llama3-8b", 1024, "megatron-core", "bf16"), ("gpt3-175b", 1536, "megatron-2021", "bf16"),
    ("llama3-70b", 2048, "megatron-core", "fp8"), ("deepseek-v3", 4096, "megatron-core", "fp8"),
    ("mixtral-8x7b", 1024, "torchtitan", "bf16")])
def test_no_layout_beats_the_peak_flop_bound(name, batch, stack, precision):
    # The bound the fast pruning skips layouts with: model FLOPs per step never exceed what the
    # layout's accelerators do at peak_flops_bound in its step time (every catalog accelerator).
    cat = default_catalog()
    accs, fabs = list(cat.accelerators.values()), list(cat.fabrics.values())
    dims = PRESETS[name]
    grid = enumerate_grid(dims, batch, accs, fabs, precision=precision, stack=stack)
    grid = grid.take(np.arange(0, len(grid), max(1, len(grid) // 40000)))
    out = evaluate(dims, grid, accs, fabs, cat.calibration, precision, batch, stack=stack, detail=False)
    peak = np.array([peak_flops_bound(a, precision, cat.calibration) if a.peak_bf16_tflops else np.inf
                     for a in accs])[grid.acc]
    flops = grid.gb * float(dims.seq_len) * model_flops_per_token(dims)
    assert (flops <= out["step_time_s"] * out["n_acc"] * peak * (1 + PR.BOUND_SLACK)).all()
