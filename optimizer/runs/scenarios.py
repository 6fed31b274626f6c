"""Sweep files: one base instance expanded over a grid of field values.

A planning team explores hundreds of scenarios that differ in a few numbers; writing hundreds of
files by hand is where mistakes creep in. A sweep file names a base instance and the fields to vary:

```yaml
sweep:
  base: llama3-70b-20mw.yaml            # relative to this file
  grid:                                  # cartesian product of every axis
    facility.power_cap_mw: [10, 20, 30]
    workloads[0].deadline_days: [45, 60]
    catalog.accelerators.h100-sxm.node_price_usd: [220000, 280000]
  cases:                                 # optional: explicit combinations, crossed with the grid
    - {budget.capex_usd: 1.0e9}
    - {budget.capex_usd: null}
```

Paths are dotted; `[i]` indexes a list and `[name]` picks the list item with that `name` (a
workload or a site). Setting a field of a catalog entry when the section is a list of names, or
absent (= every built-in entry), first turns it into the equivalent mapping, so the offer is
unchanged except for the field set. Each scenario is written out as an ordinary instance file, so
batch results, hashes and `--resume` work exactly as for hand-written files.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.edit import SweepError, parse_path, set_path  # noqa: F401 (re-exported for sweep files)

from .store import atomic_write

MAX_SCENARIOS = 100_000
_SWEEP_KEY = re.compile(r"^sweep\s*:", re.MULTILINE)


@dataclass(frozen=True)
class Scenario:
    name: str
    overrides: dict[str, Any]  # dotted path -> value, in grid order
    data: dict[str, Any]  # the full instance document


def looks_like_sweep(path: Path) -> bool:
    """Cheap test (no YAML parse) so directory scans need not parse every instance twice."""
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        return False
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return bool(_SWEEP_KEY.search(text)) or '"sweep"' in text[:200]


def _short(dotted: str) -> str:
    """The last named part of a path, for scenario names: facility.power_cap_mw -> power_cap_mw."""
    names = [p for p in parse_path(dotted) if isinstance(p, str)]
    return names[-1] if names else dotted


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return hashlib.sha256(repr(value).encode()).hexdigest()[:6]
    return str(value)


def load_sweep(path: Path) -> tuple[dict, dict]:
    """(sweep spec, base document) of a sweep file."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SweepError(f"{path}: cannot read sweep file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sweep"), dict):
        raise SweepError(f"{path}: expected a top-level `sweep:` mapping")
    spec = doc["sweep"]
    unknown = set(doc) - {"sweep"}
    if unknown:
        raise SweepError(f"{path}: unknown top-level key(s) beside `sweep`: {', '.join(sorted(unknown))}")
    unknown = set(spec) - {"base", "grid", "cases", "name"}
    if unknown:
        raise SweepError(f"{path}: sweep.{sorted(unknown)[0]}: unknown field (expected base, grid, cases, name)")
    base = spec.get("base")
    if isinstance(base, str):
        base_path = (path.parent / base)
        try:
            from models.loader import read_file

            base_doc = read_file(base_path)
        except Exception as exc:  # InstanceError or OSError: the message names the file
            raise SweepError(f"{path}: sweep.base: {exc}") from None
    elif isinstance(base, dict):
        base_doc = base  # an inline base instance
    else:
        raise SweepError(f"{path}: sweep.base: give a path to an instance file or an inline instance")
    if not isinstance(base_doc, dict):
        raise SweepError(f"{path}: sweep.base: the base instance is not a mapping")
    return spec, base_doc


def expand(path: Path) -> list[Scenario]:
    """Every scenario of a sweep file, in a deterministic order (cases outer, grid axes in file order)."""
    spec, base = load_sweep(path)
    grid = spec.get("grid") or {}
    cases = spec.get("cases") or [{}]
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SweepError(f"{path}: sweep.grid: expected a mapping field-path -> non-empty list of values")
    if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
        raise SweepError(f"{path}: sweep.cases: expected a list of mappings field-path -> value")
    for p in list(grid) + [k for c in cases for k in c]:
        try:
            parse_path(str(p))
        except SweepError as exc:
            raise SweepError(f"{path}: {exc}") from None
    count = len(cases) * (1 if not grid else _product_len(grid.values()))
    if count > MAX_SCENARIOS:
        raise SweepError(f"{path}: the sweep expands to {count:,} scenarios (more than {MAX_SCENARIOS:,})")
    base_name = str(spec.get("name") or base.get("name") or path.stem)
    out = []
    for case in cases:
        for combo in itertools.product(*grid.values()) if grid else [()]:
            overrides = {**{str(k): v for k, v in case.items()}, **dict(zip(map(str, grid), combo))}
            data = copy.deepcopy(base)
            for k, v in overrides.items():
                try:
                    set_path(data, k, v)
                except SweepError as exc:
                    raise SweepError(f"{path}: {exc}") from None
            label = ",".join(f"{_short(k)}={_fmt(v)}" for k, v in overrides.items())
            name = f"{base_name}[{label}]" if label else base_name
            data["name"] = name
            out.append(Scenario(name, overrides, data))
    return out


def _product_len(values) -> int:
    n = 1
    for v in values:
        n *= len(v)
    return n


def scenario_text(sweep_path: Path, index: int, sc: Scenario) -> str:
    """The scenario as a self-describing instance file (deterministic bytes: resume compares hashes)."""
    head = [f"# Scenario {index + 1} of sweep {sweep_path.name}", "# overrides:"]
    head += [f"#   {k}: {v!r}" for k, v in sc.overrides.items()]
    return "\n".join(head) + "\n" + yaml.safe_dump(sc.data, sort_keys=False, default_flow_style=None, width=120)


def materialize(sweep_path: Path, out_dir: Path) -> list[Path]:
    """Write each scenario of a sweep to out_dir/<sweep stem>/NNNN.yaml; unchanged files keep their bytes."""
    scenarios = expand(sweep_path)
    width = max(4, len(str(len(scenarios))))
    target = out_dir / sweep_path.stem
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, sc in enumerate(scenarios):
        p = target / f"{sweep_path.stem}-{i + 1:0{width}d}.yaml"
        text = scenario_text(sweep_path, i, sc)
        if not p.exists() or p.read_text() != text:
            atomic_write(p, text.encode())
        paths.append(p)
    return paths
