"""Model selection without test images: real defects disjoint from the test split, or held-out normals + synthetic ones.

Two validation sets. ``real_validation``: the good and defective images of a
root of real defects disjoint from the test split (``../shared/data/realad-val``;
settings are chosen on it since synthetic anomalies did not predict real defects,
issue 19). ``synthetic_validation``: built from TRAINING images only, the normal
images a run held back (``holdout_split`` with the run's own fraction and seed)
and, for each of them, copies with a square patch cut from another category's
training image pasted in (the cross-class case the SNL paper targets; ground
truth = the pasted square). The anomaly map's settings (``map.*``) are compared
on either without retraining (``map_grid``); loss weights by training runs and
validating each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from snlad.config import Config
from snlad.data import AnomalyDataset, holdout_split, index_dataset, list_categories, load_tensors
from snlad.data.synthesis import PATCH_FRACTION, paste_all, paste_plan
from snlad.engine.evaluate import pixel_ground_truth
from snlad.engine.inference import infer
from snlad.engine.optimise import optimise_for_inference, optimise_run
from snlad.errors import SnladError
from snlad.runs.trained import TrainedModel, build_scorer
from snlad.scoring.metrics import image_metrics, mean_over_categories, pixel_metrics


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


def real_validation(data_root: str | Path, categories: Sequence[str], image_size: int) -> list[dict]:
    """Batches (one per category ``data_root`` shares with ``categories``) of its real good and defective test images.

    For a root of real defects disjoint from the test split (``../shared/data/realad-val``): the
    settings of the anomaly map are chosen on it like ``snlad validate --real-defects``, without
    retraining and without test images. Each batch: "image", "mask" N x S x S bool, "label" N,
    "known" N (good images and defective ones with a mask: the images pixel metrics count), "category".
    """
    shared = [category for category in list_categories(data_root) if category in categories]
    if not shared:
        raise SnladError(f"{data_root} holds none of the run's categories ({', '.join(categories)})")
    batches = []
    for category in shared:
        batch = default_collate([*AnomalyDataset(index_dataset(data_root, "test", [category]), image_size)])
        batches.append(
            {
                "image": batch["image"],
                "mask": batch["mask"][:, 0] > 0.5,
                "label": batch["label"],
                "known": pixel_ground_truth(batch),
                "category": category,
            }
        )
    return batches


def _metrics(batch: dict, maps: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    """Image AUROC, and pixel AUROC and AUPRO over the images with known pixels (NaN where no defect has a mask)."""
    image = image_metrics(scores.numpy(), batch["label"].numpy())
    known = batch.get("known", torch.ones(len(maps), dtype=torch.bool))
    masks = batch["mask"][known]
    if not masks.any():
        return {"image_auroc": image["image_auroc"], "pixel_auroc": math.nan, "aupro": math.nan}
    pixel = pixel_metrics(maps[known].numpy(), masks.numpy())
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
    trained: TrainedModel, batches: Sequence[dict], variants: Sequence[dict[str, object]], chunk: int = 16
) -> list[dict]:
    """Validation means for every variant of the anomaly map (``map.*`` fields to change): one model, no retraining.

    The networks run once per ``chunk`` images (``TrainedModel.score_with``); only the scorer changes
    between variants, and it is the scorer ``snlad test`` builds for those settings.
    """
    fast = optimise_for_inference(trained)
    scorers = [
        build_scorer(
            dataclasses.replace(trained.config, map=dataclasses.replace(trained.config.map, **variant)), fast.model
        )
        for variant in variants
    ]
    per_variant: list[dict[str, dict[str, float]]] = [{} for _ in variants]
    with torch.inference_mode():
        for batch in batches:
            parts = [fast.score_with(images.to(fast.device), scorers) for images in batch["image"].split(chunk)]
            for index, results in enumerate(per_variant):
                maps = torch.cat([part[index][0].cpu() for part in parts])
                scores = torch.cat([part[index][1].cpu() for part in parts])
                results[batch["category"]] = _metrics(batch, maps, scores)
    return [
        {**variant, **mean_over_categories(results)} for variant, results in zip(variants, per_variant, strict=True)
    ]
