"""Seeded mutation fuzzer for `dcopt solve` (a script, not collected by pytest).

    python tests/fuzz/mutate.py --files 2000 --seed 1 --workers 2 --time-limit 10 [--keep DIR]

Takes the shipped instances, mutates each copy (deleted keys, wrong types, zero / negative / huge /
NaN / inf values, tiny demands, deep nesting, alias bombs, unsafe tags, bad unicode, duplicate keys,
YAML 1.1 booleans and sexagesimals, long names, many workloads, directories and binaries for
files), runs `dcopt solve --time-limit T --json` on each in its own process with an outer timeout,
and prints the exit-code histogram. A run is bad when it prints a traceback, dies by a signal,
outlives the outer timeout, or exits 0 with a design the verifier did not pass. Bad files are
listed (and kept with --keep) so each can become a regression test. Exit status 1 if any is bad.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DCOPT = [sys.executable, "-c", "from optimizer.cli import app; app()"]

EXTREMES = [0, -1, -1e-9, 1e-9, 1e-300, 1e30, 1e308, 10**30, 2**63, float("inf"), float("-inf"), float("nan"),
            True, False, None, "", "x", "1:30", [], {}, [1, 2], {"a": 1}, 0.5, 3, 1e6]


def _paths(doc, prefix=()):
    """Every (path, value) in a document."""
    out = [(prefix, doc)]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def _set(doc, path, value):
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


def _delete(doc, path):
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    del cur[path[-1]]


def mutate_doc(rng: random.Random, doc) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        paths = [p for p, _ in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        value = _get(doc, path)
        op = rng.random()
        if op < 0.15:
            _delete(doc, path)
        elif op < 0.55 and isinstance(value, (int, float)) and not isinstance(value, bool):
            _set(doc, path, rng.choice([value * rng.choice([0, -1, 1e-6, 1e-3, 1e3, 1e6, 1e12, 1e20]), *EXTREMES]))
        elif op < 0.7:
            _set(doc, path, copy.deepcopy(rng.choice(EXTREMES)))
        elif op < 0.8 and isinstance(value, str):
            _set(doc, path, rng.choice(["", " ", "\x00", "\u202e", "a" * rng.choice([129, 5000]), value + "\n", "é" * 50,
                                        "\ud800", "x/../y", "-", "0"]))
        elif op < 0.9 and isinstance(value, list) and value:
            _set(doc, path, value * rng.choice([0, 2, 50]))
        elif op < 0.95 and isinstance(value, dict):
            value[rng.choice(["colour", "tp", "name", "kind", "1", "power_cap_mw"])] = rng.choice(EXTREMES)
        else:
            _set(doc, path, [value] if rng.random() < 0.5 else {"x": value})
    return doc


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _deep(n: int, flow: bool) -> str:
    if flow:
        return "name: deep\nworkloads: " + "[" * n + "]" * n + "\n"
    return "name: deep\nworkloads:\n" + "".join(" " * (2 * i) + "- \n" for i in range(n))


HANDMADE = [
    ("alias-bomb.yaml", 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f'{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n' for p, c in zip("abcdefgh", "bcdefghi"))
     + "workloads: *i\n"),
    ("unsafe-tag.yaml", "name: !!python/object/apply:os.system ['echo pwned']\nworkloads: []\n"),
    ("unsafe-tag2.yaml", "!!python/object/new:os.system [echo pwned]\n"),
    ("deep-flow.yaml", _deep(1000, True)),
    ("deep-flow-100k.yaml", _deep(100_000, True)),
    ("deep-block.yaml", _deep(1500, False)),
    ("empty.yaml", ""),
    ("null.yaml", "~\n"),
    ("scalar.yaml", "42\n"),
    ("list.yaml", "- a\n- b\n"),
    ("bad-utf8.yaml", b"name: \xff\xfe\nworkloads: []\n"),
    ("binary.yaml", bytes(range(256)) * 4),
    ("nul.yaml", b"name: a\x00b\n"),
    ("surrogate.json", '{"name": "\\ud800", "workloads": []}'),
    ("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("bigint.json", '{"name": "x", "budget": {"capex_usd": 1' + "0" * 5000 + "}}"),
    ("nan.json", '{"name": "x", "facility": {"power_cap_mw": NaN}}'),
    ("dup.json", '{"name": "a", "name": "b"}'),
    ("not.json", "{'name': 1"),
]


def build_corpus(out: Path, n: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    bases = []
    for f in sorted((ROOT / "instances").glob("*.yaml")):
        bases.append(yaml.safe_load(f.read_text()))
    files: list[Path] = []
    for name, text in HANDMADE:
        p = out / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        files.append(p)
    (out / "a-directory.yaml").mkdir()
    files.append(out / "a-directory.yaml")
    files.append(out / "missing.yaml")
    for count, days in ((900, 1), (3000, 60), (200, 60)):  # many (infeasible) workloads
        doc = copy.deepcopy(bases[[d.get("name") for d in bases].index("llama3-70b-20mw")])
        w = doc["workloads"][0]
        doc["workloads"] = [{**w, "name": f"w{j}", "deadline_days": days} for j in range(count)]
        p = out / f"many-{count}-{days}d.yaml"
        p.write_text(yaml.safe_dump(doc))
        files.append(p)
    i = 0
    while len(files) < n:
        i += 1
        doc = mutate_doc(rng, rng.choice(bases))
        kind = rng.random()
        if kind < 0.75:
            p = out / f"m{i:05d}.yaml"
            try:
                text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
            except yaml.YAMLError:
                continue
            if rng.random() < 0.05:  # YAML 1.1 surprises and duplicate keys, as text
                text = rng.choice([text.replace(": 60\n", ": yes\n", 1), text.replace(": 60\n", ": 1:30\n", 1),
                                   text.replace("name:", "name: dup\nname:", 1), text.replace(": 5\n", ": on\n", 1)])
            p.write_bytes(text.encode("utf-8", "surrogatepass"))
        else:
            p = out / f"m{i:05d}.json"
            text = json.dumps(doc)  # keeps NaN/Infinity and escapes lone surrogates
            p.write_text(text)
        files.append(p)
    return files


def run_one(path: Path, time_limit: float, outer: float) -> dict:
    t0 = time.monotonic()
    try:
        p = subprocess.run(DCOPT + ["solve", str(path), "--time-limit", str(time_limit), "--json"], cwd=ROOT,
                           capture_output=True, timeout=outer, env={**os.environ, "_TYPER_STANDARD_TRACEBACK": "1"})
    except subprocess.TimeoutExpired:
        return _classify(path, "hang", b"", b"", time.monotonic() - t0)
    return _classify(path, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def _classify(path: Path, rc, out: bytes, err: bytes, wall: float) -> dict:
    rec = {"path": str(path), "rc": rc, "wall_s": round(wall, 2)}
    text = err.decode(errors="replace")
    bad = None
    if rc == "hang":
        bad = "hang"
    elif "Traceback (most recent call last)" in text:
        bad = "traceback"
    elif rc < 0:
        bad = f"signal {-rc}"
    elif rc not in (0, 1, 2, 3, 4):
        bad = f"exit {rc}"
    elif rc == 0:
        try:
            if not json.loads(out).get("verified"):
                bad = "unverified"
        except ValueError:
            bad = "exit 0 without JSON"
    elif rc == 1:
        rec["message"] = text.strip().splitlines()[-1][:300] if text.strip() else ""
        if "verif" in text.lower():
            bad = "unverified"
    if bad:
        rec["bad"] = bad
        rec["stderr_tail"] = text[-1500:]
    return rec


def run_forked(files: list[Path], time_limit: float, outer: float, workers: int):
    """Yield a record per file. One fork per file from this process, which has imported dcopt once
    (a fresh interpreter per file costs ~2 s of imports on a busy machine); the child runs the CLI
    exactly as `dcopt solve` would and its exit status or signal is read back like a subprocess's."""
    from optimizer.cli import app  # noqa: F401 - imported before forking

    os.environ["_TYPER_STANDARD_TRACEBACK"] = "1"
    tmp = Path(tempfile.mkdtemp(prefix="dcopt-fuzz-out-"))
    pending = list(enumerate(files))
    running: dict[int, tuple] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                k, f = pending.pop(0)
                o, e = tmp / f"{k}.out", tmp / f"{k}.err"
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # child
                    code = 1
                    try:
                        fo = os.open(o, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                        fe = os.open(e, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                        os.dup2(fo, 1)
                        os.dup2(fe, 2)
                        from optimizer.cli import app

                        try:
                            app(["solve", str(f), "--time-limit", str(time_limit), "--json"], prog_name="dcopt")
                            code = 0
                        except SystemExit as exc:
                            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                    except BaseException:
                        import traceback

                        traceback.print_exc()
                    finally:
                        try:
                            sys.stdout.flush()
                            sys.stderr.flush()
                        finally:
                            os._exit(code)
                running[pid] = (k, f, time.monotonic(), o, e)
            time.sleep(0.02)
            for pid, (k, f, t0, o, e) in list(running.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                wall = time.monotonic() - t0
                if done == 0 and wall < outer:
                    continue
                if done == 0:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    rc = "hang"
                else:
                    rc = os.waitstatus_to_exitcode(status)
                del running[pid]
                yield _classify(f, rc, o.read_bytes(), e.read_bytes(), wall)
                o.unlink(missing_ok=True)
                e.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--outer-timeout", type=float, default=None, help="default: time limit + 20 s")
    ap.add_argument("--keep", type=Path, default=None, help="copy bad files here")
    ap.add_argument("--log", type=Path, default=None, help="one JSON line per file")
    ap.add_argument("--subprocess", action="store_true", help="a fresh interpreter per file (slower; default: fork)")
    a = ap.parse_args(argv)
    outer = a.outer_timeout or a.time_limit + 20
    tmp = Path(tempfile.mkdtemp(prefix="dcopt-fuzz-"))
    try:
        files = build_corpus(tmp, a.files, a.seed)
        t0 = time.monotonic()
        hist: collections.Counter = collections.Counter()
        bad: list[dict] = []
        walls: list[float] = []
        log = open(a.log, "w") if a.log else None
        with ThreadPoolExecutor(a.workers) as ex:
            recs = ex.map(lambda f: run_one(f, a.time_limit, outer), files) if a.subprocess else \
                run_forked(files, a.time_limit, outer, a.workers)
            for k, rec in enumerate(recs, 1):
                hist[rec["rc"]] += 1
                walls.append(rec["wall_s"])
                if log:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                if "bad" in rec:
                    bad.append(rec)
                    print(f"BAD {rec['bad']}: {rec['path']}\n{rec.get('stderr_tail', '')}", file=sys.stderr)
                    if a.keep:
                        a.keep.mkdir(parents=True, exist_ok=True)
                        src = Path(rec["path"])
                        if src.is_file():
                            shutil.copy(src, a.keep / src.name)
                if k % 100 == 0:
                    print(f"  {k}/{len(files)} files, {time.monotonic() - t0:.0f} s", file=sys.stderr)
        kinds = collections.Counter(r["bad"] for r in bad)
        print(f"{len(files)} files, seed {a.seed}, --time-limit {a.time_limit:g}, {time.monotonic() - t0:.0f} s "
              f"(slowest file {max(walls):.1f} s)")
        print("exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(hist.items(), key=lambda kv: str(kv[0]))))
        print(f"tracebacks: {kinds['traceback']}, signals: {sum(v for k, v in kinds.items() if k.startswith('signal'))}, "
              f"hangs: {kinds['hang']}, unverified designs: {kinds['unverified']}, other: "
              f"{sum(kinds.values()) - kinds['traceback'] - kinds['hang'] - kinds['unverified'] - sum(v for k, v in kinds.items() if k.startswith('signal'))}")
        return 1 if bad else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
