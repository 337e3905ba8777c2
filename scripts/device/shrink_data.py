"""Copy a data root at the model's input size, losslessly, so a campaign's data fits a device machine's 64 MiB transfer.

Every image is squashed to SIZE x SIZE exactly as ``snlad.data.dataset.model_input`` does (Pillow's antialiased
bilinear) and every mask (files under ``ground_truth``) is made binary and resized with nearest neighbour exactly as
``AnomalyDataset`` does, then both are saved as PNG (lossless) under the same relative paths. A run at SIZE px on
the copy therefore sees bit-identical tensors; the script checks that for every image and mask before it returns.
Only runs at SIZE px may use the copy (metrics are computed at the input size, so they are unchanged too).

    python scripts/device/shrink_data.py --src ../shared/data/realad --out .devdata/realad --size 256
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from snlad.data.dataset import model_input
from snlad.data.image_io import is_image_file, load_mask, read_rgb


def _binary_mask(path: Path) -> np.ndarray:
    """A mask file as the dataset reads it (nonzero = defect), at its own size."""
    with Image.open(path) as image:
        height, width = image.height, image.width
    return load_mask(path, (height, width))


def _resized_mask(binary: np.ndarray, size: int) -> np.ndarray:
    """The dataset's mask resize: binary -> uint8 0/255 -> nearest neighbour."""
    image = Image.fromarray(binary.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(image) > 0


def shrink(src: Path, out: Path, size: int) -> tuple[int, int]:
    """Write the copy; returns (images, masks) written after checking each against the original."""
    images = masks = 0
    for path in sorted(src.rglob("*")):
        target = out / path.relative_to(src)
        if path.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not is_image_file(path):
            shutil.copy2(path, target)
            continue
        if path.suffix.lower() != ".png":
            raise SystemExit(f"{path}: only PNG sources are handled (the copy keeps names and is PNG)")
        if "ground_truth" in path.relative_to(src).parts:
            small = _resized_mask(_binary_mask(path), size)
            Image.fromarray(small.astype(np.uint8) * 255, "L").save(target, optimize=True)
            if not np.array_equal(_resized_mask(_binary_mask(target), size), small):
                raise SystemExit(f"{target}: mask differs from the original's")
            masks += 1
            continue
        rgb = read_rgb(path)
        original = model_input(rgb, size)
        rgb.resize((size, size), Image.Resampling.BILINEAR).save(target, optimize=True)
        if not torch.equal(model_input(read_rgb(target), size), original):
            raise SystemExit(f"{target}: model input differs from the original's")
        images += 1
    return images, masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="data root to copy")
    parser.add_argument("--out", type=Path, required=True, help="folder for the copy (must not exist)")
    parser.add_argument("--size", type=int, default=256, help="the runs' image_size (default 256)")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: remove it or choose another --out")
    images, masks = shrink(args.src, args.out, args.size)
    print(f"{args.out}: {images} images and {masks} masks at {args.size} px, each checked against {args.src}")


if __name__ == "__main__":
    main()
