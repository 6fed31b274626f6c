"""The repository names nothing outside itself: a user who clones it has only what git tracks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not match itself.
OUTSIDE = re.compile(
    r"\.\./" + "shared"                      # the sibling reference folder of the development setup
    + r"|(?<![\w.~-])/" + "work" + r"(?![\w.-])"  # an absolute path under the development machine's work folder
)


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.decode().split("\0") if p]


def outside_references(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]


def test_pattern_catches_outside_paths_and_spares_lookalikes():
    bad = ["see ../" "shared" "/notes.md", "(/" "work" "/notes.md)", "cd /" "work"]
    good = ["the /workloads/0 field", "framework/x", "a shared cache", "~/work/x", "network/workload"]
    assert [bool(outside_references(s)) for s in bad] == [True, True, True]
    assert [bool(outside_references(s)) for s in good] == [False] * len(good)


def test_no_tracked_file_names_a_path_outside_the_repository():
    found = []
    for path in tracked_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        found += [f"{path.relative_to(ROOT)}:{n}: {line}" for n, line in outside_references(text)]
    assert not found, "files name paths outside the repository:\n" + "\n".join(found)
