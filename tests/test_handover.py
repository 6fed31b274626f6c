"""Handing a design on: the HTML report (parsed, and rendered once in headless Chromium), the bill of
materials (its totals are the capex), compare, and re-rendering saved results (solve --json, batch)."""

import csv
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from optimizer import api
from optimizer.cli import app

ROOT = Path(__file__).parent.parent
CHROMIUM = "/usr/bin/chromium"
runner = CliRunner()


@pytest.fixture(scope="module")
def llama():
    return api.solve(ROOT / "instances/llama3-70b-20mw.yaml")


@pytest.fixture(scope="module")
def sites():
    return api.solve(ROOT / "instances/placement-four-sites.yaml")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text, self.h2 = [], [], [], []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self._in_h2 = False if tag == "h2" else self._in_h2

    def handle_data(self, data):
        self.text.append(data)
        if self._in_h2:
            self.h2.append(data.strip())


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    return p


def test_html_is_self_contained_and_says_what_the_design_is(llama):
    doc = api.result_dict(llama)
    page = parse(api.render_html(json.loads(json.dumps(doc))))  # from the JSON alone
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags and "iframe" not in page.tags
    for tag, key, value in page.attrs:  # nothing fetched: no URL but the SVG namespace
        assert not (key in ("src", "href") and value), (tag, key, value)
        assert "http" not in value or value == "http://www.w3.org/2000/svg", (tag, key, value)
    assert page.tags.count("svg") == 3  # capex, opex per year, the site's power against its cap
    assert {"Cost", "Power", "Sites", "Placement", "Training jobs", "What binds", "Bill of materials"} <= set(page.h2)
    text = " ".join(page.text)
    d = llama.design
    assert api.fmt.usd(d.tco_usd, millions=True) in text  # $169.78M-like, as the terminal writes it
    j = llama.jobs[0]
    assert f"{j.accelerators:,} x {j.accelerator}" in text and "cap 20.000 MW" in text and "Verifier:" in text
    assert f"{j.deadline_days - j.days:+.2f}" in text  # the deadline margin
    assert "power cap" in text and "deadline of job llama3-70b" in text  # what binds


def test_html_of_services_and_sites_shows_slo_margins_and_cost_per_token(sites):
    text = " ".join(parse(api.render_html(sites)).text)
    for s in sites.services:
        assert f"${s.cost_per_million_output_tokens_usd:,.3f}" in text
        margin = (s.tpot_slo_s - s.worst_tpot_s) * 1000
        assert f"{margin:,.1f} ms" in text
    built = [s.name for s in sites.design.sites if s.open]
    assert len(built) >= 2
    for site in built:
        assert f"Facility power at {site}" in text


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed (.ci/run installs Debian's chromium)")
def test_html_renders_in_headless_chromium_to_a_page_that_is_not_blank(llama, tmp_path):
    from PIL import Image

    page, png = tmp_path / "r.html", tmp_path / "r.png"
    page.write_text(api.render_html(llama))
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
                    f"--screenshot={png}", "--window-size=1200,2000", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 2000)
    small = img.resize((120, 200))
    raw = small.tobytes()
    pixels = [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]
    ink = sum(1 for p in pixels if sum(p) < 600) / len(pixels)  # anything darker than near-white
    assert ink > 0.02, ink
    bar_blue = sum(1 for r, g, b in pixels if b > 150 and r < 100)  # the capex chart's first bar (#3b6fb6)
    assert bar_blue > 0


def _bom_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("res_name", ["llama", "sites"])
def test_bom_totals_add_up_to_the_capex(res_name, request):
    res = request.getfixturevalue(res_name)
    rows = _bom_rows(api.bom_csv(res))
    assert list(rows[0]) == ["item", "category", "site", "quantity", "unit", "unit_price_usd", "total_usd", "source"]
    for r in rows:  # each line is quantity x unit price
        assert float(r["total_usd"]) == pytest.approx(float(r["quantity"]) * float(r["unit_price_usd"]), rel=1e-12)
    d = res.design
    assert sum(float(r["total_usd"]) for r in rows) == pytest.approx(d.capex_usd["total"], abs=0.01)
    for part, usd in d.capex_usd.items():
        if part != "total":
            got = sum(float(r["total_usd"]) for r in rows if r["category"] == part)
            assert got == pytest.approx(usd, abs=0.01), part


def test_bom_lines_by_hand_for_gpt3():
    res = api.solve(ROOT / "instances/gpt3-175b-a100.yaml")
    rows = {r["item"]: r for r in _bom_rows(api.bom_csv(res))}
    a100 = res.instance.catalog.accelerators["a100-sxm-80gb"]
    node = rows["a100-sxm-80gb node (8 accelerators)"]
    j = res.jobs[0]  # the job's 128 nodes and its hot spares
    assert int(node["quantity"]) == j.nodes + j.spare_nodes == 128 + 4 and float(node["unit_price_usd"]) == a100.node_price_usd
    assert node["source"].startswith("catalog.accelerators.a100-sxm-80gb.node_price_usd")
    racks = rows["rack (PDUs, cabling)"]
    assert int(racks["quantity"]) == res.design.total_racks
    assert float(racks["total_usd"]) == res.design.total_racks * res.instance.site_list[0].rack_capex_usd


def test_compare_marks_what_differs(llama, sites):
    md = api.compare_results([llama, sites], "md")
    lines = md.splitlines()
    assert lines[0] == "| | item | llama3-70b-20mw | placement-four-sites |"
    status = next(ln for ln in lines if "summary: status" in ln)
    assert status.startswith("|  |")  # both optimal: not marked
    tco = next(ln for ln in lines if "cost: TCO" in ln)
    assert tco.startswith("| **≠** |") and api.fmt.usd(llama.design.tco_usd, millions=True) in tco
    doc = api.compare_results([llama, sites], "json")
    assert doc["results"] == ["llama3-70b-20mw", "placement-four-sites"]
    rows = {(r["section"], r["item"]): r for r in doc["rows"]}
    assert rows[("workloads", "job llama3-70b")]["differs"] and rows[("workloads", "job llama3-70b")]["values"][1] is None
    same = api.compare_results([llama, llama], "json")
    assert not any(r["differs"] for r in same["rows"])
    with pytest.raises(ValueError, match="at least two"):
        api.compare_results([llama], "md")


def test_cli_solve_report_and_compare_from_saved_results(tmp_path):
    inst = ROOT / "instances/train-and-serve.yaml"
    r = runner.invoke(app, ["solve", str(inst), "--json"])
    assert r.exit_code == 0, r.output
    saved = tmp_path / "r.json"
    saved.write_text(r.stdout)
    doc = json.loads(saved.read_text())
    assert doc["report"]["bom"] and doc["diagnosis"] == []
    r = runner.invoke(app, ["solve", str(inst), "--html", str(tmp_path / "a.html"), "--bom", str(tmp_path / "a.csv")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", str(saved), "--html", str(tmp_path / "b.html"), "--bom", str(tmp_path / "b.csv")])
    assert r.exit_code == 0, r.output
    strip = lambda p: p.read_text().replace(f"{doc['runtime_s']:.2f} s", "")  # noqa: E731
    assert "Bill of materials" in strip(tmp_path / "b.html")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    for f in ("a.html", "a.csv", "b.html", "b.csv"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o666 & ~_umask(), f
    r = runner.invoke(app, ["compare", str(saved), str(saved), "--format", "json"])
    assert r.exit_code == 0 and not any(x["differs"] for x in json.loads(r.stdout)["rows"])
    r = runner.invoke(app, ["report", str(saved)])
    assert r.exit_code == 2 and "--html" in r.output
    (tmp_path / "junk.json").write_text("[1, 2]")
    r = runner.invoke(app, ["report", str(tmp_path / "junk.json"), "--html", str(tmp_path / "c.html")])
    assert r.exit_code == 2 and "not a dcopt result" in r.output and "Traceback" not in r.output


def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_batch_result_files_re_render(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(ROOT / "instances/gpt3-175b-a100.yaml", src)
    shutil.copy(ROOT / "instances/infeasible-deadline-power.yaml", src)
    r = batch = runner.invoke(app, ["batch", str(src), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "o/results").glob("*.json"))
    assert len(files) == 2
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~_umask()  # 0644 under the usual umask
        out = tmp_path / (f.stem + ".html")
        r = runner.invoke(app, ["report", str(f), "--html", str(out)])
        assert r.exit_code == 0, r.output
        page = parse(out.read_text())
        assert "script" not in page.tags
    infeasible = next(f for f in files if f.name.startswith("infeasible"))
    r = runner.invoke(app, ["report", str(infeasible), "--bom", str(tmp_path / "none.csv")])
    assert r.exit_code == 0 and "no bill of materials" in r.output and not (tmp_path / "none.csv").exists()
    text = " ".join(parse(next(tmp_path.glob("infeasible*.html")).read_text()).text)
    assert "Why no design exists" in text and "facility.power_cap_mw" in text
    row = next(x for x in api.read_batch(tmp_path / "o").to_dict("records") if x["status"] == "optimal")
    assert row["accelerators"] == "a100-sxm-80gb:1056" and row["nodes_by_accelerator"] == "a100-sxm-80gb:132"  # 128 + 4 spares
    # the final table gives each instance's objective and its value
    line = [ln for ln in batch.output.splitlines() if "gpt3-175b-a100.yaml" in ln and "min_tco" in ln]
    assert len(line) == 1 and f"${row['objective_value'] / 1e6:,.2f}M" in line[0], batch.output
