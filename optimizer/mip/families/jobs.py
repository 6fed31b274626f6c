"""Training jobs: each runs exactly one surviving configuration, whole, at one open site."""

from __future__ import annotations

from dataclasses import replace

from models.candidates import layout_storage, storage_usable_tb
from models.perf.goodput import layout_goodput, wall_clock_days
from models.perf.training import evaluate_layout
from models.presets import resolve_model
from models.schema import Instance, compatible
from models.units import layout_nodes

from optimizer.mip.audit import Audit, close
from optimizer.mip.data import MipData
from optimizer.mip.lp import K, Model, lin_sum
from optimizer.mip.vars import Vars


def add_job_choice(m: Model, d: MipData, v: Vars) -> None:
    """Constraint (1): every job runs exactly one surviving configuration, whole, at one site; only
    at an open site (sum_c choose[j,c,s] <= site_open[s]: tight, no big-M)."""
    for job in d.jobs:
        for s in d.sites:
            for k, c in enumerate(job.candidates):
                v.choose[job.name, k, s.name] = m.add_binary(K("choose", job=job.name, cand=c.index, site=s.name))
            m.add_constraint(
                lin_sum(v.choose[job.name, k, s.name] for k in range(len(job.candidates))) <= v.site_open[s.name],
                K("job_at_open_site", job=job.name, site=s.name),
            )
        for k, c in enumerate(job.rented):
            v.rent[job.name, k] = m.add_binary(K("rent", job=job.name, cand=c.index))
        m.add_constraint(lin_sum(v.choose[job.name, k, s.name] for k in range(len(job.candidates)) for s in d.sites)
                         + lin_sum(v.rent[job.name, k] for k in range(len(job.rented))) == 1,
                         K("one_config", job=job.name))


def identical_jobs(d: MipData) -> list[list[str]]:
    """Groups (2 or more, in instance order) of jobs with equal data in every field but the name:
    the same candidates, storage, checkpoints and backups, so swapping two keeps every total."""
    groups: list[tuple[object, list[str]]] = []
    for j in d.jobs:
        key = replace(j, name="")
        for g in groups:
            if g[0] == key:
                g[1].append(j.name)
                break
        else:
            groups.append((key, [j.name]))
    return [names for _, names in groups if len(names) > 1]


def add_job_symmetry(m: Model, d: MipData, v: Vars) -> None:
    """Symmetry breaking among identical jobs, `job_order[job,next]`: each option (candidate at a
    site, or rented) gets a rank, and a job's chosen rank is at most the next identical job's.
    Swapping identical jobs sorts any design this way at the same cost and leaves every site's
    totals alone, so it combines with the site ordering (sites.add_site_symmetry). Only for
    objectives and bounds that treat the jobs alike (build_model's `symmetry`)."""
    for names in identical_jobs(d):
        job = next(j for j in d.jobs if j.name == names[0])
        n = len(job.candidates)

        def rank(name):
            return (lin_sum((1 + i * n + k, v.choose[name, k, s.name]) for i, s in enumerate(d.sites) for k in range(n))
                    + lin_sum((1 + len(d.sites) * n + k, v.rent[name, k]) for k in range(len(job.rented))))

        for a, b in zip(names, names[1:]):
            m.add_constraint(rank(a) <= rank(b), K("job_order", job=a, next=b))


def job_days_expr(d: MipData, v: Vars, job_name: str):
    """The days of one job's chosen configuration, as a MIP expression."""
    job = next((j for j in d.jobs if j.name == job_name), None)
    if job is None:
        raise ValueError(f"unknown training job '{job_name}' (jobs: {', '.join(j.name for j in d.jobs)})")
    return (lin_sum(c.days * v.choose[job.name, k, s.name] for k, c in enumerate(job.candidates) for s in d.sites)
            + lin_sum(c.days * v.rent[job.name, k] for k, c in enumerate(job.rented)))


def recompute_job(instance: Instance, job_name: str, layout: dict) -> dict:
    """The performance model on one layout: days (with failures and checkpoint stalls), memory, nodes, rates."""
    job = next(w for w in instance.training_jobs if w.name == job_name)
    cat = instance.catalog
    dims = resolve_model(job.model, job.seq_len)
    acc, fab = cat.accelerators[layout["accelerator"]], cat.fabrics[layout["fabric"]]
    r = evaluate_layout(dims, layout, acc, fab, cat.calibration, job.precision, job.global_batch, tokens=job.tokens)
    r["nodes"] = float(layout_nodes(acc, int(r["n_acc"]), layout["tp"]))
    st = layout_storage(job, dims, layout, int(r["n_acc"]), r["tokens_per_s"])
    r.update(layout_goodput(job, acc, int(r["n_acc"]), int(r["nodes"]), st["write_s"], st["reload_s"]))
    r["days"] = float(wall_clock_days(r["time_to_train_days"], r["goodput"]))
    r.update({f"storage_{k}": x for k, x in st.items()})
    r["read_gbps"], r["write_gbps"] = st["read_gbps"], st["write_gbps"]
    r["usable_tb"] = storage_usable_tb(job, dims)
    r["endpoints"] = (int(r["nodes"]) + r["spare_nodes"]) * acc.fabric_ports_per_node  # hot spares are cabled
    return r


def check_job_symmetry(a: Audit) -> None:
    """Nothing to check: the rows only choose among relabellings of the same design."""


def check_job_choice(a: Audit) -> None:
    """Each job once, at a known open site, on its pins; its layout valid, in memory, within its
    deadline and as fast as reported. Records the nodes (hot spares included), endpoints and storage it needs."""
    inst, sol = a.instance, a.sol
    if sorted(j.name for j in sol.jobs) != sorted(w.name for w in inst.training_jobs):
        a.problem("the solution does not place every training job exactly once")
    for j in sol.jobs:
        w = next(w for w in inst.training_jobs if w.name == j.name)
        spec = inst.catalog.accelerators[j.accelerator]
        mode = inst.procurement_of(w)
        if j.procurement == "rent":
            if mode == "own" or not spec.rentable:
                a.problem(f"job {j.name}: rented, but its procurement is {mode} / {j.accelerator} has no rental price")
        elif mode == "rent" or not spec.buyable:
            a.problem(f"job {j.name}: owned, but its procurement is {mode} / {j.accelerator} is {spec.purchase_unit}")
        if j.procurement != "rent" and j.site not in a.sites:
            a.problem(f"job {j.name}: placed at unknown site {j.site}")
            continue
        if w.accelerator and w.accelerator != j.accelerator:
            a.problem(f"job {j.name}: pinned to {w.accelerator} but runs on {j.accelerator}")
        if w.fabric and w.fabric != j.fabric:
            a.problem(f"job {j.name}: pinned to fabric {w.fabric} but uses {j.fabric}")
        cat = inst.catalog
        if not compatible(j.accelerator, cat.accelerators[j.accelerator], j.fabric, cat.fabrics[j.fabric]):
            a.problem(f"job {j.name}: {j.accelerator} cannot use fabric {j.fabric}")
        gb = j.layout.get("global_batch", w.global_batch)
        lo, hi = (w.global_batch, w.global_batch) if isinstance(w.global_batch, int) else (w.global_batch.min,
                                                                                           w.global_batch.max)
        if gb % (j.micro_batch * j.dp) or not lo <= gb <= hi:
            a.problem(f"job {j.name}: global batch {gb} is not the job's ({w.global_batch}) or not a multiple of "
                      "micro-batch x dp")
        r = recompute_job(inst, j.name, j.layout)
        if not r["fits_memory"]:
            a.problem(f"job {j.name}: needs {r['memory_per_gpu_gb']:.1f} GB per accelerator, more than fits")
        if w.deadline_days is not None and r["days"] > w.deadline_days * (1 + 1e-9):
            a.problem(f"job {j.name}: takes {r['days']:.3f} days, deadline {w.deadline_days} days")
        if not close(r["days"], j.days) or int(r["nodes"]) != j.nodes:
            a.problem(f"job {j.name}: reported {j.days:.4f} days on {j.nodes} nodes, recomputed {r['days']:.4f} "
                      f"on {int(r['nodes'])}")
        spares = r["spare_nodes"] if j.procurement == "own" else 0  # rented capacity: the cloud replaces failed nodes
        if spares != j.spare_nodes or not close(r["goodput"], j.goodput):
            a.problem(f"job {j.name}: reported {j.spare_nodes} hot spares at goodput {j.goodput:.4f}, recomputed "
                      f"{spares} at {r['goodput']:.4f}")
        if j.procurement == "rent":
            continue  # cloud capacity: nothing to hold at a site
        site = j.site
        a.used[site] = True
        a.need_nodes[site][j.accelerator] = a.need_nodes[site].get(j.accelerator, 0) + int(r["nodes"]) + r["spare_nodes"]
        a.need_endpoints[site][j.fabric] = a.need_endpoints[site].get(j.fabric, 0) + r["endpoints"]
        a.usable_tb[site] += r["usable_tb"]
        a.need_gbps[site] += r["write_gbps"]
        a.need_read_gbps[site] += r["read_gbps"]
