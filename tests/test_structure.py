"""The shape of the code: imports point one way through the pipeline's layers, and the tree is clean under ruff."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "snlad"

# Low to high, one folder (or root module) each; a module may import its own layer and those below, never one above.
LAYERS = [
    {"errors"},
    {"files", "progress", "device"},  # foundations every layer may use
    {"config"},
    {"data"},
    {"backbones"},
    {"models"},
    {"losses"},
    {"scoring"},
    {"visualisation"},
    {"runs"},
    {"engine"},
    {"probes", "report"},
    {"deploy"},
    {"api"},
    {"cli"},
]
# Inside these folders too: low to high, a module may import its own sub-layer and those below.
SUBLAYERS = {
    "runs": [{"checkpoint"}, {"trained"}, {"run"}, {"runset", "experiments"}, {"results"}],
    "engine": [
        {"precision", "sampler", "feature_cache", "memory_bank", "distributed"},
        {"optimise", "inference"},
        {"train", "evaluate", "predict", "calibration", "detector", "selection"},
    ],
    "deploy": [{"runtime"}, {"export_openvino"}, {"export"}, {"deployed"}],
}


def layer_of(name: str, layers: list[set[str]]) -> int:
    return next(index for index, members in enumerate(layers) if name in members)


def is_module(dotted: str, package: Path = PACKAGE) -> bool:
    """``from snlad.M import X``: M.X a module or package (not a name like ``__version__`` defined in M)."""
    path = package.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def snlad_imports(path: Path, package: Path = PACKAGE) -> list[tuple[int, list[str]]]:
    """(line, dotted module path under snlad) of every import of an snlad module in ``path``, function-level ones too.

    ``from snlad.M import X`` imports the module M.X where there is one (``from snlad import api``), else M.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "snlad":
            inside = node.module.removeprefix("snlad").removeprefix(".")
            submodules = [f"{inside}.{alias.name}".lstrip(".") for alias in node.names]
            names = [f"snlad.{name}" for name in submodules if is_module(name, package)]
            if len(names) < len(submodules) and inside:
                names.append(node.module)
        found += [(node.lineno, name.split(".")[1:]) for name in dict.fromkeys(names) if name.startswith("snlad.")]
    return found


def modules(package: Path = PACKAGE) -> list[tuple[Path, list[str]]]:
    return [(path, list(path.relative_to(package).with_suffix("").parts)) for path in sorted(package.rglob("*.py"))]


def import_arrows(package: Path = PACKAGE) -> dict[tuple[str, str], tuple[Path, int]]:
    """Every import arrow between two snlad modules, (importer, imported) as dotted names under snlad (a package's
    ``__init__`` named as the package), with the first place it is written."""
    arrows: dict[tuple[str, str], tuple[Path, int]] = {}
    for path, parts in modules(package):
        here = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for line, target in snlad_imports(path, package):
            arrows.setdefault((here, ".".join(target)), (path, line))
    return arrows


def back_arrows(
    arrows: dict[tuple[str, str], tuple[Path, int]], layers: list[set[str]], sublayers: dict[str, list[set[str]]]
) -> list[str]:
    """The arrows that run from a lower layer (or a folder's lower sub-layer) to a higher one, as ``file:line imports``."""
    upward = []
    for (here, there), (path, line) in sorted(arrows.items()):
        source, target = here.split("."), there.split(".")
        if not source[0]:  # the package root's __init__
            continue
        up = layer_of(target[0], layers) > layer_of(source[0], layers)
        if source[0] == target[0] in sublayers and len(source) > 1 and len(target) > 1:
            up = up or layer_of(target[1], sublayers[source[0]]) > layer_of(source[1], sublayers[source[0]])
        if up:
            upward.append(f"{path}:{line} imports snlad.{there}")
    return upward


def cycles(arrows: dict[tuple[str, str], tuple[Path, int]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a loop (Tarjan's strongly connected components)."""
    graph: dict[str, list[str]] = {}
    for here, there in arrows:
        graph.setdefault(here, []).append(there)
        graph.setdefault(there, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1 or (node, node) in arrows:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    tops = {parts[0] for _, parts in modules() if parts != ["__init__"]}
    assert tops == set().union(*LAYERS)
    for folder, sublayers in SUBLAYERS.items():
        members = {parts[1] for _, parts in modules() if parts[0] == folder and parts[1] != "__init__"}
        assert members == set().union(*sublayers), folder


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    upward = back_arrows(import_arrows(), LAYERS, SUBLAYERS)
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_no_modules_import_each_other() -> None:
    assert not cycles(import_arrows())


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The checkers themselves: an upward import in a scratch file is reported, and so is a loop."""
    scratch = tmp_path / "bad.py"
    scratch.write_text("def f():\n    from snlad.api import train\n")
    assert snlad_imports(scratch) == [(2, ["api"])]
    assert back_arrows({("scoring.metrics", "api"): (scratch, 2)}, LAYERS, SUBLAYERS) == [
        f"{scratch}:2 imports snlad.api"
    ]
    assert back_arrows({("runs.checkpoint", "runs.run"): (scratch, 2)}, LAYERS, SUBLAYERS)
    assert cycles({("a", "b"): (scratch, 1), ("b", "c"): (scratch, 1), ("c", "a"): (scratch, 1)}) == [["a", "b", "c"]]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_tree_is_clean_under_ruff(command: list[str]) -> None:
    """pyproject.toml's [tool.ruff] settings; `ruff check --fix . && ruff format .` mends most findings."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "src", "tests", "bench", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
