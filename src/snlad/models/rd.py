"""RD: reverse distillation (Deng & Li, CVPR 2022, RD4AD).

Teacher encoder -> one-class bottleneck embedding (OCBE) -> student decoder
that mirrors the encoder. Written for any teacher from its three channel
counts (c1, c2, c3 at strides 4, 8, 16), so EfficientNet-Lite and ResNet
teachers share the code. With SNL a CRAM follows each decoder stage.

Differences from RD4AD, on purpose: decoder stages end in a linear conv (an
EfficientNet-Lite block output is linear and can be negative, unlike a ResNet
layer output after ReLU), and the bottleneck width is 2 * c3 (RD4AD: 2048 for
c3 = 1024, the same ratio). RD4AD's decoder has 3, 4, 6 blocks per stage;
ours one each by default (``model.decoder_blocks``). ``model.bottleneck_dropout``
adds dropout on the embedding while training (Dinomaly's noisy bottleneck).
``model.projection`` puts RD++'s trained projection between the teacher and
the bottleneck (``snlad.models.projection``), trained on pseudo-anomalies.
"""

from __future__ import annotations

import torch
from torch import nn

from snlad.backbones import Backbone
from snlad.data.noise import noise_patches
from snlad.models.projection import FeatureProjection
from snlad.models.teacher_student import Features, TeacherStudent


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualDown(nn.Module):
    """Stride-2 residual block: the OCBE's 'one-class embedding' layer (RD4AD bn_layer)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, stride=2),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class OCBE(nn.Module):
    """Fuse the three teacher levels at stride 16, embed them at stride 32."""

    def __init__(self, channels: tuple[int, int, int], bottleneck_channels: int) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.level1_down = nn.Sequential(conv_bn_relu(c1, c2, stride=2), conv_bn_relu(c2, c3, stride=2))
        self.level2_down = conv_bn_relu(c2, c3, stride=2)
        self.level3_in = conv_bn_relu(c3, c3)
        self.embed = ResidualDown(3 * c3, bottleneck_channels)

    def forward(self, features: Features) -> torch.Tensor:
        """features: teacher levels (B x c_i x S/4^..) -> B x bottleneck x S/32 x S/32."""
        fused = torch.cat(
            [self.level1_down(features[0]), self.level2_down(features[1]), self.level3_in(features[2])], dim=1
        )
        return self.embed(fused)


class DecoderStage(nn.Module):
    """Upsample x2 and refine with ``blocks`` residual blocks; the output is linear so it can match any teacher's range.

    Between blocks a ReLU, as in a ResNet stage; the last block's sum stays linear. The first block
    keeps the name ``refine`` (a one-block stage loads the model files written before depth was a setting).
    """

    def __init__(self, in_channels: int, out_channels: int, blocks: int = 1) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.refine = self._block(out_channels)
        self.more = nn.ModuleList(self._block(out_channels) for _ in range(blocks - 1))

    @staticmethod
    def _block(channels: int) -> nn.Sequential:
        return nn.Sequential(conv_bn_relu(channels, channels), nn.Conv2d(channels, channels, 3, padding=1))

    @property
    def blocks(self) -> int:
        return 1 + len(self.more)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        x = x + self.refine(x)
        for block in self.more:
            x = x + block(torch.relu(x))
        return x


class ReverseDistillation(TeacherStudent):
    def __init__(
        self,
        teacher: Backbone,
        crams: nn.ModuleList,
        decoder_blocks: tuple[int, int, int] = (1, 1, 1),
        bottleneck_dropout: float = 0.0,
        projection: bool = False,
    ) -> None:
        super().__init__(teacher)
        c1, c2, c3 = teacher.channels
        bottleneck = 2 * c3
        self.projection = FeatureProjection(teacher.channels) if projection else None
        self.bottleneck = OCBE(teacher.channels, bottleneck)
        self.noise = nn.Dropout(bottleneck_dropout)  # training only: the decoder cannot rely on every embedding value
        # Deepest first: stride 32 -> 16 -> 8 -> 4.
        widths = [(bottleneck, c3), (c3, c2), (c2, c1)]
        self.decoder = nn.ModuleList(
            DecoderStage(a, b, blocks) for (a, b), blocks in zip(widths, decoder_blocks, strict=True)
        )
        self.crams = crams  # after decoder stage i (deepest first), compared with teacher level 2 - i
        self.cram_levels = (2, 1, 0)

    def student_features(self, images: torch.Tensor, teacher_features: Features) -> Features:
        x = self.noise(self.bottleneck(self._projected(images, teacher_features)))
        decoded = []
        for stage, cram in zip(self.decoder, self.crams):
            x = cram(stage(x))
            decoded.append(x)
        return decoded[::-1]  # strides 4, 8, 16, like the teacher

    def _projected(self, images: torch.Tensor, teacher_features: Features) -> Features:
        """What the bottleneck receives: the teacher's features, or their RD++ projection (in training also the
        projection of a pseudo-anomalous copy of the batch, for the loss)."""
        if self.projection is None:
            return teacher_features
        pseudo_anomalous = None
        if self.training:
            with torch.no_grad():
                pseudo_anomalous = [f.detach() for f in self.teacher(noise_patches(images))]
        return self.projection(teacher_features, pseudo_anomalous)
