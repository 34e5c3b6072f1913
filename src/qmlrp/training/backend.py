"""Choosing Keras' backend (no Keras or JAX import here: it must run before Keras loads).

Every ``qmlrp`` command runs Keras on JAX unless the user chose a backend (``KERAS_BACKEND``):
measured on the same model and molecules (``benchmarks/bench_backends.py``), prediction through
:func:`qmlrp.models.io.inference_function` does ~1.5x the molecules per CPU-second on JAX, and LRP
runs at par; the training engine needs JAX. TensorFlow stays a supported backend for prediction and
LRP (``KERAS_BACKEND=tensorflow qmlrp predict ...``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_BACKEND = "jax"


def jax_cache_environment() -> None:
    """Keep JAX's compiled programs in a cache shared by processes (``QMLRP_JAX_CACHE``, default
    ``~/.cache/qmlrp/jax``), through JAX's own environment variables (read when JAX loads), so a
    second run of the same shapes (another fold, another ``qmlrp predict``) skips compilation.
    Every program is kept (minimum compile time 0: ``qmlrp predict``'s programs compile in under a
    second each, and cached they take a warm ``qmlrp predict`` of two molecules from ~9.5 to ~5.8
    CPU-s; the entries are a few kB). A cache the user configured is left alone."""
    cache = os.environ.get("QMLRP_JAX_CACHE", str(Path.home() / ".cache" / "qmlrp" / "jax"))
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def use_default_backend() -> str:
    """Set ``KERAS_BACKEND`` to :data:`DEFAULT_BACKEND` unless the user already chose one (an
    explicit choice is respected) and Keras is not loaded yet; returns the backend Keras will use.
    Call before anything imports Keras (the ``qmlrp`` command does, first thing)."""
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    backend = os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND)
    if backend == "jax":
        jax_cache_environment()
    return backend


def use_jax_backend() -> None:
    """Ask for Keras' JAX backend (the training engine's) unless Keras is already loaded, with the
    shared compilation cache (:func:`jax_cache_environment`): the 20 per-fold runs of the small
    default compile the same shapes once. Before JAX loads, malloc is told to keep the step's
    buffers mapped (:func:`qmlrp.training.allocator.keep_freed_memory`)."""
    from qmlrp.training.allocator import keep_freed_memory

    if "jax" not in sys.modules:
        keep_freed_memory()
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "jax"
    jax_cache_environment()
    try:
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    except Exception:  # noqa: BLE001 - the cache is an optimisation only
        pass
