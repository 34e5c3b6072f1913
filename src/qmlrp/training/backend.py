"""Choosing Keras' backend for training (no Keras import here: it must run before Keras loads)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def use_jax_backend() -> None:
    """Ask for Keras' JAX backend (the training engine's) unless Keras is already loaded, and keep
    JAX's compiled programs in a cache shared by processes (``QMLRP_JAX_CACHE``, default
    ``~/.cache/qmlrp/jax``): the 20 per-fold runs of the small default compile the same shapes once.
    Before JAX loads, malloc is told to keep the step's buffers mapped
    (:func:`qmlrp.training.allocator.keep_freed_memory`)."""
    from qmlrp.training.allocator import keep_freed_memory

    if "jax" not in sys.modules:
        keep_freed_memory()
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "jax"
    try:
        import jax

        cache = Path(os.environ.get("QMLRP_JAX_CACHE", Path.home() / ".cache" / "qmlrp" / "jax"))
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    except Exception:  # noqa: BLE001 - the cache is an optimisation only
        pass
