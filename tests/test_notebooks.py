"""The notebooks run top to bottom, headless, as CI runs them; they are committed without outputs
and use only the public API (optimizer.api), so a change that breaks a notebook breaks the tests."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ["01_quick_tour.ipynb", "02_what_if.ipynb", "03_tradeoffs.ipynb", "04_batch_analysis.ipynb"]
_IMPORT = re.compile(r"^\s*(?:from|import)\s+(optimizer|models)\b.*$", re.M)


def _execute(nb, monkeypatch, headless: bool = True):
    monkeypatch.setenv("DCOPT_HEADLESS", "1" if headless else "0")
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits the environment
    client = NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def _text(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_the_issue_s_notebooks_exist():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_without_outputs_and_public_api_only(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name}: clear the outputs before committing"
        for m in _IMPORT.finditer("".join(cell["source"])):
            assert m.group(0).strip() == "from optimizer import api as dc", (
                f"{name}: notebooks use only the public API; got `{m.group(0).strip()}`")


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_headless(name, monkeypatch):
    nb = _execute(nbformat.read(NOTEBOOKS / name, as_version=4), monkeypatch)
    text = _text(nb)
    assert "Traceback" not in text
    if name == "02_what_if.ipynb":  # the static sweep replaced the sliders
        assert "No widget frontend (headless)" in text and "facility.power_cap_mw" in text
    if name == "04_batch_analysis.ipynb":
        assert "8 instances in" in text and "'optimal': 8" in text


def test_what_if_sliders_resolve_on_change(monkeypatch):
    """With a widget frontend, moving a control re-solves: the kernel side of that, checked by
    wrapping the notebook's draw() and moving two controls the way a person would."""
    pytest.importorskip("ipywidgets")
    nb = nbformat.read(NOTEBOOKS / "02_what_if.ipynb", as_version=4)
    nb.cells.append(new_code_cell(
        "seen = []\n"
        "_draw = draw\n"
        "def draw(res):\n"
        "    seen.append((res.status, res.jobs[0].accelerator if res.jobs else None))\n"
        "    _draw(res)\n"
        "controls['power_cap_mw'].value = 2.0\n"
        "controls['power_cap_mw'].value = 20.0\n"
        "controls['price_pct'].value = 300\n"
        "assert LIVE\n"
        "print('SEEN', seen)\n"
    ))
    nb = _execute(nb, monkeypatch, headless=False)
    seen = ast.literal_eval(_text(nb).split("SEEN", 1)[1].strip())
    # 2 MW: no design; 20 MW: B200 again; B200 at 300% of its price: another accelerator wins.
    assert seen[:2] == [("infeasible", None), ("optimal", "b200")]
    assert seen[2][0] == "optimal" and seen[2][1] != "b200"
