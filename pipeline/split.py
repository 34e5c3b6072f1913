"""DVC stage entry point: `python pipeline/split.py` == `qmlrp split`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["split", *sys.argv[1:]])
