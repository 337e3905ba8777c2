"""Presets, YAML files and overrides: unknown keys and wrong types are named."""

from pathlib import Path

import pytest

from snlad.config import (
    check_registry,
    effective_map,
    from_dict,
    load_config,
    map_term_weights,
    preset,
    read_yaml,
    write_yaml,
)
from snlad.errors import SnladError


def test_presets_switch_snl_parts():
    assert preset("fd").loss.intra == 0 and not preset("fd").model.cram
    snl = preset("snl-rd")
    assert snl.model.cram and snl.loss.intra > 0 and snl.map.beta > 0
    assert preset("rd").loss.whole_map == 1.0 and preset("rd").loss.channel == 0.0


def test_file_and_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n  lr: 1\nloss:\n  intra: 0.5\n")
    config = load_config("snl-fd", path, ["train.epochs=7", "model.cram=false"])
    assert config.train.epochs == 7 and config.train.lr == 1.0 and config.loss.intra == 0.5 and not config.model.cram


def test_resolved_config_round_trips(tmp_path):
    config = load_config("snl-fd", None, ["train.betas=[0.8, 0.9]"])
    write_yaml(config, tmp_path / "config.yaml")
    assert load_config(None, tmp_path / "config.yaml") == config


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("train:\n  epoch: 3\n", "train.epoch"),
        ("trian:\n  epochs: 3\n", "trian"),
        ("train:\n  epochs: three\n", "train.epochs"),
        ("train:\n  betas: [0.5]\n", "train.betas"),
        ("loss:\n  intra: -1\n", "loss.intra"),
        ("- just a list\n", "mapping"),
        ("train: [\n", "YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, names):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SnladError, match=names.replace(".", r"\.")):
        load_config("fd", path)


def test_bad_override_and_model():
    with pytest.raises(SnladError, match="section.key=value"):
        load_config("fd", None, ["epochs=3"])
    with pytest.raises(SnladError, match="unknown model"):
        load_config("xx")


@pytest.mark.parametrize(("written", "value"), [("1e-3", 1e-3), ("3E-4", 3e-4), ("+2e+1", 20.0), ("5e0", 5.0)])
def test_exponent_floats_without_a_dot_are_floats(tmp_path, written, value):
    """PyYAML (YAML 1.1) reads 1e-3 as a string; `--set train.lr=1e-3` and `lr: 1e-3` in a file must both work."""
    assert load_config("fd", None, [f"map.beta={written}"]).map.beta == value
    path = tmp_path / "lr.yaml"
    path.write_text(f"train:\n  lr: {written}\n")
    assert load_config("fd", path).train.lr == value


@pytest.mark.parametrize("written", ["nan", "inf", ".inf", "1e400", "e-3", "1e-3x"])
def test_non_finite_or_malformed_floats_are_still_refused(written):
    with pytest.raises(SnladError, match=r"train\.lr"):
        load_config("fd", None, [f"train.lr={written}"])


def test_the_structural_map_has_its_own_settings_which_default_to_the_losss():
    """Unset (None, and absent from files written before they existed), the map compares positions as training did."""
    config = load_config("snl-fd", None, ["loss.affinity_mode=local", "loss.affinity_size=8"])
    assert config.map.affinity_mode is None
    assert (effective_map(config).affinity_mode, effective_map(config).affinity_size) == ("local", 8)
    own = load_config("snl-fd", None, ["loss.affinity_mode=local", "map.affinity_mode=pooled", "map.affinity_size=4"])
    assert (effective_map(own).affinity_mode, effective_map(own).affinity_size, effective_map(own).affinity_window) == (
        "pooled",
        4,
        7,
    )
    old = config.to_dict()
    for key in ("affinity_size", "affinity_mode", "affinity_window", "local"):
        del old["map"][key]
    assert from_dict(old, "old run") == config


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "docs/results").rglob("config.yaml")), ids=str)
def test_every_run_file_in_the_results_still_loads(path):
    """Run folders written by earlier versions (before model.architecture, before the map's own settings)."""
    config = from_dict(read_yaml(path), str(path))
    assert map_term_weights(config.map)["local"] == 1.0


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("map.affinity_mode=window", "map.affinity_mode must be one of pooled, local"),
        ("loss.spatial_kind=cosine", "loss.spatial_kind must be one of cos, kl"),
        ("train.schedule=linear", "train.schedule must be one of constant, cosine"),
        ("map.affinity_window=4", "map.affinity_window must be odd"),
        ("map.local=-1", "map.local must be >= 0"),
    ],
)
def test_string_options_are_checked_against_their_names(setting, message):
    with pytest.raises(SnladError, match=message):
        load_config("snl-fd", None, [setting])


def test_an_empty_map_is_refused():
    with pytest.raises(SnladError, match="map.local, map.beta must be > 0"):
        load_config("fd", None, ["map.local=0"])


def test_a_registry_that_differs_from_its_setting_stops_the_import():
    check_registry({"cos": None, "kl": None}, "loss.spatial_kind")
    with pytest.raises(ImportError, match="loss.spatial_kind"):
        check_registry({"cos": None}, "loss.spatial_kind")
