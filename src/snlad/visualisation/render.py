"""Pictures of images, masks and anomaly maps as uint8 arrays and PNG bytes (predict, probes, report).

One overlay for every place that shows a map: the map, mapped through a
:class:`ColourScale` to the jet colours, blended half and half over the image,
and one rule for the scale (:func:`colour_scale`): with a calibrated
category, blue is the typical normal pixel and the decision threshold sits at
two thirds of the colour bar (yellow-orange), so everything the model would
mark as defect is yellow to red, whatever range the model's maps live in.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


@dataclass(frozen=True)
class ColourScale:
    """Map values ``low`` .. ``high`` onto the bottom .. top of the colour map (values outside are clipped)."""

    low: float
    high: float

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Values -> [0, 1] (float32: a 24 Mpixel map stays 96 MB)."""
        span = np.float32(max(self.high - self.low, 1e-12))
        return np.clip((np.asarray(values, dtype=np.float32) - np.float32(self.low)) / span, 0.0, 1.0)


THRESHOLD_AT = 2 / 3  # where the decision threshold sits on the colour bar (jet: yellow-orange)


def colour_scale(calibration: dict | None, maps: np.ndarray) -> ColourScale:
    """The colour scale of a category's maps: from its calibration when it has one, else the range of ``maps``.

    Calibrated: ``low`` = the median held-out normal pixel (``pixel_floor``),
    ``pixel_threshold`` at :data:`THRESHOLD_AT` of the range. Uncalibrated (no
    category given, no held-out normals, or a run calibrated before
    ``pixel_floor`` existed): the lowest to the highest value of ``maps``.
    """
    return calibrated_scale(calibration) or ColourScale(float(np.min(maps)), float(np.max(maps)))


def calibrated_scale(calibration: dict | None) -> ColourScale | None:
    """The scale a calibration fixes (pixel threshold at :data:`THRESHOLD_AT`), or None when it fixes none."""
    floor, threshold = (calibration or {}).get("pixel_floor"), (calibration or {}).get("pixel_threshold")
    if floor is not None and threshold is not None and threshold > floor:
        return ColourScale(floor, floor + (threshold - floor) / THRESHOLD_AT)
    return None


OPACITY = (0.2, 0.8)  # the map's opacity at the bottom and the top of the colour scale


def overlay(image: np.ndarray, anomaly_map: np.ndarray, scale: ColourScale) -> np.ndarray:
    """H x W x 3 uint8 image and H x W map -> the jet-coloured map blended over the image, more opaque where higher.

    A fixed half-and-half blend tinted every normal part dark blue (the bottom
    of jet), hiding the part; here a typical normal pixel lets 80 % of the
    image through and a pixel at the top of the scale 20 %.
    """
    level = scale.normalise(anomaly_map)
    colours = matplotlib.colormaps["jet"](level, bytes=True)[..., :3]  # uint8, not float64 RGBA
    weight = (OPACITY[0] + (OPACITY[1] - OPACITY[0]) * level)[..., None]
    return (image * (1 - weight) + colours * weight).round().astype(np.uint8)


CAPTION_MIN_WIDTH = 96  # px: narrower overlays get no caption (it would cover the picture)


def caption(picture: np.ndarray, text: str, threshold_at: float | None) -> np.ndarray:
    """``picture`` with a dark band along its bottom: ``text`` and the colour bar (its threshold tick, when calibrated).

    Drawn inside the picture, so an overlay keeps the image's size and lines up with it.
    """
    height, width = picture.shape[:2]
    if width < CAPTION_MIN_WIDTH:
        return picture
    band = max(16, height // 14)
    out = Image.fromarray(picture)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0))
    bar_left, bar_width = width * 3 // 4, width // 4 - band // 4
    size = band * 2 // 3
    while size > 6 and draw.textlength(text, font=ImageFont.load_default(size=size)) > bar_left - band // 2:
        size -= 1  # shrink the text to fit beside the colour bar
    font = ImageFont.load_default(size=size)
    draw.text((band // 4, height - band + band // 8), text, fill=(255, 255, 255), font=font)
    gradient = matplotlib.colormaps["jet"](np.linspace(0, 1, bar_width), bytes=True)[None, :, :3]
    bar = np.repeat(gradient, band // 2, axis=0)
    out.paste(Image.fromarray(bar), (bar_left, height - band + band // 4))
    if threshold_at is not None:
        tick = bar_left + round(threshold_at * (bar_width - 1))
        draw.line((tick, height - band + 1, tick, height - 2), fill=(255, 255, 255), width=max(1, band // 8))
    return np.asarray(out)


def png_bytes(image: np.ndarray) -> bytes:
    """An H x W (x 3) uint8 array as PNG file contents."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """3 x S x S in [0, 1] -> S x S x 3 uint8, for display."""
    return (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def mask_to_uint8(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """H x W bool -> H x W uint8, 255 = defect, 0 = normal (how masks are stored on disk)."""
    return np.asarray(mask, dtype=np.uint8) * 255


def mask_to_rgb(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """H x W bool -> white-on-black H x W x 3 uint8, for figure grids of RGB cells."""
    return np.repeat(mask_to_uint8(mask)[..., None], 3, axis=2)
