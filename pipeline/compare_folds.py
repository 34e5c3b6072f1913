"""DVC stage entry point: `python pipeline/compare_folds.py` == `qmlrp compare-folds`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["compare-folds", *sys.argv[1:]])
