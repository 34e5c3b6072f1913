"""One way to draw a PNG: headless Matplotlib, the folder made, the figure laid out, saved and closed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def saved_figure(path: str | Path, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``with saved_figure(path, figsize=(6, 4)) as (fig, ax): ...`` draws on ``plt.subplots(**subplots)``
    (``dpi`` 120 unless given) and writes ``path`` (folders made) when the block ends without error;
    the figure is closed either way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(**{"dpi": 120, **subplots})
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
