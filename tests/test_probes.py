"""Interference probes: synthetic anomalies are exact and reproducible; the probe commands run end to end."""

from pathlib import Path

import numpy as np
import pytest
import torch

from snlad.cli import main
from snlad.data.synthesis import cut_paste, mix, pair_plan, paste_plan, patch_side
from snlad.errors import SnladError
from snlad.probes import MixupSettings, run_mixup

DEMO = Path(__file__).parents[1] / "data" / "demo"


@pytest.fixture(scope="module")
def run_dir(shared_run) -> Path:
    """The session's run on bottle, casting, kolektor_sdd and metal_nut (tests/conftest.py): probes only read it."""
    return shared_run


def test_mixup_at_lambda_zero_is_the_base_image_and_one_the_other():
    base, other = torch.rand(3, 16, 16), torch.rand(3, 16, 16)
    assert torch.equal(mix(base, other, 0.0), base)
    assert torch.allclose(mix(base, other, 1.0), other)
    assert torch.allclose(mix(base, other, 0.25), 0.75 * base + 0.25 * other)
    with pytest.raises(SnladError, match="lambda"):
        mix(base, other, 1.5)


@pytest.mark.parametrize("size,fraction", [(64, 0.15), (97, 0.3), (32, 0.02)])
def test_pasted_mask_is_exactly_the_pixels_that_changed(size, fraction):
    rng = np.random.default_rng(3)
    targets, sources = torch.rand(4, 3, size, size), torch.rand(5, 3, size, size) + 2.0  # never equal to a target pixel
    for paste in paste_plan(4, 5, 12, fraction, rng):
        image, mask = cut_paste(targets[paste.target], sources[paste.source], paste, fraction)
        changed = (image != targets[paste.target]).any(dim=0)
        assert torch.equal(changed, mask)
        assert int(mask.sum()) == patch_side(size, fraction) ** 2
        assert torch.equal(image[:, mask], image[:, mask].clamp(min=2.0))  # the patch is the source's content


def test_plans_depend_only_on_the_seed():
    assert pair_plan(10, 4, 15, np.random.default_rng(7)) == pair_plan(10, 4, 15, np.random.default_rng(7))
    assert pair_plan(10, 4, 15, np.random.default_rng(7)) != pair_plan(10, 4, 15, np.random.default_rng(8))
    assert pair_plan(3, 2, 40, np.random.default_rng(0)) == [(i, j) for i in range(3) for j in range(2)]
    first, again = (paste_plan(5, 3, 10, 0.2, np.random.default_rng(1)) for _ in range(2))
    assert first == again and first != paste_plan(5, 3, 10, 0.2, np.random.default_rng(2))


@pytest.mark.slow
def test_mixup_probe_is_deterministic_and_writes_its_outputs(run_dir, tmp_path):
    settings = MixupSettings("bottle", "metal_nut", lambdas=(0.0, 0.5, 0.9), seed=4, pairs=5)
    rows = run_mixup([run_dir], DEMO, settings, tmp_path / "a")
    again = run_mixup([run_dir], DEMO, settings, tmp_path / "b")
    assert rows == again
    assert (tmp_path / "a" / "mixup.csv").read_text() == (tmp_path / "b" / "mixup.csv").read_text()
    at_zero = next(row for row in rows if row["lambda"] == 0.0)
    assert at_zero["n_mixture"] == 5 and 0.0 <= at_zero["image_auroc"] <= 1.0
    for name in ("mixup.json", "mixup_auroc.png", "mixup_scores.png", "mixup_examples.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0


@pytest.mark.slow
def test_cutpaste_cli_is_deterministic_and_reports_all_three_metrics(run_dir, tmp_path, capsys):
    def probe(out: Path) -> str:
        args = ["--quiet", "probe", "cutpaste", "--run", str(run_dir), "--data", str(DEMO), "--source", "bottle"]
        assert (
            main([*args, "--target", "kolektor_sdd,metal_nut", "--count", "4", "--seed", "1", "--out", str(out)]) == 0
        )
        return (out / "cutpaste.csv").read_text()

    table = probe(tmp_path / "a")
    assert table == probe(tmp_path / "b")
    header, *lines = table.splitlines()
    assert header == "run,model,source,target,patch_size,n_normal,n_synthetic,image_auroc,pixel_auroc,aupro"
    assert [line.split(",")[3] for line in lines] == ["kolektor_sdd", "metal_nut"]
    assert all(0.0 <= float(v) <= 1.0 for line in lines for v in line.split(",")[-3:])
    assert (tmp_path / "a" / "cutpaste_examples_metal_nut.png").is_file()
    printed = capsys.readouterr().out  # percentages, as every table printed for people; the CSV holds fractions
    first = [line.split(",") for line in lines][0]
    assert f"pixel_auroc={100 * float(first[-2]):.1f} %" in printed


def test_probe_errors_are_one_line(run_dir, tmp_path, capsys):
    assert (
        main(
            [
                "probe",
                "mixup",
                "--run",
                str(run_dir),
                "--data",
                str(DEMO),
                "--base",
                "capsule",
                "--other",
                "bottle",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "probe",
                "cutpaste",
                "--run",
                str(run_dir),
                "--data",
                str(DEMO),
                "--source",
                "bottle",
                "--target",
                "metal_nut",
                "--patch-size",
                "1.5",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "not trained on capsule" in errors[0] and "patch size" in errors[1]
    with pytest.raises(SnladError, match="two different categories"):
        run_mixup([run_dir], DEMO, MixupSettings("bottle", "bottle"), tmp_path)


@pytest.mark.parametrize("probe", ["mixup", "cutpaste"])
def test_probe_batch_size_has_help(probe, capsys):
    with pytest.raises(SystemExit):
        main(["probe", probe, "--help"])
    assert "speed and memory only" in " ".join(capsys.readouterr().out.split())
