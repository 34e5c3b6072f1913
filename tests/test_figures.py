"""The shared PNG helper: folders made, file written, figure closed even when drawing fails."""

from __future__ import annotations

import pytest

from qmlrp.figures import saved_figure


def test_writes_a_png_into_new_folders_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "a" / "b" / "plot.png"
    with saved_figure(path, nrows=2, ncols=1, figsize=(3, 3)) as (fig, axes):
        axes[0].plot([0, 1], [1, 0])
        assert fig.dpi == 120 and len(axes) == 2
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums()


def test_a_failing_drawing_writes_nothing_and_leaves_no_figure_open(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "plot.png"
    with pytest.raises(ZeroDivisionError), saved_figure(path) as (_, ax):
        ax.plot([0, 1], [0, 1 / 0])
    assert not path.exists() and not plt.get_fignums()
