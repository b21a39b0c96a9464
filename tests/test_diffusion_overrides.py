"""Settings given as METHOD.KEY=VALUE text (the protocol runner's --set): typed by the config dataclass, merged into
nested configs, validated, and every malformed or unknown one a usage error that says what is valid."""

import pytest

from i2i.ctrlx.config import CTRLX, CtrlXConfig
from i2i.diffusion.overrides import apply_overrides, describe_overrides, parse_overrides, parse_value, setting_types
from i2i.errors import UsageError
from i2i.freecontrol.config import FREECONTROL, BasesConfig, FreeControlConfig

METHODS = {"freecontrol": FREECONTROL, "ctrlx": CTRLX}


def test_values_are_typed_by_the_config_fields():
    got = parse_overrides(["ctrlx.structure_schedule=0.4", "ctrlx.num_inference_steps=12", "ctrlx.negative_prompt=",
                           "ctrlx.self_recurrence=0.1, 0.5, 2", "ctrlx.size=none",
                           "freecontrol.structure_weight=800", "freecontrol.img2img=true",
                           "freecontrol.bases.n_components=16", "freecontrol.negative_prompt=outline, sketch"],
                          METHODS)
    assert got == {"ctrlx": {"structure_schedule": 0.4, "num_inference_steps": 12, "negative_prompt": "",
                             "self_recurrence": (0.1, 0.5, 2), "size": None},
                   "freecontrol": {"structure_weight": 800.0, "img2img": True, "bases": {"n_components": 16},
                                   "negative_prompt": "outline, sketch"}}
    assert type(got["ctrlx"]["num_inference_steps"]) is int and type(got["freecontrol"]["structure_weight"]) is float
    assert type(got["ctrlx"]["self_recurrence"][2]) is int
    assert parse_value("No", bool) is False and parse_value("64", int | None) == 64


@pytest.mark.parametrize("text, kind, says", [("12.5", int, "an integer"), ("abc", float, "a number"),
                                              ("nan", float, "a number"), ("maybe", bool, "true or false"),
                                              ("0.1,0.5", tuple[float, float, int] | None, "3 comma-separated")])
def test_a_value_of_the_wrong_type_says_what_the_field_takes(text, kind, says):
    with pytest.raises(ValueError, match=says):
        parse_value(text, kind)


@pytest.mark.parametrize("text, says", [
    ("ctrlx.structure_schedule", "write METHOD.KEY=VALUE"), ("structure_schedule=0.4", "write METHOD.KEY=VALUE"),
    ("sdedit.strength=0.5", r"'sdedit' is not a method of this run \(choose from freecontrol, ctrlx\)"),
    ("ctrlx.num_inference_steps=2.5", "num_inference_steps takes an integer, not '2.5'"),
    ("freecontrol.bases=3", "no setting 'bases'; valid keys: .*bases.n_components"),
])
def test_malformed_and_unknown_settings_are_usage_errors(text, says):
    with pytest.raises(UsageError, match=says):
        parse_overrides([text], METHODS)


def test_an_unknown_key_names_every_valid_one():
    with pytest.raises(UsageError) as info:
        parse_overrides(["ctrlx.structure_scedule=0.4"], METHODS)
    assert info.value.exit_code == 2
    assert "'structure_scedule'" in str(info.value)
    assert str(info.value).endswith("valid keys: " + ", ".join(sorted(setting_types(CTRLX))))
    assert "structure_schedule" in setting_types(CTRLX) and "bases" not in setting_types(FREECONTROL)


def test_a_key_given_twice_is_refused():
    with pytest.raises(UsageError, match="ctrlx.eta is given twice"):
        parse_overrides(["ctrlx.eta=0", "ctrlx.eta=1"], METHODS)


def test_overrides_merge_into_the_models_settings_and_are_validated():
    recommended = FreeControlConfig(structure_weight=1200.0, bases=BasesConfig(num_inference_steps=50,
                                                                               n_components=32))
    overrides = parse_overrides(["freecontrol.structure_weight=800", "freecontrol.bases.n_components=16"], METHODS)
    config = apply_overrides(recommended, overrides["freecontrol"], FREECONTROL)
    assert config.structure_weight == 800.0 and config.bases.n_components == 16
    assert config.bases.num_inference_steps == 50                   # the nested config merged, not replaced
    assert apply_overrides(recommended, {}, FREECONTROL) == recommended
    with pytest.raises(UsageError, match=r"^--set ctrlx.structure_schedule=1.5: .*between 0 and 1"):
        apply_overrides(CtrlXConfig(), parse_overrides(["ctrlx.structure_schedule=1.5"], METHODS)["ctrlx"], CTRLX)


def test_overrides_are_described_as_they_are_written():
    overrides = parse_overrides(["freecontrol.bases.n_components=16", "ctrlx.structure_schedule=0.4",
                                 "ctrlx.self_recurrence=0.1,0.5,2", "ctrlx.size=none"], METHODS)
    assert describe_overrides(overrides) == ("ctrlx.structure_schedule=0.4, ctrlx.self_recurrence=0.1,0.5,2, "
                                             "ctrlx.size=none, freecontrol.bases.n_components=16")
    assert describe_overrides({}) == ""
