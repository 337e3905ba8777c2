"""Teacher and student backbones: three feature levels at strides 4, 8 and 16.

A pretrained, frozen :class:`Backbone` is the teacher; the same architecture with
random weights is the STPM-style student. Only the layers up to stride 16 are
built, since nothing after them is used for anomaly detection.
"""

from snlad.backbones.base import LEVEL_STRIDES, Backbone
from snlad.backbones.build import BACKBONE_NAMES, build_backbone
from snlad.backbones.fold import ConvBN, fold_batchnorm
from snlad.backbones.weights import read_state_dict

__all__ = [
    "BACKBONE_NAMES",
    "LEVEL_STRIDES",
    "Backbone",
    "ConvBN",
    "build_backbone",
    "fold_batchnorm",
    "read_state_dict",
]
