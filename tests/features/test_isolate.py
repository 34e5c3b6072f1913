"""map_isolated: a crash in native code costs only the item it happened on."""

from __future__ import annotations

import os
import pickle
import signal

from qmlrp.errors import InputError
from qmlrp.features.isolate import Crashed, map_isolated


def _work(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGSEGV)  # what RDKit's perception did on overlapping atoms
    if x == 5:
        raise InputError(f"mol{x}", "bad molecule")
    if x == 6:
        os._exit(7)
    print("noise from C++ would go here")
    return x * 10


def test_crash_costs_one_item_and_order_is_kept(capfd):
    results = map_isolated(_work, list(range(9)))
    assert [r for k, r in enumerate(results) if k not in (3, 5, 6)] == [0, 10, 20, 40, 70, 80]
    assert isinstance(results[3], Crashed) and results[3].signal_number == signal.SIGSEGV
    assert "SIGSEGV" in str(results[3])
    assert isinstance(results[5], InputError) and results[5].where == "mol5" and results[5].reason == "bad molecule"
    assert isinstance(results[6], Crashed) and results[6].exitcode == 7
    assert "noise" not in capfd.readouterr().out  # the child's stdout is discarded when quiet


def test_empty_and_verbose():
    assert map_isolated(_work, []) == []
    assert map_isolated(_work, [1, 2], quiet=False) == [10, 20]


def test_input_error_pickles_with_both_fields():
    err = pickle.loads(pickle.dumps(InputError("a.xyz", "why")))
    assert (err.where, err.reason, str(err)) == ("a.xyz", "why", "a.xyz: why")
