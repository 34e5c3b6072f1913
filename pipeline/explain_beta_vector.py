"""DVC stage entry point: `python pipeline/explain_beta_vector.py` == `qmlrp explain-beta-vector`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["explain-beta-vector", *sys.argv[1:]])
