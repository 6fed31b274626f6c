"""Each shipped instance's header carries a machine-readable `# expect:` line, checked here against
the solve, so the prose `# Expect:` above it cannot go stale unnoticed.

Syntax: `# expect: key=value key=value ...` (several lines add up). Keys (any subset, unknown keys fail):
  status=optimal|infeasible        the solve's status
  accelerators=N                   accelerators bought, all types and sites (nodes x per node)
  accelerator=A[+B...]             the accelerator types bought (any order)
  nodes=N                          nodes bought
  tiers=N                          the deepest training/scale-out fat-tree (front-end networks excluded)
  sites=S[+T...]                   the sites the design builds at
  tco_usd~=X[±P%]                  TCO within P% (default 2%); also capex_usd~=, facility_mw~=
  fix=FIELD                        (infeasible) the diagnosis has a verified fix changing FIELD; repeatable
"""

import re
from pathlib import Path

import pytest

from optimizer import api

ROOT = Path(__file__).parent.parent
INSTANCES = sorted((ROOT / "instances").glob("*.yaml"))
KEYS = ("status", "accelerators", "accelerator", "nodes", "tiers", "sites", "tco_usd", "capex_usd", "facility_mw", "fix")


def parse_expect(text: str) -> list[tuple[str, str, str]]:
    """(key, op, value) for every item of every `# expect:` line of a file's leading comment."""
    out = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"#\s*expect:\s*(.*)$", line)
        if not m:
            continue
        for item in m.group(1).split():
            km = re.fullmatch(r"([a-z_]+)(~=|=)(\S+)", item)
            assert km, f"bad item '{item}' in: {line}"
            out.append(km.groups())
    return out


def test_parse_expect():
    text = "# Expect: prose\n# expect: status=optimal nodes=8\n# expect: tco_usd~=2.5e6±1% fix=budget.capex_usd\nname: x\n# expect: nodes=9"
    assert parse_expect(text) == [("status", "=", "optimal"), ("nodes", "=", "8"), ("tco_usd", "~=", "2.5e6±1%"),
                                  ("fix", "=", "budget.capex_usd")]


def _close(got: float, spec: str) -> bool:
    value, _, tol = spec.replace("+-", "±").partition("±")
    rel = float(tol.rstrip("%")) / 100 if tol else 0.02
    return abs(got - float(value)) <= rel * abs(float(value))


def _facts(res) -> dict:
    d = res.design
    per = {n: a.accelerators_per_node for n, a in res.instance.catalog.accelerators.items()}
    nodes = {a: sum(by_o.values()) for a, by_o in d.nodes.items() if sum(by_o.values())}
    return {
        "accelerators": str(sum(n * per[a] for a, n in nodes.items())),
        "accelerator": "+".join(sorted(nodes)),
        "nodes": str(sum(nodes.values())),
        "tiers": str(max([f.tiers for f in d.fabrics if not f.name.startswith("frontend:")] or [0])),
        "sites": "+".join(sorted(s.name for s in d.sites if s.open)),
        "tco_usd": d.tco_usd, "capex_usd": d.capex_usd["total"], "facility_mw": d.facility_power_kw / 1000,
    }


@pytest.mark.parametrize("path", INSTANCES, ids=[p.stem for p in INSTANCES])
def test_expect_line_holds(path):
    items = parse_expect(path.read_text())
    assert items, f"{path.name}: no `# expect:` line in its header"
    unknown = {k for k, _, _ in items} - set(KEYS)
    assert not unknown, f"{path.name}: unknown expect keys {unknown} (known: {', '.join(KEYS)})"
    res = api.solve(path)
    facts = _facts(res) if res.design is not None else {}
    fixes = {x["field"] for x in api.diagnosis_data(res) if x["kind"] == "fix"}
    for key, op, want in items:
        if key == "status":
            assert res.status == want, f"{path.name}: status {res.status}, header expects {want}"
        elif key == "fix":
            assert want in fixes, f"{path.name}: no verified fix of {want} (fixes: {sorted(fixes)})"
        elif op == "~=":
            assert _close(facts[key], want), f"{path.name}: {key} = {facts[key]:.6g}, header expects ~{want}"
        elif key in ("accelerator", "sites"):
            assert facts[key] == "+".join(sorted(want.split("+"))), f"{path.name}: {key} = {facts[key]}, header expects {want}"
        else:
            assert facts[key] == want, f"{path.name}: {key} = {facts[key]}, header expects {want}"


def fresh_line(path: Path, keys: list[str]) -> str:
    """The `# expect:` line a header should carry today, for the keys it already names."""
    res = api.solve(path)
    facts = _facts(res) if res.design is not None else {}
    fixes = sorted({x["field"] for x in api.diagnosis_data(res) if x["kind"] == "fix"})
    items = []
    for key in dict.fromkeys(keys):
        if key == "status":
            items.append(f"status={res.status}")
        elif key == "fix":
            items += [f"fix={f}" for f in fixes]
        elif key in ("tco_usd", "capex_usd", "facility_mw") and key in facts:
            items.append(f"{key}~={facts[key]:.4g}")
        elif key in facts:
            items.append(f"{key}={facts[key]}")
    return "# expect: " + " ".join(items)


if __name__ == "__main__":  # python tests/test_expect_headers.py: rewrite each header's expect line from a solve
    for p in INSTANCES:
        text = p.read_text()
        keys = [k for k, _, _ in parse_expect(text)] or ["status", "accelerators", "accelerator", "nodes", "tiers", "sites",
                                                          "tco_usd", "fix"]
        line = fresh_line(p, keys)
        lines = [x for x in text.splitlines() if not re.match(r"#\s*expect:", x)]
        head = next(i for i, x in enumerate(lines) if not x.startswith("#"))
        p.write_text("\n".join(lines[:head] + [line] + lines[head:]) + "\n")
        print(f"{p.name}: {line}")
