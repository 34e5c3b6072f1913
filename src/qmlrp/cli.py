"""The ``qmlrp`` command: pipeline stages and user tools as sub-commands.

Each concern contributes its commands through a ``register(app)`` function, so this module
stays a table of contents. User errors (:class:`qmlrp.errors.QmlrpError`) are printed as one
line on stderr with exit status 2, never as a traceback. Library chatter (TensorFlow/absl/oneDNN
start-up lines, Python warnings, RDKit's logs) is silenced before those libraries load, so a user
sees only qmlrp's lines; ``--verbose`` (anywhere on the command line) lets it through. Keras runs
on JAX unless ``KERAS_BACKEND`` names another backend (:func:`qmlrp.training.backend.use_default_backend`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

QUIET_ENVIRONMENT: dict[str, str] = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow C++ (and absl through it): errors only... and not even those
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
}
VERBOSE_FLAG = "--verbose"


def set_verbosity(verbose: bool) -> None:
    """Silence (or let through) TensorFlow, absl, Python warnings and RDKit; call before TF loads."""
    for key, value in QUIET_ENVIRONMENT.items():
        if verbose:
            if os.environ.get(key) == value:
                os.environ.pop(key)
        else:
            os.environ.setdefault(key, value)
    if verbose:
        os.environ["QMLRP_VERBOSE"] = "1"  # library modules keep RDKit's log on
    else:
        os.environ.pop("QMLRP_VERBOSE", None)
    level = logging.INFO if verbose else logging.ERROR
    for name in ("tensorflow", "absl", "keras", "h5py", "jax"):
        logging.getLogger(name).setLevel(level)
    if verbose:
        warnings.resetwarnings()
    else:
        warnings.filterwarnings("ignore")
    from rdkit import RDLogger

    (RDLogger.EnableLog if verbose else RDLogger.DisableLog)("rdApp.*")


set_verbosity(VERBOSE_FLAG in sys.argv[1:])

from qmlrp.training.backend import use_default_backend  # noqa: E402  -- imports no Keras

use_default_backend()  # Keras on JAX unless KERAS_BACKEND says otherwise; before anything loads Keras

import typer  # noqa: E402  -- after the environment is set

from qmlrp.errors import QmlrpError  # noqa: E402

COMMANDS: dict[str, str] = {  # sub-command -> the module whose ``register(app)`` adds it
    "ingest": "qmlrp.data.commands",
    "split": "qmlrp.data.commands",
    "featurize": "qmlrp.features.commands",
    "train": "qmlrp.training.commands",
    "study-train": "qmlrp.training.commands",
    "train-matrix": "qmlrp.training.commands",
    "epochs-curve": "qmlrp.training.commands",
    "train-crippen": "qmlrp.training.commands",
    "seed-spread": "qmlrp.training.commands",
    "evaluate": "qmlrp.training.commands",
    "predict": "qmlrp.training.predict",
    "explain": "qmlrp.relevance.commands",
    "explain-stage": "qmlrp.relevance.commands",
    "compare-explanations": "qmlrp.relevance.commands",
    "explain-beta-vector": "qmlrp.relevance.commands",
    "compare-folds": "qmlrp.relevance.commands",
    "compare-budgets": "qmlrp.relevance.commands",
    "label-beta": "qmlrp.labels.commands",
    "dalton-write": "qmlrp.labels.commands",
    "dalton-read": "qmlrp.labels.commands",
    "autoencoder": "qmlrp.stages.autoencoder",
    "beta-data": "qmlrp.training.beta_commands",
    "beta-learning-curve": "qmlrp.training.beta_commands",
    "train-beta-vector": "qmlrp.training.beta_commands",
    "train-alpha-tensor": "qmlrp.training.beta_commands",
    "evaluate-beta-vector": "qmlrp.training.beta_commands",
}
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))


def _root(ctx: typer.Context,
          verbose: bool = typer.Option(False, VERBOSE_FLAG, help="Show library log lines and warnings.")) -> None:
    """QM9 -> Molecular Graph -> Weave GC models -> layer-wise relevance propagation."""
    ctx.obj = {"verbose": verbose}
    if verbose:
        set_verbosity(True)


def _keep_last(commands: list[Any]) -> list[Any]:
    latest = {c.name or c.callback.__name__: k for k, c in enumerate(commands)}
    return [c for k, c in enumerate(commands) if latest[c.name or c.callback.__name__] == k]


def build_app(modules: tuple[str, ...] = COMMAND_MODULES) -> typer.Typer:
    """The typer application with the commands of ``modules`` (default: all of them)."""
    application = typer.Typer(
        name="qmlrp",
        help="QM9 -> Molecular Graph -> Weave GC models -> layer-wise relevance propagation.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    application.callback()(_root)
    for name in modules:
        importlib.import_module(name).register(application)
    application.registered_commands[:] = _keep_last(application.registered_commands)
    return application


def app_for(args: list[str]) -> typer.Typer:
    """The application for one command line: only the module of its sub-command is loaded (a stage
    imports what it runs, nothing else); ``--help``, no command or an unknown one load them all."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command in COMMANDS and not {"--help", "-h"} & set(args[: args.index(command)]):
        return build_app((COMMANDS[command],))
    return build_app()


def __getattr__(name: str) -> Any:
    """``qmlrp.cli.app``: the application with every command (built on first use)."""
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def silence_native_output() -> Callable[[], None]:
    """Send what C/C++ libraries write straight to file descriptors 1 and 2 (absl's pre-init
    lines, oneDNN notices, RDKit's "Distance ... is suspicious") to /dev/null, while Python's
    ``sys.stdout``/``sys.stderr`` -- qmlrp's own lines -- keep writing to the real ones.
    Returns the function that puts everything back."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    undo: list[tuple[int, int, str, Any]] = []
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        try:
            stream.flush()
            saved = os.dup(fd)
        except (OSError, ValueError, AttributeError):
            continue
        os.dup2(devnull, fd)
        setattr(sys, name, open(os.dup(saved), "w", encoding=getattr(stream, "encoding", None) or "utf-8",  # noqa: SIM115
                                errors=getattr(stream, "errors", None) or "strict",
                                buffering=1 if os.isatty(saved) else -1))
        undo.append((fd, saved, name, stream))
    os.close(devnull)

    def restore() -> None:
        for fd, saved, name, stream in undo:
            replacement = getattr(sys, name)
            try:
                replacement.flush()
                replacement.close()
            except (OSError, ValueError):
                pass
            os.dup2(saved, fd)
            os.close(saved)
            setattr(sys, name, stream)

    return restore


def main(argv: list[str] | None = None) -> Any:
    """Entry point that turns :class:`QmlrpError` into a one-line message and exit status 2.

    ``--verbose`` may stand anywhere; it is moved before the sub-command. Without it, native
    library output is silenced (:func:`silence_native_output`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    restore: Callable[[], None] | None = None
    if VERBOSE_FLAG in args:
        args = [VERBOSE_FLAG] + [a for a in args if a != VERBOSE_FLAG]
    elif sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__:
        # a process of its own (not a caller that captures sys.stdout, e.g. a test): silence
        restore = silence_native_output()
    try:
        return app_for(args)(args=args)
    except QmlrpError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    finally:
        if restore is not None:
            restore()
