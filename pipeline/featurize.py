"""DVC stage entry point: `python pipeline/featurize.py` == `qmlrp featurize`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["featurize", *sys.argv[1:]])
