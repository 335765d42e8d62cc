"""Run one piece of work on a forked child process while this process goes on with another.

Why not threads: the work smallbox splits this way (creating label files, reading image headers)
is mostly system calls, and the work left here is Python. In one process a thread coming back
from each system call waits for the GIL while another thread computes, so two threads ran no
faster than one (``bench/bench_convert.py``). A forked child has its own GIL, and it sees this
process's data as it was at the fork (copy-on-write): nothing is sent to it, only its result
comes back through a pipe.

Where fork is unavailable or unsafe (Windows, macOS), or other threads run in this process (fork
copies only the calling thread, with whatever locks the others hold), the work runs here when
its result is asked for: the same result, later.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from .errors import SmallboxError

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def can_fork() -> bool:
    """On Linux, with no other thread running here (tqdm's idle monitor is stopped first). Not on
    macOS, where Python itself stopped forking by default: system libraries there may crash a
    forked child."""
    if not sys.platform.startswith("linux"):
        return False
    _stop_idle_tqdm_monitor()
    return threading.active_count() == 1


def _stop_idle_tqdm_monitor():
    """tqdm (4.70) keeps its monitor thread after the last bar closes, so once any bar was shown
    this process would never fork again. Without a bar the monitor only waits for its next
    wake-up; stopping it is what tqdm does when its last bar closes, and the next bar starts a
    new one."""
    tqdm = sys.modules.get("tqdm.std")
    if tqdm is None:
        return
    bars = tqdm.tqdm
    with bars.get_lock():
        monitor = getattr(bars, "monitor", None)
        if monitor is None or getattr(bars, "_instances", None):
            return
        bars.monitor = None
    monitor.exit()  # wakes it and waits for it to end


@contextmanager
def on_child_process(job: Callable[[], T], what: str) -> Iterator[Callable[[], T]]:
    """Start ``job()`` on a forked child; yield a function that waits for it and returns its
    value, or raises the exception it raised (Ctrl-C included). Leaving the block before asking
    stops the child. ``what`` names the work in the message of a child that died without a
    result (killed, out of memory)."""
    if not can_fork():
        yield job
        return
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(job, send, what, os.getpid()), name=f"smallbox: {what}", daemon=True)
    child.start()
    send.close()

    def result() -> T:
        try:
            outcome, value = receive.recv()
        except EOFError:
            child.join()
            raise SmallboxError(f"the process {what} ended (exit code {child.exitcode}) without a result: killed, out of memory?") from None
        if outcome == "error":
            raise value
        return value

    try:
        yield result
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        receive.close()


def _run_and_send(job, send, what: str, parent: int):
    """In the child: the job's value, or the exception it raised, goes back through ``send``.
    Ctrl-C is left to the parent, which stops the child; and the child ends with its parent,
    however that ends (even killed), rather than writing on into a folder nobody will keep."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent(parent)
    try:
        message = ("ok", job())
    except BaseException as e:  # an explicit KeyboardInterrupt too: the parent re-raises it
        message = ("error", _sendable(e))
    try:
        send.send(message)
    except Exception as e:  # a value that does not pickle
        send.send(("error", RuntimeError(f"{what}: the result could not be sent back ({type(e).__name__}: {e})")))


def _sendable(error: BaseException) -> BaseException:
    """``error`` with the child's traceback as a note (shown where a traceback is printed), or,
    where it would not come back whole through pickle, a RuntimeError saying what it was."""
    if hasattr(error, "add_note"):  # Python 3.11
        error.add_note("raised on the child process:\n" + "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _end_with_parent(parent: int):
    """Linux: SIGKILL this process when its parent ends (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before prctl
        os._exit(1)
