"""What every `dcopt` command shares: exit codes and the one map from errors to them, the backend
choice, the `--debug` flag, the console, and how a command fails."""

from __future__ import annotations

import sys
import traceback
from contextlib import contextmanager
from enum import Enum
from typing import Iterator, Optional

import typer
from rich.console import Console

from optimizer import api

# 0 solved / ran; 1 verifier or solver error; 2 invalid input; 3 infeasible; 4 time limit without a
# design; 130 interrupted (Ctrl-C).
EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_INFEASIBLE, EXIT_NO_DESIGN, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

console = Console(width=None if sys.stdout.isatty() else 150)

# The backends every command accepts, as a choice typer checks (a bad name exits 2 listing them).
Backend = Enum("Backend", {n: n for n in api.BACKEND_NAMES}, type=str)


def backend_option() -> Backend:
    return typer.Option("ortools", help="MIP backend: " + ", ".join(api.BACKEND_NAMES) + " (ortools falls back to "
                        "pulp if it fails).", case_sensitive=False)


def debug_option() -> bool:
    return typer.Option(False, "--debug", help="Show the traceback of an error (without it, never a traceback).")


def fail(message: str, code: int) -> None:
    """Print to stderr as plain text (no wrapping, so paths and field names stay whole) and exit."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def exit_code(exc: BaseException) -> int:
    """The one map from an error to an exit code."""
    if isinstance(exc, api.ParetoInfeasible):  # no design at all: an answer, like an infeasible solve
        return EXIT_INFEASIBLE
    if isinstance(exc, api.VerificationError):
        return EXIT_ERROR
    if isinstance(exc, (api.InstanceError, ValueError, KeyError)):
        return EXIT_INVALID
    return EXIT_ERROR  # a solver or an internal error


def status_code(status: str, has_design: bool) -> int:
    """The exit code of a solve: a design, infeasible, a time limit without a design, or a solver error."""
    if has_design:
        return EXIT_OK
    return {"infeasible": EXIT_INFEASIBLE, "time_limit": EXIT_NO_DESIGN}.get(status, EXIT_ERROR)


@contextmanager
def errors(debug: bool, where: Optional[str] = None) -> Iterator[None]:
    """Run a command's work: an error becomes one line on stderr (prefixed by `where`, e.g. the
    instance file) and its exit code; with `--debug` the traceback is shown too."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every error ends here, mapped to its code
        if debug:
            traceback.print_exc()
        if isinstance(exc, api.InstanceError):
            msg = exc.format()  # names the file itself
        else:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            if exit_code(exc) == EXIT_ERROR and not isinstance(exc, api.VerificationError):
                text = f"{type(exc).__name__}: {text}"
            msg = f"{where}: {text}" if where else text
        fail(msg, exit_code(exc))


def _no_bool_placeholder() -> None:
    """typer 0.2x writes `<bool>` after every flag in --help (`--json <bool>`), which reads as if
    the flag took a value; show flags as flags, like older typer and click do."""
    core = getattr(typer, "core", None)
    option = getattr(core, "TyperOption", None)
    show = getattr(option, "display_type_rich", None)
    if show is None or getattr(show, "_dcopt", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return show(self, ctx)

    display_type_rich._dcopt = True
    option.display_type_rich = display_type_rich


_no_bool_placeholder()


def quiet_option() -> bool:
    return typer.Option(False, "--quiet", "-q", help="No progress display on stderr (it is off anyway when stderr "
                        "is not a terminal).")


class Progress:
    """A spinner (or a bar when the total is known) on stderr with the elapsed time and a status
    text; nothing at all with `--quiet` or when stderr is not a terminal (pipes, CI, tests)."""

    def __init__(self, label: str, *, total: Optional[int] = None, quiet: bool = False,
                 stream: Optional[Console] = None):
        self.err = stream or Console(stderr=True)
        self.enabled = not quiet and self.err.is_terminal
        self.label, self.total, self._bar = label, total, None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            cols = [SpinnerColumn(), TextColumn("{task.description}")]
            if self.total:
                cols += [BarColumn(), MofNCompleteColumn()]
            cols += [TimeElapsedColumn(), TextColumn("{task.fields[note]}")]
            self._bar = Bar(*cols, console=self.err, transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, note="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def update(self, note: str = "", advance: int = 0) -> None:
        if self._bar is not None:
            self._bar.update(self._task, note=note, advance=advance)

    def on_solve(self, objective: str, prefix: str = ""):
        """An `api.solve(on_progress=...)` callback showing the solver's incumbent, bound and gap;
        None when the display is off, so a quiet or piped solve runs exactly as without it. The
        line's own elapsed-time column already counts the seconds."""
        if not self.enabled:
            return None
        from optimizer import fmt

        def show(ev) -> None:
            if ev.final and ev.status == "infeasible":  # what follows is the diagnosis's re-solves
                self.update(prefix + "infeasible; looking for the smallest changes that make a design exist")
            else:
                self.update(prefix + fmt.solve_progress(objective, ev.incumbent, ev.bound, ev.gap))

        return show


def write_output(path, text: str) -> None:
    """Write a file the user asked for (HTML, CSV), readable by the group like any other (0644 under
    the usual umask), and say where on stderr."""
    from pathlib import Path

    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {p}", err=True)
