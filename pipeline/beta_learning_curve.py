"""DVC stage entry point: `python pipeline/beta_learning_curve.py` == `qmlrp beta-learning-curve`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["beta-learning-curve", *sys.argv[1:]])
