"""DVC stage entry point: `python pipeline/explain.py --target alpha` == `qmlrp explain-stage --target alpha`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["explain-stage", *sys.argv[1:]])
