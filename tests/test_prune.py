"""Pruning keeps exactly what a plain, obviously-correct loop keeps."""

import numpy as np

from models.loader import load_instance
from models.candidates import job_tables
from optimizer.mip.prune import prune


def _reference(table, objective):
    """Per (accelerator, fabric): the fewest-node row, fastest among them, lowest index on ties
    (cost objectives); or every row strictly faster than all rows with fewer or equal nodes (min_time)."""
    days, nodes = table.days, table.perf["nodes"]
    ok = table.perf["fits_memory"].astype(bool) & (days <= table.job.deadline_days)
    groups = {}
    for i in np.flatnonzero(ok):
        groups.setdefault((int(table.grid.acc[i]), int(table.grid.fab[i])), []).append(int(i))
    keep = []
    for _, rows in sorted(groups.items()):
        rows.sort(key=lambda i: (nodes[i], days[i], i))
        if objective != "min_time":
            keep.append(rows[0])
            continue
        best = np.inf
        for i in rows:
            if days[i] < best - 1e-12:
                keep.append(i)
                best = days[i]
    return keep


def test_pruning_matches_a_plain_loop():
    inst = load_instance("instances/three-jobs-budget.yaml")
    for table in job_tables(inst.training_jobs, inst.catalog):
        for objective in ("min_tco", "min_time"):
            assert prune(table, objective).keep.tolist() == _reference(table, objective), (table.job.name, objective)
