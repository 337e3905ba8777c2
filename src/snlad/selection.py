"""Model selection without test images: held-out normals + synthetic cross-class anomalies.

The validation set of a run is built from TRAINING images only: the normal
images its training held back (``holdout_split`` with the run's own fraction
and seed) and, for each of them, copies with a square patch cut from another
category's training image pasted in (the cross-class interference case the
SNL paper targets; ground truth = the pasted square). Hyper-parameters of the
anomaly map (``map.beta``, the image score) can be compared on it without
retraining; loss weights by training runs and validating each.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from snlad.config import Config
from snlad.data import AnomalyDataset, holdout_split, index_dataset, load_tensors
from snlad.engine.inference import infer
from snlad.engine.optimise import optimise_for_inference, optimise_run
from snlad.engine.trained import TrainedModel, build_scorer
from snlad.errors import SnladError
from snlad.metrics import image_metrics, mean_over_categories, pixel_metrics
from snlad.synthesis import PATCH_FRACTION, paste_all, paste_plan


def synthetic_validation(
    data_root: str | Path, config: Config, pastes_per_image: int = 3, fraction: float = PATCH_FRACTION, seed: int = 0
) -> list[dict]:
    """Batches (one per category) of held-out normals followed by their cut-paste anomalies.

    Each batch: "image" N x 3 x S x S, "mask" N x S x S bool, "label" N, "category".
    """
    categories = config.data.categories
    samples = index_dataset(data_root, "train", categories)
    _, held_out = holdout_split(samples, config.data.holdout_fraction, config.train.seed)
    if not held_out:
        raise SnladError(
            "the run held back no normal training images (data.holdout_fraction=0): nothing to validate on"
        )
    size = config.data.image_size
    rng = np.random.default_rng(seed)
    batches = []
    for category in sorted({s.category for s in held_out}):
        normals = load_tensors([s for s in held_out if s.category == category], size)[0]
        sources = [s for s in samples if s.category != category]
        if not sources:
            raise SnladError("synthetic validation needs at least two categories (patches come from another category)")
        plan = paste_plan(len(normals), len(sources), pastes_per_image * len(normals), fraction, rng)
        used = AnomalyDataset(sources, size)  # only the sources the plan draws are decoded
        drawn = {index: used[index]["image"] for index in sorted({p.source for p in plan})}
        anomalies, pasted = paste_all(normals, drawn, plan, fraction)
        images = torch.cat([normals, anomalies])
        masks = torch.cat([torch.zeros(len(normals), size, size, dtype=torch.bool), pasted])
        labels = torch.tensor([0] * len(normals) + [1] * len(plan))
        batches.append({"image": images, "mask": masks, "label": labels, "category": category})
    return batches


def _metrics(batch: dict, maps: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    image = image_metrics(scores.numpy(), batch["label"].numpy())
    pixel = pixel_metrics(maps.numpy(), batch["mask"].numpy())
    return {"image_auroc": image["image_auroc"], "pixel_auroc": pixel["pixel_auroc"], "aupro": pixel["aupro"]}


def validation_metrics(models: dict[str, TrainedModel], batches: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Image AUROC, pixel AUROC and AUPRO per category on the synthetic validation set, plus the mean.

    ``models`` maps each category to the model that serves it (one model for all in a multi-class run).
    """
    fast = optimise_run({batch["category"]: models[batch["category"]] for batch in batches})
    results = {}
    for batch in batches:
        for _, maps, scores in infer(fast[batch["category"]], [batch], desc=None):
            results[batch["category"]] = _metrics(batch, maps, scores)
    results["mean"] = mean_over_categories(results)
    return results


def map_grid(
    trained: TrainedModel, batches: Sequence[dict], betas: Sequence[float], image_scores: Sequence[str]
) -> list[dict]:
    """Validation means for every (beta, image score) of the anomaly map: one model, no retraining.

    The networks run once per batch (``TrainedModel.score_with``); only the scorer changes between
    variants, and it is the scorer ``snlad test`` builds for those settings.
    """
    fast = optimise_for_inference(trained)
    variants = list(itertools.product(betas, image_scores))
    scorers = [
        build_scorer(
            dataclasses.replace(
                trained.config, map=dataclasses.replace(trained.config.map, beta=beta, image_score=image_score)
            ),
            fast.model,
        )
        for beta, image_score in variants
    ]
    per_variant: list[dict[str, dict[str, float]]] = [{} for _ in variants]
    with torch.inference_mode():
        for batch in batches:
            for results, (maps, scores) in zip(
                per_variant, fast.score_with(batch["image"].to(fast.device), scorers), strict=True
            ):
                results[batch["category"]] = _metrics(batch, maps.cpu(), scores.cpu())
    return [
        {"beta": beta, "image_score": image_score, **mean_over_categories(results)}
        for (beta, image_score), results in zip(variants, per_variant, strict=True)
    ]
