"""The shape of the code: imports point one way through the pipeline's layers, and the tree is clean under ruff."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "snlad"

# Low to high. A module may import its own layer and those below, never one above.
LAYERS = [
    {"errors"},
    {"files", "metrics", "thresholds", "synthesis", "render", "progress"},  # primitives every layer may use
    {"config"},
    {"data"},
    {"backbones"},
    {"models"},
    {"losses"},
    {"scoring"},
    {"engine"},
    {"selection", "export", "export_openvino", "deploy", "plots", "runset"},
    {"probes", "report"},
    {"experiments"},
    {"api"},
    {"cli", "cli_report"},
]
ENGINE_LAYERS = [
    {"device", "precision", "checkpoint", "sampler", "feature_cache", "memory_bank"},
    {"distributed"},
    {"trained"},
    {"run", "optimise", "inference", "runtime"},
    {"train", "evaluate", "predict", "calibration", "detector"},
]


def layer_of(name: str, layers: list[set[str]]) -> int:
    return next(index for index, members in enumerate(layers) if name in members)


def is_module(name: str) -> bool:
    """``from snlad import X``: X a module or package (not a name like ``__version__``, which sits in the package root)."""
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()


def snlad_imports(path: Path) -> list[tuple[int, list[str]]]:
    """(line, dotted module path under snlad) of every import of an snlad module in ``path``, function-level ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = (
                [node.module]
                if node.module != "snlad"
                else [f"snlad.{alias.name}" for alias in node.names if is_module(alias.name)]
            )
        found += [(node.lineno, name.split(".")[1:]) for name in names if name.startswith("snlad.")]
    return found


def modules() -> list[tuple[Path, list[str]]]:
    return [(path, list(path.relative_to(PACKAGE).with_suffix("").parts)) for path in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_has_a_layer() -> None:
    tops = {parts[0] for _, parts in modules() if parts != ["__init__"]}
    assert tops == set().union(*LAYERS)
    engine = {parts[1] for _, parts in modules() if parts[0] == "engine" and parts[1] != "__init__"}
    assert engine == set().union(*ENGINE_LAYERS)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    upward = []
    for path, parts in modules():
        if parts == ["__init__"]:
            continue
        for line, target in snlad_imports(path):
            here, there = layer_of(parts[0], LAYERS), layer_of(target[0], LAYERS)
            if there > here:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports snlad.{'.'.join(target)}")
            if parts[0] == target[0] == "engine" and len(parts) > 1 and len(target) > 1 and parts[1] != "__init__":
                if layer_of(target[1], ENGINE_LAYERS) > layer_of(parts[1], ENGINE_LAYERS):
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports snlad.{'.'.join(target)}")
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_the_layering_check_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an upward import in a scratch file is reported."""
    scratch = tmp_path / "bad.py"
    scratch.write_text("def f():\n    from snlad.api import train\n")
    assert snlad_imports(scratch) == [(2, ["api"])]
    assert layer_of("api", LAYERS) > layer_of("metrics", LAYERS)


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
