import pytest
import tomllib

from dense.config import apply_override, config_from_dict, load_config, to_toml, toml_value
from dense.errors import DenseError
from tests.conftest import ROOT, TINY, tiny_dict


def test_overrides_parse_toml_values_and_fall_back_to_text():
    raw = {}
    apply_override(raw, "optim.lr=0.5")
    apply_override(raw, "model.encoder=resnet34")
    apply_override(raw, "data.options.neighbours=true")
    assert raw == {
        "optim": {"lr": 0.5},
        "model": {"encoder": "resnet34"},
        "data": {"options": {"neighbours": True}},
    }


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(DenseError, match=r"unknown config key 'optim.lrr'.*'optim.lr'"):
        config_from_dict(tiny_dict(tmp_path, "optim.lrr=1"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr='fast'", "optim.lr"),
        ("train.steps=1.5", "train.steps"),
        ("optim.schedule=linear", "not one of"),
        ("tasks.depth.loss=l2", "tasks.depth.loss"),
        ("data.options.hieght=3", "data.options.hieght"),
        ("train.steps=0", "train.steps must be at least 1"),
        ("data.dataset=nope", "unknown dataset 'nope'"),
        ("tasks.segmentaton.weight=1", "did you mean 'segmentation'"),
        ("train.channels_last=maybe", r"wrong type \(expected bool or 'auto'\)"),
        ("optim.fused=1", r"optim.fused = 1 has the wrong type \(expected bool\)"),
    ],
)
def test_bad_values_give_clear_errors(tmp_path, override, message):
    with pytest.raises(DenseError, match=message):
        config_from_dict(tiny_dict(tmp_path, override))


def test_int_is_accepted_for_float_and_task_options_are_typed(tmp_path):
    config = config_from_dict(tiny_dict(tmp_path, "optim.lr=1", "tasks.depth.max_depth=8"))
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.tasks["depth"].max_depth == 8.0
    assert config.data.options["height"] == 32


def test_toml_round_trip(tmp_path):
    config = config_from_dict(tiny_dict(tmp_path))
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config.to_dict()))
    assert load_config(path).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "text",
    [
        "line one\nline two",
        'say "hi"',
        "C:\\runs\\x",
        "tab\tand \x01 control",
        "Zürich → 東京 ☃",
        "",
    ],
)
def test_any_string_survives_a_toml_round_trip(tmp_path, text):
    raw = tiny_dict(tmp_path)
    raw["run"]["name"] = text
    raw["data"]["options"]["note"] = {"nested": [text, text]}
    written = to_toml(raw)
    assert tomllib.loads(written) == raw


def test_none_values_are_left_out_of_toml():
    assert tomllib.loads(to_toml({"a": {"b": None, "c": 1}, "d": None})) == {"a": {"c": 1}}


def test_override_values_are_written_as_toml():
    raw = {}
    name = 'a "quoted"\nname'
    apply_override(raw, "run.name=" + toml_value(name))
    apply_override(raw, "train.steps=" + toml_value(12))
    apply_override(raw, "data.options.size=" + toml_value([96, 128]))
    assert raw == {
        "run": {"name": name},
        "train": {"steps": 12},
        "data": {"options": {"size": [96, 128]}},
    }


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(DenseError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nname=")
    with pytest.raises(DenseError, match="not valid TOML"):
        load_config(bad)


def test_a_config_needs_a_task():
    raw = {key: value for key, value in TINY.items() if key != "tasks"}
    with pytest.raises(DenseError, match="no task"):
        config_from_dict(raw)


def test_default_experiment_is_valid():
    config = load_config("experiments/synthetic_joint.toml")
    assert set(config.tasks) == {"segmentation", "depth"}


@pytest.mark.parametrize("path", sorted(ROOT.glob("experiments/*.toml")), ids=lambda p: p.name)
def test_every_experiment_config_is_valid(path):
    assert load_config(path).tasks
