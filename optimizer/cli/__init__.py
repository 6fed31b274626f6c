"""The `dcopt` command line."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from optimizer import api
from optimizer.cli.common import (EXIT_INVALID, EXIT_OK, Backend, backend_option, console, debug_option, errors, fail,
                                  status_code)
from optimizer import fmt

app = typer.Typer(add_completion=False, no_args_is_help=True, help="dcopt: proven-optimal AI datacenter designs.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dcopt {api.version()}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print the installed dcopt version and exit."),
) -> None:
    pass


class Format(str, Enum):
    table = "table"
    md = "md"
    json = "json"


@app.command()
def solve(
    instance: Path = typer.Argument(..., help="Instance file (YAML or JSON)."),
    backend: Backend = backend_option(),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds for the whole solve, diagnosis included (hard: killed a few seconds past it)."),
    gap: Optional[float] = typer.Option(None, help="Relative MIP gap to stop at (default: prove optimality)."),
    as_json: bool = typer.Option(False, "--json", help="Print the solution as JSON."),
    fmt_: Format = typer.Option(Format.table, "--format", help="table (default), md or json."),
    export: Optional[Path] = typer.Option(None, help="Also write the MIP as .lp or .mps for other solvers."),
    debug: bool = debug_option(),
) -> None:
    """Find the cheapest design that runs every workload within the limits, proven optimal, and verify it."""
    with errors(debug, str(instance)):
        res = api.solve(api.load(instance), backend=backend.value, time_limit=time_limit, gap=gap, export=export,
                        contained=True)
    inst, sol = res.instance, res.solution
    if as_json or fmt_ == Format.json:
        print(json.dumps(sol.to_dict(), indent=2))
    elif fmt_ == Format.md:
        from optimizer.present.report import render_markdown

        print(render_markdown(sol, inst))
    else:
        from optimizer.present.report import render_rich

        render_rich(sol, inst, console)
    code = status_code(sol.status, sol.has_design)
    if code == EXIT_OK or sol.status in ("infeasible", "time_limit"):
        raise typer.Exit(code)
    fail(f"{instance}: solver error: {sol.message}", code)


class Precision(str, Enum):
    bf16 = "bf16"
    fp8 = "fp8"
    int8 = "int8"


class Mode(str, Enum):
    training = "training"
    inference = "inference"


class RecomputeOpt(str, Enum):
    none = "none"
    selective = "selective"
    full = "full"


@app.command()
def estimate(
    mode: Mode = typer.Option(Mode.training, help="training (one parallel layout) or inference (one serving replica)."),
    model: Optional[str] = typer.Option(None, help="Model preset (listed by `dcopt catalog`), or give the dimensions."),
    layers: Optional[int] = typer.Option(None),
    hidden: Optional[int] = typer.Option(None),
    heads: Optional[int] = typer.Option(None),
    kv_heads: Optional[int] = typer.Option(None, "--kv-heads"),
    ffn_hidden: Optional[int] = typer.Option(None, "--ffn-hidden"),
    gated_mlp: bool = typer.Option(False, "--gated-mlp/--no-gated-mlp"),
    vocab: Optional[int] = typer.Option(None),
    seq_len: Optional[int] = typer.Option(None, "--seq-len"),
    accelerator: str = typer.Option("h100-sxm", help="Catalog accelerator."),
    fabric: Optional[str] = typer.Option(None, help="Catalog fabric (default: the one the accelerator usually ships with)."),
    gpus: Optional[int] = typer.Option(None, help="Training: accelerators in the job."),
    tp: Optional[int] = typer.Option(None, "--tp"),
    pp: Optional[int] = typer.Option(None, "--pp"),
    global_batch: Optional[int] = typer.Option(None, "--global-batch", help="Training: global batch, sequences."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch"),
    vp: int = typer.Option(1, "--vp", help="Interleaved pipeline chunks per stage."),
    precision: Precision = typer.Option(Precision.bf16),
    recompute: Optional[RecomputeOpt] = typer.Option(None),
    distributed_optimizer: bool = typer.Option(True, "--distributed-optimizer/--no-distributed-optimizer"),
    tokens: Optional[float] = typer.Option(None, help="Tokens to train on (for time to train)."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Inference: decode batch (concurrent sequences)."),
    input_tokens: float = typer.Option(1000.0, "--input-tokens", help="Inference: prompt tokens per request."),
    output_tokens: float = typer.Option(250.0, "--output-tokens", help="Inference: generated tokens per request."),
    requests_per_s: Optional[float] = typer.Option(
        None, "--requests-per-s", help="Inference: Poisson load on the replica, req/s (adds p50/p99 TTFT and TPOT)."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
    debug: bool = debug_option(),
) -> None:
    """One training configuration (step time, tokens/s, MFU, memory) or one serving replica (TTFT, TPOT, tokens/s)."""
    if model is None:
        missing = [n for n, v in (("--layers", layers), ("--hidden", hidden), ("--heads", heads), ("--vocab", vocab),
                                  ("--seq-len", seq_len)) if v is None]
        if missing:
            fail(f"give --model PRESET or the dimensions (missing: {', '.join(missing)})", EXIT_INVALID)
    what = model or dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn_hidden=ffn_hidden,
                         gated_mlp=gated_mlp, vocab=vocab, seq_len=seq_len)
    if mode == Mode.inference:
        with errors(debug, "estimate"):
            out = api.estimate(what, accelerator, mode="inference", seq_len=seq_len, tp=tp, batch=batch,
                               precision=precision.value, input_tokens=input_tokens, output_tokens=output_tokens,
                               requests_per_s=requests_per_s)
        _print_estimate(out, as_json, "Inference estimate (one replica)")
        return
    if gpus is None or global_batch is None:
        fail("estimate: training needs --gpus and --global-batch", EXIT_INVALID)
    if precision == Precision.int8:
        fail("estimate: int8 is a serving precision; train in bf16 or fp8", EXIT_INVALID)
    with errors(debug, "estimate"):
        out = api.estimate(what, accelerator, seq_len=seq_len, fabric=fabric, gpus=gpus, tp=tp, pp=pp,
                           global_batch=global_batch, micro_batch=micro_batch, vp=vp, precision=precision.value,
                           recompute=recompute.value if recompute else None,
                           distributed_optimizer=distributed_optimizer, tokens=tokens)
    _print_estimate(out, as_json, "Training estimate")


def _print_estimate(out: dict, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(out, indent=2))
        return
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_header=False)
    for k, v in out.items():
        if isinstance(v, dict):  # the breakdown: one row per part
            for k2, v2 in v.items():
                t.add_row(f"{k}.{k2}", fmt.number(v2))
        else:
            t.add_row(k, fmt.number(v))
    console.print(t)


@app.command()
def calibrate(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    debug: bool = debug_option(),
) -> None:
    """Predict published training runs (Megatron-LM, SC'21) and serving runs, and print the error of each."""
    with errors(debug, "calibrate"):
        rep = api.calibrate()
        serving = api.calibrate_serving()
    if as_json:
        print(json.dumps(dict(rep.to_dict(), serving=serving), indent=2))
        return
    from rich.table import Table

    t = Table(title=f"Calibration against {rep.source}", title_justify="left")
    for h in ("case", "published", "predicted", "error"):
        t.add_column(h)
    for r in rep.rows:
        t.add_row(r.id, f"{r.published:g} {r.unit}", f"{r.predicted:.1f} {r.unit}", f"{r.error_pct:+.1f}%")
    t.add_section()
    for r in rep.end_to_end:  # time to train, the paper's sec. 5.1 estimates
        t.add_row(f"{r.id} (end to end)", f"{r.published:g} {r.unit}", f"{r.predicted:.1f} {r.unit}", f"{r.error_pct:+.1f}%")
    console.print(t)
    console.print(f"throughput rows: mean absolute error {rep.mae_pct:.1f}%, worst {rep.max_abs_error_pct:.1f}% "
                  "(target: every row within 15%)", highlight=False)
    console.print("\nServing (HBM, GEMM and serving runs; LOGO = leave one group out):", highlight=False)
    console.print(api.format_serving_calibration(serving), highlight=False, markup=False)


@app.command()
def explain(
    instance: Path = typer.Argument(..., help="Instance file (YAML or JSON)."),
    backend: Backend = backend_option(),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds per MIP solve (soft)."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
    debug: bool = debug_option(),
) -> None:
    """Why no design exists and the smallest fixes; or, for a solved design, what binds and what one
    more unit of each limit is worth."""
    with errors(debug, str(instance)):
        res = api.solve(api.load(instance), backend=backend.value, time_limit=time_limit)
    inst, sol = res.instance, res.solution
    if not sol.has_design:
        if as_json:
            print(json.dumps({"status": sol.status, "diagnosis": sol.diagnosis}, indent=2))
        else:
            console.print(f"{inst.name}: no design exists ({sol.status}).", highlight=False)
            for x in sol.diagnosis:
                console.print(f"    * {x.strip()}" if x.startswith("  ") else f"  - {x}", highlight=False)
        raise typer.Exit(status_code(sol.status, sol.has_design))
    with errors(debug, str(instance)):
        binds = api.what_binds(res)
        prices = api.shadow_prices(res, backend=backend.value, time_limit=time_limit)
    if as_json:
        print(json.dumps({
            "status": sol.status, "objective": sol.objective, "objective_value": sol.objective_value,
            "limits": [{"limit": b.limit, "value": b.value, "bound": b.bound, "slack": b.slack, "unit": b.unit,
                        "tight": b.tight} for b in binds],
            "shadow_prices": [{"limit": p.limit, "per": p.unit, "lp_dual_usd": p.lp_dual_usd,
                               "resolve_delta": p.resolve_delta, "text": p.text()} for p in prices],
        }, indent=2))
        return
    from rich.table import Table

    t = Table(title=f"What binds in {inst.name} (tight = under 2% left)", title_justify="left")
    for h in ("limit", "used", "limit value", "slack", "tight"):
        t.add_column(h)
    for b in sorted(binds, key=lambda b: (not b.tight, b.limit)):
        f = lambda x, u=b.unit: fmt.quantity(x, u)  # noqa: E731
        t.add_row(b.limit, f(b.value), f(b.bound), f(b.slack), "TIGHT" if b.tight else "")
    console.print(t)
    for p in prices:
        console.print(f"- {p.text()}", highlight=False)


@app.command()
def schema(debug: bool = debug_option()) -> None:
    """Print the JSON Schema of instance files (for editors)."""
    with errors(debug, "schema"):
        doc = api.instance_schema()
    print(json.dumps(doc, indent=2))


@app.command()
def catalog(
    as_json: bool = typer.Option(False, "--json", help="Print the whole catalog (every field of every entry, the "
                                 "calibration and the model presets) as JSON."),
    debug: bool = debug_option(),
) -> None:
    """List the built-in catalog and model presets."""
    with errors(debug, "catalog"):
        cat, presets = api.catalog(), api.presets()
        doc = api.catalog_dict() if as_json else None
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    t = Table(title="Accelerators (prices indicative)", title_justify="left")
    for h in ("name", "BF16 TFLOP/s", "FP8", "HBM GB", "TB/s", "per node", "node kW", "node price"):
        t.add_column(h)
    for n, a in cat.accelerators.items():
        t.add_row(n, f"{a.peak_bf16_tflops:g}", f"{a.peak_fp8_tflops or '-'}", f"{a.hbm_gb:g}", f"{a.hbm_bw_tbs:g}",
                  str(a.accelerators_per_node), f"{a.node_power_kw:g}", fmt.usd(a.node_price_usd, whole=True))
    console.print(t)
    t = Table(title="Fabrics", title_justify="left")
    for h in ("name", "Gb/s", "radix", "switch price", "endpoint price"):
        t.add_column(h)
    for n, f in cat.fabrics.items():
        t.add_row(n, f"{f.port_gbps:g}", str(f.switch_radix), fmt.usd(f.switch_price_usd, whole=True),
                  fmt.usd(f.endpoint_price_usd, whole=True))
    console.print(t)
    console.print("Storage tiers: " + ", ".join(cat.storage), highlight=False)
    console.print("Model presets: " + ", ".join(f"{k} ({v.params / 1e9:.0f}B)" for k, v in presets.items()), highlight=False)


# Commands that live in their own modules (batch and generate; sweep and pareto).
from optimizer.cli.batch import register as _register_batch  # noqa: E402
from optimizer.cli.explore import register as _register_explore  # noqa: E402

_register_batch(app)
_register_explore(app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
