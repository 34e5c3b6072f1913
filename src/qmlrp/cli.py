"""The ``qmlrp`` command: pipeline stages and user tools as sub-commands.

Each concern contributes its commands through a ``register(app)`` function, so this module
stays a table of contents. User errors (:class:`qmlrp.errors.QmlrpError`) are printed as one
line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

from qmlrp.errors import QmlrpError

app = typer.Typer(
    name="qmlrp",
    help="QM9 -> Molecular Graph -> Weave GC models -> layer-wise relevance propagation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that define ``register(app: typer.Typer) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "qmlrp.data.commands",
    "qmlrp.features.commands",
    "qmlrp.training.commands",
    "qmlrp.relevance.commands",
    "qmlrp.labels.commands",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> Any:
    """Entry point that turns :class:`QmlrpError` into a one-line message and exit status 2."""
    try:
        return app(args=argv)
    except QmlrpError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
