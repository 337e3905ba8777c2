"""In-memory inference: a run loaded once, images scored where they are, nothing written.

``snlad predict`` is for folders of files; an inspection loop that already
holds its frames (PIL images, numpy arrays from a camera, tensors) wants the
scores, maps and decisions back as objects. :class:`Detector` gives them,
through the same preprocessing as training and ``predict`` (RGB by the file
rules, bilinear squash to the model's size, [0, 1]), the same
inference-optimised model and the same thresholds, so a frame scores exactly
as the same picture saved as a PNG and given to ``snlad predict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from snlad.data import as_rgb, model_input, read_rgb
from snlad.engine.inference import score_tensors
from snlad.engine.optimise import optimise_for_inference
from snlad.errors import SnladError
from snlad.runs.trained import TrainedModel

ImageLike = Image.Image | np.ndarray | torch.Tensor | str | Path
"""A PIL image; an H x W or H x W x 3/4 array (uint8, or float in [0, 1]); a 3 x H x W or H x W tensor in [0, 1]; a file."""


@dataclass
class Detection:
    """What a run says about one image."""

    score: float  # the image score (higher = more anomalous)
    map: np.ndarray  # H x W float32 anomaly map, at the image's own size
    anomalous: bool | None  # score > the image threshold; None when the category has no threshold
    mask: np.ndarray | None  # H x W bool, map > the pixel threshold; None without one


def to_rgb(image: ImageLike) -> Image.Image:
    """Any :data:`ImageLike` as a Pillow RGB image (what a file decodes to)."""
    if isinstance(image, str | Path):
        return read_rgb(image)
    if isinstance(image, Image.Image):
        return as_rgb(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        image = np.moveaxis(image, 0, -1) if image.ndim == 3 and image.shape[0] in (1, 3, 4) else image
    if not isinstance(image, np.ndarray):
        raise SnladError(f"cannot score a {type(image).__name__}: give PIL images, numpy arrays, tensors or file paths")
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4):
        image = image[..., 0] if image.shape[-1] == 1 else image[..., :3]
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise SnladError(f"an image array must be H x W or H x W x 3 (or 3 x H x W as a tensor), got {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(image).convert("RGB")


class Detector:
    """A trained model of a run and one category's thresholds, ready to score images in memory.

    ``category`` picks the thresholds (and, in a one-class run, the model);
    without it, detections carry scores and maps only.
    """

    def __init__(self, trained: TrainedModel, category: str | None = None) -> None:
        self.trained = optimise_for_inference(trained)
        calibration = trained.calibration.get(category, {}) if category is not None else {}
        self.threshold: float | None = calibration.get("threshold")
        self.pixel_threshold: float | None = calibration.get("pixel_threshold")

    def score(self, images: ImageLike | Sequence[ImageLike], batch_size: int = 8) -> list[Detection]:
        """One :class:`Detection` per image (a single image gives a list of one)."""
        many = isinstance(images, list | tuple)
        pictures = [to_rgb(image) for image in (images if many else [images])]
        size = self.trained.config.data.image_size
        inputs = torch.stack([model_input(picture, size) for picture in pictures])
        maps, scores = score_tensors(self.trained, inputs, batch_size)
        detections = []
        for picture, anomaly_map, score in zip(pictures, maps, scores, strict=True):
            full = F.interpolate(anomaly_map[None, None], size=picture.size[::-1], mode="bilinear", align_corners=False)
            full = full[0, 0].numpy()
            detections.append(
                Detection(
                    float(score),
                    full,
                    None if self.threshold is None else float(score) > self.threshold,
                    None if self.pixel_threshold is None else full > self.pixel_threshold,
                )
            )
        return detections
