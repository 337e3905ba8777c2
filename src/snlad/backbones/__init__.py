"""Teacher and student backbones: three feature levels at strides 4, 8 and 16.

A pretrained, frozen :class:`Backbone` is the teacher; the same architecture with
random weights is the STPM-style student. Only the layers up to stride 16 are
built, since nothing after them is used for anomaly detection.
"""

import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from snlad.backbones.fold import ConvBN, fold_batchnorm
from snlad.errors import SnladError

__all__ = ["BACKBONE_NAMES", "Backbone", "ConvBN", "build_backbone", "fold_batchnorm"]

BACKBONE_NAMES = (
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "resnet18",
    "wide_resnet50_2",
)

# A checkpoint may legitimately lack these (older torchvision files do): BatchNorm
# then starts its counter at zero, which eval-mode inference never reads.
_OPTIONAL_KEY_SUFFIX = ".num_batches_tracked"


class Backbone(nn.Module):
    """Feature extractor returning the outputs of ``stages[0..2]`` (strides 4, 8, 16).

    ``stages`` is public so a student can place a module between two levels;
    stage 0 includes the stem and takes the normalised image. ``forward`` takes
    RGB in [0, 1] and normalises it itself, so callers never need to know what
    input statistics the pretrained weights were trained with.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        channels: tuple[int, int, int],
        *,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = channels
        # Not persistent: they are constants of the architecture, not weights,
        # and must not show up in (or be required from) checkpoints.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        _init_weights(self)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map an RGB batch in [0, 1] to the input range the network was trained on."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.normalize(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def build_backbone(
    name: str, *, pretrained: bool, weights: str | os.PathLike | None = None
) -> Backbone:
    """Build backbone ``name``; pretrained ImageNet weights for a teacher, random init for a student.

    ``weights`` overrides the bundled EfficientNet-Lite file and is required for the
    ResNets (no ImageNet weights ship with snlad for them). Any problem with the
    file is raised as a one-line :class:`SnladError` naming it.
    """
    # Imported here because both modules build on Backbone and the loaders above.
    from snlad.backbones.efficientnet_lite import build_efficientnet_lite
    from snlad.backbones.resnet import build_resnet

    if weights is not None and not pretrained:
        raise ValueError("weights were given for a randomly initialised backbone")
    if name not in BACKBONE_NAMES:
        raise SnladError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONE_NAMES)}")
    if name.startswith("efficientnet_lite"):
        return build_efficientnet_lite(name, pretrained=pretrained, weights=weights)
    return build_resnet(name, pretrained=pretrained, weights=weights)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a tensor state dict from ``path`` without ever executing pickled code.

    ``weights_only=True`` refuses any object but tensors and plain containers, so
    a hostile file cannot run code. ``{"state_dict": ...}`` / ``{"model": ...}``
    wrappers and a DataParallel ``module.`` prefix are accepted because training
    scripts commonly save them.
    """
    path = Path(path)
    if not path.is_file():
        raise SnladError(f"teacher weights {path} do not exist; check the path given to --teacher-weights")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise SnladError(
            f"teacher weights {path} were refused by torch.load(weights_only=True), which reads "
            f"only tensors and plain containers, never code: {unpickling_detail(error)}"
        ) from error
    except Exception as error:  # corrupt files surface as many exception types
        raise SnladError(
            f"teacher weights {path} cannot be read as a torch file (corrupt, truncated or "
            f"another format): {_first_sentence(error)}"
        ) from error
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict) or not loaded:
        raise SnladError(
            f"teacher weights {path} are not a state dict: expected a non-empty dict of "
            f"parameter names to tensors, found {type(loaded).__name__}"
        )
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SnladError(
                f"teacher weights {path} are not a state dict: entry {key!r} holds "
                f"{type(value).__name__}, not a tensor"
            )
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def load_checkpoint(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    path: str | os.PathLike,
    arch: str,
    checkpoint_key: Callable[[str], str],
    ignored: Callable[[str], bool],
) -> None:
    """Load ``state`` (checkpoint naming) into ``module``, requiring an exact match.

    ``checkpoint_key`` maps each of ``module``'s state-dict keys to the checkpoint's
    name for it; checkpoint keys for which ``ignored`` is true (layers past
    stride 16, classifier heads) are dropped. Everything else must match in
    name and shape; otherwise one SnladError line summarises what is wrong,
    in the checkpoint's own key names so the user can find them in the file.
    """
    model_state = module.state_dict()
    expected = {checkpoint_key(key): key for key in model_state}
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_KEY_SUFFIX)]
    unexpected = [k for k in state if k not in expected and not ignored(k)]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(model_state[expected[k]].shape)}"
        for k in expected
        if k in state and state[k].shape != model_state[expected[k]].shape
    ]
    problems = [
        f"{_count(len(found), what)} (e.g. {found[0]})"
        for found, what in (
            (missing, "missing key"),
            (unexpected, "unexpected key"),
            (mismatched, "shape mismatch"),
        )
        if found
    ]
    if problems:
        raise SnladError(f"teacher weights {path} do not match {arch}: {', '.join(problems)}")
    module.load_state_dict({expected[k]: v for k, v in state.items() if k in expected}, strict=True)


def _init_weights(module: nn.Module) -> None:
    """Kaiming (fan-out) convs and identity BatchNorm: the usual from-scratch start for a student."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def _first_sentence(error: BaseException) -> str:
    """The gist of an exception message in one line (torch's run to a paragraph)."""
    message = " ".join(str(error).split()).split(". ")[0].rstrip(".")
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def unpickling_detail(error: pickle.UnpicklingError, fallback: str = "refused by torch.load(weights_only=True)") -> str:
    """The line of torch's weights-only refusal that names the offending object or opcode.

    Shared by every safe loader (teacher weights here, run checkpoints in engine.checkpoint).
    """
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    for line in str(error).splitlines():
        if line.strip() and not line.startswith(boilerplate):
            return line.strip().rstrip(".")
    return fallback


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun}es" if noun.endswith("h") else f"{n} {noun}s"
