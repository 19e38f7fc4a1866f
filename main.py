"""Command-line entry point: `python main.py COMMAND ...`, the same as the `edge-ser` script
(the command line is assembled in `edge_ser_export.cli`).

Installed (`pip install -e .`), `train/` and `export/` are the packages `edge_ser_train` and
`edge_ser_export`; in a checkout that is not installed, they are loaded from their folders here.
"""

import importlib.util
import sys
from pathlib import Path

LAYERS = {"edge_ser_train": "train", "edge_ser_export": "export"}


def _layers_from_checkout() -> None:
    root = Path(__file__).resolve().parent
    for name, folder in LAYERS.items():
        if importlib.util.find_spec(name) is None:
            path = root / folder
            spec = importlib.util.spec_from_file_location(
                name, path / "__init__.py", submodule_search_locations=[str(path)])
            sys.modules[name] = module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)


if __name__ == "__main__":
    _layers_from_checkout()
    from edge_ser_export.cli import main

    sys.exit(main())
