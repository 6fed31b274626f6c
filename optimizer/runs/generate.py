"""Random, realistic instances for scale tests and fuzzing: seeded, deterministic, and feasible by
construction unless asked otherwise.

Feasible by construction means the generator builds a *witness* design while it writes the file:
for each training job one layout on one accelerator and fabric, evaluated by the performance model,
whose time sets the deadline (with slack); for each service one replica layout meeting its SLOs
(regional round-trip included), replicated to cover the demand; every workload placed at one site.
Power caps, rack space and the budget are then set above what the witness needs, with margins
wide enough to cover what the witness does not itemise (network, storage, cooling). The optimizer
may find something cheaper, never nothing. `infeasible=True` breaks one limit so that no design
exists (a deadline below the fastest layout on any accelerator, a power cap or budget below the
least any layout of the largest job needs) — useful for diagnosis tests.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from .store import atomic_write

REGIONS = ("na-east", "eu-central", "na-west", "ap-southeast", "sa-east")
SITES_BY_REGION = {"na-east": ("virginia", "ohio", "quebec"), "eu-central": ("frankfurt", "stockholm", "dublin"),
                   "na-west": ("oregon", "iowa", "texas"), "ap-southeast": ("singapore", "tokyo", "sydney"),
                   "sa-east": ("saopaulo", "santiago", "bogota")}
RTT_MS = {  # approximate round trips between regions (public cloud inter-region figures, rounded)
    ("na-east", "eu-central"): 90, ("na-east", "na-west"): 65, ("na-east", "ap-southeast"): 220,
    ("na-east", "sa-east"): 115, ("eu-central", "na-west"): 150, ("eu-central", "ap-southeast"): 160,
    ("eu-central", "sa-east"): 200, ("na-west", "ap-southeast"): 165, ("na-west", "sa-east"): 175,
    ("ap-southeast", "sa-east"): 320,
}
TRAIN_MODELS = (  # (preset or None for random dimensions, weight)
    ("llama3-8b", 0.22), ("llama2-7b", 0.08), ("llama2-13b", 0.14), (None, 0.22), ("llama3-70b", 0.2),
    ("llama2-70b", 0.06), ("gpt3-175b", 0.05), ("llama3-405b", 0.03),
)
SERVE_MODELS = (("llama3-8b", 0.45), ("llama2-13b", 0.1), ("llama3-70b", 0.35), ("llama3-405b", 0.1))
SERVE_RPS = {"llama3-8b": (20, 500), "llama2-13b": (10, 200), "llama3-70b": (5, 150), "llama3-405b": (1, 20)}
INFEASIBLE_KINDS = ("deadline", "power", "budget")


@dataclass
class _SiteLoad:
    it_kw: float = 0.0
    racks: int = 0
    capex_usd: float = 0.0
    what: list[str] = field(default_factory=list)


def _sig(x: float, digits: int = 3) -> float:
    """Round to significant digits, as a person writes figures."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(round(x, digits - 1 - int(math.floor(math.log10(abs(x))))))


def _pick(rng: random.Random, weighted) -> Any:
    names, weights = zip(*weighted)
    return rng.choices(names, weights=weights, k=1)[0]


def _random_dims(rng: random.Random) -> dict:
    """A plausible decoder-only transformer of ~1-30B parameters."""
    head_dim = 128
    heads = rng.choice([16, 24, 32, 40, 48, 56, 64])
    hidden = heads * head_dim
    kv = rng.choice([h for h in (4, 8, heads) if heads % h == 0])
    ffn = int(round(hidden * 8 / 3 / 256)) * 256
    return {"layers": rng.choice([16, 24, 28, 32, 40, 48, 60]), "hidden": hidden, "heads": heads, "kv_heads": kv,
            "ffn_hidden": ffn, "gated_mlp": True, "vocab": rng.choice([32000, 50304, 128256]),
            "seq_len": rng.choice([2048, 4096, 8192])}


def _catalog_of(catalog_section: dict):
    """The merged, validated catalog the instance will see (via the loader, so overrides apply)."""
    from models.loader import instance_from_dict

    probe = {"catalog": catalog_section, "facility": {"power_cap_mw": 1},
             "workloads": [{"name": "probe", "model": "llama3-8b", "tokens": 1e9, "deadline_days": 1, "global_batch": 8}]}
    return instance_from_dict(probe, "<generate>").catalog


def _sub_catalog(cat, acc: str, fab: Optional[str] = None):
    update = {"accelerators": {acc: cat.accelerators[acc]}}
    if fab is not None:
        update["fabrics"] = {fab: cat.fabrics[fab]}
    return cat.model_copy(update=update)


class _Generator:
    def __init__(self, jobs: int, services: int, sites: int, accelerators: int, seed: int, fabrics: int,
                 infeasible: bool, objective: str):
        from models.loader import default_catalog_raw

        if jobs < 0 or services < 0 or jobs + services < 1:
            raise ValueError("give at least one training job or one service (--jobs, --services)")
        if sites < 1:
            raise ValueError("--sites must be at least 1")
        self.rng = random.Random(seed)
        self.seed, self.n_jobs, self.n_services, self.n_sites = seed, jobs, services, sites
        self.infeasible, self.objective = infeasible, objective
        raw = default_catalog_raw()
        # Bought as nodes and on any standard fabric: the witness design is a set of whole nodes on one fabric.
        all_acc = sorted(n for n, a in raw["accelerators"].items()
                         if a.get("purchase_unit", "node") == "node" and a.get("compatible_fabrics") is None)
        all_fab = sorted(n for n, f in raw["fabrics"].items() if f.get("accelerators") is None)
        a = len(all_acc) if accelerators <= 0 or accelerators >= len(all_acc) else accelerators
        f = len(all_fab) if fabrics <= 0 or fabrics >= len(all_fab) else fabrics
        self.accs = sorted(self.rng.sample(all_acc, a))
        self.fabs = sorted(self.rng.sample(all_fab, f))
        self.catalog_section = {"accelerators": list(self.accs), "fabrics": list(self.fabs),
                                "storage": sorted(raw["storage"])}
        self.cat = _catalog_of(self.catalog_section)
        self.regions = list(REGIONS[: min(max(2, sites), len(REGIONS))]) if sites > 1 else []
        self.homes = [self.regions[i % len(self.regions)] if self.regions else None for i in range(sites)]
        self.site_names = [SITES_BY_REGION[h][i // len(self.regions)] if h and i // len(self.regions) < 3
                           else f"site-{i + 1}" for i, h in enumerate(self.homes)]
        self.loads = [_SiteLoad() for _ in range(sites)]
        self.latency = self._latencies()

    # -- sites -------------------------------------------------------------------------------

    def _latencies(self) -> list[dict[str, float]]:
        out = []
        for home in self.homes:
            rtt = {}
            for r in self.regions:
                base = 0 if r == home else RTT_MS.get((home, r)) or RTT_MS[(r, home)]
                rtt[r] = float(base + self.rng.randint(3, 15))
            out.append(rtt)
        return out

    def _site_for(self) -> int:
        """Spread the witness: the least loaded site, ties broken at random (seeded)."""
        least = min(x.it_kw for x in self.loads)
        choices = [i for i, x in enumerate(self.loads) if x.it_kw <= least + 1e-9]
        return self.rng.choice(choices)

    # -- training jobs -----------------------------------------------------------------------

    def job(self, k: int) -> dict:
        from models.candidates import job_table
        from models.network import MAX_TIERS, tier_capacity
        from models.presets import resolve_model
        from models.schema import ModelDims, TrainingJob

        rng = self.rng
        for attempt in range(40):
            preset = _pick(rng, TRAIN_MODELS) if attempt < 30 else "llama3-8b"
            model: Any = preset if preset else _random_dims(rng)
            dims = resolve_model(preset) if preset else ModelDims(**model)
            seq = dims.seq_len
            precision = "fp8" if rng.random() < 0.2 else "bf16"
            gb = 2 ** int(round(math.log2(rng.uniform(2e6, 16e6) / seq)))
            target_days = float(rng.randint(14, 90))
            # Cluster size grows with the model: ~32-256 accelerators for 8B, ~256-2048 for 70B.
            lo = min(12, max(5, int(round(math.log2(dims.params / 1e9 * 4)))))
            target_acc = 2 ** rng.randint(lo, lo + 3)
            accs = [a for a in self.accs if precision == "bf16" or self.cat.accelerators[a].peak_fp8_tflops]
            if not accs:
                continue
            acc = rng.choice(accs)
            fab = rng.choice(self.fabs)
            name = f"{(preset or 'custom')}-train-{k + 1}"
            base = dict(name=name, model=model, tokens=1e12, deadline_days=target_days, global_batch=gb,
                        precision=precision, checkpoint_interval_hours=float(rng.choice([1, 2, 3, 4, 6])),
                        checkpoint_window_s=float(rng.choice([60, 120, 180, 300])))
            t = job_table(TrainingJob(**base), _sub_catalog(self.cat, acc, fab))
            ok = t.perf["fits_memory"].astype(bool) & np.isfinite(t.days) & (t.perf["n_acc"] <= target_acc)
            f = self.cat.fabrics[fab]  # the witness must be buildable: endpoints within a 3-tier fat-tree
            ok &= t.endpoints <= tier_capacity(MAX_TIERS, f.switch_radix, f.oversubscription)
            if not ok.any():
                continue
            days = np.where(ok, t.days, np.inf)
            i = int(np.argmin(days))
            # Days scale with tokens: choose tokens so this layout trains in target/slack days,
            # within 0.5-40x the Chinchilla-optimal 20 tokens per parameter.
            slack = rng.uniform(1.15, 1.5)
            chin = 20 * dims.params
            tokens = _sig(min(max(1e12 * (target_days / slack) / float(days[i]), 0.5 * chin), 40 * chin, 3e13), 2)
            witness_days = float(days[i]) * tokens / 1e12
            deadline = max(target_days, math.ceil(witness_days * 1.15))
            if deadline > 180 and attempt < 30:
                continue  # too slow on this accelerator: draw again
            job = dict(base, tokens=tokens, deadline_days=float(deadline),
                       dataset_tb=_sig(tokens * 4 / 1e12, 2))
            if precision == "bf16":
                job.pop("precision")
            return self._place_job(job, t, i, acc, witness_days, k)
        raise RuntimeError("generate: could not build a feasible training job (catalog too small?)")

    def _place_job(self, job: dict, t, i: int, acc: str, witness_days: float, k: int) -> dict:
        a = self.cat.accelerators[acc]
        nodes = int(t.perf["nodes"][i]) + int(t.perf["spare_nodes"][i])  # hot spares are bought too
        it_kw = nodes * a.node_power_kw
        s = self._site_for()
        load = self.loads[s]
        load.it_kw += it_kw
        per_rack = max(1, int(40 // a.node_power_kw)) if not a.liquid_cooled_only else max(1, int(120 // a.node_power_kw))
        load.racks += -(-nodes // per_rack)
        load.capex_usd += nodes * a.node_price_usd
        load.what.append(f"{job['name']}: {int(t.perf['n_acc'][i])} x {acc}, {witness_days:.1f} of "
                         f"{job['deadline_days']:g} days")
        return job

    # -- services ----------------------------------------------------------------------------

    def service(self, k: int) -> dict:
        from models.candidates import service_table
        from models.schema import InferenceService

        rng = self.rng
        s = self._site_for()
        max_rtt_s = max(self.latency[s].values(), default=0.0) / 1000.0
        for attempt in range(40):
            preset = _pick(rng, SERVE_MODELS) if attempt < 30 else "llama3-8b"
            precision = "fp8" if preset == "llama3-405b" or rng.random() < 0.2 else "bf16"
            lo, hi = SERVE_RPS[preset]
            rps = _sig(math.exp(rng.uniform(math.log(lo), math.log(hi))), 2)
            n_in, n_out = rng.choice([200, 500, 800, 1500, 2000, 4000]), rng.choice([100, 200, 350, 500, 1000])
            ttft, tpot = rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]), rng.choice([0.03, 0.04, 0.05, 0.075, 0.1])
            accs = [a for a in self.accs if precision == "bf16" or self.cat.accelerators[a].peak_fp8_tflops]
            if not accs:
                continue
            svc = dict(name=f"{preset}-serve-{k + 1}", kind="inference", model=preset, precision=precision,
                       requests_per_s=rps, input_tokens=float(n_in), output_tokens=float(n_out), ttft_s=ttft, tpot_s=tpot)
            sub = self.cat.model_copy(update={"accelerators": {a: self.cat.accelerators[a] for a in accs}})
            table = service_table(InferenceService(**svc), sub)
            p = table.perf
            fits = p["fits_memory"].astype(bool)
            if not fits.any():
                continue
            if self.n_sites > 1:  # regional demand; the witness covers the sum of the rounded parts
                svc.pop("requests_per_s")
                svc["demand_by_region"] = self._split(rps)
                rps = sum(svc["demand_by_region"].values())
            need_ttft = p["ttft_s"] + max_rtt_s
            ok = fits & (need_ttft <= ttft) & (p["tpot_s"] <= tpot)
            if not ok.any():
                # Relax the SLOs to just above the nearest layout: realistic numbers, still feasible.
                ratio = np.where(fits, np.maximum(need_ttft / ttft, p["tpot_s"] / tpot), np.inf)
                j = int(np.argmin(ratio))
                svc["ttft_s"] = _sig(max(ttft, float(need_ttft[j]) * 1.25), 2)
                svc["tpot_s"] = _sig(max(tpot, float(p["tpot_s"][j]) * 1.25), 2)
                ok = fits & (need_ttft <= svc["ttft_s"]) & (p["tpot_s"] <= svc["tpot_s"])
            # Witness: the layout needing the fewest accelerators for the whole demand.
            t_acc = table.grid.t.astype(float)
            reps = np.ceil(rps / np.maximum(p["requests_per_s"], 1e-12))
            need = np.where(ok, reps * t_acc, np.inf)
            j = int(np.argmin(need))
            acc = table.accelerators[int(table.grid.acc[j])]
            a = self.cat.accelerators[acc]
            n_acc = int(need[j])
            nodes = -(-n_acc // a.accelerators_per_node) + 1
            load = self.loads[s]
            load.it_kw += nodes * a.node_power_kw
            load.racks += nodes
            load.capex_usd += nodes * a.node_price_usd
            load.what.append(f"{svc['name']}: {int(reps[j])} x tp{int(t_acc[j])} {acc} replicas")
            return svc
        raise RuntimeError("generate: could not build a feasible service (catalog too small?)")

    def _split(self, rps: float) -> dict[str, float]:
        regions = self.rng.sample(self.regions, self.rng.randint(1, len(self.regions)))
        weights = [self.rng.uniform(0.2, 1.0) for _ in regions]
        total = sum(weights)
        parts = {r: _sig(rps * w / total, 2) for r, w in zip(sorted(regions), weights)}
        return {r: max(v, 0.1) for r, v in parts.items()}

    # -- the instance ------------------------------------------------------------------------

    def build(self) -> tuple[dict, list[str]]:
        rng = self.rng
        workloads = [self.job(k) for k in range(self.n_jobs)] + [self.service(k) for k in range(self.n_services)]
        places = []
        for i, load in enumerate(self.loads):
            pue = round(rng.uniform(1.1, 1.4), 2)
            it = load.it_kw * 1.15 + 20.0  # network, storage, serving front-end on top of the nodes
            cap_mw = _sig(max(0.5, it * pue * rng.uniform(1.4, 2.0) / 1000.0), 3)
            place = {"power_cap_mw": cap_mw, "pue": pue, "energy_usd_per_kwh": round(rng.uniform(0.04, 0.15), 3)}
            if rng.random() < 0.5:
                place["max_racks"] = int(load.racks * 2 + 10)
            if self.n_sites > 1:
                place = {"name": self.site_names[i], **place,
                         "carbon_g_per_kwh": float(rng.choice([20, 50, 120, 250, 400, 550])),
                         "site_capex_usd": _sig(rng.uniform(2e6, 3e7), 2),
                         "latency_ms": dict(self.latency[i])}
            places.append(place)
        # The facility build cost (default tier N) of the IT load, on top of the nodes.
        from models.facility import tier_usd_per_mw

        capex_need = sum(x.capex_usd + tier_usd_per_mw("N") * (x.it_kw * 1.15 + 20.0) / 1000.0 for x in self.loads)
        budget: dict[str, Any] = {"horizon_years": float(rng.choice([3, 4, 5])),
                                  "maintenance_pct_per_year": float(rng.choice([2, 3, 4]))}
        if rng.random() < 0.5:
            # Nodes are most of the capex; network, storage, racks, cooling and site build-out on top.
            budget["capex_usd"] = _sig(capex_need * rng.uniform(1.8, 2.6) + 1e8 * (self.n_sites > 1), 3)
        if self.n_sites > 1:
            budget["carbon_price_usd_per_t"] = float(rng.choice([0, 25, 50, 100]))
        inst: dict[str, Any] = {
            "name": f"gen-j{self.n_jobs}-s{self.n_services}-k{self.n_sites}-a{len(self.accs)}-seed{self.seed}"
                    + ("-infeasible" if self.infeasible else ""),
            "catalog": self.catalog_section,
            "workloads": workloads,
        }
        if self.n_sites > 1:
            inst["sites"] = places
        else:
            inst["facility"] = places[0]
        inst["budget"] = budget
        inst["objective"] = self.objective
        notes = [f"witness at {self.site_names[i] if self.n_sites > 1 else 'the facility'}: "
                 f"{x.it_kw / 1000:.2f} MW of nodes; " + "; ".join(x.what) for i, x in enumerate(self.loads) if x.what]
        if self.infeasible:
            notes = [self._break(inst)]
        return inst, notes

    def _break(self, inst: dict) -> str:
        """Make one limit impossible to meet for every design, not just for the witness."""
        from models.candidates import job_table
        from models.schema import TrainingJob

        kinds = list(INFEASIBLE_KINDS) if self.n_jobs else ["power", "budget"]
        kind = self.rng.choice(kinds)
        places = inst["sites"] if "sites" in inst else [inst["facility"]]
        if kind == "deadline":
            # Below the fastest layout that all the power on offer could run (IT <= facility power).
            k = self.rng.randrange(self.n_jobs)
            job = inst["workloads"][k]
            t = job_table(TrainingJob(**job), self.cat)  # every accelerator and fabric offered
            node_kw = np.array([self.cat.accelerators[a].node_power_kw for a in t.accelerators])[t.grid.acc]
            cap_kw = sum(p["power_cap_mw"] for p in places) * 1000.0
            ok = t.perf["fits_memory"].astype(bool) & np.isfinite(t.days) & (t.perf["nodes"] * node_kw <= cap_kw)
            fastest = float(np.min(np.where(ok, t.days, np.inf)))
            job["deadline_days"] = _sig(fastest * 0.7, 2)
            return (f"INFEASIBLE: {job['name']} has a deadline of {job['deadline_days']:g} days; the fastest layout "
                    f"that {cap_kw / 1000:.3g} MW of power could run takes {fastest:.1f}")
        # Power or budget: below the least that the hungriest single workload needs on any layout.
        least_kw, least_usd = self._least_need(inst)
        if kind == "power":
            for p in places:  # even all sites together could not host it (a service may span sites)
                p["power_cap_mw"] = _sig(max(least_kw * 0.5 / len(places) / 1000.0, 1e-3), 2)
            return f"INFEASIBLE: every power cap is below the {least_kw / 1000:.3f} MW of IT power one workload needs at least"
        inst["budget"]["capex_usd"] = _sig(max(least_usd * 0.5, 1.0), 2)
        return f"INFEASIBLE: the capex budget is below the ${least_usd / 1e6:.2f}M of nodes one workload needs at least"

    def _least_need(self, inst: dict) -> tuple[float, float]:
        """max over workloads of (least node power, least node capex) over every offered layout."""
        from models.candidates import job_table, service_table
        from models.schema import InferenceService, TrainingJob

        kw, usd = 0.0, 0.0
        price = np.array([self.cat.accelerators[a].node_price_usd for a in sorted(self.cat.accelerators)])
        power = np.array([self.cat.accelerators[a].node_power_kw for a in sorted(self.cat.accelerators)])
        for w in inst["workloads"]:
            if w.get("kind") == "inference":
                w2 = dict(w)
                if "demand_by_region" in w2:
                    w2["requests_per_s"] = sum(w2.pop("demand_by_region").values())
                svc = InferenceService(**w2)
                t = service_table(svc, self.cat)
                ok = t.meets_slo()
                if not ok.any():
                    continue
                names = t.accelerators
                per_node = np.array([self.cat.accelerators[a].accelerators_per_node for a in names])[t.grid.acc]
                acc_needed = np.ceil(svc.demand_rps / np.maximum(t.perf["requests_per_s"], 1e-12)) * t.grid.t
                nodes = acc_needed / per_node  # fractional: a lower bound
                p = np.array([self.cat.accelerators[a].node_power_kw for a in names])[t.grid.acc]
                c = np.array([self.cat.accelerators[a].node_price_usd for a in names])[t.grid.acc]
                kw = max(kw, float(np.min(np.where(ok, nodes * p, np.inf))))
                usd = max(usd, float(np.min(np.where(ok, nodes * c, np.inf))))
                continue
            t = job_table(TrainingJob(**w), self.cat)
            ok = t.perf["fits_memory"].astype(bool) & (t.days <= w["deadline_days"])
            if not ok.any():
                continue
            idx = np.array([sorted(self.cat.accelerators).index(a) for a in t.accelerators])[t.grid.acc]
            nodes = t.perf["nodes"]
            kw = max(kw, float(np.min(np.where(ok, nodes * power[idx], np.inf))))
            usd = max(usd, float(np.min(np.where(ok, nodes * price[idx], np.inf))))
        return kw, usd


def generate(jobs: int = 2, services: int = 1, sites: int = 1, accelerators: int = 4, seed: int = 0, *,
             fabrics: int = 2, infeasible: bool = False, objective: str = "min_tco") -> tuple[dict, list[str]]:
    """(instance document, notes on the witness or on what makes it infeasible)."""
    return _Generator(jobs, services, sites, accelerators, seed, fabrics, infeasible, objective).build()


class _Dumper(yaml.SafeDumper):
    """Block mappings, inline lists of scalars, and floats a person (and YAML 1.1) reads as floats."""


def _float(dumper, x: float):
    if x != x or x in (float("inf"), float("-inf")):
        return dumper.represent_float(x)
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        mant, exp = f"{x:.6e}".split("e")
        mant = mant.rstrip("0")
        text = f"{mant}0e{exp}" if mant.endswith(".") else f"{mant}e{exp}"
    else:
        text = repr(x)
    return dumper.represent_scalar("tag:yaml.org,2002:float", text)


def _list(dumper, xs: list):
    flow = all(not isinstance(x, (dict, list)) for x in xs)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", xs, flow_style=flow)


_Dumper.add_representer(float, _float)
_Dumper.add_representer(list, _list)


def dump_yaml(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def render(doc: dict, notes: list[str], command: str) -> str:
    head = [f"# Generated by `{command}`.",
            "# Infeasible on purpose (see below)." if doc["name"].endswith("-infeasible")
            else "# Feasible by construction: a witness design (below) meets every deadline, SLO and limit."]
    head += [f"# {n}" for n in notes]
    return "\n".join(head) + "\n" + dump_yaml(doc)


def write(path: Path | str, jobs: int = 2, services: int = 1, sites: int = 1, accelerators: int = 4, seed: int = 0,
          *, fabrics: int = 2, infeasible: bool = False, objective: str = "min_tco", command: str = "") -> Path:

    doc, notes = generate(jobs, services, sites, accelerators, seed, fabrics=fabrics, infeasible=infeasible,
                          objective=objective)
    cmd = command or (f"dcopt generate --jobs {jobs} --services {services} --sites {sites} --accelerators "
                      f"{accelerators} --fabrics {fabrics} --seed {seed}" + (" --infeasible" if infeasible else ""))
    path = Path(path)
    atomic_write(path, render(doc, notes, cmd).encode())
    return path
