"""smallbox.childprocess: work on a forked child, its result or its error back here, and the
in-process path where fork is not safe."""

from __future__ import annotations

import errno
import io
import os
import signal
import threading
import time

import pytest

from smallbox import childprocess
from smallbox.childprocess import on_child_process
from smallbox.errors import SmallboxError


def test_the_work_runs_on_another_process_and_its_value_comes_back():
    data = {"rows": list(range(1000))}  # seen by the child as it was at the fork, not sent
    with on_child_process(lambda: (os.getpid(), sum(data["rows"])), "adding") as result:
        pid, total = result()
    assert pid != os.getpid() and total == sum(range(1000))


@pytest.mark.parametrize("error", [SmallboxError("images/x.png: cannot read image"),
                                   OSError(errno.ENOSPC, "No space left on device", "/out/labels/train/x.txt"),
                                   KeyboardInterrupt()])
def test_the_childs_error_is_raised_here_with_its_type_and_message(error):
    def fail():
        raise error

    with on_child_process(fail, "failing") as result, pytest.raises(type(error)) as raised:
        result()
    assert str(raised.value) == str(error)
    if isinstance(error, OSError):
        assert (raised.value.errno, raised.value.filename) == (error.errno, error.filename)


def test_a_child_killed_without_a_result_is_an_error_naming_the_work():
    def killed():
        os.kill(os.getpid(), signal.SIGKILL)

    with on_child_process(killed, "writing label files") as result, pytest.raises(SmallboxError, match="writing label files ended .*-9"):
        result()


def test_leaving_the_block_early_stops_the_child(tmp_path):
    marker = tmp_path / "still-running"

    def slow():
        time.sleep(3)
        marker.write_text("the child was not stopped")

    with pytest.raises(RuntimeError):
        with on_child_process(slow, "sleeping"):
            raise RuntimeError("the parent failed")
    time.sleep(3.5)
    assert not marker.exists()


def test_with_other_threads_running_the_work_runs_here_when_asked():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not childprocess.can_fork()
        calls = []
        with on_child_process(lambda: calls.append(os.getpid()) or "done", "in-process") as result:
            assert calls == []  # not before its result is asked for
            assert result() == "done"
        assert calls == [os.getpid()]
    finally:
        stop.set()
        other.join()


def test_an_idle_tqdm_monitor_does_not_keep_the_work_from_forking():
    from tqdm import tqdm

    with tqdm(total=2, disable=False, file=io.StringIO()) as bar:  # starts tqdm's monitor thread
        bar.update(2)
        assert not childprocess.can_fork()  # a bar is open: its monitor is not idle
    with on_child_process(os.getpid, "reporting its pid") as result:
        assert result() != os.getpid()
    with tqdm(total=1, file=io.StringIO()) as bar:  # and tqdm starts a new monitor with the next bar
        bar.update(1)
        assert tqdm.monitor is not None and tqdm.monitor.is_alive()


def test_an_exception_that_would_not_come_back_whole_is_said_in_a_runtime_error():
    class NeedsTwo(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a} and {b}")

    def fail():
        raise NeedsTwo("x", "y")

    with on_child_process(fail, "failing") as result, pytest.raises(RuntimeError, match="NeedsTwo: x and y"):
        result()


def test_the_childs_traceback_comes_back_as_a_note():
    def fail():
        raise ValueError("deep in the child")

    with on_child_process(fail, "failing") as result, pytest.raises(ValueError) as raised:
        result()
    notes = "".join(getattr(raised.value, "__notes__", []))
    assert "raised on the child process" in notes and "in fail" in notes


def test_the_child_ends_with_its_parent_even_a_killed_one(tmp_path):
    """A parent killed mid-way (kill -9) leaves no child writing on into its temporary folder."""
    import subprocess
    import sys

    pid_file = tmp_path / "child.pid"
    script = f"""
import os, time
from smallbox.childprocess import on_child_process
def work():
    open({str(pid_file)!r}, "w").write(str(os.getpid()))
    time.sleep(60)
with on_child_process(work, "sleeping") as result:
    result()
"""
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    for _ in range(100):
        if not _running(child):
            break
        time.sleep(0.05)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
