"""Write docs/bad-input.md: run every bad-input case through the CLI and tabulate what the user sees.

The cases live in tests/bad_inputs.py; tests/test_bad_input.py runs the same
cases, asserts on them, and fails when this file's output differs from the
committed table. Usage: python scripts/bad_input_table.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "docs" / "bad-input.md"


def main() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    import torch

    from bad_inputs import CASES, build_shared, render, run_case

    # One thread, as tests/test_bad_input.py runs the cases: the table shows what the input causes, not the
    # oversubscription note a busy machine adds to a job that takes every core.
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        shared = build_shared(base / "shared")
        rows = [(case, *run_case(case, base / case.name, shared)) for case in CASES]
    TABLE.write_text(render(rows))
    print(f"{len(rows)} cases -> {TABLE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
