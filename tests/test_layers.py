"""The layers point down only: `edge_ser` (runtime) <- `edge_ser_train` (train/) <-
`edge_ser_export` (export/) <- the command line; no import circle; the runtime's commands work
without torch, and the others say which extra to install."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = {"edge_ser": "edge_ser", "train": "edge_ser_train", "export": "edge_ser_export"}
"""Folder of the repository -> the package name it is installed (and imported) as."""
FORBIDDEN = {
    "edge_ser": {"edge_ser_train", "edge_ser_export", "train", "export"},
    "edge_ser_train": {"edge_ser_export", "export"},
    "edge_ser_export": set(),
}
"""What each layer must not import: anything above it (also under the folder names)."""
IMPORT_FUNCTIONS = {"import_module", "__import__"}


def modules() -> dict[str, Path]:
    """{dotted module name: file} of every module of the three packages."""
    found = {}
    for folder, package in LAYERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _absolute(module: str, path: Path, level: int, name: str | None) -> str:
    """The absolute name of a (possibly relative) `from ... import`."""
    if level == 0:
        return name or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - level + 1]
    return ".".join([*base, name] if name else base)


def imports(module: str, path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported name) of every import of a module: statements anywhere (functions
    included) and `importlib.import_module("...")` / `__import__("...")` calls with a string
    (an f-string counts by its constant start). `top_level_only`: the statements that run when
    the module is imported (module body, also inside if/try blocks), no calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    if top_level_only:
        nodes, stack = [], list(tree.body)
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):
                stack += [*node.body, *node.orelse, *getattr(node, "finalbody", []),
                          *(s for h in getattr(node, "handlers", []) for s in h.body)]
    else:
        nodes = list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node.level, node.module)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and not top_level_only:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in IMPORT_FUNCTIONS and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(
                        arg.values[0], ast.Constant):
                    found.append((node.lineno, str(arg.values[0].value)))
    return found


def test_every_layer_imports_only_the_layers_below_it():
    problems = []
    for module, path in modules().items():
        forbidden = FORBIDDEN[module.split(".")[0]]
        for line, name in imports(module, path):
            if name.split(".")[0] in forbidden:
                problems.append(f"{path.relative_to(REPO)}:{line}: {module} imports {name}")
    assert not problems, "imports running up the layers:\n" + "\n".join(problems)


def test_the_layering_check_sees_imports_inside_functions_and_by_name(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(name):\n    from edge_ser_export import cli\n"
                      "    import importlib\n    importlib.import_module('edge_ser_train.run')\n"
                      "    importlib.import_module(f'export.{name}')\n")
    names = [name for _, name in imports("edge_ser.m", module)]
    assert {"edge_ser_export", "edge_ser_train.run", "export."} <= set(names)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph, or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_between_modules():
    """The module-level import graph of the three packages has no circle (imports inside
    functions run later and may point anywhere below)."""
    known = modules()
    graph = {}
    for module, path in known.items():
        graph[module] = {name for _, name in imports(module, path, top_level_only=True)
                         if name in known and name != module}
    assert _cycle(graph) is None, "import circle: " + " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_package_folder_is_installed():
    """pyproject lists every package of the three folders (a new subpackage left out would be
    missing from the wheel), maps train/ and export/ to their installed names and ships the
    YAML of configs/ as edge_ser/configs/."""
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = {name for name, path in modules().items() if path.name == "__init__.py"}
    listed = set(setup["packages"])
    assert expected <= listed
    assert not {"train", "export", "main"} & listed
    assert setup["package-dir"]["edge_ser_train"] == "train"
    assert setup["package-dir"]["edge_ser_export"] == "export"
    assert "configs/*/*.yaml" in setup["package-data"]["edge_ser"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"edge-ser": "edge_ser_export.cli:main"}


WITHOUT_TORCH = """
import contextlib, io, json, sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchaudio", "scipy"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
from edge_ser_export.cli import build_parser, main

results = {}
parser = build_parser()
commands = parser._subparsers._group_actions[0].choices
for name, sub in commands.items():
    argvs = [[name, "--help"]]
    for action in sub._actions:
        if getattr(action, "choices", None) and isinstance(action.choices, dict):
            argvs += [[name, stage, "--help"] for stage in action.choices]
    for argv in argvs:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main(argv)
                code = None
            except SystemExit as exc:
                code = exc.code
        results[" ".join(argv)] = [code, len(out.getvalue())]
err = io.StringIO()
with contextlib.redirect_stderr(err):
    results["train"] = [main(["train"]), err.getvalue()]
err = io.StringIO()
with contextlib.redirect_stderr(err):
    results["adapt"] = [main(["adapt", "--target", ".", "--out", "x"]), err.getvalue()]
err = io.StringIO()
with contextlib.redirect_stderr(err):
    results["export package"] = [main(["export", "package", "--checkpoint", "m.pt", "--out",
                                       "x"]), err.getvalue()]
print(json.dumps(results))
"""


def test_without_torch_every_help_works_and_training_commands_name_the_extra():
    done = subprocess.run([sys.executable, "-c", WITHOUT_TORCH], capture_output=True,
                          text=True, timeout=300, check=True, cwd=REPO)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    helps = {k: v for k, v in results.items() if k.endswith("--help")}
    assert {"train --help", "eval --help", "export --help", "export package --help",
            "export trt --help", "export check --help", "export sweep --help",
            "adapt --help", "bench stream --help", "mic --help"} <= set(helps)
    assert all(code == 0 and size > 100 for code, size in helps.values()), helps
    for command in ("train", "adapt", "export package"):
        status, stderr = results[command]
        lines = stderr.strip().splitlines()
        assert status == 2 and len(lines) == 1, (command, stderr)
        assert "needs torch" in lines[0] and "pip install 'edge-ser[train]'" in lines[0]


def test_runtime_commands_import_no_layer_above_the_runtime():
    """Running the runtime's commands loads nothing of the training or export layers."""
    code = ("import sys\n"
            "from edge_ser.commands import run_runtime_command\n"
            "import edge_ser.commands.eval, edge_ser.commands.export, edge_ser.commands.bench\n"
            "status = run_runtime_command('export', ['check'])\n"
            "print(status, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('edge_ser_train', 'edge_ser_export', 'torch')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True, cwd=REPO)
    assert done.stdout.strip().splitlines()[-1] == "0 []"
