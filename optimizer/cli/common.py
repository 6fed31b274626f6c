"""What every `dcopt` command shares: exit codes, the console, and how a command fails."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

# 0 solved / ran; 1 verifier or solver error; 2 invalid input; 3 infeasible; 4 time limit without a design.
EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_INFEASIBLE, EXIT_NO_DESIGN = 0, 1, 2, 3, 4

console = Console(width=None if sys.stdout.isatty() else 150)


def fail(message: str, code: int) -> None:
    """Print to stderr as plain text (no wrapping, so paths and field names stay whole) and exit."""
    typer.echo(message, err=True)
    raise typer.Exit(code)
