"""Stream samples from disk as model-ready tensors, and hold out normals for calibration."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from snlad.data.image_io import load_mask, read_rgb
from snlad.data.sample import Sample
from snlad.errors import SnladError


def model_input(image: Image.Image, image_size: int) -> torch.Tensor:
    """An RGB image as the model sees it: squashed to ``image_size`` square (bilinear), 3 x S x S float32 in [0, 1]."""
    size = (image_size, image_size)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


class AnomalyDataset(Dataset):
    """Decode, resize and tensorise samples lazily, one item at a time.

    Images are squashed to ``image_size x image_size`` (aspect ratio not kept,
    as in the MVTec AD protocol; ``orig_hw`` lets anomaly maps be resized back)
    with Pillow's antialiased bilinear filter, and returned in [0, 1] without
    normalisation because each teacher network applies its own statistics.
    Masks are resized with nearest neighbour so they stay exactly binary.

    There is no augmentation: a flip or rotation is exactly what some
    categories call a defect (MVTec's metal_nut "flip", a misplaced transistor),
    and shifts or zooms would make training images differ in scale from the
    test pipeline.

    Each item is a dict with ``image`` (float32, 3 x S x S), ``mask`` (float32,
    1 x S x S in {0, 1}; zeros when there is no mask), ``label`` (int),
    ``category`` (str), ``path`` (str), ``orig_hw`` (int64 tensor [H, W]) and
    ``has_mask`` (bool: False for good images and for defective images without
    a mask, whose zero mask must not enter pixel-level metrics).
    """

    def __init__(self, samples: Sequence[Sample], image_size: int = 256) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise SnladError(f"image_size must be a positive integer, got {image_size!r}")
        self.samples = list(samples)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        size = (self.image_size, self.image_size)
        image = read_rgb(sample.image)
        width, height = image.size
        pixels = model_input(image, self.image_size)
        if sample.mask is None:
            mask = torch.zeros((1, *size), dtype=torch.float32)
        else:
            binary = load_mask(sample.mask, (height, width), image=sample.image)
            resized = Image.fromarray(binary.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
            mask = torch.from_numpy(np.asarray(resized) > 0).to(torch.float32).unsqueeze(0)
        return {
            "image": pixels,
            "mask": mask,
            "label": sample.label,
            "category": sample.category,
            "path": str(sample.image),
            "orig_hw": torch.tensor([height, width], dtype=torch.int64),
            "has_mask": sample.mask is not None,
        }


def load_tensors(samples: Sequence[Sample], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images N x 3 x S x S in [0, 1] and boolean masks N x S x S, resized as for testing (probes, report)."""
    if not samples:
        raise SnladError("no images to load")
    dataset = AnomalyDataset(samples, image_size)
    items = [dataset[index] for index in range(len(dataset))]
    return torch.stack([item["image"] for item in items]), torch.stack([item["mask"][0] > 0.5 for item in items])


def holdout_split(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split good training samples into (train, held_out), per category, deterministically.

    Held-out normals calibrate thresholds and select hyper-parameters, so test
    images never influence a reported number. Per category with ``n`` samples,
    ``round(n * fraction)`` are held out, but at least one whenever
    ``fraction > 0`` and ``n >= 2`` (so every category can be calibrated), and
    never all of them (at least one stays for training). Each category is
    shuffled by its own generator seeded from ``seed`` and the category name, so
    adding or removing a category does not change the others' splits. Both
    lists keep the input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise SnladError(f"hold-out fraction must be in [0, 1), got {fraction!r}")
    by_category: dict[str, list[int]] = {}
    for position, sample in enumerate(samples):
        if sample.label != 0:
            raise SnladError(
                f"holdout_split got defective image {sample.image}; pass good training samples only "
                "(index_dataset(root, 'train'))"
            )
        by_category.setdefault(sample.category, []).append(position)
    held: set[int] = set()
    for category, positions in by_category.items():
        count = len(positions)
        take = min(count - 1, max(1, round(count * fraction))) if fraction > 0 else 0
        order = sorted(positions, key=lambda p: samples[p].image.as_posix())
        rng = np.random.default_rng([seed % 2**64, zlib.crc32(category.encode("utf-8"))])
        held.update(order[i] for i in rng.permutation(count)[:take])
    train = [sample for position, sample in enumerate(samples) if position not in held]
    held_out = [sample for position, sample in enumerate(samples) if position in held]
    return train, held_out
