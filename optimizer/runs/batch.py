"""Batch solving: many instance files, each in its own worker process, resumable and loss-free.

`run_batch` ties the pieces together: `discover` turns PATHS into work items with content
hashes, `store` keeps one crash-safe result per instance and the summaries (and decides what
`--resume` may reuse), and an engine (`local`: a process pool on this machine, `ray_engine`: a Ray
cluster) runs `worker.solve_payload` on each. Results and summaries do not depend on the engine
or on the order in which instances finish.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .discover import BatchArgumentError, Task, discover, read_task
from .local import run_local
from .ray_engine import run_ray
from .store import ResultStore
from .worker import FAILED, Options


class Listener:
    """Progress hooks; the CLI's progress bar implements them."""

    def started(self, task: Task) -> None: ...

    def finished(self, task: Task, rec: dict, skipped: bool = False) -> None: ...


@dataclass
class BatchReport:
    records: list[dict] = field(default_factory=list)  # every task of the batch, sorted by path
    solved: int = 0  # solved in this run
    skipped: int = 0  # reused from an earlier run (--resume)
    wall_s: float = 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return dict(sorted(out.items()))


def run_batch(paths: list[str], out: Path | str, *, workers: Optional[int] = None, engine: str = "local",
              ray_address: Optional[str] = None, resume: bool = False, retry_failed: bool = False,
              opts: Optional[Options] = None, listener: Optional[Listener] = None,
              tasks: Optional[list[Task]] = None) -> BatchReport:
    """Solve every instance under PATHS into OUT; see the module docstring for the guarantees."""
    t0 = time.perf_counter()
    opts = opts or Options()
    listener = listener or Listener()
    out = Path(out)
    if engine not in ("local", "ray"):
        raise BatchArgumentError(f"--engine: got '{engine}', expected local or ray")
    if workers is not None and workers < 1:
        raise BatchArgumentError(f"--workers: got {workers}, expected at least 1")
    if opts.work_limit is not None and (isinstance(opts.work_limit, bool) or not isinstance(opts.work_limit, int)
                                        or opts.work_limit < 0):
        raise BatchArgumentError(f"--work-limit: got {opts.work_limit!r}, expected a whole number of nodes >= 0")
    for name, v in (("--time-limit", opts.time_limit_s), ("--timeout", opts.timeout_s), ("--gap", opts.gap)):
        if v is not None and not (math.isfinite(v) and v >= 0 and (v > 0 or name == "--gap")):
            raise BatchArgumentError(f"{name}: got {v}, expected a positive number")
    if out.exists() and not out.is_dir():
        raise BatchArgumentError(f"--out: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if tasks is None:
        tasks = discover(paths, out)
    store = ResultStore(out)
    report = BatchReport()
    records: dict[str, dict] = {}
    todo: list[Task] = []
    for t in tasks:
        read_task(t)
        if t.preset is not None:  # decided without a solve: still one result file per instance
            records[t.path] = t.preset
            store.write_result(t.preset)
            continue
        prev = store.load(t.path, t.sha256) if resume else None
        if prev is not None and not (retry_failed and prev.get("status") in FAILED):
            records[t.path] = prev
            report.skipped += 1
            continue
        todo.append(t)
    # The summary always starts as the rows already decided (empty on a fresh run), then grows.
    store.rewrite_summary(list(records.values()))
    for t in tasks:
        if t.path in records:
            listener.finished(t, records[t.path], skipped=True)

    def done(task: Task, rec: dict) -> None:
        rec.setdefault("sha256", task.sha256)
        rec["path"] = task.path
        store.save(rec)
        records[task.path] = rec
        report.solved += 1
        listener.finished(task, rec)

    # Largest files first: bigger instances tend to take longer, and starting them early keeps one
    # long solve from running alone at the end (results and summaries do not depend on the order).
    todo.sort(key=lambda t: (-len(t.data), t.path))
    if todo:
        if engine == "ray":
            run_ray(todo, opts, workers, ray_address, done, listener.started)
        else:
            run_local(todo, opts, workers or os.cpu_count() or 1, done, listener.started)
    report.records = sorted(records.values(), key=lambda r: r["path"])
    store.rewrite_summary(report.records)
    report.wall_s = time.perf_counter() - t0
    return report
