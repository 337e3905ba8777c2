"""Tests for snlad.scoring.metrics.

AUPRO is checked against a deliberately naive re-implementation written here
(own flood fill, a Python loop over every distinct threshold, explicit
segment-by-segment integration) and against hand-worked answers; the
streaming accumulator is checked against the exact in-memory metrics.
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from snlad.scoring.metrics import (
    METRIC_NAMES,
    PixelMetricAccumulator,
    aupro,
    image_metrics,
    mean_over_categories,
    pixel_metrics,
)

# --------------------------------------------------------------------------- helpers


def regions_8connected(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Connected components of a 2-D mask by breadth-first flood fill over the 8 neighbours."""
    seen = np.zeros(mask.shape, dtype=bool)
    regions = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, region = deque([start]), []
        while queue:
            r, c = queue.popleft()
            region.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        queue.append((rr, cc))
        regions.append(region)
    return regions


def slow_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """AUPRO straight from its definition, one threshold at a time."""
    normal_scores = maps[~masks]
    region_scores = [
        np.array([maps[i][p] for p in region]) for i in range(len(maps)) for region in regions_8connected(masks[i])
    ]
    points = [(0.0, 0.0)]
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        fpr = np.mean(normal_scores >= t)
        pro = np.mean([np.mean(scores >= t) for scores in region_scores])
        points.append((fpr, pro))
    points.append((1.0, 1.0))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_limit) / 2
    return area / fpr_limit


def brute_f1max(scores: np.ndarray, labels: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(scores):
        predicted = scores >= t
        tp = np.sum(predicted & labels)
        fp = np.sum(predicted & ~labels)
        fn = np.sum(~predicted & labels)
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def small_random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A few tiny images with scattered defects (diagonal contacts included) and tied scores."""
    rng = np.random.default_rng(seed)
    n, h, w = rng.integers(1, 4), rng.integers(4, 10), rng.integers(4, 10)
    masks = rng.random((n, h, w)) < rng.uniform(0.05, 0.35)
    masks[0, 0, 0] = True  # at least one region
    masks[-1, -1, -1] = False  # at least one normal pixel
    maps = rng.normal(size=(n, h, w)) + rng.uniform(0, 2) * masks
    if seed % 2:  # coarse quantisation: many ties between and within classes
        maps = np.round(maps * 2) / 2
    return maps, masks


def blob_batches(n_images: int, batch: int, size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """MVTec-like batches: smooth blob defects in some images, smooth noisy maps that rise on defects."""
    rng = np.random.default_rng(seed)
    for _ in range(0, n_images, batch):
        masks = np.zeros((batch, size, size), dtype=bool)
        maps = np.empty((batch, size, size), dtype=np.float32)
        for i in range(batch):
            if rng.random() < 0.6:
                field = ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 16)
                masks[i] = field > np.quantile(field, 1 - rng.uniform(0.005, 0.06))
            noise = 4 * ndimage.gaussian_filter(rng.standard_normal((size, size)), 2)
            maps[i] = noise + rng.uniform(0.5, 3) * ndimage.gaussian_filter(masks[i].astype(np.float32), 3)
        yield maps, masks


def blob_case(n_images: int, batch: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    parts = list(blob_batches(n_images, batch, size, seed))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --------------------------------------------------------------------------- AUPRO


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("fpr_limit", [0.3, 0.07, 1.0])
def test_aupro_matches_naive_definition(seed: int, fpr_limit: float) -> None:
    maps, masks = small_random_case(seed)
    assert aupro(maps, masks, fpr_limit) == pytest.approx(slow_aupro(maps, masks, fpr_limit), abs=1e-12)


def test_aupro_perfect_map_is_one() -> None:
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:6, 3:9] = True
    masks[0, 10:12, 10:15] = True
    masks[2, 7:9, 1:3] = True
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.1])
def test_aupro_constant_map(fpr_limit: float) -> None:
    # One threshold takes the curve from (0, 0) straight to (1, 1): area limit^2 / 2.
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[1, 2:5, 2:5] = True
    assert aupro(np.full(masks.shape, 0.7), masks, fpr_limit) == pytest.approx(fpr_limit / 2, abs=1e-12)


def test_aupro_one_region_found_one_missed_is_half() -> None:
    # Region A above every normal pixel, region B below every one: PRO is 0.5
    # from FPR 0 up to FPR 1.
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 1:3, 1:4] = True
    masks[1, 6:9, 6:8] = True
    maps = np.random.default_rng(0).uniform(0.2, 0.8, masks.shape)
    maps[0][masks[0]] = 1.0
    maps[1][masks[1]] = 0.0
    assert aupro(maps, masks) == pytest.approx(0.5, abs=1e-12)


def test_aupro_uses_8_connectivity() -> None:
    # Pixel (0,0) touches (1,1) only diagonally; (1,1)-(1,2) are 4-connected.
    # 8-connectivity: one region of 3 pixels, 1/3 of it found at FPR 0 -> 1/3.
    # 4-connectivity would give regions {(0,0)} and {(1,1),(1,2)} -> 0.5.
    masks = np.zeros((1, 5, 5), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True
    maps = np.full(masks.shape, 0.5)
    maps[0, 0, 0] = 1.0
    maps[0, 1, 1] = maps[0, 1, 2] = 0.0
    assert aupro(maps, masks) == pytest.approx(1 / 3, abs=1e-12)


@pytest.mark.parametrize(("fpr_limit", "expected"), [(0.3, 1 / 6), (0.25, 0.05)])
def test_aupro_interpolates_at_limit(fpr_limit: float, expected: float) -> None:
    # Normals score 0..9, the single defect pixel ties with the normal at 7:
    # (0,0) (0.1,0) (0.2,0) (0.3,1) ... ; at 0.25 the segment is interpolated to 0.5.
    maps = np.array([[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7]]], dtype=float)
    masks = np.zeros(maps.shape, dtype=bool)
    masks[0, 0, -1] = True
    assert aupro(maps, masks, fpr_limit) == pytest.approx(expected, abs=1e-12)


def test_aupro_regions_do_not_span_images() -> None:
    # The same pixel defective in two images is two regions, not one.
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, 1, 1] = True
    maps = np.full(masks.shape, 0.5)
    maps[0, 1, 1], maps[1, 1, 1] = 1.0, 0.0
    assert aupro(maps, masks) == pytest.approx(0.5, abs=1e-12)


def test_aupro_nan_without_defects_or_normals() -> None:
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert math.isnan(aupro(maps, np.zeros(maps.shape, dtype=bool)))
    assert math.isnan(aupro(maps, np.ones(maps.shape, dtype=bool)))


# --------------------------------------------------------------------------- image / pixel metrics


def test_image_metrics_match_sklearn_and_brute_force() -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(60) < 0.4
    scores = np.round(rng.normal(size=60) + labels, 1)  # ties included
    result = image_metrics(scores, labels)
    assert set(result) == {"image_auroc", "image_ap", "image_f1max"}
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert result["image_f1max"] == pytest.approx(brute_f1max(scores, labels), abs=1e-12)


def test_image_metrics_nan_with_one_class() -> None:
    scores = np.arange(5.0)
    for labels in (np.zeros(5, dtype=bool), np.ones(5, dtype=bool)):
        assert all(math.isnan(v) for v in image_metrics(scores, labels).values())


def test_pixel_metrics_match_sklearn_brute_force_and_aupro() -> None:
    maps, masks = small_random_case(3)
    result = pixel_metrics(maps, masks, fpr_limit=0.2)
    scores, labels = maps.ravel(), masks.ravel()
    assert set(result) == {"pixel_auroc", "pixel_ap", "pixel_f1max", "aupro"}
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result["pixel_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert result["pixel_f1max"] == pytest.approx(brute_f1max(scores, labels), abs=1e-12)
    assert result["aupro"] == pytest.approx(slow_aupro(maps, masks, 0.2), abs=1e-12)


def test_pixel_metrics_nan_with_one_class() -> None:
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert all(math.isnan(v) for v in pixel_metrics(maps, np.zeros(maps.shape, dtype=bool)).values())


def test_bad_inputs_raise() -> None:
    maps = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="does not match"):
        pixel_metrics(maps, np.zeros((2, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="N x H x W"):
        aupro(maps[0], maps[0] > 0)
    maps[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pixel_metrics(maps, maps > 0)
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(np.zeros((1, 2, 2)), np.eye(2, dtype=bool)[None], fpr_limit=0.0)


# --------------------------------------------------------------------------- accumulator


@pytest.mark.parametrize("num_bins", [2_000, 10_000])
def test_accumulator_matches_exact_on_realistic_case(num_bins: int) -> None:
    maps, masks = blob_case(n_images=48, batch=8, size=64, seed=5)
    exact = pixel_metrics(maps, masks)
    acc = PixelMetricAccumulator(num_bins=num_bins)
    acc.chunk_pixels = 20_000  # several chunks, and class samples smaller than the data
    for start in range(0, len(maps), 8):
        acc.update(maps[start : start + 8], masks[start : start + 8])
    streamed = acc.compute()
    assert set(streamed) == set(exact)
    for name, value in exact.items():
        assert streamed[name] == pytest.approx(value, abs=1e-3), name


def test_accumulator_is_exact_with_few_distinct_scores() -> None:
    # Every distinct score becomes a threshold, so the histograms lose nothing.
    maps, masks = blob_case(n_images=12, batch=4, size=32, seed=2)
    maps = np.round(maps * 4) / 4
    with PixelMetricAccumulator(fpr_limit=0.2) as acc:
        for start in range(0, len(maps), 4):
            acc.update(maps[start : start + 4], masks[start : start + 4])
        streamed = acc.compute()
    exact = pixel_metrics(maps, masks, fpr_limit=0.2)
    for name, value in exact.items():
        assert streamed[name] == pytest.approx(value, abs=1e-9), name


def test_accumulator_hand_cases() -> None:
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[1, 2:5, 2:5] = True
    for maps, expected in ((masks.astype(np.float32), 1.0), (np.full(masks.shape, 3.0), 0.15)):
        acc = PixelMetricAccumulator()
        acc.update(maps[:1], masks[:1])
        acc.update(maps[1:], masks[1:])
        assert acc.compute()["aupro"] == pytest.approx(expected, abs=1e-12)


def test_accumulator_nan_with_one_class_and_when_empty() -> None:
    acc = PixelMetricAccumulator()
    acc.update(np.random.default_rng(0).random((2, 4, 4)), np.zeros((2, 4, 4), dtype=bool))
    assert all(math.isnan(v) for v in acc.compute().values())
    assert all(math.isnan(v) for v in PixelMetricAccumulator().compute().values())


def _peak_bytes(n_images: int) -> int:
    tracemalloc.start()
    try:
        acc = PixelMetricAccumulator(num_bins=200)
        acc.chunk_pixels = 4096
        for maps, masks in blob_batches(n_images, batch=4, size=64, seed=0):
            acc.update(maps, masks)
        acc.compute()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_accumulator_memory_does_not_grow_with_test_set() -> None:
    _peak_bytes(8)  # warm-up: first-call allocations of numpy/scipy
    small, large = _peak_bytes(40), _peak_bytes(400)
    data_bytes = 400 * 64 * 64 * 4  # float32 maps of the large run: 6.5 MB
    assert large - small < 64 * 1024, (small, large)
    assert large < data_bytes / 4, (large, data_bytes)


def test_accumulator_deletes_files(tmp_path: Path) -> None:
    maps, masks = blob_case(n_images=4, batch=4, size=16, seed=0)

    def workdir_entries() -> list[Path]:
        return list(tmp_path.iterdir())

    acc = PixelMetricAccumulator(workdir=tmp_path)
    acc.update(maps, masks)
    assert len(workdir_entries()) == 1
    first = acc.compute()
    assert workdir_entries() == []
    assert acc.compute() == first  # cached, not recomputed from deleted files
    with pytest.raises(RuntimeError):
        acc.update(maps, masks)

    with PixelMetricAccumulator(workdir=tmp_path) as acc:
        acc.update(maps, masks)
    assert workdir_entries() == []

    acc = PixelMetricAccumulator(workdir=tmp_path)
    acc.update(maps, masks)
    del acc
    gc.collect()
    assert workdir_entries() == []


# --------------------------------------------------------------------------- aggregation


def test_mean_over_categories_ignores_nan() -> None:
    per_category = {
        "bottle": {"image_auroc": 1.0, "aupro": 0.8},
        "cable": {"image_auroc": 0.5, "aupro": math.nan},
        "good_only": {"image_auroc": math.nan, "aupro": math.nan, "pixel_ap": math.nan},
    }
    means = mean_over_categories(per_category)
    assert means["image_auroc"] == pytest.approx(0.75)
    assert means["aupro"] == pytest.approx(0.8)
    assert math.isnan(means["pixel_ap"])


def test_metric_names() -> None:
    assert METRIC_NAMES == (
        "image_auroc",
        "image_ap",
        "image_f1max",
        "pixel_auroc",
        "pixel_ap",
        "pixel_f1max",
        "aupro",
    )
