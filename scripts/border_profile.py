"""Are a run's anomaly maps hot along the image borders on normal images? (issue 19: borders)

Over normal images only (never a test image): the run's held-out normal
training images of ``--data`` (what `snlad validate` uses), and the good
images of a real-defect validation root (``--real-defects``, e.g.
``../shared/data/realad-val``). Per category, for the map at the model's
resolution (S x S) and per level before upsampling:

- ``border / interior``: the mean map value in the outer band (``--band``
  pixels of S, default S/16) over the mean inside it (1 = no border effect);
- ``top / bottom / left / right``: the same ratio for each side alone.

    python scripts/border_profile.py --run RUN --data ROOT [--real-defects VAL] [--out FILE.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from snlad.data import AnomalyDataset, holdout_split, index_dataset
from snlad.files import atomic_write_text
from snlad.runs.run import Run
from snlad.runs.trained import TrainedModel
from snlad.scoring.maps import local_distance


def side_ratios(maps: torch.Tensor, band: int) -> dict[str, float]:
    """Mean of ``maps`` (B x H x W) in each border band and in all four, each over the interior's mean."""
    interior = maps[:, band:-band, band:-band].mean()
    sides = {
        "top": maps[:, :band, :],
        "bottom": maps[:, -band:, :],
        "left": maps[:, :, :band],
        "right": maps[:, :, -band:],
    }
    mask = torch.ones(maps.shape[-2:], dtype=torch.bool)
    mask[band:-band, band:-band] = False
    ratios = {"border / interior": float(maps[:, mask].mean() / interior)}
    ratios.update({name: float(values.mean() / interior) for name, values in sides.items()})
    return ratios


@torch.no_grad()
def profile(
    models: dict[str, TrainedModel], groups: dict[str, list], image_size: int, band: int, batch_size: int
) -> list[str]:
    """Markdown rows: per category and source, the ratios of the final map and of each level's local distance."""
    rows = []
    for (source, category), samples in groups.items():
        trained = models[category]
        images = [AnomalyDataset([s], image_size)[0]["image"] for s in samples]
        maps, levels = [], None
        for start in range(0, len(images), batch_size):
            batch = torch.stack(images[start : start + batch_size])
            teacher, student = trained.model(batch)
            maps.append(trained.scorer(teacher, student)[0])
            distances = [local_distance(t, s) for t, s in zip(teacher, student, strict=True)]
            levels = distances if levels is None else [torch.cat([a, b]) for a, b in zip(levels, distances)]
        final = side_ratios(torch.cat(maps), band)
        per_level = [
            side_ratios(level, max(1, band * level.shape[-1] // image_size))["border / interior"] for level in levels
        ]
        rows.append(
            f"| {category} | {source} | {len(images)} | "
            + " | ".join(f"{final[key]:.2f}" for key in ("border / interior", "top", "bottom", "left", "right"))
            + " | "
            + " / ".join(f"{value:.2f}" for value in per_level)
            + " |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the data root the run was trained on")
    parser.add_argument("--real-defects", type=Path, help="a validation root: its good test images are profiled too")
    parser.add_argument("--band", type=int, help="border band in pixels of the model's input (default S/16)")
    parser.add_argument("--out", type=Path, help="write the table here too (Markdown)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    run = Run(args.run)
    models = run.load_models("cpu")
    config = next(iter(models.values())).config
    size = config.data.image_size
    band = args.band or size // 16
    _, held_out = holdout_split(
        index_dataset(args.data, "train", config.data.categories), config.data.holdout_fraction, config.train.seed
    )
    groups: dict[tuple[str, str], list] = {}
    for sample in held_out:
        groups.setdefault(("held-out normals", sample.category), []).append(sample)
    if args.real_defects is not None:
        shared = [c for c in config.data.categories if (args.real_defects / c).is_dir()]
        for sample in index_dataset(args.real_defects, "test", shared):
            if sample.label == 0:
                groups.setdefault(("validation goods", sample.category), []).append(sample)
    header = [
        f"Border heat of {run.path} on normal images ({band} px band of {size} px; ratio to the interior's mean).",
        "",
        "| category | images | n | border / interior | top | bottom | left | right | per level (stride 4 / 8 / 16) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    text = (
        "\n".join(
            header + profile(models, dict(sorted(groups.items(), key=lambda g: g[0][1])), size, band, args.batch_size)
        )
        + "\n"
    )
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
