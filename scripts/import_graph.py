"""The import graph of a checkout's ``src/snlad``: arrows between modules, those that run back up a layer, cycles.

The graph and the checks are ``tests/test_structure.py``'s (this checkout's); the layers are those the measured
checkout's own ``tests/test_structure.py`` states (``LAYERS``, and ``SUBLAYERS`` or the older ``ENGINE_LAYERS``),
so an older commit is measured against the layering it claimed:

    git worktree add /tmp/before 3e97af7
    python scripts/import_graph.py --tree /tmp/before --out before.json
    python scripts/import_graph.py --out after.json          # this checkout
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

from test_structure import back_arrows, cycles, import_arrows, modules  # noqa: E402


def stated_layers(tree: Path) -> tuple[list[set[str]], dict[str, list[set[str]]]]:
    spec = importlib.util.spec_from_file_location("measured_structure", tree / "tests" / "test_structure.py")
    assert spec and spec.loader
    stated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stated)
    sublayers = getattr(stated, "SUBLAYERS", None) or {"engine": stated.ENGINE_LAYERS}
    return stated.LAYERS, sublayers


def measure(tree: Path) -> dict:
    package = tree / "src" / "snlad"
    arrows = import_arrows(package)
    layers, sublayers = stated_layers(tree)
    names = [".".join(parts) for _, parts in modules(package)]
    folders = {(a.split(".")[0], b.split(".")[0]) for a, b in arrows if a and a.split(".")[0] != b.split(".")[0]}
    git = ["git", "-C", str(tree)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
    return {
        "commit": commit + (" with uncommitted changes in src" if changed else ""),
        "modules": len([name for name in names if not name.endswith("__init__")]),
        "root_modules": sorted(name for name in names if "." not in name and name != "__init__"),
        "folders": sorted({name.split(".")[0] for name in names if "." in name}),
        "arrows": len(arrows),
        "arrows_between_top_level_units": len(folders),
        "back_arrows": [line.replace(str(tree) + "/", "") for line in back_arrows(arrows, layers, sublayers)],
        "cycles": cycles(arrows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=HERE, help="a checkout (default: this one)")
    parser.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    args = parser.parse_args()
    result = measure(args.tree.resolve())
    print(
        f"{result['commit']}: {result['modules']} modules ({len(result['root_modules'])} in the package root, "
        f"{len(result['folders'])} folders), {result['arrows']} import arrows between modules "
        f"({result['arrows_between_top_level_units']} between root modules and folders), "
        f"{len(result['back_arrows'])} back up a layer, {len(result['cycles'])} cycles"
    )
    for line in result["back_arrows"]:
        print("  back:", line)
    for group in result["cycles"]:
        print("  cycle:", " -> ".join(group))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
