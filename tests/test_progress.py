"""Live solve progress: the solvers' log lines parsed for incumbent and bound, the events a solve's
`on_progress` hears (in the objective's units, the last one the answer), and a CLI that prints
exactly the same when stderr is not a terminal."""

import io
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from optimizer import api, fmt
from optimizer.cli import app
from optimizer.cli.common import Progress
from optimizer.mip.backends.progress import CbcLog, HighsLog, Reporter, ScipLog
from optimizer.mip.data import build_data
from optimizer.solving.pipeline import prepare, prepare_services, solve_mip

ROOT = Path(__file__).parent.parent
SMALL = ROOT / "instances" / "edge-small-servers.yaml"

# Recorded from this machine's solvers (SCIP 9 via ortools 9.15, HiGHS via ortools, CBC 2.10).
SCIP = """\
 time | node  | left  |LP iter|LP it/n|mem/heur|mdpt |vars |cons |rows |cuts |sepa|confs|strbr|  dualbound   | primalbound  |  gap   | compl. 
  0.0s|     1 |     0 |    10 |     - |  6085k |   0 | 352 | 326 | 324 |   0 |  0 |   2 |   0 | 5.600000e+00 |      --      |    Inf | unknown
p 0.0s|     1 |     0 |    10 |     - | vbounds|   0 | 352 | 326 | 324 |   0 |  0 |   2 |   0 | 5.600000e+00 | 1.884027e+02 |3264.33%| unknown
L 0.2s|     1 |     0 |  1196 |     - |    rens|   0 | 352 | 360 | 403 | 145 | 23 |  36 |   0 | 4.773721e+01 | 4.789853e+01 |   0.34%| unknown
Primal Bound       : +4.78985256180480e+01 (15 solutions)
Dual Bound         : +4.78985256180480e+01
"""
HIGHS = """\
Src  Proc. InQueue |  Leaves   Expl. | BestBound       BestSol              Gap |   Cuts   InLp Confl. | LpIters     Time
         0       0         0   0.00%   -5.44516        inf                  inf        0      0      0         0     0.0s
 R       0       0         0   0.00%   47.66212088     47.89852562        0.49%      359     63    286       400     0.1s
        19       0         9 100.00%   47.89482919     47.89852562        0.01%     2109     55    260      4116     0.6s
  Primal bound      47.898525618
  Dual bound        47.8948291899
"""
CBC = """\
Continuous objective value is 45.5389 - 0.00 seconds
Cbc0012I Integer solution of 50.117083 found by DiveCoefficient after 0 iterations and 0 nodes (0.05 seconds)
Cbc0013I At root node, 38 cuts changed objective from 46.602652 to 47.706054 in 100 passes
Cbc0010I After 0 nodes, 1 on tree, 49.183594 best solution, best possible 47.706054 (0.80 seconds)
Cbc0010I After 100 nodes, 9 on tree, 1e+50 best solution, best possible 47.8 (1.80 seconds)
Cbc0001I Search completed - best objective 47.89852561804804, took 3522 iterations and 44 nodes (1.12 seconds)
"""


def _parsed(parser, text):
    return [got for line in text.splitlines() if (got := parser.feed(line)) is not None]


def test_scip_lines_give_primal_and_dual_bound_by_the_header():
    assert _parsed(ScipLog(), SCIP) == [(None, 5.6), (188.4027, 5.6), (47.89853, 47.73721),
                                        (47.898525618048, None), (None, 47.898525618048)]
    assert ScipLog().feed(SCIP.splitlines()[2]) is None  # no header seen yet: columns unknown


def test_highs_lines_give_best_solution_and_best_bound():
    assert _parsed(HighsLog(), HIGHS) == [(None, -5.44516), (47.89852562, 47.66212088), (47.89852562, 47.89482919),
                                          (47.898525618, None), (None, 47.8948291899)]


def test_cbc_lines_give_incumbents_and_bounds():
    assert _parsed(CbcLog(), CBC) == [(None, 45.5389), (50.117083, None), (None, 47.706054),
                                      (49.183594, 47.706054), (None, 47.8), (47.89852561804804, None)]


def test_reporter_keeps_the_best_of_each_adds_the_constant_and_throttles_bound_only_news():
    heard = []
    rep = Reporter(lambda inc, b: heard.append((inc, b)), CbcLog(), constant=10.0, every_s=3600)
    rep.lines(CBC.splitlines())
    # every better incumbent is reported at once; bound-only news waits for `every_s` (the first passes)
    assert heard == [(None, 55.5389), (60.117083, 55.5389), (59.183594, 57.706054), (57.89852561804804, 57.8)]


@pytest.mark.parametrize("backend", ["ortools-scip", "pulp"])
def test_a_failing_listener_does_not_stop_the_solve(backend):
    inst = api.load(SMALL)
    _, pruned = prepare(inst)
    data = build_data(inst, pruned, prepare_services(inst))
    calls = []

    def boom(inc, bound):
        calls.append(inc)
        raise RuntimeError("display broke")

    res, _, _ = solve_mip(data, inst.objective, backend, None, None, progress=boom)
    assert calls and res.status.value == "optimal"


def _events(backend: str, contained: bool = False):
    events = []
    res = api.solve(SMALL, backend=backend, on_progress=events.append, contained=contained)
    return res.solution, events


@pytest.mark.parametrize("backend", ["ortools-scip", "ortools-highs", "pulp"])
def test_solve_reports_incumbent_and_bound_then_its_answer(backend):
    sol, events = _events(backend)
    live = [e for e in events if not e.final and e.incumbent is not None and e.bound is not None]
    assert live, events
    assert all(e.incumbent >= e.bound - 1e-6 * abs(e.incumbent) for e in live)
    # the solver's own last word is the optimum, in USD (not the MIP's $M)
    assert min(e.incumbent for e in live) == pytest.approx(sol.objective_value, rel=1e-6)
    last = events[-1]
    assert last.final and sum(e.final for e in events) == 1
    assert last.incumbent == sol.objective_value and last.bound == sol.best_bound and last.gap == sol.gap
    assert last.status == sol.status == "optimal"
    assert [e.elapsed_s for e in events] == sorted(e.elapsed_s for e in events)


def test_contained_solve_passes_events_from_the_child_process():
    sol, events = _events("ortools", contained=True)
    assert events[-1].final and events[-1].incumbent == sol.objective_value
    assert any(not e.final and e.incumbent is not None for e in events)


def test_progress_line_text():
    assert fmt.solve_progress("min_tco", 50.2e6, 49.8e6, 0.008, 12) == \
        "incumbent $50.20M · bound $49.80M · gap 0.80% · 12 s"
    assert fmt.solve_progress("min_power", None, 1500.0, None) == "no design yet · bound 1.500 MW"


def test_progress_shows_solver_events_only_on_a_terminal():
    buf = io.StringIO()
    with Progress("solving x", stream=Console(file=buf, force_terminal=True, width=150)) as p:
        show = p.on_solve("min_tco")
        show(api.ProgressEvent(1.0, 50.2e6, 49.8e6, 0.008))
    assert "incumbent $50.20M · bound $49.80M · gap 0.80%" in buf.getvalue()
    buf = io.StringIO()
    with Progress("solving x", stream=Console(file=buf, force_terminal=True, width=150)) as p:
        p.on_solve("min_tco")(api.ProgressEvent(2.0, None, None, None, final=True, status="infeasible"))
    assert "infeasible; looking for the smallest changes" in buf.getvalue()  # the diagnosis's re-solves follow
    with Progress("solving x", stream=Console(file=io.StringIO(), force_terminal=False)) as p:
        assert p.on_solve("min_tco") is None  # nobody listens: the solve runs as without progress
    with Progress("solving x", quiet=True, stream=Console(file=io.StringIO(), force_terminal=True)) as p:
        assert p.on_solve("min_tco") is None


def test_cli_output_is_unchanged_when_stderr_is_not_a_terminal(monkeypatch):
    real, listeners = api.solve, []

    def solve(inst, **kw):  # in this process (faster than the child), recording who listens
        listeners.append(kw.pop("on_progress"))
        return real(inst, **{**kw, "contained": False})

    monkeypatch.setattr(api, "solve", solve)
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    plain = runner.invoke(app, ["solve", str(SMALL), "--json"])
    quiet = runner.invoke(app, ["solve", str(SMALL), "--json", "--quiet"])
    assert plain.exit_code == quiet.exit_code == 0
    assert listeners == [None, None]  # nobody listens: the solve runs exactly as without progress
    timings = ('"runtime_s"', '"first_design_s"', '"prepare"', '"build"', '"start"', '"improve"', '"seconds"',
               '"solve"', '"verify"')
    strip = lambda out: [ln for ln in out.splitlines() if not any(t in ln for t in timings)]  # noqa: E731
    assert strip(plain.stdout) == strip(quiet.stdout)
    assert "incumbent" not in plain.stderr and "solving" not in plain.stderr
