"""The one formatting module: every table, plot, diagnosis and CSV writes numbers through it."""

import csv
import io

from optimizer import fmt


def test_money():
    assert fmt.usd(169_780_000) == "$169.78M"
    assert fmt.usd(99_999.4) == "$99,999"  # under $100k: whole dollars
    assert fmt.usd(-250_000) == "$-0.25M"
    assert fmt.usd(12_345, millions=True) == "$0.01M"
    assert fmt.usd(300_000, whole=True) == "$300,000"
    assert fmt.usd(None) == "-"


def test_power_durations_carbon():
    assert fmt.mw(19_876.5) == "19.877 MW"
    assert fmt.mw(19_876.5, 2, unit="") == "19.88"
    assert fmt.days(12.345) == "12.35 days" and fmt.days(3, unit="d") == "3.00 d"
    assert fmt.ms(0.0456) == "45.6 ms" and fmt.ms(1.2, 0, unit="") == "1,200"
    assert fmt.tco2_per_year(1234.56) == "1,234.6 tCO2/yr"


def test_objective_styles():
    assert fmt.objective("min_tco", 2.5e8) == "$250.00M"
    assert fmt.objective("min_power", 1500, "summary") == "1.500 MW facility"
    assert fmt.objective("min_power", 1500, "table") == "1.500 MW"
    assert fmt.objective("min_power", 1500, "sentence") == "facility power 1.500 MW"
    assert fmt.objective("min_capex", 5e7, "sentence") == "capex $50.00M"
    assert fmt.objective("min_time", 40.0, "table") == "40.00 d"
    assert fmt.objective("min_carbon", 10.0, "summary") == "10.0 tCO2 per year"
    assert fmt.objective("min_tco", None, "table") == "-"
    assert fmt.objective_axis("min_power") == ("facility power (MW)", 1e-3)


def test_csv_floats_round_trip():
    row = {"a": 0.1 + 0.2, "b": None, "c": 3, "d": "x"}
    assert fmt.csv_row(row) == {"a": "0.30000000000000004", "b": "", "c": 3, "d": "x"}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(row))
    w.writerow(fmt.csv_row(row))
    assert float(next(csv.reader(io.StringIO(buf.getvalue())))[0]) == 0.1 + 0.2
    assert fmt.number(1234.5678) == "1,235" and fmt.number(7) == "7"


def test_limit_quantities():
    assert fmt.quantity(2.5, "MW") == "2.500 MW"
    assert fmt.quantity(3e6, "$") == "$3.00M"
    assert fmt.quantity(0.25, "s") == "250.0 ms"
    assert fmt.quantity(12.0, "racks") == "12 racks"
    assert fmt.quantity(1234.5, "GB") == "1,234 GB"


def test_node_counts_say_nodes():
    assert fmt.node_counts({"a100-sxm-80gb": 392, "b200": 1200}) == "392 a100-sxm-80gb nodes, 1,200 b200 nodes"
    assert fmt.node_counts({}) == ""
