"""Command-line entry point: `python main.py COMMAND ...`, the same as the `edge-ser` script
(the command line is assembled in `edge_ser_export.cli`)."""

import sys

from edge_ser_export.cli import main

if __name__ == "__main__":
    sys.exit(main())
