"""DVC stage entry point: `python pipeline/label_beta.py [--params params.yaml]` == `qmlrp label-beta`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["label-beta", *sys.argv[1:]])
