"""Score new images: scores.csv, one full-resolution map per image, overlays.

Unreadable files are skipped and listed at the end instead of stopping a long
run; every output file is written atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from snlad.data import IMAGE_EXTENSIONS, AnomalyDataset, Sample, load_image
from snlad.engine.inference import infer
from snlad.engine.trained import TrainedModel
from snlad.errors import SnladError
from snlad.files import atomic_write_bytes, write_csv, write_npy
from snlad.render import ColourScale, mask_to_uint8, overlay, png_bytes


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


def _unique_stems(paths: Sequence[Path]) -> dict[str, str]:
    """Map each path to an output stem; a repeated stem gets its parent folder's name prefixed."""
    stems: dict[str, str] = {}
    used: set[str] = set()
    for path in paths:
        stem = path.stem if path.stem not in used else f"{path.parent.name}_{path.stem}"
        suffix = 1
        while stem in used:
            stem, suffix = f"{path.parent.name}_{path.stem}_{suffix}", suffix + 1
        used.add(stem)
        stems[str(path)] = stem
    return stems


def predict(
    trained: TrainedModel,
    inputs: Iterable[str | Path],
    out_dir: Path,
    category: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Write scores.csv, maps/<stem>.npy (float32, original H x W) and overlays/<stem>.png.

    With a calibrated ``category``, scores.csv gets ``is_anomalous`` (score > threshold) and
    masks/<stem>.png holds the binary defect mask (map > pixel threshold, original H x W);
    see docs/thresholds.md.

    Returns the score rows and the (path, error) of every skipped file.
    """
    out_dir = Path(out_dir)
    paths = collect_images(inputs)
    calibration = trained.calibration.get(category, {}) if category else {}
    threshold, pixel_threshold = calibration.get("threshold"), calibration.get("pixel_threshold")
    samples = [Sample(image=p, category=category or "", label=0, defect="unknown", mask=None) for p in paths]
    loader = DataLoader(
        SkippingDataset(samples, trained.config.data.image_size),
        batch_size=batch_size,
        collate_fn=_collate,
        num_workers=trained.config.data.num_workers,
    )
    stems = _unique_stems(paths)
    rows: list[dict] = []
    failed: list[tuple[str, str]] = []
    try:
        for batch, maps, scores in infer(trained, loader, progress, desc="predicting"):
            failed += batch["failed"]
            for path, size, anomaly_map, score in zip(batch.get("path", []), batch.get("orig_hw", []), maps, scores):
                height, width = (int(v) for v in size)
                full = F.interpolate(
                    anomaly_map[None, None], size=(height, width), mode="bilinear", align_corners=False
                )[0, 0].numpy()
                stem = stems[path]
                write_npy(out_dir / "maps" / f"{stem}.npy", full.astype(np.float32))
                scale = ColourScale(0.0, 2 * threshold if threshold else float(full.max()))
                atomic_write_bytes(
                    out_dir / "overlays" / f"{stem}.png", png_bytes(overlay(load_image(path), full, scale))
                )
                if pixel_threshold is not None:
                    atomic_write_bytes(
                        out_dir / "masks" / f"{stem}.png", png_bytes(mask_to_uint8(full > pixel_threshold))
                    )
                row = {"image": path, "score": float(score)}
                if threshold is not None:
                    row["is_anomalous"] = int(float(score) > threshold)
                rows.append(row)
    except KeyboardInterrupt:  # Ctrl-C keeps the scores of the images already done
        _write_scores(out_dir / "scores.csv", rows)
        raise
    _write_scores(out_dir / "scores.csv", rows)
    return rows, failed


def _write_scores(path: Path, rows: list[dict]) -> None:
    write_csv(path, ["image", "score"] + (["is_anomalous"] if rows and "is_anomalous" in rows[0] else []), rows)
