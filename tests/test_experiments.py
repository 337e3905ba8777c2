"""The experiment runner: every run trained, tested and validated once; tables equal to the runs' own files."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from snlad import api
from snlad.cli import main
from snlad.config import from_dict
from snlad.errors import SnladError
from snlad.runs.experiments import Experiment, load_experiment, run_overrides
from snlad.runs.run import Run

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
CATEGORIES = ["bottle", "kolektor_sdd"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, one_thread) -> Path:
    """Two configurations x two seeds, multi-class, on two demo categories; tiny settings."""
    folder = tmp_path_factory.mktemp("experiment")
    spec = folder / "tiny.yaml"
    spec.write_text(
        "name: tiny\n"
        "settings: {data.image_size: 64, train.batch_size: 4, data.num_workers: 0, loss.affinity_size: 8,"
        " train.epochs: 1, data.holdout_fraction: 0.3}\n"
        "seeds: [0, 1]\n"
        "modes: [multi-class]\n"
        f"categories: {json.dumps(CATEGORIES)}\n"
        "configurations:\n  fd: {model: fd}\n  fd-short-topk: {model: fd, set: [map.topk_fraction=0.05]}\n"
    )
    api.experiment(file=spec, data=DEMO, out=folder / "out", real_defects=DEMO)  # DEMO's test split: see below
    return folder


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize(
    "source, file_name",
    [("", "metrics.json"), ("-validation", "validation.json"), ("-realval", "validation-real.json")],
)
def test_tables_hold_each_runs_own_numbers(experiment, source, file_name):
    out = experiment / "out"
    rows = csv_rows(out / f"results-multi-class{source}.csv")
    assert {(r["configuration"], r["seed"]) for r in rows} == {
        (name, seed) for name in ("fd", "fd-short-topk") for seed in ("0", "1")
    }
    for row in rows:
        own = json.loads((out / "multi-class" / row["configuration"] / f"seed{row['seed']}" / file_name).read_text())
        assert float(row["image_auroc"]) == pytest.approx(own[row["category"]]["image_auroc"])
    table = (out / f"results-multi-class{source}.md").read_text()
    for name in ("fd", "fd-short-topk"):
        values = [
            json.loads((out / "multi-class" / name / f"seed{s}" / file_name).read_text())["mean"]["image_auroc"]
            for s in (0, 1)
        ]
        cell = f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"
        assert f"| {name} | 2 |" in table and cell in table


@pytest.mark.slow
def test_validation_uses_no_test_image(experiment, tmp_path):
    """Validation scores held-out normals plus as many cut-paste copies again (three each): never the test split.

    Validating again on a root that holds the training images only gives the same numbers.
    """
    run = Run(experiment / "out" / "multi-class" / "fd" / "seed0")
    validation = json.loads(run.validation_json.read_text())
    assert set(validation) == {*CATEGORIES, "mean"}
    assert validation != json.loads(run.metrics_json.read_text())
    train_only = tmp_path / "train-only"
    for category in CATEGORIES:
        shutil.copytree(DEMO / category / "train", train_only / category / "train")
    copy = shutil.copytree(run.path, tmp_path / "run")
    again = api.validate(run=copy, data=train_only)
    for category in [*CATEGORIES, "mean"]:
        for key in ("image_auroc", "pixel_auroc", "aupro"):
            assert again[category][key] == pytest.approx(validation[category][key], abs=1e-6), (category, key)


@pytest.mark.slow
def test_real_defect_validation_scores_the_roots_test_split_and_sits_beside_test_in_the_summary(experiment):
    """Validated on the data root itself, the real-defect numbers must be the test numbers, category by category."""
    out = experiment / "out"
    for name in ("fd", "fd-short-topk"):
        run = Run(out / "multi-class" / name / "seed0")
        real, test = json.loads(run.real_validation_json.read_text()), json.loads(run.metrics_json.read_text())
        for category in [*CATEGORIES, "mean"]:
            for key in ("image_auroc", "pixel_auroc", "aupro"):
                assert real[category][key] == pytest.approx(test[category][key])
        assert real["mean"]["run_categories"] == 2
    summary = (out / "summary-multi-class.md").read_text()
    means = [
        json.loads((out / "multi-class" / "fd" / f"seed{s}" / "metrics.json").read_text())["mean"]["image_auroc"]
        for s in (0, 1)
    ]
    cell = f"{100 * np.mean(means):.1f} ± {100 * np.std(means):.1f}"
    assert summary.count(cell) >= 2  # the validation and the test column
    real = [
        json.loads((out / "multi-class" / "fd" / f"seed{s}" / "validation-real.json").read_text())["mean"]
        for s in (0, 1)
    ]
    scores = [(r["image_auroc"] + r["pixel_auroc"]) / 2 for r in real]
    score = f"{100 * np.mean(scores):.1f} ± {100 * np.std(scores):.1f}"
    assert f"| fd | 2 / 2 | {score} | {cell} |" in summary


@pytest.mark.slow
def test_real_defect_validation_accepts_a_root_with_test_images_only(experiment, tmp_path):
    """A validation root needs no train/ folder and may cover only some of the run's categories."""
    root = tmp_path / "val" / "bottle"
    for part in ("test", "ground_truth"):
        shutil.copytree(DEMO / "bottle" / part, root / part)
    run = Run(experiment / "out" / "multi-class" / "fd" / "seed0")
    results = api.validate_real(run=run.path, data=root.parent)
    assert set(results) == {"bottle", "mean"} and results["mean"]["run_categories"] == 2
    test = json.loads(run.metrics_json.read_text())
    assert results["bottle"]["image_auroc"] == pytest.approx(test["bottle"]["image_auroc"])
    assert "1 of the run's 2 categories" in run.real_validation_md.read_text()
    with pytest.raises(SnladError, match="holds none of the run's categories"):
        other = tmp_path / "other" / "widget"
        shutil.copytree(DEMO / "bottle" / "test", other / "test")
        api.validate_real(run=run.path, data=other.parent)


@pytest.mark.slow
def test_runs_kept_without_their_model_files_count_as_done(experiment, tmp_path, capsys):
    """A campaign commits results, never model files: on another machine the runner must not train those runs again."""
    out = tmp_path / "out"
    for seed in (0, 1):
        source = experiment / "out" / "multi-class" / "fd" / f"seed{seed}"
        shutil.copytree(source, out / "multi-class" / "fd" / f"seed{seed}", ignore=shutil.ignore_patterns("*.pt"))
    kept = out / "multi-class" / "fd" / "seed0"
    kept_validation = kept / "validation-real.json"
    kept_validation.unlink()
    spec = yaml.safe_load((experiment / "tiny.yaml").read_text())
    spec["validate"] = False
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    api.experiment(
        file=tmp_path / "tiny.yaml",
        data=DEMO,
        out=out,
        selection=api.ExperimentSelection(only=["fd"]),
        real_defects=DEMO,
    )
    assert not list(out.rglob("*.pt"))  # nothing trained
    assert not kept_validation.exists()  # no model to validate with: said, not faked
    assert "results kept without the model, not validated again" in capsys.readouterr().out
    assert "| fd | 1 / 2 |" in (out / "summary-multi-class.md").read_text()


@pytest.mark.slow
def test_references_are_rows_read_from_their_own_folders_never_trained(experiment, tmp_path):
    """A reference row (another study's finished runs) holds exactly what a configuration row of the same runs holds."""
    out = tmp_path / "out"
    shutil.copytree(experiment / "out" / "multi-class" / "fd", out / "multi-class" / "fd")
    study = shutil.copytree(
        experiment / "out" / "multi-class" / "fd", tmp_path / "study", ignore=shutil.ignore_patterns("*.pt")
    )
    spec = yaml.safe_load((experiment / "tiny.yaml").read_text())
    spec["references"] = {"multi-class": {"other": ["study/seed1", "study/seed0"]}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    api.experiment(file=tmp_path / "tiny.yaml", data=DEMO, out=out, real_defects=DEMO, tables_only=True)
    assert not (out / "multi-class" / "other").exists() and not list(study.rglob("*.pt"))
    summary = (out / "summary-multi-class.md").read_text().splitlines()
    fd_row = next(line for line in summary if line.startswith("| fd |"))
    assert "| other (reference) |" + fd_row.removeprefix("| fd |") in summary
    rows = csv_rows(out / "results-multi-class.csv")
    own = json.loads((study / "seed1" / "metrics.json").read_text())
    reference = {r["category"]: r for r in rows if r["configuration"] == "other (reference)" and r["seed"] == "1"}
    assert float(reference["mean"]["pixel_auroc"]) == pytest.approx(own["mean"]["pixel_auroc"])
    spec["references"] = {"multi-class": {"twice": ["study/seed0", "study/seed0"]}}  # the same seed: both count
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    api.experiment(file=tmp_path / "tiny.yaml", data=DEMO, out=out, real_defects=DEMO, tables_only=True)
    assert "| twice (reference) | 2 / 2 |" in (out / "summary-multi-class.md").read_text()


@pytest.mark.parametrize(
    "references, message",
    [
        ({"multi-class": {"fd": ["study"]}}, "has a configuration's name"),
        ({"multi-class": {"other": ["nowhere"]}}, "holds no finished run"),
        ({"two-class": {"other": ["study"]}}, "must map a mode"),
        ({"multi-class": {"other": []}}, "must map a mode"),
    ],
)
def test_a_bad_reference_is_one_clear_error_at_load(tmp_path, references, message):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "metrics.json").write_text("{}")
    spec = {"configurations": {"fd": {"model": "fd"}}, "references": references}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SnladError, match=message):
        load_experiment(tmp_path / "e.yaml")
    spec["references"] = {"multi-class": {"other": "study"}}  # one folder may be given without a list
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(spec))
    assert load_experiment(tmp_path / "e.yaml").references == {"multi-class": {"other": [tmp_path / "study"]}}


@pytest.mark.slow
def test_rerun_trains_nothing_and_validates_what_is_missing(experiment):
    out = experiment / "out"
    run = Run(out / "multi-class" / "fd" / "seed1")
    model = run.model_dirs()[0].model
    stamp = model.stat().st_mtime_ns
    run.validation_json.unlink()
    api.experiment(file=experiment / "tiny.yaml", data=DEMO, out=out)
    assert model.stat().st_mtime_ns == stamp
    assert run.validation_json.is_file()


@pytest.mark.parametrize(
    "path", sorted((DEMO.parents[1] / "configs" / "experiments").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_experiment_file_resolves(path):
    """Each configuration of each shipped file is a valid config (an unknown or bad key would stop a long run late)."""
    experiment = load_experiment(path)
    for spec in experiment.configurations.values():
        overrides = experiment.settings + list(spec.get("set", []))
        api.resolve_config(model=spec["model"], overrides=overrides, categories=["a", "b"])


@pytest.mark.slow
def test_categories_come_from_settings_or_the_top_level_key_and_category_overrides_both(tmp_path, one_thread, capsys):
    """data.categories under settings limits the experiment like the top-level key; --category wins over both."""
    spec = tmp_path / "limit.yaml"
    fast = "data.image_size: 64, train.batch_size: 4, data.num_workers: 0, loss.affinity_size: 8, train.epochs: 1"
    spec.write_text(
        f"settings: {{{fast}, data.categories: [bottle, kolektor_sdd]}}\nvalidate: false\n"
        "configurations: {fd: {model: fd}}\nmodes: [multi-class]\n"
    )
    experiment = load_experiment(spec)
    assert experiment.categories == ["bottle", "kolektor_sdd"] and not any(
        "categories" in s for s in experiment.settings
    )
    assert (
        main(
            [
                "--quiet",
                "experiment",
                "--experiment",
                str(spec),
                "--data",
                str(DEMO),
                "--out",
                str(tmp_path / "o"),
                "--category",
                "bottle",
            ]
        )
        == 0
    )
    assert json.loads(Run(tmp_path / "o" / "multi-class" / "fd" / "seed0").metrics_json.read_text()).keys() == {
        "bottle",
        "mean",
    }
    spec.write_text(spec.read_text() + "categories: [capsule]\n")
    with pytest.raises(SnladError, match="disagree"):
        load_experiment(spec)


@pytest.mark.slow
def test_overwriting_a_run_removes_its_test_and_validation_results(tmp_path, one_thread):
    """They would describe the replaced model; the runner validates a run again only when its validation is missing."""
    overrides = ["data.image_size=64", "train.batch_size=4", "data.num_workers=0", "train.epochs=1"]
    config = api.resolve_config(model="fd", overrides=[*overrides, "data.holdout_fraction=0.3"], categories=CATEGORIES)
    run = Run(tmp_path / "run")
    api.train(config=config, data=DEMO, out=run.path)
    api.test(run=run.path, data=DEMO)
    api.validate(run=run.path, data=DEMO)
    assert run.metrics_json.is_file() and run.validation_json.is_file() and run.validation_md.is_file()
    api.train(config=config, data=DEMO, out=run.path, overwrite=True)
    assert not any(path.exists() for path in (run.metrics_json, run.validation_json, run.validation_md))


def _committed_runs() -> list[tuple[Experiment, str, str, Path]]:
    """(experiment, mode, row, run folder) of every finished run committed under docs/results/<experiment name>."""
    found = []
    for path in sorted((REPO / "configs" / "experiments").glob("*.yaml")):
        experiment = load_experiment(path)
        for mode in experiment.modes:
            for name in experiment.configurations:
                folder = REPO / "docs" / "results" / experiment.name / mode / name
                found += [(experiment, mode, name, run.parent) for run in sorted(folder.glob("seed*/metrics.json"))]
    return found


def test_committed_runs_still_resolve_to_the_config_they_were_trained_with() -> None:
    """A preset change must not change what a committed row means: the runner skips a row whose results exist,
    so a row that now resolved to other settings would mix two models in one table (the experiment files pin
    the old presets' values, e.g. campaign-rd's Lite0 teacher and 30 epochs, for that reason)."""
    runs = _committed_runs()
    assert len(runs) >= 50  # the campaigns' committed runs (this test reads the repository's own results)
    for experiment, mode, name, folder in runs:
        seed = int(folder.name.removeprefix("seed"))
        model = experiment.configurations[name]["model"]
        resolved = api.resolve_config(model=model, overrides=run_overrides(experiment, name, seed)).to_dict()
        stored_config = folder / "config.yaml"
        trained = from_dict(yaml.safe_load(stored_config.read_text()), str(stored_config)).to_dict()
        for config in (resolved, trained):
            config["data"].pop("categories")  # the data root's, filled in at training time
        assert resolved == trained, (
            f"{experiment.name} {mode} {name} {folder.name} no longer resolves to its trained config"
        )
