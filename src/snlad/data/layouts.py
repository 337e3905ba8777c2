"""Find the images of a dataset on disk, whatever its layout.

A dataset root holds one folder per category. Each category folder's layout is
detected on its own (first match wins), so one root may mix layouts:

1. **VisA** -- ``<cat>/Data/Images`` exists.
   Images ``<cat>/Data/Images/{Normal,Anomaly}/*``, masks
   ``<cat>/Data/Masks/Anomaly/<stem>.png``. The split comes from
   ``<root>/split_csv/1cls.csv`` (columns ``object,split,label,image,mask``;
   paths relative to the root; ``label`` is ``normal``/``anomaly``, ``split`` is
   ``train``/``test``). An anomaly row's mask is the file its ``mask`` column
   names (it must exist), or ``<cat>/Data/Masks/Anomaly/<stem>.png`` when that
   column is empty; with neither, the image has no mask (image-level label
   only). VisA has no defect types, so defective samples get
   ``defect="anomaly"``. Anomaly rows in the train split are refused: snlad
   trains on normal images only.
2. **MVTec AD** -- ``<cat>/train/good`` or ``<cat>/ground_truth`` exists.
   Train = ``<cat>/train/good/*`` (other folders under ``train`` are not read).
   Test = ``<cat>/test/good/*`` (good) and ``<cat>/test/<defect>/*``
   (defective). A defective image's mask is
   ``<cat>/ground_truth/<defect>/<stem>_mask.png`` (``<stem>.png`` and the other
   image extensions are accepted too); without one the image has an
   image-level label only (ELPV, casting and much real inspection data come
   that way).
3. **Plain folder** -- otherwise, ``<cat>/train`` or ``<cat>/test`` exists.
   Train = image files directly in ``<cat>/train/`` (all defect-free). Test =
   ``<cat>/test/good/*`` (good) and ``<cat>/test/<defect>/*`` (defective).
   Masks are optional: ``<cat>/masks/<defect>/<stem>[_mask].<ext>`` or, when
   stems are unique across defect folders, ``<cat>/masks/<stem>[_mask].<ext>``.
   A defective image without a mask gets ``mask=None`` (image-level metrics
   only). There is no automatic train/test split of a flat folder of good
   images: where the test normals come from must be the user's explicit choice.

Common rules: image extensions are png, jpg, jpeg, bmp, tif, tiff in any case;
hidden files and other extensions are ignored; only image files directly in
the named folders are read (no recursion); a ``good`` folder under the mask
folder is ignored (masks of good images are all-zero by definition). Every mask
must belong to exactly one defective image and every image to at most one mask;
a mask without its image is an error, because it almost always means an image
was lost or renamed. File existence is checked here, eagerly; decoding and mask
sizes are checked when an image is loaded. A defective image without a mask
(``Sample.mask`` None) counts for image-level metrics only: evaluation leaves
it out of every pixel metric rather than scoring its pixels as normal.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from snlad.data.image_io import is_image_file
from snlad.data.sample import Sample
from snlad.errors import SnladError
from snlad.files import confined

SPLITS = ("train", "test")
VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"
_VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_LAYOUTS_LOOKED_FOR = (
    "MVTec (<category>/train/good, <category>/ground_truth), "
    "VisA (<category>/Data/Images) and plain folder (<category>/train, <category>/test)"
)


def detect_layout(category_dir: Path) -> str | None:
    """Name the layout of one category folder: ``"visa"``, ``"mvtec"``, ``"folder"`` or None."""
    if (category_dir / "Data" / "Images").is_dir():
        return "visa"
    if (category_dir / "train" / "good").is_dir() or (category_dir / "ground_truth").is_dir():
        return "mvtec"
    if (category_dir / "train").is_dir() or (category_dir / "test").is_dir():
        return "folder"
    return None


def list_categories(root: str | Path) -> list[str]:
    """Sorted names of the category folders under ``root`` that match a known layout."""
    return sorted(_scan(root)[1])


def index_dataset(root: str | Path, split: str, categories: Sequence[str] | None = None) -> list[Sample]:
    """List the samples of one split, sorted by category then image path.

    ``categories`` None means every category found; a single string is taken as
    one category name (not as a sequence of letters).
    """
    if split not in SPLITS:
        raise SnladError(f"unknown split {split!r}; use 'train' or 'test'")
    root_path, found = _scan(root)
    if categories is None:
        selected = sorted(found)
    else:
        selected = sorted({categories} if isinstance(categories, str) else set(categories))
        if not selected:
            raise SnladError(f"no category selected for {root_path}; pass None for all of: {', '.join(sorted(found))}")
        unknown = [name for name in selected if name not in found]
        if unknown:
            raise SnladError(
                f"unknown category {unknown[0]!r} under {root_path}; known categories: {', '.join(sorted(found))}"
            )
    visa_rows: list[tuple[int, dict[str, str]]] | None = None
    samples: list[Sample] = []
    for name in selected:
        category_dir, layout = found[name]
        if layout == "visa":
            if visa_rows is None:
                visa_rows = _read_visa_csv(root_path / VISA_SPLIT_CSV)
            found_here = _index_visa(root_path, category_dir, name, split, visa_rows)
        elif split == "train":
            train_dir = category_dir / "train" / "good" if layout == "mvtec" else category_dir / "train"
            found_here = [Sample(path, name, 0, "good", None) for path in _images_in(train_dir)]
        elif layout == "mvtec":
            found_here = _index_test(name, category_dir, category_dir / "ground_truth", mvtec=True)
        else:
            found_here = _index_test(name, category_dir, category_dir / "masks", mvtec=False)
        if not found_here:
            raise SnladError(_empty_split_message(root_path, category_dir, layout, split))
        samples.extend(found_here)
    return sorted(samples, key=lambda sample: (sample.category, sample.image.as_posix()))


def _scan(root: str | Path) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """Check the root and map each category name to its folder and layout."""
    root_path = Path(root)
    if not root_path.exists():
        raise SnladError(f"dataset root {root_path} does not exist; pass the folder that holds one folder per category")
    if not root_path.is_dir():
        raise SnladError(
            f"dataset root {root_path} is not a folder; pass the folder that holds one folder per category"
        )
    found: dict[str, tuple[Path, str]] = {}
    unmatched: list[str] = []
    for folder in _subdirs(root_path):
        layout = detect_layout(folder)
        if layout is None:
            unmatched.append(folder.name)
        else:
            found[folder.name] = (folder, layout)
    if not found:
        detail = f"; folders that matched none: {', '.join(unmatched)}" if unmatched else "; it has no sub-folders"
        if detect_layout(root_path) is not None:
            detail += f"; {root_path} itself looks like one category: pass its parent folder {root_path.parent}"
        raise SnladError(f"no category found under dataset root {root_path}: looked for {_LAYOUTS_LOOKED_FOR}{detail}")
    return root_path, found


def _empty_split_message(root: Path, category_dir: Path, layout: str, split: str) -> str:
    """Say where the images of an empty split were expected, per layout."""
    category = category_dir.name
    if layout == "visa":
        where = f"no {split!r} rows for object {category!r} in {root / VISA_SPLIT_CSV}"
    elif layout == "mvtec":
        sub = "train/good" if split == "train" else "test/<defect>"
        where = f"expected image files in {category_dir / sub}"
    else:
        sub = "train" if split == "train" else "test/good and test/<defect>"
        where = f"expected image files in {category_dir / sub}"
    kind = "training images (defect-free)" if split == "train" else "test images"
    return f"category {category!r} has no {kind}: {where} ({layout} layout); add them or leave the category out"


def _subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name; none if it is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(path for path in _entries(folder) if path.is_dir() and not path.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; none if it is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(path for path in _entries(folder) if is_image_file(path))


def _entries(folder: Path) -> list[Path]:
    """The entries of a folder; a folder that cannot be listed (permissions, I/O) is a SnladError naming it."""
    try:
        return list(folder.iterdir())
    except OSError as error:
        raise SnladError(f"cannot list folder {folder}: {error.strerror}; check that it is readable") from None


def _mask_index(folder: Path) -> dict[str, Path]:
    """Map image stem -> mask file for the masks in ``folder`` (``<stem>_mask.<ext>`` or ``<stem>.<ext>``)."""
    index: dict[str, Path] = {}
    for mask in _images_in(folder):
        stem = mask.stem.removesuffix("_mask")
        if stem in index:
            raise SnladError(f"masks {index[stem]} and {mask} both claim image stem {stem!r}; delete one of them")
        index[stem] = mask
    return index


def _orphan_error(mask: Path, expected: str) -> SnladError:
    """The error for a mask whose image is missing."""
    return SnladError(f"mask {mask} has no defective image: expected {expected}; restore the image or delete the mask")


def _index_test(category: str, category_dir: Path, mask_root: Path, *, mvtec: bool) -> list[Sample]:
    """Index ``<cat>/test/{good,<defect>}`` with masks under ``mask_root`` (see module docstring).

    Masks are optional in both layouts; MVTec looks for them in
    ``mask_root/<defect>/`` only, the plain folder layout also directly in
    ``mask_root`` when stems are unique.
    """
    test_dir = category_dir / "test"
    flat_masks = {} if mvtec else _mask_index(mask_root)
    claimed: dict[Path, Path] = {}
    samples: list[Sample] = []
    defects: set[str] = set()
    for defect_dir in _subdirs(test_dir):
        images = _images_in(defect_dir)
        if defect_dir.name == "good":
            samples.extend(Sample(path, category, 0, "good", None) for path in images)
            continue
        defects.add(defect_dir.name)
        typed_masks = _mask_index(mask_root / defect_dir.name)
        for image in images:
            candidates = [m for m in (typed_masks.get(image.stem), flat_masks.get(image.stem)) if m is not None]
            if len(candidates) == 2:
                raise SnladError(f"image {image} has two masks, {candidates[0]} and {candidates[1]}; delete one")
            mask = candidates[0] if candidates else None
            if mask is not None:
                if mask in claimed:
                    raise SnladError(
                        f"mask {mask} matches two images, {claimed[mask]} and {image}; "
                        f"move it to {mask_root}/<defect>/ to say which"
                    )
                claimed[mask] = image
            samples.append(Sample(image, category, 1, defect_dir.name, mask))
        for stem, mask in typed_masks.items():
            if mask not in claimed:
                raise _orphan_error(mask, f"{defect_dir / stem}.<png|jpg|...>")
    for stem, mask in flat_masks.items():
        if mask not in claimed:
            raise _orphan_error(mask, f"{test_dir}/<defect>/{stem}.<png|jpg|...>")
    for mask_dir in _subdirs(mask_root):
        if mask_dir.name not in defects and mask_dir.name != "good":
            for mask in _images_in(mask_dir):
                stem = mask.stem.removesuffix("_mask")
                raise _orphan_error(mask, f"{test_dir / mask_dir.name / stem}.<png|jpg|...>")
    return samples


def _read_visa_csv(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """Read VisA's split file as (line number, row) pairs, checking its columns."""
    if not csv_path.is_file():
        raise SnladError(
            f"VisA split file {csv_path} is missing; copy split_csv/1cls.csv from the VisA release into the dataset root"
        )
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in _VISA_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise SnladError(
                    f"VisA split file {csv_path} lacks column(s) {', '.join(missing)}; "
                    f"its header must be {','.join(_VISA_COLUMNS)}"
                )
            return [(number, row) for number, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SnladError(f"cannot read VisA split file {csv_path}: {error}; re-copy it") from None


def _index_visa(
    root: Path, category_dir: Path, category: str, split: str, rows: list[tuple[int, dict[str, str]]]
) -> list[Sample]:
    """Index one VisA category's split from the rows of ``split_csv/1cls.csv``."""
    csv_path = root / VISA_SPLIT_CSV
    mask_dir = category_dir / "Data" / "Masks" / "Anomaly"
    samples: list[Sample] = []
    for number, row in rows:
        if (row.get("object") or "").strip() != category:
            continue
        row_split = (row.get("split") or "").strip().lower()
        label = (row.get("label") or "").strip().lower()
        where = f"{csv_path} line {number}"
        if row_split not in SPLITS:
            raise SnladError(f"{where}: split {row_split!r} is neither 'train' nor 'test'; fix the row")
        if label not in ("normal", "anomaly"):
            raise SnladError(f"{where}: label {label!r} is neither 'normal' nor 'anomaly'; fix the row")
        if row_split != split:
            continue
        if label == "anomaly" and split == "train":
            raise SnladError(f"{where}: anomaly image in the train split; snlad trains on normal images only")
        image = confined(root, (row.get("image") or "").strip(), f"{where}: image")
        if not is_image_file(image):
            raise SnladError(f"{where}: image {image} not found (or not an image file); restore it or drop the row")
        if label == "normal":
            samples.append(Sample(image, category, 0, "good", None))
            continue
        mask_entry = (row.get("mask") or "").strip()
        if mask_entry:
            mask: Path | None = confined(root, mask_entry, f"{where}: mask")
            if not mask.is_file():
                raise SnladError(
                    f"{where}: mask {mask} of image {image} does not exist; restore it or empty the row's mask column"
                )
        else:
            conventional = mask_dir / f"{image.stem}.png"
            mask = conventional if conventional.is_file() else None
        samples.append(Sample(image, category, 1, "anomaly", mask))
    if split == "test":
        image_stems = {path.stem for path in _images_in(category_dir / "Data" / "Images" / "Anomaly")}
        for mask in _images_in(mask_dir):
            if mask.stem.removesuffix("_mask") not in image_stems:
                raise _orphan_error(mask, f"{category_dir / 'Data' / 'Images' / 'Anomaly' / mask.stem}.<JPG|png|...>")
    return samples
