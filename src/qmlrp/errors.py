"""User-facing errors: one line, naming the molecule or file and the reason."""

from __future__ import annotations


class QmlrpError(Exception):
    """An error caused by bad input or configuration.

    The CLI prints ``str(error)`` as a single line on stderr and exits with status 2;
    it never shows a traceback for these.
    """


class InputError(QmlrpError):
    """A malformed or out-of-domain input record (file, molecule, parameter)."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Picklable with both fields (it travels back from worker processes)."""
        return (self.__class__, (self.where, self.reason))
