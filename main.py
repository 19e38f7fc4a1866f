"""Command-line entry point: `python main.py COMMAND ...` (the same as the `edge-ser` script)."""

import sys

from edge_ser.cli import main

if __name__ == "__main__":
    sys.exit(main())
