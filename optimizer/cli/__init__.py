"""The `dcopt` command line."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from optimizer import api
from optimizer.cli.common import (EXIT_INVALID, EXIT_OK, Backend, Progress, backend_option, console, debug_option, errors,
                                  fail, quiet_option, status_code, write_output)
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
    work_limit: Optional[int] = typer.Option(None, "--work-limit", min=0, help="Branch-and-bound nodes per MIP solve "
                                             "(deterministic: the same stop on a loaded or an idle machine)."),
    decompose: bool = typer.Option(False, "--decompose", help="Fix the sites from the constructive start, solve the "
                                   "rest, then the full model (the gap printed stays the full model's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the solution as JSON."),
    fmt_: Format = typer.Option(Format.table, "--format", help="table (default), md or json."),
    export: Optional[Path] = typer.Option(None, help="Also write the MIP as .lp or .mps for other solvers."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write the design as one self-contained HTML page."),
    bom_out: Optional[Path] = typer.Option(None, "--bom", help="Also write the bill of materials as CSV (totals add up "
                                           "to the capex)."),
    quiet: bool = quiet_option(),
    debug: bool = debug_option(),
) -> None:
    """Find the cheapest design that runs every workload within the limits, proven optimal, and verify it."""
    with errors(debug, str(instance)):
        inst = api.load(instance)
        with Progress(f"solving {instance.name}", quiet=quiet) as prog:
            res = api.solve(inst, backend=backend.value, time_limit=time_limit, gap=gap, export=export, contained=True,
                            on_progress=prog.on_solve(inst.objective), work_limit=work_limit, decompose=decompose)
    inst, sol = res.instance, res.solution
    doc = api.result_dict(res)
    if as_json or fmt_ == Format.json:
        print(json.dumps(doc, indent=2))
    elif fmt_ == Format.md:
        from optimizer.present.report import render_markdown

        print(render_markdown(sol, inst))
    else:
        from optimizer.present.report import render_rich

        render_rich(sol, inst, console)
    _write_report(doc, html_out, bom_out, debug, str(instance))
    code = status_code(sol.status, sol.has_design)
    if code == EXIT_OK or sol.status in ("infeasible", "time_limit"):
        raise typer.Exit(code)
    fail(f"{instance}: solver error: {sol.message}", code)


def _write_report(doc: dict, html_out: Optional[Path], bom_out: Optional[Path], debug: bool, where: str) -> None:
    with errors(debug, where):
        if html_out is not None:
            write_output(html_out, api.render_html(doc))
        if bom_out is not None and not doc.get("design"):  # nothing bought: say so, keep the command's exit code
            typer.echo(f"{where}: no design ({doc.get('status')}), so no bill of materials written to {bom_out}", err=True)
        elif bom_out is not None:
            write_output(bom_out, api.bom_csv(doc))


@app.command()
def report(
    result: Path = typer.Argument(..., help="A result file: `dcopt solve FILE --json > r.json`, or a batch's results/*.json."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write the design as one self-contained HTML page."),
    bom_out: Optional[Path] = typer.Option(None, "--bom", help="Write the bill of materials as CSV."),
    debug: bool = debug_option(),
) -> None:
    """Re-render a saved result (no instance file and no solver needed): HTML page and/or bill of materials."""
    if html_out is None and bom_out is None:
        fail("report: give --html OUT.html and/or --bom OUT.csv", EXIT_INVALID)
    with errors(debug, str(result)):
        doc = api.load_result(result)
    _write_report(doc, html_out, bom_out, debug, str(result))


class CompareFormat(str, Enum):
    md = "md"
    json = "json"


@app.command()
def compare(
    results: list[Path] = typer.Argument(..., help="Two or more result files (`dcopt solve --json` or batch results)."),
    fmt_: CompareFormat = typer.Option(CompareFormat.md, "--format", help="md (default) or json."),
    debug: bool = debug_option(),
) -> None:
    """Results side by side: hardware, power, every cost line and each workload's layout; differences marked."""
    with errors(debug, "compare"):
        docs = [api.load_result(p) for p in results]
        out = api.compare_results(docs, fmt_.value)
    print(json.dumps(out, indent=2) if fmt_ == CompareFormat.json else out, end="" if fmt_ == CompareFormat.md else "\n")


class Precision(str, Enum):
    bf16 = "bf16"
    fp8 = "fp8"
    mxfp8 = "mxfp8"
    nvfp4 = "nvfp4"
    int8 = "int8"


class Mode(str, Enum):
    training = "training"
    inference = "inference"


class RecomputeOpt(str, Enum):
    none = "none"
    selective = "selective"
    full = "full"
    partial = "partial"


class ShardingOpt(str, Enum):
    zero1 = "zero1"
    zero2 = "zero2"
    zero3 = "zero3"


class StackOpt(str, Enum):
    megatron_core = "megatron-core"
    nemo = "nemo"
    torchtitan = "torchtitan"
    deepspeed = "deepspeed"
    maxtext = "maxtext"
    megatron_2021 = "megatron-2021"


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
    gpus: Optional[int] = typer.Option(None, help="Training (required): accelerators in the job."),
    tp: Optional[int] = typer.Option(None, "--tp"),
    pp: Optional[int] = typer.Option(None, "--pp"),
    global_batch: Optional[str] = typer.Option(
        None, "--global-batch", help="Training (required): global batch, sequences; or MIN:MAX to let dcopt choose."),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch"),
    vp: Optional[int] = typer.Option(None, "--vp", help="Interleaved pipeline chunks per stage (default: searched)."),
    cp: Optional[int] = typer.Option(None, "--cp", help="Training: context parallel size (default: searched)."),
    ep: Optional[int] = typer.Option(None, "--ep", help="MoE: expert parallel size (training: carved out of dp, "
                                     "default searched; inference: a wide-EP replica of ep accelerators, --tp then its attention TP)."),
    fsdp: Optional[bool] = typer.Option(None, "--fsdp/--no-fsdp", help="Training: full sharding (ZeRO-3) over dp, or not."),
    sharding: Optional[ShardingOpt] = typer.Option(None, "--sharding", help="Training: zero1, zero2 or zero3."),
    stack: StackOpt = typer.Option(StackOpt.megatron_core, "--stack", help="Training: software stack profile."),
    precision: Precision = typer.Option(Precision.bf16),
    recompute: Optional[RecomputeOpt] = typer.Option(None),
    distributed_optimizer: Optional[bool] = typer.Option(None, "--distributed-optimizer/--no-distributed-optimizer"),
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
                               requests_per_s=requests_per_s, **({"ep": ep} if ep is not None else {}),
                               **({"fabric": fabric} if fabric is not None else {}))
        _print_estimate(out, as_json, "Inference estimate (one replica)")
        return
    if gpus is None or global_batch is None:
        fail("estimate: training needs --gpus and --global-batch", EXIT_INVALID)
    if precision == Precision.int8:
        fail("estimate: int8 is a serving precision; train in bf16, fp8, mxfp8 or nvfp4", EXIT_INVALID)
    with errors(debug, "estimate"):
        out = api.estimate(what, accelerator, seq_len=seq_len, fabric=fabric, gpus=gpus, tp=tp, pp=pp,
                           global_batch=global_batch, micro_batch=micro_batch, vp=vp, precision=precision.value,
                           recompute=recompute.value if recompute else None,
                           distributed_optimizer=distributed_optimizer, tokens=tokens,
                           cp=cp, sharding=sharding.value if sharding else None, fsdp=fsdp, stack=stack.value,
                           **({"ep": ep} if ep is not None else {}))
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
    logo: bool = typer.Option(True, "--logo/--no-logo", help="Also refit leaving out each accelerator and model family."),
    debug: bool = debug_option(),
) -> None:
    """Predict every published training run (SC'21 Megatron-LM; 2024-2026 stacks) and print the errors."""
    with errors(debug, "calibrate"):
        rep, modern, serving = api.calibrate(logo=logo)
    if as_json:
        print(json.dumps(dict(rep.to_dict(), modern=modern.to_dict(), serving=serving), indent=2))
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
    console.print(f"2021 file (megatron-2021 stack): mean absolute error {rep.mae_pct:.2f}%, worst "
                  f"{rep.max_abs_error_pct:.2f}% (targets: mean <= 3%, each within 10%)", highlight=False)
    console.print(api.calibration_text(modern, serving), highlight=False, markup=False)


@app.command()
def explain(
    instance: Path = typer.Argument(..., help="Instance file (YAML or JSON)."),
    backend: Backend = backend_option(),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Seconds per MIP solve (soft)."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
    quiet: bool = quiet_option(),
    debug: bool = debug_option(),
) -> None:
    """Why no design exists and the smallest fixes; or, for a solved design, what binds and what one
    more unit of each limit is worth."""
    with errors(debug, str(instance)):
        inst = api.load(instance)
        with Progress(f"explaining {instance.name}", quiet=quiet) as prog:
            prog.update("solving")
            res = api.solve(inst, backend=backend.value, time_limit=time_limit,
                            on_progress=prog.on_solve(inst.objective, "solving: "))
            inst, sol = res.instance, res.solution
            if sol.has_design:
                prog.update("what binds; re-solving with one more unit of each limit")
                binds = api.what_binds(res)
                prices = api.shadow_prices(res, backend=backend.value, time_limit=time_limit)
    if not sol.has_design:
        if as_json:
            print(json.dumps({"status": sol.status, "diagnosis": api.diagnosis_data(res)}, indent=2))
        else:
            console.print(f"{inst.name}: no design exists ({sol.status}).", highlight=False)
            for x in sol.diagnosis:
                console.print(f"    * {x.strip()}" if x.startswith("  ") else f"  - {x}", highlight=False)
        raise typer.Exit(status_code(sol.status, sol.has_design))
    if as_json:
        print(json.dumps({
            "status": sol.status, "objective": sol.objective, "objective_value": sol.objective_value,
            "limits": [{"limit": b.limit, "value": b.value, "bound": b.bound, "slack": b.slack, "unit": b.unit,
                        "tight": b.tight} for b in binds],
            "shadow_prices": [{"limit": p.limit, "per": p.unit, "lp_dual_usd": p.lp_dual_usd,
                               "resolve_delta": p.resolve_delta,
                               "resolve_delta_usd": p.rounded_delta if p.resolve_delta is not None else None,
                               "text": p.text()} for p in prices],
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
