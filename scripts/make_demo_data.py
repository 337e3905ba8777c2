"""Build the small demo dataset shipped in the repository from the full realad copy.

The project's README commands must run on a fresh machine without
``../shared``, so a few images per category are copied, downscaled so the
longer side is 256 px (masks with nearest neighbour, kept binary 0/255), into
the same MVTec layout, with the licences and attribution of the source data.
Images are stored as JPEG (quality 95, no chroma subsampling): lossless PNG of
these noisy industrial textures is three times larger and would push the demo
past the few MB the repository can carry. Masks stay lossless PNG. Categories
whose licence forbids derivatives (casting, CC BY-NC-ND) are copied byte for
byte instead. Categories without masks (image-level labels only) stay so.
Selection is deterministic (sorted file lists, evenly spaced picks), so
rerunning the script reproduces the committed files bit for bit.

Usage: python scripts/make_demo_data.py --src ../shared/data/realad --out data/demo
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

LONG_SIDE = 256
JPEG_QUALITY = 95
TRAIN_GOOD = 8
TEST_GOOD = 3
TEST_DEFECTIVE = 4
MANIFEST_COLUMNS = ("category", "split", "label", "image", "mask", "source_repo", "source_path")
UNCHANGED = frozenset({"casting"})  # CC BY-NC-ND 4.0: no derivatives, so no downscaling or re-encoding

README = """\
# snlad demo data

A small subset of `../shared/data/realad`, written by `scripts/make_demo_data.py`
so the README commands run on a machine without the full data. Per category:
up to {train} defect-free training images, {test_good} defect-free test images
and {test_bad} defective test images (one defect type after another),
downscaled so the longer side is {side} px (masks with nearest neighbour, binary
0/255). Same MVTec AD folder layout; images are JPEG (quality 95, 4:4:4) to
keep the repository small, masks lossless PNG `<stem>_mask.png`. casting is
the exception: its licence (CC BY-NC-ND) allows no modification, so its files
are the source PNGs, unchanged (300 x 300).
`MANIFEST.csv` lists every file with its original source. Far too small for meaningful numbers: use it to check that
things run.

| category | train good | test good | test defective | with masks |
|---|---|---|---|---|
{table}

capsule and metal_nut have only four training images in the source: four
official *test/good* images moved to train/good (MANIFEST split `train_resplit`).
casting, solar_mono and solar_poly have image-level labels only (no masks):
snlad reports image metrics for them and `n/a` for the pixel metrics.

## Licences and attribution -- non-commercial research use only

- bottle, capsule, metal_nut: MVTec AD, (c) 2019 MVTec Software GmbH,
  CC BY-NC-SA 4.0 (https://creativecommons.org/licenses/by-nc-sa/4.0/).
  Paul Bergmann, Michael Fauser, David Sattlegger, Carsten Steger,
  "MVTec AD — A Comprehensive Real-World Dataset for Unsupervised Anomaly
  Detection", CVPR 2019. Modified: downscaled, stored as JPEG.
- magnetic_tile: Yibin Huang, Congying Qiu, Kui Yuan, "Surface defect saliency
  of magnetic tile", The Visual Computer, 2020; the authors ask for this
  citation. Modified: masks binarised; downscaled, stored as JPEG.
- kolektor_sdd: Domen Tabernik, Samo Šela, Jure Skvarč, Danijel Skočaj,
  "Segmentation-based deep-learning approach for surface-defect detection",
  Journal of Intelligent Manufacturing, 2019; CC BY-NC-SA 4.0. Modified: BMP
  labels binarised to PNG masks; downscaled, stored as JPEG.
- solar_mono, solar_poly: ELPV dataset, Sergiu Deitsch, Claudia Buerhop-Lutz
  et al., "A benchmark for visual identification of defective solar cells in
  electroluminescence imagery", EU PVSEC 2018, and "Automatic classification of
  defective photovoltaic module cells in electroluminescence images", Solar
  Energy 2019; CC BY-NC-SA 4.0. Modified: downscaled, stored as JPEG.
- pcb_deeppcb: DeepPCB, Sanli Tang, Fan He, Xiaolin Huang, Jie Yang, "Online
  PCB defect detector on a new PCB defect dataset", arXiv 1902.06197, 2019;
  research use only. Masks derived from its defect boxes (see
  ../shared/data/README.md). Modified: downscaled, stored as JPEG.
- mpdd_metal_plate: MPDD, Stepan Jezek, Martin Jonak, Radim Burget, Pavel
  Dvorak, Milos Skotak, "Deep learning-based defect detection of metal parts:
  evaluating current methods in complex conditions", ICUMT 2021. Modified:
  downscaled, stored as JPEG.
- casting: "casting product image data for quality inspection" (Kaggle,
  Ravirajsinh Dabhi), CC BY-NC-ND 4.0 (https://creativecommons.org/licenses/by-nc-nd/4.0/):
  the source PNG files, unchanged.

This subset is shared under the same terms as its sources (non-commercial
research use; CC BY-NC-SA 4.0 where the source is, CC BY-NC-ND 4.0 for
casting); it is not covered by the project's code licence.
"""


def evenly_spaced(items: Sequence[str], count: int) -> list[str]:
    """Pick ``count`` items spread over the sorted list (every k-th), or all if fewer."""
    ordered = sorted(items)
    if len(ordered) <= count:
        return ordered
    return [ordered[(i * len(ordered)) // count] for i in range(count)]


def round_robin(by_defect: dict[str, list[str]], count: int) -> list[str]:
    """Take the first image of each defect type in turn, so the demo covers as many types as possible."""
    queues = {defect: sorted(paths) for defect, paths in sorted(by_defect.items())}
    picked: list[str] = []
    while len(picked) < count and any(queues.values()):
        for queue in queues.values():
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return sorted(picked)


def downscaled_size(size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) whose longer side is LONG_SIDE, aspect kept; unchanged if already smaller."""
    width, height = size
    scale = LONG_SIDE / max(width, height)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def copy_image(src: Path, dst: Path) -> tuple[int, int]:
    """Write a downscaled JPEG copy of an image (antialiased) and return its new (width, height)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as image:
        size = downscaled_size(image.size)
        resized = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    resized.save(dst, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)
    return size


def copy_mask(src: Path, dst: Path, size: tuple[int, int]) -> None:
    """Write a mask resized to its image's new size with nearest neighbour, forced to {0, 255}."""
    with Image.open(src) as mask:
        resized = mask.convert("L").resize(size, Image.Resampling.NEAREST)
    defect = np.asarray(resized) > 0
    if not defect.any():  # a thin defect can fall between nearest-neighbour samples
        raise SystemExit(f"mask {src} is empty after downscaling to {size}; pick another image")
    binary = Image.fromarray(np.where(defect, 255, 0).astype(np.uint8))
    dst.parent.mkdir(parents=True, exist_ok=True)
    binary.save(dst, optimize=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="realad root with MANIFEST.csv")
    parser.add_argument("--out", type=Path, required=True, help="demo root to (re)create")
    args = parser.parse_args(argv)

    with (args.src / "MANIFEST.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_image = {row["image"]: row for row in rows}
    categories = sorted({row["category"] for row in rows})

    selected: list[dict[str, str]] = []
    counts: list[tuple[str, int, int, int, int]] = []
    for category in categories:
        mine = [row for row in rows if row["category"] == category]
        train = evenly_spaced([r["image"] for r in mine if r["split"].startswith("train")], TRAIN_GOOD)
        test_good = evenly_spaced(
            [r["image"] for r in mine if r["split"] == "test" and r["label"] == "good"], TEST_GOOD
        )
        by_defect: dict[str, list[str]] = {}
        for r in mine:
            if r["split"] == "test" and r["label"] != "good":
                by_defect.setdefault(r["label"], []).append(r["image"])
        test_bad = round_robin(by_defect, TEST_DEFECTIVE)
        selected.extend({**by_image[path], "source_image": path} for path in train + test_good + test_bad)
        masked = sum(bool(by_image[path]["mask"]) for path in test_bad)
        counts.append((category, len(train), len(test_good), len(test_bad), masked))

    if args.out.exists():
        if any(args.out.iterdir()) and not (args.out / "MANIFEST.csv").is_file():
            raise SystemExit(f"{args.out} exists and is not a demo folder (no MANIFEST.csv); refusing to delete it")
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    for row in selected:
        if row["category"] in UNCHANGED:
            for key in ("source_image", "mask") if row["mask"] else ("source_image",):
                target = args.out / (row["image"] if key == "source_image" else row["mask"])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(args.src / row[key], target)
            continue
        row["image"] = Path(row["image"]).with_suffix(".jpg").as_posix()
        size = copy_image(args.src / row["source_image"], args.out / row["image"])
        if row["mask"]:
            copy_mask(args.src / row["mask"], args.out / row["mask"], size)

    with (args.out / "MANIFEST.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in selected:
            writer.writerow({column: row[column] for column in MANIFEST_COLUMNS})
    table = "\n".join(f"| {c} | {a} | {b} | {d} | {m} |" for c, a, b, d, m in counts)
    (args.out / "README.md").write_text(
        README.format(train=TRAIN_GOOD, test_good=TEST_GOOD, test_bad=TEST_DEFECTIVE, side=LONG_SIDE, table=table),
        encoding="utf-8",
    )
    print(f"wrote {len(selected)} images to {args.out}")


if __name__ == "__main__":
    main()
