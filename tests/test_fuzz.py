"""Fuzzing what users feed snlad files through: image/mask decoding, the config, and edited run files.

Contract under test: whatever the bytes or values, the result is either a
correct value (an ``H x W x 3`` uint8 image, an ``H x W`` bool mask, a checked
:class:`Config`) or a one-line :class:`SnladError` -- never another exception.
Edited run files (``model.pt``, ``checkpoint.pt``, ``config.yaml`` with a key
removed or a value of another type anywhere) go through the command line:
exit 0, or exit 2 with one ``snlad: error:`` line, never a traceback.
Example counts are bounded (and Pillow's bomb limit lowered while fuzzing), so
the module stays within a few seconds on a 2-core machine, and derandomised so
CI is repeatable. A deeper, random search: ``SNLAD_FUZZ_EXAMPLES=5000 pytest
tests/test_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from snlad.backbones import read_state_dict
from snlad.cli import main
from snlad.config import Config, from_dict, load_config, merge, parse_override
from snlad.data import load_image, load_mask
from snlad.errors import SnladError
from snlad.runs.checkpoint import read_checkpoint

EXAMPLES = int(os.environ.get("SNLAD_FUZZ_EXAMPLES", "80"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=EXAMPLES <= 100
)
SIDE = 8


def _encoded(mode: str, fmt: str, **options: object) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    elif mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# Valid files of every format and several modes; mutations of these reach deep into each decoder.
SEEDS = {
    "png_rgb": _encoded("RGB", "PNG"),
    "png_rgba": _encoded("RGBA", "PNG"),
    "png_palette": _encoded("P", "PNG"),
    "png_16bit": _encoded("I;16", "PNG"),
    "jpeg": _encoded("RGB", "JPEG", quality=90),
    "jpeg_cmyk": _encoded("CMYK", "JPEG"),
    "bmp": _encoded("RGB", "BMP"),
    "tiff": _encoded("RGB", "TIFF"),
    "tiff_lzw": _encoded("L", "TIFF", compression="tiff_lzw"),
    "gif": _encoded("P", "GIF"),
}


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, bytes] = SEEDS) -> bytes:
    """A valid seed file with a few bytes flipped, overwritten, inserted or cut off."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            del data[position:]
    return bytes(data)


any_bytes = st.one_of(st.binary(max_size=512), mutated())


@pytest.fixture(scope="module", autouse=True)
def small_bomb_limit() -> Iterator[None]:
    """A mutated header can claim a huge image: refuse above 1 Mpixel instead of allocating it."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 2**20
    yield
    Image.MAX_IMAGE_PIXELS = limit


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "file.png"


def _one_line_naming(error: SnladError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and str(path) in message, message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning", "ignore::UserWarning")
@FUZZ
@given(data=any_bytes)
def test_image_bytes_load_or_raise_snlad_error(target: Path, data: bytes) -> None:
    target.write_bytes(data)
    try:
        pixels = load_image(target)
    except SnladError as error:
        _one_line_naming(error, target)
    else:
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.size > 0


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning", "ignore::UserWarning")
@FUZZ
@given(data=any_bytes)
def test_mask_bytes_load_or_raise_snlad_error(target: Path, data: bytes) -> None:
    target.write_bytes(data)
    try:
        mask = load_mask(target, (SIDE, SIDE))
    except SnladError as error:
        _one_line_naming(error, target)
    else:
        assert mask.dtype == bool and mask.shape == (SIDE, SIDE)


def _checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "format": "snlad-checkpoint",
            "version": 1,
            "kind": "model",
            "model": {"w": torch.ones(4, 4), "b": torch.zeros(3)},
        },
        buffer,
    )
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ
@given(data=mutated({"checkpoint": _checkpoint_bytes()}))
def test_checkpoint_bytes_load_or_raise_snlad_error(target: Path, data: bytes) -> None:
    """Run checkpoints (model.pt, checkpoint.pt) and teacher weights: mutated files load or are refused in one line."""
    path = target.with_suffix(".pt")
    path.write_bytes(data)
    for load in (read_checkpoint, read_state_dict):
        try:
            load(path)
        except SnladError as error:
            _one_line_naming(error, path)


# ---------------------------------------------------------------- config

CONFIG_KEYS = {section: sorted(values) for section, values in Config().to_dict().items()}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["fd", "snl-rd", "l1", "topk", "cpu", "cuda:7", "efficientnet_lite0", "resnet18"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
section_names = st.sampled_from(sorted(CONFIG_KEYS)) | st.text(max_size=8)


@st.composite
def updates(draw: st.DrawFn) -> dict:
    """A nested update, mostly with real section and key names so the type and value checks are reached."""
    result: dict = {}
    for section in draw(st.lists(section_names, max_size=3)):
        known = CONFIG_KEYS.get(section, [])
        keys = st.sampled_from(known) | st.text(max_size=8) if known else st.text(max_size=8)
        result[section] = draw(st.dictionaries(keys, values, max_size=4) | values)
    return result


def _checked(build) -> None:
    try:
        config = build()
    except SnladError as error:
        assert "\n" not in str(error), str(error)
    else:
        assert isinstance(config, Config)


@FUZZ
@given(update=updates())
def test_merge_gives_config_or_snlad_error(update: dict) -> None:
    _checked(lambda: merge(Config(), update, source="fuzz"))


@FUZZ
@given(update=updates())
def test_from_dict_gives_config_or_snlad_error(update: dict) -> None:
    """The path a checkpoint's stored config takes when a run is loaded."""
    _checked(lambda: from_dict(update, source="fuzz"))


yaml_text = st.one_of(
    st.text(max_size=80),
    updates().map(lambda update: yaml.safe_dump(update, allow_unicode=True)),
    st.builds(lambda a, b: a + b, updates().map(yaml.safe_dump), st.text(max_size=10)),
)


@FUZZ
@given(text=yaml_text, model=st.sampled_from([None, "fd", "snl-rd"]))
def test_config_file_gives_config_or_snlad_error(
    tmp_path_factory: pytest.TempPathFactory, text: str, model: str | None
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _checked(lambda: load_config(model, path))


override_text = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda section, key, value: f"{section}.{key}={value}",
        section_names,
        st.sampled_from(sorted({k for keys in CONFIG_KEYS.values() for k in keys})) | st.text(max_size=6),
        st.text(max_size=12) | values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
    ),
)


@FUZZ
@given(texts=st.lists(override_text, max_size=3))
def test_overrides_give_config_or_snlad_error(texts: list[str]) -> None:
    def build() -> Config:
        for text in texts:
            parsed = parse_override(text)
            assert isinstance(parsed, dict) and len(parsed) == 1
        return load_config(None, None, texts)

    _checked(build)


@pytest.mark.parametrize(
    "update",
    [
        {"data": None},  # a stored config whose section is not a mapping (was AttributeError)
        {"train": {"lr": 10**400}},  # too large for a float (was OverflowError)
        {"train": {"betas": [10**400, 0.9]}},
        {"train": {"lr": math.inf}},  # accepted before, then NaN weights
        {"map": {"sigma": math.nan}},
        {"\n": {}},  # a key with a newline made a two-line message
    ],
)
def test_fuzz_findings_stay_fixed(update: dict) -> None:
    with pytest.raises(SnladError) as error:
        from_dict(update, source="fuzz") if "data" in update else merge(Config(), update, "fuzz")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("text", ["train.betas=[0.9", "train.seed=" + "1" * 5000])
def test_override_findings_stay_fixed(text: str) -> None:
    with pytest.raises(SnladError, match="not valid YAML"):
        parse_override(text)


# ---------------------------------------------------------------- edited run files, through the command line

CLI_FUZZ = settings(
    max_examples=max(8, EXAMPLES // 5),  # each example runs a command: a few hundred ms
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=EXAMPLES <= 100,
)
SWAPS = [None, True, -1, 2**70, 1.5, math.nan, "x", [], [1, "a"], {}, {"a": 1}]
"""What a hand edit or another tool leaves where a value was: every type, and out-of-range numbers."""


@st.composite
def edits(draw: st.DrawFn, tensors: bool = True) -> tuple[list, str, object]:
    """A place in a nested payload (a path of keys/indices, drawn while descending) and what happens there.

    ``("remove", None)`` deletes the entry; ``("swap", value)`` replaces it by
    a value of another type (a tensor too, where the file can hold one).
    """
    path = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=4))
    swaps = SWAPS + ([torch.zeros(2)] if tensors else [])
    return path, draw(st.sampled_from(["remove", "swap"])), draw(st.sampled_from(swaps))


def apply_edit(payload: dict, edit: tuple[list, str, object]) -> str:
    """Apply ``edit`` to ``payload`` in place, each drawn integer picking a key (sorted) or index; returns where."""
    choices, action, value = edit
    node, where = payload, []
    for depth, choice in enumerate(choices):
        keys = sorted(node, key=str) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[choice % len(keys)]
        where.append(str(key))
        last = depth == len(choices) - 1 or not isinstance(node[key], (dict, list)) or not node[key]
        if last:
            if action == "remove":
                del node[key]
            else:
                node[key] = value
            break
        node = node[key]
    return "/".join(where)


@pytest.fixture(scope="module")
def shared_run(bad_input_shared: Path) -> Path:
    """``shared/data`` and ``shared/run`` (fd, 1 epoch, 64 px) of the bad-input suite, built once (tests/conftest.py)."""
    return bad_input_shared


def _one_error_line_or_success(argv: list[str], where: str) -> None:
    """Run ``snlad`` in-process: exit 0, or exit 2 with one ``snlad: error:`` line; any exception fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--quiet", *argv])
    lines = [line for line in err.getvalue().splitlines() if not line.startswith("snlad: note: ")]
    assert code in (0, 2), (where, code, err.getvalue())
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("snlad: error: "), (where, err.getvalue())


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore::UserWarning")
@CLI_FUZZ
@given(edit=edits(), target=st.sampled_from(["model.pt", "run.json"]))
def test_edited_model_file_is_used_or_refused_in_one_line(
    shared_run: Path, tmp_path_factory, edit, target: str
) -> None:
    """model.pt (config, categories, thresholds, weights) or run.json with a key removed or a value of another type."""
    work = tmp_path_factory.mktemp("model")
    shutil.copytree(shared_run / "run", work / "run")
    where = _edit_file(work / "run" / target, edit)
    image = shared_run / "data" / "widget" / "test" / "good" / "0.png"
    argv = ["predict", str(image), "--run", str(work / "run"), "--out", str(work / "pred"), "--category", "widget"]
    _one_error_line_or_success(argv, f"{target}: {where}")


def _edit_file(file: Path, edit: tuple[list, str, object]) -> str:
    """Apply ``edit`` to a torch, YAML or JSON run file in place (a tensor swap becomes a string in text files)."""
    if file.suffix == ".pt":
        payload = torch.load(file, map_location="cpu", weights_only=True)
        where = apply_edit(payload, edit)
        torch.save(payload, file)
        return where
    text_edit = (edit[0], edit[1], "x" if isinstance(edit[2], torch.Tensor) else edit[2])
    load, dump = (yaml.safe_load, yaml.safe_dump) if file.suffix == ".yaml" else (json.loads, json.dumps)
    payload = load(file.read_text())
    where = apply_edit(payload, text_edit)
    file.write_text(dump(payload))
    return where


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore::UserWarning")
@CLI_FUZZ
@given(edit=edits(), target=st.sampled_from(["checkpoint.pt", "config.yaml"]))
def test_edited_training_state_is_resumed_or_refused_in_one_line(
    shared_run: Path, tmp_path_factory, edit, target: str
) -> None:
    """checkpoint.pt (epoch, position, weights, optimiser state, config) or the run's config.yaml, then --resume."""
    work = tmp_path_factory.mktemp("resume")
    shutil.copytree(shared_run / "run", work / "run")
    where = _edit_file(work / "run" / target, edit)
    argv = ["train", "--data", str(shared_run / "data"), "--out", str(work / "run"), "--resume"]
    _one_error_line_or_success(argv, f"{target}: {where}")


@pytest.mark.parametrize(
    ("target", "edit"),
    [
        ("model.pt", (["categories"], "remove", None)),  # was KeyError
        ("model.pt", (["config"], "remove", None)),
        ("model.pt", (["model"], "swap", [1, "a"])),  # was AttributeError
        ("model.pt", (["calibration", "widget", "threshold"], "swap", "x")),  # was TypeError in predict
        ("model.pt", (["calibration", "widget", "threshold"], "swap", math.nan)),  # marked nothing
        ("checkpoint.pt", (["epoch"], "remove", None)),  # was KeyError
        ("checkpoint.pt", (["epoch"], "swap", "x")),  # was ValueError
        ("checkpoint.pt", (["optimizer", "state", 0, "exp_avg"], "swap", torch.zeros(2))),  # was RuntimeError
    ],
)
def test_edit_findings_stay_fixed(shared_run: Path, tmp_path: Path, target: str, edit: tuple) -> None:
    """The edits of issue 21 item 14, by name: each is refused in one line naming the file."""
    shutil.copytree(shared_run / "run", tmp_path / "run")
    file = tmp_path / "run" / target
    payload = torch.load(file, map_location="cpu", weights_only=True)
    node = payload
    for key in edit[0][:-1]:
        node = node[key]
    key = edit[0][-1]
    if edit[1] == "remove":
        del node[key]
    else:
        node[key] = edit[2]
    torch.save(payload, file)
    if target == "model.pt":
        image = shared_run / "data" / "widget" / "test" / "good" / "0.png"
        argv = [
            "predict",
            str(image),
            "--run",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "p"),
            "--category",
            "widget",
        ]
    else:
        argv = ["train", "--data", str(shared_run / "data"), "--out", str(tmp_path / "run"), "--resume"]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["--quiet", *argv]) == 2
    lines = [line for line in err.getvalue().splitlines() if not line.startswith("snlad: note: ")]
    assert len(lines) == 1 and lines[0].startswith("snlad: error: ") and target in lines[0], err.getvalue()
