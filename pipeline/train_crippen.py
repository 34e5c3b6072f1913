"""DVC stage entry point: `python pipeline/train_crippen.py` == `qmlrp train-crippen`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["train-crippen", *sys.argv[1:]])
