"""The result store of a batch: one JSON file per instance plus summary.csv and summary.jsonl.

The driver is the only writer. Each result is written atomically (temp file + os.replace) and its
summary row appended and fsynced as soon as it arrives, so a batch killed at any moment loses
nothing that had finished; a resumed batch trusts a result only if its recorded SHA-256 matches
the bytes it would solve now.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Optional

from optimizer.fmt import csv_row

TIMING_FIELDS = ("solve_s", "wall_s")  # summary fields that differ between runs of the same inputs
SUMMARY_FIELDS = (
    "path", "instance", "status", "objective", "objective_value", "best_bound", "gap", "solve_s", "wall_s",
    "tco_usd", "capex_usd", "facility_power_kw", "nodes", "accelerators", "nodes_by_accelerator", "sites", "mip_variables",
    "mip_constraints", "error", "sha256",
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write then rename, so a reader (or a resumed batch) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would (0644 by default)
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


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (changing it races with threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def result_name(display: str) -> str:
    """File name of an instance's result: readable stem plus a hash of its path (stems may repeat)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(display).stem)[:80]
    return f"{stem}-{hashlib.sha1(display.encode()).hexdigest()[:10]}.json"


def summary_row(rec: dict) -> dict:
    """One summary line: identical for identical inputs except the TIMING_FIELDS."""
    design = rec.get("design") or {}
    capex = design.get("capex_usd") or {}
    nodes_by_acc = _nodes_by_accelerator(design)
    per_node = (rec.get("report") or {}).get("accelerators_per_node") or {}
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
        # accelerators = chips (nodes x per node, from the record's report facts); node counts labelled as nodes
        "accelerators": ";".join(f"{a}:{n * per_node[a]}" for a, n in sorted(nodes_by_acc.items()) if a in per_node),
        "nodes_by_accelerator": ";".join(f"{a}:{n}" for a, n in sorted(nodes_by_acc.items())),
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


def json_default(o):
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

    def load(self, path: str, sha256: str) -> Optional[dict]:
        """The stored result of the instance at `path` if it was made from these bytes, else None."""
        p = self.result_path(path)
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(rec, dict) and rec.get("sha256") == sha256 and rec.get("path") == path:
            return rec
        return None

    def save(self, rec: dict) -> None:
        text = json.dumps(rec, indent=2, default=json_default, allow_nan=True) + "\n"
        atomic_write(self.result_path(rec["path"]), text.encode())
        self.append(rec)

    def append(self, rec: dict) -> None:
        row = summary_row(rec)
        with open(self.jsonl_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        with open(self.csv_path, "a", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
            if new:
                w.writeheader()
            w.writerow(csv_row(row))
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite_summary(self, records: list[dict]) -> None:
        """Both summaries from these records, sorted by path (so two runs compare line by line)."""
        rows = [summary_row(r) for r in sorted(records, key=lambda r: r["path"])]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow(csv_row(row))
        atomic_write(self.csv_path, buf.getvalue().encode())
        atomic_write(self.jsonl_path, "".join(json.dumps(r, default=json_default) + "\n" for r in rows).encode())

    def write_result(self, rec: dict) -> None:
        """A result file without a summary row (a record decided without a solve)."""
        atomic_write(self.result_path(rec["path"]), (json.dumps(rec, indent=2) + "\n").encode())


def read_summary(out: Path) -> list[dict]:
    """summary.jsonl as a list of rows (for tests and tools)."""
    p = Path(out) / "summary.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def comparable(rows: list[dict]) -> list[dict]:
    """Summary rows without timings: what two engines or two runs must agree on."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in sorted(rows, key=lambda r: r["path"])]

