"""Calibrate the serving model on published serving, HBM and GEMM measurements (data/calibration_serving.yaml).

Knobs fitted here, each in a bounded box: `hbm_efficiency` (datasheet -> achieved HBM bandwidth, the
fallback for accelerators without a measured figure) on the HBM rows, and `serving_step_overhead_s`
on the dense serving rows. Per-accelerator figures come from that accelerator's own rows only: a
serving row runs on its catalog entry with the measured HBM (STREAM triad) and GEMM ceilings of its
accelerator overlaid, where the catalog does not carry them already. GEMM rows are reported against
datasheet x unmeasured_gemm_ratio (what a chip without its own measurement gets, in training and serving
alike) to show what the fallback costs.
`run_serving_calibration` returns predicted vs published per row, in sample and leave-one-group-out
(the knob refitted without the row's group).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from ..schema import Accelerator, Calibration, Catalog
from .inference import ServingGrid, evaluate_serving, max_batch_fitting

KNOB_BOUNDS = {"hbm_efficiency": (0.6, 0.95), "serving_step_overhead_s": (0.0, 0.02)}
OVERHEAD_GRID = np.round(np.arange(0.0, 0.02 + 1e-12, 1e-4), 6)


@lru_cache(maxsize=1)
def load_serving_reference() -> dict[str, Any]:
    return yaml.safe_load(resources.files("models.data").joinpath("calibration_serving.yaml").read_text())


def _catalog(catalog: Catalog | None) -> Catalog:
    if catalog is None:
        from ..loader import default_catalog

        catalog = default_catalog()
    return catalog


def row_accelerator(name: str, catalog: Catalog, ref: dict) -> Accelerator:
    """The catalog (or file) entry, with that accelerator's own measured figures where it has none."""
    acc = catalog.accelerators.get(name) or Accelerator(**ref["accelerators"][name])
    upd: dict[str, Any] = {}
    hbm = [r["triad_tbs"] for r in ref["hbm"] if r["accelerator"] == name]
    if hbm and acc.hbm_bw_measured_tbs is None:
        upd["hbm_bw_measured_tbs"] = float(np.mean(hbm))
    gemm = dict(acc.gemm_tflops_measured)
    for r in ref["gemm"]:
        if r["accelerator"] == name and r["precision"] not in gemm:
            gemm[r["precision"]] = float(r["tflops"])
    upd["gemm_tflops_measured"] = gemm
    return acc.model_copy(update=upd)


def predict_serving_row(row: dict, catalog: Catalog, calib: Calibration, ref: dict | None = None) -> float:
    """The model's figure for one serving row, in the row's metric."""
    from ..presets import PRESETS

    ref = ref or load_serving_reference()
    acc = row_accelerator(row["accelerator"], catalog, ref)
    dims = PRESETS[row["model"]]
    n_in, n_out, t = float(row["input_tokens"]), float(row["output_tokens"]), int(row["tp"])
    if "batch" in row:
        beta = int(row["batch"])
    else:  # a saturating client: as many sequences as memory holds, up to the prompts sent
        beta = int(min(max_batch_fitting(dims, [acc], calib, row["precision"], n_in, n_out, [0], [t])[0],
                       row["concurrency"]))
    grid = ServingGrid(acc=np.zeros(1, dtype=np.int64), t=np.array([t]), batch=np.array([max(beta, 1)]))
    p = {k: float(v[0]) for k, v in evaluate_serving(dims, grid, [acc], calib, row["precision"], n_in, n_out).items()}
    metric = row["metric"]
    if metric == "total_tokens_per_s":
        return p["requests_per_s"] * (n_in + n_out)
    if metric == "output_tokens_per_s":
        return p["output_tokens_per_s"]
    if metric == "end_to_end_s":  # one batch: its prefill, then o decode steps
        return p["ttft_s"] + n_out * p["decode_step_s"]
    raise ValueError(f"serving row {row['id']}: unknown metric '{metric}'")


def _log_err(pred, pub):
    return abs(np.log(pred / pub))


def fit_hbm_efficiency(rows: list[dict], catalog: Catalog) -> float:
    """Median achieved/datasheet ratio (the minimiser of the mean absolute log error), clipped to its box."""
    lo, hi = KNOB_BOUNDS["hbm_efficiency"]
    ratios = [r["triad_tbs"] / catalog.accelerators[r["accelerator"]].hbm_bw_tbs for r in rows]
    return float(np.clip(np.median(ratios), lo, hi))


def fit_step_overhead(rows: list[dict], catalog: Catalog, calib: Calibration, ref: dict | None = None) -> float:
    """Overhead on a 0.1 ms grid inside its box minimising the mean absolute log error of `rows`."""
    best, best_err = 0.0, np.inf
    for ov in OVERHEAD_GRID:
        c = calib.model_copy(update={"serving_step_overhead_s": float(ov)})
        err = np.mean([_log_err(predict_serving_row(r, catalog, c, ref), r["published"]) for r in rows])
        if err < best_err - 1e-12:
            best, best_err = float(ov), err
    return best


def fit_serving_calibration(catalog: Catalog | None = None) -> dict[str, float]:
    """Both knobs fitted on every row (the values to ship in data/catalog.yaml)."""
    catalog, ref = _catalog(catalog), load_serving_reference()
    eff = fit_hbm_efficiency([r for r in ref["hbm"] if r["accelerator"] in catalog.accelerators], catalog)
    calib = catalog.calibration.model_copy(update={"hbm_efficiency": eff})
    return {"hbm_efficiency": eff, "serving_step_overhead_s": fit_step_overhead(ref["serving"], catalog, calib, ref)}


def run_serving_calibration(catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """Per row: kind, id, group, metric, published, predicted and error_pct with the shipped knobs, and
    loo_predicted / loo_error_pct with the row's knob refitted without its group."""
    catalog, ref = _catalog(catalog), load_serving_reference()
    calib = catalog.calibration
    out: list[dict[str, Any]] = []

    def rec(kind, r, metric, pub, pred, loo):
        out.append({"kind": kind, "id": r["id"], "group": r.get("group", r["accelerator"]), "metric": metric,
                    "published": pub, "predicted": pred, "error_pct": (pred - pub) / pub * 100,
                    "loo_predicted": loo, "loo_error_pct": (loo - pub) / pub * 100, "source": r["source"]})

    hbm_rows = [r for r in ref["hbm"] if r["accelerator"] in catalog.accelerators]
    for r in hbm_rows:
        spec = catalog.accelerators[r["accelerator"]].hbm_bw_tbs
        loo_eff = fit_hbm_efficiency([q for q in hbm_rows if q["group"] != r["group"]], catalog)
        rec("hbm", r, "hbm_tbs (datasheet x hbm_efficiency)", r["triad_tbs"], spec * calib.hbm_efficiency,
            spec * loo_eff)
    for r in ref["gemm"]:
        if r["accelerator"] not in catalog.accelerators:
            continue
        a = catalog.accelerators[r["accelerator"]]
        peak = a.peak_fp8_tflops if r["precision"] == "fp8" else a.peak_bf16_tflops
        pred = peak * (calib.unmeasured_gemm_ratio or calib.gemm_efficiency_max)
        rec("gemm", dict(r, group=r["accelerator"]), f"{r['precision']}_tflops (peak x unmeasured_gemm_ratio)",
            r["tflops"], pred, pred)
    for r in ref["serving"]:
        others = [q for q in ref["serving"] if q["group"] != r["group"]]
        loo_ov = fit_step_overhead(others, catalog, calib, ref)
        loo = predict_serving_row(r, catalog, calib.model_copy(update={"serving_step_overhead_s": loo_ov}), ref)
        rec("inference", r, r["metric"], r["published"], predict_serving_row(r, catalog, calib, ref), loo)
    return out


def format_serving_calibration(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (what `dcopt calibrate` prints for the serving rows)."""
    lines = [f"{'kind':9} {'id':44} {'published':>11} {'predicted':>11} {'error':>8} {'LOGO':>8}"]
    for r in rows:
        lines.append(f"{r['kind']:9} {r['id']:44} {r['published']:11.4g} {r['predicted']:11.4g} "
                     f"{r['error_pct']:+7.1f}% {r['loo_error_pct']:+7.1f}%")
    return "\n".join(lines)
