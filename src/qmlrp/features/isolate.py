"""Run crash-prone native code (RDKit perception) in a forked child, so a crash costs one item.

:func:`map_isolated` applies a function to each item in a child process (``fork``: no re-import,
a few milliseconds per batch) that streams results back through a pipe. If the child dies (a
segmentation fault in C++), the item it was working on is reported as crashed and a new child
continues with the next one; the caller's process and the other items are unaffected.
The child's stdout/stderr go to /dev/null unless ``quiet=False`` (C++ libraries print there directly).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class Crashed(Exception):
    """The child process died on this item (``signal`` is the signal number, or None)."""

    def __init__(self, signal_number: int | None, exitcode: int | None) -> None:
        self.signal_number = signal_number
        self.exitcode = exitcode
        name = signal.Signals(signal_number).name if signal_number else f"exit status {exitcode}"
        super().__init__(f"the perceiving process crashed ({name})")


def _child(fn: Callable[[Any], Any], items: Sequence[Any], start: int, conn: Any, quiet: bool) -> None:
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
    conn.close()


def map_isolated(fn: Callable[[Any], T], items: Sequence[Any], quiet: bool = True) -> list[T | Exception]:
    """``[fn(item) or the exception it raised]`` in order; a crash gives :class:`Crashed` for that item.

    Falls back to running in-process where ``fork`` is unavailable (not Linux/macOS).
    """
    results: list[Any] = [None] * len(items)
    if "fork" not in multiprocessing.get_all_start_methods():
        for k, item in enumerate(items):
            try:
                results[k] = fn(item)
            except Exception as err:  # noqa: BLE001
                results[k] = err
        return results
    context = multiprocessing.get_context("fork")
    start = 0
    while start < len(items):
        receive, send = context.Pipe(duplex=False)
        sys.stdout.flush()
        sys.stderr.flush()
        child = context.Process(target=_child, args=(fn, items, start, send, quiet), daemon=True)
        child.start()
        send.close()
        while True:
            try:
                k, ok, value = receive.recv()
            except EOFError:
                break
            results[k] = value
            start = k + 1
        receive.close()
        child.join()
        if start < len(items) and child.exitcode != 0:  # died on item `start`
            code = child.exitcode
            results[start] = Crashed(-code if code is not None and code < 0 else None, code)
            start += 1
        elif start < len(items):  # exited cleanly without finishing: should not happen
            raise RuntimeError("isolated worker stopped early")
    return results
