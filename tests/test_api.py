"""The public API's shape: keyword-only functions, one progress setting, and ``--device`` reaching where a model is placed."""

import inspect
from pathlib import Path

import pytest

from snlad import api, cli
from snlad.config import load_config
from snlad.errors import SnladError
from snlad.models import build_model
from snlad.progress import bar, progress_shown
from snlad.runs import run as run_module
from snlad.runs.trained import TrainedModel, build_scorer


def public_functions() -> dict[str, object]:
    """The functions :mod:`snlad.api` defines and exports (not the names it passes on from lower modules)."""
    return {
        name: value
        for name in api.__all__
        if inspect.isfunction(value := getattr(api, name)) and value.__module__ == "snlad.api"
    }


def test_every_public_api_function_takes_keyword_arguments_only() -> None:
    functions = public_functions()
    assert {"train", "test", "predict", "calibrate", "export", "load", "experiment"} <= set(functions)
    positional = [
        f"{name}({parameter.name})"
        for name, function in functions.items()
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY
    ]
    assert not positional, f"positional parameters: {', '.join(positional)}"
    with pytest.raises(TypeError):
        api.test("runs/x")  # type: ignore[misc]  # the old positional call fails loudly, not with a shifted meaning


def test_show_progress_is_one_setting_for_everything_inside_it() -> None:
    assert progress_shown() and not bar(range(3), desc="x", unit="it").disable
    with api.show_progress(False):
        assert not progress_shown() and bar(range(3), desc="x", unit="it").disable
        with api.show_progress(True):
            assert progress_shown()
        assert not progress_shown()
    assert progress_shown()


@pytest.fixture
def gpu_trained_run(tmp_path: Path) -> Path:
    """A finished run whose config says ``train.device=cuda`` (untrained weights: only where the model lands matters)."""
    config = load_config("rd", None, ["train.device=cuda", "data.image_size=64"])
    config.data.categories = ["widget"]
    model = build_model(config.model, pretrained_teacher=False)
    run = api.Run(tmp_path / "run")
    run.path.mkdir()
    TrainedModel(config, model, build_scorer(config, model), ["widget"]).save(run.path / "model.pt")
    run.write_index("multi-class", ["widget"], finished=True, data_root=tmp_path)
    return run.path


@pytest.mark.parametrize("command", ["test", "predict", "calibrate", "validate"])
@pytest.mark.parametrize("device", [None, "cpu"])
def test_the_cli_device_option_reaches_the_model_placement(
    gpu_trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, device: str | None
) -> None:
    """``--device cpu`` loads the model on the CPU; without it, "auto" (never the run's train.device=cuda)."""
    placed: list[tuple[str, str]] = []
    load_trained = run_module.load_trained

    def placing(path: Path, device: str = "auto") -> TrainedModel:
        placed.append((device, load_trained(path, device).device.type))
        raise SnladError("stop once the model is placed")

    monkeypatch.setattr(run_module, "load_trained", placing)
    run = str(gpu_trained_run)
    argv = {
        "test": ["test", "--run", run],
        "predict": ["predict", str(tmp_path / "image.png"), "--run", run, "--out", str(tmp_path / "out")],
        "calibrate": ["calibrate", "--run", run, "--data", str(tmp_path)],
        "validate": ["validate", "--run", run, "--real-defects", str(tmp_path)],
    }[command]
    assert cli.main([*argv, *(["--device", device] if device else []), "--quiet"]) == 2
    expected = device or "auto"
    assert [argument for argument, _ in placed] == [expected]
    if device == "cpu":
        assert placed[0][1] == "cpu"


@pytest.mark.parametrize("device", ["bogus", "cuda:x"])
def test_an_unknown_device_is_one_error_line(gpu_trained_run: Path, capsys: pytest.CaptureFixture, device: str) -> None:
    assert cli.main(["test", "--run", str(gpu_trained_run), "--device", device, "--quiet"]) == 2
    assert capsys.readouterr().err == f"snlad: error: device {device!r}: use auto, cpu or cuda[:N]\n"
