"""``python -m qmlrp`` == ``qmlrp``."""

from qmlrp.cli import main

main()
