"""RD++'s multi-projection layer: the teacher's features pass through a trained projection before the bottleneck.

Revisiting Reverse Distillation (Tien et al., CVPR 2023; github.com/tientrandinh/
Revisiting-Reverse-Distillation): RD's student reconstructs the teacher's
features from an embedding of those same features, so an anomaly can travel
through the bottleneck and be reconstructed too. RD++ inserts one projection
per level (four 3 x 3 convolutions, C -> C/2 -> C/4 -> C/2 -> C, each with
instance norm and leaky ReLU) between the teacher and the bottleneck, and trains
it (``loss.projection``, ``snlad.losses``) to map a pseudo-anomalous image's
features onto the clean image's projection, and the clean projection away from
the pseudo-anomalous teacher features: the bottleneck then receives features
with the anomaly removed. The decoder's output is still compared with the
teacher's own features; the projection stays in place at inference.

While training, :class:`FeatureProjection` records (pseudo-anomalous teacher
features, their projection, the clean projection) for the loss term; the
pseudo-anomalies are ``snlad.data.noise.noise_patches`` of the batch's images.
"""

from __future__ import annotations

from torch import nn

from snlad.models.teacher_student import Features


def projection_layer(channels: int) -> nn.Sequential:
    """RD++'s ProjLayer for one level: C -> C/2 -> C/4 -> C/2 -> C, 3 x 3 convolutions, instance norm, leaky ReLU."""
    widths = [channels, max(1, channels // 2), max(1, channels // 4), max(1, channels // 2), channels]
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Conv2d(width_in, width_out, 3, padding=1), nn.InstanceNorm2d(width_out), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class FeatureProjection(nn.Module):
    """One :func:`projection_layer` per teacher level; records what the loss's projection term needs while training."""

    auxiliary_key = "projection"

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = nn.ModuleList(projection_layer(c) for c in channels)
        self.recorded: tuple[Features, Features, Features] | None = None

    def train(self, mode: bool = True) -> FeatureProjection:
        """Switching mode forgets the last training pass (its tensors belong to a graph deepcopy refuses)."""
        self.recorded = None
        return super().train(mode)

    def project(self, features: Features) -> Features:
        return [layer(level) for layer, level in zip(self.levels, features, strict=True)]

    def forward(self, features: Features, pseudo_anomalous: Features | None = None) -> Features:
        """The projected ``features``; in training with ``pseudo_anomalous`` teacher features, also records them
        with their projection and the clean projection (``auxiliary()["projection"]``)."""
        projected = self.project(features)
        recording = self.training and pseudo_anomalous is not None
        self.recorded = (pseudo_anomalous, self.project(pseudo_anomalous), projected) if recording else None
        return projected
