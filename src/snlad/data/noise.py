"""Pseudo-anomalies for training: a patch of smooth noise added to a normal image (RD++'s projection is trained on them).

RD++ (Tien et al., CVPR 2023) adds 0.2 x three-dimensional simplex noise (6
octaves, persistence 0.6) to one rectangle of each training image, with sides
drawn from [10, S/8) at S = 256. Simplex noise would need a package outside
the project's dependencies; this module adds the same kind of signal (smooth,
multi-scale, in [-1, 1] before scaling, independent per colour channel) as
fractal *value* noise: random values on coarse grids, bilinearly upsampled and
summed over octaves with amplitudes persistence^k. The rectangle's sides scale
with the image (10..32 px at 256 px).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NOISE_AMPLITUDE = 0.2  # RD++: the noise added to images in [0, 1]
NOISE_OCTAVES = 6
NOISE_PERSISTENCE = 0.6


def fractal_noise(
    shape: tuple[int, int, int],
    octaves: int = NOISE_OCTAVES,
    persistence: float = NOISE_PERSISTENCE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """C x H x W smooth noise in [-1, 1]: octave k holds random values on a (2^k + 1)-point grid per side."""
    channels, height, width = shape
    total = torch.zeros(channels, height, width)
    amplitude, weights = 1.0, 0.0
    for octave in range(octaves):
        points = 2**octave + 1
        grid = torch.rand(1, channels, points, points, generator=generator) * 2 - 1
        total += amplitude * F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=True)[0]
        weights += amplitude
        amplitude *= persistence
    return total / weights


def patch_sides(size: int) -> tuple[int, int]:
    """The range [low, high) of a noise rectangle's side at image side ``size`` (RD++: [10, 32) at 256)."""
    low = max(1, round(size * 10 / 256))
    return low, max(low + 1, size // 8)


def noise_patches(
    images: torch.Tensor, amplitude: float = NOISE_AMPLITUDE, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A copy of ``images`` (B x C x S x S, values in [0, 1]) with one rectangle of fractal noise added to each image.

    Not clipped, as in RD++: the teacher sees the noise at its full size.
    """
    noisy = images.clone()
    batch, channels, size, _ = images.shape
    low, high = patch_sides(size)
    for index in range(batch):
        height, width = (int(side) for side in torch.randint(low, high, (2,), generator=generator))
        top = int(torch.randint(0, size - height + 1, (1,), generator=generator))
        left = int(torch.randint(0, size - width + 1, (1,), generator=generator))
        patch = amplitude * fractal_noise((channels, height, width), generator=generator)
        noisy[index, :, top : top + height, left : left + width] += patch.to(images.device, images.dtype)
    return noisy
