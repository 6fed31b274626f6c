"""`dcopt batch` and `dcopt generate`, kept apart from cli.py so the batch machinery loads only when used."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from optimizer import api, fmt
from optimizer.cli.common import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, Backend, backend_option, debug_option, errors, fail

STATUS_STYLE = {"optimal": "green", "feasible": "yellow", "infeasible": "cyan", "time_limit": "yellow",
                "timeout": "red", "error": "red", "invalid": "red"}


class _Progress:
    """A rich progress bar (done / failed / running, ETA) fed by the engine's Listener hooks."""

    def __init__(self, total: int, console: Console, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
        from rich.progress import TimeElapsedColumn, TimeRemainingColumn

        self.ok = self.failed = self.running = 0
        self.progress = Progress(
            SpinnerColumn(), TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} done[/] [red]{task.fields[failed]} failed[/] "
                       "[cyan]{task.fields[running]} running[/]"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task("batch", total=total, ok=0, failed=0, running=0)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def _update(self, advance: int = 0) -> None:
        self.progress.update(self.task, advance=advance, ok=self.ok, failed=self.failed, running=self.running)

    def started(self, task) -> None:
        self.running += 1
        self._update()

    def finished(self, task, rec: dict, skipped: bool = False) -> None:
        if not skipped:
            self.running -= 1
        if rec.get("status") in api.BATCH_FAILED:
            self.failed += 1
        else:
            self.ok += 1
        self._update(advance=1)


SHOWN = 50  # instances listed one per row; the rest are in summary.csv


def _instances_table(records: list, console: Console) -> None:
    """Each instance's answer: its objective and value (and TCO when that is not the objective)."""
    from rich.table import Table

    t = Table(title="Instances" + (f" (first {SHOWN} of {len(records)}; all in summary.csv)" if len(records) > SHOWN else ""),
              title_justify="left")
    for h, right in (("instance", False), ("status", False), ("objective", False), ("value", True), ("TCO", True),
                     ("solve s", True)):
        t.add_column(h, justify="right" if right else "left", overflow="fold")
    for r in sorted(records, key=lambda r: r["path"])[:SHOWN]:
        design = r.get("design") or {}
        t.add_row(r["path"], f"[{STATUS_STYLE.get(r['status'], 'white')}]{r['status']}[/]", r.get("objective") or "-",
                  fmt.objective(r.get("objective") or "", r.get("objective_value")) if r.get("objective") else "-",
                  fmt.usd(design.get("tco_usd"), millions=True) if design else "-",
                  f"{r['runtime_s']:.2f}" if r.get("runtime_s") is not None else "-")
    console.print(t)


def _final_table(report, out: Path, console: Console) -> None:
    from rich.table import Table

    counts = report.counts()
    console.print(f"Batch: {len(report.records)} instances ({report.solved} solved now, {report.skipped} reused) "
                  f"in {report.wall_s:.1f} s", highlight=False)
    t = Table()
    t.add_column("status")
    t.add_column("instances", justify="right")
    t.add_column("e.g.")
    for status, n in counts.items():
        example = next(r["path"] for r in report.records if r["status"] == status)
        t.add_row(f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]", str(n), example)
    console.print(t)
    _instances_table(report.records, console)
    failed = [r for r in report.records if r["status"] in api.BATCH_FAILED]
    for r in failed[:20]:
        err = api.one_line(r.get("error"), 200) or ""
        where = "" if err.startswith(r["path"]) else f"{r['path']}: "
        console.print(f"  [red]{r['status']}[/] {where}{err}", highlight=False, soft_wrap=True)
    if len(failed) > 20:
        console.print(f"  ... and {len(failed) - 20} more (see summary.csv)")
    console.print(f"Results: {out / 'results'}/, summary: {out / 'summary.csv'} and {out / 'summary.jsonl'}",
                  highlight=False, soft_wrap=True)


def batch(
    paths: list[str] = typer.Argument(..., help="Instance files, directories (searched recursively) or globs; "
                                                "sweep files (a top-level `sweep:`) expand into scenarios."),
    out: Path = typer.Option(Path("batch-results"), "--out", "-o", help="Directory for results and summaries."),
    workers: Optional[int] = typer.Option(None, help="Parallel workers (default: the machine's cores; "
                                                     "ray: the cluster's CPUs)."),
    time_limit: Optional[float] = typer.Option(60.0, "--time-limit", help="Solver time limit per MIP solve, "
                                                                          "seconds (soft)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Hard wall clock per instance, seconds: the "
                                            "worker is killed (default 2 x time limit + 5)."),
    gap: Optional[float] = typer.Option(None, help="Relative MIP gap to stop at (default: prove optimality)."),
    work_limit: Optional[int] = typer.Option(None, "--work-limit", min=0, help="Branch-and-bound nodes per MIP solve "
                                             "(deterministic: the same stop on a loaded or an idle machine)."),
    backend: Backend = backend_option(),
    engine: str = typer.Option("local", help="local (a process pool on this machine) or ray."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (e.g. "
                                              "ray://head:10001 or auto; dcopt must be installed on its nodes); default: "
                                              "start a local Ray."),
    resume: bool = typer.Option(False, "--resume", help="Skip instances whose result exists for the same bytes."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: solve again instances that "
                                      "ended invalid, error or timeout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table: one summary line."),
    solver: str = typer.Option("optimizer.runs.worker:solve_payload", "--solver", hidden=True,
                               help="module:function solving one instance (tests swap in one that crashes or hangs)."),
    debug: bool = debug_option(),
) -> None:
    """Solve many instances in parallel, each in its own worker, into OUT/results/*.json and OUT/summary.{csv,jsonl}.

    Exit 0 when the batch ran (whatever each instance's status), 2 on bad arguments."""
    err = Console(stderr=True)
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        with errors(debug):
            if engine not in ("local", "ray"):
                raise api.BatchArgumentError(f"--engine: got '{engine}', expected local or ray")
            if out.exists() and not out.is_dir():
                raise api.BatchArgumentError(f"--out: {out} exists and is not a directory")
            out.mkdir(parents=True, exist_ok=True)
            tasks = api.batch_tasks(paths, out)
            with _Progress(len(tasks), err, enabled=err.is_terminal and not quiet) as progress:
                report = api.run_batch(paths, out, workers=workers, engine=engine, ray_address=ray_address,
                                       backend=backend.value, time_limit=time_limit, timeout=timeout, gap=gap,
                                       resume=resume, retry_failed=retry_failed, solver=solver, listener=progress,
                                       tasks=tasks, work_limit=work_limit)
    except KeyboardInterrupt:
        fail(f"interrupted: finished results are in {out}; run again with --resume to complete", EXIT_INTERRUPTED)
    if quiet:
        counts = ", ".join(f"{n} {s}" for s, n in report.counts().items())
        typer.echo(f"{len(report.records)} instances in {report.wall_s:.1f} s: {counts}; results in {out}")
    else:
        _final_table(report, out, console)
    raise typer.Exit(EXIT_OK)


def generate(
    jobs: int = typer.Option(2, "--jobs", min=0, help="Training jobs."),
    services: int = typer.Option(1, "--services", min=0, help="Inference services."),
    sites: int = typer.Option(1, "--sites", min=1, help="Sites (1 writes `facility:`, more write `sites:`)."),
    accelerators: int = typer.Option(4, "--accelerators", min=0, help="Accelerator types offered (0 = the full "
                                                                      "built-in catalog)."),
    fabrics: int = typer.Option(2, "--fabrics", min=0, help="Fabrics offered (0 = all built-in)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same file."),
    infeasible: bool = typer.Option(False, "--infeasible", help="Break one limit so that no design exists."),
    objective: str = typer.Option("min_tco", help="An objective for several workloads: "
                                  + ", ".join(api.generator_objectives()) + "."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: print it)."),
    debug: bool = debug_option(),
) -> None:
    """Write a realistic random instance, feasible by construction (a witness design is noted in its header)."""
    if objective not in api.generator_objectives():
        fail(f"--objective: got '{objective}', expected {', '.join(api.generator_objectives())}", EXIT_INVALID)
    cmd = (f"dcopt generate --jobs {jobs} --services {services} --sites {sites} --accelerators {accelerators} "
           f"--fabrics {fabrics} --seed {seed}" + (" --infeasible" if infeasible else "")
           + (f" --objective {objective}" if objective != "min_tco" else ""))
    with errors(debug, "generate"):
        text = api.generate_text(jobs, services, sites, accelerators, seed, fabrics=fabrics, infeasible=infeasible,
                                 objective=objective, command=cmd, output=output)
    if output is None:
        sys.stdout.write(text)
    else:
        typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    """Add `batch` and `generate` to the dcopt app."""
    app.command("batch")(batch)
    app.command("generate")(generate)
