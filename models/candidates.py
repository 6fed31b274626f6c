"""Candidate configurations of a training job with everything the MIP needs, as plain numbers.

The optimizer never sees a pydantic object or a formula: it gets, per job, one row per candidate
(accelerator, fabric, layout) with nodes, fabric endpoints, days to train and storage read rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .presets import resolve_model
from .schema import Catalog, InferenceService, ModelDims, TrainingJob, compatible
from .perf.goodput import job_goodput, rate_arrays, wall_clock_days
from .perf.stacks import SHARDING
from .perf.training import RECOMPUTE, ConfigGrid, enumerate_grid, evaluate, supports_precision
from .units import layout_nodes

if TYPE_CHECKING:
    from .perf.inference import ServingGrid

# A checkpoint holds bf16 weights (2 B) plus fp32 master weights, Adam momentum and variance (12 B).
CHECKPOINT_BYTES_PER_PARAM = 14.0
WEIGHT_BYTES_PER_PARAM = 2.0


def checkpoint_tb(dims: ModelDims) -> float:
    return CHECKPOINT_BYTES_PER_PARAM * dims.params / 1e12


def storage_usable_tb(job: TrainingJob, dims: ModelDims) -> float:
    """Dataset plus retained checkpoints, usable (before replication)."""
    return job.dataset_tb + job.checkpoints_retained * checkpoint_tb(dims)


def weights_tb(service: InferenceService, dims: ModelDims) -> float:
    """Served model weights at the service's precision, TB."""
    from .perf.inference import BYTES_PER_PARAM

    return BYTES_PER_PARAM[service.precision] * dims.params / 1e12


def checkpoint_write_gbps(job: TrainingJob, dims: ModelDims) -> float:
    """Bandwidth to write one checkpoint within its window, GB/s."""
    return checkpoint_tb(dims) * 1000.0 / job.checkpoint_window_s


def read_gbps(job: TrainingJob, tokens_per_s):
    """Training data read rate at the job's token rate, GB/s."""
    return tokens_per_s * job.data_bytes_per_token / 1e9


def reload_gb(dims: ModelDims, dp, sharded_optimizer, sharded_weights, ep=1):
    """GB read from storage to restart from a checkpoint: each data-parallel replica reads its own copy
    of the weights (routed experts: one copy per dp/ep group) unless they are sharded (ZeRO-3/FSDP),
    and of the optimizer state unless it is sharded (distributed optimizer, ZeRO-1/2)."""
    dp = np.asarray(dp, dtype=float)
    experts = dims.moe_layers * dims.experts * dims.expert_params if dims.is_moe else 0.0
    copies = np.where(sharded_weights, 1.0, dp)
    weights = WEIGHT_BYTES_PER_PARAM * ((dims.params - experts) * copies + experts * np.maximum(copies / ep, 1.0))
    rest = (CHECKPOINT_BYTES_PER_PARAM - WEIGHT_BYTES_PER_PARAM) * dims.params * np.where(sharded_optimizer, 1.0, dp)
    return (weights + rest) / 1e9


def storage_rates(job: TrainingJob, dims: ModelDims, accelerators, tokens_per_s, reload, explain=False) -> dict:
    """What a layout needs from shared storage and what it gets, GB/s and s (arrays):
    write_gbps  = max(one checkpoint within the window, accelerators x storage_write_gbs_per_acc)
    read_gbps   = max(data reads at the token rate, accelerators x storage_read_gbs_per_acc,
                      the restart reload `reload` GB within checkpoint_reload_s)
    write_s, reload_s: the checkpoint stall and reload time at those rates (the per-accelerator floors
    are bought anyway, so where they beat the window the job checkpoints and restarts faster).
    With `explain`, `sized_write` / `sized_read` name the term that sets each rate."""
    n = np.asarray(accelerators, dtype=float)
    ckpt_gb = checkpoint_tb(dims) * 1000.0
    window = job.checkpoint_window_s
    target = job.checkpoint_reload_s or window
    floor_w, floor_r = n * job.storage_write_gbs_per_acc, n * job.storage_read_gbs_per_acc
    data = np.asarray(read_gbps(job, tokens_per_s), dtype=float)
    reload = np.asarray(reload, dtype=float)
    terms_r = np.stack([data, floor_r, reload / target])
    with np.errstate(divide="ignore", invalid="ignore"):
        write_s = np.where(floor_w * window > ckpt_gb, ckpt_gb / np.where(floor_w > 0, floor_w, 1.0), window)
        reload_s = np.where(floor_r * target > reload, reload / np.where(floor_r > 0, floor_r, 1.0), target)
    out = {"write_gbps": np.maximum(ckpt_gb / window, floor_w), "read_gbps": terms_r.max(axis=0),
           "write_s": write_s, "reload_s": reload_s}
    if explain:
        out["sized_write"] = np.where(floor_w * window > ckpt_gb, "per accelerator", "checkpoint window")
        out["sized_read"] = np.array(STORAGE_READ_TERMS)[terms_r.argmax(axis=0)]
    return out


STORAGE_READ_TERMS = ("data reads", "per accelerator", "checkpoint reload")


def layout_storage(job: TrainingJob, dims: ModelDims, layout: dict, accelerators: int, tokens_per_s: float) -> dict:
    """`storage_rates` for one layout description (`JobTable.layout`), as plain values (the verifier's path)."""
    shard = layout.get("sharding", "none")
    gb = reload_gb(dims, layout["dp"], shard != "none" or bool(layout.get("distributed_optimizer")), shard == "zero3",
                   layout.get("ep", 1))
    st = storage_rates(job, dims, np.array([accelerators]), np.array([tokens_per_s]), np.array([gb]), explain=True)
    return {k: (str(v[0]) if k.startswith("sized") else float(v[0])) for k, v in st.items()} | {"reload_gb": float(gb)}


def layout_reload_gb(dims: ModelDims, grid, rows=None):
    """`reload_gb` for rows of a ConfigGrid (all rows by default)."""
    sel = slice(None) if rows is None else rows
    shard = np.asarray(grid.shard[sel])
    ep = 1 if grid.ep is None else np.asarray(grid.ep[sel])
    return reload_gb(dims, grid.d[sel], (shard >= 1) | np.asarray(grid.dist_opt[sel], dtype=bool), shard >= 3, ep)


@dataclass(frozen=True)
class JobTable:
    """All enumerated configurations of one job, evaluated."""

    job: TrainingJob
    dims: ModelDims
    accelerators: list[str]
    fabrics: list[str]
    grid: ConfigGrid
    perf: dict[str, np.ndarray]
    days: np.ndarray  # wall clock: failure-free days / goodput (perf["goodput"], perf["spare_nodes"], ...)
    read_gbps: np.ndarray
    endpoints: np.ndarray

    def __len__(self) -> int:
        return len(self.grid)

    def layout(self, i: int) -> dict:
        """Row i as a plain, JSON-able description of the configuration."""
        g = self.grid
        return {
            "accelerator": self.accelerators[int(g.acc[i])],
            "fabric": self.fabrics[int(g.fab[i])],
            "tp": int(g.t[i]),
            "pp": int(g.p[i]),
            "dp": int(g.d[i]),
            "micro_batch": int(g.b[i]),
            "vp": int(g.v[i]),
            "recompute": RECOMPUTE[int(g.recompute[i])],
            "distributed_optimizer": bool(g.dist_opt[i]),
            "cp": int(g.cp[i]),
            "sharding": SHARDING[int(g.shard[i])],
            "global_batch": int(g.gb[i]),
            "stack": self.job.stack,
            **({"ep": int(g.ep[i]), "etp": int(g.etp[i])} if g.ep is not None else {}),
        }


def _job_names(job: TrainingJob, catalog: Catalog):
    """The job's model, the accelerators and fabrics it may use, and which (accelerator, fabric)
    pairs are compatible (Gaudi 3 on its RoCE, TPUs on their DCN, never InfiniBand)."""
    dims = resolve_model(job.model, job.seq_len)
    acc_names = [job.accelerator] if job.accelerator else sorted(catalog.accelerators)
    fab_names = [job.fabric] if job.fabric else sorted(catalog.fabrics)
    ok = np.array([[compatible(a, catalog.accelerators[a], f, catalog.fabrics[f]) for f in fab_names] for a in acc_names],
                  dtype=bool)
    return dims, acc_names, fab_names, ok


def _evaluated(job: TrainingJob, catalog: Catalog):
    """The token-independent part of a job's table: names, grid, performance (no time to train)."""
    dims, acc_names, fab_names, ok = _job_names(job, catalog)
    accs = [catalog.accelerators[a] for a in acc_names]
    fabs = [catalog.fabrics[f] for f in fab_names]
    grid = enumerate_grid(dims, job.global_batch, accs, fabs, precision=job.precision, pinned=job.parallelism,
                          stack=job.stack)
    if len(grid) and not ok.all():  # only the pairs an accelerator can really use
        grid = grid.take(np.flatnonzero(ok[grid.acc, grid.fab]))
    return _evaluated_grid(job, catalog, dims, acc_names, fab_names, grid)


def _evaluated_grid(job: TrainingJob, catalog: Catalog, dims: ModelDims, acc_names, fab_names, grid: ConfigGrid):
    accs = [catalog.accelerators[a] for a in acc_names]
    fabs = [catalog.fabrics[f] for f in fab_names]
    perf = evaluate(dims, grid, accs, fabs, catalog.calibration, job.precision, job.global_batch, stack=job.stack,
                    detail=False)
    for k, a in enumerate(accs):
        if a.purchase_unit == "rack" and len(grid):
            rows = grid.acc == k
            perf["nodes"][rows] = layout_nodes(a, perf["n_acc"][rows], grid.t[rows])
    ports = np.array([a.fabric_ports_per_node for a in accs], dtype=np.int64)
    endpoints = perf["nodes"].astype(np.int64) * ports[grid.acc] if len(grid) else np.zeros(0, dtype=np.int64)
    per_node = np.array([a.accelerators_per_node for a in accs], dtype=np.int64)
    failures = (rate_arrays(accs), per_node)
    return dims, acc_names, fab_names, grid, perf, endpoints, failures


@dataclass(frozen=True)
class JobSpace:
    """A job's layouts before any evaluation. `enumerate_grid` repeats one set of parallel layouts
    (`base`) on every (accelerator, fabric) pair, so row r of the job's full table (`job_table`) is
    base row r % n_base on pair r // n_base (the usable pairs, accelerator-major): rows can be
    evaluated a few at a time, in any order, with the numbers the full table has."""

    job: TrainingJob
    catalog: Catalog
    dims: ModelDims
    acc_names: list[str]
    fab_names: list[str]
    base: ConfigGrid  # acc = fab = 0
    pair_acc: np.ndarray  # per usable pair: index into acc_names
    pair_fab: np.ndarray  # per usable pair: index into fab_names

    def __len__(self) -> int:
        return len(self.base) * len(self.pair_acc)

    def nodes(self, acc: int) -> np.ndarray:
        """Nodes of every base row on accelerator `acc` (known before evaluation)."""
        b = self.base
        return layout_nodes(self.catalog.accelerators[self.acc_names[acc]], b.t * b.p * b.d * b.cp, b.t)

    def grid(self, rows) -> ConfigGrid:
        rows = np.asarray(rows, dtype=np.int64)
        pair, i = np.divmod(rows, len(self.base))
        return replace(self.base.take(i), acc=self.pair_acc[pair], fab=self.pair_fab[pair])

    def evaluated(self, rows):
        """`_evaluated`'s tuple for the full table's `rows` only."""
        return _evaluated_grid(self.job, self.catalog, self.dims, self.acc_names, self.fab_names, self.grid(rows))

    def table(self, job: TrainingJob, rows) -> JobTable:
        """`job`'s table (a job sharing this evaluation, see iter_job_tables) restricted to `rows`, in their order."""
        return _for_job(job, self.evaluated(rows))


def evaluated_table(job: TrainingJob, evaluated, sel) -> JobTable:
    """`job`'s table on rows `sel` of a shared evaluation (a `JobSpace.evaluated` tuple)."""
    dims, acc_names, fab_names, grid, perf, endpoints, failures = evaluated
    return _for_job(job, (dims, acc_names, fab_names, grid.take(sel), {k: a[sel] for k, a in perf.items()},
                          endpoints[sel], failures))


def job_space(job: TrainingJob, catalog: Catalog) -> JobSpace:
    dims, acc_names, fab_names, ok = _job_names(job, catalog)
    ok &= np.array([supports_precision(catalog.accelerators[a], job.precision) for a in acc_names])[:, None]
    pair_acc, pair_fab = (x.astype(np.int64) for x in np.nonzero(ok))  # accelerator-major, as enumerate_grid
    first = catalog.accelerators[acc_names[int(pair_acc[0]) if len(pair_acc) else 0]]
    base = enumerate_grid(dims, job.global_batch, [first], [catalog.fabrics[fab_names[0]]], precision=job.precision,
                          pinned=job.parallelism, stack=job.stack)
    return JobSpace(job, catalog, dims, acc_names, fab_names, base, pair_acc, pair_fab)


def _for_job(job: TrainingJob, base) -> JobTable:
    dims, acc_names, fab_names, grid, perf, endpoints, (rates, per_node) = base
    st = storage_rates(job, dims, perf["n_acc"], perf["tokens_per_s"], layout_reload_gb(dims, grid))
    g = job_goodput(job, rates, grid.acc, perf["n_acc"], perf["nodes"], per_node[grid.acc],
                    write_s=st["write_s"], reload_s=st["reload_s"])
    perf = dict(perf, time_to_train_days=job.tokens / perf["tokens_per_s"] / 86400.0, **g,
                storage_write_gbps=st["write_gbps"])
    return JobTable(job=job, dims=dims, accelerators=acc_names, fabrics=fab_names, grid=grid, perf=perf,
                    days=wall_clock_days(perf["time_to_train_days"], g["goodput"]),
                    read_gbps=st["read_gbps"], endpoints=endpoints)


def job_table(job: TrainingJob, catalog: Catalog) -> JobTable:
    """Enumerate and evaluate every configuration of `job` on the catalog (pins respected)."""
    return _for_job(job, _evaluated(job, catalog))


def job_tables(jobs: list[TrainingJob], catalog: Catalog) -> list[JobTable]:
    """Tables for several jobs; jobs that differ only in tokens, deadline or storage share one
    evaluation (a step's time does not depend on how many steps there are)."""
    return [t for _, t in sorted(iter_job_tables(jobs, catalog), key=lambda it: it[0])]


def shared_evaluations(jobs: list[TrainingJob]) -> dict:
    """Positions in `jobs` grouped by the evaluation they share (same model, batch, precision, pins
    and stack: they differ only in tokens, deadline or storage), in order of first appearance."""
    groups: dict = {}
    for i, job in enumerate(jobs):
        key = (resolve_model(job.model, job.seq_len), job.global_batch, job.precision, job.parallelism,
               job.accelerator, job.fabric, job.stack)
        groups.setdefault(key, []).append(i)
    return groups


def iter_job_tables(jobs: list[TrainingJob], catalog: Catalog):
    """(position in `jobs`, table) pairs, grouped by shared evaluation rather than in job order, so a
    caller that prunes each table can drop it at once: at most three evaluations are alive (two
    being computed, one being used), not one per distinct job (gigabytes on the full catalog)."""
    from collections import deque

    groups = shared_evaluations(jobs)
    if len(groups) <= 1:
        for positions in groups.values():
            base = _evaluated(jobs[positions[0]], catalog)
            for i in positions:
                yield i, _for_job(jobs[i], base)
        return
    # numpy releases the GIL in its array kernels: two threads keep both cores busy.
    from concurrent.futures import ThreadPoolExecutor

    pending = iter(groups.values())
    with ThreadPoolExecutor(max_workers=2) as pool:
        running: deque = deque()

        def submit() -> None:
            positions = next(pending, None)
            if positions is not None:
                running.append((positions, pool.submit(_evaluated, jobs[positions[0]], catalog)))

        submit()
        submit()
        while running:
            positions, future = running.popleft()
            base = future.result()
            del future
            submit()
            for i in positions:
                yield i, _for_job(jobs[i], base)
            del base


@dataclass(frozen=True)
class ServiceTable:
    """All replica layouts (accelerator x tensor parallel x batch) of one inference service, evaluated."""

    service: InferenceService
    dims: ModelDims
    accelerators: list[str]
    grid: ServingGrid
    perf: dict[str, np.ndarray]
    # Per accelerator: the scale-out fabric a wide-EP replica spanning domains crosses (None: none).
    fabrics: list = field(default_factory=list)
    spans: np.ndarray | None = None  # rows whose replica is wider than one scale-up domain

    def __len__(self) -> int:
        return len(self.grid)

    def layout(self, i: int) -> dict:
        """Row i: accelerator, tp (accelerators per replica), batch; for a mixture of experts' expert-
        parallel replica ep (= tp), and, wider than its scale-up domain, the fabric its all-to-all crosses."""
        g = self.grid
        out = {"accelerator": self.accelerators[int(g.acc[i])], "tp": int(g.t[i]), "batch": int(g.batch[i])}
        if g.ep is not None and g.ep[i] > 1:
            out["ep"] = int(g.ep[i])
        if self.spans is not None and self.spans[i]:
            out["fabric"] = self.fabrics[int(g.acc[i])]
        return out

    def meets_slo(self) -> np.ndarray:
        p, s = self.perf, self.service
        ok = p["fits_memory"].astype(bool) & (p["ttft_s"] <= s.ttft_s) & (p["tpot_s"] <= s.tpot_s)
        return ok & (p["slo_requests_per_s"] > 0) if "slo_requests_per_s" in p else ok


def serving_fabric(accelerator: str, catalog: Catalog) -> str | None:
    """The scale-out fabric a wide-EP serving replica of `accelerator` uses between its nodes: the
    accelerator's usual one when the catalog has it and they are compatible, else the fastest
    compatible one; None when the catalog offers none."""
    from .perf.estimate import DEFAULT_FABRIC_BY_PREFIX

    acc = catalog.accelerators[accelerator]
    ok = sorted(f for f, fab in catalog.fabrics.items() if compatible(accelerator, acc, f, fab))
    for prefix, f in DEFAULT_FABRIC_BY_PREFIX:
        if accelerator.lower().startswith(prefix) and f in ok:
            return f
    return max(ok, key=lambda f: catalog.fabrics[f].port_gbps) if ok else None


def service_table(service: InferenceService, catalog: Catalog) -> ServiceTable:
    from .perf.inference import enumerate_serving_grid, evaluate_serving, spans_domains

    dims = resolve_model(service.model)
    names = sorted(service.accelerators or catalog.accelerators)
    accs = [catalog.accelerators[a] for a in names]
    fab_names = [serving_fabric(a, catalog) if dims.is_moe else None for a in names]
    fabs = [None if f is None else catalog.fabrics[f] for f in fab_names]
    grid = enumerate_serving_grid(dims, accs, service.precision)
    spans = spans_domains(grid, accs)
    if spans.any():  # a replica across domains needs a fabric between its nodes
        no_fab = np.array([f is None for f in fab_names], dtype=bool)
        keep = ~(spans & no_fab[grid.acc])
        if not keep.all():
            grid, spans = grid.take(np.flatnonzero(keep)), spans[keep]
    perf = evaluate_serving(dims, grid, accs, catalog.calibration, service.precision, service.input_tokens,
                            service.output_tokens, fabrics=fabs)
    if service.percentile_slos and len(grid):
        # Requests/s per replica at the load that meets the percentile SLOs (no round trip: the
        # MIP recomputes it per site for the layouts that survive pruning).
        from .perf.inference import slo_capacity_rps

        with np.errstate(divide="ignore", invalid="ignore"):
            perf["slo_requests_per_s"] = slo_capacity_rps(dims, grid, accs, catalog.calibration, service.precision,
                                                          service.input_tokens, service.output_tokens, perf=perf,
                                                          **service.percentile_slos)
    return ServiceTable(service, dims, names, grid, perf, fab_names, spans)
