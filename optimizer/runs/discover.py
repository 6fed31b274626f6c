"""Discovery: PATHS (files, directories, globs, sweep files) -> the batch's work items.

Each item carries the file's bytes and their SHA-256, read once: workers receive the bytes, not
the path, so the hash always describes what was solved and a Ray cluster needs no shared
filesystem.
"""

from __future__ import annotations

import glob as globmod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .scenarios import SweepError, looks_like_sweep, materialize
from .store import sha256_bytes

INSTANCE_SUFFIXES = (".yaml", ".yml", ".json")


class BatchArgumentError(ValueError):
    """Bad batch arguments (nothing to solve, unknown engine, ...): the CLI exits 2."""


def display_path(p: Path) -> str:
    """Relative to the working directory when below it: stable names for sorting and comparing runs."""
    absolute = p.absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


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
