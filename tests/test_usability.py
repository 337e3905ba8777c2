"""What a new user trips on (issue 15): each friction found by trying snlad from a fresh clone, as a test."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from snlad import api, device
from snlad.cli import main
from snlad.config import RESUMABLE_SETTINGS
from snlad.engine import evaluate
from snlad.errors import SnladError
from snlad.runs.checkpoint import read_checkpoint
from snlad.runs.run import Run
from snlad.visualisation import render

DEMO = Path(__file__).parents[1] / "data" / "demo"
FAST = ["data.image_size=64", "train.batch_size=4", "data.num_workers=0", "loss.affinity_size=8", "train.epochs=1"]
SETS = [x for item in FAST for x in ("--set", item)]
BOTTLE_GOOD = DEMO / "bottle" / "test" / "good"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def run(shared_run: Path) -> Path:
    """The session's multi-class run on bottle, casting, kolektor_sdd and metal_nut (tests/conftest.py), read only."""
    return shared_run


def train_argv(out: Path, *extra: str) -> list[str]:
    """``snlad train`` of fd on demo bottle into ``out``, tiny and quiet."""
    return [
        "--quiet",
        "train",
        "--data",
        str(DEMO),
        "--category",
        "bottle",
        "--model",
        "fd",
        "--out",
        str(out),
        *SETS,
        *extra,
    ]


def scores(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- 1, 11, 12: predict output


@pytest.mark.slow
def test_predict_refuses_an_earlier_prediction_and_overwrite_leaves_no_stale_files(
    run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "pred"
    two, one = sorted(BOTTLE_GOOD.iterdir())[:2], sorted(BOTTLE_GOOD.iterdir())[:1]
    assert (
        main(["--quiet", "predict", *map(str, two), "--run", str(run), "--category", "bottle", "--out", str(out)]) == 0
    )
    assert "scored 2 images" in capsys.readouterr().out
    assert main(["predict", *map(str, one), "--run", str(run), "--out", str(out), "--quiet"]) == 2
    assert "already holds predictions" in capsys.readouterr().err and len(list((out / "maps").iterdir())) == 2
    assert (
        main(
            [
                "predict",
                *map(str, one),
                "--run",
                str(run),
                "--category",
                "bottle",
                "--out",
                str(out),
                "--overwrite",
                "--quiet",
            ]
        )
        == 0
    )
    assert "scored 1 image " in capsys.readouterr().out
    for folder in ("maps", "overlays", "masks"):
        assert [p.stem for p in (out / folder).iterdir()] == [one[0].stem], folder
    assert [row["output"] for row in scores(out / "scores.csv")] == [one[0].stem]


@pytest.mark.slow
def test_outputs_mirror_the_input_sub_folders_so_the_class_is_in_the_path(run: Path, tmp_path: Path) -> None:
    """good/006.jpg and broken_large/006.jpg keep their folders under maps/, overlays/, masks/; one folder keeps bare stems."""
    test_split = BOTTLE_GOOD.parent
    argv = ["--quiet", "predict", str(test_split / "broken_large"), str(BOTTLE_GOOD), "--run", str(run)]
    assert main([*argv, "--category", "bottle", "--out", str(tmp_path / "pred")]) == 0
    outputs = ["broken_large/006", "broken_large/018", "good/000", "good/003", "good/006"]
    assert [row["output"] for row in scores(tmp_path / "pred" / "scores.csv")] == outputs
    for folder, suffix in (("maps", ".npy"), ("overlays", ".png"), ("masks", ".png")):
        found = sorted(
            p.relative_to(tmp_path / "pred" / folder).as_posix() for p in (tmp_path / "pred" / folder).rglob("*.*")
        )
        assert found == [f"{name}{suffix}" for name in outputs], folder
    same = tmp_path / "same"  # one folder, two files that share a stem
    same.mkdir()
    (same / "a.jpg").write_bytes((BOTTLE_GOOD / "000.jpg").read_bytes())
    (same / "a.png").write_bytes((DEMO / "casting" / "test" / "good" / "000.png").read_bytes())
    rows, _ = api.predict(run=run, images=[same], out=tmp_path / "one")
    assert [row["output"] for row in rows] == ["a", "a_1"]


@pytest.mark.slow
@pytest.mark.parametrize("maps,dtype", [("model", "float16"), ("none", "float32"), ("original", "float32")])
def test_map_resolution_and_dtype(run: Path, tmp_path: Path, maps: str, dtype: str) -> None:
    image = BOTTLE_GOOD / "000.jpg"
    api.predict(run=run, images=[image], out=tmp_path / "pred", category="bottle", maps=maps, map_dtype=dtype)
    overlay = np.asarray(Image.open(tmp_path / "pred" / "overlays" / "000.png"))
    original = Image.open(image).size[::-1]
    if maps == "none":
        assert not (tmp_path / "pred" / "maps").exists() and overlay.shape[:2] == original
        return
    stored = np.load(tmp_path / "pred" / "maps" / "000.npy")
    assert stored.dtype == np.dtype(dtype)
    assert stored.shape == overlay.shape[:2] == ((64, 64) if maps == "model" else original)


def test_a_tiny_image_is_scored_with_a_note(run: Path, tmp_path: Path, capsys) -> None:
    Image.new("RGB", (1, 1), (90, 90, 90)).save(tmp_path / "dot.png")
    assert (
        main(["--quiet", "predict", str(tmp_path / "dot.png"), "--run", str(run), "--out", str(tmp_path / "pred")]) == 0
    )
    assert "is only 1x1 px" in capsys.readouterr().err


# ---------------------------------------------------------------- 4: one colour scale


def test_overlays_are_coloured_by_the_calibration_with_the_threshold_at_two_thirds(run: Path) -> None:
    calibration = api.run_model(run=run, category="bottle").calibration["bottle"]
    assert calibration["pixel_floor"] < calibration["pixel_threshold"]
    scale = render.colour_scale(calibration, np.zeros((2, 2)))
    assert scale.low == calibration["pixel_floor"]
    assert scale.normalise(np.array([calibration["pixel_threshold"]]))[0] == pytest.approx(render.THRESHOLD_AT)
    uncalibrated = render.colour_scale(None, np.array([[1.0, 3.0]]))
    assert (uncalibrated.low, uncalibrated.high) == (1.0, 3.0)


# ---------------------------------------------------------------- 3: resume


@pytest.mark.slow
def test_resume_from_the_stored_config_more_epochs_allowed_other_changes_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    base = train_argv(out)
    assert main(base) == 0
    assert (
        main(["train", "--data", str(DEMO), "--out", str(out), "--resume", "--set", "train.epochs=2", "--quiet"]) == 0
    )
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    assert main([*base, "--resume", "--set", "train.epochs=2"]) == 0  # the original command repeated is fine
    capsys.readouterr()
    assert main([*base, "--resume", "--set", "train.lr=0.1"]) == 2
    assert "train.lr would change" in capsys.readouterr().err
    assert main(["train", "--data", str(DEMO), "--out", str(out), "--resume", "--model", "rd", "--quiet"]) == 2
    assert "model.name" in capsys.readouterr().err
    assert (
        main(["train", "--data", str(DEMO), "--out", str(out), "--resume", "--set", "train.epochs=1", "--quiet"]) == 2
    )
    assert "2 epochs are already trained" in capsys.readouterr().err


def test_resume_help_says_what_may_change(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"only {', '.join(RESUMABLE_SETTINGS)} may change" in text


# ---------------------------------------------------------------- 5, 6, 7: calibrate, export, messages


def test_calibrate_notes_a_small_set_and_help_says_quantile_one_is_max(run_copy: Path, capsys) -> None:
    assert main(["calibrate", "--run", str(run_copy), "--data", str(DEMO), "--quiet", "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "bottle: image threshold" in captured.out and "1 normal image +" in captured.out  # metal_nut's
    notice = "thresholds from fewer than 10 normal images (bottle 2, casting 2, kolektor_sdd 2, metal_nut 1) are noisy"
    assert notice in captured.err
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    assert "default 1.0 = the max rule" in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_export_refuses_to_overwrite_and_says_a_multi_class_file_has_no_thresholds(
    run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "model.pt"
    assert main(["export", "--run", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    assert "carries no decision thresholds" in capsys.readouterr().err
    before = out.read_bytes()
    assert (
        main(["export", "--run", str(run), "--format", "torchscript", "--out", str(out), "--category", "bottle"]) == 2
    )
    assert "already exists: use --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert (
        main(
            [
                "export",
                "--run",
                str(run),
                "--format",
                "torchscript",
                "--out",
                str(out),
                "--category",
                "bottle",
                "--overwrite",
            ]
        )
        == 0
    )


def test_messages_for_a_model_file_given_as_run_an_unfinished_run_and_f1_without_defects(
    run: Path, tmp_path: Path, capsys
) -> None:
    assert main(["predict", str(BOTTLE_GOOD), "--run", str(run / "model.pt"), "--out", str(tmp_path / "p")]) == 2
    assert f"--run takes the run folder, not a file: use --run {run}" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    assert main(["predict", str(BOTTLE_GOOD), "--run", str(unfinished), "--out", str(tmp_path / "p")]) == 2
    assert "plus --resume" in capsys.readouterr().err
    assert main(["calibrate", "--run", str(run), "--data", str(DEMO), "--rule", "f1", "--quiet", "--overwrite"]) == 2
    assert "--split test" in capsys.readouterr().err


# ---------------------------------------------------------------- 8, 9: flags


@pytest.mark.slow
def test_global_options_anywhere_and_version(run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("snlad ")
    with pytest.raises(SnladError):  # --debug after the subcommand: the traceback, not one line
        main(["predict", str(BOTTLE_GOOD), "--run", str(tmp_path / "none"), "--out", str(tmp_path / "p"), "--debug"])
    assert (
        main(
            ["predict", str(BOTTLE_GOOD), "--run", str(run), "--out", str(tmp_path / "q"), "--quiet", "--threads", "1"]
        )
        == 0
    )
    assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_one_spelling_for_categories_map_settings_on_predict_and_batch_help(run: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "test",
                "--run",
                str(run),
                "--data",
                str(DEMO),
                "--categories",
                "bottle",
                "--out",
                str(tmp_path / "a"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "test",
                "--run",
                str(run),
                "--data",
                str(DEMO),
                "--category",
                "bottle",
                "--out",
                str(tmp_path / "b"),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "a" / "metrics.json").read_text()).keys() == {"bottle", "mean"}
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(BOTTLE_GOOD),
                "--run",
                str(run),
                "--category",
                "bottle",
                "--set",
                "map.beta=1",
                "--out",
                str(tmp_path / "p"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "calibrated for the trained map settings" in capsys.readouterr().err
    for command in ("test", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "images per batch (default 8)" in text
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "OUT/masks/<output>.png" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------- 10: progress and logs


@pytest.mark.slow
def test_training_prints_an_epoch_line_and_logs_each_term(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(DEMO),
                "--category",
                "bottle",
                "--model",
                "snl-fd",
                "--out",
                str(out),
                *SETS,
                "--drop-checkpoint",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "epoch 1/1: loss " in captured.err and "intra " in captured.err and "img/s" in captured.err
    assert "checkpoint.pt is kept" not in captured.out and not (out / "checkpoint.pt").exists()
    header = (out / "train_log.csv").read_text().splitlines()[0].split(",")
    assert header == ["epoch", "loss", "channel", "spatial", "intra", "inter", "seconds", "images_per_s"]


@pytest.mark.slow
def test_metrics_table_says_a_small_category_is_indicative(run: Path, tmp_path: Path) -> None:
    metrics = api.test(run=run, data=DEMO, out=tmp_path / "test")
    table = api.metrics_table(per_category=metrics)
    assert "read them as indicative" in table and "bottle, casting" in table
    assert evaluate.FEW_TEST_IMAGES == 10


# ---------------------------------------------------------------- 13-16: reliability


@pytest.mark.slow
def test_a_second_train_on_a_locked_run_gets_a_clear_error(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    with Run(out).lock():
        assert main(train_argv(out)) == 2
    assert f"is in use by another snlad train (pid {os.getpid()})" in capsys.readouterr().err
    assert main(train_argv(out)) == 0


@pytest.mark.slow
def test_an_interrupted_test_keeps_the_scores_so_far(run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from snlad.engine import evaluate as evaluate_module

    original = evaluate_module.evaluate_category
    calls = []

    def interrupt_second_category(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_category", interrupt_second_category)
    assert main(["test", "--run", str(run), "--data", str(DEMO), "--out", str(tmp_path / "t"), "--quiet"]) == 130
    partial = Run(tmp_path / "t").partial_test_scores
    assert f"scores of the images done so far are in {partial}" in capsys.readouterr().err
    assert {row["category"] for row in scores(partial)} == {"bottle"} and len(scores(partial)) == 7
    assert not Run(tmp_path / "t").test_scores.exists()


@pytest.mark.slow
def test_stale_temporary_files_are_cleaned_on_the_next_start(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stale, fresh = out / ".checkpoint.pt.abc123.snlad.tmp", out / ".model.pt.def456.snlad.tmp"
    foreign = [out / "notes.tmp", out / ".draft.tmp"]  # the user's own: never snlad's to delete (issue 21 item 2)
    for path in (stale, fresh, *foreign):
        path.write_bytes(b"x")
    for path in (stale, *foreign):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert main(train_argv(out)) == 0
    assert not stale.exists() and fresh.exists() and all(path.exists() for path in foreign)


@pytest.mark.slow
def test_oversubscription_is_said_once_and_only_when_the_user_can_act(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "usable_cores", lambda: 2)
    monkeypatch.setattr(device, "busy_threads_elsewhere", lambda: 3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # every core, as by default
        assert main(train_argv(tmp_path / "r")) == 0
        err = capsys.readouterr().err
        assert err.count("thread(s) of other processes are busy") == 1 and "--threads N" in err
        # The user followed the advice (or chose a share some other way): nothing left to say.
        assert main([*train_argv(tmp_path / "t"), "--threads", "1"]) == 0
        assert "busy" not in capsys.readouterr().err
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert main(train_argv(tmp_path / "u")) == 0
        assert "busy" not in capsys.readouterr().err
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(device, "busy_threads_elsewhere", lambda: 0)
        assert main(train_argv(tmp_path / "s")) == 0
        assert "busy" not in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- in-memory Python API


@pytest.mark.slow
def test_a_loaded_run_scores_pil_images_arrays_tensors_and_paths_in_memory_as_predict_does(
    run: Path, tmp_path: Path
) -> None:
    """api.load: the same score, map and decisions for a picture however it is given, and as `snlad predict` writes."""
    path = BOTTLE_GOOD / "000.jpg"
    picture = Image.open(path)
    array = np.array(picture)
    tensor = torch.from_numpy(array).permute(2, 0, 1) / 255.0
    detector = api.load(run=run, category="bottle")
    detections = detector.score([picture, array, tensor, path, array.astype(np.float32) / 255.0])
    rows, _ = api.predict(run=run, images=[path], out=tmp_path / "pred", category="bottle")
    stored = np.load(tmp_path / "pred" / "maps" / "000.npy")
    for detection in detections:
        assert detection.score == pytest.approx(rows[0]["score"], abs=1e-5)
        assert detection.anomalous == bool(rows[0]["is_anomalous"])
        assert detection.map.shape == stored.shape == array.shape[:2]
        assert np.allclose(detection.map, stored, atol=1e-4)
        assert (detection.mask == (detection.map > detector.pixel_threshold)).all()
    grey = detector.score(array.mean(axis=2).astype(np.uint8))  # one image, not a list: still a list of one
    assert len(grey) == 1 and grey[0].map.shape == array.shape[:2]
    assert api.load(run=run).score(path)[0].anomalous is None  # no category: no thresholds
    with pytest.raises(SnladError, match="cannot score a dict"):
        detector.score({"not": "an image"})


@pytest.mark.slow
def test_overwrite_failing_after_a_first_category_keeps_the_replaced_run_until_resume_finishes(
    tmp_path: Path, capsys
) -> None:
    """One-class --overwrite: the second category's truncated image stops it after the first category saved a model.

    The replaced run then stays whole in RUN/.replaced (said in a note); the
    new run resumes, and only once it has finished is the replaced one dropped.
    """
    data = tmp_path / "data"
    for category in ("a", "b"):
        folder = data / category / "train" / "good"
        folder.mkdir(parents=True)
        for index, image in enumerate(sorted((DEMO / "bottle" / "train" / "good").iterdir())[:3]):
            (folder / f"{index}.png").write_bytes(image.read_bytes())
    argv = ["--quiet", "train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "fd", "--one-class"]
    argv += [x for item in ("data.image_size=64", "train.epochs=1", "data.num_workers=0") for x in ("--set", item)]
    assert main(argv) == 0
    old = {p.relative_to(tmp_path / "run"): p.read_bytes() for p in (tmp_path / "run").rglob("*.pt")}
    good = (data / "b" / "train" / "good" / "0.png").read_bytes()
    (data / "b" / "train" / "good" / "0.png").write_bytes(good[: len(good) // 2])
    assert main([*argv, "--overwrite"]) == 2
    assert "is kept in" in capsys.readouterr().err
    replaced = tmp_path / "run" / ".replaced"
    assert {path: replaced.joinpath(path).read_bytes() for path in old} == old
    (data / "b" / "train" / "good" / "0.png").write_bytes(good)
    assert main([*argv, "--resume"]) == 0
    assert not replaced.exists() and Run(tmp_path / "run").read_index().categories == ["a", "b"]
