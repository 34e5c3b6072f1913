"""DVC stage entry point: `python pipeline/autoencoder.py` == `qmlrp autoencoder`."""

import sys

from qmlrp.cli import main

if __name__ == "__main__":
    main(["autoencoder", *sys.argv[1:]])
