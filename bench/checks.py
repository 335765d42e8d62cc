"""How every benchmark ends: one line per check (met / MISSED), and the exit code `make bench`
counts (1 when any check was missed, naming them on stderr)."""

from __future__ import annotations

import sys


def report_checks(bench: str, checks: list[tuple[str, bool]]) -> int:
    """Print each (text, ok) check; return the benchmark's exit code."""
    for text, ok in checks:
        print(f"{'met   ' if ok else 'MISSED'} {text}")
    missed = [text for text, ok in checks if not ok]
    if missed:
        print(f"{bench}: {len(missed)} check(s) missed: " + "; ".join(missed), file=sys.stderr)
    return 1 if missed else 0
