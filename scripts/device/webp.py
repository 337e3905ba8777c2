"""Carry a PNG data copy to a device machine as lossless WebP (about 30 % smaller) and turn it back into PNG there.

    python scripts/device/webp.py pack .devdata/realad .devcarry/realad      # here: PNG -> WebP, checked
    python scripts/device/webp.py unpack .devcarry/realad /tmp/data/realad   # there: WebP -> PNG, same names

Pixels survive both ways exactly (lossless WebP; ``pack`` checks every file); other files are copied as they are.
Only Pillow and numpy are needed, so ``unpack`` runs before snlad is importable.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def _grey_if_equal(image: Image.Image) -> Image.Image:
    """WebP stores greyscale as RGB with equal channels: give such an image back as ``L``, as it was packed."""
    pixels = np.asarray(image.convert("RGB"))
    if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all():
        return Image.fromarray(pixels[..., 0], "L")
    return image


def convert(src: Path, out: Path, source_suffix: str, target_suffix: str, check: bool) -> int:
    """Re-encode every ``source_suffix`` file under ``src`` into ``out`` as ``target_suffix``; returns the count."""
    count = 0
    for path in sorted(src.rglob("*")):
        if path.is_dir():
            continue
        target = out / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix != source_suffix:
            shutil.copy2(path, target)
            continue
        target = target.with_suffix(target_suffix)
        with Image.open(path) as image:
            image.load()
            if target_suffix == ".webp":
                image.save(target, "WEBP", lossless=True, quality=100, method=4)
            else:
                _grey_if_equal(image).save(target, "PNG")
            if check:
                with Image.open(target) as back:
                    if not np.array_equal(np.asarray(back.convert(image.mode)), np.asarray(image)):
                        raise SystemExit(f"{target}: pixels differ from {path}")
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("direction", choices=["pack", "unpack"])
    parser.add_argument("src", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: remove it or choose another folder")
    packing = args.direction == "pack"
    count = convert(args.src, args.out, ".png" if packing else ".webp", ".webp" if packing else ".png", check=packing)
    print(f"{args.out}: {count} images {'packed as WebP' if packing else 'back as PNG'}")


if __name__ == "__main__":
    main()
