"""What one instance runs in a worker process (local or on Ray): load, solve, verify, one record.

This is the only module of `optimizer.runs` that imports the solving pipeline. The worker never
raises: a bad file, a solver error or a bug becomes the record's status and error, so only that
instance's row records it.
"""

from __future__ import annotations

import importlib
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .store import sha256_bytes

FAILED = ("invalid", "error", "timeout")  # the batch's own statuses for instances without an answer
DEFAULT_SOLVER = "optimizer.runs.worker:solve_payload"


@dataclass
class Options:
    """How each instance is solved: the solver settings and the hard wall clock its worker gets."""

    backend: str = "ortools"
    time_limit_s: Optional[float] = 60.0  # soft: passed to the solver
    timeout_s: Optional[float] = None  # hard wall clock per instance; None = 2 x soft + 5 s
    gap: Optional[float] = None
    solver: str = DEFAULT_SOLVER
    work_limit: Optional[int] = None  # branch-and-bound nodes per MIP solve (deterministic)

    @property
    def extra(self) -> dict:
        """Keyword options for the solver function, only those set (test doubles take none)."""
        return {} if self.work_limit is None else {"work_limit": self.work_limit}

    @property
    def hard_timeout_s(self) -> Optional[float]:
        if self.timeout_s is not None:
            return self.timeout_s
        return None if self.time_limit_s is None else 2 * self.time_limit_s + 5


def solve_payload(path: str, data: bytes, backend: str = "ortools", time_limit_s: Optional[float] = None,
                  gap: Optional[float] = None, work_limit: Optional[int] = None,
                  on_start: Optional[Callable[[dict], None]] = None) -> dict:
    """Solve one instance given as bytes; never raises: failures become the record's status and error.
    `on_start(record)` gets the record of the verified constructive start before the MIP solve
    (status "feasible", incumbent_source "heuristic"): what the batch keeps if the worker is killed."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"path": path, "sha256": sha256_bytes(data), "status": "error", "error": None}
    try:
        from models.loader import InstanceError, load_instance
        from optimizer.solving.pipeline import solve_instance
        from optimizer.studies.explain import diagnose_solution, diagnosis_data
        from optimizer.studies.handover import report_facts

        try:
            with tempfile.TemporaryDirectory(prefix="dcopt-batch-") as tmp:
                f = Path(tmp) / (Path(path).name or "instance.yaml")
                f.write_bytes(data)
                try:
                    inst = load_instance(f)
                except InstanceError as exc:  # name the user's file, not the temporary copy
                    raise InstanceError(path, exc.problems) from None
        except InstanceError as exc:
            rec.update(status="invalid", error=exc.format())
        else:
            def record(sol) -> dict:
                d = sol.to_dict()
                d["diagnosis"] = diagnosis_data(sol.diagnosis)  # objects, as `dcopt solve --json` writes them
                d["report"] = report_facts(inst, sol)  # so `dcopt report` / `compare` re-render the file alone
                return d

            def early(sol) -> None:
                try:
                    on_start({**rec, **record(sol), "wall_s": time.perf_counter() - t0})
                except Exception:  # reporting the start must never cost the solve
                    pass

            sol = solve_instance(inst, backend=backend, time_limit_s=time_limit_s, gap=gap, work_limit=work_limit,
                                 on_start=early if on_start is not None else None)
            diagnose_solution(inst, sol, backend, time_limit_s)
            d = record(sol)
            status = d.pop("status")
            rec["status"] = status
            if status == "error":
                rec["error"] = f"solver error: {sol.message or 'no message'}"
            rec.update(d)
    except Exception as exc:  # a bug, a verifier failure, an out-of-memory: this instance only
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}".strip(), traceback=traceback.format_exc())
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def load_solver(spec: str) -> Callable[..., dict]:
    """'module:function' -> the function (tests swap in one that crashes or hangs)."""
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def ray_entry(spec: str, path: str, data: bytes, backend, time_limit_s, gap, **extra) -> dict:
    return load_solver(spec)(path, data, backend, time_limit_s, gap, **extra)


def warm() -> bool:
    """Import the solving pipeline, so a worker pays for it before its first instance's clock starts."""
    import optimizer.solving.pipeline  # noqa: F401

    return True


def timeout_record(task, limit: float, start: Optional[dict] = None) -> dict:
    """The record of a task (path, sha256) whose worker was killed at its hard wall clock; with the
    worker's `start` record (solve_payload's on_start), its verified constructive-start design."""
    why = f"wall-clock timeout: worker killed after {limit:g} s"
    if start is not None:
        why += "; the design is the constructive start's, verified before the solve began (gap unknown)"
    return {**(start or {}), "path": task.path, "sha256": task.sha256, "status": "timeout", "error": why,
            "wall_s": limit}


def crash_record(task, why: str, wall: float) -> dict:
    """The record of a task (path, sha256) whose worker died or whose Ray task failed."""
    return {"path": task.path, "sha256": task.sha256, "status": "error", "error": why, "wall_s": wall}
