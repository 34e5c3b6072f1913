"""DVC stage entry point: `python pipeline/epochs_curve.py` == `qmlrp epochs-curve`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["epochs-curve", *sys.argv[1:]])
