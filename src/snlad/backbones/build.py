"""Build a backbone by name: the teacher with its pretrained weights, or a student from scratch."""

from __future__ import annotations

import os

from snlad.backbones.base import Backbone
from snlad.backbones.efficientnet_lite import EFFICIENTNET_LITE_NAMES, build_efficientnet_lite
from snlad.backbones.resnet import RESNET_NAMES, build_resnet
from snlad.errors import SnladError

BACKBONE_NAMES = (*EFFICIENTNET_LITE_NAMES, *RESNET_NAMES)


def build_backbone(name: str, *, pretrained: bool, weights: str | os.PathLike | None = None) -> Backbone:
    """Build backbone ``name``; pretrained ImageNet weights for a teacher, random init for a student.

    ``weights`` overrides the bundled EfficientNet-Lite file and is required for the
    ResNets (no ImageNet weights ship with snlad for them). Any problem with the
    file is raised as a one-line :class:`SnladError` naming it.
    """
    if weights is not None and not pretrained:
        raise ValueError("weights were given for a randomly initialised backbone")
    if name in EFFICIENTNET_LITE_NAMES:
        return build_efficientnet_lite(name, pretrained=pretrained, weights=weights)
    if name in RESNET_NAMES:
        return build_resnet(name, pretrained=pretrained, weights=weights)
    raise SnladError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")
