"""Execute walkthrough notebooks top to bottom in the repository root and save them with their outputs.

    python notebooks/execute.py notebooks/01_data_and_features.ipynb [more.ipynb ...]

The ``make_0N.py`` scripts write the notebooks' source without outputs; this fills them in, so that a reader
of the repository sees the results and figures (tests/test_notebooks.py fails on a notebook committed
without them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

REPO = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout: int = 1800) -> None:
    """Run every cell of the notebook at ``path`` (cwd = repository root) and write it back."""
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}}).execute()
    nbformat.write(notebook, path)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        execute(Path(name))
        print(f"executed {name}")
