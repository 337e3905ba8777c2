"""How the threshold rules decide on test images (reported once; the rules never see test images).

Copies a trained run, recalibrates the copy with each rule (from held-out
normals and cut-paste anomalies made from them), then scores the test split
once and reports, per rule and category: the thresholds, the false-alarm rate
on good test images, the recall on defective ones, image F1, and pixel F1 of
the binary masks. Writes docs/results/thresholds-demo.md by default.

    python bench/bench_thresholds.py --run RUN --data ROOT [--out FILE]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = (("max", 1.0, 0.0), ("max", 1.0, 0.1), ("synthetic-f1", 1.0, 0.0))


def decide(scored, threshold: float, pixel_threshold: float) -> dict:
    flagged = scored.scores > threshold
    good, bad = scored.labels == 0, scored.labels == 1
    tp, fp = int((flagged & bad).sum()), int((flagged & good).sum())
    marked = scored.maps > pixel_threshold
    ptp, pfp, pfn = (
        int((marked & scored.masks).sum()),
        int((marked & ~scored.masks).sum()),
        int((~marked & scored.masks).sum()),
    )
    return {
        "false_alarms": f"{fp}/{int(good.sum())}",
        "recall": f"{tp}/{int(bad.sum())}",
        "image_f1": 2 * tp / max(2 * tp + fp + int(bad.sum()) - tp, 1),
        "pixel_f1": 2 * ptp / max(2 * ptp + pfp + pfn, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "thresholds-demo.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from snlad import api
    from snlad.data import index_dataset
    from snlad.engine.calibration import score_samples
    from snlad.engine.optimise import optimise_run
    from snlad.runs.run import load_run

    lines = []
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        shutil.copytree(args.run, run)
        models = optimise_run(load_run(run))
        config = next(iter(models.values())).config
        tests = {c: score_samples(models[c], index_dataset(args.data, "test", [c])) for c in models}
        lines += [
            "# Threshold rules on the demo test images",
            "",
            f"Run: {config.model.name}, {config.model.teacher}, {config.data.image_size} px, {config.train.epochs} epochs, "
            f"multi-class, data.holdout_fraction={config.data.holdout_fraction}. Thresholds from held-out normal training images "
            "(and cut-paste anomalies made from them); the test images are scored once, after, to show what each rule decides. "
            "Pixel F1 over all test pixels at the model's resolution. Produced by `bench/bench_thresholds.py`.",
            "",
            "| rule | category | held-out normals | image threshold | pixel threshold | false alarms (good test) | recall (defective test) | image F1 | pixel F1 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rule, quantile, margin in RULES:
            calibration = api.calibrate(
                run=run, data=args.data, rule=api.Rule(name=rule, quantile=quantile, margin=margin), overwrite=True
            )
            name = rule + (f" +{margin:.0%}" if margin else "")
            for category, entry in calibration.items():
                d = decide(tests[category], entry["threshold"], entry["pixel_threshold"])
                lines.append(
                    f"| {name} | {category} | {len(entry['normal_scores'])} | {entry['threshold']:.4f} | {entry['pixel_threshold']:.4f} | "
                    f"{d['false_alarms']} | {d['recall']} | {d['image_f1']:.2f} | {d['pixel_f1']:.2f} |"
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
