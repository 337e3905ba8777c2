"""Do a trained model's CRAMs stay near the identity? (issue 13, item 5: check before changing CRAM.)

For every CRAM of a run's model, over the run's held-out normal training images
(the same images `snlad validate` uses; no test image), per level:

- ``change``: ||CRAM(x) - x|| / ||x||, how far the module moves the features
  (0 = identity; a zero-initialised residual CRAM starts at exactly 0);
- ``explained``: 1 - ||x - sum_k a_k c_k|| / ||x||, how much of a feature the
  soft reconstruction from the centres accounts for (1 = the centres encapsulate
  the normal features, <= 0 = they explain nothing);
- ``assignment``: the mean over positions of max_k a_k (1/K = uniform, 1 = hard);
- ``centres used``: how many centres are the argmax at >= 1 % of the positions;
- ``|gamma|``: the mean absolute scale of the projection's BatchNorm (0 at init).

    python scripts/cram_identity.py --run RUN --data ROOT [--out FILE.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from snlad.data import AnomalyDataset, holdout_split, index_dataset
from snlad.files import atomic_write_text
from snlad.models.cram import CRAM
from snlad.runs.run import load_run
from snlad.runs.trained import distinct_models


def cram_statistics(cram: CRAM, inputs: list[torch.Tensor]) -> dict[str, float]:
    """The module docstring's statistics of one CRAM over its recorded inputs (each B x C x H x W)."""
    change = explained = peak = 0.0
    argmax_counts = torch.zeros(cram.centres.shape[0])
    for x in inputs:
        assignment, aggregated = cram.soft_assignment(x)
        norm = x.flatten(1).norm(dim=1)
        change += ((cram(x) - x).flatten(1).norm(dim=1) / norm).sum().item()
        explained += (1 - (x - aggregated).flatten(1).norm(dim=1) / norm).sum().item()
        peak += assignment.amax(dim=1).mean(dim=(1, 2)).sum().item()
        argmax_counts += torch.bincount(assignment.argmax(dim=1).flatten(), minlength=len(argmax_counts)).float()
    count = sum(len(x) for x in inputs)
    return {
        "change": change / count,
        "explained": explained / count,
        "assignment": peak / count,
        "centres used": int((argmax_counts / argmax_counts.sum() >= 0.01).sum()),
        "centres": len(argmax_counts),
        "|gamma|": cram.project[1].weight.abs().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="write the table here too (Markdown)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    lines = [f"CRAMs of `{args.run}` on its held-out normal training images", ""]
    for trained, served in distinct_models(load_run(args.run)):  # a multi-class model serves every category
        name = ", ".join(served) if len(served) < 3 else f"one model for {len(served)} categories"
        config, model = trained.config, trained.eval().model
        crams = [module for module in model.modules() if isinstance(module, CRAM)]
        if not crams:
            raise SystemExit(f"{name}: this model has no CRAM (model.cram is off)")
        samples = index_dataset(args.data, "train", config.data.categories)
        _, held_out = holdout_split(samples, config.data.holdout_fraction, config.train.seed)
        recorded: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(crams))}
        hooks = [
            cram.register_forward_hook(lambda _m, inputs, _o, store=recorded[i]: store.append(inputs[0].detach()))
            for i, cram in enumerate(crams)
        ]
        dataset = AnomalyDataset(held_out, config.data.image_size)
        with torch.inference_mode():
            for start in range(0, len(dataset), args.batch_size):
                model(
                    torch.stack([dataset[i]["image"] for i in range(start, min(start + args.batch_size, len(dataset)))])
                )
            for hook in hooks:  # before the statistics: their own CRAM calls must not record more inputs
                hook.remove()
            rows = [cram_statistics(cram, recorded[i]) for i, cram in enumerate(crams)]
        lines += [
            f"{name}: {len(dataset)} held-out normal images; model.cram_output={config.model.cram_output}, "
            f"cram_init={config.model.cram_init}, cram_tau={config.model.cram_tau}",
            "",
            "| CRAM | change ||y-x||/||x|| | explained by centres | mean max assignment | centres used | mean |gamma| |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {i + 1} | {r['change']:.3f} | {r['explained']:.3f} | {r['assignment']:.3f} (1/K = {1 / r['centres']:.3f}) "
            f"| {r['centres used']} / {r['centres']} | {r['|gamma|']:.3f} |"
            for i, r in enumerate(rows)
        ]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
