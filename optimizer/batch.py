"""Batch solving: many instance files, each in its own worker process, resumable and loss-free.

Why it is built this way:
- One process per running instance (spawn context: no inherited solver or thread state), kept warm
  between instances so imports are paid once per worker, not once per file. A worker that crashes
  or overruns its wall clock is killed with its whole process group (PuLP's CBC runs as a child
  process) and replaced; only that instance's row records it. `ProcessPoolExecutor` cannot kill
  one task without breaking the pool, hence the small pool here.
- The driver is the only writer. Each result is written atomically (temp file + os.replace) and
  its summary row appended and fsynced as soon as it arrives, so a batch killed at any moment loses
  nothing that had finished; `--resume` trusts a result only if its recorded SHA-256 matches the
  file's bytes now.
- Workers receive the file's bytes, not its path: the hash always describes what was solved, and a
  Ray cluster needs no shared filesystem.
- Ray is an optional engine with the same worker function, so both engines give the same rows.
"""

from __future__ import annotations

import csv
import glob as globmod
import hashlib
import importlib
import io
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from optimizer.present.fmt import csv_row

INSTANCE_SUFFIXES = (".yaml", ".yml", ".json")
FAILED = ("invalid", "error", "timeout")  # the batch's own statuses for instances without an answer
TIMING_FIELDS = ("solve_s", "wall_s")  # summary fields that differ between runs of the same inputs
SUMMARY_FIELDS = (
    "path", "instance", "status", "objective", "objective_value", "best_bound", "gap", "solve_s", "wall_s",
    "tco_usd", "capex_usd", "facility_power_kw", "nodes", "accelerators", "sites", "mip_variables",
    "mip_constraints", "error", "sha256",
)
DEFAULT_SOLVER = "optimizer.batch:solve_payload"


class BatchArgumentError(ValueError):
    """Bad batch arguments (nothing to solve, unknown engine, ...): the CLI exits 2."""


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write then rename, so a reader (or a resumed batch) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def display_path(p: Path) -> str:
    """Relative to the working directory when below it: stable names for sorting and comparing runs."""
    absolute = p.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def result_name(display: str) -> str:
    """File name of an instance's result: readable stem plus a hash of its path (stems may repeat)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(display).stem)[:80]
    return f"{stem}-{hashlib.sha1(display.encode()).hexdigest()[:10]}.json"


@dataclass
class Task:
    path: str  # display path: identity and sort key
    file: Optional[Path]
    data: bytes = b""
    sha256: str = ""
    preset: Optional[dict] = None  # a record decided without a solve (a sweep that cannot expand)


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _scan_dir(d: Path, exclude: Optional[Path]) -> list[Path]:
    out = []
    for f in sorted(d.rglob("*")):
        if f.suffix.lower() not in INSTANCE_SUFFIXES or not f.is_file():
            continue
        rel = f.relative_to(d).parts
        if any(part.startswith(".") for part in rel):
            continue
        if exclude is not None and _is_under(f, exclude):
            continue
        out.append(f)
    return out


def _is_under(f: Path, d: Path) -> bool:
    try:
        f.resolve().relative_to(d.resolve())
        return True
    except ValueError:
        return False


def discover(paths: list[str], out_dir: Path) -> list[Task]:
    """PATHS (files, directories, globs) -> tasks, deduplicated, sweep files expanded into scenarios.

    Raises BatchArgumentError when a path matches nothing or nothing at all is found."""
    from optimizer.scenarios import SweepError, looks_like_sweep, materialize

    files: list[Path] = []
    for p in paths:
        P = Path(p)
        if P.is_dir():
            found = _scan_dir(P, out_dir)
            if not found:
                raise BatchArgumentError(f"{p}: no instance files (*.yaml, *.yml, *.json) in this directory")
            files += found
        elif P.is_file():
            files.append(P)
        elif _has_magic(p):
            matches = sorted(globmod.glob(p, recursive=True))
            if not matches:
                raise BatchArgumentError(f"{p}: the pattern matches no file")
            for m in matches:
                M = Path(m)
                files += _scan_dir(M, out_dir) if M.is_dir() else [M]
        else:
            raise BatchArgumentError(f"{p}: no such file or directory")
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    tasks: list[Task] = []
    for f in unique:
        if looks_like_sweep(f):
            try:
                for sc in materialize(f, out_dir / "scenarios"):
                    tasks.append(Task(display_path(sc), sc))
            except SweepError as exc:
                disp = display_path(f)
                tasks.append(Task(disp, f, preset={"path": disp, "sha256": "", "status": "invalid", "error": str(exc)}))
            continue
        tasks.append(Task(display_path(f), f))
    if not tasks:
        raise BatchArgumentError("no instance files to solve")
    by_path = {}
    for t in tasks:
        by_path.setdefault(t.path, t)
    return sorted(by_path.values(), key=lambda t: t.path)


def read_task(task: Task) -> None:
    """Read the bytes to solve now; a file that vanished becomes an 'invalid' row."""
    if task.preset is not None or task.file is None:
        return
    try:
        task.data = task.file.read_bytes()
        task.sha256 = sha256_bytes(task.data)
    except OSError as exc:
        task.preset = {"path": task.path, "sha256": "", "status": "invalid",
                       "error": f"{task.path}: invalid instance (1 problem)\n  - cannot read the file: {exc.strerror}"}


# --------------------------------------------------------------------------------------------
# The worker function (runs in a worker process, local or on Ray)
# --------------------------------------------------------------------------------------------


def solve_payload(path: str, data: bytes, backend: str = "ortools", time_limit_s: Optional[float] = None,
                  gap: Optional[float] = None) -> dict:
    """Solve one instance given as bytes; never raises: failures become the record's status and error."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"path": path, "sha256": sha256_bytes(data), "status": "error", "error": None}
    try:
        from models.loader import InstanceError, load_instance
        from optimizer.solving.pipeline import solve_instance

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
            sol = solve_instance(inst, backend=backend, time_limit_s=time_limit_s, gap=gap)
            d = sol.to_dict()
            status = d.pop("status")
            rec["status"] = status
            if status == "error":
                rec["error"] = f"solver error: {sol.message or 'no message'}"
            rec.update(d)
    except Exception as exc:  # a bug, a verifier failure, an out-of-memory: this instance only
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}".strip(), traceback=traceback.format_exc())
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def _load_solver(spec: str) -> Callable[..., dict]:
    """'module:function' -> the function (tests swap in one that crashes or hangs)."""
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def _ray_entry(spec: str, path: str, data: bytes, backend, time_limit_s, gap) -> dict:
    return _load_solver(spec)(path, data, backend, time_limit_s, gap)


# --------------------------------------------------------------------------------------------
# Results and the summary
# --------------------------------------------------------------------------------------------


def summary_row(rec: dict) -> dict:
    """One summary line: identical for identical inputs except the TIMING_FIELDS."""
    design = rec.get("design") or {}
    capex = design.get("capex_usd") or {}
    nodes_by_acc = _nodes_by_accelerator(design)
    size = rec.get("mip_size") or {}
    sites = design.get("sites")
    site_names = ""
    if isinstance(sites, list):  # the sites the design builds at (a closed site buys nothing)
        site_names = ";".join(str(s.get("name", "")) for s in sites if isinstance(s, dict) and s.get("open", True))
    return {
        "path": rec.get("path"),
        "instance": rec.get("instance"),
        "status": rec.get("status"),
        "objective": rec.get("objective"),
        "objective_value": rec.get("objective_value"),
        "best_bound": rec.get("best_bound"),
        "gap": rec.get("gap"),
        "solve_s": _round(rec.get("runtime_s"), 3),
        "wall_s": _round(rec.get("wall_s"), 3),
        "tco_usd": design.get("tco_usd"),
        "capex_usd": capex.get("total") if isinstance(capex, dict) else capex,
        "facility_power_kw": design.get("facility_power_kw"),
        "nodes": sum(nodes_by_acc.values()) if design else None,
        "accelerators": ";".join(f"{a}:{n}" for a, n in sorted(nodes_by_acc.items())),
        "sites": site_names,
        "mip_variables": size.get("variables"),
        "mip_constraints": size.get("constraints"),
        "error": one_line(rec.get("error")),
        "sha256": rec.get("sha256"),
    }


def one_line(text: Optional[str], limit: int = 300) -> Optional[str]:
    """A multi-line error (an InstanceError lists its problems) as one CSV-friendly line."""
    if not text:
        return None
    lines = [ln.strip().removeprefix("- ") for ln in text.splitlines() if ln.strip()]
    flat = " ".join((lines[0] + (":" if len(lines) > 1 and not lines[0].endswith(":") else ""), *lines[1:]))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _nodes_by_accelerator(design: dict) -> dict[str, int]:
    """Nodes per accelerator type; tolerates one level of nesting more (per site) for placement designs."""
    out: dict[str, int] = {}

    def add(acc, v):
        if isinstance(v, (int, float)):
            out[acc] = out.get(acc, 0) + int(v)
        elif isinstance(v, dict):
            for x in v.values():
                add(acc, x)

    for acc, v in (design.get("nodes") or {}).items():
        add(acc, v)
    return out


def _round(x, nd):
    return None if x is None else round(float(x), nd)


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


class ResultStore:
    """results/<name>.json per instance plus summary.csv and summary.jsonl, all crash-safe."""

    def __init__(self, out: Path):
        self.out = out
        self.results = out / "results"
        self.csv_path = out / "summary.csv"
        self.jsonl_path = out / "summary.jsonl"
        self.results.mkdir(parents=True, exist_ok=True)

    def result_path(self, display: str) -> Path:
        return self.results / result_name(display)

    def load(self, task: Task) -> Optional[dict]:
        """The stored result of this task if it was made from the same bytes, else None."""
        p = self.result_path(task.path)
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(rec, dict) and rec.get("sha256") == task.sha256 and rec.get("path") == task.path:
            return rec
        return None

    def save(self, rec: dict) -> None:
        text = json.dumps(rec, indent=2, default=_json_default, allow_nan=True) + "\n"
        atomic_write(self.result_path(rec["path"]), text.encode())
        self.append(rec)

    def append(self, rec: dict) -> None:
        row = summary_row(rec)
        with open(self.jsonl_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        with open(self.csv_path, "a", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
            if new:
                w.writeheader()
            w.writerow(_csv_row(row))
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite_summary(self, records: list[dict]) -> None:
        """Both summaries from these records, sorted by path (so two runs compare line by line)."""
        rows = [summary_row(r) for r in sorted(records, key=lambda r: r["path"])]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow(_csv_row(row))
        atomic_write(self.csv_path, buf.getvalue().encode())
        atomic_write(self.jsonl_path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows).encode())


def _csv_row(row: dict) -> dict:
    return csv_row(row)


def read_summary(out: Path) -> list[dict]:
    """summary.jsonl as a list of rows (for tests and tools)."""
    p = Path(out) / "summary.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    backend: str = "ortools"
    time_limit_s: Optional[float] = 60.0  # soft: passed to the solver
    timeout_s: Optional[float] = None  # hard wall clock per instance; None = 2 x soft + 5 s
    gap: Optional[float] = None
    solver: str = DEFAULT_SOLVER

    @property
    def hard_timeout_s(self) -> Optional[float]:
        if self.timeout_s is not None:
            return self.timeout_s
        return None if self.time_limit_s is None else 2 * self.time_limit_s + 5


class Listener:
    """Progress hooks; the CLI's progress bar implements them."""

    def started(self, task: Task) -> None: ...

    def finished(self, task: Task, rec: dict, skipped: bool = False) -> None: ...


def _timeout_record(task: Task, limit: float) -> dict:
    return {"path": task.path, "sha256": task.sha256, "status": "timeout",
            "error": f"wall-clock timeout: worker killed after {limit:g} s", "wall_s": limit}


def _crash_record(task: Task, why: str, wall: float) -> dict:
    return {"path": task.path, "sha256": task.sha256, "status": "error", "error": why, "wall_s": wall}


def _worker_main(conn, parent_pid: int, solver_spec: str) -> None:  # pragma: no cover - runs in a child
    """A local worker: its own process group (so a kill takes its solver children too), exits when
    the driver dies, solves one task at a time."""
    try:
        os.setpgrp()
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and kills us

    def watchdog():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                try:
                    os.killpg(0, signal.SIGKILL)
                finally:
                    os._exit(1)

    threading.Thread(target=watchdog, daemon=True).start()
    solve = _load_solver(solver_spec)
    import optimizer.solving.pipeline  # noqa: F401  warm imports before the first task's clock starts

    try:
        conn.send(("ready", None))
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        task_id, path, data, backend, time_limit_s, gap = msg
        rec = solve(path, data, backend, time_limit_s, gap)
        try:
            conn.send((task_id, rec))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx, solver_spec: str):
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.proc = ctx.Process(target=_worker_main, args=(child, os.getpid(), solver_spec), daemon=True)
        self.proc.start()
        child.close()
        self.task: Optional[Task] = None
        self.task_id = -1
        self.started = 0.0
        self.ready = False  # set by the worker's first message, once its imports are done
        self.born = time.monotonic()

    def kill(self) -> None:
        pid = self.proc.pid
        for target in ("group", "proc"):
            try:
                if target == "group":
                    os.killpg(pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except (ProcessLookupError, PermissionError, OSError):
                pass
        self.proc.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=2)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def run_local(tasks: list[Task], opts: Options, workers: int, done: Callable[[Task, dict], None],
              listener: Listener) -> None:
    """Solve tasks on `workers` spawn processes; a crashed or overdue worker is killed and replaced."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    pending = deque(tasks)
    pool: list[Optional[_Worker]] = [_Worker(ctx, opts.solver) for _ in range(min(workers, len(tasks)))]
    hard = opts.hard_timeout_s
    next_id = 0
    start_failures = 0

    def retire(i: int) -> None:
        """Kill slot i's worker; start a fresh one only if there is still work for it."""
        pool[i].kill()
        pool[i] = _Worker(ctx, opts.solver) if pending else None

    try:
        while pending or any(w is not None and w.task is not None for w in pool):
            for i in range(len(pool)):
                w = pool[i]
                if w is None and pending:
                    pool[i] = w = _Worker(ctx, opts.solver)
                if w is not None and w.ready and w.task is None and pending:
                    t = pending.popleft()
                    next_id += 1
                    try:
                        w.conn.send((next_id, t.path, t.data, opts.backend, opts.time_limit_s, opts.gap))
                    except (BrokenPipeError, OSError):
                        pending.appendleft(t)
                        retire(i)
                        continue
                    w.task, w.task_id, w.started = t, next_id, time.monotonic()
                    listener.started(t)
            live = [w for w in pool if w is not None]
            busy = [w for w in live if w.task is not None]
            wait_s = 0.5
            if hard is not None and busy:
                now = time.monotonic()
                wait_s = max(0.0, min(wait_s, min(w.started + hard - now for w in busy)))
            ready = set(wait([w.conn for w in live] + [w.proc.sentinel for w in live], timeout=wait_s))
            for i in range(len(pool)):
                w = pool[i]
                if w is None:
                    continue
                t, rec = w.task, None
                if w.conn in ready or w.proc.sentinel in ready:
                    msg = None
                    try:
                        if w.conn.poll():
                            msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg is not None and msg[0] == "ready":
                        w.ready = True
                        continue
                    if msg is not None and t is not None and msg[0] == w.task_id:
                        rec = msg[1]
                        w.task = None
                    elif not w.proc.is_alive():
                        if t is None:  # died idle; if it never got ready, it could not start at all
                            if not w.ready:
                                start_failures += 1
                                if start_failures > 3:
                                    raise RuntimeError(f"batch workers fail to start (exit code {w.proc.exitcode})")
                            retire(i)
                            continue
                        code = w.proc.exitcode
                        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                        rec = _crash_record(t, f"worker process died ({why}) while solving",
                                            time.monotonic() - w.started)
                        w.task = None
                        retire(i)
                if rec is None and t is not None and w.task is not None and hard is not None \
                        and time.monotonic() - w.started >= hard:
                    rec = _timeout_record(t, hard)
                    w.task = None
                    retire(i)
                if rec is not None:
                    done(t, rec)
    finally:
        for w in pool:
            if w is None:
                continue
            if w.task is not None:
                w.kill()
            else:
                w.stop()


def run_ray(tasks: list[Task], opts: Options, workers: Optional[int], address: Optional[str],
            done: Callable[[Task, dict], None], listener: Listener) -> None:
    """The same tasks as Ray tasks. Without an address a local Ray is started (and stopped) with
    `workers` CPUs; with one (e.g. ray://head:10001 or 'auto') dcopt must be installed on the
    cluster's nodes. A task past its wall clock is cancelled with force (its worker is killed)."""
    try:
        import ray
    except ImportError:
        raise BatchArgumentError('the ray engine needs Ray: pip install "dcopt[ray]"') from None
    started_here = False
    if not ray.is_initialized():
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **kw)
        started_here = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_entry)
        slots = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        warm = ray.remote(num_cpus=1)(_ray_warm)
        ray.get([warm.remote() for _ in range(min(slots, len(tasks)))])
        hard = opts.hard_timeout_s
        pending = deque(tasks)
        running: dict[Any, tuple[Task, float]] = {}
        while pending or running:
            while pending and len(running) < slots:
                t = pending.popleft()
                ref = remote.remote(opts.solver, t.path, t.data, opts.backend, opts.time_limit_s, opts.gap)
                running[ref] = (t, time.monotonic())
                listener.started(t)
            now = time.monotonic()
            wait_s = 0.5
            if hard is not None:
                wait_s = max(0.0, min([wait_s] + [s + hard - now for _, s in running.values()]))
            ready, _ = ray.wait(list(running), num_returns=1, timeout=wait_s)
            for ref in ready:
                t, s = running.pop(ref)
                try:
                    rec = ray.get(ref)
                except Exception as exc:  # worker crashed, node lost, ...
                    rec = _crash_record(t, f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                                        time.monotonic() - s)
                done(t, rec)
            if hard is not None:
                now = time.monotonic()
                for ref, (t, s) in list(running.items()):
                    if now - s >= hard:
                        ray.cancel(ref, force=True)
                        running.pop(ref)
                        done(t, _timeout_record(t, hard))
    finally:
        if started_here:
            ray.shutdown()


def _ray_warm() -> bool:
    import optimizer.solving.pipeline  # noqa: F401

    return True


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------


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
            atomic_write(store.result_path(t.path), (json.dumps(t.preset, indent=2) + "\n").encode())
            continue
        prev = store.load(t) if resume else None
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
            run_ray(todo, opts, workers, ray_address, done, listener)
        else:
            run_local(todo, opts, workers or os.cpu_count() or 1, done, listener)
    report.records = sorted(records.values(), key=lambda r: r["path"])
    store.rewrite_summary(report.records)
    report.wall_s = time.perf_counter() - t0
    return report


def comparable(rows: list[dict]) -> list[dict]:
    """Summary rows without timings: what two engines or two runs must agree on."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in sorted(rows, key=lambda r: r["path"])]


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `dcopt batch`")
