"""DVC stage entry point: `python pipeline/train_beta_vector.py ...` == `qmlrp train-beta-vector ...`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["train-beta-vector", *sys.argv[1:]])
