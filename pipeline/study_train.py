"""DVC stage entry point: `python pipeline/study_train.py` == `qmlrp study-train` (run in a study folder)."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["study-train", *sys.argv[1:]])
