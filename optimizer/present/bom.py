"""The bill of materials as CSV, from a result dict's "report" facts (`optimizer.studies.handover.bom`)."""

from __future__ import annotations

import csv
import io

from optimizer.fmt import csv_row
from optimizer.studies.handover import BOM_FIELDS


def bom_lines(doc: dict) -> list[dict]:
    """The BOM lines of a result dict; a ValueError saying why when there are none to give."""
    if not doc.get("design"):
        raise ValueError(f"{doc.get('instance', 'result')}: no design ({doc.get('status', '?')}), so no bill of materials")
    if "bom" not in (doc.get("report") or {}):
        raise ValueError(f"{doc.get('instance', 'result')}: this result file has no bill of materials (it was written "
                         "before dcopt stored one); solve the instance again")
    return doc["report"]["bom"]


def bom_csv(doc: dict) -> str:
    """One row per line, full-precision numbers (the totals add up to the capex)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=BOM_FIELDS, lineterminator="\n")
    w.writeheader()
    for ln in bom_lines(doc):
        w.writerow(csv_row({k: ln[k] for k in BOM_FIELDS}))
    return buf.getvalue()
