"""Score new images: scores.csv, one map per image, overlays and defect masks.

Unreadable files are skipped and listed at the end instead of stopping a long
run; every output file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from snlad.data import IMAGE_EXTENSIONS, AnomalyDataset, Sample, load_image
from snlad.engine.inference import infer
from snlad.errors import SnladError, notice
from snlad.files import (
    atomic_write_bytes,
    confined,
    exclusive_lock,
    remove_stale_temporaries,
    write_csv,
    write_json,
    write_npy,
)
from snlad.runs.trained import TrainedModel
from snlad.visualisation.render import (
    THRESHOLD_AT,
    calibrated_scale,
    caption,
    colour_scale,
    mask_to_uint8,
    overlay,
    png_bytes,
)


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted, not recursive)."""
    images: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                raise SnladError(f"folder {item} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            images += found
        elif item.is_file():
            images.append(item)
        elif item.exists():
            raise SnladError(
                f"input {item} is not a regular file (a FIFO, socket or device); pass image files or folders"
            )
        else:
            raise SnladError(f"input {item} does not exist; pass image files or folders of images")
    return images


class SkippingDataset(Dataset):
    """AnomalyDataset that returns the error message instead of raising for a bad file."""

    def __init__(self, samples: Sequence[Sample], image_size: int) -> None:
        self.inner = AnomalyDataset(samples, image_size)
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        try:
            return {**self.inner[index], "error": ""}
        except SnladError as error:
            return {"path": str(self.samples[index].image), "error": str(error)}


def _collate(items: list[dict]) -> dict:
    good = [item for item in items if not item["error"]]
    batch = torch.utils.data.default_collate(good) if good else {"image": torch.empty(0)}
    batch["failed"] = [(item["path"], item["error"]) for item in items if item["error"]]
    return batch


def output_names(paths: Sequence[Path]) -> dict[str, str]:
    """Map each path to its output name: its path below the folder all inputs share, without the suffix.

    ``test/crack/000.png`` and ``test/good/000.png`` become ``crack/000`` and
    ``good/000``, so outputs mirror the input's sub-folders and the class can
    be read from the path; images of one folder keep their bare stems. Two
    inputs that would still share a name (``a.png``, ``a.jpg``) get ``_1``, ``_2``.
    """
    parents = [path.absolute().parent for path in paths]
    common = Path(os.path.commonpath(parents)) if parents else Path()
    names: dict[str, str] = {}
    used: set[str] = set()
    for path, parent in zip(paths, parents, strict=True):
        name = base = (parent.relative_to(common) / path.stem).as_posix()
        suffix = 1
        while name in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        used.add(name)
        names[str(path)] = name
    return names


MAP_RESOLUTIONS = ("original", "model", "none")
MAP_DTYPES = ("float32", "float16")
TINY_SIDE = 32  # an image smaller than this on a side is scored from almost no pixels: said, not refused
OUTPUTS = {"maps": ".npy", "overlays": ".png", "masks": ".png"}  # what predict writes besides scores.csv


MANIFEST = ".snlad-prediction.json"  # the files a predict wrote: only these are ever replaced or deleted


def earlier_outputs(out_dir: Path, overwrite: bool) -> set[Path]:
    """What an earlier predict wrote in ``out_dir`` (its manifest); refused without ``overwrite``, never mixed in.

    Only files the manifest names count: a folder that also holds the user's
    own ``masks/`` (a plain-layout category as ``--out``) keeps them. The
    files are not deleted here: a new prediction replaces them one by one
    (atomically), and :func:`remove_leftovers` deletes the rest only once it
    has finished, so a failure half-way (full disk) loses nothing the user had.
    """
    earlier = {path for path in _read_manifest(out_dir) if path.exists()}
    if earlier and not overwrite:
        raise SnladError(
            f"{out_dir} already holds predictions ({len(earlier)} files): use --overwrite to replace them, or another --out"
        )
    for folder in (out_dir, *(out_dir / name for name in OUTPUTS)):
        remove_stale_temporaries(folder)
    return earlier


def _read_manifest(out_dir: Path) -> set[Path]:
    path = out_dir / MANIFEST
    if not path.is_file():
        return set()
    try:
        names = json.loads(path.read_text())["files"]
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise SnladError(
            f"{path} is corrupt: delete it (and the prediction it describes), or use another --out"
        ) from None
    return {confined(out_dir, name, f"{path} names") for name in names}


def _write_manifest(out_dir: Path, files: set[Path]) -> None:
    write_json(out_dir / MANIFEST, {"files": sorted(path.relative_to(out_dir).as_posix() for path in files)})


def planned_outputs(out_dir: Path, stems: Iterable[str], maps: str, masks: bool) -> set[Path]:
    """Every file a prediction of ``stems`` writes: scores.csv, overlays, and maps and masks where asked for."""
    folders = ["overlays", *(["maps"] if maps != "none" else []), *(["masks"] if masks else [])]
    return {out_dir / "scores.csv"} | {
        out_dir / folder / f"{stem}{OUTPUTS[folder]}" for stem in stems for folder in folders
    }


def remove_leftovers(earlier: set[Path], written: set[Path]) -> None:
    """Delete the earlier prediction's files that the finished new one did not write again."""
    for path in earlier - written:
        path.unlink(missing_ok=True)


def predict(
    trained: TrainedModel,
    inputs: Iterable[str | Path],
    out_dir: Path,
    category: str | None = None,
    batch_size: int = 8,
    maps: str = "original",
    map_dtype: str = "float32",
    overwrite: bool = False,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Write scores.csv, maps/<output>.npy, overlays/<output>.png and, calibrated, masks/<output>.png.

    ``maps`` "original": the map at each image's own size (float32: 4 bytes per
    pixel, 96 MB for a 6000 x 4000 image), overlays and masks at that size too;
    "model": everything at the model's S x S (the overlay over the resized
    image); "none": no .npy files, overlays and masks at the image's size.
    ``map_dtype`` "float16" halves the .npy files. With a calibrated
    ``category``, scores.csv gets ``is_anomalous`` (score > threshold) and
    masks/ the binary defect masks (map > pixel threshold); see docs/thresholds.md.
    Output names mirror the inputs' sub-folders below the folder they share
    (``good/006``: :func:`output_names`); scores.csv's ``output`` column says which.

    Returns the score rows and the (path, error) of every skipped file.
    """
    if maps not in MAP_RESOLUTIONS or map_dtype not in MAP_DTYPES:
        raise SnladError(
            f"maps must be one of {', '.join(MAP_RESOLUTIONS)} and map_dtype one of {', '.join(MAP_DTYPES)}"
        )
    out_dir = Path(out_dir)
    paths = collect_images(inputs)
    with exclusive_lock(out_dir, "snlad predict"):  # two predicts into one folder would mix their files
        return _predict_locked(trained, paths, out_dir, category, batch_size, maps, map_dtype, overwrite)


def _predict_locked(
    trained: TrainedModel,
    paths: list[Path],
    out_dir: Path,
    category: str | None,
    batch_size: int,
    maps: str,
    map_dtype: str,
    overwrite: bool,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """:func:`predict` with ``out_dir`` locked: refuse to touch what is not snlad's, then score and write."""
    earlier = earlier_outputs(out_dir, overwrite)
    calibration = trained.calibration.get(category, {}) if category else {}
    threshold, pixel_threshold = calibration.get("threshold"), calibration.get("pixel_threshold")
    stems = output_names(paths)
    planned = planned_outputs(out_dir, stems.values(), maps, pixel_threshold is not None)
    _refuse_foreign(planned, earlier)
    _write_manifest(out_dir, earlier | planned)  # first: a prediction killed half-way still knows its files
    written: set[Path] = set()
    loader = _image_loader(trained, paths, category, batch_size)
    rows: list[dict] = []
    failed: list[tuple[str, str]] = []
    try:
        for batch, batch_maps, scores in infer(trained, loader, desc="predicting"):
            failed += batch["failed"]
            for path, size, anomaly_map, score in zip(
                batch.get("path", []), batch.get("orig_hw", []), batch_maps, scores
            ):
                height, width = (int(v) for v in size)
                if min(height, width) < TINY_SIDE:
                    notice(
                        f"image {path} is only {width}x{height} px: it is scored after resizing to {trained.config.data.image_size} px, and its map carries little information"
                    )
                stem = stems[path]
                written |= _write_outputs(
                    out_dir,
                    stem,
                    path,
                    anomaly_map,
                    (height, width),
                    maps,
                    map_dtype,
                    calibration,
                    pixel_threshold,
                    verdict(float(score), threshold),
                )
                row = {"image": path, "output": stem, "score": float(score)}
                if threshold is not None:
                    row["is_anomalous"] = int(float(score) > threshold)
                rows.append(row)
    except KeyboardInterrupt:  # Ctrl-C keeps the scores of the images already done
        _write_scores(out_dir / "scores.csv", rows)
        raise
    _write_scores(out_dir / "scores.csv", rows)
    remove_leftovers(earlier, written | {out_dir / "scores.csv"})
    _write_manifest(out_dir, written | {out_dir / "scores.csv"})
    return rows, failed


def _refuse_foreign(planned: set[Path], earlier: set[Path]) -> None:
    """Never replace a file this prediction would write that no earlier snlad predict wrote."""
    foreign = sorted(path for path in planned - earlier if path.exists())
    if foreign:
        raise SnladError(
            f"{foreign[0]} exists and was not written by snlad predict ({len(foreign)} such file(s) would be replaced): "
            "choose another --out"
        )


def _image_loader(trained: TrainedModel, paths: list[Path], category: str | None, batch_size: int) -> DataLoader:
    """The input images as model inputs in batches; an unreadable one is skipped and named in its batch's "failed"."""
    samples = [Sample(image=p, category=category or "", label=0, defect="unknown", mask=None) for p in paths]
    return DataLoader(
        SkippingDataset(samples, trained.config.data.image_size),
        batch_size=batch_size,
        collate_fn=_collate,
        num_workers=trained.config.data.num_workers,
    )


def verdict(score: float, threshold: float | None) -> str:
    """The overlay's caption: the image score and, with a threshold, the decision it makes."""
    if threshold is None:
        return f"score {score:.4g} (no threshold)"
    return f"score {score:.4g} {'>' if score > threshold else '<='} {threshold:.4g}: {'DEFECTIVE' if score > threshold else 'normal'}"


def _write_outputs(
    out_dir: Path,
    stem: str,
    path: str,
    anomaly_map: torch.Tensor,
    size: tuple[int, int],
    maps: str,
    map_dtype: str,
    calibration: dict,
    pixel_threshold: float | None,
    label: str,
) -> set[Path]:
    """One image's map (.npy), overlay (captioned with ``label``) and mask, at the resolution ``maps`` asks for.

    Returns the files written.
    """
    picture = load_image(path)
    if maps == "model":
        side = anomaly_map.shape[-1]
        picture = np.asarray(Image.fromarray(picture).resize((side, side), Image.Resampling.BILINEAR))
        resized = anomaly_map.numpy()
    else:
        resized = F.interpolate(anomaly_map[None, None], size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    written = {out_dir / "overlays" / f"{stem}.png"}
    threshold_at = THRESHOLD_AT if calibrated_scale(calibration) else None  # the colour bar's tick
    pictured = caption(overlay(picture, resized, colour_scale(calibration, resized)), label, threshold_at)
    atomic_write_bytes(out_dir / "overlays" / f"{stem}.png", png_bytes(pictured))
    if pixel_threshold is not None:
        written.add(out_dir / "masks" / f"{stem}.png")
        atomic_write_bytes(out_dir / "masks" / f"{stem}.png", png_bytes(mask_to_uint8(resized > pixel_threshold)))
    if maps != "none":
        written.add(out_dir / "maps" / f"{stem}.npy")
        write_npy(out_dir / "maps" / f"{stem}.npy", resized.astype(map_dtype))
    return written


def _write_scores(path: Path, rows: list[dict]) -> None:
    write_csv(
        path, ["image", "output", "score"] + (["is_anomalous"] if rows and "is_anomalous" in rows[0] else []), rows
    )
