"""DVC stage entry point: `python pipeline/train.py --target alpha --fold 0` == `qmlrp train ...`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
