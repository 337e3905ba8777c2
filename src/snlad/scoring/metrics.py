"""Evaluation metrics for the MVTec AD protocol.

Image level: AUROC, AP and F1-max of one anomaly score per image.
Pixel level: AUROC, AP, F1-max and AUPRO of the anomaly maps, either exactly
and in memory (:func:`pixel_metrics`) or streamed through a disk-backed
:class:`PixelMetricAccumulator` whose memory does not grow with the test set.

Every metric that needs both classes returns NaN (never raises) when only one
class is present, so that a category without defects cannot abort a run and
:func:`mean_over_categories` can skip it. See ``docs/metrics.md``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

__all__ = [
    "METRIC_NAMES",
    "PixelMetricAccumulator",
    "aupro",
    "image_metrics",
    "mean_over_categories",
    "percent",
    "pixel_metrics",
]

METRIC_NAMES = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "aupro")
_PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_f1max", "aupro")

# Sample size per threshold when placing thresholds at sample quantiles: the
# class mass between two thresholds then varies by about 1/sqrt(32) = 18 %
# around its nominal 2 / num_bins, while the sample stays O(num_bins).
_SAMPLES_PER_THRESHOLD = 32

# The MVTec AD reference labels ground-truth regions with a 3x3 structure of
# ones (8-connectivity). The zero first/last planes stop regions from joining
# across images when a whole N x H x W stack is labelled in one call.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True


def image_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Image-level AUROC, AP and F1-max of per-image anomaly scores.

    Args:
        scores: shape (N,), higher means more anomalous.
        labels: shape (N,), truthy for anomalous images.

    Returns:
        ``image_auroc``, ``image_ap``, ``image_f1max``; all NaN when the labels
        hold one class only (e.g. a category evaluated on good images only).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    _check_scores(scores, labels.shape, "scores", "labels")
    if labels.all() or not labels.any():
        return dict.fromkeys(("image_auroc", "image_ap", "image_f1max"), math.nan)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return {
        "image_auroc": float(roc_auc_score(labels, scores)),
        "image_ap": float(average_precision_score(labels, scores)),
        "image_f1max": _f1max(precision, recall),
    }


DECISION_NAMES = ("accuracy", "precision", "recall", "f1")


def decision_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the decisions ``score > threshold`` (what ``predict`` flags).

    The threshold-free metrics above say how well scores separate the
    classes; these say how good the stored decision is. A ratio with a zero
    denominator (nothing flagged, no defective image) is NaN, as is every one
    without a threshold.
    """
    if threshold is None:
        return dict.fromkeys(DECISION_NAMES, math.nan)
    flagged = np.asarray(scores, dtype=np.float64).ravel() > threshold
    labels = np.asarray(labels).astype(bool).ravel()
    hits = int(np.sum(flagged & labels))

    def ratio(numerator: int, denominator: int) -> float:
        return numerator / denominator if denominator else math.nan

    precision, recall = ratio(hits, int(flagged.sum())), ratio(hits, int(labels.sum()))
    f1 = ratio(2 * hits, int(flagged.sum()) + int(labels.sum()))
    return {
        "accuracy": ratio(int(np.sum(flagged == labels)), len(labels)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def pixel_metrics(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> dict[str, float]:
    """Exact pixel-level AUROC, AP, F1-max and AUPRO, all in memory.

    Peak memory is ~20x the float32 maps (sklearn and the AUPRO sort each
    keep several pixel-sized arrays); use :class:`PixelMetricAccumulator` when the
    maps of a whole test set do not fit.

    Args:
        maps: N x H x W anomaly maps.
        masks: N x H x W ground truth, truthy for defect pixels.
        fpr_limit: upper FPR integration limit of AUPRO.

    Returns:
        ``pixel_auroc``, ``pixel_ap``, ``pixel_f1max``, ``aupro``; all NaN when
        the masks contain only defect or only normal pixels.
    """
    maps, masks = _check_maps(maps, masks)
    _check_fpr_limit(fpr_limit)
    if masks.all() or not masks.any():
        return dict.fromkeys(_PIXEL_KEYS, math.nan)
    scores, labels = maps.ravel(), masks.ravel()
    precision, recall, _ = precision_recall_curve(labels, scores)
    return {
        "pixel_auroc": float(roc_auc_score(labels, scores)),
        # Same step integral as sklearn's average_precision_score, taken from
        # the curve we need for F1-max anyway to save one sort of all pixels.
        "pixel_ap": float(max(0.0, -np.sum(np.diff(recall) * precision[:-1]))),
        "pixel_f1max": _f1max(precision, recall),
        "aupro": aupro(maps, masks, fpr_limit),
    }


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Exact normalised area under the PRO curve (MVTec AD reference algorithm).

    A vectorised form of ``compute_pro`` from the reference ``pro_curve_util.py``:
    all pixels are sorted by score, descending; every normal pixel adds
    ``1 / n_normal`` to the FPR and every pixel of a ground-truth region (8-connected
    component of a mask) adds ``1 / (region size * n_regions)`` to the PRO; the curve
    keeps the cumulative sums at the last pixel of each distinct score, so ties
    enter as one point. The curve runs from (0, 0) to (1, 1) and is integrated by
    :func:`_area_up_to` up to ``fpr_limit``, then divided by it. Unlike the
    reference, the FPR is accumulated in float64 instead of float32.

    Returns:
        AUPRO in [0, 1]; NaN when there is no defect or no normal pixel.
    """
    maps, masks = _check_maps(maps, masks)
    _check_fpr_limit(fpr_limit)
    sizes, n_regions = _region_sizes(masks)
    n_normal = int(np.count_nonzero(sizes == 0))
    if n_regions == 0 or n_normal == 0:
        return math.nan
    scores = maps.ravel()
    order = np.argsort(scores)[::-1]
    sorted_scores = scores[order]
    sorted_sizes = sizes.ravel()[order]
    del order
    last_of_score = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    del sorted_scores
    fp = np.cumsum(sorted_sizes == 0)[last_of_score]
    pro_weight = np.divide(1.0, sorted_sizes, out=np.zeros(sorted_sizes.shape), where=sorted_sizes > 0)
    del sorted_sizes
    pro = np.cumsum(pro_weight)[last_of_score]
    return _aupro_from_cumulative(fp / n_normal, pro / n_regions, fpr_limit)


def percent(value: float | None) -> str:
    """A metric in [0, 1] as every table shows it: percent with one decimal; a missing one (None or NaN) as n/a."""
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def mean_over_categories(per_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over categories, skipping NaN.

    A category with NaN for a metric (e.g. no defect images) or without that
    key simply does not count for it; a metric that is NaN everywhere stays
    NaN. Keys appear in the order they are first met.
    """
    names = list(dict.fromkeys(name for metrics in per_category.values() for name in metrics))
    means: dict[str, float] = {}
    for name in names:
        values = [float(m[name]) for m in per_category.values() if name in m and not math.isnan(m[name])]
        means[name] = sum(values) / len(values) if values else math.nan
    return means


class PixelMetricAccumulator:
    """Streams pixel metrics over a test set with memory independent of its size.

    ``update`` labels the ground-truth regions of each batch (8-connectivity,
    as the reference) and appends to two temporary files: the scores (float32)
    and, per pixel, the size of its region (int32, 0 for normal pixels). With
    sizes known per pixel, the PRO of a threshold is the sum of
    ``1 / region size`` over defect pixels above it divided by the number of
    regions, so AUPRO needs one weighted histogram rather than one per region.

    ``compute`` reads the files in chunks twice. Pass 1 draws a uniform random
    sample of the normal and of the defect scores (``32 * num_bins // 2`` each,
    seeded) and takes ``num_bins // 2`` quantiles of each as thresholds, so each
    bin holds at most about ``2 / num_bins`` of either class whatever the
    score distribution (heavy tails included). Pass 2 histograms normal counts,
    defect counts and PRO weights over these bins; all four metrics then come
    from the cumulative histograms, exactly as if the thresholds were the only
    distinct scores. Results are exact when every distinct score becomes a
    threshold, which is guaranteed when each class has at most
    ``num_bins // 2`` distinct scores and at most ``32 * num_bins // 2``
    pixels; otherwise see ``docs/metrics.md`` for the measured error.

    Memory is O(num_bins) plus one chunk of ``chunk_pixels``; disk is 8 bytes
    per pixel. The files are deleted by ``compute``, ``close``, the end of a
    ``with`` block or garbage collection, whichever comes first.
    """

    chunk_pixels: int = 1 << 20
    """Pixels read per chunk in ``compute``; bounds its working memory."""

    def __init__(self, fpr_limit: float = 0.3, num_bins: int = 10_000, workdir: str | Path | None = None) -> None:
        _check_fpr_limit(fpr_limit)
        if num_bins < 2:
            raise ValueError(f"num_bins must be at least 2, got {num_bins}")
        self.fpr_limit = fpr_limit
        self.num_bins = num_bins
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="snlad-metrics-", dir=workdir))
        # Kept open between calls and closed by the finalizer, not a with-block.
        self._score_file: BinaryIO = open(self._dir / "scores.f32", "w+b")
        self._size_file: BinaryIO = open(self._dir / "region_sizes.i32", "w+b")
        self._finalizer = weakref.finalize(self, _release, (self._score_file, self._size_file), self._dir)
        self._n_normal = 0
        self._n_defect = 0
        self._n_regions = 0
        self._result: dict[str, float] | None = None

    def update(self, maps: np.ndarray, masks: np.ndarray) -> None:
        """Append one batch of B x H x W maps and masks (sizes may differ between batches)."""
        if not self._finalizer.alive:
            raise RuntimeError("PixelMetricAccumulator.update() after compute() or close()")
        maps, masks = _check_maps(maps, masks)
        sizes, n_regions = _region_sizes(masks)
        np.ascontiguousarray(maps, dtype=np.float32).tofile(self._score_file)
        sizes.tofile(self._size_file)
        n_defect = int(np.count_nonzero(masks))
        self._n_defect += n_defect
        self._n_normal += masks.size - n_defect
        self._n_regions += n_regions

    def compute(self) -> dict[str, float]:
        """Return ``pixel_auroc``, ``pixel_ap``, ``pixel_f1max``, ``aupro`` and delete the files.

        NaN for all four when only one class was seen. Calling it again
        returns the same values.
        """
        if self._result is None:
            if not self._finalizer.alive:
                raise RuntimeError("PixelMetricAccumulator.compute() after close()")
            if self._n_normal == 0 or self._n_defect == 0:
                self._result = dict.fromkeys(_PIXEL_KEYS, math.nan)
            else:
                self._result = self._binned_metrics()
            self.close()
        return dict(self._result)

    def close(self) -> None:
        """Delete the temporary files now; further ``update`` calls fail."""
        self._finalizer()

    def __enter__(self) -> PixelMetricAccumulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _binned_metrics(self) -> dict[str, float]:
        """Pass 1: thresholds from class-wise score samples; pass 2: histograms; then metrics."""
        edges = self._thresholds()
        n_bins = edges.size + 1
        normal_hist = np.zeros(n_bins, dtype=np.int64)
        defect_hist = np.zeros(n_bins, dtype=np.int64)
        pro_hist = np.zeros(n_bins, dtype=np.float64)
        for scores, sizes in self._chunks():
            # Bin b holds scores in [edges[b-1], edges[b]): everything in bins
            # > b is exactly the set of pixels with score >= edges[b].
            bins = np.searchsorted(edges, scores, side="right")
            defect = sizes > 0
            defect_hist += np.bincount(bins[defect], minlength=n_bins)
            normal_hist += np.bincount(bins[~defect], minlength=n_bins)
            pro_hist += np.bincount(bins[defect], weights=1.0 / sizes[defect], minlength=n_bins)
        # Sweep thresholds from the highest bin down; prepend the empty prediction.
        fp = np.concatenate(([0], np.cumsum(normal_hist[::-1])))
        tp = np.concatenate(([0], np.cumsum(defect_hist[::-1])))
        pro = np.concatenate(([0.0], np.cumsum(pro_hist[::-1]))) / self._n_regions
        return {
            **_roc_pr_from_cumulative(tp, fp),
            "aupro": _aupro_from_cumulative(fp / self._n_normal, pro, self.fpr_limit),
        }

    def _thresholds(self) -> np.ndarray:
        """Sorted distinct thresholds: per-class quantiles of a seeded uniform sample."""
        per_class = self.num_bins // 2
        budget = _SAMPLES_PER_THRESHOLD * per_class
        rng = np.random.default_rng(0)
        keep_normal = min(1.0, budget / self._n_normal)
        keep_defect = min(1.0, budget / self._n_defect)
        normal_parts: list[np.ndarray] = []
        defect_parts: list[np.ndarray] = []
        for scores, sizes in self._chunks():
            defect = sizes > 0
            kept = rng.random(scores.size) < np.where(defect, keep_defect, keep_normal)
            normal_parts.append(scores[kept & ~defect])
            defect_parts.append(scores[kept & defect])
        return np.union1d(_quantile_values(normal_parts, per_class), _quantile_values(defect_parts, per_class))

    def _chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (scores, region sizes) chunks from the start of the files, reusing two buffers."""
        score_buf = np.empty(self.chunk_pixels, dtype=np.float32)
        size_buf = np.empty(self.chunk_pixels, dtype=np.int32)
        for f in (self._score_file, self._size_file):
            f.flush()
            f.seek(0)
        while n_bytes := self._score_file.readinto(memoryview(score_buf).cast("B")):
            n = n_bytes // score_buf.itemsize
            self._size_file.readinto(memoryview(size_buf[:n]).cast("B"))
            yield score_buf[:n], size_buf[:n]


def _release(files: tuple[BinaryIO, ...], directory: Path) -> None:
    """Close and delete the accumulator's files; a finalizer, so it must not hold the accumulator."""
    for f in files:
        f.close()
    shutil.rmtree(directory, ignore_errors=True)


def _quantile_values(parts: list[np.ndarray], count: int) -> np.ndarray:
    """Up to ``count`` distinct thresholds splitting the sample into equal-mass parts.

    Evenly spaced order statistics, i.e. actual sample values rather than
    interpolated quantiles, and all distinct values when there are at most
    ``count``: then every score is a threshold and the binned metrics are exact.
    Quantiles that fall on the same tied value merge into one threshold.
    """
    sample = np.sort(np.concatenate(parts))
    distinct = np.unique(sample)
    if distinct.size <= count:
        return distinct
    return np.unique(sample[np.linspace(0, sample.size - 1, count).round().astype(np.intp)])


def _roc_pr_from_cumulative(tp: np.ndarray, fp: np.ndarray) -> dict[str, float]:
    """AUROC, AP and F1-max from cumulative TP/FP counts at descending thresholds.

    ``tp[0] == fp[0] == 0`` and the last entries are the class totals. This is
    the curve sklearn builds, so with one point per distinct score the results
    equal roc_auc_score, average_precision_score and the F1-max of
    precision_recall_curve.
    """
    n_pos, n_neg = tp[-1], fp[-1]
    recall = tp / n_pos
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.zeros(tp.shape), where=predicted > 0)
    return {
        "pixel_auroc": float(np.trapezoid(recall, fp / n_neg)),
        "pixel_ap": float(np.sum(np.diff(recall) * precision[1:])),
        # 2PR / (P + R) rewritten without 0/0: 2 tp / (tp + fp + n_pos).
        "pixel_f1max": float(np.max(2 * tp / (predicted + n_pos))),
    }


def _aupro_from_cumulative(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Normalised AUPRO from FPR/PRO at descending thresholds, completed as the reference does.

    Cumulative float sums may overshoot 1 by rounding, so both are clipped,
    and the curve is framed by (0, 0) and (1, 1) like ``compute_pro``.
    """
    fpr = np.concatenate(([0.0], np.minimum(fpr, 1.0), [1.0]))
    pro = np.concatenate(([0.0], np.minimum(pro, 1.0), [1.0]))
    return float(_area_up_to(fpr, pro, fpr_limit) / fpr_limit)


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) for x in [0, x_max], as the reference ``trapezoid``.

    ``x`` is non-decreasing and starts at 0. Points with x <= x_max are
    integrated; if x_max falls strictly between two points, y is linearly
    interpolated from the last point below x_max (the highest y at that x)
    and the next one.
    """
    end = int(np.searchsorted(x, x_max, side="right"))
    area = float(np.trapezoid(y[:end], x[:end]))
    if end < x.size and x[end - 1] < x_max:
        x0, x1, y0, y1 = x[end - 1], x[end], y[end - 1], y[end]
        y_at_max = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_at_max) * (x_max - x0)
    return area


def _f1max(precision: np.ndarray, recall: np.ndarray) -> float:
    """Max F1 over a precision-recall curve, counting 0/0 (P = R = 0) as 0."""
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(total.shape), where=total > 0)
    return float(np.max(f1))


def _region_sizes(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-pixel size of its ground-truth region (0 for normal pixels) and the region count.

    Regions are 8-connected components of each image's mask, never spanning
    two images.
    """
    labels, n_regions = ndimage.label(masks, structure=_REGION_STRUCTURE)
    sizes = np.bincount(labels.ravel(), minlength=n_regions + 1).astype(np.int32)
    sizes[0] = 0
    return sizes[labels], int(n_regions)


def _check_maps(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate N x H x W maps and masks; masks become bool (nonzero = defect, as the reference)."""
    maps = np.asarray(maps)
    masks = np.asarray(masks)
    if maps.ndim != 3:
        raise ValueError(f"anomaly maps must be N x H x W, got shape {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float64)
    _check_scores(maps, masks.shape, "anomaly maps", "masks")
    return maps, masks.astype(bool, copy=False)


def _check_scores(scores: np.ndarray, label_shape: tuple[int, ...], what: str, against: str) -> None:
    """Shapes must match and scores be finite: NaN would silently corrupt every sort."""
    if scores.shape != label_shape:
        raise ValueError(f"{what} shape {scores.shape} does not match {against} shape {label_shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what} contain NaN or infinite values")


def _check_fpr_limit(fpr_limit: float) -> None:
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
