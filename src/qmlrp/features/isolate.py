"""Run crash-prone native code (RDKit perception) in a forked child, so a crash costs one item.

:func:`map_isolated` applies a function to each item in a child process (``os.fork``: no re-import,
a few milliseconds per call; allowed inside pool workers too) that streams results back through a
pipe. If the child dies (a segmentation fault in C++), the item it was working on is reported as
:class:`Crashed` and a new child continues with the next one; the caller and the other items are
unaffected. The child's stdout/stderr go to /dev/null unless ``quiet=False`` (C++ libraries print
there directly).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")


class Crashed(Exception):
    """The child process died on this item (``signal_number`` or ``exitcode`` says how)."""

    def __init__(self, signal_number: int | None, exitcode: int | None) -> None:
        self.signal_number = signal_number
        self.exitcode = exitcode
        how = signal.Signals(signal_number).name if signal_number else f"exit status {exitcode}"
        super().__init__(f"the perceiving process crashed ({how})")


def _child(fn: Callable[[Any], Any], items: Sequence[Any], start: int, conn: Connection, quiet: bool) -> None:
    if quiet:
        faulthandler.disable()  # a crash is reported by the parent, not as a dump on the terminal
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 -- lives as long as the child
    for k in range(start, len(items)):
        try:
            message = (k, True, fn(items[k]))
        except Exception as err:  # noqa: BLE001 -- passed back to the caller, which decides
            message = (k, False, err)
        try:
            conn.send(message)
        except Exception as err:  # noqa: BLE001 -- an unpicklable result or exception
            conn.send((k, False, RuntimeError(f"{err.__class__.__name__}: {err}")))


def _run_child(fn: Callable[[Any], Any], items: Sequence[Any], start: int, results: list[Any],
               quiet: bool) -> tuple[int, int]:
    """Fork a child for ``items[start:]``; fill ``results``; return (next index, wait status)."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns
        status = 1
        try:
            os.close(read_fd)
            _child(fn, items, start, Connection(write_fd, readable=False), quiet)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    receive = Connection(read_fd, writable=False)
    while True:
        try:
            k, _, value = receive.recv()
        except EOFError:
            break
        results[k] = value
        start = k + 1
    receive.close()
    _, status = os.waitpid(pid, 0)
    return start, status


def map_isolated(fn: Callable[[Any], T], items: Sequence[Any], quiet: bool = True) -> list[T | Exception]:
    """``[fn(item) or the exception it raised]`` in order; a crash gives :class:`Crashed` for that item.

    Runs in-process where ``os.fork`` is unavailable (Windows).
    """
    results: list[Any] = [None] * len(items)
    if not hasattr(os, "fork"):
        for k, item in enumerate(items):
            try:
                results[k] = fn(item)
            except Exception as err:  # noqa: BLE001
                results[k] = err
        return results
    start = 0
    while start < len(items):
        start, status = _run_child(fn, items, start, results, quiet)
        if start < len(items):  # the child died on item `start`
            signalled = os.WIFSIGNALED(status)
            results[start] = Crashed(os.WTERMSIG(status) if signalled else None,
                                     None if signalled else os.WEXITSTATUS(status))
            start += 1
    return results
