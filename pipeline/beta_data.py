"""DVC stage entry point: `python pipeline/beta_data.py` == `qmlrp beta-data`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["beta-data", *sys.argv[1:]])
