"""`make mutants`: plausible one-line bugs that the test suite must catch.

Each mutant of ``tests/mutants.yaml`` (file, exact original snippet, mutated snippet, why it is
plausible, the test files that must kill it) is put into its own temporary copy of the
repository, and the named tests run there (``python -m pytest -x -q``, PYTHONPATH = the copy,
no bytecode written). A mutant is

- killed: a test failed;
- survived: every named test passed (the suite misses that bug);
- snippet-not-found: the original snippet is not in the file exactly once (the code moved on:
  update the entry).

First, the named tests run once on an unmutated copy: a failure there would make every mutant
look killed. Exit 0 only when every mutant is killed.

    python scripts/mutants.py                  # all of tests/mutants.yaml
    python scripts/mutants.py --only NAME ...  # some of them
    python scripts/mutants.py --list           # names and files, nothing run
    python scripts/mutants.py --check          # every snippet still there exactly once, nothing run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "tests" / "mutants.yaml"
# what the tests need is the working tree (including untracked files such as bundled models);
# environments, outputs and caches stay behind
SKIP = shutil.ignore_patterns(".git", ".venv", "runs", "build", "out", ".whl", ".pytest_cache", ".ruff_cache",
                              "__pycache__", "*.egg-info", "*.pyc")
LINKED = ("data",)  # never mutated: hard-linked into the copy rather than copied
KEYS = {"name", "file", "original", "mutated", "why", "tests"}


def load_mutants(path: Path) -> list[dict]:
    mutants = yaml.safe_load(path.read_text(encoding="utf-8"))
    names = set()
    for k, m in enumerate(mutants):
        missing = KEYS - set(m)
        if missing or set(m) - KEYS:
            sys.exit(f"{path}: entry {k}: needs exactly the keys {sorted(KEYS)} (missing {sorted(missing)})")
        if m["name"] in names:
            sys.exit(f"{path}: mutant name {m['name']!r} repeats")
        if m["original"] == m["mutated"]:
            sys.exit(f"{path}: mutant {m['name']!r}: the mutated snippet is the original")
        if Path(m["file"]).parts[0] in LINKED:
            sys.exit(f"{path}: mutant {m['name']!r}: files under {LINKED} are hard-linked, not copied")
        names.add(m["name"])
    return mutants


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def make_copy(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"smallbox-mutant-{prefix}-"))
    for entry in sorted(ROOT.iterdir()):
        if SKIP(str(ROOT), [entry.name]):
            continue
        if entry.is_dir():
            copy = _link_or_copy if entry.name in LINKED else shutil.copy2
            shutil.copytree(entry, root / entry.name, ignore=SKIP, copy_function=copy, symlinks=True)
        else:
            shutil.copy2(entry, root / entry.name)
    return root


def environment(copy: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    # the copy's smallbox, not the editable install of the working tree: checked, not assumed, from
    # another folder (as the `python -m smallbox` subprocesses of some tests run), so that it is
    # PYTHONPATH that finds the copy and not the current folder
    found = subprocess.run([sys.executable, "-c", "import smallbox; print(smallbox.__file__)"], cwd=tempfile.gettempdir(),
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"the copy's tests would import smallbox from {found}, not from {copy}: fix PYTHONPATH")
    return env


def snippet_count(root: Path, mutant: dict) -> int:
    path = root / mutant["file"]
    return path.read_text(encoding="utf-8").count(mutant["original"]) if path.is_file() else 0


def apply(copy: Path, mutant: dict) -> bool:
    """Write the mutated file into the copy (a new file, never through a link); False when the
    original snippet is not there exactly once."""
    if snippet_count(copy, mutant) != 1:
        return False
    path = copy / mutant["file"]
    text = path.read_text(encoding="utf-8")
    path.unlink()
    path.write_text(text.replace(mutant["original"], mutant["mutated"]), encoding="utf-8")
    return True


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, str, float]:
    """``(outcome, detail, seconds)``: outcome ``passed`` / ``failed`` / ``error`` / ``timeout``."""
    env = environment(copy)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", f"over {timeout:.0f} s", time.monotonic() - start
    seconds = time.monotonic() - start
    if done.returncode == 0:
        return "passed", "", seconds
    if done.returncode == 1:
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
        return "failed", failed[0] if failed else "", seconds
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return "error", f"pytest exit {done.returncode}: {' | '.join(tail)}", seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=Path, default=LIST, help="the mutant list (default: %(default)s)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--check", action="store_true", help="only check that every original snippet is there once")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the tests on an unmutated copy")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per mutant (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)

    mutants = load_mutants(args.mutants)
    if args.only:
        unknown = set(args.only) - {m["name"] for m in mutants}
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m["name"] in args.only]
    if args.list:
        for m in mutants:
            print(f"{m['name']:<44} {m['file']}  <- {' '.join(m['tests'])}")
        return 0
    if args.check:
        gone = [m["name"] for m in mutants if snippet_count(ROOT, m) != 1]
        for name in gone:
            print(f"snippet-not-found  {name}")
        print(f"{len(mutants) - len(gone)} of {len(mutants)} snippets found once")
        return 1 if gone else 0

    copies = []
    try:
        if not args.no_baseline:
            tests = list(dict.fromkeys(t for m in mutants for t in m["tests"]))
            copies.append(make_copy("baseline"))
            outcome, detail, seconds = run_tests(copies[-1], tests, args.timeout * 2)
            print(f"baseline (no mutant): {outcome} {detail} ({seconds:.0f} s)", flush=True)
            if outcome != "passed":
                print("the named tests fail without a mutant: fix them first", file=sys.stderr)
                return 2
        results = []
        for m in mutants:
            copies.append(make_copy(m["name"]))
            if not apply(copies[-1], m):
                results.append((m["name"], "snippet-not-found", m["file"], 0.0))
            else:
                outcome, detail, seconds = run_tests(copies[-1], m["tests"], args.timeout)
                status = {"failed": "killed", "passed": "survived", "timeout": "killed (timeout)"}.get(outcome, "error")
                results.append((m["name"], status, detail, seconds))
            name, status, detail, seconds = results[-1]
            print(f"{status:<18} {name:<44} {seconds:5.0f} s  {detail}", flush=True)
            if not args.keep:
                shutil.rmtree(copies.pop(), ignore_errors=True)
    finally:
        for c in copies if not args.keep else []:
            shutil.rmtree(c, ignore_errors=True)
        if args.keep and copies:
            print(f"copies kept under {Path(copies[0]).parent}")

    bad = [r for r in results if not r[1].startswith("killed")]
    print(f"\n{len(results) - len(bad)} of {len(results)} mutants killed"
          + (f"; not killed: {', '.join(f'{n} ({s})' for n, s, _, _ in bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
