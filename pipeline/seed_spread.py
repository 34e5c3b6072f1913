"""DVC stage entry point: `python pipeline/seed_spread.py` == `qmlrp seed-spread`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["seed-spread", *sys.argv[1:]])
