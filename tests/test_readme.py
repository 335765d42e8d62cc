"""Every `smallbox` command of the README runs as written (issue 16: a new user copies them).

The commands are read from the README's code blocks (continuation lines joined, `$ ` prompts and
trailing comments dropped) and run in README order from a fresh folder that holds the
repository's `data/`, `recipes/` and `experiments/`, as in a clone. Commands that train are run
with `--show` (the recipe and model are resolved, nothing trained); the few that need files a
user makes first are listed in NOT_RUN with the reason, and a README command that is neither run
nor listed fails the test, so a new example cannot slip in untried.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# command prefix -> why it is not run here
NOT_RUN = {
    "smallbox experiments run": "trains every pending arm x seed (hours); tests/test_experiments.py runs the runner on tiny matrices",
    "smallbox report runs/yolo/*": "needs the user's training runs; tests/test_report.py runs report on real run folders",
}
SHOW = "smallbox yolo train"  # run with --show: resolves recipe and model, trains nothing


def readme_commands() -> list[str]:
    """The `smallbox ...` command lines of the README's code blocks, in order, with the shell
    variables the README sets before them (`L=folder`) substituted."""
    commands, variables = [], {}
    for block in re.findall(r"```[^\n]*\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip().removeprefix("$ ")).strip()
            if assignment := re.fullmatch(r"([A-Z_]+)=(\S+)", line):
                variables[assignment[1]] = assignment[2]
            elif line.startswith("smallbox "):
                for name, value in variables.items():
                    line = line.replace(f"${name}", value)
                commands.append(line)
    return commands


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A folder laid out like a clone: data, recipes and experiments as links, docs/ writable."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("data", "recipes", "experiments"):
        (folder / name).symlink_to(ROOT / name)
    (folder / "docs").mkdir()
    return folder


def test_readme_has_the_commands_a_new_user_starts_with():
    firsts = {" ".join(c.split()[:2]) for c in readme_commands()}
    for command in ("eda", "convert", "eval", "yolo", "ensemble", "slice", "significance", "compare", "report",
                    "experiments"):
        assert f"smallbox {command}" in firsts, command


def test_every_readme_command_runs_as_written(clone):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "YOLO_OFFLINE": "1"}
    ran = []
    for command in readme_commands():
        if any(command.startswith(prefix) for prefix in NOT_RUN):
            continue
        argv = shlex.split(command)
        if command.startswith(SHOW):
            argv.append("--show")
        argv = _expand(argv, clone)  # as the shell would
        done = subprocess.run([sys.executable, "-m", "smallbox", *argv[1:]], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, command
        ran.append(command)
    firsts = {" ".join(c.split()[:2]) for c in ran}
    assert {"smallbox eda", "smallbox convert", "smallbox eval", "smallbox ensemble", "smallbox slice",
            "smallbox compare", "smallbox report", "smallbox experiments", "smallbox yolo"} <= firsts
    assert (clone / "runs" / "data" / "deeppcb" / "data.yaml").is_file()  # convert wrote what yolo needs


def _expand(argv: list[str], cwd: Path) -> list[str]:
    out = []
    for a in argv:
        if "*" in a:
            matches = sorted(str(p.relative_to(cwd)) for p in cwd.glob(a))
            assert matches, f"{a}: matches nothing"
            out.extend(matches)
        else:
            out.append(a)
    return out
