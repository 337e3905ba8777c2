"""The bad-input matrix: every case is a command line run through ``snlad.cli.main`` on files it builds.

Shared by ``tests/test_bad_input.py`` (which asserts on each outcome) and
``scripts/bad_input_table.py`` (which writes ``docs/bad-input.md`` from the same
outcomes), so the table in the docs is what the tests saw.

Each case works in its own folder and names files relative to it, so the
messages in the table read ``data/widget/train/good/1.png`` rather than a
temporary path. A case that needs a trained run or the small dataset copies
them from a shared folder built once (:func:`build_shared`).

Tests run as root in CI, where ``chmod 000`` does not stop reads; the
"unreadable" cases then simulate the ``PermissionError`` the kernel would
raise (same errno, same message), and use a real ``chmod 000`` otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

FAST = ("data.image_size=64", "train.batch_size=4", "data.num_workers=0", "loss.affinity_size=8", "train.epochs=1")
FAST_ARGS = tuple(x for item in FAST for x in ("--set", item))
SIZE = 64  # side of every generated image


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(dir)`` writes files into ``dir`` and returns the argv (without ``--quiet``).

    ``code`` is the expected exit status and ``expect`` the fragments the
    output must contain (the file it names and the fix it suggests).
    ``simulate(dir)``, when set, is a context manager active while the command
    runs (permission errors as root). ``check(dir)`` makes extra assertions
    afterwards (a side effect that must not have happened, a file that must
    be unchanged).
    """

    name: str
    group: str
    what: str
    build: Callable[[Path], list[str]]
    code: int
    expect: tuple[str, ...]
    simulate: Callable[[Path], contextlib.AbstractContextManager] | None = None
    check: Callable[[Path], None] | None = None
    needs_run: bool = field(default=False)


# ---------------------------------------------------------------- shared data and run


def texture(seed: int, size: int = SIZE) -> np.ndarray:
    """A smooth random RGB texture (uint8), different per seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.array(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))


def square_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : size // 2, size // 4 : size // 2] = 255
    return mask


def save(path: Path, image: np.ndarray | Image.Image, **options: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(image) if isinstance(image, np.ndarray) else image).save(path, **options)
    return path


def make_dataset(root: Path) -> None:
    """MVTec layout, one category ``widget``: 4 train, 2 good + 2 'scratch' test images with masks."""
    cat = root / "widget"
    for i in range(4):
        save(cat / "train" / "good" / f"{i}.png", texture(i))
    for i in range(2):
        save(cat / "test" / "good" / f"{i}.png", texture(10 + i))
        defect = texture(20 + i)
        defect[square_mask() > 0] = 255
        save(cat / "test" / "scratch" / f"{i}.png", defect)
        save(cat / "ground_truth" / "scratch" / f"{i}_mask.png", square_mask())


def build_shared(shared: Path) -> Path:
    """``shared/data`` (the dataset) and ``shared/run`` (fd trained 1 epoch at 64 px); built once."""
    if (shared / "run" / "model.pt").is_file():
        return shared
    from snlad.cli import main

    make_dataset(shared / "data")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            [
                "--quiet",
                "train",
                "--data",
                str(shared / "data"),
                "--out",
                str(shared / "run"),
                "--model",
                "fd",
                *FAST_ARGS,
            ]
        )
    assert code == 0, "training the shared run failed"
    return shared


def _copy(shared: Path, directory: Path, *names: str) -> None:
    for name in names:
        shutil.copytree(shared / name, directory / name)


# ---------------------------------------------------------------- file makers


def truncated(path: Path, fmt: str) -> Path:
    full = io.BytesIO()
    Image.fromarray(texture(99)).save(full, format=fmt)
    path.write_bytes(full.getvalue()[: len(full.getvalue()) // 2])
    return path


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A 60-byte PNG whose header claims ``side`` x ``side`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def odd_image(path: Path, mode: str) -> Path:
    """An image of an unusual mode that must load: CMYK, 16-bit, palette, RGBA, 1-bit, float."""
    rgb = Image.fromarray(texture(7))
    gray = np.asarray(rgb.convert("L"))
    if mode == "CMYK":
        return save(path, rgb.convert("CMYK"), quality=95)
    if mode == "I;16":
        return save(path, Image.fromarray(gray.astype(np.uint16) * 257))
    if mode == "P":
        return save(path, rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16))
    if mode == "RGBA":
        return save(path, Image.fromarray(np.dstack([texture(7), np.full((SIZE, SIZE), 128, np.uint8)]), "RGBA"))
    if mode == "1":
        return save(path, Image.fromarray(gray > 128).convert("1"))
    if mode == "F":
        return save(path, Image.fromarray(gray.astype(np.float32) / 255.0, "F"))
    raise ValueError(mode)


class Exploit:
    """Unpickling this runs ``os.mkdir(marker)``: the side effect a refused file must not have."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_model_config(path: Path, section: str, key: str, value: object) -> None:
    """Rewrite model.pt with one config value changed (weights untouched)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["config"][section][key] = value
    torch.save(payload, path)


# ---------------------------------------------------------------- simulations (tests run as root)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _denied(path: Path) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


@contextlib.contextmanager
def unlistable(folder: Path) -> Iterator[None]:
    """``folder`` cannot be listed: chmod 000, or as root a simulated EACCES from iterdir."""
    if not _is_root():
        folder.chmod(0)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    original = Path.iterdir
    target = folder.resolve()

    def iterdir(self: Path) -> Iterator[Path]:
        if self.resolve() == target:
            raise _denied(self)
        return original(self)

    with mock.patch.object(Path, "iterdir", iterdir):
        yield


@contextlib.contextmanager
def unreadable(file: Path) -> Iterator[None]:
    """``file`` cannot be opened: chmod 000, or as root a simulated EACCES from Image.open."""
    if not _is_root():
        file.chmod(0)
        try:
            yield
        finally:
            file.chmod(0o644)
        return
    original = Image.open
    target = file.resolve()

    def image_open(source: object, *args: object, **kwargs: object) -> Image.Image:
        if isinstance(source, (str, Path)) and Path(source).resolve() == target:
            raise _denied(Path(source))
        return original(source, *args, **kwargs)

    with mock.patch.object(Image, "open", image_open):
        yield


# ---------------------------------------------------------------- command lines


def train(data: str = "data", *extra: str, out: str = "out") -> list[str]:
    return ["train", "--data", data, "--out", out, "--model", "fd", *FAST_ARGS, *extra]


def predict(*inputs: str, extra: tuple[str, ...] = ()) -> list[str]:
    return ["predict", *inputs, "--run", "run", "--out", "pred", *extra]


def test_cmd(data: str = "data") -> list[str]:
    return ["test", "--run", "run", "--data", data]


# ---------------------------------------------------------------- the cases

CASES: list[Case] = []


def case(name: str, group: str, what: str, code: int, *expect: str, needs_run: bool = False, simulate=None, check=None):
    """Register the decorated builder as a case."""

    def register(build: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
        CASES.append(Case(name, group, what, build, code, expect, simulate, check, needs_run))
        return build

    return register


# -- data root


@case("root_missing", "data root", "`--data` does not exist", 2, "nope", "does not exist", "pass the folder")
def _(d: Path) -> list[str]:
    return train("nope")


@case("root_empty", "data root", "`--data` is an empty folder", 2, "empty", "no category found", "no sub-folders")
def _(d: Path) -> list[str]:
    (d / "empty").mkdir()
    return train("empty")


@case("root_is_file", "data root", "`--data` is a file", 2, "notes.txt", "is not a folder")
def _(d: Path) -> list[str]:
    (d / "notes.txt").write_text("x")
    return train("notes.txt")


@case(
    "root_unreadable",
    "data root",
    "`--data` cannot be listed (permission denied)",
    2,
    "data",
    "Permission denied",
    "readable",
    simulate=lambda d: unlistable(d / "data"),
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train()


@case(
    "root_is_category",
    "data root",
    "`--data` points at a category, not at the root above it",
    2,
    "pass its parent folder",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data/widget")


@case(
    "no_train_images",
    "data root",
    "a category with no training images",
    2,
    "'widget' has no training images",
    "data/widget/train/good",
    "add them or leave the category out",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    for image in (d / "data" / "widget" / "train" / "good").iterdir():
        image.unlink()
    return train()


@case(
    "unknown_category",
    "data root",
    "`--categories` names a category that is not there",
    2,
    "'gizmo'",
    "known categories: widget",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--categories", "gizmo")


# -- images (a bad one among the training images must stop training, naming it)

BAD = "data/widget/train/good/1.png"


def _with_bad_train_image(d: Path, write: Callable[[Path], object], name: str = "1.png") -> None:
    make_dataset(d / "data")
    good = d / "data" / "widget" / "train" / "good"
    (good / "1.png").unlink()
    write(good / name)


@case(
    "image_truncated_png",
    "images",
    "a truncated PNG among the training images",
    2,
    BAD,
    "truncated",
    "re-copy it or delete it",
)
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, lambda p: truncated(p, "PNG"))
    return train()


@case(
    "image_truncated_jpeg",
    "images",
    "a truncated JPEG among the training images",
    2,
    "data/widget/train/good/1.jpg",
    "re-copy it or delete it",
)
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, lambda p: truncated(p, "JPEG"), "1.jpg")
    return train()


@case("image_zero_bytes", "images", "a zero-byte image file", 2, BAD, "empty (0 bytes)", "re-copy it or delete it")
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, lambda p: p.touch())
    return train()


@case("image_not_an_image", "images", "a text file named `.png`", 2, BAD, "not an image", "re-copy it or delete it")
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, lambda p: p.write_text("not an image, just text\n"))
    return train()


@case(
    "image_bomb",
    "images",
    "a decompression bomb (PNG header claims 20000 x 20000)",
    2,
    BAD,
    "decompression-bomb limit",
    "downscale it",
)
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, png_bomb)
    return train()


@case(
    "image_unreadable",
    "images",
    "an image file that cannot be opened (permission denied)",
    2,
    BAD,
    "permission denied",
    "check its permissions",
    simulate=lambda d: unreadable(d / BAD),
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train()


@case(
    "image_truncated_in_worker",
    "images",
    "a truncated PNG read by a DataLoader worker process (`data.num_workers=1`)",
    2,
    BAD,
    "re-copy it or delete it",
)
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, lambda p: truncated(p, "PNG"))
    return train("data", "--set", "data.num_workers=1")


@case(
    "image_odd_modes_train",
    "images",
    "training images in CMYK, 16-bit, palette, RGBA, 1-bit and float modes (must load)",
    0,
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    good = d / "data" / "widget" / "train" / "good"
    for mode, name in (
        ("CMYK", "c.jpg"),
        ("I;16", "i16.png"),
        ("P", "p.png"),
        ("RGBA", "rgba.png"),
        ("1", "one.png"),
        ("F", "f.tif"),
    ):
        odd_image(good / name, mode)
    return train()


for _mode, _file, _label in (
    ("CMYK", "cmyk.jpg", "a CMYK JPEG"),
    ("I;16", "deep.png", "a 16-bit grayscale PNG"),
    ("P", "palette.png", "a palette (P mode) PNG"),
    ("RGBA", "rgba.png", "an RGBA PNG (half transparent)"),
    ("1", "bilevel.png", "a 1-bit PNG"),
    ("F", "float.tif", "a 32-bit float TIFF"),
):

    def _odd(d: Path, mode: str = _mode, file: str = _file) -> list[str]:
        odd_image(d / file, mode)
        return predict(file)

    CASES.append(
        Case(
            name=f"predict_{_file.replace('.', '_')}",
            group="images",
            what=f"{_label} given to `predict` (must load)",
            build=_odd,
            code=0,
            expect=("scored 1 image ",),
            needs_run=True,
        )
    )


# -- masks (through `snlad test`)

MASK = "data/widget/ground_truth/scratch/0_mask.png"


@case(
    "mask_wrong_size",
    "masks",
    "a mask of another size than its image",
    2,
    MASK,
    "is 32x32 (WxH) but its image data/widget/test/scratch/0.png is 64x64",
    "re-export the mask",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    save(d / MASK, square_mask(32))
    return test_cmd()


@case(
    "mask_non_binary",
    "masks",
    "a mask with values other than 0/255 (1, 128, 255): every nonzero pixel is a defect",
    0,
    "| category |",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    mask = square_mask()
    mask[: SIZE // 4, : SIZE // 4] = 1
    mask[SIZE // 2 :, SIZE // 2 :] = 128
    save(d / MASK, mask)
    return test_cmd()


@case(
    "mask_truncated",
    "masks",
    "a truncated mask file",
    2,
    MASK,
    "cannot decode mask file",
    "re-copy it or delete it",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    truncated(d / MASK, "PNG")
    return test_cmd()


@case(
    "mask_without_image",
    "masks",
    "a mask whose image is missing",
    2,
    "data/widget/ground_truth/scratch/1_mask.png",
    "has no defective image",
    "restore the image or delete the mask",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "data" / "widget" / "test" / "scratch" / "1.png").unlink()
    return test_cmd()


@case(
    "defect_without_mask_mvtec",
    "masks",
    "a defective image without a mask (MVTec layout): image metrics from all, pixel metrics from the masked ones",
    0,
    "| category |",
    "(2 / 1)",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "data" / "widget" / "ground_truth" / "scratch" / "1_mask.png").unlink()
    return test_cmd()


@case(
    "no_masks_mvtec",
    "masks",
    "a category with no masks at all (MVTec layout, image-level labels only): pixel metrics n/a",
    0,
    "| n/a |",
    "image-level labels only",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    shutil.rmtree(d / "data" / "widget" / "ground_truth")
    return test_cmd()


@case(
    "defect_without_mask_folder",
    "masks",
    "defective images without masks (plain-folder layout: masks optional, image metrics only)",
    0,
    "| category |",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    folder = d / "plain" / "widget"
    shutil.copytree(d / "data" / "widget" / "train" / "good", folder / "train")
    shutil.copytree(d / "data" / "widget" / "test", folder / "test")
    return test_cmd("plain")


# -- config


def _config(d: Path, text: str) -> list[str]:
    (d / "c.yaml").write_text(text)
    make_dataset(d / "data")
    return train("data", "--config", "c.yaml")


@case(
    "config_unknown_key",
    "config",
    "a config file with an unknown key (`train.epoch`)",
    2,
    "c.yaml",
    "unknown config key 'train.epoch'",
    "known in train: epochs",
)
def _(d: Path) -> list[str]:
    return _config(d, "train:\n  epoch: 3\n")


@case(
    "config_unknown_section",
    "config",
    "a config file with an unknown section",
    2,
    "c.yaml",
    "unknown config section 'optimizer'",
)
def _(d: Path) -> list[str]:
    return _config(d, "optimizer:\n  lr: 0.1\n")


@case(
    "config_wrong_type",
    "config",
    "a config value of the wrong type (`train.epochs: ten`)",
    2,
    "c.yaml",
    "train.epochs must be of type int",
    "'ten'",
)
def _(d: Path) -> list[str]:
    return _config(d, "train:\n  epochs: ten\n")


@case(
    "config_bad_value",
    "config",
    "a config value out of range (`data.image_size: 50`)",
    2,
    "c.yaml",
    "data.image_size must be a multiple of 16",
)
def _(d: Path) -> list[str]:
    return _config(d, "data:\n  image_size: 50\n")


@case(
    "config_section_not_mapping",
    "config",
    "a config section that is not a mapping (`model: 3`)",
    2,
    "c.yaml",
    "section 'model' must be a mapping",
)
def _(d: Path) -> list[str]:
    return _config(d, "model: 3\n")


@case("config_not_yaml", "config", "a config file that is not valid YAML", 2, "c.yaml", "cannot be read as YAML")
def _(d: Path) -> list[str]:
    return _config(d, "train: [epochs: 3\n")


@case("config_not_mapping", "config", "a config file holding a list", 2, "c.yaml", "must hold a mapping of sections")
def _(d: Path) -> list[str]:
    return _config(d, "- train\n- epochs\n")


@case("config_missing", "config", "`--config` does not exist", 2, "missing.yaml", "does not exist")
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--config", "missing.yaml")


@case(
    "override_unknown_key",
    "config",
    "`--set` with an unknown key",
    2,
    "loss.intra_weight",
    "unknown config key",
    "known in loss",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--set", "loss.intra_weight=1")


@case(
    "override_wrong_type", "config", "`--set` with a value of the wrong type", 2, "train.batch_size must be of type int"
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--set", "train.batch_size=big")


@case("override_no_equals", "config", "`--set` without `=`", 2, "must look like section.key=value")
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--set", "train.epochs")


@case(
    "override_bad_yaml",
    "config",
    "`--set` whose value is not valid YAML",
    2,
    "train.betas=[0.9",
    "not valid YAML",
    "quote text values",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--set", "train.betas=[0.9")


def alias_bomb(levels: int = 6) -> str:
    """A YAML flow list in which each level repeats the one before 9 times: a few hundred bytes, 9**levels values."""
    text = "[&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for level in range(1, levels):
        text += f", &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]"
    return text + "]"


@case(
    "config_alias_bomb",
    "config",
    "a config file whose value is a YAML alias bomb (9^6 values from 300 bytes; deeper ones exhausted memory)",
    2,
    "config file c.yaml: the YAML expands to more than 10000 values",
)
def _(d: Path) -> list[str]:
    return _config(d, f"train:\n  betas: {alias_bomb()}\n")


@case(
    "override_alias_bomb",
    "config",
    "`--set` whose value is a YAML alias bomb",
    2,
    "override train.betas: the YAML expands to more than 10000 values",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--set", f"train.betas={alias_bomb()}")


@case(
    "experiment_alias_bomb",
    "config",
    "an experiment's `settings:` holding a YAML alias bomb",
    2,
    "config file e.yaml: the YAML expands to more than 10000 values",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    (d / "e.yaml").write_text(f"settings:\n  train.betas: {alias_bomb()}\nconfigurations:\n  a:\n    model: fd\n")
    return ["experiment", "--experiment", "e.yaml", "--data", "data", "--out", "exp"]


for _setting, _expect, _why in (
    ("data.image_size=100000", "data.image_size must be a multiple of 16 in [32, 2048]", "exhausted memory"),
    ("model.cram_centres=1000000000", "model.cram_centres must be in [1, 4096]", "exhausted memory"),
    ("loss.affinity_size=1000", "loss.affinity_size must be in [2, 64]", "an affinity costs side^4"),
    ("data.num_workers=-1", "data.num_workers must be in [0, 64]", "crashed in the DataLoader"),
    ("train.betas=[2,2]", "train.betas must be two numbers in [0, 1)", "crashed in Adam"),
    ("train.weight_decay=-1", "train.weight_decay must be >= 0", "crashed in Adam"),
    ("train.seed=1180591620717411303424", "train.seed must be a whole number in [0, 4294967295]", "2**70 crashed"),
):

    def _setting_case(d: Path, setting: str = _setting) -> list[str]:
        make_dataset(d / "data")
        return train("data", "--set", setting)

    CASES.append(
        Case(
            name=f"bound_{_setting.split('=')[0].replace('.', '_')}",
            group="bounds",
            what=f"`--set {_setting}` (before: {_why})",
            build=_setting_case,
            code=2,
            expect=(_expect,),
        )
    )


@case(
    "bound_map_sigma",
    "bounds",
    "`predict --set map.sigma=1000000` (before: predict hung building the blur)",
    2,
    "map.sigma must be in [0, data.image_size / 4]",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return predict("data/widget/test/good/0.png", extra=("--set", "map.sigma=1000000"))


@case(
    "bound_threads",
    "bounds",
    "`--threads 999` on a 2-core machine (before: a 3-second training ran for minutes)",
    2,
    "--threads 999: snlad may run on 2 core(s) here; use at most 2",
    simulate=lambda d: mock.patch("snlad.cli.usable_cores", return_value=2),
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return ["--threads", "999", *train()]


@case(
    "image_above_bomb_warning",
    "bounds",
    "a PNG whose header claims 12000 x 12000 (between Pillow's warning and its error: decoded 4 GB, wrote a 576 MB map)",
    2,
    BAD,
    "decompression-bomb limit",
    "downscale it",
)
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, lambda p: png_bomb(p, 12000))
    return train()


@case(
    "experiment_settings_list",
    "config",
    "an experiment whose `settings:` is a list, not a mapping",
    2,
    "e.yaml: 'settings' must be a mapping",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    (d / "e.yaml").write_text("settings:\n  - train.epochs=1\nconfigurations:\n  a:\n    model: fd\n")
    return ["experiment", "--experiment", "e.yaml", "--data", "data", "--out", "exp"]


@case("experiment_seeds_not_numbers", "config", "`experiment --seeds x,y`", 2, "--seeds must be comma-separated")
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    (d / "e.yaml").write_text("configurations:\n  a:\n    model: fd\n")
    return ["experiment", "--experiment", "e.yaml", "--data", "data", "--out", "exp", "--seeds", "x,y"]


@case(
    "probe_negative_seed",
    "config",
    "`probe mixup --seed -5`",
    2,
    "--seed must be in [0, 4294967295], got -5",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return [
        "probe",
        "mixup",
        "--run",
        "run",
        "--data",
        "data",
        "--base",
        "widget",
        "--other",
        "widget",
        "--seed",
        "-5",
        "--out",
        "probe",
    ]


# -- checkpoints (a run's model.pt / checkpoint.pt)

MARKER = "pwned"


def _no_side_effect(d: Path) -> None:
    assert not (d / MARKER).exists(), "unpickling ran code"


@case(
    "model_truncated",
    "checkpoints",
    "a truncated `model.pt`",
    2,
    "run/model.pt",
    "truncated or corrupt",
    "retrain or restore it",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    cut_in_half(d / "run" / "model.pt")
    return predict("data/widget/test/good/0.png")


@case(
    "model_code_pickle",
    "checkpoints",
    "a `model.pt` whose pickle would run code (`os.mkdir`)",
    2,
    "run/model.pt",
    "refused",
    needs_run=True,
    check=_no_side_effect,
)
def _(d: Path) -> list[str]:
    torch.save(
        {"format": "snlad-checkpoint", "version": 1, "kind": "model", "model": Exploit(d / MARKER)},
        d / "run" / "model.pt",
    )
    return predict("data/widget/test/good/0.png")


@case(
    "model_other_model",
    "checkpoints",
    "a `model.pt` whose weights belong to another model (config says `rd`, weights are `fd`)",
    2,
    "run/model.pt",
    "does not match model=rd",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    edit_model_config(d / "run" / "model.pt", "model", "name", "rd")
    edit_model_config(d / "run" / "model.pt", "model", "architecture", "rd")  # what is built (issue 20)
    return predict("data/widget/test/good/0.png")


@case(
    "model_other_teacher",
    "checkpoints",
    "a `model.pt` whose weights belong to another teacher (config says lite1, weights are lite0)",
    2,
    "run/model.pt",
    "does not match",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    edit_model_config(d / "run" / "model.pt", "model", "teacher", "efficientnet_lite1")
    return predict("data/widget/test/good/0.png")


@case(
    "model_is_training_state",
    "checkpoints",
    "a training `checkpoint.pt` copied over `model.pt`",
    2,
    "run/model.pt",
    "training checkpoint",
    "--resume",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    shutil.copy(d / "run" / "checkpoint.pt", d / "run" / "model.pt")
    return predict("data/widget/test/good/0.png")


@case(
    "model_foreign_file",
    "checkpoints",
    "a `model.pt` that is some other torch file",
    2,
    "run/model.pt",
    "not an snlad checkpoint",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    torch.save({"weight": torch.zeros(3)}, d / "run" / "model.pt")
    return predict("data/widget/test/good/0.png")


@case(
    "run_without_index",
    "checkpoints",
    "a run folder without `run.json`",
    2,
    "run",
    "not a finished snlad run",
    "snlad train --out run",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "run" / "run.json").unlink()
    return predict("data/widget/test/good/0.png")


@case("run_index_corrupt", "checkpoints", "a corrupt `run.json`", 2, "run/run.json", "is corrupt", needs_run=True)
def _(d: Path) -> list[str]:
    (d / "run" / "run.json").write_text("{ not json")
    return predict("data/widget/test/good/0.png")


@case(
    "resume_truncated",
    "checkpoints",
    "`--resume` from a truncated `checkpoint.pt`",
    2,
    "run/checkpoint.pt",
    "truncated or corrupt",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    cut_in_half(d / "run" / "checkpoint.pt")
    return train("data", "--resume", out="run")


@case(
    "resume_code_pickle",
    "checkpoints",
    "`--resume` from a `checkpoint.pt` whose pickle would run code",
    2,
    "run/checkpoint.pt",
    "refused",
    needs_run=True,
    check=_no_side_effect,
)
def _(d: Path) -> list[str]:
    torch.save(
        {"format": "snlad-checkpoint", "version": 1, "kind": "training", "x": Exploit(d / MARKER)},
        d / "run" / "checkpoint.pt",
    )
    return train("data", "--resume", out="run")


@case(
    "resume_other_model",
    "checkpoints",
    "`--resume` with another model than the run's (the original command repeated is fine, a change is refused by name)",
    2,
    "--resume continues run with its stored settings",
    "model.name",
    "only train.epochs",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return [*train("data", "--resume", out="run"), "--model", "rd"]


@case(
    "resume_nothing",
    "checkpoints",
    "`--resume` in a folder with no run",
    2,
    "nothing to resume",
    "start without --resume",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return train("data", "--resume", out="fresh")


# -- teacher weights


def _teacher(d: Path, state: object) -> list[str]:
    """Lite0 named explicitly: the cases below alter Lite0's weights, whatever the preset's teacher is."""
    make_dataset(d / "data")
    torch.save(state, d / "teacher.pth")
    return train("data", "--teacher", "efficientnet_lite0", "--teacher-weights", "teacher.pth")


def _lite0_state() -> dict[str, torch.Tensor]:
    from snlad.backbones import read_state_dict
    from snlad.backbones.efficientnet_lite import default_weights_path

    return read_state_dict(default_weights_path("efficientnet_lite0"))


@case("teacher_missing", "teacher weights", "`--teacher-weights` does not exist", 2, "teacher.pth", "do not exist")
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--teacher-weights", "teacher.pth")


@case(
    "teacher_wrong_keys",
    "teacher weights",
    "teacher weights with other key names",
    2,
    "teacher.pth",
    "do not match efficientnet_lite0",
    "missing keys",
    "unexpected key (e.g. backbone.conv.weight)",
)
def _(d: Path) -> list[str]:
    return _teacher(d, {"backbone.conv.weight": torch.zeros(8, 3, 3, 3)})


@case(
    "teacher_wrong_shape",
    "teacher weights",
    "teacher weights with one tensor of the wrong shape",
    2,
    "teacher.pth",
    "1 shape mismatch (e.g. _conv_stem.weight: file (16, 3, 3, 3) vs model (32, 3, 3, 3))",
)
def _(d: Path) -> list[str]:
    state = _lite0_state()
    state["_conv_stem.weight"] = state["_conv_stem.weight"][:16]
    return _teacher(d, state)


@case(
    "teacher_code_pickle",
    "teacher weights",
    "teacher weights whose pickle would run code",
    2,
    "teacher.pth",
    "refused by torch.load(weights_only=True)",
    check=_no_side_effect,
)
def _(d: Path) -> list[str]:
    return _teacher(d, {"_conv_stem.weight": Exploit(d / MARKER)})


@case("teacher_truncated", "teacher weights", "truncated teacher weights", 2, "teacher.pth", "truncated or corrupt")
def _(d: Path) -> list[str]:
    args = _teacher(d, _lite0_state())
    cut_in_half(d / "teacher.pth")
    return args


@case(
    "teacher_resnet_without_weights",
    "teacher weights",
    "`--teacher resnet18` without `--teacher-weights`",
    2,
    "resnet18 needs its ImageNet weights",
    "--teacher-weights PATH",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    return train("data", "--teacher", "resnet18")


# -- output folder


@case(
    "out_holds_run",
    "output",
    "`--out` already holds a run (no `--resume`/`--overwrite`)",
    2,
    "run already holds a run",
    "--resume",
    "--overwrite",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return train("data", out="run")


@case(
    "out_is_file",
    "output",
    "`--out` is a file",
    2,
    "out.txt",
    "is a file, not a folder",
    "choose another output folder",
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    (d / "out.txt").write_text("x")
    return train("data", out="out.txt")


@case("out_below_file", "output", "`--out` lies below a file", 2, "out.txt/run", "is a file, not a folder")
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    (d / "out.txt").write_text("x")
    return train("data", out="out.txt/run")


@case(
    "predict_out_holds_prediction",
    "output",
    "`predict --out` already holds an earlier prediction (no `--overwrite`): never two runs' files mixed",
    2,
    "pred already holds predictions",
    "--overwrite",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    assert quietly(predict("data/widget/test/good/1.png")) == 0
    return predict("data/widget/test/good/0.png")


@case(
    "export_out_exists",
    "output",
    "`export --out` exists (no `--overwrite`)",
    2,
    "model.onnx already exists",
    "--overwrite",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "model.onnx").write_bytes(b"x")
    return ["export", "--run", "run", "--format", "onnx", "--out", "model.onnx"]


# -- predict inputs


@case(
    "predict_input_missing",
    "predict",
    "`predict` of a file that does not exist",
    2,
    "nope.png",
    "does not exist",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return predict("nope.png")


@case("predict_folder_empty", "predict", "`predict` of a folder without images", 2, "holds no images", needs_run=True)
def _(d: Path) -> list[str]:
    (d / "docs").mkdir()
    (d / "docs" / "readme.txt").write_text("x")
    return predict("docs")


@case(
    "predict_some_corrupt",
    "predict",
    "`predict` of a folder with 2 unreadable files among 4: the rest are scored, exit 3",
    3,
    "skipped in/a_zero.png",
    "skipped in/b_text.png",
    "2 of 4 files could not be read",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    folder = d / "in"
    save(folder / "good1.png", texture(1))
    save(folder / "good2.png", texture(2))
    (folder / "a_zero.png").touch()
    (folder / "b_text.png").write_text("text")
    return predict("in")


@case(
    "predict_all_corrupt",
    "predict",
    "`predict` where no file can be read",
    2,
    "skipped bad.png",
    "none of the 1 input files could be read",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "bad.png").write_text("text")
    return predict("bad.png")


@case(
    "predict_unknown_category",
    "predict",
    "`predict --category` the run was not trained on",
    2,
    "was not trained on gizmo",
    "widget",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return predict("data/widget/test/good/0.png", extra=("--category", "gizmo"))


# -- nothing the user had is lost or overwritten (issue 21): byte-for-byte checks

_BEFORE: dict[Path, dict[Path, bytes]] = {}


def keep(d: Path, *names: str) -> None:
    """Remember the bytes of every file under ``names`` (files or folders in ``d``) for :func:`unchanged`."""
    files = [p for name in names for p in ([d / name] if (d / name).is_file() else (d / name).rglob("*"))]
    _BEFORE[d.resolve()] = {path: path.read_bytes() for path in files if path.is_file()}


def another_run(d: Path, result: str, text: str) -> None:
    """``d/other``: a copy of the shared run holding its own ``result`` file, remembered for :func:`unchanged`."""
    shutil.copytree(d / "run", d / "other")
    (d / "other" / result).write_text(text)
    keep(d, "other")


def unchanged(d: Path) -> None:
    """Every file :func:`keep` saw is still there with the same bytes."""
    for path, data in _BEFORE.pop(d.resolve()).items():
        assert path.is_file(), f"{path} was deleted"
        assert path.read_bytes() == data, f"{path} was changed"


def quietly(argv: list[str]) -> int:
    """Run one command in-process with its output swallowed (a case's set-up, not the case)."""
    from snlad.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(["--quiet", *argv])


@case(
    "train_out_not_a_run",
    "data safety",
    "`train --out` a folder of the user's that holds no run but a `config.yaml`, `metrics.csv`, `train_log.csv`",
    2,
    "proj holds no snlad run but files a training would replace (config.yaml, metrics.csv",
    "choose another --out",
    check=unchanged,
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    (d / "proj").mkdir()
    (d / "proj" / "config.yaml").write_text("mine: 1\n")
    (d / "proj" / "metrics.csv").write_text("x\n")
    (d / "proj" / "train_log.csv").write_text("epoch,loss\n1,0.5\n")
    keep(d, "proj")
    return train(out="proj")


@case(
    "predict_keeps_foreign_tmp",
    "data safety",
    "`predict --out` a folder holding the user's own hidden `.draft.tmp`, 2 hours old (kept: only snlad's temporaries are cleaned)",
    0,
    "scored 1 image ",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    (d / "pred").mkdir()
    draft = d / "pred" / ".draft.tmp"
    draft.write_text("draft\n")
    os.utime(draft, (time.time() - 7200, time.time() - 7200))
    keep(d, "pred")
    return predict("data/widget/test/good/0.png")


@case(
    "overwrite_bad_new_data_keeps_run",
    "data safety",
    "`train --overwrite` of a finished run with a truncated image in the new data: the old run stays whole",
    2,
    BAD,
    "re-copy it or delete it",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    (d / "run" / "metrics.csv").write_text("the old run's metrics\n")
    keep(d, "run")
    truncated(d / BAD, "PNG")
    return train("data", "--overwrite", out="run")


@contextlib.contextmanager
def held_lock(folder: Path, holder: str) -> Iterator[None]:
    """Another process's lock on ``folder`` (a separate open file: flock conflicts within one process too)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write(holder)
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@case(
    "predict_concurrent",
    "data safety",
    "a second `predict` into the `--out` another `predict` is writing",
    2,
    "pred is in use by another snlad predict (pid 4242)",
    "wait for it to finish",
    needs_run=True,
    simulate=lambda d: held_lock(d / "pred", "snlad predict (pid 4242)"),
)
def _(d: Path) -> list[str]:
    return predict("data/widget/test/good/0.png")


@case(
    "test_out_other_run",
    "data safety",
    "`test --out` another run's folder",
    2,
    "other holds another run",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    another_run(d, "metrics.csv", "the other run's metrics\n")
    return [*test_cmd(), "--out", "other"]


@case(
    "validate_out_other_run",
    "data safety",
    "`validate --real-defects --set map.* --out` another run's folder",
    2,
    "other holds another run",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    another_run(d, "validation-real.json", "{}\n")
    return ["validate", "--run", "run", "--real-defects", "data", "--set", "map.beta=1", "--out", "other"]


@case(
    "validate_set_synthetic",
    "config",
    "`validate --data --set map.*` (a rescored map on the synthetic validation)",
    2,
    "--set and --out go with --real-defects only",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return ["validate", "--run", "run", "--data", "data", "--set", "map.beta=1"]


@case(
    "test_out_existing_metrics",
    "data safety",
    "`test --out` a folder that already holds a `metrics.csv` (no `--overwrite`)",
    2,
    "evals/metrics.csv already exists",
    "--overwrite",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    (d / "evals").mkdir()
    (d / "evals" / "metrics.csv").write_text("mine\n")
    keep(d, "evals")
    return [*test_cmd(), "--out", "evals"]


@case(
    "report_out_exists",
    "data safety",
    "`report --out` a folder that already holds an `index.html` (no `--overwrite`)",
    2,
    "site/index.html already exists",
    "--overwrite",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    (d / "site").mkdir()
    (d / "site" / "index.html").write_text("<p>my page</p>\n")
    keep(d, "site")
    return ["report", "--run", "run", "--data", "data", "--out", "site"]


@case(
    "report_out_is_file",
    "files",
    "`report --out` a file (was a NotADirectoryError traceback)",
    2,
    "cannot write notes.txt/index.html: notes.txt/images or a folder above it is a file",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    assert quietly(test_cmd()) == 0
    (d / "notes.txt").write_text("x")
    return ["report", "--run", "run", "--data", "data", "--out", "notes.txt"]


@case(
    "predict_overwrite_keeps_foreign",
    "data safety",
    "`predict --overwrite` into a folder with the user's own `masks/` and `maps/` (ground truth): only predict's own files are replaced",
    0,
    "scored 1 image ",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    save(d / "pred" / "masks" / "gt.png", square_mask())
    (d / "pred" / "maps").mkdir()
    (d / "pred" / "maps" / "notes.npy").write_bytes(b"mine")
    keep(d, "pred")
    return predict("data/widget/test/good/0.png", extra=("--overwrite",))


@case(
    "predict_would_replace_foreign",
    "data safety",
    "`predict` whose mask `masks/0.png` would replace a file of the user's",
    2,
    "pred/masks/0.png exists and was not written by snlad predict",
    "choose another --out",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    save(d / "pred" / "masks" / "0.png", square_mask())
    keep(d, "pred")
    return predict("data/widget/test/good/0.png", extra=("--category", "widget"))


@case(
    "calibrate_margin_nan",
    "data safety",
    "`calibrate --margin nan` (or inf): would store thresholds nothing exceeds",
    2,
    "threshold margin must be a finite number >= 0, got nan",
    needs_run=True,
    check=unchanged,
)
def _(d: Path) -> list[str]:
    keep(d, "run")
    return ["calibrate", "--run", "run", "--data", "data", "--margin", "nan"]


@case(
    "rerun_after_failed_start",
    "data safety",
    "the same `train` again after a first one failed before its first checkpoint (corrupt image, since fixed)",
    0,
    "trained fd on widget",
)
def _(d: Path) -> list[str]:
    _with_bad_train_image(d, lambda p: truncated(p, "PNG"))
    assert quietly(train()) == 2
    save(d / BAD, texture(1))
    return train()


# -- names, folders and files of every kind (issue 21 items 11, 12, 16, 17)

NON_UTF8 = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8, as files copied from old systems are named


@case(
    "predict_non_utf8_name",
    "files",
    "`predict` of an image whose file name is not UTF-8 (`caf\\xe9.png`)",
    0,
    "scored 1 image ",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    save(d / "in" / NON_UTF8, texture(3))
    return predict("in")


@case(
    "test_non_utf8_name",
    "files",
    "`test` on data holding a test image whose file name is not UTF-8",
    0,
    "| category |",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "data" / "widget" / "test" / "good" / "0.png").rename(d / "data" / "widget" / "test" / "good" / NON_UTF8)
    return test_cmd()


@case(
    "predict_long_name",
    "files",
    "`predict` of an image with a legal 240-character name",
    0,
    "scored 1 image ",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    save(d / "in" / f"{'a' * 236}.png", texture(3))
    return predict("in")


@case(
    "predict_fifo",
    "files",
    "`predict` of a FIFO (named pipe)",
    2,
    "in.png is not a regular file",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    os.mkfifo(d / "in.png")
    return predict("in.png")


@contextlib.contextmanager
def full_tmpdir() -> Iterator[None]:
    """TMPDIR has no space left: creating the pixel metrics' temporary folder fails as the kernel would say."""

    def mkdtemp(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with mock.patch("snlad.scoring.metrics.tempfile.mkdtemp", mkdtemp):
        yield


@case(
    "test_tmpdir_full",
    "files",
    "`test` with a full TMPDIR (the pixel metrics stream through temporary files)",
    2,
    "cannot write the pixel metrics' temporary files",
    "No space left on device",
    "point TMPDIR at a folder with room",
    needs_run=True,
    simulate=lambda d: full_tmpdir(),
)
def _(d: Path) -> list[str]:
    return test_cmd()


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` is on a read-only file system (EROFS, which root gets too); evaluating first would be a failure."""
    original = tempfile.mkstemp
    target = folder.resolve()

    def mkstemp(*args: object, dir: object = None, **kwargs: object) -> tuple[int, str]:
        if dir is not None and Path(dir).resolve() == target:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return original(*args, dir=dir, **kwargs)

    def evaluate(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole evaluation ran before finding the folder read-only")

    with mock.patch("snlad.files.tempfile.mkstemp", mkstemp), mock.patch("snlad.api.evaluate", evaluate):
        yield


@case(
    "test_run_read_only",
    "files",
    "`test` of a run on a read-only file system: said before the evaluation, not after it",
    2,
    "cannot write run/metrics.csv: Read-only file system",
    needs_run=True,
    simulate=lambda d: read_only(d / "run"),
)
def _(d: Path) -> list[str]:
    return test_cmd()


@case(
    "test_while_training",
    "files",
    "`test` of a run that another `snlad train` is training right now",
    2,
    "run is being trained right now (snlad train (pid 4242)): wait for it to finish",
    needs_run=True,
    simulate=lambda d: held_lock(d / "run", "snlad train (pid 4242)"),
)
def _(d: Path) -> list[str]:
    (d / "run" / "run.json").write_text('{"mode": "multi-class", "categories": ["widget"], "finished": false}')
    return test_cmd()


@case(
    "model_is_onnx",
    "files",
    "an ONNX file written over `model.pt`",
    2,
    "run/model.pt is truncated or corrupt, or not a torch file",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "run" / "model.pt").write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x052.6.0" + bytes(64))
    return predict("data/widget/test/good/0.png")


def nan_student(path: Path) -> None:
    """Rewrite model.pt with the student's weights NaN: what a diverged training (or an edit) leaves."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    for name, tensor in payload["model"].items():
        if name.startswith("student") and tensor.is_floating_point():
            tensor.fill_(float("nan"))
    torch.save(payload, path)


@case(
    "model_nan_weights_test",
    "files",
    "`test` of a model whose weights are NaN (training diverged): was a ValueError traceback",
    2,
    "the model gives NaN or infinite anomaly maps",
    "retrain the run",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    nan_student(d / "run" / "model.pt")
    return test_cmd()


@case(
    "model_nan_weights_predict",
    "files",
    "`predict` with a model whose weights are NaN: were NaN scores and numpy's warnings",
    2,
    "the model gives NaN or infinite anomaly maps",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    nan_student(d / "run" / "model.pt")
    return predict("data/widget/test/good/0.png", extra=("--category", "widget"))


@case(
    "argument_not_a_number",
    "files",
    "`--batch-size x` (argparse's own check: one line, not its usage block)",
    2,
    "snlad: error: argument --batch-size: must be a whole number, got 'x' (see snlad predict --help)",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    return predict("data/widget/test/good/0.png", extra=("--batch-size", "x"))


# -- paths named in data files, configs and run files stay inside their root


def _nothing_at(path: Path) -> None:
    assert not path.exists(), f"{path} was written outside --out"


@case(
    "visa_csv_escapes_root",
    "paths",
    "a VisA split CSV whose image column names `../outside/secret.png`",
    2,
    "visa/split_csv/1cls.csv line 5: image: '../outside/secret.png' is not a path inside visa",
)
def _(d: Path) -> list[str]:
    images = d / "visa" / "widget" / "Data" / "Images" / "Normal"
    rows = ["object,split,label,image,mask"]
    for i in range(3):
        save(images / f"{i}.png", texture(i))
        rows.append(f"widget,train,normal,widget/Data/Images/Normal/{i}.png,")
    save(d / "outside" / "secret.png", texture(9))
    rows.append("widget,train,normal,../outside/secret.png,")
    (d / "visa" / "split_csv").mkdir()
    (d / "visa" / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return train("visa")


@case(
    "experiment_name_escapes_out",
    "paths",
    "an experiment configuration named `../../escaped`",
    2,
    "experiment configuration name: '../../escaped' is not a folder name inside exp",
    check=lambda d: _nothing_at(d / "escaped"),
)
def _(d: Path) -> list[str]:
    make_dataset(d / "data")
    (d / "e.yaml").write_text("configurations:\n  ../../escaped:\n    model: fd\n")
    return ["experiment", "--experiment", "e.yaml", "--data", "data", "--out", "exp"]


@case(
    "run_category_escapes_run",
    "paths",
    "a one-class `run.json` whose category is `../other` (would load that folder's model)",
    2,
    "run/run.json names category: '../other' is not a folder name inside run",
    needs_run=True,
)
def _(d: Path) -> list[str]:
    (d / "run" / "run.json").write_text('{"mode": "one-class", "categories": ["../other"], "finished": true}')
    return predict("data/widget/test/good/0.png", extra=("--category", "../other"))


# ---------------------------------------------------------------- running and rendering


def prepare(item: Case, directory: Path, shared: Path | None) -> list[str]:
    """Create the case's files in ``directory`` (copying the shared run and data if needed); return argv."""
    directory.mkdir(parents=True, exist_ok=True)
    if item.needs_run:
        assert shared is not None
        _copy(shared, directory, "data", "run")
    with contextlib.chdir(directory):
        return ["--quiet", *item.build(directory)]


def run_case(item: Case, directory: Path, shared: Path | None) -> tuple[list[str], Outcome]:
    """Build the case in ``directory`` and run its command in-process there; return argv and what it printed."""
    from snlad.cli import main

    argv = prepare(item, directory, shared)
    out, err = io.StringIO(), io.StringIO()
    simulation = item.simulate(directory) if item.simulate else contextlib.nullcontext()
    with contextlib.chdir(directory), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), simulation:
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own errors end the process, as in a terminal
            code = exit_.code
    prefix = str(directory.resolve()) + os.sep
    return argv, Outcome(code, out.getvalue().replace(prefix, ""), err.getvalue().replace(prefix, ""))


def command_text(argv: list[str]) -> str:
    """The command as a user would type it, without ``--quiet`` and the fast ``--set`` options."""
    shown, skip = ["snlad"], False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--set" and index + 1 < len(argv) and argv[index + 1] in FAST:
            skip = True
            continue
        if arg != "--quiet":
            shown.append(arg)
    return " ".join(shown)


def shown_output(outcome: Outcome) -> str:
    """What the user sees: stderr as printed; for a success without stderr, stdout's first line."""
    lines = outcome.stderr.strip().splitlines() or [f"(exit 0) {outcome.stdout.strip().splitlines()[0]}"]
    escaped = (
        line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|") for line in lines
    )
    return "<br>".join(escaped)


HEADER = """# What snlad says about bad input

Generated by `python scripts/bad_input_table.py` from the cases in
`tests/bad_inputs.py`; `tests/test_bad_input.py` checks this file is up to
date and that every message is one line naming the file (and the fix), with
no traceback (`--debug` shows one). Each command also ran with `--quiet`,
`--model fd` and fast settings (`--set data.image_size=64 ...`), in a folder
holding the files named. Paths are relative to that folder.

Exit codes: 0 ok, 2 user-fixable error, 3 `predict` skipped unreadable files
and scored the rest (each skipped file is listed), 130 interrupted (state
saved; continue with `--resume`).

What is never lost: a folder that holds files snlad did not write is not
written over (`train --out` a folder with someone's `config.yaml`, `predict
--out` a folder with ground-truth `masks/`: refused, or only predict's own
files, listed in its `.snlad-prediction.json`, replaced). A run, a prediction,
a report or `test --out` metrics are replaced only with `--overwrite`; `train
--overwrite` keeps the replaced run in `RUN/.replaced/` until the new one has
finished and puts it back if the new one fails before its first checkpoint.
`train` and `predict` lock their folder (`.lock`) against a second snlad.
Only snlad's own temporaries (`.<name>.<random>.snlad.tmp`) are cleaned up.
Paths named inside files (a VisA split CSV, an experiment's configuration
names, a run's categories) must stay inside their root (`snlad.files.confined`).
What a setting or an input may cost is bounded, each bound named in its
message: `data.image_size` <= 2048, `model.cram_centres` <= 4096,
`loss.affinity_size` <= 64, `map.sigma` <= image size / 4, `--threads` <= the
usable cores, images <= `PIL.Image.MAX_IMAGE_PIXELS` (89 Mpixel), a YAML
document <= 10,000 values.

Decisions: a mask pixel is a defect when its value is nonzero (JPEG-compressed
or anti-aliased masks count every non-black pixel; 16-bit masks too). Odd
image modes load as RGB (rules in `src/snlad/data/image_io.py`). Unreadable
files (`chmod 000`) are simulated with the same `PermissionError` when the
tests run as root.

| # | group | input | command | exit | what the user sees (stderr) |
|---|---|---|---|---|---|
"""


def render(rows: list[tuple[Case, list[str], Outcome]]) -> str:
    lines = [
        f"| {number} | {item.group} | {item.what} | `{command_text(argv)}` | {outcome.code} | {shown_output(outcome)} |"
        for number, (item, argv, outcome) in enumerate(rows, start=1)
    ]
    return HEADER + "\n".join(lines) + "\n"
