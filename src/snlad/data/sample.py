"""The one record every layout reader produces and every consumer reads.

Readers for MVTec AD, VisA and plain folders all reduce to this record, so the
rest of snlad (training, calibration, evaluation) never needs to know which
layout a dataset came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One image of a dataset, with where its ground truth lives.

    Attributes:
        image: path of the image file (root joined with the layout's relative path).
        category: category (object/texture class) the image belongs to.
        label: 0 for a defect-free image, 1 for a defective one.
        defect: ``"good"`` for defect-free images, otherwise the defect type
            (the defect folder name; ``"anomaly"`` for VisA, which has no types).
        mask: path of the binary defect mask; ``None`` for good images and for
            defective images of a layout whose masks are optional and absent.
            Pixel-level metrics must skip defective samples whose mask is ``None``
            rather than treat them as all-background.
    """

    image: Path
    category: str
    label: int
    defect: str
    mask: Path | None
