"""DVC stage entry point: `python pipeline/ingest.py` == `qmlrp ingest`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["ingest", *sys.argv[1:]])
