"""Tests of the data layer: layouts, decoding of odd files, errors, tensors, hold-out split."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from bad_inputs import png_bomb
from snlad.data import (
    AnomalyDataset,
    Sample,
    holdout_split,
    index_dataset,
    list_categories,
    load_image,
    load_mask,
)
from snlad.errors import SnladError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
REALAD_CANDIDATES = (Path("/work/shared/data/realad"), REPO.parent / "shared" / "data" / "realad")
REALAD = next((path for path in REALAD_CANDIDATES if (path / "MANIFEST.csv").is_file()), None)


# ---------------------------------------------------------------- helpers


def save(path: Path, image: Image.Image | np.ndarray, **options: object) -> Path:
    """Write an image (array or Pillow) to ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, **options)
    return path


def box_image(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A dark RGB image with a white rectangle (top, left, bottom, right) where the defect is."""
    pixels = np.full((height, width, 3), 20, np.uint8)
    top, left, bottom, right = box
    pixels[top:bottom, left:right] = 255
    return pixels


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A {0, 255} mask of the same rectangle."""
    mask = np.zeros((height, width), np.uint8)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = 255
    return mask


def make_mvtec(root: Path, category: str = "widget", train: int = 3) -> Path:
    """A tiny MVTec tree: ``train`` good train images, 1 good and 2 defective test images with masks."""
    cat = root / category
    for i in range(train):
        save(cat / "train" / "good" / f"{i:03d}.png", box_image(40, 50, (0, 0, 0, 0)))
    save(cat / "test" / "good" / "000.png", box_image(40, 50, (0, 0, 0, 0)))
    for i, box in enumerate([(5, 5, 15, 20), (20, 30, 35, 45)]):
        save(cat / "test" / "scratch" / f"{i:03d}.png", box_image(40, 50, box))
        save(cat / "ground_truth" / "scratch" / f"{i:03d}_mask.png", box_mask(40, 50, box))
    return cat


def manifest_counts(root: Path) -> tuple[Counter, Counter, set[tuple[str, str]]]:
    """Per-(category, defect) counts of train and test rows and the (image, mask) pairs of a MANIFEST.csv."""
    train: Counter = Counter()
    test: Counter = Counter()
    pairs: set[tuple[str, str]] = set()
    with (root / "MANIFEST.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            (train if row["split"].startswith("train") else test)[(row["category"], row["label"])] += 1
            if row["mask"]:
                pairs.add((row["image"], row["mask"]))
    return train, test, pairs


def check_against_manifest(root: Path) -> None:
    """Index ``root`` fully and compare with its MANIFEST.csv; check mask sizes from file headers."""
    train_rows, test_rows, pairs = manifest_counts(root)
    train = index_dataset(root, "train")
    test = index_dataset(root, "test")
    assert Counter((s.category, s.defect) for s in train) == train_rows
    assert Counter((s.category, s.defect) for s in test) == test_rows
    assert all(s.label == 0 and s.mask is None for s in train)
    assert all((s.label == 1) == (s.defect != "good") for s in test)
    found_pairs = {(s.image.relative_to(root).as_posix(), s.mask.relative_to(root).as_posix()) for s in test if s.mask}
    assert found_pairs == pairs
    for sample in test:
        if sample.mask is not None:
            with Image.open(sample.image) as image, Image.open(sample.mask) as mask:
                assert image.size == mask.size, sample
    assert list_categories(root) == sorted({category for category, _ in train_rows})
    assert index_dataset(root, "test") == test  # deterministic


# ---------------------------------------------------------------- real data


def test_demo_data_matches_its_manifest_and_loads() -> None:
    check_against_manifest(DEMO)
    assert list_categories(DEMO) == [
        "bottle",
        "capsule",
        "casting",
        "kolektor_sdd",
        "magnetic_tile",
        "metal_nut",
        "mpdd_metal_plate",
        "pcb_deeppcb",
        "solar_mono",
        "solar_poly",
    ]
    without_masks = {s.category for s in index_dataset(DEMO, "test") if s.label == 1 and s.mask is None}
    assert without_masks == {"casting", "solar_mono", "solar_poly"}  # image-level labels only, as in realad
    test = index_dataset(DEMO, "test", ["kolektor_sdd"])
    defective = next(s for s in test if s.label == 1)
    item = AnomalyDataset([defective], image_size=64)[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].sum() > 0
    assert tuple(item["orig_hw"].tolist()) == load_image(defective.image).shape[:2]
    assert sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file()) < 3_000_000


@pytest.mark.skipif(REALAD is None, reason="shared realad data not present")
def test_full_realad_matches_its_manifest() -> None:
    assert REALAD is not None
    check_against_manifest(REALAD)


# ---------------------------------------------------------------- layouts


def make_visa(root: Path) -> None:
    """Two VisA categories with JPEG images of different sizes, PNG masks and split_csv/1cls.csv."""
    rows = []
    for category, size in (("candle", (60, 80)), ("pcb1", (90, 70))):
        height, width = size
        images = root / category / "Data" / "Images"
        for i in range(4):
            save(images / "Normal" / f"{i:04d}.JPG", box_image(height + i, width, (0, 0, 0, 0)), quality=95)
            rows.append(
                [category, "train" if i < 3 else "test", "normal", f"{category}/Data/Images/Normal/{i:04d}.JPG", ""]
            )
        for i, box in enumerate([(10, 10, 30, 30), (30, 20, 50, 60)]):
            save(images / "Anomaly" / f"{i:03d}.JPG", box_image(height, width + i, box), quality=95)
            save(root / category / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png", box_mask(height, width + i, box))
            mask = f"{category}/Data/Masks/Anomaly/{i:03d}.png" if i == 0 else ""  # empty -> conventional path
            rows.append([category, "test", "anomaly", f"{category}/Data/Images/Anomaly/{i:03d}.JPG", mask])
    (root / "split_csv").mkdir()
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)


def test_visa_layout_index_load_and_mask_alignment(tmp_path: Path) -> None:
    make_visa(tmp_path)
    assert list_categories(tmp_path) == ["candle", "pcb1"]
    train = index_dataset(tmp_path, "train")
    test = index_dataset(tmp_path, "test", "pcb1")
    assert [(s.category, s.label) for s in train] == [("candle", 0)] * 3 + [("pcb1", 0)] * 3
    assert [(s.defect, s.label, s.mask is not None) for s in test] == [
        ("anomaly", 1, True),
        ("anomaly", 1, True),
        ("good", 0, False),
    ]
    assert test[1].mask == tmp_path / "pcb1" / "Data" / "Masks" / "Anomaly" / "001.png"
    dataset = AnomalyDataset(test, image_size=32)
    for index, sample in enumerate(test):
        item = dataset[index]
        assert tuple(item["orig_hw"].tolist()) == load_image(sample.image).shape[:2]
        if sample.label:
            inside = item["image"].mean(0)[item["mask"][0] > 0]
            outside = item["image"].mean(0)[item["mask"][0] == 0]
            assert inside.mean() > 0.9 and outside.mean() < 0.2


def test_visa_defective_images_without_masks_are_image_level_samples(tmp_path: Path) -> None:
    """An empty mask column and no conventional mask file: the image keeps its label, mask None."""
    make_visa(tmp_path)
    for mask in (tmp_path / "pcb1" / "Data" / "Masks" / "Anomaly").iterdir():
        mask.unlink()
    rows = (tmp_path / "split_csv" / "1cls.csv").read_text().replace("pcb1/Data/Masks/Anomaly/000.png", "")
    (tmp_path / "split_csv" / "1cls.csv").write_text(rows)
    test = index_dataset(tmp_path, "test", ["pcb1"])
    assert [(s.label, s.mask) for s in test] == [(1, None), (1, None), (0, None)]
    items = [AnomalyDataset(test, image_size=16)[i] for i in range(len(test))]
    assert [item["has_mask"] for item in items] == [False, False, False]
    assert [s.mask is not None for s in index_dataset(tmp_path, "test", ["candle"]) if s.label] == [True, True]


def test_visa_missing_split_csv_and_missing_named_mask(tmp_path: Path) -> None:
    make_visa(tmp_path)
    (tmp_path / "pcb1" / "Data" / "Masks" / "Anomaly" / "000.png").unlink()  # named in the CSV's mask column
    with pytest.raises(
        SnladError, match=r"1cls\.csv line \d+: mask .*Masks/Anomaly/000\.png of image .*000\.JPG does not exist"
    ):
        index_dataset(tmp_path, "test", ["pcb1"])
    (tmp_path / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(SnladError, match=r"split_csv/1cls\.csv is missing"):
        index_dataset(tmp_path, "train")


def test_visa_mask_without_image(tmp_path: Path) -> None:
    make_visa(tmp_path)
    save(tmp_path / "candle" / "Data" / "Masks" / "Anomaly" / "777.png", box_mask(60, 80, (0, 0, 5, 5)))
    with pytest.raises(SnladError, match=r"mask .*777\.png has no defective image"):
        index_dataset(tmp_path, "test", ["candle"])


def make_folder(root: Path) -> Path:
    """A plain-folder category: train/*.png (one .PNG), test/good, two defect types, mixed mask placement."""
    cat = root / "gadget"
    save(cat / "train" / "a.png", box_image(30, 40, (0, 0, 0, 0)))
    save(cat / "train" / "B.PNG", box_image(30, 40, (0, 0, 0, 0)))
    (cat / "train" / "notes.txt").write_text("not an image")
    save(cat / "train" / ".hidden.png", box_image(30, 40, (0, 0, 0, 0)))
    save(cat / "test" / "good" / "g.bmp", box_image(30, 40, (0, 0, 0, 0)))
    save(cat / "test" / "dent" / "d1.tif", box_image(30, 40, (2, 2, 12, 12)))
    save(cat / "masks" / "dent" / "d1_mask.png", box_mask(30, 40, (2, 2, 12, 12)))
    save(cat / "test" / "hole" / "h1.jpg", box_image(30, 40, (10, 10, 20, 30)), quality=95)
    save(cat / "masks" / "h1.png", box_mask(30, 40, (10, 10, 20, 30)))
    save(cat / "test" / "hole" / "h2.jpeg", box_image(30, 40, (0, 0, 5, 5)), quality=95)  # no mask: allowed
    return cat


def test_folder_layout(tmp_path: Path) -> None:
    cat = make_folder(tmp_path)
    train = index_dataset(tmp_path, "train")
    assert [s.image.name for s in train] == ["B.PNG", "a.png"]
    test = index_dataset(tmp_path, "test")
    assert [(s.image.name, s.defect, s.label, s.mask) for s in test] == [
        ("d1.tif", "dent", 1, cat / "masks" / "dent" / "d1_mask.png"),
        ("g.bmp", "good", 0, None),
        ("h1.jpg", "hole", 1, cat / "masks" / "h1.png"),
        ("h2.jpeg", "hole", 1, None),
    ]
    items = [AnomalyDataset(test, image_size=16)[i] for i in range(len(test))]
    assert [item["has_mask"] for item in items] == [True, False, True, False]
    assert items[0]["mask"].sum() > 0 and items[3]["mask"].sum() == 0


def test_folder_mask_without_image_and_ambiguous_mask(tmp_path: Path) -> None:
    cat = make_folder(tmp_path)
    save(cat / "masks" / "zz.png", box_mask(30, 40, (0, 0, 3, 3)))
    with pytest.raises(SnladError, match=r"mask .*zz\.png has no defective image"):
        index_dataset(tmp_path, "test")
    (cat / "masks" / "zz.png").unlink()
    save(cat / "test" / "dent" / "h1.png", box_image(30, 40, (0, 0, 3, 3)))
    with pytest.raises(SnladError, match=r"mask .*h1\.png matches two images"):
        index_dataset(tmp_path, "test")


def test_mvtec_defective_images_without_masks_are_image_level_samples(tmp_path: Path) -> None:
    """One mask missing (a mixed category), then none at all (casting / ELPV style, no ground_truth folder)."""
    cat = make_mvtec(tmp_path)
    (cat / "ground_truth" / "scratch" / "001_mask.png").unlink()
    test = index_dataset(tmp_path, "test")
    assert [(s.image.name, s.label, s.mask) for s in test] == [
        ("000.png", 0, None),
        ("000.png", 1, cat / "ground_truth" / "scratch" / "000_mask.png"),
        ("001.png", 1, None),
    ]
    items = [AnomalyDataset(test, image_size=16)[i] for i in range(len(test))]
    assert [item["has_mask"] for item in items] == [False, True, False]
    assert items[2]["label"] == 1 and items[2]["mask"].sum() == 0
    shutil.rmtree(cat / "ground_truth")
    assert [(s.label, s.mask) for s in index_dataset(tmp_path, "test")] == [(0, None), (1, None), (1, None)]
    assert len(index_dataset(tmp_path, "train")) == 3


def test_mvtec_mask_without_image(tmp_path: Path) -> None:
    cat = make_mvtec(tmp_path)
    save(cat / "ground_truth" / "scratch" / "009_mask.png", box_mask(40, 50, (0, 0, 2, 2)))
    with pytest.raises(SnladError, match=r"009_mask\.png has no defective image: expected .*test/scratch/009"):
        index_dataset(tmp_path, "test")
    (cat / "ground_truth" / "scratch" / "009_mask.png").unlink()
    save(cat / "ground_truth" / "crack" / "000_mask.png", box_mask(40, 50, (0, 0, 2, 2)))
    with pytest.raises(SnladError, match=r"crack/000_mask\.png has no defective image"):
        index_dataset(tmp_path, "test")


# ---------------------------------------------------------------- root / category errors


def test_root_and_category_errors(tmp_path: Path) -> None:
    with pytest.raises(SnladError, match="does not exist"):
        list_categories(tmp_path / "nope")
    (tmp_path / "empty" / "docs").mkdir(parents=True)
    with pytest.raises(SnladError, match=r"no category found under .*empty: looked for MVTec .*VisA .*folder.*docs"):
        index_dataset(tmp_path / "empty", "train")
    cat = make_mvtec(tmp_path / "data", "widget")
    with pytest.raises(SnladError, match=r"looks like one category: pass its parent"):
        list_categories(cat)
    with pytest.raises(SnladError, match=r"unknown category 'gizmo' .*known categories: widget"):
        index_dataset(tmp_path / "data", "train", ["gizmo"])
    with pytest.raises(SnladError, match="unknown split"):
        index_dataset(tmp_path / "data", "val")


def test_category_without_training_images(tmp_path: Path) -> None:
    make_mvtec(tmp_path, "widget", train=0)
    with pytest.raises(SnladError, match=r"'widget' has no training images.*widget/train/good"):
        index_dataset(tmp_path, "train")
    assert len(index_dataset(tmp_path, "test")) == 3
    (tmp_path / "plain" / "train").mkdir(parents=True)
    with pytest.raises(SnladError, match=r"'plain' has no training images.*plain/train"):
        index_dataset(tmp_path, "train", "plain")


# ---------------------------------------------------------------- decoding


def gradient(height: int = 12, width: int = 16) -> np.ndarray:
    """A uint8 horizontal ramp, so orientation and scaling mistakes show."""
    return np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))


def assert_rgb(pixels: np.ndarray, shape: tuple[int, int]) -> None:
    assert pixels.dtype == np.uint8 and pixels.shape == (*shape, 3)


def test_odd_modes_load_as_rgb_uint8(tmp_path: Path) -> None:
    ramp = gradient()
    gray = load_image(save(tmp_path / "l.png", Image.fromarray(ramp, "L")))
    assert_rgb(gray, (12, 16))
    assert np.array_equal(gray[..., 0], ramp) and np.array_equal(gray[..., 1], gray[..., 2])

    alpha = np.full((12, 16), 255, np.uint8)
    alpha[:, :8] = 0
    la = load_image(save(tmp_path / "la.png", Image.fromarray(np.dstack([ramp, alpha]), "LA")))
    assert_rgb(la, (12, 16))
    assert (la[:, :8] == 0).all() and np.array_equal(la[:, 8:, 0], ramp[:, 8:])  # composited on black

    rgba_pixels = np.dstack([np.full((12, 16, 3), 200, np.uint8), np.full((12, 16), 128, np.uint8)])
    rgba = load_image(save(tmp_path / "rgba.png", Image.fromarray(rgba_pixels, "RGBA")))
    assert_rgb(rgba, (12, 16))
    assert abs(int(rgba[0, 0, 0]) - 100) <= 1

    palette = Image.fromarray(ramp, "L").convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p = load_image(save(tmp_path / "p.png", palette))
    assert_rgb(p, (12, 16))
    assert np.abs(p[..., 0].astype(int) - ramp).max() < 24

    transparent = Image.fromarray(np.where(ramp > 128, 1, 0).astype(np.uint8), "P")
    transparent.putpalette([255, 255, 255, 0, 255, 0] + [0] * 762)
    pt = load_image(save(tmp_path / "pt.png", transparent, transparency=0))
    assert (pt[ramp <= 128] == 0).all() and (pt[ramp > 128] == (0, 255, 0)).all()

    cmyk = Image.new("CMYK", (16, 12), (0, 0, 0, 0))
    cmyk.paste((0, 0, 0, 255), (0, 0, 8, 12))
    c = load_image(save(tmp_path / "cmyk.jpg", cmyk, quality=95))
    assert_rgb(c, (12, 16))
    assert c[:, :6].max() < 30 and c[:, 10:].min() > 225

    one_bit = Image.fromarray(ramp > 128).convert("1")
    b = load_image(save(tmp_path / "one.png", one_bit))
    assert set(np.unique(b).tolist()) == {0, 255}


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 16384, 32768, 49152, 65535]], np.uint16).repeat(3, axis=0)
    path = save(tmp_path / "deep.png", Image.fromarray(values))
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    pixels = load_image(path)
    assert_rgb(pixels, (3, 6))
    assert pixels[0, :, 0].tolist() == [0, 1, 64, 128, 191, 255]

    wide = np.array([[-5, 0, 2**20, 2**30, 2**31 - 1]], np.int32)  # signed 32-bit TIFF
    assert load_image(save(tmp_path / "wide.tif", Image.fromarray(wide)))[0, :, 0].tolist() == [0, 0, 0, 128, 255]
    floats = np.array([[0.0, 0.5, 1.0, 3.0, -1.0]], np.float32)
    assert load_image(save(tmp_path / "float.tif", Image.fromarray(floats, "F")))[0, :, 0].tolist() == [
        0,
        128,
        255,
        255,
        0,
    ]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = save(tmp_path / "rotated.jpg", Image.fromarray(pixels), exif=exif.tobytes(), quality=95)
    upright = load_image(path)
    assert upright.shape == (20, 10, 3)
    assert upright[:8].mean() > 200 and upright[12:].mean() < 50  # stored left half is now on top


def test_masks_decode_to_bool(tmp_path: Path) -> None:
    mask = box_mask(12, 16, (2, 3, 6, 9))
    expected = mask > 0
    assert np.array_equal(load_mask(save(tmp_path / "m.png", mask), (12, 16)), expected)
    rgb = np.dstack([np.zeros_like(mask), mask, np.zeros_like(mask)])
    assert np.array_equal(load_mask(save(tmp_path / "rgb.png", rgb), (12, 16)), expected)
    deep = (expected.astype(np.uint16)) * 1  # value 1 of 65535 still counts as defect
    assert np.array_equal(load_mask(save(tmp_path / "deep.png", Image.fromarray(deep)), (12, 16)), expected)


def test_truncation_flag_is_not_enabled() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("kind", ["missing", "zero", "text", "truncated_png", "truncated_jpg", "bomb"])
def test_bad_image_files_raise_naming_the_file(tmp_path: Path, kind: str) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    if kind == "missing":
        path = tmp_path / "missing.png"
    elif kind == "zero":
        path = tmp_path / "zero.png"
        path.touch()
    elif kind == "text":
        path = tmp_path / "text.png"
        path.write_text("this is not an image")
    elif kind == "bomb":
        path = png_bomb(tmp_path / "bomb.png")
    else:
        suffix = kind.split("_")[1]
        full = save(tmp_path / f"full.{suffix}", noise)
        path = tmp_path / f"cut.{suffix}"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(SnladError) as error:
        load_image(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    with pytest.raises(SnladError, match=path.name):
        load_mask(path, (64, 64))


def test_mask_size_mismatch_names_both_files(tmp_path: Path) -> None:
    cat = make_mvtec(tmp_path)
    wrong = cat / "ground_truth" / "scratch" / "001_mask.png"
    save(wrong, box_mask(20, 25, (0, 0, 5, 5)))
    test = index_dataset(tmp_path, "test")  # sizes are checked lazily, at load
    dataset = AnomalyDataset(test, image_size=16)
    index = next(i for i, s in enumerate(test) if s.mask == wrong)
    with pytest.raises(SnladError) as error:
        dataset[index]
    message = str(error.value)
    assert str(wrong) in message and str(test[index].image) in message
    assert "25x20" in message and "50x40" in message


# ---------------------------------------------------------------- dataset tensors


def test_dataset_items_have_the_contracted_types(tmp_path: Path) -> None:
    make_mvtec(tmp_path)
    samples = index_dataset(tmp_path, "test")
    dataset = AnomalyDataset(samples, image_size=24)
    assert len(dataset) == 3
    for index, sample in enumerate(samples):
        item = dataset[index]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 24, 24)
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert item["mask"].dtype == torch.float32 and item["mask"].shape == (1, 24, 24)
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert (item["mask"].sum() > 0) == bool(sample.label)
        assert item["label"] == sample.label and item["category"] == "widget"
        assert item["path"] == str(sample.image)
        assert item["orig_hw"].dtype == torch.int64 and item["orig_hw"].tolist() == [40, 50]
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=3)))
    assert batch["image"].shape == (3, 3, 24, 24) and batch["orig_hw"].shape == (3, 2)


def test_mask_resize_stays_binary_and_images_stay_in_range(tmp_path: Path) -> None:
    checker = (np.indices((97, 131)).sum(0) % 2 * 255).astype(np.uint8)  # worst case for interpolation
    image = save(tmp_path / "img.png", np.dstack([checker] * 3))
    mask = save(tmp_path / "mask.png", checker)
    sample = Sample(image, "c", 1, "noise", mask)
    item = AnomalyDataset([sample], image_size=50)[0]
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    with pytest.raises(SnladError, match="image_size"):
        AnomalyDataset([sample], image_size=0)


# ---------------------------------------------------------------- hold-out split


def good(category: str, count: int) -> list[Sample]:
    return [Sample(Path(f"/d/{category}/{i:03d}.png"), category, 0, "good", None) for i in range(count)]


def test_holdout_split_is_deterministic_stratified_and_disjoint() -> None:
    samples = good("a", 20) + good("b", 4) + good("c", 1)
    train, held = holdout_split(samples, 0.2, seed=7)
    assert (train, held) == holdout_split(samples, 0.2, seed=7)
    assert holdout_split(samples, 0.2, seed=8) != (train, held)
    assert set(train).isdisjoint(held) and set(train) | set(held) == set(samples)
    assert Counter(s.category for s in held) == Counter({"a": 4, "b": 1})  # c: its only image stays in train
    assert {s.category for s in train} == {"a", "b", "c"}
    # a category's split does not depend on the other categories present
    assert holdout_split(good("a", 20), 0.2, seed=7)[1] == [s for s in held if s.category == "a"]
    assert holdout_split(samples, 0.0, seed=7) == (samples, [])
    assert len(holdout_split(good("b", 4), 0.99, seed=1)[0]) == 1  # never all held out


def test_holdout_split_rejects_bad_input() -> None:
    with pytest.raises(SnladError, match="fraction"):
        holdout_split(good("a", 4), 1.0, seed=0)
    defective = Sample(Path("/d/a/bad.png"), "a", 1, "crack", Path("/d/a/bad_mask.png"))
    with pytest.raises(SnladError, match="bad.png"):
        holdout_split([*good("a", 4), defective], 0.5, seed=0)


def test_noise_patches_change_one_rectangle_per_image_by_smooth_noise_of_rd_plus_plus_size() -> None:
    from snlad.data.noise import fractal_noise, noise_patches, patch_sides

    assert patch_sides(256) == (10, 32)  # RD++'s sides at 256 px
    images = torch.rand(6, 3, 64, 64)
    noisy = noise_patches(images, generator=torch.Generator().manual_seed(0))
    low, high = patch_sides(64)
    for image, copy in zip(images, noisy):
        changed = (copy != image).any(dim=0)
        rows, columns = changed.any(dim=1).nonzero()[:, 0], changed.any(dim=0).nonzero()[:, 0]
        height, width = int(rows[-1] - rows[0]) + 1, int(columns[-1] - columns[0]) + 1
        assert low <= height < high and low <= width < high
        assert int(changed.sum()) == height * width  # one filled rectangle, nothing outside it
        assert float((copy - image).abs().max()) <= 0.2 + 1e-6
    noise = fractal_noise((3, 40, 40), generator=torch.Generator().manual_seed(1))
    assert float(noise.abs().max()) <= 1 and float(noise.std()) > 0.05
    roughness = float((noise[:, 1:] - noise[:, :-1]).abs().mean())
    assert roughness < 0.5 * float(
        (torch.rand(3, 40, 40)[:, 1:] * 2 - 1 - (torch.rand(3, 39, 40) * 2 - 1)).abs().mean()
    )
