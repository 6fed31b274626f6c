"""Training goodput under failures: interruptions, checkpoint interval, lost time, hot spares.

A job of N accelerators is interrupted at N times the per-accelerator rate of each component
class (models/data/reliability.yaml, from the Llama 3 405B run; overridable per accelerator with
`Accelerator.interruptions_per_acc_hour`). Every interruption costs detection (unexpected ones
only), a restart and a checkpoint reload; an unexpected one also loses the work done since the
last checkpoint, half an interval on average. Checkpoints stall training for their write time.
The interval is Daly's higher-order optimum unless the job pins it. docs/reliability.md derives
the formulas. Everything is vectorized over numpy arrays of layouts.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import yaml

if TYPE_CHECKING:
    from ..schema import Accelerator, TrainingJob

INTERRUPTION_CLASSES = ("gpu", "hbm", "host", "network", "software", "planned")
LOST_TIME_PARTS = ("checkpoint_write", "rework", "detection", "restart", "reload")


@lru_cache(maxsize=1)
def reliability_data() -> dict:
    """models/data/reliability.yaml, parsed once."""
    return yaml.safe_load(resources.files("models").joinpath("data/reliability.yaml").read_text())


@lru_cache(maxsize=1)
def default_rates_per_acc_hour() -> dict[str, float]:
    """Interruptions per accelerator-hour by class: the basis run's counts over its accelerator-hours."""
    d = reliability_data()["interruptions"]
    hours = d["basis"]["accelerators"] * d["basis"]["days"] * 24.0
    return {c: d["classes"][c]["count"] / hours for c in INTERRUPTION_CLASSES}


def class_rates(acc: "Accelerator") -> dict[str, float]:
    """The accelerator's rate per class: its own figure where given, the default elsewhere."""
    return {**default_rates_per_acc_hour(), **acc.interruptions_per_acc_hour}


def rate_arrays(accs: list["Accelerator"]) -> dict[str, np.ndarray]:
    """Per accelerator type (index as in `accs`), interruptions per accelerator-hour:
    `lose_work` (unexpected: work since the checkpoint is lost), `planned` (checkpointed first) and
    `node_out` (hardware faults that take a node out until it is repaired)."""
    classes = reliability_data()["interruptions"]["classes"]
    out = {"lose_work": [], "planned": [], "node_out": []}
    for acc in accs:
        r = class_rates(acc)
        out["lose_work"].append(sum(v for c, v in r.items() if classes[c]["lose_work"]))
        out["planned"].append(sum(v for c, v in r.items() if not classes[c]["lose_work"]))
        out["node_out"].append(sum(v for c, v in r.items() if classes[c]["takes_node_out"]))
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def checkpoint_interval_s(write_s, mtbf_s):
    """Compute time between checkpoints minimizing lost time, Daly (2006) higher-order estimate:
    tau = sqrt(2 d M) (1 + sqrt(d / 2M) / 3 + d / 18M) - d  for d < 2M, else M
    (d = checkpoint write time, M = mean time between work-losing interruptions). Its leading term
    is Young's (1974) sqrt(2 d M). Infinite when the job never fails."""
    d = np.asarray(write_s, dtype=float)
    m = np.asarray(mtbf_s, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        x = d / (2.0 * m)
        tau = np.sqrt(2.0 * d * m) * (1.0 + np.sqrt(x) / 3.0 + x / 9.0) - d
    return np.where(np.isinf(m), np.inf, np.where(d < 2.0 * m, tau, m))


def goodput(accelerators, lose_work_rate, planned_rate, write_s, interval_s=None, *, detect_s=None,
            restart_s=None, reload_s=None) -> dict[str, np.ndarray]:
    """Useful training time / wall-clock for jobs of `accelerators` accelerators, with its parts.

    Rates are interruptions per accelerator-hour; `write_s` the checkpoint stall; `interval_s` the
    compute time between checkpoints (None: Daly's optimum); reload defaults to the write time
    (the checkpoint is read back at the bandwidth bought to write it). First-order accounting, as
    fractions of wall-clock: each interruption of rate lam costs its recovery time, unexpected
    ones also tau/2 of rework; the rest of the time is split tau : d between training and writes.
    """
    rec = reliability_data()["recovery"]
    detect_s = rec["detect_s"] if detect_s is None else detect_s
    restart_s = rec["restart_s"] if restart_s is None else restart_s
    n = np.asarray(accelerators, dtype=float)
    d = np.broadcast_to(np.asarray(write_s, dtype=float), n.shape)
    reload_s = d if reload_s is None else np.asarray(reload_s, dtype=float)
    lam_u = n * np.asarray(lose_work_rate, dtype=float) / 3600.0  # per second of wall clock
    lam_p = n * np.asarray(planned_rate, dtype=float) / 3600.0
    with np.errstate(divide="ignore"):
        mtbf = np.where(lam_u > 0, 1.0 / np.where(lam_u > 0, lam_u, 1.0), np.inf)
    tau = checkpoint_interval_s(d, mtbf) if interval_s is None else np.broadcast_to(np.asarray(interval_s, dtype=float), n.shape)
    lost = {
        "rework": np.where(lam_u > 0, lam_u * np.where(np.isinf(tau), 0.0, tau) / 2.0, 0.0),
        "detection": lam_u * detect_s,
        "restart": (lam_u + lam_p) * restart_s,
        "reload": (lam_u + lam_p) * reload_s,
    }
    down = np.minimum(sum(lost.values()), 1.0)
    with np.errstate(invalid="ignore"):
        train_share = np.where(np.isinf(tau), 1.0, tau / (tau + d))
    good = (1.0 - down) * train_share
    lost["checkpoint_write"] = (1.0 - down) - good
    return {
        "goodput": good,
        "interruptions_per_day": (lam_u + lam_p) * 86400.0,
        "mtbf_hours": mtbf / 3600.0,
        "checkpoint_interval_s": tau,
        "checkpoint_write_s": d,
        **{f"lost_{k}": lost[k] for k in LOST_TIME_PARTS},
    }


def poisson_quantile(mean, tail_probability: float) -> np.ndarray:
    """Smallest k with P(Poisson(mean) > k) <= tail_probability, elementwise."""
    mean = np.asarray(mean, dtype=float)
    out = np.zeros(mean.shape, dtype=np.int64)
    for mu in np.unique(mean):
        if mu <= 0:
            continue
        ks = np.arange(int(mu + 12 * math.sqrt(mu) + 30))
        logpmf = -mu + ks * math.log(mu) - np.r_[0.0, np.cumsum(np.log(ks[1:]))]
        tail = 1.0 - np.cumsum(np.exp(logpmf))
        out[mean == mu] = int(np.argmax(tail <= tail_probability))
    return out


def spare_nodes(nodes, accelerators_per_node, node_out_rate, repair_hours=None, shortfall_probability=None) -> np.ndarray:
    """Hot spare nodes per job: the fewest k such that more than k of its nodes are out at once with
    probability at most `shortfall_probability`, outages Poisson with mean nodes x node failure rate
    x repair time (node failure rate = accelerators per node x `node_out_rate` per accelerator-hour)."""
    hs = reliability_data()["hot_spares"]
    repair_hours = hs["repair_hours"] if repair_hours is None else repair_hours
    eps = hs["shortfall_probability"] if shortfall_probability is None else shortfall_probability
    mean = np.asarray(nodes, dtype=float) * np.asarray(accelerators_per_node) * np.asarray(node_out_rate) * repair_hours
    return poisson_quantile(mean, eps)


def job_goodput(job: "TrainingJob", rates: dict[str, np.ndarray], acc_idx, accelerators, nodes,
                accelerators_per_node, write_s=None, reload_s=None) -> dict[str, np.ndarray]:
    """`goodput` for one job's layouts (accelerator type index, accelerators, nodes per layout),
    with its checkpoint interval and the write and reload times its storage gives (default: the
    checkpoint window for both), plus `spare_nodes` per layout."""
    interval = None if job.checkpoint_interval_hours is None else job.checkpoint_interval_hours * 3600.0
    write_s = job.checkpoint_window_s if write_s is None else write_s
    out = goodput(accelerators, rates["lose_work"][acc_idx], rates["planned"][acc_idx], write_s, interval,
                  reload_s=reload_s)
    # Spares depend only on (accelerator type, nodes), shared by many layouts: the Poisson quantile
    # once per distinct pair, spread back (the same numbers, a fraction of the work).
    acc_i = np.asarray(acc_idx, dtype=np.int64).ravel()
    nodes_i = np.asarray(nodes).astype(np.int64).ravel()  # far below 2**40 nodes: the pair packs in one int64
    _, first, inv = np.unique((acc_i << 40) | nodes_i, return_index=True, return_inverse=True)
    per_node = np.broadcast_to(np.asarray(accelerators_per_node), acc_i.shape)
    out["spare_nodes"] = spare_nodes(nodes_i[first], per_node[first], rates["node_out"][acc_i[first]])[inv.ravel()]
    return out


def layout_goodput(job: "TrainingJob", acc: "Accelerator", accelerators: int, nodes: int, write_s=None,
                   reload_s=None) -> dict[str, float]:
    """`job_goodput` for one layout, as plain numbers (the verifier's path)."""
    g = job_goodput(job, rate_arrays([acc]), np.zeros(1, dtype=np.int64), np.array([accelerators]),
                    np.array([nodes]), np.array([acc.accelerators_per_node]),
                    write_s=None if write_s is None else np.array([write_s]),
                    reload_s=None if reload_s is None else np.array([reload_s]))
    return {k: (int(v[0]) if k == "spare_nodes" else float(v[0])) for k, v in g.items()}


def wall_clock_days(train_days, goodput_fraction):
    """Failure-free training days over goodput; infinite where failures leave no progress."""
    g = np.asarray(goodput_fraction, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(g > 0, np.asarray(train_days, dtype=float) / np.where(g > 0, g, 1.0), np.inf)


def estimate_goodput(res: dict, acc: "Accelerator", *, checkpoint_window_s: float | None = None,
                     checkpoint_interval_hours: float | None = None) -> dict:
    """The keys `dcopt estimate` adds to a training estimate `res` (needs its gpus and nodes):
    goodput, interruptions, checkpoint interval and write time, the lost-time breakdown, hot spares,
    and time to train with failures (the failure-free figure kept as `time_to_train_failure_free_days`)."""
    from ..schema import TrainingJob

    window = checkpoint_window_s or TrainingJob.model_fields["checkpoint_window_s"].default
    rates = rate_arrays([acc])
    g = goodput(np.array([res["gpus"]]), rates["lose_work"], rates["planned"], window,
                None if checkpoint_interval_hours is None else checkpoint_interval_hours * 3600.0)
    finite = lambda x: float(x) if math.isfinite(x) else None  # noqa: E731  (never fails: no MTBF, no interval)
    out = {k: finite(g[k][0]) for k in ("goodput", "interruptions_per_day", "mtbf_hours", "checkpoint_interval_s", "checkpoint_write_s")}
    out["lost_time_fraction"] = {k: float(g[f"lost_{k}"][0]) for k in LOST_TIME_PARTS}
    out["spare_nodes"] = int(spare_nodes(np.array([res["nodes"]]), acc.accelerators_per_node, rates["node_out"])[0])
    days = res.get("time_to_train_days")
    if days is not None:
        out["time_to_train_failure_free_days"] = days
        wall = float(wall_clock_days(days, out["goodput"]))
        out["time_to_train_days"] = wall if math.isfinite(wall) else None
    return out
