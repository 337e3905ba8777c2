"""The longest functions of a checkout's ``src/snlad``: lines from ``def`` to the function's last line, docstring
included (nested functions count inside their parent and on their own).

    python scripts/longest_functions.py [--tree CHECKOUT] [--top 5]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def function_lengths(package: Path) -> list[tuple[int, str]]:
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{path.relative_to(package.parent)}:{node.lineno} {node.name}"
                found.append((node.end_lineno - node.lineno + 1, name))
    return sorted(found, key=lambda item: (-item[0], item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    lengths = function_lengths(args.tree / "src" / "snlad")
    for length, name in lengths[: args.top]:
        print(f"{length:4d}  {name}")
    print(f"{len(lengths)} functions, {sum(length > 60 for length, _ in lengths)} over 60 lines")


if __name__ == "__main__":
    main()
