"""Run configuration: typed dataclasses, model presets, YAML files and dotted overrides.

Every hyper-parameter lives here with a comment saying where its default comes
from, so nothing is a literal inside a training loop. Resolution order:
model preset (``fd``, ``rd``, ``snl-fd``, ``snl-rd``) -> YAML file -> ``key=value``
overrides. An unknown key or a value of the wrong type is a :class:`SnladError`
naming the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from snlad.errors import SnladError, brief
from snlad.files import atomic_write_text

MODEL_NAMES = ("fd", "rd", "snl-fd", "snl-rd", "patchcore")  # the presets
ARCHITECTURES = ("fd", "rd", "patchcore")  # what model.architecture builds: snlad.models.BUILDERS
PRESET_ARCHITECTURES = {"fd": "fd", "snl-fd": "fd", "rd": "rd", "snl-rd": "rd", "patchcore": "patchcore"}
"""Each preset's architecture; also what a config file written before ``model.architecture`` existed means."""
CHOICES: dict[str, tuple[str, ...]] = {
    "model.name": MODEL_NAMES,  # PRESETS
    "model.architecture": ARCHITECTURES,  # snlad.models.BUILDERS
    "model.cram_output": ("residual", "centres", "bottleneck"),  # snlad.models.cram.CRAM_OUTPUTS
    "model.cram_init": ("random", "kmeans", "kmeans-soft"),  # snlad.models.cram.CRAM_INITS
    "loss.affinity_distance": ("l1", "l2"),  # snlad.losses.distillation.AFFINITY_DISTANCES
    "loss.affinity_mode": ("pooled", "local"),  # snlad.losses.distillation.AFFINITY_MODES
    "loss.spatial_kind": ("cos", "kl"),  # snlad.losses.distillation.SPATIAL_KINDS
    "loss.inter_kind": ("cross", "batch"),  # snlad.losses.distillation.INTER_KINDS
    "map.distance": ("cosine", "euclidean"),  # snlad.scoring.maps.DISTANCES
    "map.affinity_mode": ("pooled", "local"),  # snlad.scoring.maps.STRUCTURAL_MODES
    "map.image_score": ("max", "topk"),  # snlad.scoring.maps.IMAGE_SCORES
    "train.amp": ("none", "bf16"),  # snlad.engine.precision.PRECISIONS
    "train.schedule": ("constant", "cosine"),  # snlad.engine.train.SCHEDULES
}
"""Every string setting that picks an implementation, and the names it accepts.

Each is implemented by a registry (name -> implementation) in the module that
uses it, tied to this list by :func:`check_registry` at import, so no name is
accepted that nothing implements and no implementation hides behind an ``else``.
"""
RESUMABLE_SETTINGS = ("train.epochs", "train.device", "data.num_workers", "data.cache_mb", "train.teacher_cache_mb")
"""What ``--resume`` may change: more epochs, where and how fast it runs; anything else would not continue the same training."""


# Bounds on what one setting may cost (issue 21): far above any setting in use, far below what exhausts a machine.
MAX_IMAGE_SIZE = 2048
MAX_WORKERS = 64
MAX_CRAM_CENTRES = 4096
MAX_AFFINITY_SIZE = 64  # 64 x 64 positions: a 4096 x 4096 affinity per image and level
MAX_AFFINITY_WINDOW = 31
MAX_SEED = 2**32 - 1  # what every generator snlad seeds (torch, numpy) accepts
MAX_VALUE_ITEMS = 10_000  # a config holds a few dozen values; a document that expands to more is a YAML alias bomb


@dataclass
class DataConfig:
    image_size: int = 256  # MVTec protocol used by RD4AD and SNL
    categories: list[str] | None = None  # None = every category under the data root
    holdout_fraction: float = 0.1  # normal train images kept back for calibration/model selection
    num_workers: int = 1  # decoding off the training thread; 2-core machines gain little from more
    # Training images decoded once and kept resized (uint8) within this budget; the rest stream from disk.
    # 182 MB holds the ten-category realad at 256 px (973 images); 0 decodes every image every epoch.
    cache_mb: int = 1024


@dataclass
class ModelConfig:
    name: str = "snl-fd"  # the preset the run started from (titles, tables); model.architecture says what is built
    architecture: str = "fd"  # "fd" (student = teacher's architecture), "rd" (OCBE + decoder) or "patchcore"
    teacher: str = "efficientnet_lite0"  # Apache-2.0 ImageNet weights available offline
    teacher_weights: str | None = None  # required for resnet18 / wide_resnet50_2
    cram: bool = False  # SNL part 2; on in the snl-* presets
    cram_centres: int = 16  # paper range 8-64 (reconstruction); see docs/results
    cram_tau: float = 1.0  # temperature of CRAM's soft assignment
    # "residual": x + phi(residual) (identity at start); "centres": centre reconstruction + phi(residual);
    # "bottleneck": the centre reconstruction alone (nothing bypasses the centres)
    cram_output: str = "residual"
    cram_init: str = "random"  # "random", "kmeans" (of the teacher's compared level) or "kmeans-soft"
    # RD only: refine blocks per decoder stage, deepest first (RD4AD's WRN50 decoder: 3, 4, 6 bottleneck blocks).
    decoder_blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    # RD only: dropout on the bottleneck embedding while training, so the decoder cannot copy the input through
    # (Dinomaly's noisy bottleneck: 0.2); inference never drops.
    bottleneck_dropout: float = 0.0
    # RD only: RD++'s projection of the teacher's features before the bottleneck, trained on pseudo-anomalies
    # with loss.projection (RD++: 0.2); snlad.models.projection.
    projection: bool = False
    # PatchCore only: the share of all training patches kept in the memory bank by greedy k-centre selection
    # (PatchCore's 10 % setting; 1 % loses little on MVTec AD, Roth et al. 2022, Table 1), and the random
    # projection's dimension the selection measures distances in (the paper's 128).
    coreset_fraction: float = 0.1
    coreset_projection: int = 128


def term(weight: float) -> float:
    """A distillation term's weight (0 switches it off): a LossConfig field that ``snlad.losses.TERMS`` implements."""
    return field(default=weight, metadata={"term": True})


@dataclass
class LossConfig:
    """Weights of the distillation terms and their settings; ablations are a ``--set loss.<term>=0``.

    The fields made with :func:`term` are the list of terms: adding one means
    adding its field here and registering its function in
    ``snlad.losses.distillation`` (checked at import), nothing else.
    """

    channel: float = term(1.0)  # per-position 1 - cos across channels (STPM; SNL channel-wise)
    whole_map: float = term(0.0)  # RD4AD: 1 - cos of the flattened map per level
    spatial: float = term(0.0)  # per-channel 1 - cos across positions (SNL spatial-wise)
    intra: float = term(0.0)  # |A_T - A_S| intra-affinity (SNL)
    inter: float = term(0.0)  # |A_TS - A_T| inter-affinity (SNL, reconstruction)
    inter_levels: float = term(0.0)  # inter-affinity across adjacent levels on a common grid (issue 19's reading)
    cram_commit: float = term(0.0)  # |x - CRAM centre reconstruction|^2 / |x|^2: the centres carry the features
    cram_usage: float = term(0.0)  # 1 - entropy of the batch's mean CRAM assignment / log K: every centre in use
    projection: float = term(0.0)  # RD++'s projection loss (needs model.projection; RD++ weighs it 0.2)
    affinity_size: int = 16  # "pooled": affinities on a grid of at most this side (cost: N^2, N = side^2)
    affinity_distance: str = "l2"  # "l1" or "l2" between affinity matrices
    affinity_mode: str = (
        "pooled"  # "pooled" (all pairs on the pooled grid) or "local" (k x k windows, native resolution)
    )
    affinity_window: int = 7  # "local": side k of each position's neighbourhood (odd)
    spatial_kind: str = "cos"  # spatial-wise term: "cos" across positions, or "kl" of spatial softmaxes (CWD reading)
    spatial_tau: float = 1.0  # "kl": softmax temperature (third-party SNL code: 1)
    inter_kind: str = "cross"  # inter-affinity: "cross" (A_TS towards A_T) or "batch" (across the batch's images)


def check_registry(registry: Mapping[str, object], setting: str) -> None:
    """Refuse to import a module whose registry for ``setting`` implements other names than :data:`CHOICES` lists."""
    if set(registry) != set(CHOICES[setting]):
        raise ImportError(
            f"{setting}: the registry implements {sorted(registry)}, the config accepts {sorted(CHOICES[setting])}"
        )


def term_weights(loss: LossConfig) -> dict[str, float]:
    """Every distillation term's weight, by name, in declaration order."""
    return {f.name: getattr(loss, f.name) for f in dataclasses.fields(loss) if f.metadata.get("term")}


def map_weight(term: str, weight: float) -> float:
    """An anomaly-map term's weight (0 switches it off): a MapConfig field that ``snlad.scoring.maps.MAP_TERMS[term]`` implements."""
    return field(default=weight, metadata={"map_term": term})


@dataclass
class MapConfig:
    """The anomaly map: a weighted sum of map terms per level (``snlad.scoring.maps.MAP_TERMS``), their settings, the image score.

    The fields made with :func:`map_weight` are the list of terms; each term's
    settings are plain fields beside its weight.
    """

    local: float = map_weight("local", 1.0)  # per-position distance between the two feature maps (STPM, RD4AD)
    # The local term's distance: "cosine" (1 - cos, the distillation models) or
    # "euclidean" (PatchCore: the L2 distance to the nearest memory-bank patch).
    distance: str = "cosine"
    beta: float = map_weight("structural", 0.0)  # weight of the intra-affinity distance (SNL part 3)
    # The structural term's affinities ("pooled" grid of at most affinity_size, or "local" windows); None: the
    # loss's loss.affinity_*, so the map compares positions as training did (and as runs written before these existed).
    affinity_size: int | None = None
    affinity_mode: str | None = None
    affinity_window: int | None = None
    sigma: float = 4.0  # Gaussian blur at 256 px (RD4AD)
    # "topk" (mean of the top 1 % pixels) beat RD4AD's "max" for all four models on
    # held-out normals + synthetic anomalies (docs/results/selection-map.md).
    image_score: str = "topk"
    topk_fraction: float = 0.01


MAP_SETTINGS_FROM_LOSS = ("affinity_size", "affinity_mode", "affinity_window")
"""The structural term's settings that, left unset (None), are the loss's."""


def effective_map(config: Config) -> MapConfig:
    """``config.map`` with its unset settings taken from the loss (:data:`MAP_SETTINGS_FROM_LOSS`): what the scorer reads."""
    unset = {key: getattr(config.loss, key) for key in MAP_SETTINGS_FROM_LOSS if getattr(config.map, key) is None}
    return dataclasses.replace(config.map, **unset)


def map_term_weights(config: MapConfig) -> dict[str, float]:
    """Every anomaly-map term's weight, by term name, in declaration order."""
    return {
        f.metadata["map_term"]: getattr(config, f.name) for f in dataclasses.fields(config) if "map_term" in f.metadata
    }


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 5e-3  # RD4AD Adam settings
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu; never part of a run's identity
    amp: str = "none"  # "bf16": bfloat16 autocast for forward + loss (GPU; halves activation memory), "none": float32
    # The frozen teacher's features of each training image, kept from its first epoch on within this budget
    # (EfficientNet-Lite0 at 256 px: 639 MB for the 973 images of the ten-category realad); 0 recomputes them every step.
    teacher_cache_mb: int = 1024
    schedule: str = "constant"  # learning rate over training: "constant", or "cosine" decay to 0 after a linear warm-up
    warmup_epochs: float = 0.0  # linear warm-up from 0 (cosine schedule only)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    map: MapConfig = field(default_factory=MapConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Preset differences from the dataclass defaults, per model name. Loss weights
# of 1 are the method note's starting point (not tuned: docs/results/README.md),
# except the affinity weights of 10, chosen for snl-rd on real defects disjoint
# from the test split (realad-val; docs/results/campaign-rd: val score 77.1 +-
# 0.6 over 3 seeds against 73.8 at weight 1; 3 and 30 lower) and carried to
# snl-fd (issue 19 part 3, not swept on FD); map.beta was chosen
# on held-out normals + synthetic cross-class anomalies
# (docs/results/selection-map.md), never on test images. The RD pair's teacher
# and length were chosen on realad-val too (issue 19): EfficientNet-Lite2 beat
# Lite0 beyond the 1.5-point tie band for both models, and 10 epochs tied 30
# for both (the shorter wins a tie): 3 seeds each, docs/results/campaign-rd.
# The FD pair takes Lite2 as the RD pair did (Lite0 was not re-measured on FD
# against it); on Lite2 (docs/results/campaign-fd, 3 seeds each): FD's 30
# epochs beat 10 beyond the band (val 83.0 against 81.1); SNL-FD's tied (81.6
# against 81.4), so it keeps the RD pair's 10 epochs and affinity weights 10.
# The affinity grid of 8 tied 16 on realad-val for both SNL models (snl-rd
# 81.3 +- 1.0 against 80.1 +- 0.6, snl-fd 82.2 +- 0.8 against 81.4 +- 0.8, 3
# seeds) at 0.4x the affinity terms' cost: the cheaper wins a tie.
RD_PAIR_TEACHER, RD_PAIR_EPOCHS = "efficientnet_lite2", 10
SNL_LOSS = {"channel": 1.0, "spatial": 1.0, "intra": 10.0, "inter": 10.0, "affinity_size": 8}  # both SNL presets'
PRESETS: dict[str, dict[str, Any]] = {
    "fd": {
        "model": {"teacher": RD_PAIR_TEACHER},
        "loss": {"channel": 1.0},
        "train": {"lr": 1e-3, "betas": (0.9, 0.999)},
    },
    "rd": {
        "model": {"architecture": "rd", "teacher": RD_PAIR_TEACHER},
        "loss": {"channel": 0.0, "whole_map": 1.0},
        "train": {"epochs": RD_PAIR_EPOCHS},
    },
    "snl-fd": {
        "model": {"cram": True, "teacher": RD_PAIR_TEACHER},
        "loss": SNL_LOSS,
        "map": {"beta": 1.0},
        "train": {"lr": 1e-3, "betas": (0.9, 0.999), "epochs": RD_PAIR_EPOCHS},
    },
    "snl-rd": {
        "model": {"architecture": "rd", "cram": True, "teacher": RD_PAIR_TEACHER},
        "loss": SNL_LOSS,
        "map": {"beta": 2.0},
        "train": {"epochs": RD_PAIR_EPOCHS},
    },
    "patchcore": {"model": {"architecture": "patchcore"}, "map": {"distance": "euclidean"}},
}


def preset(model_name: str) -> Config:
    """The default configuration of one model name."""
    if model_name not in MODEL_NAMES:
        raise SnladError(f"unknown model '{model_name}': choose one of {', '.join(MODEL_NAMES)}")
    config = Config()
    config.model.name = model_name
    return merge(config, PRESETS[model_name], source=f"preset {model_name}")


def merge(config: Config, updates: dict[str, Any], source: str) -> Config:
    """Return a copy of ``config`` with the nested ``updates`` applied and type-checked."""
    data = config.to_dict()
    for section, values in updates.items():
        if section not in data:
            raise SnladError(f"{source}: unknown config section {str(section)!r} (known: {', '.join(data)})")
        if not isinstance(values, dict):
            raise SnladError(f"{source}: config section {str(section)!r} must be a mapping of keys to values")
        for key, value in values.items():
            if key not in data[section]:
                known = ", ".join(data[section])
                raise SnladError(f"{source}: unknown config key {f'{section}.{key}'!r} (known in {section}: {known})")
            data[section][key] = value
    return from_dict(data, source)


def from_dict(data: dict[str, Any], source: str) -> Config:
    """Build a Config from a plain nested dict, checking every value's type."""
    sections = {}
    hints = typing.get_type_hints(Config)
    if not isinstance(data, dict):
        raise SnladError(f"{source}: the config must be a mapping of sections, got {type(data).__name__}")
    for section_field in dataclasses.fields(Config):
        cls = hints[section_field.name]
        values = data.get(section_field.name, {})
        if not isinstance(values, dict):
            raise SnladError(f"{source}: config section {section_field.name!r} must be a mapping of keys to values")
        field_hints = typing.get_type_hints(cls)
        if section_field.name == "model" and "architecture" not in values and "name" in values:
            # Written before model.architecture existed: the preset's name said it.
            values = {**values, "architecture": PRESET_ARCHITECTURES.get(values["name"], values["name"])}
        checked = {}
        for key, value in values.items():
            if key not in field_hints:
                raise SnladError(f"{source}: unknown config key {f'{section_field.name}.{key}'!r}")
            checked[key] = _coerce(value, field_hints[key], f"{source}: {section_field.name}.{key}")
        sections[section_field.name] = cls(**checked)
    config = Config(**sections)
    _validate(config, source)
    return config


FLOAT_LITERAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""Exponent notation that YAML 1.1 leaves a string unless it has a dot ("1e-3"); nan/inf stay refused."""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a simple type hint; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SnladError(f"{where} must be a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise SnladError(f"{where} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if hint is float and isinstance(value, str) and FLOAT_LITERAL.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 (PyYAML) reads "1e-3" and "3E-4", without a dot, as strings
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2**1023 else math.inf
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise SnladError(f"{where} must be a finite number, got {value!r}")
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise SnladError(f"{where} must be of type {hint.__name__}, got {value!r}")
    return value


def is_seed(value: object) -> bool:
    """A seed every generator snlad seeds accepts (numpy refuses negatives, torch values of 2**64 and more)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def _validate(config: Config, source: str) -> None:
    """Value checks that types alone cannot express: each string option against :data:`CHOICES`, then each section's bounds."""
    config = dataclasses.replace(config, map=effective_map(config))  # the map as it is used
    checks = [
        (
            getattr(getattr(config, setting.split(".")[0]), setting.split(".")[1]) in names,
            f"{setting} must be one of {', '.join(names)}",
        )
        for setting, names in CHOICES.items()
    ]
    checks += _data_checks(config.data) + _model_checks(config.model) + _loss_checks(config.loss)
    checks += _map_checks(config.map, config.data.image_size) + _train_checks(config.train)
    checks.append(
        (
            config.loss.projection == 0 or config.model.projection,
            "loss.projection trains RD++'s projection: it needs model.projection=true",
        )
    )
    checks.append(
        (
            config.data.cache_mb >= 0 and config.train.teacher_cache_mb >= 0,
            "data.cache_mb and train.teacher_cache_mb must be >= 0",
        )
    )
    for ok, message in checks:
        if not ok:
            raise SnladError(f"{source}: {message}")


Checks = list[tuple[bool, str]]
"""(condition that must hold, what the setting must be) pairs."""


def _data_checks(data: DataConfig) -> Checks:
    return [
        (
            32 <= data.image_size <= MAX_IMAGE_SIZE and data.image_size % 16 == 0,
            f"data.image_size must be a multiple of 16 in [32, {MAX_IMAGE_SIZE}] "
            f"({MAX_IMAGE_SIZE} px already costs 64x the memory of 256 px)",
        ),
        (
            0 <= data.num_workers <= MAX_WORKERS,
            f"data.num_workers must be in [0, {MAX_WORKERS}] (0 decodes on the training thread)",
        ),
        (0.0 <= data.holdout_fraction < 1.0, "data.holdout_fraction must be in [0, 1)"),
    ]


def _model_checks(model: ModelConfig) -> Checks:
    return [
        (
            1 <= model.cram_centres <= MAX_CRAM_CENTRES,
            f"model.cram_centres must be in [1, {MAX_CRAM_CENTRES}] (the paper uses 8-64)",
        ),
        (
            len(model.decoder_blocks) == 3 and all(n >= 1 for n in model.decoder_blocks),
            "model.decoder_blocks must be 3 block counts >= 1 (deepest stage first)",
        ),
        (0.0 <= model.bottleneck_dropout < 1.0, "model.bottleneck_dropout must be in [0, 1)"),
        (
            model.architecture == "rd"
            or (model.decoder_blocks == [1, 1, 1] and model.bottleneck_dropout == 0 and not model.projection),
            "model.decoder_blocks, model.bottleneck_dropout and model.projection belong to the rd models"
            " (fd has no decoder)",
        ),
        (model.cram_tau > 0, "model.cram_tau must be > 0"),
        (0.0 < model.coreset_fraction <= 1.0, "model.coreset_fraction must be in (0, 1]"),
        (model.coreset_projection >= 1, "model.coreset_projection must be >= 1"),
        (
            model.architecture != "patchcore" or not model.cram,
            "model.cram belongs to the distillation models (patchcore has no student)",
        ),
    ]


def _affinity_checks(settings: LossConfig | MapConfig, section: str) -> Checks:
    """The affinity settings the loss and the map's structural term each have."""
    return [
        (
            2 <= settings.affinity_size <= MAX_AFFINITY_SIZE,
            f"{section}.affinity_size must be in [2, {MAX_AFFINITY_SIZE}] (an affinity costs side^4 per image)",
        ),
        (
            3 <= settings.affinity_window <= MAX_AFFINITY_WINDOW and settings.affinity_window % 2 == 1,
            f"{section}.affinity_window must be odd and in [3, {MAX_AFFINITY_WINDOW}]",
        ),
    ]


def _loss_checks(loss: LossConfig) -> Checks:
    checks = _affinity_checks(loss, "loss") + [(loss.spatial_tau > 0, "loss.spatial_tau must be > 0")]
    checks += [(weight >= 0, f"loss.{name} must be >= 0") for name, weight in term_weights(loss).items()]
    return checks + [(loss.channel + loss.whole_map > 0, "loss.channel or loss.whole_map must be > 0")]


def _map_checks(config: MapConfig, image_size: int) -> Checks:
    weights = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if "map_term" in f.metadata}
    checks = _affinity_checks(config, "map") + [
        (weight >= 0, f"map.{name} must be >= 0") for name, weight in weights.items()
    ]
    return checks + [
        (sum(weights.values()) > 0, f"one of map.{', map.'.join(weights)} must be > 0 (the map is their weighted sum)"),
        (0.0 < config.topk_fraction <= 1.0, "map.topk_fraction must be in (0, 1]"),
        (
            0 <= config.sigma <= image_size / 4,
            "map.sigma must be in [0, data.image_size / 4] (a wider blur spreads every defect over the whole image)",
        ),
    ]


def _train_checks(train: TrainConfig) -> Checks:
    return [
        (train.epochs >= 1, "train.epochs must be >= 1"),
        (train.batch_size >= 1, "train.batch_size must be >= 1"),
        (train.lr > 0, "train.lr must be > 0"),
        (
            all(0.0 <= beta < 1.0 for beta in train.betas),
            "train.betas must be two numbers in [0, 1) (Adam's moment decays)",
        ),
        (train.weight_decay >= 0, "train.weight_decay must be >= 0"),
        (is_seed(train.seed), f"train.seed must be a whole number in [0, {MAX_SEED}]"),
        (
            0 <= train.warmup_epochs < train.epochs or train.warmup_epochs == 0,
            "train.warmup_epochs must be in [0, train.epochs)",
        ),
        (
            train.device in ("auto", "cpu") or train.device.startswith("cuda"),
            "train.device must be auto, cpu or cuda[:N]",
        ),
    ]


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``section.key=value`` (value in YAML syntax) into a nested dict."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise SnladError(f"override {text!r} must look like section.key=value, e.g. loss.intra=0")
    key, raw = text.split("=", 1)
    section, name = key.split(".", 1)
    try:
        value = yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError) as error:  # ValueError: an integer of over 4300 digits
        raise SnladError(
            f"override {text!r}: the value is not valid YAML ({brief(error, 120)}); quote text values, e.g. model.teacher_weights='my [1].pth'"
        ) from None
    _check_size(value, f"override {key}")
    return {section: {name: value}}


def _check_size(value: Any, source: str) -> None:
    """Refuse a YAML value that expands to more than :data:`MAX_VALUE_ITEMS` items before anything expands it.

    YAML aliases let a few hundred bytes stand for billions of items (each use
    of an alias counts again); an error message's repr, a JSON dump or a type
    check would expand them until memory runs out. Counting stops at the limit,
    so the check itself costs at most that many steps, recursive aliases too.
    """
    pending, count = [value], 0
    while pending:
        item = pending.pop()
        count += 1
        if count > MAX_VALUE_ITEMS:
            raise SnladError(
                f"{source}: the YAML expands to more than {MAX_VALUE_ITEMS} values (repeated aliases?); "
                "a config holds a few settings"
            )
        if isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            pending += item


def load_config(model_name: str | None, config_file: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Resolve preset -> YAML file -> overrides into one checked Config.

    ``model_name`` None takes the model name from the file (or the default).
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = read_yaml(config_file)
    file_model = file_values.get("model")
    name = model_name or (file_model.get("name") if isinstance(file_model, dict) else None) or Config().model.name
    config = preset(name)
    if file_values:
        config = merge(config, file_values, source=str(config_file))
    for text in overrides:
        config = merge(config, parse_override(text), source=f"override {text!r}")
    if model_name is not None:
        config.model.name = model_name
    return config


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SnladError(f"config file {path} does not exist") from None
    except (
        OSError,
        UnicodeDecodeError,
        yaml.YAMLError,
        ValueError,
    ) as error:  # ValueError: an integer of over 4300 digits
        raise SnladError(f"config file {path} cannot be read as YAML ({brief(error)})") from None
    if values is None:
        return {}
    _check_size(values, f"config file {path}")
    if not isinstance(values, dict):
        raise SnladError(f"config file {path} must hold a mapping of sections (data, model, loss, map, train)")
    return values


def write_yaml(config: Config, path: Path) -> None:
    """Write the resolved config (tuples as lists, so YAML stays plain)."""
    data = config.to_dict()
    data["train"]["betas"] = list(data["train"]["betas"])
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
