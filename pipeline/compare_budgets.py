"""DVC stage entry point: `python pipeline/compare_budgets.py` == `qmlrp compare-budgets`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["compare-budgets", *sys.argv[1:]])
