"""DVC stage entry point: `python pipeline/evaluate.py` == `qmlrp evaluate`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
