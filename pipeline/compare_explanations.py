"""DVC stage entry point: `python pipeline/compare_explanations.py` == `qmlrp compare-explanations`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["compare-explanations", *sys.argv[1:]])
