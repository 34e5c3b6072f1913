"""DVC stage entry point: `python pipeline/evaluate_beta_vector.py ...` == `qmlrp evaluate-beta-vector ...`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["evaluate-beta-vector", *sys.argv[1:]])
