"""Tests of sketchtk.config (HParams, the key=value override syntax) and the presets in hparams/."""

import dataclasses
import json

import pytest

import hparams
from sketchtk.config import HParams, parse_overrides
from sketchtk.errors import ConfigError

# The full option list of the RPCL-pix2seq README (after "--hparams"), with its defaults.
REFERENCE_HPARAMS = {
    "categories": ("bee", "bus"),
    "num_steps": 1000001,
    "save_every": 1,
    "dec_rnn_size": 2048,
    "dec_model": "hyper",
    "max_seq_len": -1,
    "z_size": 128,
    "batch_size": 128,
    "num_mixture": 5,
    "learning_rate": 0.001,
    "decay_rate": 0.9999,
    "min_learning_rate": 0.00001,
    "grad_clip": 1.0,
    "de_weight": 0.5,
    "use_recurrent_dropout": True,
    "recurrent_dropout_prob": 0.90,
    "use_input_dropout": False,
    "input_dropout_prob": 0.90,
    "use_output_dropout": False,
    "output_dropout_prob": 0.9,
    "random_scale_factor": 0.10,
    "augment_stroke_prob": 0.10,
    "png_scale_ratio": 0.98,
    "png_rotate_angle": 0,
    "png_translate_dist": 0,
    "is_training": True,
    "png_width": 48,
    "num_sub": 2,
    "num_per_category": 70000,
}
# Deliberate departures from the reference defaults (documented in config.py).
CHANGED_DEFAULTS = {"png_scale_ratio": 1.0}


@pytest.fixture
def paper():
    return hparams.get_preset("paper")


def test_reference_syntax(paper):
    hp = parse_overrides(paper, "categories=[bee,bus], dec_model=hyper, batch_size=128")
    assert hp.categories == ("bee", "bus")
    assert hp.dec_model == "hyper"
    assert hp.batch_size == 128 and isinstance(hp.batch_size, int)

    hp = parse_overrides(paper, "categories=['cat', 'pig', 'bus'],dec_model=lstm,batch_size=16")
    assert hp.categories == ("cat", "pig", "bus")
    assert (hp.dec_model, hp.batch_size) == ("lstm", 16)
    # the input object is never mutated
    assert paper.categories == ("bee", "bus") and paper.batch_size == 128


def test_single_category_without_brackets(paper):
    assert parse_overrides(paper, "categories=pig").categories == ("pig",)


@pytest.mark.parametrize("raw, expected", [("True", True), ("False", False), ("true", True),
                                           ("false", False)])
def test_bools(paper, raw, expected):
    hp = parse_overrides(paper, f"use_input_dropout={raw}, use_recurrent_dropout={raw}")
    assert hp.use_input_dropout is expected
    assert hp.use_recurrent_dropout is expected


def test_numbers(paper):
    hp = parse_overrides(paper, "z_size=64, learning_rate=3e-4, grad_clip=1., num_steps=1e3, "
                                "png_rotate_angle=5")
    assert hp.z_size == 64 and isinstance(hp.z_size, int)
    assert hp.learning_rate == pytest.approx(3e-4) and isinstance(hp.learning_rate, float)
    assert hp.grad_clip == 1.0
    assert hp.num_steps == 1000 and isinstance(hp.num_steps, int)
    assert hp.png_rotate_angle == 5.0 and isinstance(hp.png_rotate_angle, float)


def test_empty_string_is_identity(paper):
    assert parse_overrides(paper, "") == paper
    assert parse_overrides(paper, "  ") == paper


def test_unknown_key_lists_valid_keys(paper):
    with pytest.raises(ConfigError) as err:
        parse_overrides(paper, "batch_sise=64")
    message = str(err.value)
    assert "batch_sise" in message
    for field in dataclasses.fields(HParams):
        assert field.name in message


@pytest.mark.parametrize("text, key", [
    ("batch_size=abc", "batch_size"),
    ("batch_size=12.5", "batch_size"),
    ("batch_size=inf", "batch_size"),
    ("learning_rate=fast", "learning_rate"),
    ("use_input_dropout=maybe", "use_input_dropout"),
    ("is_training=2", "is_training"),
])
def test_bad_value_types(paper, text, key):
    with pytest.raises(ConfigError, match=key):
        parse_overrides(paper, text)


def test_item_without_equals(paper):
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(paper, "batch_size=64, hyper")


@pytest.mark.parametrize("text, key", [
    ("batch_size=0", "batch_size"),
    ("z_size=-3", "z_size"),
    ("recurrent_dropout_prob=0", "recurrent_dropout_prob"),
    ("input_dropout_prob=1.5", "input_dropout_prob"),
    ("random_scale_factor=1.0", "random_scale_factor"),
    ("augment_stroke_prob=-0.1", "augment_stroke_prob"),
    ("png_scale_ratio=0", "png_scale_ratio"),
    ("max_seq_len=0", "max_seq_len"),
    ("max_seq_len=-2", "max_seq_len"),
    ("learning_rate=0", "learning_rate"),
    ("learning_rate=nan", "learning_rate"),
    ("grad_clip=-1", "grad_clip"),
    ("dec_model=gru", "dec_model"),
    ("model=transformer", "model"),
    ("categories=[]", "categories"),
])
def test_out_of_range(paper, text, key):
    with pytest.raises(ConfigError, match=key):
        parse_overrides(paper, text)
    # the same values are rejected by validated() when set directly
    with pytest.raises(ConfigError, match=key):
        dataclasses.replace(paper, **{key: _raw_value(paper, text)}).validated()


def _raw_value(paper, text):
    """The value of a single ``key=value`` item, parsed without validation."""
    key, raw = text.split("=", 1)
    current = getattr(paper, key)
    if isinstance(current, tuple):
        return ()
    if isinstance(current, str):
        return raw
    return type(current)(float(raw))


def test_replace_validates(paper):
    with pytest.raises(ConfigError, match="batch_size"):
        paper.replace(batch_size=0)
    assert paper.replace(batch_size=7).batch_size == 7


@pytest.mark.parametrize("text", ["categories=[bee,bus", "categories=bee,bus]",
                                  "categories=bee],batch_size=[4", "categories=[[bee]"])
def test_unbalanced_brackets(paper, text):
    with pytest.raises(ConfigError, match="unbalanced"):
        parse_overrides(paper, text)


@pytest.mark.parametrize("name", sorted(hparams.PRESETS))
def test_presets_validate_and_round_trip(name):
    hp = hparams.get_preset(name)
    assert isinstance(hp, HParams)
    assert hp.validated() is hp
    d = hp.to_dict()
    assert isinstance(d["categories"], list)
    assert HParams.from_dict(d) == hp
    # through JSON as model_config.json stores it
    assert HParams.from_dict(json.loads(hp.to_json())) == hp


def test_expected_presets():
    assert {"paper", "default", "smoke"} <= set(hparams.PRESETS)
    paper, default, smoke = (hparams.get_preset(n) for n in ("paper", "default", "smoke"))
    assert paper == HParams()
    assert smoke.dec_rnn_size < default.dec_rnn_size < paper.dec_rnn_size
    assert smoke.batch_size <= default.batch_size <= paper.batch_size
    assert default.num_mixture == len(default.categories)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="paper"):
        hparams.get_preset("huge")


def test_from_dict_rejects_unknown_keys(paper):
    d = paper.to_dict()
    d["dropout"] = 0.5
    with pytest.raises(ConfigError, match="dropout"):
        HParams.from_dict(d)


def test_from_dict_validates(paper):
    d = paper.to_dict()
    d["z_size"] = 0
    with pytest.raises(ConfigError, match="z_size"):
        HParams.from_dict(d)


def test_frozen(paper):
    with pytest.raises(dataclasses.FrozenInstanceError):
        paper.batch_size = 1


def test_every_reference_hparam_exists():
    fields = {f.name: f for f in dataclasses.fields(HParams)}
    missing = sorted(set(REFERENCE_HPARAMS) - set(fields))
    assert not missing, f"reference hparams missing from HParams: {missing}"
    defaults = HParams()
    for key, value in REFERENCE_HPARAMS.items():
        expected = CHANGED_DEFAULTS.get(key, value)
        if isinstance(value, float):
            assert getattr(defaults, key) == pytest.approx(expected), key
        else:
            assert getattr(defaults, key) == expected, key
        # and each can be set through the override syntax with the reference's spelling
        if isinstance(value, tuple):
            text = f"{key}=[{','.join(value)}]"
        else:
            text = f"{key}={value}"
        assert getattr(parse_overrides(defaults, text), key) == value, text


def test_num_components(paper):
    assert paper.num_components == paper.num_mixture * paper.num_sub
    assert parse_overrides(paper, "num_mixture=3, num_sub=4").num_components == 12
