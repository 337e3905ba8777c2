"""The HTML report, its error messages, the one-class vs multi-class figure and the screenshot script."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_CATEGORIES, SHARED_SETTINGS
from snlad import api
from snlad.cli import main
from snlad.errors import SnladError
from snlad.report import build_report, onevsmulti_figure
from snlad.report.onevsmulti import summarise

ROOT = Path(__file__).parents[1]
DEMO = ROOT / "data" / "demo"
CATEGORIES = SHARED_CATEGORIES  # casting: image-level labels only


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_run: Path, one_thread) -> list[Path]:
    """An fd run trained here and the session's SNL-FD run (tests/conftest.py), same categories and settings, tested."""
    out = tmp_path_factory.mktemp("report-runs") / "fd"
    config = api.resolve_config(model="fd", overrides=SHARED_SETTINGS, categories=CATEGORIES)
    api.train(config=config, data=DEMO, out=out)
    api.test(run=out, data=DEMO)
    return [out, shared_run]


class PageParser(HTMLParser):
    """Collects what the tests look for: categories, run columns, image sources."""

    def __init__(self) -> None:
        super().__init__()
        self.categories, self.runs, self.images = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "data-category" in attrs:
            self.categories.append(attrs["data-category"])
        if tag == "th" and "data-run" in attrs:
            self.runs.add(attrs["data-run"])
        if tag == "img":
            self.images.append(attrs["src"])


def write_results(folder: Path, mode: str, rows: list[tuple]) -> None:
    lines = ["configuration,seed,category,image_auroc,pixel_auroc,aupro"] + [",".join(map(str, row)) for row in rows]
    (folder / f"results-{mode}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def experiment_dir(tmp_path) -> Path:
    write_results(
        tmp_path,
        "one-class",
        [
            ("fd", 0, "a", 0.9, 0.8, 0.7),
            ("fd", 0, "b", 1.0, 1.0, 0.7),
            ("fd", 0, "mean", 0.1, 0.1, 0.1),
            ("fd", 1, "a", 0.8, 0.9, 0.7),
            ("fd", 1, "b", 0.8, "", 0.7),
        ],
    )
    write_results(
        tmp_path,
        "multi-class",
        [("fd", 0, "a", 0.6, 0.7, 0.5), ("fd", 0, "b", 0.8, 0.7, 0.5), ("snl-fd", 0, "a", 0.7, 0.8, 0.5)],
    )
    return tmp_path


@pytest.mark.slow
def test_report_shows_every_category_and_every_run(runs, tmp_path, experiment_dir):
    probes = tmp_path / "probe"
    probes.mkdir()
    (probes / "mixup.csv").write_text("run,lambda,image_auroc\nfd,0.5,0.123456\n")
    Image.new("RGB", (8, 8)).save(probes / "mixup_auroc.png")
    page = build_report(runs, DEMO, tmp_path / "report", [probes], experiment_dir, examples=2)
    parser = PageParser()
    parser.feed(page.read_text())
    assert parser.categories == CATEGORIES
    assert parser.runs == {"fd", "snl-fd"}
    assert all((page.parent / source).is_file() for source in parser.images)
    assert not any(source.startswith(("http:", "https:", "/")) for source in parser.images)
    text = page.read_text()
    assert "0.1235" in text and "images/probe0-mixup_auroc.png" in text and "images/onevsmulti.png" in text
    assert "<script" not in text
    assert "no mask (image-level label only)" in text  # casting's defects have no ground-truth picture


@pytest.mark.slow
def test_same_model_twice_gets_labels_from_the_paths(runs, tmp_path):
    twin = tmp_path / "again" / "fd"
    shutil.copytree(runs[0], twin)
    parser = PageParser()
    parser.feed(build_report([runs[0], twin], DEMO, tmp_path / "report", examples=1).read_text())
    assert len(parser.runs) == 2 and all(label.startswith("fd (") for label in parser.runs)


@pytest.mark.slow
def test_broken_run_directories_give_one_line_errors(runs, tmp_path, capsys):
    untested = tmp_path / "untested"
    shutil.copytree(runs[0], untested)
    for name in ("metrics.json", "metrics.csv", "metrics.md", "test_scores.csv"):
        (untested / name).unlink()
    corrupt = tmp_path / "corrupt"
    shutil.copytree(runs[0], corrupt)
    (corrupt / "model.pt").write_bytes(b"not a checkpoint")
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path: "no metrics.json",
        untested: "snlad test --run",
        corrupt: "corrupt",
    }
    for run_dir, message in cases.items():
        with pytest.raises(SnladError, match=message):
            build_report([runs[0], run_dir], DEMO, tmp_path / "out")
    capsys.readouterr()
    assert (
        main(["report", "--run", str(tmp_path / "missing"), "--data", str(DEMO), "--out", str(tmp_path / "out")]) == 2
    )
    assert capsys.readouterr().err.count("\n") == 1


def test_onevsmulti_figure_from_small_csvs(experiment_dir, tmp_path, capsys):
    summary = summarise(experiment_dir)
    mean, std, seeds = summary["one-class"]["fd"]["image_auroc"]
    assert seeds == 2 and mean == pytest.approx(0.875) and std == pytest.approx(0.075)  # seeds 0.95 and 0.8
    assert summary["one-class"]["fd"]["pixel_auroc"][0] == pytest.approx((0.9 + 0.9) / 2)  # the blank cell is skipped
    assert summary["multi-class"]["snl-fd"]["image_auroc"] == (pytest.approx(0.7), 0.0, 1)
    assert (
        main(["figure", "onevsmulti", "--experiment-dir", str(experiment_dir), "--out", str(tmp_path / "fig.png")]) == 0
    )
    assert Image.open(tmp_path / "fig.png").size[0] > 400
    with pytest.raises(SnladError, match="results-one-class.csv"):
        onevsmulti_figure(tmp_path / "nowhere", tmp_path / "x.png")


def test_onevsmulti_draws_only_the_configurations_asked_for_in_their_order(experiment_dir, tmp_path, monkeypatch):
    from snlad.visualisation import plots

    drawn = {}
    monkeypatch.setattr(plots, "bar_panels", lambda panels, out, *args, **kwargs: drawn.update(panels) or out)
    onevsmulti_figure(experiment_dir, tmp_path / "all.png")
    assert set(drawn["I-AUROC"][0]) == {"fd", "snl-fd"}
    onevsmulti_figure(experiment_dir, tmp_path / "one.png", ["snl-fd"])
    names, series = drawn["I-AUROC"]
    assert names == ["snl-fd"] and series["multi-class"][0] == [pytest.approx(70.0)]
    with pytest.raises(SnladError, match="no results of rd"):
        onevsmulti_figure(experiment_dir, tmp_path / "x.png", ["rd"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_screenshot_script_renders_the_page(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<!DOCTYPE html><html><body style='background:#f00'><h1>snlad</h1></body></html>")
    subprocess.run(
        [str(ROOT / "scripts" / "screenshot_report.sh"), str(page), str(tmp_path / "shot.png"), "400", "300"],
        check=True,
        timeout=60,
        capture_output=True,
    )
    pixels = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))
    assert pixels.shape == (300, 400, 3) and tuple(pixels[-1, -1]) == (255, 0, 0)


@pytest.mark.slow
def test_report_names_both_thresholds_and_each_runs_rule_and_plots_show_auc_and_threshold(runs, tmp_path, monkeypatch):
    """One meaning of 'threshold': the grid names image and pixel thresholds, the decision under each map and the rule."""
    from snlad.visualisation import plots

    figures = {}
    save = plots.save
    monkeypatch.setattr(plots, "save", lambda figure, path, palette=False: figures.setdefault(Path(path).name, figure))
    text = build_report(runs, DEMO, tmp_path / "report", examples=1).read_text()
    monkeypatch.setattr(plots, "save", save)
    calibration = api.run_model(run=runs[0]).calibration["bottle"]
    assert (
        f"image threshold {calibration['threshold']:.4g}, pixel threshold {calibration['pixel_threshold']:.4g}" in text
    )
    assert "thresholds calibrated by" in text and f"{calibration['rule']} on the {calibration['source']}" in text
    assert " defective</td>" in text or " normal</td>" in text
    roc = figures["bottle-roc.png"].axes[0]
    aurocs = [json.loads((run / "metrics.json").read_text())["bottle"]["image_auroc"] for run in runs]
    legend = [t.get_text() for t in roc.get_legend().get_texts()]
    assert legend[:2] == [f"{label} (AUROC {100 * a:.1f} %)" for label, a in zip(("fd", "snl-fd"), aurocs)]
    assert roc.get_xlim()[0] < 0 and roc.get_ylim()[1] > 1  # a perfect curve is not hidden under the frame
    histogram = figures["bottle-histograms.png"].axes[0]
    assert any(list(line.get_xdata()) == [calibration["threshold"]] * 2 for line in histogram.lines)
    assert all(
        not patch.get_fill() for patch in histogram.patches
    )  # outlines: no blended colour missing from the legend


@pytest.mark.slow
def test_overlays_keep_the_part_visible_and_carry_score_decision_and_colour_bar(runs, tmp_path):
    from snlad.visualisation import render

    grey = np.full((4, 4, 3), 200, np.uint8)
    normal = render.overlay(grey, np.zeros((4, 4)), render.ColourScale(0.0, 1.0))
    assert np.abs(normal.astype(int) - 200).max() < 0.25 * 200  # a typical normal pixel tints the image lightly
    image = DEMO / "bottle" / "test" / "good" / "000.jpg"
    rows, _ = api.predict(run=runs[0], images=[image], out=tmp_path / "pred", category="bottle")
    picture = np.asarray(Image.open(tmp_path / "pred" / "overlays" / "000.png"))
    band = picture[-8:, : picture.shape[1] // 2]
    assert picture.shape[:2] == Image.open(image).size[::-1]
    assert (band < 40).mean() > 0.5 and (band > 200).any()  # a dark caption band with white text
    assert render.caption(grey, "x", None) is grey  # too small for a caption: unchanged
