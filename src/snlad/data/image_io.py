"""Decode any image file a user is likely to have into 8-bit RGB or a boolean mask.

Industrial datasets arrive in every storage format a camera or an export tool
can produce, and a model only sees what this module hands it. The rules:

* Every image becomes ``H x W x 3 uint8`` RGB, after its EXIF orientation is
  applied (so a phone or camera shot is upright, as a person looking at it sees
  it; its mask must then be drawn on the upright image too).
* Grayscale (``1``, ``L``, ``P`` without transparency) is replicated to three
  channels; ``CMYK`` and other colour modes use Pillow's conversion.
* Images with transparency (``RGBA``, ``LA``, ``PA``, ``P``/``L``/``RGB`` with a
  transparency key) are composited onto black. Colour values under fully
  transparent pixels are arbitrary (often garbage from the export tool);
  compositing gives every such pixel the same background, whereas dropping
  alpha would feed that garbage to the model. Opaque images are unchanged.
* High-bit-depth grayscale (``I;16*``, 16-bit PNG/TIFF, and 32-bit ``I``) is
  scaled linearly from its bit depth to 8 bits (65535 -> 255 for 16-bit), so
  relative intensities survive. Pillow's own ``convert("L")`` clips everything
  above 255 to white, which would erase the image. The bit depth is the TIFF
  ``BitsPerSample`` tag when present, else 16 (the deepest PNG can store);
  signed TIFF samples (``SampleFormat`` 2) scale their positive range and
  clip negatives to black.
* Floating-point images (``F``) are read as intensities in [0, 1] and clipped;
  a fixed range is used on purpose: stretching each image to its own min/max
  would normalise away exactly the brightness anomalies a detector must see.
* Decompression bombs are refused above ``Image.MAX_IMAGE_PIXELS`` (about 89
  Mpixel by default; Pillow itself only warns up to twice that and then
  decodes gigabytes); the value is left unmodified, so a user with genuinely
  larger images can raise it deliberately.
* Truncated files never load silently: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is
  never set here and pixels are decoded eagerly inside the error handler.

Masks use the same decoding; a mask pixel is a defect when any of its values is
nonzero (after alpha compositing, so transparent strokes count as background).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from snlad.errors import SnladError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
_HIGH_DEPTH_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_TIFF_BITS_PER_SAMPLE = 258
_TIFF_SAMPLE_FORMAT = 339
_TIFF_SIGNED = 2
# Corrupt files make Pillow's decoders raise a zoo of exception types.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


def is_image_file(path: Path) -> bool:
    """True for a visible regular file with a supported image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _decode(path: Path, what: str) -> tuple[Image.Image, float]:
    """Fully decode ``path`` into an upright in-memory image and the value that means full white.

    The full-scale value is read before the EXIF transposition because
    transposing returns a plain copy without the TIFF tags it comes from.
    ``what`` ("image" or "mask") only words the error message.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SnladError(f"{what} file not found: {path}; check the path or re-index the dataset") from None
    except OSError as error:
        raise SnladError(f"cannot access {what} file {path}: {error.strerror}; check its permissions") from None
    if size == 0:
        raise SnladError(f"{what} file {path} is empty (0 bytes); re-copy it or delete it")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that, then decodes gigabytes: refused here too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return ImageOps.exif_transpose(image), _full_scale(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SnladError(
            f"{what} file {path} is larger than the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS} pixels "
            f"(decoding it takes gigabytes, its float32 map alone {4 * Image.MAX_IMAGE_PIXELS // 2**20} MB); "
            "downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS if it is genuine"
        ) from None
    except PermissionError:
        raise SnladError(
            f"cannot read {what} file {path}: permission denied; check its permissions (chmod a+r)"
        ) from None
    except _DECODE_ERRORS as error:
        reason = " ".join(str(error).split())  # keep the message on one line
        raise SnladError(
            f"cannot decode {what} file {path} ({type(error).__name__}: {reason}); "
            "it is truncated, corrupt or not an image: re-copy it or delete it"
        ) from None


def _first(value: object) -> int:
    """A TIFF tag value, which Pillow gives as a tuple for per-sample tags."""
    return int(value[0] if isinstance(value, tuple) else value)


def _full_scale(image: Image.Image) -> float:
    """The sample value of full white in an integer grayscale image, from its bit depth and signedness."""
    tags = getattr(image, "tag_v2", None) or {}
    bits = _first(tags[_TIFF_BITS_PER_SAMPLE]) if _TIFF_BITS_PER_SAMPLE in tags else 16
    signed = _TIFF_SAMPLE_FORMAT in tags and _first(tags[_TIFF_SAMPLE_FORMAT]) == _TIFF_SIGNED
    return float(2 ** (bits - 1) - 1 if signed else 2**bits - 1)


def _high_depth_to_uint8(image: Image.Image, full_scale: float) -> np.ndarray:
    """Scale an ``I``/``I;16*``/``F`` image linearly to uint8 (see module docstring)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        scaled = values * 255.0
    else:
        scaled = np.clip(values, 0.0, full_scale) * (255.0 / full_scale)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image, full_scale: float, path: Path) -> Image.Image:
    """Convert a decoded image of any Pillow mode to ``RGB`` by the module's rules."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _HIGH_DEPTH_INT_MODES or image.mode == "F":
        return Image.fromarray(_high_depth_to_uint8(image, full_scale), "L").convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise SnladError(
            f"image file {path} has Pillow mode {image.mode!r}, which cannot be converted to RGB; re-save it as RGB"
        ) from None


def as_rgb(image: Image.Image) -> Image.Image:
    """An image already in memory (any Pillow mode) as ``RGB``, by the same rules as a file."""
    return _to_rgb(image, _full_scale(image), Path("<in-memory image>"))


def read_rgb(path: str | Path) -> Image.Image:
    """Read an image file as an upright Pillow ``RGB`` image (the dataset resizes it in Pillow)."""
    path = Path(path)
    image, full_scale = _decode(path, "image")
    return _to_rgb(image, full_scale, path)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as a writable ``H x W x 3`` uint8 RGB array (EXIF orientation applied)."""
    return np.array(read_rgb(path))


def load_mask(path: str | Path, expected_hw: tuple[int, int], *, image: str | Path | None = None) -> np.ndarray:
    """Read a defect mask as an ``H x W`` bool array (nonzero = defect).

    ``expected_hw`` is the (height, width) of the image the mask belongs to; a
    mask of another size is refused rather than resized, because a size
    mismatch means the mask was drawn for a different image or resolution.
    ``image`` names that image in the error message.
    """
    path = Path(path)
    decoded, full_scale = _decode(path, "mask")
    if decoded.mode in _HIGH_DEPTH_INT_MODES or decoded.mode in {"1", "L", "F"}:
        mask = np.asarray(decoded) != 0
    else:
        mask = np.asarray(_to_rgb(decoded, full_scale, path)).any(axis=2)
    if mask.shape != tuple(expected_hw):
        height, width = expected_hw
        owner = f"its image {image}" if image is not None else "its image"
        raise SnladError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but {owner} is {width}x{height}; "
            "re-export the mask at the image's resolution"
        )
    return mask
