#!/usr/bin/env bash
# Create .venv and install snlad with its test tools (torch 2.13.0 CPU wheel, pinned in pyproject).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e ".[test]"  # test extras: onnx, onnxruntime, openvino, nncf (runtime tests)
