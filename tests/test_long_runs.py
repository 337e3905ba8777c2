"""A long `snlad predict` in miniature: corrupt files are skipped and reported, memory does not follow the image count.

bench/bench_predict_memory.py measures the same over 2,000 images
(docs/results/bench-predict-memory.md); this test keeps the behaviour fixed
on 64 images of 256 x 256, where keeping each full-size float32 map would add
256 KB of resident memory per image.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

import snlad.engine.predict as predict_module
from bad_inputs import save, texture
from snlad.cli import PARTIAL_FAILURE, main

GOOD, SIDE = 64, 256


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def rss_bytes() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) * 1024.0


def make_folder(folder: Path) -> list[str]:
    """GOOD images with five broken files spread among them (empty, truncated, text, bomb-free junk)."""
    for index in range(GOOD):
        save(folder / f"img_{index:03d}.png", texture(index % 7, SIDE))
    data = (folder / "img_000.png").read_bytes()
    broken = {
        "img_005_empty.png": b"",
        "img_020_truncated.png": data[: len(data) // 2],
        "img_040_text.jpg": b"not an image",
        "img_045_header_only.png": data[:33],
        "img_060_garbage.tif": bytes(range(256)) * 4,
    }
    for name, content in broken.items():
        (folder / name).write_bytes(content)
    return sorted(broken)


@pytest.fixture(scope="module")
def run(bad_input_shared: Path) -> Path:
    return bad_input_shared / "run"  # built once per session (tests/conftest.py); predict only reads it


@pytest.mark.slow
def test_long_predict_skips_and_reports_corrupt_files_and_keeps_no_maps(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = make_folder(tmp_path / "in")
    traced: list[tuple[int, float]] = []
    original = predict_module.infer

    def tracing_infer(*args: object, **kwargs: object) -> Iterator:
        done = 0
        for batch, maps, scores in original(*args, **kwargs):
            done += len(batch.get("path", [])) + len(batch["failed"])
            yield batch, maps, scores
            traced.append((done, rss_bytes()))

    monkeypatch.setattr(predict_module, "infer", tracing_infer)
    code = main(
        [
            "--quiet",
            "predict",
            str(tmp_path / "in"),
            "--run",
            str(run),
            "--out",
            str(tmp_path / "out"),
            "--batch-size",
            "8",
        ]
    )

    assert code == PARTIAL_FAILURE
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert [Path(line.split(":", 1)[0].removeprefix("skipped ")).name for line in lines[:-1]] == broken
    assert (
        lines[-1]
        == f"snlad: {len(broken)} of {GOOD + len(broken)} files could not be read and were skipped (listed above)"
    )
    assert "Traceback" not in captured.err and captured.out.startswith(f"scored {GOOD} images")
    with (tmp_path / "out" / "scores.csv").open() as handle:
        scored = [Path(row["image"]).name for row in csv.DictReader(handle)]
    assert len(scored) == GOOD and not set(scored) & set(broken)
    assert (
        len(list((tmp_path / "out" / "maps").iterdir())) == GOOD == len(list((tmp_path / "out" / "overlays").iterdir()))
    )

    # Resident memory growth per image (median over batches, so one-time costs such as Pillow
    # loading all its plugins at the first unidentified file do not count) stays far below one kept map.
    per_image = sorted((b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(traced, traced[1:]))
    assert per_image[len(per_image) // 2] < SIDE * SIDE * 4 / 4, per_image


def test_ctrl_c_during_predict_keeps_the_scores_so_far(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(40):
        save(tmp_path / "in" / f"img_{index:03d}.png", texture(index % 7))
    original = predict_module.infer

    def interrupted_infer(*args: object, **kwargs: object) -> Iterator:
        for number, item in enumerate(original(*args, **kwargs)):
            if number == 2:
                raise KeyboardInterrupt  # Ctrl-C while the third batch is scored
            yield item

    monkeypatch.setattr(predict_module, "infer", interrupted_infer)
    out = tmp_path / "out"
    assert (
        main(["--quiet", "predict", str(tmp_path / "in"), "--run", str(run), "--out", str(out), "--batch-size", "8"])
        == 130
    )
    assert (
        capsys.readouterr().err == f"snlad: interrupted; scores of the images done so far are in {out / 'scores.csv'}\n"
    )
    with (out / "scores.csv").open() as handle:
        scored = [Path(row["image"]).stem for row in csv.DictReader(handle)]
    assert len(scored) == 16 and sorted(scored) == sorted(path.stem for path in (out / "maps").iterdir())
