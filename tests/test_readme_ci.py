"""The README's quick start is what CI runs, and the README documents what a user hands on."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_exactly_the_quick_start():
    commands = _quick_start_commands()
    assert len(commands) == 2
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    steps = [ln for ln in ci if ln.startswith((".venv/", "python3 -m venv"))]
    assert steps == commands
    assert 'pip install -q -e .' in commands[0] and "[dev" not in commands[0]  # solving needs no test tools


def test_readme_documents_report_bom_compare_and_diagnosis_json():
    readme = (ROOT / "README.md").read_text()
    for text in ("dcopt report RESULT.json", "--bom OUT.csv", "dcopt compare A.json B.json", "--html OUT.html",
                 "item, category, site, quantity, unit, unit_price_usd, total_usd, source", "tco_usd_after",
                 "sweep:", "nodes_by_accelerator", 'if __name__ == "__main__":'):
        assert text in readme, text
    assert "TIMING_" not in readme  # every timing placeholder replaced by a measurement
