"""The batch's result store: file modes of atomic writes and the CSV float rule."""

from __future__ import annotations

import os
import stat

import pytest

from optimizer.fmt import csv_value as csv_cell
from optimizer.runs.store import ResultStore, atomic_write, read_summary


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_mode_open_would(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write(tmp_path / "sub" / "a.json", b"{}\n")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sub" / "a.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == mode
    assert (tmp_path / "sub" / "a.json").read_bytes() == b"{}\n"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["a.json"]  # no temporary file left


def test_csv_float_rule():
    assert csv_cell(None) == ""
    assert csv_cell(0.1 + 0.2) == "0.30000000000000004"  # repr: reads back to the same float
    assert csv_cell(1e-16) == "1e-16" and csv_cell(2.0) == "2.0"
    assert csv_cell(7) == 7 and csv_cell("x") == "x" and csv_cell(True) is True


def test_store_summaries_and_resume_by_hash(tmp_path):
    old = os.umask(0o022)
    try:
        store = ResultStore(tmp_path)
        rec = {"path": "in/a.yaml", "sha256": "ab", "status": "optimal", "objective_value": 1.5, "wall_s": 0.25}
        store.rewrite_summary([])
        store.save(rec)
    finally:
        os.umask(old)
    for name in ("summary.csv", "summary.jsonl", f"results/{store.result_path('in/a.yaml').name}"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("path,instance,status,") and lines[1].startswith("in/a.yaml,,optimal,,1.5,")
    assert read_summary(tmp_path)[0]["wall_s"] == 0.25
    assert store.load("in/a.yaml", "ab")["objective_value"] == 1.5
    assert store.load("in/a.yaml", "other bytes") is None and store.load("in/b.yaml", "ab") is None


def _runs_imports() -> dict[str, set[str]]:
    """module name -> the optimizer/models modules it imports (top level or inside functions)."""
    import ast
    from pathlib import Path

    import optimizer.runs as pkg

    out = {}
    for f in sorted(Path(pkg.__file__).parent.glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = "optimizer.runs." * (node.level == 1) + "optimizer." * (node.level == 2) + (node.module or "")
                names.add(base.rstrip("."))
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        out[f"optimizer.runs.{f.stem}"] = {n for n in names if n.split(".")[0] in ("optimizer", "models")}
    return out


def test_runs_import_only_downward_and_without_cycles():
    imports = _runs_imports()
    above = ("optimizer.api", "optimizer.cli", "optimizer.present")  # runs sit below presentation and the API
    for mod, names in imports.items():
        assert not [n for n in names if n.startswith(above)], mod
    pipeline = {m for m, names in imports.items()
                if any(not n.startswith(("optimizer.runs", "models", "optimizer.fmt")) for n in names)}
    assert pipeline == {"optimizer.runs.worker", "optimizer.runs.wallclock"}  # the doors to the solving pipeline
    inner = {m: {n for n in names if n in imports} for m, names in imports.items()}

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, (*seen, n))) for n in inner[a])

    assert not [m for m in inner if reaches(m, m)]
