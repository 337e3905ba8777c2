"""Copy an MVTec-layout data root with every image and mask resized to S x S.

Resizing uses exactly the operations of snlad.data.AnomalyDataset (bilinear
for images, nearest for masks), so a model trained and tested at S px on the
copy sees the same pixels as on the original, while the copy is small enough
to ship to another machine (e.g. a rented GPU). Images are written as PNG
(lossless); maps written by `snlad predict` on the copy are at S x S, not the
original size.

    python scripts/resize_dataset.py --src ../shared/data/realad --out .device_data/realad256 --size 256
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from snlad.data import index_dataset, list_categories, load_image, load_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    src, out, size = Path(args.src), Path(args.out), (args.size, args.size)
    for split in ("train", "test"):
        for sample in index_dataset(src, split, list_categories(src)):
            image = load_image(sample.image)
            target = out / sample.image.relative_to(src).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).resize(size, Image.Resampling.BILINEAR).save(target)
            if sample.mask is not None:
                mask = load_mask(sample.mask, image.shape[:2])
                mask_target = out / sample.mask.relative_to(src).with_suffix(".png")
                mask_target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST).save(mask_target)
    for extra in ("README.md",):
        if (src.parent / extra).exists():
            shutil.copy(src.parent / extra, out / "SOURCE_README.md")


if __name__ == "__main__":
    main()
