"""Run every benchmark in this folder (``bench_*.py``) one after another, in one process each.

Each exits 1 when one of its parity checks differs or a target is missed (its last lines say
which); this runner lists those benchmarks at the end and exits 1 if there is any.
"""

import subprocess
import sys
import time
from pathlib import Path

results = []
for script in sorted(Path(__file__).parent.glob("bench_*.py")):
    print(f"\n=== {script.name}", flush=True)
    start = time.monotonic()
    rc = subprocess.call([sys.executable, str(script)])
    results.append((script.name, rc, time.monotonic() - start))
print("\n=== summary")
for name, rc, seconds in results:
    print(f"{'ok    ' if rc == 0 else f'FAILED (exit {rc})':<16} {name:<26} {seconds:6.0f} s")
failed = [name for name, rc, _ in results if rc != 0]
if failed:
    sys.exit(f"failed: {', '.join(failed)} (see each one's missed checks above)")
