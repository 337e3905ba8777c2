"""CRAM: central residual aggregation module (SNL part 2, reconstruction).

The paper adds a CRAM after every student block to "encapsulate the normal
representation space of the student". Our reading (NetVLAD-like, see
SNL_METHOD.md): K learnable centres, a soft assignment of every position to
the centres, and the residual to the assigned centres fed back through a
zero-initialised projection, so the module starts as the identity and learns
how far to pull features towards normal centres.
"""

from __future__ import annotations

import torch
from torch import nn


class CRAM(nn.Module):
    """y = x + phi(x - sum_k a_k(x) c_k), with phi's last BatchNorm zero-initialised.

    Since the soft assignments sum to one, ``sum_k a_k (x - c_k)`` equals
    ``x - sum_k a_k c_k``; computing it that way avoids a B x K x C x H x W tensor.
    """

    def __init__(self, channels: int, num_centres: int) -> None:
        super().__init__()
        self.assign = nn.Conv2d(channels, num_centres, kernel_size=1)
        self.centres = nn.Parameter(torch.randn(num_centres, channels) * 0.1)
        self.project = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.project[1].weight)  # identity at initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x C x H x W -> B x C x H x W."""
        assignment = torch.softmax(self.assign(x), dim=1)  # B x K x H x W
        aggregated_centres = torch.einsum("bkhw,kc->bchw", assignment, self.centres)
        return x + self.project(x - aggregated_centres)


def maybe_cram(enabled: bool, channels: int, num_centres: int) -> nn.Module:
    """A CRAM where the config switches it on, else the identity (same call site for ablations)."""
    return CRAM(channels, num_centres) if enabled else nn.Identity()
