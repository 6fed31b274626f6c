"""CLI rough edges: progress on stderr only for a terminal (and never with --quiet), estimate names
its required flags, and dc.batch from an unguarded plain script says to guard it."""

import io
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from optimizer.cli import app
from optimizer.cli.common import Progress

ROOT = Path(__file__).parent.parent
runner = CliRunner()


def _run_progress(terminal: bool, quiet: bool) -> str:
    buf = io.StringIO()
    err = Console(file=buf, force_terminal=terminal, width=100)
    with Progress("solving x.yaml", quiet=quiet, stream=err) as p:
        p.update("incumbent $1.00M")
        time.sleep(0.15)
    return buf.getvalue()


def test_progress_shows_on_a_terminal_with_elapsed_time():
    out = _run_progress(terminal=True, quiet=False)
    assert "solving x.yaml" in out and "0:00:0" in out and "incumbent $1.00M" in out


def test_progress_is_silent_when_quiet_or_not_a_terminal():
    assert _run_progress(terminal=True, quiet=True) == ""
    assert _run_progress(terminal=False, quiet=False) == ""


def test_commands_that_take_long_accept_quiet():
    for cmd in ("solve", "explain", "sweep", "pareto", "batch"):
        assert "--quiet" in runner.invoke(app, [cmd, "--help"], env={"COLUMNS": "200"}).output, cmd


def test_estimate_names_the_flags_it_requires():
    r = runner.invoke(app, ["estimate", "--model", "llama3-8b"])
    assert r.exit_code == 2 and "--gpus" in r.output and "--global-batch" in r.output
    assert "(required)" in runner.invoke(app, ["estimate", "--help"], env={"COLUMNS": "200"}).output


def _script(tmp_path, body: str) -> subprocess.CompletedProcess:
    f = tmp_path / "script.py"
    f.write_text(body)
    return subprocess.run([sys.executable, str(f)], cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_batch_from_an_unguarded_script_says_to_guard_it(tmp_path):
    r = _script(tmp_path, "from optimizer import api as dc\n"
                          f"dc.batch([{str(ROOT / 'instances/gpt3-175b-a100.yaml')!r}], workers=1)\n")
    assert r.returncode != 0
    assert 'if __name__ == "__main__":' in r.stderr and "re-runs your script" in r.stderr


def test_guarded_call_passes_the_check(tmp_path):
    r = _script(tmp_path, "from optimizer import api as dc\n"
                          "def main():\n    dc._check_main_guard()\n    print('ok')\n"
                          "if __name__ == '__main__':\n    main()\n")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
