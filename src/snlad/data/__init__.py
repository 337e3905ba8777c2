"""Data layer: find dataset images on disk, decode them robustly, stream them as tensors.

Layout rules (MVTec AD, VisA, plain folder) are documented in
:mod:`snlad.data.layouts`; decoding rules (modes, bit depths, alpha, EXIF,
limits) in :mod:`snlad.data.image_io`.
"""

from snlad.data.dataset import AnomalyDataset, holdout_split, load_tensors, model_input
from snlad.data.image_io import IMAGE_EXTENSIONS, as_rgb, load_image, load_mask, read_rgb
from snlad.data.layouts import detect_layout, index_dataset, list_categories
from snlad.data.sample import Sample

__all__ = [
    "IMAGE_EXTENSIONS",
    "AnomalyDataset",
    "Sample",
    "as_rgb",
    "detect_layout",
    "holdout_split",
    "index_dataset",
    "list_categories",
    "load_tensors",
    "load_image",
    "load_mask",
    "model_input",
    "read_rgb",
]
